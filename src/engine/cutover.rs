//! The cutover: bounded, retried, and drained to a fence.
//!
//! Each attempt: catch up, take the write lock with a short timeout (the
//! application waits at most that long), write a fence marker through the change
//! stream from another session, read the stream up to the marker, apply every
//! key inside the locked transaction, swap, commit (DESIGN 2.D). A lock not
//! granted, or a drain that runs too long, rolls the attempt back — nothing
//! changed — and the next attempt follows a backoff with jitter.

use std::sync::atomic::Ordering::Relaxed;
use std::time::{Duration, Instant};

use anyhow::Context;

use crate::engine::faults::Point;
use crate::engine::migration::{Run, unix_us};
use crate::engine::pacing::cutover_backoff;
use crate::engine::{ApplyOn, Backend, Blocker, Phase, Signals};

/// A poll with fewer row events than this leaves little for the drain under the lock.
const SETTLED_EVENTS: u64 = 100;

/// The drain under the lock took longer than allowed; the attempt is rolled back.
#[derive(Debug, thiserror::Error)]
#[error("the last changes did not drain within {0:?} while writes were blocked")]
pub(crate) struct DrainTimeout(Duration);

impl<B: Backend> Run<B> {
    /// With writes blocked since `held`: writes a fence through the stream and reads
    /// the stream up to it, collecting every key (DESIGN 2.D). Fails with
    /// [`DrainTimeout`] when that takes longer than allowed.
    pub(crate) async fn drain_to_fence(&mut self, tag: &str, held: Instant) -> anyhow::Result<()> {
        let fence = format!("{}-{tag}-{}", std::process::id(), unix_us());
        self.backend
            .emit_fence(fence.clone())
            .await
            .context("writing the fence")?;
        loop {
            let batch = self.poll_into_dirty().await?;
            // The keys are held in memory until applied (a rolled-back attempt applies
            // them later). A temporary slot dies with the process, and a resumable run
            // saves them in its checkpoint before confirming: confirming cannot lose them.
            self.confirm(&batch).await?;
            if batch.fences.contains(&fence) {
                return Ok(());
            }
            if held.elapsed() > self.opts.cutover_drain_timeout {
                return Err(DrainTimeout(self.opts.cutover_drain_timeout).into());
            }
            if batch.caught_up {
                tokio::time::sleep(Duration::from_millis(1)).await;
            }
        }
    }

    /// A few more rounds until a poll brings little, so the drain under the lock is
    /// short. Bounded: a steady heavy load must not postpone the cutover forever.
    async fn settle(&mut self) -> anyhow::Result<()> {
        for _ in 0..5 {
            let batch = self.poll_and_apply().await?;
            if batch.events < SETTLED_EVENTS {
                break;
            }
        }
        Ok(())
    }

    /// Looks for sessions that would make the lock request queue (and the
    /// application's writes behind it). With `--kill-blockers` ends them; otherwise
    /// waits a backoff for a quiet moment. `Some(list)`: this attempt was spent waiting.
    async fn blockers_in_the_way(&mut self, attempt: u32) -> anyhow::Result<Option<String>> {
        let found = match self.signals.blockers(self.opts.cutover_lock_timeout).await {
            Ok(found) => found,
            Err(e) => {
                tracing::warn!("cutover: cannot look for blocking sessions ({e:#}); trying anyway");
                return Ok(None);
            }
        };
        if found.is_empty() {
            return Ok(None);
        }
        let list = found.iter().map(describe).collect::<Vec<_>>().join("; ");
        if self.opts.kill_blockers {
            for b in &found {
                self.signals
                    .kill(b)
                    .await
                    .with_context(|| format!("cutover: ending blocking session {}", b.session))?;
                tracing::warn!(
                    "cutover: ended blocking session {} (--kill-blockers)",
                    describe(b)
                );
            }
            self.stats
                .cutover_blockers_killed
                .fetch_add(found.len() as u64, Relaxed);
            return Ok(None);
        }
        self.stats.cutover_retries.fetch_add(1, Relaxed);
        let wait = cutover_backoff(attempt);
        tracing::warn!(
            attempt,
            "cutover: not queueing the lock behind {list}; waiting {wait:?} for a quiet moment \
             (--kill-blockers ends such sessions)"
        );
        self.apply_for(wait).await?;
        Ok(Some(list))
    }

    pub(crate) async fn cutover(&mut self) -> anyhow::Result<()> {
        self.stats.set_phase(Phase::Cutover);
        let attempts = self.opts.cutover_attempts.max(1);
        let mut blocked_by = None;
        for attempt in 1..=attempts {
            self.catch_up().await?;
            self.settle().await?;
            // Rows the way back parked are left out of its drain: none may remain.
            self.refuse_if_refused()?;
            blocked_by = self.blockers_in_the_way(attempt).await?;
            if blocked_by.is_some() {
                continue;
            }
            let t0 = Instant::now();
            let granted = self
                .backend
                .lock_for_cutover(self.opts.cutover_lock_timeout)
                .await
                .context("cutover: taking the write lock")?;
            if !granted {
                self.record_stall(t0);
                self.stats.cutover_retries.fetch_add(1, Relaxed);
                let wait = cutover_backoff(attempt);
                tracing::warn!(
                    attempt,
                    "cutover lock not granted within {:?} (another session holds the table); retrying in {:?}",
                    self.opts.cutover_lock_timeout,
                    wait
                );
                self.apply_for(wait).await?;
                continue;
            }
            let lock_wait = t0.elapsed();
            let held = Instant::now();
            self.faults.hit(Point::AfterCutoverLock).await;
            match self.drain_and_swap(attempt, held).await {
                Ok(()) => {
                    self.faults.hit(Point::AfterSwapCommit).await;
                    let hold = held.elapsed();
                    self.record_stall(t0);
                    self.backend.after_swap().await;
                    self.stats
                        .cutover_lock_wait_ms
                        .store(lock_wait.as_millis() as u64, Relaxed);
                    self.stats
                        .cutover_hold_ms
                        .store(hold.as_millis() as u64, Relaxed);
                    tracing::info!(
                        attempt,
                        lock_wait_ms = lock_wait.as_millis() as u64,
                        hold_ms = hold.as_millis() as u64,
                        "swapped"
                    );
                    return Ok(());
                }
                Err(e) => {
                    self.backend
                        .release_cutover()
                        .await
                        .context("cutover: rolling back the attempt")?;
                    self.record_stall(t0);
                    if e.is::<DrainTimeout>() {
                        self.stats.cutover_retries.fetch_add(1, Relaxed);
                        tracing::warn!(attempt, "{e}; rolled back, retrying");
                        continue;
                    }
                    return Err(e.context("cutover (rolled back: the original table is untouched)"));
                }
            }
        }
        if let Some(list) = blocked_by {
            return Err(anyhow::anyhow!(
                "cutover: sessions kept holding the table through {attempts} attempts ({list}); \
                 nothing was changed. End them, or rerun with --kill-blockers"
            ));
        }
        Err(anyhow::anyhow!(
            "cutover: the write lock was not granted in {attempts} attempts; nothing was changed. \
             Retry when the table is quieter, or raise --cutover-attempts / --cutover-lock-timeout"
        ))
    }

    /// An attempt that asked for the lock at `asked` is over: the application's
    /// writes could have waited that long.
    fn record_stall(&self, asked: Instant) {
        self.stats
            .cutover_max_stall_ms
            .fetch_max(asked.elapsed().as_millis() as u64, Relaxed);
    }

    async fn drain_and_swap(&mut self, attempt: u32, held: Instant) -> anyhow::Result<()> {
        self.drain_to_fence(&format!("cutover-{attempt}"), held)
            .await?;
        self.faults.hit(Point::AfterFence).await;
        self.collect_waiting();
        let keys = self.dirty.snapshot();
        let n = keys.len() as u64;
        self.backend
            .apply_keys(keys, ApplyOn::Cutover, Vec::new())
            .await
            .context("applying the last changes under the lock")?;
        self.backend.swap().await.context("swapping the tables")?;
        self.stats.swapped.store(true, Relaxed);
        self.stats.keys_applied.fetch_add(n, Relaxed);
        self.dirty.clear();
        self.update_waiting();
        Ok(())
    }
}

/// A blocker for the log: session, state, age and statement.
fn describe(b: &Blocker) -> String {
    format!(
        "session {} ({}, {:.1} s, last statement: {})",
        b.session,
        b.state,
        b.age.as_secs_f64(),
        b.query.chars().take(80).collect::<String>()
    )
}
