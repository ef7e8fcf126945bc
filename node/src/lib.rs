//! Cairn's embedded libp2p peer: the swarm ([`swarm::Node`]), Bitswap 1.2.0
//! ([`bitswap::Bitswap`]), and the engine's peer source ([`peers::Peers`]), through which Cairn
//! nodes share their caches block by block.
//!
//! The node knows the engine only through `cairn-peering`: it implements
//! [`PeerSource`](cairn_peering::PeerSource) for the engine, and reads this node's holdings
//! through a [`LocalContent`] the store side hands it. It holds
//! nothing of the engine, so the engine holding the node makes no cycle. Starting one:
//!
//! ```ignore
//! let metrics = cairn_node::NodeMetrics::register(&mut registry);
//! let peers = cairn_node::Peers::start(config, local_content, policy, metrics).await?;
//! engine.set_peers(Arc::new(peers.clone())); // and keep `peers.node()` to stop it
//! ```
//!
//! [`Peers::start`] starts the swarm with a Bitswap block source over the content and the
//! downloads under way ([`block_source`]), the resolve and metadata servers ([`Peers::new`]),
//! and the announcement of every held artifact ([`Peers::announce_held`]); tests that need
//! another block source call those steps themselves.

pub mod bitswap;
pub mod metrics;
pub mod peers;
pub mod swarm;

pub use bitswap::{Bitswap, BlockSource, FetchError};
pub use cairn_peering::{ContentError, HeldArtifact, LocalContent};
pub use metrics::NodeMetrics;
pub use peers::{ContentBlocks, PeerPolicy, Peers, PendingMap, block_source};
pub use swarm::{Node, NodeConfig, NodeError, PeerInfo};
