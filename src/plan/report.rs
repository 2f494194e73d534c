//! The plan printed by a dry run (and logged at the start of a real one):
//! what will be created, how columns are filled, the SQL that copies and applies,
//! and the cutover steps. Nothing in it has been executed when it is printed.

use std::fmt;

use crate::plan::{CheckAction, Fill, Mapping};

/// Sample keys kept per data check.
pub const FINDING_KEYS: usize = 10;

/// What a data check (`[[check]]` in the spec) found in the source at preflight.
#[derive(Debug, Clone, serde::Serialize)]
pub struct Finding {
    pub name: String,
    pub action: CheckAction,
    pub note: String,
    pub rows: u64,
    /// The first keys, in key order (at most [`FINDING_KEYS`]).
    pub keys: Vec<String>,
}

impl fmt::Display for Finding {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}: {} rows", self.name, self.rows)?;
        if self.rows > 0 {
            write!(f, ", {}", self.action)?;
            let more = if self.rows > self.keys.len() as u64 {
                ", ..."
            } else {
                ""
            };
            write!(f, "; keys {}{more}", self.keys.join(", "))?;
            if !self.note.is_empty() {
                write!(f, "\n      {}", self.note)?;
            }
        }
        Ok(())
    }
}

/// Logs what each data check found; a `refuse` check that found rows stops the
/// run (bad input) before anything is created.
pub fn settle_findings(table: &str, findings: Vec<Finding>) -> anyhow::Result<Vec<Finding>> {
    for f in &findings {
        tracing::info!(check = %f.name, rows = f.rows, action = ?f.action, "data check");
    }
    let refused: Vec<String> = findings
        .iter()
        .filter(|f| f.action == CheckAction::Refuse && f.rows > 0)
        .map(|f| format!("{f}"))
        .collect();
    if !refused.is_empty() {
        return Err(crate::error::bad_input(format!(
            "{table}: the spec refuses to migrate while these rows exist; nothing was changed:\n  - {}",
            refused.join("\n  - ")
        )));
    }
    Ok(findings)
}

/// The data checks' findings as a block of lines (plan and final report).
pub fn findings_text(findings: &[Finding]) -> String {
    findings.iter().map(|x| format!("   - {x}\n")).collect()
}

#[derive(Debug, Clone, Default)]
pub struct Plan {
    /// `db / schema.table` as the user would name it.
    pub target: String,
    pub server: String,
    pub estimated_rows: u64,
    pub key_columns: Vec<String>,
    /// Statements that create the change source (publication, slot...).
    pub source_steps: Vec<String>,
    /// Statements that create the shadow table.
    pub shadow_ddl: Vec<String>,
    pub mapping: Mapping,
    pub copy_sql: String,
    pub apply_sql: Vec<String>,
    pub cutover_steps: Vec<String>,
    pub warnings: Vec<String>,
    /// What the spec's data checks found.
    pub findings: Vec<Finding>,
    /// The spec was already applied to this table: when, and nothing else to do.
    pub completed: Option<String>,
    /// The spec's fingerprint (what checkpoints and the history are keyed by).
    pub fingerprint: String,
    /// Whether the server could apply the change without a copy (`--instant`).
    pub instant: crate::plan::instant::Instant,
    /// The way back after the swap (`--revertible`).
    pub reverse: Option<crate::plan::reverse::Reverse>,
}

impl fmt::Display for Plan {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        if let Some(done) = &self.completed {
            return writeln!(
                f,
                "{} ({}): this migration was already applied {done}; nothing to do",
                self.target, self.server
            );
        }
        writeln!(f, "Plan for {} ({})", self.target, self.server)?;
        writeln!(
            f,
            "  about {} rows, key ({})",
            self.estimated_rows,
            self.key_columns.join(", ")
        )?;
        if self.instant != crate::plan::instant::Instant::Unchecked {
            writeln!(f, "  {}", self.instant)?;
        }
        writeln!(f, "\n1. Change capture (created first):")?;
        for s in &self.source_steps {
            writeln!(f, "   {s};")?;
        }
        writeln!(f, "\n2. Shadow table:")?;
        for s in &self.shadow_ddl {
            writeln!(f, "   {s};")?;
        }
        writeln!(f, "\n3. Column mapping (new column <- source):")?;
        let width = self
            .mapping
            .columns
            .iter()
            .map(|c| c.target.len())
            .max()
            .unwrap_or(0);
        for c in &self.mapping.columns {
            let how = match &c.fill {
                Fill::Copy { from } if *from == c.target => "copied".to_string(),
                Fill::Copy { from } => format!("renamed from {from}"),
                Fill::Cast { from } => format!("cast from {from}"),
                Fill::Using => "ALTER ... USING".to_string(),
                Fill::Transform => "--transform".to_string(),
                Fill::Default => "new column: default".to_string(),
                Fill::Generated => "generated by the database".to_string(),
            };
            let expr = c.expr.as_deref().unwrap_or("-");
            writeln!(f, "   {:width$}  {:<40} {how}", c.target, expr)?;
        }
        for d in &self.mapping.dropped {
            writeln!(f, "   (dropped: {d})")?;
        }
        writeln!(
            f,
            "\n4. Copy, one chunk at a time by key (rows never leave the server):"
        )?;
        writeln!(f, "   {}", self.copy_sql)?;
        writeln!(
            f,
            "\n5. Apply concurrent changes by re-reading their keys from the source:"
        )?;
        for s in &self.apply_sql {
            writeln!(f, "   {s}")?;
        }
        writeln!(
            f,
            "\n6. Cutover (one transaction, retried when the lock is not granted):"
        )?;
        for (i, s) in self.cutover_steps.iter().enumerate() {
            writeln!(f, "   {}. {s}", i + 1)?;
        }
        if !self.findings.is_empty() {
            writeln!(
                f,
                "\n7. Data checks of the spec (source rows at preflight):"
            )?;
            f.write_str(&findings_text(&self.findings))?;
        }
        if let Some(reverse) = &self.reverse {
            writeln!(
                f,
                "\n{}. The way back (--revertible): old column <- new table",
                if self.findings.is_empty() { 7 } else { 8 }
            )?;
            write!(f, "{reverse}")?;
        }
        for w in &self.warnings {
            writeln!(f, "\nwarning: {w}")?;
        }
        Ok(())
    }
}
