//! Resuming a migration, on both engines: a run killed mid-copy continues with
//! `--resume` where it stopped; a run whose server restarts keeps its state and
//! resumes, by hand or by reconnecting itself; the result equals the mirror.

mod common;

use std::path::Path;
use std::time::{Duration, Instant};

use common::env::Env;
use common::ops::*;
use common::*;
use serde_json::Value;
use wraith::engine::migration::Outcome;
use wraith::plan::RunOptions;

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

/// kill -9 mid-copy of four copy workers, then `--resume` with four. The run
/// finishes where the killed one stopped (it copies fewer rows than the table
/// has, skipping chunks the workers committed out of order) and equals the
/// mirror. Without `--resume`, the interrupted migration is refused with both ways on.
async fn killed_mid_copy_then_resumed(mut env: Env) {
    let rows = 30_000;
    let load = Load::start(&mut env, rows, true).await;
    let mut args = items_migrate_args(&env);
    args.extend(["--threads".to_string(), "4".to_string()]);
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

/// The server restarts mid-copy. The resumable run stops and
/// keeps its state (cleanup would throw it away); `--resume` continues it exactly.
async fn server_restarted_mid_copy_then_resumed(mut env: Env) {
    let rows = 30_000;
    let load = Load::start(&mut env, rows, true).await;
    let (alter, transforms) = items_alter(&env);
    let options = RunOptions {
        execute: true,
        resume: true,
        max_rows_per_sec: Some(3_000),
        ..RunOptions::for_engine(env.engine())
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
        ..RunOptions::for_engine(env.engine())
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

/// A server restart, through the binary: a `--resume` run that loses its server reconnects
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

on_every_server!(killed_mid_copy_then_resumed);

on_both_engines!(
    server_restarted_mid_copy_then_resumed,
    reconnects_after_server_restart
);
