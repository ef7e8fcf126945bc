//! Peers that stalled or lied lately, kept out of this node's fetches for a while: not asked
//! about artifacts, not waited for as claimers.
//!
//! A peer is put here by the transfer engine when, after saying it holds or downloads an
//! artifact, it lists no leaf or sends no block within
//! [`FIRST_PROGRESS`](super::transfer::FIRST_PROGRESS), lets a block time out, sends a block
//! that does not hash to its CID, or lists leaves that contradict the others (or itself); and
//! by the claim rule when a claimer it waited for never started. Lies are remembered for
//! [`LIED`]; stalls, which an honest peer with a slow or failing upstream can show too, for
//! [`STALLED`]. A DONT_HAVE for a leaf it listed only drops the peer from that transfer: the
//! file was most likely evicted there since it answered. The box holds at most [`MAX_PENALIZED`] peers: when
//! it is full the entry that would expire first makes room.

use std::collections::HashMap;
use std::sync::Mutex;
use std::time::Duration;

use libp2p::PeerId;
use tokio::time::Instant;

/// How long a peer that sent wrong bytes or a contradicting plan is kept out.
pub const LIED: Duration = Duration::from_secs(600);
/// How long a peer that showed no progress is kept out.
pub const STALLED: Duration = Duration::from_secs(120);
/// Peers remembered at most.
pub const MAX_PENALIZED: usize = 1024;

/// What a peer did.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum Fault {
    /// Wrong bytes, or a plan that contradicts itself or others.
    Lied,
    /// No progress within the time given.
    Stalled,
}

impl Fault {
    fn duration(self) -> Duration {
        match self {
            Fault::Lied => LIED,
            Fault::Stalled => STALLED,
        }
    }
}

/// The penalty box: each peer kept out, with the time its penalty ends and why.
#[derive(Default)]
pub(crate) struct Penalties {
    boxed: Mutex<HashMap<PeerId, (Instant, Penalty)>>,
}

/// A peer's penalty as the operator sees it.
#[derive(Clone, Debug, serde::Serialize)]
pub struct Penalty {
    pub peer: String,
    /// `lied` or `stalled`.
    pub fault: &'static str,
    pub reason: String,
    /// When it was put in the box, in milliseconds since the Unix epoch.
    pub at_ms: u64,
    /// Seconds until it may be asked again (filled in when read).
    pub seconds_left: u64,
}

/// Longest reason kept.
const MAX_REASON: usize = 500;

impl Penalties {
    fn lock(&self) -> std::sync::MutexGuard<'_, HashMap<PeerId, (Instant, Penalty)>> {
        self.boxed
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
    }

    /// The peers kept out now, the longest penalty first.
    pub(crate) fn current(&self) -> Vec<Penalty> {
        let now = Instant::now();
        let mut out: Vec<Penalty> = self
            .lock()
            .values()
            .filter(|(end, _)| *end > now)
            .map(|(end, penalty)| Penalty {
                seconds_left: end.duration_since(now).as_secs(),
                ..penalty.clone()
            })
            .collect();
        out.sort_by_key(|p| std::cmp::Reverse(p.seconds_left));
        out
    }

    /// Keep `peer` out for the time `fault` earns (never shortening a longer penalty).
    pub(crate) fn penalize(&self, peer: PeerId, fault: Fault, why: &str) {
        let now = Instant::now();
        let mut end = now + fault.duration();
        let mut reason: String = why.chars().take(MAX_REASON).collect();
        if reason.len() < why.len() {
            reason.push('…');
        }
        let penalty = Penalty {
            peer: peer.to_string(),
            fault: match fault {
                Fault::Lied => "lied",
                Fault::Stalled => "stalled",
            },
            reason,
            at_ms: std::time::SystemTime::now()
                .duration_since(std::time::UNIX_EPOCH)
                .map_or(0, |d| u64::try_from(d.as_millis()).unwrap_or(u64::MAX)),
            seconds_left: 0,
        };
        let mut boxed = self.lock();
        boxed.retain(|_, (end, _)| *end > now);
        if boxed.len() >= MAX_PENALIZED
            && !boxed.contains_key(&peer)
            && let Some(first) = boxed
                .iter()
                .min_by_key(|(_, (end, _))| *end)
                .map(|(p, _)| *p)
        {
            boxed.remove(&first);
        }
        if let Some((earlier, _)) = boxed.get(&peer) {
            end = end.max(*earlier);
        }
        boxed.insert(peer, (end, penalty));
        drop(boxed);
        tracing::info!(%peer, ?fault, "peer kept out of fetches for {:?}: {why}", fault.duration());
    }

    /// Whether `peer` is kept out now.
    pub(crate) fn contains(&self, peer: &PeerId) -> bool {
        self.lock()
            .get(peer)
            .is_some_and(|(end, _)| *end > Instant::now())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn penalties_expire_and_stay_bounded() {
        let penalties = Penalties::default();
        let liar = PeerId::random();
        penalties.penalize(liar, Fault::Lied, "test");
        assert!(penalties.contains(&liar));
        assert!(!penalties.contains(&PeerId::random()));
        for _ in 0..MAX_PENALIZED + 10 {
            penalties.penalize(PeerId::random(), Fault::Stalled, "test");
        }
        assert!(penalties.lock().len() <= MAX_PENALIZED);
        assert!(
            penalties.contains(&liar),
            "the longest penalty outlives the shorter ones"
        );
        let stalled = PeerId::random();
        penalties.penalize(stalled, Fault::Stalled, "test");
        penalties
            .lock()
            .entry(stalled)
            .and_modify(|(end, _)| *end = Instant::now());
        assert!(!penalties.contains(&stalled), "an ended penalty is over");
        let shown = penalties.current();
        assert!(shown.len() <= MAX_PENALIZED);
        assert_eq!(shown[0].peer, liar.to_string(), "the longest penalty first");
        assert_eq!((shown[0].fault, shown[0].reason.as_str()), ("lied", "test"));
        assert!(shown.iter().all(|p| p.peer != stalled.to_string()));
    }
}
