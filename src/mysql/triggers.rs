//! The table's triggers on MySQL/MariaDB.
//!
//! The shadow never has them, so copied and applied rows fire nothing (an audit
//! trigger would log every one). A RENAME takes a table's triggers with it, and
//! trigger names are schema-wide, so within the cutover's lock, after the RENAME,
//! each is dropped from the old table and created on the new one with its name,
//! definer, timing, event and the `sql_mode` / character set it was created
//! under, in the order they fire (creating them in that order keeps it).
//!
//! The dry run creates them, under names of their own, on a scratch table of the
//! new shape: a body that uses a column the ALTER drops, or a definer the user
//! may not name, is refused before anything exists.

use mysql_async::Conn;
use mysql_async::prelude::Queryable;

use crate::error::bad_input;
use crate::mysql::conn::{MyResult, describe};
use crate::mysql::names::Names;
use crate::mysql::sql::q;

/// A trigger of the table, as `information_schema.TRIGGERS` describes it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Trigger {
    pub name: String,
    /// `BEFORE` / `AFTER`.
    pub timing: String,
    /// `INSERT` / `UPDATE` / `DELETE`.
    pub event: String,
    pub order: i64,
    pub body: String,
    /// `user@host`.
    pub definer: String,
    pub sql_mode: String,
    pub charset: String,
    pub collation: String,
}

impl Trigger {
    /// `CREATE DEFINER=… TRIGGER name … ON table FOR EACH ROW body`.
    fn create(&self, schema: &str, name: &str, table: &str) -> String {
        format!(
            "CREATE DEFINER={} TRIGGER {}.{} {} {} ON {table} FOR EACH ROW {}",
            quote_account(&self.definer),
            q(schema),
            q(name),
            self.timing,
            self.event,
            self.body
        )
    }

    /// The session settings the trigger was created under (it keeps them).
    fn settings(&self) -> anyhow::Result<String> {
        for v in [&self.sql_mode, &self.charset, &self.collation] {
            if !v
                .chars()
                .all(|c| c.is_ascii_alphanumeric() || c == '_' || c == ',')
            {
                return Err(anyhow::anyhow!(
                    "trigger {}: unexpected session setting {v:?}",
                    self.name
                ));
            }
        }
        Ok(format!(
            "SET SESSION sql_mode = '{}', character_set_client = {}, collation_connection = {}",
            self.sql_mode, self.charset, self.collation
        ))
    }
}

/// `user@host` as `` `user`@`host` `` (the host part is after the last `@`),
/// quoted as identifiers: string literals would depend on the trigger's `sql_mode`.
fn quote_account(account: &str) -> String {
    let (user, host) = account.rsplit_once('@').unwrap_or((account, "%"));
    format!("{}@{}", q(user), q(host))
}

/// The table's triggers in the order they fire.
pub async fn of(c: &mut Conn, schema: &str, table: &str) -> anyhow::Result<Vec<Trigger>> {
    type Row = (
        String,
        String,
        String,
        i64,
        String,
        String,
        String,
        String,
        String,
    );
    let rows: Vec<Row> = c
        .exec(
            "SELECT TRIGGER_NAME, ACTION_TIMING, EVENT_MANIPULATION, ACTION_ORDER, ACTION_STATEMENT, \
                    DEFINER, SQL_MODE, CHARACTER_SET_CLIENT, COLLATION_CONNECTION \
             FROM information_schema.TRIGGERS \
             WHERE EVENT_OBJECT_SCHEMA = ? AND EVENT_OBJECT_TABLE = ? \
             ORDER BY EVENT_MANIPULATION, ACTION_TIMING, ACTION_ORDER",
            (schema, table),
        )
        .await
        .my("reading the table's triggers")?;
    Ok(rows
        .into_iter()
        .map(
            |(name, timing, event, order, body, definer, sql_mode, charset, collation)| Trigger {
                name,
                timing,
                event,
                order,
                body,
                definer,
                sql_mode,
                charset,
                collation,
            },
        )
        .collect())
}

/// Saves the session's settings before the triggers' own replace them.
const SAVE: &str = "SET @wraith_sql_mode = @@SESSION.sql_mode, \
                    @wraith_charset = @@SESSION.character_set_client, \
                    @wraith_collation = @@SESSION.collation_connection";
const RESTORE: &str = "SET SESSION sql_mode = @wraith_sql_mode, \
                       character_set_client = @wraith_charset, \
                       collation_connection = @wraith_collation";

/// The dry run's proof that the new shape takes every trigger: each is created on
/// the scratch table `target` under a name of its own (it goes with the table).
pub async fn try_on(
    c: &mut Conn,
    names: &Names,
    target: &str,
    triggers: &[Trigger],
) -> anyhow::Result<()> {
    if triggers.is_empty() {
        return Ok(());
    }
    c.query_drop(SAVE)
        .await
        .my("saving the session's settings")?;
    let mut result = Ok(());
    for (i, t) in triggers.iter().enumerate() {
        let stem = &names.table[..names.table.len().min(48)];
        let name = format!("_{stem}_plan_trg{i}");
        let created = async {
            c.query_drop(t.settings()?).await.my("trigger settings")?;
            c.query_drop(t.create(&names.schema, &name, target))
                .await
                .map_err(|e| bad_input(refusal(t, &e)))
        }
        .await;
        if let Err(e) = created {
            result = Err(e);
            break;
        }
    }
    c.query_drop(RESTORE)
        .await
        .my("restoring the session's settings")?;
    result
}

/// A trigger whose body names a table wraith creates beside the source (the
/// shadow, the old table, the changelog) would act on wraith's tables during the
/// run or after the swap: refused, with the fix.
pub fn check_names(names: &Names, triggers: &[Trigger]) -> anyhow::Result<()> {
    for t in triggers {
        let body = t.body.to_ascii_lowercase();
        for helper in [&names.shadow, &names.old, &names.changelog] {
            if body.contains(&helper.to_ascii_lowercase()) {
                return Err(bad_input(format!(
                    "trigger {} names {}, a table wraith creates beside {} during the run (and \
                     the name the original takes after the swap): its body would act on wraith's \
                     tables. Change the trigger so it does not use that name, or drop it for the \
                     migration and create it again afterwards; nothing was created",
                    t.name,
                    q(helper),
                    names.src()
                )));
            }
        }
    }
    Ok(())
}

/// Why the trigger cannot be created on the new shape, and the fix: a privilege
/// the user lacks, or a body the new columns do not fit.
fn refusal(t: &Trigger, e: &mysql_async::Error) -> String {
    let what = format!(
        "trigger {} ({} {}): {}; nothing was created",
        t.name,
        t.timing,
        t.event,
        describe(e)
    );
    let code = match e {
        mysql_async::Error::Server(s) => s.code,
        _ => 0,
    };
    match code {
        // Access denied; you need SUPER / SET_USER_ID / SET_ANY_DEFINER.
        1227 => format!(
            "wraith cannot create {what}. The trigger's definer is {}: wraith creates it again \
             under that definer, which needs SET_ANY_DEFINER (MySQL 8.2+; SET_USER_ID before, \
             SUPER on MariaDB) — grant it to the user wraith connects as — or run wraith as {}",
            t.definer, t.definer
        ),
        // Binary logging on and no SUPER: creating triggers needs the server's trust.
        1419 => format!(
            "wraith cannot create {what}. With the binary log on, creating a trigger needs SUPER \
             or the server's log_bin_trust_function_creators = 1 (SET GLOBAL \
             log_bin_trust_function_creators = 1, or run wraith as a user with SUPER)"
        ),
        // TRIGGER command denied.
        1142 => format!(
            "wraith cannot create {what}. GRANT TRIGGER ON the table's database TO the user \
             wraith connects as"
        ),
        _ => format!(
            "the new shape cannot take {what}. Change the ALTER so the columns the trigger uses \
             keep their names, or drop the trigger for the migration and create it again afterwards"
        ),
    }
}

/// The statements that move the triggers after the RENAME: dropped from the old
/// table (which took them), created on the new one in firing order.
pub fn statements(names: &Names, triggers: &[Trigger]) -> anyhow::Result<Vec<String>> {
    if triggers.is_empty() {
        return Ok(vec![]);
    }
    let mut stmts: Vec<String> = triggers
        .iter()
        .map(|t| format!("DROP TRIGGER {}.{}", q(&names.schema), q(&t.name)))
        .collect();
    stmts.push(SAVE.to_string());
    for t in triggers {
        stmts.push(t.settings()?);
        stmts.push(t.create(&names.schema, &t.name, &names.src()));
    }
    stmts.push(RESTORE.to_string());
    Ok(stmts)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn accounts_are_quoted_at_the_last_at() {
        assert_eq!(quote_account("root@localhost"), "`root`@`localhost`");
        assert_eq!(quote_account("a@b@%"), "`a@b`@`%`");
        assert_eq!(quote_account("o`k@h"), "`o``k`@`h`");
    }
}
