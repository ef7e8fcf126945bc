//! Tests of `verify`'s checks: every kind of damage a disk or a hand can do is found and named,
//! a sound store is sound, and a file that went meanwhile is not damage.

use std::fs;

use super::*;
use crate::cid::{Algorithm, Digest};
use crate::index::HeldArtifact;

fn origin() -> Origin {
    Origin {
        private: false,
        upstream_url: "http://upstream.invalid/x.tgz".into(),
        fetched_at: 7,
    }
}

/// A store holding one artifact of `len` bytes (its DAG has inner nodes past 1 MiB).
fn store_with(len: usize, algorithm: Algorithm) -> (tempfile::TempDir, Store, HeldArtifact) {
    let dir = tempfile::tempdir().expect("tempdir");
    let store = Store::open(dir.path()).expect("open");
    let data = crate::testing::noise(len, 11);
    let mut writer = store
        .artifact_writer(Digest::of(algorithm, &data))
        .expect("writer");
    writer.write(&data).expect("write");
    let committed = store
        .commit_artifact("npm", "x.tgz", writer, origin(), |_| {})
        .expect("commit");
    let held = HeldArtifact {
        flat: committed.record.flat,
        root: committed.record.root,
        size: committed.record.size,
    };
    (dir, store, held)
}

fn check(store: &Store, held: &HeldArtifact) -> Checked {
    store.check_artifact(held, &mut |_| {}).expect("check")
}

fn damage(checked: Checked) -> String {
    match checked {
        Checked::Damaged(why) => why,
        other => panic!("not damage: {other:?}"),
    }
}

#[test]
fn a_sound_artifact_is_sound_and_every_byte_is_counted() {
    for algorithm in [Algorithm::Sha512, Algorithm::Sha256, Algorithm::Sha1] {
        let (_dir, store, held) = store_with(3 << 20 | 17, algorithm);
        let mut read = 0;
        assert_eq!(
            store
                .check_artifact(&held, &mut |n| read += n)
                .expect("check"),
            Checked::Sound
        );
        assert_eq!(read, held.size);
    }
}

#[test]
fn a_flipped_byte_in_any_leaf_is_damage() {
    let (_dir, store, held) = store_with(3 << 20, Algorithm::Sha512);
    let path = crate::testing::blob_path(&store, &held.flat);
    let good = fs::read(&path).expect("read");
    for at in [0, (1 << 20) + 5, good.len() - 1] {
        let mut bad = good.clone();
        bad[at] ^= 0x40;
        fs::write(&path, &bad).expect("write");
        let why = damage(check(&store, &held));
        assert!(why.contains("flat CID"), "{why}");
    }
    fs::write(&path, &good).expect("write");
    assert_eq!(check(&store, &held), Checked::Sound);
}

#[test]
fn a_short_a_long_and_a_missing_file_are_damage_named_as_such() {
    let (_dir, store, held) = store_with(2 << 20, Algorithm::Sha256);
    let path = crate::testing::blob_path(&store, &held.flat);
    let good = fs::read(&path).expect("read");
    fs::write(&path, &good[..good.len() - 1]).expect("write");
    assert!(damage(check(&store, &held)).contains("bytes, not its"));
    let mut long = good.clone();
    long.push(0);
    fs::write(&path, &long).expect("write");
    assert!(damage(check(&store, &held)).contains("longer than"));
    fs::remove_file(&path).expect("remove");
    assert!(damage(check(&store, &held)).contains("missing"));
}

#[test]
fn a_dag_whose_inner_node_is_not_indexed_is_damage() {
    let (_dir, store, held) = store_with(2 << 20, Algorithm::Sha256);
    store
        .index()
        .delete_block_for_tests(&held.root.0)
        .expect("delete");
    let why = damage(check(&store, &held));
    assert!(
        why.contains("inner node") && why.contains("not indexed"),
        "{why}"
    );
}

#[test]
fn a_row_whose_root_is_not_the_files_dag_is_damage() {
    let (_dir, store, held) = store_with(100, Algorithm::Sha256);
    let (_other_dir, _other, other) = store_with(200, Algorithm::Sha256);
    let lying = HeldArtifact {
        root: other.root,
        ..held
    };
    let why = damage(check(&store, &lying));
    assert!(why.contains("make the DAG"), "{why}");
}

#[test]
fn a_file_evicted_since_the_listing_is_gone_not_damage() {
    let (_dir, store, held) = store_with(100, Algorithm::Sha256);
    store
        .evict(u64::MAX, &|_: &crate::cid::FlatCid| false)
        .expect("evict");
    assert_eq!(check(&store, &held), Checked::Gone);
}

#[test]
fn held_files_are_listed_a_page_at_a_time_each_once() {
    let dir = tempfile::tempdir().expect("tempdir");
    let store = Store::open(dir.path()).expect("open");
    crate::testing::synthetic_artifacts(&store, "npm", 25, 64).expect("fill");
    let mut seen = Vec::new();
    let mut after = None;
    loop {
        let page = store
            .index()
            .held_artifacts_after(after.as_ref(), 7)
            .expect("page");
        let Some(last) = page.last() else { break };
        after = Some(last.flat);
        seen.extend(page);
    }
    assert_eq!(seen.len(), 25);
    let mut flats: Vec<_> = seen.iter().map(|h| h.flat.to_bytes()).collect();
    flats.dedup();
    assert_eq!(flats.len(), 25);
    assert!(flats.is_sorted());
    assert_eq!(
        store.index().held_artifact_count().expect("count"),
        (25, 25 * 64)
    );
    for held in &seen {
        assert_eq!(check(&store, held), Checked::Sound);
    }
}

#[test]
fn a_damaged_document_is_found_then_moved_aside_and_its_rows_dropped() {
    let dir = tempfile::tempdir().expect("tempdir");
    let store = Store::open(dir.path()).expect("open");
    let body = b"{\"name\":\"x\"}";
    let record = MetadataRecord {
        private: false,
        cid: None,
        status: 200,
        upstream_url: "http://upstream.invalid/x".into(),
        fetched_at: 3,
        etag: None,
        last_modified: None,
        size: 0,
    };
    let cid = store
        .put_document("npm", "x", body, record, &[])
        .expect("put")
        .cid
        .expect("block");
    assert_eq!(store.document_block_list().expect("list"), [cid]);
    assert_eq!(store.check_document(&cid).expect("check"), Checked::Sound);
    let path = store.meta_path(&cid);
    fs::write(&path, b"{\"name\":\"y\"}").expect("write");
    let why = match store.check_document(&cid).expect("check") {
        Checked::Damaged(why) => why,
        other => panic!("{other:?}"),
    };
    assert!(why.contains("hash to"), "{why}");
    assert_eq!(
        store.forget_damaged_document(&cid).expect("forget"),
        [("npm".to_owned(), "x".to_owned())]
    );
    assert!(!path.exists());
    assert_eq!(store.index().get_metadata("npm", "x").expect("get"), None);
    assert_eq!(store.check_document(&cid).expect("check"), Checked::Gone);
}

#[test]
fn the_last_run_of_a_job_is_kept_and_replaced() {
    let dir = tempfile::tempdir().expect("tempdir");
    let store = Store::open(dir.path()).expect("open");
    let index = store.index();
    assert_eq!(index.last_run("verify").expect("read"), None);
    index.record_run("verify", 5, "{\"a\":1}").expect("record");
    index.record_run("verify", 9, "{\"a\":2}").expect("record");
    assert_eq!(
        index.last_run("verify").expect("read"),
        Some((9, "{\"a\":2}".to_owned()))
    );
}
