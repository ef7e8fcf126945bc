//! The mirror's side of the swarm, through its HTTP router: an artifact from peers is verified
//! against the registry digest like any download, upstream takes over where peers stop, bytes
//! from lying peers are never stored, and metadata comes from peers when upstream is down.
//!
//! The ecosystem here is a minimal one (`t`): a document `GET /t/doc` lists one file per line as
//! `KEY SHA256HEX URL`, and `GET /t/files/KEY` is that file. The peer side is a scripted
//! [`PeerSource`] (the real one, libp2p, is tested in `cairn-node` and end to end): what it
//! sends is what the mirror must check.

use std::sync::{Arc, Mutex};
use std::time::Duration;

use bytes::Bytes;
use cairn_mirror::cid::{FlatCid, RootCid};
use cairn_mirror::ecosystem::{
    AdapterError, ArtifactRef, ArtifactRoute, BadRequest, DocumentFacts, Ecosystem, Listing,
    MetadataDoc, MetadataRoute, Rendered, Request, Route,
};
use cairn_mirror::peers::{
    HoldingChange, PeerChunk, PeerDocument, PeerFetch, PeerSource, PendingLeaves,
};
use cairn_mirror::store::Store;
use cairn_mirror::{EcosystemSetup, Mirror, MirrorConfig};
use futures_util::StreamExt as _;
use futures_util::future::BoxFuture;
use sha2::Digest as _;
use tower::ServiceExt as _;
use url::Url;

struct Test;

fn doc_route() -> MetadataRoute {
    MetadataRoute {
        key: "doc".into(),
        upstream_path: "doc".into(),
        variant: "raw",
        upstream_accept: None,
        context: None,
    }
}

impl Ecosystem for Test {
    fn name(&self) -> &str {
        "t"
    }

    fn route(&self, request: &Request<'_>) -> Result<Option<Route>, BadRequest> {
        Ok(match request.path {
            "doc" => Some(Route::Metadata(doc_route())),
            path => path.strip_prefix("files/").map(|key| {
                Route::Artifact(ArtifactRoute {
                    key: key.to_owned(),
                    listed_by: Listing::Document(doc_route()),
                    derive: None,
                    listing: false,
                })
            }),
        })
    }

    fn read(&self, doc: &MetadataDoc<'_>) -> Result<DocumentFacts, AdapterError> {
        let text = std::str::from_utf8(doc.body).map_err(|e| AdapterError(e.to_string()))?;
        text.lines()
            .map(|line| {
                let mut fields = line.split(' ');
                let (Some(key), Some(digest), Some(url)) =
                    (fields.next(), fields.next(), fields.next())
                else {
                    return Err(AdapterError(format!("bad line {line:?}")));
                };
                let bytes = hex::decode(digest).map_err(|e| AdapterError(e.to_string()))?;
                Ok(ArtifactRef {
                    version: None,
                    published: None,
                    yanked: false,
                    package: None,
                    key: key.to_owned(),
                    url: doc.url.join(url).map_err(|e| AdapterError(e.to_string()))?,
                    digest: cairn_mirror::cid::Digest::new(
                        cairn_mirror::cid::Algorithm::Sha256,
                        bytes,
                    )
                    .map_err(|e| AdapterError(e.to_string()))?,
                    size: None,
                })
            })
            .collect::<Result<Vec<_>, _>>()
            .map(DocumentFacts::artifacts)
    }

    fn render(
        &self,
        doc: &MetadataDoc<'_>,
        _variant: &'static str,
        _base: &Url,
    ) -> Result<Rendered, AdapterError> {
        Ok(Rendered {
            body: Bytes::copy_from_slice(doc.body),
            content_type: "text/plain",
        })
    }
}

/// What the scripted peers do when asked for an artifact.
#[derive(Clone)]
enum Script {
    /// No peer has it.
    Nobody,
    /// Send these chunks, then end (cleanly, or with the error).
    Send(Vec<Bytes>, Option<String>),
}

#[derive(Default)]
struct Log {
    fetches: usize,
    downloading: Vec<FlatCid>,
    /// What the store said it came to hold: what the swarm announces.
    holds: Vec<(FlatCid, RootCid)>,
    metadata_asks: usize,
}

struct Scripted {
    script: Mutex<Script>,
    documents: Vec<PeerDocument>,
    log: Arc<Mutex<Log>>,
}

impl PeerSource for Scripted {
    fn fetch(&self, _flat: FlatCid, _size: Option<u64>) -> BoxFuture<'static, Option<PeerFetch>> {
        self.log.lock().expect("log").fetches += 1;
        let script = self.script.lock().expect("script").clone();
        Box::pin(async move {
            let Script::Send(chunks, end) = script else {
                return None;
            };
            let (tx, rx) = tokio::sync::mpsc::channel(4);
            tokio::spawn(async move {
                for data in chunks {
                    let chunk = PeerChunk {
                        data,
                        peer: Arc::from("peer-1"),
                        leaf: None,
                    };
                    if tx.send(Ok(chunk)).await.is_err() {
                        return;
                    }
                }
                if let Some(reason) = end {
                    let _ = tx.send(Err(reason)).await;
                }
            });
            Some(PeerFetch { chunks: rx })
        })
    }

    fn downloading(&self, pending: PendingLeaves) {
        self.log.lock().expect("log").downloading.push(pending.flat);
    }

    fn metadata(&self, _ecosystem: String, _key: String) -> BoxFuture<'static, Vec<PeerDocument>> {
        self.log.lock().expect("log").metadata_asks += 1;
        let documents = self.documents.clone();
        Box::pin(async move {
            // As long as asking real peers takes, so that callers at once overlap.
            tokio::time::sleep(Duration::from_millis(100)).await;
            documents
        })
    }

    fn describe(&self) -> BoxFuture<'static, serde_json::Value> {
        Box::pin(async { serde_json::json!({ "peer_id": "scripted", "peers": [] }) })
    }
}

/// A fake upstream serving `doc` and the file `/blob`; counts the blob's requests.
async fn upstream(doc: String, blob: Bytes) -> (Url, Arc<Mutex<usize>>) {
    let hits = Arc::new(Mutex::new(0usize));
    let counted = hits.clone();
    let app = axum::Router::new()
        .route(
            "/doc",
            axum::routing::get(move || async move { doc.clone() }),
        )
        .route(
            "/blob",
            axum::routing::get(move || {
                *counted.lock().expect("hits") += 1;
                let blob = blob.clone();
                async move { blob }
            }),
        );
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0")
        .await
        .expect("bind");
    let address = listener.local_addr().expect("address");
    tokio::spawn(async move {
        let _ = axum::serve(listener, app).await;
    });
    (
        Url::parse(&format!("http://{address}/")).expect("url"),
        hits,
    )
}

fn listing(blob: &[u8]) -> String {
    format!("f {} blob\n", hex::encode(sha2::Sha256::digest(blob)))
}

struct Setup {
    mirror: Mirror,
    log: Arc<Mutex<Log>>,
    _dir: tempfile::TempDir,
}

fn mirror(upstream: Result<Url, String>, offline: bool, peers: Scripted) -> Setup {
    let dir = tempfile::tempdir().expect("tempdir");
    let mut config = MirrorConfig::new(dir.path().to_owned());
    config.offline = offline;
    // As the bin builds it: the store first, what the swarm would announce followed from it,
    // then the engine with its peers.
    let store = Store::open(dir.path()).expect("store");
    let log = peers.log.clone();
    let mut changes = store.holdings().changes().expect("follow the store");
    let announced = log.clone();
    tokio::spawn(async move {
        while let Some(change) = changes.next().await {
            if let HoldingChange::Held { flat, root } = change {
                announced.lock().expect("log").holds.push((flat, root));
            }
        }
    });
    let mirror = Mirror::builder(
        config,
        vec![EcosystemSetup::new(Arc::new(Test), "t", upstream)],
    )
    .store(store)
    .peers(Arc::new(peers))
    .build()
    .expect("mirror");
    Setup {
        mirror,
        log,
        _dir: dir,
    }
}

fn scripted(script: Script, documents: Vec<PeerDocument>) -> Scripted {
    Scripted {
        script: Mutex::new(script),
        documents,
        log: Arc::default(),
    }
}

async fn get(mirror: &Mirror, path: &str) -> (u16, Bytes) {
    let request = http::Request::get(path)
        .header(http::header::HOST, "cairn.test")
        .body(axum::body::Body::empty())
        .expect("request");
    let response = cairn_mirror::http::router(mirror.clone())
        .oneshot(request)
        .await
        .expect("response");
    let status = response.status().as_u16();
    let body = axum::body::to_bytes(response.into_body(), usize::MAX)
        .await
        .unwrap_or_default();
    (status, body)
}

/// The file, once committed, as a cache hit (a download under way may still be committing).
async fn cached(mirror: &Mirror, path: &str) -> (u16, Bytes) {
    let deadline = tokio::time::Instant::now() + Duration::from_secs(10);
    loop {
        let answer = get(mirror, path).await;
        let held = mirror.held_artifacts().expect("held");
        if !held.is_empty() || tokio::time::Instant::now() > deadline {
            return answer;
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

/// The announcements, once the committed artifact has been announced (just after its index
/// row is written).
async fn announced(setup: &Setup) -> std::sync::MutexGuard<'_, Log> {
    let deadline = tokio::time::Instant::now() + Duration::from_secs(10);
    while setup.log.lock().expect("log").holds.is_empty() && tokio::time::Instant::now() < deadline
    {
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    setup.log.lock().expect("log")
}

fn blob() -> Bytes {
    (0..3_500_000u32)
        .map(|i| (i.wrapping_mul(2_654_435_761) >> 13) as u8)
        .collect::<Vec<u8>>()
        .into()
}

/// A peer's copy of `/t/doc`.
fn peer_copy(body: Bytes, fetched_at: i64, peer: &str) -> PeerDocument {
    PeerDocument {
        body,
        upstream_url: "http://upstream.invalid/doc".into(),
        fetched_at,
        etag: None,
        last_modified: None,
        peer: Arc::from(peer),
    }
}

fn chunks(data: &Bytes, size: usize) -> Vec<Bytes> {
    data.chunks(size).map(Bytes::copy_from_slice).collect()
}

#[tokio::test]
async fn an_artifact_from_peers_is_verified_stored_and_announced_without_upstream() {
    let blob = blob();
    let (url, hits) = upstream(listing(&blob), blob.clone()).await;
    let setup = mirror(
        Ok(url),
        false,
        scripted(Script::Send(chunks(&blob, 1 << 20), None), vec![]),
    );
    assert_eq!(get(&setup.mirror, "/t/doc").await.0, 200);
    let (status, body) = cached(&setup.mirror, "/t/files/f").await;
    assert_eq!(status, 200);
    assert_eq!(body, blob);
    assert_eq!(*hits.lock().expect("hits"), 0, "upstream was not asked");
    let log = announced(&setup).await;
    assert_eq!(log.holds.len(), 1, "the committed artifact is announced");
    assert!(log.downloading.is_empty());
}

#[tokio::test]
async fn upstream_takes_over_where_peers_stop() {
    let blob = blob();
    let (url, hits) = upstream(listing(&blob), blob.clone()).await;
    let half = chunks(&blob.slice(..1_300_000), 300_000);
    let setup = mirror(
        Ok(url),
        false,
        scripted(
            Script::Send(half, Some("every peer stalled".into())),
            vec![],
        ),
    );
    get(&setup.mirror, "/t/doc").await;
    let (status, body) = cached(&setup.mirror, "/t/files/f").await;
    assert_eq!(status, 200);
    assert_eq!(body, blob, "peer bytes then upstream bytes make the file");
    assert_eq!(*hits.lock().expect("hits"), 1);
}

#[tokio::test]
async fn bytes_from_lying_peers_are_never_stored_and_the_next_try_goes_upstream() {
    let blob = blob();
    let (url, hits) = upstream(listing(&blob), blob.clone()).await;
    let mut lie = blob.to_vec();
    lie[2_000_000] ^= 1;
    let setup = mirror(
        Ok(url),
        false,
        scripted(
            Script::Send(chunks(&Bytes::from(lie), 1 << 20), None),
            vec![],
        ),
    );
    get(&setup.mirror, "/t/doc").await;
    let (status, body) = get(&setup.mirror, "/t/files/f").await;
    assert!(
        status != 200 || body != blob,
        "the first answer cannot be the file"
    );
    assert!(
        setup.mirror.held_artifacts().expect("held").is_empty(),
        "nothing stored"
    );
    let (status, body) = cached(&setup.mirror, "/t/files/f").await;
    assert_eq!(status, 200);
    assert_eq!(body, blob);
    assert_eq!(*hits.lock().expect("hits"), 1, "the retry went upstream");
    assert_eq!(
        setup.log.lock().expect("log").fetches,
        1,
        "peers asked once"
    );
}

#[tokio::test]
async fn a_miss_with_no_peer_goes_upstream_and_is_offered_to_peers_meanwhile() {
    let blob = blob();
    let (url, _) = upstream(listing(&blob), blob.clone()).await;
    let setup = mirror(Ok(url), false, scripted(Script::Nobody, vec![]));
    get(&setup.mirror, "/t/doc").await;
    let (status, body) = cached(&setup.mirror, "/t/files/f").await;
    assert_eq!((status, body), (200, blob));
    let log = announced(&setup).await;
    assert_eq!(log.downloading.len(), 1);
    assert_eq!(log.holds.len(), 1);
}

#[tokio::test]
async fn offline_metadata_and_artifacts_come_from_peers_and_a_miss_nobody_has_says_why() {
    let blob = blob();
    let doc = listing(&blob);
    let document = peer_copy(Bytes::from(doc.clone()), cairn_mirror::now_ms(), "peer-1");
    let setup = mirror(
        Err("none configured".into()),
        true,
        scripted(Script::Send(chunks(&blob, 1 << 20), None), vec![document]),
    );
    let (status, body) = get(&setup.mirror, "/t/doc").await;
    assert_eq!(status, 200);
    assert_eq!(body, Bytes::from(doc));
    let (status, body) = cached(&setup.mirror, "/t/files/f").await;
    assert_eq!((status, body), (200, blob));

    let nobody = mirror(
        Err("none configured".into()),
        true,
        scripted(Script::Nobody, vec![]),
    );
    let (status, body) = get(&nobody.mirror, "/t/doc").await;
    assert_eq!(status, 504, "{}", String::from_utf8_lossy(&body));
}

#[tokio::test]
async fn a_peer_document_that_the_adapter_refuses_is_not_taken() {
    let document = peer_copy(
        Bytes::from_static(b"not a listing"),
        cairn_mirror::now_ms(),
        "liar",
    );
    let setup = mirror(
        Err("none configured".into()),
        true,
        scripted(Script::Nobody, vec![document]),
    );
    let (status, _) = get(&setup.mirror, "/t/doc").await;
    assert_eq!(status, 504);
    assert!(
        setup
            .mirror
            .index()
            .get_metadata("t", "doc")
            .expect("index")
            .is_none()
    );
}

#[tokio::test]
async fn a_refused_newest_copy_does_not_hide_an_older_good_one() {
    let blob = blob();
    let doc = listing(&blob);
    let now = cairn_mirror::now_ms();
    let setup = mirror(
        Err("none configured".into()),
        true,
        scripted(
            Script::Nobody,
            vec![
                peer_copy(Bytes::from_static(b"not a listing"), now, "liar"),
                peer_copy(Bytes::from(doc.clone()), now - 60_000, "honest"),
            ],
        ),
    );
    let (status, body) = get(&setup.mirror, "/t/doc").await;
    assert_eq!(status, 200, "{}", String::from_utf8_lossy(&body));
    assert_eq!(body, Bytes::from(doc));
    let record = setup
        .mirror
        .index()
        .get_metadata("t", "doc")
        .expect("index")
        .expect("indexed");
    assert_eq!(record.fetched_at, now - 60_000, "the honest copy was taken");
}

#[tokio::test]
async fn callers_missing_one_document_at_once_ask_the_peers_once() {
    let blob = blob();
    let doc = listing(&blob);
    let document = peer_copy(Bytes::from(doc.clone()), cairn_mirror::now_ms(), "peer-1");
    let setup = mirror(
        Err("none configured".into()),
        true,
        scripted(Script::Nobody, vec![document]),
    );
    let gets = (0..8).map(|_| get(&setup.mirror, "/t/doc"));
    for (status, body) in futures_util::future::join_all(gets).await {
        assert_eq!(status, 200, "{}", String::from_utf8_lossy(&body));
        assert_eq!(body, Bytes::from(doc.clone()));
    }
    assert_eq!(setup.log.lock().expect("log").metadata_asks, 1);
}

/// Bytes served from one download, by source (`peer`, `upstream`).
fn served(mirror: &Mirror, source: &'static str) -> u64 {
    mirror
        .metrics()
        .bytes
        .get_or_create(&cairn_mirror::metrics::SourceLabels { source })
        .get()
}

/// Wait until the download has committed (so that nothing more is counted).
async fn committed(mirror: &Mirror) {
    let deadline = tokio::time::Instant::now() + Duration::from_secs(10);
    while mirror.held_artifacts().expect("held").is_empty() {
        assert!(tokio::time::Instant::now() < deadline, "never committed");
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

#[tokio::test]
async fn after_a_takeover_upstream_bytes_count_as_upstream() {
    let blob = blob();
    let (url, hits) = upstream(listing(&blob), blob.clone()).await;
    let from_peers = 1_300_000;
    let setup = mirror(
        Ok(url),
        false,
        scripted(
            Script::Send(
                chunks(&blob.slice(..from_peers), 300_000),
                Some("the peer stopped".into()),
            ),
            vec![],
        ),
    );
    get(&setup.mirror, "/t/doc").await;
    let (status, body) = get(&setup.mirror, "/t/files/f").await;
    assert_eq!(status, 200);
    assert_eq!(body, blob);
    committed(&setup.mirror).await;
    assert_eq!(*hits.lock().expect("hits"), 1);
    assert_eq!(served(&setup.mirror, "peer"), from_peers as u64);
    assert_eq!(
        served(&setup.mirror, "upstream"),
        (blob.len() - from_peers) as u64
    );
}

#[tokio::test]
async fn bytes_of_a_lying_peer_that_fail_the_digest_are_not_counted_as_served() {
    let blob = blob();
    let (url, _) = upstream(listing(&blob), blob.clone()).await;
    let mut lie = blob.to_vec();
    lie[3_400_000] ^= 1;
    let setup = mirror(
        Ok(url),
        false,
        scripted(
            Script::Send(chunks(&Bytes::from(lie), 1 << 20), None),
            vec![],
        ),
    );
    get(&setup.mirror, "/t/doc").await;
    let request = http::Request::get("/t/files/f")
        .header(http::header::HOST, "cairn.test")
        .body(axum::body::Body::empty())
        .expect("request");
    let response = cairn_mirror::http::router(setup.mirror.clone())
        .oneshot(request)
        .await
        .expect("response");
    let mut body = response.into_body().into_data_stream();
    let (mut received, mut aborted) = (0, false);
    while let Some(chunk) = futures_util::StreamExt::next(&mut body).await {
        match chunk {
            Ok(bytes) => received += bytes.len(),
            Err(_) => {
                aborted = true;
                break;
            }
        }
    }
    assert!(aborted, "the body ends in an error");
    // How far the reader got before the digest failed depends on scheduling; that it got some
    // bytes is what makes the counts below meaningful.
    assert!(
        received > 0,
        "the reader got no bytes before the digest failed"
    );
    assert_eq!(served(&setup.mirror, "peer"), 0);
    assert_eq!(served(&setup.mirror, "upstream"), 0);
}

#[tokio::test]
async fn a_peer_document_dated_in_the_future_is_taken_as_fetched_now() {
    let blob = blob();
    let doc = listing(&blob);
    let hour_ahead = cairn_mirror::now_ms() + 3_600_000;
    let setup = mirror(
        Err("none configured".into()),
        true,
        scripted(
            Script::Nobody,
            vec![peer_copy(Bytes::from(doc.clone()), hour_ahead, "forger")],
        ),
    );
    let (status, body) = get(&setup.mirror, "/t/doc").await;
    assert_eq!(status, 200, "{}", String::from_utf8_lossy(&body));
    let record = setup
        .mirror
        .index()
        .get_metadata("t", "doc")
        .expect("index")
        .expect("indexed");
    assert!(
        record.fetched_at <= cairn_mirror::now_ms(),
        "fetched_at {} is in the future",
        record.fetched_at
    );
}
