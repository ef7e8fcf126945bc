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

use std::collections::{BTreeMap, BTreeSet, HashMap, HashSet};
use std::sync::Arc;
use std::time::Duration;

use bytes::Bytes;
use cairn_ipld::cid::FlatCid;
use cairn_ipld::unixfs::Leaf;
use cairn_peering::{PeerChunk, PeerFetch};
use futures::StreamExt as _;
use futures::future::{AbortHandle, Abortable, BoxFuture};
use futures::stream::FuturesUnordered;
use libp2p::PeerId;
use tokio::sync::mpsc;
use tokio::task::JoinSet;
use tokio::time::Instant;

use super::penalties::{Fault, Penalties};
use super::resolve::{self, Answer, Frame, ResolveError};
use crate::bitswap::FetchError;
use crate::metrics::{NodeMetrics, PeerLabels};
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

    /// Take `answer`'s peer into the transfer and read its further frames.
    fn join(&mut self, answer: Answer, events: &mpsc::Sender<(PeerId, Event)>) {
        let Answer {
            peer,
            mut stream,
            elapsed,
            ..
        } = answer;
        if self.peers.contains_key(&peer) {
            return;
        }
        let rtt = self.context.rtts.get(&peer).copied().unwrap_or(elapsed);
        self.peers.insert(
            peer,
            Peer {
                label: Arc::from(peer.to_string()),
                rtt,
                available: 0,
                listed: 0,
                done: false,
                inflight: Vec::new(),
                outrun: 0,
                joined: Instant::now(),
                delivered: false,
            },
        );
        let events = events.clone();
        self.readers.spawn(async move {
            loop {
                let event = match resolve::next_frame(&mut stream).await {
                    Ok(Some(frame)) => Event::Frame(frame),
                    Ok(None) => Event::End(Ok(())),
                    Err(e) => Event::End(Err(e.to_string())),
                };
                let end = matches!(event, Event::End(_));
                if events.send((peer, event)).await.is_err() || end {
                    break;
                }
            }
        });
    }

    /// When the next peer runs out of [`FIRST_PROGRESS`], if any peer still owes it.
    fn next_progress_check(&self) -> Option<Instant> {
        self.peers.values().filter_map(Self::progress_due).min()
    }

    /// When `peer` must have shown progress by: its first leaf listed, its first block sent.
    fn progress_due(peer: &Peer) -> Option<Instant> {
        if peer.listed == 0 {
            return Some(peer.joined + FIRST_PROGRESS);
        }
        if peer.delivered {
            return None;
        }
        let asked = peer.inflight.iter().map(|r| r.since).min()?;
        Some(asked + FIRST_PROGRESS)
    }

    /// Drop (and penalize) the peers that owe progress past [`FIRST_PROGRESS`].
    fn drop_silent(&mut self) {
        let now = Instant::now();
        let silent: Vec<(PeerId, bool)> = self
            .peers
            .iter()
            .filter(|(_, p)| Self::progress_due(p).is_some_and(|due| due <= now))
            .map(|(id, p)| (*id, p.listed == 0))
            .collect();
        for (peer, no_leaf) in silent {
            let what = if no_leaf {
                "listed no leaf"
            } else {
                "sent no block"
            };
            let reason = format!("{peer} {what} of {} within {FIRST_PROGRESS:?}", self.flat);
            self.drop_peer(peer, reason, Some(Fault::Stalled));
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

    /// Put leaf `index` back in the queue unless it is written, buffered or in flight at a
    /// peer.
    fn requeue(&mut self, index: usize) {
        let elsewhere = self
            .peers
            .values()
            .any(|p| p.inflight.iter().any(|r| r.index == index));
        if index >= self.next && !self.buffer.contains_key(&index) && !elsewhere {
            self.queue.insert(index);
        }
    }

    /// Ask `peer` for leaf `index`.
    fn request(&mut self, peer: PeerId, index: usize) {
        let Some(state) = self.peers.get_mut(&peer) else {
            return;
        };
        let (handle, registration) = AbortHandle::new_pair();
        state.inflight.push(Inflight {
            index,
            handle,
            since: Instant::now(),
        });
        let node = self.context.node.clone();
        let cid = self.leaves[index].cid;
        let get = Abortable::new(
            async move { node.get_block(peer, cid, STALL).await },
            registration,
        );
        self.inflight
            .push(Box::pin(async move { (peer, index, get.await) }));
    }

    /// A resolve frame from `peer`; true when it moved the transfer on.
    fn on_event(&mut self, peer: PeerId, event: Event) -> bool {
        let Some(state) = self.peers.get(&peer) else {
            return false;
        };
        let done = state.done;
        match event {
            Event::Frame(Frame::Leaves { leaves }) => match self.on_leaves(peer, &leaves) {
                Ok(()) => true,
                Err(reason) => {
                    self.drop_peer(
                        peer,
                        format!("{peer} listed leaves of {}: {reason}", self.flat),
                        Some(Fault::Lied),
                    );
                    false
                }
            },
            Event::Frame(Frame::Done { size, .. }) => match self.on_done(peer, size) {
                Ok(()) => true,
                Err(reason) => {
                    let reason = format!("{peer} finished {}: {reason}", self.flat);
                    self.drop_peer(peer, reason, Some(Fault::Lied));
                    false
                }
            },
            Event::Frame(Frame::Failed { reason }) => {
                self.drop_peer(
                    peer,
                    format!("{peer}'s download of {} failed: {reason}", self.flat),
                    None,
                );
                false
            }
            Event::Frame(other) => {
                self.drop_peer(
                    peer,
                    format!("{peer} sent {other:?} inside a resolve answer"),
                    Some(Fault::Lied),
                );
                false
            }
            Event::End(_) if done => false,
            Event::End(result) => {
                let why = result.err().unwrap_or_else(|| "stream closed".into());
                self.drop_peer(
                    peer,
                    format!("{peer}'s resolve stream for {} ended: {why}", self.flat),
                    None,
                );
                false
            }
        }
    }

    fn on_leaves(&mut self, peer: PeerId, leaves: &[resolve::WireLeaf]) -> Result<(), String> {
        for wire in leaves {
            let leaf = resolve::parse_leaf(wire)?;
            let Some(state) = self.peers.get_mut(&peer) else {
                return Ok(());
            };
            let position = state.listed;
            match self.leaves.get(position) {
                Some(known) if *known == leaf => {}
                Some(known) => {
                    return Err(format!(
                        "leaf {position} is {leaf:?}, others listed {known:?}"
                    ));
                }
                None => {
                    let end = self.leaves.last().map_or(0, |l| l.offset + l.len);
                    if leaf.offset != end || (leaf.len == 0 && position > 0) {
                        return Err(format!(
                            "leaf {position} {leaf:?} does not follow offset {end}"
                        ));
                    }
                    if self.size.is_some_and(|size| end + leaf.len > size) {
                        return Err(format!(
                            "leaf {position} runs past the size {:?}",
                            self.size
                        ));
                    }
                    if self.total.is_some() {
                        return Err("more leaves than the finished plan".into());
                    }
                    self.leaves.push(leaf);
                    self.queue.insert(position);
                }
            }
            state.listed += 1;
            state.available = state.listed;
        }
        Ok(())
    }

    fn on_done(&mut self, peer: PeerId, size: u64) -> Result<(), String> {
        let Some(state) = self.peers.get_mut(&peer) else {
            return Ok(());
        };
        let listed = state.listed;
        let end = self
            .leaves
            .get(..listed)
            .and_then(|l| l.last())
            .map_or(0, |l| l.offset + l.len);
        if end != size || self.size.is_some_and(|expected| expected != size) {
            return Err(format!(
                "its leaves end at {end}, it says {size}, expected {:?}",
                self.size
            ));
        }
        if listed == 0 || self.total.is_some_and(|total| total != listed) {
            return Err(format!("{listed} leaves, others listed {:?}", self.total));
        }
        state.done = true;
        self.total = Some(listed);
        Ok(())
    }

    /// Window of a peer `rtt` away when the nearest is `best` away.
    fn window(best: Duration, rtt: Duration) -> usize {
        let best = best.max(RTT_FLOOR).as_secs_f64();
        let rtt = rtt.max(RTT_FLOOR).as_secs_f64();
        ((MAX_WINDOW as f64 * best / rtt).round() as usize).clamp(1, MAX_WINDOW)
    }

    /// Fill each peer's window from the queue, nearest peer first.
    fn schedule(&mut self) {
        let Some(best) = self.peers.values().map(|p| p.rtt).min() else {
            return;
        };
        let mut order: Vec<(Duration, PeerId)> =
            self.peers.iter().map(|(id, p)| (p.rtt, *id)).collect();
        order.sort();
        let limit = self.next + AHEAD_LEAVES;
        for (rtt, peer) in order {
            let window = Self::window(best, rtt);
            let Some(state) = self.peers.get_mut(&peer) else {
                continue;
            };
            let mut room = window.saturating_sub(state.inflight.len());
            let bound = state.available.min(limit);
            while room > 0 {
                let Some(index) = self.queue.range(..bound).next().copied() else {
                    break;
                };
                self.queue.remove(&index);
                self.request(peer, index);
                room -= 1;
            }
            if room > 0 && self.queue.range(..bound).next().is_none() {
                self.hedge(peer, bound);
            }
        }
    }

    /// Ask `peer`, which has room and nothing queued it can serve, for the lowest leaf below
    /// `bound` in flight elsewhere for more than [`HEDGE_AFTER`].
    fn hedge(&mut self, peer: PeerId, bound: usize) {
        let now = Instant::now();
        let slow = self
            .peers
            .iter()
            .filter(|(id, _)| **id != peer)
            .flat_map(|(_, p)| p.inflight.iter())
            .filter(|r| {
                r.index < bound
                    && !self.hedged.contains(&r.index)
                    && now.duration_since(r.since) > HEDGE_AFTER
            })
            .map(|r| r.index)
            .min();
        if let Some(index) = slow {
            self.hedged.insert(index);
            self.request(peer, index);
        }
    }

    /// A block from `peer`; true when it moved the transfer on.
    fn on_block(
        &mut self,
        peer: PeerId,
        index: usize,
        result: Result<Result<Bytes, FetchError>, futures::future::Aborted>,
    ) -> bool {
        let Ok(result) = result else {
            return false;
        };
        if let Some(state) = self.peers.get_mut(&peer) {
            state.inflight.retain(|r| r.index != index);
        }
        if result.is_err() {
            // Asked again of another peer; a duplicate answer is ignored.
            self.requeue(index);
        }
        match result {
            Ok(data) if data.len() as u64 == self.leaves[index].len => {
                let label = match self.peers.get_mut(&peer) {
                    Some(state) => {
                        state.delivered = true;
                        state.label.clone()
                    }
                    None => Arc::from(peer.to_string()),
                };
                self.context
                    .metrics
                    .peer_bytes
                    .get_or_create(&PeerLabels {
                        peer: label.to_string(),
                    })
                    .inc_by(data.len() as u64);
                // A hedged leaf's other request is withdrawn; a peer outrun too often goes.
                let mut stalling = Vec::new();
                for (id, state) in &mut self.peers {
                    let before = state.inflight.len();
                    state.inflight.retain(|r| {
                        let same = r.index == index;
                        if same {
                            r.handle.abort();
                        }
                        !same
                    });
                    if state.inflight.len() < before {
                        state.outrun += 1;
                        if state.outrun >= MAX_OUTRUN {
                            stalling.push(*id);
                        }
                    }
                }
                for id in stalling {
                    let reason =
                        format!("{id} was outrun {MAX_OUTRUN} times fetching {}", self.flat);
                    self.drop_peer(id, reason, None);
                }
                if index >= self.next && !self.buffer.contains_key(&index) {
                    self.buffer.insert(index, (data, label));
                    return true;
                }
                false
            }
            Ok(data) => {
                self.requeue(index);
                let reason = format!(
                    "{peer} sent {} bytes for leaf {index} of {}",
                    data.len(),
                    self.flat
                );
                self.drop_peer(peer, reason, Some(Fault::Lied));
                false
            }
            Err(error) => {
                if let FetchError::BadBlock { .. } = error {
                    self.context
                        .metrics
                        .bad_blocks
                        .get_or_create(&PeerLabels {
                            peer: peer.to_string(),
                        })
                        .inc();
                }
                let fault = match error {
                    FetchError::BadBlock { .. } | FetchError::BadNode { .. } => Some(Fault::Lied),
                    // DONT_HAVE for a leaf it listed: a lie, or a download that just failed
                    // there (its `failed` frame may come after); kept out as briefly as a stall.
                    FetchError::NotFound { .. } | FetchError::Timeout { .. } => {
                        Some(Fault::Stalled)
                    }
                    FetchError::Unreachable { .. }
                    | FetchError::UnsupportedHash { .. }
                    | FetchError::Shutdown { .. } => None,
                };
                self.drop_peer(peer, error.to_string(), fault);
                false
            }
        }
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

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn windows_follow_rtt() {
        let ms = Duration::from_millis;
        assert_eq!(Engine::window(ms(1), ms(1)), MAX_WINDOW);
        assert_eq!(
            Engine::window(Duration::from_micros(200), Duration::from_micros(300)),
            MAX_WINDOW
        );
        assert_eq!(Engine::window(ms(1), ms(51)), 1);
        assert_eq!(Engine::window(ms(10), ms(20)), MAX_WINDOW / 2);
    }
}
