//! The oracle test (DESIGN section 6), on both engines: a concurrent workload of
//! inserts, updates (NULLs, TOASTed or 20 kB values, JSON, key moves), deletes
//! and asynchronously committed transactions runs through the copy, verification
//! and the cutover; every transaction writes its effect to a mirror too.
//! Four copy workers commit their chunks out of order. Afterwards the rewritten
//! table equals the mirror with the transform applied, row for row, and the
//! workload saw no error.

mod common;

use std::sync::atomic::Ordering::Relaxed;
use std::time::Duration;

use common::env::Env;
use common::ops::*;
use common::*;
use mysql_async::prelude::Queryable;
use wraith::engine::migration::Outcome;
use wraith::plan::RunOptions;

async fn rewrite_under_concurrent_writes_equals_the_mirror(mut env: Env) {
    let rows = 20_000;
    let load = Load::start_with(&mut env, rows, true, 4, 400).await;
    tokio::time::sleep(Duration::from_millis(500)).await;

    // Small, slow chunks so the copy, the apply and the workload interleave for
    // seconds, copied by four workers at once.
    let options = RunOptions {
        execute: true,
        threads: 4,
        initial_chunk_rows: 200,
        chunk_time: Duration::from_millis(20),
        max_rows_per_sec: Some(5_000),
        ..RunOptions::for_engine(env.engine())
    };
    let (alter, transforms) = items_alter(&env);
    let outcome = migrate(spec_for(&env, "items", alter, &transforms, options)).await;
    // Writes keep going to the new table after the swap.
    tokio::time::sleep(Duration::from_millis(700)).await;
    let wl = load.stop().await;

    let summary = match outcome.expect("migration succeeds") {
        Outcome::Migrated(_, s) => s,
        other => panic!("no migration: {other:?}"),
    };
    assert!(summary.swapped);
    assert!(
        summary.chunks_in_flight_peak > 1,
        "copy workers overlapped: {summary:?}"
    );
    assert!(
        summary.keys_applied > 0,
        "the workload's changes went through the change stream"
    );
    if matches!(env, Env::My(..)) {
        assert!(
            summary.heartbeats > 0,
            "heartbeats came back through the binary log"
        );
    }
    assert!(
        summary.verify_rows >= rows as u64 / 2,
        "verification ran over the table"
    );
    assert_eq!(
        summary.verify_repaired, 0,
        "verification under writes finds nothing to repair"
    );
    assert!(wl.committed.load(Relaxed) > 200, "the workload ran");
    assert_equals_mirror(&mut env).await;

    // The new shape is in place; the original is kept, untouched by wraith, under
    // its old name; nothing else of wraith's is left.
    match &mut env {
        Env::Pg(db) => {
            let ty: String = db
                .client
                .query_one("SELECT format_type(atttypid, atttypmod) FROM pg_attribute WHERE attrelid = 'items'::regclass AND attname = 'payload'", &[])
                .await
                .unwrap()
                .get(0);
            assert_eq!(ty, "jsonb");
            assert!(scalar_bool(&db.client, "SELECT to_regclass('_items_old') IS NOT NULL").await);
        }
        Env::My(_, _, c) => {
            let status: String = c
                .query_first("SELECT COLUMN_TYPE FROM information_schema.COLUMNS WHERE TABLE_SCHEMA = 'app' AND TABLE_NAME = 'items' AND COLUMN_NAME = 'status'")
                .await
                .unwrap()
                .unwrap();
            assert_eq!(status, "enum('new','paid','shipped')");
            assert_eq!(
                my_tables(c).await,
                vec!["items", "items_mirror", "items_wraith_old"]
            );
        }
    }
    assert!(
        env.leftovers().await.is_empty(),
        "{:?}",
        env.leftovers().await
    );
    env.stop().await;
}

on_every_server!(rewrite_under_concurrent_writes_equals_the_mirror);
