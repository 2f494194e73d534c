//! The change stream's decoding stays in memory. A copy chunk is one large
//! transaction the slot decodes (its rows are not published, but decoded all the
//! same); at the server's default `logical_decoding_work_mem` (64 MB) such a
//! chunk was spilled to disk and decoded about three times slower.

mod common;

use std::time::Duration;

use common::*;
use wraith::Engine;
use wraith::engine::faults::Point;
use wraith::engine::migration::Outcome;
use wraith::plan::RunOptions;

#[tokio::test]
async fn a_large_copy_chunk_is_decoded_without_spilling() {
    let db = db().await;
    db.client
        .batch_execute(
            "CREATE TABLE t (id int PRIMARY KEY, v text); \
             INSERT INTO t SELECT g, repeat(md5(g::text), 12) FROM generate_series(1, 200000) g;",
        )
        .await
        .unwrap();
    // One chunk copies the whole table: about 100 MB for the reorder buffer.
    let options = RunOptions {
        execute: true,
        initial_chunk_rows: 1_000_000,
        chunk_time: Duration::from_secs(600),
        ..RunOptions::for_engine(Engine::Postgres)
    };
    // By the verification the stream has been read past the chunk.
    let spilled = "DO $$ DECLARE spilled bigint; BEGIN \
                   SELECT sum(spill_bytes) INTO spilled FROM pg_stat_replication_slots; \
                   IF spilled > 0 THEN RAISE EXCEPTION 'the decoding spilled % bytes to disk', spilled; END IF; \
                   END $$";
    let outcome = migrate(
        spec(&db.dsn, "t", "ADD COLUMN w int", &[], options).with_faults(sql_at(
            Point::BeforeVerify,
            &db.dsn,
            spilled,
        )),
    )
    .await;
    assert!(matches!(outcome, Ok(Outcome::Migrated(..))), "{outcome:?}");
    assert!(scalar_bool(&db.client, "SELECT count(*) = 200000 FROM t").await);
}
