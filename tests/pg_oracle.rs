//! The oracle test (DESIGN section 6): a concurrent workload of inserts, updates
//! (untouched TOASTed values, key moves, NULLs), deletes and asynchronously
//! committed transactions runs through the whole migration and the cutover; every
//! transaction writes its effect to a mirror too. Afterwards the rewritten table
//! equals the mirror with the transform applied, row for row, and the workload
//! saw no error.

mod common;

use std::sync::atomic::Ordering::Relaxed;
use std::time::Duration;

use common::*;
use wraith::bench::workload;
use wraith::bench::workload::{ITEMS_ACTUAL, ITEMS_ALTER, ITEMS_EXPECTED};
use wraith::engine::migration::Outcome;
use wraith::plan::RunOptions;

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn rewrite_under_concurrent_writes_equals_the_mirror() {
    let db = db().await;
    let rows = 20_000;
    let load = items_under_load(&db, rows, 4, 400).await;
    tokio::time::sleep(Duration::from_millis(500)).await;

    // Small, slow chunks so the copy, the apply and the workload interleave for seconds.
    let options = RunOptions {
        execute: true,
        initial_chunk_rows: 200,
        chunk_time: Duration::from_millis(20),
        max_rows_per_sec: Some(5_000),
        ..RunOptions::default()
    };
    let outcome = migrate(spec(&db.dsn, "items", ITEMS_ALTER, &[], options)).await;
    // Writes keep going to the new table after the swap.
    tokio::time::sleep(Duration::from_millis(700)).await;
    let wl = load.stop().await;

    let summary = match outcome.expect("migration succeeds") {
        Outcome::Migrated(_, s) => s,
        other => panic!("no migration: {other:?}"),
    };
    assert!(summary.swapped);
    assert!(
        summary.keys_applied > 0,
        "the workload's changes went through the stream"
    );
    assert!(
        summary.verify_rows >= rows as u64 / 2,
        "verification ran over the table"
    );
    assert_eq!(
        summary.verify_repaired, 0,
        "verification under writes finds nothing to repair"
    );
    assert_eq!(
        wl.failed.load(Relaxed),
        0,
        "workload errors: {:?}",
        wl.errors()
    );
    assert!(wl.committed.load(Relaxed) > 200, "the workload ran");

    let diff = workload::diff_count(&db.client, ITEMS_EXPECTED, ITEMS_ACTUAL)
        .await
        .unwrap();
    assert_eq!(diff, 0, "rewritten table differs from the mirror");

    // The new shape is in place; the original is kept, untouched by wraith, under its old name.
    let ty: String = db
        .client
        .query_one("SELECT format_type(atttypid, atttypmod) FROM pg_attribute WHERE attrelid = 'items'::regclass AND attname = 'payload'", &[])
        .await
        .unwrap()
        .get(0);
    assert_eq!(ty, "jsonb");
    assert!(scalar_bool(&db.client, "SELECT to_regclass('_items_old') IS NOT NULL").await);
    assert!(
        leftovers(&db.client).await.is_empty(),
        "{:?}",
        leftovers(&db.client).await
    );
}
