//! The swarm as the engine's [`PeerSource`]: artifacts fetched from peers by flat CID,
//! downloads under way offered to peers, metadata shared; and every artifact this node holds
//! announced, those held at start and each one after as the holdings' changes tell it. What it
//! serves peers it reads from this node's [`LocalContent`], never from the engine.
//!
//! Parts:
//! - `resolve.rs`: `/cairn/resolve/1.0.0`, what a peer holds or downloads (its leaves);
//! - `transfer/`: leaves over Bitswap from several peers at once, in file order;
//! - `fetch.rs`: who to ask, and the claim rule of `claims.rs` (one upstream download when
//!   several nodes miss at once; the argument and its limits are written there);
//! - `penalties.rs`: peers that stalled or lied lately, not asked again for a while;
//! - `pending.rs`: leaves of downloads under way, served by Bitswap ([`ContentBlocks`]);
//! - `metadata.rs`: `/cairn/metadata/1.0.0`;
//! - `wire.rs`: the framing of both protocols.
//!
//! Inbound streams of both protocols are served by tasks bounded by [`MAX_SERVING`]; a stream
//! beyond that is closed at once (the asker treats it as a peer that knows nothing).

mod claims;
mod fetch;
mod holds;
mod metadata;
mod penalties;
mod pending;
mod resolve;
mod transfer;
pub mod wire;

use std::collections::HashSet;
use std::sync::Arc;
use std::time::Duration;

use cairn_ipld::cid::{FlatCid, RootCid};
use cairn_peering::{
    HoldingChange, LocalContent, PeerDocument, PeerFetch, PeerSource, PendingLeaves,
};
use cid::Cid;
use futures::StreamExt as _;
use futures::future::BoxFuture;
use libp2p::{PeerId, Stream, StreamProtocol};
use tokio::sync::Semaphore;
use tokio::task::AbortHandle;

pub use holds::{Answer as HoldsAnswer, MAX_FLATS as MAX_HOLDS_FLATS, Request as HoldsRequest};
pub use metadata::{
    Header as MetadataHeader, MAX_BODY as MAX_METADATA_BODY, Request as MetadataRequest,
};
pub use penalties::{LIED, MAX_PENALIZED, STALLED};
pub use pending::{ContentBlocks, PendingMap};
pub use resolve::{Frame as ResolveFrame, Request as ResolveRequest, WireLeaf, parse_leaf};
pub use transfer::{
    AHEAD_LEAVES, FIRST_PROGRESS, HEDGE_AFTER, IDLE, MAX_OUTRUN, MAX_WINDOW, STALL,
};

use crate::metrics::NodeMetrics;
use crate::swarm::{Node, NodeConfig, NodeError};

/// Inbound resolve and metadata streams served at once, each protocol.
pub const MAX_SERVING: usize = 256;
/// Provides of held artifacts in flight at once in [`Peers::announce`].
pub const ANNOUNCE_CONCURRENCY: usize = 16;
/// Held artifacts announced at start (and after missed changes), the most recently used first:
/// a store of a million artifacts must not make every start a storm of DHT queries, nor
/// overflow the DHT's store. Artifacts beyond it are still served to peers that ask this node
/// directly (a miss asks connected peers as well as the DHT's providers), and each new one is
/// announced as it comes.
pub const MAX_ANNOUNCED: usize = 100_000;
/// How long one provide of [`Peers::announce`] or `downloading` may take.
const PROVIDE_TIMEOUT: Duration = Duration::from_secs(60);

/// What this node accepts from peers.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct PeerPolicy {
    /// Accept metadata documents from peers even on an open network (on a private network,
    /// one with a swarm key, they are always accepted).
    pub trust_metadata: bool,
}

/// The engine's [`PeerSource`], over a running [`Node`]. Cheap to clone; the protocol
/// servers stop when the last clone is dropped. It holds this node's [`LocalContent`] and
/// nothing of the engine, so the engine may hold it without a cycle.
#[derive(Clone)]
pub struct Peers {
    inner: Arc<Inner>,
    _tasks: Arc<Tasks>,
}

impl std::fmt::Debug for Peers {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Peers")
            .field("node", &self.inner.node)
            .finish_non_exhaustive()
    }
}

pub(crate) struct Inner {
    node: Node,
    me: PeerId,
    content: Arc<dyn LocalContent>,
    pending: PendingMap,
    policy: PeerPolicy,
    metrics: NodeMetrics,
    claims: Arc<claims::Claims>,
    penalties: Arc<penalties::Penalties>,
}

/// Aborts the accept loops and the announcer on drop.
struct Tasks(std::sync::Mutex<Vec<AbortHandle>>);

impl Tasks {
    fn add(&self, task: AbortHandle) {
        self.0
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
            .push(task);
    }

    fn abort_all(&self) {
        let tasks = self
            .0
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner);
        for task in tasks.iter() {
            task.abort();
        }
    }
}

impl Drop for Tasks {
    fn drop(&mut self) {
        self.abort_all();
    }
}

/// The Bitswap block source of a Cairn node: `content`'s blocks, and the leaves of downloads
/// under way that `pending` lists (give the same `pending` to [`Peers::new`]).
pub fn block_source(content: Arc<dyn LocalContent>, pending: PendingMap) -> Arc<ContentBlocks> {
    Arc::new(ContentBlocks::new(content, pending))
}

impl Peers {
    /// Start a Cairn node serving `content` to peers: the swarm (Bitswap reading `content` and
    /// the downloads under way), the resolve and metadata servers, and the announcement of
    /// every artifact `content` holds. What the engine needs is the result, as its
    /// `Arc<dyn PeerSource>`; [`Peers::node`] is the swarm, to stop at shutdown. Must be called
    /// within a tokio runtime.
    pub async fn start(
        config: NodeConfig,
        content: Arc<dyn LocalContent>,
        policy: PeerPolicy,
        metrics: NodeMetrics,
    ) -> Result<Peers, NodeError> {
        let pending = PendingMap::default();
        let node = Node::start(config, block_source(content.clone(), pending.clone())).await?;
        let peers = Peers::new(node, content, pending, policy, metrics)?;
        peers.announce()?;
        Ok(peers)
    }

    /// Start serving `content`'s artifacts (resolve) and metadata to peers over a running
    /// `node`, and return the source for the engine; [`Peers::start`] does all of it. `pending`
    /// must be the map the node's Bitswap block source reads ([`block_source`]); a test may
    /// give the node another block source. Must be called within a tokio runtime.
    pub fn new(
        node: Node,
        content: Arc<dyn LocalContent>,
        pending: PendingMap,
        policy: PeerPolicy,
        metrics: NodeMetrics,
    ) -> Result<Peers, NodeError> {
        let claims = Arc::new(claims::Claims::default());
        let mut control = node.stream_control();
        let mut accept = |protocol: StreamProtocol| {
            control
                .accept(protocol.clone())
                .map_err(|_| NodeError::Setup {
                    what: "peer protocols",
                    reason: format!("protocol {protocol} is already accepted by another handler"),
                })
        };
        let resolve_streams = accept(resolve::PROTOCOL)?;
        let metadata_streams = accept(metadata::PROTOCOL)?;
        let holds_streams = accept(holds::PROTOCOL)?;
        let server = Arc::new(resolve::Server {
            content: content.clone(),
            claims: claims.clone(),
        });
        let resolve_task = serve_each(resolve_streams, move |peer, stream| {
            resolve::serve(server.clone(), peer, stream)
        });
        let documents = content.clone();
        let metadata_task = serve_each(metadata_streams, move |peer, stream| {
            metadata::serve(documents.clone(), peer, stream)
        });
        let held = content.clone();
        let holds_task = serve_each(holds_streams, move |peer, stream| {
            holds::serve(held.clone(), peer, stream)
        });
        Ok(Peers {
            inner: Arc::new(Inner {
                me: node.peer_id(),
                node,
                content,
                pending,
                policy,
                metrics,
                claims,
                penalties: Arc::default(),
            }),
            _tasks: Arc::new(Tasks(std::sync::Mutex::new(vec![
                resolve_task,
                metadata_task,
                holds_task,
            ]))),
        })
    }

    pub fn node(&self) -> &Node {
        &self.inner.node
    }

    /// The swarm's metrics.
    pub fn metrics(&self) -> &NodeMetrics {
        &self.inner.metrics
    }

    /// Announce every artifact the content holds, then each one it comes to hold (its
    /// [`LocalContent::changes`]: downloads committed, bundles imported, by this process or
    /// another), [`ANNOUNCE_CONCURRENCY`] provides at a time, and stop announcing each one it
    /// drops (evicted), until the last clone of these peers goes. [`Peers::start`] does it;
    /// call it once.
    pub fn announce(&self) -> Result<(), NodeError> {
        // Subscribed before the listing, so that nothing held between the two is missed.
        let changes = self.inner.content.changes().map_err(|e| NodeError::Setup {
            what: "the announcement of held artifacts",
            reason: e.to_string(),
        })?;
        let inner = self.inner.clone();
        let task = tokio::spawn(async move {
            announce_all_held(&inner).await;
            changes
                .for_each_concurrent(ANNOUNCE_CONCURRENCY, |change| {
                    let inner = inner.clone();
                    async move {
                        match change {
                            HoldingChange::Held { flat, root } => {
                                provide_both(&inner.node, flat, root).await
                            }
                            HoldingChange::Dropped { flat, root } => {
                                for cid in [flat.0, root.0] {
                                    if let Err(e) = inner.node.stop_providing(cid).await {
                                        tracing::debug!("{e}");
                                    }
                                }
                            }
                            HoldingChange::Missed { count } => {
                                tracing::info!(
                                    "{count} changes of the holdings missed: announcing all again"
                                );
                                announce_all_held(&inner).await;
                            }
                        }
                    }
                })
                .await;
        });
        self._tasks.add(task.abort_handle());
        Ok(())
    }
}

/// Provide every artifact `inner`'s content lists as held, [`ANNOUNCE_CONCURRENCY`] at a time.
async fn announce_all_held(inner: &Arc<Inner>) {
    let content = inner.content.clone();
    let held =
        match tokio::task::spawn_blocking(move || content.held_artifacts(MAX_ANNOUNCED)).await {
            Ok(Ok(held)) => held,
            Ok(Err(e)) => {
                tracing::warn!("cannot list the held artifacts to announce: {e}");
                return;
            }
            Err(e) => {
                tracing::warn!("listing the held artifacts failed: {e}");
                return;
            }
        };
    let count = held.len();
    futures::stream::iter(held)
        .for_each_concurrent(ANNOUNCE_CONCURRENCY, |(flat, root)| {
            let node = inner.node.clone();
            async move { provide_both(&node, flat, root).await }
        })
        .await;
    tracing::info!("announced {count} held artifacts to the DHT");
}

/// Run `serve` on each inbound stream, at most [`MAX_SERVING`] at once.
fn serve_each<F, Fut>(mut streams: libp2p_stream::IncomingStreams, serve: F) -> AbortHandle
where
    F: Fn(PeerId, Stream) -> Fut + Send + 'static,
    Fut: std::future::Future<Output = ()> + Send + 'static,
{
    let permits = Arc::new(Semaphore::new(MAX_SERVING));
    tokio::spawn(async move {
        while let Some((peer, stream)) = streams.next().await {
            let Ok(permit) = permits.clone().try_acquire_owned() else {
                tracing::debug!(%peer, "too many peer streams: one refused");
                continue;
            };
            let work = serve(peer, stream);
            tokio::spawn(async move {
                work.await;
                drop(permit);
            });
        }
    })
    .abort_handle()
}

/// Provide `cid`, logging a failure.
async fn provide(node: &Node, cid: Cid) {
    match tokio::time::timeout(PROVIDE_TIMEOUT, node.provide(cid)).await {
        Ok(Ok(())) => {}
        Ok(Err(e)) => tracing::debug!("{e}"),
        Err(_) => tracing::debug!(%cid, "provide not done within {PROVIDE_TIMEOUT:?}"),
    }
}

/// Provide a flat CID and a root CID (once when they share a multihash).
async fn provide_both(node: &Node, flat: FlatCid, root: RootCid) {
    if flat.0.hash() == root.0.hash() {
        provide(node, flat.0).await;
    } else {
        futures::join!(provide(node, flat.0), provide(node, root.0));
    }
}

/// Serve the leaves of `pending` as the download hashes them, until it ends.
async fn follow_download(inner: Arc<Inner>, pending: PendingLeaves) {
    let mut progress = pending.progress.clone();
    let committed = loop {
        inner.pending.update(&pending.flat);
        let done = progress.borrow_and_update().done.clone();
        match done {
            Some(result) => break result.is_ok(),
            None => {
                if progress.changed().await.is_err() {
                    // The sender is gone: a last value may hold the end.
                    break matches!(progress.borrow().done, Some(Ok(_)));
                }
            }
        }
    };
    inner.pending.remove_download(&pending.flat, &pending.file);
    inner.claims.ended(&pending.flat, committed);
}

impl PeerSource for Peers {
    fn fetch(&self, flat: FlatCid, size: Option<u64>) -> BoxFuture<'static, Option<PeerFetch>> {
        Box::pin(fetch::fetch(self.inner.clone(), flat, size))
    }

    fn downloading(&self, pending: PendingLeaves) {
        // Registered before resolve can tell a peer of it, so every leaf a peer hears of is
        // found by Bitswap.
        self.inner.pending.register(&pending);
        self.inner.claims.downloading(&pending);
        let node = self.inner.node.clone();
        let flat = pending.flat;
        tokio::spawn(async move { provide(&node, flat.0).await });
        tokio::spawn(follow_download(self.inner.clone(), pending));
    }

    fn metadata(&self, ecosystem: String, key: String) -> BoxFuture<'static, Vec<PeerDocument>> {
        let node = self.inner.node.clone();
        let allowed = self.inner.policy.trust_metadata || node.is_private();
        Box::pin(async move {
            if !allowed {
                return Vec::new();
            }
            metadata::fetch(node, ecosystem, key).await
        })
    }

    fn metadata_refused(&self) -> Option<String> {
        if self.inner.policy.trust_metadata || self.inner.node.is_private() {
            return None;
        }
        Some(
            "this node takes metadata from peers only in a private swarm: give every node the \
             same --swarm-key FILE, or start this one with --trust-peer-metadata"
                .to_owned(),
        )
    }

    fn metadata_holders(&self, ecosystem: String, key: String) -> BoxFuture<'static, usize> {
        let node = self.inner.node.clone();
        Box::pin(metadata::holders(node, ecosystem, key))
    }

    fn shares_holdings(&self) -> bool {
        self.inner.node.is_private()
    }

    fn held_elsewhere(&self, flats: Vec<FlatCid>) -> BoxFuture<'static, HashSet<FlatCid>> {
        let node = self.inner.node.clone();
        Box::pin(async move {
            // Only the nodes of a private swarm are one cache: an open swarm's peers are not
            // this organisation's to count on.
            if !node.is_private() || flats.is_empty() {
                return HashSet::new();
            }
            holds::held_by_peers(node, flats).await
        })
    }

    fn shutdown(&self) {
        self._tasks.abort_all();
        self.inner.node.shutdown();
    }

    fn describe(&self) -> BoxFuture<'static, serde_json::Value> {
        let node = self.inner.node.clone();
        let received = self.inner.metrics.peer_bytes.clone();
        let penalized = self.inner.penalties.current();
        Box::pin(async move {
            let listen: Vec<String> = node
                .p2p_addrs()
                .await
                .unwrap_or_default()
                .iter()
                .map(ToString::to_string)
                .collect();
            let mut peers = node.connected_peers().await.unwrap_or_default();
            peers.sort_by_key(|p| p.rtt.unwrap_or(Duration::MAX));
            let peers: Vec<serde_json::Value> = peers
                .into_iter()
                .map(|p| {
                    let peer = p.peer.to_string();
                    let received = received
                        .get(&crate::metrics::PeerLabels { peer: peer.clone() })
                        .map_or(0, |counter| counter.get());
                    serde_json::json!({
                        "peer": peer,
                        "address": p.address.to_string(),
                        "rtt_ms": p.rtt.map(|rtt| rtt.as_secs_f64() * 1000.0),
                        "bytes_received": received,
                        "bytes_sent": node.bitswap().bytes_sent_to(&p.peer),
                    })
                })
                .collect();
            serde_json::json!({
                "peer_id": node.peer_id().to_string(),
                "listen": listen,
                "private": node.is_private(),
                "peers": peers,
                "penalized": penalized,
            })
        })
    }
}
