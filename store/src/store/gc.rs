//! `gc`: removing what nothing needs, beside a running node or not.
//!
//! - Files under `blobs/` and `meta/` that no row names (a crash between a file's rename and
//!   its row, an older release's leftovers). A file younger than the grace is left alone: a
//!   commit places its file a moment before it writes its row.
//! - Rows whose file is gone (deleted by hand, a disk fault): dropped as a damaged artifact is,
//!   so the next request fetches it again and the swarm stops hearing of it.
//! - Leaf rows whose file no artifact row names.
//! - Files in `tmp/` older than [`TMP_GRACE`] (the owner empties `tmp/` when it starts; these
//!   are what a crash left beside a node that has not restarted).
//! - Metadata blocks no row names: the older versions of documents fetched again, unless a
//!   snapshot to keep names them ([`GcKeep::documents`]: what pinned snapshots need, so that
//!   `export --snapshot` of a pinned one still finds its documents).
//! - Snapshot nodes (the dag-cbor blocks of `cairn snapshot`, `export`, `import`) that no
//!   snapshot to keep reaches ([`GcKeep::snapshot_blocks`]): unpinned snapshots go.
//!
//! Files whose names are not CIDs are not Cairn's: they are counted, never removed.

use std::collections::HashSet;
use std::fs;
use std::path::{Path, PathBuf};
use std::str::FromStr;
use std::time::{Duration, SystemTime};

use super::Store;
use crate::cid::{BlockCid, FlatCid};
use crate::error::StoreError;

/// Age past which a file in `tmp/` is a leftover: longer than any download takes.
pub const TMP_GRACE: Duration = Duration::from_secs(24 * 3600);

/// What a `gc` must keep beyond what the index's rows name: what the snapshots to keep (the
/// pinned ones) need. Reading snapshots is the mirror's business; the caller fills this in.
#[derive(Clone, Debug, Default)]
pub struct GcKeep {
    /// Metadata blocks the snapshots name.
    pub documents: HashSet<BlockCid>,
    /// The snapshots' own blocks (every dag-cbor node reachable from their roots).
    pub snapshot_blocks: HashSet<cid::Cid>,
}

/// What a `gc` found (and removed, unless it was a dry run).
#[derive(Clone, Debug, Default, PartialEq, Eq, serde::Serialize)]
pub struct GcReport {
    /// Files under `blobs/` and `meta/` no row names, and their bytes.
    pub orphan_files: u64,
    pub orphan_bytes: u64,
    /// Artifact files rows named but the disk did not hold: their rows dropped.
    pub missing_files: u64,
    /// Leaf rows of files no artifact row names.
    pub orphan_leaf_rows: u64,
    /// Leftovers in `tmp/`, and their bytes.
    pub temp_files: u64,
    pub temp_bytes: u64,
    /// Files under `blobs/` or `meta/` whose names are not CIDs (left alone).
    pub foreign_files: u64,
    /// Snapshot nodes no snapshot to keep reaches.
    pub snapshot_blocks: u64,
}

impl Store {
    /// Remove what nothing needs (see the module's documentation) and `keep` does not name;
    /// with `dry_run`, only say what would go. Files younger than `grace` are kept. Blocking.
    pub fn gc(
        &self,
        dry_run: bool,
        grace: Duration,
        keep: &GcKeep,
    ) -> Result<GcReport, StoreError> {
        let mut report = GcReport::default();
        let old_enough = |path: &Path, age: Duration| -> bool {
            fs::metadata(path)
                .and_then(|m| m.modified())
                .ok()
                .and_then(|at| SystemTime::now().duration_since(at).ok())
                .is_some_and(|elapsed| elapsed >= age)
        };
        let remove = |path: &Path, report: &mut GcReport| {
            let size = fs::metadata(path).map(|m| m.len()).unwrap_or(0);
            if dry_run || fs::remove_file(path).is_ok() {
                report.orphan_files += 1;
                report.orphan_bytes += size;
            }
        };

        for path in files_under(&self.root.join("blobs"))? {
            let Some(flat) = name_as::<FlatCid>(&path) else {
                report.foreign_files += 1;
                continue;
            };
            if old_enough(&path, grace) && self.index.get_flat(&flat)?.is_none() {
                remove(&path, &mut report);
            }
        }
        let named = self.index.document_blocks()?;
        for path in files_under(&self.root.join("meta"))? {
            let Some(block) = name_as::<BlockCid>(&path) else {
                report.foreign_files += 1;
                continue;
            };
            if old_enough(&path, grace)
                && !named.contains(&block)
                && !keep.documents.contains(&block)
            {
                remove(&path, &mut report);
            }
        }

        let missing = self
            .index
            .files_where(&|flat| !self.blob_path(flat).exists())?;
        report.missing_files = missing.len() as u64;
        if !dry_run {
            for flat in &missing {
                self.forget_damaged(flat)?;
            }
        }
        report.orphan_leaf_rows = self.index.orphan_leaves(dry_run)?;
        let unreached: Vec<cid::Cid> = self
            .index
            .snapshot_blocks()?
            .into_iter()
            .filter(|cid| !keep.snapshot_blocks.contains(cid))
            .collect();
        report.snapshot_blocks = unreached.len() as u64;
        if !dry_run {
            self.index.delete_blocks(&unreached)?;
        }

        for path in files_under(&self.root.join("tmp"))? {
            if old_enough(&path, TMP_GRACE.max(grace)) {
                let size = fs::metadata(&path).map(|m| m.len()).unwrap_or(0);
                if dry_run || fs::remove_file(&path).is_ok() {
                    report.temp_files += 1;
                    report.temp_bytes += size;
                }
            }
        }
        Ok(report)
    }
}

/// The file name of `path` as a CID of type `T`.
fn name_as<T: FromStr>(path: &Path) -> Option<T> {
    path.file_name()?.to_str()?.parse().ok()
}

/// Every file below `dir` (a missing `dir` has none).
fn files_under(dir: &Path) -> Result<Vec<PathBuf>, StoreError> {
    let mut files = Vec::new();
    let mut pending = vec![dir.to_path_buf()];
    while let Some(dir) = pending.pop() {
        let entries = match fs::read_dir(&dir) {
            Ok(entries) => entries,
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => continue,
            Err(e) => return Err(StoreError::io("list", &dir, e)),
        };
        for entry in entries {
            let entry = entry.map_err(|e| StoreError::io("list", &dir, e))?;
            let kind = entry
                .file_type()
                .map_err(|e| StoreError::io("list", &entry.path(), e))?;
            if kind.is_dir() {
                pending.push(entry.path());
            } else if kind.is_file() {
                files.push(entry.path());
            }
        }
    }
    Ok(files)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::cid::{Algorithm, Digest};
    use crate::store::Origin;
    use crate::testing::noise;

    fn open() -> (tempfile::TempDir, Store) {
        let dir = tempfile::tempdir().expect("tempdir");
        let store = Store::open(dir.path()).expect("store");
        (dir, store)
    }

    fn add(store: &Store, key: &str, data: &[u8]) -> FlatCid {
        let mut writer = store
            .artifact_writer(Digest::of(Algorithm::Sha512, data))
            .expect("writer");
        writer.write(data).expect("write");
        let origin = Origin {
            private: false,
            upstream_url: format!("http://upstream.invalid/{key}"),
            fetched_at: 1,
        };
        store
            .commit_artifact("npm", key, writer, origin, |_| {})
            .expect("commit")
            .record
            .flat
    }

    /// A file under `blobs/` as a crash between its rename and its row leaves it.
    fn orphan(store: &Store, data: &[u8]) -> PathBuf {
        let flat = Digest::of(Algorithm::Sha512, data).flat_cid();
        let path = store.blob_path(&flat);
        fs::create_dir_all(path.parent().expect("parent")).expect("dir");
        fs::write(&path, data).expect("orphan");
        path
    }

    #[test]
    fn orphan_files_go_and_held_ones_stay_and_a_dry_run_removes_nothing() {
        let (dir, store) = open();
        let held = add(&store, "held.tgz", &noise(5000, 1));
        let lost = orphan(&store, &noise(3000, 3));
        let foreign = dir.path().join("blobs").join("notes.txt");
        fs::write(&foreign, b"not Cairn's").expect("foreign");

        let dry = store
            .gc(true, Duration::ZERO, &GcKeep::default())
            .expect("dry run");
        assert_eq!((dry.orphan_files, dry.orphan_bytes), (1, 3000));
        assert_eq!(dry.foreign_files, 1);
        assert!(lost.exists(), "a dry run removed a file");

        // Younger than the grace: a commit may be about to write its row.
        let young = store
            .gc(false, Duration::from_secs(3600), &GcKeep::default())
            .expect("gc");
        assert_eq!(young.orphan_files, 0);
        assert!(lost.exists());

        let report = store
            .gc(false, Duration::ZERO, &GcKeep::default())
            .expect("gc");
        assert_eq!((report.orphan_files, report.orphan_bytes), (1, 3000));
        assert!(!lost.exists());
        assert!(store.blob_path(&held).exists(), "a held file went");
        assert!(foreign.exists(), "a file that is not Cairn's went");
        assert_eq!(
            store
                .gc(false, Duration::ZERO, &GcKeep::default())
                .expect("again"),
            GcReport {
                foreign_files: 1,
                ..GcReport::default()
            }
        );
    }

    #[test]
    fn rows_whose_file_is_gone_are_dropped_and_the_swarm_is_told() {
        let (_dir, store) = open();
        let kept = add(&store, "kept.tgz", &noise(1000, 5));
        let gone = add(&store, "gone.tgz", &noise(1000, 7));
        fs::remove_file(store.blob_path(&gone)).expect("delete by hand");
        let mut events = store.subscribe().expect("subscribe");

        let report = store
            .gc(false, Duration::ZERO, &GcKeep::default())
            .expect("gc");

        assert_eq!(report.missing_files, 1);
        assert!(
            store
                .index()
                .get_artifact("npm", "gone.tgz")
                .expect("read")
                .is_none()
        );
        assert!(
            store
                .index()
                .get_artifact("npm", "kept.tgz")
                .expect("read")
                .is_some()
        );
        assert!(matches!(
            events.try_recv().expect("an event"),
            crate::events::StoreEvent::Evicted { flat, .. } if flat == gone
        ));
        assert!(store.blob_path(&kept).exists());
    }

    #[test]
    fn a_document_block_no_row_names_goes_and_a_named_one_stays() {
        let (_dir, store) = open();
        let record = crate::index::MetadataRecord {
            private: false,
            cid: None,
            status: 200,
            upstream_url: "http://upstream.invalid/x".into(),
            fetched_at: 1,
            etag: None,
            last_modified: None,
            size: 0,
        };
        let named = store
            .put_document("npm", "x", b"{\"name\":\"x\"}", record, &[])
            .expect("document")
            .cid
            .expect("a block");
        let stray = crate::cid::raw_block_cid(b"an old version");
        let stray_path = store.meta_path(&BlockCid(stray));
        fs::create_dir_all(stray_path.parent().expect("parent")).expect("dir");
        fs::write(&stray_path, b"an old version").expect("stray");

        let report = store
            .gc(false, Duration::ZERO, &GcKeep::default())
            .expect("gc");

        assert_eq!(report.orphan_files, 1);
        assert!(!stray_path.exists());
        assert!(store.meta_path(&named).exists(), "a named document went");
    }

    #[test]
    fn old_document_versions_and_unkept_snapshot_blocks_go_and_what_keep_names_stays() {
        let (_dir, store) = open();
        let record = crate::index::MetadataRecord {
            private: false,
            cid: None,
            status: 200,
            upstream_url: "http://upstream.invalid/x".into(),
            fetched_at: 1,
            etag: None,
            last_modified: None,
            size: 0,
        };
        let document = |body: &[u8]| {
            store
                .put_document("npm", "x", body, record.clone(), &[])
                .expect("put")
                .cid
                .expect("a block")
        };
        let (first, second, third) = (
            document(b"{\"v\":1}"),
            document(b"{\"v\":2}"),
            document(b"{\"v\":3}"),
        );
        let snapshot_block = |n: u8| {
            let data = vec![0xa1, 0x61, b'n', n];
            let cid = crate::cid::raw_cid(crate::cid::SHA2_256, &crate::cid::sha256(&data));
            let cid = cid::Cid::new_v1(crate::cid::DAG_CBOR, *cid.hash());
            store.put_blocks(&[(cid, data)]).expect("put block");
            cid
        };
        let (kept_block, lost_block) = (snapshot_block(1), snapshot_block(2));
        let keep = GcKeep {
            documents: [first].into(),
            snapshot_blocks: [kept_block].into(),
        };

        let report = store.gc(false, Duration::ZERO, &keep).expect("gc");
        assert_eq!(report.orphan_files, 1, "{report:?}");
        assert_eq!(report.snapshot_blocks, 1, "{report:?}");
        // The newest version (a row names it) and the kept one stay; the one between goes.
        assert!(store.read_metadata(&third).is_ok());
        assert!(store.read_metadata(&first).is_ok());
        assert!(store.read_metadata(&second).is_err());
        assert!(
            store
                .index()
                .get_block(&kept_block)
                .expect("read")
                .is_some()
        );
        assert!(
            store
                .index()
                .get_block(&lost_block)
                .expect("read")
                .is_none()
        );
        // An artifact's dag-pb inner nodes are not snapshot blocks.
        let flat = add(&store, "big.tgz", &noise(3 << 20, 9));
        let (_, root) = store.index().get_flat(&flat).expect("flat").expect("held");
        assert_eq!(
            store
                .gc(false, Duration::ZERO, &keep)
                .expect("gc")
                .snapshot_blocks,
            0
        );
        assert!(store.index().get_block(&root.0).expect("read").is_some());
    }
}
