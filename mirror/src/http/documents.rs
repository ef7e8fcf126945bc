//! Metadata responses: rendered documents with strong ETags (304s), gzip when asked, and `Age`
//! plus a `Warning` when the copy is stale.

use axum::body::Body;
use axum::response::{IntoResponse, Response};
use http::header::{self, HeaderMap, HeaderValue};
use http::{Method, StatusCode};

use crate::ecosystem::MetadataRoute;
use crate::engine::{MetadataHit, Mirror, Registered, RenderAhead, http_date, now_ms};
use crate::error::Error;
use crate::policy::AsOf;

use super::routes::base_url;
use super::{GZIP_MIN, error_response, matches_etag};

/// Longest reason a `Warning` header carries (upstream errors can be long).
pub(super) const MAX_WARNING_REASON: usize = 300;

/// The `Warning: 110` value of a stale metadata answer: that a stale copy was served, how old it
/// is, and why it was not revalidated. The text is one quoted string of visible ASCII.
pub(super) fn stale_warning(age_secs: i64, reason: &str) -> String {
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
pub(super) fn human_age(secs: i64) -> String {
    let secs = secs.max(0);
    let (d, h, m, s) = (secs / 86_400, secs / 3600 % 24, secs / 60 % 60, secs % 60);
    match (d, h, m) {
        (0, 0, 0) => format!("{s}s"),
        (0, 0, _) => format!("{m}m {s}s"),
        (0, _, _) => format!("{h}h {m}m"),
        _ => format!("{d}d {h}h"),
    }
}

pub(super) async fn metadata(
    mirror: &Mirror,
    registered: &Registered,
    route: &MetadataRoute,
    part: Option<&str>,
    request: &http::request::Parts,
) -> Result<Response, Error> {
    let base = base_url(mirror, &registered.mount, request)?;
    let as_of = request.extensions.get::<AsOf>();
    // A whole document in today's view can be rendered beside its fetch.
    let ahead = (part.is_none() && as_of.is_none()).then(|| RenderAhead {
        base: base.clone(),
        gzip: accepts_gzip(&request.headers),
        for_token_clients: false,
    });
    let hit: MetadataHit = mirror.metadata_for(registered, route, ahead).await?;
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
    let doc = mirror
        .render(registered, route, part, &hit, &base, as_of)
        .await?;
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
        HeaderValue::from_str(&etag).map_err(|source| Error::Header {
            what: format!("the ETag {etag}"),
            source,
        })?,
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
        HeaderValue::from_str(&format!("public, max-age={}", (ttl - age_secs).max(0))).map_err(
            |source| Error::Header {
                what: "Cache-Control".to_owned(),
                source,
            },
        )?,
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
    mirror
        .metrics()
        .served(registered.ecosystem.name(), "cache", body.len() as u64);
    if request.method == Method::HEAD {
        headers.insert(header::CONTENT_LENGTH, HeaderValue::from(body.len()));
        return Ok((headers, Body::empty()).into_response());
    }
    Ok((headers, body).into_response())
}

/// True when `If-Modified-Since` is at or after `last_modified` (apt revalidates only by date).
pub(super) fn not_modified_since(headers: &HeaderMap, last_modified: &HeaderValue) -> bool {
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
pub(super) fn accepts_gzip(headers: &HeaderMap) -> bool {
    headers
        .get_all(header::ACCEPT_ENCODING)
        .iter()
        .filter_map(|v| v.to_str().ok())
        .flat_map(crate::negotiate::q_values)
        .any(|(coding, q)| (coding == "gzip" || coding == "*") && q > 0.0)
}
