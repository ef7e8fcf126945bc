//! The mirror's bounds on what upstream sends, through its HTTP router: a deadline on every
//! metadata exchange, separate slots for artifact downloads, a minimum rate for artifact bodies,
//! document and artifact size limits, listings indexed in batches while the node serves, and
//! downloads abandoned at shutdown.
//!
//! The ecosystem here is a minimal one (`t`): `GET /t/d/NAME` is the document `NAME` upstream,
//! which lists one file per line as `FILE SHA256HEX URL [SIZE]` (empty lines are skipped); `GET /t/f/NAME/FILE` is that
//! file. Files whose name ends in `.list` are listings: reading one hands out the references a
//! [`ListingScript`] says, pausing midway for the test to look.

use std::sync::{Arc, Mutex};
use std::time::Duration;

use bytes::Bytes;
use cairn_mirror::cid::{Algorithm, Digest};
use cairn_mirror::ecosystem::{
    AdapterError, ArtifactReader, ArtifactRef, ArtifactRoute, BadRequest, DocumentFacts, Ecosystem,
    Listing, MetadataDoc, MetadataRoute, Rendered, Request, Route,
};
use cairn_mirror::{EcosystemSetup, Mirror, MirrorConfig};
use sha2::Digest as _;
use tower::ServiceExt as _;
use url::Url;

/// What reading a listing does: hand out `refs` references named `ref-N`, and after `pause_at`
/// of them say so on `paused` and wait for `resume`.
struct ListingScript {
    refs: usize,
    pause_at: usize,
    paused: Mutex<Option<std::sync::mpsc::Sender<()>>>,
    resume: Mutex<Option<std::sync::mpsc::Receiver<()>>>,
}

struct Test {
    max_document: u64,
    listing: Option<ListingScript>,
}

fn doc_route(name: &str) -> MetadataRoute {
    MetadataRoute {
        key: name.into(),
        upstream_path: name.into(),
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
        if let Some(name) = request.path.strip_prefix("d/") {
            return Ok(Some(Route::Metadata(doc_route(name))));
        }
        Ok(request
            .path
            .strip_prefix("f/")
            .and_then(|rest| rest.split_once('/'))
            .map(|(doc, _)| {
                Route::Artifact(ArtifactRoute {
                    key: request.path["f/".len()..].to_owned(),
                    listed_by: Listing::Document(doc_route(doc)),
                    derive: None,
                    listing: request.path.ends_with(".list"),
                })
            }))
    }

    fn read(&self, doc: &MetadataDoc<'_>) -> Result<DocumentFacts, AdapterError> {
        let text = std::str::from_utf8(doc.body).map_err(|e| AdapterError(e.to_string()))?;
        text.lines()
            .filter(|line| !line.is_empty())
            .map(|line| {
                let fields: Vec<&str> = line.split(' ').collect();
                let [file, digest, url, rest @ ..] = fields.as_slice() else {
                    return Err(AdapterError(format!("bad line {line:?}")));
                };
                let bytes = hex::decode(digest).map_err(|e| AdapterError(e.to_string()))?;
                Ok(ArtifactRef {
                    version: None,
                    published: None,
                    yanked: false,
                    package: None,
                    key: format!("{}/{file}", doc.key),
                    url: doc.url.join(url).map_err(|e| AdapterError(e.to_string()))?,
                    digest: Digest::new(Algorithm::Sha256, bytes)
                        .map_err(|e| AdapterError(e.to_string()))?,
                    size: rest.first().and_then(|s| s.parse().ok()),
                })
            })
            .collect::<Result<Vec<_>, _>>()
            .map(DocumentFacts::artifacts)
    }

    fn listing(
        &self,
        _key: &str,
        url: &Url,
        _file: &mut dyn ArtifactReader,
        each: &mut dyn FnMut(ArtifactRef) -> Result<(), AdapterError>,
    ) -> Result<(), AdapterError> {
        let Some(script) = &self.listing else {
            return Ok(());
        };
        for i in 0..script.refs {
            if i == script.pause_at {
                if let Some(paused) = script.paused.lock().expect("paused").take() {
                    let _ = paused.send(());
                }
                if let Some(resume) = script.resume.lock().expect("resume").take() {
                    let _ = resume.recv_timeout(Duration::from_secs(60));
                }
            }
            each(ArtifactRef {
                version: None,
                published: None,
                yanked: false,
                package: None,
                key: format!("ref-{i}"),
                url: url.join(&format!("pool/{i}")).expect("url"),
                digest: Digest::of(Algorithm::Sha256, &i.to_le_bytes()),
                size: Some(8),
            })?;
        }
        Ok(())
    }

    fn max_document_bytes(&self) -> u64 {
        self.max_document
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

/// A body that sends one byte every `every`, for ever.
fn trickle(every: Duration) -> axum::body::Body {
    let stream = futures_util::stream::unfold((), move |()| async move {
        tokio::time::sleep(every).await;
        Some((
            Ok::<_, std::convert::Infallible>(Bytes::from_static(b"x")),
            (),
        ))
    });
    axum::body::Body::from_stream(stream)
}

/// A body that sends 16 KiB chunks as fast as it is read, for ever (no length).
fn endless() -> axum::body::Body {
    let chunk = Bytes::from(vec![b'y'; 16 << 10]);
    let stream =
        futures_util::stream::repeat_with(move || Ok::<_, std::convert::Infallible>(chunk.clone()));
    axum::body::Body::from_stream(stream)
}

fn sha256_hex(bytes: &[u8]) -> String {
    hex::encode(sha2::Sha256::digest(bytes))
}

/// The bytes of the listing file `idx.list`.
const LISTING_FILE: &[u8] = b"a listing";

/// The fake upstream, and how many requests each artifact path got.
struct Upstream {
    url: Url,
    hits: Arc<Mutex<std::collections::HashMap<String, usize>>>,
}

impl Upstream {
    fn hits(&self, path: &str) -> usize {
        self.hits
            .lock()
            .expect("hits")
            .get(path)
            .copied()
            .unwrap_or(0)
    }
}

async fn upstream() -> Upstream {
    let hits: Arc<Mutex<std::collections::HashMap<String, usize>>> = Arc::default();
    let doc = format!(
        "trickle {zero} files/trickle\n\
         declared {zero} files/endless 10000\n\
         undeclared {zero} files/endless\n\
         announced {zero} files/announced\n\
         idx.list {list} files/idx.list\n",
        zero = sha256_hex(b""),
        list = sha256_hex(LISTING_FILE),
    );
    let counted = hits.clone();
    let app = axum::Router::new()
        .route(
            "/doc",
            axum::routing::get(move || async move { doc.clone() }),
        )
        .route("/other", axum::routing::get(|| async { "" }))
        .route(
            "/slow",
            axum::routing::get(|| async { trickle(Duration::from_millis(200)) }),
        )
        .route("/big", axum::routing::get(|| async { vec![b'\n'; 4096] }))
        .route(
            "/big-unannounced",
            axum::routing::get(|| async {
                let chunk = Bytes::from(vec![b'\n'; 512]);
                let stream = futures_util::stream::iter(
                    (0..8).map(move |_| Ok::<_, std::convert::Infallible>(chunk.clone())),
                );
                axum::body::Body::from_stream(stream)
            }),
        )
        .route(
            "/files/{file}",
            axum::routing::get(
                move |axum::extract::Path(file): axum::extract::Path<String>| {
                    *counted
                        .lock()
                        .expect("hits")
                        .entry(format!("files/{file}"))
                        .or_default() += 1;
                    async move {
                        use axum::response::IntoResponse as _;
                        match file.as_str() {
                            "trickle" => trickle(Duration::from_millis(200)).into_response(),
                            "endless" => endless().into_response(),
                            "announced" => {
                                ([(http::header::CONTENT_LENGTH, "1000000000")], endless())
                                    .into_response()
                            }
                            "idx.list" => LISTING_FILE.into_response(),
                            _ => http::StatusCode::NOT_FOUND.into_response(),
                        }
                    }
                },
            ),
        );
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0")
        .await
        .expect("bind");
    let address = listener.local_addr().expect("address");
    tokio::spawn(async move {
        let _ = axum::serve(listener, app).await;
    });
    Upstream {
        url: Url::parse(&format!("http://{address}/")).expect("url"),
        hits,
    }
}

struct Setup {
    mirror: Mirror,
    dir: tempfile::TempDir,
}

impl Setup {
    /// The files under the store's `dir` (`tmp`, `blobs`, `meta`).
    fn files(&self, dir: &str) -> Vec<std::path::PathBuf> {
        let mut out = Vec::new();
        let mut todo = vec![self.dir.path().join(dir)];
        while let Some(dir) = todo.pop() {
            for entry in std::fs::read_dir(&dir).into_iter().flatten().flatten() {
                let path = entry.path();
                if path.is_dir() {
                    todo.push(path);
                } else {
                    out.push(path);
                }
            }
        }
        out
    }
}

fn mirror(upstream: &Upstream, ecosystem: Test, tune: impl FnOnce(&mut MirrorConfig)) -> Setup {
    mirror_at(upstream, ecosystem, "t", tune)
}

/// [`mirror`], with the ecosystem served under `mount`.
fn mirror_at(
    upstream: &Upstream,
    ecosystem: Test,
    mount: &str,
    tune: impl FnOnce(&mut MirrorConfig),
) -> Setup {
    let dir = tempfile::tempdir().expect("tempdir");
    let mut config = MirrorConfig::new(dir.path().to_owned());
    tune(&mut config);
    let mirror = Mirror::open(
        config,
        vec![EcosystemSetup::new(
            Arc::new(ecosystem),
            mount,
            Ok(upstream.url.clone()),
        )],
    )
    .expect("mirror");
    Setup { mirror, dir }
}

fn plain() -> Test {
    Test {
        max_document: 1 << 20,
        listing: None,
    }
}

/// A request through the router, with its body read whole; a hang fails after `HANG`.
async fn get(mirror: &Mirror, path: &str) -> (u16, String) {
    let request = http::Request::get(path)
        .header(http::header::HOST, "cairn.test")
        .body(axum::body::Body::empty())
        .expect("request");
    let exchange = async {
        let response = cairn_mirror::http::router(mirror.clone())
            .oneshot(request)
            .await
            .expect("response");
        let status = response.status().as_u16();
        let body = axum::body::to_bytes(response.into_body(), usize::MAX)
            .await
            .unwrap_or_default();
        (status, String::from_utf8_lossy(&body).into_owned())
    };
    tokio::time::timeout(HANG, exchange)
        .await
        .unwrap_or_else(|_| panic!("GET {path} hung"))
}

/// Generous: only catches a request that would otherwise never end.
const HANG: Duration = Duration::from_secs(30);

/// Wait (at most `HANG`) until `ready` holds.
async fn until(what: &str, mut ready: impl FnMut() -> bool) {
    let deadline = tokio::time::Instant::now() + HANG;
    while !ready() {
        assert!(tokio::time::Instant::now() < deadline, "never: {what}");
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_trickling_upstream_is_cut_at_the_deadline_and_holds_no_other_miss_past_it() {
    let upstream = upstream().await;
    let setup = mirror(&upstream, plain(), |config| {
        config.limits.concurrency = 1;
        config.limits.deadline = Duration::from_secs(3);
    });
    let mirror = setup.mirror.clone();
    let slow = tokio::spawn(async move { get(&mirror, "/t/d/slow").await });
    tokio::time::sleep(Duration::from_secs(1)).await;
    // The only metadata slot is held by the trickle: this miss waits for it, until the
    // deadline frees it.
    let (status, body) = get(&setup.mirror, "/t/d/other").await;
    assert_eq!(status, 200, "{body}");
    let (status, body) = slow.await.expect("slow");
    assert_eq!(status, 504, "{body}");
    assert!(
        body.contains("within the 3s upstream deadline (--upstream-deadline)"),
        "{body}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn slow_artifact_downloads_do_not_starve_metadata() {
    let upstream = upstream().await;
    let setup = mirror(&upstream, plain(), |config| {
        config.limits.concurrency = 1;
        // Only the separate pools may let metadata through, not the rate rule ending the
        // download.
        config.limits.min_artifact_rate = 0;
    });
    let (status, body) = get(&setup.mirror, "/t/d/doc").await;
    assert_eq!(status, 200, "{body}");
    // The artifact download takes the one artifact slot and keeps it (a byte every 200 ms is
    // within the read timeout).
    let mirror = setup.mirror.clone();
    let download = tokio::spawn(async move { get(&mirror, "/t/f/doc/trickle").await });
    until("the trickle is being downloaded", || {
        upstream.hits("files/trickle") == 1
    })
    .await;
    let (status, body) = get(&setup.mirror, "/t/d/other").await;
    assert_eq!(status, 200, "metadata got a slot: {body}");
    download.abort();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_trickling_artifact_is_cut_below_the_minimum_rate_and_nothing_is_kept() {
    let upstream = upstream().await;
    let setup = mirror(&upstream, plain(), |config| {
        config.limits.read_timeout = Duration::from_secs(1);
        config.limits.min_artifact_rate = 1024;
    });
    get(&setup.mirror, "/t/d/doc").await;
    let (status, body) = get(&setup.mirror, "/t/f/doc/trickle").await;
    assert_eq!(status, 504, "{body}");
    assert!(body.contains("below the minimum of 1 KiB/s"), "{body}");
    assert!(setup.files("tmp").is_empty(), "{:?}", setup.files("tmp"));
    assert!(setup.files("blobs").is_empty());
}

#[tokio::test]
async fn an_ecosystem_is_served_at_its_mount_and_indexed_under_its_own_name() {
    let upstream = upstream().await;
    let setup = mirror_at(&upstream, plain(), "v2/t", |_| {});
    let (status, body) = get(&setup.mirror, "/v2/t/d/other").await;
    assert_eq!(status, 200, "{body}");
    assert!(
        setup
            .mirror
            .index()
            .get_metadata("t", "other")
            .expect("index")
            .is_some(),
        "indexed under the adapter's name"
    );
    // Its name is not a mount, and the hint says where it is.
    let (status, body) = get(&setup.mirror, "/t/d/other").await;
    assert_eq!(status, 404, "{body}");
    assert!(body.contains("t at /v2/t/"), "{body}");
    // One mount serves one ecosystem.
    let dir = tempfile::tempdir().expect("tempdir");
    let twice = |name: &str| EcosystemSetup::new(Arc::new(plain()), name, Ok(upstream.url.clone()));
    assert!(
        Mirror::open(
            MirrorConfig::new(dir.path().to_owned()),
            vec![twice("a"), twice("a")]
        )
        .is_err()
    );
}

#[tokio::test]
async fn a_document_over_the_limit_gets_a_502_naming_the_limit_and_nothing_is_stored() {
    let upstream = upstream().await;
    let setup = mirror(
        &upstream,
        Test {
            max_document: 1024,
            listing: None,
        },
        |_| {},
    );
    // One announces its length, the other is only found too long while it is read.
    for name in ["big", "big-unannounced"] {
        let (status, body) = get(&setup.mirror, &format!("/t/d/{name}")).await;
        assert_eq!(status, 502, "{body}");
        assert!(
            body.contains("is larger than 1 KiB, the limit of t documents (--max-document-size)"),
            "{body}"
        );
        assert!(
            setup
                .mirror
                .index()
                .get_metadata("t", name)
                .expect("index")
                .is_none()
        );
    }
    assert!(setup.files("meta").is_empty());
    // The operator's limit overrides the ecosystem's.
    let setup = mirror(
        &upstream,
        Test {
            max_document: 1024,
            listing: None,
        },
        |config| config.max_document_bytes = Some(8192),
    );
    let (status, body) = get(&setup.mirror, "/t/d/big").await;
    assert_eq!(status, 200, "{body}");
}

#[tokio::test]
async fn an_endless_artifact_stops_at_the_declared_or_configured_size_and_leaves_nothing() {
    let upstream = upstream().await;
    let setup = mirror(&upstream, plain(), |config| {
        config.max_artifact_bytes = 64 << 10;
    });
    get(&setup.mirror, "/t/d/doc").await;
    for (file, limit) in [
        (
            "declared",
            "larger than 9.8 KiB, the limit of the size its listing declares",
        ),
        (
            "undeclared",
            "larger than 64 KiB, the limit of --max-artifact-size",
        ),
        (
            "announced",
            "larger than 64 KiB, the limit of --max-artifact-size",
        ),
    ] {
        let (status, body) = get(&setup.mirror, &format!("/t/f/doc/{file}")).await;
        assert_eq!(status, 502, "{file}: {body}");
        assert!(body.contains(limit), "{file}: {body}");
        assert!(setup.files("tmp").is_empty(), "{:?}", setup.files("tmp"));
    }
    assert!(setup.files("blobs").is_empty());
    assert!(setup.mirror.held_artifacts().expect("held").is_empty());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_big_listing_is_indexed_in_batches_while_healthz_and_other_writes_go_on_and_its_row_comes_after()
 {
    let upstream = upstream().await;
    let (paused_tx, paused) = std::sync::mpsc::channel();
    let (resume, resume_rx) = std::sync::mpsc::channel();
    let script = ListingScript {
        refs: 25_000,
        pause_at: 15_000,
        paused: Mutex::new(Some(paused_tx)),
        resume: Mutex::new(Some(resume_rx)),
    };
    let setup = mirror(
        &upstream,
        Test {
            max_document: 1 << 20,
            listing: Some(script),
        },
        |_| {},
    );
    get(&setup.mirror, "/t/d/doc").await;
    // The client gets the listing as soon as it verifies, while the node reads it.
    let listing = tokio::spawn({
        let mirror = setup.mirror.clone();
        async move { get(&mirror, "/t/f/doc/idx.list").await }
    });
    let paused = tokio::task::spawn_blocking(move || paused.recv_timeout(HANG));
    paused
        .await
        .expect("join")
        .expect("the listing is read, and pauses midway");
    let (status, body) = listing.await.expect("join");
    assert_eq!(status, 200, "{body}");
    // Midway through the listing: the node answers, another document is fetched and indexed
    // (it needs the index's writer), and the first batches are already indexed. The listing's
    // own row is not: a listing in the index has all its references there.
    let (status, _) = get(&setup.mirror, "/healthz").await;
    assert_eq!(status, 200);
    let (status, body) = get(&setup.mirror, "/t/d/other").await;
    assert_eq!(status, 200, "{body}");
    let index = setup.mirror.index();
    assert!(index.get_metadata("t", "other").expect("index").is_some());
    assert!(index.get_ref("t", "ref-0").expect("index").is_some());
    assert!(index.get_ref("t", "ref-24999").expect("index").is_none());
    assert!(
        index
            .get_artifact("t", "doc/idx.list")
            .expect("index")
            .is_none(),
        "the listing's row was written before its references"
    );
    // Asked again meanwhile, it is served from the download, not fetched again.
    let (status, body) = get(&setup.mirror, "/t/f/doc/idx.list").await;
    assert_eq!(status, 200, "{body}");
    resume.send(()).expect("resume");
    until("the listing's row is written", || {
        index
            .get_artifact("t", "doc/idx.list")
            .expect("index")
            .is_some()
    })
    .await;
    assert!(index.get_ref("t", "ref-24999").expect("index").is_some());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn shutdown_abandons_a_download_past_its_deadline_and_leaves_no_temp_file() {
    let upstream = upstream().await;
    // A trickle well above the minimum rate's reach: only shutdown can end it.
    let setup = mirror(&upstream, plain(), |config| {
        config.limits.read_timeout = Duration::from_secs(600);
    });
    get(&setup.mirror, "/t/d/doc").await;
    let client = {
        let mirror = setup.mirror.clone();
        tokio::spawn(async move { get(&mirror, "/t/f/doc/trickle").await })
    };
    until("the download writes its temp file", || {
        !setup.files("tmp").is_empty()
    })
    .await;

    let abandoned = setup
        .mirror
        .finish_downloads(Duration::from_millis(300))
        .await;
    assert_eq!(abandoned, 1);
    let (status, body) = client.await.expect("client");
    // The response had begun (200, streaming); its body ends short of the file.
    assert!(status == 200 || status == 503, "{status} {body}");
    assert!(setup.files("tmp").is_empty(), "{:?}", setup.files("tmp"));
    assert!(
        setup.files("blobs").is_empty(),
        "{:?}",
        setup.files("blobs")
    );
    assert_eq!(
        setup
            .mirror
            .cached_flat("t", "doc/trickle")
            .await
            .ok()
            .flatten(),
        None
    );
}

#[tokio::test]
async fn shutdown_with_no_download_under_way_returns_at_once() {
    let upstream = upstream().await;
    let setup = mirror(&upstream, plain(), |_| {});
    get(&setup.mirror, "/t/d/doc").await;
    assert_eq!(
        setup
            .mirror
            .finish_downloads(Duration::from_secs(600))
            .await,
        0
    );
}
