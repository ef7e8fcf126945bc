//! Air-gapped sites: lockfiles written by the real clients through node A, `cairn prefetch`
//! into A, `cairn export --lockfile` to a CAR, `cairn import` into an empty store, and the real
//! npm ci, cargo fetch, pip download and apt-get install from that node, offline, with every
//! upstream dead. A truncated or tampered CAR is refused and changes nothing.

use std::path::Path;
use std::process::{Command, Output};

use sha2::Digest as _;

use crate::fake_apt::{self, AptClient};
use crate::fake_cargo::FakeCargo;
use crate::fake_npm::{FakeNpm, Registry};
use crate::fake_pypi::FakePypi;
use crate::support::{Cairn, ClientEnv, assert_success, project};

pub(crate) fn cairn(args: &[&str]) -> Output {
    Command::new(env!("CARGO_BIN_EXE_cairn"))
        .args(args)
        .env("XDG_CONFIG_HOME", "/nonexistent")
        .env("CAIRN_LOG", "warn")
        .output()
        .expect("cairn")
}

/// A project `name` under `dir` with `dependencies`, and the `package-lock.json` npm writes for
/// it through `node` from metadata alone (nothing is installed).
fn npm_lockfile(
    node: &Cairn,
    dir: &Path,
    name: &str,
    dependencies: serde_json::Value,
) -> std::path::PathBuf {
    let env = ClientEnv::new(&dir.join("npm-client"), &node.npm());
    let app = project(&dir.join(name), dependencies);
    assert_success(
        &env.run("npm", &["install", "--package-lock-only"], &app),
        "npm install --package-lock-only",
    );
    app
}

pub(crate) fn text(out: &Output) -> String {
    format!(
        "{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    )
}

/// The last line of what a command printed: `cairn import` ends with the root it imported.
fn last_line(out: &Output) -> String {
    String::from_utf8_lossy(&out.stdout)
        .lines()
        .last()
        .unwrap_or_default()
        .to_owned()
}

fn port_of(url: &str) -> &str {
    url.rsplit(':').next().unwrap_or_default()
}

fn apt_client(dir: &Path, keyring: &Path, uri: &str) -> AptClient {
    AptClient::new(
        dir,
        &format!("deb [signed-by={}] {uri} stable main", keyring.display()),
    )
}

#[test]
fn lockfiles_prefetch_export_import_then_every_client_offline() {
    let tmp = tempfile::tempdir().expect("tempdir");
    let t = tmp.path();
    let npm = FakeNpm::start(crate::npm::registry());
    let crates = FakeCargo::start(crate::cargo::registry());
    let pypi = FakePypi::start(crate::pypi::index(&t.join("wheels")));
    let archive = fake_apt::build_archive(&t.join("archive"));
    let apt = fake_apt::serve(&archive);
    let keyring = format!("test={}", archive.keyring.display());
    let apt_upstream = format!("test={}", apt.url);
    let data_a = t.join("a");
    let a = Cairn::start(
        &data_a,
        &[
            "--npm-upstream",
            &npm.url,
            "--cargo-upstream",
            &crates.index_url,
            "--pypi-upstream",
            &pypi.simple_url,
            "--apt-upstream",
            &apt_upstream,
            "--apt-keyring",
            &keyring,
        ],
    );

    // Lockfiles, written by the clients through A from metadata alone.
    let app = npm_lockfile(
        &a,
        t,
        "npm-app",
        serde_json::json!({ "app-a": "^1.0.0", "big-data": "1.0.0" }),
    );
    let home = crate::cargo::cargo_home(&t.join("cargo-a"), &format!("{}/cargo/index/", a.url));
    let crate_app = crate::cargo::project(&t.join("cargo-app"), &[("app-core", "1")]);
    assert_success(
        &crate::cargo::cargo(&home, &crate_app, &["generate-lockfile"]),
        "cargo generate-lockfile",
    );
    let index = pypi.index();
    let requirements = t.join("requirements.txt");
    std::fs::write(
        &requirements,
        format!(
            "alpha-lib==1.0.0 \\\n    --hash=sha256:{}\nbeta-core==2.0.0 \\\n    --hash=sha256:{}\n",
            index.file("alpha_lib-1.0.0-py3-none-any.whl").sha256(),
            index.file("Beta_Core-2.0.0-py3-none-any.whl").sha256()
        ),
    )
    .expect("requirements.txt");
    let apt_a = apt_client(
        &t.join("apt-a"),
        &archive.keyring,
        &format!("{}/apt/test", a.url),
    );
    assert_success(&apt_a.run(&["update"]), "apt-get update through A");
    let packages = t.join("packages.list");
    std::fs::write(
        &packages,
        "cairn-hello\nlibcairn-test++1\ncairn-data\tinstall\n",
    )
    .expect("list");
    assert_eq!(
        npm.hits("big-data/-/big-data-1.0.0.tgz"),
        0,
        "tarballs fetched early"
    );

    // Prefetch into A: every file, verified against the lockfiles too.
    let package_lock = app.join("package-lock.json");
    let cargo_lock = crate_app.join("Cargo.lock");
    let apt_list = format!("apt:{}", packages.display());
    let lockfiles = [
        "--lockfile",
        package_lock.to_str().expect("path"),
        "--lockfile",
        cargo_lock.to_str().expect("path"),
        "--lockfile",
        requirements.to_str().expect("path"),
        "--lockfile",
        &apt_list,
    ];
    let data_a_arg = data_a.to_str().expect("path");
    let listen_a = format!("127.0.0.1:{}", port_of(&a.url));
    // The suites the offline machines' sources name.
    let apt_sources = t.join("offline.list");
    std::fs::write(
        &apt_sources,
        format!(
            "deb [signed-by={}] http://offline.invalid/apt/test stable main\n",
            archive.keyring.display()
        ),
    )
    .expect("sources");
    let apt_sources = apt_sources.to_str().expect("path");
    let mut args = vec![
        "prefetch",
        "--data-dir",
        data_a_arg,
        "--listen",
        &listen_a,
        "--apt-sources",
        apt_sources,
    ];
    args.extend(lockfiles);
    let out = cairn(&args);
    assert!(out.status.success(), "prefetch failed:\n{}", text(&out));
    assert!(text(&out).contains("prefetched"), "{}", text(&out));
    assert_eq!(npm.hits("big-data/-/big-data-1.0.0.tgz"), 1);
    let deb = archive.deb("libcairn-test++1");
    assert_eq!(apt.hits.get(&format!("debian/{}", deb.filename)), 1);

    // A lockfile naming something no registry has: a non-zero exit naming it.
    let bad = t.join("requirements-bad.txt");
    std::fs::write(
        &bad,
        format!("alpha-lib==1.0.0 --hash=sha256:{}\n", "00".repeat(32)),
    )
    .expect("write");
    let out = cairn(&[
        "prefetch",
        "--data-dir",
        data_a_arg,
        "--listen",
        &listen_a,
        "--lockfile",
        bad.to_str().expect("path"),
    ]);
    assert!(!out.status.success());
    assert!(
        text(&out).contains("pypi alpha-lib==1.0.0"),
        "{}",
        text(&out)
    );

    // The node's whole state as a snapshot, pinned, and exported again by its root.
    let out = cairn(&["snapshot", "--data-dir", data_a_arg]);
    assert!(out.status.success(), "snapshot failed:\n{}", text(&out));
    let state = String::from_utf8_lossy(&out.stdout).trim().to_owned();
    let out = cairn(&["pin", "--data-dir", data_a_arg, &state]);
    assert!(
        text(&out).contains(&format!("pinned {state}")),
        "{}",
        text(&out)
    );
    let whole = t.join("whole.car");
    let out = cairn(&[
        "export",
        "--data-dir",
        data_a_arg,
        "--snapshot",
        &state,
        "-o",
        whole.to_str().expect("path"),
    ]);
    assert!(
        out.status.success(),
        "export --snapshot failed:\n{}",
        text(&out)
    );
    assert_eq!(String::from_utf8_lossy(&out.stdout).trim(), state);
    let out = cairn(&[
        "pin",
        "--data-dir",
        data_a_arg,
        "bafyreigh2akiscaildcqabsyg3dfr6chu3fgpregiymsck7e7aqa4s52zy",
    ]);
    assert!(
        !out.status.success(),
        "pinned a CID that is no snapshot of this node"
    );

    // Export what the lockfiles need.
    let car = t.join("site.car");
    let mut args = vec![
        "export",
        "--data-dir",
        data_a_arg,
        "-o",
        car.to_str().expect("path"),
    ];
    args.extend(lockfiles);
    let out = cairn(&args);
    assert!(out.status.success(), "export failed:\n{}", text(&out));
    let root = String::from_utf8_lossy(&out.stdout).trim().to_owned();
    assert!(root.starts_with("bafyrei"), "snapshot root {root:?}");
    a.stop();

    // The reference JS CAR reader verifies every block and rebuilds an artifact from them.
    let tarball = npm.registry().version("big-data", "1.0.0").tarball.clone();
    let tarball_root = cairn_mirror::unixfs::root_of(&tarball).to_string();
    let bytes = std::fs::read(&car).expect("car");
    let report = crate::gateway::verify_car(t, "copy.car", &bytes, &tarball_root, &[]);
    assert_eq!(report["roots"], serde_json::json!([root]));
    assert_eq!(
        report["sha256"].as_str(),
        Some(hex::encode(sha2::Sha256::digest(&tarball)).as_str())
    );

    // A truncated and a tampered bundle are refused, leaving the empty store empty.
    let data_b = t.join("b");
    let data_b_arg = data_b.to_str().expect("path");
    let truncated = t.join("truncated.car");
    std::fs::write(&truncated, &bytes[..bytes.len() * 2 / 3]).expect("write");
    let mut tampered_bytes = bytes.clone();
    let at = bytes.len() - 1000;
    tampered_bytes[at] ^= 0x40;
    let tampered = t.join("tampered.car");
    std::fs::write(&tampered, &tampered_bytes).expect("write");
    for (bad, what) in [(&truncated, "truncated"), (&tampered, "tampered")] {
        let out = cairn(&[
            "import",
            "--data-dir",
            data_b_arg,
            "--apt-upstream",
            &apt_upstream,
            "--apt-keyring",
            &keyring,
            bad.to_str().expect("path"),
        ]);
        assert!(!out.status.success(), "{what} CAR imported");
        let message = text(&out);
        assert!(message.contains("was not imported"), "{what}: {message}");
        let status = cairn(&["status", "--json", "--data-dir", data_b_arg]);
        let report: serde_json::Value =
            serde_json::from_slice(&status.stdout).expect("status json");
        assert_eq!(
            report["stats"],
            serde_json::json!([]),
            "{what} left something"
        );
    }

    // Import, then serve offline on A's address with every upstream dead.
    // The archive and its keyring, as `serve` takes them: the bundle's `InRelease` files are
    // checked against it.
    // Pinned as it is imported: what the bundle brought is never evicted.
    let out = cairn(&[
        "import",
        "--pin",
        "--data-dir",
        data_b_arg,
        "--apt-upstream",
        &apt_upstream,
        "--apt-keyring",
        &keyring,
        car.to_str().expect("path"),
    ]);
    assert!(out.status.success(), "import failed:\n{}", text(&out));
    assert_eq!(last_line(&out), root);
    let pins = cairn(&["pins", "--json", "--data-dir", data_b_arg]);
    let pins: serde_json::Value = serde_json::from_slice(&pins.stdout).expect("pins JSON");
    assert_eq!(pins[0]["root"], root.as_str(), "{pins}");
    assert!(
        pins[0]["artifacts"].as_u64().is_some_and(|n| n > 0),
        "{pins}"
    );
    let dead = "http://127.0.0.1:9/";
    let dead_apt = format!("test={dead}debian/");
    let b = Cairn::start(
        &data_b,
        &[
            "--offline",
            "--listen",
            &listen_a,
            "--npm-upstream",
            dead,
            "--cargo-upstream",
            dead,
            "--pypi-upstream",
            dead,
            "--apt-upstream",
            &dead_apt,
            "--apt-keyring",
            &keyring,
        ],
    );
    let env_b = ClientEnv::new(&t.join("npm-client-b"), &b.npm());
    assert_success(&env_b.run("npm", &["ci"], &app), "npm ci from the bundle");
    assert!(app.join("node_modules/big-data/package.json").exists());
    let home_b = crate::cargo::cargo_home(&t.join("cargo-b"), &format!("{}/cargo/index/", b.url));
    assert_success(
        &crate::cargo::cargo(&home_b, &crate_app, &["fetch", "--locked"]),
        "cargo fetch from the bundle",
    );
    let pip_venv = crate::pypi::venv(&t.join("venv-b"));
    let download = t.join("pip-download");
    let index_url = format!("{}/pypi/simple/", b.url);
    let out = crate::pypi::python_tool(
        &pip_venv.join("bin/pip"),
        &[
            "download",
            "--no-cache-dir",
            "--require-hashes",
            "--index-url",
            &index_url,
            "-d",
            download.to_str().expect("path"),
            "-r",
            requirements.to_str().expect("path"),
        ],
        &t.join("pip-home"),
    );
    assert_success(&out, "pip download from the bundle");
    let apt_b = apt_client(
        &t.join("apt-b"),
        &archive.keyring,
        &format!("{}/apt/test", b.url),
    );
    let out = apt_b.run(&["update"]);
    assert_success(&out, "apt-get update from the bundle");
    fake_apt::assert_no_warnings(&out, "apt-get update from the bundle");
    let out = apt_b.run(&["install", "--download-only", "-y", "cairn-hello"]);
    assert_success(&out, "apt-get install from the bundle");
    b.stop();
}

/// A popular package's packument: thousands of versions, several MiB, as the real ones are.
fn popular_registry(versions: usize) -> Registry {
    let mut registry = Registry::default();
    for i in 0..versions {
        registry.publish("popular", &format!("1.{}.{}", i / 100, i % 100), &[], &[]);
    }
    registry
}

#[test]
fn a_packument_over_the_block_limit_goes_through_a_bundle_to_npm_ci_offline() {
    let tmp = tempfile::tempdir().expect("tempdir");
    let t = tmp.path();
    let npm = FakeNpm::start(popular_registry(8000));
    let upstream = crate::support::get(&format!("{}popular", npm.url));
    assert!(
        upstream.body.len() as u64 > cairn_mirror::car::MAX_BLOCK_SIZE + (1 << 20),
        "the packument has only {} bytes",
        upstream.body.len()
    );
    let data_a = t.join("a");
    let a = Cairn::start(&data_a, &["--npm-upstream", &npm.url]);
    let app = npm_lockfile(&a, t, "app", serde_json::json!({ "popular": "^1.0.0" }));
    let lock = app.join("package-lock.json");
    let lock_arg = lock.to_str().expect("path");
    let data_a_arg = data_a.to_str().expect("path");
    let listen_a = format!("127.0.0.1:{}", port_of(&a.url));
    let out = cairn(&[
        "prefetch",
        "--data-dir",
        data_a_arg,
        "--listen",
        &listen_a,
        "--lockfile",
        lock_arg,
    ]);
    assert!(out.status.success(), "prefetch failed:\n{}", text(&out));
    // Exported while A still runs, right after the prefetch: a prefetch's downloads end only
    // once indexed, so the export finds every file.
    let car = t.join("popular.car");
    let out = cairn(&[
        "export",
        "--data-dir",
        data_a_arg,
        "--lockfile",
        lock_arg,
        "-o",
        car.to_str().expect("path"),
    ]);
    assert!(
        out.status.success(),
        "export failed:\n{}\nA:\n{}",
        text(&out),
        a.logs()
    );
    let root = String::from_utf8_lossy(&out.stdout).trim().to_owned();
    a.stop();

    // A fresh node imports it, saying what it wrote.
    let data_b = t.join("b");
    let data_b_arg = data_b.to_str().expect("path");
    let out = cairn(&[
        "import",
        "--data-dir",
        data_b_arg,
        car.to_str().expect("path"),
    ]);
    assert!(out.status.success(), "import failed:\n{}", text(&out));
    assert_eq!(last_line(&out), root);
    let summary = String::from_utf8_lossy(&out.stdout).into_owned();
    assert!(summary.contains("documents: 1 written"), "{summary}");
    assert!(
        summary.contains("artifacts: 1 in the bundle, 1 written"),
        "{summary}"
    );
    // Again: everything is held already.
    let out = cairn(&[
        "import",
        "--data-dir",
        data_b_arg,
        car.to_str().expect("path"),
    ]);
    assert!(
        out.status.success(),
        "second import failed:\n{}",
        text(&out)
    );
    let summary = String::from_utf8_lossy(&out.stdout).into_owned();
    assert!(
        summary.contains("documents: 0 written, 1 kept"),
        "{summary}"
    );
    assert!(
        summary.contains("0 written (0 bytes), 1 held already"),
        "{summary}"
    );

    // Offline, no peers, upstream dead: npm ci from the imported packument.
    let dead = "http://127.0.0.1:9/";
    // On A's address: the lockfile's `resolved` URLs name it.
    let b = Cairn::start(
        &data_b,
        &["--offline", "--listen", &listen_a, "--npm-upstream", dead],
    );
    let env_b = ClientEnv::new(&t.join("npm-client-b"), &b.npm());
    assert_success(&env_b.run("npm", &["ci"], &app), "npm ci from the bundle");
    let installed: serde_json::Value = serde_json::from_slice(
        &std::fs::read(app.join("node_modules/popular/package.json")).expect("installed"),
    )
    .expect("package.json");
    let locked: serde_json::Value =
        serde_json::from_slice(&std::fs::read(&lock).expect("lockfile")).expect("lockfile json");
    assert_eq!(installed["version"], "1.79.99");
    assert_eq!(
        locked["packages"]["node_modules/popular"]["version"],
        "1.79.99"
    );
    // And the packument itself, whole, for a client resolving anew.
    let served = crate::support::get(&format!("{}popular", b.npm()));
    assert_eq!(served.status, 200);
    let served: serde_json::Value = serde_json::from_slice(&served.body).expect("packument");
    assert_eq!(
        served["versions"].as_object().map(serde_json::Map::len),
        Some(8000)
    );
    b.stop();
}

/// `cairn prefetch` with no node at `--listen` (so it runs one in its own process), with the
/// given `CAIRN_LOG` (none: the default). Returns its output.
fn prefetch_in_process(
    config: &Path,
    data: &Path,
    listen: &str,
    lockfile: &Path,
    log: Option<&str>,
) -> Output {
    let mut command = Command::new(env!("CARGO_BIN_EXE_cairn"));
    command
        .args(["prefetch", "--config"])
        .arg(config)
        .arg("--data-dir")
        .arg(data)
        .args(["--listen", listen, "--lockfile"])
        .arg(lockfile)
        .env("XDG_CONFIG_HOME", "/nonexistent")
        .env_remove("CAIRN_LOG")
        .env_remove("RUST_LOG");
    if let Some(log) = log {
        command.env("CAIRN_LOG", log);
    }
    command.output().expect("cairn prefetch")
}

#[test]
fn prefetch_with_its_own_node_logs_trouble_not_chatter() {
    let tmp = tempfile::tempdir().expect("tempdir");
    let t = tmp.path();
    let npm = FakeNpm::start(crate::npm::registry());
    let a = Cairn::start(&t.join("a"), &["--npm-upstream", &npm.url]);
    let app = npm_lockfile(
        &a,
        t,
        "app",
        serde_json::json!({ "app-a": "^1.0.0", "big-data": "1.0.0" }),
    );
    // Nothing answers here any more: prefetch runs its own node.
    let listen = format!("127.0.0.1:{}", port_of(&a.url));
    a.stop();
    let config = t.join("cairn.toml");
    std::fs::write(&config, format!("npm-upstream = {:?}\n", npm.url)).expect("config");
    // One tarball comes tampered: the node logs an error, and prefetch names the item.
    npm.faults
        .tampered
        .lock()
        .expect("faults")
        .insert("big-data/-/big-data-1.0.0.tgz".into());
    let lock = app.join("package-lock.json");

    let out = prefetch_in_process(&config, &t.join("b"), &listen, &lock, None);
    let stderr = String::from_utf8_lossy(&out.stderr).into_owned();
    assert!(
        !out.status.success(),
        "a tampered tarball was prefetched:\n{stderr}"
    );
    assert!(stderr.contains("npm big-data@1.0.0"), "{stderr}");
    assert!(stderr.contains("prefetched 4 of 5 items"), "{stderr}");
    // The node's error is there, on a line of its own; its routine chatter is not.
    assert!(
        stderr
            .lines()
            .any(|l| l.contains(" ERROR ") && l.contains("digest mismatch")),
        "{stderr}"
    );
    assert!(!stderr.contains(" INFO "), "{stderr}");

    // CAIRN_LOG still asks for more, and gets it.
    let out = prefetch_in_process(&config, &t.join("c"), &listen, &lock, Some("info"));
    let stderr = String::from_utf8_lossy(&out.stderr).into_owned();
    assert!(stderr.contains(" INFO "), "{stderr}");
}
