//! The MySQL/MariaDB engine: implements [`Backend`] with a binary log stream for
//! capture, locking re-reads for the apply and a RENAME for the cutover.
//!
//! Sessions: `ctrl` (preflight, the run lock, DDL, the cutover's `LOCK TABLES`
//! and the apply under it), `copy`, `apply`, `beat` (heartbeats and fences into
//! the changelog table), `killer` (cancels lock waits at their deadline, watches
//! the queued RENAME), `renamer` (MariaDB's cutover) and the binary log stream.
//!
//! This file holds the [`Backend`] impl only. Where things are, file for file as
//! in the PostgreSQL backend: [`conn`], [`names`], [`sql`], [`catalog`],
//! [`preflight`] (and the plan), [`shadow`], [`capture`] + its decoder
//! [`binlog`], [`rows`] (copy and apply), [`verify`], [`cutover`], [`cleanup`],
//! [`signals`], [`runs`] (one run per table, the completed-run record),
//! [`definition`]. MySQL's own: [`checks`] (data checks), [`foreign_keys`] and
//! [`triggers`] (moved to the new table within the cutover).

pub mod binlog;
pub mod capture;
pub mod catalog;
pub mod checks;
pub mod cleanup;
pub mod conn;
pub mod cutover;
pub mod definition;
pub mod foreign_keys;
pub mod names;
pub mod preflight;
pub mod rows;
pub mod runs;
pub mod shadow;
pub mod signals;
pub mod sql;
pub mod triggers;
pub mod verify;

use std::sync::atomic::{AtomicBool, Ordering::Relaxed};
use std::sync::{Arc, OnceLock};
use std::time::Duration;

use anyhow::Context;
use mysql_async::Conn;
use mysql_async::prelude::Queryable;
use tokio::sync::{MappedMutexGuard, Mutex, MutexGuard};

use crate::engine::checkpoint::{self, Checkpoint};
use crate::engine::{Applied, ApplyOn, Backend, ChangeBatch, Copied};
use crate::error::bad_input;
use crate::key::{Key, KeyRange};
use crate::plan::alter::{self, AlterText};
use crate::plan::instant::Instant;
use crate::plan::{BackendOptions, MigrationSpec, Plan};
use crate::verify as verify_api;
use catalog::Table;
use conn::MyResult;
use names::Names;
use preflight::{Flavor, Server};
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
    /// The chunker's: `copy_end`, `next_chunk`.
    copy: Slot,
    /// One per copy worker.
    copies: std::sync::Mutex<Vec<Arc<Slot>>>,
    apply: Slot,
    beat: Slot,
    killer: Slot,
    renamer: Slot,
    /// MariaDB, when triggers or keys move: the session that moves them.
    mover: Slot,
}

pub struct MyBackend {
    spec: MigrationSpec,
    opts: BackendOptions,
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
    /// The statements that apply a metadata-only change directly (`--instant`).
    instant: OnceLock<Vec<String>>,
}

async fn take<'a>(slot: &'a Slot, name: &str) -> anyhow::Result<MappedMutexGuard<'a, Conn>> {
    MutexGuard::try_map(slot.lock().await, |c| c.as_mut())
        .map_err(|_| anyhow::anyhow!("the {name} session is closed"))
}

impl MyBackend {
    /// Validates the spec and opens the control session.
    pub async fn connect(spec: MigrationSpec, opts: BackendOptions) -> anyhow::Result<MyBackend> {
        let schema = crate::Engine::MySql.schema_of(&spec)?;
        let names = Names::new(&schema, &spec.table)?;
        let alter = alter::parse(&spec.alter, &spec.table)?;
        let ctrl = conn::connect(&spec.dsn, "control").await?;
        Ok(MyBackend {
            spec,
            opts,
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
            instant: OnceLock::new(),
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

    /// After the swap: a read-only check that the new table's rows all have the
    /// parents its foreign keys (moved in the swap) name.
    async fn check_foreign_keys(&self, ctrl: &mut Conn) {
        let Some(table) = self.table.get() else {
            return;
        };
        if table.foreign_keys.is_empty() && table.referencing.is_empty() {
            return;
        }
        let key = &self.shape.get().map_or(&table.key, |s| &s.key_target);
        match foreign_keys::orphans(ctrl, key, &table.foreign_keys, &table.referencing).await {
            Ok(found) => {
                for f in found {
                    tracing::error!("{}: {f}", self.names.src());
                }
            }
            Err(e) => tracing::error!("{e:#}"),
        }
    }

    fn copy_slots(&self) -> std::sync::MutexGuard<'_, Vec<Arc<Slot>>> {
        self.s.copies.lock().unwrap_or_else(|e| e.into_inner())
    }

    fn table(&self) -> anyhow::Result<&Table> {
        self.table
            .get()
            .ok_or_else(|| anyhow::anyhow!("preflight has not run"))
    }

    /// The session in `slot`, or a new one when an earlier attempt lost it.
    async fn session(&self, slot: &Slot, name: &str) -> anyhow::Result<Conn> {
        match slot.lock().await.take() {
            Some(c) => Ok(c),
            None => conn::connect(&self.spec.dsn, name).await,
        }
    }

    async fn lock(&self, sql: &str, timeout: Duration) -> anyhow::Result<bool> {
        let mut ctrl = take(&self.s.ctrl, "control").await?;
        let mut killer = take(&self.s.killer, "killer").await?;
        cutover::lock_within(&mut ctrl, &mut killer, sql, timeout).await
    }
}

impl Backend for MyBackend {
    type Signals = signals::MySignals;

    async fn signals(
        &self,
        replica_dsns: Vec<crate::dsn::Dsn>,
    ) -> anyhow::Result<signals::MySignals> {
        signals::MySignals::open(&self.spec.dsn, &replica_dsns, self.names.clone()).await
    }

    async fn preflight(&self) -> anyhow::Result<Plan> {
        if self.opts.revertible {
            return Err(bad_input(
                "--revertible is not available on MySQL/MariaDB yet (the way back is built on \
                 PostgreSQL's logical decoding); nothing was changed. Leave out --revertible: \
                 the old table is kept as it was at the swap",
            ));
        }
        let mut ctrl = take(&self.s.ctrl, "control").await?;
        if let Some(holder) = runs::lock_run(&mut ctrl, &self.names).await? {
            return Err(bad_input(format!(
                "another wraith run (connection id {holder}) is migrating {}; wait for it or stop it",
                self.names.src()
            )));
        }
        if let Some(when) =
            runs::completed(&mut ctrl, &self.names, &self.spec.fingerprint()).await?
        {
            return Ok(Plan {
                target: format!("{}.{}", self.names.schema, self.names.table),
                server: "MySQL/MariaDB".into(),
                completed: Some(when),
                ..Plan::default()
            });
        }
        let (server, table) =
            preflight::run(&mut ctrl, &self.names.schema, &self.names.table).await?;
        triggers::check_names(&self.names, &table.triggers)?;
        foreign_keys::check_alterable(&mut ctrl, &table.referencing).await?;
        catalog::check_key_types(&table, &self.names.src())?;
        let findings = checks::run(&mut ctrl, &self.names, &table, &self.spec.checks).await?;
        let retention =
            preflight::binlog_retention(&mut ctrl, table.estimated_rows, self.opts.resume).await?;
        let _ = self
            .definition
            .set(definition::read(&mut ctrl, &self.names).await?);
        let _ = self
            .referenced_from
            .set(definition::read_other_databases(&mut ctrl, &self.names).await?);
        let (warnings, resume) =
            preflight::leftovers(&mut ctrl, &self.spec, &self.opts, &self.names).await?;
        // DDL commits at once here: the spec's prepare statements run for real
        // runs only, before the new shape is tried.
        if self.opts.execute {
            shadow::run_prepare(&mut ctrl, &self.spec.prepare).await?;
        }
        let shape = shadow::build(
            &mut ctrl,
            &self.names,
            &table,
            &self.alter,
            &self.spec,
            shadow::On::Temporary,
        )
        .await
        .map_err(|e| {
            if self.opts.execute || self.spec.prepare.is_empty() {
                return e;
            }
            e.context(
                "the dry run does not run the spec's prepare statements on MySQL/MariaDB (DDL \
                 commits at once there); if the ALTER depends on them, run --execute, which runs \
                 them first",
            )
        })?;
        let mut plan =
            preflight::plan(&self.spec, &self.opts, &self.names, &server, &table, &shape)?;
        if self.opts.probe_instant {
            plan.instant = shadow::instant(&mut ctrl, &self.names, &self.alter, &self.spec).await;
        }
        if let Instant::MetadataOnly(stmts) = &plan.instant {
            let _ = self.instant.set(stmts.clone());
        }
        plan.warnings = warnings;
        plan.warnings.extend(retention);
        plan.findings = findings;
        if shape.key_order_differs {
            plan.warnings.push(
                "the ALTER changes the collation of a key column, so the two tables sort keys \
                 differently: verification compares them in one range instead of many in parallel"
                    .to_string(),
            );
        }
        if let Some(cp) = resume {
            checkpoint::check_shape(&cp, &plan, &self.names.src())?;
            if self.opts.execute {
                // The interrupted run's shadow has this shape: its statements serve.
                let _ = self.resume.set(cp);
                let _ = self.shape.set(shape);
            }
        }
        let _ = self.server.set(server);
        let _ = self.table.set(table);
        Ok(plan)
    }

    async fn apply_instant(&self, timeout: Duration, attempts: u32) -> anyhow::Result<()> {
        let stmts = self
            .instant
            .get()
            .ok_or_else(|| anyhow::anyhow!("preflight found no metadata-only change"))?;
        let table = self.names.src();
        let mut ctrl = take(&self.s.ctrl, "control").await?;
        let mut killer = self.session(&self.s.killer, "killer").await?;
        // Each statement commits on its own: a retry goes on from the first not applied.
        let mut next = 0;
        let mut attempt = 0;
        while next < stmts.len() {
            attempt += 1;
            if cutover::lock_within(&mut ctrl, &mut killer, &stmts[next], timeout)
                .await
                .with_context(|| {
                    format!("{table}: the ALTER failed; {next} of its statements were applied")
                })?
            {
                next += 1;
                continue;
            }
            if attempt >= attempts.max(1) {
                anyhow::bail!(
                    "{table}: the metadata lock was not granted within {timeout:?} in {attempts} \
                     attempts; {next} of {} statements were applied. A long transaction on the table \
                     holds it (see SHOW PROCESSLIST): end it, or raise --cutover-lock-timeout / \
                     --cutover-attempts",
                    stmts.len()
                );
            }
            let wait = crate::engine::pacing::cutover_backoff(attempt);
            tracing::warn!(
                attempt,
                "the metadata lock was not granted; retrying in {wait:?}"
            );
            tokio::time::sleep(wait).await;
        }
        runs::record(
            &mut ctrl,
            &self.names,
            &self.spec.fingerprint(),
            &self.spec.alter,
        )
        .await?;
        tracing::info!("applied directly, no copy: {}", stmts.join("; "));
        Ok(())
    }

    fn resuming(&self) -> Option<Checkpoint> {
        self.resume.get().cloned()
    }

    async fn save_checkpoint(&self, state: String) -> anyhow::Result<()> {
        self.changelog(capture::CHECKPOINT_ID, state).await
    }

    async fn close(&self) {
        let copies: Vec<Arc<Slot>> = std::mem::take(&mut *self.copy_slots());
        for slot in copies {
            if let Some(c) = slot.lock().await.take() {
                let _ = c.disconnect().await;
            }
        }
        for slot in [
            &self.s.copy,
            &self.s.apply,
            &self.s.beat,
            &self.s.killer,
            &self.s.renamer,
            &self.s.mover,
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
        let table = self.table()?;
        *self.s.copy.lock().await = Some(conn::connect(dsn, "copy").await?);
        *self.s.apply.lock().await = Some(conn::connect(dsn, "apply").await?);
        *self.s.beat.lock().await = Some(conn::connect(dsn, "heartbeat").await?);
        *self.s.killer.lock().await = Some(conn::connect(dsn, "cutover watch").await?);
        if self.flavor() == Flavor::MariaDb {
            *self.s.renamer.lock().await = Some(conn::connect(dsn, "rename").await?);
            if table.has_dependents() {
                *self.s.mover.lock().await = Some(conn::connect(dsn, "move dependents").await?);
            }
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
        capture::create_changelog(&mut ctrl, n).await?;
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

    async fn copy_sessions(&self, n: usize) -> anyhow::Result<()> {
        while self.copy_slots().len() < n {
            let c = conn::connect(&self.spec.dsn, "copy worker").await?;
            self.copy_slots().push(Arc::new(Mutex::new(Some(c))));
        }
        Ok(())
    }

    async fn copy_range(&self, worker: usize, range: KeyRange) -> anyhow::Result<Copied> {
        let sql = &self.shape()?.sql;
        let slot = self
            .copy_slots()
            .get(worker)
            .cloned()
            .ok_or_else(|| anyhow::anyhow!("copy worker {worker} has no session"))?;
        rows::copy_range(&mut *take(&slot, "copy worker").await?, sql, &range).await
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
            ..Applied::default()
        })
    }

    async fn confirm(&self, _position: String) -> anyhow::Result<()> {
        // The stream lives in this process and polls carry no position: nothing to advance.
        Ok(())
    }

    async fn before_cutover(&self) -> anyhow::Result<()> {
        let table = self.table()?;
        if table.has_dependents() {
            // Kept until the moves ran: `wraith cleanup` finishes them after a stop.
            let recorded = cutover::Recorded::of(&self.names, table)?;
            let value = serde_json::to_string(&recorded).context("recording the moves")?;
            self.changelog(cutover::MOVES_ID, value).await?;
        }
        let mut ctrl = take(&self.s.ctrl, "control").await?;
        shadow::finish(&mut ctrl, &self.names, self.shape()?).await
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
        let table = self.table()?;
        let granted = self
            .lock(&cutover::lock_tables(&self.names, sentry, table), timeout)
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
        let moved = match self.flavor() {
            Flavor::MariaDb => {
                let renamer = self.session(&self.s.renamer, "rename").await?;
                let table = self.table()?;
                let mover = if table.has_dependents() {
                    Some(cutover::Mover {
                        conn: self.session(&self.s.mover, "move dependents").await?,
                        lock: cutover::lock_for_moves(&self.names, table),
                        moves: cutover::moves(&self.names, table)?,
                    })
                } else {
                    None
                };
                let mut killer = take(&self.s.killer, "killer").await?;
                let (result, spare) = cutover::swap_with_sentry(
                    &mut ctrl,
                    renamer,
                    mover,
                    &mut killer,
                    &self.names,
                    &self.opts.faults,
                )
                .await;
                *self.s.renamer.lock().await = spare.renamer;
                *self.s.mover.lock().await = spare.mover;
                result?;
                spare.moved
            }
            Flavor::MySql => {
                let moves = cutover::moves(&self.names, self.table()?)?;
                cutover::swap_in_one_session(&mut ctrl, &self.names, &moves, &self.opts.faults)
                    .await?
            }
        };
        if moved {
            let mut beat = take(&self.s.beat, "heartbeat").await?;
            if let Err(e) = cutover::Recorded::forget(&mut beat, &self.names).await {
                tracing::warn!("{e:#}; `wraith cleanup` runs the moves again, harmlessly");
            }
        }
        if self.opts.drop_old {
            ctrl.query_drop(format!("DROP TABLE {}", self.names.old_q()))
                .await
                .my("dropping the old table (--drop-old)")?;
        }
        Ok(())
    }

    /// The swap is done and writes flow (the cutover's hold is measured): what
    /// follows reports its failures rather than fail the run.
    async fn after_swap(&self) {
        let mut ctrl = match take(&self.s.ctrl, "control").await {
            Ok(c) => c,
            Err(e) => {
                tracing::error!("after the swap: {e:#}");
                return;
            }
        };
        self.check_foreign_keys(&mut ctrl).await;
        // A record that cannot be written costs a rerun's no-op, not the run.
        if let Err(e) = runs::record(
            &mut ctrl,
            &self.names,
            &self.spec.fingerprint(),
            &self.spec.alter,
        )
        .await
        {
            tracing::warn!("the migration is done but could not be recorded: {e:#}");
        }
    }

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
        for r in cleanup::remove(&mut c, &self.names, keep_shadow).await? {
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
