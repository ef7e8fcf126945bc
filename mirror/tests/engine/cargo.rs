//! cargo: a download location learned from `config.json` still allowed after a restart, and a
//! crate purge (the index file and `.crate` files go, `config.json` stays).

use std::sync::Arc;

use bytes::Bytes;
use cairn_mirror::ecosystem::Ecosystem;
use cairn_mirror::testing::noise;
use sha2::Digest as _;

use crate::upstream::Upstream;
use crate::{TTL, get, open, reopen, served_from_store};

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

#[tokio::test]
async fn a_crate_purge_drops_its_index_file_and_crate_files_and_keeps_config_json() {
    let (index, files) = (Upstream::start().await, Upstream::start().await);
    let (one, two) = (
        Bytes::from(noise(120 << 10, 13)),
        Bytes::from(noise(120 << 10, 15)),
    );
    index.put(
        "index/config.json",
        serde_json::json!({ "dl": format!("{}crates/{{crate}}/{{crate}}-{{version}}.crate", files.url) })
            .to_string(),
    );
    let line = |version: &str, file: &Bytes| {
        serde_json::json!({ "name": "demo", "vers": version, "deps": [],
            "cksum": hex::encode(sha2::Sha256::digest(file)), "features": {}, "yanked": false })
    };
    index.put(
        "index/de/mo/demo",
        format!("{}\n{}\n", line("1.0.0", &one), line("2.0.0", &two)),
    );
    files.put("crates/demo/demo-1.0.0.crate", one.clone());
    files.put("crates/demo/demo-2.0.0.crate", two.clone());
    let dir = tempfile::tempdir().expect("tempdir");
    let cargo: Arc<dyn Ecosystem> = Arc::new(cairn_cargo::Cargo);
    let mirror = open(
        dir.path(),
        TTL,
        vec![(cargo, index.url.join("index/").expect("url"))],
    );
    for path in [
        "/cargo/crates/demo/1.0.0/download",
        "/cargo/crates/demo/2.0.0/download",
    ] {
        assert_eq!(served_from_store(&mirror, path).await.status, 200);
    }
    assert_eq!(index.hits("index/de/mo/demo"), 1);

    let version = cairn_mirror::PurgeSpec::parse("cargo:demo@1.0.0").expect("spec");
    let report = mirror.purge(&version).await.expect("purge");
    assert_eq!((report.files, report.documents.len()), (1, 0));
    let whole = cairn_mirror::PurgeSpec::parse("cargo:Demo").expect("spec");
    let report = mirror.purge(&whole).await.expect("purge");
    assert_eq!(report.documents, ["demo"], "config.json stays");
    assert_eq!(report.files, 1);

    let again = served_from_store(&mirror, "/cargo/crates/demo/1.0.0/download").await;
    assert_eq!(again.body, one);
    assert_eq!(
        index.hits("index/de/mo/demo"),
        2,
        "the index file came again"
    );
    assert_eq!(index.hits("index/config.json"), 1, "config.json was kept");
    assert_eq!(files.hits("crates/demo/demo-1.0.0.crate"), 2);
}
