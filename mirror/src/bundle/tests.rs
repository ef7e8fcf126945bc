//! Export then import between two stores; truncated and tampered bundles change nothing.

use super::*;
use crate::cid::{Algorithm, Digest, RootCid};
use crate::index::{ArtifactRecord, MetadataRecord, RefRecord};
use crate::snapshot::{ArtifactEntry, DocumentEntry, RefEntry};

struct Node {
    _dir: tempfile::TempDir,
    store: Store,
    index: Index,
}

fn node() -> Node {
    let dir = tempfile::tempdir().expect("tempdir");
    let store = Store::open(dir.path()).expect("store");
    let index = Index::open(&dir.path().join("index.sqlite3")).expect("index");
    Node {
        _dir: dir,
        store,
        index,
    }
}

fn bytes(len: usize, seed: u8) -> Vec<u8> {
    (0..len)
        .map(|i| (i as u8).wrapping_mul(31) ^ seed)
        .collect()
}

/// A node holding a document, a 3-byte artifact, a 3 MiB + 5 artifact, and a reference.
fn populated() -> (Node, Snapshot) {
    let n = node();
    let doc = br#"{"name":"left-pad"}"#;
    let cid = n.store.put_metadata(doc).expect("doc");
    let record = MetadataRecord {
        cid: Some(cid),
        status: 200,
        upstream_url: "https://upstream.invalid/left-pad".into(),
        fetched_at: 1,
        etag: None,
        last_modified: Some("Thu, 01 Jan 2026 00:00:00 GMT".into()),
        size: doc.len() as u64,
    };
    n.index
        .put_metadata("npm", "left-pad", &record, &[])
        .expect("index doc");
    let mut snapshot = Snapshot::default();
    snapshot.documents.push(DocumentEntry {
        ecosystem: "npm".into(),
        key: "left-pad".into(),
        record,
    });
    for (key, data) in [
        ("small.tgz", bytes(3, 1)),
        ("big.tgz", bytes(3 * (1 << 20) + 5, 2)),
    ] {
        let mut writer = n
            .store
            .artifact_writer(Digest::of(Algorithm::Sha512, &data))
            .expect("writer");
        writer.write(&data).expect("write");
        let committed = writer.finish().expect("commit");
        let record = ArtifactRecord {
            flat: committed.flat,
            root: RootCid(committed.dag.root),
            size: data.len() as u64,
            upstream_url: format!("https://upstream.invalid/{key}"),
            fetched_at: 2,
        };
        n.index
            .put_artifact("npm", key, &record, &committed.dag)
            .expect("index artifact");
        snapshot.artifacts.push(ArtifactEntry {
            ecosystem: "npm".into(),
            key: key.into(),
            record,
        });
    }
    snapshot.refs.push(RefEntry {
        ecosystem: "npm".into(),
        key: "other.tgz".into(),
        listed_by: "left-pad".into(),
        record: RefRecord {
            flat: Digest::of(Algorithm::Sha512, b"x").flat_cid(),
            url: "https://upstream.invalid/other.tgz".into(),
            size: Some(1),
        },
    });
    (n, snapshot)
}

fn export_bytes(n: &Node, snapshot: &Snapshot) -> (Cid, Vec<u8>) {
    let encoded = snapshot.encode();
    let mut out = Vec::new();
    let counts = export(&n.store, &n.index, snapshot, &encoded, &mut out, |_| {}).expect("export");
    assert_eq!(counts.artifacts, 2);
    (encoded.root, out)
}

fn stats(n: &Node) -> Vec<crate::index::EcosystemStats> {
    n.index.stats().expect("stats")
}

#[test]
fn export_then_import_gives_the_same_state() {
    let (a, snapshot) = populated();
    let (root, car) = export_bytes(&a, &snapshot);
    let b = node();
    let (imported, counts) = import(&b.store, &b.index, &car[..], |_| {}).expect("import");
    assert_eq!(imported, root);
    assert_eq!(counts.artifacts, 2);
    assert_eq!(counts.documents, 1);
    for entry in &snapshot.artifacts {
        let got = b
            .index
            .get_artifact("npm", &entry.key)
            .expect("read")
            .expect("imported");
        assert_eq!(got.root, entry.record.root);
        let original = std::fs::read(a.store.blob_path(&entry.record.flat)).expect("a");
        let copied = std::fs::read(b.store.blob_path(&entry.record.flat)).expect("b");
        assert_eq!(original, copied);
    }
    assert!(b.index.get_ref("npm", "other.tgz").expect("ref").is_some());
    let doc = b
        .index
        .get_metadata("npm", "left-pad")
        .expect("doc")
        .expect("doc");
    assert_eq!(
        &b.store.read_metadata(&doc.cid.expect("cid")).expect("body")[..],
        br#"{"name":"left-pad"}"#
    );
    // The snapshot itself is kept, so `export --snapshot` can name it later.
    assert!(b.index.get_block(&root).expect("block").is_some());
    // Importing again changes nothing and succeeds.
    import(&b.store, &b.index, &car[..], |_| {}).expect("again");
    assert_eq!(stats(&b), stats(&a));
}

#[test]
fn truncated_bundles_leave_the_store_as_it_was() {
    let (a, snapshot) = populated();
    let (_, car) = export_bytes(&a, &snapshot);
    let b = node();
    // Cut inside the header, the snapshot, a document, a leaf and the last inner node.
    for cut in [10, 100, car.len() / 3, car.len() / 2, car.len() - 1] {
        let e = import(&b.store, &b.index, &car[..cut], |_| {}).expect_err("truncated");
        let text = e.to_string();
        assert!(
            text.contains("truncated") || text.contains("ends at byte") || text.contains("byte"),
            "cut {cut}: {text}"
        );
        assert!(stats(&b).is_empty(), "cut {cut} indexed something");
        let blobs = walk(&b.store.root().join("blobs"));
        assert_eq!(blobs, 0, "cut {cut} left files in blobs/");
        assert_eq!(
            walk(&b.store.root().join("tmp")),
            0,
            "cut {cut} left temp files"
        );
    }
}

#[test]
fn a_tampered_bundle_is_refused_naming_the_block() {
    let (a, snapshot) = populated();
    let (_, mut car) = export_bytes(&a, &snapshot);
    let b = node();
    let at = car.len() / 2;
    car[at] ^= 0x01;
    let e = import(&b.store, &b.index, &car[..], |_| {}).expect_err("tampered");
    assert!(e.to_string().contains("bafk"), "{e}");
    assert!(stats(&b).is_empty());
    assert_eq!(walk(&b.store.root().join("blobs")), 0);
}

fn walk(dir: &std::path::Path) -> usize {
    let Ok(entries) = std::fs::read_dir(dir) else {
        return 0;
    };
    entries
        .filter_map(Result::ok)
        .map(|e| {
            let path = e.path();
            if path.is_dir() { walk(&path) } else { 1 }
        })
        .sum()
}

#[test]
fn dag_shapes() {
    assert_eq!(leaf_count(0), 1);
    assert_eq!(leaf_count(1 << 20), 1);
    assert_eq!(leaf_count((1 << 20) + 1), 2);
    assert_eq!(inner_count(1), 0);
    assert_eq!(inner_count(2), 1);
    assert_eq!(inner_count(1024), 1);
    assert_eq!(inner_count(1025), 3);
}
