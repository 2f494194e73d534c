//! The way back on PostgreSQL (`--revertible`, `wraith revert`).
//!
//! Before the swap, a migration run with `--revertible` creates a second change
//! source on the shadow (a publication and a persistent slot, [`Names::back`]),
//! and writes the way back's record (the reverse mapping, the index and sequence
//! names the swap set aside) into its own table. The swap's transaction emits a
//! marker into the stream; right after it, the slot is moved to the swap's commit
//! ([`seal`]), so the way back's stream holds exactly the application's writes to
//! the new table, and none of wraith's own writes to the shadow before it.
//!
//! `wraith revert` is then a migration of its own, run by the same phase machine:
//! the table is the source, the old table is the shadow, the copy is already done
//! (the old table holds every row as of the swap), and the stream brings the old
//! table up to date through the reverse mapping before it is verified and swapped
//! back, with every dependent. Its checkpoints live beside the record, so a revert
//! that was interrupted continues where it stopped.

use futures_util::{TryStreamExt, pin_mut};
use serde::{Deserialize, Serialize};
use tokio_postgres::Client;

use crate::engine::checkpoint::Checkpoint;
use crate::error::bad_input;
use crate::pg::capture::FENCE_PREFIX;
use crate::pg::catalog::{self, Table};
use crate::pg::conn::{DbResult, describe};
use crate::pg::cutover::aside_name;
use crate::pg::names::Names;
use crate::pg::pgoutput::{self, Message};
use crate::pg::shadow::{self, Shape};
use crate::pg::sql::{KeyCols, RowSql, ident, literal};
use crate::plan::mapping::{self, Fill, TargetColumn};
use crate::plan::reverse::{Back, Reverse, ReverseColumn};
use crate::plan::{Transform, fnv1a};

/// The record's row in the way back's table; its checkpoints take row 1.
const RECORD_ROW: i32 = 0;

/// What a revert needs to know about the migration it undoes.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct Record {
    /// The forward migration's fingerprint and ALTER, for messages and the history.
    pub fingerprint: String,
    pub alter: String,
    pub reverse: Reverse,
    /// The original names of the indexes and identity sequences the forward swap
    /// gave to the new table; the old table's carry them with `_old`.
    pub indexes: Vec<String>,
    pub sequences: Vec<String>,
    /// The marker the swap's transaction emits into the stream.
    pub marker: String,
    /// The swap's commit, where the way back's stream starts (`None`: not sealed yet).
    pub from: Option<String>,
}

impl Record {
    pub fn new(fingerprint: &str, alter: &str, reverse: Reverse, shape: &Shape) -> Record {
        Record {
            fingerprint: fingerprint.to_string(),
            alter: alter.trim().to_string(),
            reverse,
            indexes: shape.index_names.iter().map(|(_, o)| o.clone()).collect(),
            sequences: shape
                .sequence_names
                .iter()
                .map(|(_, o)| o.clone())
                .collect(),
            marker: format!("swap {fingerprint}"),
            from: None,
        }
    }

    /// What the revert's checkpoints and history entry are keyed by.
    pub fn revert_fingerprint(&self) -> String {
        format!("revert-{:08x}-{}", fnv1a(&self.marker), self.fingerprint)
    }
}

/// Before the swap: the way back's publication (on the shadow, which becomes the
/// table), its persistent slot and its record. Whatever an earlier attempt left
/// under these names goes first: it never swapped, or it would not be here.
pub async fn keep(
    ctrl: &Client,
    forward: &Names,
    back: &Names,
    record: &Record,
    timeout: std::time::Duration,
) -> anyhow::Result<()> {
    let removed = forget(ctrl, back).await?;
    if !removed.is_empty() {
        tracing::warn!(
            "removed an earlier attempt's way back: {}",
            removed.join(", ")
        );
    }
    ctrl.batch_execute(&format!(
        "CREATE PUBLICATION {} FOR TABLE {}",
        ident(&back.publication),
        forward.shadow_q()
    ))
    .await
    .db("creating the way back's publication")?;
    ctrl.batch_execute(&format!("SET statement_timeout = {}", timeout.as_millis()))
        .await
        .db("setting the slot creation timeout")?;
    let created = ctrl
        .execute(
            "SELECT pg_create_logical_replication_slot($1, 'pgoutput', false)",
            &[&back.slot],
        )
        .await;
    ctrl.batch_execute("SET statement_timeout = 0")
        .await
        .db("resetting the statement timeout")?;
    created.map_err(|e| {
        anyhow::anyhow!(
            "creating the way back's replication slot {} (it waits for transactions open when it \
             started, at most {timeout:?}): {}",
            back.slot,
            describe(&e)
        )
    })?;
    crate::pg::runs::create_checkpoint_table(ctrl, back).await?;
    ctrl.execute(
        &format!(
            "INSERT INTO {} (id, state) VALUES ($1, $2)",
            back.checkpoint_q()
        ),
        &[&RECORD_ROW, &serde_json::to_string(record)?],
    )
    .await
    .db("writing the way back's record")?;
    Ok(())
}

/// The statement the swap's transaction ends with: the marker [`seal`] looks for.
pub fn mark(record: &Record) -> String {
    format!(
        "SELECT pg_logical_emit_message(true, {}, {})",
        literal(FENCE_PREFIX),
        literal(&record.marker)
    )
}

/// The way back's record, if one is kept for the table.
pub async fn read(c: &Client, back: &Names) -> anyhow::Result<Option<Record>> {
    let exists: bool = c
        .query_one(
            "SELECT to_regclass($1) IS NOT NULL",
            &[&back.checkpoint_q()],
        )
        .await
        .db("looking for the way back")?
        .get(0);
    if !exists {
        return Ok(None);
    }
    let row = c
        .query_opt(
            &format!("SELECT state FROM {} WHERE id = $1", back.checkpoint_q()),
            &[&RECORD_ROW],
        )
        .await
        .db("reading the way back's record")?;
    row.map(|r| {
        serde_json::from_str::<Record>(&r.get::<_, String>(0))
            .map_err(|e| anyhow::anyhow!("the way back's record is not readable: {e}"))
    })
    .transpose()
}

/// The interrupted revert's checkpoint, if it saved one.
pub async fn checkpoint(c: &Client, back: &Names) -> anyhow::Result<Option<Checkpoint>> {
    let row = c
        .query_opt(
            &format!("SELECT state FROM {} WHERE id = 1", back.checkpoint_q()),
            &[],
        )
        .await
        .db("reading the revert's checkpoint")?;
    Ok(row.and_then(|r| serde_json::from_str(&r.get::<_, String>(0)).ok()))
}

/// Right after the swap: moves the way back's slot to the commit of the swap's
/// transaction (found by its marker) and records it. Returns that position; an
/// error means the marker is not in the stream (the swap did not commit).
pub async fn seal(c: &Client, back: &Names, record: &mut Record) -> anyhow::Result<String> {
    if let Some(from) = &record.from {
        return Ok(from.clone());
    }
    // The stream is dropped before the next statement on the session: unread rows
    // would hold the connection.
    let from = {
        let rows = c
            .query_raw(
                "SELECT data FROM pg_logical_slot_peek_binary_changes($1, NULL, NULL, \
                   'proto_version', '1', 'publication_names', $2, 'messages', 'true')",
                [&back.slot, &back.publication],
            )
            .await
            .db("reading the way back's stream")?;
        pin_mut!(rows);
        let mut marked = false;
        let mut from = None;
        while let Some(row) = rows.try_next().await.db("reading the way back's stream")? {
            let data: &[u8] = row.get(0);
            match pgoutput::decode(data).map_err(|e| anyhow::anyhow!("decoding the stream: {e}"))? {
                Message::Message {
                    prefix, content, ..
                } if prefix == FENCE_PREFIX && content == record.marker.as_bytes() => marked = true,
                Message::Commit { end_lsn, .. } if marked => {
                    from = Some(pgoutput::format_lsn(end_lsn));
                    break;
                }
                _ => {}
            }
        }
        from
    };
    let from = from.ok_or_else(|| {
        anyhow::anyhow!(
            "the swap is not in the way back's stream: the migration that kept it never swapped; \
             `wraith revert --forget` removes it"
        )
    })?;
    c.execute(
        "SELECT pg_replication_slot_advance($1, $2::text::pg_lsn)",
        &[&back.slot, &from],
    )
    .await
    .db("starting the way back's stream at the swap")?;
    record.from = Some(from.clone());
    c.execute(
        &format!(
            "UPDATE {} SET state = $2 WHERE id = $1",
            back.checkpoint_q()
        ),
        &[&RECORD_ROW, &serde_json::to_string(record)?],
    )
    .await
    .db("recording where the way back starts")?;
    Ok(from)
}

/// A revert swapped and stopped before it removed the way back: the old table
/// is the table again and the new shape is set aside.
pub async fn swapped_back(c: &Client, back: &Names) -> anyhow::Result<bool> {
    Ok(c.query_one(
        "SELECT to_regclass($1) IS NOT NULL AND to_regclass($2) IS NULL AND to_regclass($3) IS NOT NULL",
        &[&back.checkpoint_q(), &back.shadow_q(), &back.old_q()],
    )
    .await
    .db("looking for a revert that swapped")?
    .get(0))
}

/// Removes the way back: its slot, publication and record (the old table stays).
pub async fn forget(c: &Client, back: &Names) -> anyhow::Result<Vec<String>> {
    crate::pg::cleanup::remove(c, back, crate::pg::cleanup::ActiveSlot::Refuse, true).await
}

/// `wraith revert --forget`: the way back goes; what it kept the old table
/// up to stays.
pub async fn forget_command(
    spec: &crate::plan::MigrationSpec,
    drop_old: bool,
) -> anyhow::Result<Vec<String>> {
    let back = Names::back(spec.schema(), &spec.table)?;
    let c = crate::pg::conn::connect(&spec.dsn, "forget").await?;
    crate::pg::runs::lock(&c, &back).await?;
    let kept = read(&c, &back).await?.is_some();
    let mut removed = forget(&c, &back).await?;
    // Only the old table of a way back: never a table that merely has its name.
    if drop_old && kept {
        c.batch_execute(&format!("DROP TABLE IF EXISTS {}", back.shadow_q()))
            .await
            .db("dropping the old table (--drop-old)")?;
        removed.push(format!("old table {}", back.shadow_q()));
    }
    Ok(removed)
}

/// The old table as the shadow of the way back: its columns filled from the
/// table through the record's reverse mapping, keeping its own values of the
/// columns the new table lacks, and refusing values that would not fit back.
pub async fn adopt(
    c: &Client,
    back: &Names,
    table: &Table,
    record: &Record,
) -> anyhow::Result<Shape> {
    let old = back.shadow_q();
    let exists: bool = c
        .query_one("SELECT to_regclass($1) IS NOT NULL", &[&old])
        .await
        .db("looking for the old table")?
        .get(0);
    if !exists {
        return Err(bad_input(format!(
            "the old table {old} is gone: there is nothing to revert to. `wraith revert --forget` \
             removes the way back"
        )));
    }
    let old_columns = catalog::columns_of(c, &old).await?;
    let back_of = |name: &str| {
        record
            .reverse
            .columns
            .iter()
            .find(|r| r.old == name)
            .map(|r| &r.back)
    };
    let source = table.source_columns();
    let targets: Vec<TargetColumn> = old_columns
        .iter()
        .map(|col| TargetColumn {
            name: col.name.clone(),
            type_name: col.type_name.clone(),
            origin: match back_of(&col.name) {
                Some(Back::Column { from, .. }) => Some(from.clone()),
                _ => None,
            },
            insertable: !col.generated,
            required: false,
        })
        .collect();
    let given: Vec<Transform> = record
        .reverse
        .columns
        .iter()
        .filter_map(|r| match &r.back {
            Back::Given(expr) => Some(Transform {
                column: r.old.clone(),
                expr: expr.clone(),
            }),
            _ => None,
        })
        .collect();
    let mapping = mapping::derive(&source, &targets, &[], &given, &table.key, ident)?;
    let old_key: Vec<String> = table
        .key
        .iter()
        .map(|k| mapping.carried_name(k).unwrap_or(k).to_string())
        .collect();
    let key = KeyCols::new(table, old_key, &old_columns);
    let uniques = shadow::unique_indexes(c, &old, &key.shadow).await?;
    let mut sql = RowSql::build(&back.src(), &old, &key, &mapping, &uniques);
    let mut kept = Vec::new();
    for m in mapping.columns.iter().filter(|m| m.fill == Fill::Default) {
        let default: Option<String> = c
            .query_one(
                "SELECT pg_get_expr(d.adbin, d.adrelid) FROM pg_attribute a \
                 LEFT JOIN pg_attrdef d ON d.adrelid = a.attrelid AND d.adnum = a.attnum \
                 WHERE a.attrelid = $1::text::regclass AND a.attname = $2",
                &[&old, &m.target],
            )
            .await
            .db("reading the old table's defaults")?
            .get(0);
        kept.push((m.target.clone(), default.unwrap_or_else(|| "NULL".into())));
    }
    sql.keep_old_values(&back.src(), &old, &key, &mapping, &kept);
    sql.guard = guard(back, table, &record.reverse, &key);
    for stmt in [Some(&sql.apply_insert), sql.guard.as_ref()]
        .into_iter()
        .flatten()
    {
        c.prepare(stmt).await.map_err(|e| {
            bad_input(format!(
                "the way back does not work with the tables as they are now: {}\n  statement: {stmt}",
                describe(&e)
            ))
        })?;
    }
    let aside = |names: &[String]| -> Vec<(String, String)> {
        names
            .iter()
            .map(|o| (aside_name(o, "_old"), o.clone()))
            .collect()
    };
    Ok(Shape {
        ddl: Vec::new(),
        index_names: aside(&record.indexes),
        sequence_names: aside(&record.sequences),
        deferred_indexes: Vec::new(),
        deferred_fks: Vec::new(),
        rewritten: None,
        mapping,
        key,
        sql,
    })
}

/// Verification of the way back, old table against the table, each column of
/// the old one compared in its successor's type: a column carried over (cast
/// back exactly, see [`guard`]) with the column it went to, a column given by
/// `--reverse-transform` with the column of its name, where the new table has
/// one (json that went to jsonb and back compares as jsonb, not as text). The
/// columns the ALTER dropped (kept in the old table) and added (left behind)
/// are not compared.
pub async fn verifier(
    c: &Client,
    dsn: &crate::dsn::Dsn,
    back: &Names,
    table: &Table,
    record: &Record,
) -> anyhow::Result<crate::pg::verify::Verifier> {
    let old = catalog::table(c, &back.schema, &back.shadow).await?;
    let new_type = |name: &str| {
        table
            .columns
            .iter()
            .find(|c| c.name == name)
            .map(|c| c.type_name.clone())
    };
    let pairs = record
        .reverse
        .columns
        .iter()
        .filter_map(|r| {
            let successor = match &r.back {
                Back::Column { from, .. } => from.clone(),
                Back::Given(_) => r.old.clone(),
                Back::Kept | Back::Generated => return None,
            };
            Some((ident(&r.old), successor.clone(), new_type(&successor)?))
        })
        .collect();
    let new_key: Vec<String> = old
        .key
        .iter()
        .map(
            |k| match record.reverse.columns.iter().find(|r| &r.old == k) {
                Some(ReverseColumn {
                    back: Back::Column { from, .. },
                    ..
                }) => from.clone(),
                _ => k.clone(),
            },
        )
        .collect();
    let key = KeyCols::new(&old, new_key, &table.columns);
    Ok(crate::pg::verify::Verifier::new(
        dsn,
        back.shadow_q(),
        back.src(),
        key,
        pairs,
    ))
}

/// The keys among `$1..$k` whose values cast back would not come out the same:
/// a text cast to a shorter varchar, a numeric to fewer digits. (A cast that
/// fails outright, such as a bigint above the int range, makes the check fail,
/// and the apply then finds the keys one by one.)
fn guard(back: &Names, table: &Table, reverse: &Reverse, key: &KeyCols) -> Option<String> {
    let checks: Vec<String> = reverse
        .columns
        .iter()
        .filter_map(|r| match &r.back {
            Back::Column { from, cast: true } => {
                let new_type = &table.columns.iter().find(|c| &c.name == from)?.type_name;
                let col = ident(from);
                Some(format!(
                    "CAST(CAST({col} AS {}) AS {new_type}) IS DISTINCT FROM {col}",
                    r.type_name
                ))
            }
            _ => None,
        })
        .collect();
    if checks.is_empty() {
        return None;
    }
    let keys: Vec<String> = key
        .source
        .iter()
        .map(|k| format!("{}::text", ident(k)))
        .collect();
    Some(format!(
        "SELECT {} FROM ONLY {} WHERE {} AND ({})",
        keys.join(", "),
        back.src(),
        key.in_arrays(&key.source),
        checks.join(" OR ")
    ))
}

/// The revert's preflight: the record, the tables as they are now, the shape of
/// the way back and where its stream stands. Read-only but for sealing a way back
/// whose migration stopped between its swap and the seal.
pub async fn preflight(
    c: &Client,
    back: &Names,
    execute: bool,
) -> anyhow::Result<(crate::pg::preflight::Checked, Record)> {
    let target = format!("{}.{}", back.schema, back.table);
    let mut record = read(c, back).await?.ok_or_else(|| {
        bad_input(format!(
            "no way back is kept for {target}: it was migrated without --revertible, or the way \
             back was forgotten or used already"
        ))
    })?;
    let (server_version, server): (i32, String) = {
        let r = c
            .query_one(
                "SELECT current_setting('server_version_num')::int, current_setting('server_version')",
                &[],
            )
            .await
            .db("reading the server version")?;
        (r.get(0), r.get(1))
    };
    if record.from.is_none() && execute {
        seal(c, back, &mut record).await?;
    }
    let table = catalog::table(c, &back.schema, &back.table).await?;
    let definition = crate::pg::definition::read(c, back, table.oid).await?;
    let shape = adopt(c, back, &table, &record).await?;
    let deps = crate::pg::dependents::read(c, back, &table, &shape.mapping, server_version).await?;
    let lag: Option<String> = c
        .query_one(
            "SELECT pg_size_pretty(pg_wal_lsn_diff(pg_current_wal_lsn(), confirmed_flush_lsn)) \
             FROM pg_replication_slots WHERE slot_name = $1",
            &[&back.slot],
        )
        .await
        .db("reading the way back's slot")?
        .get(0);
    let plan = crate::plan::Plan {
        target: target.clone(),
        server: format!("PostgreSQL {server}"),
        estimated_rows: table.estimated_rows,
        key_columns: table.key.clone(),
        source_steps: vec![format!(
            "replication slot {} (kept since the swap{}), {} of WAL to read",
            back.slot,
            record
                .from
                .as_deref()
                .map(|l| format!(" at {l}"))
                .unwrap_or_default(),
            lag.unwrap_or_else(|| "?".into())
        )],
        shadow_ddl: vec![format!(
            "none: the old table {} holds every row as of the swap (the ALTER undone: {})",
            back.shadow_q(),
            record.alter
        )],
        mapping: shape.mapping.clone(),
        copy_sql: "none".into(),
        apply_sql: [&shape.sql.apply_delete, &shape.sql.apply_insert]
            .into_iter()
            .filter(|s| !s.is_empty())
            .cloned()
            .chain(shape.sql.guard.clone())
            .collect(),
        cutover_steps: crate::pg::preflight::cutover_steps(back, &table, &deps),
        warnings: deps.warnings.clone(),
        fingerprint: record.revert_fingerprint(),
        ..Default::default()
    };
    let resume = match checkpoint(c, back).await? {
        Some(cp) => cp,
        None => Checkpoint {
            tool: env!("CARGO_PKG_VERSION").to_string(),
            resumable: true,
            fingerprint: record.revert_fingerprint(),
            shape: crate::engine::checkpoint::shape_digest(&plan),
            copy_done: true,
            position: record.from.clone(),
            ..Checkpoint::default()
        },
    };
    crate::engine::checkpoint::check_shape(&resume, &plan, &target)?;
    let checked = crate::pg::preflight::Checked {
        table,
        definition,
        deps,
        shape,
        plan,
        server_version,
        resume: Some(resume),
    };
    Ok((checked, record))
}
