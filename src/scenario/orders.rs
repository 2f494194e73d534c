//! The orders scenario: the original schema (`scenarios/orders/schema.sql`), a data
//! generator and the migration spec (`scenarios/orders/migration.toml`).
//!
//! Orders are recreated daily from their latest state, so they come in chains
//! sharing an `order_ref` (the first ancestor): earlier links are `recreated`, the
//! latest carries the live status. The generator runs server-side (rows never
//! travel through wraith) and is deterministic for a seed: every value is derived
//! from `md5(seed, row)`.

use crate::scenario::Draw;
use anyhow::Context;
use tokio_postgres::Client;

use crate::pg::conn::DbResult;
use crate::plan::SpecFile;

/// The original schema.
pub const SCHEMA: &str = include_str!("../../scenarios/orders/schema.sql");
/// The migration spec.
pub const MIGRATION: &str = include_str!("../../scenarios/orders/migration.toml");
/// Orders per chain (one order and its daily recreations).
pub const CHAIN: i64 = 4;

/// The customers migration spec.
pub const CUSTOMERS_MIGRATION: &str = include_str!("../../scenarios/orders/customers.toml");

/// The migration spec, parsed.
pub fn migration() -> anyhow::Result<SpecFile> {
    toml::from_str(MIGRATION).context("the built-in orders migration spec")
}

/// Creates the schema and loads `orders` orders and `orders / 100` customers.
pub async fn load(c: &Client, orders: i64, seed: u64) -> anyhow::Result<()> {
    c.batch_execute(SCHEMA)
        .await
        .db("creating the orders schema")?;
    let customers = (orders / 100).max(1);
    let h = |n: &str| hash(seed, n);
    c.batch_execute(&format!(
        "INSERT INTO customers (customer_id, customer_name, customer_email, customer_contact_name, customer_phone, address, \
                                address_state, customer_balance)
         SELECT g, 'Customer ' || g, 'customer' || g || '@example.com', 'Contact ' || g,
                '+1-555-' || lpad(g::text, 7, '0'), g || ' Main Street',
                (ARRAY['CA', 'NY', 'TX', 'WA', 'FL'])[1 + g % 5], round(({hc} * 2000)::numeric, 2)::float8
         FROM generate_series(1, {customers}) g;
         INSERT INTO orders (order_id, order_ref, customer_id, order_schedule, delivery_script_name, delivery_script_args,
                             order_amount, order_status)
         SELECT g, g - (g - 1) % {CHAIN},
                1 + ((g - 1) / {CHAIN}) % {customers},
                substring(('x' || md5('{seed}a' || g) || md5('{seed}b' || g) || md5('{seed}c' || g))::bit(384)
                          FROM 1 FOR 336)::bit(336),
                (ARRAY['daily_feed', 'sms_blast', 'email_digest', 'webhook'])[1 + g % 4],
                json_build_object('retries', g % 3, 'window', 30 + g % 90, 'channel',
                                  (ARRAY['sms', 'email', 'push'])[1 + g % 3]),
                10 + floor({ho} * 990)::int,
                CASE WHEN g % {CHAIN} <> 0 THEN 'recreated'
                     ELSE (ARRAY['active', 'active', 'active', 'pending', 'paused', 'cancelled', 'expired'])
                          [1 + floor({hs} * 7)::int] END
         FROM generate_series(1, {orders}) g;
         SELECT setval('orders_order_id_seq', {orders});
         SELECT setval('customers_customer_id_seq', {customers});
         ANALYZE customers; ANALYZE orders;",
        hc = h("g"),
        ho = h("g * 7"),
        hs = h("g * 13"),
    ))
    .await
    .db("generating the orders data")
}

/// SQL for a deterministic number in [0, 1) for the seed and the SQL expression `n`.
fn hash(seed: u64, n: &str) -> String {
    format!("(('x' || substr(md5('{seed}-' || {n}), 1, 8))::bit(32)::int8::float8 / 4294967296.0)")
}

/// Dirt, as years of a live system leave it (`--dirty`), on a freshly loaded
/// scenario: orphan `order_ref`s (chains whose first order was deleted by hand),
/// status text with stray case or whitespace (written before the CHECK existed; it
/// was added `NOT VALID`), `delivery_script_args` that are not JSON objects,
/// duplicate customer emails and negative balances. What the specs do with each is
/// in `scenarios/orders/README.md`.
pub async fn add_dirt(c: &Client, seed: u64) -> anyhow::Result<()> {
    let h = |n: &str| hash(seed, n);
    c.batch_execute(&format!(
        "DELETE FROM orders WHERE order_id = order_ref AND {h17} < 0.01;
         ALTER TABLE orders DROP CONSTRAINT orders_order_status_check;
         UPDATE orders SET order_status = CASE WHEN {h19} < 0.005 THEN initcap(order_status)
                                              ELSE ' ' || order_status || ' ' END
         WHERE {h19} < 0.01;
         ALTER TABLE orders ADD CONSTRAINT orders_order_status_check CHECK (order_status IN
             ('pending', 'active', 'paused', 'cancelled', 'expired', 'recreated')) NOT VALID;
         UPDATE orders SET delivery_script_args = (ARRAY['[\"sms\", 3]', '\"legacy\"', '42', 'null'])
             [1 + floor({h23} * 400)::int % 4]::json
         WHERE {h23} < 0.005;
         UPDATE customers SET customer_email = 'customer' || (customer_id - 1) || '@example.com'
         WHERE customer_id > 1 AND {hc29} < 0.02;
         UPDATE customers SET customer_balance = -customer_balance WHERE {hc31} < 0.03;
         ANALYZE customers; ANALYZE orders;",
        h17 = h("order_id * 17"),
        h19 = h("order_id * 19"),
        h23 = h("order_id * 23"),
        hc29 = h("customer_id * 29"),
        hc31 = h("customer_id * 31"),
    ))
    .await
    .db("adding dirt to the orders data")
}

/// What the orders spec's refusal of orphan `order_ref`s asks the DBA to run: each
/// broken chain is re-rooted at its oldest surviving order. Their statuses are
/// cleaned too: the `NOT VALID` CHECK applies to every row an UPDATE writes.
/// `{t}` is the table.
pub const REROOT_ORPHANS: &str = "UPDATE {t} o SET order_ref = r.root, order_status = lower(trim(o.order_status)) \
     FROM (SELECT order_ref, min(order_id) AS root FROM {t} c \
           WHERE NOT EXISTS (SELECT 1 FROM {t} p WHERE p.order_id = c.order_ref) GROUP BY order_ref) r \
     WHERE o.order_ref = r.order_ref";

/// Creates `orders_mirror`, the oracle the workload keeps in step with `orders`.
pub async fn create_mirror(c: &Client) -> anyhow::Result<()> {
    c.batch_execute(
        // Without the CHECK: dirty rows predate it (it is NOT VALID on orders).
        "CREATE TABLE orders_mirror (LIKE orders INCLUDING ALL EXCLUDING CONSTRAINTS); \
         INSERT INTO orders_mirror SELECT * FROM orders",
    )
    .await
    .db("creating the orders mirror")
}

/// What the migrated `orders` must equal: the mirror with the spec's conversions.
pub const EXPECTED: &str = "SELECT order_id::bigint, order_ref::bigint, customer_id, order_schedule, \
     delivery_script_name, CASE WHEN delivery_script_args IS NULL OR json_typeof(delivery_script_args) = 'object' \
     THEN delivery_script_args::jsonb ELSE jsonb_build_object('value', delivery_script_args::jsonb) END, \
     order_amount, lower(trim(order_status)) FROM orders_mirror";
pub const ACTUAL: &str = "SELECT order_id, order_ref, customer_id, order_schedule, delivery_script_name, \
     delivery_script_args, order_amount, order_status::text FROM orders";

/// One workload transaction on `orders` and, identically, on `orders_mirror`: the
/// daily recreation (a new order from an active one whose customer can pay, the
/// parent set to `recreated`), status and amount changes, deletes of expired
/// orders nothing refers to. Statements keep working after the swap (literals for
/// statuses, int8 parameters cast by the server).
///
/// Which rows a change touches is decided on the mirror, and the same keys are then
/// changed in `orders`: with dirty data the migration cleans statuses (` Active`
/// becomes `active`), and the oracle must not start treating those rows differently
/// at the swap. Only clean live statuses are changed, as the application would
/// (dirty ones fail the `NOT VALID` CHECK).
pub async fn one_transaction(c: &Client, draw: Draw) -> anyhow::Result<()> {
    let Draw {
        op,
        key,
        amount,
        status,
    } = draw;
    c.batch_execute("BEGIN").await.db("begin")?;
    match op {
        0..=34 => {
            let born = c
                .query_opt(
                    "INSERT INTO orders (order_ref, customer_id, order_schedule, delivery_script_name, \
                       delivery_script_args, order_amount, order_status) \
                     SELECT o.order_ref, o.customer_id, o.order_schedule, o.delivery_script_name, \
                       o.delivery_script_args, o.order_amount, 'active' \
                     FROM orders o JOIN customers c ON c.customer_id = o.customer_id \
                     WHERE o.order_id = $1::int8 AND o.order_status = 'active' AND c.customer_balance > o.order_amount \
                     RETURNING order_id::int8",
                    &[&key],
                )
                .await
                .db("recreating an order")?;
            if let Some(row) = born {
                let id: i64 = row.get(0);
                c.execute(
                    "INSERT INTO orders_mirror SELECT $2::int8, order_ref, customer_id, order_schedule, \
                       delivery_script_name, delivery_script_args, order_amount, 'active' \
                     FROM orders_mirror WHERE order_id = $1::int8",
                    &[&key, &id],
                )
                .await
                .db("recreating an order (mirror)")?;
                // Rows are locked mirror first in every transaction (no deadlocks).
                for t in ["orders_mirror", "orders"] {
                    c.execute(
                        &format!(
                            "UPDATE {t} SET order_status = 'recreated' WHERE order_id = $1::int8"
                        ),
                        &[&key],
                    )
                    .await
                    .db("marking the parent recreated")?;
                }
            }
        }
        35..=59 => {
            let mirror = format!(
                "UPDATE orders_mirror SET order_status = '{status}' WHERE order_id = $1::int8 \
                 AND order_status IN ('active', 'paused', 'pending') RETURNING 1"
            );
            let orders =
                format!("UPDATE orders SET order_status = '{status}' WHERE order_id = $1::int8");
            mirror_decides(c, &mirror, &orders, &[&key], "changing a status").await?;
        }
        60..=84 => {
            let mirror = "UPDATE orders_mirror SET order_amount = $2::int8 WHERE order_id = $1::int8 \
                          AND order_status IN ('active', 'paused', 'pending') RETURNING 1";
            let orders = "UPDATE orders SET order_amount = $2::int8 WHERE order_id = $1::int8";
            mirror_decides(c, mirror, orders, &[&key, &amount], "changing an amount").await?;
        }
        _ => {
            let mirror = "DELETE FROM orders_mirror o WHERE o.order_id = $1::int8 AND o.order_status = 'expired' \
                          AND NOT EXISTS (SELECT 1 FROM orders_mirror r WHERE r.order_ref = o.order_id \
                          AND r.order_id <> o.order_id) RETURNING 1";
            let orders = "DELETE FROM orders WHERE order_id = $1::int8";
            mirror_decides(c, mirror, orders, &[&key], "deleting an expired order").await?;
        }
    }
    c.batch_execute("COMMIT").await.db("commit")?;
    Ok(())
}

/// Runs `mirror` (which returns a row when it changed one) and, when it did, `orders`.
async fn mirror_decides(
    c: &Client,
    mirror: &str,
    orders: &str,
    params: &[&(dyn tokio_postgres::types::ToSql + Sync)],
    what: &'static str,
) -> anyhow::Result<()> {
    if c.query_opt(mirror, params).await.db(what)?.is_some() {
        c.execute(orders, params).await.db(what)?;
    }
    Ok(())
}
