//! The one trait each database implements; the engine calls nothing else.
//!
//! Contract, in the words of DESIGN section 2:
//! - `prepare` creates the change source before the shadow and before any copy
//!   snapshot (A).
//! - `poll_changes` returns keys whose changes are already visible to a new
//!   snapshot, or that `apply_keys` makes visible with a locking read (B).
//! - `copy_range` only inserts rows that are missing in the shadow; `apply_keys`
//!   re-reads keys from the source and makes the shadow match (upsert or delete),
//!   never touching keys of a copy chunk in flight.
//! - Nothing here writes the original table; `swap` is one atomic step and every
//!   failure before it leaves the application where it was (E).

use std::future::Future;
use std::time::Duration;

use crate::engine::checkpoint::Checkpoint;
use crate::key::{Key, KeyRange};
use crate::plan::Plan;
use crate::verify::Checksums;

/// What one poll of the change stream found.
#[derive(Debug, Default, Clone)]
pub struct ChangeBatch {
    /// Keys touched by committed transactions (duplicates allowed).
    pub keys: Vec<Key>,
    /// Fence markers seen (cutover).
    pub fences: Vec<String>,
    /// Stream position to confirm once `keys` are applied.
    pub position: Option<String>,
    /// Row events read.
    pub events: u64,
    /// Commit time of the newest transaction read (unix microseconds).
    pub last_commit_unix_us: Option<i64>,
    /// This run's heartbeats read, as the unix microseconds they were sent at.
    pub heartbeats: Vec<i64>,
    /// The poll reached the end of the stream.
    pub caught_up: bool,
}

/// What one copy chunk did.
#[derive(Debug, Clone, Default)]
pub struct Copied {
    /// Rows inserted.
    pub rows: u64,
    /// Keys of the chunk that must go through the apply instead (they conflict with
    /// older versions of other keys under a unique constraint of the new table).
    pub recheck: Vec<Key>,
}

/// What one apply did.
#[derive(Debug, Clone, Default)]
pub struct Applied {
    /// Keys re-read.
    pub keys: u64,
    /// Keys held back because a copy chunk in flight covers them (DESIGN 2.C).
    pub held: Vec<Key>,
    /// The way back: keys whose rows the old table's types cannot hold, left out
    /// (re-read again until they fit; the revert refuses while any remain).
    pub refused: Vec<Key>,
    pub refused_why: String,
}

/// Which session re-reads keys: the background applier, or the cutover
/// transaction that holds the write lock.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ApplyOn {
    Worker,
    Cutover,
}

/// A session that would make the cutover's lock request queue (and the
/// application's writes queue behind it).
#[derive(Debug, Clone)]
pub struct Blocker {
    /// Backend pid (PostgreSQL) or connection id (MySQL).
    pub session: u64,
    /// How long its transaction (or its idleness) has lasted.
    pub age: Duration,
    /// What it is doing (`idle in transaction`, `Sleep`, ...) and its last statement.
    pub state: String,
    pub query: String,
}

/// Server readings for throttling and the cutover's blocker check, on a session of
/// their own so they never run inside the copy's or the cutover's transactions.
pub trait Signals: Send + Sync + 'static {
    /// The server shows who holds the table, so `blockers` can find them.
    fn sees_blockers(&self) -> bool;
    /// Active sessions (PostgreSQL: active client backends; MySQL: `Threads_running`).
    fn load(&self) -> impl Future<Output = anyhow::Result<u64>> + Send;
    /// The worst replica lag (`None`: no replica to measure).
    fn replica_lag(&self) -> impl Future<Output = anyhow::Result<Option<Duration>>> + Send;
    /// Runs the user's throttle query; its single value.
    fn query_number(&self, sql: &str) -> impl Future<Output = anyhow::Result<f64>> + Send;
    /// WAL the run's replication slot retains, in bytes (`None`: not PostgreSQL).
    fn retained_wal(&self) -> impl Future<Output = anyhow::Result<Option<u64>>> + Send;
    /// Sessions holding locks on the source table in a transaction at least `min_age` old.
    fn blockers(
        &self,
        min_age: Duration,
    ) -> impl Future<Output = anyhow::Result<Vec<Blocker>>> + Send;
    /// Ends `blocker`'s session (`--kill-blockers`).
    fn kill(&self, blocker: &Blocker) -> impl Future<Output = anyhow::Result<()>> + Send;
}

/// A database engine, as the phase machine sees it; it also compares source and
/// shadow for the verify phase ([`Checksums`]).
pub trait Backend: Checksums {
    type Signals: Signals;
    /// Opens the signals session (and one per replica DSN, for the lag).
    fn signals(
        &self,
        replica_dsns: Vec<crate::dsn::Dsn>,
    ) -> impl Future<Output = anyhow::Result<Self::Signals>> + Send;
    /// Read-only checks and the plan; the shadow shape is validated without leaving anything behind.
    fn preflight(&self) -> impl Future<Output = anyhow::Result<Plan>> + Send;
    /// Change source first, then the shadow table; returns the stream position the
    /// change source starts from. A resumed run (see [`Backend::resuming`]) reopens
    /// what the interrupted run created instead, and returns its checkpoint's position.
    fn prepare(&self) -> impl Future<Output = anyhow::Result<Option<String>>> + Send;
    /// The checkpoint of the interrupted run that preflight chose to continue.
    fn resuming(&self) -> Option<Checkpoint>;
    /// Saves a checkpoint (JSON) next to the shadow, replacing the last one.
    fn save_checkpoint(&self, state: String) -> impl Future<Output = anyhow::Result<()>> + Send;
    /// Last key of the table when the copy starts (`None`: the table is empty).
    /// Rows beyond it arrive through the change stream.
    fn copy_end(&self) -> impl Future<Output = anyhow::Result<Option<Key>>> + Send;
    /// The next chunk of about `rows` rows after `after`, never past `end`.
    fn next_chunk(
        &self,
        after: Option<Key>,
        end: Key,
        rows: u64,
    ) -> impl Future<Output = anyhow::Result<KeyRange>> + Send;
    /// Opens copy sessions until there are `n`, one per copy worker (they stay
    /// open for the run; `next_chunk` and `copy_end` have their own).
    fn copy_sessions(&self, n: usize) -> impl Future<Output = anyhow::Result<()>> + Send;
    /// Copies the rows of `range` that the shadow lacks, on copy session `worker`.
    fn copy_range(
        &self,
        worker: usize,
        range: KeyRange,
    ) -> impl Future<Output = anyhow::Result<Copied>> + Send;
    /// Reads committed changes from the stream (at most about `max_events` row events).
    fn poll_changes(
        &self,
        max_events: u64,
    ) -> impl Future<Output = anyhow::Result<ChangeBatch>> + Send;
    /// Makes the shadow rows of `keys` equal to the source rows (transformed), deleting
    /// gone ones, except keys inside `in_flight` ranges, which come back as held.
    fn apply_keys(
        &self,
        keys: Vec<Key>,
        on: ApplyOn,
        in_flight: Vec<KeyRange>,
    ) -> impl Future<Output = anyhow::Result<Applied>> + Send;
    /// Everything before `position` is applied: the stream may forget it.
    fn confirm(&self, position: String) -> impl Future<Output = anyhow::Result<()>> + Send;
    /// Work after the copy that must finish before the swap (validate constraints, statistics).
    fn before_cutover(&self) -> impl Future<Output = anyhow::Result<()>> + Send;
    /// Applies the plan's metadata-only change to the table itself (`--instant`):
    /// its lock requested for at most `timeout` each time, `attempts` times with
    /// backoff; when never granted nothing has changed.
    fn apply_instant(
        &self,
        timeout: Duration,
        attempts: u32,
    ) -> impl Future<Output = anyhow::Result<()>> + Send;
    /// Tries to block writes to the source within `timeout`. `false`: not granted, nothing held.
    fn lock_for_cutover(
        &self,
        timeout: Duration,
    ) -> impl Future<Output = anyhow::Result<bool>> + Send;
    /// Like `lock_for_cutover`, but reads (and the apply's re-reads) continue: for
    /// the consistent point of verification. Released with `release_cutover`.
    fn lock_writes(&self, timeout: Duration) -> impl Future<Output = anyhow::Result<bool>> + Send;
    /// Sends a heartbeat through the change stream carrying `sent_unix_us`; it comes
    /// back in [`ChangeBatch::heartbeats`], which measures the apply lag.
    fn heartbeat(&self, sent_unix_us: i64) -> impl Future<Output = anyhow::Result<()>> + Send;
    /// Writes marker `id` through the change stream from another session (DESIGN 2.D).
    fn emit_fence(&self, id: String) -> impl Future<Output = anyhow::Result<()>> + Send;
    /// Swaps the tables and releases the lock, atomically.
    fn swap(&self) -> impl Future<Output = anyhow::Result<()>> + Send;
    /// Work once the swap committed and writes flow again (validating constraints
    /// re-added `NOT VALID`); failures are reported, the swap stands.
    fn after_swap(&self) -> impl Future<Output = ()> + Send;
    /// Gives up the current cutover attempt (or releases `lock_writes`): undoes
    /// everything since the lock was taken.
    fn release_cutover(&self) -> impl Future<Output = anyhow::Result<()>> + Send;
    /// Removes what the run created: the change source always, the shadow unless
    /// `keep_shadow` (it was swapped in, or is kept for inspection).
    fn cleanup(&self, keep_shadow: bool) -> impl Future<Output = anyhow::Result<()>> + Send;
    /// Closes every session and leaves everything on the server for `--resume`
    /// (a resumable run that lost its server).
    fn close(&self) -> impl Future<Output = ()> + Send;
}
