//! Cairn's apt adapter: one Debian (or Ubuntu-style) archive per instance, served at
//! `/apt/NAME/` (docs/protocols.md), with the archive's chain of trust enforced by the mirror:
//!
//! - `dists/SUITE/InRelease` (and `Release` with `Release.gpg`) is a metadata document. Before it
//!   is stored its signature is checked against the archive's keyring and its dates as apt checks
//!   them; what it lists (every index file with its SHA256) becomes the digests the indexes are
//!   verified against. It is served byte for byte.
//! - Index files (`Packages.xz`, `Translation-en`, `Contents-*`, DEP-11, …) are artifacts. By
//!   path they are mutable names, resolved through the suite's current `InRelease`
//!   ([`Listing::Current`]); `by-hash/SHA256/…` names are immutable.
//! - `Packages` and `Sources` are listings (their routes say so, [`ArtifactRoute::listing`], and
//!   [`Ecosystem::listing`] reads them): once verified, the pool
//!   files they name, with SHA256 and size, are indexed, and `pool/…` requests are verified
//!   against those digests.
//!
//! Paths arrive percent-encoded the way apt writes them (`%2b` for `+`, `%7e` for `~`) or raw;
//! keys are the decoded paths.

pub mod indexes;
pub mod lockfile;
pub mod packages;
pub mod release;
pub mod signature;
pub mod sources;

use std::time::SystemTime;

use bytes::Bytes;
use cairn_ecosystem::digest::{Algorithm, Digest};
use cairn_ecosystem::{
    AdapterError, ArtifactReader, ArtifactRef, ArtifactRoute, BadRequest, DocumentFacts, Ecosystem,
    Listing, MetadataDoc, MetadataRoute, PackageScope, Rendered, Request, Route,
};
use percent_encoding::{AsciiSet, CONTROLS, percent_decode_str, utf8_percent_encode};
use url::Url;

pub use signature::Keyring;

const RAW_VARIANT: &str = "raw";
/// Longest accepted path below the archive root.
const MAX_PATH: usize = 1024;
/// What is percent-encoded in a path sent upstream.
const PATH_ENCODE: &AsciiSet = &CONTROLS
    .add(b' ')
    .add(b'"')
    .add(b'#')
    .add(b'%')
    .add(b'<')
    .add(b'>')
    .add(b'?')
    .add(b'`')
    .add(b'{')
    .add(b'}');

/// One apt archive.
#[derive(Debug)]
pub struct Archive {
    /// `apt/NAME`: the index namespace (and, as the bin registers it, the mount).
    name: String,
    keyring: Keyring,
}

impl Archive {
    /// The archive `name` (as in `/apt/NAME/`), whose Release files `keyring` must sign.
    pub fn new(name: &str, keyring: Keyring) -> Result<Archive, String> {
        check_archive_name(name)?;
        Ok(Archive {
            name: format!("apt/{name}"),
            keyring,
        })
    }

    pub fn keyring(&self) -> &Keyring {
        &self.keyring
    }
}

/// Archive names are path segments: lower-case letters, digits, `.`, `_` and `-`.
pub fn check_archive_name(name: &str) -> Result<(), String> {
    let ok = !name.is_empty()
        && name.len() <= 64
        && name != "."
        && name != ".."
        && name
            .bytes()
            .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b"._-".contains(&b));
    if ok {
        Ok(())
    } else {
        Err(format!(
            "apt archive name {name:?} must be 1-64 of a-z, 0-9, '.', '_', '-'"
        ))
    }
}

/// The decoded path, or why it is refused (`..`, NUL, control characters, over-long).
fn clean_path(raw: &str) -> Result<String, BadRequest> {
    let bad = |why: &str| BadRequest(format!("apt path /{raw}: {why}"));
    if raw.len() > 3 * MAX_PATH {
        return Err(bad("too long"));
    }
    let path = percent_decode_str(raw)
        .decode_utf8()
        .map_err(|_| bad("not UTF-8"))?
        .into_owned();
    if path.len() > MAX_PATH {
        return Err(bad("too long"));
    }
    if path.chars().any(char::is_control) {
        return Err(bad("control character"));
    }
    if path.starts_with('/') || path.contains('\\') {
        return Err(bad("not a relative path"));
    }
    if path
        .split('/')
        .any(|s| s.is_empty() || s == ".." || s == ".")
    {
        return Err(bad("empty, '.' or '..' segment"));
    }
    Ok(path)
}

fn document(key: String, context: Option<MetadataRoute>) -> MetadataRoute {
    MetadataRoute {
        upstream_path: utf8_percent_encode(&key, PATH_ENCODE).to_string(),
        key,
        variant: RAW_VARIANT,
        upstream_accept: None,
        context: context.map(Box::new),
    }
}

fn in_release(suite: &str) -> MetadataRoute {
    document(format!("dists/{suite}/InRelease"), None)
}

/// `dir/by-hash/SHA256/hex` beside `path` (`main/binary-amd64/Packages.xz`).
fn by_hash(path: &str, sha256: &[u8; 32]) -> String {
    let hex = hex::encode(sha256);
    match path.rsplit_once('/') {
        Some((dir, _)) => format!("{dir}/by-hash/SHA256/{hex}"),
        None => format!("by-hash/SHA256/{hex}"),
    }
}

impl Archive {
    /// The index files a verified Release text lists, by path and by hash.
    fn listed(&self, doc: &MetadataDoc<'_>, text: &str) -> Result<Vec<ArtifactRef>, AdapterError> {
        let fail = |e: String| AdapterError(format!("{}: {e}", doc.key));
        let release = release::Release::parse(text).map_err(fail)?;
        release.check_dates(SystemTime::now()).map_err(fail)?;
        let suite_dir = doc
            .key
            .rsplit_once('/')
            .map(|(dir, _)| dir)
            .unwrap_or_default();
        let mut refs = Vec::with_capacity(release.files.len() * 2);
        for file in &release.files {
            let digest = Digest::new(Algorithm::Sha256, file.sha256.to_vec())
                .map_err(|e| fail(e.to_string()))?;
            for path in [file.path.clone(), by_hash(&file.path, &file.sha256)] {
                let Ok(key) = clean_path(&format!("{suite_dir}/{path}")) else {
                    continue; // a hostile name in the list is never routed to
                };
                let url = doc
                    .url
                    .join(&utf8_percent_encode(&path, PATH_ENCODE).to_string())
                    .map_err(|e| fail(format!("{path}: {e}")))?;
                refs.push(ArtifactRef {
                    version: None,
                    published: None,
                    yanked: false,
                    package: None,
                    key,
                    url,
                    digest: digest.clone(),
                    size: Some(file.size),
                });
            }
        }
        Ok(refs)
    }
}

impl Archive {
    /// The index files a Release document lists, once its signature and dates are checked.
    fn artifacts(&self, doc: &MetadataDoc<'_>) -> Result<Vec<ArtifactRef>, AdapterError> {
        let file = doc.key.rsplit('/').next().unwrap_or_default();
        let refused = |e: signature::SignatureError| AdapterError(e.0);
        match file {
            "InRelease" => {
                let (text, signer) = self
                    .keyring
                    .verify_cleartext(doc.key, doc.body)
                    .map_err(refused)?;
                tracing_signer(doc.key, &signer);
                self.listed(doc, &text)
            }
            "Release" => {
                let signature = doc.context.ok_or_else(|| {
                    AdapterError(format!("{}: no Release.gpg to check it with", doc.key))
                })?;
                let signer = self
                    .keyring
                    .verify_detached(doc.key, doc.body, signature.body)
                    .map_err(refused)?;
                tracing_signer(doc.key, &signer);
                let text = std::str::from_utf8(doc.body)
                    .map_err(|_| AdapterError(format!("{} is not UTF-8 text", doc.key)))?;
                self.listed(doc, text)
            }
            "Release.gpg" => {
                signature::is_signature(doc.body)
                    .map_err(|e| AdapterError(format!("{}: {e}", doc.key)))?;
                Ok(Vec::new())
            }
            _ => Err(AdapterError(format!("{}: not an apt document", doc.key))),
        }
    }
}

impl Ecosystem for Archive {
    fn name(&self) -> &str {
        &self.name
    }

    fn route(&self, request: &Request<'_>) -> Result<Option<Route>, BadRequest> {
        if request.path.is_empty() {
            return Ok(None);
        }
        let path = clean_path(request.path)?;
        let Some(rest) = path.strip_prefix("dists/") else {
            // The pool, or wherever the indexes put files: verified against what they list.
            return Ok(Some(Route::Artifact(ArtifactRoute {
                key: path,
                listed_by: Listing::Listings,
                derive: None,
                listing: false,
            })));
        };
        let Some((suite, file)) = rest.split_once('/') else {
            return Ok(None);
        };
        let (suite, file) = (suite.to_owned(), file.to_owned());
        let suite = suite.as_str();
        let route = match file.as_str() {
            "InRelease" => Route::Metadata(in_release(suite)),
            "Release" => Route::Metadata(document(
                path.clone(),
                Some(document(format!("{path}.gpg"), None)),
            )),
            "Release.gpg" => Route::Metadata(document(path, None)),
            _ if file.contains("/by-hash/") || file.starts_with("by-hash/") => {
                if !file.contains("by-hash/SHA256/") {
                    return Ok(None); // only the strong hash is listed; apt falls back to it
                }
                Route::Artifact(ArtifactRoute {
                    listing: is_listing_key(&path),
                    key: path,
                    listed_by: Listing::Document(in_release(suite)),
                    derive: None,
                })
            }
            _ => Route::Artifact(ArtifactRoute {
                listing: is_listing_key(&path),
                key: path,
                listed_by: Listing::Current(in_release(suite)),
                derive: None,
            }),
        };
        Ok(Some(route))
    }

    fn package_scope(&self, name: &str, version: Option<&str>) -> Result<PackageScope, BadRequest> {
        source_package_scope(name, version)
    }

    fn read(&self, doc: &MetadataDoc<'_>) -> Result<DocumentFacts, AdapterError> {
        self.artifacts(doc).map(DocumentFacts::artifacts)
    }

    /// Everything: apt reads a 5xx as transient and retries it, and `apt-get update` against an
    /// offline node answering 504 did not finish in ten minutes; a 404 is final, and for an
    /// index apt moves on at once to its other names and compressions (docs/protocols.md).
    fn offline_miss_is_not_found(&self, _key: &str) -> bool {
        true
    }

    fn listing(
        &self,
        key: &str,
        url: &Url,
        file: &mut dyn ArtifactReader,
        each: &mut dyn FnMut(ArtifactRef) -> Result<(), AdapterError>,
    ) -> Result<(), AdapterError> {
        let root = archive_root(url)
            .ok_or_else(|| AdapterError(format!("{key}: {url} is not below a dists/ directory")))?;
        packages::read_each(file, packages::Limits::default(), |f| {
            let Ok(artifact_key) = clean_path(&f.filename) else {
                return Ok(()); // a hostile name in the list is never routed to
            };
            let digest =
                Digest::new(Algorithm::Sha256, f.sha256.to_vec()).map_err(|e| e.to_string())?;
            let url = root
                .join(&utf8_percent_encode(&f.filename, PATH_ENCODE).to_string())
                .map_err(|e| format!("{}: {e}", f.filename))?;
            // The stanza's package and version, what policy rules name.
            each(ArtifactRef {
                version: Some(f.version.clone()),
                published: None,
                yanked: false,
                package: Some(f.package.clone()),
                key: artifact_key,
                url,
                digest,
                size: Some(f.size),
            })
            .map_err(|e| e.0)
        })
        .map_err(|e| AdapterError(format!("{key}: {e}")))
    }

    fn render(
        &self,
        doc: &MetadataDoc<'_>,
        _variant: &'static str,
        _base: &Url,
    ) -> Result<Rendered, AdapterError> {
        // Signed bytes go out exactly as they came.
        Ok(Rendered {
            body: Bytes::copy_from_slice(doc.body),
            content_type: "text/plain; charset=utf-8",
        })
    }
}

/// True for the paths of `Packages` and `Sources` indexes below `dists/` (by path or by hash):
/// what [`Archive`] routes as listings ([`ArtifactRoute::listing`]).
/// What of an archive belongs to the source package `source`: its pool files, in every
/// component (`pool/COMPONENT/PREFIX/SOURCE/FILE`, where `PREFIX` is the name's first letter, or
/// its first four for `lib…` names), the binary packages built from it included. The
/// `Packages` and `Sources` indexes and the Release files stay (they are the archive's, and the
/// next request for a pool file is verified against them again). Versions are not selected:
/// several Debian revisions share one upstream tarball.
pub fn source_package_scope(
    source: &str,
    version: Option<&str>,
) -> Result<PackageScope, BadRequest> {
    let valid = source.len() >= 2
        && source.len() <= 128
        && source.starts_with(|c: char| c.is_ascii_lowercase() || c.is_ascii_digit())
        && source
            .chars()
            .all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || matches!(c, '+' | '-' | '.'));
    if !valid {
        return Err(BadRequest(format!(
            "{source:?} is not a Debian source package name (lower-case letters, digits, `+`, `-` and `.`)"
        )));
    }
    if let Some(version) = version {
        return Err(BadRequest(format!(
            "apt packages are purged whole: drop `@{version}` from {source}"
        )));
    }
    let source = source.to_owned();
    // The name is ASCII (checked above): byte offsets are character boundaries.
    let prefix = if source.starts_with("lib") && source.len() > 3 {
        source[..4].to_owned()
    } else {
        source[..1].to_owned()
    };
    Ok(PackageScope {
        documents: Vec::new(),
        listed_by: Vec::new(),
        artifact_prefixes: vec!["pool/".to_owned()],
        owns: Box::new(move |key| {
            let mut dirs = key.rsplit('/').skip(1);
            dirs.next() == Some(source.as_str())
                && dirs.next() == Some(prefix.as_str())
                && key.starts_with("pool/")
                && dirs.count() >= 2
        }),
    })
}

pub fn is_listing_key(key: &str) -> bool {
    if !key.starts_with("dists/") || key.contains(".diff/") {
        return false;
    }
    let file = key.rsplit('/').next().unwrap_or_default();
    file.starts_with("Packages")
        || file.starts_with("Sources")
        || (key.contains("/by-hash/SHA256/")
            && (key.contains("/binary-") || key.contains("/source/")))
}

fn tracing_signer(key: &str, signer: &signature::Signer) {
    tracing::debug!(document = key, key = %signer.fingerprint, "signature verified");
}

/// The archive root of a URL below its `dists/` directory.
fn archive_root(url: &Url) -> Option<Url> {
    let path = url.path();
    let at = path.rfind("/dists/")?;
    let mut root = url.clone();
    root.set_path(&path[..=at]);
    root.set_query(None);
    Some(root)
}

#[cfg(test)]
mod tests;
