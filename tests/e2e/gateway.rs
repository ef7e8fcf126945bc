//! The IPFS trustless gateway of `cairn serve` (`/ipfs/{cid}`), checked by IPFS's own JS code:
//! `@ipld/car` and `ipfs-unixfs-exporter` read the CARs it serves, and Helia's trustless-gateway
//! block broker fetches a block from it. A tarball goes through Cairn's npm route first; after
//! that, no gateway request ever reaches the fake upstream.

use std::path::Path;
use std::process::Command;

use cairn_mirror::cid::{FlatCid, RootCid, raw_block_cid};
use sha2::Digest as _;

use crate::fake_npm::{FakeNpm, Registry, noise};
use crate::support::{Cairn, Reply, assert_success, get, get_with, runtime};

const MIB: usize = 1 << 20;
const CAR: &str = "application/vnd.ipld.car";

/// Run `node SCRIPT args…` in the tools dir; its stdout.
fn node(script: &str, args: &[&str]) -> String {
    let dir = &crate::tools::tools().ipfs;
    let output = Command::new("node")
        .arg(dir.join(script))
        .args(args)
        .current_dir(dir)
        .output()
        .expect("node must be installed");
    assert_success(&output, script);
    String::from_utf8(output.stdout).expect("utf-8")
}

fn head(url: &str, accept: &str) -> Reply {
    runtime().block_on(async {
        let response = reqwest::Client::new()
            .head(url)
            .header("accept", accept)
            .send()
            .await
            .expect("HEAD");
        Reply {
            status: response.status().as_u16(),
            headers: response.headers().clone(),
            body: response.bytes().await.unwrap_or_default(),
            text: String::new(),
        }
    })
}

fn sha256_hex(data: &[u8]) -> String {
    hex::encode(sha2::Sha256::digest(data))
}

/// Read a CAR with `@ipld/car`, verify its blocks, export `root` (or a range of it).
pub(crate) fn verify_car(
    dir: &Path,
    name: &str,
    car: &[u8],
    root: &str,
    range: &[&str],
) -> serde_json::Value {
    let path = dir.join(name);
    std::fs::write(&path, car).expect("write CAR");
    let path = path.to_str().expect("utf-8 path");
    let args: Vec<&str> = [path, root]
        .into_iter()
        .chain(range.iter().copied())
        .collect();
    serde_json::from_str(&node("verify-car.mjs", &args)).expect("verify-car JSON")
}

#[test]
fn ipfs_tools_read_cached_artifacts_from_the_trustless_gateway() {
    let tmp = tempfile::tempdir().expect("tempdir");
    let mut registry = Registry::default();
    registry
        .publish(
            "dag-pkg",
            "1.0.0",
            &[],
            &[("data.bin", noise(3 * MIB + MIB / 2, 21))],
        )
        .publish("never-fetched", "1.0.0", &[], &[]);
    let fake = FakeNpm::start(registry);
    let cairn = Cairn::start(&tmp.path().join("data"), &["--npm-upstream", &fake.url]);
    let tarball = fake.registry().version("dag-pkg", "1.0.0").tarball.clone();
    assert!(
        tarball.len() > 3 * MIB,
        "tarball of {} bytes",
        tarball.len()
    );

    // The first GET streams the download; the second is served from the cache, with its root.
    let url = format!("{}dag-pkg/-/dag-pkg-1.0.0.tgz", cairn.npm());
    assert_eq!(get(&url).body, tarball);
    // Clients get the last bytes once the digest matches, before the file is committed; a
    // request in that window joins the download (no root yet). Ask until the commit is done.
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(30);
    let reply = loop {
        let reply = get(&url);
        if reply.header("x-ipfs-roots").is_some() || std::time::Instant::now() > deadline {
            break reply;
        }
        std::thread::sleep(std::time::Duration::from_millis(50));
    };
    assert_eq!(reply.status, 200);
    assert_eq!(reply.body, tarball);
    let root_text = reply.header("x-ipfs-roots").expect("x-ipfs-roots");
    let root: RootCid = root_text.parse().expect("root CID");
    let upstream_requests = fake.total_hits();
    let ipfs = |cid: &str, query: &str| format!("{}/ipfs/{cid}{query}", cairn.url);

    // a. Raw blocks: the root (a dag-pb node) and a leaf hash to their CIDs.
    let reply = get(&ipfs(root_text.as_str(), "?format=raw"));
    assert_eq!(reply.status, 200, "{}", reply.text);
    assert_eq!(
        reply.header("content-type").as_deref(),
        Some("application/vnd.ipld.raw")
    );
    assert_eq!(root.0.codec(), 0x70);
    assert_eq!(
        sha2::Sha256::digest(&reply.body)[..],
        *root.0.hash().digest()
    );
    let root_block = reply.body.clone();
    let node_links = cairn_mirror::unixfs::decode_node(&root_block).expect("dag-pb root");
    let leaves: Vec<String> = node_links.links.iter().map(|l| l.cid.to_string()).collect();
    assert_eq!(leaves.len(), tarball.len().div_ceil(MIB), "{leaves:?}");

    let reply = get_with(
        &ipfs(&leaves[1], ""),
        &[("accept", "application/vnd.ipld.raw")],
    );
    assert_eq!(reply.status, 200, "{}", reply.text);
    assert_eq!(reply.body, tarball[MIB..2 * MIB]);
    assert_eq!(raw_block_cid(&reply.body).to_string(), leaves[1]);

    let reply = head(&ipfs(root_text.as_str(), ""), "application/vnd.ipld.raw");
    assert_eq!(reply.status, 200);
    assert_eq!(
        reply.header("content-length"),
        Some(root_block.len().to_string())
    );
    assert_eq!(reply.header("etag"), Some(format!("\"{root_text}.raw\"")));
    assert!(reply.body.is_empty());

    let reply = get(&ipfs("bafkqaaa", "?format=raw"));
    assert_eq!(reply.status, 200);
    assert!(reply.body.is_empty());

    // Unknown CIDs are a 404, even for bytes upstream has: the gateway never fetches.
    let other = fake
        .registry()
        .version("never-fetched", "1.0.0")
        .tarball
        .clone();
    let flat: FlatCid =
        cairn_mirror::cid::Digest::of(cairn_mirror::cid::Algorithm::Sha512, &other).flat_cid();
    for cid in [flat.to_string(), raw_block_cid(&other).to_string()] {
        for format in ["raw", "car"] {
            let reply = get(&ipfs(&cid, &format!("?format={format}")));
            assert_eq!(reply.status, 404, "{cid} {format}: {}", reply.text);
            let error: serde_json::Value = serde_json::from_slice(&reply.body).expect("JSON");
            assert!(error["error"].is_string(), "{error}");
        }
    }
    assert_eq!(fake.hits("never-fetched"), 0);
    assert_eq!(fake.hits("never-fetched/-/never-fetched-1.0.0.tgz"), 0);

    // b. The CAR of the whole DAG, read and exported by the reference implementation.
    let reply = get_with(&ipfs(root_text.as_str(), ""), &[("accept", CAR)]);
    assert_eq!(reply.status, 200, "{}", reply.text);
    assert_eq!(
        reply.header("content-type").as_deref(),
        Some("application/vnd.ipld.car; version=1; order=dfs; dups=n")
    );
    let report = verify_car(tmp.path(), "all.car", &reply.body, root_text.as_str(), &[]);
    assert_eq!(report["roots"], serde_json::json!([root_text]));
    let mut expected_blocks = vec![root_text.clone()];
    expected_blocks.extend(leaves.iter().cloned());
    assert_eq!(report["blocks"], serde_json::json!(expected_blocks));
    assert_eq!(report["size"], tarball.len());
    assert_eq!(report["sha256"], sha256_hex(&tarball));

    // entity-bytes: the first MiB needs the root and the first leaf only, and that suffices.
    let reply = get(&ipfs(
        root_text.as_str(),
        "?format=car&entity-bytes=0:1048575",
    ));
    assert_eq!(reply.status, 200, "{}", reply.text);
    let report = verify_car(
        tmp.path(),
        "first.car",
        &reply.body,
        root_text.as_str(),
        &["0", "1048576"],
    );
    assert_eq!(
        report["blocks"],
        serde_json::json!([root_text.clone(), leaves[0].clone()])
    );
    assert_eq!(report["sha256"], sha256_hex(&tarball[..MIB]));

    // c. Helia's trustless-gateway client fetches the root block from Cairn.
    let raw_served = "cairn_http_requests_total{route=\"ipfs\",kind=\"raw\",status=\"200\"}";
    let before = cairn.metric(raw_served);
    let fetched = node("helia-gateway-fetch.mjs", &[&cairn.url, root_text.as_str()]);
    assert_eq!(fetched.trim(), sha256_hex(&root_block));
    assert_eq!(
        cairn.metric(raw_served),
        before + 1.0,
        "Helia asked Cairn once"
    );

    assert_eq!(
        fake.total_hits(),
        upstream_requests,
        "a gateway request reached upstream"
    );
    assert!(
        cairn.metric("cairn_http_requests_total{route=\"ipfs\",kind=\"car\",status=\"200\"}")
            >= 2.0
    );
    cairn.stop();
}
