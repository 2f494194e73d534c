//! The shadow table on MySQL/MariaDB: `CREATE TABLE ... LIKE` the source, the
//! user's ALTER applied verbatim, then the column mapping read off the result.
//!
//! MySQL keeps no column identity across a rename, so a new column descends from
//! the source column of the same name, or from the one a `CHANGE [COLUMN] old new`
//! or `RENAME COLUMN old TO new` in the ALTER names. A type change is filled by
//! assignment (the server converts, and strict mode makes a value that does not
//! fit an error), so the copy selects the plain column.

use mysql_async::Conn;
use mysql_async::prelude::Queryable;

use crate::error::bad_input;
use crate::mysql::catalog::Table;
use crate::mysql::conn::{self, MyResult, describe};
use crate::mysql::names::Names;
use crate::mysql::sql::{RowSql, UniqueKey, q};
use crate::mysql::{foreign_keys, triggers};
use crate::plan::MigrationSpec;
use crate::plan::alter::{AlterText, split_top_level};
use crate::plan::instant::{Instant, spec_needs_copy};
use crate::plan::mapping::{self, Fill, Mapping, SourceColumn, TargetColumn};

/// The shadow's shape: the mapping, the key on both sides and the row SQL.
#[derive(Debug, Clone)]
pub struct Shape {
    pub mapping: Mapping,
    /// Key columns in the source and their names in the shadow.
    pub key: Vec<String>,
    pub key_target: Vec<String>,
    /// The ALTER changed a key column's collation: the tables sort keys differently.
    pub key_order_differs: bool,
    pub sql: RowSql,
    /// The statements that create the shadow.
    pub ddl: Vec<String>,
    /// Secondary (non-unique B-tree) indexes as `(name, definition)`, dropped from
    /// the shadow before the copy and built after it: one sorted build beats
    /// maintaining them row by row.
    pub deferred_indexes: Vec<(String, String)>,
}

/// A column as `SHOW FULL COLUMNS` describes it.
#[derive(Debug, Clone)]
struct Column {
    name: String,
    type_name: String,
    nullable: bool,
    default: Option<String>,
    extra: String,
    /// `None`: not a string column.
    collation: Option<String>,
}

/// Where the shape is built.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum On {
    /// A temporary table (preflight: nothing is left behind, not even after a crash).
    Temporary,
    /// A real table dropped at once: preflight's fallback for a source whose
    /// FULLTEXT indexes a temporary table cannot hold.
    Scratch,
    /// The real shadow.
    Shadow,
}

/// Runs the spec's prepare statements (DDL the new shape depends on; the spec
/// asks that they be idempotent, since a rerun runs them again and nothing
/// rolls them back).
pub async fn run_prepare(c: &mut Conn, statements: &[String]) -> anyhow::Result<()> {
    for stmt in statements {
        c.query_drop(stmt).await.map_err(|e| {
            bad_input(format!(
                "the spec's prepare statement failed: {}\n  statement: {stmt}\nthe statements \
                 before it ran and stay (DDL commits at once on MySQL/MariaDB); nothing else was \
                 created",
                describe(&e)
            ))
        })?;
    }
    Ok(())
}

/// The dry run's proof that the new shape takes the table's foreign keys and triggers.
async fn try_dependents(
    c: &mut Conn,
    names: &Names,
    target: &str,
    table: &Table,
) -> anyhow::Result<()> {
    foreign_keys::try_on(c, names, target, &table.foreign_keys, &table.referencing).await?;
    triggers::try_on(c, names, target, &table.triggers).await
}

/// Creates the table, applies the ALTER and derives the mapping. On any failure
/// the table is dropped again.
pub async fn build(
    c: &mut Conn,
    names: &Names,
    table: &Table,
    alter: &AlterText,
    spec: &MigrationSpec,
    on: On,
) -> anyhow::Result<Shape> {
    let scratch = format!(
        "{}.{}",
        q(&names.schema),
        q(&format!("_{}_plan", names.table))
    );
    let mut on = on;
    // A temporary table cannot hold foreign keys or triggers, which the dry run tries.
    if on == On::Temporary && table.has_dependents() {
        on = On::Scratch;
    }
    let target = loop {
        let (create, target) = match on {
            On::Temporary => (
                format!("CREATE TEMPORARY TABLE {scratch} LIKE {}", names.src()),
                scratch.clone(),
            ),
            On::Scratch => (
                format!("CREATE TABLE {scratch} LIKE {}", names.src()),
                scratch.clone(),
            ),
            On::Shadow => (
                format!("CREATE TABLE {} LIKE {}", names.shadow_q(), names.src()),
                names.shadow_q(),
            ),
        };
        match c.query_drop(&create).await {
            Ok(()) => break target,
            // "Cannot create FULLTEXT index on temporary InnoDB table".
            Err(mysql_async::Error::Server(e)) if on == On::Temporary && e.code == 1796 => {
                on = On::Scratch;
            }
            Err(e) => return Err(e).my("creating the shadow table"),
        }
    };
    let mut built = shape_of(c, names, &target, table, alter, spec).await;
    if let Ok(shape) = &mut built
        && let Err(e) = defer_indexes(c, names, &target, shape, on == On::Shadow).await
    {
        built = Err(e);
    }
    if on == On::Shadow
        && let Ok(shape) = &mut built
        && let Err(e) = carry_auto_increment(c, names, alter, shape).await
    {
        built = Err(e);
    }
    if on != On::Shadow
        && built.is_ok()
        && let Err(e) = try_dependents(c, names, &target, table).await
    {
        built = Err(e);
    }
    if built.is_err() || on != On::Shadow {
        let drop = match on {
            On::Temporary => format!("DROP TEMPORARY TABLE IF EXISTS {target}"),
            On::Scratch | On::Shadow => format!("DROP TABLE IF EXISTS {target}"),
        };
        if let Err(e) = c.query_drop(&drop).await {
            tracing::error!("could not drop {target}: {}", describe(&e));
        }
    }
    let mut shape = built?;
    let carried = std::mem::take(&mut shape.ddl);
    shape.ddl = std::iter::once(format!(
        "CREATE TABLE {} LIKE {}",
        names.shadow_q(),
        names.src()
    ))
    .chain(
        alter
            .actions
            .iter()
            .map(|a| format!("ALTER TABLE {} {a}", names.shadow_q())),
    )
    .chain(
        spec.shadow_statements
            .iter()
            .map(|s| s.replace("{shadow}", &names.shadow_q())),
    )
    .chain(carried)
    .collect();
    Ok(shape)
}

/// Moves the table's plain secondary indexes to after the copy (dropping them
/// from `target` when `drop`). Unique indexes stay: the copy and the apply rely
/// on them to reject duplicates. A table with a FULLTEXT or SPATIAL index keeps
/// all of them: InnoDB cannot add indexes to it without blocking the apply.
async fn defer_indexes(
    c: &mut Conn,
    names: &Names,
    target: &str,
    shape: &mut Shape,
    drop: bool,
) -> anyhow::Result<()> {
    let indexes = indexes(c, target).await?;
    if indexes.iter().any(|i| !i.btree) {
        return Ok(());
    }
    let plain: Vec<String> = indexes
        .into_iter()
        .filter(|i| !i.unique)
        .map(|i| i.name)
        .collect();
    if plain.is_empty() {
        return Ok(());
    }
    let create: Option<(String, String)> = c
        .query_first(format!("SHOW CREATE TABLE {target}"))
        .await
        .my("reading the new table's definition")?;
    let create = create.map(|(_, sql)| sql).unwrap_or_default();
    for name in plain {
        let head = format!("KEY {} (", q(&name));
        // An index whose definition cannot be read back exactly is left in place.
        let Some(def) = create
            .lines()
            .map(|l| l.trim().trim_end_matches(','))
            .find(|l| l.starts_with(&head))
        else {
            continue;
        };
        shape.deferred_indexes.push((name, def.to_string()));
    }
    if shape.deferred_indexes.is_empty() {
        return Ok(());
    }
    let drops: Vec<String> = shape
        .deferred_indexes
        .iter()
        .map(|(name, _)| format!("DROP INDEX {}", q(name)))
        .collect();
    if drop {
        c.query_drop(format!("ALTER TABLE {target} {}", drops.join(", ")))
            .await
            .my("deferring the secondary indexes to after the copy")?;
    }
    shape.ddl.push(format!(
        "ALTER TABLE {} {} -- built after the copy: {}",
        names.shadow_q(),
        drops.join(", "),
        add_deferred(names, &shape.deferred_indexes)
    ));
    Ok(())
}

/// The statement that builds deferred indexes online, in one pass over the shadow.
pub fn add_deferred(names: &Names, indexes: &[(String, String)]) -> String {
    let adds: Vec<String> = indexes
        .iter()
        .map(|(_, def)| format!("ADD {def}"))
        .collect();
    format!(
        "ALTER TABLE {} {}, ALGORITHM=INPLACE, LOCK=NONE",
        names.shadow_q(),
        adds.join(", ")
    )
}

/// `CREATE TABLE ... LIKE` starts the AUTO_INCREMENT counter over: like gh-ost,
/// the shadow takes the source's counter (unless the ALTER sets one), so keys the
/// source handed out and deleted are not handed out again after the swap.
async fn carry_auto_increment(
    c: &mut Conn,
    names: &Names,
    alter: &AlterText,
    shape: &mut Shape,
) -> anyhow::Result<()> {
    let sets_own = alter.actions.iter().any(|a| {
        let a = a.to_ascii_uppercase();
        a.starts_with("AUTO_INCREMENT")
            || a.contains(" AUTO_INCREMENT =")
            || a.contains(" AUTO_INCREMENT=")
    });
    if sets_own {
        return Ok(());
    }
    let next: Option<Option<u64>> = c
        .exec_first(
            "SELECT AUTO_INCREMENT FROM information_schema.TABLES WHERE TABLE_SCHEMA = ? AND TABLE_NAME = ?",
            (&names.schema, &names.table),
        )
        .await
        .my("reading the source's AUTO_INCREMENT counter")?;
    if let Some(Some(next)) = next {
        let stmt = format!("ALTER TABLE {} AUTO_INCREMENT = {next}", names.shadow_q());
        c.query_drop(&stmt)
            .await
            .my("carrying the AUTO_INCREMENT counter to the shadow")?;
        shape.ddl.push(stmt);
    }
    Ok(())
}

/// Whether the server applies the ALTER with `ALGORITHM=INSTANT`: tried on a
/// scratch copy holding one of the table's rows, then dropped. The statements
/// returned apply it to the table (the spec's prepare statements have run by then).
/// A probe that cannot run (the scratch name is taken) only means "not instant".
pub async fn instant(
    c: &mut Conn,
    names: &Names,
    alter: &AlterText,
    spec: &MigrationSpec,
) -> Instant {
    if let Some(why) = spec_needs_copy(spec) {
        return Instant::Rewrites(why);
    }
    let scratch = format!(
        "{}.{}",
        q(&names.schema),
        q(&format!("_{}_plan", names.table))
    );
    if let Err(e) = c
        .query_drop(format!("CREATE TABLE {scratch} LIKE {}", names.src()))
        .await
    {
        return Instant::Rewrites(format!(
            "wraith could not try ALGORITHM=INSTANT on a scratch copy {scratch}: {}",
            describe(&e)
        ));
    }
    // A row, so that no change is instant only because the table is empty; a
    // table whose columns refuse `SELECT *` (generated ones) is tried empty.
    let _ = c
        .query_drop(format!(
            "INSERT INTO {scratch} SELECT * FROM {} LIMIT 1",
            names.src()
        ))
        .await;
    let mut verdict = Ok(());
    for action in &alter.actions {
        let tried = c
            .query_drop(format!("ALTER TABLE {scratch} {action}, ALGORITHM=INSTANT"))
            .await;
        if let Err(e) = tried {
            verdict = Err(describe(&e));
            break;
        }
    }
    if let Err(e) = c
        .query_drop(format!("DROP TABLE IF EXISTS {scratch}"))
        .await
    {
        tracing::error!("could not drop {scratch}: {}", describe(&e));
    }
    match verdict {
        Err(why) => Instant::Rewrites(why),
        Ok(()) => Instant::MetadataOnly(
            alter
                .actions
                .iter()
                .map(|a| format!("ALTER TABLE {} {a}, ALGORITHM=INSTANT", names.src()))
                .collect(),
        ),
    }
}

async fn shape_of(
    c: &mut Conn,
    names: &Names,
    target: &str,
    table: &Table,
    alter: &AlterText,
    spec: &MigrationSpec,
) -> anyhow::Result<Shape> {
    for action in &alter.actions {
        c.query_drop(format!("ALTER TABLE {target} {action}"))
            .await
            .map_err(|e| {
                bad_input(format!(
                    "the server rejected the ALTER {action:?}: {}; nothing was created",
                    describe(&e)
                ))
            })?;
    }
    for stmt in &spec.shadow_statements {
        let stmt = stmt.replace("{shadow}", target);
        c.query_drop(&stmt).await.map_err(|e| {
            bad_input(format!(
                "a shadow statement of the spec failed: {}; nothing was created\n  statement: {stmt}",
                describe(&e)
            ))
        })?;
    }
    let columns = columns(c, target).await?;
    let renamed = renames(&alter.actions);
    let source: Vec<SourceColumn> = table
        .columns
        .iter()
        .map(|(name, t)| SourceColumn {
            name: name.clone(),
            type_name: t.clone(),
        })
        .collect();
    let has_source = |n: &str| source.iter().any(|s| s.name == n);
    let targets: Vec<TargetColumn> = columns
        .iter()
        .map(|col| {
            let origin = renamed
                .iter()
                .find(|(_, new)| new.eq_ignore_ascii_case(&col.name))
                .map(|(old, _)| old.clone())
                .filter(|o| has_source(o))
                .or_else(|| has_source(&col.name).then(|| col.name.clone()))
                // A column renamed away leaves its old name free for a new column.
                .filter(|o| {
                    *o != col.name
                        || !renamed
                            .iter()
                            .any(|(old, new)| old == o && !new.eq_ignore_ascii_case(o))
                });
            let generated = col.extra.to_ascii_uppercase().contains("GENERATED");
            let auto = col.extra.to_ascii_lowercase().contains("auto_increment");
            TargetColumn {
                name: col.name.clone(),
                type_name: col.type_name.clone(),
                origin,
                insertable: !generated,
                required: !col.nullable && col.default.is_none() && !auto && !generated,
            }
        })
        .collect();
    let mut mapping = mapping::derive(&source, &targets, &[], &spec.transforms, &table.key, q)?;
    // The server converts on assignment (strictly): copy the plain column.
    for m in &mut mapping.columns {
        if let Fill::Cast { from } = &m.fill {
            m.expr = Some(q(from));
        }
    }
    let key_target: Vec<String> = table
        .key
        .iter()
        .map(|k| {
            mapping.carried_name(k).map(str::to_string).ok_or_else(|| {
                bad_input(format!(
                    "the ALTER drops or transforms key column {k:?}: the new table must keep the key \
                     ({}) that wraith matches rows by",
                    table.key.join(", ")
                ))
            })
        })
        .collect::<anyhow::Result<_>>()?;
    let indexes = indexes(c, target).await?;
    if !indexes.iter().filter(|i| i.unique).any(|u| {
        u.columns.len() == key_target.len()
            && u.columns
                .iter()
                .all(|c| key_target.iter().any(|k| k.eq_ignore_ascii_case(c)))
    }) {
        return Err(bad_input(format!(
            "the new table has no primary or unique key on ({}): wraith matches rows by that key; \
             keep it in the ALTER",
            key_target.join(", ")
        )));
    }
    let written: Vec<(String, String)> = mapping
        .written()
        .map(|m| (m.target.clone(), m.expr.clone().unwrap_or_default()))
        .collect();
    let collation = |cols: &[Column], name: &str| {
        cols.iter()
            .find(|c| c.name.eq_ignore_ascii_case(name))
            .and_then(|c| c.collation.clone())
    };
    let source_columns = self::columns(c, &names.src()).await?;
    // The shadow's key collations where the ALTER changed them: keys then sort (and
    // compare) differently in the two tables.
    let key_collations: Vec<Option<String>> = table
        .key
        .iter()
        .zip(&key_target)
        .map(|(s, d)| {
            let shadow = collation(&columns, d);
            (shadow != collation(&source_columns, s))
                .then_some(shadow)
                .flatten()
        })
        .collect();
    let key_order_differs = key_collations.iter().any(Option::is_some);
    let uniques = indexes
        .iter()
        .filter(|u| u.unique && !u.functional)
        .filter(|u| {
            // The key's own index: its rows are deleted before they are written again.
            !(u.columns.len() == key_target.len()
                && u.prefixes.iter().all(Option::is_none)
                && u.columns
                    .iter()
                    .all(|c| key_target.iter().any(|k| k.eq_ignore_ascii_case(c))))
        })
        // A part the copy does not write (a generated column, a default) cannot be
        // compared on the re-read rows: such a key keeps the server's error.
        .filter(|u| {
            u.columns
                .iter()
                .all(|c| written.iter().any(|(t, _)| t.eq_ignore_ascii_case(c)))
        })
        .map(|u| UniqueKey {
            name: u.name.clone(),
            parts: u
                .columns
                .iter()
                .zip(&u.prefixes)
                .map(|(col, prefix)| (col.clone(), *prefix, collation(&columns, col)))
                .collect(),
        })
        .collect();
    let sql = RowSql::new(
        names.src(),
        names.shadow_q(),
        &table.key,
        &key_target,
        &written,
        key_collations,
        uniques,
    );
    Ok(Shape {
        mapping,
        key: table.key.clone(),
        key_target,
        key_order_differs,
        sql,
        ddl: Vec::new(),
        deferred_indexes: Vec::new(),
    })
}

async fn columns(c: &mut Conn, table: &str) -> anyhow::Result<Vec<Column>> {
    let rows: Vec<mysql_async::Row> = c
        .query(format!("SHOW FULL COLUMNS FROM {table}"))
        .await
        .my("reading the new table's columns")?;
    rows.into_iter()
        .map(|r| {
            let text = |name: &str| -> Option<String> {
                r.get_opt::<Option<String>, _>(name)
                    .and_then(|v| v.ok())
                    .flatten()
            };
            Ok(Column {
                name: text("Field").ok_or_else(|| anyhow::anyhow!("SHOW COLUMNS: no Field"))?,
                type_name: text("Type").unwrap_or_default(),
                nullable: text("Null").is_some_and(|n| n == "YES"),
                default: text("Default"),
                extra: text("Extra").unwrap_or_default(),
                collation: text("Collation"),
            })
        })
        .collect()
}

/// An index as `SHOW INDEX` describes it.
#[derive(Debug, Clone)]
pub struct Index {
    pub name: String,
    pub unique: bool,
    /// A B-tree (not FULLTEXT or SPATIAL).
    pub btree: bool,
    pub columns: Vec<String>,
    /// Each part's prefix length (`Sub_part`).
    pub prefixes: Vec<Option<u64>>,
    /// A part is an expression (MySQL's functional key parts), not a column.
    pub functional: bool,
}

/// The table's indexes, in the server's order.
pub async fn indexes(c: &mut Conn, table: &str) -> anyhow::Result<Vec<Index>> {
    let rows: Vec<mysql_async::Row> = c
        .query(format!("SHOW INDEX FROM {table}"))
        .await
        .my(&format!("reading the indexes of {table}"))?;
    let mut out: Vec<Index> = Vec::new();
    for r in rows {
        let name: String = r.get("Key_name").unwrap_or_default();
        let column: Option<String> = r.get_opt("Column_name").and_then(|v| v.ok()).flatten();
        let prefix: Option<u64> = r.get_opt("Sub_part").and_then(|v| v.ok()).flatten();
        let index = match out.iter_mut().position(|i| i.name == name) {
            Some(i) => &mut out[i],
            None => {
                out.push(Index {
                    name,
                    unique: r.get::<i64, _>("Non_unique") == Some(0),
                    btree: r
                        .get::<String, _>("Index_type")
                        .is_some_and(|k| k.eq_ignore_ascii_case("BTREE")),
                    columns: Vec::new(),
                    prefixes: Vec::new(),
                    functional: false,
                });
                let last = out.len() - 1;
                &mut out[last]
            }
        };
        index.functional |= column.is_none();
        index.columns.push(column.unwrap_or_default());
        index.prefixes.push(prefix);
    }
    Ok(out)
}

/// `(old, new)` for every `CHANGE [COLUMN] [IF EXISTS] old new ...` and
/// `RENAME COLUMN old TO new` in the ALTER actions.
pub fn renames(actions: &[String]) -> Vec<(String, String)> {
    let mut out = Vec::new();
    for actions in actions {
        for action in split_top_level(actions, ',') {
            let words = identifiers(&action);
            let w = |i: usize| words.get(i).map(String::as_str).unwrap_or_default();
            let is = |i: usize, kw: &str| w(i).eq_ignore_ascii_case(kw);
            if is(0, "CHANGE") {
                let mut i = 1;
                if is(i, "COLUMN") {
                    i += 1;
                }
                if is(i, "IF") && is(i + 1, "EXISTS") {
                    i += 2;
                }
                if !w(i).is_empty() && !w(i + 1).is_empty() {
                    out.push((w(i).to_string(), w(i + 1).to_string()));
                }
            } else if is(0, "RENAME") && is(1, "COLUMN") && is(3, "TO") {
                out.push((w(2).to_string(), w(4).to_string()));
            }
        }
    }
    out
}

/// The leading words of an action, backtick-quoted identifiers unquoted.
fn identifiers(action: &str) -> Vec<String> {
    let mut words = Vec::new();
    let mut chars = action.trim().chars().peekable();
    while words.len() < 6 {
        while chars.peek().is_some_and(|c| c.is_whitespace()) {
            chars.next();
        }
        match chars.peek() {
            None => break,
            Some('`') => {
                chars.next();
                let mut w = String::new();
                while let Some(c) = chars.next() {
                    if c == '`' {
                        if chars.peek() == Some(&'`') {
                            chars.next();
                            w.push('`');
                            continue;
                        }
                        break;
                    }
                    w.push(c);
                }
                words.push(w);
            }
            Some(_) => {
                let mut w = String::new();
                while let Some(&c) = chars.peek() {
                    if c.is_alphanumeric() || c == '_' || c == '$' {
                        w.push(c);
                        chars.next();
                    } else {
                        break;
                    }
                }
                if w.is_empty() {
                    break;
                }
                words.push(w);
            }
        }
    }
    words
}

/// Work on the shadow after the copy, before the swap: the secondary indexes
/// left out of the copy (a resumed run may find them built), then statistics.
pub async fn finish(ctrl: &mut Conn, names: &Names, shape: &Shape) -> anyhow::Result<()> {
    let shadow = names.shadow_q();
    let deferred = &shape.deferred_indexes;
    if !deferred.is_empty() {
        // A resumed run may find them built by the interrupted one.
        let present = indexes(ctrl, &shadow).await?;
        let missing: Vec<(String, String)> = deferred
            .iter()
            .filter(|(name, _)| !present.iter().any(|i| i.name == *name))
            .cloned()
            .collect();
        if !missing.is_empty() {
            let add = add_deferred(names, &missing);
            tracing::info!(statement = %add, "building the secondary indexes");
            ctrl.query_drop(&add).await.map_err(|e| {
                conn::error(
                    &e,
                    format!(
                        "building the secondary indexes of {shadow}: {}; nothing was swapped",
                        conn::describe(&e)
                    ),
                )
            })?;
        }
    }
    ctrl.query_drop(format!("ANALYZE TABLE {shadow}"))
        .await
        .my("analyzing the shadow table")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn renames_are_read_from_change_and_rename_column() {
        let actions = vec![
            "CHANGE COLUMN `qty` `quantity` int NOT NULL, ADD COLUMN x int".to_string(),
            "change note memo varchar(200)".to_string(),
            "RENAME COLUMN a TO b".to_string(),
            "MODIFY v bigint".to_string(),
        ];
        assert_eq!(
            renames(&actions),
            vec![
                ("qty".to_string(), "quantity".to_string()),
                ("note".to_string(), "memo".to_string()),
                ("a".to_string(), "b".to_string()),
            ]
        );
    }
}
