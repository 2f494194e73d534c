//! The binary log decoder's rules: what each event means to wraith, and what a
//! row event must hold before the driver decodes it.
//!
//! Every event type is named here, and anything else stops the run: an event wraith
//! does not understand may carry row changes (MariaDB's compressed row events do),
//! and skipping it would silently lose them. MariaDB's own events (160 and up) are
//! not known to mysql_common, so they are matched by their raw type codes. A row
//! event whose table map the driver would index past is refused, not decoded.

use mysql_async::binlog::EventType;
use mysql_async::binlog::events::{Event, RowsEventData, TableMapEvent};
use mysql_async::consts::ColumnType;

/// MariaDB event type codes (sql/log_event.h).
mod mariadb {
    pub const ANNOTATE_ROWS: u8 = 160;
    pub const BINLOG_CHECKPOINT: u8 = 161;
    pub const GTID: u8 = 162;
    pub const GTID_LIST: u8 = 163;
    pub const START_ENCRYPTION: u8 = 164;
    pub const QUERY_COMPRESSED: u8 = 165;
    /// Write, update and delete rows, compressed, v1 and v2 (166..=171).
    pub const ROWS_COMPRESSED: std::ops::RangeInclusive<u8> = 166..=171;
}

/// What the reader does with an event.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Handling {
    /// Maps a table id to a table for the rows events that follow.
    TableMap,
    /// Row images: keys of the source table's rows are taken from them.
    Rows,
    /// A transaction starts (a GTID event, or a `BEGIN` query).
    Begin,
    /// A transaction commits (XID event, or a `COMMIT` query).
    Commit,
    /// A statement: `BEGIN`/`COMMIT`, or DDL that must be checked against the source table.
    Query,
    /// Carries nothing for wraith (format description, rotation, heartbeats, annotations...).
    Ignore,
}

/// How wraith handles `event`, or why the run must stop.
pub fn handling(event: &Event) -> anyhow::Result<Handling> {
    classify(event.header().event_type_raw())
}

/// How wraith handles an event of raw type `raw`.
pub fn classify(raw: u8) -> anyhow::Result<Handling> {
    use EventType as E;
    match raw {
        mariadb::ANNOTATE_ROWS | mariadb::BINLOG_CHECKPOINT | mariadb::GTID_LIST => {
            return Ok(Handling::Ignore);
        }
        mariadb::GTID => return Ok(Handling::Begin),
        mariadb::START_ENCRYPTION => anyhow::bail!(
            "the binary log is encrypted (MariaDB START_ENCRYPTION event): wraith cannot read \
             row events from it; aborting, nothing was swapped"
        ),
        r if r == mariadb::QUERY_COMPRESSED || mariadb::ROWS_COMPRESSED.contains(&r) => {
            anyhow::bail!(
                "the binary log holds compressed events (MariaDB log_bin_compress): wraith does \
                 not read them and will not skip row changes; aborting, nothing was swapped. \
                 Fix: SET GLOBAL log_bin_compress = OFF, then run again"
            )
        }
        _ => {}
    }
    let Ok(t) = EventType::try_from(raw) else {
        anyhow::bail!(
            "unknown binary log event type {raw}: it may carry row changes, so wraith stops \
             rather than skip it; aborting, nothing was swapped"
        );
    };
    Ok(match t {
        E::TABLE_MAP_EVENT => Handling::TableMap,
        E::WRITE_ROWS_EVENT_V1
        | E::UPDATE_ROWS_EVENT_V1
        | E::DELETE_ROWS_EVENT_V1
        | E::WRITE_ROWS_EVENT
        | E::UPDATE_ROWS_EVENT
        | E::DELETE_ROWS_EVENT
        // binlog_row_value_options = PARTIAL_JSON: JSON columns of the after image
        // are diffs, but every other column is whole (binlog_row_image = FULL), and
        // the keys are all the apply needs: it re-reads the rows.
        | E::PARTIAL_UPDATE_ROWS_EVENT => Handling::Rows,
        E::XID_EVENT => Handling::Commit,
        E::GTID_EVENT | E::ANONYMOUS_GTID_EVENT => Handling::Begin,
        E::QUERY_EVENT => Handling::Query,
        E::FORMAT_DESCRIPTION_EVENT
        | E::ROTATE_EVENT
        | E::HEARTBEAT_EVENT
        | E::PREVIOUS_GTIDS_EVENT
        | E::ROWS_QUERY_EVENT
        | E::IGNORABLE_EVENT
        | E::STOP_EVENT
        | E::INTVAR_EVENT
        | E::RAND_EVENT
        | E::USER_VAR_EVENT => Handling::Ignore,
        E::TRANSACTION_PAYLOAD_EVENT => anyhow::bail!(
            "the binary log holds compressed transactions (binlog_transaction_compression = ON): \
             wraith does not read them and will not skip row changes; aborting, nothing was \
             swapped. Fix: SET GLOBAL binlog_transaction_compression = OFF, then run again"
        ),
        other => anyhow::bail!(
            "binary log event {other:?} is not one wraith handles: it stops rather than skip it; \
             aborting, nothing was swapped"
        ),
    })
}

/// What the driver trusts when it decodes rows: as many columns as the table
/// map has, images that hold some, a known type for each, and each one's
/// metadata (it indexes into the metadata unchecked, and sizes a DECIMAL by
/// `precision - scale`).
pub fn check_rows(rows: &RowsEventData, tme: &TableMapEvent) -> anyhow::Result<()> {
    if rows.num_columns() != tme.columns_count() {
        anyhow::bail!(
            "the row event has {} columns, its table map {}",
            rows.num_columns(),
            tme.columns_count()
        );
    }
    // Rows of no columns take no bytes: decoding them would never end.
    let images = [rows.columns_before_image(), rows.columns_after_image()];
    if images.iter().flatten().all(|cols| cols.not_any()) {
        anyhow::bail!("the row event's images hold no columns");
    }
    for i in 0..tme.columns_count() as usize {
        let t = match tme.get_column_type(i) {
            Ok(Some(t)) => t,
            Ok(None) => anyhow::bail!("the table map lacks the type of column {i}"),
            Err(e) => anyhow::bail!("the table map's column {i}: {e}"),
        };
        let needs = metadata_len(t).ok_or_else(|| {
            anyhow::anyhow!("the table map's column {i} has type {t:?}, which no table column has")
        })?;
        let meta = tme.get_column_metadata(i).unwrap_or_default();
        if meta.len() < needs {
            anyhow::bail!("the table map's metadata ends before that of column {i} ({t:?})");
        }
        if let (ColumnType::MYSQL_TYPE_NEWDECIMAL, [precision, scale, ..]) = (t, meta)
            && scale > precision
        {
            anyhow::bail!("the table map's column {i} is DECIMAL({precision},{scale})");
        }
    }
    Ok(())
}

/// How many metadata bytes the driver reads for a column of type `t` (`None`:
/// not a type a table column has in a table map).
fn metadata_len(t: ColumnType) -> Option<usize> {
    use ColumnType::*;
    Some(match t {
        MYSQL_TYPE_VARCHAR
        | MYSQL_TYPE_VAR_STRING
        | MYSQL_TYPE_NEWDECIMAL
        | MYSQL_TYPE_STRING
        | MYSQL_TYPE_ENUM
        | MYSQL_TYPE_SET
        | MYSQL_TYPE_BIT => 2,
        MYSQL_TYPE_TINY_BLOB
        | MYSQL_TYPE_MEDIUM_BLOB
        | MYSQL_TYPE_LONG_BLOB
        | MYSQL_TYPE_BLOB
        | MYSQL_TYPE_GEOMETRY
        | MYSQL_TYPE_VECTOR
        | MYSQL_TYPE_TIMESTAMP2
        | MYSQL_TYPE_DATETIME2
        | MYSQL_TYPE_TIME2 => 1,
        MYSQL_TYPE_TYPED_ARRAY => return None,
        _ => 0,
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use mysql_async::binlog::BinlogVersion;
    use mysql_async::binlog::events::FormatDescriptionEvent;

    /// A binlog event as the server sends it: the v4 header, then `body`.
    fn crafted(event_type: u8, body: &[u8]) -> Event {
        let size = (19 + body.len()) as u32;
        let mut bytes = Vec::new();
        bytes.extend_from_slice(&1_700_000_000u32.to_le_bytes()); // timestamp
        bytes.push(event_type);
        bytes.extend_from_slice(&1u32.to_le_bytes()); // server id
        bytes.extend_from_slice(&size.to_le_bytes());
        bytes.extend_from_slice(&(4 + size).to_le_bytes()); // next position
        bytes.extend_from_slice(&0u16.to_le_bytes()); // flags
        bytes.extend_from_slice(body);
        let fde = FormatDescriptionEvent::new(BinlogVersion::Version4);
        Event::read(&fde, &bytes[..]).expect("a well-formed event")
    }

    #[test]
    fn unknown_event_types_stop_the_run() {
        let err = handling(&crafted(0xEE, &[1, 2, 3, 4])).unwrap_err();
        assert!(
            format!("{err}").contains("unknown binary log event type 238"),
            "{err}"
        );
    }

    #[test]
    fn compressed_events_stop_the_run_and_name_the_fix() {
        for raw in [165u8, 166, 169, 171] {
            let err = handling(&crafted(raw, &[0; 8])).unwrap_err();
            assert!(format!("{err}").contains("log_bin_compress = OFF"), "{err}");
        }
        let err = classify(EventType::TRANSACTION_PAYLOAD_EVENT as u8).unwrap_err();
        assert!(format!("{err}").contains("binlog_transaction_compression = OFF"));
    }

    #[test]
    fn known_events_are_handled() {
        assert_eq!(handling(&crafted(160, &[0; 4])).unwrap(), Handling::Ignore);
        assert_eq!(handling(&crafted(162, &[0; 13])).unwrap(), Handling::Begin);
        for (event, handled) in [
            (EventType::WRITE_ROWS_EVENT_V1, Handling::Rows),
            (EventType::DELETE_ROWS_EVENT, Handling::Rows),
            (EventType::PARTIAL_UPDATE_ROWS_EVENT, Handling::Rows),
            (EventType::XID_EVENT, Handling::Commit),
            (EventType::TABLE_MAP_EVENT, Handling::TableMap),
        ] {
            assert_eq!(classify(event as u8).unwrap(), handled, "{event:?}");
        }
    }
}
