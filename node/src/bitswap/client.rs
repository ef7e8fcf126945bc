//! The fetching side of Bitswap: wants sent to one peer, answered by verified blocks.
//!
//! A block is accepted only when the CID rebuilt from its prefix and the sha2-256 of its data is
//! the CID we asked that peer for. A payload from a peer that matches none of our wants to it,
//! and is not a late answer to a want just withdrawn, is a lie: every pending want to that peer
//! with the same CID prefix fails with [`FetchError::BadBlock`], since the peer has shown it
//! sends wrong bytes under that prefix and we cannot tell which want it meant.

use std::collections::{HashMap, VecDeque};
use std::future::Future;
use std::pin::Pin;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use bytes::Bytes;
use cid::Cid;
use futures::{StreamExt as _, TryStreamExt as _};
use libp2p::PeerId;
use sha2::Digest as _;
use tokio::sync::oneshot;

use super::message::{
    self, BlockPresence, BlockPresenceType, Entry, Message, WantType, Wantlist, cid_prefix,
};
use super::{Shared, lock};

/// Multihash code of sha2-256, the only hash fetched blocks may use.
const SHA2_256: u64 = 0x12;

/// CIDs remembered per peer as recently answered or withdrawn, so that a late duplicate is
/// ignored rather than taken for a lie.
const RECENT_PER_PEER: usize = 256;

/// Children of one dag-pb node fetched at once by [`fetch_dag`].
const DAG_CONCURRENCY: usize = 32;

/// Why a block could not be fetched from a peer.
#[derive(Clone, Debug, thiserror::Error)]
pub enum FetchError {
    #[error("peer {peer} sent a block for {cid} whose bytes do not hash to it")]
    BadBlock { peer: PeerId, cid: Cid },
    #[error("peer {peer} does not have {cid}")]
    NotFound { peer: PeerId, cid: Cid },
    #[error("no block {cid} from peer {peer} within {timeout:?}")]
    Timeout {
        peer: PeerId,
        cid: Cid,
        timeout: Duration,
    },
    #[error("cannot reach peer {peer} for {cid}: {reason}")]
    Unreachable {
        peer: PeerId,
        cid: Cid,
        reason: String,
    },
    #[error("cannot fetch {cid}: multihash 0x{code:x} is not sha2-256")]
    UnsupportedHash { cid: Cid, code: u64 },
    #[error("block {cid} from peer {peer} is not a valid dag-pb node: {reason}")]
    BadNode {
        peer: PeerId,
        cid: Cid,
        reason: String,
    },
    #[error("bitswap shut down while fetching {cid}")]
    Shutdown { cid: Cid },
}

type Reply = oneshot::Sender<Result<Bytes, FetchError>>;

#[derive(Default)]
pub(super) struct Client {
    state: Mutex<State>,
}

#[derive(Default)]
struct State {
    /// Waiters for each (peer, CID), each tagged with its `get`'s id.
    wants: HashMap<(PeerId, Cid), Vec<(u64, Reply)>>,
    recent: HashMap<PeerId, VecDeque<Cid>>,
    next_id: u64,
}

impl State {
    fn remember(&mut self, peer: PeerId, cid: Cid) {
        let recent = self.recent.entry(peer).or_default();
        if recent.len() >= RECENT_PER_PEER {
            recent.pop_front();
        }
        recent.push_back(cid);
    }

    /// Answer and remove every waiter of (peer, cid); false when there is none.
    fn resolve(&mut self, peer: PeerId, cid: Cid, result: &Result<Bytes, FetchError>) -> bool {
        let Some(waiters) = self.wants.remove(&(peer, cid)) else {
            return false;
        };
        for (_, reply) in waiters {
            let _ = reply.send(result.clone());
        }
        self.remember(peer, cid);
        true
    }
}

/// Withdraws one `get`'s want when it ends, however it ends, sending a cancel when it was the
/// last waiter for that block.
struct WantGuard {
    shared: Arc<Shared>,
    peer: PeerId,
    cid: Cid,
    id: u64,
}

impl Drop for WantGuard {
    fn drop(&mut self) {
        let cancel = {
            let mut state = lock(&self.shared.client.state);
            let key = (self.peer, self.cid);
            match state.wants.get_mut(&key) {
                Some(waiters) => {
                    waiters.retain(|(id, reply)| *id != self.id && !reply.is_closed());
                    if waiters.is_empty() {
                        state.wants.remove(&key);
                        state.remember(self.peer, self.cid);
                        true
                    } else {
                        false
                    }
                }
                None => false,
            }
        };
        if cancel {
            self.shared
                .try_send(self.peer, want_message(self.cid, true));
        }
    }
}

/// A delta wantlist with one want-block (send-dont-have set) or its cancel.
fn want_message(cid: Cid, cancel: bool) -> Message {
    Message {
        wantlist: Some(Wantlist {
            entries: vec![Entry {
                block: cid.to_bytes().into(),
                priority: 1,
                cancel,
                want_type: WantType::Block as i32,
                send_dont_have: !cancel,
            }],
            full: false,
        }),
        ..Default::default()
    }
}

pub(super) async fn get(
    shared: &Arc<Shared>,
    peer: PeerId,
    cid: Cid,
    timeout: Duration,
) -> Result<Bytes, FetchError> {
    if cid.hash().code() != SHA2_256 {
        return Err(FetchError::UnsupportedHash {
            cid,
            code: cid.hash().code(),
        });
    }
    let (reply, answer) = oneshot::channel();
    let id = {
        let mut state = lock(&shared.client.state);
        let id = state.next_id;
        state.next_id += 1;
        state
            .wants
            .entry((peer, cid))
            .or_default()
            .push((id, reply));
        id
    };
    let guard = WantGuard {
        shared: shared.clone(),
        peer,
        cid,
        id,
    };
    // Wants are sent again while unanswered (1 s, then doubling to 8 s), as Bitswap peers
    // rebroadcast their wantlists: a message can be lost with a stream that breaks (a second
    // connection to the same peer replacing the first), and the server ignores nothing but
    // answers again, which the recent-CID list here absorbs.
    let exchange = async {
        let mut answer = answer;
        let mut wait = Duration::from_secs(1);
        loop {
            shared.send(peer, want_message(cid, false)).await;
            match tokio::time::timeout(wait, &mut answer).await {
                Ok(result) => break result,
                Err(_) => wait = (wait * 2).min(Duration::from_secs(8)),
            }
        }
    };
    let result = match tokio::time::timeout(timeout, exchange).await {
        Ok(Ok(result)) => result,
        Ok(Err(_)) => Err(FetchError::Shutdown { cid }),
        Err(_) => Err(FetchError::Timeout { peer, cid, timeout }),
    };
    drop(guard);
    result
}

/// Take the blocks and presences of a message from `peer`.
pub(super) fn on_blocks(
    shared: &Shared,
    peer: PeerId,
    payload: Vec<message::Block>,
    blocks: Vec<Bytes>,
    presences: Vec<BlockPresence>,
) {
    let mut state = lock(&shared.client.state);
    for block in payload {
        match message::block_cid(&block) {
            Ok(cid) => {
                if state.resolve(peer, cid, &Ok(block.data)) {
                    continue;
                }
                if state.recent.get(&peer).is_some_and(|r| r.contains(&cid)) {
                    continue;
                }
                reject(&mut state, peer, &block.prefix);
            }
            Err(e) => {
                tracing::debug!(%peer, "bitswap: unusable block: {e}");
                reject(&mut state, peer, &block.prefix);
            }
        }
    }
    // Bitswap 1.0.0 blocks carry no prefix: match them to our sha2-256 wants by digest.
    for data in blocks {
        let digest = sha2::Sha256::digest(&data);
        let wanted: Vec<Cid> = state
            .wants
            .keys()
            .filter(|(p, cid)| *p == peer && cid.hash().digest() == digest.as_slice())
            .map(|(_, cid)| *cid)
            .collect();
        for cid in wanted {
            state.resolve(peer, cid, &Ok(data.clone()));
        }
    }
    for presence in presences {
        if presence.kind() != Some(BlockPresenceType::DontHave) {
            continue;
        }
        if let Ok(cid) = Cid::try_from(presence.cid.as_ref()) {
            state.resolve(peer, cid, &Err(FetchError::NotFound { peer, cid }));
        }
    }
}

/// `peer` sent a block under `prefix` that we did not ask it for: fail our wants to it under
/// that prefix.
fn reject(state: &mut State, peer: PeerId, prefix: &[u8]) {
    let suspects: Vec<Cid> = state
        .wants
        .keys()
        .filter(|(p, cid)| *p == peer && cid_prefix(cid) == prefix)
        .map(|(_, cid)| *cid)
        .collect();
    if suspects.is_empty() {
        tracing::debug!(%peer, "bitswap: unsolicited block ignored");
    }
    for cid in suspects {
        tracing::warn!(%peer, %cid, "bitswap: peer sent a block that does not match its CID");
        state.resolve(peer, cid, &Err(FetchError::BadBlock { peer, cid }));
    }
}

/// Fail every want pending on `peer`, which cannot be reached.
pub(super) fn fail_peer(shared: &Shared, peer: PeerId, reason: &str) {
    let mut state = lock(&shared.client.state);
    let cids: Vec<Cid> = state
        .wants
        .keys()
        .filter(|(p, _)| *p == peer)
        .map(|(_, cid)| *cid)
        .collect();
    for cid in cids {
        let error = FetchError::Unreachable {
            peer,
            cid,
            reason: reason.to_owned(),
        };
        state.resolve(peer, cid, &Err(error));
    }
}

pub(super) async fn fetch_dag(
    shared: &Arc<Shared>,
    peer: PeerId,
    root: Cid,
    timeout: Duration,
) -> Result<Vec<(Cid, Bytes)>, FetchError> {
    let data = get(shared, peer, root, timeout).await?;
    let mut out = Vec::new();
    visit(shared, peer, root, data, timeout, &mut out).await?;
    Ok(out)
}

/// Record `cid` and fetch the subtree under it. Content addressing rules out cycles.
fn visit<'a>(
    shared: &'a Arc<Shared>,
    peer: PeerId,
    cid: Cid,
    data: Bytes,
    timeout: Duration,
    out: &'a mut Vec<(Cid, Bytes)>,
) -> Pin<Box<dyn Future<Output = Result<(), FetchError>> + Send + 'a>> {
    Box::pin(async move {
        let links = if cid.codec() == cairn_ipld::cid::DAG_PB {
            cairn_ipld::unixfs::decode_node(&data)
                .map_err(|e| FetchError::BadNode {
                    peer,
                    cid,
                    reason: e.to_string(),
                })?
                .links
        } else {
            Vec::new()
        };
        out.push((cid, data));
        let children: Vec<(Cid, Bytes)> = futures::stream::iter(links)
            .map(|link| async move {
                let data = get(shared, peer, link.cid, timeout).await?;
                Ok::<_, FetchError>((link.cid, data))
            })
            .buffered(DAG_CONCURRENCY)
            .try_collect()
            .await?;
        for (child, data) in children {
            visit(shared, peer, child, data, timeout, out).await?;
        }
        Ok(())
    })
}
