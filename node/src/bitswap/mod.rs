//! Bitswap 1.2.0 (docs/protocols.md) on `libp2p-stream`: serving the blocks a [`BlockSource`]
//! holds and fetching verified blocks from peers.
//!
//! Bitswap is message-based, not request/response: a peer's wants arrive on the streams *it*
//! opens to us, and everything we send it (our wants and our answers to its wants) goes on the
//! one outbound stream *we* keep open to it. So per peer there is:
//! - a reader task per inbound stream, which feeds wantlists to the server side
//!   (`server.rs`) and blocks and presences to the client side (`client.rs`);
//! - one writer task owning our outbound stream, fed by a bounded channel. It reopens the
//!   stream once when a write fails (the connection may have been replaced); when the peer
//!   cannot be reached every pending want to it fails.
//!
//! Goals: serve `/ipfs/bitswap/1.2.0` and `/1.1.0`; never hand out a block that was not verified
//! against the wanted CID; bound every queue; no task outlives the [`Bitswap`] handles except
//! while a stream it serves is still open.
//!
//! Non-goals (for now): sessions and peer selection, want-have broadcasts, `pendingBytes`,
//! Bitswap 1.0.0 as a sender, hashes other than sha2-256.

pub mod message;

mod client;
mod server;

use std::collections::HashMap;
use std::sync::{Arc, Mutex, MutexGuard, Weak};
use std::time::Duration;

use bytes::Bytes;
use cid::Cid;
use libp2p::{PeerId, Stream, StreamProtocol};
use libp2p_stream::{Control, OpenStreamError};
use tokio::sync::mpsc;
use tokio::task::AbortHandle;

pub use client::FetchError;
use message::Message;

/// Bitswap 1.2.0, which Cairn speaks.
pub const PROTOCOL_1_2_0: StreamProtocol = StreamProtocol::new("/ipfs/bitswap/1.2.0");
/// Bitswap 1.1.0: the same message with no presences or want-have, also accepted.
pub const PROTOCOL_1_1_0: StreamProtocol = StreamProtocol::new("/ipfs/bitswap/1.1.0");

/// Messages queued for one peer's writer before senders wait.
const OUTBOUND_QUEUE: usize = 64;
/// Longest wait for an outbound stream to a connected peer. The stream layer can leave an open
/// waiting for good (seen with QUIC, right after the connection is made: the request is parked
/// for a connection it already has); bounded, the writer gives up, fails the wants waiting on
/// it, and the next message opens a stream afresh. The swarm's own limit for negotiating one
/// is also 10 s.
const OPEN_TIMEOUT: Duration = Duration::from_secs(10);

/// Where the server side reads blocks.
///
/// Contract: `get` returns the block's exact bytes, already verified against `cid`, or `None`
/// when this node does not hold it (or cannot read it: errors are the source's to log). It may
/// block; Bitswap calls it on the blocking thread pool.
pub trait BlockSource: Send + Sync + 'static {
    fn get(&self, cid: &Cid) -> Option<Bytes>;
}

/// The Bitswap could not start.
#[derive(Debug, thiserror::Error)]
#[error("bitswap: protocol {protocol} is already accepted by another handler")]
pub struct StartError {
    protocol: StreamProtocol,
}

/// Bitswap on one swarm. Cheap to clone; the accept loops stop when the last clone is dropped.
#[derive(Clone)]
pub struct Bitswap {
    shared: Arc<Shared>,
    _tasks: Arc<Tasks>,
}

impl std::fmt::Debug for Bitswap {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Bitswap").finish_non_exhaustive()
    }
}

/// Aborts the accept loops on drop.
struct Tasks(Vec<AbortHandle>);

impl Drop for Tasks {
    fn drop(&mut self) {
        for task in &self.0 {
            task.abort();
        }
    }
}

/// State shared by the handle and the per-peer tasks.
struct Shared {
    control: Control,
    source: Arc<dyn BlockSource>,
    /// The writer of each peer we talk to, tagged so a writer that exits removes only itself.
    outbound: Mutex<HashMap<PeerId, (u64, mpsc::Sender<Message>)>>,
    next_writer: std::sync::atomic::AtomicU64,
    server: server::Server,
    client: client::Client,
}

/// Lock a mutex, recovering from poisoning: every critical section here leaves the maps
/// consistent, so a panic elsewhere does not invalidate them.
fn lock<T>(mutex: &Mutex<T>) -> MutexGuard<'_, T> {
    mutex
        .lock()
        .unwrap_or_else(std::sync::PoisonError::into_inner)
}

impl Bitswap {
    /// Start Bitswap on the swarm `control` belongs to: accept inbound streams of both
    /// protocols and serve `source`. Must be called within a tokio runtime.
    pub fn new(mut control: Control, source: Arc<dyn BlockSource>) -> Result<Self, StartError> {
        let mut incoming = Vec::new();
        for protocol in [PROTOCOL_1_2_0, PROTOCOL_1_1_0] {
            let streams = control
                .accept(protocol.clone())
                .map_err(|_| StartError { protocol })?;
            incoming.push(streams);
        }
        let shared = Arc::new(Shared {
            control,
            source,
            outbound: Mutex::new(HashMap::new()),
            next_writer: std::sync::atomic::AtomicU64::new(0),
            server: server::Server::default(),
            client: client::Client::default(),
        });
        let tasks = incoming
            .into_iter()
            .map(|mut streams| {
                let weak = Arc::downgrade(&shared);
                tokio::spawn(async move {
                    use futures::StreamExt as _;
                    while let Some((peer, stream)) = streams.next().await {
                        let Some(shared) = weak.upgrade() else { break };
                        tokio::spawn(read_loop(shared, peer, stream));
                    }
                })
                .abort_handle()
            })
            .collect();
        Ok(Bitswap {
            shared,
            _tasks: Arc::new(Tasks(tasks)),
        })
    }

    /// Fetch `cid` from `peer`: send it a want-block (with send-dont-have) and wait up to
    /// `timeout` for a block that hashes to `cid`.
    ///
    /// Cancel-safe: dropping the future withdraws the want (a cancel is sent to the peer).
    pub async fn get(
        &self,
        peer: PeerId,
        cid: Cid,
        timeout: Duration,
    ) -> Result<Bytes, FetchError> {
        client::get(&self.shared, peer, cid, timeout).await
    }

    /// Fetch the DAG under `root` from `peer`, depth-first, verifying each block; returns the
    /// blocks in depth-first order. Follows the links of dag-pb nodes; raw blocks are leaves.
    /// `timeout` applies to each block.
    ///
    /// Cancel-safe: dropping the future withdraws the wants in flight.
    pub async fn fetch_dag(
        &self,
        peer: PeerId,
        root: Cid,
        timeout: Duration,
    ) -> Result<Vec<(Cid, Bytes)>, FetchError> {
        client::fetch_dag(&self.shared, peer, root, timeout).await
    }

    /// Block bytes this node has sent `peer` (answers to its wants) since it started.
    pub fn bytes_sent_to(&self, peer: &PeerId) -> u64 {
        self.shared.server.sent_to(peer)
    }
}

impl Shared {
    /// Queue `message` on `peer`'s outbound stream, starting its writer if there is none.
    /// Waits when the peer's queue is full.
    async fn send(self: &Arc<Self>, peer: PeerId, message: Message) {
        let mut message = message;
        // Two rounds: a writer that has just exited closes its channel; the second round starts
        // a fresh one.
        for _ in 0..2 {
            let sender = {
                let mut outbound = lock(&self.outbound);
                match outbound.get(&peer) {
                    Some((_, sender)) if !sender.is_closed() => sender.clone(),
                    _ => {
                        let id = self
                            .next_writer
                            .fetch_add(1, std::sync::atomic::Ordering::Relaxed);
                        let (sender, receiver) = mpsc::channel(OUTBOUND_QUEUE);
                        outbound.insert(peer, (id, sender.clone()));
                        tokio::spawn(write_loop(
                            Arc::downgrade(self),
                            self.control.clone(),
                            peer,
                            id,
                            receiver,
                        ));
                        sender
                    }
                }
            };
            match sender.send(message).await {
                Ok(()) => return,
                Err(mpsc::error::SendError(returned)) => message = returned,
            }
        }
        tracing::debug!(%peer, "bitswap: message dropped, the peer's writer keeps exiting");
    }

    /// Queue `message` without waiting; dropped when there is no writer or its queue is full.
    fn try_send(&self, peer: PeerId, message: Message) {
        if let Some((_, sender)) = lock(&self.outbound).get(&peer)
            && sender.try_send(message).is_err()
        {
            tracing::debug!(%peer, "bitswap: best-effort message dropped");
        }
    }
}

/// Read `peer`'s messages from one inbound stream until it ends.
async fn read_loop(shared: Arc<Shared>, peer: PeerId, mut stream: Stream) {
    loop {
        match message::read_message(&mut stream).await {
            Ok(Some(message)) => {
                if let Some(wantlist) = message.wantlist {
                    server::on_wantlist(&shared, peer, wantlist);
                }
                client::on_blocks(
                    &shared,
                    peer,
                    message.payload,
                    message.blocks,
                    message.block_presences,
                );
            }
            Ok(None) => break,
            Err(e) => {
                tracing::debug!(%peer, "bitswap: inbound stream ended: {e}");
                break;
            }
        }
    }
}

/// Open our outbound stream to `peer`, preferring 1.2.0.
async fn open(control: &mut Control, peer: PeerId) -> Result<Stream, OpenStreamError> {
    match control.open_stream(peer, PROTOCOL_1_2_0).await {
        Err(OpenStreamError::UnsupportedProtocol(_)) => {
            control.open_stream(peer, PROTOCOL_1_1_0).await
        }
        other => other,
    }
}

/// Own the outbound stream to `peer`: write each queued message, reopening the stream once per
/// message when a write fails. Exits when the peer cannot be reached (failing the wants pending
/// on it) or when Bitswap is dropped.
async fn write_loop(
    shared: Weak<Shared>,
    mut control: Control,
    peer: PeerId,
    id: u64,
    mut receiver: mpsc::Receiver<Message>,
) {
    let mut stream: Option<Stream> = None;
    let failure = 'messages: loop {
        let Some(message) = receiver.recv().await else {
            return;
        };
        let mut last_error = String::new();
        for _attempt in 0..2 {
            let current = match &mut stream {
                Some(stream) => stream,
                None => match tokio::time::timeout(OPEN_TIMEOUT, open(&mut control, peer)).await {
                    Ok(Ok(opened)) => stream.insert(opened),
                    Ok(Err(e)) => break 'messages e.to_string(),
                    Err(_) => {
                        break 'messages format!(
                            "no stream opened within {} s",
                            OPEN_TIMEOUT.as_secs()
                        );
                    }
                },
            };
            match message::write_message(current, &message).await {
                Ok(()) => continue 'messages,
                Err(e) => {
                    last_error = e.to_string();
                    stream = None;
                }
            }
        }
        break last_error;
    };
    tracing::debug!(%peer, "bitswap: cannot send to peer: {failure}");
    receiver.close();
    if let Some(shared) = shared.upgrade() {
        {
            let mut outbound = lock(&shared.outbound);
            if outbound
                .get(&peer)
                .is_some_and(|(current, _)| *current == id)
            {
                outbound.remove(&peer);
            }
        }
        client::fail_peer(&shared, peer, &failure);
    }
}
