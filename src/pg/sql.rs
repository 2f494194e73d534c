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
    pub fn params(&self, first: usize) -> String {
        let parts: Vec<String> = self
            .types
            .iter()
            .enumerate()
            .map(|(i, t)| format!("${}::text::{t}", first + i))
            .collect();
        format!("({})", parts.join(", "))
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
    fn in_arrays(&self, cols: &[String]) -> String {
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
        let src_key = format!("({})", list(&key.source));
        let shadow_key = format!("({})", list(&key.shadow));
        // Aliased: ORDER BY "id" would otherwise sort by the text output column.
        let text_cols: Vec<String> = key
            .source
            .iter()
            .enumerate()
            .map(|(i, c)| format!("{}::text AS key{i}", ident(c)))
            .collect();
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
        let same_key: Vec<String> = key
            .shadow
            .iter()
            .zip(&key.source)
            .map(|(s, c)| format!("s.{} = {src}.{}", ident(s), ident(c)))
            .collect();
        let cols: Vec<String> = (0..n).map(|i| format!("k{i}")).collect();
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
                    same_key.join(" AND ")
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
        assert!(s.bound.next.contains("WHERE (\"a\", \"b\") > ($1::text::integer, $2::text::text) AND (\"a\", \"b\") <= ($3::text::integer, $4::text::text)"), "{}", s.bound.next);
        assert!(s.bound.next.ends_with("OFFSET $5"));
        assert!(s.bound.first.ends_with("OFFSET $3"));
        assert!(
            s.in_range
                .first
                .ends_with("WHERE (k0, k1) <= ($3::text::integer, $4::text::text)"),
            "{}",
            s.in_range.first
        );
        assert_eq!(
            s.apply_delete,
            "DELETE FROM ONLY sh WHERE (\"a\", \"b2\") IN (SELECT * FROM unnest($1::text[]::integer[], $2::text[]::text[]))"
        );
    }
}
