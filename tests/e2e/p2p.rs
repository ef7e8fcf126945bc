//! The swarm end to end, on 127.0.0.1: `cairn serve` nodes that share a swarm key
//! and join through `--bootstrap` serve each other's caches to the real npm, cargo and pip; a
//! node without the key is kept out and fails cleanly; a peer that sends wrong blocks is
//! caught; an artifact `cairn import` writes beside a running node is announced without a
//! restart; and Cairn's Bitswap talks to Helia's both ways.
//!
//! Every node gets `--p2p-listen /ip4/127.0.0.1/tcp/0` and `--no-mdns`, so tests running side
//! by side never find each other.

use std::io::{BufRead, BufReader};
use std::path::Path;
use std::process::{Command, Output, Stdio};
use std::sync::Arc;
use std::time::{Duration, Instant};

use bytes::Bytes;
use cid::Cid;
use sha2::Digest as _;

use crate::fake_cargo::FakeCargo;
use crate::fake_npm::{FakeNpm, noise};
use crate::fake_pypi::{FakePypi, Index};
use crate::support::{
    Cairn, ClientEnv, assert_success, get, metric_sum, project, runtime, swarm_key, wait_for,
};

const MIB: usize = 1 << 20;

/// How long nodes may take to find each other (the tests share two loaded cores).
const JOIN: Duration = Duration::from_secs(30);

/// The three fake upstreams, shared by the nodes that have an upstream.
struct Upstreams {
    npm: FakeNpm,
    cargo: FakeCargo,
    pypi: FakePypi,
}

impl Upstreams {
    fn start(work: &Path) -> Upstreams {
        let mut npm = crate::fake_npm::Registry::default();
        npm.publish("shared-lib", "1.0.0", &[], &[])
            .publish(
                "left-blob",
                "1.0.0",
                &[],
                &[("data.bin", noise(3 * MIB + MIB / 2, 61))],
            )
            .publish(
                "left-app",
                "1.0.0",
                &[("shared-lib", "^1.0.0"), ("left-blob", "^1.0.0")],
                &[],
            )
            .publish(
                "right-blob",
                "1.0.0",
                &[],
                &[("data.bin", noise(2 * MIB + MIB / 3, 62))],
            )
            .publish(
                "right-app",
                "1.0.0",
                &[("shared-lib", "^1.0.0"), ("right-blob", "^1.0.0")],
                &[],
            );
        let mut wheels = Index::default();
        wheels
            .wheel(work, "shared-py", "1.0.0", &[], None)
            .wheel(work, "left-py", "1.0.0", &["shared-py>=1"], None)
            .wheel(work, "right-py", "1.0.0", &["shared-py>=1"], None);
        Upstreams {
            npm: FakeNpm::start(npm),
            cargo: FakeCargo::start(crate::cargo::registry()),
            pypi: FakePypi::start(wheels),
        }
    }

    fn args(&self) -> Vec<String> {
        vec![
            "--npm-upstream".into(),
            self.npm.url.clone(),
            "--cargo-upstream".into(),
            self.cargo.index_url.clone(),
            "--pypi-upstream".into(),
            self.pypi.simple_url.clone(),
        ]
    }

    fn total_hits(&self) -> usize {
        self.npm.total_hits() + self.cargo.total_hits() + self.pypi.total_hits()
    }
}

/// `cairn serve` with a libp2p listener on 127.0.0.1 and no mDNS, plus `args`.
fn start_node(data_dir: &Path, args: &[String]) -> Cairn {
    let mut all = vec!["--p2p-listen", "/ip4/127.0.0.1/tcp/0", "--no-mdns"];
    all.extend(args.iter().map(String::as_str));
    Cairn::start(data_dir, &all)
}

fn strings(items: &[&str]) -> Vec<String> {
    items.iter().map(|s| (*s).to_owned()).collect()
}

/// `npm install` of `dependencies` through `node`, with an empty npm cache.
fn npm_install(node: &Cairn, dir: &Path, dependencies: serde_json::Value) -> Output {
    let env = ClientEnv::new(&dir.join("npm-env"), &node.npm());
    let app = project(&dir.join("npm-app"), dependencies);
    env.run(
        "npm",
        &["install", "--no-audit", "--no-fund", "--prefer-online"],
        &app,
    )
}

fn installed_npm_version(dir: &Path, name: &str) -> String {
    let manifest = dir
        .join("npm-app/node_modules")
        .join(name)
        .join("package.json");
    let text = std::fs::read_to_string(&manifest)
        .unwrap_or_else(|e| panic!("{} not installed: {e}", manifest.display()));
    let json: serde_json::Value = serde_json::from_str(&text).expect("package.json");
    json["version"].as_str().unwrap_or_default().to_owned()
}

/// `cargo fetch` of a project depending on `deps`, with an empty `CARGO_HOME`.
fn cargo_fetch(node: &Cairn, dir: &Path, deps: &[(&str, &str)]) -> Output {
    let home = crate::cargo::cargo_home(
        &dir.join("cargo-home"),
        &format!("{}/cargo/index/", node.url),
    );
    let app = crate::cargo::project(&dir.join("cargo-app"), deps);
    crate::cargo::cargo(&home, &app, &["fetch"])
}

/// pip with no cache: `download` (the files a first install needs) of `packages` into `dir`.
fn pip_download(node: &Cairn, dir: &Path, packages: &[&str]) -> Output {
    let index = format!("{}/pypi/simple/", node.url);
    let target = dir.join("wheels");
    let target = target.to_str().expect("utf-8 path");
    let mut args = vec![
        "-m",
        "pip",
        "download",
        "--no-cache-dir",
        "--index-url",
        &index,
        "-d",
        target,
    ];
    args.extend_from_slice(packages);
    crate::pypi::python_tool(Path::new("python3"), &args, &dir.join("pip-home"))
}

/// The number a series of `node`'s /metrics has (sums label sets that start with `prefix`).
fn metric(node: &Cairn, prefix: &str) -> f64 {
    metric_sum(&node.metrics(), prefix)
}

fn peer_bytes(node: &Cairn, peer: &str) -> f64 {
    metric(
        node,
        &format!("cairn_peer_received_bytes_total{{peer=\"{peer}\"}}"),
    )
}

/// A GET that must answer within `limit` (a hang is a failure, not a wait).
fn get_within(url: &str, limit: Duration) -> (u16, String, Duration) {
    let started = Instant::now();
    runtime().block_on(async {
        let response = reqwest::Client::builder()
            .timeout(limit)
            .build()
            .expect("client")
            .get(url)
            .send()
            .await
            .unwrap_or_else(|e| panic!("GET {url} did not answer within {limit:?}: {e}"));
        let status = response.status().as_u16();
        let text = response.text().await.unwrap_or_default();
        (status, text, started.elapsed())
    })
}

#[test]
fn a_private_swarm_serves_the_union_of_two_caches_to_a_node_without_upstream() {
    let tmp = tempfile::tempdir().expect("tempdir");
    let upstreams = Upstreams::start(&tmp.path().join("build"));
    let key = swarm_key(&tmp.path().join("swarm.key"), 0x5a);
    let key_arg = key.to_str().expect("utf-8 path").to_owned();
    let private = |extra: Vec<String>| {
        let mut args = strings(&["--swarm-key", &key_arg]);
        args.extend(extra);
        args
    };

    // A, then C and B joining through A. A and C front the fakes; B is offline.
    let a = start_node(&tmp.path().join("a"), &private(upstreams.args()));
    let a_id = a.peer_id();
    let a_address = a.p2p_address();
    assert!(
        a.peers()["private"].as_bool().expect("private"),
        "{}",
        a.peers()
    );
    let mut c_args = private(strings(&["--bootstrap", &a_address]));
    c_args.extend(upstreams.args());
    let c = start_node(&tmp.path().join("c"), &c_args);
    let c_id = c.peer_id();
    let mut b_args = private(strings(&["--bootstrap", &a_address, "--offline"]));
    b_args.extend(upstreams.args());
    let b = start_node(&tmp.path().join("b"), &b_args);
    c.wait_connected(&[&a_id], JOIN);
    b.wait_connected(&[&a_id], JOIN);

    // A and C each install one set through themselves.
    let a_work = tmp.path().join("a-clients");
    assert_success(
        &npm_install(&a, &a_work, serde_json::json!({ "left-app": "^1.0.0" })),
        "npm install through A",
    );
    assert_success(
        &cargo_fetch(&a, &a_work, &[("snake_case_lib", "2")]),
        "cargo fetch through A",
    );
    assert_success(
        &pip_download(&a, &a_work, &["left-py"]),
        "pip download through A",
    );
    let c_work = tmp.path().join("c-clients");
    assert_success(
        &npm_install(&c, &c_work, serde_json::json!({ "right-app": "^1.0.0" })),
        "npm install through C",
    );
    assert_success(
        &cargo_fetch(&c, &c_work, &[("MixedCase", "0.1")]),
        "cargo fetch through C",
    );
    assert_success(
        &pip_download(&c, &c_work, &["right-py"]),
        "pip download through C",
    );

    // B installs the union with empty client caches, and upstream is never asked.
    let upstream_requests = upstreams.total_hits();
    let b_work = tmp.path().join("b-clients");
    assert_success(
        &npm_install(
            &b,
            &b_work,
            serde_json::json!({ "left-app": "^1.0.0", "right-app": "^1.0.0" }),
        ),
        &format!("npm install through B\n--- B's log\n{}", b.logs()),
    );
    for name in [
        "left-app",
        "left-blob",
        "right-app",
        "right-blob",
        "shared-lib",
    ] {
        assert_eq!(installed_npm_version(&b_work, name), "1.0.0", "{name}");
    }
    let blob = std::fs::read(b_work.join("npm-app/node_modules/left-blob/data.bin"))
        .expect("left-blob's data");
    assert_eq!(blob, noise(3 * MIB + MIB / 2, 61), "left-blob's bytes");
    assert_success(
        &cargo_fetch(
            &b,
            &b_work,
            &[("snake_case_lib", "2"), ("MixedCase", "0.1")],
        ),
        &format!("cargo fetch through B\n--- B's log\n{}", b.logs()),
    );
    let venv = crate::pypi::venv(&b_work.join("venv"));
    let index = format!("{}/pypi/simple/", b.url);
    let pip = crate::pypi::python_tool(
        &venv.join("bin/pip"),
        &[
            "install",
            "--no-cache-dir",
            "--index-url",
            &index,
            "left-py",
            "right-py",
        ],
        &b_work.join("pip-home"),
    );
    assert_success(
        &pip,
        &format!("pip install through B\n--- B's log\n{}", b.logs()),
    );
    let imported = Command::new(venv.join("bin/python"))
        .args([
            "-c",
            "import left_py, right_py, shared_py; print(left_py.VERSION)",
        ])
        .output()
        .expect("python");
    assert_success(&imported, "importing what pip installed through B");

    assert_eq!(
        upstreams.total_hits(),
        upstream_requests,
        "B's installs reached upstream"
    );
    let metrics = b.metrics();
    assert!(
        metric_sum(&metrics, "cairn_served_bytes_total{source=\"peer\"}") > 0.0,
        "B served nothing from peers:\n{metrics}"
    );
    for (name, id) in [("A", &a_id), ("C", &c_id)] {
        assert!(
            peer_bytes(&b, id) > 0.0,
            "B received no bytes from {name} ({id}):\n{metrics}"
        );
    }
    assert!(
        peer_bytes(&b, &a_id) >= (3 * MIB) as f64,
        "left-blob (only A has it) did not come from A:\n{metrics}"
    );
    assert!(
        peer_bytes(&b, &c_id) >= (2 * MIB) as f64,
        "right-blob (only C has it) did not come from C:\n{metrics}"
    );
    assert!(
        metric_sum(&metrics, "cairn_peer_documents_total") > 0.0,
        "B took no metadata from peers:\n{metrics}"
    );

    // D has no swarm key and E another one: neither ever gets in (the key is in noise's
    // handshake, so theirs fails), and a miss through D is a prompt 504.
    let mut d_args = strings(&["--bootstrap", &a_address, "--offline"]);
    d_args.extend(upstreams.args());
    let d = start_node(&tmp.path().join("d"), &d_args);
    let d_id = d.peer_id();
    let other_key = swarm_key(&tmp.path().join("other.key"), 0x5b);
    let other_key = other_key.to_str().expect("utf-8 path");
    let mut e_args = strings(&[
        "--bootstrap",
        &a_address,
        "--offline",
        "--swarm-key",
        other_key,
    ]);
    e_args.extend(upstreams.args());
    let e = start_node(&tmp.path().join("e"), &e_args);
    let e_id = e.peer_id();
    let watched = Instant::now();
    while watched.elapsed() < Duration::from_secs(5) {
        assert_eq!(d.connected(), Vec::<String>::new(), "D got into the swarm");
        assert_eq!(e.connected(), Vec::<String>::new(), "E got into the swarm");
        assert!(!a.connected().contains(&d_id), "A let D in");
        assert!(!a.connected().contains(&e_id), "A let E in");
        std::thread::sleep(Duration::from_millis(250));
    }
    assert!(
        e.logs().contains("different swarm keys"),
        "E's log does not say why it could not join:\n{}",
        e.logs()
    );
    drop(e);
    assert!(!d.peers()["private"].as_bool().unwrap_or(true));
    let (status, text, took) = get_within(&format!("{}left-app", d.npm()), Duration::from_secs(45));
    assert_eq!(status, 504, "D's miss: {text}");
    let d_work = tmp.path().join("d-clients");
    let started = Instant::now();
    let output = npm_install(&d, &d_work, serde_json::json!({ "left-app": "^1.0.0" }));
    assert!(!output.status.success(), "npm installed through D");
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert!(
        stderr.contains("504"),
        "npm's error does not show the 504:\n{stderr}"
    );
    assert!(
        started.elapsed() < Duration::from_secs(45) && took < Duration::from_secs(45),
        "D took {took:?} to answer, npm {:?}",
        started.elapsed()
    );
    assert_eq!(
        upstreams.total_hits(),
        upstream_requests,
        "D (offline) reached upstream"
    );
    for node in [b, c, d, a] {
        node.stop();
    }
}

#[test]
fn a_node_without_swarm_key_says_peers_hold_the_document_and_npm_does_not_retry() {
    let tmp = tempfile::tempdir().expect("tempdir");
    let upstreams = Upstreams::start(&tmp.path().join("build"));
    let a_dir = tmp.path().join("a");
    let a = start_node(&a_dir, &upstreams.args());
    let a_id = a.peer_id();

    // `cairn id` prints the peer ID, then the running node's real addresses: one of them is
    // what B bootstraps from.
    let listen = a.url.trim_start_matches("http://").to_owned();
    let id = Command::new(env!("CARGO_BIN_EXE_cairn"))
        .args(["id", "--listen", &listen, "--data-dir"])
        .arg(&a_dir)
        .env("HOME", tmp.path())
        .env("XDG_CONFIG_HOME", tmp.path().join("none"))
        .output()
        .expect("cairn id");
    assert_success(&id, "cairn id");
    let printed = String::from_utf8_lossy(&id.stdout).into_owned();
    let mut lines = printed.lines();
    assert_eq!(lines.next(), Some(a_id.as_str()), "{printed}");
    let bootstrap = lines
        .find(|l| l.starts_with("/ip4/127.0.0.1/tcp/") && !l.contains("/tcp/0/"))
        .unwrap_or_else(|| panic!("no dialable TCP address in `cairn id`:\n{printed}"))
        .to_owned();
    assert!(bootstrap.ends_with(&format!("/p2p/{a_id}")), "{bootstrap}");

    // B: no swarm key, no --trust-peer-metadata, offline. It joins A (an open swarm).
    let mut b_args = strings(&["--bootstrap", &bootstrap, "--offline"]);
    b_args.extend(upstreams.args());
    let b = start_node(&tmp.path().join("b"), &b_args);
    b.wait_connected(&[&a_id], JOIN);
    assert_success(
        &npm_install(
            &a,
            &tmp.path().join("a-clients"),
            serde_json::json!({ "left-app": "^1.0.0" }),
        ),
        "npm install through A",
    );

    // B refuses A's copy, as designed, and says so: in npm's error and in its log, with the
    // two ways to change it. A 403 is an answer npm does not retry (it retries a 5xx for
    // over a minute), so B answers the packument exactly once.
    let output = npm_install(
        &b,
        &tmp.path().join("b-clients"),
        serde_json::json!({ "left-app": "^1.0.0" }),
    );
    assert!(!output.status.success(), "npm installed through B");
    let stderr = String::from_utf8_lossy(&output.stderr);
    for hint in ["peer(s) hold it", "--swarm-key", "--trust-peer-metadata"] {
        assert!(
            stderr.contains(hint),
            "npm's error lacks {hint:?}:\n{stderr}"
        );
    }
    let logs = b.logs();
    assert!(
        logs.contains("WARN") && logs.contains("left-app") && logs.contains("--swarm-key"),
        "B logged no refusal:\n{logs}"
    );
    assert_eq!(
        b.metric("cairn_http_requests_total{route=\"npm\",kind=\"metadata\",status=\"403\"}"),
        1.0,
        "npm asked B more than once:\n{}",
        b.metrics()
    );
    for node in [b, a] {
        node.stop();
    }
}

/// Holds no block: the in-process node only fetches.
struct NoBlocks;

impl cairn_node::BlockSource for NoBlocks {
    fn get(&self, _cid: &Cid) -> Option<Bytes> {
        None
    }
}

fn tcp_localhost() -> libp2p::Multiaddr {
    "/ip4/127.0.0.1/tcp/0".parse().expect("multiaddr")
}

#[test]
fn helia_fetches_a_cached_tarball_from_cairn_over_bitswap() {
    let tools = &crate::tools::tools().helia;
    let tmp = tempfile::tempdir().expect("tempdir");
    let mut registry = crate::fake_npm::Registry::default();
    registry.publish(
        "helia-pkg",
        "1.0.0",
        &[],
        &[("data.bin", noise(2 * MIB + MIB / 2, 71))],
    );
    let fake = FakeNpm::start(registry);
    let tarball = fake
        .registry()
        .version("helia-pkg", "1.0.0")
        .tarball
        .clone();
    let cairn = start_node(
        &tmp.path().join("data"),
        &strings(&["--npm-upstream", &fake.url]),
    );
    let url = format!("{}helia-pkg/-/helia-pkg-1.0.0.tgz", cairn.npm());
    assert_eq!(get(&url).body, tarball);
    let root = wait_for(Duration::from_secs(30), "the tarball's root CID", || {
        get(&url).header("x-ipfs-roots")
    });

    // Helia dials Cairn (no swarm key) and reads the whole DAG over Bitswap.
    let output = Command::new("node")
        .arg(tools.join("helia-bitswap.mjs"))
        .args(["fetch", &cairn.p2p_address(), &root])
        .current_dir(tools)
        .output()
        .expect("node must be installed");
    assert_success(&output, &format!("Helia fetching {root}\n{}", cairn.logs()));
    let fetched: serde_json::Value =
        serde_json::from_slice(&output.stdout).expect("helia-bitswap JSON");
    assert_eq!(fetched["size"], tarball.len());
    assert_eq!(
        fetched["sha256"],
        hex::encode(sha2::Sha256::digest(&tarball))
    );
    assert_eq!(fetched["peer"].as_str(), Some(cairn.peer_id().as_str()));
    cairn.stop();
}

#[test]
fn cairn_fetches_a_block_only_helia_holds() {
    let tools = &crate::tools::tools().helia;
    let mut helia = Command::new("node")
        .arg(tools.join("helia-bitswap.mjs"))
        .arg("hold")
        .current_dir(tools)
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .spawn()
        .expect("node must be installed");
    let mut line = String::new();
    BufReader::new(helia.stdout.take().expect("stdout"))
        .read_line(&mut line)
        .expect("Helia's line");
    let held: serde_json::Value = serde_json::from_str(&line)
        .unwrap_or_else(|e| panic!("Helia did not start ({e}): {line:?}"));
    let address: libp2p::Multiaddr = held["listen"][0]
        .as_str()
        .expect("listen")
        .parse()
        .expect("Helia's multiaddr");
    let peer: libp2p::PeerId = held["peer"]
        .as_str()
        .expect("peer")
        .parse()
        .expect("peer ID");
    let cid: Cid = held["cid"].as_str().expect("cid").parse().expect("CID");
    let block = runtime().block_on(async {
        let config = cairn_node::NodeConfig {
            listen: vec![tcp_localhost()],
            mdns: false,
            ..cairn_node::NodeConfig::default()
        };
        let node = cairn_node::Node::start(config, Arc::new(NoBlocks))
            .await
            .expect("in-process node");
        node.dial(address).await.expect("dial Helia");
        let block = node.get_block(peer, cid, Duration::from_secs(30)).await;
        node.shutdown();
        block
    });
    drop(helia.stdin.take());
    let _ = helia.wait();
    let block = block.expect("the block Helia holds");
    assert_eq!(
        hex::encode(sha2::Sha256::digest(&block)),
        held["sha256"].as_str().expect("sha256")
    );
}

/// Answers resolve honestly (the tarball's real leaves, root and size) and holds no block.
struct Honest(cairn_node::HeldArtifact);

impl cairn_node::LocalContent for Honest {
    fn block(&self, _cid: &Cid, _max: u64) -> Result<Option<Bytes>, cairn_node::ContentError> {
        Ok(None)
    }

    fn artifact(
        &self,
        _flat: &cairn_mirror::cid::FlatCid,
    ) -> Result<Option<(cairn_mirror::cid::RootCid, u64)>, cairn_node::ContentError> {
        Ok(Some((self.0.root, self.0.size)))
    }

    fn held(
        &self,
        _flat: &cairn_mirror::cid::FlatCid,
    ) -> Result<Option<cairn_node::HeldArtifact>, cairn_node::ContentError> {
        Ok(Some(self.0.clone()))
    }

    fn held_artifacts(
        &self,
        _limit: usize,
    ) -> Result<
        Vec<(cairn_mirror::cid::FlatCid, cairn_mirror::cid::RootCid)>,
        cairn_node::ContentError,
    > {
        Ok(Vec::new())
    }

    fn changes(
        &self,
    ) -> Result<
        futures_util::stream::BoxStream<'static, cairn_mirror::peers::HoldingChange>,
        cairn_node::ContentError,
    > {
        Ok(Box::pin(futures_util::stream::empty()))
    }

    fn document(
        &self,
        _ecosystem: &str,
        _key: &str,
    ) -> Result<Option<cairn_mirror::peers::PeerDocument>, cairn_node::ContentError> {
        Ok(None)
    }
}

/// Says it has every block, and sends the same wrong bytes for each.
struct Lies;

impl cairn_node::BlockSource for Lies {
    fn get(&self, _cid: &Cid) -> Option<Bytes> {
        Some(Bytes::from_static(
            b"these are not the bytes you are looking for",
        ))
    }
}

#[test]
fn a_peer_that_sends_wrong_blocks_is_caught_and_an_honest_peer_serves_the_file() {
    // Enough leaves that the honest peer cannot deliver them all before the liar, asked at the
    // same moment, has joined the transfer (8 MiB once went whole from A).
    const BAIT_SIZE: usize = 32 * MIB;
    let tmp = tempfile::tempdir().expect("tempdir");
    let mut registry = crate::fake_npm::Registry::default();
    registry.publish(
        "bait-pkg",
        "1.0.0",
        &[],
        &[("data.bin", noise(BAIT_SIZE, 91))],
    );
    let fake = FakeNpm::start(registry);
    let tarball = fake.registry().version("bait-pkg", "1.0.0").tarball.clone();
    let key = swarm_key(&tmp.path().join("swarm.key"), 0x3c);
    let key_arg = key.to_str().expect("utf-8 path").to_owned();

    // The honest A has the tarball.
    let a = start_node(
        &tmp.path().join("a"),
        &strings(&["--swarm-key", &key_arg, "--npm-upstream", &fake.url]),
    );
    let a_id = a.peer_id();
    let a_address = a.p2p_address();
    let path = "bait-pkg/-/bait-pkg-1.0.0.tgz";
    assert_eq!(get(&format!("{}{path}", a.npm())).body, tarball);
    let root = wait_for(Duration::from_secs(30), "A committed the tarball", || {
        get(&format!("{}{path}", a.npm())).header("x-ipfs-roots")
    });
    let root: Cid = root.parse().expect("root CID");
    let flat =
        cairn_mirror::cid::Digest::of(cairn_mirror::cid::Algorithm::Sha512, &tarball).flat_cid();

    // The liar joins the same private swarm through A, answers resolve with the tarball's true
    // leaves and announces it under both its flat CID and its root, as an honest holder would;
    // only its blocks are wrong.
    let mut dag = cairn_mirror::unixfs::DagBuilder::new();
    dag.update(&tarball);
    let dag = dag.finish();
    let held = cairn_node::HeldArtifact {
        root: cairn_mirror::cid::RootCid(dag.root),
        size: dag.size,
        leaves: dag.leaves,
    };
    let (liar, _liar_peers) = runtime().block_on(async {
        let config = cairn_node::NodeConfig {
            listen: vec![tcp_localhost()],
            bootstrap: vec![a_address.parse().expect("A's multiaddr")],
            swarm_key: Some(key.clone()),
            mdns: false,
            ..cairn_node::NodeConfig::default()
        };
        let liar = cairn_node::Node::start(config, Arc::new(Lies))
            .await
            .expect("the lying node");
        let peers = cairn_node::Peers::new(
            liar.clone(),
            Arc::new(Honest(held)),
            cairn_node::PendingMap::default(),
            cairn_node::PeerPolicy {
                trust_metadata: false,
            },
            cairn_node::NodeMetrics::default(),
        )
        .expect("the liar's resolve server");
        for cid in [flat.0, root] {
            tokio::time::timeout(Duration::from_secs(30), liar.provide(cid))
                .await
                .expect("announcing within 30 s")
                .expect("announcing");
        }
        (liar, peers)
    });
    let liar_id = liar.peer_id().to_string();
    let liar_address = runtime()
        .block_on(liar.listen_addrs())
        .expect("the liar's addresses")
        .into_iter()
        .find(|a| a.to_string().starts_with("/ip4/127.0.0.1/tcp/"))
        .expect("a TCP address")
        .with(libp2p::multiaddr::Protocol::P2p(liar.peer_id()));

    // B, offline, knows both; it must catch the liar and still install from A.
    let b = start_node(
        &tmp.path().join("b"),
        &strings(&[
            "--swarm-key",
            &key_arg,
            "--offline",
            "--npm-upstream",
            &fake.url,
            "--bootstrap",
            &a_address,
            "--bootstrap",
            &liar_address.to_string(),
        ]),
    );
    b.wait_connected(&[&a_id, &liar_id], JOIN);
    let upstream_requests = fake.total_hits();
    let work = tmp.path().join("clients");
    assert_success(
        &npm_install(&b, &work, serde_json::json!({ "bait-pkg": "1.0.0" })),
        &format!("npm install through B\n--- B's log\n{}", b.logs()),
    );
    let data = std::fs::read(work.join("npm-app/node_modules/bait-pkg/data.bin")).expect("data");
    assert_eq!(data, noise(BAIT_SIZE, 91), "the installed bytes");
    assert_eq!(fake.total_hits(), upstream_requests, "B reached upstream");
    let metrics = b.metrics();
    assert!(
        metric(
            &b,
            &format!("cairn_peer_bad_blocks_total{{peer=\"{liar_id}\"}}")
        ) > 0.0,
        "B never caught the liar {liar_id}:\n{metrics}"
    );
    assert!(
        peer_bytes(&b, &a_id) >= tarball.len() as f64,
        "the tarball did not come from A:\n{metrics}"
    );
    assert!(
        peer_bytes(&b, &a_id) <= (tarball.len() + 4 * MIB) as f64,
        "bytes from A counted more than once (beyond a few hedged leaves):\n{metrics}"
    );
    assert_eq!(
        peer_bytes(&b, &liar_id),
        0.0,
        "bytes from the liar were counted"
    );
    // The operator's view: B lists the liar as a bad peer with its reason, and each side the
    // bytes it exchanged with the other.
    let b_view = b.peers();
    let penalized = b_view["penalized"].as_array().expect("penalized peers");
    let caught = penalized
        .iter()
        .find(|p| p["peer"] == liar_id.as_str())
        .unwrap_or_else(|| panic!("the liar is not listed as a bad peer: {b_view}"));
    assert_eq!(caught["fault"], "lied", "{b_view}");
    assert!(
        caught["reason"].as_str().is_some_and(|r| !r.is_empty()),
        "{b_view}"
    );
    let exchanged = |view: &serde_json::Value, peer: &str, field: &str| {
        view["peers"]
            .as_array()
            .and_then(|peers| peers.iter().find(|p| p["peer"] == peer))
            .and_then(|p| p[field].as_u64())
            .unwrap_or_else(|| panic!("no {field} for {peer}: {view}"))
    };
    assert_eq!(
        exchanged(&b_view, &a_id, "bytes_received") as f64,
        peer_bytes(&b, &a_id),
        "{b_view}"
    );
    let b_id = b.peer_id();
    assert!(
        exchanged(&a.peers(), &b_id, "bytes_sent") >= tarball.len() as u64,
        "A's view of what it sent B: {}",
        a.peers()
    );
    liar.shutdown();
    b.stop();
    a.stop();
}

/// The DHT's providers of `cid` as an in-process node joined to `address` finds them, asked
/// again until `peer` is among them or a minute has passed.
fn providers_found(address: &str, cid: Cid, peer: &str, first_only: bool) -> Vec<String> {
    runtime().block_on(async {
        let config = cairn_node::NodeConfig {
            listen: vec![tcp_localhost()],
            mdns: false,
            ..cairn_node::NodeConfig::default()
        };
        let node = cairn_node::Node::start(config, Arc::new(NoBlocks))
            .await
            .expect("in-process node");
        node.dial(address.parse().expect("multiaddr"))
            .await
            .expect("dial the serving node");
        let started = Instant::now();
        let found = loop {
            let found: Vec<String> = node
                .find_providers(cid, tokio::time::Instant::now() + Duration::from_secs(5))
                .await
                .unwrap_or_default()
                .iter()
                .map(ToString::to_string)
                .collect();
            if first_only || found.iter().any(|p| p == peer) || started.elapsed() > JOIN * 2 {
                break found;
            }
            tokio::time::sleep(Duration::from_millis(500)).await;
        };
        node.shutdown();
        found
    })
}

#[test]
fn an_artifact_imported_beside_a_serving_node_is_announced_to_the_swarm_without_a_restart() {
    let tmp = tempfile::tempdir().expect("tempdir");
    let mut registry = crate::fake_npm::Registry::default();
    registry.publish(
        "imported-pkg",
        "1.0.0",
        &[],
        &[("data.bin", noise(2 * MIB + MIB / 4, 81))],
    );
    let fake = FakeNpm::start(registry);
    let tarball = fake
        .registry()
        .version("imported-pkg", "1.0.0")
        .tarball
        .clone();

    // X caches the tarball from upstream; its store goes into a bundle.
    let data_x = tmp.path().join("x");
    let x = Cairn::start(&data_x, &["--no-p2p", "--npm-upstream", &fake.url]);
    let url = format!("{}imported-pkg/-/imported-pkg-1.0.0.tgz", x.npm());
    assert_eq!(get(&url).body, tarball);
    let root = wait_for(Duration::from_secs(30), "the tarball's root CID", || {
        get(&url).header("x-ipfs-roots")
    });
    x.stop();
    let car = tmp.path().join("x.car");
    let out = crate::bundle::cairn(&[
        "export",
        "--data-dir",
        data_x.to_str().expect("path"),
        "--all",
        "-o",
        car.to_str().expect("path"),
    ]);
    assert_success(&out, "cairn export --all");

    // A serves with the swarm on and holds nothing: no one provides the tarball.
    let data_a = tmp.path().join("a");
    let a = start_node(&data_a, &strings(&["--npm-upstream", &fake.url]));
    let (a_id, a_address) = (a.peer_id(), a.p2p_address());
    let root: Cid = root.parse().expect("root CID");
    assert!(
        !providers_found(&a_address, root, &a_id, true).contains(&a_id),
        "A provides what it does not hold"
    );

    // Imported by another process while A runs: A's store hears of it and A announces it.
    let out = crate::bundle::cairn(&[
        "import",
        "--data-dir",
        data_a.to_str().expect("path"),
        car.to_str().expect("path"),
    ]);
    assert_success(&out, "cairn import beside a running serve");
    let found = providers_found(&a_address, root, &a_id, false);
    assert!(
        found.contains(&a_id),
        "a node in the swarm does not find A holding {root} (providers: {found:?})\n--- A's log\n{}",
        a.logs()
    );
    // And A serves it from the store the import wrote, without going upstream.
    let upstream_requests = fake.total_hits();
    assert_eq!(
        get(&format!("{}imported-pkg/-/imported-pkg-1.0.0.tgz", a.npm())).body,
        tarball
    );
    assert_eq!(fake.total_hits(), upstream_requests, "A went upstream");
    a.stop();
}
