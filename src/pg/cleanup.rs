//! Removing what wraith created for a table: after every run (success, failure,
//! abort) and on demand (`wraith cleanup`). Only wraith's own objects are touched:
//! the slot and publication by their deterministic names, the shadow table only
//! when it carries wraith's marker comment. The original and the kept old table
//! are never dropped here.

use std::time::{Duration, Instant};

use tokio_postgres::Client;

use crate::pg::conn::DbResult;
use crate::pg::names::Names;
use crate::pg::sql::ident;

/// What to do about a slot still held by a live session.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ActiveSlot {
    /// Our own session is closing: wait for the temporary slot to go with it.
    Wait,
    /// Someone else's run: refuse to touch it.
    Refuse,
}

/// Removes the slot, the publication and (unless `keep_shadow`) the marked shadow.
/// Returns what was removed.
pub async fn remove(
    c: &Client,
    names: &Names,
    active: ActiveSlot,
    keep_shadow: bool,
) -> anyhow::Result<Vec<String>> {
    let mut removed = Vec::new();
    let started = Instant::now();
    loop {
        let slot = c
            .query_opt(
                "SELECT active, active_pid FROM pg_replication_slots WHERE slot_name = $1",
                &[&names.slot],
            )
            .await
            .db("looking for wraith's replication slot")?;
        match slot {
            None => break,
            Some(r) if !r.get::<_, bool>(0) => {
                c.execute("SELECT pg_drop_replication_slot($1)", &[&names.slot])
                    .await
                    .db("dropping the replication slot")?;
                removed.push(format!("replication slot {}", names.slot));
                break;
            }
            Some(r) => {
                let pid: Option<i32> = r.get(1);
                if active == ActiveSlot::Refuse || started.elapsed() > Duration::from_secs(15) {
                    anyhow::bail!(
                        "replication slot {} is in use by pid {} (a wraith run still going?): stop that run \
                         first, or end the session with SELECT pg_terminate_backend({}); nothing was removed",
                        names.slot,
                        pid.unwrap_or_default(),
                        pid.unwrap_or_default()
                    );
                }
                tokio::time::sleep(Duration::from_millis(50)).await;
            }
        }
    }
    let had_pub: bool = c
        .query_one(
            "SELECT EXISTS (SELECT 1 FROM pg_publication WHERE pubname = $1)",
            &[&names.publication],
        )
        .await
        .db("looking for wraith's publication")?
        .get(0);
    if had_pub {
        c.batch_execute(&format!(
            "DROP PUBLICATION IF EXISTS {}",
            ident(&names.publication)
        ))
        .await
        .db("dropping the publication")?;
        removed.push(format!("publication {}", names.publication));
    }
    if is_marked(c, &names.checkpoint_q(), &names.checkpoint_comment()).await? {
        c.batch_execute(&format!("DROP TABLE {}", names.checkpoint_q()))
            .await
            .db("dropping the checkpoint table")?;
        removed.push(format!("checkpoint table {}", names.checkpoint_q()));
    }
    if !keep_shadow && is_marked_shadow(c, names).await? {
        c.batch_execute(&format!("DROP TABLE {}", names.shadow_q()))
            .await
            .db("dropping the shadow table")?;
        removed.push(format!("shadow table {}", names.shadow_q()));
    }
    Ok(removed)
}

/// The table under the shadow's name exists and carries wraith's marker comment.
pub async fn is_marked_shadow(c: &Client, names: &Names) -> anyhow::Result<bool> {
    is_marked(c, &names.shadow_q(), &names.shadow_comment()).await
}

/// Table `table` exists and its comment is `mark`.
async fn is_marked(c: &Client, table: &str, mark: &str) -> anyhow::Result<bool> {
    let comment: Option<String> = c
        .query_one(
            "SELECT obj_description(to_regclass($1), 'pg_class')",
            &[&table],
        )
        .await
        .db("looking for wraith's tables")?
        .get(0);
    Ok(comment.as_deref() == Some(mark))
}

/// `wraith cleanup`: removes an earlier run's slot, publication and shadow for the table.
pub async fn cleanup_command(spec: &crate::plan::MigrationSpec) -> anyhow::Result<Vec<String>> {
    let names = Names::new(spec.schema(), &spec.table)?;
    let c = crate::pg::conn::connect(&spec.dsn, "cleanup").await?;
    // A resumable run's persistent slot is idle between reads: only the run lock
    // tells that the run is alive.
    crate::pg::runs::lock(&c, &names).await?;
    // A way back whose migration never swapped (its shadow is still here, never
    // renamed) can never be used: it goes with the rest.
    let back = Names::back(&names.schema, &names.table)?;
    let way_back = crate::pg::revert::read(&c, &back).await?;
    let unswapped =
        way_back.as_ref().is_some_and(|r| r.from.is_none()) && is_marked_shadow(&c, &names).await?;
    let mut removed = remove(&c, &names, ActiveSlot::Refuse, false).await?;
    if unswapped {
        removed.extend(crate::pg::revert::forget(&c, &back).await?);
    } else if way_back.is_some() {
        // A way back is kept on purpose, so it stays; but its slot keeps WAL.
        tracing::warn!(
            "a way back is kept for {} (`migrate --revertible`): its replication slot {} keeps \
             WAL until `wraith revert` uses it or `wraith revert --forget` removes it",
            names.src(),
            back.slot
        );
    }
    Ok(removed)
}
