//! The oracle test on MariaDB (DESIGN section 6): inserts, updates (NULLs, 20 kB
//! blobs, JSON), key moves and deletes run through the copy, verification and the
//! cutover; every transaction writes its effect to a mirror too. Afterwards the
//! rewritten table equals the mirror with the transform applied, row for row, and
//! the workload saw no error.

mod common;

use std::sync::atomic::Ordering::Relaxed;
use std::time::Duration;

use common::*;
use mysql_async::prelude::Queryable;
use wraith::bench::mysql_workload::{
    self, ITEMS_ACTUAL, ITEMS_ALTER, ITEMS_EXPECTED, ITEMS_TRANSFORM,
};
use wraith::bench::workload::WorkloadConfig;
use wraith::engine::migration::Outcome;
use wraith::plan::RunOptions;

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn mariadb_rewrite_under_concurrent_writes_equals_the_mirror() {
    let (db, dsn, mut c) = my_sandbox().await;
    let rows = 20_000;
    mysql_workload::create_items(&mut c, rows).await.unwrap();
    let load = mysql_workload::start(WorkloadConfig {
        dsn: dsn.clone(),
        table: "items".into(),
        clients: 4,
        tps: Some(400),
        initial_rows: rows,
        max_duration: Duration::from_secs(300),
        key_updates: true,
        scenario: Default::default(),
    })
    .await
    .unwrap();
    tokio::time::sleep(Duration::from_millis(500)).await;

    // Small, slow chunks so the copy, the apply and the workload interleave for seconds.
    let options = RunOptions {
        execute: true,
        initial_chunk_rows: 200,
        chunk_time: Duration::from_millis(20),
        max_rows_per_sec: Some(5_000),
        ..RunOptions::default()
    };
    let outcome = my_migrate(spec(
        &dsn,
        "items",
        ITEMS_ALTER,
        &[ITEMS_TRANSFORM],
        options,
    ))
    .await;
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
        "the workload's changes went through the binary log"
    );
    assert!(
        summary.heartbeats > 0,
        "heartbeats came back through the binary log"
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

    let differing = mysql_workload::diff(&mut c, ITEMS_EXPECTED, ITEMS_ACTUAL)
        .await
        .unwrap();
    if !differing.is_empty() {
        let show = |t: &str| {
            format!(
                "SELECT id, qty, label, status, LENGTH(payload), doc, amount FROM {t} WHERE id IN ({})",
                differing
                    .iter()
                    .map(|i| i.to_string())
                    .collect::<Vec<_>>()
                    .join(",")
            )
        };
        let m: Vec<mysql_async::Row> = c.query(show("items_mirror")).await.unwrap();
        let a: Vec<mysql_async::Row> = c.query(show("items")).await.unwrap();
        let o: Vec<mysql_async::Row> = c.query(show("items_wraith_old")).await.unwrap();
        panic!(
            "rows differ from the mirror: {differing:?}\nmirror: {m:?}\nactual: {a:?}\nold: {o:?}"
        );
    }

    // The new shape is in place; the original is kept under its old name; nothing else is left.
    let status: String = c
        .query_first("SELECT COLUMN_TYPE FROM information_schema.COLUMNS WHERE TABLE_SCHEMA = 'app' AND TABLE_NAME = 'items' AND COLUMN_NAME = 'status'")
        .await
        .unwrap()
        .unwrap();
    assert_eq!(status, "enum('new','paid','shipped')");
    assert_eq!(
        my_tables(&mut c).await,
        vec!["items", "items_mirror", "items_wraith_old"]
    );
    db.stop().await;
}
