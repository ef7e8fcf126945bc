//! Export then import between two stores; truncated and tampered bundles change nothing.

use std::sync::Arc;

use cid::Cid;
use url::Url;

use super::export::write_bundle;
use super::files::{inner_count, leaf_count, write_dag};
use super::*;
use crate::car::{CarReader, CarWriter};
use crate::cid::{Algorithm, BlockCid, DAG_CBOR, Digest, RAW, RootCid, raw_block_cid};
use crate::ecosystem::{ArtifactRoute, Ecosystem, Listing, MetadataDoc, MetadataRoute, Route};
use crate::index::{Index, MetadataRecord};
use crate::now_ms;
use crate::snapshot::Snapshot;
use crate::snapshot::{ArtifactEntry, DocumentEntry};
use crate::store::Store;
use crate::unixfs::CHUNK_SIZE;

/// A minimal ecosystem: a document `NAME` lists files as `KEY SHA512HEX` lines (one that
/// starts with `unsigned` is refused, as apt refuses an unsigned `InRelease`), and a file is
/// `NAME/-/FILE`.
struct Test;

fn good_name(s: &str) -> bool {
    !s.is_empty()
        && !s.starts_with('.')
        && s.bytes()
            .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b"-.".contains(&b))
}

fn doc_route(name: &str) -> MetadataRoute {
    MetadataRoute {
        key: name.to_owned(),
        upstream_path: name.to_owned(),
        variant: "raw",
        upstream_accept: None,
        context: None,
    }
}

impl Ecosystem for Test {
    fn name(&self) -> &str {
        "t"
    }

    fn route(
        &self,
        request: &crate::ecosystem::Request<'_>,
    ) -> Result<Option<Route>, crate::ecosystem::BadRequest> {
        let path = request.path;
        let bad = || crate::ecosystem::BadRequest(format!("bad path {path:?}"));
        if let Some((name, file)) = path.split_once("/-/") {
            if !good_name(name) || !good_name(file) {
                return Err(bad());
            }
            return Ok(Some(Route::Artifact(ArtifactRoute {
                key: path.to_owned(),
                listed_by: Listing::Document(doc_route(name)),
                derive: None,
                listing: false,
            })));
        }
        if !good_name(path) {
            return Err(bad());
        }
        Ok(Some(Route::Metadata(doc_route(path))))
    }

    fn read(
        &self,
        doc: &MetadataDoc<'_>,
    ) -> Result<crate::ecosystem::DocumentFacts, crate::ecosystem::AdapterError> {
        let fail = |e: String| crate::ecosystem::AdapterError(e);
        let text = std::str::from_utf8(doc.body).map_err(|e| fail(e.to_string()))?;
        if text.starts_with("unsigned") {
            return Err(fail(format!("{}: not signed", doc.key)));
        }
        text.lines()
            .map(|line| {
                let (key, hex_digest) = line
                    .split_once(' ')
                    .ok_or_else(|| fail(format!("bad line {line:?}")))?;
                let bytes = hex::decode(hex_digest).map_err(|e| fail(e.to_string()))?;
                Ok(crate::ecosystem::ArtifactRef {
                    version: None,
                    published: None,
                    yanked: false,
                    package: None,
                    key: key.to_owned(),
                    url: doc.url.join(key).map_err(|e| fail(e.to_string()))?,
                    digest: Digest::new(Algorithm::Sha512, bytes)
                        .map_err(|e| fail(e.to_string()))?,
                    size: None,
                })
            })
            .collect::<Result<Vec<_>, _>>()
            .map(crate::ecosystem::DocumentFacts::artifacts)
    }

    fn render(
        &self,
        doc: &MetadataDoc<'_>,
        _variant: &'static str,
        _base: &Url,
    ) -> Result<crate::ecosystem::Rendered, crate::ecosystem::AdapterError> {
        Ok(crate::ecosystem::Rendered {
            body: bytes::Bytes::copy_from_slice(doc.body),
            content_type: "text/plain",
        })
    }
}

fn ecosystems() -> Vec<Arc<dyn Ecosystem>> {
    vec![Arc::new(Test)]
}

struct Node {
    _dir: tempfile::TempDir,
    store: Store,
    index: Arc<Index>,
}

fn node() -> Node {
    let dir = tempfile::tempdir().expect("tempdir");
    let store = Store::open(dir.path()).expect("store");
    let index = store.index().clone();
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

fn sha512_hex(data: &[u8]) -> String {
    let digest = Digest::of(Algorithm::Sha512, data);
    hex::encode(digest.flat_cid().0.hash().digest())
}

/// Index a document `name` listing `lines` in `n`, fetched at `fetched_at`.
fn put_doc(n: &Node, name: &str, body: &str, fetched_at: i64) -> DocumentEntry {
    let record = MetadataRecord {
        private: false,
        cid: None,
        status: 200,
        upstream_url: format!("https://upstream.invalid/{name}"),
        fetched_at,
        etag: None,
        last_modified: Some("Thu, 01 Jan 2026 00:00:00 GMT".into()),
        size: body.len() as u64,
    };
    let record = n
        .store
        .put_document("t", name, body.as_bytes(), record, &[])
        .expect("doc");
    DocumentEntry {
        ecosystem: "t".into(),
        key: name.into(),
        record,
        root: None,
    }
}

/// Store `data` in `n` as artifact `key` (no document needed: the exporting side is trusted
/// by these tests, the importing side is what is checked).
fn put_artifact(n: &Node, key: &str, data: &[u8]) -> ArtifactEntry {
    let mut writer = n
        .store
        .artifact_writer(Digest::of(Algorithm::Sha512, data))
        .expect("writer");
    writer.write(data).expect("write");
    let origin = crate::store::Origin {
        private: false,
        upstream_url: format!("https://upstream.invalid/{key}"),
        fetched_at: 2,
    };
    let record = n
        .store
        .commit_artifact("t", key, writer, origin, |_| {})
        .expect("commit")
        .record;
    ArtifactEntry {
        ecosystem: "t".into(),
        key: key.into(),
        record,
    }
}

/// A node holding a document, a 3-byte artifact and a 3 MiB + 5 artifact it lists, and a
/// third file it lists but the node does not hold.
fn populated() -> (Node, Snapshot) {
    let n = node();
    let small = bytes(3, 1);
    let big = bytes(3 * (1 << 20) + 5, 2);
    let body = format!(
        "left-pad/-/small.tgz {}\nleft-pad/-/big.tgz {}\nleft-pad/-/other.tgz {}\n",
        sha512_hex(&small),
        sha512_hex(&big),
        sha512_hex(b"x")
    );
    let mut snapshot = Snapshot::default();
    snapshot.documents.push(put_doc(&n, "left-pad", &body, 1));
    snapshot
        .artifacts
        .push(put_artifact(&n, "left-pad/-/small.tgz", &small));
    snapshot
        .artifacts
        .push(put_artifact(&n, "left-pad/-/big.tgz", &big));
    (n, snapshot)
}

fn export_bytes(n: &Node, snapshot: &Snapshot) -> (Cid, Vec<u8>) {
    let encoded = snapshot.encode();
    let mut out = Vec::new();
    export(
        &n.store,
        &n.index,
        &ecosystems(),
        snapshot,
        &encoded,
        &mut out,
        |_| {},
    )
    .expect("export");
    (encoded.root, out)
}

/// A bundle as [`export`] writes it, without the checks that keep it from writing what an
/// import refuses: for testing the import's own checks. Returns what `export` says of it.
fn export_unchecked(n: &Node, snapshot: &Snapshot) -> (Vec<u8>, BundleError) {
    let encoded = snapshot.encode();
    let refused = export(
        &n.store,
        &n.index,
        &ecosystems(),
        snapshot,
        &encoded,
        std::io::sink(),
        |_| {},
    )
    .expect_err("export writes a bundle import refuses");
    let mut snapshot = snapshot.clone();
    snapshot.normalize();
    let mut out = Vec::new();
    write_bundle(
        &n.store,
        &n.index,
        &snapshot,
        &encoded,
        &mut out,
        &mut |_| {},
    )
    .expect("write");
    (out, refused)
}

/// Nothing this node fetches is private.
fn public(_: &str, _: Option<&str>) -> bool {
    false
}

fn stats(n: &Node) -> Vec<crate::index::EcosystemStats> {
    n.index.stats().expect("stats")
}

#[test]
fn export_then_import_gives_the_same_state() {
    let (a, snapshot) = populated();
    let (root, car) = export_bytes(&a, &snapshot);
    let b = node();
    let (imported, counts) =
        import(&b.store, &b.index, &ecosystems(), &public, &car[..], |_| {}).expect("import");
    assert_eq!(imported, root);
    assert_eq!(counts.artifacts, 2);
    assert_eq!(counts.documents, 1);
    for entry in &snapshot.artifacts {
        let got = b
            .index
            .get_artifact("t", &entry.key)
            .expect("read")
            .expect("imported");
        assert_eq!(got.root, entry.record.root);
        let original = a.store.blob(&entry.record.flat).read().expect("a");
        let copied = b.store.blob(&entry.record.flat).read().expect("b");
        assert_eq!(original, copied);
    }
    assert!(
        b.index
            .get_ref("t", "left-pad/-/other.tgz")
            .expect("ref")
            .is_some()
    );
    let doc = b
        .index
        .get_metadata("t", "left-pad")
        .expect("doc")
        .expect("doc");
    assert!(
        b.store
            .read_metadata(&doc.cid.expect("cid"))
            .expect("body")
            .starts_with(b"left-pad/-/small.tgz ")
    );
    // The snapshot itself is kept, so `export --snapshot` can name it later.
    assert!(b.index.get_block(&root).expect("block").is_some());
    // Importing again changes nothing and succeeds.
    import(&b.store, &b.index, &ecosystems(), &public, &car[..], |_| {}).expect("again");
    assert_eq!(stats(&b), stats(&a));
}

#[test]
fn truncated_bundles_leave_the_store_as_it_was() {
    let (a, snapshot) = populated();
    let (_, car) = export_bytes(&a, &snapshot);
    let b = node();
    // Cut inside the header, the snapshot, a document, a leaf and the last inner node.
    for cut in [10, 100, car.len() / 3, car.len() / 2, car.len() - 1] {
        let e = import(
            &b.store,
            &b.index,
            &ecosystems(),
            &public,
            &car[..cut],
            |_| {},
        )
        .expect_err("truncated");
        let text = e.to_string();
        assert!(
            text.contains("truncated") || text.contains("ends at byte") || text.contains("byte"),
            "cut {cut}: {text}"
        );
        assert!(stats(&b).is_empty(), "cut {cut} indexed something");
        let blobs = walk(&b._dir.path().join("blobs"));
        assert_eq!(blobs, 0, "cut {cut} left files in blobs/");
        assert_eq!(
            walk(&b._dir.path().join("tmp")),
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
    let e =
        import(&b.store, &b.index, &ecosystems(), &public, &car[..], |_| {}).expect_err("tampered");
    assert!(e.to_string().contains("bafk"), "{e}");
    assert!(stats(&b).is_empty());
    assert_eq!(walk(&b._dir.path().join("blobs")), 0);
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

/// A CAR of `snapshot` followed by `documents` and `blocks`, as given (no export checks).
fn handmade(snapshot: &Snapshot, documents: &[&[u8]], blocks: &[(Cid, Vec<u8>)]) -> Vec<u8> {
    let encoded = snapshot.encode();
    let mut out = Vec::new();
    let mut car = CarWriter::new(&mut out, &[encoded.root]).expect("car");
    for (cid, block) in &encoded.blocks {
        car.write_block(cid, block).expect("write");
    }
    for document in documents {
        car.write_block(&raw_block_cid(document), document)
            .expect("write");
    }
    for (cid, block) in blocks {
        car.write_block(cid, block).expect("write");
    }
    car.finish().expect("finish");
    out
}

fn assert_nothing_imported(b: &Node) {
    assert!(stats(b).is_empty(), "something was indexed");
    assert_eq!(walk(&b._dir.path().join("blobs")), 0, "blobs were placed");
    assert_eq!(walk(&b._dir.path().join("tmp")), 0, "temp files were left");
}

#[test]
fn a_huge_size_field_is_refused_without_allocating() {
    let (a, mut snapshot) = populated();
    let body = a
        .store
        .read_metadata(&snapshot.documents[0].record.cid.expect("cid"))
        .expect("body");
    snapshot.artifacts.retain(|e| e.key.ends_with("small.tgz"));
    let small = bytes(3, 1);
    for size in [1u64 << 62, i64::MAX as u64] {
        snapshot.artifacts[0].record.size = size;
        let car = handmade(
            &snapshot,
            &[&body],
            &[(raw_block_cid(&small), small.clone())],
        );
        let b = node();
        let e = import(&b.store, &b.index, &ecosystems(), &public, &car[..], |_| {})
            .expect_err("a size the CAR cannot back");
        assert!(e.to_string().contains("ends at byte"), "{e}");
        assert_nothing_imported(&b);
    }
}

#[test]
fn junk_before_the_snapshot_is_complete_is_refused_past_a_bounded_buffer() {
    let (_, snapshot) = populated();
    let encoded = snapshot.encode();
    // The root, then 24 MiB of dag-cbor blocks nothing links to, then the rest.
    let junk: Vec<(Cid, Vec<u8>)> = (0..24)
        .map(|i| {
            let block =
                crate::dagcbor::Value::Bytes(crate::testing::noise(1 << 20, 2 * i + 1)).encode();
            let digest = crate::cid::sha256(&block);
            let hash = *crate::cid::raw_cid(crate::cid::SHA2_256, &digest).hash();
            (Cid::new_v1(DAG_CBOR, hash), block)
        })
        .collect();
    let mut out = Vec::new();
    let mut car = CarWriter::new(&mut out, &[encoded.root]).expect("car");
    car.write_block(&encoded.blocks[0].0, &encoded.blocks[0].1)
        .expect("root");
    for (cid, block) in junk.iter().chain(&encoded.blocks[1..]) {
        car.write_block(cid, block).expect("write");
    }
    car.finish().expect("finish");
    let b = node();
    let e = import(&b.store, &b.index, &ecosystems(), &public, &out[..], |_| {}).expect_err("junk");
    match &e {
        BundleError::Unlinked { limit, offset } => {
            assert_eq!(*limit, MAX_UNLINKED_BYTES);
            // Refused as soon as the buffer passed the limit, not at the end of the junk.
            assert!(*offset < MAX_UNLINKED_BYTES + (2 << 20), "{e}");
        }
        other => panic!("wrong error: {other}"),
    }
    assert!(
        e.to_string().contains(&MAX_UNLINKED_BYTES.to_string()),
        "{e}"
    );
    assert_nothing_imported(&b);
}

#[test]
fn snapshot_blocks_in_any_order_within_the_buffer_are_read() {
    let (a, snapshot) = populated();
    let encoded = snapshot.encode();
    let body = a
        .store
        .read_metadata(&snapshot.documents[0].record.cid.expect("cid"))
        .expect("body");
    // Root first, then the others reversed (pages before the node that links them).
    let mut out = Vec::new();
    let mut car = CarWriter::new(&mut out, &[encoded.root]).expect("car");
    car.write_block(&encoded.blocks[0].0, &encoded.blocks[0].1)
        .expect("root");
    for (cid, block) in encoded.blocks[1..].iter().rev() {
        car.write_block(cid, block).expect("write");
    }
    car.write_block(&raw_block_cid(&body), &body).expect("doc");
    let mut tail = Vec::new();
    export(
        &a.store,
        &a.index,
        &ecosystems(),
        &snapshot,
        &encoded,
        &mut tail,
        |_| {},
    )
    .expect("export");
    car.finish().expect("finish");
    // The artifacts' blocks, from a regular export: everything after the document block.
    let doc_end = {
        let mut reader = CarReader::new(&tail[..]).expect("car");
        for _ in 0..encoded.blocks.len() + 1 {
            reader.next_block().expect("block").expect("block");
        }
        reader.offset() as usize
    };
    out.extend_from_slice(&tail[doc_end..]);
    let b = node();
    import(&b.store, &b.index, &ecosystems(), &public, &out[..], |_| {}).expect("import");
    assert_eq!(stats(&b), stats(&a));
}

/// Import `car` into an empty node, which must refuse it and be left empty; the error.
fn refused_by_import(car: &[u8], what: &str) -> BundleError {
    let b = node();
    let e = import(&b.store, &b.index, &ecosystems(), &public, car, |_| {}).expect_err(what);
    assert_nothing_imported(&b);
    e
}

#[test]
fn hostile_keys_are_refused_by_export_and_import_alike() {
    for key in ["../../etc/passwd", "left-pad/-/a\0b", "file:///etc/passwd"] {
        // As an artifact key.
        let (a, mut snapshot) = populated();
        snapshot.artifacts.push(put_artifact(&a, key, b"evil"));
        let (car, by_export) = export_unchecked(&a, &snapshot);
        let e = refused_by_import(&car, "hostile artifact key");
        assert!(matches!(e, BundleError::BadKey { .. }), "{key:?}: {e}");
        assert_eq!(by_export.to_string(), e.to_string());
        // As a document key.
        let (a, mut snapshot) = populated();
        snapshot.documents.push(put_doc(&a, key, "", 1));
        let (car, by_export) = export_unchecked(&a, &snapshot);
        let e = refused_by_import(&car, "hostile document key");
        assert!(matches!(e, BundleError::BadKey { .. }), "{key:?}: {e}");
        assert_eq!(by_export.to_string(), e.to_string());
    }
    // A document fetched, it says, from a file.
    let (a, mut snapshot) = populated();
    snapshot.documents[0].record.upstream_url = "file:///etc/passwd".into();
    let (car, by_export) = export_unchecked(&a, &snapshot);
    let e = refused_by_import(&car, "file URL");
    assert!(e.to_string().contains("not http or https"), "{e}");
    assert_eq!(by_export.to_string(), e.to_string());
}

/// `lines` lines listing artifacts under `name`, each naming a digest: a document of about
/// `lines * 150` bytes, as a popular package's metadata is.
fn long_doc(name: &str, lines: usize) -> String {
    (0..lines)
        .map(|i| {
            let data = format!("version {i}");
            format!("{name}/-/{name}-{i}.tgz {}\n", sha512_hex(data.as_bytes()))
        })
        .collect()
}

#[test]
fn a_document_over_the_block_limit_travels_in_pieces_and_round_trips() {
    let (a, mut snapshot) = populated();
    let body = long_doc("popular", 40_000);
    assert!(body.len() > 5 << 20, "{} bytes", body.len());
    snapshot.documents.push(put_doc(&a, "popular", &body, 1));
    let data = b"version 7".to_vec();
    snapshot
        .artifacts
        .push(put_artifact(&a, "popular/-/popular-7.tgz", &data));
    chunk_documents(&a.store, &mut snapshot).expect("chunk");
    let big = snapshot
        .documents
        .iter()
        .find(|d| d.key == "popular")
        .expect("doc");
    let root = big.root.expect("a root for the large document");
    assert_eq!(root.0, crate::unixfs::root_of(body.as_bytes()));
    assert!(
        snapshot
            .documents
            .iter()
            .filter(|d| d.key != "popular")
            .all(|d| d.root.is_none()),
        "a small document was chunked"
    );
    let (bundle_root, car) = export_bytes(&a, &snapshot);
    // Every block fits what a CAR reader takes, and the document's pieces are 1 MiB leaves.
    let mut reader = CarReader::new(&car[..]).expect("car");
    let mut leaves = 0;
    while let Some((cid, block)) = reader.next_block().expect("block") {
        assert!(block.len() as u64 <= crate::car::MAX_BLOCK_SIZE, "{cid}");
        leaves += usize::from(cid.codec() == RAW && block.len() as u64 == CHUNK_SIZE);
    }
    assert!(leaves >= 5 + 3, "{leaves} full leaves");

    let b = node();
    let (imported, counts) =
        import(&b.store, &b.index, &ecosystems(), &public, &car[..], |_| {}).expect("import");
    assert_eq!(imported, bundle_root);
    assert_eq!(counts.documents, 2);
    let held = b
        .index
        .get_metadata("t", "popular")
        .expect("doc")
        .expect("imported");
    assert_eq!(held.size, body.len() as u64);
    let stored = b
        .store
        .read_metadata(&held.cid.expect("cid"))
        .expect("body");
    assert_eq!(&stored[..], body.as_bytes());
    // What it lists is known to the importing node, as after a download.
    assert!(
        b.index
            .get_ref("t", "popular/-/popular-39999.tgz")
            .expect("ref")
            .is_some()
    );
    assert_eq!(stats(&b), stats(&a));
    // Again: everything held, nothing written.
    let (_, again) =
        import(&b.store, &b.index, &ecosystems(), &public, &car[..], |_| {}).expect("again");
    assert_eq!((again.documents, again.documents_kept), (0, 2));
    assert_eq!((again.artifacts_held, again.bytes_held), (3, counts.bytes));
    assert_eq!(walk(&b._dir.path().join("tmp")), 0);
}

/// A snapshot with one document `key` of `size` bytes said to travel in pieces under `root`.
fn chunked_snapshot(key: &str, body: &[u8], size: u64, root: Cid) -> Snapshot {
    let mut snapshot = Snapshot::default();
    snapshot.documents.push(DocumentEntry {
        ecosystem: "t".into(),
        key: key.into(),
        record: MetadataRecord {
            private: false,
            cid: Some(BlockCid(raw_block_cid(body))),
            status: 200,
            upstream_url: format!("https://upstream.invalid/{key}"),
            fetched_at: 1,
            etag: None,
            last_modified: None,
            size,
        },
        root: Some(RootCid(root)),
    });
    snapshot
}

/// The blocks of `data`'s UnixFS DAG, depth first.
fn dag_blocks(data: &[u8]) -> Vec<(Cid, Vec<u8>)> {
    let mut out = Vec::new();
    let mut car = CarWriter::new(&mut out, &[]).expect("car");
    let mut builder = crate::unixfs::DagBuilder::new();
    builder.update(data);
    write_dag(&mut car, &builder.finish(), data, "test").expect("dag");
    car.finish().expect("finish");
    CarReader::new(&out[..])
        .expect("car")
        .map(|b| b.expect("block"))
        .collect()
}

#[test]
fn a_bundle_claiming_a_huge_document_is_refused_before_reading_it() {
    let body = long_doc("popular", 25_000);
    let root = crate::unixfs::root_of(body.as_bytes());
    let blocks = dag_blocks(body.as_bytes());
    // Sizes past the ecosystem's limit: refused by the snapshot alone, whatever follows.
    for size in [
        crate::ecosystem::DEFAULT_MAX_DOCUMENT + 1,
        1 << 40,
        i64::MAX as u64,
    ] {
        let snapshot = chunked_snapshot("popular", body.as_bytes(), size, root);
        let car = handmade(&snapshot, &[], &blocks);
        let e = refused_by_import(&car, "a huge document");
        assert!(matches!(e, BundleError::BadDocument { .. }), "{e}");
        assert!(
            e.to_string().contains("pass the limit") && e.to_string().contains("popular"),
            "{e}"
        );
    }
    // A size within the limit that the blocks do not back: read up to it, then refused.
    let snapshot = chunked_snapshot("popular", body.as_bytes(), 30 << 20, root);
    let e = refused_by_import(&handmade(&snapshot, &[], &blocks), "short pieces");
    assert!(e.to_string().contains("popular"), "{e}");
    // Fewer bytes than the pieces bring.
    let short = body.len() as u64 - (1 << 20) - 1;
    let snapshot = chunked_snapshot("popular", body.as_bytes(), short, root);
    let e = refused_by_import(&handmade(&snapshot, &[], &blocks), "too many bytes");
    assert!(e.to_string().contains("pass the"), "{e}");
    // A large document said to be one block.
    let mut snapshot = chunked_snapshot("popular", body.as_bytes(), body.len() as u64, root);
    snapshot.documents[0].root = None;
    let e = refused_by_import(
        &handmade(&snapshot, &[body.as_bytes()], &[]),
        "a large raw block",
    );
    assert!(e.to_string().contains("block limit"), "{e}");
}

#[test]
fn pieces_of_another_document_are_refused_before_the_adapter_reads_them() {
    let body = long_doc("popular", 25_000);
    let other = long_doc("popular", 25_001);
    // The pieces and root of `other`, under the identity (raw block CID) of `body`.
    let mut snapshot = chunked_snapshot(
        "popular",
        body.as_bytes(),
        other.len() as u64,
        crate::unixfs::root_of(other.as_bytes()),
    );
    let e = refused_by_import(
        &handmade(&snapshot, &[], &dag_blocks(other.as_bytes())),
        "another document",
    );
    assert!(e.to_string().contains("are not the document"), "{e}");
    // The right bytes under another root: the pieces were not the ones the snapshot named.
    snapshot.documents[0].record.size = body.len() as u64;
    let e = refused_by_import(
        &handmade(&snapshot, &[], &dag_blocks(body.as_bytes())),
        "another root",
    );
    assert!(e.to_string().contains("do not make the root"), "{e}");
}

/// The test ecosystem, with documents of at most `.0` bytes.
struct Limited(u64);

impl Ecosystem for Limited {
    fn name(&self) -> &str {
        Test.name()
    }
    fn route(
        &self,
        request: &crate::ecosystem::Request<'_>,
    ) -> Result<Option<Route>, crate::ecosystem::BadRequest> {
        Test.route(request)
    }
    fn read(
        &self,
        doc: &MetadataDoc<'_>,
    ) -> Result<crate::ecosystem::DocumentFacts, crate::ecosystem::AdapterError> {
        Test.read(doc)
    }
    fn render(
        &self,
        doc: &MetadataDoc<'_>,
        variant: &'static str,
        base: &Url,
    ) -> Result<crate::ecosystem::Rendered, crate::ecosystem::AdapterError> {
        Test.render(doc, variant, base)
    }
    fn max_document_bytes(&self) -> u64 {
        self.0
    }
}

#[test]
fn export_refuses_a_document_the_importer_would_refuse_naming_it() {
    let (a, mut snapshot) = populated();
    let body = long_doc("popular", 40_000);
    snapshot.documents.push(put_doc(&a, "popular", &body, 1));
    chunk_documents(&a.store, &mut snapshot).expect("chunk");
    let encoded = snapshot.encode();
    let limited: Vec<Arc<dyn Ecosystem>> = vec![Arc::new(Limited(4 << 20))];
    let mut out = Vec::new();
    let by_export = export(
        &a.store,
        &a.index,
        &limited,
        &snapshot,
        &encoded,
        &mut out,
        |_| {},
    )
    .expect_err("a document over the limit");
    assert!(out.is_empty(), "export wrote {} bytes", out.len());
    assert!(
        matches!(&by_export, BundleError::BadDocument { key, .. } if key == "popular"),
        "{by_export}"
    );
    // The bundle an unchecked export writes: a node with the same limit refuses it alike.
    let (_, car) = export_bytes(&a, &snapshot);
    let b = node();
    let by_import = import(&b.store, &b.index, &limited, &public, &car[..], |_| {})
        .expect_err("over the limit");
    assert_eq!(by_export.to_string(), by_import.to_string());
    assert_nothing_imported(&b);
    // A snapshot taken before documents were chunked names no root for one over the block
    // limit: export says so instead of writing a block no reader takes.
    let mut stale = snapshot.clone();
    stale.documents.iter_mut().for_each(|d| d.root = None);
    let (car, by_export) = export_unchecked(&a, &stale);
    assert!(
        by_export.to_string().contains("take a new snapshot"),
        "{by_export}"
    );
    let e = refused_by_import(&car, "a stale snapshot");
    assert_eq!(by_export.to_string(), e.to_string());
}

#[test]
fn an_ecosystem_this_node_does_not_serve_is_refused() {
    let (a, snapshot) = populated();
    let (_, car) = export_bytes(&a, &snapshot);
    let b = node();
    let e = import(&b.store, &b.index, &[], &public, &car[..], |_| {}).expect_err("no ecosystems");
    assert!(matches!(e, BundleError::UnknownEcosystem { .. }), "{e}");
    assert_nothing_imported(&b);
}

#[test]
fn a_bundle_that_rebinds_a_held_key_is_refused() {
    let key = "left-pad/-/small.tgz";
    // B holds the key with its bytes, listed by its document.
    let b = node();
    let original = bytes(3, 1);
    put_doc(
        &b,
        "left-pad",
        &format!("{key} {}\n", sha512_hex(&original)),
        1,
    );
    let held = put_artifact(&b, key, &original);
    // A's bundle names other bytes for it, listed by A's document.
    let a = node();
    let other = bytes(3, 9);
    let mut snapshot = Snapshot::default();
    snapshot.documents.push(put_doc(
        &a,
        "left-pad",
        &format!("{key} {}\n", sha512_hex(&other)),
        now_ms() - 1000,
    ));
    snapshot.artifacts.push(put_artifact(&a, key, &other));
    let (_, car) = export_bytes(&a, &snapshot);
    let e = import(&b.store, &b.index, &ecosystems(), &public, &car[..], |_| {})
        .expect_err("rebinding");
    assert!(matches!(e, BundleError::Rebinds { .. }), "{e}");
    let still = b.index.get_artifact("t", key).expect("read").expect("held");
    assert_eq!(still.flat, held.record.flat);
    assert_eq!(b.store.blob(&still.flat).read().expect("blob"), original);
    assert!(!b.store.blob(&snapshot.artifacts[0].record.flat).exists());
}

#[test]
fn a_document_its_adapter_refuses_is_refused() {
    let a = node();
    let data = bytes(3, 1);
    let mut snapshot = Snapshot::default();
    snapshot.documents.push(put_doc(
        &a,
        "left-pad",
        &format!("unsigned\nleft-pad/-/small.tgz {}\n", sha512_hex(&data)),
        1,
    ));
    snapshot
        .artifacts
        .push(put_artifact(&a, "left-pad/-/small.tgz", &data));
    let (_, car) = export_bytes(&a, &snapshot);
    let b = node();
    let e =
        import(&b.store, &b.index, &ecosystems(), &public, &car[..], |_| {}).expect_err("unsigned");
    assert!(matches!(e, BundleError::BadDocument { .. }), "{e}");
    assert!(e.to_string().contains("not signed"), "{e}");
    assert_nothing_imported(&b);
}

#[test]
fn an_artifact_no_document_lists_is_refused() {
    let (a, mut snapshot) = populated();
    snapshot
        .artifacts
        .push(put_artifact(&a, "left-pad/-/evil.tgz", b"evil"));
    let (_, car) = export_bytes(&a, &snapshot);
    let b = node();
    let e =
        import(&b.store, &b.index, &ecosystems(), &public, &car[..], |_| {}).expect_err("unlisted");
    assert!(matches!(e, BundleError::Unlisted { .. }), "{e}");
    assert_nothing_imported(&b);
}

#[test]
fn bundle_times_in_the_future_are_clamped_to_now() {
    let (a, mut snapshot) = populated();
    let future = now_ms() + 10 * 365 * 24 * 3600 * 1000;
    snapshot.documents[0].record.fetched_at = future;
    for artifact in &mut snapshot.artifacts {
        artifact.record.fetched_at = future;
    }
    let (_, car) = export_bytes(&a, &snapshot);
    let b = node();
    let before = now_ms();
    import(&b.store, &b.index, &ecosystems(), &public, &car[..], |_| {}).expect("import");
    let after = now_ms();
    let doc = b
        .index
        .get_metadata("t", "left-pad")
        .expect("read")
        .expect("doc");
    assert!(
        (before..=after).contains(&doc.fetched_at),
        "{}",
        doc.fetched_at
    );
    for artifact in &snapshot.artifacts {
        let got = b
            .index
            .get_artifact("t", &artifact.key)
            .expect("read")
            .expect("artifact");
        assert!(got.fetched_at <= after, "{}", got.fetched_at);
    }
}

#[test]
fn a_newer_held_document_is_kept() {
    let (a, snapshot) = populated();
    let (_, car) = export_bytes(&a, &snapshot);
    let b = node();
    let mine = put_doc(&b, "left-pad", "", now_ms());
    import(&b.store, &b.index, &ecosystems(), &public, &car[..], |_| {}).expect("import");
    let doc = b
        .index
        .get_metadata("t", "left-pad")
        .expect("read")
        .expect("doc");
    assert_eq!(doc.cid, mine.record.cid);
    // The bundle's artifacts came in: its own document listed them.
    assert_eq!(stats(&b)[0].artifacts, 2);
}

#[test]
fn what_this_node_would_fetch_with_credentials_is_imported_as_private() {
    let (a, snapshot) = populated();
    let (_, car) = export_bytes(&a, &snapshot);
    let b = node();
    // This node routes `left-pad` (and what its document lists) to an upstream it sends
    // credentials to.
    let asked = std::sync::Mutex::new(Vec::new());
    let private = |ecosystem: &str, key: Option<&str>| {
        asked
            .lock()
            .expect("asked")
            .push((ecosystem.to_owned(), key.map(str::to_owned)));
        key == Some("left-pad")
    };
    import(
        &b.store,
        &b.index,
        &ecosystems(),
        &private,
        &car[..],
        |_| {},
    )
    .expect("import");
    let doc = b
        .index
        .get_metadata("t", "left-pad")
        .expect("doc")
        .expect("doc");
    assert!(doc.private);
    for entry in &snapshot.artifacts {
        let got = b
            .index
            .get_artifact("t", &entry.key)
            .expect("read")
            .expect("imported");
        assert!(got.private, "{} was imported as public", entry.key);
    }
    assert!(
        asked
            .lock()
            .expect("asked")
            .iter()
            .all(|(e, k)| e == "t" && k.as_deref() == Some("left-pad"))
    );
    // Hidden from an open swarm, as a download would be.
    let open = b.store.open_holdings();
    let flat = snapshot.artifacts[0].record.flat;
    assert_eq!(open.artifact(&flat).expect("readable"), None);
}
