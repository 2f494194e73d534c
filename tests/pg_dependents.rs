//! Everything that depends on the table survives the swap: foreign keys from other
//! tables and the table's own, views over it (and over those views), a
//! materialized view, a trigger, table and column grants, row-level security,
//! comments, a publication, storage parameters, SERIAL and identity sequences, and
//! the original index and constraint names. Migrated under concurrent writes.

mod common;

use std::time::Duration;

use common::*;
use wraith::engine::migration::Outcome;
use wraith::sandbox::PgOptions;

const ALTER: &str = "ALTER COLUMN amount TYPE bigint, ALTER COLUMN customer_id TYPE bigint";

async fn dependents_follow_the_new_table(opts: PgOptions) {
    let db = db_with(opts).await;
    let c = &db.client;
    c.batch_execute(dependents::FIXTURE).await.unwrap();
    let before = dependents::bound_to(c, "orders").await;

    // The dry run lists every object it will move.
    let plan = wraith_ok(&[
        "migrate", "--dsn", &db.dsn, "--table", "orders", "--alter", ALTER,
    ]);
    for object in [
        "big_orders",
        "big_order_count",
        "order_totals",
        "orders_touch",
        "order_items_order_id_fkey",
        "orders_parent_id_fkey",
        "app_pub",
        "clerk_small",
        "column privileges",
    ] {
        assert!(
            plan.contains(object),
            "the plan does not mention {object}:\n{plan}"
        );
    }

    let writer = dependents::Writer::start(&db).await;
    let mut opts = execute();
    opts.initial_chunk_rows = 300;
    let outcome = migrate(spec(&db.dsn, "orders", ALTER, &[], opts)).await;
    tokio::time::sleep(Duration::from_millis(300)).await;
    let failed = writer.stop().await;
    let Outcome::Migrated(_, summary) = outcome.expect("migration succeeds") else {
        panic!("dry run")
    };
    println!(
        "fixture cutover: writes blocked {} ms",
        summary.cutover_hold_ms
    );
    assert_eq!(failed, 0, "the application saw errors");

    // Every write went through: the new table equals the mirror the writer kept.
    let diff = wraith::bench::workload::diff_count(
        c,
        "SELECT id, seq_no, customer_id::bigint, amount::bigint, status, parent_id FROM orders_mirror",
        "SELECT id, seq_no, customer_id, amount, status, parent_id FROM orders",
    )
    .await
    .unwrap();
    assert_eq!(diff, 0, "the new table differs from the mirror");

    // Same dependents, same names, now on the new table; none left on the old one.
    assert_eq!(dependents::bound_to(c, "orders").await, before);
    let old = dependents::bound_to(c, "_orders_old").await;
    assert!(
        old.iter().all(|o| !o.starts_with("view ")
            && !o.starts_with("referenced by ")
            && !o.starts_with("publication ")),
        "the old table still has dependents: {old:?}"
    );
    let ty: String = c
        .query_one("SELECT format_type(atttypid, atttypmod) FROM pg_attribute WHERE attrelid = 'orders'::regclass AND attname = 'amount'", &[])
        .await
        .unwrap()
        .get(0);
    assert_eq!(ty, "bigint");

    // Foreign keys: validated after the swap and enforced against the new table.
    assert!(
        scalar_bool(
            c,
            "SELECT bool_and(convalidated) FROM pg_constraint WHERE confrelid = 'orders'::regclass"
        )
        .await
    );
    let max = scalar_i64(c, "SELECT max(id)::int8 FROM orders").await;
    c.batch_execute(&format!(
        "INSERT INTO order_items (order_id, qty) VALUES ({max}, 1)"
    ))
    .await
    .unwrap();
    assert!(
        c.batch_execute("INSERT INTO order_items (order_id, qty) VALUES (-1, 1)")
            .await
            .is_err()
    );

    // The trigger fires on the new table.
    c.batch_execute("UPDATE orders SET status = 'paid' WHERE id = 1")
        .await
        .unwrap();
    assert!(
        scalar_bool(
            c,
            "SELECT updated_at = '2000-01-01' FROM orders WHERE id = 1"
        )
        .await
    );

    // Sequences continue: SERIAL and identity.
    let (id, seq_no): (i32, i32) = {
        let r = c
            .query_one(
                "INSERT INTO orders (customer_id, amount) VALUES (1, 1) RETURNING id, seq_no",
                &[],
            )
            .await
            .unwrap();
        (r.get(0), r.get(1))
    };
    assert!(id as i64 > max);
    assert!(seq_no as i64 >= scalar_i64(c, "SELECT max(seq_no)::int8 FROM _orders_old").await);
    assert!(
        scalar_bool(
            c,
            "SELECT pg_get_serial_sequence('orders', 'seq_no') = 'public.orders_seq_no_seq'"
        )
        .await,
        "the identity sequence keeps its name"
    );

    // Privileges and row-level security, as each role sees them.
    c.batch_execute("SET ROLE clerk").await.unwrap();
    let visible = scalar_i64(c, "SELECT count(*) FROM orders").await;
    c.batch_execute("RESET ROLE").await.unwrap();
    assert_eq!(
        visible,
        scalar_i64(c, "SELECT count(*) FROM orders WHERE amount < 100").await
    );
    assert!(
        visible < scalar_i64(c, "SELECT count(*) FROM orders").await,
        "the policy filters"
    );
    c.batch_execute(
        "SET ROLE clerk; INSERT INTO orders (customer_id, amount) VALUES (2, 5); RESET ROLE",
    )
    .await
    .unwrap();
    c.batch_execute("SET ROLE auditor").await.unwrap();
    assert!(
        c.query("SELECT id, amount FROM orders LIMIT 1", &[])
            .await
            .is_ok()
    );
    assert!(
        c.query("SELECT status FROM orders LIMIT 1", &[])
            .await
            .is_err(),
        "column privilege kept narrow"
    );
    assert!(
        c.query("SELECT * FROM big_orders LIMIT 1", &[])
            .await
            .is_ok()
    );
    c.batch_execute("RESET ROLE").await.unwrap();

    // Views see the new table; comments, storage parameters and the matview's index are kept.
    assert_eq!(
        scalar_i64(c, "SELECT n FROM big_order_count").await,
        scalar_i64(c, "SELECT count(*) FROM orders WHERE amount > 50").await
    );
    assert!(
        scalar_bool(
            c,
            "SELECT obj_description('orders'::regclass, 'pg_class') = 'customer orders'"
        )
        .await
    );
    assert!(
        scalar_bool(
            c,
            "SELECT col_description('orders'::regclass, 4) = 'in cents'"
        )
        .await
    );
    assert!(
        scalar_bool(
            c,
            "SELECT obj_description('big_orders'::regclass, 'pg_class') = 'orders over 50'"
        )
        .await
    );
    assert!(
        scalar_bool(
            c,
            "SELECT reloptions = '{fillfactor=90}' FROM pg_class WHERE oid = 'orders'::regclass"
        )
        .await
    );
    assert!(scalar_bool(c, "SELECT to_regclass('order_totals_customer') IS NOT NULL").await);
    assert!(leftovers(c).await.is_empty(), "{:?}", leftovers(c).await);
}

on_postgres_versions!(dependents_follow_the_new_table,);
