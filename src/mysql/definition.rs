//! The table's definition as one line per object (see [`crate::engine::definition`]):
//! each line of `SHOW CREATE TABLE` (columns, indexes, constraints, options,
//! comments), the table's triggers (they stay with the old table at a RENAME) and
//! the foreign keys of other tables that reference it (InnoDB re-points them at
//! the old table). Read in preflight and again while the cutover's lock keeps
//! every other session's DDL out (see [`read_other_databases`] for the one part
//! read just before it). Grants and views bind by name and follow the
//! swap by themselves.

use mysql_async::Conn;
use mysql_async::prelude::Queryable;

use crate::engine::definition::Definition;
use crate::mysql::conn::MyResult;
use crate::mysql::names::Names;

pub async fn read(c: &mut Conn, names: &Names) -> anyhow::Result<Definition> {
    let create: Option<(String, String)> = c
        .query_first(format!("SHOW CREATE TABLE {}", names.src()))
        .await
        .my("reading the table's definition")?;
    let mut lines: Vec<String> = create
        .map(|(_, sql)| sql)
        .unwrap_or_default()
        .lines()
        .map(|l| {
            format!(
                "definition: {}",
                without_counter(l.trim().trim_end_matches(','))
            )
        })
        .collect();
    let triggers: Vec<(String, String, String, i64, String, String)> = c
        .exec(
            "SELECT TRIGGER_NAME, ACTION_TIMING, EVENT_MANIPULATION, ACTION_ORDER, ACTION_STATEMENT, DEFINER \
             FROM information_schema.TRIGGERS WHERE EVENT_OBJECT_SCHEMA = ? AND EVENT_OBJECT_TABLE = ?",
            (&names.schema, &names.table),
        )
        .await
        .my("reading the table's triggers")?;
    lines.extend(
        triggers
            .into_iter()
            .map(|(name, timing, event, order, body, definer)| {
                format!(
                    "trigger {name}: {timing} {event} (order {order}, definer {definer}): {body}"
                )
            }),
    );
    lines.extend(referencing(c, names, "=").await?);
    Ok(Definition::new(lines))
}

/// Foreign keys of tables in other databases that reference the table. Finding
/// them scans the definition of every table on the server, too slow to do while
/// the cutover's lock blocks the application: they are compared right before it
/// (a key created in the milliseconds until the lock is granted is not seen).
pub async fn read_other_databases(c: &mut Conn, names: &Names) -> anyhow::Result<Definition> {
    Ok(Definition::new(referencing(c, names, "<>").await?))
}

/// Foreign keys referencing the table from tables whose database is (`=`) or is
/// not (`<>`) the table's own; a filter on the database keeps the first fast.
async fn referencing(c: &mut Conn, names: &Names, op: &str) -> anyhow::Result<Vec<String>> {
    let rows: Vec<(String, String, String)> = c
        .exec(
            format!(
                "SELECT CONSTRAINT_NAME, CONSTRAINT_SCHEMA, TABLE_NAME FROM information_schema.REFERENTIAL_CONSTRAINTS \
                 WHERE CONSTRAINT_SCHEMA {op} ? AND UNIQUE_CONSTRAINT_SCHEMA = ? AND REFERENCED_TABLE_NAME = ?"
            ),
            (&names.schema, &names.schema, &names.table),
        )
        .await
        .my("reading the foreign keys that reference the table")?;
    Ok(rows
        .into_iter()
        .map(|(name, schema, table)| format!("foreign key {name} of {schema}.{table}"))
        .collect())
}

/// A `SHOW CREATE TABLE` line without `AUTO_INCREMENT=n`, which every insert moves.
fn without_counter(line: &str) -> String {
    const COUNTER: &str = "AUTO_INCREMENT=";
    match line.find(COUNTER) {
        Some(at) => {
            let rest = &line[at + COUNTER.len()..];
            let digits = rest.len() - rest.trim_start_matches(|c: char| c.is_ascii_digit()).len();
            format!("{}{}", &line[..at], rest[digits..].trim_start())
        }
        None => line.to_string(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_counter_is_not_part_of_the_definition() {
        assert_eq!(
            without_counter(") ENGINE=InnoDB AUTO_INCREMENT=42 DEFAULT CHARSET=utf8mb4"),
            ") ENGINE=InnoDB DEFAULT CHARSET=utf8mb4"
        );
        assert_eq!(
            without_counter("`id` int(11) NOT NULL AUTO_INCREMENT"),
            "`id` int(11) NOT NULL AUTO_INCREMENT"
        );
    }
}
