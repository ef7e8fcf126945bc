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

/// Calls `each` with the fields of every stanza (paragraph) of a deb822 file; continuation
/// lines are joined to their field with `\n`. Errors name the line.
fn stanzas(
    input: impl BufRead,
    mut each: impl FnMut(&[(String, String)], usize) -> Result<(), String>,
) -> Result<(), String> {
    let mut fields: Vec<(String, String)> = Vec::new();
    let mut started = 0;
    for (n, line) in input.split(b'\n').enumerate() {
        let line = line.map_err(|e| format!("line {}: {e}", n + 1))?;
        let line = String::from_utf8_lossy(&line);
        let line = line.trim_end_matches('\r');
        if line.trim().is_empty() {
            if !fields.is_empty() {
                each(&fields, started)?;
                fields.clear();
            }
            continue;
        }
        if fields.is_empty() {
            started = n + 1;
        }
        if line.starts_with([' ', '\t']) {
            match fields.last_mut() {
                Some((_, value)) => {
                    value.push('\n');
                    value.push_str(line.trim());
                }
                None => return Err(format!("line {}: continuation without a field", n + 1)),
            }
        } else {
            let (name, value) = line
                .split_once(':')
                .ok_or_else(|| format!("line {}: not a `Field: value` line", n + 1))?;
            fields.push((name.to_owned(), value.trim().to_owned()));
        }
    }
    if !fields.is_empty() {
        each(&fields, started)?;
    }
    Ok(())
}

fn field<'a>(fields: &'a [(String, String)], name: &str) -> Option<&'a str> {
    fields
        .iter()
        .find(|(n, _)| n.eq_ignore_ascii_case(name))
        .map(|(_, v)| v.as_str())
}

fn sha256(hex_digest: &str) -> Option<[u8; 32]> {
    let mut out = [0u8; 32];
    hex::decode_to_slice(hex_digest.trim(), &mut out).ok()?;
    Some(out)
}

/// The files of a `Packages` or `Sources` index (told apart by their fields). Stanzas without
/// a SHA256 are skipped: apt would refuse those files too.
pub fn read(input: impl Read) -> Result<Vec<PoolFile>, String> {
    let input = decompress(BufReader::with_capacity(256 << 10, input))
        .map_err(|e| format!("cannot read index: {e}"))?;
    let mut out = Vec::new();
    stanzas(input, |fields, line| {
        let package = field(fields, "Package").unwrap_or_default().to_owned();
        let version = field(fields, "Version").unwrap_or_default().to_owned();
        if let Some(filename) = field(fields, "Filename") {
            let (Some(digest), Some(size)) = (
                field(fields, "SHA256").and_then(sha256),
                field(fields, "Size").and_then(|s| s.parse().ok()),
            ) else {
                return Ok(());
            };
            out.push(PoolFile {
                package,
                version,
                filename: filename.to_owned(),
                size,
                sha256: digest,
            });
        } else if let (Some(directory), Some(sums)) = (
            field(fields, "Directory"),
            field(fields, "Checksums-Sha256"),
        ) {
            for entry in sums.lines().filter(|l| !l.trim().is_empty()) {
                let mut parts = entry.split_whitespace();
                let (Some(digest), Some(size), Some(name)) = (
                    parts.next().and_then(sha256),
                    parts.next().and_then(|s| s.parse().ok()),
                    parts.next(),
                ) else {
                    return Err(format!(
                        "stanza at line {line}: bad Checksums-Sha256 entry {entry:?}"
                    ));
                };
                out.push(PoolFile {
                    package: package.clone(),
                    version: version.clone(),
                    filename: format!("{}/{name}", directory.trim_end_matches('/')),
                    size,
                    sha256: digest,
                });
            }
        }
        Ok(())
    })?;
    Ok(out)
}
