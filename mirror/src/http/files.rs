//! Artifact responses: immutable headers, cached files whole or by a single range, downloads
//! under way streamed as they arrive, and unkept streams when the store is full.

use std::sync::Arc;

use axum::body::Body;
use axum::response::{IntoResponse, Response};
use futures_util::StreamExt;
use http::header::{self, HeaderMap, HeaderValue};
use http::{Method, StatusCode};

use crate::ecosystem::ArtifactRoute;
use crate::engine::download::Download;
use crate::engine::{ArtifactBody, CachedArtifact, Keep, Mirror, Registered};
use crate::error::Error;
use crate::policy::AsOf;

use super::zerocopy::ZeroCopy;
use super::{READ_WHOLE, WAIT_HEADER, error_response, matches_etag, public_message};

pub(super) async fn artifact(
    mirror: &Mirror,
    registered: &Registered,
    route: &ArtifactRoute,
    request: &http::request::Parts,
) -> Result<Response, Error> {
    if let Some(as_of) = request.extensions.get::<AsOf>() {
        mirror.check_as_of(registered, route, as_of).await?;
    }
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
            // The ETag names the bytes by the registry's digest before they arrive: a client
            // that has them needs nothing from this download, not even its first byte.
            ArtifactBody::Downloading(download)
                if matches_etag(&request.headers, &format!("\"{}\"", download.flat)) =>
            {
                let headers = artifact_headers(flat_etag(&download.flat)?);
                return Ok((StatusCode::NOT_MODIFIED, headers).into_response());
            }
            // A Range is answered from the stored file: wait for the download to commit, then
            // look again (the next turn finds it cached).
            ArtifactBody::Downloading(download) if request.headers.contains_key(header::RANGE) => {
                match download.committed().await {
                    Ok(_) => {}
                    Err((StatusCode::INSUFFICIENT_STORAGE, _)) if keep == Keep::IfRoom => {
                        keep = Keep::Never;
                    }
                    Err((status, message)) => return Ok(error_response(status, &message)),
                }
            }
            ArtifactBody::Downloading(download) => match download.ready().await {
                // The store had no room for it, and this client has had nothing yet: stream
                // it unkept.
                Err((StatusCode::INSUFFICIENT_STORAGE, _)) if keep == Keep::IfRoom => {
                    keep = Keep::Never;
                }
                ready => {
                    return downloading(mirror, &registered.name, download, ready, request).await;
                }
            },
            ArtifactBody::Unkept(unkept) => return unkept_response(unkept, request).await,
        }
    }
    Err(Error::DamagedAgain {
        ecosystem: registered.ecosystem.name().to_owned(),
        key: route.key.clone(),
    })
}

/// The answer to a document or artifact request that failed: the error's own status, except
/// that a miss on an `--offline` node (a 504: no upstream to ask, and no peer had it) is a 404
/// for the keys whose clients read a 5xx as "retry" and a 404 as final or "try the next name"
/// ([`crate::ecosystem::Ecosystem::offline_miss_is_not_found`]).
pub(super) fn miss_error(
    mirror: &Mirror,
    registered: &Registered,
    key: &str,
    error: Error,
) -> Response {
    if mirror.config().offline
        && error.status() == StatusCode::GATEWAY_TIMEOUT
        && registered.ecosystem.offline_miss_is_not_found(key)
    {
        return error_response(StatusCode::NOT_FOUND, &public_message(&error));
    }
    error.into_response()
}

/// Headers of every artifact response: immutable bytes, named by their flat CID.
pub(super) fn artifact_headers(etag: HeaderValue) -> HeaderMap {
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
pub(super) fn immutable_headers(cached: &CachedArtifact) -> HeaderMap {
    let mut headers = artifact_headers(cached.etag.clone());
    headers.insert(header::LAST_MODIFIED, cached.last_modified.clone());
    headers.insert(header::ACCEPT_RANGES, HeaderValue::from_static("bytes"));
    headers.insert("x-ipfs-roots", cached.root.clone());
    headers
}

/// A single byte range `[start, end]` of a `size`-byte file, or why it cannot be served.
pub(super) fn parse_range(value: &str, size: u64) -> Option<Result<(u64, u64), ()>> {
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
pub(super) async fn cached_file(
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
                HeaderValue::from_str(&value).map_err(|source| Error::Header {
                    what: value.clone(),
                    source,
                })?,
            );
            (StatusCode::PARTIAL_CONTENT, start, end - start + 1)
        }
        Some(Err(())) => {
            headers.insert(
                header::CONTENT_RANGE,
                HeaderValue::from_str(&format!("bytes */{size}")).map_err(|source| {
                    Error::Header {
                        what: "Content-Range".to_owned(),
                        source,
                    }
                })?,
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
    let flat = cached.record.flat;
    let range = start as usize..(start + len) as usize;
    let body = if let Some(whole) = mirror.content().get(&flat) {
        // Checked when it was read from disk.
        Body::from(whole.slice(range))
    } else if size <= READ_WHOLE {
        // Small files are read whole once, checked, and then served from memory, sliced for
        // ranges.
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
        let Some(whole) = read else {
            return Ok(None);
        };
        mirror.content().insert(flat, whole.clone());
        Body::from(whole.slice(range))
    } else {
        // A whole read of a large file may fill the cache (`large_fills.rs`).
        let whole_read = start == 0 && len == size;
        let fits = usize::try_from(size).is_ok_and(|s| mirror.content().admits(s));
        let fill = if whole_read && fits {
            mirror.large_fills().begin(flat)
        } else {
            None
        };
        // A read that fills the cache checks every leaf, whatever was checked before.
        let check = fill.is_some();
        let (m, c) = (mirror.clone(), cached.clone());
        let opened = crate::engine::blocking(move || {
            Ok(match crate::engine::verified::open(&m, &c, check)? {
                Ok(opened) => Some(opened),
                Err(damage) => {
                    m.forget_damaged(&c, &damage);
                    None
                }
            })
        })
        .await?;
        let Some(opened) = opened else {
            return Ok(None);
        };
        // Checked moments ago, on a plain HTTP/1 connection: sent by the kernel.
        match request.extensions.get::<ZeroCopy>() {
            Some(zero_copy) if opened.checked_moments_ago() => {
                let (file, stamp) = opened.into_file();
                let counter = mirror.metrics().sent_from_files.clone();
                zero_copy.body(file, stamp, flat, (start, len), counter)
            }
            _ => crate::engine::verified::stream(
                mirror.clone(),
                cached.clone(),
                opened,
                (start, len),
                fill,
            ),
        }
    };
    mirror.metrics().served(&cached.ecosystem, "cache", len);
    Ok(Some((status, headers, body).into_response()))
}

/// The strong ETag of an artifact whose bytes are named by `flat` (its registry digest), known
/// before any of them arrive.
fn flat_etag(flat: &crate::cid::FlatCid) -> Result<HeaderValue, Error> {
    HeaderValue::from_str(&format!("\"{flat}\"")).map_err(|source| Error::Header {
        what: format!("the ETag of {flat}"),
        source,
    })
}

/// An artifact streamed without being kept: headers once upstream's are in, then the body as
/// it verifies.
pub(super) async fn unkept_response(
    mut unkept: crate::engine::unkept::Unkept,
    request: &http::request::Parts,
) -> Result<Response, Error> {
    let total = unkept.ready().await?;
    let mut headers = artifact_headers(flat_etag(&unkept.flat)?);
    if let Some(total) = total {
        headers.insert(header::CONTENT_LENGTH, HeaderValue::from(total));
    }
    if request.method == Method::HEAD {
        return Ok((headers, Body::empty()).into_response());
    }
    Ok((headers, Body::from_stream(unkept.into_stream())).into_response())
}

pub(super) async fn downloading(
    mirror: &Mirror,
    ecosystem: &Arc<str>,
    download: Arc<Download>,
    ready: Result<Option<u64>, (StatusCode, String)>,
    request: &http::request::Parts,
) -> Result<Response, Error> {
    let total = match ready {
        Ok(total) => total,
        Err((status, message)) => return Ok(error_response(status, &message)),
    };
    // The bytes are immutable and named before they arrive: a conditional request was answered
    // at once, and a Range waits for the cache (both in `artifact`).
    let wait_for_index = request
        .headers
        .get(WAIT_HEADER)
        .is_some_and(|v| v.as_bytes() == b"committed");
    let mut headers = artifact_headers(flat_etag(&download.flat)?);
    // A client told the length stops reading at the last byte: a body that must end only once
    // the file is indexed goes without one (chunked, so the end is the last chunk's).
    if let Some(total) = total.filter(|_| !wait_for_index) {
        headers.insert(header::CONTENT_LENGTH, HeaderValue::from(total));
    }
    if request.method == Method::HEAD {
        return Ok((headers, Body::empty()).into_response());
    }
    let mut tally = crate::engine::download::ServedTally::new(
        download.clone(),
        mirror.clone(),
        ecosystem.clone(),
    );
    let stream = download.clone().stream().map(move |chunk| {
        if let Ok(bytes) = &chunk {
            tally.sent(bytes.len() as u64);
        }
        chunk
    });
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
