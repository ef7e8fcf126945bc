//! The engine's behaviour, pinned through its public API: a [`Mirror`] with the real adapters,
//! asked through the HTTP router, in front of a fake upstream on 127.0.0.1:0 that counts what it
//! is asked. Freshness and revalidation, conditional requests, stale-if-error, refused digests,
//! mutable apt index names, listings, derived artifacts, reuse of bytes under another key,
//! download locations after a restart, eviction under a size limit, and purging a package. No package client, no root, no timed assertion.

mod apt;
mod cargo;
mod eviction;
mod npm;
mod purge;
mod pypi;
mod upstream;

use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Duration;

use bytes::Bytes;
use cairn_mirror::ecosystem::Ecosystem;
use cairn_mirror::{EcosystemSetup, Mirror, MirrorConfig};
use tower::ServiceExt as _;
use url::Url;

/// Documents fresh for five minutes: a second request within a test never revalidates.
const TTL: Duration = Duration::from_secs(300);
/// Every stored document is stale at once: the next request revalidates it.
const STALE: Duration = Duration::ZERO;

/// A mirror on `dir` serving `ecosystems` (each with its upstream), documents fresh for `ttl`.
pub(crate) fn open(
    dir: &Path,
    ttl: Duration,
    ecosystems: Vec<(Arc<dyn Ecosystem>, Url)>,
) -> Mirror {
    let mut config = MirrorConfig::new(dir.to_owned());
    config.metadata_ttl = ttl;
    let setups = ecosystems
        .into_iter()
        .map(|(ecosystem, url)| {
            let mount = ecosystem.name().to_owned();
            EcosystemSetup::new(ecosystem, &mount, Ok(url))
        })
        .collect();
    Mirror::open(config, setups).expect("open the mirror")
}

/// Close `mirror` as `serve` does at shutdown, then open the same data dir again. A download
/// task finishing after its commit may still hold the store's lock for a moment.
pub(crate) async fn reopen(
    mirror: Mirror,
    dir: &Path,
    ttl: Duration,
    ecosystems: impl Fn() -> Vec<(Arc<dyn Ecosystem>, Url)>,
) -> Mirror {
    mirror.close().await.expect("close the mirror");
    drop(mirror);
    let deadline = tokio::time::Instant::now() + Duration::from_secs(10);
    loop {
        let mut config = MirrorConfig::new(dir.to_owned());
        config.metadata_ttl = ttl;
        let setups = ecosystems()
            .into_iter()
            .map(|(ecosystem, url)| {
                let mount = ecosystem.name().to_owned();
                EcosystemSetup::new(ecosystem, &mount, Ok(url))
            })
            .collect();
        match Mirror::open(config, setups) {
            Ok(mirror) => return mirror,
            Err(_) if tokio::time::Instant::now() < deadline => {
                tokio::time::sleep(Duration::from_millis(20)).await;
            }
            Err(e) => panic!("reopening the data dir: {e}"),
        }
    }
}

/// An answer of the router, read whole.
pub(crate) struct Reply {
    pub status: u16,
    pub headers: http::HeaderMap,
    pub body: Bytes,
}

impl Reply {
    pub fn header(&self, name: &str) -> Option<&str> {
        self.headers.get(name).and_then(|v| v.to_str().ok())
    }
}

pub(crate) async fn get_with(mirror: &Mirror, path: &str, headers: &[(&str, &str)]) -> Reply {
    let mut request = http::Request::get(path).header(http::header::HOST, "cairn.test");
    for (name, value) in headers {
        request = request.header(*name, *value);
    }
    let request = request.body(axum::body::Body::empty()).expect("request");
    send(mirror, request).await
}

/// `request` through the mirror's router, its answer read whole.
pub(crate) async fn send(mirror: &Mirror, request: http::Request<axum::body::Body>) -> Reply {
    let response = cairn_mirror::http::router(mirror.clone())
        .oneshot(request)
        .await
        .expect("response");
    let status = response.status().as_u16();
    let headers = response.headers().clone();
    let body = axum::body::to_bytes(response.into_body(), usize::MAX)
        .await
        .expect("body");
    Reply {
        status,
        headers,
        body,
    }
}

pub(crate) async fn get(mirror: &Mirror, path: &str) -> Reply {
    get_with(mirror, path, &[]).await
}

/// The files under the data dir's `blobs/`.
pub(crate) fn blobs(dir: &Path) -> Vec<PathBuf> {
    fn walk(dir: &Path, out: &mut Vec<PathBuf>) {
        for entry in std::fs::read_dir(dir).into_iter().flatten().flatten() {
            let path = entry.path();
            if path.is_dir() {
                walk(&path, out);
            } else {
                out.push(path);
            }
        }
    }
    let mut out = Vec::new();
    walk(&dir.join("blobs"), &mut out);
    out
}

/// The answer is `status`, and the data dir holds no blob and no index row for `key`.
pub(crate) fn assert_refused_and_nothing_stored(
    reply: &Reply,
    status: u16,
    mirror: &Mirror,
    dir: &Path,
    ecosystem: &str,
    key: &str,
) {
    assert_eq!(
        reply.status,
        status,
        "{ecosystem} {key}: {}",
        String::from_utf8_lossy(&reply.body)
    );
    let row = mirror
        .index()
        .get_artifact(ecosystem, key)
        .expect("read the index");
    assert!(row.is_none(), "{ecosystem} {key} has an index row: {row:?}");
    assert_eq!(blobs(dir), Vec::<PathBuf>::new(), "blobs stored");
}

/// The artifact's bytes once its index row is written (a reader may get the last bytes just
/// before the download commits).
pub(crate) async fn committed(mirror: &Mirror, ecosystem: &str, key: &str) {
    let deadline = tokio::time::Instant::now() + Duration::from_secs(10);
    while mirror
        .index()
        .get_artifact(ecosystem, key)
        .expect("read the index")
        .is_none()
    {
        assert!(
            tokio::time::Instant::now() < deadline,
            "{ecosystem} {key} was never committed"
        );
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
}

/// Ask for the artifact at `path` until it is answered from the store (with the headers only a
/// stored file has), not from its download: a request arriving while the download is
/// committing joins the download.
pub(crate) async fn served_from_store(mirror: &Mirror, path: &str) -> Reply {
    let deadline = tokio::time::Instant::now() + Duration::from_secs(10);
    loop {
        let reply = get(mirror, path).await;
        if reply.header("x-ipfs-roots").is_some() {
            return reply;
        }
        assert!(
            tokio::time::Instant::now() < deadline,
            "{path} was never served from the store ({})",
            reply.status
        );
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
}
