//! `cairn-peering`: the contract between Cairn's engine (`cairn-mirror`) and its swarm
//! (`cairn-node`), so that neither names the other.
//!
//! - [`PeerSource`] ([`source`]): what the engine asks of the swarm (artifacts and documents
//!   from peers, announcements of what this node is downloading), with the values that
//!   cross it ([`PeerFetch`], [`PeerChunk`], [`PendingLeaves`], [`LeafProgress`],
//!   [`PeerDocument`]). The swarm implements it.
//! - [`LocalContent`] ([`content`]): what the swarm reads of this node's holdings to serve
//!   peers (blocks by CID, committed artifacts with their leaves, metadata documents) and the
//!   artifacts it comes to hold, for the swarm to announce. The store implements it, not the
//!   engine.
//!
//! The graph is `cairn-mirror → cairn-peering ← cairn-node`, both over `cairn-ipld`; the bin
//! hands the node the store's `LocalContent`, then the engine the node as its
//! `Arc<dyn PeerSource>`. This crate does no
//! I/O of its own: no libp2p, no SQLite, no HTTP.

pub mod content;
pub mod source;
#[doc(hidden)]
pub mod testing;

pub use content::{
    ContentError, HeldArtifact, HoldingChange, LocalContent, changes_from, strip_userinfo,
};
pub use source::{LeafProgress, PeerChunk, PeerDocument, PeerFetch, PeerSource, PendingLeaves};
