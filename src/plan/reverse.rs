//! The way back (`--revertible`): how each column of the old table is filled
//! from a row of the new one, so the old table can follow the new one after the
//! swap and be swapped back without losing a write.
//!
//! Derived where it is exact: a column carried over (renamed, or cast to another
//! type) goes back through the same column; a column the ALTER dropped keeps the
//! old row's own value (a row inserted after the swap takes the column's
//! default); a column the ALTER added is left behind. A column the new table fills
//! with an expression (`USING`, `--transform`) has no inverse wraith could know:
//! `--reverse-transform COL=EXPR` gives it. Pure logic, shared by every engine.

use std::fmt;

use serde::{Deserialize, Serialize};

use crate::error::bad_input;
use crate::plan::Transform;
use crate::plan::mapping::{Fill, Mapping};

/// A column of the old table, as the way back needs to know it.
#[derive(Debug, Clone, PartialEq)]
pub struct OldColumn {
    pub name: String,
    pub type_name: String,
    /// NOT NULL without a default: a row inserted after the swap needs a value.
    pub required: bool,
    /// Computed by the database.
    pub generated: bool,
}

/// Where an old column's value comes from on the way back.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub enum Back {
    /// The new column it was carried to; `cast`: its type changed, and a value
    /// that does not fit back is refused, never truncated.
    Column { from: String, cast: bool },
    /// `--reverse-transform`: an expression over the new table's row.
    Given(String),
    /// Not in the new table: an existing row keeps its own value, a row inserted
    /// after the swap takes the column's default.
    Kept,
    /// Computed by the database.
    Generated,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct ReverseColumn {
    pub old: String,
    pub type_name: String,
    pub back: Back,
}

/// The reverse mapping: one entry per column of the old table.
#[derive(Debug, Clone, PartialEq, Default, Serialize, Deserialize)]
pub struct Reverse {
    pub columns: Vec<ReverseColumn>,
    /// Columns of the new table that do not go back (the ALTER added them).
    pub left_behind: Vec<String>,
}

/// Derives the way back from the forward mapping, or names every column that
/// needs a `--reverse-transform`.
pub fn derive(
    forward: &Mapping,
    old: &[OldColumn],
    given: &[Transform],
) -> anyhow::Result<Reverse> {
    for g in given {
        if !old.iter().any(|c| c.name == g.column) {
            let names: Vec<&str> = old.iter().map(|c| c.name.as_str()).collect();
            return Err(bad_input(format!(
                "--reverse-transform targets column {:?}, which the table does not have now \
                 (its columns: {})",
                g.column,
                names.join(", ")
            )));
        }
    }
    let mut columns = Vec::with_capacity(old.len());
    let mut missing = Vec::new();
    for col in old {
        let carried = forward.columns.iter().find_map(|m| match &m.fill {
            Fill::Copy { from } if *from == col.name => Some((m.target.clone(), false)),
            Fill::Cast { from } if *from == col.name => Some((m.target.clone(), true)),
            _ => None,
        });
        let back = if col.generated {
            Back::Generated
        } else if let Some(g) = given.iter().rev().find(|g| g.column == col.name) {
            Back::Given(g.expr.clone())
        } else if let Some((from, cast)) = carried {
            Back::Column { from, cast }
        } else if !forward.dropped.contains(&col.name) {
            missing.push(format!(
                "{} (the new table fills its successor with an expression)",
                col.name
            ));
            continue;
        } else if col.required {
            missing.push(format!(
                "{} (dropped by the ALTER, NOT NULL without a default: rows inserted after the \
                 swap need a value)",
                col.name
            ));
            continue;
        } else {
            Back::Kept
        };
        columns.push(ReverseColumn {
            old: col.name.clone(),
            type_name: col.type_name.clone(),
            back,
        });
    }
    if !missing.is_empty() {
        let first = missing[0].split(' ').next().unwrap_or_default().to_string();
        return Err(bad_input(format!(
            "--revertible: wraith cannot derive how to fill these columns of the old table from \
             a row of the new one: {}. Give each one as an expression over the new table's \
             columns, e.g. --reverse-transform {first}=EXPRESSION, or leave out --revertible",
            missing.join("; ")
        )));
    }
    // New columns no old one comes back from (a column of an old name is the
    // successor a `--reverse-transform` reads).
    let left_behind = forward
        .columns
        .iter()
        .map(|m| m.target.clone())
        .filter(|t| {
            !old.iter().any(|c| c.name == *t)
                && !columns
                    .iter()
                    .any(|c| matches!(&c.back, Back::Column { from, .. } if from == t))
        })
        .collect();
    Ok(Reverse {
        columns,
        left_behind,
    })
}

/// The refusal of a revert while rows written since the swap do not fit the old
/// table's types: their keys (the first ten) and count, and what to do.
pub fn cannot_carry(keys: &[crate::key::Key], why: &str) -> anyhow::Error {
    let shown: Vec<String> = keys
        .iter()
        .take(10)
        .map(|k| format!("({})", k.join(", ")))
        .collect();
    bad_input(format!(
        "the old table's types cannot hold {} row(s) written to the new table since the swap, \
         keys {}{}: {why}; nothing was swapped back. Change or delete those rows, or give \
         --reverse-transform for their columns, and run the revert again",
        keys.len(),
        shown.join(" "),
        if keys.len() > 10 { " ..." } else { "" }
    ))
}

impl fmt::Display for Reverse {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let width = self.columns.iter().map(|c| c.old.len()).max().unwrap_or(0);
        for c in &self.columns {
            let (expr, how) = match &c.back {
                Back::Column { from, cast: false } if *from == c.old => (from.as_str(), "copied"),
                Back::Column { from, cast: false } => (from.as_str(), "renamed back"),
                Back::Column { from, cast: true } => (
                    from.as_str(),
                    "cast back (a value that does not fit is refused)",
                ),
                Back::Given(e) => (e.as_str(), "--reverse-transform"),
                Back::Kept => (
                    "-",
                    "dropped by the ALTER: the row's own value, or its default",
                ),
                Back::Generated => ("-", "generated by the database"),
            };
            writeln!(f, "   {:width$}  {expr:<40} {how}", c.old)?;
        }
        for l in &self.left_behind {
            writeln!(f, "   (left behind: {l})")?;
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::plan::mapping::ColumnMap;

    fn map(target: &str, fill: Fill) -> ColumnMap {
        ColumnMap {
            target: target.into(),
            target_type: "integer".into(),
            expr: Some(target.into()),
            fill,
        }
    }
    fn old(name: &str, required: bool) -> OldColumn {
        OldColumn {
            name: name.into(),
            type_name: "integer".into(),
            required,
            generated: false,
        }
    }

    /// id copied, amount cast to bigint, note renamed to memo, legacy dropped,
    /// status added.
    fn forward() -> Mapping {
        Mapping {
            columns: vec![
                map("id", Fill::Copy { from: "id".into() }),
                map(
                    "amount",
                    Fill::Cast {
                        from: "amount".into(),
                    },
                ),
                map(
                    "memo",
                    Fill::Copy {
                        from: "note".into(),
                    },
                ),
                map("status", Fill::Default),
            ],
            dropped: vec!["legacy".into()],
        }
    }

    #[test]
    fn renames_casts_drops_and_additions_go_back_exactly() {
        let cols = [
            old("id", true),
            old("amount", true),
            old("note", false),
            old("legacy", false),
        ];
        let r = derive(&forward(), &cols, &[]).unwrap();
        let backs: Vec<_> = r.columns.iter().map(|c| (&c.old[..], &c.back)).collect();
        assert_eq!(
            backs,
            [
                (
                    "id",
                    &Back::Column {
                        from: "id".into(),
                        cast: false
                    }
                ),
                (
                    "amount",
                    &Back::Column {
                        from: "amount".into(),
                        cast: true
                    }
                ),
                (
                    "note",
                    &Back::Column {
                        from: "memo".into(),
                        cast: false
                    }
                ),
                ("legacy", &Back::Kept),
            ]
        );
        assert_eq!(r.left_behind, ["status"]);
    }

    #[test]
    fn an_expression_or_a_required_dropped_column_needs_the_users_inverse() {
        let mut fwd = forward();
        fwd.columns[1].fill = Fill::Using;
        let cols = [
            old("id", true),
            old("amount", true),
            old("note", false),
            old("legacy", true),
        ];
        let e = derive(&fwd, &cols, &[]).unwrap_err().to_string();
        assert!(e.contains("amount (the new table fills"), "{e}");
        assert!(e.contains("legacy (dropped by the ALTER"), "{e}");
        assert!(e.contains("--reverse-transform amount=EXPRESSION"), "{e}");

        let given = [
            Transform::parse("amount=amount / 100").unwrap(),
            Transform::parse("legacy=0").unwrap(),
        ];
        let r = derive(&fwd, &cols, &given).unwrap();
        assert_eq!(r.columns[1].back, Back::Given("amount / 100".into()));
        assert_eq!(r.columns[3].back, Back::Given("0".into()));
        assert_eq!(r.left_behind, ["status"]);

        let e = derive(&fwd, &cols, &[Transform::parse("nope=1").unwrap()]).unwrap_err();
        assert!(e.to_string().contains("\"nope\""), "{e}");
    }
}
