//! The `wraith` command line: flags (in `cli.rs`) and dispatch to the library.

mod cli;

use std::process::ExitCode;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering::Relaxed};
use std::time::Duration;

use clap::Parser;
use cli::{
    Baseline, BenchArgs, BenchKind, Cli, Command, CtlArgs, DemoArgs, LogFormat, MigrateArgs,
    RevertArgs, TableArgs, VerifyArgs,
};
use wraith::Engine;
use wraith::bench::report::{BenchConfig, BenchScenario, DependentsConfig};
use wraith::dsn::Dsn;
use wraith::engine::RunContext;
use wraith::engine::faults::Faults;
use wraith::engine::migration::Outcome;
use wraith::engine::progress::Reporter;
use wraith::error::{bad_input, exit_code};
use wraith::plan::{MigrationSpec, RunOptions};

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
            Command::Demo(args) => until_interrupted(demo(args)).await,
            Command::Bench(args) => until_interrupted(bench(args)).await,
            Command::Revert(args) => revert(*args).await,
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

async fn migrate(args: MigrateArgs) -> anyhow::Result<()> {
    let (spec, opts, hooks) = args.spec()?;
    let follow = (opts.revertible && opts.execute).then_some(Follow {
        window: args.revert_window,
        drop_old: args.drop_old,
        reconnect_for: args.operate.reconnect_for,
    });
    run_command(
        spec,
        opts,
        hooks,
        args.json,
        args.operate.reconnect_for,
        Job::Migrate { follow },
    )
    .await
}

/// `wraith revert`: the way back as a migration of its own, or `--forget`.
async fn revert(args: RevertArgs) -> anyhow::Result<()> {
    let (spec, opts, hooks) = args.spec()?;
    if args.forget {
        let removed = Engine::of(&spec.dsn).forget(&spec, args.drop_old).await?;
        if removed.is_empty() {
            println!("No way back is kept for {}.", spec.table);
        } else {
            for r in removed {
                println!("removed {r}");
            }
            if !args.drop_old {
                println!("The old table stays as it was; it no longer follows the table.");
            }
        }
        return Ok(());
    }
    run_command(
        spec,
        opts,
        hooks,
        args.json,
        args.operate.reconnect_for,
        Job::Revert,
    )
    .await
}

/// What [`run_command`] runs.
#[derive(Clone, Copy)]
enum Job {
    /// A migration; with `follow`, the way back it kept is followed after its swap.
    Migrate {
        follow: Option<Follow>,
    },
    Revert,
}

/// How long the old table follows the table after a `--revertible` swap, and
/// whether it goes with the way back when the window ends.
#[derive(Clone, Copy)]
struct Follow {
    window: Duration,
    drop_old: bool,
    /// How long a follower that lost its server keeps reconnecting.
    reconnect_for: Duration,
}

/// After a `--revertible` swap: the old table follows the table for `window`
/// (the revert run, its cutover held); `ctl revert` swaps it back, the end of the
/// window removes the way back, Ctrl-C leaves it for `wraith revert`.
async fn follow_way_back(
    spec: MigrationSpec,
    forward: RunOptions,
    follow: Follow,
    json: bool,
    abort: Arc<AtomicBool>,
) -> anyhow::Result<()> {
    let window = follow.window;
    let opts = RunOptions {
        revertible: false,
        resume: true,
        threads: 1,
        postpone_cutover: true,
        postpone_flag_file: None,
        ..forward
    };
    let cx = RunContext::with_abort(&opts, abort.clone());
    let (control, ended) = (cx.control.clone(), Arc::new(AtomicBool::new(false)));
    let timer = {
        let ended = ended.clone();
        tokio::spawn(async move {
            tokio::time::sleep(window).await;
            ended.store(true, Relaxed);
            control.abort(Some(format!("the revert window of {window:?} ended")));
        })
    };
    let socket = opts
        .control_socket
        .as_ref()
        .map(|s| s.display().to_string())
        .unwrap_or_default();
    tracing::info!(
        "the old table follows the table for {window:?}: `wraith ctl {socket} revert` swaps it \
         back; when the window ends the way back is removed"
    );
    // A lost server: the revert continues from its checkpoint once it is back, with
    // the same knobs (a `ctl revert` already sent still holds).
    let result = reconnecting(follow.reconnect_for, true, &abort, || {
        let cx = RunContext {
            stats: Arc::new(Default::default()),
            ..cx.clone()
        };
        run_migration(spec.clone(), opts.clone(), cx, json, true)
    })
    .await;
    timer.abort();
    match result {
        Err(_) if ended.load(Relaxed) => {
            Engine::of(&spec.dsn).forget(&spec, follow.drop_old).await?;
            println!(
                "The revert window ended: the way back is removed ({}); the table keeps its new \
                 shape.",
                if follow.drop_old {
                    "and the old table with it"
                } else {
                    "the old table stays as it was at the end of it"
                }
            );
            Ok(())
        }
        Err(e) => Err(e.context(
            "the old table stopped following the table; the way back is kept: `wraith revert \
             --execute` continues it, `wraith revert --forget` removes it",
        )),
        Ok(()) => Ok(()),
    }
}

/// Runs a migration (or a revert) with Ctrl-C handling, the control socket and,
/// for a resumable run that lost its server, reconnection.
async fn run_command(
    spec: MigrationSpec,
    mut opts: RunOptions,
    mut hooks: wraith::engine::hooks::Hooks,
    json: bool,
    reconnect_for: Duration,
    job: Job,
) -> anyhow::Result<()> {
    let revert = matches!(job, Job::Revert);
    let engine = Engine::of(&spec.dsn);
    let faults = Faults::from_env()?;
    let database = spec.dsn.database().unwrap_or_default().to_string();
    let socket = opts
        .control_socket
        .clone()
        .unwrap_or_else(|| wraith::ctl::default_socket(&spec.dsn, &database, &spec.table));
    opts.control_socket = Some(socket.clone());
    hooks.fact("DATABASE", database);
    hooks.fact("TABLE", spec.table.clone());
    hooks.fact("ENGINE", engine.name());
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
    let result = reconnecting(reconnect_for, opts.resume, &abort, || {
        let cx = RunContext {
            hooks: hooks.clone(),
            faults: faults.clone(),
            ..RunContext::with_abort(&opts, abort.clone())
        };
        run_migration(spec.clone(), opts.clone(), cx, json, revert)
    })
    .await;
    match (result, job) {
        (
            Ok(()),
            Job::Migrate {
                follow: Some(follow),
            },
        ) => follow_way_back(spec, opts, follow, json, abort).await,
        (other, _) => other,
    }
}

/// Runs `attempt` again while it fails for a lost connection (when `resumable`),
/// with backoff, for at most `reconnect_for`, unless aborted: each attempt
/// continues from the checkpoint the last one saved.
async fn reconnecting<F, Fut>(
    reconnect_for: Duration,
    resumable: bool,
    abort: &AtomicBool,
    mut attempt: F,
) -> anyhow::Result<()>
where
    F: FnMut() -> Fut,
    Fut: std::future::Future<Output = anyhow::Result<()>>,
{
    let deadline = std::time::Instant::now() + reconnect_for;
    let mut wait = Duration::from_millis(500);
    loop {
        match attempt().await {
            Err(e)
                if resumable
                    && wraith::error::is_connection_lost(&e)
                    && std::time::Instant::now() + wait < deadline
                    && !abort.load(Relaxed) =>
            {
                tracing::warn!("{e:#}");
                tracing::warn!("reconnecting in {wait:?} to continue");
                tokio::time::sleep(wait).await;
                wait = (wait * 2).min(Duration::from_secs(10));
            }
            other => return other,
        }
    }
}

/// Runs the phases (with the progress display around a real run) and prints the outcome.
async fn run_migration(
    spec: MigrationSpec,
    opts: RunOptions,
    cx: RunContext,
    json: bool,
    revert: bool,
) -> anyhow::Result<()> {
    let reporter = opts.execute.then(|| Reporter::start(cx.stats.clone()));
    let outcome = if revert {
        Engine::revert(spec, opts, cx).await
    } else {
        Engine::migrate(spec, opts, cx).await
    };
    if let Some(r) = reporter {
        r.finish().await;
    }
    match outcome? {
        Outcome::Planned(plan) if revert => {
            println!("Revert of {}:\n{plan}", plan.target);
            println!("\nDry run: nothing was changed. Add --execute to swap the old table back.");
        }
        Outcome::Planned(plan) => {
            println!("{plan}");
            println!("\nDry run: nothing was changed. Add --execute to run this migration.");
        }
        Outcome::AlreadyDone(plan) if revert => println!(
            "{}: already reverted {}.",
            plan.target,
            plan.completed.unwrap_or_default()
        ),
        Outcome::AlreadyDone(plan) if json => println!(
            "{}",
            serde_json::json!({ "already_applied": plan.completed, "swapped": false })
        ),
        Outcome::AlreadyDone(plan) => println!("{plan}"),
        Outcome::AppliedInstantly(plan) if json => println!(
            "{}",
            serde_json::json!({ "instant": true, "swapped": false, "table": plan.target })
        ),
        Outcome::AppliedInstantly(plan) => println!(
            "Applied directly as a metadata-only change: {} has its new shape; nothing was copied.",
            plan.target
        ),
        Outcome::Migrated(plan, summary) if json => {
            let mut json = summary.to_json();
            json["findings"] = serde_json::json!(plan.findings);
            println!("{json}");
        }
        Outcome::Migrated(_, summary) if revert => {
            println!(
                "Revert done: the table has its old shape again, with every write made since the \
                 swap.\n{summary}"
            );
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
    let mut spec = MigrationSpec::new(args.server.dsn()?, "");
    spec.set_table(&args.table)?;
    let engine = Engine::of(&spec.dsn);
    let removed = engine.cleanup(&spec).await?;
    if removed.is_empty() {
        println!(
            "Nothing to clean up for {}.{}.",
            engine.schema_of(&spec)?,
            spec.table
        );
    } else {
        for r in removed {
            println!("removed {r}");
        }
    }
    Ok(())
}

async fn verify(args: VerifyArgs) -> anyhow::Result<()> {
    let dsn = args.server.dsn()?;
    let engine = Engine::of(&dsn);
    let transforms = cli::parse_transforms(&args.transforms)?;
    let split = |name: &str| -> anyhow::Result<(String, String)> {
        let (schema, table) = wraith::plan::split_table_name(name, engine.quote())?;
        Ok((
            schema.map_or_else(|| engine.default_schema(&dsn), Ok)?,
            table,
        ))
    };
    let (schema, source, target) = match (&args.table, &args.source, &args.target) {
        (Some(t), _, _) => {
            let (schema, table) = split(t)?;
            let shadow = engine.shadow_name(&schema, &table)?;
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
    let report = engine
        .verify_tables(&dsn, &target, args.mode, args.workers)
        .await?;
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

async fn demo(args: DemoArgs) -> anyhow::Result<()> {
    wraith::demo::run(wraith::demo::DemoConfig {
        server: args.server,
        rows: args.rows,
        tps: args.tps,
        dsn: args.dsn.as_deref().map(Dsn::parse).transpose()?,
        keep: args.keep,
        dirty: args.dirty,
    })
    .await
}

async fn bench(args: BenchArgs) -> anyhow::Result<()> {
    if args.threads.contains(&0) {
        return Err(bad_input(
            "--threads 0: each count needs at least 1 copy thread (e.g. --threads 1,2,4)",
        ));
    }
    let dsn = args.dsn.as_deref().map(Dsn::parse).transpose()?;
    let scenario = match args.scenario {
        BenchKind::Orders => BenchScenario::Orders,
        BenchKind::Table => BenchScenario::Table {
            row_width: args.row_width,
        },
        BenchKind::Dependents => {
            return wraith::bench::report::run_dependents(DependentsConfig {
                server: args.server,
                dsn,
                rows: args.rows.unwrap_or(20_000),
                counts: args.dependents,
                runs: args.runs,
                json: args.json,
                wraith: None,
            })
            .await;
        }
    };
    wraith::bench::report::run(BenchConfig {
        server: args.server,
        scenario,
        rows: args.rows.unwrap_or(1_000_000),
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
        threads: args.threads,
        dsn,
        wraith: None,
        json: args.json,
    })
    .await
}
