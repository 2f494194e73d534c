//! Throwaway database servers for integration tests, `wraith demo` and `wraith bench`.
//!
//! Each sandbox is a private server started from the installed binaries, living
//! entirely inside its own temporary directory and listening on a free loopback
//! port. It never touches a system database service, and it is shut down and its
//! directory removed when the sandbox is stopped or dropped (including during a
//! panic unwind).

mod mysql;
mod postgres;
mod process;
mod servers;

pub use mysql::{MyOptions, MyServer, MySqlSandbox};
pub use postgres::{PgOptions, PgSandbox, other_versions};
pub use servers::{Kind, Server};

/// A server certificate for a sandbox (PEM files), and the CA that signed it.
#[derive(Debug, Clone)]
pub struct ServerTls {
    pub cert: std::path::PathBuf,
    pub key: std::path::PathBuf,
    pub ca: std::path::PathBuf,
}

/// Where the demo or the benchmark runs: a scratch server to start, or an
/// existing one (`--dsn`).
pub enum Target {
    Scratch(Server),
    Existing(Box<crate::dsn::Dsn>),
}

impl Target {
    /// `dsn` when given, otherwise the installed server called `server`; one that
    /// is not installed is bad input naming what is.
    pub fn of(dsn: Option<crate::dsn::Dsn>, server: &str) -> anyhow::Result<Target> {
        Ok(match dsn {
            Some(dsn) => Target::Existing(Box::new(dsn)),
            None => Target::Scratch(
                Server::find(server).map_err(|e| crate::error::bad_input(format!("{e:#}")))?,
            ),
        })
    }

    pub fn engine(&self) -> crate::Engine {
        match self {
            Target::Scratch(server) => server.engine(),
            Target::Existing(dsn) => crate::Engine::of(dsn),
        }
    }
}

/// A scratch server of the matrix, for the demo and the benchmark.
pub struct Scratch {
    server: Server,
    running: Running,
}

enum Running {
    Postgres(Box<PgSandbox>),
    MySql(MySqlSandbox),
}

impl Scratch {
    /// Starts `server`.
    pub async fn start(server: Server) -> anyhow::Result<Scratch> {
        let running = match (server.pg_options(), server.my_server()) {
            (Some(opts), _) => Running::Postgres(Box::new(PgSandbox::start_with(opts).await?)),
            (_, Some(my)) => Running::MySql(
                MySqlSandbox::start_opts(MyOptions {
                    server: my,
                    ..MyOptions::default()
                })
                .await?,
            ),
            _ => unreachable!("a server is one engine or the other"),
        };
        Ok(Scratch { server, running })
    }

    pub fn engine(&self) -> crate::Engine {
        self.server.engine()
    }

    /// What it is, for reports: `MySQL 9.7 sandbox (binlog ROW, ...), same machine`.
    pub fn describe(&self) -> String {
        let settings = match self.running {
            Running::Postgres(_) => "fsync off",
            Running::MySql(_) => "binlog ROW, innodb_flush_log_at_trx_commit=2",
        };
        format!("{} sandbox ({settings}), same machine", self.server.title())
    }

    /// Creates database `name`; its DSN.
    pub async fn create_database(&self, name: &str) -> anyhow::Result<crate::dsn::Dsn> {
        let dsn = match &self.running {
            Running::Postgres(pg) => pg.create_database(name).await?,
            Running::MySql(my) => my.create_database(name).await?,
        };
        crate::dsn::Dsn::parse(&dsn)
    }

    /// How to connect to database `db` with the engine's own client.
    pub fn client_command(&self, db: &str) -> String {
        match &self.running {
            Running::Postgres(pg) => format!("psql '{}'", pg.dsn(db)),
            Running::MySql(my) => {
                let client = match &self.server.kind {
                    Kind::MySql(MyServer::MySql { bin }) => bin.join("mysql").display().to_string(),
                    _ => "mariadb".to_string(),
                };
                format!("{client} -h127.0.0.1 -P{} -uroot {db}", my.port())
            }
        }
    }

    pub async fn stop(self) {
        match self.running {
            Running::Postgres(pg) => pg.stop().await,
            Running::MySql(my) => my.stop().await,
        }
    }
}
