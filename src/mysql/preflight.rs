//! Preflight on MySQL/MariaDB: read-only checks of the server (version, binary log
//! on, ROW format, full row images, replication privileges) and of the table
//! (InnoDB, a primary key or a NOT NULL unique key, no foreign keys or triggers
//! yet). Every failure is a bad-input error that names the fix.

use mysql_async::Conn;
use mysql_async::prelude::Queryable;

use crate::error::bad_input;
use crate::mysql::conn::MyResult;

/// Which server wraith talks to.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Flavor {
    MariaDb,
    MySql,
}

#[derive(Debug, Clone)]
pub struct Server {
    pub flavor: Flavor,
    /// `VERSION()`, e.g. `10.11.6-MariaDB-0+deb12u1`.
    pub version: String,
}

#[derive(Debug, Clone)]
pub struct Table {
    /// Columns in order: (name, full column type).
    pub columns: Vec<(String, String)>,
    /// The key the copy and the apply address rows by: the primary key, or the
    /// first unique key whose columns are all NOT NULL.
    pub key: Vec<String>,
    pub estimated_rows: u64,
}

/// Runs every check; the first failures found are reported together per object.
pub async fn run(c: &mut Conn, schema: &str, table: &str) -> anyhow::Result<(Server, Table)> {
    let server = server_checks(c).await?;
    privileges(c).await?;
    let table = table_checks(c, schema, table).await?;
    Ok((server, table))
}

async fn server_checks(c: &mut Conn) -> anyhow::Result<Server> {
    let (version, log_bin, format, image): (String, i64, String, String) = c
        .query_first("SELECT VERSION(), @@log_bin, @@binlog_format, @@binlog_row_image")
        .await
        .my("reading server settings")?
        .ok_or_else(|| anyhow::anyhow!("reading server settings: no row"))?;
    let flavor = if version.to_ascii_lowercase().contains("mariadb") {
        Flavor::MariaDb
    } else {
        Flavor::MySql
    };
    let numbers: Vec<u32> = version
        .split(|ch: char| !ch.is_ascii_digit())
        .take(2)
        .filter_map(|n| n.parse().ok())
        .collect();
    let (major, minor) = (
        numbers.first().copied().unwrap_or(0),
        numbers.get(1).copied().unwrap_or(0),
    );
    let supported = match flavor {
        Flavor::MariaDb => (major, minor) >= (10, 11),
        Flavor::MySql => major >= 8,
    };
    if !supported {
        return Err(bad_input(format!(
            "server version {version} is not supported: wraith needs MariaDB 10.11 or newer, or MySQL 8.0 or newer"
        )));
    }
    let mut problems = Vec::new();
    if log_bin != 1 {
        problems.push(
            "the binary log is off, and wraith follows changes through it: set log_bin (for example \
             log-bin = mysql-bin) and server_id in the server's configuration, then restart"
                .to_string(),
        );
    }
    if !format.eq_ignore_ascii_case("ROW") {
        problems.push(format!(
            "binlog_format is {format} (MariaDB's default is MIXED), but wraith reads row images: \
             SET GLOBAL binlog_format = 'ROW' and put binlog_format = ROW in the configuration; \
             sessions already connected keep their format until they reconnect"
        ));
    }
    if !image.eq_ignore_ascii_case("FULL") {
        problems.push(format!(
            "binlog_row_image is {image}, but wraith needs every column in the row images: \
             SET GLOBAL binlog_row_image = 'FULL' and put binlog_row_image = FULL in the configuration"
        ));
    }
    if !problems.is_empty() {
        return Err(bad_input(format!(
            "the server's binary log is not usable by wraith:\n  - {}",
            problems.join("\n  - ")
        )));
    }
    Ok(Server { flavor, version })
}

/// Reading the binary log needs REPLICATION SLAVE, and its position REPLICATION
/// CLIENT (called BINLOG MONITOR on MariaDB 10.5+).
async fn privileges(c: &mut Conn) -> anyhow::Result<()> {
    let user: String = c
        .query_first("SELECT CURRENT_USER()")
        .await
        .my("reading the current user")?
        .unwrap_or_default();
    let (name, host) = user.rsplit_once('@').unwrap_or((user.as_str(), "%"));
    let grantee = format!("'{name}'@'{host}'");
    let granted: Vec<String> = c
        .exec(
            "SELECT PRIVILEGE_TYPE FROM information_schema.USER_PRIVILEGES WHERE GRANTEE = ?",
            (grantee,),
        )
        .await
        .my("reading the user's privileges")?;
    let has = |p: &str| granted.iter().any(|g| g.eq_ignore_ascii_case(p));
    let mut missing = Vec::new();
    if !has("REPLICATION SLAVE") && !has("SUPER") {
        missing.push(format!(
            "REPLICATION SLAVE (to read the binary log): GRANT REPLICATION SLAVE ON *.* TO {user}"
        ));
    }
    if !has("REPLICATION CLIENT") && !has("BINLOG MONITOR") && !has("SUPER") {
        missing.push(format!(
            "REPLICATION CLIENT / BINLOG MONITOR (to read the binary log position): \
             GRANT REPLICATION CLIENT ON *.* TO {user}"
        ));
    }
    if !missing.is_empty() {
        return Err(bad_input(format!(
            "user {user} lacks privileges wraith needs:\n  - {}",
            missing.join("\n  - ")
        )));
    }
    Ok(())
}

async fn table_checks(c: &mut Conn, schema: &str, table: &str) -> anyhow::Result<Table> {
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
    let mut refused = Vec::new();
    let fks: Vec<(String, String, String, String)> = c
        .exec(
            "SELECT CONSTRAINT_NAME, TABLE_NAME, REFERENCED_TABLE_NAME, \
                    IF(CONSTRAINT_SCHEMA = ? AND TABLE_NAME = ?, 'child', 'parent') \
             FROM information_schema.REFERENTIAL_CONSTRAINTS \
             WHERE (CONSTRAINT_SCHEMA = ? AND TABLE_NAME = ?) \
                OR (UNIQUE_CONSTRAINT_SCHEMA = ? AND REFERENCED_TABLE_NAME = ?) \
             ORDER BY 1",
            (schema, table, schema, table, schema, table),
        )
        .await
        .my("reading foreign keys")?;
    for (fk, child, parent, side) in fks {
        refused.push(if side == "child" {
            format!(
                "foreign key {fk} ({child} -> {parent}): the table references another one. Such a key \
                 can be recreated on the new table, which wraith does not do yet: drop it before the \
                 migration and add it back afterwards"
            )
        } else {
            format!(
                "foreign key {fk} ({child} -> {parent}): another table references this one. MySQL \
                 cannot re-point it at the new table without triggers: drop it for the migration \
                 (and add it back afterwards), or migrate with a tool that uses triggers"
            )
        });
    }
    let triggers: Vec<String> = c
        .exec(
            "SELECT TRIGGER_NAME FROM information_schema.TRIGGERS \
             WHERE EVENT_OBJECT_SCHEMA = ? AND EVENT_OBJECT_TABLE = ? ORDER BY 1",
            (schema, table),
        )
        .await
        .my("reading triggers")?;
    for t in triggers {
        refused.push(format!(
            "trigger {t}: wraith does not carry triggers over to the new table yet; drop it for the \
             migration and create it again afterwards"
        ));
    }
    if !refused.is_empty() {
        return Err(bad_input(format!(
            "table {name} has what wraith cannot migrate yet:\n  - {}",
            refused.join("\n  - ")
        )));
    }
    Ok(Table {
        columns,
        key,
        estimated_rows: rows.unwrap_or(0),
    })
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
