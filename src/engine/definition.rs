//! The source table's definition as wraith read it in preflight: everything the
//! shadow is built from and everything the swap carries over (columns, constraints,
//! indexes, triggers, grants, policies, comments, options, dependents), one line
//! per object. The swap commits only if the definition under its lock is the same:
//! DDL by another session in between (a new grant, index, trigger, column...) would
//! otherwise vanish at the swap without a trace.
//!
//! Each engine reads the lines (`pg::definition`, `mysql::definition`); this module
//! only compares them.

/// A table's definition: sorted, one object per line.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Definition {
    lines: Vec<String>,
}

/// Most changed lines named in the error.
const SHOWN: usize = 20;

impl Definition {
    pub fn new(mut lines: Vec<String>) -> Definition {
        lines.sort();
        Definition { lines }
    }

    /// Lines only in `self` (removed) and only in `now` (added).
    fn diff<'a>(&'a self, now: &'a Definition) -> (Vec<&'a str>, Vec<&'a str>) {
        let only = |a: &'a [String], b: &[String]| -> Vec<&'a str> {
            a.iter()
                .filter(|l| b.binary_search(l).is_err())
                .map(String::as_str)
                .collect()
        };
        (only(&self.lines, &now.lines), only(&now.lines, &self.lines))
    }

    /// Fails, naming every difference, when `now` is not the definition read before.
    pub fn ensure_unchanged(&self, now: &Definition, table: &str) -> anyhow::Result<()> {
        let (removed, added) = self.diff(now);
        if removed.is_empty() && added.is_empty() {
            return Ok(());
        }
        let mut changes: Vec<String> = removed
            .iter()
            .map(|l| format!("- was: {l}"))
            .chain(added.iter().map(|l| format!("+ now: {l}")))
            .collect();
        let more = changes.len().saturating_sub(SHOWN);
        changes.truncate(SHOWN);
        if more > 0 {
            changes.push(format!("and {more} more"));
        }
        Err(anyhow::anyhow!(
            "{table} was changed by another session since wraith read its definition (DDL during the \
             migration); swapping now would lose that change, so nothing was swapped. Run the \
             migration again to include it. What changed:\n  {}",
            changes.join("\n  ")
        ))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names_what_was_added_and_removed() {
        let before = Definition::new(vec!["column a int".into(), "grant x".into()]);
        let same = Definition::new(vec!["grant x".into(), "column a int".into()]);
        assert!(before.ensure_unchanged(&same, "t").is_ok());
        let now = Definition::new(vec![
            "column a int".into(),
            "grant y".into(),
            "index i".into(),
        ]);
        let e = before
            .ensure_unchanged(&now, "public.t")
            .unwrap_err()
            .to_string();
        assert!(e.contains("public.t was changed"), "{e}");
        assert!(e.contains("- was: grant x"), "{e}");
        assert!(e.contains("+ now: grant y"), "{e}");
        assert!(e.contains("+ now: index i"), "{e}");
        assert!(!e.contains("column a"), "{e}");
    }
}
