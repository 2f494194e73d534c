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
}

#[derive(Debug, Clone)]
pub struct Table {
    pub oid: u32,
    pub columns: Vec<Column>,
    /// Key columns in index order (primary key, or the replica identity index).
    pub key: Vec<String>,
    pub key_types: Vec<String>,
    pub estimated_rows: u64,
    pub comment: Option<String>,
    /// Sequences bound to a column: (sequence, column, is identity).
    pub sequences: Vec<(String, String, bool)>,
}

/// Reads the table; a missing table or one wraith cannot rewrite is bad input.
pub async fn table(c: &Client, schema: &str, name: &str) -> anyhow::Result<Table> {
    let row = c
        .query_opt(
            "SELECT c.oid, c.relkind::text, c.relreplident::text, c.reltuples::float8, \
                    c.relhassubclass OR EXISTS (SELECT 1 FROM pg_inherits WHERE inhrelid = c.oid), \
                    obj_description(c.oid, 'pg_class'), has_table_privilege(c.oid, 'SELECT') \
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

    let columns = columns_of(c, &crate::pg::sql::qualified(schema, name)).await?;

    // Primary key, or the replica identity index when there is none.
    let key_rows = c
        .query(
            "SELECT i.indisprimary, a.attname::text, format_type(a.atttypid, a.atttypmod) \
             FROM pg_index i \
             CROSS JOIN LATERAL unnest(i.indkey::int2[]) WITH ORDINALITY AS k(attnum, ord) \
             JOIN pg_attribute a ON a.attrelid = i.indrelid AND a.attnum = k.attnum \
             WHERE i.indrelid = $1 AND (i.indisprimary OR i.indisreplident) \
             ORDER BY i.indisprimary DESC, k.ord",
            &[&oid],
        )
        .await
        .db("reading the table's key")?;
    let has_pk = key_rows.iter().any(|r| r.get::<_, bool>(0));
    let pick: Vec<_> = key_rows
        .iter()
        .filter(|r| r.get::<_, bool>(0) == has_pk)
        .collect();
    if replident == "n" {
        return Err(bad_input(format!(
            "{schema}.{name} has REPLICA IDENTITY NOTHING: publishing its changes would make the \
             application's UPDATEs and DELETEs fail. Set REPLICA IDENTITY DEFAULT (with a primary key) first"
        )));
    }
    if pick.is_empty() || (!has_pk && replident != "i") {
        return Err(bad_input(format!(
            "{schema}.{name} has no primary key; wraith needs one to copy and match rows \
             (add a primary key, or a unique index on NOT NULL columns with \
             ALTER TABLE ... REPLICA IDENTITY USING INDEX <index>)"
        )));
    }
    let key = pick.iter().map(|r| r.get::<_, String>(1)).collect();
    let key_types = pick.iter().map(|r| r.get::<_, String>(2)).collect();

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
                    a.attnotnull, a.atthasdef, a.attgenerated <> '' \
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
        })
        .collect())
}
