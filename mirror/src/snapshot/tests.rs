//! Snapshot tests: documents and artifacts through dag-cbor and back, and what a hostile snapshot gets.

use super::*;
use crate::cid::{Algorithm, Digest, raw_block_cid};

fn sample(n: usize) -> Snapshot {
    let mut s = Snapshot::default();
    for i in 0..n {
        let body = format!("doc {i}");
        s.documents.push(DocumentEntry {
            ecosystem: if i % 2 == 0 { "npm" } else { "apt/debian" }.into(),
            key: format!("pkg-{i}"),
            record: MetadataRecord {
                private: false,
                cid: Some(BlockCid(raw_block_cid(body.as_bytes()))),
                status: 200,
                upstream_url: format!("https://upstream.invalid/pkg-{i}"),
                fetched_at: 1_700_000_000_000 + i as i64,
                etag: (i % 3 == 0).then(|| format!("\"e{i}\"")),
                last_modified: None,
                size: body.len() as u64,
            },
            root: None,
        });
        let flat = Digest::of(Algorithm::Sha512, body.as_bytes()).flat_cid();
        s.artifacts.push(ArtifactEntry {
            ecosystem: "npm".into(),
            key: format!("pkg-{i}/-/pkg-{i}-1.0.0.tgz"),
            record: ArtifactRecord {
                private: false,
                flat,
                root: RootCid(raw_block_cid(body.as_bytes())),
                size: body.len() as u64,
                upstream_url: "https://upstream.invalid/t.tgz".into(),
                fetched_at: 5,
            },
        });
        s.refs.push(RefEntry {
            ecosystem: "apt/debian".into(),
            key: format!("pool/p{i}.deb"),
            listed_by: "dists/s/main/binary-amd64/Packages.xz@x".into(),
            record: RefRecord {
                version: None,
                published: None,
                removed: None,
                yanked: false,
                package: None,
                flat,
                url: "https://upstream.invalid/p.deb".into(),
                size: (i % 2 == 0).then_some(7),
            },
        });
    }
    s
}

fn sorted(mut s: Snapshot) -> Snapshot {
    s.documents
        .sort_by(|a, b| (&a.ecosystem, &a.key).cmp(&(&b.ecosystem, &b.key)));
    s.artifacts
        .sort_by(|a, b| (&a.ecosystem, &a.key).cmp(&(&b.ecosystem, &b.key)));
    s.refs
        .sort_by(|a, b| (&a.ecosystem, &a.key).cmp(&(&b.ecosystem, &b.key)));
    s
}

#[test]
fn exported_snapshots_carry_no_credentials() {
    let mut snapshot = sample(2);
    snapshot.documents[0].record.upstream_url =
        "https://cairn:s3cret@upstream.invalid/pkg-0".into();
    snapshot.artifacts[0].record.upstream_url =
        "https://cairn:s3cret@upstream.invalid/t.tgz".into();
    snapshot.refs[0].record.url = "https://cairn:s3cret@upstream.invalid/p.deb".into();
    let encoded = snapshot.encode();
    for (cid, block) in &encoded.blocks {
        let text = String::from_utf8_lossy(block);
        assert!(!text.contains("s3cret"), "block {cid} carries a password");
        assert!(!text.contains("cairn:"), "block {cid} carries a user name");
    }
    // A bundle written elsewhere with credentials loses them on import.
    let entry = Value::map(vec![("url", Value::text("https://u:p@upstream.invalid/x"))]);
    assert_eq!(url_text(&entry).expect("url"), "https://upstream.invalid/x");
}

#[test]
fn round_trip_across_pages() {
    let snapshot = sample(PAGE + 10);
    let encoded = snapshot.encode();
    assert_eq!(encoded.blocks[0].0, encoded.root);
    assert!(encoded.blocks.iter().all(|(_, b)| b.len() < 1 << 20));
    let blocks: std::collections::HashMap<Cid, Vec<u8>> = encoded.blocks.iter().cloned().collect();
    let decoded = Snapshot::decode(&encoded.root, |cid| {
        blocks
            .get(cid)
            .cloned()
            .ok_or_else(|| format!("missing {cid}"))
    })
    .expect("decode");
    assert_eq!(sorted(decoded), sorted(snapshot.clone()));
    // Deterministic, whatever the input order.
    let mut shuffled = snapshot;
    shuffled.documents.reverse();
    assert_eq!(shuffled.encode().root, encoded.root);
}

fn decode_encoded(encoded: &Encoded) -> Result<Snapshot, String> {
    let blocks: std::collections::HashMap<Cid, Vec<u8>> = encoded.blocks.iter().cloned().collect();
    Snapshot::decode(&encoded.root, |cid| {
        blocks
            .get(cid)
            .cloned()
            .ok_or_else(|| format!("missing {cid}"))
    })
}

fn version_of(encoded: &Encoded) -> Option<u64> {
    Value::decode(&encoded.blocks[0].1)
        .ok()?
        .get("version")
        .and_then(Value::as_u64)
}

#[test]
fn document_roots_make_version_2_and_only_they_do() {
    // Without a chunked document: version 1, as older nodes write and read it.
    let plain = sample(3);
    let encoded = plain.encode();
    assert_eq!(version_of(&encoded), Some(1));
    // With one: version 2, and the root comes back.
    let mut chunked = sample(3);
    let root = RootCid(crate::unixfs::root_of(&vec![7u8; 3 << 20]));
    chunked.documents[1].root = Some(root);
    let encoded = chunked.encode();
    assert_eq!(version_of(&encoded), Some(2));
    assert_ne!(encoded.root, plain.encode().root);
    let decoded = decode_encoded(&encoded).expect("decode");
    assert_eq!(sorted(decoded), sorted(chunked.clone()));
    // Deterministic.
    assert_eq!(chunked.encode().root, encoded.root);
}

#[test]
fn a_root_in_a_version_1_snapshot_or_an_unknown_version_is_refused() {
    let mut chunked = sample(1);
    chunked.documents[0].root = Some(RootCid(crate::unixfs::root_of(&vec![7u8; 3 << 20])));
    let encoded = chunked.encode();
    for (version, expect) in [(1, "version 1 snapshots do not carry"), (3, "version 3")] {
        let mut top = Value::decode(&encoded.blocks[0].1).expect("root");
        if let Value::Map(entries) = &mut top {
            for (k, v) in entries.iter_mut() {
                if k == "version" {
                    *v = Value::Int(version);
                }
            }
        }
        let bytes = top.encode();
        let root = dag_cbor_cid(&bytes);
        let mut blocks = encoded.blocks.clone();
        blocks[0] = (root, bytes);
        let e = decode_encoded(&Encoded { root, blocks }).expect_err("refused");
        assert!(e.contains(expect), "{e}");
    }
}

#[test]
fn foreign_roots_are_refused() {
    let other = Value::map(vec![("type", Value::text("something-else"))]).encode();
    let cid = dag_cbor_cid(&other);
    let e = Snapshot::decode(&cid, |_| Ok(other.clone())).expect_err("not a snapshot");
    assert!(e.contains("not a Cairn snapshot"), "{e}");
}
