//! The spec's data checks (`[[check]]`), run read-only in preflight: how many
//! source rows hold each kind of dirt and their first keys. A `refuse` check that
//! finds rows stops the run before anything is created.

use tokio_postgres::Client;

use crate::error::bad_input;
use crate::pg::catalog::Table;
use crate::pg::conn::{DbResult, describe};
use crate::pg::names::Names;
use crate::pg::sql::ident;
use crate::plan::report::{FINDING_KEYS, settle_findings};
use crate::plan::{Check, Finding};

/// Runs every check in one read-only transaction.
pub async fn run(
    c: &Client,
    names: &Names,
    table: &Table,
    checks: &[Check],
) -> anyhow::Result<Vec<Finding>> {
    if checks.is_empty() {
        return Ok(vec![]);
    }
    let key_text = match table.key.as_slice() {
        [one] => format!("{}::text", ident(one)),
        many => format!(
            "ROW({})::text",
            many.iter().map(|k| ident(k)).collect::<Vec<_>>().join(", ")
        ),
    };
    let order = table
        .key
        .iter()
        .map(|k| ident(k))
        .collect::<Vec<_>>()
        .join(", ");
    c.batch_execute("BEGIN TRANSACTION READ ONLY")
        .await
        .db("starting the data checks")?;
    let mut findings = Vec::new();
    for check in checks {
        let sql = format!(
            // The alias keeps ORDER BY on the key columns, not on their text.
            "SELECT {key_text} AS wraith_key, count(*) OVER () FROM {} WHERE ({}) ORDER BY {order} \
             LIMIT {FINDING_KEYS}",
            names.src(),
            check.rows
        );
        let rows = match c.query(&sql, &[]).await {
            Ok(rows) => rows,
            Err(e) => {
                let _ = c.batch_execute("ROLLBACK").await;
                return Err(bad_input(format!(
                    "data check {:?} of the spec failed: {}\n  its rows condition: {}",
                    check.name,
                    describe(&e),
                    check.rows
                )));
            }
        };
        findings.push(Finding {
            name: check.name.clone(),
            action: check.action,
            note: check.note.clone(),
            rows: rows.first().map_or(0, |r| r.get::<_, i64>(1) as u64),
            keys: rows.iter().map(|r| r.get(0)).collect(),
        });
    }
    c.batch_execute("ROLLBACK")
        .await
        .db("ending the data checks")?;
    settle_findings(&names.src(), findings)
}
