//! Which database a run talks to: the [`Engine`], chosen once from the [`Dsn`],
//! and everything that differs by engine outside the phase machine (defaults,
//! name quoting, the shadow's name, connecting a backend, `wraith cleanup`,
//! `wraith verify`). Callers (the CLI, the demo, the benchmark, tests) hold an
//! `Engine` and never branch on the DSN themselves.

use std::sync::Arc;
use std::time::Duration;

use crate::dsn::Dsn;
use crate::engine::faults::Faults;
use crate::engine::migration::{Outcome, RunContext};
use crate::error::bad_input;
use crate::mysql::MyBackend;
use crate::pg::PgBackend;
use crate::plan::{MigrationSpec, RunOptions};
use crate::verify::{Mode, Report, VerifyTarget};

/// A database engine wraith migrates on.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Engine {
    Postgres,
    /// MySQL or MariaDB: one backend, which tells them apart on the server.
    MySql,
}

/// A backend connected for one migration, on either engine.
pub enum Connected {
    Postgres(Arc<PgBackend>),
    MySql(Arc<MyBackend>),
}

impl Connected {
    /// Runs the migration's phases on this backend.
    pub async fn run(self, opts: RunOptions, cx: RunContext) -> anyhow::Result<Outcome> {
        match self {
            Connected::Postgres(b) => crate::engine::run(b, opts, cx).await,
            Connected::MySql(b) => crate::engine::run(b, opts, cx).await,
        }
    }
}

impl Engine {
    /// The engine a connection string names.
    pub fn of(dsn: &Dsn) -> Engine {
        if dsn.is_mysql() {
            Engine::MySql
        } else {
            Engine::Postgres
        }
    }

    /// Its name for hooks (`WRAITH_ENGINE`) and reports.
    pub fn name(self) -> &'static str {
        match self {
            Engine::Postgres => "postgres",
            Engine::MySql => "mysql",
        }
    }

    /// The copy's default target chunk time. On MySQL/MariaDB a chunk's shared
    /// locks on the source rows make the application's writes to them wait until
    /// it commits, so chunks stay short (measured with `wraith bench --engine
    /// mariadb`: at 1000 tx/s the longest write wait during the copy fell from
    /// about 600 ms to about 70 ms going from 500 ms to 100 ms, at the same copy rate).
    pub fn chunk_time(self) -> Duration {
        match self {
            Engine::Postgres => Duration::from_millis(500),
            Engine::MySql => Duration::from_millis(100),
        }
    }

    /// The default longest wait for the cutover lock per attempt. MySQL's
    /// `LOCK TABLES` also waits for the metadata locks of open transactions that
    /// merely read the table, so it needs more room than PostgreSQL's lock.
    pub fn cutover_lock_timeout(self) -> Duration {
        match self {
            Engine::Postgres => Duration::from_millis(500),
            Engine::MySql => Duration::from_secs(2),
        }
    }

    /// The quote character of identifiers in `--table` names.
    pub fn quote(self) -> char {
        match self {
            Engine::Postgres => '"',
            Engine::MySql => '`',
        }
    }

    /// The schema (database on MySQL) of a table named without one.
    pub fn default_schema(self, dsn: &Dsn) -> anyhow::Result<String> {
        match self {
            Engine::Postgres => Ok("public".to_string()),
            Engine::MySql => dsn.database().map(str::to_string).ok_or_else(|| {
                bad_input(
                    "name the database in the connection string (mysql://user@host/db) or the \
                     table as db.table",
                )
            }),
        }
    }

    /// The schema of the spec's table: named in `--table`, or the default.
    pub fn schema_of(self, spec: &MigrationSpec) -> anyhow::Result<String> {
        match &spec.schema {
            Some(s) => Ok(s.clone()),
            None => self.default_schema(&spec.dsn),
        }
    }

    /// The name of the shadow table wraith builds for `schema.table`.
    pub fn shadow_name(self, schema: &str, table: &str) -> anyhow::Result<String> {
        Ok(match self {
            Engine::Postgres => crate::pg::names::Names::new(schema, table)?.shadow,
            Engine::MySql => crate::mysql::names::Names::new(schema, table)?.shadow,
        })
    }

    /// Validates the spec and opens the backend's control session.
    pub async fn connect(
        self,
        spec: MigrationSpec,
        opts: &RunOptions,
        faults: Faults,
    ) -> anyhow::Result<Connected> {
        let opts = opts.backend(faults);
        Ok(match self {
            Engine::Postgres => {
                Connected::Postgres(Arc::new(PgBackend::connect(spec, opts).await?))
            }
            Engine::MySql => Connected::MySql(Arc::new(MyBackend::connect(spec, opts).await?)),
        })
    }

    /// Connects and runs a migration, serving the control socket of a real run
    /// (`opts.control_socket`) while it lasts: what `wraith migrate` does once.
    pub async fn migrate(
        spec: MigrationSpec,
        opts: RunOptions,
        cx: RunContext,
    ) -> anyhow::Result<Outcome> {
        let engine = Engine::of(&spec.dsn);
        let backend = engine.connect(spec, &opts, cx.faults.clone()).await?;
        Engine::serve_and_run(backend, opts, cx).await
    }

    /// `wraith revert`: swaps the table's last `--revertible` migration back, through
    /// the same phases (the way back's stream, verification, the bounded cutover).
    pub async fn revert(
        spec: MigrationSpec,
        opts: RunOptions,
        cx: RunContext,
    ) -> anyhow::Result<Outcome> {
        let backend = match Engine::of(&spec.dsn) {
            Engine::Postgres => Connected::Postgres(Arc::new(
                PgBackend::connect_revert(spec, opts.backend(cx.faults.clone())).await?,
            )),
            Engine::MySql => return Err(not_revertible()),
        };
        Engine::serve_and_run(backend, opts, cx).await
    }

    /// `wraith revert --forget`: removes the way back kept for the table (and with
    /// `drop_old` the old table).
    pub async fn forget(self, spec: &MigrationSpec, drop_old: bool) -> anyhow::Result<Vec<String>> {
        match self {
            Engine::Postgres => crate::pg::revert::forget_command(spec, drop_old).await,
            Engine::MySql => Err(not_revertible()),
        }
    }

    async fn serve_and_run(
        backend: Connected,
        opts: RunOptions,
        cx: RunContext,
    ) -> anyhow::Result<Outcome> {
        let _listener = match (&opts.control_socket, opts.execute) {
            (Some(path), true) => {
                let l = crate::ctl::listen(path, cx.control.clone(), cx.stats.clone()).await?;
                tracing::info!(
                    "control socket: {} (try `wraith ctl {} status`)",
                    path.display(),
                    path.display()
                );
                Some(l)
            }
            _ => None,
        };
        backend.run(opts, cx).await
    }

    /// `wraith cleanup`: removes an earlier run's leftovers for the spec's table.
    pub async fn cleanup(self, spec: &MigrationSpec) -> anyhow::Result<Vec<String>> {
        match self {
            Engine::Postgres => crate::pg::cleanup::cleanup_command(spec).await,
            Engine::MySql => crate::mysql::cleanup::cleanup_command(spec).await,
        }
    }

    /// `wraith verify`: compares two tables with the same key.
    pub async fn verify_tables(
        self,
        dsn: &Dsn,
        target: &VerifyTarget,
        mode: Mode,
        workers: usize,
    ) -> anyhow::Result<Report> {
        match self {
            Engine::Postgres => crate::pg::verify::verify_tables(dsn, target, mode, workers).await,
            Engine::MySql => crate::mysql::verify::verify_tables(dsn, target, mode, workers).await,
        }
    }
}

/// MySQL/MariaDB keep no way back yet.
fn not_revertible() -> anyhow::Error {
    bad_input(
        "there is no way back on MySQL/MariaDB yet: migrations there run without --revertible; \
         nothing was changed",
    )
}
