//! Purging a package: its files and documents leave the store and every memory cache, so the
//! next request for them reaches upstream again; other packages stay. And the route: only a
//! client on this machine, naming the node by address, may ask for a purge.

use std::net::SocketAddr;
use std::sync::Arc;

use base64::Engine as _;
use bytes::Bytes;
use cairn_mirror::ecosystem::Ecosystem;
use cairn_mirror::testing::noise;
use cairn_mirror::{Mirror, PurgeReport, PurgeSpec};
use sha2::Digest as _;
use url::Url;

use crate::upstream::Upstream;
use crate::{Reply, TTL, blobs, get, open, served_from_store};

fn npm() -> Arc<dyn Ecosystem> {
    Arc::new(cairn_npm::Npm)
}

fn integrity(tarball: &[u8]) -> String {
    format!(
        "sha512-{}",
        base64::engine::general_purpose::STANDARD.encode(sha2::Sha512::digest(tarball))
    )
}

/// A packument of `name` with a version for each of `versions` (version, tarball).
fn packument(upstream: &Url, name: &str, versions: &[(&str, &Bytes)]) -> String {
    let mut all = serde_json::Map::new();
    for (version, tarball) in versions {
        all.insert(
            (*version).to_owned(),
            serde_json::json!({
                "name": name,
                "version": version,
                "dist": {
                    "integrity": integrity(tarball),
                    "tarball": format!("{upstream}{name}/-/{name}-{version}.tgz"),
                },
            }),
        );
    }
    serde_json::json!({
        "_id": name,
        "name": name,
        "dist-tags": { "latest": versions.last().map(|(v, _)| *v) },
        "versions": all,
    })
    .to_string()
}

/// An npm upstream serving `left-pad` 1.3.0 and 1.4.0, and `other` 1.0.0, and a mirror in front
/// of it that has fetched all of them.
async fn warmed(dir: &std::path::Path) -> (Upstream, Mirror, Vec<Bytes>) {
    let upstream = Upstream::start().await;
    let tarballs: Vec<Bytes> = [21u64, 23, 25]
        .iter()
        .map(|seed| Bytes::from(noise(100 << 10, *seed)))
        .collect();
    upstream.put(
        "left-pad",
        packument(
            &upstream.url,
            "left-pad",
            &[("1.3.0", &tarballs[0]), ("1.4.0", &tarballs[1])],
        ),
    );
    upstream.put("left-pad/-/left-pad-1.3.0.tgz", tarballs[0].clone());
    upstream.put("left-pad/-/left-pad-1.4.0.tgz", tarballs[1].clone());
    upstream.put(
        "other",
        packument(&upstream.url, "other", &[("1.0.0", &tarballs[2])]),
    );
    upstream.put("other/-/other-1.0.0.tgz", tarballs[2].clone());
    let mirror = open(dir, TTL, vec![(npm(), upstream.url.clone())]);
    for (doc, tarballs) in [
        (
            "left-pad",
            &[
                "left-pad/-/left-pad-1.3.0.tgz",
                "left-pad/-/left-pad-1.4.0.tgz",
            ][..],
        ),
        ("other", &["other/-/other-1.0.0.tgz"][..]),
    ] {
        assert_eq!(get(&mirror, &format!("/npm/{doc}")).await.status, 200);
        for tarball in tarballs {
            served_from_store(&mirror, &format!("/npm/{tarball}")).await;
            // Twice: the second is a hit of the hot rows and bytes, which the purge must drop.
            served_from_store(&mirror, &format!("/npm/{tarball}")).await;
        }
        assert_eq!(get(&mirror, &format!("/npm/{doc}")).await.status, 200);
    }
    assert_eq!(upstream.hits("left-pad"), 1);
    (upstream, mirror, tarballs)
}

fn spec(text: &str) -> PurgeSpec {
    PurgeSpec::parse(text).expect("a spec")
}

#[tokio::test]
async fn after_a_package_purge_its_packument_and_tarballs_come_from_upstream_again() {
    let dir = tempfile::tempdir().expect("tempdir");
    let (upstream, mirror, tarballs) = warmed(dir.path()).await;
    let held_before = blobs(dir.path()).len();
    // The upkeep has counted the store: three tarballs of npm.
    mirror.evict_if_over().await.expect("upkeep");
    assert_eq!(mirror.held_bytes_in("npm"), 3 * (100 << 10));

    let report = mirror.purge(&spec("npm:left-pad")).await.expect("purge");

    assert_eq!(report.documents, ["left-pad"]);
    assert_eq!((report.files, report.bytes), (2, 2 * (100 << 10)));
    let mut keys: Vec<&str> = report.artifacts.iter().map(|k| k.key.as_str()).collect();
    keys.sort_unstable();
    assert_eq!(
        keys,
        [
            "left-pad/-/left-pad-1.3.0.tgz",
            "left-pad/-/left-pad-1.4.0.tgz"
        ]
    );
    assert_eq!(
        blobs(dir.path()).len(),
        held_before - 2,
        "the files are gone"
    );
    let metrics = mirror.metrics().encode();
    assert!(
        metrics.contains("cairn_purged_files_total 2")
            && metrics.contains(&format!("cairn_purged_bytes_total {}", 2 * (100 << 10))),
        "{metrics}"
    );
    assert!(
        mirror
            .index()
            .get_metadata("npm", "left-pad")
            .expect("read")
            .is_none()
    );
    // The next upkeep counts again (the purge cannot know which ecosystems named the files).
    let upkeep = mirror.evict_if_over().await.expect("upkeep");
    assert_eq!(upkeep.held, 100 << 10);
    assert_eq!(mirror.held_bytes_in("npm"), 100 << 10);

    // The packument (in any of its forms) and each tarball are fetched from upstream again.
    assert_eq!(get(&mirror, "/npm/left-pad").await.status, 200);
    assert_eq!(upstream.hits("left-pad"), 2);
    let again = served_from_store(&mirror, "/npm/left-pad/-/left-pad-1.4.0.tgz").await;
    assert_eq!(again.body, tarballs[1]);
    assert_eq!(upstream.hits("left-pad/-/left-pad-1.4.0.tgz"), 2);
    // The other package was not touched.
    assert_eq!(get(&mirror, "/npm/other").await.status, 200);
    served_from_store(&mirror, "/npm/other/-/other-1.0.0.tgz").await;
    assert_eq!(upstream.hits("other"), 1);
    assert_eq!(upstream.hits("other/-/other-1.0.0.tgz"), 1);
}

#[tokio::test]
async fn a_version_purge_drops_only_that_tarball_and_keeps_the_packument() {
    let dir = tempfile::tempdir().expect("tempdir");
    let (upstream, mirror, tarballs) = warmed(dir.path()).await;

    let report = mirror
        .purge(&spec("npm:left-pad@1.3.0"))
        .await
        .expect("purge");

    assert_eq!(report.version.as_deref(), Some("1.3.0"));
    assert!(report.documents.is_empty());
    assert_eq!(report.files, 1);
    let again = served_from_store(&mirror, "/npm/left-pad/-/left-pad-1.3.0.tgz").await;
    assert_eq!(again.body, tarballs[0]);
    assert_eq!(upstream.hits("left-pad/-/left-pad-1.3.0.tgz"), 2);
    served_from_store(&mirror, "/npm/left-pad/-/left-pad-1.4.0.tgz").await;
    assert_eq!(upstream.hits("left-pad/-/left-pad-1.4.0.tgz"), 1);
    assert_eq!(get(&mirror, "/npm/left-pad").await.status, 200);
    assert_eq!(upstream.hits("left-pad"), 1, "the packument stayed");
}

#[tokio::test]
async fn a_purge_of_an_unknown_ecosystem_or_a_bad_name_is_refused_naming_it() {
    let dir = tempfile::tempdir().expect("tempdir");
    let mirror = open(
        dir.path(),
        TTL,
        vec![(npm(), "http://127.0.0.1:9/".parse().expect("url"))],
    );
    let err = mirror
        .purge(&spec("gems:rails"))
        .await
        .expect_err("unknown ecosystem");
    assert_eq!(err.status(), 404);
    assert!(
        err.to_string().contains("\"gems\"") && err.to_string().contains("npm"),
        "{err}"
    );
    let err = mirror
        .purge(&spec("npm:../../etc"))
        .await
        .expect_err("bad name");
    assert_eq!(err.status(), 400);
    assert!(err.to_string().contains("../../etc"), "{err}");
}

/// A `method` request for `path` through the router, from `remote` (as the accept loop records
/// the TCP peer; `None`: no peer recorded), with `host` as its `Host`.
async fn ask(mirror: &Mirror, method: &str, path: &str, remote: Option<&str>, host: &str) -> Reply {
    let mut request = http::Request::builder()
        .method(method)
        .uri(path)
        .header(http::header::HOST, host)
        .body(axum::body::Body::empty())
        .expect("request");
    if let Some(remote) = remote {
        let remote: SocketAddr = remote.parse().expect("an address");
        request
            .extensions_mut()
            .insert(axum::extract::ConnectInfo(remote));
    }
    crate::send(mirror, request).await
}

fn error_of(reply: &Reply) -> String {
    let body: serde_json::Value = serde_json::from_slice(&reply.body).expect("a JSON error");
    body["error"].as_str().expect("an error message").to_owned()
}

#[tokio::test]
async fn a_purge_from_a_local_client_drops_the_package_and_answers_a_json_report() {
    let dir = tempfile::tempdir().expect("tempdir");
    let (upstream, mirror, _) = warmed(dir.path()).await;
    let path = spec("npm:left-pad@1.4.0").path();
    for (remote, host) in [
        ("127.0.0.1:50000", "127.0.0.1:7777"),
        ("[::1]:50000", "[::1]:7777"),
        ("[::ffff:127.0.0.1]:50000", "localhost:7777"),
    ] {
        let reply = ask(&mirror, "DELETE", &path, Some(remote), host).await;
        assert_eq!(
            reply.status,
            200,
            "{remote}: {}",
            String::from_utf8_lossy(&reply.body)
        );
        assert_eq!(reply.header("content-type"), Some("application/json"));
        let _: PurgeReport = serde_json::from_slice(&reply.body).expect("a report");
    }
    // The first purge dropped the file; the next ones found nothing more.
    served_from_store(&mirror, "/npm/left-pad/-/left-pad-1.4.0.tgz").await;
    assert_eq!(upstream.hits("left-pad/-/left-pad-1.4.0.tgz"), 2);
}

#[tokio::test]
async fn a_purge_from_another_machine_or_an_unknown_address_is_refused_with_403() {
    let dir = tempfile::tempdir().expect("tempdir");
    let (upstream, mirror, _) = warmed(dir.path()).await;
    let path = spec("npm:left-pad").path();
    for (remote, host) in [
        (Some("10.0.0.5:40000"), "10.0.0.1:7777"),
        (Some("192.168.1.20:40000"), "127.0.0.1:7777"),
        (Some("[2001:db8::1]:40000"), "[::1]:7777"),
        (None, "127.0.0.1:7777"),
        // A web page whose name was pointed at this machine (DNS rebinding).
        (Some("127.0.0.1:40000"), "attacker.example:7777"),
    ] {
        let reply = ask(&mirror, "DELETE", &path, remote, host).await;
        assert_eq!(reply.status, 403, "{remote:?} {host}");
        let error = error_of(&reply);
        assert!(error.contains("purge"), "{error}");
    }
    // Nothing was purged.
    assert_eq!(get(&mirror, "/npm/left-pad").await.status, 200);
    served_from_store(&mirror, "/npm/left-pad/-/left-pad-1.3.0.tgz").await;
    assert_eq!(upstream.hits("left-pad"), 1);
    assert_eq!(upstream.hits("left-pad/-/left-pad-1.3.0.tgz"), 1);
}

#[tokio::test]
async fn the_purge_route_takes_only_delete_and_names_what_it_cannot_find() {
    let dir = tempfile::tempdir().expect("tempdir");
    let mirror = open(
        dir.path(),
        TTL,
        vec![(npm(), "http://127.0.0.1:9/".parse().expect("url"))],
    );
    let local = Some("127.0.0.1:50000");
    let reply = ask(
        &mirror,
        "GET",
        "/api/v1/purge/npm/left-pad",
        local,
        "127.0.0.1",
    )
    .await;
    assert_eq!(reply.status, 405);
    assert_eq!(reply.header("allow"), Some("DELETE"));
    let reply = ask(
        &mirror,
        "DELETE",
        "/api/v1/purge/gems/rails",
        local,
        "127.0.0.1",
    )
    .await;
    assert_eq!(reply.status, 404);
    assert!(error_of(&reply).contains("gems"));
    let reply = ask(&mirror, "DELETE", "/api/v1/purge/npm/", local, "127.0.0.1").await;
    assert_eq!(reply.status, 400, "no package named");
    let reply = ask(
        &mirror,
        "DELETE",
        "/api/v1/purge/npm/%FF",
        local,
        "127.0.0.1",
    )
    .await;
    assert_eq!(reply.status, 400);
    // Scoped names travel encoded and decoded; nothing is held, so nothing is dropped.
    let reply = ask(
        &mirror,
        "DELETE",
        "/api/v1/purge/npm/@types%2Fnode",
        local,
        "127.0.0.1",
    )
    .await;
    assert_eq!(
        reply.status,
        200,
        "{}",
        String::from_utf8_lossy(&reply.body)
    );
    let report: PurgeReport = serde_json::from_slice(&reply.body).expect("a report");
    assert_eq!((report.package.as_str(), report.files), ("@types/node", 0));
}

#[tokio::test]
async fn a_purge_waits_for_a_download_of_the_package_under_way_and_drops_what_it_commits() {
    let dir = tempfile::tempdir().expect("tempdir");
    let upstream = Upstream::start().await;
    let tarball = Bytes::from(noise(300 << 10, 27));
    let path = "late/-/late-1.0.0.tgz";
    upstream.put(
        "late",
        packument(&upstream.url, "late", &[("1.0.0", &tarball)]),
    );
    upstream.put(path, tarball.clone());
    upstream.hold(path);
    let mirror = open(dir.path(), TTL, vec![(npm(), upstream.url.clone())]);
    assert_eq!(get(&mirror, "/npm/late").await.status, 200);
    // A client starts the download; upstream sends half of it and waits.
    let client = {
        let mirror = mirror.clone();
        tokio::spawn(async move { get(&mirror, &format!("/npm/{path}")).await })
    };
    let deadline = tokio::time::Instant::now() + std::time::Duration::from_secs(10);
    while upstream.hits(path) == 0 {
        assert!(
            tokio::time::Instant::now() < deadline,
            "the download never started"
        );
        tokio::time::sleep(std::time::Duration::from_millis(10)).await;
    }
    let purge = {
        let mirror = mirror.clone();
        tokio::spawn(async move { mirror.purge(&spec("npm:late")).await })
    };
    // On this single-threaded runtime the purge runs now, up to its wait for the download.
    tokio::task::yield_now().await;
    assert!(!purge.is_finished(), "the purge waits for the download");
    upstream.release();

    let report = purge.await.expect("the purge task").expect("purge");
    assert_eq!(
        report.files, 1,
        "what the download committed was purged: {report:?}"
    );
    assert!(report.unfinished.is_empty());
    assert_eq!(client.await.expect("the client").body, tarball);
    assert!(
        mirror
            .index()
            .get_artifact("npm", path)
            .expect("read")
            .is_none()
    );
    assert!(blobs(dir.path()).is_empty(), "nothing of it stays");
}
