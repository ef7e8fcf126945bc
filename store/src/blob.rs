//! A handle on one stored file (an artifact's flat file, a metadata block, or a verified file
//! still staged under `tmp/`): what callers open, read or stream. Where the file lives stays
//! inside the store; a blob shows its place only in log lines ([`fmt::Display`]).

use std::fmt;
use std::fs::File;
use std::os::unix::fs::FileExt;
use std::path::PathBuf;

use crate::error::StoreError;

/// One stored file. Cheap to clone; opening and reading block.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Blob {
    path: PathBuf,
}

impl Blob {
    pub(crate) fn new(path: PathBuf) -> Self {
        Blob { path }
    }

    /// Open the file for reading (to stream it, or to send it whole).
    pub fn open(&self) -> Result<File, StoreError> {
        File::open(&self.path).map_err(|e| StoreError::io("open", &self.path, e))
    }

    /// The whole file.
    pub fn read(&self) -> Result<Vec<u8>, StoreError> {
        std::fs::read(&self.path).map_err(|e| StoreError::io("read", &self.path, e))
    }

    /// `len` bytes at `offset`; an error when the file is shorter.
    pub fn read_range(&self, offset: u64, len: usize) -> Result<Vec<u8>, StoreError> {
        let mut data = cairn_ipld::buffer::zeroed(len);
        self.open()?
            .read_exact_at(&mut data, offset)
            .map_err(|e| StoreError::io("read a range of", &self.path, e))?;
        Ok(data)
    }

    /// The file's length, or `None` when it is not there.
    pub fn len(&self) -> Result<Option<u64>, StoreError> {
        match std::fs::metadata(&self.path) {
            Ok(meta) => Ok(Some(meta.len())),
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(None),
            Err(e) => Err(StoreError::io("look up", &self.path, e)),
        }
    }

    /// True when the file is there.
    pub fn exists(&self) -> bool {
        self.path.exists()
    }

    /// An I/O failure `op` on this file, as the store reports it (naming the file).
    pub fn error(&self, op: &'static str, source: std::io::Error) -> StoreError {
        StoreError::io(op, &self.path, source)
    }

    pub(crate) fn path(&self) -> &std::path::Path {
        &self.path
    }
}

/// The file's place on disk, for log lines (clients are told [`StoreError::without_path`]).
impl fmt::Display for Blob {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        self.path.display().fmt(f)
    }
}
