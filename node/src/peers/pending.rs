//! Leaves of downloads still under way, served to peers before the artifact is committed.
//!
//! [`PendingMap`] maps a leaf CID to its range of a download's temp file. The mirror lists a
//! leaf in [`cairn_mirror::peers::LeafProgress`] only once its bytes are final, so a range read
//! here never changes; it is still hashed again on every read and checked against the CID, as
//! everything this node serves is. [`MirrorBlocks`] is the Bitswap [`BlockSource`] of a Cairn
//! node: pending leaves first, then the mirror's store and index.
//!
//! Entries are added as the download hashes leaves and removed when it ends (committed leaves
//! are then found in the store, failed ones are forgotten), by the task `Peers::downloading`
//! starts.

use std::collections::HashMap;
use std::fs::File;
use std::os::unix::fs::FileExt as _;
use std::sync::{Arc, Mutex};

use bytes::Bytes;
use cairn_mirror::cid::FlatCid;
use cid::Cid;

use crate::bitswap::BlockSource;

/// A leaf of a download under way: `len` bytes at `offset` of `file`.
#[derive(Clone, Debug)]
struct PendingLeaf {
    flat: FlatCid,
    file: Arc<File>,
    offset: u64,
    len: u64,
}

/// Leaf CID → range of a download's temp file, shared by [`MirrorBlocks`] (which reads it)
/// and `Peers` (which fills and empties it). Cheap to clone.
#[derive(Clone, Debug, Default)]
pub struct PendingMap {
    leaves: Arc<Mutex<HashMap<Cid, PendingLeaf>>>,
}

impl PendingMap {
    fn lock(&self) -> std::sync::MutexGuard<'_, HashMap<Cid, PendingLeaf>> {
        self.leaves
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
    }

    /// Serve `leaf` of the download of `flat` from `file`.
    pub(crate) fn insert(
        &self,
        flat: FlatCid,
        file: &Arc<File>,
        leaf: &cairn_mirror::unixfs::Leaf,
    ) {
        self.lock().entry(leaf.cid).or_insert_with(|| PendingLeaf {
            flat,
            file: file.clone(),
            offset: leaf.offset,
            len: leaf.len,
        });
    }

    /// Stop serving the leaves of the download of `flat`.
    pub(crate) fn remove_download(&self, flat: &FlatCid) {
        self.lock().retain(|_, leaf| leaf.flat != *flat);
    }

    /// Leaves of downloads under way, for tests and status.
    pub fn len(&self) -> usize {
        self.lock().len()
    }

    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    /// The verified bytes of pending leaf `cid`, `None` when no download under way has it.
    /// Blocking.
    fn read(&self, cid: &Cid) -> Option<Bytes> {
        let leaf = self.lock().get(cid).cloned()?;
        if leaf.len > crate::bitswap::message::MAX_BLOCK_SIZE as u64 {
            return None;
        }
        let mut data = vec![0u8; leaf.len as usize];
        if let Err(e) = leaf.file.read_exact_at(&mut data, leaf.offset) {
            tracing::warn!(%cid, flat = %leaf.flat, "cannot read a pending leaf: {e}");
            return None;
        }
        match cairn_mirror::blocks::verify(cid, &data, || {
            format!("the download of {} at offset {}", leaf.flat, leaf.offset)
        }) {
            Ok(()) => Some(Bytes::from(data)),
            Err(e) => {
                tracing::warn!("{e}");
                None
            }
        }
    }
}

/// The blocks a Cairn node serves over Bitswap: leaves of downloads under way, then every
/// block of the mirror's store and index.
#[derive(Clone, Debug)]
pub struct MirrorBlocks {
    blocks: cairn_mirror::blocks::Blocks,
    pending: PendingMap,
}

impl MirrorBlocks {
    pub fn new(blocks: cairn_mirror::blocks::Blocks, pending: PendingMap) -> Self {
        MirrorBlocks { blocks, pending }
    }
}

impl BlockSource for MirrorBlocks {
    fn get(&self, cid: &Cid) -> Option<Bytes> {
        self.pending
            .read(cid)
            .or_else(|| BlockSource::get(&self.blocks, cid))
    }
}
