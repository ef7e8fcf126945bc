//! The node's edges under abuse: connection floods and slow clients, a second `serve` on one
//! data directory, cached "not found"s, and HTTP/2 without TLS.

use std::io::{Read, Write};
use std::path::Path;
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use crate::fake_npm::{FakeNpm, Registry};
use crate::support::{Cairn, get, runtime, wait_for};

/// `cairn serve` with its descriptor limit (soft and hard) lowered to `limit`.
fn start_with_descriptors(data: &Path, limit: u32, args: &[&str]) -> Cairn {
    let script = format!("ulimit -n {limit} && exec \"$0\" \"$@\"");
    let mut args = args.to_vec();
    args.push("--no-p2p");
    Cairn::start_wrapped(&["sh", "-c", &script], data, &args)
}

/// Open `n` connections that send part of a request head and then nothing. Connections the
/// node does not accept in time are given up.
fn half_open(addr: &str, n: usize) -> Vec<tokio::net::TcpStream> {
    use tokio::io::AsyncWriteExt;
    runtime().block_on(async {
        let attempts = (0..n).map(|_| async move {
            let connect = tokio::net::TcpStream::connect(addr);
            let mut stream = tokio::time::timeout(Duration::from_secs(3), connect)
                .await
                .ok()?
                .ok()?;
            stream
                .write_all(b"GET /healthz HTTP/1.1\r\nHost: x\r\n")
                .await
                .ok()?;
            Some(stream)
        });
        futures_util::future::join_all(attempts)
            .await
            .into_iter()
            .flatten()
            .collect()
    })
}

#[test]
fn healthz_answers_from_a_fresh_connection_beside_many_half_open_ones() {
    let tmp = tempfile::tempdir().expect("tempdir");
    // 1024 descriptors: more half-open connections than that would starve a node without a
    // connection cap and header timeout for good.
    let cairn = start_with_descriptors(
        &tmp.path().join("data"),
        1024,
        &[
            "--header-timeout",
            "2s",
            "--npm-upstream",
            "http://127.0.0.1:9/",
        ],
    );
    let addr = cairn.url.trim_start_matches("http://").to_owned();
    let held = half_open(&addr, 1100);
    assert!(held.len() > 300, "only {} connections opened", held.len());
    let reply = runtime().block_on(async {
        reqwest::Client::builder()
            .timeout(Duration::from_secs(90))
            .build()
            .expect("client")
            .get(format!("{}/healthz", cairn.url))
            .send()
            .await
    });
    let status = reply.map(|r| r.status().as_u16());
    assert!(
        matches!(status, Ok(200)),
        "/healthz beside {} half-open connections: {status:?}\n{}",
        held.len(),
        cairn.logs()
    );
    drop(held);
    let logs = plain(&cairn.logs());
    assert!(
        logs.contains("max_connections=256"),
        "the cap is not sized from the descriptor limit:\n{logs}"
    );
}

/// `text` without its ANSI colour sequences.
fn plain(text: &str) -> String {
    let mut out = String::with_capacity(text.len());
    let mut chars = text.chars();
    while let Some(c) = chars.next() {
        if c == '\x1b' {
            chars.by_ref().find(|c| c.is_ascii_alphabetic());
        } else {
            out.push(c);
        }
    }
    out
}

/// Whether the node has closed `stream` (EOF or reset), polling for up to `limit` while `tick`
/// runs between polls.
fn closed_within(
    stream: &mut std::net::TcpStream,
    limit: Duration,
    mut tick: impl FnMut(&mut std::net::TcpStream) -> std::io::Result<()>,
) -> (bool, Vec<u8>) {
    stream
        .set_read_timeout(Some(Duration::from_millis(300)))
        .expect("read timeout");
    let deadline = Instant::now() + limit;
    let mut read = Vec::new();
    while Instant::now() < deadline {
        if tick(stream).is_err() {
            return (true, read);
        }
        let mut buf = [0u8; 1024];
        match stream.read(&mut buf) {
            Ok(0) => return (true, read),
            Ok(n) => read.extend_from_slice(&buf[..n]),
            Err(e)
                if matches!(
                    e.kind(),
                    std::io::ErrorKind::WouldBlock | std::io::ErrorKind::TimedOut
                ) => {}
            Err(_) => return (true, read),
        }
    }
    (false, read)
}

#[test]
fn a_connection_sending_headers_slower_than_the_header_timeout_is_closed() {
    let tmp = tempfile::tempdir().expect("tempdir");
    let cairn = Cairn::start(
        &tmp.path().join("data"),
        &[
            "--header-timeout",
            "2s",
            "--idle-timeout",
            "3s",
            "--npm-upstream",
            "http://127.0.0.1:9/",
        ],
    );
    let addr = cairn.url.trim_start_matches("http://").to_owned();

    // Slowloris: a header line every 300 ms, never the blank line that ends the head.
    let mut slow = std::net::TcpStream::connect(&addr).expect("connect");
    slow.write_all(b"GET /healthz HTTP/1.1\r\nHost: x\r\n")
        .expect("write");
    let mut n = 0;
    let (closed, read) = closed_within(&mut slow, Duration::from_secs(20), |s| {
        n += 1;
        write!(s, "X-Slow-{n}: a\r\n")
    });
    assert!(closed, "a trickling request head was held open for 20 s");
    assert!(
        !String::from_utf8_lossy(&read).contains(" 200 "),
        "the trickled request was answered: {}",
        String::from_utf8_lossy(&read)
    );

    // A client that connects and never sends a byte is dropped too.
    let mut silent = std::net::TcpStream::connect(&addr).expect("connect");
    let (closed, _) = closed_within(&mut silent, Duration::from_secs(20), |_| Ok(()));
    assert!(closed, "a silent connection was held open for 20 s");

    // Clients that send their requests in time are served as ever.
    assert_eq!(get(&format!("{}/healthz", cairn.url)).status, 200);
}

#[test]
fn a_second_serve_on_one_data_directory_fails_and_the_first_keeps_its_downloads() {
    let tmp = tempfile::tempdir().expect("tempdir");
    let data = tmp.path().join("data");
    let first = Cairn::start(&data, &["--npm-upstream", "http://127.0.0.1:9/"]);
    let pid = std::fs::read_to_string(data.join("lock")).expect("the lock file names its owner");
    let pid = pid.trim();
    // A download of the first node's, in progress.
    let part = data.join("tmp").join(format!("{pid}-4242.part"));
    std::fs::write(&part, b"half a tarball").expect("temp file");

    let home = tmp.path().join("home");
    std::fs::create_dir_all(&home).expect("home");
    let mut second = Command::new(env!("CARGO_BIN_EXE_cairn"))
        .args(["serve", "--listen", "127.0.0.1:0", "--no-p2p"])
        .arg("--data-dir")
        .arg(&data)
        .args(["--npm-upstream", "http://127.0.0.1:9/"])
        .env("HOME", &home)
        .env("XDG_CONFIG_HOME", home.join(".config"))
        .stdout(Stdio::null())
        .stderr(Stdio::piped())
        .spawn()
        .expect("spawn the second serve");
    let status = wait_for(Duration::from_secs(30), "the second serve to exit", || {
        second.try_wait().expect("wait")
    });
    let mut stderr = String::new();
    second
        .stderr
        .take()
        .expect("stderr")
        .read_to_string(&mut stderr)
        .expect("stderr");
    assert!(!status.success(), "a second serve started: {stderr}");
    assert!(
        stderr.contains(&data.display().to_string()) && stderr.contains(pid),
        "the error names neither the directory nor the owner: {stderr}"
    );
    assert!(
        part.exists(),
        "the second serve deleted a download in progress"
    );

    // Read-only commands still work beside the running node.
    let status = Command::new(env!("CARGO_BIN_EXE_cairn"))
        .args(["status", "--json"])
        .arg("--data-dir")
        .arg(&data)
        .env("HOME", &home)
        .env("XDG_CONFIG_HOME", home.join(".config"))
        .output()
        .expect("cairn status");
    assert!(
        status.status.success(),
        "cairn status beside serve: {}",
        String::from_utf8_lossy(&status.stderr)
    );
    assert_eq!(get(&format!("{}/healthz", first.url)).status, 200);
    first.stop();
}

#[test]
fn a_404_for_a_random_name_is_refetched_after_the_negative_ttl() {
    let tmp = tempfile::tempdir().expect("tempdir");
    let fake = FakeNpm::start(Registry::default());
    let cairn = Cairn::start(
        &tmp.path().join("data"),
        &["--npm-upstream", &fake.url, "--negative-ttl", "2s"],
    );
    let url = format!("{}npm-no-such-package-7f3a", cairn.npm());
    assert_eq!(get(&url).status, 404);
    assert_eq!(get(&url).status, 404);
    assert_eq!(
        fake.hits("npm-no-such-package-7f3a"),
        1,
        "a fresh 404 is served from the cache"
    );
    std::thread::sleep(Duration::from_millis(2500));
    assert_eq!(get(&url).status, 404);
    assert_eq!(
        fake.hits("npm-no-such-package-7f3a"),
        2,
        "an expired 404 is asked again"
    );
}

#[test]
fn http2_prior_knowledge_gets_healthz_and_npm_metadata() {
    let tmp = tempfile::tempdir().expect("tempdir");
    let mut registry = Registry::default();
    registry.publish("h2-pkg", "1.0.0", &[], &[]);
    let fake = FakeNpm::start(registry);
    let cairn = Cairn::start(&tmp.path().join("data"), &["--npm-upstream", &fake.url]);
    let curl = |path: &str| {
        let output = Command::new("curl")
            .args([
                "-sS",
                "--http2-prior-knowledge",
                "--max-time",
                "30",
                "-w",
                "\n%{http_code} %{http_version}",
            ])
            .arg(format!("{}{path}", cairn.url))
            .output()
            .expect("curl");
        let text = String::from_utf8_lossy(&output.stdout).into_owned();
        let (body, status) = text.rsplit_once('\n').unwrap_or(("", &text));
        (status.to_owned(), body.to_owned())
    };
    let (status, body) = curl("/healthz");
    assert_eq!(status, "200 2", "{body}");
    let (status, body) = curl("/npm/h2-pkg");
    assert_eq!(status, "200 2", "{body}");
    let doc: serde_json::Value = serde_json::from_str(&body).expect("a packument");
    let tarball = doc["versions"]["1.0.0"]["dist"]["tarball"]
        .as_str()
        .expect("a tarball URL");
    assert!(
        tarball.starts_with(&format!("{}/npm/", cairn.url)),
        "{tarball}"
    );
}
