//! The cutover on both engines: sessions that would make its lock queue are
//! waited out or ended; and wraith killed at each point of a run (after prepare,
//! mid-chunk, after the cutover lock, after the fence, before and after the swap
//! commits) leaves the application's table either the old one untouched or the
//! new one complete, nothing lost, and nothing behind once the next run or
//! `wraith cleanup` has run.

mod common;

use std::sync::Arc;
use std::sync::atomic::Ordering::Relaxed;
use std::time::Duration;

use common::env::Env;
use common::ops::*;
use common::*;
use std::os::unix::process::ExitStatusExt;

use wraith::engine::Stats;
use wraith::engine::faults::{self, Point};
use wraith::engine::migration::Outcome;
use wraith::plan::RunOptions;

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
        ..RunOptions::for_engine(env.engine())
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
    env.assert_untouched(before).await;
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

/// wraith killed (SIGKILL, no cleanup) at `point` of the `items` migration while
/// the workload writes. Before the swap commits, the table is the old one and
/// holds every write; after, it is the new one, complete. Either way nothing is
/// lost, and the next run (before the swap) or `wraith cleanup` (after) leaves
/// nothing of wraith's behind.
async fn killed_at(mut env: Env, point: Point) {
    let load = Load::start(&mut env, 5_000, true).await;
    let args = items_migrate_args(&env);
    let vars = vec![(faults::ENV.to_string(), point.name().to_string())];
    let out = wraith_async_env(args.clone(), vars).await;
    assert_eq!(
        out.status.signal(),
        Some(libc::SIGKILL),
        "killed at {}: {}",
        point.name(),
        show(&out)
    );
    // The application writes on after wraith is gone.
    tokio::time::sleep(Duration::from_millis(500)).await;
    load.stop().await;
    let swapped = items_swapped(&mut env).await;
    assert_eq!(swapped, point == Point::AfterSwapCommit, "{}", point.name());
    if swapped {
        assert_equals_mirror(&mut env).await;
        wraith_ok(&["cleanup", "--dsn", &env.dsn(), "--table", "items"]);
    } else {
        assert_untouched_equals_mirror(&mut env).await;
        let out = wraith_async(args).await;
        assert_eq!(out.status.code(), Some(0), "the next run: {}", show(&out));
        assert_equals_mirror(&mut env).await;
    }
    assert!(
        env.leftovers().await.is_empty(),
        "{}: {:?}",
        point.name(),
        env.leftovers().await
    );
    env.stop().await;
}

async fn killed_after_prepare(env: Env) {
    killed_at(env, Point::AfterPrepare).await;
}

async fn killed_mid_chunk(env: Env) {
    killed_at(env, Point::MidChunk).await;
}

async fn killed_after_cutover_lock(env: Env) {
    killed_at(env, Point::AfterCutoverLock).await;
}

async fn killed_after_fence(env: Env) {
    killed_at(env, Point::AfterFence).await;
}

async fn killed_before_swap_commit(env: Env) {
    killed_at(env, Point::BeforeSwapCommit).await;
}

async fn killed_after_swap_commit(env: Env) {
    killed_at(env, Point::AfterSwapCommit).await;
}

on_every_server!(blockers_are_waited_out_or_killed, killed_before_swap_commit);

on_both_engines!(
    killed_after_prepare,
    killed_mid_chunk,
    killed_after_cutover_lock,
    killed_after_fence,
    killed_after_swap_commit,
);
