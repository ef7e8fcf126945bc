//! Lockfile readers for npm, yarn and pnpm: the registry packages a project pins, each with the
//! strongest digest its lockfile gives (sha512 `integrity`, else sha1), which is the tarball's
//! flat CID, so every tarball is known without asking upstream.
//!
//! Formats: `package-lock.json` and `npm-shrinkwrap.json` (lockfileVersion 1, 2 and 3), yarn's
//! `yarn.lock` v1, and `pnpm-lock.yaml` (lockfileVersion 5.x, 6.x and 9.0). Yarn berry lockfiles
//! are refused: their `checksum`s are yarn's own zip-archive digests, not the registry's.
//!
//! Only registry packages are returned. Workspace links, bundled dependencies, `file:` and git
//! dependencies, and direct tarball URLs (whose file name is not the registry's
//! `{name}-{version}.tgz`) are skipped. A registry package without a usable digest is an error.
//!
//! Errors name the file and the line (`{file}:{line}: {reason}`; line 0 when the error is about
//! the whole file). The pnpm reader is line-based rather than a YAML parser: pnpm writes its
//! `packages:` section in a fixed shape (two-space keys, inline `resolution: {…}` maps).

use cairn_ecosystem::digest::{Algorithm, Digest};
use cairn_ecosystem::json::{self, JsonError};
use serde::Deserialize;

use crate::name::{PackageName, decode};
use crate::packument::digest_of;

/// One registry package a lockfile pins.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Locked {
    /// The validated registry name (`name` or `@scope/name`; an alias's real name).
    pub name: String,
    pub version: String,
    /// The strongest digest the lockfile gives for the tarball.
    pub integrity: Digest,
    /// The line of the (first) entry that pins it.
    pub line: usize,
}

/// A lockfile that cannot be read.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
#[error("{file}:{line}: {reason}")]
pub struct LockfileError {
    pub file: String,
    pub line: usize,
    pub reason: String,
}

/// Read any supported lockfile: the format is chosen by the file name (`package-lock.json`,
/// `npm-shrinkwrap.json`, `yarn.lock`, `pnpm-lock.yaml`), else by sniffing the content.
/// `file` names the file in errors.
pub fn read(file: &str, text: &str) -> Result<Vec<Locked>, LockfileError> {
    let base = file.rsplit(['/', '\\']).next().unwrap_or(file);
    match base {
        "package-lock.json" | "npm-shrinkwrap.json" => return package_lock(file, text),
        "yarn.lock" => return yarn_lock(file, text),
        "pnpm-lock.yaml" => return pnpm_lock(file, text),
        _ => {}
    }
    if text.trim_start().starts_with('{') {
        return package_lock(file, text);
    }
    for line in text.lines().take(50) {
        if line.starts_with("lockfileVersion:") {
            return pnpm_lock(file, text);
        }
        if line.starts_with("__metadata:") || line.trim() == "# yarn lockfile v1" {
            return yarn_lock(file, text);
        }
    }
    Err(LockfileError {
        file: file.to_owned(),
        line: 0,
        reason: "unknown lockfile format: expected a package-lock.json, npm-shrinkwrap.json, \
                 yarn.lock (v1) or pnpm-lock.yaml"
            .to_owned(),
    })
}

/// Collects entries, validating each, and finishes them sorted and deduplicated.
struct Out<'f> {
    file: &'f str,
    items: Vec<Locked>,
}

impl<'f> Out<'f> {
    fn new(file: &'f str) -> Self {
        Out {
            file,
            items: Vec::new(),
        }
    }

    fn fail(&self, line: usize, reason: impl Into<String>) -> LockfileError {
        LockfileError {
            file: self.file.to_owned(),
            line,
            reason: reason.into(),
        }
    }

    /// Add `name`@`version` if it is a registry package; skip it otherwise (see the module
    /// documentation). `shasum` is a legacy hex sha1, used when `integrity` gives nothing.
    fn entry(
        &mut self,
        line: usize,
        name: &str,
        version: &str,
        resolved: Option<&str>,
        integrity: Option<&str>,
        shasum: Option<&str>,
    ) -> Result<(), LockfileError> {
        if !plain_version(version) {
            return Ok(()); // `file:`, `git+…`, `link:`, URLs: not from a registry
        }
        let name = PackageName::parse(name).map_err(|e| self.fail(line, e.to_string()))?;
        match resolved {
            Some(url) if !registry_tarball(url, &name, version) => return Ok(()),
            None if integrity.is_none() => return Ok(()),
            _ => {}
        }
        let integrity = digest_of(integrity, shasum).ok_or_else(|| {
            self.fail(
                line,
                match integrity {
                    Some(i) => format!("{name}@{version}: integrity {i:?} has no usable digest"),
                    None => format!("{name}@{version} has no integrity"),
                },
            )
        })?;
        self.items.push(Locked {
            name: name.to_string(),
            version: version.to_owned(),
            integrity,
            line,
        });
        Ok(())
    }

    /// Sort by (name, version) and merge duplicates, keeping the first line and the strongest
    /// digest; two different digests of one algorithm for one version are an error.
    fn finish(mut self) -> Result<Vec<Locked>, LockfileError> {
        self.items
            .sort_by(|a, b| (&a.name, &a.version, a.line).cmp(&(&b.name, &b.version, b.line)));
        let mut out: Vec<Locked> = Vec::with_capacity(self.items.len());
        for item in std::mem::take(&mut self.items) {
            match out.last_mut() {
                Some(last) if last.name == item.name && last.version == item.version => {
                    let (old, new) = (&last.integrity, &item.integrity);
                    if old.algorithm() == new.algorithm() && old != new {
                        return Err(self.fail(
                            item.line,
                            format!(
                                "{}@{}: integrity {new} conflicts with {old} on line {}",
                                item.name, item.version, last.line
                            ),
                        ));
                    }
                    if rank(new.algorithm()) > rank(old.algorithm()) {
                        last.integrity = item.integrity;
                    }
                }
                _ => out.push(item),
            }
        }
        Ok(out)
    }
}

fn rank(algorithm: Algorithm) -> u8 {
    match algorithm {
        Algorithm::Sha512 => 3,
        Algorithm::Sha256 => 2,
        Algorithm::Sha1 => 1,
    }
}

/// A published version (`1.2.3`, `1.0.0-rc.1+build`), as opposed to a `file:`, git or URL spec.
fn plain_version(version: &str) -> bool {
    version.starts_with(|c: char| c.is_ascii_digit())
        && version
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || ".+-".contains(c))
}

/// True when `url` is an http(s) URL whose file name is the registry's `{name}-{version}.tgz`.
fn registry_tarball(url: &str, name: &PackageName, version: &str) -> bool {
    let url = url.split(['#', '?']).next().unwrap_or(url);
    if !(url.starts_with("https://") || url.starts_with("http://")) {
        return false;
    }
    let last = url.rsplit('/').next().unwrap_or("");
    decode(last).is_ok_and(|f| f == format!("{}-{version}.tgz", name.unscoped()))
}

/// Split `name@rest` (`@scope/name@rest` keeps its scope).
fn split_at_version(spec: &str) -> Option<(&str, &str)> {
    let start = usize::from(spec.starts_with('@'));
    let at = spec.get(start..)?.find('@')? + start;
    Some((&spec[..at], &spec[at + 1..]))
}

// ---------------------------------------------------------------------------------------------
// package-lock.json / npm-shrinkwrap.json

/// Line numbers of byte offsets and spans inside one document.
struct Lines<'a> {
    text: &'a [u8],
    /// Offsets of the document's newlines.
    newlines: Vec<usize>,
}

impl<'a> Lines<'a> {
    fn new(text: &'a [u8]) -> Self {
        let newlines = (0..text.len()).filter(|&i| text[i] == b'\n').collect();
        Lines { text, newlines }
    }

    /// The line of byte `offset`.
    fn at(&self, offset: usize) -> usize {
        self.newlines.partition_point(|&nl| nl < offset) + 1
    }

    /// The line of byte `offset` of `span`, a sub-slice of the document (as `json::members`
    /// returns).
    fn in_span(&self, span: &[u8], offset: usize) -> usize {
        let start = span.as_ptr().addr().wrapping_sub(self.text.as_ptr().addr());
        self.at(start.saturating_add(offset))
    }

    /// The line where `span` starts.
    fn of(&self, span: &[u8]) -> usize {
        self.in_span(span, 0)
    }
}

/// An entry of `packages` (lockfileVersion 2 and 3).
#[derive(Deserialize)]
struct PackageEntry {
    name: Option<String>,
    version: Option<String>,
    resolved: Option<String>,
    integrity: Option<String>,
    #[serde(default)]
    link: bool,
    #[serde(default, rename = "inBundle")]
    in_bundle: bool,
}

/// An entry of the nested `dependencies` tree (lockfileVersion 1).
#[derive(Deserialize)]
struct TreeEntry {
    version: Option<String>,
    resolved: Option<String>,
    integrity: Option<String>,
    #[serde(default)]
    bundled: bool,
}

/// Read a `package-lock.json` or `npm-shrinkwrap.json` (lockfileVersion 1, 2 or 3).
pub fn package_lock(file: &str, text: &str) -> Result<Vec<Locked>, LockfileError> {
    let mut out = Out::new(file);
    serde_json::from_str::<serde::de::IgnoredAny>(text)
        .map_err(|e| out.fail(e.line(), format!("not valid JSON: {e}")))?;
    let lines = Lines::new(text.as_bytes());
    let members = |span| {
        json::members(span)
            .map_err(|e: JsonError| out.fail(lines.in_span(span, e.offset), e.to_string()))
    };
    let top = members(text.as_bytes())?;
    let version = match top.iter().find(|m| m.is("lockfileVersion")) {
        None => 1,
        Some(m) => {
            let line = lines.of(m.key);
            match serde_json::from_slice::<u64>(m.value) {
                Ok(v @ 1..=3) => v,
                _ => {
                    return Err(out.fail(
                        line,
                        format!(
                            "lockfileVersion {} is not supported (1, 2 and 3 are)",
                            String::from_utf8_lossy(m.value)
                        ),
                    ));
                }
            }
        }
    };
    let packages = top.iter().find(|m| m.is("packages"));
    let tree = top.iter().find(|m| m.is("dependencies"));
    let mut found = Vec::new();
    if let Some(packages) = packages.filter(|_| version >= 2) {
        for m in members(packages.value)? {
            let line = lines.of(m.key);
            let key = m
                .key_string()
                .map_err(|e| out.fail(line, format!("packages: {e}")))?;
            let entry: PackageEntry = serde_json::from_slice(m.value)
                .map_err(|e| out.fail(line, format!("packages[{key:?}]: {e}")))?;
            if key.is_empty() || entry.link || entry.in_bundle {
                continue;
            }
            let from_path = key.rsplit_once("node_modules/").map(|(_, n)| n.to_owned());
            let (Some(name), Some(version)) = (entry.name.or(from_path), entry.version) else {
                continue; // a workspace folder or another local package
            };
            found.push((line, name, version, entry.resolved, entry.integrity));
        }
    } else if let Some(tree) = tree {
        let mut stack = vec![tree.value];
        // Each tree's entries, then their nested trees (order does not matter: results are
        // sorted). serde_json bounded the nesting above.
        while let Some(deps) = stack.pop() {
            let mut children = Vec::new();
            for m in members(deps)? {
                let line = lines.of(m.key);
                let key = m
                    .key_string()
                    .map_err(|e| out.fail(line, format!("dependencies: {e}")))?;
                let entry: TreeEntry = serde_json::from_slice(m.value)
                    .map_err(|e| out.fail(line, format!("dependencies[{key:?}]: {e}")))?;
                if let Some(nested) = members(m.value)?.iter().find(|f| f.is("dependencies")) {
                    children.push(nested.value);
                }
                let (Some(version), false) = (entry.version, entry.bundled) else {
                    continue;
                };
                // An alias: `"foo": {"version": "npm:bar@1.0.0"}`.
                let (name, version) = match version.strip_prefix("npm:").and_then(split_at_version)
                {
                    Some((real, v)) => (real.to_owned(), v.to_owned()),
                    None => (key, version),
                };
                found.push((line, name, version, entry.resolved, entry.integrity));
            }
            stack.extend(children.into_iter().rev());
        }
    }
    for (line, name, version, resolved, integrity) in found {
        out.entry(
            line,
            &name,
            &version,
            resolved.as_deref(),
            integrity.as_deref(),
            None,
        )?;
    }
    out.finish()
}

// ---------------------------------------------------------------------------------------------
// yarn.lock v1

/// Undo yarn's JSON-style quoting (values without quotes are returned as they are).
fn unquote_yarn(value: &str) -> Option<String> {
    if value.starts_with('"') {
        serde_json::from_str(value).ok()
    } else {
        Some(value.to_owned())
    }
}

struct YarnEntry {
    line: usize,
    name: String,
    version: Option<String>,
    resolved: Option<String>,
    integrity: Option<String>,
}

impl YarnEntry {
    fn finish(self, out: &mut Out<'_>) -> Result<(), LockfileError> {
        let Some(version) = &self.version else {
            return Err(out.fail(self.line, format!("{} has no version", self.name)));
        };
        let shasum = self
            .resolved
            .as_deref()
            .and_then(|r| r.split_once('#'))
            .map(|(_, fragment)| fragment)
            .filter(|f| f.len() == 40 && f.bytes().all(|b| b.is_ascii_hexdigit()));
        out.entry(
            self.line,
            &self.name,
            version,
            self.resolved.as_deref(),
            self.integrity.as_deref(),
            shasum,
        )
    }
}

/// Read a yarn v1 `yarn.lock` (`# yarn lockfile v1`). Yarn berry lockfiles are refused.
pub fn yarn_lock(file: &str, text: &str) -> Result<Vec<Locked>, LockfileError> {
    let mut out = Out::new(file);
    let mut entry: Option<YarnEntry> = None;
    for (i, raw) in text.lines().enumerate() {
        let n = i + 1;
        let body = raw.trim_start_matches(' ');
        if body.trim().is_empty() || body.starts_with('#') {
            continue;
        }
        if body.starts_with('\t') {
            return Err(out.fail(n, "indented with a tab"));
        }
        match raw.len() - body.len() {
            0 => {
                if raw.starts_with("__metadata:") {
                    return Err(out.fail(
                        n,
                        "a yarn berry (v2+) lockfile: its checksums are yarn's own zip-archive \
                         digests, not registry digests, so it is not supported",
                    ));
                }
                if let Some(done) = entry.take() {
                    done.finish(&mut out)?;
                }
                entry = Some(yarn_header(&out, n, raw)?);
            }
            2 => {
                let Some(e) = entry.as_mut() else {
                    return Err(out.fail(n, "indented line outside an entry"));
                };
                let body = body.trim_end();
                if body.ends_with(':') {
                    continue; // `dependencies:` and other blocks
                }
                let Some((key, value)) = body.split_once(' ') else {
                    return Err(out.fail(n, format!("expected `key value`, got {body:?}")));
                };
                let value = unquote_yarn(value.trim())
                    .ok_or_else(|| out.fail(n, format!("badly quoted value {value:?}")))?;
                match key {
                    "version" => e.version = Some(value),
                    "resolved" => e.resolved = Some(value),
                    "integrity" => e.integrity = Some(value),
                    _ => {}
                }
            }
            _ if entry.is_none() => return Err(out.fail(n, "indented line outside an entry")),
            _ => {} // inside a block
        }
    }
    if let Some(done) = entry {
        done.finish(&mut out)?;
    }
    out.finish()
}

/// An entry's header, `"a@^1", a@~1.2:`, naming the package (an alias's real name).
fn yarn_header(out: &Out<'_>, n: usize, raw: &str) -> Result<YarnEntry, LockfileError> {
    let bad = || {
        out.fail(
            n,
            format!("expected an entry header `name@range:`, got {raw:?}"),
        )
    };
    let header = raw.trim_end().strip_suffix(':').ok_or_else(bad)?;
    let first = header.split(',').next().unwrap_or_default().trim();
    let spec = unquote_yarn(first).ok_or_else(bad)?;
    let (name, range) = split_at_version(&spec).ok_or_else(bad)?;
    // An alias: `"foo@npm:bar@^1"` installs bar.
    let name = match range.strip_prefix("npm:").and_then(split_at_version) {
        Some((real, _)) => real,
        None => name,
    };
    Ok(YarnEntry {
        line: n,
        name: name.to_owned(),
        version: None,
        resolved: None,
        integrity: None,
    })
}

// ---------------------------------------------------------------------------------------------
// pnpm-lock.yaml

/// Undo YAML scalar quoting (`'a''b'`, `"a"`, or plain).
fn unquote_yaml(value: &str) -> Option<String> {
    let value = value.trim();
    if let Some(inner) = value.strip_prefix('\'') {
        Some(inner.strip_suffix('\'')?.replace("''", "'"))
    } else if value.starts_with('"') {
        serde_json::from_str(value).ok()
    } else {
        Some(value.to_owned())
    }
}

/// An inline map, `{integrity: sha512-…, tarball: https://…}`, as (key, value) pairs.
fn flow_map(text: &str) -> Option<Vec<(String, String)>> {
    let inner = text.trim().strip_prefix('{')?.strip_suffix('}')?;
    let mut pairs = Vec::new();
    let (mut start, mut quote) = (0, None);
    let mut items = Vec::new();
    for (i, c) in inner.char_indices() {
        match (c, quote) {
            ('\'' | '"', None) => quote = Some(c),
            (c, Some(q)) if c == q => quote = None,
            (',', None) => {
                items.push(&inner[start..i]);
                start = i + 1;
            }
            _ => {}
        }
    }
    if quote.is_some() {
        return None;
    }
    items.push(&inner[start..]);
    for item in items.into_iter().filter(|s| !s.trim().is_empty()) {
        let (key, value) = item.split_once(':')?;
        pairs.push((unquote_yaml(key)?, unquote_yaml(value)?));
    }
    Some(pairs)
}

struct PnpmEntry {
    line: usize,
    key: String,
    resolution: Option<Vec<(String, String)>>,
}

impl PnpmEntry {
    fn finish(self, out: &mut Out<'_>, style: KeyStyle) -> Result<(), LockfileError> {
        let Some(resolution) = self.resolution else {
            return Err(out.fail(self.line, format!("{} has no resolution", self.key)));
        };
        let field = |k: &str| {
            resolution
                .iter()
                .find(|(key, _)| key == k)
                .map(|(_, v)| v.as_str())
        };
        let Some((name, version)) = pnpm_key(&self.key, style) else {
            return Ok(()); // git, `file:`, tarball URL and other non-registry keys
        };
        out.entry(
            self.line,
            name,
            version,
            field("tarball"),
            field("integrity"),
            None,
        )
    }
}

/// How a lockfile version writes its `packages` keys.
#[derive(Clone, Copy)]
enum KeyStyle {
    /// `/name/version_peers` (lockfileVersion 5.x).
    Slash,
    /// `/name@version(peers)` (6.x).
    SlashAt,
    /// `name@version` (9.0; peer suffixes live in `snapshots:`, but are stripped all the same).
    At,
}

/// Name and version of a registry package's `packages` key; `None` for other keys (git,
/// `file:`, tarball URLs). Scoped names keep their scope.
fn pnpm_key(key: &str, style: KeyStyle) -> Option<(&str, &str)> {
    let (name, version) = match style {
        KeyStyle::Slash => {
            let rest = key.strip_prefix('/')?;
            let segments = if rest.starts_with('@') { 2 } else { 1 };
            let at = rest.match_indices('/').nth(segments - 1)?.0;
            let version = &rest[at + 1..];
            (&rest[..at], version.split('_').next().unwrap_or(version))
        }
        KeyStyle::SlashAt => split_at_version(key.strip_prefix('/')?)?,
        KeyStyle::At if key.starts_with('/') => return None,
        KeyStyle::At => split_at_version(key)?,
    };
    Some((name, version.split('(').next().unwrap_or(version)))
}

/// Read a `pnpm-lock.yaml` (lockfileVersion 5.x, 6.x or 9.0): its `packages:` section.
pub fn pnpm_lock(file: &str, text: &str) -> Result<Vec<Locked>, LockfileError> {
    let mut out = Out::new(file);
    let mut style = None;
    let mut in_packages = false;
    let mut entry: Option<PnpmEntry> = None;
    let mut block_resolution = false;
    for (i, raw) in text.lines().enumerate() {
        let n = i + 1;
        let body = raw.trim_start_matches(' ');
        if body.trim().is_empty() || body.starts_with('#') {
            continue;
        }
        if body.starts_with('\t') {
            return Err(out.fail(n, "indented with a tab"));
        }
        let indent = raw.len() - body.len();
        let body = body.trim_end();
        if indent == 0 {
            block_resolution = false;
            if let Some(done) = entry.take() {
                done.finish(&mut out, style.unwrap_or(KeyStyle::At))?;
            }
            in_packages = body == "packages:";
            if let Some(v) = body.strip_prefix("lockfileVersion:") {
                let major = unquote_yaml(v)
                    .and_then(|v| v.split('.').next().and_then(|m| m.parse::<u32>().ok()));
                style = Some(match major {
                    Some(5) => KeyStyle::Slash,
                    Some(6..=8) => KeyStyle::SlashAt,
                    Some(9) => KeyStyle::At,
                    _ => {
                        return Err(out.fail(
                            n,
                            format!(
                                "lockfileVersion {} is not supported (5.x to 9.0 are)",
                                v.trim()
                            ),
                        ));
                    }
                });
            }
            if in_packages && style.is_none() {
                return Err(out.fail(n, "packages: before lockfileVersion"));
            }
            continue;
        }
        if !in_packages {
            continue;
        }
        match indent {
            2 => {
                block_resolution = false;
                if let Some(done) = entry.take() {
                    done.finish(&mut out, style.unwrap_or(KeyStyle::At))?;
                }
                let key = body
                    .strip_suffix(':')
                    .and_then(unquote_yaml)
                    .ok_or_else(|| out.fail(n, format!("expected a package key, got {body:?}")))?;
                entry = Some(PnpmEntry {
                    line: n,
                    key,
                    resolution: None,
                });
            }
            4 => {
                let Some(e) = entry.as_mut() else {
                    return Err(out.fail(n, "indented line outside a package"));
                };
                block_resolution = false;
                let Some(value) = body.strip_prefix("resolution:") else {
                    continue;
                };
                if value.trim().is_empty() {
                    block_resolution = true;
                    e.resolution = Some(Vec::new());
                } else {
                    let map = flow_map(value)
                        .ok_or_else(|| out.fail(n, format!("malformed resolution {body:?}")))?;
                    e.resolution = Some(map);
                }
            }
            6 if block_resolution => {
                let pair = body
                    .split_once(':')
                    .and_then(|(k, v)| Some((unquote_yaml(k)?, unquote_yaml(v)?)))
                    .ok_or_else(|| out.fail(n, format!("malformed resolution field {body:?}")))?;
                if let Some(r) = entry.as_mut().and_then(|e| e.resolution.as_mut()) {
                    r.push(pair);
                }
            }
            _ if entry.is_none() => {
                return Err(out.fail(n, "indented line outside a package"));
            }
            _ => {}
        }
    }
    if let Some(done) = entry {
        done.finish(&mut out, style.unwrap_or(KeyStyle::At))?;
    }
    if style.is_none() {
        return Err(out.fail(0, "no lockfileVersion: not a pnpm-lock.yaml"));
    }
    out.finish()
}

#[cfg(test)]
mod tests;
