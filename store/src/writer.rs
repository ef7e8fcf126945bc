//! Writing files into the data directory: under `tmp/`, hashed as they are written, verified
//! against the digest they must have, fsynced, and only then renamed into place (the directory
//! fsynced too). Only the [`Store`](crate::store::Store) places files, and only it writes the
//! index rows that follow.

use std::fs::{self, File};
use std::io::Write;
use std::path::{Path, PathBuf};

use crate::blob::Blob;
use crate::cid::{Digest, FlatCid, Hasher};
use crate::error::StoreError;
use crate::unixfs::{Dag, DagBuilder};

/// Rename `temp` to `dest` (creating its directory) and make the rename durable.
pub(crate) fn place(temp: &Path, dest: &Path) -> Result<(), StoreError> {
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
    pub(crate) fn new(temp: PathBuf, dest: PathBuf) -> Self {
        Staged {
            temp: Some(temp),
            dest,
        }
    }

    /// The file waiting under `tmp/`, to read it back before it is placed.
    pub fn blob(&self) -> Option<Blob> {
        self.temp.clone().map(Blob::new)
    }

    /// Rename into place (durably): for the [`Store`](crate::store::Store), which writes the
    /// index rows after.
    pub(crate) fn place(mut self) -> Result<PathBuf, StoreError> {
        let temp = self.temp.take().ok_or(StoreError::Finished)?;
        let guard = TempGuard::new(temp.clone());
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
pub(crate) struct TempGuard(Option<PathBuf>);

impl TempGuard {
    pub(crate) fn new(path: PathBuf) -> Self {
        TempGuard(Some(path))
    }

    pub(crate) fn disarm(mut self) {
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

/// Writes one artifact under `tmp/` while hashing it; the store verifies the digest and moves
/// it into place ([`Store::commit_artifact`](crate::store::Store::commit_artifact)). Dropping
/// an unfinished writer deletes the temp file.
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
pub(crate) struct Placed {
    pub flat: FlatCid,
    pub dag: Dag,
    pub blob: Blob,
}

impl ArtifactWriter {
    pub(crate) fn new(expected: Digest, temp: PathBuf, file: File, dest: PathBuf) -> Self {
        ArtifactWriter {
            hasher: Some(FlatHasher::Inline(Hasher::new(expected.algorithm()))),
            expected,
            dag: DagBuilder::new(),
            temp: Some(temp),
            dest,
            file,
        }
    }

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
    #[cfg(test)]
    pub(crate) fn finish(self) -> Result<Placed, StoreError> {
        self.finish_with(|_| {})
    }

    /// [`ArtifactWriter::finish`], calling `on_verified(size)` as soon as the digest has matched
    /// (before the fsync), so readers of a download under way can be released early.
    pub(crate) fn finish_with(self, on_verified: impl FnOnce(u64)) -> Result<Placed, StoreError> {
        let (staged, flat, dag) = self.verify_with(on_verified)?;
        let path = staged.place()?;
        Ok(Placed {
            flat,
            dag,
            blob: Blob::new(path),
        })
    }

    /// Verify the digest and fsync, but leave the file under `tmp/` until the store places it
    /// ([`Store::import`](crate::store::Store::import)).
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
        let staged = Staged::new(temp.clone(), self.dest.clone());
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
