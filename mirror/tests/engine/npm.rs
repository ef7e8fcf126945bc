//! npm: freshness and revalidation of a packument, conditional requests (also while the
//! tarball is still downloading), ranges of a tarball under way, stale-if-error, and a tarball
//! that does not match its integrity.

use std::sync::Arc;

use base64::Engine as _;
use bytes::Bytes;
use cairn_mirror::ecosystem::Ecosystem;
use cairn_mirror::testing::noise;
use sha2::Digest as _;
use url::Url;

use crate::upstream::{LAST_MODIFIED, Upstream, etag_of};
use crate::{
    Reply, STALE, TTL, assert_refused_and_nothing_stored, blobs, committed, get, get_with, open,
    served_from_store,
};

fn npm() -> Arc<dyn Ecosystem> {
    Arc::new(cairn_npm::Npm)
}

/// A packument of `name` 1.0.0 whose tarball, on `upstream`, has `tarball` as its bytes.
pub(crate) fn packument(upstream: &Url, name: &str, tarball: &[u8]) -> String {
    let integrity = format!(
        "sha512-{}",
        base64::engine::general_purpose::STANDARD.encode(sha2::Sha512::digest(tarball))
    );
    serde_json::json!({
        "_id": name,
        "name": name,
        "dist-tags": { "latest": "1.0.0" },
        "versions": { "1.0.0": {
            "name": name,
            "version": "1.0.0",
            "dist": {
                "integrity": integrity,
                "tarball": format!("{upstream}{name}/-/{name}-1.0.0.tgz"),
            },
        }},
        "time": { "1.0.0": "2026-01-01T00:00:00.000Z", "modified": "2026-01-01T00:00:00.000Z" },
    })
    .to_string()
}

/// An npm upstream serving `demo` 1.0.0 (tarball of 200 KiB).
async fn npm_upstream() -> (Upstream, Bytes) {
    let upstream = Upstream::start().await;
    let tarball = Bytes::from(noise(200 << 10, 7));
    upstream.put("demo", packument(&upstream.url, "demo", &tarball));
    upstream.put("demo/-/demo-1.0.0.tgz", tarball.clone());
    (upstream, tarball)
}

#[tokio::test]
async fn a_fresh_document_is_served_without_asking_upstream() {
    let (upstream, _) = npm_upstream().await;
    let dir = tempfile::tempdir().expect("tempdir");
    let mirror = open(dir.path(), TTL, vec![(npm(), upstream.url.clone())]);
    let first = get(&mirror, "/npm/demo").await;
    assert_eq!(first.status, 200);
    let second = get(&mirror, "/npm/demo").await;
    assert_eq!(second.status, 200);
    assert_eq!(second.body, first.body);
    assert!(second.header("warning").is_none());
    assert_eq!(upstream.hits("demo"), 1, "a fresh copy is not revalidated");
}

#[tokio::test]
async fn a_stale_document_is_revalidated_and_a_304_keeps_it() {
    let (upstream, _) = npm_upstream().await;
    let dir = tempfile::tempdir().expect("tempdir");
    let mirror = open(dir.path(), STALE, vec![(npm(), upstream.url.clone())]);
    let first = get(&mirror, "/npm/demo").await;
    assert_eq!(first.status, 200);
    assert_eq!(upstream.not_modified("demo"), 0);
    let second = get(&mirror, "/npm/demo").await;
    assert_eq!(second.status, 200);
    assert_eq!(second.body, first.body, "the revalidated copy is served");
    assert!(second.header("warning").is_none(), "a 304 is no error");
    assert_eq!(upstream.hits("demo"), 2, "the stale copy was revalidated");
    assert_eq!(upstream.not_modified("demo"), 1, "upstream answered 304");
    let sent = etag_of(packument(&upstream.url, "demo", &noise(200 << 10, 7)).as_bytes());
    assert_eq!(
        upstream.last_conditions("demo"),
        Some((Some(sent), Some(LAST_MODIFIED.to_owned()))),
        "revalidation sends the stored ETag and Last-Modified"
    );
}

#[tokio::test]
async fn a_changed_document_replaces_the_stale_copy() {
    let (upstream, _) = npm_upstream().await;
    let dir = tempfile::tempdir().expect("tempdir");
    let mirror = open(dir.path(), STALE, vec![(npm(), upstream.url.clone())]);
    assert_eq!(get(&mirror, "/npm/demo").await.status, 200);
    let newer = Bytes::from(noise(100 << 10, 8));
    upstream.put("demo", packument(&upstream.url, "demo", &newer));
    upstream.put("demo/-/demo-1.0.0.tgz", newer.clone());
    let reply = get(&mirror, "/npm/demo").await;
    assert_eq!(reply.status, 200);
    assert_eq!(upstream.not_modified("demo"), 0);
    let tarball = get(&mirror, "/npm/demo/-/demo-1.0.0.tgz").await;
    assert_eq!(tarball.status, 200);
    assert_eq!(
        tarball.body, newer,
        "the new document's digest is the one checked"
    );
}

#[tokio::test]
async fn a_conditional_request_matching_the_document_gets_a_304() {
    let (upstream, _) = npm_upstream().await;
    let dir = tempfile::tempdir().expect("tempdir");
    let mirror = open(dir.path(), TTL, vec![(npm(), upstream.url.clone())]);
    let first = get(&mirror, "/npm/demo").await;
    assert_eq!(first.status, 200);
    let etag = first.header("etag").expect("an ETag").to_owned();
    let last_modified = first
        .header("last-modified")
        .expect("a Last-Modified")
        .to_owned();
    let by_tag = get_with(&mirror, "/npm/demo", &[("if-none-match", &etag)]).await;
    assert_eq!(by_tag.status, 304);
    assert!(by_tag.body.is_empty());
    assert_eq!(by_tag.header("etag"), Some(etag.as_str()));
    let by_date = get_with(
        &mirror,
        "/npm/demo",
        &[("if-modified-since", &last_modified)],
    )
    .await;
    assert_eq!(by_date.status, 304);
    let other = get_with(&mirror, "/npm/demo", &[("if-none-match", "\"other\"")]).await;
    assert_eq!(other.status, 200, "another ETag gets the document");
    assert_eq!(other.body, first.body);
    // An artifact's ETag is its content: once stored, a 304 too.
    assert_eq!(get(&mirror, "/npm/demo/-/demo-1.0.0.tgz").await.status, 200);
    let stored = served_from_store(&mirror, "/npm/demo/-/demo-1.0.0.tgz").await;
    assert_eq!(stored.status, 200);
    let etag = stored.header("etag").expect("an artifact ETag").to_owned();
    let again = get_with(
        &mirror,
        "/npm/demo/-/demo-1.0.0.tgz",
        &[("if-none-match", &etag)],
    )
    .await;
    assert_eq!(again.status, 304);
    assert_eq!(upstream.hits("demo"), 1, "no revalidation was needed");
    assert_eq!(upstream.hits("demo/-/demo-1.0.0.tgz"), 1);
}

/// The stale copy, with a `Warning: 110` that says why it was not revalidated.
fn assert_stale(reply: &Reply, first: &Reply, why: &str) {
    assert_eq!(
        reply.status,
        200,
        "{}",
        String::from_utf8_lossy(&reply.body)
    );
    assert_eq!(reply.body, first.body, "the stale copy is served");
    let warning = reply.header("warning").expect("a Warning header");
    assert!(
        warning.starts_with("110 ") && warning.contains(why),
        "Warning {warning:?} does not say {why:?}"
    );
    assert!(reply.header("age").is_some(), "an Age header");
}

#[tokio::test]
async fn a_stale_document_is_served_with_a_warning_when_upstream_answers_5xx() {
    let (upstream, _) = npm_upstream().await;
    let dir = tempfile::tempdir().expect("tempdir");
    let mirror = open(dir.path(), STALE, vec![(npm(), upstream.url.clone())]);
    let first = get(&mirror, "/npm/demo").await;
    assert_eq!(first.status, 200);
    upstream.fail_with(Some(503));
    let reply = get(&mirror, "/npm/demo").await;
    assert_stale(&reply, &first, "upstream answered 503");
    assert_eq!(upstream.hits("demo"), 2, "revalidation was tried");
    // A document never fetched has no stale copy: the gateway got no answer (504).
    assert_eq!(get(&mirror, "/npm/other").await.status, 504);
}

#[tokio::test]
async fn a_stale_document_is_served_with_a_warning_when_upstream_is_down() {
    let (mut upstream, _) = npm_upstream().await;
    let dir = tempfile::tempdir().expect("tempdir");
    let mirror = open(dir.path(), STALE, vec![(npm(), upstream.url.clone())]);
    let first = get(&mirror, "/npm/demo").await;
    assert_eq!(first.status, 200);
    upstream.stop().await;
    let reply = get(&mirror, "/npm/demo").await;
    assert_stale(&reply, &first, "upstream unreachable");
    assert_eq!(upstream.hits("demo"), 1);
}

#[tokio::test]
async fn a_digest_mismatch_is_a_502_with_nothing_stored_and_a_good_upstream_then_works() {
    let (upstream, tarball) = npm_upstream().await;
    let mut tampered = tarball.to_vec();
    tampered[1000] ^= 0x01;
    upstream.put("demo/-/demo-1.0.0.tgz", tampered);
    let dir = tempfile::tempdir().expect("tempdir");
    let mirror = open(dir.path(), TTL, vec![(npm(), upstream.url.clone())]);
    let reply = get(&mirror, "/npm/demo/-/demo-1.0.0.tgz").await;
    assert_refused_and_nothing_stored(
        &reply,
        502,
        &mirror,
        dir.path(),
        "npm",
        "demo/-/demo-1.0.0.tgz",
    );
    assert_eq!(upstream.hits("demo/-/demo-1.0.0.tgz"), 1);
    upstream.put("demo/-/demo-1.0.0.tgz", tarball.clone());
    let reply = get(&mirror, "/npm/demo/-/demo-1.0.0.tgz").await;
    assert_eq!(reply.status, 200);
    assert_eq!(reply.body, tarball);
    committed(&mirror, "npm", "demo/-/demo-1.0.0.tgz").await;
    assert_eq!(blobs(dir.path()).len(), 1);
    assert_eq!(upstream.hits("demo/-/demo-1.0.0.tgz"), 2);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn requests_joining_a_download_get_a_304_at_once_and_a_range_once_it_is_stored() {
    let (upstream, tarball) = npm_upstream().await;
    upstream.hold("demo/-/demo-1.0.0.tgz");
    let dir = tempfile::tempdir().expect("tempdir");
    let mirror = open(dir.path(), TTL, vec![(npm(), upstream.url.clone())]);
    assert_eq!(get(&mirror, "/npm/demo").await.status, 200);
    let path = "/npm/demo/-/demo-1.0.0.tgz";
    // The first client starts the download, which stops halfway until released.
    let first = {
        let mirror = mirror.clone();
        tokio::spawn(async move { get(&mirror, path).await })
    };
    let deadline = tokio::time::Instant::now() + std::time::Duration::from_secs(10);
    while upstream.hits("demo/-/demo-1.0.0.tgz") == 0 {
        assert!(
            tokio::time::Instant::now() < deadline,
            "the download never started"
        );
        tokio::time::sleep(std::time::Duration::from_millis(10)).await;
    }
    // The flat CID of the tarball is its ETag, known before a byte arrives.
    let etag = format!(
        "\"{}\"",
        cairn_mirror::cid::Digest::of(cairn_mirror::cid::Algorithm::Sha512, &tarball).flat_cid()
    );
    let conditional = get_with(&mirror, path, &[("if-none-match", &etag)]).await;
    assert_eq!(
        conditional.status, 304,
        "answered while the download is held"
    );
    assert!(conditional.body.is_empty());
    // A range waits for the stored file, then gets exactly its bytes.
    let ranged = {
        let mirror = mirror.clone();
        tokio::spawn(async move { get_with(&mirror, path, &[("range", "bytes=10-99")]).await })
    };
    upstream.release();
    let ranged = ranged.await.expect("range request");
    assert_eq!(ranged.status, 206);
    assert_eq!(&ranged.body[..], &tarball[10..=99]);
    assert_eq!(
        ranged.header("content-range"),
        Some(format!("bytes 10-99/{}", tarball.len()).as_str())
    );
    let first = first.await.expect("first request");
    assert_eq!(first.status, 200);
    assert_eq!(first.body, tarball);
    assert_eq!(
        upstream.hits("demo/-/demo-1.0.0.tgz"),
        1,
        "one download for all three"
    );
}

#[tokio::test]
async fn a_request_that_waits_for_the_index_gets_no_length_and_ends_once_the_file_is_indexed() {
    let (upstream, tarball) = npm_upstream().await;
    let dir = tempfile::tempdir().expect("tempdir");
    let mirror = open(dir.path(), TTL, vec![(npm(), upstream.url.clone())]);
    assert_eq!(get(&mirror, "/npm/demo").await.status, 200);
    let path = "/npm/demo/-/demo-1.0.0.tgz";
    let waited = get_with(
        &mirror,
        path,
        &[(cairn_mirror::http::WAIT_HEADER, "committed")],
    )
    .await;
    assert_eq!(waited.status, 200);
    assert_eq!(waited.body, tarball);
    // With a length, a client stops reading at the last byte and never waits for the end.
    assert_eq!(waited.header("content-length"), None);
    assert!(
        mirror
            .index()
            .get_artifact("npm", "demo/-/demo-1.0.0.tgz")
            .expect("read the index")
            .is_some(),
        "the body ended before the file was indexed"
    );
    // Without the header a download under way is sent with its length.
    upstream.put("other", packument(&upstream.url, "other", &tarball[..1000]));
    upstream.put("other/-/other-1.0.0.tgz", tarball.slice(..1000));
    assert_eq!(get(&mirror, "/npm/other").await.status, 200);
    let plain = get(&mirror, "/npm/other/-/other-1.0.0.tgz").await;
    assert_eq!(plain.status, 200);
    assert_eq!(plain.header("content-length"), Some("1000"));
}
