//! Names of the tables a MySQL/MariaDB run creates next to the source.
//!
//! `t_wraith_new` is the shadow, `t_wraith_old` the original after the swap (and,
//! during a MariaDB cutover, the sentry that keeps the queued RENAME from running
//! early), `t_wraith_log` the changelog: heartbeats, fences and the marker that
//! says the shadow beside it is wraith's.
//!
//! The names extend the source's name on purpose: a RENAME takes its metadata
//! locks one table at a time in name order, so it must queue on the source first.
//! Only then does the unlock hand the source to the RENAME before any write that
//! waits for it (`_t_new` would sort first, and those writes would reach the old
//! table after the last changes were applied).

use crate::error::bad_input;
use crate::mysql::sql::q;

/// MySQL's identifier length limit.
const MAX_IDENT: usize = 64;

#[derive(Debug, Clone)]
pub struct Names {
    pub schema: String,
    pub table: String,
    pub shadow: String,
    pub old: String,
    pub changelog: String,
}

impl Names {
    pub fn new(schema: &str, table: &str) -> anyhow::Result<Names> {
        if table.is_empty() {
            return Err(bad_input("--table is empty: name the table to migrate"));
        }
        let changelog = format!("{table}_wraith_log");
        if changelog.len() > MAX_IDENT {
            return Err(bad_input(format!(
                "table name {table:?} is too long: wraith's helper table {changelog:?} would exceed \
                 MySQL's {MAX_IDENT}-character limit; rename the table first"
            )));
        }
        Ok(Names {
            schema: schema.to_string(),
            table: table.to_string(),
            shadow: format!("{table}_wraith_new"),
            old: format!("{table}_wraith_old"),
            changelog,
        })
    }

    fn qualified(&self, name: &str) -> String {
        format!("{}.{}", q(&self.schema), q(name))
    }

    pub fn src(&self) -> String {
        self.qualified(&self.table)
    }

    pub fn shadow_q(&self) -> String {
        self.qualified(&self.shadow)
    }

    pub fn old_q(&self) -> String {
        self.qualified(&self.old)
    }

    pub fn changelog_q(&self) -> String {
        self.qualified(&self.changelog)
    }

    /// The name of the run lock (`GET_LOCK`): one wraith per table.
    pub fn run_lock(&self) -> String {
        format!("wraith.{}.{}", self.schema, self.table)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn quoting_doubles_backticks() {
        assert_eq!(q("a`b"), "`a``b`");
        let n = Names::new("app", "orders").unwrap();
        assert_eq!(n.shadow_q(), "`app`.`orders_wraith_new`");
        // The source sorts before every table the RENAME names.
        assert!(n.table < n.shadow && n.table < n.old);
        assert!(Names::new("app", &"x".repeat(60)).is_err());
    }
}
