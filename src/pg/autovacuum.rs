//! Autovacuum workers in the way of wraith's bounded lock requests.
//!
//! An autovacuum of a table holds SHARE UPDATE EXCLUSIVE, which conflicts with
//! every lock wraith takes (the cutover's ACCESS EXCLUSIVE, verification's SHARE,
//! a foreign key's SHARE ROW EXCLUSIVE on the table it references). PostgreSQL
//! cancels such a worker itself once a lock request has waited
//! `deadlock_timeout` (1 s) for it, but wraith's requests give up sooner so the
//! application never queues long behind them: without help they would retry
//! until the vacuum ends, minutes on a freshly copied table of millions of rows,
//! and could run out of attempts. So when a request was not granted, wraith
//! cancels the workers holding the tables it locks, as the server would have.
//! Autovacuums that prevent transaction ID wraparound are never cancelled (the
//! server does not either); wraith waits for them.

use std::sync::atomic::{AtomicBool, Ordering::Relaxed};

use tokio_postgres::Client;

use crate::pg::conn::{DbResult, describe};
use crate::pg::names::Names;

/// Warned once per process that this role may not cancel autovacuum.
static WARNED: AtomicBool = AtomicBool::new(false);

/// Cancels the (non-wraparound) autovacuum workers that hold the source, the
/// shadow, or a table their foreign keys tie them to; returns what they were
/// doing. Runs outside any transaction of `c`'s.
pub async fn cancel_in_the_way(c: &Client, names: &Names) -> anyhow::Result<Vec<String>> {
    let workers = c
        .query(
            "WITH own AS (SELECT to_regclass($1) AS r UNION SELECT to_regclass($2)), \
                  rels AS (SELECT r FROM own WHERE r IS NOT NULL \
                           UNION SELECT confrelid FROM pg_constraint WHERE contype = 'f' AND conrelid IN (SELECT r FROM own) \
                           UNION SELECT conrelid FROM pg_constraint WHERE contype = 'f' AND confrelid IN (SELECT r FROM own)) \
             SELECT a.pid, a.query FROM pg_stat_activity a \
             WHERE a.backend_type = 'autovacuum worker' AND a.query NOT LIKE '%to prevent wraparound%' \
               AND EXISTS (SELECT 1 FROM pg_locks l WHERE l.pid = a.pid AND l.locktype = 'relation' \
                           AND l.relation IN (SELECT r FROM rels))",
            &[&names.src(), &names.shadow_q()],
        )
        .await
        .db("looking for autovacuum workers holding the tables")?;
    let mut cancelled = Vec::new();
    for w in workers {
        let (pid, what): (i32, String) = (w.get(0), w.get(1));
        match c.query_one("SELECT pg_cancel_backend($1)", &[&pid]).await {
            Ok(_) => {
                tracing::info!(pid, "cancelled {what:?}: it held a table wraith must lock");
                cancelled.push(what);
            }
            Err(e) => {
                if !WARNED.swap(true, Relaxed) {
                    tracing::warn!(
                        pid,
                        "{what:?} holds a table wraith must lock, and this role may not cancel it \
                         ({}): wraith retries until it ends. Cancel it with SELECT \
                         pg_cancel_backend({pid}) as a superuser (PostgreSQL 18: a member of \
                         pg_signal_autovacuum_worker)",
                        describe(&e)
                    );
                }
            }
        }
    }
    Ok(cancelled)
}

/// [`cancel_in_the_way`] after a lock request timed out; a failure to look is
/// only logged: the next attempt goes ahead either way.
pub async fn after_lock_timeout(c: &Client, names: &Names) {
    if let Err(e) = cancel_in_the_way(c, names).await {
        tracing::debug!("could not look for autovacuum workers: {e:#}");
    }
}
