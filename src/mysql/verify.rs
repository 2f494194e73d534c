//! Checksums on MySQL/MariaDB for the verify phase.
//!
//! A span's sums are `COUNT(*)`, `SUM(CRC32(row))` and `BIT_XOR(CRC32(row, salted))`,
//! where a row is its columns joined with a separator, each after a tag naming
//! its position (so `''` and NULL differ). The source side is the mapping's
//! expressions; a column that is not copied as is (a type change, a transform)
//! is cast to its target type's family on both sides, so `5` in an INT and `5`
//! in a BIGINT agree. Workers read one consistent snapshot: each opens
//! `START TRANSACTION WITH CONSISTENT SNAPSHOT` (REPEATABLE READ) while the
//! engine holds writes.

use crate::dsn::Dsn;
use std::collections::HashMap;
use std::sync::Arc;

use mysql_async::prelude::Queryable;
use mysql_async::{Conn, Row};
use tokio::sync::Mutex;

use crate::error::bad_input;
use crate::key::Key;
use crate::mysql::catalog;
use crate::mysql::conn::{self, MyResult};
use crate::mysql::rows::{row_key, to_params};
use crate::mysql::sql::q;
use crate::mysql::sql::{key_cmp, key_cmp_params, range_filter};
use crate::plan::mapping::{self, Fill, Mapping, SourceColumn, TargetColumn};
use crate::verify::{Checksums, Mode, Report, Span, Sums, VerifyTarget};

pub struct Verifier {
    dsn: Dsn,
    src: String,
    shadow: String,
    key_src: Vec<String>,
    key_dst: Vec<String>,
    /// The row expressions on each side.
    row_src: String,
    row_dst: String,
    /// The two tables sort their keys differently (another collation): ranges in
    /// the source's order are not ranges of the target's key.
    key_order_differs: bool,
    workers: Mutex<Vec<Arc<Mutex<Conn>>>>,
}

/// The cast that makes a value's text comparable with the target column's.
fn family_cast(expr: &str, target_type: &str) -> String {
    let t = target_type.to_ascii_lowercase();
    let base = t.split(['(', ' ']).next().unwrap_or_default();
    let args = t
        .find('(')
        .and_then(|i| t[i..].find(')').map(|j| &t[i..=i + j]))
        .unwrap_or("");
    let to = match base {
        "tinyint" | "smallint" | "mediumint" | "int" | "integer" | "bigint" | "bit" => {
            if t.contains("unsigned") {
                "UNSIGNED".to_string()
            } else {
                "SIGNED".to_string()
            }
        }
        "decimal" | "numeric" => format!("DECIMAL{args}"),
        "float" => "FLOAT".to_string(),
        "double" | "real" => "DOUBLE".to_string(),
        "date" => "DATE".to_string(),
        "datetime" | "timestamp" => format!("DATETIME{args}"),
        "time" => format!("TIME{args}"),
        "binary" | "varbinary" | "tinyblob" | "blob" | "mediumblob" | "longblob" => {
            "BINARY".to_string()
        }
        _ => "CHAR".to_string(),
    };
    format!("CAST({expr} AS {to})")
}

/// `CONCAT_WS` of the columns, each after a constant tag: `CONCAT_WS` skips a
/// NULL but keeps its tag, so NULL and `''` differ and every value keeps its
/// column (tags cost far less than a NULL marker per column).
fn row_text(exprs: &[String]) -> String {
    let tagged: Vec<String> = exprs
        .iter()
        .enumerate()
        .map(|(i, e)| format!("'{i}', {e}"))
        .collect();
    format!("CONCAT_WS('\u{1f}', {})", tagged.join(", "))
}

impl Verifier {
    /// Runs `sql` on the first `n` worker sessions.
    async fn on_workers(&self, n: usize, sql: &str, doing: &str) -> anyhow::Result<()> {
        let pool = self.workers.lock().await;
        for w in pool.iter().take(n) {
            w.lock().await.query_drop(sql).await.my(doing)?;
        }
        Ok(())
    }

    pub fn new(
        dsn: &Dsn,
        src: String,
        shadow: String,
        key_src: &[String],
        key_dst: &[String],
        mapping: &Mapping,
        key_order_differs: bool,
    ) -> Verifier {
        let (mut s, mut d) = (Vec::new(), Vec::new());
        for m in mapping.written() {
            let expr = m.expr.clone().unwrap_or_default();
            let target = q(&m.target);
            match m.fill {
                Fill::Copy { .. } => {
                    s.push(expr);
                    d.push(target);
                }
                _ => {
                    s.push(family_cast(&expr, &m.target_type));
                    d.push(family_cast(&target, &m.target_type));
                }
            }
        }
        Verifier {
            dsn: dsn.clone(),
            src,
            shadow,
            key_src: key_src.iter().map(|k| q(k)).collect(),
            key_dst: key_dst.iter().map(|k| q(k)).collect(),
            row_src: row_text(&s),
            row_dst: row_text(&d),
            key_order_differs,
            workers: Mutex::new(Vec::new()),
        }
    }

    /// Closes every session.
    pub async fn close(&self) {
        let pool = std::mem::take(&mut *self.workers.lock().await);
        for w in pool {
            if let Ok(w) = Arc::try_unwrap(w) {
                let _ = w.into_inner().disconnect().await;
            }
        }
    }

    async fn on_worker<T>(
        &self,
        worker: usize,
        f: impl AsyncFnOnce(&mut Conn) -> anyhow::Result<T>,
    ) -> anyhow::Result<T> {
        let w = self
            .workers
            .lock()
            .await
            .get(worker)
            .cloned()
            .ok_or_else(|| anyhow::anyhow!("verify: worker {worker} is not connected"))?;
        let mut c = w.lock().await;
        f(&mut c).await
    }
}

impl Checksums for Verifier {
    async fn spans(&self, rows: u64) -> anyhow::Result<Vec<Span>> {
        if self.key_order_differs {
            // One span: each table is compared in a single scan, in no range order.
            return Ok(vec![Span {
                after: None,
                upto: None,
            }]);
        }
        let mut c = conn::connect(&self.dsn, "verify").await?;
        let keys = self.key_src.join(", ");
        let mut spans = Vec::new();
        let mut after: Option<Key> = None;
        loop {
            let (filter, params) = match &after {
                Some(a) => (key_cmp(&self.key_src, true), key_cmp_params(a)),
                None => ("TRUE".to_string(), Vec::new()),
            };
            let sql = format!(
                "SELECT {keys} FROM {} WHERE {filter} ORDER BY {keys} LIMIT 1 OFFSET {}",
                self.src,
                rows.max(1) - 1
            );
            let row: Option<Row> = c
                .exec_first(sql, to_params(params))
                .await
                .my("verify: cutting the table into ranges")?;
            match row {
                Some(r) => {
                    let upto = row_key(&r, self.key_src.len())?;
                    spans.push(Span {
                        after: after.clone(),
                        upto: Some(upto.clone()),
                    });
                    after = Some(upto);
                }
                None => {
                    spans.push(Span { after, upto: None });
                    break;
                }
            }
        }
        let _ = c.disconnect().await;
        Ok(spans)
    }

    async fn connect(&self, workers: usize) -> anyhow::Result<()> {
        let mut pool = self.workers.lock().await;
        while pool.len() < workers {
            let mut c = conn::connect(&self.dsn, "verify").await?;
            c.query_drop("SET SESSION TRANSACTION ISOLATION LEVEL REPEATABLE READ")
                .await
                .my("verify: setting up a session")?;
            pool.push(Arc::new(Mutex::new(c)));
        }
        Ok(())
    }

    async fn open_snapshot(&self, workers: usize) -> anyhow::Result<()> {
        let sql = "START TRANSACTION WITH CONSISTENT SNAPSHOT, READ ONLY";
        self.on_workers(workers, sql, "verify: opening the snapshot")
            .await
    }

    async fn close_snapshot(&self) -> anyhow::Result<()> {
        self.on_workers(usize::MAX, "COMMIT", "verify: closing the snapshot")
            .await
    }

    async fn sums(&self, worker: usize, span: Span, mode: Mode) -> anyhow::Result<(Sums, Sums)> {
        let side = |table: &str, keys: &[String], row: &str| {
            let (filter, params) = range_filter(keys, span.after.as_ref(), span.upto.as_ref());
            let select = match mode {
                Mode::Checksum => format!(
                    "COUNT(*), CAST(COALESCE(SUM(CRC32({row})), 0) AS CHAR), \
                     CAST(COALESCE(BIT_XOR(CRC32(CONCAT('w', {row}))), 0) AS CHAR)"
                ),
                _ => "COUNT(*), '', ''".to_string(),
            };
            (
                format!("SELECT {select} FROM {table} WHERE {filter}"),
                params,
            )
        };
        let (src_sql, src_params) = side(&self.src, &self.key_src, &self.row_src);
        let (dst_sql, dst_params) = side(&self.shadow, &self.key_dst, &self.row_dst);
        self.on_worker(worker, async |c| {
            let mut out = Vec::new();
            for (sql, params) in [(src_sql, src_params), (dst_sql, dst_params)] {
                let (rows, sum, xor): (i64, String, String) = c
                    .exec_first(sql, to_params(params))
                    .await
                    .my("verify: checksumming a range")?
                    .unwrap_or_default();
                out.push(Sums {
                    rows,
                    hash: format!("{sum}:{xor}"),
                });
            }
            let t = out.pop().unwrap_or(Sums {
                rows: 0,
                hash: String::new(),
            });
            let s = out.pop().unwrap_or(Sums {
                rows: 0,
                hash: String::new(),
            });
            Ok((s, t))
        })
        .await
    }

    async fn differing_keys(&self, worker: usize, span: Span) -> anyhow::Result<Vec<Key>> {
        let side = |table: &str, keys: &[String], row: &str| {
            let (filter, params) = range_filter(keys, span.after.as_ref(), span.upto.as_ref());
            (
                format!(
                    "SELECT {}, CRC32({row}) FROM {table} WHERE {filter}",
                    keys.join(", ")
                ),
                params,
            )
        };
        let width = self.key_src.len();
        let (src_sql, src_params) = side(&self.src, &self.key_src, &self.row_src);
        let (dst_sql, dst_params) = side(&self.shadow, &self.key_dst, &self.row_dst);
        self.on_worker(worker, async |c| {
            let mut sides: Vec<HashMap<Key, Option<i64>>> = Vec::new();
            for (sql, params) in [(src_sql, src_params), (dst_sql, dst_params)] {
                let rows: Vec<Row> = c
                    .exec(sql, to_params(params))
                    .await
                    .my("verify: finding the keys that differ")?;
                let mut m = HashMap::new();
                for r in rows {
                    let hash: Option<i64> = r.get(width).flatten();
                    m.insert(row_key(&r, width)?, hash);
                }
                sides.push(m);
            }
            let (s, t) = (&sides[0], &sides[1]);
            let mut keys: Vec<Key> = s
                .iter()
                .filter(|(k, h)| t.get(*k) != Some(h))
                .map(|(k, _)| k.clone())
                .chain(t.keys().filter(|k| !s.contains_key(*k)).cloned())
                .collect();
            keys.sort();
            Ok(keys)
        })
        .await
    }
}

/// `wraith verify` on MySQL/MariaDB: see [`crate::verify::tables`].
pub async fn verify_tables(
    dsn: &Dsn,
    t: &VerifyTarget,
    mode: Mode,
    workers: usize,
) -> anyhow::Result<Report> {
    let (verifier, skipped) = verifier_for(dsn, t).await?;
    let verifier = Arc::new(verifier);
    let report = crate::verify::tables(&verifier, &skipped, mode, workers).await;
    verifier.close().await;
    report
}

/// Builds a verifier for two tables with the same key: each target column is
/// compared with its `--transform`, or with the source column of the same name;
/// columns with neither (and generated columns) are not compared.
async fn verifier_for(dsn: &Dsn, t: &VerifyTarget) -> anyhow::Result<(Verifier, Vec<String>)> {
    let mut c = conn::connect(dsn, "verify").await?;
    let source = table_columns(&mut c, &t.schema, &t.source).await?;
    let target = table_columns(&mut c, &t.schema, &t.target).await?;
    let key = catalog::key_columns(&mut c, &t.schema, &t.source).await?;
    let collations: Vec<(String, String, Option<String>)> = c
        .exec(
            "SELECT TABLE_NAME, COLUMN_NAME, COLLATION_NAME FROM information_schema.COLUMNS \
             WHERE TABLE_SCHEMA = ? AND TABLE_NAME IN (?, ?)",
            (&t.schema, &t.source, &t.target),
        )
        .await
        .my("reading the key's collations")?;
    let _ = c.disconnect().await;
    let collation = |table: &str, col: &str| {
        collations
            .iter()
            .find(|(t, c, _)| t == table && c == col)
            .and_then(|(_, _, coll)| coll.clone())
    };
    let key_order_differs = key
        .iter()
        .any(|k| collation(&t.source, k) != collation(&t.target, k));
    if key.is_empty() {
        return Err(bad_input(format!(
            "table {}.{} has no primary key and no unique key on NOT NULL columns: rows are matched by key",
            t.schema, t.source
        )));
    }
    if let Some(k) = key
        .iter()
        .find(|k| !target.iter().any(|(name, _, _)| name == *k))
    {
        return Err(bad_input(format!(
            "the target table {} has no column {k:?}, part of the source's key: the tables must share their key",
            t.target
        )));
    }
    let sources: Vec<SourceColumn> = source
        .iter()
        .map(|(name, type_name, _)| SourceColumn {
            name: name.clone(),
            type_name: type_name.clone(),
        })
        .collect();
    let targets: Vec<TargetColumn> = target
        .iter()
        .map(|(name, type_name, generated)| TargetColumn {
            name: name.clone(),
            type_name: type_name.clone(),
            origin: source
                .iter()
                .any(|(s, _, _)| s == name)
                .then(|| name.clone()),
            insertable: !generated,
            required: false,
        })
        .collect();
    let mut mapping = mapping::derive(&sources, &targets, &[], &t.transforms, &key, q)?;
    // As in the migration: a type change compares the plain column, cast on both sides.
    for m in &mut mapping.columns {
        if let Fill::Cast { from } = &m.fill {
            m.expr = Some(q(from));
        }
    }
    let skipped = mapping
        .columns
        .iter()
        .filter(|m| m.expr.is_none())
        .map(|m| m.target.clone())
        .collect();
    let table = |name: &str| format!("{}.{}", q(&t.schema), q(name));
    Ok((
        Verifier::new(
            dsn,
            table(&t.source),
            table(&t.target),
            &key,
            &key,
            &mapping,
            key_order_differs,
        ),
        skipped,
    ))
}

/// A table's columns as (name, type, generated); a missing table is bad input.
async fn table_columns(
    c: &mut Conn,
    schema: &str,
    table: &str,
) -> anyhow::Result<Vec<(String, String, bool)>> {
    let rows: Vec<(String, String, String)> = c
        .exec(
            "SELECT COLUMN_NAME, COLUMN_TYPE, EXTRA FROM information_schema.COLUMNS \
             WHERE TABLE_SCHEMA = ? AND TABLE_NAME = ? ORDER BY ORDINAL_POSITION",
            (schema, table),
        )
        .await
        .my("verify: reading the tables' columns")?;
    if rows.is_empty() {
        return Err(bad_input(format!("table {schema}.{table} does not exist")));
    }
    Ok(rows
        .into_iter()
        .map(|(name, type_name, extra)| {
            let generated = extra.to_ascii_uppercase().contains("GENERATED");
            (name, type_name, generated)
        })
        .collect())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn casts_follow_the_target_type() {
        assert_eq!(family_cast("`a`", "bigint(20)"), "CAST(`a` AS SIGNED)");
        assert_eq!(
            family_cast("`a`", "int(10) unsigned"),
            "CAST(`a` AS UNSIGNED)"
        );
        assert_eq!(
            family_cast("`a`", "decimal(10,2)"),
            "CAST(`a` AS DECIMAL(10,2))"
        );
        assert_eq!(
            family_cast("`a`", "datetime(6)"),
            "CAST(`a` AS DATETIME(6))"
        );
        assert_eq!(family_cast("`a`", "enum('x','y')"), "CAST(`a` AS CHAR)");
    }
}
