//! The tools the tests drive besides the machine's own clients (yarn 1, pnpm, yarn 4, uv,
//! kubernetes-validate, helm, podman-compose, IPFS's and Helia's JS libraries, and Playwright's driver), pinned in `tests/tools/` and provisioned in one place: the
//! first test that needs any of them installs all of them, once per run, under
//! `CARGO_TARGET_TMPDIR/tools/`, and every later test finds them there.
//!
//! The pins: each `tests/tools/js/SET/` holds a `package.json` of exact versions and the
//! `package-lock.json` (every package's version and integrity hash; no registry URL, so the
//! machine's configured npm registry is used) that `npm ci` installs exactly;
//! `tests/tools/python/requirements.txt` names uv's and kubernetes-validate's versions (and
//! the latter's dependencies) with the sha256 of each wheel (`pip --require-hashes`). A set is installed again only when its pins change.
//!
//! These are tools, not packages that flow through Cairn: they come from the machine's own
//! registries, never from a fake upstream or a node under test. A tool that cannot be installed
//! fails the test that asked for it, naming the tool: it is never a skip.

use std::path::{Path, PathBuf};
use std::process::Command;
use std::sync::OnceLock;

use crate::support::assert_success;

/// Where the provisioned tools are.
pub struct Tools {
    /// yarn 1's command.
    pub yarn: PathBuf,
    /// pnpm's command.
    pub pnpm: PathBuf,
    /// yarn 4's single-file CLI, run as `node yarn.js` (apart from yarn 1, whose command has the
    /// same name).
    pub yarn_berry: PathBuf,
    /// uv's command.
    pub uv: PathBuf,
    /// kubernetes-validate's command (Kubernetes manifests against the schemas, offline).
    pub kubernetes_validate: PathBuf,
    /// Helm's `helm` (renders and lints the chart).
    pub helm: PathBuf,
    /// podman-compose (brings up `deploy/compose.yaml`).
    pub podman_compose: PathBuf,
    /// IPFS's JS tools, with `verify-car.mjs` and `helia-gateway-fetch.mjs` beside them (run
    /// them from here so their imports resolve).
    pub ipfs: PathBuf,
    /// Helia's libp2p and Bitswap, with `helia-bitswap.mjs` beside them.
    pub helia: PathBuf,
    /// Playwright's driver, with `dashboard-browser.mjs` beside it (it drives Debian's
    /// chromium: see [`debian_command`]).
    pub browser: PathBuf,
}

/// The tools, provisioned on first use (all of them, once per run).
pub fn tools() -> &'static Tools {
    static TOOLS: OnceLock<Tools> = OnceLock::new();
    TOOLS.get_or_init(provision)
}

fn pins() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/tools")
}

fn installed() -> PathBuf {
    PathBuf::from(env!("CARGO_TARGET_TMPDIR")).join("tools")
}

fn provision() -> Tools {
    let clients = npm_set("clients", &[]);
    let yarn_berry = npm_set("yarn-berry", &[]);
    let ipfs = npm_set("ipfs", &["verify-car.mjs", "helia-gateway-fetch.mjs"]);
    let helia = npm_set("helia", &["helia-bitswap.mjs"]);
    let browser = npm_set("browser", &["dashboard-browser.mjs"]);
    let python = python_set();
    let tools = Tools {
        yarn: clients.join("node_modules/.bin/yarn"),
        pnpm: clients.join("node_modules/.bin/pnpm"),
        yarn_berry: yarn_berry.join("node_modules/@yarnpkg/cli-dist/bin/yarn.js"),
        uv: uv(&python),
        kubernetes_validate: python.join("bin/kubernetes-validate"),
        helm: python.join("bin/helm"),
        podman_compose: python.join("bin/podman-compose"),
        ipfs,
        helia,
        browser,
    };
    for (name, path) in [
        ("yarn", &tools.yarn),
        ("pnpm", &tools.pnpm),
        ("yarn 4", &tools.yarn_berry),
        ("kubernetes-validate", &tools.kubernetes_validate),
        ("helm", &tools.helm),
        ("podman-compose", &tools.podman_compose),
    ] {
        assert!(
            path.is_file(),
            "{name} is not at {} after provisioning the pinned tools",
            path.display()
        );
    }
    tools
}

/// The command `command` of Debian's package `package`, installed with [`apt_install`] when it
/// is not on the machine yet: `chromium` for the dashboard test, `podman` and
/// `runc` for the container tests. A package that cannot be installed fails the test, naming
/// it.
pub fn debian_command(package: &str, command: &str) -> PathBuf {
    static INSTALLING: std::sync::Mutex<()> = std::sync::Mutex::new(());
    let _one_at_a_time = INSTALLING
        .lock()
        .unwrap_or_else(std::sync::PoisonError::into_inner);
    let found = |command: &str| {
        std::env::var_os("PATH").and_then(|paths| {
            std::env::split_paths(&paths)
                .map(|dir| dir.join(command))
                .find(|path| path.is_file())
        })
    };
    if let Some(path) = found(command) {
        return path;
    }
    let output = apt_install(&[package]);
    assert_success(
        &output,
        &format!("installing Debian's {package} (apt-get install)"),
    );
    found(command).unwrap_or_else(|| {
        panic!("Debian's {package} is installed but {command} is not on the PATH")
    })
}

/// `apt-get install` the first of `choices` that installs (a package pinned to a version, then
/// unpinned, say), from the machine's configured archive; when none does, the package lists
/// are read (`apt-get update`: a fresh machine may have none, or stale ones) and the choices
/// tried again. The last attempt's output.
pub fn apt_install(choices: &[&str]) -> std::process::Output {
    let apt_get = |args: &[&str]| {
        Command::new("apt-get")
            .args(args)
            .args(["-o", "DPkg::Lock::Timeout=600"])
            .env("DEBIAN_FRONTEND", "noninteractive")
            .stdin(std::process::Stdio::null())
            .output()
            .unwrap_or_else(|e| panic!("apt-get {}: cannot run apt-get: {e}", args.join(" ")))
    };
    let install =
        |package: &str| apt_get(&["install", "-y", "-q", "--no-install-recommends", package]);
    let first_that_installs = || {
        let mut last = None;
        for package in choices {
            let output = install(package);
            if output.status.success() {
                return output;
            }
            last = Some(output);
        }
        last.expect("apt_install is given a package")
    };
    let output = first_that_installs();
    if output.status.success() {
        return output;
    }
    assert_success(&apt_get(&["update", "-q"]), "apt-get update");
    first_that_installs()
}

fn read(path: &Path) -> String {
    std::fs::read_to_string(path)
        .unwrap_or_else(|e| panic!("cannot read the tool pins {}: {e}", path.display()))
}

/// Install the JS tool set `tests/tools/js/NAME` with `npm ci` (unless the same pins are
/// installed already), check every pinned package is there at its exact version, and copy the
/// `tests/tools/` scripts named in `scripts` beside it.
fn npm_set(name: &str, scripts: &[&str]) -> PathBuf {
    let dir = installed().join("js").join(name);
    let what = install_npm_set(name, &pins().join("js").join(name), &dir);
    for script in scripts {
        std::fs::copy(pins().join(script), dir.join(script))
            .unwrap_or_else(|e| panic!("copying tests/tools/{script} beside {what}: {e}"));
    }
    dir
}

/// Install the set pinned in `pinned` into `dir`, unless its pins are installed there already;
/// panic naming the set and its packages when that fails. Returns that name.
fn install_npm_set(name: &str, pinned: &Path, dir: &Path) -> String {
    let manifest = read(&pinned.join("package.json"));
    let lock = read(&pinned.join("package-lock.json"));
    let stamp = dir.join(".provisioned");
    let pins_text = format!("{manifest}\n{lock}");
    let wanted: serde_json::Value = serde_json::from_str(&manifest)
        .unwrap_or_else(|e| panic!("tests/tools/js/{name}/package.json: {e}"));
    let wanted = wanted["dependencies"]
        .as_object()
        .cloned()
        .unwrap_or_default();
    let what = format!(
        "the pinned JS tools {name} ({})",
        wanted
            .iter()
            .map(|(package, version)| format!("{package}@{}", version.as_str().unwrap_or("?")))
            .collect::<Vec<_>>()
            .join(", ")
    );
    if std::fs::read_to_string(&stamp).ok().as_deref() != Some(pins_text.as_str()) {
        let _ = std::fs::remove_dir_all(dir);
        std::fs::create_dir_all(dir).expect("tools dir");
        std::fs::write(dir.join("package.json"), &manifest).expect("package.json");
        std::fs::write(dir.join("package-lock.json"), &lock).expect("package-lock.json");
        // No install scripts: the tools need none, and some optional dependencies would try
        // to download native builds.
        let output = Command::new("npm")
            .args(["ci", "--ignore-scripts", "--no-audit", "--no-fund"])
            .current_dir(dir)
            .env_remove("NPM_CONFIG_PREFIX")
            .output()
            .unwrap_or_else(|e| panic!("installing {what}: cannot run npm: {e}"));
        assert_success(&output, &format!("installing {what}"));
        std::fs::write(&stamp, &pins_text).expect("stamp");
    }
    for (package, version) in &wanted {
        let found =
            std::fs::read_to_string(dir.join("node_modules").join(package).join("package.json"))
                .ok()
                .and_then(|text| serde_json::from_str::<serde_json::Value>(&text).ok())
                .and_then(|m| m["version"].as_str().map(str::to_owned));
        assert_eq!(
            found.as_deref(),
            version.as_str(),
            "{package} is not installed at its pinned version in {}",
            dir.display()
        );
    }
    what
}

/// The Python tools, installed into one venv from `tests/tools/python/requirements.txt` (every
/// wheel's hash required): the venv.
fn python_set() -> PathBuf {
    let requirements = pins().join("python/requirements.txt");
    let pins_text = read(&requirements);
    let venv = installed().join("python");
    let stamp = venv.join(".provisioned");
    if std::fs::read_to_string(&stamp).ok().as_deref() != Some(pins_text.as_str()) {
        let _ = std::fs::remove_dir_all(&venv);
        let output = Command::new("python3")
            .args(["-m", "venv"])
            .arg(&venv)
            .output()
            .unwrap_or_else(|e| panic!("installing the Python tools: cannot run python3: {e}"));
        assert_success(&output, "making a venv for the Python tools");
        let output = Command::new(venv.join("bin/pip"))
            .args([
                "install",
                "--quiet",
                "--disable-pip-version-check",
                "--require-hashes",
                "--only-binary",
                ":all:",
                "--no-deps",
                "-r",
            ])
            .arg(&requirements)
            .output()
            .unwrap_or_else(|e| panic!("installing the Python tools: cannot run pip: {e}"));
        assert_success(
            &output,
            "installing the Python tools of tests/tools/python/requirements.txt",
        );
        std::fs::write(&stamp, &pins_text).expect("stamp");
    }
    venv
}

/// uv in the Python tools' venv, checked to be the pinned version.
fn uv(venv: &Path) -> PathBuf {
    let pins_text = read(&pins().join("python/requirements.txt"));
    let version = pins_text
        .lines()
        .find_map(|l| l.trim().strip_prefix("uv=="))
        .map(|v| v.trim_end_matches(['\\', ' ']).to_owned())
        .expect("tests/tools/python/requirements.txt pins uv==VERSION");
    let uv = venv.join("bin/uv");
    let output = Command::new(&uv)
        .arg("--version")
        .output()
        .unwrap_or_else(|e| panic!("uv {version} is not runnable at {}: {e}", uv.display()));
    let said = String::from_utf8_lossy(&output.stdout);
    assert!(
        said.split_whitespace().nth(1) == Some(version.as_str()),
        "uv at {} says {said:?}, not the pinned {version}",
        uv.display()
    );
    uv
}

/// The version `tests/tools/js/SET/package.json` pins for `package`.
fn pinned(set: &str, package: &str) -> String {
    let manifest: serde_json::Value =
        serde_json::from_str(&read(&pins().join("js").join(set).join("package.json")))
            .expect("package.json");
    manifest["dependencies"][package]
        .as_str()
        .unwrap_or_else(|| panic!("tests/tools/js/{set} pins no {package}"))
        .to_owned()
}

#[test]
fn the_pinned_tools_run_at_their_pinned_versions() {
    let tools = tools();
    let version = |command: &mut Command, what: &str| {
        let output = command
            .arg("--version")
            .output()
            .unwrap_or_else(|e| panic!("cannot run {what}: {e}"));
        assert_success(&output, &format!("{what} --version"));
        String::from_utf8_lossy(&output.stdout).trim().to_owned()
    };
    assert_eq!(
        version(&mut Command::new(&tools.yarn), "yarn"),
        pinned("clients", "yarn")
    );
    assert_eq!(
        version(&mut Command::new(&tools.pnpm), "pnpm"),
        pinned("clients", "pnpm")
    );
    assert_eq!(
        version(Command::new("node").arg(&tools.yarn_berry), "yarn 4"),
        pinned("yarn-berry", "@yarnpkg/cli-dist")
    );
    for (dir, script) in [
        (&tools.ipfs, "verify-car.mjs"),
        (&tools.ipfs, "helia-gateway-fetch.mjs"),
        (&tools.helia, "helia-bitswap.mjs"),
    ] {
        assert!(
            dir.join(script).is_file(),
            "{script} is not beside its tools"
        );
    }
}

#[test]
fn a_tool_whose_bytes_do_not_match_its_pinned_hash_fails_naming_it() {
    let tmp = tempfile::tempdir().expect("tempdir");
    let pinned = tmp.path().join("pins");
    std::fs::create_dir_all(&pinned).expect("pins dir");
    let manifest = serde_json::json!({
        "name": "broken-tools",
        "private": true,
        "dependencies": { "p-defer": "4.0.1" },
    });
    // The lockfile's integrity is the sha512 of no bytes: what the registry sends cannot match.
    let lock = serde_json::json!({
        "name": "broken-tools",
        "lockfileVersion": 3,
        "requires": true,
        "packages": {
            "": { "name": "broken-tools", "dependencies": { "p-defer": "4.0.1" } },
            "node_modules/p-defer": {
                "version": "4.0.1",
                "integrity": "sha512-z4PhNX7vuL3xVChQ1m2AB9Yg5AULVxXcg/SpIdNs6c5H0NE8XYXysP+DGNKHfuwvY7kxvUdBeoGlODJ6+SfaPg==",
            },
        },
    });
    std::fs::write(pinned.join("package.json"), manifest.to_string()).expect("package.json");
    std::fs::write(pinned.join("package-lock.json"), lock.to_string()).expect("lockfile");
    let failed = std::panic::catch_unwind(|| {
        install_npm_set("broken", &pinned, &tmp.path().join("installed"))
    })
    .expect_err("a tool that does not match its pinned hash was installed");
    let message = failed.downcast_ref::<String>().cloned().unwrap_or_default();
    assert!(
        message.contains("installing the pinned JS tools broken (p-defer@4.0.1) failed")
            && message.contains("EINTEGRITY"),
        "{message}"
    );
}
