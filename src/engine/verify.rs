//! The verify phase: before the cutover, prove the shadow equals the source with
//! the mapping applied, repair what differs, and refuse to swap otherwise.
//!
//! A consistent point: block writes briefly (bounded and retried like the
//! cutover), drain the stream to a fence and apply, open one snapshot shared by
//! the verification sessions, release the writes. The ranges are then compared in
//! parallel while the application writes on and the apply goes on. Keys that differ are re-read from the
//! source and their ranges verified again at a new consistent point; a second
//! mismatch stops the run before the swap, keeping the shadow for inspection.

use std::sync::atomic::Ordering::Relaxed;
use std::time::Instant;

use anyhow::Context;

use crate::engine::cutover::DrainTimeout;
use crate::engine::migration::Run;
use crate::engine::pacing::cutover_backoff;
use crate::engine::{Backend, Phase};
use crate::verify::{self, Mode, SPAN_ROWS, Span};

impl<B: Backend> Run<B> {
    pub(crate) async fn verify(&mut self) -> anyhow::Result<()> {
        let mode = self.opts.verify;
        if mode == Mode::Off {
            return Ok(());
        }
        self.stats.set_phase(Phase::Verify);
        let started = Instant::now();
        let mut spans = self
            .backend
            .spans(SPAN_ROWS)
            .await
            .context("verify: cutting the table into ranges")?;
        for pass in 1..=2 {
            self.backend
                .connect(self.opts.verify_workers)
                .await
                .context("verify: connecting")?;
            self.consistent_point()
                .await
                .context("verify: reaching a consistent point")?;
            // The comparison reads the shared snapshot, so the apply may go on meanwhile:
            // writes after the snapshot cannot change its answer.
            let backend = self.backend.clone();
            let (workers, stats) = (self.opts.verify_workers, self.stats.clone());
            let report = self
                .applying_during(verify::compare(&backend, spans, workers, mode, Some(stats)))
                .await
                .context("verify: applying changes during the comparison")?;
            let closed = self.backend.close_snapshot().await;
            let report = report.context("verify")?;
            closed.context("verify: closing the snapshot")?;
            if pass == 1 {
                self.stats.verify_rows.store(report.source_rows, Relaxed);
            }
            self.stats
                .verify_ms
                .store(started.elapsed().as_millis() as u64, Relaxed);
            if report.is_clean() {
                tracing::info!(
                    pass,
                    ranges = report.spans,
                    rows = report.source_rows,
                    "verified: the shadow matches"
                );
                return Ok(());
            }
            let keys = report.keys();
            if pass == 2 {
                self.keep_shadow = true;
                anyhow::bail!(
                    "verification failed twice; wraith will not swap. Differences that repair did not fix:\n{report}\
                     The original table is untouched; the shadow is kept for inspection (remove it with \
                     `wraith cleanup`). A transform that is not deterministic (random(), now()) causes this"
                );
            }
            tracing::warn!(
                "verification found differences; repairing {} keys:\n{report}",
                keys.len()
            );
            self.stats
                .verify_repaired
                .fetch_add(keys.len() as u64, Relaxed);
            self.dirty.extend(keys);
            self.apply_dirty().await.context("verify: repairing")?;
            spans = report
                .mismatches
                .into_iter()
                .map(|m| m.span)
                .collect::<Vec<Span>>();
        }
        Ok(())
    }

    /// Blocks writes briefly, drains to a fence, applies, and opens the shared snapshot.
    async fn consistent_point(&mut self) -> anyhow::Result<()> {
        let attempts = self.opts.cutover_attempts.max(1);
        for attempt in 1..=attempts {
            self.catch_up().await?;
            if !self
                .backend
                .lock_writes(self.opts.cutover_lock_timeout)
                .await?
            {
                let wait = cutover_backoff(attempt);
                tracing::warn!(
                    attempt,
                    "verify: write lock not granted; retrying in {wait:?}"
                );
                self.apply_for(wait).await?;
                continue;
            }
            let held = Instant::now();
            let result = async {
                self.drain_to_fence(&format!("verify-{attempt}"), held)
                    .await?;
                self.apply_dirty().await?;
                self.backend.open_snapshot(self.opts.verify_workers).await
            }
            .await;
            self.backend
                .release_cutover()
                .await
                .context("releasing the write lock")?;
            match result {
                Ok(()) => {
                    tracing::debug!(
                        held_ms = held.elapsed().as_millis() as u64,
                        "verify: consistent point"
                    );
                    return Ok(());
                }
                Err(e) if e.is::<DrainTimeout>() => {
                    tracing::warn!(attempt, "{e}; retrying");
                }
                Err(e) => return Err(e),
            }
        }
        anyhow::bail!(
            "the write lock for verification was not granted in {attempts} attempts; nothing was changed"
        )
    }
}
