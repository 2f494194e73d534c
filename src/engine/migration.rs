//! The phases of one migration, in order. Start reading here.
//!
//! `run` owns the exit paths: whatever happens after preflight (error, abort,
//! Ctrl-C), the backend's `cleanup` runs before `run` returns, so the change
//! source never outlives the run and, unless the swap committed, the shadow goes too.

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering::Relaxed};
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use anyhow::Context;

use crate::engine::checkpoint::{self, Checkpoint};
use crate::engine::control::Control;
use crate::engine::copy;
use crate::engine::dirty::{ChunkTracker, CopyMark, DirtyKeys, Gate, Held};
use crate::engine::faults::{Faults, Point};
use crate::engine::hooks::{HookEvent, Hooks};
use crate::engine::throttle;
use crate::engine::{ApplyOn, Backend, ChangeBatch, Phase, Signals, Stats, Summary};
use crate::error::{Aborted, Stopped, bad_input, is_connection_lost};
use crate::key::Key;
use crate::plan::instant::{self, InstantMode};
use crate::plan::{Plan, RunOptions};

/// Row events read per poll of the change stream.
const POLL_EVENTS: u64 = 20_000;
/// How often a heartbeat goes through the change stream to measure the apply lag.
const HEARTBEAT_EVERY: Duration = Duration::from_millis(100);

/// What a run ended with.
#[derive(Debug)]
#[allow(clippy::large_enum_variant)] // one per run
pub enum Outcome {
    /// Dry run: the plan, nothing created.
    Planned(Plan),
    /// The table was rewritten and swapped in.
    Migrated(Plan, Summary),
    /// This migration was already applied to the table: nothing was done.
    AlreadyDone(Plan),
    /// The change was metadata-only and applied directly (`--instant`): no copy.
    AppliedInstantly(Plan),
}

/// What a caller hands a run besides its options: the live counters it reads,
/// the knobs `wraith ctl` turns (the caller serves the control socket over them)
/// with the abort flag, the hooks and the fault points.
#[derive(Clone)]
pub struct RunContext {
    pub stats: Arc<Stats>,
    pub control: Arc<Control>,
    pub hooks: Hooks,
    pub faults: Faults,
}

impl RunContext {
    /// Fresh counters and knobs, no hooks, no fault points.
    pub fn new(opts: &RunOptions) -> RunContext {
        RunContext::with_abort(opts, Arc::new(AtomicBool::new(false)))
    }

    /// Like [`RunContext::new`], stopped when `abort` is set (Ctrl-C).
    pub fn with_abort(opts: &RunOptions, abort: Arc<AtomicBool>) -> RunContext {
        RunContext {
            stats: Arc::new(Stats::default()),
            control: Arc::new(Control::new(opts, abort)),
            hooks: Hooks::default(),
            faults: Faults::default(),
        }
    }
}

/// Runs a migration through every phase. The abort flag is checked at every safe point.
pub async fn run<B: Backend>(
    backend: Arc<B>,
    opts: RunOptions,
    cx: RunContext,
) -> anyhow::Result<Outcome> {
    let RunContext {
        stats,
        control,
        hooks,
        faults,
    } = cx;
    stats.set_phase(Phase::Preflight);
    let plan = backend.preflight().await.context("preflight")?;
    stats.rows_estimate.store(plan.estimated_rows, Relaxed);
    if plan.completed.is_some() {
        return Ok(Outcome::AlreadyDone(plan));
    }
    let direct = wants_instant(&opts, &plan)?;
    if !opts.execute {
        return Ok(Outcome::Planned(plan));
    }
    tracing::debug!("plan:\n{plan}");
    if direct {
        return apply_instantly(&*backend, &opts, &stats, &hooks, plan).await;
    }

    let signals = Arc::new(
        backend
            .signals(opts.throttle.replica_dsns.clone())
            .await
            .context("opening the throttle signals session")?,
    );
    if opts.kill_blockers && !signals.sees_blockers() {
        return Err(bad_input(
            "--kill-blockers needs to see who holds the table: on MariaDB load the plugin \
             (INSTALL SONAME 'metadata_lock_info'), on MySQL enable performance_schema",
        ));
    }
    if let Some(q) = &opts.throttle.query {
        signals.query_number(q).await.map_err(|e| {
            bad_input(format!(
                "--throttle-query must return one number (0: go, above 0: pause); it failed: {e:#}"
            ))
        })?;
    }
    hooks
        .run(HookEvent::Start, &stats, None)
        .await
        .map_err(|e| bad_input(format!("{e:#}; nothing was created")))?;

    let checkpoint = backend
        .resuming()
        .unwrap_or_else(|| Checkpoint::new(&opts, plan.fingerprint.clone(), &plan));
    let resumable = opts.resume;
    let mut run = Run {
        backend: backend.clone(),
        checkpoint,
        checkpointed: Instant::now(),
        started_us: unix_us(),
        opts,
        stats: stats.clone(),
        control,
        signals,
        hooks: hooks.clone(),
        faults,
        dirty: DirtyKeys::default(),
        held: Held::default(),
        tracker: Arc::new(ChunkTracker::default()),
        gate: Arc::new(Gate::default()),
        keep_shadow: false,
        refused: Vec::new(),
        refused_why: String::new(),
    };
    let result = run.migrate().await;

    let result = match result {
        Err(e) if resumable && is_connection_lost(&e) && !stats.swapped.load(Relaxed) => {
            // Cleanup would throw away what `--resume` continues from.
            backend.close().await;
            stats.set_phase(Phase::Done);
            hooks
                .report(HookEvent::Failure, &stats, Some(&format!("{e:#}")))
                .await;
            return Err(e.context(
                "the connection to the server was lost; the migration is kept as it was: run the \
                 same command with --resume to continue it, or `wraith cleanup` to remove it (on \
                 PostgreSQL its replication slot keeps WAL until then)",
            ));
        }
        other => other,
    };

    stats.set_phase(Phase::Cleanup);
    let keep_shadow = stats.swapped.load(Relaxed) || run.keep_shadow;
    let cleaned = backend.cleanup(keep_shadow).await;
    stats.set_phase(Phase::Done);
    match &result {
        Ok(()) => hooks.report(HookEvent::Success, &stats, None).await,
        Err(e) => {
            hooks
                .report(HookEvent::Failure, &stats, Some(&format!("{e:#}")))
                .await
        }
    }
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

/// Whether the run applies the change directly (`--instant`, `--prefer-instant`);
/// `--instant` on a change that is not metadata-only is refused.
fn wants_instant(opts: &RunOptions, plan: &Plan) -> anyhow::Result<bool> {
    match (opts.instant, &plan.instant) {
        (InstantMode::Never, _) => Ok(false),
        (_, instant::Instant::MetadataOnly(_)) => Ok(true),
        (InstantMode::Require, why) => Err(bad_input(format!(
            "--instant: {why}; nothing was changed. Leave out --instant (or give \
             --prefer-instant) and wraith rewrites the table online"
        ))),
        (InstantMode::Prefer, why) => {
            tracing::info!("{why}: rewriting the table online");
            Ok(false)
        }
    }
}

/// The metadata-only change applied to the table itself: no shadow, no copy, no
/// swap; only the bounded, retried lock request and the hooks.
async fn apply_instantly<B: Backend>(
    backend: &B,
    opts: &RunOptions,
    stats: &Stats,
    hooks: &Hooks,
    plan: Plan,
) -> anyhow::Result<Outcome> {
    hooks
        .run(HookEvent::Start, stats, None)
        .await
        .map_err(|e| bad_input(format!("{e:#}; nothing was changed")))?;
    stats.set_phase(Phase::Cutover);
    let applied = backend
        .apply_instant(opts.cutover_lock_timeout, opts.cutover_attempts)
        .await
        .context("applying the metadata-only change");
    stats.set_phase(Phase::Done);
    match applied {
        Ok(()) => {
            hooks.report(HookEvent::Success, stats, None).await;
            Ok(Outcome::AppliedInstantly(plan))
        }
        Err(e) => {
            hooks
                .report(HookEvent::Failure, stats, Some(&format!("{e:#}")))
                .await;
            Err(e)
        }
    }
}

/// State of a run between prepare and cleanup.
pub(crate) struct Run<B: Backend> {
    pub(crate) backend: Arc<B>,
    pub(crate) opts: RunOptions,
    pub(crate) stats: Arc<Stats>,
    /// Live knobs (`wraith ctl`), the throttle's pace and the abort flag.
    pub(crate) control: Arc<Control>,
    /// Server readings: throttle signals and cutover blockers.
    pub(crate) signals: Arc<B::Signals>,
    hooks: Hooks,
    pub(crate) faults: Faults,
    pub(crate) dirty: DirtyKeys,
    pub(crate) held: Held,
    pub(crate) tracker: Arc<ChunkTracker>,
    pub(crate) gate: Arc<Gate>,
    /// Verification failed: the shadow stays for inspection.
    pub(crate) keep_shadow: bool,
    /// The way back: keys the old table's types cannot hold, and why; re-read at
    /// every apply until they fit, and no swap while any remain.
    refused: Vec<Key>,
    refused_why: String,
    /// The last checkpoint saved, and when.
    checkpoint: Checkpoint,
    checkpointed: Instant,
    /// When this run started (unix microseconds).
    started_us: i64,
}

/// Aborts a background task (copy, heartbeats, throttle monitor) when the run leaves.
struct AbortOnDrop<T>(tokio::task::JoinHandle<T>);

impl<T> Drop for AbortOnDrop<T> {
    fn drop(&mut self) {
        self.0.abort();
    }
}

impl<B: Backend> Run<B> {
    async fn migrate(&mut self) -> anyhow::Result<()> {
        self.stats.set_phase(Phase::Prepare);
        let start = self.backend.prepare().await.context("prepare")?;
        self.start_from_checkpoint(start).await?;
        self.faults.hit(Point::AfterPrepare).await;
        self.check_abort()?;
        let _heartbeats = AbortOnDrop(tokio::spawn(heartbeats(self.backend.clone())));
        let _throttle = AbortOnDrop(tokio::spawn(throttle::monitor(
            self.signals.clone(),
            self.opts.throttle.clone(),
            self.control.clone(),
            self.stats.clone(),
        )));

        self.stats.set_phase(Phase::Copy);
        let mut copy = AbortOnDrop(tokio::spawn(copy::copy_all(
            self.backend.clone(),
            self.tracker.clone(),
            self.gate.clone(),
            self.stats.clone(),
            self.opts.clone(),
            self.control.clone(),
            self.faults.clone(),
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
        self.hook(HookEvent::CopyDone).await?;
        let backend = self.backend.clone();
        self.applying_during(backend.before_cutover())
            .await?
            .context("before cutover")?;
        self.catch_up().await?;
        self.check_abort()?;
        self.faults.hit(Point::BeforeVerify).await;
        self.refuse_if_refused()?;
        self.verify().await?;
        self.check_abort()?;
        self.hook(HookEvent::Verified).await?;
        if self.control.postponed() {
            self.hold_cutover().await?;
        }
        self.hook(HookEvent::BeforeCutover).await?;
        self.cutover().await
    }

    /// Runs a hook before the swap: its failure stops the run (nothing changed).
    async fn hook(&mut self, event: HookEvent) -> anyhow::Result<()> {
        let (hooks, stats) = (self.hooks.clone(), self.stats.clone());
        self.applying_during(hooks.run(event, &stats, None))
            .await?
            .context("a hook stopped the run before the swap")
    }

    /// Keeps applying changes until the cutover is released, then verifies again
    /// (checksum mode), since the table has moved on meanwhile.
    async fn hold_cutover(&mut self) -> anyhow::Result<()> {
        self.stats.set_phase(Phase::Postponed);
        let ctl = match &self.opts.control_socket {
            Some(s) => format!("run `wraith ctl {} cutover`", s.display()),
            None => "send `cutover` on the control socket".to_string(),
        };
        let how = match &self.opts.postpone_flag_file {
            Some(f) if f.exists() => format!("remove {} or {ctl}", f.display()),
            _ => ctl,
        };
        tracing::info!("cutover postponed, changes keep being applied: {how} to proceed");
        while self.control.postponed() {
            self.check_abort()?;
            self.apply_for(Duration::from_millis(200)).await?;
        }
        tracing::info!("cutover released");
        self.catch_up().await?;
        self.refuse_if_refused()?;
        if self.opts.verify == crate::verify::Mode::Checksum {
            self.verify().await?;
        }
        self.check_abort()
    }

    pub(crate) fn check_abort(&self) -> anyhow::Result<()> {
        if self.control.aborted() {
            return Err(match self.control.abort_reason() {
                Some(reason) => Stopped(reason).into(),
                None => Aborted.into(),
            });
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

    /// Lets the stream forget what is applied. In a resumable run, keys read but not
    /// yet applied (held back, or collected under the cutover lock) are saved in a
    /// checkpoint first: after a crash the stream would not bring them again.
    pub(crate) async fn confirm(&mut self, batch: &ChangeBatch) -> anyhow::Result<()> {
        let Some(pos) = &batch.position else {
            return Ok(());
        };
        let waiting = !self.dirty.is_empty() || !self.held.is_empty();
        if (waiting && self.opts.resume) || self.checkpointed.elapsed() >= checkpoint::EVERY {
            self.save_checkpoint(Some(pos.clone())).await?;
        }
        self.backend
            .confirm(pos.clone())
            .await
            .context("confirming the stream position")
    }

    /// Saves where the run is (DESIGN 2.G); `position`: every change before it is
    /// applied, except the dirty and held keys saved with it.
    async fn save_checkpoint(&mut self, position: Option<String>) -> anyhow::Result<()> {
        let (mark, recheck) = self.tracker.checkpoint();
        let cp = &mut self.checkpoint;
        cp.copy_end = mark.end;
        cp.copied_upto = mark.upto;
        cp.copied_ahead = mark.ahead;
        cp.copy_done = mark.done;
        cp.rows_copied =
            self.stats.rows_resumed.load(Relaxed) + self.stats.rows_copied.load(Relaxed);
        if position.is_some() {
            cp.position = position;
        }
        let mut pending = self.dirty.snapshot();
        pending.extend(self.held.keys());
        pending.extend(self.refused.iter().cloned());
        pending.extend(recheck);
        cp.pending = pending;
        cp.saved_unix = unix_us() / 1_000_000;
        self.backend
            .save_checkpoint(cp.to_json())
            .await
            .context("saving the checkpoint")?;
        self.checkpointed = Instant::now();
        Ok(())
    }

    /// A fresh run saves its first checkpoint at the stream's start; a resumed one
    /// takes up the interrupted run's copy progress and its keys still to re-read.
    async fn start_from_checkpoint(&mut self, start: Option<String>) -> anyhow::Result<()> {
        let cp = self.checkpoint.clone();
        // A revert starts from a checkpoint of its own making, never saved.
        if self.backend.resuming().is_some() && cp.saved_unix > 0 {
            tracing::info!("resuming the interrupted migration: {}", cp.describe());
        }
        self.stats.rows_resumed.store(cp.rows_copied, Relaxed);
        self.tracker.set_copy_mark(CopyMark {
            end: cp.copy_end.clone(),
            upto: cp.copied_upto.clone(),
            ahead: cp.copied_ahead.clone(),
            done: cp.copy_done,
        });
        self.dirty.extend(cp.pending.iter().cloned());
        self.save_checkpoint(start).await
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
        // A resumed run reads the interrupted run's heartbeats again: not its lag.
        for sent in batch.heartbeats.iter().filter(|&&t| t >= self.started_us) {
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
        self.collect_waiting();
        // Keys refused before are re-read in a batch of their own: finding which keys
        // of a batch do not fit costs a statement per key.
        let before = self.refused.len();
        let mut retry = std::mem::take(&mut self.refused);
        while !self.dirty.is_empty() || !retry.is_empty() {
            let keys = if self.dirty.is_empty() {
                std::mem::take(&mut retry)
            } else {
                self.dirty.take(self.opts.apply_batch_keys)
            };
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
            let refused = applied.refused.len() as u64;
            if refused > 0 {
                self.refused_why = applied.refused_why;
            }
            self.refused.extend(applied.refused);
            self.stats
                .keys_applied
                .fetch_add(n.saturating_sub(held + refused), Relaxed);
            self.update_waiting();
        }
        self.refused.sort();
        self.refused.dedup();
        let now = self.refused.len();
        self.stats.keys_refused.store(now as u64, Relaxed);
        if now > before {
            tracing::warn!(
                "{:#}",
                crate::plan::reverse::cannot_carry(&self.refused, &self.refused_why)
            );
        } else if now < before && now == 0 {
            tracing::info!("every row written since the swap fits the old table again");
        }
        self.update_waiting();
        Ok(())
    }

    /// The way back: no verification or swap while rows do not fit the old table.
    pub(crate) fn refuse_if_refused(&self) -> anyhow::Result<()> {
        if self.refused.is_empty() {
            return Ok(());
        }
        Err(crate::plan::reverse::cannot_carry(
            &self.refused,
            &self.refused_why,
        ))
    }

    /// Moves into the dirty set the held keys whose chunks have committed and the
    /// keys committed chunks left to the apply.
    pub(crate) fn collect_waiting(&mut self) {
        let released = self.held.release(&self.tracker);
        self.dirty.extend(released);
        self.dirty.extend(self.tracker.take_recheck());
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
