//! `wraith bench` on MySQL/MariaDB: the orders scenario's data, the mirror check,
//! and the two baselines a DBA compares with: the change as an offline
//! `ALTER TABLE ... ALGORITHM=COPY`, and the same ALTER run by
//! pt-online-schema-change (Percona Toolkit), on identical data.

use std::time::{Duration, Instant};

use anyhow::Context;
use mysql_async::prelude::Queryable;

use crate::bench::mysql_workload;
use crate::dsn::Dsn;
use crate::error::bad_input;
use crate::mysql::conn::{self, MyResult, describe};
use crate::mysql::sql::q;
use crate::scenario::orders_mysql;

/// The pt-online-schema-change binary.
pub const PT_OSC: &str = "pt-online-schema-change";

/// Drops and creates database `db` through `dsn`.
pub async fn create_database(dsn: &Dsn, db: &str) -> anyhow::Result<()> {
    let mut c = conn::connect(dsn, "bench").await?;
    for stmt in [
        format!("DROP DATABASE IF EXISTS {}", q(db)),
        format!("CREATE DATABASE {}", q(db)),
    ] {
        c.query_drop(&stmt).await.map_err(|e| {
            bad_input(format!(
                "bench: cannot create database {db} on {dsn}: {} (does the account have CREATE and DROP?)",
                describe(&e)
            ))
        })?;
    }
    Ok(())
}

/// Drops database `db` through `dsn`, logging a failure.
pub async fn drop_database(dsn: &Dsn, db: &str) {
    let dropped = match conn::connect(dsn, "bench").await {
        Ok(mut c) => c
            .query_drop(format!("DROP DATABASE IF EXISTS {}", q(db)))
            .await
            .map_err(|e| describe(&e)),
        Err(e) => Err(e.to_string()),
    };
    if let Err(e) = dropped {
        tracing::warn!("bench: could not drop database {db}: {e}");
    }
}

/// Loads the orders scenario (and its mirror when `mirror`) and returns the
/// size of the orders table's data in bytes.
pub async fn load_orders(dsn: &Dsn, rows: i64, mirror: bool) -> anyhow::Result<u64> {
    let mut c = conn::connect(dsn, "bench").await?;
    orders_mysql::load(&mut c, rows, 1).await?;
    if mirror {
        orders_mysql::create_mirror(&mut c).await?;
    }
    let bytes: Option<u64> = c
        .query_first(
            "SELECT DATA_LENGTH FROM information_schema.TABLES \
             WHERE TABLE_SCHEMA = DATABASE() AND TABLE_NAME = 'orders'",
        )
        .await
        .my("measuring the table")?;
    Ok(bytes.unwrap_or(0))
}

/// Rows of the migrated orders that differ from the mirror.
pub async fn diff_orders(dsn: &Dsn) -> anyhow::Result<i64> {
    let mut c = conn::connect(dsn, "bench").await?;
    let differing =
        mysql_workload::diff(&mut c, orders_mysql::EXPECTED, orders_mysql::ACTUAL).await?;
    Ok(differing.len() as i64)
}

/// The spec's ALTER as one offline `ALTER TABLE ... ALGORITHM=COPY`.
pub async fn offline_copy(dsn: &Dsn, table: &str, alter: &str) -> anyhow::Result<Duration> {
    let mut c = conn::connect(dsn, "bench").await?;
    let t = Instant::now();
    c.query_drop(format!("ALTER TABLE {} {alter}, ALGORITHM=COPY", q(table)))
        .await
        .my("offline ALTER TABLE ... ALGORITHM=COPY")?;
    Ok(t.elapsed())
}

/// Whether pt-online-schema-change can be run.
pub fn pt_osc_installed() -> bool {
    std::process::Command::new(PT_OSC)
        .arg("--version")
        .stdout(std::process::Stdio::null())
        .stderr(std::process::Stdio::null())
        .status()
        .is_ok_and(|s| s.success())
}

/// The ALTER run by pt-online-schema-change with its defaults (chunks of about
/// half a second, triggers, an atomic RENAME), on database `dsn`'s `table`.
pub async fn pt_osc(dsn: &Dsn, table: &str, alter: &str) -> anyhow::Result<Duration> {
    let mut target = format!(
        "h={},P={},u={},D={},t={table}",
        dsn.host(),
        dsn.port(),
        dsn.user().unwrap_or("root"),
        dsn.database().unwrap_or_default(),
    );
    // The password goes through an option file, not the command line `ps` shows.
    let defaults = tempfile::NamedTempFile::new().context("writing pt-osc's option file")?;
    if let Some(password) = dsn.password() {
        std::fs::write(defaults.path(), format!("[client]\npassword={password}\n"))
            .context("writing pt-osc's option file")?;
        target.push_str(&format!(",F={}", defaults.path().display()));
    }
    let mut cmd = tokio::process::Command::new(PT_OSC);
    // pt-osc wants the ALTER on one line without `ALTER TABLE`.
    let alter = alter.split_whitespace().collect::<Vec<_>>().join(" ");
    let t = Instant::now();
    let out = cmd
        .args([
            "--alter",
            &alter,
            "--execute",
            "--recursion-method=none",
            "--no-check-alter",
            &target,
        ])
        .output()
        .await
        .with_context(|| format!("starting {PT_OSC}"))?;
    let took = t.elapsed();
    if !out.status.success() {
        anyhow::bail!(
            "{PT_OSC} failed ({}):\n{}{}",
            out.status,
            String::from_utf8_lossy(&out.stdout),
            String::from_utf8_lossy(&out.stderr)
        );
    }
    Ok(took)
}
