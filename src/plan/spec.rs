//! The migration spec: which table, the ALTER text, transforms, prepare and
//! shadow statements, data checks: what a migration does, not how it runs
//! (that is [`crate::plan::RunOptions`]). Built from CLI flags or read from a
//! TOML file; validated before any connection.

use std::time::Duration;

use serde::Deserialize;

use crate::dsn::Dsn;
use crate::error::bad_input;

/// `--transform col=EXPR`: fill column `col` of the new table with `EXPR`,
/// evaluated against the original row.
#[derive(Debug, Clone, PartialEq, Deserialize)]
pub struct Transform {
    pub column: String,
    pub expr: String,
}

impl Transform {
    /// Parses `col=EXPR` (the first `=` splits; the expression may contain more).
    pub fn parse(s: &str) -> anyhow::Result<Transform> {
        match s.split_once('=') {
            Some((col, expr)) if !col.trim().is_empty() && !expr.trim().is_empty() => {
                Ok(Transform {
                    column: col.trim().to_string(),
                    expr: expr.trim().to_string(),
                })
            }
            _ => Err(bad_input(format!(
                "--transform {s:?} is not of the form column=EXPRESSION (for example --transform status=\"status::status_t\")"
            ))),
        }
    }
}

/// A data check of the spec (`[[check]]`): which source rows hold a known kind of
/// dirt, and what the migration does about them. Run read-only in preflight; the
/// plan and the final report list every check with its count and sample keys.
#[derive(Debug, Clone, PartialEq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Check {
    /// What the dirt is, for people ("orphan order_ref").
    pub name: String,
    /// SQL condition over a source row (the table is visible under its own name).
    pub rows: String,
    pub action: CheckAction,
    /// What happens to these rows, or how to fix them.
    #[serde(default)]
    pub note: String,
}

/// What a migration does with the rows a check finds.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize, serde::Serialize)]
#[serde(rename_all = "lowercase")]
pub enum CheckAction {
    /// A transform of the spec fixes them on the way; they are listed.
    Fix,
    /// They are carried over as they are and listed.
    Report,
    /// The run stops in preflight while any exist, changing nothing.
    Refuse,
}

impl std::fmt::Display for CheckAction {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(match self {
            CheckAction::Fix => "fixed by a transform",
            CheckAction::Report => "carried over, reported",
            CheckAction::Refuse => "refused",
        })
    }
}

/// Everything that describes one migration.
#[derive(Debug, Clone)]
pub struct MigrationSpec {
    pub dsn: Dsn,
    /// Schema of the table; `None` means `public`.
    pub schema: Option<String>,
    pub table: String,
    /// The user's ALTER text, applied verbatim to the shadow table.
    pub alter: String,
    pub transforms: Vec<Transform>,
    /// DDL the new shape depends on (e.g. an enum type), run with the shadow's creation.
    pub prepare: Vec<String>,
    /// Statements run on the shadow after the ALTER; `{shadow}` stands for its name.
    pub shadow_statements: Vec<String>,
    /// Data checks run in preflight.
    pub checks: Vec<Check>,
    /// `--reverse-transform col=EXPR`: how a column of the old table is filled from
    /// a row of the new one, where wraith cannot derive it (`--revertible`).
    pub reverse_transforms: Vec<Transform>,
}

/// A migration spec file (`wraith migrate --spec file.toml`).
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct SpecFile {
    /// Table to migrate, optionally schema-qualified.
    pub table: String,
    /// ALTER TABLE actions, applied verbatim to the shadow.
    pub alter: String,
    /// New column = expression over the old row.
    #[serde(default)]
    pub transforms: std::collections::BTreeMap<String, String>,
    /// DDL the new shape depends on, run with the shadow's creation (keep it idempotent).
    #[serde(default)]
    pub prepare: Vec<String>,
    /// Statements on the shadow after the ALTER (indexes...); `{shadow}` is its name.
    #[serde(default)]
    pub shadow: Vec<String>,
    /// Data checks (`[[check]]` tables).
    #[serde(default, rename = "check")]
    pub checks: Vec<Check>,
    /// Old column = expression over the new row, for `--revertible`.
    #[serde(default)]
    pub reverse_transforms: std::collections::BTreeMap<String, String>,
}

impl SpecFile {
    pub fn read(path: &std::path::Path) -> anyhow::Result<SpecFile> {
        let text = std::fs::read_to_string(path)
            .map_err(|e| bad_input(format!("cannot read the spec file {}: {e}", path.display())))?;
        toml::from_str(&text).map_err(|e| {
            bad_input(format!(
                "the spec file {} is not valid: {e}",
                path.display()
            ))
        })
    }

    /// The migration it describes, on `dsn`.
    pub fn into_spec(self, dsn: &Dsn) -> anyhow::Result<MigrationSpec> {
        let mut spec = MigrationSpec {
            dsn: dsn.clone(),
            schema: None,
            table: String::new(),
            alter: self.alter,
            transforms: self
                .transforms
                .into_iter()
                .map(|(column, expr)| Transform { column, expr })
                .collect(),
            prepare: self.prepare,
            shadow_statements: self.shadow,
            checks: self.checks,
            reverse_transforms: self
                .reverse_transforms
                .into_iter()
                .map(|(column, expr)| Transform { column, expr })
                .collect(),
        };
        spec.set_table(&self.table)?;
        Ok(spec)
    }
}

impl MigrationSpec {
    /// A spec of `alter` alone on `dsn`; the table is set with [`MigrationSpec::set_table`].
    pub fn new(dsn: Dsn, alter: &str) -> MigrationSpec {
        MigrationSpec {
            dsn,
            schema: None,
            table: String::new(),
            alter: alter.to_string(),
            transforms: vec![],
            prepare: vec![],
            shadow_statements: vec![],
            checks: vec![],
            reverse_transforms: vec![],
        }
    }

    /// Sets the table from `--table`: `table`, `schema.table`, or SQL-quoted parts
    /// (`"Sales Dept"."q""t"`; backticks on MySQL) for names holding dots or quotes.
    pub fn set_table(&mut self, name: &str) -> anyhow::Result<()> {
        let quote = crate::Engine::of(&self.dsn).quote();
        let (schema, table) = split_table_name(name, quote)?;
        if schema.is_some() {
            self.schema = schema;
        }
        self.table = table;
        Ok(())
    }

    pub fn schema(&self) -> &str {
        self.schema.as_deref().unwrap_or("public")
    }

    /// Identifies what this spec does to the table (not how it runs), so a rerun of
    /// a completed migration is recognised. Stable across versions: FNV-1a, 64 bits.
    pub fn fingerprint(&self) -> String {
        let mut transforms: Vec<String> = self
            .transforms
            .iter()
            .map(|t| format!("{}={}", t.column, t.expr))
            .collect();
        transforms.sort();
        let parts = [
            format!("{}.{}", self.schema(), self.table),
            self.prepare.join("\n;\n"),
            self.alter.trim().to_string(),
            transforms.join("\n"),
            self.shadow_statements.join("\n;\n"),
        ];
        let h = parts
            .join("\n\u{1}\n")
            .bytes()
            .fold(0xcbf2_9ce4_8422_2325u64, |h, b| {
                (h ^ b as u64).wrapping_mul(0x0000_0100_0000_01b3)
            });
        format!("{h:016x}")
    }
}

/// `[schema.]table` as (schema, table). Unquoted parts are taken as written;
/// a part in `quote`s may hold dots, and a doubled quote stands for one.
pub fn split_table_name(name: &str, quote: char) -> anyhow::Result<(Option<String>, String)> {
    let bad = |why: &str| {
        bad_input(format!(
            "--table {name:?} {why}: give table, schema.table, or quote the parts that hold dots \
             or quotes ({quote}Sales Dept{quote}.{quote}q{quote}{quote}t{quote})"
        ))
    };
    if !name.contains(quote) {
        return Ok(match name.split_once('.') {
            Some((s, t)) if !s.is_empty() && !t.is_empty() => (Some(s.to_string()), t.to_string()),
            _ if name.is_empty() => return Err(bad("is empty")),
            _ => (None, name.to_string()),
        });
    }
    let mut parts = Vec::new();
    let mut chars = name.trim().chars().peekable();
    loop {
        let mut part = String::new();
        if chars.peek() == Some(&quote) {
            chars.next();
            loop {
                match chars.next() {
                    Some(c) if c == quote && chars.peek() == Some(&quote) => {
                        chars.next();
                        part.push(quote);
                    }
                    Some(c) if c == quote => break,
                    Some(c) => part.push(c),
                    None => return Err(bad("has an unterminated quote")),
                }
            }
        } else {
            while let Some(&c) = chars.peek() {
                if c == '.' {
                    break;
                }
                if c == quote {
                    return Err(bad("has a quote inside an unquoted name"));
                }
                part.push(c);
                chars.next();
            }
        }
        if part.is_empty() {
            return Err(bad("has an empty part"));
        }
        parts.push(part);
        match chars.next() {
            None => break,
            Some('.') => {}
            Some(_) => return Err(bad("has text after a quoted part")),
        }
    }
    match parts.len() {
        1 => Ok((None, parts.remove(0))),
        2 => {
            let table = parts.remove(1);
            Ok((Some(parts.remove(0)), table))
        }
        _ => Err(bad("has more than two parts")),
    }
}

/// FNV-1a, 32 bits: a short stable hash for names (slots, sockets).
pub fn fnv1a(s: &str) -> u32 {
    s.bytes().fold(0x811c_9dc5u32, |h, b| {
        (h ^ b as u32).wrapping_mul(0x0100_0193)
    })
}

/// A duration like `500ms`, `2s`, `1m`, `1h` (a bare number is milliseconds).
pub fn parse_duration(s: &str) -> Result<Duration, String> {
    let s = s.trim();
    let (num, unit) = s
        .find(|c: char| !c.is_ascii_digit() && c != '.')
        .map(|i| s.split_at(i))
        .unwrap_or((s, "ms"));
    let v: f64 = num
        .parse()
        .map_err(|_| format!("{s:?} is not a duration like 500ms or 2s"))?;
    let secs = match unit {
        "ms" => v / 1000.0,
        "s" => v,
        "m" | "min" => v * 60.0,
        "h" => v * 3600.0,
        _ => return Err(format!("unknown unit in {s:?}: use ms, s, m or h")),
    };
    Ok(Duration::from_secs_f64(secs))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn transform_parsing() {
        let t = Transform::parse("status = lower(status)::status_t").unwrap();
        assert_eq!(t.column, "status");
        assert_eq!(t.expr, "lower(status)::status_t");
        let t = Transform::parse("flag=a = b").unwrap();
        assert_eq!(t.expr, "a = b");
        assert!(Transform::parse("nocolumn").is_err());
        assert!(Transform::parse("=x").is_err());
        assert!(Transform::parse("x=").is_err());
    }

    #[test]
    fn qualified_table_names() {
        let mut s = MigrationSpec {
            dsn: Dsn::parse("postgres://u@h/db").unwrap(),
            schema: None,
            table: String::new(),
            alter: String::new(),
            transforms: vec![],
            prepare: vec![],
            shadow_statements: vec![],
            checks: vec![],
            reverse_transforms: vec![],
        };
        s.set_table("sales.orders").unwrap();
        assert_eq!((s.schema(), s.table.as_str()), ("sales", "orders"));
        s.schema = None;
        s.set_table("orders").unwrap();
        assert_eq!((s.schema(), s.table.as_str()), ("public", "orders"));
        s.set_table("\"Sales Dept\".\"q\"\"t.x\"").unwrap();
        assert_eq!((s.schema(), s.table.as_str()), ("Sales Dept", "q\"t.x"));
        s.schema = None;
        s.set_table("\"a.b\"").unwrap();
        assert_eq!((s.schema(), s.table.as_str()), ("public", "a.b"));
        for bad in [
            "\"open",
            "a\"b",
            "\"a\"x",
            "a.b.c\"",
            "\"a\".\"b\".\"c\"",
            "",
            "\"\"",
        ] {
            assert!(s.set_table(bad).is_err(), "{bad:?}");
        }
        s.dsn = Dsn::parse("mysql://u@h/db").unwrap();
        s.set_table("`app`.`my``t`").unwrap();
        assert_eq!((s.schema(), s.table.as_str()), ("app", "my`t"));
    }

    #[test]
    fn fingerprints_follow_the_change_not_the_run() {
        let spec = |alter: &str, other_server: bool| {
            let dsn = if other_server {
                "postgres://u@other/db"
            } else {
                "postgres://u@h/db"
            };
            SpecFile {
                table: "orders".into(),
                alter: alter.into(),
                transforms: [("a".to_string(), "1".to_string())].into(),
                prepare: vec![],
                shadow: vec![],
                checks: vec![],
                reverse_transforms: Default::default(),
            }
            .into_spec(&Dsn::parse(dsn).unwrap())
            .unwrap()
            .fingerprint()
        };
        assert_eq!(
            spec("ADD COLUMN b int", false),
            spec("ADD COLUMN b int ", true)
        );
        assert_ne!(
            spec("ADD COLUMN b int", false),
            spec("ADD COLUMN c int", false)
        );
    }

    #[test]
    fn checks_parse_from_toml() {
        let f: SpecFile = toml::from_str(
            r#"
            table = "t"
            alter = "ADD COLUMN x int"
            [[check]]
            name = "negative"
            rows = "n < 0"
            action = "report"
            "#,
        )
        .unwrap();
        assert_eq!(f.checks.len(), 1);
        assert_eq!(f.checks[0].action, CheckAction::Report);
        let bad: Result<SpecFile, _> = toml::from_str(
            "table = \"t\"\nalter = \"x\"\n[[check]]\nname = \"n\"\nrows = \"true\"\naction = \"ignore\"\n",
        );
        assert!(bad.is_err());
    }
}
