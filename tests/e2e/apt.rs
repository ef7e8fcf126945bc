//! The real apt-get through the `cairn` binary, in front of a fake archive signed with a
//! throwaway key: update and install (download), offline, by-hash, proxy mode, and what a
//! tampered `.deb` or a tampered or wrongly signed `InRelease` gets; apt presenting its
//! credentials to a node requiring tokens (`auth.conf`, a proxy URL's); and apt through the
//! swarm, where a peer's wrongly signed `InRelease` is refused and another peer's good copy
//! taken; and an index the size of Debian's, which apt gets before the node has indexed it.

use std::path::Path;
use std::time::Duration;

use sha2::Digest as _;

use crate::fake_apt::{self, AptClient, Archive, FakeArchive, assert_no_warnings};
use crate::support::{Cairn, assert_success, get, get_with, wait_for};

fn setup(dir: &Path) -> (Archive, FakeArchive) {
    let archive = fake_apt::build_archive(&dir.join("archive"));
    let fake = fake_apt::serve(&archive);
    (archive, fake)
}

fn start(dir: &Path, name: &str, archive: &Archive, fake: &FakeArchive, extra: &[&str]) -> Cairn {
    let upstream = format!("test={}", fake.url);
    let keyring = format!("test={}", archive.keyring.display());
    let mut args = vec![
        "--apt-upstream",
        upstream.as_str(),
        "--apt-keyring",
        keyring.as_str(),
    ];
    args.extend_from_slice(extra);
    Cairn::start(&dir.join(name), &args)
}

fn client(dir: &Path, archive: &Archive, uri: &str) -> AptClient {
    let line = format!(
        "deb [signed-by={}] {uri} {} {}",
        archive.keyring.display(),
        fake_apt::SUITE,
        fake_apt::COMPONENT
    );
    AptClient::new(dir, &line)
}

/// `apt-get update` then a download of `cairn-hello` and its dependencies; checks every `.deb`.
fn update_and_install(apt: &AptClient, archive: &Archive, what: &str, extra: &[&str]) {
    let mut args = extra.to_vec();
    args.push("update");
    let out = apt.run(&args);
    assert_success(&out, &format!("{what}: apt-get update"));
    assert_no_warnings(&out, &format!("{what}: apt-get update"));
    let mut args = extra.to_vec();
    args.extend(["install", "--download-only", "-y", "cairn-hello"]);
    let out = apt.run(&args);
    assert_success(&out, &format!("{what}: apt-get install"));
    assert_no_warnings(&out, &format!("{what}: apt-get install"));
    for name in ["cairn-hello", "libcairn-test++1", "cairn-data"] {
        let deb = archive.deb(name);
        let file = deb.filename.rsplit('/').next().expect("file name");
        let bytes = std::fs::read(apt.archives_dir().join(file))
            .unwrap_or_else(|e| panic!("{what}: {file} not downloaded: {e}"));
        assert_eq!(
            hex::encode(sha2::Sha256::digest(&bytes)),
            deb.sha256,
            "{what}: {file}"
        );
    }
}

#[test]
fn apt_update_and_install_through_cairn_then_offline() {
    let dir = tempfile::tempdir().expect("tempdir");
    let (archive, fake) = setup(dir.path());
    let cairn = start(dir.path(), "data", &archive, &fake, &[]);
    let uri = format!("{}/apt/test", cairn.url);
    update_and_install(
        &client(&dir.path().join("c1"), &archive, &uri),
        &archive,
        "first",
        &[],
    );

    // apt asked for the index by hash, and the pool file with `+` and `~` encoded; Cairn
    // fetched each pool file once.
    let by_hash = fake
        .requests()
        .iter()
        .any(|r| r.contains("/by-hash/SHA256/"));
    assert!(
        by_hash,
        "no by-hash request upstream: {:?}",
        fake.requests()
    );
    let lib = archive.deb("libcairn-test++1");
    assert_eq!(fake.hits.get(&format!("debian/{}", lib.filename)), 1);

    // A second machine: no pool file is fetched upstream again.
    let before = fake.hits.total();
    update_and_install(
        &client(&dir.path().join("c2"), &archive, &uri),
        &archive,
        "second",
        &[],
    );
    let pool_hits: usize = archive
        .packages
        .iter()
        .map(|d| fake.hits.get(&format!("debian/{}", d.filename)))
        .sum();
    assert_eq!(pool_hits, 3, "pool files fetched again");
    assert!(
        fake.hits.total() - before <= 2,
        "second machine went upstream: {:?}",
        fake.requests()
    );

    // Index by hash from Cairn, byte for byte; a hash the Release does not list is a 404.
    let packages_xz = fake.read(&format!("{}/Packages.xz", archive.binary_dir()));
    let hex = hex::encode(sha2::Sha256::digest(&packages_xz));
    let reply = get(&format!(
        "{uri}/{}/by-hash/SHA256/{hex}",
        archive.binary_dir()
    ));
    assert_eq!(reply.status, 200);
    assert_eq!(reply.body.as_ref(), packages_xz.as_slice());
    let missing = "00".repeat(32);
    let reply = get(&format!(
        "{uri}/{}/by-hash/SHA256/{missing}",
        archive.binary_dir()
    ));
    assert_eq!(reply.status, 404, "{}", reply.text);
    // apt revalidates InRelease by date only.
    let first = get(&format!("{uri}/dists/stable/InRelease"));
    let last_modified = first.header("last-modified").expect("Last-Modified");
    let again = get_with(
        &format!("{uri}/dists/stable/InRelease"),
        &[("If-Modified-Since", last_modified.as_str())],
    );
    assert_eq!(again.status, 304);
    cairn.stop();

    // Offline, upstream down, a fresh machine: update and install still work.
    fake.set_down(true);
    let offline = start(dir.path(), "data", &archive, &fake, &["--offline"]);
    let uri = format!("{}/apt/test", offline.url);
    update_and_install(
        &client(&dir.path().join("c3"), &archive, &uri),
        &archive,
        "offline",
        &[],
    );
    offline.stop();
}

/// A `Packages` the size of Debian's: apt gets it as soon as it is verified, asks for the
/// `.deb`s it names while the node is still indexing the listing (those requests wait for it),
/// and the whole listing is indexed, in parts, with nothing of it lost.
#[test]
fn apt_installs_from_a_debian_sized_index_the_node_is_still_reading() {
    let dir = tempfile::tempdir().expect("tempdir");
    let archive = fake_apt::build_archive_sized_like_debian(&dir.path().join("archive"));
    let fake = fake_apt::serve(&archive);
    let cairn = start(dir.path(), "data", &archive, &fake, &[]);
    let uri = format!("{}/apt/test", cairn.url);
    update_and_install(
        &client(&dir.path().join("c1"), &archive, &uri),
        &archive,
        "a real-sized index",
        &[],
    );
    let listed = fake_apt::DEBIAN_SIZED_STANZAS + archive.packages.len();
    let logs = wait_for(Duration::from_secs(60), "the listing indexed", || {
        let logs = cairn.logs();
        logs.contains("listing indexed").then_some(logs)
    });
    assert!(
        logs.contains(&format!("artifacts={listed}")),
        "not every stanza was indexed:\n{logs}"
    );
    assert!(!logs.contains("listing not indexed"), "{logs}");
    // Every pool file was fetched once, with the digest its stanza (in the last part read)
    // gave: a second machine gets them all from the node.
    update_and_install(
        &client(&dir.path().join("c2"), &archive, &uri),
        &archive,
        "a second machine",
        &[],
    );
    for deb in &archive.packages {
        assert!(
            fake.hits.get(&format!("debian/{}", deb.filename)) <= 1,
            "{} fetched upstream twice",
            deb.filename
        );
    }
    cairn.stop();
}

/// apt pipelines its requests on one connection, and they are answered in turn; the node
/// fetches the files of those waiting behind the first meanwhile, so upstream sees them at once
/// (as it would if apt went direct), and every request still gets its verified file, each
/// fetched once.
#[test]
fn the_files_of_pipelined_requests_are_fetched_at_once() {
    let dir = tempfile::tempdir().expect("tempdir");
    let (archive, fake) = setup(dir.path());
    let cairn = start(dir.path(), "data", &archive, &fake, &[]);
    let uri = format!("{}/apt/test", cairn.url);
    let apt = client(&dir.path().join("c1"), &archive, &uri);
    assert_success(&apt.run(&["update"]), "apt-get update");
    // Each pool file takes upstream about a second: answered in turn, they would never overlap.
    for deb in &archive.packages {
        fake.faults
            .throttled
            .lock()
            .expect("faults")
            .insert(deb.filename.clone(), (64, Duration::from_millis(40)));
    }
    fake.take_most_in_flight();
    let lookups = |result: &str| {
        let series = format!(
            "cairn_cache_lookups_total{{ecosystem=\"apt/test\",kind=\"artifact\",result=\"{result}\"}}"
        );
        crate::support::metric_sum(&cairn.metrics(), &series) as usize
    };
    let misses_before = lookups("miss");
    update_and_install(&apt, &archive, "pipelined", &[]);
    let most = fake.take_most_in_flight();
    assert!(
        most >= 2,
        "upstream never had two pool files in flight at once (most: {most}): {:?}",
        fake.requests()
    );
    for deb in &archive.packages {
        assert!(
            fake.hits.get(&format!("debian/{}", deb.filename)) <= 1,
            "{} fetched upstream twice",
            deb.filename
        );
    }
    // Counted as the misses they were, once each: not as a miss ahead and a join after.
    let fetched = archive
        .packages
        .iter()
        .filter(|deb| fake.hits.get(&format!("debian/{}", deb.filename)) == 1)
        .count();
    assert_eq!(lookups("miss") - misses_before, fetched);
    assert_eq!(lookups("joined"), 0);
    cairn.stop();
}

/// Pipelined requests, raw: `requests` sent at once on one connection, then every answer read
/// until the connection closes (the last request says `Connection: close`). Each answer's
/// `HTTP/1.1 NNN` (the files here are Debian packages and JSON errors: no body holds one).
fn pipelined(base: &str, requests: &[(String, Option<&str>)]) -> Vec<String> {
    use std::io::{Read as _, Write as _};
    let host = base.trim_start_matches("http://");
    let mut all = String::new();
    for (i, (path, authorization)) in requests.iter().enumerate() {
        all.push_str(&format!("GET {path} HTTP/1.1\r\nHost: {host}\r\n"));
        if let Some(authorization) = authorization {
            all.push_str(&format!("Authorization: {authorization}\r\n"));
        }
        if i + 1 == requests.len() {
            all.push_str("Connection: close\r\n");
        }
        all.push_str("\r\n");
    }
    let mut stream = std::net::TcpStream::connect(host).expect("connect");
    stream
        .set_read_timeout(Some(Duration::from_secs(60)))
        .expect("timeout");
    stream.write_all(all.as_bytes()).expect("send");
    let mut answers = Vec::new();
    stream.read_to_end(&mut answers).expect("read the answers");
    // A body need not end its line: status lines are found wherever they start.
    const STATUS: &[u8] = b"HTTP/1.1 ";
    answers
        .windows(STATUS.len() + 3)
        .filter(|w| w.starts_with(STATUS))
        .map(|w| String::from_utf8_lossy(w).into_owned())
        .collect()
}

/// Fetching ahead is no way around authentication: a client without a token that pipelines
/// requests for pool files gets a 401 for each, and nothing is fetched upstream, ahead or not;
/// with a token the same requests are answered, each file fetched once.
#[test]
fn pipelined_requests_without_a_token_fetch_nothing_ahead() {
    let dir = tempfile::tempdir().expect("tempdir");
    let (archive, fake) = setup(dir.path());
    let data = dir.path().join("data");
    let secret = crate::auth::create_token(&data, "apt-hosts", &[]);
    let cairn = start(dir.path(), "data", &archive, &fake, &["--auth", "required"]);
    let bearer = format!("Bearer {secret}");
    // The node has the indexes, so it knows every pool file's digest.
    let index = format!("/apt/test/{}/Packages.xz", archive.binary_dir());
    let got = get_with(
        &format!("{}{index}", cairn.url),
        &[("authorization", &bearer)],
    );
    assert_eq!(got.status, 200, "{}", got.text);
    let pool: Vec<String> = archive
        .packages
        .iter()
        .map(|deb| format!("/apt/test/{}", deb.filename))
        .collect();
    let pool_hits = || -> usize {
        archive
            .packages
            .iter()
            .map(|deb| fake.hits.get(&format!("debian/{}", deb.filename)))
            .sum()
    };

    let bare: Vec<_> = pool.iter().map(|p| (p.clone(), None)).collect();
    let answers = pipelined(&cairn.url, &bare);
    assert_eq!(answers.len(), pool.len(), "{answers:?}");
    assert!(answers.iter().all(|a| a.ends_with(" 401")), "{answers:?}");
    // Anything fetched ahead would be under way by now.
    std::thread::sleep(Duration::from_millis(500));
    assert_eq!(pool_hits(), 0, "{:?}", fake.requests());

    let with_token: Vec<_> = pool
        .iter()
        .map(|p| (p.clone(), Some(bearer.as_str())))
        .collect();
    let answers = pipelined(&cairn.url, &with_token);
    assert_eq!(answers.len(), pool.len(), "{answers:?}");
    assert!(answers.iter().all(|a| a.ends_with(" 200")), "{answers:?}");
    assert_eq!(pool_hits(), pool.len(), "{:?}", fake.requests());
    cairn.stop();
}

#[test]
fn a_tampered_deb_is_refused_and_never_stored() {
    let dir = tempfile::tempdir().expect("tempdir");
    let (archive, fake) = setup(dir.path());
    let data = archive.deb("cairn-data");
    fake.tamper(&data.filename);
    let cairn = start(dir.path(), "data", &archive, &fake, &[]);
    let uri = format!("{}/apt/test", cairn.url);
    let apt = client(&dir.path().join("c1"), &archive, &uri);
    assert_success(&apt.run(&["update"]), "apt-get update");
    let out = apt.run(&["install", "--download-only", "-y", "cairn-hello"]);
    assert!(
        !out.status.success(),
        "install of a tampered .deb succeeded"
    );
    let url = format!("{uri}/{}", data.filename);
    let reply = get(&url);
    crate::support::assert_refused_and_nothing_stored(
        &reply,
        502,
        &dir.path().join("data"),
        "apt/test",
        &data.filename,
        &[&data.bytes],
    );
    assert!(reply.text.contains("digest"), "{}", reply.text);
    assert!(cairn.metric("cairn_digest_mismatches_total{ecosystem=\"apt/test\"}") >= 1.0);
    // Upstream mends the file: the right bytes are fetched and served.
    fake.mend();
    let reply = get(&url);
    assert_eq!(reply.status, 200, "{}", reply.text);
    assert_eq!(hex::encode(sha2::Sha256::digest(&reply.body)), data.sha256);
    cairn.stop();
}

#[test]
fn tampered_or_wrongly_signed_release_files_are_refused() {
    let dir = tempfile::tempdir().expect("tempdir");
    let (archive, fake) = setup(dir.path());
    // TTL 0: every request asks upstream, so a bad copy would be seen at once.
    let cairn = start(
        dir.path(),
        "data",
        &archive,
        &fake,
        &["--metadata-ttl", "0s"],
    );
    let uri = format!("{}/apt/test", cairn.url);
    let in_release = format!("{uri}/dists/stable/InRelease");

    // A tampered InRelease and nothing cached: a 502 naming the file and the keyring.
    fake.tamper("dists/stable/InRelease");
    let reply = get(&in_release);
    assert_eq!(reply.status, 502, "{}", reply.text);
    assert!(
        reply.text.contains("dists/stable/InRelease"),
        "{}",
        reply.text
    );
    assert!(reply.text.contains("no good signature"), "{}", reply.text);
    assert!(
        reply.text.contains(&archive.keyring.display().to_string()),
        "{}",
        reply.text
    );
    let apt = client(&dir.path().join("c1"), &archive, &uri);
    let out = apt.run(&["update"]);
    let text = String::from_utf8_lossy(&out.stderr);
    assert!(
        text.contains("InRelease"),
        "apt-get update did not fail on InRelease: {text}"
    );

    // The good one is cached; then upstream serves one signed by another key: the good copy is
    // served, marked stale, never the bad one.
    fake.mend();
    let good = get(&in_release);
    assert_eq!(good.status, 200, "{}", good.text);
    archive.resign_with_wrong_key();
    let reply = get(&in_release);
    assert_eq!(reply.status, 200, "{}", reply.text);
    assert_eq!(
        reply.body, good.body,
        "a wrongly signed InRelease was served"
    );
    let warning = reply.header("warning").expect("Warning on a stale copy");
    assert!(warning.contains("no good signature"), "{warning}");
    assert!(cairn.logs().contains("serving stale metadata"));
    assert!(
        !cairn.logs().contains('\u{1b}'),
        "a log written to a file carries ANSI colour codes"
    );
    // And Release + Release.gpg are checked together.
    let reply = get(&format!("{uri}/dists/stable/Release"));
    assert_eq!(reply.status, 502, "{}", reply.text);
    assert!(
        reply.text.contains("dists/stable/Release"),
        "{}",
        reply.text
    );
    cairn.stop();
}

#[test]
fn apt_proxy_mode_serves_configured_archives_only() {
    let dir = tempfile::tempdir().expect("tempdir");
    let (archive, fake) = setup(dir.path());
    let cairn = start(dir.path(), "data", &archive, &fake, &[]);
    // The sources keep naming the archive itself; apt sends absolute URIs to Cairn.
    let apt = client(
        &dir.path().join("c1"),
        &archive,
        fake.url.trim_end_matches('/'),
    );
    let proxy = format!("Acquire::http::Proxy={}", cairn.url);
    update_and_install(&apt, &archive, "proxy", &["-o", &proxy]);
    assert!(
        cairn.metric(
            "cairn_http_requests_total{route=\"apt/test\",kind=\"artifact\",status=\"200\"}"
        ) >= 3.0
    );

    // Anything else is refused: Cairn is not an open proxy.
    let status = crate::support::raw_status(
        &cairn.url,
        "http://elsewhere.invalid/debian/dists/stable/InRelease",
    );
    assert_eq!(status, 403);
    cairn.stop();
}

#[test]
fn apt_presents_its_credentials_to_a_node_requiring_tokens_as_a_mirror_and_as_a_proxy() {
    let dir = tempfile::tempdir().expect("tempdir");
    let (archive, fake) = setup(dir.path());
    let data = dir.path().join("data");
    let created = crate::bundle::cairn(&[
        "token",
        "create",
        "apt-hosts",
        "--data-dir",
        data.to_str().expect("path"),
    ]);
    assert_success(&created, "cairn token create");
    let secret = String::from_utf8_lossy(&created.stdout).trim().to_owned();
    let cairn = start(dir.path(), "data", &archive, &fake, &["--auth", "required"]);
    let uri = format!("{}/apt/test", cairn.url);
    let host = cairn.url.trim_start_matches("http://").to_owned();

    // Without credentials: apt's own authentication error, nothing fetched upstream.
    let bare = client(&dir.path().join("bare"), &archive, &uri);
    let out = bare.run(&["update"]);
    let said = format!(
        "{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(said.contains("401"), "{said}");
    assert_eq!(fake.hits.total(), 0, "nothing reached upstream");

    // With an auth.conf entry for the node (HTTP Basic; over plain HTTP apt wants the
    // `http://` spelled out): update and install.
    let apt = client(&dir.path().join("c1"), &archive, &uri);
    std::fs::write(
        dir.path().join("c1/etc/auth.conf"),
        format!("machine http://{host}/apt/ login cairn password {secret}\n"),
    )
    .expect("auth.conf");
    update_and_install(&apt, &archive, "with auth.conf", &[]);

    // As apt's proxy: the credentials in the proxy URL go as Proxy-Authorization; without
    // them, 407.
    let proxied = client(
        &dir.path().join("c2"),
        &archive,
        fake.url.trim_end_matches('/'),
    );
    let bare_proxy = format!("Acquire::http::Proxy={}", cairn.url);
    let out = proxied.run(&["-o", &bare_proxy, "update"]);
    let said = format!(
        "{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(said.contains("407"), "{said}");
    let proxy = format!("Acquire::http::Proxy=http://cairn:{secret}@{host}");
    update_and_install(&proxied, &archive, "through the proxy", &["-o", &proxy]);
    assert!(
        !cairn.logs().contains(&secret),
        "the secret leaked into the log"
    );
    cairn.stop();
}

/// p2p flags for a node of the private test swarm of `key`.
fn swarm_args<'a>(key: &'a str, extra: &[&'a str]) -> Vec<&'a str> {
    let mut args = vec![
        "--p2p-listen",
        "/ip4/127.0.0.1/tcp/0",
        "--no-mdns",
        "--swarm-key",
        key,
    ];
    args.extend_from_slice(extra);
    args
}

#[test]
fn apt_installs_from_the_swarm_and_a_peers_wrongly_signed_release_is_refused() {
    let dir = tempfile::tempdir().expect("tempdir");
    let (archive, fake) = setup(dir.path());
    let key = crate::support::swarm_key(&dir.path().join("swarm.key"), 0x3c);
    let key = key.to_str().expect("utf-8 path");
    let join = std::time::Duration::from_secs(30);

    // C caches the archive, good signatures and all.
    let c = start(dir.path(), "c", &archive, &fake, &swarm_args(key, &[]));
    let c_id = c.peer_id();
    let c_address = c.p2p_address();
    let c_uri = format!("{}/apt/test", c.url);
    update_and_install(
        &client(&dir.path().join("c-client"), &archive, &c_uri),
        &archive,
        "through C",
        &[],
    );

    // Then the archive is signed by another key, and A (which trusts that key) caches that
    // InRelease: A's copy is newer than C's.
    archive.resign_with_wrong_key();
    let upstream = format!("test={}", fake.url);
    let wrong_keyring = format!("test={}", archive.wrong_keyring.display());
    let a_args = swarm_args(
        key,
        &[
            "--apt-upstream",
            &upstream,
            "--apt-keyring",
            &wrong_keyring,
            "--bootstrap",
            &c_address,
        ],
    );
    let a = Cairn::start(&dir.path().join("a"), &a_args);
    let a_id = a.peer_id();
    let reply = get(&format!("{}/apt/test/dists/stable/InRelease", a.url));
    assert_eq!(
        reply.status, 200,
        "A caches the re-signed InRelease: {}",
        reply.text
    );

    // B has no upstream: it takes A's newer InRelease, finds no good signature under its
    // keyring, refuses it, and takes C's, then the indices and the .debs from C.
    let requests = fake.requests().len();
    let a_address = a.p2p_address();
    let b = start(
        dir.path(),
        "b",
        &archive,
        &fake,
        &swarm_args(
            key,
            &[
                "--offline",
                "--bootstrap",
                &a_address,
                "--bootstrap",
                &c_address,
            ],
        ),
    );
    b.wait_connected(&[&a_id, &c_id], join);
    let b_uri = format!("{}/apt/test", b.url);
    let apt = client(&dir.path().join("b-client"), &archive, &b_uri);
    update_and_install(
        &apt,
        &archive,
        &format!("through B\n--- B's log\n{}", b.logs()),
        &[],
    );
    let logs = b.logs();
    assert!(
        logs.lines()
            .any(|l| l.contains("refused a peer's document") && l.contains(&a_id)),
        "B did not refuse A's InRelease:\n{logs}"
    );
    assert_eq!(fake.requests().len(), requests, "B asked upstream");
    let metrics = get(&format!("{}/metrics", b.url)).text;
    let from_c = crate::support::metric_sum(
        &metrics,
        &format!("cairn_peer_received_bytes_total{{peer=\"{c_id}\"}}"),
    );
    assert!(from_c > 0.0, "no bytes from C:\n{metrics}");
    b.stop();
    a.stop();
    c.stop();
}

/// `cairn …` with `HOME` at `home` and nothing of the machine's configuration or data.
fn cairn_cli(home: &Path, args: &[&str]) -> std::process::Output {
    std::process::Command::new(env!("CARGO_BIN_EXE_cairn"))
        .args(args)
        .env("HOME", home)
        .env("XDG_CONFIG_HOME", home.join(".config"))
        .env_remove("XDG_DATA_HOME")
        .env_remove("CAIRN_DATA_DIR")
        .env("CAIRN_LOG", "warn")
        .output()
        .expect("cairn")
}

fn output_text(out: &std::process::Output) -> String {
    format!(
        "{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    )
}

/// Both suites of the archive at `uri`, as `cairn setup apt` would write them for a machine
/// with a `-updates` suite.
fn two_suites(archive: &Archive, uri: &str) -> String {
    [fake_apt::SUITE, fake_apt::UPDATES_SUITE]
        .iter()
        .map(|suite| {
            format!(
                "deb [signed-by={}] {uri} {suite} {}\n",
                archive.keyring.display(),
                fake_apt::COMPONENT
            )
        })
        .collect()
}

#[test]
fn a_bundle_from_a_package_list_updates_every_suite_offline_with_default_retries() {
    let dir = tempfile::tempdir().expect("tempdir");
    let t = dir.path();
    let archive = fake_apt::build_archive_with_updates(&t.join("archive"));
    let fake = fake_apt::serve(&archive);
    let a = start(t, "a", &archive, &fake, &[]);
    let a_uri = format!("{}/apt/test", a.url);
    // A machine without AppStream updates through A: A holds both suites' Packages, not their
    // DEP-11, translations or Commands.
    let plain = AptClient::new(&t.join("apt-a"), two_suites(&archive, &a_uri).trim_end());
    assert_success(&plain.run(&["update"]), "apt-get update through A");

    // The package list names packages of the first suite only.
    let list = t.join("packages.list");
    std::fs::write(
        &list,
        "cairn-hello\nlibcairn-test++1\ncairn-data\tinstall\n",
    )
    .expect("list");
    let list_arg = format!("apt:{}", list.display());
    let sources = t.join("offline.sources.list");
    std::fs::write(
        &sources,
        two_suites(&archive, "http://offline.invalid/apt/test"),
    )
    .expect("w");

    // Prefetch talks to A over HTTP only: no data directory is read or created.
    let home = t.join("home");
    std::fs::create_dir_all(&home).expect("home");
    let out = cairn_cli(
        &home,
        &[
            "prefetch",
            "--url",
            &a.url,
            "--lockfile",
            &list_arg,
            "--apt-sources",
            sources.to_str().expect("path"),
        ],
    );
    assert!(
        out.status.success(),
        "prefetch failed:\n{}",
        output_text(&out)
    );
    assert!(
        !home.join(".local/share/cairn").exists(),
        "prefetch through a node created the default data directory"
    );
    // A node named that does not answer is an error, not a node run on the default data dir.
    let out = cairn_cli(
        &home,
        &[
            "prefetch",
            "--url",
            "http://127.0.0.1:9/",
            "--lockfile",
            &list_arg,
            "--apt-sources",
            sources.to_str().expect("path"),
        ],
    );
    assert!(!out.status.success(), "{}", output_text(&out));
    assert!(
        output_text(&out).contains("no Cairn node answers"),
        "{}",
        output_text(&out)
    );
    assert!(!home.join(".local/share/cairn").exists());
    let car = t.join("apt.car");
    let data_a = t.join("a");
    let out = cairn_cli(
        &home,
        &[
            "export",
            "--data-dir",
            data_a.to_str().expect("path"),
            "--lockfile",
            &list_arg,
            "-o",
            car.to_str().expect("path"),
        ],
    );
    assert!(
        out.status.success(),
        "export failed:\n{}",
        output_text(&out)
    );
    a.stop();
    // Nothing asked for the Contents file, which apt fetches only when told to.
    let contents = format!(
        "debian/dists/{}/{}/Contents-{}.xz",
        fake_apt::SUITE,
        fake_apt::COMPONENT,
        archive.arch
    );
    assert_eq!(fake.hits.get(&contents), 0, "{:?}", fake.requests());

    // A fresh node imports the bundle and serves it offline, its upstream dead.
    fake.set_down(true);
    let data_b = t.join("b");
    let dead = "test=http://127.0.0.1:9/debian/";
    let keyring = format!("test={}", archive.keyring.display());
    let out = cairn_cli(
        &home,
        &[
            "import",
            "--data-dir",
            data_b.to_str().expect("path"),
            "--apt-upstream",
            dead,
            "--apt-keyring",
            &keyring,
            car.to_str().expect("path"),
        ],
    );
    assert!(
        out.status.success(),
        "import failed:\n{}",
        output_text(&out)
    );
    let b = Cairn::start(
        &data_b,
        &[
            "--offline",
            "--apt-upstream",
            dead,
            "--apt-keyring",
            &keyring,
        ],
    );
    let b_uri = format!("{}/apt/test", b.url);
    // A desktop machine: default retries, translations, DEP-11 and Commands.
    let desktop = AptClient::with_defaults(&t.join("apt-b"), &two_suites(&archive, &b_uri));
    let out = desktop.run(&["update"]);
    assert_success(&out, "apt-get update from the bundle");
    assert_no_warnings(&out, "apt-get update from the bundle");
    let lists: Vec<String> = std::fs::read_dir(desktop.lists_dir())
        .expect("lists")
        .map(|e| e.expect("entry").file_name().to_string_lossy().into_owned())
        .collect();
    for wanted in [
        format!("_dists_{}_InRelease", fake_apt::UPDATES_SUITE),
        format!(
            "_dists_{}_main_dep11_Components-{}.yml.gz",
            fake_apt::SUITE,
            archive.arch
        ),
        format!(
            "_dists_{}_main_cnf_Commands-{}",
            fake_apt::UPDATES_SUITE,
            archive.arch
        ),
    ] {
        assert!(
            lists.iter().any(|l| l.ends_with(&wanted)),
            "apt has no {wanted}: {lists:?}"
        );
    }
    let out = desktop.run(&["install", "--download-only", "-y", "cairn-hello"]);
    assert_success(&out, "apt-get install from the bundle");
    assert_no_warnings(&out, "apt-get install from the bundle");
    for name in ["cairn-hello", "libcairn-test++1", "cairn-data"] {
        let deb = archive.deb(name);
        let file = deb.filename.rsplit('/').next().expect("file name");
        let bytes = std::fs::read(desktop.archives_dir().join(file))
            .unwrap_or_else(|e| panic!("{file} not downloaded: {e}"));
        assert_eq!(hex::encode(sha2::Sha256::digest(&bytes)), deb.sha256);
    }

    // What the node cannot have is a 404, which apt does not retry: an index (apt moves on to
    // its next name at once), a suite, a pool file.
    let reply = get(&format!(
        "{b_uri}/dists/{}/{}/Contents-{}.gz",
        fake_apt::SUITE,
        fake_apt::COMPONENT,
        archive.arch
    ));
    assert_eq!(reply.status, 404, "{}", reply.text);
    assert!(reply.text.contains("offline"), "{}", reply.text);
    // A file A only fetched by path (prefetch does) is served by hash too, from the same copy.
    let components = format!(
        "dists/{}/{}/dep11/Components-{}.yml.gz",
        fake_apt::SUITE,
        fake_apt::COMPONENT,
        archive.arch
    );
    let bytes = fake.read(&components);
    let (dir, _) = components.rsplit_once('/').expect("dir");
    let by_hash = format!(
        "{b_uri}/{dir}/by-hash/SHA256/{}",
        hex::encode(sha2::Sha256::digest(&bytes))
    );
    let reply = get(&by_hash);
    assert_eq!(reply.status, 200, "{}", reply.text);
    assert_eq!(reply.body.as_ref(), bytes.as_slice());
    let reply = get(&format!("{b_uri}/dists/elsewhere/InRelease"));
    assert_eq!(reply.status, 404, "{}", reply.text);
    let tools = archive.deb("cairn-tools");
    let reply = get(&format!("{b_uri}/{}", tools.filename));
    assert_eq!(reply.status, 404, "{}", reply.text);
    assert!(reply.text.contains("offline"), "{}", reply.text);
    b.stop();
}

#[test]
fn a_denied_package_version_is_refused_with_its_reason_and_allow_lets_it_through() {
    let dir = tempfile::tempdir().expect("tempdir");
    let (archive, fake) = setup(dir.path());
    // The library is `1.0~rc1-1`: below `1.0-1` in dpkg's order (the `~` sorts first).
    let cairn = start(
        dir.path(),
        "data",
        &archive,
        &fake,
        &["--deny", "apt:libcairn-test++1@<< 1.0-1"],
    );
    let uri = format!("{}/apt/test", cairn.url);
    let apt = client(&dir.path().join("c1"), &archive, &uri);
    // The signed indexes are served whole: update works and resolution sees the package.
    assert_success(&apt.run(&["update"]), "apt-get update");
    let out = apt.run(&["install", "--download-only", "-y", "cairn-hello"]);
    assert!(!out.status.success(), "apt installed a denied version");
    let said = format!(
        "{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    // apt prints the status line, where the node put its reason.
    assert!(
        said.contains("403") && said.contains("refused by this node's policy"),
        "{said}"
    );
    let library = archive.deb("libcairn-test++1");
    let reply = get(&format!("{uri}/{}", library.filename));
    assert_eq!(reply.status, 403, "{}", reply.text);
    assert!(
        reply
            .text
            .contains("apt:libcairn-test++1@1.0~rc1-1 is refused by this node's policy: deny"),
        "{}",
        reply.text
    );
    // Packages the rule does not name are served.
    let data = archive.deb("cairn-data");
    assert_eq!(get(&format!("{uri}/{}", data.filename)).status, 200);
    assert!(
        cairn.metric("cairn_policy_refusals_total{ecosystem=\"apt/test\",rule=\"deny\"}") >= 1.0
    );
    cairn.stop();

    // The break-glass: an allow of that exact version beats the deny.
    let cairn = start(
        dir.path(),
        "data",
        &archive,
        &fake,
        &[
            "--deny",
            "apt:libcairn-test++1@<< 1.0-1",
            "--allow",
            "apt:libcairn-test++1@= 1.0~rc1-1",
        ],
    );
    let uri = format!("{}/apt/test", cairn.url);
    let apt = client(&dir.path().join("c2"), &archive, &uri);
    update_and_install(&apt, &archive, "allowed", &[]);
}
