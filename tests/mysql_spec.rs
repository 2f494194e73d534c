//! A migration spec on MariaDB and MySQL, as on PostgreSQL: `[[check]]` data
//! checks (a refusing one stops the run with its keys, nothing created; a
//! reporting one shows its count), shadow statements (an index the new table
//! keeps), the completed-run record (a rerun of a completed spec is a no-op that
//! says so), and `prepare` statements (listed by the dry run, run first by
//! `--execute`, a failing one named). A view over the
//! table reads the new one afterwards, with its definer and SQL SECURITY.

mod common;

use common::*;
use mysql_async::prelude::Queryable;
use wraith::sandbox::MyServer;

const SPEC: &str = r#"
table = "orders"
alter = "MODIFY ref bigint"
shadow = ["CREATE INDEX by_status ON {shadow} (status)"]

[[check]]
name = "negative ref"
rows = "ref < 0"
action = "refuse"
note = "UPDATE orders SET ref = -ref WHERE ref < 0"

[[check]]
name = "empty status"
rows = "status = ''"
action = "report"
"#;

async fn a_spec_checks_builds_and_is_recorded(server: MyServer) {
    let (db, dsn, mut c) = my_sandbox_on(server).await;
    c.query_drop(format!(
        "CREATE TABLE orders (id int PRIMARY KEY, status varchar(20) NOT NULL, ref int);
         INSERT INTO orders SELECT seq, IF(seq % 10 = 0, '', 'open'), IF(seq IN (7, 3), -seq, seq) FROM {};
         CREATE DEFINER = 'root'@'127.0.0.1' SQL SECURITY DEFINER VIEW open_orders AS
           SELECT id, ref FROM orders WHERE status = 'open';",
        seq(2000)
    ))
    .await
    .unwrap();
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("spec.toml");
    std::fs::write(&path, SPEC).unwrap();
    let path = path.to_str().unwrap().to_string();
    let run = |execute: bool| {
        let mut args = vec!["migrate", "--dsn", &dsn, "--spec", &path];
        if execute {
            args.push("--execute");
        }
        wraith(&args)
    };

    // Dirt a refusing check names: exit 2 with its keys, nothing created.
    let out = run(true);
    assert_refused(
        &out,
        "refusing check",
        &["negative ref: 2 rows", "keys 3, 7", "nothing was changed"],
    );
    assert_eq!(my_tables(&mut c).await, vec!["open_orders", "orders"]);

    c.query_drop("UPDATE orders SET ref = -ref WHERE ref < 0")
        .await
        .unwrap();
    // The dry run reports the other check and lists the shadow statement.
    let out = run(false);
    let text = show(&out);
    assert_eq!(out.status.code(), Some(0), "{text}");
    assert!(text.contains("empty status: 200 rows"), "{text}");
    assert!(text.contains("CREATE INDEX by_status ON"), "{text}");

    let out = run(true);
    assert_eq!(out.status.code(), Some(0), "{}", show(&out));
    let (column, indexed): (String, Option<String>) = c
        .query_first(
            "SELECT (SELECT COLUMN_TYPE FROM information_schema.COLUMNS WHERE TABLE_SCHEMA = 'app' \
             AND TABLE_NAME = 'orders' AND COLUMN_NAME = 'ref'), \
             (SELECT INDEX_NAME FROM information_schema.STATISTICS WHERE TABLE_SCHEMA = 'app' \
             AND TABLE_NAME = 'orders' AND INDEX_NAME = 'by_status' LIMIT 1)",
        )
        .await
        .unwrap()
        .unwrap();
    assert!(column.starts_with("bigint"), "{column}");
    assert_eq!(
        indexed.as_deref(),
        Some("by_status"),
        "the shadow's index is kept"
    );

    // A rerun of the completed spec does nothing and says so, dry or not.
    for execute in [false, true] {
        let out = run(execute);
        let text = show(&out);
        assert_eq!(out.status.code(), Some(0), "{text}");
        assert!(text.contains("already applied on "), "{text}");
    }
    assert_eq!(
        my_tables(&mut c).await,
        vec!["open_orders", "orders", "orders_wraith_old"]
    );
    // Once the table changes, the record no longer holds: the spec applies again.
    c.query_drop("ALTER TABLE orders ADD COLUMN note text")
        .await
        .unwrap();
    let out = run(false);
    assert!(!show(&out).contains("already applied"), "{}", show(&out));

    // prepare statements: listed by the dry run (which runs no DDL here), run
    // first by --execute.
    let prepared = "table = \"orders\"\nalter = \"MODIFY note mediumtext\"\n\
                    prepare = [\"CREATE TABLE IF NOT EXISTS notes_seen (id int PRIMARY KEY)\"]\n";
    std::fs::write(&path, prepared).unwrap();
    c.query_drop("DROP TABLE orders_wraith_old").await.unwrap();
    let out = run(false);
    let text = show(&out);
    assert_eq!(out.status.code(), Some(0), "{text}");
    assert!(
        text.contains("CREATE TABLE IF NOT EXISTS notes_seen (id int PRIMARY KEY) -- the spec's prepare: run first by --execute"),
        "{text}"
    );
    let before = vec!["open_orders", "orders"];
    assert_eq!(my_tables(&mut c).await, before, "the dry run ran nothing");
    let out = run(true);
    assert_eq!(out.status.code(), Some(0), "{}", show(&out));
    let note: String = c
        .query_first(
            "SELECT COLUMN_TYPE FROM information_schema.COLUMNS WHERE TABLE_SCHEMA = 'app' \
             AND TABLE_NAME = 'orders' AND COLUMN_NAME = 'note'",
        )
        .await
        .unwrap()
        .unwrap();
    assert_eq!(note, "mediumtext");
    let after = ["notes_seen", "open_orders", "orders", "orders_wraith_old"];
    c.query_drop("DROP TABLE orders_wraith_old").await.unwrap();
    let after = &after[..3];
    assert_eq!(my_tables(&mut c).await, after);
    // A failing statement: exit 2 naming it; those before it stay, nothing else is created.
    let failing = "table = \"orders\"\nalter = \"MODIFY note longtext\"\n\
                   prepare = [\"CREATE TABLE IF NOT EXISTS kinds (id int PRIMARY KEY)\", \
                              \"CREATE TABLE notes_seen (id int)\"]\n";
    std::fs::write(&path, failing).unwrap();
    assert_refused(
        &run(true),
        "failing prepare",
        &[
            "the spec's prepare statement failed",
            "statement: CREATE TABLE notes_seen (id int)",
            "the statements before it ran and stay",
        ],
    );
    let mut kept = after.to_vec();
    kept.insert(0, "kinds");
    assert_eq!(my_tables(&mut c).await, kept);
    db.stop().await;
}

on_mysql_servers!(a_spec_checks_builds_and_is_recorded);
