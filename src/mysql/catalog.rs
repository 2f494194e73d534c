//! The table as MySQL/MariaDB's catalog describes it: columns, the key wraith
//! addresses rows by, its foreign keys and triggers (moved in the swap), and
//! the checks that the table can be migrated (InnoDB, a usable key, keys whose
//! actions the binary log shows, key types that round-trip as text).

use mysql_async::Conn;
use mysql_async::prelude::Queryable;

use crate::error::bad_input;
use crate::mysql::conn::MyResult;
use crate::mysql::foreign_keys::{self, ForeignKey};
use crate::mysql::sql::q;
use crate::mysql::triggers::{self, Trigger};

#[derive(Debug, Clone, Default)]
pub struct Table {
    /// `` `db`.`t` ``.
    pub name: String,
    /// Columns in order: (name, full column type).
    pub columns: Vec<(String, String)>,
    /// The key the copy and the apply address rows by: the primary key, or the
    /// first unique key whose columns are all NOT NULL.
    pub key: Vec<String>,
    pub estimated_rows: u64,
    /// Its own foreign keys (a reference to itself included), moved to the new
    /// table after the swap.
    pub foreign_keys: Vec<ForeignKey>,
    /// Other tables' foreign keys that reference it, re-pointed after the swap.
    pub referencing: Vec<ForeignKey>,
    /// Its triggers in firing order, moved to the new table after the swap.
    pub triggers: Vec<Trigger>,
}

/// Which of `tables` exist in `schema`, each with its comment (the marks of
/// wraith's own tables).
pub async fn existing(
    c: &mut Conn,
    schema: &str,
    tables: &[&str],
) -> anyhow::Result<Vec<(String, String)>> {
    let marks = vec!["?"; tables.len()].join(", ");
    let mut params = vec![mysql_async::Value::from(schema)];
    params.extend(tables.iter().map(|t| mysql_async::Value::from(*t)));
    c.exec(
        format!(
            "SELECT TABLE_NAME, TABLE_COMMENT FROM information_schema.TABLES \
             WHERE TABLE_SCHEMA = ? AND TABLE_NAME IN ({marks})"
        ),
        params,
    )
    .await
    .my("looking up wraith's tables")
}

/// Reads the table and checks that wraith can migrate it; every refusal names the fix.
pub async fn table(c: &mut Conn, schema: &str, table: &str) -> anyhow::Result<Table> {
    let name = format!("{schema}.{table}");
    let row: Option<(String, Option<String>, Option<u64>)> = c
        .exec_first(
            "SELECT TABLE_TYPE, ENGINE, TABLE_ROWS FROM information_schema.TABLES \
             WHERE TABLE_SCHEMA = ? AND TABLE_NAME = ?",
            (schema, table),
        )
        .await
        .my("looking up the table")?;
    let Some((kind, engine, rows)) = row else {
        return Err(bad_input(format!(
            "table {name} does not exist (check the database in the connection string and the table name)"
        )));
    };
    if kind != "BASE TABLE" {
        return Err(bad_input(format!(
            "{name} is a {kind}, not a table: wraith rewrites base tables"
        )));
    }
    let engine = engine.unwrap_or_default();
    if !engine.eq_ignore_ascii_case("InnoDB") {
        return Err(bad_input(format!(
            "table {name} uses the {engine} engine: wraith needs InnoDB (transactions and row locks). \
             Convert it first: ALTER TABLE {name} ENGINE = InnoDB"
        )));
    }
    let columns: Vec<(String, String)> = c
        .exec(
            "SELECT COLUMN_NAME, COLUMN_TYPE FROM information_schema.COLUMNS \
             WHERE TABLE_SCHEMA = ? AND TABLE_NAME = ? ORDER BY ORDINAL_POSITION",
            (schema, table),
        )
        .await
        .my("reading the table's columns")?;
    let key = key_columns(c, schema, table).await?;
    if key.is_empty() {
        return Err(bad_input(format!(
            "table {name} has no primary key and no unique key on NOT NULL columns: wraith addresses \
             rows by key. Add one first (ALTER TABLE {name} ADD PRIMARY KEY (...))"
        )));
    }
    let foreign_keys = foreign_keys::of(c, schema, table).await?;
    let refused =
        foreign_keys::refusals(&foreign_keys, foreign_keys::server_logs_cascades(c).await?);
    let referencing = foreign_keys::referencing(c, schema, table).await?;
    let triggers = triggers::of(c, schema, table).await?;
    if !refused.is_empty() {
        return Err(bad_input(format!(
            "table {name} has what wraith cannot migrate yet:\n  - {}",
            refused.join("\n  - ")
        )));
    }
    Ok(Table {
        name: format!("{}.{}", q(schema), q(table)),
        columns,
        key,
        foreign_keys,
        referencing,
        triggers,
        estimated_rows: rows.unwrap_or(0),
    })
}

impl Table {
    /// The other tables its foreign keys reference (read-locked in the cutover).
    pub fn parents(&self) -> Vec<String> {
        let mut parents: Vec<String> = self
            .foreign_keys
            .iter()
            .map(|k| k.parent.clone())
            .filter(|p| *p != self.name)
            .collect();
        parents.sort();
        parents.dedup();
        parents
    }

    /// The tables whose foreign keys reference it (write-locked in the cutover:
    /// their keys are altered).
    pub fn children(&self) -> Vec<String> {
        let mut children: Vec<String> = self.referencing.iter().map(|k| k.child.clone()).collect();
        children.sort();
        children.dedup();
        children
    }

    /// Whether anything moves from the old table to the new one in the swap.
    pub fn has_dependents(&self) -> bool {
        !self.foreign_keys.is_empty() || !self.referencing.is_empty() || !self.triggers.is_empty()
    }
}

/// The primary key's columns, else those of the first unique key on NOT NULL columns.
pub async fn key_columns(c: &mut Conn, schema: &str, table: &str) -> anyhow::Result<Vec<String>> {
    let rows: Vec<(String, String, String)> = c
        .exec(
            "SELECT s.INDEX_NAME, s.COLUMN_NAME, col.IS_NULLABLE \
             FROM information_schema.STATISTICS s \
             JOIN information_schema.COLUMNS col ON col.TABLE_SCHEMA = s.TABLE_SCHEMA \
                  AND col.TABLE_NAME = s.TABLE_NAME AND col.COLUMN_NAME = s.COLUMN_NAME \
             WHERE s.TABLE_SCHEMA = ? AND s.TABLE_NAME = ? AND s.NON_UNIQUE = 0 \
             ORDER BY s.INDEX_NAME <> 'PRIMARY', s.INDEX_NAME, s.SEQ_IN_INDEX",
            (schema, table),
        )
        .await
        .my("reading the table's keys")?;
    let mut indexes: Vec<(String, Vec<String>, bool)> = Vec::new();
    for (index, column, nullable) in rows {
        match indexes.last_mut() {
            Some((name, cols, not_null)) if *name == index => {
                cols.push(column);
                *not_null &= nullable == "NO";
            }
            _ => indexes.push((index, vec![column], nullable == "NO")),
        }
    }
    Ok(indexes
        .into_iter()
        .find(|(_, _, not_null)| *not_null)
        .map(|(_, cols, _)| cols)
        .unwrap_or_default())
}

/// Key columns must round-trip as text through the binary log and SQL parameters.
pub fn check_key_types(table: &Table, name: &str) -> anyhow::Result<()> {
    for k in &table.key {
        let t = table
            .columns
            .iter()
            .find(|(c, _)| c == k)
            .map(|(_, t)| t.to_ascii_lowercase())
            .unwrap_or_default();
        let base = t.split(['(', ' ']).next().unwrap_or_default();
        let ok = matches!(
            base,
            "tinyint"
                | "smallint"
                | "mediumint"
                | "int"
                | "integer"
                | "bigint"
                | "decimal"
                | "char"
                | "varchar"
                | "date"
                | "datetime"
        );
        if !ok {
            return Err(bad_input(format!(
                "key column {k} of {name} has type {t}: wraith's MySQL engine supports integer, DECIMAL, \
                 CHAR/VARCHAR, DATE and DATETIME keys"
            )));
        }
    }
    Ok(())
}
