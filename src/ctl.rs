//! The control socket of a running migration, and the `wraith ctl` client.
//!
//! One unix socket per run; a client sends one command line and reads one reply
//! line: JSON for `status`, `ok: ...` or `error: ...` otherwise.

use std::path::{Path, PathBuf};
use std::sync::Arc;

use anyhow::Context;
use tokio::io::{AsyncBufReadExt, AsyncWriteExt, BufReader};
use tokio::net::{UnixListener, UnixStream};

use crate::engine::Stats;
use crate::engine::control::Control;
use crate::error::bad_input;
use crate::plan::{fnv1a, parse_duration};

/// What `wraith ctl` accepts.
pub const COMMANDS: &str = "status, throttle, no-throttle, chunk-time=MS, threads=N, max-lag=MS, max-load=N, cutover, revert, abort";

/// The default socket of a migration: one per server, database and table (the
/// hash tells apart servers whose databases share a name).
pub fn default_socket(dsn: &crate::dsn::Dsn, database: &str, table: &str) -> PathBuf {
    let clean = |s: &str| -> String {
        s.chars()
            .take(40)
            .map(|c| if c.is_ascii_alphanumeric() { c } else { '_' })
            .collect()
    };
    let server = fnv1a(&dsn.to_string());
    std::env::temp_dir().join(format!(
        "wraith-{}-{}-{server:08x}.sock",
        clean(database),
        clean(table)
    ))
}

/// The listening socket; removed when dropped.
pub struct Listener {
    path: PathBuf,
    task: tokio::task::JoinHandle<()>,
}

impl Drop for Listener {
    fn drop(&mut self) {
        self.task.abort();
        let _ = std::fs::remove_file(&self.path);
    }
}

/// Listens on `path`. A socket file nobody answers on (a crashed run's) is
/// replaced; one that answers belongs to a live migration and is refused.
pub async fn listen(
    path: &Path,
    control: Arc<Control>,
    stats: Arc<Stats>,
) -> anyhow::Result<Listener> {
    if path.exists() {
        if UnixStream::connect(path).await.is_ok() {
            return Err(bad_input(format!(
                "the control socket {} is in use by another wraith run on this table; \
                 wait for it, or pick another path with --control-socket",
                path.display()
            )));
        }
        std::fs::remove_file(path)
            .with_context(|| format!("removing the stale control socket {}", path.display()))?;
    }
    let listener = UnixListener::bind(path).map_err(|e| {
        bad_input(format!(
            "cannot create the control socket {}: {e}; pick another path with --control-socket",
            path.display()
        ))
    })?;
    let task = tokio::spawn(async move {
        loop {
            let Ok((stream, _)) = listener.accept().await else {
                continue;
            };
            let (control, stats) = (control.clone(), stats.clone());
            tokio::spawn(async move {
                if let Err(e) = answer(stream, &control, &stats).await {
                    tracing::debug!("control socket: {e:#}");
                }
            });
        }
    });
    Ok(Listener {
        path: path.to_path_buf(),
        task,
    })
}

async fn answer(stream: UnixStream, control: &Control, stats: &Stats) -> anyhow::Result<()> {
    let (read, mut write) = stream.into_split();
    let mut line = String::new();
    BufReader::new(read).read_line(&mut line).await?;
    let reply = execute(line.trim(), control, stats);
    write.write_all(reply.as_bytes()).await?;
    write.write_all(b"\n").await?;
    Ok(())
}

/// Carries out one command; the reply line.
pub fn execute(command: &str, control: &Control, stats: &Stats) -> String {
    let (verb, value) = match command.split_once('=') {
        Some((v, x)) => (v.trim(), Some(x.trim())),
        None => (command, None),
    };
    match (verb, value) {
        ("status", None) => control.status(stats).to_string(),
        ("throttle", None) => {
            control.set_user_throttle(true);
            tracing::info!("ctl: throttle on");
            "ok: the copy pauses until no-throttle".to_string()
        }
        ("no-throttle", None) => {
            control.set_user_throttle(false);
            tracing::info!("ctl: throttle off");
            "ok: the copy resumes (other limits still apply)".to_string()
        }
        ("chunk-time", Some(v)) => match parse_duration(v) {
            Ok(d) if !d.is_zero() => {
                control.set_chunk_time(d);
                tracing::info!("ctl: chunk time {d:?}");
                format!("ok: chunk time {} ms", d.as_millis())
            }
            _ => format!("error: chunk-time wants a duration like 200ms, got {v:?}"),
        },
        ("threads", Some(v)) => match v.parse::<usize>() {
            Ok(n) if n >= 1 => {
                control.set_threads(n);
                tracing::info!("ctl: copy threads {n}");
                format!("ok: {n} copy threads (from the next chunk on)")
            }
            _ => format!("error: threads wants a number of copy threads, 1 or more, got {v:?}"),
        },
        ("max-lag", Some(v)) => match parse_duration(v) {
            Ok(d) => {
                control.set_max_lag(d);
                tracing::info!("ctl: max lag {d:?}");
                format!("ok: max lag {} ms (0: no limit)", d.as_millis())
            }
            Err(e) => format!("error: max-lag: {e}"),
        },
        ("max-load", Some(v)) => match v.parse::<u64>() {
            Ok(n) => {
                control.set_max_load(n);
                tracing::info!("ctl: max load {n}");
                format!("ok: max load {n} (0: no limit)")
            }
            Err(_) => format!("error: max-load wants a number of sessions, got {v:?}"),
        },
        ("cutover", None) => {
            if control.postponed() {
                control.release_cutover();
                tracing::info!("ctl: cutover released");
                "ok: the cutover proceeds once the copy and verification are done".to_string()
            } else {
                "ok: the cutover was not postponed".to_string()
            }
        }
        // A migration kept revertible follows the table into the old one, its
        // swap back held like a postponed cutover.
        ("revert", None) => {
            let refused = stats
                .keys_refused
                .load(std::sync::atomic::Ordering::Relaxed);
            if refused > 0 {
                // Releasing now would end the following with a refusal.
                format!(
                    "error: {refused} row(s) written since the swap do not fit the old table (their \
                     keys are in the log): change or delete them, then ask again"
                )
            } else if control.postponed() {
                control.release_cutover();
                tracing::info!("ctl: revert requested");
                "ok: the old table is swapped back once it is caught up and verified".to_string()
            } else {
                "error: this run is not holding a way back (only `migrate --revertible` after \
                 its swap does)"
                    .to_string()
            }
        }
        ("abort", None) => {
            control.abort(None);
            tracing::warn!("ctl: abort requested");
            "ok: aborting; wraith removes what it created and leaves the table as it was"
                .to_string()
        }
        _ => format!("error: unknown command {command:?}; commands: {COMMANDS}"),
    }
}

/// `wraith ctl`: sends `command` to the run listening on `path`; its reply.
pub async fn send(path: &Path, command: &str) -> anyhow::Result<String> {
    let stream = UnixStream::connect(path).await.map_err(|e| {
        bad_input(format!(
            "no wraith run answers on {} ({e}); the socket path is printed when a migration starts",
            path.display()
        ))
    })?;
    let (read, mut write) = stream.into_split();
    write.write_all(command.trim().as_bytes()).await?;
    write.write_all(b"\n").await?;
    let mut line = String::new();
    BufReader::new(read)
        .read_line(&mut line)
        .await
        .context("reading the reply")?;
    Ok(line.trim_end().to_string())
}
