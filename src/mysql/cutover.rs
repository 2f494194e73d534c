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
//! When triggers or foreign keys move ([`moves`]), a third session queues
//! `LOCK TABLES` on the new and old names behind the RENAME before step 4; the
//! server grants it before any waiting write, so they move before a write reaches
//! the new table.
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

use anyhow::Context;

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

/// `LOCK TABLES` for the cutover: the source, the shadow, the sentry on MariaDB,
/// and the tables the keys tie the source to.
pub fn lock_tables(names: &Names, sentry: bool, table: &Table) -> String {
    let mut tables = vec![
        format!("{} WRITE", names.src()),
        format!("{} WRITE", names.shadow_q()),
    ];
    if sentry {
        tables.push(format!("{} WRITE", names.old_q()));
    }
    lock_list(tables, table)
}

/// `LOCK TABLES` of `tables` and what the moves alter beside them.
fn lock_list(mut tables: Vec<String>, table: &Table) -> String {
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
) -> anyhow::Result<bool> {
    faults.hit(Point::BeforeSwapCommit).await;
    ctrl.query_drop(rename(names))
        .await
        .my("cutover: renaming the tables")?;
    let moved = run_moves(ctrl, moves, faults).await;
    ctrl.query_drop("UNLOCK TABLES")
        .await
        .my("cutover: unlocking")?;
    Ok(moved)
}

/// Runs [`moves`] after the RENAME committed, on the session that holds the lock.
/// The swap stands whatever happens here: a failure is reported with what is
/// left (`false`: the moves stay recorded for `wraith cleanup`).
async fn run_moves(c: &mut Conn, moves: &[String], faults: &Faults) -> bool {
    if moves.is_empty() {
        return true;
    }
    faults.hit(Point::MidMoves).await;
    match apply_moves(c, moves).await {
        Ok(()) => true,
        Err(e) => {
            tracing::error!("the swap is done, but {e:#}; `wraith cleanup` finishes the moves");
            false
        }
    }
}

/// Runs `moves` with `foreign_key_checks` off; an error names the failing
/// statement and what is left to run.
async fn apply_moves(c: &mut Conn, moves: &[String]) -> anyhow::Result<()> {
    let mut done = 0;
    let moved = async {
        c.query_drop("SET SESSION foreign_key_checks = 0").await?;
        for stmt in moves {
            c.query_drop(stmt).await?;
            done += 1;
        }
        c.query_drop("SET SESSION foreign_key_checks = 1").await
    }
    .await;
    moved.map_err(|e| {
        anyhow::anyhow!(
            "not everything moved to the new table: {} failed with {}. Run what is left: {}",
            moves
                .get(done)
                .map_or("resetting foreign_key_checks", |s| s.as_str()),
            describe(&e),
            left_to_run(&moves[done.min(moves.len())..])
        )
    })
}

/// The moves of a swap, recorded in the changelog before the cutover and
/// deleted once they ran: a run stopped between the RENAME and the last move
/// leaves them for `wraith cleanup` ([`finish_recorded`]).
#[derive(Debug, Clone, serde::Serialize, serde::Deserialize)]
pub struct Recorded {
    /// [`lock_for_moves`].
    pub lock: String,
    /// [`moves`].
    pub moves: Vec<String>,
}

impl Recorded {
    pub fn of(names: &Names, table: &Table) -> anyhow::Result<Recorded> {
        Ok(Recorded {
            lock: lock_for_moves(names, table),
            moves: moves(names, table)?,
        })
    }

    pub async fn read(c: &mut Conn, names: &Names) -> anyhow::Result<Option<Recorded>> {
        let value: Option<String> = c
            .exec_first(
                format!("SELECT value FROM {} WHERE id = ?", names.changelog_q()),
                (MOVES_ID,),
            )
            .await
            .my("reading the swap's recorded moves")?;
        value
            .map(|v| serde_json::from_str(&v).context("the changelog's recorded moves"))
            .transpose()
    }

    /// The recorded moves of a swap that committed without finishing them (the
    /// moves run only after the RENAME: without a swap nothing was moved).
    pub async fn left(c: &mut Conn, names: &Names) -> anyhow::Result<Option<Recorded>> {
        match Recorded::read(c, names).await? {
            Some(r) if swapped(c, names).await? => Ok(Some(r)),
            _ => Ok(None),
        }
    }

    pub async fn forget(c: &mut Conn, names: &Names) -> anyhow::Result<()> {
        c.exec_drop(
            format!("DELETE FROM {} WHERE id = ?", names.changelog_q()),
            (MOVES_ID,),
        )
        .await
        .my("clearing the swap's recorded moves")
    }
}

/// The changelog row holding [`Recorded`].
pub const MOVES_ID: i64 = 4;

/// Runs what a stopped swap left of its recorded moves, under their lock. Each
/// statement either runs or was already done (a trigger or key already dropped
/// or already there): the moves drop before they create, so replaying them all
/// ends in the same place whatever was done before.
pub async fn finish_recorded(
    c: &mut Conn,
    killer: &mut Conn,
    names: &Names,
    recorded: Recorded,
) -> anyhow::Result<Vec<String>> {
    let lock = &recorded.lock;
    if !lock_within(c, killer, lock, Duration::from_secs(5)).await? {
        return Err(anyhow::anyhow!(
            "cleanup: {lock} was not granted within 5 s (a long transaction holds one of the \
             tables); run cleanup again, or run: {}",
            left_to_run(&recorded.moves)
        ));
    }
    let mut ran = Vec::new();
    let replayed = async {
        c.query_drop("SET SESSION foreign_key_checks = 0").await?;
        for stmt in &recorded.moves {
            match c.query_drop(stmt).await {
                Ok(()) => ran.push(stmt.clone()),
                Err(e) if already_done(&e) => {}
                Err(e) => return Err(e),
            }
        }
        c.query_drop("SET SESSION foreign_key_checks = 1").await
    }
    .await;
    let unlocked = c.query_drop("UNLOCK TABLES").await;
    replayed.my(&format!(
        "cleanup: moving triggers and keys to {}",
        names.src()
    ))?;
    unlocked.my("cleanup: unlocking")?;
    Recorded::forget(c, names).await?;
    Ok(ran)
}

/// A move that a stopped swap had already made: dropping what is gone, creating
/// what is there.
fn already_done(e: &mysql_async::Error) -> bool {
    match e {
        mysql_async::Error::Server(s) => match s.code {
            // Can't DROP (a key); trigger does not exist; trigger already exists;
            // duplicate foreign key name (MySQL).
            1091 | 1360 | 1359 | 1826 => true,
            // MariaDB's duplicate constraint name.
            1005 => s.message.contains("errno: 121"),
            _ => false,
        },
        _ => false,
    }
}

/// The statements of [`moves`] not yet run, as one script for the DBA.
pub fn left_to_run(moves: &[String]) -> String {
    format!(
        "SET foreign_key_checks = 0; {}; SET foreign_key_checks = 1",
        moves.join("; ")
    )
}

/// The MariaDB session that moves triggers and keys: its `LOCK TABLES` queues
/// behind the RENAME, and a queued `LOCK TABLES … WRITE` goes before every write
/// waiting for the same table (the server grants waiting exclusive-type locks
/// first), so it holds the new table before any write reaches it.
pub struct Mover {
    pub conn: Conn,
    /// [`lock_for_moves`].
    pub lock: String,
    /// [`moves`].
    pub moves: Vec<String>,
}

/// The sessions of a MariaDB swap that can serve another attempt.
#[derive(Default)]
pub struct Spare {
    pub renamer: Option<Conn>,
    pub mover: Option<Conn>,
    /// The triggers and keys moved (or none had to).
    pub moved: bool,
}

/// A statement running on its own session in the background, so that the
/// cutover can check it waits behind the lock before letting go.
struct Queued {
    id: u32,
    task: tokio::task::JoinHandle<(Result<(), mysql_async::Error>, Conn)>,
}

impl Queued {
    async fn start(
        mut c: Conn,
        lock_wait: u64,
        sql: String,
    ) -> Result<Queued, (anyhow::Error, Conn)> {
        if let Err(e) = c
            .query_drop(format!("SET SESSION lock_wait_timeout = {lock_wait}"))
            .await
        {
            return Err((anyhow::anyhow!("cutover: {}", describe(&e)), c));
        }
        let id = c.id();
        let task = tokio::spawn(async move {
            let r = c.query_drop(sql).await;
            (r, c)
        });
        Ok(Queued { id, task })
    }

    /// Waits until the statement waits for a metadata lock.
    async fn wait_queued(&mut self, watcher: &mut Conn, what: &str) -> anyhow::Result<()> {
        let started = Instant::now();
        loop {
            let state: Option<Option<String>> = watcher
                .exec_first(
                    "SELECT STATE FROM information_schema.PROCESSLIST WHERE ID = ?",
                    (self.id,),
                )
                .await
                .my(&format!("cutover: watching {what}"))?;
            if state
                .flatten()
                .is_some_and(|s| s.to_ascii_lowercase().contains("metadata lock"))
            {
                return Ok(());
            }
            if self.task.is_finished() || started.elapsed() > RENAME_QUEUE_TIMEOUT {
                return Err(anyhow::anyhow!("cutover: {what} did not wait for the lock"));
            }
            tokio::time::sleep(Duration::from_millis(1)).await;
        }
    }

    /// Cancels the statement (while the lock still holds it back) and returns its
    /// session when it is still usable.
    async fn cancel(self, killer: &mut Conn) -> Option<Conn> {
        let _ = killer.query_drop(format!("KILL QUERY {}", self.id)).await;
        match self.task.await {
            Ok((r, mut c)) => {
                if r.is_ok() {
                    // Granted after all: it is let go at once.
                    c.query_drop("UNLOCK TABLES").await.ok()?;
                }
                Some(c)
            }
            Err(_) => None,
        }
    }

    async fn finish(self) -> Result<(Result<(), mysql_async::Error>, Conn), anyhow::Error> {
        self.task
            .await
            .map_err(|e| anyhow::anyhow!("cutover: a cutover session's task failed: {e}"))
    }
}

/// How long the moves' `LOCK TABLES` may wait: it is granted as soon as the
/// RENAME is done, unless a write took one of the referencing tables first.
const MOVER_LOCK_WAIT: u64 = 10;

/// `LOCK TABLES` for [`Mover`]: the names the new and the old table have after
/// the RENAME, and the tables the keys tie them to.
pub fn lock_for_moves(names: &Names, table: &Table) -> String {
    lock_list(
        vec![
            format!("{} WRITE", names.src()),
            format!("{} WRITE", names.old_q()),
        ],
        table,
    )
}

/// Steps 3 and 4 of the MariaDB protocol, then the moves. `ctrl` holds the
/// locks; `renamer` issues the RENAME; `mover`, when triggers or keys move,
/// queues behind it and moves them; `watcher` checks that both wait.
pub async fn swap_with_sentry(
    ctrl: &mut Conn,
    renamer: Conn,
    mover: Option<Mover>,
    watcher: &mut Conn,
    names: &Names,
    faults: &Faults,
) -> (anyhow::Result<()>, Spare) {
    let mut spare = Spare::default();
    let (mover_conn, moving) = match mover {
        Some(m) => (Some(m.conn), Some((m.lock, m.moves))),
        None => (None, None),
    };
    spare.mover = mover_conn;
    let mut renaming = match Queued::start(renamer, 60, rename(names)).await {
        Ok(q) => q,
        Err((e, c)) => {
            spare.renamer = Some(c);
            return (Err(e), spare);
        }
    };
    // The RENAME must wait behind the lock before the sentry goes.
    if let Err(e) = renaming.wait_queued(watcher, "the RENAME").await {
        spare.renamer = renaming.cancel(watcher).await;
        return (Err(e), spare);
    }
    let mut queued_moves = None;
    if let (Some(c), Some((lock, moves))) = (spare.mover.take(), moving) {
        let mut q = match Queued::start(c, MOVER_LOCK_WAIT, lock).await {
            Ok(q) => q,
            Err((e, c)) => {
                spare.mover = Some(c);
                spare.renamer = renaming.cancel(watcher).await;
                return (Err(e), spare);
            }
        };
        if let Err(e) = q.wait_queued(watcher, "the lock for the moves").await {
            spare.mover = q.cancel(watcher).await;
            spare.renamer = renaming.cancel(watcher).await;
            return (Err(e), spare);
        }
        queued_moves = Some((q, moves));
    }
    // Both wait behind the lock; the sentry still makes the RENAME fail if we die here.
    faults.hit(Point::BeforeSwapCommit).await;
    let released = async {
        ctrl.query_drop(format!("DROP TABLE {}", names.old_q()))
            .await?;
        ctrl.query_drop("UNLOCK TABLES").await
    }
    .await;
    let renamed = renaming.finish().await;
    let result = match (released, renamed) {
        (Ok(()), Ok((Ok(()), c))) => {
            spare.renamer = Some(c);
            Ok(true)
        }
        (released, renamed) => {
            // A lost session or a failed RENAME: only the tables tell what happened.
            let what = match (&released, &renamed) {
                (Err(e), _) => describe(e),
                (_, Ok((Err(e), _))) => describe(e),
                (_, Err(e)) => e.to_string(),
                _ => String::new(),
            };
            if let Ok((Err(_), c)) = renamed {
                spare.renamer = Some(c);
            }
            match swapped(watcher, names).await {
                Ok(true) => {
                    tracing::warn!("cutover: {what}; the tables show the swap committed");
                    Ok(true)
                }
                Ok(false) => Err(anyhow::anyhow!(
                    "cutover: {what}; the tables show no swap happened, the original table is in place"
                )),
                Err(e) => Err(e),
            }
        }
    };
    spare.moved = true;
    if let Some((q, moves)) = queued_moves {
        (spare.mover, spare.moved) =
            finish_moves(q, &moves, matches!(result, Ok(true)), faults).await;
    }
    (result.map(|_| ()), spare)
}

/// The mover's lock is granted (or failed): when the swap committed, the moves
/// run under it; either way it is let go. Returns the session and whether the
/// moves ran.
async fn finish_moves(
    q: Queued,
    moves: &[String],
    swapped: bool,
    faults: &Faults,
) -> (Option<Conn>, bool) {
    let (locked, mut c) = match q.finish().await {
        Ok(done) => done,
        Err(e) => {
            if swapped {
                tracing::error!("the swap is done, but {e:#}; `wraith cleanup` finishes the moves");
            }
            return (None, !swapped);
        }
    };
    let mut moved = !swapped;
    match locked {
        Ok(()) => {
            if swapped {
                moved = run_moves(&mut c, moves, faults).await;
            }
            if c.query_drop("UNLOCK TABLES").await.is_err() {
                return (None, moved);
            }
        }
        Err(e) if swapped => tracing::error!(
            "the swap is done, but the lock for moving triggers and keys failed ({}); \
             `wraith cleanup` finishes the moves",
            describe(&e)
        ),
        Err(_) => {}
    }
    (Some(c), moved)
}
