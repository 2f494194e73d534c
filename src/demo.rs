//! `wraith demo`: a whole migration on a scratch PostgreSQL that wraith starts
//! itself, with live writes, checked row for row against a mirror at the end.

use std::sync::Arc;
use std::sync::atomic::AtomicBool;
use std::time::Duration;

use anyhow::Context;

use crate::bench::workload::{self, Workload, WorkloadConfig};
use crate::engine::migration::Outcome;
use crate::engine::progress::Reporter;
use crate::engine::{self, Stats};
use crate::pg::PgBackend;
use crate::plan::{MigrationSpec, RunOptions};
use crate::sandbox::PgSandbox;
use tokio_postgres::Client;

/// The demo's change: wider key, JSON to jsonb, text status to an enum, a new column.
pub const DEMO_ALTER: &str = "ALTER COLUMN id TYPE bigint, \
     ALTER COLUMN payload TYPE jsonb USING payload::jsonb, \
     ALTER COLUMN status TYPE item_status USING status::item_status, \
     ADD COLUMN updated_at timestamptz NOT NULL DEFAULT now()";

/// What the migrated table must equal: the mirror with the same conversion.
pub const DEMO_EXPECTED: &str = "SELECT id::bigint, owner_id, status::text, amount, note, payload::jsonb, \
     flags, blob, created_at FROM items_mirror";
pub const DEMO_ACTUAL: &str =
    "SELECT id, owner_id, status::text, amount, note, payload, flags, blob, created_at FROM items";

/// The demo's tables: `items` with `rows` rows, its mirror, and the enum type the
/// ALTER converts the status to.
pub async fn create_demo_tables(c: &Client, rows: i64) -> anyhow::Result<()> {
    workload::create_items(c, "items", rows).await?;
    c.batch_execute("CREATE TYPE item_status AS ENUM ('pending', 'active', 'paused', 'cancelled')")
        .await
        .context("creating the enum type")
}

/// The demo's workload on `items`: inserts, updates (key moves included), deletes.
pub fn demo_workload(dsn: &str, rows: i64, clients: usize, tps: u64) -> WorkloadConfig {
    WorkloadConfig {
        dsn: dsn.to_string(),
        table: "items".into(),
        clients,
        tps: Some(tps),
        initial_rows: rows,
        max_duration: Duration::from_secs(3600),
        key_updates: true,
        scenario: Default::default(),
    }
}

pub async fn run(rows: i64, tps: u64) -> anyhow::Result<()> {
    println!("Starting a scratch PostgreSQL (wal_level=logical)...");
    let pg = PgSandbox::start().await?;
    let dsn = pg.create_database("demo").await?;
    let c = pg.connect("demo").await?;
    println!("Loading {rows} rows into items (and a mirror the workload also writes)...");
    create_demo_tables(&c, rows).await?;

    let spec = MigrationSpec {
        dsn: dsn.clone(),
        schema: None,
        table: "items".into(),
        alter: DEMO_ALTER.into(),
        transforms: vec![],
        prepare: vec![],
        shadow_statements: vec![],
        options: RunOptions {
            execute: true,
            ..RunOptions::default()
        },
    };
    println!("\nPlan (what `wraith migrate` without --execute prints):\n");
    let dry = MigrationSpec {
        options: RunOptions::default(),
        ..spec.clone()
    };
    if let Outcome::Planned(plan) = engine::run(
        Arc::new(PgBackend::connect(dry).await?),
        RunOptions::default(),
        Arc::new(Stats::default()),
        Arc::new(AtomicBool::new(false)),
    )
    .await?
    {
        println!("{plan}");
    }

    println!("\nStarting the workload ({tps} tx/s: inserts, updates, key moves, deletes)...");
    let load = Workload::start(demo_workload(&dsn, rows, 4, tps)).await?;
    tokio::time::sleep(Duration::from_secs(1)).await;

    println!("Migrating while the workload runs...\n");
    let stats = Arc::new(Stats::default());
    let reporter = Reporter::start(stats.clone());
    let backend = Arc::new(PgBackend::connect(spec.clone()).await?);
    let outcome = engine::run(
        backend,
        spec.options.clone(),
        stats,
        Arc::new(AtomicBool::new(false)),
    )
    .await;
    reporter.finish().await;
    tokio::time::sleep(Duration::from_secs(1)).await;
    let wl = load.stop().await;
    let summary = match outcome? {
        Outcome::Migrated(_, s) => s,
        Outcome::Planned(_) => anyhow::bail!("the demo migration did not run"),
    };
    println!("Migration done.\n{summary}");
    let committed = wl.committed.load(std::sync::atomic::Ordering::Relaxed);
    let failed = wl.failed.load(std::sync::atomic::Ordering::Relaxed);
    let diff = workload::diff_count(&c, DEMO_EXPECTED, DEMO_ACTUAL).await?;
    println!("workload:          {committed} transactions committed, {failed} failed");
    println!("check:             {diff} rows differ between items and its mirror");
    pg.stop().await;
    if diff != 0 || failed != 0 {
        anyhow::bail!(
            "the demo's check failed: {diff} rows differ, {failed} workload transactions failed"
        );
    }
    println!("\nThe rewritten table equals the mirror row for row.");
    Ok(())
}
