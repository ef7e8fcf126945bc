//! Cairn's core: the store, the index, upstream fetching, verification and the HTTP server.
//! It knows no ecosystem by name; adapters plug in through [`ecosystem::Ecosystem`].

mod accept;
pub mod blocks;
pub mod bundle;
pub mod car;
pub mod dagcbor;
pub mod download;
pub mod error;
pub mod flight;
mod gateway;
pub mod index;
pub mod limits;
pub mod lru;
pub mod metrics;
mod mirror;
pub mod peers;
pub mod render;
pub mod server;
pub mod snapshot;
pub mod store;
#[doc(hidden)]
pub mod testing;
pub mod unixfs;
mod unkept;
pub mod upstream;
mod verified;

/// The identifiers, the adapter contract and its toolkit, from the crates that own them.
pub use cairn_ecosystem as ecosystem;
pub use cairn_ecosystem::{json, negotiate, units};
pub use cairn_ipld::cid;

pub use crate::mirror::{ArtifactBody, EcosystemSetup, MetadataHit, Mirror, MirrorConfig, now_ms};
