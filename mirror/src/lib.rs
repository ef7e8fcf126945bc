//! Cairn's core: the store, the index, upstream fetching, verification and the HTTP server.
//! It knows no ecosystem by name; adapters plug in through [`ecosystem::Ecosystem`].

pub mod cid;
pub mod ecosystem;
pub mod error;
pub mod index;
pub mod store;
pub mod unixfs;
