//! Connection strings, parsed once: [`Dsn`] knows the engine, host, port,
//! database, user, password and options of a `postgres://`, `mysql://` or
//! `mariadb://` URL or a libpq `key=value` string, and shows itself without the
//! password. It is rebuilt from the parts the driver parsed, never the text with
//! a password cut out of it, so no spelling of a password (`user:pw@`,
//! `?password=`, `password = x`, `password='a b'`, a raw `/` in it) can reach a
//! message, a log line or a file.

use std::fmt;

use crate::error::bad_input;

/// Which server a connection string names, by its scheme.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Kind {
    Postgres,
    MySql,
    MariaDb,
}

impl Kind {
    /// MySQL or MariaDB: one backend serves both.
    pub fn is_mysql(self) -> bool {
        matches!(self, Kind::MySql | Kind::MariaDb)
    }
}

/// A parsed connection string. `Display` and `Debug` never show the password.
#[derive(Clone)]
pub struct Dsn {
    /// The text as given, password included: only [`Dsn::expose`] hands it out.
    text: String,
    kind: Kind,
    driver: Driver,
    host: String,
    port: u16,
    /// A unix socket path instead of (or beside) the TCP host.
    socket: Option<String>,
    database: Option<String>,
    user: Option<String>,
    password: Option<String>,
    /// The other settings the string carries (`sslmode`, `application_name`...).
    options: Vec<(String, String)>,
}

#[derive(Clone)]
enum Driver {
    Pg(Box<tokio_postgres::Config>),
    My(Box<mysql_async::Opts>),
}

const ENCODE_HINT: &str = "a user name or password containing / ? # @ : or % must be \
     percent-encoded in a URL, e.g. / as %2F";

/// Keys that are parts of their own, not options (and `password`, never shown).
const PARTS: [&str; 8] = [
    "host", "hostaddr", "port", "dbname", "user", "password", "pass", "socket",
];

impl Dsn {
    /// Parses a connection string; a bad one is refused without echoing it.
    pub fn parse(text: &str) -> anyhow::Result<Dsn> {
        let text = text.trim();
        let kind = if text.starts_with("mysql://") {
            Kind::MySql
        } else if text.starts_with("mariadb://") {
            Kind::MariaDb
        } else if text.starts_with("postgres://")
            || text.starts_with("postgresql://")
            || text.contains('=')
        {
            Kind::Postgres
        } else {
            return Err(bad_input(
                "--dsn is not a PostgreSQL (postgres://user@host/db, or host=... dbname=...) or \
                 MySQL/MariaDB (mysql://user@host/db) connection string",
            ));
        };
        if kind.is_mysql() {
            Dsn::parse_mysql(text, kind)
        } else {
            Dsn::parse_postgres(text)
        }
    }

    fn parse_postgres(text: &str) -> anyhow::Result<Dsn> {
        use tokio_postgres::config::Host;
        // The parser's messages name options, never their values.
        let config = text.parse::<tokio_postgres::Config>().map_err(|e| {
            bad_input(format!(
                "--dsn is not a valid PostgreSQL connection string: {e}; {ENCODE_HINT}"
            ))
        })?;
        let (mut host, mut socket) = (String::new(), None);
        match config.get_hosts().first() {
            Some(Host::Tcp(h)) => host = h.clone(),
            Some(Host::Unix(path)) => socket = Some(path.display().to_string()),
            None => {}
        }
        let options = if text.contains("://") {
            url_options(text)
        } else {
            key_values(text)
        };
        Ok(Dsn {
            text: text.to_string(),
            kind: Kind::Postgres,
            port: config.get_ports().first().copied().unwrap_or(5432),
            database: config.get_dbname().map(str::to_string),
            user: config.get_user().map(str::to_string),
            password: config
                .get_password()
                .map(|p| String::from_utf8_lossy(p).into_owned()),
            options: options
                .into_iter()
                .filter(|(k, _)| !PARTS.contains(&k.as_str()))
                .collect(),
            host,
            socket,
            driver: Driver::Pg(Box::new(config)),
        })
    }

    fn parse_mysql(text: &str, kind: Kind) -> anyhow::Result<Dsn> {
        // mysql_async reads `mariadb://` as nothing; to it both are `mysql://`.
        let url = match text.strip_prefix("mariadb://") {
            Some(rest) => format!("mysql://{rest}"),
            None => text.to_string(),
        };
        let scheme = if kind == Kind::MariaDb {
            "MariaDB"
        } else {
            "MySQL"
        };
        // Its messages name parameters; values only of parameters that hold no secret.
        let opts = mysql_async::Opts::from_url(&url).map_err(|e| {
            bad_input(format!(
                "--dsn is not a valid {scheme} connection string: {e}; {ENCODE_HINT}"
            ))
        })?;
        Ok(Dsn {
            text: text.to_string(),
            kind,
            host: opts.ip_or_hostname().to_string(),
            port: opts.tcp_port(),
            socket: opts.socket().map(str::to_string),
            database: opts.db_name().map(str::to_string),
            user: opts.user().map(str::to_string),
            password: opts.pass().map(str::to_string),
            options: url_options(text)
                .into_iter()
                .filter(|(k, _)| !PARTS.contains(&k.as_str()))
                .collect(),
            driver: Driver::My(Box::new(opts)),
        })
    }

    pub fn kind(&self) -> Kind {
        self.kind
    }

    /// MySQL or MariaDB.
    pub fn is_mysql(&self) -> bool {
        self.kind.is_mysql()
    }

    pub fn host(&self) -> &str {
        &self.host
    }

    pub fn port(&self) -> u16 {
        self.port
    }

    pub fn socket(&self) -> Option<&str> {
        self.socket.as_deref()
    }

    pub fn database(&self) -> Option<&str> {
        self.database.as_deref()
    }

    pub fn user(&self) -> Option<&str> {
        self.user.as_deref()
    }

    pub fn password(&self) -> Option<&str> {
        self.password.as_deref()
    }

    pub fn options(&self) -> &[(String, String)] {
        &self.options
    }

    /// The connection string as given, password included: for a child process's
    /// arguments only, never for a message.
    pub fn expose(&self) -> &str {
        &self.text
    }

    /// What tokio-postgres connects with (`None`: not a PostgreSQL DSN).
    pub fn pg_config(&self) -> Option<&tokio_postgres::Config> {
        match &self.driver {
            Driver::Pg(c) => Some(c),
            Driver::My(_) => None,
        }
    }

    /// What mysql_async connects with (`None`: not a MySQL/MariaDB DSN).
    pub fn mysql_opts(&self) -> Option<&mysql_async::Opts> {
        match &self.driver {
            Driver::My(o) => Some(o),
            Driver::Pg(_) => None,
        }
    }

    /// The same server and credentials, another database.
    pub fn with_database(&self, db: &str) -> anyhow::Result<Dsn> {
        let text = &self.text;
        let Some((scheme, rest)) = text.split_once("://") else {
            let mut parts: Vec<String> = split_key_values(text)
                .into_iter()
                .filter(|p| !p.trim_start().starts_with("dbname"))
                .collect();
            parts.push(format!(
                "dbname='{}'",
                db.replace('\\', "\\\\").replace('\'', "\\'")
            ));
            return Dsn::parse(&parts.join(" "));
        };
        let (main, query) = match rest.split_once('?') {
            Some((m, q)) => (m, Some(q)),
            None => (rest, None),
        };
        let authority = main.split_once('/').map_or(main, |(a, _)| a);
        let mut out = format!("{scheme}://{authority}/{db}");
        if let Some(q) = query {
            out.push('?');
            out.push_str(q);
        }
        Dsn::parse(&out)
    }
}

impl std::str::FromStr for Dsn {
    type Err = anyhow::Error;

    fn from_str(s: &str) -> anyhow::Result<Dsn> {
        Dsn::parse(s)
    }
}

impl fmt::Display for Dsn {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let user = self
            .user
            .as_deref()
            .map(|u| format!("{u}@"))
            .unwrap_or_default();
        let db = self.database.as_deref().unwrap_or_default();
        match self.kind {
            Kind::Postgres => {
                let config = self.pg_config();
                let mut tcp = Vec::new();
                let mut sockets = Vec::new();
                if let Some(c) = config {
                    use tokio_postgres::config::Host;
                    for (i, host) in c.get_hosts().iter().enumerate() {
                        let port = c
                            .get_ports()
                            .get(i)
                            .or(c.get_ports().first())
                            .map(|p| format!(":{p}"))
                            .unwrap_or_default();
                        match host {
                            Host::Tcp(h) => tcp.push(format!("{h}{port}")),
                            Host::Unix(path) => sockets.push(format!("host={}", path.display())),
                        }
                    }
                }
                let query = if sockets.is_empty() {
                    String::new()
                } else {
                    format!("?{}", sockets.join("&"))
                };
                write!(f, "postgres://{user}{}/{db}{query}", tcp.join(","))
            }
            Kind::MySql | Kind::MariaDb => {
                let scheme = if self.kind == Kind::MariaDb {
                    "mariadb"
                } else {
                    "mysql"
                };
                let socket = self
                    .socket
                    .as_deref()
                    .map(|s| format!("?socket={s}"))
                    .unwrap_or_default();
                write!(
                    f,
                    "{scheme}://{user}{}:{}/{db}{socket}",
                    self.host, self.port
                )
            }
        }
    }
}

impl fmt::Debug for Dsn {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "Dsn({self})")
    }
}

/// `text` without its password, for messages about a string that may not parse.
pub fn redacted(text: &str) -> String {
    match Dsn::parse(text) {
        Ok(d) => d.to_string(),
        Err(e) => format!("<{e:#}>"),
    }
}

/// The query parameters of a URL (`?a=1&b=2`), values as written.
fn url_options(text: &str) -> Vec<(String, String)> {
    let Some((_, query)) = text.split_once('?') else {
        return Vec::new();
    };
    query
        .split('&')
        .filter_map(|kv| kv.split_once('='))
        .map(|(k, v)| (k.to_string(), v.to_string()))
        .collect()
}

/// The `key=value` pairs of a libpq connection string, quotes removed.
fn key_values(text: &str) -> Vec<(String, String)> {
    split_key_values(text)
        .into_iter()
        .filter_map(|pair| {
            let (k, v) = pair.split_once('=')?;
            let v = v.trim();
            let v = v
                .strip_prefix('\'')
                .and_then(|v| v.strip_suffix('\''))
                .unwrap_or(v)
                .replace("\\'", "'")
                .replace("\\\\", "\\");
            Some((k.trim().to_string(), v))
        })
        .collect()
}

/// A libpq connection string split into `key = value` pieces: a quoted value may
/// hold spaces and `=`, `\` escapes the next character, spaces may surround `=`.
fn split_key_values(text: &str) -> Vec<String> {
    let mut pairs = Vec::new();
    let mut chars = text.chars().peekable();
    loop {
        while chars.peek().is_some_and(|c| c.is_whitespace()) {
            chars.next();
        }
        if chars.peek().is_none() {
            return pairs;
        }
        let mut pair = String::new();
        while let Some(&c) = chars.peek() {
            if c == '=' || c.is_whitespace() {
                break;
            }
            pair.push(c);
            chars.next();
        }
        while chars.peek().is_some_and(|c| c.is_whitespace()) {
            chars.next();
        }
        if chars.peek() == Some(&'=') {
            chars.next();
            pair.push('=');
            while chars.peek().is_some_and(|c| c.is_whitespace()) {
                chars.next();
            }
            let quoted = chars.peek() == Some(&'\'');
            if quoted {
                pair.push('\'');
                chars.next();
            }
            while let Some(c) = chars.next() {
                match c {
                    '\\' => {
                        pair.push('\\');
                        if let Some(n) = chars.next() {
                            pair.push(n);
                        }
                    }
                    '\'' if quoted => {
                        pair.push('\'');
                        break;
                    }
                    c if c.is_whitespace() && !quoted => break,
                    c => pair.push(c),
                }
            }
        }
        pairs.push(pair);
    }
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
                "host=db user=bob password='s3cret=x y=z' dbname=app",
                "postgres://bob@db/app",
            ),
            (
                "host=/run/postgresql user=bob password=s3cret dbname=app",
                "postgres://bob@/app?host=/run/postgresql",
            ),
            ("mysql://bob:s3cret@db:3306/app", "mysql://bob@db:3306/app"),
            ("mariadb://bob:s3cret@db/app", "mariadb://bob@db:3306/app"),
        ];
        for (text, shown) in cases {
            let dsn = Dsn::parse(text).unwrap();
            assert_eq!(dsn.to_string(), shown, "{text}");
            assert_eq!(format!("{dsn:?}"), format!("Dsn({shown})"));
            assert!(
                dsn.options().iter().all(|(_, v)| !v.contains("cret")),
                "{text}: {:?}",
                dsn.options()
            );
            assert!(dsn.password().is_some_and(|p| p.contains("cret")), "{text}");
        }
        for text in [
            "mysql://bob:se/cret@db/app",
            "mysql://bob@db/app?password=s3cret",
            "host=db password='s3cret",
            "postgres://bob:s3cret@db:notaport/app",
            "s3cret",
        ] {
            let e = format!("{:#}", Dsn::parse(text).unwrap_err());
            assert!(!e.contains("cret"), "{text}: {e}");
            assert!(redacted(text).starts_with("<--dsn is not"), "{text}");
        }
    }

    #[test]
    fn parts_and_options() {
        let d = Dsn::parse("postgres://bob:pw@db.example:6543/app?sslmode=require").unwrap();
        assert_eq!(d.kind(), Kind::Postgres);
        assert_eq!((d.host(), d.port()), ("db.example", 6543));
        assert_eq!((d.database(), d.user()), (Some("app"), Some("bob")));
        assert_eq!(d.options(), &[("sslmode".into(), "require".into())]);
        let d = Dsn::parse("host=db port=5433 dbname=app application_name='my app'").unwrap();
        assert_eq!(
            (d.host(), d.port(), d.database()),
            ("db", 5433, Some("app"))
        );
        assert_eq!(d.options(), &[("application_name".into(), "my app".into())]);
        let d = Dsn::parse("mariadb://root@127.0.0.1:3307/shop").unwrap();
        assert!(d.is_mysql() && d.kind() == Kind::MariaDb);
        assert_eq!((d.port(), d.database()), (3307, Some("shop")));
    }

    #[test]
    fn another_database_keeps_the_rest() {
        let d = Dsn::parse("postgres://bob:pw@db:5432/app?sslmode=disable").unwrap();
        let other = d.with_database("bench").unwrap();
        assert_eq!(other.database(), Some("bench"));
        assert_eq!(other.password(), Some("pw"));
        assert_eq!(other.options(), d.options());
        let d = Dsn::parse("host=db dbname=app user=bob").unwrap();
        assert_eq!(d.with_database("b2").unwrap().database(), Some("b2"));
        let d = Dsn::parse("mysql://root@h:3306/app").unwrap();
        assert_eq!(
            d.with_database("x").unwrap().to_string(),
            "mysql://root@h:3306/x"
        );
    }
}
