//! In-process swarms on 127.0.0.1: Bitswap between nodes (blocks, DAGs, lies, DONT_HAVE),
//! private networks, and provider records over Kademlia.

use cairn_peering::testing::noise;

use std::collections::HashMap;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Duration;

use bytes::Bytes;
use cairn_node::{BlockSource, FetchError, Node, NodeConfig};
use cid::Cid;
use libp2p::Multiaddr;
use libp2p::multiaddr::Protocol;
use tokio::time::Instant;

/// Generous: the tests share two loaded cores.
const TIMEOUT: Duration = Duration::from_secs(60);

/// Blocks held in memory.
#[derive(Default)]
struct MapSource(HashMap<Cid, Bytes>);

impl BlockSource for MapSource {
    fn get(&self, cid: &Cid) -> Option<Bytes> {
        self.0.get(cid).cloned()
    }
}

/// Answers every want with the same wrong bytes.
struct LyingSource;

impl BlockSource for LyingSource {
    fn get(&self, _cid: &Cid) -> Option<Bytes> {
        Some(Bytes::from_static(b"not the block you wanted"))
    }
}

fn tcp_localhost() -> Multiaddr {
    Multiaddr::empty()
        .with(Protocol::Ip4([127, 0, 0, 1].into()))
        .with(Protocol::Tcp(0))
}

fn quic_localhost() -> Multiaddr {
    Multiaddr::empty()
        .with(Protocol::Ip4([127, 0, 0, 1].into()))
        .with(Protocol::Udp(0))
        .with(Protocol::QuicV1)
}

fn config(bootstrap: Vec<Multiaddr>, swarm_key: Option<PathBuf>) -> NodeConfig {
    NodeConfig {
        listen: vec![tcp_localhost()],
        bootstrap,
        swarm_key,
        mdns: false,
        ..NodeConfig::default()
    }
}

async fn start(config: NodeConfig, source: impl BlockSource) -> Node {
    // RUST_LOG shows the swarm's own log when a test here needs looking into.
    let _ = tracing_subscriber::fmt()
        .with_env_filter(tracing_subscriber::EnvFilter::from_default_env())
        .with_test_writer()
        .try_init();
    Node::start(config, Arc::new(source))
        .await
        .expect("node starts")
}

/// `node`'s first TCP address with its peer ID, to bootstrap or dial.
async fn address_of(node: &Node) -> Multiaddr {
    let addresses = node.listen_addrs().await.expect("listen addresses");
    let tcp = addresses
        .into_iter()
        .find(|a| a.iter().any(|p| matches!(p, Protocol::Tcp(_))))
        .expect("a TCP address");
    tcp.with(Protocol::P2p(node.peer_id()))
}

fn swarm_key(dir: &Path, name: &str, byte: u8) -> PathBuf {
    let path = dir.join(name);
    let hex: String = std::iter::repeat_n(format!("{byte:02x}"), 32).collect();
    std::fs::write(&path, format!("/key/swarm/psk/1.0.0/\n/base16/\n{hex}\n")).expect("write key");
    path
}

/// A file's UnixFS DAG as a block source: its leaves and its inner nodes.
fn dag_source(data: &[u8]) -> (Cid, Vec<(Cid, Bytes)>) {
    let mut builder = cairn_ipld::unixfs::DagBuilder::new();
    builder.update(data);
    let dag = builder.finish();
    let mut blocks: Vec<(Cid, Bytes)> = dag
        .nodes
        .into_iter()
        .map(|(cid, block)| (cid, Bytes::from(block)))
        .collect();
    for leaf in dag.leaves {
        let start = leaf.offset as usize;
        let end = start + leaf.len as usize;
        blocks.push((leaf.cid, Bytes::copy_from_slice(&data[start..end])));
    }
    (dag.root, blocks)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn fetches_raw_and_dag_pb_blocks_and_whole_dags() {
    let small = Bytes::from_static(b"hello from node A");
    let small_cid = cairn_ipld::cid::raw_block_cid(&small);
    let data = noise((2 << 20) + 100, 0);
    let (root, blocks) = dag_source(&data);
    assert_eq!(root.codec(), cairn_ipld::cid::DAG_PB);
    let mut source = MapSource::default();
    source.0.insert(small_cid, small.clone());
    source.0.extend(blocks.iter().cloned());

    let started = Instant::now();
    let a = start(config(vec![], None), source).await;
    let b = start(
        config(vec![address_of(&a).await], None),
        MapSource::default(),
    )
    .await;

    let got = b
        .get_block(a.peer_id(), small_cid, TIMEOUT)
        .await
        .expect("raw block");
    assert_eq!(got, small);
    let root_block = blocks
        .iter()
        .find(|(cid, _)| *cid == root)
        .expect("root held");
    let got = b
        .get_block(a.peer_id(), root, TIMEOUT)
        .await
        .expect("dag-pb block");
    assert_eq!(got, root_block.1);

    let dag = b
        .bitswap()
        .fetch_dag(a.peer_id(), root, TIMEOUT)
        .await
        .expect("whole DAG");
    assert_eq!(dag.len(), blocks.len());
    assert_eq!(dag[0].0, root);
    let file: Vec<u8> = dag[1..]
        .iter()
        .flat_map(|(_, block)| block.to_vec())
        .collect();
    assert_eq!(file, data);

    let peers = b.connected_peers().await.expect("peers");
    assert!(peers.iter().any(|p| p.peer == a.peer_id()), "{peers:?}");
    eprintln!("fetch test: {:?}", started.elapsed());
}

// B fetches once its bootstrap connection to A is up. B listens on nothing, so there is one
// connection, B's. Right after it is made, A's answer to the first want could wait for good
// for a stream to B (ARCHITECTURE.md, "Trade-offs and known limits"); the open is bounded now,
// and B asks again, as the transfer engine does.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn fetches_over_quic() {
    let block = Bytes::from_static(b"over QUIC");
    let cid = cairn_ipld::cid::raw_block_cid(&block);
    let mut source = MapSource::default();
    source.0.insert(cid, block.clone());
    let a = start(
        NodeConfig {
            listen: vec![quic_localhost()],
            ..config(vec![], None)
        },
        source,
    )
    .await;
    let quic = a.listen_addrs().await.expect("addresses")[0]
        .clone()
        .with(Protocol::P2p(a.peer_id()));
    // B listens on nothing: only its dial to A makes a connection, so A has no address of B
    // to dial back and the two cannot race into two QUIC connections.
    let b = start(
        NodeConfig {
            listen: vec![],
            ..config(vec![quic], None)
        },
        MapSource::default(),
    )
    .await;
    let deadline = std::time::Instant::now() + TIMEOUT;
    while !b
        .connected_peers()
        .await
        .expect("peers")
        .iter()
        .any(|p| p.peer == a.peer_id())
    {
        assert!(
            std::time::Instant::now() < deadline,
            "B never connected to A over QUIC"
        );
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    // An answer whose stream could not be opened in time is lost; a fetch asks again, as the
    // transfer engine does.
    let mut last = None;
    for _ in 0..3 {
        match b.get_block(a.peer_id(), cid, TIMEOUT / 3).await {
            Ok(got) => {
                assert_eq!(got, block);
                return;
            }
            Err(e) => last = Some(e),
        }
    }
    panic!("no block over QUIC in three asks: {last:?}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn wrong_bytes_are_a_bad_block() {
    let a = start(config(vec![], None), LyingSource).await;
    let b = start(
        config(vec![address_of(&a).await], None),
        MapSource::default(),
    )
    .await;
    let cid = cairn_ipld::cid::raw_block_cid(b"the real block");
    match b.get_block(a.peer_id(), cid, TIMEOUT).await {
        Err(FetchError::BadBlock { peer, cid: bad }) => {
            assert_eq!(peer, a.peer_id());
            assert_eq!(bad, cid);
        }
        other => panic!("expected BadBlock, got {other:?}"),
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn missing_block_is_dont_have() {
    let a = start(config(vec![], None), MapSource::default()).await;
    let b = start(
        config(vec![address_of(&a).await], None),
        MapSource::default(),
    )
    .await;
    let cid = cairn_ipld::cid::raw_block_cid(b"nobody has this");
    let asked = Instant::now();
    match b.get_block(a.peer_id(), cid, TIMEOUT).await {
        Err(FetchError::NotFound { peer, .. }) => assert_eq!(peer, a.peer_id()),
        other => panic!("expected NotFound, got {other:?}"),
    }
    // An answer, not the timeout.
    assert!(asked.elapsed() < TIMEOUT / 2, "{:?}", asked.elapsed());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn swarm_key_keeps_others_out() {
    let dir = tempfile::tempdir().expect("tempdir");
    let key = swarm_key(dir.path(), "swarm.key", 0x11);
    let other_key = swarm_key(dir.path(), "other.key", 0x22);
    let block = Bytes::from_static(b"private block");
    let cid = cairn_ipld::cid::raw_block_cid(&block);
    let mut source = MapSource::default();
    source.0.insert(cid, block.clone());

    // QUIC is asked for but skipped: a private node listens on TCP only.
    let a = start(
        NodeConfig {
            listen: vec![tcp_localhost(), quic_localhost()],
            ..config(vec![], Some(key.clone()))
        },
        source,
    )
    .await;
    let a_address = address_of(&a).await;
    let a_addresses = a.listen_addrs().await.expect("addresses");
    assert!(
        a_addresses
            .iter()
            .all(|a| !a.iter().any(|p| matches!(p, Protocol::QuicV1))),
        "{a_addresses:?}"
    );

    let member = start(
        config(vec![a_address.clone()], Some(key)),
        MapSource::default(),
    )
    .await;
    let got = member
        .get_block(a.peer_id(), cid, TIMEOUT)
        .await
        .expect("same key: block");
    assert_eq!(got, block);

    for outsider_key in [Some(other_key), None] {
        let outsider = start(config(vec![], outsider_key.clone()), MapSource::default()).await;
        let dial = tokio::time::timeout(TIMEOUT, outsider.dial(a_address.clone())).await;
        assert!(
            !matches!(dial, Ok(Ok(()))),
            "key {outsider_key:?} connected to a private node"
        );
        let fetch = outsider
            .get_block(a.peer_id(), cid, Duration::from_secs(20))
            .await;
        assert!(
            fetch.is_err(),
            "key {outsider_key:?} fetched a private block"
        );
        let peers = outsider.connected_peers().await.expect("peers");
        assert!(peers.iter().all(|p| p.peer != a.peer_id()), "{peers:?}");
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn provider_record_found_through_bootstrap_peer() {
    let a = start(config(vec![], None), MapSource::default()).await;
    let b = start(
        config(vec![address_of(&a).await], None),
        MapSource::default(),
    )
    .await;
    let cid = cairn_ipld::cid::raw_block_cid(b"provided by A");
    a.provide(cid).await.expect("provide");
    let providers = b
        .find_providers(cid, Instant::now() + TIMEOUT)
        .await
        .expect("providers");
    assert_eq!(providers, vec![a.peer_id()]);

    // The key is the multihash: the dag-pb CID of the same digest finds the same record.
    let same_digest = Cid::new_v1(cairn_ipld::cid::DAG_PB, *cid.hash());
    let providers = b
        .find_providers(same_digest, Instant::now() + TIMEOUT)
        .await
        .expect("providers");
    assert_eq!(providers, vec![a.peer_id()]);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn provider_record_found_two_hops_away() {
    let b = start(config(vec![], None), MapSource::default()).await;
    let b_address = address_of(&b).await;
    let a = start(config(vec![b_address.clone()], None), MapSource::default()).await;
    let c = start(config(vec![b_address], None), MapSource::default()).await;
    let cid = cairn_ipld::cid::raw_block_cid(b"provided by A, found by C");
    a.provide(cid).await.expect("provide");
    let providers = c
        .find_providers(cid, Instant::now() + TIMEOUT)
        .await
        .expect("providers");
    assert!(providers.contains(&a.peer_id()), "{providers:?}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_allow_list_keeps_every_other_peer_out() {
    let block = Bytes::from_static(b"for listed peers only");
    let cid = cairn_ipld::cid::raw_block_cid(&block);
    let listed = start(config(vec![], None), MapSource::default()).await;
    let mut source = MapSource::default();
    source.0.insert(cid, block.clone());
    let guarded = start(
        NodeConfig {
            allow_peers: vec![listed.peer_id()],
            ..config(vec![], None)
        },
        source,
    )
    .await;
    let address = address_of(&guarded).await;

    listed
        .dial(address.clone())
        .await
        .expect("a listed peer connects");
    let got = listed
        .get_block(guarded.peer_id(), cid, TIMEOUT)
        .await
        .expect("a listed peer fetches");
    assert_eq!(got, block);

    let stranger = start(config(vec![], None), MapSource::default()).await;
    let dialed = tokio::time::timeout(TIMEOUT, stranger.dial(address)).await;
    let fetched = stranger
        .get_block(guarded.peer_id(), cid, Duration::from_secs(5))
        .await;
    assert!(
        fetched.is_err(),
        "a peer not on the list fetched a block (dial: {dialed:?})"
    );
    let peers = guarded.connected_peers().await.expect("peers");
    assert!(
        peers.iter().all(|p| p.peer != stranger.peer_id()),
        "the stranger stays connected: {peers:?}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn inbound_connections_past_the_cap_are_refused() {
    // A cap of 4 lets 3 connections in (a quarter is kept for this node's own dials).
    let capped = start(
        NodeConfig {
            max_connections: 4,
            ..config(vec![], None)
        },
        MapSource::default(),
    )
    .await;
    let address = address_of(&capped).await;
    let mut dialers = Vec::new();
    for _ in 0..7 {
        let dialer = start(config(vec![], None), MapSource::default()).await;
        let _ = tokio::time::timeout(TIMEOUT, dialer.dial(address.clone())).await;
        dialers.push(dialer);
    }
    // A refused connection may look established to its dialer for a moment.
    tokio::time::sleep(Duration::from_secs(2)).await;
    let held = capped.connected_peers().await.expect("peers");
    assert!(held.len() <= 3, "the capped node holds {held:?}");
    let mut admitted = 0;
    for dialer in &dialers {
        let peers = dialer.connected_peers().await.expect("peers");
        if peers.iter().any(|p| p.peer == capped.peer_id()) {
            admitted += 1;
        }
    }
    assert!(
        (1..=3).contains(&admitted),
        "{admitted} of 7 dialers connected"
    );
}
