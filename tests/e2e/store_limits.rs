//! The store's upkeep with the real clients: a node with `--max-size` fed more than that through
//! npm, cargo or pip stays under it, keeps what a pinned snapshot names and what was used last,
//! and the last project again is served from the cache alone; an evicted package is fetched
//! again; a disk running short makes room; `cairn gc` beside a running node removes leftovers
//! and nothing else. A node with `--max-size-npm` trims npm's files alone, pip's stay; a bad
//! per-ecosystem limit stops `serve` with an error naming it.

use std::time::Duration;

use crate::bundle::cairn;
use crate::fake_npm::{FakeNpm, Registry, noise};
use crate::support::{Cairn, ClientEnv, assert_success, get, project, wait_for};

const MIB: usize = 1 << 20;
/// Twelve tarballs of about 1.06 MiB: the four pinned and the four of the last project fit under
/// the limit's low-water mark (90%), the four between do not.
const LIMIT: u64 = 10 * MIB as u64;

/// Twelve packages `p1`…`p12`, each a tarball of about 1 MiB (incompressible).
fn registry() -> Registry {
    let mut r = Registry::default();
    for i in 1..=12u64 {
        r.publish(
            &format!("p{i}"),
            "1.0.0",
            &[],
            &[("data.bin", noise(MIB, 100 + 2 * i))],
        );
    }
    r
}

fn tarball(i: u32) -> String {
    format!("p{i}/-/p{i}-1.0.0.tgz")
}

/// `npm install` of a project depending on `p{from}`…`p{to}` in a fresh client; the project's
/// directory.
fn install(
    tmp: &std::path::Path,
    node: &Cairn,
    name: &str,
    packages: std::ops::RangeInclusive<u32>,
) -> std::path::PathBuf {
    let env = ClientEnv::new(&tmp.join(format!("client-{name}")), &node.npm());
    let dependencies: serde_json::Map<String, serde_json::Value> = packages
        .map(|i| (format!("p{i}"), serde_json::json!("1.0.0")))
        .collect();
    let dir = project(&tmp.join(name), serde_json::Value::Object(dependencies));
    assert_success(
        &env.run("npm", &["install"], &dir),
        &format!("npm install ({name})"),
    );
    dir
}

#[test]
fn a_node_over_its_size_limit_evicts_the_least_recently_used_and_keeps_pins_and_recent_installs() {
    let tmp = tempfile::tempdir().expect("tempdir");
    let fake = FakeNpm::start(registry());
    let data = tmp.path().join("data");
    let limit = LIMIT.to_string();
    let node = Cairn::start(&data, &["--npm-upstream", &fake.url, "--max-size", &limit]);

    let first = install(tmp.path(), &node, "first", 1..=4);
    // Pin exactly what the first project's lockfile needs (`p1`…`p4`), beside the running node.
    let data_arg = data.to_str().expect("path");
    let lockfile = first.join("package-lock.json");
    let pinned = cairn(&[
        "pin",
        "--lockfile",
        lockfile.to_str().expect("path"),
        "--data-dir",
        data_arg,
    ]);
    assert!(
        pinned.status.success(),
        "{}",
        String::from_utf8_lossy(&pinned.stderr)
    );
    let root = String::from_utf8_lossy(&pinned.stdout)
        .trim()
        .strip_prefix("pinned ")
        .expect("the pinned root")
        .to_owned();
    let pins = cairn(&["pins", "--json", "--data-dir", data_arg]);
    let pins: serde_json::Value = serde_json::from_slice(&pins.stdout).expect("pins JSON");
    assert_eq!(pins[0]["root"], root.as_str());
    assert_eq!(pins[0]["artifacts"], 4, "{pins}");
    wait_for(Duration::from_secs(60), "the pin in /metrics", || {
        (node.metric("cairn_pinned_snapshots") == 1.0).then_some(())
    });
    install(tmp.path(), &node, "second", 5..=8);
    let last = install(tmp.path(), &node, "third", 9..=12);

    // About 12.7 MiB went through a 10 MiB store: once the last commit is counted (it may land
    // just after npm has its bytes), at least three files went and it settles under the limit.
    wait_for(Duration::from_secs(60), "the store under its limit", || {
        let held = node.metric("cairn_store_bytes");
        let evicted = node.metric("cairn_evicted_files_total");
        (held > 0.0 && held <= LIMIT as f64 && evicted >= 3.0).then_some(())
    });
    assert_eq!(node.metric("cairn_store_limit_bytes"), LIMIT as f64);
    // `cairn status`, beside the node, sees the same store.
    let status = cairn(&[
        "status",
        "--json",
        "--data-dir",
        data.to_str().expect("path"),
    ]);
    assert!(
        status.status.success(),
        "{}",
        String::from_utf8_lossy(&status.stderr)
    );
    let status: serde_json::Value = serde_json::from_slice(&status.stdout).expect("status JSON");
    assert_eq!(status["store"]["pinned_snapshots"], 1);
    let held_now = status["store"]["held_bytes"].as_u64().expect("held_bytes");
    assert!(held_now > 0 && held_now <= LIMIT, "{status}");

    // The last project again, on a fresh machine: every tarball from the cache.
    let env = ClientEnv::new(&tmp.path().join("client-again"), &node.npm());
    std::fs::remove_dir_all(last.join("node_modules")).expect("node_modules");
    assert_success(&env.run("npm", &["ci"], &last), "npm ci (third, again)");
    for i in 9..=12 {
        assert_eq!(
            fake.hits(&tarball(i)),
            1,
            "{} was fetched again",
            tarball(i)
        );
    }
    // Pinned packages stayed whatever their age.
    for i in 1..=4 {
        let reply = get(&format!("{}{}", node.npm(), tarball(i)));
        assert_eq!(reply.status, 200);
        assert_eq!(
            fake.hits(&tarball(i)),
            1,
            "pinned {} was evicted",
            tarball(i)
        );
    }
    // Of the middle project's four (downloaded in parallel, so in any order), at least three
    // had to go, whatever the passes' timing, and come back from upstream whole.
    let mut refetched = 0;
    for i in 5..=8 {
        let reply = get(&format!("{}{}", node.npm(), tarball(i)));
        assert_eq!(reply.status, 200);
        let name = format!("p{i}");
        assert_eq!(reply.body, fake.registry().version(&name, "1.0.0").tarball);
        refetched += fake.hits(&tarball(i)) - 1;
    }
    assert!(
        refetched >= 3,
        "only {refetched} of the least recently used went"
    );
    assert!(
        node.logs()
            .contains("evicted least recently used artifacts"),
        "{}",
        node.logs()
    );
    // Unpinned, the snapshot keeps nothing any more; unpinning it again is an error naming it.
    let unpinned = cairn(&["unpin", &root, "--data-dir", data_arg]);
    assert!(
        unpinned.status.success(),
        "{}",
        String::from_utf8_lossy(&unpinned.stderr)
    );
    let pins = cairn(&["pins", "--json", "--data-dir", data_arg]);
    assert_eq!(String::from_utf8_lossy(&pins.stdout).trim(), "[]");
    let again = cairn(&["unpin", &root, "--data-dir", data_arg]);
    assert!(!again.status.success());
    assert!(String::from_utf8_lossy(&again.stderr).contains(&root));
}

/// The store's files, under `blobs/`.
fn blob_count(data: &std::path::Path) -> usize {
    crate::support::files_under(&data.join("blobs")).len()
}

#[test]
fn a_disk_running_short_evicts_to_make_room_and_with_everything_pinned_streams_unkept() {
    let tmp = tempfile::tempdir().expect("tempdir");
    let fake = FakeNpm::start(registry());
    let disk = crate::npm::Tmpfs::mount(&tmp.path().join("disk"), "6m");
    let data = disk.0.join("data");
    let node = Cairn::start(&data, &["--npm-upstream", &fake.url, "--min-free", "1M"]);
    let fetch = |i: u32| {
        let reply = get(&format!("{}{}", node.npm(), tarball(i)));
        assert_eq!(reply.status, 200, "{}: {}", tarball(i), reply.text);
        let name = format!("p{i}");
        assert!(
            reply.body == fake.registry().version(&name, "1.0.0").tarball,
            "{name}: wrong bytes"
        );
    };

    // Tarballs of about 1.06 MiB on a 6 MiB disk that keeps 1 MiB free: four fit.
    for i in 1..=4 {
        fetch(i);
    }
    assert_eq!(blob_count(&data), 4);
    // The fifth does not: its client gets it whole all the same (npm declares no size, so the
    // lack of room shows with upstream's headers), and the oldest goes to make room.
    fetch(5);
    wait_for(Duration::from_secs(30), "an eviction to make room", || {
        node.logs()
            .contains("to make room on the disk")
            .then_some(())
    });
    fetch(6);
    wait_for(Duration::from_secs(30), "p6 kept", || {
        (get(&format!("{}{}", node.npm(), tarball(6)))
            .headers
            .contains_key("x-ipfs-roots"))
        .then_some(())
    });
    assert_eq!(fake.hits(&tarball(6)), 1, "p6 was kept");
    let before = fake.hits(&tarball(1));
    fetch(1);
    assert!(
        fake.hits(&tarball(1)) > before,
        "the least recently used went to make room"
    );

    // Everything held pinned: nothing may go, and a new package is streamed unkept.
    let pinned = cairn(&["pin", "--data-dir", data.to_str().expect("path")]);
    assert!(
        pinned.status.success(),
        "{}",
        String::from_utf8_lossy(&pinned.stderr)
    );
    let pinned_files = crate::support::files_under(&data.join("blobs"));
    // Four more: at most one fits beside the pinned ones; the others are streamed unkept.
    for i in 7..=10 {
        fetch(i);
    }
    let after = crate::support::files_under(&data.join("blobs"));
    for file in &pinned_files {
        assert!(
            after.contains(file),
            "pinned {} was evicted",
            file.display()
        );
    }
    assert!(
        after.len() <= pinned_files.len() + 1,
        "{} files kept",
        after.len()
    );
    assert!(
        crate::support::files_under(&data.join("tmp")).is_empty(),
        "temp files left"
    );
    assert!(
        node.logs().contains("no room in the store"),
        "{}",
        node.logs()
    );
}

#[test]
fn gc_beside_a_running_node_removes_the_leftovers_and_nothing_else() {
    let tmp = tempfile::tempdir().expect("tempdir");
    let fake = FakeNpm::start(registry());
    let data = tmp.path().join("data");
    let node = Cairn::start(&data, &["--npm-upstream", &fake.url]);
    install(tmp.path(), &node, "project", 1..=3);
    let held = crate::support::files_under(&data.join("blobs"));
    assert_eq!(held.len(), 3);
    // A crash between a file's rename and its row leaves an orphan; a disk fault loses a file.
    let fan_out = held[0].parent().expect("fan-out directory");
    let orphan = fan_out.join("bafkreihdwdcefgh4dqkjv67uzcmw7ojee6xedzdetojuzjevtenxquvyku");
    std::fs::write(&orphan, b"left by a crash").expect("orphan");
    std::fs::remove_file(&held[2]).expect("lose a file");
    let data_arg = data.to_str().expect("path");

    let dry = cairn(&[
        "gc",
        "--dry-run",
        "--json",
        "--min-age",
        "1s",
        "--data-dir",
        data_arg,
    ]);
    assert!(
        dry.status.success(),
        "{}",
        String::from_utf8_lossy(&dry.stderr)
    );
    let dry: serde_json::Value = serde_json::from_slice(&dry.stdout).expect("gc JSON");
    assert_eq!(dry["missing_files"], 1, "{dry}");
    assert!(orphan.exists(), "a dry run removed a file");

    std::thread::sleep(Duration::from_millis(1100));
    let report = cairn(&["gc", "--json", "--min-age", "1s", "--data-dir", data_arg]);
    assert!(
        report.status.success(),
        "{}",
        String::from_utf8_lossy(&report.stderr)
    );
    let report: serde_json::Value = serde_json::from_slice(&report.stdout).expect("gc JSON");
    assert_eq!(report["orphan_files"], 1, "{report}");
    assert_eq!(report["missing_files"], 1, "{report}");
    assert!(!orphan.exists());
    for file in &held[..2] {
        assert!(file.exists(), "gc removed the held {}", file.display());
    }
    // Nothing is left to remove, and every package is served: the lost one fetched again.
    let again = cairn(&["gc", "--json", "--min-age", "0s", "--data-dir", data_arg]);
    let again: serde_json::Value = serde_json::from_slice(&again.stdout).expect("gc JSON");
    assert_eq!(
        (
            again["orphan_files"].as_u64(),
            again["missing_files"].as_u64()
        ),
        (Some(0), Some(0)),
        "{again}"
    );
    for i in 1..=3 {
        let reply = get(&format!("{}{}", node.npm(), tarball(i)));
        assert_eq!(reply.status, 200);
        let name = format!("p{i}");
        assert!(
            reply.body == fake.registry().version(&name, "1.0.0").tarball,
            "{name}"
        );
    }
}

#[test]
fn gc_after_a_crash_mid_download_and_a_refused_import_removes_the_leftovers_and_nothing_else() {
    let tmp = tempfile::tempdir().expect("tempdir");
    let fake = FakeNpm::start(registry());
    fake.faults
        .throttled
        .lock()
        .expect("faults")
        .insert(tarball(5), (16 << 10, Duration::from_millis(50)));
    let data = tmp.path().join("data");
    let data_arg = data.to_str().expect("path");
    let node = Cairn::start(&data, &["--npm-upstream", &fake.url]);
    install(tmp.path(), &node, "project", 1..=2);
    let held = crate::support::files_under(&data.join("blobs"));
    assert_eq!(held.len(), 2);

    // A bundle from another node, one byte of a tarball flipped: its import is refused.
    let other_data = tmp.path().join("other");
    let other = Cairn::start(&other_data, &["--npm-upstream", &fake.url]);
    install(tmp.path(), &other, "elsewhere", 3..=4);
    let bundle = tmp.path().join("other.car");
    let exported = cairn(&[
        "export",
        "--all",
        "-o",
        bundle.to_str().expect("path"),
        "--data-dir",
        other_data.to_str().expect("path"),
    ]);
    assert!(
        exported.status.success(),
        "{}",
        String::from_utf8_lossy(&exported.stderr)
    );
    let mut bytes = std::fs::read(&bundle).expect("bundle");
    let middle = bytes.len() / 2;
    bytes[middle] ^= 0x20;
    std::fs::write(&bundle, bytes).expect("bundle");

    // kill -9 in the middle of a slow download: its partial file stays in tmp/.
    let url = format!("{}{}", node.npm(), tarball(5));
    // The request fails when the node dies (its thread may panic: that is expected).
    let slow = std::thread::spawn(move || get(&url));
    let partial = wait_for(Duration::from_secs(60), "a download under way", || {
        crate::support::files_under(&data.join("tmp"))
            .into_iter()
            .find(|f| std::fs::metadata(f).is_ok_and(|m| m.len() > 0))
    });
    node.kill();
    let _ = slow.join();
    assert!(partial.exists());

    let refused = cairn(&[
        "import",
        bundle.to_str().expect("path"),
        "--data-dir",
        data_arg,
    ]);
    assert!(!refused.status.success(), "a tampered bundle was imported");

    // The crash's leftover is a day old by the time anyone collects it.
    let two_days_ago = std::time::SystemTime::now() - Duration::from_secs(2 * 24 * 3600);
    std::fs::File::options()
        .write(true)
        .open(&partial)
        .and_then(|f| f.set_modified(two_days_ago))
        .expect("backdate");
    let report = cairn(&["gc", "--json", "--min-age", "0s", "--data-dir", data_arg]);
    assert!(
        report.status.success(),
        "{}",
        String::from_utf8_lossy(&report.stderr)
    );
    let report: serde_json::Value = serde_json::from_slice(&report.stdout).expect("gc JSON");
    assert_eq!(report["temp_files"], 1, "{report}");
    assert_eq!(
        report["orphan_files"], 0,
        "the refused import left nothing: {report}"
    );
    assert_eq!(report["missing_files"], 0, "{report}");
    assert!(!partial.exists());
    assert_eq!(crate::support::files_under(&data.join("blobs")), held);

    // Started again, the node serves what it held from its store, and fetches the rest.
    let node = Cairn::start(&data, &["--npm-upstream", &fake.url]);
    for i in 1..=2 {
        assert_eq!(get(&format!("{}{}", node.npm(), tarball(i))).status, 200);
        assert_eq!(
            fake.hits(&tarball(i)),
            1,
            "{} was fetched again",
            tarball(i)
        );
    }
    fake.faults.throttled.lock().expect("faults").clear();
    let reply = get(&format!("{}{}", node.npm(), tarball(5)));
    assert!(reply.body == fake.registry().version("p5", "1.0.0").tarball);
}

#[test]
fn gc_removes_an_unpinned_snapshot_and_keeps_a_pinned_one_whole_for_export() {
    let tmp = tempfile::tempdir().expect("tempdir");
    let fake = FakeNpm::start(registry());
    let data = tmp.path().join("data");
    let data_arg = data.to_str().expect("path");
    let node = Cairn::start(&data, &["--npm-upstream", &fake.url]);
    let run = |args: &[&str]| {
        let mut all = args.to_vec();
        all.extend(["--data-dir", data_arg]);
        let out = cairn(&all);
        assert!(
            out.status.success(),
            "cairn {args:?}: {}",
            String::from_utf8_lossy(&out.stderr)
        );
        String::from_utf8_lossy(&out.stdout).trim().to_owned()
    };
    install(tmp.path(), &node, "one", 1..=1);
    let unpinned = run(&["snapshot"]);
    install(tmp.path(), &node, "two", 2..=2);
    let pinned = run(&["pin"])
        .strip_prefix("pinned ")
        .expect("the pinned root")
        .to_owned();
    assert_ne!(unpinned, pinned);

    let report: serde_json::Value =
        serde_json::from_str(&run(&["gc", "--json", "--min-age", "0s"])).expect("gc JSON");
    assert!(report["snapshot_blocks"].as_u64() >= Some(1), "{report}");
    assert_eq!(report["orphan_files"], 0, "{report}");
    // The pinned snapshot exports whole, its documents and files included; the other is gone.
    let car = tmp.path().join("pinned.car");
    run(&[
        "export",
        "--snapshot",
        &pinned,
        "-o",
        car.to_str().expect("path"),
    ]);
    assert!(std::fs::metadata(&car).expect("the CAR").len() > 2 * MIB as u64);
    let gone = cairn(&[
        "export",
        "--snapshot",
        &unpinned,
        "-o",
        tmp.path().join("gone.car").to_str().expect("path"),
        "--data-dir",
        data_arg,
    ]);
    assert!(!gone.status.success(), "an unpinned snapshot survived gc");
    assert!(String::from_utf8_lossy(&gone.stderr).contains(&unpinned));
    // A second gc finds nothing more.
    let again: serde_json::Value =
        serde_json::from_str(&run(&["gc", "--json", "--min-age", "0s"])).expect("gc JSON");
    assert_eq!(again["snapshot_blocks"], 0, "{again}");
}

#[test]
fn cargo_through_a_node_over_its_size_limit_keeps_the_last_project_whole() {
    use crate::cargo::{cargo, cargo_home, project};
    let names = [
        "lim-a", "lim-b", "lim-c", "lim-d", "lim-e", "lim-f", "lim-g", "lim-h",
    ];
    let mut registry = crate::fake_cargo::Registry::default();
    for name in names {
        registry.publish(name, "1.0.0", &[], false);
    }
    let fake = crate::fake_cargo::FakeCargo::start(registry);
    let size = |name: &str| fake.registry().release(name, "1.0.0").file.len() as u64;
    // Room for five crates: the last project's four fit under the low-water mark (90%).
    let limit: u64 = names[..5].iter().map(|n| size(n)).sum();
    let tmp = tempfile::tempdir().expect("tempdir");
    let data = tmp.path().join("data");
    let node = Cairn::start(
        &data,
        &[
            "--cargo-upstream",
            &fake.index_url,
            "--max-size",
            &limit.to_string(),
        ],
    );
    let registry_url = format!("{}/cargo/index/", node.url);
    let fetch = |project_name: &str, crates: &[&str]| {
        let deps: Vec<(&str, &str)> = crates.iter().map(|c| (*c, "1")).collect();
        let app = project(&tmp.path().join(project_name), &deps);
        let home = cargo_home(
            &tmp.path().join(format!("home-{}", fake.total_hits())),
            &registry_url,
        );
        assert_success(
            &cargo(&home, &app, &["fetch"]),
            &format!("cargo fetch ({project_name})"),
        );
        app
    };

    fetch("first", &names[..4]);
    let last = fetch("second", &names[4..]);

    wait_for(Duration::from_secs(60), "the store under its limit", || {
        let held = node.metric("cairn_store_bytes");
        (held > 0.0 && held <= limit as f64).then_some(())
    });
    assert!(node.metric("cairn_evicted_files_total") >= 3.0);
    // The last project again with an empty CARGO_HOME: nothing from upstream.
    let before = fake.total_hits();
    let home = cargo_home(&tmp.path().join("home-again"), &registry_url);
    assert_success(
        &cargo(&home, &last, &["fetch"]),
        "cargo fetch (second, again)",
    );
    assert_eq!(
        fake.total_hits(),
        before,
        "the last project was not served from the cache alone"
    );
}

#[test]
fn pip_through_a_node_over_its_size_limit_keeps_the_last_requirements_whole() {
    use crate::pypi::{python_tool, venv};
    let tmp = tempfile::tempdir().expect("tempdir");
    let names = [
        "lim-a", "lim-b", "lim-c", "lim-d", "lim-e", "lim-f", "lim-g", "lim-h",
    ];
    let mut index = crate::fake_pypi::Index::default();
    for name in names {
        index.wheel(&tmp.path().join("wheels"), name, "1.0.0", &[], None);
    }
    let fake = crate::fake_pypi::FakePypi::start(index);
    let largest = fake
        .index()
        .files()
        .iter()
        .map(|f| f.bytes.len() as u64)
        .max()
        .expect("wheels");
    // Room for six wheels (and the core metadata files derived from them): the last four and
    // theirs fit under the low-water mark (90%), the eight do not.
    let limit = 6 * largest;
    let data = tmp.path().join("data");
    let node = Cairn::start(
        &data,
        &[
            "--pypi-upstream",
            &fake.simple_url,
            "--max-size",
            &limit.to_string(),
        ],
    );
    let index_url = format!("{}/pypi/simple/", node.url);
    let python = venv(&tmp.path().join("venv"));
    let home = tmp.path().join("home");
    let download = |what: &str, projects: &[&str]| {
        let dest = tmp.path().join(format!("dl-{what}"));
        let dest = dest.to_str().expect("path");
        let mut args = vec![
            "download",
            "--no-cache-dir",
            "--no-deps",
            "-d",
            dest,
            "--index-url",
            &index_url,
        ];
        args.extend_from_slice(projects);
        assert_success(
            &python_tool(&python.join("bin/pip"), &args, &home),
            &format!("pip download ({what})"),
        );
    };

    download("first", &names[..4]);
    download("second", &names[4..]);

    wait_for(Duration::from_secs(60), "the store under its limit", || {
        let held = node.metric("cairn_store_bytes");
        (held > 0.0 && held <= limit as f64).then_some(())
    });
    assert!(node.metric("cairn_evicted_files_total") >= 1.0);
    // The last requirements again, no pip cache: nothing from upstream.
    let before = fake.total_hits();
    download("again", &names[4..]);
    assert_eq!(
        fake.total_hits(),
        before,
        "the last requirements were not served from the cache alone"
    );
}

/// Bytes of an ecosystem's artifacts a node holds, from `/metrics`.
fn ecosystem_bytes(node: &Cairn, ecosystem: &str) -> f64 {
    node.metric(&format!(
        "cairn_store_ecosystem_bytes{{ecosystem=\"{ecosystem}\"}}"
    ))
}

#[test]
fn npm_over_its_own_limit_settles_under_it_while_every_pip_file_stays() {
    use crate::pypi::{python_tool, venv};
    let tmp = tempfile::tempdir().expect("tempdir");
    let npm = FakeNpm::start(registry());
    let names = ["eco-a", "eco-b", "eco-c", "eco-d"];
    let mut index = crate::fake_pypi::Index::default();
    for name in names {
        index.wheel(&tmp.path().join("wheels"), name, "1.0.0", &[], None);
    }
    let pypi = crate::fake_pypi::FakePypi::start(index);
    // Room for four npm tarballs of about 1.06 MiB (4.25 MiB under the low-water mark of
    // 4.5 MiB); no limit for PyPI and none for the whole store.
    let npm_limit = 5 * MIB as u64;
    let data = tmp.path().join("data");
    let node = Cairn::start(
        &data,
        &[
            "--npm-upstream",
            &npm.url,
            "--pypi-upstream",
            &pypi.simple_url,
            "--max-size-npm",
            "5M",
        ],
    );
    let index_url = format!("{}/pypi/simple/", node.url);
    let python = venv(&tmp.path().join("venv"));
    let home = tmp.path().join("home");
    let download = |what: &str| {
        let dest = tmp.path().join(format!("dl-{what}"));
        let dest = dest.to_str().expect("path");
        let mut args = vec![
            "download",
            "--no-cache-dir",
            "--no-deps",
            "-d",
            dest,
            "--index-url",
            &index_url,
        ];
        args.extend_from_slice(&names);
        assert_success(
            &python_tool(&python.join("bin/pip"), &args, &home),
            &format!("pip download ({what})"),
        );
    };

    // PyPI's files first: the least recently used of the whole store, which a global pass
    // would take first.
    download("first");
    let pypi_hits = pypi.total_hits();
    install(tmp.path(), &node, "first", 1..=4);
    let last = install(tmp.path(), &node, "second", 5..=8);

    // About 8.5 MiB of npm through a 5 MiB npm limit: once the last commit is counted, the
    // first project's four went and npm settles under its limit.
    wait_for(Duration::from_secs(60), "npm under its limit", || {
        let held = ecosystem_bytes(&node, "npm");
        let evicted = node.metric("cairn_evicted_files_total");
        (held > 0.0 && held <= npm_limit as f64 && evicted >= 4.0).then_some(())
    });
    assert_eq!(
        node.metric("cairn_store_ecosystem_limit_bytes{ecosystem=\"npm\"}"),
        npm_limit as f64
    );
    assert_eq!(
        node.metric("cairn_store_limit_bytes"),
        0.0,
        "no global limit"
    );
    let metrics = get(&format!("{}/metrics", node.url)).text;
    assert!(
        !metrics.contains("cairn_store_ecosystem_limit_bytes{ecosystem=\"pypi\"}"),
        "{metrics}"
    );
    assert!(ecosystem_bytes(&node, "pypi") > 0.0, "{metrics}");
    assert!(
        node.logs()
            .contains("evicted the ecosystem's least recently used artifacts"),
        "{}",
        node.logs()
    );

    // Every pip file stayed: the same downloads again, no pip cache, nothing from upstream.
    download("again");
    assert_eq!(
        pypi.total_hits(),
        pypi_hits,
        "a PyPI file was fetched again"
    );
    // The last npm project again on a fresh machine: every tarball from the cache.
    let env = ClientEnv::new(&tmp.path().join("client-again"), &node.npm());
    std::fs::remove_dir_all(last.join("node_modules")).expect("node_modules");
    assert_success(&env.run("npm", &["ci"], &last), "npm ci (second, again)");
    for i in 5..=8 {
        assert_eq!(npm.hits(&tarball(i)), 1, "{} was fetched again", tarball(i));
    }
    // The first project's tarballs went, and come back from upstream whole.
    for i in 1..=4 {
        let reply = get(&format!("{}{}", node.npm(), tarball(i)));
        assert_eq!(reply.status, 200);
        assert_eq!(npm.hits(&tarball(i)), 2, "{} was not evicted", tarball(i));
    }

    // `cairn status`, beside the node: bytes held per ecosystem and npm's limit.
    let status = std::process::Command::new(env!("CARGO_BIN_EXE_cairn"))
        .args([
            "status",
            "--json",
            "--data-dir",
            data.to_str().expect("path"),
        ])
        .env("XDG_CONFIG_HOME", "/nonexistent")
        .env("CAIRN_MAX_SIZE_NPM", "5M")
        .output()
        .expect("cairn status");
    assert_success(&status, "cairn status");
    let status: serde_json::Value = serde_json::from_slice(&status.stdout).expect("status JSON");
    let ecosystems = &status["store"]["ecosystems"];
    assert_eq!(ecosystems["npm"]["limit_bytes"], npm_limit, "{status}");
    assert!(
        ecosystems["npm"]["held_bytes"].as_u64() > Some(0),
        "{status}"
    );
    assert!(
        ecosystems["pypi"]["held_bytes"].as_u64() > Some(0),
        "{status}"
    );
    assert!(ecosystems["pypi"]["limit_bytes"].is_null(), "{status}");
}

/// `cairn [GLOBAL] serve … [ARGS]` with `env`, which must refuse to start: its stderr. A node
/// that starts anyway is killed after a minute and the test fails.
fn serve_refused(
    data: &std::path::Path,
    global: &[&str],
    args: &[&str],
    env: &[(&str, &str)],
) -> String {
    let mut command = std::process::Command::new(env!("CARGO_BIN_EXE_cairn"));
    command
        .args(global)
        .args(["serve", "--no-p2p", "--listen", "127.0.0.1:0", "--data-dir"])
        .arg(data)
        .args(["--npm-upstream", "http://127.0.0.1:9/"])
        .args(args)
        .env("XDG_CONFIG_HOME", "/nonexistent")
        .stdout(std::process::Stdio::null())
        .stderr(std::process::Stdio::piped());
    for (name, value) in env {
        command.env(name, value);
    }
    let mut child = command.spawn().expect("spawn cairn");
    let deadline = std::time::Instant::now() + Duration::from_secs(60);
    let status = loop {
        if let Some(status) = child.try_wait().expect("wait") {
            break status;
        }
        if std::time::Instant::now() > deadline {
            let _ = child.kill();
            let _ = child.wait();
            panic!("cairn serve {args:?} {env:?} started");
        }
        std::thread::sleep(Duration::from_millis(20));
    };
    let mut stderr = String::new();
    std::io::Read::read_to_string(&mut child.stderr.take().expect("stderr"), &mut stderr)
        .expect("stderr");
    assert!(!status.success(), "{args:?} {env:?} exited 0: {stderr}");
    stderr
}

#[test]
fn a_zero_garbage_or_unknown_ecosystem_size_limit_stops_serve_with_an_error_naming_it() {
    let tmp = tempfile::tempdir().expect("tempdir");
    let data = tmp.path().join("data");
    // Flags.
    for (key, value) in [
        ("max-size-npm", "0"),
        ("max-size-cargo", "lots"),
        ("max-size-pypi", "-5G"),
        ("max-size-apt", "99999999999999999999G"),
        ("max-size-npm", "1G\nmax-size = 1"),
        ("max-size-pypi", &"9".repeat(100_000)),
    ] {
        // `--flag=VALUE`: a value starting with `-` is not read as a flag.
        let flag = format!("--{key}={value}");
        let stderr = serve_refused(&data, &[], &[&flag], &[]);
        assert!(
            stderr.contains(&format!("cairn: {key}: invalid size")),
            "{key}={value:.40}: {stderr:.400}"
        );
        assert!(stderr.len() < 4096, "the error echoes the whole value back");
    }
    // Environment variables.
    let stderr = serve_refused(&data, &[], &[], &[("CAIRN_MAX_SIZE_APT", "0B")]);
    assert!(
        stderr.contains("cairn: max-size-apt: invalid size"),
        "{stderr}"
    );
    // `cairn.toml`: a bad value, and an ecosystem that has no limit setting.
    let config = tmp.path().join("cairn.toml");
    std::fs::write(&config, "max-size-cargo = \"0\"\n").expect("config");
    let config_arg = config.to_str().expect("path");
    let stderr = serve_refused(&data, &["--config", config_arg], &[], &[]);
    assert!(
        stderr.contains("cairn: max-size-cargo: invalid size"),
        "{stderr}"
    );
    std::fs::write(&config, "max-size-foo = \"1G\"\n").expect("config");
    let stderr = serve_refused(&data, &["--config", config_arg], &[], &[]);
    assert!(
        stderr.contains("invalid config") && stderr.contains("max-size-foo"),
        "{stderr}"
    );
    // None of them left a store behind.
    assert!(!data.join("index.sqlite3").exists());
}
