//! The migration spec: which table, the ALTER text, transforms and run options.
//! Built from CLI flags or read from a TOML file; validated before any connection.

use std::sync::Arc;
use std::time::Duration;

use serde::Deserialize;

use crate::verify::Mode;

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
    pub dsn: String,
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
    pub options: RunOptions,
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
    pub fn into_spec(self, dsn: &str, options: RunOptions) -> anyhow::Result<MigrationSpec> {
        let mut spec = MigrationSpec {
            dsn: dsn.to_string(),
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
            options,
        };
        spec.set_table(&self.table)?;
        Ok(spec)
    }
}

impl MigrationSpec {
    /// Sets the table from `--table`: `table`, `schema.table`, or SQL-quoted parts
    /// (`"Sales Dept"."q""t"`; backticks on MySQL) for names holding dots or quotes.
    pub fn set_table(&mut self, name: &str) -> anyhow::Result<()> {
        let quote = if crate::dsn::is_mysql(&self.dsn) {
            '`'
        } else {
            '"'
        };
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

/// How the run behaves (pacing, cutover), shared by every engine.
#[derive(Debug, Clone)]
pub struct RunOptions {
    /// Without it the run stops after preflight and prints the plan.
    pub execute: bool,
    /// Target duration of one copy chunk; the chunk size adapts to it.
    pub chunk_time: Duration,
    /// Rows in the first chunk, before adapting.
    pub initial_chunk_rows: u64,
    /// Hard cap on copied rows per second.
    pub max_rows_per_sec: Option<u64>,
    /// Longest wait for the cutover lock in one attempt; the application waits at most this long.
    pub cutover_lock_timeout: Duration,
    /// Attempts before giving up on the cutover (the run then fails cleanly).
    pub cutover_attempts: u32,
    /// Longest the write lock may be held while draining the last changes before an attempt is rolled back.
    pub cutover_drain_timeout: Duration,
    /// How long to wait for the change source (e.g. a replication slot) to be created.
    pub slot_create_timeout: Duration,
    /// Pause between polls of the change stream when it is idle.
    pub poll_interval: Duration,
    /// Most dirty keys re-read in one apply statement.
    pub apply_batch_keys: usize,
    /// Drop the original table after a successful swap instead of keeping it.
    pub drop_old: bool,
    /// Verification before the cutover.
    pub verify: Mode,
    /// Parallel verification sessions.
    pub verify_workers: usize,
    /// Throttling: its signals and limits.
    pub throttle: ThrottleOptions,
    /// Unix socket for `wraith ctl` (none: no live control).
    pub control_socket: Option<std::path::PathBuf>,
    /// Hold the cutover until `wraith ctl <socket> cutover`.
    pub postpone_cutover: bool,
    /// Hold the cutover while this file exists.
    pub postpone_flag_file: Option<std::path::PathBuf>,
    /// Terminate the sessions that would make the cutover lock queue.
    pub kill_blockers: bool,
    /// Resumable run: checkpoints a later run can continue from, and on PostgreSQL a
    /// persistent slot; also continues an interrupted resumable run of the same spec.
    pub resume: bool,
    /// Commands run at the migration's events.
    pub hooks: crate::engine::hooks::Hooks,
    /// Named fault points (tests).
    pub fault_points: FaultPoints,
}

/// What slows or pauses the copy, and what aborts the run (DESIGN: throttling).
#[derive(Debug, Clone)]
pub struct ThrottleOptions {
    /// Pause while this file exists.
    pub flag_file: Option<std::path::PathBuf>,
    /// A query returning one number: above 0 pauses the copy.
    pub query: Option<String>,
    /// Replicas whose lag counts against `max_lag`.
    pub replica_dsns: Vec<String>,
    /// Replica lag limit.
    pub max_lag: Option<Duration>,
    /// Load limit: active sessions (PostgreSQL) or Threads_running (MySQL).
    pub max_load: Option<u64>,
    /// Load that aborts the run when seen `critical_load_hits` checks in a row.
    pub critical_load: Option<u64>,
    pub critical_load_hits: u32,
    /// PostgreSQL: WAL retained by wraith's slot, in bytes, above which the copy
    /// pauses; at twice this the run aborts.
    pub max_slot_lag: Option<u64>,
    /// How often the signals are read.
    pub interval: Duration,
}

impl Default for ThrottleOptions {
    fn default() -> Self {
        ThrottleOptions {
            flag_file: None,
            query: None,
            replica_dsns: Vec::new(),
            max_lag: None,
            max_load: None,
            critical_load: None,
            critical_load_hits: 3,
            max_slot_lag: None,
            interval: Duration::from_millis(250),
        }
    }
}

/// A callback run at named points of a migration (`"before-verify"`, ...), so tests can
/// inject faults where they matter. Does nothing unless set.
#[derive(Clone, Default)]
pub struct FaultPoints(pub Option<Arc<dyn Fn(&'static str) -> BoxFuture + Send + Sync>>);

pub type BoxFuture = std::pin::Pin<Box<dyn std::future::Future<Output = ()> + Send>>;

impl FaultPoints {
    pub async fn hit(&self, point: &'static str) {
        if let Some(f) = &self.0 {
            f(point).await;
        }
    }
}

impl std::fmt::Debug for FaultPoints {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(if self.0.is_some() {
            "FaultPoints(set)"
        } else {
            "FaultPoints(none)"
        })
    }
}

impl Default for RunOptions {
    fn default() -> Self {
        RunOptions {
            execute: false,
            chunk_time: Duration::from_millis(500),
            initial_chunk_rows: 1000,
            max_rows_per_sec: None,
            cutover_lock_timeout: Duration::from_millis(500),
            cutover_attempts: 30,
            cutover_drain_timeout: Duration::from_secs(2),
            slot_create_timeout: Duration::from_secs(30),
            poll_interval: Duration::from_millis(50),
            apply_batch_keys: 2000,
            drop_old: false,
            verify: Mode::Checksum,
            verify_workers: 2,
            throttle: ThrottleOptions::default(),
            control_socket: None,
            postpone_cutover: false,
            postpone_flag_file: None,
            kill_blockers: false,
            resume: false,
            hooks: Default::default(),
            fault_points: FaultPoints::default(),
        }
    }
}

/// FNV-1a, 32 bits: a short stable hash for names (slots, sockets).
pub fn fnv1a(s: &str) -> u32 {
    s.bytes().fold(0x811c_9dc5u32, |h, b| {
        (h ^ b as u32).wrapping_mul(0x0100_0193)
    })
}

/// A duration like `500ms`, `2s`, `1m` (a bare number is milliseconds).
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
        _ => return Err(format!("unknown unit in {s:?}: use ms, s or m")),
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
            dsn: String::new(),
            schema: None,
            table: String::new(),
            alter: String::new(),
            transforms: vec![],
            prepare: vec![],
            shadow_statements: vec![],
            checks: vec![],
            options: RunOptions::default(),
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
        s.dsn = "mysql://u@h/db".into();
        s.set_table("`app`.`my``t`").unwrap();
        assert_eq!((s.schema(), s.table.as_str()), ("app", "my`t"));
    }

    #[test]
    fn fingerprints_follow_the_change_not_the_run() {
        let spec = |alter: &str, execute: bool| {
            let mut s = SpecFile {
                table: "orders".into(),
                alter: alter.into(),
                transforms: [("a".to_string(), "1".to_string())].into(),
                prepare: vec![],
                shadow: vec![],
                checks: vec![],
            }
            .into_spec(
                "postgres://x",
                RunOptions {
                    execute,
                    ..RunOptions::default()
                },
            )
            .unwrap();
            s.dsn = format!("{execute}");
            s.fingerprint()
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
