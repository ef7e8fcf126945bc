//! The store's size limits: over the global one, the least recently used artifacts go (under
//! every key), a request for one fetches it again, and what a pinned snapshot names stays; over
//! an ecosystem's own limit, only that ecosystem's least recently used go.

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
    let setup = EcosystemSetup::new(Arc::new(cairn_npm::Npm), "npm", Ok(upstream.url.clone()));
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

/// A PyPI simple index serving project `demo` with two sdists of 200 KiB each, `demo-1.0` and
/// `demo-2.0`; the files' paths under the mirror.
async fn pypi_project() -> (Upstream, [String; 2]) {
    use sha2::Digest as _;
    let upstream = Upstream::start().await;
    let mut files = Vec::new();
    let mut paths = Vec::new();
    for (i, version) in ["1.0", "2.0"].into_iter().enumerate() {
        let name = format!("demo-{version}.tar.gz");
        let sdist = Bytes::from(noise(200 * KIB, 91 + 2 * i as u64));
        files.push(serde_json::json!({
            "filename": name,
            "url": format!("{}packages/{name}", upstream.url),
            "hashes": { "sha256": hex::encode(sha2::Sha256::digest(&sdist)) },
            "size": sdist.len(),
        }));
        upstream.put(&format!("packages/{name}"), sdist);
        paths.push(format!("/pypi/files/demo/{name}"));
    }
    let page = serde_json::json!({
        "meta": { "api-version": "1.1" },
        "name": "demo",
        "files": files,
    });
    upstream.put("simple/demo/", page.to_string());
    let [first, second]: [String; 2] = paths.try_into().expect("two files");
    (upstream, [first, second])
}

/// A mirror serving npm from `npm` and PyPI from `pypi`, with `configure` setting its limits.
fn open_two(
    dir: &std::path::Path,
    npm: &Upstream,
    pypi: &Upstream,
    configure: impl FnOnce(&mut MirrorConfig),
) -> Mirror {
    let mut config = MirrorConfig::new(dir.to_owned());
    config.metadata_ttl = TTL;
    configure(&mut config);
    let setups = vec![
        EcosystemSetup::new(Arc::new(cairn_npm::Npm), "npm", Ok(npm.url.clone())),
        EcosystemSetup::new(
            Arc::new(cairn_pypi::Pypi),
            "pypi",
            Ok(pypi.url.join("simple/").expect("url")),
        ),
    ];
    Mirror::open(config, setups).expect("open the mirror")
}

/// Use `path` until the store serves it, a few milliseconds after the last use (access times
/// are in milliseconds: each use is then strictly later than the one before).
async fn use_artifact(mirror: &Mirror, path: &str) {
    tokio::time::sleep(std::time::Duration::from_millis(3)).await;
    served_from_store(mirror, path).await;
}

async fn fetch_pypi(mirror: &Mirror, path: &str) {
    assert_eq!(get(mirror, "/pypi/simple/demo/").await.status, 200);
    use_artifact(mirror, path).await;
}

async fn fetch_npm(mirror: &Mirror, name: &str) {
    assert_eq!(get(mirror, &format!("/npm/{name}")).await.status, 200);
    use_artifact(mirror, &format!("/npm/{name}/-/{name}-1.0.0.tgz")).await;
}

fn held(mirror: &Mirror, ecosystem: &str, key: &str) -> bool {
    mirror
        .index()
        .get_artifact(ecosystem, key)
        .expect("read")
        .is_some()
}

/// Whether a commit has woken the upkeep since the last pass, without waiting.
async fn upkeep_woken(mirror: &Mirror) -> bool {
    tokio::select! {
        biased;
        () = mirror.eviction_due() => true,
        () = std::future::ready(()) => false,
    }
}

#[tokio::test]
async fn an_ecosystem_over_its_own_limit_loses_its_least_recently_used_and_the_other_keeps_all() {
    let (npm, _) = three_packages().await;
    let (pypi, sdists) = pypi_project().await;
    let dir = tempfile::tempdir().expect("tempdir");
    // npm may keep 450 KiB; no global limit; PyPI none of its own.
    let mirror = open_two(dir.path(), &npm, &pypi, |config| {
        config
            .max_ecosystem_bytes
            .insert("npm".into(), 450 * KIB as u64);
    });
    // The first pass counts from the index (a serving node's upkeep runs it at start); the
    // store keeps the count from there.
    mirror.evict_if_over().await.expect("first count");
    // The PyPI files are the least recently used of the store.
    for path in &sdists {
        fetch_pypi(&mirror, path).await;
    }
    fetch_npm(&mirror, "a").await;
    fetch_npm(&mirror, "b").await;
    assert!(!upkeep_woken(&mirror).await, "npm holds 400 KiB of 450");
    fetch_npm(&mirror, "c").await;
    assert!(upkeep_woken(&mirror).await, "npm's commit passed its limit");
    // `a` is used again: `b` is npm's least recently used.
    use_artifact(&mirror, "/npm/a/-/a-1.0.0.tgz").await;
    mirror.flush_access_times().await.expect("access times");

    let pass = mirror.evict_if_over().await.expect("evict");

    // 600 KiB of npm down to 405 KiB at most: one file.
    assert_eq!((pass.files, pass.bytes), (1, 200 * KIB as u64));
    assert_eq!(pass.held, 800 * KIB as u64);
    assert_eq!(mirror.held_bytes_in("npm"), 400 * KIB as u64);
    assert_eq!(mirror.held_bytes_in("pypi"), 400 * KIB as u64);
    assert!(!held(&mirror, "npm", "b/-/b-1.0.0.tgz"));
    assert!(
        held(&mirror, "npm", "a/-/a-1.0.0.tgz"),
        "most recently used"
    );
    assert!(
        held(&mirror, "npm", "c/-/c-1.0.0.tgz"),
        "most recently used"
    );
    for name in ["demo-1.0.tar.gz", "demo-2.0.tar.gz"] {
        assert!(
            held(&mirror, "pypi", &format!("demo/{name}")),
            "{name}: PyPI has no limit"
        );
    }
    let metrics = mirror.metrics().encode();
    for line in [
        format!(
            "cairn_store_ecosystem_bytes{{ecosystem=\"npm\"}} {}",
            400 * KIB
        ),
        format!(
            "cairn_store_ecosystem_bytes{{ecosystem=\"pypi\"}} {}",
            400 * KIB
        ),
        format!(
            "cairn_store_ecosystem_limit_bytes{{ecosystem=\"npm\"}} {}",
            450 * KIB
        ),
        "cairn_evicted_files_total 1".to_owned(),
        format!("cairn_evicted_bytes_total {}", 200 * KIB),
        "cairn_store_limit_bytes 0".to_owned(),
    ] {
        assert!(metrics.contains(&line), "{line} missing:\n{metrics}");
    }
    assert!(
        !metrics.contains("cairn_store_ecosystem_limit_bytes{ecosystem=\"pypi\"}"),
        "no limit, no gauge:\n{metrics}"
    );
    // Under its limit now: the next pass evicts nothing.
    assert_eq!(mirror.evict_if_over().await.expect("evict").files, 0);
    // The PyPI files are still served from the store, never fetched again.
    for (path, name) in sdists.iter().zip(["demo-1.0.tar.gz", "demo-2.0.tar.gz"]) {
        served_from_store(&mirror, path).await;
        assert_eq!(pypi.hits(&format!("packages/{name}")), 1, "{name}");
    }
}

#[tokio::test]
async fn pinned_files_of_an_ecosystem_over_its_limit_stay() {
    let (npm, _) = three_packages().await;
    let (pypi, sdists) = pypi_project().await;
    let dir = tempfile::tempdir().expect("tempdir");
    let mirror = open_two(dir.path(), &npm, &pypi, |config| {
        config
            .max_ecosystem_bytes
            .insert("npm".into(), 300 * KIB as u64);
    });
    for name in ["a", "b", "c"] {
        fetch_npm(&mirror, name).await;
    }
    for path in &sdists {
        fetch_pypi(&mirror, path).await;
    }
    // Pin the state holding `a` and `b` (the least recently used of npm) and no PyPI file.
    let (mut snapshot, _) =
        cairn_mirror::snapshot::collect(mirror.index(), None).expect("snapshot");
    snapshot
        .artifacts
        .retain(|a| a.key == "a/-/a-1.0.0.tgz" || a.key == "b/-/b-1.0.0.tgz");
    assert_eq!(snapshot.artifacts.len(), 2);
    let encoded = snapshot.encode();
    mirror.store().put_blocks(&encoded.blocks).expect("blocks");
    mirror.store().pin(&encoded.root, 1).expect("pin");

    let pass = mirror.evict_if_over().await.expect("evict");

    // Only `c` may go: npm stays over its limit, its pins intact, PyPI untouched.
    assert_eq!(pass.files, 1);
    assert!(!held(&mirror, "npm", "c/-/c-1.0.0.tgz"));
    assert!(held(&mirror, "npm", "a/-/a-1.0.0.tgz"), "pinned");
    assert!(held(&mirror, "npm", "b/-/b-1.0.0.tgz"), "pinned");
    assert_eq!(mirror.held_bytes_in("npm"), 400 * KIB as u64);
    for name in ["demo-1.0.tar.gz", "demo-2.0.tar.gz"] {
        assert!(held(&mirror, "pypi", &format!("demo/{name}")), "{name}");
    }
}

#[tokio::test]
async fn the_global_limit_still_trims_across_ecosystems_whose_own_limits_never_bind() {
    let (npm, _) = three_packages().await;
    let (pypi, sdists) = pypi_project().await;
    let dir = tempfile::tempdir().expect("tempdir");
    // npm's own limit is above the global one: it never binds.
    let mirror = open_two(dir.path(), &npm, &pypi, |config| {
        config.max_store_bytes = Some(700 * KIB as u64);
        config.max_ecosystem_bytes.insert("npm".into(), 1 << 30);
    });
    // Least recently used first: demo-1.0 (PyPI), then a (npm).
    fetch_pypi(&mirror, &sdists[0]).await;
    for name in ["a", "b", "c"] {
        fetch_npm(&mirror, name).await;
    }
    fetch_pypi(&mirror, &sdists[1]).await;
    mirror.flush_access_times().await.expect("access times");

    let pass = mirror.evict_if_over().await.expect("evict");

    // 1000 KiB down to 630 KiB at most: the two least recently used, one of each ecosystem.
    assert_eq!((pass.files, pass.bytes), (2, 400 * KIB as u64));
    assert_eq!(pass.held, 600 * KIB as u64);
    assert!(!held(&mirror, "pypi", "demo/demo-1.0.tar.gz"));
    assert!(!held(&mirror, "npm", "a/-/a-1.0.0.tgz"));
    assert!(held(&mirror, "pypi", "demo/demo-2.0.tar.gz"));
    assert!(held(&mirror, "npm", "b/-/b-1.0.0.tgz"));
    assert!(held(&mirror, "npm", "c/-/c-1.0.0.tgz"));
    assert_eq!(mirror.held_bytes_in("npm"), 400 * KIB as u64);
    assert_eq!(mirror.held_bytes_in("pypi"), 200 * KIB as u64);
    let metrics = mirror.metrics().encode();
    assert!(
        metrics.contains(&format!(
            "cairn_store_ecosystem_bytes{{ecosystem=\"pypi\"}} {}",
            200 * KIB
        )),
        "counted again after the pass:\n{metrics}"
    );
}
