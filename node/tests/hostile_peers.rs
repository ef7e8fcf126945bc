//! Peers that misbehave on purpose, built from Cairn's own node crate: one that answers every
//! resolve with "downloading" and then sends nothing, and one whose metadata is dated in the
//! future. A miss must fall through in seconds, the staller must not be asked again, honest
//! peers (connected, or found in the DHT after the staller answered) must still serve, and a
//! document's date must never be later than now.

use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::Duration;

use bytes::Bytes;
use cairn_ipld::cid::{Algorithm, Digest, FlatCid};
use cairn_node::{BlockSource, Node, NodeConfig, NodeMetrics, PeerPolicy, Peers};
use cairn_peering::testing::{MemoryContent, noise};
use cairn_peering::{PeerDocument, PeerFetch, PeerSource};
use cid::Cid;
use futures::{AsyncReadExt as _, AsyncWriteExt as _, StreamExt as _};
use libp2p::multiaddr::Protocol;
use libp2p::{Multiaddr, StreamProtocol};
use tokio::time::Instant;

/// A hang-catcher, not a benchmark: a miss that waits for a silent peer's full idle timeout
/// (30 s) fails it, one that gives up within the first-progress limit (5 s) passes on two
/// loaded cores.
const FALLS_THROUGH_WITHIN: Duration = Duration::from_secs(15);
const DEADLINE: Duration = Duration::from_secs(20);

/// A Bitswap block source that has nothing.
struct Empty;

impl BlockSource for Empty {
    fn get(&self, _cid: &Cid) -> Option<Bytes> {
        None
    }
}

fn tcp_localhost() -> Multiaddr {
    Multiaddr::empty()
        .with(Protocol::Ip4([127, 0, 0, 1].into()))
        .with(Protocol::Tcp(0))
}

fn config(bootstrap: Vec<Multiaddr>) -> NodeConfig {
    NodeConfig {
        listen: vec![tcp_localhost()],
        bootstrap,
        mdns: false,
        ..NodeConfig::default()
    }
}

async fn address(node: &Node) -> Multiaddr {
    node.p2p_addrs()
        .await
        .expect("addresses")
        .into_iter()
        .find(|a| a.iter().any(|p| matches!(p, Protocol::Tcp(_))))
        .expect("a TCP address")
}

/// An honest Cairn node: its holdings, a swarm, its peer source.
struct Honest {
    content: MemoryContent,
    peers: Peers,
}

async fn honest(bootstrap: Vec<Multiaddr>, policy: PeerPolicy) -> Honest {
    let _ = tracing_subscriber::fmt()
        .with_env_filter(tracing_subscriber::EnvFilter::from_default_env())
        .with_test_writer()
        .try_init();
    let content = MemoryContent::default();
    let peers = Peers::start(
        config(bootstrap),
        Arc::new(content.clone()),
        policy,
        NodeMetrics::default(),
    )
    .await
    .expect("node starts");
    Honest { content, peers }
}

/// Milliseconds since the Unix epoch.
fn now_ms() -> i64 {
    std::time::SystemTime::now()
        .duration_since(std::time::SystemTime::UNIX_EPOCH)
        .expect("a clock after 1970")
        .as_millis() as i64
}

/// Wait until `node` is connected to `other`.
async fn connected(node: &Node, other: &Node) {
    let deadline = Instant::now() + DEADLINE;
    while !node
        .connected_peers()
        .await
        .expect("peers")
        .iter()
        .any(|p| p.peer == other.peer_id())
    {
        assert!(Instant::now() < deadline, "never connected");
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

/// A node that answers every resolve request with `{"type":"downloading"}` and then sends
/// nothing, holding the stream open; counts the requests.
async fn staller() -> (Node, Arc<AtomicUsize>) {
    let node = Node::start(config(vec![]), Arc::new(Empty))
        .await
        .expect("node starts");
    let mut streams = node
        .stream_control()
        .accept(StreamProtocol::new("/cairn/resolve/1.0.0"))
        .expect("accept resolve");
    let asked = Arc::new(AtomicUsize::new(0));
    let count = asked.clone();
    tokio::spawn(async move {
        while let Some((_, mut stream)) = streams.next().await {
            count.fetch_add(1, Ordering::SeqCst);
            tokio::spawn(async move {
                // The request: a uvarint length, then JSON (read and ignored).
                let mut len = 0usize;
                for shift in (0..35).step_by(7) {
                    let mut byte = [0u8];
                    if stream.read_exact(&mut byte).await.is_err() {
                        return;
                    }
                    len |= usize::from(byte[0] & 0x7f) << shift;
                    if byte[0] & 0x80 == 0 {
                        break;
                    }
                }
                let mut request = vec![0u8; len.min(1 << 16)];
                if stream.read_exact(&mut request).await.is_err() {
                    return;
                }
                let answer = br#"{"type":"downloading"}"#;
                let mut frame = Vec::new();
                cairn_ipld::unixfs::put_varint(&mut frame, answer.len() as u64);
                frame.extend_from_slice(answer);
                if stream.write_all(&frame).await.is_err() || stream.flush().await.is_err() {
                    return;
                }
                // Never a leaf, never the end.
                tokio::time::sleep(Duration::from_secs(300)).await;
                drop(stream);
            });
        }
    });
    (node, asked)
}

/// Every byte of a transfer, or its error.
async fn read_all(mut fetch: PeerFetch) -> Result<Vec<u8>, String> {
    let mut out = Vec::new();
    while let Some(chunk) = tokio::time::timeout(DEADLINE, fetch.chunks.recv())
        .await
        .map_err(|_| "transfer stalled".to_owned())?
    {
        out.extend_from_slice(&chunk?.data);
    }
    Ok(out)
}

fn flat_of(data: &[u8]) -> FlatCid {
    Digest::of(Algorithm::Sha512, data).flat_cid()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_peer_that_claims_a_download_and_sends_nothing_is_given_up_in_seconds_and_not_asked_again()
 {
    let (bad, asked) = staller().await;
    let b = honest(vec![address(&bad).await], PeerPolicy::default()).await;
    connected(b.peers.node(), &bad).await;

    let first = noise(2 << 20, 1);
    let started = Instant::now();
    let fetch = b
        .peers
        .fetch(flat_of(&first), Some(first.len() as u64))
        .await;
    if let Some(fetch) = fetch {
        let result = read_all(fetch).await;
        assert!(
            result.is_err(),
            "the staller sent no byte, yet the transfer ended well"
        );
    }
    let elapsed = started.elapsed();
    assert!(
        elapsed < FALLS_THROUGH_WITHIN,
        "the miss fell through after {elapsed:?}"
    );
    assert_eq!(
        asked.load(Ordering::SeqCst),
        1,
        "the staller was asked once"
    );

    // Another artifact: the staller is in the penalty box, so nobody is asked and the fetch
    // says so (go upstream) without a transfer.
    let second = noise(1 << 20, 2);
    let started = Instant::now();
    let fetch = b
        .peers
        .fetch(flat_of(&second), Some(second.len() as u64))
        .await;
    assert!(fetch.is_none(), "no peer can serve the second artifact");
    let elapsed = started.elapsed();
    assert!(
        elapsed < FALLS_THROUGH_WITHIN,
        "the second miss fell through after {elapsed:?}"
    );
    assert_eq!(
        asked.load(Ordering::SeqCst),
        1,
        "the staller was not asked again"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_honest_peer_still_serves_while_a_staller_is_dropped() {
    let (bad, asked) = staller().await;
    let a = honest(vec![address(&bad).await], PeerPolicy::default()).await;
    let data = noise(3 << 20, 3);
    let (flat, _) = a.content.add(&data);
    let b = honest(
        vec![address(&bad).await, address(a.peers.node()).await],
        PeerPolicy::default(),
    )
    .await;
    connected(b.peers.node(), &bad).await;
    connected(b.peers.node(), a.peers.node()).await;

    let fetch = b
        .peers
        .fetch(flat, Some(data.len() as u64))
        .await
        .expect("a peer can serve it");
    let got = read_all(fetch).await.expect("the honest peer finishes");
    assert!(got == data, "bytes differ");
    assert_eq!(asked.load(Ordering::SeqCst), 1);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_peer_document_dated_in_the_future_is_dated_now() {
    let a = honest(vec![], PeerPolicy::default()).await;
    let body = b"{\"name\":\"left-pad\"}";
    let hour_ahead = now_ms() + 3_600_000;
    let document = PeerDocument {
        body: Bytes::from_static(body),
        upstream_url: "http://upstream.invalid/left-pad".into(),
        fetched_at: hour_ahead,
        etag: None,
        last_modified: None,
        peer: Arc::from("self"),
    };
    a.content.put_document("npm", "left-pad", document);
    let trusting = PeerPolicy {
        trust_metadata: true,
    };
    let b = honest(vec![address(a.peers.node()).await], trusting).await;
    connected(b.peers.node(), a.peers.node()).await;

    let copies = b.peers.metadata("npm".into(), "left-pad".into()).await;
    assert_eq!(copies.len(), 1);
    assert_eq!(&copies[0].body[..], body);
    assert!(
        copies[0].fetched_at <= now_ms(),
        "fetched_at {} is in the future",
        copies[0].fetched_at
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn providers_the_lookup_finds_join_a_transfer_a_staller_started() {
    let (bad, asked) = staller().await;
    let h = honest(vec![address(&bad).await], PeerPolicy::default()).await;
    let data = noise(2 << 20, 4);
    // Announced as the content says it holds it, as a store commit is.
    let (flat, _) = h.content.add(&data);
    // The record is at the staller, the only DHT server the asker knows.
    let deadline = Instant::now() + DEADLINE;
    while !bad
        .find_providers(flat.0, Instant::now() + Duration::from_secs(1))
        .await
        .expect("lookup")
        .contains(&h.peers.node().peer_id())
    {
        assert!(
            Instant::now() < deadline,
            "the holder's record never arrived"
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    let b = honest(vec![address(&bad).await], PeerPolicy::default()).await;
    connected(b.peers.node(), &bad).await;
    // Usually the asker is not connected to the holder (the DHT's bootstrap may dial it, now
    // and then): then the staller answers first and only the lookup names the holder.
    let fetch = b
        .peers
        .fetch(flat, Some(data.len() as u64))
        .await
        .expect("a peer can serve it");
    let got = read_all(fetch)
        .await
        .expect("the provider the lookup found finishes");
    assert!(got == data, "bytes differ");
    assert_eq!(asked.load(Ordering::SeqCst), 1);
}
