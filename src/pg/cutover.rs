//! The PostgreSQL side of the cutover: lock, fence, swap, all in one transaction
//! on the control session. A failure anywhere before COMMIT rolls everything back.

use crate::engine::faults::{Faults, Point};
use std::time::Duration;

use tokio_postgres::Client;

use crate::pg::capture::FENCE_PREFIX;
use crate::pg::catalog::Table;
use crate::pg::conn::{DbResult, describe, sqlstate};
use crate::pg::dependents::Dependents;
use crate::pg::names::Names;
use crate::pg::shadow::Shape;
use crate::pg::sql::{ident, literal, qualified};

/// How much of the source a lock blocks.
#[derive(Debug, Clone, Copy)]
pub enum LockMode {
    /// Everything: for the swap.
    Exclusive,
    /// Writes only: reads and the apply's re-reads continue (verification).
    Writes,
}

/// Opens a transaction and takes the lock within `timeout`. Returns false (with
/// nothing held) when the lock was not granted.
pub async fn lock(
    c: &Client,
    names: &Names,
    timeout: Duration,
    mode: LockMode,
) -> anyhow::Result<bool> {
    let locks = match mode {
        LockMode::Exclusive => format!(
            "LOCK TABLE ONLY {} IN ACCESS EXCLUSIVE MODE; LOCK TABLE ONLY {} IN ACCESS EXCLUSIVE MODE",
            names.src(),
            names.shadow_q()
        ),
        LockMode::Writes => format!("LOCK TABLE ONLY {} IN SHARE MODE", names.src()),
    };
    c.batch_execute("BEGIN")
        .await
        .db("starting the cutover transaction")?;
    let locked = c
        .batch_execute(&format!(
            "SET LOCAL lock_timeout = {}; {locks}",
            timeout.as_millis().max(1)
        ))
        .await;
    match locked {
        Ok(()) => Ok(true),
        Err(e) => {
            c.batch_execute("ROLLBACK")
                .await
                .db("rolling back the cutover attempt")?;
            if sqlstate(&e) == Some("55P03") {
                crate::pg::autovacuum::after_lock_timeout(c, names).await;
                Ok(false)
            } else {
                Err(anyhow::anyhow!(
                    "locking the tables for cutover: {}",
                    describe(&e)
                ))
            }
        }
    }
}

/// Commits a fence message through the stream from another session; with
/// synchronous_commit on, it and everything before it are flushed to the WAL.
pub async fn fence(other: &Client, id: &str) -> anyhow::Result<()> {
    other
        .batch_execute("SET synchronous_commit = on")
        .await
        .db("preparing the fence session")?;
    other
        .execute(
            "SELECT pg_logical_emit_message(true, $1, $2)",
            &[&FENCE_PREFIX, &id],
        )
        .await
        .db("writing the fence message")?;
    Ok(())
}

/// Renames the tables, moves what binds to the old one, and commits. Returns the
/// `VALIDATE CONSTRAINT` statements (with the constraints' names) for the foreign
/// keys re-pointed `NOT VALID`, to run once writes flow again.
pub async fn swap(
    c: &Client,
    names: &Names,
    table: &Table,
    shape: &Shape,
    deps: &Dependents,
    record: &[String],
    faults: &Faults,
) -> anyhow::Result<Vec<(String, String)>> {
    let new_q = names.src();
    // Foreign keys the ALTER gave the shadow that reference the original table (a
    // self-reference written as `REFERENCES <table>`) must follow the name to the new one.
    let shadow_fks: Vec<(String, String, bool)> = c
        .query(
            "SELECT conname::text, pg_get_constraintdef(oid), convalidated FROM pg_constraint \
             WHERE contype = 'f' AND conrelid = $1::text::regclass AND confrelid = $2::text::regclass",
            &[&names.shadow_q(), &new_q],
        )
        .await
        .db("reading the shadow's foreign keys to the original")?
        .iter()
        .map(|r| (r.get(0), r.get(1), r.get(2)))
        .collect();
    let mut stmts = deps.before_rename();
    stmts.push(format!(
        "ALTER TABLE {} RENAME TO {}",
        names.src(),
        ident(&names.old)
    ));
    stmts.push(format!(
        "ALTER TABLE {} RENAME TO {}",
        names.shadow_q(),
        ident(&names.table)
    ));
    // The original index (and constraint) names move to the new table.
    for (_, original) in &shape.index_names {
        stmts.push(format!(
            "ALTER INDEX IF EXISTS {} RENAME TO {}",
            qualified(&names.schema, original),
            ident(&aside_name(original, names.aside_suffix))
        ));
    }
    for (shadow_index, original) in &shape.index_names {
        stmts.push(format!(
            "ALTER INDEX IF EXISTS {} RENAME TO {}",
            qualified(&names.schema, shadow_index),
            ident(original)
        ));
    }
    for (seq, col, identity) in &table.sequences {
        let Some(new_col) = shape.mapping.carried_name(col) else {
            continue;
        };
        if *identity {
            // The new table has its own identity sequence: continue from the old one.
            stmts.push(format!(
                "SELECT setval(pg_get_serial_sequence({}, {}), s.last_value, s.is_called) FROM {seq} s \
                 WHERE pg_get_serial_sequence({}, {}) IS NOT NULL",
                literal(&new_q),
                literal(new_col),
                literal(&new_q),
                literal(new_col)
            ));
        } else {
            // A SERIAL's sequence is shared by both tables' defaults; it must not go
            // away with the old table.
            stmts.push(format!(
                "ALTER SEQUENCE {seq} OWNED BY {new_q}.{}",
                ident(new_col)
            ));
        }
    }
    for (shadow_seq, original) in &shape.sequence_names {
        stmts.push(format!(
            "ALTER SEQUENCE {} RENAME TO {}",
            qualified(&names.schema, original),
            ident(&aside_name(original, names.aside_suffix))
        ));
        stmts.push(format!(
            "ALTER SEQUENCE {} RENAME TO {}",
            qualified(&names.schema, shadow_seq),
            ident(original)
        ));
    }
    stmts.extend(deps.after_rename(&new_q, &names.old_q()));
    for (name, def, _) in &shadow_fks {
        stmts.push(format!(
            "ALTER TABLE {new_q} DROP CONSTRAINT {}",
            ident(name)
        ));
        let def = def.trim_end_matches(" NOT VALID");
        stmts.push(format!(
            "ALTER TABLE {new_q} ADD CONSTRAINT {} {def} NOT VALID",
            ident(name)
        ));
    }
    stmts.push(format!(
        "COMMENT ON TABLE {new_q} IS {}",
        table
            .comment
            .as_deref()
            .map(literal)
            .unwrap_or_else(|| "NULL".into())
    ));
    stmts.extend(record.iter().cloned());
    for s in &stmts {
        c.batch_execute(s)
            .await
            .map_err(|e| anyhow::anyhow!("swapping the tables: {s}: {}", describe(&e)))?;
    }
    faults.hit(Point::BeforeSwapCommit).await;
    c.batch_execute("COMMIT").await.db("committing the swap")?;
    Ok(shadow_fks
        .into_iter()
        .filter(|(_, _, valid)| *valid)
        .map(|(name, _, _)| {
            let validate = format!("ALTER TABLE {new_q} VALIDATE CONSTRAINT {}", ident(&name));
            (name, validate)
        })
        .chain(deps.after_commit(&new_q))
        .collect())
}

/// The name the old table's index (or identity sequence) takes so the new one can
/// have the original: `suffix` appended, within PostgreSQL's 63 bytes.
pub fn aside_name(original: &str, suffix: &str) -> String {
    let mut end = original.len().min(63 - suffix.len());
    while !original.is_char_boundary(end) {
        end -= 1;
    }
    format!("{}{suffix}", &original[..end])
}

/// Runs DDL that takes a lock other sessions' writes conflict with, bounded by
/// `timeout` per attempt and retried with backoff, so writers never queue behind it.
pub async fn with_lock_timeout(
    c: &Client,
    names: &Names,
    stmt: &str,
    timeout: Duration,
    attempts: u32,
) -> anyhow::Result<()> {
    for attempt in 1..=attempts.max(1) {
        c.batch_execute(&format!(
            "BEGIN; SET LOCAL lock_timeout = {}",
            timeout.as_millis().max(1)
        ))
        .await
        .db("starting a bounded DDL transaction")?;
        match c.batch_execute(stmt).await {
            Ok(()) => return c.batch_execute("COMMIT").await.db("committing DDL"),
            Err(e) => {
                c.batch_execute("ROLLBACK").await.db("rolling back DDL")?;
                if sqlstate(&e) != Some("55P03") || attempt == attempts {
                    return Err(crate::pg::conn::db_error(e, stmt));
                }
                crate::pg::autovacuum::after_lock_timeout(c, names).await;
                tokio::time::sleep(crate::engine::pacing::cutover_backoff(attempt)).await;
            }
        }
    }
    Ok(())
}

/// Validates the re-pointed foreign keys; a failure is reported, never dropped.
pub async fn validate(c: &Client, statements: &[(String, String)]) {
    for (name, validate) in statements {
        if let Err(e) = c.batch_execute(validate).await {
            tracing::error!(
                "the swap is done, but validating foreign key {name} failed: {}; it stays NOT VALID \
                 until the data is fixed and it is validated",
                describe(&e)
            );
        }
    }
}

/// Rolls back the cutover transaction (no-op when none is open).
pub async fn release(c: &Client) -> anyhow::Result<()> {
    c.batch_execute("ROLLBACK")
        .await
        .db("rolling back the cutover attempt")
}
