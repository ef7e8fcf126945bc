//! Tests of the CAR v1 writer and reader, including interop with the reference JS implementation:
//! `js-written.car` was written by `@ipld/car` 5.4.7 (`CarWriter`) from the blocks that
//! [`fixture_blocks`] builds here independently, so our reader must read it and our writer must
//! reproduce it byte for byte.

use multihash::Multihash;

use super::*;
use crate::cid::{Algorithm, Digest, raw_block_cid};
use crate::unixfs::{CHUNK_SIZE, DagBuilder};

const JS_WRITTEN: &[u8] = include_bytes!("js-written.car");

type Block = (Cid, Vec<u8>);

fn cid_of(codec: u64, code: u64, digest: &[u8]) -> Cid {
    Cid::new_v1(codec, Multihash::wrap(code, digest).expect("digest fits"))
}

fn raw(data: &[u8]) -> Block {
    (raw_block_cid(data), data.to_vec())
}

/// The blocks of `js-written.car`, in order: raw "test", raw 0..=255, the dag-pb root of a file of
/// 1 MiB + 1 zero bytes under CIDv1 and again under CIDv0, a dag-cbor `{hello: "cairn", n: 1}`,
/// and raw "cairn" under an identity CID.
fn fixture_blocks() -> Vec<Block> {
    let mut builder = DagBuilder::new();
    builder.update(&vec![0u8; CHUNK_SIZE as usize + 1]);
    let dag = builder.finish();
    let [(root, node)] = dag.nodes.as_slice() else {
        panic!("expected one inner node, got {}", dag.nodes.len())
    };
    assert_eq!(*root, dag.root);
    let v0 = Cid::new_v0(*root.hash()).expect("sha2-256 CIDv0");
    let cbor = hex::decode("a2616e016568656c6c6f65636169726e").expect("hex");
    vec![
        raw(b"test"),
        raw(&(0..=255u8).collect::<Vec<_>>()),
        (*root, node.clone()),
        (v0, node.clone()),
        (cid_of(DAG_CBOR, SHA2_256, &sha256(&cbor)), cbor),
        (cid_of(RAW, IDENTITY, b"cairn"), b"cairn".to_vec()),
    ]
}

fn write_car(roots: &[Cid], blocks: &[Block]) -> Vec<u8> {
    let mut writer = CarWriter::new(Vec::new(), roots).expect("header");
    for (cid, data) in blocks {
        writer.write_block(cid, data).expect("block");
    }
    let written = writer.bytes_written();
    let out = writer.finish().expect("finish");
    assert_eq!(written, out.len() as u64);
    out
}

fn read_all(bytes: &[u8]) -> Result<(Vec<Cid>, Vec<Block>), CarError> {
    let reader = CarReader::new(bytes)?;
    let roots = reader.roots().to_vec();
    let blocks = reader.collect::<Result<Vec<_>, _>>()?;
    Ok((roots, blocks))
}

fn with_header(header: &[u8]) -> Vec<u8> {
    let mut out = Vec::new();
    put_varint(&mut out, header.len() as u64);
    out.extend_from_slice(header);
    out
}

/// A header-only CAR with root raw "test", then `tail`.
fn after_header(tail: &[u8]) -> (Vec<u8>, u64) {
    let mut car = write_car(&[raw_block_cid(b"test")], &[]);
    let header_end = car.len() as u64;
    car.extend_from_slice(tail);
    (car, header_end)
}

#[test]
fn header_of_one_root_matches_the_spec() {
    let car = write_car(&[raw_block_cid(b"test")], &[]);
    let expected = hex::decode(concat!(
        "3a",
        "a2",
        "65726f6f7473",
        "81",
        "d82a",
        "5825",
        "00",
        "01551220",
        "9f86d081884c7d659a2feaa0c55ad015a3bf4f1b2b0b822cd15d6c15b0f00a08",
        "6776657273696f6e",
        "01"
    ))
    .expect("hex");
    assert_eq!(car, expected);
    assert_eq!(car.len(), 59, "1-byte length prefix + 58-byte header");
    let (roots, blocks) = read_all(&car).expect("read");
    assert_eq!(roots, [raw_block_cid(b"test")]);
    assert!(blocks.is_empty());
}

#[test]
fn reads_the_js_written_car() {
    let (roots, blocks) = read_all(JS_WRITTEN).expect("read");
    let strings =
        |cids: &mut dyn Iterator<Item = &Cid>| cids.map(Cid::to_string).collect::<Vec<_>>();
    assert_eq!(
        strings(&mut roots.iter()),
        [
            "bafybeihd4yzq7n5umhjngdum4r6k2to7egxfkf2jz6thvwzf6djus22cmq",
            "bafkreie7q3iidccmpvszul7kudcvvuavuo7u6gzlbobczuk5nqk3b4akba",
        ]
    );
    assert_eq!(
        strings(&mut blocks.iter().map(|(cid, _)| cid)),
        [
            "bafkreie7q3iidccmpvszul7kudcvvuavuo7u6gzlbobczuk5nqk3b4akba",
            "bafkreicav7zotuwysixepl6umshgsz2jofmhqx55dwuhbzyrajtl7fciqa",
            "bafybeihd4yzq7n5umhjngdum4r6k2to7egxfkf2jz6thvwzf6djus22cmq",
            "QmdgGr3sX9CpRfjgSSGFWFbCCg2X6ERxmugcxucY4TYyJK",
            "bafyreieiu73x7sk37u5nojf2sn4aixd7z6nex67obreu3ytbehwtmvc5sy",
            "bafkqabldmfuxe3q",
        ]
    );
    assert_eq!(blocks, fixture_blocks());
}

#[test]
fn writes_what_the_js_writer_writes() {
    let blocks = fixture_blocks();
    let roots = [blocks[2].0, blocks[0].0];
    assert_eq!(write_car(&roots, &blocks), JS_WRITTEN);
}

#[test]
fn round_trips_leaves_nodes_and_a_maximal_block() {
    let mut builder = DagBuilder::new();
    let file: Vec<u8> = (0..CHUNK_SIZE as usize * 2 + 7).map(|i| i as u8).collect();
    builder.update(&file);
    let dag = builder.finish();
    let mut blocks: Vec<Block> = dag.nodes.clone();
    for leaf in &dag.leaves {
        let data = file[leaf.offset as usize..(leaf.offset + leaf.len) as usize].to_vec();
        assert_eq!(raw_block_cid(&data), leaf.cid);
        blocks.push((leaf.cid, data));
    }
    blocks.push(raw(&vec![7u8; MAX_BLOCK_SIZE as usize]));
    blocks.push(raw(b""));
    blocks.push(blocks[0].clone()); // duplicates are allowed
    let car = write_car(&[dag.root], &blocks);
    let (roots, read) = read_all(&car).expect("read");
    assert_eq!(roots, [dag.root]);
    assert_eq!(read, blocks);
}

#[test]
fn no_roots_is_allowed() {
    let car = write_car(&[], &[raw(b"x")]);
    let (roots, blocks) = read_all(&car).expect("read");
    assert!(roots.is_empty());
    assert_eq!(blocks, [raw(b"x")]);
}

#[test]
fn every_truncation_is_reported_or_ends_at_a_section_boundary() {
    let blocks = fixture_blocks();
    let small: Vec<_> = [0, 1, 4, 5].iter().map(|&i| blocks[i].clone()).collect();
    let mut writer = CarWriter::new(Vec::new(), &[small[0].0]).expect("header");
    let header_end = writer.bytes_written() as usize;
    let mut boundaries = vec![header_end];
    for (cid, data) in &small {
        writer.write_block(cid, data).expect("block");
        boundaries.push(writer.bytes_written() as usize);
    }
    let car = writer.finish().expect("finish");
    for len in 0..=car.len() {
        let input = &car[..len];
        if len < header_end {
            match CarReader::new(input) {
                Err(CarError::Truncated { offset, .. }) => assert_eq!(offset, len as u64),
                other => panic!("header cut at {len}: {:?}", other.map(|r| r.offset())),
            }
            continue;
        }
        let complete = boundaries
            .iter()
            .filter(|&&b| b != header_end && b <= len)
            .count();
        let mut reader = CarReader::new(input).expect("header");
        let mut read = Vec::new();
        let end = loop {
            match reader.next_block() {
                Ok(Some(block)) => read.push(block),
                other => break other,
            }
        };
        assert_eq!(read, small[..complete], "cut at {len}");
        if boundaries.contains(&len) {
            assert!(matches!(end, Ok(None)), "cut at boundary {len}: {end:?}");
        } else {
            match end {
                Err(CarError::Truncated { offset, .. }) => assert_eq!(offset, len as u64),
                other => panic!("cut at {len}: {other:?}"),
            }
        }
    }
}

#[test]
fn a_flipped_data_byte_is_a_bad_block() {
    let blocks = [raw(b"test"), raw(b"hello"), fixture_blocks()[5].clone()];
    let mut writer = CarWriter::new(Vec::new(), &[blocks[0].0]).expect("header");
    let mut starts = Vec::new();
    for (cid, data) in &blocks {
        starts.push(writer.bytes_written());
        writer.write_block(cid, data).expect("block");
    }
    let car = writer.finish().expect("finish");
    for i in [1, 2] {
        // The last data byte of block `i`.
        let flip = starts.get(i + 1).map_or(car.len(), |&s| s as usize) - 1;
        let mut bad = car.clone();
        bad[flip] ^= 1;
        let mut reader = CarReader::new(bad.as_slice()).expect("header");
        let mut seen = 0;
        let err = loop {
            match reader.next() {
                Some(Ok(_)) => seen += 1,
                Some(Err(e)) => break e,
                None => panic!("flip at {flip} not detected"),
            }
        };
        match &err {
            CarError::BadBlock { cid, offset } => {
                assert_eq!((*cid, *offset), (blocks[i].0, starts[i]))
            }
            other => panic!("flip at {flip}: {other:?}"),
        }
        assert!(
            err.to_string().contains(&format!("byte {}", starts[i])),
            "{err}"
        );
        assert_eq!(seen, i);
        assert!(reader.next().is_none(), "iterator stops after an error");
    }
}

#[test]
fn wrong_versions_are_rejected() {
    let mut v2 = write_car(&[raw_block_cid(b"test")], &[]);
    *v2.last_mut().expect("byte") = 2;
    assert!(matches!(
        CarReader::new(v2.as_slice()),
        Err(CarError::UnsupportedVersion { version: 2 })
    ));
    // The CARv2 pragma: `{version: 2}`.
    let pragma = hex::decode("0aa16776657273696f6e02").expect("hex");
    match CarReader::new(pragma.as_slice()) {
        Err(e @ CarError::UnsupportedVersion { version: 2 }) => {
            assert!(e.to_string().contains("version 2"), "{e}");
        }
        other => panic!("{:?}", other.map(|r| r.offset())),
    }
}

#[test]
fn malformed_headers_are_rejected() {
    let root = {
        let mut b = hex::decode("d82a5825000155").expect("hex");
        b.extend_from_slice(&raw_block_cid(b"test").hash().to_bytes());
        b
    };
    let roots_entry = [hex::decode("65726f6f747381").expect("hex"), root.clone()].concat();
    let version = hex::decode("6776657273696f6e01").expect("hex");
    let cases: Vec<(&str, Vec<u8>)> = vec![
        (
            "out of dag-cbor order",
            [vec![0xa2], version.clone(), roots_entry.clone()].concat(),
        ),
        (
            "unknown key",
            [
                vec![0xa3, 0x61, b'x', 0x01],
                roots_entry.clone(),
                version.clone(),
            ]
            .concat(),
        ),
        (
            "duplicated",
            [
                vec![0xa3],
                roots_entry.clone(),
                roots_entry.clone(),
                version.clone(),
            ]
            .concat(),
        ),
        ("no roots", [vec![0xa1], version.clone()].concat()),
        ("no version", [vec![0xa1], roots_entry.clone()].concat()),
        (
            "shortest form",
            [
                vec![0xa2],
                roots_entry.clone(),
                hex::decode("6776657273696f6e1801").expect("hex"),
            ]
            .concat(),
        ),
        (
            "after the header map",
            [vec![0xa2], roots_entry.clone(), version.clone(), vec![0]].concat(),
        ),
        (
            "tag 42",
            [
                vec![0xa2],
                hex::decode("65726f6f747381").expect("hex"),
                root[2..].to_vec(),
                version.clone(),
            ]
            .concat(),
        ),
        (
            "multibase prefix",
            [
                vec![0xa2],
                hex::decode("65726f6f747381d82a58250101").expect("hex"),
                root[7..].to_vec(),
                version.clone(),
            ]
            .concat(),
        ),
        ("expected a map", hex::decode("80").expect("hex")),
        ("indefinite", hex::decode("bf").expect("hex")),
        ("runs past", hex::decode("a2657230").expect("hex")),
    ];
    for (needle, header) in cases {
        match CarReader::new(with_header(&header).as_slice()) {
            Err(e @ CarError::BadHeader { .. }) => {
                let msg = e.to_string();
                assert!(
                    msg.contains(needle) && msg.contains("at byte"),
                    "{needle}: {msg}"
                );
            }
            other => panic!("{needle}: {:?}", other.map(|r| r.offset())),
        }
    }
}

#[test]
fn bad_and_oversized_varints_are_rejected() {
    let (car, header_end) =
        after_header(&[0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0x01]);
    let err = read_all(&car).expect_err("10-byte varint");
    assert!(
        matches!(err, CarError::BadVarint { offset, reason: "longer than 9 bytes", .. } if offset == header_end),
        "{err:?}"
    );
    assert!(
        err.to_string().contains(&format!("byte {header_end}")),
        "{err}"
    );

    let (car, header_end) = after_header(&[0x81, 0x00]);
    let err = read_all(&car).expect_err("non-minimal varint");
    assert!(
        matches!(err, CarError::BadVarint { offset, reason: "not minimally encoded", .. } if offset == header_end),
        "{err:?}"
    );

    let mut huge = Vec::new();
    put_varint(&mut huge, u64::MAX >> 1);
    let (car, header_end) = after_header(&huge);
    let err = read_all(&car).expect_err("huge section");
    assert!(
        matches!(err, CarError::TooLarge { offset, what: "section", .. } if offset == header_end),
        "{err:?}"
    );

    let mut oversized = Vec::new();
    put_varint(&mut oversized, MAX_SECTION_SIZE + 1);
    let (car, _) = after_header(&oversized);
    assert!(matches!(read_all(&car), Err(CarError::TooLarge { .. })));

    let (car, header_end) = after_header(&[0x00]);
    let err = read_all(&car).expect_err("empty section");
    assert!(
        matches!(err, CarError::BadSection { offset, .. } if offset == header_end),
        "{err:?}"
    );

    let mut big_header = Vec::new();
    put_varint(&mut big_header, MAX_HEADER_SIZE + 1);
    assert!(matches!(
        CarReader::new(big_header.as_slice()),
        Err(CarError::TooLarge {
            offset: 0,
            what: "header",
            ..
        })
    ));
    assert!(matches!(
        CarReader::new(&[0xffu8; 12][..]),
        Err(CarError::BadVarint { offset: 0, .. })
    ));
}

#[test]
fn bad_section_cids_are_rejected() {
    // A section holding a CID cut short, and one whose codec varint is padded (`55` as `d5 00`).
    for section in [
        hex::decode("0401551220").expect("hex"),
        [
            hex::decode("2501d5001220").expect("hex"),
            sha256(b"").to_vec(),
        ]
        .concat(),
    ] {
        let (car, header_end) = after_header(&section);
        let err = read_all(&car).expect_err("bad CID");
        assert!(
            matches!(err, CarError::BadSection { offset, .. } if offset == header_end + 1),
            "{err:?}"
        );
        assert!(err.to_string().contains("bad CID"), "{err}");
    }
}

#[test]
fn unsupported_hashes_and_codecs_are_named() {
    let sha512 = Digest::of(Algorithm::Sha512, b"x").flat_cid().0;
    let car = write_car(&[], &[(sha512, b"x".to_vec())]);
    let err = read_all(&car).expect_err("sha2-512");
    assert!(
        matches!(err, CarError::UnsupportedHash { code: 0x13, .. }),
        "{err:?}"
    );
    assert!(err.to_string().contains("0x13"), "{err}");

    let dag_json = cid_of(0x0129, SHA2_256, &sha256(b"{}"));
    let car = write_car(&[], &[(dag_json, b"{}".to_vec())]);
    let err = read_all(&car).expect_err("dag-json");
    assert!(
        matches!(err, CarError::UnsupportedCodec { codec: 0x0129, .. }),
        "{err:?}"
    );
    assert!(err.to_string().contains("0x129"), "{err}");

    // A sha2-256 multihash truncated to 20 bytes does not verify.
    let short = cid_of(RAW, SHA2_256, &sha256(b"x")[..20]);
    let car = write_car(&[], &[(short, b"x".to_vec())]);
    assert!(matches!(read_all(&car), Err(CarError::BadBlock { .. })));
}
