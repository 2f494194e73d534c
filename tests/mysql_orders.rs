//! The orders scenario on sandbox MariaDB and MySQL: the spec in MySQL types gives
//! the new shape with exact rows and keeps the AUTO_INCREMENT counter; `wraith
//! demo --engine mysql` shows it; `wraith bench --engine mariadb|mysql` runs it
//! under the scenario's workload and reports the ALGORITHM=COPY and
//! pt-online-schema-change baselines from the same run.

mod common;

use common::*;
use mysql_async::prelude::Queryable;
use wraith::Engine;
use wraith::engine::migration::Outcome;
use wraith::plan::RunOptions;
use wraith::sandbox::MyServer;
use wraith::scenario::orders_mysql;

async fn orders_spec_gives_the_new_shape_exact_rows_and_keeps_the_counter(server: MyServer) {
    let (_db, dsn, mut c) = my_sandbox_on(server.clone()).await;
    orders_mysql::load(&mut c, 2_000, 5).await.unwrap();
    // The newest orders were deleted: the counter (2001) is above the last key (1990).
    c.query_drop("DELETE FROM orders WHERE order_id > 1990")
        .await
        .unwrap();
    orders_mysql::create_mirror(&mut c).await.unwrap();

    let spec = job_of(
        orders_mysql::migration().unwrap(),
        &dsn,
        RunOptions {
            execute: true,
            ..RunOptions::for_engine(Engine::MySql)
        },
    );
    let outcome = migrate(spec).await.expect("the migration runs");
    assert!(matches!(outcome, Outcome::Migrated(..)), "{outcome:?}");

    let differing =
        wraith::bench::mysql_workload::diff(&mut c, orders_mysql::EXPECTED, orders_mysql::ACTUAL)
            .await
            .unwrap();
    assert!(differing.is_empty(), "orders differ: {differing:?}");
    let types: Vec<(String, String)> = c
        .query(
            "SELECT COLUMN_NAME, COLUMN_TYPE FROM information_schema.COLUMNS \
             WHERE TABLE_SCHEMA = 'app' AND TABLE_NAME = 'orders' \
             AND COLUMN_NAME IN ('order_id', 'order_ref', 'order_status', 'created_at') ORDER BY COLUMN_NAME",
        )
        .await
        .unwrap();
    // MySQL 8.0.19 and later show integer types without a display width.
    let types: Vec<(String, String)> = types
        .into_iter()
        .map(|(n, t)| (n, t.replace("bigint(20)", "bigint")))
        .collect();
    assert_eq!(types[0], ("created_at".into(), "timestamp".into()));
    assert_eq!(types[1], ("order_id".into(), "bigint".into()));
    assert_eq!(types[2], ("order_ref".into(), "bigint".into()));
    assert!(types[3].1.starts_with("enum('pending'"), "{types:?}");
    let indexed: Option<String> = c
        .query_first(
            "SELECT INDEX_NAME FROM information_schema.STATISTICS WHERE TABLE_SCHEMA = 'app' \
             AND TABLE_NAME = 'orders' AND INDEX_NAME = 'orders_customer_id_idx'",
        )
        .await
        .unwrap();
    assert!(indexed.is_some(), "the new index is missing");
    // The key to customers moved to the new table under its name.
    let keys: Vec<(String, String)> = c
        .query(
            "SELECT CONSTRAINT_NAME, REFERENCED_TABLE_NAME FROM information_schema.REFERENTIAL_CONSTRAINTS \
             WHERE CONSTRAINT_SCHEMA = 'app' AND TABLE_NAME = 'orders'",
        )
        .await
        .unwrap();
    assert_eq!(
        keys,
        vec![("orders_customer_fk".to_string(), "customers".to_string())]
    );
    // The new CHECK holds on the swapped table.
    let refused = c
        .query_drop(
            "INSERT INTO orders (order_ref, delivery_script_args, order_status) VALUES (1, '[1]', 'active')",
        )
        .await;
    assert!(
        refused.is_err(),
        "a non-object delivery_script_args was accepted"
    );
    // Keys the source handed out before the swap are not handed out again.
    c.query_drop("INSERT INTO orders (order_ref, order_status) VALUES (1, 'active')")
        .await
        .unwrap();
    assert_eq!(c.last_insert_id(), Some(2001));
    assert_eq!(
        my_tables(&mut c).await,
        ["customers", "orders", "orders_mirror", "orders_wraith_old"]
    );
}

/// The `--engine` name of a sandbox server.
fn engine_name(server: &MyServer) -> &'static str {
    match server {
        MyServer::MariaDb => "mariadb",
        MyServer::MySql { .. } => "mysql",
    }
}

async fn wraith_demo_shows_the_orders_normalization(server: MyServer) {
    let stdout = wraith_async(
        [
            "demo",
            "--engine",
            engine_name(&server),
            "--rows",
            "20000",
            "--tps",
            "200",
        ]
        .map(String::from)
        .to_vec(),
    )
    .await;
    let text = show(&stdout);
    assert_eq!(stdout.status.code(), Some(0), "{text}");
    assert!(
        text.contains("The rewritten orders table equals the mirror row for row."),
        "{text}"
    );
}

async fn wraith_bench_compares_with_copy_and_pt_osc(server: MyServer) {
    let stdout = wraith_ok(&[
        "bench",
        "--engine",
        engine_name(&server),
        "--rows",
        "20000",
        "--tps",
        "200",
        "--clients",
        "2",
        "--window-secs",
        "1",
        "--json",
    ]);
    let r: serde_json::Value = serde_json::from_str(stdout.trim()).expect("the report is JSON");
    assert_eq!(r["offline_alter"], "ALTER ... ALGORITHM=COPY", "{r:#}");
    for field in [
        "offline_alter_ms",
        "pt_osc_ms",
        "idle_ratio_vs_offline",
        "idle_ratio_vs_pt_osc",
        "idle_peak_rss_mb",
        "loaded_peak_rss_mb",
        "copy_rows_per_sec",
        "apply_lag_p99_ms",
        "cutover_write_stall_ms",
        "verification_ms",
    ] {
        assert!(
            r[field].is_number(),
            "{field} missing (is percona-toolkit installed?): {r:#}"
        );
    }
    assert!(
        r["scenario"]
            .as_str()
            .unwrap_or("")
            .contains("orders scenario")
    );
    assert!(r["loaded"]["heartbeats"].as_u64().unwrap_or(0) > 0, "{r:#}");
    for f in ["p50_ms", "p99_ms", "max_ms", "tps"] {
        assert!(r["workload_during_copy"][f].is_number(), "{f}: {r:#}");
        assert!(
            r["pt_osc_loaded"]["workload_during"][f].is_number(),
            "{f}: {r:#}"
        );
    }
    assert!(r["pt_osc_loaded"]["ms"].is_number(), "{r:#}");
    assert_eq!(r["workload_failed"], 0, "{r:#}");
    assert_eq!(r["rows_differing_from_mirror"], 0, "{r:#}");
}

/// The dependents scenario moves N keys and triggers (it checks each run) and
/// reports the hold per N.
async fn wraith_bench_measures_moving_dependents(server: MyServer) {
    let stdout = wraith_ok(&[
        "bench",
        "--scenario",
        "dependents",
        "--engine",
        engine_name(&server),
        "--rows",
        "2000",
        "--dependents",
        "0,2",
        "--runs",
        "1",
        "--json",
    ]);
    let r: serde_json::Value = serde_json::from_str(stdout.trim()).expect("the report is JSON");
    let rows = r["cutover_hold"].as_array().expect("one row per N");
    let ns: Vec<u64> = rows.iter().filter_map(|row| row["n"].as_u64()).collect();
    assert_eq!(ns, [0, 2], "{r:#}");
    for row in rows {
        assert!(row["median_ms"].as_f64().is_some_and(|v| v > 0.0), "{r:#}");
        assert!(row["added_ms"].is_number(), "{r:#}");
    }
    assert_eq!(rows[0]["added_ms"], 0.0, "{r:#}");
}

on_mysql_servers!(
    wraith_bench_measures_moving_dependents,
    orders_spec_gives_the_new_shape_exact_rows_and_keeps_the_counter,
    wraith_demo_shows_the_orders_normalization,
    wraith_bench_compares_with_copy_and_pt_osc,
);
