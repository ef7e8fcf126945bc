//! The upstream side under attack: the npm passthrough relays only the exact endpoints and
//! methods npm uses, never with credentials; a redirect off the allow-list is refused for
//! metadata, artifacts and passthrough; an upstream URL's user name and password never reach
//! the index, an export, a peer or the log.
//!
//! The fake upstream here records every request (method, raw target, `Authorization`) and wants
//! the configured credentials on the documents and files Cairn fetches; a second fake stands
//! for an internal host that nothing may reach.

use std::io::{Read, Write};
use std::path::Path;
use std::process::Command;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use axum::body::Body;
use axum::response::{IntoResponse, Response};
use base64::Engine as _;
use sha2::Digest as _;

use crate::fake_upstream::{bind_local, serve_fake};
use crate::support::{Cairn, assert_refused_and_nothing_stored, get, swarm_key};

const USER: &str = "cairnuser";
const PASSWORD: &str = "s3cret-pw";

/// One request a fake saw.
#[derive(Clone, Debug)]
struct Seen {
    method: String,
    target: String,
    authorization: Option<String>,
}

type Log = Arc<Mutex<Vec<Seen>>>;

/// A running fake: its URL (no credentials) and what it saw.
struct Fake {
    url: String,
    seen: Log,
}

impl Fake {
    fn seen(&self) -> Vec<Seen> {
        self.seen.lock().expect("seen").clone()
    }

    /// The upstream URL with the test's credentials in it.
    fn with_credentials(&self) -> String {
        self.url
            .replacen("http://", &format!("http://{USER}:{PASSWORD}@"), 1)
    }
}

/// The `Authorization` value the credentials make.
fn basic() -> String {
    let token = base64::engine::general_purpose::STANDARD.encode(format!("{USER}:{PASSWORD}"));
    format!("Basic {token}")
}

/// Serve `answer` on `listener`, recording every request.
fn serve(
    listener: tokio::net::TcpListener,
    answer: impl Fn(&Seen) -> Response + Clone + Send + Sync + 'static,
) -> Fake {
    let url = format!("http://{}/", listener.local_addr().expect("addr"));
    let seen = Log::default();
    let log = seen.clone();
    let app = axum::Router::new().fallback(move |request: http::Request<Body>| {
        let (log, answer) = (log.clone(), answer.clone());
        async move {
            let seen = Seen {
                method: request.method().to_string(),
                target: request.uri().to_string(),
                authorization: request
                    .headers()
                    .get(http::header::AUTHORIZATION)
                    .and_then(|v| v.to_str().ok())
                    .map(str::to_owned),
            };
            log.lock().expect("seen").push(seen.clone());
            answer(&seen)
        }
    });
    serve_fake(listener, app);
    Fake { url, seen }
}

/// The internal host: answers everything, and must see nothing.
fn internal() -> Fake {
    serve(bind_local(), |_| "an internal document".into_response())
}

fn tarball(name: &str) -> bytes::Bytes {
    crate::fake_npm::tarball(name, "1.0.0", &[], &[])
}

fn packument(url: &str, name: &str) -> String {
    let tgz = tarball(name);
    let integrity = format!(
        "sha512-{}",
        base64::engine::general_purpose::STANDARD.encode(sha2::Sha512::digest(&tgz))
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
                "tarball": format!("{url}npm/{name}/-/{name}-1.0.0.tgz"),
            },
        }},
    })
    .to_string()
}

fn redirect(to: String) -> Response {
    (http::StatusCode::FOUND, [(http::header::LOCATION, to)]).into_response()
}

/// The upstream: `pkg` (packument and tarball, credentials required), `hop` (a packument that
/// redirects to `internal`), `hopfile` (a packument whose tarball redirects there), the audit
/// endpoints (`audits/quick` redirects there).
fn upstream(internal: &Fake) -> Fake {
    let listener = bind_local();
    let own = format!("http://{}/", listener.local_addr().expect("addr"));
    let inside = internal.url.clone();
    let answer = move |seen: &Seen| -> Response {
        let path = seen.target.split('?').next().unwrap_or_default();
        let authorised = seen.authorization.as_deref() == Some(basic().as_str());
        match (seen.method.as_str(), path) {
            ("GET", "/npm/pkg" | "/npm/hopfile") if !authorised => {
                (http::StatusCode::UNAUTHORIZED, "credentials required").into_response()
            }
            ("GET", "/npm/pkg") => packument(&own, "pkg").into_response(),
            ("GET", "/npm/hopfile") => packument(&own, "hopfile").into_response(),
            ("GET", "/npm/pkg/-/pkg-1.0.0.tgz") if authorised => tarball("pkg").into_response(),
            ("GET", "/npm/hop") => redirect(format!("{inside}npm/hop")),
            ("GET", "/npm/hopfile/-/hopfile-1.0.0.tgz") => {
                redirect(format!("{inside}hopfile-1.0.0.tgz"))
            }
            ("POST", "/npm/-/npm/v1/security/audits/quick") => (
                http::StatusCode::TEMPORARY_REDIRECT,
                [(http::header::LOCATION, format!("{inside}audit"))],
            )
                .into_response(),
            ("POST", "/npm/-/npm/v1/security/advisories/bulk") => "{}".into_response(),
            _ => (http::StatusCode::NOT_FOUND, "no such thing").into_response(),
        }
    };
    serve(listener, answer)
}

/// An internal host, an upstream in front of it, and Cairn fronting the upstream with the
/// credentials in its URL.
fn setup(dir: &Path) -> (Fake, Fake, Cairn) {
    let inside = internal();
    let up = upstream(&inside);
    let cairn = Cairn::start(
        &dir.join("data"),
        &["--npm-upstream", &format!("{}npm/", up.with_credentials())],
    );
    (inside, up, cairn)
}

/// Send `method target` verbatim (no URL normalisation) with `headers` and `body`; the status.
fn raw(base: &str, method: &str, target: &str, headers: &[(&str, &str)], body: &str) -> u16 {
    let addr = base.trim_start_matches("http://");
    let mut stream = std::net::TcpStream::connect(addr).expect("connect");
    stream
        .set_read_timeout(Some(Duration::from_secs(30)))
        .expect("timeout");
    let mut request = format!(
        "{method} {target} HTTP/1.1\r\nHost: {addr}\r\nConnection: close\r\nContent-Type: application/json\r\nContent-Length: {}\r\n",
        body.len()
    );
    for (name, value) in headers {
        request.push_str(&format!("{name}: {value}\r\n"));
    }
    request.push_str("\r\n");
    request.push_str(body);
    stream.write_all(request.as_bytes()).expect("write");
    let mut answer = String::new();
    let _ = stream.read_to_string(&mut answer);
    answer
        .split_whitespace()
        .nth(1)
        .and_then(|s| s.parse().ok())
        .unwrap_or_else(|| panic!("no status for {method} {target}: {answer:?}"))
}

/// Nothing but `allowed` (method, target) pairs reached the fake.
fn assert_only(fake: &Fake, allowed: &[(&str, &str)], what: &str) {
    for seen in fake.seen() {
        assert!(
            allowed
                .iter()
                .any(|(m, t)| *m == seen.method && *t == seen.target),
            "{what}: upstream saw {seen:?}"
        );
    }
}

#[test]
fn passthrough_refuses_other_methods() {
    let tmp = tempfile::tempdir().expect("tempdir");
    let (_inside, up, cairn) = setup(tmp.path());
    for (method, path) in [
        ("PUT", "-/npm/v1/security/advisories/bulk"),
        ("DELETE", "-/npm/v1/security/advisories/bulk"),
        ("GET", "-/npm/v1/security/audits"),
        ("POST", "-/npm/v1/keys"),
        ("PUT", "-/npm/v1/keys"),
        ("DELETE", "-/v1/search"),
        ("PUT", "-/npm/v1/security/anything"),
        ("PUT", "pkg"),
        ("DELETE", "pkg/-/pkg-1.0.0.tgz/-rev/1-abc"),
    ] {
        let status = raw(&cairn.url, method, &format!("/npm/{path}"), &[], "{}");
        assert!(
            (400..500).contains(&status),
            "{method} /npm/{path}: {status}"
        );
    }
    assert_only(&up, &[], "other methods");
    // The endpoint itself, with its own method, still works.
    let status = raw(
        &cairn.url,
        "POST",
        "/npm/-/npm/v1/security/advisories/bulk",
        &[],
        "{}",
    );
    assert_eq!(status, 200);
    assert_only(
        &up,
        &[("POST", "/npm/-/npm/v1/security/advisories/bulk")],
        "the bulk advisory",
    );
}

#[test]
fn passthrough_refuses_dot_segments() {
    let tmp = tempfile::tempdir().expect("tempdir");
    let (_inside, up, cairn) = setup(tmp.path());
    for dots in ["..", "%2e%2e", "%2E%2E", ".%2e"] {
        for method in ["PUT", "DELETE", "POST", "GET"] {
            let target = format!("/npm/-/npm/v1/security/{dots}/{dots}/{dots}/{dots}/pkg");
            let status = raw(&cairn.url, method, &target, &[], "{}");
            assert!((400..500).contains(&status), "{method} {target}: {status}");
            let target = format!("/npm/-/npm/v1/security/advisories/bulk/{dots}");
            let status = raw(&cairn.url, method, &target, &[], "{}");
            assert!((400..500).contains(&status), "{method} {target}: {status}");
        }
    }
    assert_only(&up, &[], "dot segments");
}

#[test]
fn passthrough_refuses_encoded_slashes() {
    let tmp = tempfile::tempdir().expect("tempdir");
    let (_inside, up, cairn) = setup(tmp.path());
    for target in [
        "/npm/-/npm/v1/security%2fadvisories%2fbulk",
        "/npm/-/npm/v1/security/advisories%2Fbulk",
        "/npm/-/npm/v1/security/advisories%2f..%2f..%2f..%2f..%2fpkg",
        "/npm/-/npm/v1/security/advisories%5c..%5cpkg",
    ] {
        for method in ["PUT", "POST"] {
            let status = raw(&cairn.url, method, target, &[], "{}");
            assert!((400..500).contains(&status), "{method} {target}: {status}");
        }
    }
    assert_only(&up, &[], "encoded slashes");
}

#[test]
fn passthrough_refuses_the_proxy_form() {
    let tmp = tempfile::tempdir().expect("tempdir");
    let (_inside, up, cairn) = setup(tmp.path());
    for (method, path) in [
        ("POST", "-/npm/v1/security/advisories/bulk"),
        ("PUT", "-/npm/v1/security/../../../../pkg"),
        (
            "DELETE",
            "-/npm/v1/security/%2e%2e/%2e%2e/%2e%2e/%2e%2e/pkg",
        ),
    ] {
        let target = format!("{}npm/{path}", up.url);
        let status = raw(&cairn.url, method, &target, &[], "{}");
        assert!((400..500).contains(&status), "{method} {target}: {status}");
    }
    assert_only(&up, &[], "proxy form");
}

#[test]
fn passthrough_never_forwards_authorization() {
    let tmp = tempfile::tempdir().expect("tempdir");
    let (_inside, up, cairn) = setup(tmp.path());
    let status = raw(
        &cairn.url,
        "POST",
        "/npm/-/npm/v1/security/advisories/bulk",
        &[("Authorization", "Bearer client-token")],
        "{\"pkg\":[\"1.0.0\"]}",
    );
    assert_eq!(status, 200);
    // Cairn's own request for a document does carry the upstream's credentials.
    let reply = get(&format!("{}/npm/pkg", cairn.url));
    assert_eq!(reply.status, 200, "{}", reply.text);
    let seen = up.seen();
    let audit = seen
        .iter()
        .find(|s| s.target == "/npm/-/npm/v1/security/advisories/bulk")
        .expect("the audit reached upstream");
    assert_eq!(
        audit.authorization, None,
        "the passthrough carried credentials"
    );
    let packument = seen
        .iter()
        .find(|s| s.target == "/npm/pkg")
        .expect("the packument was fetched");
    assert_eq!(packument.authorization.as_deref(), Some(basic().as_str()));
}

#[test]
fn redirects_off_the_allow_list_are_refused_for_metadata_artifacts_and_passthrough() {
    let tmp = tempfile::tempdir().expect("tempdir");
    let (inside, _up, cairn) = setup(tmp.path());
    let reply = get(&format!("{}/npm/hop", cairn.url));
    assert_eq!(reply.status, 502, "metadata: {}", reply.text);
    assert!(reply.text.contains("redirected"), "{}", reply.text);
    let reply = get(&format!("{}/npm/hopfile", cairn.url));
    assert_eq!(reply.status, 200, "{}", reply.text);
    let reply = get(&format!("{}/npm/hopfile/-/hopfile-1.0.0.tgz", cairn.url));
    assert_refused_and_nothing_stored(
        &reply,
        502,
        &tmp.path().join("data"),
        "npm",
        "hopfile/-/hopfile-1.0.0.tgz",
        &[&tarball("hopfile")],
    );
    let status = raw(
        &cairn.url,
        "POST",
        "/npm/-/npm/v1/security/audits/quick",
        &[],
        "{}",
    );
    assert_eq!(status, 502, "passthrough");
    assert!(
        inside.seen().is_empty(),
        "the internal host was reached: {:?}",
        inside.seen()
    );
}

/// Every file under `dir`, read whole, with its path.
fn files(dir: &Path) -> Vec<(String, Vec<u8>)> {
    let mut out = Vec::new();
    let mut stack = vec![dir.to_path_buf()];
    while let Some(dir) = stack.pop() {
        let Ok(entries) = std::fs::read_dir(&dir) else {
            continue;
        };
        for entry in entries.flatten() {
            let path = entry.path();
            if path.is_dir() {
                stack.push(path);
            } else if let Ok(bytes) = std::fs::read(&path) {
                out.push((path.display().to_string(), bytes));
            }
        }
    }
    out
}

/// None of `blobs` holds the user name, the password or the header they make.
fn assert_no_credentials(blobs: &[(String, Vec<u8>)]) {
    let token = basic();
    let token = token.trim_start_matches("Basic ");
    for (name, bytes) in blobs {
        for secret in [USER, PASSWORD, token] {
            assert!(
                !bytes.windows(secret.len()).any(|w| w == secret.as_bytes()),
                "{name} holds {secret:?}"
            );
        }
    }
}

#[test]
fn upstream_credentials_never_reach_the_index_an_export_or_the_log() {
    let tmp = tempfile::tempdir().expect("tempdir");
    let (_inside, up, cairn) = setup(tmp.path());
    let reply = get(&format!("{}/npm/pkg", cairn.url));
    assert_eq!(reply.status, 200, "{}", reply.text);
    let reply = get(&format!("{}/npm/pkg/-/pkg-1.0.0.tgz", cairn.url));
    assert_eq!(reply.status, 200, "{}", reply.text);
    assert_eq!(reply.body, tarball("pkg"));
    let status = get(&format!("{}/api/v1/status", cairn.url));
    assert!(status.text.contains("****"), "{}", status.text);
    assert_no_credentials(&[("/api/v1/status".into(), status.body.to_vec())]);
    assert!(
        up.seen()
            .iter()
            .all(|s| s.authorization.as_deref() == Some(basic().as_str())),
        "Cairn's own requests carry the credentials: {:?}",
        up.seen()
    );
    let log = cairn.logs();
    cairn.stop();
    assert!(
        log.contains("****"),
        "the start-up log names the upstream:\n{log}"
    );
    assert_no_credentials(&[("log".into(), log.into_bytes())]);
    let car = tmp.path().join("all.car");
    let data = tmp.path().join("data");
    let export = Command::new(env!("CARGO_BIN_EXE_cairn"))
        .args(["export", "--all", "-o"])
        .arg(&car)
        .arg("--data-dir")
        .arg(&data)
        .env("XDG_CONFIG_HOME", "/nonexistent")
        .env("CAIRN_LOG", "warn")
        .output()
        .expect("cairn export");
    assert!(
        export.status.success(),
        "export failed: {}",
        String::from_utf8_lossy(&export.stderr)
    );
    let car_bytes = std::fs::read(&car).expect("the CAR");
    assert!(
        car_bytes.windows(4).any(|w| w == b"/npm"),
        "the CAR names the upstream"
    );
    assert_no_credentials(&[("the CAR".into(), car_bytes)]);
    assert_no_credentials(&files(&data));
}

#[test]
fn peers_never_receive_upstream_credentials() {
    let tmp = tempfile::tempdir().expect("tempdir");
    let inside = internal();
    let up = upstream(&inside);
    let key = swarm_key(&tmp.path().join("swarm.key"), 0x42);
    let key = key.to_str().expect("utf-8 path");
    let with_credentials = format!("{}npm/", up.with_credentials());
    let a = Cairn::start(
        &tmp.path().join("a"),
        &[
            "--p2p-listen",
            "/ip4/127.0.0.1/tcp/0",
            "--no-mdns",
            "--swarm-key",
            key,
            "--npm-upstream",
            &with_credentials,
        ],
    );
    let reply = get(&format!("{}/npm/pkg", a.url));
    assert_eq!(reply.status, 200, "{}", reply.text);
    let plain = format!("{}npm/", up.url);
    let a_address = a.p2p_address();
    let b = Cairn::start(
        &tmp.path().join("b"),
        &[
            "--p2p-listen",
            "/ip4/127.0.0.1/tcp/0",
            "--no-mdns",
            "--swarm-key",
            key,
            "--bootstrap",
            &a_address,
            "--offline",
            "--npm-upstream",
            &plain,
        ],
    );
    b.wait_connected(&[&a.peer_id()], Duration::from_secs(30));
    let reply = get(&format!("{}/npm/pkg", b.url));
    assert_eq!(
        reply.status, 200,
        "B got the packument from A: {}",
        reply.text
    );
    assert!(
        b.logs().contains("metadata taken from a peer"),
        "{}",
        b.logs()
    );
    let (a_log, b_log) = (a.logs(), b.logs());
    b.stop();
    a.stop();
    assert_no_credentials(&files(&tmp.path().join("b")));
    assert_no_credentials(&files(&tmp.path().join("a")));
    assert_no_credentials(&[("A's log".into(), a_log.into_bytes())]);
    assert_no_credentials(&[("B's log".into(), b_log.into_bytes())]);
}
