//! `PeerSource::fetch`: find who can serve an artifact, apply the claim rule (`claims.rs`)
//! when nobody can, and hand the peers that can to the transfer engine (`transfer/`).
//!
//! Candidates are the DHT's providers of the flat CID, found within [`LOOKUP_DEADLINE`], and
//! the directly connected peers (on a LAN they are usually all of them, and a peer that has
//! just started a download may not be in the DHT yet). The connected peers are asked at once,
//! nearest first by ping RTT, while the lookup runs, and the providers it finds are asked as it
//! ends; the first that holds or downloads the artifact starts the transfer and the others
//! join it as they answer. When a connected peer answers before the lookup ends, the lookup
//! goes on and the providers it names still join the transfer: a peer that answers first
//! cannot keep the DHT's providers out, and one that then shows no progress is dropped within
//! [`FIRST_PROGRESS`](super::transfer::FIRST_PROGRESS) while they serve.
//!
//! Peers in the penalty box (`penalties.rs`: they stalled or lied lately) are not asked, and not
//! waited for as claimers.

use std::collections::{HashMap, HashSet};
use std::sync::Arc;
use std::time::Duration;

use cairn_ipld::cid::FlatCid;
use cairn_peering::PeerFetch;
use futures::StreamExt as _;
use futures::future::BoxFuture;
use futures::stream::FuturesUnordered;
use libp2p::PeerId;
use tokio::time::Instant;

use super::Inner;
use super::claims::{Decision, Heard};
use super::penalties::Fault;
use super::resolve::{self, Answer, Frame, ResolveError};
use super::transfer::{self, Asks, More};
use crate::metrics::LookupLabels;

/// How long the DHT is searched for providers.
pub const LOOKUP_DEADLINE: Duration = Duration::from_millis(400);
/// How long a peer has to give its first answer.
pub const RESOLVE_TIMEOUT: Duration = Duration::from_secs(2);
/// How long a claim's provide is awaited.
const PROVIDE_TIMEOUT: Duration = Duration::from_secs(2);
/// How long this node waits for another that claimed the artifact first.
pub const CLAIM_WAIT: Duration = Duration::from_secs(10);
/// How often that node is asked again meanwhile.
const POLL_INTERVAL: Duration = Duration::from_millis(100);

/// The outcome of asking every candidate.
enum Round {
    /// Someone holds or downloads it: the transfer has started.
    Found(PeerFetch),
    /// What each peer that answered said.
    Nobody(Vec<(PeerId, Heard)>),
}

pub(crate) async fn fetch(
    inner: Arc<Inner>,
    flat: FlatCid,
    size: Option<u64>,
) -> Option<PeerFetch> {
    let found = run(&inner, flat, size).await;
    let result = if found.is_some() { "found" } else { "none" };
    inner
        .metrics
        .provider_lookups
        .get_or_create(&LookupLabels { result })
        .inc();
    found
}

async fn run(inner: &Arc<Inner>, flat: FlatCid, size: Option<u64>) -> Option<PeerFetch> {
    let give_up = Instant::now() + CLAIM_WAIT;
    loop {
        let heard = match round(inner, flat, size, false).await {
            Round::Found(fetch) => return Some(fetch),
            Round::Nobody(heard) => heard,
        };
        let decided = heard
            .iter()
            .find(|(_, h)| *h == Heard::Claiming { decided: true })
            .map(|(peer, _)| *peer);
        let target = match decided {
            Some(peer) => peer,
            None => {
                if !inner.claims.claim(flat) {
                    // This node already claims or downloads these bytes (under another key).
                    return None;
                }
                if tokio::time::timeout(PROVIDE_TIMEOUT, inner.node.provide(flat.0))
                    .await
                    .is_err()
                {
                    tracing::debug!(%flat, "claim: provide not done within {PROVIDE_TIMEOUT:?}");
                }
                match round(inner, flat, size, true).await {
                    Round::Found(fetch) => {
                        inner.claims.release(&flat);
                        return Some(fetch);
                    }
                    Round::Nobody(heard) => {
                        match inner.claims.decide(flat, inner.me, &heard, |peer| {
                            inner.penalties.contains(peer)
                        }) {
                            Decision::Upstream => return None,
                            Decision::Defer(peer) => {
                                inner.claims.release(&flat);
                                peer
                            }
                        }
                    }
                }
            }
        };
        tracing::debug!(%flat, %target, "waiting for the peer that claimed the artifact");
        match poll(inner, flat, size, target, give_up).await {
            Some(fetch) => return Some(fetch),
            None if Instant::now() < give_up => continue,
            None => {
                let why = format!("claimed {flat} and started no download within {CLAIM_WAIT:?}");
                inner.penalties.penalize(target, Fault::Stalled, &why);
                break;
            }
        }
    }
    tracing::info!(%flat, "no claimed download started within {CLAIM_WAIT:?}: going upstream");
    inner.claims.mark_decided(flat);
    None
}

/// Ask `target` every [`POLL_INTERVAL`] until it holds or downloads `flat` (then fetch), stops
/// claiming (`None`, start over) or `give_up` passes (`None`).
async fn poll(
    inner: &Arc<Inner>,
    flat: FlatCid,
    size: Option<u64>,
    target: PeerId,
    give_up: Instant,
) -> Option<PeerFetch> {
    while Instant::now() < give_up {
        let control = inner.node.stream_control();
        match resolve::ask(control, target, flat, false, RESOLVE_TIMEOUT).await {
            Ok(answer) => match answer.first {
                Frame::Holding | Frame::Downloading => {
                    return Some(transfer::start(
                        context(inner).await,
                        flat,
                        size,
                        answer,
                        Asks::new(),
                        None,
                    ));
                }
                Frame::Claiming { .. } => {}
                _ => return None,
            },
            Err(e) => {
                tracing::debug!("claim: {e}");
                return None;
            }
        }
        tokio::time::sleep(POLL_INTERVAL).await;
    }
    None
}

async fn context(inner: &Inner) -> transfer::Context {
    transfer::Context {
        node: inner.node.clone(),
        metrics: inner.metrics.clone(),
        rtts: rtts(inner).await,
        penalties: inner.penalties.clone(),
    }
}

async fn rtts(inner: &Inner) -> HashMap<PeerId, Duration> {
    inner
        .node
        .connected_peers()
        .await
        .unwrap_or_default()
        .into_iter()
        .filter_map(|p| Some((p.peer, p.rtt?)))
        .collect()
}

/// The DHT's providers of `flat`, found within [`LOOKUP_DEADLINE`].
async fn providers(inner: Arc<Inner>, flat: FlatCid) -> Vec<PeerId> {
    let started = Instant::now();
    let peers = inner
        .node
        .find_providers(flat.0, started + LOOKUP_DEADLINE)
        .await
        .unwrap_or_default();
    inner
        .metrics
        .provider_lookup_seconds
        .observe(started.elapsed().as_secs_f64());
    peers
}

/// The connected peers, nearest first.
async fn connected(inner: &Inner, rtts: &HashMap<PeerId, Duration>) -> Vec<PeerId> {
    let mut peers: Vec<PeerId> = rtts.keys().copied().collect();
    if let Ok(connected) = inner.node.connected_peers().await {
        for info in connected {
            if !peers.contains(&info.peer) {
                peers.push(info.peer);
            }
        }
    }
    peers.sort_by_key(|p| rtts.get(p).copied().unwrap_or(Duration::MAX));
    peers
}

/// Ask `peer` about `flat`.
fn ask(
    inner: &Inner,
    peer: PeerId,
    flat: FlatCid,
    claiming: bool,
) -> BoxFuture<'static, Result<Answer, ResolveError>> {
    Box::pin(resolve::ask(
        inner.node.stream_control(),
        peer,
        flat,
        claiming,
        RESOLVE_TIMEOUT,
    ))
}

/// Ask every candidate about `flat` (the connected peers at once, the DHT's providers as the
/// lookup finds them), except those in the penalty box; start the transfer on the first that
/// can serve it. "Nobody" is only answered once the lookup has ended and every peer asked has
/// answered. A transfer that starts before the lookup ends takes the providers it finds too.
async fn round(inner: &Arc<Inner>, flat: FlatCid, size: Option<u64>, claiming: bool) -> Round {
    let rtts = rtts(inner).await;
    let mut asked = HashSet::new();
    asked.insert(inner.me);
    let mut asks: Asks = FuturesUnordered::new();
    for peer in connected(inner, &rtts).await {
        if !inner.penalties.contains(&peer) && asked.insert(peer) {
            asks.push(ask(inner, peer, flat, claiming));
        }
    }
    let mut lookup = Some(Box::pin(providers(inner.clone(), flat)));
    let mut heard = Vec::new();
    loop {
        let answer = tokio::select! {
            found = async {
                match lookup.as_mut() {
                    Some(lookup) => lookup.await,
                    None => std::future::pending().await,
                }
            }, if lookup.is_some() => {
                lookup = None;
                for peer in found {
                    if !inner.penalties.contains(&peer) && asked.insert(peer) {
                        asks.push(ask(inner, peer, flat, claiming));
                    }
                }
                continue;
            }
            Some(answer) = asks.next(), if !asks.is_empty() => answer,
            else => break,
        };
        let answer: Answer = match answer {
            Ok(answer) => answer,
            Err(e) => {
                tracing::debug!("{e}");
                continue;
            }
        };
        match answer.first {
            Frame::Holding | Frame::Downloading => {
                let context = transfer::Context {
                    node: inner.node.clone(),
                    metrics: inner.metrics.clone(),
                    rtts,
                    penalties: inner.penalties.clone(),
                };
                let more = lookup.map(|lookup| -> More {
                    let inner = inner.clone();
                    Box::pin(async move {
                        lookup
                            .await
                            .into_iter()
                            .filter(|peer| !inner.penalties.contains(peer) && !asked.contains(peer))
                            .map(|peer| ask(&inner, peer, flat, claiming))
                            .collect()
                    })
                });
                return Round::Found(transfer::start(context, flat, size, answer, asks, more));
            }
            Frame::Claiming { decided } => heard.push((answer.peer, Heard::Claiming { decided })),
            _ => heard.push((answer.peer, Heard::None)),
        }
    }
    Round::Nobody(heard)
}
