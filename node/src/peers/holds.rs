//! `/cairn/holds/1.0.0`: which of a list of artifacts a peer holds, in one round trip. A node of
//! a private swarm asks its connected peers before it evicts, so that it lets go first of what
//! another node keeps, and keeps what may be the swarm's last copy.
//!
//! Request: one JSON frame `{"flats": ["<flat CID>", …]}`, at most [`MAX_FLATS`] of them.
//! Response: one JSON frame `{"held": ["<flat CID>", …]}`: those committed on the answering
//! node. A CID that does not parse is not held; a longer list is refused (the stream closed).
//! An answer only says what the peer holds now: it may evict it a moment later, so the asker
//! takes it as a preference, never as a promise.

use std::collections::HashSet;
use std::sync::Arc;
use std::time::Duration;

use cairn_ipld::cid::FlatCid;
use cairn_peering::LocalContent;
use futures::AsyncWriteExt as _;
use futures::StreamExt as _;
use libp2p::{PeerId, Stream, StreamProtocol};
use serde::{Deserialize, Serialize};

use super::wire;

pub const PROTOCOL: StreamProtocol = StreamProtocol::new("/cairn/holds/1.0.0");
const NAME: &str = "holds";
/// Flat CIDs asked about in one request (about 120 KiB of JSON at most).
pub const MAX_FLATS: usize = 1024;
/// How long the peers have to answer all the requests of one question.
pub const DEADLINE: Duration = Duration::from_secs(5);
/// Longest the server waits for a request or for the asker to take the answer.
const IO_TIMEOUT: Duration = Duration::from_secs(10);

#[derive(Clone, Debug, Serialize, Deserialize)]
pub struct Request {
    pub flats: Vec<String>,
}

#[derive(Clone, Debug, Default, Serialize, Deserialize)]
pub struct Answer {
    pub held: Vec<String>,
}

/// Answer one holds stream from `peer` from this node's `content`.
pub(crate) async fn serve(content: Arc<dyn LocalContent>, peer: PeerId, mut stream: Stream) {
    match tokio::time::timeout(IO_TIMEOUT, answer(content, &mut stream)).await {
        Ok(Ok(())) => {}
        Ok(Err(e)) => tracing::debug!(%peer, "holds: {e}"),
        Err(_) => tracing::debug!(%peer, "holds: answer not taken within {IO_TIMEOUT:?}"),
    }
    let _ = tokio::time::timeout(IO_TIMEOUT, stream.close()).await;
}

async fn answer(content: Arc<dyn LocalContent>, stream: &mut Stream) -> Result<(), String> {
    let request: Request = wire::read_json(stream, NAME)
        .await
        .map_err(|e| e.to_string())?
        .ok_or("stream closed before a request")?;
    if request.flats.len() > MAX_FLATS {
        return Err(format!(
            "a request names {} artifacts, more than {MAX_FLATS}",
            request.flats.len()
        ));
    }
    let held = tokio::task::spawn_blocking(move || {
        request
            .flats
            .into_iter()
            .filter(|text| {
                text.parse::<FlatCid>()
                    .is_ok_and(|flat| matches!(content.artifact(&flat), Ok(Some(_))))
            })
            .collect::<Vec<String>>()
    })
    .await
    .map_err(|e| format!("holds: blocking task failed: {e}"))?;
    wire::write_json(stream, NAME, &Answer { held })
        .await
        .map_err(|e| e.to_string())
}

/// Ask `peer` which of `flats` (at most [`MAX_FLATS`]) it holds. Cancel-safe.
async fn ask(
    mut control: libp2p_stream::Control,
    peer: PeerId,
    flats: Vec<FlatCid>,
) -> Result<Vec<FlatCid>, String> {
    let mut stream = control
        .open_stream(peer, PROTOCOL)
        .await
        .map_err(|e| format!("cannot open a holds stream to {peer}: {e}"))?;
    let asked: HashSet<FlatCid> = flats.iter().copied().collect();
    let request = Request {
        flats: flats.iter().map(ToString::to_string).collect(),
    };
    wire::write_json(&mut stream, NAME, &request)
        .await
        .map_err(|e| e.to_string())?;
    let answer: Answer = wire::read_json(&mut stream, NAME)
        .await
        .map_err(|e| e.to_string())?
        .ok_or_else(|| format!("{peer} closed the holds stream without an answer"))?;
    let _ = stream.close().await;
    // Only what was asked counts: a peer cannot make this node drop anything else.
    Ok(answer
        .held
        .iter()
        .filter_map(|text| text.parse::<FlatCid>().ok())
        .filter(|flat| asked.contains(flat))
        .collect())
}

/// Which of `flats` at least one connected peer holds: every peer asked in parallel, in
/// requests of [`MAX_FLATS`], the answers that came within [`DEADLINE`].
pub(crate) async fn held_by_peers(
    node: crate::swarm::Node,
    flats: Vec<FlatCid>,
) -> HashSet<FlatCid> {
    let Ok(peers) = node.connected_peers().await else {
        return HashSet::new();
    };
    let mut asks: futures::stream::FuturesUnordered<_> = peers
        .iter()
        .flat_map(|info| {
            flats
                .chunks(MAX_FLATS)
                .map(|chunk| ask(node.stream_control(), info.peer, chunk.to_vec()))
        })
        .collect();
    let deadline = tokio::time::Instant::now() + DEADLINE;
    let mut held = HashSet::new();
    while let Ok(Some(answer)) = tokio::time::timeout_at(deadline, asks.next()).await {
        match answer {
            Ok(flats) => held.extend(flats),
            Err(e) => tracing::debug!("holds: {e}"),
        }
    }
    held
}
