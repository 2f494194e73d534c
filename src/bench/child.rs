//! The benchmark's migrations, each run as a child `wraith migrate` process so
//! its peak memory is its own.

use std::time::Duration;

use anyhow::Context;

use crate::dsn::Dsn;

/// One `wraith migrate` child run.
pub struct ChildRun {
    pub summary: serde_json::Value,
    pub peak_rss_kb: u64,
}

/// Runs `wraith migrate --execute --json` as a child, watching its peak memory.
pub async fn migrate_child(
    wraith: Option<&std::path::Path>,
    dsn: &Dsn,
    spec: &str,
    extra: &[String],
) -> anyhow::Result<ChildRun> {
    let exe = match wraith {
        Some(path) => path.to_path_buf(),
        None => std::env::current_exe().context("locating the wraith binary")?,
    };
    let mut args: Vec<String> = ["migrate", "--spec", spec, "--execute", "--json"]
        .iter()
        .map(|s| s.to_string())
        .collect();
    args.extend(extra.iter().cloned());
    // The DSN goes through the environment: `ps` shows arguments, not that.
    let mut child = tokio::process::Command::new(exe)
        .env("WRAITH_DSN", dsn.expose())
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
