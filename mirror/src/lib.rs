//! Cairn's core: the store, the index, upstream fetching, verification and the HTTP server.
//! It knows no ecosystem by name; adapters plug in through [`ecosystem::Ecosystem`].

mod accept;
pub mod blocks;
pub mod bundle;
pub mod car;
pub mod cid;
pub mod dagcbor;
pub mod download;
pub mod ecosystem;
pub mod error;
pub mod flight;
mod gateway;
pub mod index;
pub mod json;
pub mod limits;
pub mod lru;
pub mod metrics;
mod mirror;
pub mod negotiate;
pub mod peers;
pub mod render;
pub mod server;
pub mod snapshot;
pub mod store;
#[doc(hidden)]
pub mod testing;
pub mod units;
pub mod unixfs;
mod unkept;
pub mod upstream;
mod verified;

pub use crate::mirror::{ArtifactBody, EcosystemSetup, MetadataHit, Mirror, MirrorConfig, now_ms};
