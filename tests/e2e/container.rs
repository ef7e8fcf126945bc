//! The container pieces of `deploy/`, built and run with the real podman: the image that
//! `deploy/build-image.sh` makes FROM scratch out of the binary under test (small, a non-root
//! user, a HEALTHCHECK, nothing but the binary and its run-time files) serves the real npm
//! through a node in a container, and `deploy/compose.yaml`, brought up by podman-compose, is a
//! swarm in which a node with no upstream serves an install from another node's cache.
//!
//! Every test has a podman of its own: its storage, run state, locks (files, not the shared
//! memory every podman of the machine shares) and network settings live in a temporary
//! directory (`CONTAINERS_CONF` and `CONTAINERS_STORAGE_CONF` name its settings), so nothing is
//! cached across runs and nothing of the machine's own podman is touched; a guard removes its
//! containers, pods, volumes, networks and images, failed test or not, and prints the
//! containers' last log lines when a test failed. podman is installed with apt-get when
//! missing (a tool still missing after that is a failure, not a skip); podman-compose comes
//! pinned from `tests/tools/python/requirements.txt`.
//!
//! Two settings there are for machines like the CI's, whose root lacks `CAP_SYS_RESOURCE` and
//! whose cgroups are a v1/v2 hybrid. podman's rootful default asks the runtime for 1048576 open
//! files and processes, which such a root cannot raise its limits to (`crun: setrlimit
//! RLIMIT_NOFILE: Operation not permitted`): the containers get the test process's own limit of
//! open files and at most 4096 processes (plenty for a node). Debian's crun refuses hybrid
//! cgroups (`crun: cgroups in hybrid mode not supported, drop all controllers from cgroupv2`):
//! the runtime is runc, which runs on every layout. Without systemd, podman cannot schedule the
//! HEALTHCHECK (it logs `unable to get systemd connection to add healthchecks`); the tests run
//! it with `podman healthcheck run`.

use std::os::unix::fs::{MetadataExt, PermissionsExt};
use std::path::{Path, PathBuf};
use std::process::{Command, Output, Stdio};
use std::sync::OnceLock;
use std::time::{Duration, Instant};

use sha2::Digest as _;

use crate::fake_npm::{FakeNpm, Registry, noise};
use crate::support::{ClientEnv, assert_success, get, metric_sum, project, runtime, wait_for};

/// The image `deploy/compose.yaml` runs.
const IMAGE: &str = "cairn:latest";
/// The image's user and group.
const USER: u32 = 10001;
/// Most bytes the image may hold besides the binary: its libraries, the loader, CA
/// certificates, the archive keyring, passwd and group (about 3.5 MB on Debian bookworm).
const BASE_LIMIT: u64 = 8 << 20;
/// The files the image holds besides shared libraries and the dynamic loader.
const FILES: [&str; 6] = [
    "usr/local/bin/cairn",
    "etc/passwd",
    "etc/group",
    "etc/nsswitch.conf",
    "etc/ssl/certs/ca-certificates.crt",
    "usr/share/keyrings/debian-archive-keyring.gpg",
];

fn on_path(tool: &str) -> bool {
    std::env::var_os("PATH")
        .is_some_and(|paths| std::env::split_paths(&paths).any(|dir| dir.join(tool).is_file()))
}

/// podman and runc from the machine's Debian archive, installed once when missing.
fn ensure_podman() {
    static READY: OnceLock<()> = OnceLock::new();
    READY.get_or_init(|| {
        for tool in ["apt-get", "ldd", "strip", "umount"] {
            assert!(
                on_path(tool),
                "{tool} must be installed for the container tests"
            );
        }
        for tool in ["podman", "runc"] {
            crate::tools::debian_command(tool, tool);
        }
    });
}

/// podman-compose, pinned in `tests/tools/python/requirements.txt`: beside
/// kubernetes-validate in the Python tools' venv.
/// A free TCP port on `host`.
fn free_port(host: &str) -> u16 {
    std::net::TcpListener::bind((host, 0))
        .and_then(|l| l.local_addr())
        .map(|a| a.port())
        .unwrap_or_else(|e| panic!("a free port on {host}: {e}"))
}

/// A podman of this test's own (see the module's doc), removed with everything in it on drop.
struct Podman {
    dir: tempfile::TempDir,
    /// Unique to this podman: the compose project's name, which its networks start with.
    name: String,
}

impl Podman {
    fn new() -> Podman {
        ensure_podman();
        let dir = tempfile::Builder::new()
            .prefix("cairn-podman.")
            .tempdir()
            .expect("tempdir for podman");
        let root = dir.path();
        let limit = |resource, most: u64| {
            rustix::process::getrlimit(resource)
                .maximum
                .map_or(most, |max| max.min(most))
        };
        let files = limit(rustix::process::Resource::Nofile, 1 << 20);
        let processes = limit(rustix::process::Resource::Nproc, 4096);
        let conf = format!(
            "[containers]\n\
             default_ulimits = [\"nofile={files}:{files}\", \"nproc={processes}:{processes}\"]\n\
             [engine]\n\
             runtime = \"runc\"\n\
             lock_type = \"file\"\n\
             tmp_dir = \"{root}/tmp\"\n\
             events_logger = \"file\"\n\
             [network]\n\
             network_config_dir = \"{root}/networks\"\n",
            root = root.display()
        );
        std::fs::write(root.join("containers.conf"), conf).expect("containers.conf");
        let storage = format!(
            "[storage]\ndriver = \"overlay\"\ngraphroot = \"{root}/storage\"\n\
             runroot = \"{root}/run\"\n",
            root = root.display()
        );
        std::fs::write(root.join("storage.conf"), storage).expect("storage.conf");
        static MADE: std::sync::atomic::AtomicUsize = std::sync::atomic::AtomicUsize::new(0);
        let n = MADE.fetch_add(1, std::sync::atomic::Ordering::SeqCst);
        let name = format!("cairn-e2e-{}-{n}", std::process::id());
        Podman { dir, name }
    }

    /// `program` (podman, podman-compose, the build script) with this podman's settings.
    fn command(&self, program: impl AsRef<std::ffi::OsStr>) -> Command {
        let mut command = Command::new(program);
        command
            .env("CONTAINERS_CONF", self.dir.path().join("containers.conf"))
            .env(
                "CONTAINERS_STORAGE_CONF",
                self.dir.path().join("storage.conf"),
            )
            .env("TMPDIR", self.dir.path())
            .stdin(Stdio::null());
        command
    }

    fn run(&self, args: &[&str]) -> Output {
        self.command("podman")
            .args(args)
            .output()
            .expect("run podman")
    }

    /// `podman args…`, which must succeed: its stdout.
    fn ok(&self, args: &[&str]) -> String {
        let output = self.run(args);
        assert_success(&output, &format!("podman {}", args.join(" ")));
        String::from_utf8_lossy(&output.stdout).trim().to_owned()
    }

    /// `podman inspect` of a container or image, as JSON.
    fn inspect(&self, what: &[&str]) -> serde_json::Value {
        let text = self.ok(&[&["inspect"][..], what].concat());
        let all: serde_json::Value = serde_json::from_str(&text).expect("podman inspect JSON");
        all[0].clone()
    }

    /// The image built from the binary under test by `deploy/build-image.sh`, tagged [`IMAGE`].
    fn build_image(&self) {
        let script = concat!(env!("CARGO_MANIFEST_DIR"), "/deploy/build-image.sh");
        let output = self
            .command("bash")
            .args([script, env!("CARGO_BIN_EXE_cairn"), IMAGE])
            .output()
            .expect("run deploy/build-image.sh");
        assert_success(&output, "deploy/build-image.sh");
    }

    /// The containers, each as `podman ps --format json` lists it.
    fn containers(&self) -> Vec<serde_json::Value> {
        let text = self.ok(&["ps", "--all", "--format", "json"]);
        serde_json::from_str::<Vec<serde_json::Value>>(&text).expect("podman ps JSON")
    }

    /// Run the image's HEALTHCHECK in `container` now: whether it passed.
    fn healthy(&self, container: &str) -> bool {
        self.run(&["healthcheck", "run", container])
            .status
            .success()
    }
}

impl Drop for Podman {
    fn drop(&mut self) {
        // Nothing here may panic (a panic while unwinding aborts): failures are ignored.
        let quiet = |args: &[&str]| {
            self.command("podman")
                .args(args)
                .output()
                .unwrap_or_else(|_| Output {
                    status: std::process::ExitStatus::default(),
                    stdout: Vec::new(),
                    stderr: Vec::new(),
                })
        };
        if std::thread::panicking() {
            let listed = quiet(&["ps", "--all", "--format", "{{.Names}}"]);
            for name in String::from_utf8_lossy(&listed.stdout).split_whitespace() {
                let logs = quiet(&["logs", "--tail", "40", name]);
                eprintln!(
                    "--- podman logs {name}\n{}{}",
                    String::from_utf8_lossy(&logs.stdout),
                    String::from_utf8_lossy(&logs.stderr)
                );
            }
        }
        quiet(&["pod", "rm", "--all", "--force", "--time", "0"]);
        quiet(&["rm", "--all", "--force", "--volumes", "--time", "0"]);
        quiet(&["volume", "rm", "--all", "--force"]);
        let networks = quiet(&["network", "ls", "--format", "{{.Name}}"]);
        for network in String::from_utf8_lossy(&networks.stdout).split_whitespace() {
            if network != "podman" {
                quiet(&["network", "rm", "--force", network]);
            }
        }
        // The CNI plugins' address leases of this podman's networks (podman leaves them).
        let leases = Path::new("/var/lib/cni/networks");
        for entry in std::fs::read_dir(leases).into_iter().flatten().flatten() {
            if entry
                .file_name()
                .to_string_lossy()
                .starts_with(&format!("{}_", self.name))
            {
                let _ = std::fs::remove_dir_all(entry.path());
            }
        }
        quiet(&["image", "unmount", "--all", "--force"]);
        quiet(&["rmi", "--all", "--force"]);
        // Storage, run state, locks and volumes: all under this test's directory.
        quiet(&["system", "reset", "--force"]);
        // Whatever is still mounted under the directory (a crash between mounts), deepest first.
        let root = self.dir.path().to_string_lossy().into_owned();
        let mounts = std::fs::read_to_string("/proc/self/mounts").unwrap_or_default();
        let mut left: Vec<&str> = mounts
            .lines()
            .filter_map(|l| l.split_whitespace().nth(1))
            .filter(|m| m.starts_with(&root))
            .collect();
        left.sort_by_key(|m| std::cmp::Reverse(m.len()));
        for mount in left {
            let _ = Command::new("umount").args(["--lazy", mount]).output();
        }
    }
}

/// Whether `GET url/healthz` answers 200 within two seconds.
fn answers(url: &str) -> bool {
    runtime().block_on(async {
        let client = reqwest::Client::builder()
            .timeout(Duration::from_secs(2))
            .build()
            .expect("HTTP client");
        match client.get(format!("{url}/healthz")).send().await {
            Ok(reply) => reply.status().is_success(),
            Err(_) => false,
        }
    })
}

fn wait_answering(url: &str, what: &str) {
    wait_for(Duration::from_secs(60), &format!("{what} answers"), || {
        answers(url).then_some(())
    });
}

fn peers(url: &str) -> serde_json::Value {
    let reply = get(&format!("{url}/api/v1/peers"));
    assert_eq!(reply.status, 200, "{url}/api/v1/peers: {}", reply.text);
    serde_json::from_slice(&reply.body).expect("/api/v1/peers JSON")
}

#[test]
fn the_image_is_small_runs_as_a_non_root_user_with_a_healthcheck_and_serves_npm() {
    let started = Instant::now();
    let podman = Podman::new();
    podman.build_image();

    let image = podman.inspect(&["--type", "image", IMAGE]);
    let config = &image["Config"];
    assert_eq!(config["User"], format!("{USER}:{USER}"), "{config}");
    let env: Vec<&str> = config["Env"]
        .as_array()
        .expect("Env")
        .iter()
        .filter_map(|v| v.as_str())
        .collect();
    for setting in [
        "CAIRN_LISTEN=0.0.0.0:7777",
        "CAIRN_DATA_DIR=/var/lib/cairn",
        "CAIRN_LOG_FORMAT=json",
    ] {
        assert!(env.contains(&setting), "the image lacks {setting}: {env:?}");
    }
    assert_eq!(
        config["Entrypoint"],
        serde_json::json!(["/usr/local/bin/cairn"])
    );
    assert_eq!(config["Cmd"], serde_json::json!(["serve"]));
    let exposed: Vec<&String> = config["ExposedPorts"]
        .as_object()
        .expect("ExposedPorts")
        .keys()
        .collect();
    assert_eq!(exposed, ["7777/tcp", "7778/tcp", "7778/udp"], "{config}");
    assert!(
        config["Volumes"].get("/var/lib/cairn").is_some(),
        "{config}"
    );
    let check = if image["Healthcheck"].is_null() {
        &config["Healthcheck"]
    } else {
        &image["Healthcheck"]
    };
    assert_eq!(
        check["Test"],
        serde_json::json!(["CMD", "/usr/local/bin/cairn", "health"]),
        "the image's healthcheck: {image}"
    );

    // What the image holds: the binary without its debug information, the files FILES names,
    // shared libraries and the loader, and nothing else (no shell, no package manager).
    let root = PathBuf::from(podman.ok(&["image", "mount", IMAGE]));
    let files = crate::support::files_under(&root);
    let relative = |path: &Path| {
        path.strip_prefix(&root)
            .expect("a file of the image")
            .to_string_lossy()
            .into_owned()
    };
    let size = |path: &Path| std::fs::metadata(path).expect("a file of the image").len();
    let binary = size(&root.join("usr/local/bin/cairn"));
    let built = std::fs::metadata(env!("CARGO_BIN_EXE_cairn"))
        .expect("the binary under test")
        .len();
    assert!(
        binary < built,
        "the image's binary ({binary} bytes) is not stripped of its debug information \
         ({built} bytes built)"
    );
    let mut besides = 0;
    for file in &files {
        let name = relative(file);
        if name != "usr/local/bin/cairn" {
            besides += size(file);
        }
        let library = file
            .file_name()
            .is_some_and(|n| n.to_string_lossy().contains(".so"))
            && (name.starts_with("lib") || name.starts_with("usr/lib"));
        assert!(
            FILES.contains(&name.as_str()) || library,
            "the image holds {name}, which is neither a run-time file nor a shared library"
        );
    }
    for needed in FILES {
        assert!(root.join(needed).is_file(), "the image lacks {needed}");
    }
    assert!(
        files.iter().any(|f| relative(f).contains("ld-linux")),
        "the image has no dynamic loader: {files:?}"
    );
    assert!(
        besides <= BASE_LIMIT,
        "the image holds {besides} bytes besides the binary, more than {BASE_LIMIT}"
    );
    let passwd = std::fs::read_to_string(root.join("etc/passwd")).expect("the image's passwd");
    assert!(
        passwd.contains(&format!("cairn:x:{USER}:{USER}:")),
        "{passwd}"
    );
    let store = std::fs::metadata(root.join("var/lib/cairn")).expect("/var/lib/cairn");
    assert_eq!(
        (
            store.uid(),
            store.gid(),
            store.permissions().mode() & 0o7777
        ),
        (USER, USER, 0o700),
        "/var/lib/cairn in the image"
    );
    let tmp = std::fs::metadata(root.join("tmp")).expect("/tmp");
    assert_eq!(
        tmp.permissions().mode() & 0o7777,
        0o1777,
        "/tmp in the image"
    );
    podman.ok(&["image", "unmount", IMAGE]);
    let total = image["Size"].as_u64().expect("the image's size");
    assert!(
        total <= binary + BASE_LIMIT,
        "the image is {total} bytes, its binary {binary}"
    );
    eprintln!(
        "image {IMAGE}: {:.1} MB, of which the binary {:.1} MB",
        total as f64 / 1e6,
        binary as f64 / 1e6
    );

    // A node in a container on the host's network, its upstream the fake registry on
    // 127.0.0.1, hardened as deploy/kubernetes runs it (read-only root, no capabilities).
    let mut registry = Registry::default();
    registry
        .publish(
            "boxed-lib",
            "1.0.0",
            &[],
            &[("lib.bin", noise(256 << 10, 31))],
        )
        .publish("boxed-app", "1.0.0", &[("boxed-lib", "^1.0.0")], &[]);
    let fake = FakeNpm::start(registry);
    let listen = format!("127.0.0.1:{}", free_port("127.0.0.1"));
    let url = format!("http://{listen}");
    podman.ok(&[
        "run",
        "--detach",
        "--name",
        "cairn-node",
        "--network",
        "host",
        "--read-only",
        "--cap-drop",
        "all",
        "--security-opt",
        "no-new-privileges",
        "--env",
        &format!("CAIRN_LISTEN={listen}"),
        "--env",
        &format!("CAIRN_NPM_UPSTREAM={}", fake.url),
        "--env",
        "CAIRN_NO_P2P=true",
        IMAGE,
    ]);
    wait_answering(&url, "the node in the container");
    let work = tempfile::tempdir().expect("tempdir");
    let app = project(
        &work.path().join("app"),
        serde_json::json!({ "boxed-app": "1.0.0" }),
    );
    let client = ClientEnv::new(&work.path().join("client"), &format!("{url}/npm/"));
    assert_success(
        &client.run("npm", &["install"], &app),
        "npm install through the node in a container",
    );
    let installed = std::fs::read(app.join("node_modules/boxed-lib/lib.bin"))
        .expect("boxed-lib installed through the container");
    assert!(
        installed == noise(256 << 10, 31),
        "boxed-lib's file differs"
    );
    assert!(
        fake.hits("boxed-lib/-/boxed-lib-1.0.0.tgz") == 1,
        "the node did not fetch the tarball from upstream once: {:?}",
        fake.requests()
    );

    assert!(podman.healthy("cairn-node"), "the healthcheck failed");
    let container = podman.inspect(&["--type", "container", "cairn-node"]);
    assert_eq!(
        container["State"]["Health"]["Status"], "healthy",
        "{}",
        container["State"]
    );
    // The node runs as the image's user, on the host too (no user namespace here).
    let top = podman.ok(&["top", "cairn-node", "user", "huser", "args"]);
    assert!(
        top.lines()
            .skip(1)
            .all(|l| l.split_whitespace().take(2).eq(["cairn", "10001"])),
        "podman top: {top}"
    );
    let pid = container["State"]["Pid"].as_u64().expect("the node's pid");
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).expect("/proc/PID/status");
    let uids = status
        .lines()
        .find_map(|l| l.strip_prefix("Uid:"))
        .expect("Uid line");
    assert!(
        uids.split_whitespace().all(|u| u == "10001"),
        "the node's uids (real, effective, saved, file system): {uids}"
    );
    // Its store is the image's volume, the user's.
    let volume = container["Mounts"]
        .as_array()
        .expect("Mounts")
        .iter()
        .find(|m| m["Destination"] == "/var/lib/cairn")
        .and_then(|m| m["Source"].as_str())
        .expect("a volume at /var/lib/cairn");
    let owner = std::fs::metadata(volume).expect("the store's volume");
    assert_eq!((owner.uid(), owner.gid()), (USER, USER), "{volume}");
    // It logs JSON lines (CAIRN_LOG_FORMAT=json).
    let logs = podman.run(&["logs", "cairn-node"]);
    let logged = String::from_utf8_lossy(&logs.stderr);
    assert!(
        logged
            .lines()
            .any(|l| serde_json::from_str::<serde_json::Value>(l)
                .is_ok_and(|v| v["level"] == "INFO")),
        "no JSON log lines: {logged}"
    );
    // SIGTERM stops it cleanly.
    podman.ok(&["stop", "--time", "20", "cairn-node"]);
    let stopped = podman.inspect(&["--type", "container", "cairn-node"]);
    assert_eq!(stopped["State"]["ExitCode"], 0, "{}", stopped["State"]);

    // The healthcheck fails when no node answers where CAIRN_LISTEN says.
    let elsewhere = format!("127.0.0.1:{}", free_port("127.0.0.1"));
    podman.ok(&[
        "run",
        "--detach",
        "--name",
        "cairn-deaf",
        "--network",
        "host",
        "--env",
        &format!("CAIRN_LISTEN={listen}"),
        "--env",
        "CAIRN_NO_P2P=true",
        IMAGE,
        "serve",
        "--listen",
        &elsewhere,
    ]);
    wait_answering(&format!("http://{elsewhere}"), "the deaf node");
    assert!(
        !podman.healthy("cairn-deaf"),
        "the healthcheck passed with no node at CAIRN_LISTEN"
    );
    eprintln!("container test: {:.1} s", started.elapsed().as_secs_f64());
}

#[test]
fn the_compose_swarm_serves_an_install_through_a_node_without_upstream() {
    let started = Instant::now();
    let podman = Podman::new();
    let compose = &crate::tools::tools().podman_compose;
    podman.build_image();

    let mut registry = Registry::default();
    registry
        .publish(
            "swarm-lib",
            "1.0.0",
            &[],
            &[("lib.bin", noise(3 << 19, 32))],
        )
        .publish("swarm-app", "1.0.0", &[("swarm-lib", "^1.0.0")], &[]);
    let fake = FakeNpm::start(registry);

    // The shipped file as it is, beside the cairn.toml and swarm.key it mounts, made as its
    // head says: the upstream in cairn.toml, a swarm key only the nodes' group reads.
    let dir = podman.dir.path().join("project");
    std::fs::create_dir_all(&dir).expect("project dir");
    std::fs::copy(
        concat!(env!("CARGO_MANIFEST_DIR"), "/deploy/compose.yaml"),
        dir.join("compose.yaml"),
    )
    .expect("copy deploy/compose.yaml");
    std::fs::write(
        dir.join("cairn.toml"),
        format!("npm-upstream = \"{}\"\n", fake.url),
    )
    .expect("cairn.toml");
    let seed = format!("{}-{:?}", std::process::id(), std::time::SystemTime::now());
    let key = dir.join("swarm.key");
    std::fs::write(
        &key,
        format!(
            "/key/swarm/psk/1.0.0/\n/base16/\n{}\n",
            hex::encode(sha2::Sha256::digest(seed.as_bytes()))
        ),
    )
    .expect("swarm.key");
    std::os::unix::fs::chown(&key, None, Some(USER)).expect("chgrp swarm.key");
    std::fs::set_permissions(&key, std::fs::Permissions::from_mode(0o640))
        .expect("chmod swarm.key");

    // What the test adds. A runs on the host's network: its upstream, the fake registry,
    // listens on the host's loopback and names its tarballs there. B and C stay on the
    // compose network as shipped, and find A by mDNS over that network's bridge. B is offline:
    // whatever it serves comes from its peers.
    let a_http = free_port("127.0.0.1");
    let a_p2p = free_port("0.0.0.0");
    let [b_http, c_http] = [(); 2].map(|()| free_port("127.0.0.1"));
    std::fs::write(
        dir.join("override.yaml"),
        format!(
            "services:\n\
             \x20 cairn-a:\n\
             \x20   network_mode: host\n\
             \x20   environment:\n\
             \x20     CAIRN_LISTEN: \"127.0.0.1:{a_http}\"\n\
             \x20     CAIRN_P2P_LISTEN: \"/ip4/0.0.0.0/tcp/{a_p2p}\"\n\
             \x20 cairn-b:\n\
             \x20   environment:\n\
             \x20     CAIRN_OFFLINE: \"true\"\n"
        ),
    )
    .expect("override.yaml");
    let project_name = podman.name.clone();
    let compose_run = |args: &[&str]| {
        podman
            .command(compose)
            .current_dir(&dir)
            .args(["--project-name", &project_name])
            .args(["--file", "compose.yaml", "--file", "override.yaml"])
            .args(args)
            .env("CAIRN_A_PORT", format!("127.0.0.1:{a_http}"))
            .env("CAIRN_B_PORT", format!("127.0.0.1:{b_http}"))
            .env("CAIRN_C_PORT", format!("127.0.0.1:{c_http}"))
            .output()
            .expect("run podman-compose")
    };
    assert_success(&compose_run(&["up", "--detach"]), "podman-compose up");
    let mut running: Vec<String> = podman
        .containers()
        .iter()
        .filter(|c| c["State"] == "running")
        .filter_map(|c| c["Labels"]["com.docker.compose.service"].as_str())
        .map(str::to_owned)
        .collect();
    running.sort();
    assert_eq!(
        running,
        ["cairn-a", "cairn-b", "cairn-c"],
        "services running"
    );

    let urls = [a_http, b_http, c_http].map(|port| format!("http://127.0.0.1:{port}"));
    for (name, url) in ["A", "B", "C"].iter().zip(&urls) {
        wait_answering(url, &format!("node {name}"));
    }
    let ids = urls.clone().map(|url| {
        peers(&url)["peer_id"]
            .as_str()
            .expect("a peer id")
            .to_owned()
    });
    for url in &urls {
        assert_eq!(
            peers(url)["private"],
            true,
            "{url} is not in a private swarm"
        );
    }
    wait_for(
        Duration::from_secs(60),
        "A, B and C connected to each other",
        || {
            urls.iter()
                .zip(&ids)
                .all(|(url, own)| {
                    let report = peers(url);
                    let connected: Vec<&str> = report["peers"]
                        .as_array()
                        .into_iter()
                        .flatten()
                        .filter_map(|p| p["peer"].as_str())
                        .collect();
                    ids.iter()
                        .filter(|id| *id != own)
                        .all(|id| connected.contains(&id.as_str()))
                })
                .then_some(())
        },
    );

    // The real npm installs through A, which fetches from upstream; then, with no lockfile
    // (it names A's URLs) and an empty cache, through B, which has no upstream.
    let work = tempfile::tempdir().expect("tempdir");
    let app = project(
        &work.path().join("app"),
        serde_json::json!({ "swarm-app": "1.0.0" }),
    );
    let through_a = ClientEnv::new(&work.path().join("a"), &format!("{}/npm/", urls[0]));
    assert_success(
        &through_a.run("npm", &["install"], &app),
        "npm install through A",
    );
    let upstream_requests = fake.total_hits();
    assert!(upstream_requests > 0, "A did not reach upstream");
    std::fs::remove_dir_all(app.join("node_modules")).expect("node_modules");
    std::fs::remove_file(app.join("package-lock.json")).expect("package-lock.json");
    let through_b = ClientEnv::new(&work.path().join("b"), &format!("{}/npm/", urls[1]));
    assert_success(
        &through_b.run("npm", &["install"], &app),
        "npm install through B, offline, from A's cache",
    );
    let installed = std::fs::read(app.join("node_modules/swarm-lib/lib.bin"))
        .expect("swarm-lib installed through B");
    assert!(installed == noise(3 << 19, 32), "swarm-lib's file differs");
    assert_eq!(
        fake.total_hits(),
        upstream_requests,
        "B's install reached upstream: {:?}",
        fake.requests()
    );
    let metrics = get(&format!("{}/metrics", urls[1])).text;
    let from_a = metric_sum(
        &metrics,
        &format!("cairn_peer_received_bytes_total{{peer=\"{}\"}}", ids[0]),
    );
    assert!(
        from_a >= (3 << 19) as f64,
        "B received {from_a} bytes from A:\n{metrics}"
    );
    assert!(
        metric_sum(&metrics, "cairn_peer_documents_total") > 0.0,
        "B took no metadata from peers:\n{metrics}"
    );

    for container in podman.containers() {
        let name = container["Names"][0].as_str().expect("a container name");
        assert!(podman.healthy(name), "{name}'s healthcheck failed");
    }

    assert_success(&compose_run(&["down", "--volumes"]), "podman-compose down");
    assert!(
        podman.containers().is_empty(),
        "containers left after podman-compose down"
    );
    eprintln!("compose test: {:.1} s", started.elapsed().as_secs_f64());
}
