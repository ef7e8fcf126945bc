//! PyPI: core metadata derived from a wheel when upstream publishes none, a file host learned
//! from a page still allowed after a restart, a project purge reaching its derived metadata,
//! and a missing page rendered beside its fetch.

use std::sync::Arc;

use bytes::Bytes;
use cairn_mirror::ecosystem::Ecosystem;
use cairn_mirror::testing::noise;
use sha2::Digest as _;

use crate::upstream::Upstream;
use crate::{TTL, get, get_with, open, reopen};

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

#[tokio::test]
async fn a_project_purge_drops_its_page_its_wheel_and_the_metadata_derived_from_it() {
    let (index, files, wheel) = pypi_upstreams().await;
    let dir = tempfile::tempdir().expect("tempdir");
    let mirror = open(
        dir.path(),
        TTL,
        vec![(pypi(), index.url.join("simple/").expect("url"))],
    );
    assert_eq!(get(&mirror, "/pypi/simple/demo/").await.status, 200);
    let metadata = format!("/pypi/files/demo/{WHEEL}.metadata");
    assert_eq!(&get(&mirror, &metadata).await.body[..], METADATA);
    assert_eq!(
        get(&mirror, &format!("/pypi/files/demo/{WHEEL}"))
            .await
            .body,
        wheel
    );
    assert_eq!(files.hits(&format!("packages/{WHEEL}")), 1);

    // Named as users write it: the adapter normalises the project name.
    let spec = cairn_mirror::PurgeSpec::parse("pypi:Demo").expect("spec");
    let report = mirror.purge(&spec).await.expect("purge");

    assert_eq!(report.documents, ["demo"]);
    let mut keys: Vec<&str> = report.artifacts.iter().map(|k| k.key.as_str()).collect();
    keys.sort_unstable();
    assert_eq!(
        keys,
        [
            format!("demo/{WHEEL}").as_str(),
            format!("demo/{WHEEL}.metadata").as_str()
        ]
    );
    assert!(crate::blobs(dir.path()).is_empty(), "nothing of demo stays");
    // The page, then the wheel (to derive the metadata from), come from upstream again.
    assert_eq!(get(&mirror, "/pypi/simple/demo/").await.status, 200);
    assert_eq!(index.hits("simple/demo/"), 2);
    assert_eq!(&get(&mirror, &metadata).await.body[..], METADATA);
    assert_eq!(files.hits(&format!("packages/{WHEEL}")), 2);
}

/// The count of `cairn_documents_rendered_total` for PyPI renders made `when`.
fn renders(mirror: &cairn_mirror::Mirror, when: &str) -> u64 {
    let line = format!("cairn_documents_rendered_total{{ecosystem=\"pypi\",when=\"{when}\"}} ");
    mirror
        .metrics()
        .encode()
        .lines()
        .find_map(|l| l.strip_prefix(line.as_str()))
        .map_or(0, |n| n.trim().parse().expect("a count"))
}

#[tokio::test]
async fn a_missing_page_is_rendered_beside_its_fetch_as_its_client_asked() {
    let (index, _files, _) = pypi_upstreams().await;
    let dir = tempfile::tempdir().expect("tempdir");
    let mirror = open(
        dir.path(),
        TTL,
        vec![(pypi(), index.url.join("simple/").expect("url"))],
    );
    let json = [
        ("accept", "application/vnd.pypi.simple.v1+json"),
        ("accept-encoding", "gzip"),
    ];
    let miss = get_with(&mirror, "/pypi/simple/demo/", &json).await;
    assert_eq!(miss.status, 200);
    assert_eq!(
        (renders(&mirror, "ahead"), renders(&mirror, "on-request")),
        (1, 0)
    );
    // The hit is the same response, from the same rendering.
    let hit = get_with(&mirror, "/pypi/simple/demo/", &json).await;
    assert_eq!(hit.body, miss.body);
    assert_eq!(hit.header("etag"), miss.header("etag"));
    assert_eq!(
        hit.header("content-encoding"),
        miss.header("content-encoding")
    );
    assert_eq!(
        (renders(&mirror, "ahead"), renders(&mirror, "on-request")),
        (1, 0)
    );
    // Another form of the page is rendered when it is asked for.
    let html = get_with(&mirror, "/pypi/simple/demo/", &[("accept", "text/html")]).await;
    assert_eq!(html.status, 200);
    assert!(String::from_utf8_lossy(&html.body).contains("/pypi/files/demo/"));
    assert_eq!(
        (renders(&mirror, "ahead"), renders(&mirror, "on-request")),
        (1, 1)
    );
    assert_eq!(index.hits("simple/demo/"), 1);
}
