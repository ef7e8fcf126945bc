//! Tests of block lookup and DAG walks over a real store and index in a temp dir.

use std::str::FromStr;

use super::*;
use crate::cid::{raw_block_cid, raw_cid};
use crate::index::ArtifactRecord;
use crate::testing::noise;
use crate::unixfs::{CHUNK_SIZE, Dag};

const MIB: usize = CHUNK_SIZE as usize;

struct Fixture {
    _dir: tempfile::TempDir,
    store: Store,
    index: Arc<Index>,
    blocks: Blocks,
}

fn fixture() -> Fixture {
    let dir = tempfile::tempdir().expect("tempdir");
    let store = Store::open(dir.path()).expect("store");
    let index = store.index().clone();
    let blocks = Blocks::new(store.clone());
    Fixture {
        _dir: dir,
        store,
        index,
        blocks,
    }
}

impl Fixture {
    /// Store and index `data` as an npm artifact; `keep_leaves` indexes only the first leaves.
    fn add(&self, data: &[u8], algorithm: Algorithm, keep_leaves: Option<usize>) -> (FlatCid, Dag) {
        let mut writer = self
            .store
            .artifact_writer(Digest::of(algorithm, data))
            .expect("writer");
        writer.write(data).expect("write");
        let committed = writer.finish().expect("finish");
        let mut dag = committed.dag.clone();
        if let Some(n) = keep_leaves {
            dag.leaves.truncate(n);
        }
        let record = ArtifactRecord {
            private: false,
            flat: committed.flat,
            root: RootCid(dag.root),
            size: data.len() as u64,
            upstream_url: "http://upstream.invalid/x.tgz".into(),
            fetched_at: 1,
        };
        self.index
            .put_artifact("npm", &committed.flat.to_string(), &record, &dag)
            .expect("index");
        (committed.flat, committed.dag)
    }

    fn walk(&self, root: Cid, selector: Selector) -> Result<Vec<(Cid, Bytes)>, BlockError> {
        self.blocks
            .walk(root, selector)?
            .expect("root is held")
            .collect()
    }
}

fn range(from: i64, to: Option<i64>) -> Selector {
    Selector {
        bytes: Some(EntityBytes { from, to }),
        ..Selector::default()
    }
}

#[test]
fn entity_bytes_parse_and_resolve() {
    for (text, size, expect) in [
        ("0:*", 100, Resolved::Range(0, 99)),
        ("0:99", 100, Resolved::Range(0, 99)),
        ("0:1000", 100, Resolved::Range(0, 99)),
        ("10:20", 100, Resolved::Range(10, 20)),
        ("-10:*", 100, Resolved::Range(90, 99)),
        ("-1000:*", 100, Resolved::Range(0, 99)),
        ("5:-10", 100, Resolved::Range(5, 90)),
        ("5:-100", 100, Resolved::Empty),
        ("5:-1000", 100, Resolved::Empty),
        ("20:10", 100, Resolved::Empty),
        ("99:99", 100, Resolved::Range(99, 99)),
        ("100:*", 100, Resolved::Outside),
        ("0:*", 0, Resolved::Empty),
    ] {
        let bytes: EntityBytes = text.parse().expect(text);
        assert_eq!(bytes.to_string(), text);
        assert_eq!(bytes.resolve(size), expect, "{text} of {size}");
    }
    for bad in ["", "1", "a:b", "1:", ":1", "1:*:2", "*:1", "1.5:2"] {
        assert!(bad.parse::<EntityBytes>().is_err(), "{bad:?}");
    }
}

#[test]
fn a_three_leaf_file_is_walked_in_dfs_order_and_ranges_pick_leaves() {
    let f = fixture();
    let data = noise(2 * MIB + 100, 1);
    let (_, dag) = f.add(&data, Algorithm::Sha512, None);
    let leaves: Vec<Cid> = dag.leaves.iter().map(|l| l.cid).collect();
    assert_eq!(leaves.len(), 3);
    let root = dag.root;

    let all = f.walk(root, Selector::default()).expect("walk");
    let cids: Vec<Cid> = all.iter().map(|(c, _)| *c).collect();
    assert_eq!(cids, [root, leaves[0], leaves[1], leaves[2]]);
    let file: Vec<u8> = all[1..].iter().flat_map(|(_, b)| b.to_vec()).collect();
    assert_eq!(file, data);
    assert_eq!(all[0].1, dag.nodes[0].1);

    let size = data.len() as i64;
    let mib = MIB as i64;
    let pick = |leaf: &[usize]| -> Vec<Cid> {
        std::iter::once(root)
            .chain(leaf.iter().map(|&i| leaves[i]))
            .collect()
    };
    for (selector, expect) in [
        (range(0, Some(mib - 1)), pick(&[0])),
        (range(0, Some(mib)), pick(&[0, 1])),
        (range(mib - 1, Some(mib)), pick(&[0, 1])),
        (range(mib, Some(2 * mib - 1)), pick(&[1])),
        (range(mib + 5, None), pick(&[1, 2])),
        (range(-1, None), pick(&[2])),
        (range(-100, None), pick(&[2])),
        (range(-101, None), pick(&[1, 2])),
        (range(size - 1, None), pick(&[2])),
        (range(0, Some(-1)), pick(&[0, 1, 2])),
        (range(0, None), pick(&[0, 1, 2])),
        (range(10, Some(5)), pick(&[])),
        (range(499, Some(-size)), pick(&[])),
        (
            Selector {
                scope: DagScope::Block,
                ..Selector::default()
            },
            pick(&[]),
        ),
        (
            Selector {
                scope: DagScope::Entity,
                ..Selector::default()
            },
            pick(&[0, 1, 2]),
        ),
    ] {
        let got: Vec<Cid> = f
            .walk(root, selector)
            .expect("walk")
            .into_iter()
            .map(|(c, _)| c)
            .collect();
        assert_eq!(got, expect, "{selector:?}");
    }
    let walk = f.blocks.walk(root, Selector::default()).expect("walk");
    assert_eq!(walk.and_then(|w| w.entity_size()), Some(data.len() as u64));
    match f.walk(root, range(size, None)) {
        Err(e) => match e.kind() {
            BlockErrorKind::RangeOutside { size: s, .. } => assert_eq!(*s, size as u64),
            other => panic!("expected a range outside the file, got {other:?}"),
        },
        other => panic!("expected a range outside the file, got {other:?}"),
    }
}

#[test]
fn repeated_leaves_are_sent_once_unless_dups_are_asked_for() {
    let f = fixture();
    let (_, dag) = f.add(&vec![0u8; 3 * MIB], Algorithm::Sha512, None);
    let leaf = dag.leaves[0].cid;
    assert!(dag.leaves.iter().all(|l| l.cid == leaf));
    let cids = |dups| -> Vec<Cid> {
        let selector = Selector {
            dups,
            ..Selector::default()
        };
        f.walk(dag.root, selector)
            .expect("walk")
            .into_iter()
            .map(|(c, _)| c)
            .collect()
    };
    assert_eq!(cids(false), [dag.root, leaf]);
    assert_eq!(cids(true), [dag.root, leaf, leaf, leaf]);
}

#[test]
fn every_kind_of_block_is_located_and_verified() {
    let f = fixture();
    let data = noise(MIB + 1, 1);
    let (flat, dag) = f.add(&data, Algorithm::Sha512, None);
    let (inner, node) = dag.nodes[0].clone();

    let empty = Cid::from_str("bafkqaaa").expect("bafkqaaa");
    assert_eq!(
        f.blocks.locate(&empty).expect("locate"),
        Some(Location::Inline(Bytes::new()))
    );
    assert_eq!(f.blocks.get(&empty).expect("get"), Some(Bytes::new()));

    assert_eq!(
        f.blocks.get(&inner).expect("get").as_deref(),
        Some(&node[..])
    );
    let v0 = Cid::new_v0(*inner.hash()).expect("CIDv0");
    assert_eq!(f.blocks.get(&v0).expect("get").as_deref(), Some(&node[..]));

    let second = &dag.leaves[1];
    assert_eq!(
        f.blocks.get(&second.cid).expect("get").as_deref(),
        Some(&data[MIB..])
    );

    match f.blocks.locate(&flat.0).expect("locate") {
        Some(Location::Flat { size, root, .. }) => {
            assert_eq!(size, data.len() as u64);
            assert_eq!(root.0, dag.root);
        }
        other => panic!("flat CID located as {other:?}"),
    }
    assert_eq!(
        f.blocks.get(&flat.0).expect("get").as_deref(),
        Some(&data[..])
    );

    let meta = f.store.put_metadata(b"{\"name\":\"x\"}").expect("metadata");
    assert!(matches!(
        f.blocks.locate(&meta.0).expect("locate"),
        Some(Location::Metadata { size: 12, .. })
    ));
    assert_eq!(
        f.blocks.get(&meta.0).expect("get").as_deref(),
        Some(&b"{\"name\":\"x\"}"[..])
    );

    for unknown in [
        raw_block_cid(b"never stored"),
        crate::cid::dag_pb_cid(b"never stored"),
        raw_cid(crate::cid::SHA2_512, &[7; 64]),
    ] {
        assert_eq!(
            f.blocks.locate(&unknown).expect("locate"),
            None,
            "{unknown}"
        );
        assert!(
            f.blocks
                .walk(unknown, Selector::default())
                .expect("walk")
                .is_none()
        );
    }
}

#[test]
fn a_small_artifact_is_one_raw_block_under_its_root_and_flat_cids() {
    let f = fixture();
    let data = b"a tiny crate".to_vec();
    let (flat, dag) = f.add(&data, Algorithm::Sha256, None);
    // With a sha2-256 registry digest, the flat CID, the root and the only leaf coincide.
    assert_eq!(flat.0, dag.root);
    let blocks = f.walk(dag.root, Selector::default()).expect("walk");
    assert_eq!(blocks, [(dag.root, Bytes::from(data.clone()))]);
    let walk = f.blocks.walk(dag.root, Selector::default()).expect("walk");
    assert_eq!(walk.and_then(|w| w.entity_size()), Some(data.len() as u64));
}

#[test]
fn a_flat_file_over_the_block_limit_is_not_walked() {
    let f = fixture();
    let (flat, dag) = f.add(&noise(2 * MIB + 1, 1), Algorithm::Sha512, None);
    match f.blocks.walk(flat.0, Selector::default()) {
        Err(e) if matches!(e.kind(), BlockErrorKind::TooLarge { .. }) => {
            assert!(e.to_string().contains(&dag.root.to_string()), "{e}");
        }
        other => panic!("expected too large, got {other:?}"),
    }
}

#[test]
fn a_missing_or_corrupt_child_ends_the_walk_after_the_blocks_before_it() {
    let f = fixture();
    let data = noise(2 * MIB + 100, 1);
    let (flat, dag) = f.add(&data, Algorithm::Sha512, Some(1));
    let mut walk = f
        .blocks
        .walk(dag.root, Selector::default())
        .expect("walk")
        .expect("root");
    assert_eq!(
        walk.next().map(|r| r.map(|(c, _)| c).ok()),
        Some(Some(dag.root))
    );
    assert_eq!(
        walk.next().map(|r| r.map(|(c, _)| c).ok()),
        Some(Some(dag.leaves[0].cid))
    );
    match walk.next() {
        Some(Err(e)) => match e.kind() {
            BlockErrorKind::Missing { cid } => assert_eq!(*cid, dag.leaves[1].cid),
            other => panic!("expected a missing leaf, got {other:?}"),
        },
        other => panic!("expected a missing leaf, got {other:?}"),
    }
    assert!(walk.next().is_none(), "the walk stops after an error");

    // Corrupt the first leaf on disk: it is refused, never yielded.
    let path = f.store.blob_path(&flat);
    let mut bytes = std::fs::read(&path).expect("blob");
    bytes[10] ^= 0xff;
    std::fs::write(&path, bytes).expect("tamper");
    let got: Vec<_> = f
        .blocks
        .walk(dag.root, Selector::default())
        .expect("walk")
        .expect("root")
        .collect();
    assert_eq!(got.len(), 2, "{got:?}");
    assert!(
        matches!(&got[1], Err(e) if matches!(e.kind(), BlockErrorKind::Corrupt { .. })),
        "{got:?}"
    );
}

/// An identity-hashed dag-pb root (the client writes its bytes) over two identity leaves,
/// whose `blocksizes` sum past `u64::MAX`.
#[test]
fn hostile_blocksizes_in_an_identity_root_do_not_overflow() {
    use crate::unixfs::put_varint;
    let identity = |codec: u64, bytes: &[u8]| {
        Cid::new_v1(
            codec,
            cid::multihash::Multihash::wrap(IDENTITY, bytes).expect("fits"),
        )
    };
    let field = |out: &mut Vec<u8>, tag: u64, bytes: &[u8]| {
        put_varint(out, (tag << 3) | 2);
        put_varint(out, bytes.len() as u64);
        out.extend_from_slice(bytes);
    };
    let mut node = Vec::new();
    for leaf in [b"ab", b"cd"] {
        let mut link = Vec::new();
        field(&mut link, 1, &identity(RAW, leaf).to_bytes());
        field(&mut node, 2, &link);
    }
    let mut data = Vec::new();
    for (tag, value) in [(1, 2), (4, u64::MAX), (4, 2)] {
        put_varint(&mut data, tag << 3);
        put_varint(&mut data, value);
    }
    field(&mut node, 1, &data);
    let root = identity(DAG_PB, &node);
    let f = fixture();
    for selector in [range(0, Some(10)), range(-3, None), Selector::default()] {
        let walk = f.blocks.walk(root, selector).expect("walk").expect("held");
        assert_eq!(walk.entity_size(), Some(u64::MAX));
        let _ = walk.collect::<Result<Vec<_>, _>>();
    }
}

#[test]
fn a_leaf_of_a_file_committed_moments_ago_is_not_hashed_again_until_the_file_is_written() {
    let f = fixture();
    let data = noise(2 * MIB + 100, 3);
    let mut writer = f
        .store
        .artifact_writer(Digest::of(Algorithm::Sha512, &data))
        .expect("writer");
    writer.write(&data).expect("write");
    let origin = crate::store::Origin {
        upstream_url: "http://upstream.invalid/x.tgz".into(),
        fetched_at: 1,
        private: false,
    };
    let committed = f
        .store
        .commit_artifact("npm", "x.tgz", writer, origin, |_| {})
        .expect("commit");
    let path = f.store.blob_path(&committed.record.flat);
    let stamp = || Stamp::of(&std::fs::metadata(&path).expect("stat the file"));
    // Hashed as it was written: checked, as it now is.
    assert!(f.store.checked().stands(&committed.record.flat, &stamp()));
    let second = &committed.dag.leaves[1];
    assert_eq!(
        f.blocks.get(&second.cid).expect("read").as_deref(),
        Some(&data[MIB..2 * MIB])
    );

    // Overwritten in place, one byte of that leaf flipped, its modification time put back: the
    // status change time moved, so the leaf is hashed and refused.
    let mtime = std::fs::metadata(&path)
        .and_then(|m| m.modified())
        .expect("modification time");
    let mut damaged = data.clone();
    damaged[MIB + 7] ^= 0x01;
    std::fs::write(&path, &damaged).expect("damage");
    std::fs::File::options()
        .write(true)
        .open(&path)
        .and_then(|file| file.set_modified(mtime))
        .expect("put the modification time back");
    let err = f.blocks.get(&second.cid).expect_err("a damaged leaf");
    assert!(
        matches!(err.kind(), BlockErrorKind::Corrupt { .. }),
        "{err}"
    );
    assert!(!f.store.checked().stands(&committed.record.flat, &stamp()));
}
