//! The event loop: the task that owns the [`Swarm`], answers the [`Node`](super::Node) handle's
//! commands, and follows connections, pings, identify, mDNS and DHT queries.

use std::collections::{HashMap, HashSet};

use cid::Cid;
use futures::StreamExt as _;
use libp2p::multiaddr::Protocol;
use libp2p::swarm::SwarmEvent;
use libp2p::{Multiaddr, PeerId, StreamProtocol, Swarm, identify, kad, mdns, ping};
use tokio::sync::{mpsc, oneshot};

use super::behaviour::{Behaviour, BehaviourEvent};
use super::dht::kad_key;
use super::{NodeError, PeerInfo};

/// What the [`Node`](super::Node) handle asks of the loop, each with where to send the answer.
pub(super) enum Command {
    ListenAddrs(oneshot::Sender<Vec<Multiaddr>>),
    ConnectedPeers(oneshot::Sender<Vec<PeerInfo>>),
    Dial(Multiaddr, oneshot::Sender<Result<(), NodeError>>),
    Provide(Cid, oneshot::Sender<Result<(), NodeError>>),
    StopProviding(Cid),
    FindProviders(Cid, mpsc::UnboundedSender<PeerId>),
}

/// The swarm and what the commands wait for.
pub(super) struct EventLoop {
    swarm: Swarm<Behaviour>,
    kad_protocol: StreamProtocol,
    peers: HashMap<PeerId, PeerInfo>,
    pending_provide: HashMap<kad::QueryId, (Cid, oneshot::Sender<Result<(), NodeError>>)>,
    pending_providers: HashMap<kad::QueryId, mpsc::UnboundedSender<PeerId>>,
    pending_dials:
        HashMap<libp2p::swarm::ConnectionId, (Multiaddr, oneshot::Sender<Result<(), NodeError>>)>,
    /// The bootstrap peers, whose failed dials are logged as warnings (an operator named them).
    bootstrap_peers: HashSet<PeerId>,
}

impl EventLoop {
    pub(super) fn new(swarm: Swarm<Behaviour>, kad_protocol: StreamProtocol) -> Self {
        EventLoop {
            swarm,
            kad_protocol,
            peers: HashMap::new(),
            pending_provide: HashMap::new(),
            pending_providers: HashMap::new(),
            pending_dials: HashMap::new(),
            bootstrap_peers: HashSet::new(),
        }
    }

    /// Listen on every address of `listen` and return once each listener has an address. A
    /// private node (swarm key set) skips the QUIC ones, with a warning: QUIC's TLS handshake
    /// cannot carry the swarm key the way noise's prologue does.
    pub(super) async fn listen(
        &mut self,
        listen: &[Multiaddr],
        private: bool,
    ) -> Result<(), NodeError> {
        let mut listeners = HashSet::new();
        for address in listen {
            if private && address.iter().any(|p| matches!(p, Protocol::QuicV1)) {
                tracing::warn!(
                    %address,
                    "QUIC cannot run on a private network (swarm key set): not listening there"
                );
                continue;
            }
            let id = self
                .swarm
                .listen_on(address.clone())
                .map_err(|e| NodeError::Listen {
                    address: address.clone(),
                    reason: e.to_string(),
                })?;
            listeners.insert(id);
        }
        self.wait_listening(listeners).await
    }

    /// Dial each of `bootstrap` (every one ending in `/p2p/<peer id>`), add it to the DHT, and
    /// start the DHT bootstrap when there was any.
    pub(super) fn bootstrap(&mut self, bootstrap: Vec<Multiaddr>) -> Result<(), NodeError> {
        let mut bootstrapped = false;
        for address in bootstrap {
            let Some(Protocol::P2p(peer)) = address.iter().last() else {
                return Err(NodeError::BootstrapWithoutPeer { address });
            };
            self.bootstrap_peers.insert(peer);
            let kad = &mut self.swarm.behaviour_mut().kad;
            kad.add_address(&peer, address.clone());
            if let Err(e) = self.swarm.dial(address.clone()) {
                tracing::warn!(%address, "cannot dial bootstrap peer: {e}");
            }
            bootstrapped = true;
        }
        if bootstrapped && let Err(e) = self.swarm.behaviour_mut().kad.bootstrap() {
            tracing::debug!("DHT bootstrap not started: {e}");
        }
        Ok(())
    }

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

    /// Run the swarm and answer commands until every [`Node`](super::Node) handle is gone.
    pub(super) async fn run(mut self, mut commands: mpsc::Receiver<Command>) {
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
            Command::StopProviding(cid) => {
                self.swarm
                    .behaviour_mut()
                    .kad
                    .stop_providing(&kad_key(&cid));
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
                peer_id,
                error,
            } => {
                if peer_id.is_some_and(|peer| self.bootstrap_peers.contains(&peer)) {
                    warn_bootstrap_failed(&error);
                }
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

/// Say why a dial of a bootstrap peer failed. A failed noise handshake is what a peer with
/// another swarm key (or none) looks like: the key is part of the handshake.
fn warn_bootstrap_failed(error: &libp2p::swarm::DialError) {
    let reason = error.to_string();
    if handshake_failed(error) {
        tracing::warn!(
            "cannot join bootstrap peer: the handshake failed, as it does when the peers have \
             different swarm keys (or one has none): {reason}"
        );
    } else {
        tracing::warn!("cannot join bootstrap peer: {reason}");
    }
}

/// True when some address of a failed dial got as far as noise's handshake and failed there:
/// a `libp2p::noise::Error` somewhere in the chain of its transport error. An `io::Error`
/// wrapping another error reports that error's source, not the error itself, so the chain is
/// followed into it.
fn handshake_failed(error: &libp2p::swarm::DialError) -> bool {
    let libp2p::swarm::DialError::Transport(attempts) = error else {
        return false;
    };
    attempts.iter().any(|(_, error)| {
        let mut next: Option<&(dyn std::error::Error + 'static)> = Some(error);
        while let Some(error) = next {
            if error.is::<libp2p::noise::Error>() {
                return true;
            }
            next = match error.downcast_ref::<std::io::Error>() {
                Some(io) => io
                    .get_ref()
                    .map(|inner| inner as &(dyn std::error::Error + 'static)),
                None => error.source(),
            };
        }
        false
    })
}
