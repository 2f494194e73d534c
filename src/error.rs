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

/// The error, or one of its causes, is a lost connection.
pub fn is_connection_lost(err: &anyhow::Error) -> bool {
    err.chain().any(|e| {
        e.is::<ConnectionLost>()
            || e.is::<std::io::Error>()
            || e.downcast_ref::<tokio_postgres::Error>()
                .is_some_and(crate::pg::conn::is_lost)
    })
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

/// Hides the password of a DSN (URL or key=value form) so it can be logged.
pub fn redact_dsn(dsn: &str) -> String {
    if let Some(scheme_end) = dsn.find("://") {
        let rest = &dsn[scheme_end + 3..];
        let authority_end = rest.find(['/', '?']).unwrap_or(rest.len());
        if let Some(at) = rest[..authority_end].rfind('@') {
            let userinfo = &rest[..at];
            if let Some(colon) = userinfo.find(':') {
                return format!(
                    "{}{}:***{}",
                    &dsn[..scheme_end + 3],
                    &userinfo[..colon],
                    &rest[at..]
                );
            }
        }
        return dsn.to_string();
    }
    dsn.split_whitespace()
        .map(|kv| {
            if kv.to_ascii_lowercase().starts_with("password=") {
                "password=***".to_string()
            } else {
                kv.to_string()
            }
        })
        .collect::<Vec<_>>()
        .join(" ")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn redacts_url_and_keyvalue_passwords() {
        assert_eq!(
            redact_dsn("postgres://bob:s3cr@t@db:5432/app?sslmode=disable"),
            "postgres://bob:***@db:5432/app?sslmode=disable"
        );
        assert_eq!(redact_dsn("postgres://bob@db/app"), "postgres://bob@db/app");
        assert_eq!(
            redact_dsn("host=db user=bob password=hunter2 dbname=app"),
            "host=db user=bob password=*** dbname=app"
        );
    }

    #[test]
    fn exit_codes() {
        assert_eq!(exit_code(&bad_input("x")), 2);
        assert_eq!(exit_code(&bad_input("x").context("during preflight")), 2);
        assert_eq!(exit_code(&anyhow::anyhow!("boom")), 1);
    }
}
