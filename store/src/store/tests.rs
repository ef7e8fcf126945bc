//! Tests of the data directory's files and of the writes through the store.

use super::*;
use crate::cid::Algorithm;
use tokio::sync::broadcast;

#[test]
fn a_verified_artifact_is_placed_and_tmp_is_left_empty() {
    let dir = tempfile::tempdir().expect("tempdir");
    let store = Store::open(dir.path()).expect("open");
    let data = b"hello artifact";
    let mut writer = store
        .artifact_writer(Digest::of(Algorithm::Sha512, data))
        .expect("writer");
    writer.write(&data[..5]).expect("write");
    writer.write(&data[5..]).expect("write");
    let committed = writer.finish().expect("finish");
    assert_eq!(fs::read(committed.blob.path()).expect("read"), data);
    assert_eq!(committed.dag.size, data.len() as u64);
    assert_eq!(fs::read_dir(dir.path().join("tmp")).expect("ls").count(), 0);
}

#[test]
fn a_mismatching_artifact_is_never_stored() {
    let dir = tempfile::tempdir().expect("tempdir");
    let store = Store::open(dir.path()).expect("open");
    let expected = Digest::of(Algorithm::Sha256, b"good bytes");
    let mut writer = store.artifact_writer(expected.clone()).expect("writer");
    writer.write(b"evil bytes").expect("write");
    let err = writer.finish().expect_err("mismatch");
    assert!(err.to_string().contains("digest mismatch"), "{err}");
    assert!(!store.blob_path(&expected.flat_cid()).exists());
    assert_eq!(fs::read_dir(dir.path().join("tmp")).expect("ls").count(), 0);
}

#[test]
fn an_abandoned_writer_leaves_nothing() {
    let dir = tempfile::tempdir().expect("tempdir");
    let store = Store::open(dir.path()).expect("open");
    let mut writer = store
        .artifact_writer(Digest::of(Algorithm::Sha256, b"x"))
        .expect("writer");
    writer.write(b"partial").expect("write");
    drop(writer);
    assert_eq!(fs::read_dir(dir.path().join("tmp")).expect("ls").count(), 0);
}

#[test]
fn a_second_owner_is_refused_and_the_first_ones_temp_files_survive() {
    let dir = tempfile::tempdir().expect("tempdir");
    let first = Store::open(dir.path()).expect("open");
    let mut writer = first
        .artifact_writer(Digest::of(Algorithm::Sha256, b"x"))
        .expect("writer");
    writer.write(b"partial").expect("write");
    let err = Store::open(dir.path()).expect_err("a second owner");
    let message = err.to_string();
    assert!(
        message.contains(&dir.path().display().to_string())
            && message.contains(&std::process::id().to_string()),
        "{message}"
    );
    assert_eq!(fs::read_dir(dir.path().join("tmp")).expect("ls").count(), 1);
    // Readers work beside the owner.
    Store::attach(dir.path()).expect("attach");
    drop(writer);
    drop(first);
    Store::open(dir.path()).expect("open again once the owner is gone");
}

#[test]
fn metadata_round_trips_and_corruption_is_detected() {
    let dir = tempfile::tempdir().expect("tempdir");
    let store = Store::open(dir.path()).expect("open");
    let cid = store.put_metadata(b"{\"name\":\"x\"}").expect("put");
    assert_eq!(
        &store.read_metadata(&cid).expect("read")[..],
        b"{\"name\":\"x\"}"
    );
    fs::write(store.meta_path(&cid), b"tampered").expect("tamper");
    assert!(store.read_metadata(&cid).is_err());
}

fn origin() -> Origin {
    Origin {
        private: false,
        upstream_url: "http://upstream.invalid/x.tgz".into(),
        fetched_at: 7,
    }
}

fn tmp_files(dir: &Path) -> Vec<String> {
    fs::read_dir(dir.join("tmp"))
        .expect("ls")
        .map(|e| e.expect("entry").file_name().to_string_lossy().into_owned())
        .collect()
}

#[test]
fn a_committed_artifact_has_its_file_and_rows_and_a_mismatch_has_neither() {
    let dir = tempfile::tempdir().expect("tempdir");
    let store = Store::open(dir.path()).expect("open");
    let data = crate::testing::noise(3 << 20, 1);
    let mut writer = store
        .artifact_writer(Digest::of(Algorithm::Sha512, &data))
        .expect("writer");
    writer.write(&data).expect("write");
    let mut verified = None;
    let committed = store
        .commit_artifact("npm", "x.tgz", writer, origin(), |n| verified = Some(n))
        .expect("commit");
    assert_eq!(verified, Some(data.len() as u64));
    assert_eq!(committed.blob.read().expect("read"), data);
    let row = store.index().get_artifact("npm", "x.tgz").expect("get");
    assert_eq!(row.as_ref(), Some(&committed.record));
    assert_eq!(
        committed.record.upstream_url,
        "http://upstream.invalid/x.tgz"
    );
    // The leaves are indexed as ranges of the file.
    let second = committed.dag.leaves[1].cid;
    let leaf = store.index().get_leaf(&second).expect("leaf").expect("row");
    assert_eq!((leaf.offset, leaf.len), (1 << 20, 1 << 20));
    assert_eq!(
        committed
            .blob
            .read_range(leaf.offset, 1 << 20)
            .expect("range"),
        data[1 << 20..2 << 20]
    );

    let expected = Digest::of(Algorithm::Sha256, b"good bytes");
    let mut writer = store.artifact_writer(expected.clone()).expect("writer");
    writer.write(b"evil bytes").expect("write");
    let err = store
        .commit_artifact("npm", "y.tgz", writer, origin(), |_| panic!("not verified"))
        .expect_err("mismatch");
    assert!(matches!(err, StoreError::DigestMismatch(_)), "{err}");
    assert!(!store.blob(&expected.flat_cid()).exists());
    assert_eq!(
        store.index().get_artifact("npm", "y.tgz").expect("get"),
        None
    );
    assert!(tmp_files(dir.path()).is_empty());
}

#[test]
fn a_document_is_stored_as_its_block_then_its_row() {
    let dir = tempfile::tempdir().expect("tempdir");
    let store = Store::open(dir.path()).expect("open");
    let body = b"{\"name\":\"x\"}";
    let record = MetadataRecord {
        private: false,
        cid: None,
        status: 200,
        upstream_url: "http://upstream.invalid/x".into(),
        fetched_at: 3,
        etag: Some("\"e\"".into()),
        last_modified: None,
        size: 0,
    };
    let stored = store
        .put_document("npm", "x", body, record.clone(), &[])
        .expect("put");
    let cid = stored.cid.expect("a document has a block");
    assert_eq!(cid, BlockCid(raw_block_cid(body)));
    assert_eq!(stored.size, body.len() as u64);
    assert_eq!(&store.read_metadata(&cid).expect("read")[..], body);
    assert_eq!(
        store.index().get_metadata("npm", "x").expect("get"),
        Some(stored)
    );
    let gone = MetadataRecord {
        status: 404,
        ..record
    };
    let not_found = store.put_not_found("npm", "y", gone).expect("put");
    assert_eq!(not_found.cid, None);
    assert_eq!(
        store.index().get_metadata("npm", "y").expect("get"),
        Some(not_found)
    );
}

#[test]
fn a_damaged_artifact_is_moved_aside_and_forgotten_under_every_key() {
    let dir = tempfile::tempdir().expect("tempdir");
    let store = Store::open(dir.path()).expect("open");
    let data = b"some bytes";
    let digest = Digest::of(Algorithm::Sha256, data);
    let mut writer = store.artifact_writer(digest.clone()).expect("writer");
    writer.write(data).expect("write");
    let committed = store
        .commit_artifact("apt", "by-path", writer, origin(), |_| {})
        .expect("commit");
    let found = store
        .find_by_flat("apt", &digest.flat_cid(), Some("by-hash"))
        .expect("find");
    assert_eq!(found.map(|(key, _)| key).as_deref(), Some("by-hash"));
    let mut events = store.subscribe().expect("subscribe");
    assert_eq!(store.forget_damaged(&digest.flat_cid()).expect("forget"), 2);
    // The swarm hears of it, and stops announcing it.
    assert_eq!(
        events.try_recv().expect("an event"),
        StoreEvent::Evicted {
            flat: committed.record.flat,
            root: committed.record.root,
            size: data.len() as u64,
        }
    );
    assert!(!committed.blob.exists());
    for key in ["by-path", "by-hash"] {
        assert_eq!(store.index().get_artifact("apt", key).expect("get"), None);
    }
    assert_eq!(
        tmp_files(dir.path()),
        [format!("damaged-{}", digest.flat_cid())]
    );
    // Gone already: nothing to move, nothing to forget, nothing to tell.
    assert_eq!(store.forget_damaged(&digest.flat_cid()).expect("again"), 0);
    assert!(events.try_recv().is_err());
}

#[test]
fn an_import_places_its_staged_files_then_writes_its_rows() {
    let dir = tempfile::tempdir().expect("tempdir");
    let store = Store::open(dir.path()).expect("open");
    let body = b"{\"name\":\"x\"}";
    let staged_doc = store.stage_metadata(body).expect("stage");
    let doc_cid = BlockCid(raw_block_cid(body));
    assert!(!store.document_blob(&doc_cid).exists());
    let data = b"artifact bytes";
    let digest = Digest::of(Algorithm::Sha512, data);
    let mut writer = store.artifact_writer(digest.clone()).expect("writer");
    writer.write(data).expect("write");
    let (staged_file, flat, dag) = writer.verify().expect("verify");
    assert_eq!(
        staged_file.blob().expect("staged").read().expect("read"),
        data
    );
    assert!(!store.blob(&flat).exists(), "placed before the import");
    let record = ArtifactRecord {
        private: false,
        flat,
        root: RootCid(dag.root),
        size: dag.size,
        upstream_url: "http://upstream.invalid/x.tgz".into(),
        fetched_at: 5,
    };
    let document = ImportedDocument {
        ecosystem: "npm".into(),
        key: "x".into(),
        record: MetadataRecord {
            private: false,
            cid: Some(doc_cid),
            status: 200,
            upstream_url: "http://upstream.invalid/x".into(),
            fetched_at: 5,
            etag: None,
            last_modified: None,
            size: body.len() as u64,
        },
        refs: vec![(
            "x.tgz".into(),
            RefRecord {
                version: None,
                published: None,
                removed: None,
                yanked: false,
                package: None,
                flat,
                url: "http://upstream.invalid/x.tgz".into(),
                size: Some(data.len() as u64),
            },
        )],
    };
    let written = store
        .import(Import {
            staged: vec![staged_doc, staged_file],
            documents: vec![document],
            artifacts: vec![("npm".into(), "x.tgz".into(), record.clone(), Some(dag))],
            ..Import::default()
        })
        .expect("import");
    assert_eq!(written, 1);
    assert_eq!(store.blob(&flat).read().expect("placed"), data);
    assert_eq!(&store.read_metadata(&doc_cid).expect("placed")[..], body);
    assert_eq!(
        store.index().get_artifact("npm", "x.tgz").expect("get"),
        Some(record)
    );
    assert!(
        store
            .index()
            .get_ref("npm", "x.tgz")
            .expect("ref")
            .is_some()
    );
    assert!(tmp_files(dir.path()).is_empty());
}

/// `data` verified under `tmp/` and the rows an import of it as `npm`/`key` writes.
fn import_of(store: &Store, key: &str, data: &[u8]) -> (Import, FlatCid, RootCid) {
    let mut writer = store
        .artifact_writer(Digest::of(Algorithm::Sha512, data))
        .expect("writer");
    writer.write(data).expect("write");
    let (staged, flat, dag) = writer.verify().expect("verify");
    let record = ArtifactRecord {
        private: false,
        flat,
        root: RootCid(dag.root),
        size: dag.size,
        upstream_url: format!("http://upstream.invalid/{key}"),
        fetched_at: 5,
    };
    let root = record.root;
    let import = Import {
        staged: vec![staged],
        artifacts: vec![("npm".into(), key.into(), record, Some(dag))],
        ..Import::default()
    };
    (import, flat, root)
}

/// The next event, waiting for the store's feed (which polls every second) for a minute at
/// most.
fn next_event(events: &mut broadcast::Receiver<StoreEvent>) -> StoreEvent {
    for _ in 0..600 {
        match events.try_recv() {
            Ok(event) => return event,
            Err(broadcast::error::TryRecvError::Empty) => {
                std::thread::sleep(std::time::Duration::from_millis(100))
            }
            Err(e) => panic!("no event: {e}"),
        }
    }
    panic!("no event within a minute");
}

#[test]
fn a_commit_is_sent_to_the_subscribers() {
    let dir = tempfile::tempdir().expect("tempdir");
    let store = Store::open(dir.path()).expect("open");
    let mut events = store.subscribe().expect("subscribe");
    let data = b"committed bytes";
    let mut writer = store
        .artifact_writer(Digest::of(Algorithm::Sha256, data))
        .expect("writer");
    writer.write(data).expect("write");
    let committed = store
        .commit_artifact("cargo", "c.crate", writer, origin(), |_| {})
        .expect("commit");
    assert_eq!(
        events.try_recv().expect("sent with the commit"),
        StoreEvent::Committed {
            ecosystem: "cargo".into(),
            key: "c.crate".into(),
            flat: committed.record.flat,
            root: committed.record.root,
            private: false,
        }
    );
}

#[test]
fn an_import_by_another_process_reaches_the_owners_subscribers_once_and_only_new_ones() {
    let dir = tempfile::tempdir().expect("tempdir");
    let owner = Store::open(dir.path()).expect("open");
    // Another process: its own store on the same directory (its own connections to the index).
    let importer = Store::attach(dir.path()).expect("attach");
    let (before, ..) = import_of(&importer, "before.tgz", b"imported before anyone listened");
    importer.import(before).expect("import");

    let mut events = owner.subscribe().expect("subscribe");
    let (import, flat, root) = import_of(&importer, "x.tgz", b"imported while serving");
    importer.import(import).expect("import");
    assert_eq!(
        next_event(&mut events),
        StoreEvent::Imported {
            ecosystem: "npm".into(),
            key: "x.tgz".into(),
            flat,
            root,
            private: false,
        }
    );
    // Imported again (a held key): nothing new, no event.
    let (again, ..) = import_of(&importer, "x.tgz", b"imported while serving");
    importer.import(again).expect("import again");
    let (third, flat, _) = import_of(&importer, "y.tgz", b"a third file");
    importer.import(third).expect("import");
    assert_eq!(next_event(&mut events).cids().0, flat);
    assert!(events.try_recv().is_err(), "an event too many");
}
