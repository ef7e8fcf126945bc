//! The libp2p node: transports, discovery, the DHT and Bitswap, run on tokio.
//!
//! Shape: [`Node`] is a cloneable handle with a bounded command
//! channel and oneshot replies; an event loop task owns the [`Swarm`](libp2p::Swarm). Bitswap
//! does not go through the loop: it talks to the swarm through its own `libp2p-stream` control.
//!
//! Stack:
//! - TCP + noise + yamux; with a swarm key, noise's handshake is bound to it (its prologue, see
//!   `transport.rs`), so only nodes with the same key complete it;
//! - QUIC, but only without a swarm key: QUIC's TLS handshake cannot carry the key, so a
//!   private node listens and dials on TCP only (the QUIC listen addresses are skipped with a
//!   warning);
//! - identify (announcing the protocols the handlers accept, Bitswap included), ping (RTTs),
//!   mDNS (optional), Kademlia in server mode under a private protocol name (provider records
//!   keyed by multihash, docs/protocols.md), and an allow-list that refuses connections from
//!   peers not listed when the list is not empty.
//!
//! Files: this one holds the handle and its configuration; `transport.rs` the transports,
//! connection caps and allow-list; `identity.rs` the persisted key; `dht.rs` the Kademlia set-up
//! and its provider-record limits; `behaviour.rs` the behaviours and their assembly into a
//! swarm; `event_loop.rs` the task that owns it.

mod behaviour;
mod dht;
mod event_loop;
mod identity;
mod records;
mod transport;

use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;

use cid::Cid;
use libp2p::identity::Keypair;
use libp2p::multiaddr::Protocol;
use libp2p::{Multiaddr, PeerId, StreamProtocol};
use tokio::sync::{mpsc, oneshot};
use tokio::time::Instant;

use crate::bitswap::{self, Bitswap, BlockSource, FetchError};
use event_loop::{Command, EventLoop};

pub use dht::{PROVIDER_PUBLICATION_INTERVAL, PROVIDER_RECORD_TTL};
pub use identity::identity;
pub use transport::DEFAULT_MAX_CONNECTIONS;

/// The default Kademlia protocol: private, so Cairn nodes do not join the public Amino DHT.
pub const DEFAULT_KAD_PROTOCOL: StreamProtocol = StreamProtocol::new("/cairn/kad/1.0.0");

/// Commands queued for the event loop before callers wait.
const COMMAND_QUEUE: usize = 64;

/// How the node joins its network.
#[derive(Clone, Debug)]
pub struct NodeConfig {
    /// Addresses to listen on, TCP (`/ip4/…/tcp/…`) and QUIC (`/ip4/…/udp/…/quic-v1`).
    pub listen: Vec<Multiaddr>,
    /// Peers to join through, each ending in `/p2p/<peer id>`.
    pub bootstrap: Vec<Multiaddr>,
    /// An IPFS `swarm.key` (`/key/swarm/psk/1.0.0/`, `/base16/`, 64 hex digits): only nodes
    /// with the same key can connect. Turns QUIC off.
    pub swarm_key: Option<PathBuf>,
    /// When not empty, connections from and to any other peer are refused.
    pub allow_peers: Vec<PeerId>,
    /// Discover peers on the local network.
    pub mdns: bool,
    /// The Kademlia protocol name; nodes must agree on it to share a DHT.
    pub kad_protocol: StreamProtocol,
    /// Where the node's ed25519 key is kept (created if missing). `None`: a new identity each
    /// start.
    pub identity_path: Option<PathBuf>,
    /// Connections established at once; incoming ones may take three quarters of them, so a
    /// flood of strangers never keeps this node from dialling its own peers. Connections past
    /// the cap are refused, as are a peer's past a few and handshakes past a few dozen.
    pub max_connections: u32,
}

impl Default for NodeConfig {
    /// Every interface, OS-chosen TCP and QUIC ports, mDNS on, the private DHT, a fresh identity.
    fn default() -> Self {
        NodeConfig {
            listen: vec![
                Multiaddr::empty()
                    .with(Protocol::Ip4([0, 0, 0, 0].into()))
                    .with(Protocol::Tcp(0)),
                Multiaddr::empty()
                    .with(Protocol::Ip4([0, 0, 0, 0].into()))
                    .with(Protocol::Udp(0))
                    .with(Protocol::QuicV1),
            ],
            bootstrap: Vec::new(),
            swarm_key: None,
            allow_peers: Vec::new(),
            mdns: true,
            kad_protocol: DEFAULT_KAD_PROTOCOL,
            identity_path: None,
            max_connections: DEFAULT_MAX_CONNECTIONS,
        }
    }
}

/// The node could not start, or a command failed.
#[derive(Debug, thiserror::Error)]
pub enum NodeError {
    #[error("cannot {action} identity key {path}: {source}")]
    Identity {
        action: &'static str,
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },
    #[error("identity key {path} is not a valid libp2p key: {reason}")]
    BadIdentity { path: PathBuf, reason: String },
    #[error("cannot read swarm key {path}: {source}")]
    SwarmKeyRead {
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },
    #[error("swarm key {path} is not a valid IPFS swarm.key: {reason}")]
    BadSwarmKey { path: PathBuf, reason: String },
    #[error("cannot set up the {what}: {reason}")]
    Setup { what: &'static str, reason: String },
    #[error("cannot listen on {address}: {reason}")]
    Listen { address: Multiaddr, reason: String },
    #[error("bootstrap address {address} does not end in /p2p/<peer id>")]
    BootstrapWithoutPeer { address: Multiaddr },
    #[error("cannot dial {address}: {reason}")]
    Dial { address: Multiaddr, reason: String },
    #[error("cannot announce {cid} in the DHT: {reason}")]
    Provide { cid: Cid, reason: String },
    #[error(transparent)]
    Bitswap(#[from] bitswap::StartError),
    #[error("the node has shut down")]
    Shutdown,
}

/// A connected peer.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct PeerInfo {
    pub peer: PeerId,
    /// The remote address of one of the connections to it.
    pub address: Multiaddr,
    /// Round-trip time of the last successful ping.
    pub rtt: Option<Duration>,
}

/// A running node. Cheap to clone; the swarm stops when the last clone is dropped or on
/// [`Node::shutdown`].
#[derive(Clone)]
pub struct Node {
    inner: Arc<Inner>,
}

struct Inner {
    peer_id: PeerId,
    commands: mpsc::Sender<Command>,
    bitswap: Bitswap,
    /// For protocols beyond Bitswap (`cairn-node`'s resolve and metadata).
    control: libp2p_stream::Control,
    /// A swarm key is set: only nodes with the same key can connect.
    private: bool,
    task: tokio::task::AbortHandle,
}

impl Drop for Inner {
    fn drop(&mut self) {
        self.task.abort();
    }
}

impl std::fmt::Debug for Node {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Node")
            .field("peer_id", &self.inner.peer_id)
            .finish_non_exhaustive()
    }
}

impl Node {
    /// Start the node: load or create its identity, listen on every `config.listen` address
    /// (returning once each listener has an address), dial the bootstrap peers, and serve
    /// `source` over Bitswap. Must be called within a tokio runtime.
    pub async fn start(
        config: NodeConfig,
        source: Arc<dyn BlockSource>,
    ) -> Result<Node, NodeError> {
        let keypair = match &config.identity_path {
            Some(path) => identity::load_or_create_identity(path)?,
            None => Keypair::generate_ed25519(),
        };
        let peer_id = keypair.public().to_peer_id();
        let swarm = behaviour::build_swarm(&config, &keypair)?;
        let bitswap = Bitswap::new(swarm.behaviour().stream.new_control(), source)?;
        let control = swarm.behaviour().stream.new_control();
        let private = config.swarm_key.is_some();

        let mut event_loop = EventLoop::new(swarm, config.kad_protocol);
        event_loop.listen(&config.listen, private).await?;
        event_loop.bootstrap(config.bootstrap)?;

        let (commands, receiver) = mpsc::channel(COMMAND_QUEUE);
        let task = tokio::spawn(event_loop.run(receiver)).abort_handle();
        Ok(Node {
            inner: Arc::new(Inner {
                peer_id,
                commands,
                bitswap,
                control,
                private,
                task,
            }),
        })
    }

    pub fn peer_id(&self) -> PeerId {
        self.inner.peer_id
    }

    /// Whether the node runs on a private network (a swarm key is set), so that every peer it
    /// can talk to holds the key.
    pub fn is_private(&self) -> bool {
        self.inner.private
    }

    /// A handle to open and accept streams of other protocols on this swarm.
    pub fn stream_control(&self) -> libp2p_stream::Control {
        self.inner.control.clone()
    }

    /// The addresses the node listens on, each ending in `/p2p/<peer id>`: what another node
    /// bootstraps from or dials. Cancel-safe.
    pub async fn p2p_addrs(&self) -> Result<Vec<Multiaddr>, NodeError> {
        let peer = self.inner.peer_id;
        Ok(self
            .listen_addrs()
            .await?
            .into_iter()
            .map(|address| match address.iter().last() {
                Some(Protocol::P2p(_)) => address,
                _ => address.with(Protocol::P2p(peer)),
            })
            .collect())
    }

    /// Bitswap, for fetches beyond [`Node::get_block`] (e.g. [`Bitswap::fetch_dag`]).
    pub fn bitswap(&self) -> &Bitswap {
        &self.inner.bitswap
    }

    async fn ask<T>(
        &self,
        command: impl FnOnce(oneshot::Sender<T>) -> Command,
    ) -> Result<T, NodeError> {
        let (reply, answer) = oneshot::channel();
        self.inner
            .commands
            .send(command(reply))
            .await
            .map_err(|_| NodeError::Shutdown)?;
        answer.await.map_err(|_| NodeError::Shutdown)
    }

    /// The addresses the node listens on. Cancel-safe.
    pub async fn listen_addrs(&self) -> Result<Vec<Multiaddr>, NodeError> {
        self.ask(Command::ListenAddrs).await
    }

    /// The peers connected now, with their last ping RTT. Cancel-safe.
    pub async fn connected_peers(&self) -> Result<Vec<PeerInfo>, NodeError> {
        self.ask(Command::ConnectedPeers).await
    }

    /// Dial `address` (ending in `/p2p/<peer id>`, or not) and wait for the connection.
    /// Cancel-safe: the dial goes on, its result is dropped.
    pub async fn dial(&self, address: Multiaddr) -> Result<(), NodeError> {
        self.ask(|reply| Command::Dial(address, reply)).await?
    }

    /// Announce in the DHT that this node provides `cid`'s multihash (so a raw and a dag-pb CID
    /// of the same digest share the record). Returns when the closest peers have been told.
    /// Cancel-safe: the announcement goes on.
    pub async fn provide(&self, cid: Cid) -> Result<(), NodeError> {
        self.ask(|reply| Command::Provide(cid, reply)).await?
    }

    /// Stop announcing `cid`'s multihash: this node no longer republishes its provider record
    /// (copies other peers hold expire with their TTL; asked, this node says it does not hold
    /// it).
    pub async fn stop_providing(&self, cid: Cid) -> Result<(), NodeError> {
        self.inner
            .commands
            .send(Command::StopProviding(cid))
            .await
            .map_err(|_| NodeError::Shutdown)
    }

    /// The peers the DHT names as providers of `cid`'s multihash, found by `deadline` (earlier
    /// when the lookup ends). This node is never among them. Cancel-safe.
    pub async fn find_providers(
        &self,
        cid: Cid,
        deadline: Instant,
    ) -> Result<Vec<PeerId>, NodeError> {
        let (sender, mut found) = mpsc::unbounded_channel();
        self.inner
            .commands
            .send(Command::FindProviders(cid, sender))
            .await
            .map_err(|_| NodeError::Shutdown)?;
        let mut providers = Vec::new();
        while let Ok(Some(peer)) = tokio::time::timeout_at(deadline, found.recv()).await {
            if peer != self.inner.peer_id && !providers.contains(&peer) {
                providers.push(peer);
            }
        }
        Ok(providers)
    }

    /// Fetch one block from `peer` over Bitswap, verified against `cid`. Cancel-safe.
    pub async fn get_block(
        &self,
        peer: PeerId,
        cid: Cid,
        timeout: Duration,
    ) -> Result<bytes::Bytes, FetchError> {
        self.inner.bitswap.get(peer, cid, timeout).await
    }

    /// Stop the swarm now, closing every connection, even if other clones remain.
    pub fn shutdown(&self) {
        self.inner.task.abort();
    }
}
