//! The command line's flags, and how they become a migration spec and run
//! options. Part of the `wraith` binary: the library knows nothing of flags.

use std::path::PathBuf;
use std::time::Duration;

use clap::{Args, Parser, Subcommand, ValueEnum};
use wraith::Engine;
use wraith::dsn::{Dsn, PasswordFrom, Sources};
use wraith::engine::hooks::{HookEvent, Hooks};
use wraith::error::bad_input;
use wraith::plan::instant::InstantMode;
use wraith::plan::{
    MigrationSpec, RunOptions, SpecFile, ThrottleOptions, Transform, parse_duration,
};

#[derive(Parser)]
#[command(
    name = "wraith",
    version,
    about = "Online, verified table rewrites for PostgreSQL and MySQL/MariaDB: shadow table, \
             throttled copy, change-stream apply, atomic cutover.",
    after_help = "Exit codes: 0 done, 1 failed (nothing changed for the application), 2 bad input."
)]
pub struct Cli {
    #[command(subcommand)]
    pub command: Command,
    /// Log format on stderr.
    #[arg(long, global = true, value_enum, default_value_t = LogFormat::Text)]
    pub log_format: LogFormat,
    /// More log detail (-v debug, -vv trace).
    #[arg(short, long, global = true, action = clap::ArgAction::Count)]
    pub verbose: u8,
}

#[derive(Clone, Copy, ValueEnum)]
pub enum LogFormat {
    Text,
    Json,
}

#[derive(Subcommand)]
pub enum Command {
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
    /// Swap a table migrated with --revertible back to its old shape, with every
    /// write made since the swap (dry run unless --execute); --forget removes the way back.
    Revert(Box<RevertArgs>),
}

/// `--dsn` and how wraith connects: credentials and TLS.
#[derive(Args, Clone)]
pub struct ServerArg {
    /// Connection string: postgres://user@host:5432/db, host=... dbname=..., or
    /// mysql://user@host:3306/db. Keep the password out of it (`ps` shows
    /// arguments): PGPASSWORD, ~/.pgpass, MYSQL_PWD, ~/.my.cnf or --ask-pass.
    #[arg(long, env = "WRAITH_DSN", help_heading = "Connection")]
    dsn: String,
    /// Prompt for the password, without echo.
    #[arg(long, help_heading = "Connection")]
    ask_pass: bool,
    /// MySQL/MariaDB: the option file whose [client] section is read instead of ~/.my.cnf.
    #[arg(long, value_name = "FILE", help_heading = "Connection")]
    defaults_file: Option<PathBuf>,
    /// PostgreSQL TLS: disable, prefer (default), require, verify-ca, verify-full.
    #[arg(long, help_heading = "Connection")]
    sslmode: Option<String>,
    /// PostgreSQL: the CA certificate(s) that sign the server's (PEM).
    #[arg(long, value_name = "FILE", help_heading = "Connection")]
    sslrootcert: Option<String>,
    /// PostgreSQL: a client certificate (PEM), with --sslkey.
    #[arg(long, value_name = "FILE", help_heading = "Connection")]
    sslcert: Option<String>,
    #[arg(long, value_name = "FILE", help_heading = "Connection")]
    sslkey: Option<String>,
    /// MySQL/MariaDB TLS: DISABLED, PREFERRED (default), REQUIRED, VERIFY_CA, VERIFY_IDENTITY.
    #[arg(long, help_heading = "Connection")]
    ssl_mode: Option<String>,
    /// MySQL/MariaDB: the CA certificate(s) that sign the server's (PEM).
    #[arg(long, value_name = "FILE", help_heading = "Connection")]
    ssl_ca: Option<String>,
    /// MySQL/MariaDB: a client certificate (PEM), with --ssl-key.
    #[arg(long, value_name = "FILE", help_heading = "Connection")]
    ssl_cert: Option<String>,
    #[arg(long, value_name = "FILE", help_heading = "Connection")]
    ssl_key: Option<String>,
}

impl ServerArg {
    /// What fills the DSN's gaps: the environment, files, the TLS flags.
    pub fn sources(&self) -> Sources {
        let flags = [
            ("sslmode", &self.sslmode),
            ("sslrootcert", &self.sslrootcert),
            ("sslcert", &self.sslcert),
            ("sslkey", &self.sslkey),
            ("ssl-mode", &self.ssl_mode),
            ("ssl-ca", &self.ssl_ca),
            ("ssl-cert", &self.ssl_cert),
            ("ssl-key", &self.ssl_key),
        ];
        Sources {
            defaults_file: self.defaults_file.clone(),
            tls_flags: flags
                .into_iter()
                .filter_map(|(k, v)| v.as_ref().map(|v| (k.to_string(), v.clone())))
                .collect(),
            ..Sources::from_process()
        }
    }

    /// The connection string, parsed (a bad one is refused without echoing it),
    /// with the password typed at the prompt under --ask-pass.
    pub fn dsn(&self) -> anyhow::Result<Dsn> {
        let mut sources = self.sources();
        if self.ask_pass {
            let probe = Dsn::parse_with(&self.dsn, &sources)?;
            let prompt = format!(
                "Password for {}@{}: ",
                probe.user().unwrap_or_default(),
                probe.socket().unwrap_or(probe.host())
            );
            let typed = rpassword::prompt_password(prompt).map_err(|e| {
                bad_input(format!(
                    "--ask-pass: cannot read a password from the terminal ({e}); use PGPASSWORD, \
                     ~/.pgpass, MYSQL_PWD or an option file instead"
                ))
            })?;
            sources.password = Some(typed);
        }
        let dsn = Dsn::parse_with(&self.dsn, &sources)?;
        let from_argv = std::env::var("WRAITH_DSN").ok().as_deref() != Some(self.dsn.as_str());
        if from_argv && dsn.password_from() == &PasswordFrom::Text {
            wraith::dsn::sources::warn_once(if dsn.is_mysql() {
                "the password is in --dsn, which `ps` shows to every user of this machine: use \
                 MYSQL_PWD, the [client] section of ~/.my.cnf (or --defaults-file), WRAITH_DSN, \
                 or --ask-pass"
            } else {
                "the password is in --dsn, which `ps` shows to every user of this machine: use \
                 PGPASSWORD, ~/.pgpass (or PGPASSFILE), WRAITH_DSN, or --ask-pass"
            });
        }
        Ok(dsn)
    }
}

#[derive(Args)]
pub struct TableArgs {
    #[command(flatten)]
    pub server: ServerArg,
    /// Table to migrate, optionally qualified (schema.table; default: public, or the DSN's
    /// database on MySQL). Quote parts that hold dots or quotes: '"Sales Dept"."q""t"'
    /// (backticks on MySQL).
    #[arg(long)]
    pub table: String,
}

#[derive(Args)]
pub struct MigrateArgs {
    #[command(flatten)]
    pub server: ServerArg,
    /// Table to migrate, optionally qualified (schema.table; default: public, or the DSN's
    /// database on MySQL). Quote parts that hold dots or quotes: '"Sales Dept"."q""t"'
    /// (backticks on MySQL).
    #[arg(long, required_unless_present = "spec")]
    pub table: Option<String>,
    /// ALTER TABLE actions applied verbatim to the shadow table; several statements may be separated by ';'.
    #[arg(long, required_unless_present = "spec")]
    pub alter: Option<String>,
    /// A migration spec file (TOML: table, alter, transforms, prepare, shadow) instead of --table/--alter.
    #[arg(long, conflicts_with_all = ["table", "alter", "transforms"])]
    pub spec: Option<PathBuf>,
    /// Fill a column of the new table with an expression over the old row: COLUMN=EXPR (repeatable).
    #[arg(long = "transform", value_name = "COLUMN=EXPR")]
    pub transforms: Vec<String>,
    /// Really run the migration (without it: preflight and plan only, nothing changed).
    #[arg(long)]
    pub execute: bool,
    /// Target duration of one copy chunk (e.g. 500ms, 1s). Default: 500ms on
    /// PostgreSQL; 100ms on MySQL/MariaDB, where a chunk's shared row locks make
    /// writes to its rows wait for it.
    #[arg(long, value_parser = parse_duration)]
    pub chunk_time: Option<Duration>,
    /// Hard cap on rows copied per second (all copy threads together).
    #[arg(long)]
    pub max_rows_per_sec: Option<u64>,
    /// Copy workers, each on its own session (change it live with `ctl threads=N`).
    /// Default: half the cores of this machine when the server runs on it, else 4;
    /// at most 4 unless given.
    #[arg(long)]
    pub threads: Option<usize>,
    #[command(flatten)]
    pub cutover: CutoverArgs,
    /// Drop the original table after a successful swap (default: keep it as _<table>_old);
    /// with --revertible, when the way back is removed at the end of the window.
    #[arg(long)]
    pub drop_old: bool,
    /// Apply the ALTER directly, with no copy, when the server can do it as a
    /// metadata-only change (the dry run says whether it can), through the cutover's
    /// bounded, retried lock request; refused when it cannot.
    #[arg(long, conflicts_with = "prefer_instant")]
    pub instant: bool,
    /// Like --instant, but rewrite the table online when the change is not metadata-only.
    #[arg(long)]
    pub prefer_instant: bool,
    /// Keep a way back after the swap: the dry run shows how each column of the old
    /// table is filled from a row of the new one, and refuses a change whose way back
    /// wraith cannot derive (name it with --reverse-transform).
    #[arg(long, conflicts_with = "instant")]
    pub revertible: bool,
    /// Fill a column of the old table from a row of the new one, for --revertible:
    /// COLUMN=EXPR over the new table's columns (repeatable).
    #[arg(
        long = "reverse-transform",
        value_name = "COLUMN=EXPR",
        requires = "revertible"
    )]
    pub reverse_transforms: Vec<String>,
    /// How long wraith keeps the old table following the new one after the swap
    /// (--revertible): `wraith ctl <socket> revert` swaps it back within it; when it
    /// ends the way back is removed (its slot stops keeping WAL) and wraith exits.
    #[arg(long, default_value = "1h", value_parser = parse_duration, requires = "revertible")]
    pub revert_window: Duration,
    /// Print the final summary as JSON on stdout.
    #[arg(long)]
    pub json: bool,
    #[command(flatten)]
    pub operate: OperateArgs,
}

/// The cutover's bounds and the verification before it (migrate and revert).
#[derive(Args, Clone)]
pub struct CutoverArgs {
    /// Longest wait for the cutover lock per attempt; the application waits at most
    /// this long. Default: 500ms on PostgreSQL, 2s on MySQL/MariaDB.
    #[arg(long, value_parser = parse_duration)]
    pub cutover_lock_timeout: Option<Duration>,
    /// Cutover attempts before giving up (nothing is changed then).
    #[arg(long, default_value_t = 30)]
    pub cutover_attempts: u32,
    /// Longest the cutover may hold the write lock while applying the last changes.
    #[arg(long, default_value = "2s", value_parser = parse_duration)]
    pub cutover_drain_timeout: Duration,
    /// Verification before the cutover: off, count (rows per range) or checksum (every row).
    #[arg(long, value_enum, default_value_t = wraith::verify::Mode::Checksum)]
    pub verify: wraith::verify::Mode,
    /// Parallel verification sessions.
    #[arg(long, default_value_t = 2)]
    pub verify_workers: usize,
}

/// Throttling, live control, postponed cutover, blockers and hooks.
#[derive(Args, Clone)]
pub struct OperateArgs {
    /// Pause the copy while this file exists.
    #[arg(long, help_heading = "Throttling")]
    pub throttle_flag_file: Option<PathBuf>,
    /// A query returning one number: above 0 pauses the copy (e.g. a check of your own).
    #[arg(long, help_heading = "Throttling")]
    pub throttle_query: Option<String>,
    /// A replica whose lag counts against --max-lag (repeatable). PostgreSQL also
    /// watches the standbys connected to the primary; MySQL reads wraith's heartbeat row there.
    #[arg(long = "replica-dsn", help_heading = "Throttling")]
    pub replica_dsns: Vec<String>,
    /// Replica lag limit (e.g. 1500ms): the copy slows above half of it and pauses at it.
    #[arg(long, value_parser = parse_duration, help_heading = "Throttling")]
    pub max_lag: Option<Duration>,
    /// Load limit: active sessions (PostgreSQL) or Threads_running (MySQL); the copy
    /// slows above half of it and pauses at it.
    #[arg(long, help_heading = "Throttling")]
    pub max_load: Option<u64>,
    /// Abort cleanly when the load reaches this for --critical-load-hits checks in a row.
    #[arg(long, help_heading = "Throttling")]
    pub critical_load: Option<u64>,
    /// Consecutive checks (every 250ms) at --critical-load before aborting.
    #[arg(long, default_value_t = 3, help_heading = "Throttling")]
    pub critical_load_hits: u32,
    /// PostgreSQL: WAL retained by wraith's slot, in bytes, above which the copy
    /// pauses; at twice this the run aborts cleanly before the disk is at risk.
    #[arg(long, help_heading = "Throttling")]
    pub max_slot_lag: Option<u64>,
    /// The control socket for `wraith ctl` (default: one per database and table in the temp dir).
    #[arg(long, help_heading = "Control")]
    pub control_socket: Option<PathBuf>,
    /// Copy, verify, then keep applying changes until `wraith ctl <socket> cutover`.
    #[arg(long, help_heading = "Control")]
    pub postpone_cutover: bool,
    /// Keep applying changes while this file exists; cut over once it is removed.
    #[arg(long, help_heading = "Control")]
    pub postpone_cutover_flag_file: Option<PathBuf>,
    /// End sessions whose open transactions hold the table and would make the
    /// cutover's lock queue (default: wait for a quiet moment instead).
    #[arg(long, help_heading = "Control")]
    pub kill_blockers: bool,
    /// Make the run resumable (checkpoints, and on PostgreSQL a persistent slot, with
    /// --max-slot-lag 4 GiB unless set), and continue an interrupted resumable run
    /// of the same migration instead of starting over.
    #[arg(long, help_heading = "Resume")]
    pub resume: bool,
    /// How long a --resume run that lost its server keeps reconnecting to resume
    /// (0: stop at once and leave the resume to you).
    #[arg(long, default_value = "60s", value_parser = parse_duration, help_heading = "Resume")]
    pub reconnect_for: Duration,
    /// Command run (sh -c) when the migration starts; WRAITH_* variables describe it.
    /// Failing stops the run.
    #[arg(long, value_name = "CMD", help_heading = "Hooks")]
    pub hook_start: Option<String>,
    /// Command run when the copy is done (failing stops the run).
    #[arg(long, value_name = "CMD", help_heading = "Hooks")]
    pub hook_copy_done: Option<String>,
    /// Command run when verification passed (failing stops the run).
    #[arg(long, value_name = "CMD", help_heading = "Hooks")]
    pub hook_verified: Option<String>,
    /// Command run right before the cutover (failing stops the run, nothing changed).
    #[arg(long, value_name = "CMD", help_heading = "Hooks")]
    pub hook_before_cutover: Option<String>,
    /// Command run after a successful swap.
    #[arg(long, value_name = "CMD", help_heading = "Hooks")]
    pub hook_success: Option<String>,
    /// Command run when the run fails or is aborted (WRAITH_ERROR holds why).
    #[arg(long, value_name = "CMD", help_heading = "Hooks")]
    pub hook_failure: Option<String>,
}

#[derive(Args)]
pub struct RevertArgs {
    #[command(flatten)]
    pub server: ServerArg,
    /// The table a `migrate --revertible` swapped, optionally qualified (schema.table).
    #[arg(long)]
    pub table: String,
    /// Really revert (without it: the plan only, nothing changed).
    #[arg(long)]
    pub execute: bool,
    /// Remove the way back instead (its replication slot stops keeping WAL); the
    /// old table stays as it is unless --drop-old.
    #[arg(long, conflicts_with = "execute")]
    pub forget: bool,
    /// With --forget: drop the old table too.
    #[arg(long, requires = "forget")]
    pub drop_old: bool,
    #[command(flatten)]
    pub cutover: CutoverArgs,
    /// Print the final summary as JSON on stdout.
    #[arg(long)]
    pub json: bool,
    #[command(flatten)]
    pub operate: OperateArgs,
}

impl RevertArgs {
    /// The revert as a migration of the table: its spec (the table alone) and
    /// options; always resumable (the way back's slot is persistent).
    pub fn spec(&self) -> anyhow::Result<(MigrationSpec, RunOptions, Hooks)> {
        let mut operate = self.operate.clone();
        operate.resume = true;
        let migrate = MigrateArgs {
            server: self.server.clone(),
            table: Some(self.table.clone()),
            alter: Some(String::new()),
            spec: None,
            transforms: Vec::new(),
            execute: self.execute,
            chunk_time: None,
            max_rows_per_sec: None,
            threads: Some(1),
            cutover: self.cutover.clone(),
            drop_old: false,
            instant: false,
            prefer_instant: false,
            revertible: false,
            reverse_transforms: Vec::new(),
            revert_window: Duration::ZERO,
            json: self.json,
            operate,
        };
        migrate.spec()
    }
}

#[derive(Args)]
pub struct CtlArgs {
    /// The migration's control socket (printed when it starts).
    pub socket: PathBuf,
    /// status | throttle | no-throttle | chunk-time=MS | threads=N | max-lag=MS | max-load=N | cutover | abort
    pub command: String,
}

#[derive(Args)]
pub struct DemoArgs {
    /// Orders to generate (customers: one per hundred orders).
    #[arg(long, default_value_t = 1_000_000)]
    pub rows: i64,
    /// Run against this database instead of a scratch server.
    #[arg(long)]
    pub dsn: Option<String>,
    /// Leave the scratch server running at the end and print how to connect.
    #[arg(long)]
    pub keep: bool,
    /// Write transactions per second during the migration.
    #[arg(long, default_value_t = 500)]
    pub tps: u64,
    /// Load the data with the dirt of a real system (orphan refs, stray-case statuses,
    /// non-object JSON, duplicate emails, negative balances) and show what the spec does.
    #[arg(long)]
    pub dirty: bool,
    /// The scratch server: postgres (Debian's), pg16, pg17, pg18, mariadb, or mysql
    /// (MySQL 9.7); the MySQL-protocol ones run the orders normalization in MySQL
    /// types (scenarios/orders/migration.mysql.toml). `scripts/setup.sh` installs them.
    #[arg(long = "engine", visible_alias = "server", value_parser = parse_server, default_value = "postgres")]
    pub server: String,
}

#[derive(Args)]
pub struct VerifyArgs {
    #[command(flatten)]
    pub server: ServerArg,
    /// A table being migrated: compares it with its shadow (_<table>_new on
    /// PostgreSQL, <table>_wraith_new on MySQL/MariaDB).
    #[arg(long, conflicts_with_all = ["source", "target"])]
    pub table: Option<String>,
    /// Source table (optionally schema-qualified).
    #[arg(long, requires = "target")]
    pub source: Option<String>,
    /// Target table, same schema as the source.
    #[arg(long, requires = "source")]
    pub target: Option<String>,
    /// Compare target column COLUMN with EXPR over the source row (repeatable).
    #[arg(long = "transform", value_name = "COLUMN=EXPR")]
    pub transforms: Vec<String>,
    /// count: row counts per range; checksum: every row's values too.
    #[arg(long, value_enum, default_value_t = wraith::verify::Mode::Checksum)]
    pub mode: wraith::verify::Mode,
    /// Parallel sessions.
    #[arg(long, default_value_t = 2)]
    pub workers: usize,
    /// Print the report as JSON.
    #[arg(long)]
    pub json: bool,
}

#[derive(Args)]
pub struct BenchArgs {
    /// What to migrate: the orders normalization, a generic table of --rows rows
    /// of --row-width bytes, or (MySQL/MariaDB) a table with --dependents other
    /// tables' foreign keys and triggers, to measure what moving them adds to the
    /// cutover's hold.
    #[arg(long, value_enum, default_value_t = BenchKind::Orders)]
    pub scenario: BenchKind,
    /// Rows (orders) in the benchmark table [default: 1000000; 20000 for
    /// --scenario dependents].
    #[arg(long)]
    pub rows: Option<i64>,
    /// --scenario dependents: the numbers of referencing tables (each with as many
    /// triggers) to measure, e.g. 0,1,5.
    #[arg(long, value_delimiter = ',', default_value = "0,1,5")]
    pub dependents: Vec<usize>,
    /// Also time wraith at idle with each of these copy thread counts (e.g. 1,2,4),
    /// each on its own copy of the data: the scaling table.
    #[arg(long, value_delimiter = ',')]
    pub threads: Vec<usize>,
    /// --scenario dependents: migrations per number (the median is reported).
    #[arg(long, default_value_t = 3)]
    pub runs: usize,
    /// Row width in bytes for --scenario table.
    #[arg(long, default_value_t = 200)]
    pub row_width: usize,
    /// Write transactions per second during the loaded run.
    #[arg(long, default_value_t = 1000)]
    pub tps: u64,
    /// Workload sessions.
    #[arg(long, default_value_t = 8)]
    pub clients: usize,
    /// Seconds of load measured before the migration starts, and again after it.
    #[arg(long = "window-secs", alias = "baseline-secs", default_value_t = 10)]
    pub window_secs: u64,
    /// offline: also time the change as a plain ALTER TABLE on a copy of the data and
    /// print the ratios; none: skip it.
    #[arg(long, value_enum, default_value_t = Baseline::Offline)]
    pub baseline: Baseline,
    /// Cap the copy rate of the loaded run (passed to `wraith migrate --max-rows-per-sec`).
    #[arg(long)]
    pub max_rows_per_sec: Option<u64>,
    /// Throttle the loaded run on load (passed to `wraith migrate --max-load`), to
    /// measure what throttling does to the workload's latency.
    #[arg(long)]
    pub max_load: Option<u64>,
    /// Run on this server instead of a scratch one; wraith creates (and drops)
    /// databases wraith_bench_* there, so the role needs CREATEDB.
    #[arg(long, conflicts_with = "sandbox")]
    pub dsn: Option<String>,
    /// Run on a scratch server started for the benchmark (the default; see --engine).
    #[arg(long)]
    pub sandbox: bool,
    /// The scratch server: postgres (Debian's), pg16, pg17, pg18, mariadb, or mysql
    /// (MySQL 9.7); on the MySQL-protocol ones the baselines are ALGORITHM=COPY and
    /// pt-online-schema-change. With --dsn, the DSN's scheme decides.
    #[arg(long = "engine", visible_alias = "server", value_parser = parse_server, default_value = "postgres")]
    pub server: String,
    /// Print the report as JSON.
    #[arg(long)]
    pub json: bool,
}

#[derive(Clone, Copy, clap::ValueEnum)]
pub enum BenchKind {
    Orders,
    Table,
    Dependents,
}

#[derive(Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
pub enum Baseline {
    Offline,
    None,
}

/// The copy threads when `--threads` is not given: half the cores when the
/// server runs on this machine (they share them), else 4.
fn default_threads(dsn: &Dsn) -> usize {
    let host = dsn.host();
    let local = dsn.socket().is_some()
        || host.starts_with('/')
        || matches!(host, "localhost" | "127.0.0.1" | "::1" | "[::1]");
    if !local {
        return MAX_DEFAULT_THREADS;
    }
    let cores = std::thread::available_parallelism().map_or(2, |n| n.get());
    (cores / 2).clamp(1, MAX_DEFAULT_THREADS)
}

/// The most copy threads wraith picks by itself.
const MAX_DEFAULT_THREADS: usize = 4;

/// `--engine` of `demo` and `bench`: the scratch server to start (whether it is
/// installed is checked when it starts).
fn parse_server(s: &str) -> Result<String, String> {
    if wraith::sandbox::Server::is_name(s) {
        Ok(s.to_string())
    } else {
        Err(format!(
            "{s:?} is not a server: postgres, pg16, pg17, pg18, mariadb or mysql"
        ))
    }
}

/// `--max-slot-lag` of a `--resume` run on PostgreSQL when none is given.
const DEFAULT_RESUME_SLOT_LAG: u64 = 4 << 30;

impl MigrateArgs {
    /// The spec, the run options (with the engine's defaults where no flag is
    /// given) and the hooks these flags describe.
    pub fn spec(&self) -> anyhow::Result<(MigrationSpec, RunOptions, Hooks)> {
        let dsn = self.server.dsn()?;
        let engine = Engine::of(&dsn);
        let o = &self.operate;
        if engine == Engine::MySql && o.max_slot_lag.is_some() {
            return Err(bad_input(
                "--max-slot-lag watches a PostgreSQL replication slot; MySQL/MariaDB has none (use --max-lag with --replica-dsn)",
            ));
        }
        let mut hooks = Hooks::default();
        for (event, cmd) in HookEvent::ALL.into_iter().zip([
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
        let defaults = RunOptions::for_engine(engine);
        let options = RunOptions {
            execute: self.execute,
            chunk_time: self.chunk_time.unwrap_or(defaults.chunk_time),
            max_rows_per_sec: self.max_rows_per_sec,
            threads: match self.threads {
                Some(0) => return Err(bad_input("--threads 0: give at least 1 copy thread")),
                Some(n) => n,
                None => default_threads(&dsn),
            },
            cutover_lock_timeout: self
                .cutover
                .cutover_lock_timeout
                .unwrap_or(defaults.cutover_lock_timeout),
            cutover_attempts: self.cutover.cutover_attempts,
            cutover_drain_timeout: self.cutover.cutover_drain_timeout,
            // With a way back, the old table is needed until it is forgotten.
            drop_old: self.drop_old && !self.revertible,
            instant: match (self.instant, self.prefer_instant) {
                (true, _) => InstantMode::Require,
                (_, true) => InstantMode::Prefer,
                _ => InstantMode::Never,
            },
            verify: self.cutover.verify,
            verify_workers: self.cutover.verify_workers.max(1),
            throttle: ThrottleOptions {
                flag_file: o.throttle_flag_file.clone(),
                query: o.throttle_query.clone(),
                replica_dsns: o
                    .replica_dsns
                    .iter()
                    .map(|r| Dsn::parse_with(r, &self.server.sources()))
                    .collect::<anyhow::Result<_>>()
                    .map_err(|e| bad_input(format!("--replica-dsn: {e:#}")))?,
                max_lag: o.max_lag,
                max_load: o.max_load,
                critical_load: o.critical_load,
                critical_load_hits: o.critical_load_hits,
                // A persistent slot keeps WAL while nobody reads it: always guarded.
                max_slot_lag:
                    o.max_slot_lag
                        .or((o.resume && engine == Engine::Postgres)
                            .then_some(DEFAULT_RESUME_SLOT_LAG)),
                ..Default::default()
            },
            control_socket: o.control_socket.clone(),
            postpone_cutover: o.postpone_cutover,
            postpone_flag_file: o.postpone_cutover_flag_file.clone(),
            kill_blockers: o.kill_blockers,
            resume: o.resume,
            revertible: self.revertible,
            ..defaults
        };
        let mut spec = match &self.spec {
            Some(path) => SpecFile::read(path)?.into_spec(&dsn)?,
            None => {
                let mut spec = MigrationSpec::new(dsn, &self.alter.clone().unwrap_or_default());
                spec.transforms = parse_transforms(&self.transforms)?;
                spec.set_table(self.table.as_deref().unwrap_or_default())?;
                spec
            }
        };
        spec.reverse_transforms
            .extend(parse_transforms(&self.reverse_transforms)?);
        Ok((spec, options, hooks))
    }
}

/// `--transform COLUMN=EXPR` flags.
pub fn parse_transforms(flags: &[String]) -> anyhow::Result<Vec<Transform>> {
    flags.iter().map(|t| Transform::parse(t)).collect()
}
