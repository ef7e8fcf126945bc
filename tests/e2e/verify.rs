//! `cairn verify` with the real npm: a byte flipped in a stored tarball, a tarball's file
//! deleted and a packument's block damaged are each found and named; the damaged files are
//! moved aside and never served (the next request fetches them again); with `--repair` they
//! are fetched again at once, from upstream, or from a peer of the private swarm when upstream
//! is down, and from the data directory alone when no node runs. And the abuse: the repair
//! route answers only loopback clients, refuses what is not a POST or not a CID, and a repair of
//! a sound file drops nothing.

use std::path::{Path, PathBuf};
use std::process::Output;
use std::time::Duration;

use crate::bundle::cairn;
use crate::fake_npm::{FakeNpm, Registry, noise};
use crate::purge::{non_loopback_address, raw_request};
use crate::support::{
    Cairn, ClientEnv, assert_success, files_under, get, project, swarm_key, wait_for,
};

/// `big` spans several 1 MiB leaves (its DAG has an inner node); the others are one leaf.
fn registry() -> Registry {
    let mut r = Registry::default();
    r.publish("big", "1.0.0", &[], &[("data.bin", noise(3 << 20, 41))]);
    r.publish("small", "1.0.0", &[], &[("data.bin", noise(200 << 10, 43))]);
    r.publish("doc", "1.0.0", &[], &[("data.bin", noise(100 << 10, 45))]);
    r
}

const BIG: &str = "big/-/big-1.0.0.tgz";
const SMALL: &str = "small/-/small-1.0.0.tgz";
const DOC: &str = "doc/-/doc-1.0.0.tgz";

/// `npm install` of the three packages in a fresh client.
fn install(tmp: &Path, node: &Cairn, name: &str) {
    let env = ClientEnv::new(&tmp.join(format!("client-{name}")), &node.npm());
    let dir = project(
        &tmp.join(name),
        serde_json::json!({ "big": "1.0.0", "small": "1.0.0", "doc": "1.0.0" }),
    );
    assert_success(
        &env.run("npm", &["install"], &dir),
        &format!("npm install ({name})"),
    );
}

/// The stored file of the tarball at `path` below the node's npm route: its flat CID is the
/// ETag the node answers with.
fn blob_of(node: &Cairn, data: &Path, path: &str) -> PathBuf {
    let reply = get(&format!("{}{path}", node.npm()));
    assert_eq!(reply.status, 200, "{path}");
    let etag = reply.header("etag").expect("an ETag");
    let flat = etag.trim_matches('"');
    data.join("blobs").join(&flat[flat.len() - 2..]).join(flat)
}

/// The stored block of the packument of `name`.
fn packument_block(data: &Path, name: &str) -> PathBuf {
    files_under(&data.join("meta"))
        .into_iter()
        .find(|file| {
            std::fs::read(file)
                .ok()
                .and_then(|bytes| serde_json::from_slice::<serde_json::Value>(&bytes).ok())
                .is_some_and(|doc| doc["name"] == name)
        })
        .unwrap_or_else(|| panic!("no stored packument of {name}"))
}

fn flip_byte(path: &Path, at: usize) {
    let mut bytes = std::fs::read(path).expect("read");
    bytes[at] ^= 0x01;
    std::fs::write(path, bytes).expect("write");
}

fn verify(node_address: &str, data: &Path, extra: &[&str]) -> (Output, serde_json::Value) {
    let mut args = vec![
        "verify",
        "--json",
        "--listen",
        node_address,
        "--data-dir",
        data.to_str().expect("path"),
    ];
    args.extend(extra);
    let out = cairn(&args);
    let report = serde_json::from_slice(&out.stdout).unwrap_or_else(|e| {
        panic!(
            "verify printed no JSON report ({e}): {}{}",
            String::from_utf8_lossy(&out.stdout),
            String::from_utf8_lossy(&out.stderr)
        )
    });
    (out, report)
}

/// `HOST:PORT` of a node.
fn address(node: &Cairn) -> String {
    node.url.trim_start_matches("http://").to_owned()
}

/// The damage the report gives for the file `cid`.
fn damage_of<'a>(report: &'a serde_json::Value, file: &Path) -> &'a str {
    let cid = file.file_name().and_then(|n| n.to_str()).expect("a CID");
    report["damaged"]
        .as_array()
        .expect("damaged")
        .iter()
        .find(|d| d["cid"] == cid)
        .and_then(|d| d["damage"].as_str())
        .unwrap_or_else(|| panic!("{cid} is not named: {report:#}"))
}

/// Damage the three as a disk or a hand would: a byte flipped in `big`'s second leaf,
/// `small`'s file deleted, a byte of `doc`'s packument flipped.
fn damage(node: &Cairn, data: &Path) -> [PathBuf; 3] {
    let (big, small) = (blob_of(node, data, BIG), blob_of(node, data, SMALL));
    let doc = packument_block(data, "doc");
    flip_byte(&big, (1 << 20) + 12345);
    std::fs::remove_file(&small).expect("remove");
    flip_byte(&doc, 10);
    [big, small, doc]
}

#[test]
fn verify_names_each_damage_drops_it_unserved_and_repair_fetches_it_again_from_upstream() {
    let tmp = tempfile::tempdir().expect("tempdir");
    let fake = FakeNpm::start(registry());
    let data = tmp.path().join("data");
    let node = Cairn::start(&data, &["--npm-upstream", &fake.url]);
    let at = address(&node);
    install(tmp.path(), &node, "first");

    // A sound store is sound.
    let (out, report) = verify(&at, &data, &[]);
    assert_success(&out, "cairn verify (sound)");
    assert_eq!(report["files"], 3, "{report:#}");
    assert!(report["documents"].as_u64().expect("documents") >= 3);
    assert_eq!(report["damaged"], serde_json::json!([]));

    // Each damage found and named; the run fails while it is not repaired.
    let [big, small, doc] = damage(&node, &data);
    let (out, report) = verify(&at, &data, &[]);
    assert!(!out.status.success(), "damage left is a failure");
    assert!(String::from_utf8_lossy(&out.stderr).contains("--repair"));
    assert!(damage_of(&report, &big).contains("flat CID"), "{report:#}");
    assert!(damage_of(&report, &small).contains("missing"), "{report:#}");
    assert!(damage_of(&report, &doc).contains("hash to"), "{report:#}");
    assert_eq!(report["remaining"], 3, "{report:#}");
    let dropped = report["damaged"].to_string();
    assert!(dropped.contains(BIG) && dropped.contains(SMALL) && dropped.contains("\"doc\""));
    assert!(
        !big.exists() && !doc.exists(),
        "damaged files are moved aside"
    );

    // Never served: the next requests fetch them again, whole.
    for (path, name) in [(BIG, "big"), (SMALL, "small")] {
        let reply = get(&format!("{}{path}", node.npm()));
        assert_eq!(reply.status, 200);
        assert!(reply.body == fake.registry().version(name, "1.0.0").tarball);
        assert_eq!(fake.hits(path), 2, "{path} fetched again");
    }
    assert_eq!(get(&format!("{}doc", node.npm())).status, 200);
    assert_eq!(fake.hits("doc"), 2, "the packument fetched again");

    // With --repair, the damage is fetched again at once.
    let [big, small, doc] = damage(&node, &data);
    let (out, report) = verify(&at, &data, &["--repair"]);
    assert_success(&out, "cairn verify --repair");
    assert_eq!(
        (report["repaired"].as_u64(), report["remaining"].as_u64()),
        (Some(3), Some(0)),
        "{report:#}"
    );
    for file in [&big, &small, &doc] {
        damage_of(&report, file);
    }
    assert_eq!(
        (fake.hits(BIG), fake.hits(SMALL), fake.hits("doc")),
        (3, 3, 3)
    );
    assert_eq!(
        std::fs::read(&big).expect("big held again"),
        fake.registry().version("big", "1.0.0").tarball
    );
    assert!(small.exists() && doc.exists());
    // Served from the cache again: upstream is not asked.
    install(tmp.path(), &node, "second");
    assert_eq!(
        (fake.hits(BIG), fake.hits(SMALL), fake.hits(DOC)),
        (3, 3, 1)
    );

    assert_eq!(node.metric("cairn_damaged_files_total"), 6.0);
    assert_eq!(node.metric("cairn_repaired_files_total"), 3.0);
    let status = cairn(&[
        "status",
        "--json",
        "--data-dir",
        data.to_str().expect("path"),
        "--listen",
        &at,
    ]);
    let status: serde_json::Value = serde_json::from_slice(&status.stdout).expect("status JSON");
    assert_eq!(status["last_verify"]["damaged"], 3, "{status:#}");
    assert_eq!(status["last_verify"]["repaired"], 3, "{status:#}");
    // The node reads the last run for /metrics at its next upkeep.
    wait_for(
        Duration::from_secs(60),
        "the last verify in /metrics",
        || (node.metric("cairn_verify_last_damaged_files") == 3.0).then_some(()),
    );
    assert_eq!(node.metric("cairn_verify_last_unrepaired_files"), 0.0);
    assert!(node.metric("cairn_verify_last_run_timestamp_seconds") > 1.7e9);
}

#[test]
fn verify_repair_takes_a_damaged_file_from_a_peer_when_upstream_is_down() {
    let tmp = tempfile::tempdir().expect("tempdir");
    let fake = FakeNpm::start(registry());
    let key = swarm_key(&tmp.path().join("swarm.key"), 0x6b);
    let key = key.to_str().expect("path");
    let common = [
        "--p2p-listen",
        "/ip4/127.0.0.1/tcp/0",
        "--no-mdns",
        "--swarm-key",
        key,
        "--npm-upstream",
        &fake.url,
    ];
    let b = Cairn::start(&tmp.path().join("b"), &common);
    let b_address = b.p2p_address();
    let mut a_args = common.to_vec();
    a_args.extend(["--bootstrap", &b_address]);
    let a_data = tmp.path().join("a");
    let a = Cairn::start(&a_data, &a_args);
    a.wait_connected(&[&b.peer_id()], Duration::from_secs(60));
    install(tmp.path(), &b, "on-b");
    install(tmp.path(), &a, "on-a");

    // Upstream goes down; A's copy of `big` is damaged.
    fake.faults
        .down
        .store(true, std::sync::atomic::Ordering::SeqCst);
    let big = blob_of(&a, &a_data, BIG);
    flip_byte(&big, 7);
    let hits = fake.total_hits();
    let (out, report) = verify(&address(&a), &a_data, &["--repair"]);
    assert_success(
        &out,
        &format!("cairn verify --repair on A\n--- A's log\n{}", a.logs()),
    );
    assert_eq!(report["repaired"], 1, "{report:#}");
    assert!(damage_of(&report, &big).contains("flat CID"));
    assert_eq!(
        std::fs::read(&big).expect("big held again"),
        fake.registry().version("big", "1.0.0").tarball
    );
    assert!(
        fake.total_hits() - hits <= 1,
        "upstream (down) gave nothing"
    );
    wait_for(Duration::from_secs(10), "A counts the repair", || {
        (a.metric("cairn_repaired_files_total") == 1.0).then_some(())
    });
}

#[test]
fn verify_without_a_node_works_on_the_data_directory_and_repairs_from_the_configured_upstream() {
    let tmp = tempfile::tempdir().expect("tempdir");
    let fake = FakeNpm::start(registry());
    let data = tmp.path().join("data");
    let node = Cairn::start(&data, &["--npm-upstream", &fake.url]);
    install(tmp.path(), &node, "first");
    let big = blob_of(&node, &data, BIG);
    let small = blob_of(&node, &data, SMALL);
    let at = address(&node);
    node.stop();

    flip_byte(&big, 3);
    let (out, report) = verify(&at, &data, &[]);
    assert!(!out.status.success());
    assert!(damage_of(&report, &big).contains("flat CID"));
    assert!(!big.exists());

    // No node, --repair: an engine in this process, with the upstream of `cairn.toml`.
    let config = tmp.path().join("cairn.toml");
    std::fs::write(&config, format!("npm-upstream = {:?}\n", fake.url)).expect("config");
    std::fs::remove_file(&small).expect("remove");
    let (out, report) = verify(
        &at,
        &data,
        &["--repair", "--config", config.to_str().expect("path")],
    );
    assert_success(&out, "cairn verify --repair without a node");
    assert_eq!(report["repaired"], 1, "{report:#}");
    assert_eq!(fake.hits(SMALL), 2);
    assert!(small.exists());
}

#[test]
fn the_repair_route_answers_only_loopback_posts_naming_a_cid_and_keeps_a_sound_file() {
    let tmp = tempfile::tempdir().expect("tempdir");
    let fake = FakeNpm::start(registry());
    let data = tmp.path().join("data");
    let node = Cairn::start(
        &data,
        &["--npm-upstream", &fake.url, "--listen", "0.0.0.0:0"],
    );
    install(tmp.path(), &node, "first");
    let big = blob_of(&node, &data, BIG);
    let flat = big
        .file_name()
        .and_then(|n| n.to_str())
        .expect("cid")
        .to_owned();
    let port = node.url.rsplit(':').next().expect("a port").to_owned();
    let path = format!("/api/v1/repair/artifact/{flat}?fetch=true");

    let outside = format!("{}:{port}", non_loopback_address());
    let (status, body) = raw_request("POST", &outside, &path);
    assert_eq!(status, 403, "{body}");
    let local = format!("127.0.0.1:{port}");
    assert_eq!(raw_request("GET", &local, &path).0, 405);
    for bad in [
        "/api/v1/repair/artifact/not-a-cid",
        "/api/v1/repair/blob/x",
        &format!("{path}&x=1"),
    ] {
        let (status, body) = raw_request("POST", &local, bad);
        assert!(status == 400 || status == 404, "{bad}: {status} {body}");
    }
    // A sound file: checked, found sound, kept.
    let (status, body) = raw_request("POST", &local, &path);
    assert_eq!(status, 200, "{body}");
    let report: serde_json::Value = serde_json::from_str(&body).expect("JSON");
    assert_eq!(report["damage"], serde_json::Value::Null, "{report:#}");
    assert!(big.exists());
    assert_eq!(fake.hits(BIG), 1);
}
