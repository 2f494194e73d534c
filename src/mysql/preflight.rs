//! Preflight on MySQL/MariaDB: read-only checks of the server (version, binary log
//! on, ROW format, full row images, replication privileges) and of the table
//! (InnoDB, a primary key or a NOT NULL unique key, see [`crate::mysql::catalog`]).
//! Every failure is a bad-input error that names the fix.

use mysql_async::Conn;
use mysql_async::prelude::Queryable;

use mysql_async::Row;

use crate::engine::checkpoint::{self, Checkpoint, Leftover};
use crate::error::bad_input;
use crate::mysql::catalog::{self, Table};
use crate::mysql::conn::MyResult;
use crate::mysql::names::Names;
use crate::mysql::shadow::Shape;
use crate::mysql::{capture, cleanup, cutover};
use crate::plan::{BackendOptions, MigrationSpec, Plan};

/// Which server wraith talks to.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Flavor {
    MariaDb,
    MySql,
}

#[derive(Debug, Clone)]
pub struct Server {
    pub flavor: Flavor,
    /// `VERSION()`, e.g. `10.11.6-MariaDB-0+deb12u1`.
    pub version: String,
}

/// Runs every check; the first failures found are reported together per object.
pub async fn run(c: &mut Conn, schema: &str, table: &str) -> anyhow::Result<(Server, Table)> {
    let server = server_checks(c).await?;
    privileges(c).await?;
    let table = catalog::table(c, schema, table).await?;
    Ok((server, table))
}

async fn server_checks(c: &mut Conn) -> anyhow::Result<Server> {
    let (version, log_bin, format, image): (String, i64, String, String) = c
        .query_first("SELECT VERSION(), @@log_bin, @@binlog_format, @@binlog_row_image")
        .await
        .my("reading server settings")?
        .ok_or_else(|| anyhow::anyhow!("reading server settings: no row"))?;
    let flavor = if version.to_ascii_lowercase().contains("mariadb") {
        Flavor::MariaDb
    } else {
        Flavor::MySql
    };
    let numbers: Vec<u32> = version
        .split(|ch: char| !ch.is_ascii_digit())
        .take(3)
        .filter_map(|n| n.parse().ok())
        .collect();
    let at = |i: usize| numbers.get(i).copied().unwrap_or(0);
    let release = (at(0), at(1), at(2));
    // MySQL's cutover renames under LOCK TABLES in one session: 8.0.13 and later.
    let supported = match flavor {
        Flavor::MariaDb => release >= (10, 11, 0),
        Flavor::MySql => release >= (8, 0, 13),
    };
    if !supported {
        return Err(bad_input(format!(
            "server version {version} is not supported: wraith needs MariaDB 10.11 or newer, or MySQL 8.0.13 or newer"
        )));
    }
    let mut problems = Vec::new();
    if log_bin != 1 {
        problems.push(
            "the binary log is off, and wraith follows changes through it: set log_bin (for example \
             log-bin = mysql-bin) and server_id in the server's configuration, then restart"
                .to_string(),
        );
    }
    if !format.eq_ignore_ascii_case("ROW") {
        problems.push(format!(
            "binlog_format is {format} (MariaDB's default is MIXED), but wraith reads row images: \
             SET GLOBAL binlog_format = 'ROW' and put binlog_format = ROW in the configuration; \
             sessions already connected keep their format until they reconnect"
        ));
    }
    if !image.eq_ignore_ascii_case("FULL") {
        problems.push(format!(
            "binlog_row_image is {image}, but wraith needs every column in the row images: \
             SET GLOBAL binlog_row_image = 'FULL' and put binlog_row_image = FULL in the configuration"
        ));
    }
    if flavor == Flavor::MySql {
        problems.extend(mysql_stream_settings(c).await?);
    }
    if !problems.is_empty() {
        return Err(bad_input(format!(
            "the server's binary log is not usable by wraith:\n  - {}",
            problems.join("\n  - ")
        )));
    }
    Ok(Server { flavor, version })
}

/// MySQL's global setting that hides row events in compressed transaction
/// payloads. A session can still set it; the stream then stops the run before the
/// swap (see `binlog::classify`). Partial JSON updates need no check: their keys
/// are whole.
async fn mysql_stream_settings(c: &mut Conn) -> anyhow::Result<Vec<String>> {
    let mut problems = Vec::new();
    // MySQL 8.0.20 and later; an older server has no such variable.
    let compression: Option<i64> = c
        .query_first("SELECT @@GLOBAL.binlog_transaction_compression")
        .await
        .unwrap_or(None);
    if compression == Some(1) {
        problems.push(
            "binlog_transaction_compression is ON, and wraith does not read compressed \
             transactions: SET GLOBAL binlog_transaction_compression = OFF and remove it from \
             the configuration"
                .to_string(),
        );
    }
    Ok(problems)
}

/// Reading the binary log needs REPLICATION SLAVE, and its position REPLICATION
/// CLIENT (called BINLOG MONITOR on MariaDB 10.5+).
async fn privileges(c: &mut Conn) -> anyhow::Result<()> {
    let user: String = c
        .query_first("SELECT CURRENT_USER()")
        .await
        .my("reading the current user")?
        .unwrap_or_default();
    let (name, host) = user.rsplit_once('@').unwrap_or((user.as_str(), "%"));
    let grantee = format!("'{name}'@'{host}'");
    let granted: Vec<String> = c
        .exec(
            "SELECT PRIVILEGE_TYPE FROM information_schema.USER_PRIVILEGES WHERE GRANTEE = ?",
            (grantee,),
        )
        .await
        .my("reading the user's privileges")?;
    let has = |p: &str| granted.iter().any(|g| g.eq_ignore_ascii_case(p));
    let mut missing = Vec::new();
    if !has("REPLICATION SLAVE") && !has("SUPER") {
        missing.push(format!(
            "REPLICATION SLAVE (to read the binary log): GRANT REPLICATION SLAVE ON *.* TO {user}"
        ));
    }
    if !has("REPLICATION CLIENT") && !has("BINLOG MONITOR") && !has("SUPER") {
        missing.push(format!(
            "REPLICATION CLIENT / BINLOG MONITOR (to read the binary log position): \
             GRANT REPLICATION CLIENT ON *.* TO {user}"
        ));
    }
    if !missing.is_empty() {
        return Err(bad_input(format!(
            "user {user} lacks privileges wraith needs:\n  - {}",
            missing.join("\n  - ")
        )));
    }
    Ok(())
}

/// Copy and verification rate assumed for the estimate held against binary log
/// retention: conservative (`wraith bench --engine mariadb` measures over 100k rows/s).
const ASSUMED_ROWS_PER_SEC: u64 = 20_000;

/// The binary log must outlive the run: a position the stream (or a `--resume`
/// run's checkpoint) still needs must not be purged. Compares the server's
/// retention with an estimate of the run; a `--resume` run that could outlive it
/// is refused, any other run warned (the warning, for the plan).
pub async fn binlog_retention(
    c: &mut Conn,
    estimated_rows: u64,
    resume: bool,
) -> anyhow::Result<Option<String>> {
    let estimate = (estimated_rows / ASSUMED_ROWS_PER_SEC).max(1) * 2 + 60;
    let mut kept: Vec<(u64, String, &str)> = Vec::new();
    // Each server has one or both (MariaDB keeps them in step; MySQL 8 lets the
    // seconds win when set); one it lacks is simply not there.
    let secs: u64 = c
        .query_first("SELECT @@binlog_expire_logs_seconds")
        .await
        .ok()
        .flatten()
        .unwrap_or(0);
    let days: f64 = c
        .query_first("SELECT @@expire_logs_days")
        .await
        .ok()
        .flatten()
        .unwrap_or(0.0);
    if secs > 0 {
        kept.push((
            secs,
            format!("binlog_expire_logs_seconds = {secs}"),
            "SET PERSIST binlog_expire_logs_seconds = 86400 (SET GLOBAL on MariaDB)",
        ));
    } else if days > 0.0 {
        kept.push((
            (days * 86400.0) as u64,
            format!("expire_logs_days = {days}"),
            "SET GLOBAL expire_logs_days = 1 (or more)",
        ));
    }
    let rds: Option<i64> = c
        .query_first(
            "SELECT COUNT(*) FROM information_schema.ROUTINES WHERE ROUTINE_SCHEMA = 'mysql' \
             AND ROUTINE_NAME = 'rds_show_configuration'",
        )
        .await
        .my("looking for RDS's configuration procedure")?;
    if rds.unwrap_or(0) > 0 {
        let rows: Vec<mysql_async::Row> = c
            .query("CALL mysql.rds_show_configuration")
            .await
            .my("reading RDS's configuration")?;
        let hours = rows.iter().find_map(|r| {
            (r.get::<String, _>(0).as_deref() == Some("binlog retention hours"))
                .then(|| r.get::<Option<String>, _>(1).flatten())
        });
        let fix = "CALL mysql.rds_set_configuration('binlog retention hours', 24)";
        match hours.flatten().and_then(|h| h.parse::<u64>().ok()) {
            Some(h) => kept.push((h * 3600, format!("RDS binlog retention hours = {h}"), fix)),
            // Unset, RDS purges binary logs as soon as it can: nothing is kept for sure.
            None => kept.push((0, "RDS binlog retention hours = NULL".into(), fix)),
        }
    }
    let Some((secs, setting, fix)) = kept.into_iter().min_by_key(|k| k.0) else {
        return Ok(None);
    };
    if secs >= estimate {
        return Ok(None);
    }
    let msg = format!(
        "the server keeps binary logs for {secs} s ({setting}), and this run of about \
         {estimated_rows} rows may take {estimate} s or more: {fix}"
    );
    if resume {
        return Err(bad_input(format!(
            "{msg}. A --resume run continues from its binary log position, which would be purged \
             meanwhile"
        )));
    }
    Ok(Some(msg))
}

/// The dry-run plan: what a real run creates, copies, applies and swaps.
pub fn plan(
    spec: &MigrationSpec,
    opts: &BackendOptions,
    names: &Names,
    server: &Server,
    table: &Table,
    shape: &Shape,
) -> anyhow::Result<Plan> {
    let n = names;
    let mut cutover_steps = vec![format!(
        "{}, with --cutover-lock-timeout {:?} (cancelled at the deadline, retried with backoff)",
        cutover::lock_tables(n, server.flavor == Flavor::MariaDb, table),
        opts.cutover_lock_timeout
    )];
    cutover_steps.push(format!(
        "a fence row into {} from another session; the stream is read up to it and the last keys applied",
        n.changelog_q()
    ));
    match server.flavor {
        Flavor::MariaDb => {
            cutover_steps.insert(0, cutover::create_sentry(n));
            cutover_steps.push(format!(
                "another session: {} (waits behind the lock)",
                cutover::rename(n)
            ));
            cutover_steps.push(format!(
                "DROP TABLE {} (the sentry); UNLOCK TABLES: the RENAME runs first",
                n.old_q()
            ));
        }
        Flavor::MySql => {
            cutover_steps.push(format!("{}; UNLOCK TABLES", cutover::rename(n)));
        }
    }
    let moves = cutover::moves(n, table)?;
    if !moves.is_empty() {
        // Before the UNLOCK TABLES of the RENAME's step.
        let unlock = cutover_steps.pop().unwrap_or_default();
        let children = table.children();
        let altered = if children.is_empty() {
            String::new()
        } else {
            format!(
                "; the tables whose foreign keys reference it, {}, are write-locked with it and \
                 their keys re-pointed",
                children.join(", ")
            )
        };
        cutover_steps.push(format!(
            "{}, then under the same lock the triggers and foreign keys move to the new table \
             (foreign_key_checks = 0: metadata only{altered}): {}; UNLOCK TABLES; then a read-only \
             check for child rows without a parent",
            unlock.trim_end_matches("; UNLOCK TABLES"),
            moves.join("; ")
        ));
    }
    Ok(Plan {
        target: format!("{}.{}", n.schema, n.table),
        server: format!("{:?} {}", server.flavor, server.version),
        estimated_rows: table.estimated_rows,
        key_columns: table.key.clone(),
        source_steps: vec![
            format!(
                "CREATE TABLE {} (id int PRIMARY KEY, value longtext) (heartbeats, fences, checkpoints)",
                n.changelog_q()
            ),
            "SHOW MASTER STATUS, then a binary log stream from that position".into(),
        ],
        shadow_ddl: spec
            .prepare
            .iter()
            .map(|stmt| {
                format!(
                    "{stmt} -- the spec's prepare: run first by --execute (DDL commits at once \
                     here, so the dry run does not run it)"
                )
            })
            .chain(shape.ddl.iter().cloned())
            .collect(),
        mapping: shape.mapping.clone(),
        copy_sql: shape.sql.copy(true),
        apply_sql: vec![shape.sql.apply_delete(1), shape.sql.apply_insert(1)],
        cutover_steps,
        fingerprint: spec.fingerprint(),
        ..Plan::default()
    })
}

/// Tables an earlier run left, when they are wraith's (the changelog marks them):
/// an interrupted `--resume` run is continued under `--resume` and refused
/// without it; anything else a real run removes. Someone else's are refused.
pub async fn leftovers(
    c: &mut Conn,
    spec: &MigrationSpec,
    opts: &BackendOptions,
    names: &Names,
) -> anyhow::Result<(Vec<String>, Option<Checkpoint>)> {
    let n = names;
    let present = catalog::existing(c, &n.schema, &[&n.shadow, &n.old, &n.changelog]).await?;
    let has = |t: &str| present.iter().any(|(name, _)| name == t);
    let ours = has(&n.changelog);
    let mut warnings = Vec::new();
    if let Some((_, comment)) = present.iter().find(|(t, _)| *t == n.old)
        && comment != cutover::SENTRY_COMMENT
    {
        if ours && cutover::Recorded::left(c, n).await?.is_some() {
            return Err(bad_input(format!(
                "an earlier run swapped {} but stopped before its triggers and foreign keys moved \
                 from {}: run `wraith cleanup --table {}` to move them (it names what it ran)",
                n.src(),
                n.old_q(),
                n.table
            )));
        }
        return Err(bad_input(format!(
            "table {} exists (the old table of an earlier migration?): wraith keeps the original \
             under that name after the swap. Drop or rename it first",
            n.old_q()
        )));
    }
    if has(&n.shadow) && !ours {
        return Err(bad_input(format!(
            "table {} exists and is not wraith's (no {} beside it): drop or rename it first",
            n.shadow_q(),
            n.changelog_q()
        )));
    }
    if !ours {
        return Ok((warnings, None));
    }
    let mut found = vec![format!("changelog table {}", n.changelog_q())];
    if has(&n.shadow) {
        found.push(format!("shadow table {}", n.shadow_q()));
    }
    let saved: Option<String> = c
        .exec_first(
            format!("SELECT value FROM {} WHERE id = ?", n.changelog_q()),
            (capture::CHECKPOINT_ID,),
        )
        .await
        .my("reading the earlier run's checkpoint")?;
    // Only a resumable run's binary log needs to be still there.
    let resumable = saved
        .as_deref()
        .and_then(|s| serde_json::from_str::<Checkpoint>(s).ok())
        .filter(|cp| cp.resumable);
    let stream_gone = match resumable
        .and_then(|cp| cp.position)
        .and_then(|p| capture::parse_position(&p))
    {
        _ if !has(&n.shadow) => Some("its shadow table is gone".to_string()),
        None => Some("its checkpoint holds no binary log position".to_string()),
        Some((file, _)) => {
            let logs: Vec<Row> = c
                .query("SHOW BINARY LOGS")
                .await
                .my("listing binary logs")?;
            let kept = logs
                .iter()
                .any(|r| r.get::<String, _>(0).as_deref() == Some(file.as_str()));
            (!kept).then(|| format!("binary log {file} was purged"))
        }
    };
    let left = Leftover {
        found,
        checkpoint: saved,
        stream_gone,
    };
    let remove = async || cleanup::remove(c, n, false).await;
    let settled = checkpoint::settle(left, spec, opts, &n.src(), remove).await?;
    warnings.extend(settled.warning);
    Ok((warnings, settled.resume))
}
