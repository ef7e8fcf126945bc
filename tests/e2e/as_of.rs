//! The registry as of an instant (`/as-of/INSTANT/…`): npm installs through the view give the
//! same versions before and after upstream publishes newer ones, a backdated version included;
//! `cairn setup --as-of` prints the view's URL; pip, uv and cargo resolve in the view; a file
//! published later is refused with the view's reason; malformed, future and undated views are
//! refused.

use std::collections::BTreeMap;
use std::path::Path;
use std::time::Duration;

use crate::fake_npm::{FakeNpm, Registry, noise};
use crate::support::{Cairn, ClientEnv, assert_success, get, project};

const DAY_MS: i64 = 86_400_000;

fn days_ago(days: i64) -> String {
    cairn_mirror::ecosystem::time::format_rfc3339(cairn_mirror::now_ms() - days * DAY_MS)
}

/// `dated-lib` 1.0.0 (40 days ago) and 1.1.0 (20 days ago), `base-lib` 3.0.0 (50 days ago)
/// which `dated-lib` depends on; `later` adds 1.2.0 published yesterday and 1.3.0 claiming to
/// be 15 days old (it was not there when the node first read the document).
fn registry(later: bool) -> Registry {
    let mut r = Registry::default();
    r.publish("base-lib", "3.0.0", &[], &[("b.js", noise(2 << 10, 1))])
        .published_at("base-lib", &days_ago(50));
    for (version, age, seed) in [("1.0.0", 40, 2), ("1.1.0", 20, 3)] {
        r.publish(
            "dated-lib",
            version,
            &[("base-lib", "^3.0.0")],
            &[("d.js", noise(2 << 10, seed))],
        )
        .published_at("dated-lib", &days_ago(age));
    }
    if later {
        for (version, age, seed) in [("1.2.0", 1, 4), ("1.3.0", 15, 5)] {
            r.publish(
                "dated-lib",
                version,
                &[("base-lib", "^3.0.0")],
                &[("d.js", noise(2 << 10, seed))],
            )
            .published_at("dated-lib", &days_ago(age));
        }
    }
    r
}

/// The versions and integrities a package-lock.json pins, by path (the node's port is not in
/// it: the two runs go through two nodes).
fn pins(app: &Path) -> BTreeMap<String, (String, String)> {
    let lock: serde_json::Value = serde_json::from_str(
        &std::fs::read_to_string(app.join("package-lock.json")).expect("package-lock.json"),
    )
    .expect("lockfile JSON");
    lock["packages"]
        .as_object()
        .expect("packages")
        .iter()
        .filter(|(path, _)| !path.is_empty())
        .map(|(path, entry)| {
            let field = |f: &str| entry[f].as_str().unwrap_or_default().to_owned();
            (path.clone(), (field("version"), field("integrity")))
        })
        .collect()
}

fn cairn_setup(args: &[&str]) -> std::process::Output {
    std::process::Command::new(env!("CARGO_BIN_EXE_cairn"))
        .arg("setup")
        .args(args)
        .output()
        .expect("cairn setup")
}

#[test]
fn npm_resolves_the_same_through_a_view_after_newer_versions_are_published() {
    let tmp = tempfile::tempdir().expect("tempdir");
    let data = tmp.path().join("data");
    let instant = days_ago(10);
    let as_of = cairn_mirror::policy::AsOf::parse(&instant, cairn_mirror::now_ms())
        .expect("instant")
        .text;

    let fake = FakeNpm::start(registry(false));
    let node = Cairn::start(&data, &["--npm-upstream", &fake.url]);
    // `cairn setup --as-of` points npm at the view.
    let setup = cairn_setup(&["npm", "--url", &node.npm(), "--as-of", &instant]);
    assert_success(&setup, "cairn setup npm --as-of");
    let view = format!("{}/as-of/{as_of}/npm/", node.url);
    let printed = String::from_utf8_lossy(&setup.stdout);
    assert!(printed.contains(&view), "{printed}");

    let env = ClientEnv::new(&tmp.path().join("client"), &view);
    let app = project(
        &tmp.path().join("app"),
        serde_json::json!({ "dated-lib": "^1.0.0" }),
    );
    assert_success(&env.run("npm", &["install"], &app), "npm install (view)");
    let before = pins(&app);
    assert_eq!(before["node_modules/dated-lib"].0, "1.1.0", "{before:?}");
    assert_eq!(before["node_modules/base-lib"].0, "3.0.0", "{before:?}");
    // The lockfile's tarballs are the view's, so `npm ci` from it goes through the view too.
    let lock = std::fs::read_to_string(app.join("package-lock.json")).expect("lock");
    assert!(
        lock.contains(&format!("/as-of/{as_of}/npm/dated-lib/-/")),
        "{lock}"
    );
    node.stop();

    // Upstream publishes 1.2.0 (honestly dated, after the instant) and 1.3.0 (backdated).
    let later = FakeNpm::start(registry(true));
    let node = Cairn::start(
        &data,
        &["--npm-upstream", &later.url, "--metadata-ttl", "1s"],
    );
    std::thread::sleep(Duration::from_millis(1100));
    let current: serde_json::Value =
        serde_json::from_str(&get(&format!("{}dated-lib", node.npm())).text).expect("json");
    assert_eq!(current["dist-tags"]["latest"], "1.3.0", "{current}");
    let view = format!("{}/as-of/{as_of}/npm/", node.url);
    let in_view: serde_json::Value =
        serde_json::from_str(&get(&format!("{view}dated-lib")).text).expect("json");
    let versions: Vec<&String> = in_view["versions"]
        .as_object()
        .expect("versions")
        .keys()
        .collect();
    assert_eq!(versions, ["1.0.0", "1.1.0"], "{in_view}");
    assert_eq!(in_view["dist-tags"]["latest"], "1.1.0", "{in_view}");

    // A fresh machine resolves again through the view: the same pins.
    let env = ClientEnv::new(&tmp.path().join("client-later"), &view);
    let again = project(
        &tmp.path().join("again"),
        serde_json::json!({ "dated-lib": "^1.0.0" }),
    );
    assert_success(&env.run("npm", &["install"], &again), "npm install (later)");
    assert_eq!(pins(&again), before);

    // Files published after the instant are refused, with the view's reason; npm shows it.
    for version in ["1.2.0", "1.3.0"] {
        let refused = get(&format!("{view}dated-lib/-/dated-lib-{version}.tgz"));
        assert_eq!(refused.status, 403, "{}", refused.text);
        assert!(
            refused
                .text
                .contains(&format!("not in the view as of {as_of}")),
            "{}",
            refused.text
        );
    }
    let pinned = project(
        &tmp.path().join("pinned"),
        serde_json::json!({ "dated-lib": "1.2.0" }),
    );
    let out = env.run("npm", &["install"], &pinned);
    assert!(
        !out.status.success(),
        "npm install of a version after the view"
    );
    // Outside the view, the same node offers it.
    assert_eq!(
        get(&format!("{}dated-lib/-/dated-lib-1.2.0.tgz", node.npm())).status,
        200
    );
    assert!(node.metric("cairn_policy_refusals_total{ecosystem=\"npm\",rule=\"as-of\"}") >= 2.0);

    // Views that cannot be: malformed, in the future, or of an ecosystem without dates.
    for (path, status, says) in [
        ("/as-of/yesterday/npm/dated-lib", 400, "expected an instant"),
        ("/as-of/2999-01-01/npm/dated-lib", 400, "in the future"),
        ("/as-of/2026-01-01/nothing/here", 404, "no route"),
    ] {
        let reply = get(&format!("{}{path}", node.url));
        assert_eq!(reply.status, status, "{path}: {}", reply.text);
        assert!(reply.text.contains(says), "{path}: {}", reply.text);
    }
    let apt = cairn_setup(&["apt", "--as-of", "2026-01-01"]);
    assert!(!apt.status.success());
    assert!(
        String::from_utf8_lossy(&apt.stderr).contains("apt archives date whole releases"),
        "{}",
        String::from_utf8_lossy(&apt.stderr)
    );
}

#[test]
fn pip_uv_and_cargo_resolve_in_a_view() {
    let tmp = tempfile::tempdir().expect("tempdir");
    let wheels = tmp.path().join("wheels");
    let mut index = crate::fake_pypi::Index::default();
    index
        .wheel(&wheels, "dated-py", "1.0.0", &[], None)
        .uploaded_at(&days_ago(30))
        .wheel(&wheels, "dated-py", "1.1.0", &[], None)
        .uploaded_at(&days_ago(2));
    let pypi = crate::fake_pypi::FakePypi::start(index);
    let mut crates = crate::fake_cargo::Registry::default();
    crates
        .publish("dated-crate", "1.0.0", &[], false)
        .published_at("dated-crate", &days_ago(30));
    crates
        .publish("dated-crate", "1.1.0", &[], false)
        .published_at("dated-crate", &days_ago(2));
    let cargo_fake = crate::fake_cargo::FakeCargo::start(crates);
    let node = Cairn::start(
        &tmp.path().join("data"),
        &[
            "--pypi-upstream",
            &pypi.simple_url,
            "--cargo-upstream",
            &cargo_fake.index_url,
        ],
    );
    let as_of = cairn_mirror::policy::AsOf::parse(&days_ago(10), cairn_mirror::now_ms())
        .expect("instant")
        .text;
    let view = format!("{}/as-of/{as_of}", node.url);

    let index_url = format!("{view}/pypi/simple/");
    let venvs = crate::pypi::install_with_pip_and_uv(
        tmp.path(),
        &index_url,
        "dated-py",
        "through the view",
    );
    for venv in &venvs {
        assert_eq!(crate::pypi::module_version(venv, "dated_py"), "1.0.0");
    }
    // Outside the view the same index offers 1.1.0; in it, its wheel is refused.
    let page = get(&format!("{}/pypi/simple/dated-py/", node.url));
    assert!(page.text.contains("dated_py-1.1.0"), "{}", page.text);
    let wheel = get(&format!(
        "{view}/pypi/files/dated-py/dated_py-1.1.0-py3-none-any.whl"
    ));
    assert_eq!(wheel.status, 403, "{}", wheel.text);

    let cargo_home = crate::cargo::cargo_home(
        &tmp.path().join("cargo-home"),
        &format!("{view}/cargo/index/"),
    );
    let app = crate::cargo::project(&tmp.path().join("app"), &[("dated-crate", "1")]);
    assert_success(
        &crate::cargo::cargo(&cargo_home, &app, &["fetch"]),
        "cargo fetch through the view",
    );
    let lock = std::fs::read_to_string(app.join("Cargo.lock")).expect("lock");
    assert!(
        lock.contains("name = \"dated-crate\"\nversion = \"1.0.0\""),
        "{lock}"
    );
    let young = get(&format!("{view}/cargo/crates/dated-crate/1.1.0/download"));
    assert_eq!(young.status, 403, "{}", young.text);
    assert!(young.text.contains("not in the view"), "{}", young.text);
}
