//! Cairn's PyPI adapter: the simple repository API (docs/protocols.md) for pip and uv.
//!
//! Routes below `/pypi/`:
//! - `simple/{project}/`: the project page, PEP 691 JSON or PEP 503 HTML by `Accept` (q-values;
//!   `?format=` overrides; HTML when nothing is asked). Other spellings of the name, and the URL
//!   without its trailing `/`, redirect to the normalised one.
//! - `simple/`: the root, listing the projects this node holds (not upstream's list of every
//!   project), JSON or HTML as for pages;
//! - `files/{project}/{filename}`: distribution files, verified against the page's sha256
//!   (their flat CID);
//! - `files/{project}/{wheel}.metadata`: PEP 658 core metadata: upstream's where it publishes
//!   it (verified against the page's hash), else extracted from the verified wheel by the mirror
//!   (a derived artifact), so every wheel's page entry advertises it and uv needs no range reads.
//! - `integrity/{project}/{version}/{filename}/provenance`: a file's PEP 740 provenance from the
//!   Integrity API at the index's root, a cached document served as upstream sent it; pages
//!   point their files' `provenance` (`data-provenance` in HTML) here.
//!
//! Pages are fetched from upstream as JSON (the richer form: sizes, upload times) and rendered
//! in either form. The file host comes from the page's own file URLs: its origin is declared to
//! the mirror as a download location.

pub mod lockfile;
pub mod name;
pub mod page;
pub mod select;
pub mod tags;
pub mod wheel;

use cairn_ecosystem::digest::{Algorithm, Digest};
use cairn_ecosystem::{
    AdapterError, ArtifactRef, ArtifactRoute, BadRequest, Derive, DocumentFacts, Ecosystem,
    Listing, MetadataDoc, MetadataRoute, PackageScope, Rendered, Request, Route,
};
use percent_encoding::utf8_percent_encode;
use url::Url;

use crate::name::{check_file, check_name, decode, normalize};

const JSON_VARIANT: &str = "json";
/// A file's PEP 740 provenance, served as upstream sent it.
const PROVENANCE_VARIANT: &str = "provenance";
/// Before `PROJECT/VERSION/FILENAME`: the key of a file's provenance, a document of its own.
/// No project name has a `/`, so no page's key is one of these.
const INTEGRITY_PREFIX: &str = "integrity/";
/// The Integrity API's media type.
pub const INTEGRITY_JSON: &str = "application/vnd.pypi.integrity.v1+json";
/// Largest provenance document accepted (a few attestations of a few kilobytes each).
const MAX_PROVENANCE: usize = 4 << 20;
const HTML_VARIANT: &str = "html";
/// HTML asked for as plain `text/html` (or not asked for at all), answered with that type.
const TEXT_HTML_VARIANT: &str = "text-html";

/// What Cairn asks upstream for: JSON first, HTML for indexes that only speak that.
const UPSTREAM_ACCEPT: &str = "application/vnd.pypi.simple.v1+json, application/vnd.pypi.simple.v1+html;q=0.2, text/html;q=0.01";

/// The PyPI ecosystem.
#[derive(Clone, Copy, Debug, Default)]
pub struct Pypi;

fn bad(e: impl ToString) -> BadRequest {
    BadRequest(e.to_string())
}

/// The representation `accept` (or `?format=`) asks for.
pub fn negotiate(accept: Option<&str>, query: Option<&str>) -> &'static str {
    if let Some(format) = query
        .into_iter()
        .flat_map(|q| q.split('&'))
        .find_map(|kv| kv.strip_prefix("format="))
    {
        let format = decode(format).unwrap_or_default();
        return variant_of(&format).unwrap_or(TEXT_HTML_VARIANT);
    }
    let Some(accept) = accept else {
        return TEXT_HTML_VARIANT;
    };
    let mut best: Option<(f32, usize, &'static str)> = None;
    for (media, q) in cairn_ecosystem::negotiate::q_values(accept) {
        let Some(variant) = variant_of(&media) else {
            continue;
        };
        // Among equal q-values, prefer JSON, then v1 HTML, then text/html.
        let rank = match variant {
            JSON_VARIANT => 0,
            HTML_VARIANT => 1,
            _ => 2,
        };
        if q > 0.0 && best.is_none_or(|(bq, br, _)| q > bq || (q == bq && rank < br)) {
            best = Some((q, rank, variant));
        }
    }
    best.map_or(TEXT_HTML_VARIANT, |(_, _, v)| v)
}

fn variant_of(media: &str) -> Option<&'static str> {
    match media {
        "application/vnd.pypi.simple.v1+json" | "application/vnd.pypi.simple.latest+json" => {
            Some(JSON_VARIANT)
        }
        "application/vnd.pypi.simple.v1+html" | "application/vnd.pypi.simple.latest+html" => {
            Some(HTML_VARIANT)
        }
        "text/html" | "*/*" => Some(TEXT_HTML_VARIANT),
        _ => None,
    }
}

/// `PROJECT/VERSION/FILENAME/provenance` (below `integrity/`): one file's PEP 740 provenance
/// on the Integrity API, fetched from the index's root.
fn provenance_route(rest: &str) -> Result<Option<MetadataRoute>, BadRequest> {
    let Some(spec) = rest.strip_suffix("/provenance") else {
        return Ok(None);
    };
    let mut parts = spec.splitn(3, '/');
    let (Some(project), Some(version), Some(file)) = (parts.next(), parts.next(), parts.next())
    else {
        return Ok(None);
    };
    let name = decode(project).map_err(bad)?;
    check_name(&name).map_err(bad)?;
    let version = decode(version).map_err(bad)?;
    cairn_ecosystem::check_version(&version)?;
    let file = decode(file).map_err(bad)?;
    check_file(&file).map_err(bad)?;
    let project = normalize(&name);
    let encode = |s: &str| utf8_percent_encode(s, SEGMENT).to_string();
    Ok(Some(MetadataRoute {
        key: format!("{INTEGRITY_PREFIX}{project}/{version}/{file}"),
        upstream_path: format!(
            "/integrity/{project}/{}/{}/provenance",
            encode(&version),
            encode(&file)
        ),
        variant: PROVENANCE_VARIANT,
        upstream_accept: Some(INTEGRITY_JSON),
        context: None,
    }))
}

/// What a path segment sent upstream encodes: all but unreserved characters.
const SEGMENT: &percent_encoding::AsciiSet = &percent_encoding::NON_ALPHANUMERIC
    .remove(b'-')
    .remove(b'.')
    .remove(b'_')
    .remove(b'~');

fn page_route(project: &str, variant: &'static str) -> MetadataRoute {
    MetadataRoute {
        key: project.to_owned(),
        upstream_path: format!("{project}/"),
        variant,
        upstream_accept: Some(UPSTREAM_ACCEPT),
        context: None,
    }
}

/// Index key of a file: `{normalised project}/{filename}`.
pub fn artifact_key(project: &str, filename: &str) -> String {
    format!("{project}/{filename}")
}

/// Source distribution extensions, longest first.
const SDIST_EXTENSIONS: &[&str] = &[
    ".tar.gz", ".tar.bz2", ".tar.xz", ".tar.Z", ".tgz", ".zip", ".tar",
];

/// The version a distribution file of `project` (normalised) names: a wheel's or egg's second
/// `-` field (`NAME-VERSION-…`), a source distribution's tail (`NAME-VERSION.tar.gz`, whose
/// name may hold `-`), a `.metadata` file's wheel's. `None` when the name is not one of those,
/// or names another project.
pub fn file_version<'a>(project: &str, file: &'a str) -> Option<&'a str> {
    let file = file.strip_suffix(".metadata").unwrap_or(file);
    if let Some(stem) = file
        .strip_suffix(".whl")
        .or_else(|| file.strip_suffix(".egg"))
    {
        let mut fields = stem.split('-');
        let (name, version) = (fields.next()?, fields.next()?);
        return (normalize(name) == project).then_some(version);
    }
    let stem = SDIST_EXTENSIONS
        .iter()
        .find_map(|ext| file.strip_suffix(ext))?;
    let (name, version) = stem.rsplit_once('-')?;
    (normalize(name) == project && !version.is_empty()).then_some(version)
}

/// The files a page lists (each with its core metadata when the page gives that a hash) and
/// the origins they and their provenance are fetched from.
fn read_files(
    doc: &MetadataDoc<'_>,
    page: &page::raw::Page<'_>,
) -> Result<DocumentFacts, AdapterError> {
    use page::raw::{core_metadata, sha256_of, text, text_of, unsigned, yanked};
    let mut out = Vec::new();
    let mut origins: Vec<Url> = Vec::new();
    for file in &page.files {
        // Where its provenance lives (PEP 740's Integrity API, at the index's root).
        if let Some(at) = text_of(file, "provenance")
            .and_then(|p| doc.url.join(&p).ok())
            .filter(|p| page::integrity_path(p.as_str()).is_some())
        {
            let mut prefix = at;
            prefix.set_path("/integrity/");
            prefix.set_query(None);
            prefix.set_fragment(None);
            if !origins.contains(&prefix) {
                origins.push(prefix);
            }
        }
        let filename = text_of(file, "filename").unwrap_or_default();
        let href = text_of(file, "url").unwrap_or_default();
        let url = page::resolve(doc.url, &href)
            .map_err(|e| AdapterError(format!("page of {}: url of {filename}: {e}", doc.key)))?;
        let mut origin = url.clone();
        origin.set_path("/");
        origin.set_query(None);
        if !origins.contains(&origin) {
            origins.push(origin);
        }
        // A file without a sha256 cannot be verified, so it is never fetched (a 404).
        let Some(digest) = sha256_of(file.get("hashes")).and_then(|h| sha256_digest(&h)) else {
            continue;
        };
        // Its version from its name (wheel or sdist), its publication from PEP 700's
        // `upload-time`.
        let version = tags::parse_wheel(&filename)
            .map(|w| w.version)
            .or_else(|| tags::parse_sdist(doc.key, &filename).map(|(v, _)| v));
        let published = file
            .get("upload-time")
            .and_then(text)
            .and_then(|t| cairn_ecosystem::time::parse_rfc3339(&t));
        let yanked = yanked(file);
        if let Some(meta) = sha256_of(core_metadata(file)).and_then(|h| sha256_digest(&h)) {
            let mut meta_url = url.clone();
            meta_url.set_path(&format!("{}.metadata", url.path()));
            out.push(ArtifactRef {
                version: version.clone(),
                published,
                key: artifact_key(doc.key, &format!("{filename}.metadata")),
                url: meta_url,
                digest: meta,
                size: None,
                yanked,
                package: None,
            });
        }
        out.push(ArtifactRef {
            version,
            published,
            key: artifact_key(doc.key, &filename),
            url,
            digest,
            size: file.get("size").and_then(unsigned),
            yanked,
            package: None,
        });
    }
    Ok(DocumentFacts {
        artifacts: out,
        download_prefixes: origins,
    })
}

fn sha256_digest(hex_digest: &str) -> Option<Digest> {
    Digest::new(Algorithm::Sha256, hex::decode(hex_digest).ok()?).ok()
}

/// Largest project page accepted: those of projects with thousands of files are a few
/// megabytes.
pub const MAX_PAGE: u64 = 64 << 20;

impl Ecosystem for Pypi {
    fn name(&self) -> &str {
        "pypi"
    }

    fn max_document_bytes(&self) -> u64 {
        MAX_PAGE
    }

    fn route(&self, request: &Request<'_>) -> Result<Option<Route>, BadRequest> {
        let path = request.path;
        if path.split('/').any(|s| s == ".." || s == ".") {
            return Err(bad(format!("path /{path} has a dot segment")));
        }
        match path {
            // The root: upstream's lists every project (hundreds of thousands, and no
            // installer reads it); this node's lists the projects it holds.
            "simple/" => {
                return Ok(Some(Route::Held {
                    variant: negotiate(request.accept, request.query),
                }));
            }
            "simple" => {
                return Ok(Some(Route::Redirect {
                    path: "simple/".into(),
                }));
            }
            _ => {}
        }
        if let Some(rest) = path.strip_prefix("simple/") {
            let (raw, trailing) = match rest.strip_suffix('/') {
                Some(raw) => (raw, true),
                None => (rest, false),
            };
            if raw.is_empty() {
                // `simple//` and the like.
                return Ok(None);
            }
            let name = decode(raw).map_err(bad)?;
            check_name(&name).map_err(bad)?;
            let project = normalize(&name);
            if !trailing || project != name {
                return Ok(Some(Route::Redirect {
                    path: format!("simple/{project}/"),
                }));
            }
            let variant = negotiate(request.accept, request.query);
            return Ok(Some(Route::Metadata(page_route(&project, variant))));
        }
        if let Some(rest) = path.strip_prefix(INTEGRITY_PREFIX) {
            return provenance_route(rest).map(|route| route.map(Route::Metadata));
        }
        if let Some(rest) = path.strip_prefix("files/") {
            let Some((raw_project, raw_file)) = rest.split_once('/') else {
                return Ok(None);
            };
            let name = decode(raw_project).map_err(bad)?;
            check_name(&name).map_err(bad)?;
            let file = decode(raw_file).map_err(bad)?;
            check_file(&file).map_err(bad)?;
            let project = normalize(&name);
            let derive = file
                .strip_suffix(".metadata")
                .filter(|wheel| wheel.ends_with(".whl"))
                .map(|wheel| Derive {
                    source: artifact_key(&project, wheel),
                    function: wheel::metadata,
                });
            return Ok(Some(Route::Artifact(ArtifactRoute {
                key: artifact_key(&project, &file),
                listed_by: Listing::Document(page_route(&project, JSON_VARIANT)),
                derive,
                listing: false,
            })));
        }
        Ok(None)
    }

    /// A project is its page and every file under `PROJECT/` (the `.metadata` files derived
    /// from wheels with them); a version is the files whose names carry it
    /// ([`file_version`]), and the page stays.
    fn package_scope(&self, name: &str, version: Option<&str>) -> Result<PackageScope, BadRequest> {
        check_name(name).map_err(bad)?;
        let project = normalize(name);
        let mut scope = PackageScope::whole(&project, format!("{project}/"));
        if let Some(version) = version {
            cairn_ecosystem::check_version(version)?;
            let (project, version) = (project.clone(), version.to_ascii_lowercase());
            scope.documents.clear();
            scope.owns = Box::new(move |key| {
                key.strip_prefix(&project)
                    .and_then(|rest| rest.strip_prefix('/'))
                    .and_then(|file| file_version(&project, file))
                    .is_some_and(|found| found.eq_ignore_ascii_case(&version))
            });
        }
        Ok(scope)
    }

    fn client_root(&self) -> &'static str {
        "simple/"
    }

    /// The simple root (PEP 503 HTML or PEP 691 JSON) listing the projects this node holds.
    fn render_held(
        &self,
        keys: &[String],
        variant: &'static str,
        _base: &Url,
    ) -> Result<Rendered, AdapterError> {
        // Projects only: the provenance documents held are not pages.
        let keys: Vec<String> = keys
            .iter()
            .filter(|k| !k.starts_with(INTEGRITY_PREFIX))
            .cloned()
            .collect();
        let keys = &keys[..];
        if variant == JSON_VARIANT {
            return Ok(Rendered {
                body: page::root_json(keys).into(),
                content_type: page::JSON,
            });
        }
        Ok(Rendered {
            body: page::root_html(keys).into_bytes().into(),
            content_type: if variant == HTML_VARIANT {
                page::HTML
            } else {
                "text/html; charset=utf-8"
            },
        })
    }

    /// Keys are not paths: `{project}` is a page, `{project}/{file}` a file.
    fn key_route(&self, key: &str) -> Result<Option<Route>, BadRequest> {
        // A provenance key has three slashes; a file's key one (no file name has a slash).
        let path = match key.split_once('/') {
            _ if key.starts_with(INTEGRITY_PREFIX) && key.matches('/').count() == 3 => {
                format!("{key}/provenance")
            }
            Some((project, file)) => format!("files/{project}/{file}"),
            None => format!("simple/{key}/"),
        };
        self.route(&Request::get(&path))
    }

    fn routing_name<'k>(&self, key: &'k str) -> &'k str {
        // A file's provenance routes as its project does.
        match key.strip_prefix(INTEGRITY_PREFIX) {
            Some(spec) => spec.split('/').next().unwrap_or(spec),
            None => key,
        }
    }

    /// The page's files with their sha256 (and their upstream core metadata), and the origins
    /// of the file URLs (the file host) and of their provenance as download locations, from
    /// one parse of the page; a provenance document is checked and lists nothing.
    fn read(&self, doc: &MetadataDoc<'_>) -> Result<DocumentFacts, AdapterError> {
        if doc.key.starts_with(INTEGRITY_PREFIX) {
            return cairn_ecosystem::check_json_object(doc.key, doc.body, MAX_PROVENANCE)
                .map(|()| DocumentFacts::default());
        }
        // Each URL is made absolute once, here.
        page::raw::with_page(doc.key, doc.body, |page| read_files(doc, page))
            .map_err(AdapterError)?
    }

    /// The page (as PEP 691 JSON) without the refused files, and without the versions (PEP
    /// 700's `versions`) no file is left of.
    fn without(
        &self,
        doc: &MetadataDoc<'_>,
        refused: &dyn Fn(&str) -> bool,
    ) -> Result<Option<Vec<u8>>, AdapterError> {
        if doc.key.starts_with(INTEGRITY_PREFIX) {
            return Ok(None);
        }
        let mut page = page::parse(doc.key, doc.url, doc.body).map_err(AdapterError)?;
        let version_of = |filename: &str| {
            tags::parse_wheel(filename)
                .map(|w| w.version)
                .or_else(|| tags::parse_sdist(doc.key, filename).map(|(v, _)| v))
        };
        let Some(files) = page.get_mut("files").and_then(|f| f.as_array_mut()) else {
            return Ok(None);
        };
        let before = files.len();
        let mut gone = Vec::new();
        files.retain(|file| {
            let filename = file
                .get("filename")
                .and_then(|f| f.as_str())
                .unwrap_or_default();
            let keep = !refused(&artifact_key(doc.key, filename));
            if !keep {
                gone.extend(version_of(filename));
            }
            keep
        });
        if files.len() == before {
            return Ok(None);
        }
        let left: Vec<String> = files
            .iter()
            .filter_map(|f| f.get("filename").and_then(|n| n.as_str()))
            .filter_map(version_of)
            .collect();
        if let Some(versions) = page.get_mut("versions").and_then(|v| v.as_array_mut()) {
            versions.retain(|v| {
                v.as_str().is_none_or(|v| {
                    !gone.iter().any(|g| tags::same_version(g, v))
                        || left.iter().any(|l| tags::same_version(l, v))
                })
            });
        }
        serde_json::to_vec(&page)
            .map(Some)
            .map_err(|e| AdapterError(format!("page of {}: {e}", doc.key)))
    }

    fn render(
        &self,
        doc: &MetadataDoc<'_>,
        variant: &'static str,
        base: &Url,
    ) -> Result<Rendered, AdapterError> {
        if variant == PROVENANCE_VARIANT {
            cairn_ecosystem::check_json_object(doc.key, doc.body, MAX_PROVENANCE)?;
            return Ok(Rendered {
                body: bytes::Bytes::copy_from_slice(doc.body),
                content_type: INTEGRITY_JSON,
            });
        }
        let files_base = format!("{base}files/{}/", doc.key);
        let integrity_base = format!("{base}{INTEGRITY_PREFIX}");
        if variant == JSON_VARIANT {
            // Every file URL is replaced: none needs resolving.
            let body = page::raw::with_page(doc.key, doc.body, |page| {
                page::raw::render_json(page, &files_base, &integrity_base)
            })
            .map_err(AdapterError)?;
            return Ok(Rendered {
                body: body.into(),
                content_type: page::JSON,
            });
        }
        let mut page = page::parse_unresolved(doc.key, doc.body).map_err(AdapterError)?;
        page::rewrite(&mut page, &files_base, &integrity_base);
        page::advertise_wheel_metadata(&mut page);
        Ok(Rendered {
            body: page::to_html(&page).into_bytes().into(),
            content_type: if variant == HTML_VARIANT {
                page::HTML
            } else {
                "text/html; charset=utf-8"
            },
        })
    }
}

#[cfg(test)]
mod tests;
