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

mod package_lock;
mod pnpm;
mod yarn;

pub use package_lock::package_lock;
pub use pnpm::pnpm_lock;
pub use yarn::yarn_lock;

use cairn_ecosystem::digest::{Algorithm, Digest};

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

#[cfg(test)]
mod tests;
