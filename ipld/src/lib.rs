//! `cairn-ipld`: the IPFS formats every other crate speaks: content identifiers and registry
//! digests ([`cid`]), UnixFS files of 1 MiB raw leaves ([`unixfs`]), the dag-cbor subset Cairn
//! writes and reads ([`dagcbor`]), and CAR v1 archives ([`car`]). Pure and synchronous: no tokio,
//! no files, no network (readers and writers are generic over `std::io`), so the adapters can
//! depend on it without pulling in I/O.

pub mod car;
pub mod cid;
pub mod dagcbor;
pub mod unixfs;
