//! Cairn's cargo adapter: the sparse index (docs/protocols.md), served as a source replacement
//! for crates-io.
//!
//! Alternative registries ([`Alternative`]) speak the same protocol under `/cargo/NAME/`.
//!
//! Routes below `/cargo/`:
//! - `index/config.json`: the upstream's, with `dl` pointing back at this node (cargo appends
//!   `/{crate}/{version}/download`) and `api` dropped (publishing does not go through a mirror);
//! - `index/{path}`: index files, passed on byte for byte, checked against the path rules;
//! - `crates/{crate}/{version}/download`: `.crate` files, verified against the index line's
//!   `cksum` (sha256, which is therefore the flat CID).
//!
//! Where downloads live upstream comes from the upstream's own `config.json` (its `dl`, possibly
//! a template with markers): index files name it as their context document, and its fixed part
//! is declared to the mirror as a download location.

mod alternative;
pub mod index;
pub mod lockfile;

pub use alternative::Alternative;

use cairn_ecosystem::{
    AdapterError, ArtifactRef, ArtifactRoute, BadRequest, DocumentFacts, Ecosystem, Listing,
    MetadataDoc, MetadataRoute, PackageScope, Rendered, Request, Route,
};
use serde::Deserialize;
use url::Url;

const CONFIG_KEY: &str = "config.json";
const CONFIG_VARIANT: &str = "config";
const INDEX_VARIANT: &str = "index";

/// The cargo ecosystem.
#[derive(Clone, Copy, Debug, Default)]
pub struct Cargo;

#[derive(Deserialize)]
struct Config {
    dl: String,
}

fn bad(e: impl ToString) -> BadRequest {
    BadRequest(e.to_string())
}

fn config_route() -> MetadataRoute {
    MetadataRoute {
        key: CONFIG_KEY.to_owned(),
        upstream_path: CONFIG_KEY.to_owned(),
        variant: CONFIG_VARIANT,
        upstream_accept: None,
        context: None,
    }
}

/// The route of a crate's index file (its key is the lower-cased name).
fn index_route(name: &str) -> MetadataRoute {
    MetadataRoute {
        key: name.to_ascii_lowercase(),
        upstream_path: index::index_path(name),
        variant: INDEX_VARIANT,
        upstream_accept: None,
        context: Some(Box::new(config_route())),
    }
}

/// Index key of a `.crate` file: `{lower-cased name}/{version}`.
pub fn artifact_key(name: &str, version: &str) -> String {
    format!("{}/{version}", name.to_ascii_lowercase())
}

fn config_dl(doc: &MetadataDoc<'_>) -> Result<String, AdapterError> {
    let config: Config = serde_json::from_slice(doc.body)
        .map_err(|e| AdapterError(format!("config.json is not a sparse registry config: {e}")))?;
    Ok(config.dl)
}

/// Resolve a `dl` value against the `config.json` URL it came from (it may be relative).
fn absolute_dl(doc: &MetadataDoc<'_>) -> Result<String, AdapterError> {
    let dl = config_dl(doc)?;
    // Markers are not URL syntax; resolve only the fixed part.
    let fixed = index::download_prefix(&dl);
    let resolved = doc
        .url
        .join(&fixed)
        .map_err(|e| AdapterError(format!("config.json dl {dl:?}: {e}")))?;
    Ok(format!("{resolved}{}", &dl[fixed.len().min(dl.len())..]))
}

/// Where downloads live: the fixed part of `config.json`'s `dl`, resolved; `None` when it is
/// no URL (then nothing is fetched from outside the upstream's base).
fn download_prefix(config: &MetadataDoc<'_>) -> Option<Url> {
    let dl = absolute_dl(config).ok()?;
    Url::parse(&index::download_prefix(&dl)).ok()
}

impl Ecosystem for Cargo {
    fn name(&self) -> &str {
        "cargo"
    }

    fn client_root(&self) -> &'static str {
        "index/"
    }

    fn route(&self, request: &Request<'_>) -> Result<Option<Route>, BadRequest> {
        let path = request.path;
        if path.contains('%') || path.split('/').any(|s| s == ".." || s == ".") {
            return Err(bad(format!("path /{path} is not a sparse index path")));
        }
        if let Some(rest) = path.strip_prefix("index/") {
            if rest == CONFIG_KEY {
                return Ok(Some(Route::Metadata(config_route())));
            }
            let name = rest.rsplit('/').next().unwrap_or(rest);
            index::check_name(name).map_err(bad)?;
            return Ok(
                index::name_of_index_path(rest).map(|name| Route::Metadata(index_route(name)))
            );
        }
        if let Some(rest) = path.strip_prefix("crates/") {
            let parts: Vec<&str> = rest.split('/').collect();
            let [name, version, "download"] = parts.as_slice() else {
                return Ok(None);
            };
            index::check_name(name).map_err(bad)?;
            index::check_version(version).map_err(bad)?;
            return Ok(Some(Route::Artifact(ArtifactRoute {
                key: artifact_key(name, version),
                listed_by: Listing::Document(index_route(name)),
                derive: None,
                listing: false,
            })));
        }
        Ok(None)
    }

    /// Keys are not paths: `config.json` and `{name}` are index files, `{name}/{version}` a
    /// `.crate`.
    fn key_route(&self, key: &str) -> Result<Option<Route>, BadRequest> {
        let path = if key == CONFIG_KEY {
            format!("index/{CONFIG_KEY}")
        } else if let Some((name, version)) = key.split_once('/') {
            format!("crates/{name}/{version}/download")
        } else {
            index::check_name(key).map_err(bad)?;
            format!("index/{}", index::index_path(key))
        };
        self.route(&Request::get(&path))
    }

    /// `config.json` names no artifact and declares where downloads live (the fixed part of
    /// its `dl`); an index file names its releases' `.crate` files, found through the
    /// `config.json` it is read with.
    /// A crate is its index file and every `.crate` under `NAME/`; a version is its `.crate`,
    /// `NAME/VERSION`, and the index file stays. Names are lower-cased, as the routes key them.
    fn package_scope(&self, name: &str, version: Option<&str>) -> Result<PackageScope, BadRequest> {
        index::check_name(name).map_err(bad)?;
        let lower = name.to_ascii_lowercase();
        let mut scope = PackageScope::whole(&lower, format!("{lower}/"));
        if let Some(version) = version {
            index::check_version(version).map_err(bad)?;
            let key = artifact_key(name, version);
            scope.documents.clear();
            scope.owns = Box::new(move |candidate| candidate == key);
        }
        Ok(scope)
    }

    fn read(&self, doc: &MetadataDoc<'_>) -> Result<DocumentFacts, AdapterError> {
        if doc.key == CONFIG_KEY {
            config_dl(doc)?;
            return Ok(DocumentFacts {
                artifacts: Vec::new(),
                download_prefixes: download_prefix(doc).into_iter().collect(),
            });
        }
        let config = doc.context.ok_or_else(|| {
            AdapterError(format!(
                "index file of {} read without config.json",
                doc.key
            ))
        })?;
        let dl = absolute_dl(config)?;
        let releases = index::releases(doc.key, doc.body).map_err(AdapterError)?;
        let artifacts = releases
            .into_iter()
            .map(|release| {
                let url = index::download_url(&dl, &release);
                Ok(ArtifactRef {
                    version: Some(release.version.clone()),
                    published: release.published,
                    key: artifact_key(&release.name, &release.version),
                    url: Url::parse(&url)
                        .map_err(|e| AdapterError(format!("download URL {url:?}: {e}")))?,
                    digest: release.checksum,
                    size: None,
                    yanked: release.yanked,
                    package: None,
                })
            })
            .collect::<Result<_, AdapterError>>()?;
        Ok(DocumentFacts {
            artifacts,
            download_prefixes: download_prefix(config).into_iter().collect(),
        })
    }

    fn render(
        &self,
        doc: &MetadataDoc<'_>,
        variant: &'static str,
        base: &Url,
    ) -> Result<Rendered, AdapterError> {
        if variant == CONFIG_VARIANT {
            // Keep what the upstream says besides `dl` and `api` (e.g. `auth-required` is
            // dropped too: clients authenticate to Cairn, not through it).
            let mut config: serde_json::Map<String, serde_json::Value> =
                serde_json::from_slice(doc.body)
                    .map_err(|e| AdapterError(format!("config.json: {e}")))?;
            config.remove("api");
            config.remove("auth-required");
            config.insert("dl".into(), format!("{base}crates").into());
            let body = serde_json::to_vec(&config).map_err(|e| AdapterError(e.to_string()))?;
            return Ok(Rendered {
                body: body.into(),
                content_type: "application/json",
            });
        }
        Ok(Rendered {
            body: bytes::Bytes::copy_from_slice(doc.body),
            content_type: "text/plain",
        })
    }

    /// The index file without the lines of refused versions.
    fn without(
        &self,
        doc: &MetadataDoc<'_>,
        refused: &dyn Fn(&str) -> bool,
    ) -> Result<Option<Vec<u8>>, AdapterError> {
        if doc.key == CONFIG_KEY {
            return Ok(None);
        }
        let releases = index::releases(doc.key, doc.body).map_err(AdapterError)?;
        let text = String::from_utf8_lossy(doc.body);
        let lines = text.lines().filter(|l| !l.trim().is_empty());
        let mut out = String::with_capacity(text.len());
        let mut dropped = false;
        // `releases` has one entry per non-empty line, in order.
        for (line, release) in lines.zip(&releases) {
            if refused(&artifact_key(&release.name, &release.version)) {
                dropped = true;
            } else {
                out.push_str(line);
                out.push('\n');
            }
        }
        Ok(dropped.then(|| out.into_bytes()))
    }

    /// cargo sends its token only to a registry whose `config.json` requires one.
    fn for_token_clients(
        &self,
        variant: &'static str,
        rendered: Rendered,
    ) -> Result<Rendered, AdapterError> {
        if variant != CONFIG_VARIANT {
            return Ok(rendered);
        }
        let mut config: serde_json::Map<String, serde_json::Value> =
            serde_json::from_slice(&rendered.body)
                .map_err(|e| AdapterError(format!("config.json: {e}")))?;
        config.insert("auth-required".into(), true.into());
        let body = serde_json::to_vec(&config).map_err(|e| AdapterError(e.to_string()))?;
        Ok(Rendered {
            body: body.into(),
            ..rendered
        })
    }
}

#[cfg(test)]
mod tests;
