//! Purging a package (`cairn purge`, `DELETE /api/v1/purge/…`): the operator's incident
//! response. What belongs to the package is the adapter's knowledge
//! ([`Ecosystem::package_scope`]); the store drops it ([`Store::purge`]: rows in one
//! transaction, then files, each file withdrawn from the swarm); the engine then drops it from
//! every memory cache (hot artifact and metadata rows, rendered documents, hot bytes), so the next
//! request for any of it goes upstream.
//!
//! Downloads of the package already under way are waited for (up to [`DOWNLOAD_WAIT`]), so that
//! what they commit is purged too; one still running after that commits when it ends and is held
//! again, and the report names it (`unfinished`).
//!
//! [`Ecosystem::package_scope`]: crate::ecosystem::Ecosystem::package_scope

use std::collections::HashSet;
use std::sync::Arc;
use std::sync::atomic::Ordering;
use std::time::Duration;

use serde::{Deserialize, Serialize};

use super::{Mirror, blocking};
use crate::cid::FlatCid;
use crate::ecosystem::PackageScope;
use crate::error::Error;
use crate::index::{PurgeKeys, PurgedRows};
use crate::store::Store;

/// What a purge names: `ECOSYSTEM:NAME[@VERSION]` (`npm:left-pad@1.3.0`, `pypi:litellm`,
/// `cargo:serde`, `apt:debian/openssl`: the archive `debian`'s source package `openssl`).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct PurgeSpec {
    /// The ecosystem's name as the index knows it (`npm`, `apt/debian`).
    pub ecosystem: String,
    pub name: String,
    pub version: Option<String>,
}

/// Longest spec accepted.
const MAX_SPEC: usize = 1024;

impl PurgeSpec {
    /// Parse `ECOSYSTEM:NAME[@VERSION]`. For apt the name is `ARCHIVE/SOURCE`, and the ecosystem
    /// is `apt/ARCHIVE`. The version follows the last `@` that does not start the name (npm's
    /// scopes begin with one). Whether the ecosystem exists and the name is valid is for the
    /// node and the adapter to say.
    pub fn parse(spec: &str) -> Result<Self, String> {
        if spec.len() > MAX_SPEC {
            return Err(format!("purge spec of {} bytes is too long", spec.len()));
        }
        let Some((ecosystem, rest)) = spec.split_once(':') else {
            return Err(format!(
                "purge spec {spec:?} names no ecosystem: write ECOSYSTEM:NAME[@VERSION] \
                 (npm:left-pad, pypi:litellm, cargo:serde@1.0.0, apt:ARCHIVE/SOURCE)"
            ));
        };
        let (ecosystem, rest) = if ecosystem == "apt" {
            let Some((archive, source)) = rest.split_once('/') else {
                return Err(format!(
                    "purge spec {spec:?}: apt packages are named ARCHIVE/SOURCE (apt:debian/openssl)"
                ));
            };
            (format!("apt/{archive}"), source)
        } else {
            (ecosystem.to_owned(), rest)
        };
        Self::from_parts(ecosystem, rest).map_err(|why| format!("purge spec {spec:?}: {why}"))
    }

    /// The spec of `ecosystem` and `NAME[@VERSION]`.
    pub fn from_parts(ecosystem: String, name_version: &str) -> Result<Self, String> {
        let (name, version) = match name_version.rfind('@') {
            Some(at) if at > 0 => (&name_version[..at], Some(&name_version[at + 1..])),
            _ => (name_version, None),
        };
        if ecosystem.is_empty() || name.is_empty() {
            return Err("an ecosystem and a package name are needed".to_owned());
        }
        if version == Some("") {
            return Err(format!("{name}@ names no version"));
        }
        Ok(PurgeSpec {
            ecosystem,
            name: name.to_owned(),
            version: version.map(str::to_owned),
        })
    }

    /// The path a node answers this purge at: `/api/v1/purge/ECOSYSTEM/NAME[@VERSION]`, the
    /// name and version percent-encoded.
    pub fn path(&self) -> String {
        let mut target = self.name.clone();
        if let Some(version) = &self.version {
            target.push('@');
            target.push_str(version);
        }
        let encoded = percent_encoding::utf8_percent_encode(&target, PATH_SEGMENT);
        format!("{PURGE_PREFIX}{}/{encoded}", self.ecosystem)
    }
}

impl std::fmt::Display for PurgeSpec {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self.ecosystem.strip_prefix("apt/") {
            Some(archive) => write!(f, "apt:{archive}/{}", self.name)?,
            None => write!(f, "{}:{}", self.ecosystem, self.name)?,
        }
        match &self.version {
            Some(version) => write!(f, "@{version}"),
            None => Ok(()),
        }
    }
}

/// How long a purge waits for downloads of the package under way before it purges.
pub const DOWNLOAD_WAIT: Duration = Duration::from_secs(60);

/// The path prefix of purge requests.
pub const PURGE_PREFIX: &str = "/api/v1/purge/";

/// What is encoded in the name part of a purge path: everything but unreserved characters and
/// `@` (so a scope's `/` is `%2F`).
const PATH_SEGMENT: &percent_encoding::AsciiSet = &percent_encoding::NON_ALPHANUMERIC
    .remove(b'-')
    .remove(b'.')
    .remove(b'_')
    .remove(b'~')
    .remove(b'@');

/// An artifact key a purge dropped.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct PurgedKey {
    pub ecosystem: String,
    pub key: String,
}

/// What a purge dropped.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct PurgeReport {
    pub ecosystem: String,
    pub package: String,
    pub version: Option<String>,
    /// Metadata documents dropped (their keys).
    pub documents: Vec<String>,
    /// Artifact files deleted.
    pub files: usize,
    /// Their bytes.
    pub bytes: u64,
    /// Every key that named them (a file named by a key outside the package goes too: its bytes
    /// are what is purged).
    pub artifacts: Vec<PurgedKey>,
    /// Keys of the package still downloading when the purge ran (after waiting for them): they
    /// are held again when they end; purge again then.
    #[serde(default)]
    pub unfinished: Vec<String>,
}

impl PurgeReport {
    fn new(spec: &PurgeSpec, rows: &PurgedRows) -> Self {
        PurgeReport {
            ecosystem: spec.ecosystem.clone(),
            package: spec.name.clone(),
            version: spec.version.clone(),
            documents: rows.documents.clone(),
            files: rows.files.len(),
            bytes: rows.files.iter().map(|f| f.size).sum(),
            artifacts: rows
                .files
                .iter()
                .flat_map(|f| &f.keys)
                .map(|(ecosystem, key)| PurgedKey {
                    ecosystem: ecosystem.clone(),
                    key: key.clone(),
                })
                .collect(),
            unfinished: Vec::new(),
        }
    }
}

/// True when `key` is one of the artifact keys `scope` names by prefix and owns (how downloads
/// under way, which have no row yet, are matched).
fn in_scope(scope: &PackageScope, key: &str) -> bool {
    scope
        .artifact_prefixes
        .iter()
        .any(|prefix| key.starts_with(prefix.as_str()))
        && (scope.owns)(key)
}

/// Drop what `scope` names in the store (blocking): what `cairn purge` does to a data
/// directory no node is serving, and the store's part of [`Mirror::purge`].
pub fn purge_store(
    store: &Store,
    spec: &PurgeSpec,
    scope: &PackageScope,
) -> Result<(PurgeReport, PurgedRows), Error> {
    let keys = PurgeKeys {
        documents: &scope.documents,
        listed_by: &scope.listed_by,
        artifact_prefixes: &scope.artifact_prefixes,
        owns: &*scope.owns,
    };
    let rows = store.purge(&spec.ecosystem, &keys).map_err(Error::Store)?;
    Ok((PurgeReport::new(spec, &rows), rows))
}

impl Mirror {
    /// Purge the package `spec` names: its files and documents out of the store (and the
    /// swarm), then out of every memory cache, so the next request fetches it from upstream.
    /// An ecosystem this node does not serve is a [`Error::NotFound`] naming those it does; a
    /// name or version the adapter refuses is a [`Error::BadRequest`].
    pub async fn purge(&self, spec: &PurgeSpec) -> Result<PurgeReport, Error> {
        let Some(registered) = self.ecosystem(&spec.ecosystem) else {
            let mut known: Vec<&str> = self.inner.ecosystems.keys().map(|n| &**n).collect();
            known.sort_unstable();
            return Err(Error::NotFound(format!(
                "this node serves no ecosystem {:?} (it serves {})",
                spec.ecosystem,
                known.join(", ")
            )));
        };
        let scope = registered
            .ecosystem
            .package_scope(&spec.name, spec.version.as_deref())
            .map_err(|e| Error::BadRequest(format!("{spec}: {e}")))?;
        let unfinished = self.wait_for_downloads(&registered.name, &scope).await;
        let store = self.inner.store.clone();
        let (mut report, rows) = {
            let (spec, documents) = (spec.clone(), scope.documents.clone());
            let (report, rows) = blocking(move || purge_store(&store, &spec, &scope)).await?;
            self.forget_purged(&registered.name, &documents, &rows);
            (report, rows)
        };
        if !unfinished.is_empty() {
            tracing::warn!(
                spec = %spec,
                downloads = ?unfinished,
                "downloads of a purged package were still running: they will be held again"
            );
        }
        report.unfinished = unfinished;
        tracing::info!(
            spec = %spec,
            files = report.files,
            bytes = report.bytes,
            documents = rows.documents.len(),
            "purged"
        );
        Ok(report)
    }

    /// How many purges this engine has done.
    pub(super) fn purges(&self) -> u64 {
        self.inner.purges.load(Ordering::SeqCst)
    }

    /// Wait (up to [`DOWNLOAD_WAIT`]) for the downloads under way of keys of `ecosystem` that
    /// `scope` owns, so that the purge finds what they commit; the keys still running after.
    async fn wait_for_downloads(&self, ecosystem: &Arc<str>, scope: &PackageScope) -> Vec<String> {
        let under_way: Vec<(String, Arc<super::download::Download>)> = self
            .downloads()
            .iter()
            .filter(|((name, key), _)| name == ecosystem && in_scope(scope, key))
            .map(|((_, key), download)| (key.clone(), download.clone()))
            .collect();
        if under_way.is_empty() {
            return Vec::new();
        }
        tracing::info!(
            downloads = under_way.len(),
            "a purge waits for downloads of the package under way"
        );
        let all = futures_util::future::join_all(under_way.iter().map(|(_, d)| d.committed()));
        if tokio::time::timeout(DOWNLOAD_WAIT, all).await.is_ok() {
            return Vec::new();
        }
        let running = self.downloads();
        under_way
            .into_iter()
            .filter(|(key, _)| running.contains_key(&(ecosystem.clone(), key.clone())))
            .map(|(key, _)| key)
            .collect()
    }

    /// Drop what a purge removed from the memory caches: hot artifact rows naming a purged
    /// file (under any key), hot bytes of those files, the documents' hot rows (cached "not
    /// found"s included) and their rendered forms.
    fn forget_purged(&self, ecosystem: &str, documents: &[String], rows: &PurgedRows) {
        let gone: HashSet<FlatCid> = rows.files.iter().map(|f| f.flat).collect();
        for by_key in self.hot().values_mut() {
            by_key.retain(|_, c| !gone.contains(&c.record.flat));
        }
        for flat in &gone {
            self.content().remove(flat);
        }
        let mut blocks = HashSet::new();
        let mut hot = self.hot_metadata();
        // Under the lock the hot rows are written with: a lookup that read the index before
        // the purge does not remember what it read.
        self.inner.purges.fetch_add(1, Ordering::SeqCst);
        if let Some(by_key) = hot.get_mut(ecosystem) {
            for key in documents {
                if let Some(cid) = by_key.remove(key).and_then(|record| record.cid) {
                    blocks.insert(cid);
                }
            }
        }
        drop(hot);
        blocks.extend(rows.blocks.iter().copied());
        self.inner
            .rendered
            .retain(|key, _| !blocks.contains(&key.cid));
        let bytes: u64 = rows.files.iter().map(|f| f.size).sum();
        self.show_held();
        let metrics = &self.inner.metrics;
        metrics.purged_files.inc_by(rows.files.len() as u64);
        metrics.purged_bytes.inc_by(bytes);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn spec(ecosystem: &str, name: &str, version: Option<&str>) -> PurgeSpec {
        PurgeSpec {
            ecosystem: ecosystem.into(),
            name: name.into(),
            version: version.map(Into::into),
        }
    }

    #[test]
    fn a_row_read_before_a_purge_is_not_remembered_after_it() {
        use crate::MirrorConfig;
        use crate::index::MetadataRecord;
        let dir = tempfile::tempdir().expect("tempdir");
        let mirror =
            Mirror::open(MirrorConfig::new(dir.path().to_path_buf()), Vec::new()).expect("open");
        let record = MetadataRecord {
            private: false,
            cid: None,
            status: 404,
            upstream_url: "http://upstream.invalid/x".into(),
            fetched_at: 1,
            etag: None,
            last_modified: None,
            size: 0,
        };
        let hot = |mirror: &Mirror| {
            mirror
                .hot_metadata()
                .get("npm")
                .is_some_and(|by_key| by_key.contains_key("x"))
        };
        // Read before a purge, remembered after it: dropped.
        let before = mirror.purges();
        mirror.forget_purged("npm", &["x".to_owned()], &PurgedRows::default());
        mirror.remember_metadata_unless_purged("npm", "x", &record, before);
        assert!(!hot(&mirror));
        // Read and remembered with no purge between: kept.
        let now = mirror.purges();
        mirror.remember_metadata_unless_purged("npm", "x", &record, now);
        assert!(hot(&mirror));
    }

    #[test]
    fn specs_name_an_ecosystem_a_package_and_maybe_a_version() {
        for (text, expected) in [
            ("npm:left-pad", spec("npm", "left-pad", None)),
            ("npm:left-pad@1.3.0", spec("npm", "left-pad", Some("1.3.0"))),
            ("npm:@types/node", spec("npm", "@types/node", None)),
            (
                "npm:@types/node@20.1.0",
                spec("npm", "@types/node", Some("20.1.0")),
            ),
            ("pypi:litellm", spec("pypi", "litellm", None)),
            ("cargo:foo@1.2.3", spec("cargo", "foo", Some("1.2.3"))),
            ("apt:debian/openssl", spec("apt/debian", "openssl", None)),
        ] {
            let parsed = PurgeSpec::parse(text).expect(text);
            assert_eq!(parsed, expected, "{text}");
            assert_eq!(parsed.to_string(), text, "it prints as it was written");
        }
    }

    #[test]
    fn malformed_specs_are_refused_with_the_spec_named() {
        for text in [
            "left-pad",
            "npm:",
            ":left-pad",
            "npm:left-pad@",
            "apt:openssl",
        ] {
            let err = PurgeSpec::parse(text).expect_err(text);
            assert!(err.contains(&format!("{text:?}")), "{err}");
        }
        let long = format!("npm:{}", "a".repeat(MAX_SPEC));
        assert!(PurgeSpec::parse(&long).is_err());
    }

    #[test]
    fn a_spec_path_encodes_the_name_and_keeps_the_ecosystem() {
        assert_eq!(
            spec("npm", "@types/node", Some("1.0.0")).path(),
            "/api/v1/purge/npm/@types%2Fnode@1.0.0"
        );
        assert_eq!(
            spec("apt/debian", "openssl", None).path(),
            "/api/v1/purge/apt/debian/openssl"
        );
    }
}
