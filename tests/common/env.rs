//! One sandbox of either engine with what tests do on it alike: plain SQL, a
//! small table, a fingerprint of it, wraith's leftovers, a migration in the
//! background, a second session, a restart.

use std::sync::Arc;

use mysql_async::prelude::Queryable;
use serde_json::Value;
use wraith::Engine;
use wraith::engine::Stats;
use wraith::engine::migration::Outcome;

use super::*;

/// A sandbox of either engine, with what the tests need of it.
#[allow(clippy::large_enum_variant)] // one per test
pub enum Env {
    Pg(Db),
    My(wraith::sandbox::MySqlSandbox, String, mysql_async::Conn),
}

impl Env {
    pub async fn pg() -> Env {
        Env::Pg(db().await)
    }

    pub async fn my() -> Env {
        let (db, dsn, c) = my_sandbox().await;
        Env::My(db, dsn, c)
    }

    /// A sandbox of the server in matrix slot `slot`, when this run tests on it.
    pub async fn on(slot: &str) -> Option<Env> {
        let server = servers::selected(slot)?;
        Some(match (server.pg_options(), server.my_server()) {
            (Some(opts), _) => Env::Pg(db_with(opts).await),
            (_, Some(my)) => {
                let (db, dsn, c) = my_sandbox_on(my).await;
                Env::My(db, dsn, c)
            }
            _ => unreachable!("a server is one engine or the other"),
        })
    }

    pub fn dsn(&self) -> String {
        match self {
            Env::Pg(db) => db.dsn.clone(),
            Env::My(_, dsn, _) => dsn.clone(),
        }
    }

    pub async fn exec(&mut self, sql: &str) {
        match self {
            Env::Pg(db) => db.client.batch_execute(sql).await.expect(sql),
            Env::My(_, _, c) => c.query_drop(sql).await.expect(sql),
        }
    }

    /// `t (id int PRIMARY KEY, v int)` with `rows` rows.
    pub async fn simple_table(&mut self, rows: i64) {
        let sql = match self {
            Env::Pg(_) => format!(
                "CREATE TABLE t (id int PRIMARY KEY, v int NOT NULL); \
                 INSERT INTO t SELECT g, g FROM generate_series(1, {rows}) g"
            ),
            Env::My(..) => format!(
                "CREATE TABLE t (id int PRIMARY KEY, v int NOT NULL); \
                 INSERT INTO t SELECT seq, seq FROM {}",
                seq(rows)
            ),
        };
        self.exec(&sql).await;
    }

    /// Row count and a sum over `t`: unchanged means untouched.
    pub async fn t_fingerprint(&mut self) -> (i64, i64) {
        match self {
            Env::Pg(db) => {
                let r = db
                    .client
                    .query_one(
                        "SELECT count(*), sum(id::bigint * 7 + v)::bigint FROM t",
                        &[],
                    )
                    .await
                    .unwrap();
                (r.get(0), r.get(1))
            }
            Env::My(_, _, c) => c
                .query_first("SELECT COUNT(*), CAST(SUM(id * 7 + v) AS SIGNED) FROM t")
                .await
                .unwrap()
                .unwrap(),
        }
    }

    /// wraith's objects left behind: slots, publications, shadow and changelog tables.
    pub async fn leftovers(&mut self) -> Vec<String> {
        match self {
            Env::Pg(db) => leftovers(&db.client).await,
            Env::My(_, _, c) => my_tables(c)
                .await
                .into_iter()
                .filter(|t| t.ends_with("_wraith_new") || t.ends_with("_wraith_log"))
                .collect(),
        }
    }

    /// Nothing of wraith's is left and `t` is as `before`: untouched.
    pub async fn assert_untouched(&mut self, before: (i64, i64)) {
        let left = self.leftovers().await;
        assert!(left.is_empty(), "left behind: {left:?}");
        assert_eq!(self.t_fingerprint().await, before, "the table is untouched");
    }

    /// Starts a migration through the library in the background.
    pub async fn start(&self, job: Job) -> tokio::task::JoinHandle<anyhow::Result<Outcome>> {
        self.start_with(job, Arc::new(Stats::default())).await
    }

    pub async fn start_with(
        &self,
        job: Job,
        stats: Arc<Stats>,
    ) -> tokio::task::JoinHandle<anyhow::Result<Outcome>> {
        tokio::spawn(migrate_with(job, stats))
    }

    pub fn engine(&self) -> Engine {
        match self {
            Env::Pg(_) => Engine::Postgres,
            Env::My(..) => Engine::MySql,
        }
    }

    /// A real run with this engine's defaults.
    pub fn execute(&self) -> RunOptions {
        execute_on(self.engine())
    }

    /// A second session that can hold locks.
    pub async fn session(&self) -> Session {
        match self {
            Env::Pg(db) => Session::Pg(db.pg.connect("app").await.unwrap()),
            Env::My(db, ..) => Session::My(db.connect("app").await.unwrap()),
        }
    }

    /// Restarts the server; the test's own connection is opened again.
    pub async fn restart(&mut self) {
        match self {
            Env::Pg(db) => {
                db.pg.restart().await.expect("restart PostgreSQL");
                db.client = db.pg.connect("app").await.unwrap();
            }
            Env::My(db, _, c) => {
                db.restart().await.expect("restart MariaDB");
                *c = db.connect("app").await.unwrap();
            }
        }
    }

    /// Rows copied according to the last checkpoint of a run on `items`.
    pub async fn checkpoint_rows(&mut self) -> Option<u64> {
        let state: Option<String> = match self {
            Env::Pg(db) => db
                .client
                .query_opt("SELECT state FROM _items_ckpt WHERE id = 1", &[])
                .await
                .ok()
                .flatten()
                .map(|r| r.get(0)),
            Env::My(_, _, c) => c
                .query_first("SELECT value FROM items_wraith_log WHERE id = 3")
                .await
                .ok()
                .flatten(),
        };
        let v: Value = serde_json::from_str(&state?).ok()?;
        v["rows_copied"].as_u64()
    }

    pub async fn stop(self) {
        if let Env::My(db, ..) = self {
            db.stop().await;
        }
    }
}

pub enum Session {
    Pg(tokio_postgres::Client),
    My(mysql_async::Conn),
}

impl Session {
    pub async fn exec(&mut self, sql: &str) -> Result<(), String> {
        match self {
            Session::Pg(c) => c.batch_execute(sql).await.map_err(|e| e.to_string()),
            Session::My(c) => c.query_drop(sql).await.map_err(|e| e.to_string()),
        }
    }
}
