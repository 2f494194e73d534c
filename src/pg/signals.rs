//! Throttle signals and cutover blockers on PostgreSQL, read on a session of
//! their own (and one per `--replica-dsn`).

use crate::dsn::Dsn;
use std::sync::Arc;
use std::time::Duration;

use tokio_postgres::Client;

use crate::engine::{Blocker, Signals};
use crate::pg::conn::{self, DbResult};
use crate::pg::names::Names;

pub struct PgSignals {
    session: Arc<Client>,
    replicas: Vec<(String, Arc<Client>)>,
    names: Names,
}

impl PgSignals {
    pub async fn open(dsn: &Dsn, replica_dsns: &[Dsn], names: Names) -> anyhow::Result<PgSignals> {
        let session = conn::connect(dsn, "signals").await?;
        let mut replicas = Vec::new();
        for r in replica_dsns {
            replicas.push((r.to_string(), conn::connect(r, "replica lag").await?));
        }
        Ok(PgSignals {
            session,
            replicas,
            names,
        })
    }
}

impl Signals for PgSignals {
    fn sees_blockers(&self) -> bool {
        true
    }

    async fn load(&self) -> anyhow::Result<u64> {
        let row = self
            .session
            .query_one(
                "SELECT count(*) FROM pg_stat_activity \
                 WHERE state = 'active' AND backend_type = 'client backend' AND pid <> pg_backend_pid()",
                &[],
            )
            .await
            .db("counting active sessions")?;
        Ok(row.get::<_, i64>(0).max(0) as u64)
    }

    async fn replica_lag(&self) -> anyhow::Result<Option<Duration>> {
        let ms = |v: Option<f64>| v.map(|ms| Duration::from_millis(ms.max(0.0) as u64));
        // Standbys connected to this server report their replay lag here.
        let row = self
            .session
            .query_one(
                "SELECT (EXTRACT(EPOCH FROM max(replay_lag)) * 1000)::float8 FROM pg_stat_replication",
                &[],
            )
            .await
            .db("reading pg_stat_replication")?;
        let mut worst = ms(row.get(0));
        for (name, replica) in &self.replicas {
            // Caught up when everything received is replayed; otherwise the age of
            // the last replayed transaction.
            let row = replica
                .query_one(
                    "SELECT CASE WHEN NOT pg_is_in_recovery() \
                              OR pg_last_wal_receive_lsn() = pg_last_wal_replay_lsn() THEN 0 \
                          ELSE (EXTRACT(EPOCH FROM now() - pg_last_xact_replay_timestamp()) * 1000)::float8 END",
                    &[],
                )
                .await
                .db(&format!("reading the replay lag of {name}"))?;
            worst = worst.max(ms(row.get(0)));
        }
        Ok(worst)
    }

    async fn query_number(&self, sql: &str) -> anyhow::Result<f64> {
        let row = self
            .session
            .query_one(&format!("SELECT ({sql})::float8"), &[])
            .await
            .db("running the throttle query")?;
        Ok(row.get::<_, Option<f64>>(0).unwrap_or(0.0))
    }

    async fn retained_wal(&self) -> anyhow::Result<Option<u64>> {
        let row = self
            .session
            .query_opt(
                "SELECT pg_wal_lsn_diff(pg_current_wal_lsn(), restart_lsn)::float8 \
                 FROM pg_replication_slots WHERE slot_name = $1",
                &[&self.names.slot],
            )
            .await
            .db("reading the slot's retained WAL")?;
        Ok(row
            .and_then(|r| r.get::<_, Option<f64>>(0))
            .map(|b| b.max(0.0) as u64))
    }

    async fn blockers(&self, min_age: Duration) -> anyhow::Result<Vec<Blocker>> {
        let rows = self
            .session
            .query(
                "SELECT DISTINCT a.pid, \
                        (EXTRACT(EPOCH FROM now() - coalesce(a.xact_start, a.state_change)) * 1000)::float8, \
                        coalesce(a.state, ''), left(coalesce(a.query, ''), 200) \
                 FROM pg_locks l JOIN pg_stat_activity a ON a.pid = l.pid \
                 WHERE l.locktype = 'relation' AND l.relation = $1::text::regclass \
                   AND a.pid <> pg_backend_pid() AND a.application_name <> 'wraith' \
                   AND now() - coalesce(a.xact_start, a.state_change) >= $2::float8 * interval '1 millisecond'",
                &[&self.names.src(), &(min_age.as_millis() as f64)],
            )
            .await
            .db("looking for sessions holding the table")?;
        Ok(rows
            .iter()
            .map(|r| Blocker {
                session: r.get::<_, i32>(0) as u64,
                age: Duration::from_millis(r.get::<_, f64>(1).max(0.0) as u64),
                state: r.get(2),
                query: r.get(3),
            })
            .collect())
    }

    async fn kill(&self, blocker: &Blocker) -> anyhow::Result<()> {
        self.session
            .execute(
                "SELECT pg_terminate_backend($1)",
                &[&(blocker.session as i32)],
            )
            .await
            .db(&format!("terminating session {}", blocker.session))?;
        Ok(())
    }
}
