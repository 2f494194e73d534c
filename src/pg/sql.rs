//! Every SQL text the PostgreSQL engine sends is built here, so quoting lives in one place.
//!
//! Identifiers are always double-quoted; values travel as parameters, except in
//! DDL (comments) where [`literal`] quotes them. Keys travel as text and are cast
//! back to the key column's type on the server (`$1::text[]::integer[]`).

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

fn list(cols: &[String]) -> String {
    cols.iter().map(|c| ident(c)).collect::<Vec<_>>().join(", ")
}

/// The statements that copy and apply rows, built once per migration.
#[derive(Debug, Clone)]
pub struct RowSql {
    /// `$1..$n` = first key after which the chunk starts (absent in `bound_first`), then the end key.
    pub bound_first: String,
    pub bound_next: String,
    /// `$1..$n` = lower bound (exclusive, absent in `copy_first`), then the upper bound (inclusive).
    pub copy_first: String,
    pub copy_next: String,
    /// `$1..$k` = one text[] per key column.
    pub apply_delete: String,
    pub apply_upsert: String,
    /// The table's last key (the copy's end).
    pub last_key: String,
}

/// Names and types of the key, in key order.
#[derive(Debug, Clone)]
pub struct KeyCols {
    /// Key columns in the source.
    pub source: Vec<String>,
    /// The same columns in the shadow (renames followed).
    pub shadow: Vec<String>,
    /// Source types as `format_type` prints them.
    pub types: Vec<String>,
}

impl KeyCols {
    fn len(&self) -> usize {
        self.source.len()
    }

    /// `($a::text::T1, $b::text::T2)` with parameters numbered from `first`.
    fn params(&self, first: usize) -> String {
        let parts: Vec<String> = self
            .types
            .iter()
            .enumerate()
            .map(|(i, t)| format!("${}::text::{t}", first + i))
            .collect();
        format!("({})", parts.join(", "))
    }

    /// Condition "key of this row is one of the given arrays" on `cols`.
    fn in_arrays(&self, cols: &[String]) -> String {
        if self.len() == 1 {
            return format!("{} = ANY($1::text[]::{}[])", ident(&cols[0]), self.types[0]);
        }
        let arrays: Vec<String> = self
            .types
            .iter()
            .enumerate()
            .map(|(i, t)| format!("${}::text[]::{t}[]", i + 1))
            .collect();
        format!(
            "({}) IN (SELECT * FROM unnest({}))",
            list(cols),
            arrays.join(", ")
        )
    }
}

impl RowSql {
    pub fn build(src: &str, shadow: &str, key: &KeyCols, mapping: &Mapping) -> RowSql {
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
        let k = format!("({})", list(&key.source));
        let order = list(&key.source);
        // Aliased: ORDER BY "id" would otherwise sort by the text output column.
        let text_cols: Vec<String> = key
            .source
            .iter()
            .enumerate()
            .map(|(i, c)| format!("{}::text AS key{i}", ident(c)))
            .collect();
        let bound = |lower: Option<usize>, upper: usize, offset: usize| {
            let mut cond = Vec::new();
            if let Some(l) = lower {
                cond.push(format!("{k} > {}", key.params(l)));
            }
            cond.push(format!("{k} <= {}", key.params(upper)));
            format!(
                "SELECT {} FROM ONLY {src} WHERE {} ORDER BY {order} LIMIT 1 OFFSET ${offset}",
                text_cols.join(", "),
                cond.join(" AND ")
            )
        };
        let copy = |lower: Option<usize>, upper: usize| {
            let mut cond = Vec::new();
            if let Some(l) = lower {
                cond.push(format!("{k} > {}", key.params(l)));
            }
            cond.push(format!("{k} <= {}", key.params(upper)));
            format!(
                "{insert} WHERE {} ON CONFLICT ({}) DO NOTHING",
                cond.join(" AND "),
                list(&key.shadow)
            )
        };
        let updates: Vec<String> = targets
            .iter()
            .filter(|t| !key.shadow.contains(t))
            .map(|t| format!("{0} = EXCLUDED.{0}", ident(t)))
            .collect();
        let on_conflict = if updates.is_empty() {
            format!("ON CONFLICT ({}) DO NOTHING", list(&key.shadow))
        } else {
            format!(
                "ON CONFLICT ({}) DO UPDATE SET {}",
                list(&key.shadow),
                updates.join(", ")
            )
        };
        RowSql {
            bound_first: bound(None, 1, n + 1),
            bound_next: bound(Some(1), n + 1, 2 * n + 1),
            copy_first: copy(None, 1),
            copy_next: copy(Some(1), n + 1),
            apply_delete: format!(
                "DELETE FROM ONLY {shadow} WHERE {}",
                key.in_arrays(&key.shadow)
            ),
            apply_upsert: format!(
                "{insert} WHERE {} {on_conflict}",
                key.in_arrays(&key.source)
            ),
            last_key: format!(
                "SELECT {} FROM ONLY {src} ORDER BY {} LIMIT 1",
                text_cols.join(", "),
                key.source
                    .iter()
                    .map(|c| format!("{} DESC", ident(c)))
                    .collect::<Vec<_>>()
                    .join(", ")
            ),
        }
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
        };
        let s = RowSql::build(
            "\"public\".\"t\"",
            "\"public\".\"_t_new\"",
            &key,
            &mapping(),
        );
        assert_eq!(
            s.copy_next,
            "INSERT INTO \"public\".\"_t_new\" (\"id\", \"body\") OVERRIDING SYSTEM VALUE SELECT CAST(\"id\" AS bigint), \"body\" \
             FROM ONLY \"public\".\"t\" WHERE (\"id\") > ($1::text::integer) AND (\"id\") <= ($2::text::integer) ON CONFLICT (\"id\") DO NOTHING"
        );
        assert_eq!(
            s.bound_first,
            "SELECT \"id\"::text AS key0 FROM ONLY \"public\".\"t\" WHERE (\"id\") <= ($1::text::integer) ORDER BY \"id\" LIMIT 1 OFFSET $2"
        );
        assert_eq!(
            s.apply_delete,
            "DELETE FROM ONLY \"public\".\"_t_new\" WHERE \"id\" = ANY($1::text[]::integer[])"
        );
        assert!(s.apply_upsert.ends_with(
            "WHERE \"id\" = ANY($1::text[]::integer[]) ON CONFLICT (\"id\") DO UPDATE SET \"body\" = EXCLUDED.\"body\""
        ));
    }

    #[test]
    fn composite_key_statements() {
        let key = KeyCols {
            source: vec!["a".into(), "b".into()],
            shadow: vec!["a".into(), "b2".into()],
            types: vec!["integer".into(), "text".into()],
        };
        let s = RowSql::build("s", "sh", &key, &mapping());
        assert!(s.bound_next.contains("WHERE (\"a\", \"b\") > ($1::text::integer, $2::text::text) AND (\"a\", \"b\") <= ($3::text::integer, $4::text::text)"), "{}", s.bound_next);
        assert!(s.bound_next.ends_with("OFFSET $5"));
        assert_eq!(
            s.apply_delete,
            "DELETE FROM ONLY sh WHERE (\"a\", \"b2\") IN (SELECT * FROM unnest($1::text[]::integer[], $2::text[]::text[]))"
        );
    }
}
