//! Named fault points: the places in a run where a crash is most telling, so
//! tests can stop wraith exactly there and check that nothing is lost.
//!
//! A point does nothing unless a test set it, in one of two ways:
//! - in-process, a callback ([`Faults::with`]) runs at every point (it may run
//!   DDL on another session, or never return so the test can drop the run);
//! - in the `wraith` binary, `WRAITH_FAULT_POINT=<name>` kills the process with
//!   SIGKILL when it reaches that point: no cleanup, no unwinding, exactly a crash.

use std::future::Future;
use std::pin::Pin;
use std::sync::Arc;

/// Where a run can be stopped.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Point {
    /// The change source and the shadow exist; the copy has not started.
    AfterPrepare,
    /// A copy chunk is in flight: registered against the apply, not committed.
    MidChunk,
    /// Before the verification's consistent point.
    BeforeVerify,
    /// The cutover holds the write lock on the table.
    AfterCutoverLock,
    /// The fence is written; the last changes are being drained under the lock.
    AfterFence,
    /// The swap is done in its transaction (or queued behind the lock), not committed.
    BeforeSwapCommit,
    /// The swap committed; cleanup has not run.
    AfterSwapCommit,
    /// MySQL/MariaDB: the RENAME committed, triggers and foreign keys have not moved.
    MidMoves,
}

impl Point {
    pub const ALL: [Point; 8] = [
        Point::AfterPrepare,
        Point::MidChunk,
        Point::BeforeVerify,
        Point::AfterCutoverLock,
        Point::AfterFence,
        Point::BeforeSwapCommit,
        Point::AfterSwapCommit,
        Point::MidMoves,
    ];

    pub fn name(self) -> &'static str {
        match self {
            Point::AfterPrepare => "after-prepare",
            Point::MidChunk => "mid-chunk",
            Point::BeforeVerify => "before-verify",
            Point::AfterCutoverLock => "after-cutover-lock",
            Point::AfterFence => "after-fence",
            Point::BeforeSwapCommit => "before-swap-commit",
            Point::AfterSwapCommit => "after-swap-commit",
            Point::MidMoves => "mid-moves",
        }
    }

    pub fn parse(name: &str) -> Option<Point> {
        Point::ALL.into_iter().find(|p| p.name() == name)
    }
}

pub type BoxFuture = Pin<Box<dyn Future<Output = ()> + Send>>;

/// The fault points of one run.
#[derive(Clone, Default)]
pub struct Faults {
    callback: Option<Arc<dyn Fn(Point) -> BoxFuture + Send + Sync>>,
    kill_at: Option<Point>,
}

/// The variable that makes the `wraith` binary kill itself at a point.
pub const ENV: &str = "WRAITH_FAULT_POINT";

impl Faults {
    /// Runs `f` at every point.
    pub fn with(f: impl Fn(Point) -> BoxFuture + Send + Sync + 'static) -> Faults {
        Faults {
            callback: Some(Arc::new(f)),
            kill_at: None,
        }
    }

    /// The point `WRAITH_FAULT_POINT` names, if any; an unknown name is refused.
    pub fn from_env() -> anyhow::Result<Faults> {
        let Ok(name) = std::env::var(ENV) else {
            return Ok(Faults::default());
        };
        let point = Point::parse(&name).ok_or_else(|| {
            let names: Vec<&str> = Point::ALL.iter().map(|p| p.name()).collect();
            crate::error::bad_input(format!(
                "{ENV}={name:?} names no fault point; the points are {}",
                names.join(", ")
            ))
        })?;
        Ok(Faults {
            callback: None,
            kill_at: Some(point),
        })
    }

    pub async fn hit(&self, point: Point) {
        if self.kill_at == Some(point) {
            eprintln!("{ENV}: killed at {}", point.name());
            // SAFETY: kill(2) on this process's own pid has no memory effects.
            unsafe {
                libc::kill(libc::getpid(), libc::SIGKILL);
            }
        }
        if let Some(f) = &self.callback {
            f(point).await;
        }
    }
}

impl std::fmt::Debug for Faults {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match (&self.callback, self.kill_at) {
            (_, Some(p)) => write!(f, "Faults(kill at {})", p.name()),
            (Some(_), None) => f.write_str("Faults(callback)"),
            (None, None) => f.write_str("Faults(none)"),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_point_has_a_name_that_parses_back() {
        for p in Point::ALL {
            assert_eq!(Point::parse(p.name()), Some(p));
        }
        assert_eq!(Point::parse("after-lunch"), None);
    }
}
