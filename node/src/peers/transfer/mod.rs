//! The transfer engine: one artifact fetched leaf by leaf over Bitswap from every peer that can
//! serve it, written to the mirror in file order.
//!
//! - Plan: the leaves come from the peers' resolve streams (a downloading peer lists more as
//!   it hashes them). Every peer must list the same leaves at the same positions, contiguous
//!   ranges of at most 1 MiB; a peer that disagrees is dropped.
//! - Scheduling: leaves not yet asked for wait in one queue, lowest index first. Each peer has
//!   an in-flight window proportional to `best_rtt / rtt` ([`MAX_WINDOW`] for the nearest, at
//!   least 1), filled nearest peer first, so most bytes come from the nearest peer while the
//!   others keep a block each in flight. Nothing is asked more than [`AHEAD_LEAVES`] leaves
//!   past the first leaf not yet written, which bounds the reorder buffer.
//! - Hedging: a peer with room in its window and nothing left in the queue also asks for the
//!   lowest leaf another peer has had in flight for more than [`HEDGE_AFTER`]; the first
//!   answer is kept and the other request withdrawn. A slow or stalling peer then delays the
//!   transfer by about that much, not by [`STALL`]; a peer outrun so [`MAX_OUTRUN`] times is
//!   dropped as stalling.
//! - Failures: a block that does not hash to its CID (`BadBlock`, counted in `bad_blocks`), a
//!   block not received within [`STALL`], a DONT_HAVE, a broken or inconsistent resolve stream:
//!   the peer is dropped for this transfer and its leaves go back to the queue. With no peer
//!   left, or no progress for [`IDLE`], the transfer sends `Err(reason)` and stops, and the
//!   mirror continues from upstream.
//! - First progress: a peer that said it holds or downloads the artifact must list a leaf
//!   within [`FIRST_PROGRESS`] of its answer, and send its first block within that long of the
//!   first request to it; otherwise it is dropped. So a peer that claims a download and then
//!   sends nothing costs a miss seconds, not [`IDLE`].
//! - Peers dropped for a lie (wrong bytes, a contradicting plan, DONT_HAVE for a leaf they
//!   listed) or a stall go to the penalty box (`penalties.rs`), and the next fetches do not ask
//!   them for a while. A peer whose download failed, whose stream closed, or that was outrun by
//!   hedges is only dropped.
//! - Providers that the DHT lookup finds after the transfer started still join it (`more`), so
//!   a connected peer that answers first cannot keep them out.
//! - The engine ends when the reader of the chunks goes away.
//!
//! Files: this one holds the engine's state, its loop, dropping a peer and writing the leaves
//! in file order; `plan.rs` takes peers in and checks the leaves they list (and their first
//! progress); `schedule.rs` fills the windows, hedges, and takes the blocks that come back.

mod plan;
mod schedule;

use std::collections::{BTreeMap, BTreeSet, HashMap, HashSet};
use std::sync::Arc;
use std::time::Duration;

use bytes::Bytes;
use cairn_ipld::cid::FlatCid;
use cairn_ipld::unixfs::Leaf;
use cairn_peering::{PeerChunk, PeerFetch};
use futures::StreamExt as _;
use futures::future::{AbortHandle, BoxFuture};
use futures::stream::FuturesUnordered;
use libp2p::PeerId;
use tokio::sync::mpsc;
use tokio::task::JoinSet;
use tokio::time::Instant;

use super::penalties::{Fault, Penalties};
use super::resolve::{Answer, Frame, ResolveError};
use crate::bitswap::FetchError;
use crate::metrics::NodeMetrics;
use crate::swarm::Node;

/// In-flight blocks for the nearest peer.
pub const MAX_WINDOW: usize = 16;
/// Leaves asked for at most past the first one not yet written (64 MiB of 1 MiB leaves).
pub const AHEAD_LEAVES: usize = 64;
/// A peer that sends no block within this long after it was asked is dropped. Generous: a node
/// downloading a large file from upstream while serving it to several peers on two cores can
/// take seconds per block (the 8-node stampede of `bench/p2p.sh` dropped its only source at
/// 8 s and went upstream a second time); a slow peer among several is hedged long before.
pub const STALL: Duration = Duration::from_secs(20);
/// The transfer fails when nothing arrives for this long (no leaf listed, no block).
pub const IDLE: Duration = Duration::from_secs(30);
/// A peer that answered `holding` or `downloading` must list its first leaf within this long,
/// and send its first block within this long of being asked for one. A peer holding the file
/// lists every leaf at once and serves a block in milliseconds; a peer downloading it lists the
/// first leaf once its upstream has sent 1 MiB (or the whole of a smaller file). Five seconds
/// is far above either on a working network, and well below the 15 s a package manager waits
/// for a response (pip's default): a peer that claims and then sends nothing must cost a miss
/// only this much. An honest peer with an upstream slower than that is given up on too, and
/// this node then downloads from upstream itself.
pub const FIRST_PROGRESS: Duration = Duration::from_secs(5);
/// A leaf in flight this long at one peer is asked of an idle one too.
pub const HEDGE_AFTER: Duration = Duration::from_millis(750);
/// A peer whose request was outrun by a hedge this many times is dropped.
pub const MAX_OUTRUN: u32 = 2;
/// How often the engine looks for leaves to hedge while nothing else happens.
const HEDGE_TICK: Duration = Duration::from_millis(100);
/// Chunks queued for the mirror.
const CHUNK_QUEUE: usize = 8;
/// Resolve frames queued from all peers.
const EVENT_QUEUE: usize = 64;
/// RTTs below this are noise: they count as this much when windows are worked out.
const RTT_FLOOR: Duration = Duration::from_millis(1);

/// Answers still to come from peers asked about the artifact: late joiners.
pub(crate) type Asks = FuturesUnordered<BoxFuture<'static, Result<Answer, ResolveError>>>;

/// More peers to ask, once the DHT lookup still running when the transfer started ends.
pub(crate) type More = BoxFuture<'static, Vec<BoxFuture<'static, Result<Answer, ResolveError>>>>;

/// What the transfer needs of the node.
#[derive(Clone)]
pub(crate) struct Context {
    pub node: Node,
    pub metrics: NodeMetrics,
    /// Ping RTTs of the connected peers when the fetch began.
    pub rtts: HashMap<PeerId, Duration>,
    /// Where peers that stalled or lied are remembered.
    pub penalties: Arc<Penalties>,
}

/// Start fetching `flat` from `first` (which holds or downloads it) and whoever in `rest`
/// (or in `more`, once it is ready) answers so too.
pub(crate) fn start(
    context: Context,
    flat: FlatCid,
    size: Option<u64>,
    first: Answer,
    rest: Asks,
    more: Option<More>,
) -> PeerFetch {
    let (chunks, receiver) = mpsc::channel(CHUNK_QUEUE);
    let engine = Engine {
        context,
        flat,
        size,
        chunks,
        peers: HashMap::new(),
        dropped: Vec::new(),
        leaves: Vec::new(),
        total: None,
        queue: BTreeSet::new(),
        buffer: BTreeMap::new(),
        next: 0,
        readers: JoinSet::new(),
        inflight: FuturesUnordered::new(),
        hedged: HashSet::new(),
    };
    tokio::spawn(engine.run(first, rest, more));
    PeerFetch { chunks: receiver }
}

enum Event {
    Frame(Frame),
    End(Result<(), String>),
}

struct Peer {
    label: Arc<str>,
    rtt: Duration,
    /// Leaves this peer can serve: the first `available` of the plan.
    available: usize,
    /// Leaves it listed, to check against the plan.
    listed: usize,
    done: bool,
    inflight: Vec<Inflight>,
    /// Requests of this peer a hedge answered first.
    outrun: u32,
    /// When it joined the transfer.
    joined: Instant,
    /// Whether it has sent a block yet.
    delivered: bool,
}

/// One block asked of a peer.
struct Inflight {
    index: usize,
    handle: AbortHandle,
    since: Instant,
}

type BlockResult = (
    PeerId,
    usize,
    Result<Result<Bytes, FetchError>, futures::future::Aborted>,
);

struct Engine {
    context: Context,
    flat: FlatCid,
    size: Option<u64>,
    chunks: mpsc::Sender<Result<PeerChunk, String>>,
    peers: HashMap<PeerId, Peer>,
    /// Why peers were dropped, for the error when none is left.
    dropped: Vec<String>,
    leaves: Vec<Leaf>,
    total: Option<usize>,
    queue: BTreeSet<usize>,
    buffer: BTreeMap<usize, (Bytes, Arc<str>)>,
    next: usize,
    readers: JoinSet<()>,
    inflight: FuturesUnordered<BoxFuture<'static, BlockResult>>,
    /// Leaves asked of a second peer.
    hedged: HashSet<usize>,
}

impl Engine {
    async fn run(mut self, first: Answer, mut rest: Asks, mut more: Option<More>) {
        let (events_sender, mut events) = mpsc::channel(EVENT_QUEUE);
        self.join(first, &events_sender);
        let mut last_progress = Instant::now();
        let mut tick = tokio::time::interval(HEDGE_TICK);
        tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        let outcome = loop {
            if self.total == Some(self.next) {
                break Ok(());
            }
            self.drop_silent();
            if self.peers.is_empty() && rest.is_empty() && more.is_none() {
                break Err(format!(
                    "no peer can finish {}: {}",
                    self.flat,
                    self.dropped.join("; ")
                ));
            }
            self.schedule();
            let check = self.next_progress_check();
            tokio::select! {
                Some((peer, index, result)) = self.inflight.next(), if !self.inflight.is_empty() => {
                    if self.on_block(peer, index, result) {
                        last_progress = Instant::now();
                    }
                }
                Some((peer, event)) = events.recv() => {
                    if self.on_event(peer, event) {
                        last_progress = Instant::now();
                    }
                }
                Some(answer) = rest.next(), if !rest.is_empty() => {
                    if let Ok(answer) = answer
                        && matches!(answer.first, Frame::Holding | Frame::Downloading)
                    {
                        self.join(answer, &events_sender);
                    }
                }
                asks = async {
                    match more.as_mut() {
                        Some(lookup) => lookup.await,
                        None => std::future::pending().await,
                    }
                }, if more.is_some() => {
                    more = None;
                    rest.extend(asks);
                }
                () = tokio::time::sleep_until(check.unwrap_or(last_progress + IDLE)), if check.is_some() => {}
                () = tokio::time::sleep_until(last_progress + IDLE) => {
                    break Err(format!("no progress fetching {} from peers for {IDLE:?}", self.flat));
                }
                _ = tick.tick(), if !self.inflight.is_empty() => {}
                () = self.chunks.closed() => return,
            }
            if let Err(()) = self.emit().await {
                return;
            }
        };
        for peer in self.peers.values() {
            for request in &peer.inflight {
                request.handle.abort();
            }
        }
        if let Err(reason) = outcome {
            tracing::info!(flat = %self.flat, "peer transfer failed: {reason}");
            let _ = self.chunks.send(Err(reason)).await;
        }
    }

    /// Drop `peer` for this transfer: its leaves in flight go back to the queue. With a
    /// `fault`, it goes to the penalty box too.
    fn drop_peer(&mut self, peer: PeerId, reason: String, fault: Option<Fault>) {
        let Some(state) = self.peers.remove(&peer) else {
            return;
        };
        tracing::info!(%peer, flat = %self.flat, "peer dropped from transfer: {reason}");
        if let Some(fault) = fault {
            self.context.penalties.penalize(peer, fault, &reason);
        }
        for request in state.inflight {
            request.handle.abort();
            self.requeue(request.index);
        }
        self.dropped.push(reason);
    }

    /// Write the leaves that are next in file order. `Err` when the reader went away.
    async fn emit(&mut self) -> Result<(), ()> {
        while let Some((data, peer)) = self.buffer.remove(&self.next) {
            // Bitswap checked `data` against this CID, so the mirror need not hash it again.
            let leaf = Some(self.leaves[self.next].cid);
            self.chunks
                .send(Ok(PeerChunk { data, peer, leaf }))
                .await
                .map_err(|_| ())?;
            self.next += 1;
        }
        Ok(())
    }
}
