//! Change capture on MySQL/MariaDB: a binary log stream from the position taken
//! before the copy starts (DESIGN 2.A), read by a background task.
//!
//! The task keeps the keys of the source table's row images (insert: the new
//! key; update: the old and the new one; delete: the old one) and the changelog
//! table's heartbeats and fences, and hands them to `poll` through a bounded
//! channel. Any event it does not understand, and any DDL on the source table,
//! ends the stream with an error: the run aborts before the swap (2.F).
//!
//! Positions (`file:offset`) are handed out at transaction ends only: a resumed
//! run's stream starts at one (DESIGN 2.G).

use std::panic::AssertUnwindSafe;

use futures_util::{FutureExt, Stream, StreamExt};
use mysql_async::binlog::events::{Event, EventData, RowsEventData, TableMapEvent};
use mysql_async::binlog::row::BinlogRow;
use mysql_async::binlog::value::BinlogValue;
use mysql_async::prelude::Queryable;
use mysql_async::{BinlogStream, BinlogStreamRequest, Conn, Row, Value};
use tokio::sync::{Mutex, mpsc};

use crate::engine::ChangeBatch;
use crate::error::ConnectionLost;
use crate::key::Key;
use crate::mysql::binlog::{Handling, check_rows, handling};
use crate::mysql::conn::{MyResult, describe};
use crate::mysql::names::Names;
use crate::mysql::rows::value_text;

/// Row events buffered between the reader and the apply.
const BUFFER: usize = 4096;
/// The changelog rows: a heartbeat (value: unix microseconds sent) and a fence.
pub const HEARTBEAT_ID: i64 = 1;
pub const FENCE_ID: i64 = 2;
pub const OWNER_ID: i64 = 0;
/// The run's checkpoint (JSON).
pub const CHECKPOINT_ID: i64 = 3;

/// What one event told the reader.
#[derive(Debug, Default)]
struct Item {
    keys: Vec<Key>,
    fence: Option<String>,
    heartbeat: Option<i64>,
    events: u64,
    /// A transaction ended here: the stream may restart at this position.
    position: Option<String>,
}

/// Which columns of the source's row images make the key, and how wide each
/// unsigned integer column is (binary log integers carry no sign).
#[derive(Debug, Clone)]
pub struct KeyLayout {
    pub columns: Vec<usize>,
    pub unsigned_bits: Vec<Option<u32>>,
}

impl KeyLayout {
    /// From the source's columns `(name, type)` and its key.
    pub fn new(columns: &[(String, String)], key: &[String]) -> anyhow::Result<KeyLayout> {
        let mut idx = Vec::new();
        let mut bits = Vec::new();
        for k in key {
            let (i, (_, t)) = columns
                .iter()
                .enumerate()
                .find(|(_, (n, _))| n == k)
                .ok_or_else(|| {
                    anyhow::anyhow!("key column {k} is not among the table's columns")
                })?;
            idx.push(i);
            let t = t.to_ascii_lowercase();
            bits.push(
                t.contains("unsigned")
                    // `int(10) unsigned` on MariaDB, `int unsigned` on MySQL 8.
                    .then(|| match t.split(['(', ' ']).next().unwrap_or("") {
                        "tinyint" => 8,
                        "smallint" => 16,
                        "mediumint" => 24,
                        "int" | "integer" => 32,
                        _ => 64,
                    }),
            );
        }
        Ok(KeyLayout {
            columns: idx,
            unsigned_bits: bits,
        })
    }

    /// The key of a row image that holds the table's columns marked in `held`.
    fn key(&self, row: &BinlogRow, held: &[bool]) -> anyhow::Result<Key> {
        self.columns
            .iter()
            .zip(&self.unsigned_bits)
            .map(|(&i, bits)| match column(row, held, i) {
                Some(BinlogValue::Value(Value::Int(v))) if *v < 0 && bits.is_some() => {
                    let bits = bits.unwrap_or(64);
                    Ok((i128::from(*v) + (1i128 << bits)).to_string())
                }
                Some(BinlogValue::Value(v)) => value_text(v),
                _ => {
                    anyhow::bail!("the row image lacks key column {i} (is binlog_row_image FULL?)")
                }
            })
            .collect()
    }
}

/// Which of the table's columns a row image holds (`cols`: its bitmap).
fn held<B: std::ops::Deref<Target = bool>>(cols: Option<impl IntoIterator<Item = B>>) -> Vec<bool> {
    cols.into_iter().flatten().map(|b| *b).collect()
}

/// The table's column `i` in a row image: the driver keeps only the columns
/// the image holds, in order.
fn column<'a>(row: &'a BinlogRow, held: &[bool], i: usize) -> Option<&'a BinlogValue<'a>> {
    if !held.get(i).copied().unwrap_or(false) {
        return None;
    }
    row.as_ref(held.iter().take(i).filter(|h| **h).count())
}

/// The running reader.
pub struct Reader {
    rx: Mutex<mpsc::Receiver<anyhow::Result<Item>>>,
    task: tokio::task::JoinHandle<()>,
    /// Binary log file and position the stream started at (for the logs).
    pub start: (String, u64),
}

impl Drop for Reader {
    fn drop(&mut self) {
        self.task.abort();
    }
}

/// Creates the changelog table (heartbeats, fences, checkpoints) and marks it as
/// this run's: the marker tells the next run and `wraith cleanup` it is wraith's.
pub async fn create_changelog(c: &mut Conn, n: &Names) -> anyhow::Result<()> {
    c.query_drop(format!(
        "CREATE TABLE {} (id int PRIMARY KEY, value longtext NOT NULL) ENGINE=InnoDB \
         COMMENT='wraith changelog for {}'",
        n.changelog_q(),
        n.table.replace('\'', "''")
    ))
    .await
    .my("creating the changelog table")?;
    c.exec_drop(
        format!("INSERT INTO {} (id, value) VALUES (?, ?)", n.changelog_q()),
        (OWNER_ID, format!("wraith pid {}", std::process::id())),
    )
    .await
    .my("marking the changelog table")
}

/// The server's current binary log file and position.
pub async fn position(c: &mut Conn) -> anyhow::Result<(String, u64)> {
    let row: Option<Row> = match c.query_first("SHOW MASTER STATUS").await {
        Ok(r) => r,
        // MySQL 8.4 renamed it.
        Err(_) => c
            .query_first("SHOW BINARY LOG STATUS")
            .await
            .my("reading the binary log position")?,
    };
    let row = row.ok_or_else(|| {
        anyhow::anyhow!("SHOW MASTER STATUS returned nothing: is the binary log on (log_bin)?")
    })?;
    let file: String = row.get(0).unwrap_or_default();
    let pos: u64 = row.get(1).unwrap_or_default();
    Ok((file, pos))
}

/// A position as wraith writes it: `file:offset`.
pub fn parse_position(p: &str) -> Option<(String, u64)> {
    let (file, pos) = p.rsplit_once(':')?;
    Some((file.to_string(), pos.parse().ok()?))
}

/// Starts streaming on `stream_conn` from `from` (a resumed run), or from the
/// current position, read on `c`.
pub async fn start(
    c: &mut Conn,
    stream_conn: Conn,
    names: &Names,
    layout: KeyLayout,
    from: Option<(String, u64)>,
) -> anyhow::Result<Reader> {
    let (file, pos) = match from {
        Some(p) => p,
        None => position(c).await?,
    };
    // A replica id of its own: the server drops an older stream with the same id.
    let server_id =
        1_000_000_000 + (std::process::id() % 1_000_000) * 1000 + rand::random_range(0..1000);
    let stream = stream_conn
        .get_binlog_stream(
            BinlogStreamRequest::new(server_id)
                .with_filename(file.as_bytes())
                .with_pos(pos),
        )
        .await
        .my("starting the binary log stream")?;
    let (tx, rx) = mpsc::channel(BUFFER);
    let task = tokio::spawn(read(stream, tx, names.clone(), layout, file.clone()));
    Ok(Reader {
        rx: Mutex::new(rx),
        task,
        start: (file, pos),
    })
}

/// The table maps a binary log stream has read, by table id.
trait TableMaps {
    fn table_map(&self, table_id: u64) -> Option<&TableMapEvent<'static>>;
}

impl TableMaps for BinlogStream {
    fn table_map(&self, table_id: u64) -> Option<&TableMapEvent<'static>> {
        self.get_tme(table_id)
    }
}

async fn read<S>(
    mut stream: S,
    tx: mpsc::Sender<anyhow::Result<Item>>,
    names: Names,
    layout: KeyLayout,
    mut file: String,
) where
    S: Stream<Item = mysql_async::Result<Event>> + TableMaps + Unpin,
{
    while let Some(event) = next_event(&mut stream).await {
        let item = event.and_then(|event| on_event(&stream, &event, &names, &layout, &mut file));
        let failed = item.is_err();
        match item {
            Ok(None) => {}
            Ok(Some(item)) => {
                if tx.send(Ok(item)).await.is_err() {
                    return;
                }
            }
            Err(e) => {
                let _ = tx.send(Err(e)).await;
            }
        }
        if failed {
            return;
        }
    }
    let _ = tx
        .send(Err(ConnectionLost(
            "the server ended the binary log stream".into(),
        )
        .into()))
        .await;
}

/// The stream's next event. The driver trusts an event's own length, so a
/// malformed one can panic it: that ends the run with an error that says so,
/// rather than a reader that stopped for no stated reason.
async fn next_event<S>(stream: &mut S) -> Option<anyhow::Result<Event>>
where
    S: Stream<Item = mysql_async::Result<Event>> + Unpin,
{
    match AssertUnwindSafe(stream.next()).catch_unwind().await {
        Ok(None) => None,
        Ok(Some(Ok(event))) => Some(Ok(event)),
        Ok(Some(Err(e))) => Some(Err(crate::mysql::conn::error(
            &e,
            format!("reading the binary log: {}", describe(&e)),
        ))),
        Err(panic) => {
            let what = panic
                .downcast_ref::<&str>()
                .map(|s| s.to_string())
                .or_else(|| panic.downcast_ref::<String>().cloned())
                .unwrap_or_default();
            Some(Err(anyhow::anyhow!(
                "the MySQL driver failed reading a malformed binary log event ({what}); \
                 aborting, nothing was swapped"
            )))
        }
    }
}

fn on_event(
    maps: &impl TableMaps,
    event: &Event,
    names: &Names,
    layout: &KeyLayout,
    file: &mut String,
) -> anyhow::Result<Option<Item>> {
    match handling(event)? {
        Handling::Rows => on_rows(maps, event, names, layout, file),
        Handling::Query => check_query(event, names, file).map(|()| None),
        Handling::Commit => Ok(Some(Item {
            position: Some(format!("{file}:{}", event.header().log_pos())),
            ..Item::default()
        })),
        Handling::Ignore => {
            let rotate = event.header().event_type_raw()
                == mysql_async::binlog::EventType::ROTATE_EVENT as u8;
            if rotate && let Ok(Some(EventData::RotateEvent(r))) = event.read_data() {
                *file = rotated_name(r.name_raw(), file);
            }
            Ok(None)
        }
        Handling::TableMap | Handling::Begin => Ok(None),
    }
}

/// Where an event is, for error messages: its type and the position after it.
fn at(event: &Event, file: &str) -> String {
    let header = event.header();
    let kind = match header.event_type() {
        Ok(t) => format!("{t:?}"),
        Err(_) => format!("event type {}", header.event_type_raw()),
    };
    format!("{kind} ending at {file}:{}", header.log_pos())
}

/// The keys of a row event on the source table, or the signals of one on the
/// changelog; nothing for other tables.
fn on_rows(
    maps: &impl TableMaps,
    event: &Event,
    names: &Names,
    layout: &KeyLayout,
    file: &str,
) -> anyhow::Result<Option<Item>> {
    let Some(EventData::RowsEvent(rows)) = event.read_data().map_err(|e| {
        anyhow::anyhow!(
            "decoding a row event ({}): {e}; aborting, nothing was swapped",
            at(event, file)
        )
    })?
    else {
        anyhow::bail!(
            "a row event ({}) could not be decoded; aborting, nothing was swapped",
            at(event, file)
        );
    };
    let tme = maps.table_map(rows.table_id()).ok_or_else(|| {
        anyhow::anyhow!(
            "a row event ({}) for table id {} arrived without its table map; aborting, \
             nothing was swapped",
            at(event, file),
            rows.table_id()
        )
    })?;
    if tme.database_name() != names.schema.as_str() {
        return Ok(None);
    }
    let table = tme.table_name();
    let source = table == names.table.as_str();
    if !source && table != names.changelog.as_str() {
        return Ok(None);
    }
    let decoded = check_rows(&rows, tme).and_then(|()| {
        if source {
            source_keys(&rows, tme, layout)
        } else {
            changelog_signals(&rows, tme)
        }
    });
    decoded.map(Some).map_err(|e| {
        anyhow::anyhow!(
            "decoding the rows of {}.{table} ({}): {e}; aborting, nothing was swapped",
            names.schema,
            at(event, file)
        )
    })
}

/// The old and new keys of the source's rows (an unchanged key once).
fn source_keys(
    rows: &RowsEventData,
    tme: &TableMapEvent,
    layout: &KeyLayout,
) -> anyhow::Result<Item> {
    let before_cols = held(rows.columns_before_image());
    let after_cols = held(rows.columns_after_image());
    let mut item = Item::default();
    for row in rows.rows(tme) {
        let (before, after) = row?;
        item.events += 1;
        for (image, cols) in [(before, &before_cols), (after, &after_cols)] {
            let Some(image) = image else { continue };
            let k = layout.key(&image, cols)?;
            if item.keys.last() != Some(&k) {
                item.keys.push(k);
            }
        }
    }
    Ok(item)
}

/// Heartbeats and fences written to the changelog.
fn changelog_signals(rows: &RowsEventData, tme: &TableMapEvent) -> anyhow::Result<Item> {
    let cols = held(rows.columns_after_image());
    let mut item = Item::default();
    for row in rows.rows(tme) {
        let (_, after) = row?;
        let Some(after) = after else { continue };
        let id = match column(&after, &cols, 0) {
            Some(BinlogValue::Value(Value::Int(i))) => *i,
            _ => continue,
        };
        let value = match column(&after, &cols, 1) {
            Some(BinlogValue::Value(v)) => value_text(v).unwrap_or_default(),
            _ => continue,
        };
        match id {
            HEARTBEAT_ID => item.heartbeat = value.parse().ok(),
            FENCE_ID => item.fence = Some(value),
            _ => {}
        }
    }
    Ok(item)
}

/// The file a rotate event names. The first one, sent before the format
/// description event, names the file the stream starts in, followed by a 4-byte
/// checksum when the server writes them: the driver cannot strip it yet, and
/// guessing where the name ends would misread a checksum byte that happens to be
/// a digit. So a name that is the current one plus at most 4 bytes is the current
/// one; any other rotate (parsed after the format description) is taken as is.
fn rotated_name(raw: &[u8], current: &str) -> String {
    if !current.is_empty()
        && raw.starts_with(current.as_bytes())
        && raw.len() - current.len() <= CHECKSUM_LEN
    {
        return current.to_string();
    }
    String::from_utf8_lossy(raw).into_owned()
}

/// Length of a binary log event's checksum (CRC32).
const CHECKSUM_LEN: usize = 4;

/// DDL on the source table during the run would make the copy and the stream
/// disagree about the table's shape: stop. So must a statement that cannot be
/// read, as it may be such DDL.
fn check_query(event: &Event, names: &Names, file: &str) -> anyhow::Result<()> {
    let q = match event.read_data() {
        Ok(Some(EventData::QueryEvent(q))) => q,
        other => anyhow::bail!(
            "decoding a statement ({}): {}; it may change the table, so wraith stops; \
             aborting, nothing was swapped",
            at(event, file),
            other
                .err()
                .map_or("not a query event".into(), |e| e.to_string())
        ),
    };
    let text = q.query();
    let default_schema = q.schema();
    let touched = changed_tables(&text);
    let hits = touched.iter().any(|(schema, table)| {
        *table == names.table && schema.as_deref().unwrap_or(&default_schema) == names.schema
    });
    if hits {
        anyhow::bail!(
            "{} ran on {}.{} during the migration: the rows copied so far may no longer match; \
             aborting, nothing was swapped. Run the migration again afterwards",
            text.chars().take(200).collect::<String>(),
            names.schema,
            names.table
        );
    }
    Ok(())
}

/// The tables a DDL statement changes, as (schema, table): the target of ALTER,
/// TRUNCATE, OPTIMIZE, REPAIR, every table of DROP TABLE, and every renamed-away
/// table of RENAME TABLE.
fn changed_tables(sql: &str) -> Vec<(Option<String>, String)> {
    let words: Vec<String> = sql
        .split(|c: char| c.is_whitespace() || c == ',' || c == ';')
        .filter(|w| !w.is_empty())
        .map(str::to_string)
        .collect();
    let is = |i: usize, kw: &str| words.get(i).is_some_and(|w| w.eq_ignore_ascii_case(kw));
    let name = |w: &str| -> (Option<String>, String) {
        let parts: Vec<String> = w
            .split('.')
            .map(|p| p.trim_matches('`').replace("``", "`"))
            .collect();
        match parts.as_slice() {
            [s, t] => (Some(s.clone()), t.clone()),
            _ => (None, parts.last().cloned().unwrap_or_default()),
        }
    };
    let first = words
        .first()
        .map(|w| w.to_ascii_uppercase())
        .unwrap_or_default();
    let mut i = 1;
    match first.as_str() {
        "ALTER" | "OPTIMIZE" | "REPAIR" | "TRUNCATE" => {
            while i < words.len() && !is(i, "TABLE") && first != "TRUNCATE" {
                i += 1;
            }
            if is(i, "TABLE") {
                i += 1;
            }
            if is(i, "IF") && is(i + 1, "EXISTS") {
                i += 2;
            }
            words.get(i).map(|w| vec![name(w)]).unwrap_or_default()
        }
        "DROP"
            if words
                .iter()
                .take(3)
                .any(|w| w.eq_ignore_ascii_case("TABLE")) =>
        {
            while i < words.len() && !is(i, "TABLE") {
                i += 1;
            }
            i += 1;
            if is(i, "IF") && is(i + 1, "EXISTS") {
                i += 2;
            }
            words[i.min(words.len())..]
                .iter()
                .filter(|w| {
                    !w.eq_ignore_ascii_case("RESTRICT") && !w.eq_ignore_ascii_case("CASCADE")
                })
                .map(|w| name(w))
                .collect()
        }
        "RENAME" => (0..words.len())
            .filter(|&j| j > 0 && is(j, "TO"))
            .map(|j| name(&words[j - 1]))
            .collect(),
        _ => Vec::new(),
    }
}

impl Reader {
    /// What the reader has collected since the last poll (at most about `max_events` row events).
    pub async fn poll(&self, max_events: u64) -> anyhow::Result<ChangeBatch> {
        let mut rx = self.rx.lock().await;
        let mut batch = ChangeBatch::default();
        loop {
            if batch.events >= max_events {
                break;
            }
            match rx.try_recv() {
                Ok(item) => {
                    let item = item?;
                    batch.events += item.events;
                    batch.keys.extend(item.keys);
                    batch.fences.extend(item.fence);
                    batch.heartbeats.extend(item.heartbeat);
                    if item.position.is_some() {
                        batch.position = item.position;
                    }
                }
                Err(mpsc::error::TryRecvError::Empty) => {
                    batch.caught_up = true;
                    break;
                }
                Err(mpsc::error::TryRecvError::Disconnected) => {
                    anyhow::bail!("the binary log reader stopped")
                }
            }
        }
        Ok(batch)
    }
}

#[cfg(test)]
mod tests;
