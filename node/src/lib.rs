//! Cairn's embedded libp2p peer: the swarm ([`swarm::Node`]), Bitswap 1.2.0
//! ([`bitswap::Bitswap`]), and the mirror's peer source ([`peers::Peers`]), through which Cairn
//! nodes share their caches block by block.
//!
//! Wiring a node into the mirror (the pending-leaves map is shared by the Bitswap block source,
//! which serves leaves of downloads under way, and by `Peers`, which fills it):
//!
//! ```ignore
//! let pending = cairn_node::PendingMap::default();
//! let node = cairn_node::Node::start(config, cairn_node::block_source(mirror.blocks(), pending.clone())).await?;
//! let peers = cairn_node::Peers::new(node, mirror.clone(), pending, cairn_node::PeerPolicy { trust_metadata: false })?;
//! peers.announce_held();
//! mirror.set_peers(Arc::new(peers));
//! ```

pub mod bitswap;
pub mod peers;
pub mod swarm;

pub use bitswap::{Bitswap, BlockSource, FetchError};
pub use peers::{
    ArtifactSource, HeldArtifact, MirrorBlocks, PeerPolicy, Peers, PendingMap, block_source,
};
pub use swarm::{Node, NodeConfig, NodeError, PeerInfo};
