//! Verification: differences are caught exactly (real ones flagged with their keys,
//! normalizations such as jsonb key order not flagged), repaired inside a
//! migration, and a difference that repair cannot fix stops the swap.

mod common;

use common::*;
use wraith::engine::faults::Point;
use wraith::engine::migration::Outcome;
use wraith::sandbox::PgOptions;

/// A source with json, float, text, bits, intervals, arrays and NULLs, and a
/// target of the migrated shape.
const SETUP: &str = "
    CREATE TABLE v (id int PRIMARY KEY, t text, f float8, j json, n int, b bit(8), i interval, a float8[]);
    INSERT INTO v SELECT g, CASE WHEN g % 3 = 0 THEN NULL ELSE 't' || g END, (g % 5) * 0.5,
                         ('{\"b\": ' || g || ', \"a\": \"x\"}')::json, g, (g % 256)::bit(8),
                         make_interval(days => g % 7), ARRAY[g % 3, 0.5]
                  FROM generate_series(1, 5000) g;
    UPDATE v SET f = 0.0 WHERE id = 40;";

/// Corrupts a target of v's shape: a changed row, a missing row, an extra row,
/// '' where the source has NULL, -0 where it has 0 (also in an array), a flipped
/// bit, '24 hours' where it has '1 day'. Rewriting a jsonb with its
/// keys in another order is not a difference.
fn corrupt(target: &str) -> String {
    format!(
        "UPDATE {target} SET n = n + 1 WHERE id = 10;
         DELETE FROM {target} WHERE id = 20;
         INSERT INTO {target} (id, t, f, j, n) VALUES (100000, 'extra', 1, '{{}}', 1);
         UPDATE {target} SET t = '' WHERE id = 30;
         UPDATE {target} SET f = '-0' WHERE id = 40;
         UPDATE {target} SET j = '{{\"a\": \"x\", \"b\": 50}}'::jsonb WHERE id = 50;
         UPDATE {target} SET b = b # B'00000001' WHERE id = 60;
         UPDATE {target} SET i = interval '24 hours' WHERE id = 71;
         UPDATE {target} SET a = ARRAY['-0'::float8, 0.5] WHERE id = 81;"
    )
}

const DIFFERENT: [i64; 8] = [10, 20, 30, 40, 60, 71, 81, 100000];

async fn wraith_verify_flags_exactly_the_real_differences(opts: PgOptions) {
    let db = db_with(opts).await;
    db.client.batch_execute(SETUP).await.unwrap();
    db.client
        .batch_execute(
            "CREATE TABLE w (id bigint PRIMARY KEY, t text, f float8, j jsonb, n int, b bit(8), i interval, a float8[]);
             INSERT INTO w SELECT id, t, f, j::jsonb, n, b, i, a FROM v;",
        )
        .await
        .unwrap();

    let stdout = wraith_ok(&[
        "verify", "--dsn", &db.dsn, "--source", "v", "--target", "w", "--json",
    ]);
    let report: serde_json::Value = serde_json::from_str(stdout.trim()).unwrap();
    assert_eq!(report["source_rows"], 5000);
    assert_eq!(report["mismatched_keys"], serde_json::json!([]));

    db.client.batch_execute(&corrupt("w")).await.unwrap();
    let differ = wraith(&[
        "verify", "--dsn", &db.dsn, "--source", "v", "--target", "w", "--json",
    ]);
    let keys = differing_keys(&differ);
    assert_eq!(keys, DIFFERENT, "flagged exactly the real differences");

    // Count mode sees only the missing and the extra row, which cancel out here.
    let counted = wraith(&[
        "verify", "--dsn", &db.dsn, "--source", "v", "--target", "w", "--mode", "count",
    ]);
    assert_eq!(
        counted.status.code(),
        Some(0),
        "{}",
        String::from_utf8_lossy(&counted.stdout)
    );

    let missing = wraith(&[
        "verify", "--dsn", &db.dsn, "--source", "v", "--target", "nope",
    ]);
    assert_eq!(missing.status.code(), Some(2));
}

async fn migration_repairs_a_corrupted_shadow_before_the_swap(opts: PgOptions) {
    let db = db_with(opts).await;
    db.client.batch_execute(SETUP).await.unwrap();
    let outcome = migrate(
        spec(
            &db.dsn,
            "v",
            "ALTER COLUMN id TYPE bigint, ALTER COLUMN j TYPE jsonb USING j::jsonb",
            &[],
            execute(),
        )
        .with_faults(sql_at(Point::BeforeVerify, &db.dsn, corrupt("_v_new"))),
    )
    .await
    .expect("repaired and swapped");
    let Outcome::Migrated(_, summary) = outcome else {
        panic!("dry run")
    };
    assert_eq!(summary.verify_repaired, DIFFERENT.len() as u64);
    let diff = wraith::bench::workload::diff_count(
        &db.client,
        "SELECT id::bigint, t, f, j::jsonb, n, b, i, a FROM _v_old",
        "SELECT id, t, f, j, n, b, i, a FROM v",
    )
    .await
    .unwrap();
    assert_eq!(diff, 0, "the swapped table equals the source");
    assert!(leftovers(&db.client).await.is_empty());
}

async fn a_difference_repair_cannot_fix_stops_the_swap(opts: PgOptions) {
    let db = db_with(opts).await;
    db.client.batch_execute(SETUP).await.unwrap();
    let before = table_fingerprint(&db.client, "v").await;
    let err = migrate(spec(
        &db.dsn,
        "v",
        "ADD COLUMN r float8",
        &[("r", "random()")],
        execute(),
    ))
    .await
    .expect_err("verification must fail");
    let msg = format!("{err:#}");
    assert!(msg.contains("verification failed twice"), "{msg}");
    assert_eq!(wraith::error::exit_code(&err), 1);
    assert_eq!(
        table_fingerprint(&db.client, "v").await,
        before,
        "original untouched"
    );
    assert!(
        scalar_bool(&db.client, "SELECT to_regclass('_v_old') IS NULL").await,
        "not swapped"
    );
    // The shadow is kept for inspection; nothing else is left.
    assert_eq!(
        leftovers(&db.client).await,
        vec!["table _v_new".to_string()]
    );
    let out = wraith(&["cleanup", "--dsn", &db.dsn, "--table", "v"]);
    assert_eq!(out.status.code(), Some(0));
    assert!(leftovers(&db.client).await.is_empty());
}

async fn a_truncate_of_the_source_during_the_run_aborts_cleanly(opts: PgOptions) {
    let db = db_with(opts).await;
    db.client.batch_execute(SETUP).await.unwrap();
    let err = migrate(
        spec(&db.dsn, "v", "ADD COLUMN w int", &[], execute()).with_faults(sql_at(
            Point::BeforeVerify,
            &db.dsn,
            "TRUNCATE v",
        )),
    )
    .await
    .expect_err("a TRUNCATE must abort the run");
    assert!(format!("{err:#}").contains("TRUNCATE"), "{err:#}");
    assert!(
        scalar_bool(&db.client, "SELECT to_regclass('_v_old') IS NULL").await,
        "not swapped"
    );
    assert!(
        leftovers(&db.client).await.is_empty(),
        "{:?}",
        leftovers(&db.client).await
    );
}

on_postgres_versions!(
    wraith_verify_flags_exactly_the_real_differences,
    migration_repairs_a_corrupted_shadow_before_the_swap,
    a_difference_repair_cannot_fix_stops_the_swap,
    a_truncate_of_the_source_during_the_run_aborts_cleanly,
);
