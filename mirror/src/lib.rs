//! Cairn's core: the store, the index, upstream fetching, verification and the HTTP server.
//! It knows no ecosystem by name; adapters plug in through [`ecosystem::Ecosystem`].

pub mod bundle;
mod engine;
pub mod error;
pub mod health;
pub mod http;
pub mod limits;
pub mod metrics;
pub mod peers;
pub mod policy;
pub mod refusals;
pub mod serving;
pub mod snapshot;
#[doc(hidden)]
pub mod testing;
pub mod traffic;
pub mod upstream;

/// The identifiers, the adapter contract and its toolkit, from the crates that own them.
pub use cairn_ecosystem as ecosystem;
pub use cairn_ecosystem::{json, negotiate, units};
pub use cairn_ipld::{car, cid, dagcbor, unixfs};
/// The data directory (files, index, blocks), from the crate that owns and alone writes it.
pub use cairn_store::{blocks, events, holdings, index, store};

pub use crate::engine::eviction::Eviction;
pub use crate::engine::purge::{PURGE_PREFIX, PurgeReport, PurgeSpec, PurgedKey, purge_store};
pub use crate::engine::repair::{
    REPAIR_PREFIX, RepairReport, RepairedKey, VERIFY_JOB, VerifyReport,
};
pub use crate::engine::tokens::{Caller, SECRET_PREFIX, new_secret, secret_hash};
pub use crate::engine::{
    ArtifactBody, Builder, EcosystemSetup, MetadataHit, MinFree, Mirror, MirrorConfig,
    RoutedUpstream, content_key, now_ms,
};
pub use crate::serving::Serving;
