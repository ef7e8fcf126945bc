//! How connections are made and admitted: TCP + noise + yamux (the noise handshake bound to
//! the swarm key when one is set), QUIC when there is none, the connection caps, and the
//! allow-list.
//!
//! A private swarm is enforced inside noise, not by a second cipher under it. Both ends put a
//! digest of the swarm key into noise's prologue, which is hashed into the handshake transcript
//! and so into every authentication tag of the handshake: a peer with another key (or none)
//! cannot produce or accept a valid second or third handshake message, and the connection ends
//! before any stream (Bitswap, the DHT, identify) opens. The session then carries one layer of
//! encryption (ChaCha20-Poly1305, vectorised) instead of two. What an outsider still learns by
//! dialling a private node is what the handshake's second message carries: the node's noise
//! static key and signed peer id, which mDNS announces on the LAN anyway. The key itself cannot
//! be recovered from a transcript: the prologue is a SHA-256 of 32 random bytes.

use std::path::Path;
use std::time::Duration;

use libp2p::allow_block_list::{self, AllowedPeers};
use libp2p::connection_limits;
use libp2p::core::muxing::StreamMuxerBox;
use libp2p::core::transport::{Boxed, Transport as _};
use libp2p::core::upgrade::Version;
use libp2p::identity::Keypair;
use libp2p::{PeerId, noise, quic, tcp, yamux};
use sha2::{Digest, Sha256};

use super::NodeError;

/// Longest a TCP connection may take to finish its handshakes (multistream-select, noise,
/// yamux): a silent peer is dropped after it.
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

/// Tag of the swarm-key digest put into noise's prologue; a new scheme gets a new tag.
const PROLOGUE_TAG: &[u8] = b"/cairn/private-swarm/noise-prologue/1.0.0\n";

/// A private swarm's shared key, read from an IPFS `swarm.key`.
pub(super) struct SwarmKey([u8; 32]);

impl SwarmKey {
    /// The noise prologue of this swarm: SHA-256 over a tag and the key.
    fn prologue(&self) -> Vec<u8> {
        let mut digest = Sha256::new();
        digest.update(PROLOGUE_TAG);
        digest.update(self.0);
        digest.finalize().to_vec()
    }
}

impl std::fmt::Debug for SwarmKey {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("SwarmKey(..)")
    }
}

/// TCP + noise (bound to the swarm key) + yamux, or that or QUIC when there is no swarm key.
pub(super) fn build_transport(
    keypair: &Keypair,
    swarm_key: Option<SwarmKey>,
) -> Result<Boxed<(PeerId, StreamMuxerBox)>, NodeError> {
    let mut noise = noise::Config::new(keypair).map_err(|e| NodeError::Setup {
        what: "noise handshake",
        reason: e.to_string(),
    })?;
    let private = swarm_key.is_some();
    if let Some(key) = &swarm_key {
        noise = noise.with_prologue(key.prologue());
    }
    let tcp = tcp::tokio::Transport::new(tcp::Config::default().nodelay(true))
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

/// Longest `swarm.key` read: the format is three short lines.
const MAX_SWARM_KEY_FILE: u64 = 4096;

/// Read an IPFS `swarm.key`: `/key/swarm/psk/1.0.0/`, `/base16/` and 64 hex digits, a line
/// each.
pub(super) fn read_swarm_key(path: &Path) -> Result<SwarmKey, NodeError> {
    use std::io::Read as _;
    let read_error = |source| NodeError::SwarmKeyRead {
        path: path.to_owned(),
        source,
    };
    let mut text = String::new();
    std::fs::File::open(path)
        .map_err(read_error)?
        .take(MAX_SWARM_KEY_FILE)
        .read_to_string(&mut text)
        .map_err(read_error)?;
    parse_swarm_key(&text).map_err(|reason| NodeError::BadSwarmKey {
        path: path.to_owned(),
        reason,
    })
}

/// The key of a `swarm.key`'s text, or why it is not one.
fn parse_swarm_key(text: &str) -> Result<SwarmKey, String> {
    let mut lines = text.lines().map(str::trim);
    if lines.next() != Some("/key/swarm/psk/1.0.0/") {
        return Err("the first line must be /key/swarm/psk/1.0.0/".into());
    }
    if lines.next() != Some("/base16/") {
        return Err("the second line must be /base16/ (the only encoding supported)".into());
    }
    let digits = lines.next().unwrap_or_default();
    let mut key = [0u8; 32];
    hex::decode_to_slice(digits, &mut key)
        .map_err(|e| format!("the third line must be 64 hex digits: {e}"))?;
    if lines.any(|line| !line.is_empty()) {
        return Err("text after the key".into());
    }
    Ok(SwarmKey(key))
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
        for bad in [
            format!("/key/swarm/psk/1.0.0/\n/base64/\n{hex64}\n"),
            format!("/key/swarm/psk/2.0.0/\n/base16/\n{hex64}\n"),
            format!("/key/swarm/psk/1.0.0/\n/base16/\n{hex64}\nmore\n"),
            format!("/key/swarm/psk/1.0.0/\n/base16/\n{}\n", "zz".repeat(32)),
        ] {
            assert!(parse_swarm_key(&bad).is_err(), "{bad}");
        }
    }

    #[test]
    fn the_prologue_is_the_keys_and_only_its() {
        let hex64 = "ab".repeat(32);
        let key = |digits: &str| {
            parse_swarm_key(&format!("/key/swarm/psk/1.0.0/\r\n/base16/\r\n{digits}"))
                .expect("valid key")
        };
        assert_eq!(key(&hex64).prologue(), key(&hex64).prologue());
        assert_ne!(key(&hex64).prologue(), key(&"ac".repeat(32)).prologue());
    }
}
