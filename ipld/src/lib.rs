//! `cairn-ipld`: the content identifiers every other crate speaks. Pure and synchronous: no
//! tokio, no files, no network, so the adapters can depend on it without pulling in I/O.
//!
//! [`digest`] (registry digests) is always there; [`cid`] (the CIDs the store and peers use)
//! needs the `cid` feature, on by default. Adapters only name digests, so they take this crate
//! without it and do not pull in the CID crates' multibase encoders.

pub mod digest;

#[cfg(feature = "cid")]
pub mod cid;
