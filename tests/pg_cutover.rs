//! The cutover under lock contention: a transaction holding a lock on the table
//! delays the swap. wraith must retry (never queue behind the holder for long:
//! the application would queue behind wraith), and the result is still exact.

mod common;

use std::sync::atomic::Ordering::Relaxed;
use std::time::Duration;

use common::*;
use wraith::Engine;
use wraith::bench::workload;
use wraith::bench::workload::{ITEMS_ACTUAL, ITEMS_ALTER, ITEMS_EXPECTED};
use wraith::engine::faults::Point;
use wraith::engine::migration::Outcome;
use wraith::plan::RunOptions;
use wraith::sandbox::PgOptions;

async fn cutover_retries_while_a_transaction_holds_the_table(opts: PgOptions) {
    let db = db_with(opts).await;
    let rows = 5_000;
    let load = items_under_load(&db, rows, 2, 200).await;

    // A reader that keeps a transaction open on the table: its ACCESS SHARE lock
    // does not block the application's writes, but it blocks the swap.
    let blocker = db.pg.connect("app").await.unwrap();
    blocker
        .batch_execute("BEGIN; SELECT count(*) FROM items")
        .await
        .unwrap();
    let hold = Duration::from_secs(6);
    let released = tokio::spawn(async move {
        tokio::time::sleep(hold).await;
        blocker.batch_execute("COMMIT").await.unwrap();
    });

    let options = RunOptions {
        execute: true,
        cutover_lock_timeout: Duration::from_millis(100),
        cutover_attempts: 200,
        ..RunOptions::for_engine(Engine::Postgres)
    };
    let outcome = migrate(spec(&db.dsn, "items", ITEMS_ALTER, &[], options)).await;
    released.await.unwrap();
    tokio::time::sleep(Duration::from_millis(300)).await;
    let wl = load.stop().await;

    let summary = match outcome.expect("migration succeeds once the blocker is gone") {
        Outcome::Migrated(_, s) => s,
        other => panic!("no migration: {other:?}"),
    };
    assert!(
        summary.cutover_retries >= 1,
        "the first attempts could not get the lock"
    );
    assert_eq!(
        wl.failed.load(Relaxed),
        0,
        "workload errors: {:?}",
        wl.errors()
    );
    // Each attempt blocks writers for at most the lock timeout; had wraith queued
    // behind the blocker, writers would have waited for most of its 6 s hold.
    let worst = wl.take_max_latency();
    assert!(worst < hold / 2, "a workload transaction waited {worst:?}");
    let diff = workload::diff_count(&db.client, ITEMS_EXPECTED, ITEMS_ACTUAL)
        .await
        .unwrap();
    assert_eq!(diff, 0);
    assert!(leftovers(&db.client).await.is_empty());
}

#[tokio::test]
async fn gives_up_cleanly_when_the_lock_never_comes() {
    let db = db().await;
    db.client
        .batch_execute(
            "CREATE TABLE t (id int PRIMARY KEY, v text); INSERT INTO t SELECT g, 'v' FROM generate_series(1, 100) g;",
        )
        .await
        .unwrap();
    let before = table_fingerprint(&db.client, "t").await;
    let blocker = db.pg.connect("app").await.unwrap();
    blocker
        .batch_execute("BEGIN; SELECT count(*) FROM t")
        .await
        .unwrap();
    let options = RunOptions {
        execute: true,
        cutover_lock_timeout: Duration::from_millis(50),
        cutover_attempts: 3,
        ..RunOptions::for_engine(Engine::Postgres)
    };
    let err = migrate(spec(&db.dsn, "t", "ADD COLUMN w int", &[], options))
        .await
        .expect_err("cutover cannot happen");
    assert!(
        format!("{err:#}").contains("kept holding the table through 3 attempts"),
        "{err:#}"
    );
    blocker.batch_execute("COMMIT").await.unwrap();
    assert_eq!(table_fingerprint(&db.client, "t").await, before);
    assert!(scalar_bool(&db.client, "SELECT to_regclass('_t_old') IS NULL").await);
    assert!(
        leftovers(&db.client).await.is_empty(),
        "{:?}",
        leftovers(&db.client).await
    );
}

on_postgres_versions!(cutover_retries_while_a_transaction_holds_the_table,);

/// The shadow's foreign keys lock the tables they reference; an autovacuum (or
/// ANALYZE) of one holds SHARE UPDATE EXCLUSIVE, which conflicts. Building the
/// shadow waits at most the lock timeout each time and tries again, in the dry
/// run's preflight and in the run, instead of failing the run as bad input.
#[tokio::test]
async fn shadow_build_retries_while_a_referenced_table_is_vacuumed() {
    let db = db().await;
    db.client
        .batch_execute(
            "CREATE TABLE parent (id int PRIMARY KEY); INSERT INTO parent SELECT generate_series(1, 10); \
             CREATE TABLE child (id int PRIMARY KEY, parent_id int REFERENCES parent (id), v text); \
             INSERT INTO child SELECT g, 1 + g % 10, 'v' FROM generate_series(1, 200) g;",
        )
        .await
        .unwrap();
    let options = |execute| RunOptions {
        execute,
        cutover_lock_timeout: Duration::from_millis(50),
        cutover_attempts: 100,
        ..RunOptions::for_engine(Engine::Postgres)
    };
    let alter = "ADD COLUMN w int";

    let released = hold_parent(&db, 2).await;
    let dry = migrate(spec(&db.dsn, "child", alter, &[], options(false))).await;
    assert!(
        matches!(dry, Ok(Outcome::Planned(_))),
        "the dry run waits for the lock: {dry:?}"
    );
    released.await.unwrap();

    let released = hold_parent(&db, 2).await;
    let run = migrate(spec(&db.dsn, "child", alter, &[], options(true))).await;
    released.await.unwrap();
    assert!(
        matches!(run, Ok(Outcome::Migrated(..))),
        "the run waits for the lock: {run:?}"
    );
    assert!(scalar_bool(&db.client, "SELECT count(*) = 200 FROM child").await);
    db.client
        .batch_execute("DROP TABLE _child_old")
        .await
        .unwrap();

    // A lock that never comes: a clear error, nothing created.
    let released = hold_parent(&db, 5).await;
    let err = migrate(spec(
        &db.dsn,
        "child",
        "ADD COLUMN x int",
        &[],
        RunOptions {
            cutover_attempts: 2,
            ..options(true)
        },
    ))
    .await
    .expect_err("the lock never comes");
    released.await.unwrap();
    let text = format!("{err:#}");
    assert!(
        text.contains("was not granted") && text.contains("--cutover-lock-timeout"),
        "{text}"
    );
    assert!(
        leftovers(&db.client).await.is_empty(),
        "{:?}",
        leftovers(&db.client).await
    );
}

/// Holds what autovacuum and ANALYZE take on `parent` for `secs`.
async fn hold_parent(db: &Db, secs: u64) -> tokio::task::JoinHandle<()> {
    let blocker = db.pg.connect("app").await.unwrap();
    blocker
        .batch_execute("BEGIN; LOCK TABLE parent IN SHARE UPDATE EXCLUSIVE MODE")
        .await
        .unwrap();
    tokio::spawn(async move {
        tokio::time::sleep(Duration::from_secs(secs)).await;
        blocker.batch_execute("COMMIT").await.unwrap();
    })
}

/// An autovacuum of the table holds a lock that conflicts with every lock
/// wraith takes, and PostgreSQL only cancels it for a request that waited a whole
/// `deadlock_timeout`, longer than wraith's requests wait. A slow vacuum (here
/// throttled to a page per 100 ms) would outlast every attempt; wraith cancels
/// it, as the server would, and the run goes through.
#[tokio::test]
async fn an_autovacuum_of_the_table_does_not_outlast_the_lock_attempts() {
    let db = db_with(PgOptions {
        extra_conf: vec![("autovacuum_naptime".into(), "1".into())],
        ..Default::default()
    })
    .await;
    db.client
        .batch_execute(
            "CREATE TABLE t (id int PRIMARY KEY, v text); \
             INSERT INTO t SELECT g, repeat('v', 100) FROM generate_series(1, 30000) g; \
             ALTER TABLE t SET (autovacuum_vacuum_cost_delay = 100, autovacuum_vacuum_cost_limit = 1, \
                                autovacuum_vacuum_threshold = 0, autovacuum_vacuum_scale_factor = 0, \
                                autovacuum_analyze_threshold = 1000000000); \
             DELETE FROM t WHERE id % 2 = 0;",
        )
        .await
        .unwrap();
    // Creating the publication waits for the vacuum long enough for the server to
    // cancel it; the next one starts within the naptime, during the copy: the
    // verification waits for it, then the consistent point's lock is requested.
    let wait_for_vacuum = "DO $$ BEGIN FOR i IN 1..300 LOOP PERFORM pg_stat_clear_snapshot(); \
         EXIT WHEN EXISTS (SELECT 1 FROM pg_stat_activity WHERE backend_type = 'autovacuum worker' \
                           AND query LIKE '%VACUUM%public.t%'); \
         PERFORM pg_sleep(0.1); END LOOP; END $$";
    let options = RunOptions {
        execute: true,
        cutover_lock_timeout: Duration::from_millis(100),
        cutover_attempts: 4,
        ..RunOptions::for_engine(Engine::Postgres)
    };
    let outcome = migrate(
        spec(&db.dsn, "t", "ADD COLUMN w int", &[], options).with_faults(sql_at(
            Point::BeforeVerify,
            &db.dsn,
            wait_for_vacuum,
        )),
    )
    .await;
    assert!(
        matches!(outcome, Ok(Outcome::Migrated(..))),
        "the vacuum held the table through every attempt: {outcome:?}"
    );
    assert!(scalar_bool(&db.client, "SELECT count(*) = 15000 FROM t").await);
    assert!(leftovers(&db.client).await.is_empty());
}
