//! `wraith demo`: the orders normalization on a scratch PostgreSQL that wraith
//! starts itself (or on `--dsn`), under the scenario's live workload, checked row
//! for row against a mirror at the end.

use std::sync::Arc;
use std::sync::atomic::Ordering::Relaxed;
use std::time::Duration;

use crate::Engine;
use crate::bench::workload::{self, Workload, WorkloadStats};
use crate::dsn::Dsn;
use crate::engine::RunContext;
use crate::engine::migration::Outcome;
use crate::engine::progress::Reporter;
use crate::error::bad_input;
use crate::pg::conn::{self, DbResult};
use crate::plan::{MigrationSpec, Plan, RunOptions};
use crate::sandbox::{Scratch, Target};
use crate::scenario::orders;

/// Options of `wraith demo`.
#[derive(Debug, Clone)]
pub struct DemoConfig {
    /// The scratch server, by its matrix name (with `dsn`, the DSN decides).
    pub server: String,
    /// Orders to generate.
    pub rows: i64,
    /// Workload transactions per second.
    pub tps: u64,
    /// Use this database instead of a scratch server (it must not hold the scenario's tables).
    pub dsn: Option<Dsn>,
    /// Leave the scratch server running at the end.
    pub keep: bool,
    /// Load the scenario with its dirt (see [`orders::add_dirt`]).
    pub dirty: bool,
}

/// The orders migration on a scratch server (or `--dsn`), under the scenario's
/// workload, checked against the mirror at the end.
pub async fn run(cfg: DemoConfig) -> anyhow::Result<()> {
    let target = Target::of(cfg.dsn.clone(), &cfg.server)?;
    let engine = target.engine();
    if engine == Engine::MySql && cfg.dirty {
        return Err(bad_input(
            "--dirty shows the orders scenario's dirt: PostgreSQL only",
        ));
    }
    let (server, dsn) = match target {
        Target::Existing(dsn) => (None, *dsn),
        Target::Scratch(scratch) => {
            println!("Starting a scratch {}...", scratch.title());
            let server = Scratch::start(scratch).await?;
            let dsn = server.create_database("demo").await?;
            (Some(server), dsn)
        }
    };
    let checked = match engine {
        Engine::Postgres => run_postgres(&cfg, &dsn).await,
        Engine::MySql => run_mariadb(&cfg, &dsn).await,
    };
    match server {
        Some(server) if cfg.keep => {
            println!(
                "\nThe server keeps running: {}  (stop it with Ctrl-C)",
                server.client_command("demo")
            );
            let _ = tokio::signal::ctrl_c().await;
            server.stop().await;
        }
        Some(server) => server.stop().await,
        None => {}
    }
    checked
}

/// A dry run: the plan `wraith migrate` prints without `--execute`.
async fn plan(spec: &MigrationSpec) -> anyhow::Result<Outcome> {
    let opts = RunOptions::for_engine(Engine::of(&spec.dsn));
    let cx = RunContext::new(&opts);
    Engine::migrate(spec.clone(), opts, cx).await
}

async fn run_postgres(cfg: &DemoConfig, dsn: &Dsn) -> anyhow::Result<()> {
    let c = conn::connect(dsn, "demo").await?;
    let rows = cfg.rows;
    println!(
        "Loading the orders scenario: {rows} orders, {} customers (and a mirror the workload also writes)...",
        (rows / 100).max(1)
    );
    orders::load(&c, rows, 1).await?;
    if cfg.dirty {
        println!(
            "Adding dirt: orphan order_refs, statuses with stray case or whitespace, JSON args that are not \
             objects, duplicate emails, negative balances..."
        );
        orders::add_dirt(&c, 1).await?;
    }
    orders::create_mirror(&c).await?;

    let spec = orders::migration()?.into_spec(dsn)?;
    println!(
        "\nPlan (what `wraith migrate --spec scenarios/orders/migration.toml` prints without --execute):\n"
    );
    let planned = match plan(&spec).await {
        Err(refused) if cfg.dirty => {
            println!("wraith refuses, and changes nothing: {refused:#}\n");
            println!(
                "Doing what the refusal says, on orders and on its mirror: re-rooting the broken chains..."
            );
            for t in ["orders", "orders_mirror"] {
                let n = c
                    .execute(&orders::REROOT_ORPHANS.replace("{t}", t), &[])
                    .await
                    .db("re-rooting orphaned chains")?;
                println!("  {t}: {n} orders re-rooted");
            }
            println!("\nThe plan, again:\n");
            plan(&spec).await?
        }
        other => other?,
    };
    if let Outcome::Planned(plan) = planned {
        println!("{plan}");
    }

    announce_workload(cfg.tps);
    let load = Workload::start(workload::orders_workload(dsn.expose(), rows, 4, cfg.tps)).await?;
    let (plan, wl) = migrate_under_load(spec, load).await?;
    if !plan.findings.is_empty() {
        println!(
            "data checks (source rows at preflight):\n{}",
            crate::plan::report::findings_text(&plan.findings)
        );
    }
    let diff = workload::diff_count(&c, orders::EXPECTED, orders::ACTUAL).await?;
    verdict("orders", &wl, diff as u64)
}

fn announce_workload(tps: u64) {
    println!(
        "\nStarting the workload ({tps} tx/s: daily recreations, status and amount changes, deletes of expired orders)..."
    );
}

/// Migrates with progress while `load` writes, lets the application write on a
/// little after the swap, stops the workload and prints the summary.
async fn migrate_under_load(
    spec: MigrationSpec,
    load: Workload,
) -> anyhow::Result<(Plan, Arc<WorkloadStats>)> {
    tokio::time::sleep(Duration::from_secs(1)).await;
    println!("Migrating while the workload runs...\n");
    let opts = RunOptions {
        execute: true,
        ..RunOptions::for_engine(Engine::of(&spec.dsn))
    };
    let cx = RunContext::new(&opts);
    let reporter = Reporter::start(cx.stats.clone());
    let outcome = Engine::migrate(spec, opts, cx).await;
    reporter.finish().await;
    tokio::time::sleep(Duration::from_secs(2)).await;
    let stopped = load.stop().await;
    let (plan, summary) = match outcome? {
        Outcome::Migrated(plan, s) => (plan, s),
        Outcome::Planned(_) | Outcome::AlreadyDone(_) | Outcome::AppliedInstantly(_) => {
            anyhow::bail!("the demo migration did not run")
        }
    };
    println!("Migration done.\n{summary}");
    Ok((plan, stopped))
}

/// Prints the workload's outcome and the mirror check; fails when either is off.
fn verdict(table: &str, load: &WorkloadStats, differ: u64) -> anyhow::Result<()> {
    let (committed, failed) = (load.committed.load(Relaxed), load.failed.load(Relaxed));
    println!("workload:          {committed} transactions committed, {failed} failed");
    println!("check:             {differ} rows differ between {table} and its mirror");
    if differ != 0 || failed != 0 {
        anyhow::bail!(
            "the demo's check failed: {differ} rows differ, {failed} workload transactions failed"
        );
    }
    println!("\nThe rewritten {table} table equals the mirror row for row.");
    Ok(())
}

/// `wraith demo --engine mariadb`: the orders normalization in MySQL types
/// (`scenarios/orders/migration.mysql.toml`), under the scenario's workload with
/// a mirror, checked row for row at the end.
async fn run_mariadb(cfg: &DemoConfig, dsn: &Dsn) -> anyhow::Result<()> {
    use crate::bench::mysql_workload as wl;
    use crate::scenario::orders_mysql;

    let mut c = crate::mysql::conn::connect(dsn, "demo").await?;
    let rows = cfg.rows;
    println!(
        "Loading the orders scenario in MySQL types: {rows} orders, {} customers (and a mirror the workload also writes)...",
        (rows / 100).max(1)
    );
    orders_mysql::load(&mut c, rows, 1).await?;
    orders_mysql::create_mirror(&mut c).await?;
    let spec = orders_mysql::migration()?.into_spec(dsn)?;
    println!(
        "\nPlan (what `wraith migrate --spec scenarios/orders/migration.mysql.toml` prints without --execute):\n"
    );
    if let Outcome::Planned(plan) = plan(&spec).await? {
        println!("{plan}");
    }
    announce_workload(cfg.tps);
    let load = wl::start(workload::orders_workload(dsn.expose(), rows, 4, cfg.tps)).await?;
    let (_, stopped) = migrate_under_load(spec, load).await?;
    let differing = wl::diff(&mut c, orders_mysql::EXPECTED, orders_mysql::ACTUAL).await?;
    verdict("orders", &stopped, differing.len() as u64)
}
