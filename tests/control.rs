//! Throttling and live control of a running migration, on both engines: the
//! flag file, `ctl status` / `chunk-time` / `abort`, the postponed cutover and
//! its release, the load and slot-WAL guards, hooks, and the command line's
//! refusals of throttle options that cannot work.

mod common;

use std::path::Path;
use std::time::Duration;

use common::env::Env;
use common::ops::*;
use common::*;
use wraith::engine::hooks::{HookEvent, Hooks};
use wraith::engine::migration::Outcome;
use wraith::plan::{RunOptions, ThrottleOptions};

const STATUS_FIELDS: &[&str] = &[
    "phase",
    "threads",
    "copy_workers",
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
        ..RunOptions::for_engine(env.engine())
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
    // Copy workers come and go with `threads`.
    for n in [3u64, 1] {
        let reply = wraith_ok(&["ctl", socket_arg, &format!("threads={n}")]);
        assert!(reply.starts_with("ok"), "{reply}");
        let s = wait_status(&socket, Duration::from_secs(10), |s| {
            s["copy_workers"].as_u64() == Some(n)
        })
        .await;
        assert_eq!(s["threads"], n, "{s}");
    }
    let bad = wraith(&["ctl", socket_arg, "threads=0"]);
    assert_eq!(bad.status.code(), Some(2), "no copy thread is refused");
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
    env.assert_untouched(before).await;
    assert!(!socket.exists(), "the socket is removed when the run ends");
    env.stop().await;
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
        ..RunOptions::for_engine(env.engine())
    };
    let err = env
        .start(spec_for(&env, "items", alter, &transforms, options).with_hooks(refusing))
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
        ..RunOptions::for_engine(env.engine())
    };
    let run = env
        .start(spec_for(&env, "items", alter, &transforms, options).with_hooks(logging_hooks(&log)))
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

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn pg_postponed_cutover_completes_exactly() {
    postponed_cutover_completes_exactly(Env::pg().await, false).await;
}

/// With the flag file on MariaDB and MySQL.
async fn postponed_cutover_by_flag_file_completes_exactly(env: Env) {
    postponed_cutover_completes_exactly(env, true).await;
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
        ..RunOptions::for_engine(env.engine())
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
    env.assert_untouched(before).await;
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

on_servers!([mariadb, mysql] postponed_cutover_by_flag_file_completes_exactly);

on_both_engines!(
    flag_file_status_chunk_time_and_abort,
    critical_load_aborts_cleanly
);
