//! The MySQL/MariaDB engine on a sandbox MariaDB: type changes and renames give
//! exact rows; a value that does not fit stops the run with its keys and changes
//! nothing; the cutover waits out a long transaction with bounded, retried
//! attempts; bad input (binary log off, keys with CASCADE actions, DDL on the source
//! during the run) is refused or aborted with nothing left behind.

mod common;

use std::sync::Arc;
use std::sync::atomic::Ordering::Relaxed;
use std::time::Duration;

use common::*;
use mysql_async::prelude::Queryable;
use wraith::Engine;
use wraith::engine::Stats;
use wraith::engine::migration::Outcome;
use wraith::error::exit_code;
use wraith::plan::RunOptions;
use wraith::sandbox::{MyOptions, MyServer, MySqlSandbox};

async fn type_changes_renames_and_an_enum_transform_give_exact_rows(server: MyServer) {
    let (db, dsn, mut c) = my_sandbox_on(server.clone()).await;
    c.query_drop(
        "CREATE TABLE shapes (id int PRIMARY KEY, n int NOT NULL, s varchar(10), st varchar(20) NOT NULL,
                              old_col int, keep text);
         INSERT INTO shapes VALUES (1, 2147483647, 'abc', ' A', 1, 'x'), (2, -5, NULL, 'b ', 2, NULL),
                                   (3, 0, '', 'B', 3, 'ü');",
    )
    .await
    .unwrap();
    let alter = "MODIFY n bigint NOT NULL, MODIFY s varchar(50), MODIFY st enum('a','b') NOT NULL, \
                 DROP COLUMN old_col, ADD COLUMN added int NOT NULL DEFAULT 5, CHANGE COLUMN keep kept text";

    // A transform whose value does not fit the ENUM: strict mode makes it an error
    // naming the keys; nothing is swapped or left behind.
    let err = migrate(spec(
        &dsn,
        "shapes",
        alter,
        &[("st", "CONCAT(TRIM(st), 'x')")],
        execute_on(Engine::MySql),
    ))
    .await
    .expect_err("'Ax' is not an enum value");
    let msg = format!("{err:#}");
    assert!(
        msg.contains("copying the rows with keys") && msg.contains("nothing was swapped"),
        "{msg}"
    );
    assert_eq!(my_tables(&mut c).await, vec!["shapes"]);

    let outcome = migrate(spec(
        &dsn,
        "shapes",
        alter,
        &[("st", "LOWER(TRIM(st))")],
        execute_on(Engine::MySql),
    ))
    .await
    .expect("migration succeeds");
    assert!(matches!(outcome, Outcome::Migrated(..)), "{outcome:?}");
    let types: Vec<(String, String)> = c
        .query("SELECT COLUMN_NAME, COLUMN_TYPE FROM information_schema.COLUMNS WHERE TABLE_SCHEMA = 'app' AND TABLE_NAME = 'shapes' ORDER BY ORDINAL_POSITION")
        .await
        .unwrap();
    // MySQL 8.0.19 and later show integer types without a display width.
    let types: Vec<String> = types
        .into_iter()
        .map(|(n, t)| {
            format!(
                "{n} {}",
                t.replace("int(11)", "int").replace("bigint(20)", "bigint")
            )
        })
        .collect();
    assert_eq!(
        types,
        [
            "id int",
            "n bigint",
            "s varchar(50)",
            "st enum('a','b')",
            "kept text",
            "added int"
        ]
    );
    type Row = (i64, i64, Option<String>, String, Option<String>, i64);
    let rows: Vec<Row> = c
        .query("SELECT id, n, s, st, kept, added FROM shapes ORDER BY id")
        .await
        .unwrap();
    assert_eq!(
        rows,
        vec![
            (
                1,
                2147483647,
                Some("abc".into()),
                "a".into(),
                Some("x".into()),
                5
            ),
            (2, -5, None, "b".into(), None, 5),
            (3, 0, Some("".into()), "b".into(), Some("ü".into()), 5),
        ]
    );
    assert_eq!(my_tables(&mut c).await, vec!["shapes", "shapes_wraith_old"]);
    db.stop().await;
}

/// Rows of `v` where a NULL, an empty string, a NUL byte and values in the
/// neighbouring column must all be told apart.
fn verify_setup() -> String {
    format!("
    CREATE TABLE v (id int PRIMARY KEY, a varchar(20), b varchar(20), bin varbinary(4), n int NOT NULL);
    INSERT INTO v SELECT seq, IF(seq % 3 = 0, NULL, CONCAT('a', seq)), IF(seq % 5 = 0, 'b', NULL),
                         IF(seq % 7 = 0, 0x00, NULL), seq FROM {};", seq(3000))
}

/// A changed row, a missing row, an extra row, '' for NULL, NULL for a NUL byte,
/// and a value moved to the next column.
fn corrupt_v(table: &str) -> String {
    format!(
        "UPDATE {table} SET n = n + 1 WHERE id = 10;
         DELETE FROM {table} WHERE id = 20;
         INSERT INTO {table} (id, a, b, bin, n) VALUES (100000, 'extra', NULL, NULL, 1);
         UPDATE {table} SET a = '' WHERE id = 30;
         UPDATE {table} SET bin = NULL WHERE id = 35;
         UPDATE {table} SET a = NULL, b = 'a31' WHERE id = 31;"
    )
}

const DIFFERENT: [i64; 6] = [10, 20, 30, 31, 35, 100000];

/// Every row of `a` has an equal row in `b` (NULL-safe) and the counts agree.
async fn same_rows(c: &mut mysql_async::Conn, a: &str, b: &str) -> bool {
    let (na, nb, missing): (i64, i64, i64) = c
        .query_first(format!(
            "SELECT (SELECT COUNT(*) FROM {a}), (SELECT COUNT(*) FROM {b}),
                    (SELECT COUNT(*) FROM {a} x LEFT JOIN {b} y ON y.id = x.id AND y.a <=> x.a
                       AND y.b <=> x.b AND y.bin <=> x.bin AND y.n <=> x.n WHERE y.id IS NULL)"
        ))
        .await
        .unwrap()
        .unwrap();
    na == nb && missing == 0
}

async fn verification_finds_every_kind_of_difference_and_the_migration_repairs_it(
    server: MyServer,
) {
    let (db, dsn, mut c) = my_sandbox_on(server.clone()).await;
    c.query_drop(verify_setup()).await.unwrap();
    // Just before verification, the shadow is corrupted.
    let faults = sql_at(
        wraith::engine::faults::Point::BeforeVerify,
        &dsn,
        corrupt_v("v_wraith_new"),
    );
    let outcome = migrate(
        spec(
            &dsn,
            "v",
            "MODIFY n bigint NOT NULL",
            &[],
            execute_on(Engine::MySql),
        )
        .with_faults(faults),
    )
    .await
    .expect("repaired and swapped");
    let Outcome::Migrated(_, summary) = outcome else {
        panic!("dry run")
    };
    assert_eq!(
        summary.verify_repaired,
        DIFFERENT.len() as u64,
        "each difference is found"
    );
    assert!(
        same_rows(&mut c, "v", "v_wraith_old").await
            && same_rows(&mut c, "v_wraith_old", "v").await,
        "the swapped table equals the source"
    );

    // `wraith verify` compares two tables: the old and the new shape agree...
    let stdout = wraith_ok(&[
        "verify",
        "--dsn",
        &dsn,
        "--source",
        "v_wraith_old",
        "--target",
        "v",
        "--json",
    ]);
    let report: serde_json::Value = serde_json::from_str(stdout.trim()).unwrap();
    assert_eq!(report["source_rows"], 3000, "{report}");
    assert_eq!(report["mismatched_keys"], serde_json::json!([]));
    // ...and a corrupted copy differs in exactly the corrupted keys (exit 1).
    c.query_drop(format!(
        "CREATE TABLE w LIKE v; INSERT INTO w SELECT * FROM v; {}",
        corrupt_v("w")
    ))
    .await
    .unwrap();
    let differ = wraith(&[
        "verify", "--dsn", &dsn, "--source", "v", "--target", "w", "--json",
    ]);
    let keys = differing_keys(&differ);
    assert_eq!(keys, DIFFERENT, "flagged exactly the real differences");
    let missing = wraith(&["verify", "--dsn", &dsn, "--source", "v", "--target", "nope"]);
    assert_eq!(missing.status.code(), Some(2), "{missing:?}");
    c.query_drop("DROP TABLE w").await.unwrap();

    // A transform that gives another value each time cannot be repaired: the
    // run stops before the swap and keeps the shadow for inspection.
    c.query_drop("DROP TABLE v, v_wraith_old").await.unwrap();
    c.query_drop(verify_setup()).await.unwrap();
    let err = migrate(spec(
        &dsn,
        "v",
        "MODIFY n bigint NOT NULL",
        &[("a", "CONCAT(LEFT(a, 3), FLOOR(RAND() * 1000))")],
        execute_on(Engine::MySql),
    ))
    .await
    .expect_err("verification must fail");
    let msg = format!("{err:#}");
    assert!(msg.contains("verification failed twice"), "{msg}");
    assert_eq!(exit_code(&err), 1);
    // The changelog stays with the kept shadow: it marks both as wraith's.
    assert_eq!(
        my_tables(&mut c).await,
        vec!["v", "v_wraith_log", "v_wraith_new"]
    );
    let out = wraith(&["cleanup", "--dsn", &dsn, "--table", "v"]);
    assert_eq!(out.status.code(), Some(0), "{out:?}");
    assert_eq!(my_tables(&mut c).await, vec!["v"]);
    db.stop().await;
}

/// The index lines of `SHOW CREATE TABLE`, sorted.
async fn index_lines(c: &mut mysql_async::Conn, table: &str) -> Vec<String> {
    let (_, create): (String, String) = c
        .query_first(format!("SHOW CREATE TABLE {table}"))
        .await
        .unwrap()
        .unwrap();
    let mut lines: Vec<String> = create
        .lines()
        .map(|l| l.trim().trim_end_matches(',').to_string())
        .filter(|l| l.contains("KEY "))
        .collect();
    lines.sort();
    lines
}

async fn secondary_indexes_are_built_after_the_copy_exactly_as_the_alter_defines_them(
    server: MyServer,
) {
    let (db, dsn, mut c) = my_sandbox_on(server.clone()).await;
    c.query_drop(format!(
        "CREATE TABLE ix (id int PRIMARY KEY, a int, s varchar(40), u int,
                          UNIQUE KEY u_uq (u), KEY by_s (s(5)) COMMENT 'prefix', KEY a_s (a, s));
         INSERT INTO ix SELECT seq, seq % 100, CONCAT('s', seq), seq FROM {};
         CREATE TABLE reference LIKE ix;",
        seq(3000)
    ))
    .await
    .unwrap();
    let alter = "MODIFY s varchar(60), ADD INDEX by_a (a)";
    // What the same ALTER gives in place.
    c.query_drop(format!("ALTER TABLE reference {alter}"))
        .await
        .unwrap();
    let expected = index_lines(&mut c, "reference").await;

    let plan = wraith_ok(&["migrate", "--dsn", &dsn, "--table", "ix", "--alter", alter]);
    assert!(
        plan.contains(
            "DROP INDEX `by_s`, DROP INDEX `a_s`, DROP INDEX `by_a` -- built after the copy"
        ),
        "{plan}"
    );
    assert!(
        !plan.contains("DROP INDEX `u_uq`"),
        "unique keys stay: {plan}"
    );
    let outcome = migrate(spec(&dsn, "ix", alter, &[], execute_on(Engine::MySql)))
        .await
        .expect("migration succeeds");
    assert!(matches!(outcome, Outcome::Migrated(..)));
    assert_eq!(index_lines(&mut c, "ix").await, expected);
    let rows: i64 = c
        .query_first("SELECT COUNT(*) FROM ix FORCE INDEX (by_a) WHERE a = 7")
        .await
        .unwrap()
        .unwrap();
    assert_eq!(rows, 30, "the index built after the copy holds every row");

    // A FULLTEXT index: InnoDB adds no index online to such a table, so it keeps
    // its indexes through the copy.
    c.query_drop(
        format!("CREATE TABLE ft (id int PRIMARY KEY, a int, body text, KEY by_a (a), FULLTEXT KEY words (body));
         INSERT INTO ft SELECT seq, seq % 10, CONCAT('word', seq) FROM {};
         CREATE TABLE ft_reference LIKE ft;
         ALTER TABLE ft_reference MODIFY a bigint;", seq(500)),
    )
    .await
    .unwrap();
    let plan = wraith_ok(&[
        "migrate",
        "--dsn",
        &dsn,
        "--table",
        "ft",
        "--alter",
        "MODIFY a bigint",
    ]);
    assert!(!plan.contains("built after the copy"), "{plan}");
    // The plan was built on a scratch table (a temporary one cannot hold a
    // FULLTEXT index), dropped again.
    assert!(!my_tables(&mut c).await.contains(&"_ft_plan".to_string()));
    migrate(spec(
        &dsn,
        "ft",
        "MODIFY a bigint",
        &[],
        execute_on(Engine::MySql),
    ))
    .await
    .expect("migration succeeds");
    assert_eq!(
        index_lines(&mut c, "ft").await,
        index_lines(&mut c, "ft_reference").await
    );
    db.stop().await;
}

async fn cutover_waits_out_a_long_transaction_with_bounded_retries(server: MyServer) {
    let (db, dsn, mut c) = my_sandbox_on(server.clone()).await;
    c.query_drop(format!(
        "CREATE TABLE t (id int PRIMARY KEY, v int NOT NULL);
         INSERT INTO t SELECT seq, seq FROM {};",
        seq(2000)
    ))
    .await
    .unwrap();
    // A transaction that read the table holds its metadata lock until it ends: the
    // cutover's lock cannot be granted meanwhile (the copy's row locks can).
    let mut holder = db.connect("app").await.unwrap();
    holder
        .query_drop("BEGIN; SELECT COUNT(*) FROM t")
        .await
        .unwrap();
    let release = tokio::spawn(async move {
        tokio::time::sleep(Duration::from_secs(3)).await;
        holder.query_drop("COMMIT").await.unwrap();
        holder
    });
    // Another session writes all along: each wait it sees is bounded by the lock timeout.
    let mut writer = db.connect("app").await.unwrap();
    let writes = tokio::spawn(async move {
        let mut max = Duration::ZERO;
        for i in 0..300 {
            let t0 = std::time::Instant::now();
            writer
                .exec_drop("UPDATE t SET v = v + 1 WHERE id = ?", (100 + i % 50,))
                .await
                .unwrap();
            max = max.max(t0.elapsed());
            tokio::time::sleep(Duration::from_millis(15)).await;
        }
        max
    });
    let stats = Arc::new(Stats::default());
    let options = RunOptions {
        execute: true,
        cutover_lock_timeout: Duration::from_millis(200),
        cutover_attempts: 40,
        ..RunOptions::for_engine(Engine::MySql)
    };
    let outcome = migrate_with(
        spec(&dsn, "t", "MODIFY v bigint NOT NULL", &[], options),
        stats.clone(),
    )
    .await
    .expect("migration succeeds once the transaction ends");
    assert!(matches!(outcome, Outcome::Migrated(..)));
    release.await.unwrap();
    let max_wait = writes.await.unwrap();
    eprintln!("longest write during the run: {max_wait:?}");
    assert!(
        stats.cutover_retries.load(Relaxed) > 0,
        "the long transaction made at least one attempt time out"
    );
    // Exactly the source's rows: every write landed.
    let (n, sum): (i64, i64) = c
        .query_first("SELECT COUNT(*), CAST(SUM(v) AS SIGNED) FROM t")
        .await
        .unwrap()
        .unwrap();
    assert_eq!((n, sum), (2000, (1..=2000i64).sum::<i64>() + 300));
    db.stop().await;
}

async fn bad_input_is_refused_and_ddl_on_the_source_aborts_the_run(server: MyServer) {
    let (db, dsn, mut c) = my_sandbox_on(server.clone()).await;
    c.query_drop(
        format!("CREATE TABLE t (id int PRIMARY KEY, v int NOT NULL);
         INSERT INTO t SELECT seq, seq FROM {};
         CREATE TABLE parent (id int PRIMARY KEY);
         CREATE TABLE child (id int PRIMARY KEY, parent_id int, FOREIGN KEY (parent_id) REFERENCES parent (id) ON DELETE CASCADE);
", seq(20000)),
    )
    .await
    .unwrap();
    let before = my_tables(&mut c).await;
    let mut bad = vec![("missing", "does not exist")];
    // MySQL 9 logs what a CASCADE key does; InnoDB's own keys (MariaDB) do not.
    if server == MyServer::MariaDb {
        bad.push(("child", "(ON DELETE CASCADE"));
    }
    for (table, needle) in bad {
        let err = migrate(spec(
            &dsn,
            table,
            "ADD COLUMN x int",
            &[],
            execute_on(Engine::MySql),
        ))
        .await
        .expect_err("refused");
        assert_eq!(exit_code(&err), 2, "{err:#}");
        assert!(format!("{err:#}").contains(needle), "{err:#}");
    }
    assert_eq!(my_tables(&mut c).await, before, "nothing was created");

    // DDL on the source while the copy runs: the stream sees it and the run stops.
    let options = RunOptions {
        execute: true,
        initial_chunk_rows: 100,
        max_rows_per_sec: Some(2_000),
        ..RunOptions::for_engine(Engine::MySql)
    };
    let run = tokio::spawn(migrate(spec(
        &dsn,
        "t",
        "MODIFY v bigint NOT NULL",
        &[],
        options,
    )));
    tokio::time::sleep(Duration::from_millis(1500)).await;
    c.query_drop("ALTER TABLE t ADD COLUMN sneaky int")
        .await
        .unwrap();
    let err = run.await.unwrap().expect_err("the run aborts");
    assert!(
        format!("{err:#}").contains("during the migration"),
        "{err:#}"
    );
    assert_eq!(
        my_tables(&mut c).await,
        before,
        "the run removed what it created"
    );
    let n: i64 = c
        .query_first("SELECT COUNT(*) FROM t")
        .await
        .unwrap()
        .unwrap();
    assert_eq!(n, 20_000, "the original is untouched");
    db.stop().await;

    // A server without a binary log is refused with the fix.
    let db = MySqlSandbox::start_opts(MyOptions {
        server: server.clone(),
        log_bin: false,
        ..MyOptions::default()
    })
    .await
    .expect("start MariaDB sandbox");
    let dsn = db.create_database("app").await.unwrap();
    let mut c = db.connect("app").await.unwrap();
    c.query_drop("CREATE TABLE t (id int PRIMARY KEY)")
        .await
        .unwrap();
    let err = migrate(spec(
        &dsn,
        "t",
        "ADD COLUMN x int",
        &[],
        execute_on(Engine::MySql),
    ))
    .await
    .expect_err("refused");
    assert_eq!(exit_code(&err), 2);
    assert!(format!("{err:#}").contains("binary log is off"), "{err:#}");
    assert_eq!(my_tables(&mut c).await, vec!["t"]);
    db.stop().await;
}

on_mysql_servers!(
    type_changes_renames_and_an_enum_transform_give_exact_rows,
    verification_finds_every_kind_of_difference_and_the_migration_repairs_it,
    secondary_indexes_are_built_after_the_copy_exactly_as_the_alter_defines_them,
    cutover_waits_out_a_long_transaction_with_bounded_retries,
    bad_input_is_refused_and_ddl_on_the_source_aborts_the_run,
);
