//! CAR bundles: a snapshot and every block needed to serve it offline, written as one CAR v1
//! (`cairn export`), and read back into another node's store (`cairn import`).
//!
//! Order of the blocks after the header (whose one root is the snapshot root):
//! 1. the snapshot's dag-cbor blocks, root first;
//! 2. each metadata document in snapshot order: its raw block, or, for one over
//!    [`MAX_DOCUMENT_BLOCK`](crate::snapshot::MAX_DOCUMENT_BLOCK) (whose snapshot entry links
//!    a `root`), its UnixFS file laid out as an artifact's below;
//! 3. each artifact in snapshot order: its DAG depth first from the root (inner dag-pb nodes,
//!    then the leaves they link to, so the leaves come in file order; a file of one chunk is
//!    its root leaf alone).
//!
//! Both sides stream: export reads each flat file once, in 1 MiB chunks, naming the leaves from
//! the DAG's inner nodes (no hashing); import writes each artifact to `tmp/` as its leaves
//! arrive, hashing each byte once per digest (the leaf CIDs and the registry digest, the latter
//! on a thread of its own for large files). Memory holds the
//! snapshot's entries, never the bytes.
//!
//! Import verifies every block against its CID (the CAR reader does), every artifact against its
//! registry digest (its flat CID) and its rebuilt DAG against the snapshot's root CID, and every
//! document carried in pieces against its own raw block CID (and its DAG against its root) before
//! an adapter reads it. A document's size is checked against its ecosystem's
//! [`Ecosystem::max_document_bytes`](crate::ecosystem::Ecosystem::max_document_bytes) before
//! any of its bytes are read; its pieces go to a file under `tmp/`, so memory holds one block at
//! a time. Export applies the same checks of keys, URLs and sizes (`check_entries`) and refuses,
//! naming the entry, what import would refuse. Nothing is placed or indexed until the whole CAR has been read and verified; then files are renamed into
//! place and the index written in one transaction. A truncated or tampered CAR leaves the store
//! as it was.

pub(crate) mod check;
mod export;
mod files;
mod import;
mod listed;
mod snapshot;

pub use export::export;
pub use files::chunk_documents;
pub use import::import;

use std::io::Read;

use crate::car::CarError;

/// What went wrong with a bundle; the message names the block, artifact or file.
#[derive(Debug, thiserror::Error)]
pub enum BundleError {
    #[error(transparent)]
    Car(#[from] CarError),
    #[error("{0}")]
    Invalid(String),
    #[error("{0}")]
    Store(#[from] crate::error::StoreError),
    #[error("{0}")]
    Index(#[from] crate::error::IndexError),
    #[error("writing the CAR: {0}")]
    Write(std::io::Error),
    #[error(
        "the bundle holds {ecosystem}, which this node does not serve (configure it, then import again)"
    )]
    UnknownEcosystem { ecosystem: String },
    #[error("{ecosystem} {what} key {key:?} is refused: {reason}")]
    BadKey {
        ecosystem: String,
        what: &'static str,
        key: String,
        reason: String,
    },
    #[error("{ecosystem} document {key} is refused: {reason}")]
    BadDocument {
        ecosystem: String,
        key: String,
        reason: String,
    },
    #[error("{ecosystem} artifact {key}: no document or listing names its digest {flat}")]
    Unlisted {
        ecosystem: String,
        key: String,
        /// The flat CID, as text (keeps the error small).
        flat: String,
    },
    #[error(
        "{ecosystem} artifact {key}: this node holds it as {held}, the bundle as {bundled} (a held artifact is never replaced)"
    )]
    Rebinds {
        ecosystem: String,
        key: String,
        held: String,
        bundled: String,
    },
    #[error("the snapshot's blocks pass the limit of {limit} bytes")]
    SnapshotTooLarge { limit: u64 },
    #[error(
        "over {limit} bytes of blocks the snapshot does not link to came before it was complete (at byte {offset})"
    )]
    Unlinked { limit: u64, offset: u64 },
}

/// Counts of what a bundle holds.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct Counts {
    /// Documents written (export: documents in the bundle).
    pub documents: u64,
    pub artifacts: u64,
    /// Artifact bytes.
    pub bytes: u64,
    /// Import: documents of the bundle not written, the node holding them or a newer copy.
    pub documents_kept: u64,
    /// Import: artifacts whose bytes the node already held (read past, not written again).
    pub artifacts_held: u64,
    /// Import: the bytes of those.
    pub bytes_held: u64,
    /// Bytes of the CAR.
    pub car_bytes: u64,
}

pub(super) fn read_full(file: &mut impl Read, buffer: &mut [u8]) -> std::io::Result<usize> {
    let mut filled = 0;
    while filled < buffer.len() {
        match file.read(&mut buffer[filled..]) {
            Ok(0) => break,
            Ok(n) => filled += n,
            Err(e) if e.kind() == std::io::ErrorKind::Interrupted => {}
            Err(e) => return Err(e),
        }
    }
    Ok(filled)
}

/// The most bytes of snapshot blocks an import holds while it reads the snapshot (which comes
/// whole before anything else).
pub const MAX_SNAPSHOT_BYTES: u64 = 256 << 20;

/// The most bytes of blocks that no snapshot block read so far links to, held while the
/// snapshot is read. Cairn writes every snapshot block after the block linking to it, so its
/// own bundles need none of this.
pub const MAX_UNLINKED_BYTES: u64 = 16 << 20;

#[cfg(test)]
mod tests;
