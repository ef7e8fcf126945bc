//! Core metadata (PEP 658) from a wheel: the `{name}-{version}.dist-info/METADATA` member, read
//! through the zip central directory with seeks, so a large wheel is never read whole.
//!
//! Supports stored and deflated members and archives with a trailing comment; not ZIP64 (wheels
//! over 4 GiB), which is reported as an error.

use std::io::{Read, SeekFrom};

use cairn_ecosystem::{AdapterError, ArtifactReader};

const EOCD: u32 = 0x0605_4b50;
const CENTRAL: u32 = 0x0201_4b50;
const LOCAL: u32 = 0x0403_4b50;
/// METADATA larger than this is refused.
const MAX_METADATA: u64 = 16 << 20;

fn fail(reason: impl Into<String>) -> AdapterError {
    AdapterError(reason.into())
}

fn u16_at(b: &[u8], at: usize) -> u16 {
    u16::from_le_bytes([b[at], b[at + 1]])
}

fn u32_at(b: &[u8], at: usize) -> u32 {
    u32::from_le_bytes([b[at], b[at + 1], b[at + 2], b[at + 3]])
}

fn io(e: std::io::Error) -> AdapterError {
    fail(format!("reading the wheel: {e}"))
}

/// The wheel's `*.dist-info/METADATA`, decompressed.
pub fn metadata(wheel: &mut dyn ArtifactReader) -> Result<Vec<u8>, AdapterError> {
    let size = wheel.seek(SeekFrom::End(0)).map_err(io)?;
    // The end-of-central-directory record is 22 bytes plus a comment of up to 64 KiB.
    let tail_len = size.min(22 + 65_535);
    wheel.seek(SeekFrom::Start(size - tail_len)).map_err(io)?;
    let mut tail = vec![0; tail_len as usize];
    wheel.read_exact(&mut tail).map_err(io)?;
    let eocd = (0..tail.len().saturating_sub(21))
        .rev()
        .find(|&i| u32_at(&tail, i) == EOCD)
        .ok_or_else(|| fail("not a zip archive (no end of central directory)"))?;
    let entries = u16_at(&tail, eocd + 10);
    let dir_size = u32_at(&tail, eocd + 12) as u64;
    let dir_offset = u32_at(&tail, eocd + 16) as u64;
    if dir_offset == 0xFFFF_FFFF || entries == 0xFFFF {
        return Err(fail("ZIP64 wheels are not supported"));
    }
    if dir_offset + dir_size > size {
        return Err(fail("central directory lies outside the archive"));
    }
    wheel.seek(SeekFrom::Start(dir_offset)).map_err(io)?;
    let mut dir = vec![0; dir_size as usize];
    wheel.read_exact(&mut dir).map_err(io)?;
    let mut at = 0;
    for _ in 0..entries {
        if at + 46 > dir.len() || u32_at(&dir, at) != CENTRAL {
            return Err(fail("corrupt central directory"));
        }
        let method = u16_at(&dir, at + 10);
        let compressed = u32_at(&dir, at + 20) as u64;
        let uncompressed = u32_at(&dir, at + 24) as u64;
        let name_len = u16_at(&dir, at + 28) as usize;
        let extra_len = u16_at(&dir, at + 30) as usize;
        let comment_len = u16_at(&dir, at + 32) as usize;
        let local = u32_at(&dir, at + 42) as u64;
        let name = dir
            .get(at + 46..at + 46 + name_len)
            .ok_or_else(|| fail("corrupt central directory"))?;
        at += 46 + name_len + extra_len + comment_len;
        let is_metadata = name.ends_with(b".dist-info/METADATA")
            && name.iter().filter(|&&b| b == b'/').count() == 1;
        if !is_metadata {
            continue;
        }
        if uncompressed > MAX_METADATA {
            return Err(fail(format!(
                "METADATA of {uncompressed} bytes is too large"
            )));
        }
        wheel.seek(SeekFrom::Start(local)).map_err(io)?;
        let mut header = [0u8; 30];
        wheel.read_exact(&mut header).map_err(io)?;
        if u32_at(&header, 0) != LOCAL {
            return Err(fail("corrupt local header of METADATA"));
        }
        let skip = u16_at(&header, 26) as i64 + u16_at(&header, 28) as i64;
        wheel.seek(SeekFrom::Current(skip)).map_err(io)?;
        let mut data = Vec::with_capacity(uncompressed as usize);
        let raw = wheel.take(compressed);
        match method {
            0 => raw.take(MAX_METADATA).read_to_end(&mut data).map_err(io)?,
            8 => flate2::read::DeflateDecoder::new(raw)
                .take(MAX_METADATA)
                .read_to_end(&mut data)
                .map_err(io)?,
            other => {
                return Err(fail(format!(
                    "METADATA uses unsupported compression {other}"
                )));
            }
        };
        if data.len() as u64 != uncompressed {
            return Err(fail("METADATA is truncated"));
        }
        return Ok(data);
    }
    Err(fail("the wheel has no .dist-info/METADATA"))
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::io::{Cursor, Write as _};

    /// A zip archive of `(name, data, deflate)` members, written by hand.
    fn zip(members: &[(&str, &[u8], bool)], comment: &[u8]) -> Vec<u8> {
        let mut out = Vec::new();
        let mut central = Vec::new();
        for (name, data, deflate) in members {
            let stored = if *deflate {
                let mut e =
                    flate2::write::DeflateEncoder::new(Vec::new(), flate2::Compression::default());
                e.write_all(data).expect("deflate");
                e.finish().expect("deflate")
            } else {
                data.to_vec()
            };
            let method: u16 = if *deflate { 8 } else { 0 };
            let offset = out.len() as u32;
            out.extend_from_slice(&LOCAL.to_le_bytes());
            out.extend_from_slice(&[20, 0, 0, 0]);
            out.extend_from_slice(&method.to_le_bytes());
            out.extend_from_slice(&[0; 8]); // time, date, crc (not checked)
            out.extend_from_slice(&(stored.len() as u32).to_le_bytes());
            out.extend_from_slice(&(data.len() as u32).to_le_bytes());
            out.extend_from_slice(&(name.len() as u16).to_le_bytes());
            out.extend_from_slice(&0u16.to_le_bytes());
            out.extend_from_slice(name.as_bytes());
            out.extend_from_slice(&stored);
            central.extend_from_slice(&CENTRAL.to_le_bytes());
            central.extend_from_slice(&[20, 0, 20, 0, 0, 0]);
            central.extend_from_slice(&method.to_le_bytes());
            central.extend_from_slice(&[0; 8]);
            central.extend_from_slice(&(stored.len() as u32).to_le_bytes());
            central.extend_from_slice(&(data.len() as u32).to_le_bytes());
            central.extend_from_slice(&(name.len() as u16).to_le_bytes());
            central.extend_from_slice(&[0; 12]); // extra, comment, disk, attributes
            central.extend_from_slice(&offset.to_le_bytes());
            central.extend_from_slice(name.as_bytes());
        }
        let dir_offset = out.len() as u32;
        out.extend_from_slice(&central);
        out.extend_from_slice(&EOCD.to_le_bytes());
        out.extend_from_slice(&[0; 4]);
        out.extend_from_slice(&(members.len() as u16).to_le_bytes());
        out.extend_from_slice(&(members.len() as u16).to_le_bytes());
        out.extend_from_slice(&(central.len() as u32).to_le_bytes());
        out.extend_from_slice(&dir_offset.to_le_bytes());
        out.extend_from_slice(&(comment.len() as u16).to_le_bytes());
        out.extend_from_slice(comment);
        out
    }

    const META: &[u8] = b"Metadata-Version: 2.1\nName: demo\nVersion: 1.0\n";

    #[test]
    fn stored_and_deflated_metadata() {
        for deflate in [false, true] {
            let wheel = zip(
                &[
                    ("demo/__init__.py", b"x = 1\n", true),
                    ("demo/sub.dist-info/METADATA", b"not this one", false),
                    ("demo-1.0.dist-info/METADATA", META, deflate),
                ],
                b"a trailing archive comment",
            );
            assert_eq!(
                metadata(&mut Cursor::new(wheel)).expect("metadata"),
                META,
                "deflate={deflate}"
            );
        }
    }

    #[test]
    fn archives_without_metadata_or_not_zip_are_errors() {
        let wheel = zip(&[("demo/__init__.py", b"x", false)], b"");
        assert!(
            metadata(&mut Cursor::new(wheel))
                .expect_err("none")
                .0
                .contains("no .dist-info/METADATA")
        );
        assert!(metadata(&mut Cursor::new(b"not a zip at all".to_vec())).is_err());
        assert!(metadata(&mut Cursor::new(Vec::new())).is_err());
    }
}
