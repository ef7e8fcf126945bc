//! npm, yarn and pnpm through the `cairn` binary, in front of the fake registry.

use std::path::Path;
use std::sync::atomic::Ordering;
use std::time::Duration;

use sha2::Digest as _;

use crate::fake_npm::{FakeNpm, Registry, noise};
use crate::support::{
    Cairn, ClientEnv, assert_refused_and_nothing_stored, assert_success, files_under, get,
    get_with, project, raw_status, runtime,
};

const MIB: usize = 1 << 20;

/// A small tree with dependencies, a scoped package and one tarball over 3 MiB.
pub(crate) fn registry() -> Registry {
    let mut r = Registry::default();
    r.publish("lib-d", "1.0.0", &[], &[])
        .publish("lib-b", "1.0.0", &[("lib-d", "^1.0.0")], &[])
        .publish("lib-b", "1.1.0", &[("lib-d", "^1.0.0")], &[])
        .publish("@scope/lib-c", "2.0.0", &[], &[])
        .publish(
            "app-a",
            "1.0.0",
            &[("lib-b", "^1.0.0"), ("@scope/lib-c", "^2.0.0")],
            &[],
        )
        .publish(
            "big-data",
            "1.0.0",
            &[],
            &[("data.bin", noise(3 * MIB + MIB / 2, 7))],
        )
        .publish("evil-pkg", "1.0.0", &[], &[])
        .publish("hot-pkg", "1.0.0", &[], &[("data.bin", noise(MIB, 11))])
        .publish(
            "slow-big",
            "1.0.0",
            &[],
            &[("data.bin", noise(8 * MIB, 13))],
        );
    r
}

fn port_of(url: &str) -> &str {
    url.rsplit(':').next().unwrap_or_default()
}

fn lockfile_resolved(dir: &Path) -> Vec<String> {
    let lock: serde_json::Value =
        serde_json::from_slice(&std::fs::read(dir.join("package-lock.json")).expect("lockfile"))
            .expect("lockfile JSON");
    lock["packages"]
        .as_object()
        .expect("packages")
        .values()
        .filter_map(|p| p["resolved"].as_str().map(str::to_owned))
        .collect()
}

#[test]
fn npm_install_then_offline_ci_with_an_empty_cache() {
    let tmp = tempfile::tempdir().expect("tempdir");
    let fake = FakeNpm::start(registry());
    let data = tmp.path().join("data");
    let cairn = Cairn::start(&data, &["--npm-upstream", &fake.url]);
    let env = ClientEnv::new(&tmp.path().join("client"), &cairn.npm());
    let dir = project(
        &tmp.path().join("project"),
        serde_json::json!({ "app-a": "^1.0.0", "big-data": "1.0.0" }),
    );

    assert_success(&env.run("npm", &["install"], &dir), "npm install");
    for installed in ["lib-d", "lib-b", "@scope/lib-c", "app-a", "big-data"] {
        assert!(
            dir.join("node_modules")
                .join(installed)
                .join("package.json")
                .exists(),
            "{installed}"
        );
    }
    let big = std::fs::metadata(dir.join("node_modules/big-data/data.bin")).expect("data.bin");
    assert_eq!(big.len(), (3 * MIB + MIB / 2) as u64);
    let resolved = lockfile_resolved(&dir);
    assert_eq!(resolved.len(), 5, "{resolved:?}");
    for url in &resolved {
        assert!(
            url.starts_with(&cairn.npm()),
            "lockfile URL {url} does not point at Cairn"
        );
    }
    assert_eq!(
        get(&format!("{}lib-b", cairn.npm())).headers["content-type"],
        "application/json"
    );

    // The big tarball is a multi-leaf DAG whose root is the reference importer's.
    let tarball = fake.registry().version("big-data", "1.0.0").tarball.clone();
    assert!(
        tarball.len() > 3 * MIB,
        "tarball of {} bytes",
        tarball.len()
    );
    let reply = get(&format!("{}big-data/-/big-data-1.0.0.tgz", cairn.npm()));
    assert_eq!(reply.body, tarball);
    assert_eq!(
        reply.headers["x-ipfs-roots"].to_str().expect("root"),
        cairn_mirror::unixfs::root_of(&tarball).to_string()
    );
    assert_eq!(
        fake.hits("big-data/-/big-data-1.0.0.tgz"),
        1,
        "second GET is a hit"
    );

    // npm's audit goes through Cairn to upstream (gzipped POST, never cached).
    let audit = env.run("npm", &["audit", "--json"], &dir);
    let report: serde_json::Value = serde_json::from_slice(&audit.stdout).expect("audit JSON");
    assert_eq!(
        report["vulnerabilities"]["lib-d"]["severity"], "high",
        "{report}"
    );

    let status = std::process::Command::new(env!("CARGO_BIN_EXE_cairn"))
        .args(["status", "--json", "--data-dir"])
        .arg(&data)
        .env("HOME", tmp.path())
        .env("XDG_CONFIG_HOME", tmp.path().join("none"))
        .output()
        .expect("cairn status");
    assert_success(&status, "cairn status");
    let report: serde_json::Value = serde_json::from_slice(&status.stdout).expect("status JSON");
    assert_eq!(report["stats"][0]["ecosystem"], "npm");
    assert_eq!(report["stats"][0]["artifacts"], 5);
    // Plain fields, no Rust enum shapes (`{"Ok": …}`), and every ecosystem listed.
    let upstreams = report["upstreams"].as_array().expect("upstreams list");
    let names: Vec<&str> = upstreams
        .iter()
        .filter_map(|u| u["ecosystem"].as_str())
        .collect();
    assert!(
        names.starts_with(&["npm", "cargo", "pypi"]) && names.iter().any(|n| n.starts_with("apt")),
        "{report}"
    );
    for u in upstreams {
        assert!(
            u["url"].is_string() != u["off"].is_string() && u.get("Ok").is_none(),
            "{u}"
        );
    }

    // Restart offline on the same address; npm's cache is empty; upstream is never asked.
    let listen = format!("127.0.0.1:{}", port_of(&cairn.url));
    cairn.stop();
    let upstream_requests = fake.total_hits();
    let cairn = Cairn::start(
        &data,
        &[
            "--offline",
            "--npm-upstream",
            &fake.url,
            "--listen",
            &listen,
        ],
    );
    env.clear_cache();
    std::fs::remove_dir_all(dir.join("node_modules")).expect("rm node_modules");
    assert_success(&env.run("npm", &["ci"], &dir), "offline npm ci");
    assert!(dir.join("node_modules/big-data/data.bin").exists());
    assert_eq!(
        fake.total_hits(),
        upstream_requests,
        "offline node contacted upstream"
    );
    assert!(cairn.metric("cairn_served_bytes_total{source=\"cache\"}") > 3.0 * MIB as f64);

    // A miss while offline is a 504 that says why.
    let reply = get(&format!("{}not-cached", cairn.npm()));
    assert_eq!(reply.status, 504);
    assert!(reply.text.contains("offline"), "{}", reply.text);
}

#[test]
fn yarn_and_pnpm_install_through_cairn() {
    let tools = crate::tools::tools();
    let tmp = tempfile::tempdir().expect("tempdir");
    let fake = FakeNpm::start(registry());
    let cairn = Cairn::start(&tmp.path().join("data"), &["--npm-upstream", &fake.url]);
    let env = ClientEnv::new(&tmp.path().join("client"), &cairn.npm());
    let deps = serde_json::json!({ "app-a": "^1.0.0" });

    let yarn_dir = project(&tmp.path().join("yarn"), deps.clone());
    let yarn = tools.yarn.to_str().expect("path");
    let registry_flag = cairn.npm();
    assert_success(
        &env.run(
            yarn,
            &["install", "--registry", &registry_flag, "--non-interactive"],
            &yarn_dir,
        ),
        "yarn install",
    );
    assert!(
        yarn_dir
            .join("node_modules/@scope/lib-c/package.json")
            .exists()
    );
    let lock = std::fs::read_to_string(yarn_dir.join("yarn.lock")).expect("yarn.lock");
    let resolved: Vec<&str> = lock
        .lines()
        .filter(|l| l.trim_start().starts_with("resolved"))
        .collect();
    assert_eq!(resolved.len(), 4, "{lock}");
    assert!(resolved.iter().all(|l| l.contains(&cairn.npm())), "{lock}");

    let pnpm_dir = project(&tmp.path().join("pnpm"), deps);
    let pnpm = &tools.pnpm;
    let store = tmp.path().join("pnpm-store");
    let store_flag = format!("--store-dir={}", store.display());
    let registry_flag = format!("--registry={}", cairn.npm());
    assert_success(
        &env.run(
            pnpm.to_str().expect("path"),
            &["install", &registry_flag, &store_flag],
            &pnpm_dir,
        ),
        "pnpm install",
    );
    assert!(pnpm_dir.join("node_modules/app-a/package.json").exists());
    assert!(pnpm_dir.join("node_modules/.pnpm").is_dir());
    // Each tarball came from upstream once, whichever client asked first.
    assert_eq!(fake.hits("lib-d/-/lib-d-1.0.0.tgz"), 1);
}

#[test]
fn a_tampered_tarball_fails_the_install_and_is_never_stored() {
    let tmp = tempfile::tempdir().expect("tempdir");
    let fake = FakeNpm::start(registry());
    fake.faults
        .tampered
        .lock()
        .expect("faults")
        .insert("evil-pkg/-/evil-pkg-1.0.0.tgz".into());
    let cairn = Cairn::start(&tmp.path().join("data"), &["--npm-upstream", &fake.url]);
    let env = ClientEnv::new(&tmp.path().join("client"), &cairn.npm());
    let dir = project(
        &tmp.path().join("project"),
        serde_json::json!({ "evil-pkg": "1.0.0" }),
    );

    let output = env.run("npm", &["install"], &dir);
    assert!(
        !output.status.success(),
        "npm install of a tampered tarball succeeded"
    );
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert!(
        stderr.contains("digest mismatch"),
        "npm's error does not say why:\n{stderr}"
    );
    assert!(!dir.join("node_modules/evil-pkg").exists());

    let reply = get(&format!("{}evil-pkg/-/evil-pkg-1.0.0.tgz", cairn.npm()));
    let tarball = &fake.registry().version("evil-pkg", "1.0.0").tarball;
    assert_refused_and_nothing_stored(
        &reply,
        502,
        &tmp.path().join("data"),
        "npm",
        "evil-pkg/-/evil-pkg-1.0.0.tgz",
        &[tarball],
    );
    assert!(
        reply.text.contains("digest mismatch") && reply.text.contains("sha512"),
        "{}",
        reply.text
    );
    assert!(
        files_under(&tmp.path().join("data/blobs")).is_empty(),
        "a rejected artifact was stored"
    );
    assert!(cairn.metric("cairn_digest_mismatches_total{ecosystem=\"npm\"}") >= 2.0);
    assert!(cairn.logs().contains("rejected artifact"));
}

#[test]
fn malformed_metadata_and_hostile_names() {
    let tmp = tempfile::tempdir().expect("tempdir");
    let fake = FakeNpm::start(registry());
    fake.faults
        .malformed
        .lock()
        .expect("faults")
        .insert("lib-d".into());
    let cairn = Cairn::start(&tmp.path().join("data"), &["--npm-upstream", &fake.url]);

    let reply = get(&format!("{}lib-d", cairn.npm()));
    assert_eq!(reply.status, 502);
    assert!(reply.text.contains("not valid JSON"), "{}", reply.text);

    let long = "a".repeat(215);
    for target in [
        "/npm/..".to_owned(),
        "/npm/%2e%2e".to_owned(),
        "/npm/a%00b".to_owned(),
        "/npm/@scope%2f..".to_owned(),
        format!("/npm/{long}"),
        "/npm/lib-d/-/..%2f..%2fetc%2fpasswd.tgz".to_owned(),
        "/npm/lib-d/-/lib-d-1.0.0.tgz%00".to_owned(),
    ] {
        assert_eq!(raw_status(&cairn.url, &target), 400, "{target}");
    }
    assert_eq!(fake.total_hits(), 1, "hostile requests reached upstream");
}

#[test]
fn concurrent_misses_share_one_upstream_request() {
    let tmp = tempfile::tempdir().expect("tempdir");
    let fake = FakeNpm::start(registry());
    let path = "hot-pkg/-/hot-pkg-1.0.0.tgz";
    fake.faults
        .throttled
        .lock()
        .expect("faults")
        .insert(path.into(), (64 * 1024, Duration::from_millis(10)));
    let cairn = Cairn::start(&tmp.path().join("data"), &["--npm-upstream", &fake.url]);
    let url = format!("{}{path}", cairn.npm());
    let bodies = runtime().block_on(async {
        let client = reqwest::Client::new();
        let requests = (0..200).map(|_| {
            let (client, url) = (client.clone(), url.clone());
            tokio::spawn(async move {
                let response = client.get(&url).send().await.expect("request");
                assert_eq!(response.status(), 200);
                response.bytes().await.expect("body")
            })
        });
        futures_util::future::join_all(requests).await
    });
    let expected = fake.registry().version("hot-pkg", "1.0.0").tarball.clone();
    for body in bodies {
        assert_eq!(body.expect("task"), expected);
    }
    assert_eq!(fake.hits(path), 1, "tarball fetched more than once");
    assert_eq!(fake.hits("hot-pkg"), 1, "packument fetched more than once");
}

#[test]
fn a_crash_mid_download_leaves_no_partial_artifact() {
    let tmp = tempfile::tempdir().expect("tempdir");
    let fake = FakeNpm::start(registry());
    let path = "slow-big/-/slow-big-1.0.0.tgz";
    fake.faults
        .throttled
        .lock()
        .expect("faults")
        .insert(path.into(), (128 * 1024, Duration::from_millis(40)));
    let data = tmp.path().join("data");
    let cairn = Cairn::start(&data, &["--npm-upstream", &fake.url]);
    let url = format!("{}{path}", cairn.npm());
    let client = {
        let url = url.clone();
        std::thread::spawn(move || {
            runtime().block_on(async { reqwest::get(&url).await?.bytes().await })
        })
    };
    // Wait until the download is well under way, then crash.
    let deadline = std::time::Instant::now() + Duration::from_secs(30);
    loop {
        let written: u64 = files_under(&data.join("tmp"))
            .iter()
            .filter_map(|f| std::fs::metadata(f).ok())
            .map(|m| m.len())
            .sum();
        if written > 2 * MIB as u64 {
            break;
        }
        assert!(
            std::time::Instant::now() < deadline,
            "download never started"
        );
        std::thread::sleep(Duration::from_millis(20));
    }
    cairn.kill();
    assert!(
        client.join().expect("client thread").is_err(),
        "client got a whole body"
    );
    assert!(
        files_under(&data.join("blobs")).is_empty(),
        "a partial artifact was committed"
    );

    fake.faults.throttled.lock().expect("faults").clear();
    let cairn = Cairn::start(&data, &["--npm-upstream", &fake.url]);
    assert!(
        files_under(&data.join("tmp")).is_empty(),
        "temp files survived a restart"
    );
    let reply = get(&format!("{}{path}", cairn.npm()));
    assert_eq!(reply.status, 200);
    let expected = fake.registry().version("slow-big", "1.0.0").tarball.clone();
    assert_eq!(
        sha2::Sha512::digest(&reply.body),
        sha2::Sha512::digest(&expected)
    );
    assert_eq!(files_under(&data.join("blobs")).len(), 1);
}

#[test]
fn stale_metadata_revalidation_and_abbreviated_packuments() {
    let tmp = tempfile::tempdir().expect("tempdir");
    let fake = FakeNpm::start(registry());
    let cairn = Cairn::start(
        &tmp.path().join("data"),
        &["--npm-upstream", &fake.url, "--metadata-ttl", "1s"],
    );
    let packument = format!("{}lib-b", cairn.npm());
    let corgi = "application/vnd.npm.install-v1+json; q=1.0, application/json; q=0.8, */*";

    let full = get(&packument);
    assert_eq!(full.status, 200);
    let etag = full.headers["etag"].to_str().expect("etag").to_owned();
    assert_eq!(
        get_with(&packument, &[("if-none-match", &etag)]).status,
        304
    );

    let abbreviated = get_with(&packument, &[("accept", corgi)]);
    assert_eq!(
        abbreviated.headers["content-type"],
        "application/vnd.npm.install-v1+json"
    );
    assert_ne!(abbreviated.headers["etag"], full.headers["etag"]);
    let doc: serde_json::Value = serde_json::from_slice(&abbreviated.body).expect("json");
    assert!(
        doc.get("readme").is_none() && doc["modified"].is_string(),
        "{doc}"
    );
    assert_eq!(
        fake.hits("lib-b"),
        1,
        "representations share one upstream document"
    );

    // Upstream goes down: stale metadata is served and marked; a miss is a 504 saying why.
    fake.faults.down.store(true, Ordering::SeqCst);
    std::thread::sleep(Duration::from_millis(1100));
    let stale = get(&packument);
    assert_eq!(stale.status, 200);
    assert!(stale.headers.contains_key("age"), "{:?}", stale.headers);
    assert!(
        stale.headers["warning"]
            .to_str()
            .expect("warning")
            .contains("Stale")
    );
    let miss = get(&format!("{}lib-d", cairn.npm()));
    assert_eq!(miss.status, 504, "{}", miss.text);
    assert!(miss.text.contains("503"), "{}", miss.text);
    crate::support::wait_for(Duration::from_secs(10), "the failure in the log", || {
        let logs = cairn.logs();
        logs.lines()
            .any(|l| l.contains("WARN") && l.contains("lib-d") && l.contains("503"))
            .then_some(())
    });

    // Back up: the document is fetched afresh.
    fake.faults.down.store(false, Ordering::SeqCst);
    let fresh = get(&packument);
    assert_eq!(fresh.status, 200);
    assert!(!fresh.headers.contains_key("warning"));
}

#[test]
fn setup_prints_the_client_configuration() {
    let output = std::process::Command::new(env!("CARGO_BIN_EXE_cairn"))
        .args(["setup", "npm", "--url", "http://cache.invalid:7777/npm/"])
        .output()
        .expect("cairn setup");
    assert_success(&output, "cairn setup npm");
    let stdout = String::from_utf8_lossy(&output.stdout);
    assert!(
        stdout.contains("npm config set registry http://cache.invalid:7777/npm/"),
        "{stdout}"
    );
}

/// Unmounts a tmpfs when dropped.
pub(crate) struct Tmpfs(pub(crate) std::path::PathBuf);

impl Tmpfs {
    /// A tmpfs of `size` (e.g. `3m`) at `dir` (the tests run as root, as CI does).
    pub(crate) fn mount(dir: &Path, size: &str) -> Tmpfs {
        std::fs::create_dir_all(dir).expect("mount point");
        let status = std::process::Command::new("mount")
            .args(["-t", "tmpfs", "-o", &format!("size={size}"), "tmpfs"])
            .arg(dir)
            .status()
            .expect("run mount");
        assert!(status.success(), "mounting a tmpfs needs root: {status}");
        Tmpfs(dir.to_path_buf())
    }
}

impl Drop for Tmpfs {
    fn drop(&mut self) {
        let _ = std::process::Command::new("umount").arg(&self.0).status();
    }
}

#[test]
fn an_upstream_that_does_not_answer_is_logged_at_start() {
    let tmp = tempfile::tempdir().expect("tempdir");
    // A port nothing listens on: what a mistyped upstream URL looks like.
    let closed = crate::fake_upstream::bind_local();
    let dead = format!("http://{}/", closed.local_addr().expect("address"));
    drop(closed);
    let cairn = Cairn::start(&tmp.path().join("data"), &["--npm-upstream", &dead]);
    crate::support::wait_for(Duration::from_secs(30), "the probe's warning", || {
        let logs = cairn.logs();
        logs.lines()
            .any(|l| {
                l.contains("WARN") && l.contains("upstream does not answer") && l.contains(&dead)
            })
            .then_some(())
    });
    cairn.stop();
}

#[test]
fn a_full_disk_streams_downloads_unkept_and_keeps_serving() {
    let tmp = tempfile::tempdir().expect("tempdir");
    let fake = FakeNpm::start(registry());
    let disk = Tmpfs::mount(&tmp.path().join("disk"), "3m");
    let data = disk.0.join("data");
    let cairn = Cairn::start(&data, &["--npm-upstream", &fake.url]);

    // 3.5 MiB does not fit on a 3 MiB disk: the client gets the verified file all the same,
    // and nothing of it is left on the disk.
    let url = format!("{}big-data/-/big-data-1.0.0.tgz", cairn.npm());
    let expected = fake.registry().version("big-data", "1.0.0").tarball.clone();
    for attempt in 0..2 {
        let reply = get(&url);
        assert_eq!(reply.status, 200, "attempt {attempt}: {}", reply.text);
        assert!(reply.body == expected, "attempt {attempt}: wrong bytes");
        assert!(files_under(&data.join("blobs")).is_empty());
        assert!(
            files_under(&data.join("tmp")).is_empty(),
            "temp file left on a full disk"
        );
    }
    assert!(
        cairn.logs().contains("no room in the store"),
        "{}",
        cairn.logs()
    );

    // A tampered file streamed unkept is cut, never complete.
    fake.faults
        .tampered
        .lock()
        .expect("faults")
        .insert("big-data/-/big-data-1.0.0.tgz".to_owned());
    let outcome = runtime().block_on(async {
        let response = reqwest::get(&url).await.expect("request");
        let status = response.status().as_u16();
        (status, response.bytes().await.map(|b| b.len()))
    });
    assert!(
        outcome.0 != 200 || outcome.1.is_err(),
        "a tampered download looked complete: {outcome:?}"
    );
    // Small packages still go through.
    let reply = get(&format!("{}lib-d/-/lib-d-1.0.0.tgz", cairn.npm()));
    assert_eq!(reply.status, 200, "{}", reply.text);
    assert_eq!(
        reply.body,
        fake.registry().version("lib-d", "1.0.0").tarball
    );
    drop(cairn);

    // A small file streamed unkept (here every miss is: the free-space floor is the whole
    // disk) is answered only once it has verified, so its mismatch is a clean 502 rather than
    // a 200 cut short.
    let floor = Cairn::start(
        &tmp.path().join("floor"),
        &["--npm-upstream", &fake.url, "--min-free", "99%"],
    );
    fake.faults
        .tampered
        .lock()
        .expect("faults")
        .insert("lib-b-1.0.0.tgz".to_owned());
    let small = get(&format!("{}lib-b/-/lib-b-1.0.0.tgz", floor.npm()));
    assert_eq!(small.status, 502, "{}", small.text);
    assert!(small.text.contains("digest"), "{}", small.text);
    fake.faults.tampered.lock().expect("faults").clear();
    let small = get(&format!("{}lib-b/-/lib-b-1.1.0.tgz", floor.npm()));
    assert_eq!(small.status, 200, "{}", small.text);
    assert_eq!(
        small.body,
        fake.registry().version("lib-b", "1.1.0").tarball
    );
    assert!(
        floor.logs().contains("no room in the store"),
        "{}",
        floor.logs()
    );
}
