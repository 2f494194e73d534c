//! Runs of wraith on a table: one at a time (a session advisory lock held by the
//! control session for the whole run), and a record of completed migrations in
//! `wraith_history`, written in the swap's own transaction so that it exists if and
//! only if the swap committed. A rerun of a completed spec finds it and does nothing.
//! Also the table a run saves its checkpoints in, beside the shadow.
//! Any role may read and add to the record (it is granted to PUBLIC), so the role
//! that migrates one table does not lock others out of migrating theirs.

use tokio_postgres::Client;

use crate::error::bad_input;
use crate::pg::conn::DbResult;
use crate::pg::names::Names;
use crate::pg::sql::{literal, qualified};

/// Table of completed migrations, in the migrated table's schema.
pub const HISTORY: &str = "wraith_history";

/// First half of wraith's advisory lock keys ("WRTH"); the second is the table's hash.
const LOCK_CLASS: i32 = 0x5752_5448;

/// Takes the per-table run lock for this session, or says who holds it. A run that
/// just ended may hold it for a moment while its session closes: wait a little.
pub async fn lock(c: &Client, names: &Names) -> anyhow::Result<()> {
    let target = format!("{}.{}", names.schema, names.table);
    for attempt in 0..20 {
        if attempt > 0 {
            tokio::time::sleep(std::time::Duration::from_millis(100)).await;
        }
        let got: bool = c
            .query_one(
                "SELECT pg_try_advisory_lock($1, hashtext($2))",
                &[&LOCK_CLASS, &target],
            )
            .await
            .db("taking wraith's run lock for the table")?
            .get(0);
        if got {
            return Ok(());
        }
    }
    let pid: Option<i32> = c
        .query_one(
            "SELECT min(pid) FROM pg_locks WHERE locktype = 'advisory' AND granted \
             AND classid::int = $1 AND objid::int = hashtext($2)",
            &[&LOCK_CLASS, &target],
        )
        .await
        .db("finding the run that holds the table")?
        .get(0);
    Err(bad_input(format!(
        "another wraith run is migrating {target} (its session is pid {}): wait for it to finish, \
         or stop it (Ctrl-C, or SELECT pg_terminate_backend({}))",
        pid.unwrap_or_default(),
        pid.unwrap_or_default()
    )))
}

/// When this spec (by fingerprint) was applied to the table as it is now, if it was.
pub async fn completed(
    c: &Client,
    names: &Names,
    fingerprint: &str,
) -> anyhow::Result<Option<String>> {
    let history = qualified(&names.schema, HISTORY);
    let found = c
        .query_one(
            "SELECT to_regclass($1) IS NOT NULL, \
                    has_table_privilege(to_regclass($1), 'SELECT') AND has_table_privilege(to_regclass($1), 'INSERT'), \
                    (SELECT pg_get_userbyid(relowner)::text FROM pg_class WHERE oid = to_regclass($1))",
            &[&history],
        )
        .await
        .db("looking for wraith's history")?;
    let (exists, usable): (bool, Option<bool>) = (found.get(0), found.get(1));
    if !exists {
        return Ok(None);
    }
    if usable != Some(true) {
        // Found before anything is built: the swap writes its record there.
        let owner: Option<String> = found.get(2);
        return Err(bad_input(format!(
            "{history}, where wraith records completed migrations, was created by role {} and this role \
             cannot read and write it. As its owner: GRANT SELECT, INSERT ON {history} TO PUBLIC",
            owner.unwrap_or_default()
        )));
    }
    // The record names the table that the swap put in place: a table recreated or
    // swapped back since is not the migrated one.
    let row = c
        .query_opt(
            &format!(
                "SELECT to_char(finished_at, 'YYYY-MM-DD HH24:MI:SS TZ') FROM {history} \
                 WHERE table_name = $1 AND fingerprint = $2 AND relid = to_regclass($3)::oid \
                 ORDER BY finished_at DESC LIMIT 1"
            ),
            &[&names.table, &fingerprint, &names.src()],
        )
        .await
        .db("reading wraith's history")?;
    Ok(row.map(|r| format!("on {}", r.get::<_, String>(0))))
}

/// Statements that record the migration, run inside the swap transaction after the renames.
pub fn record(names: &Names, fingerprint: &str, alter: &str) -> Vec<String> {
    let history = qualified(&names.schema, HISTORY);
    vec![
        // Every role that may migrate a table of the schema reads and writes it, not
        // only the one that happened to create it.
        format!(
            "DO $wraith$ BEGIN IF to_regclass({}) IS NULL THEN \
             CREATE TABLE {history} (table_name text NOT NULL, fingerprint text NOT NULL, \
             relid oid NOT NULL, alter_text text NOT NULL, finished_at timestamptz NOT NULL DEFAULT now()); \
             GRANT SELECT, INSERT ON {history} TO PUBLIC; END IF; END $wraith$",
            literal(&history)
        ),
        format!(
            "INSERT INTO {history} (table_name, fingerprint, relid, alter_text) VALUES ({}, {}, {}::regclass::oid, {})",
            literal(&names.table),
            literal(fingerprint),
            literal(&names.src()),
            literal(alter.trim())
        ),
    ]
}

/// Creates the table a run's checkpoints live in, marked as wraith's.
pub async fn create_checkpoint_table(c: &Client, names: &Names) -> anyhow::Result<()> {
    let ckpt = names.checkpoint_q();
    c.batch_execute(&format!(
        "CREATE TABLE {ckpt} (id int PRIMARY KEY, state text NOT NULL, \
         saved_at timestamptz NOT NULL DEFAULT now()); COMMENT ON TABLE {ckpt} IS {}",
        literal(&names.checkpoint_comment())
    ))
    .await
    .db("creating the checkpoint table")
}

/// Saves a checkpoint, replacing the last one.
pub async fn save_checkpoint(c: &Client, names: &Names, state: &str) -> anyhow::Result<()> {
    c.execute(
        &format!(
            "INSERT INTO {} (id, state, saved_at) VALUES (1, $1, now()) \
             ON CONFLICT (id) DO UPDATE SET state = EXCLUDED.state, saved_at = EXCLUDED.saved_at",
            names.checkpoint_q()
        ),
        &[&state],
    )
    .await
    .db("saving the checkpoint")?;
    Ok(())
}
