//! `wraith bench`: the orders migration against the same change done as an offline
//! `ALTER TABLE`, at idle and under a steady write load, on a scratch PostgreSQL,
//! all in one run so the figures compare as ratios. The migration runs as a child
//! `wraith migrate` process, so its peak memory is its own.

use std::sync::atomic::Ordering::Relaxed;
use std::time::{Duration, Instant};

use anyhow::Context;

use hdrhistogram::Histogram;

use crate::bench::workload::{self, Scenario, Workload, WorkloadConfig};
use crate::pg::conn::{self, DbResult};
use crate::sandbox::PgSandbox;
use crate::scenario::orders;

#[derive(Debug, Clone)]
pub struct BenchConfig {
    /// Orders in the scenario.
    pub rows: i64,
    pub tps: u64,
    pub clients: usize,
    /// Load measured before the migration starts, and again after it.
    pub baseline: Duration,
    /// Copy rate cap for the loaded run.
    pub max_rows_per_sec: Option<u64>,
    pub json: bool,
    /// The `wraith` binary that runs the migrations (default: this process's own).
    pub wraith: Option<std::path::PathBuf>,
}

/// One `wraith migrate` child run.
struct ChildRun {
    summary: serde_json::Value,
    peak_rss_kb: u64,
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

/// Runs the benchmark: the orders scenario, one database per measurement, all
/// loaded from the same seed so they hold the same data.
pub async fn run(cfg: BenchConfig) -> anyhow::Result<()> {
    let say = |s: &str| {
        if !cfg.json {
            eprintln!("{s}");
        }
    };
    let spec = tempfile::NamedTempFile::new().context("writing the migration spec")?;
    std::fs::write(spec.path(), orders::MIGRATION).context("writing the migration spec")?;
    let spec_path = spec.path().to_string_lossy().to_string();
    let migration = orders::migration()?;

    say("bench: starting a scratch PostgreSQL");
    let pg = PgSandbox::start().await?;

    say(&format!(
        "bench: {} orders; the same change as an offline ALTER TABLE",
        cfg.rows
    ));
    let offline_dsn = pg.create_database("offline").await?;
    let c = conn::connect(&offline_dsn, "bench").await?;
    orders::load(&c, cfg.rows, 1).await?;
    c.batch_execute("CHECKPOINT").await.db("checkpoint")?;
    let bytes: i64 = c
        .query_one("SELECT pg_table_size('orders')", &[])
        .await
        .db("measuring the table")?
        .get(0);
    let t = Instant::now();
    c.batch_execute("BEGIN").await.db("begin")?;
    for stmt in &migration.prepare {
        c.batch_execute(stmt).await.db("offline: preparatory DDL")?;
    }
    c.batch_execute(&format!("ALTER TABLE orders {}", migration.alter))
        .await
        .db("offline ALTER TABLE")?;
    for stmt in &migration.shadow {
        c.batch_execute(&stmt.replace("{shadow}", "orders"))
            .await
            .db("offline: index")?;
    }
    c.batch_execute("COMMIT").await.db("commit")?;
    // Like wraith, the offline change ends with its new constraints validated.
    let pending: Vec<String> = c
        .query(
            "SELECT quote_ident(conname) FROM pg_constraint WHERE conrelid = 'orders'::regclass AND NOT convalidated",
            &[],
        )
        .await
        .db("offline: listing constraints")?
        .iter()
        .map(|r| r.get(0))
        .collect();
    for name in pending {
        c.batch_execute(&format!("ALTER TABLE orders VALIDATE CONSTRAINT {name}"))
            .await
            .db("offline: validating")?;
    }
    let offline = t.elapsed();

    say("bench: wraith at idle");
    let idle_dsn = pg.create_database("idle").await?;
    let c = conn::connect(&idle_dsn, "bench").await?;
    orders::load(&c, cfg.rows, 1).await?;
    c.batch_execute("CHECKPOINT").await.db("checkpoint")?;
    let idle = migrate_child(cfg.wraith.as_deref(), &idle_dsn, &spec_path, None).await?;

    say(&format!(
        "bench: workload at {} tx/s ({} sessions): {} s before, during, {} s after",
        cfg.tps,
        cfg.clients,
        cfg.baseline.as_secs(),
        cfg.baseline.as_secs()
    ));
    let dsn = pg.create_database("loaded").await?;
    let c = conn::connect(&dsn, "bench").await?;
    orders::load(&c, cfg.rows, 1).await?;
    orders::create_mirror(&c).await?;
    c.batch_execute("CHECKPOINT").await.db("checkpoint")?;
    let load = Workload::start(WorkloadConfig {
        dsn: dsn.clone(),
        table: "orders".into(),
        clients: cfg.clients,
        tps: Some(cfg.tps),
        initial_rows: cfg.rows,
        max_duration: Duration::from_secs(3600),
        key_updates: false,
        scenario: Scenario::Orders,
    })
    .await?;
    tokio::time::sleep(cfg.baseline).await;
    let before = load.stats.take_histogram();
    load.stats.take_max_latency();
    let t = Instant::now();
    let loaded = migrate_child(
        cfg.wraith.as_deref(),
        &dsn,
        &spec_path,
        cfg.max_rows_per_sec,
    )
    .await;
    let loaded_wall = t.elapsed();
    let during = load.stats.take_histogram();
    tokio::time::sleep(cfg.baseline).await;
    let after = load.stats.take_histogram();
    let stats = load.stop().await;
    let loaded = loaded?;
    let diff = workload::diff_count(&c, orders::EXPECTED, orders::ACTUAL).await?;
    let failed = stats.failed.load(Relaxed);

    let ms = |d: Duration| d.as_secs_f64() * 1000.0;
    let num = |v: &serde_json::Value, k: &str| v[k].as_f64().unwrap_or(0.0);
    let idle_total = num(&idle.summary, "total_ms");
    let idle_verify = num(&idle.summary, "verify_ms");
    let l = &loaded.summary;
    let p99_before = before.value_at_quantile(0.99) as f64;
    let report = serde_json::json!({
        "scenario": "orders",
        "rows": cfg.rows,
        "table_mb": bytes as f64 / 1048576.0,
        "server": "PostgreSQL sandbox (fsync off), same machine",
        "offline_alter_ms": ms(offline).round(),
        "idle": idle.summary,
        "idle_ratio_vs_offline": idle_total / ms(offline),
        "idle_ratio_without_verification": (idle_total - idle_verify) / ms(offline),
        "idle_peak_rss_mb": idle.peak_rss_kb / 1024,
        "loaded": loaded.summary,
        "loaded_peak_rss_mb": loaded.peak_rss_kb / 1024,
        "copy_rows_per_sec": num(l, "copy_rows_per_sec"),
        "copy_mb_per_sec": bytes as f64 / 1048576.0 / (num(l, "copy_ms") / 1000.0).max(0.001),
        "apply_keys_per_sec": num(l, "keys_applied") / (num(l, "total_ms") / 1000.0).max(0.001),
        "apply_lag_max_ms": num(l, "max_apply_lag_ms"),
        "cutover_write_stall_ms": num(l, "cutover_lock_wait_ms") + num(l, "cutover_hold_ms"),
        "verification_ms": num(l, "verify_ms"),
        "workload_tps_target": cfg.tps,
        "workload_before": latency(&before, cfg.baseline),
        "workload_during": latency(&during, loaded_wall),
        "workload_after": latency(&after, cfg.baseline),
        "workload_p99_ratio": if p99_before > 0.0 { during.value_at_quantile(0.99) as f64 / p99_before } else { 0.0 },
        "workload_failed": failed,
        "rows_differing_from_mirror": diff,
    });
    pg.stop().await;
    if cfg.json {
        println!("{report:#}");
    } else {
        print_report(&report);
    }
    if diff != 0 || failed != 0 {
        anyhow::bail!(
            "bench: the result is wrong ({diff} rows differ, {failed} transactions failed)"
        );
    }
    Ok(())
}

fn print_report(r: &serde_json::Value) {
    let f = |v: &serde_json::Value| v.as_f64().unwrap_or(0.0);
    let lat = |v: &serde_json::Value| {
        format!(
            "p50 {:.2} ms, p99 {:.2} ms, max {:.0} ms, {:.0} tx/s",
            f(&v["p50_ms"]),
            f(&v["p99_ms"]),
            f(&v["max_ms"]),
            f(&v["tps"])
        )
    };
    let (idle, l) = (&r["idle"], &r["loaded"]);
    println!(
        "wraith bench: orders scenario, {} orders ({:.0} MB), {}",
        r["rows"],
        f(&r["table_mb"]),
        r["server"].as_str().unwrap_or("")
    );
    println!(
        "  offline ALTER TABLE:        {:>8.0} ms",
        f(&r["offline_alter_ms"])
    );
    println!(
        "  wraith at idle:             {:>8.0} ms = {:.2}x offline ({:.2}x without verification), peak memory {} MB",
        f(&idle["total_ms"]),
        f(&r["idle_ratio_vs_offline"]),
        f(&r["idle_ratio_without_verification"]),
        r["idle_peak_rss_mb"]
    );
    println!(
        "  wraith under {} tx/s:       {:>8.0} ms; copy {:.0} rows/s ({:.1} MB/s); apply {:.0} keys/s, max lag {:.0} ms; peak memory {} MB",
        r["workload_tps_target"],
        f(&l["total_ms"]),
        f(&r["copy_rows_per_sec"]),
        f(&r["copy_mb_per_sec"]),
        f(&r["apply_keys_per_sec"]),
        f(&r["apply_lag_max_ms"]),
        r["loaded_peak_rss_mb"]
    );
    println!(
        "  verification:               {:>8.0} ms ({:.0}% of the copy time)",
        f(&r["verification_ms"]),
        100.0 * f(&r["verification_ms"]) / f(&l["copy_ms"]).max(1.0)
    );
    println!(
        "  cutover write stall:        {:>8.0} ms (lock wait {} ms, writes blocked {} ms, {} retries)",
        f(&r["cutover_write_stall_ms"]),
        l["cutover_lock_wait_ms"],
        l["cutover_hold_ms"],
        l["cutover_retries"]
    );
    println!(
        "  workload before:            {}",
        lat(&r["workload_before"])
    );
    println!(
        "  workload during:            {} (p99 {:.2}x)",
        lat(&r["workload_during"]),
        f(&r["workload_p99_ratio"])
    );
    println!(
        "  workload after:             {}",
        lat(&r["workload_after"])
    );
    println!(
        "  workload errors:            {}; rows differing from the mirror: {}",
        r["workload_failed"], r["rows_differing_from_mirror"]
    );
}

/// Runs `wraith migrate --execute --json` as a child, watching its peak memory.
async fn migrate_child(
    wraith: Option<&std::path::Path>,
    dsn: &str,
    spec: &str,
    max_rows_per_sec: Option<u64>,
) -> anyhow::Result<ChildRun> {
    let exe = match wraith {
        Some(path) => path.to_path_buf(),
        None => std::env::current_exe().context("locating the wraith binary")?,
    };
    let mut args: Vec<String> = [
        "migrate",
        "--dsn",
        dsn,
        "--spec",
        spec,
        "--execute",
        "--json",
    ]
    .iter()
    .map(|s| s.to_string())
    .collect();
    if let Some(rate) = max_rows_per_sec {
        args.extend(["--max-rows-per-sec".to_string(), rate.to_string()]);
    }
    let mut child = tokio::process::Command::new(exe)
        .args(&args)
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::piped())
        .spawn()
        .context("starting wraith migrate")?;
    let pid = child.id().unwrap_or_default();
    let mut peak = 0u64;
    let stdout = child.stdout.take();
    let stderr = child.stderr.take();
    let out_task = tokio::spawn(read_all(stdout));
    let err_task = tokio::spawn(read_all(stderr));
    let status = loop {
        peak = peak.max(peak_rss_kb(pid));
        tokio::select! {
            s = child.wait() => break s.context("waiting for wraith migrate")?,
            _ = tokio::time::sleep(Duration::from_millis(20)) => {}
        }
    };
    let out = out_task.await.unwrap_or_default();
    let err = err_task.await.unwrap_or_default();
    if !status.success() {
        anyhow::bail!("wraith migrate failed ({status}):\n{err}");
    }
    if std::env::var_os("WRAITH_BENCH_LOG").is_some() {
        eprintln!("{err}");
    }
    let summary =
        serde_json::from_str(out.trim()).with_context(|| format!("reading the summary: {out}"))?;
    Ok(ChildRun {
        summary,
        peak_rss_kb: peak,
    })
}

async fn read_all<R: tokio::io::AsyncRead + Unpin>(r: Option<R>) -> String {
    use tokio::io::AsyncReadExt;
    let mut s = String::new();
    if let Some(mut r) = r {
        let _ = r.read_to_string(&mut s).await;
    }
    s
}

/// VmHWM (peak resident memory) of a running process, from /proc.
fn peak_rss_kb(pid: u32) -> u64 {
    std::fs::read_to_string(format!("/proc/{pid}/status"))
        .ok()
        .and_then(|s| {
            s.lines()
                .find(|l| l.starts_with("VmHWM:"))
                .and_then(|l| l.split_whitespace().nth(1).and_then(|v| v.parse().ok()))
        })
        .unwrap_or(0)
}
