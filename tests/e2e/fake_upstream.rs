//! The one fake upstream under the fake registries (`fake_npm.rs`, `fake_cargo.rs`,
//! `fake_pypi.rs`, `fake_apt.rs`): it owns the listeners on 127.0.0.1:0, the request log and
//! counters, and the fault switches; a registry gives only its routes and content ([`Routes`]).
//!
//! Faults, flipped by tests while it runs, apply to every registry alike:
//! - `down`: every request answered 503 (counted all the same);
//! - `malformed`: a document answered with an HTML error page and a 200;
//! - `tampered`: a file served with one byte flipped, same length;
//! - `throttled`: a file streamed in small chunks with a pause between them.
//!
//! A fault names a percent-decoded request path without its leading `/`, or its end after a
//! `/` (`evil-1.0.0.crate` names `files/ev/il/evil/evil-1.0.0.crate`).

use std::collections::{HashMap, HashSet};
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::Duration;

use axum::body::Body;
use axum::extract::State;
use axum::response::{IntoResponse, Response};
use bytes::Bytes;

use crate::support::runtime;

/// Requests a fake upstream has seen, by path (without the leading `/`).
#[derive(Default)]
pub struct Hits(Mutex<HashMap<String, usize>>);

impl Hits {
    fn lock(&self) -> MutexGuard<'_, HashMap<String, usize>> {
        self.0.lock().unwrap_or_else(|p| p.into_inner())
    }

    pub fn record(&self, path: &str) {
        *self.lock().entry(path.to_owned()).or_default() += 1;
    }

    pub fn get(&self, path: &str) -> usize {
        self.lock().get(path).copied().unwrap_or(0)
    }

    pub fn total(&self) -> usize {
        self.lock().values().sum()
    }
}

/// A listener on a free port of 127.0.0.1, for a fake upstream.
pub fn bind_local() -> tokio::net::TcpListener {
    runtime()
        .block_on(tokio::net::TcpListener::bind("127.0.0.1:0"))
        .expect("bind 127.0.0.1:0")
}

/// Serve a fake upstream on the shared runtime for the rest of the test run.
pub fn serve_fake(listener: tokio::net::TcpListener, app: axum::Router) {
    runtime().spawn(async move {
        let _ = axum::serve(listener, app).await;
    });
}

fn lock<T>(m: &Mutex<T>) -> MutexGuard<'_, T> {
    m.lock().unwrap_or_else(|p| p.into_inner())
}

/// The behaviour switches, flipped by tests while the fake runs.
#[derive(Default)]
pub struct Faults {
    /// Every request answered 503.
    pub down: AtomicBool,
    /// Files served with one byte flipped ([`tampered`]).
    pub tampered: Mutex<HashSet<String>>,
    /// Documents served as an HTML error page.
    pub malformed: Mutex<HashSet<String>>,
    /// Files streamed slowly: (chunk bytes, pause between chunks).
    pub throttled: Mutex<HashMap<String, (usize, Duration)>>,
}

/// True when `entry` names `path`: the whole path, or its end after a `/`.
fn names(entry: &str, path: &str) -> bool {
    path == entry
        || path
            .strip_suffix(entry)
            .is_some_and(|start| start.ends_with('/'))
}

impl Faults {
    /// Serve the file `path` names with one byte flipped.
    pub fn tamper(&self, path: &str) {
        lock(&self.tampered).insert(path.to_owned());
    }

    /// Serve every file as it is again.
    pub fn mend(&self) {
        lock(&self.tampered).clear();
    }

    /// Answer every request with 503 (or serve again).
    pub fn set_down(&self, down: bool) {
        self.down.store(down, Ordering::SeqCst);
    }

    fn is_tampered(&self, path: &str) -> bool {
        lock(&self.tampered).iter().any(|e| names(e, path))
    }

    fn is_malformed(&self, path: &str) -> bool {
        lock(&self.malformed).iter().any(|e| names(e, path))
    }

    fn throttle(&self, path: &str) -> Option<(usize, Duration)> {
        lock(&self.throttled)
            .iter()
            .find(|(e, _)| names(e, path))
            .map(|(_, t)| *t)
    }
}

/// `bytes` as a tampered file is served: the middle byte flipped.
pub fn tampered(bytes: &[u8]) -> Vec<u8> {
    let mut out = bytes.to_vec();
    if !out.is_empty() {
        let middle = out.len() / 2;
        out[middle] ^= 0x01;
    }
    out
}

/// A request as the registry's routes see it.
pub struct Request {
    /// The path percent-decoded (a `+` stays a `+`: this is a path, not a form).
    pub path: String,
    pub headers: http::HeaderMap,
    /// The body, read whole (at most 16 MiB).
    pub body: Bytes,
}

/// A private registry's refusal of `request` when `required` is set and the request does not
/// carry exactly that `Authorization`: a `401` with a `challenge`.
pub fn unauthorized(
    request: &Request,
    required: Option<&str>,
    challenge: &str,
) -> Option<Response> {
    let required = required?;
    let presented = request.headers.get(http::header::AUTHORIZATION);
    if presented.is_some_and(|p| p.as_bytes() == required.as_bytes()) {
        return None;
    }
    Some(
        (
            http::StatusCode::UNAUTHORIZED,
            [(http::header::WWW_AUTHENTICATE, challenge.to_owned())],
            "authentication required",
        )
            .into_response(),
    )
}

/// What a fake registry serves: its answer to a request, before any fault.
pub trait Routes: Send + Sync + 'static {
    fn answer(&self, request: &Request) -> Response;
}

struct Shared {
    routes: Box<dyn Routes>,
    faults: Arc<Faults>,
    /// By path as sent.
    raw_hits: Hits,
    /// By decoded path.
    hits: Arc<Hits>,
    /// Request paths as sent (with the leading `/`), in order.
    requests: Mutex<Vec<String>>,
    /// Requests being answered now (a throttled body until its last byte), and the most at once.
    in_flight: AtomicUsize,
    most_in_flight: AtomicUsize,
}

/// Counts a request as being answered for as long as it lives.
struct Answering(Arc<Shared>);

impl Answering {
    fn new(shared: &Arc<Shared>) -> Answering {
        let now = shared.in_flight.fetch_add(1, Ordering::SeqCst) + 1;
        shared.most_in_flight.fetch_max(now, Ordering::SeqCst);
        Answering(shared.clone())
    }
}

impl Drop for Answering {
    fn drop(&mut self) {
        self.0.in_flight.fetch_sub(1, Ordering::SeqCst);
    }
}

/// A running fake upstream.
pub struct FakeUpstream {
    /// Each origin's URL (`http://127.0.0.1:PORT/`), in the order asked for.
    pub origins: Vec<String>,
    pub faults: Arc<Faults>,
    shared: Arc<Shared>,
}

impl FakeUpstream {
    /// Listen on `origins` ports of 127.0.0.1 (registries serve files from a second origin),
    /// all answering with the routes `routes` makes from the origins' URLs.
    pub fn start<R: Routes>(origins: usize, routes: impl FnOnce(&[String]) -> R) -> FakeUpstream {
        let listeners: Vec<_> = (0..origins).map(|_| bind_local()).collect();
        let urls: Vec<String> = listeners
            .iter()
            .map(|l| format!("http://{}/", l.local_addr().expect("address")))
            .collect();
        let faults = Arc::new(Faults::default());
        let shared = Arc::new(Shared {
            routes: Box::new(routes(&urls)),
            faults: faults.clone(),
            raw_hits: Hits::default(),
            hits: Arc::default(),
            requests: Mutex::default(),
            in_flight: AtomicUsize::new(0),
            most_in_flight: AtomicUsize::new(0),
        });
        for listener in listeners {
            serve_fake(
                listener,
                axum::Router::new()
                    .fallback(handle)
                    .with_state(shared.clone()),
            );
        }
        FakeUpstream {
            origins: urls,
            faults,
            shared,
        }
    }

    /// Requests seen for a path as sent (without the leading `/`).
    pub fn hits(&self, raw_path: &str) -> usize {
        self.shared.raw_hits.get(raw_path)
    }

    /// Requests seen, by percent-decoded path.
    pub fn decoded_hits(&self) -> Arc<Hits> {
        self.shared.hits.clone()
    }

    /// Requests seen in all.
    pub fn total_hits(&self) -> usize {
        self.shared.raw_hits.total()
    }

    /// The request paths as sent (`/debian/pool/…%2b…`), in order.
    pub fn requests(&self) -> Vec<String> {
        lock(&self.shared.requests).clone()
    }

    /// The most requests answered at once (a throttled one until its last byte) since the last
    /// call.
    pub fn take_most_in_flight(&self) -> usize {
        self.shared.most_in_flight.swap(0, Ordering::SeqCst)
    }
}

/// `%xx` escapes decoded (a `+` stays a `+`).
fn percent_decode(s: &str) -> Option<String> {
    let mut out = Vec::with_capacity(s.len());
    let mut rest = s.as_bytes();
    while let Some((&b, tail)) = rest.split_first() {
        if b == b'%' {
            let hex = std::str::from_utf8(tail.get(..2)?).ok()?;
            out.push(u8::from_str_radix(hex, 16).ok()?);
            rest = &tail[2..];
        } else {
            out.push(b);
            rest = tail;
        }
    }
    String::from_utf8(out).ok()
}

async fn handle(State(shared): State<Arc<Shared>>, request: http::Request<Body>) -> Response {
    let answering = Answering::new(&shared);
    let sent = request.uri().path().to_owned();
    lock(&shared.requests).push(sent.clone());
    let raw_path = sent.trim_start_matches('/').to_owned();
    shared.raw_hits.record(&raw_path);
    let Some(path) = percent_decode(&raw_path) else {
        return (http::StatusCode::BAD_REQUEST, "bad escape").into_response();
    };
    shared.hits.record(&path);
    let faults = &shared.faults;
    if faults.down.load(Ordering::SeqCst) {
        return (http::StatusCode::SERVICE_UNAVAILABLE, "down for the test").into_response();
    }
    if faults.is_malformed(&path) {
        return (
            [(http::header::CONTENT_TYPE, "text/html")],
            "<html><body>upstream error page</body></html>",
        )
            .into_response();
    }
    let (parts, body) = request.into_parts();
    let Ok(body) = axum::body::to_bytes(body, 16 << 20).await else {
        return (http::StatusCode::PAYLOAD_TOO_LARGE, "body over 16 MiB").into_response();
    };
    let request = Request {
        path,
        headers: parts.headers,
        body,
    };
    let response = shared.routes.answer(&request);
    let (tamper, throttle) = (
        faults.is_tampered(&request.path),
        faults.throttle(&request.path),
    );
    if !response.status().is_success() || (!tamper && throttle.is_none()) {
        return response;
    }
    let (mut parts, body) = response.into_parts();
    let Ok(mut bytes) = axum::body::to_bytes(body, usize::MAX).await else {
        return (http::StatusCode::INTERNAL_SERVER_ERROR, "unreadable body").into_response();
    };
    if tamper {
        bytes = Bytes::from(tampered(&bytes));
    }
    let Some((chunk, pause)) = throttle else {
        return Response::from_parts(parts, Body::from(bytes));
    };
    parts.headers.insert(
        http::header::CONTENT_LENGTH,
        http::HeaderValue::from(bytes.len()),
    );
    let chunks: Vec<Bytes> = bytes
        .chunks(chunk.max(1))
        .map(Bytes::copy_from_slice)
        .collect();
    // Answering until the last chunk is sent (or the stream dropped).
    let state = (chunks.into_iter(), answering);
    let stream = futures_util::stream::unfold(state, move |(mut it, answering)| async move {
        let next = it.next()?;
        tokio::time::sleep(pause).await;
        Some((Ok::<_, std::io::Error>(next), (it, answering)))
    });
    Response::from_parts(parts, Body::from_stream(stream))
}

#[test]
fn a_fault_names_a_whole_path_or_its_end_after_a_slash() {
    assert!(names("lib-d", "lib-d"));
    assert!(names(
        "evil-1.0.0.crate",
        "files/ev/il/evil/evil-1.0.0.crate"
    ));
    assert!(names("pool/main/x.deb", "debian/pool/main/x.deb"));
    assert!(!names("lib-d", "lib-d/-/lib-d-1.0.0.tgz"));
    assert!(!names(
        "evil-1.0.0.crate",
        "files/ev/il/xevil/xevil-1.0.0.crate"
    ));
}
