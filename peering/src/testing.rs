//! Test helpers for the crates on either side of the contract: [`MemoryContent`], holdings in
//! memory (what a store would answer, with no store), and [`noise`], incompressible test data.

use std::collections::HashMap;
use std::sync::{Arc, Mutex, MutexGuard, PoisonError};

use bytes::Bytes;
use cairn_ipld::cid::{Algorithm, Digest, FlatCid, RootCid, block_matches};
use cairn_ipld::unixfs::DagBuilder;
use cid::Cid;
use futures_util::stream::BoxStream;
use tokio::sync::broadcast;

use crate::{ContentError, HoldingChange, LocalContent, PeerDocument, changes_from};

/// `len` deterministic, incompressible bytes (xorshift64 from `seed`). No 1 MiB chunk repeats
/// another, so every leaf of a generated file is a different block, and gzip leaves it as big.
pub fn noise(len: usize, seed: u64) -> Vec<u8> {
    let mut state = seed | 1;
    let mut out = Vec::with_capacity(len + 8);
    while out.len() < len {
        state ^= state << 13;
        state ^= state >> 7;
        state ^= state << 17;
        out.extend_from_slice(&state.to_le_bytes());
    }
    out.truncate(len);
    out
}

#[derive(Default)]
struct Held {
    artifacts: HashMap<FlatCid, (RootCid, u64)>,
    blocks: HashMap<Cid, Bytes>,
    documents: HashMap<(String, String), PeerDocument>,
}

/// A node's holdings in memory: artifacts (their leaves and inner nodes as blocks, and the
/// whole file under its flat CID) and metadata documents. Blocks are checked against their CID
/// when read, as a store's are; each artifact added is a change to its subscribers, as a
/// store's commit is. Cheap to clone (clones share the holdings).
#[derive(Clone)]
pub struct MemoryContent {
    held: Arc<Mutex<Held>>,
    changes: broadcast::Sender<HoldingChange>,
}

impl Default for MemoryContent {
    fn default() -> Self {
        MemoryContent {
            held: Arc::default(),
            changes: broadcast::channel(1024).0,
        }
    }
}

impl std::fmt::Debug for MemoryContent {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("MemoryContent").finish_non_exhaustive()
    }
}

impl MemoryContent {
    fn lock(&self) -> MutexGuard<'_, Held> {
        self.held.lock().unwrap_or_else(PoisonError::into_inner)
    }

    /// Hold `data` as a committed artifact whose registry digest is its sha512; its flat and
    /// root CIDs.
    pub fn add(&self, data: &[u8]) -> (FlatCid, RootCid) {
        let flat = Digest::of(Algorithm::Sha512, data).flat_cid();
        let mut builder = DagBuilder::new();
        builder.update(data);
        let dag = builder.finish();
        let mut held = self.lock();
        for (cid, node) in dag.nodes {
            held.blocks.insert(cid, Bytes::from(node));
        }
        for leaf in &dag.leaves {
            let range = leaf.offset as usize..(leaf.offset + leaf.len) as usize;
            held.blocks
                .insert(leaf.cid, Bytes::copy_from_slice(&data[range]));
        }
        held.blocks.insert(flat.0, Bytes::copy_from_slice(data));
        held.artifacts.insert(flat, (RootCid(dag.root), dag.size));
        drop(held);
        let _ = self.changes.send(HoldingChange::Held {
            flat,
            root: RootCid(dag.root),
        });
        (flat, RootCid(dag.root))
    }

    /// Hold `data` as block `cid` (checked against `cid` only when read).
    pub fn put_block(&self, cid: Cid, data: Bytes) {
        self.lock().blocks.insert(cid, data);
    }

    /// Lose block `cid`, as a damaged store would.
    pub fn remove_block(&self, cid: &Cid) {
        self.lock().blocks.remove(cid);
    }

    /// Say that artifact `flat` is committed with DAG `root` and `size` bytes, whatever the
    /// blocks held.
    pub fn put_artifact(&self, flat: FlatCid, root: RootCid, size: u64) {
        self.lock().artifacts.insert(flat, (root, size));
        let _ = self.changes.send(HoldingChange::Held { flat, root });
    }

    /// Stop holding artifact `flat` (its blocks stay), as an eviction does.
    pub fn remove_artifact(&self, flat: &FlatCid) {
        let removed = self.lock().artifacts.remove(flat);
        if let Some((root, _)) = removed {
            let _ = self
                .changes
                .send(HoldingChange::Dropped { flat: *flat, root });
        }
    }

    /// Hold `document` as document `key` of `ecosystem`.
    pub fn put_document(&self, ecosystem: &str, key: &str, document: PeerDocument) {
        self.lock()
            .documents
            .insert((ecosystem.to_owned(), key.to_owned()), document);
    }
}

impl LocalContent for MemoryContent {
    fn block(&self, cid: &Cid, max_size: u64) -> Result<Option<Bytes>, ContentError> {
        let Some(data) = self.lock().blocks.get(cid).cloned() else {
            return Ok(None);
        };
        if data.len() as u64 > max_size {
            return Ok(None);
        }
        match block_matches(cid, &data) {
            Some(true) => Ok(Some(data)),
            Some(false) => Err(ContentError(format!(
                "block {cid} in memory does not match its CID"
            ))),
            None => Err(ContentError(format!(
                "block {cid} is of a hash Cairn does not compute"
            ))),
        }
    }

    fn artifact(&self, flat: &FlatCid) -> Result<Option<(RootCid, u64)>, ContentError> {
        Ok(self.lock().artifacts.get(flat).copied())
    }

    fn held_artifacts(&self, limit: usize) -> Result<Vec<(FlatCid, RootCid)>, ContentError> {
        Ok(self
            .lock()
            .artifacts
            .iter()
            .map(|(flat, (root, _))| (*flat, *root))
            .take(limit)
            .collect())
    }

    fn changes(&self) -> Result<BoxStream<'static, HoldingChange>, ContentError> {
        Ok(changes_from(self.changes.subscribe(), Some))
    }

    fn document(&self, ecosystem: &str, key: &str) -> Result<Option<PeerDocument>, ContentError> {
        Ok(self
            .lock()
            .documents
            .get(&(ecosystem.to_owned(), key.to_owned()))
            .cloned())
    }
}
