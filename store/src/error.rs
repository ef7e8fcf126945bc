//! The store's errors: what failed on disk or in the index, naming the file or the operation.
//! No HTTP here: the mirror's error type wraps these and decides what a client is told.

use std::path::{Path, PathBuf};

use crate::cid::{Digest, FlatCid};

/// Bytes that did not hash to the digest the registry published.
#[derive(Debug, thiserror::Error)]
#[error("digest mismatch for {flat}: expected {expected}, got {got}")]
pub struct DigestMismatch {
    pub flat: FlatCid,
    pub expected: Digest,
    pub got: Digest,
}

/// The blockstore on disk failed.
#[derive(Debug, thiserror::Error)]
pub enum StoreError {
    #[error("cannot {op} {path}: {source}")]
    Io {
        op: &'static str,
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },
    #[error("{0}")]
    DigestMismatch(Box<DigestMismatch>),
    #[error("stored block {path} is corrupt: expected {expected}, got {got}")]
    Corrupt {
        path: PathBuf,
        expected: String,
        got: String,
    },
    #[error(
        "data directory {dir} is in use by {holder} (another `cairn serve`?): stop it, or give this one its own --data-dir"
    )]
    Locked { dir: PathBuf, holder: String },
    #[error("no room in the store for {what}: {needed} bytes needed, {free} free")]
    NoRoom {
        what: String,
        needed: u64,
        free: u64,
    },
    #[error("artifact writer used after finish")]
    Finished,
    #[error("the thread hashing an artifact failed")]
    HashThread,
    #[error(transparent)]
    Index(#[from] IndexError),
}

impl StoreError {
    pub fn io(op: &'static str, path: &Path, source: std::io::Error) -> Self {
        StoreError::Io {
            op,
            path: path.to_path_buf(),
            source,
        }
    }

    /// The message without the path of the data directory it names (what a client is told).
    pub fn without_path(&self) -> String {
        match self {
            StoreError::Io { op, source, .. } => {
                format!("cannot {op} a file of the store: {source}")
            }
            StoreError::Corrupt { expected, got, .. } => {
                format!("a stored block is corrupt: expected {expected}, got {got}")
            }
            other => other.to_string(),
        }
    }

    /// True when a file the store looked for is not there.
    pub fn is_not_found(&self) -> bool {
        matches!(self, StoreError::Io { source, .. } if source.kind() == std::io::ErrorKind::NotFound)
    }

    /// True when the disk is full, so callers can say so rather than "internal error".
    pub fn is_disk_full(&self) -> bool {
        match self {
            StoreError::Io { source, .. } => source.raw_os_error() == Some(28),
            StoreError::NoRoom { .. } => true,
            _ => false,
        }
    }
}

/// The SQLite index failed.
#[derive(Debug, thiserror::Error)]
pub enum IndexError {
    #[error("index {op} failed: {source}")]
    Sqlite {
        op: &'static str,
        #[source]
        source: rusqlite::Error,
    },
    /// The data directory was written by a newer Cairn, whose schema this one cannot read.
    #[error(
        "index {path} has schema version {found}, newer than {supported}, the newest this cairn knows: run the newer cairn, or give this one its own --data-dir"
    )]
    TooNew {
        path: PathBuf,
        found: i64,
        supported: i64,
    },
}
