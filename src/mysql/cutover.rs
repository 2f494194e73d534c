//! The cutover on MySQL/MariaDB.
//!
//! MariaDB cannot RENAME a table under `LOCK TABLES`, so wraith uses gh-ost's
//! two-connection protocol:
//! 1. create the sentry `t_wraith_old`; the control session runs
//!    `LOCK TABLES t WRITE, t_wraith_new WRITE, t_wraith_old WRITE` (writes wait);
//! 2. the engine drains the stream to a fence and applies the last keys on the
//!    control session;
//! 3. a second session issues `RENAME TABLE t TO t_wraith_old, t_wraith_new TO t`,
//!    which queues on `t` behind the lock (wraith checks that it waits; see
//!    [`crate::mysql::names`] for why it queues on `t` first);
//! 4. the control session drops the sentry and unlocks: the RENAME is first in
//!    the queue and runs before any queued write.
//!
//! If the control session dies before step 4, its locks go with it and the RENAME
//! fails because the sentry still exists: nothing changed. After a lost connection
//! wraith looks at which tables exist before deciding anything.
//!
//! MySQL 8.0.13 and later can `RENAME` under `LOCK TABLES`: one session does it all.
//!
//! Every wait is bounded: `LOCK TABLES` is cancelled with `KILL QUERY` at the
//! deadline (`lock_wait_timeout` only counts whole seconds), so the application
//! waits at most `--cutover-lock-timeout` per attempt.

use crate::engine::faults::{Faults, Point};
use crate::mysql::catalog::{self, Table};
use crate::mysql::{foreign_keys, triggers};
use std::time::{Duration, Instant};

use mysql_async::Conn;
use mysql_async::prelude::Queryable;

use crate::mysql::conn::{MyResult, describe};
use crate::mysql::names::Names;

/// The sentry table's comment: only a table carrying it is dropped as a sentry.
pub const SENTRY_COMMENT: &str = "wraith cutover sentry";
/// How long the queued RENAME may take to show up as waiting.
const RENAME_QUEUE_TIMEOUT: Duration = Duration::from_secs(5);

/// Runs a locking statement on `c`, cancelled from `killer` after `timeout`.
/// `Ok(false)`: not granted in time (nothing is held).
pub async fn lock_within(
    c: &mut Conn,
    killer: &mut Conn,
    sql: &str,
    timeout: Duration,
) -> anyhow::Result<bool> {
    let backstop = timeout.as_secs() + 2;
    c.query_drop(format!("SET SESSION lock_wait_timeout = {backstop}"))
        .await
        .my("cutover: bounding the lock wait")?;
    let id = c.id();
    let run = c.query_drop(sql);
    tokio::pin!(run);
    let result = tokio::select! {
        r = &mut run => r,
        _ = tokio::time::sleep(timeout) => {
            killer
                .query_drop(format!("KILL QUERY {id}"))
                .await
                .my("cutover: cancelling the lock request")?;
            run.await
        }
    };
    match result {
        Ok(()) => Ok(true),
        // Interrupted (1317) or lock wait timeout (1205): not granted.
        Err(mysql_async::Error::Server(s)) if s.code == 1317 || s.code == 1205 => Ok(false),
        Err(e) => Err(anyhow::anyhow!("cutover: {sql}: {}", describe(&e))),
    }
}

pub fn create_sentry(names: &Names) -> String {
    format!(
        "CREATE TABLE IF NOT EXISTS {} (id int PRIMARY KEY) ENGINE=InnoDB COMMENT='{SENTRY_COMMENT}'",
        names.old_q()
    )
}

/// `LOCK TABLES` for the cutover: the source, the shadow, and the sentry on
/// MariaDB; on MySQL also what the swap alters beside them.
pub fn lock_tables(names: &Names, sentry: bool, table: &Table) -> String {
    let mut tables = vec![
        format!("{} WRITE", names.src()),
        format!("{} WRITE", names.shadow_q()),
    ];
    if sentry {
        tables.push(format!("{} WRITE", names.old_q()));
    }
    // Tables whose keys reference this one: their keys are re-pointed under the lock.
    for child in table.children() {
        tables.push(format!("{child} WRITE"));
    }
    // The tables its keys reference, read-locked: the keys move under the lock, so
    // no parent changes while the new table has none.
    for parent in table.parents() {
        if !table.children().contains(&parent) {
            tables.push(format!("{parent} READ"));
        }
    }
    format!("LOCK TABLES {}", tables.join(", "))
}

/// What moves from the old table to the new one after the RENAME, under the lock
/// (MySQL): the triggers, then the foreign keys of both sides.
pub fn moves(names: &Names, table: &Table) -> anyhow::Result<Vec<String>> {
    let mut stmts = triggers::statements(names, &table.triggers)?;
    stmts.extend(foreign_keys::statements(
        names,
        &table.foreign_keys,
        &table.referencing,
    ));
    Ok(stmts)
}

pub fn rename(names: &Names) -> String {
    format!(
        "RENAME TABLE {} TO {}, {} TO {}",
        names.src(),
        names.old_q(),
        names.shadow_q(),
        names.src()
    )
}

/// Whether the swap happened: the shadow is gone exactly when the RENAME committed.
pub async fn swapped(c: &mut Conn, names: &Names) -> anyhow::Result<bool> {
    let present = catalog::existing(c, &names.schema, &[&names.table, &names.shadow]).await?;
    let has = |t: &str| present.iter().any(|(name, _)| name == t);
    Ok(has(&names.table) && !has(&names.shadow))
}

/// Drops `t_wraith_old` if it is the sentry (never the original table kept after a swap).
pub async fn drop_sentry(c: &mut Conn, names: &Names) -> anyhow::Result<()> {
    let sentry = catalog::existing(c, &names.schema, &[&names.old]).await?;
    if sentry.iter().any(|(_, comment)| comment == SENTRY_COMMENT) {
        c.query_drop(format!("DROP TABLE IF EXISTS {}", names.old_q()))
            .await
            .my("cutover: dropping the sentry table")?;
    }
    Ok(())
}

/// MySQL's swap: one session may RENAME tables it holds under `LOCK TABLES`, so
/// the RENAME is the commit; triggers and foreign keys move ([`moves`], metadata
/// only) before the unlock, so no write ever meets the new table without them, or
/// a parent held by the old table's copy of a key.
pub async fn swap_in_one_session(
    ctrl: &mut Conn,
    names: &Names,
    moves: &[String],
    faults: &Faults,
) -> anyhow::Result<()> {
    faults.hit(Point::BeforeSwapCommit).await;
    ctrl.query_drop(rename(names))
        .await
        .my("cutover: renaming the tables")?;
    let mut done = 0;
    let moved = async {
        ctrl.query_drop("SET SESSION foreign_key_checks = 0")
            .await?;
        for stmt in moves {
            ctrl.query_drop(stmt).await?;
            done += 1;
        }
        ctrl.query_drop("SET SESSION foreign_key_checks = 1").await
    }
    .await;
    let unlocked = ctrl.query_drop("UNLOCK TABLES").await;
    if let Err(e) = moved {
        // The RENAME has committed: the swap stands; what did not move is the DBA's to move.
        tracing::error!(
            "the swap is done, but not everything moved to the new table: {} failed with {}. \
             Run what is left: SET foreign_key_checks = 0; {}",
            moves
                .get(done)
                .map_or("resetting foreign_key_checks", |s| s.as_str()),
            describe(&e),
            moves[done.min(moves.len())..].join("; ")
        );
    }
    unlocked.my("cutover: unlocking")
}

/// Steps 3 and 4 of the MariaDB protocol. `ctrl` holds the locks; `renamer`
/// issues the RENAME; `watcher` checks that it waits. Returns the renamer.
pub async fn swap_with_sentry(
    ctrl: &mut Conn,
    mut renamer: Conn,
    watcher: &mut Conn,
    names: &Names,
    faults: &Faults,
) -> (anyhow::Result<()>, Option<Conn>) {
    let id = renamer.id();
    if let Err(e) = renamer
        .query_drop("SET SESSION lock_wait_timeout = 60")
        .await
    {
        return (
            Err(anyhow::anyhow!("cutover: {}", describe(&e))),
            Some(renamer),
        );
    }
    let sql = rename(names);
    let mut pending = tokio::spawn(async move {
        let r = renamer.query_drop(sql).await;
        (r, renamer)
    });
    // The RENAME must wait behind the lock before the sentry goes.
    let started = Instant::now();
    loop {
        let state: Option<Option<String>> = match watcher
            .exec_first(
                "SELECT STATE FROM information_schema.PROCESSLIST WHERE ID = ?",
                (id,),
            )
            .await
        {
            Ok(s) => s,
            Err(e) => {
                // The RENAME must not outlive this attempt: cancel it while the lock still holds it.
                let _ = ctrl.query_drop(format!("KILL QUERY {id}")).await;
                let renamer = match pending.await {
                    Ok((Err(_), r)) => Some(r),
                    _ => None,
                };
                return (
                    Err(anyhow::anyhow!(
                        "cutover: watching the RENAME: {}",
                        describe(&e)
                    )),
                    renamer,
                );
            }
        };
        if state
            .flatten()
            .is_some_and(|s| s.to_ascii_lowercase().contains("metadata lock"))
        {
            break;
        }
        if pending.is_finished() || started.elapsed() > RENAME_QUEUE_TIMEOUT {
            let _ = watcher.query_drop(format!("KILL QUERY {id}")).await;
            return match (&mut pending).await {
                Ok((Err(e), r)) => (
                    Err(anyhow::anyhow!(
                        "cutover: the RENAME did not wait for the lock: {}",
                        describe(&e)
                    )),
                    Some(r),
                ),
                Ok((Ok(()), _)) => (
                    Err(anyhow::anyhow!(
                        "cutover: the RENAME ran while the lock was held"
                    )),
                    None,
                ),
                Err(e) => (
                    Err(anyhow::anyhow!("cutover: the RENAME task failed: {e}")),
                    None,
                ),
            };
        }
        tokio::time::sleep(Duration::from_millis(1)).await;
    }
    // The RENAME waits behind the lock; the sentry still makes it fail if we die here.
    faults.hit(Point::BeforeSwapCommit).await;
    let released = async {
        ctrl.query_drop(format!("DROP TABLE {}", names.old_q()))
            .await?;
        ctrl.query_drop("UNLOCK TABLES").await
    }
    .await;
    let renamed = pending.await;
    match (released, renamed) {
        (Ok(()), Ok((Ok(()), _))) => (Ok(()), None),
        (released, renamed) => {
            // A lost session or a failed RENAME: only the tables tell what happened.
            let what = match (&released, &renamed) {
                (Err(e), _) => describe(e),
                (_, Ok((Err(e), _))) => describe(e),
                (_, Err(e)) => e.to_string(),
                _ => String::new(),
            };
            match swapped(watcher, names).await {
                Ok(true) => {
                    tracing::warn!("cutover: {what}; the tables show the swap committed");
                    (Ok(()), None)
                }
                Ok(false) => (
                    Err(anyhow::anyhow!(
                        "cutover: {what}; the tables show no swap happened, the original table is in place"
                    )),
                    renamed.ok().map(|(_, r)| r),
                ),
                Err(e) => (Err(e), None),
            }
        }
    }
}
