//! A request under an ecosystem's mount: routed by its adapter to a document, an artifact, a
//! held list or a passthrough, and proxy-form requests (`GET http://upstream/...`) mapped onto
//! the ecosystem whose upstream they name.

use std::borrow::Cow;

use axum::body::Body;
use axum::response::{IntoResponse, Response};
use http::header::{self};
use http::{Method, StatusCode};
use url::Url;

use crate::ecosystem::{Request, Route};
use crate::engine::{Mirror, Registered};
use crate::error::Error;
use crate::policy::{AsOf, as_of};

use super::documents::metadata;
use super::error_response;
use super::files::{artifact, miss_error};
use super::passthrough::passthrough;

/// A proxy request (apt's `Acquire::http::Proxy`): an absolute URI is served as the ecosystem
/// whose upstream it falls under, as if the client had asked Cairn by path. Anything else is
/// refused: Cairn is not an open proxy.
pub(super) async fn proxied(
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
pub(super) async fn ecosystem(
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
/// the request's Host (HTTP/1) or `:authority` (HTTP/2, where there is no Host header); in
/// the view as of an instant when the request came through one.
pub(super) fn base_url(
    mirror: &Mirror,
    mount: &str,
    request: &http::request::Parts,
) -> Result<Url, Error> {
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
            let scheme = if request.extensions.get::<super::accept::OverTls>().is_some() {
                "https"
            } else {
                "http"
            };
            Url::parse(&format!("{scheme}://{host}/"))
                .map_err(|e| Error::BadRequest(format!("invalid Host header {host:?}: {e}")))?
        }
    };
    let path = match request.extensions.get::<AsOf>() {
        Some(as_of) => format!(
            "{}/{}/{}/{mount}/",
            base.path().trim_end_matches('/'),
            as_of::PREFIX,
            as_of.text
        ),
        None => format!("{}/{mount}/", base.path().trim_end_matches('/')),
    };
    let mut url = base;
    url.set_path(&path);
    Ok(url)
}

/// The list of documents `registered` holds (a [`Route::Held`]), read from the index now.
pub(super) async fn held(
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
        .map_err(|source| Error::Adapter {
            what: format!("{name} list of held documents"),
            source,
        })?;
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
