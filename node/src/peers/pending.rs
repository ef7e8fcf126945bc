//! Leaves of downloads still under way, served to peers before the artifact is committed.
//!
//! [`PendingMap`] maps a leaf CID to its range of a download's temp file. The mirror lists a
//! leaf in [`LeafProgress`] only once its bytes are final, so a range read here never changes;
//! it is still hashed again on every read and checked against the CID, as everything this node
//! serves is. [`ContentBlocks`] is the Bitswap [`BlockSource`] of a Cairn node: pending leaves
//! first, then this node's [`LocalContent`] (the store and index).
//!
//! A download is registered when the mirror starts it ([`PendingMap::register`], before any
//! peer can hear of it through resolve) and its leaves are taken from its progress as they are
//! listed, and again on any miss, so a leaf a peer has been told of is always found here. The
//! download is removed when it ends (committed leaves are then found in the store, failed ones
//! are forgotten), by the task `Peers::downloading` starts.

use std::collections::HashMap;
use std::fs::File;
use std::os::unix::fs::FileExt as _;
use std::sync::{Arc, Mutex};

use bytes::Bytes;
use cairn_ipld::cid::FlatCid;
use cairn_peering::{LeafProgress, LocalContent, PendingLeaves};
use cid::Cid;
use tokio::sync::watch;

use crate::bitswap::BlockSource;

/// A leaf of a download under way: `len` bytes at `offset` of `file`.
#[derive(Clone, Debug)]
struct PendingLeaf {
    flat: FlatCid,
    file: Arc<File>,
    offset: u64,
    len: u64,
}

/// A download under way: its temp file, its progress, and how many of its listed leaves are
/// in the leaf map.
#[derive(Debug)]
struct Download {
    file: Arc<File>,
    progress: watch::Receiver<LeafProgress>,
    taken: usize,
}

#[derive(Debug, Default)]
struct State {
    downloads: HashMap<FlatCid, Download>,
    leaves: HashMap<Cid, PendingLeaf>,
}

impl State {
    /// Put the leaves `flat`'s download has listed since the last call in the leaf map.
    fn take_listed(&mut self, flat: &FlatCid) {
        let Some(download) = self.downloads.get_mut(flat) else {
            return;
        };
        let progress = download.progress.borrow();
        for leaf in progress.leaves.get(download.taken..).unwrap_or_default() {
            self.leaves.entry(leaf.cid).or_insert_with(|| PendingLeaf {
                flat: *flat,
                file: download.file.clone(),
                offset: leaf.offset,
                len: leaf.len,
            });
        }
        download.taken = download.taken.max(progress.leaves.len());
    }
}

/// Leaf CID → range of a download's temp file, shared by [`ContentBlocks`] (which reads it)
/// and `Peers` (which registers and removes downloads). Cheap to clone.
#[derive(Clone, Debug, Default)]
pub struct PendingMap {
    state: Arc<Mutex<State>>,
}

impl PendingMap {
    fn lock(&self) -> std::sync::MutexGuard<'_, State> {
        self.state
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
    }

    /// Serve the leaves of `pending` as its progress lists them.
    pub(crate) fn register(&self, pending: &PendingLeaves) {
        let mut state = self.lock();
        state.downloads.insert(
            pending.flat,
            Download {
                file: pending.file.clone(),
                progress: pending.progress.clone(),
                taken: 0,
            },
        );
        state.take_listed(&pending.flat);
    }

    /// Take the leaves the download of `flat` has listed so far.
    pub(crate) fn update(&self, flat: &FlatCid) {
        self.lock().take_listed(flat);
    }

    /// Stop serving the leaves of the download of `flat` into `file` (not those of a later
    /// download of the same artifact).
    pub(crate) fn remove_download(&self, flat: &FlatCid, file: &Arc<File>) {
        let mut state = self.lock();
        if state
            .downloads
            .get(flat)
            .is_some_and(|d| Arc::ptr_eq(&d.file, file))
        {
            state.downloads.remove(flat);
        }
        state
            .leaves
            .retain(|_, leaf| leaf.flat != *flat || !Arc::ptr_eq(&leaf.file, file));
    }

    /// Leaves of downloads under way, for tests and status.
    pub fn len(&self) -> usize {
        self.lock().leaves.len()
    }

    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    /// Where pending leaf `cid` is, taking what every download has listed when it is not yet
    /// in the leaf map.
    fn find(&self, cid: &Cid) -> Option<PendingLeaf> {
        let mut state = self.lock();
        if let Some(leaf) = state.leaves.get(cid) {
            return Some(leaf.clone());
        }
        let flats: Vec<FlatCid> = state.downloads.keys().copied().collect();
        for flat in &flats {
            state.take_listed(flat);
        }
        state.leaves.get(cid).cloned()
    }

    /// The verified bytes of pending leaf `cid`, `None` when no download under way has it.
    /// Blocking.
    fn read(&self, cid: &Cid) -> Option<Bytes> {
        let leaf = self.find(cid)?;
        if leaf.len > crate::bitswap::message::MAX_BLOCK_SIZE as u64 {
            return None;
        }
        let mut data = cairn_ipld::buffer::zeroed(leaf.len as usize);
        if let Err(e) = leaf.file.read_exact_at(&mut data, leaf.offset) {
            tracing::warn!(%cid, flat = %leaf.flat, "cannot read a pending leaf: {e}");
            return None;
        }
        match cairn_ipld::cid::block_matches(cid, &data) {
            Some(true) => Some(Bytes::from(data)),
            Some(false) => {
                tracing::warn!(
                    "block {cid} read from the download of {} at offset {} does not match its CID",
                    leaf.flat,
                    leaf.offset
                );
                None
            }
            None => {
                tracing::warn!(%cid, "pending leaf of a hash Cairn does not compute");
                None
            }
        }
    }
}

/// The blocks a Cairn node serves over Bitswap: leaves of downloads under way, then every
/// block of this node's content (the store and index).
#[derive(Clone)]
pub struct ContentBlocks {
    content: Arc<dyn LocalContent>,
    pending: PendingMap,
}

impl std::fmt::Debug for ContentBlocks {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("ContentBlocks")
            .field("pending", &self.pending)
            .finish_non_exhaustive()
    }
}

impl ContentBlocks {
    pub fn new(content: Arc<dyn LocalContent>, pending: PendingMap) -> Self {
        ContentBlocks { content, pending }
    }
}

impl BlockSource for ContentBlocks {
    fn get(&self, cid: &Cid) -> Option<Bytes> {
        if let Some(data) = self.pending.read(cid) {
            return Some(data);
        }
        // A flat CID names a whole file: the content checks its size before reading it.
        match self
            .content
            .block(cid, crate::bitswap::message::MAX_BLOCK_SIZE as u64)
        {
            Ok(data) => data,
            Err(e) => {
                tracing::warn!(%cid, "bitswap: cannot read block: {e}");
                None
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use cairn_ipld::cid::{Algorithm, Digest};
    use std::io::Write as _;

    fn download(
        data: &[u8],
    ) -> (
        PendingLeaves,
        watch::Sender<LeafProgress>,
        Vec<cairn_ipld::unixfs::Leaf>,
    ) {
        let mut file = tempfile::tempfile().expect("temp file");
        file.write_all(data).expect("write");
        let mut builder = cairn_ipld::unixfs::DagBuilder::new();
        builder.update(data);
        let leaves = builder.finish().leaves;
        let (tx, rx) = watch::channel(LeafProgress::default());
        let pending = PendingLeaves {
            flat: Digest::of(Algorithm::Sha512, data).flat_cid(),
            file: Arc::new(file),
            progress: rx,
        };
        (pending, tx, leaves)
    }

    #[test]
    fn a_listed_leaf_is_found_before_any_update() {
        let data: Vec<u8> = (0..(3 << 20) + 7).map(|i| (i % 251) as u8).collect();
        let (pending, tx, leaves) = download(&data);
        let map = PendingMap::default();
        map.register(&pending);
        assert!(map.read(&leaves[0].cid).is_none(), "nothing is listed yet");
        tx.send_modify(|p| p.leaves = leaves[..2].to_vec());
        // No `update`: a miss takes what the progress lists.
        let block = map.read(&leaves[1].cid).expect("listed leaf");
        assert_eq!(&block[..], &data[1 << 20..2 << 20]);
        assert!(map.read(&leaves[2].cid).is_none(), "unlisted leaf");
        map.remove_download(&pending.flat, &pending.file);
        assert!(map.read(&leaves[0].cid).is_none(), "removed");
        assert!(map.is_empty());
    }

    #[test]
    fn removing_an_old_download_keeps_a_new_one() {
        let data = vec![7u8; 100];
        let (old, _old_tx, leaves) = download(&data);
        let (new, new_tx, _) = download(&data);
        let map = PendingMap::default();
        map.register(&old);
        map.register(&new);
        new_tx.send_modify(|p| p.leaves = leaves.clone());
        map.remove_download(&old.flat, &old.file);
        assert!(
            map.read(&leaves[0].cid).is_some(),
            "the new download still serves"
        );
    }
}
