//! The names wraith gives what it creates for a table: shadow, old table,
//! checkpoint table, replication slot and publication. Deterministic, so a later run (and
//! `wraith cleanup`) finds the leftovers of an earlier one, and nothing else.

use crate::error::bad_input;
use crate::pg::sql::qualified;
use crate::plan::fnv1a;

/// PostgreSQL truncates identifiers longer than this (NAMEDATALEN - 1).
const MAX_IDENT: usize = 63;

/// Marker in the shadow table's comment: only tables carrying it are ever dropped.
pub const SHADOW_MARK: &str = "wraith shadow of ";
/// Marker in the checkpoint table's comment, likewise.
pub const CHECKPOINT_MARK: &str = "wraith checkpoint of ";

#[derive(Debug, Clone)]
pub struct Names {
    pub schema: String,
    pub table: String,
    pub shadow: String,
    pub old: String,
    pub checkpoint: String,
    pub slot: String,
    pub publication: String,
    /// What the swap appends to the names of the indexes and identity sequences it
    /// sets aside with the table it renames away (`_old`; `_reverted` on the way back).
    pub aside_suffix: &'static str,
}

impl Names {
    pub fn new(schema: &str, table: &str) -> anyhow::Result<Names> {
        let shadow = format!("_{table}_new");
        let old = format!("_{table}_old");
        let checkpoint = format!("_{table}_ckpt");
        for n in [&shadow, &old, &checkpoint] {
            if n.len() > MAX_IDENT {
                return Err(bad_input(format!(
                    "the table name {table:?} is too long for wraith's helper name {n:?} \
                     (PostgreSQL allows {MAX_IDENT} bytes): rename the table first"
                )));
            }
        }
        // Slot names allow only lower-case letters, digits and underscores.
        let clean: String = table
            .chars()
            .map(|c| {
                if c.is_ascii_alphanumeric() {
                    c.to_ascii_lowercase()
                } else {
                    '_'
                }
            })
            .take(40)
            .collect();
        let slot = format!("wraith_{clean}_{:08x}", fnv1a(&format!("{schema}.{table}")));
        Ok(Names {
            schema: schema.to_string(),
            table: table.to_string(),
            shadow,
            old,
            checkpoint,
            publication: slot.clone(),
            slot,
            aside_suffix: "_old",
        })
    }

    /// The names of the way back (`--revertible`, `wraith revert`): the table the
    /// application uses is the source, the old table is the shadow, and the swap
    /// sets the new shape aside as `_<table>_reverted`. Its own slot, publication and
    /// checkpoint table (which also holds the way back's record).
    pub fn back(schema: &str, table: &str) -> anyhow::Result<Names> {
        let forward = Names::new(schema, table)?;
        let reverted = format!("_{table}_reverted");
        let checkpoint = format!("_{table}_back");
        for n in [&reverted, &checkpoint] {
            if n.len() > MAX_IDENT {
                return Err(bad_input(format!(
                    "the table name {table:?} is too long for wraith's helper name {n:?} \
                     (PostgreSQL allows {MAX_IDENT} bytes): --revertible needs a shorter name"
                )));
            }
        }
        let slot = format!("{}_back", forward.slot);
        Ok(Names {
            shadow: forward.old,
            old: reverted,
            checkpoint,
            publication: slot.clone(),
            slot,
            aside_suffix: "_reverted",
            ..forward
        })
    }

    pub fn src(&self) -> String {
        qualified(&self.schema, &self.table)
    }

    pub fn shadow_q(&self) -> String {
        qualified(&self.schema, &self.shadow)
    }

    pub fn old_q(&self) -> String {
        qualified(&self.schema, &self.old)
    }

    pub fn checkpoint_q(&self) -> String {
        qualified(&self.schema, &self.checkpoint)
    }

    /// The comment that marks the checkpoint table as wraith's.
    pub fn checkpoint_comment(&self) -> String {
        format!("{CHECKPOINT_MARK}{}.{}", self.schema, self.table)
    }

    /// The comment that marks the shadow as wraith's.
    pub fn shadow_comment(&self) -> String {
        format!("{SHADOW_MARK}{}.{}", self.schema, self.table)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names_are_deterministic_and_valid() {
        let n = Names::new("public", "Orders-2024").unwrap();
        assert_eq!(n.shadow, "_Orders-2024_new");
        assert_eq!(n.old, "_Orders-2024_old");
        assert!(n.slot.starts_with("wraith_orders_2024_"));
        assert!(
            n.slot
                .chars()
                .all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || c == '_')
        );
        assert_eq!(n.slot, Names::new("public", "Orders-2024").unwrap().slot);
        assert_ne!(n.slot, Names::new("other", "Orders-2024").unwrap().slot);
        assert!(Names::new("public", &"x".repeat(60)).is_err());
    }
}
