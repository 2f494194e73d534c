//! The phase state machine shared by every database.
//!
//! `preflight -> prepare -> copy || capture+apply -> catch-up -> verify -> cutover -> cleanup`
//!
//! The engine never builds SQL: it drives a [`Backend`] (one per database) through
//! these phases and owns the logic that must exist once: chunk pacing, the dirty-key
//! set with the in-flight-chunk rule (DESIGN 2.C), the cutover retry loop and the
//! drain to a fence (2.D), cleanup on every exit path, progress and the summary.
//!
//! - [`backend`]: the trait a database implements.
//! - [`migration`]: the phases, in order (start reading here).
//! - [`verify`]: the verify phase before the swap (consistent point, compare, repair).
//! - [`copy`]: the paced chunk loop that runs beside the apply.
//! - [`cutover`]: the bounded, retried swap.
//! - [`checkpoint`]: what a run saves so `--resume` can continue it.
//! - [`definition`]: the source's definition, which must not change before the swap.
//! - [`dirty`]: dirty keys, copy chunks in flight and keys held back until they commit.
//! - [`pacing`]: adaptive chunk size and the rows/s cap.
//! - [`progress`]: live counters, the progress bar and the final summary.
//! - [`throttle`]: reads the server's signals and sets the copy's pace; guards.
//! - [`control`]: the knobs `wraith ctl` turns, and the status it reads.
//! - [`hooks`]: commands run at the migration's events.
//! - [`faults`]: named fault points, where tests stop a run to check nothing is lost.

pub mod backend;
pub mod checkpoint;
pub mod control;
pub mod copy;
pub mod cutover;
pub mod definition;
pub mod dirty;
pub mod faults;
pub mod hooks;
pub mod migration;
pub mod pacing;
pub mod progress;
pub mod throttle;
pub mod verify;

pub use backend::{Applied, ApplyOn, Backend, Blocker, ChangeBatch, Copied, Signals};
pub use migration::{RunContext, run};
pub use progress::{Phase, Stats, Summary};
