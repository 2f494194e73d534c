//! The way back on PostgreSQL: a migration run with `--revertible`, writes to the
//! new table after the swap, then `wraith revert` swaps the old table back with
//! every one of those writes and every dependent under its name. A write the old
//! shape cannot hold stops the revert with its key; a revert killed at its
//! cutover, or while it reads the way back's stream, is run again.

mod common;

use std::sync::Arc;
use std::time::Duration;

use common::*;
use wraith::Engine;
use wraith::engine::Stats;
use wraith::engine::migration::Outcome;
use wraith::plan::{MigrationSpec, RunOptions};
use wraith::sandbox::PgOptions;

const ALTER: &str = "ALTER COLUMN amount TYPE bigint, ALTER COLUMN customer_id TYPE bigint";

/// A database with `t (id int PRIMARY KEY, v int NOT NULL)` of `rows` rows, v = id.
async fn table_t(rows: i64) -> Db {
    let db = db().await;
    db.client
        .batch_execute(&format!(
            "CREATE TABLE t (id int PRIMARY KEY, v int NOT NULL);
             INSERT INTO t SELECT g, g FROM generate_series(1, {rows}) g;"
        ))
        .await
        .unwrap();
    db
}

/// The type of `table.column`, as `format_type` prints it.
async fn type_of(c: &tokio_postgres::Client, table: &str, column: &str) -> String {
    c.query_one(
        "SELECT format_type(atttypid, atttypmod) FROM pg_attribute \
         WHERE attrelid = $1::text::regclass AND attname = $2",
        &[&table, &column],
    )
    .await
    .unwrap()
    .get(0)
}

/// `wraith revert --execute` of `table` through the library.
async fn revert(dsn: &str, table: &str) -> anyhow::Result<Outcome> {
    let mut spec = MigrationSpec::new(common::dsn(dsn), "");
    spec.set_table(table).unwrap();
    let opts = RunOptions {
        resume: true,
        ..execute()
    };
    let cx = Job::new(spec.clone(), opts.clone()).context(Arc::new(Stats::default()));
    Engine::revert(spec, opts, cx).await
}

fn revertible() -> RunOptions {
    RunOptions {
        revertible: true,
        initial_chunk_rows: 300,
        ..execute()
    }
}

async fn the_old_table_comes_back_with_every_write(opts: PgOptions) {
    let db = db_with(opts).await;
    let c = &db.client;
    c.batch_execute(dependents::FIXTURE).await.unwrap();
    let before = dependents::bound_to(c, "orders").await;

    let writer = dependents::Writer::start(&db).await;
    let outcome = migrate(spec(&db.dsn, "orders", ALTER, &[], revertible())).await;
    assert!(
        matches!(outcome, Ok(Outcome::Migrated(..))),
        "migration: {outcome:?}"
    );
    // The application writes to the new table for a while.
    tokio::time::sleep(Duration::from_millis(800)).await;
    assert!(scalar_bool(c, "SELECT to_regclass('_orders_back') IS NOT NULL").await);

    // The dry run shows the way back and changes nothing.
    let plan = wraith_ok(&["revert", "--dsn", &db.dsn, "--table", "orders"]);
    assert!(plan.contains("_orders_reverted"), "{plan}");
    assert_eq!(type_of(c, "orders", "amount").await, "bigint");

    let outcome = revert(&db.dsn, "orders").await;
    tokio::time::sleep(Duration::from_millis(300)).await;
    let failed = writer.stop().await;
    let Ok(Outcome::Migrated(_, summary)) = outcome else {
        panic!("revert: {outcome:?}")
    };
    assert!(summary.swapped);
    assert!(
        summary.keys_applied > 0,
        "the writes since the swap came back"
    );
    assert_eq!(failed, 0, "the application saw errors");

    // The old shape, with every write made before and after either swap.
    assert_eq!(type_of(c, "orders", "amount").await, "integer");
    assert_eq!(
        dependents::differs_from_mirror(c, "customer_id, amount").await,
        0,
        "the reverted table differs from the mirror"
    );
    // Every dependent is back on it under its own name; none left on the new shape.
    assert_eq!(dependents::bound_to(c, "orders").await, before);
    let aside = dependents::bound_to(c, "_orders_reverted").await;
    assert!(
        aside.iter().all(|o| !o.starts_with("view ")
            && !o.starts_with("referenced by ")
            && !o.starts_with("publication ")),
        "the new shape still has dependents: {aside:?}"
    );
    assert!(
        scalar_bool(
            c,
            "SELECT bool_and(convalidated) FROM pg_constraint WHERE confrelid = 'orders'::regclass"
        )
        .await
    );
    // The sequences go on from where the new table left them.
    let max = scalar_i64(c, "SELECT max(id)::int8 FROM orders").await;
    let id = scalar_i64(
        c,
        "INSERT INTO orders (customer_id, amount) VALUES (1, 1) RETURNING id::int8",
    )
    .await;
    assert!(id > max, "id {id} after {max}");
    assert!(
        scalar_bool(
            c,
            "SELECT NOT EXISTS (SELECT 1 FROM pg_replication_slots) \
                AND to_regclass('_orders_back') IS NULL AND to_regclass('_orders_old') IS NULL"
        )
        .await,
        "the way back is removed"
    );
    assert!(leftovers(c).await.is_empty(), "{:?}", leftovers(c).await);
}

on_postgres_versions!(the_old_table_comes_back_with_every_write,);

/// A value written since the swap that the old type cannot hold: the revert
/// stops with its key and leaves everything as it was; once the row is fixed it
/// goes through. A change whose way back wraith cannot derive is refused up front.
#[tokio::test]
async fn a_value_the_old_shape_cannot_hold_stops_the_revert() {
    let db = db().await;
    let c = &db.client;
    c.batch_execute(
        "CREATE TABLE t (id int PRIMARY KEY, v int NOT NULL, note varchar(5), gone text DEFAULT 'g');
         INSERT INTO t SELECT g, g, 'n' || g, 'old' FROM generate_series(1, 1000) g;",
    )
    .await
    .unwrap();

    let using = wraith(&[
        "migrate",
        "--dsn",
        &db.dsn,
        "--table",
        "t",
        "--alter",
        "ALTER COLUMN v TYPE text USING 'v' || v",
        "--revertible",
    ]);
    assert_eq!(using.status.code(), Some(2), "{}", show(&using));
    assert!(
        show(&using).contains("--reverse-transform v="),
        "{}",
        show(&using)
    );

    let alter = "ALTER COLUMN v TYPE bigint, ALTER COLUMN note TYPE text, DROP COLUMN gone";
    let outcome = migrate(spec(&db.dsn, "t", alter, &[], revertible())).await;
    assert!(matches!(outcome, Ok(Outcome::Migrated(..))), "{outcome:?}");
    c.batch_execute(
        "INSERT INTO t VALUES (2001, 5000000000, 'ok'), (2002, 1, 'too long');
         UPDATE t SET v = -v WHERE id <= 10; DELETE FROM t WHERE id BETWEEN 11 AND 20;",
    )
    .await
    .unwrap();

    let refused = revert(&db.dsn, "t")
        .await
        .expect_err("the revert is refused");
    let msg = format!("{refused:#}");
    assert!(msg.contains("(2001)"), "{msg}");
    assert!(wraith::error::exit_code(&refused) == 2, "{msg}");
    assert_eq!(
        type_of(c, "t", "v").await,
        "bigint",
        "the table is as it was"
    );
    c.batch_execute("UPDATE t SET v = 7 WHERE id = 2001")
        .await
        .unwrap();
    // A text longer than the old varchar(5) is refused too, not truncated.
    let refused = revert(&db.dsn, "t")
        .await
        .expect_err("the revert is refused");
    assert!(format!("{refused:#}").contains("(2002)"), "{refused:#}");
    c.batch_execute("UPDATE t SET note = 'short' WHERE id = 2002")
        .await
        .unwrap();

    let outcome = revert(&db.dsn, "t").await;
    assert!(matches!(outcome, Ok(Outcome::Migrated(..))), "{outcome:?}");
    assert_eq!(scalar_i64(c, "SELECT count(*) FROM t").await, 992);
    assert!(
        scalar_bool(
            c,
            "SELECT (SELECT sum(v) FROM t WHERE id <= 10) = -55 \
               AND (SELECT v FROM t WHERE id = 2001) = 7 \
               AND (SELECT gone FROM t WHERE id = 1) = 'old' \
               AND (SELECT gone FROM t WHERE id = 2001) = 'g' \
               AND (SELECT format_type(atttypid, atttypmod) FROM pg_attribute \
                    WHERE attrelid = 't'::regclass AND attname = 'note') = 'character varying(5)'"
        )
        .await,
        "old values kept, new rows take the dropped column's default"
    );
    assert!(leftovers(c).await.is_empty(), "{:?}", leftovers(c).await);
}

/// `wraith revert` killed outright while it reads the way back's stream, and
/// again with its swap done but not committed: each time the table is whole and
/// in use, and the next `wraith revert` finishes the job; killed right after its
/// swap, the next one only removes the way back. `--forget` removes a way back
/// and leaves the old table alone.
#[tokio::test]
async fn a_killed_revert_is_run_again() {
    let db = table_t(2000).await;
    let c = &db.client;
    let outcome = migrate(spec(
        &db.dsn,
        "t",
        "ALTER COLUMN v TYPE bigint",
        &[],
        revertible(),
    ))
    .await;
    assert!(matches!(outcome, Ok(Outcome::Migrated(..))), "{outcome:?}");
    c.batch_execute("UPDATE t SET v = v + 1000 WHERE id <= 500; INSERT INTO t VALUES (5000, 5);")
        .await
        .unwrap();

    let args: Vec<String> = ["revert", "--dsn", &db.dsn, "--table", "t", "--execute"]
        .map(String::from)
        .to_vec();
    for point in ["before-verify", "before-swap-commit"] {
        let out = wraith_async_env(
            args.clone(),
            vec![("WRAITH_FAULT_POINT".into(), point.into())],
        )
        .await;
        assert!(!out.status.success(), "killed at {point}: {}", show(&out));
        // The new shape is still the table, writable.
        assert_eq!(type_of(c, "t", "v").await, "bigint", "killed at {point}");
        c.batch_execute(&format!(
            "INSERT INTO t VALUES ({}, 1)",
            if point == "before-verify" { 6001 } else { 6002 }
        ))
        .await
        .unwrap();
    }
    // Killed right after its swap committed: the table is reverted; the next run
    // only removes the way back.
    let out = wraith_async_env(
        args.clone(),
        vec![("WRAITH_FAULT_POINT".into(), "after-swap-commit".into())],
    )
    .await;
    assert!(!out.status.success(), "{}", show(&out));
    let out = wraith_async(args.clone()).await;
    assert!(out.status.success(), "{}", show(&out));
    assert!(show(&out).contains("reverted"), "{}", show(&out));
    assert!(
        scalar_bool(
            c,
            "SELECT NOT EXISTS (SELECT 1 FROM pg_replication_slots) AND to_regclass('_t_back') IS NULL"
        )
        .await
    );
    assert!(
        scalar_bool(
            c,
            "SELECT count(*) = 2003 AND sum(v) = 2001000 + 500000 + 5 + 2 \
                AND format_type(min(a.atttypid), min(a.atttypmod)) = 'integer' \
             FROM t, pg_attribute a WHERE a.attrelid = 't'::regclass AND a.attname = 'v'"
        )
        .await
    );

    // Another revertible migration, then forgotten: the old table stays, the slot goes.
    c.batch_execute("DROP TABLE _t_reverted").await.unwrap();
    let outcome = migrate(spec(
        &db.dsn,
        "t",
        "ALTER COLUMN v TYPE bigint",
        &[],
        revertible(),
    ))
    .await;
    assert!(matches!(outcome, Ok(Outcome::Migrated(..))), "{outcome:?}");
    let out = wraith_ok(&["revert", "--dsn", &db.dsn, "--table", "t", "--forget"]);
    assert!(out.contains("removed replication slot"), "{out}");
    assert!(
        scalar_bool(
            c,
            "SELECT NOT EXISTS (SELECT 1 FROM pg_replication_slots) \
                AND to_regclass('_t_back') IS NULL AND to_regclass('_t_old') IS NOT NULL"
        )
        .await
    );
    let again = wraith(&["revert", "--dsn", &db.dsn, "--table", "t"]);
    assert_eq!(again.status.code(), Some(2), "{}", show(&again));
    assert!(show(&again).contains("no way back"), "{}", show(&again));
}

/// The oracle workload (inserts, updates with key moves, NULLs, TOASTed values,
/// deletes, asynchronous commits, every transaction mirrored) runs through the
/// migration, through a while on the new table, and through the revert: the
/// table equals the mirror in the old shape, and the workload saw no error. The
/// ALTER's expressions go back through `--reverse-transform`.
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn the_oracle_workload_goes_through_the_revert() {
    let mut env = common::env::Env::pg().await;
    let load = ops::Load::start_with(&mut env, 20_000, true, 4, 400).await;
    let common::env::Env::Pg(db) = &env else {
        unreachable!()
    };
    tokio::time::sleep(Duration::from_millis(300)).await;
    let mut job = spec(
        &db.dsn,
        "items",
        wraith::bench::workload::ITEMS_ALTER,
        &[],
        RunOptions {
            threads: 2,
            chunk_time: Duration::from_millis(20),
            ..revertible()
        },
    );
    job.spec.reverse_transforms = ["payload=payload::json", "status=status::text"]
        .iter()
        .map(|t| wraith::plan::Transform::parse(t).unwrap())
        .collect();
    let outcome = migrate(job).await;
    assert!(matches!(outcome, Ok(Outcome::Migrated(..))), "{outcome:?}");
    tokio::time::sleep(Duration::from_millis(1500)).await;
    let outcome = revert(&db.dsn, "items").await;
    tokio::time::sleep(Duration::from_millis(300)).await;
    let wl = load.stop().await;
    let Ok(Outcome::Migrated(_, summary)) = outcome else {
        panic!("revert: {outcome:?}")
    };
    assert!(summary.keys_applied > 100, "{summary:?}");
    assert!(wl.committed.load(std::sync::atomic::Ordering::Relaxed) > 500);

    // json went to jsonb and back: compared as values, not as text.
    let old_shape = |t: &str| {
        format!(
            "SELECT id, owner_id, status, amount, note, payload::jsonb, flags, blob, created_at FROM {t}"
        )
    };
    let diff = wraith::bench::workload::diff_count(
        &db.client,
        &old_shape("items_mirror"),
        &old_shape("items"),
    )
    .await
    .unwrap();
    assert_eq!(diff, 0, "the reverted table differs from the mirror");
    assert_eq!(type_of(&db.client, "items", "id").await, "integer");
    assert!(
        leftovers(&db.client).await.is_empty(),
        "{:?}",
        leftovers(&db.client).await
    );
    env.stop().await;
}

/// `migrate --revertible` stays after its swap with the old table following the
/// table, through a restart of the server and a value it cannot hold for a while
/// (reported in `ctl status`, parked): `ctl revert` swaps it back with the writes
/// made meanwhile. With a short
/// window and no `ctl revert`, the way back (with `--drop-old`, the old table
/// too) is removed when it ends and the new shape stays.
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn the_old_table_follows_the_table_for_the_window() {
    let mut db = table_t(3000).await;
    let dsn = db.dsn.clone();
    let dir = tempfile::tempdir().unwrap();
    let socket = dir.path().join("ctl.sock");
    let args = |window: &str| -> Vec<String> {
        [
            "migrate",
            "--dsn",
            &dsn,
            "--table",
            "t",
            "--alter",
            "ALTER COLUMN v TYPE bigint",
            "--execute",
            "--revertible",
            "--revert-window",
            window,
            "--control-socket",
            socket.to_str().unwrap(),
        ]
        .map(String::from)
        .to_vec()
    };
    let run = tokio::spawn(wraith_async(args("5m")));
    let status = ops::wait_status(&socket, Duration::from_secs(60), |s| {
        s["phase"] == "postponed"
    })
    .await;
    assert_eq!(status["cutover_postponed"], true, "{status}");
    db.client
        .batch_execute("INSERT INTO t VALUES (9001, 1)")
        .await
        .unwrap();
    // The server goes away and comes back: the old table goes on following.
    db.pg.restart().await.expect("restart PostgreSQL");
    db.client = db.pg.connect("app").await.unwrap();
    db.client
        .batch_execute("UPDATE t SET v = 0 WHERE id <= 100")
        .await
        .unwrap();
    let t0 = std::time::Instant::now();
    loop {
        let reply = wraith::ctl::send(&socket, "status")
            .await
            .unwrap_or_default();
        let s: serde_json::Value = serde_json::from_str(&reply).unwrap_or_default();
        if s["phase"] == "postponed" && s["keys_applied"].as_u64() >= Some(100) {
            break;
        }
        assert!(
            t0.elapsed() < Duration::from_secs(90),
            "never caught up again: {reply}"
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    let c = &db.client;
    // A value the old type cannot hold is reported and parked, and the old table
    // goes on following; once it fits again it is carried over.
    let refused = |n: u64| move |s: &serde_json::Value| s["keys_refused"].as_u64() == Some(n);
    c.batch_execute("UPDATE t SET v = 5000000000 WHERE id = 3000")
        .await
        .unwrap();
    let status = ops::wait_status(&socket, Duration::from_secs(30), refused(1)).await;
    assert_eq!(status["phase"], "postponed", "{status}");
    let reply = wraith::ctl::send(&socket, "revert").await.unwrap();
    assert!(
        reply.starts_with("error") && reply.contains("1 row"),
        "{reply}"
    );
    c.batch_execute("UPDATE t SET v = 3000 WHERE id = 3000")
        .await
        .unwrap();
    ops::wait_status(&socket, Duration::from_secs(30), refused(0)).await;
    let reply = wraith::ctl::send(&socket, "revert").await.unwrap();
    assert!(reply.starts_with("ok"), "{reply}");
    let out = run.await.unwrap();
    assert!(out.status.success(), "{}", show(&out));
    assert!(show(&out).contains("Revert done"), "{}", show(&out));
    assert!(
        scalar_bool(
            c,
            "SELECT count(*) = 3001 AND sum(v) = 4501500 - 5050 + 1 \
                AND format_type(min(a.atttypid), min(a.atttypmod)) = 'integer' \
             FROM t, pg_attribute a WHERE a.attrelid = 't'::regclass AND a.attname = 'v'"
        )
        .await
    );

    c.batch_execute("DROP TABLE _t_reverted").await.unwrap();
    let mut short = args("2s");
    short.push("--drop-old".into());
    let out = wraith_async(short).await;
    assert!(out.status.success(), "{}", show(&out));
    assert!(show(&out).contains("revert window ended"), "{}", show(&out));
    assert!(
        scalar_bool(
            c,
            "SELECT NOT EXISTS (SELECT 1 FROM pg_replication_slots) \
                AND to_regclass('_t_back') IS NULL AND to_regclass('_t_old') IS NULL \
                AND (SELECT format_type(atttypid, atttypmod) FROM pg_attribute \
                     WHERE attrelid = 't'::regclass AND attname = 'v') = 'bigint'"
        )
        .await
    );
}

/// A `--revertible` migration stopped after the way back was created but before
/// its swap (here by a failing hook) removes the way back with everything else:
/// no slot keeps WAL, the table is as it was. Killed there instead, `wraith
/// cleanup` removes it.
#[tokio::test]
async fn a_migration_that_does_not_swap_leaves_no_way_back() {
    let db = table_t(1000).await;
    let c = &db.client;
    let out = wraith(&[
        "migrate",
        "--dsn",
        &db.dsn,
        "--table",
        "t",
        "--alter",
        "ALTER COLUMN v TYPE bigint",
        "--revertible",
        "--execute",
        "--hook-before-cutover",
        "false",
    ]);
    assert!(!out.status.success(), "{}", show(&out));
    assert!(
        scalar_bool(
            c,
            "SELECT NOT EXISTS (SELECT 1 FROM pg_replication_slots) \
                AND NOT EXISTS (SELECT 1 FROM pg_publication) \
                AND to_regclass('_t_back') IS NULL AND to_regclass('_t_old') IS NULL \
                AND (SELECT format_type(atttypid, atttypmod) FROM pg_attribute \
                     WHERE attrelid = 't'::regclass AND attname = 'v') = 'integer'"
        )
        .await,
        "{}",
        show(&out)
    );

    // Killed before its swap committed: what it left, the way back included, goes
    // with `wraith cleanup`.
    let out = wraith_async_env(
        [
            "migrate",
            "--dsn",
            &db.dsn,
            "--table",
            "t",
            "--alter",
            "ALTER COLUMN v TYPE bigint",
            "--revertible",
            "--execute",
        ]
        .map(String::from)
        .to_vec(),
        vec![("WRAITH_FAULT_POINT".into(), "before-swap-commit".into())],
    )
    .await;
    assert!(!out.status.success(), "{}", show(&out));
    assert!(scalar_bool(c, "SELECT to_regclass('_t_back') IS NOT NULL").await);
    let out = wraith_ok(&["cleanup", "--dsn", &db.dsn, "--table", "t"]);
    assert!(
        scalar_bool(
            c,
            "SELECT NOT EXISTS (SELECT 1 FROM pg_replication_slots) \
                AND NOT EXISTS (SELECT 1 FROM pg_publication) \
                AND to_regclass('_t_back') IS NULL AND to_regclass('_t_new') IS NULL"
        )
        .await,
        "{out}"
    );
    assert_eq!(type_of(c, "t", "v").await, "integer");
}
