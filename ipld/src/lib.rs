//! `cairn-ipld`: the content identifiers every other crate speaks. Pure and synchronous: no
//! tokio, no files, no network, so the adapters can depend on it without pulling in I/O.

pub mod cid;
