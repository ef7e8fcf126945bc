//! CAR v1 (Content Addressable aRchive): a streaming writer and a verifying reader.
//!
//! Layout (docs/protocols.md): `uvarint(header length) ‖ header`, then sections
//! `uvarint(len(cid) + len(data)) ‖ cid ‖ data`. The header is the dag-cbor map
//! `{"roots": [CID…], "version": 1}`; it is encoded and parsed here by hand (a CID in dag-cbor is
//! tag 42 over the bytes `00 ‖ cid`, and map keys sort length-first, so `roots` precedes
//! `version`).
//!
//! [`CarWriter`] writes sections straight through and holds no block. [`CarReader`] reads one
//! section at a time, bounded by [`MAX_SECTION_SIZE`], and checks every block against its CID
//! before handing it out, so a CAR from anywhere can be trusted block by block. Errors name the
//! byte offset where reading failed. Readers read varints a byte at a time: wrap a file or socket
//! in a [`std::io::BufReader`].

use std::io::{self, Read, Write};

use cid::Cid;

use crate::cid::{DAG_CBOR, DAG_PB, IDENTITY, RAW, SHA2_256, sha256};
use crate::unixfs::put_varint;

/// The largest header [`CarReader`] accepts.
pub const MAX_HEADER_SIZE: u64 = 64 << 10;
/// The largest block [`CarReader`] accepts: the Bitswap limit that decoders must accept (the
/// store's leaves are 1 MiB).
pub const MAX_BLOCK_SIZE: u64 = 2 << 20;
/// The largest section [`CarReader`] accepts: a block plus room for its CID.
pub const MAX_SECTION_SIZE: u64 = MAX_BLOCK_SIZE + 128;

/// A varint is at most 9 bytes (63 bits), as in the multiformats unsigned-varint spec.
const MAX_VARINT_LEN: usize = 9;
/// dag-cbor tag of a CID.
const CID_TAG: u64 = 42;

/// Why a CAR could not be read. Every message says what failed and at which byte.
#[derive(Debug, thiserror::Error)]
pub enum CarError {
    #[error("reading CAR at byte {offset} failed: {source}")]
    Io {
        offset: u64,
        #[source]
        source: io::Error,
    },
    #[error("CAR truncated: input ends at byte {offset}, inside the {what}")]
    Truncated { offset: u64, what: &'static str },
    #[error("bad varint ({what}) at byte {offset}: {reason}")]
    BadVarint {
        offset: u64,
        what: &'static str,
        reason: &'static str,
    },
    #[error("{what} at byte {offset} declares {len} bytes, more than the limit of {limit}")]
    TooLarge {
        offset: u64,
        what: &'static str,
        len: u64,
        limit: u64,
    },
    #[error("bad CAR header at byte {offset}: {reason}")]
    BadHeader { offset: u64, reason: String },
    #[error("unsupported CAR version {version} (only CAR v1 can be read)")]
    UnsupportedVersion { version: u64 },
    #[error("bad section at byte {offset}: {reason}")]
    BadSection { offset: u64, reason: String },
    #[error(
        "block {cid} at byte {offset} has unsupported codec 0x{codec:x} (raw, dag-pb and dag-cbor are read)"
    )]
    UnsupportedCodec { cid: Cid, codec: u64, offset: u64 },
    #[error(
        "block {cid} at byte {offset} uses unsupported multihash 0x{code:x} (sha2-256 and identity are verified)"
    )]
    UnsupportedHash { cid: Cid, code: u64, offset: u64 },
    #[error("block {cid} at byte {offset} does not match its CID")]
    BadBlock { cid: Cid, offset: u64 },
}

/// Writes a CAR v1 stream: the header on [`CarWriter::new`], then one section per block.
pub struct CarWriter<W: Write> {
    out: W,
    written: u64,
}

impl<W: Write> CarWriter<W> {
    /// Start a CAR with these roots (one is recommended; none is allowed).
    pub fn new(out: W, roots: &[Cid]) -> io::Result<Self> {
        let header = encode_header(roots);
        let mut prefixed = Vec::with_capacity(header.len() + 3);
        put_varint(&mut prefixed, header.len() as u64);
        prefixed.extend_from_slice(&header);
        let mut writer = CarWriter { out, written: 0 };
        writer.put(&prefixed)?;
        Ok(writer)
    }

    /// Append one block. The caller vouches that `data` hashes to `cid`.
    pub fn write_block(&mut self, cid: &Cid, data: &[u8]) -> io::Result<()> {
        let cid_bytes = cid.to_bytes();
        let mut head = Vec::with_capacity(cid_bytes.len() + 4);
        put_varint(&mut head, (cid_bytes.len() + data.len()) as u64);
        head.extend_from_slice(&cid_bytes);
        self.put(&head)?;
        self.put(data)
    }

    /// Bytes written so far, header included.
    pub fn bytes_written(&self) -> u64 {
        self.written
    }

    /// Flush and hand back the output.
    pub fn finish(mut self) -> io::Result<W> {
        self.out.flush()?;
        Ok(self.out)
    }

    fn put(&mut self, bytes: &[u8]) -> io::Result<()> {
        self.out.write_all(bytes)?;
        self.written += bytes.len() as u64;
        Ok(())
    }
}

/// The dag-cbor header `{"roots": [CID…], "version": 1}`, without its length prefix.
fn encode_header(roots: &[Cid]) -> Vec<u8> {
    let mut out = Vec::with_capacity(16 + roots.len() * 42);
    crate::dagcbor::head(&mut out, 5, 2);
    crate::dagcbor::head(&mut out, 3, 5);
    out.extend_from_slice(b"roots");
    crate::dagcbor::head(&mut out, 4, roots.len() as u64);
    for root in roots {
        let bytes = root.to_bytes();
        crate::dagcbor::head(&mut out, 6, CID_TAG);
        crate::dagcbor::head(&mut out, 2, bytes.len() as u64 + 1);
        out.push(0);
        out.extend_from_slice(&bytes);
    }
    crate::dagcbor::head(&mut out, 3, 7);
    out.extend_from_slice(b"version");
    crate::dagcbor::head(&mut out, 0, 1);
    out
}

/// Reads a CAR v1 stream, verifying each block against its CID.
///
/// After an error the stream position is unknown: stop reading (the [`Iterator`] does).
pub struct CarReader<R: Read> {
    input: R,
    offset: u64,
    roots: Vec<Cid>,
    failed: bool,
}

impl<R: Read> CarReader<R> {
    /// Read and check the header.
    pub fn new(input: R) -> Result<Self, CarError> {
        let mut reader = CarReader {
            input,
            offset: 0,
            roots: Vec::new(),
            failed: false,
        };
        let start = reader.offset;
        let len = reader
            .read_varint("header length", false)?
            .unwrap_or_default();
        if len > MAX_HEADER_SIZE {
            return Err(CarError::TooLarge {
                offset: start,
                what: "header",
                len,
                limit: MAX_HEADER_SIZE,
            });
        }
        let body_offset = reader.offset;
        let mut header = crate::buffer::zeroed(len as usize);
        reader.fill(&mut header, "header")?;
        reader.roots = parse_header(&header, body_offset)?;
        Ok(reader)
    }

    /// The roots the header names.
    pub fn roots(&self) -> &[Cid] {
        &self.roots
    }

    /// Bytes consumed so far.
    pub fn offset(&self) -> u64 {
        self.offset
    }

    /// The next verified block, or `None` at a clean end of input between sections.
    pub fn next_block(&mut self) -> Result<Option<(Cid, Vec<u8>)>, CarError> {
        let start = self.offset;
        match self.next_section()? {
            Some((cid, data)) => {
                verify_block(&cid, &data, start)?;
                Ok(Some((cid, data)))
            }
            None => Ok(None),
        }
    }

    /// The next block *without* checking its bytes against its CID: for a caller that hashes
    /// them anyway (an importer rebuilding a UnixFS DAG compares every leaf CID it computes)
    /// and would otherwise hash twice. Everything else is checked as in [`CarReader::next_block`].
    pub fn next_section(&mut self) -> Result<Option<(Cid, Vec<u8>)>, CarError> {
        let start = self.offset;
        let Some(len) = self.read_varint("section length", true)? else {
            return Ok(None);
        };
        if len == 0 {
            return Err(CarError::BadSection {
                offset: start,
                reason: "empty section".into(),
            });
        }
        if len > MAX_SECTION_SIZE {
            return Err(CarError::TooLarge {
                offset: start,
                what: "section",
                len,
                limit: MAX_SECTION_SIZE,
            });
        }
        let body_offset = self.offset;
        // The CID is read from the head of the section; the data then goes straight into its
        // own buffer (no zero-fill, no shifting a megabyte down by the CID's length).
        let mut head = [0u8; 128];
        let head_len = (len as usize).min(head.len());
        self.fill(&mut head[..head_len], "section")?;
        let parsed = parse_cid(&head[..head_len]);
        let (cid, data) = match parsed {
            Ok((cid, cid_len)) => {
                let mut data = Vec::with_capacity(len as usize - cid_len);
                data.extend_from_slice(&head[cid_len..head_len]);
                let rest = len - head_len as u64;
                let got = (&mut self.input)
                    .take(rest)
                    .read_to_end(&mut data)
                    .map_err(|source| CarError::Io {
                        offset: self.offset,
                        source,
                    })?;
                self.offset += got as u64;
                if (got as u64) < rest {
                    return Err(CarError::Truncated {
                        offset: self.offset,
                        what: "section",
                    });
                }
                (cid, data)
            }
            Err(_) if head_len < len as usize => {
                // A CID longer than the head (a large identity CID): read it all, then split.
                let mut data = crate::buffer::zeroed(len as usize);
                data[..head_len].copy_from_slice(&head[..head_len]);
                self.fill(&mut data[head_len..], "section")?;
                let (cid, cid_len) = parse_cid(&data).map_err(|reason| CarError::BadSection {
                    offset: body_offset,
                    reason: format!("bad CID: {reason}"),
                })?;
                data.drain(..cid_len);
                (cid, data)
            }
            Err(reason) => {
                return Err(CarError::BadSection {
                    offset: body_offset,
                    reason: format!("bad CID: {reason}"),
                });
            }
        };
        Ok(Some((cid, data)))
    }

    /// Read one varint; `None` only when `eof_ok` and the input ends before its first byte.
    fn read_varint(&mut self, what: &'static str, eof_ok: bool) -> Result<Option<u64>, CarError> {
        let start = self.offset;
        let mut value = 0u64;
        for i in 0..MAX_VARINT_LEN {
            let Some(byte) = self.read_byte()? else {
                if i == 0 && eof_ok {
                    return Ok(None);
                }
                return Err(CarError::Truncated {
                    offset: self.offset,
                    what,
                });
            };
            value |= u64::from(byte & 0x7f) << (7 * i);
            if byte & 0x80 == 0 {
                if byte == 0 && i > 0 {
                    return Err(CarError::BadVarint {
                        offset: start,
                        what,
                        reason: "not minimally encoded",
                    });
                }
                return Ok(Some(value));
            }
        }
        Err(CarError::BadVarint {
            offset: start,
            what,
            reason: "longer than 9 bytes",
        })
    }

    fn read_byte(&mut self) -> Result<Option<u8>, CarError> {
        let mut byte = [0u8; 1];
        loop {
            match self.input.read(&mut byte) {
                Ok(0) => return Ok(None),
                Ok(_) => {
                    self.offset += 1;
                    return Ok(Some(byte[0]));
                }
                Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
                Err(source) => {
                    return Err(CarError::Io {
                        offset: self.offset,
                        source,
                    });
                }
            }
        }
    }

    /// Fill `buf` completely; the end of input first is [`CarError::Truncated`].
    fn fill(&mut self, mut buf: &mut [u8], what: &'static str) -> Result<(), CarError> {
        while !buf.is_empty() {
            match self.input.read(buf) {
                Ok(0) => {
                    return Err(CarError::Truncated {
                        offset: self.offset,
                        what,
                    });
                }
                Ok(n) => {
                    self.offset += n as u64;
                    buf = &mut buf[n..];
                }
                Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
                Err(source) => {
                    return Err(CarError::Io {
                        offset: self.offset,
                        source,
                    });
                }
            }
        }
        Ok(())
    }
}

impl<R: Read> Iterator for CarReader<R> {
    type Item = Result<(Cid, Vec<u8>), CarError>;

    /// Blocks until the end of input; stops after the first error.
    fn next(&mut self) -> Option<Self::Item> {
        if self.failed {
            return None;
        }
        let item = self.next_block();
        self.failed = item.is_err();
        item.transpose()
    }
}

/// Check `data` against `cid` (sha2-256 or identity); `offset` is where the section starts,
/// for messages.
pub fn verify_block(cid: &Cid, data: &[u8], offset: u64) -> Result<(), CarError> {
    let codec = cid.codec();
    if !matches!(codec, RAW | DAG_PB | DAG_CBOR) {
        return Err(CarError::UnsupportedCodec {
            cid: *cid,
            codec,
            offset,
        });
    }
    let mh = cid.hash();
    let ok = match mh.code() {
        SHA2_256 => mh.digest() == sha256(data),
        IDENTITY => mh.digest() == data,
        code => {
            return Err(CarError::UnsupportedHash {
                cid: *cid,
                code,
                offset,
            });
        }
    };
    if ok {
        Ok(())
    } else {
        Err(CarError::BadBlock { cid: *cid, offset })
    }
}

/// Parse the CID at the start of `bytes`; returns it and its length. Only the canonical encoding
/// (minimal varints) is accepted, so the CID's bytes are exactly what was hashed elsewhere.
fn parse_cid(bytes: &[u8]) -> Result<(Cid, usize), String> {
    let mut rest = bytes;
    let cid = Cid::read_bytes(&mut rest).map_err(|e| e.to_string())?;
    let len = bytes.len() - rest.len();
    if cid.to_bytes() != bytes[..len] {
        return Err(format!(
            "{} is not canonically encoded",
            hex::encode(&bytes[..len])
        ));
    }
    Ok((cid, len))
}

/// Parse the header map strictly: exactly the keys `roots` and `version` in dag-cbor order,
/// shortest-form heads, no trailing bytes. `base` is the header's offset in the stream.
fn parse_header(bytes: &[u8], base: u64) -> Result<Vec<Cid>, CarError> {
    let mut cbor = Cbor {
        bytes,
        pos: 0,
        base,
    };
    let entries = cbor.expect(5, "a map")?;
    let mut version = None;
    let mut roots = None;
    let mut previous_key: Option<&[u8]> = None;
    for _ in 0..entries {
        let key_offset = cbor.pos;
        let key_len = cbor.expect(3, "a text key")?;
        let key = cbor.take(key_len)?;
        if let Some(prev) = previous_key
            && (prev.len(), prev) >= (key.len(), key)
        {
            cbor.pos = key_offset;
            return Err(cbor.error(format!(
                "key {:?} is duplicated or out of dag-cbor order",
                String::from_utf8_lossy(key)
            )));
        }
        previous_key = Some(key);
        match key {
            b"version" => version = Some(cbor.expect(0, "an unsigned version")?),
            b"roots" => {
                let count = cbor.expect(4, "a list of roots")?;
                let mut list = Vec::new();
                for _ in 0..count {
                    list.push(cbor.cid()?);
                }
                roots = Some(list);
            }
            other => {
                cbor.pos = key_offset;
                return Err(cbor.error(format!("unknown key {:?}", String::from_utf8_lossy(other))));
            }
        }
    }
    if cbor.pos != bytes.len() {
        return Err(cbor.error(format!(
            "{} bytes after the header map",
            bytes.len() - cbor.pos
        )));
    }
    match version {
        None => Err(cbor.error("no version".into())),
        Some(1) => roots.ok_or_else(|| cbor.error("no roots".into())),
        Some(version) => Err(CarError::UnsupportedVersion { version }),
    }
}

/// Just enough dag-cbor to read a CAR header.
struct Cbor<'a> {
    bytes: &'a [u8],
    pos: usize,
    base: u64,
}

impl<'a> Cbor<'a> {
    fn error(&self, reason: String) -> CarError {
        CarError::BadHeader {
            offset: self.base + self.pos as u64,
            reason,
        }
    }

    fn take(&mut self, len: u64) -> Result<&'a [u8], CarError> {
        let bytes = self.bytes;
        let end = usize::try_from(len)
            .ok()
            .and_then(|len| self.pos.checked_add(len))
            .filter(|&end| end <= bytes.len())
            .ok_or_else(|| self.error(format!("item of {len} bytes runs past the header")))?;
        let taken = &bytes[self.pos..end];
        self.pos = end;
        Ok(taken)
    }

    /// The next item head as (major type, argument), rejecting non-shortest and indefinite forms.
    fn head(&mut self) -> Result<(u8, u64), CarError> {
        let start = self.pos;
        let initial = self.take(1)?[0];
        let (major, info) = (initial >> 5, initial & 0x1f);
        let (value, min) = match info {
            0..=23 => (u64::from(info), 0),
            24 => (u64::from(self.take(1)?[0]), 24),
            25 => (self.uint(2)?, 0x100),
            26 => (self.uint(4)?, 0x1_0000),
            27 => (self.uint(8)?, 0x1_0000_0000),
            _ => {
                self.pos = start;
                return Err(self.error(format!(
                    "indefinite-length or reserved CBOR item 0x{initial:02x}"
                )));
            }
        };
        if value < min {
            self.pos = start;
            return Err(self.error("integer not in its shortest form".into()));
        }
        Ok((major, value))
    }

    fn uint(&mut self, len: u64) -> Result<u64, CarError> {
        Ok(self
            .take(len)?
            .iter()
            .fold(0u64, |acc, &b| (acc << 8) | u64::from(b)))
    }

    /// A head of major type `major`; its argument.
    fn expect(&mut self, major: u8, what: &str) -> Result<u64, CarError> {
        let start = self.pos;
        let (got, value) = self.head()?;
        if got != major {
            self.pos = start;
            return Err(self.error(format!("expected {what}, found CBOR major type {got}")));
        }
        Ok(value)
    }

    /// A CID: tag 42 over a byte string `00 ‖ cid`.
    fn cid(&mut self) -> Result<Cid, CarError> {
        let start = self.pos;
        let tag = self.expect(6, "a CID (tag 42)")?;
        if tag != CID_TAG {
            self.pos = start;
            return Err(self.error(format!("expected a CID (tag 42), found tag {tag}")));
        }
        let len = self.expect(2, "CID bytes")?;
        let body = self.pos;
        let bytes = self.take(len)?;
        let Some((&0, cid_bytes)) = bytes.split_first() else {
            self.pos = body;
            return Err(self.error("CID bytes do not start with the 00 multibase prefix".into()));
        };
        match parse_cid(cid_bytes) {
            Ok((cid, used)) if used == cid_bytes.len() => Ok(cid),
            Ok(_) => {
                self.pos = body;
                Err(self.error("trailing bytes after a root CID".into()))
            }
            Err(reason) => {
                self.pos = body;
                Err(self.error(format!("bad root CID: {reason}")))
            }
        }
    }
}

#[cfg(test)]
mod tests;
