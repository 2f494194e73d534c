//! Throttling that paces instead of stop/go, and the guards that stop a run.
//!
//! A monitor reads the server's signals every `interval` and sets the copy's pace:
//! full speed while every signal is under half its limit, slowing in proportion
//! above that, paused at the limit (and while the flag file exists, the throttle
//! query returns more than 0, or `ctl throttle` is on). The apply is never
//! throttled: it keeps the shadow current whatever the copy does.
//!
//! Guards abort cleanly: load at `--critical-load` for several checks in a row,
//! and (PostgreSQL) WAL retained by the slot at twice `--max-slot-lag`.

use std::sync::Arc;
use std::sync::atomic::Ordering::Relaxed;
use std::time::Duration;

use crate::engine::control::Control;
use crate::engine::{Signals, Stats};
use crate::plan::ThrottleOptions;

/// The slowest pace short of a pause: the copy still moves while near a limit.
const MIN_PACE: f64 = 0.05;

/// One reading of the signals (`None`: not configured or not measurable).
#[derive(Debug, Default, Clone)]
pub struct Reading {
    pub user: bool,
    pub flag_file: Option<String>,
    pub query: Option<f64>,
    pub replica_lag: Option<Duration>,
    pub load: Option<u64>,
    pub retained_wal: Option<u64>,
    /// A configured signal could not be read: pause, as the safe default.
    pub error: Option<String>,
}

/// Limits in force (the live ones from [`Control`], the rest from the options).
#[derive(Debug, Default, Clone)]
pub struct Limits {
    pub max_lag: Option<Duration>,
    pub max_load: Option<u64>,
    pub max_slot_lag: Option<u64>,
}

/// The pace (0 paused .. 1 full speed) a reading allows, and why it is below 1.
pub fn assess(r: &Reading, l: &Limits) -> (f64, Option<String>) {
    if r.user {
        return (0.0, Some("ctl throttle".into()));
    }
    if let Some(f) = &r.flag_file {
        return (0.0, Some(format!("flag file {f} exists")));
    }
    if let Some(e) = &r.error {
        return (0.0, Some(e.clone()));
    }
    if let Some(v) = r.query.filter(|v| *v > 0.0) {
        return (0.0, Some(format!("throttle query returned {v}")));
    }
    let mut pace = 1.0;
    let mut reason = None;
    let lag_ms = |d: Duration| d.as_millis() as f64;
    let measures = [
        (
            "replica lag",
            r.replica_lag.map(lag_ms),
            l.max_lag.map(lag_ms),
            " ms",
        ),
        (
            "load",
            r.load.map(|v| v as f64),
            l.max_load.map(|v| v as f64),
            "",
        ),
        (
            "WAL retained by the slot",
            r.retained_wal.map(|v| v as f64),
            l.max_slot_lag.map(|v| v as f64),
            " bytes",
        ),
    ];
    for (name, value, limit, unit) in measures {
        let (Some(v), Some(max)) = (value, limit) else {
            continue;
        };
        let p = if v >= max {
            0.0
        } else if v <= max / 2.0 {
            1.0
        } else {
            ((max - v) / (max / 2.0)).max(MIN_PACE)
        };
        if p < pace {
            pace = p;
            let verb = if p == 0.0 { "paused" } else { "slowed" };
            reason = Some(format!("{verb}: {name} {v:.0}{unit} (max {max:.0}{unit})"));
        }
    }
    (pace, reason)
}

/// Reads the signals and sets the pace until the run ends (the task is aborted);
/// trips the guards.
pub(crate) async fn monitor<S: Signals>(
    signals: Arc<S>,
    opts: ThrottleOptions,
    control: Arc<Control>,
    stats: Arc<Stats>,
) {
    let mut critical_hits = 0u32;
    let mut last_reason: Option<String> = None;
    loop {
        let reading = read(&*signals, &opts, &control).await;
        if let Some(lag) = reading.replica_lag {
            stats.replica_lag_ms.store(lag.as_millis() as u64, Relaxed);
        }
        if let Some(load) = reading.load {
            stats.load.store(load, Relaxed);
        }
        let limits = Limits {
            max_lag: control.max_lag(),
            max_load: control.max_load(),
            max_slot_lag: opts.max_slot_lag,
        };
        let (pace, reason) = assess(&reading, &limits);
        if reason != last_reason {
            match &reason {
                Some(r) => tracing::info!("throttle: {r}"),
                None => tracing::info!("throttle: off, full speed"),
            }
            last_reason = reason.clone();
        }
        control.set_pace(pace);
        stats.set_throttle_reason(reason);

        if let (Some(critical), Some(load)) = (opts.critical_load, reading.load) {
            if load >= critical {
                critical_hits += 1;
                tracing::warn!(
                    load,
                    critical,
                    "load at --critical-load ({critical_hits} of {} checks in a row)",
                    opts.critical_load_hits
                );
                if critical_hits >= opts.critical_load_hits.max(1) {
                    control.abort(Some(format!(
                        "load {load} reached --critical-load {critical} in {critical_hits} checks in a row"
                    )));
                }
            } else {
                critical_hits = 0;
            }
        }
        if let (Some(max), Some(wal)) = (opts.max_slot_lag, reading.retained_wal)
            && wal >= max.saturating_mul(2)
        {
            control.abort(Some(format!(
                "the replication slot retains {wal} bytes of WAL, twice --max-slot-lag {max}: \
                 stopped before the server's disk is at risk"
            )));
        }
        tokio::time::sleep(opts.interval).await;
    }
}

/// Reads every configured signal once.
async fn read<S: Signals>(signals: &S, opts: &ThrottleOptions, control: &Control) -> Reading {
    fn keep<T>(r: anyhow::Result<T>, what: &str, error: &mut Option<String>) -> Option<T> {
        r.map_err(|e| {
            tracing::debug!("throttle: reading {what}: {e:#}");
            error.get_or_insert(format!("cannot read {what}: {e:#}"));
        })
        .ok()
    }
    let mut error = None;
    let query = match &opts.query {
        Some(q) => keep(
            signals.query_number(q).await,
            "the throttle query",
            &mut error,
        ),
        None => None,
    };
    let replica_lag = match control.max_lag() {
        Some(_) => keep(signals.replica_lag().await, "replica lag", &mut error).flatten(),
        None => None,
    };
    let load = match control.max_load().is_some() || opts.critical_load.is_some() {
        true => keep(signals.load().await, "the load", &mut error),
        false => None,
    };
    let retained_wal = match opts.max_slot_lag {
        Some(_) => keep(
            signals.retained_wal().await,
            "the slot's retained WAL",
            &mut error,
        )
        .flatten(),
        None => None,
    };
    Reading {
        user: control.user_throttled(),
        flag_file: opts
            .flag_file
            .as_ref()
            .filter(|f| f.exists())
            .map(|f| f.display().to_string()),
        query,
        replica_lag,
        load,
        retained_wal,
        error,
    }
}

/// Waits while the copy is paused; returns how long it waited. Stops waiting when
/// the run is aborted.
pub(crate) async fn wait_while_paused(control: &Control) -> Duration {
    let t0 = std::time::Instant::now();
    while control.pace() <= 0.0 && !control.aborted() {
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    t0.elapsed()
}

/// The pause after a chunk that took `took`, so the copy runs at `pace` of its speed.
pub fn pace_wait(took: Duration, pace: f64) -> Duration {
    if pace >= 1.0 || pace <= 0.0 {
        return Duration::ZERO;
    }
    took.mul_f64(1.0 / pace - 1.0).min(Duration::from_secs(5))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn pace_follows_the_worst_signal() {
        let l = Limits {
            max_lag: Some(Duration::from_millis(1000)),
            max_load: Some(20),
            max_slot_lag: None,
        };
        let quiet = Reading {
            replica_lag: Some(Duration::from_millis(100)),
            load: Some(5),
            ..Reading::default()
        };
        assert_eq!(assess(&quiet, &l), (1.0, None));
        let busy = Reading {
            load: Some(15),
            ..quiet.clone()
        };
        let (p, why) = assess(&busy, &l);
        assert!((p - 0.5).abs() < 1e-9, "{p}");
        assert_eq!(why.as_deref(), Some("slowed: load 15 (max 20)"));
        let lagging = Reading {
            replica_lag: Some(Duration::from_millis(1500)),
            ..busy
        };
        let (p, why) = assess(&lagging, &l);
        assert_eq!(p, 0.0);
        assert_eq!(
            why.as_deref(),
            Some("paused: replica lag 1500 ms (max 1000 ms)")
        );
    }

    #[test]
    fn switches_pause_whatever_the_limits() {
        let l = Limits::default();
        let r = Reading {
            flag_file: Some("/tmp/x".into()),
            ..Reading::default()
        };
        assert_eq!(assess(&r, &l).0, 0.0);
        let r = Reading {
            query: Some(0.0),
            ..Reading::default()
        };
        assert_eq!(assess(&r, &l).0, 1.0);
        let r = Reading {
            query: Some(2.0),
            ..Reading::default()
        };
        assert_eq!(assess(&r, &l).0, 0.0);
        let r = Reading {
            error: Some("cannot read replica lag".into()),
            ..Reading::default()
        };
        assert_eq!(assess(&r, &l).0, 0.0);
    }

    #[test]
    fn pace_wait_scales_with_the_chunk() {
        let took = Duration::from_millis(100);
        assert_eq!(pace_wait(took, 1.0), Duration::ZERO);
        assert_eq!(pace_wait(took, 0.5), Duration::from_millis(100));
        assert_eq!(pace_wait(took, 0.25), Duration::from_millis(300));
    }
}
