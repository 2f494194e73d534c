//! Operating a running migration, on both engines: the throttle (flag file, load
//! guards, slot WAL guard), the control socket (`status`, `chunk-time`, `abort`,
//! `cutover`), the postponed cutover, blocker handling at the cutover, and hooks.

mod common;

use std::path::Path;
use std::sync::Arc;
use std::sync::atomic::Ordering::Relaxed;
use std::time::{Duration, Instant};

use common::env::Env;
use common::*;
use serde_json::Value;
use wraith::bench::workload::WorkloadConfig;
use wraith::bench::{mysql_workload, workload};
use wraith::engine::Stats;
use wraith::engine::hooks::{HookEvent, Hooks};
use wraith::engine::migration::Outcome;
use wraith::plan::{MigrationSpec, RunOptions, ThrottleOptions};

async fn status(socket: &Path) -> Value {
    let reply = wraith::ctl::send(socket, "status")
        .await
        .expect("ctl status");
    serde_json::from_str(&reply).unwrap_or_else(|e| panic!("status is not JSON ({e}): {reply}"))
}

/// Polls the status until `ok` holds; panics with the last status after `limit`.
async fn wait_status(socket: &Path, limit: Duration, ok: impl Fn(&Value) -> bool) -> Value {
    let t0 = Instant::now();
    loop {
        if socket.exists() {
            let s = status(socket).await;
            if ok(&s) {
                return s;
            }
            if t0.elapsed() > limit {
                panic!("status never reached the expected state: {s}");
            }
        } else if t0.elapsed() > limit {
            panic!("the control socket {} never appeared", socket.display());
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

fn spec_for(
    env: &Env,
    table: &str,
    alter: &str,
    transforms: &[(&str, &str)],
    options: RunOptions,
) -> MigrationSpec {
    spec(&env.dsn(), table, alter, transforms, options)
}

fn widen(env: &Env) -> &'static str {
    match env {
        Env::Pg(_) => "ALTER COLUMN v TYPE bigint",
        Env::My(..) => "MODIFY v bigint NOT NULL",
    }
}

const STATUS_FIELDS: &[&str] = &[
    "phase",
    "elapsed_secs",
    "rows_copied",
    "rows_estimate",
    "rows_per_sec",
    "eta_secs",
    "apply_lag_ms",
    "replica_lag_ms",
    "load",
    "dirty_keys",
    "keys_applied",
    "throttle",
    "chunk_time_ms",
    "chunk_rows",
    "max_lag_ms",
    "max_load",
    "cutover_postponed",
    "swapped",
];

/// A flag file pauses the copy and its removal resumes it; `ctl status` holds every
/// field; `wraith ctl chunk-time` resizes the chunks; `ctl abort` leaves nothing.
async fn flag_file_status_chunk_time_and_abort(mut env: Env) {
    env.simple_table(100_000).await;
    let before = env.t_fingerprint().await;
    let dir = tempfile::tempdir().unwrap();
    let socket = dir.path().join("ctl.sock");
    let flag = dir.path().join("throttle.flag");
    std::fs::write(&flag, "").unwrap();
    let options = RunOptions {
        execute: true,
        max_rows_per_sec: Some(20_000),
        control_socket: Some(socket.clone()),
        throttle: ThrottleOptions {
            flag_file: Some(flag.clone()),
            interval: Duration::from_millis(100),
            ..ThrottleOptions::default()
        },
        ..RunOptions::default()
    };
    let run = env
        .start(spec_for(&env, "t", widen(&env), &[], options))
        .await;

    let s = wait_status(&socket, Duration::from_secs(30), |s| {
        s["phase"] == "copy" && s["throttle"]["throttled"] == true
    })
    .await;
    eprintln!("status while throttled: {s}");
    for f in STATUS_FIELDS {
        assert!(s.get(f).is_some(), "status lacks {f}: {s}");
    }
    assert!(
        s["throttle"]["reason"]
            .as_str()
            .unwrap_or_default()
            .contains("flag file"),
        "{s}"
    );
    // A chunk that was in flight when the pause began has finished by now.
    tokio::time::sleep(Duration::from_millis(500)).await;
    let paused_at = status(&socket).await["rows_copied"].as_u64().unwrap();
    tokio::time::sleep(Duration::from_secs(1)).await;
    let s = status(&socket).await;
    assert_eq!(
        s["rows_copied"].as_u64().unwrap(),
        paused_at,
        "copied while paused: {s}"
    );

    std::fs::remove_file(&flag).unwrap();
    wait_status(&socket, Duration::from_secs(10), |s| {
        s["throttle"]["throttled"] == false && s["rows_copied"].as_u64().unwrap() > paused_at
    })
    .await;

    // Through the CLI, as a DBA would.
    let socket_arg = socket.to_str().unwrap();
    let reply = wraith_ok(&["ctl", socket_arg, "chunk-time=5ms"]);
    assert!(reply.starts_with("ok"), "{reply}");
    let s = wait_status(&socket, Duration::from_secs(10), |s| {
        s["chunk_rows"].as_u64().unwrap() <= 100
    })
    .await;
    assert_eq!(s["chunk_time_ms"], 5, "{s}");
    let bad = wraith(&["ctl", socket_arg, "chunk-time=soon"]);
    assert_eq!(bad.status.code(), Some(2), "a bad value is refused");
    let bad = wraith(&["ctl", socket_arg, "explode"]);
    assert_eq!(bad.status.code(), Some(2), "an unknown command is refused");
    assert!(String::from_utf8_lossy(&bad.stdout).contains("commands:"));

    let reply = wraith_ok(&["ctl", socket_arg, "abort"]);
    assert!(reply.starts_with("ok"), "{reply}");
    let err = run.await.unwrap().expect_err("aborted");
    assert!(
        err.chain().any(|e| e.is::<wraith::error::Aborted>()),
        "{err:#}"
    );
    assert!(
        env.leftovers().await.is_empty(),
        "{:?}",
        env.leftovers().await
    );
    assert_eq!(env.t_fingerprint().await, before, "the table is untouched");
    assert!(!socket.exists(), "the socket is removed when the run ends");
    env.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn pg_flag_file_status_chunk_time_and_abort() {
    flag_file_status_chunk_time_and_abort(Env::pg().await).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn mariadb_flag_file_status_chunk_time_and_abort() {
    flag_file_status_chunk_time_and_abort(Env::my().await).await;
}

/// Hooks that append their event (and the facts they get) to `log`.
fn logging_hooks(log: &Path) -> Hooks {
    let mut hooks = Hooks::default();
    hooks.fact("TABLE", "items");
    for e in HookEvent::ALL {
        hooks.set(
            e,
            format!(
                "echo \"$WRAITH_HOOK $WRAITH_TABLE $WRAITH_PHASE\" >> '{}'",
                log.display()
            ),
        );
    }
    hooks
}

/// The workload keeps writing while the cutover is postponed; `ctl cutover` (or
/// removing the flag file) releases it and the result equals the mirror. Hooks ran
/// in order.
async fn postponed_cutover_completes_exactly(mut env: Env, flag_file: bool) {
    let rows = 5_000;
    let dir = tempfile::tempdir().unwrap();
    let socket = dir.path().join("ctl.sock");
    let log = dir.path().join("hooks.log");
    let flag = dir.path().join("postpone.flag");

    let load = Load::start(&mut env, rows, true).await;
    let (alter, transforms) = items_alter(&env);
    // A start hook that fails stops the run before anything exists.
    let mut refusing = Hooks::default();
    refusing.set(HookEvent::Start, "exit 3".into());
    let options = RunOptions {
        execute: true,
        hooks: refusing,
        ..RunOptions::default()
    };
    let err = env
        .start(spec_for(&env, "items", alter, &transforms, options))
        .await
        .await
        .unwrap()
        .expect_err("the start hook refuses");
    assert_eq!(wraith::error::exit_code(&err), 2, "{err:#}");
    assert!(env.leftovers().await.is_empty());

    if flag_file {
        std::fs::write(&flag, "").unwrap();
    }
    let options = RunOptions {
        execute: true,
        postpone_cutover: !flag_file,
        postpone_flag_file: flag_file.then(|| flag.clone()),
        control_socket: Some(socket.clone()),
        hooks: logging_hooks(&log),
        ..RunOptions::default()
    };
    let run = env
        .start(spec_for(&env, "items", alter, &transforms, options))
        .await;
    wait_status(&socket, Duration::from_secs(60), |s| {
        s["phase"] == "postponed"
    })
    .await;
    let applied = status(&socket).await["keys_applied"].as_u64().unwrap();
    tokio::time::sleep(Duration::from_secs(2)).await;
    let s = status(&socket).await;
    assert_eq!(s["swapped"], false, "{s}");
    assert_eq!(s["cutover_postponed"], true, "{s}");
    assert!(
        s["keys_applied"].as_u64().unwrap() > applied,
        "changes keep being applied while postponed: {s}"
    );
    assert!(!run.is_finished(), "the run waits for the release");

    if flag_file {
        std::fs::remove_file(&flag).unwrap();
    } else {
        let reply = wraith::ctl::send(&socket, "cutover").await.unwrap();
        assert!(reply.starts_with("ok"), "{reply}");
    }
    let outcome = run.await.unwrap().expect("the migration completes");
    let summary = match outcome {
        Outcome::Migrated(_, s) => s,
        other => panic!("no migration: {other:?}"),
    };
    assert!(summary.swapped);
    tokio::time::sleep(Duration::from_millis(500)).await;
    load.stop().await;
    assert_equals_mirror(&mut env).await;

    let events: Vec<String> = std::fs::read_to_string(&log)
        .unwrap()
        .lines()
        .map(|l| l.split(' ').take(2).collect::<Vec<_>>().join(" "))
        .collect();
    assert_eq!(
        events,
        [
            "start items",
            "copy-done items",
            "verified items",
            "before-cutover items",
            "success items"
        ]
    );
    assert!(env.leftovers().await.is_empty());
    env.stop().await;
}

/// The `items` workload (2 clients, 200 tx/s, every transaction mirrored).
enum Load {
    Pg(workload::Workload),
    My(workload::Workload),
}

impl Load {
    /// `create`: makes `items` with `rows` rows first. A second workload on the same
    /// table draws its new keys from a range of its own.
    async fn start(env: &mut Env, rows: i64, create: bool) -> Load {
        let offset = if create { 0 } else { 100_000 };
        match env {
            Env::Pg(db) if create => Load::Pg(items_under_load(db, rows, 2, 200).await),
            Env::Pg(db) => {
                let mut cfg = workload::items_workload(&db.dsn, rows + offset, 2, 200);
                cfg.max_duration = Duration::from_secs(300);
                Load::Pg(workload::Workload::start(cfg).await.unwrap())
            }
            Env::My(_, dsn, c) => {
                if create {
                    mysql_workload::create_items(c, rows).await.unwrap();
                }
                Load::My(
                    mysql_workload::start(WorkloadConfig {
                        dsn: dsn.clone(),
                        table: "items".into(),
                        clients: 2,
                        tps: Some(200),
                        initial_rows: rows + offset,
                        max_duration: Duration::from_secs(300),
                        key_updates: true,
                        scenario: Default::default(),
                    })
                    .await
                    .unwrap(),
                )
            }
        }
    }

    /// Stops the workload; it must not have failed once.
    async fn stop(self) {
        let wl = match self {
            Load::Pg(l) | Load::My(l) => l.stop().await,
        };
        assert_eq!(
            wl.failed.load(Relaxed),
            0,
            "workload errors: {:?}",
            wl.errors()
        );
    }
}

/// The migrated `items` equals its mirror, row for row.
async fn assert_equals_mirror(env: &mut Env) {
    match env {
        Env::Pg(db) => {
            let diff =
                workload::diff_count(&db.client, workload::ITEMS_EXPECTED, workload::ITEMS_ACTUAL)
                    .await
                    .unwrap();
            assert_eq!(diff, 0, "the table equals the mirror");
        }
        Env::My(_, _, c) => {
            let diff = mysql_workload::diff(
                c,
                mysql_workload::ITEMS_EXPECTED,
                mysql_workload::ITEMS_ACTUAL,
            )
            .await
            .unwrap();
            assert!(diff.is_empty(), "rows differ from the mirror: {diff:?}");
        }
    }
}

/// The `items` migration of each engine: ALTER and transforms.
fn items_alter(env: &Env) -> (&'static str, Vec<(&'static str, &'static str)>) {
    match env {
        Env::Pg(_) => (workload::ITEMS_ALTER, vec![]),
        Env::My(..) => (
            mysql_workload::ITEMS_ALTER,
            vec![mysql_workload::ITEMS_TRANSFORM],
        ),
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn pg_postponed_cutover_completes_exactly() {
    postponed_cutover_completes_exactly(Env::pg().await, false).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn mariadb_postponed_cutover_completes_exactly() {
    postponed_cutover_completes_exactly(Env::my().await, true).await;
}

/// A session idle in a transaction that read the table: the cutover never queues
/// its lock behind it (so never stalls the writers) and gives up cleanly; with
/// `--kill-blockers` it ends the session and completes.
async fn blockers_are_waited_out_or_killed(mut env: Env) {
    env.simple_table(2_000).await;
    let before = env.t_fingerprint().await;
    let mut blocker = env.session().await;
    blocker.exec("BEGIN; SELECT count(*) FROM t").await.unwrap();
    tokio::time::sleep(Duration::from_millis(300)).await;

    let stats = Arc::new(Stats::default());
    let options = RunOptions {
        execute: true,
        cutover_lock_timeout: Duration::from_millis(200),
        cutover_attempts: 3,
        ..RunOptions::default()
    };
    let err = env
        .start_with(
            spec_for(&env, "t", widen(&env), &[], options.clone()),
            stats.clone(),
        )
        .await
        .await
        .unwrap()
        .expect_err("the blocker never goes away");
    assert!(
        format!("{err:#}").contains("kept holding the table"),
        "{err:#}"
    );
    assert_eq!(
        stats.cutover_max_stall_ms.load(Relaxed),
        0,
        "wraith never asked for the lock while the blocker held the table"
    );
    assert!(env.leftovers().await.is_empty());
    assert_eq!(env.t_fingerprint().await, before);
    blocker
        .exec("SELECT 1")
        .await
        .expect("the blocker is left alone");

    let options = RunOptions {
        kill_blockers: true,
        ..options
    };
    let outcome = env
        .start(spec_for(&env, "t", widen(&env), &[], options))
        .await
        .await
        .unwrap()
        .expect("the cutover completes once the blocker is ended");
    match outcome {
        Outcome::Migrated(_, s) => assert!(s.cutover_blockers_killed >= 1, "{s:?}"),
        other => panic!("no migration: {other:?}"),
    }
    assert!(
        blocker.exec("SELECT 1").await.is_err(),
        "the blocking session was ended"
    );
    assert_eq!(env.t_fingerprint().await, before, "every row is there");
    assert!(env.leftovers().await.is_empty());
    env.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn pg_blockers_are_waited_out_or_killed() {
    blockers_are_waited_out_or_killed(Env::pg().await).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn mariadb_blockers_are_waited_out_or_killed() {
    blockers_are_waited_out_or_killed(Env::my().await).await;
}

/// Migrates `t` with `guard` (signals read every 100 ms), expects the guard to stop
/// the run with a message containing `needle`, and nothing to be left or changed.
async fn stopped_by_guard(env: &mut Env, guard: ThrottleOptions, needle: &str) {
    let before = env.t_fingerprint().await;
    let options = RunOptions {
        execute: true,
        max_rows_per_sec: Some(10_000),
        throttle: ThrottleOptions {
            interval: Duration::from_millis(100),
            ..guard
        },
        ..RunOptions::default()
    };
    let err = env
        .start(spec_for(env, "t", widen(env), &[], options))
        .await
        .await
        .unwrap()
        .expect_err("the guard stops the run");
    assert!(format!("{err:#}").contains(needle), "{err:#}");
    assert!(
        err.chain().any(|e| e.is::<wraith::error::Stopped>()),
        "{err:#}"
    );
    assert!(
        env.leftovers().await.is_empty(),
        "{:?}",
        env.leftovers().await
    );
    assert_eq!(env.t_fingerprint().await, before, "the table is untouched");
}

/// Load at `--critical-load` for a few checks in a row stops the run cleanly.
async fn critical_load_aborts_cleanly(mut env: Env) {
    env.simple_table(100_000).await;
    let sleep_sql = match env {
        Env::Pg(_) => "SELECT pg_sleep(15)",
        Env::My(..) => "SELECT SLEEP(15)",
    };
    let mut sleepers = Vec::new();
    for _ in 0..4 {
        let mut s = env.session().await;
        sleepers.push(tokio::spawn(async move {
            let _ = s.exec(sleep_sql).await;
        }));
    }
    tokio::time::sleep(Duration::from_millis(500)).await;
    let guard = ThrottleOptions {
        critical_load: Some(4),
        critical_load_hits: 2,
        ..ThrottleOptions::default()
    };
    stopped_by_guard(&mut env, guard, "--critical-load 4").await;
    for s in sleepers {
        s.abort();
    }
    env.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn pg_critical_load_aborts_cleanly() {
    critical_load_aborts_cleanly(Env::pg().await).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn mariadb_critical_load_aborts_cleanly() {
    critical_load_aborts_cleanly(Env::my().await).await;
}

/// PostgreSQL: WAL retained by the slot beyond twice `--max-slot-lag` stops the
/// run, and the slot is gone.
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn pg_slot_wal_guard_aborts_cleanly() {
    let mut env = Env::pg().await;
    env.simple_table(100_000).await;
    let guard = ThrottleOptions {
        max_slot_lag: Some(64 * 1024),
        ..ThrottleOptions::default()
    };
    stopped_by_guard(&mut env, guard, "--max-slot-lag").await;
}

/// The command line: a throttle query that fails and a PostgreSQL-only guard on
/// MySQL are refused before anything exists; hooks get the migration's facts.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn cli_hooks_and_refused_throttle_options() {
    let mut env = Env::pg().await;
    env.simple_table(1_000).await;
    let dsn = env.dsn();
    let dir = tempfile::tempdir().unwrap();
    let base = [
        "migrate",
        "--dsn",
        dsn.as_str(),
        "--table",
        "t",
        "--alter",
        "ALTER COLUMN v TYPE bigint",
        "--execute",
    ];

    let bad = wraith(&[&base[..], &["--throttle-query", "SELECT no_such_column"]].concat());
    let stderr = String::from_utf8_lossy(&bad.stderr);
    assert_eq!(bad.status.code(), Some(2), "{stderr}");
    assert!(stderr.contains("--throttle-query"), "{stderr}");
    assert!(env.leftovers().await.is_empty());

    let bad = wraith(&[
        "migrate",
        "--dsn",
        "mysql://root@127.0.0.1:1/app",
        "--table",
        "t",
        "--alter",
        "MODIFY v bigint",
        "--max-slot-lag",
        "1000000",
    ]);
    assert_eq!(
        bad.status.code(),
        Some(2),
        "{}",
        String::from_utf8_lossy(&bad.stderr)
    );

    let facts = dir.path().join("facts");
    let socket = dir.path().join("s.sock");
    let hook = format!("env | grep '^WRAITH_' | sort > '{}'", facts.display());
    wraith_ok(
        &[
            &base[..],
            &[
                "--hook-success",
                hook.as_str(),
                "--control-socket",
                socket.to_str().unwrap(),
                "--throttle-query",
                "SELECT 0",
            ],
        ]
        .concat(),
    );
    let facts = std::fs::read_to_string(&facts).expect("the success hook ran");
    for want in [
        "WRAITH_HOOK=success".to_string(),
        "WRAITH_TABLE=t".to_string(),
        "WRAITH_DATABASE=app".to_string(),
        "WRAITH_ENGINE=postgres".to_string(),
        format!("WRAITH_CONTROL_SOCKET={}", socket.display()),
        "WRAITH_ROWS_COPIED=1000".to_string(),
    ] {
        assert!(
            facts.lines().any(|l| l == want),
            "{want} missing from:\n{facts}"
        );
    }
    assert!(!socket.exists());
}

/// The end of every resume test: the resumed run took up the `saved` rows and copied
/// fewer than the table's `rows` (it did not start over); the workload ran without an
/// error; the table equals the mirror and nothing of wraith's is left.
async fn assert_resumed_exactly(env: &mut Env, load: Load, summary: &Value, saved: u64, rows: i64) {
    let (copied, resumed) = (
        summary["rows_copied"].as_u64().unwrap(),
        summary["rows_resumed"].as_u64().unwrap(),
    );
    assert!(resumed >= saved, "{summary}");
    assert!(
        (copied as i64) < rows,
        "the copy started over: {copied} rows copied after the resume\n{summary}"
    );
    assert_eq!(summary["swapped"], true);
    tokio::time::sleep(Duration::from_millis(500)).await;
    load.stop().await;
    assert_equals_mirror(env).await;
    assert!(
        env.leftovers().await.is_empty(),
        "{:?}",
        env.leftovers().await
    );
}

/// Waits until a checkpoint of the run on `items` records at least `rows` copied.
/// `log`: the run's log, shown if none does.
async fn wait_checkpoint(env: &mut Env, rows: u64, log: Option<&Path>) -> u64 {
    let t0 = Instant::now();
    loop {
        if let Some(n) = env.checkpoint_rows().await
            && n >= rows
        {
            return n;
        }
        assert!(
            t0.elapsed() < Duration::from_secs(90),
            "no checkpoint with {rows} rows copied appeared; the run's log:\n{}",
            log.and_then(|l| std::fs::read_to_string(l).ok())
                .unwrap_or_default()
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

/// `wraith migrate --execute` of the `items` migration.
fn items_migrate_args(env: &Env) -> Vec<String> {
    let (alter, transforms) = items_alter(env);
    let mut args: Vec<String> = [
        "migrate",
        "--dsn",
        &env.dsn(),
        "--table",
        "items",
        "--alter",
        alter,
        "--execute",
    ]
    .map(String::from)
    .to_vec();
    for (col, expr) in &transforms {
        args.extend(["--transform".to_string(), format!("{col}={expr}")]);
    }
    args
}

/// Starts the binary with the copy capped at 3000 rows/s, its stdout and stderr in `log`.
fn spawn_throttled(args: &[String], log: &tempfile::NamedTempFile) -> std::process::Child {
    std::process::Command::new(env!("CARGO_BIN_EXE_wraith"))
        .args(args)
        .args(["--max-rows-per-sec", "3000"])
        .stdout(log.reopen().unwrap())
        .stderr(log.reopen().unwrap())
        .spawn()
        .expect("start wraith")
}

/// The `--json` summary a run printed (its last JSON line); `context` is shown if none.
fn json_summary(printed: &str, context: &str) -> Value {
    printed
        .lines()
        .rev()
        .find_map(|l| serde_json::from_str(l).ok())
        .unwrap_or_else(|| panic!("no JSON summary\n{context}"))
}

/// Runs the binary off the async threads.
/// Test 1 of the issue: kill -9 mid-copy, then `--resume`. The run finishes where
/// the killed one stopped (it copies fewer rows than the table has) and equals the
/// mirror. Without `--resume`, the interrupted migration is refused with both ways on.
async fn killed_mid_copy_then_resumed(mut env: Env) {
    let rows = 30_000;
    let load = Load::start(&mut env, rows, true).await;
    let args = items_migrate_args(&env);
    let resume: Vec<String> = args
        .iter()
        .cloned()
        .chain(["--resume".to_string()])
        .collect();

    let log = tempfile::NamedTempFile::new().unwrap();
    let mut child = spawn_throttled(&resume, &log);
    let saved = wait_checkpoint(&mut env, 6_000, Some(log.path())).await;
    child.kill().expect("kill -9");
    child.wait().unwrap();
    eprintln!("killed after a checkpoint of {saved} rows");
    assert!(
        (saved as i64) < rows,
        "the copy was still going when killed"
    );
    assert!(
        !env.leftovers().await.is_empty(),
        "the killed run left its state"
    );

    let out = wraith_async(args.clone()).await;
    assert_eq!(out.status.code(), Some(2), "{}", show(&out));
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(
        stderr.contains("--resume") && stderr.contains("wraith cleanup"),
        "{}",
        show(&out)
    );
    assert!(
        env.checkpoint_rows().await.is_some(),
        "the refused run left the interrupted one alone"
    );

    let out = wraith_async(resume.into_iter().chain(["--json".to_string()]).collect()).await;
    assert_eq!(out.status.code(), Some(0), "{}", show(&out));
    let summary = json_summary(&String::from_utf8_lossy(&out.stdout), &show(&out));
    eprintln!("resumed run: {summary}");
    assert_resumed_exactly(&mut env, load, &summary, saved, rows).await;
    env.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn pg_killed_mid_copy_then_resumed() {
    killed_mid_copy_then_resumed(Env::pg().await).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn mariadb_killed_mid_copy_then_resumed() {
    killed_mid_copy_then_resumed(Env::my().await).await;
}

/// Test 2 of the issue: the server restarts mid-copy. The resumable run stops and
/// keeps its state (cleanup would throw it away); `--resume` continues it exactly.
async fn server_restarted_mid_copy_then_resumed(mut env: Env) {
    let rows = 30_000;
    let load = Load::start(&mut env, rows, true).await;
    let (alter, transforms) = items_alter(&env);
    let options = RunOptions {
        execute: true,
        resume: true,
        max_rows_per_sec: Some(3_000),
        ..RunOptions::default()
    };
    let run = env
        .start(spec_for(&env, "items", alter, &transforms, options))
        .await;
    let saved = wait_checkpoint(&mut env, 6_000, None).await;
    load.stop().await;
    env.restart().await;
    let err = run.await.unwrap().expect_err("the run loses its server");
    eprintln!("after {saved} rows: {err:#}");
    assert!(wraith::error::is_connection_lost(&err), "{err:#}");
    assert!(format!("{err:#}").contains("--resume"), "{err:#}");

    // The application comes back too, while the migration resumes.
    let load = Load::start(&mut env, rows, false).await;
    let options = RunOptions {
        execute: true,
        resume: true,
        ..RunOptions::default()
    };
    let outcome = env
        .start(spec_for(&env, "items", alter, &transforms, options))
        .await
        .await
        .unwrap()
        .expect("the resumed migration completes");
    let summary = match outcome {
        Outcome::Migrated(_, s) => s,
        other => panic!("no migration: {other:?}"),
    };
    let summary = summary.to_json();
    eprintln!("resumed: {summary}");
    assert_resumed_exactly(&mut env, load, &summary, saved, rows).await;
    env.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn pg_server_restarted_mid_copy_then_resumed() {
    server_restarted_mid_copy_then_resumed(Env::pg().await).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn mariadb_server_restarted_mid_copy_then_resumed() {
    server_restarted_mid_copy_then_resumed(Env::my().await).await;
}

/// Test 2 through the binary: a `--resume` run that loses its server reconnects
/// by itself once the server is back, resumes and finishes exactly.
async fn reconnects_after_server_restart(mut env: Env) {
    let rows = 30_000;
    let load = Load::start(&mut env, rows, true).await;
    let mut args = items_migrate_args(&env);
    args.extend(["--resume", "--json"].map(String::from));
    let log = tempfile::NamedTempFile::new().unwrap();
    let mut child = spawn_throttled(&args, &log);
    let saved = wait_checkpoint(&mut env, 6_000, Some(log.path())).await;
    load.stop().await;
    env.restart().await;
    let load = Load::start(&mut env, rows, false).await;
    let status = tokio::task::spawn_blocking(move || child.wait())
        .await
        .unwrap()
        .unwrap();
    let text = std::fs::read_to_string(log.path()).unwrap_or_default();
    assert_eq!(status.code(), Some(0), "{text}");
    assert!(text.contains("reconnecting"), "{text}");
    let summary = json_summary(&text, &text);
    eprintln!("after {saved} rows and a restart: {summary}");
    assert_resumed_exactly(&mut env, load, &summary, saved, rows).await;
    env.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn pg_reconnects_after_server_restart() {
    reconnects_after_server_restart(Env::pg().await).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn mariadb_reconnects_after_server_restart() {
    reconnects_after_server_restart(Env::my().await).await;
}
