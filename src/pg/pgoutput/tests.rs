//! Byte-level tests of the pgoutput decoder: crafted messages in, decoded
//! messages or a clear error out, truncated and corrupted input included.

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
