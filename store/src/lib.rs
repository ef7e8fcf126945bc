//! Cairn's data directory: the files (flat artifacts, metadata blocks) and the SQLite index
//! over them, and the blocks they hold. This crate is the only code that writes a data
//! directory; it knows nothing of HTTP, upstreams or ecosystems by name.

mod blob;
pub mod blocks;
pub mod checked;
pub mod error;
pub mod events;
pub mod holdings;
pub mod index;
pub mod store;
#[doc(hidden)]
pub mod testing;
mod writer;

pub use cairn_ipld::{car, cid, unixfs};
