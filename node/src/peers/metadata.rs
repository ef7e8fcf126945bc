//! `/cairn/metadata/1.0.0`: a peer's cached copy of a metadata document.
//!
//! Request: one JSON frame `{"ecosystem": "…", "key": "…"}`, with `"probe": true` when the
//! asker only wants to know whether the peer holds the document. Response: one JSON frame
//! `{"found": false}`, or `{"found": true, "upstream_url", "fetched_at", "etag",
//! "last_modified", "size"}` followed, unless probed, by one raw frame of `size` bytes (at most
//! [`MAX_BODY`]): the exact bytes upstream sent that peer. (A peer that predates `probe` sends
//! the body anyway; the asker closes the stream without reading it.) `upstream_url` never carries a user
//! name or password: they are stripped before sending and again on receipt.
//!
//! Every node serves its documents to any peer that can connect to it: whether a peer's copy
//! is trusted is the asker's decision (`PeerPolicy`), and the asker's adapter reads the
//! document (apt checks its signature) before it is indexed. Documents are public registry
//! data; a private swarm (swarm key) decides who can connect at all.

use std::sync::Arc;
use std::time::Duration;

use bytes::Bytes;
use cairn_peering::{LocalContent, PeerDocument, strip_userinfo};
use futures::AsyncWriteExt as _;
use futures::StreamExt as _;
use libp2p::{PeerId, Stream, StreamProtocol};
use serde::{Deserialize, Serialize};

use super::wire;

pub const PROTOCOL: StreamProtocol = StreamProtocol::new("/cairn/metadata/1.0.0");
const NAME: &str = "metadata";

/// Largest document body sent or accepted.
pub const MAX_BODY: usize = 64 << 20;
/// How long peers are asked for a document.
pub const DEADLINE: Duration = Duration::from_millis(2500);
/// Longest the server waits for a request or for the asker to take a write.
const IO_TIMEOUT: Duration = Duration::from_secs(30);

#[derive(Clone, Debug, Serialize, Deserialize)]
pub struct Request {
    pub ecosystem: String,
    pub key: String,
    /// Answer the header only: the asker will not take the copy (its policy refuses peers'
    /// metadata) and wants to say who holds it.
    #[serde(default, skip_serializing_if = "std::ops::Not::not")]
    pub probe: bool,
}

#[derive(Clone, Debug, Default, Serialize, Deserialize)]
pub struct Header {
    pub found: bool,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub upstream_url: Option<String>,
    #[serde(default)]
    pub fetched_at: i64,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub etag: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub last_modified: Option<String>,
    #[serde(default)]
    pub size: u64,
}

/// Answer one metadata stream from `peer` from this node's `content`.
pub(crate) async fn serve(content: Arc<dyn LocalContent>, peer: PeerId, mut stream: Stream) {
    match tokio::time::timeout(IO_TIMEOUT, answer(content, &mut stream)).await {
        Ok(Ok(())) => {}
        Ok(Err(e)) => tracing::debug!(%peer, "metadata: {e}"),
        Err(_) => tracing::debug!(%peer, "metadata: answer not taken within {IO_TIMEOUT:?}"),
    }
    let _ = tokio::time::timeout(IO_TIMEOUT, stream.close()).await;
}

async fn answer(content: Arc<dyn LocalContent>, stream: &mut Stream) -> Result<(), String> {
    let request: Request = wire::read_json(stream, NAME)
        .await
        .map_err(|e| e.to_string())?
        .ok_or("stream closed before a request")?;
    let (ecosystem, key) = (request.ecosystem.clone(), request.key.clone());
    let document = tokio::task::spawn_blocking(move || content.document(&ecosystem, &key))
        .await
        .map_err(|e| {
            format!(
                "metadata {}/{}: blocking task failed: {e}",
                request.ecosystem, request.key
            )
        })?;
    let document = match document {
        Ok(Some(document)) if document.body.len() <= MAX_BODY => Some(document),
        Ok(_) => None,
        Err(e) => {
            tracing::warn!(ecosystem = %request.ecosystem, key = %request.key, "metadata for a peer: {e}");
            None
        }
    };
    let Some(document) = document else {
        return wire::write_json(stream, NAME, &Header::default())
            .await
            .map_err(|e| e.to_string());
    };
    let header = Header {
        found: true,
        upstream_url: Some(strip_userinfo(&document.upstream_url).into_owned()),
        fetched_at: document.fetched_at,
        etag: document.etag,
        last_modified: document.last_modified,
        size: document.body.len() as u64,
    };
    wire::write_json(stream, NAME, &header)
        .await
        .map_err(|e| e.to_string())?;
    if request.probe {
        return Ok(());
    }
    wire::write_frame(stream, NAME, &document.body)
        .await
        .map_err(|e| e.to_string())
}

/// Send `request` to `peer` and read the answer's header; the stream is returned for the body.
/// Cancel-safe.
async fn open_and_ask(
    mut control: libp2p_stream::Control,
    peer: PeerId,
    request: &Request,
) -> Result<(Stream, Header), String> {
    let mut stream = control
        .open_stream(peer, PROTOCOL)
        .await
        .map_err(|e| format!("cannot open a metadata stream to {peer}: {e}"))?;
    wire::write_json(&mut stream, NAME, request)
        .await
        .map_err(|e| e.to_string())?;
    let header: Header = wire::read_json(&mut stream, NAME)
        .await
        .map_err(|e| e.to_string())?
        .ok_or_else(|| format!("{peer} closed the metadata stream without an answer"))?;
    Ok((stream, header))
}

/// Ask `peer` for document `key` of `ecosystem`. Cancel-safe.
async fn ask(
    control: libp2p_stream::Control,
    peer: PeerId,
    ecosystem: String,
    key: String,
) -> Result<Option<PeerDocument>, String> {
    let request = Request {
        ecosystem,
        key,
        probe: false,
    };
    let (mut stream, header) = open_and_ask(control, peer, &request).await?;
    if !header.found {
        return Ok(None);
    }
    let body = wire::read_frame(&mut stream, NAME, MAX_BODY)
        .await
        .map_err(|e| e.to_string())?
        .ok_or_else(|| format!("{peer} sent a metadata header without a body"))?;
    if body.len() as u64 != header.size {
        return Err(format!(
            "{peer} announced {} bytes and sent {}",
            header.size,
            body.len()
        ));
    }
    Ok(Some(PeerDocument {
        body: Bytes::from(body),
        // A peer's URL is never stored with credentials, whatever the peer sent.
        upstream_url: header
            .upstream_url
            .map(|url| strip_userinfo(&url).into_owned())
            .unwrap_or_default(),
        // The peer's clock, or a forged date, cannot make its copy fresher than now.
        fetched_at: header.fetched_at.min(now_ms()),
        etag: header.etag,
        last_modified: header.last_modified,
        peer: Arc::from(peer.to_string()),
    }))
}

/// Milliseconds since the Unix epoch (0 on a clock set before it).
fn now_ms() -> i64 {
    std::time::SystemTime::now()
        .duration_since(std::time::SystemTime::UNIX_EPOCH)
        .map_or(0, |d| d.as_millis() as i64)
}

/// `ask` put to every connected peer in parallel; the answers that came within [`DEADLINE`].
async fn ask_connected<T, F, Fut>(node: &crate::swarm::Node, ask: F) -> Vec<T>
where
    F: Fn(libp2p_stream::Control, PeerId) -> Fut,
    Fut: std::future::Future<Output = Result<T, String>>,
{
    let Ok(peers) = node.connected_peers().await else {
        return Vec::new();
    };
    let mut asks: futures::stream::FuturesUnordered<_> = peers
        .into_iter()
        .map(|info| ask(node.stream_control(), info.peer))
        .collect();
    let deadline = tokio::time::Instant::now() + DEADLINE;
    let mut answers = Vec::new();
    while let Ok(Some(answer)) = tokio::time::timeout_at(deadline, asks.next()).await {
        match answer {
            Ok(answer) => answers.push(answer),
            Err(e) => tracing::debug!("metadata: {e}"),
        }
    }
    answers
}

/// The connected peers' copies, asked in parallel within [`DEADLINE`], newest first.
pub(crate) async fn fetch(
    node: crate::swarm::Node,
    ecosystem: String,
    key: String,
) -> Vec<PeerDocument> {
    let mut copies: Vec<PeerDocument> = ask_connected(&node, |control, peer| {
        ask(control, peer, ecosystem.clone(), key.clone())
    })
    .await
    .into_iter()
    .flatten()
    .collect();
    copies.sort_by_key(|d| std::cmp::Reverse(d.fetched_at));
    copies
}

/// How many connected peers hold a copy of the document, asked in parallel within
/// [`DEADLINE`] with `probe` (the header, no body), taking no copy: what a node that refuses
/// peers' metadata tells its client.
pub(crate) async fn holders(node: crate::swarm::Node, ecosystem: String, key: String) -> usize {
    let request = Request {
        ecosystem,
        key,
        probe: true,
    };
    ask_connected(&node, |control, peer| {
        let request = request.clone();
        async move {
            let (mut stream, header) = open_and_ask(control, peer, &request).await?;
            let _ = stream.close().await;
            Ok(header.found)
        }
    })
    .await
    .into_iter()
    .filter(|found| *found)
    .count()
}
