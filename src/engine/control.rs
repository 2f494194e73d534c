//! Live control of a run: the knobs `wraith ctl` turns while it runs (throttle,
//! chunk time, limits, postponed cutover, abort) and the status it reads.
//!
//! The copy, the throttle monitor and the cutover read these knobs; the control
//! socket ([`crate::ctl`]) writes them. Nothing here touches the database.

use std::path::PathBuf;
use std::sync::Arc;
use std::sync::Mutex;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering::Relaxed};
use std::time::Duration;

use crate::engine::Stats;
use crate::plan::RunOptions;

/// Knobs shared by the run and its control socket.
#[derive(Debug)]
pub struct Control {
    /// `ctl throttle`: pause the copy until `ctl no-throttle`.
    user_throttle: AtomicBool,
    chunk_time_ms: AtomicU64,
    /// Copy workers.
    threads: AtomicU64,
    /// 0: no limit.
    max_lag_ms: AtomicU64,
    /// 0: no limit.
    max_load: AtomicU64,
    /// `--postpone-cutover`: the cutover waits for `ctl cutover`.
    postpone: bool,
    /// `--postpone-cutover-flag-file`: the cutover waits while it exists.
    postpone_flag_file: Option<PathBuf>,
    /// `ctl cutover` was sent: neither of the above holds the cutover any more.
    released: AtomicBool,
    /// Set by `ctl abort` or a guard (critical load, slot lag); checked at every safe point.
    abort: Arc<AtomicBool>,
    /// Why the run was stopped, when a guard (not the user) stopped it.
    abort_reason: Mutex<Option<String>>,
    /// The copy's pace, 0.0 (paused) to 1.0 (full speed); the reason is in [`Stats`].
    pace: Mutex<f64>,
}

impl Control {
    pub fn new(opts: &RunOptions, abort: Arc<AtomicBool>) -> Control {
        Control {
            user_throttle: AtomicBool::new(false),
            chunk_time_ms: AtomicU64::new(opts.chunk_time.as_millis() as u64),
            threads: AtomicU64::new(opts.threads.max(1) as u64),
            max_lag_ms: AtomicU64::new(opts.throttle.max_lag.map_or(0, |d| d.as_millis() as u64)),
            max_load: AtomicU64::new(opts.throttle.max_load.unwrap_or(0)),
            postpone: opts.postpone_cutover,
            postpone_flag_file: opts.postpone_flag_file.clone(),
            released: AtomicBool::new(false),
            abort,
            abort_reason: Mutex::new(None),
            pace: Mutex::new(1.0),
        }
    }

    pub fn user_throttled(&self) -> bool {
        self.user_throttle.load(Relaxed)
    }

    pub fn set_user_throttle(&self, on: bool) {
        self.user_throttle.store(on, Relaxed);
    }

    pub fn chunk_time(&self) -> Duration {
        Duration::from_millis(self.chunk_time_ms.load(Relaxed).max(1))
    }

    pub fn set_chunk_time(&self, d: Duration) {
        self.chunk_time_ms.store(d.as_millis() as u64, Relaxed);
    }

    /// Copy workers wanted now (at least 1).
    pub fn threads(&self) -> usize {
        self.threads.load(Relaxed).max(1) as usize
    }

    pub fn set_threads(&self, n: usize) {
        self.threads.store(n.max(1) as u64, Relaxed);
    }

    pub fn max_lag(&self) -> Option<Duration> {
        match self.max_lag_ms.load(Relaxed) {
            0 => None,
            ms => Some(Duration::from_millis(ms)),
        }
    }

    pub fn set_max_lag(&self, d: Duration) {
        self.max_lag_ms.store(d.as_millis() as u64, Relaxed);
    }

    pub fn max_load(&self) -> Option<u64> {
        match self.max_load.load(Relaxed) {
            0 => None,
            n => Some(n),
        }
    }

    pub fn set_max_load(&self, n: u64) {
        self.max_load.store(n, Relaxed);
    }

    /// The cutover must wait: postponed and not released yet.
    pub fn postponed(&self) -> bool {
        !self.released.load(Relaxed)
            && (self.postpone || self.postpone_flag_file.as_ref().is_some_and(|f| f.exists()))
    }

    /// `ctl cutover`: the postponed cutover may proceed (the flag file no longer counts).
    pub fn release_cutover(&self) {
        self.released.store(true, Relaxed);
    }

    /// Stops the run at its next safe point; `reason` for a guard, `None` for the user.
    pub fn abort(&self, reason: Option<String>) {
        if let Some(r) = reason {
            let mut slot = self.abort_reason.lock().unwrap_or_else(|e| e.into_inner());
            slot.get_or_insert(r);
        }
        self.abort.store(true, Relaxed);
    }

    pub fn aborted(&self) -> bool {
        self.abort.load(Relaxed)
    }

    pub fn abort_reason(&self) -> Option<String> {
        self.abort_reason
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .clone()
    }

    /// The copy's current pace: 0.0 paused, 1.0 full speed.
    pub fn pace(&self) -> f64 {
        *self.pace.lock().unwrap_or_else(|e| e.into_inner())
    }

    pub fn set_pace(&self, pace: f64) {
        *self.pace.lock().unwrap_or_else(|e| e.into_inner()) = pace;
    }

    /// `ctl status`: everything a DBA looks at, as JSON.
    pub fn status(&self, stats: &Stats) -> serde_json::Value {
        let copied = stats.rows_copied.load(Relaxed);
        let resumed = stats.rows_resumed.load(Relaxed);
        let estimate = stats.rows_estimate.load(Relaxed).max(copied + resumed);
        let secs = stats.copy_time().as_secs_f64();
        let rate = if secs > 0.0 {
            copied as f64 / secs
        } else {
            0.0
        };
        let eta_secs = (rate > 0.0 && stats.phase() == crate::engine::Phase::Copy)
            .then(|| (estimate - copied - resumed) as f64 / rate);
        let pace = self.pace();
        serde_json::json!({
            "phase": stats.phase().to_string(),
            "elapsed_secs": stats.elapsed().as_secs_f64(),
            "rows_copied": copied,
            "rows_resumed": resumed,
            "rows_estimate": estimate,
            "rows_per_sec": rate,
            "eta_secs": eta_secs,
            "apply_lag_ms": stats.apply_lag_ms.load(Relaxed),
            "replica_lag_ms": stats.replica_lag_ms.load(Relaxed),
            "load": stats.load.load(Relaxed),
            "dirty_keys": stats.dirty_waiting.load(Relaxed),
            "keys_applied": stats.keys_applied.load(Relaxed),
            "keys_refused": stats.keys_refused.load(Relaxed),
            "throttle": {
                "throttled": pace <= 0.0,
                "pace": pace,
                "reason": stats.throttle_reason(),
                "user": self.user_throttled(),
            },
            "chunk_time_ms": self.chunk_time().as_millis() as u64,
            "threads": self.threads(),
            "copy_workers": stats.copy_workers.load(Relaxed),
            "chunk_rows": stats.chunk_rows.load(Relaxed),
            "max_lag_ms": self.max_lag().map(|d| d.as_millis() as u64),
            "max_load": self.max_load(),
            "cutover_postponed": self.postponed(),
            "swapped": stats.swapped.load(Relaxed),
        })
    }
}
