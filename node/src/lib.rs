//! Cairn's embedded libp2p peer: the swarm ([`swarm::Node`]), Bitswap 1.2.0
//! ([`bitswap::Bitswap`]), and the engine's peer source ([`peers::Peers`]), through which Cairn
//! nodes share their caches block by block.
//!
//! The node knows the engine only through `cairn-peering`: it implements
//! [`PeerSource`](cairn_peering::PeerSource) for the engine, and reads this node's holdings
//! through the [`LocalContent`] the store hands out (`Store::holdings`), which also tells it of
//! every artifact the store comes to hold. It holds nothing of the engine, so the engine holding
//! the node makes no cycle. The bin starts it before the engine:
//!
//! ```ignore
//! let metrics = metrics_registry.register(cairn_node::NodeMetrics::register);
//! let peers = cairn_node::Peers::start(config, store.holdings(), policy, metrics).await?;
//! let engine = Mirror::builder(config, ecosystems).store(store).peers(Arc::new(peers)).build()?;
//! ```
//!
//! [`Peers::start`] starts the swarm with a Bitswap block source over the content and the
//! downloads under way ([`block_source`]), the resolve and metadata servers ([`Peers::new`]),
//! and the announcements ([`Peers::announce`]): what is held at start, then each change; tests
//! that need another block source call those steps themselves.

pub mod bitswap;
pub mod metrics;
pub mod peers;
pub mod swarm;

pub use bitswap::{Bitswap, BlockSource, FetchError};
pub use cairn_peering::{ContentError, HeldArtifact, LocalContent};
pub use metrics::NodeMetrics;
pub use peers::{ContentBlocks, PeerPolicy, Peers, PendingMap, block_source};
pub use swarm::{Node, NodeConfig, NodeError, PeerInfo};
