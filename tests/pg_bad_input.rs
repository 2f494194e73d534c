//! Bad input through the `wraith` binary: a clear error, exit code 2, nothing created.
//!
//! Every case runs `wraith migrate ... --execute` (a few also as a dry run) or
//! `wraith cleanup` as a child process against a throwaway PostgreSQL server and
//! proves three things: the exit code is 2, stderr names the problem (and, where
//! there is one, the fix), and no replication slot, publication or shadow table of
//! wraith's exists afterwards, with the user's table and the user's own objects
//! untouched. Covered: a missing table, no primary key, `wal_level` not logical, no
//! free replication slot, missing privileges, an ALTER PostgreSQL rejects, bad
//! transforms, partitioned and inheritance tables, leftovers of an earlier run, a
//! table referenced by a foreign key, a dry run that only prints the plan, and
//! `wraith cleanup` removing wraith's leftovers for one table and nothing else.

mod common;

use common::*;
use tokio_postgres::Client;
use wraith::pg::names::Names;
use wraith::sandbox::PgOptions;

/// What a `wraith` run printed and how it ended.
struct Out {
    code: Option<i32>,
    stdout: String,
    stderr: String,
}

impl Out {
    fn show(&self) -> String {
        format!(
            "exit code {:?}\n--- stdout ---\n{}\n--- stderr ---\n{}",
            self.code, self.stdout, self.stderr
        )
    }
}

/// Runs the binary off the async runtime so the test's own connection keeps being served.
async fn cli(args: &[&str]) -> Out {
    let args: Vec<String> = args.iter().map(|s| s.to_string()).collect();
    let out = tokio::task::spawn_blocking(move || {
        let refs: Vec<&str> = args.iter().map(String::as_str).collect();
        wraith(&refs)
    })
    .await
    .expect("the wraith run did not panic");
    Out {
        code: out.status.code(),
        stdout: String::from_utf8_lossy(&out.stdout).into_owned(),
        stderr: String::from_utf8_lossy(&out.stderr).into_owned(),
    }
}

/// `wraith migrate --dsn <dsn> --table <table> --alter <alter> <extra...>`.
async fn migrate_cli(dsn: &str, table: &str, alter: &str, extra: &[&str]) -> Out {
    let mut args = vec!["migrate", "--dsn", dsn, "--table", table, "--alter", alter];
    args.extend_from_slice(extra);
    cli(&args).await
}

/// The run was refused as bad input: exit code 2, and every `needle` is in stderr.
fn assert_bad_input(out: &Out, case: &str, needles: &[&str]) {
    assert_eq!(
        out.code,
        Some(2),
        "{case}: expected exit code 2 (bad input)\n{}",
        out.show()
    );
    for n in needles {
        assert!(
            out.stderr.contains(n),
            "{case}: stderr should mention {n:?}\n{}",
            out.show()
        );
    }
}

/// Nothing of wraith's exists: no slot, no publication, no `_*_new` table.
async fn assert_nothing_left(c: &Client, case: &str, out: &Out) {
    let left = leftovers(c).await;
    assert!(
        left.is_empty(),
        "{case}: objects left behind: {left:?}\n{}",
        out.show()
    );
}

/// Column names and types of a table, in order: proves an ALTER did not reach it.
async fn shape_of(c: &Client, table: &str) -> String {
    c.query_one(
        "SELECT string_agg(attname || ' ' || format_type(atttypid, atttypmod), ', ' ORDER BY attnum) \
         FROM pg_attribute WHERE attrelid = $1::text::regclass AND attnum > 0 AND NOT attisdropped",
        &[&table],
    )
    .await
    .unwrap_or_else(|e| panic!("shape of {table}: {e}"))
    .get(0)
}

async fn exists(c: &Client, sql: &str) -> bool {
    scalar_bool(c, &format!("SELECT EXISTS ({sql})")).await
}

async fn slot_exists(c: &Client, name: &str) -> bool {
    exists(
        c,
        &format!("SELECT 1 FROM pg_replication_slots WHERE slot_name = '{name}'"),
    )
    .await
}

async fn publication_exists(c: &Client, name: &str) -> bool {
    exists(
        c,
        &format!("SELECT 1 FROM pg_publication WHERE pubname = '{name}'"),
    )
    .await
}

async fn table_exists(c: &Client, name: &str) -> bool {
    scalar_bool(c, &format!("SELECT to_regclass('{name}') IS NOT NULL")).await
}

const ALTER: &str = "ALTER COLUMN amount TYPE bigint";

/// A well-formed table `name (id pk, amount int, note text)` with a few rows.
async fn create_t(c: &Client, name: &str) {
    c.batch_execute(&format!(
        "CREATE TABLE {name} (id bigint PRIMARY KEY, amount int NOT NULL, note text);
         INSERT INTO {name} SELECT g, g * 10, 'n' || g FROM generate_series(1, 50) g;"
    ))
    .await
    .unwrap_or_else(|e| panic!("create {name}: {e}"));
}

/// Tables wraith cannot rewrite: each refused with exit 2 and a message naming why.
async fn unsupported_tables_are_refused_and_nothing_is_created(opts: PgOptions) {
    let db = db_with(opts).await;
    let c = &db.client;
    c.batch_execute(
        "CREATE TABLE nopk (id int NOT NULL, v text);
         INSERT INTO nopk SELECT g, 'v' FROM generate_series(1, 10) g;
         CREATE TABLE uniq_only (id int NOT NULL, v text);
         CREATE UNIQUE INDEX uniq_only_id ON uniq_only (id);
         CREATE TABLE ri (id int NOT NULL, v text);
         CREATE UNIQUE INDEX ri_id ON ri (id);
         ALTER TABLE ri REPLICA IDENTITY USING INDEX ri_id;
         CREATE TABLE parted (id int, at date, PRIMARY KEY (id, at)) PARTITION BY RANGE (at);
         CREATE TABLE parted_2024 PARTITION OF parted FOR VALUES FROM ('2024-01-01') TO ('2025-01-01');
         CREATE TABLE parent (id int PRIMARY KEY, v text);
         CREATE TABLE child (extra text, PRIMARY KEY (id)) INHERITS (parent);
         CREATE TABLE orders (id int PRIMARY KEY, total int);
         CREATE TABLE lines (id int PRIMARY KEY, order_id int REFERENCES orders (id), qty int);
         INSERT INTO orders VALUES (1, 10), (2, 20);
         INSERT INTO lines VALUES (1, 1, 3), (2, 2, 4);",
    )
    .await
    .expect("set up tables");
    let dsn = db.dsn.as_str();

    // 1. A table that does not exist.
    let out = migrate_cli(
        dsn,
        "missing_table",
        "ALTER COLUMN id TYPE bigint",
        &["--execute"],
    )
    .await;
    assert_bad_input(
        &out,
        "missing table",
        &["public.missing_table does not exist", "--table"],
    );
    assert_nothing_left(c, "missing table", &out).await;
    assert!(!table_exists(c, "missing_table").await, "{}", out.show());

    // 2. No primary key; a unique index alone is not a replica identity either.
    for table in ["nopk", "uniq_only"] {
        let before = (shape_of(c, table).await, table_fingerprint(c, table).await);
        let out = migrate_cli(
            dsn,
            table,
            "ALTER COLUMN v TYPE varchar(20)",
            &["--execute"],
        )
        .await;
        assert_bad_input(
            &out,
            table,
            &["has no primary key", "REPLICA IDENTITY USING INDEX"],
        );
        assert_nothing_left(c, table, &out).await;
        assert_eq!(
            (shape_of(c, table).await, table_fingerprint(c, table).await),
            before,
            "{table} changed\n{}",
            out.show()
        );
    }
    // ...while REPLICA IDENTITY USING INDEX is accepted (dry run: the check passes, nothing is made).
    let out = migrate_cli(dsn, "ri", "ALTER COLUMN v TYPE varchar(20)", &[]).await;
    assert_eq!(
        out.code,
        Some(0),
        "replica identity index as key\n{}",
        out.show()
    );
    assert_nothing_left(c, "replica identity index", &out).await;

    // 8. Partitioned tables, partitions and both ends of an inheritance hierarchy.
    let out = migrate_cli(dsn, "parted", "ALTER COLUMN id TYPE bigint", &["--execute"]).await;
    assert_bad_input(
        &out,
        "partitioned",
        &["partitioned table", "not rewrite partitioned tables yet"],
    );
    assert_nothing_left(c, "partitioned", &out).await;
    for table in ["parted_2024", "parent", "child"] {
        let before = shape_of(c, table).await;
        let out = migrate_cli(dsn, table, "ALTER COLUMN id TYPE bigint", &["--execute"]).await;
        assert_bad_input(
            &out,
            table,
            &["inheritance", "not rewrite inheritance hierarchies yet"],
        );
        assert_nothing_left(c, table, &out).await;
        assert_eq!(
            shape_of(c, table).await,
            before,
            "{table} changed\n{}",
            out.show()
        );
    }

    // 10. Dependents wraith cannot move yet: a rule, and a view over a column the ALTER drops.
    c.batch_execute(
        "CREATE RULE orders_audit AS ON INSERT TO orders DO ALSO NOTHING;
         CREATE VIEW order_totals AS SELECT id, total FROM orders;
         CREATE FUNCTION noop_evt() RETURNS event_trigger LANGUAGE plpgsql AS $$ BEGIN END $$;
         CREATE EVENT TRIGGER audit_ddl ON ddl_command_end EXECUTE FUNCTION noop_evt();
         CREATE TABLE holder (o orders);",
    )
    .await
    .unwrap();
    let before = (
        shape_of(c, "orders").await,
        table_fingerprint(c, "orders").await,
    );
    let out = migrate_cli(dsn, "orders", "DROP COLUMN total", &["--execute"]).await;
    assert_bad_input(
        &out,
        "unmovable dependents",
        &[
            "dependents wraith cannot carry over",
            "rule orders_audit",
            "view order_totals (uses column total)",
            "event trigger audit_ddl",
            "column holder.o of the table's row type",
        ],
    );
    assert_nothing_left(c, "unmovable dependents", &out).await;
    assert_eq!(
        (
            shape_of(c, "orders").await,
            table_fingerprint(c, "orders").await
        ),
        before,
        "orders changed\n{}",
        out.show()
    );
    c.batch_execute(
        "DROP RULE orders_audit ON orders; DROP VIEW order_totals; DROP EVENT TRIGGER audit_ddl; DROP TABLE holder",
    )
        .await
        .unwrap();
    // The referencing side is fine: its own foreign key is carried to the shadow.
    let out = migrate_cli(dsn, "lines", "ALTER COLUMN qty TYPE bigint", &[]).await;
    assert_eq!(
        out.code,
        Some(0),
        "a table with an outgoing foreign key\n{}",
        out.show()
    );
    assert_nothing_left(c, "outgoing foreign key", &out).await;
}

/// ALTERs and transforms that cannot work are found in preflight, before anything exists;
/// a valid dry run prints the plan and creates nothing either.
async fn bad_alter_and_transforms_are_refused_and_dry_run_creates_nothing(opts: PgOptions) {
    let db = db_with(opts).await;
    let c = &db.client;
    create_t(c, "t").await;
    let dsn = db.dsn.as_str();
    let before = (shape_of(c, "t").await, table_fingerprint(c, "t").await);

    // 6. An ALTER PostgreSQL rejects on the shadow, with and without --execute.
    for extra in [&["--execute"][..], &[][..]] {
        let case = format!("rejected ALTER {extra:?}");
        let out = migrate_cli(dsn, "t", "ALTER COLUMN nope TYPE int", extra).await;
        assert_bad_input(&out, &case, &["rejected", "nope"]);
        assert_nothing_left(c, &case, &out).await;
    }

    // 7. A transform whose expression names a column the table does not have.
    let out = migrate_cli(
        dsn,
        "t",
        ALTER,
        &["--transform", "amount=missing_col + 1", "--execute"],
    )
    .await;
    assert_bad_input(&out, "transform over a missing column", &["missing_col"]);
    assert_nothing_left(c, "transform over a missing column", &out).await;

    // ...and a transform filling a column the new table does not have.
    let out = migrate_cli(
        dsn,
        "t",
        "DROP COLUMN note",
        &["--transform", "note=upper(note)", "--execute"],
    )
    .await;
    assert_bad_input(
        &out,
        "transform into a dropped column",
        &["\"note\"", "which the new table does not have"],
    );
    assert_nothing_left(c, "transform into a dropped column", &out).await;

    let out = migrate_cli(
        dsn,
        "t",
        ALTER,
        &["--transform", "nonexistent=1", "--execute"],
    )
    .await;
    assert_bad_input(
        &out,
        "transform into an unknown column",
        &["nonexistent", "which the new table does not have"],
    );
    assert_nothing_left(c, "transform into an unknown column", &out).await;

    assert_eq!(
        (shape_of(c, "t").await, table_fingerprint(c, "t").await),
        before,
        "t changed by refused runs"
    );

    // 11. A dry run of a valid ALTER: exit 0, the plan on stdout, nothing created or changed.
    let out = migrate_cli(dsn, "t", ALTER, &["--transform", "note=upper(note)"]).await;
    assert_eq!(out.code, Some(0), "dry run\n{}", out.show());
    for needle in [
        "Plan for public.t",
        "Column mapping",
        "amount",
        "--transform",
        "Dry run",
    ] {
        assert!(
            out.stdout.contains(needle),
            "dry run output lacks {needle:?}\n{}",
            out.show()
        );
    }
    assert_nothing_left(c, "dry run", &out).await;
    assert_eq!(
        (shape_of(c, "t").await, table_fingerprint(c, "t").await),
        before,
        "t changed by the dry run\n{}",
        out.show()
    );
    assert!(
        before.0.contains("amount integer"),
        "the dry run must not change the column type: {}",
        before.0
    );
}

/// 3. wal_level = replica: refused, and the message says how to fix it.
#[tokio::test]
async fn wal_level_not_logical_is_refused_with_the_fix() {
    let db = db_with(PgOptions {
        extra_conf: vec![("wal_level".into(), "replica".into())],
        ..PgOptions::default()
    })
    .await;
    let c = &db.client;
    assert_eq!(
        c.query_one("SHOW wal_level", &[])
            .await
            .unwrap()
            .get::<_, String>(0),
        "replica",
        "the sandbox must run with wal_level = replica for this test"
    );
    create_t(c, "t").await;
    let before = (shape_of(c, "t").await, table_fingerprint(c, "t").await);

    let out = migrate_cli(&db.dsn, "t", ALTER, &["--execute"]).await;
    assert_bad_input(
        &out,
        "wal_level",
        &["wal_level is 'replica'", "wal_level = logical", "restart"],
    );
    assert_nothing_left(c, "wal_level", &out).await;
    assert_eq!(
        (shape_of(c, "t").await, table_fingerprint(c, "t").await),
        before,
        "{}",
        out.show()
    );
}

/// 4. Every replication slot taken by someone else: refused, and the other slot is left alone.
#[tokio::test]
async fn no_free_replication_slot_is_refused_and_others_slot_kept() {
    let db = db_with(PgOptions {
        extra_conf: vec![("max_replication_slots".into(), "1".into())],
        ..PgOptions::default()
    })
    .await;
    let c = &db.client;
    create_t(c, "t").await;
    c.batch_execute("SELECT pg_create_logical_replication_slot('other', 'pgoutput')")
        .await
        .expect("take the only slot");
    let before = (shape_of(c, "t").await, table_fingerprint(c, "t").await);

    let out = migrate_cli(&db.dsn, "t", ALTER, &["--execute"]).await;
    assert_bad_input(
        &out,
        "no free slot",
        &["no free replication slot", "max_replication_slots"],
    );
    assert!(
        slot_exists(c, "other").await,
        "the unrelated slot was dropped\n{}",
        out.show()
    );
    let left = leftovers(c).await;
    assert_eq!(
        left,
        vec!["slot other".to_string()],
        "only the unrelated slot may exist\n{}",
        out.show()
    );
    assert_eq!(
        (shape_of(c, "t").await, table_fingerprint(c, "t").await),
        before,
        "{}",
        out.show()
    );
}

/// 5. A role without REPLICATION that does not own the table: refused, naming what is missing.
async fn missing_privileges_are_refused_and_named(opts: PgOptions) {
    let db = db_with(opts).await;
    let c = &db.client;
    create_t(c, "t").await;
    c.batch_execute(
        "CREATE ROLE nopriv LOGIN;
         CREATE ROLE repl LOGIN REPLICATION;
         GRANT SELECT ON t TO nopriv, repl;",
    )
    .await
    .expect("create roles");
    let before = (shape_of(c, "t").await, table_fingerprint(c, "t").await);
    let port = db.pg.port();

    let dsn = format!("postgres://nopriv@127.0.0.1:{port}/app");
    let out = migrate_cli(&dsn, "t", ALTER, &["--execute"]).await;
    assert_bad_input(
        &out,
        "no REPLICATION, not the owner",
        &[
            "role nopriv lacks privileges",
            "REPLICATION",
            "ALTER ROLE nopriv REPLICATION",
            "ownership",
        ],
    );
    assert_nothing_left(c, "nopriv", &out).await;

    // With REPLICATION but still not the owner: only ownership is missing.
    let dsn = format!("postgres://repl@127.0.0.1:{port}/app");
    let out = migrate_cli(&dsn, "t", ALTER, &["--execute"]).await;
    assert_bad_input(
        &out,
        "REPLICATION but not the owner",
        &["role repl lacks privileges", "ownership of the table"],
    );
    assert!(
        !out.stderr.contains("ALTER ROLE repl REPLICATION"),
        "repl has REPLICATION already\n{}",
        out.show()
    );
    assert_nothing_left(c, "repl", &out).await;
    assert_eq!(
        (shape_of(c, "t").await, table_fingerprint(c, "t").await),
        before
    );
}

/// 9. What is in wraith's way. A `_t_new` without wraith's marker, an old table, or
/// wraith's slot held by a live session: refused, kept. Leftovers of an attempt that
/// died (inactive slot, publication): a dry run lists and keeps them, a real run
/// removes them and starts over.
#[tokio::test]
async fn leftovers_are_refused_or_removed_but_never_someone_elses() {
    let db = db().await;
    let c = &db.client;
    create_t(c, "t").await;
    let names = Names::new("public", "t").unwrap();
    let dsn = db.dsn.as_str();
    let before = (shape_of(c, "t").await, table_fingerprint(c, "t").await);

    // A table with the shadow's name but without the marker: the user's, maybe.
    c.batch_execute(
        "CREATE TABLE _t_new (LIKE t); INSERT INTO _t_new SELECT * FROM t WHERE id <= 5;",
    )
    .await
    .unwrap();
    let out = migrate_cli(dsn, "t", ALTER, &["--execute"]).await;
    assert_bad_input(
        &out,
        "unmarked _t_new",
        &["_t_new", "is not a wraith shadow", "rename or drop"],
    );
    assert_eq!(
        leftovers(c).await,
        vec!["table _t_new".to_string()],
        "{}",
        out.show()
    );
    assert_eq!(
        scalar_i64(c, "SELECT count(*) FROM _t_new").await,
        5,
        "_t_new was touched\n{}",
        out.show()
    );
    c.batch_execute("DROP TABLE _t_new").await.unwrap();

    // The old table of an earlier migration is in the way of the rename.
    c.batch_execute("CREATE TABLE _t_old (LIKE t)")
        .await
        .unwrap();
    let out = migrate_cli(dsn, "t", ALTER, &["--execute"]).await;
    assert_bad_input(&out, "leftover old table", &["_t_old", "already exists"]);
    assert_nothing_left(c, "leftover old table", &out).await;
    assert!(
        table_exists(c, "_t_old").await,
        "_t_old dropped by migrate\n{}",
        out.show()
    );
    c.batch_execute("DROP TABLE _t_old").await.unwrap();

    // wraith's slot, held by a live session: never touched.
    let holder = db.pg.connect("app").await.unwrap();
    holder
        .execute(
            "SELECT pg_create_logical_replication_slot($1, 'pgoutput', true)",
            &[&names.slot],
        )
        .await
        .unwrap();
    let out = migrate_cli(dsn, "t", ALTER, &["--execute"]).await;
    assert_bad_input(&out, "slot in use", &[&names.slot, "still in use"]);
    assert!(slot_exists(c, &names.slot).await, "{}", out.show());
    drop(holder);
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(30);
    while slot_exists(c, &names.slot).await {
        assert!(
            std::time::Instant::now() < deadline,
            "the temporary slot stayed"
        );
        tokio::time::sleep(std::time::Duration::from_millis(50)).await;
    }

    // A dead attempt's slot and publication.
    // Separate statements: a slot cannot be created in a transaction that has written.
    c.batch_execute(&format!(
        "CREATE PUBLICATION {} FOR TABLE t",
        names.publication
    ))
    .await
    .unwrap();
    c.execute(
        "SELECT pg_create_logical_replication_slot($1, 'pgoutput')",
        &[&names.slot],
    )
    .await
    .unwrap();
    let out = migrate_cli(dsn, "t", ALTER, &[]).await;
    assert_eq!(out.code, Some(0), "{}", out.show());
    assert!(
        out.stdout
            .contains("an earlier attempt that did not finish left")
            && out.stdout.contains(&names.slot),
        "{}",
        out.show()
    );
    assert!(slot_exists(c, &names.slot).await, "{}", out.show());
    assert!(publication_exists(c, &names.publication).await);
    assert_eq!(
        (shape_of(c, "t").await, table_fingerprint(c, "t").await),
        before
    );

    let out = migrate_cli(dsn, "t", ALTER, &["--execute"]).await;
    assert_eq!(out.code, Some(0), "{}", out.show());
    assert!(
        out.stderr
            .contains("removed what an earlier attempt left behind"),
        "{}",
        out.show()
    );
    assert_nothing_left(c, "after the run that removed them", &out).await;
    assert_ne!(shape_of(c, "t").await, before.0, "the migration ran");
}

/// 12. `wraith cleanup` removes wraith's slot, publication and marked shadow for the
/// table, and nothing else: not another table's objects, not an unmarked `_t_new`.
#[tokio::test]
async fn cleanup_removes_only_wraiths_leftovers_for_the_table() {
    let db = db().await;
    let c = &db.client;
    create_t(c, "t").await;
    create_t(c, "u").await;
    let t = Names::new("public", "t").unwrap();
    let u = Names::new("public", "u").unwrap();
    let dsn = db.dsn.as_str();
    let before = (shape_of(c, "t").await, table_fingerprint(c, "t").await);

    // The slot first, on its own: it cannot be created in a transaction that has written.
    c.execute(
        "SELECT pg_create_logical_replication_slot($1, 'pgoutput')",
        &[&t.slot],
    )
    .await
    .expect("create wraith's slot");
    c.batch_execute(&format!(
        "CREATE PUBLICATION {tp} FOR TABLE t;
         CREATE TABLE _t_new (LIKE t INCLUDING ALL);
         COMMENT ON TABLE _t_new IS 'wraith shadow of public.t';
         CREATE PUBLICATION {up} FOR TABLE u;
         CREATE PUBLICATION app_pub FOR TABLE t;
         CREATE TABLE _u_new (LIKE u);",
        tp = t.publication,
        up = u.publication,
    ))
    .await
    .expect("set up leftovers");
    assert_eq!(
        t.shadow_comment(),
        "wraith shadow of public.t",
        "the marker this test relies on"
    );

    let out = cli(&["cleanup", "--dsn", dsn, "--table", "t"]).await;
    assert_eq!(out.code, Some(0), "cleanup\n{}", out.show());
    for needle in [t.slot.as_str(), "_t_new"] {
        assert!(
            out.stdout.contains(needle),
            "cleanup should report {needle:?}\n{}",
            out.show()
        );
    }
    assert!(
        !slot_exists(c, &t.slot).await,
        "wraith's slot is still there\n{}",
        out.show()
    );
    assert!(
        !publication_exists(c, &t.publication).await,
        "wraith's publication is still there\n{}",
        out.show()
    );
    assert!(
        !table_exists(c, "_t_new").await,
        "wraith's shadow is still there\n{}",
        out.show()
    );
    // What is not wraith's for t stays.
    assert!(
        publication_exists(c, &u.publication).await,
        "u's publication was dropped\n{}",
        out.show()
    );
    assert!(
        publication_exists(c, "app_pub").await,
        "the user's publication was dropped\n{}",
        out.show()
    );
    assert!(
        table_exists(c, "_u_new").await,
        "_u_new was dropped\n{}",
        out.show()
    );
    assert!(
        table_exists(c, "u").await && table_exists(c, "t").await,
        "{}",
        out.show()
    );
    assert_eq!(
        (shape_of(c, "t").await, table_fingerprint(c, "t").await),
        before,
        "{}",
        out.show()
    );

    // A second cleanup finds nothing.
    let out = cli(&["cleanup", "--dsn", dsn, "--table", "t"]).await;
    assert_eq!(out.code, Some(0), "second cleanup\n{}", out.show());
    assert!(
        out.stdout.contains("Nothing to clean up"),
        "second cleanup\n{}",
        out.show()
    );

    // A `_t_new` without the marker is the user's: cleanup leaves it.
    c.batch_execute(
        "CREATE TABLE _t_new (LIKE t); INSERT INTO _t_new SELECT * FROM t WHERE id <= 3;",
    )
    .await
    .unwrap();
    let out = cli(&["cleanup", "--dsn", dsn, "--table", "t"]).await;
    assert_eq!(
        out.code,
        Some(0),
        "cleanup with an unmarked _t_new\n{}",
        out.show()
    );
    assert!(out.stdout.contains("Nothing to clean up"), "{}", out.show());
    assert_eq!(
        scalar_i64(c, "SELECT count(*) FROM _t_new").await,
        3,
        "unmarked _t_new was touched\n{}",
        out.show()
    );

    // Nor one whose comment only resembles the marker (another table's, or edited).
    c.batch_execute("COMMENT ON TABLE _t_new IS 'wraith shadow of public.t2'")
        .await
        .unwrap();
    let out = cli(&["cleanup", "--dsn", dsn, "--table", "t"]).await;
    assert_eq!(out.code, Some(0), "{}", out.show());
    assert!(
        table_exists(c, "_t_new").await,
        "_t_new with another table's marker was dropped\n{}",
        out.show()
    );
}

/// 5, as a user meets it: a fresh role with LOGIN and nothing else, on a table that
/// was never analyzed (so its size is unknown). Still bad input that names REPLICATION,
/// not a raw "permission denied" from looking at the table.
#[tokio::test]
async fn role_without_any_grant_gets_the_privilege_message() {
    let db = db().await;
    let c = &db.client;
    create_t(c, "t").await;
    c.batch_execute("CREATE ROLE nogrant LOGIN")
        .await
        .expect("create role");
    assert!(
        scalar_bool(
            c,
            "SELECT reltuples < 0 FROM pg_class WHERE oid = 't'::regclass"
        )
        .await,
        "precondition: t was never analyzed"
    );
    let before = (shape_of(c, "t").await, table_fingerprint(c, "t").await);

    let dsn = format!("postgres://nogrant@127.0.0.1:{}/app", db.pg.port());
    let out = migrate_cli(&dsn, "t", ALTER, &["--execute"]).await;
    assert_bad_input(
        &out,
        "fresh role, no grants",
        &[
            "role nogrant lacks privileges",
            "ALTER ROLE nogrant REPLICATION",
        ],
    );
    assert_nothing_left(c, "fresh role, no grants", &out).await;
    assert_eq!(
        (shape_of(c, "t").await, table_fingerprint(c, "t").await),
        before
    );
}

on_postgres_versions!(
    unsupported_tables_are_refused_and_nothing_is_created,
    bad_alter_and_transforms_are_refused_and_dry_run_creates_nothing,
    missing_privileges_are_refused_and_named,
);
