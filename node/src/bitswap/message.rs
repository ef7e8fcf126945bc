//! The Bitswap wire format: the protobuf `Message` of Bitswap 1.0.0–1.2.0, its uvarint
//! length-prefixed framing, and CID prefixes (docs/protocols.md).
//!
//! Goals: byte-exact interoperability with boxo/kubo for the fields Cairn uses, no `protoc` (the
//! types are derived with prost), and a hard 4 MiB ceiling on any frame read, checked before a
//! byte of the body is buffered.
//!
//! Non-goals: hashes other than sha2-256 in payload prefixes. A received block's CID is rebuilt
//! from its prefix plus the hash of its data, so a prefix naming a hash we do not compute is
//! rejected rather than trusted.

use bytes::Bytes;
use cid::Cid;
use futures::{AsyncRead, AsyncReadExt as _, AsyncWrite, AsyncWriteExt as _};
use prost::Message as _;
use sha2::Digest as _;

/// The largest message read or written, framing excluded (docs/protocols.md).
pub const MAX_MESSAGE_SIZE: usize = 4 << 20;

/// The largest block sent or accepted; larger blocks are not interoperable.
pub const MAX_BLOCK_SIZE: usize = 2 << 20;

/// Multihash code of sha2-256, the only hash a payload prefix may name.
const SHA2_256: u64 = 0x12;

/// A Bitswap message: a wantlist (requests) and/or blocks and presences (responses).
#[derive(Clone, PartialEq, prost::Message)]
pub struct Message {
    #[prost(message, optional, tag = "1")]
    pub wantlist: Option<Wantlist>,
    /// Bitswap 1.0.0 blocks: data only, the CID left to the receiver to find.
    #[prost(bytes = "bytes", repeated, tag = "2")]
    pub blocks: Vec<Bytes>,
    #[prost(message, repeated, tag = "3")]
    pub payload: Vec<Block>,
    #[prost(message, repeated, tag = "4")]
    pub block_presences: Vec<BlockPresence>,
    #[prost(int32, tag = "5")]
    pub pending_bytes: i32,
}

/// The sender's wants: the full list, or a change to it when `full` is false.
#[derive(Clone, PartialEq, prost::Message)]
pub struct Wantlist {
    #[prost(message, repeated, tag = "1")]
    pub entries: Vec<Entry>,
    #[prost(bool, tag = "2")]
    pub full: bool,
}

/// One want, or the cancellation of one.
#[derive(Clone, PartialEq, prost::Message)]
pub struct Entry {
    /// The wanted CID, in binary form.
    #[prost(bytes = "bytes", tag = "1")]
    pub block: Bytes,
    /// Higher is served first.
    #[prost(int32, tag = "2")]
    pub priority: i32,
    #[prost(bool, tag = "3")]
    pub cancel: bool,
    #[prost(enumeration = "WantType", tag = "4")]
    pub want_type: i32,
    #[prost(bool, tag = "5")]
    pub send_dont_have: bool,
}

/// Whether an entry wants the block itself or only to know that the peer has it.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord, prost::Enumeration)]
#[repr(i32)]
pub enum WantType {
    Block = 0,
    Have = 1,
}

/// A block of Bitswap 1.1.0 and later: its CID prefix and its data.
#[derive(Clone, PartialEq, prost::Message)]
pub struct Block {
    #[prost(bytes = "bytes", tag = "1")]
    pub prefix: Bytes,
    #[prost(bytes = "bytes", tag = "2")]
    pub data: Bytes,
}

/// A HAVE or DONT_HAVE for one CID.
#[derive(Clone, PartialEq, prost::Message)]
pub struct BlockPresence {
    #[prost(bytes = "bytes", tag = "1")]
    pub cid: Bytes,
    #[prost(enumeration = "BlockPresenceType", tag = "2")]
    pub r#type: i32,
}

/// The two presences.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord, prost::Enumeration)]
#[repr(i32)]
pub enum BlockPresenceType {
    Have = 0,
    DontHave = 1,
}

/// A frame or prefix that could not be read.
#[derive(Debug, thiserror::Error)]
pub enum WireError {
    #[error("bitswap stream: {0}")]
    Io(#[from] std::io::Error),
    #[error("bitswap message of {size} bytes exceeds the limit of {MAX_MESSAGE_SIZE}")]
    TooLarge { size: u64 },
    #[error("bitswap message length prefix is not a valid uvarint")]
    BadLength,
    #[error("malformed bitswap message: {0}")]
    Decode(#[from] prost::DecodeError),
    #[error("malformed CID prefix {prefix}: {reason}")]
    BadPrefix {
        prefix: String,
        reason: &'static str,
    },
    #[error("CID prefix {prefix} names multihash 0x{code:x}; only sha2-256 is accepted")]
    UnsupportedHash { prefix: String, code: u64 },
    #[error("block of {size} bytes for {cid} exceeds the limit of {MAX_BLOCK_SIZE}")]
    BlockTooLarge { cid: Cid, size: usize },
}

impl Message {
    /// This message's encoding without framing.
    pub fn to_bytes(&self) -> Vec<u8> {
        self.encode_to_vec()
    }

    /// True when the message carries nothing.
    pub fn is_empty(&self) -> bool {
        self.wantlist
            .as_ref()
            .is_none_or(|w| w.entries.is_empty() && !w.full)
            && self.blocks.is_empty()
            && self.payload.is_empty()
            && self.block_presences.is_empty()
    }
}

impl Entry {
    /// The entry's want type; unknown values are read as want-block.
    pub fn kind(&self) -> WantType {
        WantType::try_from(self.want_type).unwrap_or(WantType::Block)
    }
}

impl BlockPresence {
    /// The presence type, or `None` for a value this version does not know.
    pub fn kind(&self) -> Option<BlockPresenceType> {
        BlockPresenceType::try_from(self.r#type).ok()
    }
}

/// Append `value` as an unsigned LEB128 varint.
pub fn put_uvarint(out: &mut Vec<u8>, value: u64) {
    cairn_ipld::unixfs::put_varint(out, value);
}

/// Read one uvarint from the front of `bytes`: its value and its length.
fn take_uvarint(bytes: &[u8]) -> Option<(u64, usize)> {
    let mut value = 0u64;
    for (i, byte) in bytes.iter().enumerate().take(10) {
        let low = u64::from(byte & 0x7f);
        if i == 9 && low > 1 {
            return None;
        }
        value |= low << (7 * i);
        if byte & 0x80 == 0 {
            return Some((value, i + 1));
        }
    }
    None
}

/// Block data shorter than this is copied into the frame; longer data is written from its own
/// buffer.
const INLINE: usize = 16 << 10;

/// `message` as one frame (its length as a uvarint, then the message) in parts: the fields
/// encoded as prost encodes them, except that each block's data of 16 KiB or more is
/// a part of its own, the buffer it is held in. Concatenated, the parts are the frame, byte for
/// byte; a block is never copied to frame it.
pub fn frame_parts(message: &Message) -> Result<Vec<Bytes>, WireError> {
    use prost::encoding::{WireType, encode_key, encode_varint};
    let len = message.encoded_len();
    if len > MAX_MESSAGE_SIZE {
        return Err(WireError::TooLarge { size: len as u64 });
    }
    let mut parts = Vec::new();
    let mut head = Vec::with_capacity(64);
    encode_varint(len as u64, &mut head);
    let mut data = |head: &mut Vec<u8>, data: &Bytes| {
        encode_varint(data.len() as u64, head);
        if data.len() < INLINE {
            head.extend_from_slice(data);
        } else {
            parts.push(Bytes::from(std::mem::take(head)));
            parts.push(data.clone());
        }
    };
    // In field order, with proto3's defaults left out, as the derived encoder does.
    if let Some(wantlist) = &message.wantlist {
        prost::encoding::message::encode(1, wantlist, &mut head);
    }
    for block in &message.blocks {
        encode_key(2, WireType::LengthDelimited, &mut head);
        data(&mut head, block);
    }
    for block in &message.payload {
        encode_key(3, WireType::LengthDelimited, &mut head);
        encode_varint(block.encoded_len() as u64, &mut head);
        if !block.prefix.is_empty() {
            prost::encoding::bytes::encode(1, &block.prefix, &mut head);
        }
        if !block.data.is_empty() {
            encode_key(2, WireType::LengthDelimited, &mut head);
            data(&mut head, &block.data);
        }
    }
    for presence in &message.block_presences {
        prost::encoding::message::encode(4, presence, &mut head);
    }
    if message.pending_bytes != 0 {
        prost::encoding::int32::encode(5, &message.pending_bytes, &mut head);
    }
    if !head.is_empty() {
        parts.push(Bytes::from(head));
    }
    Ok(parts)
}

/// Write `message` as one frame: its length as a uvarint, then the message ([`frame_parts`]).
///
/// Not cancel-safe: a cancelled write leaves a partial frame on the stream.
pub async fn write_message<W: AsyncWrite + Unpin>(
    writer: &mut W,
    message: &Message,
) -> Result<(), WireError> {
    for part in frame_parts(message)? {
        writer.write_all(&part).await?;
    }
    writer.flush().await?;
    Ok(())
}

/// Read one frame, or `None` at a clean end of stream (before the first byte of a frame).
///
/// Not cancel-safe: a cancelled read loses the part of the frame already read.
pub async fn read_message<R: AsyncRead + Unpin>(
    reader: &mut R,
) -> Result<Option<Message>, WireError> {
    let mut len = 0u64;
    let mut shift = 0;
    loop {
        let mut byte = [0u8; 1];
        if reader.read(&mut byte).await? == 0 {
            if shift == 0 {
                return Ok(None);
            }
            return Err(std::io::Error::from(std::io::ErrorKind::UnexpectedEof).into());
        }
        if shift > 63 {
            return Err(WireError::BadLength);
        }
        len |= u64::from(byte[0] & 0x7f) << shift;
        if byte[0] & 0x80 == 0 {
            break;
        }
        shift += 7;
    }
    if len > MAX_MESSAGE_SIZE as u64 {
        return Err(WireError::TooLarge { size: len });
    }
    let mut body = cairn_ipld::buffer::zeroed(len as usize);
    reader.read_exact(&mut body).await?;
    Ok(Some(Message::decode(Bytes::from(body))?))
}

/// The prefix of `cid`: version, codec, multihash code and digest length, as uvarints.
pub fn cid_prefix(cid: &Cid) -> Vec<u8> {
    let mut out = Vec::with_capacity(8);
    put_uvarint(&mut out, u64::from(cid.version()));
    put_uvarint(&mut out, cid.codec());
    put_uvarint(&mut out, cid.hash().code());
    put_uvarint(&mut out, u64::from(cid.hash().size()));
    out
}

/// The decoded fields of a CID prefix.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub struct Prefix {
    pub version: u64,
    pub codec: u64,
    pub hash_code: u64,
    pub hash_len: u64,
}

impl Prefix {
    /// Decode a prefix: exactly four uvarints.
    pub fn decode(bytes: &[u8]) -> Result<Self, WireError> {
        let bad = |reason| WireError::BadPrefix {
            prefix: hex::encode(bytes),
            reason,
        };
        let mut fields = [0u64; 4];
        let mut rest = bytes;
        for field in &mut fields {
            let (value, used) = take_uvarint(rest).ok_or_else(|| bad("truncated uvarint"))?;
            *field = value;
            rest = &rest[used..];
        }
        if !rest.is_empty() {
            return Err(bad("trailing bytes"));
        }
        let [version, codec, hash_code, hash_len] = fields;
        Ok(Prefix {
            version,
            codec,
            hash_code,
            hash_len,
        })
    }

    /// The CID of `data` under this prefix. Only sha2-256 (32-byte digests) is accepted, and a
    /// CIDv0 must be dag-pb.
    pub fn to_cid(&self, data: &[u8]) -> Result<Cid, WireError> {
        let prefix = || {
            let mut out = Vec::new();
            for v in [self.version, self.codec, self.hash_code, self.hash_len] {
                put_uvarint(&mut out, v);
            }
            hex::encode(out)
        };
        if self.hash_code != SHA2_256 {
            return Err(WireError::UnsupportedHash {
                prefix: prefix(),
                code: self.hash_code,
            });
        }
        if self.hash_len != 32 {
            return Err(WireError::BadPrefix {
                prefix: prefix(),
                reason: "a sha2-256 digest has 32 bytes",
            });
        }
        let digest = sha2::Sha256::digest(data);
        let hash = cid::multihash::Multihash::<64>::wrap(SHA2_256, &digest).map_err(|_| {
            WireError::BadPrefix {
                prefix: prefix(),
                reason: "digest does not fit a multihash",
            }
        })?;
        match self.version {
            0 if self.codec == cairn_ipld::cid::DAG_PB => {
                Ok(Cid::new_v0(hash).map_err(|_| WireError::BadPrefix {
                    prefix: prefix(),
                    reason: "not a valid CIDv0",
                })?)
            }
            0 => Err(WireError::BadPrefix {
                prefix: prefix(),
                reason: "a CIDv0 is always dag-pb",
            }),
            1 => Ok(Cid::new_v1(self.codec, hash)),
            _ => Err(WireError::BadPrefix {
                prefix: prefix(),
                reason: "unknown CID version",
            }),
        }
    }
}

/// The CID of a received payload block, rebuilt from its prefix and the hash of its data.
pub fn block_cid(block: &Block) -> Result<Cid, WireError> {
    Prefix::decode(&block.prefix)?.to_cid(&block.data)
}

#[cfg(test)]
mod tests;
