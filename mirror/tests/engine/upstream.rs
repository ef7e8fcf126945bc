//! A fake upstream for the engine tests: files by path on 127.0.0.1:0, each with an ETag and a
//! Last-Modified, answering conditional requests with 304, counting every request and every 304
//! by path, and switches for the faults the engine must survive (every answer a given status,
//! bytes other than the ones it lists, and going away altogether).

use std::collections::HashMap;
use std::sync::{Arc, Mutex, MutexGuard};

use axum::body::Body;
use axum::extract::State;
use axum::response::{IntoResponse, Response};
use bytes::Bytes;
use sha2::Digest as _;
use url::Url;

/// The date every file claims as its Last-Modified.
pub const LAST_MODIFIED: &str = "Mon, 05 Jan 2026 10:00:00 GMT";

/// The `If-None-Match` and `If-Modified-Since` of a conditional request.
pub type Conditions = (Option<String>, Option<String>);

#[derive(Default)]
struct Shared {
    files: Mutex<HashMap<String, Bytes>>,
    /// Requests by path (without the leading `/`).
    hits: Mutex<HashMap<String, usize>>,
    /// 304s sent, by path.
    not_modified: Mutex<HashMap<String, usize>>,
    /// The `If-None-Match` and `If-Modified-Since` of the last conditional request, by path.
    conditions: Mutex<HashMap<String, Conditions>>,
    /// Every request answered with this status and no file.
    status: Mutex<Option<u16>>,
}

fn lock<T>(m: &Mutex<T>) -> MutexGuard<'_, T> {
    m.lock().unwrap_or_else(|p| p.into_inner())
}

/// A running fake upstream; stops when dropped.
pub struct Upstream {
    /// `http://127.0.0.1:PORT/`.
    pub url: Url,
    shared: Arc<Shared>,
    stop: Option<tokio::sync::oneshot::Sender<()>>,
    task: Option<tokio::task::JoinHandle<()>>,
}

/// The strong ETag the fake gives `body`.
pub fn etag_of(body: &[u8]) -> String {
    format!("\"{}\"", &hex::encode(sha2::Sha256::digest(body))[..16])
}

impl Upstream {
    pub async fn start() -> Upstream {
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0")
            .await
            .expect("bind 127.0.0.1:0");
        let address = listener.local_addr().expect("address");
        let shared = Arc::new(Shared::default());
        let app = axum::Router::new()
            .fallback(handle)
            .with_state(shared.clone());
        let (stop, stopped) = tokio::sync::oneshot::channel::<()>();
        let task = tokio::spawn(async move {
            let _ = axum::serve(listener, app)
                .with_graceful_shutdown(async move {
                    let _ = stopped.await;
                })
                .await;
        });
        Upstream {
            url: Url::parse(&format!("http://{address}/")).expect("url"),
            shared,
            stop: Some(stop),
            task: Some(task),
        }
    }

    /// Serve `body` at `path` (without the leading `/`) from now on.
    pub fn put(&self, path: &str, body: impl Into<Bytes>) {
        lock(&self.shared.files).insert(path.to_owned(), body.into());
    }

    /// Answer every request with `status` (`None`: serve the files again).
    pub fn fail_with(&self, status: Option<u16>) {
        *lock(&self.shared.status) = status;
    }

    /// Requests seen for `path`.
    pub fn hits(&self, path: &str) -> usize {
        lock(&self.shared.hits).get(path).copied().unwrap_or(0)
    }

    /// Requests seen in all.
    pub fn total_hits(&self) -> usize {
        lock(&self.shared.hits).values().sum()
    }

    /// 304s sent for `path`.
    pub fn not_modified(&self, path: &str) -> usize {
        lock(&self.shared.not_modified)
            .get(path)
            .copied()
            .unwrap_or(0)
    }

    /// `(If-None-Match, If-Modified-Since)` of the last conditional request for `path`.
    pub fn last_conditions(&self, path: &str) -> Option<Conditions> {
        lock(&self.shared.conditions).get(path).cloned()
    }

    /// Stop listening and close every connection, idle keep-alive ones included: from now on
    /// the upstream is unreachable.
    pub async fn stop(&mut self) {
        if let Some(stop) = self.stop.take() {
            let _ = stop.send(());
        }
        if let Some(task) = self.task.take() {
            let _ = task.await;
        }
    }
}

impl Drop for Upstream {
    fn drop(&mut self) {
        if let Some(task) = self.task.take() {
            task.abort();
        }
    }
}

async fn handle(State(shared): State<Arc<Shared>>, request: http::Request<Body>) -> Response {
    let path = request.uri().path().trim_start_matches('/').to_owned();
    *lock(&shared.hits).entry(path.clone()).or_default() += 1;
    if let Some(status) = *lock(&shared.status) {
        let status = http::StatusCode::from_u16(status).expect("status");
        return (status, "fault injected by the test").into_response();
    }
    let Some(body) = lock(&shared.files).get(&path).cloned() else {
        return (http::StatusCode::NOT_FOUND, "no such file").into_response();
    };
    let header = |name: http::header::HeaderName| {
        request
            .headers()
            .get(name)
            .and_then(|v| v.to_str().ok())
            .map(str::to_owned)
    };
    let (if_none_match, if_modified_since) = (
        header(http::header::IF_NONE_MATCH),
        header(http::header::IF_MODIFIED_SINCE),
    );
    let etag = etag_of(&body);
    if if_none_match.is_some() || if_modified_since.is_some() {
        lock(&shared.conditions).insert(
            path.clone(),
            (if_none_match.clone(), if_modified_since.clone()),
        );
    }
    let unchanged = match &if_none_match {
        Some(tags) => tags.split(',').any(|t| t.trim() == etag),
        None => if_modified_since.as_deref() == Some(LAST_MODIFIED),
    };
    let headers = [
        (http::header::ETAG, etag),
        (http::header::LAST_MODIFIED, LAST_MODIFIED.to_owned()),
    ];
    if unchanged {
        *lock(&shared.not_modified).entry(path).or_default() += 1;
        return (http::StatusCode::NOT_MODIFIED, headers).into_response();
    }
    (headers, body).into_response()
}
