//! Runs of wraith on a table: one at a time. A named lock (`GET_LOCK`) held by
//! the control session for the whole run keeps a second run, and `wraith
//! cleanup`, off a table that is being migrated; it goes with the session.

use mysql_async::Conn;
use mysql_async::prelude::Queryable;

use crate::mysql::conn::MyResult;
use crate::mysql::names::Names;

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
