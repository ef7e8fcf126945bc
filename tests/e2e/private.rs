//! Private upstreams: an npm scope on a registry of its own that wants a token, found in the
//! node's own npm configuration (`@corp:registry` and `_authToken` from an environment
//! variable, in the `.npmrc` of the user running `cairn serve`). The real npm installs a
//! project that uses both registries through the node: every `@corp/…` request goes to the
//! private registry, with the token, and never to the public one, which publishes a
//! dependency-confusion decoy under the same name; no public name is asked of the private
//! registry; and the token appears nowhere it could leak: the node's log at debug level,
//! `/metrics`, `/api/v1/status`, rendered metadata, the lockfile, an exported bundle.
//!
//! And the swarm: a second node, offline, joined to the first, gets the public packages from
//! it either way, but the private ones only in a private swarm (a swarm key); in an open swarm
//! they are neither announced nor served, so its install of them fails.

use std::path::Path;
use std::time::Duration;

use base64::Engine as _;

use crate::bundle::cairn;
use crate::fake_cargo::{FakeCargo, Registry as CargoRegistry};
use crate::fake_npm::{FakeNpm, Registry, noise};
use crate::fake_pypi::{FakePypi, Index};
use crate::pypi::{python_tool, venv};
use crate::support::{Cairn, ClientEnv, assert_success, get, project, swarm_key};

const TOKEN: &str = "corp-npm-t0ken-5f1e2d";

/// The public registry: `pub-lib`, and a decoy `@corp/app-core` at a higher version, as an
/// attacker would publish it.
fn public_registry() -> Registry {
    let mut r = Registry::default();
    r.publish("pub-lib", "1.0.0", &[], &[("lib.js", noise(8 << 10, 1))]);
    r.publish("pub-lib", "1.1.0", &[], &[("lib.js", noise(8 << 10, 2))]);
    r.publish(
        "@corp/app-core",
        "9.9.9",
        &[],
        &[("decoy.js", b"the decoy".to_vec())],
    );
    r
}

/// The private registry: the real `@corp/app-core` (which depends on `pub-lib` and
/// `@corp/log`), and a `pub-lib` of its own that must never be taken.
fn private_registry() -> Registry {
    let mut r = Registry::default();
    r.publish("@corp/log", "2.0.0", &[], &[("log.js", noise(4 << 10, 3))]);
    r.publish(
        "@corp/app-core",
        "1.2.0",
        &[("pub-lib", "^1.0.0"), ("@corp/log", "^2.0.0")],
        &[("core.js", noise(64 << 10, 4))],
    );
    r.publish(
        "pub-lib",
        "1.5.0",
        &[],
        &[("shadow.js", b"shadow".to_vec())],
    );
    r
}

/// The two fake registries.
fn registries() -> (FakeNpm, FakeNpm) {
    let public = FakeNpm::start(public_registry());
    let private = FakeNpm::start_guarded(private_registry(), Some(&format!("Bearer {TOKEN}")));
    (public, private)
}

/// The npm configuration of the user a node runs as (its `HOME` beside `data`), as an operator
/// would have it: the scope's registry, and its token from the environment.
fn operator_npmrc(data: &Path, private: &FakeNpm) {
    let private_key = private.url.trim_start_matches("http:");
    let home = data.with_extension("home");
    std::fs::create_dir_all(&home).expect("home");
    std::fs::write(
        home.join(".npmrc"),
        format!(
            "@corp:registry={}\n{private_key}:_authToken=${{CORP_NPM_TOKEN}}\n",
            private.url
        ),
    )
    .expect("npmrc");
}

#[test]
fn an_npm_scope_goes_to_its_own_registry_with_its_token_and_nowhere_else() {
    let tmp = tempfile::tempdir().expect("tempdir");
    let data = tmp.path().join("data");
    let (public, private) = registries();
    operator_npmrc(&data, &private);
    let node = Cairn::start_with_env(
        &data,
        &["--npm-upstream", &public.url],
        &[("CORP_NPM_TOKEN", TOKEN), ("CAIRN_LOG", "debug")],
    );

    let env = ClientEnv::new(&tmp.path().join("client"), &node.npm());
    let app = project(
        &tmp.path().join("app"),
        serde_json::json!({ "@corp/app-core": "*", "pub-lib": "^1.0.0" }),
    );
    assert_success(&env.run("npm", &["install"], &app), "npm install");

    // The private package, not the decoy; the public library, not the private shadow.
    let installed = |name: &str| -> serde_json::Value {
        let path = app.join("node_modules").join(name).join("package.json");
        serde_json::from_str(&std::fs::read_to_string(&path).expect("installed")).expect("json")
    };
    assert_eq!(installed("@corp/app-core")["version"], "1.2.0");
    assert_eq!(installed("@corp/log")["version"], "2.0.0");
    assert_eq!(installed("pub-lib")["version"], "1.1.0");

    // Each name reached exactly its registry; the private one was always sent the token, the
    // public one never.
    let public_asked = public.requests();
    assert!(
        public_asked.iter().all(|p| !p.contains("corp")),
        "a @corp name reached the public registry: {public_asked:?}"
    );
    assert!(public_asked.iter().any(|p| p.contains("pub-lib")));
    let private_asked = private.requests();
    assert!(
        private_asked.iter().all(|p| p.contains("corp")),
        "a public name reached the private registry: {private_asked:?}"
    );
    assert_eq!(private.authorized_hits(), private_asked.len());
    assert!(private_asked.len() >= 4, "{private_asked:?}");
    assert_eq!(public.authorized_hits(), 0);

    // The token is nowhere it could leak.
    let metrics = get(&format!("{}/metrics", node.url)).text;
    let status = get(&format!("{}/api/v1/status", node.url)).text;
    let report: serde_json::Value = serde_json::from_str(&status).expect("status");
    let npm = report["upstreams"]
        .as_array()
        .expect("upstreams")
        .iter()
        .find(|u| u["ecosystem"] == "npm")
        .expect("npm");
    assert_eq!(npm["routed"][0]["names"][0], "@corp/*", "{status}");
    assert_eq!(npm["routed"][0]["private"], true, "{status}");
    let packument = get(&format!("{}/npm/@corp%2fapp-core", node.url));
    assert_eq!(packument.status, 200);
    assert!(
        packument.text.contains(&node.url),
        "tarballs point at the node"
    );
    let lockfile = std::fs::read_to_string(app.join("package-lock.json")).expect("lockfile");
    assert!(lockfile.contains(&format!("{}/npm/@corp/app-core/-/", node.url)));
    for (what, text) in [
        ("/metrics", &metrics),
        ("/api/v1/status", &status),
        ("the rendered packument", &packument.text),
        ("the lockfile", &lockfile),
    ] {
        assert!(!text.contains(TOKEN), "the token is in {what}");
    }
    node.stop();
    let log = std::fs::read_to_string(data.with_extension("log")).expect("log");
    assert!(log.contains("routed upstream"), "{log}");
    assert!(!log.contains(TOKEN), "the token is in the node's log");
    let car = tmp.path().join("app.car");
    let exported = cairn(&[
        "export",
        "--data-dir",
        data.to_str().expect("path"),
        "--lockfile",
        app.join("package-lock.json").to_str().expect("path"),
        "-o",
        car.to_str().expect("path"),
    ]);
    assert_success(&exported, "cairn export");
    let bundle = std::fs::read(&car).expect("bundle");
    assert!(bundle.len() > 64 << 10, "the bundle holds the packages");
    assert!(
        !bundle.windows(TOKEN.len()).any(|w| w == TOKEN.as_bytes()),
        "the token is in the exported bundle"
    );
}

/// A node fronting both registries, with everything installed through it, and a second node,
/// offline, joined to it: `(first, second)`. With `key`, both share that swarm key.
fn two_nodes(
    tmp: &Path,
    public: &FakeNpm,
    private: &FakeNpm,
    key: Option<&Path>,
) -> (Cairn, Cairn) {
    let mut swarm = vec!["--p2p-listen", "/ip4/127.0.0.1/tcp/0", "--no-mdns"];
    let key_arg = key.map(|k| k.to_str().expect("path").to_owned());
    if let Some(key) = &key_arg {
        swarm.extend(["--swarm-key", key]);
    }
    let data_a = tmp.join("a");
    operator_npmrc(&data_a, private);
    let mut a_args = swarm.clone();
    a_args.extend(["--npm-upstream", &public.url]);
    let a = Cairn::start_with_env(&data_a, &a_args, &[("CORP_NPM_TOKEN", TOKEN)]);
    let env = ClientEnv::new(&tmp.join("client-a"), &a.npm());
    let app = project(
        &tmp.join("app-a"),
        serde_json::json!({ "@corp/app-core": "*", "pub-lib": "^1.0.0" }),
    );
    assert_success(&env.run("npm", &["install"], &app), "npm install through A");

    // B has no upstream to reach: what it gets, it gets from A.
    let a_address = a.p2p_address();
    let mut b_args = swarm;
    b_args.extend(["--bootstrap", &a_address, "--offline"]);
    if key.is_none() {
        b_args.push("--trust-peer-metadata");
    }
    let b = Cairn::start(&tmp.join("b"), &b_args);
    b.wait_connected(&[&a.peer_id()], Duration::from_secs(30));
    (a, b)
}

/// `npm install` of `dependencies` through `node` from an empty cache.
fn install_through(
    node: &Cairn,
    dir: &Path,
    dependencies: serde_json::Value,
) -> std::process::Output {
    let env = ClientEnv::new(&dir.join("env"), &node.npm());
    let app = project(&dir.join("app"), dependencies);
    env.run("npm", &["install"], &app)
}

#[test]
fn an_open_swarm_is_never_given_private_packages() {
    let tmp = tempfile::tempdir().expect("tempdir");
    let (public, private) = registries();
    let (a, b) = two_nodes(tmp.path(), &public, &private, None);
    // The swarm works: the public library comes from A.
    assert_success(
        &install_through(
            &b,
            &tmp.path().join("b-public"),
            serde_json::json!({ "pub-lib": "^1.0.0" }),
        ),
        "npm install of a public package through B",
    );
    // The private package does not: A neither shows B its document nor serves its files.
    let refused = install_through(
        &b,
        &tmp.path().join("b-private"),
        serde_json::json!({ "@corp/app-core": "*" }),
    );
    assert!(
        !refused.status.success(),
        "B installed a private package from an open swarm:\n{}",
        String::from_utf8_lossy(&refused.stdout)
    );
    let held = get(&format!("{}/npm/@corp%2fapp-core", b.url));
    assert_ne!(held.status, 200, "{}", held.text);
    assert!(!held.text.contains("1.2.0"), "{}", held.text);
    drop((a, b));
}

#[test]
fn a_private_swarm_shares_private_packages() {
    let tmp = tempfile::tempdir().expect("tempdir");
    let (public, private) = registries();
    let key = swarm_key(&tmp.path().join("swarm.key"), 0x5c);
    let (_a, b) = two_nodes(tmp.path(), &public, &private, Some(&key));
    let dir = tmp.path().join("b-private");
    assert_success(
        &install_through(&b, &dir, serde_json::json!({ "@corp/app-core": "*" })),
        "npm install of the private package through B",
    );
    let installed =
        std::fs::read_to_string(dir.join("app/node_modules/@corp/app-core/package.json"))
            .expect("installed");
    assert!(installed.contains("\"1.2.0\""), "{installed}");
}

/// The PyPI indexes: the public one with `alpha-lib` (and its dependency) and a decoy
/// `corp-billing`; the private one, behind basic auth, with the real `corp-billing` (which
/// needs `alpha-lib`) and an `alpha-lib` shadow that must never be taken.
fn pypi_indexes(work: &Path) -> (FakePypi, FakePypi) {
    let mut public = crate::pypi::index(&work.join("public"));
    public.wheel(&work.join("public"), "corp-billing", "9.9.9", &[], None);
    let mut private = Index::default();
    private
        .wheel(
            &work.join("private"),
            "Corp_Billing",
            "1.4.0",
            &["alpha-lib"],
            None,
        )
        .wheel(&work.join("private"), "alpha-lib", "7.0.0", &[], None);
    let basic = base64::engine::general_purpose::STANDARD.encode(format!("ci:{PYPI_PASSWORD}"));
    (
        FakePypi::start(public),
        FakePypi::start_guarded(private, &format!("Basic {basic}")),
    )
}

const PYPI_PASSWORD: &str = "pypi-pa55-7a1c";

#[test]
fn pip_and_uv_take_a_routed_project_from_the_private_index_only() {
    let tmp = tempfile::tempdir().expect("tempdir");
    let (public, private) = pypi_indexes(&tmp.path().join("wheels"));
    let data = tmp.path().join("data");
    // The credentials in the node's user's `.netrc`, as pip would find them.
    let home = data.with_extension("home");
    std::fs::create_dir_all(&home).expect("home");
    std::fs::write(
        home.join(".netrc"),
        format!("machine 127.0.0.1\n  login ci\n  password {PYPI_PASSWORD}\n"),
    )
    .expect("netrc");
    let node = Cairn::start_with_env(
        &data,
        &[
            "--pypi-upstream",
            &public.simple_url,
            "--pypi-index",
            &format!("corp={}", private.simple_url),
            "--pypi-route",
            "corp-*=corp",
        ],
        &[("CAIRN_LOG", "debug")],
    );
    let index_url = format!("{}/pypi/simple/", node.url);
    let client_home = tmp.path().join("client-home");
    let pip_venv = venv(&tmp.path().join("pip-venv"));
    assert_success(
        &python_tool(
            &pip_venv.join("bin/pip"),
            &[
                "install",
                "--no-cache-dir",
                "--index-url",
                &index_url,
                "corp-billing",
            ],
            &client_home,
        ),
        "pip install corp-billing",
    );
    let uv_venv = venv(&tmp.path().join("uv-venv"));
    let python = uv_venv.join("bin/python");
    assert_success(
        &python_tool(
            &crate::tools::tools().uv,
            &[
                "pip",
                "install",
                "--no-cache",
                "--python",
                python.to_str().expect("path"),
                "--index-url",
                &index_url,
                "corp-billing",
            ],
            &client_home,
        ),
        "uv pip install corp-billing",
    );
    for venv in [&pip_venv, &uv_venv] {
        let versions = std::process::Command::new(venv.join("bin/python"))
            .args([
                "-c",
                "import corp_billing, alpha_lib; print(corp_billing.VERSION, alpha_lib.VERSION)",
            ])
            .output()
            .expect("python");
        assert_success(&versions, "import");
        // The private project, not the decoy; the public library, not the private shadow.
        assert_eq!(
            String::from_utf8_lossy(&versions.stdout).trim(),
            "1.4.0 1.0.0"
        );
    }
    let public_asked = public.requests();
    assert!(
        public_asked
            .iter()
            .all(|p| !p.to_ascii_lowercase().contains("corp")),
        "a routed project reached the public index: {public_asked:?}"
    );
    let private_asked = private.requests();
    assert!(
        private_asked
            .iter()
            .all(|p| p.to_ascii_lowercase().contains("corp")),
        "an unrouted project reached the private index: {private_asked:?}"
    );
    assert!(
        private_asked.iter().any(|p| p.ends_with(".whl")),
        "{private_asked:?}"
    );
    let status = get(&format!("{}/api/v1/status", node.url)).text;
    assert!(
        status.contains("corp-*") && !status.contains(PYPI_PASSWORD),
        "{status}"
    );
    node.stop();
    let log = std::fs::read_to_string(data.with_extension("log")).expect("log");
    assert!(
        !log.contains(PYPI_PASSWORD),
        "the password is in the node's log"
    );
    assert!(
        log.contains("upstream credentials") || log.contains("credentials=true"),
        "{log}"
    );
}

const CARGO_TOKEN: &str = "cargo-corp-t0ken-91ab";

#[test]
fn cargo_uses_an_alternative_registry_that_needs_a_token_through_the_node() {
    let tmp = tempfile::tempdir().expect("tempdir");
    let public = FakeCargo::start(crate::cargo::registry());
    let mut corp = CargoRegistry::default();
    corp.publish("corp-util", "1.3.0", &[], false)
        .publish("corp-util", "1.4.0", &[], false);
    let private = FakeCargo::start_guarded(corp, CARGO_TOKEN);
    // The node's own cargo configuration: the registry, and its token where `cargo login`
    // keeps it.
    let data = tmp.path().join("data");
    let node_cargo = data.with_extension("home").join(".cargo");
    std::fs::create_dir_all(&node_cargo).expect("cargo home");
    std::fs::write(
        node_cargo.join("config.toml"),
        format!(
            "[registries.corp]\nindex = \"sparse+{}\"\n",
            private.index_url
        ),
    )
    .expect("config");
    std::fs::write(
        node_cargo.join("credentials.toml"),
        format!("[registries.corp]\ntoken = \"{CARGO_TOKEN}\"\n"),
    )
    .expect("credentials");
    let node = Cairn::start_with_env(
        &data,
        &["--cargo-upstream", &public.index_url],
        &[
            ("CARGO_HOME", node_cargo.to_str().expect("path")),
            ("CAIRN_LOG", "debug"),
        ],
    );
    let corp_index = format!("{}/cargo/corp/index/", node.url);
    let config = get(&format!("{corp_index}config.json"));
    assert_eq!(config.status, 200, "{}", config.text);
    assert!(!config.text.contains("auth-required"), "{}", config.text);

    // The client: crates-io replaced by the node, and the node's `corp` registry.
    let home = crate::cargo::cargo_home(
        &tmp.path().join("client-cargo"),
        &format!("{}/cargo/index/", node.url),
    );
    let mut client_config =
        std::fs::read_to_string(home.join("config.toml")).expect("client config");
    client_config.push_str(&format!(
        "\n[registries.corp]\nindex = \"sparse+{corp_index}\"\n"
    ));
    std::fs::write(home.join("config.toml"), client_config).expect("client config");
    let project = tmp.path().join("app");
    std::fs::create_dir_all(project.join("src")).expect("project");
    std::fs::write(
        project.join("Cargo.toml"),
        "[package]\nname = \"e2e-app\"\nversion = \"0.1.0\"\nedition = \"2021\"\n\n\
         [dependencies]\ncorp-util = { version = \"1\", registry = \"corp\" }\n\
         base-util = \"1\"\n",
    )
    .expect("manifest");
    std::fs::write(project.join("src/main.rs"), "fn main() {}\n").expect("main");
    assert_success(
        &crate::cargo::cargo(&home, &project, &["build", "--quiet"]),
        "cargo build with an alternative registry",
    );
    let lock = std::fs::read_to_string(project.join("Cargo.lock")).expect("lock");
    assert!(lock.contains(&format!("sparse+{corp_index}")), "{lock}");
    assert!(lock.contains("1.4.0"), "{lock}");
    assert!(!lock.contains(CARGO_TOKEN));

    // Each crate reached its registry only; the private one always with the token.
    let public_asked = public.requests();
    assert!(
        public_asked.iter().all(|p| !p.contains("corp")),
        "{public_asked:?}"
    );
    let private_asked = private.requests();
    assert!(
        private_asked
            .iter()
            .all(|p| p.contains("corp") || p.ends_with("config.json")),
        "{private_asked:?}"
    );
    assert!(
        private_asked.iter().any(|p| p.ends_with(".crate")),
        "{private_asked:?}"
    );
    let status = get(&format!("{}/api/v1/status", node.url)).text;
    assert!(
        status.contains("cargo/corp") && !status.contains(CARGO_TOKEN),
        "{status}"
    );
    node.stop();
    let log = std::fs::read_to_string(data.with_extension("log")).expect("log");
    assert!(!log.contains(CARGO_TOKEN), "the token is in the node's log");
}

const APT_PASSWORD: &str = "apt-pa55-0c3d";

#[test]
fn apt_get_updates_and_installs_from_an_archive_behind_basic_auth() {
    let tmp = tempfile::tempdir().expect("tempdir");
    let archive = crate::fake_apt::build_archive(&tmp.path().join("archive"));
    let basic = base64::engine::general_purpose::STANDARD.encode(format!("apt:{APT_PASSWORD}"));
    let fake = crate::fake_apt::serve_guarded(&archive, Some(&format!("Basic {basic}")));
    let with_credentials = fake
        .url
        .replacen("http://", &format!("http://apt:{APT_PASSWORD}@"), 1);
    let data = tmp.path().join("data");
    let node = Cairn::start_with_env(
        &data,
        &[
            "--apt-upstream",
            &format!("corp={with_credentials}"),
            "--apt-keyring",
            &format!("corp={}", archive.keyring.display()),
        ],
        &[("CAIRN_LOG", "debug")],
    );
    let line = format!(
        "deb [signed-by={}] {}/apt/corp {} {}",
        archive.keyring.display(),
        node.url,
        crate::fake_apt::SUITE,
        crate::fake_apt::COMPONENT
    );
    let apt = crate::fake_apt::AptClient::new(&tmp.path().join("apt"), &line);
    assert_success(&apt.run(&["update"]), "apt-get update");
    assert_success(
        &apt.run(&["install", "--download-only", "-y", "cairn-hello"]),
        "apt-get install",
    );
    let deb = archive.deb("cairn-hello");
    let file = deb.filename.rsplit('/').next().expect("file name");
    assert!(
        apt.archives_dir().join(file).is_file(),
        "{file} not downloaded"
    );
    assert!(fake.requests().iter().any(|p| p.ends_with(".deb")));
    let status = get(&format!("{}/api/v1/status", node.url)).text;
    assert!(!status.contains(APT_PASSWORD), "{status}");
    assert!(status.contains("****"), "{status}");
    node.stop();
    let log = std::fs::read_to_string(data.with_extension("log")).expect("log");
    assert!(
        !log.contains(APT_PASSWORD),
        "the password is in the node's log"
    );
}

#[test]
fn setup_npm_apply_records_the_scopes_and_routes_them_through_the_node() {
    let tmp = tempfile::tempdir().expect("tempdir");
    let (public, private) = registries();
    let data = tmp.path().join("data");
    // The user's npm configuration before Cairn: the public registry, the scope's own, and
    // the scope's token.
    let home = data.with_extension("home");
    std::fs::create_dir_all(&home).expect("home");
    let private_key = private.url.trim_start_matches("http:");
    std::fs::write(
        home.join(".npmrc"),
        format!(
            "registry={}\n@corp:registry={}\n{private_key}:_authToken=${{CORP_NPM_TOKEN}}\n",
            public.url, private.url
        ),
    )
    .expect("npmrc");
    let env = [("CORP_NPM_TOKEN", TOKEN)];
    let node = Cairn::start_with_env(&data, &[], &env);
    let listen = node.url.trim_start_matches("http://").to_owned();
    let setup = std::process::Command::new(env!("CARGO_BIN_EXE_cairn"))
        .args(["setup", "npm", "--url", &node.npm(), "--apply"])
        .env("HOME", &home)
        .env("XDG_CONFIG_HOME", home.join(".config"))
        .env_remove("NPM_CONFIG_USERCONFIG")
        .env_remove("NPM_CONFIG_REGISTRY")
        .output()
        .expect("cairn setup");
    assert_success(&setup, "cairn setup npm --apply");
    let printed = String::from_utf8_lossy(&setup.stdout).into_owned();
    assert!(printed.contains("recorded npm-scope @corp="), "{printed}");
    let recorded =
        std::fs::read_to_string(home.join(".config/cairn/cairn.toml")).expect("cairn.toml");
    assert!(
        recorded.contains(&format!("@corp={}", private.url)),
        "{recorded}"
    );
    let npmrc = std::fs::read_to_string(home.join(".npmrc")).expect("npmrc");
    assert!(
        npmrc.contains(&format!("@corp:registry={}", node.npm())),
        "{npmrc}"
    );
    // Restarted, the node reads what setup recorded (npm's own settings now point at it).
    node.stop();
    let node = Cairn::start_with_env(&data, &["--listen", &listen], &env);
    let app = project(
        &tmp.path().join("app"),
        serde_json::json!({ "@corp/app-core": "*", "pub-lib": "^1.0.0" }),
    );
    let install = std::process::Command::new("npm")
        .args(["install", "--no-audit", "--no-fund"])
        .current_dir(&app)
        .env("HOME", &home)
        .env("NPM_CONFIG_CACHE", tmp.path().join("npm-cache"))
        .env("NPM_CONFIG_OMIT_LOCKFILE_REGISTRY_RESOLVED", "false")
        .env_remove("NPM_CONFIG_USERCONFIG")
        .env_remove("NPM_CONFIG_REGISTRY")
        .output()
        .expect("npm");
    assert_success(&install, "npm install with the user's own configuration");
    let core = std::fs::read_to_string(app.join("node_modules/@corp/app-core/package.json"))
        .expect("installed");
    assert!(core.contains("\"1.2.0\""), "{core}");
    let lock = std::fs::read_to_string(app.join("package-lock.json")).expect("lock");
    assert!(
        !lock.contains(&private.url),
        "a package bypassed the node:\n{lock}"
    );
    assert!(
        lock.contains(&format!("{}@corp/app-core/-/", node.npm())),
        "{lock}"
    );
    assert!(private.requests().iter().any(|p| p.ends_with(".tgz")));
    assert!(public.requests().iter().all(|p| !p.contains("corp")));
    drop(node);
}
