//! A concurrent write workload with a mirror (the oracle of DESIGN section 6).
//!
//! The `items` shape: int key, text, nullable columns, a JSON column whose values
//! are sometimes large enough to be TOASTed, a bit(8) and a bytea column. Every
//! transaction applies the same change to the table and to its mirror, so after a
//! migration the rewritten table must equal the (transformed) mirror.
//!
//! Statements are written to keep working after the swap to the new shape: keys
//! and amounts travel as int8 and are cast by the server, statuses are literals
//! (they may become an enum), JSON values are typed by the server (json or jsonb).

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicI64, AtomicU64, Ordering::Relaxed};
use std::time::{Duration, Instant};

use anyhow::Context;
use hdrhistogram::Histogram;
use rand::RngExt;
use tokio_postgres::Client;

use crate::pg::conn::DbResult;
use crate::pg::sql::ident;

const STATUSES: [&str; 4] = ["pending", "active", "paused", "cancelled"];

/// Creates `table` and `{table}_mirror` with `rows` rows each.
pub async fn create_items(c: &Client, table: &str, rows: i64) -> anyhow::Result<()> {
    create_items_padded(c, table, rows, 0).await
}

/// Like [`create_items`], with a `pad` column of `pad` bytes per row (rows the
/// workload inserts get it too), to set the row width.
pub async fn create_items_padded(
    c: &Client,
    table: &str,
    rows: i64,
    pad: usize,
) -> anyhow::Result<()> {
    let t = ident(table);
    let m = ident(&format!("{table}_mirror"));
    let pad_column = if pad > 0 {
        format!(", pad text NOT NULL DEFAULT repeat('x', {pad})")
    } else {
        String::new()
    };
    c.batch_execute(&format!(
        "CREATE TABLE {t} (
            id int PRIMARY KEY,
            owner_id int NOT NULL,
            status text NOT NULL,
            amount int,
            note text,
            payload json,
            flags bit(8),
            blob bytea,
            created_at timestamptz NOT NULL DEFAULT now()
            {pad_column}
         );
         CREATE INDEX ON {t} (owner_id);
         CREATE TABLE {m} (LIKE {t} INCLUDING ALL);
         INSERT INTO {t}
         SELECT g, g % 1000, (ARRAY['pending','active','paused','cancelled'])[g % 4 + 1], g % 10000,
                CASE WHEN g % 7 = 0 THEN NULL ELSE 'note ' || g || ' ✓ héllo' END,
                json_build_object('n', g, 'pad', CASE WHEN g % 100 = 0
                    THEN (SELECT string_agg(md5((g * 31 + i)::text), '') FROM generate_series(1, 200) i)
                    ELSE '' END),
                (g % 256)::bit(8), decode(md5(g::text), 'hex'), '2024-01-01'::timestamptz + g * interval '1 second'
         FROM generate_series(1, {rows}) g;
         INSERT INTO {m} SELECT * FROM {t};
         ANALYZE {t}; ANALYZE {m};"
    ))
    .await
    .db("creating the items table")
}

#[derive(Debug, Clone)]
pub struct WorkloadConfig {
    pub dsn: String,
    pub table: String,
    /// Concurrent sessions.
    pub clients: usize,
    /// Target transactions per second over all sessions (`None`: as fast as possible).
    pub tps: Option<u64>,
    /// Keys `1..=initial_rows` exist at start; new keys are drawn above.
    pub initial_rows: i64,
    /// Stop by itself after this long, whatever happens.
    pub max_duration: Duration,
    /// Include primary-key updates.
    pub key_updates: bool,
    pub scenario: Scenario,
}

/// Which transactions the workload runs.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum Scenario {
    /// `items` and its mirror (see [`create_items`]).
    #[default]
    Items,
    /// `orders` and `orders_mirror` (see [`crate::scenario::orders`]).
    Orders,
}

/// Counters shared by the workload's sessions.
#[derive(Debug)]
pub struct WorkloadStats {
    pub committed: AtomicU64,
    pub failed: AtomicU64,
    pub max_latency_us: AtomicU64,
    errors: std::sync::Mutex<Vec<String>>,
    /// (start, latency) of every committed transaction, unix microseconds and
    /// microseconds, so a report can cut windows after the fact.
    timeline: std::sync::Mutex<Vec<(u64, u64)>>,
}

impl WorkloadStats {
    pub(crate) fn new() -> WorkloadStats {
        WorkloadStats {
            committed: AtomicU64::new(0),
            failed: AtomicU64::new(0),
            max_latency_us: AtomicU64::new(0),
            errors: std::sync::Mutex::new(Vec::new()),
            timeline: std::sync::Mutex::new(Vec::new()),
        }
    }

    /// Resets the longest latency seen and returns the previous value.
    pub fn take_max_latency(&self) -> Duration {
        Duration::from_micros(self.max_latency_us.swap(0, Relaxed))
    }

    /// Latencies (microseconds) of the transactions picked by `keep(start_us, end_us)`.
    pub fn window(&self, keep: impl Fn(u64, u64) -> bool) -> anyhow::Result<Histogram<u64>> {
        let mut h = Histogram::new_with_bounds(1, 600_000_000, 3)?;
        for &(start, us) in self
            .timeline
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .iter()
        {
            if keep(start, start + us) {
                h.record(us.clamp(1, h.high()))?;
            }
        }
        Ok(h)
    }

    pub fn errors(&self) -> Vec<String> {
        self.errors
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .clone()
    }
}

/// A running workload; stop it with [`Workload::stop`].
pub struct Workload {
    pub(crate) stop: Arc<AtomicBool>,
    pub(crate) tasks: Vec<tokio::task::JoinHandle<()>>,
    pub stats: Arc<WorkloadStats>,
}

impl Workload {
    pub async fn start(cfg: WorkloadConfig) -> anyhow::Result<Workload> {
        let stop = Arc::new(AtomicBool::new(false));
        let stats = Arc::new(WorkloadStats::new());
        let next_id = Arc::new(AtomicI64::new(cfg.initial_rows + 1));
        let mut tasks = Vec::new();
        let started = Instant::now();
        for i in 0..cfg.clients.max(1) {
            let (client, conn) = tokio_postgres::connect(&cfg.dsn, tokio_postgres::NoTls)
                .await
                .context("workload: connecting")?;
            tokio::spawn(async move {
                let _ = conn.await;
            });
            let (cfg, stop, stats, next_id) =
                (cfg.clone(), stop.clone(), stats.clone(), next_id.clone());
            tasks.push(tokio::spawn(async move {
                session(i, client, cfg, stop, stats, next_id, started).await;
            }));
        }
        Ok(Workload { stop, tasks, stats })
    }

    /// Stops every session and waits for them.
    pub async fn stop(self) -> Arc<WorkloadStats> {
        self.stop.store(true, Relaxed);
        for t in self.tasks {
            let _ = t.await;
        }
        self.stats
    }
}

async fn session(
    index: usize,
    client: Client,
    cfg: WorkloadConfig,
    stop: Arc<AtomicBool>,
    stats: Arc<WorkloadStats>,
    next_id: Arc<AtomicI64>,
    started: Instant,
) {
    let pace = Pace::of(&cfg, index, started);
    let client = Arc::new(client);
    pace.run(&stop, &stats, || {
        let (client, cfg, next_id) = (client.clone(), cfg.clone(), next_id.clone());
        async move {
            let result = match cfg.scenario {
                Scenario::Items => one_transaction(&client, &cfg, &next_id).await,
                Scenario::Orders => {
                    let draw = crate::scenario::Draw::random(cfg.initial_rows);
                    crate::scenario::orders::one_transaction(&client, draw).await
                }
            };
            if result.is_err() {
                let _ = client.batch_execute("ROLLBACK").await;
            }
            result
        }
    })
    .await;
}

/// One workload session's schedule: a steady rate (or as fast as it can), for at
/// most the configured time.
pub(crate) struct Pace {
    per_session: Option<Duration>,
    offset: Duration,
    max_duration: Duration,
    started: Instant,
}

impl Pace {
    pub(crate) fn of(cfg: &WorkloadConfig, index: usize, started: Instant) -> Pace {
        let per_session = cfg
            .tps
            .map(|t| Duration::from_secs_f64(cfg.clients.max(1) as f64 / t.max(1) as f64));
        Pace {
            per_session,
            offset: per_session
                .unwrap_or_default()
                .mul_f64(index as f64 / cfg.clients.max(1) as f64),
            max_duration: cfg.max_duration,
            started,
        }
    }

    /// Runs `txn` on schedule until `stop`, recording each outcome in `stats`.
    pub(crate) async fn run<F, Fut>(&self, stop: &AtomicBool, stats: &WorkloadStats, mut txn: F)
    where
        F: FnMut() -> Fut,
        Fut: std::future::Future<Output = anyhow::Result<()>>,
    {
        let mut next_at = Instant::now() + self.offset;
        while !stop.load(Relaxed) && self.started.elapsed() < self.max_duration {
            if let Some(p) = self.per_session {
                let now = Instant::now();
                if next_at > now {
                    tokio::time::sleep(next_at - now).await;
                }
                next_at += p;
                // After a long stall, do not burst to catch up.
                if next_at + p * 10 < Instant::now() {
                    next_at = Instant::now();
                }
            }
            let t0 = Instant::now();
            let start_us = crate::engine::migration::unix_us() as u64;
            let result = txn().await;
            let us = t0.elapsed().as_micros() as u64;
            match result {
                Ok(()) => {
                    stats.committed.fetch_add(1, Relaxed);
                    stats.max_latency_us.fetch_max(us, Relaxed);
                    stats
                        .timeline
                        .lock()
                        .unwrap_or_else(|e| e.into_inner())
                        .push((start_us, us));
                }
                Err(e) => {
                    stats.failed.fetch_add(1, Relaxed);
                    let mut errs = stats.errors.lock().unwrap_or_else(|e| e.into_inner());
                    if errs.len() < 20 {
                        errs.push(format!("{e:#}"));
                    }
                }
            }
        }
    }
}

fn random_payload(rng: &mut impl rand::Rng, large: bool) -> serde_json::Value {
    let pad: String = if large {
        (0..6000)
            .map(|_| rng.sample(rand::distr::Alphanumeric) as char)
            .collect()
    } else {
        String::new()
    };
    serde_json::json!({ "n": rng.random_range(0..1_000_000), "tag": "日本 ✓", "pad": pad })
}

/// One transaction: the same change to the table and its mirror.
async fn one_transaction(
    c: &Client,
    cfg: &WorkloadConfig,
    next_id: &AtomicI64,
) -> anyhow::Result<()> {
    // Draw everything before the first await: the generator is not Send.
    let (op, key, amount, status, async_commit, bits, null_note, payload) = {
        let mut rng = rand::rng();
        let max = next_id.load(Relaxed).max(2);
        let large = rng.random_bool(0.2);
        (
            rng.random_range(0..100u32),
            rng.random_range(1..max),
            rng.random_range(0..100_000i64),
            STATUSES[rng.random_range(0..STATUSES.len())],
            rng.random_bool(0.3),
            rng.random_range(0..256u32),
            rng.random_bool(0.3),
            random_payload(&mut rng, large),
        )
    };
    let tables = [ident(&cfg.table), ident(&format!("{}_mirror", cfg.table))];
    c.batch_execute(if async_commit {
        "BEGIN; SET LOCAL synchronous_commit = off"
    } else {
        "BEGIN"
    })
    .await
    .db("begin")?;
    let bit_literal = format!("B'{bits:08b}'");
    let new_id = if op < 25 {
        Some(next_id.fetch_add(1, Relaxed))
    } else {
        None
    };
    let moved_id = if op >= 90 && cfg.key_updates {
        Some(next_id.fetch_add(1, Relaxed))
    } else {
        None
    };
    for t in &tables {
        let sql_result = match op {
            0..=24 => {
                c.execute(
                    &format!(
                        "INSERT INTO {t} (id, owner_id, status, amount, note, payload, flags, blob) \
                         VALUES ($1::int8, $2::int8, '{status}', $3::int8, $4, $5, {bit_literal}, $6)"
                    ),
                    &[
                        &new_id.unwrap_or_default(),
                        &(key % 1000),
                        &amount,
                        &(if null_note { None } else { Some(format!("new ✓ {amount}")) }),
                        &payload,
                        &amount.to_le_bytes().to_vec(),
                    ],
                )
                .await
            }
            // Update a plain column: the TOASTed payload stays untouched.
            25..=49 => {
                c.execute(&format!("UPDATE {t} SET amount = $2::int8 WHERE id = $1::int8"), &[&key, &amount])
                    .await
            }
            50..=59 => {
                c.execute(
                    &format!("UPDATE {t} SET status = '{status}', flags = {bit_literal} WHERE id = $1::int8"),
                    &[&key],
                )
                .await
            }
            // Set columns to NULL.
            60..=69 => {
                c.execute(&format!("UPDATE {t} SET note = NULL, amount = NULL WHERE id = $1::int8"), &[&key])
                    .await
            }
            70..=79 => {
                c.execute(&format!("UPDATE {t} SET payload = $2 WHERE id = $1::int8"), &[&key, &payload])
                    .await
            }
            80..=89 => c.execute(&format!("DELETE FROM {t} WHERE id = $1::int8"), &[&key]).await,
            // Move a row to a new key.
            _ => match moved_id {
                Some(to) => {
                    c.execute(&format!("UPDATE {t} SET id = $2::int8 WHERE id = $1::int8"), &[&key, &to])
                        .await
                }
                None => {
                    c.execute(&format!("UPDATE {t} SET note = 'touched' WHERE id = $1::int8"), &[&key])
                        .await
                }
            },
        };
        sql_result.db("workload statement")?;
    }
    c.batch_execute("COMMIT").await.db("commit")?;
    Ok(())
}

/// Rows that differ between two queries' results, counted both ways
/// (`EXCEPT ALL`, so duplicates count). Zero means equal, row for row.
pub async fn diff_count(c: &Client, expected: &str, actual: &str) -> anyhow::Result<i64> {
    let sql = format!(
        "SELECT (SELECT count(*) FROM (({expected}) EXCEPT ALL ({actual})) a) + \
                (SELECT count(*) FROM (({actual}) EXCEPT ALL ({expected})) b)"
    );
    Ok(c.query_one(&sql, &[])
        .await
        .db("comparing the table with its mirror")?
        .get(0))
}

/// The items scenario's change: wider key, JSON to jsonb, text status to an enum, a new column.
pub const ITEMS_ALTER: &str = "ALTER COLUMN id TYPE bigint, \
     ALTER COLUMN payload TYPE jsonb USING payload::jsonb, \
     ALTER COLUMN status TYPE item_status USING status::item_status, \
     ADD COLUMN updated_at timestamptz NOT NULL DEFAULT now()";

/// What the migrated table must equal: the mirror with the same conversion.
pub const ITEMS_EXPECTED: &str = "SELECT id::bigint, owner_id, status::text, amount, note, payload::jsonb, \
     flags, blob, created_at FROM items_mirror";
pub const ITEMS_ACTUAL: &str =
    "SELECT id, owner_id, status::text, amount, note, payload, flags, blob, created_at FROM items";

/// The items scenario's tables: `items` with `rows` rows, its mirror, and the enum type the
/// ALTER converts the status to.
pub async fn create_items_scenario(c: &Client, rows: i64) -> anyhow::Result<()> {
    create_items_scenario_padded(c, rows, 0).await
}

/// [`create_items_scenario`] with rows padded by `pad` bytes.
pub async fn create_items_scenario_padded(c: &Client, rows: i64, pad: usize) -> anyhow::Result<()> {
    create_items_padded(c, "items", rows, pad).await?;
    c.batch_execute("CREATE TYPE item_status AS ENUM ('pending', 'active', 'paused', 'cancelled')")
        .await
        .context("creating the enum type")
}

/// The workload on `items`: inserts, updates (key moves included), deletes.
/// The orders scenario's workload on `orders` and its mirror (either engine).
pub fn orders_workload(dsn: &str, rows: i64, clients: usize, tps: u64) -> WorkloadConfig {
    WorkloadConfig {
        dsn: dsn.to_string(),
        table: "orders".into(),
        clients,
        tps: Some(tps),
        initial_rows: rows,
        max_duration: Duration::from_secs(3600),
        key_updates: false,
        scenario: Scenario::Orders,
    }
}

pub fn items_workload(dsn: &str, rows: i64, clients: usize, tps: u64) -> WorkloadConfig {
    WorkloadConfig {
        dsn: dsn.to_string(),
        table: "items".into(),
        clients,
        tps: Some(tps),
        initial_rows: rows,
        max_duration: Duration::from_secs(3600),
        key_updates: true,
        scenario: Default::default(),
    }
}
