//! `wraith bench --scenario dependents` (MySQL/MariaDB): what moving triggers and
//! foreign keys adds to the cutover's write hold. For each N of `--dependents`
//! (default 0, 1, 5): a table `t` of `--rows` rows with N other tables whose
//! foreign keys reference it and N triggers on it, migrated idle `--runs` times
//! (a fresh database each time); the median hold per N and what it adds over the
//! first N. The hold ends when writes can reach the new table again: the orphan
//! check that follows runs with writes flowing.

use mysql_async::prelude::Queryable;

use crate::bench::child::migrate_child;
use crate::bench::mysql_workload::numbers_10k;
use crate::dsn::Dsn;
use crate::mysql::conn::{self, MyResult};

/// The scenario's migration spec: a metadata-light change of the table.
pub const SPEC: &str = "table = \"t\"\nalter = \"MODIFY note varchar(200)\"\n";

/// Creates `t` with `rows` rows, `n` tables whose keys reference it (one row
/// each) and `n` BEFORE UPDATE triggers.
pub async fn load(dsn: &Dsn, rows: i64, n: usize) -> anyhow::Result<()> {
    let mut c = conn::connect(dsn, "bench").await?;
    c.query_drop("CREATE TABLE t (id int PRIMARY KEY, v int NOT NULL, note varchar(20))")
        .await
        .my("creating the dependents scenario's table")?;
    let numbers = numbers_10k();
    let mut done = 0;
    while done < rows {
        let step = (rows - done).min(10_000);
        c.query_drop(format!(
            "INSERT INTO t SELECT {done} + n, n, 'x' FROM {numbers} d WHERE d.n <= {step}"
        ))
        .await
        .my("loading the dependents scenario's table")?;
        done += step;
    }
    for i in 1..=n {
        c.query_drop(format!(
            "CREATE TABLE child{i} (id int PRIMARY KEY, t_id int NOT NULL, \
                                    CONSTRAINT child{i}_t FOREIGN KEY (t_id) REFERENCES t (id)); \
             INSERT INTO child{i} VALUES (1, 1); \
             CREATE TRIGGER t_bu{i} BEFORE UPDATE ON t FOR EACH ROW SET NEW.v = NEW.v"
        ))
        .await
        .my("creating the dependents scenario's keys and triggers")?;
    }
    Ok(())
}

/// What one N measured.
#[derive(Debug, Clone, PartialEq)]
pub struct Measured {
    pub n: usize,
    /// Each run's cutover hold, ms.
    pub holds_ms: Vec<f64>,
}

impl Measured {
    pub fn median_ms(&self) -> f64 {
        let mut v = self.holds_ms.clone();
        v.sort_by(f64::total_cmp);
        match v.len() {
            0 => 0.0,
            len if len % 2 == 1 => v[len / 2],
            len => (v[len / 2 - 1] + v[len / 2]) / 2.0,
        }
    }
}

/// One run on the database `dsn`, loaded by [`load`] with `n`: the cutover's
/// hold, ms, once the new table is seen to have the `n` triggers and keys.
pub async fn run_once(
    wraith: Option<&std::path::Path>,
    dsn: &Dsn,
    spec_path: &str,
    n: usize,
) -> anyhow::Result<f64> {
    let child = migrate_child(wraith, dsn, spec_path, &["--drop-old".to_string()]).await?;
    let mut c = conn::connect(dsn, "bench").await?;
    let found: Option<(i64, i64)> = c
        .query_first(
            "SELECT (SELECT COUNT(*) FROM information_schema.TRIGGERS \
                     WHERE EVENT_OBJECT_SCHEMA = DATABASE() AND EVENT_OBJECT_TABLE = 't'), \
                    (SELECT COUNT(*) FROM information_schema.KEY_COLUMN_USAGE \
                     WHERE REFERENCED_TABLE_SCHEMA = DATABASE() AND REFERENCED_TABLE_NAME = 't')",
        )
        .await
        .my("counting the new table's triggers and keys")?;
    let (triggers, keys) = found.unwrap_or_default();
    if (triggers, keys) != (n as i64, n as i64) {
        anyhow::bail!(
            "bench: after the migration t has {triggers} triggers and {keys} keys referencing it, \
             not {n} each"
        );
    }
    Ok(child.summary["cutover_hold_ms"].as_f64().unwrap_or(0.0))
}

/// The report: per N, the runs, the median and what it adds over the first N.
pub fn report(measured: &[Measured], server: &str, rows: i64) -> serde_json::Value {
    let base = measured.first().map_or(0.0, Measured::median_ms);
    serde_json::json!({
        "scenario": format!("dependents: {rows} rows, N referencing tables and N triggers"),
        "server": server,
        "cutover_hold": measured.iter().map(|m| serde_json::json!({
            "n": m.n,
            "runs_ms": m.holds_ms,
            "median_ms": m.median_ms(),
            "added_ms": m.median_ms() - base,
        })).collect::<Vec<_>>(),
    })
}

/// The report as text.
pub fn print(r: &serde_json::Value) {
    println!(
        "wraith bench: {}, {}",
        r["scenario"].as_str().unwrap_or(""),
        r["server"].as_str().unwrap_or("")
    );
    println!("  N   cutover hold (median)   added   runs");
    for row in r["cutover_hold"].as_array().into_iter().flatten() {
        let runs: Vec<String> = row["runs_ms"]
            .as_array()
            .into_iter()
            .flatten()
            .map(|v| format!("{:.0}", v.as_f64().unwrap_or(0.0)))
            .collect();
        println!(
            "  {:<3} {:>12.0} ms {:>14.0} ms   {} ms",
            row["n"].as_u64().unwrap_or(0),
            row["median_ms"].as_f64().unwrap_or(0.0),
            row["added_ms"].as_f64().unwrap_or(0.0),
            runs.join(", ")
        );
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_median_of_even_and_odd_runs() {
        let m = |v: &[f64]| Measured {
            n: 0,
            holds_ms: v.to_vec(),
        };
        assert_eq!(m(&[30.0, 10.0, 20.0]).median_ms(), 20.0);
        assert_eq!(m(&[40.0, 10.0, 20.0, 30.0]).median_ms(), 25.0);
        assert_eq!(m(&[]).median_ms(), 0.0);
    }
}
