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

use crate::engine::{Copied, Key, KeyRange};
use crate::mysql::conn::{describe, error};
use crate::mysql::names::q;

/// Keys per apply statement; the last batch is padded so the statement text (and
/// its prepared statement) stays the same.
pub const APPLY_BATCH: usize = 500;
/// Attempts for a statement that hit a deadlock or a lock wait timeout.
const TRANSIENT_ATTEMPTS: u32 = 5;

/// The SQL of one migration's copy and apply.
#[derive(Debug, Clone)]
pub struct RowSql {
    pub src: String,
    pub shadow: String,
    /// Key columns, quoted: in the source and in the shadow.
    pub key_src: Vec<String>,
    pub key_dst: Vec<String>,
    /// The shadow's written columns and the source expressions that fill them.
    pub columns: String,
    pub exprs: String,
}

/// `(a > ?) OR (a = ? AND b > ?)`: keys after a key (`strict`), or up to one
/// (`<`, then `<=` on the last column). Spelled out because not every server
/// uses an index for row-constructor comparisons.
pub fn key_cmp(cols: &[String], after: bool) -> String {
    let n = cols.len();
    let clauses: Vec<String> = (0..n)
        .map(|i| {
            let op = match (after, i + 1 == n) {
                (true, _) => ">",
                (false, false) => "<",
                (false, true) => "<=",
            };
            let mut parts: Vec<String> = cols[..i].iter().map(|c| format!("{c} = ?")).collect();
            parts.push(format!("{} {op} ?", cols[i]));
            format!("({})", parts.join(" AND "))
        })
        .collect();
    format!("({})", clauses.join(" OR "))
}

/// The parameters of [`key_cmp`] for `key`.
pub fn key_cmp_params(key: &Key) -> Vec<Value> {
    (0..key.len())
        .flat_map(|i| key[..=i].iter().map(|v| Value::from(v.as_str())))
        .collect()
}

/// `WHERE` text and parameters for keys in `(after, upto]`, either bound open.
pub fn range_filter(
    cols: &[String],
    after: Option<&Key>,
    upto: Option<&Key>,
) -> (String, Vec<Value>) {
    let mut conds = Vec::new();
    let mut params = Vec::new();
    if let Some(a) = after {
        conds.push(key_cmp(cols, true));
        params.extend(key_cmp_params(a));
    }
    if let Some(u) = upto {
        conds.push(key_cmp(cols, false));
        params.extend(key_cmp_params(u));
    }
    if conds.is_empty() {
        conds.push("TRUE".into());
    }
    (conds.join(" AND "), params)
}

/// `k IN (?, ...)` or `(a, b) IN ((?, ?), ...)` for `n` keys.
pub fn key_in(cols: &[String], n: usize) -> String {
    if cols.len() == 1 {
        format!("{} IN ({})", cols[0], vec!["?"; n].join(", "))
    } else {
        let one = format!("({})", vec!["?"; cols.len()].join(", "));
        format!("({}) IN ({})", cols.join(", "), vec![one; n].join(", "))
    }
}

impl RowSql {
    pub fn new(
        src: String,
        shadow: String,
        key_src: &[String],
        key_dst: &[String],
        written: &[(String, String)],
    ) -> RowSql {
        RowSql {
            src,
            shadow,
            key_src: key_src.iter().map(|c| q(c)).collect(),
            key_dst: key_dst.iter().map(|c| q(c)).collect(),
            columns: written
                .iter()
                .map(|(t, _)| q(t))
                .collect::<Vec<_>>()
                .join(", "),
            exprs: written
                .iter()
                .map(|(_, e)| e.as_str())
                .collect::<Vec<_>>()
                .join(", "),
        }
    }

    fn keys_src(&self) -> String {
        self.key_src.join(", ")
    }

    pub fn last_key(&self) -> String {
        let order: Vec<String> = self.key_src.iter().map(|c| format!("{c} DESC")).collect();
        format!(
            "SELECT {} FROM {} ORDER BY {} LIMIT 1",
            self.keys_src(),
            self.src,
            order.join(", ")
        )
    }

    /// The key `rows` keys after `after`, never past `end` (parameters: after, end).
    pub fn next_chunk(&self, after: bool, rows: u64) -> String {
        let mut conds = Vec::new();
        if after {
            conds.push(key_cmp(&self.key_src, true));
        }
        conds.push(key_cmp(&self.key_src, false));
        format!(
            "SELECT {} FROM {} WHERE {} ORDER BY {} LIMIT 1 OFFSET {}",
            self.keys_src(),
            self.src,
            conds.join(" AND "),
            self.keys_src(),
            rows.saturating_sub(1)
        )
    }

    /// Copies the missing rows of a range (parameters: after, upto).
    pub fn copy(&self, after: bool) -> String {
        let mut conds = Vec::new();
        if after {
            conds.push(key_cmp(&self.key_src, true));
        }
        conds.push(key_cmp(&self.key_src, false));
        let k = &self.key_dst[0];
        format!(
            "INSERT INTO {sh} ({cols}) SELECT {exprs} FROM {src} WHERE {w} LOCK IN SHARE MODE \
             ON DUPLICATE KEY UPDATE {sh}.{k} = {sh}.{k}",
            sh = self.shadow,
            cols = self.columns,
            exprs = self.exprs,
            src = self.src,
            w = conds.join(" AND ")
        )
    }

    pub fn apply_delete(&self, n: usize) -> String {
        format!(
            "DELETE FROM {} WHERE {}",
            self.shadow,
            key_in(&self.key_dst, n)
        )
    }

    pub fn apply_insert(&self, n: usize) -> String {
        format!(
            "REPLACE INTO {} ({}) SELECT {} FROM {} WHERE {} LOCK IN SHARE MODE",
            self.shadow,
            self.columns,
            self.exprs,
            self.src,
            key_in(&self.key_src, n)
        )
    }
}

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

pub async fn copy_range(c: &mut Conn, sql: &RowSql, range: &KeyRange) -> anyhow::Result<Copied> {
    let stmt = sql.copy(range.after.is_some());
    let mut attempt = 1;
    loop {
        let mut values = range.after.as_ref().map(key_cmp_params).unwrap_or_default();
        values.extend(key_cmp_params(&range.upto));
        match c.exec_drop(stmt.as_str(), to_params(values)).await {
            Ok(()) => {
                return Ok(Copied {
                    rows: c.affected_rows(),
                    recheck: Vec::new(),
                });
            }
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
        let mut values: Vec<Value> = Vec::with_capacity(APPLY_BATCH * sql.key_src.len());
        for i in 0..APPLY_BATCH {
            let k = batch.get(i).unwrap_or(&batch[batch.len() - 1]);
            values.extend(k.iter().map(|v| Value::from(v.as_str())));
        }
        let (delete, insert) = (sql.apply_delete(APPLY_BATCH), sql.apply_insert(APPLY_BATCH));
        let mut attempt = 1;
        loop {
            let result = async {
                if !in_txn {
                    c.query_drop("BEGIN").await?;
                }
                c.exec_drop(delete.as_str(), Params::Positional(values.clone()))
                    .await?;
                c.exec_drop(insert.as_str(), Params::Positional(values.clone()))
                    .await?;
                if !in_txn {
                    c.query_drop("COMMIT").await?;
                }
                Ok::<(), mysql_async::Error>(())
            }
            .await;
            match result {
                Ok(()) => break,
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

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn key_comparisons_spell_out_composite_keys() {
        let cols = vec!["`a`".to_string(), "`b`".to_string()];
        assert_eq!(key_cmp(&cols, true), "((`a` > ?) OR (`a` = ? AND `b` > ?))");
        assert_eq!(
            key_cmp(&cols, false),
            "((`a` < ?) OR (`a` = ? AND `b` <= ?))"
        );
        let p = key_cmp_params(&vec!["1".into(), "2".into()]);
        assert_eq!(p.len(), 3);
        assert_eq!(key_in(&cols, 2), "(`a`, `b`) IN ((?, ?), (?, ?))");
        assert_eq!(key_in(&cols[..1], 3), "`a` IN (?, ?, ?)");
    }

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
