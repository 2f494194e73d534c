//! The `wraith` command line: a thin layer over the library.

use std::process::ExitCode;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering::Relaxed};
use std::time::Duration;

use clap::{Args, Parser, Subcommand, ValueEnum};
use wraith::bench::report::{BenchEngine, BenchScenario};
use wraith::dsn;
use wraith::engine::migration::Outcome;
use wraith::engine::progress::Reporter;
use wraith::engine::{self, Stats};
use wraith::error::{bad_input, exit_code};
use wraith::pg::PgBackend;
use wraith::plan::{MigrationSpec, RunOptions, SpecFile, Transform, parse_duration};

#[derive(Parser)]
#[command(
    name = "wraith",
    version,
    about = "Online, verified table rewrites for PostgreSQL and MySQL/MariaDB: shadow table, \
             throttled copy, change-stream apply, atomic cutover.",
    after_help = "Exit codes: 0 done, 1 failed (nothing changed for the application), 2 bad input."
)]
struct Cli {
    #[command(subcommand)]
    command: Command,
    /// Log format on stderr.
    #[arg(long, global = true, value_enum, default_value_t = LogFormat::Text)]
    log_format: LogFormat,
    /// More log detail (-v debug, -vv trace).
    #[arg(short, long, global = true, action = clap::ArgAction::Count)]
    verbose: u8,
}

#[derive(Clone, Copy, ValueEnum)]
enum LogFormat {
    Text,
    Json,
}

#[derive(Subcommand)]
enum Command {
    /// Rewrite a table into a new shape while the application keeps writing (dry run unless --execute).
    Migrate(Box<MigrateArgs>),
    /// Remove wraith's leftovers for a table (slot, publication, shadow table) and nothing else.
    Cleanup(TableArgs),
    /// Show a whole migration on a scratch PostgreSQL that wraith starts, with live writes.
    Demo(DemoArgs),
    /// Measure a migration under a write load, against an offline ALTER (scratch server or --dsn).
    Bench(BenchArgs),
    /// Compare two tables with the same key row for row (or a migration's shadow with its table).
    Verify(VerifyArgs),
    /// Control a running migration through its socket: status, throttle, cutover, abort...
    Ctl(CtlArgs),
}

#[derive(Args)]
struct TableArgs {
    /// Connection string: postgres://user:password@host:5432/db or mysql://user:password@host:3306/db
    #[arg(long, env = "WRAITH_DSN")]
    dsn: String,
    /// Table to migrate, optionally qualified (schema.table; default: public, or the DSN's
    /// database on MySQL). Quote parts that hold dots or quotes: '"Sales Dept"."q""t"'
    /// (backticks on MySQL).
    #[arg(long)]
    table: String,
}

#[derive(Args)]
struct MigrateArgs {
    /// Connection string: postgres://user:password@host:5432/db or mysql://user:password@host:3306/db
    #[arg(long, env = "WRAITH_DSN")]
    dsn: String,
    /// Table to migrate, optionally qualified (schema.table; default: public, or the DSN's
    /// database on MySQL). Quote parts that hold dots or quotes: '"Sales Dept"."q""t"'
    /// (backticks on MySQL).
    #[arg(long, required_unless_present = "spec")]
    table: Option<String>,
    /// ALTER TABLE actions applied verbatim to the shadow table; several statements may be separated by ';'.
    #[arg(long, required_unless_present = "spec")]
    alter: Option<String>,
    /// A migration spec file (TOML: table, alter, transforms, prepare, shadow) instead of --table/--alter.
    #[arg(long, conflicts_with_all = ["table", "alter", "transforms"])]
    spec: Option<std::path::PathBuf>,
    /// Fill a column of the new table with an expression over the old row: COLUMN=EXPR (repeatable).
    #[arg(long = "transform", value_name = "COLUMN=EXPR")]
    transforms: Vec<String>,
    /// Really run the migration (without it: preflight and plan only, nothing changed).
    #[arg(long)]
    execute: bool,
    /// Target duration of one copy chunk (e.g. 500ms, 1s). Default: 500ms on
    /// PostgreSQL; 100ms on MySQL/MariaDB, where a chunk's shared row locks make
    /// writes to its rows wait for it.
    #[arg(long, value_parser = parse_duration)]
    chunk_time: Option<Duration>,
    /// Hard cap on rows copied per second.
    #[arg(long)]
    max_rows_per_sec: Option<u64>,
    /// Longest wait for the cutover lock per attempt; the application waits at most
    /// this long. Default: 500ms on PostgreSQL, 2s on MySQL/MariaDB.
    #[arg(long, value_parser = parse_duration)]
    cutover_lock_timeout: Option<Duration>,
    /// Cutover attempts before giving up (nothing is changed then).
    #[arg(long, default_value_t = 30)]
    cutover_attempts: u32,
    /// Longest the cutover may hold the write lock while applying the last changes.
    #[arg(long, default_value = "2s", value_parser = parse_duration)]
    cutover_drain_timeout: Duration,
    /// Drop the original table after a successful swap (default: keep it as _<table>_old).
    #[arg(long)]
    drop_old: bool,
    /// Verification before the cutover: off, count (rows per range) or checksum (every row).
    #[arg(long, value_enum, default_value_t = wraith::verify::Mode::Checksum)]
    verify: wraith::verify::Mode,
    /// Parallel verification sessions.
    #[arg(long, default_value_t = 2)]
    verify_workers: usize,
    /// Print the final summary as JSON on stdout.
    #[arg(long)]
    json: bool,
    #[command(flatten)]
    operate: OperateArgs,
}

/// Throttling, live control, postponed cutover, blockers and hooks.
#[derive(Args)]
struct OperateArgs {
    /// Pause the copy while this file exists.
    #[arg(long, help_heading = "Throttling")]
    throttle_flag_file: Option<std::path::PathBuf>,
    /// A query returning one number: above 0 pauses the copy (e.g. a check of your own).
    #[arg(long, help_heading = "Throttling")]
    throttle_query: Option<String>,
    /// A replica whose lag counts against --max-lag (repeatable). PostgreSQL also
    /// watches the standbys connected to the primary; MySQL reads wraith's heartbeat row there.
    #[arg(long = "replica-dsn", help_heading = "Throttling")]
    replica_dsns: Vec<String>,
    /// Replica lag limit (e.g. 1500ms): the copy slows above half of it and pauses at it.
    #[arg(long, value_parser = parse_duration, help_heading = "Throttling")]
    max_lag: Option<Duration>,
    /// Load limit: active sessions (PostgreSQL) or Threads_running (MySQL); the copy
    /// slows above half of it and pauses at it.
    #[arg(long, help_heading = "Throttling")]
    max_load: Option<u64>,
    /// Abort cleanly when the load reaches this for --critical-load-hits checks in a row.
    #[arg(long, help_heading = "Throttling")]
    critical_load: Option<u64>,
    /// Consecutive checks (every 250ms) at --critical-load before aborting.
    #[arg(long, default_value_t = 3, help_heading = "Throttling")]
    critical_load_hits: u32,
    /// PostgreSQL: WAL retained by wraith's slot, in bytes, above which the copy
    /// pauses; at twice this the run aborts cleanly before the disk is at risk.
    #[arg(long, help_heading = "Throttling")]
    max_slot_lag: Option<u64>,
    /// The control socket for `wraith ctl` (default: one per database and table in the temp dir).
    #[arg(long, help_heading = "Control")]
    control_socket: Option<std::path::PathBuf>,
    /// Copy, verify, then keep applying changes until `wraith ctl <socket> cutover`.
    #[arg(long, help_heading = "Control")]
    postpone_cutover: bool,
    /// Keep applying changes while this file exists; cut over once it is removed.
    #[arg(long, help_heading = "Control")]
    postpone_cutover_flag_file: Option<std::path::PathBuf>,
    /// End sessions whose open transactions hold the table and would make the
    /// cutover's lock queue (default: wait for a quiet moment instead).
    #[arg(long, help_heading = "Control")]
    kill_blockers: bool,
    /// Make the run resumable (checkpoints, and on PostgreSQL a persistent slot, with
    /// --max-slot-lag 4 GiB unless set), and continue an interrupted resumable run
    /// of the same migration instead of starting over.
    #[arg(long, help_heading = "Resume")]
    resume: bool,
    /// How long a --resume run that lost its server keeps reconnecting to resume
    /// (0: stop at once and leave the resume to you).
    #[arg(long, default_value = "60s", value_parser = parse_duration, help_heading = "Resume")]
    reconnect_for: Duration,
    /// Command run (sh -c) when the migration starts; WRAITH_* variables describe it.
    /// Failing stops the run.
    #[arg(long, value_name = "CMD", help_heading = "Hooks")]
    hook_start: Option<String>,
    /// Command run when the copy is done (failing stops the run).
    #[arg(long, value_name = "CMD", help_heading = "Hooks")]
    hook_copy_done: Option<String>,
    /// Command run when verification passed (failing stops the run).
    #[arg(long, value_name = "CMD", help_heading = "Hooks")]
    hook_verified: Option<String>,
    /// Command run right before the cutover (failing stops the run, nothing changed).
    #[arg(long, value_name = "CMD", help_heading = "Hooks")]
    hook_before_cutover: Option<String>,
    /// Command run after a successful swap.
    #[arg(long, value_name = "CMD", help_heading = "Hooks")]
    hook_success: Option<String>,
    /// Command run when the run fails or is aborted (WRAITH_ERROR holds why).
    #[arg(long, value_name = "CMD", help_heading = "Hooks")]
    hook_failure: Option<String>,
}

#[derive(Args)]
struct CtlArgs {
    /// The migration's control socket (printed when it starts).
    socket: std::path::PathBuf,
    /// status | throttle | no-throttle | chunk-time=MS | max-lag=MS | max-load=N | cutover | abort
    command: String,
}

#[derive(Args)]
struct DemoArgs {
    /// Orders to generate (customers: one per hundred orders).
    #[arg(long, default_value_t = 1_000_000)]
    rows: i64,
    /// Run against this database instead of a scratch server.
    #[arg(long)]
    dsn: Option<String>,
    /// Leave the scratch server running at the end and print how to connect.
    #[arg(long)]
    keep: bool,
    /// Write transactions per second during the migration.
    #[arg(long, default_value_t = 500)]
    tps: u64,
    /// Load the data with the dirt of a real system (orphan refs, stray-case statuses,
    /// non-object JSON, duplicate emails, negative balances) and show what the spec does.
    #[arg(long)]
    dirty: bool,
    /// Which database: postgres, or mariadb (the orders normalization in MySQL
    /// types: scenarios/orders/migration.mysql.toml).
    #[arg(long, value_enum, default_value_t = DemoEngine::Postgres)]
    engine: DemoEngine,
}

#[derive(Clone, Copy, Debug, ValueEnum)]
enum DemoEngine {
    Postgres,
    Mariadb,
}

#[derive(Args)]
struct VerifyArgs {
    /// Connection string: postgres://user:password@host:5432/db or mysql://user:password@host:3306/db
    #[arg(long, env = "WRAITH_DSN")]
    dsn: String,
    /// A table being migrated: compares it with its shadow (_<table>_new on
    /// PostgreSQL, <table>_wraith_new on MySQL/MariaDB).
    #[arg(long, conflicts_with_all = ["source", "target"])]
    table: Option<String>,
    /// Source table (optionally schema-qualified).
    #[arg(long, requires = "target")]
    source: Option<String>,
    /// Target table, same schema as the source.
    #[arg(long, requires = "source")]
    target: Option<String>,
    /// Compare target column COLUMN with EXPR over the source row (repeatable).
    #[arg(long = "transform", value_name = "COLUMN=EXPR")]
    transforms: Vec<String>,
    /// count: row counts per range; checksum: every row's values too.
    #[arg(long, value_enum, default_value_t = wraith::verify::Mode::Checksum)]
    mode: wraith::verify::Mode,
    /// Parallel sessions.
    #[arg(long, default_value_t = 2)]
    workers: usize,
    /// Print the report as JSON.
    #[arg(long)]
    json: bool,
}

#[derive(Args)]
struct BenchArgs {
    /// What to migrate: the orders normalization, or a generic table of --rows rows
    /// of --row-width bytes.
    #[arg(long, value_enum, default_value_t = BenchKind::Orders)]
    scenario: BenchKind,
    /// Rows (orders) in the benchmark table.
    #[arg(long, default_value_t = 1_000_000)]
    rows: i64,
    /// Row width in bytes for --scenario table.
    #[arg(long, default_value_t = 200)]
    row_width: usize,
    /// Write transactions per second during the loaded run.
    #[arg(long, default_value_t = 1000)]
    tps: u64,
    /// Workload sessions.
    #[arg(long, default_value_t = 8)]
    clients: usize,
    /// Seconds of load measured before the migration starts, and again after it.
    #[arg(long = "window-secs", alias = "baseline-secs", default_value_t = 10)]
    window_secs: u64,
    /// offline: also time the change as a plain ALTER TABLE on a copy of the data and
    /// print the ratios; none: skip it.
    #[arg(long, value_enum, default_value_t = Baseline::Offline)]
    baseline: Baseline,
    /// Cap the copy rate of the loaded run (passed to `wraith migrate --max-rows-per-sec`).
    #[arg(long)]
    max_rows_per_sec: Option<u64>,
    /// Throttle the loaded run on load (passed to `wraith migrate --max-load`), to
    /// measure what throttling does to the workload's latency.
    #[arg(long)]
    max_load: Option<u64>,
    /// Run on this server instead of a scratch one; wraith creates (and drops)
    /// databases wraith_bench_* there, so the role needs CREATEDB.
    #[arg(long, conflicts_with = "sandbox")]
    dsn: Option<String>,
    /// Run on a scratch server started for the benchmark (the default; see --engine).
    #[arg(long)]
    sandbox: bool,
    /// The scratch server: postgres, or mariadb (baselines ALGORITHM=COPY and
    /// pt-online-schema-change). With --dsn, the DSN's scheme decides.
    #[arg(long, value_enum, default_value_t = DemoEngine::Postgres)]
    engine: DemoEngine,
    /// Print the report as JSON.
    #[arg(long)]
    json: bool,
}

#[derive(Clone, Copy, clap::ValueEnum)]
enum BenchKind {
    Orders,
    Table,
}

#[derive(Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
enum Baseline {
    Offline,
    None,
}

fn main() -> ExitCode {
    let cli = Cli::parse();
    init_logging(cli.log_format, cli.verbose);
    let runtime = match tokio::runtime::Runtime::new() {
        Ok(r) => r,
        Err(e) => {
            eprintln!("error: starting the runtime: {e}");
            return ExitCode::from(1);
        }
    };
    let result = runtime.block_on(async {
        match cli.command {
            Command::Migrate(args) => migrate(*args).await,
            Command::Cleanup(args) => cleanup(args).await,
            Command::Verify(args) => verify(args).await,
            Command::Ctl(args) => ctl(args).await,
            Command::Demo(args) if matches!(args.engine, DemoEngine::Mariadb) => {
                if args.dirty {
                    return Err(bad_input(
                        "--dirty shows the orders scenario: PostgreSQL only",
                    ));
                }
                until_interrupted(wraith::demo::run_mariadb(wraith::demo::DemoConfig {
                    rows: args.rows,
                    tps: args.tps,
                    dsn: args.dsn,
                    keep: args.keep,
                    dirty: false,
                }))
                .await
            }
            Command::Demo(args) => {
                until_interrupted(wraith::demo::run(wraith::demo::DemoConfig {
                    rows: args.rows,
                    tps: args.tps,
                    dsn: args.dsn,
                    keep: args.keep,
                    dirty: args.dirty,
                }))
                .await
            }
            Command::Bench(args) => {
                until_interrupted(wraith::bench::report::run(
                    wraith::bench::report::BenchConfig {
                        engine: match args.engine {
                            DemoEngine::Postgres => BenchEngine::Postgres,
                            DemoEngine::Mariadb => BenchEngine::MySql,
                        },
                        scenario: match args.scenario {
                            BenchKind::Orders => BenchScenario::Orders,
                            BenchKind::Table => BenchScenario::Table {
                                row_width: args.row_width,
                            },
                        },
                        rows: args.rows,
                        tps: args.tps,
                        clients: args.clients,
                        window: Duration::from_secs(args.window_secs),
                        offline_baseline: args.baseline == Baseline::Offline,
                        migrate_args: [
                            args.max_rows_per_sec
                                .map(|n| format!("--max-rows-per-sec={n}")),
                            args.max_load.map(|n| format!("--max-load={n}")),
                        ]
                        .into_iter()
                        .flatten()
                        .collect(),
                        dsn: args.dsn,
                        wraith: None,
                        json: args.json,
                    },
                ))
                .await
            }
        }
    });
    match result {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("error: {e:#}");
            ExitCode::from(exit_code(&e) as u8)
        }
    }
}

/// Resolves at the first SIGINT (Ctrl-C), SIGTERM or SIGHUP.
async fn interrupted() {
    use tokio::signal::unix::{SignalKind, signal};
    let (Ok(mut term), Ok(mut hup)) = (
        signal(SignalKind::terminate()),
        signal(SignalKind::hangup()),
    ) else {
        let _ = tokio::signal::ctrl_c().await;
        return;
    };
    tokio::select! {
        _ = tokio::signal::ctrl_c() => {}
        _ = term.recv() => {}
        _ = hup.recv() => {}
    }
}

/// Runs `f`; when interrupted drops it instead, which stops the scratch servers it started.
async fn until_interrupted(
    f: impl std::future::Future<Output = anyhow::Result<()>>,
) -> anyhow::Result<()> {
    tokio::select! {
        r = f => r,
        _ = interrupted() => Err(wraith::error::Aborted.into()),
    }
}

fn init_logging(format: LogFormat, verbose: u8) {
    let level = match verbose {
        0 => "info",
        1 => "debug",
        _ => "trace",
    };
    let filter = tracing_subscriber::EnvFilter::try_from_default_env()
        .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new(format!("wraith={level},warn")));
    let builder = tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_writer(wraith::engine::progress::LogWriter);
    match format {
        LogFormat::Text => builder.with_target(false).init(),
        LogFormat::Json => builder.json().init(),
    }
}

/// `--max-slot-lag` of a `--resume` run on PostgreSQL when none is given.
const DEFAULT_RESUME_SLOT_LAG: u64 = 4 << 30;

fn spec_from(args: &MigrateArgs) -> anyhow::Result<MigrationSpec> {
    if !args.dsn.starts_with("postgres://")
        && !args.dsn.starts_with("postgresql://")
        && !args.dsn.contains('=')
        && !wraith::dsn::is_mysql(&args.dsn)
    {
        return Err(bad_input(format!(
            "--dsn {} is not a PostgreSQL (postgres://user@host/db) or MySQL/MariaDB (mysql://user@host/db) connection string",
            dsn::redacted(&args.dsn)
        )));
    }
    let mysql = wraith::dsn::is_mysql(&args.dsn);
    let o = &args.operate;
    if mysql && o.max_slot_lag.is_some() {
        return Err(bad_input(
            "--max-slot-lag watches a PostgreSQL replication slot; MySQL/MariaDB has none (use --max-lag with --replica-dsn)",
        ));
    }
    let mut hooks = wraith::engine::hooks::Hooks::default();
    for (event, cmd) in wraith::engine::hooks::HookEvent::ALL.into_iter().zip([
        &o.hook_start,
        &o.hook_copy_done,
        &o.hook_verified,
        &o.hook_before_cutover,
        &o.hook_success,
        &o.hook_failure,
    ]) {
        if let Some(cmd) = cmd {
            hooks.set(event, cmd.clone());
        }
    }
    let options = RunOptions {
        execute: args.execute,
        chunk_time: args
            .chunk_time
            .unwrap_or(if wraith::dsn::is_mysql(&args.dsn) {
                wraith::mysql::DEFAULT_CHUNK_TIME
            } else {
                RunOptions::default().chunk_time
            }),
        max_rows_per_sec: args.max_rows_per_sec,
        cutover_lock_timeout: args.cutover_lock_timeout.unwrap_or(if mysql {
            Duration::from_secs(2)
        } else {
            RunOptions::default().cutover_lock_timeout
        }),
        cutover_attempts: args.cutover_attempts,
        cutover_drain_timeout: args.cutover_drain_timeout,
        drop_old: args.drop_old,
        verify: args.verify,
        verify_workers: args.verify_workers.max(1),
        throttle: wraith::plan::ThrottleOptions {
            flag_file: o.throttle_flag_file.clone(),
            query: o.throttle_query.clone(),
            replica_dsns: o.replica_dsns.clone(),
            max_lag: o.max_lag,
            max_load: o.max_load,
            critical_load: o.critical_load,
            critical_load_hits: o.critical_load_hits,
            // A persistent slot keeps WAL while nobody reads it: always guarded.
            max_slot_lag: o
                .max_slot_lag
                .or((o.resume && !mysql).then_some(DEFAULT_RESUME_SLOT_LAG)),
            ..Default::default()
        },
        control_socket: o.control_socket.clone(),
        postpone_cutover: o.postpone_cutover,
        postpone_flag_file: o.postpone_cutover_flag_file.clone(),
        kill_blockers: o.kill_blockers,
        resume: o.resume,
        hooks,
        ..RunOptions::default()
    };
    if let Some(path) = &args.spec {
        return SpecFile::read(path)?.into_spec(&args.dsn, options);
    }
    let transforms = args
        .transforms
        .iter()
        .map(|t| Transform::parse(t))
        .collect::<anyhow::Result<Vec<_>>>()?;
    let mut spec = MigrationSpec {
        dsn: args.dsn.clone(),
        schema: None,
        table: String::new(),
        alter: args.alter.clone().unwrap_or_default(),
        transforms,
        prepare: vec![],
        shadow_statements: vec![],
        checks: vec![],
        options,
    };
    spec.set_table(args.table.as_deref().unwrap_or_default())?;
    Ok(spec)
}

async fn migrate(args: MigrateArgs) -> anyhow::Result<()> {
    let mut spec = spec_from(&args)?;
    let database = dsn_database(&spec.dsn);
    let socket = spec
        .options
        .control_socket
        .clone()
        .unwrap_or_else(|| wraith::ctl::default_socket(&spec.dsn, &database, &spec.table));
    spec.options.control_socket = Some(socket.clone());
    let hooks = &mut spec.options.hooks;
    hooks.fact("DATABASE", database);
    hooks.fact("TABLE", spec.table.clone());
    hooks.fact(
        "ENGINE",
        if wraith::dsn::is_mysql(&spec.dsn) {
            "mysql"
        } else {
            "postgres"
        },
    );
    hooks.fact("CONTROL_SOCKET", socket.display().to_string());

    let abort = Arc::new(AtomicBool::new(false));
    let flag = abort.clone();
    tokio::spawn(async move {
        interrupted().await;
        tracing::warn!("interrupted: stopping and cleaning up (interrupt again to quit at once)");
        flag.store(true, Relaxed);
        interrupted().await;
        std::process::exit(130);
    });
    // A resumable run that lost its server resumes itself once the server is back.
    let deadline = std::time::Instant::now() + args.operate.reconnect_for;
    let mut wait = Duration::from_millis(500);
    loop {
        let result = if wraith::dsn::is_mysql(&spec.dsn) {
            match wraith::mysql::MyBackend::connect(spec.clone()).await {
                Ok(b) => run_migration(Arc::new(b), spec.options.clone(), &args, &abort).await,
                Err(e) => Err(e),
            }
        } else {
            match PgBackend::connect(spec.clone()).await {
                Ok(b) => run_migration(Arc::new(b), spec.options.clone(), &args, &abort).await,
                Err(e) => Err(e),
            }
        };
        match result {
            Err(e)
                if spec.options.resume
                    && wraith::error::is_connection_lost(&e)
                    && std::time::Instant::now() + wait < deadline
                    && !abort.load(Relaxed) =>
            {
                tracing::warn!("{e:#}");
                tracing::warn!("reconnecting in {wait:?} to resume the migration");
                tokio::time::sleep(wait).await;
                wait = (wait * 2).min(Duration::from_secs(10));
            }
            other => return other,
        }
    }
}

/// Runs the phases on either engine and prints the outcome.
async fn run_migration<B: wraith::engine::Backend>(
    backend: Arc<B>,
    opts: RunOptions,
    args: &MigrateArgs,
    abort: &Arc<AtomicBool>,
) -> anyhow::Result<()> {
    let stats = Arc::new(Stats::default());
    let abort = abort.clone();
    let reporter = opts.execute.then(|| Reporter::start(stats.clone()));
    let outcome = engine::run(backend, opts, stats, abort).await;
    if let Some(r) = reporter {
        r.finish().await;
    }
    match outcome? {
        Outcome::Planned(plan) => {
            println!("{plan}");
            println!("\nDry run: nothing was changed. Add --execute to run this migration.");
        }
        Outcome::AlreadyDone(plan) if args.json => println!(
            "{}",
            serde_json::json!({ "already_applied": plan.completed, "swapped": false })
        ),
        Outcome::AlreadyDone(plan) => println!("{plan}"),
        Outcome::Migrated(plan, summary) if args.json => {
            let mut json = summary.to_json();
            json["findings"] = serde_json::json!(plan.findings);
            println!("{json}");
        }
        Outcome::Migrated(plan, summary) => {
            println!("Migration done: the table has its new shape.\n{summary}");
            if !plan.findings.is_empty() {
                println!(
                    "data checks (source rows at preflight):\n{}",
                    wraith::plan::report::findings_text(&plan.findings)
                );
            }
        }
    }
    Ok(())
}

async fn cleanup(args: TableArgs) -> anyhow::Result<()> {
    let mut spec = MigrationSpec {
        dsn: args.dsn.clone(),
        schema: None,
        table: String::new(),
        alter: String::new(),
        transforms: vec![],
        prepare: vec![],
        shadow_statements: vec![],
        checks: vec![],
        options: RunOptions::default(),
    };
    spec.set_table(&args.table)?;
    let removed = if wraith::dsn::is_mysql(&spec.dsn) {
        wraith::mysql::cleanup_command(&spec).await?
    } else {
        wraith::pg::cleanup_command(&spec).await?
    };
    if removed.is_empty() {
        println!("Nothing to clean up for {}.{}.", spec.schema(), spec.table);
    } else {
        for r in removed {
            println!("removed {r}");
        }
    }
    Ok(())
}

async fn verify(args: VerifyArgs) -> anyhow::Result<()> {
    let mysql = wraith::dsn::is_mysql(&args.dsn);
    let transforms = args
        .transforms
        .iter()
        .map(|t| Transform::parse(t))
        .collect::<anyhow::Result<Vec<_>>>()?;
    let split = |name: &str| -> anyhow::Result<(String, String)> {
        let (schema, table) = wraith::plan::split_table_name(name, if mysql { '`' } else { '"' })?;
        if let Some(schema) = schema {
            return Ok((schema, table));
        }
        if !mysql {
            return Ok(("public".to_string(), table));
        }
        let db = wraith::mysql::conn::opts(&args.dsn)?
            .db_name()
            .map(str::to_string);
        let db = db.ok_or_else(|| {
            bad_input("name the database in the connection string (mysql://user@host/db) or the table as db.table")
        })?;
        Ok((db, table))
    };
    let (schema, source, target) = match (&args.table, &args.source, &args.target) {
        (Some(t), _, _) => {
            let (schema, table) = split(t)?;
            let shadow = if mysql {
                wraith::mysql::names::Names::new(&schema, &table)?.shadow
            } else {
                format!("_{table}_new")
            };
            (schema, table, shadow)
        }
        (None, Some(s), Some(t)) => {
            let (schema, source) = split(s)?;
            (schema, source, split(t)?.1)
        }
        _ => return Err(bad_input("give --table, or --source and --target")),
    };
    let target = wraith::verify::VerifyTarget {
        schema,
        source,
        target,
        transforms,
    };
    let report = if mysql {
        wraith::mysql::verify::verify_tables(&args.dsn, &target, args.mode, args.workers).await?
    } else {
        wraith::pg::verify::verify_tables(&args.dsn, &target, args.mode, args.workers).await?
    };
    if args.json {
        println!("{}", report.to_json());
    } else {
        print!("{report}");
    }
    if report.is_clean() {
        Ok(())
    } else {
        Err(anyhow::anyhow!(
            "the tables differ in {} keys",
            report.keys().len()
        ))
    }
}

/// `wraith ctl`: one command to a running migration; its reply on stdout.
async fn ctl(args: CtlArgs) -> anyhow::Result<()> {
    let reply = wraith::ctl::send(&args.socket, &args.command).await?;
    println!("{reply}");
    match reply.strip_prefix("error: ") {
        Some(e) => Err(bad_input(e.to_string())),
        None => Ok(()),
    }
}

/// The database a DSN names (URL path or `dbname=`), for the default socket name.
fn dsn_database(dsn: &str) -> String {
    if let Some((_, rest)) = dsn.split_once("://") {
        return rest
            .split_once('/')
            .map(|(_, db)| db.split('?').next().unwrap_or_default().to_string())
            .unwrap_or_default();
    }
    dsn.split_whitespace()
        .find_map(|kv| kv.strip_prefix("dbname="))
        .unwrap_or_default()
        .to_string()
}
