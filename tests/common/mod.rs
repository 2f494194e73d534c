//! Helpers shared by the integration tests: a sandbox server per test, a
//! migration run through the library, the `wraith` binary, and catalog probes.
#![allow(dead_code)]

pub mod certs;
pub mod dependents;
pub mod env;
pub mod ops;
pub mod servers;

use std::process::Output;
use std::sync::Arc;

use tokio_postgres::Client;
use wraith::Engine;
use wraith::dsn::Dsn;
use wraith::engine::faults::Faults;
use wraith::engine::migration::Outcome;
use wraith::engine::{RunContext, Stats};
use wraith::plan::{BackendOptions, MigrationSpec, RunOptions, Transform};
use wraith::sandbox::{PgOptions, PgSandbox};

pub struct Db {
    pub pg: PgSandbox,
    pub dsn: String,
    pub client: Client,
}

pub async fn db() -> Db {
    db_with(PgOptions::default()).await
}

pub async fn db_with(opts: PgOptions) -> Db {
    let pg = PgSandbox::start_with(opts)
        .await
        .expect("start PostgreSQL sandbox");
    let dsn = pg.create_database("app").await.expect("create database");
    let client = pg.connect("app").await.expect("connect");
    Db { pg, dsn, client }
}

/// A migration as a test runs it: what it does, how, and its fault points.
#[derive(Clone)]
pub struct Job {
    pub spec: MigrationSpec,
    pub options: RunOptions,
    pub faults: Faults,
    pub hooks: wraith::engine::hooks::Hooks,
}

impl Job {
    pub fn new(spec: MigrationSpec, options: RunOptions) -> Job {
        Job {
            spec,
            options,
            faults: Faults::default(),
            hooks: Default::default(),
        }
    }

    pub fn engine(&self) -> Engine {
        Engine::of(&self.spec.dsn)
    }

    /// What the backend gets of the options.
    pub fn backend_options(&self) -> BackendOptions {
        self.options.backend(self.faults.clone())
    }

    /// A context with fresh counters, these fault points and `stats`.
    pub fn context(&self, stats: Arc<Stats>) -> RunContext {
        RunContext {
            stats,
            faults: self.faults.clone(),
            hooks: self.hooks.clone(),
            ..RunContext::new(&self.options)
        }
    }
}

pub fn dsn(text: &str) -> Dsn {
    Dsn::parse(text).expect("a valid DSN")
}

pub fn spec(
    dsn_text: &str,
    table: &str,
    alter: &str,
    transforms: &[(&str, &str)],
    options: RunOptions,
) -> Job {
    let mut s = MigrationSpec::new(dsn(dsn_text), alter);
    s.transforms = transforms
        .iter()
        .map(|(c, e)| Transform {
            column: c.to_string(),
            expr: e.to_string(),
        })
        .collect();
    s.set_table(table).expect("a valid table name");
    Job::new(s, options)
}

/// The demo's `items` table (with its mirror and enum type) and a workload on it.
pub async fn items_under_load(
    db: &Db,
    rows: i64,
    clients: usize,
    tps: u64,
) -> wraith::bench::workload::Workload {
    wraith::bench::workload::create_items_scenario(&db.client, rows)
        .await
        .expect("create items");
    let mut cfg = wraith::bench::workload::items_workload(&db.dsn, rows, clients, tps);
    cfg.max_duration = std::time::Duration::from_secs(300);
    wraith::bench::workload::Workload::start(cfg)
        .await
        .expect("start the workload")
}

/// Runs a migration through the library, as `wraith migrate` does, on the
/// engine its DSN names.
pub async fn migrate(job: Job) -> anyhow::Result<Outcome> {
    migrate_with(job, Arc::new(Stats::default())).await
}

pub async fn migrate_with(job: Job, stats: Arc<Stats>) -> anyhow::Result<Outcome> {
    let cx = job.context(stats);
    Engine::migrate(job.spec, job.options, cx).await
}

/// A real run with PostgreSQL's defaults.
pub fn execute() -> RunOptions {
    execute_on(Engine::Postgres)
}

/// A real run with `engine`'s defaults.
pub fn execute_on(engine: Engine) -> RunOptions {
    RunOptions {
        execute: true,
        ..RunOptions::for_engine(engine)
    }
}

/// Runs the `wraith` binary.
pub fn wraith(args: &[&str]) -> Output {
    std::process::Command::new(env!("CARGO_BIN_EXE_wraith"))
        .args(args)
        .output()
        .expect("run wraith")
}

/// Runs the `wraith` binary, expects exit 0, returns its stdout.
pub fn wraith_ok(args: &[&str]) -> String {
    let out = wraith(args);
    let stdout = String::from_utf8_lossy(&out.stdout).into_owned();
    assert_eq!(
        out.status.code(),
        Some(0),
        "wraith {}\n{stdout}\n{}",
        args.join(" "),
        String::from_utf8_lossy(&out.stderr)
    );
    stdout
}

/// Runs the `wraith` binary off the async runtime, so the test's own connections
/// keep being served.
pub async fn wraith_async(args: Vec<String>) -> std::process::Output {
    tokio::task::spawn_blocking(move || {
        let args: Vec<&str> = args.iter().map(String::as_str).collect();
        wraith(&args)
    })
    .await
    .unwrap()
}

/// Runs the `wraith` binary with `vars` set, off the async runtime.
pub async fn wraith_async_env(args: Vec<String>, vars: Vec<(String, String)>) -> Output {
    tokio::task::spawn_blocking(move || {
        std::process::Command::new(env!("CARGO_BIN_EXE_wraith"))
            .args(&args)
            .envs(vars)
            .output()
            .expect("run wraith")
    })
    .await
    .unwrap()
}

/// What a run printed and how it ended, for assertion messages.
pub fn show(out: &std::process::Output) -> String {
    format!(
        "exit {:?}\nstdout:\n{}\nstderr:\n{}",
        out.status.code(),
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    )
}

pub async fn scalar_i64(c: &Client, sql: &str) -> i64 {
    c.query_one(sql, &[])
        .await
        .unwrap_or_else(|e| panic!("{sql}: {e}"))
        .get(0)
}

pub async fn scalar_bool(c: &Client, sql: &str) -> bool {
    c.query_one(sql, &[])
        .await
        .unwrap_or_else(|e| panic!("{sql}: {e}"))
        .get(0)
}

/// wraith's objects left in the database: replication slots, publications, shadow and
/// checkpoint tables.
pub async fn leftovers(c: &Client) -> Vec<String> {
    c.query(
        "SELECT 'slot ' || slot_name::text FROM pg_replication_slots \
         UNION ALL SELECT 'publication ' || pubname::text FROM pg_publication WHERE pubname LIKE 'wraith\\_%' \
         UNION ALL SELECT 'table ' || relname::text FROM pg_class WHERE (relname LIKE '\\_%\\_new' OR relname LIKE '\\_%\\_ckpt') AND relkind = 'r'",
        &[],
    )
    .await
    .expect("list leftovers")
    .iter()
    .map(|r| r.get(0))
    .collect()
}

/// A checksum of a whole table's contents (order-independent).
pub async fn table_fingerprint(c: &Client, table: &str) -> (i64, String) {
    let r = c
        .query_one(
            &format!("SELECT count(*), coalesce(md5(string_agg(md5(t::text), '' ORDER BY md5(t::text))), '') FROM {table} t"),
            &[],
        )
        .await
        .expect("fingerprint");
    (r.get(0), r.get(1))
}

/// A sandbox MariaDB with a database `app`: the server, its DSN and a connection.
pub async fn my_sandbox() -> (wraith::sandbox::MySqlSandbox, String, mysql_async::Conn) {
    my_sandbox_on(wraith::sandbox::MyServer::MariaDb).await
}

/// A sandbox `server` with a database `app`: the server, its DSN and a connection.
pub async fn my_sandbox_on(
    server: wraith::sandbox::MyServer,
) -> (wraith::sandbox::MySqlSandbox, String, mysql_async::Conn) {
    my_sandbox_with(wraith::sandbox::MyOptions {
        server,
        ..Default::default()
    })
    .await
}

/// A sandbox started with `opts`, with a database `app`.
pub async fn my_sandbox_with(
    opts: wraith::sandbox::MyOptions,
) -> (wraith::sandbox::MySqlSandbox, String, mysql_async::Conn) {
    let label = format!("{:?}", opts.server);
    let db = wraith::sandbox::MySqlSandbox::start_opts(opts)
        .await
        .unwrap_or_else(|e| panic!("start the {label} sandbox: {e:#}"));
    let dsn = db.create_database("app").await.expect("create database");
    let c = db.connect("app").await.expect("connect");
    (db, dsn, c)
}

/// `n` rows of one column `seq` (1..=n) to select from, on MariaDB and MySQL alike
/// (the sandboxes lift the recursion limits).
pub fn seq(n: i64) -> String {
    format!(
        "(WITH RECURSIVE s(seq) AS (SELECT 1 UNION ALL SELECT seq + 1 FROM s WHERE seq < {n}) \
         SELECT seq FROM s) AS seq_rows"
    )
}

/// Tables of the database, sorted, but for `wraith_history` (the record of
/// completed migrations, which stays by design).
pub async fn my_tables(c: &mut mysql_async::Conn) -> Vec<String> {
    use mysql_async::prelude::Queryable;
    let mut t: Vec<String> = c.query("SHOW TABLES").await.expect("SHOW TABLES");
    t.retain(|name| name != "wraith_history");
    t.sort();
    t
}

/// The keys (one integer column) that a `wraith verify --json` run reports as
/// differing, sorted; the run must have exited 1 (the tables differ).
pub fn differing_keys(out: &Output) -> Vec<i64> {
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert_eq!(
        out.status.code(),
        Some(1),
        "{stdout}{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let report: serde_json::Value = serde_json::from_str(stdout.trim()).expect("a JSON report");
    let mut keys: Vec<i64> = report["mismatched_keys"]
        .as_array()
        .expect("mismatched_keys")
        .iter()
        .map(|k| k[0].as_str().unwrap().parse().unwrap())
        .collect();
    keys.sort();
    keys
}

/// The migration a spec file describes, on `dsn_text`, run with `options`.
pub fn job_of(file: wraith::plan::SpecFile, dsn_text: &str, options: RunOptions) -> Job {
    Job::new(
        file.into_spec(&dsn(dsn_text)).expect("a valid spec"),
        options,
    )
}

impl Job {
    pub fn with_faults(self, faults: Faults) -> Job {
        Job { faults, ..self }
    }

    pub fn with_hooks(self, hooks: wraith::engine::hooks::Hooks) -> Job {
        Job { hooks, ..self }
    }
}

/// Fault points that run `sql` on a session of their own (either engine) when
/// the run reaches `point`: DDL or corruption at a chosen moment.
pub fn sql_at(
    point: wraith::engine::faults::Point,
    dsn_text: &str,
    sql: impl Into<String>,
) -> Faults {
    let (dsn, sql) = (dsn(dsn_text), sql.into());
    Faults::with(move |at| {
        let (dsn, sql) = (dsn.clone(), sql.clone());
        Box::pin(async move {
            if at != point {
                return;
            }
            if dsn.is_mysql() {
                use mysql_async::prelude::Queryable;
                let mut c = wraith::mysql::conn::connect(&dsn, "test").await.unwrap();
                c.query_drop(&sql)
                    .await
                    .unwrap_or_else(|e| panic!("{sql}: {e}"));
                let _ = c.disconnect().await;
            } else {
                let c = wraith::pg::conn::connect(&dsn, "test").await.unwrap();
                c.batch_execute(&sql)
                    .await
                    .unwrap_or_else(|e| panic!("{sql}: {e}"));
            }
        })
    })
}

pub fn assert_refused(out: &std::process::Output, case: &str, needles: &[&str]) {
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert_eq!(
        out.status.code(),
        Some(2),
        "{case}: expected bad input\n{}",
        show(out)
    );
    for n in needles {
        assert!(
            stderr.contains(n),
            "{case}: stderr should say {n:?}\n{}",
            show(out)
        );
    }
}

/// `wraith migrate --dsn DSN --table TABLE --alter ALTER` and `extra` flags.
pub fn migrate_args(dsn: &str, table: &str, alter: &str, extra: &[&str]) -> Vec<String> {
    ["migrate", "--dsn", dsn, "--table", table, "--alter", alter]
        .iter()
        .chain(extra)
        .map(|s| s.to_string())
        .collect()
}

/// A writer running in the background until stopped, on its own connection,
/// counting its transactions: the concurrent workload of a test.
pub struct Writer<T> {
    stop: Arc<std::sync::atomic::AtomicBool>,
    count: Arc<std::sync::atomic::AtomicU64>,
    task: tokio::task::JoinHandle<T>,
}

impl<T: Send + 'static> Writer<T> {
    /// Runs `write(c, stop, count)`, which loops until `stop` and counts in `count`.
    pub fn start<C, F, Fut>(c: C, write: F) -> Writer<T>
    where
        F: FnOnce(C, Arc<std::sync::atomic::AtomicBool>, Arc<std::sync::atomic::AtomicU64>) -> Fut,
        Fut: std::future::Future<Output = T> + Send + 'static,
    {
        let stop = Arc::new(std::sync::atomic::AtomicBool::new(false));
        let count = Arc::new(std::sync::atomic::AtomicU64::new(0));
        let task = tokio::spawn(write(c, stop.clone(), count.clone()));
        Writer { stop, count, task }
    }

    /// Stops it; what it returned and how many transactions it counted. Its
    /// panic (an error it met) fails the test.
    pub async fn stop(self) -> (T, u64) {
        self.stop.store(true, std::sync::atomic::Ordering::Relaxed);
        let out = self.task.await.expect("the writer met no error");
        (out, self.count.load(std::sync::atomic::Ordering::Relaxed))
    }
}

/// Rows (by `id`) in which MySQL/MariaDB `table` and `mirror` differ over the
/// comma-separated `columns` (`id` among them).
pub async fn my_mirror_differences(
    c: &mut mysql_async::Conn,
    table: &str,
    mirror: &str,
    columns: &str,
) -> i64 {
    use mysql_async::prelude::Queryable;
    c.query_first(format!(
        "SELECT COUNT(*) FROM (SELECT id FROM (SELECT {columns} FROM {table} UNION ALL \
         SELECT {columns} FROM {mirror}) x GROUP BY {columns} HAVING COUNT(*) <> 2) d"
    ))
    .await
    .expect("comparing with the mirror")
    .unwrap_or(-1)
}
