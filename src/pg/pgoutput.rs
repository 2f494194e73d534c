//! Decoder for PostgreSQL's `pgoutput` logical replication messages.
//!
//! This module turns the bytes of one message (the `data` bytea column of
//! `pg_logical_slot_peek_binary_changes(...)` with `proto_version '1'` and
//! `messages 'true'`) into a [`Message`]. It is pure: no I/O, no database, no
//! knowledge of which table is being rewritten. Decoding is kept separate from
//! deciding: callers look at the decoded message and choose what to do with it.
//!
//! Promises:
//! - Never panics, whatever the input (no unchecked indexing, no unwrap).
//! - Strict: truncated input, trailing bytes, unknown message tags, unknown
//!   tuple or old-tuple markers, negative lengths and invalid UTF-8 strings are
//!   all errors. Nothing is silently skipped.
//!
//! Layouts follow the "Logical Replication Message Formats" chapter of the
//! PostgreSQL protocol documentation (protocol version 1, non-streaming).

/// A WAL position (`XLogRecPtr`).
pub type Lsn = u64;

/// One decoded pgoutput message.
#[derive(Debug, Clone, PartialEq)]
pub enum Message {
    /// `B`: start of a transaction.
    Begin {
        final_lsn: Lsn,
        /// Microseconds since the PostgreSQL epoch (2000-01-01); see [`pg_epoch_to_unix_us`].
        commit_time_us: i64,
        xid: u32,
    },
    /// `C`: end of a transaction.
    Commit {
        flags: u8,
        commit_lsn: Lsn,
        end_lsn: Lsn,
        /// Microseconds since the PostgreSQL epoch (2000-01-01); see [`pg_epoch_to_unix_us`].
        commit_time_us: i64,
    },
    /// `O`: replication origin of the transaction.
    Origin { commit_lsn: Lsn, name: String },
    /// `R`: description of a relation, sent before its first change.
    Relation {
        rel_id: u32,
        /// Empty for `pg_catalog`.
        namespace: String,
        name: String,
        /// `relreplident`: `d`, `n`, `f` or `i`.
        replica_identity: u8,
        columns: Vec<RelationColumn>,
    },
    /// `Y`: description of a non-builtin data type.
    Type {
        type_id: u32,
        namespace: String,
        name: String,
    },
    /// `I`: a row was inserted.
    Insert { rel_id: u32, new: Tuple },
    /// `U`: a row was updated; `old` is present only when the key changed
    /// (`K`) or the table has `REPLICA IDENTITY FULL` (`O`).
    Update {
        rel_id: u32,
        old: Option<OldTuple>,
        new: Tuple,
    },
    /// `D`: a row was deleted.
    Delete { rel_id: u32, old: OldTuple },
    /// `T`: one or more relations were truncated.
    Truncate {
        /// Bit 1: `CASCADE`, bit 2: `RESTART IDENTITY`.
        options: u8,
        rel_ids: Vec<u32>,
    },
    /// `M`: a `pg_logical_emit_message` message.
    Message {
        transactional: bool,
        lsn: Lsn,
        prefix: String,
        content: Vec<u8>,
    },
}

/// One column of a [`Message::Relation`].
#[derive(Debug, Clone, PartialEq)]
pub struct RelationColumn {
    /// Part of the replica identity key.
    pub is_key: bool,
    pub name: String,
    pub type_id: u32,
    pub type_modifier: i32,
}

/// The old row carried by an update or delete.
#[derive(Debug, Clone, PartialEq)]
pub enum OldTuple {
    /// `K`: only the replica identity key columns are meaningful (others are null).
    Key(Tuple),
    /// `O`: the whole old row (`REPLICA IDENTITY FULL`).
    Full(Tuple),
}

/// A row's column values, in relation column order.
#[derive(Debug, Clone, PartialEq)]
pub struct Tuple(pub Vec<Value>);

/// One column value of a [`Tuple`].
#[derive(Debug, Clone, PartialEq)]
pub enum Value {
    /// `n`: SQL NULL.
    Null,
    /// `u`: an unchanged TOASTed value; its content is not sent.
    UnchangedToast,
    /// `t`: the value in text format.
    Text(Vec<u8>),
    /// `b`: the value in binary format.
    Binary(Vec<u8>),
}

/// Why a message could not be decoded.
#[derive(Debug, thiserror::Error)]
pub enum DecodeError {
    #[error("pgoutput message truncated at byte {at} while reading {what}")]
    Truncated { at: usize, what: &'static str },
    #[error("unknown pgoutput message type {}", show_byte(*.0))]
    UnknownMessage(u8),
    #[error("unknown pgoutput tuple value kind {}", show_byte(*.0))]
    UnknownTupleKind(u8),
    #[error("unexpected pgoutput tuple marker {} at byte {at}, expected {expected}", show_byte(*.found))]
    UnexpectedMarker {
        at: usize,
        found: u8,
        expected: &'static str,
    },
    #[error("invalid string at byte {at} while reading {what}: {reason}")]
    BadString {
        at: usize,
        what: &'static str,
        reason: &'static str,
    },
    #[error("negative length {len} at byte {at} while reading {what}")]
    NegativeLength {
        at: usize,
        len: i32,
        what: &'static str,
    },
    #[error("{extra} unexpected trailing byte(s) after pgoutput message of type {}", show_byte(*.tag))]
    TrailingBytes { tag: u8, extra: usize },
}

/// Renders a tag byte for error messages: `'S' (0x53)`.
fn show_byte(b: u8) -> String {
    format!("{:?} (0x{b:02x})", char::from(b))
}

/// A bounds-checked reader over a message's bytes.
struct Cursor<'a> {
    buf: &'a [u8],
    pos: usize,
}

impl<'a> Cursor<'a> {
    fn new(buf: &'a [u8]) -> Self {
        Cursor { buf, pos: 0 }
    }

    fn remaining(&self) -> usize {
        self.buf.len().saturating_sub(self.pos)
    }

    fn take(&mut self, n: usize, what: &'static str) -> Result<&'a [u8], DecodeError> {
        let at = self.pos;
        let slice = at
            .checked_add(n)
            .and_then(|end| self.buf.get(at..end))
            .ok_or(DecodeError::Truncated { at, what })?;
        self.pos = at + slice.len();
        Ok(slice)
    }

    fn array<const N: usize>(&mut self, what: &'static str) -> Result<[u8; N], DecodeError> {
        let at = self.pos;
        let slice = self.take(N, what)?;
        slice
            .try_into()
            .map_err(|_| DecodeError::Truncated { at, what })
    }

    fn u8(&mut self, what: &'static str) -> Result<u8, DecodeError> {
        Ok(u8::from_be_bytes(self.array(what)?))
    }

    fn i16(&mut self, what: &'static str) -> Result<i16, DecodeError> {
        Ok(i16::from_be_bytes(self.array(what)?))
    }

    fn u32(&mut self, what: &'static str) -> Result<u32, DecodeError> {
        Ok(u32::from_be_bytes(self.array(what)?))
    }

    fn i32(&mut self, what: &'static str) -> Result<i32, DecodeError> {
        Ok(i32::from_be_bytes(self.array(what)?))
    }

    fn u64(&mut self, what: &'static str) -> Result<u64, DecodeError> {
        Ok(u64::from_be_bytes(self.array(what)?))
    }

    fn i64(&mut self, what: &'static str) -> Result<i64, DecodeError> {
        Ok(i64::from_be_bytes(self.array(what)?))
    }

    /// A count or length field that must not be negative.
    fn len16(&mut self, what: &'static str) -> Result<usize, DecodeError> {
        let at = self.pos;
        let n = self.i16(what)?;
        usize::try_from(n).map_err(|_| DecodeError::NegativeLength {
            at,
            len: i32::from(n),
            what,
        })
    }

    fn len32(&mut self, what: &'static str) -> Result<usize, DecodeError> {
        let at = self.pos;
        let n = self.i32(what)?;
        usize::try_from(n).map_err(|_| DecodeError::NegativeLength { at, len: n, what })
    }

    /// A NUL-terminated UTF-8 string.
    fn cstr(&mut self, what: &'static str) -> Result<String, DecodeError> {
        let at = self.pos;
        let rest = self.buf.get(self.pos..).unwrap_or_default();
        let nul = rest
            .iter()
            .position(|&b| b == 0)
            .ok_or(DecodeError::Truncated {
                at: self.buf.len(),
                what,
            })?;
        let bytes = self.take(nul, what)?;
        self.take(1, what)?; // the NUL itself
        String::from_utf8(bytes.to_vec()).map_err(|_| DecodeError::BadString {
            at,
            what,
            reason: "not valid UTF-8",
        })
    }

    fn finish(&self, tag: u8) -> Result<(), DecodeError> {
        match self.remaining() {
            0 => Ok(()),
            extra => Err(DecodeError::TrailingBytes { tag, extra }),
        }
    }
}

/// Decodes one pgoutput message. The whole buffer must be exactly one message.
pub fn decode(buf: &[u8]) -> Result<Message, DecodeError> {
    let mut c = Cursor::new(buf);
    let tag = c.u8("message type")?;
    let msg = match tag {
        b'B' => Message::Begin {
            final_lsn: c.u64("begin final LSN")?,
            commit_time_us: c.i64("begin commit timestamp")?,
            xid: c.u32("begin xid")?,
        },
        b'C' => Message::Commit {
            flags: c.u8("commit flags")?,
            commit_lsn: c.u64("commit LSN")?,
            end_lsn: c.u64("commit end LSN")?,
            commit_time_us: c.i64("commit timestamp")?,
        },
        b'O' => Message::Origin {
            commit_lsn: c.u64("origin commit LSN")?,
            name: c.cstr("origin name")?,
        },
        b'R' => decode_relation(&mut c)?,
        b'Y' => Message::Type {
            type_id: c.u32("type id")?,
            namespace: c.cstr("type namespace")?,
            name: c.cstr("type name")?,
        },
        b'I' => {
            let rel_id = c.u32("insert relation id")?;
            expect_marker(&mut c, b'N', "'N' (new tuple)")?;
            Message::Insert {
                rel_id,
                new: decode_tuple(&mut c)?,
            }
        }
        b'U' => {
            let rel_id = c.u32("update relation id")?;
            let at = c.pos;
            let old = match c.u8("update tuple marker")? {
                b'K' => Some(OldTuple::Key(decode_tuple(&mut c)?)),
                b'O' => Some(OldTuple::Full(decode_tuple(&mut c)?)),
                b'N' => None,
                found => {
                    return Err(DecodeError::UnexpectedMarker {
                        at,
                        found,
                        expected: "'K', 'O' or 'N'",
                    });
                }
            };
            if old.is_some() {
                expect_marker(&mut c, b'N', "'N' (new tuple)")?;
            }
            Message::Update {
                rel_id,
                old,
                new: decode_tuple(&mut c)?,
            }
        }
        b'D' => {
            let rel_id = c.u32("delete relation id")?;
            let at = c.pos;
            let old = match c.u8("delete tuple marker")? {
                b'K' => OldTuple::Key(decode_tuple(&mut c)?),
                b'O' => OldTuple::Full(decode_tuple(&mut c)?),
                found => {
                    return Err(DecodeError::UnexpectedMarker {
                        at,
                        found,
                        expected: "'K' or 'O'",
                    });
                }
            };
            Message::Delete { rel_id, old }
        }
        b'T' => {
            let at = c.pos;
            let n = c.u32("truncate relation count")?;
            let n = usize::try_from(n).map_err(|_| DecodeError::Truncated {
                at,
                what: "truncate relation ids",
            })?;
            let options = c.u8("truncate options")?;
            // Cap the preallocation by what the buffer could possibly hold.
            let mut rel_ids = Vec::with_capacity(n.min(c.remaining() / 4));
            for _ in 0..n {
                rel_ids.push(c.u32("truncate relation id")?);
            }
            Message::Truncate { options, rel_ids }
        }
        b'M' => {
            let flags = c.u8("message flags")?;
            let lsn = c.u64("message LSN")?;
            let prefix = c.cstr("message prefix")?;
            let len = c.len32("message content length")?;
            let content = c.take(len, "message content")?.to_vec();
            Message::Message {
                transactional: flags & 1 != 0,
                lsn,
                prefix,
                content,
            }
        }
        other => return Err(DecodeError::UnknownMessage(other)),
    };
    c.finish(tag)?;
    Ok(msg)
}

fn decode_relation(c: &mut Cursor<'_>) -> Result<Message, DecodeError> {
    let rel_id = c.u32("relation id")?;
    let namespace = c.cstr("relation namespace")?;
    let name = c.cstr("relation name")?;
    let replica_identity = c.u8("relation replica identity")?;
    let n = c.len16("relation column count")?;
    // Each column takes at least 10 bytes (flags, NUL, type id, typmod).
    let mut columns = Vec::with_capacity(n.min(c.remaining() / 10));
    for _ in 0..n {
        let flags = c.u8("column flags")?;
        columns.push(RelationColumn {
            is_key: flags & 1 != 0,
            name: c.cstr("column name")?,
            type_id: c.u32("column type id")?,
            type_modifier: c.i32("column type modifier")?,
        });
    }
    Ok(Message::Relation {
        rel_id,
        namespace,
        name,
        replica_identity,
        columns,
    })
}

fn expect_marker(c: &mut Cursor<'_>, want: u8, expected: &'static str) -> Result<(), DecodeError> {
    let at = c.pos;
    let found = c.u8("tuple marker")?;
    if found == want {
        Ok(())
    } else {
        Err(DecodeError::UnexpectedMarker {
            at,
            found,
            expected,
        })
    }
}

fn decode_tuple(c: &mut Cursor<'_>) -> Result<Tuple, DecodeError> {
    let n = c.len16("tuple column count")?;
    // Each value takes at least one byte.
    let mut values = Vec::with_capacity(n.min(c.remaining()));
    for _ in 0..n {
        let value = match c.u8("tuple value kind")? {
            b'n' => Value::Null,
            b'u' => Value::UnchangedToast,
            b't' => {
                let len = c.len32("text value length")?;
                Value::Text(c.take(len, "text value")?.to_vec())
            }
            b'b' => {
                let len = c.len32("binary value length")?;
                Value::Binary(c.take(len, "binary value")?.to_vec())
            }
            other => return Err(DecodeError::UnknownTupleKind(other)),
        };
        values.push(value);
    }
    Ok(Tuple(values))
}

/// Microseconds between 1970-01-01 and 2000-01-01.
const PG_EPOCH_OFFSET_US: i64 = 946_684_800 * 1_000_000;

/// Commit timestamps are microseconds since 2000-01-01 (PostgreSQL epoch); convert to unix microseconds.
pub fn pg_epoch_to_unix_us(t: i64) -> i64 {
    t.saturating_add(PG_EPOCH_OFFSET_US)
}

/// Formats an LSN the way PostgreSQL prints it ("16/B374D848").
pub fn format_lsn(lsn: Lsn) -> String {
    format!("{:X}/{:X}", lsn >> 32, lsn & 0xFFFF_FFFF)
}

/// Parses "16/B374D848".
pub fn parse_lsn(s: &str) -> Option<Lsn> {
    let (hi, lo) = s.trim().split_once('/')?;
    let valid = |p: &str| !p.is_empty() && p.len() <= 8 && p.bytes().all(|b| b.is_ascii_hexdigit());
    if !valid(hi) || !valid(lo) {
        return None;
    }
    let hi = u32::from_str_radix(hi, 16).ok()?;
    let lo = u32::from_str_radix(lo, 16).ok()?;
    Some((u64::from(hi) << 32) | u64::from(lo))
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A little builder for hand-made message bytes.
    struct B(Vec<u8>);

    impl B {
        fn new(tag: u8) -> Self {
            B(vec![tag])
        }
        fn u8(mut self, v: u8) -> Self {
            self.0.push(v);
            self
        }
        fn i16(mut self, v: i16) -> Self {
            self.0.extend_from_slice(&v.to_be_bytes());
            self
        }
        fn u32(mut self, v: u32) -> Self {
            self.0.extend_from_slice(&v.to_be_bytes());
            self
        }
        fn i32(mut self, v: i32) -> Self {
            self.0.extend_from_slice(&v.to_be_bytes());
            self
        }
        fn u64(mut self, v: u64) -> Self {
            self.0.extend_from_slice(&v.to_be_bytes());
            self
        }
        fn i64(mut self, v: i64) -> Self {
            self.0.extend_from_slice(&v.to_be_bytes());
            self
        }
        fn s(mut self, v: &str) -> Self {
            self.0.extend_from_slice(v.as_bytes());
            self.0.push(0);
            self
        }
        fn bytes(mut self, v: &[u8]) -> Self {
            self.0.extend_from_slice(v);
            self
        }
        fn text(self, v: &str) -> Self {
            self.u8(b't').i32(v.len() as i32).bytes(v.as_bytes())
        }
        fn done(self) -> Vec<u8> {
            self.0
        }
    }

    fn begin() -> Vec<u8> {
        B::new(b'B')
            .u64(0x16_B374_D848)
            .i64(700_000_000_123_456)
            .u32(4242)
            .done()
    }

    fn commit() -> Vec<u8> {
        B::new(b'C')
            .u8(0)
            .u64(0x16_B374_D848)
            .u64(0x16_B374_D900)
            .i64(-5)
            .done()
    }

    fn origin() -> Vec<u8> {
        B::new(b'O').u64(77).s("node_a").done()
    }

    fn relation() -> Vec<u8> {
        B::new(b'R')
            .u32(16384)
            .s("public")
            .s("accounts")
            .u8(b'd')
            .i16(3)
            .u8(1)
            .s("id")
            .u32(20)
            .i32(-1)
            .u8(0)
            .s("name")
            .u32(1043)
            .i32(68)
            .u8(0)
            .s("blob")
            .u32(17)
            .i32(-1)
            .done()
    }

    fn type_msg() -> Vec<u8> {
        B::new(b'Y').u32(90001).s("").s("mood").done()
    }

    fn insert() -> Vec<u8> {
        B::new(b'I')
            .u32(16384)
            .u8(b'N')
            .i16(4)
            .text("42")
            .u8(b'n')
            .u8(b'u')
            .text("")
            .done()
    }

    fn update_plain() -> Vec<u8> {
        B::new(b'U')
            .u32(16384)
            .u8(b'N')
            .i16(2)
            .text("1")
            .text("bob")
            .done()
    }

    fn update_key() -> Vec<u8> {
        B::new(b'U')
            .u32(16384)
            .u8(b'K')
            .i16(2)
            .text("1")
            .u8(b'n')
            .u8(b'N')
            .i16(2)
            .text("2")
            .u8(b'u')
            .done()
    }

    fn update_full() -> Vec<u8> {
        B::new(b'U')
            .u32(16384)
            .u8(b'O')
            .i16(2)
            .text("1")
            .text("alice")
            .u8(b'N')
            .i16(2)
            .text("1")
            .text("bob")
            .done()
    }

    fn delete_key() -> Vec<u8> {
        B::new(b'D')
            .u32(16384)
            .u8(b'K')
            .i16(2)
            .text("7")
            .u8(b'n')
            .done()
    }

    fn delete_full() -> Vec<u8> {
        B::new(b'D')
            .u32(16384)
            .u8(b'O')
            .i16(1)
            .u8(b'b')
            .i32(3)
            .bytes(&[0, 1, 2])
            .done()
    }

    fn truncate() -> Vec<u8> {
        B::new(b'T').u32(2).u8(3).u32(16384).u32(16390).done()
    }

    fn message(transactional: bool) -> Vec<u8> {
        B::new(b'M')
            .u8(u8::from(transactional))
            .u64(0x1_0000_0010)
            .s("wraith")
            .i32(5)
            .bytes(b"hel\0o")
            .done()
    }

    fn all_valid() -> Vec<Vec<u8>> {
        vec![
            begin(),
            commit(),
            origin(),
            relation(),
            type_msg(),
            insert(),
            update_plain(),
            update_key(),
            update_full(),
            delete_key(),
            delete_full(),
            truncate(),
            message(true),
            message(false),
        ]
    }

    fn t(s: &str) -> Value {
        Value::Text(s.as_bytes().to_vec())
    }

    #[test]
    fn decodes_begin() {
        assert_eq!(
            decode(&begin()).unwrap(),
            Message::Begin {
                final_lsn: 0x16_B374_D848,
                commit_time_us: 700_000_000_123_456,
                xid: 4242
            }
        );
    }

    #[test]
    fn decodes_commit() {
        assert_eq!(
            decode(&commit()).unwrap(),
            Message::Commit {
                flags: 0,
                commit_lsn: 0x16_B374_D848,
                end_lsn: 0x16_B374_D900,
                commit_time_us: -5
            }
        );
    }

    #[test]
    fn decodes_origin() {
        assert_eq!(
            decode(&origin()).unwrap(),
            Message::Origin {
                commit_lsn: 77,
                name: "node_a".into()
            }
        );
    }

    #[test]
    fn decodes_relation_with_key_and_non_key_columns() {
        assert_eq!(
            decode(&relation()).unwrap(),
            Message::Relation {
                rel_id: 16384,
                namespace: "public".into(),
                name: "accounts".into(),
                replica_identity: b'd',
                columns: vec![
                    RelationColumn {
                        is_key: true,
                        name: "id".into(),
                        type_id: 20,
                        type_modifier: -1
                    },
                    RelationColumn {
                        is_key: false,
                        name: "name".into(),
                        type_id: 1043,
                        type_modifier: 68
                    },
                    RelationColumn {
                        is_key: false,
                        name: "blob".into(),
                        type_id: 17,
                        type_modifier: -1
                    },
                ],
            }
        );
    }

    #[test]
    fn decodes_type() {
        assert_eq!(
            decode(&type_msg()).unwrap(),
            Message::Type {
                type_id: 90001,
                namespace: String::new(),
                name: "mood".into()
            }
        );
    }

    #[test]
    fn decodes_insert_with_all_value_kinds() {
        assert_eq!(
            decode(&insert()).unwrap(),
            Message::Insert {
                rel_id: 16384,
                new: Tuple(vec![t("42"), Value::Null, Value::UnchangedToast, t("")]),
            }
        );
    }

    #[test]
    fn decodes_update_without_old_tuple() {
        assert_eq!(
            decode(&update_plain()).unwrap(),
            Message::Update {
                rel_id: 16384,
                old: None,
                new: Tuple(vec![t("1"), t("bob")]),
            }
        );
    }

    #[test]
    fn decodes_update_with_key() {
        assert_eq!(
            decode(&update_key()).unwrap(),
            Message::Update {
                rel_id: 16384,
                old: Some(OldTuple::Key(Tuple(vec![t("1"), Value::Null]))),
                new: Tuple(vec![t("2"), Value::UnchangedToast]),
            }
        );
    }

    #[test]
    fn decodes_update_with_full_old_tuple() {
        assert_eq!(
            decode(&update_full()).unwrap(),
            Message::Update {
                rel_id: 16384,
                old: Some(OldTuple::Full(Tuple(vec![t("1"), t("alice")]))),
                new: Tuple(vec![t("1"), t("bob")]),
            }
        );
    }

    #[test]
    fn decodes_delete() {
        assert_eq!(
            decode(&delete_key()).unwrap(),
            Message::Delete {
                rel_id: 16384,
                old: OldTuple::Key(Tuple(vec![t("7"), Value::Null])),
            }
        );
        assert_eq!(
            decode(&delete_full()).unwrap(),
            Message::Delete {
                rel_id: 16384,
                old: OldTuple::Full(Tuple(vec![Value::Binary(vec![0, 1, 2])])),
            }
        );
    }

    #[test]
    fn decodes_truncate() {
        assert_eq!(
            decode(&truncate()).unwrap(),
            Message::Truncate {
                options: 3,
                rel_ids: vec![16384, 16390]
            }
        );
    }

    #[test]
    fn decodes_logical_messages() {
        for transactional in [true, false] {
            assert_eq!(
                decode(&message(transactional)).unwrap(),
                Message::Message {
                    transactional,
                    lsn: 0x1_0000_0010,
                    prefix: "wraith".into(),
                    content: b"hel\0o".to_vec(),
                }
            );
        }
    }

    #[test]
    fn every_truncated_prefix_is_an_error() {
        for msg in all_valid() {
            assert!(decode(&msg).is_ok());
            for len in 0..msg.len() {
                let prefix = msg.get(..len).unwrap();
                assert!(
                    decode(prefix).is_err(),
                    "prefix of length {len} of {msg:?} decoded"
                );
            }
        }
    }

    #[test]
    fn truncation_reports_what_was_missing() {
        let msg = begin();
        match decode(&msg[..5]) {
            Err(DecodeError::Truncated { at: 1, what }) => assert_eq!(what, "begin final LSN"),
            other => panic!("unexpected {other:?}"),
        }
        match decode(&[]) {
            Err(DecodeError::Truncated { at: 0, .. }) => {}
            other => panic!("unexpected {other:?}"),
        }
    }

    #[test]
    fn trailing_bytes_are_an_error() {
        for mut msg in all_valid() {
            msg.push(0);
            assert!(matches!(
                decode(&msg),
                Err(DecodeError::TrailingBytes { extra: 1, .. })
            ));
        }
    }

    #[test]
    fn unknown_tags_are_errors() {
        for tag in [b'S', b'E', b'c', b'A', b'P', b'K', b'r', b'Z', 0, 0xff] {
            assert!(matches!(
                decode(&[tag, 0, 0, 0, 0]),
                Err(DecodeError::UnknownMessage(t)) if t == tag
            ));
        }
    }

    #[test]
    fn bad_markers_and_kinds_are_errors() {
        let bad_kind = B::new(b'I').u32(1).u8(b'N').i16(1).u8(b'x').done();
        assert!(matches!(
            decode(&bad_kind),
            Err(DecodeError::UnknownTupleKind(b'x'))
        ));

        let insert_without_n = B::new(b'I').u32(1).u8(b'K').i16(0).done();
        assert!(matches!(
            decode(&insert_without_n),
            Err(DecodeError::UnexpectedMarker { found: b'K', .. })
        ));

        let update_bad = B::new(b'U').u32(1).u8(b'X').i16(0).done();
        assert!(matches!(
            decode(&update_bad),
            Err(DecodeError::UnexpectedMarker { found: b'X', .. })
        ));

        let update_key_then_no_n = B::new(b'U').u32(1).u8(b'K').i16(0).u8(b'O').i16(0).done();
        assert!(matches!(
            decode(&update_key_then_no_n),
            Err(DecodeError::UnexpectedMarker { found: b'O', .. })
        ));

        let delete_with_n = B::new(b'D').u32(1).u8(b'N').i16(0).done();
        assert!(matches!(
            decode(&delete_with_n),
            Err(DecodeError::UnexpectedMarker { found: b'N', .. })
        ));
    }

    #[test]
    fn negative_lengths_and_bad_strings_are_errors() {
        let neg_value = B::new(b'I').u32(1).u8(b'N').i16(1).u8(b't').i32(-1).done();
        assert!(matches!(
            decode(&neg_value),
            Err(DecodeError::NegativeLength { len: -1, .. })
        ));

        let neg_cols = B::new(b'I').u32(1).u8(b'N').i16(-3).done();
        assert!(matches!(
            decode(&neg_cols),
            Err(DecodeError::NegativeLength { len: -3, .. })
        ));

        let huge_len = B::new(b'M').u8(0).u64(0).s("p").i32(i32::MAX).done();
        assert!(matches!(
            decode(&huge_len),
            Err(DecodeError::Truncated { .. })
        ));

        let huge_truncate = B::new(b'T').u32(u32::MAX).u8(0).done();
        assert!(matches!(
            decode(&huge_truncate),
            Err(DecodeError::Truncated { .. })
        ));

        let bad_utf8 = B::new(b'O').u64(1).bytes(&[0xff, 0xfe, 0]).done();
        assert!(matches!(
            decode(&bad_utf8),
            Err(DecodeError::BadString { .. })
        ));

        let unterminated = B::new(b'O').u64(1).bytes(b"abc").done();
        assert!(matches!(
            decode(&unterminated),
            Err(DecodeError::Truncated { .. })
        ));
    }

    #[test]
    fn corrupted_bytes_never_panic() {
        // Flip each byte of each valid message to a few values; decoding may
        // succeed or fail but must not panic.
        for msg in all_valid() {
            for i in 0..msg.len() {
                for v in [0u8, 1, 0x7f, 0x80, 0xff, b'n', b't'] {
                    let mut m = msg.clone();
                    if let Some(b) = m.get_mut(i) {
                        *b = v;
                    }
                    let _ = decode(&m);
                }
            }
        }
    }

    #[test]
    fn error_messages_render() {
        let e = DecodeError::UnknownMessage(b'S');
        assert!(e.to_string().contains("'S'"), "{e}");
        let e = DecodeError::Truncated {
            at: 3,
            what: "begin xid",
        };
        assert!(e.to_string().contains("begin xid"), "{e}");
    }

    #[test]
    fn pg_epoch_conversion() {
        assert_eq!(pg_epoch_to_unix_us(0), 946_684_800_000_000);
        assert_eq!(pg_epoch_to_unix_us(-946_684_800_000_000), 0);
        assert_eq!(pg_epoch_to_unix_us(i64::MAX), i64::MAX);
    }

    #[test]
    fn lsn_format_and_parse() {
        assert_eq!(format_lsn(0x16_B374_D848), "16/B374D848");
        assert_eq!(format_lsn(0), "0/0");
        assert_eq!(format_lsn(u64::MAX), "FFFFFFFF/FFFFFFFF");
        assert_eq!(parse_lsn("16/B374D848"), Some(0x16_B374_D848));
        assert_eq!(parse_lsn("16/b374d848"), Some(0x16_B374_D848));
        assert_eq!(parse_lsn("0/0"), Some(0));
        for lsn in [0, 1, 0xFFFF_FFFF, 0x1_0000_0000, 0x16_B374_D848, u64::MAX] {
            assert_eq!(parse_lsn(&format_lsn(lsn)), Some(lsn));
        }
        for bad in [
            "",
            "/",
            "16",
            "16/",
            "/1",
            "1/2/3",
            "G/0",
            "+1/0",
            "123456789/0",
            "1 /0",
        ] {
            assert_eq!(parse_lsn(bad), None, "{bad:?}");
        }
    }
}
