//! `Holdings` over a real store and index in a temp dir: what peers may read, and nothing more.

use super::*;
use crate::cid::{Algorithm, Digest};
use crate::index::MetadataRecord;
use crate::testing::noise;

const MIB: usize = 1 << 20;

fn open() -> (tempfile::TempDir, Holdings) {
    let dir = tempfile::tempdir().expect("tempdir");
    let store = Store::open(dir.path()).expect("store");
    (dir, Holdings::new(store))
}

/// Store and index `data` as a committed download would.
fn add(holdings: &Holdings, data: &[u8]) -> (FlatCid, RootCid, cairn_ipld::unixfs::Dag) {
    let mut writer = holdings
        .store
        .artifact_writer(Digest::of(Algorithm::Sha512, data))
        .expect("writer");
    writer.write(data).expect("write");
    let origin = crate::store::Origin {
        private: false,
        upstream_url: "http://upstream.invalid/a.tgz".into(),
        fetched_at: 1,
    };
    let committed = holdings
        .store
        .commit_artifact("npm", "a.tgz", writer, origin, |_| {})
        .expect("commit");
    (committed.record.flat, committed.record.root, committed.dag)
}

fn put_document(holdings: &Holdings, key: &str, body: Option<&[u8]>, url: &str) {
    let record = MetadataRecord {
        private: false,
        cid: None,
        status: if body.is_some() { 200 } else { 404 },
        upstream_url: url.into(),
        fetched_at: 7,
        etag: Some("\"e\"".into()),
        last_modified: None,
        size: 0,
    };
    match body {
        Some(body) => holdings
            .store
            .put_document("npm", key, body, record, &[])
            .expect("document"),
        None => holdings
            .store
            .put_not_found("npm", key, record)
            .expect("not found"),
    };
}

#[test]
fn held_lists_the_committed_dag_and_held_artifacts_names_it() {
    let (_dir, holdings) = open();
    let data = noise(3 * MIB + 5, 1);
    let (flat, root, dag) = add(&holdings, &data);
    let held = holdings.held(&flat).expect("readable").expect("held");
    assert_eq!(held.root, root);
    assert_eq!(held.size, data.len() as u64);
    assert_eq!(held.leaves, dag.leaves);
    assert_eq!(
        holdings.held_artifacts(10).expect("list"),
        vec![(flat, root)]
    );
    let absent = Digest::of(Algorithm::Sha512, b"absent").flat_cid();
    assert_eq!(holdings.held(&absent), Ok(None));
}

#[test]
fn blocks_are_served_verified_and_a_whole_file_only_within_the_size_asked() {
    let (_dir, holdings) = open();
    let data = noise(2 * MIB + 9, 2);
    let (flat, root, dag) = add(&holdings, &data);
    let leaf = &dag.leaves[1];
    let block = holdings
        .block(&leaf.cid, MIB as u64)
        .expect("readable")
        .expect("held");
    assert!(block[..] == data[MIB..2 * MIB], "leaf bytes");
    assert!(
        holdings
            .block(&root.0, MIB as u64)
            .expect("readable")
            .is_some()
    );
    // The flat CID names the whole file: refused under its size, served at it.
    assert_eq!(holdings.block(&flat.0, 2 * MIB as u64), Ok(None));
    let whole = holdings
        .block(&flat.0, data.len() as u64)
        .expect("readable")
        .expect("held");
    assert!(whole[..] == data[..], "whole file");
    let unknown = cairn_ipld::cid::raw_block_cid(b"unknown");
    assert_eq!(holdings.block(&unknown, MIB as u64), Ok(None));
}

#[test]
fn a_damaged_leaf_is_an_error_naming_the_block_not_wrong_bytes() {
    let (_dir, holdings) = open();
    let data = noise(2 * MIB + 9, 3);
    let (flat, _, dag) = add(&holdings, &data);
    let blob = crate::testing::blob_path(&holdings.store, &flat);
    let mut damaged = data.clone();
    damaged[MIB + 1] ^= 0xff;
    std::fs::write(&blob, &damaged).expect("damage the file");
    let err = holdings
        .block(&dag.leaves[1].cid, MIB as u64)
        .expect_err("damaged");
    // Logged by the node (which answers the peer DONT_HAVE), naming the block.
    let cid = dag.leaves[1].cid.to_string();
    assert!(err.0.contains(&cid), "{err}");
    // The other leaves are intact and still served.
    assert!(
        holdings
            .block(&dag.leaves[0].cid, MIB as u64)
            .expect("intact")
            .is_some()
    );
}

#[test]
fn documents_are_read_as_upstream_sent_them_without_credentials() {
    let (_dir, holdings) = open();
    let body = b"{\"name\":\"x\"}";
    // As an index written before credentials were kept out of URLs would hold it.
    put_document(
        &holdings,
        "x",
        Some(body),
        "https://cairn:s3cret@upstream.invalid/npm/x",
    );
    let document = holdings
        .document("npm", "x")
        .expect("readable")
        .expect("found");
    assert_eq!(&document.body[..], body);
    assert_eq!(document.upstream_url, "https://upstream.invalid/npm/x");
    assert_eq!(document.fetched_at, 7);
    assert_eq!(document.etag.as_deref(), Some("\"e\""));
    assert_eq!(&*document.peer, "self");
}

#[test]
fn upstreams_not_found_and_unknown_keys_are_no_document() {
    let (_dir, holdings) = open();
    put_document(&holdings, "gone", None, "https://upstream.invalid/npm/gone");
    assert_eq!(
        holdings.document("npm", "gone").map(|d| d.is_none()),
        Ok(true)
    );
    assert_eq!(
        holdings.document("npm", "never").map(|d| d.is_none()),
        Ok(true)
    );
    assert_eq!(holdings.document("t", "x").map(|d| d.is_none()), Ok(true));
}

#[test]
fn artifacts_committed_or_evicted_after_the_swarm_subscribed_are_changes_to_announce() {
    use futures_util::StreamExt as _;
    let (_dir, holdings) = open();
    let (before, _, _) = add(&holdings, &noise(1000, 4));
    let mut changes = holdings.changes().expect("subscribe");
    let (flat, root, _) = add(&holdings, &noise(MIB + 1, 5));
    let change = futures::executor::block_on(changes.next()).expect("a change");
    assert_eq!(change, HoldingChange::Held { flat, root });
    assert_ne!(flat, before, "what was held before is listed, not a change");
    // Evicted, the artifact is a change too: the swarm withdraws it.
    let evicted = holdings.store.evict(1, &|f| *f != flat).expect("evict");
    assert_eq!(evicted.len(), 1);
    let change = futures::executor::block_on(changes.next()).expect("a change");
    assert_eq!(change, HoldingChange::Dropped { flat, root });
    assert_eq!(holdings.artifact(&flat), Ok(None));
}

#[test]
fn a_purged_artifact_is_a_change_the_swarm_withdraws() {
    use futures_util::StreamExt as _;
    let (_dir, holdings) = open();
    let (flat, root, _) = add(&holdings, &noise(MIB + 1, 7));
    let mut changes = holdings.changes().expect("subscribe");
    let keys = crate::index::PurgeKeys {
        documents: &[],
        listed_by: &[],
        artifact_prefixes: &["a.tgz".to_owned()],
        owns: &|_| true,
    };
    let purged = holdings.store.purge("npm", &keys).expect("purge");
    assert_eq!(purged.files.len(), 1);
    let change = futures::executor::block_on(changes.next()).expect("a change");
    assert_eq!(change, HoldingChange::Dropped { flat, root });
    assert_eq!(holdings.artifact(&flat), Ok(None));
    assert_eq!(holdings.held_artifacts(10).map(|held| held.len()), Ok(0));
}

/// Commit `data` under `key`, from a private upstream or not.
fn commit(holdings: &Holdings, key: &str, data: &[u8], private: bool) -> (FlatCid, RootCid) {
    let mut writer = holdings
        .store
        .artifact_writer(Digest::of(Algorithm::Sha512, data))
        .expect("writer");
    writer.write(data).expect("write");
    let origin = crate::store::Origin {
        private,
        upstream_url: format!("http://upstream.invalid/{key}"),
        fetched_at: 1,
    };
    let committed = holdings
        .store
        .commit_artifact("npm", key, writer, origin, |_| {})
        .expect("commit");
    (committed.record.flat, committed.record.root)
}

#[test]
fn an_open_swarm_is_shown_no_private_file_leaf_document_or_announcement() {
    use futures_util::StreamExt as _;
    let (_dir, shown) = open();
    let open_swarm = Holdings::new(shown.store.clone()).without_private();
    let mut changes = open_swarm.changes().expect("subscribe");
    let data = noise(2 * MIB + 3, 12);
    let (flat, root) = commit(&shown, "corp.tgz", &data, true);
    let (public, public_root) = commit(&shown, "pub.tgz", &noise(1000, 11), false);
    // The private commit is not announced: the next change is the public one.
    let change = futures::executor::block_on(changes.next()).expect("a change");
    assert_eq!(
        change,
        HoldingChange::Held {
            flat: public,
            root: public_root
        }
    );
    assert_eq!(
        open_swarm.held_artifacts(10),
        Ok(vec![(public, public_root)])
    );
    assert_eq!(shown.held_artifacts(10).map(|h| h.len()), Ok(2));
    assert_eq!(open_swarm.artifact(&flat), Ok(None));
    assert_eq!(open_swarm.held(&flat), Ok(None));
    assert!(shown.artifact(&flat).expect("readable").is_some());
    let leaf = shown.held(&flat).expect("readable").expect("held").leaves[1].cid;
    assert_eq!(open_swarm.block(&leaf, MIB as u64), Ok(None));
    assert_eq!(open_swarm.block(&flat.0, data.len() as u64), Ok(None));
    assert!(shown.block(&leaf, MIB as u64).expect("readable").is_some());
    assert!(
        open_swarm
            .block(&root.0, MIB as u64)
            .expect("readable")
            .is_some(),
        "inner nodes hold no content"
    );

    // A private document, by key and by block.
    let body = b"{\"name\":\"@corp/x\"}";
    let record = MetadataRecord {
        private: true,
        cid: None,
        status: 200,
        upstream_url: "http://corp.invalid/@corp%2fx".into(),
        fetched_at: 7,
        etag: None,
        last_modified: None,
        size: 0,
    };
    let stored = shown
        .store
        .put_document("npm", "@corp/x", body, record, &[])
        .expect("document");
    let block = stored.cid.expect("stored").0;
    assert!(
        open_swarm
            .document("npm", "@corp/x")
            .expect("readable")
            .is_none()
    );
    assert_eq!(open_swarm.block(&block, MIB as u64), Ok(None));
    assert!(
        shown
            .document("npm", "@corp/x")
            .expect("readable")
            .is_some()
    );
    assert!(shown.block(&block, MIB as u64).expect("readable").is_some());

    // The same bytes under a public key are public: a public registry has them anyway.
    commit(&shown, "mirror.tgz", &data, false);
    assert!(open_swarm.artifact(&flat).expect("readable").is_some());
    assert!(
        open_swarm
            .block(&leaf, MIB as u64)
            .expect("readable")
            .is_some()
    );
}
