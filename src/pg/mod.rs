//! The PostgreSQL engine: implements [`Backend`] with logical decoding (pgoutput)
//! for capture and a rename swap in one transaction for the cutover.
//!
//! Sessions: `ctrl` (preflight, shadow DDL, the cutover transaction), `copy`
//! (chunks, then the fence), `apply` (re-reads, checkpoints), `capture` (owns the
//! temporary slot). All are closed before cleanup, so an open cutover transaction
//! or the slot can never outlive the run (a `--resume` run's slot is persistent:
//! cleanup drops it).
//!
//! This file holds the [`Backend`] impl only. Where things are, file for file as
//! in the MySQL backend: [`conn`], [`names`], [`sql`], [`catalog`],
//! [`preflight`] (and the plan), [`shadow`], [`capture`] + its decoder
//! [`pgoutput`], [`rows`] (copy and apply), [`verify`], [`cutover`], [`cleanup`],
//! [`signals`], [`runs`] (one run per table, completed runs), [`definition`];
//! PostgreSQL's own: [`dependents`] (moved in the swap), [`checks`] (data checks),
//! [`autovacuum`] (workers cancelled when they hold a table wraith must lock).

pub mod autovacuum;
pub mod capture;
pub mod catalog;
pub mod checks;
pub mod cleanup;
pub mod conn;
pub mod cutover;
pub mod definition;
pub mod dependents;
pub mod names;
pub mod pgoutput;
pub mod preflight;
pub mod revert;
pub mod rows;
pub mod runs;
pub mod shadow;
pub mod signals;
pub mod sql;
pub mod tls;
pub mod verify;

use std::sync::atomic::{AtomicBool, Ordering::Relaxed};
use std::sync::{Arc, Mutex, OnceLock};
use std::time::Duration;

use tokio_postgres::Client;

use crate::engine::checkpoint::Checkpoint;
use crate::engine::{Applied, ApplyOn, Backend, ChangeBatch, Copied};
use crate::key::{Key, KeyRange};
use crate::plan::alter::{self, AlterText};
use crate::plan::instant::Instant;
use crate::plan::{BackendOptions, MigrationSpec, Plan};
use crate::verify::{self as verify_api};
use capture::Decoder;
use catalog::Table;
use conn::DbResult;
use names::Names;
use shadow::Shape;

#[derive(Default)]
struct Sessions {
    ctrl: Option<Arc<Client>>,
    /// The chunker's (`copy_end`, `next_chunk`) and the fence's.
    copy: Option<Arc<Client>>,
    /// One per copy worker.
    copies: Vec<Arc<Client>>,
    apply: Option<Arc<Client>>,
    capture: Option<Arc<Client>>,
    heartbeat: Option<Arc<Client>>,
}

pub struct PgBackend {
    spec: MigrationSpec,
    opts: BackendOptions,
    names: Names,
    alter: AlterText,
    sessions: Mutex<Sessions>,
    table: OnceLock<Table>,
    /// The table's definition as preflight read it: the swap commits only over it.
    definition: OnceLock<crate::engine::definition::Definition>,
    deps: OnceLock<dependents::Dependents>,
    server_version: OnceLock<i32>,
    shape: OnceLock<Shape>,
    decoder: OnceLock<Mutex<Decoder>>,
    /// The cutover transaction holds the write lock.
    locked: AtomicBool,
    verifier: OnceLock<verify::Verifier>,
    /// Foreign keys to validate once the swap committed.
    to_validate: Mutex<Vec<(String, String)>>,
    /// The interrupted run this one continues.
    resume: OnceLock<Checkpoint>,
    /// The statements that apply a metadata-only change directly (`--instant`).
    instant: OnceLock<Vec<String>>,
    /// This run is a revert: the table is the source, the old table the shadow.
    reverting: bool,
    /// The way back: kept by this migration (`--revertible`), or taken by this revert.
    way_back: Mutex<Option<revert::Record>>,
    /// The swap committed.
    swapped: AtomicBool,
}

impl PgBackend {
    /// Validates the spec and opens the control session.
    pub async fn connect(spec: MigrationSpec, opts: BackendOptions) -> anyhow::Result<PgBackend> {
        let names = Names::new(spec.schema(), &spec.table)?;
        let alter = alter::parse(&spec.alter, &spec.table)?;
        PgBackend::open(spec, opts, names, alter, false).await
    }

    /// A revert of the table's last migration (`wraith revert`): the way back it
    /// kept, run through the same phases.
    pub async fn connect_revert(
        spec: MigrationSpec,
        opts: BackendOptions,
    ) -> anyhow::Result<PgBackend> {
        let names = Names::back(spec.schema(), &spec.table)?;
        PgBackend::open(spec, opts, names, AlterText::default(), true).await
    }

    async fn open(
        spec: MigrationSpec,
        opts: BackendOptions,
        names: Names,
        alter: AlterText,
        reverting: bool,
    ) -> anyhow::Result<PgBackend> {
        let ctrl = conn::connect(&spec.dsn, "control").await?;
        Ok(PgBackend {
            spec,
            opts,
            names,
            alter,
            sessions: Mutex::new(Sessions {
                ctrl: Some(ctrl),
                ..Sessions::default()
            }),
            table: OnceLock::new(),
            definition: OnceLock::new(),
            deps: OnceLock::new(),
            server_version: OnceLock::new(),
            shape: OnceLock::new(),
            decoder: OnceLock::new(),
            locked: AtomicBool::new(false),
            verifier: OnceLock::new(),
            to_validate: Mutex::new(Vec::new()),
            resume: OnceLock::new(),
            instant: OnceLock::new(),
            reverting,
            way_back: Mutex::new(None),
            swapped: AtomicBool::new(false),
        })
    }

    /// What the history records the swap under.
    fn fingerprint(&self) -> String {
        match self.way_back() {
            Some(r) if self.reverting => r.revert_fingerprint(),
            _ => self.spec.fingerprint(),
        }
    }

    fn way_back(&self) -> Option<revert::Record> {
        self.way_back
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .clone()
    }

    /// The way back's names (its slot, publication and record).
    fn back_names(&self) -> anyhow::Result<Names> {
        Names::back(&self.names.schema, &self.names.table)
    }

    /// A revert's preflight: the way back's record and the tables as they are.
    async fn preflight_revert(&self) -> anyhow::Result<Plan> {
        let ctrl = self.ctrl()?;
        runs::lock(&ctrl, &self.names).await?;
        if revert::swapped_back(&ctrl, &self.names).await? {
            if self.opts.execute {
                for r in revert::forget(&ctrl, &self.names).await? {
                    tracing::warn!("removed {r}, left by the revert that swapped the table back");
                }
            }
            return Ok(Plan {
                target: format!("{}.{}", self.names.schema, self.names.table),
                server: "PostgreSQL".into(),
                completed: Some(format!(
                    "(the new shape is set aside as {}); {}",
                    self.names.old_q(),
                    if self.opts.execute {
                        "its way back is removed now"
                    } else {
                        "--execute removes its way back"
                    }
                )),
                ..Plan::default()
            });
        }
        let (checked, record) = revert::preflight(&ctrl, &self.names, self.opts.execute).await?;
        *self.way_back.lock().unwrap_or_else(|e| e.into_inner()) = Some(record);
        if let Some(cp) = checked.resume.clone() {
            let _ = self.resume.set(cp);
        }
        Ok(self.hold(checked, true))
    }

    pub fn names(&self) -> &Names {
        &self.names
    }

    fn session(
        &self,
        pick: fn(&Sessions) -> &Option<Arc<Client>>,
        name: &str,
    ) -> anyhow::Result<Arc<Client>> {
        let s = self.sessions.lock().unwrap_or_else(|e| e.into_inner());
        pick(&s)
            .clone()
            .ok_or_else(|| anyhow::anyhow!("the {name} session is closed"))
    }

    fn copy_workers(&self) -> usize {
        self.sessions
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .copies
            .len()
    }

    fn ctrl(&self) -> anyhow::Result<Arc<Client>> {
        self.session(|s| &s.ctrl, "control")
    }

    fn table(&self) -> anyhow::Result<&Table> {
        self.table
            .get()
            .ok_or_else(|| anyhow::anyhow!("preflight has not run"))
    }

    fn shape(&self) -> anyhow::Result<&Shape> {
        self.shape
            .get()
            .ok_or_else(|| anyhow::anyhow!("the shadow table is not prepared"))
    }

    fn deps(&self) -> anyhow::Result<&dependents::Dependents> {
        self.deps
            .get()
            .ok_or_else(|| anyhow::anyhow!("preflight has not run"))
    }

    fn decoder(&self) -> anyhow::Result<&Mutex<Decoder>> {
        self.decoder
            .get()
            .ok_or_else(|| anyhow::anyhow!("change capture has not started"))
    }
}

impl Backend for PgBackend {
    type Signals = signals::PgSignals;

    async fn signals(
        &self,
        replica_dsns: Vec<crate::dsn::Dsn>,
    ) -> anyhow::Result<signals::PgSignals> {
        signals::PgSignals::open(&self.spec.dsn, &replica_dsns, self.names.clone()).await
    }

    async fn preflight(&self) -> anyhow::Result<Plan> {
        if self.reverting {
            return self.preflight_revert().await;
        }
        let ctrl = self.ctrl()?;
        // Held by the control session until the run ends.
        runs::lock(&ctrl, &self.names).await?;
        if let Some(when) = runs::completed(&ctrl, &self.names, &self.spec.fingerprint()).await? {
            if self.opts.execute {
                // A run stopped between the swap and its cleanup leaves its publication.
                let removed =
                    cleanup::remove(&ctrl, &self.names, cleanup::ActiveSlot::Refuse, true).await?;
                for r in removed {
                    tracing::warn!("removed {r}, left by the run that completed this migration");
                }
            }
            return Ok(Plan {
                target: format!("{}.{}", self.names.schema, self.names.table),
                server: "PostgreSQL".into(),
                completed: Some(when),
                ..Plan::default()
            });
        }
        let checked =
            preflight::run(&ctrl, &self.spec, &self.opts, &self.names, &self.alter).await?;
        if let Some(reverse) = &checked.plan.reverse {
            *self.way_back.lock().unwrap_or_else(|e| e.into_inner()) = Some(revert::Record::new(
                &self.spec.fingerprint(),
                &self.spec.alter,
                reverse.clone(),
                &checked.shape,
            ));
        }
        if let Instant::MetadataOnly(stmts) = &checked.plan.instant {
            let _ = self.instant.set(stmts.clone());
        }
        let resumed = match checked.resume.clone() {
            // The interrupted run's shadow has the shape preflight just built (and
            // threw away): its statements serve the resumed run.
            Some(cp) if self.opts.execute => self.resume.set(cp).is_ok(),
            _ => false,
        };
        Ok(self.hold(checked, resumed))
    }

    async fn apply_instant(&self, timeout: Duration, attempts: u32) -> anyhow::Result<()> {
        let stmts = self
            .instant
            .get()
            .ok_or_else(|| anyhow::anyhow!("preflight found no metadata-only change"))?;
        let mut batch = stmts.clone();
        batch.extend(runs::record(
            &self.names,
            &self.spec.fingerprint(),
            &self.spec.alter,
        ));
        let ctrl = self.ctrl()?;
        cutover::with_lock_timeout(&ctrl, &self.names, &batch.join(";\n"), timeout, attempts)
            .await
            .map_err(|e| {
                let table = self.names.src();
                if conn::is_lock_timeout(&e) {
                    e.context(format!(
                        "{table}: the lock was not granted within {timeout:?} in {attempts} attempts; \
                         nothing was changed. A long transaction on the table holds it (see \
                         pg_stat_activity): end it, or raise --cutover-lock-timeout / --cutover-attempts"
                    ))
                } else {
                    e.context(format!("{table}: the ALTER failed; nothing was changed"))
                }
            })?;
        tracing::info!("applied directly, no copy: {}", stmts.join("; "));
        Ok(())
    }

    fn resuming(&self) -> Option<Checkpoint> {
        self.resume.get().cloned()
    }

    async fn save_checkpoint(&self, state: String) -> anyhow::Result<()> {
        let apply = self.session(|s| &s.apply, "apply")?;
        runs::save_checkpoint(&apply, &self.names, &state).await
    }

    async fn close(&self) {
        drop(std::mem::take(
            &mut *self.sessions.lock().unwrap_or_else(|e| e.into_inner()),
        ));
        if let Some(v) = self.verifier.get() {
            v.close();
        }
    }

    async fn prepare(&self) -> anyhow::Result<Option<String>> {
        let table = self.table()?;
        let dsn = &self.spec.dsn;
        let (capture, copy, apply, heartbeat) = (
            conn::connect(dsn, "capture").await?,
            conn::connect(dsn, "copy").await?,
            conn::connect(dsn, "apply").await?,
            conn::connect(dsn, "heartbeat").await?,
        );
        capture::tune_session(&capture).await?;
        {
            let mut s = self.sessions.lock().unwrap_or_else(|e| e.into_inner());
            s.capture = Some(capture.clone());
            s.copy = Some(copy);
            s.apply = Some(apply);
            s.heartbeat = Some(heartbeat);
        }
        let ctrl = self.ctrl()?;
        let version = self.server_version.get().copied().unwrap_or_default();
        let _ = self
            .decoder
            .set(Mutex::new(Decoder::new(table, version, &self.names.slot)));
        if self.resume.get().is_some() {
            let lsn = capture::reopen(&ctrl, &self.names, self.decoder()?).await?;
            if self.reverting {
                let record = self
                    .way_back()
                    .ok_or_else(|| anyhow::anyhow!("the way back's record is not read"))?;
                let verifier =
                    revert::verifier(&ctrl, &self.spec.dsn, &self.names, table, &record).await?;
                let _ = self.verifier.set(verifier);
            } else {
                self.set_verifier(self.shape()?);
            }
            return Ok(Some(lsn));
        }
        // The change source first (DESIGN 2.A), then the shadow.
        let start = capture::create(
            &ctrl,
            &capture,
            &self.names,
            self.opts.slot_create_timeout,
            self.opts.resume,
        )
        .await?;
        let shape = shadow::bounded(
            &ctrl,
            &self.names,
            table,
            &self.alter,
            &self.spec,
            &self.opts,
            shadow::Outcome::Commit,
        )
        .await?;
        self.set_verifier(&shape);
        let _ = self.shape.set(shape);
        for stmt in self.deps()?.before_lock(&self.names.shadow_q()) {
            ctrl.batch_execute(&stmt)
                .await
                .db("carrying privileges and policies to the shadow")?;
        }
        runs::create_checkpoint_table(&ctrl, &self.names).await?;
        Ok(Some(start))
    }

    async fn copy_end(&self) -> anyhow::Result<Option<Key>> {
        let shape = self.shape()?;
        let copy = self.session(|s| &s.copy, "copy")?;
        let row = copy
            .query_opt(&shape.sql.last_key, &[])
            .await
            .db("finding the table's last key")?;
        Ok(row.map(|r| {
            (0..shape.key.source.len())
                .map(|i| r.get::<_, String>(i))
                .collect()
        }))
    }

    async fn next_chunk(
        &self,
        after: Option<Key>,
        end: Key,
        rows: u64,
    ) -> anyhow::Result<KeyRange> {
        let copy = self.session(|s| &s.copy, "copy")?;
        rows::next_chunk(&copy, &self.shape()?.sql, after.as_ref(), &end, rows).await
    }

    async fn copy_sessions(&self, n: usize) -> anyhow::Result<()> {
        while self.copy_workers() < n {
            let c = conn::connect(&self.spec.dsn, "copy worker").await?;
            self.sessions
                .lock()
                .unwrap_or_else(|e| e.into_inner())
                .copies
                .push(c);
        }
        Ok(())
    }

    async fn copy_range(&self, worker: usize, range: KeyRange) -> anyhow::Result<Copied> {
        let copy = self
            .sessions
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .copies
            .get(worker)
            .cloned()
            .ok_or_else(|| anyhow::anyhow!("copy worker {worker} has no session"))?;
        rows::copy_range(&copy, &self.shape()?.sql, &range).await
    }

    async fn poll_changes(&self, max_events: u64) -> anyhow::Result<ChangeBatch> {
        let capture = self.session(|s| &s.capture, "capture")?;
        // The apply session is idle while the stream is read.
        let spare = self.session(|s| &s.apply, "apply")?;
        let spare = (!self.locked.load(Relaxed)).then_some(&*spare);
        capture::poll(&capture, spare, &self.names, self.decoder()?, max_events).await
    }

    async fn apply_keys(
        &self,
        keys: Vec<Key>,
        on: ApplyOn,
        in_flight: Vec<KeyRange>,
    ) -> anyhow::Result<Applied> {
        let sql = &self.shape()?.sql;
        match on {
            ApplyOn::Worker => {
                let apply = self.session(|s| &s.apply, "apply")?;
                rows::apply_keys(&apply, sql, keys, false, &in_flight).await
            }
            ApplyOn::Cutover => rows::apply_keys(&*self.ctrl()?, sql, keys, true, &in_flight).await,
        }
    }

    async fn confirm(&self, position: String) -> anyhow::Result<()> {
        let capture = self.session(|s| &s.capture, "capture")?;
        capture::confirm(&capture, &self.names, self.decoder()?, &position).await
    }

    async fn before_cutover(&self) -> anyhow::Result<()> {
        let resumed = self.resume.get().is_some();
        let lock_timeout = self.opts.cutover_lock_timeout;
        let ctrl = self.ctrl()?;
        shadow::finish(
            &ctrl,
            &self.names,
            self.shape()?,
            resumed,
            lock_timeout,
            self.opts.lock_attempts,
        )
        .await?;
        match self.way_back() {
            // The way back's stream must exist before the swap commits.
            Some(record) if !self.reverting => {
                revert::keep(
                    &ctrl,
                    &self.names,
                    &self.back_names()?,
                    &record,
                    self.opts.slot_create_timeout,
                )
                .await
            }
            _ => Ok(()),
        }
    }

    async fn lock_for_cutover(&self, timeout: Duration) -> anyhow::Result<bool> {
        self.lock(timeout, cutover::LockMode::Exclusive).await
    }

    async fn lock_writes(&self, timeout: Duration) -> anyhow::Result<bool> {
        self.lock(timeout, cutover::LockMode::Writes).await
    }

    async fn heartbeat(&self, sent_unix_us: i64) -> anyhow::Result<()> {
        let session = self.session(|s| &s.heartbeat, "heartbeat")?;
        capture::heartbeat(&session, &self.names, sent_unix_us).await
    }

    async fn emit_fence(&self, id: String) -> anyhow::Result<()> {
        cutover::fence(&*self.session(|s| &s.copy, "copy")?, &id).await
    }

    async fn swap(&self) -> anyhow::Result<()> {
        let ctrl = self.ctrl()?;
        // Under the lock no other session can change the table's definition: it must
        // still be the one the shadow was built from and the dependents were read for.
        let table = self.table()?;
        let before = self
            .definition
            .get()
            .ok_or_else(|| anyhow::anyhow!("preflight has not run"))?;
        let now = definition::read(&ctrl, &self.names, table.oid).await?;
        before.ensure_unchanged(&now, &self.names.src())?;
        let mut record = runs::record(&self.names, &self.fingerprint(), &self.alter_text());
        if let Some(way_back) = self.way_back().filter(|_| !self.reverting) {
            record.extend(self.deps()?.set_aside(&self.names.old_q()));
            record.push(revert::mark(&way_back));
        }
        let validate = cutover::swap(
            &ctrl,
            &self.names,
            self.table()?,
            self.shape()?,
            self.deps()?,
            &record,
            &self.opts.faults,
        )
        .await?;
        self.swapped.store(true, Relaxed);
        *self.to_validate.lock().unwrap_or_else(|e| e.into_inner()) = validate;
        self.locked.store(false, Relaxed);
        if self.opts.drop_old {
            self.ctrl()?
                .batch_execute(&format!("DROP TABLE {}", self.names.old_q()))
                .await
                .db("dropping the old table (--drop-old)")?;
        }
        Ok(())
    }

    async fn after_swap(&self) {
        let statements =
            std::mem::take(&mut *self.to_validate.lock().unwrap_or_else(|e| e.into_inner()));
        match self.ctrl() {
            Ok(ctrl) => {
                cutover::validate(&ctrl, &statements).await;
                if !self.reverting {
                    self.seal_way_back(&ctrl).await;
                }
            }
            Err(e) => tracing::error!("cannot validate the re-pointed foreign keys: {e:#}"),
        }
    }

    async fn release_cutover(&self) -> anyhow::Result<()> {
        let released = cutover::release(&*self.ctrl()?).await;
        self.locked.store(false, Relaxed);
        released
    }

    async fn cleanup(&self, keep_shadow: bool) -> anyhow::Result<()> {
        // Closing every session ends any open transaction and the temporary slot.
        self.close().await;
        let swapped = self.swapped.load(Relaxed);
        if self.reverting && !swapped {
            // The way back stays for the next attempt (`wraith revert` again).
            return Ok(());
        }
        let c = conn::connect(&self.spec.dsn, "cleanup").await?;
        if self.way_back().is_some() && !self.reverting && !swapped {
            for r in revert::forget(&c, &self.back_names()?).await? {
                tracing::debug!("removed {r} (the way back of a migration that did not swap)");
            }
        }
        let removed =
            cleanup::remove(&c, &self.names, cleanup::ActiveSlot::Wait, keep_shadow).await?;
        for r in removed {
            tracing::debug!("removed {r}");
        }
        Ok(())
    }
}

impl verify_api::ChecksumsBy for PgBackend {
    type Checker = verify::Verifier;

    fn checker(&self) -> anyhow::Result<&verify::Verifier> {
        self.verifier()
    }
}

impl PgBackend {
    /// Keeps what preflight found for the later phases (the shape too when the run
    /// continues one whose shadow has it); returns the plan.
    fn hold(&self, checked: preflight::Checked, with_shape: bool) -> Plan {
        if with_shape {
            let _ = self.shape.set(checked.shape);
        }
        let _ = self.table.set(checked.table);
        let _ = self.definition.set(checked.definition);
        let _ = self.deps.set(checked.deps);
        let _ = self.server_version.set(checked.server_version);
        checked.plan
    }

    /// The ALTER the history records: the migration's, or what a revert undid.
    fn alter_text(&self) -> String {
        match self.way_back() {
            Some(r) if self.reverting => format!("revert of: {}", r.alter),
            _ => self.spec.alter.clone(),
        }
    }

    /// Starts the way back's stream at the swap's commit. On failure the revert
    /// does it (the marker stays in the stream).
    async fn seal_way_back(&self, ctrl: &Client) {
        let Some(mut record) = self.way_back() else {
            return;
        };
        let sealed = match self.back_names() {
            Ok(back) => revert::seal(ctrl, &back, &mut record).await,
            Err(e) => Err(e),
        };
        match sealed {
            Ok(lsn) => tracing::info!(
                "the way back is kept from the swap at {lsn}: `wraith revert` swaps the old table \
                back with every write since, `wraith revert --forget` removes it"
            ),
            Err(e) => tracing::warn!("{e:#}; `wraith revert` will start the way back itself"),
        }
        *self.way_back.lock().unwrap_or_else(|e| e.into_inner()) = Some(record);
    }

    async fn lock(&self, timeout: Duration, mode: cutover::LockMode) -> anyhow::Result<bool> {
        let granted = cutover::lock(&*self.ctrl()?, &self.names, timeout, mode).await?;
        self.locked.store(granted, Relaxed);
        Ok(granted)
    }

    fn set_verifier(&self, shape: &Shape) {
        let pairs = shape
            .mapping
            .written()
            .map(|c| {
                (
                    c.expr.clone().unwrap_or_default(),
                    c.target.clone(),
                    c.target_type.clone(),
                )
            })
            .collect();
        let _ = self.verifier.set(verify::Verifier::new(
            &self.spec.dsn,
            self.names.src(),
            self.names.shadow_q(),
            shape.key.clone(),
            pairs,
        ));
    }

    fn verifier(&self) -> anyhow::Result<&verify::Verifier> {
        self.verifier
            .get()
            .ok_or_else(|| anyhow::anyhow!("the shadow table is not prepared"))
    }
}
