//! UnixFS v1 file DAGs under the `unixfs-v1-2025` profile (IPIP-0499), built while bytes stream in.
//!
//! Profile: CIDv1, sha2-256, raw leaves of fixed 1 MiB chunks, balanced layout with at most 1024
//! links per node; a file of a single chunk (including the empty file) is that raw leaf itself.
//! These are the rules of IPFS's reference importer, so Helia and Kubo agree on every root CID.
//!
//! Leaves are never copied: the artifact's flat file *is* the leaf data (leaf `i` is the byte
//! range `[i MiB, (i+1) MiB)`), so [`DagBuilder`] only hashes chunks as they pass and keeps their
//! CIDs. The inner dag-pb nodes it returns are tiny (about 40 bytes per link) and are stored as
//! blocks of their own.
//!
//! Encoding (dag-pb and UnixFS `Data` are protobuf): a node is `PBNode { Links = 2 (repeated),
//! Data = 1 }` with the links written first, as dag-pb requires; each link is `PBLink { Hash = 1,
//! Name = 2 (always ""), Tsize = 3 }`; `Data` is UnixFS `Data { Type = 1 (File = 2), filesize = 3,
//! blocksizes = 4 (repeated, unpacked) }`.

use cid::Cid;
use sha2::Digest as _;

use crate::cid::{SHA2_256, dag_pb_cid, raw_cid};

/// Bytes per leaf.
pub const CHUNK_SIZE: u64 = 1 << 20;
/// Links per inner node at most.
pub const MAX_LINKS: usize = 1024;

/// One raw leaf: a chunk of the flat file.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Leaf {
    pub cid: Cid,
    pub offset: u64,
    pub len: u64,
}

/// A finished DAG: its root, its leaves (in file order) and its encoded inner nodes.
#[derive(Clone, Debug)]
pub struct Dag {
    pub root: Cid,
    pub size: u64,
    pub leaves: Vec<Leaf>,
    pub nodes: Vec<(Cid, Vec<u8>)>,
}

/// Hashes a file's chunks as its bytes arrive; [`DagBuilder::finish`] lays out the DAG.
#[derive(Clone)]
pub struct DagBuilder {
    chunk: sha2::Sha256,
    chunk_len: u64,
    offset: u64,
    leaves: Vec<Leaf>,
}

impl Default for DagBuilder {
    fn default() -> Self {
        Self::new()
    }
}

impl DagBuilder {
    pub fn new() -> Self {
        DagBuilder {
            chunk: sha2::Sha256::new(),
            chunk_len: 0,
            offset: 0,
            leaves: Vec::new(),
        }
    }

    /// Feed the next bytes of the file.
    pub fn update(&mut self, mut data: &[u8]) {
        while !data.is_empty() {
            let room = (CHUNK_SIZE - self.chunk_len) as usize;
            let take = room.min(data.len());
            self.chunk.update(&data[..take]);
            self.chunk_len += take as u64;
            data = &data[take..];
            if self.chunk_len == CHUNK_SIZE {
                self.close_chunk();
            }
        }
    }

    fn close_chunk(&mut self) {
        let digest = std::mem::replace(&mut self.chunk, sha2::Sha256::new()).finalize();
        self.leaves.push(Leaf {
            cid: raw_cid(SHA2_256, &digest),
            offset: self.offset,
            len: self.chunk_len,
        });
        self.offset += self.chunk_len;
        self.chunk_len = 0;
    }

    /// Bytes fed so far.
    pub fn len(&self) -> u64 {
        self.offset + self.chunk_len
    }

    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    /// Close the last chunk and build the balanced layout over the leaves.
    pub fn finish(mut self) -> Dag {
        // The empty file is one empty raw leaf; otherwise a trailing empty chunk is no leaf.
        if self.chunk_len > 0 || self.leaves.is_empty() {
            self.close_chunk();
        }
        let size = self.offset;
        if let [leaf] = self.leaves.as_slice() {
            return Dag {
                root: leaf.cid,
                size,
                leaves: self.leaves,
                nodes: Vec::new(),
            };
        }
        let mut nodes = Vec::new();
        let mut level: Vec<Child> = self
            .leaves
            .iter()
            .map(|leaf| Child {
                cid: leaf.cid,
                tsize: leaf.len,
                file_size: leaf.len,
            })
            .collect();
        // Group children into nodes of at most MAX_LINKS until one remains; a group of one still
        // becomes a node (only a whole single-chunk file is reduced to its leaf).
        loop {
            level = level
                .chunks(MAX_LINKS)
                .map(|group| {
                    let (cid, block, child) = encode_file_node(group);
                    nodes.push((cid, block));
                    child
                })
                .collect();
            if level.len() == 1 {
                break;
            }
        }
        let root = level[0].cid;
        Dag {
            root,
            size,
            leaves: self.leaves,
            nodes,
        }
    }
}

/// The root CID of `data` held in memory.
pub fn root_of(data: &[u8]) -> Cid {
    let mut builder = DagBuilder::new();
    builder.update(data);
    builder.finish().root
}

struct Child {
    cid: Cid,
    /// Cumulative encoded size of the child's DAG (dag-pb `Tsize`).
    tsize: u64,
    /// File bytes under the child (UnixFS `blocksizes`).
    file_size: u64,
}

fn encode_file_node(children: &[Child]) -> (Cid, Vec<u8>, Child) {
    let file_size: u64 = children.iter().map(|c| c.file_size).sum();
    let mut data = Vec::with_capacity(8 + children.len() * 4);
    put_varint_field(&mut data, 1, 2); // Type = File
    put_varint_field(&mut data, 3, file_size);
    for child in children {
        put_varint_field(&mut data, 4, child.file_size);
    }
    let mut node = Vec::with_capacity(children.len() * 44 + data.len() + 4);
    let mut link = Vec::with_capacity(48);
    for child in children {
        link.clear();
        put_bytes_field(&mut link, 1, &child.cid.to_bytes());
        put_bytes_field(&mut link, 2, b"");
        put_varint_field(&mut link, 3, child.tsize);
        put_bytes_field(&mut node, 2, &link);
    }
    put_bytes_field(&mut node, 1, &data);
    let cid = dag_pb_cid(&node);
    let tsize = node.len() as u64 + children.iter().map(|c| c.tsize).sum::<u64>();
    (
        cid,
        node,
        Child {
            cid,
            tsize,
            file_size,
        },
    )
}

/// Append an unsigned LEB128 varint.
pub fn put_varint(out: &mut Vec<u8>, mut value: u64) {
    while value >= 0x80 {
        out.push((value as u8) | 0x80);
        value >>= 7;
    }
    out.push(value as u8);
}

fn put_varint_field(out: &mut Vec<u8>, field: u64, value: u64) {
    put_varint(out, field << 3);
    put_varint(out, value);
}

fn put_bytes_field(out: &mut Vec<u8>, field: u64, bytes: &[u8]) {
    put_varint(out, (field << 3) | 2);
    put_varint(out, bytes.len() as u64);
    out.extend_from_slice(bytes);
}

#[cfg(test)]
mod tests;
