//! The SQL text of the PostgreSQL engine's copy, apply and verification
//! (statements over the key, built once per migration), and the quoting every
//! module of the engine uses. Catalog reads, DDL and the cutover's statements
//! stay beside the code that runs them.
//!
//! Identifiers are always double-quoted; values travel as parameters, except in
//! DDL (comments) where [`literal`] quotes them. Keys travel as text and are cast
//! back to the key column's type on the server (`$1::text[]::integer[]`).

use crate::pg::catalog::{Column, Table};
use crate::plan::Mapping;

/// `"name"`, with embedded quotes doubled.
pub fn ident(s: &str) -> String {
    format!("\"{}\"", s.replace('"', "\"\""))
}

/// `"schema"."name"`.
pub fn qualified(schema: &str, name: &str) -> String {
    format!("{}.{}", ident(schema), ident(name))
}

/// `'text'`, with embedded quotes doubled (for DDL that takes no parameters).
pub fn literal(s: &str) -> String {
    format!("'{}'", s.replace('\'', "''"))
}

/// Key columns as text, aliased `key0`, `key1`...: `ORDER BY "id"` would
/// otherwise sort by the text output column.
fn as_text_keys(cols: &[String]) -> Vec<String> {
    cols.iter()
        .enumerate()
        .map(|(i, c)| format!("{}::text AS key{i}", ident(c)))
        .collect()
}

fn list(cols: &[String]) -> String {
    cols.iter().map(|c| ident(c)).collect::<Vec<_>>().join(", ")
}

/// A statement over a key range, in two forms: for the first chunk (no lower
/// bound) and for the next ones.
#[derive(Debug, Clone)]
pub struct Ranged {
    pub first: String,
    pub next: String,
}

impl Ranged {
    pub fn pick(&self, has_lower: bool) -> &str {
        if has_lower { &self.next } else { &self.first }
    }
}

/// The statements that copy and apply rows, built once per migration.
/// Ranged statements take the lower bound's key columns (when there is one), then
/// the upper bound's, then any extra parameter.
#[derive(Debug, Clone)]
pub struct RowSql {
    /// The key `$offset` rows into the range (`$offset` follows the bounds).
    pub bound: Ranged,
    /// Copies a range that holds no shadow rows yet.
    pub copy: Ranged,
    /// Copies a range, skipping keys the apply already put in the shadow.
    pub copy_merge: Ranged,
    /// Whether the shadow already holds rows in a range.
    pub shadow_has: Ranged,
    /// `$1..$k` = one text[] per key column, then the bounds: which of those keys
    /// fall in the range (compared by the server, with the key's types).
    pub in_range: Ranged,
    /// `$1..$k` = one text[] per key column.
    pub apply_delete: String,
    /// Inserts the source's rows of the keys (their shadow rows are deleted first).
    pub apply_insert: String,
    /// The keys of a range (a chunk whose rows go through the apply instead).
    pub chunk_keys: Ranged,
    /// Per unique or exclusion constraint of the shadow besides the key's: the shadow
    /// rows (other keys) that the re-read rows of `$1..$k` would conflict with.
    pub conflicts: Vec<Conflict>,
    /// The table's last key (the copy's end).
    pub last_key: String,
    /// The shadow's key sorts differently from the source's: `shadow_has` would
    /// scan the whole shadow, so every chunk takes `copy_merge`.
    pub always_merge: bool,
    /// `$1..$k` = one text[] per key column: the keys whose source rows the shadow's
    /// types cannot hold exactly (the way back: a value cast back that would not
    /// come out the same). Run before each apply; `None`: nothing to check.
    pub guard: Option<String>,
}

/// A unique index or exclusion constraint of the shadow other than the key's, as
/// the catalog describes it.
#[derive(Debug, Clone)]
pub struct UniqueIndex {
    /// The index's name (a constraint backed by it has the same name).
    pub name: String,
    /// Key expressions, as `pg_get_indexdef(index, k, true)` prints them (a column
    /// name or an expression over unqualified columns).
    pub exprs: Vec<String>,
    /// Each expression's collation, quoted (`None`: not collatable).
    pub collations: Vec<Option<String>>,
    /// Exclusion operators, `OPERATOR(schema.op)`; `None`: a unique index (`=`).
    pub operators: Option<Vec<String>>,
    /// The index's predicate (a partial index).
    pub predicate: Option<String>,
    /// `UNIQUE NULLS NOT DISTINCT`: NULLs conflict too.
    pub nulls_not_distinct: bool,
    /// Columns the index reads.
    pub columns: Vec<String>,
}

impl UniqueIndex {
    /// `SELECT <key as text> FROM shadow` for the rows of other keys than `$1..$k`
    /// that conflict under this index with one of `new_rows`. The expressions read
    /// unqualified columns: inside the subquery they resolve to the new row (which has
    /// the shadow's column names), outside it to the shadow's row.
    fn finder(&self, shadow: &str, key_text: &[String], key_in: &str, new_rows: &str) -> String {
        let pred = |p: &Option<String>| {
            p.as_ref()
                .map(|p| format!(" AND ({p})"))
                .unwrap_or_default()
        };
        let names: Vec<String> = (1..=self.exprs.len())
            .map(|i| format!("wraith_c{i}"))
            .collect();
        let conds: Vec<String> = self
            .exprs
            .iter()
            .zip(&names)
            .enumerate()
            .map(|(i, (e, w))| {
                let existing = match self.collations.get(i).cloned().flatten() {
                    Some(c) => format!("(({e}) COLLATE {c})"),
                    None => format!("({e})"),
                };
                match &self.operators {
                    Some(ops) => {
                        format!("{existing} {} {w}", ops.get(i).map_or("=", String::as_str))
                    }
                    None if self.nulls_not_distinct => {
                        format!("{existing} IS NOT DISTINCT FROM {w}")
                    }
                    None => format!("{existing} = {w}"),
                }
            })
            .collect();
        format!(
            "SELECT {} FROM ONLY {shadow} WHERE NOT ({key_in}){} AND EXISTS (SELECT 1 FROM \
             (SELECT {} FROM ({new_rows}) AS wraith_row WHERE true{}) AS wraith_new({}) WHERE {})",
            key_text.join(", "),
            pred(&self.predicate),
            self.exprs.join(", "),
            pred(&self.predicate),
            names.join(", "),
            conds.join(" AND ")
        )
    }
}

/// How to find the shadow rows a re-read would conflict with, for one constraint.
#[derive(Debug, Clone)]
pub struct Conflict {
    pub constraint: String,
    pub find: String,
}

/// Names, types and collations of the key, in key order.
///
/// Every range test on keys compares in the source key's own type and collation
/// (the order chunks and verification spans are cut in), never in the database's
/// default: the bounds carry an explicit `COLLATE`, which wins over whatever the
/// other side of the comparison has.
#[derive(Debug, Clone)]
pub struct KeyCols {
    /// Key columns in the source.
    pub source: Vec<String>,
    /// The same columns in the shadow (renames followed).
    pub shadow: Vec<String>,
    /// Source types as `format_type` prints them.
    pub types: Vec<String>,
    /// Source collations (`None`: not a collatable type), quoted.
    pub collations: Vec<Option<String>>,
    /// The shadow's collations of the same columns (the ALTER may change them).
    pub shadow_collations: Vec<Option<String>>,
}

impl KeyCols {
    /// The key of `table`, named `shadow` in a table with `shadow_columns`.
    pub fn new(table: &Table, shadow: Vec<String>, shadow_columns: &[Column]) -> KeyCols {
        KeyCols {
            source: table.key.clone(),
            shadow_collations: shadow
                .iter()
                .map(|k| {
                    shadow_columns
                        .iter()
                        .find(|c| &c.name == k)
                        .and_then(|c| c.collation.clone())
                })
                .collect(),
            shadow,
            types: table.key_types.clone(),
            collations: table.key_collations.clone(),
        }
    }

    fn len(&self) -> usize {
        self.source.len()
    }

    /// The shadow's key sorts differently from the source's (the ALTER changed a
    /// key column's collation): range tests on the shadow cannot use its index.
    pub fn order_differs(&self) -> bool {
        self.collations != self.shadow_collations
    }

    /// `expr COLLATE <the source key column i's collation>`, or `expr`.
    fn collated(&self, i: usize, expr: String) -> String {
        match self.collations.get(i).cloned().flatten() {
            Some(c) => format!("({expr} COLLATE {c})"),
            None => expr,
        }
    }

    /// `($a::text::T1, $b::text::T2)` with parameters numbered from `first`,
    /// each in its key column's collation.
    pub fn params(&self, first: usize) -> String {
        let parts: Vec<String> = self
            .types
            .iter()
            .enumerate()
            .map(|(i, t)| self.collated(i, format!("${}::text::{t}", first + i)))
            .collect();
        format!("({})", parts.join(", "))
    }

    /// Equality of the shadow's key (alias `s`) with the source's, in the shadow's
    /// collation, which its key index uses.
    fn same_key(&self, src: &str) -> String {
        let parts: Vec<String> = self
            .shadow
            .iter()
            .zip(&self.source)
            .enumerate()
            .map(|(i, (s, c))| {
                let source = format!("{src}.{}", ident(c));
                let source = match (self.order_differs(), self.shadow_collations.get(i)) {
                    (true, Some(Some(coll))) => format!("({source} COLLATE {coll})"),
                    _ => source,
                };
                format!("s.{} = {source}", ident(s))
            })
            .collect();
        parts.join(" AND ")
    }

    /// `$1::text[]::T1[], $2::text[]::T2[]`: the keys as one array per key column.
    fn arrays(&self) -> String {
        let arrays: Vec<String> = self
            .types
            .iter()
            .enumerate()
            .map(|(i, t)| format!("${}::text[]::{t}[]", i + 1))
            .collect();
        arrays.join(", ")
    }

    /// Condition "key of this row is one of the given arrays" on `cols`.
    pub(crate) fn in_arrays(&self, cols: &[String]) -> String {
        if self.len() == 1 {
            return format!("{} = ANY($1::text[]::{}[])", ident(&cols[0]), self.types[0]);
        }
        format!(
            "({}) IN (SELECT * FROM unnest({}))",
            list(cols),
            self.arrays()
        )
    }
}

impl RowSql {
    pub fn build(
        src: &str,
        shadow: &str,
        key: &KeyCols,
        mapping: &Mapping,
        uniques: &[UniqueIndex],
    ) -> RowSql {
        let written: Vec<_> = mapping.written().collect();
        let targets: Vec<String> = written.iter().map(|c| c.target.clone()).collect();
        let exprs: Vec<String> = written
            .iter()
            .map(|c| c.expr.clone().unwrap_or_default())
            .collect();
        let insert = format!(
            "INSERT INTO {shadow} ({}) OVERRIDING SYSTEM VALUE SELECT {} FROM ONLY {src}",
            list(&targets),
            exprs.join(", ")
        );
        let n = key.len();
        let src_key = format!("({})", list(&key.source));
        let shadow_key = format!("({})", list(&key.shadow));
        let text_cols = as_text_keys(&key.source);
        // `tuple` in (lower, upper] with parameters numbered from `first`.
        let range = |tuple: &str, first: usize, has_lower: bool| {
            let upper = if has_lower { first + n } else { first };
            let mut cond = Vec::new();
            if has_lower {
                cond.push(format!("{tuple} > {}", key.params(first)));
            }
            cond.push(format!("{tuple} <= {}", key.params(upper)));
            cond.join(" AND ")
        };
        let ranged = |f: &dyn Fn(bool) -> String| Ranged {
            first: f(false),
            next: f(true),
        };
        let cols: Vec<String> = (0..n).map(|i| format!("k{i}")).collect();
        // The re-read rows as the shadow stores them, under the shadow's column names.
        let new_rows = format!(
            "SELECT {} FROM ONLY {src} WHERE {}",
            written
                .iter()
                .map(|c| format!(
                    "CAST(({}) AS {}) AS {}",
                    c.expr.as_deref().unwrap_or_default(),
                    c.target_type,
                    ident(&c.target)
                ))
                .collect::<Vec<_>>()
                .join(", "),
            key.in_arrays(&key.source)
        );
        let shadow_text = as_text_keys(&key.shadow);
        let conflicts = uniques
            .iter()
            .filter(|u| u.columns.iter().all(|c| targets.contains(c)))
            .map(|u| Conflict {
                constraint: u.name.clone(),
                find: u.finder(shadow, &shadow_text, &key.in_arrays(&key.shadow), &new_rows),
            })
            .collect();
        RowSql {
            bound: ranged(&|lower| {
                let offset = if lower { 2 * n + 1 } else { n + 1 };
                format!(
                    "SELECT {} FROM ONLY {src} WHERE {} ORDER BY {} LIMIT 1 OFFSET ${offset}",
                    text_cols.join(", "),
                    range(&src_key, 1, lower),
                    list(&key.source)
                )
            }),
            copy: ranged(&|lower| format!("{insert} WHERE {}", range(&src_key, 1, lower))),
            copy_merge: ranged(&|lower| {
                format!(
                    "{insert} WHERE {} AND NOT EXISTS (SELECT 1 FROM ONLY {shadow} s WHERE {})",
                    range(&src_key, 1, lower),
                    key.same_key(src)
                )
            }),
            shadow_has: ranged(&|lower| {
                format!(
                    "SELECT EXISTS (SELECT 1 FROM ONLY {shadow} WHERE {})",
                    range(&shadow_key, 1, lower)
                )
            }),
            in_range: ranged(&|lower| {
                format!(
                    "SELECT {} FROM unnest({}) AS u({}) WHERE {}",
                    cols.iter()
                        .map(|c| format!("{c}::text"))
                        .collect::<Vec<_>>()
                        .join(", "),
                    key.arrays(),
                    cols.join(", "),
                    range(&format!("({})", cols.join(", ")), n + 1, lower)
                )
            }),
            apply_delete: format!(
                "DELETE FROM ONLY {shadow} WHERE {}",
                key.in_arrays(&key.shadow)
            ),
            apply_insert: format!("{insert} WHERE {}", key.in_arrays(&key.source)),
            chunk_keys: ranged(&|lower| {
                format!(
                    "SELECT {} FROM ONLY {src} WHERE {}",
                    text_cols.join(", "),
                    range(&src_key, 1, lower)
                )
            }),
            conflicts,
            last_key: format!(
                "SELECT {} FROM ONLY {src} ORDER BY {} LIMIT 1",
                text_cols.join(", "),
                key.source
                    .iter()
                    .map(|c| format!("{} DESC", ident(c)))
                    .collect::<Vec<_>>()
                    .join(", ")
            ),
            always_merge: key.order_differs(),
            guard: None,
        }
    }

    /// The way back: the old table keeps its own values of the columns the new
    /// table lacks (`kept`: column and the expression a row new since the swap
    /// takes, its default or NULL). The apply deletes the keys' rows and re-inserts
    /// them in one statement that carries those values over; `apply_delete` is
    /// then empty.
    pub fn keep_old_values(
        &mut self,
        src: &str,
        shadow: &str,
        key: &KeyCols,
        mapping: &Mapping,
        kept: &[(String, String)],
    ) {
        if kept.is_empty() {
            return;
        }
        let written: Vec<_> = mapping.written().collect();
        let mut targets: Vec<String> = written.iter().map(|c| c.target.clone()).collect();
        let mut exprs: Vec<String> = written
            .iter()
            .map(|c| c.expr.clone().unwrap_or_default())
            .collect();
        let n = key.len();
        let mut returning: Vec<String> = key.shadow.iter().map(|c| ident(c)).collect();
        let mut aliases: Vec<String> = (0..n).map(|i| format!("wraith_k{i}")).collect();
        for (i, (col, default)) in kept.iter().enumerate() {
            returning.push(ident(col));
            aliases.push(format!("wraith_v{i}"));
            targets.push(col.clone());
            exprs.push(format!(
                "CASE WHEN w.wraith_k0 IS NULL THEN {default} ELSE w.wraith_v{i} END"
            ));
        }
        let join: Vec<String> = key
            .source
            .iter()
            .enumerate()
            .map(|(i, c)| format!("w.wraith_k{i} = {src}.{}", ident(c)))
            .collect();
        // The ORDER BY reads every deleted row before the first insert, so no
        // re-inserted row meets an old one under a unique constraint.
        self.apply_insert = format!(
            "WITH gone AS (DELETE FROM ONLY {shadow} WHERE {} RETURNING {}), \
                was AS (SELECT * FROM gone ORDER BY 1) \
                INSERT INTO {shadow} ({}) OVERRIDING SYSTEM VALUE SELECT {} FROM ONLY {src} \
                LEFT JOIN was AS w({}) ON {} WHERE {}",
            key.in_arrays(&key.shadow),
            returning.join(", "),
            list(&targets),
            exprs.join(", "),
            aliases.join(", "),
            join.join(" AND "),
            key.in_arrays(&key.source)
        );
        self.apply_delete = String::new();
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::plan::{ColumnMap, Fill};

    #[test]
    fn quoting() {
        assert_eq!(ident("a\"b"), "\"a\"\"b\"");
        assert_eq!(qualified("public", "Orders"), "\"public\".\"Orders\"");
        assert_eq!(literal("it's"), "'it''s'");
    }

    fn mapping() -> Mapping {
        Mapping {
            columns: vec![
                ColumnMap {
                    target: "id".into(),
                    target_type: "bigint".into(),
                    expr: Some("CAST(\"id\" AS bigint)".into()),
                    fill: Fill::Cast { from: "id".into() },
                },
                ColumnMap {
                    target: "body".into(),
                    target_type: "text".into(),
                    expr: Some("\"body\"".into()),
                    fill: Fill::Copy {
                        from: "body".into(),
                    },
                },
                ColumnMap {
                    target: "added".into(),
                    target_type: "int".into(),
                    expr: None,
                    fill: Fill::Default,
                },
            ],
            dropped: vec![],
        }
    }

    #[test]
    fn single_key_statements() {
        let key = KeyCols {
            source: vec!["id".into()],
            shadow: vec!["id".into()],
            types: vec!["integer".into()],
            collations: vec![None],
            shadow_collations: vec![None],
        };
        let s = RowSql::build(
            "\"public\".\"t\"",
            "\"public\".\"_t_new\"",
            &key,
            &mapping(),
            &[],
        );
        assert_eq!(
            s.copy.next,
            "INSERT INTO \"public\".\"_t_new\" (\"id\", \"body\") OVERRIDING SYSTEM VALUE SELECT CAST(\"id\" AS bigint), \"body\" \
             FROM ONLY \"public\".\"t\" WHERE (\"id\") > ($1::text::integer) AND (\"id\") <= ($2::text::integer)"
        );
        assert!(s.copy_merge.first.ends_with(
            "WHERE (\"id\") <= ($1::text::integer) AND NOT EXISTS (SELECT 1 FROM ONLY \"public\".\"_t_new\" s \
             WHERE s.\"id\" = \"public\".\"t\".\"id\")"
        ));
        assert_eq!(
            s.bound.first,
            "SELECT \"id\"::text AS key0 FROM ONLY \"public\".\"t\" WHERE (\"id\") <= ($1::text::integer) ORDER BY \"id\" LIMIT 1 OFFSET $2"
        );
        assert_eq!(
            s.shadow_has.next,
            "SELECT EXISTS (SELECT 1 FROM ONLY \"public\".\"_t_new\" WHERE (\"id\") > ($1::text::integer) AND (\"id\") <= ($2::text::integer))"
        );
        assert_eq!(
            s.in_range.next,
            "SELECT k0::text FROM unnest($1::text[]::integer[]) AS u(k0) WHERE (k0) > ($2::text::integer) AND (k0) <= ($3::text::integer)"
        );
        assert_eq!(
            s.apply_delete,
            "DELETE FROM ONLY \"public\".\"_t_new\" WHERE \"id\" = ANY($1::text[]::integer[])"
        );
        assert!(
            s.apply_insert
                .ends_with("FROM ONLY \"public\".\"t\" WHERE \"id\" = ANY($1::text[]::integer[])")
        );
    }

    #[test]
    fn composite_key_statements() {
        let key = KeyCols {
            source: vec!["a".into(), "b".into()],
            shadow: vec!["a".into(), "b2".into()],
            types: vec!["integer".into(), "text".into()],
            collations: vec![None, Some("\"default\"".into())],
            shadow_collations: vec![None, Some("\"default\"".into())],
        };
        let s = RowSql::build("s", "sh", &key, &mapping(), &[]);
        assert!(s.bound.next.contains("WHERE (\"a\", \"b\") > ($1::text::integer, ($2::text::text COLLATE \"default\")) AND (\"a\", \"b\") <= ($3::text::integer, ($4::text::text COLLATE \"default\"))"), "{}", s.bound.next);
        assert!(s.bound.next.ends_with("OFFSET $5"));
        assert!(s.bound.first.ends_with("OFFSET $3"));
        assert!(
            s.in_range.first.ends_with(
                "WHERE (k0, k1) <= ($3::text::integer, ($4::text::text COLLATE \"default\"))"
            ),
            "{}",
            s.in_range.first
        );
        assert_eq!(
            s.apply_delete,
            "DELETE FROM ONLY sh WHERE (\"a\", \"b2\") IN (SELECT * FROM unnest($1::text[]::integer[], $2::text[]::text[]))"
        );
    }
}
