//! Column mapping: how each column of the new table is filled from the old row.
//!
//! Pure logic over column descriptions, shared by every engine. The engine tells
//! which new column descends from which old one (PostgreSQL: the attribute number
//! survives RENAME and TYPE changes); this module adds USING expressions and
//! `--transform`s, and refuses mappings that would lose data or break key matching.

use crate::error::bad_input;
use crate::plan::Transform;

#[derive(Debug, Clone, PartialEq)]
pub struct SourceColumn {
    pub name: String,
    /// Type as the database prints it (e.g. `integer`, `character varying(20)`).
    pub type_name: String,
}

#[derive(Debug, Clone, PartialEq)]
pub struct TargetColumn {
    pub name: String,
    pub type_name: String,
    /// The source column this one descends from (same column, maybe renamed or retyped).
    pub origin: Option<String>,
    /// False for generated columns, which the database computes.
    pub insertable: bool,
    /// NOT NULL without a default: something must fill it.
    pub required: bool,
}

/// Where a new column's value comes from.
#[derive(Debug, Clone, PartialEq)]
pub enum Fill {
    /// The same column, unchanged type.
    Copy { from: String },
    /// The same column, converted to the new type.
    Cast { from: String },
    /// `ALTER COLUMN ... TYPE ... USING expr`.
    Using,
    /// `--transform col=expr`.
    Transform,
    /// A new column: the table's default fills it.
    Default,
    /// Computed by the database (generated column).
    Generated,
}

#[derive(Debug, Clone, PartialEq)]
pub struct ColumnMap {
    pub target: String,
    pub target_type: String,
    /// SQL expression over the source row; `None` when the database fills the column.
    pub expr: Option<String>,
    pub fill: Fill,
}

#[derive(Debug, Clone, PartialEq, Default)]
pub struct Mapping {
    pub columns: Vec<ColumnMap>,
    /// Source columns that do not reach the new table.
    pub dropped: Vec<String>,
}

impl Mapping {
    /// Columns the copy writes (the rest take defaults or are generated).
    pub fn written(&self) -> impl Iterator<Item = &ColumnMap> {
        self.columns.iter().filter(|c| c.expr.is_some())
    }

    /// The new table's name for a source column, when the column is carried over as is
    /// (copied or cast), which is what a key column must be.
    pub fn carried_name(&self, source: &str) -> Option<&str> {
        self.columns.iter().find_map(|c| match &c.fill {
            Fill::Copy { from } | Fill::Cast { from } if from == source => Some(c.target.as_str()),
            _ => None,
        })
    }
}

/// Derives the mapping. `quote` quotes an identifier for the engine's dialect.
pub fn derive(
    source: &[SourceColumn],
    target: &[TargetColumn],
    usings: &[(String, String)],
    transforms: &[Transform],
    key: &[String],
    quote: impl Fn(&str) -> String,
) -> anyhow::Result<Mapping> {
    let names: Vec<&str> = target.iter().map(|c| c.name.as_str()).collect();
    for t in transforms {
        match target.iter().find(|c| c.name == t.column) {
            None => {
                return Err(bad_input(format!(
                    "--transform targets column {:?}, which the new table does not have (its columns: {})",
                    t.column,
                    names.join(", ")
                )));
            }
            Some(c) if !c.insertable => {
                return Err(bad_input(format!(
                    "--transform targets column {:?}, a generated column the database computes itself",
                    t.column
                )));
            }
            Some(_) => {}
        }
    }

    let mut columns = Vec::with_capacity(target.len());
    for col in target {
        let transform = transforms.iter().rev().find(|t| t.column == col.name);
        let using = col.origin.as_ref().and_then(|o| {
            usings
                .iter()
                .rev()
                .find(|(c, _)| c == o || *c == col.name)
                .map(|(_, e)| e.clone())
        });
        let (expr, fill) = if !col.insertable {
            (None, Fill::Generated)
        } else if let Some(t) = transform {
            (Some(t.expr.clone()), Fill::Transform)
        } else if let Some(e) = using {
            (Some(e), Fill::Using)
        } else if let Some(from) = &col.origin {
            let src = source.iter().find(|s| &s.name == from).ok_or_else(|| {
                anyhow::anyhow!(
                    "new column {:?} descends from unknown column {from:?}",
                    col.name
                )
            })?;
            if src.type_name == col.type_name {
                (Some(quote(from)), Fill::Copy { from: from.clone() })
            } else {
                (
                    Some(format!("CAST({} AS {})", quote(from), col.type_name)),
                    Fill::Cast { from: from.clone() },
                )
            }
        } else {
            if col.required {
                return Err(bad_input(format!(
                    "new column {:?} is NOT NULL without a default and nothing fills it: \
                     give it a DEFAULT in the ALTER or pass --transform {}=EXPRESSION",
                    col.name, col.name
                )));
            }
            (None, Fill::Default)
        };
        columns.push(ColumnMap {
            target: col.name.clone(),
            target_type: col.type_name.clone(),
            expr,
            fill,
        });
    }

    let mapping = Mapping {
        dropped: source
            .iter()
            .filter(|s| !target.iter().any(|t| t.origin.as_deref() == Some(&s.name)))
            .map(|s| s.name.clone())
            .collect(),
        columns,
    };
    for k in key {
        if mapping.carried_name(k).is_none() {
            return Err(bad_input(format!(
                "key column {k:?} is dropped or rewritten by an expression in the new table; \
                 wraith matches rows by key, so the key columns must keep their values \
                 (a type change without USING, or a rename, is fine)"
            )));
        }
    }
    Ok(mapping)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn src(name: &str, ty: &str) -> SourceColumn {
        SourceColumn {
            name: name.into(),
            type_name: ty.into(),
        }
    }
    fn tgt(name: &str, ty: &str, origin: Option<&str>) -> TargetColumn {
        TargetColumn {
            name: name.into(),
            type_name: ty.into(),
            origin: origin.map(Into::into),
            insertable: true,
            required: false,
        }
    }
    fn q(s: &str) -> String {
        format!("\"{s}\"")
    }

    #[test]
    fn maps_copy_cast_rename_using_transform_default_drop() {
        let source = vec![
            src("id", "integer"),
            src("args", "json"),
            src("old_name", "text"),
            src("status", "text"),
            src("gone", "text"),
        ];
        let target = vec![
            tgt("id", "bigint", Some("id")),
            tgt("args", "jsonb", Some("args")),
            tgt("new_name", "text", Some("old_name")),
            tgt("status", "status_t", Some("status")),
            tgt("created_at", "timestamp with time zone", None),
        ];
        let m = derive(
            &source,
            &target,
            &[("args".into(), "args::jsonb".into())],
            &[Transform {
                column: "status".into(),
                expr: "status::status_t".into(),
            }],
            &["id".to_string()],
            q,
        )
        .unwrap();
        let fills: Vec<_> = m
            .columns
            .iter()
            .map(|c| (c.fill.clone(), c.expr.clone()))
            .collect();
        assert_eq!(
            fills,
            vec![
                (
                    Fill::Cast { from: "id".into() },
                    Some("CAST(\"id\" AS bigint)".into())
                ),
                (Fill::Using, Some("args::jsonb".into())),
                (
                    Fill::Copy {
                        from: "old_name".into()
                    },
                    Some("\"old_name\"".into())
                ),
                (Fill::Transform, Some("status::status_t".into())),
                (Fill::Default, None),
            ]
        );
        assert_eq!(m.dropped, vec!["gone".to_string()]);
        assert_eq!(m.carried_name("id"), Some("id"));
        assert_eq!(m.written().count(), 4);
    }

    #[test]
    fn refuses_unknown_transform_target_required_column_and_rewritten_key() {
        let source = vec![src("id", "integer")];
        let e = derive(
            &source,
            &[tgt("id", "integer", Some("id"))],
            &[],
            &[Transform {
                column: "nope".into(),
                expr: "1".into(),
            }],
            &["id".to_string()],
            q,
        )
        .unwrap_err();
        assert!(e.to_string().contains("\"nope\""), "{e}");

        let mut req = tgt("must", "integer", None);
        req.required = true;
        let e = derive(
            &source,
            &[tgt("id", "integer", Some("id")), req],
            &[],
            &[],
            &["id".into()],
            q,
        )
        .unwrap_err();
        assert!(e.to_string().contains("NOT NULL without a default"), "{e}");

        let e = derive(
            &source,
            &[tgt("id", "integer", Some("id"))],
            &[("id".into(), "id * 2".into())],
            &[],
            &["id".into()],
            q,
        )
        .unwrap_err();
        assert!(e.to_string().contains("key column"), "{e}");
    }
}
