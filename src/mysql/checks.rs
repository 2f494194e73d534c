//! The spec's data checks (`[[check]]`) on MySQL/MariaDB, run read-only in
//! preflight: how many source rows hold each kind of dirt and their first keys. A
//! `refuse` check that finds rows stops the run before anything is created.

use mysql_async::Conn;
use mysql_async::prelude::Queryable;

use crate::error::bad_input;
use crate::mysql::catalog::Table;
use crate::mysql::conn::{MyResult, describe};
use crate::mysql::names::Names;
use crate::mysql::sql::q;
use crate::plan::report::{FINDING_KEYS, settle_findings};
use crate::plan::{Check, Finding};

/// Runs every check in one read-only transaction.
pub async fn run(
    c: &mut Conn,
    names: &Names,
    table: &Table,
    checks: &[Check],
) -> anyhow::Result<Vec<Finding>> {
    if checks.is_empty() {
        return Ok(vec![]);
    }
    let key_text = match table.key.as_slice() {
        [one] => format!("CAST({} AS CHAR)", q(one)),
        many => format!(
            "CONCAT('(', CONCAT_WS(',', {}), ')')",
            many.iter().map(|k| q(k)).collect::<Vec<_>>().join(", ")
        ),
    };
    let order = table
        .key
        .iter()
        .map(|k| q(k))
        .collect::<Vec<_>>()
        .join(", ");
    c.query_drop("START TRANSACTION READ ONLY")
        .await
        .my("starting the data checks")?;
    let mut findings = Vec::new();
    for check in checks {
        let sql = format!(
            "SELECT {key_text} AS wraith_key, COUNT(*) OVER () FROM {} WHERE ({}) ORDER BY {order} \
             LIMIT {FINDING_KEYS}",
            names.src(),
            check.rows
        );
        let rows: Vec<(String, i64)> = match c.query(&sql).await {
            Ok(rows) => rows,
            Err(e) => {
                let _ = c.query_drop("ROLLBACK").await;
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
            rows: rows.first().map_or(0, |(_, n)| *n as u64),
            keys: rows.into_iter().map(|(k, _)| k).collect(),
        });
    }
    c.query_drop("ROLLBACK")
        .await
        .my("ending the data checks")?;
    settle_findings(&names.src(), findings)
}
