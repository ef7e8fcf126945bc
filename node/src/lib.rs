//! Cairn's embedded libp2p peer: the swarm ([`swarm::Node`]) and Bitswap 1.2.0
//! ([`bitswap::Bitswap`]), through which Cairn nodes share their caches block by block.
//!
//! The node serves whatever its [`bitswap::BlockSource`] holds (the mirror's
//! `cairn_mirror::blocks::Blocks`) and fetches blocks from peers, verified against their CIDs.

pub mod bitswap;
pub mod swarm;

pub use bitswap::{Bitswap, BlockSource, FetchError};
pub use swarm::{Node, NodeConfig, NodeError, PeerInfo};
