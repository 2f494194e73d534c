//! Copy and apply on MySQL/MariaDB: the SQL over the key, and running it.
//!
//! Both read the source with `LOCK IN SHARE MODE` at READ COMMITTED:
//! - the copy (as gh-ost and pt-online-schema-change do): a chunk never reads a
//!   row version older than a change the stream has already delivered, so no
//!   chunk can resurrect a deleted row and no dirty key needs holding back (2.C);
//! - the apply: the binary log is written before InnoDB commits, and the locking
//!   read waits for the writer's row locks, inserts included (2.B).
//!
//! Copy inserts only missing rows (`ON DUPLICATE KEY UPDATE k = k`, not `INSERT
//! IGNORE`, which would turn strict-mode errors into warnings and lose data).
//! The apply deletes the keys' rows and writes their current versions with
//! `REPLACE`: at READ COMMITTED the delete of a missing row locks nothing, so a
//! copy chunk may insert the same row before the re-read lands (an equal or older
//! version, which the re-read replaces). A row that a unique key of the shadow
//! says conflicts is a stale version of a key that changed since, so it is in the
//! stream and comes back when that key is applied (gh-ost applies with `REPLACE`
//! too).

use std::time::Duration;

use mysql_async::prelude::Queryable;
use mysql_async::{Conn, Params, Row, Value};

use crate::engine::Copied;
use crate::key::{Key, KeyRange};
use crate::mysql::conn::{MyResult, describe, error};
use crate::mysql::sql::{RowSql, key_cmp_params};

/// Keys per apply statement; the last batch is padded so the statement text (and
/// its prepared statement) stays the same.
pub const APPLY_BATCH: usize = 500;
/// Attempts for a statement that hit a deadlock or a lock wait timeout.
const TRANSIENT_ATTEMPTS: u32 = 5;

/// A key value as text, the form keys travel in.
pub fn value_text(v: &Value) -> anyhow::Result<String> {
    Ok(match v {
        Value::NULL => anyhow::bail!("a key column holds NULL"),
        Value::Bytes(b) => String::from_utf8(b.clone())
            .map_err(|_| anyhow::anyhow!("a key value is not valid UTF-8 text"))?,
        Value::Int(i) => i.to_string(),
        Value::UInt(u) => u.to_string(),
        Value::Float(f) => f.to_string(),
        Value::Double(f) => f.to_string(),
        Value::Date(y, mo, d, h, mi, s, us) => {
            format!("{y:04}-{mo:02}-{d:02} {h:02}:{mi:02}:{s:02}.{us:06}")
        }
        Value::Time(neg, d, h, mi, s, us) => format!(
            "{}{}:{mi:02}:{s:02}.{us:06}",
            if *neg { "-" } else { "" },
            *d * 24 + u32::from(*h)
        ),
    })
}

/// The key columns of a result row, as text.
pub fn row_key(row: &Row, width: usize) -> anyhow::Result<Key> {
    (0..width)
        .map(|i| {
            row.as_ref(i)
                .ok_or_else(|| anyhow::anyhow!("a key column is missing from the result"))
                .and_then(value_text)
        })
        .collect()
}

pub fn to_params(values: Vec<Value>) -> Params {
    if values.is_empty() {
        Params::Empty
    } else {
        Params::Positional(values)
    }
}

/// A deadlock or a lock wait timeout: the statement can be run again.
pub fn is_transient(e: &mysql_async::Error) -> bool {
    matches!(e, mysql_async::Error::Server(s) if s.code == 1213 || s.code == 1205)
}

pub async fn last_key(c: &mut Conn, sql: &RowSql) -> anyhow::Result<Option<Key>> {
    let row: Option<Row> = c.query_first(sql.last_key()).await.map_err(|e| {
        error(
            &e,
            format!("finding the table's last key: {}", describe(&e)),
        )
    })?;
    row.map(|r| row_key(&r, sql.key_src.len())).transpose()
}

pub async fn next_chunk(
    c: &mut Conn,
    sql: &RowSql,
    after: Option<&Key>,
    end: &Key,
    rows: u64,
) -> anyhow::Result<KeyRange> {
    let mut values = after.map(key_cmp_params).unwrap_or_default();
    values.extend(key_cmp_params(end));
    let row: Option<Row> = c
        .exec_first(
            sql.next_chunk(after.is_some(), rows.max(1)),
            to_params(values),
        )
        .await
        .map_err(|e| {
            error(
                &e,
                format!("finding the end of the next chunk: {}", describe(&e)),
            )
        })?;
    let upto = match row {
        Some(r) => row_key(&r, sql.key_src.len())?,
        None => end.clone(),
    };
    Ok(KeyRange {
        after: after.cloned(),
        upto,
    })
}

/// Copies the missing rows of a range. A row skipped because another unique key
/// of the shadow already holds its value (an older version of a key that moved,
/// or a new unique key the data does not satisfy) is handed to the apply, which
/// tells the two apart: skipping it silently would lose it.
pub async fn copy_range(c: &mut Conn, sql: &RowSql, range: &KeyRange) -> anyhow::Result<Copied> {
    let stmt = sql.copy(range.after.is_some());
    let mut values = range.after.as_ref().map(key_cmp_params).unwrap_or_default();
    values.extend(key_cmp_params(&range.upto));
    let mut attempt = 1;
    loop {
        match c.exec_drop(stmt.as_str(), to_params(values.clone())).await {
            Ok(()) => break,
            Err(e) if attempt < TRANSIENT_ATTEMPTS && is_transient(&e) => {
                tracing::warn!(attempt, "copy chunk: {}; retrying", describe(&e));
                tokio::time::sleep(Duration::from_millis(20 * u64::from(attempt))).await;
                attempt += 1;
            }
            Err(e) => {
                let after = range
                    .after
                    .as_ref()
                    .map(|k| k.join(", "))
                    .unwrap_or("start".into());
                return Err(error(
                    &e,
                    format!(
                        "copying the rows with keys after ({after}) up to ({}): {}; nothing was swapped",
                        range.upto.join(", "),
                        describe(&e)
                    ),
                ));
            }
        }
    }
    let rows = c.affected_rows();
    // A skipped row changed nothing, so it is in "Records" but not in the affected rows.
    let skipped = records(&c.info()).is_none_or(|r| r > rows);
    let mut recheck = Vec::new();
    if skipped && !sql.uniques.is_empty() {
        let missing: Vec<Row> = c
            .exec(sql.missing(range.after.is_some()), to_params(values))
            .await
            .my("listing the rows a copy chunk skipped")?;
        for r in &missing {
            recheck.push(row_key(r, sql.key_src.len())?);
        }
    }
    Ok(Copied { rows, recheck })
}

/// `Records: N` of a statement's info text.
fn records(info: &str) -> Option<u64> {
    info.split("Records:")
        .nth(1)?
        .split_whitespace()
        .next()?
        .parse()
        .ok()
}

/// Makes the shadow rows of `keys` equal to the source rows: delete, then insert
/// what the source holds now, read with a locking read. `in_txn`: the caller holds
/// `LOCK TABLES` (cutover), where starting a transaction would release the locks.
pub async fn apply_keys(
    c: &mut Conn,
    sql: &RowSql,
    keys: &[Key],
    in_txn: bool,
) -> anyhow::Result<()> {
    for batch in keys.chunks(APPLY_BATCH) {
        let mut attempt = 1;
        loop {
            let result = async {
                if !in_txn {
                    c.query_drop("BEGIN").await?;
                }
                let written = write_batch(c, sql, batch).await?;
                if !in_txn && written == Written::Done {
                    c.query_drop("COMMIT").await?;
                }
                Ok::<Written, mysql_async::Error>(written)
            }
            .await;
            match result {
                Ok(Written::Done) => break,
                Ok(Written::Evicted) => {
                    if !in_txn {
                        let _ = c.query_drop("ROLLBACK").await;
                    }
                    // Another session may have written a conflicting row meanwhile (a copy
                    // chunk, a source row that changed): once more. Rows that still
                    // collide are the new table's unique key not holding for the data.
                    if !in_txn && attempt < TRANSIENT_ATTEMPTS {
                        attempt += 1;
                        continue;
                    }
                    anyhow::bail!(
                        "re-reading {} changed keys (first: {}) into the shadow: their rows collide under \
                         a unique key of the new table ({}), so it does not hold for the rewritten rows; \
                         nothing was swapped",
                        batch.len(),
                        batch[0].join(", "),
                        sql.uniques
                            .iter()
                            .map(|u| u.name.as_str())
                            .collect::<Vec<_>>()
                            .join(", ")
                    );
                }
                Err(e) => {
                    if !in_txn {
                        let _ = c.query_drop("ROLLBACK").await;
                    }
                    if !in_txn && attempt < TRANSIENT_ATTEMPTS && is_transient(&e) {
                        tracing::warn!(attempt, "apply: {}; retrying", describe(&e));
                        tokio::time::sleep(Duration::from_millis(20 * u64::from(attempt))).await;
                        attempt += 1;
                        continue;
                    }
                    return Err(error(
                        &e,
                        format!(
                            "re-reading {} changed keys (first: {}) into the shadow: {}; nothing was swapped",
                            batch.len(),
                            batch[0].join(", "),
                            describe(&e)
                        ),
                    ));
                }
            }
        }
    }
    Ok(())
}

/// What [`write_batch`] did.
#[derive(Debug, PartialEq)]
enum Written {
    Done,
    /// The REPLACE removed rows of other keys than the re-read ones: nothing may be
    /// committed.
    Evicted,
}

/// Rounds of looking for older versions of other keys before giving up.
const CONFLICT_ROUNDS: usize = 32;

/// Deletes `batch`'s shadow rows and writes the source's. A re-read row that a
/// unique key of the shadow says conflicts with another key's row meets an older
/// version of that key (the source holds both at once only if the new unique key
/// does not hold for its data): that key is re-read in the same statement, which
/// brings its current version. Whatever the REPLACE still has to remove is then
/// a collision among the re-read rows themselves, or a row written meanwhile.
async fn write_batch(
    c: &mut Conn,
    sql: &RowSql,
    batch: &[Key],
) -> Result<Written, mysql_async::Error> {
    // Key lists are padded to a multiple of APPLY_BATCH (the last key repeated) so
    // the statements, and their prepared forms, stay few.
    let padded = |keys: &[Key], times: usize| {
        let n = keys.len().div_ceil(APPLY_BATCH) * APPLY_BATCH;
        let one: Vec<Value> = (0..n)
            .flat_map(|i| {
                let k = keys.get(i).unwrap_or(&keys[keys.len() - 1]);
                k.iter().map(|v| Value::from(v.as_str()))
            })
            .collect();
        (
            n,
            Params::Positional((0..times).flat_map(|_| one.clone()).collect()),
        )
    };
    if sql.uniques.is_empty() {
        let (n, params) = padded(batch, 1);
        c.exec_drop(sql.apply_delete(n), params.clone()).await?;
        c.exec_drop(sql.apply_insert(n), params).await?;
        return Ok(Written::Done);
    }
    let mut keys: Vec<Key> = batch.to_vec();
    for _ in 0..CONFLICT_ROUNDS {
        let (n, params) = padded(&keys, 1);
        c.exec_drop(sql.apply_delete(n), params).await?;
        let mut older: Vec<Key> = Vec::new();
        for u in &sql.uniques {
            let (n, params) = padded(&keys, 2);
            let rows: Vec<Row> = c.exec(sql.conflicting(u, n), params).await?;
            for r in &rows {
                let Ok(k) = row_key(r, sql.key_dst.len()) else {
                    continue;
                };
                if !keys.contains(&k) && !older.contains(&k) {
                    older.push(k);
                }
            }
        }
        if older.is_empty() {
            break;
        }
        keys.extend(older);
    }
    let (n, params) = padded(&keys, 1);
    c.exec_drop(sql.apply_insert(n), params.clone()).await?;
    // Each row the REPLACE removed counts once more in the affected rows.
    let affected = c.affected_rows();
    let read = match records(&c.info()) {
        Some(r) => r,
        None => c
            .exec_first::<u64, _, _>(sql.count_source(n), params)
            .await?
            .unwrap_or(0),
    };
    let evicted = affected > read;
    Ok(if evicted {
        Written::Evicted
    } else {
        Written::Done
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn key_values_as_text() {
        assert_eq!(value_text(&Value::Int(-5)).unwrap(), "-5");
        assert_eq!(
            value_text(&Value::Date(2024, 1, 2, 3, 4, 5, 6)).unwrap(),
            "2024-01-02 03:04:05.000006"
        );
        assert!(value_text(&Value::NULL).is_err());
    }
}
