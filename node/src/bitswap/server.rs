//! The serving side of Bitswap: one ledger of wants per peer and a worker that answers them,
//! highest priority first.
//!
//! - want-block → the block as a payload;
//! - want-have → HAVE, or the block itself when it is at most [`INLINE_HAVE`] bytes (as boxo
//!   does);
//! - a block we do not hold → DONT_HAVE, only when the peer asked for it;
//! - cancel removes the entry if it has not been answered yet; a full wantlist replaces the
//!   ledger.
//!
//! Blocks over [`MAX_BLOCK_SIZE`] are never sent (treated as not held). The worker runs only
//! while the ledger has entries, so an idle peer costs a map entry, not a task. Answers are
//! batched into messages of at most [`BATCH_BYTES`] of blocks while more wants are queued.

use std::collections::HashMap;
use std::sync::{Arc, Mutex};

use bytes::Bytes;
use cid::Cid;
use libp2p::PeerId;

use super::message::{
    Block, BlockPresence, BlockPresenceType, MAX_BLOCK_SIZE, Message, WantType, Wantlist,
    cid_prefix,
};
use super::{Shared, lock};

/// want-have of a block this small is answered with the block.
pub const INLINE_HAVE: usize = 1024;

/// A message is sent once its blocks reach this size: a batch just under it plus one 2 MiB block
/// stays well under the 4 MiB message limit.
const BATCH_BYTES: usize = 1 << 20;

/// Most entries kept per peer; further wants are dropped (the peer will ask again).
const MAX_WANTS_PER_PEER: usize = 4096;

#[derive(Default)]
pub(super) struct Server {
    ledgers: Mutex<HashMap<PeerId, Ledger>>,
    /// Block bytes sent to each peer, for the operator (at most [`MAX_COUNTED_PEERS`]).
    sent: Mutex<HashMap<PeerId, u64>>,
}

/// Peers whose sent bytes are counted at most: beyond it the peer sent the least to makes
/// room, so a stream of fresh peer IDs cannot grow the map.
const MAX_COUNTED_PEERS: usize = 4096;

impl Server {
    /// Block bytes sent to `peer` so far.
    pub(super) fn sent_to(&self, peer: &PeerId) -> u64 {
        lock(&self.sent).get(peer).copied().unwrap_or(0)
    }

    fn count_sent(&self, peer: PeerId, bytes: usize) {
        let mut sent = lock(&self.sent);
        if sent.len() >= MAX_COUNTED_PEERS
            && !sent.contains_key(&peer)
            && let Some(least) = sent.iter().min_by_key(|(_, n)| **n).map(|(p, _)| *p)
        {
            sent.remove(&least);
        }
        *sent.entry(peer).or_default() += bytes as u64;
    }
}

#[derive(Default)]
struct Ledger {
    wants: HashMap<Cid, Want>,
    /// Whether a worker is answering this ledger.
    working: bool,
    /// Arrival counter, so equal priorities are served first come, first served.
    next_seq: u64,
}

#[derive(Clone, Copy)]
struct Want {
    priority: i32,
    kind: WantType,
    send_dont_have: bool,
    seq: u64,
}

/// Apply `peer`'s wantlist to its ledger and make sure a worker answers it.
pub(super) fn on_wantlist(shared: &Arc<Shared>, peer: PeerId, wantlist: Wantlist) {
    let mut ledgers = lock(&shared.server.ledgers);
    let ledger = ledgers.entry(peer).or_default();
    if wantlist.full {
        ledger.wants.clear();
    }
    for entry in wantlist.entries {
        let Ok(cid) = Cid::try_from(entry.block.as_ref()) else {
            tracing::debug!(%peer, "bitswap: want of a malformed CID ignored");
            continue;
        };
        if entry.cancel {
            ledger.wants.remove(&cid);
        } else if ledger.wants.len() < MAX_WANTS_PER_PEER || ledger.wants.contains_key(&cid) {
            let seq = ledger.next_seq;
            ledger.next_seq += 1;
            ledger.wants.insert(
                cid,
                Want {
                    priority: entry.priority,
                    kind: entry.kind(),
                    send_dont_have: entry.send_dont_have,
                    seq,
                },
            );
        }
    }
    if ledger.wants.is_empty() {
        if !ledger.working {
            ledgers.remove(&peer);
        }
    } else if !ledger.working {
        ledger.working = true;
        tokio::spawn(serve(shared.clone(), peer));
    }
}

/// Take `peer`'s most urgent want, or end the worker (under the same lock) when there is none.
fn next_want(shared: &Shared, peer: PeerId) -> Option<(Cid, Want, bool)> {
    let mut ledgers = lock(&shared.server.ledgers);
    let ledger = ledgers.get_mut(&peer)?;
    let next = ledger
        .wants
        .iter()
        .max_by_key(|(_, want)| (want.priority, std::cmp::Reverse(want.seq)))
        .map(|(cid, want)| (*cid, *want));
    match next {
        Some((cid, want)) => {
            ledger.wants.remove(&cid);
            Some((cid, want, !ledger.wants.is_empty()))
        }
        None => {
            ledgers.remove(&peer);
            None
        }
    }
}

/// Answer `peer`'s wants until its ledger is empty.
async fn serve(shared: Arc<Shared>, peer: PeerId) {
    let mut out = Message::default();
    let mut out_bytes = 0;
    while let Some((cid, want, more)) = next_want(&shared, peer) {
        let source = shared.source.clone();
        let block = tokio::task::spawn_blocking(move || source.get(&cid))
            .await
            .ok()
            .flatten()
            .filter(|data| data.len() <= MAX_BLOCK_SIZE);
        match (block, want.kind) {
            (Some(data), WantType::Block) => push_block(&mut out, &mut out_bytes, &cid, data),
            (Some(data), WantType::Have) if data.len() <= INLINE_HAVE => {
                push_block(&mut out, &mut out_bytes, &cid, data);
            }
            (Some(_), WantType::Have) => push_presence(&mut out, &cid, BlockPresenceType::Have),
            (None, _) if want.send_dont_have => {
                push_presence(&mut out, &cid, BlockPresenceType::DontHave);
            }
            (None, _) => {}
        }
        if !out.is_empty() && (!more || out_bytes >= BATCH_BYTES) {
            shared.server.count_sent(peer, out_bytes);
            shared.send(peer, std::mem::take(&mut out)).await;
            out_bytes = 0;
        }
    }
    if !out.is_empty() {
        shared.server.count_sent(peer, out_bytes);
        shared.send(peer, out).await;
    }
}

fn push_block(out: &mut Message, out_bytes: &mut usize, cid: &Cid, data: Bytes) {
    *out_bytes += data.len();
    out.payload.push(Block {
        prefix: cid_prefix(cid).into(),
        data,
    });
}

fn push_presence(out: &mut Message, cid: &Cid, kind: BlockPresenceType) {
    out.block_presences.push(BlockPresence {
        cid: cid.to_bytes().into(),
        r#type: kind as i32,
    });
}
