//! cargo: a download location learned from `config.json` still allowed after a restart.

use std::sync::Arc;

use bytes::Bytes;
use cairn_mirror::ecosystem::Ecosystem;
use cairn_mirror::testing::noise;
use sha2::Digest as _;

use crate::upstream::Upstream;
use crate::{TTL, get, open, reopen};

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
