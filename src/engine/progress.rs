//! Live counters of a run, the progress display and the final summary.
//!
//! Counters are atomics written by the copy and apply loops and read by the
//! reporter (a progress bar on a terminal, periodic log lines otherwise) and by
//! whoever wants a status. Nothing here affects the migration itself.

use std::fmt;
use std::io::IsTerminal;
use std::sync::Arc;
use std::sync::Mutex;
use std::sync::atomic::{AtomicBool, AtomicU8, AtomicU64, Ordering::Relaxed};
use std::time::{Duration, Instant};

use hdrhistogram::Histogram;
use indicatif::{ProgressBar, ProgressStyle};

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[repr(u8)]
pub enum Phase {
    Preflight = 0,
    Prepare,
    Copy,
    CatchUp,
    Verify,
    /// Copied and verified; changes keep being applied until the cutover is released.
    Postponed,
    Cutover,
    Cleanup,
    Done,
}

impl Phase {
    fn from_u8(v: u8) -> Phase {
        match v {
            0 => Phase::Preflight,
            1 => Phase::Prepare,
            2 => Phase::Copy,
            3 => Phase::CatchUp,
            4 => Phase::Verify,
            5 => Phase::Postponed,
            6 => Phase::Cutover,
            7 => Phase::Cleanup,
            _ => Phase::Done,
        }
    }
}

impl fmt::Display for Phase {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            Phase::Preflight => "preflight",
            Phase::Prepare => "prepare",
            Phase::Copy => "copy",
            Phase::CatchUp => "catch-up",
            Phase::Verify => "verify",
            Phase::Postponed => "postponed",
            Phase::Cutover => "cutover",
            Phase::Cleanup => "cleanup",
            Phase::Done => "done",
        })
    }
}

/// Counters of one run.
#[derive(Debug)]
pub struct Stats {
    started: Instant,
    phase: AtomicU8,
    pub rows_estimate: AtomicU64,
    pub rows_copied: AtomicU64,
    /// Rows an interrupted run had copied before this one resumed it.
    pub rows_resumed: AtomicU64,
    pub chunks: AtomicU64,
    /// Most copy chunks in flight at once (the copy workers' overlap).
    pub chunks_in_flight_peak: AtomicU64,
    /// Copy workers running now.
    pub copy_workers: AtomicU64,
    pub events_read: AtomicU64,
    pub keys_applied: AtomicU64,
    pub dirty_waiting: AtomicU64,
    /// The way back: keys whose rows the old table cannot hold (reported, parked).
    pub keys_refused: AtomicU64,
    pub apply_lag_ms: AtomicU64,
    pub max_apply_lag_ms: AtomicU64,
    pub cutover_lock_wait_ms: AtomicU64,
    pub cutover_hold_ms: AtomicU64,
    pub cutover_retries: AtomicU64,
    /// Longest time any cutover attempt (granted or not) could have held up a write:
    /// from asking for the lock to releasing it.
    pub cutover_max_stall_ms: AtomicU64,
    /// Sessions ended by `--kill-blockers`.
    pub cutover_blockers_killed: AtomicU64,
    pub swapped: AtomicBool,
    /// Verification: ranges to check in the current pass, ranges checked.
    pub verify_ranges: AtomicU64,
    pub verify_done: AtomicU64,
    pub verify_ms: AtomicU64,
    pub verify_rows: AtomicU64,
    /// Keys found different (and repaired) by verification.
    pub verify_repaired: AtomicU64,
    copy_span: Mutex<(Option<Instant>, Option<Instant>)>,
    /// Apply lag of every heartbeat read back, in milliseconds.
    lag: Mutex<Histogram<u64>>,
    /// When each phase began (unix milliseconds), so load tests can cut their windows.
    phase_started: Mutex<Vec<(Phase, u64)>>,
    /// Throttle signals as last read: replica lag and load (active sessions).
    pub replica_lag_ms: AtomicU64,
    pub load: AtomicU64,
    /// Why the copy is slowed or paused, if it is.
    throttle: Mutex<Option<String>>,
    /// Time the copy spent paused by throttling.
    pub throttled_ms: AtomicU64,
    /// Rows in the copy's current chunk (it follows the chunk time).
    pub chunk_rows: AtomicU64,
}

impl Default for Stats {
    fn default() -> Self {
        Stats {
            started: Instant::now(),
            phase: AtomicU8::new(0),
            rows_estimate: AtomicU64::new(0),
            rows_copied: AtomicU64::new(0),
            rows_resumed: AtomicU64::new(0),
            chunks: AtomicU64::new(0),
            chunks_in_flight_peak: AtomicU64::new(0),
            copy_workers: AtomicU64::new(0),
            events_read: AtomicU64::new(0),
            keys_applied: AtomicU64::new(0),
            dirty_waiting: AtomicU64::new(0),
            keys_refused: AtomicU64::new(0),
            apply_lag_ms: AtomicU64::new(0),
            max_apply_lag_ms: AtomicU64::new(0),
            cutover_lock_wait_ms: AtomicU64::new(0),
            cutover_hold_ms: AtomicU64::new(0),
            cutover_retries: AtomicU64::new(0),
            cutover_max_stall_ms: AtomicU64::new(0),
            cutover_blockers_killed: AtomicU64::new(0),
            swapped: AtomicBool::new(false),
            verify_ranges: AtomicU64::new(0),
            verify_done: AtomicU64::new(0),
            verify_ms: AtomicU64::new(0),
            verify_rows: AtomicU64::new(0),
            verify_repaired: AtomicU64::new(0),
            copy_span: Mutex::new((None, None)),
            lag: Mutex::new(
                Histogram::new_with_bounds(1, 24 * 3_600_000, 2)
                    .expect("static histogram bounds are valid"),
            ),
            phase_started: Mutex::new(Vec::new()),
            replica_lag_ms: AtomicU64::new(0),
            load: AtomicU64::new(0),
            throttle: Mutex::new(None),
            throttled_ms: AtomicU64::new(0),
            chunk_rows: AtomicU64::new(0),
        }
    }
}

impl Stats {
    pub fn phase(&self) -> Phase {
        Phase::from_u8(self.phase.load(Relaxed))
    }

    pub fn set_phase(&self, p: Phase) {
        self.phase.store(p as u8, Relaxed);
        let now = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map(|d| d.as_millis() as u64)
            .unwrap_or(0);
        self.phase_started
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .push((p, now));
        tracing::info!(phase = %p, "phase");
    }

    /// Time since the run started.
    pub fn elapsed(&self) -> Duration {
        self.started.elapsed()
    }

    pub fn set_throttle_reason(&self, reason: Option<String>) {
        *self.throttle.lock().unwrap_or_else(|e| e.into_inner()) = reason;
    }

    pub fn throttle_reason(&self) -> Option<String> {
        self.throttle
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .clone()
    }

    pub fn copy_started(&self) {
        self.span().0 = Some(Instant::now());
    }

    pub fn copy_finished(&self) {
        self.span().1 = Some(Instant::now());
    }

    /// Time spent copying so far (or in total once done).
    pub fn copy_time(&self) -> Duration {
        let (s, e) = *self.span();
        match (s, e) {
            (Some(s), Some(e)) => e - s,
            (Some(s), None) => s.elapsed(),
            _ => Duration::ZERO,
        }
    }

    pub fn record_lag(&self, lag: Duration) {
        let ms = lag.as_millis() as u64;
        self.apply_lag_ms.store(ms, Relaxed);
        self.max_apply_lag_ms.fetch_max(ms, Relaxed);
    }

    /// A heartbeat came back through the stream `lag` after it was sent, its changes applied.
    pub fn record_heartbeat(&self, lag: Duration) {
        self.record_lag(lag);
        let ms = (lag.as_millis() as u64).max(1);
        let mut h = self.lag.lock().unwrap_or_else(|e| e.into_inner());
        let high = h.high();
        let _ = h.record(ms.min(high));
    }

    fn span(&self) -> std::sync::MutexGuard<'_, (Option<Instant>, Option<Instant>)> {
        self.copy_span.lock().unwrap_or_else(|e| e.into_inner())
    }

    pub fn summary(&self) -> Summary {
        let copy = self.copy_time();
        let rows = self.rows_copied.load(Relaxed);
        let lag = self.lag.lock().unwrap_or_else(|e| e.into_inner()).clone();
        Summary {
            heartbeats: lag.len(),
            apply_lag_p50_ms: if lag.is_empty() {
                0
            } else {
                lag.value_at_quantile(0.5)
            },
            apply_lag_p99_ms: if lag.is_empty() {
                0
            } else {
                lag.value_at_quantile(0.99)
            },
            phase_started_unix_ms: self
                .phase_started
                .lock()
                .unwrap_or_else(|e| e.into_inner())
                .iter()
                .map(|(p, t)| (p.to_string(), *t))
                .collect(),
            total: self.started.elapsed(),
            rows_copied: rows,
            rows_resumed: self.rows_resumed.load(Relaxed),
            copy_time: copy,
            copy_rows_per_sec: if copy.as_secs_f64() > 0.0 {
                rows as f64 / copy.as_secs_f64()
            } else {
                0.0
            },
            chunks: self.chunks.load(Relaxed),
            chunks_in_flight_peak: self.chunks_in_flight_peak.load(Relaxed),
            events_read: self.events_read.load(Relaxed),
            keys_applied: self.keys_applied.load(Relaxed),
            max_apply_lag_ms: self.max_apply_lag_ms.load(Relaxed),
            cutover_lock_wait_ms: self.cutover_lock_wait_ms.load(Relaxed),
            cutover_hold_ms: self.cutover_hold_ms.load(Relaxed),
            cutover_retries: self.cutover_retries.load(Relaxed),
            cutover_max_stall_ms: self.cutover_max_stall_ms.load(Relaxed),
            throttled_ms: self.throttled_ms.load(Relaxed),
            cutover_blockers_killed: self.cutover_blockers_killed.load(Relaxed),
            swapped: self.swapped.load(Relaxed),
            verify_time: Duration::from_millis(self.verify_ms.load(Relaxed)),
            verify_rows: self.verify_rows.load(Relaxed),
            verify_repaired: self.verify_repaired.load(Relaxed),
        }
    }
}

/// What a finished run reports.
#[derive(Debug, Clone)]
pub struct Summary {
    pub total: Duration,
    pub rows_copied: u64,
    /// Rows the interrupted run had copied (a resumed run copies only the rest).
    pub rows_resumed: u64,
    pub copy_time: Duration,
    pub copy_rows_per_sec: f64,
    pub chunks: u64,
    /// Most chunks in flight at once.
    pub chunks_in_flight_peak: u64,
    pub events_read: u64,
    pub keys_applied: u64,
    pub max_apply_lag_ms: u64,
    pub cutover_lock_wait_ms: u64,
    pub cutover_hold_ms: u64,
    pub cutover_retries: u64,
    pub cutover_max_stall_ms: u64,
    /// Time the copy spent paused by throttling.
    pub throttled_ms: u64,
    pub cutover_blockers_killed: u64,
    pub swapped: bool,
    pub verify_time: Duration,
    pub verify_rows: u64,
    pub verify_repaired: u64,
    /// Heartbeats read back through the stream, and their lag percentiles.
    pub heartbeats: u64,
    pub apply_lag_p50_ms: u64,
    pub apply_lag_p99_ms: u64,
    /// When each phase began (unix milliseconds; a phase may appear more than once).
    pub phase_started_unix_ms: Vec<(String, u64)>,
}

impl Summary {
    /// The summary for machines (`--json`): durations in milliseconds.
    pub fn to_json(&self) -> serde_json::Value {
        serde_json::json!({
            "total_ms": self.total.as_millis() as u64,
            "rows_copied": self.rows_copied,
            "rows_resumed": self.rows_resumed,
            "copy_ms": self.copy_time.as_millis() as u64,
            "copy_rows_per_sec": self.copy_rows_per_sec.round(),
            "chunks": self.chunks,
            "chunks_in_flight_peak": self.chunks_in_flight_peak,
            "events_read": self.events_read,
            "keys_applied": self.keys_applied,
            "max_apply_lag_ms": self.max_apply_lag_ms,
            "apply_lag_p50_ms": self.apply_lag_p50_ms,
            "apply_lag_p99_ms": self.apply_lag_p99_ms,
            "heartbeats": self.heartbeats,
            "phase_started_unix_ms": self.phase_started_unix_ms
                .iter()
                .map(|(p, t)| serde_json::json!({ "phase": p, "unix_ms": t }))
                .collect::<Vec<_>>(),
            "cutover_lock_wait_ms": self.cutover_lock_wait_ms,
            "cutover_hold_ms": self.cutover_hold_ms,
            "cutover_retries": self.cutover_retries,
            "cutover_max_stall_ms": self.cutover_max_stall_ms,
            "throttled_ms": self.throttled_ms,
            "cutover_blockers_killed": self.cutover_blockers_killed,
            "swapped": self.swapped,
            "verify_ms": self.verify_time.as_millis() as u64,
            "verify_rows": self.verify_rows,
            "verify_repaired_keys": self.verify_repaired,
        })
    }
}

impl fmt::Display for Summary {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        writeln!(f, "total time:        {:.2} s", self.total.as_secs_f64())?;
        writeln!(
            f,
            "rows copied:       {} in {:.2} s ({:.0} rows/s, {} chunks)",
            self.rows_copied,
            self.copy_time.as_secs_f64(),
            self.copy_rows_per_sec,
            self.chunks
        )?;
        if self.rows_resumed > 0 {
            writeln!(
                f,
                "resumed:           after {} rows the interrupted run had copied",
                self.rows_resumed
            )?;
        }
        writeln!(
            f,
            "changes applied:   {} keys re-read ({} row events)",
            self.keys_applied, self.events_read
        )?;
        writeln!(
            f,
            "apply lag:         p50 {} ms, p99 {} ms, max {} ms ({} heartbeats)",
            self.apply_lag_p50_ms, self.apply_lag_p99_ms, self.max_apply_lag_ms, self.heartbeats
        )?;
        if self.verify_time > Duration::ZERO {
            // A run that copied nothing (a revert) has no copy to compare with.
            let share = if self.rows_copied > 0 {
                let pct = 100.0 * self.verify_time.as_secs_f64()
                    / self.copy_time.as_secs_f64().max(0.001);
                format!(" ({pct:.0}% of the copy time)")
            } else {
                String::new()
            };
            writeln!(
                f,
                "verification:      {} rows in {} ms{share}, {} keys repaired",
                self.verify_rows,
                self.verify_time.as_millis(),
                self.verify_repaired
            )?;
        }
        writeln!(
            f,
            "cutover:           lock wait {} ms, writes blocked {} ms, {} retries; \
             longest write stall {} ms",
            self.cutover_lock_wait_ms,
            self.cutover_hold_ms,
            self.cutover_retries,
            self.cutover_max_stall_ms
        )?;
        if self.throttled_ms > 0 {
            writeln!(
                f,
                "throttled:         copy paused {:.1} s in all",
                self.throttled_ms as f64 / 1000.0
            )?;
        }
        Ok(())
    }
}

/// Shows progress until dropped: a bar on a terminal, a log line every few seconds otherwise.
pub struct Reporter {
    stop: Arc<AtomicBool>,
    task: Option<tokio::task::JoinHandle<()>>,
}

impl Reporter {
    pub fn start(stats: Arc<Stats>) -> Reporter {
        let stop = Arc::new(AtomicBool::new(false));
        let flag = stop.clone();
        let bar = std::io::stderr().is_terminal().then(|| {
            let bar = ProgressBar::new(0);
            bar.set_style(
                ProgressStyle::with_template(
                    "{spinner} {prefix:9} [{bar:30}] {human_pos}/{human_len} rows  ETA {eta}  {msg}",
                )
                .unwrap_or_else(|_| ProgressStyle::default_bar())
                .progress_chars("=> "),
            );
            set_bar(Some(bar.clone()));
            bar
        });
        let task = tokio::spawn(async move {
            let mut last_log = Instant::now();
            while !flag.load(Relaxed) {
                let copied = stats.rows_copied.load(Relaxed);
                let secs = stats.copy_time().as_secs_f64();
                let throttle = stats.throttle_reason();
                let msg = format!(
                    "{:.0} rows/s  dirty keys {}  apply lag {} ms{}",
                    if secs > 0.0 {
                        copied as f64 / secs
                    } else {
                        0.0
                    },
                    stats.dirty_waiting.load(Relaxed),
                    stats.apply_lag_ms.load(Relaxed),
                    throttle
                        .as_deref()
                        .map(|r| format!("  throttled: {r}"))
                        .unwrap_or_default()
                );
                let total = stats.rows_estimate.load(Relaxed).max(copied);
                match &bar {
                    Some(bar) => {
                        bar.set_length(total);
                        bar.set_position(copied);
                        bar.set_prefix(stats.phase().to_string());
                        bar.set_message(msg);
                        bar.tick();
                    }
                    None if last_log.elapsed() >= Duration::from_secs(5) => {
                        last_log = Instant::now();
                        tracing::info!(
                            phase = %stats.phase(),
                            rows_copied = copied,
                            rows_total = total,
                            keys_applied = stats.keys_applied.load(Relaxed),
                            dirty_keys = stats.dirty_waiting.load(Relaxed),
                            apply_lag_ms = stats.apply_lag_ms.load(Relaxed),
                            throttle = throttle.as_deref().unwrap_or("no"),
                            "progress"
                        );
                    }
                    None => {}
                }
                tokio::time::sleep(Duration::from_millis(200)).await;
            }
            if let Some(bar) = bar {
                set_bar(None);
                bar.finish_and_clear();
            }
        });
        Reporter {
            stop,
            task: Some(task),
        }
    }

    pub async fn finish(mut self) {
        self.stop.store(true, Relaxed);
        if let Some(t) = self.task.take() {
            let _ = t.await;
        }
    }
}

impl Drop for Reporter {
    fn drop(&mut self) {
        self.stop.store(true, Relaxed);
    }
}

/// The progress bar on screen, if any: log lines are printed around it.
static BAR: Mutex<Option<ProgressBar>> = Mutex::new(None);

fn set_bar(bar: Option<ProgressBar>) {
    *BAR.lock().unwrap_or_else(|e| e.into_inner()) = bar;
}

/// A log writer for stderr that keeps the progress bar intact.
#[derive(Clone, Copy, Default)]
pub struct LogWriter;

impl std::io::Write for LogWriter {
    fn write(&mut self, buf: &[u8]) -> std::io::Result<usize> {
        let bar = BAR.lock().unwrap_or_else(|e| e.into_inner()).clone();
        match bar {
            Some(bar) => bar.suspend(|| std::io::stderr().write_all(buf))?,
            None => std::io::stderr().write_all(buf)?,
        }
        Ok(buf.len())
    }

    fn flush(&mut self) -> std::io::Result<()> {
        std::io::stderr().flush()
    }
}

impl<'a> tracing_subscriber::fmt::MakeWriter<'a> for LogWriter {
    type Writer = LogWriter;

    fn make_writer(&'a self) -> Self::Writer {
        LogWriter
    }
}
