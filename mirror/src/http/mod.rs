//! The HTTP front: hyper 1 through axum. Routes are dispatched on the *raw* path (npm's
//! `@scope%2fname` must not be decoded by a router) to the ecosystem named by the first segment;
//! `/healthz`, `/metrics`, `/api/v1/status`, `/api/v1/peers`, `/api/v1/traffic`,
//! `/api/v1/refusals`, `/api/v1/upstreams`, `/api/v1/store`, `/api/v1/search`,
//! `/api/v1/policy/explain`, `/api/v1/purge/…` and `/api/v1/repair/…` (local clients only),
//! and `/` (the dashboard page for browsers, a text summary otherwise) with `/assets/…` are
//! Cairn's own; `/as-of/INSTANT/MOUNT/…` is
//! an ecosystem in the view as of an instant ([`crate::policy::as_of`]). With `--auth required`
//! every route but `/healthz` needs an access token first (`auth`).
//!
//! Responses: metadata carries a strong ETag (answered with 304), `Vary: Accept`, and `Age` plus
//! a `Warning` when it is stale; artifacts are immutable (`Cache-Control: immutable`, ETag = flat
//! CID), served from their flat file with single-range support, or streamed from a download under
//! way. Errors are JSON `{"error": "…"}` with the status [`Error::status`] gives.
//!
//! By job: `routes` (a request under an ecosystem's mount), `documents` and `files` (the
//! two kinds of response), `passthrough`, `api` (Cairn's own routes), `gateway` (the IPFS
//! trustless gateway on `/ipfs/`), `accept` (the listener: connection caps, timeouts,
//! graceful shutdown), `lookahead` (the files of pipelined requests fetched ahead) and
//! `zerocopy` (large files sent by the kernel on plain HTTP/1).

mod accept;
mod api;
mod auth;
mod dashboard;
mod documents;
mod files;
mod gateway;
mod lookahead;
mod passthrough;
mod purge;
mod repair;
mod routes;
pub mod tls;
mod zerocopy;

use api::{peers, status, summary};
use purge::purge;
use repair::repair;
use routes::{ecosystem, proxied};

use std::borrow::Cow;

use axum::Router;
use axum::body::Body;
use axum::extract::State;
use axum::response::{IntoResponse, Response};
use http::header::{self, HeaderMap};
use http::{Method, StatusCode};

use crate::engine::{Mirror, Registered};
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
pub(crate) const GZIP_MIN: usize = 1024;
/// Cached files up to this size are read in one go; larger ones are streamed.
const READ_WHOLE: u64 = 1 << 20;

/// The router serving every route of `cairn serve`.
pub fn router(mirror: Mirror) -> Router {
    Router::new().fallback(dispatch).with_state(mirror)
}

pub use accept::{ConnectionLimits, serve};

impl IntoResponse for Error {
    fn into_response(self) -> Response {
        let message = public_message(&self);
        let mut response = error_response(self.status(), &message);
        // A policy's reason in the HTTP/1 status line too: clients that print only that (apt,
        // pip's download errors) show why.
        if matches!(self, Error::PolicyRefused(_))
            && let Ok(phrase) = hyper::ext::ReasonPhrase::try_from(reason_phrase(&message))
        {
            response.extensions_mut().insert(phrase);
        }
        response
    }
}

/// `message` as a status line's reason phrase: visible ASCII and spaces, at most 400 bytes.
fn reason_phrase(message: &str) -> String {
    message
        .chars()
        .map(|c| {
            if c.is_ascii_graphic() || c == ' ' {
                c
            } else {
                '?'
            }
        })
        .take(400)
        .collect()
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
    mirror.note_request();
    let path = request.uri().path().to_owned();
    let proxy = request.method() == Method::CONNECT || is_absolute_form(&request);
    if request.extensions().get::<lookahead::LookAhead>().is_some() {
        look_ahead(&mirror, request, proxy).await;
        return StatusCode::NO_CONTENT.into_response();
    }
    let (route, kind, response): (Cow<'static, str>, &'static str, Response) =
        if let Some(refused) = auth::refusal(&mirror, &request, proxy) {
            ("unauthorized".into(), "-", refused)
        } else if proxy {
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
                "/api/v1/refusals" => ("refusals".into(), "-", api::refusals(&mirror)),
                "/api/v1/upstreams" => ("upstreams".into(), "-", api::upstreams(&mirror)),
                "/api/v1/store" => ("store".into(), "-", api::store(&mirror).await),
                "/api/v1/search" => (
                    "search".into(),
                    "-",
                    api::search(&mirror, request.uri().query()).await,
                ),
                "/api/v1/traffic" => (
                    "traffic".into(),
                    "-",
                    api::traffic(&mirror, request.uri().query()),
                ),
                "/api/v1/policy/explain" => (
                    "policy".into(),
                    "-",
                    api::explain(&mirror, request.uri().query()).await,
                ),
                purge_path if purge_path.starts_with(crate::PURGE_PREFIX) => {
                    ("purge".into(), "-", purge(&mirror, request).await)
                }
                repair_path if repair_path.starts_with(crate::REPAIR_PREFIX) => {
                    ("repair".into(), "-", repair(&mirror, request).await)
                }
                "/" if dashboard::wants_page(request.headers()) => {
                    ("dashboard".into(), "-", dashboard::page())
                }
                "/" => ("summary".into(), "-", summary(&mirror).await),
                asset if asset.starts_with(dashboard::ASSETS) => (
                    "dashboard".into(),
                    "-",
                    dashboard::file(asset).unwrap_or_else(|| {
                        Error::NotFound(format!("no dashboard file {asset}")).into_response()
                    }),
                ),
                ipfs if ipfs.starts_with("/ipfs/") => {
                    let (kind, response) = crate::http::gateway::handle(&mirror, request).await;
                    ("ipfs".into(), kind, response)
                }
                view if view.starts_with("/as-of/") => {
                    let (kind, response) = as_of_view(&mirror, request).await;
                    ("as-of".into(), kind, response)
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

/// A copy of a pipelined `GET` (`lookahead.rs`): if its client may ask for it and it names an
/// artifact under an ecosystem's mount (by path or as a proxy request), start fetching that
/// file. Nothing is answered, counted or logged here: the request itself is, on its turn.
async fn look_ahead(mirror: &Mirror, request: http::Request<Body>, proxy: bool) {
    if auth::refusal(mirror, &request, proxy).is_some() {
        return;
    }
    let path = request.uri().path();
    let found = if proxy {
        request.uri().authority().and_then(|authority| {
            mirror.ecosystem_for_upstream(authority.host(), authority.port_u16(), path)
        })
    } else {
        find_ecosystem(mirror, path.trim_start_matches('/'))
            .map(|(registered, below)| (registered, below.to_owned()))
    };
    let Some((registered, below)) = found else {
        return;
    };
    let route = registered.ecosystem.route(&crate::ecosystem::Request {
        method: request.method(),
        path: &below,
        query: request.uri().query(),
        accept: None,
    });
    if let Ok(Some(crate::ecosystem::Route::Artifact(route))) = route {
        mirror.look_ahead(registered, &route).await;
    }
}

/// A request under `/as-of/INSTANT/`: the ecosystem below it, served in the view as of that
/// instant ([`crate::policy::as_of`]). The instant is read from the raw path; a malformed or
/// future one is a `400` naming it.
async fn as_of_view(mirror: &Mirror, mut request: http::Request<Body>) -> (&'static str, Response) {
    let path = request.uri().path().to_owned();
    let rest = path
        .strip_prefix('/')
        .and_then(|p| p.strip_prefix(crate::policy::as_of::PREFIX))
        .and_then(|p| p.strip_prefix('/'))
        .unwrap_or("");
    let (instant, below) = rest.split_once('/').unwrap_or((rest, ""));
    // Clients that encode `:` in paths send `2026-08-19T12%3A00%3A00Z`.
    let instant = percent_encoding::percent_decode_str(instant).decode_utf8_lossy();
    let as_of = match crate::policy::AsOf::parse(&instant, crate::engine::now_ms()) {
        Ok(as_of) => as_of,
        Err(why) => return ("other", Error::BadRequest(why).into_response()),
    };
    match find_ecosystem(mirror, below) {
        Some((registered, _))
            if !crate::policy::as_of::DATED
                .contains(&crate::index::ecosystem_family(&registered.name)) =>
        {
            let e = Error::NotFound(format!(
                "{} has no publication times to view it as of an instant by (the view serves {})",
                registered.name,
                crate::policy::as_of::DATED.join(", ")
            ));
            ("other", e.into_response())
        }
        Some((registered, below)) => {
            let below = below.to_owned();
            request.extensions_mut().insert(as_of);
            ecosystem(mirror, registered, &below, request, false).await
        }
        None => (
            "other",
            Error::NotFound(format!(
                "no route for {path}: below /as-of/{}/, {}",
                as_of.text,
                where_to_go(mirror)
            ))
            .into_response(),
        ),
    }
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
    // Two segments first: `cargo/corp` (an alternative registry) lives beside `cargo`.
    let second = below.find('/').unwrap_or(below.len());
    if let Some(prefix) = rest.get(..first.len() + 1 + second)
        && let Some(registered) = mirror.ecosystem_at(prefix)
    {
        let below = below.get(second..).unwrap_or("").trim_start_matches('/');
        return Some((registered, below));
    }
    mirror
        .ecosystem_at(first)
        .map(|registered| (registered, below))
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

#[cfg(test)]
mod tests;
