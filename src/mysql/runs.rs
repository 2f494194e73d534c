//! Runs of wraith on a table: one at a time, and each spec once. A named lock
//! (`GET_LOCK`) held by the control session for the whole run keeps a second
//! run, and `wraith cleanup`, off a table that is being migrated; it goes with
//! the session. `wraith_history` records completed migrations.

use mysql_async::Conn;
use mysql_async::prelude::Queryable;

use crate::error::bad_input;
use crate::mysql::conn::{MyResult, describe};
use crate::mysql::names::Names;
use crate::mysql::sql::q;

/// Takes the run lock that keeps two runs (or a run and `wraith cleanup`) off one
/// table; held by the session until it ends. `Some(holder)`: another session has it.
pub async fn lock_run(c: &mut Conn, names: &Names) -> anyhow::Result<Option<String>> {
    let lock = names.run_lock();
    let got: Option<i64> = c
        .exec_first("SELECT GET_LOCK(?, 0)", (&lock,))
        .await
        .my("taking the run lock")?;
    if got == Some(1) {
        return Ok(None);
    }
    let holder: Option<Option<u64>> = c
        .exec_first("SELECT IS_USED_LOCK(?)", (&lock,))
        .await
        .my("reading the run lock")?;
    Ok(Some(
        holder
            .flatten()
            .map(|h| h.to_string())
            .unwrap_or("?".into()),
    ))
}

/// Where completed migrations are recorded, in the table's schema.
pub const HISTORY: &str = "wraith_history";

/// The table's definition as `SHOW CREATE TABLE` gives it, without its name and
/// its AUTO_INCREMENT counter: what the record compares the table with.
async fn definition_text(c: &mut Conn, names: &Names) -> anyhow::Result<String> {
    let row: Option<(String, String)> = c
        .query_first(format!("SHOW CREATE TABLE {}", names.src()))
        .await
        .my("reading the table's definition")?;
    let text = row.map(|(_, t)| t).unwrap_or_default();
    let body = text.split_once('\n').map_or("", |(_, rest)| rest);
    Ok(body
        .split(' ')
        .filter(|word| !word.starts_with("AUTO_INCREMENT="))
        .collect::<Vec<_>>()
        .join(" "))
}

/// When this spec (by fingerprint) was applied to the table as it is now, if it
/// was: a record of it names the definition the table still has.
pub async fn completed(
    c: &mut Conn,
    names: &Names,
    fingerprint: &str,
) -> anyhow::Result<Option<String>> {
    let exists = crate::mysql::catalog::existing(c, &names.schema, &[HISTORY]).await?;
    if exists.is_empty() {
        return Ok(None);
    }
    let definition = definition_text(c, names).await?;
    let history = format!("{}.{}", q(&names.schema), q(HISTORY));
    let when: Option<String> = c
        .exec_first(
            format!(
                "SELECT DATE_FORMAT(finished_at, '%Y-%m-%d %H:%i:%s') FROM {history} \
                 WHERE table_name = ? AND fingerprint = ? AND definition = ? \
                 ORDER BY finished_at DESC LIMIT 1"
            ),
            (&names.table, fingerprint, &definition),
        )
        .await
        .map_err(|e| {
            bad_input(format!(
                "{history}, where wraith records completed migrations, cannot be read: {}. \
                 Fix: GRANT SELECT, INSERT ON {history} TO the migrating user",
                describe(&e)
            ))
        })?;
    Ok(when.map(|w| format!("on {w}")))
}

/// Records the migration after the swap: the spec's fingerprint and the new
/// table's definition, so a rerun of the spec is a no-op while the table is the
/// one it made. (RENAME commits on its own, so the record follows it: a run
/// killed between the two is not recorded, and a rerun applies the ALTER again.)
pub async fn record(
    c: &mut Conn,
    names: &Names,
    fingerprint: &str,
    alter: &str,
) -> anyhow::Result<()> {
    let history = format!("{}.{}", q(&names.schema), q(HISTORY));
    c.query_drop(format!(
        "CREATE TABLE IF NOT EXISTS {history} (table_name varchar(64) NOT NULL, \
         fingerprint varchar(32) NOT NULL, definition mediumtext NOT NULL, \
         alter_text mediumtext NOT NULL, finished_at timestamp NOT NULL DEFAULT CURRENT_TIMESTAMP) \
         ENGINE = InnoDB COMMENT = 'wraith: completed migrations'"
    ))
    .await
    .my("creating wraith's history")?;
    let definition = definition_text(c, names).await?;
    c.exec_drop(
        format!(
            "INSERT INTO {history} (table_name, fingerprint, definition, alter_text) \
             VALUES (?, ?, ?, ?)"
        ),
        (&names.table, fingerprint, &definition, alter.trim()),
    )
    .await
    .my("recording the migration")
}
