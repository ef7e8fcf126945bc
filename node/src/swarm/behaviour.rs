//! The swarm's behaviours (connection caps, allow-list, streams for Bitswap and Cairn's own
//! protocols, identify, ping, the DHT, mDNS) and their assembly with the transport into a
//! [`Swarm`].

use std::time::Duration;

use libp2p::allow_block_list::{self, AllowedPeers};
use libp2p::identity::Keypair;
use libp2p::swarm::NetworkBehaviour;
use libp2p::swarm::behaviour::toggle::Toggle;
use libp2p::{Swarm, connection_limits, identify, kad, mdns, ping};

use super::{NodeConfig, NodeError, dht, transport};

/// Sent in identify.
const PROTOCOL_VERSION: &str = "/cairn/1.0.0";

/// How long a connection with no open stream is kept.
const IDLE_CONNECTION_TIMEOUT: Duration = Duration::from_secs(120);

#[derive(NetworkBehaviour)]
pub(super) struct Behaviour {
    pub(super) limits: connection_limits::Behaviour,
    pub(super) allow: Toggle<allow_block_list::Behaviour<AllowedPeers>>,
    pub(super) stream: libp2p_stream::Behaviour,
    pub(super) identify: identify::Behaviour,
    pub(super) ping: ping::Behaviour,
    pub(super) kad: kad::Behaviour<super::records::CompactStore>,
    pub(super) mdns: Toggle<mdns::tokio::Behaviour>,
}

/// The swarm of the node keyed by `keypair`, set up as `config` says (not yet listening).
pub(super) fn build_swarm(
    config: &NodeConfig,
    keypair: &Keypair,
) -> Result<Swarm<Behaviour>, NodeError> {
    let peer_id = keypair.public().to_peer_id();
    let swarm_key = config
        .swarm_key
        .as_deref()
        .map(transport::read_swarm_key)
        .transpose()?;
    let transport = transport::build_transport(keypair, swarm_key)?;
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
    let behaviour = Behaviour {
        limits: connection_limits::Behaviour::new(transport::connection_limits(
            config.max_connections,
        )),
        allow: transport::allow_list(&config.allow_peers).into(),
        stream: libp2p_stream::Behaviour::new(),
        identify: identify::Behaviour::new(identify::Config::new(
            PROTOCOL_VERSION.to_owned(),
            keypair.public(),
        )),
        ping: ping::Behaviour::default(),
        kad: dht::kademlia(peer_id, config.kad_protocol.clone()),
        mdns: mdns.into(),
    };
    Ok(Swarm::new(
        transport,
        behaviour,
        peer_id,
        libp2p::swarm::Config::with_tokio_executor()
            .with_idle_connection_timeout(IDLE_CONNECTION_TIMEOUT),
    ))
}
