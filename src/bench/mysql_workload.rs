//! A write workload on MySQL/MariaDB with a mirror, for the oracle test and
//! benchmarks: `items` (every column kind wraith must carry: integers, NULLable
//! text, large BLOBs, JSON, DOUBLE, a status string to clean up) and
//! `items_mirror`, which every transaction changes the same way in the same
//! transaction. Inserts, updates (NULLs, 20 kB blobs), key moves and deletes.

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicI64, Ordering::Relaxed};
use std::time::Instant;

use mysql_async::Conn;
use mysql_async::prelude::Queryable;
use rand::RngExt;

use crate::bench::workload::{Pace, Scenario, Workload, WorkloadConfig, WorkloadStats};
use crate::mysql::conn::{self, MyResult};
use crate::scenario::orders_mysql;

/// The items table's columns as the workload writes them.
const COLUMNS: &str = "id, qty, label, payload, doc, amount, status";

/// Creates `items` and `items_mirror` with `rows` equal rows. The rows carry the
/// mess a migration cleans: statuses with stray case and spaces, NULL labels.
pub async fn create_items(c: &mut Conn, rows: i64) -> anyhow::Result<()> {
    c.query_drop(
        "DROP TABLE IF EXISTS items, items_mirror;
         CREATE TABLE items (
           id bigint PRIMARY KEY,
           qty int NOT NULL,
           label varchar(40) NULL,
           note text,
           gone int NULL,
           payload longblob,
           doc json,
           amount double,
           status varchar(12) NOT NULL
         ) ENGINE=InnoDB;
         CREATE TABLE items_mirror LIKE items;",
    )
    .await
    .my("creating items")?;
    let numbers = numbers_10k();
    let mut done = 0;
    while done < rows {
        let n = (rows - done).min(10_000);
        c.query_drop(format!(
            "INSERT INTO items (id, qty, label, note, gone, payload, doc, amount, status)
             SELECT {done} + d.n, d.n % 100,
                    IF(d.n % 10 = 0, NULL, CONCAT('label ', d.n)),
                    CONCAT('note ', d.n), d.n,
                    REPEAT(CHAR(65 + d.n % 26), 50 + d.n % 200),
                    JSON_OBJECT('n', d.n, 'tags', JSON_ARRAY('a', 'b')),
                    d.n / 7,
                    ELT(1 + d.n % 4, 'new', ' Paid', 'SHIPPED ', 'paid')
             FROM {numbers} d
             WHERE d.n <= {n}"
        ))
        .await
        .my("loading items")?;
        done += n;
    }
    c.query_drop("INSERT INTO items_mirror SELECT * FROM items")
        .await
        .my("loading items_mirror")?;
    Ok(())
}

/// A derived table of the numbers 1 to 10,000 in column `n`: a sequence
/// generator that works on MariaDB and MySQL alike.
pub fn numbers_10k() -> String {
    let digits = "(SELECT 0 i UNION ALL SELECT 1 UNION ALL SELECT 2 UNION ALL SELECT 3 UNION ALL SELECT 4 \
                  UNION ALL SELECT 5 UNION ALL SELECT 6 UNION ALL SELECT 7 UNION ALL SELECT 8 UNION ALL SELECT 9)";
    format!(
        "(SELECT a.i + b.i * 10 + c.i * 100 + e.i * 1000 + 1 AS n \
          FROM {digits} a, {digits} b, {digits} c, {digits} e)"
    )
}

/// The migration the oracle runs on `items`: a wider type, a widened string, a
/// rename, a dropped and an added column, and an ENUM filled by a transform.
pub const ITEMS_ALTER: &str = "MODIFY qty bigint NOT NULL, MODIFY label varchar(80) NULL, \
     CHANGE COLUMN note memo text, DROP COLUMN gone, ADD COLUMN extra int NOT NULL DEFAULT 7, \
     MODIFY status enum('new','paid','shipped') NOT NULL, ADD INDEX items_label_idx (label)";
pub const ITEMS_TRANSFORM: (&str, &str) = ("status", "LOWER(TRIM(status))");
/// What `items` must hold afterwards, from the mirror; and what it holds.
pub const ITEMS_EXPECTED: &str = "SELECT id, SHA2(CONCAT_WS('|', qty, label, note, payload, doc, amount, \
     LOWER(TRIM(status)), 7, ISNULL(label), ISNULL(note)), 256) FROM items_mirror ORDER BY id";
pub const ITEMS_ACTUAL: &str = "SELECT id, SHA2(CONCAT_WS('|', qty, label, memo, payload, doc, amount, \
     status, extra, ISNULL(label), ISNULL(memo)), 256) FROM items ORDER BY id";

/// Rows of `expected` and `actual` (id, row hash) that differ, as ids.
pub async fn diff(c: &mut Conn, expected: &str, actual: &str) -> anyhow::Result<Vec<i64>> {
    let e: Vec<(i64, String)> = c.query(expected).await.my("reading the expected rows")?;
    let a: Vec<(i64, String)> = c.query(actual).await.my("reading the actual rows")?;
    let e: std::collections::BTreeMap<i64, String> = e.into_iter().collect();
    let a: std::collections::BTreeMap<i64, String> = a.into_iter().collect();
    let mut ids: Vec<i64> = e
        .iter()
        .filter(|(k, v)| a.get(*k) != Some(*v))
        .map(|(k, _)| *k)
        .chain(a.keys().filter(|k| !e.contains_key(*k)).copied())
        .collect();
    ids.sort();
    Ok(ids)
}

/// Starts `cfg.clients` sessions writing the scenario's table and its mirror.
pub async fn start(cfg: WorkloadConfig) -> anyhow::Result<Workload> {
    let stop = Arc::new(AtomicBool::new(false));
    let stats = Arc::new(WorkloadStats::new());
    let next_id = Arc::new(AtomicI64::new(cfg.initial_rows + 1_000_000));
    let started = Instant::now();
    let mut tasks = Vec::new();
    for i in 0..cfg.clients.max(1) {
        let c = conn::connect(&crate::dsn::Dsn::parse(&cfg.dsn)?, "workload").await?;
        let c = Arc::new(tokio::sync::Mutex::new(c));
        let (cfg, stop, stats, next_id) =
            (cfg.clone(), stop.clone(), stats.clone(), next_id.clone());
        tasks.push(tokio::spawn(async move {
            let pace = Pace::of(&cfg, i, started);
            pace.run(&stop, &stats, || {
                let (c, next_id, rows, scenario) =
                    (c.clone(), next_id.clone(), cfg.initial_rows, cfg.scenario);
                async move {
                    let mut c = c.lock().await;
                    let result = match scenario {
                        Scenario::Items => one_transaction(&mut c, rows, &next_id).await,
                        Scenario::Orders => {
                            orders_mysql::one_transaction(
                                &mut c,
                                crate::scenario::Draw::random(rows),
                            )
                            .await
                        }
                    };
                    if result.is_err() {
                        let _ = c.query_drop("ROLLBACK").await;
                    }
                    result
                }
            })
            .await;
        }));
    }
    Ok(Workload { stop, tasks, stats })
}

/// One transaction: the same change to `items` and to `items_mirror`.
async fn one_transaction(c: &mut Conn, rows: i64, next_id: &AtomicI64) -> anyhow::Result<()> {
    let (op, id, n, big, null_label) = {
        let mut rng = rand::rng();
        (
            rng.random_range(0..100u32),
            rng.random_range(1..=rows.max(1)),
            rng.random_range(0..1_000_000i64),
            rng.random_range(0..26u8),
            rng.random_range(0..5u32) == 0,
        )
    };
    let label = (!null_label).then(|| format!("label {n} ü"));
    let status = ["new", "paid", "shipped"][(n % 3) as usize];
    let new_id = next_id.fetch_add(1, Relaxed);
    c.query_drop("BEGIN").await.my("workload: begin")?;
    for table in ["items", "items_mirror"] {
        match op {
            0..=34 => {
                c.exec_drop(
                    format!(
                        "UPDATE {table} SET qty = qty + 1, label = ?, doc = JSON_SET(doc, '$.u', ?), \
                         amount = ? WHERE id = ?"
                    ),
                    (&label, n, n as f64 / 3.0, id),
                )
                .await
                .my("workload: update")?;
            }
            35..=44 => {
                c.exec_drop(
                    format!("UPDATE {table} SET payload = REPEAT(CHAR(?), 20000), status = ? WHERE id = ?"),
                    (65 + big, status, id),
                )
                .await
                .my("workload: large update")?;
            }
            45..=69 => {
                c.exec_drop(
                    format!(
                        "INSERT INTO {table} ({COLUMNS}) VALUES (?, ?, ?, REPEAT('z', ?), \
                         JSON_OBJECT('new', ?), ?, ?)"
                    ),
                    (new_id, n % 50, &label, n % 300, n, n as f64, status),
                )
                .await
                .my("workload: insert")?;
            }
            70..=84 => {
                c.exec_drop(format!("DELETE FROM {table} WHERE id = ?"), (id,))
                    .await
                    .my("workload: delete")?;
            }
            _ => {
                c.exec_drop(
                    format!("UPDATE {table} SET id = ? WHERE id = ?"),
                    (new_id, id),
                )
                .await
                .my("workload: key move")?;
            }
        }
    }
    c.query_drop("COMMIT").await.my("workload: commit")
}
