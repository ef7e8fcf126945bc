//! How connections are made and admitted: TCP (with a private-network handshake when a swarm
//! key is set) + noise + yamux, QUIC when there is none, the connection caps, and the
//! allow-list.

use std::path::Path;
use std::time::Duration;

use futures::future::Either;
use libp2p::allow_block_list::{self, AllowedPeers};
use libp2p::connection_limits;
use libp2p::core::muxing::StreamMuxerBox;
use libp2p::core::transport::{Boxed, Transport as _};
use libp2p::core::upgrade::Version;
use libp2p::identity::Keypair;
use libp2p::pnet::{PnetConfig, PreSharedKey};
use libp2p::{PeerId, noise, quic, tcp, yamux};

use super::NodeError;

/// Longest a TCP connection may take to finish its handshakes (pnet, noise, yamux). A peer with
/// another swarm key can stall the pnet handshake (each side waits for the other's nonce).
const HANDSHAKE_TIMEOUT: Duration = Duration::from_secs(20);

/// Connections held at once by default (see [`NodeConfig::max_connections`]). Each costs a
/// descriptor (TCP) and yamux buffers; a LAN swarm has far fewer peers.
///
/// [`NodeConfig::max_connections`]: super::NodeConfig::max_connections
pub const DEFAULT_MAX_CONNECTIONS: u32 = 256;

/// Connections to or from one peer at once (TCP and QUIC, and a simultaneous dial each way).
const MAX_CONNECTIONS_PER_PEER: u32 = 4;

/// Incoming connections still in their handshakes at once.
const MAX_PENDING_INCOMING: u32 = 32;

/// TCP (+ pnet) + noise + yamux, or that or QUIC when there is no swarm key.
pub(super) fn build_transport(
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
pub(super) fn read_swarm_key(path: &Path) -> Result<PreSharedKey, NodeError> {
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

/// The connection caps of a node allowing `max` connections in all.
pub(super) fn connection_limits(max: u32) -> connection_limits::ConnectionLimits {
    let max = max.max(1);
    connection_limits::ConnectionLimits::default()
        .with_max_established(Some(max))
        .with_max_established_incoming(Some((max / 4 * 3).max(1)))
        .with_max_established_per_peer(Some(MAX_CONNECTIONS_PER_PEER))
        .with_max_pending_incoming(Some(MAX_PENDING_INCOMING))
}

/// The allow-list refusing every peer not in `peers`; none when `peers` is empty (all are
/// allowed).
pub(super) fn allow_list(peers: &[PeerId]) -> Option<allow_block_list::Behaviour<AllowedPeers>> {
    (!peers.is_empty()).then(|| {
        let mut allow = allow_block_list::Behaviour::<AllowedPeers>::default();
        for peer in peers {
            allow.allow_peer(*peer);
        }
        allow
    })
}

#[cfg(test)]
mod tests {
    use super::*;

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
