//! Copy pacing: the chunk size follows a target chunk time, and a rows/s cap is a
//! hard limit. Changes are applied between polls whatever the copy does, so the
//! copy never starves the apply.

use std::time::Duration;

/// Chooses the next chunk size from how long the last one took.
#[derive(Debug, Clone)]
pub struct ChunkSizer {
    rows: u64,
    target: Duration,
    min: u64,
    max: u64,
}

impl ChunkSizer {
    pub fn new(initial: u64, target: Duration) -> Self {
        ChunkSizer {
            rows: initial.max(1),
            target,
            min: 10,
            max: 1_000_000,
        }
    }

    /// A new target (`wraith ctl chunk-time=...`); the size follows from the next chunk.
    pub fn set_target(&mut self, target: Duration) {
        self.target = target;
    }

    pub fn rows(&self) -> u64 {
        self.rows
    }

    /// Sets the next size so a chunk like the last would take the target time; growth
    /// is limited to 2x per chunk (and shrinking to 1/4) so one odd chunk cannot swing it.
    pub fn observe(&mut self, rows: u64, took: Duration) {
        if rows == 0 {
            return;
        }
        let secs = took.as_secs_f64().max(0.001);
        let ideal = rows as f64 * self.target.as_secs_f64() / secs;
        let next = ideal.clamp(self.rows as f64 / 4.0, self.rows as f64 * 2.0);
        self.rows = (next as u64).clamp(self.min, self.max);
    }
}

/// How long to wait before the next chunk so that `copied` rows over `elapsed`
/// stay at or under `max_rows_per_sec`.
pub fn rate_wait(copied: u64, elapsed: Duration, max_rows_per_sec: Option<u64>) -> Duration {
    match max_rows_per_sec {
        Some(rate) if rate > 0 => {
            let due = Duration::from_secs_f64(copied as f64 / rate as f64);
            due.saturating_sub(elapsed)
        }
        _ => Duration::ZERO,
    }
}

/// Backoff before cutover attempt `attempt` (1-based): grows, capped, with jitter
/// so retries do not fall into step with the application's own rhythm.
pub fn cutover_backoff(attempt: u32) -> Duration {
    let base_ms = 100u64 << attempt.min(5);
    let capped = base_ms.min(3000);
    let jitter = rand::random_range(0.5..1.5);
    Duration::from_millis((capped as f64 * jitter) as u64)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn chunk_size_moves_toward_target_with_bounded_steps() {
        let mut s = ChunkSizer::new(1000, Duration::from_millis(500));
        s.observe(1000, Duration::from_millis(50)); // 10x too fast: grow only 2x
        assert_eq!(s.rows(), 2000);
        s.observe(2000, Duration::from_millis(500));
        assert_eq!(s.rows(), 2000);
        s.observe(2000, Duration::from_millis(4000)); // 8x too slow: shrink only 4x
        assert_eq!(s.rows(), 500);
        s.observe(0, Duration::from_millis(1));
        assert_eq!(s.rows(), 500);
    }

    #[test]
    fn rate_cap_waits_only_when_ahead() {
        assert_eq!(
            rate_wait(1000, Duration::from_secs(1), Some(1000)),
            Duration::ZERO
        );
        assert_eq!(
            rate_wait(2000, Duration::from_secs(1), Some(1000)),
            Duration::from_secs(1)
        );
        assert_eq!(
            rate_wait(2000, Duration::from_secs(1), None),
            Duration::ZERO
        );
    }

    #[test]
    fn backoff_is_bounded() {
        for a in 1..20 {
            let b = cutover_backoff(a);
            assert!(b <= Duration::from_millis(4500), "{b:?}");
            assert!(b >= Duration::from_millis(100), "{b:?}");
        }
    }
}
