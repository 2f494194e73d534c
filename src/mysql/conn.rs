//! Connections to MySQL/MariaDB: every wraith session runs in strict SQL mode (a
//! value that does not fit is an error, never a silent truncation) at READ
//! COMMITTED, and errors keep the server's code and message.

use mysql_async::Conn;
use mysql_async::prelude::Queryable;

use crate::dsn::{Dsn, TlsMode};
use crate::error::{ConnectionLost, bad_input};

/// Opens a session for `purpose` (named in errors) with wraith's session settings.
/// `ssl-mode=PREFERRED` (the default) falls back to plain text when the server
/// offers no TLS, as the mysql client does.
pub async fn connect(dsn: &Dsn, purpose: &str) -> anyhow::Result<Conn> {
    let mut c =
        match open(dsn).await {
            Err(mysql_async::Error::Driver(
                mysql_async::DriverError::NoClientSslFlagFromServer,
            )) if dsn.tls().mode == TlsMode::Prefer => open(&dsn.without_tls()).await,
            other => other,
        }
        .map_err(|e| connect_error(&e, dsn, purpose))?;
    c.query_drop(
        "SET SESSION sql_mode = 'STRICT_ALL_TABLES,NO_ZERO_IN_DATE,NO_ZERO_DATE,\
         ERROR_FOR_DIVISION_BY_ZERO,NO_ENGINE_SUBSTITUTION'; \
         SET SESSION TRANSACTION ISOLATION LEVEL READ COMMITTED",
    )
    .await
    .my(&format!("setting up the {purpose} session"))?;
    Ok(c)
}

async fn open(dsn: &Dsn) -> Result<Conn, mysql_async::Error> {
    let opts = dsn.mysql_opts().cloned().unwrap_or_default();
    // Affected rows count changed rows only: a copy chunk tells skipped rows by them.
    Conn::new(mysql_async::OptsBuilder::from_opts(opts).client_found_rows(false)).await
}

/// A failed connection as the DBA needs it: TLS and authentication failures are
/// bad input naming the fix (never the password); the rest says if it was lost.
fn connect_error(e: &mysql_async::Error, dsn: &Dsn, purpose: &str) -> anyhow::Error {
    let at = format!("cannot connect to {dsn} ({purpose} session)");
    let what = format!(
        "{e:#} {}",
        std::error::Error::source(e)
            .map(|s| s.to_string())
            .unwrap_or_default()
    );
    let tls = dsn.tls();
    let fix = match e {
        mysql_async::Error::Server(s) if s.code == 1045 => Some(format!(
            "{}; check the password of user {} (MYSQL_PWD, the [client] section of ~/.my.cnf or \
             --defaults-file, --ask-pass){}",
            s.message,
            dsn.user().unwrap_or_default(),
            if tls.mode == TlsMode::Disable {
                ", or whether the server requires TLS (require_secure_transport): use \
                 ssl-mode=REQUIRED or stricter"
            } else {
                ""
            }
        )),
        mysql_async::Error::Server(s)
            if s.code == 3159 || s.message.contains("secure transport") =>
        {
            Some(format!("{}: use ssl-mode=REQUIRED or stricter", s.message))
        }
        mysql_async::Error::Driver(mysql_async::DriverError::NoClientSslFlagFromServer) => Some(
            "TLS is required (ssl-mode) but the server offers none: enable TLS on the server \
                  (ssl-cert, ssl-key), or use ssl-mode=PREFERRED"
                .to_string(),
        ),
        _ if what.contains("UnknownIssuer") || what.contains("BadSignature") => Some(format!(
            "the server's certificate is not signed by a trusted root ({}): give its CA with \
             ssl-ca=FILE",
            tls.root_cert
                .as_ref()
                .map(|p| format!("ssl-ca={}", p.display()))
                .unwrap_or_else(|| "none given".into())
        )),
        _ if what.contains("NotValidForName") || what.contains("not valid for name") => {
            Some(format!(
                "the server's certificate does not name {}: connect by a name it holds, or use \
             ssl-mode=VERIFY_CA to check the chain only",
                dsn.host()
            ))
        }
        _ if tls.mode != TlsMode::Disable
            && (what.contains("certificate") || what.contains("TLS")) =>
        {
            Some(format!(
                "TLS failed: {}; check ssl-mode, ssl-ca, ssl-cert and ssl-key",
                describe(e)
            ))
        }
        _ => None,
    };
    match fix {
        Some(fix) => bad_input(format!("{at}: {fix}")),
        None => error(e, format!("{at}: {}", describe(e))),
    }
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
