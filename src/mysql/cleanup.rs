//! Removing what a run created: the changelog, the shadow and a cutover's
//! sentry table, at the end of every run and by `wraith cleanup`, which also
//! finishes moving triggers and keys when a run stopped in the middle of that.

use mysql_async::Conn;
use mysql_async::prelude::Queryable;

use crate::Engine;
use crate::error::bad_input;
use crate::mysql::conn::{self, MyResult};
use crate::mysql::names::Names;
use crate::mysql::{catalog, cutover, runs};
use crate::plan::MigrationSpec;

/// Drops the changelog, the shadow and a sentry. A shadow kept for inspection
/// (`keep_shadow`) keeps its changelog too: that marks it as wraith's, so that
/// `wraith cleanup` and the next run may remove it.
pub async fn remove(c: &mut Conn, n: &Names, keep_shadow: bool) -> anyhow::Result<Vec<String>> {
    let mut removed = Vec::new();
    let present: Vec<String> = catalog::existing(c, &n.schema, &[&n.shadow, &n.changelog])
        .await?
        .into_iter()
        .map(|(t, _)| t)
        .collect();
    // Moves a swap could not finish stay recorded for `wraith cleanup`.
    let moves_left =
        present.contains(&n.changelog) && cutover::Recorded::left(c, n).await?.is_some();
    if !keep_shadow && present.contains(&n.shadow) {
        c.query_drop(format!("DROP TABLE IF EXISTS {}", n.shadow_q()))
            .await
            .my("cleanup: dropping the shadow table")?;
        removed.push(n.shadow_q());
    }
    if present.contains(&n.changelog)
        && !(keep_shadow && present.contains(&n.shadow))
        && !moves_left
    {
        c.query_drop(format!("DROP TABLE IF EXISTS {}", n.changelog_q()))
            .await
            .my("cleanup: dropping the changelog table")?;
        removed.push(n.changelog_q());
    }
    cutover::drop_sentry(c, n).await?;
    Ok(removed)
}

/// `wraith cleanup` on MySQL/MariaDB: removes an earlier run's changelog, shadow and sentry.
pub async fn cleanup_command(spec: &MigrationSpec) -> anyhow::Result<Vec<String>> {
    let names = Names::new(&Engine::MySql.schema_of(spec)?, &spec.table)?;
    let mut c = conn::connect(&spec.dsn, "cleanup").await?;
    if runs::lock_run(&mut c, &names).await?.is_some() {
        return Err(bad_input(format!(
            "a wraith run is migrating {} right now; cleanup leaves its tables alone",
            names.src()
        )));
    }
    let ours = !catalog::existing(&mut c, &names.schema, &[&names.changelog])
        .await?
        .is_empty();
    let mut removed = Vec::new();
    if ours {
        // A run stopped between the RENAME and the last move: finish the moves first.
        if let Some(recorded) = cutover::Recorded::left(&mut c, &names).await? {
            let mut killer = conn::connect(&spec.dsn, "cleanup watch").await?;
            let moved = cutover::finish_recorded(&mut c, &mut killer, &names, recorded).await;
            let _ = killer.disconnect().await;
            for stmt in moved? {
                tracing::warn!("finished moving to the new table: {stmt}");
            }
        }
        removed.extend(remove(&mut c, &names, false).await?);
    }
    let _ = c.disconnect().await;
    Ok(removed)
}
