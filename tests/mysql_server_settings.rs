//! What MySQL 8/9 logs that MariaDB does not, on a real MySQL (`mysql` in the
//! server matrix): GTID transactions (the sandbox runs with `gtid_mode = ON`, as
//! MySQL 9 does by default), partial JSON after images
//! (`binlog_row_value_options = PARTIAL_JSON`), rows written before and after
//! `ALGORITHM = INSTANT` column changes (row versions), and compressed
//! transaction payloads (`binlog_transaction_compression`), which wraith refuses.

mod common;

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering::Relaxed};
use std::time::Duration;

use common::env::Env;
use common::*;
use mysql_async::prelude::Queryable;
use wraith::Engine;
use wraith::engine::faults::Point;
use wraith::engine::migration::Outcome;
use wraith::error::exit_code;

const ROWS: i64 = 6_000;

/// `d` with rows from before and after INSTANT column changes, and its mirror.
async fn instant_table(c: &mut mysql_async::Conn) {
    c.query_drop(format!(
        "CREATE TABLE d (id int PRIMARY KEY, n int NOT NULL, gone int, doc json NOT NULL);
         INSERT INTO d SELECT seq, seq, seq, JSON_OBJECT('n', seq, 'pad', REPEAT('x', 200)) FROM {};
         ALTER TABLE d ADD COLUMN extra int NOT NULL DEFAULT 7, ALGORITHM = INSTANT;
         ALTER TABLE d DROP COLUMN gone, ALGORITHM = INSTANT;
         UPDATE d SET extra = id % 5 WHERE id % 3 = 0;
         CREATE TABLE d_mirror (id int PRIMARY KEY, n bigint NOT NULL, doc json NOT NULL, extra int NOT NULL);
         INSERT INTO d_mirror SELECT id, n, doc, extra FROM d;",
        seq(ROWS)
    ))
    .await
    .expect("the INSTANT fixture");
    let versions: i64 = c
        .query_first(
            "SELECT TOTAL_ROW_VERSIONS FROM information_schema.INNODB_TABLES \
             WHERE NAME = 'app/d'",
        )
        .await
        .unwrap()
        .unwrap_or(0);
    assert!(versions >= 2, "the table has row versions: {versions}");
}

/// Updates `doc` with JSON_SET under PARTIAL_JSON (and `n`), in `d` and its
/// mirror in one transaction, until `stop`.
async fn partial_json_writer(
    mut c: mysql_async::Conn,
    stop: Arc<AtomicBool>,
    writes: Arc<AtomicU64>,
) {
    c.query_drop("SET SESSION binlog_row_value_options = 'PARTIAL_JSON'")
        .await
        .unwrap();
    let mut i = 0i64;
    while !stop.load(Relaxed) {
        i += 1;
        let id = (i * 7919) % ROWS + 1;
        let mut tx = c
            .start_transaction(mysql_async::TxOpts::default())
            .await
            .unwrap();
        for t in ["d", "d_mirror"] {
            tx.exec_drop(
                format!(
                    "UPDATE {t} SET doc = JSON_SET(doc, '$.n', CAST(JSON_EXTRACT(doc, '$.n') AS SIGNED) + 1), \
                     n = n + 1 WHERE id = ?"
                ),
                (id,),
            )
            .await
            .unwrap();
        }
        tx.commit().await.unwrap();
        writes.fetch_add(1, Relaxed);
        tokio::time::sleep(Duration::from_millis(2)).await;
    }
}

/// Rows of `d` that differ from the mirror, and both counts.
async fn differences(c: &mut mysql_async::Conn) -> (i64, i64, i64) {
    let diff: i64 = c
        .query_first(
            "SELECT COUNT(*) FROM (SELECT id FROM (SELECT id, n, CAST(doc AS CHAR) j, extra FROM d \
             UNION ALL SELECT id, n, CAST(doc AS CHAR), extra FROM d_mirror) x \
             GROUP BY id, n, j, extra HAVING COUNT(*) <> 2) y",
        )
        .await
        .unwrap()
        .unwrap_or(-1);
    let (a, b): (i64, i64) = c
        .query_first("SELECT (SELECT COUNT(*) FROM d), (SELECT COUNT(*) FROM d_mirror)")
        .await
        .unwrap()
        .unwrap();
    (diff, a, b)
}

/// Partial JSON updates of a table with INSTANT row versions, in GTID
/// transactions, are followed through the whole run: the result equals the mirror.
async fn partial_json_and_instant_row_versions_are_followed(mut env: Env) {
    let Env::My(db, dsn, c) = &mut env else {
        unreachable!("a MySQL test")
    };
    let gtid: String = c.query_first("SELECT @@gtid_mode").await.unwrap().unwrap();
    assert_eq!(gtid, "ON", "the MySQL sandbox logs GTID transactions");
    instant_table(c).await;

    let writer = Writer::start(db.connect("app").await.unwrap(), partial_json_writer);
    let mut opts = execute_on(Engine::MySql);
    opts.max_rows_per_sec = Some(3_000);
    opts.initial_chunk_rows = 200;
    let outcome = migrate(spec(dsn, "d", "MODIFY n bigint NOT NULL", &[], opts)).await;
    let ((), writes) = writer.stop().await;
    let summary = match outcome {
        Ok(Outcome::Migrated(_, s)) => s,
        other => panic!("no migration: {other:?}"),
    };
    assert!(summary.swapped);
    assert!(writes > 100, "the writer ran during the run");
    assert!(
        summary.keys_applied > 0,
        "its changes came through the stream"
    );
    let mut partial_events = 0;
    for file in binlog_files(c).await {
        let events: Vec<mysql_async::Row> = c
            .query(format!("SHOW BINLOG EVENTS IN '{file}'"))
            .await
            .unwrap();
        partial_events += events
            .iter()
            .filter(|r| r.get::<String, _>(2).as_deref() == Some("Update_rows_partial"))
            .count();
    }
    assert!(
        partial_events > 0,
        "the server logged partial JSON updates (Update_rows_partial)"
    );
    let (diff, rows, mirror) = differences(c).await;
    assert_eq!((diff, rows), (0, mirror), "the table equals its mirror");
    assert_eq!(rows, ROWS);
}

async fn binlog_files(c: &mut mysql_async::Conn) -> Vec<String> {
    let logs: Vec<mysql_async::Row> = c.query("SHOW BINARY LOGS").await.unwrap();
    logs.iter().filter_map(|r| r.get::<String, _>(0)).collect()
}

/// Compressed transactions hide their row events: with the global setting on,
/// the run is refused up front with the fix; a session that turns it on during
/// a run stops the run before the swap. Either way nothing is changed or left.
async fn compressed_transactions_are_refused_with_the_fix(mut env: Env) {
    env.simple_table(3_000).await;
    let before = env.t_fingerprint().await;
    let dsn = env.dsn();

    env.exec("SET GLOBAL binlog_transaction_compression = ON")
        .await;
    let out = wraith_async(migrate_args(
        &dsn,
        "t",
        "MODIFY v bigint NOT NULL",
        &["--execute"],
    ))
    .await;
    assert_refused(
        &out,
        "global compression",
        &[
            "binlog_transaction_compression is ON",
            "SET GLOBAL binlog_transaction_compression = OFF",
        ],
    );
    env.assert_untouched(before).await;
    env.exec("SET GLOBAL binlog_transaction_compression = OFF")
        .await;

    // One session compresses its transaction while a chunk is in flight.
    let mut opts = env.execute();
    opts.initial_chunk_rows = 100;
    let job = spec(&dsn, "t", "MODIFY v bigint NOT NULL", &[], opts).with_faults(sql_at(
        Point::MidChunk,
        &dsn,
        "SET SESSION binlog_transaction_compression = ON; UPDATE t SET v = v + 1 WHERE id = 1; \
         UPDATE t SET v = v - 1 WHERE id = 1",
    ));
    let err = migrate(job).await.expect_err("the run stops");
    let msg = format!("{err:#}");
    assert!(
        msg.contains("binlog_transaction_compression = OFF") && msg.contains("nothing was swapped"),
        "{msg}"
    );
    assert_ne!(exit_code(&err), 0);
    env.assert_untouched(before).await;
    env.stop().await;
}

on_servers!([mysql] partial_json_and_instant_row_versions_are_followed, compressed_transactions_are_refused_with_the_fix);
