//! Connections to PostgreSQL and readable errors from them.
//!
//! Every wraith session pins the settings that make values round-trip as text
//! (keys travel as text between decoding and re-reading), names itself `wraith`
//! in `pg_stat_activity`, and reads every row or fails: with `row_security = off`
//! a statement that a row-level security policy would filter raises an error
//! instead, so copy, apply and verification can never agree on a subset.

use std::sync::Arc;

use tokio_postgres::Client;

use crate::dsn::{Dsn, TlsMode};
use crate::error::{ConnectionLost, bad_input};

/// Settings every wraith session runs with.
const SESSION_SETUP: &str = "SET application_name = 'wraith'; SET DateStyle = 'ISO, YMD'; \
     SET IntervalStyle = 'postgres'; SET TimeZone = 'UTC'; SET extra_float_digits = 3; \
     SET bytea_output = 'hex'; SET statement_timeout = 0; SET lock_timeout = 0; \
     SET idle_in_transaction_session_timeout = 0; SET row_security = off";

/// Opens a session; `role` names it in logs.
pub async fn connect(dsn: &Dsn, role: &str) -> anyhow::Result<Arc<Client>> {
    let config = dsn
        .pg_config()
        .ok_or_else(|| bad_input(format!("{dsn} is not a PostgreSQL connection string")))?;
    // A unix socket is local: libpq never uses TLS there, and a path is no TLS name.
    let local = config
        .get_hosts()
        .iter()
        .all(|h| matches!(h, tokio_postgres::config::Host::Unix(_)));
    let client = if local {
        let (client, connection) = config
            .connect(tokio_postgres::NoTls)
            .await
            .map_err(|e| connect_error(e, dsn, role))?;
        drive(connection, role);
        client
    } else {
        let (client, connection) = config
            .connect(crate::pg::tls::connector(dsn.tls())?)
            .await
            .map_err(|e| connect_error(e, dsn, role))?;
        drive(connection, role);
        client
    };
    client
        .batch_execute(SESSION_SETUP)
        .await
        .map_err(|e| db_error(e, &format!("setting up the {role} session")))?;
    Ok(Arc::new(client))
}

/// Runs a session's connection until it closes.
fn drive<C>(connection: C, role: &str)
where
    C: std::future::Future<Output = Result<(), tokio_postgres::Error>> + Send + 'static,
{
    let role = role.to_string();
    tokio::spawn(async move {
        if let Err(e) = connection.await {
            tracing::debug!(session = %role, "connection closed: {e}");
        }
    });
}

/// A failed connection as the DBA needs it: TLS and authentication failures are
/// bad input naming the fix (never the password); the rest as [`db_error`].
fn connect_error(e: tokio_postgres::Error, dsn: &Dsn, role: &str) -> anyhow::Error {
    let text = format!("{e:#}");
    let source = std::error::Error::source(&e)
        .map(|s| s.to_string())
        .unwrap_or_default();
    let what = format!("{text} {source}");
    let user = dsn.user().unwrap_or_default();
    let at = format!("connecting to {dsn} ({role} session)");
    let tls = dsn.tls();
    let fix = if sqlstate(&e) == Some("28000") && what.contains("certificate") {
        Some(format!(
            "the server wants a client certificate for user {user}: {}; give one its CA signed \
             with sslcert=FILE and sslkey=FILE",
            describe(&e)
        ))
    } else if matches!(sqlstate(&e), Some("28P01" | "28000")) {
        Some(format!(
            "the server refused user {user}: {}; check the password (PGPASSWORD, ~/.pgpass or \
             PGPASSFILE, --ask-pass) and pg_hba.conf",
            describe(&e)
        ))
    } else if what.contains("password missing") {
        Some(format!(
            "the server wants a password for user {user} and none was given: set PGPASSWORD, \
             add it to ~/.pgpass (or PGPASSFILE, mode 0600), or use --ask-pass"
        ))
    } else if what.contains("server does not support TLS") {
        Some(format!(
            "sslmode={} needs TLS but the server offers none: enable ssl on the server, or use \
             sslmode=prefer",
            mode_name(tls.mode)
        ))
    } else if what.contains("UnknownIssuer") || what.contains("BadSignature") {
        Some(format!(
            "the server's certificate is not signed by a trusted root ({}): give its CA with \
             sslrootcert=FILE",
            tls.root_cert
                .as_ref()
                .map(|p| format!("sslrootcert={}", p.display()))
                .unwrap_or_else(|| "none given".into())
        ))
    } else if what.contains("NotValidForName") || what.contains("not valid for name") {
        Some(format!(
            "the server's certificate does not name {}: connect by a name it holds, or use \
             sslmode=verify-ca to check the chain only",
            dsn.host()
        ))
    } else if tls.mode != TlsMode::Disable && (what.contains("certificate") || what.contains("TLS"))
    {
        Some(format!(
            "TLS failed: {what}; check sslmode, sslrootcert, sslcert and sslkey"
        ))
    } else {
        None
    };
    match fix {
        Some(fix) => bad_input(format!("{at}: {fix}")),
        None => db_error(e, &at),
    }
}

fn mode_name(m: TlsMode) -> &'static str {
    match m {
        TlsMode::Disable => "disable",
        TlsMode::Prefer => "prefer",
        TlsMode::Require => "require",
        TlsMode::VerifyCa => "verify-ca",
        TlsMode::VerifyFull => "verify-full",
    }
}

/// A PostgreSQL error as a readable message: the server's text, detail and hint.
pub fn describe(e: &tokio_postgres::Error) -> String {
    match e.as_db_error() {
        Some(db) => {
            let mut s = db.message().to_string();
            if let Some(d) = db.detail() {
                s.push_str(&format!(" (detail: {d})"));
            }
            if let Some(h) = db.hint() {
                s.push_str(&format!(" (hint: {h})"));
            }
            s
        }
        None => e.to_string(),
    }
}

/// A PostgreSQL error with what wraith was doing; the SQLSTATE is kept for retries.
#[derive(Debug, thiserror::Error)]
#[error("{doing}: {message}")]
pub struct DbError {
    pub doing: String,
    pub message: String,
    pub code: Option<String>,
}

/// The session is gone: closed, reset, or ended by a server shutdown.
pub fn is_lost(e: &tokio_postgres::Error) -> bool {
    e.is_closed()
        || sqlstate(e)
            .is_some_and(|c| c.starts_with("08") || matches!(c, "57P01" | "57P02" | "57P03"))
        || std::error::Error::source(e).is_some_and(|s| s.is::<std::io::Error>())
}

/// Wraps a PostgreSQL error with what wraith was doing.
pub fn db_error(e: tokio_postgres::Error, doing: &str) -> anyhow::Error {
    if is_lost(&e) {
        return ConnectionLost(format!("{doing}: {}", describe(&e))).into();
    }
    DbError {
        doing: doing.to_string(),
        message: describe(&e),
        code: sqlstate(&e).map(str::to_string),
    }
    .into()
}

/// SQLSTATE `lock_not_available`: `lock_timeout` ran out.
pub const LOCK_NOT_AVAILABLE: &str = "55P03";

/// A lock was not granted within `lock_timeout`: the statement may run again later.
pub fn is_lock_timeout(e: &anyhow::Error) -> bool {
    e.chain().any(|c| {
        c.downcast_ref::<DbError>()
            .is_some_and(|d| d.code.as_deref() == Some(LOCK_NOT_AVAILABLE))
    })
}

/// Deadlocks and serialization failures: the transaction can simply run again.
pub fn is_transient(e: &anyhow::Error) -> bool {
    e.chain().any(|c| {
        c.downcast_ref::<DbError>()
            .is_some_and(|d| matches!(d.code.as_deref(), Some("40P01" | "40001")))
    })
}

/// The SQLSTATE of an error, if the server sent one.
pub fn sqlstate(e: &tokio_postgres::Error) -> Option<&str> {
    e.code().map(|c| c.code())
}

/// `.db(doing)` on PostgreSQL results: context in the error, the server's words kept.
pub trait DbResult<T> {
    fn db(self, doing: &str) -> anyhow::Result<T>;
}

impl<T> DbResult<T> for Result<T, tokio_postgres::Error> {
    fn db(self, doing: &str) -> anyhow::Result<T> {
        self.map_err(|e| db_error(e, doing))
    }
}
