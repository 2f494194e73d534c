//! The orders scenario on MySQL/MariaDB: the original schema in MySQL types
//! (`scenarios/orders/schema.mysql.sql`: a BINARY(42) schedule bitmap, JSON
//! arguments, a DOUBLE balance, AUTO_INCREMENT keys), the same deterministic data
//! as on PostgreSQL's generator in spirit (chains of daily recreations), the
//! migration spec (`migration.mysql.toml`), a mirror and the workload's
//! transaction. The generator runs server-side: rows never travel through wraith.

use crate::scenario::Draw;
use anyhow::Context;
use mysql_async::Conn;
use mysql_async::prelude::Queryable;

use crate::bench::mysql_workload::numbers_10k;
use crate::mysql::conn::MyResult;
use crate::plan::SpecFile;
use crate::scenario::orders::CHAIN;

/// The original schema.
pub const SCHEMA: &str = include_str!("../../scenarios/orders/schema.mysql.sql");
/// The migration spec.
pub const MIGRATION: &str = include_str!("../../scenarios/orders/migration.mysql.toml");

/// The migration spec, parsed.
pub fn migration() -> anyhow::Result<SpecFile> {
    toml::from_str(MIGRATION).context("the built-in MySQL orders migration spec")
}

/// SQL for a deterministic number in [0, 1) for the seed and the SQL expression `n`.
fn hash(seed: u64, n: &str) -> String {
    format!("(CONV(SUBSTR(SHA2(CONCAT('{seed}-', {n}), 256), 1, 8), 16, 10) / 4294967296.0)")
}

/// Creates the schema and loads `orders` orders and `orders / 100` customers.
pub async fn load(c: &mut Conn, orders: i64, seed: u64) -> anyhow::Result<()> {
    c.query_drop(SCHEMA)
        .await
        .my("creating the orders schema")?;
    let customers = (orders / 100).max(1);
    let numbers = numbers_10k();
    let hc = hash(seed, "g");
    let mut done = 0;
    while done < customers {
        let n = (customers - done).min(10_000);
        c.query_drop(format!(
            "INSERT INTO customers (customer_id, customer_name, customer_email, customer_contact_name, customer_phone, \
                                    address, address_state, customer_balance)
             SELECT g, CONCAT('Customer ', g), CONCAT('customer', g, '@example.com'), CONCAT('Contact ', g),
                    CONCAT('+1-555-', LPAD(g, 7, '0')), CONCAT(g, ' Main Street'),
                    ELT(1 + g % 5, 'CA', 'NY', 'TX', 'WA', 'FL'), ROUND({hc} * 2000, 2)
             FROM (SELECT {done} + d.n AS g FROM {numbers} d WHERE d.n <= {n}) s"
        ))
        .await
        .my("generating the customers")?;
        done += n;
    }
    let (ho, hs) = (hash(seed, "g * 7"), hash(seed, "g * 13"));
    let mut done = 0;
    while done < orders {
        let n = (orders - done).min(10_000);
        c.query_drop(format!(
            "INSERT INTO orders (order_id, order_ref, customer_id, order_schedule, delivery_script_name,
                                 delivery_script_args, order_amount, order_status)
             SELECT g, g - (g - 1) % {CHAIN}, 1 + FLOOR((g - 1) / {CHAIN}) % {customers},
                    UNHEX(SUBSTR(CONCAT(SHA2(CONCAT('{seed}a', g), 256),
                                        SHA2(CONCAT('{seed}b', g), 256)), 1, 84)),
                    ELT(1 + g % 4, 'daily_feed', 'sms_blast', 'email_digest', 'webhook'),
                    JSON_OBJECT('retries', g % 3, 'window', 30 + g % 90,
                                'channel', ELT(1 + g % 3, 'sms', 'email', 'push')),
                    10 + FLOOR({ho} * 990),
                    IF(g % {CHAIN} <> 0, 'recreated',
                       ELT(1 + FLOOR({hs} * 7), 'active', 'active', 'active', 'pending', 'paused', 'cancelled',
                           'expired'))
             FROM (SELECT {done} + d.n AS g FROM {numbers} d WHERE d.n <= {n}) s"
        ))
        .await
        .my("generating the orders")?;
        done += n;
    }
    // The key from orders to customers, which wraith carries to the new table.
    // The rows were generated with their customers, so it is added without
    // checking them again.
    c.query_drop(
        "SET SESSION foreign_key_checks = 0; \
         ALTER TABLE orders ADD CONSTRAINT orders_customer_fk FOREIGN KEY (customer_id) \
         REFERENCES customers (customer_id); \
         SET SESSION foreign_key_checks = 1",
    )
    .await
    .my("adding the key from orders to customers")?;
    c.query_drop("ANALYZE TABLE customers, orders")
        .await
        .my("analyzing the orders tables")
}

/// Creates `orders_mirror`, the oracle the workload keeps in step with `orders`
/// (indexed on `order_ref`, which the workload's deletes look up).
pub async fn create_mirror(c: &mut Conn) -> anyhow::Result<()> {
    c.query_drop(
        "CREATE TABLE orders_mirror LIKE orders; \
         INSERT INTO orders_mirror SELECT * FROM orders",
    )
    .await
    .my("creating the orders mirror")
}

/// What the migrated `orders` must hold, from the mirror with the spec's
/// conversions, and what it holds: (order_id, row hash), ordered.
pub const EXPECTED: &str = "SELECT order_id, SHA2(CONCAT_WS('|', order_ref, customer_id, HEX(order_schedule), \
     delivery_script_name, delivery_script_args, order_amount, LOWER(TRIM(order_status)), ISNULL(customer_id), \
     ISNULL(order_schedule), ISNULL(delivery_script_name), ISNULL(delivery_script_args), ISNULL(order_amount)), 256) \
     FROM orders_mirror ORDER BY order_id";
pub const ACTUAL: &str = "SELECT order_id, SHA2(CONCAT_WS('|', order_ref, customer_id, HEX(order_schedule), \
     delivery_script_name, delivery_script_args, order_amount, order_status, ISNULL(customer_id), \
     ISNULL(order_schedule), ISNULL(delivery_script_name), ISNULL(delivery_script_args), ISNULL(order_amount)), 256) \
     FROM orders ORDER BY order_id";

/// One workload transaction on `orders` and, identically, on `orders_mirror`, as
/// on PostgreSQL (see [`crate::scenario::orders::one_transaction`]): the daily
/// recreation (a new order, its key from AUTO_INCREMENT, from an active one whose
/// customer can pay; the parent set to `recreated`), status and amount changes,
/// deletes of expired orders nothing refers to (only a chain's first order is
/// referred to). The mirror decides which rows change; rows are locked mirror
/// first in every transaction, so the workload does not deadlock with itself.
pub async fn one_transaction(c: &mut Conn, draw: Draw) -> anyhow::Result<()> {
    let Draw {
        op,
        key,
        amount,
        status,
    } = draw;
    c.query_drop("BEGIN").await.my("begin")?;
    match op {
        0..=34 => {
            c.exec_drop(
                "SELECT 1 FROM orders_mirror WHERE order_id = ? FOR UPDATE",
                (key,),
            )
            .await
            .my("locking the parent (mirror)")?;
            c.exec_drop(
                "INSERT INTO orders (order_ref, customer_id, order_schedule, delivery_script_name, \
                   delivery_script_args, order_amount, order_status) \
                 SELECT o.order_ref, o.customer_id, o.order_schedule, o.delivery_script_name, \
                   o.delivery_script_args, o.order_amount, 'active' \
                 FROM orders o JOIN customers c ON c.customer_id = o.customer_id \
                 WHERE o.order_id = ? AND o.order_status = 'active' AND c.customer_balance > o.order_amount",
                (key,),
            )
            .await
            .my("recreating an order")?;
            if c.affected_rows() == 1 {
                let id = c
                    .last_insert_id()
                    .context("recreating an order: no new key")?;
                c.exec_drop(
                    "INSERT INTO orders_mirror SELECT ?, order_ref, customer_id, order_schedule, \
                       delivery_script_name, delivery_script_args, order_amount, 'active' \
                     FROM orders_mirror WHERE order_id = ?",
                    (id, key),
                )
                .await
                .my("recreating an order (mirror)")?;
                for t in ["orders_mirror", "orders"] {
                    c.exec_drop(
                        format!("UPDATE {t} SET order_status = 'recreated' WHERE order_id = ?"),
                        (key,),
                    )
                    .await
                    .my("marking the parent recreated")?;
                }
            }
        }
        35..=59 => {
            let mirror = format!(
                "UPDATE orders_mirror SET order_status = '{status}' WHERE order_id = ? \
                 AND order_status IN ('active', 'paused', 'pending')"
            );
            let orders = format!("UPDATE orders SET order_status = '{status}' WHERE order_id = ?");
            mirror_decides(c, &mirror, &orders, vec![key.into()], "changing a status").await?;
        }
        60..=84 => {
            let mirror = "UPDATE orders_mirror SET order_amount = ? WHERE order_id = ? \
                          AND order_status IN ('active', 'paused', 'pending')";
            let orders = "UPDATE orders SET order_amount = ? WHERE order_id = ?";
            mirror_decides(
                c,
                mirror,
                orders,
                vec![amount.into(), key.into()],
                "changing an amount",
            )
            .await?;
        }
        _ => {
            let mirror = "DELETE FROM orders_mirror WHERE order_id = ? AND order_status = 'expired' \
                          AND order_ref <> order_id";
            let orders = "DELETE FROM orders WHERE order_id = ?";
            mirror_decides(
                c,
                mirror,
                orders,
                vec![key.into()],
                "deleting an expired order",
            )
            .await?;
        }
    }
    c.query_drop("COMMIT").await.my("commit")
}

/// Runs `mirror` and, when it changed a row, `orders` with the same parameters.
async fn mirror_decides(
    c: &mut Conn,
    mirror: &str,
    orders: &str,
    params: Vec<mysql_async::Value>,
    what: &'static str,
) -> anyhow::Result<()> {
    c.exec_drop(mirror, params.clone()).await.my(what)?;
    if c.affected_rows() > 0 {
        c.exec_drop(orders, params).await.my(what)?;
    }
    Ok(())
}
