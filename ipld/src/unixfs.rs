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

use crate::cid::{RAW, SHA2_256, dag_pb_cid, raw_cid};

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

    /// Feed the next bytes of the file, `data`, whose sha2-256 the caller has already checked
    /// against the raw CID `leaf` (Bitswap verifies every block it takes). When `data` is one
    /// whole chunk at a chunk boundary and `leaf` is a raw sha2-256 CID, that CID is the leaf's
    /// and the bytes are not hashed again; otherwise this is [`DagBuilder::update`].
    pub fn update_leaf(&mut self, data: &[u8], leaf: &Cid) {
        let whole = self.chunk_len == 0 && data.len() as u64 == CHUNK_SIZE;
        if whole && leaf.codec() == RAW && leaf.hash().code() == SHA2_256 {
            self.leaves.push(Leaf {
                cid: *leaf,
                offset: self.offset,
                len: CHUNK_SIZE,
            });
            self.offset += CHUNK_SIZE;
        } else {
            self.update(data);
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

    /// The leaves completed so far (every full 1 MiB chunk), in file order.
    pub fn leaves(&self) -> &[Leaf] {
        &self.leaves
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

// Decoding: the reverse of the encoder above, for walking DAGs this node holds (or receives).
// It accepts any valid dag-pb node and UnixFS `Data`, not only the profile written here: field
// order is free, `blocksizes` may be packed, and unknown fields are skipped.

/// A dag-pb node or UnixFS `Data` message that could not be decoded.
#[derive(Debug, thiserror::Error)]
#[error("malformed {what}: {reason}")]
pub struct DecodeError {
    what: &'static str,
    reason: String,
}

/// A decoded dag-pb link.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct PbLink {
    pub cid: Cid,
    /// Cumulative encoded size of the target's DAG, when given.
    pub tsize: Option<u64>,
}

/// A decoded dag-pb node: its links in order and its `Data`.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct PbNode<'a> {
    pub links: Vec<PbLink>,
    pub data: Option<&'a [u8]>,
}

/// UnixFS `Data` types.
pub const UNIXFS_RAW: u64 = 0;
pub const UNIXFS_DIRECTORY: u64 = 1;
pub const UNIXFS_FILE: u64 = 2;

/// The fields of UnixFS `Data` a reader of files needs.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct UnixfsData<'a> {
    /// `Type`: [`UNIXFS_FILE`], [`UNIXFS_DIRECTORY`], …
    pub kind: u64,
    /// File bytes held in the node itself, before those of its children.
    pub data: &'a [u8],
    pub filesize: Option<u64>,
    /// File bytes under each link, in link order.
    pub blocksizes: Vec<u64>,
}

impl UnixfsData<'_> {
    /// True for a file (or the deprecated raw type), whose bytes are the node's own data then
    /// its children's.
    pub fn is_file(&self) -> bool {
        matches!(self.kind, UNIXFS_FILE | UNIXFS_RAW)
    }

    /// Bytes of the file under this node: `filesize`, else the inline data plus `blocksizes`
    /// (saturating: the sizes come from the block, and a hostile one may sum past `u64::MAX`).
    pub fn file_size(&self) -> u64 {
        self.filesize.unwrap_or_else(|| {
            self.blocksizes
                .iter()
                .fold(self.data.len() as u64, |sum, &size| {
                    sum.saturating_add(size)
                })
        })
    }
}

/// Decode a dag-pb node.
pub fn decode_node(bytes: &[u8]) -> Result<PbNode<'_>, DecodeError> {
    let what = "dag-pb node";
    let mut node = PbNode::default();
    let mut fields = Fields::new(bytes, what);
    while let Some((field, value)) = fields.next_field()? {
        match (field, value) {
            (2, Value::Bytes(link)) => node.links.push(decode_link(link)?),
            (1, Value::Bytes(data)) => node.data = Some(data),
            (1 | 2, _) => return Err(fields.error(format!("field {field} is not bytes"))),
            _ => {}
        }
    }
    Ok(node)
}

fn decode_link(bytes: &[u8]) -> Result<PbLink, DecodeError> {
    let what = "dag-pb link";
    let mut cid = None;
    let mut tsize = None;
    let mut fields = Fields::new(bytes, what);
    while let Some((field, value)) = fields.next_field()? {
        match (field, value) {
            (1, Value::Bytes(hash)) => {
                cid =
                    Some(Cid::try_from(hash).map_err(|e| fields.error(format!("bad Hash: {e}")))?);
            }
            (3, Value::Varint(size)) => tsize = Some(size),
            (1 | 3, _) => return Err(fields.error(format!("field {field} has the wrong type"))),
            _ => {}
        }
    }
    match cid {
        Some(cid) => Ok(PbLink { cid, tsize }),
        None => Err(fields.error("link without Hash".into())),
    }
}

/// Decode UnixFS `Data` (the `Data` field of a dag-pb node).
pub fn decode_unixfs(bytes: &[u8]) -> Result<UnixfsData<'_>, DecodeError> {
    let what = "UnixFS Data";
    let mut out = UnixfsData::default();
    let mut kind = None;
    let mut fields = Fields::new(bytes, what);
    while let Some((field, value)) = fields.next_field()? {
        match (field, value) {
            (1, Value::Varint(v)) => kind = Some(v),
            (2, Value::Bytes(data)) => out.data = data,
            (3, Value::Varint(v)) => out.filesize = Some(v),
            (4, Value::Varint(v)) => out.blocksizes.push(v),
            (4, Value::Bytes(mut packed)) => {
                while !packed.is_empty() {
                    let (v, used) = read_varint(packed)
                        .ok_or_else(|| fields.error("bad packed blocksizes".into()))?;
                    out.blocksizes.push(v);
                    packed = &packed[used..];
                }
            }
            (1..=4, _) => return Err(fields.error(format!("field {field} has the wrong type"))),
            _ => {}
        }
    }
    out.kind = kind.ok_or_else(|| fields.error("no Type".into()))?;
    Ok(out)
}

enum Value<'a> {
    Varint(u64),
    Bytes(&'a [u8]),
    Fixed,
}

/// A protobuf field reader over one message.
struct Fields<'a> {
    bytes: &'a [u8],
    pos: usize,
    what: &'static str,
}

impl<'a> Fields<'a> {
    fn new(bytes: &'a [u8], what: &'static str) -> Self {
        Fields {
            bytes,
            pos: 0,
            what,
        }
    }

    fn error(&self, reason: String) -> DecodeError {
        DecodeError {
            what: self.what,
            reason: format!("{reason} (at byte {})", self.pos),
        }
    }

    fn varint(&mut self) -> Result<u64, DecodeError> {
        let (value, used) = read_varint(&self.bytes[self.pos..])
            .ok_or_else(|| self.error("truncated or overlong varint".into()))?;
        self.pos += used;
        Ok(value)
    }

    fn take(&mut self, len: u64) -> Result<&'a [u8], DecodeError> {
        let bytes = self.bytes;
        let end = usize::try_from(len)
            .ok()
            .and_then(|len| self.pos.checked_add(len))
            .filter(|&end| end <= bytes.len())
            .ok_or_else(|| self.error(format!("field of {len} bytes runs past the end")))?;
        let taken = &bytes[self.pos..end];
        self.pos = end;
        Ok(taken)
    }

    /// The next (field number, value), or `None` at the end of the message.
    fn next_field(&mut self) -> Result<Option<(u64, Value<'a>)>, DecodeError> {
        if self.pos == self.bytes.len() {
            return Ok(None);
        }
        let key = self.varint()?;
        let value = match key & 7 {
            0 => Value::Varint(self.varint()?),
            1 => {
                self.take(8)?;
                Value::Fixed
            }
            2 => {
                let len = self.varint()?;
                Value::Bytes(self.take(len)?)
            }
            5 => {
                self.take(4)?;
                Value::Fixed
            }
            wire => return Err(self.error(format!("unsupported wire type {wire}"))),
        };
        Ok(Some((key >> 3, value)))
    }
}

/// An unsigned LEB128 varint at the start of `bytes`: (value, bytes used).
fn read_varint(bytes: &[u8]) -> Option<(u64, usize)> {
    let mut value = 0u64;
    for (i, &byte) in bytes.iter().enumerate().take(10) {
        value |= u64::from(byte & 0x7f) << (7 * i);
        if byte & 0x80 == 0 {
            return Some((value, i + 1));
        }
    }
    None
}

#[cfg(test)]
mod tests;
