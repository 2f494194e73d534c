//! `wraith bench`: a migration measured under a steady write load, against the
//! same change done as an offline `ALTER TABLE`, all in one run so the figures
//! compare as ratios. The scenario is the orders normalization or a generic table
//! of N rows and a chosen row width; the server is a scratch PostgreSQL or MariaDB,
//! or an existing one (`--dsn`, where it creates and drops its own databases).
//! On MySQL/MariaDB the baselines are `ALTER TABLE ... ALGORITHM=COPY` and
//! pt-online-schema-change. Each migration runs as a child `wraith migrate`
//! process, so its peak memory is its own.

use std::sync::atomic::Ordering::Relaxed;
use std::time::{Duration, Instant};

use anyhow::Context;

use hdrhistogram::Histogram;

use crate::Engine;
use crate::bench::child::migrate_child;
use crate::bench::print::print_report;
use crate::bench::workload::{self, Workload, WorkloadConfig};
use crate::bench::{dependents, mysql_bench};
use crate::dsn::Dsn;
use crate::engine::migration::unix_us;
use crate::error::bad_input;
use crate::pg::conn::{self, DbResult};
use crate::pg::sql::ident;
use crate::plan::SpecFile;
use crate::sandbox::{Scratch, Target};
use crate::scenario::{orders, orders_mysql};

/// What the benchmark migrates.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum BenchScenario {
    /// The orders normalization (`scenarios/orders`), with its workload.
    Orders,
    /// A generic table (`items`) whose rows are padded to about `row_width` bytes,
    /// with inserts, updates (key moves included) and deletes.
    Table { row_width: usize },
}

/// Width of an `items` row without padding, roughly.
const ITEMS_BASE_WIDTH: usize = 120;

impl BenchScenario {
    fn table(&self) -> &'static str {
        match self {
            BenchScenario::Orders => "orders",
            BenchScenario::Table { .. } => "items",
        }
    }

    fn describe(&self, rows: i64) -> String {
        match self {
            BenchScenario::Orders => format!("orders scenario, {rows} orders"),
            BenchScenario::Table { row_width } => {
                format!("generic table, {rows} rows of about {row_width} bytes")
            }
        }
    }

    fn spec_toml(&self, engine: Engine) -> anyhow::Result<String> {
        Ok(match (self, engine) {
            (BenchScenario::Orders, Engine::Postgres) => orders::MIGRATION.to_string(),
            (BenchScenario::Orders, Engine::MySql) => orders_mysql::MIGRATION.to_string(),
            (BenchScenario::Table { .. }, Engine::Postgres) => format!(
                "table = \"items\"\nalter = \"\"\"{}\"\"\"\n",
                workload::ITEMS_ALTER
            ),
            (BenchScenario::Table { .. }, Engine::MySql) => {
                return Err(bad_input(
                    "bench: --scenario table runs on PostgreSQL only; on MySQL/MariaDB use --scenario orders",
                ));
            }
        })
    }

    /// Loads the data, with a mirror for the workload's oracle when `mirror`, and
    /// returns the table's size in bytes.
    async fn load(
        &self,
        engine: Engine,
        dsn: &Dsn,
        rows: i64,
        mirror: bool,
    ) -> anyhow::Result<u64> {
        if engine == Engine::MySql {
            return mysql_bench::load_orders(dsn, rows, mirror).await;
        }
        let c = conn::connect(dsn, "bench").await?;
        match self {
            BenchScenario::Orders => {
                orders::load(&c, rows, 1).await?;
                if mirror {
                    orders::create_mirror(&c).await?;
                }
            }
            BenchScenario::Table { row_width } => {
                let pad = row_width.saturating_sub(ITEMS_BASE_WIDTH);
                workload::create_items_scenario_padded(&c, rows, pad).await?;
            }
        }
        c.batch_execute("CHECKPOINT").await.db("checkpoint")?;
        let bytes: i64 = c
            .query_one("SELECT pg_table_size($1::text::regclass)", &[&self.table()])
            .await
            .db("measuring the table")?
            .get(0);
        Ok(bytes.max(0) as u64)
    }

    /// Starts the scenario's workload on `dsn`.
    async fn start_workload(
        &self,
        engine: Engine,
        dsn: &Dsn,
        cfg: &BenchConfig,
    ) -> anyhow::Result<Workload> {
        let wl = self.workload(dsn, cfg);
        match engine {
            Engine::Postgres => Workload::start(wl).await,
            Engine::MySql => crate::bench::mysql_workload::start(wl).await,
        }
    }

    /// Rows of the migrated table that differ from the workload's mirror.
    async fn diff(&self, engine: Engine, dsn: &Dsn) -> anyhow::Result<i64> {
        match engine {
            Engine::Postgres => {
                let c = conn::connect(dsn, "bench").await?;
                let (expected, actual) = self.oracle();
                workload::diff_count(&c, expected, actual).await
            }
            Engine::MySql => mysql_bench::diff_orders(dsn).await,
        }
    }

    fn workload(&self, dsn: &Dsn, cfg: &BenchConfig) -> WorkloadConfig {
        let dsn = dsn.expose();
        match self {
            BenchScenario::Orders => workload::orders_workload(dsn, cfg.rows, cfg.clients, cfg.tps),
            BenchScenario::Table { .. } => {
                workload::items_workload(dsn, cfg.rows, cfg.clients, cfg.tps)
            }
        }
    }

    fn oracle(&self) -> (&'static str, &'static str) {
        match self {
            BenchScenario::Orders => (orders::EXPECTED, orders::ACTUAL),
            BenchScenario::Table { .. } => (workload::ITEMS_EXPECTED, workload::ITEMS_ACTUAL),
        }
    }
}

#[derive(Debug, Clone)]
pub struct BenchConfig {
    /// The scratch server, by its matrix name; `dsn`, when given, decides instead.
    pub server: String,
    pub scenario: BenchScenario,
    /// Rows (orders) in the table.
    pub rows: i64,
    pub tps: u64,
    pub clients: usize,
    /// Load measured before the migration starts, and again after it.
    pub window: Duration,
    /// Also time the change as a plain offline `ALTER TABLE` (`--baseline offline`)
    /// and, on MySQL/MariaDB, with pt-online-schema-change when it is installed.
    pub offline_baseline: bool,
    /// Extra `wraith migrate` arguments for the loaded run (rate cap, throttle limits).
    pub migrate_args: Vec<String>,
    /// Copy thread counts to time at idle, each on its own database (`--threads 1,2,4`).
    pub threads: Vec<usize>,
    /// An existing server instead of a scratch one.
    pub dsn: Option<Dsn>,
    pub json: bool,
    /// The `wraith` binary that runs the migrations (default: this process's own).
    pub wraith: Option<std::path::PathBuf>,
}

/// Where the benchmark's databases live.
enum Server {
    Scratch(Scratch),
    /// An existing server: databases are created through `dsn` and dropped at the end.
    Existing {
        dsn: Dsn,
        created: Vec<String>,
    },
}

impl Server {
    async fn start(target: Target, say: &dyn Fn(&str)) -> anyhow::Result<Server> {
        Ok(match target {
            Target::Existing(dsn) => {
                say(&format!("bench: on {dsn}"));
                Server::Existing {
                    dsn: *dsn,
                    created: vec![],
                }
            }
            Target::Scratch(scratch) => {
                say(&format!("bench: starting a scratch {}", scratch.title()));
                Server::Scratch(Scratch::start(scratch).await?)
            }
        })
    }

    fn engine(&self) -> Engine {
        match self {
            Server::Scratch(s) => s.engine(),
            Server::Existing { dsn, .. } => Engine::of(dsn),
        }
    }

    fn describe(&self) -> String {
        match self {
            Server::Scratch(s) => s.describe(),
            Server::Existing { dsn, .. } => dsn.to_string(),
        }
    }

    async fn database(&mut self, name: &str) -> anyhow::Result<Dsn> {
        match self {
            Server::Scratch(s) => s.create_database(name).await,
            Server::Existing { dsn, created } if dsn.is_mysql() => {
                let db = format!("wraith_bench_{name}");
                mysql_bench::create_database(dsn, &db).await?;
                created.push(db.clone());
                dsn.with_database(&db)
            }
            Server::Existing { dsn, created } => {
                let db = format!("wraith_bench_{name}");
                let c = conn::connect(dsn, "bench").await?;
                // One statement per call: neither runs inside a transaction block.
                for stmt in [
                    format!("DROP DATABASE IF EXISTS {} WITH (FORCE)", ident(&db)),
                    format!("CREATE DATABASE {}", ident(&db)),
                ] {
                    c.batch_execute(&stmt).await.map_err(|e| {
                        bad_input(format!(
                            "bench: cannot create database {db} on {dsn}: {} (does the role have CREATEDB?)",
                            conn::describe(&e)
                        ))
                    })?;
                }
                created.push(db.clone());
                dsn.with_database(&db)
            }
        }
    }

    async fn finish(self) {
        match self {
            Server::Scratch(s) => s.stop().await,
            Server::Existing { dsn, created } if dsn.is_mysql() => {
                for db in created {
                    mysql_bench::drop_database(&dsn, &db).await;
                }
            }
            Server::Existing { dsn, created } => {
                if let Ok(c) = conn::connect(&dsn, "bench").await {
                    for db in created {
                        if let Err(e) = c
                            .batch_execute(&format!(
                                "DROP DATABASE IF EXISTS {} WITH (FORCE)",
                                ident(&db)
                            ))
                            .await
                        {
                            tracing::warn!("bench: could not drop database {db}: {e}");
                        }
                    }
                }
            }
        }
    }
}

fn latency(h: &Histogram<u64>, window: Duration) -> serde_json::Value {
    let ms = |v: u64| v as f64 / 1000.0;
    serde_json::json!({
        "transactions": h.len(),
        "tps": h.len() as f64 / window.as_secs_f64().max(0.001),
        "p50_ms": ms(h.value_at_quantile(0.50)),
        "p99_ms": ms(h.value_at_quantile(0.99)),
        "max_ms": ms(h.max()),
    })
}

/// When a phase of the child run first began (unix microseconds).
fn phase_start(summary: &serde_json::Value, phase: &str) -> Option<u64> {
    summary["phase_started_unix_ms"]
        .as_array()?
        .iter()
        .find(|p| p["phase"] == phase)
        .and_then(|p| p["unix_ms"].as_u64())
        .map(|ms| ms * 1000)
}

/// Runs the benchmark: one database per measurement, all loaded from the same
/// seed so they hold the same data.
pub async fn run(cfg: BenchConfig) -> anyhow::Result<()> {
    let say = |s: &str| {
        if !cfg.json {
            eprintln!("{s}");
        }
    };
    let scenario = cfg.scenario;
    let target = Target::of(cfg.dsn.clone(), &cfg.server)?;
    let engine = target.engine();
    let spec_text = scenario.spec_toml(engine)?;
    let migration: SpecFile = toml::from_str(&spec_text).context("the benchmark's spec")?;
    let spec = tempfile::NamedTempFile::new().context("writing the migration spec")?;
    std::fs::write(spec.path(), &spec_text).context("writing the migration spec")?;
    let spec_path = spec.path().to_string_lossy().to_string();

    let mut server = Server::start(target, &say).await?;
    let result = measure(&cfg, &mut server, &migration, &spec_path, &say).await;
    server.finish().await;
    let report = result?;
    if cfg.json {
        println!("{report:#}");
    } else {
        print_report(&report);
    }
    let (diff, failed) = (
        report["rows_differing_from_mirror"].as_i64().unwrap_or(-1),
        report["workload_failed"].as_u64().unwrap_or(0),
    );
    if diff != 0 || failed != 0 {
        anyhow::bail!(
            "bench: the result is wrong ({diff} rows differ, {failed} transactions failed)"
        );
    }
    Ok(())
}

/// `wraith bench --scenario dependents`.
#[derive(Debug, Clone)]
pub struct DependentsConfig {
    pub server: String,
    pub dsn: Option<Dsn>,
    pub rows: i64,
    /// The numbers of referencing tables (and triggers) to measure.
    pub counts: Vec<usize>,
    pub runs: usize,
    pub json: bool,
    pub wraith: Option<std::path::PathBuf>,
}

/// Measures what moving N foreign keys and triggers adds to the cutover's hold
/// ([`dependents`]).
pub async fn run_dependents(cfg: DependentsConfig) -> anyhow::Result<()> {
    let say = |s: &str| {
        if !cfg.json {
            eprintln!("{s}");
        }
    };
    let target = Target::of(cfg.dsn.clone(), &cfg.server)?;
    if target.engine() != Engine::MySql {
        return Err(bad_input(
            "bench: --scenario dependents runs on MySQL/MariaDB (--engine mariadb or mysql), \
             where triggers and keys move in the cutover's lock",
        ));
    }
    let spec = tempfile::NamedTempFile::new().context("writing the migration spec")?;
    std::fs::write(spec.path(), dependents::SPEC).context("writing the migration spec")?;
    let spec_path = spec.path().to_string_lossy().to_string();
    let mut server = Server::start(target, &say).await?;
    let described = server.describe();
    let measured = measure_dependents(&cfg, &mut server, &spec_path, &say).await;
    server.finish().await;
    let report = dependents::report(&measured?, &described, cfg.rows);
    if cfg.json {
        println!("{report:#}");
    } else {
        dependents::print(&report);
    }
    Ok(())
}

async fn measure_dependents(
    cfg: &DependentsConfig,
    server: &mut Server,
    spec_path: &str,
    say: &dyn Fn(&str),
) -> anyhow::Result<Vec<dependents::Measured>> {
    let mut out = Vec::new();
    for &n in &cfg.counts {
        let mut m = dependents::Measured {
            n,
            holds_ms: Vec::new(),
        };
        for run in 1..=cfg.runs.max(1) {
            let dsn = server.database(&format!("dependents_{n}_{run}")).await?;
            dependents::load(&dsn, cfg.rows, n).await?;
            say(&format!("bench: N = {n}, run {run}: {} rows", cfg.rows));
            m.holds_ms
                .push(dependents::run_once(cfg.wraith.as_deref(), &dsn, spec_path, n).await?);
        }
        out.push(m);
    }
    Ok(out)
}

async fn measure(
    cfg: &BenchConfig,
    server: &mut Server,
    migration: &SpecFile,
    spec_path: &str,
    say: &dyn Fn(&str),
) -> anyhow::Result<serde_json::Value> {
    let scenario = cfg.scenario;
    let engine = server.engine();
    let table = scenario.table();
    let ms = |d: Duration| d.as_secs_f64() * 1000.0;

    let offline = if cfg.offline_baseline {
        say(&format!(
            "bench: {}; the same change as an offline ALTER TABLE",
            scenario.describe(cfg.rows)
        ));
        let dsn = server.database("offline").await?;
        scenario.load(engine, &dsn, cfg.rows, false).await?;
        Some(match engine {
            Engine::Postgres => {
                let c = conn::connect(&dsn, "bench").await?;
                offline_alter(&c, table, migration).await?
            }
            Engine::MySql => mysql_bench::offline_copy(&dsn, table, &migration.alter).await?,
        })
    } else {
        None
    };
    let pt_osc = if cfg.offline_baseline && engine == Engine::MySql {
        if mysql_bench::pt_osc_installed() {
            say("bench: the same ALTER with pt-online-schema-change");
            let dsn = server.database("ptosc").await?;
            scenario.load(engine, &dsn, cfg.rows, false).await?;
            Some(mysql_bench::pt_osc(&dsn, table, &migration.alter).await?)
        } else {
            say(&format!(
                "bench: {} is not installed (apt-get install -y percona-toolkit): no comparison with it",
                mysql_bench::PT_OSC
            ));
            None
        }
    } else {
        None
    };

    say("bench: wraith at idle");
    let idle_dsn = server.database("idle").await?;
    let bytes = scenario.load(engine, &idle_dsn, cfg.rows, false).await?;
    let idle = migrate_child(cfg.wraith.as_deref(), &idle_dsn, spec_path, &[]).await?;

    let scaling = threads_scaling(cfg, server, spec_path, say).await?;

    say(&format!(
        "bench: workload at {} tx/s ({} sessions): {} s before, during, {} s after",
        cfg.tps,
        cfg.clients,
        cfg.window.as_secs(),
        cfg.window.as_secs()
    ));
    let dsn = server.database("loaded").await?;
    scenario.load(engine, &dsn, cfg.rows, true).await?;
    let load = scenario.start_workload(engine, &dsn, cfg).await?;
    let before_start = unix_us() as u64;
    tokio::time::sleep(cfg.window).await;
    let t = Instant::now();
    let migration_start = unix_us() as u64;
    let loaded = migrate_child(cfg.wraith.as_deref(), &dsn, spec_path, &cfg.migrate_args).await;
    let loaded_wall = t.elapsed();
    let migration_end = unix_us() as u64;
    tokio::time::sleep(cfg.window).await;
    let after_end = unix_us() as u64;
    let stats = load.stop().await;
    let loaded = loaded?;
    let diff = scenario.diff(engine, &dsn).await?;
    let failed = stats.failed.load(Relaxed);
    let pt_osc_loaded = match pt_osc {
        Some(_) => Some(pt_osc_under_load(cfg, server, migration, say).await?),
        None => None,
    };

    // Windows by when transactions ran: one that overlaps the cutover (it may have
    // waited for the lock) counts there.
    let l = &loaded.summary;
    let cut_start = phase_start(l, "cutover").unwrap_or(migration_end);
    let cut_end = phase_start(l, "cleanup").unwrap_or(migration_end);
    let in_cutover = |s: u64, e: u64| e >= cut_start && s <= cut_end;
    let before =
        stats.window(|s, e| !in_cutover(s, e) && s >= before_start && s < migration_start)?;
    let during = stats.window(|s, e| !in_cutover(s, e) && s >= migration_start && s < cut_start)?;
    let cutover = stats.window(in_cutover)?;
    let after = stats.window(|s, e| !in_cutover(s, e) && s > cut_end && s < after_end)?;
    let span = |a: u64, b: u64| Duration::from_micros(b.saturating_sub(a));

    let num = |v: &serde_json::Value, k: &str| v[k].as_f64().unwrap_or(0.0);
    let idle_total = num(&idle.summary, "total_ms");
    let idle_verify = num(&idle.summary, "verify_ms");
    let p99_before = before.value_at_quantile(0.99) as f64;
    let ratio = |v: f64| offline.map(|o| v / ms(o).max(0.001));
    Ok(serde_json::json!({
        "scenario": scenario.describe(cfg.rows),
        "rows": cfg.rows,
        "table_mb": bytes as f64 / 1048576.0,
        "server": server.describe(),
        "offline_alter": match engine {
            Engine::Postgres => "offline ALTER TABLE",
            Engine::MySql => "ALTER ... ALGORITHM=COPY",
        },
        "offline_alter_ms": offline.map(|o| ms(o).round()),
        "pt_osc_ms": pt_osc.map(|o| ms(o).round()),
        "idle_ratio_vs_pt_osc": pt_osc.map(|o| idle_total / ms(o).max(0.001)),
        "idle": idle.summary,
        "idle_ratio_vs_offline": ratio(idle_total),
        "idle_ratio_without_verification": ratio(idle_total - idle_verify),
        "idle_peak_rss_mb": idle.peak_rss_kb / 1024,
        "threads_scaling": scaling,
        "loaded": loaded.summary,
        "loaded_wall_ms": ms(loaded_wall).round(),
        "loaded_migrate_args": cfg.migrate_args.join(" "),
        "loaded_peak_rss_mb": loaded.peak_rss_kb / 1024,
        "copy_rows_per_sec": num(l, "copy_rows_per_sec"),
        "copy_mb_per_sec": bytes as f64 / 1048576.0 / (num(l, "copy_ms") / 1000.0).max(0.001),
        "apply_keys_per_sec": num(l, "keys_applied") / (num(l, "total_ms") / 1000.0).max(0.001),
        "apply_lag_p50_ms": num(l, "apply_lag_p50_ms"),
        "apply_lag_p99_ms": num(l, "apply_lag_p99_ms"),
        "apply_lag_max_ms": num(l, "max_apply_lag_ms"),
        "cutover_write_stall_ms": num(l, "cutover_lock_wait_ms") + num(l, "cutover_hold_ms"),
        "verification_ms": num(l, "verify_ms"),
        "workload_tps_target": cfg.tps,
        "workload_clients": cfg.clients,
        "workload_before": latency(&before, span(before_start, migration_start)),
        "workload_during_copy": latency(&during, span(migration_start, cut_start)),
        "workload_during_cutover": latency(&cutover, span(cut_start, cut_end)),
        "workload_after": latency(&after, span(cut_end, after_end)),
        "workload_p99_ratio": if p99_before > 0.0 { during.value_at_quantile(0.99) as f64 / p99_before } else { 0.0 },
        "workload_failed": failed,
        "workload_errors": stats.errors(),
        "rows_differing_from_mirror": diff,
        "pt_osc_loaded": pt_osc_loaded,
    }))
}

/// wraith at idle with each of `cfg.threads` copy threads, each on a database of
/// its own: copy and verification time, rows/s and MB/s, and the speedup over
/// the first count.
async fn threads_scaling(
    cfg: &BenchConfig,
    server: &mut Server,
    spec_path: &str,
    say: &dyn Fn(&str),
) -> anyhow::Result<Vec<serde_json::Value>> {
    let engine = server.engine();
    let num = |v: &serde_json::Value, k: &str| v[k].as_f64().unwrap_or(0.0);
    let mut out: Vec<serde_json::Value> = Vec::new();
    let mut first_copy_ms = None;
    for &n in &cfg.threads {
        say(&format!("bench: wraith at idle with {n} copy threads"));
        let dsn = server.database(&format!("threads_{n}")).await?;
        let bytes = cfg.scenario.load(engine, &dsn, cfg.rows, false).await?;
        let args = ["--threads".to_string(), n.to_string()];
        let run = migrate_child(cfg.wraith.as_deref(), &dsn, spec_path, &args).await?;
        let s = &run.summary;
        let copy_ms = num(s, "copy_ms").max(0.001);
        let first = *first_copy_ms.get_or_insert(copy_ms);
        out.push(serde_json::json!({
            "threads": n,
            "total_ms": num(s, "total_ms"),
            "copy_ms": num(s, "copy_ms"),
            "verify_ms": num(s, "verify_ms"),
            "verify_share_of_copy": num(s, "verify_ms") / copy_ms,
            "copy_rows_per_sec": num(s, "copy_rows_per_sec"),
            "copy_mb_per_sec": bytes as f64 / 1048576.0 / (copy_ms / 1000.0),
            "copy_speedup": first / copy_ms,
            "chunks_in_flight_peak": num(s, "chunks_in_flight_peak"),
            "peak_rss_mb": run.peak_rss_kb / 1024,
        }));
    }
    Ok(out)
}

/// pt-online-schema-change under the same workload on the same data: how long it
/// takes, what the workload saw meanwhile, and whether the result equals the mirror.
async fn pt_osc_under_load(
    cfg: &BenchConfig,
    server: &mut Server,
    migration: &SpecFile,
    say: &dyn Fn(&str),
) -> anyhow::Result<serde_json::Value> {
    let (scenario, engine) = (cfg.scenario, server.engine());
    say(&format!(
        "bench: {} under the same workload",
        mysql_bench::PT_OSC
    ));
    let dsn = server.database("ptosc_loaded").await?;
    scenario.load(engine, &dsn, cfg.rows, true).await?;
    let load = scenario.start_workload(engine, &dsn, cfg).await?;
    tokio::time::sleep(cfg.window.min(Duration::from_secs(2))).await;
    let start = unix_us() as u64;
    let ran = mysql_bench::pt_osc(&dsn, scenario.table(), &migration.alter).await;
    let end = unix_us() as u64;
    tokio::time::sleep(Duration::from_secs(1)).await;
    let stats = load.stop().await;
    let during = stats.window(|s, e| e >= start && s <= end)?;
    let diff = match &ran {
        Ok(_) => Some(scenario.diff(engine, &dsn).await?),
        Err(_) => None,
    };
    let mut errors = stats.errors();
    errors.truncate(5);
    Ok(serde_json::json!({
        "ms": ran.as_ref().ok().map(|d| (d.as_secs_f64() * 1000.0).round()),
        "error": ran.as_ref().err().map(|e| format!("{e:#}")),
        "workload_during": latency(&during, Duration::from_micros(end.saturating_sub(start))),
        "workload_failed": stats.failed.load(Relaxed),
        "workload_errors": errors,
        "rows_differing_from_mirror": diff,
    }))
}

/// The spec's change as one offline `ALTER TABLE` (with its preparatory DDL and
/// indexes), ending, like wraith, with its new constraints validated.
async fn offline_alter(
    c: &tokio_postgres::Client,
    table: &str,
    migration: &SpecFile,
) -> anyhow::Result<Duration> {
    let t = Instant::now();
    let q = ident(table);
    c.batch_execute("BEGIN").await.db("begin")?;
    for stmt in &migration.prepare {
        c.batch_execute(stmt).await.db("offline: preparatory DDL")?;
    }
    c.batch_execute(&format!("ALTER TABLE {q} {}", migration.alter))
        .await
        .db("offline ALTER TABLE")?;
    for stmt in &migration.shadow {
        c.batch_execute(&stmt.replace("{shadow}", &q))
            .await
            .db("offline: index")?;
    }
    c.batch_execute("COMMIT").await.db("commit")?;
    crate::pg::shadow::validate_constraints(c, &q).await?;
    Ok(t.elapsed())
}
