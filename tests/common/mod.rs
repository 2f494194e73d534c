//! Helpers shared by the integration tests: a sandbox server per test, a
//! migration run through the library, the `wraith` binary, and catalog probes.
#![allow(dead_code)]

pub mod env;

use std::process::Output;
use std::sync::Arc;
use std::sync::atomic::AtomicBool;

use tokio_postgres::Client;
use wraith::engine::migration::Outcome;
use wraith::engine::{self, Stats};
use wraith::pg::PgBackend;
use wraith::plan::{MigrationSpec, RunOptions, Transform};
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

pub fn spec(
    dsn: &str,
    table: &str,
    alter: &str,
    transforms: &[(&str, &str)],
    options: RunOptions,
) -> MigrationSpec {
    let mut s = MigrationSpec {
        dsn: dsn.to_string(),
        schema: None,
        table: String::new(),
        alter: alter.to_string(),
        transforms: transforms
            .iter()
            .map(|(c, e)| Transform {
                column: c.to_string(),
                expr: e.to_string(),
            })
            .collect(),
        prepare: vec![],
        shadow_statements: vec![],
        checks: vec![],
        options,
    };
    s.set_table(table).expect("a valid table name");
    s
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

/// Runs a migration through the library, as `wraith migrate` does.
pub async fn migrate(spec: MigrationSpec) -> anyhow::Result<Outcome> {
    let opts = spec.options.clone();
    let backend = Arc::new(PgBackend::connect(spec).await?);
    engine::run(
        backend,
        opts,
        Arc::new(Stats::default()),
        Arc::new(AtomicBool::new(false)),
    )
    .await
}

pub fn execute() -> RunOptions {
    RunOptions {
        execute: true,
        ..RunOptions::default()
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
pub async fn my_sandbox() -> (wraith::sandbox::MariaDbSandbox, String, mysql_async::Conn) {
    let db = wraith::sandbox::MariaDbSandbox::start()
        .await
        .expect("start MariaDB sandbox");
    let dsn = db.create_database("app").await.expect("create database");
    let c = db.connect("app").await.expect("connect");
    (db, dsn, c)
}

/// Runs a MySQL/MariaDB migration through the library, as `wraith migrate` does.
pub async fn my_migrate(spec: MigrationSpec) -> anyhow::Result<Outcome> {
    my_migrate_with(spec, Arc::new(Stats::default())).await
}

pub async fn my_migrate_with(spec: MigrationSpec, stats: Arc<Stats>) -> anyhow::Result<Outcome> {
    let opts = spec.options.clone();
    let backend = Arc::new(wraith::mysql::MyBackend::connect(spec).await?);
    engine::run(backend, opts, stats, Arc::new(AtomicBool::new(false))).await
}

/// Tables of the database, sorted.
pub async fn my_tables(c: &mut mysql_async::Conn) -> Vec<String> {
    use mysql_async::prelude::Queryable;
    let mut t: Vec<String> = c.query("SHOW TABLES").await.expect("SHOW TABLES");
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
