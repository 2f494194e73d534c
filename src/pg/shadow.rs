//! Building the shadow table: the original's shape (`LIKE ... INCLUDING ALL`, its
//! own foreign keys NOT VALID, grants, owner), then the user's ALTER verbatim.
//!
//! The same code runs twice: in preflight inside a transaction that is rolled
//! back (so a dry run validates the ALTER, the mapping and every statement
//! without leaving anything behind), and in prepare, committed.

use std::collections::HashMap;
use std::time::Duration;

use anyhow::Context;

use tokio_postgres::Client;

use crate::error::bad_input;
use crate::pg::catalog::{self, Table};
use crate::pg::conn::{self, DbError, DbResult, describe};
use crate::pg::cutover;
use crate::pg::dependents;
use crate::pg::names::Names;
use crate::pg::sql::{KeyCols, RowSql, UniqueIndex, ident, literal};
use crate::plan::alter::AlterText;
use crate::plan::{BackendOptions, Mapping, MigrationSpec, TargetColumn, mapping};

/// The shadow as built: its DDL, the column mapping and the statements over it.
#[derive(Debug, Clone)]
pub struct Shape {
    pub ddl: Vec<String>,
    /// (shadow index, original index) names: the originals move to the new table at the swap.
    pub index_names: Vec<(String, String)>,
    /// (shadow identity sequence, original identity sequence) names, likewise.
    pub sequence_names: Vec<(String, String)>,
    /// Secondary (non-unique) indexes, built after the copy: a sorted build beats
    /// maintaining them row by row. An index that backs a constraint (EXCLUDE)
    /// stays: the constraint cannot exist without it.
    pub deferred_indexes: Vec<String>,
    /// Foreign keys, added after the copy (`NOT VALID`, then validated in one scan):
    /// checking them row by row would slow the copy several times over.
    pub deferred_fks: Vec<String>,
    /// What of the table's storage the ALTER rebuilt on the shadow (its heap or an
    /// index rewritten, an index built): `None` when it changed only the catalog.
    pub rewritten: Option<String>,
    pub mapping: Mapping,
    pub key: KeyCols,
    pub sql: RowSql,
}

/// Builds the shadow in `c`'s open transaction; the caller commits or rolls back.
/// Locks the DDL needs (foreign keys lock the tables they reference against writes)
/// are bounded by `lock_timeout`, so the application never queues behind a build
/// stuck waiting for a long transaction.
pub async fn build(
    c: &Client,
    names: &Names,
    table: &Table,
    alter: &AlterText,
    spec: &MigrationSpec,
) -> anyhow::Result<Shape> {
    let shadow = names.shadow_q();
    let mut ddl = Vec::new();

    for stmt in &spec.prepare {
        c.batch_execute(stmt).await.map_err(|e| {
            if conn::sqlstate(&e) == Some(conn::LOCK_NOT_AVAILABLE) {
                return conn::db_error(e, "running the spec's preparatory DDL");
            }
            bad_input(format!(
                "the spec's preparatory DDL failed: {}\n  statement: {stmt}",
                describe(&e)
            ))
        })?;
        ddl.push(stmt.clone());
    }

    let create = format!("CREATE TABLE {shadow} (LIKE {} INCLUDING ALL)", names.src());
    c.batch_execute(&create)
        .await
        .db("creating the shadow table")?;
    ddl.push(create);
    // Attribute numbers survive RENAME and TYPE changes: they tell which new column
    // descends from which old one without parsing the ALTER.
    let before: HashMap<i16, String> = catalog::columns_of(c, &shadow)
        .await?
        .into_iter()
        .map(|col| (col.attnum, col.name))
        .collect();

    // Right after LIKE both tables have the same indexes: pair them by definition.
    let index_names = c
        .query(
            "WITH sig AS (SELECT i.indrelid, c.relname::text AS name, \
                    concat_ws('|', am.amname, i.indisunique, i.indisprimary, i.indnkeyatts, i.indoption::text, \
                              i.indclass::text, pg_get_expr(i.indpred, i.indrelid), \
                              (SELECT string_agg(pg_get_indexdef(i.indexrelid, k, false), ',' ORDER BY k) \
                                 FROM generate_series(1, i.indnatts) k)) AS s \
                  FROM pg_index i JOIN pg_class c ON c.oid = i.indexrelid JOIN pg_am am ON am.oid = c.relam \
                  WHERE i.indrelid IN ($1, $2::text::regclass)), \
                  numbered AS (SELECT *, row_number() OVER (PARTITION BY indrelid, s ORDER BY name) AS n FROM sig) \
             SELECT sh.name, o.name FROM numbered sh JOIN numbered o ON o.s = sh.s AND o.n = sh.n \
             WHERE o.indrelid = $1 AND sh.indrelid = $2::text::regclass",
            &[&table.oid, &shadow],
        )
        .await
        .db("pairing the shadow's indexes with the original's")?
        .iter()
        .map(|r| (r.get(0), r.get(1)))
        .collect();

    let fks = c
        .query(
            "SELECT conname::text, pg_get_constraintdef(oid) FROM pg_constraint \
             WHERE conrelid = $1 AND contype = 'f' AND confrelid <> conrelid ORDER BY conname",
            &[&table.oid],
        )
        .await
        .db("reading the table's foreign keys")?;
    // Added before the ALTER, which may drop or change them; the step below then
    // moves every foreign key of the shadow to after the copy.
    for fk in fks {
        let (name, def): (String, String) = (fk.get(0), fk.get(1));
        let stmt = format!(
            "ALTER TABLE {shadow} ADD CONSTRAINT {} {} NOT VALID",
            ident(&name),
            def.trim_end_matches(" NOT VALID")
        );
        c.batch_execute(&stmt)
            .await
            .db("copying a foreign key to the shadow table")?;
        ddl.push(stmt);
    }

    let storage_before = storage(c, &shadow).await?;
    for actions in &alter.actions {
        let stmt = format!("ALTER TABLE {shadow} {actions}");
        c.batch_execute(&stmt).await.map_err(|e| {
            if conn::sqlstate(&e) == Some(conn::LOCK_NOT_AVAILABLE) {
                return conn::db_error(e, "applying the ALTER to the shadow table");
            }
            bad_input(format!(
                "PostgreSQL rejected the ALTER on the shadow table: {}\n  statement: {stmt}",
                describe(&e)
            ))
        })?;
        ddl.push(stmt);
    }
    let rewritten = rebuilt(&storage_before, &storage(c, &shadow).await?);

    for stmt in &spec.shadow_statements {
        let stmt = stmt.replace("{shadow}", &shadow);
        c.batch_execute(&stmt).await.map_err(|e| {
            bad_input(format!(
                "a shadow statement of the spec failed: {}\n  statement: {stmt}",
                describe(&e)
            ))
        })?;
        ddl.push(stmt);
    }

    for stmt in dependents::grants_of(c, table.oid, &shadow).await? {
        c.batch_execute(&stmt)
            .await
            .db("copying grants to the shadow table")?;
        ddl.push(stmt);
    }
    let owner: Option<String> = c
        .query_opt(
            "SELECT quote_ident(pg_get_userbyid(relowner)) FROM pg_class WHERE oid = $1 \
               AND pg_get_userbyid(relowner) <> current_user",
            &[&table.oid],
        )
        .await
        .db("reading the table's owner")?
        .map(|r| r.get(0));
    if let Some(owner) = owner {
        let stmt = format!("ALTER TABLE {shadow} OWNER TO {owner}");
        c.batch_execute(&stmt)
            .await
            .db("giving the shadow table the original owner")?;
        ddl.push(stmt);
    }
    let deferred = c
        .query(
            "SELECT quote_ident(n.nspname) || '.' || quote_ident(ic.relname), pg_get_indexdef(i.indexrelid) \
             FROM pg_index i JOIN pg_class ic ON ic.oid = i.indexrelid \
             JOIN pg_namespace n ON n.oid = ic.relnamespace \
             WHERE i.indrelid = $1::text::regclass AND NOT i.indisunique \
               AND NOT EXISTS (SELECT 1 FROM pg_constraint k \
                                WHERE k.conindid = i.indexrelid AND k.conrelid = i.indrelid) \
             ORDER BY ic.relname",
            &[&shadow],
        )
        .await
        .db("listing the shadow's secondary indexes")?;
    let fks = c
        .query(
            "SELECT conname::text, pg_get_constraintdef(oid) FROM pg_constraint \
             WHERE conrelid = $1::text::regclass AND contype = 'f' ORDER BY conname",
            &[&shadow],
        )
        .await
        .db("listing the shadow's foreign keys")?;
    let mut deferred_fks = Vec::new();
    for r in fks {
        let (name, def): (String, String) = (r.get(0), r.get(1));
        let stmt = format!("ALTER TABLE {shadow} DROP CONSTRAINT {}", ident(&name));
        c.batch_execute(&stmt).await.db("deferring a foreign key")?;
        let add = format!(
            "ALTER TABLE {shadow} ADD CONSTRAINT {} {} NOT VALID",
            ident(&name),
            def.trim_end_matches(" NOT VALID")
        );
        ddl.push(format!("{stmt} -- added after the copy: {add}"));
        deferred_fks.push(add);
    }
    let mut deferred_indexes = Vec::new();
    for r in deferred {
        let (name, def): (String, String) = (r.get(0), r.get(1));
        let stmt = format!("DROP INDEX {name}");
        c.batch_execute(&stmt)
            .await
            .db("deferring a secondary index")?;
        ddl.push(format!("{stmt} -- rebuilt after the copy: {def}"));
        deferred_indexes.push(def);
    }
    let comment = format!(
        "COMMENT ON TABLE {shadow} IS {}",
        literal(&names.shadow_comment())
    );
    c.batch_execute(&comment)
        .await
        .db("marking the shadow table")?;
    ddl.push(comment);

    let after = catalog::columns_of(c, &shadow).await?;
    let mut sequence_names = Vec::new();
    for (seq, col, identity) in &table.sequences {
        let new_col = after
            .iter()
            .find(|a| before.iter().any(|(n, b)| b == col && *n == a.attnum))
            .map(|a| a.name.clone());
        if let (true, Some(new_col)) = (*identity, new_col) {
            let row = c
                .query_opt(
                    "SELECT n.relname::text, o.relname::text FROM pg_class o, pg_class n \
                     WHERE o.oid = $1::text::regclass AND n.oid = pg_get_serial_sequence($2, $3)::regclass",
                    &[seq, &shadow, &new_col],
                )
                .await
                .db("reading the identity sequences")?;
            if let Some(r) = row {
                sequence_names.push((r.get(0), r.get(1)));
            }
        }
    }
    let source = table.source_columns();
    let targets: Vec<TargetColumn> = after
        .iter()
        .map(|col| TargetColumn {
            name: col.name.clone(),
            type_name: col.type_name.clone(),
            origin: before.get(&col.attnum).cloned(),
            insertable: !col.generated,
            required: col.not_null && !col.has_default,
        })
        .collect();
    let mapping = mapping::derive(
        &source,
        &targets,
        &alter.usings,
        &spec.transforms,
        &table.key,
        ident,
    )?;
    let shadow_key: Vec<String> = table
        .key
        .iter()
        .map(|k| mapping.carried_name(k).unwrap_or(k).to_string())
        .collect();
    let key = KeyCols::new(table, shadow_key, &after);
    let uniques = unique_indexes(c, &shadow, &key.shadow).await?;
    let mut sql = RowSql::build(&names.src(), &shadow, &key, &mapping, &uniques);
    // Parsing every statement now turns a bad transform or key change into a
    // clear error before anything is created.
    for (what, stmt) in [
        ("the copy statement", &sql.copy.next),
        ("the copy statement", &sql.copy_merge.next),
        ("the chunk boundary query", &sql.bound.next),
        ("the apply statement", &sql.apply_insert),
        ("the apply delete", &sql.apply_delete),
    ] {
        c.prepare(stmt).await.map_err(|e| {
            bad_input(format!(
                "{what} does not work with this ALTER/transform: {}\n  statement: {stmt}",
                describe(&e)
            ))
        })?;
    }
    // A constraint whose conflicts cannot be looked up this way keeps the server's
    // error when one happens: the run stops, nothing is lost.
    let mut conflicts = Vec::new();
    for conflict in std::mem::take(&mut sql.conflicts) {
        match c.prepare(&conflict.find).await {
            Ok(_) => conflicts.push(conflict),
            Err(e) => tracing::debug!(
                constraint = %conflict.constraint,
                "no conflict lookup for this constraint: {}",
                describe(&e)
            ),
        }
    }
    sql.conflicts = conflicts;
    Ok(Shape {
        ddl,
        index_names,
        sequence_names,
        deferred_indexes,
        deferred_fks,
        rewritten,
        mapping,
        key,
        sql,
    })
}

/// The storage files of a table and its indexes: (relation, relfilenode).
async fn storage(c: &Client, table: &str) -> anyhow::Result<Vec<(String, u32)>> {
    let rows = c
        .query(
            "SELECT CASE WHEN c.relkind = 'i' THEN c.relname ELSE 'the table' END, \
                    c.relfilenode::oid FROM pg_class c \
             WHERE c.oid = $1::text::regclass \
                OR c.oid IN (SELECT indexrelid FROM pg_index WHERE indrelid = $1::text::regclass)",
            &[&table],
        )
        .await
        .db("reading the shadow's storage")?;
    Ok(rows.iter().map(|r| (r.get(0), r.get(1))).collect())
}

/// What `after` has that `before` had not: a relation rewritten or built.
fn rebuilt(before: &[(String, u32)], after: &[(String, u32)]) -> Option<String> {
    let changed: Vec<&(String, u32)> = after.iter().filter(|a| !before.contains(a)).collect();
    let table = changed.iter().any(|(what, _)| what == "the table");
    let indexes = changed.len() - usize::from(table);
    let indexes = match indexes {
        0 => None,
        1 => Some("rebuilds an index".to_string()),
        n => Some(format!("rebuilds {n} indexes")),
    };
    match (table, indexes) {
        (false, None) => None,
        (true, None) => Some("the ALTER rewrites the table".into()),
        (true, Some(i)) => Some(format!("the ALTER rewrites the table and {i}")),
        (false, Some(i)) => Some(format!("the ALTER {i}")),
    }
}

/// The shadow's unique indexes and exclusion constraints other than the key's
/// index: a re-read row may conflict under them with an older version of another
/// key that the apply has not reached yet.
pub(crate) async fn unique_indexes(
    c: &Client,
    shadow: &str,
    key: &[String],
) -> anyhow::Result<Vec<UniqueIndex>> {
    let rows = c
        .query(
            "SELECT ic.relname::text, \
                    array(SELECT pg_get_indexdef(i.indexrelid, k, true) \
                            FROM generate_series(1, i.indnkeyatts) k ORDER BY k), \
                    array(SELECT CASE WHEN i.indcollation[k - 1] <> 0 \
                                      THEN i.indcollation[k - 1]::regcollation::text END \
                            FROM generate_series(1, i.indnkeyatts) k ORDER BY k), \
                    (SELECT array(SELECT 'OPERATOR(' || quote_ident(n.nspname) || '.' || o.oprname || ')' \
                                    FROM unnest(x.conexclop) WITH ORDINALITY u(op, ord) \
                                    JOIN pg_operator o ON o.oid = u.op \
                                    JOIN pg_namespace n ON n.oid = o.oprnamespace ORDER BY u.ord) \
                       FROM pg_constraint x WHERE x.conindid = i.indexrelid AND x.contype = 'x' \
                        AND x.conrelid = i.indrelid), \
                    pg_get_expr(i.indpred, i.indrelid, true), \
                    coalesce((to_jsonb(i) ->> 'indnullsnotdistinct')::bool, false), \
                    i.indexprs IS NULL AND i.indpred IS NULL, \
                    array(SELECT a.attname::text FROM pg_attribute a \
                           WHERE a.attrelid = i.indrelid AND a.attnum > 0 \
                             AND (a.attnum = ANY (i.indkey::int2[]) OR EXISTS \
                                  (SELECT 1 FROM pg_depend d WHERE d.classid = 'pg_class'::regclass \
                                      AND d.objid = i.indexrelid AND d.refclassid = 'pg_class'::regclass \
                                      AND d.refobjid = i.indrelid AND d.refobjsubid = a.attnum))) \
             FROM pg_index i JOIN pg_class ic ON ic.oid = i.indexrelid \
             WHERE i.indrelid = $1::text::regclass \
               AND (i.indisunique OR EXISTS (SELECT 1 FROM pg_constraint x WHERE x.conindid = i.indexrelid \
                                              AND x.contype = 'x' AND x.conrelid = i.indrelid)) \
             ORDER BY ic.relname",
            &[&shadow],
        )
        .await
        .db("reading the shadow's unique indexes")?;
    let mut out = Vec::new();
    for r in rows {
        let plain: bool = r.get(6);
        let columns: Vec<String> = r.get(7);
        let operators: Option<Vec<String>> = r.get(3);
        // The key's own index: its rows are deleted before they are written again.
        let on_key = plain
            && operators.is_none()
            && columns.len() == key.len()
            && columns.iter().all(|col| key.contains(col));
        if on_key {
            continue;
        }
        out.push(UniqueIndex {
            name: r.get(0),
            exprs: r.get(1),
            collations: r.get(2),
            operators,
            predicate: r.get(4),
            nulls_not_distinct: r.get(5),
            columns,
        });
    }
    Ok(out)
}

/// What [`bounded`] does with the shadow it built.
#[derive(Clone, Copy, PartialEq, Eq)]
pub enum Outcome {
    /// Create it (the run).
    Commit,
    /// Only see that it builds (preflight); `set_aside` first drops an earlier
    /// attempt's shadow inside the transaction, so it stays as it was.
    RollBack { set_aside: bool },
}

/// Builds the shadow in one transaction whose DDL waits at most
/// `--cutover-lock-timeout` for a lock (the shadow's foreign keys lock the tables
/// they reference; an autovacuum of one holds a conflicting lock), retried with
/// backoff when not granted; on failure nothing of it stays.
pub async fn bounded(
    ctrl: &Client,
    names: &Names,
    table: &Table,
    alter: &AlterText,
    spec: &MigrationSpec,
    opts: &BackendOptions,
    outcome: Outcome,
) -> anyhow::Result<Shape> {
    let (lock_timeout, attempts) = (opts.cutover_lock_timeout, opts.lock_attempts.max(1));
    let mut attempt = 0;
    loop {
        attempt += 1;
        ctrl.batch_execute(&format!(
            "BEGIN; SET LOCAL lock_timeout = {}",
            lock_timeout.as_millis().max(1)
        ))
        .await
        .db("starting the shadow transaction")?;
        let built = async {
            if outcome == (Outcome::RollBack { set_aside: true }) {
                ctrl.batch_execute(&format!("DROP TABLE {}", names.shadow_q()))
                    .await
                    .db("setting aside the earlier attempt's shadow")?;
            }
            build(ctrl, names, table, alter, spec).await
        }
        .await;
        match (built, outcome) {
            (Ok(shape), Outcome::Commit) => {
                ctrl.batch_execute("COMMIT")
                    .await
                    .db("creating the shadow table")?;
                return Ok(shape);
            }
            (built, _) => {
                ctrl.batch_execute("ROLLBACK")
                    .await
                    .db("rolling back the shadow transaction")?;
                match built {
                    Err(e) if conn::is_lock_timeout(&e) && attempt < attempts => {
                        crate::pg::autovacuum::after_lock_timeout(ctrl, names).await;
                        let wait = crate::engine::pacing::cutover_backoff(attempt);
                        tracing::warn!(
                            attempt,
                            "building the shadow: a lock was not granted within {lock_timeout:?} ({e:#}); retrying in {wait:?}"
                        );
                        tokio::time::sleep(wait).await;
                    }
                    Err(e) if conn::is_lock_timeout(&e) => {
                        return Err(e.context(format!(
                            "building the shadow of {}: a lock was not granted within {lock_timeout:?} in {attempts} \
                             attempts; nothing was changed. Look for a long transaction on the tables its \
                             foreign keys reference, or raise --cutover-lock-timeout / --cutover-attempts",
                            names.src()
                        )));
                    }
                    other => return other,
                }
            }
        }
    }
}

/// Work on the shadow after the copy, before the swap: the secondary indexes and
/// foreign keys left out of the copy, constraint validation, statistics. A
/// `resumed` run may find some of them built by the interrupted one.
pub async fn finish(
    ctrl: &Client,
    names: &Names,
    shape: &Shape,
    resumed: bool,
    lock_timeout: Duration,
    attempts: u32,
) -> anyhow::Result<()> {
    let shadow = names.shadow_q();
    let built = |e: &anyhow::Error| {
        resumed
            && e.chain().any(|c| {
                c.downcast_ref::<DbError>()
                    .is_some_and(|d| matches!(d.code.as_deref(), Some("42P07" | "42710")))
            })
    };
    for def in &shape.deferred_indexes {
        tracing::info!(index = %def, "building");
        match ctrl
            .batch_execute(def)
            .await
            .db("building a secondary index")
        {
            Err(e) if built(&e) => tracing::info!("already built by the interrupted run"),
            other => other?,
        }
    }
    for add in &shape.deferred_fks {
        // Adding a foreign key blocks writes to the table it references until
        // it is done: bounded and retried like the cutover.
        match cutover::with_lock_timeout(ctrl, names, add, lock_timeout, attempts).await {
            Err(e) if built(&e) => tracing::info!("already added by the interrupted run"),
            other => other.context("adding a foreign key to the shadow table")?,
        }
    }
    validate_constraints(ctrl, &shadow).await?;
    ctrl.batch_execute(&format!("ANALYZE {shadow}"))
        .await
        .db("analyzing the shadow table")
}

/// Validates every constraint of `table` (quoted) that is not validated yet
/// (added `NOT VALID`, or foreign keys added while writes flowed).
pub async fn validate_constraints(c: &Client, table: &str) -> anyhow::Result<()> {
    let pending = c
        .query(
            "SELECT conname::text FROM pg_constraint WHERE conrelid = $1::text::regclass AND NOT convalidated",
            &[&table],
        )
        .await
        .db("listing constraints to validate")?;
    for r in pending {
        let name: String = r.get(0);
        tracing::info!(constraint = %name, "validating");
        c.batch_execute(&format!(
            "ALTER TABLE {table} VALIDATE CONSTRAINT {}",
            ident(&name)
        ))
        .await
        .map_err(|e| {
            anyhow::anyhow!(
                "constraint {name} does not hold for the rewritten rows: {}; nothing was swapped",
                describe(&e)
            )
        })?;
    }
    Ok(())
}
