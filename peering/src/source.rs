//! What the engine asks of the swarm ([`PeerSource`], implemented by `cairn-node`), and what it
//! tells the swarm about the downloads it runs ([`PendingLeaves`]).
//!
//! The engine never trusts a peer: bytes from peers go through the same writer as bytes from
//! upstream (`cairn-mirror`'s `ArtifactWriter`), so an artifact is committed only when its
//! registry digest matches, and a metadata document from a peer is read by the adapter (apt
//! checks its signature) before it is indexed. The peer side verifies every block against its
//! CID on arrival, which lets it drop a lying peer before the whole file is in.

use std::collections::HashSet;
use std::fs::File;
use std::sync::Arc;

use bytes::Bytes;
use futures_util::future::BoxFuture;
use tokio::sync::{mpsc, watch};

use cairn_ipld::cid::{FlatCid, RootCid};
use cairn_ipld::unixfs::Leaf;

/// A chunk of an artifact fetched from a peer, in file order. The peer source counts the bytes
/// it receives from each peer (`cairn_peer_received_bytes_total`, hedged duplicates included);
/// the engine does not count them again.
#[derive(Clone, Debug)]
pub struct PeerChunk {
    pub data: Bytes,
    /// The peer it came from (its peer ID), for per-peer byte counts.
    pub peer: Arc<str>,
    /// The CID `data` was verified against, when the peer source checked it: the writer then
    /// takes it as the leaf's CID instead of hashing the chunk again, provided the chunk is one
    /// whole 1 MiB leaf at a leaf boundary (see `cairn_ipld::unixfs::DagBuilder::update_leaf`).
    pub leaf: Option<cid::Cid>,
}

/// An artifact being fetched from peers: its bytes in order, then the end of the channel.
/// An `Err` is the transfer's failure (every peer stalled, lied or went away); the mirror then
/// goes on from upstream where the peers left off.
#[derive(Debug)]
pub struct PeerFetch {
    pub chunks: mpsc::Receiver<Result<PeerChunk, String>>,
}

/// How far an upstream download has got, for peers that want it before it is complete: the
/// leaves hashed so far, and how it ended.
#[derive(Clone, Debug, Default)]
pub struct LeafProgress {
    /// Leaves in file order; each is a complete 1 MiB (or last) range of the temp file.
    pub leaves: Vec<Leaf>,
    /// Set when the download has ended: the root and size when it was verified and committed
    /// (with `leaves` then the whole DAG's), `Err` when it failed. A download that fails may
    /// also just drop the sender: a closed channel without `done` is a failure too, and the
    /// leaves are to be forgotten.
    pub done: Option<Result<(RootCid, u64), String>>,
}

/// An upstream download of `flat` under way, offered to peers: leaf `i` is
/// `leaves[i].len` bytes at `leaves[i].offset` of `file`. The bytes of a leaf are final once it
/// is listed. They are not yet verified against the registry digest (peers verify the whole
/// file themselves), only hashed into the leaf's CID.
#[derive(Clone, Debug)]
pub struct PendingLeaves {
    pub flat: FlatCid,
    pub file: Arc<File>,
    pub progress: watch::Receiver<LeafProgress>,
}

/// A metadata document as a peer holds it.
#[derive(Clone, Debug)]
pub struct PeerDocument {
    /// The exact bytes upstream sent the peer.
    pub body: Bytes,
    pub upstream_url: String,
    /// When the peer fetched it (ms since the epoch): the copy's age, whatever its path.
    pub fetched_at: i64,
    pub etag: Option<String>,
    pub last_modified: Option<String>,
    pub peer: Arc<str>,
}

/// What the mirror asks of the swarm. Implemented by `cairn-node`; every method returns
/// quickly or within a bounded time, and `None` means "no peer can help, go upstream".
pub trait PeerSource: Send + Sync + 'static {
    /// Fetch the artifact whose flat CID is `flat` (and whose size is `size`, when the
    /// metadata said) from peers. `None` when no peer holds it or is downloading it, found
    /// within the lookup's deadline: the caller then downloads from upstream and should say so
    /// with [`PeerSource::downloading`], so that peers asking meanwhile wait for this node
    /// instead of asking upstream too.
    fn fetch(&self, flat: FlatCid, size: Option<u64>) -> BoxFuture<'static, Option<PeerFetch>>;

    /// This node is downloading `pending.flat` from upstream: announce it and serve its leaves
    /// to peers as they are hashed, until `progress` says it is done.
    fn downloading(&self, pending: PendingLeaves);

    /// The copies of metadata document `key` of `ecosystem` that trusted peers hold, newest
    /// (`fetched_at`) first, for when upstream cannot be asked. The mirror takes the first its
    /// adapter accepts, so a peer with a bad copy cannot hide a good one. Empty when no peer has
    /// one or peers are not trusted with metadata.
    fn metadata(&self, ecosystem: String, key: String) -> BoxFuture<'static, Vec<PeerDocument>>;

    /// Why this node does not take peers' metadata, in words that say how to change it; `None`
    /// when it takes it (a private swarm, or trust given).
    fn metadata_refused(&self) -> Option<String> {
        None
    }

    /// How many peers hold document `key` of `ecosystem`, asked without taking a copy (within a
    /// bounded time), so that a refusal can say the document was there.
    fn metadata_holders(&self, ecosystem: String, key: String) -> BoxFuture<'static, usize> {
        let _ = (ecosystem, key);
        Box::pin(async { 0 })
    }

    /// Whether this node's peers are one cache with it (a private swarm), so that eviction
    /// asks [`PeerSource::held_elsewhere`] before it chooses.
    fn shares_holdings(&self) -> bool {
        false
    }

    /// Which of `flats` (artifacts this node holds and may evict) other nodes of its private
    /// swarm hold now, asked within a bounded time: eviction lets those go first and keeps
    /// what may be the swarm's last copy. Empty outside a private swarm, or when no peer
    /// answers: every file then counts as a last copy, and eviction is plain LRU.
    fn held_elsewhere(&self, flats: Vec<FlatCid>) -> BoxFuture<'static, HashSet<FlatCid>> {
        let _ = flats;
        Box::pin(async { HashSet::new() })
    }

    /// The node as `/api/v1/peers` shows it (and `cairn peers` prints it):
    /// `{"peer_id": "12D3…", "listen": ["/ip4/…/tcp/…/p2p/12D3…", …], "private": bool,
    ///   "peers": [{"peer": "12D3…", "address": "/ip4/…", "rtt_ms": 0.4}, …]}`.
    fn describe(&self) -> BoxFuture<'static, serde_json::Value>;

    /// Leave the swarm: called once at shutdown, after the downloads have finished and before
    /// the store closes. What this node holds is announced by the swarm itself, from the store's
    /// changes ([`crate::LocalContent::changes`]), not through this trait.
    fn shutdown(&self) {}
}
