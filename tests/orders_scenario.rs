//! The orders scenario: the generator is deterministic and well formed, and the
//! orders migration spec applies under the scenario's workload with the oracle check.

mod common;

use std::sync::atomic::Ordering::Relaxed;
use std::time::Duration;

use common::*;
use wraith::Engine;
use wraith::bench::workload::{self, Scenario, Workload, WorkloadConfig};
use wraith::engine::migration::Outcome;
use wraith::plan::RunOptions;
use wraith::scenario::orders;

#[tokio::test]
async fn generator_is_deterministic_and_well_formed() {
    let db = db().await;
    let mut prints = Vec::new();
    for (name, seed) in [("a", 7), ("b", 7), ("c", 8)] {
        db.pg.create_database(name).await.unwrap();
        let c = db.pg.connect(name).await.unwrap();
        orders::load(&c, 2000, seed).await.unwrap();
        prints.push(table_fingerprint(&c, "orders").await);
        if name == "a" {
            assert_eq!(scalar_i64(&c, "SELECT count(*) FROM orders").await, 2000);
            assert_eq!(scalar_i64(&c, "SELECT count(*) FROM customers").await, 20);
            // Every order's ref is the first order of its chain, which refers to itself.
            assert_eq!(
                scalar_i64(
                    &c,
                    "SELECT count(*) FROM orders o WHERE NOT EXISTS \
                     (SELECT 1 FROM orders r WHERE r.order_id = o.order_ref AND r.order_ref = r.order_id)"
                )
                .await,
                0
            );
            // Chains of four: three recreations and one live order.
            assert_eq!(
                scalar_i64(
                    &c,
                    "SELECT count(*) FROM (SELECT order_ref FROM orders GROUP BY order_ref \
                     HAVING count(*) <> 4 OR count(*) FILTER (WHERE order_status <> 'recreated') <> 1) x"
                )
                .await,
                0
            );
            assert_eq!(
                scalar_i64(&c, "SELECT count(DISTINCT order_status) FROM orders").await,
                6
            );
            assert!(
                scalar_i64(
                    &c,
                    "SELECT count(*) FROM orders WHERE order_status = 'active'"
                )
                .await
                    > 100
            );
        }
    }
    assert_eq!(prints[0], prints[1], "same seed, same data");
    assert_ne!(prints[0], prints[2], "another seed, other data");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn orders_migration_under_the_scenario_workload() {
    let db = db().await;
    let rows = 20_000;
    orders::load(&db.client, rows, 1).await.unwrap();
    orders::create_mirror(&db.client).await.unwrap();

    // The dry run of the spec changes nothing, not even the enum type it prepares.
    let path = concat!(
        env!("CARGO_MANIFEST_DIR"),
        "/scenarios/orders/migration.toml"
    );
    let dry = wraith(&["migrate", "--dsn", &db.dsn, "--spec", path]);
    assert_eq!(
        dry.status.code(),
        Some(0),
        "{}",
        String::from_utf8_lossy(&dry.stderr)
    );
    assert!(String::from_utf8_lossy(&dry.stdout).contains("order_status_t"));
    assert!(scalar_bool(&db.client, "SELECT to_regtype('order_status_t') IS NULL").await);

    let load = Workload::start(WorkloadConfig {
        dsn: db.dsn.clone(),
        table: "orders".into(),
        clients: 4,
        tps: Some(300),
        initial_rows: rows,
        max_duration: Duration::from_secs(300),
        key_updates: false,
        scenario: Scenario::Orders,
    })
    .await
    .unwrap();
    tokio::time::sleep(Duration::from_millis(500)).await;
    let options = RunOptions {
        execute: true,
        initial_chunk_rows: 500,
        chunk_time: Duration::from_millis(50),
        ..RunOptions::for_engine(Engine::Postgres)
    };
    let outcome = migrate(job_of(orders::migration().unwrap(), &db.dsn, options)).await;
    tokio::time::sleep(Duration::from_millis(700)).await;
    let wl = load.stop().await;
    let Outcome::Migrated(_, summary) = outcome.expect("migration succeeds") else {
        panic!("dry run")
    };
    assert_eq!(
        wl.failed.load(Relaxed),
        0,
        "workload errors: {:?}",
        wl.errors()
    );
    assert!(wl.committed.load(Relaxed) > 100);
    assert_eq!(summary.verify_repaired, 0);
    let diff = workload::diff_count(&db.client, orders::EXPECTED, orders::ACTUAL)
        .await
        .unwrap();
    assert_eq!(diff, 0, "orders differ from the mirror");

    // The new shape: enum status, self-referencing FK validated against the new table, the index.
    assert!(
        scalar_bool(
            &db.client,
            "SELECT confrelid = 'orders'::regclass AND convalidated FROM pg_constraint \
             WHERE conname = 'orders_order_ref_fkey' AND conrelid = 'orders'::regclass"
        )
        .await
    );
    assert!(
        scalar_bool(
            &db.client,
            "SELECT to_regclass('orders_customer_id_idx') IS NOT NULL"
        )
        .await
    );
    assert!(
        scalar_bool(
            &db.client,
            "SELECT format_type(atttypid, atttypmod) = 'order_status_t' FROM pg_attribute \
             WHERE attrelid = 'orders'::regclass AND attname = 'order_status'"
        )
        .await
    );
    assert!(leftovers(&db.client).await.is_empty());
}

#[test]
fn wraith_demo_runs_to_completion() {
    let stdout = wraith_ok(&["demo", "--rows", "20000", "--tps", "200"]);
    assert!(stdout.contains(", 0 failed"), "workload errors:\n{stdout}");
    assert!(
        stdout.contains("0 keys repaired"),
        "verification:\n{stdout}"
    );
    assert!(stdout.contains("0 rows differ"), "oracle:\n{stdout}");
}

#[test]
fn wraith_bench_json_holds_every_figure() {
    let stdout = wraith_ok(&[
        "bench",
        "--rows",
        "20000",
        "--tps",
        "200",
        "--clients",
        "2",
        "--baseline-secs",
        "1",
        "--json",
    ]);
    let r: serde_json::Value = serde_json::from_str(stdout.trim()).expect("the report is JSON");
    for field in [
        "offline_alter_ms",
        "idle_ratio_vs_offline",
        "idle_ratio_without_verification",
        "idle_peak_rss_mb",
        "loaded_peak_rss_mb",
        "copy_rows_per_sec",
        "copy_mb_per_sec",
        "apply_keys_per_sec",
        "apply_lag_p50_ms",
        "apply_lag_p99_ms",
        "apply_lag_max_ms",
        "cutover_write_stall_ms",
        "verification_ms",
    ] {
        assert!(r[field].is_number(), "{field} missing: {r:#}");
    }
    assert!(r["loaded"]["heartbeats"].as_u64().unwrap_or(0) > 0, "{r:#}");
    for phase in [
        "workload_before",
        "workload_during_copy",
        "workload_during_cutover",
        "workload_after",
    ] {
        for f in ["p50_ms", "p99_ms", "max_ms", "tps"] {
            assert!(r[phase][f].is_number(), "{phase}.{f} missing: {r:#}");
        }
    }
    assert!(r["idle"]["total_ms"].is_number() && r["loaded"]["cutover_hold_ms"].is_number());
    assert_eq!(r["workload_failed"], 0);
    assert_eq!(r["rows_differing_from_mirror"], 0);
}

/// The generic table on an existing server (`--dsn`), without the offline baseline:
/// the report holds its figures, and the bench's databases are gone afterwards.
#[tokio::test]
async fn wraith_bench_generic_table_on_an_existing_server() {
    let db = db().await;
    let out = wraith(&[
        "bench",
        "--scenario",
        "table",
        "--rows",
        "5000",
        "--row-width",
        "600",
        "--tps",
        "100",
        "--clients",
        "2",
        "--window-secs",
        "1",
        "--baseline",
        "none",
        "--dsn",
        &db.dsn,
        "--json",
    ]);
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert_eq!(
        out.status.code(),
        Some(0),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let r: serde_json::Value = serde_json::from_str(stdout.trim()).expect("the report is JSON");
    assert!(r["offline_alter_ms"].is_null(), "{r:#}");
    assert!(
        r["scenario"]
            .as_str()
            .unwrap_or("")
            .contains("generic table")
    );
    // 5000 rows of about 600 bytes: well over 2 MB.
    assert!(r["table_mb"].as_f64().unwrap_or(0.0) > 2.0, "{r:#}");
    assert!(r["copy_rows_per_sec"].as_f64().unwrap_or(0.0) > 0.0);
    assert_eq!(r["workload_failed"], 0, "{r:#}");
    assert_eq!(r["rows_differing_from_mirror"], 0);
    assert_eq!(
        scalar_i64(
            &db.client,
            "SELECT count(*) FROM pg_database WHERE datname LIKE 'wraith\\_bench\\_%'"
        )
        .await,
        0
    );
}

#[tokio::test]
async fn customers_spec_rounds_balances_and_makes_emails_unique() {
    let db = db().await;
    orders::load(&db.client, 5_000, 3).await.unwrap();
    let spec: wraith::plan::SpecFile = toml::from_str(orders::CUSTOMERS_MIGRATION).unwrap();
    migrate(job_of(spec.clone(), &db.dsn, execute()))
        .await
        .expect("customers migrate");
    let diff = workload::diff_count(
        &db.client,
        "SELECT customer_id, customer_email, round(customer_balance::numeric, 2) FROM _customers_old",
        "SELECT customer_id, customer_email, customer_balance FROM customers",
    )
    .await
    .unwrap();
    assert_eq!(diff, 0);
    assert!(
        db.client
            .batch_execute(
                "INSERT INTO customers (customer_email) VALUES ('customer1@example.com')"
            )
            .await
            .is_err()
    );
    // Orders still reference the customers table (the foreign key was re-pointed).
    assert!(
        scalar_bool(&db.client, "SELECT confrelid = 'customers'::regclass FROM pg_constraint WHERE conname = 'orders_customer_id_fkey'")
            .await
    );

    // With duplicate emails the run stops in preflight, names the customers, and changes nothing.
    let dup = db.pg.create_database("dup").await.unwrap();
    let c = db.pg.connect("dup").await.unwrap();
    orders::load(&c, 5_000, 3).await.unwrap();
    c.batch_execute(
        "UPDATE customers SET customer_email = 'customer1@example.com' WHERE customer_id = 2",
    )
    .await
    .unwrap();
    let err = migrate(job_of(spec, &dup, execute()))
        .await
        .expect_err("duplicates stop the run");
    assert!(
        format!("{err:#}").contains("duplicate customer_email: 2 rows, refused; keys 1, 2"),
        "{err:#}"
    );
    assert!(
        scalar_bool(
            &c,
            "SELECT to_regclass('_customers_old') IS NULL AND to_regclass('_customers_new') IS NULL"
        )
        .await
    );
}

/// `--dirty` data: the orders spec refuses orphan refs (naming them, changing
/// nothing), migrates once they are re-rooted, fixes stray statuses and non-object
/// JSON and reports them; a rerun is a no-op that says so.
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn dirty_data_is_refused_fixed_and_reported() {
    let db = db().await;
    orders::load(&db.client, 20_000, 1).await.unwrap();
    orders::add_dirt(&db.client, 1).await.unwrap();
    orders::create_mirror(&db.client).await.unwrap();
    let before = table_fingerprint(&db.client, "orders").await;
    let orphans = scalar_i64(
        &db.client,
        "SELECT count(*) FROM orders o WHERE NOT EXISTS (SELECT 1 FROM orders p WHERE p.order_id = o.order_ref)",
    )
    .await;
    assert!(orphans > 0);
    let path = concat!(
        env!("CARGO_MANIFEST_DIR"),
        "/scenarios/orders/migration.toml"
    );
    let run = |json: bool| {
        let mut args = vec!["migrate", "--dsn", &db.dsn, "--spec", path, "--execute"];
        if json {
            args.push("--json");
        }
        wraith(&args)
    };

    let refused = run(false);
    let stderr = String::from_utf8_lossy(&refused.stderr);
    assert_eq!(refused.status.code(), Some(2), "{stderr}");
    assert!(
        stderr.contains(&format!("orphan order_ref: {orphans} rows, refused; keys ")),
        "{stderr}"
    );
    assert_eq!(table_fingerprint(&db.client, "orders").await, before);
    assert!(leftovers(&db.client).await.is_empty());
    assert!(scalar_bool(&db.client, "SELECT to_regclass('_orders_new') IS NULL").await);

    for t in ["orders", "orders_mirror"] {
        db.client
            .batch_execute(&orders::REROOT_ORPHANS.replace("{t}", t))
            .await
            .unwrap();
    }
    let dirty_status = scalar_i64(
        &db.client,
        "SELECT count(*) FROM orders WHERE order_status <> lower(trim(order_status))",
    )
    .await;
    let odd_json = scalar_i64(
        &db.client,
        "SELECT count(*) FROM orders WHERE json_typeof(delivery_script_args) <> 'object'",
    )
    .await;
    assert!(dirty_status > 0 && odd_json > 0);

    let load = Workload::start(WorkloadConfig {
        dsn: db.dsn.clone(),
        table: "orders".into(),
        clients: 2,
        tps: Some(200),
        initial_rows: 20_000,
        max_duration: Duration::from_secs(300),
        key_updates: false,
        scenario: Scenario::Orders,
    })
    .await
    .unwrap();
    let done = run(true);
    tokio::time::sleep(Duration::from_millis(500)).await;
    let wl = load.stop().await;
    let stdout = String::from_utf8_lossy(&done.stdout);
    assert_eq!(
        done.status.code(),
        Some(0),
        "{}",
        String::from_utf8_lossy(&done.stderr)
    );
    assert_eq!(wl.failed.load(Relaxed), 0, "{:?}", wl.errors());
    let summary: serde_json::Value = serde_json::from_str(stdout.trim()).expect("JSON summary");
    let rows_of = |name: &str| {
        summary["findings"]
            .as_array()
            .and_then(|f| f.iter().find(|x| x["name"] == name))
            .map(|x| (x["rows"].as_i64().unwrap_or(-1), x["action"].clone()))
    };
    assert_eq!(rows_of("orphan order_ref"), Some((0, "refuse".into())));
    assert_eq!(
        rows_of("order_status with stray case or whitespace"),
        Some((dirty_status, "fix".into()))
    );
    assert_eq!(
        rows_of("delivery_script_args that are not JSON objects"),
        Some((odd_json, "fix".into()))
    );
    let diff = workload::diff_count(&db.client, orders::EXPECTED, orders::ACTUAL)
        .await
        .unwrap();
    assert_eq!(diff, 0, "orders differ from the mirror");
    assert_eq!(
        scalar_i64(
            &db.client,
            "SELECT count(*) FROM orders WHERE jsonb_typeof(delivery_script_args) <> 'object'"
        )
        .await,
        0
    );

    // The same spec again: nothing to do, and nothing done.
    let after = table_fingerprint(&db.client, "orders").await;
    let again = wraith(&["migrate", "--dsn", &db.dsn, "--spec", path, "--execute"]);
    let stdout = String::from_utf8_lossy(&again.stdout);
    assert_eq!(again.status.code(), Some(0), "{stdout}");
    assert!(stdout.contains("already applied on "), "{stdout}");
    assert_eq!(table_fingerprint(&db.client, "orders").await, after);
    assert!(leftovers(&db.client).await.is_empty());
}
