//! The libp2p node: transports, discovery, the DHT and Bitswap, run on tokio.
//!
//! Shape: [`Node`] is a cloneable handle with a bounded command
//! channel and oneshot replies; an event loop task owns the [`Swarm`]. Bitswap does not go
//! through the loop: it talks to the swarm through its own `libp2p-stream` control.
//!
//! Stack:
//! - TCP + noise + yamux, with a private-network (pnet) handshake under noise when a swarm key
//!   is set;
//! - QUIC, but only without a swarm key: pnet wraps a byte stream and QUIC has none, so a
//!   private node listens and dials on TCP only (the QUIC listen addresses are skipped with a
//!   warning);
//! - identify (announcing the protocols the handlers accept, Bitswap included), ping (RTTs),
//!   mDNS (optional), Kademlia in server mode under a private protocol name (provider records
//!   keyed by multihash, docs/protocols.md), and an allow-list that refuses connections from
//!   peers not listed when the list is not empty.

use std::collections::{HashMap, HashSet};
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Duration;

use cid::Cid;
use futures::StreamExt as _;
use futures::future::Either;
use libp2p::allow_block_list::{self, AllowedPeers};
use libp2p::connection_limits;
use libp2p::core::muxing::StreamMuxerBox;
use libp2p::core::transport::{Boxed, Transport as _};
use libp2p::core::upgrade::Version;
use libp2p::identity::Keypair;
use libp2p::multiaddr::Protocol;
use libp2p::pnet::{PnetConfig, PreSharedKey};
use libp2p::swarm::behaviour::toggle::Toggle;
use libp2p::swarm::{NetworkBehaviour, SwarmEvent};
use libp2p::{
    Multiaddr, PeerId, StreamProtocol, Swarm, identify, kad, mdns, noise, ping, quic, tcp, yamux,
};
use tokio::sync::{mpsc, oneshot};
use tokio::time::Instant;

use crate::bitswap::{self, Bitswap, BlockSource, FetchError};

/// The default Kademlia protocol: private, so Cairn nodes do not join the public Amino DHT.
pub const DEFAULT_KAD_PROTOCOL: StreamProtocol = StreamProtocol::new("/cairn/kad/1.0.0");

/// Sent in identify.
const PROTOCOL_VERSION: &str = "/cairn/1.0.0";

/// Commands queued for the event loop before callers wait.
const COMMAND_QUEUE: usize = 64;

/// Longest a TCP connection may take to finish its handshakes (pnet, noise, yamux). A peer with
/// another swarm key can stall the pnet handshake (each side waits for the other's nonce).
const HANDSHAKE_TIMEOUT: Duration = Duration::from_secs(20);

/// How long a connection with no open stream is kept.
const IDLE_CONNECTION_TIMEOUT: Duration = Duration::from_secs(120);

/// Provider records are valid this long; servers expire them after it (docs/protocols.md).
pub const PROVIDER_RECORD_TTL: Duration = Duration::from_secs(48 * 3600);

/// This node republishes its provider records this often, well within their TTL.
pub const PROVIDER_PUBLICATION_INTERVAL: Duration = Duration::from_secs(22 * 3600);

/// Provider keys held in the DHT store, this node's and other nodes' together. An artifact
/// takes two (flat and root CIDs), so this covers a few hundred thousand artifacts across the
/// swarm; each key costs a few hundred bytes.
const MAX_PROVIDER_KEYS: usize = 1 << 20;

/// Connections held at once by default (see [`NodeConfig::max_connections`]). Each costs a
/// descriptor (TCP) and yamux buffers; a LAN swarm has far fewer peers.
pub const DEFAULT_MAX_CONNECTIONS: u32 = 256;

/// Connections to or from one peer at once (TCP and QUIC, and a simultaneous dial each way).
const MAX_CONNECTIONS_PER_PEER: u32 = 4;

/// Incoming connections still in their handshakes at once.
const MAX_PENDING_INCOMING: u32 = 32;

/// Value records (Cairn publishes none; other peers may put some).
const MAX_VALUE_RECORDS: usize = 4096;

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

/// The connection caps of a node allowing `max` connections in all.
fn connection_limits(max: u32) -> connection_limits::ConnectionLimits {
    let max = max.max(1);
    connection_limits::ConnectionLimits::default()
        .with_max_established(Some(max))
        .with_max_established_incoming(Some((max / 4 * 3).max(1)))
        .with_max_established_per_peer(Some(MAX_CONNECTIONS_PER_PEER))
        .with_max_pending_incoming(Some(MAX_PENDING_INCOMING))
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

#[derive(NetworkBehaviour)]
struct Behaviour {
    limits: connection_limits::Behaviour,
    allow: Toggle<allow_block_list::Behaviour<AllowedPeers>>,
    stream: libp2p_stream::Behaviour,
    identify: identify::Behaviour,
    ping: ping::Behaviour,
    kad: kad::Behaviour<kad::store::MemoryStore>,
    mdns: Toggle<mdns::tokio::Behaviour>,
}

enum Command {
    ListenAddrs(oneshot::Sender<Vec<Multiaddr>>),
    ConnectedPeers(oneshot::Sender<Vec<PeerInfo>>),
    Dial(Multiaddr, oneshot::Sender<Result<(), NodeError>>),
    Provide(Cid, oneshot::Sender<Result<(), NodeError>>),
    FindProviders(Cid, mpsc::UnboundedSender<PeerId>),
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
            Some(path) => load_or_create_identity(path)?,
            None => Keypair::generate_ed25519(),
        };
        let peer_id = keypair.public().to_peer_id();
        let psk = config
            .swarm_key
            .as_deref()
            .map(read_swarm_key)
            .transpose()?;
        let transport = build_transport(&keypair, psk)?;

        let mut kad_config = kad::Config::new(config.kad_protocol.clone());
        kad_config
            .set_query_timeout(Duration::from_secs(60))
            .set_provider_record_ttl(Some(PROVIDER_RECORD_TTL))
            .set_provider_publication_interval(Some(PROVIDER_PUBLICATION_INTERVAL));
        let store = kad::store::MemoryStore::with_config(
            peer_id,
            kad::store::MemoryStoreConfig {
                max_records: MAX_VALUE_RECORDS,
                max_provided_keys: MAX_PROVIDER_KEYS,
                ..kad::store::MemoryStoreConfig::default()
            },
        );
        let mut kad = kad::Behaviour::with_config(peer_id, store, kad_config);
        kad.set_mode(Some(kad::Mode::Server));
        let mdns = if config.mdns {
            Some(
                mdns::tokio::Behaviour::new(mdns::Config::default(), peer_id).map_err(|e| {
                    NodeError::Setup {
                        what: "mDNS discovery",
                        reason: e.to_string(),
                    }
                })?,
            )
        } else {
            None
        };
        let allow = (!config.allow_peers.is_empty()).then(|| {
            let mut allow = allow_block_list::Behaviour::<AllowedPeers>::default();
            for peer in &config.allow_peers {
                allow.allow_peer(*peer);
            }
            allow
        });
        let behaviour = Behaviour {
            limits: connection_limits::Behaviour::new(connection_limits(config.max_connections)),
            allow: allow.into(),
            stream: libp2p_stream::Behaviour::new(),
            identify: identify::Behaviour::new(identify::Config::new(
                PROTOCOL_VERSION.to_owned(),
                keypair.public(),
            )),
            ping: ping::Behaviour::default(),
            kad,
            mdns: mdns.into(),
        };
        let mut swarm = Swarm::new(
            transport,
            behaviour,
            peer_id,
            libp2p::swarm::Config::with_tokio_executor()
                .with_idle_connection_timeout(IDLE_CONNECTION_TIMEOUT),
        );
        let bitswap = Bitswap::new(swarm.behaviour().stream.new_control(), source)?;
        let control = swarm.behaviour().stream.new_control();
        let private = config.swarm_key.is_some();

        let mut listeners = HashSet::new();
        for address in &config.listen {
            if config.swarm_key.is_some() && address.iter().any(|p| matches!(p, Protocol::QuicV1)) {
                tracing::warn!(
                    %address,
                    "QUIC cannot run on a private network (swarm key set): not listening there"
                );
                continue;
            }
            let id = swarm
                .listen_on(address.clone())
                .map_err(|e| NodeError::Listen {
                    address: address.clone(),
                    reason: e.to_string(),
                })?;
            listeners.insert(id);
        }

        let mut event_loop = EventLoop {
            swarm,
            kad_protocol: config.kad_protocol,
            peers: HashMap::new(),
            pending_provide: HashMap::new(),
            pending_providers: HashMap::new(),
            pending_dials: HashMap::new(),
        };
        event_loop.wait_listening(listeners).await?;
        let mut bootstrapped = false;
        for address in config.bootstrap {
            let Some(Protocol::P2p(peer)) = address.iter().last() else {
                return Err(NodeError::BootstrapWithoutPeer { address });
            };
            let kad = &mut event_loop.swarm.behaviour_mut().kad;
            kad.add_address(&peer, address.clone());
            if let Err(e) = event_loop.swarm.dial(address.clone()) {
                tracing::warn!(%address, "cannot dial bootstrap peer: {e}");
            }
            bootstrapped = true;
        }
        if bootstrapped && let Err(e) = event_loop.swarm.behaviour_mut().kad.bootstrap() {
            tracing::debug!("DHT bootstrap not started: {e}");
        }

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

fn kad_key(cid: &Cid) -> kad::RecordKey {
    kad::RecordKey::new(&cid.hash().to_bytes())
}

/// The swarm and what the commands wait for.
struct EventLoop {
    swarm: Swarm<Behaviour>,
    kad_protocol: StreamProtocol,
    peers: HashMap<PeerId, PeerInfo>,
    pending_provide: HashMap<kad::QueryId, (Cid, oneshot::Sender<Result<(), NodeError>>)>,
    pending_providers: HashMap<kad::QueryId, mpsc::UnboundedSender<PeerId>>,
    pending_dials:
        HashMap<libp2p::swarm::ConnectionId, (Multiaddr, oneshot::Sender<Result<(), NodeError>>)>,
}

impl EventLoop {
    /// Run the swarm until each of `listeners` has an address.
    async fn wait_listening(
        &mut self,
        mut listeners: HashSet<libp2p::core::transport::ListenerId>,
    ) -> Result<(), NodeError> {
        while !listeners.is_empty() {
            let event = self.swarm.select_next_some().await;
            match &event {
                SwarmEvent::NewListenAddr { listener_id, .. } => {
                    listeners.remove(listener_id);
                }
                SwarmEvent::ListenerClosed {
                    listener_id,
                    addresses,
                    reason,
                } if listeners.contains(listener_id) => {
                    return Err(NodeError::Listen {
                        address: addresses.first().cloned().unwrap_or_else(Multiaddr::empty),
                        reason: match reason {
                            Ok(()) => "listener closed".to_owned(),
                            Err(e) => e.to_string(),
                        },
                    });
                }
                SwarmEvent::ListenerError { listener_id, error }
                    if listeners.contains(listener_id) =>
                {
                    return Err(NodeError::Listen {
                        address: Multiaddr::empty(),
                        reason: error.to_string(),
                    });
                }
                _ => {}
            }
            self.on_event(event);
        }
        Ok(())
    }

    async fn run(mut self, mut commands: mpsc::Receiver<Command>) {
        loop {
            tokio::select! {
                event = self.swarm.select_next_some() => self.on_event(event),
                command = commands.recv() => match command {
                    Some(command) => self.on_command(command),
                    None => break,
                },
            }
        }
    }

    fn on_command(&mut self, command: Command) {
        match command {
            Command::ListenAddrs(reply) => {
                let _ = reply.send(self.swarm.listeners().cloned().collect());
            }
            Command::ConnectedPeers(reply) => {
                let _ = reply.send(self.peers.values().cloned().collect());
            }
            Command::Dial(address, reply) => {
                let opts = libp2p::swarm::dial_opts::DialOpts::from(address.clone());
                let id = opts.connection_id();
                match self.swarm.dial(opts) {
                    Ok(()) => {
                        self.pending_dials.insert(id, (address, reply));
                    }
                    Err(e) => {
                        let _ = reply.send(Err(NodeError::Dial {
                            address,
                            reason: e.to_string(),
                        }));
                    }
                }
            }
            Command::Provide(cid, reply) => {
                match self
                    .swarm
                    .behaviour_mut()
                    .kad
                    .start_providing(kad_key(&cid))
                {
                    Ok(id) => {
                        self.pending_provide.insert(id, (cid, reply));
                    }
                    Err(e) => {
                        let _ = reply.send(Err(NodeError::Provide {
                            cid,
                            reason: e.to_string(),
                        }));
                    }
                }
            }
            Command::FindProviders(cid, sender) => {
                let id = self.swarm.behaviour_mut().kad.get_providers(kad_key(&cid));
                self.pending_providers.insert(id, sender);
            }
        }
    }

    fn on_event(&mut self, event: SwarmEvent<BehaviourEvent>) {
        match event {
            SwarmEvent::ConnectionEstablished {
                peer_id,
                connection_id,
                endpoint,
                ..
            } => {
                self.peers.entry(peer_id).or_insert_with(|| PeerInfo {
                    peer: peer_id,
                    address: endpoint.get_remote_address().clone(),
                    rtt: None,
                });
                if let Some((_, reply)) = self.pending_dials.remove(&connection_id) {
                    let _ = reply.send(Ok(()));
                }
            }
            SwarmEvent::ConnectionClosed {
                peer_id,
                num_established: 0,
                ..
            } => {
                self.peers.remove(&peer_id);
            }
            SwarmEvent::OutgoingConnectionError {
                connection_id,
                error,
                ..
            } => {
                if let Some((address, reply)) = self.pending_dials.remove(&connection_id) {
                    let _ = reply.send(Err(NodeError::Dial {
                        address,
                        reason: error.to_string(),
                    }));
                }
            }
            SwarmEvent::Behaviour(BehaviourEvent::Ping(ping::Event {
                peer,
                result: Ok(rtt),
                ..
            })) => {
                if let Some(info) = self.peers.get_mut(&peer) {
                    info.rtt = Some(rtt);
                }
            }
            SwarmEvent::Behaviour(BehaviourEvent::Identify(identify::Event::Received {
                peer_id,
                info,
                ..
            })) if info.protocols.contains(&self.kad_protocol) => {
                for address in info.listen_addrs {
                    self.swarm
                        .behaviour_mut()
                        .kad
                        .add_address(&peer_id, address);
                }
            }
            SwarmEvent::Behaviour(BehaviourEvent::Mdns(mdns::Event::Discovered(found))) => {
                for (peer, address) in found {
                    self.swarm.behaviour_mut().kad.add_address(&peer, address);
                    if !self.swarm.is_connected(&peer)
                        && let Err(e) = self.swarm.dial(peer)
                    {
                        tracing::debug!(%peer, "cannot dial mDNS peer: {e}");
                    }
                }
            }
            SwarmEvent::Behaviour(BehaviourEvent::Kad(kad::Event::OutboundQueryProgressed {
                id,
                result,
                step,
                ..
            })) => self.on_query(id, result, step.last),
            _ => {}
        }
    }

    fn on_query(&mut self, id: kad::QueryId, result: kad::QueryResult, last: bool) {
        match result {
            kad::QueryResult::StartProviding(result) => {
                if let Some((cid, reply)) = self.pending_provide.remove(&id) {
                    let _ = reply.send(result.map(|_| ()).map_err(|e| NodeError::Provide {
                        cid,
                        reason: e.to_string(),
                    }));
                }
            }
            kad::QueryResult::GetProviders(result) => {
                let Some(sender) = self.pending_providers.get(&id) else {
                    return;
                };
                if let Ok(kad::GetProvidersOk::FoundProviders { providers, .. }) = result {
                    for peer in providers {
                        let _ = sender.send(peer);
                    }
                }
                if last || sender.is_closed() {
                    self.pending_providers.remove(&id);
                    if let Some(mut query) = self.swarm.behaviour_mut().kad.query_mut(&id) {
                        query.finish();
                    }
                }
            }
            _ => {}
        }
    }
}

/// TCP (+ pnet) + noise + yamux, or that or QUIC when there is no swarm key.
fn build_transport(
    keypair: &Keypair,
    psk: Option<PreSharedKey>,
) -> Result<Boxed<(PeerId, StreamMuxerBox)>, NodeError> {
    let noise = noise::Config::new(keypair).map_err(|e| NodeError::Setup {
        what: "noise handshake",
        reason: e.to_string(),
    })?;
    let tcp = tcp::tokio::Transport::new(tcp::Config::default().nodelay(true));
    let private = psk.is_some();
    let tcp = match psk {
        Some(psk) => tcp
            .and_then(move |socket, _| PnetConfig::new(psk).handshake(socket))
            .map(|socket, _| Either::Left(socket))
            .boxed(),
        None => tcp.map(|socket, _| Either::Right(socket)).boxed(),
    };
    let tcp = tcp
        .upgrade(Version::V1Lazy)
        .authenticate(noise)
        .multiplex(yamux::Config::default())
        .timeout(HANDSHAKE_TIMEOUT)
        .map(|(peer, muxer), _| (peer, StreamMuxerBox::new(muxer)));
    if private {
        return Ok(tcp.boxed());
    }
    let quic = quic::tokio::Transport::new(quic::Config::new(keypair))
        .map(|(peer, connection), _| (peer, StreamMuxerBox::new(connection)));
    Ok(quic
        .or_transport(tcp)
        .map(|either, _| either.into_inner())
        .boxed())
}

/// Read an IPFS `swarm.key`.
fn read_swarm_key(path: &Path) -> Result<PreSharedKey, NodeError> {
    let text = std::fs::read_to_string(path).map_err(|source| NodeError::SwarmKeyRead {
        path: path.to_owned(),
        source,
    })?;
    text.trim_end()
        .parse()
        .map_err(|e: libp2p::pnet::KeyParseError| NodeError::BadSwarmKey {
            path: path.to_owned(),
            reason: e.to_string(),
        })
}

/// Load the node's key from `path`, or create an ed25519 key there (mode 0600, written to a
/// temporary file and renamed so a crash leaves no half key).
/// The peer ID of the key at `path`, creating the key if there is none (what `cairn id` prints
/// and the node started with the same `identity_path` will use).
pub fn identity(path: &Path) -> Result<PeerId, NodeError> {
    Ok(load_or_create_identity(path)?.public().to_peer_id())
}

fn load_or_create_identity(path: &Path) -> Result<Keypair, NodeError> {
    let io = |action, source| NodeError::Identity {
        action,
        path: path.to_owned(),
        source,
    };
    match std::fs::read(path) {
        Ok(bytes) => Keypair::from_protobuf_encoding(&bytes).map_err(|e| NodeError::BadIdentity {
            path: path.to_owned(),
            reason: e.to_string(),
        }),
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => {
            let keypair = Keypair::generate_ed25519();
            let bytes = keypair
                .to_protobuf_encoding()
                .map_err(|e| NodeError::BadIdentity {
                    path: path.to_owned(),
                    reason: e.to_string(),
                })?;
            if let Some(parent) = path.parent() {
                std::fs::create_dir_all(parent).map_err(|e| io("create the directory of", e))?;
            }
            let temp = path.with_extension("tmp");
            let mut options = std::fs::OpenOptions::new();
            options.write(true).create(true).truncate(true);
            #[cfg(unix)]
            std::os::unix::fs::OpenOptionsExt::mode(&mut options, 0o600);
            let mut file = options.open(&temp).map_err(|e| io("create", e))?;
            std::io::Write::write_all(&mut file, &bytes).map_err(|e| io("write", e))?;
            file.sync_all().map_err(|e| io("sync", e))?;
            std::fs::rename(&temp, path).map_err(|e| io("rename into place", e))?;
            Ok(keypair)
        }
        Err(e) => Err(io("read", e)),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn identity_is_created_once_then_loaded() {
        let dir = tempfile::tempdir().expect("tempdir");
        let path = dir.path().join("node").join("identity.key");
        let first = load_or_create_identity(&path).expect("created");
        let second = load_or_create_identity(&path).expect("loaded");
        assert_eq!(first.public(), second.public());
        std::fs::write(&path, b"junk").expect("overwrite");
        let err = load_or_create_identity(&path).expect_err("junk key");
        assert!(err.to_string().contains("identity.key"), "{err}");
    }

    #[test]
    fn swarm_key_format() {
        let dir = tempfile::tempdir().expect("tempdir");
        let path = dir.path().join("swarm.key");
        let hex64 = "ab".repeat(32);
        std::fs::write(&path, format!("/key/swarm/psk/1.0.0/\n/base16/\n{hex64}\n"))
            .expect("write");
        read_swarm_key(&path).expect("valid key");
        std::fs::write(&path, "/key/swarm/psk/1.0.0/\n/base16/\nabcd\n").expect("write");
        let err = read_swarm_key(&path).expect_err("short key");
        assert!(err.to_string().contains("swarm.key"), "{err}");
    }
}
