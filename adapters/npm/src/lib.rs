//! Cairn's npm adapter: the npm registry API (npm, yarn, pnpm) over the mirror.
//!
//! Routes below `/npm/`:
//! - `{name}` and `@scope%2f{name}` / `@scope/{name}`: packuments, full or abbreviated by
//!   `Accept` (docs/protocols.md), with every `dist.tarball` pointing back at this node;
//! - `{name}/-/{file}.tgz`: tarballs, verified against the version's `dist.integrity` (sha512) or
//!   `dist.shasum` (sha1, very old packages);
//! - `{name}/{version}` and `{name}/{dist-tag}` (scoped names in both spellings): one version's
//!   full manifest, cut from the packument (same key, same freshness), tarball rewritten;
//! - `-/package/{name}/dist-tags`: the packument's `dist-tags`;
//! - `-/npm/v1/keys` and `-/npm/v1/attestations/{name}@{version}` (what `npm audit
//!   signatures` reads): documents of their own, cached and served as upstream sent them (a
//!   packument's `dist.attestations.url` is pointed here);
//! - `-/ping`: answered locally; the audit endpoints npm uses (`POST
//!   -/npm/v1/security/advisories/bulk`, `…/audits/quick`, `…/audits`) and `GET -/v1/search`:
//!   passed through to upstream, never cached. These exact paths only: anything else under
//!   `-/` is not routed;
//! - writes (`PUT`, `DELETE`, `POST` but the audit passthroughs) and account endpoints
//!   (`-/whoami`, `-/user/…`, `-/v1/login`, …): refused in npm's error format, saying this is
//!   a read-only mirror and where to publish instead.

pub mod lockfile;
pub mod name;
pub mod packument;

use bytes::Bytes;
use cairn_ecosystem::{
    AdapterError, ArtifactRoute, BadRequest, DocumentFacts, Ecosystem, Listing, MetadataDoc,
    MetadataRoute, Method, PackageScope, Rendered, Request, Route, StatusCode,
};
use url::Url;

use crate::name::{PackageName, check_file, decode};

/// The media type of abbreviated packuments.
pub const ABBREVIATED: &str = "application/vnd.npm.install-v1+json";

const FULL_VARIANT: &str = "full";
const ABBREVIATED_VARIANT: &str = "abbreviated";
const DIST_TAGS_VARIANT: &str = "dist-tags";
/// One version's manifest (a [`Route::Part`] of the packument).
const VERSION_VARIANT: &str = "version";
/// Longest version or dist-tag accepted in `/{name}/{part}`.
const MAX_PART: usize = 256;

/// A version or dist-tag as a path segment: printable ASCII without separators or quoting, at
/// most [`MAX_PART`] bytes. Semver's characters and every tag npm's own tooling makes fit.
fn check_part(part: &str) -> Result<(), String> {
    if part.is_empty() || part.len() > MAX_PART {
        return Err(format!(
            "npm version or dist-tag must be 1 to {MAX_PART} bytes, got {}",
            part.len()
        ));
    }
    if let Some(c) = part
        .chars()
        .find(|c| !(c.is_ascii_alphanumeric() || matches!(c, '.' | '-' | '_' | '+' | '~')))
    {
        return Err(format!(
            "npm version or dist-tag {part:?} has the character {c:?}"
        ));
    }
    Ok(())
}

/// The npm ecosystem.
#[derive(Clone, Copy, Debug, Default)]
pub struct Npm;

/// True when `accept` prefers the abbreviated form over full JSON (by q-value).
pub fn wants_abbreviated(accept: Option<&str>) -> bool {
    let Some(accept) = accept else {
        return false;
    };
    let (mut corgi, mut json) = (0.0f32, 0.0f32);
    for (media, q) in cairn_ecosystem::negotiate::q_values(accept) {
        if media == ABBREVIATED {
            corgi = corgi.max(q);
        } else if media == "application/json" {
            json = json.max(q);
        }
    }
    corgi > 0.0 && corgi >= json
}

fn bad(e: impl ToString) -> BadRequest {
    BadRequest(e.to_string())
}

fn metadata_route(name: &PackageName, variant: &'static str) -> MetadataRoute {
    MetadataRoute {
        key: name.to_string(),
        upstream_path: name.upstream_path(),
        variant,
        upstream_accept: None,
        context: None,
    }
}

/// The registry's signing keys (`GET -/npm/v1/keys`), a document of their own. No package name
/// starts with `-`, so neither this key nor [`ATTESTATIONS_PREFIX`] can be a packument's.
const KEYS_KEY: &str = "-/npm/v1/keys";
/// Before `NAME@VERSION` (the name unencoded): the attestations of one version, a document.
const ATTESTATIONS_PREFIX: &str = "-/npm/v1/attestations/";
/// How the provenance documents render: as upstream sent them.
const AS_SENT_VARIANT: &str = "as-sent";
/// Largest provenance document accepted (attestation bundles are a few kilobytes each).
const MAX_PROVENANCE: usize = 4 << 20;

/// The route of a provenance document (the signing keys, one version's attestations): cached
/// and served as metadata, so `npm audit signatures` works offline too, its bytes as sent.
fn provenance_route(key: String, upstream_path: String) -> MetadataRoute {
    MetadataRoute {
        key,
        upstream_path,
        variant: AS_SENT_VARIANT,
        upstream_accept: None,
        context: None,
    }
}

/// True for the keys of the provenance documents ([`provenance_route`]), which are not
/// packuments.
fn is_provenance(key: &str) -> bool {
    key.starts_with("-/")
}

/// Largest packument accepted: the biggest real ones are a few tens of megabytes.
pub const MAX_PACKUMENT: u64 = 128 << 20;

/// npm's account endpoints (`npm whoami`, `login`, `adduser`, `token`, `profile`, `org`,
/// `team`): a read-only mirror has no accounts.
fn is_account_endpoint(path: &str) -> bool {
    let Some(api) = path.strip_prefix("-/") else {
        return false;
    };
    matches!(api, "whoami" | "v1/login" | "npm/v1/user" | "npm/v1/tokens")
        || ["user/", "v1/login/", "npm/v1/tokens/", "org/", "team/"]
            .iter()
            .any(|prefix| api.starts_with(prefix))
}

/// The answer to a write (`npm publish`, `unpublish`, `deprecate`, `dist-tag add`, `owner`,
/// `star`, `access`) or an account request: 405 for a write, 404 for reading an account, each
/// with a message npm prints after the status (`npm error 405 Method Not Allowed - PUT URL -
/// MESSAGE`) that says where to go instead. Not 401: npm then prints its own text, not ours.
fn refused(request: &Request<'_>, account: bool) -> Route {
    let is_read = matches!(*request.method, Method::GET | Method::HEAD);
    let upstream = cairn_ecosystem::UPSTREAM_MARK;
    let message = if account {
        format!(
            "this registry is a read-only Cairn mirror of {upstream} and has no accounts: log in \
             to and publish on {upstream} itself (npm login --registry {upstream})"
        )
    } else {
        format!(
            "this registry is a read-only Cairn mirror of {upstream}: {} /{} changes nothing \
             here; publish, deprecate or tag on {upstream} itself (npm publish --registry \
             {upstream}), and Cairn picks the change up when its copy expires",
            request.method, request.path
        )
    };
    Route::Refused {
        status: if is_read {
            StatusCode::NOT_FOUND
        } else {
            StatusCode::METHOD_NOT_ALLOWED
        },
        message,
    }
}

impl Npm {
    /// The route of a request that reads (any method: the server refuses a method a route
    /// does not take).
    fn read_route(&self, request: &Request<'_>) -> Result<Option<Route>, BadRequest> {
        let path = request.path;
        if let Some(api) = path.strip_prefix("-/") {
            return Ok(match api {
                "ping" => Some(Route::Local {
                    content_type: "application/json",
                    body: Bytes::from_static(b"{}"),
                }),
                _ if api.starts_with("package/") && api.ends_with("/dist-tags") => {
                    // `package/dist-tags` matches both ends with nothing between: no name.
                    let raw = api
                        .get("package/".len()..api.len() - "/dist-tags".len())
                        .unwrap_or_default();
                    let name = PackageName::parse(&decode(raw).map_err(bad)?).map_err(bad)?;
                    Some(Route::Metadata(metadata_route(&name, DIST_TAGS_VARIANT)))
                }
                "npm/v1/security/advisories/bulk"
                | "npm/v1/security/audits/quick"
                | "npm/v1/security/audits" => Some(Route::Passthrough {
                    method: Method::POST,
                    upstream_path: path.to_owned(),
                }),
                "npm/v1/keys" => Some(Route::Metadata(provenance_route(
                    KEYS_KEY.to_owned(),
                    KEYS_KEY.to_owned(),
                ))),
                _ if api.starts_with("npm/v1/attestations/") => {
                    // `NAME@VERSION`, the name scoped or not, in either spelling.
                    let spec = decode(&api["npm/v1/attestations/".len()..]).map_err(bad)?;
                    let at = spec
                        .char_indices()
                        .skip(1)
                        .find(|&(_, c)| c == '@')
                        .map(|(i, _)| i)
                        .ok_or_else(|| {
                            bad(format!("attestations of {spec:?}: expected NAME@VERSION"))
                        })?;
                    let name = PackageName::parse(&spec[..at]).map_err(bad)?;
                    let version = &spec[at + 1..];
                    cairn_ecosystem::check_version(version)?;
                    // The name's slash stays literal upstream, as npm sends it.
                    Some(Route::Metadata(provenance_route(
                        format!("{ATTESTATIONS_PREFIX}{name}@{version}"),
                        format!("{ATTESTATIONS_PREFIX}{}@{version}", name.path()),
                    )))
                }
                "v1/search" => {
                    let upstream_path = match request.query {
                        Some(q) => format!("{path}?{q}"),
                        None => path.to_owned(),
                    };
                    Some(Route::Passthrough {
                        method: Method::GET,
                        upstream_path,
                    })
                }
                _ => None,
            });
        }
        if let Some((raw_name, raw_file)) = path.split_once("/-/") {
            let name = PackageName::parse(&decode(raw_name).map_err(bad)?).map_err(bad)?;
            let file = decode(raw_file).map_err(bad)?;
            check_file(&file).map_err(bad)?;
            return Ok(Some(Route::Artifact(ArtifactRoute {
                key: packument::artifact_key(&name, &file),
                listed_by: Listing::Document(metadata_route(&name, FULL_VARIANT)),
                derive: None,
                listing: false,
            })));
        }
        let decoded = decode(path).map_err(bad)?;
        let slashes = decoded.matches('/').count();
        let name_slashes = usize::from(decoded.starts_with('@'));
        if slashes > name_slashes {
            if decoded.split('/').any(|s| s == ".." || s == ".") {
                return Err(bad(name::NameError::DotSegment(decoded)));
            }
            // `{name}/{version}` or `{name}/{dist-tag}`: one version's manifest, cut from the
            // packument. Deeper paths are not npm's.
            let Some((raw_name, part)) = decoded.rsplit_once('/') else {
                return Ok(None);
            };
            if slashes > name_slashes + 1 {
                return Ok(None);
            }
            let name = PackageName::parse(raw_name).map_err(bad)?;
            check_part(part).map_err(bad)?;
            return Ok(Some(Route::Part {
                document: metadata_route(&name, VERSION_VARIANT),
                part: part.to_owned(),
            }));
        }
        let name = PackageName::parse(&decoded).map_err(bad)?;
        let variant = if wants_abbreviated(request.accept) {
            ABBREVIATED_VARIANT
        } else {
            FULL_VARIANT
        };
        Ok(Some(Route::Metadata(metadata_route(&name, variant))))
    }
}

impl Ecosystem for Npm {
    fn name(&self) -> &str {
        "npm"
    }

    fn max_document_bytes(&self) -> u64 {
        MAX_PACKUMENT
    }

    fn route(&self, request: &Request<'_>) -> Result<Option<Route>, BadRequest> {
        let is_read = matches!(*request.method, Method::GET | Method::HEAD);
        let account = is_account_endpoint(request.path);
        if account || !is_read {
            // A passthrough keeps its one method; every other write, and every account
            // endpoint, is refused in npm's error format.
            if !account
                && let Ok(Some(route @ Route::Passthrough { .. })) = self.read_route(request)
                && matches!(&route, Route::Passthrough { method, .. } if method == request.method)
            {
                return Ok(Some(route));
            }
            return Ok(Some(refused(request, account)));
        }
        self.read_route(request)
    }

    fn key_route(&self, key: &str) -> Result<Option<Route>, BadRequest> {
        self.read_route(&Request::get(key))
    }

    /// A package is its packument (every variant of it is cut from the one document) and the
    /// tarballs under `NAME/-/`; a version is its tarball, `NAME/-/UNSCOPED-VERSION.tgz` (the
    /// name every npm registry gives it), and the packument stays.
    fn package_scope(&self, name: &str, version: Option<&str>) -> Result<PackageScope, BadRequest> {
        let name = PackageName::parse(name).map_err(bad)?;
        let mut scope = PackageScope::whole(&name.to_string(), format!("{}/-/", name.path()));
        if let Some(version) = version {
            cairn_ecosystem::check_version(version)?;
            let file = format!("{}-{version}.tgz", name.unscoped());
            check_file(&file).map_err(bad)?;
            let key = packument::artifact_key(&name, &file);
            scope.documents.clear();
            scope.owns = Box::new(move |candidate| candidate == key);
        }
        Ok(scope)
    }

    fn routing_name<'k>(&self, key: &'k str) -> &'k str {
        // An attestations document routes as its package does; the keys, as no package.
        match key.strip_prefix(ATTESTATIONS_PREFIX) {
            Some(spec) => spec
                .char_indices()
                .skip(1)
                .find(|&(_, c)| c == '@')
                .map_or(spec, |(at, _)| &spec[..at]),
            None => key,
        }
    }

    fn read(&self, doc: &MetadataDoc<'_>) -> Result<DocumentFacts, AdapterError> {
        if is_provenance(doc.key) {
            return cairn_ecosystem::check_json_object(doc.key, doc.body, MAX_PROVENANCE)
                .map(|()| DocumentFacts::artifacts(Vec::new()));
        }
        let name = PackageName::parse(doc.key).map_err(|e| AdapterError(e.to_string()))?;
        packument::artifacts(&name, doc.url, doc.body).map(DocumentFacts::artifacts)
    }

    fn without(
        &self,
        doc: &MetadataDoc<'_>,
        refused: &dyn Fn(&str) -> bool,
    ) -> Result<Option<Vec<u8>>, AdapterError> {
        if is_provenance(doc.key) {
            return Ok(None);
        }
        let name = PackageName::parse(doc.key).map_err(|e| AdapterError(e.to_string()))?;
        packument::without(&name, doc.url, doc.body, refused)
    }

    fn render(
        &self,
        doc: &MetadataDoc<'_>,
        variant: &'static str,
        base: &Url,
    ) -> Result<Rendered, AdapterError> {
        if variant == AS_SENT_VARIANT {
            cairn_ecosystem::check_json_object(doc.key, doc.body, MAX_PROVENANCE)?;
            return Ok(Rendered {
                body: Bytes::copy_from_slice(doc.body),
                content_type: "application/json",
            });
        }
        let name = PackageName::parse(doc.key).map_err(|e| AdapterError(e.to_string()))?;
        if variant == DIST_TAGS_VARIANT {
            return Ok(Rendered {
                body: Bytes::from(packument::dist_tags(&name, doc.body)?),
                content_type: "application/json",
            });
        }
        if variant == VERSION_VARIANT {
            return Err(AdapterError(format!(
                "{name}: the {VERSION_VARIANT} rendering needs a version or dist-tag"
            )));
        }
        let abbreviated = variant == ABBREVIATED_VARIANT;
        let body = packument::render(&name, doc.url, doc.body, abbreviated, base)?;
        Ok(Rendered {
            body: Bytes::from(body),
            content_type: if abbreviated {
                ABBREVIATED
            } else {
                "application/json"
            },
        })
    }

    fn render_part(
        &self,
        doc: &MetadataDoc<'_>,
        variant: &'static str,
        part: &str,
        base: &Url,
    ) -> Result<Option<Rendered>, AdapterError> {
        if variant != VERSION_VARIANT {
            return Ok(None);
        }
        let name = PackageName::parse(doc.key).map_err(|e| AdapterError(e.to_string()))?;
        Ok(
            packument::version_manifest(&name, doc.url, doc.body, part, base)?.map(|body| {
                Rendered {
                    body: Bytes::from(body),
                    content_type: "application/json",
                }
            }),
        )
    }
}

#[cfg(test)]
mod tests;
