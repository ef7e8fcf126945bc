//! `DELETE /api/v1/purge/ECOSYSTEM/NAME[@VERSION]`: the operator's purge of one package
//! (`cairn purge` asks the running node this way, so its memory caches go too). Answered with a
//! JSON report of what was dropped ([`crate::PurgeReport`]).
//!
//! Only for clients on this machine: the TCP peer must be a loopback address (the accept loop
//! puts it in the request's extensions; a request without one is refused), and the `Host` must
//! be an IP address or `localhost`, so that a web page whose DNS name was pointed at 127.0.0.1
//! (DNS rebinding) cannot send one from the operator's browser. Anything else is a 403 with a
//! JSON error. A reverse proxy on the same host makes every client local: do not forward this
//! path through one.

use std::net::{IpAddr, SocketAddr};

use axum::body::Body;
use axum::extract::ConnectInfo;
use axum::response::{IntoResponse, Response};
use http::header;
use http::{Method, StatusCode};

use crate::engine::Mirror;
use crate::engine::purge::{PURGE_PREFIX, PurgeSpec};
use crate::error::Error;

pub(super) async fn purge(mirror: &Mirror, request: http::Request<Body>) -> Response {
    if let Some(refused) = only(&request, Method::DELETE, "a purge") {
        return refused;
    }
    if let Err(why) = local_client(&request, "a purge") {
        tracing::warn!("refused a purge of {}: {why}", request.uri().path());
        return Error::Forbidden(why).into_response();
    }
    let spec = match spec_of(mirror, request.uri().path()) {
        Ok(spec) => spec,
        Err(why) => return Error::BadRequest(why).into_response(),
    };
    json_report(mirror.purge(&spec).await, "purge report")
}

/// A `405` naming the method `request` must use (`what`: `a purge`), unless it uses it.
pub(super) fn only(request: &http::Request<Body>, method: Method, what: &str) -> Option<Response> {
    if *request.method() == method {
        return None;
    }
    let mut response = Error::MethodNotAllowed(format!(
        "{} {}: {what} is a {method}",
        request.method(),
        request.uri().path()
    ))
    .into_response();
    if let Ok(allow) = http::HeaderValue::from_str(method.as_str()) {
        response.headers_mut().insert(header::ALLOW, allow);
    }
    Some(response)
}

/// An operator route's answer: its report as pretty JSON, or its error.
pub(super) fn json_report<T: serde::Serialize>(
    result: Result<T, Error>,
    what: &'static str,
) -> Response {
    match result.map(|report| serde_json::to_vec_pretty(&report)) {
        Ok(Ok(body)) => (
            StatusCode::OK,
            [(header::CONTENT_TYPE, "application/json")],
            body,
        )
            .into_response(),
        Ok(Err(source)) => Error::Report { what, source }.into_response(),
        Err(e) => e.into_response(),
    }
}

/// Whether `request` comes from this machine, and names it as only a local client would. `what`
/// names the request in the refusal (`a purge`).
pub(super) fn local_client(request: &http::Request<Body>, what: &str) -> Result<(), String> {
    let Some(ConnectInfo(remote)) = request.extensions().get::<ConnectInfo<SocketAddr>>() else {
        return Err(format!(
            "{what} is answered only to clients on this machine, and this request's address \
             is unknown"
        ));
    };
    if !remote.ip().to_canonical().is_loopback() {
        return Err(format!(
            "{what} is answered only to clients on this machine (loopback), not to {}",
            remote.ip()
        ));
    }
    let host = request
        .uri()
        .authority()
        .map(|a| a.host().to_owned())
        .or_else(|| {
            let value = request.headers().get(header::HOST)?.to_str().ok()?;
            let authority: http::uri::Authority = value.parse().ok()?;
            Some(authority.host().to_owned())
        });
    match host {
        None => Ok(()),
        Some(host) => {
            let bare = host.trim_start_matches('[').trim_end_matches(']');
            if host.eq_ignore_ascii_case("localhost") || bare.parse::<IpAddr>().is_ok() {
                Ok(())
            } else {
                Err(format!(
                    "{what} must name the node by IP address or localhost, not {host:?} (a \
                     DNS name could point a web page at this machine)"
                ))
            }
        }
    }
}

/// The spec a purge path names: the ecosystem is its first segment, or its first two when those
/// name a registered ecosystem (`apt/debian`); the rest, percent-decoded, is `NAME[@VERSION]`.
fn spec_of(mirror: &Mirror, path: &str) -> Result<PurgeSpec, String> {
    let rest = path.strip_prefix(PURGE_PREFIX).unwrap_or_default();
    let (first, below) = rest.split_once('/').unwrap_or((rest, ""));
    let (ecosystem, raw) = match below.split_once('/') {
        Some((second, raw)) if mirror.ecosystem(first).is_none() => {
            let two = format!("{first}/{second}");
            if mirror.ecosystem(&two).is_some() {
                (two, raw)
            } else {
                (first.to_owned(), below)
            }
        }
        _ => (first.to_owned(), below),
    };
    let target = percent_encoding::percent_decode_str(raw)
        .decode_utf8()
        .map_err(|_| format!("{path}: the package name is not percent-encoded UTF-8"))?;
    if target.chars().any(char::is_control) {
        return Err(format!(
            "{path}: the package name holds a control character"
        ));
    }
    PurgeSpec::from_parts(ecosystem, &target).map_err(|why| format!("{path}: {why}"))
}
