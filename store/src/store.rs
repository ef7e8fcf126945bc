//! The blockstore on disk: a filestore of flat artifact files plus metadata blocks.
//!
//! ```text
//! <data-dir>/
//! ├── index.sqlite3          the index (see `index.rs`): keys, CIDs, freshness, inner DAG nodes
//! ├── blobs/<xx>/<flat-cid>  one flat file per artifact, exactly the upstream bytes
//! ├── meta/<xx>/<block-cid>  one raw block per fetched metadata document
//! ├── tmp/                   downloads in progress; emptied at every start
//! └── lock                   held (flock) by the process that owns the store; holds its pid
//! ```
//!
//! One process owns a data directory ([`Store::open`], for `serve` and an in-process
//! `prefetch`): it takes an exclusive lock on `lock` and only then empties `tmp/`, so a second
//! `serve` fails instead of deleting the first's downloads in progress. Other commands
//! ([`Store::attach`]) work beside the owner.
//! `<xx>` is the last two characters of the CID, to keep directories small.
//!
//! Why a filestore: an artifact's UnixFS leaves are the 1 MiB ranges of its flat file, so the
//! bytes are stored once, a cache hit is a plain file read (as fast as nginx serving the same
//! file), and a leaf is served to a peer by reading its range. Only the small dag-pb inner nodes
//! live elsewhere (in the index).
//!
//! Crash safety: every file is written under `tmp/`, fsynced, then renamed into place and the
//! directory fsynced. A reader (or a restart) therefore sees a whole file or none; files left in
//! `tmp/` by a crash are deleted at the next start. A blob is only ever served through the index,
//! and the index row is written after the rename, so an orphan blob is harmless.

use std::fs::{self, File, OpenOptions};
use std::io::Write;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU64, Ordering};

use bytes::Bytes;

use crate::cid::{Algorithm, BlockCid, Digest, FlatCid, Hasher, raw_block_cid};
use crate::error::StoreError;
use crate::unixfs::{Dag, DagBuilder};

/// The file layout under a data directory. Cheap to clone; all methods are blocking.
#[derive(Clone, Debug)]
pub struct Store {
    root: PathBuf,
    /// The locked `lock` file, for the store's owner; released when the last clone goes.
    _lock: Option<std::sync::Arc<File>>,
}

static TEMP_COUNTER: AtomicU64 = AtomicU64::new(0);

impl Store {
    /// Open (creating) the layout under `root` as its owner: lock the data directory (an error
    /// naming the process holding it, when another does) and empty `tmp/`.
    pub fn open(root: &Path) -> Result<Self, StoreError> {
        for dir in ["blobs", "meta", "tmp"] {
            let path = root.join(dir);
            fs::create_dir_all(&path).map_err(|e| StoreError::io("create directory", &path, e))?;
        }
        let lock = lock_dir(root)?;
        let store = Store {
            root: root.to_path_buf(),
            _lock: Some(std::sync::Arc::new(lock)),
        };
        store.clear_tmp()?;
        Ok(store)
    }

    /// Use the layout under `root` as another process's store too (`cairn export`, `import`):
    /// `tmp/` is left alone, since a running `serve` may be writing there.
    pub fn attach(root: &Path) -> Result<Self, StoreError> {
        for dir in ["blobs", "meta", "tmp"] {
            let path = root.join(dir);
            fs::create_dir_all(&path).map_err(|e| StoreError::io("create directory", &path, e))?;
        }
        Ok(Store {
            root: root.to_path_buf(),
            _lock: None,
        })
    }

    pub fn root(&self) -> &Path {
        &self.root
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

    /// Where the flat file of an artifact lives.
    pub fn blob_path(&self, flat: &FlatCid) -> PathBuf {
        self.fan_out("blobs", &flat.to_string())
    }

    /// Where a metadata block lives.
    pub fn meta_path(&self, cid: &BlockCid) -> PathBuf {
        self.fan_out("meta", &cid.to_string())
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

    /// Start writing an artifact whose whole-file digest must equal `expected`.
    /// Bytes an unprivileged writer can still put on the store's filesystem (`None` when the
    /// filesystem will not say).
    pub fn free_bytes(&self) -> Option<u64> {
        let stat = rustix::fs::statvfs(&self.root).ok()?;
        Some(stat.f_bavail.saturating_mul(stat.f_frsize))
    }

    pub fn artifact_writer(&self, expected: Digest) -> Result<ArtifactWriter, StoreError> {
        let dest = self.blob_path(&expected.flat_cid());
        self.writer_to(expected, dest)
    }

    /// Start writing a metadata document that arrives in pieces (a bundle carries a large one
    /// as a UnixFS file): its bytes must hash to `cid`, a sha2-256 raw block CID, and it is put
    /// in place as that block ([`Store::meta_path`]), not as an artifact.
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
        self.writer_to(expected, self.meta_path(cid))
    }

    fn writer_to(&self, expected: Digest, dest: PathBuf) -> Result<ArtifactWriter, StoreError> {
        let (path, file) = self.temp_file()?;
        Ok(ArtifactWriter {
            hasher: Some(FlatHasher::Inline(Hasher::new(expected.algorithm()))),
            expected,
            dag: DagBuilder::new(),
            temp: Some(path),
            dest,
            file,
        })
    }

    /// Store a metadata document as a raw block; returns its CID. Idempotent.
    pub fn put_metadata(&self, bytes: &[u8]) -> Result<BlockCid, StoreError> {
        let cid = BlockCid(raw_block_cid(bytes));
        let dest = self.meta_path(&cid);
        if dest.exists() {
            return Ok(cid);
        }
        let (temp, mut file) = self.temp_file()?;
        let guard = TempGuard(Some(temp.clone()));
        file.write_all(bytes)
            .and_then(|()| file.sync_all())
            .map_err(|e| StoreError::io("write", &temp, e))?;
        drop(file);
        place(&temp, &dest)?;
        guard.disarm();
        Ok(cid)
    }

    /// Write a metadata block under `tmp/`, to be put in place later (an import that must
    /// commit all or nothing).
    pub fn stage_metadata(&self, bytes: &[u8]) -> Result<Staged, StoreError> {
        let cid = BlockCid(raw_block_cid(bytes));
        let (temp, mut file) = self.temp_file()?;
        let staged = Staged {
            temp: Some(temp.clone()),
            dest: self.meta_path(&cid),
        };
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

/// Rename `temp` to `dest` (creating its directory) and make the rename durable.
fn place(temp: &Path, dest: &Path) -> Result<(), StoreError> {
    let dir = dest.parent().unwrap_or(Path::new("."));
    fs::create_dir_all(dir).map_err(|e| StoreError::io("create directory", dir, e))?;
    fs::rename(temp, dest).map_err(|e| StoreError::io("rename into place", dest, e))?;
    File::open(dir)
        .and_then(|d| d.sync_all())
        .map_err(|e| StoreError::io("sync directory", dir, e))
}

/// A verified file under `tmp/`, fsynced, waiting to be renamed into place. Dropped unplaced,
/// it is deleted.
#[derive(Debug)]
pub struct Staged {
    temp: Option<PathBuf>,
    dest: PathBuf,
}

impl Staged {
    /// Where the file waits under `tmp/` (to read it back before it is placed).
    pub fn path(&self) -> Option<&Path> {
        self.temp.as_deref()
    }

    /// Rename into place (durably).
    pub fn place(mut self) -> Result<PathBuf, StoreError> {
        let temp = self.temp.take().ok_or(StoreError::Finished)?;
        let guard = TempGuard(Some(temp.clone()));
        place(&temp, &self.dest)?;
        guard.disarm();
        Ok(self.dest.clone())
    }
}

impl Drop for Staged {
    fn drop(&mut self) {
        if let Some(path) = self.temp.take() {
            let _ = fs::remove_file(path);
        }
    }
}

/// Deletes a temp file unless disarmed.
struct TempGuard(Option<PathBuf>);

impl TempGuard {
    fn disarm(mut self) {
        self.0 = None;
    }
}

impl Drop for TempGuard {
    fn drop(&mut self) {
        if let Some(path) = self.0.take() {
            let _ = fs::remove_file(path);
        }
    }
}

/// Files larger than this have their whole-file digest computed on a thread of its own, beside
/// the leaf hashing and writing: sha2-512 (npm) runs at about half the speed of sha2-256 with
/// SHA extensions, and on one thread the two hashes would add up.
const HASH_THREAD_AFTER: u64 = 8 << 20;

/// The whole-file digest of an artifact being written: inline while it is small, then on a
/// thread fed with copies of the chunks.
enum FlatHasher {
    Inline(Hasher),
    Thread {
        chunks: std::sync::mpsc::SyncSender<Vec<u8>>,
        done: std::thread::JoinHandle<crate::cid::Digest>,
        spare: std::sync::mpsc::Receiver<Vec<u8>>,
    },
    /// The hashing thread could not be started.
    Failed,
}

impl FlatHasher {
    /// Hash `data`; `written` is the file's length before it.
    fn update(self, data: &[u8], written: u64) -> FlatHasher {
        match self {
            FlatHasher::Inline(mut hasher) if written < HASH_THREAD_AFTER => {
                hasher.update(data);
                FlatHasher::Inline(hasher)
            }
            FlatHasher::Inline(mut hasher) => {
                let (chunks, rx) = std::sync::mpsc::sync_channel::<Vec<u8>>(8);
                let (give_back, spare) = std::sync::mpsc::sync_channel::<Vec<u8>>(16);
                let spawned =
                    std::thread::Builder::new()
                        .name("cairn-hash".into())
                        .spawn(move || {
                            for chunk in rx {
                                hasher.update(&chunk);
                                let _ = give_back.try_send(chunk);
                            }
                            hasher.finish()
                        });
                match spawned {
                    Ok(done) => FlatHasher::Thread {
                        chunks,
                        done,
                        spare,
                    }
                    .update(data, written),
                    // No thread to be had: go on inline (the hasher moved into the failed
                    // closure is gone, so report it at the end).
                    Err(_) => FlatHasher::Failed,
                }
            }
            FlatHasher::Thread {
                chunks,
                done,
                spare,
            } => {
                // Buffers come back from the thread to be filled again: no allocation (and no
                // fresh pages to fault in) per chunk.
                let mut buffer = spare.try_recv().unwrap_or_default();
                buffer.clear();
                buffer.extend_from_slice(data);
                // A send fails only if the thread died; `finish` reports it.
                let _ = chunks.send(buffer);
                FlatHasher::Thread {
                    chunks,
                    done,
                    spare,
                }
            }
            FlatHasher::Failed => FlatHasher::Failed,
        }
    }

    fn finish(self) -> Result<crate::cid::Digest, StoreError> {
        match self {
            FlatHasher::Inline(hasher) => Ok(hasher.finish()),
            FlatHasher::Thread { chunks, done, .. } => {
                drop(chunks);
                done.join().map_err(|_| StoreError::HashThread)
            }
            FlatHasher::Failed => Err(StoreError::HashThread),
        }
    }
}

/// Writes one artifact under `tmp/` while hashing it; [`ArtifactWriter::finish`] verifies the
/// digest and moves it into place. Dropping an unfinished writer deletes the temp file.
pub struct ArtifactWriter {
    expected: Digest,
    hasher: Option<FlatHasher>,
    dag: DagBuilder,
    temp: Option<PathBuf>,
    /// Where the verified file goes.
    dest: PathBuf,
    file: File,
}

/// An artifact that passed verification and is in place.
#[derive(Debug)]
pub struct Committed {
    pub flat: FlatCid,
    pub dag: Dag,
    pub path: PathBuf,
}

impl ArtifactWriter {
    /// The temp file, for readers that stream the download while it is written.
    pub fn file(&self) -> &File {
        &self.file
    }

    /// The UnixFS leaves completed so far, in file order.
    pub fn leaves(&self) -> &[crate::unixfs::Leaf] {
        self.dag.leaves()
    }

    /// Bytes written so far.
    pub fn len(&self) -> u64 {
        self.dag.len()
    }

    pub fn is_empty(&self) -> bool {
        self.dag.is_empty()
    }

    /// Append bytes (blocking: call from a blocking thread).
    pub fn write(&mut self, data: &[u8]) -> Result<(), StoreError> {
        self.write_leaf(data, None)
    }

    /// [`ArtifactWriter::write`] of bytes already checked against the raw CID `leaf`, which
    /// the DAG takes instead of hashing them again ([`DagBuilder::update_leaf`]). The registry
    /// digest is computed over them all the same.
    pub fn write_leaf(&mut self, data: &[u8], leaf: Option<&cid::Cid>) -> Result<(), StoreError> {
        let path = self.temp.as_deref().unwrap_or(Path::new("tmp"));
        self.file
            .write_all(data)
            .map_err(|e| StoreError::io("write", path, e))?;
        if let Some(hasher) = self.hasher.take() {
            self.hasher = Some(hasher.update(data, self.dag.len()));
        }
        match leaf {
            Some(cid) => self.dag.update_leaf(data, cid),
            None => self.dag.update(data),
        }
        Ok(())
    }

    /// Verify the digest, fsync and rename into place. On a mismatch the temp file is deleted
    /// and nothing is stored.
    pub fn finish(self) -> Result<Committed, StoreError> {
        self.finish_with(|_| {})
    }

    /// [`ArtifactWriter::finish`], calling `on_verified(size)` as soon as the digest has matched
    /// (before the fsync), so readers of a download under way can be released early.
    pub fn finish_with(self, on_verified: impl FnOnce(u64)) -> Result<Committed, StoreError> {
        let (staged, flat, dag) = self.verify_with(on_verified)?;
        let path = staged.place()?;
        Ok(Committed { flat, dag, path })
    }

    /// Verify the digest and fsync, but leave the file under `tmp/` until [`Staged::place`].
    pub fn verify(self) -> Result<(Staged, FlatCid, Dag), StoreError> {
        self.verify_with(|_| {})
    }

    fn verify_with(
        mut self,
        on_verified: impl FnOnce(u64),
    ) -> Result<(Staged, FlatCid, Dag), StoreError> {
        let got = match self.hasher.take() {
            Some(hasher) => hasher.finish()?,
            None => return Err(StoreError::Finished),
        };
        let flat = self.expected.flat_cid();
        if got != self.expected {
            return Err(StoreError::DigestMismatch(Box::new(
                crate::error::DigestMismatch {
                    flat,
                    expected: self.expected.clone(),
                    got,
                },
            )));
        }
        on_verified(self.dag.len());
        let temp = self.temp.take().ok_or(StoreError::Finished)?;
        let staged = Staged {
            temp: Some(temp.clone()),
            dest: self.dest.clone(),
        };
        self.file
            .sync_all()
            .map_err(|e| StoreError::io("sync", &temp, e))?;
        let dag = std::mem::take(&mut self.dag).finish();
        Ok((staged, flat, dag))
    }
}

impl Drop for ArtifactWriter {
    fn drop(&mut self) {
        if let Some(path) = self.temp.take() {
            let _ = fs::remove_file(path);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::cid::Algorithm;

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
        assert_eq!(fs::read(&committed.path).expect("read"), data);
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
}
