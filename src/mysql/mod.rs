//! The MySQL/MariaDB engine: implements [`Backend`] with a binary log stream for
//! capture, locking re-reads for the apply and a RENAME for the cutover.
//!
//! Sessions: `ctrl` (preflight, the run lock, DDL, the cutover's `LOCK TABLES`
//! and the apply under it), `copy`, `apply`, `beat` (heartbeats and fences into
//! the changelog table), `killer` (cancels lock waits at their deadline, watches
//! the queued RENAME), `renamer` (MariaDB's cutover) and the binary log stream.
//!
//! Where things are: [`preflight`], [`shadow`], [`capture`] + [`binlog`],
//! [`rows`] (copy and apply), [`verify`], [`cutover`]; connections in [`conn`].

pub mod binlog;
pub mod capture;
pub mod conn;
pub mod cutover;
pub mod definition;
pub mod names;
pub mod preflight;
pub mod rows;
pub mod shadow;
pub mod signals;
pub mod verify;

use std::sync::OnceLock;
use std::sync::atomic::{AtomicBool, Ordering::Relaxed};
use std::time::Duration;

use mysql_async::prelude::Queryable;
use mysql_async::{Conn, Row};
use tokio::sync::{MappedMutexGuard, Mutex, MutexGuard};

use crate::engine::checkpoint::{self, Checkpoint, Decision, Leftover};
use crate::engine::{Applied, ApplyOn, Backend, ChangeBatch, Copied, Key, KeyRange};
use crate::error::bad_input;
use crate::plan::alter::{self, AlterText};
use crate::plan::{MigrationSpec, Plan};
use crate::verify as verify_api;
use conn::MyResult;
use names::Names;
use preflight::{Flavor, Server, Table};
use shadow::Shape;

/// The copy's default target chunk time here: a chunk's shared locks on the
/// source rows make the application's writes to them wait until it commits, so
/// chunks stay short (measured with `wraith bench --engine mariadb`: at 1000 tx/s
/// the longest write wait during the copy fell from about 600 ms to about 70 ms
/// going from 500 ms to 100 ms, at the same copy rate).
pub const DEFAULT_CHUNK_TIME: Duration = Duration::from_millis(100);

type Slot = Mutex<Option<Conn>>;

#[derive(Default)]
struct Sessions {
    ctrl: Slot,
    copy: Slot,
    apply: Slot,
    beat: Slot,
    killer: Slot,
    renamer: Slot,
}

pub struct MyBackend {
    spec: MigrationSpec,
    names: Names,
    alter: AlterText,
    s: Sessions,
    server: OnceLock<Server>,
    table: OnceLock<Table>,
    /// The table's definition as preflight read it: the swap happens only over it.
    definition: OnceLock<crate::engine::definition::Definition>,
    /// Foreign keys from other databases to the table, as preflight read them.
    referenced_from: OnceLock<crate::engine::definition::Definition>,
    shape: OnceLock<Shape>,
    reader: OnceLock<capture::Reader>,
    verifier: OnceLock<verify::Verifier>,
    /// The changelog (and so possibly the shadow) exists: cleanup removes them.
    created: AtomicBool,
    /// The interrupted run this one continues.
    resume: OnceLock<Checkpoint>,
}

async fn take<'a>(slot: &'a Slot, name: &str) -> anyhow::Result<MappedMutexGuard<'a, Conn>> {
    MutexGuard::try_map(slot.lock().await, |c| c.as_mut())
        .map_err(|_| anyhow::anyhow!("the {name} session is closed"))
}

/// The database the DSN or the table name points at.
pub fn schema_of(spec: &MigrationSpec) -> anyhow::Result<String> {
    let from_dsn = conn::opts(&spec.dsn)?.db_name().map(str::to_string);
    spec.schema.clone().or(from_dsn).ok_or_else(|| {
        bad_input("name the database in the connection string (mysql://user@host/db) or the table as db.table")
    })
}

impl MyBackend {
    /// Validates the spec and opens the control session.
    pub async fn connect(spec: MigrationSpec) -> anyhow::Result<MyBackend> {
        let schema = schema_of(&spec)?;
        let names = Names::new(&schema, &spec.table)?;
        let alter = alter::parse(&spec.alter, &spec.table)?;
        if !spec.prepare.is_empty() || !spec.shadow_statements.is_empty() || !spec.checks.is_empty()
        {
            return Err(bad_input(
                "the spec's prepare, shadow statements and data checks are PostgreSQL-only in this version; \
                 remove them for a MySQL/MariaDB run",
            ));
        }
        let ctrl = conn::connect(&spec.dsn, "control").await?;
        Ok(MyBackend {
            spec,
            names,
            alter,
            s: Sessions {
                ctrl: Mutex::new(Some(ctrl)),
                ..Sessions::default()
            },
            server: OnceLock::new(),
            table: OnceLock::new(),
            definition: OnceLock::new(),
            referenced_from: OnceLock::new(),
            shape: OnceLock::new(),
            reader: OnceLock::new(),
            verifier: OnceLock::new(),
            created: AtomicBool::new(false),
            resume: OnceLock::new(),
        })
    }

    fn shape(&self) -> anyhow::Result<&Shape> {
        self.shape
            .get()
            .ok_or_else(|| anyhow::anyhow!("the shadow table is not prepared"))
    }

    fn flavor(&self) -> Flavor {
        self.server
            .get()
            .map(|s| s.flavor)
            .unwrap_or(Flavor::MariaDb)
    }

    fn verifier(&self) -> anyhow::Result<&verify::Verifier> {
        self.verifier
            .get()
            .ok_or_else(|| anyhow::anyhow!("the shadow table is not prepared"))
    }

    async fn lock(&self, sql: &str, timeout: Duration) -> anyhow::Result<bool> {
        let mut ctrl = take(&self.s.ctrl, "control").await?;
        let mut killer = take(&self.s.killer, "killer").await?;
        cutover::lock_within(&mut ctrl, &mut killer, sql, timeout).await
    }

    fn plan(&self, server: &Server, table: &Table, shape: &Shape) -> Plan {
        let n = &self.names;
        let mut cutover_steps = vec![format!(
            "{}, with --cutover-lock-timeout {:?} (cancelled at the deadline, retried with backoff)",
            cutover::lock_tables(n, server.flavor == Flavor::MariaDb),
            self.spec.options.cutover_lock_timeout
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
        Plan {
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
            shadow_ddl: shape.ddl.clone(),
            mapping: shape.mapping.clone(),
            copy_sql: shape.sql.copy(true),
            apply_sql: vec![shape.sql.apply_delete(1), shape.sql.apply_insert(1)],
            cutover_steps,
            fingerprint: self.spec.fingerprint(),
            ..Plan::default()
        }
    }

    /// Tables an earlier run left, when they are wraith's (the changelog marks them):
    /// an interrupted `--resume` run is continued under `--resume` and refused
    /// without it; anything else a real run removes. Someone else's are refused.
    async fn leftovers(&self, c: &mut Conn) -> anyhow::Result<(Vec<String>, Option<Checkpoint>)> {
        let n = &self.names;
        let present: Vec<(String, String)> = c
            .exec(
                "SELECT TABLE_NAME, TABLE_COMMENT FROM information_schema.TABLES \
                 WHERE TABLE_SCHEMA = ? AND TABLE_NAME IN (?, ?, ?)",
                (&n.schema, &n.shadow, &n.old, &n.changelog),
            )
            .await
            .my("looking for an earlier run's tables")?;
        let has = |t: &str| present.iter().any(|(name, _)| name == t);
        let ours = has(&n.changelog);
        let mut warnings = Vec::new();
        if let Some((_, comment)) = present.iter().find(|(t, _)| *t == n.old)
            && comment != cutover::SENTRY_COMMENT
        {
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
        let opts = &self.spec.options;
        match checkpoint::decide(
            left,
            opts,
            &self.spec.fingerprint(),
            &n.src(),
            &self.spec.dsn,
        )? {
            Decision::Fresh => Ok((warnings, None)),
            Decision::Resume(cp) => {
                warnings.push(format!(
                    "an interrupted migration is waiting to be resumed ({}): --execute --resume continues it",
                    cp.describe()
                ));
                Ok((warnings, Some(cp)))
            }
            Decision::StartOver(what) if opts.execute => {
                remove(c, n, false).await?;
                tracing::warn!(
                    "removed the tables of an earlier wraith run on {}; starting over ({what})",
                    n.src()
                );
                Ok((warnings, None))
            }
            Decision::StartOver(what) => {
                warnings.push(format!(
                    "an earlier wraith run left {what}: a real run removes them first"
                ));
                Ok((warnings, None))
            }
        }
    }
}

/// Drops the changelog, the shadow and a sentry. A shadow kept for inspection
/// (`keep_shadow`) keeps its changelog too: that marks it as wraith's, so that
/// `wraith cleanup` and the next run may remove it.
async fn remove(c: &mut Conn, n: &Names, keep_shadow: bool) -> anyhow::Result<Vec<String>> {
    let mut removed = Vec::new();
    let present: Vec<String> = c
        .exec(
            "SELECT TABLE_NAME FROM information_schema.TABLES WHERE TABLE_SCHEMA = ? AND TABLE_NAME IN (?, ?)",
            (&n.schema, &n.shadow, &n.changelog),
        )
        .await
        .my("cleanup: listing wraith's tables")?;
    if !keep_shadow && present.contains(&n.shadow) {
        c.query_drop(format!("DROP TABLE IF EXISTS {}", n.shadow_q()))
            .await
            .my("cleanup: dropping the shadow table")?;
        removed.push(n.shadow_q());
    }
    if present.contains(&n.changelog) && !(keep_shadow && present.contains(&n.shadow)) {
        c.query_drop(format!("DROP TABLE IF EXISTS {}", n.changelog_q()))
            .await
            .my("cleanup: dropping the changelog table")?;
        removed.push(n.changelog_q());
    }
    cutover::drop_sentry(c, n).await?;
    Ok(removed)
}

/// Key columns must round-trip as text through the binary log and SQL parameters.
fn check_key_types(table: &Table, name: &str) -> anyhow::Result<()> {
    for k in &table.key {
        let t = table
            .columns
            .iter()
            .find(|(c, _)| c == k)
            .map(|(_, t)| t.to_ascii_lowercase())
            .unwrap_or_default();
        let base = t.split(['(', ' ']).next().unwrap_or_default();
        let ok = matches!(
            base,
            "tinyint"
                | "smallint"
                | "mediumint"
                | "int"
                | "integer"
                | "bigint"
                | "decimal"
                | "char"
                | "varchar"
                | "date"
                | "datetime"
        );
        if !ok {
            return Err(bad_input(format!(
                "key column {k} of {name} has type {t}: wraith's MySQL engine supports integer, DECIMAL, \
                 CHAR/VARCHAR, DATE and DATETIME keys"
            )));
        }
    }
    Ok(())
}

impl Backend for MyBackend {
    type Signals = signals::MySignals;

    async fn signals(&self, replica_dsns: Vec<String>) -> anyhow::Result<signals::MySignals> {
        signals::MySignals::open(&self.spec.dsn, &replica_dsns, self.names.clone()).await
    }

    async fn preflight(&self) -> anyhow::Result<Plan> {
        let mut ctrl = take(&self.s.ctrl, "control").await?;
        let lock = self.names.run_lock();
        let got: Option<i64> = ctrl
            .exec_first("SELECT GET_LOCK(?, 0)", (&lock,))
            .await
            .my("taking the run lock")?;
        if got != Some(1) {
            let holder: Option<Option<u64>> = ctrl
                .exec_first("SELECT IS_USED_LOCK(?)", (&lock,))
                .await
                .my("reading the run lock")?;
            return Err(bad_input(format!(
                "another wraith run (connection id {}) is migrating {}; wait for it or stop it",
                holder
                    .flatten()
                    .map(|h| h.to_string())
                    .unwrap_or("?".into()),
                self.names.src()
            )));
        }
        let (server, table) =
            preflight::run(&mut ctrl, &self.names.schema, &self.names.table).await?;
        check_key_types(&table, &self.names.src())?;
        let _ = self
            .definition
            .set(definition::read(&mut ctrl, &self.names).await?);
        let _ = self
            .referenced_from
            .set(definition::read_other_databases(&mut ctrl, &self.names).await?);
        let (warnings, resume) = self.leftovers(&mut ctrl).await?;
        let shape = shadow::build(
            &mut ctrl,
            &self.names,
            &table,
            &self.alter,
            &self.spec,
            shadow::On::Temporary,
        )
        .await?;
        let mut plan = self.plan(&server, &table, &shape);
        plan.warnings = warnings;
        if shape.key_order_differs {
            plan.warnings.push(
                "the ALTER changes the collation of a key column, so the two tables sort keys \
                 differently: verification compares them in one range instead of many in parallel"
                    .to_string(),
            );
        }
        if let Some(cp) = resume {
            checkpoint::check_shape(&cp, &plan, &self.names.src())?;
            if self.spec.options.execute {
                // The interrupted run's shadow has this shape: its statements serve.
                let _ = self.resume.set(cp);
                let _ = self.shape.set(shape);
            }
        }
        let _ = self.server.set(server);
        let _ = self.table.set(table);
        Ok(plan)
    }

    fn resuming(&self) -> Option<Checkpoint> {
        self.resume.get().cloned()
    }

    async fn save_checkpoint(&self, state: String) -> anyhow::Result<()> {
        self.changelog(capture::CHECKPOINT_ID, state).await
    }

    async fn close(&self) {
        for slot in [
            &self.s.copy,
            &self.s.apply,
            &self.s.beat,
            &self.s.killer,
            &self.s.renamer,
            &self.s.ctrl,
        ] {
            if let Some(c) = slot.lock().await.take() {
                let _ = c.disconnect().await;
            }
        }
        if let Some(v) = self.verifier.get() {
            v.close().await;
        }
    }

    async fn prepare(&self) -> anyhow::Result<Option<String>> {
        let dsn = &self.spec.dsn;
        let table = self
            .table
            .get()
            .ok_or_else(|| anyhow::anyhow!("preflight has not run"))?;
        *self.s.copy.lock().await = Some(conn::connect(dsn, "copy").await?);
        *self.s.apply.lock().await = Some(conn::connect(dsn, "apply").await?);
        *self.s.beat.lock().await = Some(conn::connect(dsn, "heartbeat").await?);
        *self.s.killer.lock().await = Some(conn::connect(dsn, "cutover watch").await?);
        if self.flavor() == Flavor::MariaDb {
            *self.s.renamer.lock().await = Some(conn::connect(dsn, "rename").await?);
        }
        let stream_conn = conn::connect(dsn, "binlog stream").await?;
        let mut ctrl = take(&self.s.ctrl, "control").await?;
        let n = &self.names;
        self.created.store(true, Relaxed);
        let layout = capture::KeyLayout::new(&table.columns, &table.key)?;
        if let Some(cp) = self.resume.get() {
            let from = cp.position.as_deref().and_then(capture::parse_position);
            let reader = capture::start(&mut ctrl, stream_conn, n, layout, from).await?;
            let _ = self.reader.set(reader);
            self.set_verifier(self.shape()?);
            return Ok(cp.position.clone());
        }
        ctrl.query_drop(format!(
            "CREATE TABLE {} (id int PRIMARY KEY, value longtext NOT NULL) ENGINE=InnoDB \
             COMMENT='wraith changelog for {}'",
            n.changelog_q(),
            n.table.replace('\'', "''")
        ))
        .await
        .my("creating the changelog table")?;
        ctrl.exec_drop(
            format!("INSERT INTO {} (id, value) VALUES (?, ?)", n.changelog_q()),
            (
                capture::OWNER_ID,
                format!("wraith pid {}", std::process::id()),
            ),
        )
        .await
        .my("marking the changelog table")?;
        // The change source first (DESIGN 2.A), then the shadow.
        let reader = capture::start(&mut ctrl, stream_conn, n, layout, None).await?;
        tracing::debug!(file = %reader.start.0, pos = reader.start.1, "binary log stream started");
        let start = format!("{}:{}", reader.start.0, reader.start.1);
        let _ = self.reader.set(reader);
        let shape = shadow::build(
            &mut ctrl,
            n,
            table,
            &self.alter,
            &self.spec,
            shadow::On::Shadow,
        )
        .await?;
        self.set_verifier(&shape);
        let _ = self.shape.set(shape);
        Ok(Some(start))
    }

    async fn copy_end(&self) -> anyhow::Result<Option<Key>> {
        let sql = &self.shape()?.sql;
        rows::last_key(&mut *take(&self.s.copy, "copy").await?, sql).await
    }

    async fn next_chunk(
        &self,
        after: Option<Key>,
        end: Key,
        rows: u64,
    ) -> anyhow::Result<KeyRange> {
        let sql = &self.shape()?.sql;
        let mut c = take(&self.s.copy, "copy").await?;
        rows::next_chunk(&mut c, sql, after.as_ref(), &end, rows).await
    }

    async fn copy_range(&self, range: KeyRange) -> anyhow::Result<Copied> {
        let sql = &self.shape()?.sql;
        rows::copy_range(&mut *take(&self.s.copy, "copy").await?, sql, &range).await
    }

    async fn poll_changes(&self, max_events: u64) -> anyhow::Result<ChangeBatch> {
        self.reader
            .get()
            .ok_or_else(|| anyhow::anyhow!("change capture has not started"))?
            .poll(max_events)
            .await
    }

    async fn apply_keys(
        &self,
        keys: Vec<Key>,
        on: ApplyOn,
        _in_flight: Vec<KeyRange>,
    ) -> anyhow::Result<Applied> {
        // Copy chunks read with locking reads, so none is ever stale: nothing is held (2.C).
        let sql = &self.shape()?.sql;
        let n = keys.len() as u64;
        if !keys.is_empty() {
            match on {
                ApplyOn::Worker => {
                    rows::apply_keys(&mut *take(&self.s.apply, "apply").await?, sql, &keys, false)
                        .await?
                }
                ApplyOn::Cutover => {
                    rows::apply_keys(&mut *take(&self.s.ctrl, "control").await?, sql, &keys, true)
                        .await?
                }
            }
        }
        Ok(Applied {
            keys: n,
            held: Vec::new(),
        })
    }

    async fn confirm(&self, _position: String) -> anyhow::Result<()> {
        // The stream lives in this process and polls carry no position: nothing to advance.
        Ok(())
    }

    async fn before_cutover(&self) -> anyhow::Result<()> {
        let mut ctrl = take(&self.s.ctrl, "control").await?;
        let shadow = self.names.shadow_q();
        let deferred = &self.shape()?.deferred_indexes;
        if !deferred.is_empty() {
            // A resumed run may find them built by the interrupted one.
            let present = shadow::indexes(&mut ctrl, &shadow).await?;
            let missing: Vec<(String, String)> = deferred
                .iter()
                .filter(|(name, _)| !present.iter().any(|i| i.name == *name))
                .cloned()
                .collect();
            if !missing.is_empty() {
                let add = shadow::add_deferred(&self.names, &missing);
                tracing::info!(statement = %add, "building the secondary indexes");
                ctrl.query_drop(&add).await.map_err(|e| {
                    conn::error(
                        &e,
                        format!(
                            "building the secondary indexes of {shadow}: {}; nothing was swapped",
                            conn::describe(&e)
                        ),
                    )
                })?;
            }
        }
        ctrl.query_drop(format!("ANALYZE TABLE {shadow}"))
            .await
            .my("analyzing the shadow table")
    }

    async fn lock_for_cutover(&self, timeout: Duration) -> anyhow::Result<bool> {
        if let Some(before) = self.referenced_from.get() {
            let mut ctrl = take(&self.s.ctrl, "control").await?;
            let now = definition::read_other_databases(&mut ctrl, &self.names).await?;
            before.ensure_unchanged(&now, &self.names.src())?;
        }
        let sentry = self.flavor() == Flavor::MariaDb;
        if sentry {
            take(&self.s.ctrl, "control")
                .await?
                .query_drop(cutover::create_sentry(&self.names))
                .await
                .my("cutover: creating the sentry table")?;
        }
        let granted = self
            .lock(&cutover::lock_tables(&self.names, sentry), timeout)
            .await?;
        if !granted && sentry {
            cutover::drop_sentry(&mut *take(&self.s.ctrl, "control").await?, &self.names).await?;
        }
        Ok(granted)
    }

    async fn lock_writes(&self, timeout: Duration) -> anyhow::Result<bool> {
        self.lock(&format!("LOCK TABLES {} READ", self.names.src()), timeout)
            .await
    }

    async fn heartbeat(&self, sent_unix_us: i64) -> anyhow::Result<()> {
        self.changelog(capture::HEARTBEAT_ID, sent_unix_us.to_string())
            .await
    }

    async fn emit_fence(&self, id: String) -> anyhow::Result<()> {
        self.changelog(capture::FENCE_ID, id).await
    }

    async fn swap(&self) -> anyhow::Result<()> {
        // The lock keeps other sessions' DDL out: the definition must still be the one
        // the shadow was built from (read on a session outside LOCK TABLES).
        let before = self
            .definition
            .get()
            .ok_or_else(|| anyhow::anyhow!("preflight has not run"))?;
        let now =
            definition::read(&mut *take(&self.s.killer, "killer").await?, &self.names).await?;
        before.ensure_unchanged(&now, &self.names.src())?;
        let mut ctrl = take(&self.s.ctrl, "control").await?;
        match self.flavor() {
            Flavor::MariaDb => {
                let renamer = self
                    .s
                    .renamer
                    .lock()
                    .await
                    .take()
                    .ok_or_else(|| anyhow::anyhow!("the rename session is closed"))?;
                let mut killer = take(&self.s.killer, "killer").await?;
                let (result, renamer) =
                    cutover::swap_with_sentry(&mut ctrl, renamer, &mut killer, &self.names).await;
                *self.s.renamer.lock().await = renamer;
                result?;
            }
            Flavor::MySql => {
                ctrl.query_drop(cutover::rename(&self.names))
                    .await
                    .my("cutover: renaming the tables")?;
                ctrl.query_drop("UNLOCK TABLES")
                    .await
                    .my("cutover: unlocking")?;
            }
        }
        if self.spec.options.drop_old {
            ctrl.query_drop(format!("DROP TABLE {}", self.names.old_q()))
                .await
                .my("dropping the old table (--drop-old)")?;
        }
        Ok(())
    }

    async fn after_swap(&self) {}

    async fn release_cutover(&self) -> anyhow::Result<()> {
        let mut ctrl = take(&self.s.ctrl, "control").await?;
        ctrl.query_drop("UNLOCK TABLES")
            .await
            .my("cutover: unlocking")?;
        if self.flavor() == Flavor::MariaDb {
            cutover::drop_sentry(&mut ctrl, &self.names).await?;
        }
        Ok(())
    }

    async fn cleanup(&self, keep_shadow: bool) -> anyhow::Result<()> {
        self.close().await;
        if !self.created.load(Relaxed) {
            return Ok(());
        }
        let mut c = conn::connect(&self.spec.dsn, "cleanup").await?;
        for r in remove(&mut c, &self.names, keep_shadow).await? {
            tracing::debug!("removed {r}");
        }
        let _ = c.disconnect().await;
        Ok(())
    }
}

impl MyBackend {
    fn set_verifier(&self, shape: &Shape) {
        let n = &self.names;
        let _ = self.verifier.set(verify::Verifier::new(
            &self.spec.dsn,
            n.src(),
            n.shadow_q(),
            &shape.key,
            &shape.key_target,
            &shape.mapping,
            shape.key_order_differs,
        ));
    }

    async fn changelog(&self, id: i64, value: String) -> anyhow::Result<()> {
        take(&self.s.beat, "heartbeat")
            .await?
            .exec_drop(
                format!(
                    "INSERT INTO {} (id, value) VALUES (?, ?) ON DUPLICATE KEY UPDATE value = VALUES(value)",
                    self.names.changelog_q()
                ),
                (id, value),
            )
            .await
            .my("writing the changelog table")
    }
}

impl verify_api::ChecksumsBy for MyBackend {
    type Checker = verify::Verifier;

    fn checker(&self) -> anyhow::Result<&verify::Verifier> {
        self.verifier()
    }
}

/// `wraith cleanup` on MySQL/MariaDB: removes an earlier run's changelog, shadow and sentry.
pub async fn cleanup_command(spec: &MigrationSpec) -> anyhow::Result<Vec<String>> {
    let names = Names::new(&schema_of(spec)?, &spec.table)?;
    let mut c = conn::connect(&spec.dsn, "cleanup").await?;
    let lock = names.run_lock();
    let got: Option<i64> = c
        .exec_first("SELECT GET_LOCK(?, 0)", (&lock,))
        .await
        .my("taking the run lock")?;
    if got != Some(1) {
        return Err(bad_input(format!(
            "a wraith run is migrating {} right now; cleanup leaves its tables alone",
            names.src()
        )));
    }
    let present: Option<String> = c
        .exec_first(
            "SELECT TABLE_NAME FROM information_schema.TABLES WHERE TABLE_SCHEMA = ? AND TABLE_NAME = ?",
            (&names.schema, &names.changelog),
        )
        .await
        .my("cleanup: looking for the changelog table")?;
    let removed = match present {
        Some(_) => remove(&mut c, &names, false).await?,
        None => Vec::new(),
    };
    let _ = c.disconnect().await;
    Ok(removed)
}
