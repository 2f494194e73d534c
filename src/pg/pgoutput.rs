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
mod tests;
