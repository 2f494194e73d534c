//! Metadata-only changes (`--instant`, `--prefer-instant`): the dry run says
//! whether the server can apply the ALTER without touching the rows; `--instant`
//! then applies it to the table itself through the bounded, retried lock request,
//! with no shadow, no copy and no swap, and refuses a change that rewrites.

mod common;

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering::Relaxed};
use std::time::Duration;

use common::env::{Env, Session};
use common::*;
use wraith::engine::migration::Outcome;
use wraith::plan::RunOptions;
use wraith::plan::instant::{Instant, InstantMode};

/// (metadata-only on this engine, rewrites the rows)
fn alters(env: &Env) -> (&'static str, &'static str) {
    match env {
        Env::Pg(_) => (
            "ADD COLUMN note varchar(20), ALTER COLUMN v SET DEFAULT 0",
            "ALTER COLUMN v TYPE bigint",
        ),
        Env::My(..) => ("ADD COLUMN note varchar(20)", "MODIFY v bigint NOT NULL"),
    }
}

async fn old_table_exists(env: &mut Env) -> bool {
    let sql = match env {
        Env::Pg(_) => "SELECT 1 FROM pg_class WHERE relname = '_t_old'",
        Env::My(..) => {
            "SELECT 1 FROM information_schema.TABLES WHERE TABLE_SCHEMA = DATABASE() \
             AND TABLE_NAME = 't_wraith_old'"
        }
    };
    count_rows(env, sql).await > 0
}

async fn count_rows(env: &mut Env, sql: &str) -> i64 {
    match env {
        Env::Pg(db) => db.client.query(sql, &[]).await.unwrap().len() as i64,
        Env::My(_, _, c) => {
            use mysql_async::prelude::Queryable;
            c.query::<mysql_async::Row, _>(sql).await.unwrap().len() as i64
        }
    }
}

async fn metadata_only_changes_apply_directly(mut env: Env) {
    env.simple_table(2_000).await;
    let before = env.t_fingerprint().await;
    let (instant, rewrite) = alters(&env);
    let (dsn, engine) = (env.dsn(), env.engine());
    let options = move |mode, execute| RunOptions {
        execute,
        instant: mode,
        cutover_lock_timeout: Duration::from_millis(50),
        cutover_attempts: 200,
        ..RunOptions::for_engine(engine)
    };

    let run = |alter: &str, mode| migrate(spec(&dsn, "t", alter, &[], options(mode, true)));

    // The dry run tells the two apart.
    let plan = |alter| {
        let job = spec(&dsn, "t", alter, &[], options(InstantMode::Never, false));
        async move {
            match migrate(job).await.expect("dry run") {
                Outcome::Planned(plan) => plan,
                other => panic!("not a plan: {other:?}"),
            }
        }
    };
    let p = plan(instant).await;
    assert!(
        matches!(&p.instant, Instant::MetadataOnly(s) if s.iter().any(|s| s.contains("note"))),
        "{:?}",
        p.instant
    );
    assert!(
        format!("{p}").contains("--instant applies it directly"),
        "{p}"
    );
    let p = plan(rewrite).await;
    assert!(matches!(p.instant, Instant::Rewrites(_)), "{:?}", p.instant);
    if let Env::My(..) = env {
        // The probe's scratch name taken by a table of the user's: not tried, not touched.
        env.exec("CREATE TABLE _t_plan (x int PRIMARY KEY)").await;
        let p = plan(instant).await;
        assert!(
            matches!(&p.instant, Instant::Rewrites(why) if why.contains("could not try")),
            "{:?}",
            p.instant
        );
        assert_eq!(count_rows(&mut env, "SELECT x FROM _t_plan").await, 0);
        env.exec("DROP TABLE _t_plan").await;
    }

    // --instant on a change that rewrites: refused, nothing changed.
    let err = run(rewrite, InstantMode::Require)
        .await
        .expect_err("a rewrite is not instant");
    let text = format!("{err:#}");
    assert!(
        text.contains("--instant") && text.contains("nothing was changed"),
        "{text}"
    );
    assert_eq!(wraith::error::exit_code(&err), 2, "{text}");
    env.assert_untouched(before).await;

    // A reader holds the table: the ALTER's lock request gives way to the
    // application's writes and tries again until the reader is done.
    let mut reader = env.session().await;
    reader.exec("BEGIN").await.unwrap();
    reader.exec("SELECT count(*) FROM t").await.unwrap();
    let release = tokio::spawn(async move {
        tokio::time::sleep(Duration::from_secs(2)).await;
        reader.exec("COMMIT").await.unwrap();
    });
    let (stop, written, failed) = (
        Arc::new(AtomicBool::new(false)),
        Arc::new(AtomicU64::new(0)),
        Arc::new(AtomicU64::new(0)),
    );
    let mut writer = env.session().await;
    // A write queued behind a waiting ALTER for a whole second counts as stalled.
    let bound = match &writer {
        Session::Pg(_) => "SET lock_timeout = '1s'",
        Session::My(_) => "SET SESSION lock_wait_timeout = 1",
    };
    writer.exec(bound).await.unwrap();
    let writes = {
        let (stop, written, failed) = (stop.clone(), written.clone(), failed.clone());
        tokio::spawn(async move {
            let mut id = 100_000;
            while !stop.load(Relaxed) {
                id += 1;
                match writer
                    .exec(&format!("INSERT INTO t (id, v) VALUES ({id}, {id})"))
                    .await
                {
                    Ok(()) => written.fetch_add(1, Relaxed),
                    Err(_) => failed.fetch_add(1, Relaxed),
                };
                tokio::time::sleep(Duration::from_millis(20)).await;
            }
        })
    };
    let outcome = run(instant, InstantMode::Require).await;
    release.await.unwrap();
    stop.store(true, Relaxed);
    writes.await.unwrap();
    assert!(
        matches!(outcome, Ok(Outcome::AppliedInstantly(_))),
        "{outcome:?}"
    );
    assert_eq!(failed.load(Relaxed), 0, "a write waited behind the ALTER");
    let written = written.load(Relaxed) as i64;
    assert!(written > 0);

    // Applied to the table itself: no shadow, no swap, every row and write there.
    let left = env.leftovers().await;
    assert!(left.is_empty(), "left behind: {left:?}");
    assert!(!old_table_exists(&mut env).await, "no swap happened");
    assert_eq!(
        count_rows(&mut env, "SELECT note FROM t").await,
        before.0 + written
    );

    // Recorded: running the same change again does nothing.
    let again = run(instant, InstantMode::Require).await;
    assert!(matches!(again, Ok(Outcome::AlreadyDone(_))), "{again:?}");

    // --prefer-instant rewrites online what is not metadata-only.
    let rewritten = run(rewrite, InstantMode::Prefer).await;
    assert!(
        matches!(rewritten, Ok(Outcome::Migrated(..))),
        "{rewritten:?}"
    );
    assert!(old_table_exists(&mut env).await);

    // A real run without either flag does not try the change on a scratch table
    // (on MySQL that is DDL of its own, written to the binary log).
    if let Env::My(..) = env {
        env.exec("DROP TABLE t_wraith_old").await;
        match run("ADD COLUMN other int", InstantMode::Never).await {
            Ok(Outcome::Migrated(plan, _)) => assert_eq!(plan.instant, Instant::Unchecked),
            other => panic!("{other:?}"),
        }
    }
    env.stop().await;
}

on_both_engines!(metadata_only_changes_apply_directly);

/// On PostgreSQL a change of a kind that scans the rows (SET NOT NULL, a
/// validated CHECK) or a type change that rewrites them is not metadata-only,
/// and the plan says which; a type change the server does in place is.
#[tokio::test]
async fn postgres_tells_scans_and_rewrites_from_catalog_changes() {
    let db = db().await;
    db.client
        .batch_execute(
            "CREATE TABLE t (id int PRIMARY KEY, name varchar(20), v int); \
             CREATE INDEX t_name ON t (name); \
             INSERT INTO t SELECT g, 'n' || g, g FROM generate_series(1, 100) g",
        )
        .await
        .unwrap();
    for (alter, expect) in [
        ("ALTER COLUMN name TYPE varchar(200)", None),
        ("ALTER COLUMN name TYPE text", None),
        ("DROP COLUMN v", None),
        ("ALTER COLUMN v SET NOT NULL", Some("SET NOT NULL")),
        (
            "ADD CONSTRAINT v_pos CHECK (v > 0)",
            Some("checks every row"),
        ),
        (
            "ALTER COLUMN name TYPE varchar(10)",
            Some("rewrites the table and rebuilds"),
        ),
        ("ALTER COLUMN v TYPE bigint", Some("rewrites the table")),
    ] {
        let plan = match migrate(spec(
            &db.dsn,
            "t",
            alter,
            &[],
            RunOptions::for_engine(wraith::Engine::Postgres),
        ))
        .await
        .expect(alter)
        {
            Outcome::Planned(plan) => plan,
            other => panic!("{alter}: {other:?}"),
        };
        match (expect, &plan.instant) {
            (None, Instant::MetadataOnly(_)) => {}
            (Some(says), Instant::Rewrites(why)) if why.contains(says) => {}
            (_, other) => panic!("{alter}: {other:?}"),
        }
    }
}
