//! Every block this node holds, by CID, and depth-first walks over the DAGs they form. Reads come
//! from the store and the index only: nothing here contacts an upstream or a peer, so serving a
//! block can never cause a fetch.
//!
//! Where a block lives ([`Blocks::locate`], in this order):
//! - an identity CID carries its bytes (`bafkqaaa` is the empty block);
//! - a raw leaf of an artifact is a range of the artifact's flat file (`leaves` table); a
//!   single-chunk artifact's root CID is its only leaf;
//! - a dag-pb inner node is a row of the `blocks` table (so is any other block put there);
//! - a metadata document is a raw sha2-256 block under `meta/`;
//! - a flat CID (raw codec, the registry's digest of the whole file: sha2-512 for npm) is the
//!   whole flat file, found through the `artifacts` table.
//!
//! Everything read is checked against its CID before it is handed out ([`verify`]); a block
//! that fails is an error, never served. A leaf of an artifact file checked whole moments ago
//! and unchanged since ([`crate::checked`]: hashed as it was written, say, just before a peer
//! asks for it) is handed out without hashing it again. The other exception is left to
//! callers: a flat file over
//! [`MAX_BLOCK_SIZE`] can be streamed from [`Blocks::flat_blob`] unhashed, since it was verified
//! against the registry digest at ingest and re-hashing it per request would cost a full read.
//!
//! [`Walk`] yields the blocks of a DAG in depth-first order (a node, then its children left to
//! right, recursively), optionally limited by a [`Selector`]: `dag-scope` and `entity-bytes` of
//! the HTTP trustless gateway, where a byte range keeps only the subtrees UnixFS `blocksizes`
//! say overlap it. It holds one decoded node per level and the current block, never the file.
//!
//! Links are followed in dag-pb nodes only; other codecs (dag-cbor) are yielded as single blocks.
//!
//! All methods block: call them from a blocking thread.

mod walk;

pub use walk::{DagScope, EntityBytes, Resolved, Selector, Walk};

use std::fmt;
use std::fs::File;
use std::io::{Read, Seek, SeekFrom};
use std::sync::Arc;

use bytes::Bytes;
use cid::{Cid, Version};

use crate::checked::Stamp;
use crate::cid::{Algorithm, BlockCid, DAG_PB, Digest, FlatCid, IDENTITY, RAW, RootCid, SHA2_256};
use crate::error::{IndexError, StoreError};
use crate::index::{Index, LeafRecord};
use crate::store::{Blob, Store};
use crate::unixfs::DecodeError;

/// The largest block a [`Walk`] yields: what CAR readers and Bitswap accept.
pub const MAX_BLOCK_SIZE: u64 = crate::car::MAX_BLOCK_SIZE;
/// Deeper DAGs are refused (Cairn's own are at most 4 levels for files under 1 PiB).
const MAX_DEPTH: usize = 64;

/// Why a block could not be read; [`BlockError::kind`] says what went wrong.
#[derive(Debug, thiserror::Error)]
#[error(transparent)]
pub struct BlockError {
    kind: Box<BlockErrorKind>,
}

impl BlockError {
    pub fn kind(&self) -> &BlockErrorKind {
        &self.kind
    }

    pub fn into_kind(self) -> BlockErrorKind {
        *self.kind
    }
}

/// What went wrong reading a block. Every message names the block.
#[derive(Debug, thiserror::Error)]
pub enum BlockErrorKind {
    #[error("block {cid} is not held by this node")]
    Missing { cid: Cid },
    #[error("block {cid} read from {from} does not hash to its CID")]
    Corrupt { cid: Cid, from: String },
    #[error("block {cid} uses multihash 0x{code:x}, which Cairn cannot verify")]
    UnsupportedHash { cid: Cid, code: u64 },
    #[error("block {cid} has {size} bytes, over the {MAX_BLOCK_SIZE}-byte block limit{hint}")]
    TooLarge { cid: Cid, size: u64, hint: String },
    #[error("entity-bytes={range} is outside {cid}, which has {size} bytes")]
    RangeOutside {
        cid: Cid,
        range: EntityBytes,
        size: u64,
    },
    #[error("cannot decode block {cid}: {source}")]
    Decode {
        cid: Cid,
        #[source]
        source: DecodeError,
    },
    #[error("the DAG under {root} is deeper than {MAX_DEPTH} levels")]
    TooDeep { root: Cid },
    #[error(transparent)]
    Store(StoreError),
    #[error(transparent)]
    Index(IndexError),
}

impl From<BlockErrorKind> for BlockError {
    fn from(kind: BlockErrorKind) -> Self {
        BlockError {
            kind: Box::new(kind),
        }
    }
}

impl From<StoreError> for BlockError {
    fn from(e: StoreError) -> Self {
        BlockErrorKind::Store(e).into()
    }
}

impl From<IndexError> for BlockError {
    fn from(e: IndexError) -> Self {
        BlockErrorKind::Index(e).into()
    }
}

/// Where a held block's bytes are.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Location {
    /// An identity CID: the bytes are its digest.
    Inline(Bytes),
    /// A row of the index's `blocks` table (dag-pb inner nodes), not yet verified.
    Indexed(Bytes),
    /// A raw leaf: a range of a flat file.
    Leaf(LeafRecord),
    /// A metadata document under `meta/`.
    Metadata { cid: BlockCid, size: u64 },
    /// A whole flat file, and the root of its UnixFS DAG.
    Flat {
        flat: FlatCid,
        size: u64,
        root: RootCid,
    },
}

impl Location {
    /// The block's size in bytes.
    pub fn size(&self) -> u64 {
        match self {
            Location::Inline(bytes) | Location::Indexed(bytes) => bytes.len() as u64,
            Location::Leaf(leaf) => leaf.len,
            Location::Metadata { size, .. } | Location::Flat { size, .. } => *size,
        }
    }
}

/// Check `data` against `cid`'s multihash (identity, sha2-256, sha2-512 or sha1).
pub fn verify(cid: &Cid, data: &[u8], from: impl FnOnce() -> String) -> Result<(), BlockError> {
    let mh = cid.hash();
    let ok = match mh.code() {
        IDENTITY => mh.digest() == data,
        code => match Algorithm::from_multihash_code(code) {
            Some(algorithm) => Digest::of(algorithm, data).bytes() == mh.digest(),
            None => return Err(BlockErrorKind::UnsupportedHash { cid: *cid, code }.into()),
        },
    };
    if ok {
        Ok(())
    } else {
        Err(BlockErrorKind::Corrupt {
            cid: *cid,
            from: from(),
        }
        .into())
    }
}

/// Read access to every block of the store and index. Cheap to clone.
#[derive(Clone)]
pub struct Blocks {
    store: Store,
    index: Arc<Index>,
}

impl fmt::Debug for Blocks {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Blocks")
            .field("store", &self.store)
            .finish_non_exhaustive()
    }
}

impl Blocks {
    pub fn new(store: Store) -> Self {
        let index = store.index().clone();
        Blocks { store, index }
    }

    /// Where `cid`'s block is, or `None` when this node does not hold it. Reads no block data
    /// except an index row.
    pub fn locate(&self, cid: &Cid) -> Result<Option<Location>, BlockError> {
        let mh = cid.hash();
        if mh.code() == IDENTITY {
            return Ok(Some(Location::Inline(Bytes::copy_from_slice(mh.digest()))));
        }
        // The index keys blocks by their CIDv1; a CIDv0 names the same dag-pb block.
        let v1 = match cid.version() {
            Version::V0 => Cid::new_v1(DAG_PB, *mh),
            Version::V1 => *cid,
        };
        if v1.codec() == RAW
            && let Some(leaf) = self.index.get_leaf(&v1)?
        {
            return Ok(Some(Location::Leaf(leaf)));
        }
        if let Some(data) = self.index.get_block(&v1)? {
            return Ok(Some(Location::Indexed(Bytes::from(data))));
        }
        if v1.codec() != RAW {
            return Ok(None);
        }
        if mh.code() == SHA2_256 {
            let block = BlockCid(v1);
            if let Ok(Some(size)) = self.store.document_blob(&block).len() {
                return Ok(Some(Location::Metadata { cid: block, size }));
            }
        }
        let flat = FlatCid(v1);
        Ok(self
            .index
            .get_flat(&flat)?
            .map(|(size, root)| Location::Flat { flat, size, root }))
    }

    /// The flat file of an artifact, to stream a [`Location::Flat`] too big to re-hash.
    pub fn flat_blob(&self, flat: &FlatCid) -> Blob {
        self.store.blob(flat)
    }

    /// Read the block at `location` whole and verify it against `cid`.
    pub fn read(&self, cid: &Cid, location: &Location) -> Result<Bytes, BlockError> {
        self.read_with(cid, location, &mut None)
    }

    /// The verified block of `cid`, or `None` when it is not held. Reads the whole block, which
    /// for a flat CID is the whole file: use [`Blocks::locate`] first to check its size.
    pub fn get(&self, cid: &Cid) -> Result<Option<Bytes>, BlockError> {
        match self.locate(cid)? {
            Some(location) => self.read(cid, &location).map(Some),
            None => Ok(None),
        }
    }

    /// [`Blocks::read`], reusing `open` (the flat file last read) for consecutive leaves.
    fn read_with(
        &self,
        cid: &Cid,
        location: &Location,
        open: &mut Option<(FlatCid, File)>,
    ) -> Result<Bytes, BlockError> {
        let (data, from) = match location {
            Location::Inline(bytes) => return Ok(bytes.clone()),
            Location::Indexed(bytes) => (bytes.clone(), "the index"),
            Location::Leaf(leaf) => match self.read_leaf(cid, leaf, open)? {
                (data, true) => return Ok(data),
                (data, false) => (data, "a flat file"),
            },
            Location::Metadata { cid: block, .. } => {
                // `read_metadata` verifies the block itself.
                return Ok(self.store.read_metadata(block)?);
            }
            Location::Flat { flat, .. } => {
                (Bytes::from(self.store.blob(flat).read()?), "a flat file")
            }
        };
        verify(cid, &data, || match location {
            Location::Leaf(leaf) => {
                format!("{} at offset {}", self.store.blob(&leaf.flat), leaf.offset)
            }
            Location::Flat { flat, .. } => self.store.blob(flat).to_string(),
            _ => from.to_owned(),
        })?;
        Ok(data)
    }

    /// The leaf's bytes, and whether its file was checked whole moments ago and is unchanged
    /// since (then they need no hashing).
    fn read_leaf(
        &self,
        cid: &Cid,
        leaf: &LeafRecord,
        open: &mut Option<(FlatCid, File)>,
    ) -> Result<(Bytes, bool), BlockError> {
        // Leaves are 1 MiB; a longer one is a bad index row, not a reason to allocate.
        let len = match usize::try_from(leaf.len) {
            Ok(len) if leaf.len <= MAX_BLOCK_SIZE => len,
            _ => {
                return Err(BlockErrorKind::TooLarge {
                    cid: *cid,
                    size: leaf.len,
                    hint: format!(" (a leaf of {})", leaf.flat),
                }
                .into());
            }
        };
        let blob = self.store.blob(&leaf.flat);
        let file = match open {
            Some((flat, file)) if *flat == leaf.flat => file,
            _ => {
                let file = blob.open()?;
                &mut open.insert((leaf.flat, file)).1
            }
        };
        let mut data = cairn_ipld::buffer::zeroed(len);
        file.seek(SeekFrom::Start(leaf.offset))
            .and_then(|_| file.read_exact(&mut data))
            .map_err(|e| StoreError::io("read a leaf of", blob.path(), e))?;
        // Looked at after the read: a write during it would show.
        let checked =
            Stamp::of_file(file).is_ok_and(|stamp| self.store.checked().stands(&leaf.flat, &stamp));
        Ok((Bytes::from(data), checked))
    }
}

#[cfg(test)]
mod tests;
