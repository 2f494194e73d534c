//! What the PostgreSQL catalog says about the table: columns, key, replica
//! identity, owner, sequences, and what depends on it. Read-only.

use tokio_postgres::Client;

use crate::error::bad_input;
use crate::pg::conn::DbResult;

#[derive(Debug, Clone)]
pub struct Column {
    pub attnum: i16,
    pub name: String,
    pub type_name: String,
    pub type_oid: u32,
    pub not_null: bool,
    pub has_default: bool,
    pub generated: bool,
    /// `None`: the type is not collatable.
    pub collation: Option<String>,
}

#[derive(Debug, Clone)]
pub struct Table {
    pub oid: u32,
    pub columns: Vec<Column>,
    /// Key columns in index order: those of the index the change stream identifies
    /// rows by (see [`key_index`]).
    pub key: Vec<String>,
    pub key_types: Vec<String>,
    /// Each key column's collation (`None`: the type has none), as `regcollation` prints it.
    pub key_collations: Vec<Option<String>>,
    pub estimated_rows: u64,
    pub comment: Option<String>,
    /// Sequences bound to a column: (sequence, column, is identity).
    pub sequences: Vec<(String, String, bool)>,
}

impl Table {
    /// Its columns as the column mapping sees a source.
    pub fn source_columns(&self) -> Vec<crate::plan::mapping::SourceColumn> {
        self.columns
            .iter()
            .map(|col| crate::plan::mapping::SourceColumn {
                name: col.name.clone(),
                type_name: col.type_name.clone(),
            })
            .collect()
    }
}

/// Reads the table; a missing table or one wraith cannot rewrite is bad input.
pub async fn table(c: &Client, schema: &str, name: &str) -> anyhow::Result<Table> {
    let row = c
        .query_opt(
            "SELECT c.oid, c.relkind::text, c.relreplident::text, c.reltuples::float8, \
                    c.relhassubclass OR EXISTS (SELECT 1 FROM pg_inherits WHERE inhrelid = c.oid), \
                    obj_description(c.oid, 'pg_class'), \
                    has_table_privilege(c.oid, 'SELECT') AND NOT row_security_active(c.oid), \
                    c.relpersistence::text, pg_get_replica_identity_index(c.oid)::oid, \
                    (SELECT i.indexrelid FROM pg_index i WHERE i.indrelid = c.oid AND i.indisprimary \
                        AND i.indimmediate), \
                    EXISTS (SELECT 1 FROM pg_index i WHERE i.indrelid = c.oid AND i.indisprimary) \
             FROM pg_class c JOIN pg_namespace n ON n.oid = c.relnamespace \
             WHERE n.nspname = $1 AND c.relname = $2",
            &[&schema, &name],
        )
        .await
        .db("reading the table from the catalog")?;
    let Some(row) = row else {
        return Err(bad_input(format!(
            "table {schema}.{name} does not exist (check --table, the schema, and the database in --dsn)"
        )));
    };
    let oid: u32 = row.get(0);
    let kind: String = row.get(1);
    let replident: String = row.get(2);
    let reltuples: f64 = row.get(3);
    let inherits: bool = row.get(4);
    match kind.as_str() {
        "r" => {}
        "p" => {
            return Err(bad_input(format!(
                "{schema}.{name} is a partitioned table; wraith does not rewrite partitioned tables yet \
                 (migrate each partition on its own)"
            )));
        }
        other => {
            return Err(bad_input(format!(
                "{schema}.{name} is not a table (relkind {other}); wraith rewrites ordinary tables"
            )));
        }
    }
    if inherits {
        return Err(bad_input(format!(
            "{schema}.{name} takes part in table inheritance (it has a parent or children); \
             wraith does not rewrite inheritance hierarchies yet"
        )));
    }

    match row.get::<_, String>(7).as_str() {
        "u" => {
            return Err(bad_input(format!(
                "{schema}.{name} is UNLOGGED: its changes are not written to the WAL, so logical \
                 decoding cannot follow them and concurrent writes would be lost. Make it logged first \
                 (ALTER TABLE {} SET LOGGED, which rewrites it), or rewrite it offline",
                crate::pg::sql::qualified(schema, name)
            )));
        }
        "t" => {
            return Err(bad_input(format!(
                "{schema}.{name} is a temporary table: only its own session sees it"
            )));
        }
        _ => {}
    }

    let columns = columns_of(c, &crate::pg::sql::qualified(schema, name)).await?;
    let key_index = key_index(
        schema,
        name,
        &replident,
        row.get(8),
        row.get(9),
        row.get(10),
    )?;
    let key_rows = c
        .query(
            "SELECT a.attname::text, format_type(a.atttypid, a.atttypmod), \
                    CASE WHEN a.attcollation <> 0 THEN a.attcollation::regcollation::text END \
             FROM pg_index i \
             CROSS JOIN LATERAL unnest(i.indkey::int2[]) WITH ORDINALITY AS k(attnum, ord) \
             JOIN pg_attribute a ON a.attrelid = i.indrelid AND a.attnum = k.attnum \
             WHERE i.indexrelid = $1 ORDER BY k.ord",
            &[&key_index],
        )
        .await
        .db("reading the table's key")?;
    let key = key_rows.iter().map(|r| r.get::<_, String>(0)).collect();
    let key_types = key_rows.iter().map(|r| r.get::<_, String>(1)).collect();
    let key_collations = key_rows.iter().map(|r| r.get(2)).collect();

    let can_read: bool = row.get(6);
    let estimated_rows = if reltuples >= 0.0 || !can_read {
        // Without SELECT the privilege check that follows reports the problem.
        reltuples.max(0.0) as u64
    } else {
        // Never analyzed: such tables are new and small enough to count.
        let q = format!(
            "SELECT count(*) FROM ONLY {}",
            crate::pg::sql::qualified(schema, name)
        );
        c.query_one(&q, &[])
            .await
            .db("counting rows")?
            .get::<_, i64>(0) as u64
    };

    let sequences = c
        .query(
            "SELECT s.oid::regclass::text, a.attname::text, d.deptype = 'i' \
             FROM pg_depend d \
             JOIN pg_class s ON s.oid = d.objid AND s.relkind = 'S' \
             JOIN pg_attribute a ON a.attrelid = d.refobjid AND a.attnum = d.refobjsubid \
             WHERE d.refobjid = $1 AND d.classid = 'pg_class'::regclass \
               AND d.refclassid = 'pg_class'::regclass AND d.deptype IN ('a', 'i')",
            &[&oid],
        )
        .await
        .db("reading the table's sequences")?
        .iter()
        .map(|r| (r.get(0), r.get(1), r.get(2)))
        .collect();

    Ok(Table {
        oid,
        columns,
        key,
        key_types,
        key_collations,
        estimated_rows,
        comment: row.get(5),
        sequences,
    })
}

/// Columns of a relation given by its (quoted) name.
pub async fn columns_of(c: &Client, rel: &str) -> anyhow::Result<Vec<Column>> {
    let rows = c
        .query(
            "SELECT a.attnum, a.attname::text, format_type(a.atttypid, a.atttypmod), a.atttypid, \
                    a.attnotnull, a.atthasdef, a.attgenerated <> '', \
                    CASE WHEN a.attcollation <> 0 THEN a.attcollation::regcollation::text END \
             FROM pg_attribute a WHERE a.attrelid = $1::text::regclass AND a.attnum > 0 \
               AND NOT a.attisdropped ORDER BY a.attnum",
            &[&rel],
        )
        .await
        .db("reading the table's columns")?;
    Ok(rows
        .iter()
        .map(|r| Column {
            attnum: r.get(0),
            name: r.get(1),
            type_name: r.get(2),
            type_oid: r.get(3),
            not_null: r.get(4),
            has_default: r.get(5),
            generated: r.get(6),
            collation: r.get(7),
        })
        .collect())
}

/// The index whose columns are the table's key: the one PostgreSQL identifies
/// changed rows by in the change stream, so that every decoded change carries the
/// key (`replica_index`: what `pg_get_replica_identity_index` says; `primary`: the
/// primary key's index if it is immediate; `has_primary`: there is one at all).
/// Publishing a table without such an identity would make the application's own
/// UPDATEs and DELETEs fail, so those tables are refused.
fn key_index(
    schema: &str,
    name: &str,
    replident: &str,
    replica_index: Option<u32>,
    primary: Option<u32>,
    has_primary: bool,
) -> anyhow::Result<u32> {
    let table = crate::pg::sql::qualified(schema, name);
    let fix = format!(
        "create a unique index on NOT NULL columns that is not deferrable \
         (CREATE UNIQUE INDEX CONCURRENTLY ...), then ALTER TABLE {table} REPLICA IDENTITY USING INDEX <index>"
    );
    let no_key = || {
        bad_input(format!(
            "{schema}.{name} has no primary key; wraith needs one to copy and match rows \
             (add a primary key, or {fix})"
        ))
    };
    match (replident, replica_index, primary) {
        ("n", ..) => Err(bad_input(format!(
            "{schema}.{name} has REPLICA IDENTITY NOTHING: publishing its changes would make the \
             application's UPDATEs and DELETEs fail. Set REPLICA IDENTITY DEFAULT (with a primary key), \
             or {fix}"
        ))),
        ("d" | "i", Some(index), _) => Ok(index),
        ("i", None, _) => Err(bad_input(format!(
            "{schema}.{name} has REPLICA IDENTITY USING INDEX, but that index is gone or not valid: \
             publishing its changes would make the application's UPDATEs and DELETEs fail. \
             Set REPLICA IDENTITY DEFAULT (with a primary key), or {fix}"
        ))),
        ("d", None, _) if has_primary => Err(bad_input(format!(
            "the primary key of {schema}.{name} is DEFERRABLE, so PostgreSQL cannot identify changed \
             rows by it: publishing the table (as wraith must, to follow its changes) would make the \
             application's UPDATEs and DELETEs fail. Give it an immediate key: {fix}"
        ))),
        // FULL identifies rows by all their columns, the primary key's among them.
        ("f", _, Some(pk)) => Ok(pk),
        ("f", _, None) if has_primary => Err(bad_input(format!(
            "the primary key of {schema}.{name} is DEFERRABLE, and wraith's apply needs an immediate \
             unique key (INSERT ... ON CONFLICT cannot use a deferrable one). Give it one: {fix}"
        ))),
        _ => Err(no_key()),
    }
}
