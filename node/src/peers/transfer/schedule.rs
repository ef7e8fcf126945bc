//! Scheduling of a transfer: each peer's in-flight window proportional to `best_rtt / rtt`,
//! requests bounded to [`AHEAD_LEAVES`] past the next leaf to write, hedging of leaves held up
//! at a slow peer, and the blocks that come back (kept, or the peer dropped).

use std::sync::Arc;
use std::time::Duration;

use bytes::Bytes;
use futures::future::{AbortHandle, Abortable};
use libp2p::PeerId;
use tokio::time::Instant;

use super::{
    AHEAD_LEAVES, Engine, HEDGE_AFTER, Inflight, MAX_OUTRUN, MAX_WINDOW, RTT_FLOOR, STALL,
};
use crate::bitswap::FetchError;
use crate::metrics::PeerLabels;
use crate::peers::penalties::Fault;

impl Engine {
    /// Put leaf `index` back in the queue unless it is written, buffered or in flight at a
    /// peer.
    pub(super) fn requeue(&mut self, index: usize) {
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

    /// Window of a peer `rtt` away when the nearest is `best` away.
    fn window(best: Duration, rtt: Duration) -> usize {
        let best = best.max(RTT_FLOOR).as_secs_f64();
        let rtt = rtt.max(RTT_FLOOR).as_secs_f64();
        ((MAX_WINDOW as f64 * best / rtt).round() as usize).clamp(1, MAX_WINDOW)
    }

    /// Fill each peer's window from the queue, nearest peer first.
    pub(super) fn schedule(&mut self) {
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
    pub(super) fn on_block(
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
                    FetchError::Timeout { .. } => Some(Fault::Stalled),
                    // DONT_HAVE for a leaf it listed: most often the file was evicted there
                    // since it answered (a swarm under its size limits evicts all the time), or
                    // a download there just failed. Dropped from this transfer only: kept out
                    // of every fetch, it could not serve the files it does hold, and the next
                    // fetch of this file asks it again and hears it has none.
                    FetchError::NotFound { .. } => None,
                    FetchError::Unreachable { .. }
                    | FetchError::UnsupportedHash { .. }
                    | FetchError::Shutdown { .. } => None,
                };
                self.drop_peer(peer, error.to_string(), fault);
                false
            }
        }
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
