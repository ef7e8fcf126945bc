//! The IPFS HTTP trustless gateway on `/ipfs/{cid}` (docs/protocols.md): any block this node
//! holds, as a raw block or as a CAR v1 of the DAG under it, for any IPFS tool.
//!
//! Goals: serve every held block ([`crate::blocks`]) verified; stream CARs in constant memory
//! (one blocking thread walks the DAG and writes into a bounded channel); answer `dag-scope`,
//! `entity-bytes` and the CAR parameters of IPIP-412; never contact an upstream or a peer: a
//! block that is not held is a 404 (412 under `Cache-Control: only-if-cached`).
//!
//! Non-goals: paths under a CID (artifacts are files: `/ipfs/{cid}/x` is a 404 for CARs, a 400
//! for blocks), deserialized responses (strict trustless mode: no `format` and no acceptable
//! `Accept` is a 400), `/ipns/`, Range on responses.
//!
//! Negotiation: `format=raw|car` beats `Accept`; CAR parameters come from the chosen `Accept`
//! item, overridden by `car-version`, `car-order`, `car-dups`. Cairn writes CAR version 1 in
//! `dfs` order (which also satisfies `unk`), with `dups=n` unless `dups=y` is asked for; any
//! other version or order is a 400. The `Content-Type` always says what was sent.
//!
//! A missing or corrupt child block after the `200` aborts the body (logged): the CAR ends at a
//! block boundary and the transfer is incomplete, which clients detect.

use std::io::{self, Write};

use axum::body::Body;
use axum::response::{IntoResponse, Response};
use bytes::Bytes;
use cid::Cid;
use http::header::{self, HeaderMap, HeaderName, HeaderValue};
use http::{Method, StatusCode};
use tokio::sync::mpsc;

use crate::blocks::{Blocks, DagScope, EntityBytes, Location, MAX_BLOCK_SIZE, Selector, Walk};
use crate::car::CarWriter;
use crate::engine::{Mirror, blocking};
use crate::error::Error;

const RAW_TYPE: &str = "application/vnd.ipld.raw";
const CAR_TYPE: &str = "application/vnd.ipld.car";
/// Bytes of CAR buffered before they are handed to the connection.
const CAR_CHUNK: usize = 256 << 10;
/// CAR chunks queued between the walking thread and the connection.
const CAR_QUEUE: usize = 4;

const STRICT: &str = "this is a trustless gateway: ask for a block with ?format=raw \
    (Accept: application/vnd.ipld.raw) or for a CAR with ?format=car \
    (Accept: application/vnd.ipld.car)";

/// What the client asked for.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Format {
    Raw,
    /// A CAR v1 in dfs order; `true` when duplicates are to be sent (`dups=y`).
    Car {
        dups: bool,
    },
}

/// The query parameters the gateway reads (first occurrence of each).
#[derive(Debug, Default, PartialEq, Eq)]
struct Query {
    format: Option<String>,
    dag_scope: Option<String>,
    entity_bytes: Option<String>,
    car_version: Option<String>,
    car_order: Option<String>,
    car_dups: Option<String>,
}

impl Query {
    fn parse(query: Option<&str>) -> Query {
        let mut out = Query::default();
        for (key, value) in url::form_urlencoded::parse(query.unwrap_or("").as_bytes()) {
            let slot = match key.as_ref() {
                "format" => &mut out.format,
                "dag-scope" => &mut out.dag_scope,
                "entity-bytes" => &mut out.entity_bytes,
                "car-version" => &mut out.car_version,
                "car-order" => &mut out.car_order,
                "car-dups" => &mut out.car_dups,
                _ => continue,
            };
            slot.get_or_insert_with(|| value.into_owned());
        }
        out
    }
}

/// One item of an `Accept` header: its media type (lower case), parameters and q-value.
#[derive(Debug, PartialEq)]
struct AcceptItem {
    media: String,
    params: Vec<(String, String)>,
    q: f32,
}

impl AcceptItem {
    fn param(&self, name: &str) -> Option<&str> {
        self.params
            .iter()
            .find(|(key, _)| key == name)
            .map(|(_, value)| value.as_str())
    }
}

/// The items of `Accept` headers with a q-value above 0, most preferred first (stable).
fn accept_items<'a>(values: impl IntoIterator<Item = &'a str>) -> Vec<AcceptItem> {
    let mut items: Vec<AcceptItem> = values
        .into_iter()
        .flat_map(|value| value.split(','))
        .filter_map(|item| {
            let mut parts = item.split(';');
            let media = parts.next()?.trim().to_ascii_lowercase();
            if media.is_empty() {
                return None;
            }
            let mut q = 1.0;
            let mut params = Vec::new();
            for part in parts {
                let Some((key, value)) = part.split_once('=') else {
                    continue;
                };
                let key = key.trim().to_ascii_lowercase();
                let value = value.trim().trim_matches('"').to_ascii_lowercase();
                if key == "q" {
                    q = value.parse().unwrap_or(0.0);
                } else {
                    params.push((key, value));
                }
            }
            Some(AcceptItem { media, params, q })
        })
        .filter(|item| item.q > 0.0)
        .collect();
    items.sort_by(|a, b| b.q.total_cmp(&a.q));
    items
}

/// The CAR variant to send, from the `Accept` item's parameters (if any) and the query, which
/// takes precedence; an error says what cannot be produced.
fn car_variant(item: Option<&AcceptItem>, query: &Query) -> Result<Format, String> {
    let pick = |query: &Option<String>, name: &str| {
        query
            .as_deref()
            .map(str::to_owned)
            .or_else(|| item.and_then(|i| i.param(name)).map(str::to_owned))
    };
    match pick(&query.car_version, "version").as_deref() {
        None | Some("1") => {}
        Some(other) => {
            return Err(format!(
                "CAR version {other} is not supported: this gateway writes version=1"
            ));
        }
    }
    match pick(&query.car_order, "order").as_deref() {
        None | Some("dfs" | "unk" | "") => {}
        Some(other) => {
            return Err(format!(
                "CAR order {other} is not supported: this gateway writes order=dfs"
            ));
        }
    }
    match pick(&query.car_dups, "dups").as_deref() {
        None | Some("n" | "") => Ok(Format::Car { dups: false }),
        Some("y") => Ok(Format::Car { dups: true }),
        Some(other) => Err(format!("CAR dups={other} is not one of y, n")),
    }
}

/// Choose the response format: `format` first, then the most preferred acceptable `Accept` item.
fn negotiate<'a>(
    accept: impl IntoIterator<Item = &'a str>,
    query: &Query,
) -> Result<Format, String> {
    let wanted = match query.format.as_deref() {
        None => None,
        Some("raw") => Some(RAW_TYPE),
        Some("car") => Some(CAR_TYPE),
        Some(other) => {
            return Err(format!("format={other} is not served: {STRICT}"));
        }
    };
    let mut refused = None;
    for item in accept_items(accept) {
        if wanted.is_some_and(|w| w != item.media) {
            continue;
        }
        match item.media.as_str() {
            RAW_TYPE => return Ok(Format::Raw),
            CAR_TYPE => match car_variant(Some(&item), query) {
                Ok(format) => return Ok(format),
                Err(why) => {
                    refused.get_or_insert(why);
                }
            },
            _ => {}
        }
    }
    match (refused, wanted) {
        (Some(why), _) => Err(why),
        (None, Some(RAW_TYPE)) => Ok(Format::Raw),
        (None, Some(_)) => car_variant(None, query),
        (None, None) => Err(STRICT.to_owned()),
    }
}

/// The walk a CAR request asks for.
fn selector(query: &Query, dups: bool) -> Result<Selector, String> {
    let scope = match query.dag_scope.as_deref() {
        Some(scope) => scope.parse::<DagScope>()?,
        None => DagScope::default(),
    };
    let bytes = match query.entity_bytes.as_deref() {
        Some(bytes) => Some(bytes.parse::<EntityBytes>()?),
        None => None,
    };
    Ok(Selector { scope, bytes, dups })
}

/// The strong ETag of a CAR response: the CID plus a hash of everything that shapes the body.
fn car_etag(cid: &Cid, selector: &Selector) -> String {
    let scope = if selector.bytes.is_some() {
        DagScope::Entity
    } else {
        selector.scope
    };
    let shape = format!(
        "version=1;order=dfs;dups={};dag-scope={scope};entity-bytes={}",
        if selector.dups { "y" } else { "n" },
        selector.bytes.map(|b| b.to_string()).unwrap_or_default()
    );
    let digest = crate::cid::sha256(shape.as_bytes());
    format!("\"{cid}.car.{}\"", hex::encode(&digest[..8]))
}

fn car_content_type(dups: bool) -> &'static str {
    if dups {
        "application/vnd.ipld.car; version=1; order=dfs; dups=y"
    } else {
        "application/vnd.ipld.car; version=1; order=dfs; dups=n"
    }
}

/// Serve `GET`/`HEAD /ipfs/…`; returns the metrics kind (`raw`, `car`, `other`) and the response.
///
/// Cancel-safe: it only reads. Dropping a CAR body mid-stream stops the walking thread at its
/// next chunk.
pub(crate) async fn handle(
    mirror: &Mirror,
    request: http::Request<Body>,
) -> (&'static str, Response) {
    let (parts, _body) = request.into_parts();
    let query = Query::parse(parts.uri.query());
    let format = negotiate(
        parts
            .headers
            .get_all(header::ACCEPT)
            .iter()
            .filter_map(|v| v.to_str().ok()),
        &query,
    );
    let kind = match format {
        Ok(Format::Raw) => "raw",
        Ok(Format::Car { .. }) => "car",
        Err(_) => "other",
    };
    let response = serve(mirror, &parts, &query, format)
        .await
        .unwrap_or_else(IntoResponse::into_response);
    (kind, response)
}

/// [`handle`] once the format is known. Cancel-safe.
async fn serve(
    mirror: &Mirror,
    parts: &http::request::Parts,
    query: &Query,
    format: Result<Format, String>,
) -> Result<Response, Error> {
    if !matches!(parts.method, Method::GET | Method::HEAD) {
        return Err(Error::MethodNotAllowed(format!(
            "{} {}: the gateway answers GET and HEAD",
            parts.method,
            parts.uri.path()
        )));
    }
    let path = parts.uri.path();
    let below = path.strip_prefix("/ipfs/").unwrap_or_default();
    let (cid_text, subpath) = below.split_once('/').unwrap_or((below, ""));
    let format = format.map_err(Error::BadRequest)?;
    let cid: Cid = cid_text
        .parse()
        .map_err(|e| Error::BadRequest(format!("invalid CID {cid_text:?}: {e}")))?;
    if !subpath.trim_matches('/').is_empty() {
        return Err(match format {
            Format::Raw => Error::BadRequest(format!(
                "{path}: a block is asked for by CID alone, without a path"
            )),
            Format::Car { .. } => Error::NotFound(format!(
                "{path}: paths under a CID are not served (Cairn holds files); ask for /ipfs/{cid_text}"
            )),
        });
    }
    let blocks = mirror.blocks();
    let only_if_cached = parts
        .headers
        .get_all(header::CACHE_CONTROL)
        .iter()
        .filter_map(|v| v.to_str().ok())
        .any(|v| v.to_ascii_lowercase().contains("only-if-cached"));
    let not_held = || -> Response {
        let message =
            format!("{cid} is not held by this node (it never fetches on a gateway request)");
        if only_if_cached {
            crate::http::error_response(StatusCode::PRECONDITION_FAILED, &message)
        } else {
            Error::NotFound(message).into_response()
        }
    };
    let car = match format {
        Format::Raw => None,
        Format::Car { dups } => Some(selector(query, dups).map_err(Error::BadRequest)?),
    };
    let (content_type, etag, extension, format_name) = match car {
        None => (RAW_TYPE, format!("\"{cid}.raw\""), "bin", "raw"),
        Some(selector) => (
            car_content_type(selector.dups),
            car_etag(&cid, &selector),
            "car",
            "car",
        ),
    };
    let mut headers = HeaderMap::with_capacity(12);
    let value = |s: &str| {
        HeaderValue::from_str(s).map_err(|source| Error::Header {
            what: format!("{s:?}"),
            source,
        })
    };
    headers.insert(header::CONTENT_TYPE, HeaderValue::from_static(content_type));
    headers.insert(header::ETAG, value(&etag)?);
    headers.insert(
        header::CACHE_CONTROL,
        HeaderValue::from_static("public, max-age=29030400, immutable"),
    );
    headers.insert(
        header::CONTENT_DISPOSITION,
        value(&format!("attachment; filename=\"{cid}.{extension}\""))?,
    );
    headers.insert(
        header::X_CONTENT_TYPE_OPTIONS,
        HeaderValue::from_static("nosniff"),
    );
    headers.insert(header::VARY, HeaderValue::from_static("Accept"));
    headers.insert(
        HeaderName::from_static("x-ipfs-path"),
        value(path).or_else(|_| value(&format!("/ipfs/{cid}")))?,
    );
    headers.insert(
        HeaderName::from_static("x-ipfs-roots"),
        value(&cid.to_string())?,
    );
    if query.format.is_none() {
        let location = match parts.uri.query() {
            Some(q) if !q.is_empty() => format!("{path}?{q}&format={format_name}"),
            _ => format!("{path}?format={format_name}"),
        };
        if let Ok(location) = value(&location) {
            headers.insert(header::CONTENT_LOCATION, location);
        }
    }
    if crate::http::matches_etag(&parts.headers, &etag) {
        return Ok((StatusCode::NOT_MODIFIED, headers).into_response());
    }
    let head = parts.method == Method::HEAD;
    match car {
        None => raw(mirror, blocks, cid, headers, head, not_held).await,
        Some(selector) => {
            let walk = blocking(move || Ok(blocks.walk(cid, selector)?)).await?;
            let Some(walk) = walk else {
                return Ok(not_held());
            };
            if head {
                return Ok((headers, Body::empty()).into_response());
            }
            Ok((headers, car_body(mirror.clone(), walk)).into_response())
        }
    }
}

/// A raw block's body, as read on a blocking thread.
enum RawBody {
    /// Verified bytes.
    Bytes(Bytes),
    /// A flat file too big to re-hash (verified at ingest), streamed.
    File(std::fs::File, u64),
    /// `HEAD`: only the size.
    Size(u64),
}

/// A raw block: read and verified, or streamed when it is a flat file over the block limit.
/// Cancel-safe.
async fn raw(
    mirror: &Mirror,
    blocks: Blocks,
    cid: Cid,
    mut headers: HeaderMap,
    head: bool,
    not_held: impl FnOnce() -> Response,
) -> Result<Response, Error> {
    let body = blocking(move || {
        let Some(location) = blocks.locate(&cid)? else {
            return Ok(None);
        };
        Ok(Some(match &location {
            _ if head => RawBody::Size(location.size()),
            Location::Flat { flat, size, .. } if *size > MAX_BLOCK_SIZE => {
                RawBody::File(blocks.flat_blob(flat).open()?, *size)
            }
            _ => RawBody::Bytes(blocks.read(&cid, &location)?),
        }))
    })
    .await?;
    let Some(body) = body else {
        return Ok(not_held());
    };
    let (len, body) = match body {
        RawBody::Size(len) => (len, Body::empty()),
        RawBody::Bytes(bytes) => (bytes.len() as u64, Body::from(bytes)),
        RawBody::File(file, len) => {
            let file = tokio::fs::File::from_std(file);
            let stream = tokio_util::io::ReaderStream::with_capacity(file, CAR_CHUNK);
            (len, Body::from_stream(stream))
        }
    };
    headers.insert(header::CONTENT_LENGTH, HeaderValue::from(len));
    if !head {
        mirror.metrics().served("ipfs", "cache", len);
    }
    Ok((headers, body).into_response())
}

/// Stream the CAR of `walk`: a blocking thread walks and writes, the connection reads.
fn car_body(mirror: Mirror, walk: Walk) -> Body {
    let (tx, rx) = mpsc::channel(CAR_QUEUE);
    tokio::task::spawn_blocking(move || write_car(&mirror, walk, tx));
    Body::from_stream(futures_util::stream::unfold(rx, |mut rx| async move {
        rx.recv().await.map(|item| (item, rx))
    }))
}

type Chunk = Result<Bytes, io::Error>;

/// Buffers CAR bytes and sends them to the connection in chunks; fails once the client is gone.
struct ChannelWriter {
    tx: mpsc::Sender<Chunk>,
    buf: Vec<u8>,
}

impl ChannelWriter {
    fn send(&mut self, chunk: Chunk) -> io::Result<()> {
        self.tx
            .blocking_send(chunk)
            .map_err(|_| io::Error::new(io::ErrorKind::BrokenPipe, "the client went away"))
    }
}

impl Write for ChannelWriter {
    fn write(&mut self, data: &[u8]) -> io::Result<usize> {
        self.buf.extend_from_slice(data);
        if self.buf.len() >= CAR_CHUNK {
            self.flush()?;
        }
        Ok(data.len())
    }

    fn flush(&mut self) -> io::Result<()> {
        if self.buf.is_empty() {
            return Ok(());
        }
        let chunk = Bytes::from(std::mem::replace(
            &mut self.buf,
            Vec::with_capacity(CAR_CHUNK),
        ));
        self.send(Ok(chunk))
    }
}

/// Why a CAR stream stopped early.
enum Stopped {
    /// The connection is gone (or could not be written).
    Io(io::Error),
    /// A block of the DAG could not be read: the CAR is truncated.
    Block(crate::blocks::BlockError),
}

fn write_blocks(out: &mut ChannelWriter, walk: Walk) -> Result<u64, Stopped> {
    let root = *walk.root();
    let mut car = CarWriter::new(&mut *out, &[root]).map_err(Stopped::Io)?;
    for block in walk {
        let (cid, data) = block.map_err(Stopped::Block)?;
        car.write_block(&cid, &data).map_err(Stopped::Io)?;
    }
    let written = car.bytes_written();
    car.finish().map_err(Stopped::Io)?;
    Ok(written)
}

fn write_car(mirror: &Mirror, walk: Walk, tx: mpsc::Sender<Chunk>) {
    let root = *walk.root();
    let mut out = ChannelWriter {
        tx,
        buf: Vec::with_capacity(CAR_CHUNK),
    };
    match write_blocks(&mut out, walk) {
        Ok(written) => mirror.metrics().served("ipfs", "cache", written),
        Err(Stopped::Io(e)) => tracing::debug!(root = %root, error = %e, "CAR stream ended early"),
        Err(Stopped::Block(e)) => {
            tracing::warn!(root = %root, error = %e, "CAR truncated: a block of the DAG could not be read");
            // Hand over every whole block written so far, then abort the body so the client
            // sees an incomplete transfer rather than a short CAR that ends cleanly.
            let _ = out.flush();
            let _ = out.send(Err(io::Error::other(format!(
                "CAR of {root} truncated: {e}"
            ))));
        }
    }
}

#[cfg(test)]
mod tests;
