//! The mirror's side of the swarm, under its old path: what it asks of peers ([`PeerSource`],
//! implemented by `cairn-node`), what it tells them about the downloads it runs
//! ([`PendingLeaves`]), and what the swarm reads of this node's holdings ([`LocalContent`],
//! implemented by the store's [`Holdings`](crate::holdings::Holdings), which also tells the swarm
//! of each artifact committed or imported). The types live in `cairn-peering`, the contract
//! both sides depend on.
//!
//! The mirror never trusts a peer: bytes from peers go through the same
//! [`ArtifactWriter`](crate::store::ArtifactWriter) as bytes from upstream, so an artifact is
//! committed only when its registry digest matches, and a metadata document from a peer is read
//! by the adapter (apt checks its signature) before it is indexed.

pub use cairn_peering::{
    ContentError, HeldArtifact, HoldingChange, LeafProgress, LocalContent, PeerChunk, PeerDocument,
    PeerFetch, PeerSource, PendingLeaves,
};
