//! `cairn-ipld`: the IPFS formats every other crate speaks: registry digests ([`digest`]),
//! content identifiers ([`cid`]), UnixFS files of 1 MiB raw leaves ([`unixfs`]), the dag-cbor
//! subset Cairn writes and reads ([`dagcbor`]), CAR v1 archives ([`car`]), and the buffers blocks
//! are read into ([`buffer`]). Pure and
//! synchronous: no tokio, no files, no network (readers and writers are generic over `std::io`),
//! so the adapters can depend on it without pulling in I/O.
//!
//! [`digest`] is always there; everything else needs the `cid` feature, on by default. Adapters
//! only name digests, so they take this crate without it and do not pull in the CID crates'
//! multibase encoders.

pub mod buffer;
pub mod digest;

#[cfg(feature = "cid")]
pub mod car;
#[cfg(feature = "cid")]
pub mod cid;
#[cfg(feature = "cid")]
pub mod dagcbor;
#[cfg(feature = "cid")]
pub mod unixfs;
