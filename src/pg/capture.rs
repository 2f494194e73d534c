//! Change capture on PostgreSQL: a publication for the table and a temporary
//! logical slot (it dies with wraith's session, so no exit path can leak it; a
//! `--resume` run's slot is persistent, so a later run can continue from it),
//! polled with `pg_logical_slot_peek_binary_changes` and advanced only after
//! the keys read are applied (DESIGN 2.G).
//!
//! Only keys are taken from the stream: values are re-read from the source.
//! Before keys are handed out, their transactions must be visible to new
//! snapshots (DESIGN 2.B): a commit reaches the WAL (and the stream) before it
//! leaves the proc array. A TRUNCATE or a change of the table's columns aborts
//! the run (2.F).

use std::sync::Mutex;
use std::time::{Duration, Instant};

use futures_util::{TryStreamExt, pin_mut};
use tokio_postgres::Client;

use crate::engine::ChangeBatch;
use crate::key::Key;
use crate::pg::catalog::Table;
use crate::pg::conn::{DbResult, describe, sqlstate};
use crate::pg::names::Names;
use crate::pg::pgoutput::{self, Message, OldTuple, Tuple, Value};

/// Prefix of wraith's fence messages in the stream.
pub const FENCE_PREFIX: &str = "wraith";
/// Prefix of heartbeat messages; the content is `<slot> <unix microseconds>`.
pub const HEARTBEAT_PREFIX: &str = "wraith-heartbeat";

/// Decoding state kept between polls.
#[derive(Debug)]
pub struct Decoder {
    rel_oid: u32,
    key: Vec<String>,
    /// (name, type oid) of every column, as preflight saw them.
    columns: Vec<(String, u32)>,
    /// Positions of the key columns in the stream's tuples.
    key_pos: Option<Vec<usize>>,
    confirmed: u64,
    server_version: i32,
    last_tick: Instant,
    /// This run's heartbeats start with it (other runs' heartbeats share the stream).
    heartbeat_tag: String,
}

impl Decoder {
    pub fn new(table: &Table, server_version: i32, slot: &str) -> Decoder {
        Decoder {
            heartbeat_tag: format!("{slot} "),
            rel_oid: table.oid,
            key: table.key.clone(),
            // pgoutput leaves generated columns out of its relation descriptions.
            columns: table
                .columns
                .iter()
                .filter(|c| !c.generated)
                .map(|c| (c.name.clone(), c.type_oid))
                .collect(),
            key_pos: None,
            confirmed: 0,
            server_version,
            last_tick: Instant::now(),
        }
    }
}

/// The memory the decoding of one poll may hold before it spills transactions to
/// disk. A copy chunk is one transaction of tens of megabytes of decoded rows
/// (not published, but decoded all the same), so at the server's default of
/// 64 MB, with copy workers in parallel, nearly every chunk spilled: measured on
/// 1M orders, decoding took 1.3 s and wrote 274 MB to disk instead of 0.42 s and
/// nothing. The memory lasts one poll (the SQL interface frees it at the end of
/// each call).
pub const DECODING_WORK_MEM_MB: i64 = 256;

/// Raises `logical_decoding_work_mem` of the session that polls the slot to
/// [`DECODING_WORK_MEM_MB`] unless the server's is already higher.
pub async fn tune_session(capture: &Client) -> anyhow::Result<()> {
    capture
        .batch_execute(&format!(
            "SELECT set_config('logical_decoding_work_mem', \
                    greatest(setting::bigint, {}) || 'kB', false) \
             FROM pg_settings WHERE name = 'logical_decoding_work_mem'",
            DECODING_WORK_MEM_MB * 1024
        ))
        .await
        .db("raising logical_decoding_work_mem for the capture session")
}

/// Creates the publication (on `ctrl`) and then the slot (on `capture`, whose
/// session owns it unless `persistent`). The publication must exist before the
/// slot's start point. Returns the slot's start point.
pub async fn create(
    ctrl: &Client,
    capture: &Client,
    names: &Names,
    timeout: Duration,
    persistent: bool,
) -> anyhow::Result<String> {
    ctrl.batch_execute(&format!(
        "CREATE PUBLICATION {} FOR TABLE {}",
        crate::pg::sql::ident(&names.publication),
        names.src()
    ))
    .await
    .db("creating the publication")?;
    capture
        .batch_execute(&format!("SET statement_timeout = {}", timeout.as_millis()))
        .await
        .db("setting the slot creation timeout")?;
    let created = capture
        .query_one(
            "SELECT lsn::text FROM pg_create_logical_replication_slot($1, 'pgoutput', $2)",
            &[&names.slot, &!persistent],
        )
        .await;
    capture
        .batch_execute("SET statement_timeout = 0")
        .await
        .db("resetting the statement timeout")?;
    match created {
        Ok(row) => Ok(row.get(0)),
        Err(e) if sqlstate(&e) == Some("57014") => {
            let prepared = prepared_transactions(ctrl).await?;
            let blockers = ctrl
                .query(
                    "SELECT pid, coalesce(state, ''), coalesce(now() - xact_start, '0'::interval)::text, \
                            left(coalesce(query, ''), 80) \
                     FROM pg_stat_activity WHERE backend_xid IS NOT NULL AND pid <> pg_backend_pid()",
                    &[],
                )
                .await
                .db("listing transactions that block slot creation")?;
            let list: Vec<String> = blockers
                .iter()
                .map(|r| {
                    format!(
                        "pid {} ({}, open for {}): {}",
                        r.get::<_, i32>(0),
                        r.get::<_, String>(1),
                        r.get::<_, String>(2),
                        r.get::<_, String>(3)
                    )
                })
                .chain(prepared)
                .collect();
            Err(anyhow::anyhow!(
                "creating the replication slot waits for transactions that were open when it started, \
                 and they did not finish within {timeout:?}: {}. End them (or wait for a quieter moment) \
                 and run again",
                if list.is_empty() {
                    "they have all ended since".to_string()
                } else {
                    list.join("; ")
                }
            ))
        }
        Err(e) => Err(anyhow::anyhow!(
            "creating the replication slot: {}",
            describe(&e)
        )),
    }
}

/// Prepared transactions (two-phase commit): each holds an XID, so creating a
/// logical slot waits for it until someone commits or rolls it back, and no
/// session shows it in `pg_stat_activity`. One line each, with what ends it.
pub async fn prepared_transactions(c: &Client) -> anyhow::Result<Vec<String>> {
    Ok(c.query(
        "SELECT gid, owner::text, database::text, date_trunc('second', now() - prepared)::text \
             FROM pg_prepared_xacts ORDER BY prepared",
        &[],
    )
    .await
    .db("listing prepared transactions")?
    .iter()
    .map(|r| {
        let gid: String = r.get(0);
        format!(
            "prepared transaction {} (pg_prepared_xacts: database {}, owner {}, prepared {} ago): \
                 COMMIT PREPARED {} or ROLLBACK PREPARED {} ends it",
            crate::pg::sql::literal(&gid),
            r.get::<_, String>(2),
            r.get::<_, String>(1),
            r.get::<_, String>(3),
            crate::pg::sql::literal(&gid),
            crate::pg::sql::literal(&gid)
        )
    })
    .collect())
}

/// A resumed run takes up the interrupted run's persistent slot: returns the
/// position it confirmed (every change before it is applied).
pub async fn reopen(c: &Client, names: &Names, dec: &Mutex<Decoder>) -> anyhow::Result<String> {
    let row = c
        .query_opt(
            "SELECT confirmed_flush_lsn::text, active FROM pg_replication_slots WHERE slot_name = $1",
            &[&names.slot],
        )
        .await
        .db("looking for the interrupted run's replication slot")?
        .ok_or_else(|| {
            anyhow::anyhow!(
                "the interrupted run's replication slot {} is gone: it cannot be resumed",
                names.slot
            )
        })?;
    let (lsn, active): (Option<String>, bool) = (row.get(0), row.get(1));
    if active {
        anyhow::bail!(
            "replication slot {} is in use by another session: is another wraith run going?",
            names.slot
        );
    }
    let lsn = lsn.unwrap_or_else(|| "0/0".into());
    dec.lock().unwrap_or_else(|e| e.into_inner()).confirmed =
        pgoutput::parse_lsn(&lsn).unwrap_or(0);
    Ok(lsn)
}

/// Reads committed changes (at most about `max_events` rows) without consuming them.
/// `spare` is another idle session, used to keep decoding cheap (see [`log_snapshot`]);
/// `None` while the cutover holds its lock: slot creation could wait on sessions
/// queued behind that lock.
pub async fn poll(
    c: &Client,
    spare: Option<&Client>,
    names: &Names,
    dec: &Mutex<Decoder>,
    max_events: u64,
) -> anyhow::Result<ChangeBatch> {
    let limit = max_events.min(i32::MAX as u64) as i32;
    // Decoding stops at the flush point read first: a poll that returns fewer rows
    // than the limit has seen every transaction committed before it, so the slot
    // may move there even when nothing was published (the copy's own transactions).
    let started = Instant::now();
    let upto: String = c
        .query_one("SELECT pg_current_wal_flush_lsn()::text", &[])
        .await
        .db("reading the WAL flush position")?
        .get(0);
    let rows = c
        .query_raw(
            "SELECT data FROM pg_logical_slot_peek_binary_changes($1, $4::text::pg_lsn, $2, \
               'proto_version', '1', 'publication_names', $3, 'messages', 'true')",
            [
                &names.slot as &(dyn tokio_postgres::types::ToSql + Sync),
                &limit,
                &names.publication,
                &upto,
            ],
        )
        .await
        .db("reading the replication slot")?;
    pin_mut!(rows);
    let mut batch = ChangeBatch::default();
    let mut txn = Txn::default();
    let mut xids = Vec::new();
    let mut n: u64 = 0;
    while let Some(row) = rows.try_next().await.db("reading the replication slot")? {
        n += 1;
        let data: &[u8] = row.get(0);
        let msg = pgoutput::decode(data)
            .map_err(|e| anyhow::anyhow!("decoding the change stream: {e}"))?;
        let mut d = dec.lock().unwrap_or_else(|e| e.into_inner());
        d.apply(msg, &mut txn, &mut batch, &mut xids)?;
    }
    batch.caught_up = n < limit as u64;
    if batch.caught_up {
        batch.position = Some(upto);
    }
    let tick = {
        let mut d = dec.lock().unwrap_or_else(|e| e.into_inner());
        let due = started.elapsed() > SLOW_POLL && d.last_tick.elapsed() > TICK_EVERY;
        if due {
            d.last_tick = Instant::now();
        }
        due.then_some(d.server_version)
    };
    tracing::debug!(
        rows = n,
        took_ms = started.elapsed().as_millis() as u64,
        tick = tick.is_some(),
        "polled the slot"
    );
    if let (Some(version), Some(spare)) = (tick, spare) {
        log_snapshot(spare, names, version).await;
    }
    wait_visible(c, &xids).await?;
    Ok(batch)
}

/// A poll slower than this means decoding re-reads old WAL: the cutover's drain
/// would pay for it while writes are blocked.
const SLOW_POLL: Duration = Duration::from_millis(5);
/// At most one snapshot record per this interval.
const TICK_EVERY: Duration = Duration::from_millis(500);

/// Each peek decodes from the slot's restart point, which only moves at a
/// running-transactions WAL record (logged by the server every 15 s). After a large
/// copy every poll would re-decode all of it, so wraith logs one itself: PostgreSQL
/// 16+ with `pg_log_standby_snapshot()` where permitted, otherwise by creating and
/// dropping a temporary logical slot, which logs one (and needs only REPLICATION).
/// Best effort: on failure decoding is slower, not wrong. Never run on the capture
/// session: an error there would drop its temporary slot.
async fn log_snapshot(spare: &Client, names: &Names, server_version: i32) {
    if server_version >= 160000
        && spare
            .execute("SELECT pg_log_standby_snapshot()", &[])
            .await
            .is_ok()
    {
        return;
    }
    let tick = format!("{}_tick", names.slot);
    let result = async {
        spare.batch_execute("SET statement_timeout = 1000").await?;
        let created = spare
            .execute(
                "SELECT 1 FROM pg_create_logical_replication_slot($1, 'pgoutput', true)",
                &[&tick],
            )
            .await;
        spare.batch_execute("SET statement_timeout = 0").await?;
        created?;
        spare
            .execute("SELECT pg_drop_replication_slot($1)", &[&tick])
            .await
    }
    .await;
    if let Err(e) = result {
        tracing::debug!(
            "could not log a standby snapshot (decoding stays slower): {}",
            describe(&e)
        );
    }
}

/// Keys of the transaction being decoded.
#[derive(Debug, Default)]
struct Txn {
    xid: u32,
    keys: Vec<Key>,
    fences: Vec<String>,
}

impl Decoder {
    fn apply(
        &mut self,
        msg: Message,
        txn: &mut Txn,
        batch: &mut ChangeBatch,
        xids: &mut Vec<u32>,
    ) -> anyhow::Result<()> {
        match msg {
            Message::Begin { xid, .. } => {
                *txn = Txn {
                    xid,
                    ..Txn::default()
                };
            }
            Message::Relation {
                rel_id, columns, ..
            } if rel_id == self.rel_oid => {
                let seen: Vec<(String, u32)> = columns
                    .iter()
                    .map(|c| (c.name.clone(), c.type_id))
                    .collect();
                if seen != self.columns {
                    anyhow::bail!(
                        "the source table's columns changed during the migration (DDL on the table); \
                         aborting: the original table is untouched"
                    );
                }
                let pos = self
                    .key
                    .iter()
                    .map(|k| {
                        columns.iter().position(|c| &c.name == k).ok_or_else(|| {
                            anyhow::anyhow!("key column {k} missing from the change stream")
                        })
                    })
                    .collect::<anyhow::Result<Vec<_>>>()?;
                self.key_pos = Some(pos);
            }
            Message::Insert { rel_id, new } if rel_id == self.rel_oid => {
                txn.keys.push(self.key_of(&new)?);
                batch.events += 1;
            }
            Message::Update { rel_id, old, new } if rel_id == self.rel_oid => {
                let new_key = self.key_of(&new)?;
                if let Some(OldTuple::Key(t) | OldTuple::Full(t)) = old {
                    let old_key = self.key_of(&t)?;
                    if old_key != new_key {
                        txn.keys.push(old_key);
                    }
                }
                txn.keys.push(new_key);
                batch.events += 1;
            }
            Message::Delete {
                rel_id,
                old: OldTuple::Key(t) | OldTuple::Full(t),
            } if rel_id == self.rel_oid => {
                txn.keys.push(self.key_of(&t)?);
                batch.events += 1;
            }
            Message::Truncate { rel_ids, .. } if rel_ids.contains(&self.rel_oid) => {
                anyhow::bail!(
                    "the source table was TRUNCATEd during the migration; aborting: nothing was swapped"
                );
            }
            Message::Message {
                prefix,
                content,
                transactional,
                ..
            } if prefix == FENCE_PREFIX => {
                let id = String::from_utf8_lossy(&content).into_owned();
                if transactional {
                    txn.fences.push(id);
                } else {
                    batch.fences.push(id);
                }
            }
            Message::Message {
                prefix, content, ..
            } if prefix == HEARTBEAT_PREFIX => {
                let text = String::from_utf8_lossy(&content);
                if let Some(Ok(sent)) = text
                    .strip_prefix(&self.heartbeat_tag)
                    .map(|t| t.parse::<i64>())
                {
                    batch.heartbeats.push(sent);
                }
            }
            Message::Commit {
                end_lsn,
                commit_time_us,
                ..
            } => {
                if !txn.keys.is_empty() {
                    xids.push(txn.xid);
                }
                batch.keys.append(&mut txn.keys);
                batch.fences.append(&mut txn.fences);
                batch.position = Some(pgoutput::format_lsn(end_lsn));
                batch.last_commit_unix_us = Some(pgoutput::pg_epoch_to_unix_us(commit_time_us));
            }
            // Other tables' relations, types, origins and other messages carry nothing for us.
            _ => {}
        }
        Ok(())
    }

    fn key_of(&self, t: &Tuple) -> anyhow::Result<Key> {
        let pos = self.key_pos.as_ref().ok_or_else(|| {
            anyhow::anyhow!("a row change arrived before its relation description")
        })?;
        pos.iter()
            .zip(&self.key)
            .map(|(&p, name)| match t.0.get(p) {
                Some(Value::Text(b)) => String::from_utf8(b.clone()).map_err(|_| {
                    anyhow::anyhow!("key column {name} is not valid UTF-8 in the change stream")
                }),
                other => Err(anyhow::anyhow!(
                    "key column {name} has no value in the change stream ({other:?})"
                )),
            })
            .collect()
    }
}

/// Waits until every transaction in `xids` is visible to a new snapshot.
async fn wait_visible(c: &Client, xids: &[u32]) -> anyhow::Result<()> {
    if xids.is_empty() {
        return Ok(());
    }
    let started = Instant::now();
    loop {
        let snap: String = c
            .query_one("SELECT pg_current_snapshot()::text", &[])
            .await
            .db("taking a snapshot for the visibility fence")?
            .get(0);
        let snap = Snapshot::parse(&snap)?;
        match xids.iter().find(|&&x| snap.in_progress(x)) {
            None => return Ok(()),
            Some(x) if started.elapsed() > Duration::from_secs(60) => {
                anyhow::bail!(
                    "transaction {x} was decoded as committed but stays invisible for over a minute"
                )
            }
            Some(_) => tokio::time::sleep(Duration::from_millis(1)).await,
        }
    }
}

/// `xmin:xmax:xip,...` of `pg_current_snapshot()`.
#[derive(Debug, PartialEq)]
struct Snapshot {
    xmin: u64,
    xmax: u64,
    xip: Vec<u64>,
}

impl Snapshot {
    fn parse(s: &str) -> anyhow::Result<Snapshot> {
        let bad = || anyhow::anyhow!("unexpected snapshot text {s:?}");
        let mut parts = s.split(':');
        let xmin = parts.next().and_then(|p| p.parse().ok()).ok_or_else(bad)?;
        let xmax = parts.next().and_then(|p| p.parse().ok()).ok_or_else(bad)?;
        let xip = match parts.next() {
            Some("") | None => Vec::new(),
            Some(list) => list
                .split(',')
                .map(|x| x.parse().map_err(|_| bad()))
                .collect::<anyhow::Result<_>>()?,
        };
        Ok(Snapshot { xmin, xmax, xip })
    }

    /// Whether the 32-bit `xid` (a recent one) is still running in this snapshot.
    fn in_progress(&self, xid: u32) -> bool {
        // Widen with xmax's epoch; a recent xid above xmax's low half is from the previous epoch.
        let mut full = (self.xmax & !0xffff_ffff) | xid as u64;
        if full > self.xmax {
            full = full.wrapping_sub(1 << 32);
        }
        full >= self.xmax || (full >= self.xmin && self.xip.contains(&full))
    }
}

/// Tells the slot that everything before `position` is applied.
pub async fn confirm(
    c: &Client,
    names: &Names,
    dec: &Mutex<Decoder>,
    position: &str,
) -> anyhow::Result<()> {
    let lsn = pgoutput::parse_lsn(position)
        .ok_or_else(|| anyhow::anyhow!("bad stream position {position}"))?;
    {
        let d = dec.lock().unwrap_or_else(|e| e.into_inner());
        if lsn <= d.confirmed {
            return Ok(());
        }
    }
    c.execute(
        "SELECT pg_replication_slot_advance($1, $2::text::pg_lsn)",
        &[&names.slot, &position],
    )
    .await
    .db("advancing the replication slot")?;
    dec.lock().unwrap_or_else(|e| e.into_inner()).confirmed = lsn;
    Ok(())
}

/// Commits one heartbeat message for this run (see [`HEARTBEAT_PREFIX`]).
pub async fn heartbeat(c: &Client, names: &Names, sent_unix_us: i64) -> anyhow::Result<()> {
    c.execute(
        "SELECT pg_logical_emit_message(true, $1, $2)",
        &[&HEARTBEAT_PREFIX, &format!("{} {sent_unix_us}", names.slot)],
    )
    .await
    .db("sending a heartbeat")?;
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn snapshot_visibility() {
        let s = Snapshot::parse("100:105:101,103").unwrap();
        assert_eq!(
            s,
            Snapshot {
                xmin: 100,
                xmax: 105,
                xip: vec![101, 103]
            }
        );
        assert!(!s.in_progress(99));
        assert!(s.in_progress(101));
        assert!(!s.in_progress(102));
        assert!(s.in_progress(105));
        assert!(!Snapshot::parse("7:7:").unwrap().in_progress(6));
        // Second epoch: xmax = 2^32 + 10; xid 5 is 2^32 + 5 (done), xid 4294967290 is from epoch 0 (done).
        let s = Snapshot::parse("4294967300:4294967306:").unwrap();
        assert!(!s.in_progress(5));
        assert!(s.in_progress(10));
        assert!(!s.in_progress(4_294_967_290));
        assert!(Snapshot::parse("garbage").is_err());
    }
}
