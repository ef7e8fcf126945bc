//! The HTTP front: hyper 1 through axum. Routes are dispatched on the *raw* path (npm's
//! `@scope%2fname` must not be decoded by a router) to the ecosystem named by the first segment;
//! `/healthz`, `/metrics`, `/api/v1/status` and `/` are Cairn's own.
//!
//! Responses: metadata carries a strong ETag (answered with 304), `Vary: Accept`, and `Age` plus
//! a `Warning` when it is stale; artifacts are immutable (`Cache-Control: immutable`, ETag = flat
//! CID), served from their flat file with single-range support, or streamed from a download under
//! way. Errors are JSON `{"error": "…"}` with the status [`Error::status`] gives.

use std::borrow::Cow;
use std::sync::Arc;

use axum::Router;
use axum::body::Body;
use axum::extract::State;
use axum::response::{IntoResponse, Response};
use bytes::Bytes;
use futures_util::StreamExt;
use http::header::{self, HeaderMap, HeaderValue};
use http::{Method, StatusCode};
use url::Url;

use crate::ecosystem::{ArtifactRoute, MetadataRoute, Request, Route};
use crate::engine::download::Download;
use crate::engine::{
    ArtifactBody, CachedArtifact, Keep, MetadataHit, Mirror, Registered, http_date, now_ms,
};
use crate::error::Error;

/// A request header: `committed` makes the body of a download under way end only once the
/// file is in the index (not just verified), as `cairn prefetch` asks so that an export right
/// after it finds everything. It only ever delays the asker's own response.
pub const WAIT_HEADER: &str = "cairn-wait";

/// Largest request body forwarded upstream (npm audit reports).
const MAX_FORWARD_BODY: usize = 32 << 20;
/// Largest answer relayed from upstream for a passthrough request.
const MAX_PASSTHROUGH_ANSWER: u64 = 32 << 20;
/// Rendered documents smaller than this are never gzipped.
const GZIP_MIN: usize = 1024;
/// Cached files up to this size are read in one go; larger ones are streamed.
const READ_WHOLE: u64 = 1 << 20;

/// The router serving every route of `cairn serve`.
pub fn router(mirror: Mirror) -> Router {
    Router::new().fallback(dispatch).with_state(mirror)
}

pub use crate::accept::{ConnectionLimits, serve};

impl IntoResponse for Error {
    fn into_response(self) -> Response {
        error_response(self.status(), &public_message(&self))
    }
}

/// What a client is told: the error's message, except that the store's own failures name no
/// path of the data directory (the log has them).
fn public_message(error: &Error) -> String {
    match error {
        Error::Store(e) => {
            tracing::error!("{e}");
            e.without_path()
        }
        Error::DigestMismatch(e) => e.without_path(),
        Error::Shared(inner) => public_message(inner),
        other => other.to_string(),
    }
}

pub(crate) fn error_response(status: StatusCode, message: &str) -> Response {
    let body = serde_json::json!({ "error": message }).to_string();
    (status, [(header::CONTENT_TYPE, "application/json")], body).into_response()
}

async fn dispatch(State(mirror): State<Mirror>, request: http::Request<Body>) -> Response {
    let path = request.uri().path().to_owned();
    let (route, kind, response): (Cow<'static, str>, &'static str, Response) =
        if request.method() == Method::CONNECT || is_absolute_form(&request) {
            proxied(&mirror, request).await
        } else {
            match path.as_str() {
                "/healthz" => (
                    "healthz".into(),
                    "-",
                    (StatusCode::OK, "ok\n").into_response(),
                ),
                "/metrics" => (
                    "metrics".into(),
                    "-",
                    (
                        [(
                            header::CONTENT_TYPE,
                            "application/openmetrics-text; version=1.0.0; charset=utf-8",
                        )],
                        mirror.metrics().encode(),
                    )
                        .into_response(),
                ),
                "/api/v1/status" => ("status".into(), "-", status(&mirror).await),
                "/api/v1/peers" => ("peers".into(), "-", peers(&mirror).await),
                "/" => ("dashboard".into(), "-", dashboard(&mirror).await),
                ipfs if ipfs.starts_with("/ipfs/") => {
                    let (kind, response) = crate::gateway::handle(&mirror, request).await;
                    ("ipfs".into(), kind, response)
                }
                _ => match find_ecosystem(&mirror, path.trim_start_matches('/')) {
                    Some((registered, below)) => {
                        let name = registered.name.to_string();
                        let (kind, response) =
                            ecosystem(&mirror, registered, below, request, false).await;
                        (name.into(), kind, response)
                    }
                    None => (
                        "unknown".into(),
                        "-",
                        Error::NotFound(format!("no route for {path}: {}", where_to_go(&mirror)))
                            .into_response(),
                    ),
                },
            }
        };
    mirror
        .metrics()
        .requests
        .get_or_create(&crate::metrics::RequestLabels {
            route: route.into_owned(),
            kind,
            status: response.status().as_u16(),
        })
        .inc();
    response
}

/// Where each ecosystem this node serves lives, for a request under none of them. Ecosystems
/// without an upstream are off (they answer from the cache and peers only) and said so apart.
fn where_to_go(mirror: &Mirror) -> String {
    let (mut served, mut off) = (Vec::new(), Vec::new());
    for (name, upstream) in mirror.upstreams() {
        let Some(registered) = mirror.ecosystem(name) else {
            continue;
        };
        let at = format!(
            "{name} at /{}/{}",
            registered.mount,
            registered.ecosystem.client_root()
        );
        match upstream {
            Ok(_) => served.push(at),
            Err(_) => off.push(at),
        }
    }
    served.sort();
    off.sort();
    let mut out = if served.is_empty() {
        "this node fronts no upstream".to_owned()
    } else {
        format!("this node serves {}", served.join(", "))
    };
    if !off.is_empty() {
        out.push_str(&format!(
            "; off for want of an upstream (cache and peers only): {}",
            off.join(", ")
        ));
    }
    out
}

/// True for an HTTP/1 request in absolute form (`GET http://host/path`): a proxy request. An
/// HTTP/2 request always carries its authority (`:authority`), so only HTTP/1 can ask this way.
fn is_absolute_form(request: &http::Request<Body>) -> bool {
    request.version() < http::Version::HTTP_2 && request.uri().authority().is_some()
}

/// The ecosystem a path (without its leading `/`) is for, and the path below its prefix. A
/// prefix is one segment (`npm`) or two (`apt/debian`: one ecosystem per apt archive).
fn find_ecosystem<'a, 'p>(mirror: &'a Mirror, rest: &'p str) -> Option<(&'a Registered, &'p str)> {
    let (first, below) = rest.split_once('/').unwrap_or((rest, ""));
    if let Some(registered) = mirror.ecosystem_at(first) {
        return Some((registered, below));
    }
    let second = below.find('/').unwrap_or(below.len());
    let prefix = rest.get(..first.len() + 1 + second)?;
    let below = below.get(second..).unwrap_or("").trim_start_matches('/');
    mirror
        .ecosystem_at(prefix)
        .map(|registered| (registered, below))
}

/// A proxy request (apt's `Acquire::http::Proxy`): an absolute URI is served as the ecosystem
/// whose upstream it falls under, as if the client had asked Cairn by path. Anything else is
/// refused: Cairn is not an open proxy.
async fn proxied(
    mirror: &Mirror,
    request: http::Request<Body>,
) -> (Cow<'static, str>, &'static str, Response) {
    let target = request.uri().to_string();
    if request.method() == Method::CONNECT {
        let e = Error::Forbidden(format!(
            "CONNECT {target}: Cairn is not an open proxy; use http:// sources (the archive's \
             signatures make that safe)"
        ));
        return ("proxy".into(), "-", e.into_response());
    }
    let found = request.uri().authority().and_then(|authority| {
        mirror.ecosystem_for_upstream(authority.host(), authority.port_u16(), request.uri().path())
    });
    match found {
        Some((registered, below)) => {
            let name = registered.name.to_string();
            let (kind, response) = ecosystem(mirror, registered, &below, request, true).await;
            (name.into(), kind, response)
        }
        None => {
            let e = Error::Forbidden(format!(
                "{target} is not under a configured upstream: Cairn is not an open proxy"
            ));
            ("proxy".into(), "-", e.into_response())
        }
    }
}

/// Serve `request` (its path below the ecosystem's prefix is `below`) as `registered`'s.
/// `proxied`: it came as a proxy request (absolute URI), which is never passed through.
async fn ecosystem(
    mirror: &Mirror,
    registered: &Registered,
    below: &str,
    request: http::Request<Body>,
    proxied: bool,
) -> (&'static str, Response) {
    let (parts, body) = request.into_parts();
    let accept = parts
        .headers
        .get(header::ACCEPT)
        .and_then(|v| v.to_str().ok());
    let route = registered.ecosystem.route(&Request {
        method: &parts.method,
        path: below,
        query: parts.uri.query(),
        accept,
    });
    let route = match route {
        Ok(Some(route)) => route,
        Ok(None) => {
            let e = Error::NotFound(format!(
                "{} has no route for /{below}",
                registered.ecosystem.name()
            ));
            return ("other", e.into_response());
        }
        Err(e) => return ("other", Error::BadRequest(e.0).into_response()),
    };
    let is_read = matches!(parts.method, Method::GET | Method::HEAD);
    match route {
        Route::Held { variant } if is_read => (
            "metadata",
            held(mirror, registered, variant, &parts)
                .await
                .unwrap_or_else(IntoResponse::into_response),
        ),
        Route::Refused { status, message } => {
            let upstream = match &registered.upstream {
                Ok(upstream) => upstream.base().to_string(),
                Err(_) => "the upstream registry".to_owned(),
            };
            let message = message.replace(crate::ecosystem::UPSTREAM_MARK, &upstream);
            ("refused", error_response(status, &message))
        }
        Route::Local { content_type, body } => (
            "local",
            ([(header::CONTENT_TYPE, content_type)], body).into_response(),
        ),
        Route::Redirect { path } => (
            "redirect",
            match base_url(mirror, &registered.mount, &parts).and_then(|base| {
                base.join(&path)
                    .map_err(|e| Error::BadRequest(e.to_string()))
            }) {
                Ok(location) => (
                    StatusCode::MOVED_PERMANENTLY,
                    [(header::LOCATION, location.to_string())],
                )
                    .into_response(),
                Err(e) => e.into_response(),
            },
        ),
        Route::Metadata(route) if is_read => (
            "metadata",
            metadata(mirror, registered, &route, None, &parts)
                .await
                .unwrap_or_else(|e| miss_error(mirror, registered, &route.key, e)),
        ),
        Route::Part { document, part } if is_read => (
            "metadata",
            metadata(mirror, registered, &document, Some(&part), &parts)
                .await
                .unwrap_or_else(|e| miss_error(mirror, registered, &document.key, e)),
        ),
        Route::Artifact(route) if is_read => (
            "artifact",
            artifact(mirror, registered, &route, &parts)
                .await
                .unwrap_or_else(|e| miss_error(mirror, registered, &route.key, e)),
        ),
        Route::Passthrough { .. } if proxied => (
            "passthrough",
            Error::Forbidden(format!(
                "{} /{below} is passed through to upstream only when asked by path, not as a \
                 proxy request",
                registered.ecosystem.name()
            ))
            .into_response(),
        ),
        Route::Passthrough {
            method,
            upstream_path,
        } if method == parts.method => (
            "passthrough",
            passthrough(mirror, registered, method, &upstream_path, parts, body)
                .await
                .unwrap_or_else(IntoResponse::into_response),
        ),
        _ => (
            "other",
            Error::MethodNotAllowed(format!("{} /{below}", parts.method)).into_response(),
        ),
    }
}

/// The URL clients reach the ecosystem mounted at `mount` at: the configured public URL, else
/// the request's Host (HTTP/1) or `:authority` (HTTP/2, where there is no Host header).
fn base_url(mirror: &Mirror, mount: &str, request: &http::request::Parts) -> Result<Url, Error> {
    let headers = &request.headers;
    let authority = request.uri.authority().map(|a| a.as_str());
    let base = match &mirror.config().public_url {
        Some(url) => url.clone(),
        None => {
            let host = headers
                .get(header::HOST)
                .and_then(|h| h.to_str().ok())
                .or(authority)
                .ok_or_else(|| Error::BadRequest("request has no Host header".into()))?;
            if host.is_empty() || host.contains(['/', '\\', '?', '#', '@', ' ']) {
                return Err(Error::BadRequest(format!("invalid Host header {host:?}")));
            }
            Url::parse(&format!("http://{host}/"))
                .map_err(|e| Error::BadRequest(format!("invalid Host header {host:?}: {e}")))?
        }
    };
    let path = format!("{}/{mount}/", base.path().trim_end_matches('/'));
    let mut url = base;
    url.set_path(&path);
    Ok(url)
}

/// The list of documents `registered` holds (a [`Route::Held`]), read from the index now.
async fn held(
    mirror: &Mirror,
    registered: &Registered,
    variant: &'static str,
    request: &http::request::Parts,
) -> Result<Response, Error> {
    let base = base_url(mirror, &registered.mount, request)?;
    let index = mirror.index().clone();
    let name = registered.name.clone();
    let keys = crate::engine::blocking({
        let name = name.clone();
        move || Ok(index.metadata_keys(&name, crate::ecosystem::MAX_HELD_LISTED)?)
    })
    .await?;
    let rendered = registered
        .ecosystem
        .render_held(&keys, variant, &base)
        .map_err(|e| Error::Internal(format!("{name} list of held documents: {}", e.0)))?;
    Ok((
        [
            (header::CONTENT_TYPE, rendered.content_type),
            (header::CACHE_CONTROL, "no-cache"),
            (header::VARY, "Accept"),
        ],
        rendered.body,
    )
        .into_response())
}

/// Longest reason a `Warning` header carries (upstream errors can be long).
const MAX_WARNING_REASON: usize = 300;

/// The `Warning: 110` value of a stale metadata answer: that a stale copy was served, how old it
/// is, and why it was not revalidated. The text is one quoted string of visible ASCII.
fn stale_warning(age_secs: i64, reason: &str) -> String {
    let reason: String = reason
        .chars()
        .map(|c| match c {
            '"' | '\\' => '\'',
            c if c.is_ascii_graphic() || c == ' ' => c,
            _ => ' ',
        })
        .take(MAX_WARNING_REASON)
        .collect();
    format!(
        "110 cairn \"Response is Stale: served a cached copy fetched {} ago; {reason}\"",
        human_age(age_secs)
    )
}

/// `45s`, `12m 5s`, `3h 20m`, `2d 4h`.
fn human_age(secs: i64) -> String {
    let secs = secs.max(0);
    let (d, h, m, s) = (secs / 86_400, secs / 3600 % 24, secs / 60 % 60, secs % 60);
    match (d, h, m) {
        (0, 0, 0) => format!("{s}s"),
        (0, 0, _) => format!("{m}m {s}s"),
        (0, _, _) => format!("{h}h {m}m"),
        _ => format!("{d}d {h}h"),
    }
}

pub(crate) fn matches_etag(headers: &HeaderMap, etag: &str) -> bool {
    headers
        .get_all(header::IF_NONE_MATCH)
        .iter()
        .filter_map(|v| v.to_str().ok())
        .flat_map(|v| v.split(','))
        .map(|t| t.trim().trim_start_matches("W/"))
        .any(|t| t == etag || t == "*")
}

async fn metadata(
    mirror: &Mirror,
    registered: &Registered,
    route: &MetadataRoute,
    part: Option<&str>,
    request: &http::request::Parts,
) -> Result<Response, Error> {
    let hit: MetadataHit = mirror.metadata(registered, route).await?;
    if hit.record.cid.is_none() {
        let status = StatusCode::from_u16(hit.record.status).unwrap_or(StatusCode::NOT_FOUND);
        return Ok(error_response(
            status,
            &format!(
                "{} {}: upstream answered {status}",
                registered.ecosystem.name(),
                route.key
            ),
        ));
    }
    let base = base_url(mirror, &registered.mount, request)?;
    let doc = mirror.render(registered, route, part, &hit, &base).await?;
    let age_secs = (now_ms() - hit.record.fetched_at).max(0) / 1000;
    let ttl = mirror.config().metadata_ttl.as_secs() as i64;
    let gzip = doc.body.len() >= GZIP_MIN && accepts_gzip(&request.headers);
    let etag = if gzip {
        doc.gzip_etag()
    } else {
        doc.etag.clone()
    };
    let mut headers = HeaderMap::new();
    headers.insert(
        header::ETAG,
        HeaderValue::from_str(&etag).map_err(|e| Error::Internal(e.to_string()))?,
    );
    headers.insert(
        header::VARY,
        HeaderValue::from_static("Accept, Accept-Encoding"),
    );
    let last_modified = hit
        .record
        .last_modified
        .as_deref()
        .and_then(|v| HeaderValue::from_str(v).ok())
        .unwrap_or_else(|| http_date(hit.record.fetched_at));
    let unmodified = not_modified_since(&request.headers, &last_modified);
    headers.insert(header::LAST_MODIFIED, last_modified);
    headers.insert(
        header::CACHE_CONTROL,
        HeaderValue::from_str(&format!("public, max-age={}", (ttl - age_secs).max(0)))
            .map_err(|e| Error::Internal(e.to_string()))?,
    );
    if let Some(reason) = &hit.stale_because {
        headers.insert(header::AGE, HeaderValue::from(age_secs));
        if let Ok(v) = HeaderValue::from_str(&stale_warning(age_secs, reason)) {
            headers.insert(header::WARNING, v);
        }
    }
    if matches_etag(&request.headers, &doc.etag)
        || matches_etag(&request.headers, &doc.gzip_etag())
        || (unmodified && !request.headers.contains_key(header::IF_NONE_MATCH))
    {
        return Ok((StatusCode::NOT_MODIFIED, headers).into_response());
    }
    headers.insert(
        header::CONTENT_TYPE,
        HeaderValue::from_static(doc.content_type),
    );
    let body = if gzip {
        headers.insert(header::CONTENT_ENCODING, HeaderValue::from_static("gzip"));
        match doc.gzip.get() {
            Some(body) => body.clone(),
            None => {
                let doc = doc.clone();
                crate::engine::blocking(move || Ok(doc.gzipped())).await?
            }
        }
    } else {
        doc.body.clone()
    };
    mirror.metrics().served("cache", body.len() as u64);
    if request.method == Method::HEAD {
        headers.insert(header::CONTENT_LENGTH, HeaderValue::from(body.len()));
        return Ok((headers, Body::empty()).into_response());
    }
    Ok((headers, body).into_response())
}

/// True when `If-Modified-Since` is at or after `last_modified` (apt revalidates only by date).
fn not_modified_since(headers: &HeaderMap, last_modified: &HeaderValue) -> bool {
    let date = |v: &HeaderValue| {
        v.to_str()
            .ok()
            .and_then(|s| httpdate::parse_http_date(s).ok())
    };
    match (
        headers.get(header::IF_MODIFIED_SINCE).and_then(date),
        date(last_modified),
    ) {
        (Some(since), Some(modified)) => since >= modified,
        _ => false,
    }
}

/// True when the client accepts gzip (`Accept-Encoding: gzip`, not with `q=0`).
fn accepts_gzip(headers: &HeaderMap) -> bool {
    headers
        .get_all(header::ACCEPT_ENCODING)
        .iter()
        .filter_map(|v| v.to_str().ok())
        .flat_map(crate::negotiate::q_values)
        .any(|(coding, q)| (coding == "gzip" || coding == "*") && q > 0.0)
}

async fn artifact(
    mirror: &Mirror,
    registered: &Registered,
    route: &ArtifactRoute,
    request: &http::request::Parts,
) -> Result<Response, Error> {
    // A stored file found damaged is dropped by `cached_file`; the second lookup fetches it
    // again.
    let mut keep = Keep::IfRoom;
    for _ in 0..3 {
        match mirror.artifact(registered, route, keep).await? {
            ArtifactBody::Cached(cached) => {
                if let Some(response) = cached_file(mirror, &cached, request).await? {
                    return Ok(response);
                }
            }
            ArtifactBody::Downloading(download) => match download.ready().await {
                // The store had no room for it, and this client has had nothing yet: stream
                // it unkept.
                Err((StatusCode::INSUFFICIENT_STORAGE, _)) if keep == Keep::IfRoom => {
                    keep = Keep::Never;
                }
                ready => return downloading(mirror, download, ready, request).await,
            },
            ArtifactBody::Unkept(unkept) => return unkept_response(unkept, request).await,
        }
    }
    Err(Error::Internal(format!(
        "{} {}: the stored file was damaged again right after it was fetched",
        registered.ecosystem.name(),
        route.key
    )))
}

/// The answer to a document or artifact request that failed: the error's own status, except
/// that a miss on an `--offline` node (a 504: no upstream to ask, and no peer had it) is a 404
/// for the keys whose clients read a 5xx as "retry" and a 404 as final or "try the next name"
/// ([`crate::ecosystem::Ecosystem::offline_miss_is_not_found`]).
fn miss_error(mirror: &Mirror, registered: &Registered, key: &str, error: Error) -> Response {
    if mirror.config().offline
        && error.status() == StatusCode::GATEWAY_TIMEOUT
        && registered.ecosystem.offline_miss_is_not_found(key)
    {
        return error_response(StatusCode::NOT_FOUND, &public_message(&error));
    }
    error.into_response()
}

/// Headers of every artifact response: immutable bytes, named by their flat CID.
fn artifact_headers(etag: HeaderValue) -> HeaderMap {
    let mut headers = HeaderMap::with_capacity(8);
    headers.insert(
        header::CONTENT_TYPE,
        HeaderValue::from_static("application/octet-stream"),
    );
    headers.insert(
        header::CACHE_CONTROL,
        HeaderValue::from_static("public, max-age=31536000, immutable"),
    );
    headers.insert(header::ETAG, etag);
    headers
}

/// A cached artifact's headers: [`artifact_headers`] plus what only a stored file has.
fn immutable_headers(cached: &CachedArtifact) -> HeaderMap {
    let mut headers = artifact_headers(cached.etag.clone());
    headers.insert(header::LAST_MODIFIED, cached.last_modified.clone());
    headers.insert(header::ACCEPT_RANGES, HeaderValue::from_static("bytes"));
    headers.insert("x-ipfs-roots", cached.root.clone());
    headers
}

/// A single byte range `[start, end]` of a `size`-byte file, or why it cannot be served.
fn parse_range(value: &str, size: u64) -> Option<Result<(u64, u64), ()>> {
    let spec = value.trim().strip_prefix("bytes=")?;
    if spec.contains(',') {
        return None; // several ranges: serve the whole file instead
    }
    let (start, end) = spec.split_once('-')?;
    let (start, end) = match (start.trim(), end.trim()) {
        ("", suffix) => {
            let n: u64 = suffix.parse().ok()?;
            if n == 0 {
                return Some(Err(()));
            }
            (size.saturating_sub(n), size.checked_sub(1)?)
        }
        (start, "") => (start.parse().ok()?, size.checked_sub(1)?),
        (start, end) => {
            let (s, e): (u64, u64) = (start.parse().ok()?, end.parse().ok()?);
            if e < s {
                return None;
            }
            (s, e.min(size.saturating_sub(1)))
        }
    };
    if start >= size {
        return Some(Err(()));
    }
    Some(Ok((start, end)))
}

/// A cached artifact's response, or `None` when its stored file turned out damaged or missing
/// before anything was sent (it has been dropped, so the caller looks it up again).
async fn cached_file(
    mirror: &Mirror,
    cached: &Arc<CachedArtifact>,
    request: &http::request::Parts,
) -> Result<Option<Response>, Error> {
    let mut headers = immutable_headers(cached);
    let etag = cached.etag.to_str().unwrap_or_default();
    if matches_etag(&request.headers, etag) {
        return Ok(Some((StatusCode::NOT_MODIFIED, headers).into_response()));
    }
    let size = cached.record.size;
    let if_range_ok = request
        .headers
        .get(header::IF_RANGE)
        .and_then(|v| v.to_str().ok())
        .is_none_or(|v| v == etag);
    let range = request
        .headers
        .get(header::RANGE)
        .and_then(|v| v.to_str().ok())
        .filter(|_| if_range_ok)
        .and_then(|v| parse_range(v, size));
    let (status, start, len) = match range {
        None => (StatusCode::OK, 0, size),
        Some(Ok((start, end))) => {
            let value = format!("bytes {start}-{end}/{size}");
            headers.insert(
                header::CONTENT_RANGE,
                HeaderValue::from_str(&value).map_err(|e| Error::Internal(e.to_string()))?,
            );
            (StatusCode::PARTIAL_CONTENT, start, end - start + 1)
        }
        Some(Err(())) => {
            headers.insert(
                header::CONTENT_RANGE,
                HeaderValue::from_str(&format!("bytes */{size}"))
                    .map_err(|e| Error::Internal(e.to_string()))?,
            );
            return Ok(Some(
                (StatusCode::RANGE_NOT_SATISFIABLE, headers).into_response(),
            ));
        }
    };
    headers.insert(header::CONTENT_LENGTH, HeaderValue::from(len));
    if request.method == Method::HEAD {
        return Ok(Some((status, headers, Body::empty()).into_response()));
    }
    let body = if size <= READ_WHOLE {
        // Small files are read whole once, checked, and then served from memory, sliced for
        // ranges.
        let flat = cached.record.flat;
        let whole = match mirror.content().get(&flat) {
            Some(bytes) => bytes,
            None => {
                let (m, c) = (mirror.clone(), cached.clone());
                let read = crate::engine::blocking(move || {
                    Ok(match crate::engine::verified::read_whole(&c)? {
                        Ok(bytes) => Some(bytes),
                        Err(damage) => {
                            m.forget_damaged(&c, &damage);
                            None
                        }
                    })
                })
                .await?;
                let Some(bytes) = read else {
                    return Ok(None);
                };
                mirror.content().insert(flat, bytes.clone());
                bytes
            }
        };
        Body::from(whole.slice(start as usize..(start + len) as usize))
    } else {
        let (m, c, index) = (mirror.clone(), cached.clone(), mirror.index().clone());
        let opened = crate::engine::blocking(move || {
            Ok(match crate::engine::verified::open(&index, &c)? {
                Ok(opened) => Some(opened),
                Err(damage) => {
                    m.forget_damaged(&c, &damage);
                    None
                }
            })
        })
        .await?;
        let Some((file, leaves)) = opened else {
            return Ok(None);
        };
        crate::engine::verified::stream(mirror.clone(), cached.clone(), file, leaves, start, len)
    };
    mirror.metrics().served("cache", len);
    Ok(Some((status, headers, body).into_response()))
}

/// An artifact streamed without being kept: headers once upstream's are in, then the body as
/// it verifies.
async fn unkept_response(
    mut unkept: crate::engine::unkept::Unkept,
    request: &http::request::Parts,
) -> Result<Response, Error> {
    let total = unkept.ready().await?;
    let etag = HeaderValue::from_str(&format!("\"{}\"", unkept.flat))
        .map_err(|e| Error::Internal(format!("ETag of {}: {e}", unkept.flat)))?;
    let mut headers = artifact_headers(etag);
    if let Some(total) = total {
        headers.insert(header::CONTENT_LENGTH, HeaderValue::from(total));
    }
    if request.method == Method::HEAD {
        return Ok((headers, Body::empty()).into_response());
    }
    Ok((headers, Body::from_stream(unkept.into_stream())).into_response())
}

async fn downloading(
    mirror: &Mirror,
    download: Arc<Download>,
    ready: Result<Option<u64>, (StatusCode, String)>,
    request: &http::request::Parts,
) -> Result<Response, Error> {
    let total = match ready {
        Ok(total) => total,
        Err((status, message)) => return Ok(error_response(status, &message)),
    };
    // The bytes are immutable and named before they arrive; only Range waits for the cache.
    let etag = HeaderValue::from_str(&format!("\"{}\"", download.flat))
        .map_err(|e| Error::Internal(format!("ETag of {}: {e}", download.flat)))?;
    let mut headers = artifact_headers(etag);
    if let Some(total) = total {
        headers.insert(header::CONTENT_LENGTH, HeaderValue::from(total));
    }
    if request.method == Method::HEAD {
        return Ok((headers, Body::empty()).into_response());
    }
    let mut tally = crate::engine::download::ServedTally::new(download.clone(), mirror.clone());
    let stream = download.clone().stream().map(move |chunk| {
        if let Ok(bytes) = &chunk {
            tally.sent(bytes.len() as u64);
        }
        chunk
    });
    let wait_for_index = request
        .headers
        .get(WAIT_HEADER)
        .is_some_and(|v| v.as_bytes() == b"committed");
    if !wait_for_index {
        return Ok((headers, Body::from_stream(stream)).into_response());
    }
    // The last bytes go out once the download is indexed; a failure to commit cuts the body.
    let committed = futures_util::stream::once(async move {
        match download.committed().await {
            Ok(_) => None,
            Err((_, message)) => Some(Err(std::io::Error::other(message))),
        }
    })
    .filter_map(std::future::ready);
    Ok((headers, Body::from_stream(stream.chain(committed))).into_response())
}

/// True when the path part of `upstream_path` has a dot segment, an encoded slash or
/// backslash, or a backslash: anything that could make it name another upstream path once
/// joined or decoded.
fn escapes_its_path(upstream_path: &str) -> bool {
    let path = upstream_path.split(['?', '#']).next().unwrap_or("");
    let lower = path.to_ascii_lowercase();
    lower.contains("%2f")
        || lower.contains("%5c")
        || lower.contains('\\')
        || lower
            .split('/')
            .any(|s| matches!(s.replace("%2e", ".").as_str(), "." | ".."))
}

/// Send a client's request to the exact upstream endpoint the adapter named, with the
/// adapter's `method` and without credentials, and relay the answer.
async fn passthrough(
    mirror: &Mirror,
    registered: &Registered,
    method: Method,
    upstream_path: &str,
    parts: http::request::Parts,
    body: Body,
) -> Result<Response, Error> {
    let name = registered.ecosystem.name();
    if escapes_its_path(upstream_path) {
        return Err(Error::BadRequest(format!(
            "{name} /{upstream_path}: dot segments and encoded slashes are not passed through"
        )));
    }
    if mirror.config().offline {
        return Err(Error::Offline {
            what: format!("{name} /{upstream_path} (not cacheable)"),
        });
    }
    let upstream = registered
        .upstream
        .as_ref()
        .map_err(|hint| Error::NoUpstream {
            ecosystem: name.to_owned(),
            hint: hint.clone(),
        })?;
    let url = upstream.join(upstream_path)?;
    // The client's body and the whole upstream exchange each get the upstream deadline, so
    // neither a trickling client nor a trickling upstream holds a metadata slot for longer.
    let deadline = upstream.limits().deadline;
    let body =
        match tokio::time::timeout(deadline, axum::body::to_bytes(body, MAX_FORWARD_BODY)).await {
            Ok(body) => body.map_err(|e| Error::BadRequest(format!("request body: {e}")))?,
            Err(_) => {
                return Err(Error::BadRequest(format!(
                    "request body for {name} /{upstream_path} not complete within {}",
                    crate::limits::duration(deadline)
                )));
            }
        };
    let exchange = async {
        let _permit = upstream.permit().await;
        let response = upstream.forward(method, &url, &parts.headers, body).await?;
        let status = response.status();
        let content_type = response.headers().get(header::CONTENT_TYPE).cloned();
        let body = read_answer(response, &url).await?;
        Ok::<_, Error>((status, content_type, body))
    };
    let (status, content_type, body) = match tokio::time::timeout(deadline, exchange).await {
        Ok(result) => result?,
        Err(_) => {
            return Err(Error::UpstreamFailed {
                url: crate::upstream::redact(&url),
                reason: format!(
                    "no complete answer within the {} upstream deadline (--upstream-deadline)",
                    crate::limits::duration(deadline)
                ),
            });
        }
    };
    let mut out = (status, body).into_response();
    if let Some(ct) = content_type {
        out.headers_mut().insert(header::CONTENT_TYPE, ct);
    }
    Ok(out)
}

/// A passthrough answer's body, at most [`MAX_PASSTHROUGH_ANSWER`] bytes.
async fn read_answer(mut response: reqwest::Response, url: &Url) -> Result<Bytes, Error> {
    let too_big = || Error::PassthroughTooLarge {
        url: crate::upstream::redact(url),
        limit: MAX_PASSTHROUGH_ANSWER,
    };
    if response
        .content_length()
        .is_some_and(|n| n > MAX_PASSTHROUGH_ANSWER)
    {
        return Err(too_big());
    }
    let mut body = Vec::new();
    loop {
        match response.chunk().await {
            Ok(Some(chunk)) => {
                if (body.len() + chunk.len()) as u64 > MAX_PASSTHROUGH_ANSWER {
                    return Err(too_big());
                }
                body.extend_from_slice(&chunk);
            }
            Ok(None) => return Ok(Bytes::from(body)),
            Err(e) => {
                return Err(Error::UpstreamFailed {
                    url: crate::upstream::redact(url),
                    reason: crate::upstream::describe(&e),
                });
            }
        }
    }
}

#[derive(serde::Serialize)]
struct StatusReport {
    offline: bool,
    data_dir: String,
    upstreams: Vec<UpstreamStatus>,
    stats: Vec<crate::index::EcosystemStats>,
}

#[derive(serde::Serialize)]
struct UpstreamStatus {
    ecosystem: String,
    upstream: Option<String>,
    disabled_because: Option<String>,
}

async fn status_report(mirror: &Mirror) -> Result<StatusReport, Error> {
    let index = mirror.index().clone();
    let stats = crate::engine::blocking(move || Ok(index.stats()?)).await?;
    Ok(StatusReport {
        offline: mirror.config().offline,
        data_dir: mirror.config().data_dir.display().to_string(),
        upstreams: mirror
            .upstreams()
            .into_iter()
            .map(|(ecosystem, upstream)| UpstreamStatus {
                ecosystem: ecosystem.to_owned(),
                upstream: upstream.clone().ok(),
                disabled_because: upstream.err(),
            })
            .collect(),
        stats,
    })
}

async fn status(mirror: &Mirror) -> Response {
    match status_report(mirror).await {
        Ok(report) => match serde_json::to_vec_pretty(&report) {
            Ok(body) => ([(header::CONTENT_TYPE, "application/json")], body).into_response(),
            Err(e) => Error::Internal(format!("status report: {e}")).into_response(),
        },
        Err(e) => e.into_response(),
    }
}

/// The peer's identity, addresses and connected peers; `{"p2p": false}` with `--no-p2p`.
async fn peers(mirror: &Mirror) -> Response {
    let report = match mirror.peer_source() {
        Some(peers) => peers.describe().await,
        None => serde_json::json!({ "p2p": false, "peers": [] }),
    };
    match serde_json::to_vec_pretty(&report) {
        Ok(body) => ([(header::CONTENT_TYPE, "application/json")], body).into_response(),
        Err(e) => Error::Internal(format!("peers report: {e}")).into_response(),
    }
}

async fn dashboard(mirror: &Mirror) -> Response {
    let report = match status_report(mirror).await {
        Ok(report) => report,
        Err(e) => return e.into_response(),
    };
    let mut out = String::from("Cairn: content-addressed package mirror\n\n");
    out.push_str(&format!(
        "mode: {}\ndata: {}\n\n",
        if report.offline { "offline" } else { "online" },
        report.data_dir
    ));
    for u in &report.upstreams {
        match (&u.upstream, &u.disabled_because) {
            (Some(url), _) => out.push_str(&format!("/{}/  ← {url}\n", u.ecosystem)),
            (None, Some(why)) => out.push_str(&format!("/{}/  off: {why}\n", u.ecosystem)),
            _ => {}
        }
    }
    out.push('\n');
    for s in &report.stats {
        out.push_str(&format!(
            "{}: {} artifacts ({}), {} metadata documents\n",
            s.ecosystem,
            s.artifacts,
            crate::units::size(s.artifact_bytes),
            s.metadata_documents
        ));
    }
    out.push_str("\nSee /metrics (Prometheus) and /api/v1/status (JSON).\n");
    ([(header::CONTENT_TYPE, "text/plain; charset=utf-8")], out).into_response()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn store_errors_name_no_data_directory_path() {
        let path = std::path::Path::new("/srv/cairn-data/blobs/ab/bafkexample");
        let io = || std::io::Error::new(std::io::ErrorKind::PermissionDenied, "denied");
        for error in [
            Error::Store(crate::error::StoreError::io("open", path, io())),
            Error::Shared(Arc::new(Error::Store(crate::error::StoreError::Corrupt {
                path: path.to_path_buf(),
                expected: "x".into(),
                got: "y".into(),
            }))),
        ] {
            assert!(error.to_string().contains("/srv/cairn-data"), "{error}");
            let message = public_message(&error);
            assert!(!message.contains("/srv/cairn-data"), "{message}");
            assert!(message.contains("store"), "{message}");
        }
    }

    #[test]
    fn ranges() {
        for (spec, size, expect) in [
            ("bytes=0-9", 100, Some(Ok((0, 9)))),
            ("bytes=90-", 100, Some(Ok((90, 99)))),
            ("bytes=-10", 100, Some(Ok((90, 99)))),
            ("bytes=-200", 100, Some(Ok((0, 99)))),
            ("bytes=50-500", 100, Some(Ok((50, 99)))),
            ("bytes=100-", 100, Some(Err(()))),
            ("bytes=-0", 100, Some(Err(()))),
            ("bytes=9-0", 100, None),
            ("bytes=0-1,5-6", 100, None),
            ("items=0-1", 100, None),
        ] {
            assert_eq!(parse_range(spec, size), expect, "{spec}");
        }
    }

    #[test]
    fn gzip_negotiation() {
        for (value, expect) in [
            ("gzip, deflate", true),
            ("gzip;q=0", false),
            ("deflate, br", false),
            ("*", true),
            ("GZIP", true),
        ] {
            let mut headers = HeaderMap::new();
            headers.insert(header::ACCEPT_ENCODING, HeaderValue::from_static(value));
            assert_eq!(accepts_gzip(&headers), expect, "{value}");
        }
        assert!(!accepts_gzip(&HeaderMap::new()));
    }

    #[test]
    fn stale_warnings_say_what_happened() {
        let offline = crate::engine::stale_reason(&Error::Shared(Arc::new(Error::Offline {
            what: "npm metadata lodash".into(),
        })));
        let warning = stale_warning(7_500, &offline);
        assert_eq!(
            warning,
            "110 cairn \"Response is Stale: served a cached copy fetched 2h 5m ago; upstream not \
             contacted: this node runs --offline\""
        );
        assert!(!warning.contains("not cached"), "{warning}");
        let down = crate::engine::stale_reason(&Error::UpstreamFailed {
            url: "http://up.invalid/lodash".into(),
            reason: "connection refused \"x\"\r\nInjected: yes é".into(),
        });
        let warning = stale_warning(42, &down);
        assert!(HeaderValue::from_str(&warning).is_ok(), "{warning}");
        assert_eq!(
            warning,
            "110 cairn \"Response is Stale: served a cached copy fetched 42s ago; upstream \
             unreachable: connection refused 'x'  Injected: yes  \""
        );
        let status = crate::engine::stale_reason(&Error::UpstreamStatus {
            url: "http://up.invalid/lodash".into(),
            status: StatusCode::SERVICE_UNAVAILABLE,
        });
        assert_eq!(status, "upstream answered 503 Service Unavailable");
        assert!(stale_warning(0, &"x".repeat(10_000)).len() < MAX_WARNING_REASON + 100);
        assert_eq!(human_age(3 * 86_400 + 4 * 3600 + 5), "3d 4h");
        assert_eq!(human_age(65), "1m 5s");
    }

    #[test]
    fn etag_matching() {
        let mut headers = HeaderMap::new();
        headers.insert(
            header::IF_NONE_MATCH,
            HeaderValue::from_static("\"a\", W/\"b\""),
        );
        assert!(matches_etag(&headers, "\"a\""));
        assert!(matches_etag(&headers, "\"b\""));
        assert!(!matches_etag(&headers, "\"c\""));
    }

    #[test]
    fn passthrough_refuses_dot_segments_and_encoded_slashes() {
        for path in [
            "-/npm/v1/security/../../x",
            "-/npm/v1/security/%2e%2e/x",
            "-/npm/v1/security/%2E%2E/x",
            "-/npm/v1/security/./audits",
            "-/npm/v1/security%2faudits",
            "-/npm/v1/security%2Faudits",
            "-/npm/v1/security%5caudits",
            "-/npm/v1/security\\audits",
        ] {
            assert!(escapes_its_path(path), "{path}");
        }
        assert!(!escapes_its_path("-/npm/v1/security/audits/quick"));
        assert!(!escapes_its_path("-/v1/search?text=a%2f..%2fb&size=20"));
    }
}
