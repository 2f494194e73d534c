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

/// A scratch server of either engine, for the demo and the benchmark.
pub enum Scratch {
    Postgres(Box<PgSandbox>),
    MariaDb(MySqlSandbox),
}

impl Scratch {
    /// Starts one for `engine`, saying so on stdout.
    pub async fn start(engine: crate::Engine) -> anyhow::Result<Scratch> {
        Ok(match engine {
            crate::Engine::Postgres => {
                println!("Starting a scratch PostgreSQL (wal_level=logical)...");
                Scratch::Postgres(Box::new(PgSandbox::start().await?))
            }
            crate::Engine::MySql => {
                println!("Starting a scratch MariaDB (binary log ROW, full row images)...");
                Scratch::MariaDb(MySqlSandbox::start().await?)
            }
        })
    }

    /// Creates database `name`; its DSN.
    pub async fn create_database(&self, name: &str) -> anyhow::Result<crate::dsn::Dsn> {
        let dsn = match self {
            Scratch::Postgres(pg) => pg.create_database(name).await?,
            Scratch::MariaDb(my) => my.create_database(name).await?,
        };
        crate::dsn::Dsn::parse(&dsn)
    }

    /// How to connect to database `db` with the engine's own client.
    pub fn client_command(&self, db: &str) -> String {
        match self {
            Scratch::Postgres(pg) => format!("psql '{}'", pg.dsn(db)),
            Scratch::MariaDb(my) => format!("mariadb -h127.0.0.1 -P{} -uroot {db}", my.port()),
        }
    }

    pub async fn stop(self) {
        match self {
            Scratch::Postgres(pg) => pg.stop().await,
            Scratch::MariaDb(my) => my.stop().await,
        }
    }
}
