//! `Peers`, the engine's peer source, between real in-process nodes on 127.0.0.1, each serving
//! holdings kept in memory (`MemoryContent`: the node needs no engine and no store, only a
//! `LocalContent`): fetches by flat CID from one and two peers, a lying peer, a download still
//! under way, simultaneous misses, and metadata.

use std::fs::File;
use std::io::Write as _;
use std::sync::Arc;
use std::time::Duration;

use bytes::Bytes;
use cairn_ipld::cid::{Algorithm, Digest, FlatCid, RootCid};
use cairn_node::{BlockSource, Node, NodeConfig, NodeMetrics, PeerPolicy, Peers, PendingMap};
use cairn_peering::testing::{MemoryContent, noise};
use cairn_peering::{LeafProgress, PeerDocument, PeerFetch, PeerSource, PendingLeaves};
use cid::Cid;
use libp2p::Multiaddr;
use libp2p::multiaddr::Protocol;
use tokio::sync::watch;
use tokio::time::Instant;

/// Generous: the tests share two loaded cores.
const DEADLINE: Duration = Duration::from_secs(20);
const MIB: usize = 1 << 20;

/// One Cairn node: its holdings, a swarm, and its peer source (and a temp dir for downloads).
struct Peer {
    dir: tempfile::TempDir,
    content: MemoryContent,
    peers: Peers,
}

impl Peer {
    fn node(&self) -> &Node {
        self.peers.node()
    }

    fn id(&self) -> String {
        self.node().peer_id().to_string()
    }

    async fn address(&self) -> Multiaddr {
        self.node()
            .p2p_addrs()
            .await
            .expect("addresses")
            .into_iter()
            .find(|a| a.iter().any(|p| matches!(p, Protocol::Tcp(_))))
            .expect("a TCP address")
    }

    /// Hold `data` as a committed artifact.
    fn add(&self, data: &[u8]) -> (FlatCid, RootCid) {
        self.content.add(data)
    }

    fn peer_bytes(&self, from: &Peer) -> u64 {
        self.peers.metrics().received_from(&from.id())
    }

    fn bad_blocks(&self, from: &Peer) -> u64 {
        self.peers.metrics().bad_blocks_from(&from.id())
    }
}

/// Answers every want with the same wrong bytes.
struct LyingSource;

impl BlockSource for LyingSource {
    fn get(&self, _cid: &Cid) -> Option<Bytes> {
        Some(Bytes::from_static(b"not the block you wanted"))
    }
}

/// Holds every block, but takes seconds to read one: outrun by hedges, then dropped.
struct StallingSource;

impl BlockSource for StallingSource {
    fn get(&self, _cid: &Cid) -> Option<Bytes> {
        std::thread::sleep(cairn_node::peers::HEDGE_AFTER * 4);
        None
    }
}

/// Which Bitswap block source a test node serves.
#[derive(Clone, Copy, PartialEq, Eq)]
enum Serves {
    Content,
    Lies,
    Stalls,
}

fn tcp_localhost() -> Multiaddr {
    Multiaddr::empty()
        .with(Protocol::Ip4([127, 0, 0, 1].into()))
        .with(Protocol::Tcp(0))
}

async fn start_with(bootstrap: Vec<Multiaddr>, policy: PeerPolicy, serves: Serves) -> Peer {
    let _ = tracing_subscriber::fmt()
        .with_env_filter(tracing_subscriber::EnvFilter::from_default_env())
        .with_test_writer()
        .try_init();
    let dir = tempfile::tempdir().expect("tempdir");
    let content = MemoryContent::default();
    let config = NodeConfig {
        listen: vec![tcp_localhost()],
        bootstrap,
        mdns: false,
        ..NodeConfig::default()
    };
    let metrics = NodeMetrics::default();
    let peers = if serves == Serves::Content {
        // The one-step start the bin uses.
        Peers::start(config, Arc::new(content.clone()), policy, metrics)
            .await
            .expect("node starts")
    } else {
        let source: Arc<dyn BlockSource> = match serves {
            Serves::Lies => Arc::new(LyingSource),
            _ => Arc::new(StallingSource),
        };
        let node = Node::start(config, source).await.expect("node starts");
        let pending = PendingMap::default();
        Peers::new(node, Arc::new(content.clone()), pending, policy, metrics).expect("peers")
    };
    Peer {
        dir,
        content,
        peers,
    }
}

async fn start(bootstrap: Vec<Multiaddr>) -> Peer {
    start_with(bootstrap, PeerPolicy::default(), Serves::Content).await
}

/// Wait until `peer` is connected to each of `others`.
async fn connected(peer: &Peer, others: &[&Peer]) {
    let deadline = Instant::now() + DEADLINE;
    loop {
        let now: Vec<_> = peer
            .node()
            .connected_peers()
            .await
            .expect("peers")
            .into_iter()
            .map(|p| p.peer)
            .collect();
        if others.iter().all(|o| now.contains(&o.node().peer_id())) {
            return;
        }
        assert!(Instant::now() < deadline, "not connected: {now:?}");
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
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

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn fetches_an_artifact_from_one_peer() {
    let a = start(vec![]).await;
    let data = noise(3 * MIB + 17, 1);
    let (flat, _) = a.add(&data);
    let b = start(vec![a.address().await]).await;
    connected(&b, &[&a]).await;

    let started = Instant::now();
    let fetch = b
        .peers
        .fetch(flat, Some(data.len() as u64))
        .await
        .expect("A holds it");
    let got = read_all(fetch).await.expect("transfer");
    assert!(got == data, "bytes differ");
    eprintln!("one peer, {} bytes: {:?}", data.len(), started.elapsed());
    assert_eq!(b.peer_bytes(&a), data.len() as u64);

    // A one-leaf artifact, whose root is its only leaf.
    let small = noise(100, 8);
    let (flat, root) = a.add(&small);
    assert_eq!(root.0.codec(), cairn_ipld::cid::RAW);
    let fetch = b.peers.fetch(flat, None).await.expect("A holds it");
    assert_eq!(read_all(fetch).await.expect("transfer"), small);

    // An artifact nobody has: None within the lookup and claim bounds.
    let missing = Digest::of(Algorithm::Sha512, b"nobody").flat_cid();
    assert!(b.peers.fetch(missing, None).await.is_none());

    let described = b.peers.describe().await;
    assert_eq!(described["peer_id"], b.id());
    assert_eq!(described["private"], false);
    let listen = described["listen"][0].as_str().expect("a listen address");
    assert!(listen.ends_with(&format!("/p2p/{}", b.id())), "{listen}");
    assert_eq!(described["peers"][0]["peer"], a.id());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn fetches_an_artifact_from_two_peers() {
    let a = start(vec![]).await;
    let data = noise(12 * MIB + 5, 2);
    let (flat, _) = a.add(&data);
    let c = start(vec![a.address().await]).await;
    c.add(&data);
    let b = start(vec![a.address().await, c.address().await]).await;
    connected(&b, &[&a, &c]).await;

    let started = Instant::now();
    let fetch = b.peers.fetch(flat, None).await.expect("A and C hold it");
    let got = read_all(fetch).await.expect("transfer");
    assert!(got == data, "bytes differ");
    let (from_a, from_c) = (b.peer_bytes(&a), b.peer_bytes(&c));
    eprintln!(
        "two peers, {} bytes: {:?} (A {from_a}, C {from_c})",
        data.len(),
        started.elapsed()
    );
    assert!(from_a + from_c >= data.len() as u64);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_lying_peer_is_dropped_and_the_honest_one_finishes() {
    let data = noise(24 * MIB + 3, 3);
    let liar = start_with(vec![], PeerPolicy::default(), Serves::Lies).await;
    let (flat, _) = liar.add(&data);
    let honest = start(vec![liar.address().await]).await;
    honest.add(&data);
    let b = start(vec![liar.address().await, honest.address().await]).await;
    connected(&b, &[&liar, &honest]).await;

    let fetch = b
        .peers
        .fetch(flat, Some(data.len() as u64))
        .await
        .expect("held");
    let got = read_all(fetch).await.expect("transfer");
    assert!(got == data, "bytes differ");
    assert!(b.bad_blocks(&liar) >= 1, "the liar was never caught");
    assert_eq!(b.peer_bytes(&liar), 0);
    assert_eq!(b.peer_bytes(&honest), data.len() as u64);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_artifact_held_after_the_start_is_announced_by_flat_and_root() {
    let a = start(vec![]).await;
    // Added once the node runs, as a download committed or a bundle imported: the content's
    // changes announce it.
    let data = noise(2 * MIB + 1, 7);
    let (flat, root) = a.add(&data);
    let b = start(vec![a.address().await]).await;
    connected(&b, &[&a]).await;
    for cid in [flat.0, root.0] {
        let deadline = Instant::now() + DEADLINE;
        loop {
            let found = b
                .node()
                .find_providers(cid, Instant::now() + Duration::from_secs(2))
                .await
                .expect("lookup");
            if found.contains(&a.node().peer_id()) {
                break;
            }
            assert!(Instant::now() < deadline, "{cid} not announced");
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_stalling_peer_is_dropped_and_the_other_finishes() {
    let data = noise(24 * MIB + 3, 9);
    let staller = start_with(vec![], PeerPolicy::default(), Serves::Stalls).await;
    let (flat, _) = staller.add(&data);
    let honest = start(vec![staller.address().await]).await;
    honest.add(&data);
    let b = start(vec![staller.address().await, honest.address().await]).await;
    connected(&b, &[&staller, &honest]).await;

    let started = Instant::now();
    let fetch = b.peers.fetch(flat, None).await.expect("held");
    let got = read_all(fetch).await.expect("transfer");
    assert!(got == data, "bytes differ");
    assert_eq!(b.peer_bytes(&honest), data.len() as u64);
    assert!(
        started.elapsed() < cairn_node::peers::STALL,
        "waited for the stall bound"
    );
    eprintln!("with a stalling peer: {:?}", started.elapsed());
}

/// A hand-fed upstream download on `peer`: the temp file and the progress sender.
struct HandDownload {
    file: File,
    progress: watch::Sender<LeafProgress>,
    leaves: Vec<cairn_ipld::unixfs::Leaf>,
    written: usize,
}

impl HandDownload {
    fn start(peer: &Peer, flat: FlatCid, data: &[u8]) -> Self {
        let path = peer.dir.path().join("hand-download.part");
        let file = File::create(&path).expect("temp file");
        let reader = Arc::new(File::open(&path).expect("reopen"));
        let (progress, receiver) = watch::channel(LeafProgress::default());
        let mut builder = cairn_ipld::unixfs::DagBuilder::new();
        builder.update(data);
        let leaves = builder.finish().leaves;
        peer.peers.downloading(PendingLeaves {
            flat,
            file: reader,
            progress: receiver,
        });
        HandDownload {
            file,
            progress,
            leaves,
            written: 0,
        }
    }

    /// Write the first `leaves` leaves of `data` and list them.
    fn feed(&mut self, data: &[u8], leaves: usize) {
        let end = self.leaves[..leaves]
            .last()
            .map_or(0, |l| (l.offset + l.len) as usize);
        self.file
            .write_all(&data[self.written..end])
            .expect("write");
        self.file.flush().expect("flush");
        self.written = end;
        let listed = self.leaves[..leaves].to_vec();
        self.progress.send_modify(|p| p.leaves = listed);
    }

    /// Commit `data` on `peer` (as the engine does) and say so.
    fn commit(mut self, peer: &Peer, data: &[u8]) {
        let all = self.leaves.len();
        self.feed(data, all);
        let (_, root) = peer.add(data);
        self.progress
            .send_modify(|p| p.done = Some(Ok((root, data.len() as u64))));
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_download_under_way_is_fetched_before_it_is_done() {
    let a = start(vec![]).await;
    let b = start(vec![a.address().await]).await;
    connected(&b, &[&a]).await;
    let data = noise(5 * MIB + 100, 4);
    let flat = Digest::of(Algorithm::Sha512, &data).flat_cid();

    let mut download = HandDownload::start(&a, flat, &data);
    download.feed(&data, 2);
    let mut fetch = b
        .peers
        .fetch(flat, Some(data.len() as u64))
        .await
        .expect("A downloads it");
    // The two leaves written so far arrive while the download is still under way.
    let mut got = Vec::new();
    while got.len() < 2 * MIB {
        let chunk = tokio::time::timeout(DEADLINE, fetch.chunks.recv())
            .await
            .expect("a chunk in time")
            .expect("more chunks")
            .expect("no error");
        got.extend_from_slice(&chunk.data);
    }
    assert!(got[..] == data[..2 * MIB], "first leaves differ");
    download.commit(&a, &data);
    got.extend(read_all(fetch).await.expect("rest of the transfer"));
    assert!(got == data, "bytes differ");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn simultaneous_misses_go_upstream_once() {
    let a = start(vec![]).await;
    let b = start(vec![a.address().await]).await;
    connected(&b, &[&a]).await;
    connected(&a, &[&b]).await;
    let data = noise(2 * MIB + 9, 5);
    let flat = Digest::of(Algorithm::Sha512, &data).flat_cid();

    let size = Some(data.len() as u64);
    let mut at_a = tokio::spawn(a.peers.fetch(flat, size));
    let mut at_b = tokio::spawn(b.peers.fetch(flat, size));
    // The first to answer goes upstream; the other waits for it.
    let (first_is_a, result) = tokio::select! {
        result = &mut at_a => (true, result),
        result = &mut at_b => (false, result),
    };
    assert!(result.expect("task").is_none(), "first answer is not None");
    let (upstream, waiting) = if first_is_a { (&a, at_b) } else { (&b, at_a) };
    tokio::time::sleep(Duration::from_millis(300)).await;
    assert!(!waiting.is_finished(), "both nodes gave up on peers");

    let download = HandDownload::start(upstream, flat, &data);
    download.commit(upstream, &data);
    let fetch = tokio::time::timeout(DEADLINE, waiting)
        .await
        .expect("the waiter in time")
        .expect("task")
        .expect("the waiter fetches from the one that went upstream");
    let got = read_all(fetch).await.expect("transfer");
    assert!(got == data, "bytes differ");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn newest_metadata_from_peers() {
    let put = |peer: &Peer, body: &[u8], fetched_at: i64| {
        let document = PeerDocument {
            body: Bytes::copy_from_slice(body),
            upstream_url: "http://upstream.invalid/left-pad".into(),
            fetched_at,
            etag: Some("\"v1\"".into()),
            last_modified: None,
            peer: Arc::from("self"),
        };
        peer.content.put_document("npm", "left-pad", document);
    };
    let a = start(vec![]).await;
    put(&a, b"{\"name\":\"left-pad\",\"new\":true}", 2000);
    let c = start(vec![a.address().await]).await;
    put(&c, b"{\"name\":\"left-pad\"}", 1000);
    let trusting = PeerPolicy {
        trust_metadata: true,
    };
    let b = start_with(
        vec![a.address().await, c.address().await],
        trusting,
        Serves::Content,
    )
    .await;
    connected(&b, &[&a, &c]).await;

    let copies = b.peers.metadata("npm".into(), "left-pad".into()).await;
    assert_eq!(copies.len(), 2, "both peers' copies");
    let (newest, older) = (&copies[0], &copies[1]);
    assert_eq!(&newest.body[..], b"{\"name\":\"left-pad\",\"new\":true}");
    assert_eq!(newest.fetched_at, 2000);
    assert_eq!(&*newest.peer, a.id());
    assert_eq!(newest.etag.as_deref(), Some("\"v1\""));
    assert_eq!((older.fetched_at, &*older.peer), (1000, c.id().as_str()));
    assert!(
        b.peers
            .metadata("npm".into(), "absent".into())
            .await
            .is_empty()
    );

    // An open network without trust_metadata takes no documents from peers.
    let wary = start(vec![a.address().await]).await;
    connected(&wary, &[&a]).await;
    assert!(
        wary.peers
            .metadata("npm".into(), "left-pad".into())
            .await
            .is_empty()
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_node_started_in_one_step_announces_and_serves_what_its_content_already_holds() {
    // Holdings from before the start, as a store reopened after a restart has them.
    let content = MemoryContent::default();
    let data = noise(2 * MIB + 33, 10);
    let (flat, root) = content.add(&data);
    let config = NodeConfig {
        listen: vec![tcp_localhost()],
        mdns: false,
        ..NodeConfig::default()
    };
    let a = Peers::start(
        config,
        Arc::new(content),
        PeerPolicy::default(),
        NodeMetrics::default(),
    )
    .await
    .expect("node starts");
    let address = a
        .node()
        .p2p_addrs()
        .await
        .expect("addresses")
        .into_iter()
        .find(|a| a.iter().any(|p| matches!(p, Protocol::Tcp(_))))
        .expect("a TCP address");
    let b = start(vec![address]).await;
    // Announced by the start itself, by flat CID and root.
    for cid in [flat.0, root.0] {
        let deadline = Instant::now() + DEADLINE;
        loop {
            let found = b
                .node()
                .find_providers(cid, Instant::now() + Duration::from_secs(2))
                .await
                .expect("lookup");
            if found.contains(&a.node().peer_id()) {
                break;
            }
            assert!(Instant::now() < deadline, "{cid} not announced");
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
    }
    let fetch = b
        .peers
        .fetch(flat, Some(data.len() as u64))
        .await
        .expect("A holds it");
    assert!(
        read_all(fetch).await.expect("transfer") == data,
        "bytes differ"
    );
    assert_eq!(
        b.peers
            .metrics()
            .received_from(&a.node().peer_id().to_string()),
        data.len() as u64
    );
}

/// A node of the private swarm whose key is in `key`.
async fn start_private(key: &std::path::Path, bootstrap: Vec<Multiaddr>) -> Peer {
    let dir = tempfile::tempdir().expect("tempdir");
    let content = MemoryContent::default();
    let config = NodeConfig {
        listen: vec![tcp_localhost()],
        bootstrap,
        mdns: false,
        swarm_key: Some(key.to_path_buf()),
        ..NodeConfig::default()
    };
    let peers = Peers::start(
        config,
        Arc::new(content.clone()),
        PeerPolicy::default(),
        NodeMetrics::default(),
    )
    .await
    .expect("node starts");
    Peer {
        dir,
        content,
        peers,
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_private_node_learns_which_of_its_files_its_peers_hold_and_an_open_one_does_not_ask() {
    let keys = tempfile::tempdir().expect("tempdir");
    let key = keys.path().join("swarm.key");
    std::fs::write(
        &key,
        format!("/key/swarm/psk/1.0.0/\n/base16/\n{}\n", "5e".repeat(32)),
    )
    .expect("key");
    let a = start_private(&key, vec![]).await;
    let c = start_private(&key, vec![a.address().await]).await;
    let b = start_private(&key, vec![a.address().await, c.address().await]).await;
    connected(&b, &[&a, &c]).await;
    let (on_a, _) = a.add(&noise(3000, 61));
    let (on_c, _) = c.add(&noise(5000, 63));
    let (on_b, _) = b.add(&noise(7000, 65));
    let (nowhere, _) = MemoryContent::default().add(&noise(9000, 67));
    // A long list, in several requests: the answers put together.
    let mut asked = vec![on_a, on_b, on_c, nowhere];
    for n in 0..2500u64 {
        let (other, _) = MemoryContent::default().add(&n.to_le_bytes());
        asked.push(other);
    }
    let held = b.peers.held_elsewhere(asked).await;
    assert_eq!(held, [on_a, on_c].into_iter().collect());

    // Outside a private swarm, peers' copies are not counted on.
    let holder = start(vec![]).await;
    let (held_open, _) = holder.add(&noise(3000, 69));
    let open = start(vec![holder.address().await]).await;
    connected(&open, &[&holder]).await;
    assert!(open.peers.held_elsewhere(vec![held_open]).await.is_empty());
}
