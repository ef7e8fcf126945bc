//! npm-family clients beyond installs, through the `cairn` binary in front of the fake
//! registry: corepack fetching package managers by version, and what npm's write and account
//! commands are told by a read-only mirror.

use std::path::Path;
use std::process::{Command, Output};

use crate::fake_npm::{FakeNpm, Registry};
use crate::support::{Cairn, assert_success, get, get_with};

/// A package manager's executable: prints the version in its own `package.json`, as the real
/// ones do for `--version`.
const VERSION_BIN: &str = "#!/usr/bin/env node\n\
     console.log(require('../package.json').version);\n";

/// `pnpm` and yarn's `@yarnpkg/cli-dist`, in the shapes corepack unpacks: pnpm's tarball holds
/// `bin/pnpm.cjs` and `bin/pnpx.cjs`; yarn's holds `bin/yarn.js`, the one file corepack keeps
/// (so it prints its version on its own).
fn package_managers() -> Registry {
    let bin = VERSION_BIN.as_bytes().to_vec();
    let mut r = Registry::default();
    r.publish(
        "pnpm",
        "9.15.4",
        &[],
        &[("bin/pnpm.cjs", bin.clone()), ("bin/pnpx.cjs", bin.clone())],
    )
    .publish(
        "pnpm",
        "9.15.5",
        &[],
        &[("bin/pnpm.cjs", bin.clone()), ("bin/pnpx.cjs", bin.clone())],
    )
    .publish(
        "@yarnpkg/cli-dist",
        "4.5.1",
        &[],
        // corepack keeps this one file only: the version is written into it.
        &[("bin/yarn.js", b"console.log('4.5.1');\n".to_vec())],
    );
    r
}

/// Run `corepack args…` in `project` with its own home, against `registry` (no trailing `/`:
/// corepack appends `/NAME/VERSION` itself). Signature checks are off: the fake's packages are
/// not signed by npm's keys.
fn corepack(home: &Path, registry: &str, project: &Path, args: &[&str]) -> Output {
    Command::new("corepack")
        .args(args)
        .current_dir(project)
        .env("HOME", home)
        .env("COREPACK_HOME", home.join("corepack"))
        .env("COREPACK_NPM_REGISTRY", registry)
        .env("COREPACK_INTEGRITY_KEYS", "0")
        .env("COREPACK_ENABLE_DOWNLOAD_PROMPT", "0")
        .env("COREPACK_ENABLE_AUTO_PIN", "0")
        .env("COREPACK_ENABLE_STRICT", "1")
        .env_remove("COREPACK_NPM_TOKEN")
        .env_remove("COREPACK_NPM_USERNAME")
        .env_remove("COREPACK_NPM_PASSWORD")
        .env_remove("HTTP_PROXY")
        .env_remove("HTTPS_PROXY")
        .env_remove("http_proxy")
        .env_remove("https_proxy")
        .output()
        .unwrap_or_else(|e| panic!("cannot run corepack (it ships with node): {e}"))
}

fn project_using(dir: &Path, package_manager: &str) -> std::path::PathBuf {
    std::fs::create_dir_all(dir).expect("project dir");
    let manifest = serde_json::json!({
        "name": "corepack-project",
        "version": "1.0.0",
        "private": true,
        "packageManager": package_manager,
    });
    std::fs::write(dir.join("package.json"), manifest.to_string()).expect("package.json");
    dir.to_path_buf()
}

#[test]
fn corepack_fetches_pnpm_and_yarn_berry_through_cairn() {
    let tmp = tempfile::tempdir().expect("tempdir");
    let fake = FakeNpm::start(package_managers());
    let cairn = Cairn::start(&tmp.path().join("data"), &["--npm-upstream", &fake.url]);
    let registry = cairn.npm().trim_end_matches('/').to_owned();
    let home = tmp.path().join("home");

    let pnpm_project = project_using(&tmp.path().join("pnpm-project"), "pnpm@9.15.4");
    let output = corepack(&home, &registry, &pnpm_project, &["pnpm", "--version"]);
    assert_success(&output, "corepack pnpm --version");
    assert_eq!(String::from_utf8_lossy(&output.stdout).trim(), "9.15.4");

    // A scoped package (yarn 2+ comes from `@yarnpkg/cli-dist`).
    let yarn_project = project_using(&tmp.path().join("yarn-project"), "yarn@4.5.1");
    let output = corepack(&home, &registry, &yarn_project, &["yarn", "--version"]);
    assert_success(&output, "corepack yarn --version");
    assert_eq!(String::from_utf8_lossy(&output.stdout).trim(), "4.5.1");

    // The version documents were cut from the packuments: upstream saw each packument and
    // tarball once, and never a per-version path.
    assert_eq!(fake.hits("pnpm"), 1);
    assert_eq!(fake.hits("pnpm/-/pnpm-9.15.4.tgz"), 1);
    assert_eq!(fake.hits("@yarnpkg%2fcli-dist"), 1);
    assert_eq!(fake.hits("pnpm/9.15.4"), 0);
}

#[test]
fn version_and_dist_tag_documents_follow_npm() {
    let tmp = tempfile::tempdir().expect("tempdir");
    let fake = FakeNpm::start(package_managers());
    let cairn = Cairn::start(&tmp.path().join("data"), &["--npm-upstream", &fake.url]);
    let npm = cairn.npm();
    let corgi = "application/vnd.npm.install-v1+json; q=1.0, application/json; q=0.8";

    for path in [
        "pnpm/9.15.4",
        "@yarnpkg/cli-dist/4.5.1",
        "@yarnpkg%2fcli-dist/4.5.1",
        "@yarnpkg%2Fcli-dist/latest",
        "pnpm/latest",
    ] {
        let reply = get_with(&format!("{npm}{path}"), &[("accept", corgi)]);
        assert_eq!(reply.status, 200, "{path}: {}", reply.text);
        assert_eq!(reply.headers["content-type"], "application/json", "{path}");
        let doc: serde_json::Value = serde_json::from_slice(&reply.body).expect("JSON");
        let tarball = doc["dist"]["tarball"].as_str().expect("dist.tarball");
        assert!(tarball.starts_with(&npm), "{path}: tarball {tarball}");
        assert!(doc["dist"]["integrity"].is_string(), "{path}: {doc}");
        // The full manifest, not the abbreviated one, whatever the Accept.
        assert!(doc["description"].is_string(), "{path}: {doc}");
    }
    let latest: serde_json::Value =
        serde_json::from_slice(&get(&format!("{npm}pnpm/latest")).body).expect("JSON");
    assert_eq!(latest["version"], "9.15.5");

    // Unknown versions and tags: 404 in npm's error format, and upstream is not asked again.
    for path in ["pnpm/1.0.0", "pnpm/no-such-tag", "@yarnpkg/cli-dist/9.9.9"] {
        let reply = get(&format!("{npm}{path}"));
        assert_eq!(reply.status, 404, "{path}: {}", reply.text);
        let error: serde_json::Value = serde_json::from_slice(&reply.body).expect("JSON error");
        assert!(error["error"].is_string(), "{path}: {}", reply.text);
    }
    // An unknown package is upstream's 404.
    assert_eq!(get(&format!("{npm}no-such-package/1.0.0")).status, 404);
    assert_eq!(fake.hits("pnpm"), 1);

    // The ETag depends on the version asked for.
    let a = get(&format!("{npm}pnpm/9.15.4"));
    let b = get(&format!("{npm}pnpm/9.15.5"));
    assert_ne!(a.headers["etag"], b.headers["etag"]);
    let etag = a.headers["etag"].to_str().expect("etag");
    assert_eq!(
        get_with(&format!("{npm}pnpm/9.15.4"), &[("if-none-match", etag)]).status,
        304
    );
}

fn cairn_setup(home: &Path, args: &[&str]) -> Output {
    let output = Command::new(env!("CARGO_BIN_EXE_cairn"))
        .arg("setup")
        .args(args)
        .env("HOME", home)
        .env("XDG_CONFIG_HOME", home.join("xdg-config"))
        .output()
        .expect("run cairn setup");
    assert_success(&output, &format!("cairn setup {args:?}"));
    output
}

#[test]
fn setup_names_clients_as_users_type_them() {
    let tmp = tempfile::tempdir().expect("tempdir");
    for (client, url) in [
        ("npm", "http://cache.invalid:7777/npm/"),
        ("pnpm", "http://cache.invalid:7777/npm/"),
        ("yarn", "http://cache.invalid:7777/npm/"),
        ("pip", "http://cache.invalid:7777/pypi/simple/"),
    ] {
        let output = cairn_setup(tmp.path(), &[client, "--url", url]);
        let stdout = String::from_utf8_lossy(&output.stdout);
        assert!(
            stdout.contains(&format!("# Point {client} at Cairn")),
            "{client}: {stdout}"
        );
        for debug_name in ["Npm", "Pnpm", "Yarn", "Pip"] {
            assert!(!stdout.contains(debug_name), "{client}: {stdout}");
        }
    }
}

#[test]
fn setup_yarn_configures_yarn_1_and_yarn_berry() {
    let tmp = tempfile::tempdir().expect("tempdir");
    let home = tmp.path().join("home");
    std::fs::create_dir_all(&home).expect("home");
    let url = "http://cache.invalid:7777/npm/";
    let printed = cairn_setup(&home, &["yarn", "--url", url]);
    let stdout = String::from_utf8_lossy(&printed.stdout);
    assert!(
        stdout.contains(&format!("yarn config set registry {url}")),
        "{stdout}"
    );
    assert!(
        stdout.contains(&format!("npmRegistryServer: \"{url}\"")),
        "{stdout}"
    );
    assert!(
        stdout.contains("unsafeHttpWhitelist:\n  - \"cache.invalid\""),
        "{stdout}"
    );

    std::fs::write(home.join(".yarnrc.yml"), "enableTelemetry: false\n").expect("yarnrc");
    cairn_setup(&home, &["yarn", "--url", url, "--apply"]);
    assert_eq!(
        std::fs::read_to_string(home.join(".yarnrc.yml")).expect("yarnrc"),
        format!(
            "enableTelemetry: false\nnpmRegistryServer: \"{url}\"\n\
             unsafeHttpWhitelist:\n  - \"cache.invalid\"\n"
        )
    );
}

#[test]
fn yarn_berry_installs_through_cairn_with_the_setup_config() {
    let yarn = &crate::tools::tools().yarn_berry;
    let tmp = tempfile::tempdir().expect("tempdir");
    let fake = FakeNpm::start(crate::npm::registry());
    let cairn = Cairn::start(&tmp.path().join("data"), &["--npm-upstream", &fake.url]);
    let home = tmp.path().join("home");
    std::fs::create_dir_all(&home).expect("home");
    cairn_setup(&home, &["yarn", "--url", &cairn.npm(), "--apply"]);

    let dir = crate::support::project(
        &tmp.path().join("project"),
        serde_json::json!({ "app-a": "^1.0.0" }),
    );
    let output = Command::new("node")
        .arg(yarn)
        .arg("install")
        .current_dir(&dir)
        .env("HOME", &home)
        .env("YARN_ENABLE_TELEMETRY", "0")
        .env("YARN_ENABLE_IMMUTABLE_INSTALLS", "0")
        .env("YARN_ENABLE_GLOBAL_CACHE", "0")
        .env("YARN_NODE_LINKER", "node-modules")
        .env_remove("YARN_NPM_REGISTRY_SERVER")
        .env_remove("YARN_UNSAFE_HTTP_WHITELIST")
        .env_remove("NPM_CONFIG_REGISTRY")
        .output()
        .expect("run yarn 4");
    assert_success(&output, "yarn 4 install");
    assert!(dir.join("node_modules/@scope/lib-c/package.json").exists());
    let lock = std::fs::read_to_string(dir.join("yarn.lock")).expect("yarn.lock");
    assert!(lock.contains("\"app-a@npm:^1.0.0\""), "{lock}");
    // Every tarball came through Cairn from the fake upstream.
    assert_eq!(fake.hits("lib-d/-/lib-d-1.0.0.tgz"), 1);
    assert_eq!(fake.hits("@scope/lib-c/-/lib-c-2.0.0.tgz"), 1);
}

#[test]
fn stale_documents_served_offline_say_why() {
    let tmp = tempfile::tempdir().expect("tempdir");
    let fake = FakeNpm::start(package_managers());
    let data = tmp.path().join("data");
    let cairn = Cairn::start(&data, &["--npm-upstream", &fake.url]);
    assert_eq!(get(&format!("{}pnpm", cairn.npm())).status, 200);
    cairn.stop();

    // Past its TTL, offline: the packument and its version documents are served stale, and the
    // Warning says so (not that the document is "not cached").
    std::thread::sleep(std::time::Duration::from_millis(1100));
    let cairn = Cairn::start(
        &data,
        &[
            "--offline",
            "--npm-upstream",
            &fake.url,
            "--metadata-ttl",
            "1s",
        ],
    );
    for path in ["pnpm", "pnpm/9.15.4", "pnpm/latest"] {
        let reply = get(&format!("{}{path}", cairn.npm()));
        assert_eq!(reply.status, 200, "{path}: {}", reply.text);
        let warning = reply.header("warning").unwrap_or_default();
        assert!(
            warning.starts_with("110 cairn \"Response is Stale: served a cached copy fetched ")
                && warning.contains("upstream not contacted: this node runs --offline"),
            "{path}: {warning}"
        );
        assert!(!warning.contains("not cached"), "{path}: {warning}");
        assert!(reply.header("age").is_some(), "{path}");
    }
    assert_eq!(fake.hits("pnpm"), 1);
}

#[test]
fn npm_publish_deprecate_and_whoami_are_told_cairn_is_a_read_only_mirror() {
    let tmp = tempfile::tempdir().expect("tempdir");
    let fake = FakeNpm::start(crate::npm::registry());
    let cairn = Cairn::start(&tmp.path().join("data"), &["--npm-upstream", &fake.url]);
    let env = crate::support::ClientEnv::new(&tmp.path().join("client"), &cairn.npm());
    // A token for Cairn's address: without one npm refuses these commands before asking.
    let nerfed = cairn.npm().trim_start_matches("http:").to_owned();
    let npmrc = env.dir.join("npmrc");
    let mut config = std::fs::read_to_string(&npmrc).expect("npmrc");
    config.push_str(&format!("{nerfed}:_authToken=e2e-token\n"));
    std::fs::write(&npmrc, config).expect("npmrc");
    let upstream = fake.url.as_str();

    let dir = tmp.path().join("my-pkg");
    std::fs::create_dir_all(&dir).expect("package dir");
    std::fs::write(
        dir.join("package.json"),
        serde_json::json!({ "name": "my-pkg", "version": "1.0.0" }).to_string(),
    )
    .expect("package.json");
    std::fs::write(dir.join("index.js"), "module.exports = 1;\n").expect("index.js");

    let expect_refusal = |output: &Output, what: &str, status: &str, says: &str| {
        assert!(
            !output.status.success(),
            "{what} succeeded against a mirror"
        );
        let stderr = String::from_utf8_lossy(&output.stderr);
        assert!(
            stderr.contains(status)
                && stderr.contains(&format!("read-only Cairn mirror of {upstream}"))
                && stderr.contains(says),
            "{what}: npm does not print why:\n{stderr}"
        );
    };
    let publish = env.run("npm", &["publish"], &dir);
    expect_refusal(
        &publish,
        "npm publish",
        "405 Method Not Allowed - PUT",
        &format!("npm publish --registry {upstream}"),
    );
    let deprecate = env.run("npm", &["deprecate", "lib-d@1.0.0", "old"], &dir);
    expect_refusal(
        &deprecate,
        "npm deprecate",
        "405 Method Not Allowed - PUT",
        &format!("npm publish --registry {upstream}"),
    );
    let whoami = env.run("npm", &["whoami"], &dir);
    expect_refusal(
        &whoami,
        "npm whoami",
        "404",
        &format!("has no accounts: log in to and publish on {upstream} itself"),
    );
    // Reads still work beside the refusals.
    assert_eq!(get(&format!("{}lib-d", cairn.npm())).status, 200);
}
