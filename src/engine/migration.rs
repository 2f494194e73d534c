//! The phases of one migration, in order. Start reading here.
//!
//! `run` owns the exit paths: whatever happens after preflight (error, abort,
//! Ctrl-C), the backend's `cleanup` runs before `run` returns, so the change
//! source never outlives the run and, unless the swap committed, the shadow goes too.

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering::Relaxed};
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use anyhow::Context;

use crate::engine::dirty::{ChunkTracker, DirtyKeys, Gate, Held};
use crate::engine::pacing::{ChunkSizer, rate_wait};
use crate::engine::{ApplyOn, Backend, ChangeBatch, Phase, Stats, Summary};
use crate::error::Aborted;
use crate::plan::{Plan, RunOptions};

/// Row events read per poll of the change stream.
const POLL_EVENTS: u64 = 20_000;
/// How often a heartbeat goes through the change stream to measure the apply lag.
const HEARTBEAT_EVERY: Duration = Duration::from_millis(100);

/// What a run ended with.
#[derive(Debug)]
pub enum Outcome {
    /// Dry run: the plan, nothing created.
    Planned(Plan),
    /// The table was rewritten and swapped in.
    Migrated(Plan, Summary),
    /// This migration was already applied to the table: nothing was done.
    AlreadyDone(Plan),
}

/// Runs a migration through every phase. `abort` is checked at every safe point.
pub async fn run<B: Backend>(
    backend: Arc<B>,
    opts: RunOptions,
    stats: Arc<Stats>,
    abort: Arc<AtomicBool>,
) -> anyhow::Result<Outcome> {
    stats.set_phase(Phase::Preflight);
    let plan = backend.preflight().await.context("preflight")?;
    stats.rows_estimate.store(plan.estimated_rows, Relaxed);
    if plan.completed.is_some() {
        return Ok(Outcome::AlreadyDone(plan));
    }
    if !opts.execute {
        return Ok(Outcome::Planned(plan));
    }
    tracing::debug!("plan:\n{plan}");

    let mut run = Run {
        backend: backend.clone(),
        opts,
        stats: stats.clone(),
        abort,
        dirty: DirtyKeys::default(),
        held: Held::default(),
        tracker: Arc::new(ChunkTracker::default()),
        gate: Arc::new(Gate::default()),
        keep_shadow: false,
    };
    let result = run.migrate().await;

    stats.set_phase(Phase::Cleanup);
    let keep_shadow = stats.swapped.load(Relaxed) || run.keep_shadow;
    let cleaned = backend.cleanup(keep_shadow).await;
    stats.set_phase(Phase::Done);
    match (result, cleaned) {
        (Ok(()), Ok(())) => Ok(Outcome::Migrated(plan, stats.summary())),
        (Ok(()), Err(e)) => Err(e.context(
            "the new table is in place, but removing the change capture failed: run `wraith cleanup`",
        )),
        (Err(e), Ok(())) => Err(e),
        (Err(e), Err(c)) => {
            tracing::error!("cleanup after the failure failed too: {c:#}; run `wraith cleanup`");
            Err(e)
        }
    }
}

/// State of a run between prepare and cleanup.
pub(crate) struct Run<B: Backend> {
    pub(crate) backend: Arc<B>,
    pub(crate) opts: RunOptions,
    pub(crate) stats: Arc<Stats>,
    pub(crate) abort: Arc<AtomicBool>,
    pub(crate) dirty: DirtyKeys,
    pub(crate) held: Held,
    pub(crate) tracker: Arc<ChunkTracker>,
    pub(crate) gate: Arc<Gate>,
    /// Verification failed: the shadow stays for inspection.
    pub(crate) keep_shadow: bool,
}

/// Aborts the copy task when the run leaves early.
struct AbortOnDrop(tokio::task::JoinHandle<anyhow::Result<()>>);

impl Drop for AbortOnDrop {
    fn drop(&mut self) {
        self.0.abort();
    }
}

impl<B: Backend> Run<B> {
    async fn migrate(&mut self) -> anyhow::Result<()> {
        self.stats.set_phase(Phase::Prepare);
        self.backend.prepare().await.context("prepare")?;
        self.check_abort()?;
        let _heartbeats = AbortOnDrop(tokio::spawn(heartbeats(self.backend.clone())));

        self.stats.set_phase(Phase::Copy);
        let mut copy = AbortOnDrop(tokio::spawn(copy_all(
            self.backend.clone(),
            self.tracker.clone(),
            self.gate.clone(),
            self.stats.clone(),
            self.opts.clone(),
            self.abort.clone(),
        )));
        loop {
            self.check_abort()?;
            let polled = Instant::now();
            let batch = self.poll_and_apply().await?;
            // While the copy writes, each poll re-decodes the chunk in flight: pausing
            // as long as the poll took bounds decoding to a fair share of the server.
            let pause = if batch.caught_up {
                self.opts.poll_interval.max(polled.elapsed())
            } else {
                Duration::ZERO
            };
            tokio::select! {
                done = &mut copy.0 => {
                    match done {
                        Ok(r) => r.context("copy")?,
                        Err(e) => anyhow::bail!("copy task failed: {e}"),
                    }
                    break;
                }
                _ = tokio::time::sleep(pause) => {}
            }
        }

        self.stats.set_phase(Phase::CatchUp);
        self.catch_up().await?;
        let backend = self.backend.clone();
        self.applying_during(backend.before_cutover())
            .await?
            .context("before cutover")?;
        self.catch_up().await?;
        self.check_abort()?;
        self.opts.fault_points.hit("before-verify").await;
        self.verify().await?;
        self.check_abort()?;
        self.cutover().await
    }

    pub(crate) fn check_abort(&self) -> anyhow::Result<()> {
        if self.abort.load(Relaxed) {
            return Err(Aborted.into());
        }
        Ok(())
    }

    /// Reads the stream once; its keys go to the dirty set.
    pub(crate) async fn poll_into_dirty(&mut self) -> anyhow::Result<ChangeBatch> {
        let mut batch = self
            .backend
            .poll_changes(POLL_EVENTS)
            .await
            .context("reading the change stream")?;
        self.stats.events_read.fetch_add(batch.events, Relaxed);
        self.dirty.extend(std::mem::take(&mut batch.keys));
        Ok(batch)
    }

    pub(crate) async fn confirm(&self, batch: &ChangeBatch) -> anyhow::Result<()> {
        match &batch.position {
            Some(pos) => self
                .backend
                .confirm(pos.clone())
                .await
                .context("confirming the stream position"),
            None => Ok(()),
        }
    }

    /// One poll of the stream, its keys applied, then its position confirmed (DESIGN 2.G).
    pub(crate) async fn poll_and_apply(&mut self) -> anyhow::Result<ChangeBatch> {
        let batch = self.poll_into_dirty().await?;
        self.apply_dirty().await?;
        self.confirm(&batch).await?;
        let now = unix_us();
        match batch.last_commit_unix_us {
            Some(t) => self
                .stats
                .record_lag(Duration::from_micros((now - t).max(0) as u64)),
            None if batch.caught_up => self.stats.record_lag(Duration::ZERO),
            None => {}
        }
        for sent in &batch.heartbeats {
            self.stats
                .record_heartbeat(Duration::from_micros((now - sent).max(0) as u64));
        }
        Ok(batch)
    }

    /// Runs `work` while polling and applying the stream, so the shadow stays
    /// current (and the apply lag low) through long steps that do not need it idle.
    /// The apply is never cancelled mid-way: it stops between polls once `work` is done.
    pub(crate) async fn applying_during<T>(
        &mut self,
        work: impl Future<Output = T>,
    ) -> anyhow::Result<T> {
        let done = AtomicBool::new(false);
        let work = async {
            let out = work.await;
            done.store(true, Relaxed);
            out
        };
        let apply = async {
            while !done.load(Relaxed) {
                let polled = Instant::now();
                let batch = self.poll_and_apply().await?;
                if batch.caught_up {
                    let until = Instant::now() + self.opts.poll_interval.max(polled.elapsed());
                    while !done.load(Relaxed) && Instant::now() < until {
                        tokio::time::sleep(Duration::from_millis(10)).await;
                    }
                }
            }
            anyhow::Ok(())
        };
        let (out, applied) = tokio::join!(work, apply);
        applied?;
        Ok(out)
    }

    /// Re-reads every dirty key (and released held keys) from the source.
    pub(crate) async fn apply_dirty(&mut self) -> anyhow::Result<()> {
        let released = self.held.release(&self.tracker);
        self.dirty.extend(released);
        while !self.dirty.is_empty() {
            let keys = self.dirty.take(self.opts.apply_batch_keys);
            let n = keys.len() as u64;
            // No chunk registers while this apply runs; keys of chunks already in
            // flight are held back until they commit (DESIGN 2.C).
            let gate = self.gate.clone();
            let _gate = gate.lock().await;
            let (newest, in_flight) = self.tracker.in_flight();
            let applied = self
                .backend
                .apply_keys(keys, ApplyOn::Worker, in_flight)
                .await
                .context("applying changes to the shadow table")?;
            let held = applied.held.len() as u64;
            if let Some(id) = newest {
                self.held.hold(id, applied.held);
            }
            self.stats.keys_applied.fetch_add(n - held, Relaxed);
            self.update_waiting();
        }
        self.update_waiting();
        Ok(())
    }

    pub(crate) fn update_waiting(&self) {
        self.stats
            .dirty_waiting
            .store((self.dirty.len() + self.held.len()) as u64, Relaxed);
    }

    /// Applies until the stream is read to its end and nothing waits.
    pub(crate) async fn catch_up(&mut self) -> anyhow::Result<()> {
        loop {
            self.check_abort()?;
            let batch = self.poll_and_apply().await?;
            if batch.caught_up && self.dirty.is_empty() && self.held.is_empty() {
                return Ok(());
            }
            if batch.caught_up {
                tokio::time::sleep(self.opts.poll_interval).await;
            }
        }
    }

    /// Keeps applying for `d` (used while backing off between cutover attempts).
    pub(crate) async fn apply_for(&mut self, d: Duration) -> anyhow::Result<()> {
        let until = Instant::now() + d;
        while Instant::now() < until {
            self.check_abort()?;
            let batch = self.poll_and_apply().await?;
            if batch.caught_up {
                let left = until.saturating_duration_since(Instant::now());
                tokio::time::sleep(left.min(self.opts.poll_interval)).await;
            }
        }
        Ok(())
    }
}

/// Copies the table chunk by chunk, pacing itself; runs beside the apply loop.
async fn copy_all<B: Backend>(
    backend: Arc<B>,
    tracker: Arc<ChunkTracker>,
    gate: Arc<Gate>,
    stats: Arc<Stats>,
    opts: RunOptions,
    abort: Arc<AtomicBool>,
) -> anyhow::Result<()> {
    stats.copy_started();
    let Some(end) = backend.copy_end().await.context("finding the last key")? else {
        stats.copy_finished();
        return Ok(());
    };
    let mut sizer = ChunkSizer::new(opts.initial_chunk_rows, opts.chunk_time);
    let mut after = None;
    let started = Instant::now();
    loop {
        if abort.load(Relaxed) {
            return Err(Aborted.into());
        }
        let copied = stats.rows_copied.load(Relaxed);
        tokio::time::sleep(rate_wait(copied, started.elapsed(), opts.max_rows_per_sec)).await;
        let mut rows = sizer.rows();
        if let Some(rate) = opts.max_rows_per_sec {
            // A chunk never takes more than one target chunk time's worth of the rate.
            rows = rows.min(((rate as f64 * opts.chunk_time.as_secs_f64()) as u64).max(1));
        }
        let t0 = Instant::now();
        let range = backend
            .next_chunk(after.clone(), end.clone(), rows)
            .await
            .context("finding the next chunk")?;
        let done = range.upto == end;
        let id = {
            let _gate = gate.lock().await;
            tracker.begin(range.clone())
        };
        let copied = backend.copy_range(range.clone()).await;
        tracker.end(id);
        let copied = copied.with_context(|| match &range.after {
            Some(k) => format!("copying the chunk after key ({})", k.join(", ")),
            None => "copying the first chunk".to_string(),
        })?;
        tracing::debug!(after = ?range.after, upto = ?range.upto, rows = copied, "chunk copied");
        sizer.observe(copied, t0.elapsed());
        stats.rows_copied.fetch_add(copied, Relaxed);
        stats.chunks.fetch_add(1, Relaxed);
        if done {
            break;
        }
        after = Some(range.upto);
    }
    stats.copy_finished();
    Ok(())
}

/// Wall-clock now, in unix microseconds.
pub fn unix_us() -> i64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map(|d| d.as_micros() as i64)
        .unwrap_or(0)
}

/// Sends heartbeats until the run ends (the task is aborted). A failed one is only
/// logged: the lag figures are for people, the migration does not depend on them.
async fn heartbeats<B: Backend>(backend: Arc<B>) -> anyhow::Result<()> {
    loop {
        tokio::time::sleep(HEARTBEAT_EVERY).await;
        if let Err(e) = backend.heartbeat(unix_us()).await {
            tracing::debug!("heartbeat: {e:#}");
        }
    }
}
