//! What the tests that operate a running migration share, on either engine: the
//! control socket's status, the `items` workload with its mirror, the `items`
//! migration of each engine, and its result checked against the mirror.

use std::path::Path;
use std::sync::atomic::Ordering::Relaxed;
use std::time::{Duration, Instant};

use serde_json::Value;
use wraith::bench::workload::WorkloadConfig;
use wraith::bench::{mysql_workload, workload};
use wraith::plan::RunOptions;

use super::env::Env;
use super::*;

pub async fn status(socket: &Path) -> Value {
    let reply = wraith::ctl::send(socket, "status")
        .await
        .expect("ctl status");
    serde_json::from_str(&reply).unwrap_or_else(|e| panic!("status is not JSON ({e}): {reply}"))
}

/// Polls the status until `ok` holds; panics with the last status after `limit`.
pub async fn wait_status(socket: &Path, limit: Duration, ok: impl Fn(&Value) -> bool) -> Value {
    let t0 = Instant::now();
    loop {
        if socket.exists() {
            let s = status(socket).await;
            if ok(&s) {
                return s;
            }
            if t0.elapsed() > limit {
                panic!("status never reached the expected state: {s}");
            }
        } else if t0.elapsed() > limit {
            panic!("the control socket {} never appeared", socket.display());
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

pub fn spec_for(
    env: &Env,
    table: &str,
    alter: &str,
    transforms: &[(&str, &str)],
    options: RunOptions,
) -> Job {
    spec(&env.dsn(), table, alter, transforms, options)
}

pub fn widen(env: &Env) -> &'static str {
    match env {
        Env::Pg(_) => "ALTER COLUMN v TYPE bigint",
        Env::My(..) => "MODIFY v bigint NOT NULL",
    }
}

/// The `items` workload, every transaction mirrored.
pub struct Load(workload::Workload);

impl Load {
    /// 2 clients at 200 tx/s. `create`: makes `items` with `rows` rows first. A
    /// second workload on the same table draws its new keys from a range of its own.
    pub async fn start(env: &mut Env, rows: i64, create: bool) -> Load {
        Load::start_with(env, rows, create, 2, 200).await
    }

    pub async fn start_with(
        env: &mut Env,
        rows: i64,
        create: bool,
        clients: usize,
        tps: u64,
    ) -> Load {
        let offset = if create { 0 } else { 100_000 };
        match env {
            Env::Pg(db) if create => Load(items_under_load(db, rows, clients, tps).await),
            Env::Pg(db) => {
                let mut cfg = workload::items_workload(&db.dsn, rows + offset, clients, tps);
                cfg.max_duration = Duration::from_secs(300);
                Load(workload::Workload::start(cfg).await.unwrap())
            }
            Env::My(_, dsn, c) => {
                if create {
                    mysql_workload::create_items(c, rows).await.unwrap();
                }
                Load(
                    mysql_workload::start(WorkloadConfig {
                        dsn: dsn.clone(),
                        table: "items".into(),
                        clients,
                        tps: Some(tps),
                        initial_rows: rows + offset,
                        max_duration: Duration::from_secs(300),
                        key_updates: true,
                        scenario: Default::default(),
                    })
                    .await
                    .unwrap(),
                )
            }
        }
    }

    /// Stops the workload; it must not have failed once.
    pub async fn stop(self) -> std::sync::Arc<workload::WorkloadStats> {
        let wl = self.0.stop().await;
        assert_eq!(
            wl.failed.load(Relaxed),
            0,
            "workload errors: {:?}",
            wl.errors()
        );
        wl
    }
}

/// The migrated `items` equals its mirror, row for row.
pub async fn assert_equals_mirror(env: &mut Env) {
    match env {
        Env::Pg(db) => {
            let diff =
                workload::diff_count(&db.client, workload::ITEMS_EXPECTED, workload::ITEMS_ACTUAL)
                    .await
                    .unwrap();
            assert_eq!(diff, 0, "the table equals the mirror");
        }
        Env::My(_, _, c) => {
            let diff = mysql_workload::diff(
                c,
                mysql_workload::ITEMS_EXPECTED,
                mysql_workload::ITEMS_ACTUAL,
            )
            .await
            .unwrap();
            assert!(diff.is_empty(), "rows differ from the mirror: {diff:?}");
        }
    }
}

/// The `items` migration of each engine: ALTER and transforms.
pub fn items_alter(env: &Env) -> (&'static str, Vec<(&'static str, &'static str)>) {
    match env {
        Env::Pg(_) => (workload::ITEMS_ALTER, vec![]),
        Env::My(..) => (
            mysql_workload::ITEMS_ALTER,
            vec![mysql_workload::ITEMS_TRANSFORM],
        ),
    }
}

/// `wraith migrate --execute` of the `items` migration.
pub fn items_migrate_args(env: &Env) -> Vec<String> {
    let (alter, transforms) = items_alter(env);
    let mut args: Vec<String> = [
        "migrate",
        "--dsn",
        &env.dsn(),
        "--table",
        "items",
        "--alter",
        alter,
        "--execute",
    ]
    .map(String::from)
    .to_vec();
    for (col, expr) in &transforms {
        args.extend(["--transform".to_string(), format!("{col}={expr}")]);
    }
    args
}

/// The `--json` summary a run printed (its last JSON line); `context` is shown if none.
pub fn json_summary(printed: &str, context: &str) -> Value {
    printed
        .lines()
        .rev()
        .find_map(|l| serde_json::from_str(l).ok())
        .unwrap_or_else(|| panic!("no JSON summary\n{context}"))
}

/// The `items` migration's swap happened: the table has the new shape.
pub async fn items_swapped(env: &mut Env) -> bool {
    match env {
        Env::Pg(db) => {
            scalar_bool(
                &db.client,
                "SELECT data_type = 'bigint' FROM information_schema.columns \
                 WHERE table_schema = 'public' AND table_name = 'items' AND column_name = 'id'",
            )
            .await
        }
        Env::My(_, _, c) => {
            use mysql_async::prelude::Queryable;
            let n: Option<i64> = c
                .query_first(
                    "SELECT COUNT(*) FROM information_schema.COLUMNS WHERE TABLE_SCHEMA = 'app' \
                     AND TABLE_NAME = 'items' AND COLUMN_NAME = 'memo'",
                )
                .await
                .unwrap();
            n == Some(1)
        }
    }
}

/// `items` still has its old shape and equals its mirror, row for row: the
/// application's writes all went to it.
pub async fn assert_untouched_equals_mirror(env: &mut Env) {
    match env {
        Env::Pg(db) => {
            let q = |t: &str| {
                format!(
                    "SELECT id, owner_id, status, amount, note, payload::text, flags, blob, \
                     created_at FROM {t}"
                )
            };
            let diff = workload::diff_count(&db.client, &q("items_mirror"), &q("items"))
                .await
                .unwrap();
            assert_eq!(diff, 0, "the untouched table equals the mirror");
        }
        Env::My(_, _, c) => {
            let q = |t: &str| {
                format!(
                    "SELECT id, SHA2(CONCAT_WS('|', qty, label, note, gone, payload, doc, amount, \
                     status, ISNULL(label), ISNULL(note), ISNULL(gone)), 256) FROM {t} ORDER BY id"
                )
            };
            let diff = mysql_workload::diff(c, &q("items_mirror"), &q("items"))
                .await
                .unwrap();
            assert!(diff.is_empty(), "rows differ from the mirror: {diff:?}");
        }
    }
}
