//! `cairn purge` with the real npm: a package purged while the node runs is neither served nor
//! held (nothing of it under `blobs/`), and the next install fetches its packument and tarball
//! from upstream again while the other packages stay cached. And the abuse: a purge sent to the
//! node from a non-loopback address of this machine is refused with 403, and drops nothing.

use std::io::{Read, Write};
use std::net::TcpStream;
use std::path::Path;
use std::time::Duration;

use crate::bundle::cairn;
use crate::fake_npm::{FakeNpm, Registry, noise};
use crate::support::{Cairn, ClientEnv, assert_success, files_under, get, project};

fn registry() -> Registry {
    let mut r = Registry::default();
    r.publish(
        "left-pad",
        "1.3.0",
        &[],
        &[("data.bin", noise(300 << 10, 31))],
    );
    r.publish("other", "1.0.0", &[], &[("data.bin", noise(300 << 10, 33))]);
    r
}

const LEFT_PAD: &str = "left-pad/-/left-pad-1.3.0.tgz";
const OTHER: &str = "other/-/other-1.0.0.tgz";

/// `npm install` of a project on both packages, in a fresh client (no npm cache).
fn install(tmp: &Path, node: &Cairn, name: &str) {
    let env = ClientEnv::new(&tmp.join(format!("client-{name}")), &node.npm());
    let dir = project(
        &tmp.join(name),
        serde_json::json!({ "left-pad": "1.3.0", "other": "1.0.0" }),
    );
    assert_success(
        &env.run("npm", &["install"], &dir),
        &format!("npm install ({name})"),
    );
}

/// True when some file under `data`'s `blobs/` holds exactly `bytes`.
fn holds(data: &Path, bytes: &[u8]) -> bool {
    files_under(&data.join("blobs"))
        .iter()
        .any(|file| std::fs::read(file).is_ok_and(|held| held == bytes))
}

/// `HOST:PORT` of a node URL (`http://HOST:PORT`).
fn address(node: &Cairn) -> String {
    node.url.trim_start_matches("http://").to_owned()
}

#[test]
fn a_purge_while_the_node_runs_drops_the_package_and_npm_fetches_it_from_upstream_again() {
    let tmp = tempfile::tempdir().expect("tempdir");
    let fake = FakeNpm::start(registry());
    let data = tmp.path().join("data");
    let node = Cairn::start(&data, &["--npm-upstream", &fake.url]);
    install(tmp.path(), &node, "first");
    let tarball = fake.registry().version("left-pad", "1.3.0").tarball.clone();
    assert!(holds(&data, &tarball), "the tarball is cached");
    assert_eq!((fake.hits("left-pad"), fake.hits(LEFT_PAD)), (1, 1));

    let purged = cairn(&[
        "purge",
        "npm:left-pad",
        "--listen",
        &address(&node),
        "--data-dir",
        data.to_str().expect("path"),
    ]);
    assert_success(&purged, "cairn purge npm:left-pad");
    let printed = String::from_utf8_lossy(&purged.stdout);
    assert!(
        printed.contains("npm:left-pad: dropped 1 document, 1 file") && printed.contains(LEFT_PAD),
        "{printed}"
    );
    assert!(
        node.logs().contains("purged"),
        "the running node did the purge: {}",
        node.logs()
    );
    assert!(!holds(&data, &tarball), "nothing of left-pad under blobs/");

    // A new machine installs the same project: left-pad comes from upstream again (through the
    // node, which keeps it again), `other` from the cache.
    install(tmp.path(), &node, "second");
    assert_eq!(fake.hits("left-pad"), 2, "the packument was fetched again");
    assert_eq!(fake.hits(LEFT_PAD), 2, "the tarball was fetched again");
    assert_eq!((fake.hits("other"), fake.hits(OTHER)), (1, 1));
    assert!(holds(&data, &tarball));
}

#[test]
fn cairn_purge_refuses_a_malformed_spec_or_an_unknown_ecosystem_and_drops_nothing() {
    let tmp = tempfile::tempdir().expect("tempdir");
    let fake = FakeNpm::start(registry());
    let data = tmp.path().join("data");
    let node = Cairn::start(&data, &["--npm-upstream", &fake.url]);
    install(tmp.path(), &node, "first");
    for (spec, named) in [("left-pad", "\"left-pad\""), ("gems:rails", "\"gems\"")] {
        // The good spec first: nothing is dropped when any spec is bad.
        let out = cairn(&["purge", "npm:left-pad", spec, "--listen", &address(&node)]);
        assert!(!out.status.success(), "{spec} was accepted");
        let stderr = String::from_utf8_lossy(&out.stderr);
        assert!(stderr.contains(named), "{spec}: {stderr}");
    }
    let tarball = fake.registry().version("left-pad", "1.3.0").tarball.clone();
    assert!(holds(&data, &tarball));
    let reply = get(&format!("{}{LEFT_PAD}", node.npm()));
    assert_eq!(reply.status, 200);
    assert_eq!(fake.hits(LEFT_PAD), 1);
}

/// An address of this machine that is not loopback (a test machine has one: a failure, not a
/// skip, when it has none).
pub(crate) fn non_loopback_address() -> String {
    let output = std::process::Command::new("ip")
        .args(["-4", "-o", "addr", "show", "scope", "global"])
        .output()
        .expect("ip (iproute2 must be installed)");
    let text = String::from_utf8_lossy(&output.stdout);
    text.split_whitespace()
        .skip_while(|word| *word != "inet")
        .nth(1)
        .and_then(|cidr| cidr.split('/').next())
        .map(str::to_owned)
        .unwrap_or_else(|| panic!("this machine has no non-loopback IPv4 address: {text}"))
}

/// A raw `DELETE path` to `to` (`HOST:PORT`), with `Host: to`; the status and body.
fn delete(to: &str, path: &str) -> (u16, String) {
    raw_request("DELETE", to, path)
}

/// A raw `METHOD path` to `to` (`HOST:PORT`), with `Host: to`; the status and body.
pub(crate) fn raw_request(method: &str, to: &str, path: &str) -> (u16, String) {
    let mut stream = TcpStream::connect(to).expect("connect");
    stream
        .set_read_timeout(Some(Duration::from_secs(30)))
        .expect("timeout");
    write!(
        stream,
        "{method} {path} HTTP/1.1\r\nHost: {to}\r\nContent-Length: 0\r\nConnection: close\r\n\r\n"
    )
    .expect("send");
    let mut answer = String::new();
    stream.read_to_string(&mut answer).expect("read");
    let status = answer
        .split_whitespace()
        .nth(1)
        .and_then(|s| s.parse().ok())
        .unwrap_or_else(|| panic!("not an HTTP answer: {answer}"));
    let body = answer
        .split_once("\r\n\r\n")
        .map(|(_, body)| body.to_owned())
        .unwrap_or_default();
    (status, body)
}

#[test]
fn a_purge_from_a_non_loopback_address_is_refused_with_403_and_drops_nothing() {
    let tmp = tempfile::tempdir().expect("tempdir");
    let fake = FakeNpm::start(registry());
    let data = tmp.path().join("data");
    let node = Cairn::start(
        &data,
        &["--npm-upstream", &fake.url, "--listen", "0.0.0.0:0"],
    );
    install(tmp.path(), &node, "first");
    let port = node.url.rsplit(':').next().expect("a port").to_owned();
    let outside = format!("{}:{port}", non_loopback_address());

    let (status, body) = delete(&outside, "/api/v1/purge/npm/left-pad");
    assert_eq!(status, 403, "{body}");
    let error: serde_json::Value = serde_json::from_str(&body).expect("a JSON error");
    assert!(
        error["error"]
            .as_str()
            .is_some_and(|e| e.contains("loopback")),
        "{body}"
    );
    let tarball = fake.registry().version("left-pad", "1.3.0").tarball.clone();
    assert!(holds(&data, &tarball), "nothing was purged");

    // The same request from loopback is answered.
    let (status, body) = delete(&format!("127.0.0.1:{port}"), "/api/v1/purge/npm/left-pad");
    assert_eq!(status, 200, "{body}");
    assert!(!holds(&data, &tarball));
}
