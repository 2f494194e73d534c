//! Connections to MySQL/MariaDB: every wraith session runs in strict SQL mode (a
//! value that does not fit is an error, never a silent truncation) at READ
//! COMMITTED, and errors keep the server's code and message.

use mysql_async::Conn;
use mysql_async::prelude::Queryable;

use crate::dsn::Dsn;
use crate::error::{ConnectionLost, bad_input};

/// Opens a session for `purpose` (named in errors) with wraith's session settings.
pub async fn connect(dsn: &Dsn, purpose: &str) -> anyhow::Result<Conn> {
    // Affected rows count changed rows only: a copy chunk tells skipped rows by them.
    let opts = dsn
        .mysql_opts()
        .ok_or_else(|| bad_input(format!("{dsn} is not a MySQL/MariaDB connection string")))?;
    let opts = mysql_async::OptsBuilder::from_opts(opts.clone()).client_found_rows(false);
    let mut c = Conn::new(opts).await.map_err(|e| {
        error(
            &e,
            format!(
                "cannot connect to {dsn} ({purpose} session): {}",
                describe(&e)
            ),
        )
    })?;
    c.query_drop(
        "SET SESSION sql_mode = 'STRICT_ALL_TABLES,NO_ZERO_IN_DATE,NO_ZERO_DATE,\
         ERROR_FOR_DIVISION_BY_ZERO,NO_ENGINE_SUBSTITUTION'; \
         SET SESSION TRANSACTION ISOLATION LEVEL READ COMMITTED",
    )
    .await
    .my(&format!("setting up the {purpose} session"))?;
    Ok(c)
}

/// The session is gone: closed, reset, killed, or the server is shutting down.
pub fn is_lost(e: &mysql_async::Error) -> bool {
    match e {
        mysql_async::Error::Io(_) => true,
        mysql_async::Error::Driver(d) => matches!(d, mysql_async::DriverError::ConnectionClosed),
        // Server shutdown, connection killed, disconnected for inactivity.
        mysql_async::Error::Server(s) => matches!(s.code, 1053 | 1927 | 4031),
        _ => false,
    }
}

/// `msg` as an error that says whether the connection was lost.
pub fn error(e: &mysql_async::Error, msg: String) -> anyhow::Error {
    if is_lost(e) {
        ConnectionLost(msg).into()
    } else {
        anyhow::anyhow!(msg)
    }
}

/// The server's message with its error code, or the driver's.
pub fn describe(e: &mysql_async::Error) -> String {
    match e {
        mysql_async::Error::Server(s) => format!("{} (MySQL error {})", s.message, s.code),
        other => other.to_string(),
    }
}

/// Adds what wraith was doing to a server error.
pub trait MyResult<T> {
    fn my(self, doing: &str) -> anyhow::Result<T>;
}

impl<T> MyResult<T> for Result<T, mysql_async::Error> {
    fn my(self, doing: &str) -> anyhow::Result<T> {
        self.map_err(|e| error(&e, format!("{doing}: {}", describe(&e))))
    }
}
