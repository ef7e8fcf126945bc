//! Supply-chain policy with the real clients: under a minimum age npm resolves to the older
//! version the registry published, and `npm ci` from a lockfile pinning the young one fails
//! with the node's 403 and its reason; an `allow` rule added to `cairn.toml` lets it through
//! on the next request (the policy is reloaded without a restart); `deny` and `cutoff` refuse
//! what they name; refusals are counted in `/metrics`.

use std::path::Path;
use std::time::Duration;

use crate::fake_npm::{FakeNpm, Registry, noise};
use crate::support::{Cairn, ClientEnv, assert_success, get, project, wait_for};

const DAY_MS: i64 = 86_400_000;

fn days_ago(days: i64) -> String {
    cairn_mirror::ecosystem::time::format_rfc3339(cairn_mirror::now_ms() - days * DAY_MS)
}

/// `fresh-lib` 1.0.0 published 30 days ago and 1.1.0 yesterday; `steady` 2.0.0 60 days ago.
fn registry() -> Registry {
    let mut r = Registry::default();
    r.publish("fresh-lib", "1.0.0", &[], &[("a.js", noise(2 << 10, 1))])
        .published_at("fresh-lib", &days_ago(30));
    r.publish("fresh-lib", "1.1.0", &[], &[("a.js", noise(2 << 10, 2))])
        .published_at("fresh-lib", &days_ago(1));
    r.publish("steady", "2.0.0", &[], &[("s.js", noise(2 << 10, 3))])
        .published_at("steady", &days_ago(60));
    r
}

/// The node's own `cairn.toml` (its `XDG_CONFIG_HOME` is beside `data`).
fn write_config(data: &Path, policy: &str) {
    let dir = data.with_extension("home").join(".config/cairn");
    std::fs::create_dir_all(&dir).expect("config dir");
    let path = dir.join("cairn.toml");
    let temp = dir.join("cairn.toml.tmp");
    std::fs::write(&temp, format!("[policy]\n{policy}")).expect("cairn.toml");
    std::fs::rename(&temp, &path).expect("cairn.toml");
}

fn installed_version(app: &Path, name: &str) -> String {
    let manifest =
        std::fs::read_to_string(app.join("node_modules").join(name).join("package.json"))
            .expect("installed");
    let manifest: serde_json::Value = serde_json::from_str(&manifest).expect("json");
    manifest["version"].as_str().expect("version").to_owned()
}

#[test]
fn npm_resolves_past_young_versions_and_a_lockfile_pinning_one_gets_the_reason() {
    let tmp = tempfile::tempdir().expect("tempdir");
    let fake = FakeNpm::start(registry());
    // Before any policy, a lockfile is written that pins the young version.
    let data = tmp.path().join("data");
    let node = Cairn::start(&data, &["--npm-upstream", &fake.url]);
    let env = ClientEnv::new(&tmp.path().join("client"), &node.npm());
    let pinned = project(
        &tmp.path().join("pinned"),
        serde_json::json!({ "fresh-lib": "^1.0.0", "steady": "^2.0.0" }),
    );
    assert_success(
        &env.run("npm", &["install"], &pinned),
        "npm install (no policy)",
    );
    assert_eq!(installed_version(&pinned, "fresh-lib"), "1.1.0");
    let reloads = |n: usize| {
        wait_for(Duration::from_secs(20), "the policy reloaded", || {
            (node.logs().matches("policy reloaded").count() >= n).then_some(())
        })
    };

    // A minimum age, put in force by editing `cairn.toml`: no restart.
    write_config(&data, "min-age = \"7d\"\n");
    reloads(1);

    // Resolution skips the young version; `latest` moved back with it.
    let packument: serde_json::Value =
        serde_json::from_str(&get(&format!("{}fresh-lib", node.npm())).text).expect("json");
    assert!(packument["versions"].get("1.1.0").is_none(), "{packument}");
    assert!(packument["time"].get("1.1.0").is_none(), "{packument}");
    assert_eq!(packument["dist-tags"]["latest"], "1.0.0");
    let fresh = project(
        &tmp.path().join("fresh"),
        serde_json::json!({ "fresh-lib": "^1.0.0" }),
    );
    env.clear_cache();
    assert_success(
        &env.run("npm", &["install"], &fresh),
        "npm install under min-age",
    );
    assert_eq!(installed_version(&fresh, "fresh-lib"), "1.0.0");
    // pnpm reads the abbreviated packument: the same versions are missing from it.
    let pnpm_dir = project(
        &tmp.path().join("pnpm"),
        serde_json::json!({ "fresh-lib": "^1.0.0" }),
    );
    let store = format!("--store-dir={}", tmp.path().join("pnpm-store").display());
    let registry = format!("--registry={}", node.npm());
    assert_success(
        &env.run(
            crate::tools::tools().pnpm.to_str().expect("path"),
            &["install", &registry, &store],
            &pnpm_dir,
        ),
        "pnpm install under min-age",
    );
    let linked = std::fs::read_dir(pnpm_dir.join("node_modules/.pnpm"))
        .expect("pnpm store")
        .filter_map(|e| e.ok().map(|e| e.file_name().to_string_lossy().into_owned()))
        .collect::<Vec<_>>();
    assert!(linked.iter().any(|d| d == "fresh-lib@1.0.0"), "{linked:?}");

    // The lockfile pinning 1.1.0 (its tarball cached already): `npm ci` fails with the
    // node's reason.
    env.clear_cache();
    let refused = env.run("npm", &["ci"], &pinned);
    assert!(
        !refused.status.success(),
        "npm ci installed a refused version"
    );
    let said = String::from_utf8_lossy(&refused.stderr).into_owned();
    assert!(said.contains("403"), "{said}");
    assert!(
        said.contains("refused by this node's policy") && said.contains("minimum age"),
        "npm does not show the reason:\n{said}"
    );
    let refusals = node.metric("cairn_policy_refusals_total{ecosystem=\"npm\",rule=\"min-age\"}");
    assert!(refusals >= 1.0, "{refusals}");

    // `policy explain` names the rule and the dates; `policy check` fails on the lockfile.
    let address = node.url.trim_start_matches("http://").to_owned();
    let data_arg = data.to_str().expect("path").to_owned();
    let explained = crate::bundle::cairn(&[
        "policy",
        "explain",
        "npm:fresh-lib@1.1.0",
        "npm:fresh-lib@1.0.0",
        "--listen",
        &address,
        "--data-dir",
        &data_arg,
    ]);
    assert_success(&explained, "cairn policy explain");
    let text = String::from_utf8_lossy(&explained.stdout).into_owned();
    assert!(
        text.contains("npm:fresh-lib@1.1.0: min-age")
            && text.contains("npm:fresh-lib@1.0.0: offered"),
        "{text}"
    );
    assert!(text.contains("policy: min-age 7d"), "{text}");
    let lockfile = pinned.join("package-lock.json");
    let checked = crate::bundle::cairn(&[
        "policy",
        "check",
        "--lockfile",
        lockfile.to_str().expect("path"),
        "--listen",
        &address,
        "--data-dir",
        &data_arg,
    ]);
    assert!(
        !checked.status.success(),
        "policy check passed a refused pin"
    );
    let text = String::from_utf8_lossy(&checked.stdout).into_owned();
    assert!(
        text.contains("npm:fresh-lib@1.1.0") && text.contains("1 of 2 pinned versions refused"),
        "{text}"
    );

    // The break-glass: allowed by name, taken on the next request.
    write_config(
        &data,
        "min-age = \"7d\"\nallow = [\"npm:fresh-lib@1.1.0\"]\n",
    );
    reloads(2);
    env.clear_cache();
    assert_success(
        &env.run("npm", &["ci"], &pinned),
        "npm ci with the version allowed",
    );
    assert_eq!(installed_version(&pinned, "fresh-lib"), "1.1.0");

    // deny refuses what it names, whatever its age; a cutoff refuses what came after it.
    write_config(
        &data,
        &format!(
            "deny = [\"npm:steady@2.0.0\"]\ncutoff = \"{}\"\n",
            days_ago(10)
        ),
    );
    reloads(3);
    let steady = get(&format!("{}steady/-/steady-2.0.0.tgz", node.npm()));
    assert_eq!(steady.status, 403);
    assert!(steady.text.contains("deny"), "{}", steady.text);
    let late = get(&format!("{}fresh-lib/-/fresh-lib-1.1.0.tgz", node.npm()));
    assert_eq!(late.status, 403);
    assert!(late.text.contains("after the cutoff"), "{}", late.text);
    let early = get(&format!("{}fresh-lib/-/fresh-lib-1.0.0.tgz", node.npm()));
    assert_eq!(early.status, 200);

    // What `npm audit signatures` reads goes to upstream as it is (this one has none).
    let attestations = get(&format!(
        "{}-/npm/v1/attestations/fresh-lib@1.0.0",
        node.npm()
    ));
    assert_eq!(attestations.status, 404, "{}", attestations.text);
    assert!(
        fake.requests()
            .iter()
            .any(|p| p == "/-/npm/v1/attestations/fresh-lib@1.0.0"),
        "{:?}",
        fake.requests()
    );
}

#[test]
fn pip_uv_and_cargo_resolve_past_young_versions() {
    let tmp = tempfile::tempdir().expect("tempdir");
    let wheels = tmp.path().join("wheels");
    let mut index = crate::fake_pypi::Index::default();
    index
        .wheel(&wheels, "fresh-py", "1.0.0", &[], None)
        .uploaded_at(&days_ago(30))
        .wheel(&wheels, "fresh-py", "1.1.0", &[], None)
        .uploaded_at(&days_ago(1));
    let pypi = crate::fake_pypi::FakePypi::start(index);
    let mut crates = crate::fake_cargo::Registry::default();
    crates
        .publish("fresh-crate", "1.0.0", &[], false)
        .published_at("fresh-crate", &days_ago(30));
    crates
        .publish("fresh-crate", "1.1.0", &[], false)
        .published_at("fresh-crate", &days_ago(1));
    let cargo_fake = crate::fake_cargo::FakeCargo::start(crates);
    let node = Cairn::start(
        &tmp.path().join("data"),
        &[
            "--pypi-upstream",
            &pypi.simple_url,
            "--cargo-upstream",
            &cargo_fake.index_url,
            "--min-age",
            "7d",
        ],
    );
    let index_url = format!("{}/pypi/simple/", node.url);
    let home = tmp.path().join("home");

    // pip and uv take the old release.
    let [pip_venv, uv_venv] =
        crate::pypi::install_with_pip_and_uv(tmp.path(), &index_url, "fresh-py", "under min-age");
    for venv in [&pip_venv, &uv_venv] {
        assert_eq!(crate::pypi::module_version(venv, "fresh_py"), "1.0.0");
    }
    // Pinned to the young one, pip is refused with the node's reason.
    let pinned = crate::pypi::python_tool(
        &pip_venv.join("bin/pip"),
        &[
            "download",
            "--no-cache-dir",
            "--no-deps",
            "-d",
            tmp.path().join("dl").to_str().expect("path"),
            "--index-url",
            &index_url,
            "fresh-py==1.1.0",
        ],
        &home,
    );
    assert!(!pinned.status.success());
    let wheel = format!(
        "{}/pypi/files/fresh-py/fresh_py-1.1.0-py3-none-any.whl",
        node.url
    );
    let refused = get(&wheel);
    assert_eq!(refused.status, 403, "{}", refused.text);
    assert!(refused.text.contains("minimum age"), "{}", refused.text);

    // cargo resolves `^1` to the old crate.
    let cargo_home = crate::cargo::cargo_home(
        &tmp.path().join("cargo-home"),
        &format!("{}/cargo/index/", node.url),
    );
    let app = crate::cargo::project(&tmp.path().join("app"), &[("fresh-crate", "1")]);
    assert_success(
        &crate::cargo::cargo(&cargo_home, &app, &["generate-lockfile"]),
        "cargo generate-lockfile under min-age",
    );
    let lock = std::fs::read_to_string(app.join("Cargo.lock")).expect("lock");
    assert!(
        lock.contains("name = \"fresh-crate\"\nversion = \"1.0.0\""),
        "{lock}"
    );
    let young = get(&format!(
        "{}/cargo/crates/fresh-crate/1.1.0/download",
        node.url
    ));
    assert_eq!(young.status, 403, "{}", young.text);
}

#[test]
fn a_version_removed_upstream_is_refused_from_the_cache_offline_too_unless_kept() {
    let tmp = tempfile::tempdir().expect("tempdir");
    let mut before = Registry::default();
    before
        .publish("gone-lib", "1.0.0", &[], &[("g.js", noise(2 << 10, 5))])
        .published_at("gone-lib", &days_ago(40));
    before
        .publish("gone-lib", "1.1.0", &[], &[("g.js", noise(2 << 10, 6))])
        .published_at("gone-lib", &days_ago(30));
    let fake = FakeNpm::start(before);
    let data = tmp.path().join("data");
    let tarball = "gone-lib/-/gone-lib-1.1.0.tgz";
    let node = Cairn::start(&data, &["--npm-upstream", &fake.url]);
    assert_eq!(get(&format!("{}{tarball}", node.npm())).status, 200);
    node.stop();

    // Upstream unpublishes 1.1.0 (the same registry, without it).
    let mut after = Registry::default();
    after
        .publish("gone-lib", "1.0.0", &[], &[("g.js", noise(2 << 10, 5))])
        .published_at("gone-lib", &days_ago(40));
    let unpublished = FakeNpm::start(after);
    let node = Cairn::start(
        &data,
        &["--npm-upstream", &unpublished.url, "--metadata-ttl", "1s"],
    );
    std::thread::sleep(Duration::from_millis(1100));
    let packument = get(&format!("{}gone-lib", node.npm()));
    assert!(!packument.text.contains("1.1.0"), "{}", packument.text);
    let refused = get(&format!("{}{tarball}", node.npm()));
    assert_eq!(refused.status, 403, "{}", refused.text);
    assert!(
        refused.text.contains("no longer lists it"),
        "{}",
        refused.text
    );
    node.stop();

    // Offline, from the cache alone: still refused; kept only when the policy says so.
    let offline = Cairn::start(&data, &["--npm-upstream", &unpublished.url, "--offline"]);
    assert_eq!(get(&format!("{}{tarball}", offline.npm())).status, 403);
    offline.stop();
    let kept = Cairn::start(
        &data,
        &[
            "--npm-upstream",
            &unpublished.url,
            "--offline",
            "--on-removal",
            "keep",
        ],
    );
    assert_eq!(get(&format!("{}{tarball}", kept.npm())).status, 200);
    assert_eq!(fake.hits(tarball), 1);
}

#[test]
fn a_quarantined_pypi_project_is_refused_from_the_cache() {
    let tmp = tempfile::tempdir().expect("tempdir");
    let wheels = tmp.path().join("wheels");
    let mut index = crate::fake_pypi::Index::default();
    index.wheel(&wheels, "risky-py", "1.0.0", &[], None);
    let clean = crate::fake_pypi::FakePypi::start(index.clone());
    let data = tmp.path().join("data");
    let wheel = "pypi/files/risky-py/risky_py-1.0.0-py3-none-any.whl";
    let node = Cairn::start(&data, &["--pypi-upstream", &clean.simple_url]);
    let page = get(&format!("{}/pypi/simple/risky-py/", node.url));
    assert!(page.text.contains("risky_py-1.0.0"), "{}", page.text);
    assert_eq!(get(&format!("{}/{wheel}", node.url)).status, 200);
    node.stop();

    // The index quarantines the project (PEP 792).
    index.quarantine("risky-py");
    let quarantined = crate::fake_pypi::FakePypi::start(index);
    let node = Cairn::start(
        &data,
        &[
            "--pypi-upstream",
            &quarantined.simple_url,
            "--metadata-ttl",
            "1s",
        ],
    );
    std::thread::sleep(Duration::from_millis(1100));
    let page = get(&format!("{}/pypi/simple/risky-py/", node.url));
    assert!(!page.text.contains("risky_py-1.0.0"), "{}", page.text);
    let refused = get(&format!("{}/{wheel}", node.url));
    assert_eq!(refused.status, 403, "{}", refused.text);
    let home = tmp.path().join("home");
    let venv = crate::pypi::venv(&tmp.path().join("venv"));
    let install = crate::pypi::python_tool(
        &venv.join("bin/pip"),
        &[
            "install",
            "--no-cache-dir",
            "--index-url",
            &format!("{}/pypi/simple/", node.url),
            "risky-py",
        ],
        &home,
    );
    assert!(
        !install.status.success(),
        "pip installed a quarantined project"
    );
}

#[test]
fn yanked_files_pinned_by_a_lockfile_are_served_unless_on_yanked_refuses_them() {
    let tmp = tempfile::tempdir().expect("tempdir");
    let wheels = tmp.path().join("wheels");
    let mut index = crate::fake_pypi::Index::default();
    index
        .wheel(&wheels, "yank-py", "1.0.0", &[], Some("broken build"))
        .wheel(&wheels, "yank-py", "0.9.0", &[], None);
    let pypi = crate::fake_pypi::FakePypi::start(index);
    let mut crates = crate::fake_cargo::Registry::default();
    crates
        .publish("yank-crate", "1.0.0", &[], false)
        .publish("yank-crate", "1.0.1", &[], true);
    let cargo_fake = crate::fake_cargo::FakeCargo::start(crates);
    let data = tmp.path().join("data");
    let node = Cairn::start(
        &data,
        &[
            "--pypi-upstream",
            &pypi.simple_url,
            "--cargo-upstream",
            &cargo_fake.index_url,
        ],
    );
    let home = tmp.path().join("home");
    let index_url = format!("{}/pypi/simple/", node.url);
    let venv = crate::pypi::venv(&tmp.path().join("venv"));
    let pip_pinned = |what: &str| {
        crate::pypi::python_tool(
            &venv.join("bin/pip"),
            &[
                "download",
                "--no-cache-dir",
                "--no-deps",
                "-d",
                tmp.path().join(what).to_str().expect("path"),
                "--index-url",
                &index_url,
                "yank-py==1.0.0",
            ],
            &home,
        )
    };
    // A lockfile written while 1.0.1 was current pins the yanked crate.
    let cargo_home = crate::cargo::cargo_home(
        &tmp.path().join("cargo-home"),
        &format!("{}/cargo/index/", node.url),
    );
    let app = crate::cargo::project(&tmp.path().join("app"), &[("yank-crate", "1")]);
    std::fs::write(
        app.join("Cargo.lock"),
        format!(
            "version = 4\n\n[[package]]\nname = \"e2e-app\"\nversion = \"0.1.0\"\ndependencies = [\n \"yank-crate\",\n]\n\n\
             [[package]]\nname = \"yank-crate\"\nversion = \"1.0.1\"\nsource = \"registry+https://github.com/rust-lang/crates.io-index\"\n\
             checksum = \"{}\"\n",
            cargo_fake.registry().release("yank-crate", "1.0.1").checksum()
        ),
    )
    .expect("Cargo.lock");

    // As the registries do: pinned exactly, a yanked file is served.
    assert_success(
        &pip_pinned("served"),
        "pip download of a pinned yanked file",
    );
    assert_success(
        &crate::cargo::cargo(&cargo_home, &app, &["fetch", "--locked"]),
        "cargo fetch of a locked yanked crate",
    );

    // `on-yanked = "refuse"`, reloaded from cairn.toml: refused on both paths.
    write_config(&data, "on-yanked = \"refuse\"\n");
    wait_for(Duration::from_secs(20), "the policy reloaded", || {
        node.logs().contains("policy reloaded").then_some(())
    });
    let page = get(&format!("{index_url}yank-py/"));
    assert!(!page.text.contains("yank_py-1.0.0"), "{}", page.text);
    assert!(page.text.contains("yank_py-0.9.0"), "{}", page.text);
    assert!(!pip_pinned("refused").status.success());
    let wheel = get(&format!(
        "{}/pypi/files/yank-py/yank_py-1.0.0-py3-none-any.whl",
        node.url
    ));
    assert_eq!(wheel.status, 403, "{}", wheel.text);
    assert!(wheel.text.contains("marks it yanked"), "{}", wheel.text);
    let crate_file = get(&format!(
        "{}/cargo/crates/yank-crate/1.0.1/download",
        node.url
    ));
    assert_eq!(crate_file.status, 403, "{}", crate_file.text);
    // A fresh machine (cargo's own cache would answer from what it fetched before).
    let fresh_home = crate::cargo::cargo_home(
        &tmp.path().join("fresh-cargo-home"),
        &format!("{}/cargo/index/", node.url),
    );
    let fetch = crate::cargo::cargo(&fresh_home, &app, &["fetch", "--locked"]);
    assert!(
        !fetch.status.success(),
        "cargo fetched a refused yanked crate"
    );
    let explained = crate::bundle::cairn(&[
        "policy",
        "explain",
        "cargo:yank-crate@1.0.1",
        "--listen",
        node.url.trim_start_matches("http://"),
        "--data-dir",
        data.to_str().expect("path"),
    ]);
    let text = String::from_utf8_lossy(&explained.stdout);
    assert!(
        text.contains("yanked") && text.contains("on-yanked refuse"),
        "{text}{}",
        String::from_utf8_lossy(&explained.stderr)
    );
    assert!(node.metric("cairn_policy_refusals_total{ecosystem=\"pypi\",rule=\"yanked\"}") >= 1.0);
}
