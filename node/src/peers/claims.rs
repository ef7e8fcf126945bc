//! What this node is doing about artifacts it does not hold yet, and the claim rule that makes
//! several nodes missing the same artifact at once download it from upstream once.
//!
//! Local states, by flat CID: *claiming* (this node found no peer with the artifact and is
//! deciding whether to download it; *decided* once it has), and *downloading* (the mirror
//! said so with `downloading`; kept for [`ENDED_GRACE`] after the download ends, so a resolve
//! that just missed the commit in the index still gets the leaves and the root). Besides, the
//! *claimers*: peers whose resolve request said `claiming`, remembered for [`CLAIM_TTL`].
//!
//! ## The rule
//!
//! A node N that misses `flat`:
//! 1. asks the providers and connected peers (resolve); one holding or downloading it → fetch;
//!    one `claiming` with `decided` → wait for it (poll) and fetch from it.
//! 2. Otherwise it sets its claim (`X_N`), provides `flat`, and asks them all again with
//!    `claiming` set (each request is handled at the peer under its lock: `Y_N`).
//! 3. Under its own lock it decides (`D_N`): it defers to any peer that holds or downloads
//!    `flat`, that answered `claiming` with `decided`, or that is claiming undecided (answered
//!    so, or is a claimer here) with a lower peer ID (byte order of the peer ID multihash).
//!    Otherwise it marks its claim decided and goes upstream; the mirror then calls
//!    `downloading`, which turns the claim into *downloading*.
//!
//! ## Why two nodes never both go upstream
//!
//! Say A and B both decide to go upstream, and each asked the other in step 2 and got an
//! answer (so `Y_A` happened before `D_A` and `Y_B` before `D_B`). At B, `Y_A` and `D_B` are
//! ordered by B's lock. If `Y_A` came after `D_B`, B answered A `claiming, decided` (or
//! `downloading`, or `holding`), and A deferred: a contradiction. So `Y_A` came before `D_B`,
//! and B had A among its claimers when it decided; B did not defer, so A's ID is higher than
//! B's. By the same argument with the roles swapped, B's ID is higher than A's: a
//! contradiction. Deferring never forms a cycle either: a node defers to undecided claimers of
//! lower ID only, and otherwise only to nodes that went upstream or hold the artifact.
//!
//! ## Known limits
//!
//! - The argument needs each pair to reach each other in step 2: connected (mDNS, bootstrap)
//!   or found in the DHT. Two nodes that do not see each other both go upstream.
//! - A peer that does not answer within the resolve timeout counts as knowing nothing.
//! - A peer in this node's penalty box (it stalled or lied lately: `penalties.rs`) is neither
//!   asked nor deferred to. Two honest nodes where one has penalized the other (say its
//!   upstream was slow once, see the next point) may then both go upstream, until the penalty
//!   ends.
//! - A peer that answers `holding` or `downloading` must list its first leaf and send its first
//!   block within `FIRST_PROGRESS` (5 s), or the asker drops it and goes upstream itself. A node
//!   whose upstream takes longer than that to deliver the first 1 MiB (or the whole of a
//!   smaller file) is therefore joined by a second upstream download. This trades the
//!   guarantee, for slow upstreams only, against a lying peer that claims a download and sends
//!   nothing costing every miss [`IDLE`](super::transfer::IDLE).
//! - A node that defers polls the other for at most `CLAIM_WAIT` (10 s); when the other never
//!   starts (it crashed, or its upstream request failed before `downloading`), it goes upstream
//!   itself without asking again. A claim not turned into a download expires after
//!   [`CLAIM_TTL`].
//! - When the node deferred to stops claiming (it deferred to a third), the deferrer starts
//!   over from step 1, within the same `CLAIM_WAIT`.
//! - Two fetches of the same bytes on one node at once (two keys): the second goes upstream.

use std::collections::HashMap;
use std::sync::Mutex;
use std::time::Duration;

use cairn_ipld::cid::FlatCid;
use cairn_peering::{LeafProgress, PendingLeaves};
use libp2p::PeerId;
use tokio::sync::watch;
use tokio::time::Instant;

/// A claim, or a peer's claim heard through resolve, is forgotten after this long.
pub const CLAIM_TTL: Duration = Duration::from_secs(30);

/// An ended download is still answered from its progress for this long.
pub const ENDED_GRACE: Duration = Duration::from_secs(30);

enum Local {
    Claiming {
        since: Instant,
        decided: bool,
    },
    Downloading {
        progress: watch::Receiver<LeafProgress>,
        ended: Option<Instant>,
    },
}

impl Local {
    fn expired(&self, now: Instant) -> bool {
        match self {
            Local::Claiming { since, .. } => now.duration_since(*since) > CLAIM_TTL,
            Local::Downloading { ended, .. } => {
                ended.is_some_and(|at| now.duration_since(at) > ENDED_GRACE)
            }
        }
    }
}

#[derive(Default)]
struct State {
    local: HashMap<FlatCid, Local>,
    claimers: HashMap<FlatCid, Vec<(PeerId, Instant)>>,
}

impl State {
    fn expire(&mut self, now: Instant) {
        self.local.retain(|_, local| !local.expired(now));
        self.claimers.retain(|_, claimers| {
            claimers.retain(|(_, at)| now.duration_since(*at) <= CLAIM_TTL);
            !claimers.is_empty()
        });
    }
}

/// What the resolve server says when the artifact is not committed here.
pub(crate) enum LocalAnswer {
    Downloading(watch::Receiver<LeafProgress>),
    Claiming { decided: bool },
    None,
}

/// What a peer answered in step 2, as far as the rule is concerned.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum Heard {
    Claiming { decided: bool },
    None,
}

/// The decision of step 3.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum Decision {
    Upstream,
    Defer(PeerId),
}

/// Whether `a` wins a tie against `b`.
fn lower(a: &PeerId, b: &PeerId) -> bool {
    a.to_bytes() < b.to_bytes()
}

/// The local states and the claimers, under one lock.
#[derive(Default)]
pub(crate) struct Claims {
    state: Mutex<State>,
}

impl Claims {
    fn lock(&self) -> std::sync::MutexGuard<'_, State> {
        let mut state = self
            .state
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner);
        state.expire(Instant::now());
        state
    }

    /// The resolve server's answer about `flat` for `asker`, recording `asker` as a claimer
    /// when it says it is claiming, in the same critical section.
    pub(crate) fn answer(&self, flat: FlatCid, asker: PeerId, claiming: bool) -> LocalAnswer {
        let mut state = self.lock();
        if claiming {
            let claimers = state.claimers.entry(flat).or_default();
            claimers.retain(|(peer, _)| *peer != asker);
            claimers.push((asker, Instant::now()));
        }
        match state.local.get(&flat) {
            Some(Local::Downloading { progress, .. }) => LocalAnswer::Downloading(progress.clone()),
            Some(Local::Claiming { decided, .. }) => LocalAnswer::Claiming { decided: *decided },
            None => LocalAnswer::None,
        }
    }

    /// Step 2: set an undecided claim on `flat`; false when this node already claims or
    /// downloads it.
    pub(crate) fn claim(&self, flat: FlatCid) -> bool {
        let mut state = self.lock();
        if state.local.contains_key(&flat) {
            return false;
        }
        state.local.insert(
            flat,
            Local::Claiming {
                since: Instant::now(),
                decided: false,
            },
        );
        true
    }

    /// Step 3, given what each peer asked in step 2 answered (those that hold or download the
    /// artifact were handled before). Claimers for which `excluded` holds (the penalty box) are
    /// not deferred to. Marks the claim decided when the answer is upstream.
    pub(crate) fn decide(
        &self,
        flat: FlatCid,
        me: PeerId,
        heard: &[(PeerId, Heard)],
        excluded: impl Fn(&PeerId) -> bool,
    ) -> Decision {
        let mut state = self.lock();
        let mut defer: Option<PeerId> = None;
        for (peer, answer) in heard {
            match answer {
                Heard::Claiming { decided: true } => return Decision::Defer(*peer),
                Heard::Claiming { decided: false }
                    if lower(peer, &me) && defer.is_none_or(|d| lower(peer, &d)) =>
                {
                    defer = Some(*peer);
                }
                _ => {}
            }
        }
        for (peer, _) in state.claimers.get(&flat).into_iter().flatten() {
            if !excluded(peer) && lower(peer, &me) && defer.is_none_or(|d| lower(peer, &d)) {
                defer = Some(*peer);
            }
        }
        if let Some(peer) = defer {
            return Decision::Defer(peer);
        }
        Self::set_decided(&mut state, flat);
        Decision::Upstream
    }

    fn set_decided(state: &mut State, flat: FlatCid) {
        match state.local.get_mut(&flat) {
            Some(Local::Claiming { decided, since }) => {
                *decided = true;
                *since = Instant::now();
            }
            Some(Local::Downloading { .. }) => {}
            None => {
                state.local.insert(
                    flat,
                    Local::Claiming {
                        since: Instant::now(),
                        decided: true,
                    },
                );
            }
        }
    }

    /// This node goes upstream for `flat` without a decision (a wait timed out).
    pub(crate) fn mark_decided(&self, flat: FlatCid) {
        Self::set_decided(&mut self.lock(), flat);
    }

    /// Drop this node's claim on `flat` (it fetches from a peer instead).
    pub(crate) fn release(&self, flat: &FlatCid) {
        let mut state = self.lock();
        if matches!(state.local.get(flat), Some(Local::Claiming { .. })) {
            state.local.remove(flat);
        }
    }

    /// The mirror downloads `pending.flat` from upstream.
    pub(crate) fn downloading(&self, pending: &PendingLeaves) {
        self.lock().local.insert(
            pending.flat,
            Local::Downloading {
                progress: pending.progress.clone(),
                ended: None,
            },
        );
    }

    /// The download of `flat` ended: kept for [`ENDED_GRACE`] when it committed, forgotten
    /// when it failed.
    pub(crate) fn ended(&self, flat: &FlatCid, committed: bool) {
        let mut state = self.lock();
        if committed {
            if let Some(Local::Downloading { ended, .. }) = state.local.get_mut(flat) {
                *ended = Some(Instant::now());
            }
        } else if matches!(state.local.get(flat), Some(Local::Downloading { .. })) {
            state.local.remove(flat);
        }
    }
}

#[cfg(test)]
mod tests;
