//! Foreign keys on MySQL/MariaDB: the table's own (a reference to itself
//! included) and other tables' keys that reference it.
//!
//! `CREATE TABLE … LIKE` leaves them out, and constraint names are schema-wide,
//! so the shadow has none during the copy (where a stale row of it would refuse
//! the application's delete of a parent, and a reference to itself would refuse
//! rows copied before their parent). On MySQL they move in the cutover: parents
//! are read-locked and referencing tables write-locked with the table, and after
//! the RENAME, still under the lock, the table's own keys are dropped from the
//! old table and added to the new one, and other tables' keys (which InnoDB
//! re-pointed at the old table) are re-pointed at the new one, all with
//! `foreign_key_checks = 0` (metadata only: no rows are read). A read-only check
//! then looks for child rows without a parent, the counterpart of PostgreSQL's
//! `NOT VALID` + `VALIDATE`; any it finds are reported with their keys. MariaDB
//! renames in a second session, with writes resuming at once, so there keys are
//! refused. The dry run adds them to scratch tables of the new shape, so a shape
//! that cannot hold a key (a dropped column, a type the other side's key does
//! not match) is refused before anything exists.
//!
//! The table's own keys whose actions are CASCADE, SET NULL or SET DEFAULT are
//! refused: InnoDB applies those changes itself and writes no row events for
//! them, so the binary log never shows the rows they change. Other tables' keys
//! may have any action: what they change is in those tables, which stay put.

use mysql_async::Conn;
use mysql_async::prelude::Queryable;

use crate::error::bad_input;
use crate::mysql::conn::{MyResult, describe};
use crate::mysql::names::Names;
use crate::mysql::sql::q;

/// A foreign key of the table (`child`) or of another table that references it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ForeignKey {
    pub name: String,
    /// The table holding the key, quoted: `` `db`.`t` ``.
    pub child: String,
    /// The same, unquoted: (database, table).
    pub child_name: (String, String),
    pub columns: Vec<String>,
    pub parent: String,
    pub parent_columns: Vec<String>,
    /// `FOREIGN KEY (…) REFERENCES … [ON …]` as the child's `SHOW CREATE TABLE`
    /// writes it (the parent unqualified when in the child's database).
    pub clause: String,
    pub delete_rule: String,
    pub update_rule: String,
}

impl ForeignKey {
    /// Why wraith cannot carry it as a key of the table, if it cannot.
    fn refusal(&self) -> Option<String> {
        let follows = |rule: &str| matches!(rule, "RESTRICT" | "NO ACTION");
        if follows(&self.delete_rule) && follows(&self.update_rule) {
            return None;
        }
        Some(format!(
            "foreign key {} (ON DELETE {}, ON UPDATE {}): InnoDB applies these actions to the \
             table's rows without writing them to the binary log, so wraith cannot follow them \
             (MySQL 9 with innodb_native_foreign_keys = OFF, its default, logs them). Drop the \
             key for the migration and add it back afterwards, or make its actions RESTRICT",
            self.name, self.delete_rule, self.update_rule
        ))
    }
}

/// The table's own foreign keys, a reference to itself included.
pub async fn of(c: &mut Conn, schema: &str, table: &str) -> anyhow::Result<Vec<ForeignKey>> {
    let rules = c
        .exec(
            format!(
                "{RULES} WHERE CONSTRAINT_SCHEMA = ? AND TABLE_NAME = ? ORDER BY CONSTRAINT_NAME"
            ),
            (schema, table),
        )
        .await
        .my("reading the table's foreign keys")?;
    read(c, rules).await
}

/// Other tables' foreign keys that reference the table (InnoDB re-points them at
/// the old table at the RENAME; wraith re-points them at the new one).
pub async fn referencing(
    c: &mut Conn,
    schema: &str,
    table: &str,
) -> anyhow::Result<Vec<ForeignKey>> {
    // KEY_COLUMN_USAGE, not REFERENTIAL_CONSTRAINTS: MariaDB shows the latter
    // only to users with more than SELECT on the child, and a key missed here
    // would be left on the old table. The actions are read from the clause.
    let rules = c
        .exec(
            "SELECT DISTINCT k.TABLE_SCHEMA, k.TABLE_NAME, k.CONSTRAINT_NAME, \
                    k.REFERENCED_TABLE_SCHEMA, k.REFERENCED_TABLE_NAME, \
                    COALESCE(r.DELETE_RULE, ''), COALESCE(r.UPDATE_RULE, '') \
             FROM information_schema.KEY_COLUMN_USAGE k \
             LEFT JOIN information_schema.REFERENTIAL_CONSTRAINTS r \
               ON r.CONSTRAINT_SCHEMA = k.TABLE_SCHEMA AND r.TABLE_NAME = k.TABLE_NAME \
              AND r.CONSTRAINT_NAME = k.CONSTRAINT_NAME \
             WHERE k.REFERENCED_TABLE_SCHEMA = ? AND k.REFERENCED_TABLE_NAME = ? \
               AND NOT (k.TABLE_SCHEMA = ? AND k.TABLE_NAME = ?) \
             ORDER BY 1, 2, 3",
            (schema, table, schema, table),
        )
        .await
        .my("reading the foreign keys that reference the table")?;
    read(c, rules).await
}

const RULES: &str = "SELECT CONSTRAINT_SCHEMA, TABLE_NAME, CONSTRAINT_NAME, UNIQUE_CONSTRAINT_SCHEMA, \
                            REFERENCED_TABLE_NAME, DELETE_RULE, UPDATE_RULE \
                     FROM information_schema.REFERENTIAL_CONSTRAINTS";

type Rule = (String, String, String, String, String, String, String);

/// The keys `rules` name, with their columns and the clause the child's
/// `SHOW CREATE TABLE` writes for each.
async fn read(c: &mut Conn, rules: Vec<Rule>) -> anyhow::Result<Vec<ForeignKey>> {
    let mut keys = Vec::new();
    let mut created: Option<(String, String)> = None;
    for (schema, table, name, parent_schema, parent_table, delete_rule, update_rule) in rules {
        let child = format!("{}.{}", q(&schema), q(&table));
        if created.as_ref().is_none_or(|(t, _)| *t != child) {
            let create: Option<(String, String)> = c
                .query_first(format!("SHOW CREATE TABLE {child}"))
                .await
                .my("reading the definition of a table with foreign keys")?;
            created = Some((
                child.clone(),
                create.map(|(_, sql)| sql).unwrap_or_default(),
            ));
        }
        let create = created.as_ref().map(|(_, sql)| sql.as_str()).unwrap_or("");
        let columns: Vec<(String, String)> = c
            .exec(
                "SELECT COLUMN_NAME, REFERENCED_COLUMN_NAME FROM information_schema.KEY_COLUMN_USAGE \
                 WHERE CONSTRAINT_SCHEMA = ? AND TABLE_NAME = ? AND CONSTRAINT_NAME = ? \
                   AND REFERENCED_TABLE_NAME IS NOT NULL ORDER BY ORDINAL_POSITION",
                (&schema, &table, &name),
            )
            .await
            .my("reading the columns of foreign keys")?;
        let head = format!("CONSTRAINT {} ", q(&name));
        let clause = create
            .lines()
            .map(|l| l.trim().trim_end_matches(','))
            .find_map(|l| l.strip_prefix(&head))
            .filter(|rest| rest.starts_with("FOREIGN KEY"))
            .ok_or_else(|| {
                anyhow::anyhow!("foreign key {name} is not in SHOW CREATE TABLE {child}'s output")
            })?
            .to_string();
        keys.push(ForeignKey {
            name,
            child,
            child_name: (schema.clone(), table.clone()),
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

/// The refusals for keys wraith cannot carry: none when the server writes what
/// a key's actions do to the binary log (`logs_cascades`).
pub fn refusals(keys: &[ForeignKey], logs_cascades: bool) -> Vec<String> {
    if logs_cascades {
        return Vec::new();
    }
    keys.iter().filter_map(ForeignKey::refusal).collect()
}

/// Whether the server enforces foreign keys in its SQL layer, which writes the
/// rows a CASCADE or SET NULL changes to the binary log as row events of their
/// own (MySQL 9 with `innodb_native_foreign_keys = OFF`, its default; the
/// setting is read-only while the server runs). InnoDB's own enforcement
/// (MariaDB, MySQL 8) logs only the statement's table.
pub async fn server_logs_cascades(c: &mut Conn) -> anyhow::Result<bool> {
    let native: Option<(String, String)> = c
        .query_first("SHOW GLOBAL VARIABLES LIKE 'innodb_native_foreign_keys'")
        .await
        .my("reading innodb_native_foreign_keys")?;
    Ok(native.is_some_and(|(_, v)| v.eq_ignore_ascii_case("OFF") || v == "0"))
}

/// A name for a scratch object of the dry run, within MySQL's 64 characters.
fn plan_name(names: &Names, what: &str, i: usize) -> String {
    let stem = &names.table[..names.table.len().min(40)];
    format!("_{stem}_plan_{what}{i}")
}

/// The dry run's proof that the new shape holds every key: the table's own keys
/// are added to the scratch table `target`, and each key of another table that
/// references it to an empty copy of that table, pointed at `target`; all under
/// names of their own (constraint names are schema-wide), dropped with the tables.
pub async fn try_on(
    c: &mut Conn,
    names: &Names,
    target: &str,
    own: &[ForeignKey],
    referencing: &[ForeignKey],
) -> anyhow::Result<()> {
    let refused = |fk: &ForeignKey, e: &mysql_async::Error| {
        bad_input(format!(
            "the new shape cannot keep foreign key {} of {} ({}): {}; nothing was created. Change \
             the ALTER so the key's columns keep their names, types and index, or drop the key \
             first",
            fk.name,
            fk.child,
            fk.clause,
            describe(e)
        ))
    };
    let src = names.src();
    for (i, fk) in own.iter().enumerate() {
        // A reference to itself points at the scratch table, as it will at the new one.
        let clause = clause_for(fk, if fk.parent == src { target } else { &fk.parent });
        let stmt = format!(
            "ALTER TABLE {target} ADD CONSTRAINT {} {clause}",
            q(&plan_name(names, "fk", i))
        );
        without_checks(c, &stmt)
            .await
            .map_err(|e| refused(fk, &e))?;
    }
    for (i, fk) in referencing.iter().enumerate() {
        let child = format!("{}.{}", q(&names.schema), q(&plan_name(names, "child", i)));
        c.query_drop(format!("CREATE TABLE {child} LIKE {}", fk.child))
            .await
            .my("creating a scratch copy of a table that references this one")?;
        let stmt = format!(
            "ALTER TABLE {child} ADD CONSTRAINT {} {}",
            q(&plan_name(names, "rfk", i)),
            clause_for(fk, target)
        );
        let result = without_checks(c, &stmt).await;
        c.query_drop(format!("DROP TABLE {child}"))
            .await
            .my("dropping a scratch table")?;
        result.map_err(|e| refused(fk, &e))?;
    }
    Ok(())
}

/// The key's clause with its parent named in full (`parent`: the key's own, or a
/// scratch table in the dry run), so it means the same on any session; the
/// actions as `SHOW CREATE TABLE` writes them.
fn clause_for(fk: &ForeignKey, parent: &str) -> String {
    let list = |cols: &[String]| cols.iter().map(|c| q(c)).collect::<Vec<_>>().join(", ");
    format!(
        "FOREIGN KEY ({}) REFERENCES {parent} ({}){}",
        list(&fk.columns),
        list(&fk.parent_columns),
        actions(&fk.clause)
    )
}

/// The ` ON DELETE … ON UPDATE …` end of a clause (outside backquoted names).
fn actions(clause: &str) -> &str {
    let mut quoted = false;
    for (i, ch) in clause.char_indices() {
        if ch == '`' {
            quoted = !quoted;
        } else if !quoted && clause[i..].starts_with(" ON ") {
            return &clause[i..];
        }
    }
    ""
}

/// `stmt` with `foreign_key_checks` off for it (then on again).
async fn without_checks(c: &mut Conn, stmt: &str) -> Result<(), mysql_async::Error> {
    c.query_drop("SET SESSION foreign_key_checks = 0").await?;
    let result = c.query_drop(stmt).await;
    c.query_drop("SET SESSION foreign_key_checks = 1").await?;
    result
}

/// The statements that move the keys after the RENAME, run with
/// `foreign_key_checks = 0` (metadata only): the table's own keys from the old
/// table to the new one, and other tables' keys re-pointed from the old table
/// (where the RENAME took them) to the new one. MySQL refuses to drop and add a
/// key of one name in one ALTER, so each table gets two.
pub fn statements(names: &Names, own: &[ForeignKey], referencing: &[ForeignKey]) -> Vec<String> {
    let mut stmts = Vec::new();
    if !own.is_empty() {
        let keys: Vec<&ForeignKey> = own.iter().collect();
        stmts.push(drop_all(&names.old_q(), &keys));
        stmts.push(add_all(&names.src(), &keys));
    }
    let mut children: Vec<&str> = referencing.iter().map(|k| k.child.as_str()).collect();
    children.dedup();
    for child in children {
        let keys: Vec<&ForeignKey> = referencing.iter().filter(|k| k.child == child).collect();
        stmts.push(drop_all(child, &keys));
        stmts.push(add_all(child, &keys));
    }
    stmts
}

fn drop_all(table: &str, keys: &[&ForeignKey]) -> String {
    let drops: Vec<String> = keys
        .iter()
        .map(|k| format!("DROP FOREIGN KEY {}", q(&k.name)))
        .collect();
    format!("ALTER TABLE {table} {}", drops.join(", "))
}

fn add_all(table: &str, keys: &[&ForeignKey]) -> String {
    let adds: Vec<String> = keys
        .iter()
        .map(|k| format!("ADD CONSTRAINT {} {}", q(&k.name), clause_for(k, &k.parent)))
        .collect();
    format!("ALTER TABLE {table} {}", adds.join(", "))
}

/// Child rows without a parent, per key (read only; at most ten each): the
/// table's own rows by `key`, other tables' rows by the key's columns (the
/// missing parent).
pub async fn orphans(
    c: &mut Conn,
    key: &[String],
    own: &[ForeignKey],
    referencing: &[ForeignKey],
) -> anyhow::Result<Vec<String>> {
    let mut found = Vec::new();
    let keyed = own
        .iter()
        .map(|fk| (fk, key))
        .chain(referencing.iter().map(|fk| (fk, fk.columns.as_slice())));
    for (fk, label) in keyed {
        let label = format!(
            "CONCAT_WS(',', {})",
            label
                .iter()
                .map(|k| format!("c.{}", q(k)))
                .collect::<Vec<_>>()
                .join(", ")
        );
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
            "SELECT {label} FROM {} c WHERE {} AND NOT EXISTS (SELECT 1 FROM {} p WHERE {}) LIMIT 10",
            fk.child,
            present.join(" AND "),
            fk.parent,
            joined.join(" AND ")
        );
        let rows: Vec<String> = c.query(&sql).await.my("checking the foreign keys' rows")?;
        if !rows.is_empty() {
            found.push(format!(
                "foreign key {} of {}: rows without a parent in {}: {}",
                fk.name,
                fk.child,
                fk.parent,
                rows.join("; ")
            ));
        }
    }
    Ok(found)
}

/// Tables whose keys reference this one must be locked and altered in the
/// cutover: the user needs ALTER, LOCK TABLES and SELECT on each, granted to it or
/// to an active role, on the server, the database or the table.
pub async fn check_alterable(c: &mut Conn, referencing: &[ForeignKey]) -> anyhow::Result<()> {
    if referencing.is_empty() {
        return Ok(());
    }
    // MariaDB answers NULL when no role is active, MySQL `NONE`.
    let (user, roles): (Option<String>, Option<String>) = c
        .query_first("SELECT CURRENT_USER(), CURRENT_ROLE()")
        .await
        .my("reading the current user")?
        .unwrap_or_default();
    let (user, roles) = (user.unwrap_or_default(), roles.unwrap_or_default());
    let grantee = |account: &str| {
        let (name, host) = account.rsplit_once('@').unwrap_or((account, "%"));
        format!("'{}'@'{}'", name.trim_matches('`'), host.trim_matches('`'))
    };
    let mut grantees = vec![grantee(&user)];
    if !roles.is_empty() && roles != "NONE" {
        grantees.extend(roles.split(',').map(|r| grantee(r.trim())));
    }
    let marks = vec!["?"; grantees.len()].join(", ");
    let mut missing = Vec::new();
    let mut children: Vec<&(String, String)> = referencing.iter().map(|k| &k.child_name).collect();
    children.dedup();
    for (schema, table) in children {
        let mut params: Vec<mysql_async::Value> = Vec::new();
        let mut add = |extra: &[&String]| {
            params.extend(grantees.iter().map(|g| g.as_str().into()));
            params.extend(extra.iter().map(|v| v.as_str().into()));
        };
        add(&[]);
        add(&[schema]);
        add(&[schema, table]);
        let granted: Vec<String> = c
            .exec(
                format!(
                    "SELECT PRIVILEGE_TYPE FROM information_schema.USER_PRIVILEGES WHERE GRANTEE IN ({marks}) \
                     UNION SELECT PRIVILEGE_TYPE FROM information_schema.SCHEMA_PRIVILEGES WHERE GRANTEE IN ({marks}) AND TABLE_SCHEMA = ? \
                     UNION SELECT PRIVILEGE_TYPE FROM information_schema.TABLE_PRIVILEGES WHERE GRANTEE IN ({marks}) AND TABLE_SCHEMA = ? AND TABLE_NAME = ?"
                ),
                params,
            )
            .await
            .my("reading the user's privileges on tables that reference this one")?;
        let lacking: Vec<&str> = ["ALTER", "LOCK TABLES", "SELECT"]
            .into_iter()
            .filter(|p| !granted.iter().any(|g| g.eq_ignore_ascii_case(p)))
            .collect();
        if !lacking.is_empty() {
            missing.push(format!(
                "{}.{}: GRANT {} ON {}.{} TO {user}",
                q(schema),
                q(table),
                lacking.join(", "),
                q(schema),
                q(table)
            ));
        }
    }
    if missing.is_empty() {
        return Ok(());
    }
    Err(bad_input(format!(
        "other tables' foreign keys reference this one, and wraith re-points them at the new \
         table in the cutover (LOCK TABLES … WRITE, ALTER TABLE), which the user may not do on:\n  \
         - {}\nGrant it, or drop those keys for the migration and add them back afterwards; \
         nothing was created",
        missing.join("\n  - ")
    )))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn actions_are_found_outside_quoted_names() {
        assert_eq!(
            actions("FOREIGN KEY (`a ON b`) REFERENCES `p` (`id`) ON DELETE CASCADE"),
            " ON DELETE CASCADE"
        );
        assert_eq!(actions("FOREIGN KEY (`a`) REFERENCES `p` (`id`)"), "");
    }
}
