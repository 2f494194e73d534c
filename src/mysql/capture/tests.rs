//! Byte-level tests of the binary log decoder: crafted events in, keys or a clear
//! error out, truncated and corrupted input included.

use super::*;
use std::collections::{HashMap, VecDeque};
use std::pin::Pin;
use std::task::{Context, Poll};

use mysql_async::binlog::events::{FormatDescriptionEvent, RotateEvent};
use mysql_async::binlog::{BinlogVersion, EventType as E};

// Column types as a table map spells them.
const LONG: u8 = 3;
const LONGLONG: u8 = 8;
const DATE: u8 = 10;
const VARCHAR: u8 = 15;
const DATETIME2: u8 = 18;
const NEWDECIMAL: u8 = 246;
const BLOB: u8 = 252;

/// CRC-32 (ISO-HDLC), the binary log's checksum.
fn crc32(bytes: &[u8]) -> u32 {
    let mut c = !0u32;
    for &b in bytes {
        c ^= u32::from(b);
        for _ in 0..8 {
            c = if c & 1 == 1 {
                (c >> 1) ^ 0xEDB8_8320
            } else {
                c >> 1
            };
        }
    }
    !c
}

fn lenenc(n: usize) -> Vec<u8> {
    match n {
        0..251 => vec![n as u8],
        _ => [&[0xfc][..], &(n as u16).to_le_bytes()].concat(),
    }
}

fn table_id(id: u64) -> Vec<u8> {
    id.to_le_bytes()[..6].to_vec()
}

/// A binary log as the server sends it: the v4 header, the body, and a CRC32
/// once the format description said so.
struct Log {
    pos: u32,
    checksums: bool,
}

impl Log {
    fn new(checksums: bool) -> Log {
        Log { pos: 4, checksums }
    }

    fn framed(&mut self, event_type: u8, body: &[u8], checksum: bool) -> Vec<u8> {
        let size = (19 + body.len() + if checksum { 4 } else { 0 }) as u32;
        self.pos += size;
        let mut b = Vec::new();
        b.extend_from_slice(&1_700_000_000u32.to_le_bytes());
        b.push(event_type);
        b.extend_from_slice(&1u32.to_le_bytes()); // server id
        b.extend_from_slice(&size.to_le_bytes());
        b.extend_from_slice(&self.pos.to_le_bytes());
        b.extend_from_slice(&0u16.to_le_bytes()); // flags
        b.extend_from_slice(body);
        if checksum {
            let crc = crc32(&b);
            b.extend_from_slice(&crc.to_le_bytes());
        }
        b
    }

    fn event(&mut self, event_type: u8, body: &[u8]) -> Vec<u8> {
        self.framed(event_type, body, self.checksums)
    }

    /// Always checksummed, whatever the algorithm (byte after the lengths).
    fn format_description(&mut self, server: &str, lengths: &[u8]) -> Vec<u8> {
        let mut b = 4u16.to_le_bytes().to_vec();
        let mut version = server.as_bytes().to_vec();
        version.resize(50, 0);
        b.extend_from_slice(&version);
        b.extend_from_slice(&1_700_000_000u32.to_le_bytes());
        b.push(19);
        b.extend_from_slice(lengths);
        b.push(u8::from(self.checksums)); // 1: CRC32
        self.framed(E::FORMAT_DESCRIPTION_EVENT as u8, &b, true)
    }

    fn mysql8(&mut self) -> Vec<u8> {
        self.format_description("8.0.36", MYSQL_8_0_LENGTHS)
    }

    fn mariadb(&mut self) -> Vec<u8> {
        self.format_description("10.11.8-MariaDB-log", &mariadb_lengths())
    }

    fn xid(&mut self) -> Vec<u8> {
        self.event(E::XID_EVENT as u8, &77u64.to_le_bytes())
    }

    fn rotate(&mut self, name: &str) -> Vec<u8> {
        let body = [&4u64.to_le_bytes()[..], name.as_bytes()].concat();
        self.event(E::ROTATE_EVENT as u8, &body)
    }

    fn query(&mut self, schema: &str, sql: &str) -> Vec<u8> {
        let mut b = Vec::new();
        b.extend_from_slice(&9u32.to_le_bytes()); // thread id
        b.extend_from_slice(&0u32.to_le_bytes()); // seconds it took
        b.push(schema.len() as u8);
        b.extend_from_slice(&0u16.to_le_bytes()); // error code
        b.extend_from_slice(&0u16.to_le_bytes()); // status variables' length
        b.extend_from_slice(schema.as_bytes());
        b.push(0);
        b.extend_from_slice(sql.as_bytes());
        self.event(E::QUERY_EVENT as u8, &b)
    }
}

/// The post-header lengths MySQL 8.0 announces, by event type - 1 (table
/// map 8, v1 rows 8, v2 rows 10, query 13...).
const MYSQL_8_0_LENGTHS: &[u8] = &[
    0, 13, 0, 8, 0, 0, 0, 0, 4, 0, 4, 0, 0, 0, 98, 0, 4, 26, 8, 0, 0, 0, 8, 8, 8, 2, 0, 0, 0, 10,
    10, 10, 42, 42, 0, 18, 52, 0, 10, 40, 0,
];

/// MariaDB announces one length per type up to its last (171).
fn mariadb_lengths() -> Vec<u8> {
    let mut l = vec![0u8; 171];
    let by_length: &[(u8, &[usize])] = &[
        (13, &[2, 165]),                          // query, compressed query
        (8, &[4, 19, 23, 24, 25, 166, 167, 168]), // rotate, table map, v1 rows
        (10, &[30, 31, 32, 169, 170, 171]),       // v2 rows
        (4, &[8, 9, 10, 11, 17, 161, 163]),       // load data, checkpoint, GTID list
        (19, &[162]),                             // GTID
        (56, &[1]),
        (18, &[6, 12]),
        (228, &[15]),
        (26, &[18]),
        (2, &[26]),
    ];
    for &(len, types) in by_length {
        for &t in types {
            l[t - 1] = len;
        }
    }
    l
}

/// A TABLE_MAP body: `(type, metadata)` per column, then optional metadata.
fn table_map(id: u64, db: &str, table: &str, cols: &[(u8, &[u8])], optional: &[u8]) -> Vec<u8> {
    let mut b = table_id(id);
    b.extend_from_slice(&1u16.to_le_bytes());
    for name in [db, table] {
        b.push(name.len() as u8);
        b.extend_from_slice(name.as_bytes());
        b.push(0);
    }
    b.extend(lenenc(cols.len()));
    b.extend(cols.iter().map(|(t, _)| *t));
    let meta: Vec<u8> = cols.iter().flat_map(|(_, m)| m.to_vec()).collect();
    b.extend(lenenc(meta.len()));
    b.extend(meta);
    b.extend(vec![0xff; cols.len().div_ceil(8)]); // all nullable
    b.extend_from_slice(optional);
    b
}

#[derive(Clone, Copy)]
enum Rows {
    Write,
    Update,
    Delete,
}

/// A row event body of `v2` (MySQL) or v1 (MariaDB) layout; `rows` holds
/// the row images (before and after ones in turn for an update).
fn rows_body(kind: Rows, v2: bool, id: u64, columns: usize, rows: &[Vec<u8>]) -> Vec<u8> {
    let mut b = table_id(id);
    b.extend_from_slice(&1u16.to_le_bytes()); // STMT_END_F
    if v2 {
        b.extend_from_slice(&2u16.to_le_bytes()); // no extra data
    }
    b.extend(lenenc(columns));
    let all = vec![0xffu8; columns.div_ceil(8)];
    let bitmaps = if matches!(kind, Rows::Update) { 2 } else { 1 };
    for _ in 0..bitmaps {
        b.extend_from_slice(&all);
    }
    for r in rows {
        b.extend_from_slice(r);
    }
    b
}

fn rows_type(kind: Rows, v2: bool) -> u8 {
    (match (kind, v2) {
        (Rows::Write, true) => E::WRITE_ROWS_EVENT,
        (Rows::Update, true) => E::UPDATE_ROWS_EVENT,
        (Rows::Delete, true) => E::DELETE_ROWS_EVENT,
        (Rows::Write, false) => E::WRITE_ROWS_EVENT_V1,
        (Rows::Update, false) => E::UPDATE_ROWS_EVENT_V1,
        (Rows::Delete, false) => E::DELETE_ROWS_EVENT_V1,
    }) as u8
}

/// One row image: the NULL bitmap (bit set: NULL), then the other values.
fn image(values: &[Option<Vec<u8>>]) -> Vec<u8> {
    let mut nulls = vec![0u8; values.len().div_ceil(8)];
    for (i, v) in values.iter().enumerate() {
        if v.is_none() {
            nulls[i / 8] |= 1 << (i % 8);
        }
    }
    let data = values.iter().flatten().flat_map(|v| v.to_vec());
    nulls.into_iter().chain(data).collect()
}

fn ks(keys: &[&[&str]]) -> Vec<Key> {
    keys.iter()
        .map(|k| k.iter().map(|v| v.to_string()).collect())
        .collect()
}

fn int(v: i32) -> Option<Vec<u8>> {
    Some(v.to_le_bytes().to_vec())
}

fn bigint(v: i64) -> Option<Vec<u8>> {
    Some(v.to_le_bytes().to_vec())
}

/// A VARCHAR value: one length byte below 256 bytes of declared width, two above.
fn varchar(s: &str, wide: bool) -> Option<Vec<u8>> {
    let len = if wide {
        (s.len() as u16).to_le_bytes().to_vec()
    } else {
        vec![s.len() as u8]
    };
    Some([len, s.as_bytes().to_vec()].concat())
}

/// A TEXT value (2 length bytes).
fn text(s: &str) -> Option<Vec<u8>> {
    Some([&(s.len() as u16).to_le_bytes()[..], s.as_bytes()].concat())
}

/// A LONGTEXT value (4 length bytes).
fn longtext(s: &str) -> Option<Vec<u8>> {
    Some([&(s.len() as u32).to_le_bytes()[..], s.as_bytes()].concat())
}

/// DECIMAL(10,2): 8 integer digits in 4 bytes, 2 fraction digits in 1, big
/// endian, sign bit flipped, every bit inverted when negative.
fn decimal_10_2(cents: i64) -> Option<Vec<u8>> {
    let abs = cents.unsigned_abs();
    let mut b = ((abs / 100) as u32).to_be_bytes().to_vec();
    b.push((abs % 100) as u8);
    if cents < 0 {
        b.iter_mut().for_each(|x| *x = !*x);
    }
    b[0] ^= 0x80;
    Some(b)
}

/// DATE: day, month and year packed in 3 little-endian bytes.
fn date(y: u32, m: u32, d: u32) -> Option<Vec<u8>> {
    Some((d | m << 5 | y << 9).to_le_bytes()[..3].to_vec())
}

/// DATETIME(6): 5 big-endian bytes of packed fields, then 3 of microseconds.
fn datetime6(y: u64, mo: u64, d: u64, h: u64, mi: u64, s: u64, us: u32) -> Option<Vec<u8>> {
    let packed = 0x80_0000_0000 | ((y * 13 + mo) << 22 | d << 17 | h << 12 | mi << 6 | s);
    let mut b = packed.to_be_bytes()[3..].to_vec();
    b.extend_from_slice(&us.to_be_bytes()[1..]);
    Some(b)
}

/// What `BinlogStream` keeps, kept as its reader (mysql_common's
/// `EventStreamReader`) does: the format description and the table maps.
struct Maps {
    fde: FormatDescriptionEvent<'static>,
    tables: HashMap<u64, TableMapEvent<'static>>,
}

impl Maps {
    fn new() -> Maps {
        Maps {
            fde: FormatDescriptionEvent::new(BinlogVersion::Version4),
            tables: HashMap::new(),
        }
    }

    fn read(&mut self, bytes: &[u8]) -> std::io::Result<Event> {
        let event = Event::read(&self.fde, bytes)?;
        let t = event.header().event_type_raw();
        if t == E::FORMAT_DESCRIPTION_EVENT as u8 {
            let fde = event.read_event::<FormatDescriptionEvent<'_>>()?;
            self.fde = fde.into_owned().with_footer(event.footer());
        } else if t == E::TABLE_MAP_EVENT as u8 {
            let tme = event.read_event::<TableMapEvent<'_>>()?;
            self.tables.insert(tme.table_id(), tme.into_owned());
        } else if t == E::ROTATE_EVENT as u8 && !event.read_event::<RotateEvent<'_>>()?.is_fake() {
            self.tables.clear();
        }
        Ok(event)
    }
}

impl TableMaps for Maps {
    fn table_map(&self, table_id: u64) -> Option<&TableMapEvent<'static>> {
        self.tables.get(&table_id)
    }
}

/// Events in, what the reader makes of them out, for one source table.
struct Feed {
    maps: Maps,
    names: Names,
    layout: KeyLayout,
    file: String,
}

impl Feed {
    /// `columns`: `(name, COLUMN_TYPE)`, as information_schema gives them.
    fn new(table: &str, columns: &[(&str, &str)], key: &[&str]) -> Feed {
        let columns: Vec<(String, String)> = columns
            .iter()
            .map(|(n, t)| (n.to_string(), t.to_string()))
            .collect();
        let key: Vec<String> = key.iter().map(|k| k.to_string()).collect();
        Feed {
            maps: Maps::new(),
            names: Names::new("app", table).unwrap(),
            layout: KeyLayout::new(&columns, &key).unwrap(),
            file: "binlog.000001".into(),
        }
    }

    fn on(&mut self, bytes: &[u8]) -> anyhow::Result<Option<Item>> {
        let event = self.maps.read(bytes)?;
        on_event(
            &self.maps,
            &event,
            &self.names,
            &self.layout,
            &mut self.file,
        )
    }

    fn keys(&mut self, bytes: &[u8]) -> Vec<Key> {
        self.on(bytes).unwrap().expect("an item").keys
    }

    fn error(&mut self, bytes: &[u8]) -> String {
        format!("{:#}", self.on(bytes).expect_err("an error"))
    }
}

/// `app.items (id int PRIMARY KEY, name varchar(64) utf8mb4, note text)`:
/// a varchar of 256 bytes takes two length bytes.
fn items() -> (Feed, Vec<u8>) {
    let feed = Feed::new(
        "items",
        &[("id", "int(11)"), ("name", "varchar(64)"), ("note", "text")],
        &["id"],
    );
    let tm = table_map(
        70,
        "app",
        "items",
        &[(LONG, &[]), (VARCHAR, &[0, 1]), (BLOB, &[2])],
        &[],
    );
    (feed, tm)
}

fn item_row(id: i32, name: &str, note: Option<&str>) -> Vec<u8> {
    image(&[int(id), varchar(name, true), note.and_then(text)])
}

/// Inserts, updates and deletes on an integer key, as MySQL 8 (v2 row
/// events) and MariaDB 10.11 (v1) write them.
fn int_key_rows(v2: bool) {
    let (mut feed, tm) = items();
    let mut log = Log::new(true);
    let fde = if v2 { log.mysql8() } else { log.mariadb() };
    assert!(feed.on(&fde).unwrap().is_none());
    assert!(
        feed.on(&log.event(E::TABLE_MAP_EVENT as u8, &tm))
            .unwrap()
            .is_none()
    );
    let rows = |kind, images: &[Vec<u8>], log: &mut Log| {
        log.event(rows_type(kind, v2), &rows_body(kind, v2, 70, 3, images))
    };
    let write = rows(
        Rows::Write,
        &[item_row(1, "a", None), item_row(2, "b", Some("x"))],
        &mut log,
    );
    let item = feed.on(&write).unwrap().unwrap();
    assert_eq!(item.events, 2);
    assert_eq!(item.keys, ks(&[&["1"], &["2"]]));
    // The key moves: both keys. It stays: once.
    let update = rows(
        Rows::Update,
        &[
            item_row(2, "b", Some("x")),
            item_row(-20, "b", Some("x")),
            item_row(1, "a", None),
            item_row(1, "é", None),
        ],
        &mut log,
    );
    assert_eq!(feed.keys(&update), ks(&[&["2"], &["-20"], &["1"]]));
    let delete = rows(Rows::Delete, &[item_row(1, "é", None)], &mut log);
    assert_eq!(feed.keys(&delete), ks(&[&["1"]]));
    let xid = log.xid();
    let item = feed.on(&xid).unwrap().unwrap();
    assert_eq!(item.position, Some(format!("binlog.000001:{}", log.pos)));
}

#[test]
fn mysql_v2_row_events_yield_int_keys() {
    int_key_rows(true);
}

#[test]
fn mariadb_v1_row_events_yield_int_keys() {
    int_key_rows(false);
}

#[test]
fn crafted_events_carry_the_checksum_the_server_computes() {
    let (mut feed, tm) = items();
    let mut log = Log::new(true);
    let fde = log.mysql8();
    let tm = log.event(E::TABLE_MAP_EVENT as u8, &tm);
    for bytes in [&fde, &tm] {
        let event = feed.maps.read(bytes).unwrap();
        let crc =
            event.calc_checksum(mysql_async::binlog::BinlogChecksumAlg::BINLOG_CHECKSUM_ALG_CRC32);
        assert_eq!(event.checksum(), Some(crc.to_le_bytes()));
    }
}

#[test]
fn varchar_and_composite_keys() {
    // users (email varchar(100) latin1: one length byte; org int; bio text)
    let mut feed = Feed::new(
        "users",
        &[("org", "int"), ("email", "varchar(100)"), ("bio", "text")],
        &["org", "email"],
    );
    let mut log = Log::new(true);
    feed.on(&log.mysql8()).unwrap();
    let cols: &[(u8, &[u8])] = &[(LONG, &[]), (VARCHAR, &[100, 0]), (BLOB, &[2])];
    let tm = table_map(9, "app", "users", cols, &[]);
    feed.on(&log.event(E::TABLE_MAP_EVENT as u8, &tm)).unwrap();
    let row = |org, email: &str| image(&[int(org), varchar(email, false), None]);
    let update = rows_body(
        Rows::Update,
        true,
        9,
        3,
        &[
            row(7, "a@x.io"),
            row(7, "b@x.io"),
            row(8, "c d"),
            row(8, "c d"),
        ],
    );
    let keys = feed.keys(&log.event(E::UPDATE_ROWS_EVENT as u8, &update));
    assert_eq!(
        keys,
        ks(&[&["7", "a@x.io"], &["7", "b@x.io"], &["8", "c d"]])
    );
}

#[test]
fn decimal_date_and_datetime_keys() {
    // The apply binds these as text: the server reads `2024-03-05 00:00:00.000000`
    // against a DATE column as that date.
    let mut feed = Feed::new(
        "prices",
        &[
            ("amount", "decimal(10,2)"),
            ("day", "date"),
            ("at", "datetime(6)"),
            ("note", "varchar(10)"),
        ],
        &["amount", "day", "at"],
    );
    let mut log = Log::new(false);
    feed.on(&log.mariadb()).unwrap();
    let cols: &[(u8, &[u8])] = &[
        (NEWDECIMAL, &[10, 2]),
        (DATE, &[]),
        (DATETIME2, &[6]),
        (VARCHAR, &[40, 0]),
    ];
    feed.on(&log.event(
        E::TABLE_MAP_EVENT as u8,
        &table_map(5, "app", "prices", cols, &[]),
    ))
    .unwrap();
    let row = |cents, d, us| {
        image(&[
            decimal_10_2(cents),
            date(2024, 3, d),
            datetime6(2024, 12, 31, 23, 59, 58, us),
            None,
        ])
    };
    let write = rows_body(
        Rows::Write,
        false,
        5,
        4,
        &[row(123_450, 5, 123_456), row(-7, 29, 0)],
    );
    let keys = feed.keys(&log.event(E::WRITE_ROWS_EVENT_V1 as u8, &write));
    assert_eq!(
        keys,
        ks(&[
            &[
                "1234.50",
                "2024-03-05 00:00:00.000000",
                "2024-12-31 23:59:58.123456"
            ],
            &[
                "-0.07",
                "2024-03-29 00:00:00.000000",
                "2024-12-31 23:59:58.000000"
            ],
        ])
    );
}

#[test]
fn unsigned_keys_with_and_without_signedness_metadata() {
    let columns = [("a", "int unsigned"), ("b", "bigint(20) unsigned")];
    let cols: &[(u8, &[u8])] = &[(LONG, &[]), (LONGLONG, &[])];
    let row = image(&[int(-1), bigint(-2)]);
    // MariaDB: no optional metadata, the values arrive as signed.
    let mut feed = Feed::new("u", &columns, &["a", "b"]);
    let mut log = Log::new(true);
    feed.on(&log.mariadb()).unwrap();
    feed.on(&log.event(
        E::TABLE_MAP_EVENT as u8,
        &table_map(1, "app", "u", cols, &[]),
    ))
    .unwrap();
    let write = rows_body(Rows::Write, false, 1, 2, std::slice::from_ref(&row));
    let keys = feed.keys(&log.event(E::WRITE_ROWS_EVENT_V1 as u8, &write));
    assert_eq!(keys, ks(&[&["4294967295", "18446744073709551614"]]));
    // MySQL 8: SIGNEDNESS (type 1), one bit per numeric column, first column highest.
    let mut feed = Feed::new("u", &columns, &["a", "b"]);
    let mut log = Log::new(true);
    feed.on(&log.mysql8()).unwrap();
    let tm = table_map(1, "app", "u", cols, &[1, 1, 0b1100_0000]);
    feed.on(&log.event(E::TABLE_MAP_EVENT as u8, &tm)).unwrap();
    let write = rows_body(Rows::Write, true, 1, 2, &[row]);
    let keys = feed.keys(&log.event(E::WRITE_ROWS_EVENT as u8, &write));
    assert_eq!(keys, ks(&[&["4294967295", "18446744073709551614"]]));
}

/// `items_wraith_log (id int PRIMARY KEY, value longtext)`.
fn changelog_map(id: u64) -> Vec<u8> {
    let cols: &[(u8, &[u8])] = &[(LONG, &[]), (BLOB, &[4])];
    table_map(id, "app", "items_wraith_log", cols, &[])
}

#[test]
fn changelog_rows_are_heartbeats_and_fences() {
    let (mut feed, _) = items();
    let mut log = Log::new(true);
    feed.on(&log.mysql8()).unwrap();
    feed.on(&log.event(E::TABLE_MAP_EVENT as u8, &changelog_map(80)))
        .unwrap();
    let row = |id, v: &str| image(&[int(id as i32), longtext(v)]);
    let write = rows_body(
        Rows::Write,
        true,
        80,
        2,
        &[
            row(OWNER_ID, "wraith pid 1"),
            row(HEARTBEAT_ID, "1700000000123456"),
        ],
    );
    let item = feed
        .on(&log.event(E::WRITE_ROWS_EVENT as u8, &write))
        .unwrap()
        .unwrap();
    assert_eq!(item.heartbeat, Some(1_700_000_000_123_456));
    assert_eq!((item.fence, item.keys.len(), item.events), (None, 0, 0));
    // ON DUPLICATE KEY UPDATE: the after image counts.
    let update = rows_body(
        Rows::Update,
        true,
        80,
        2,
        &[
            row(FENCE_ID, "old"),
            row(FENCE_ID, "cutover-7"),
            row(CHECKPOINT_ID, "{}"),
            row(CHECKPOINT_ID, "{\"a\":1}"),
        ],
    );
    let item = feed
        .on(&log.event(E::UPDATE_ROWS_EVENT as u8, &update))
        .unwrap()
        .unwrap();
    assert_eq!(
        (item.fence.as_deref(), item.heartbeat),
        (Some("cutover-7"), None)
    );
    let delete = rows_body(Rows::Delete, true, 80, 2, &[row(FENCE_ID, "cutover-7")]);
    let item = feed
        .on(&log.event(E::DELETE_ROWS_EVENT as u8, &delete))
        .unwrap()
        .unwrap();
    assert_eq!((item.fence, item.heartbeat), (None, None));
}

#[test]
fn rows_of_other_tables_yield_nothing() {
    let (mut feed, _) = items();
    let mut log = Log::new(true);
    feed.on(&log.mysql8()).unwrap();
    let cols: &[(u8, &[u8])] = &[(LONG, &[]), (VARCHAR, &[0, 1]), (BLOB, &[2])];
    // Another table, and a table of the same name in another schema.
    for (id, db, table) in [
        (71, "app", "orders"),
        (72, "other", "items"),
        (73, "app", "items_wraith_new"),
    ] {
        let tm = table_map(id, db, table, cols, &[]);
        feed.on(&log.event(E::TABLE_MAP_EVENT as u8, &tm)).unwrap();
        let write = rows_body(Rows::Write, true, id, 3, &[item_row(1, "a", None)]);
        let item = feed
            .on(&log.event(E::WRITE_ROWS_EVENT as u8, &write))
            .unwrap();
        assert!(item.is_none(), "{db}.{table}");
    }
}

/// The items stream up to its table map, and a write of `rows` (3 columns).
fn items_then(rows: &[Vec<u8>]) -> (Feed, Log, Vec<u8>) {
    let (mut feed, tm) = items();
    let mut log = Log::new(true);
    feed.on(&log.mysql8()).unwrap();
    feed.on(&log.event(E::TABLE_MAP_EVENT as u8, &tm)).unwrap();
    let body = rows_body(Rows::Write, true, 70, 3, rows);
    (feed, log, body)
}

#[test]
fn a_row_cut_short_is_an_error_naming_the_event() {
    let (mut feed, mut log, body) = items_then(&[item_row(1, "a", None), item_row(2, "bcd", None)]);
    let cut = log.event(E::WRITE_ROWS_EVENT as u8, &body[..body.len() - 2]);
    let err = feed.error(&cut);
    assert!(
        err.contains("decoding the rows of app.items (WRITE_ROWS_EVENT ending at binlog.000001:")
            && err.contains("nothing was swapped"),
        "{err}"
    );
}

#[test]
fn a_length_past_the_end_is_an_error() {
    let mut row = item_row(1, "abc", None);
    row[5] = 200; // the varchar's length: 200 bytes, of 3
    let (mut feed, mut log, body) = items_then(&[row]);
    let err = feed.error(&log.event(E::WRITE_ROWS_EVENT as u8, &body));
    assert!(err.contains("decoding the rows of app.items"), "{err}");
}

#[test]
fn a_column_count_other_than_the_table_maps_is_an_error() {
    for columns in [2, 4] {
        let (mut feed, mut log, _) = items_then(&[]);
        let body = rows_body(Rows::Write, true, 70, columns, &[item_row(1, "a", None)]);
        let err = feed.error(&log.event(E::WRITE_ROWS_EVENT as u8, &body));
        assert!(
            err.contains(&format!(
                "the row event has {columns} columns, its table map 3"
            )),
            "{err}"
        );
    }
}

#[test]
fn a_row_event_of_no_columns_is_an_error_not_a_hang() {
    // Such rows take no bytes: the changelog, which skips rows it cannot
    // read, would loop on them for ever.
    let (mut feed, mut log, _) = items_then(&[]);
    feed.on(&log.event(E::TABLE_MAP_EVENT as u8, &changelog_map(80)))
        .unwrap();
    let mut body = rows_body(Rows::Write, true, 80, 2, &[vec![0]]);
    body[11] = 0; // the columns in the image
    let err = feed.error(&log.event(E::WRITE_ROWS_EVENT as u8, &body));
    assert!(
        err.contains("decoding the rows of app.items_wraith_log")
            && err.contains("images hold no columns"),
        "{err}"
    );
    let tm = table_map(81, "app", "items_wraith_log", &[], &[]);
    feed.on(&log.event(E::TABLE_MAP_EVENT as u8, &tm)).unwrap();
    let body = rows_body(Rows::Write, true, 81, 0, &[vec![0]]);
    let err = feed.error(&log.event(E::WRITE_ROWS_EVENT as u8, &body));
    assert!(err.contains("images hold no columns"), "{err}");
}

#[test]
fn keys_are_found_in_images_that_lack_columns() {
    // binlog_row_image = MINIMAL: the driver hands over only the columns an
    // image holds, so column 1 of `(note, id)` comes first.
    let mut feed = Feed::new("pairs", &[("note", "text"), ("id", "int")], &["id"]);
    let mut log = Log::new(true);
    feed.on(&log.mysql8()).unwrap();
    let tm = table_map(3, "app", "pairs", &[(BLOB, &[2]), (LONG, &[])], &[]);
    feed.on(&log.event(E::TABLE_MAP_EVENT as u8, &tm)).unwrap();
    let mut body = rows_body(Rows::Delete, true, 3, 2, &[image(&[int(42)])]);
    body[11] = 0b10;
    let keys = feed.keys(&log.event(E::DELETE_ROWS_EVENT as u8, &body));
    assert_eq!(keys, ks(&[&["42"]]));
    // An image without the key column.
    let mut body = rows_body(Rows::Write, true, 3, 2, &[image(&[text("x")])]);
    body[11] = 0b01;
    let err = feed.error(&log.event(E::WRITE_ROWS_EVENT as u8, &body));
    assert!(err.contains("lacks key column 1"), "{err}");
}

#[test]
fn an_image_without_the_key_is_an_error_not_another_columns_value() {
    let (mut feed, mut log, mut body) = items_then(&[image(&[varchar("a", true), None])]);
    body[11] = 0b110; // name and note, not id
    let err = feed.error(&log.event(E::WRITE_ROWS_EVENT as u8, &body));
    assert!(err.contains("lacks key column 0"), "{err}");
}

#[test]
fn a_null_key_is_an_error() {
    let (mut feed, mut log, body) = items_then(&[image(&[None, varchar("a", true), None])]);
    let err = feed.error(&log.event(E::WRITE_ROWS_EVENT as u8, &body));
    assert!(err.contains("a key column holds NULL"), "{err}");
}

#[test]
fn a_row_event_without_its_table_map_is_an_error() {
    let (mut feed, _) = items();
    let mut log = Log::new(true);
    feed.on(&log.mysql8()).unwrap();
    let body = rows_body(Rows::Delete, true, 99, 3, &[item_row(1, "a", None)]);
    let err = feed.error(&log.event(E::DELETE_ROWS_EVENT as u8, &body));
    assert!(
        err.contains("DELETE_ROWS_EVENT ending at binlog.000001:")
            && err.contains("for table id 99 arrived without its table map"),
        "{err}"
    );
}

#[test]
fn a_table_map_cut_short_is_an_error() {
    let (mut feed, tm) = items();
    let mut log = Log::new(true);
    feed.on(&log.mysql8()).unwrap();
    // Cut in the names, the column types, before and in the metadata, before
    // the NULL bitmap.
    for cut in [10, 22, 24, 27, 28] {
        let event = log.event(E::TABLE_MAP_EVENT as u8, &tm[..cut]);
        assert!(feed.on(&event).is_err(), "cut at {cut}");
    }
}

/// A table map's columns: `(type, metadata)`.
type Columns<'a> = &'a [(u8, &'a [u8])];

/// The items table map with `cols`, then a write of one items row.
fn with_table_map(cols: &[(u8, &[u8])]) -> String {
    let (mut feed, _) = items();
    let mut log = Log::new(true);
    feed.on(&log.mysql8()).unwrap();
    let tm = table_map(70, "app", "items", cols, &[]);
    feed.on(&log.event(E::TABLE_MAP_EVENT as u8, &tm)).unwrap();
    let body = rows_body(Rows::Write, true, 70, cols.len(), &[item_row(1, "a", None)]);
    feed.error(&log.event(E::WRITE_ROWS_EVENT as u8, &body))
}

#[test]
fn a_corrupt_table_map_is_an_error_not_a_panic() {
    let cases: &[(Columns, &str)] = &[
        (
            &[(LONG, &[]), (100, &[]), (BLOB, &[2])],
            "column 1: Unknown column type 100",
        ),
        // Metadata one byte short of the VARCHAR's two.
        (
            &[(LONG, &[]), (VARCHAR, &[1])],
            "metadata ends before that of column 1",
        ),
        (
            &[(LONG, &[]), (VARCHAR, &[0, 1]), (BLOB, &[])],
            "before that of column 2",
        ),
        // VAR_STRING has no metadata in a table map, yet its rows need two bytes.
        (
            &[(LONG, &[]), (253, &[]), (BLOB, &[2])],
            "column 1 (MYSQL_TYPE_VAR_STRING)",
        ),
        (
            &[(LONG, &[]), (20, &[LONG]), (BLOB, &[2])],
            "MYSQL_TYPE_TYPED_ARRAY",
        ),
        (
            &[(NEWDECIMAL, &[2, 5]), (VARCHAR, &[0, 1]), (BLOB, &[2])],
            "DECIMAL(2,5)",
        ),
    ];
    for (cols, expected) in cases {
        let err = with_table_map(cols);
        assert!(
            err.contains("decoding the rows of app.items") && err.contains(expected),
            "{expected}: {err}"
        );
    }
}

#[test]
fn ddl_in_query_events_is_checked_against_the_source() {
    let (mut feed, _) = items();
    let mut log = Log::new(true);
    feed.on(&log.mariadb()).unwrap();
    for (schema, sql) in [
        ("app", "BEGIN"),
        ("other", "ALTER TABLE items ADD x int"),
        ("app", "ALTER TABLE orders ADD x int"),
    ] {
        assert!(feed.on(&log.query(schema, sql)).unwrap().is_none(), "{sql}");
    }
    for (schema, sql) in [
        ("app", "ALTER TABLE items ADD x int"),
        ("", "DROP TABLE `app`.`items`"),
    ] {
        let err = feed.error(&log.query(schema, sql));
        assert!(
            err.contains("ran on app.items during the migration"),
            "{err}"
        );
    }
}

#[test]
fn an_unreadable_query_event_is_an_error() {
    let (mut feed, _) = items();
    let mut log = Log::new(true);
    feed.on(&log.mariadb()).unwrap();
    let mut body = log.query("app", "ALTER TABLE items ADD x int")[19..].to_vec();
    body.truncate(body.len() - 4); // the checksum: framed anew below
    body[11] = 0xff; // status variables: 255 bytes, past the end
    let err = feed.error(&log.event(E::QUERY_EVENT as u8, &body));
    assert!(
        err.contains("decoding a statement (QUERY_EVENT ending at"),
        "{err}"
    );
}

#[test]
fn rotations_move_positions_to_the_new_file() {
    let (mut feed, tm) = items();
    feed.file = "binlog.000002".into();
    let mut log = Log::new(true);
    // Sent before the format description: the name still carries its checksum.
    feed.on(&log.rotate("binlog.000002")).unwrap();
    assert_eq!(feed.file, "binlog.000002");
    feed.on(&log.mysql8()).unwrap();
    feed.on(&log.event(E::TABLE_MAP_EVENT as u8, &tm)).unwrap();
    let xid = log.xid();
    assert_eq!(
        feed.on(&xid).unwrap().unwrap().position,
        Some(format!("binlog.000002:{}", log.pos))
    );
    feed.on(&log.rotate("binlog.000003")).unwrap();
    assert_eq!(feed.file, "binlog.000003");
    // The new file's table maps come anew.
    let body = rows_body(Rows::Write, true, 70, 3, &[item_row(1, "a", None)]);
    let err = feed.error(&log.event(E::WRITE_ROWS_EVENT as u8, &body));
    assert!(err.contains("without its table map"), "{err}");
    let mut log = Log::new(true);
    feed.on(&log.mysql8()).unwrap();
    let xid = log.xid();
    assert_eq!(
        feed.on(&xid).unwrap().unwrap().position,
        Some(format!("binlog.000003:{}", log.pos))
    );
}

/// A MySQL 8 stream touching items and its changelog, as event bodies.
fn sample() -> Vec<(u8, Vec<u8>)> {
    let (_, tm) = items();
    let log_row = image(&[int(HEARTBEAT_ID as i32), longtext("1700000000123456")]);
    vec![
        (E::TABLE_MAP_EVENT as u8, tm),
        (
            E::WRITE_ROWS_EVENT as u8,
            rows_body(
                Rows::Write,
                true,
                70,
                3,
                &[item_row(1, "a", None), item_row(2, "b", Some("x"))],
            ),
        ),
        (
            E::UPDATE_ROWS_EVENT as u8,
            rows_body(
                Rows::Update,
                true,
                70,
                3,
                &[item_row(2, "b", Some("x")), item_row(3, "b", None)],
            ),
        ),
        (
            E::DELETE_ROWS_EVENT as u8,
            rows_body(Rows::Delete, true, 70, 3, &[item_row(3, "b", None)]),
        ),
        (E::TABLE_MAP_EVENT as u8, changelog_map(80)),
        (
            E::WRITE_ROWS_EVENT as u8,
            rows_body(Rows::Write, true, 80, 2, &[log_row]),
        ),
        (E::XID_EVENT as u8, 77u64.to_le_bytes().to_vec()),
    ]
}

/// Runs `events` through a fresh reader; a panic fails the test, naming `case`.
fn survives(events: &[(u8, Vec<u8>)], case: &str) {
    let run = || {
        let (mut feed, _) = items();
        let mut log = Log::new(true);
        feed.on(&log.mysql8()).unwrap();
        for (t, body) in events {
            if feed.on(&log.event(*t, body)).is_err() {
                break;
            }
        }
    };
    let outcome = std::panic::catch_unwind(AssertUnwindSafe(run));
    assert!(outcome.is_ok(), "{case} panicked");
}

#[test]
fn no_corrupted_or_truncated_event_panics_the_decoder() {
    let events = sample();
    survives(&events, "the sample");
    for (n, (_, body)) in events.iter().enumerate() {
        for (at, &byte) in body.iter().enumerate() {
            for value in [0x00, 0xff, byte ^ 0x01, byte ^ 0x80] {
                let mut changed = events.clone();
                changed[n].1[at] = value;
                survives(&changed, &format!("event {n}, byte {at} = {value:#x}"));
            }
            let mut cut = events.clone();
            cut[n].1.truncate(at);
            survives(&cut, &format!("event {n} cut at {at}"));
        }
    }
}

/// The driver's stream, fed packets: each read as `BinlogStream` reads it.
struct Packets {
    maps: Maps,
    packets: VecDeque<Vec<u8>>,
}

impl Stream for Packets {
    type Item = mysql_async::Result<Event>;

    fn poll_next(mut self: Pin<&mut Self>, _: &mut Context<'_>) -> Poll<Option<Self::Item>> {
        let this = &mut *self;
        let next = this.packets.pop_front();
        Poll::Ready(next.map(|p| this.maps.read(&p).map_err(Into::into)))
    }
}

impl TableMaps for Packets {
    fn table_map(&self, table_id: u64) -> Option<&TableMapEvent<'static>> {
        self.maps.table_map(table_id)
    }
}

/// What the reader task hands to `poll` for `packets`, in order.
async fn read_all(packets: Vec<Vec<u8>>) -> Vec<anyhow::Result<Item>> {
    let (feed, _) = items();
    let (tx, mut rx) = mpsc::channel(64);
    let stream = Packets {
        maps: Maps::new(),
        packets: packets.into(),
    };
    read(stream, tx, feed.names, feed.layout, feed.file).await;
    let mut out = Vec::new();
    while let Ok(item) = rx.try_recv() {
        out.push(item);
    }
    out
}

#[tokio::test]
async fn the_reader_hands_over_keys_then_stops_at_a_bad_event() {
    let (_, tm) = items();
    let mut log = Log::new(true);
    let write = rows_body(Rows::Write, true, 70, 3, &[item_row(5, "a", None)]);
    let packets = vec![
        log.rotate("binlog.000001"),
        log.mysql8(),
        log.event(E::TABLE_MAP_EVENT as u8, &tm),
        log.event(E::WRITE_ROWS_EVENT as u8, &write),
        log.xid(),
        log.event(E::TABLE_MAP_EVENT as u8, &tm[..20]),
        log.xid(),
    ];
    let items = read_all(packets).await;
    assert_eq!(items.len(), 3, "{items:?}");
    assert_eq!(items[0].as_ref().unwrap().keys, ks(&[&["5"]]));
    assert!(items[1].as_ref().unwrap().position.is_some());
    let err = format!("{:#}", items[2].as_ref().unwrap_err());
    assert!(err.starts_with("reading the binary log: "), "{err}");
}

#[tokio::test]
async fn an_event_longer_than_its_packet_ends_the_run_with_an_error() {
    let mut log = Log::new(true);
    let mut short = log.xid();
    short[9..13].copy_from_slice(&200u32.to_le_bytes()); // event size
    let items = read_all(vec![log.mysql8(), short]).await;
    assert_eq!(items.len(), 1, "{items:?}");
    let err = format!("{:#}", items[0].as_ref().unwrap_err());
    assert!(
        err.contains("the MySQL driver failed reading a malformed binary log event"),
        "{err}"
    );
}

#[tokio::test]
async fn the_end_of_the_stream_is_a_lost_connection() {
    let mut log = Log::new(true);
    let items = read_all(vec![log.mysql8()]).await;
    let err = items[0].as_ref().unwrap_err();
    assert!(crate::error::is_connection_lost(err), "{err:#}");
}

#[test]
fn key_layouts_read_the_base_type() {
    let cols: Vec<(String, String)> = [
        ("a", "int unsigned"),
        ("b", "int(10) unsigned"),
        ("c", "mediumint unsigned zerofill"),
        ("d", "bigint unsigned"),
        ("e", "int"),
    ]
    .iter()
    .map(|(n, t)| (n.to_string(), t.to_string()))
    .collect();
    let key: Vec<String> = ["a", "b", "c", "d", "e"]
        .iter()
        .map(|k| k.to_string())
        .collect();
    let layout = KeyLayout::new(&cols, &key).unwrap();
    assert_eq!(
        layout.unsigned_bits,
        vec![Some(32), Some(32), Some(24), Some(64), None]
    );
}

#[test]
fn rotate_names_lose_trailing_checksums() {
    // A checksum whose first bytes are digits.
    assert_eq!(
        rotated_name(b"binlog.00000217>\x12", "binlog.000002"),
        "binlog.000002"
    );
    assert_eq!(
        rotated_name(b"binlog.000002\xab\xcd>\x12", "binlog.000002"),
        "binlog.000002"
    );
    assert_eq!(
        rotated_name(b"binlog.000002", "binlog.000002"),
        "binlog.000002"
    );
    assert_eq!(
        rotated_name(b"binlog.000003", "binlog.000002"),
        "binlog.000003"
    );
    assert_eq!(
        rotated_name(b"mysql-bin.1000000", "mysql-bin.999999"),
        "mysql-bin.1000000"
    );
}

#[test]
fn ddl_that_changes_a_table_is_recognised() {
    let t = |sql: &str| changed_tables(sql);
    assert_eq!(
        t("ALTER TABLE `items` ADD x int"),
        vec![(None, "items".into())]
    );
    assert_eq!(
        t("truncate app.items"),
        vec![(Some("app".into()), "items".into())]
    );
    assert_eq!(
        t("DROP TABLE IF EXISTS a, `app`.`items`"),
        vec![(None, "a".into()), (Some("app".into()), "items".into())]
    );
    assert_eq!(
        t("RENAME TABLE items TO x, y TO items"),
        vec![(None, "items".into()), (None, "y".into())]
    );
    assert!(t("CREATE TABLE `_items_new` LIKE `items`").is_empty());
    assert!(t("BEGIN").is_empty());
}
