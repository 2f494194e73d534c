//! Unusual but legal tables, one test per class of defect, against real servers:
//! 1. every session reads all rows or fails (row-level security);
//! 2. nothing wraith creates changes what the application's statements do
//!    (tables the publication would break, UNLOGGED tables);
//! 3. the swap commits only over the definition the shadow was built from (DDL by
//!    another session during the run);
//! 4. every key comparison uses the key's own collation;
//! 5. stale versions in the shadow never conflict with newer ones on a unique key,
//!    and a new unique constraint that does not hold stops the run;
//! 6. EXCLUDE constraints;
//! 7. a replica identity index other than the primary key is the key;
//! 8. passwords are never printed, whatever their spelling;
//! 9. diagnostics: a prepared transaction blocking the slot, a second role, quoted names.

mod common;

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering::Relaxed};
use std::time::Duration;

use common::*;
use tokio_postgres::Client;
use wraith::Engine;
use wraith::engine::faults::Point;
use wraith::engine::migration::Outcome;
use wraith::engine::{ApplyOn, Backend, Phase, Stats};
use wraith::error::exit_code;
use wraith::key::KeyRange;
use wraith::pg::PgBackend;
use wraith::sandbox::MyServer;

fn key(parts: &[&str]) -> Vec<String> {
    parts.iter().map(|p| p.to_string()).collect()
}

/// `wraith migrate` through the binary; stdout, stderr and the exit code.
async fn migrate_cli(dsn: &str, table: &str, alter: &str, extra: &[&str]) -> std::process::Output {
    wraith_async(migrate_args(dsn, table, alter, extra)).await
}

async fn count(c: &Client, table: &str) -> i64 {
    scalar_i64(c, &format!("SELECT count(*) FROM {table}")).await
}

/// A role that owns `t`-like tables and has exactly the documented privileges.
async fn migrating_role(db: &Db, role: &str) -> String {
    db.client
        .batch_execute(&format!(
            "CREATE ROLE {role} LOGIN REPLICATION; GRANT CREATE ON DATABASE app TO {role}; \
             GRANT CREATE ON SCHEMA public TO {role};"
        ))
        .await
        .unwrap();
    db.dsn
        .replace("postgres://postgres@", &format!("postgres://{role}@"))
}

// --- 1. Row-level security --------------------------------------------------

/// A table owner under FORCE ROW LEVEL SECURITY sees half the rows: the run is
/// refused before anything exists (it used to swap in half the table). With
/// BYPASSRLS every row arrives. Policies that arrive after preflight make the
/// run fail, never swap a subset.
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn pg_row_level_security_never_hides_rows() {
    let db = db().await;
    let mig = migrating_role(&db, "mig").await;
    db.client
        .batch_execute(
            "CREATE TABLE t (id int PRIMARY KEY, v int NOT NULL);
             INSERT INTO t SELECT g, g FROM generate_series(1, 2000) g;
             ALTER TABLE t OWNER TO mig;
             CREATE POLICY even ON t USING (id % 2 = 0);
             ALTER TABLE t ENABLE ROW LEVEL SECURITY;
             ALTER TABLE t FORCE ROW LEVEL SECURITY;",
        )
        .await
        .unwrap();
    let alter = "ALTER COLUMN v TYPE bigint";
    for extra in [&[][..], &["--execute"][..]] {
        let out = migrate_cli(&mig, "t", alter, extra).await;
        assert_refused(&out, "forced policy", &["BYPASSRLS", "row-level security"]);
        assert!(leftovers(&db.client).await.is_empty());
    }
    assert_eq!(count(&db.client, "t").await, 2000);
    assert!(!scalar_bool(&db.client, "SELECT to_regclass('_t_old') IS NOT NULL").await);

    db.client
        .batch_execute("ALTER ROLE mig BYPASSRLS")
        .await
        .unwrap();
    let out = migrate_cli(&mig, "t", alter, &["--execute"]).await;
    assert_eq!(out.status.code(), Some(0), "{}", show(&out));
    assert_eq!(
        count(&db.client, "t").await,
        2000,
        "every row reached the new table"
    );
    assert!(
        scalar_bool(
            &db.client,
            "SELECT relforcerowsecurity AND relrowsecurity FROM pg_class WHERE relname = 't'"
        )
        .await,
        "the new table keeps its row-level security"
    );
    db.client
        .batch_execute("ALTER ROLE mig NOBYPASSRLS")
        .await
        .unwrap();

    // Policies created while the copy runs: every session of wraith fails instead
    // of reading the rows they allow.
    db.client
        .batch_execute(
            "CREATE TABLE t2 (id int PRIMARY KEY, v int NOT NULL);
             INSERT INTO t2 SELECT g, g FROM generate_series(1, 20000) g;
             ALTER TABLE t2 OWNER TO mig;",
        )
        .await
        .unwrap();
    let mut opts = execute();
    opts.max_rows_per_sec = Some(4000);
    let stats = Arc::new(Stats::default());
    let run = start_pg(spec(&mig, "t2", alter, &[], opts), stats.clone()).await;
    wait_for(
        || stats.rows_copied.load(Relaxed) >= 2000,
        "the copy to start",
    )
    .await;
    db.client
        .batch_execute(
            "CREATE POLICY even ON t2 USING (id % 2 = 0);
             ALTER TABLE t2 ENABLE ROW LEVEL SECURITY;
             ALTER TABLE t2 FORCE ROW LEVEL SECURITY;",
        )
        .await
        .unwrap();
    let err = run
        .await
        .unwrap()
        .expect_err("a policy mid-run must stop the run");
    assert_eq!(exit_code(&err), 1, "{err:#}");
    assert!(format!("{err:#}").contains("row-level security"), "{err:#}");
    assert!(leftovers(&db.client).await.is_empty());
    assert_eq!(count(&db.client, "t2").await, 20000);
    assert!(!scalar_bool(&db.client, "SELECT to_regclass('_t2_old') IS NOT NULL").await);
}

/// Starts a PostgreSQL migration in the background, with `stats` to watch it.
async fn start_pg(job: Job, stats: Arc<Stats>) -> tokio::task::JoinHandle<anyhow::Result<Outcome>> {
    tokio::spawn(migrate_with(job, stats))
}

/// The PostgreSQL backend of `job`, connected, for driving its steps by hand.
async fn pg_backend(job: Job) -> anyhow::Result<PgBackend> {
    PgBackend::connect(job.spec.clone(), job.backend_options()).await
}

async fn wait_for(ok: impl Fn() -> bool, what: &str) {
    for _ in 0..600 {
        if ok() {
            return;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    panic!("timed out waiting for {what}");
}

// --- 2. Tables the publication would break ----------------------------------

/// Tables whose changes PostgreSQL cannot identify (a DEFERRABLE primary key, a
/// replica identity index that is gone, FULL with only a deferrable key) or does
/// not log at all (UNLOGGED): the dry run refuses them with the fix, `--execute`
/// creates nothing, and the application's UPDATE and DELETE keep working.
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn pg_tables_the_publication_would_break_are_refused() {
    let db = db().await;
    db.client
        .batch_execute(
            "CREATE TABLE deferred_pk (id int PRIMARY KEY DEFERRABLE, v int NOT NULL);
             CREATE TABLE identity_gone (id int NOT NULL, v int NOT NULL);
             CREATE UNIQUE INDEX identity_gone_id ON identity_gone (id);
             ALTER TABLE identity_gone REPLICA IDENTITY USING INDEX identity_gone_id;
             DROP INDEX identity_gone_id;
             CREATE TABLE full_deferred (id int PRIMARY KEY DEFERRABLE, v int NOT NULL);
             ALTER TABLE full_deferred REPLICA IDENTITY FULL;
             CREATE UNLOGGED TABLE unlogged (id int PRIMARY KEY, v int NOT NULL);",
        )
        .await
        .unwrap();
    let cases: [(&str, &[&str]); 4] = [
        (
            "deferred_pk",
            &["DEFERRABLE", "REPLICA IDENTITY USING INDEX"],
        ),
        ("identity_gone", &["index is gone", "REPLICA IDENTITY"]),
        (
            "full_deferred",
            &["DEFERRABLE", "REPLICA IDENTITY USING INDEX"],
        ),
        ("unlogged", &["UNLOGGED", "SET LOGGED"]),
    ];
    for (table, needles) in cases {
        db.client
            .batch_execute(&format!(
                "INSERT INTO {table} SELECT g, g FROM generate_series(1, 100) g"
            ))
            .await
            .unwrap();
        for extra in [&[][..], &["--execute"][..]] {
            let out = migrate_cli(&db.dsn, table, "ALTER COLUMN v TYPE bigint", extra).await;
            assert_refused(&out, table, needles);
            assert!(leftovers(&db.client).await.is_empty(), "{table}");
        }
        // Nothing was published: the application's writes work as before.
        db.client
            .batch_execute(&format!(
                "UPDATE {table} SET v = v + 1 WHERE id < 10; DELETE FROM {table} WHERE id = 1"
            ))
            .await
            .unwrap_or_else(|e| panic!("{table}: the application's writes fail: {e}"));
    }
}

// --- 7. The replica identity index is the key --------------------------------

/// A table whose replica identity is a unique index other than the primary key
/// (the stream identifies deleted rows by it), and the fix the refusal above names
/// for a deferrable primary key: both migrate exactly, with deletes, key moves of
/// either key and inserts arriving while the cutover is held.
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn pg_replica_identity_index_is_the_key() {
    let db = db().await;
    db.client
        .batch_execute(
            "CREATE TABLE coded (id int PRIMARY KEY, code text NOT NULL, v int NOT NULL);
             CREATE UNIQUE INDEX coded_code ON coded (code);
             ALTER TABLE coded REPLICA IDENTITY USING INDEX coded_code;
             INSERT INTO coded SELECT g, 'c' || g, g FROM generate_series(1, 3000) g;
             CREATE TABLE deferred_pk (id int PRIMARY KEY DEFERRABLE, v int NOT NULL);
             CREATE UNIQUE INDEX deferred_pk_id ON deferred_pk (id);
             ALTER TABLE deferred_pk REPLICA IDENTITY USING INDEX deferred_pk_id;
             INSERT INTO deferred_pk SELECT g, g FROM generate_series(1, 3000) g;",
        )
        .await
        .unwrap();
    let writes = [
        (
            "coded",
            "DELETE FROM coded WHERE id % 10 = 0;
             UPDATE coded SET id = id + 100000 WHERE id % 10 = 1;
             UPDATE coded SET code = code || 'x', v = -v WHERE id % 10 = 2;
             INSERT INTO coded SELECT g, 'n' || g, g FROM generate_series(5001, 5100) g;",
        ),
        (
            "deferred_pk",
            "DELETE FROM deferred_pk WHERE id % 10 = 0;
             UPDATE deferred_pk SET id = id + 100000 WHERE id % 10 = 1;
             UPDATE deferred_pk SET v = -v WHERE id % 10 = 2;
             INSERT INTO deferred_pk SELECT g, g FROM generate_series(5001, 5100) g;",
        ),
    ];
    for (table, sql) in writes {
        let flag = tempfile::NamedTempFile::new().unwrap();
        let mut opts = execute();
        opts.postpone_flag_file = Some(flag.path().to_path_buf());
        let stats = Arc::new(Stats::default());
        let run = start_pg(
            spec(&db.dsn, table, "ALTER COLUMN v TYPE bigint", &[], opts),
            stats.clone(),
        )
        .await;
        wait_for(
            || stats.phase() == Phase::Postponed,
            "the postponed cutover",
        )
        .await;
        db.client.batch_execute(sql).await.unwrap();
        drop(flag);
        let outcome = run.await.unwrap();
        assert!(
            matches!(outcome, Ok(Outcome::Migrated(..))),
            "{table}: {outcome:?}"
        );
        let old = format!("_{table}_old");
        assert_eq!(
            table_fingerprint(&db.client, table).await,
            table_fingerprint(&db.client, &old).await,
            "{table}: the new table holds exactly the rows the old one had at the swap"
        );
        assert!(leftovers(&db.client).await.is_empty());
    }
}

// --- 6. EXCLUDE constraints --------------------------------------------------

/// An exclusion constraint stays on the shadow through the copy (its index is not
/// deferred) and arrives on the new table under its name; a row that moves keys
/// with the same range does not conflict with its older version.
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn pg_exclusion_constraints_are_kept_and_older_versions_do_not_conflict() {
    let db = db().await;
    db.client
        .batch_execute(
            "CREATE TABLE booking (id int PRIMARY KEY, room int NOT NULL, during tsrange NOT NULL,
                 CONSTRAINT no_overlap EXCLUDE USING gist (during WITH &&));
             INSERT INTO booking SELECT g, g % 7, tsrange('2020-01-01'::timestamp + g * interval '1 hour',
                 '2020-01-01'::timestamp + (g + 1) * interval '1 hour') FROM generate_series(1, 500) g;
             CREATE INDEX booking_room ON booking (room);",
        )
        .await
        .unwrap();
    let b = pg_backend(spec(
        &db.dsn,
        "booking",
        "ALTER COLUMN room TYPE bigint",
        &[],
        execute(),
    ))
    .await
    .unwrap();
    let plan = b.preflight().await.expect("preflight");
    let deferred: Vec<&String> = plan
        .shadow_ddl
        .iter()
        .filter(|d| d.contains("DROP INDEX"))
        .collect();
    assert!(
        deferred.len() == 1 && deferred[0].contains("(room)") && !deferred[0].contains("gist"),
        "only the plain index is built after the copy: {deferred:?}"
    );
    b.prepare().await.expect("prepare");
    b.copy_sessions(1).await.expect("a copy session");
    let end = b.copy_end().await.unwrap().unwrap();
    let copied = b
        .copy_range(
            0,
            KeyRange {
                after: None,
                upto: end,
            },
        )
        .await
        .expect("copy");
    assert_eq!(copied.rows, 500);
    // Row 1 takes key 1001 with the same range; only the new key is re-read now.
    db.client
        .batch_execute("UPDATE booking SET id = 1001 WHERE id = 1")
        .await
        .unwrap();
    b.apply_keys(vec![key(&["1001"])], ApplyOn::Worker, vec![])
        .await
        .expect("the older version of key 1 gives way to key 1001");
    b.cleanup(false).await.unwrap();

    let out = migrate_cli(
        &db.dsn,
        "booking",
        "ALTER COLUMN room TYPE bigint",
        &["--execute"],
    )
    .await;
    assert_eq!(out.status.code(), Some(0), "{}", show(&out));
    assert!(
        scalar_bool(
            &db.client,
            "SELECT EXISTS (SELECT 1 FROM pg_constraint WHERE conname = 'no_overlap' \
               AND contype = 'x' AND conrelid = 'booking'::regclass)"
        )
        .await
    );
    assert_eq!(count(&db.client, "booking").await, 500);
}

// --- 4. Collations -----------------------------------------------------------

/// A text key in an ICU collation sorts `a < B < c`; the database's default
/// (C.UTF-8) sorts `B < a < c`. A key inside a chunk in flight is held back by the
/// key's own order; and a key whose collation the ALTER changes is copied, applied
/// and verified in the order of each table's index.
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn pg_keys_compare_in_their_own_collation() {
    let db = db().await;
    db.client
        .batch_execute(
            "CREATE TABLE k (k text COLLATE \"en-US-x-icu\" PRIMARY KEY, v int NOT NULL);
             INSERT INTO k VALUES ('a', 1), ('B', 2), ('c', 3);",
        )
        .await
        .unwrap();
    let b = pg_backend(spec(
        &db.dsn,
        "k",
        "ALTER COLUMN v TYPE bigint",
        &[],
        execute(),
    ))
    .await
    .unwrap();
    b.preflight().await.expect("preflight");
    b.prepare().await.expect("prepare");
    b.copy_sessions(1).await.expect("a copy session");
    let in_flight = vec![KeyRange {
        after: Some(key(&["a"])),
        upto: key(&["c"]),
    }];
    let applied = b
        .apply_keys(vec![key(&["B"])], ApplyOn::Worker, in_flight)
        .await
        .unwrap();
    assert_eq!(
        applied.held,
        vec![key(&["B"])],
        "B is inside (a, c] in the key's order"
    );
    b.cleanup(false).await.unwrap();

    // The ALTER gives the key another collation: a key applied before its chunk is
    // copied is skipped by the chunk, and the whole run verifies.
    let alter = "ALTER COLUMN k TYPE text COLLATE \"C\"";
    let b = pg_backend(spec(&db.dsn, "k", alter, &[], execute()))
        .await
        .unwrap();
    b.preflight().await.expect("preflight");
    b.prepare().await.expect("prepare");
    b.copy_sessions(1).await.expect("a copy session");
    b.apply_keys(vec![key(&["B"])], ApplyOn::Worker, vec![])
        .await
        .unwrap();
    let copied = b
        .copy_range(
            0,
            KeyRange {
                after: None,
                upto: key(&["c"]),
            },
        )
        .await
        .expect("copying around an applied key");
    assert_eq!(copied.rows, 2);
    b.cleanup(false).await.unwrap();

    db.client
        .batch_execute("INSERT INTO k SELECT 'k' || g, g FROM generate_series(1, 2000) g")
        .await
        .unwrap();
    let flag = tempfile::NamedTempFile::new().unwrap();
    let mut opts = execute();
    opts.postpone_flag_file = Some(flag.path().to_path_buf());
    let stats = Arc::new(Stats::default());
    let run = start_pg(spec(&db.dsn, "k", alter, &[], opts), stats.clone()).await;
    wait_for(
        || stats.phase() == Phase::Postponed,
        "the postponed cutover",
    )
    .await;
    db.client
        .batch_execute(
            "DELETE FROM k WHERE k LIKE 'k1%'; UPDATE k SET k = upper(k) WHERE k LIKE 'k2%';
             INSERT INTO k VALUES ('A', 10), ('b', 20);",
        )
        .await
        .unwrap();
    drop(flag);
    let outcome = run.await.unwrap();
    assert!(matches!(outcome, Ok(Outcome::Migrated(..))), "{outcome:?}");
    assert_eq!(
        table_fingerprint(&db.client, "k").await,
        table_fingerprint(&db.client, "_k_old").await
    );
}

// --- 5. Unique constraints and rows that move keys --------------------------

/// `email` is unique. A row that moves to a new key meets its own older version
/// in the shadow, in the apply (its old key comes in a later batch) and in the
/// copy (the older version was applied before the chunk ran): neither fails, and
/// the shadow ends with the current rows only.
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn pg_older_versions_never_conflict_on_a_unique_key() {
    let db = db().await;
    db.client
        .batch_execute(
            "CREATE TABLE u (id int PRIMARY KEY, email text NOT NULL UNIQUE, v int NOT NULL);
             INSERT INTO u VALUES (1, 'a', 1), (2, 'b', 2), (3, 'c', 3);",
        )
        .await
        .unwrap();
    let alter = "ALTER COLUMN v TYPE bigint";
    let b = pg_backend(spec(&db.dsn, "u", alter, &[], execute()))
        .await
        .unwrap();
    b.preflight().await.expect("preflight");
    b.prepare().await.expect("prepare");
    b.copy_sessions(1).await.expect("a copy session");
    // The apply: row 1 moved to key 1001; key 1001 is re-read alone.
    let copied = b
        .copy_range(
            0,
            KeyRange {
                after: None,
                upto: key(&["3"]),
            },
        )
        .await
        .unwrap();
    assert_eq!((copied.rows, copied.recheck.len()), (3, 0));
    db.client
        .batch_execute("UPDATE u SET id = 1001 WHERE id = 1")
        .await
        .unwrap();
    b.apply_keys(vec![key(&["1001"])], ApplyOn::Worker, vec![])
        .await
        .expect("re-reading the moved row");
    assert_eq!(
        shadow_rows(&db.client, "_u_new").await,
        vec!["(2,b,2)", "(3,c,3)", "(1001,a,1)"]
    );
    // The copy: the row of key 4 was applied, then deleted and inserted again as
    // key 5 before its chunk ran.
    db.client
        .batch_execute("INSERT INTO u VALUES (4, 'd', 4)")
        .await
        .unwrap();
    b.apply_keys(vec![key(&["4"])], ApplyOn::Worker, vec![])
        .await
        .unwrap();
    db.client
        .batch_execute("DELETE FROM u WHERE id = 4; INSERT INTO u VALUES (5, 'd', 5)")
        .await
        .unwrap();
    let copied = b
        .copy_range(
            0,
            KeyRange {
                after: Some(key(&["3"])),
                upto: key(&["5"]),
            },
        )
        .await
        .expect("a chunk that meets an older version");
    assert_eq!(
        copied.recheck,
        vec![key(&["5"])],
        "the chunk leaves its keys to the apply"
    );
    b.apply_keys(copied.recheck, ApplyOn::Worker, vec![])
        .await
        .expect("re-reading the chunk's keys");
    assert_eq!(
        shadow_rows(&db.client, "_u_new").await,
        vec!["(2,b,2)", "(3,c,3)", "(5,d,5)", "(1001,a,1)"]
    );
    b.cleanup(false).await.unwrap();
}

async fn shadow_rows(c: &Client, table: &str) -> Vec<String> {
    c.query(&format!("SELECT t::text FROM {table} t ORDER BY id"), &[])
        .await
        .unwrap()
        .iter()
        .map(|r| r.get(0))
        .collect()
}

/// A writer moves rows between keys (key updates, and deletes followed by inserts
/// of the same email under a new key) through the whole migration, mirrored in the
/// same transactions: the run completes and the table equals the mirror.
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn pg_unique_keys_under_key_moves_equal_the_mirror() {
    let db = db().await;
    unique_moves_fixture(&db.client, 20_000).await;
    let mut opts = execute();
    opts.max_rows_per_sec = Some(8000);
    // Small apply batches: a moved row's old and new keys often land in different ones.
    opts.apply_batch_keys = 3;
    let stop = Arc::new(AtomicBool::new(false));
    let moves = Arc::new(AtomicU64::new(0));
    let writer = tokio::spawn(move_keys(
        db.pg.connect("app").await.unwrap(),
        stop.clone(),
        moves.clone(),
    ));
    let outcome = migrate(spec(&db.dsn, "u", "ALTER COLUMN v TYPE bigint", &[], opts)).await;
    stop.store(true, Relaxed);
    writer.await.unwrap();
    assert!(matches!(outcome, Ok(Outcome::Migrated(..))), "{outcome:?}");
    assert!(
        moves.load(Relaxed) > 100,
        "the writer moved rows during the run"
    );
    let diff = scalar_i64(
        &db.client,
        "SELECT count(*) FROM ((SELECT id, email, v::bigint FROM u EXCEPT SELECT * FROM u_mirror) \
         UNION ALL (SELECT * FROM u_mirror EXCEPT SELECT id, email, v::bigint FROM u)) d",
    )
    .await;
    assert_eq!(diff, 0, "the table equals its mirror");
}

async fn unique_moves_fixture(c: &Client, rows: i64) {
    c.batch_execute(&format!(
        "CREATE TABLE u (id int PRIMARY KEY, email text NOT NULL UNIQUE, v int NOT NULL);
         INSERT INTO u SELECT g, 'e' || g, g FROM generate_series(1, {rows}) g;
         CREATE TABLE u_mirror (id int PRIMARY KEY, email text NOT NULL, v bigint NOT NULL);
         INSERT INTO u_mirror SELECT * FROM u;"
    ))
    .await
    .unwrap();
}

/// Moves rows to new keys until `stop`: each transaction changes `u` and its
/// mirror alike.
async fn move_keys(c: Client, stop: Arc<AtomicBool>, moves: Arc<AtomicU64>) {
    let mut next = 1_000_000i64;
    let mut i = 0i64;
    while !stop.load(Relaxed) {
        i += 1;
        let old = (i * 7919) % 20_000 + 1;
        next += 1;
        let sql = if i % 2 == 0 {
            format!(
                "BEGIN; UPDATE u SET id = {next} WHERE id = (SELECT id FROM u WHERE id >= {old} ORDER BY id LIMIT 1) \
                 RETURNING id; UPDATE u_mirror m SET id = {next} FROM u WHERE u.id = {next} AND m.email = u.email; COMMIT;"
            )
        } else {
            format!(
                "BEGIN; WITH gone AS (DELETE FROM u WHERE id = (SELECT id FROM u WHERE id >= {old} ORDER BY id LIMIT 1) \
                 RETURNING email, v) INSERT INTO u SELECT {next}, email, v + 1 FROM gone; \
                 DELETE FROM u_mirror m USING u WHERE u.id = {next} AND m.email = u.email; \
                 INSERT INTO u_mirror SELECT id, email, v FROM u WHERE id = {next}; COMMIT;"
            )
        };
        match c.batch_execute(&sql).await {
            Ok(()) => {
                moves.fetch_add(1, Relaxed);
            }
            Err(e) => {
                let _ = c.batch_execute("ROLLBACK").await;
                panic!("the writer failed: {e}");
            }
        }
        tokio::time::sleep(Duration::from_millis(2)).await;
    }
}

/// A unique constraint the ALTER adds that the data does not satisfy stops the
/// run before the swap, naming the constraint, even without verification: no row
/// is silently dropped on the way.
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn pg_a_new_unique_constraint_that_does_not_hold_stops_the_run() {
    let db = db().await;
    db.client
        .batch_execute(
            "CREATE TABLE g (id int PRIMARY KEY, email text NOT NULL);
             INSERT INTO g SELECT n, 'e' || (n % 900) FROM generate_series(1, 1000) n;",
        )
        .await
        .unwrap();
    let out = migrate_cli(
        &db.dsn,
        "g",
        "ADD CONSTRAINT g_email UNIQUE (email)",
        &["--execute", "--verify", "off"],
    )
    .await;
    assert_eq!(out.status.code(), Some(1), "{}", show(&out));
    assert!(
        String::from_utf8_lossy(&out.stderr).contains("g_email"),
        "{}",
        show(&out)
    );
    assert!(leftovers(&db.client).await.is_empty());
    assert_eq!(count(&db.client, "g").await, 1000);
    assert!(!scalar_bool(&db.client, "SELECT to_regclass('_g_old') IS NOT NULL").await);
}

// --- 3. DDL by another session during the run -------------------------------

/// Grants, an index, a trigger, a CHECK constraint, a comment and a column added to
/// the source after preflight, with no write after them: the swap would have lost
/// them all. It refuses, naming each, and leaves the table as it is now; a second
/// run carries them over.
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn pg_ddl_during_the_run_is_never_lost() {
    let db = db().await;
    db.client
        .batch_execute(
            "CREATE ROLE app_ro;
             CREATE TABLE t (id int PRIMARY KEY, v int NOT NULL);
             INSERT INTO t SELECT g, g FROM generate_series(1, 3000) g;
             CREATE FUNCTION t_audit() RETURNS trigger LANGUAGE plpgsql AS $$ BEGIN RETURN NEW; END $$;",
        )
        .await
        .unwrap();
    let faults = sql_at(
        Point::BeforeVerify,
        &db.dsn,
        "GRANT SELECT ON t TO app_ro;
         CREATE INDEX t_v ON t (v);
         CREATE TRIGGER t_audit BEFORE UPDATE ON t FOR EACH ROW EXECUTE FUNCTION t_audit();
         ALTER TABLE t ADD CONSTRAINT t_v_positive CHECK (v > 0);
         COMMENT ON COLUMN t.v IS 'the value';
         ALTER TABLE t ADD COLUMN note text;",
    );
    let err = migrate(
        spec(&db.dsn, "t", "ALTER COLUMN v TYPE bigint", &[], execute()).with_faults(faults),
    )
    .await
    .expect_err("the swap must not lose the DDL");
    let msg = format!("{err:#}");
    assert_eq!(exit_code(&err), 1, "{msg}");
    for needle in [
        "app_ro",
        "t_v",
        "t_audit",
        "t_v_positive",
        "the value",
        "column note",
    ] {
        assert!(msg.contains(needle), "the error names {needle}: {msg}");
    }
    assert!(leftovers(&db.client).await.is_empty());
    assert!(!scalar_bool(&db.client, "SELECT to_regclass('_t_old') IS NOT NULL").await);
    assert!(
        scalar_bool(
            &db.client,
            "SELECT has_table_privilege('app_ro', 't', 'SELECT')"
        )
        .await
    );

    migrate(spec(
        &db.dsn,
        "t",
        "ALTER COLUMN v TYPE bigint",
        &[],
        execute(),
    ))
    .await
    .expect("a second run includes the DDL");
    for (what, sql) in [
        (
            "the grant",
            "SELECT has_table_privilege('app_ro', 't', 'SELECT')",
        ),
        ("the index", "SELECT to_regclass('t_v') IS NOT NULL"),
        (
            "the trigger",
            "SELECT EXISTS (SELECT 1 FROM pg_trigger WHERE tgname = 't_audit' AND tgrelid = 't'::regclass)",
        ),
        (
            "the constraint",
            "SELECT EXISTS (SELECT 1 FROM pg_constraint WHERE conname = 't_v_positive' AND conrelid = 't'::regclass)",
        ),
        (
            "the comment",
            "SELECT col_description('t'::regclass, 2) = 'the value'",
        ),
        (
            "the column",
            "SELECT EXISTS (SELECT 1 FROM pg_attribute WHERE attrelid = 't'::regclass AND attname = 'note')",
        ),
    ] {
        assert!(
            scalar_bool(&db.client, sql).await,
            "{what} is on the new table"
        );
    }
}

// --- MariaDB ------------------------------------------------------------------

use mysql_async::prelude::Queryable;

/// An index, a trigger and another table's foreign key to the source created
/// after preflight: the RENAME would leave the trigger and the foreign key with
/// the old table and the index behind. The swap refuses, naming each.
async fn mysql_ddl_during_the_run_is_never_lost(server: MyServer) {
    let (db, dsn, mut c) = my_sandbox_on(server.clone()).await;
    c.query_drop(format!(
        "CREATE TABLE t (id int PRIMARY KEY, v int NOT NULL);
         INSERT INTO t SELECT seq, seq FROM {};
         CREATE TABLE child (id int PRIMARY KEY, t_id int NOT NULL);",
        seq(3000)
    ))
    .await
    .unwrap();
    let faults = sql_at(
        Point::BeforeVerify,
        &dsn,
        "CREATE INDEX t_v ON t (v);
         CREATE TRIGGER t_bi BEFORE INSERT ON t FOR EACH ROW SET NEW.v = NEW.v;
         ALTER TABLE child ADD CONSTRAINT child_t FOREIGN KEY (t_id) REFERENCES t (id);",
    );
    let opts = execute_on(Engine::MySql);
    let err = migrate(spec(&dsn, "t", "MODIFY v bigint NOT NULL", &[], opts).with_faults(faults))
        .await
        .expect_err("the swap must not lose the DDL");
    let msg = format!("{err:#}");
    assert_eq!(exit_code(&err), 1, "{msg}");
    for needle in ["t_v", "t_bi", "child_t"] {
        assert!(msg.contains(needle), "the error names {needle}: {msg}");
    }
    assert_eq!(
        my_tables(&mut c).await,
        vec!["child".to_string(), "t".to_string()],
        "nothing was swapped or left behind"
    );
    let v_type: String = c
        .query_first("SELECT DATA_TYPE FROM information_schema.COLUMNS WHERE TABLE_NAME = 't' AND COLUMN_NAME = 'v'")
        .await
        .unwrap()
        .unwrap();
    assert_eq!(v_type, "int");

    // A foreign key from a table of another database, which is looked for right
    // before the lock rather than under it.
    c.query_drop(
        "CREATE TABLE t2 (id int PRIMARY KEY, v int NOT NULL); INSERT INTO t2 VALUES (1, 1);
         CREATE DATABASE other; CREATE TABLE other.kid (id int PRIMARY KEY, t2_id int NOT NULL);",
    )
    .await
    .unwrap();
    let faults = sql_at(
        Point::BeforeVerify,
        &dsn,
        "ALTER TABLE other.kid ADD CONSTRAINT kid_t2 FOREIGN KEY (t2_id) REFERENCES app.t2 (id)",
    );
    let opts = execute_on(Engine::MySql);
    let err = migrate(spec(&dsn, "t2", "MODIFY v bigint NOT NULL", &[], opts).with_faults(faults))
        .await
        .expect_err("the swap must not lose the foreign key");
    assert!(format!("{err:#}").contains("kid_t2"), "{err:#}");
    assert!(!my_tables(&mut c).await.iter().any(|t| t.contains("wraith")));
    db.stop().await;
}

/// A key in `utf8mb4_general_ci` (`x00001 < X00002 < x00003`...) that the ALTER
/// gives a binary collation (all `X` before all `x`), over more than one
/// verification range: the migration verifies, where ranges cut in the source's
/// order used to differ on the new table's side.
async fn mysql_keys_compare_in_their_own_collation(server: MyServer) {
    let (db, dsn, mut c) = my_sandbox_on(server.clone()).await;
    c.query_drop(
        format!("CREATE TABLE k (k varchar(20) CHARACTER SET utf8mb4 COLLATE utf8mb4_general_ci PRIMARY KEY, v int NOT NULL);
         INSERT INTO k SELECT CONCAT(IF(seq % 2, 'x', 'X'), LPAD(seq, 6, '0')), seq FROM {};", seq(60000)),
    )
    .await
    .unwrap();
    let outcome = migrate(spec(
        &dsn,
        "k",
        "CONVERT TO CHARACTER SET utf8mb4 COLLATE utf8mb4_bin",
        &[],
        execute_on(Engine::MySql),
    ))
    .await;
    assert!(matches!(outcome, Ok(Outcome::Migrated(..))), "{outcome:?}");
    let sums: Vec<(i64, String)> = c
        .query(
            "SELECT COUNT(*), CAST(SUM(CRC32(CONCAT(k, ':', v))) AS CHAR) FROM k \
             UNION ALL SELECT COUNT(*), CAST(SUM(CRC32(CONCAT(k, ':', v))) AS CHAR) FROM k_wraith_old",
        )
        .await
        .unwrap();
    assert_eq!(sums[0], sums[1], "the new table holds the old one's rows");
    assert_eq!(sums[0].0, 60000);
    db.stop().await;
}

/// A unique key the ALTER adds that the data does not satisfy: the copy used to
/// skip the duplicates silently (`--verify off` swapped in a table with rows
/// missing). Now the run stops before the swap, naming the key.
async fn mysql_a_new_unique_key_that_does_not_hold_stops_the_run(server: MyServer) {
    let (db, dsn, mut c) = my_sandbox_on(server.clone()).await;
    c.query_drop(format!(
        "CREATE TABLE g (id int PRIMARY KEY, email varchar(20) NOT NULL);
         INSERT INTO g SELECT seq, CONCAT('e', seq % 900) FROM {};",
        seq(1000)
    ))
    .await
    .unwrap();
    let out = migrate_cli(
        &dsn,
        "g",
        "ADD UNIQUE KEY g_email (email)",
        &["--execute", "--verify", "off"],
    )
    .await;
    assert_eq!(out.status.code(), Some(1), "{}", show(&out));
    assert!(
        String::from_utf8_lossy(&out.stderr).contains("g_email"),
        "{}",
        show(&out)
    );
    assert_eq!(my_tables(&mut c).await, vec!["g".to_string()]);
    let n: i64 = c
        .query_first("SELECT COUNT(*) FROM g")
        .await
        .unwrap()
        .unwrap();
    assert_eq!(n, 1000);
    db.stop().await;
}

/// The writer of the PostgreSQL test above on MariaDB: rows move keys under a
/// unique `email` through the whole migration; the table equals its mirror.
async fn mysql_unique_keys_under_key_moves_equal_the_mirror(server: MyServer) {
    let (db, dsn, mut c) = my_sandbox_on(server.clone()).await;
    c.query_drop(format!(
        "CREATE TABLE u (id int PRIMARY KEY, email varchar(20) NOT NULL UNIQUE, v int NOT NULL);
         INSERT INTO u SELECT seq, CONCAT('e', seq), seq FROM {};
         CREATE TABLE u_mirror (id int PRIMARY KEY, email varchar(20) NOT NULL, v bigint NOT NULL);
         INSERT INTO u_mirror SELECT * FROM u;",
        seq(20000)
    ))
    .await
    .unwrap();
    let mut opts = execute_on(Engine::MySql);
    opts.max_rows_per_sec = Some(8000);
    opts.apply_batch_keys = 3;
    let writer = Writer::start(db.connect("app").await.unwrap(), my_move_keys);
    let outcome = migrate(spec(&dsn, "u", "MODIFY v bigint NOT NULL", &[], opts)).await;
    let ((), moves) = writer.stop().await;
    assert!(matches!(outcome, Ok(Outcome::Migrated(..))), "{outcome:?}");
    assert!(moves > 100, "the writer moved rows during the run");
    let diff = my_mirror_differences(&mut c, "u", "u_mirror", "id, email, v").await;
    let rows: (i64, i64) = c
        .query_first("SELECT (SELECT COUNT(*) FROM u), (SELECT COUNT(*) FROM u_mirror)")
        .await
        .unwrap()
        .unwrap();
    assert_eq!((diff, rows.0), (0, rows.1), "the table equals its mirror");
    db.stop().await;
}

async fn my_move_keys(mut c: mysql_async::Conn, stop: Arc<AtomicBool>, moves: Arc<AtomicU64>) {
    let mut next = 1_000_000i64;
    let mut i = 0i64;
    while !stop.load(Relaxed) {
        i += 1;
        next += 1;
        let old = (i * 7919) % 20_000 + 1;
        let mut tx = c
            .start_transaction(mysql_async::TxOpts::default())
            .await
            .unwrap();
        let row: Option<(i64, String, i64)> = tx
            .exec_first(
                "SELECT id, email, v FROM u WHERE id >= ? ORDER BY id LIMIT 1 FOR UPDATE",
                (old,),
            )
            .await
            .unwrap();
        if let Some((id, email, v)) = row {
            let stmts: Vec<(String, Vec<mysql_async::Value>)> = if i % 2 == 0 {
                vec![
                    (
                        "UPDATE u SET id = ? WHERE id = ?".into(),
                        vec![next.into(), id.into()],
                    ),
                    (
                        "UPDATE u_mirror SET id = ? WHERE id = ?".into(),
                        vec![next.into(), id.into()],
                    ),
                ]
            } else {
                vec![
                    ("DELETE FROM u WHERE id = ?".into(), vec![id.into()]),
                    (
                        "INSERT INTO u VALUES (?, ?, ?)".into(),
                        vec![next.into(), email.clone().into(), (v + 1).into()],
                    ),
                    ("DELETE FROM u_mirror WHERE id = ?".into(), vec![id.into()]),
                    (
                        "INSERT INTO u_mirror VALUES (?, ?, ?)".into(),
                        vec![next.into(), email.into(), (v + 1).into()],
                    ),
                ]
            };
            for (sql, params) in stmts {
                tx.exec_drop(sql, params).await.unwrap();
            }
        }
        tx.commit().await.unwrap();
        moves.fetch_add(1, Relaxed);
        tokio::time::sleep(Duration::from_millis(1)).await;
    }
}

// --- 8. Passwords ------------------------------------------------------------

/// Every spelling of a password reaches no message: in the URL's user part (with
/// a raw `/` too), as `?password=`, as `password = x` or `password='a b'` in a
/// key/value string, on both engines, in text and JSON logs.
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn passwords_are_never_printed() {
    // Nothing listens on port 1: every run fails to connect, and says where to.
    let dsns = [
        "postgres://bob:Sup3rSecret@127.0.0.1:1/app",
        "postgres://bob:Sup3r/Secret@127.0.0.1:1/app",
        "postgres://bob@127.0.0.1:1/app?password=Sup3rSecret",
        "host=127.0.0.1 port=1 user=bob password = Sup3rSecret dbname=app",
        "host=127.0.0.1 port=1 user=bob password='Sup3r Secret' dbname=app",
        "mysql://bob:Sup3rSecret@127.0.0.1:1/app",
        "mysql://bob:Sup3r/Secret@127.0.0.1:1/app",
        "mysql://bob@127.0.0.1:1/app?password=Sup3rSecret",
        "mariadb://bob:Sup3rSecret@127.0.0.1:1/app",
    ];
    for dsn in dsns {
        for args in [
            vec![
                "migrate",
                "--dsn",
                dsn,
                "--table",
                "t",
                "--alter",
                "x",
                "--execute",
            ],
            vec![
                "--log-format",
                "json",
                "migrate",
                "--dsn",
                dsn,
                "--table",
                "t",
                "--alter",
                "x",
            ],
            vec!["cleanup", "--dsn", dsn, "--table", "t"],
            vec!["verify", "--dsn", dsn, "--table", "t"],
        ] {
            let out = wraith_async(args.iter().map(|s| s.to_string()).collect()).await;
            let printed = format!(
                "{}{}",
                String::from_utf8_lossy(&out.stdout),
                String::from_utf8_lossy(&out.stderr)
            );
            assert_ne!(out.status.code(), Some(0), "{dsn}: {printed}");
            for secret in ["Sup3rSecret", "Secret", "Sup3r"] {
                assert!(
                    !printed.contains(secret),
                    "{args:?} printed the password: {printed}"
                );
            }
        }
    }
}

// --- 9. Diagnostics -----------------------------------------------------------

/// A prepared transaction holds an XID that no session shows: the dry run warns
/// that slot creation will wait for it, and the run that times out names it.
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn pg_a_prepared_transaction_blocking_the_slot_is_named() {
    let db = db_with(wraith::sandbox::PgOptions {
        extra_conf: vec![("max_prepared_transactions".into(), "5".into())],
        ..Default::default()
    })
    .await;
    db.client
        .batch_execute(
            "CREATE TABLE t (id int PRIMARY KEY, v int NOT NULL);
             INSERT INTO t SELECT g, g FROM generate_series(1, 100) g;
             CREATE TABLE other (id int);",
        )
        .await
        .unwrap();
    db.client
        .batch_execute("BEGIN; INSERT INTO other VALUES (1); PREPARE TRANSACTION 'billing-42';")
        .await
        .unwrap();
    let out = migrate_cli(&db.dsn, "t", "ALTER COLUMN v TYPE bigint", &[]).await;
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert_eq!(out.status.code(), Some(0), "{}", show(&out));
    assert!(
        stdout.contains("'billing-42'") && stdout.contains("ROLLBACK PREPARED"),
        "{}",
        show(&out)
    );
    let mut opts = execute();
    opts.slot_create_timeout = Duration::from_secs(1);
    let err = migrate(spec(&db.dsn, "t", "ALTER COLUMN v TYPE bigint", &[], opts))
        .await
        .expect_err("slot creation waits for the prepared transaction");
    let msg = format!("{err:#}");
    for needle in [
        "pg_prepared_xacts",
        "'billing-42'",
        "COMMIT PREPARED 'billing-42'",
    ] {
        assert!(msg.contains(needle), "{needle}: {msg}");
    }
    assert!(leftovers(&db.client).await.is_empty());
    db.client
        .batch_execute("ROLLBACK PREPARED 'billing-42'")
        .await
        .unwrap();
}

/// Two roles, each owning a table of the same schema: the second one's runs use
/// the record of completed migrations the first one created, and a record that
/// is not shared is refused before anything is built, naming the GRANT.
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn pg_every_migrating_role_can_use_the_record() {
    let db = db().await;
    let a = migrating_role(&db, "mig_a").await;
    let b = migrating_role(&db, "mig_b").await;
    db.client
        .batch_execute(
            "CREATE TABLE t1 (id int PRIMARY KEY, v int NOT NULL); ALTER TABLE t1 OWNER TO mig_a;
             CREATE TABLE t2 (id int PRIMARY KEY, v int NOT NULL); ALTER TABLE t2 OWNER TO mig_b;
             INSERT INTO t1 VALUES (1, 1); INSERT INTO t2 VALUES (1, 1);",
        )
        .await
        .unwrap();
    let alter = "ALTER COLUMN v TYPE bigint";
    for (dsn, table) in [(&a, "t1"), (&b, "t2")] {
        let out = migrate_cli(dsn, table, alter, &["--execute"]).await;
        assert_eq!(out.status.code(), Some(0), "{table}: {}", show(&out));
    }
    let again = migrate_cli(&b, "t2", alter, &["--execute"]).await;
    assert_eq!(again.status.code(), Some(0), "{}", show(&again));
    assert!(
        String::from_utf8_lossy(&again.stdout).contains("already applied"),
        "{}",
        show(&again)
    );
    // A record created without the grant (by an earlier version of wraith).
    db.client
        .batch_execute("REVOKE ALL ON wraith_history FROM PUBLIC")
        .await
        .unwrap();
    let out = migrate_cli(&b, "t2", "ALTER COLUMN v TYPE numeric", &["--execute"]).await;
    assert_refused(
        &out,
        "a record only its creator may use",
        &["GRANT SELECT, INSERT ON", "mig_a"],
    );
    assert!(leftovers(&db.client).await.is_empty());
}

/// A schema and a table whose names hold a space, a dot and a quote are named
/// with SQL quoting, for `migrate`, `verify` and `cleanup` alike.
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn pg_quoted_table_names() {
    let db = db().await;
    db.client
        .batch_execute(
            "CREATE SCHEMA \"Sales Dept\";
             CREATE TABLE \"Sales Dept\".\"q\"\"t.x\" (id int PRIMARY KEY, v int NOT NULL);
             INSERT INTO \"Sales Dept\".\"q\"\"t.x\" SELECT g, g FROM generate_series(1, 500) g;",
        )
        .await
        .unwrap();
    let name = "\"Sales Dept\".\"q\"\"t.x\"";
    let out = migrate_cli(&db.dsn, name, "ALTER COLUMN v TYPE bigint", &["--execute"]).await;
    assert_eq!(out.status.code(), Some(0), "{}", show(&out));
    assert_eq!(
        scalar_i64(
            &db.client,
            "SELECT count(*) FROM \"Sales Dept\".\"q\"\"t.x\" WHERE pg_typeof(v) = 'bigint'::regtype"
        )
        .await,
        500
    );
    let verify = wraith_async(
        [
            "verify",
            "--dsn",
            &db.dsn,
            "--source",
            "\"Sales Dept\".\"_q\"\"t.x_old\"",
            "--target",
            "\"q\"\"t.x\"",
        ]
        .iter()
        .map(|s| s.to_string())
        .collect(),
    )
    .await;
    assert_eq!(verify.status.code(), Some(0), "{}", show(&verify));
    let cleanup = wraith_async(
        ["cleanup", "--dsn", &db.dsn, "--table", name]
            .iter()
            .map(|s| s.to_string())
            .collect(),
    )
    .await;
    assert_eq!(cleanup.status.code(), Some(0), "{}", show(&cleanup));
    let bad = migrate_cli(
        &db.dsn,
        "\"Sales Dept\".\"open",
        "ALTER COLUMN v TYPE bigint",
        &[],
    )
    .await;
    assert_refused(&bad, "unterminated quote", &["unterminated quote"]);
}

on_mysql_servers!(
    mysql_ddl_during_the_run_is_never_lost,
    mysql_keys_compare_in_their_own_collation,
    mysql_a_new_unique_key_that_does_not_hold_stops_the_run,
    mysql_unique_keys_under_key_moves_equal_the_mirror,
);
