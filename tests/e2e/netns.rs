//! `cairn serve` in network namespaces (root, iproute2): nodes on a private bridge find each
//! other by mDNS with no p2p flag at all, and a node fetching an artifact two peers hold takes
//! most of it from the near one when the other is 50 ms away each way.
//!
//! Layout, all of it made by the test and deleted by [`Net`]'s `Drop` (even when a test
//! fails): a "switch" namespace holding a bridge, and one namespace per node joined to it by a
//! veth pair, with an address of 10.77.N.0/24 (N per test). The host's own namespace gets
//! nothing: no address, no route, so the traffic stays among the namespaces and the host's mDNS
//! (other tests' nodes) never sees them. The test reaches each node with `ip netns exec NS
//! curl`. The data dirs are on the shared file system, which the namespaces do not split.
//!
//! The far peer's delay is not `tc qdisc … netem`: the kernels of the test machines and CI
//! (Firecracker VM kernels, no modules) have no `sch_netem`. `tests/tools/delay-relay.py` adds
//! the same 50 ms per direction in userspace instead. The far node's libp2p listens only on the
//! loopback of its own namespace, which no other namespace can reach, and the relay, in that
//! namespace on its bridge address, is the only way in: every byte to or from the far node
//! waits 50 ms in the relay, so its round trip is 100 ms more than the near node's.
//!
//! A missing `ip netns`, `ss`, `python3` or `curl` is a failure, not a skip.

use std::io::{BufRead, BufReader, Read, Write};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Output, Stdio};
use std::time::{Duration, Instant};

use sha2::Digest as _;

use crate::fake_npm::{FakeNpm, Registry, noise};
use crate::support::{Cairn, assert_success, get, metric_sum, wait_for};

const MIB: usize = 1 << 20;

/// The far node's libp2p port, on the loopback of its namespace.
const FAR_P2P_PORT: u16 = 7779;
/// The delay relay's port, on the far namespace's bridge address.
const RELAY_PORT: u16 = 7780;

/// Run `ip ARGS…`; panic with its stderr when it fails.
fn ip(args: &[&str]) {
    run("ip", args);
}

fn run(program: &str, args: &[&str]) -> Output {
    let output = Command::new(program)
        .args(args)
        .output()
        .unwrap_or_else(|e| panic!("cannot run {program} (iproute2 must be installed): {e}"));
    assert_success(&output, &format!("{program} {}", args.join(" ")));
    output
}

/// Namespaces joined by a bridge, deleted on drop.
struct Net {
    switch: String,
    nodes: Vec<String>,
    subnet: u8,
}

impl Net {
    /// `count` node namespaces on 10.77.`subnet`.0/24 (node `i` is 10.77.`subnet`.`i+1`).
    fn new(subnet: u8, count: usize) -> Net {
        let tag = format!("{}{subnet}", std::process::id() % 100_000);
        let switch = format!("cairn-e2e-{tag}-sw");
        let mut net = Net {
            switch: switch.clone(),
            nodes: Vec::new(),
            subnet,
        };
        ip(&["netns", "add", &switch]);
        ip(&["-n", &switch, "link", "add", "br0", "type", "bridge"]);
        ip(&["-n", &switch, "link", "set", "br0", "up"]);
        for i in 0..count {
            let ns = format!("cairn-e2e-{tag}-{i}");
            ip(&["netns", "add", &ns]);
            net.nodes.push(ns.clone());
            let port = format!("p{i}");
            ip(&[
                "-n", &switch, "link", "add", &port, "type", "veth", "peer", "name", "eth0",
                "netns", &ns,
            ]);
            ip(&["-n", &switch, "link", "set", &port, "master", "br0", "up"]);
            let address = format!("{}/24", net.address(i));
            ip(&["-n", &ns, "addr", "add", &address, "dev", "eth0"]);
            ip(&["-n", &ns, "link", "set", "lo", "up"]);
            ip(&["-n", &ns, "link", "set", "eth0", "up"]);
            // mDNS sends to 224.0.0.251: give multicast a route out of the only link.
            ip(&["-n", &ns, "route", "add", "224.0.0.0/4", "dev", "eth0"]);
        }
        net
    }

    fn address(&self, node: usize) -> String {
        format!("10.77.{}.{}", self.subnet, node + 1)
    }

    /// `cairn serve` in node `i`'s namespace, HTTP on its address, with `args`.
    fn start(&self, node: usize, data_dir: &Path, args: &[&str]) -> Cairn {
        let listen = format!("{}:7777", self.address(node));
        let mut all = vec!["--listen", listen.as_str()];
        all.extend_from_slice(args);
        Cairn::start_wrapped(&["ip", "netns", "exec", &self.nodes[node]], data_dir, &all)
    }

    /// `curl` inside node `i`'s namespace: (status, body).
    fn curl(&self, node: usize, url: &str, out: Option<&Path>) -> (u16, Vec<u8>) {
        let mut args = vec![
            "netns",
            "exec",
            &self.nodes[node],
            "curl",
            "-s",
            "--max-time",
            "60",
            "-w",
            "\n%{http_code}",
        ];
        let target;
        if let Some(out) = out {
            target = out.to_str().expect("utf-8 path").to_owned();
            args.extend(["-o", target.as_str()]);
        }
        args.push(url);
        let output = Command::new("ip")
            .args(&args)
            .output()
            .expect("ip netns exec curl (curl must be installed)");
        assert_success(&output, &format!("curl {url} in {}", self.nodes[node]));
        let text = output.stdout;
        let split = text.iter().rposition(|&b| b == b'\n').unwrap_or(0);
        let status = String::from_utf8_lossy(&text[split + 1..])
            .trim()
            .parse()
            .expect("curl's status");
        (status, text[..split].to_vec())
    }

    fn json(&self, node: usize, url: &str) -> serde_json::Value {
        let (status, body) = self.curl(node, url, None);
        assert_eq!(status, 200, "{url}: {}", String::from_utf8_lossy(&body));
        serde_json::from_slice(&body).expect("JSON")
    }

    fn metrics(&self, node: usize, cairn: &Cairn) -> String {
        let (_, body) = self.curl(node, &format!("{}/metrics", cairn.url), None);
        String::from_utf8_lossy(&body).into_owned()
    }
}

impl Drop for Net {
    fn drop(&mut self) {
        for ns in self.nodes.iter().chain([&self.switch]) {
            let _ = Command::new("ip").args(["netns", "del", ns]).output();
        }
    }
}

/// Peer IDs a node lists in /api/v1/peers, with their RTTs.
fn peers_of(net: &Net, node: usize, cairn: &Cairn) -> Vec<(String, Option<f64>)> {
    let report = net.json(node, &format!("{}/api/v1/peers", cairn.url));
    report["peers"]
        .as_array()
        .map(|peers| {
            peers
                .iter()
                .filter_map(|p| Some((p["peer"].as_str()?.to_owned(), p["rtt_ms"].as_f64())))
                .collect()
        })
        .unwrap_or_default()
}

fn peer_id_of(net: &Net, node: usize, cairn: &Cairn) -> String {
    let report = net.json(node, &format!("{}/api/v1/peers", cairn.url));
    report["peer_id"]
        .as_str()
        .unwrap_or_else(|| panic!("no peer_id in /api/v1/peers: {report}"))
        .to_owned()
}

/// `tests/tools/delay-relay.py`, running until dropped.
struct Relay {
    child: Child,
    log: PathBuf,
    /// Where it listens, as it printed it (`ADDR:PORT`, the port chosen when given 0).
    address: String,
}

impl Relay {
    /// Relay `listen` (ADDR:PORT) to `target`, `delay` each way, under `wrapper` (`ip netns
    /// exec NS`, or nothing); its stderr goes to `log`.
    fn start(wrapper: &[&str], listen: &str, target: &str, delay: Duration, log: &Path) -> Relay {
        let script = Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/tools/delay-relay.py");
        let mut argv: Vec<String> = wrapper.iter().map(|s| (*s).to_owned()).collect();
        argv.push("python3".into());
        argv.push(script.to_str().expect("utf-8 path").into());
        argv.extend([
            listen.into(),
            target.into(),
            delay.as_secs_f64().to_string(),
        ]);
        let mut child = Command::new(&argv[0])
            .args(&argv[1..])
            .stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(std::fs::File::create(log).expect("relay log"))
            .spawn()
            .unwrap_or_else(|e| panic!("cannot run {} (python3 must be installed): {e}", argv[0]));
        let mut line = String::new();
        let _ = BufReader::new(child.stdout.take().expect("stdout")).read_line(&mut line);
        let mut relay = Relay {
            child,
            log: log.to_path_buf(),
            address: String::new(),
        };
        match line.trim().strip_prefix("relay listening on ") {
            Some(address) => relay.address = address.to_owned(),
            None => panic!("the delay relay did not start ({line:?}): {}", relay.logs()),
        }
        relay
    }

    fn logs(&self) -> String {
        std::fs::read_to_string(&self.log).unwrap_or_default()
    }
}

impl Drop for Relay {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// `cairn id --data-dir DIR`: the node's peer ID.
fn cairn_id(data_dir: &Path) -> String {
    let home = data_dir.with_extension("home");
    std::fs::create_dir_all(&home).expect("home");
    let output = Command::new(env!("CARGO_BIN_EXE_cairn"))
        .arg("id")
        .arg("--data-dir")
        .arg(data_dir)
        .env("HOME", &home)
        .env("XDG_CONFIG_HOME", home.join(".config"))
        .output()
        .expect("run cairn id");
    assert_success(&output, "cairn id");
    let text = String::from_utf8_lossy(&output.stdout);
    text.split_whitespace()
        .find(|w| w.starts_with("12D3Koo"))
        .unwrap_or_else(|| panic!("no peer ID in the output of cairn id: {text:?}"))
        .to_owned()
}

/// Established TCP connections in namespace `ns` as (local, peer) `ADDR:PORT` pairs.
fn tcp_connections(ns: &str) -> Vec<(String, String)> {
    let output = run(
        "ip",
        &["netns", "exec", ns, "ss", "-Htn", "state", "established"],
    );
    String::from_utf8_lossy(&output.stdout)
        .lines()
        .filter_map(|line| {
            let mut columns = line.split_whitespace().skip(2);
            Some((columns.next()?.to_owned(), columns.next()?.to_owned()))
        })
        .collect()
}

/// The relay itself, on 127.0.0.1 (no namespace): 50 ms each way on a TCP echo, and a few MiB
/// through it unchanged and in order.
#[test]
fn the_delay_relay_adds_its_delay_to_each_direction() {
    let tmp = tempfile::tempdir().expect("tempdir");
    let echo = std::net::TcpListener::bind("127.0.0.1:0").expect("bind");
    let target = echo.local_addr().expect("addr").to_string();
    std::thread::spawn(move || {
        for stream in echo.incoming() {
            let Ok(mut stream) = stream else { return };
            std::thread::spawn(move || {
                let mut back = stream.try_clone().expect("clone");
                let _ = std::io::copy(&mut stream, &mut back);
                let _ = back.shutdown(std::net::Shutdown::Write);
            });
        }
    });
    let relay = Relay::start(
        &[],
        "127.0.0.1:0",
        &target,
        Duration::from_millis(50),
        &tmp.path().join("relay.log"),
    );
    let mut stream = std::net::TcpStream::connect(&relay.address).expect("connect to the relay");
    stream.set_nodelay(true).expect("nodelay");
    stream
        .set_read_timeout(Some(Duration::from_secs(10)))
        .expect("timeout");
    let mut rtts = Vec::new();
    for i in 0..5u8 {
        let started = Instant::now();
        stream.write_all(&[i; 32]).expect("send");
        let mut back = [0u8; 32];
        stream.read_exact(&mut back).expect("echo");
        assert_eq!(back, [i; 32]);
        rtts.push(started.elapsed());
    }
    let fastest = rtts.iter().min().expect("rtts");
    assert!(
        *fastest >= Duration::from_millis(100) && *fastest < Duration::from_millis(400),
        "round trips through the relay: {rtts:?} (100 ms expected)"
    );
    let data = noise(8 * MIB, 82);
    let mut reader = stream.try_clone().expect("clone");
    let reading = std::thread::spawn(move || {
        let mut all = Vec::new();
        reader.read_to_end(&mut all).map(|_| all)
    });
    stream.write_all(&data).expect("send the bulk");
    stream
        .shutdown(std::net::Shutdown::Write)
        .expect("half-close");
    let back = reading.join().expect("reader").expect("read the bulk back");
    assert_eq!(back.len(), data.len());
    assert!(back == data, "the bytes came back changed or out of order");
    drop(relay);
}

#[test]
fn nodes_on_one_link_find_each_other_by_mdns_with_no_p2p_flags() {
    let tmp = tempfile::tempdir().expect("tempdir");
    let net = Net::new(1, 3);
    let nodes: Vec<Cairn> = (0..3)
        .map(|i| net.start(i, &tmp.path().join(format!("n{i}")), &["--offline"]))
        .collect();
    let ids: Vec<String> = (0..3).map(|i| peer_id_of(&net, i, &nodes[i])).collect();
    for (i, node) in nodes.iter().enumerate() {
        wait_for(
            Duration::from_secs(30),
            &format!("node {i} sees the other two by mDNS"),
            || {
                let seen = peers_of(&net, i, node);
                ids.iter()
                    .enumerate()
                    .filter(|(j, _)| *j != i)
                    .all(|(_, id)| seen.iter().any(|(p, _)| p == id))
                    .then_some(())
            },
        );
    }
    for node in nodes {
        node.stop();
    }
}

#[test]
fn the_near_peer_serves_most_of_a_large_artifact() {
    let tmp = tempfile::tempdir().expect("tempdir");
    let net = Net::new(2, 3);
    let (near, far, fetcher) = (0, 1, 2);
    let mut registry = Registry::default();
    registry.publish(
        "big-pkg",
        "1.0.0",
        &[],
        &[("data.bin", noise(40 * MIB, 81))],
    );
    let fake = FakeNpm::start(registry);
    let tarball = fake.registry().version("big-pkg", "1.0.0").tarball.clone();
    let upstream = ["--npm-upstream", fake.url.as_str()];

    // Seed on the host, without p2p: a store holding the tarball, and one with only its
    // packument (what the fetching node knows before it asks its peers).
    let seed = tmp.path().join("seed");
    let host = Cairn::start(&seed, &[&["--no-p2p"][..], &upstream].concat());
    let url = format!("{}big-pkg/-/big-pkg-1.0.0.tgz", host.npm());
    assert_eq!(get(&url).body.len(), tarball.len());
    wait_for(Duration::from_secs(30), "the tarball committed", || {
        get(&url).header("x-ipfs-roots")
    });
    host.stop();
    let meta = tmp.path().join("meta");
    let host = Cairn::start(&meta, &[&["--no-p2p"][..], &upstream].concat());
    assert_eq!(get(&format!("{}big-pkg", host.npm())).status, 200);
    host.stop();
    let copy = |from: &Path, to: &Path| {
        run(
            "cp",
            &[
                "-a",
                from.to_str().expect("utf-8"),
                to.to_str().expect("utf-8"),
            ],
        );
        // Each node makes its own identity on first start.
        let _ = std::fs::remove_file(to.join("node.key"));
    };
    let (near_dir, far_dir, fetch_dir) = (
        tmp.path().join("near"),
        tmp.path().join("far"),
        tmp.path().join("fetch"),
    );
    copy(&seed, &near_dir);
    copy(&seed, &far_dir);
    copy(&meta, &fetch_dir);

    let offline = [&["--offline"][..], &upstream].concat();
    // The far node: libp2p on its namespace's loopback only, no mDNS (which would announce
    // that address), and the relay on its bridge address as the one way in.
    let far_p2p = format!("/ip4/127.0.0.1/tcp/{FAR_P2P_PORT}");
    let far_node = net.start(
        far,
        &far_dir,
        &[&offline[..], &["--p2p-listen", &far_p2p, "--no-mdns"]].concat(),
    );
    wait_for(
        Duration::from_secs(10),
        "the far node listens on its loopback",
        || {
            let report = net.json(far, &format!("{}/api/v1/peers", far_node.url));
            let listen = report["listen"].as_array()?.clone();
            listen
                .iter()
                .filter_map(|a| a.as_str())
                .any(|a| a.starts_with(&far_p2p))
                .then_some(())
        },
    );
    let relay_addr = format!("{}:{RELAY_PORT}", net.address(far));
    let relay = Relay::start(
        &["ip", "netns", "exec", &net.nodes[far]],
        &relay_addr,
        &format!("127.0.0.1:{FAR_P2P_PORT}"),
        Duration::from_millis(50),
        &tmp.path().join("relay.log"),
    );
    let far_id = cairn_id(&far_dir);
    assert_eq!(
        far_id,
        peer_id_of(&net, far, &far_node),
        "cairn id of the far node"
    );
    let bootstrap = format!("/ip4/{}/tcp/{RELAY_PORT}/p2p/{far_id}", net.address(far));
    // The near node and the fetcher find each other by mDNS; the fetcher reaches the far node
    // through the relay only.
    let near_node = net.start(near, &near_dir, &offline);
    let fetch_node = net.start(
        fetcher,
        &fetch_dir,
        &[&offline[..], &["--bootstrap", &bootstrap]].concat(),
    );
    let near_id = peer_id_of(&net, near, &near_node);
    let mut last = serde_json::Value::Null;
    let waited = std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| {
        wait_for(
            Duration::from_secs(30),
            "the fetcher sees both holders, with the far one's RTT over 40 ms",
            || {
                last = net.json(fetcher, &format!("{}/api/v1/peers", fetch_node.url));
                let seen = peers_of(&net, fetcher, &fetch_node);
                let near_seen = seen.iter().any(|(p, _)| *p == near_id);
                let far_rtt = seen
                    .iter()
                    .find(|(p, _)| *p == far_id)
                    .and_then(|(_, r)| *r);
                (near_seen && far_rtt.is_some_and(|ms| ms > 40.0)).then_some(())
            },
        )
    }));
    if waited.is_err() {
        panic!(
            "the fetcher never saw the near peer {near_id} and the far peer {far_id} (relayed, \
             RTT over 40 ms); its /api/v1/peers: {last}\n--- fetcher's log\n{}\n--- far \
             node's log\n{}\n--- relay's log\n{}",
            fetch_node.logs(),
            far_node.logs(),
            relay.logs()
        );
    }

    let out = tmp.path().join("fetched.tgz");
    let (status, body) = net.curl(
        fetcher,
        &format!("{}/npm/big-pkg/-/big-pkg-1.0.0.tgz", fetch_node.url),
        Some(&out),
    );
    assert_eq!(
        status,
        200,
        "{}\n--- fetcher's log\n{}",
        String::from_utf8_lossy(&body),
        fetch_node.logs()
    );
    let fetched = std::fs::read(&out).expect("fetched tarball");
    assert_eq!(fetched.len(), tarball.len());
    assert_eq!(
        sha2::Sha256::digest(&fetched),
        sha2::Sha256::digest(&tarball),
        "the fetched bytes"
    );
    let metrics = net.metrics(fetcher, &fetch_node);
    let from = |id: &str| {
        metric_sum(
            &metrics,
            &format!("cairn_peer_received_bytes_total{{peer=\"{id}\"}}"),
        )
    };
    let (from_near, from_far) = (from(&near_id), from(&far_id));
    assert!(
        from_near + from_far >= tarball.len() as f64,
        "the tarball did not come from the peers (near {from_near}, far {from_far}):\n{metrics}"
    );
    assert!(
        from_near >= 2.0 * (from_near + from_far) / 3.0,
        "the near peer sent {from_near} bytes, the far one (50 ms away) {from_far}"
    );
    // Nothing went round the relay: between the far node and the fetcher, the only TCP
    // connections are the relay's (the far node dialling the fetcher's bridge address
    // directly would bypass the delay).
    let fetcher_ip = format!("{}:", net.address(fetcher));
    let links: Vec<_> = tcp_connections(&net.nodes[far])
        .into_iter()
        .filter(|(_, peer)| peer.starts_with(&fetcher_ip))
        .collect();
    assert!(
        links.iter().any(|(local, _)| *local == relay_addr),
        "no connection from the fetcher through the relay ({relay_addr}): {links:?}"
    );
    assert!(
        links.iter().all(|(local, _)| *local == relay_addr),
        "the far node and the fetcher are connected around the relay: {links:?}"
    );
    eprintln!(
        "the near peer sent {from_near} bytes, the far one {from_far}; the far node's \
         connections with the fetcher: {links:?}"
    );
    for node in [fetch_node, far_node, near_node] {
        node.stop();
    }
    drop(relay);
}
