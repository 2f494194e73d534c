//! Throttle signals and cutover blockers on MySQL/MariaDB, read on a session of
//! their own (and one per `--replica-dsn`, where the lag is the age of the
//! newest heartbeat row that reached the replica).

use crate::dsn::Dsn;
use std::time::Duration;

use mysql_async::Conn;
use mysql_async::prelude::Queryable;
use tokio::sync::Mutex;

use crate::engine::migration::unix_us;
use crate::engine::{Blocker, Signals};
use crate::mysql::capture::HEARTBEAT_ID;
use crate::mysql::conn::{self, MyResult};
use crate::mysql::names::Names;

/// Where the server shows who holds a table's metadata lock.
#[derive(Debug, Clone, Copy, PartialEq)]
enum LockView {
    /// MariaDB's `metadata_lock_info` plugin.
    MariaDbPlugin,
    /// MySQL 8's `performance_schema.metadata_locks`.
    PerformanceSchema,
    None,
}

/// Session, age in ms, command, statement.
type BlockerRow = (u64, Option<i64>, Option<String>, Option<String>);

pub struct MySignals {
    session: Mutex<Conn>,
    replicas: Vec<(String, Mutex<Conn>)>,
    names: Names,
    view: LockView,
}

impl MySignals {
    pub async fn open(dsn: &Dsn, replica_dsns: &[Dsn], names: Names) -> anyhow::Result<MySignals> {
        let mut session = conn::connect(dsn, "signals").await?;
        let plugin: Option<String> = session
            .query_first(
                "SELECT PLUGIN_STATUS FROM information_schema.PLUGINS \
                 WHERE PLUGIN_NAME = 'METADATA_LOCK_INFO'",
            )
            .await
            .my("looking for the metadata_lock_info plugin")?;
        let view = if plugin.as_deref() == Some("ACTIVE") {
            LockView::MariaDbPlugin
        } else {
            let ps: Option<(String, String)> = session
                .query_first(
                    "SELECT ENABLED, @@version FROM performance_schema.setup_instruments \
                     WHERE NAME = 'wait/lock/metadata/sql/mdl'",
                )
                .await
                .unwrap_or(None);
            match ps {
                Some((enabled, version)) if enabled == "YES" && !version.contains("MariaDB") => {
                    LockView::PerformanceSchema
                }
                _ => LockView::None,
            }
        };
        if view == LockView::None {
            tracing::warn!(
                "the cutover cannot see sessions holding the table: on MariaDB load the plugin \
                 (INSTALL SONAME 'metadata_lock_info'), on MySQL enable performance_schema; \
                 each cutover attempt is still bounded by --cutover-lock-timeout"
            );
        }
        let mut replicas = Vec::new();
        for r in replica_dsns {
            replicas.push((
                r.to_string(),
                Mutex::new(conn::connect(r, "replica lag").await?),
            ));
        }
        Ok(MySignals {
            session: Mutex::new(session),
            replicas,
            names,
            view,
        })
    }
}

impl Signals for MySignals {
    fn sees_blockers(&self) -> bool {
        self.view != LockView::None
    }

    async fn load(&self) -> anyhow::Result<u64> {
        let row: Option<(String, String)> = self
            .session
            .lock()
            .await
            .query_first("SHOW GLOBAL STATUS LIKE 'Threads_running'")
            .await
            .my("reading Threads_running")?;
        Ok(row.and_then(|(_, v)| v.parse().ok()).unwrap_or(0))
    }

    async fn replica_lag(&self) -> anyhow::Result<Option<Duration>> {
        let mut worst = None;
        let sql = format!(
            "SELECT value FROM {} WHERE id = {HEARTBEAT_ID}",
            self.names.changelog_q()
        );
        for (name, replica) in &self.replicas {
            let sent: Option<String> = match replica.lock().await.query_first(sql.as_str()).await {
                Ok(v) => v,
                // The changelog has not reached the replica yet: nothing to measure.
                Err(mysql_async::Error::Server(e)) if e.code == 1146 => None,
                Err(e) => {
                    return Err(anyhow::anyhow!(
                        "reading the heartbeat on {name}: {}",
                        conn::describe(&e)
                    ));
                }
            };
            if let Some(us) = sent.and_then(|v| v.parse::<i64>().ok()) {
                let lag = Duration::from_micros((unix_us() - us).max(0) as u64);
                worst = worst.max(Some(lag));
            }
        }
        Ok(worst)
    }

    async fn query_number(&self, sql: &str) -> anyhow::Result<f64> {
        let v: Option<Option<f64>> = self
            .session
            .lock()
            .await
            .query_first(format!("SELECT CAST(({sql}) AS DOUBLE)"))
            .await
            .my("running the throttle query")?;
        Ok(v.flatten().unwrap_or(0.0))
    }

    async fn retained_wal(&self) -> anyhow::Result<Option<u64>> {
        Ok(None)
    }

    async fn blockers(&self, min_age: Duration) -> anyhow::Result<Vec<Blocker>> {
        let sql = match self.view {
            LockView::None => return Ok(Vec::new()),
            LockView::MariaDbPlugin => {
                "SELECT DISTINCT m.THREAD_ID, \
                        COALESCE(TIMESTAMPDIFF(MICROSECOND, t.trx_started, NOW(6)) DIV 1000, p.TIME * 1000), \
                        p.COMMAND, LEFT(COALESCE(p.INFO, ''), 200) \
                 FROM information_schema.METADATA_LOCK_INFO m \
                 JOIN information_schema.PROCESSLIST p ON p.ID = m.THREAD_ID \
                 LEFT JOIN information_schema.INNODB_TRX t ON t.trx_mysql_thread_id = m.THREAD_ID \
                 WHERE m.TABLE_SCHEMA = ? AND m.TABLE_NAME = ? AND m.THREAD_ID <> CONNECTION_ID()"
            }
            LockView::PerformanceSchema => {
                "SELECT DISTINCT t.PROCESSLIST_ID, \
                        COALESCE(TIMESTAMPDIFF(MICROSECOND, x.trx_started, NOW(6)) DIV 1000, t.PROCESSLIST_TIME * 1000), \
                        t.PROCESSLIST_COMMAND, LEFT(COALESCE(t.PROCESSLIST_INFO, ''), 200) \
                 FROM performance_schema.metadata_locks m \
                 JOIN performance_schema.threads t ON t.THREAD_ID = m.OWNER_THREAD_ID \
                 LEFT JOIN information_schema.INNODB_TRX x ON x.trx_mysql_thread_id = t.PROCESSLIST_ID \
                 WHERE m.OBJECT_TYPE = 'TABLE' AND m.OBJECT_SCHEMA = ? AND m.OBJECT_NAME = ? \
                   AND m.LOCK_STATUS = 'GRANTED' AND t.PROCESSLIST_ID <> CONNECTION_ID()"
            }
        };
        let rows: Vec<BlockerRow> = self
            .session
            .lock()
            .await
            .exec(sql, (&self.names.schema, &self.names.table))
            .await
            .my("looking for sessions holding the table")?;
        Ok(rows
            .into_iter()
            .map(|(session, ms, state, query)| Blocker {
                session,
                age: Duration::from_millis(ms.unwrap_or(0).max(0) as u64),
                state: state.unwrap_or_default(),
                query: query.unwrap_or_default(),
            })
            .filter(|b| b.age >= min_age)
            .collect())
    }

    async fn kill(&self, blocker: &Blocker) -> anyhow::Result<()> {
        let done = self
            .session
            .lock()
            .await
            .query_drop(format!("KILL CONNECTION {}", blocker.session))
            .await;
        match done {
            // Gone already: what was wanted.
            Err(mysql_async::Error::Server(e)) if e.code == 1094 => Ok(()),
            other => other.my(&format!("ending session {}", blocker.session)),
        }
    }
}
