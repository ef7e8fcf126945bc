//! The plan of a transfer: peers join with their resolve streams, the leaves they list are
//! checked against each other's (same leaves at the same positions, contiguous, within the
//! size), and a peer that shows no progress within [`FIRST_PROGRESS`] is dropped.

use std::sync::Arc;

use libp2p::PeerId;
use tokio::sync::mpsc;
use tokio::time::Instant;

use super::{Engine, Event, FIRST_PROGRESS, Peer};
use crate::peers::penalties::Fault;
use crate::peers::resolve::{self, Answer, Frame};

impl Engine {
    /// Take `answer`'s peer into the transfer and read its further frames.
    pub(super) fn join(&mut self, answer: Answer, events: &mpsc::Sender<(PeerId, Event)>) {
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
    pub(super) fn next_progress_check(&self) -> Option<Instant> {
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
    pub(super) fn drop_silent(&mut self) {
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

    /// A resolve frame from `peer`; true when it moved the transfer on.
    pub(super) fn on_event(&mut self, peer: PeerId, event: Event) -> bool {
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
}
