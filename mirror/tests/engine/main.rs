//! The engine's behaviour, pinned through its public API: a [`Mirror`] with the real adapters,
//! asked through the HTTP router, in front of a fake upstream on 127.0.0.1:0 that counts what it
//! is asked. Freshness and revalidation, conditional requests, stale-if-error, refused digests,
//! mutable apt index names, listings, derived artifacts, reuse of bytes under another key, and
//! download locations after a restart. No package client, no root, no timed assertion.

mod upstream;

use std::path::Path;
use std::sync::Arc;
use std::time::Duration;

use base64::Engine as _;
use bytes::Bytes;
use cairn_mirror::ecosystem::Ecosystem;
use cairn_mirror::testing::noise;
use cairn_mirror::{EcosystemSetup, Mirror, MirrorConfig};
use sha2::Digest as _;
use tower::ServiceExt as _;
use url::Url;

use upstream::{LAST_MODIFIED, Upstream, etag_of};

// ---- the node ----

/// A mirror on `dir` serving `ecosystems` (each with its upstream), documents fresh for `ttl`.
fn open(dir: &Path, ttl: Duration, ecosystems: Vec<(Arc<dyn Ecosystem>, Url)>) -> Mirror {
    let mut config = MirrorConfig::new(dir.to_owned());
    config.metadata_ttl = ttl;
    let setups = ecosystems
        .into_iter()
        .map(|(ecosystem, url)| EcosystemSetup {
            ecosystem,
            upstream: Ok(url),
        })
        .collect();
    Mirror::open(config, setups).expect("open the mirror")
}

/// Close `mirror` as `serve` does at shutdown, then open the same data dir again. A download
/// task finishing after its commit may still hold the store's lock for a moment.
async fn reopen(
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
            .map(|(ecosystem, url)| EcosystemSetup {
                ecosystem,
                upstream: Ok(url),
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
struct Reply {
    status: u16,
    headers: http::HeaderMap,
    body: Bytes,
}

impl Reply {
    fn header(&self, name: &str) -> Option<&str> {
        self.headers.get(name).and_then(|v| v.to_str().ok())
    }
}

async fn get_with(mirror: &Mirror, path: &str, headers: &[(&str, &str)]) -> Reply {
    let mut request = http::Request::get(path).header(http::header::HOST, "cairn.test");
    for (name, value) in headers {
        request = request.header(*name, *value);
    }
    let request = request.body(axum::body::Body::empty()).expect("request");
    let response = cairn_mirror::server::router(mirror.clone())
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

async fn get(mirror: &Mirror, path: &str) -> Reply {
    get_with(mirror, path, &[]).await
}

/// The files under the data dir's `blobs/`.
fn blobs(dir: &Path) -> Vec<std::path::PathBuf> {
    fn walk(dir: &Path, out: &mut Vec<std::path::PathBuf>) {
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
fn assert_refused_and_nothing_stored(
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
    assert_eq!(blobs(dir), Vec::<std::path::PathBuf>::new(), "blobs stored");
}

/// The artifact's bytes once its index row is written (a reader may get the last bytes just
/// before the download commits).
async fn committed(mirror: &Mirror, ecosystem: &str, key: &str) {
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

// ---- npm ----

fn npm() -> Arc<dyn Ecosystem> {
    Arc::new(cairn_npm::Npm)
}

/// A packument of `name` 1.0.0 whose tarball, on `upstream`, has `tarball` as its bytes.
fn packument(upstream: &Url, name: &str, tarball: &[u8]) -> String {
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

const TTL: Duration = Duration::from_secs(300);
/// Every stored document is stale at once: the next request revalidates it.
const STALE: Duration = Duration::ZERO;

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
    // An artifact's ETag is its content: a 304 too.
    let tarball = get(&mirror, "/npm/demo/-/demo-1.0.0.tgz").await;
    assert_eq!(tarball.status, 200);
    committed(&mirror, "npm", "demo/-/demo-1.0.0.tgz").await;
    let etag = tarball.header("etag").expect("an artifact ETag").to_owned();
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

// ---- apt ----

/// A throwaway OpenPGP key (deterministic) that signs `InRelease` files.
struct Signer {
    key: pgp::composed::SignedSecretKey,
    /// The public key, as a keyring file holds it.
    keyring: Vec<u8>,
}

fn signer() -> Signer {
    use pgp::composed::{EncryptionCaps, KeyType, SecretKeyParamsBuilder, SignedPublicKey};
    use pgp::ser::Serialize as _;
    use rand::SeedableRng as _;
    let mut params = SecretKeyParamsBuilder::default();
    params
        .key_type(KeyType::Ed25519Legacy)
        .can_certify(true)
        .can_sign(true)
        .can_encrypt(EncryptionCaps::None)
        .primary_user_id("Cairn Engine Test <engine@cairn.invalid>".into());
    let key = params
        .build()
        .expect("key parameters")
        .generate(rand::rngs::StdRng::seed_from_u64(7))
        .expect("generate the key");
    let keyring = SignedPublicKey::from(key.clone())
        .to_bytes()
        .expect("public key bytes");
    Signer { key, keyring }
}

impl Signer {
    /// A clear-signed `InRelease` of suite `stable` listing `files` (path under the suite, bytes).
    fn in_release(&self, files: &[(&str, &[u8])]) -> String {
        use rand::SeedableRng as _;
        let mut text = String::from(
            "Origin: Cairn\nSuite: stable\nCodename: stable\nArchitectures: amd64\nComponents: main\nSHA256:\n",
        );
        for (path, bytes) in files {
            text.push_str(&format!(
                " {} {} {path}\n",
                hex::encode(sha2::Sha256::digest(bytes)),
                bytes.len()
            ));
        }
        pgp::composed::CleartextSignedMessage::sign(
            rand::rngs::StdRng::seed_from_u64(8),
            &text,
            &self.key.primary_key,
            &pgp::types::Password::empty(),
        )
        .expect("clear-sign")
        .to_armored_string(Default::default())
        .expect("armor")
    }

    fn archive(&self) -> Arc<dyn Ecosystem> {
        let keyring = cairn_apt::signature::Keyring::from_bytes(&self.keyring, "engine test key")
            .expect("keyring");
        Arc::new(cairn_apt::Archive::new("test", keyring).expect("archive"))
    }
}

fn xz(data: &[u8]) -> Vec<u8> {
    use std::io::Write as _;
    let mut out = Vec::new();
    let mut writer =
        lzma_rust2::XzWriter::new(&mut out, lzma_rust2::XzOptions::with_preset(1)).expect("xz");
    writer.write_all(data).expect("xz");
    writer.finish().expect("xz");
    out
}

/// A `Packages` index naming `debs` (pool path, bytes).
fn packages(debs: &[(&str, &[u8])]) -> String {
    let mut out = String::new();
    for (path, bytes) in debs {
        let name = path.rsplit('/').next().unwrap_or_default();
        let package = name.split('_').next().unwrap_or_default();
        out.push_str(&format!(
            "Package: {package}\nVersion: 1.0\nArchitecture: all\nFilename: {path}\nSize: {}\nSHA256: {}\n\n",
            bytes.len(),
            hex::encode(sha2::Sha256::digest(bytes))
        ));
    }
    out
}

const INDEX: &str = "main/binary-amd64/Packages.xz";
const DEB: &str = "pool/main/h/hello/hello_1.0_all.deb";

/// An archive under `/debian/` whose `Packages.xz` names one `.deb`: the upstream, the
/// signer, the index bytes and the `.deb` bytes.
async fn apt_upstream() -> (Upstream, Signer, Vec<u8>, Bytes) {
    let upstream = Upstream::start().await;
    let signer = signer();
    let deb = Bytes::from(noise(300 << 10, 9));
    let index = xz(packages(&[(DEB, &deb)]).as_bytes());
    upstream.put(
        "debian/dists/stable/InRelease",
        signer.in_release(&[(INDEX, &index)]),
    );
    upstream.put(&format!("debian/dists/stable/{INDEX}"), index.clone());
    upstream.put(&format!("debian/{DEB}"), deb.clone());
    (upstream, signer, index, deb)
}

fn debian(upstream: &Upstream) -> Url {
    upstream.url.join("debian/").expect("url")
}

#[tokio::test]
async fn a_mutable_index_name_serves_what_the_current_in_release_lists() {
    let (upstream, signer, index, _) = apt_upstream().await;
    let dir = tempfile::tempdir().expect("tempdir");
    let mirror = open(
        dir.path(),
        STALE,
        vec![(signer.archive(), debian(&upstream))],
    );
    let path = format!("/apt/test/dists/stable/{INDEX}");
    let first = get(&mirror, &path).await;
    assert_eq!(
        first.status,
        200,
        "{}",
        String::from_utf8_lossy(&first.body)
    );
    assert_eq!(first.body, index);
    // A new InRelease names new bytes for the same index name.
    let other = Bytes::from(noise(50 << 10, 10));
    let newer = xz(packages(&[(DEB, &other)]).as_bytes());
    upstream.put(
        "debian/dists/stable/InRelease",
        signer.in_release(&[(INDEX, &newer)]),
    );
    upstream.put(&format!("debian/dists/stable/{INDEX}"), newer.clone());
    let second = get(&mirror, &path).await;
    assert_eq!(second.status, 200);
    assert_eq!(second.body, newer, "the same name serves the new bytes");
    assert_eq!(upstream.hits("debian/dists/stable/InRelease"), 2);
    assert_eq!(upstream.hits(&format!("debian/dists/stable/{INDEX}")), 2);
    // The name is looked up by the content the current InRelease lists: once held, it is
    // served from the store whatever upstream now has at that path.
    upstream.put(&format!("debian/dists/stable/{INDEX}"), index);
    let third = get(&mirror, &path).await;
    assert_eq!(third.status, 200);
    assert_eq!(third.body, newer);
    assert_eq!(upstream.hits(&format!("debian/dists/stable/{INDEX}")), 2);
}

#[tokio::test]
async fn a_file_listed_only_by_a_listing_is_served_once_the_listing_was_fetched() {
    let (upstream, signer, _, deb) = apt_upstream().await;
    let dir = tempfile::tempdir().expect("tempdir");
    let mirror = open(dir.path(), TTL, vec![(signer.archive(), debian(&upstream))]);
    let deb_path = format!("/apt/test/{DEB}");
    let before = get(&mirror, &deb_path).await;
    assert_eq!(
        before.status,
        404,
        "no listing names it yet: {}",
        String::from_utf8_lossy(&before.body)
    );
    assert_eq!(
        upstream.hits(&format!("debian/{DEB}")),
        0,
        "never fetched unlisted"
    );
    assert_eq!(
        get(&mirror, &format!("/apt/test/dists/stable/{INDEX}"))
            .await
            .status,
        200
    );
    let after = get(&mirror, &deb_path).await;
    assert_eq!(
        after.status,
        200,
        "{}",
        String::from_utf8_lossy(&after.body)
    );
    assert_eq!(after.body, deb);
    assert_eq!(upstream.hits(&format!("debian/{DEB}")), 1);
}

#[tokio::test]
async fn the_same_bytes_under_another_key_are_not_downloaded_again() {
    let (upstream, signer, index, _) = apt_upstream().await;
    let dir = tempfile::tempdir().expect("tempdir");
    let mirror = open(dir.path(), TTL, vec![(signer.archive(), debian(&upstream))]);
    let by_path = get(&mirror, &format!("/apt/test/dists/stable/{INDEX}")).await;
    assert_eq!(by_path.status, 200);
    let hash = hex::encode(sha2::Sha256::digest(&index));
    let by_hash_key = format!("dists/stable/main/binary-amd64/by-hash/SHA256/{hash}");
    let by_hash = get(&mirror, &format!("/apt/test/{by_hash_key}")).await;
    assert_eq!(
        by_hash.status,
        200,
        "{}",
        String::from_utf8_lossy(&by_hash.body)
    );
    assert_eq!(by_hash.body, index);
    assert_eq!(
        upstream.hits(&format!("debian/{by_hash_key}")),
        0,
        "the by-hash name is served from the copy held under the other name"
    );
    assert_eq!(upstream.hits(&format!("debian/dists/stable/{INDEX}")), 1);
    assert_eq!(blobs(dir.path()).len(), 1, "one copy of the bytes");
}

// ---- PyPI ----

/// A zip archive of stored (uncompressed) members; the reader checks no CRC.
fn zip(members: &[(&str, &[u8])]) -> Vec<u8> {
    let mut out = Vec::new();
    let mut central = Vec::new();
    for (name, data) in members {
        let offset = out.len() as u32;
        let sizes = [(data.len() as u32).to_le_bytes(); 2].concat();
        out.extend_from_slice(&0x0403_4b50u32.to_le_bytes());
        out.extend_from_slice(&[20, 0, 0, 0, 0, 0]); // version, flags, method 0 (stored)
        out.extend_from_slice(&[0; 8]); // time, date, crc
        out.extend_from_slice(&sizes);
        out.extend_from_slice(&(name.len() as u16).to_le_bytes());
        out.extend_from_slice(&0u16.to_le_bytes());
        out.extend_from_slice(name.as_bytes());
        out.extend_from_slice(data);
        central.extend_from_slice(&0x0201_4b50u32.to_le_bytes());
        central.extend_from_slice(&[20, 0, 20, 0, 0, 0, 0, 0]);
        central.extend_from_slice(&[0; 8]);
        central.extend_from_slice(&sizes);
        central.extend_from_slice(&(name.len() as u16).to_le_bytes());
        central.extend_from_slice(&[0; 12]); // extra, comment, disk, attributes
        central.extend_from_slice(&offset.to_le_bytes());
        central.extend_from_slice(name.as_bytes());
    }
    let at = out.len() as u32;
    out.extend_from_slice(&central);
    out.extend_from_slice(&0x0605_4b50u32.to_le_bytes());
    out.extend_from_slice(&[0; 4]);
    out.extend_from_slice(&(members.len() as u16).to_le_bytes());
    out.extend_from_slice(&(members.len() as u16).to_le_bytes());
    out.extend_from_slice(&(central.len() as u32).to_le_bytes());
    out.extend_from_slice(&at.to_le_bytes());
    out.extend_from_slice(&0u16.to_le_bytes());
    out
}

const WHEEL: &str = "demo-1.0-py3-none-any.whl";
const METADATA: &[u8] = b"Metadata-Version: 2.1\nName: demo\nVersion: 1.0\nRequires-Dist: other\n";

/// A simple index (`/simple/`) on one upstream listing a wheel on a separate file host, without
/// core metadata: the index, the file host and the wheel.
async fn pypi_upstreams() -> (Upstream, Upstream, Bytes) {
    let (index, files) = (Upstream::start().await, Upstream::start().await);
    let wheel = Bytes::from(zip(&[
        ("demo/__init__.py", &noise(64 << 10, 11)),
        ("demo-1.0.dist-info/METADATA", METADATA),
        ("demo-1.0.dist-info/RECORD", b""),
    ]));
    let page = serde_json::json!({
        "meta": { "api-version": "1.1" },
        "name": "demo",
        "files": [{
            "filename": WHEEL,
            "url": format!("{}packages/{WHEEL}", files.url),
            "hashes": { "sha256": hex::encode(sha2::Sha256::digest(&wheel)) },
            "size": wheel.len(),
        }],
    });
    index.put("simple/demo/", page.to_string());
    files.put(&format!("packages/{WHEEL}"), wheel.clone());
    (index, files, wheel)
}

fn pypi() -> Arc<dyn Ecosystem> {
    Arc::new(cairn_pypi::Pypi)
}

#[tokio::test]
async fn core_metadata_is_derived_from_the_wheel_when_upstream_publishes_none() {
    let (index, files, _) = pypi_upstreams().await;
    let dir = tempfile::tempdir().expect("tempdir");
    let base = index.url.join("simple/").expect("url");
    let mirror = open(dir.path(), TTL, vec![(pypi(), base)]);
    let page = get(&mirror, "/pypi/simple/demo/").await;
    assert_eq!(page.status, 200);
    let path = format!("/pypi/files/demo/{WHEEL}.metadata");
    for _ in 0..2 {
        let reply = get(&mirror, &path).await;
        assert_eq!(
            reply.status,
            200,
            "{}",
            String::from_utf8_lossy(&reply.body)
        );
        assert_eq!(&reply.body[..], METADATA);
    }
    assert_eq!(
        files.hits(&format!("packages/{WHEEL}.metadata")),
        0,
        "upstream publishes none: not asked"
    );
    assert_eq!(
        files.hits(&format!("packages/{WHEEL}")),
        1,
        "the wheel, once"
    );
    let wheel = get(&mirror, &format!("/pypi/files/demo/{WHEEL}")).await;
    assert_eq!(wheel.status, 200);
    assert_eq!(
        files.hits(&format!("packages/{WHEEL}")),
        1,
        "the wheel is held"
    );
}

#[tokio::test]
async fn a_pypi_file_host_learned_from_a_page_is_allowed_after_a_restart() {
    let (index, files, wheel) = pypi_upstreams().await;
    let dir = tempfile::tempdir().expect("tempdir");
    let ecosystems = || vec![(pypi(), index.url.join("simple/").expect("url"))];
    let mirror = open(dir.path(), TTL, ecosystems());
    assert_eq!(get(&mirror, "/pypi/simple/demo/").await.status, 200);
    let mirror = reopen(mirror, dir.path(), TTL, ecosystems).await;
    let reply = get(&mirror, &format!("/pypi/files/demo/{WHEEL}")).await;
    assert_eq!(
        reply.status,
        200,
        "{}",
        String::from_utf8_lossy(&reply.body)
    );
    assert_eq!(reply.body, wheel);
    assert_eq!(
        index.hits("simple/demo/"),
        1,
        "the stored page was still fresh"
    );
    assert_eq!(files.hits(&format!("packages/{WHEEL}")), 1);
}

// ---- cargo ----

#[tokio::test]
async fn a_cargo_download_location_learned_from_config_is_allowed_after_a_restart() {
    let (index, files) = (Upstream::start().await, Upstream::start().await);
    let file = Bytes::from(noise(120 << 10, 12));
    index.put(
        "index/config.json",
        serde_json::json!({ "dl": format!("{}crates/{{crate}}/{{crate}}-{{version}}.crate", files.url) })
            .to_string(),
    );
    let line = serde_json::json!({ "name": "demo", "vers": "1.0.0", "deps": [],
        "cksum": hex::encode(sha2::Sha256::digest(&file)), "features": {}, "yanked": false });
    index.put("index/de/mo/demo", format!("{line}\n"));
    files.put("crates/demo/demo-1.0.0.crate", file.clone());
    let dir = tempfile::tempdir().expect("tempdir");
    let ecosystems = || {
        vec![(
            Arc::new(cairn_cargo::Cargo) as Arc<dyn Ecosystem>,
            index.url.join("index/").expect("url"),
        )]
    };
    let mirror = open(dir.path(), TTL, ecosystems());
    assert_eq!(get(&mirror, "/cargo/index/config.json").await.status, 200);
    assert_eq!(get(&mirror, "/cargo/index/de/mo/demo").await.status, 200);
    let mirror = reopen(mirror, dir.path(), TTL, ecosystems).await;
    let reply = get(&mirror, "/cargo/crates/demo/1.0.0/download").await;
    assert_eq!(
        reply.status,
        200,
        "{}",
        String::from_utf8_lossy(&reply.body)
    );
    assert_eq!(reply.body, file);
    assert_eq!(
        index.total_hits(),
        2,
        "the stored documents were still fresh"
    );
    assert_eq!(files.hits("crates/demo/demo-1.0.0.crate"), 1);
}
