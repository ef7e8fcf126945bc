//! The data directory, behind one façade: the files (flat artifacts, metadata blocks) and the
//! index over them. [`Store`] is the only writer of a data directory; everything else reads
//! through it, and gets [`Blob`]s, never paths.
//!
//! ```text
//! <data-dir>/
//! ├── index.sqlite3          the index (see `index/`): keys, CIDs, freshness, inner DAG nodes
//! ├── blobs/<xx>/<flat-cid>  one flat file per artifact, exactly the upstream bytes
//! ├── meta/<xx>/<block-cid>  one raw block per fetched metadata document
//! ├── tmp/                   downloads in progress; emptied at every start
//! ├── admin-token            a node requiring tokens: its admin secret for local commands (0600)
//! └── lock                   held (flock) by the process that owns the store; holds its pid
//! ```
//!
//! One process owns a data directory ([`Store::open`], for `serve` and an in-process
//! `prefetch`): it takes an exclusive lock on `lock` and only then empties `tmp/`, so a second
//! `serve` fails instead of deleting the first's downloads in progress. Other commands
//! ([`Store::attach`]: `import`, `export`, `status`) work beside the owner.
//! `<xx>` is the last two characters of the CID, to keep directories small.
//!
//! Why a filestore: an artifact's UnixFS leaves are the 1 MiB ranges of its flat file, so the
//! bytes are stored once, a cache hit is a plain file read (as fast as nginx serving the same
//! file), and a leaf is served to a peer by reading its range. Only the small dag-pb inner nodes
//! live elsewhere (in the index).
//!
//! What the store keeps true:
//! - Whole file or none: every file is written under `tmp/`, verified against the digest it must
//!   have, fsynced, then renamed into place and the directory fsynced. A reader (or a restart)
//!   sees a whole file or none; files left in `tmp/` by a crash are deleted at the next start.
//! - Index row after rename: a file is only ever served through the index, and its row is
//!   written after the rename ([`Store::commit_artifact`], [`Store::put_document`],
//!   [`Store::import`]), so an orphan file is harmless and a row always names a whole file.
//! - Versioned schema: the index is migrated at open, and one from a newer Cairn is refused.

use std::fs::{self, File, OpenOptions};
use std::io::Write;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};

use bytes::Bytes;
use tokio::sync::broadcast;

pub use crate::blob::Blob;
use crate::blocks::Blocks;
use crate::checked::{CheckedFiles, Stamp};
use crate::cid::{Algorithm, BlockCid, Digest, FlatCid, RootCid, raw_block_cid};
use crate::error::StoreError;
use crate::events::{Events, StoreEvent};
use crate::index::{
    ArtifactRecord, ImportedDocument, Index, ListingRefs, MetadataRecord, RefRecord,
};
use crate::unixfs::Dag;
pub use crate::writer::{ArtifactWriter, Staged};
pub use gc::{GcKeep, GcReport, TMP_GRACE};
pub use secret::ADMIN_TOKEN_FILE;
pub use verify::{Checked, DamagedFile};

/// The data directory: its files and its index. Cheap to clone; all methods block.
#[derive(Clone)]
pub struct Store {
    root: PathBuf,
    index: Arc<Index>,
    events: Arc<Events>,
    /// Artifact files checked whole moments ago ([`crate::checked`]).
    checked: Arc<CheckedFiles>,
    /// The locked `lock` file, for the store's owner; released when the last clone goes.
    _lock: Option<Arc<File>>,
}

impl std::fmt::Debug for Store {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Store")
            .field("root", &self.root)
            .finish_non_exhaustive()
    }
}

/// An artifact committed by [`Store::commit_artifact`]: its row, its DAG, its file.
#[derive(Debug)]
pub struct Committed {
    pub record: ArtifactRecord,
    pub dag: Dag,
    pub blob: Blob,
}

/// Where an artifact's bytes come from, for its row: the URL it was fetched from (or how it
/// was made) and when.
#[derive(Clone, Debug)]
pub struct Origin {
    pub upstream_url: String,
    /// Milliseconds since the Unix epoch.
    pub fetched_at: i64,
    /// The upstream was sent credentials ([`ArtifactRecord::private`]).
    pub private: bool,
}

/// What a bundle brought, verified, for [`Store::import`]: staged files and the rows naming
/// them.
#[derive(Debug, Default)]
pub struct Import {
    /// Verified files under `tmp/`, placed before any row is written.
    pub staged: Vec<Staged>,
    pub documents: Vec<ImportedDocument>,
    /// `(ecosystem, key, record, DAG)`: the DAG of bytes new to this store, `None` for held
    /// ones.
    pub artifacts: Vec<(String, String, ArtifactRecord, Option<Dag>)>,
    /// `(ecosystem, listing key, references)`.
    pub listing_refs: Vec<ListingRefs>,
    /// Snapshot nodes to keep in the `blocks` table.
    pub blocks: Vec<(cid::Cid, Vec<u8>)>,
}

static TEMP_COUNTER: AtomicU64 = AtomicU64::new(0);

const INDEX_FILE: &str = "index.sqlite3";

fn make_dirs(root: &Path) -> Result<(), StoreError> {
    for dir in ["blobs", "meta", "tmp"] {
        let path = root.join(dir);
        fs::create_dir_all(&path).map_err(|e| StoreError::io("create directory", &path, e))?;
    }
    Ok(())
}

impl Store {
    /// Open (creating) the data directory `root` as its owner: lock it (an error naming the
    /// process holding it, when another does), empty `tmp/`, open (migrating) the index.
    pub fn open(root: &Path) -> Result<Self, StoreError> {
        make_dirs(root)?;
        let lock = lock_dir(root)?;
        let index = Arc::new(Index::open(&root.join(INDEX_FILE))?);
        let store = Store {
            root: root.to_path_buf(),
            index,
            events: Events::new(root.join(INDEX_FILE)),
            checked: Arc::default(),
            _lock: Some(Arc::new(lock)),
        };
        store.clear_tmp()?;
        Ok(store)
    }

    /// Use the data directory `root` beside its owner (`cairn export`, `import`, `status`):
    /// `tmp/` is left alone, since a running `serve` may be writing there.
    pub fn attach(root: &Path) -> Result<Self, StoreError> {
        make_dirs(root)?;
        let index = Arc::new(Index::open(&root.join(INDEX_FILE))?);
        Ok(Store {
            root: root.to_path_buf(),
            index,
            events: Events::new(root.join(INDEX_FILE)),
            checked: Arc::default(),
            _lock: None,
        })
    }

    /// Artifact files checked whole moments ago: hashed as this store wrote them, or read whole
    /// with every leaf checked.
    pub fn checked(&self) -> &CheckedFiles {
        &self.checked
    }

    /// The index, to read (every write goes through the store).
    pub fn index(&self) -> &Arc<Index> {
        &self.index
    }

    /// Every event from now on: artifacts this process commits, and artifacts any process
    /// imports into this data directory (seen within about [`POLL_EVERY`]).
    ///
    /// [`POLL_EVERY`]: crate::events::POLL_EVERY
    pub fn subscribe(&self) -> Result<broadcast::Receiver<StoreEvent>, StoreError> {
        self.events.subscribe()
    }

    /// Every block held, by CID.
    pub fn blocks(&self) -> Blocks {
        Blocks::new(self.clone())
    }

    /// What peers may read of this store, and what it comes to hold, for the swarm.
    pub fn holdings(&self) -> Arc<dyn cairn_peering::LocalContent> {
        Arc::new(crate::holdings::Holdings::new(self.clone()))
    }

    /// The holdings an open swarm reads: [`Store::holdings`] without the private content
    /// (what came from an upstream that was sent credentials).
    pub fn open_holdings(&self) -> Arc<dyn cairn_peering::LocalContent> {
        Arc::new(crate::holdings::Holdings::new(self.clone()).without_private())
    }

    /// Delete what crashed processes left in `tmp/`. Files of a live process other than this
    /// one (an `import` staging its bundle beside a starting `serve`) are left alone.
    fn clear_tmp(&self) -> Result<(), StoreError> {
        let tmp = self.root.join("tmp");
        let entries = fs::read_dir(&tmp).map_err(|e| StoreError::io("list", &tmp, e))?;
        for entry in entries {
            let path = entry.map_err(|e| StoreError::io("list", &tmp, e))?.path();
            let writer = path
                .file_name()
                .and_then(|n| n.to_str())
                .and_then(|n| n.split_once('-'))
                .and_then(|(pid, _)| pid.parse::<u32>().ok());
            if writer.is_some_and(|pid| pid != std::process::id() && process_alive(pid)) {
                continue;
            }
            fs::remove_file(&path).map_err(|e| StoreError::io("remove", &path, e))?;
        }
        Ok(())
    }

    fn fan_out(&self, dir: &str, cid: &str) -> PathBuf {
        let tail = &cid[cid.len().saturating_sub(2)..];
        self.root.join(dir).join(tail).join(cid)
    }

    pub(crate) fn blob_path(&self, flat: &FlatCid) -> PathBuf {
        self.fan_out("blobs", &flat.to_string())
    }

    pub(crate) fn meta_path(&self, cid: &BlockCid) -> PathBuf {
        self.fan_out("meta", &cid.to_string())
    }

    /// The flat file of an artifact (whether or not it is held: [`Blob::open`] says).
    pub fn blob(&self, flat: &FlatCid) -> Blob {
        Blob::new(self.blob_path(flat))
    }

    /// The stored block of a metadata document (whether or not it is held).
    pub fn document_blob(&self, cid: &BlockCid) -> Blob {
        Blob::new(self.meta_path(cid))
    }

    fn temp_file(&self) -> Result<(PathBuf, File), StoreError> {
        let n = TEMP_COUNTER.fetch_add(1, Ordering::Relaxed);
        let path = self
            .root
            .join("tmp")
            .join(format!("{}-{n}.part", std::process::id()));
        let file = OpenOptions::new()
            .read(true)
            .write(true)
            .create_new(true)
            .open(&path)
            .map_err(|e| StoreError::io("create", &path, e))?;
        Ok((path, file))
    }

    /// Bytes an unprivileged writer can still put on the store's filesystem (`None` when the
    /// filesystem will not say).
    pub fn free_bytes(&self) -> Option<u64> {
        let stat = rustix::fs::statvfs(&self.root).ok()?;
        Some(stat.f_bavail.saturating_mul(stat.f_frsize))
    }

    /// Size of the filesystem holding the data directory, when `statvfs` can tell.
    pub fn disk_bytes(&self) -> Option<u64> {
        let stat = rustix::fs::statvfs(&self.root).ok()?;
        Some(stat.f_blocks.saturating_mul(stat.f_frsize))
    }

    /// Start writing an artifact whose whole-file digest must equal `expected`, under `tmp/`;
    /// [`Store::commit_artifact`] verifies and commits it.
    pub fn artifact_writer(&self, expected: Digest) -> Result<ArtifactWriter, StoreError> {
        let dest = self.blob_path(&expected.flat_cid());
        let (temp, file) = self.temp_file()?;
        Ok(ArtifactWriter::new(expected, temp, file, dest))
    }

    /// Start writing a metadata document that arrives in pieces (a bundle carries a large one
    /// as a UnixFS file): its bytes must hash to `cid`, a sha2-256 raw block CID, and it is put
    /// in place as that block, not as an artifact.
    pub fn document_writer(&self, cid: &BlockCid) -> Result<ArtifactWriter, StoreError> {
        let hash = cid.0.hash();
        let expected = match Algorithm::from_multihash_code(hash.code()) {
            Some(Algorithm::Sha256) => {
                Digest::new(Algorithm::Sha256, hash.digest().to_vec()).map_err(|e| e.to_string())
            }
            _ => Err("not a sha2-256 hash".to_owned()),
        }
        .map_err(|reason| StoreError::Corrupt {
            path: self.meta_path(cid),
            expected: "a document named by a sha2-256 raw block CID".into(),
            got: format!("{cid}: {reason}"),
        })?;
        let (temp, file) = self.temp_file()?;
        Ok(ArtifactWriter::new(
            expected,
            temp,
            file,
            self.meta_path(cid),
        ))
    }

    /// Verify a written artifact, put its file in place, then write its row (with its DAG's
    /// inner nodes and leaves) under `ecosystem`/`key`. `on_verified(size)` is called as soon as
    /// the digest has matched (before the fsync), so readers of a download under way can be
    /// released early. On a mismatch nothing is stored.
    pub fn commit_artifact(
        &self,
        ecosystem: &str,
        key: &str,
        writer: ArtifactWriter,
        origin: Origin,
        on_verified: impl FnOnce(u64),
    ) -> Result<Committed, StoreError> {
        self.commit_listing(ecosystem, key, writer, origin, on_verified, |_| {})
    }

    /// [`Store::commit_artifact`] for a listing: `read(blob)` runs between putting the verified
    /// file in place and writing its row, so what a listing names is indexed before the listing
    /// is, and a crash between the two leaves no listing row whose references are missing (the
    /// file is an orphan `gc` removes; the next request downloads it again).
    pub fn commit_listing(
        &self,
        ecosystem: &str,
        key: &str,
        writer: ArtifactWriter,
        origin: Origin,
        on_verified: impl FnOnce(u64),
        read: impl FnOnce(&Blob),
    ) -> Result<Committed, StoreError> {
        let placed = writer.finish_with(on_verified)?;
        // Every byte was hashed as it was written: the file as placed is checked.
        if let Ok(meta) = fs::metadata(placed.blob.path()) {
            self.checked.record(placed.flat, Stamp::of(&meta));
        }
        read(&placed.blob);
        let record = ArtifactRecord {
            flat: placed.flat,
            root: RootCid(placed.dag.root),
            size: placed.dag.size,
            upstream_url: origin.upstream_url,
            fetched_at: origin.fetched_at,
            private: origin.private,
        };
        self.index
            .put_artifact(ecosystem, key, &record, &placed.dag)?;
        self.events.emit(StoreEvent::Committed {
            ecosystem: ecosystem.to_owned(),
            key: key.to_owned(),
            flat: record.flat,
            root: record.root,
            private: record.private,
        });
        Ok(Committed {
            record,
            dag: placed.dag,
            blob: placed.blob,
        })
    }

    /// Some artifact of `ecosystem` with these bytes, under whichever key it was cached; indexed
    /// under `alias` too when one is given (the same file named twice, as apt names an index by
    /// path and by hash). Returns the key it is found under (`alias` when given).
    pub fn find_by_flat(
        &self,
        ecosystem: &str,
        flat: &FlatCid,
        alias: Option<&str>,
    ) -> Result<Option<(String, ArtifactRecord)>, StoreError> {
        let Some((key, record)) = self.index.find_by_flat(ecosystem, flat)? else {
            return Ok(None);
        };
        match alias {
            Some(alias) => {
                self.index.alias_artifact(ecosystem, alias, &record)?;
                Ok(Some((alias.to_owned(), record)))
            }
            None => Ok(Some((key, record))),
        }
    }

    /// Record part of what a listing artifact (`listed_by`, apt's `Packages`) says about other
    /// artifacts, in one transaction: the parts of one reading add up to the whole of it, and
    /// nothing is marked removed (a listing is named by its digest, so every reading says the
    /// same).
    pub fn put_listed_refs(
        &self,
        ecosystem: &str,
        listed_by: &str,
        refs: &[(String, RefRecord)],
    ) -> Result<(), StoreError> {
        Ok(self.index.put_listed_refs(ecosystem, listed_by, refs)?)
    }

    /// Store a fetched metadata document: its block (idempotent), then its row with the
    /// references it lists. `record`'s CID and size are those of `body`. Returns the row.
    pub fn put_document(
        &self,
        ecosystem: &str,
        key: &str,
        body: &[u8],
        record: MetadataRecord,
        refs: &[(String, RefRecord)],
    ) -> Result<MetadataRecord, StoreError> {
        let cid = self.put_metadata(body)?;
        let record = MetadataRecord {
            cid: Some(cid),
            size: body.len() as u64,
            ..record
        };
        self.index.put_metadata(ecosystem, key, &record, refs)?;
        Ok(record)
    }

    /// Record that upstream answered `record.status` without a document (a cached "not
    /// found"); `record`'s CID is dropped.
    pub fn put_not_found(
        &self,
        ecosystem: &str,
        key: &str,
        record: MetadataRecord,
    ) -> Result<MetadataRecord, StoreError> {
        let record = MetadataRecord {
            cid: None,
            ..record
        };
        self.index.put_metadata(ecosystem, key, &record, &[])?;
        Ok(record)
    }

    /// Mark a cached document fresh again (upstream answered 304 or sent the same bytes).
    pub fn touch_document(
        &self,
        ecosystem: &str,
        key: &str,
        fetched_at: i64,
    ) -> Result<(), StoreError> {
        Ok(self.index.touch_metadata(ecosystem, key, fetched_at)?)
    }

    /// Forget cached upstream "not found"s fetched before `before` (ms since the epoch), then
    /// the oldest ones beyond the newest `keep`. Returns how many went.
    pub fn expire_not_found(&self, before: i64, keep: u64) -> Result<usize, StoreError> {
        Ok(self.index.expire_negative(before, keep)?)
    }

    /// Record last-access times, batched by the caller.
    pub fn touch_artifacts(&self, touched: &[(&str, &str, i64)]) -> Result<(), StoreError> {
        Ok(self.index.touch_artifacts(touched)?)
    }

    /// Store blocks (snapshot nodes) in the index's `blocks` table.
    pub fn put_blocks(&self, blocks: &[(cid::Cid, Vec<u8>)]) -> Result<(), StoreError> {
        Ok(self.index.put_blocks(blocks)?)
    }

    /// Record a pinned snapshot (kept by `gc`).
    pub fn pin(&self, root: &cid::Cid, at: i64) -> Result<(), StoreError> {
        Ok(self.index.pin(root, at)?)
    }

    /// Stop keeping snapshot `root` (its artifacts may be evicted again); whether it was pinned.
    pub fn unpin(&self, root: &cid::Cid) -> Result<bool, StoreError> {
        Ok(self.index.unpin(root)?)
    }

    /// Remove user names and passwords from the URLs the index holds with `strip`; returns how
    /// many rows changed.
    pub fn strip_credentials(
        &self,
        strip: impl Fn(&str) -> std::borrow::Cow<'_, str>,
    ) -> Result<usize, StoreError> {
        Ok(self.index.strip_credentials(strip)?)
    }

    /// Checkpoint the index's write-ahead log.
    pub fn checkpoint(&self) -> Result<(), StoreError> {
        Ok(self.index.checkpoint()?)
    }

    /// Drop the artifact whose flat file is `flat`, found damaged or missing: its file moved
    /// aside (into `tmp/`, emptied at the next start), its rows under every key and its leaves
    /// out of the index. The references that named it stay, so the next request fetches it
    /// again. The file is moved even when the index cannot be written (the error says so). A
    /// file that had rows is a [`StoreEvent::Evicted`] to the subscribers: the swarm stops
    /// announcing what this node can no longer serve.
    pub fn forget_damaged(&self, flat: &FlatCid) -> Result<u64, StoreError> {
        self.checked.forget(flat);
        let held = self.index.get_flat(flat)?;
        let path = self.blob_path(flat);
        let aside = self.root.join("tmp").join(format!("damaged-{flat}"));
        let moved = match fs::rename(&path, &aside) {
            Err(e) if e.kind() != std::io::ErrorKind::NotFound => {
                Err(StoreError::io("move aside", &path, e))
            }
            _ => Ok(()),
        };
        let rows = self.index.forget_flat(flat)?;
        if let Some((size, root)) = held.filter(|_| rows > 0) {
            self.events.emit(StoreEvent::Evicted {
                flat: *flat,
                root,
                size,
            });
        }
        moved.map(|()| rows)
    }

    /// Write what a bundle brought, verified: its staged files put in place first, then every
    /// row in one transaction, without replacing what is held; each artifact indexed is an
    /// [`StoreEvent::Imported`] to the subscribers of every store on this data directory, this
    /// one's included. Returns how many documents were written.
    pub fn import(&self, import: Import) -> Result<u64, StoreError> {
        for file in import.staged {
            file.place()?;
        }
        let written =
            self.index
                .import(&import.documents, &import.artifacts, &import.listing_refs)?;
        self.index.put_blocks(&import.blocks)?;
        Ok(written)
    }

    /// Store a metadata document's block; returns its CID. Idempotent.
    pub(crate) fn put_metadata(&self, bytes: &[u8]) -> Result<BlockCid, StoreError> {
        let cid = BlockCid(raw_block_cid(bytes));
        let dest = self.meta_path(&cid);
        if dest.exists() {
            return Ok(cid);
        }
        let (temp, mut file) = self.temp_file()?;
        let guard = crate::writer::TempGuard::new(temp.clone());
        file.write_all(bytes)
            .and_then(|()| file.sync_all())
            .map_err(|e| StoreError::io("write", &temp, e))?;
        drop(file);
        crate::writer::place(&temp, &dest)?;
        guard.disarm();
        Ok(cid)
    }

    /// Write a metadata block under `tmp/`, to be put in place by [`Store::import`] (which
    /// commits all or nothing).
    pub fn stage_metadata(&self, bytes: &[u8]) -> Result<Staged, StoreError> {
        let cid = BlockCid(raw_block_cid(bytes));
        let (temp, mut file) = self.temp_file()?;
        let staged = Staged::new(temp.clone(), self.meta_path(&cid));
        file.write_all(bytes)
            .and_then(|()| file.sync_all())
            .map_err(|e| StoreError::io("write", &temp, e))?;
        Ok(staged)
    }

    /// Read a metadata block, checking that it still hashes to its CID.
    pub fn read_metadata(&self, cid: &BlockCid) -> Result<Bytes, StoreError> {
        let path = self.meta_path(cid);
        let bytes = fs::read(&path).map_err(|e| StoreError::io("read", &path, e))?;
        let got = BlockCid(raw_block_cid(&bytes));
        if got != *cid {
            return Err(StoreError::Corrupt {
                path,
                expected: cid.to_string(),
                got: got.to_string(),
            });
        }
        Ok(Bytes::from(bytes))
    }
}

/// True when process `pid` exists (Linux's `/proc`; elsewhere every process counts as gone).
fn process_alive(pid: u32) -> bool {
    Path::new("/proc").join(pid.to_string()).exists()
}

/// Take the exclusive lock on `root/lock` and write this process's pid into it.
fn lock_dir(root: &Path) -> Result<File, StoreError> {
    use std::io::{Read, Seek};
    let path = root.join("lock");
    let mut file = OpenOptions::new()
        .read(true)
        .write(true)
        .create(true)
        .truncate(false)
        .open(&path)
        .map_err(|e| StoreError::io("open", &path, e))?;
    match file.try_lock() {
        Ok(()) => {}
        Err(fs::TryLockError::WouldBlock) => {
            let mut text = String::new();
            let _ = file.read_to_string(&mut text);
            let holder = text.trim();
            return Err(StoreError::Locked {
                dir: root.to_path_buf(),
                holder: if holder.is_empty() {
                    "another process".to_owned()
                } else {
                    format!("process {holder}")
                },
            });
        }
        Err(fs::TryLockError::Error(e)) => return Err(StoreError::io("lock", &path, e)),
    }
    file.set_len(0)
        .and_then(|()| file.rewind())
        .and_then(|()| writeln!(file, "{}", std::process::id()))
        .map_err(|e| StoreError::io("write", &path, e))?;
    Ok(file)
}

mod evict;
mod gc;
mod purge;
mod secret;
#[cfg(test)]
mod tests;
mod verify;
#[cfg(test)]
mod verify_tests;
