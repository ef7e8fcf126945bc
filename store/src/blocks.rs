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
//! that fails is an error, never served. The one exception is left to callers: a flat file over
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

use std::collections::HashSet;
use std::fmt;
use std::fs::File;
use std::io::{Read, Seek, SeekFrom};
use std::str::FromStr;
use std::sync::Arc;

use bytes::Bytes;
use cid::{Cid, Version};

use crate::cid::{Algorithm, BlockCid, DAG_PB, Digest, FlatCid, IDENTITY, RAW, RootCid, SHA2_256};
use crate::error::{IndexError, StoreError};
use crate::index::{Index, LeafRecord};
use crate::store::{Blob, Store};
use crate::unixfs::{DecodeError, decode_node, decode_unixfs};

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
            Location::Leaf(leaf) => (self.read_leaf(cid, leaf, open)?, "a flat file"),
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

    fn read_leaf(
        &self,
        cid: &Cid,
        leaf: &LeafRecord,
        open: &mut Option<(FlatCid, File)>,
    ) -> Result<Bytes, BlockError> {
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
        let mut data = vec![0u8; len];
        file.seek(SeekFrom::Start(leaf.offset))
            .and_then(|_| file.read_exact(&mut data))
            .map_err(|e| StoreError::io("read a leaf of", blob.path(), e))?;
        Ok(Bytes::from(data))
    }

    /// A depth-first walk of the DAG under `root` limited by `selector`, or `None` when the
    /// root block is not held. The root is read and verified here, so the errors a caller can
    /// still answer with a status (a range outside the file, a root too large for a block) come
    /// before the first block.
    pub fn walk(&self, root: Cid, selector: Selector) -> Result<Option<Walk>, BlockError> {
        let Some(location) = self.locate(&root)? else {
            return Ok(None);
        };
        if location.size() > MAX_BLOCK_SIZE {
            let hint = match &location {
                Location::Flat { root, .. } => {
                    format!(" (a whole artifact: walk its UnixFS DAG under {root} instead)")
                }
                _ => String::new(),
            };
            return Err(BlockErrorKind::TooLarge {
                cid: root,
                size: location.size(),
                hint,
            }
            .into());
        }
        let mut open = None;
        let data = self.read_with(&root, &location, &mut open)?;
        let mut walk = Walk {
            blocks: self.clone(),
            root,
            pending: Some(data.clone()),
            stack: Vec::new(),
            follow: Follow::None,
            range: None,
            dups: selector.dups,
            seen: HashSet::new(),
            open,
            entity_size: None,
            failed: false,
        };
        walk.start(&data, selector)?;
        Ok(Some(walk))
    }
}

/// `dag-scope`: how much of the DAG under the root to walk.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Hash)]
pub enum DagScope {
    /// The root block only.
    Block,
    /// The blocks needed to read the root's entity: for a UnixFS file, the whole file; for
    /// anything else, the root block.
    Entity,
    /// Everything reachable from the root.
    #[default]
    All,
}

impl FromStr for DagScope {
    type Err = String;
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        match s {
            "block" => Ok(DagScope::Block),
            "entity" => Ok(DagScope::Entity),
            "all" => Ok(DagScope::All),
            other => Err(format!(
                "dag-scope={other:?} is not one of block, entity, all"
            )),
        }
    }
}

impl fmt::Display for DagScope {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            DagScope::Block => "block",
            DagScope::Entity => "entity",
            DagScope::All => "all",
        })
    }
}

/// `entity-bytes=from:to`: an inclusive byte range of a file; `to` = `None` is `*` (the end);
/// negative values count from the end.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub struct EntityBytes {
    pub from: i64,
    pub to: Option<i64>,
}

impl FromStr for EntityBytes {
    type Err = String;
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        let bad = || format!("entity-bytes={s:?} is not from:to (integers, or * for to)");
        let (from, to) = s.split_once(':').ok_or_else(bad)?;
        let from = from.parse().map_err(|_| bad())?;
        let to = match to {
            "*" => None,
            to => Some(to.parse().map_err(|_| bad())?),
        };
        Ok(EntityBytes { from, to })
    }
}

impl fmt::Display for EntityBytes {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self.to {
            Some(to) => write!(f, "{}:{to}", self.from),
            None => write!(f, "{}:*", self.from),
        }
    }
}

/// An [`EntityBytes`] applied to an entity of known size.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Resolved {
    /// The inclusive range `[first, last]`, within the entity.
    Range(u64, u64),
    /// No byte at all (`to` before `from`, or an empty entity): only the root is needed.
    Empty,
    /// `from` is at or past the end.
    Outside,
}

impl EntityBytes {
    pub fn resolve(self, size: u64) -> Resolved {
        if size == 0 {
            return Resolved::Empty;
        }
        let from_end = |n: i64| size.checked_sub(n.unsigned_abs());
        let first = match self.from {
            n if n < 0 => from_end(n).unwrap_or(0),
            n => n as u64,
        };
        if first >= size {
            return Resolved::Outside;
        }
        let last = match self.to {
            None => Some(size - 1),
            Some(n) if n < 0 => from_end(n),
            Some(n) => Some((n as u64).min(size - 1)),
        };
        match last {
            Some(last) if last >= first => Resolved::Range(first, last),
            _ => Resolved::Empty,
        }
    }
}

/// What to walk: the gateway's `dag-scope`, `entity-bytes` and `dups`.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Hash)]
pub struct Selector {
    pub scope: DagScope,
    /// Implies [`DagScope::Entity`].
    pub bytes: Option<EntityBytes>,
    /// Yield a block every time the DAG links to it (`dups=y`), not only the first time.
    pub dups: bool,
}

/// Which links a walk follows.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Follow {
    /// None: the root block only.
    None,
    /// Those of UnixFS file nodes.
    File,
    /// All of them.
    All,
}

/// A child to visit, with the offset in the file where its bytes start.
struct Child {
    cid: Cid,
    start: u64,
}

/// Blocks of a DAG in depth-first order. Yields `(cid, verified bytes)`; identity blocks are
/// skipped (their bytes are in their parent), and so are repeats unless `dups` is set. Stops
/// after the first error: a missing or corrupt block ends the walk.
pub struct Walk {
    blocks: Blocks,
    root: Cid,
    /// The root block, until it is yielded.
    pending: Option<Bytes>,
    /// One entry per level below the root: the children still to visit.
    stack: Vec<std::vec::IntoIter<Child>>,
    follow: Follow,
    /// Inclusive file byte range whose blocks are wanted.
    range: Option<(u64, u64)>,
    dups: bool,
    seen: HashSet<Cid>,
    open: Option<(FlatCid, File)>,
    entity_size: Option<u64>,
    failed: bool,
}

impl fmt::Debug for Walk {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Walk")
            .field("root", &self.root)
            .field("depth", &self.stack.len())
            .field("range", &self.range)
            .finish_non_exhaustive()
    }
}

impl Walk {
    pub fn root(&self) -> &Cid {
        &self.root
    }

    /// Bytes of the root's entity when it is a file (a UnixFS file or a raw block).
    pub fn entity_size(&self) -> Option<u64> {
        self.entity_size
    }

    /// Work out from the root block what to follow.
    fn start(&mut self, data: &[u8], selector: Selector) -> Result<(), BlockError> {
        let root = self.root;
        let mut file = false;
        match root.codec() {
            DAG_PB => {
                let node = decode_node(data).map_err(|source| {
                    BlockError::from(BlockErrorKind::Decode { cid: root, source })
                })?;
                if let Some(unixfs) = node.data.and_then(|d| decode_unixfs(d).ok())
                    && unixfs.is_file()
                {
                    file = true;
                    self.entity_size = Some(unixfs.file_size());
                }
            }
            RAW => {
                file = true;
                self.entity_size = Some(data.len() as u64);
            }
            _ => {}
        }
        let scope = if selector.bytes.is_some() {
            DagScope::Entity
        } else {
            selector.scope
        };
        self.follow = match scope {
            DagScope::Block => Follow::None,
            DagScope::Entity if file => Follow::File,
            DagScope::Entity => Follow::None,
            DagScope::All => Follow::All,
        };
        if let (Some(range), Some(size)) = (selector.bytes, self.entity_size) {
            match range.resolve(size) {
                Resolved::Range(first, last) => self.range = Some((first, last)),
                Resolved::Empty => self.follow = Follow::None,
                Resolved::Outside => {
                    return Err(BlockErrorKind::RangeOutside {
                        cid: root,
                        range,
                        size,
                    }
                    .into());
                }
            }
        }
        self.expand(&root, data, 0)
    }

    /// Push the children of the block `cid` (whose file bytes start at `start`) to visit.
    fn expand(&mut self, cid: &Cid, data: &[u8], start: u64) -> Result<(), BlockError> {
        if self.follow == Follow::None || cid.codec() != DAG_PB {
            return Ok(());
        }
        let node = decode_node(data)
            .map_err(|source| BlockError::from(BlockErrorKind::Decode { cid: *cid, source }))?;
        if node.links.is_empty() {
            return Ok(());
        }
        let unixfs = node.data.and_then(|d| decode_unixfs(d).ok());
        let file = unixfs.as_ref().filter(|u| u.is_file());
        if self.follow == Follow::File && file.is_none() {
            return Ok(());
        }
        if self.stack.len() >= MAX_DEPTH {
            return Err(BlockErrorKind::TooDeep { root: self.root }.into());
        }
        // Offsets come from `blocksizes`; without one size per link, nothing can be skipped.
        let sizes = file
            .filter(|u| u.blocksizes.len() == node.links.len())
            .map(|u| (u.data.len() as u64, &u.blocksizes));
        let mut children = Vec::with_capacity(node.links.len());
        match (sizes, self.range) {
            (Some((inline, sizes)), Some((first, last))) => {
                // Saturating: `blocksizes` come from the block (an identity root is the
                // client's), and hostile ones may sum past `u64::MAX`.
                let mut offset = start.saturating_add(inline);
                for (link, &size) in node.links.iter().zip(sizes) {
                    if offset <= last && offset.saturating_add(size) > first {
                        children.push(Child {
                            cid: link.cid,
                            start: offset,
                        });
                    }
                    offset = offset.saturating_add(size);
                }
            }
            _ => children.extend(node.links.iter().map(|link| Child {
                cid: link.cid,
                start,
            })),
        }
        if !children.is_empty() {
            self.stack.push(children.into_iter());
        }
        Ok(())
    }

    fn step(&mut self) -> Result<Option<(Cid, Bytes)>, BlockError> {
        if let Some(data) = self.pending.take()
            && self.root.hash().code() != IDENTITY
        {
            if !self.dups {
                self.seen.insert(self.root);
            }
            return Ok(Some((self.root, data)));
        }
        loop {
            let Some(level) = self.stack.last_mut() else {
                return Ok(None);
            };
            let Some(child) = level.next() else {
                self.stack.pop();
                continue;
            };
            let repeat = !self.dups && self.seen.contains(&child.cid);
            // A repeated node is still descended: this time the range may need other leaves.
            if repeat && child.cid.codec() != DAG_PB {
                continue;
            }
            let location = self
                .blocks
                .locate(&child.cid)?
                .ok_or_else(|| BlockError::from(BlockErrorKind::Missing { cid: child.cid }))?;
            if location.size() > MAX_BLOCK_SIZE {
                return Err(BlockErrorKind::TooLarge {
                    cid: child.cid,
                    size: location.size(),
                    hint: String::new(),
                }
                .into());
            }
            let data = self
                .blocks
                .read_with(&child.cid, &location, &mut self.open)?;
            self.expand(&child.cid, &data, child.start)?;
            if repeat || child.cid.hash().code() == IDENTITY {
                continue;
            }
            if !self.dups {
                self.seen.insert(child.cid);
            }
            return Ok(Some((child.cid, data)));
        }
    }
}

impl Iterator for Walk {
    type Item = Result<(Cid, Bytes), BlockError>;

    fn next(&mut self) -> Option<Self::Item> {
        if self.failed {
            return None;
        }
        let item = self.step();
        self.failed = item.is_err();
        item.transpose()
    }
}

#[cfg(test)]
mod tests;
