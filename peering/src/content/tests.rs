//! `LocalContent::held`'s DAG walk over holdings in memory, and `strip_userinfo`.

use cairn_ipld::cid::{Algorithm, Digest, dag_pb_cid};
use cairn_ipld::unixfs::{DagBuilder, put_varint};

use super::*;
use crate::testing::{MemoryContent, noise};

const MIB: usize = 1 << 20;

#[test]
fn held_lists_every_leaf_of_a_multi_leaf_artifact_in_file_order() {
    let memory = MemoryContent::default();
    let data = noise(3 * MIB + 17, 1);
    let (flat, root) = memory.add(&data);
    let held = memory.held(&flat).expect("readable").expect("held");
    assert_eq!(held.root, root);
    assert_eq!(held.size, data.len() as u64);
    let mut builder = DagBuilder::new();
    builder.update(&data);
    assert_eq!(held.leaves, builder.finish().leaves);
    assert_eq!(held.leaves.len(), 4);
    assert_eq!(held.leaves[3].offset, 3 * MIB as u64);
}

#[test]
fn held_lists_a_one_leaf_artifact_as_its_root() {
    let memory = MemoryContent::default();
    let (flat, root) = memory.add(b"small");
    let held = memory.held(&flat).expect("readable").expect("held");
    assert_eq!(held.root.0.codec(), RAW);
    assert_eq!(
        held.leaves,
        vec![Leaf {
            cid: root.0,
            offset: 0,
            len: 5
        }]
    );
}

#[test]
fn held_is_none_for_an_artifact_not_held() {
    let memory = MemoryContent::default();
    let flat = Digest::of(Algorithm::Sha512, b"absent").flat_cid();
    assert_eq!(memory.held(&flat), Ok(None));
}

#[test]
fn held_refuses_a_dag_whose_leaves_do_not_cover_the_size() {
    let memory = MemoryContent::default();
    let data = noise(2 * MIB + 1, 2);
    let (flat, root) = memory.add(&data);
    memory.put_artifact(flat, root, data.len() as u64 + 1);
    let err = memory.held(&flat).expect_err("sizes disagree");
    assert!(err.0.contains("lists 2097153 bytes, not 2097154"), "{err}");
}

#[test]
fn held_names_an_inner_node_that_is_missing() {
    let memory = MemoryContent::default();
    let (flat, root) = memory.add(&noise(2 * MIB, 3));
    memory.remove_block(&root.0);
    let err = memory.held(&flat).expect_err("no root node");
    assert_eq!(err.0, format!("inner node {} is not held", root.0));
}

/// A dag-pb file node with one link, to `child`, of `len` bytes.
fn file_node(child: Cid, len: u64) -> Vec<u8> {
    let mut unixfs = vec![0x08, 0x02]; // Type = File
    unixfs.push(0x20); // blocksizes
    put_varint(&mut unixfs, len);
    let hash = child.to_bytes();
    let mut link = vec![0x0a];
    put_varint(&mut link, hash.len() as u64);
    link.extend_from_slice(&hash);
    let mut node = vec![0x12];
    put_varint(&mut node, link.len() as u64);
    node.extend_from_slice(&link);
    node.push(0x0a);
    put_varint(&mut node, unixfs.len() as u64);
    node.extend_from_slice(&unixfs);
    node
}

#[test]
fn held_stops_at_a_dag_deeper_than_the_limit() {
    let memory = MemoryContent::default();
    let flat = Digest::of(Algorithm::Sha512, b"deep").flat_cid();
    let leaf = cairn_ipld::cid::raw_block_cid(b"x");
    memory.put_block(leaf, Bytes::from_static(b"x"));
    let mut child = leaf;
    for _ in 0..=MAX_DEPTH + 1 {
        let node = file_node(child, 1);
        child = dag_pb_cid(&node);
        memory.put_block(child, Bytes::from(node));
    }
    memory.put_artifact(flat, RootCid(child), 1);
    let err = memory.held(&flat).expect_err("too deep");
    assert!(err.0.contains("deeper than 16 levels"), "{err}");
}

#[test]
fn strip_userinfo_removes_credentials_from_text() {
    for (text, stripped) in [
        (
            "https://user:pass@upstream.invalid/npm/x",
            "https://upstream.invalid/npm/x",
        ),
        ("http://token@upstream.invalid", "http://upstream.invalid"),
        (
            "https://upstream.invalid/a@b",
            "https://upstream.invalid/a@b",
        ),
        ("not a url", "not a url"),
    ] {
        assert_eq!(strip_userinfo(text), stripped, "{text}");
    }
}
