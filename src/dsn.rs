//! Connection strings as wraith shows them: rebuilt from the parts the driver
//! parsed (engine, user, hosts, ports, database), never the text with a password
//! cut out of it. No spelling of a password (`user:pw@`, `?password=`,
//! `password = x`, `password='a b'`, a raw `/` in it) can reach a message, since
//! the password is never among the parts shown.

/// The DSN names a MySQL/MariaDB server (`mysql://` or `mariadb://`).
pub fn is_mysql(dsn: &str) -> bool {
    dsn.starts_with("mysql://") || dsn.starts_with("mariadb://")
}

/// `dsn` without its password, for logs and messages.
pub fn redacted(dsn: &str) -> String {
    if is_mysql(dsn) {
        mysql(dsn)
    } else {
        postgres(dsn)
    }
}

/// The DSN as `mysql_async` reads it (`mariadb://` is `mysql://` to it).
pub fn mysql_url(dsn: &str) -> String {
    match dsn.strip_prefix("mariadb://") {
        Some(rest) => format!("mysql://{rest}"),
        None => dsn.to_string(),
    }
}

const ENCODE_HINT: &str = "a user name or password containing / ? # @ : or % must be \
     percent-encoded in a URL, e.g. / as %2F";

fn postgres(dsn: &str) -> String {
    use tokio_postgres::config::Host;
    let config = match dsn.parse::<tokio_postgres::Config>() {
        Ok(c) => c,
        // The parser's messages name options, never their values.
        Err(e) => return format!("<an invalid PostgreSQL connection string: {e}; {ENCODE_HINT}>"),
    };
    let mut tcp = Vec::new();
    let mut sockets = Vec::new();
    for (i, host) in config.get_hosts().iter().enumerate() {
        let port = config
            .get_ports()
            .get(i)
            .or(config.get_ports().first())
            .map(|p| format!(":{p}"))
            .unwrap_or_default();
        match host {
            Host::Tcp(h) => tcp.push(format!("{h}{port}")),
            Host::Unix(path) => sockets.push(format!("host={}", path.display())),
        }
    }
    let user = config
        .get_user()
        .map(|u| format!("{u}@"))
        .unwrap_or_default();
    let db = config.get_dbname().unwrap_or_default();
    let query = if sockets.is_empty() {
        String::new()
    } else {
        format!("?{}", sockets.join("&"))
    };
    format!("postgres://{user}{}/{db}{query}", tcp.join(","))
}

fn mysql(dsn: &str) -> String {
    let scheme = if dsn.starts_with("mariadb://") {
        "mariadb"
    } else {
        "mysql"
    };
    let opts = match mysql_async::Opts::from_url(&mysql_url(dsn)) {
        Ok(o) => o,
        // Its messages name parameters; values only of parameters that hold no secret.
        Err(e) => {
            return format!("<an invalid {scheme} connection string: {e}; {ENCODE_HINT}>");
        }
    };
    let user = opts.user().map(|u| format!("{u}@")).unwrap_or_default();
    let socket = opts
        .socket()
        .map(|s| format!("?socket={s}"))
        .unwrap_or_default();
    format!(
        "{scheme}://{user}{}:{}/{}{socket}",
        opts.ip_or_hostname(),
        opts.tcp_port(),
        opts.db_name().unwrap_or_default()
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn no_spelling_of_a_password_is_shown() {
        let cases = [
            (
                "postgres://bob:s3cret@db:5432/app?sslmode=disable",
                "postgres://bob@db:5432/app",
            ),
            (
                "postgres://bob:se/cret@db/app",
                "postgres://bob@db:5432/app",
            ),
            (
                "postgres://bob@db/app?password=s3cret",
                "postgres://bob@db:5432/app",
            ),
            (
                "host=db user=bob password = s3cret dbname=app",
                "postgres://bob@db/app",
            ),
            (
                "host=db user=bob password='s3cret and more' dbname=app",
                "postgres://bob@db/app",
            ),
            (
                "host=/run/postgresql user=bob password=s3cret dbname=app",
                "postgres://bob@/app?host=/run/postgresql",
            ),
            ("mysql://bob:s3cret@db:3306/app", "mysql://bob@db:3306/app"),
            ("mariadb://bob:s3cret@db/app", "mariadb://bob@db:3306/app"),
        ];
        for (dsn, shown) in cases {
            assert_eq!(redacted(dsn), shown, "{dsn}");
        }
        for dsn in [
            "mysql://bob:se/cret@db/app",
            "mysql://bob@db/app?password=s3cret",
            "host=db password='s3cret",
            "postgres://bob:s3cret@db:notaport/app",
        ] {
            let shown = redacted(dsn);
            assert!(
                !shown.contains("s3cret") && !shown.contains("cret"),
                "{dsn}: {shown}"
            );
            assert!(shown.starts_with("<an invalid"), "{dsn}: {shown}");
        }
    }
}
