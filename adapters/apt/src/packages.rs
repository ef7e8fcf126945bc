//! `Packages` and `Sources` indexes: the files of the archive they name, with the SHA256 and
//! size apt will check. Read streaming (a `Packages.xz` of a full suite is ~50 MB of text), from
//! plain, gzip or xz bytes told apart by their magic numbers, since a by-hash name says nothing
//! of the compression.

use std::io::{BufRead, BufReader, Read};

/// A file an index names, relative to the archive root.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct PoolFile {
    /// Package name (or source package name for `Sources`).
    pub package: String,
    pub version: String,
    /// `pool/main/h/hello/hello_2.10-3_amd64.deb`.
    pub filename: String,
    pub size: u64,
    pub sha256: [u8; 32],
}

/// Undo the compression `bytes` begin with (gzip, xz, or none).
pub fn decompress<'a>(mut input: impl BufRead + 'a) -> std::io::Result<Box<dyn BufRead + 'a>> {
    let head = input.fill_buf()?;
    if head.starts_with(&[0x1f, 0x8b]) {
        Ok(Box::new(BufReader::new(
            flate2::bufread::MultiGzDecoder::new(input),
        )))
    } else if head.starts_with(&[0xfd, b'7', b'z', b'X', b'Z', 0x00]) {
        Ok(Box::new(BufReader::with_capacity(
            256 << 10,
            lzma_rust2::XzReader::new(input, true),
        )))
    } else {
        Ok(Box::new(input))
    }
}

/// The fields of one stanza that name files; everything else is skipped unread.
#[derive(Default)]
struct Stanza {
    package: String,
    version: String,
    filename: Option<String>,
    size: Option<u64>,
    sha256: Option<[u8; 32]>,
    directory: Option<String>,
    /// `Checksums-Sha256` lines of a `Sources` stanza.
    sums: Vec<String>,
    /// The line the stanza starts at, for errors.
    line: usize,
}

impl Stanza {
    /// The files this stanza names.
    fn finish(self) -> Result<Vec<PoolFile>, String> {
        let mut out = Vec::new();
        if let Some(filename) = self.filename {
            if let (Some(sha256), Some(size)) = (self.sha256, self.size) {
                out.push(PoolFile {
                    package: self.package,
                    version: self.version,
                    filename,
                    size,
                    sha256,
                });
            }
            return Ok(out);
        }
        let Some(directory) = self.directory else {
            return Ok(out);
        };
        for entry in &self.sums {
            let mut parts = entry.split_whitespace();
            let (Some(digest), Some(size), Some(name)) = (
                parts.next().and_then(sha256),
                parts.next().and_then(|s| s.parse().ok()),
                parts.next(),
            ) else {
                return Err(format!(
                    "stanza at line {}: bad Checksums-Sha256 entry {entry:?}",
                    self.line
                ));
            };
            out.push(PoolFile {
                package: self.package.clone(),
                version: self.version.clone(),
                filename: format!("{}/{name}", directory.trim_end_matches('/')),
                size,
                sha256: digest,
            });
        }
        Ok(out)
    }
}

fn sha256(hex_digest: &str) -> Option<[u8; 32]> {
    let mut out = [0u8; 32];
    hex::decode_to_slice(hex_digest.trim(), &mut out).ok()?;
    Some(out)
}

/// Bounds on reading an index: what comes out of a few kilobytes of xz can be gigabytes.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Limits {
    /// Longest line (a Debian `Packages` line is well under 64 KiB; the longest are
    /// `Provides` lists of Rust library packages).
    pub line: usize,
    /// Most bytes after decompression (a full suite's `Packages` is about 100 MB).
    pub decompressed: u64,
    /// Most files named (a full suite names about 65,000).
    pub entries: usize,
}

impl Default for Limits {
    /// Ten times the biggest real indexes, or more.
    fn default() -> Self {
        Limits {
            line: 1 << 20,
            decompressed: 2 << 30,
            entries: 2_000_000,
        }
    }
}

/// The files of a `Packages` or `Sources` index (told apart by their fields), read with the
/// default [`Limits`].
pub fn read(input: impl Read) -> Result<Vec<PoolFile>, String> {
    let mut out = Vec::new();
    read_each(input, Limits::default(), |file| {
        out.push(file);
        Ok(())
    })?;
    Ok(out)
}

/// Read one line (with its `\n`) into `raw`, refusing lines over `max` bytes: a line is never
/// held whole beyond the limit. Returns the bytes consumed (0 at the end).
fn read_line(input: &mut dyn BufRead, raw: &mut Vec<u8>, max: usize) -> std::io::Result<usize> {
    let mut consumed = 0;
    loop {
        let available = input.fill_buf()?;
        if available.is_empty() {
            return Ok(consumed);
        }
        let (take, done) = match available.iter().position(|&b| b == b'\n') {
            Some(at) => (at + 1, true),
            None => (available.len(), false),
        };
        if raw.len() + take > max + 1 {
            return Err(std::io::Error::new(
                std::io::ErrorKind::InvalidData,
                format!(
                    "longer than {}, the line limit of an index",
                    cairn_ecosystem::units::size(max as u64)
                ),
            ));
        }
        raw.extend_from_slice(&available[..take]);
        input.consume(take);
        consumed += take;
        if done {
            return Ok(consumed);
        }
    }
}

/// The files of a `Packages` or `Sources` index, handed to `each` as they are read (a full
/// suite's `Packages` is ~60,000 stanzas: nothing but the current stanza is held). Stanzas
/// without a SHA256 are skipped: apt would refuse those files too. Reading stops with an error
/// at the first bound of `limits` crossed, or the first error of `each`.
pub fn read_each(
    input: impl Read,
    limits: Limits,
    mut each: impl FnMut(PoolFile) -> Result<(), String>,
) -> Result<(), String> {
    let mut input = decompress(BufReader::with_capacity(256 << 10, input))
        .map_err(|e| format!("cannot read index: {e}"))?;
    let mut entries = 0usize;
    let mut emit = |files: Vec<PoolFile>| {
        for file in files {
            entries += 1;
            if entries > limits.entries {
                return Err(format!(
                    "names more than {} files, the limit of an index",
                    limits.entries
                ));
            }
            each(file)?;
        }
        Ok(())
    };
    let mut stanza: Option<Stanza> = None;
    let mut in_sums = false;
    let mut raw = Vec::with_capacity(256);
    let mut n = 0;
    let mut total = 0u64;
    loop {
        raw.clear();
        let got = read_line(&mut input, &mut raw, limits.line)
            .map_err(|e| format!("line {}: {e}", n + 1))?;
        if got == 0 {
            break;
        }
        n += 1;
        total += got as u64;
        if total > limits.decompressed {
            return Err(format!(
                "line {n}: the index decompresses to more than {}, the limit of an index",
                cairn_ecosystem::units::size(limits.decompressed)
            ));
        }
        let line = String::from_utf8_lossy(&raw);
        let line = line.trim_end_matches(['\n', '\r']);
        if line.trim().is_empty() {
            if let Some(done) = stanza.take() {
                emit(done.finish()?)?;
            }
            in_sums = false;
            continue;
        }
        let current = stanza.get_or_insert_with(|| Stanza {
            line: n,
            ..Stanza::default()
        });
        if line.starts_with([' ', '\t']) {
            if in_sums {
                if current.sums.len() >= MAX_STANZA_FILES {
                    return Err(format!(
                        "stanza at line {}: more than {MAX_STANZA_FILES} Checksums-Sha256 entries",
                        current.line
                    ));
                }
                current.sums.push(line.trim().to_owned());
            }
            continue;
        }
        let (name, value) = line
            .split_once(':')
            .ok_or_else(|| format!("line {n}: not a `Field: value` line"))?;
        let value = value.trim();
        in_sums = name.eq_ignore_ascii_case("Checksums-Sha256");
        if name.eq_ignore_ascii_case("Package") {
            current.package = value.to_owned();
        } else if name.eq_ignore_ascii_case("Version") {
            current.version = value.to_owned();
        } else if name.eq_ignore_ascii_case("Filename") {
            current.filename = Some(value.to_owned());
        } else if name.eq_ignore_ascii_case("Size") {
            current.size = value.parse().ok();
        } else if name.eq_ignore_ascii_case("SHA256") {
            current.sha256 = sha256(value);
        } else if name.eq_ignore_ascii_case("Directory") {
            current.directory = Some(value.to_owned());
        }
    }
    if let Some(done) = stanza.take() {
        emit(done.finish()?)?;
    }
    Ok(())
}

/// Most files one `Sources` stanza may name (a source package has a handful).
const MAX_STANZA_FILES: usize = 10_000;
