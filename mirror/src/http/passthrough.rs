//! Requests relayed upstream as they are and never cached (npm's audit endpoints), bounded in
//! both directions and never carrying the upstream's credentials.

use axum::body::Body;
use axum::response::{IntoResponse, Response};
use bytes::Bytes;
use http::Method;
use http::header::{self};
use url::Url;

use crate::engine::{Mirror, Registered};
use crate::error::Error;

use super::{MAX_FORWARD_BODY, MAX_PASSTHROUGH_ANSWER};

/// True when the path part of `upstream_path` has a dot segment, an encoded slash or
/// backslash, or a backslash: anything that could make it name another upstream path once
/// joined or decoded.
pub(super) fn escapes_its_path(upstream_path: &str) -> bool {
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
pub(super) async fn passthrough(
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
pub(super) async fn read_answer(
    mut response: reqwest::Response,
    url: &Url,
) -> Result<Bytes, Error> {
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
