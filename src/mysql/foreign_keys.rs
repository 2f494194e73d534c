//! Foreign keys from the table to others (the child side) on MySQL/MariaDB.
//!
//! `CREATE TABLE … LIKE` leaves them out, and constraint names are schema-wide,
//! so the shadow never has them during the copy (where a stale row of it would
//! refuse the application's delete of a parent). On MySQL they move in the
//! cutover: the parents are read-locked with the table, and after the RENAME,
//! still under the lock, they are dropped from the old table and added to the new
//! one with `foreign_key_checks = 0` (metadata only: no rows are read). A
//! read-only check then looks for child rows without a parent, the counterpart
//! of PostgreSQL's `NOT VALID` + `VALIDATE`; any it finds are reported with their
//! keys. MariaDB renames in a second session, with writes resuming at once, so
//! there the keys are refused. The dry run adds them to a scratch table of the new shape, so a shape
//! that cannot hold a key (a dropped column, a type the parent's key does not
//! match) is refused before anything exists.
//!
//! Keys whose actions are CASCADE, SET NULL or SET DEFAULT are refused: InnoDB
//! applies those changes itself and writes no row events for them, so the
//! binary log never shows the child rows they change.

use mysql_async::Conn;
use mysql_async::prelude::Queryable;

use crate::error::bad_input;
use crate::mysql::conn::{MyResult, describe};
use crate::mysql::names::Names;
use crate::mysql::sql::q;

/// A foreign key of the table.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ForeignKey {
    pub name: String,
    pub columns: Vec<String>,
    pub parent: String,
    pub parent_columns: Vec<String>,
    /// `FOREIGN KEY (…) REFERENCES … [ON …]` as `SHOW CREATE TABLE` writes it.
    pub clause: String,
    pub delete_rule: String,
    pub update_rule: String,
}

impl ForeignKey {
    /// Why wraith cannot carry it, if it cannot.
    fn refusal(&self) -> Option<String> {
        let follows = |rule: &str| matches!(rule, "RESTRICT" | "NO ACTION");
        if follows(&self.delete_rule) && follows(&self.update_rule) {
            return None;
        }
        Some(format!(
            "foreign key {} (ON DELETE {}, ON UPDATE {}): InnoDB applies these actions to the \
             table's rows without writing them to the binary log, so wraith cannot follow them. \
             Drop the key for the migration and add it back afterwards, or make its actions \
             RESTRICT",
            self.name, self.delete_rule, self.update_rule
        ))
    }
}

/// The table's foreign keys to other tables; a reference to itself is left to
/// the caller (it is on both sides).
pub async fn of(c: &mut Conn, schema: &str, table: &str) -> anyhow::Result<Vec<ForeignKey>> {
    let rules: Vec<(String, String, String, String, String)> = c
        .exec(
            "SELECT CONSTRAINT_NAME, UNIQUE_CONSTRAINT_SCHEMA, REFERENCED_TABLE_NAME, DELETE_RULE, \
                    UPDATE_RULE \
             FROM information_schema.REFERENTIAL_CONSTRAINTS \
             WHERE CONSTRAINT_SCHEMA = ? AND TABLE_NAME = ? ORDER BY CONSTRAINT_NAME",
            (schema, table),
        )
        .await
        .my("reading the table's foreign keys")?;
    if rules.is_empty() {
        return Ok(vec![]);
    }
    let create: Option<(String, String)> = c
        .query_first(format!("SHOW CREATE TABLE {}.{}", q(schema), q(table)))
        .await
        .my("reading the table's definition")?;
    let create = create.map(|(_, sql)| sql).unwrap_or_default();
    let mut keys = Vec::new();
    for (name, parent_schema, parent_table, delete_rule, update_rule) in rules {
        let columns: Vec<(String, String)> = c
            .exec(
                "SELECT COLUMN_NAME, REFERENCED_COLUMN_NAME FROM information_schema.KEY_COLUMN_USAGE \
                 WHERE CONSTRAINT_SCHEMA = ? AND TABLE_NAME = ? AND CONSTRAINT_NAME = ? \
                   AND REFERENCED_TABLE_NAME IS NOT NULL ORDER BY ORDINAL_POSITION",
                (schema, table, &name),
            )
            .await
            .my("reading the columns of the table's foreign keys")?;
        let head = format!("CONSTRAINT {} ", q(&name));
        let clause = create
            .lines()
            .map(|l| l.trim().trim_end_matches(','))
            .find_map(|l| l.strip_prefix(&head))
            .filter(|rest| rest.starts_with("FOREIGN KEY"))
            .ok_or_else(|| {
                anyhow::anyhow!("foreign key {name} is not in SHOW CREATE TABLE's output")
            })?
            .to_string();
        keys.push(ForeignKey {
            name,
            columns: columns.iter().map(|(c, _)| c.clone()).collect(),
            parent: format!("{}.{}", q(&parent_schema), q(&parent_table)),
            parent_columns: columns.into_iter().map(|(_, p)| p).collect(),
            clause,
            delete_rule,
            update_rule,
        });
    }
    Ok(keys)
}

/// The refusals for keys wraith cannot carry.
pub fn refusals(keys: &[ForeignKey]) -> Vec<String> {
    keys.iter().filter_map(ForeignKey::refusal).collect()
}

/// The dry run's proof that the new shape holds every key: added to the scratch
/// table `target` under names of its own (schema-wide, so from the table's), which
/// go with it.
pub async fn try_on(
    c: &mut Conn,
    names: &Names,
    target: &str,
    keys: &[ForeignKey],
) -> anyhow::Result<()> {
    for (i, fk) in keys.iter().enumerate() {
        let mut name = format!("_{}_plan_fk{i}", names.table);
        if name.len() > 64 {
            name = format!("_{}_plan_fk{i}", &names.table[..names.table.len().min(48)]);
        }
        let stmt = format!(
            "ALTER TABLE {target} ADD CONSTRAINT {} {}",
            q(&name),
            fk.clause
        );
        let result = without_checks(c, &stmt).await;
        if let Err(e) = result {
            return Err(bad_input(format!(
                "the new shape cannot keep foreign key {} ({}): {}; nothing was created. Change \
                 the ALTER so the key's columns keep their names and types, or drop the key first",
                fk.name,
                fk.clause,
                describe(&e)
            )));
        }
    }
    Ok(())
}

/// `stmt` with `foreign_key_checks` off for it (then on again).
async fn without_checks(c: &mut Conn, stmt: &str) -> Result<(), mysql_async::Error> {
    c.query_drop("SET SESSION foreign_key_checks = 0").await?;
    let result = c.query_drop(stmt).await;
    c.query_drop("SET SESSION foreign_key_checks = 1").await?;
    result
}

/// The statements that move the keys after the RENAME.
pub fn statements(names: &Names, keys: &[ForeignKey]) -> Vec<String> {
    if keys.is_empty() {
        return vec![];
    }
    let drops: Vec<String> = keys
        .iter()
        .map(|k| format!("DROP FOREIGN KEY {}", q(&k.name)))
        .collect();
    let adds: Vec<String> = keys
        .iter()
        .map(|k| format!("ADD CONSTRAINT {} {}", q(&k.name), k.clause))
        .collect();
    vec![
        format!("ALTER TABLE {} {}", names.old_q(), drops.join(", ")),
        format!("ALTER TABLE {} {}", names.src(), adds.join(", ")),
    ]
}

/// Keys of child rows of the new table without a parent, per foreign key (read
/// only; at most ten keys each).
pub async fn orphans(
    c: &mut Conn,
    names: &Names,
    key: &[String],
    keys: &[ForeignKey],
) -> anyhow::Result<Vec<String>> {
    let mut found = Vec::new();
    let key_text = format!(
        "CONCAT_WS(',', {})",
        key.iter()
            .map(|k| format!("c.{}", q(k)))
            .collect::<Vec<_>>()
            .join(", ")
    );
    for fk in keys {
        let present: Vec<String> = fk
            .columns
            .iter()
            .map(|col| format!("c.{} IS NOT NULL", q(col)))
            .collect();
        let joined: Vec<String> = fk
            .columns
            .iter()
            .zip(&fk.parent_columns)
            .map(|(col, pcol)| format!("p.{} = c.{}", q(pcol), q(col)))
            .collect();
        let sql = format!(
            "SELECT {key_text} FROM {} c WHERE {} AND NOT EXISTS (SELECT 1 FROM {} p WHERE {}) LIMIT 10",
            names.src(),
            present.join(" AND "),
            fk.parent,
            joined.join(" AND ")
        );
        let rows: Vec<String> = c.query(&sql).await.my("checking the foreign keys' rows")?;
        if !rows.is_empty() {
            found.push(format!(
                "foreign key {}: rows without a parent, keys {}",
                fk.name,
                rows.join("; ")
            ));
        }
    }
    Ok(found)
}
