//! The real cargo through the `cairn` binary, in front of the fake sparse registry.

use std::path::{Path, PathBuf};
use std::process::{Command, Output};

use crate::fake_cargo::{FakeCargo, Registry};
use crate::support::{Cairn, assert_success, get};

/// Crates with dependencies, an upper-case name, `-` and `_` names, and a yanked version.
pub(crate) fn registry() -> Registry {
    let mut r = Registry::default();
    r.publish("base-util", "1.0.0", &[], false)
        .publish("base-util", "1.1.0", &[], false)
        .publish("MixedCase", "0.1.0", &[], false)
        .publish("snake_case_lib", "2.0.0", &[("base-util", "1")], false)
        .publish(
            "app-core",
            "1.2.0",
            &[
                ("base-util", "1"),
                ("MixedCase", "0.1"),
                ("snake_case_lib", "2"),
            ],
            false,
        )
        .publish("old-thing", "1.0.0", &[], true)
        .publish("evil-crate", "1.0.0", &[], false);
    r
}

/// A private `CARGO_HOME` whose crates-io is replaced by `registry`.
pub(crate) fn cargo_home(dir: &Path, registry: &str) -> PathBuf {
    std::fs::create_dir_all(dir).expect("cargo home");
    std::fs::write(
        dir.join("config.toml"),
        format!(
            "[source.crates-io]\nreplace-with = \"cairn\"\n\n[source.cairn]\nregistry = \"sparse+{registry}\"\n\n[net]\nretry = 0\n"
        ),
    )
    .expect("config.toml");
    dir.to_path_buf()
}

pub(crate) fn cargo(home: &Path, project: &Path, args: &[&str]) -> Output {
    Command::new("cargo")
        .args(args)
        .current_dir(project)
        .env("CARGO_HOME", home)
        .env("CARGO_TARGET_DIR", project.join("target"))
        .env_remove("RUSTFLAGS")
        .env_remove("CARGO_BUILD_TARGET_DIR")
        .output()
        .expect("cargo must be installed")
}

/// A binary project depending on `deps` (`name = "req"` lines).
pub(crate) fn project(dir: &Path, deps: &[(&str, &str)]) -> PathBuf {
    std::fs::create_dir_all(dir.join("src")).expect("project");
    let mut manifest = "[package]\nname = \"e2e-app\"\nversion = \"0.1.0\"\nedition = \"2021\"\n\n[dependencies]\n".to_owned();
    for (name, req) in deps {
        manifest.push_str(&format!("{name} = \"{req}\"\n"));
    }
    std::fs::write(dir.join("Cargo.toml"), manifest).expect("Cargo.toml");
    std::fs::write(dir.join("src/main.rs"), "fn main() {}\n").expect("main.rs");
    dir.to_path_buf()
}

fn port_of(url: &str) -> &str {
    url.rsplit(':').next().unwrap_or_default()
}

#[test]
fn cargo_build_through_cairn_then_offline_fetch_with_an_empty_cargo_home() {
    let tmp = tempfile::tempdir().expect("tempdir");
    let fake = FakeCargo::start(registry());
    let data = tmp.path().join("data");
    let cairn = Cairn::start(&data, &["--cargo-upstream", &fake.index_url]);
    let registry_url = format!("{}/cargo/index/", cairn.url);
    let home = cargo_home(&tmp.path().join("home"), &registry_url);
    let app = project(
        &tmp.path().join("app"),
        &[("app-core", "1"), ("MixedCase", "0.1")],
    );

    assert_success(&cargo(&home, &app, &["build"]), "cargo build");
    let lock = std::fs::read_to_string(app.join("Cargo.lock")).expect("Cargo.lock");
    for (name, version) in [
        ("base-util", "1.1.0"),
        ("MixedCase", "0.1.0"),
        ("snake_case_lib", "2.0.0"),
        ("app-core", "1.2.0"),
    ] {
        let checksum = fake.registry().release(name, version).checksum();
        assert!(
            lock.contains(&checksum),
            "{name} {version} not locked with its checksum:\n{lock}"
        );
    }
    // The upper-case crate came through the templated, cross-origin download location.
    assert_eq!(fake.hits("files/mi/xe/MixedCase/MixedCase-0.1.0.crate"), 1);
    let config = get(&format!("{registry_url}config.json"));
    assert_eq!(
        config.text,
        format!(r#"{{"dl":"{}/cargo/crates"}}"#, cairn.url)
    );

    // Offline, same address, empty CARGO_HOME: the lockfile's crates come from the cache.
    let listen = format!("127.0.0.1:{}", port_of(&cairn.url));
    cairn.stop();
    let upstream_requests = fake.total_hits();
    let _cairn = Cairn::start(
        &data,
        &[
            "--offline",
            "--cargo-upstream",
            &fake.index_url,
            "--listen",
            &listen,
        ],
    );
    let empty_home = cargo_home(&tmp.path().join("home2"), &registry_url);
    std::fs::remove_dir_all(app.join("target")).expect("rm target");
    assert_success(
        &cargo(&empty_home, &app, &["fetch", "--locked"]),
        "offline cargo fetch",
    );
    assert_success(
        &cargo(&empty_home, &app, &["build", "--frozen"]),
        "offline cargo build",
    );
    assert_eq!(
        fake.total_hits(),
        upstream_requests,
        "offline node contacted upstream"
    );
}

#[test]
fn a_yanked_version_still_resolves_from_an_existing_lockfile() {
    let tmp = tempfile::tempdir().expect("tempdir");
    let fake = FakeCargo::start(registry());
    let cairn = Cairn::start(
        &tmp.path().join("data"),
        &["--cargo-upstream", &fake.index_url],
    );
    let home = cargo_home(
        &tmp.path().join("home"),
        &format!("{}/cargo/index/", cairn.url),
    );
    let app = project(&tmp.path().join("app"), &[("old-thing", "1")]);

    // Without a lockfile cargo will not pick a yanked version.
    let output = cargo(&home, &app, &["generate-lockfile"]);
    assert!(
        !output.status.success(),
        "cargo resolved a yanked version without a lockfile"
    );

    let checksum = fake.registry().release("old-thing", "1.0.0").checksum();
    std::fs::write(
        app.join("Cargo.lock"),
        format!(
            "version = 4\n\n[[package]]\nname = \"e2e-app\"\nversion = \"0.1.0\"\ndependencies = [\"old-thing\"]\n\n\
             [[package]]\nname = \"old-thing\"\nversion = \"1.0.0\"\n\
             source = \"registry+https://github.com/rust-lang/crates.io-index\"\nchecksum = \"{checksum}\"\n"
        ),
    )
    .expect("Cargo.lock");
    assert_success(
        &cargo(&home, &app, &["fetch", "--locked"]),
        "cargo fetch of a yanked, locked crate",
    );
}

#[test]
fn a_crate_that_does_not_match_its_cksum_fails_and_is_never_stored() {
    let tmp = tempfile::tempdir().expect("tempdir");
    let fake = FakeCargo::start(registry());
    fake.tamper("evil-crate", "1.0.0");
    let data = tmp.path().join("data");
    let cairn = Cairn::start(&data, &["--cargo-upstream", &fake.index_url]);
    let home = cargo_home(
        &tmp.path().join("home"),
        &format!("{}/cargo/index/", cairn.url),
    );
    let app = project(&tmp.path().join("app"), &[("evil-crate", "1")]);

    let output = cargo(&home, &app, &["fetch"]);
    assert!(!output.status.success(), "cargo fetched a tampered crate");
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert!(
        stderr.contains("502"),
        "cargo's error does not show the 502:\n{stderr}"
    );
    assert!(
        std::fs::read_dir(data.join("blobs"))
            .expect("blobs")
            .next()
            .is_none(),
        "a rejected crate was stored"
    );
    let url = format!("{}/cargo/crates/evil-crate/1.0.0/download", cairn.url);
    crate::support::assert_refused_and_nothing_stored(
        &crate::support::get(&url),
        502,
        &data,
        "cargo",
        "evil-crate/1.0.0",
        &[&fake.registry().release("evil-crate", "1.0.0").file],
    );
    assert!(cairn.metric("cairn_digest_mismatches_total{ecosystem=\"cargo\"}") >= 1.0);

    // An unknown crate is a 404 (cargo: "no matching package"), remembered briefly.
    let missing = format!("{}/cargo/index/no/su/nosuchcrate", cairn.url);
    assert_eq!(get(&missing).status, 404);
    assert_eq!(get(&missing).status, 404);
    assert_eq!(
        fake.hits("index/no/su/nosuchcrate"),
        1,
        "negative answer not cached"
    );
}

#[test]
fn setup_cargo_apply_records_the_upstream_and_replaces_crates_io() {
    let tmp = tempfile::tempdir().expect("tempdir");
    let home = tmp.path().join("cargo-home");
    // The registry cache cargo keeps is named after the index it used: that is the upstream.
    std::fs::create_dir_all(home.join("registry/index/index.example.invalid-1949cf8c6b5b557f"))
        .expect("registry cache");
    std::fs::write(home.join("config.toml"), "[net]\nretry = 3\n").expect("config.toml");
    let config = tmp.path().join("cairn.toml");
    let output = Command::new(env!("CARGO_BIN_EXE_cairn"))
        .args(["setup", "cargo", "--apply", "--config"])
        .arg(&config)
        .env("CARGO_HOME", &home)
        .env("HOME", tmp.path())
        .output()
        .expect("cairn setup");
    assert_success(&output, "cairn setup cargo --apply");
    let recorded = std::fs::read_to_string(&config).expect("cairn.toml");
    assert!(
        recorded.contains("cargo-upstream = \"https://index.example.invalid/\""),
        "{recorded}"
    );
    let cargo_config: toml::Table =
        toml::from_str(&std::fs::read_to_string(home.join("config.toml")).expect("config"))
            .expect("toml");
    assert_eq!(
        cargo_config["source"]["crates-io"]["replace-with"].as_str(),
        Some("cairn")
    );
    assert_eq!(
        cargo_config["source"]["cairn"]["registry"].as_str(),
        Some("sparse+http://127.0.0.1:7777/cargo/index/")
    );
    assert_eq!(
        cargo_config["net"]["retry"].as_integer(),
        Some(3),
        "other settings kept"
    );
}

#[test]
fn setup_cargo_apply_refuses_when_the_node_would_have_no_cargo_upstream() {
    let tmp = tempfile::tempdir().expect("tempdir");
    // No cargo on PATH, no registry cache, no config: nothing to front.
    let (home, bin) = (tmp.path().join("cargo-home"), tmp.path().join("bin"));
    std::fs::create_dir_all(&bin).expect("bin");
    let config = tmp.path().join("cairn.toml");
    let output = Command::new(env!("CARGO_BIN_EXE_cairn"))
        .args([
            "setup",
            "cargo",
            "--apply",
            "--url",
            "http://127.0.0.1:9/cargo/index/",
        ])
        .arg("--config")
        .arg(&config)
        .env("CARGO_HOME", &home)
        .env("HOME", tmp.path())
        .env("PATH", &bin)
        .env_remove("CAIRN_CARGO_UPSTREAM")
        .output()
        .expect("cairn setup");
    let stderr = String::from_utf8_lossy(&output.stderr);
    let stdout = String::from_utf8_lossy(&output.stdout);
    assert!(!output.status.success(), "applied:\n{stdout}{stderr}");
    assert!(
        stderr.contains("refusing to point Cargo at http://127.0.0.1:9/cargo/index/")
            && stderr.contains("--cargo-upstream URL"),
        "{stderr}"
    );
    assert!(
        stdout.contains("cargo is not installed here; turn cargo on with --cargo-upstream URL"),
        "{stdout}"
    );
    assert!(!home.join("config.toml").exists(), "cargo was configured");
    assert!(!config.exists(), "an upstream was recorded");
}
