//! Packuments: the digests they publish, and their full and abbreviated renderings for clients.
//!
//! Reading digests uses serde with borrowed, mostly-ignored fields (cheap even on 20 MB
//! documents). Rendering walks the document as spans (`cairn_ecosystem::json`), copies everything it
//! keeps verbatim and rewrites only `versions[*].dist.tarball`, so both forms are produced in one
//! pass with memory of about input plus output. The abbreviated ("corgi") form is made here
//! because upstreams may ignore the `Accept` header that asks for it.

use std::collections::BTreeMap;

use base64::Engine as _;
use cairn_ecosystem::digest::{Algorithm, Digest};
use cairn_ecosystem::json::{self, Member, ObjectWriter};
use cairn_ecosystem::{AdapterError, ArtifactRef};
use serde::Deserialize;
use url::Url;

use crate::name::{PackageName, check_file};

/// Keys an abbreviated version keeps besides `name`, `version` and `dist`.
const ABBREVIATED_VERSION_KEYS: &[&str] = &[
    "name",
    "version",
    "deprecated",
    "dependencies",
    "optionalDependencies",
    "devDependencies",
    "peerDependencies",
    "peerDependenciesMeta",
    "bundleDependencies",
    "bundledDependencies",
    "acceptDependencies",
    "bin",
    "directories",
    "engines",
    "os",
    "cpu",
    "libc",
    "funding",
    "_hasShrinkwrap",
    "hasInstallScript",
];

/// Script names that make npm record `hasInstallScript`.
const INSTALL_SCRIPTS: &[&str] = &["preinstall", "install", "postinstall"];

#[derive(Deserialize)]
struct Packument<'a> {
    #[serde(borrow)]
    name: Option<std::borrow::Cow<'a, str>>,
    #[serde(default, borrow)]
    versions: BTreeMap<std::borrow::Cow<'a, str>, Version<'a>>,
    /// Publication time of each version (and `created`, `modified`); an unpublished package's
    /// is an object instead of a string, hence values.
    #[serde(default)]
    time: BTreeMap<String, serde_json::Value>,
}

#[derive(Deserialize)]
struct Version<'a> {
    #[serde(borrow)]
    dist: Option<Dist<'a>>,
}

#[derive(Deserialize)]
struct Dist<'a> {
    #[serde(borrow)]
    tarball: Option<std::borrow::Cow<'a, str>>,
    #[serde(borrow)]
    integrity: Option<std::borrow::Cow<'a, str>>,
    #[serde(borrow)]
    shasum: Option<std::borrow::Cow<'a, str>>,
}

fn bad(reason: impl Into<String>) -> AdapterError {
    AdapterError(reason.into())
}

/// The strongest digest of a version: sha512 from `integrity`, else sha256 from it, else sha1
/// from `integrity` or the legacy `shasum`.
pub fn digest_of(integrity: Option<&str>, shasum: Option<&str>) -> Option<Digest> {
    let mut best: Option<Digest> = None;
    for entry in integrity.unwrap_or("").split_whitespace() {
        let Some((algo, b64)) = entry.split_once('-') else {
            continue;
        };
        let algorithm = match algo {
            "sha512" => Algorithm::Sha512,
            "sha256" => Algorithm::Sha256,
            "sha1" => Algorithm::Sha1,
            _ => continue,
        };
        // SRI allows `?options` after the digest.
        let b64 = b64.split('?').next().unwrap_or("");
        let Ok(bytes) = base64::engine::general_purpose::STANDARD.decode(b64) else {
            continue;
        };
        let Ok(digest) = Digest::new(algorithm, bytes) else {
            continue;
        };
        let rank = |d: &Digest| match d.algorithm() {
            Algorithm::Sha512 => 3,
            Algorithm::Sha256 => 2,
            Algorithm::Sha1 => 1,
        };
        if best.as_ref().is_none_or(|b| rank(&digest) > rank(b)) {
            best = Some(digest);
        }
    }
    best.or_else(|| {
        let bytes = hex::decode(shasum?).ok()?;
        Digest::new(Algorithm::Sha1, bytes).ok()
    })
}

/// The tarball's file name: the last segment of its URL, decoded and checked.
fn tarball_file(url: &Url) -> Result<String, AdapterError> {
    let last = url
        .path_segments()
        .and_then(|mut s| s.next_back())
        .unwrap_or("");
    let file = crate::name::decode(last).map_err(|e| bad(e.to_string()))?;
    check_file(&file).map_err(|e| bad(format!("tarball URL {url}: {e}")))?;
    Ok(file)
}

/// The artifacts of a packument for `name`, fetched from `doc_url`.
pub fn artifacts(
    name: &PackageName,
    doc_url: &Url,
    body: &[u8],
) -> Result<Vec<ArtifactRef>, AdapterError> {
    let packument: Packument<'_> = serde_json::from_slice(body)
        .map_err(|e| bad(format!("packument of {name} is not valid JSON: {e}")))?;
    if let Some(doc_name) = &packument.name
        && doc_name.as_ref() != name.to_string()
    {
        return Err(bad(format!(
            "asked for the packument of {name}, got one for {doc_name:?}"
        )));
    }
    let mut out = Vec::with_capacity(packument.versions.len());
    for (version, v) in &packument.versions {
        let Some(dist) = &v.dist else {
            return Err(bad(format!("{name}@{version} has no dist")));
        };
        let tarball = dist
            .tarball
            .as_deref()
            .ok_or_else(|| bad(format!("{name}@{version} has no dist.tarball")))?;
        let url = doc_url
            .join(tarball)
            .map_err(|e| bad(format!("{name}@{version}: tarball URL {tarball:?}: {e}")))?;
        let digest =
            digest_of(dist.integrity.as_deref(), dist.shasum.as_deref()).ok_or_else(|| {
                bad(format!(
                    "{name}@{version} has no usable integrity or shasum"
                ))
            })?;
        let file = tarball_file(&url)?;
        let published = packument
            .time
            .get(version.as_ref())
            .and_then(|t| t.as_str())
            .and_then(cairn_ecosystem::time::parse_rfc3339);
        out.push(ArtifactRef {
            version: Some(version.to_string()),
            published,
            yanked: false,
            package: None,
            key: artifact_key(name, &file),
            url,
            digest,
            size: None,
        });
    }
    Ok(out)
}

/// The packument without the versions whose tarballs `refused` names: their `versions` and
/// `time` entries go, a dist-tag naming one goes too, and `latest` moves to the highest version
/// left (a release before a pre-release). `None` when it names none of them. Everything kept is
/// kept as upstream sent it (signatures and attestations included).
pub fn without(
    name: &PackageName,
    doc_url: &Url,
    body: &[u8],
    refused: &dyn Fn(&str) -> bool,
) -> Result<Option<Vec<u8>>, AdapterError> {
    let mut doc: serde_json::Value = serde_json::from_slice(body)
        .map_err(|e| bad(format!("packument of {name} is not valid JSON: {e}")))?;
    let Some(top) = doc.as_object_mut() else {
        return Err(bad(format!("packument of {name} is not an object")));
    };
    let Some(versions) = top.get_mut("versions").and_then(|v| v.as_object_mut()) else {
        return Ok(None);
    };
    let mut removed = Vec::new();
    for (version, manifest) in versions.iter() {
        let Some(tarball) = manifest
            .get("dist")
            .and_then(|d| d.get("tarball"))
            .and_then(|t| t.as_str())
        else {
            continue;
        };
        let Ok(url) = doc_url.join(tarball) else {
            continue;
        };
        if tarball_file(&url).is_ok_and(|file| refused(&artifact_key(name, &file))) {
            removed.push(version.clone());
        }
    }
    if removed.is_empty() {
        return Ok(None);
    }
    for version in &removed {
        versions.remove(version);
    }
    let left: Vec<String> = versions.keys().cloned().collect();
    if let Some(time) = top.get_mut("time").and_then(|t| t.as_object_mut()) {
        for version in &removed {
            time.remove(version);
        }
    }
    if let Some(tags) = top.get_mut("dist-tags").and_then(|t| t.as_object_mut()) {
        let gone: Vec<String> = tags
            .iter()
            .filter(|(_, v)| v.as_str().is_some_and(|v| removed.iter().any(|r| r == v)))
            .map(|(tag, _)| tag.clone())
            .collect();
        for tag in gone {
            tags.remove(&tag);
            if tag == "latest"
                && let Some(highest) = left.iter().max_by(|a, b| version_order(a, b))
            {
                tags.insert(tag, highest.clone().into());
            }
        }
    }
    serde_json::to_vec(&doc)
        .map(Some)
        .map_err(|e| bad(format!("packument of {name}: {e}")))
}

/// Semver order, loosely: major, minor, patch numerically, a release after its
/// pre-releases, pre-releases by their text; what does not parse sorts first.
fn version_order(a: &str, b: &str) -> std::cmp::Ordering {
    fn key(v: &str) -> Option<([u64; 3], bool, &str)> {
        let v = v.split('+').next().unwrap_or(v);
        let (core, pre) = v.split_once('-').unwrap_or((v, ""));
        let mut numbers = [0u64; 3];
        let mut parts = core.split('.');
        for n in &mut numbers {
            *n = parts.next()?.parse().ok()?;
        }
        Some((numbers, pre.is_empty(), pre))
    }
    key(a).cmp(&key(b))
}

/// Index key of a tarball: `name/-/file.tgz`, with the scope's literal `/`.
pub fn artifact_key(name: &PackageName, file: &str) -> String {
    format!("{}/-/{file}", name.path())
}

/// Render a packument, full or abbreviated, with tarball URLs under `base`.
pub fn render(
    name: &PackageName,
    doc_url: &Url,
    body: &[u8],
    abbreviated: bool,
    base: &Url,
) -> Result<Vec<u8>, AdapterError> {
    let malformed = |e: json::JsonError| bad(format!("packument of {name}: {e}"));
    let top = json::members(body).map_err(malformed)?;
    let mut out = Vec::with_capacity(if abbreviated {
        body.len() / 2
    } else {
        body.len() + 1024
    });
    let mut writer = ObjectWriter::new(&mut out);
    let links = Links::new(name, base);
    for member in &top {
        if member.is("versions") {
            let value = writer.key(member.key);
            versions(name, doc_url, member.value, abbreviated, &links, value)?;
        } else if !abbreviated || member.is("name") || member.is("dist-tags") {
            writer.copy(member);
        } else if member.is("time") {
            // The abbreviated form carries `modified` at the top level.
            if let Some(modified) = json::members(member.value)
                .map_err(malformed)?
                .iter()
                .find(|m| m.is("modified"))
            {
                writer
                    .key(b"\"modified\"")
                    .extend_from_slice(modified.value);
            }
        } else if member.is("modified") {
            writer.copy(member);
        }
    }
    writer.finish();
    Ok(out)
}

/// The `dist-tags` object of a packument (`{}` when it has none).
pub fn dist_tags(name: &PackageName, body: &[u8]) -> Result<Vec<u8>, AdapterError> {
    let top = json::members(body).map_err(|e| bad(format!("packument of {name}: {e}")))?;
    Ok(top
        .iter()
        .find(|m| m.is("dist-tags"))
        .map_or_else(|| b"{}".to_vec(), |m| m.value.to_vec()))
}

/// The manifest of one version, as the registry serves it at `/{name}/{part}`: `part` is a
/// version the packument lists or one of its `dist-tags` (a version is looked for first). The
/// manifest is the full one, with `dist.tarball` under `base` as in [`render`]. `None` when the
/// packument has no such version or tag.
pub fn version_manifest(
    name: &PackageName,
    doc_url: &Url,
    body: &[u8],
    part: &str,
    base: &Url,
) -> Result<Option<Vec<u8>>, AdapterError> {
    let malformed = |e: json::JsonError| bad(format!("packument of {name}: {e}"));
    let top = json::members(body).map_err(malformed)?;
    let Some(versions) = top.iter().find(|m| m.is("versions")) else {
        return Ok(None);
    };
    let versions = json::members(versions.value).map_err(malformed)?;
    let mut found = versions.iter().find(|v| v.is(part));
    if found.is_none()
        && let Some(tags) = top.iter().find(|m| m.is("dist-tags"))
        && let Some(tag) = json::members(tags.value)
            .map_err(malformed)?
            .iter()
            .find(|t| t.is(part))
    {
        // A tag that is not a string names no version.
        if let Ok(version) = serde_json::from_slice::<String>(tag.value) {
            found = versions.iter().find(|v| v.is(&version));
        }
    }
    let Some(version) = found else {
        return Ok(None);
    };
    let mut out = Vec::with_capacity(version.value.len() + 256);
    let links = Links::new(name, base);
    version_object(name, doc_url, version, false, &links, &mut out)?;
    Ok(Some(out))
}

fn versions(
    name: &PackageName,
    doc_url: &Url,
    value: &[u8],
    abbreviated: bool,
    links: &Links,
    out: &mut Vec<u8>,
) -> Result<(), AdapterError> {
    let malformed = |e: json::JsonError| bad(format!("versions of {name}: {e}"));
    let mut writer = ObjectWriter::new(out);
    for version in json::members(value).map_err(malformed)? {
        let out = writer.key(version.key);
        version_object(name, doc_url, &version, abbreviated, links, out)?;
    }
    writer.finish();
    Ok(())
}

/// One member of `versions` (its value), full or abbreviated, with its tarball under
/// `tarball_base`.
fn version_object(
    name: &PackageName,
    doc_url: &Url,
    version: &Member<'_>,
    abbreviated: bool,
    links: &Links,
    out: &mut Vec<u8>,
) -> Result<(), AdapterError> {
    let fields =
        json::members(version.value).map_err(|e| bad(format!("versions of {name}: {e}")))?;
    let mut vw = ObjectWriter::new(out);
    let mut has_install_script = false;
    for field in &fields {
        if field.is("dist") {
            let out = vw.key(field.key);
            dist(doc_url, field.value, links, out).map_err(|e| {
                bad(format!(
                    "{name} version {}: {}",
                    String::from_utf8_lossy(version.key),
                    e.0
                ))
            })?;
        } else if !abbreviated {
            vw.copy(field);
        } else if field.is("scripts") {
            has_install_script = json::members(field.value)
                .map(|s| s.iter().any(|m| INSTALL_SCRIPTS.iter().any(|k| m.is(k))))
                .unwrap_or(false);
        } else if keep_abbreviated(field) {
            vw.copy(field);
        }
    }
    if abbreviated && has_install_script && !fields.iter().any(|f| f.is("hasInstallScript")) {
        vw.key(b"\"hasInstallScript\"").extend_from_slice(b"true");
    }
    vw.finish();
    Ok(())
}

fn keep_abbreviated(field: &Member<'_>) -> bool {
    ABBREVIATED_VERSION_KEYS.iter().any(|k| field.is(k))
}

fn dist(doc_url: &Url, value: &[u8], links: &Links, out: &mut Vec<u8>) -> Result<(), AdapterError> {
    let mut writer = ObjectWriter::new(out);
    for field in json::members(value).map_err(|e| bad(e.to_string()))? {
        if field.is("tarball") {
            let upstream: String = serde_json::from_slice(field.value)
                .map_err(|e| bad(format!("dist.tarball is not a string: {e}")))?;
            let url = doc_url
                .join(&upstream)
                .map_err(|e| bad(format!("tarball URL {upstream:?}: {e}")))?;
            let file = tarball_file(&url)?;
            let rewritten = format!("{}{file}", links.tarballs);
            let encoded = serde_json::to_vec(&rewritten).map_err(|e| bad(e.to_string()))?;
            writer.key(field.key).extend_from_slice(&encoded);
        } else if field.is("attestations") {
            let out = writer.key(field.key);
            attestations(field.value, links, out)?;
        } else {
            writer.copy(&field);
        }
    }
    writer.finish();
    Ok(())
}

/// Where a rendered packument sends its clients: tarballs and attestations, on this node.
struct Links {
    /// Before a tarball's file name: `{base}{name}/-/`.
    tarballs: String,
    /// The registry's base (`{base}`), before `-/npm/v1/attestations/NAME@VERSION`.
    registry: String,
}

impl Links {
    fn new(name: &PackageName, base: &Url) -> Self {
        Links {
            tarballs: format!("{base}{}/-/", name.path()),
            registry: base.to_string(),
        }
    }
}

/// `dist.attestations` with its `url` on this node: npm fetches attestations from that URL's
/// path on the registry it was configured with, which drops a registry's own path prefix
/// (`/npm/`). Everything else in it, the `provenance` statement included, is copied as sent;
/// the attestations themselves are served as upstream sent them. A `url` that is not an npm
/// attestations URL is left alone.
fn attestations(value: &[u8], links: &Links, out: &mut Vec<u8>) -> Result<(), AdapterError> {
    let Ok(fields) = json::members(value) else {
        out.extend_from_slice(value);
        return Ok(());
    };
    let mut writer = ObjectWriter::new(out);
    for field in fields {
        let spec = field
            .is("url")
            .then(|| serde_json::from_slice::<String>(field.value).ok())
            .flatten()
            .and_then(|url| {
                let at = url.find("/-/npm/v1/attestations/")?;
                Some(url[at + "/-/npm/v1/attestations/".len()..].to_owned())
            })
            .filter(|spec| !spec.is_empty() && !spec.contains(['?', '#', '\\']));
        match spec {
            Some(spec) => {
                let rewritten = format!("{}-/npm/v1/attestations/{spec}", links.registry);
                let encoded = serde_json::to_vec(&rewritten).map_err(|e| bad(e.to_string()))?;
                writer.key(field.key).extend_from_slice(&encoded);
            }
            None => writer.copy(&field),
        }
    }
    writer.finish();
    Ok(())
}

#[cfg(test)]
mod tests;
