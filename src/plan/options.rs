//! How a run behaves: pacing, throttling, verification and the cutover. The
//! phase machine reads [`RunOptions`]; a backend gets only [`BackendOptions`],
//! the few settings it acts on itself.

use std::path::PathBuf;
use std::time::Duration;

use crate::Engine;
use crate::dsn::Dsn;
use crate::engine::faults::Faults;
use crate::verify::Mode;

/// How the run behaves, shared by every engine. Built for one engine
/// ([`RunOptions::for_engine`]), which sets the defaults that differ by engine.
#[derive(Debug, Clone)]
pub struct RunOptions {
    /// Without it the run stops after preflight and prints the plan.
    pub execute: bool,
    /// Target duration of one copy chunk; the chunk size adapts to it.
    pub chunk_time: Duration,
    /// Rows in the first chunk, before adapting.
    pub initial_chunk_rows: u64,
    /// Hard cap on copied rows per second.
    pub max_rows_per_sec: Option<u64>,
    /// Copy workers at the start (`ctl threads=N` changes it live).
    pub threads: usize,
    /// Longest wait for the cutover lock in one attempt; the application waits at most this long.
    pub cutover_lock_timeout: Duration,
    /// Attempts before giving up on the cutover (the run then fails cleanly).
    pub cutover_attempts: u32,
    /// Longest the write lock may be held while draining the last changes before an attempt is rolled back.
    pub cutover_drain_timeout: Duration,
    /// How long to wait for the change source (e.g. a replication slot) to be created.
    pub slot_create_timeout: Duration,
    /// Pause between polls of the change stream when it is idle.
    pub poll_interval: Duration,
    /// Most dirty keys re-read in one apply statement.
    pub apply_batch_keys: usize,
    /// Drop the original table after a successful swap instead of keeping it.
    pub drop_old: bool,
    /// Verification before the cutover.
    pub verify: Mode,
    /// Parallel verification sessions.
    pub verify_workers: usize,
    /// Throttling: its signals and limits.
    pub throttle: ThrottleOptions,
    /// The control socket `wraith ctl` talks to (opened by the caller; named in messages).
    pub control_socket: Option<PathBuf>,
    /// Hold the cutover until `wraith ctl <socket> cutover`.
    pub postpone_cutover: bool,
    /// Hold the cutover while this file exists.
    pub postpone_flag_file: Option<PathBuf>,
    /// Terminate the sessions that would make the cutover lock queue.
    pub kill_blockers: bool,
    /// Resumable run: checkpoints a later run can continue from, and on PostgreSQL a
    /// persistent slot; also continues an interrupted resumable run of the same spec.
    pub resume: bool,
    /// Apply a metadata-only ALTER directly instead of rewriting the table.
    pub instant: crate::plan::instant::InstantMode,
    /// Keep a way back after the swap (`--revertible`): the reverse mapping is
    /// derived (or refused) in preflight.
    pub revertible: bool,
}

impl RunOptions {
    /// The defaults on `engine`: a dry run.
    pub fn for_engine(engine: Engine) -> RunOptions {
        RunOptions {
            execute: false,
            chunk_time: engine.chunk_time(),
            initial_chunk_rows: 1000,
            max_rows_per_sec: None,
            threads: 1,
            cutover_lock_timeout: engine.cutover_lock_timeout(),
            cutover_attempts: 30,
            cutover_drain_timeout: Duration::from_secs(2),
            slot_create_timeout: Duration::from_secs(30),
            poll_interval: Duration::from_millis(50),
            apply_batch_keys: 2000,
            drop_old: false,
            verify: Mode::Checksum,
            verify_workers: 2,
            throttle: ThrottleOptions::default(),
            control_socket: None,
            postpone_cutover: false,
            postpone_flag_file: None,
            kill_blockers: false,
            resume: false,
            instant: Default::default(),
            revertible: false,
        }
    }

    /// What a backend acts on itself.
    pub fn backend(&self, faults: Faults) -> BackendOptions {
        BackendOptions {
            execute: self.execute,
            resume: self.resume,
            revertible: self.revertible,
            drop_old: self.drop_old,
            cutover_lock_timeout: self.cutover_lock_timeout,
            lock_attempts: self.cutover_attempts.max(1),
            probe_instant: !self.execute
                || self.instant != crate::plan::instant::InstantMode::Never,
            slot_create_timeout: self.slot_create_timeout,
            faults,
        }
    }
}

/// The settings a backend acts on itself; everything else the phase machine does.
#[derive(Debug, Clone)]
pub struct BackendOptions {
    /// A real run: preflight may remove an earlier run's leftovers.
    pub execute: bool,
    /// Resumable run (persistent change source, checkpoints).
    pub resume: bool,
    /// Derive the way back after the swap (`--revertible`).
    pub revertible: bool,
    /// Drop the original table right after the swap.
    pub drop_old: bool,
    /// Bounds the DDL that locks other tables (shadow creation, foreign keys).
    pub cutover_lock_timeout: Duration,
    /// Attempts at such DDL when its lock is not granted in time (with backoff).
    pub lock_attempts: u32,
    /// Find out whether the change is metadata-only where that costs DDL of its
    /// own (MySQL's scratch table): for the dry run's plan and `--instant` runs.
    pub probe_instant: bool,
    /// How long creating the change source may wait.
    pub slot_create_timeout: Duration,
    /// Fault points inside the backend's own steps (mid-chunk, before the swap commits).
    pub faults: Faults,
}

/// What slows or pauses the copy, and what aborts the run (DESIGN: throttling).
#[derive(Debug, Clone)]
pub struct ThrottleOptions {
    /// Pause while this file exists.
    pub flag_file: Option<PathBuf>,
    /// A query returning one number: above 0 pauses the copy.
    pub query: Option<String>,
    /// Replicas whose lag counts against `max_lag`.
    pub replica_dsns: Vec<Dsn>,
    /// Replica lag limit.
    pub max_lag: Option<Duration>,
    /// Load limit: active sessions (PostgreSQL) or Threads_running (MySQL).
    pub max_load: Option<u64>,
    /// Load that aborts the run when seen `critical_load_hits` checks in a row.
    pub critical_load: Option<u64>,
    pub critical_load_hits: u32,
    /// PostgreSQL: WAL retained by wraith's slot, in bytes, above which the copy
    /// pauses; at twice this the run aborts.
    pub max_slot_lag: Option<u64>,
    /// How often the signals are read.
    pub interval: Duration,
}

impl Default for ThrottleOptions {
    fn default() -> Self {
        ThrottleOptions {
            flag_file: None,
            query: None,
            replica_dsns: Vec::new(),
            max_lag: None,
            max_load: None,
            critical_load: None,
            critical_load_hits: 3,
            max_slot_lag: None,
            interval: Duration::from_millis(250),
        }
    }
}
