//! `wraith bench`: wraith against an offline `ALTER TABLE` of the same table, at
//! idle and under a steady write load, on a scratch PostgreSQL, all in one run so
//! the figures compare as ratios. The migration runs as a child `wraith migrate`
//! process, so its peak memory is its own.

use std::sync::atomic::Ordering::Relaxed;
use std::time::{Duration, Instant};

use anyhow::Context;
use tokio_postgres::Client;

use crate::bench::workload::{self, Workload};
use crate::bench::workload::{ITEMS_ALTER, ITEMS_EXPECTED};
use crate::pg::conn::DbResult;
use crate::sandbox::PgSandbox;

#[derive(Debug, Clone)]
pub struct BenchConfig {
    pub rows: i64,
    pub tps: u64,
    pub clients: usize,
    pub baseline: Duration,
    /// Copy rate cap for the loaded run.
    pub max_rows_per_sec: Option<u64>,
    pub json: bool,
}

/// One `wraith migrate` child run.
struct ChildRun {
    summary: serde_json::Value,
    peak_rss_kb: u64,
}

pub async fn run(cfg: BenchConfig) -> anyhow::Result<()> {
    let say = |s: &str| {
        if !cfg.json {
            eprintln!("{s}");
        }
    };
    say("bench: starting a scratch PostgreSQL");
    let pg = PgSandbox::start().await?;
    let dsn = pg.create_database("bench").await?;
    let c = pg.connect("bench").await?;
    say(&format!("bench: loading {} rows", cfg.rows));
    crate::bench::workload::create_items_scenario(&c, cfg.rows).await?;

    say("bench: offline ALTER TABLE on an identical copy");
    copy_table(&c, "items", "items_offline").await?;
    let t = Instant::now();
    c.batch_execute(&format!("ALTER TABLE items_offline {ITEMS_ALTER}"))
        .await
        .db("offline ALTER TABLE")?;
    let offline = t.elapsed();
    let t = Instant::now();
    c.batch_execute(
        "CREATE TABLE items_floor AS SELECT id::bigint, owner_id, status::item_status, amount, note, \
           payload::jsonb, flags, blob, created_at, now() AS updated_at FROM items; \
         ALTER TABLE items_floor ADD PRIMARY KEY (id)",
    )
    .await
    .db("CREATE TABLE AS floor")?;
    let floor = t.elapsed();
    c.batch_execute("DROP TABLE items_offline, items_floor; CHECKPOINT")
        .await
        .db("dropping the reference tables")?;

    say("bench: wraith at idle");
    copy_table(&c, "items", "items_idle").await?;
    let idle = migrate_child(&dsn, "items_idle", None).await?;

    say(&format!(
        "bench: workload at {} tx/s ({} sessions): {} s baseline",
        cfg.tps,
        cfg.clients,
        cfg.baseline.as_secs()
    ));
    let load = Workload::start(crate::bench::workload::items_workload(
        &dsn,
        cfg.rows,
        cfg.clients,
        cfg.tps,
    ))
    .await?;
    tokio::time::sleep(cfg.baseline).await;
    let before = load.stats.take_histogram();
    let before_committed = load.stats.committed.load(Relaxed);
    load.stats.take_max_latency();
    say("bench: wraith under load");
    let t = Instant::now();
    let loaded = migrate_child(&dsn, "items", cfg.max_rows_per_sec).await;
    let loaded_wall = t.elapsed();
    let during = load.stats.take_histogram();
    let worst_during = load.stats.take_max_latency();
    let during_committed = load.stats.committed.load(Relaxed) - before_committed;
    tokio::time::sleep(Duration::from_secs(1)).await;
    let stats = load.stop().await;
    let loaded = loaded?;
    let diff = workload::diff_count(
        &c,
        ITEMS_EXPECTED,
        "SELECT id, owner_id, status::text, amount, note, payload, flags, blob, created_at FROM items",
    )
    .await?;
    let failed = stats.failed.load(Relaxed);

    let ms = |d: Duration| d.as_secs_f64() * 1000.0;
    let p99_before = before.value_at_quantile(0.99) as f64 / 1000.0;
    let p99_during = during.value_at_quantile(0.99) as f64 / 1000.0;
    let idle_total = idle.summary["total_ms"].as_f64().unwrap_or(0.0);
    let report = serde_json::json!({
        "rows": cfg.rows,
        "server": "PostgreSQL sandbox (fsync off), same machine",
        "offline_alter_ms": ms(offline).round(),
        "floor_ctas_pk_ms": ms(floor).round(),
        "idle": idle.summary,
        "idle_ratio_vs_offline": idle_total / ms(offline),
        "idle_peak_rss_mb": idle.peak_rss_kb / 1024,
        "loaded": loaded.summary,
        "loaded_wall_ms": ms(loaded_wall).round(),
        "loaded_peak_rss_mb": loaded.peak_rss_kb / 1024,
        "workload_tps_target": cfg.tps,
        "loaded_max_rows_per_sec": cfg.max_rows_per_sec,
        "workload_tps_during": during_committed as f64 / loaded_wall.as_secs_f64(),
        "workload_p99_before_ms": p99_before,
        "workload_p99_during_ms": p99_during,
        "workload_p99_ratio": if p99_before > 0.0 { p99_during / p99_before } else { 0.0 },
        "workload_worst_during_ms": ms(worst_during),
        "workload_failed": failed,
        "rows_differing_from_mirror": diff,
    });
    pg.stop().await;
    if cfg.json {
        println!("{report:#}");
    } else {
        let l = &report["loaded"];
        println!(
            "wraith bench: {} rows, {} (2 cores)",
            cfg.rows,
            report["server"].as_str().unwrap_or("")
        );
        println!("  offline ALTER TABLE:          {:>8.0} ms", ms(offline));
        println!("  floor (CREATE TABLE AS + PK): {:>8.0} ms", ms(floor));
        let idle_verify = idle.summary["verify_ms"].as_f64().unwrap_or(0.0);
        println!(
            "  wraith at idle:               {:>8.0} ms  = {:.2}x offline ALTER ({:.2}x without verification; copy {:.0} rows/s), peak memory {} MB",
            idle_total,
            idle_total / ms(offline),
            (idle_total - idle_verify) / ms(offline),
            idle.summary["copy_rows_per_sec"].as_f64().unwrap_or(0.0),
            idle.peak_rss_kb / 1024
        );
        println!(
            "  wraith under {} tx/s{}: {:>8} ms total, copy {} rows/s, max apply lag {} ms, peak memory {} MB",
            cfg.tps,
            cfg.max_rows_per_sec
                .map(|r| format!(" (copy capped at {r} rows/s)"))
                .unwrap_or_default(),
            l["total_ms"],
            l["copy_rows_per_sec"],
            l["max_apply_lag_ms"],
            loaded.peak_rss_kb / 1024
        );
        println!(
            "  verification (idle):          {} ms for {} rows = {:.0}% of the copy time ({} ms)",
            idle.summary["verify_ms"],
            idle.summary["verify_rows"],
            100.0 * idle.summary["verify_ms"].as_f64().unwrap_or(0.0)
                / idle.summary["copy_ms"].as_f64().unwrap_or(1.0).max(1.0),
            idle.summary["copy_ms"]
        );
        println!(
            "  cutover:                      lock wait {} ms, writes blocked {} ms, {} retries",
            l["cutover_lock_wait_ms"], l["cutover_hold_ms"], l["cutover_retries"]
        );
        println!(
            "  workload p99:                 {p99_before:.2} ms before, {p99_during:.2} ms during ({:.2}x); worst {:.0} ms",
            report["workload_p99_ratio"].as_f64().unwrap_or(0.0),
            ms(worst_during)
        );
        println!(
            "  workload:                     {:.0} tx/s achieved during the migration, {failed} failed",
            report["workload_tps_during"].as_f64().unwrap_or(0.0)
        );
        println!("  check:                        {diff} rows differ from the mirror");
    }
    if diff != 0 || failed != 0 {
        anyhow::bail!(
            "bench: the result is wrong ({diff} rows differ, {failed} transactions failed)"
        );
    }
    Ok(())
}

async fn copy_table(c: &Client, from: &str, to: &str) -> anyhow::Result<()> {
    c.batch_execute(&format!(
        "CREATE TABLE {to} (LIKE {from} INCLUDING ALL); INSERT INTO {to} SELECT * FROM {from}"
    ))
    .await
    .db("copying the benchmark table")?;
    // Separate statements: VACUUM cannot run inside the implicit transaction of a batch.
    c.batch_execute(&format!("VACUUM ANALYZE {to}"))
        .await
        .db("vacuuming the copy")?;
    c.batch_execute("CHECKPOINT").await.db("checkpoint")
}

/// Runs `wraith migrate --execute --json` as a child, watching its peak memory.
async fn migrate_child(
    dsn: &str,
    table: &str,
    max_rows_per_sec: Option<u64>,
) -> anyhow::Result<ChildRun> {
    let exe = std::env::current_exe().context("locating the wraith binary")?;
    let mut args: Vec<String> = [
        "migrate",
        "--dsn",
        dsn,
        "--table",
        table,
        "--alter",
        ITEMS_ALTER,
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
