//! Verification on PostgreSQL: the [`Checksums`] of a source table (with the
//! column mapping applied) against a target table, under one exported snapshot
//! shared by the worker sessions.
//!
//! A row's hash is `hash_record_extended(ROW(...), 0)` over the compared columns,
//! each hashed in binary where its type's hash follows its equality closely
//! (integers, numeric, booleans, dates and timestamps, uuid, bytea, jsonb), else as
//! its binary wire form (the type's send function: `bit_send`, `float8send`,
//! `textsend`, `array_send`, …), and as its text in the "C" collation for a type
//! without one (see [`hash_input`]): no value is turned into text where it need
//! not be, which cost most of the checksum. The source side casts
//! each expression to the target column's type, so values are compared as the
//! target stores them (jsonb key order, numeric scale, bigint vs int are
//! normalized; NULL and '' or -0 and 0 are not). A span's hash is the sum of its
//! rows' hashes (`int8` summed in 128 bits), so order does not matter.

use crate::dsn::Dsn;
use std::sync::{Arc, Mutex};

use tokio_postgres::Client;
use tokio_postgres::types::ToSql;

use crate::key::Key;
use crate::pg::conn::{self, DbResult};
use crate::pg::sql::{KeyCols, ident, literal};
use crate::verify::{Checksums, Mode, Span, Sums, VerifyTarget};

type Param<'a> = &'a (dyn ToSql + Sync);

/// Most keys reported for one range.
const MAX_KEYS: usize = 10_000;

/// Compares `source` (through `exprs`) with `target` (`columns`), both keyed by `key`.
pub struct Verifier {
    dsn: Dsn,
    source: String,
    target: String,
    key: KeyCols,
    /// (source expression, target column, target column type) for each compared column.
    pairs: Vec<(String, String, String)>,
    /// What enters the row hash on each side, known once a session has read the
    /// types' send functions: source expressions cast to the target columns' types,
    /// and the target columns they are compared with.
    inputs: std::sync::OnceLock<Inputs>,
    workers: Mutex<Vec<Arc<Client>>>,
    /// Exports the snapshot the workers import.
    exporter: Mutex<Option<Arc<Client>>>,
}

impl Verifier {
    /// `pairs`: (source expression, target column, target column type) for each compared column.
    pub fn new(
        dsn: &Dsn,
        source: String,
        target: String,
        key: KeyCols,
        pairs: Vec<(String, String, String)>,
    ) -> Verifier {
        Verifier {
            dsn: dsn.clone(),
            source,
            target,
            key,
            pairs,
            inputs: std::sync::OnceLock::new(),
            workers: Mutex::new(Vec::new()),
            exporter: Mutex::new(None),
        }
    }

    /// Closes the worker sessions.
    pub fn close(&self) {
        self.workers
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .clear();
        self.exporter
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .take();
    }

    fn inputs(&self) -> anyhow::Result<&Inputs> {
        self.inputs
            .get()
            .ok_or_else(|| anyhow::anyhow!("verification sessions are not connected"))
    }

    /// Reads the compared types' send functions once, on `c`.
    async fn resolve_inputs(&self, c: &Client) -> anyhow::Result<()> {
        if self.inputs.get().is_some() {
            return Ok(());
        }
        let types: Vec<String> = self.pairs.iter().map(|(_, _, t)| t.clone()).collect();
        let send: std::collections::HashMap<String, String> = c
            .query(
                "SELECT n, t.typsend::regproc::text FROM unnest($1::text[]) n \
                 JOIN pg_type t ON t.oid = to_regtype(n) WHERE t.typsend <> 0",
                &[&types],
            )
            .await
            .db("reading the compared types' send functions")?
            .iter()
            .map(|r| (r.get(0), r.get(1)))
            .collect();
        let input =
            |expr: String, ty: &str| hash_input(&expr, ty, send.get(ty).map(String::as_str));
        let _ = self.inputs.set(Inputs {
            source: self
                .pairs
                .iter()
                .map(|(e, _, t)| input(format!("CAST(({e}) AS {t})"), t))
                .collect(),
            target: self
                .pairs
                .iter()
                .map(|(_, c, t)| input(ident(c), t))
                .collect(),
        });
        Ok(())
    }

    fn worker(&self, i: usize) -> anyhow::Result<Arc<Client>> {
        self.workers
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .get(i)
            .cloned()
            .ok_or_else(|| anyhow::anyhow!("verification session {i} is not open"))
    }

    /// `(k1, k2) > (lower) AND (k1, k2) <= (upper)` on `cols`, parameters from $1.
    fn span_cond(&self, cols: &[String], span: &Span) -> String {
        let tuple = format!(
            "({})",
            cols.iter().map(|c| ident(c)).collect::<Vec<_>>().join(", ")
        );
        let n = self.key.types.len();
        let mut cond = Vec::new();
        let mut next = 1;
        if span.after.is_some() {
            cond.push(format!("{tuple} > {}", self.key.params(next)));
            next += n;
        }
        if span.upto.is_some() {
            cond.push(format!("{tuple} <= {}", self.key.params(next)));
        }
        if cond.is_empty() {
            "true".to_string()
        } else {
            cond.join(" AND ")
        }
    }

    fn span_params(span: &Span) -> Vec<Param<'_>> {
        span.after
            .iter()
            .chain(span.upto.iter())
            .flat_map(|k| k.iter().map(|v| v as Param))
            .collect()
    }

    fn row_hash(cols: &[String]) -> String {
        format!("hash_record_extended(ROW({}), 0)", cols.join(", "))
    }
}

/// The row hash's inputs on each side, one per compared column.
struct Inputs {
    source: Vec<String>,
    target: Vec<String>,
}

/// How a value of type `ty` (as `format_type` names it) enters the row hash:
/// itself where the type's hash tells apart what a copy could get wrong, else its
/// binary wire form through the type's `send` function (equal bytes for equal
/// values, and unlike the type's hash it tells apart -0 and 0, '1 day' and
/// '24 hours', strings a nondeterministic collation equates; it also serves types
/// without a hash function, such as bit), else its text in the "C" collation.
fn hash_input(expr: &str, ty: &str, send: Option<&str>) -> String {
    let base = ty.split('(').next().unwrap_or(ty).trim();
    let binary = matches!(
        base,
        "smallint"
            | "integer"
            | "bigint"
            | "numeric"
            | "boolean"
            | "date"
            | "time without time zone"
            | "timestamp without time zone"
            | "timestamp with time zone"
            | "uuid"
            | "bytea"
            | "jsonb"
            | "oid"
    ) && !ty.ends_with(']');
    // `timestamp(3) with time zone`: the typmod sits inside the name.
    let binary =
        binary || (!ty.ends_with(']') && (ty.starts_with("timestamp(") || ty.starts_with("time(")));
    match send {
        _ if binary => expr.to_string(),
        Some(send) => format!("{send}({expr})"),
        None => format!("({expr})::text COLLATE \"C\""),
    }
}

impl Checksums for Verifier {
    async fn spans(&self, rows: u64) -> anyhow::Result<Vec<Span>> {
        if self.key.order_differs() {
            // Ranges in the source's order are not ranges of the target's key index:
            // one span compares both tables in a single scan each.
            return Ok(vec![Span {
                after: None,
                upto: None,
            }]);
        }
        let c = conn::connect(&self.dsn, "verify").await?;
        let key: Vec<String> = self.key.source.iter().map(|k| ident(k)).collect();
        let text: Vec<String> = key
            .iter()
            .enumerate()
            .map(|(i, k)| format!("{k}::text AS key{i}"))
            .collect();
        let mut spans = Vec::new();
        let mut after: Option<Key> = None;
        let offset = rows.max(1) as i64 - 1;
        loop {
            let span = Span {
                after: after.clone(),
                upto: None,
            };
            let sql = format!(
                "SELECT {} FROM ONLY {} WHERE {} ORDER BY {} LIMIT 1 OFFSET {offset}",
                text.join(", "),
                self.source,
                self.span_cond(&self.key.source, &span),
                key.join(", ")
            );
            let row = c
                .query_opt(&sql, &Self::span_params(&span))
                .await
                .db("cutting the table into ranges")?;
            let Some(row) = row else {
                spans.push(span);
                return Ok(spans);
            };
            let upto: Key = (0..key.len()).map(|i| row.get::<_, String>(i)).collect();
            spans.push(Span {
                after: after.take(),
                upto: Some(upto.clone()),
            });
            after = Some(upto);
        }
    }

    async fn connect(&self, workers: usize) -> anyhow::Result<()> {
        let mut sessions = self
            .workers
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .clone();
        while sessions.len() < workers.max(1) {
            sessions.push(conn::connect(&self.dsn, "verify").await?);
        }
        self.resolve_inputs(&sessions[0]).await?;
        *self.workers.lock().unwrap_or_else(|e| e.into_inner()) = sessions;
        if self
            .exporter
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .is_none()
        {
            let exporter = conn::connect(&self.dsn, "verify").await?;
            *self.exporter.lock().unwrap_or_else(|e| e.into_inner()) = Some(exporter);
        }
        Ok(())
    }

    async fn open_snapshot(&self, workers: usize) -> anyhow::Result<()> {
        let sessions = self
            .workers
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .clone();
        let exporter = self
            .exporter
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .clone();
        let Some(exporter) = exporter.filter(|_| sessions.len() >= workers.max(1)) else {
            anyhow::bail!("verification sessions are not connected");
        };
        exporter
            .batch_execute("BEGIN ISOLATION LEVEL REPEATABLE READ")
            .await
            .db("starting the snapshot transaction")?;
        let id: String = exporter
            .query_one("SELECT pg_export_snapshot()", &[])
            .await
            .db("exporting the snapshot")?
            .get(0);
        for s in &sessions {
            s.batch_execute(&format!(
                "BEGIN ISOLATION LEVEL REPEATABLE READ; SET TRANSACTION SNAPSHOT {}",
                literal(&id)
            ))
            .await
            .db("importing the snapshot")?;
        }
        // The snapshot lives on in the importers.
        exporter
            .batch_execute("COMMIT")
            .await
            .db("ending the snapshot transaction")?;
        Ok(())
    }

    async fn close_snapshot(&self) -> anyhow::Result<()> {
        let sessions = self
            .workers
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .clone();
        for s in sessions {
            s.batch_execute("COMMIT")
                .await
                .db("ending a verification transaction")?;
        }
        Ok(())
    }

    async fn sums(&self, worker: usize, span: Span, mode: Mode) -> anyhow::Result<(Sums, Sums)> {
        let c = self.worker(worker)?;
        let params = Self::span_params(&span);
        let sum = |cols: &[String]| match mode {
            Mode::Checksum => format!("coalesce(sum({}), 0)::text", Self::row_hash(cols)),
            _ => "''".to_string(),
        };
        let source = format!(
            "SELECT count(*), {} FROM ONLY {} WHERE {}",
            sum(&self.inputs()?.source),
            self.source,
            self.span_cond(&self.key.source, &span)
        );
        let target = format!(
            "SELECT count(*), {} FROM ONLY {} WHERE {}",
            sum(&self.inputs()?.target),
            self.target,
            self.span_cond(&self.key.shadow, &span)
        );
        let s = c
            .query_one(&source, &params)
            .await
            .db("checksumming the source")?;
        let t = c
            .query_one(&target, &params)
            .await
            .db("checksumming the target")?;
        Ok((
            Sums {
                rows: s.get(0),
                hash: s.get(1),
            },
            Sums {
                rows: t.get(0),
                hash: t.get(1),
            },
        ))
    }

    async fn differing_keys(&self, worker: usize, span: Span) -> anyhow::Result<Vec<Key>> {
        let c = self.worker(worker)?;
        let n = self.key.source.len();
        let names: Vec<String> = (0..n).map(|i| format!("k{i}")).collect();
        let side = |keys: &[String], cols: &[String], table: &str| {
            let k: Vec<String> = keys
                .iter()
                .enumerate()
                .map(|(i, c)| format!("{}::text AS k{i}", ident(c)))
                .collect();
            format!(
                "SELECT {}, {} AS h FROM ONLY {table} WHERE {}",
                k.join(", "),
                Self::row_hash(cols),
                self.span_cond(keys, &span)
            )
        };
        let sql = format!(
            "SELECT {} FROM ({}) s FULL JOIN ({}) t USING ({}) WHERE s.h IS DISTINCT FROM t.h ORDER BY {} LIMIT {MAX_KEYS}",
            names.join(", "),
            side(&self.key.source, &self.inputs()?.source, &self.source),
            side(&self.key.shadow, &self.inputs()?.target, &self.target),
            names.join(", "),
            names.join(", ")
        );
        let rows = c
            .query(&sql, &Self::span_params(&span))
            .await
            .db("finding the rows that differ")?;
        Ok(rows
            .iter()
            .map(|r| (0..n).map(|i| r.get::<_, String>(i)).collect())
            .collect())
    }
}

/// Builds a verifier for two tables with the same key: each target column is
/// compared with its `--transform`, or with the source column of the same name;
/// columns with neither (and generated columns) are not compared.
pub async fn verifier_for(dsn: &Dsn, t: &VerifyTarget) -> anyhow::Result<(Verifier, Vec<String>)> {
    use crate::error::bad_input;
    use crate::pg::catalog;
    use crate::pg::sql::qualified;

    let c = conn::connect(dsn, "verify").await?;
    let source = catalog::table(&c, &t.schema, &t.source).await?;
    let target_q = qualified(&t.schema, &t.target);
    let exists: bool = c
        .query_one("SELECT to_regclass($1) IS NOT NULL", &[&target_q])
        .await
        .db("looking for the target table")?
        .get(0);
    if !exists {
        return Err(bad_input(format!(
            "table {}.{} does not exist",
            t.schema, t.target
        )));
    }
    let target = catalog::columns_of(&c, &target_q).await?;
    for k in &source.key {
        if !target.iter().any(|col| &col.name == k) {
            return Err(bad_input(format!(
                "the target table {} has no column {k:?}, part of the source's key: the tables must share their key",
                t.target
            )));
        }
    }
    for tr in &t.transforms {
        if !target.iter().any(|col| col.name == tr.column) {
            return Err(bad_input(format!(
                "--transform targets column {:?}, which {} does not have",
                tr.column, t.target
            )));
        }
    }
    let mut pairs = Vec::new();
    let mut skipped = Vec::new();
    for col in target.iter().filter(|c| !c.generated) {
        let expr = match t.transforms.iter().rev().find(|tr| tr.column == col.name) {
            Some(tr) => Some(tr.expr.clone()),
            None => source
                .columns
                .iter()
                .find(|s| s.name == col.name)
                .map(|s| ident(&s.name)),
        };
        match expr {
            Some(e) => pairs.push((e, col.name.clone(), col.type_name.clone())),
            None => skipped.push(col.name.clone()),
        }
    }
    let key = KeyCols::new(&source, source.key.clone(), &target);
    Ok((
        Verifier::new(dsn, qualified(&t.schema, &t.source), target_q, key, pairs),
        skipped,
    ))
}

/// `wraith verify` on PostgreSQL: see [`crate::verify::tables`].
pub async fn verify_tables(
    dsn: &Dsn,
    t: &VerifyTarget,
    mode: Mode,
    workers: usize,
) -> anyhow::Result<crate::verify::Report> {
    let (verifier, skipped) = verifier_for(dsn, t).await?;
    let verifier = Arc::new(verifier);
    let report = crate::verify::tables(&verifier, &skipped, mode, workers).await;
    verifier.close();
    report
}

#[cfg(test)]
mod tests {
    use super::hash_input;

    #[test]
    fn values_hash_in_binary_only_where_equality_keeps_what_a_copy_could_change() {
        for ty in [
            "integer",
            "bigint",
            "numeric(12,2)",
            "timestamp(3) with time zone",
            "timestamp with time zone",
            "jsonb",
            "uuid",
        ] {
            assert_eq!(hash_input("x", ty, Some("send")), "x", "{ty}");
        }
        for ty in [
            "double precision",
            "real",
            "interval",
            "text",
            "character varying(80)",
            "integer[]",
            "json",
            "point",
            "public.mood",
        ] {
            assert_eq!(hash_input("x", ty, Some("send")), "send(x)", "{ty}");
            assert_eq!(hash_input("x", ty, None), "(x)::text COLLATE \"C\"", "{ty}");
        }
    }
}
