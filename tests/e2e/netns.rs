//! `cairn serve` in network namespaces (root, iproute2): nodes on a private bridge find each
//! other by mDNS with no p2p flag at all, and a node fetching an artifact two peers hold takes
//! most of it from the near one when `tc netem` puts 50 ms on the other's link.
//!
//! Layout, all of it made by the test and deleted by [`Net`]'s `Drop` (even when a test
//! fails): a "switch" namespace holding a bridge, and one namespace per node joined to it by a
//! veth pair, with an address of 10.77.N.0/24 (N per test). The host's own namespace gets
//! nothing: no address, no route, so the traffic stays among the namespaces and the host's mDNS
//! (other tests' nodes) never sees them. The test reaches each node with `ip netns exec NS
//! curl`. The data dirs are on the shared file system, which the namespaces do not split.
//!
//! A missing `ip netns`, `tc netem` or `curl` is a failure, not a skip.

use std::path::Path;
use std::process::{Command, Output};
use std::time::Duration;

use sha2::Digest as _;

use crate::fake_npm::{FakeNpm, Registry, noise};
use crate::support::{Cairn, assert_success, get, metric_sum, wait_for};

const MIB: usize = 1 << 20;

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
    // 50 ms on everything the far peer sends (first: a kernel without netem fails fast).
    let netem = format!(
        "netns exec {} tc qdisc add dev eth0 root netem delay 50ms",
        net.nodes[far]
    );
    run("ip", &netem.split(' ').collect::<Vec<_>>());
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
    let near_node = net.start(near, &near_dir, &offline);
    let far_node = net.start(far, &far_dir, &offline);
    let fetch_node = net.start(fetcher, &fetch_dir, &offline);
    let near_id = peer_id_of(&net, near, &near_node);
    let far_id = peer_id_of(&net, far, &far_node);
    wait_for(
        Duration::from_secs(30),
        "the fetcher sees both holders, with the far one's RTT over 40 ms",
        || {
            let seen = peers_of(&net, fetcher, &fetch_node);
            let near_seen = seen.iter().any(|(p, _)| *p == near_id);
            let far_rtt = seen
                .iter()
                .find(|(p, _)| *p == far_id)
                .and_then(|(_, r)| *r);
            (near_seen && far_rtt.is_some_and(|ms| ms > 40.0)).then_some(())
        },
    );

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
    for node in [fetch_node, far_node, near_node] {
        node.stop();
    }
}
