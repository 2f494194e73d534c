//! Connection strings, parsed once: [`Dsn`] knows the engine, host, port,
//! database, user, password and options of a `postgres://`, `mysql://` or
//! `mariadb://` URL or a libpq `key=value` string, and shows itself without the
//! password. It is rebuilt from the parts the driver parsed, never the text with
//! a password cut out of it, so no spelling of a password (`user:pw@`,
//! `?password=`, `password = x`, `password='a b'`, a raw `/` in it) can reach a
//! message, a log line or a file.

pub mod sources;
mod text;
pub mod tls;

use std::fmt;

use crate::error::bad_input;
pub use sources::{PasswordFrom, Sources};
use text::{key_values, split_key_values, url_options, without_tls};
pub use tls::{Tls, TlsMode};

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
    /// The other settings the string carries (`application_name`, `socket`...).
    options: Vec<(String, String)>,
    /// TLS, from the string, the environment or an option file.
    tls: Tls,
    /// Where the password came from (the text, the environment, a file, a prompt).
    password_from: PasswordFrom,
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
    /// Parses a connection string; a bad one is refused without echoing it. What
    /// it leaves out comes from this process's environment and files ([`Sources`]).
    pub fn parse(text: &str) -> anyhow::Result<Dsn> {
        Dsn::parse_with(text, &Sources::from_process())
    }

    /// [`Dsn::parse`] with the gaps filled from `sources`.
    pub fn parse_with(text: &str, sources: &Sources) -> anyhow::Result<Dsn> {
        let text = text.trim();
        let kind = if text.starts_with("mysql://") {
            Kind::MySql
        } else if text.starts_with("mariadb://") {
            Kind::MariaDb
        } else if text.starts_with("postgres://")
            || text.starts_with("postgresql://")
            || text.contains('=')
            || text.is_empty()
        {
            Kind::Postgres
        } else {
            return Err(bad_input(
                "--dsn is not a PostgreSQL (postgres://user@host/db, or host=... dbname=...) or \
                 MySQL/MariaDB (mysql://user@host/db) connection string",
            ));
        };
        if kind.is_mysql() {
            Dsn::parse_mysql(text, kind, sources)
        } else {
            Dsn::parse_postgres(text, sources)
        }
    }

    fn parse_postgres(text: &str, sources: &Sources) -> anyhow::Result<Dsn> {
        use tokio_postgres::config::Host;
        let url = text.contains("://");
        let pairs = if url {
            url_options(text)
        } else {
            key_values(text)
        };
        let (mut tls, options) = tls::take(pairs, false)?;
        let env_tls = [
            ("sslmode", "PGSSLMODE"),
            ("sslrootcert", "PGSSLROOTCERT"),
            ("sslcert", "PGSSLCERT"),
            ("sslkey", "PGSSLKEY"),
        ]
        .iter()
        .filter_map(|(k, var)| sources.var(var).map(|v| (k.to_string(), v.to_string())))
        .collect();
        tls::fill(&mut tls, sources.tls_flags.clone(), false)?;
        tls::fill(&mut tls, env_tls, false)?;
        // The parser's messages name options, never their values.
        let mut config = without_tls(text, url, false)
            .parse::<tokio_postgres::Config>()
            .map_err(|e| {
                bad_input(format!(
                    "--dsn is not a valid PostgreSQL connection string: {e}; {ENCODE_HINT}"
                ))
            })?;
        config.ssl_mode(match tls.mode {
            TlsMode::Disable => tokio_postgres::config::SslMode::Disable,
            TlsMode::Prefer => tokio_postgres::config::SslMode::Prefer,
            _ => tokio_postgres::config::SslMode::Require,
        });
        if config.get_hosts().is_empty() {
            match sources.var("PGHOST") {
                Some(hosts) => hosts.split(',').for_each(|h| {
                    config.host(h.trim());
                }),
                None => {
                    config.host(
                        sources::default_socket_dir()
                            .map(|d| d.display().to_string())
                            .as_deref()
                            .unwrap_or("localhost"),
                    );
                }
            }
        }
        if config.get_ports().is_empty()
            && let Some(port) = sources.var("PGPORT")
        {
            let port = port
                .parse()
                .map_err(|_| bad_input(format!("PGPORT={port} is not a port number")))?;
            config.port(port);
        }
        if config.get_user().is_none()
            && let Some(user) = sources
                .var("PGUSER")
                .map(str::to_string)
                .or_else(|| sources::os_user(sources))
        {
            config.user(&user);
        }
        if config.get_dbname().is_none()
            && let Some(db) = sources.var("PGDATABASE")
        {
            config.dbname(db);
        }
        let (mut host, mut socket) = (String::new(), None);
        match config.get_hosts().first() {
            Some(Host::Tcp(h)) => host = h.clone(),
            Some(Host::Unix(path)) => socket = Some(path.display().to_string()),
            None => {}
        }
        let port = config.get_ports().first().copied().unwrap_or(5432);
        let user = config.get_user().map(str::to_string);
        let database = config.get_dbname().map(str::to_string);
        let mut password_from = if config.get_password().is_some() {
            PasswordFrom::Text
        } else {
            PasswordFrom::None
        };
        if let Some(p) = &sources.password {
            config.password(p.as_str());
            password_from = PasswordFrom::Prompt;
        } else if password_from == PasswordFrom::None {
            if let Some(p) = sources.var("PGPASSWORD") {
                config.password(p);
                password_from = PasswordFrom::Env("PGPASSWORD");
            } else {
                // For a socket in libpq's default directory, .pgpass says `localhost`.
                let pass_host = match &socket {
                    Some(dir)
                        if Some(std::path::Path::new(dir)) == sources::default_socket_dir() =>
                    {
                        "localhost"
                    }
                    Some(dir) => dir.as_str(),
                    None => host.as_str(),
                };
                let user = user.clone().unwrap_or_default();
                let db = database.clone().unwrap_or_else(|| user.clone());
                if let Some((p, file)) = sources.pgpass(pass_host, port, &db, &user) {
                    config.password(p.as_str());
                    password_from = PasswordFrom::File(file);
                }
            }
        }
        Ok(Dsn {
            text: text.to_string(),
            kind: Kind::Postgres,
            port,
            password: config
                .get_password()
                .map(|p| String::from_utf8_lossy(p).into_owned()),
            database,
            user,
            options: options
                .into_iter()
                .filter(|(k, _)| !PARTS.contains(&k.as_str()))
                .collect(),
            host,
            socket,
            tls,
            password_from,
            driver: Driver::Pg(Box::new(config)),
        })
    }

    fn parse_mysql(text: &str, kind: Kind, sources: &Sources) -> anyhow::Result<Dsn> {
        let (mut tls, options) = tls::take(url_options(text), true)?;
        tls::fill(&mut tls, sources.tls_flags.clone(), true)?;
        let file = sources.mysql_client_options()?;
        let file_tls = file
            .iter()
            .filter(|(k, _)| k.starts_with("ssl"))
            .cloned()
            .collect();
        tls::fill(&mut tls, file_tls, true)?;
        // mysql_async reads `mariadb://` as nothing; to it both are `mysql://`.
        let stripped = without_tls(text, true, true);
        let url = match stripped.strip_prefix("mariadb://") {
            Some(rest) => format!("mysql://{rest}"),
            None => stripped,
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
        let from_file = |key: &str| file.iter().find(|(k, _)| k == key).map(|(_, v)| v.clone());
        let user = opts
            .user()
            .map(str::to_string)
            .or_else(|| from_file("user"));
        // The command line wins over option files, which win over the environment.
        let (password, password_from) = match (&sources.password, opts.pass()) {
            (Some(p), _) => (Some(p.clone()), PasswordFrom::Prompt),
            (None, Some(p)) => (Some(p.to_string()), PasswordFrom::Text),
            (None, None) => match (from_file("password"), sources.var("MYSQL_PWD")) {
                (Some(p), _) => (
                    Some(p),
                    PasswordFrom::File(
                        sources
                            .defaults_file
                            .clone()
                            .unwrap_or_else(|| "~/.my.cnf".into()),
                    ),
                ),
                (None, Some(p)) => (Some(p.to_string()), PasswordFrom::Env("MYSQL_PWD")),
                (None, None) => (None, PasswordFrom::None),
            },
        };
        let opts: mysql_async::Opts = mysql_async::OptsBuilder::from_opts(opts.clone())
            .user(user.clone())
            .pass(password.clone())
            .ssl_opts(tls::mysql_ssl(&tls))
            .into();
        Ok(Dsn {
            text: text.to_string(),
            kind,
            host: opts.ip_or_hostname().to_string(),
            port: opts.tcp_port(),
            socket: opts.socket().map(str::to_string),
            database: opts.db_name().map(str::to_string),
            user,
            password,
            options: options
                .into_iter()
                .filter(|(k, _)| !PARTS.contains(&k.as_str()))
                .collect(),
            tls,
            password_from,
            driver: Driver::My(Box::new(opts)),
        })
    }

    /// TLS as this connection uses it.
    pub fn tls(&self) -> &Tls {
        &self.tls
    }

    /// Where the password came from.
    pub fn password_from(&self) -> &PasswordFrom {
        &self.password_from
    }

    /// The same connection without TLS (MySQL's `PREFERRED` against a server that
    /// offers none).
    pub fn without_tls(&self) -> Dsn {
        let mut plain = self.clone();
        plain.tls.mode = TlsMode::Disable;
        if let Driver::My(o) = &plain.driver {
            let opts: mysql_async::Opts = mysql_async::OptsBuilder::from_opts((**o).clone())
                .ssl_opts(None)
                .into();
            plain.driver = Driver::My(Box::new(opts));
        }
        plain
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

#[cfg(test)]
mod tests;
