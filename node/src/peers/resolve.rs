//! `/cairn/resolve/1.0.0`: what a peer knows about an artifact, by flat CID.
//!
//! The asker opens a stream and sends one JSON frame, `{"flat": "<flat CID>", "claiming":
//! bool}`. The server answers with JSON frames (uvarint length-prefixed, each at most
//! [`MAX_JSON_FRAME`](super::wire::MAX_JSON_FRAME)), tagged by `type`:
//!
//! - `{"type":"holding"}`: the artifact is committed here. Then `leaves` frames, then `done`.
//! - `{"type":"downloading"}`: an upstream download is under way here. Then `leaves` frames as
//!   the download hashes them, then `done` (committed) or `failed`.
//! - `{"type":"claiming","decided":bool}`: this node has found no peer with the artifact and
//!   is deciding whether to download it (`decided`: it has decided to, and is about to start).
//!   Nothing follows.
//! - `{"type":"none"}`: nothing known. Nothing follows.
//! - `{"type":"leaves","leaves":[{"cid","offset","len"},…]}`: leaves in file order, each a
//!   range of the flat file, at most [`LEAVES_PER_FRAME`] per frame.
//! - `{"type":"done","root":"<root CID>","size":N}`, `{"type":"failed","reason":"…"}`.
//!
//! The server answers from local state under one lock, and a request with `claiming` set is
//! remembered (for [`CLAIM_TTL`](super::claims::CLAIM_TTL)) as a claim by the asker; `claims.rs`
//! explains why. Leaves are only a plan: each block is verified by Bitswap against its CID, and
//! the mirror checks the registry digest of the whole file.
//!
//! Goals: a lookup in one round trip; leaves of a download under way as soon as they are hashed.
//! Non-goals: ranges of an artifact, directories (Cairn's artifacts are single files).

use std::sync::Arc;
use std::time::Duration;

use cairn_ipld::cid::{FlatCid, RAW};
use cairn_ipld::unixfs::{CHUNK_SIZE, Leaf};
use cairn_peering::{LeafProgress, LocalContent};
use cid::Cid;
use futures::AsyncWriteExt as _;
use libp2p::{PeerId, Stream, StreamProtocol};
use serde::{Deserialize, Serialize};
use tokio::sync::watch;
use tokio::time::Instant;

use super::claims::LocalAnswer;
use super::wire::{self, WireError};

pub const PROTOCOL: StreamProtocol = StreamProtocol::new("/cairn/resolve/1.0.0");
const NAME: &str = "resolve";

/// Leaves per `leaves` frame: about 100 bytes of JSON each.
pub const LEAVES_PER_FRAME: usize = 512;

/// Longest the server waits for a request, or for a write to be taken by the asker.
const IO_TIMEOUT: Duration = Duration::from_secs(10);

/// Longest the server follows a download under way without a new leaf.
const FOLLOW_IDLE: Duration = Duration::from_secs(120);

/// A resolve request.
#[derive(Clone, Debug, Serialize, Deserialize)]
pub struct Request {
    pub flat: String,
    #[serde(default)]
    pub claiming: bool,
}

/// One leaf on the wire.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct WireLeaf {
    pub cid: String,
    pub offset: u64,
    pub len: u64,
}

/// A response frame.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(tag = "type", rename_all = "snake_case")]
pub enum Frame {
    Holding,
    Downloading,
    Claiming { decided: bool },
    None,
    Leaves { leaves: Vec<WireLeaf> },
    Done { root: String, size: u64 },
    Failed { reason: String },
}

fn wire_leaves(leaves: &[Leaf]) -> Vec<WireLeaf> {
    leaves
        .iter()
        .map(|l| WireLeaf {
            cid: l.cid.to_string(),
            offset: l.offset,
            len: l.len,
        })
        .collect()
}

/// Parse and check one leaf of `peer`'s answer.
pub fn parse_leaf(leaf: &WireLeaf) -> Result<Leaf, String> {
    let cid: Cid = leaf
        .cid
        .parse()
        .map_err(|e| format!("leaf CID {:?}: {e}", leaf.cid))?;
    if cid.codec() != RAW || leaf.len > CHUNK_SIZE {
        return Err(format!(
            "{cid} is not a raw leaf of at most {CHUNK_SIZE} bytes"
        ));
    }
    Ok(Leaf {
        cid,
        offset: leaf.offset,
        len: leaf.len,
    })
}

/// What the server side needs: the committed artifacts and the local state.
pub(crate) struct Server {
    pub content: Arc<dyn LocalContent>,
    pub claims: Arc<super::claims::Claims>,
}

/// Answer one resolve stream from `peer`.
pub(crate) async fn serve(server: Arc<Server>, peer: PeerId, mut stream: Stream) {
    if let Err(e) = answer(&server, peer, &mut stream).await {
        tracing::debug!(%peer, "resolve: {e}");
    }
    let _ = tokio::time::timeout(IO_TIMEOUT, stream.close()).await;
}

/// Write `frame`, bounded by [`IO_TIMEOUT`].
async fn send(stream: &mut Stream, frame: &Frame) -> Result<(), String> {
    match tokio::time::timeout(IO_TIMEOUT, wire::write_json(stream, NAME, frame)).await {
        Ok(result) => result.map_err(|e| e.to_string()),
        Err(_) => Err(format!("asker took no frame within {IO_TIMEOUT:?}")),
    }
}

async fn send_leaves(stream: &mut Stream, leaves: &[Leaf]) -> Result<(), String> {
    for batch in leaves.chunks(LEAVES_PER_FRAME) {
        send(
            stream,
            &Frame::Leaves {
                leaves: wire_leaves(batch),
            },
        )
        .await?;
    }
    Ok(())
}

async fn answer(server: &Server, peer: PeerId, stream: &mut Stream) -> Result<(), String> {
    let request: Request =
        match tokio::time::timeout(IO_TIMEOUT, wire::read_json(stream, NAME)).await {
            Ok(Ok(Some(request))) => request,
            Ok(Ok(None)) => return Err("stream closed before a request".into()),
            Ok(Err(e)) => return Err(e.to_string()),
            Err(_) => return Err(format!("no request within {IO_TIMEOUT:?}")),
        };
    let flat: FlatCid = request.flat.parse().map_err(|e| format!("{e}"))?;
    let content = server.content.clone();
    let held = tokio::task::spawn_blocking(move || content.held(&flat))
        .await
        .map_err(|e| format!("resolve of {flat}: blocking task failed: {e}"))?;
    let held = match held {
        Ok(held) => held,
        Err(e) => {
            tracing::warn!(%flat, "resolve: cannot list the held artifact: {e}");
            None
        }
    };
    if let Some(held) = held {
        send(stream, &Frame::Holding).await?;
        send_leaves(stream, &held.leaves).await?;
        return send(
            stream,
            &Frame::Done {
                root: held.root.to_string(),
                size: held.size,
            },
        )
        .await;
    }
    match server.claims.answer(flat, peer, request.claiming) {
        LocalAnswer::Downloading(progress) => {
            send(stream, &Frame::Downloading).await?;
            follow(stream, progress).await
        }
        LocalAnswer::Claiming { decided } => send(stream, &Frame::Claiming { decided }).await,
        LocalAnswer::None => send(stream, &Frame::None).await,
    }
}

/// Stream the leaves of a download under way as they are hashed, then how it ended.
async fn follow(
    stream: &mut Stream,
    mut progress: watch::Receiver<LeafProgress>,
) -> Result<(), String> {
    let mut sent = 0;
    let mut closed = false;
    loop {
        let (new, done) = {
            let current = progress.borrow_and_update();
            let new = current.leaves.get(sent..).unwrap_or_default().to_vec();
            (new, current.done.clone())
        };
        send_leaves(stream, &new).await?;
        sent += new.len();
        match done {
            Some(Ok((root, size))) => {
                return send(
                    stream,
                    &Frame::Done {
                        root: root.to_string(),
                        size,
                    },
                )
                .await;
            }
            Some(Err(reason)) => return send(stream, &Frame::Failed { reason }).await,
            None if closed => {
                let reason = "the download ended without a result".to_owned();
                return send(stream, &Frame::Failed { reason }).await;
            }
            None => {}
        }
        match tokio::time::timeout(FOLLOW_IDLE, progress.changed()).await {
            Ok(Ok(())) => {}
            // The sender is gone: read the last value once more, then end.
            Ok(Err(_)) => closed = true,
            Err(_) => {
                let reason = format!("no progress within {FOLLOW_IDLE:?}");
                return send(stream, &Frame::Failed { reason }).await;
            }
        }
    }
}

/// A peer's first answer about an artifact, with the stream its further frames come on.
pub(crate) struct Answer {
    pub peer: PeerId,
    pub first: Frame,
    pub stream: Stream,
    /// From opening the stream to the first frame.
    pub elapsed: Duration,
}

/// Why a peer could not be asked.
#[derive(Debug, thiserror::Error)]
pub enum ResolveError {
    #[error("cannot open a resolve stream to {peer}: {reason}")]
    Open { peer: PeerId, reason: String },
    #[error("resolve of {flat} with {peer}: {source}")]
    Wire {
        peer: PeerId,
        flat: FlatCid,
        #[source]
        source: WireError,
    },
    #[error("resolve of {flat} with {peer}: the stream ended without an answer")]
    NoAnswer { peer: PeerId, flat: FlatCid },
    #[error("resolve of {flat} with {peer}: no answer within {timeout:?}")]
    Timeout {
        peer: PeerId,
        flat: FlatCid,
        timeout: Duration,
    },
}

/// Ask `peer` about `flat` and wait up to `timeout` for its first frame. Cancel-safe (the
/// stream is dropped).
pub(crate) async fn ask(
    mut control: libp2p_stream::Control,
    peer: PeerId,
    flat: FlatCid,
    claiming: bool,
    timeout: Duration,
) -> Result<Answer, ResolveError> {
    let started = Instant::now();
    let exchange = async {
        let mut stream =
            control
                .open_stream(peer, PROTOCOL)
                .await
                .map_err(|e| ResolveError::Open {
                    peer,
                    reason: e.to_string(),
                })?;
        let wire = |source| ResolveError::Wire { peer, flat, source };
        let request = Request {
            flat: flat.to_string(),
            claiming,
        };
        wire::write_json(&mut stream, NAME, &request)
            .await
            .map_err(wire)?;
        match wire::read_json::<_, Frame>(&mut stream, NAME)
            .await
            .map_err(wire)?
        {
            Some(first) => Ok(Answer {
                peer,
                first,
                stream,
                elapsed: started.elapsed(),
            }),
            None => Err(ResolveError::NoAnswer { peer, flat }),
        }
    };
    match tokio::time::timeout(timeout, exchange).await {
        Ok(result) => result,
        Err(_) => Err(ResolveError::Timeout {
            peer,
            flat,
            timeout,
        }),
    }
}

/// The next frame of an answer's stream, `None` at its end. Not cancel-safe.
pub(crate) async fn next_frame(stream: &mut Stream) -> Result<Option<Frame>, WireError> {
    wire::read_json(stream, NAME).await
}
