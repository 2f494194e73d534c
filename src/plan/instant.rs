//! ALTERs the server applies as a metadata-only change, with no copy at all
//! (`--instant`, `--prefer-instant`).
//!
//! A bare `ALTER TABLE` of that kind still takes an exclusive lock, and queued
//! behind a long transaction it stalls every query on the table. wraith applies
//! it through the same bounded, retried lock request as its cutover instead.
//!
//! Whether a change is metadata-only is decided by the server: on PostgreSQL the
//! actions must be of the kinds that never scan or rewrite (below) and, tried on
//! the preflight's scratch copy, leave the table's and its indexes' storage
//! (`relfilenode`) as they were; on MySQL/MariaDB the scratch copy must accept
//! them with `ALGORITHM=INSTANT`.

use std::fmt;

use sqlparser::ast::{
    AlterColumnOperation, AlterTableOperation, ColumnOption, Statement, TableConstraint,
};
use sqlparser::dialect::PostgreSqlDialect;
use sqlparser::parser::Parser;

use crate::plan::MigrationSpec;

/// What `--instant` / `--prefer-instant` asked for.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum InstantMode {
    /// Rewrite the table online, whatever the change (the default).
    #[default]
    Never,
    /// Apply the change directly when it is metadata-only, else rewrite online.
    Prefer,
    /// Apply the change directly; refuse when it is not metadata-only.
    Require,
}

/// Whether the server can apply the change without touching the rows.
#[derive(Debug, Clone, Default, PartialEq)]
pub enum Instant {
    /// Not looked at.
    #[default]
    Unchecked,
    /// The change rewrites or scans the table, or the spec asks for more: why.
    Rewrites(String),
    /// Metadata only: these statements apply it, in one transaction.
    MetadataOnly(Vec<String>),
}

impl fmt::Display for Instant {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Instant::Unchecked => Ok(()),
            Instant::Rewrites(why) => write!(f, "not a metadata-only change: {why}"),
            Instant::MetadataOnly(stmts) => write!(
                f,
                "a metadata-only change on this server: --instant applies it directly with the \
                 cutover's bounded, retried lock, no copy ({})",
                stmts.join("; ")
            ),
        }
    }
}

/// What of the spec a direct ALTER cannot do: `None` when nothing.
pub fn spec_needs_copy(spec: &MigrationSpec) -> Option<String> {
    if !spec.transforms.is_empty() {
        return Some("the spec transforms column values, which needs the rows copied".into());
    }
    if !spec.shadow_statements.is_empty() {
        return Some("the spec has statements for the shadow table".into());
    }
    None
}

/// PostgreSQL: the first action of `actions` that can scan or rewrite the table
/// (`None`: each is of a kind that changes only the catalog, given that the
/// scratch copy's storage stays; `ALTER COLUMN … TYPE` is judged by that alone).
pub fn pg_scanning_action(actions: &str) -> Option<String> {
    let sql = format!("ALTER TABLE wraith_probe {actions}");
    let Ok(stmts) = Parser::parse_sql(&PostgreSqlDialect {}, &sql) else {
        return Some(format!("wraith could not read {actions:?} to tell"));
    };
    for stmt in stmts {
        let Statement::AlterTable(at) = stmt else {
            return Some(format!("{actions:?} is not an ALTER TABLE"));
        };
        for op in at.operations {
            if let Some(why) = pg_op_scans(&op) {
                return Some(why);
            }
        }
    }
    None
}

fn pg_op_scans(op: &AlterTableOperation) -> Option<String> {
    use AlterColumnOperation as C;
    use AlterTableOperation as A;
    match op {
        A::AddColumn { column_def, .. } => column_def
            .options
            .iter()
            .find(|o| {
                !matches!(
                    o.option,
                    ColumnOption::Null
                        | ColumnOption::NotNull
                        | ColumnOption::Default(_)
                        | ColumnOption::Collation(_)
                )
            })
            .map(|o| {
                format!(
                    "ADD COLUMN {} with {} fills or checks every row",
                    column_def.name, o.option
                )
            }),
        A::DropColumn { .. }
        | A::DropConstraint { .. }
        | A::RenameColumn { .. }
        | A::RenameConstraint { .. } => None,
        A::AlterColumn { op, column_name } => match op {
            C::DropNotNull | C::SetDefault { .. } | C::DropDefault | C::SetDataType { .. } => None,
            C::SetNotNull => Some(format!(
                "ALTER COLUMN {column_name} SET NOT NULL scans every row under the exclusive lock"
            )),
            other => Some(format!(
                "ALTER COLUMN {column_name} {other} is not known to be metadata-only"
            )),
        },
        A::AddConstraint {
            constraint: TableConstraint::Check(_) | TableConstraint::ForeignKey(_),
            not_valid: true,
        } => None,
        A::AddConstraint { constraint, .. } => Some(format!(
            "ADD {constraint} checks every row (a CHECK or FOREIGN KEY added NOT VALID does not)"
        )),
        other => Some(format!("{other} is not known to be metadata-only")),
    }
}

#[cfg(test)]
mod tests {
    use super::pg_scanning_action;

    #[test]
    fn only_catalog_changes_pass_on_postgres() {
        for ok in [
            "ADD COLUMN note text",
            "ADD COLUMN n int NOT NULL DEFAULT 0, DROP COLUMN old",
            "ALTER COLUMN v SET DEFAULT 'x', ALTER COLUMN w DROP DEFAULT, ALTER COLUMN z DROP NOT NULL",
            "ALTER COLUMN name TYPE varchar(200)",
            "ADD CONSTRAINT pos CHECK (n > 0) NOT VALID",
            "DROP CONSTRAINT t_v_check",
            "RENAME COLUMN a TO b",
        ] {
            assert_eq!(pg_scanning_action(ok), None, "{ok}");
        }
        for (scans, says) in [
            ("ALTER COLUMN v SET NOT NULL", "SET NOT NULL"),
            ("ADD CONSTRAINT pos CHECK (n > 0)", "checks every row"),
            ("ADD COLUMN id2 int UNIQUE", "ADD COLUMN id2"),
            (
                "ADD COLUMN g int GENERATED ALWAYS AS (n * 2) STORED",
                "ADD COLUMN g",
            ),
            ("ADD PRIMARY KEY (id)", "checks every row"),
            ("not sql at all (", "could not read"),
        ] {
            let why = pg_scanning_action(scans).unwrap_or_default();
            assert!(why.contains(says), "{scans}: {why}");
        }
    }
}
