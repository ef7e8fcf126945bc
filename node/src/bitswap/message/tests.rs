//! Unit tests of the Bitswap wire format: golden encodings written by hand from the protobuf
//! schema, framing limits, and CID prefixes.

use super::*;

/// `bafkreie7q3iidccmpvszul7kudcvvuavuo7u6gzlbobczuk5nqk3b4akba`: the raw block `"test"`.
const TEST_CID: &str = "bafkreie7q3iidccmpvszul7kudcvvuavuo7u6gzlbobczuk5nqk3b4akba";
const TEST_DIGEST: &str = "9f86d081884c7d659a2feaa0c55ad015a3bf4f1b2b0b822cd15d6c15b0f00a08";

fn test_cid() -> Cid {
    TEST_CID.parse().expect("fixture")
}

fn test_cid_bytes() -> Vec<u8> {
    let mut out = hex::decode("01551220").expect("fixture");
    out.extend(hex::decode(TEST_DIGEST).expect("fixture"));
    out
}

#[test]
fn want_block_golden() {
    let message = Message {
        wantlist: Some(Wantlist {
            entries: vec![Entry {
                block: test_cid().to_bytes().into(),
                priority: 1,
                cancel: false,
                want_type: WantType::Block as i32,
                send_dont_have: true,
            }],
            full: false,
        }),
        ..Default::default()
    };
    // Entry: block (1, bytes, 36) ‖ priority (2, varint 1) ‖ sendDontHave (5, varint 1); proto3
    // leaves out cancel=false and wantType=Block (0). Wantlist: entries (1, 42 bytes); full=false
    // left out. Message: wantlist (1, 44 bytes).
    let mut expect = hex::decode("0a2c0a2a0a24").expect("fixture");
    expect.extend(test_cid_bytes());
    expect.extend(hex::decode("10012801").expect("fixture"));
    assert_eq!(message.to_bytes(), expect);
    assert_eq!(
        Message::decode(expect.as_slice()).expect("fixture"),
        message
    );
}

#[test]
fn payload_and_presence_golden() {
    let message = Message {
        payload: vec![Block {
            prefix: cid_prefix(&test_cid()).into(),
            data: Bytes::from_static(b"test"),
        }],
        block_presences: vec![BlockPresence {
            cid: test_cid().to_bytes().into(),
            r#type: BlockPresenceType::DontHave as i32,
        }],
        pending_bytes: 5,
        ..Default::default()
    };
    // Block: prefix (1, "01551220") ‖ data (2, "test") = 12 bytes, in field 3. Presence: cid (1,
    // 36 bytes) ‖ type (2, varint 1) = 40 bytes, in field 4. pendingBytes (5, varint 5).
    let mut expect = hex::decode("1a0c0a0401551220120474657374").expect("fixture");
    expect.extend(hex::decode("22280a24").expect("fixture"));
    expect.extend(test_cid_bytes());
    expect.extend(hex::decode("10012805").expect("fixture"));
    assert_eq!(message.to_bytes(), expect);
    let decoded = Message::decode(expect.as_slice()).expect("fixture");
    assert_eq!(decoded, message);
    assert_eq!(
        decoded.block_presences[0].kind(),
        Some(BlockPresenceType::DontHave)
    );
    assert_eq!(block_cid(&decoded.payload[0]).expect("fixture"), test_cid());
}

#[test]
fn blocks_1_0_0_and_cancel_golden() {
    let message = Message {
        wantlist: Some(Wantlist {
            entries: vec![Entry {
                block: Bytes::from_static(b"\x01"),
                cancel: true,
                want_type: WantType::Have as i32,
                ..Default::default()
            }],
            full: true,
        }),
        blocks: vec![Bytes::from_static(b"ab")],
        ..Default::default()
    };
    // Entry: block (1, "01") ‖ cancel (3, 1) ‖ wantType (4, 1) = 7 bytes; wantlist adds full
    // (2, 1); the 1.0.0 block is field 2.
    let expect = hex::decode("0a0b0a070a01011801200110011202").expect("fixture");
    let mut expect = expect;
    expect.extend(b"ab");
    assert_eq!(message.to_bytes(), expect);
    assert_eq!(
        Message::decode(expect.as_slice()).expect("fixture"),
        message
    );
}

#[test]
fn prefix_roundtrip() {
    let check = |cid: Cid, expect_hex: &str| {
        let prefix = cid_prefix(&cid);
        assert_eq!(hex::encode(&prefix), expect_hex, "{cid}");
        let decoded = Prefix::decode(&prefix).expect("fixture");
        assert_eq!(decoded.version, u64::from(cid.version()));
        assert_eq!(decoded.codec, cid.codec());
    };
    check(test_cid(), "01551220");
    let dag_pb = cairn_ipld::cid::dag_pb_cid(b"\x0a\x02\x08\x02");
    check(dag_pb, "01701220");
    let v0 = Cid::new_v0(*dag_pb.hash()).expect("fixture");
    check(v0, "00701220");
    // dag-json has a two-byte codec varint.
    let dag_json = Cid::new_v1(0x0129, *dag_pb.hash());
    check(dag_json, "01a9021220");
}

#[test]
fn prefix_rebuilds_cids() {
    let data = b"\x0a\x02\x08\x02";
    let dag_pb = cairn_ipld::cid::dag_pb_cid(data);
    let v0 = Cid::new_v0(*dag_pb.hash()).expect("fixture");
    for cid in [dag_pb, v0, cairn_ipld::cid::raw_block_cid(data)] {
        let rebuilt = Prefix::decode(&cid_prefix(&cid))
            .expect("fixture")
            .to_cid(data)
            .expect("fixture");
        assert_eq!(rebuilt, cid);
    }
    // Other bytes under the same prefix give another CID: the receiver's check.
    let other = Prefix::decode(&cid_prefix(&dag_pb))
        .expect("fixture")
        .to_cid(b"x")
        .expect("fixture");
    assert_ne!(other, dag_pb);
}

#[test]
fn prefix_rejects() {
    let reject = |hex_prefix: &str| {
        let bytes = hex::decode(hex_prefix).expect("fixture");
        match Prefix::decode(&bytes).and_then(|p| p.to_cid(b"data")) {
            Ok(cid) => panic!("{hex_prefix} accepted as {cid}"),
            Err(e) => e.to_string(),
        }
    };
    // sha2-512 and blake3: not computed here.
    assert!(reject("01551340").contains("only sha2-256"));
    assert!(reject("01551e20").contains("only sha2-256"));
    assert!(reject("01551210").contains("32 bytes"));
    assert!(reject("00551220").contains("dag-pb"));
    assert!(reject("02551220").contains("version"));
    assert!(reject("015512").contains("truncated"));
    assert!(reject("0155122000").contains("trailing"));
    assert!(reject("").contains("truncated"));
    assert!(reject("ffffffffffffffffffff7f551220").contains("truncated"));
}

#[tokio::test]
async fn framing_roundtrip_and_limits() {
    let message = Message {
        payload: vec![Block {
            prefix: cid_prefix(&test_cid()).into(),
            data: Bytes::from_static(b"test"),
        }],
        ..Default::default()
    };
    let mut wire = Vec::new();
    write_message(&mut wire, &message).await.expect("fixture");
    write_message(&mut wire, &Message::default())
        .await
        .expect("fixture");
    assert_eq!(wire[0] as usize, message.to_bytes().len());
    let mut reader = futures::io::Cursor::new(wire);
    assert_eq!(
        read_message(&mut reader).await.expect("fixture"),
        Some(message)
    );
    assert_eq!(
        read_message(&mut reader).await.expect("fixture"),
        Some(Message::default())
    );
    assert_eq!(read_message(&mut reader).await.expect("fixture"), None);

    // A length over 4 MiB is refused before the body is read.
    let mut wire = Vec::new();
    put_uvarint(&mut wire, MAX_MESSAGE_SIZE as u64 + 1);
    let err = read_message(&mut futures::io::Cursor::new(wire))
        .await
        .expect_err("must fail");
    assert!(matches!(err, WireError::TooLarge { .. }), "{err}");

    // A frame cut short is an error, not a clean end.
    let mut wire = Vec::new();
    put_uvarint(&mut wire, 10);
    wire.extend(b"abc");
    assert!(
        read_message(&mut futures::io::Cursor::new(wire))
            .await
            .is_err()
    );
    let err = read_message(&mut futures::io::Cursor::new(vec![0x80u8]))
        .await
        .expect_err("must fail");
    assert!(matches!(err, WireError::Io(_)), "{err}");

    // Writing refuses an over-large message too.
    let huge = Message {
        blocks: vec![Bytes::from(vec![0u8; MAX_MESSAGE_SIZE])],
        ..Default::default()
    };
    let mut sink = Vec::new();
    assert!(matches!(
        write_message(&mut sink, &huge).await,
        Err(WireError::TooLarge { .. })
    ));
    assert!(sink.is_empty());
}

#[test]
fn a_frame_in_parts_is_prosts_frame_byte_for_byte_with_large_blocks_not_copied() {
    let large = Bytes::from((0..(1usize << 20)).map(|i| i as u8).collect::<Vec<u8>>());
    let prefix: Bytes = cid_prefix(&test_cid()).into();
    let entry = Entry {
        block: test_cid().to_bytes().into(),
        priority: 7,
        cancel: false,
        want_type: WantType::Have as i32,
        send_dont_have: true,
    };
    let messages = [
        Message::default(),
        Message {
            wantlist: Some(Wantlist {
                entries: vec![entry.clone(), entry],
                full: true,
            }),
            ..Default::default()
        },
        Message {
            blocks: vec![Bytes::new(), Bytes::from_static(b"small"), large.clone()],
            ..Default::default()
        },
        Message {
            payload: vec![
                Block {
                    prefix: prefix.clone(),
                    data: large.clone(),
                },
                Block {
                    prefix: prefix.clone(),
                    data: Bytes::from_static(b"tiny"),
                },
                Block {
                    prefix: Bytes::new(),
                    data: Bytes::new(),
                },
                Block {
                    prefix,
                    data: large.slice(..INLINE),
                },
            ],
            block_presences: vec![BlockPresence {
                cid: test_cid().to_bytes().into(),
                r#type: BlockPresenceType::DontHave as i32,
            }],
            pending_bytes: -3,
            ..Default::default()
        },
    ];
    for message in messages {
        let mut expected = Vec::new();
        put_uvarint(&mut expected, message.encoded_len() as u64);
        expected.extend(message.to_bytes());
        let parts = frame_parts(&message).expect("parts");
        assert_eq!(parts.concat(), expected, "{message:?}");
        // Each large block goes out from the buffer it is held in.
        let held = message
            .blocks
            .iter()
            .chain(message.payload.iter().map(|b| &b.data))
            .filter(|d| d.len() >= INLINE);
        for data in held {
            assert!(
                parts
                    .iter()
                    .any(|p| p.as_ptr() == data.as_ptr() && p.len() == data.len()),
                "a block of {} bytes was copied",
                data.len()
            );
        }
    }
}
