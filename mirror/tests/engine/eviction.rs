//! The store's size limit: over it, the least recently used artifacts go (under every key),
//! a request for one fetches it again, and what a pinned snapshot names stays.

use std::sync::Arc;

use bytes::Bytes;
use cairn_mirror::testing::noise;
use cairn_mirror::{EcosystemSetup, Mirror, MirrorConfig};

use crate::npm::packument;
use crate::upstream::Upstream;
use crate::{TTL, get, served_from_store};

const KIB: usize = 1 << 10;

/// An npm upstream serving `a`, `b` and `c` 1.0.0, each tarball of 200 KiB.
async fn three_packages() -> (Upstream, Vec<Bytes>) {
    let upstream = Upstream::start().await;
    let mut tarballs = Vec::new();
    for (i, name) in ["a", "b", "c"].into_iter().enumerate() {
        // Odd seeds: `noise` sets the lowest bit, so 2k and 2k+1 would give the same bytes.
        let tarball = Bytes::from(noise(200 * KIB, 41 + 2 * i as u64));
        upstream.put(name, packument(&upstream.url, name, &tarball));
        upstream.put(&format!("{name}/-/{name}-1.0.0.tgz"), tarball.clone());
        tarballs.push(tarball);
    }
    (upstream, tarballs)
}

fn open_limited(dir: &std::path::Path, upstream: &Upstream, max: u64) -> Mirror {
    let mut config = MirrorConfig::new(dir.to_owned());
    config.metadata_ttl = TTL;
    config.max_store_bytes = Some(max);
    let setup = EcosystemSetup {
        ecosystem: Arc::new(cairn_npm::Npm),
        mount: "npm".into(),
        upstream: Ok(upstream.url.clone()),
    };
    Mirror::open(config, vec![setup]).expect("open the mirror")
}

/// Fetch each package's tarball through `mirror`, in order, until each is stored.
async fn fetch_all(mirror: &Mirror) {
    for name in ["a", "b", "c"] {
        assert_eq!(get(mirror, &format!("/npm/{name}")).await.status, 200);
        served_from_store(mirror, &format!("/npm/{name}/-/{name}-1.0.0.tgz")).await;
    }
}

#[tokio::test]
async fn over_its_limit_the_store_drops_the_least_recently_used_and_fetches_it_again_on_request() {
    let (upstream, tarballs) = three_packages().await;
    let dir = tempfile::tempdir().expect("tempdir");
    let mirror = open_limited(dir.path(), &upstream, 450 * KIB as u64);
    fetch_all(&mirror).await;
    // `a` is used again: `b` is now the least recently used.
    served_from_store(&mirror, "/npm/a/-/a-1.0.0.tgz").await;
    mirror.flush_access_times().await.expect("access times");

    let pass = mirror.evict_if_over().await.expect("evict");
    assert_eq!((pass.files, pass.bytes), (1, 200 * KIB as u64));
    assert_eq!(pass.held, 400 * KIB as u64);
    assert!(
        mirror
            .index()
            .get_artifact("npm", "b/-/b-1.0.0.tgz")
            .expect("read")
            .is_none()
    );
    for kept in ["a/-/a-1.0.0.tgz", "c/-/c-1.0.0.tgz"] {
        assert!(
            mirror
                .index()
                .get_artifact("npm", kept)
                .expect("read")
                .is_some(),
            "{kept}"
        );
    }
    let metrics = mirror.metrics().encode();
    assert!(metrics.contains("cairn_evicted_files_total 1"), "{metrics}");
    assert!(
        metrics.contains(&format!("cairn_store_limit_bytes {}", 450 * KIB)),
        "{metrics}"
    );
    // The next pass finds the store under its limit.
    assert_eq!(mirror.evict_if_over().await.expect("evict").files, 0);

    let again = served_from_store(&mirror, "/npm/b/-/b-1.0.0.tgz").await;
    assert_eq!(again.body, tarballs[1]);
    assert_eq!(
        upstream.hits("b/-/b-1.0.0.tgz"),
        2,
        "fetched again from upstream"
    );
    assert_eq!(upstream.hits("a/-/a-1.0.0.tgz"), 1, "a stayed");
}

#[tokio::test]
async fn what_a_pinned_snapshot_names_is_never_evicted() {
    let (upstream, _) = three_packages().await;
    let dir = tempfile::tempdir().expect("tempdir");
    let mirror = open_limited(dir.path(), &upstream, 300 * KIB as u64);
    fetch_all(&mirror).await;
    // Pin the state holding `a` and `b`: drop `c` from the snapshot first.
    let (mut snapshot, _) =
        cairn_mirror::snapshot::collect(mirror.index(), None).expect("snapshot");
    snapshot.artifacts.retain(|a| a.key != "c/-/c-1.0.0.tgz");
    let encoded = snapshot.encode();
    mirror.store().put_blocks(&encoded.blocks).expect("blocks");
    mirror.store().pin(&encoded.root, 1).expect("pin");

    let pass = mirror.evict_if_over().await.expect("evict");

    // 600 KiB over a 300 KiB limit, and only `c` may go: the store stays over, pins intact.
    assert_eq!(pass.files, 1);
    assert_eq!(pass.held, 400 * KIB as u64);
    assert!(
        mirror
            .index()
            .get_artifact("npm", "c/-/c-1.0.0.tgz")
            .expect("read")
            .is_none()
    );
    for pinned in ["a/-/a-1.0.0.tgz", "b/-/b-1.0.0.tgz"] {
        assert!(
            mirror
                .index()
                .get_artifact("npm", pinned)
                .expect("read")
                .is_some(),
            "{pinned}"
        );
    }
}

#[tokio::test]
async fn a_response_streaming_a_file_when_it_is_evicted_ends_whole() {
    use http_body_util::BodyExt as _;
    use tower::ServiceExt as _;
    let upstream = Upstream::start().await;
    // Sixteen leaves: the response reads at most a few ahead of its client, so most are read
    // from the open file after it is evicted.
    let tarball = Bytes::from(noise(16 << 20, 61));
    upstream.put("big", packument(&upstream.url, "big", &tarball));
    upstream.put("big/-/big-1.0.0.tgz", tarball.clone());
    let dir = tempfile::tempdir().expect("tempdir");
    let mirror = open_limited(dir.path(), &upstream, 1 << 20);
    assert_eq!(get(&mirror, "/npm/big").await.status, 200);
    served_from_store(&mirror, "/npm/big/-/big-1.0.0.tgz").await;

    let request = http::Request::get("/npm/big/-/big-1.0.0.tgz")
        .header(http::header::HOST, "cairn.test")
        .body(axum::body::Body::empty())
        .expect("request");
    let response = cairn_mirror::http::router(mirror.clone())
        .oneshot(request)
        .await
        .expect("response");
    assert_eq!(response.status(), 200);
    assert!(
        response.headers().contains_key("x-ipfs-roots"),
        "from the store"
    );
    let mut body = response.into_body();
    let mut received = Vec::new();
    while received.len() < 1 << 20 {
        let frame = body.frame().await.expect("a frame").expect("bytes");
        received.extend_from_slice(frame.data_ref().expect("data"));
    }
    // Over a 1 MiB limit, the file goes while the response is under way.
    let pass = mirror.evict_if_over().await.expect("evict");
    assert_eq!(pass.files, 1);
    assert!(
        mirror
            .index()
            .get_artifact("npm", "big/-/big-1.0.0.tgz")
            .expect("read")
            .is_none()
    );
    while let Some(frame) = body.frame().await {
        received.extend_from_slice(frame.expect("bytes").data_ref().expect("data"));
    }
    assert!(received == tarball[..], "the response was cut or changed");
}
