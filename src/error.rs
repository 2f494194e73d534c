//! Error kinds that decide wraith's exit code.
//!
//! Everything is an `anyhow::Error` carrying context (table, phase, key); the one
//! distinction that matters to the caller is whether the *input* was wrong
//! (exit 2: nothing was created) or the run failed (exit 1: nothing changed for
//! the application).

/// The user's input or the database's set-up is not acceptable; the message names the fix.
#[derive(Debug, thiserror::Error)]
#[error("{0}")]
pub struct BadInput(pub String);

/// The run was stopped on request (Ctrl-C, `abort`); cleanup has run.
#[derive(Debug, thiserror::Error)]
#[error("migration aborted on request; the original table is untouched")]
pub struct Aborted;

/// A guard stopped the run (critical load, WAL retained by the slot); cleanup has run.
#[derive(Debug, thiserror::Error)]
#[error(
    "migration stopped: {0}; the original table is untouched and wraith removed what it created"
)]
pub struct Stopped(pub String);

/// The connection to the server broke (reset, closed, server shut down or
/// unreachable): a resumable run keeps what it built for `--resume`.
#[derive(Debug, thiserror::Error)]
#[error("{0} (the connection to the server was lost)")]
pub struct ConnectionLost(pub String);

/// The error, or one of its causes, is a lost connection (each backend turns its
/// driver's lost-connection errors into [`ConnectionLost`]).
pub fn is_connection_lost(err: &anyhow::Error) -> bool {
    err.chain()
        .any(|e| e.is::<ConnectionLost>() || e.is::<std::io::Error>())
}

/// Builds a [`BadInput`] error.
pub fn bad_input(msg: impl Into<String>) -> anyhow::Error {
    anyhow::Error::new(BadInput(msg.into()))
}

/// Exit code for a failed run: 2 for bad input, 1 otherwise.
pub fn exit_code(err: &anyhow::Error) -> i32 {
    if err.chain().any(|e| e.is::<BadInput>()) {
        2
    } else {
        1
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn exit_codes() {
        assert_eq!(exit_code(&bad_input("x")), 2);
        assert_eq!(exit_code(&bad_input("x").context("during preflight")), 2);
        assert_eq!(exit_code(&anyhow::anyhow!("boom")), 1);
    }
}
