//! The harness: the `cairn` binary as a child process on a free port and a temp data dir, real
//! clients run with private configuration (never the machine's), and small HTTP helpers.

use std::io::{BufRead, BufReader, Read, Write};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Output, Stdio};
use std::sync::OnceLock;
use std::time::{Duration, Instant};

/// Run the openssl CLI in `dir` with `input` on its stdin; its stdout. Fails the test with
/// openssl's own message when it fails.
pub fn openssl(dir: &Path, args: &[&str], input: Option<&[u8]>) -> Vec<u8> {
    let mut child = Command::new("openssl")
        .args(args)
        .current_dir(dir)
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("openssl (it must be installed)");
    let mut stdin = child.stdin.take().expect("stdin");
    stdin
        .write_all(input.unwrap_or_default())
        .expect("openssl stdin");
    drop(stdin);
    let out = child.wait_with_output().expect("openssl");
    assert!(
        out.status.success(),
        "openssl {args:?}: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    out.stdout
}

/// One runtime for the fake upstreams and the HTTP helpers of every test.
pub fn runtime() -> &'static tokio::runtime::Runtime {
    static RT: OnceLock<tokio::runtime::Runtime> = OnceLock::new();
    RT.get_or_init(|| {
        tokio::runtime::Builder::new_multi_thread()
            .worker_threads(2)
            .enable_all()
            .build()
            .expect("test runtime")
    })
}

/// A gzipped tarball of `(path, bytes)` entries, as registries serve packages (fixed mode and
/// mtime, so the same entries always give the same bytes).
pub fn targz<P: AsRef<Path>>(entries: impl IntoIterator<Item = (P, Vec<u8>)>) -> bytes::Bytes {
    let gz = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::fast());
    let mut builder = tar::Builder::new(gz);
    for (path, data) in entries {
        let mut header = tar::Header::new_gnu();
        header.set_size(data.len() as u64);
        header.set_mode(0o644);
        header.set_mtime(1_700_000_000);
        header.set_cksum();
        builder
            .append_data(&mut header, path, data.as_slice())
            .expect("append");
    }
    bytes::Bytes::from(builder.into_inner().expect("tar").finish().expect("gzip"))
}

/// A running `cairn serve`.
pub struct Cairn {
    pub url: String,
    child: Child,
    log: PathBuf,
}

impl Cairn {
    /// Start `cairn serve` with `data_dir` and extra flags, on 127.0.0.1:0 unless they say
    /// `--listen`.
    ///
    /// A node started with no p2p flag at all gets `CAIRN_NO_P2P=true`: tests that are not
    /// about the swarm run side by side, and must neither share the default libp2p port nor
    /// find each other by mDNS.
    pub fn start(data_dir: &Path, args: &[&str]) -> Cairn {
        Cairn::start_with_env(data_dir, args, &[])
    }

    /// [`Cairn::start`] with variables added to (or replacing) its environment.
    pub fn start_with_env(data_dir: &Path, args: &[&str], vars: &[(&str, &str)]) -> Cairn {
        let p2p_flags = [
            "--p2p-listen",
            "--bootstrap",
            "--swarm-key",
            "--allow-peer",
            "--no-mdns",
            "--no-p2p",
            "--trust-peer-metadata",
        ];
        let isolated = !args.iter().any(|a| p2p_flags.contains(a));
        Cairn::spawn(&[], isolated, data_dir, args, vars)
    }

    /// `cairn serve` under a wrapper command (`ip netns exec NS`), with the p2p defaults (the
    /// namespace isolates it).
    pub fn start_wrapped(wrapper: &[&str], data_dir: &Path, args: &[&str]) -> Cairn {
        Cairn::spawn(wrapper, false, data_dir, args, &[])
    }

    fn spawn(
        wrapper: &[&str],
        isolated: bool,
        data_dir: &Path,
        args: &[&str],
        vars: &[(&str, &str)],
    ) -> Cairn {
        let home = data_dir.with_extension("home");
        std::fs::create_dir_all(&home).expect("home");
        let log = data_dir.with_extension("log");
        let listen = if args.contains(&"--listen") {
            &[][..]
        } else {
            &["--listen", "127.0.0.1:0"][..]
        };
        let mut command = match wrapper.split_first() {
            Some((program, rest)) => {
                let mut command = Command::new(program);
                command.args(rest).arg(env!("CARGO_BIN_EXE_cairn"));
                command
            }
            None => Command::new(env!("CARGO_BIN_EXE_cairn")),
        };
        if isolated {
            command.env("CAIRN_NO_P2P", "true");
        }
        let mut child = command
            .arg("serve")
            .args(listen)
            .arg("--data-dir")
            .arg(data_dir)
            .args(args)
            // Nothing from the machine's own configuration leaks in.
            .env("HOME", &home)
            .env("XDG_CONFIG_HOME", home.join(".config"))
            .env("CAIRN_LOG", "info,cairn_mirror=debug")
            .envs(vars.iter().copied())
            .stdout(Stdio::piped())
            .stderr(std::fs::File::create(&log).expect("log file"))
            .spawn()
            .expect("spawn cairn");
        let stdout = child.stdout.take().expect("stdout");
        let mut line = String::new();
        let mut reader = BufReader::new(stdout);
        reader.read_line(&mut line).expect("read cairn stdout");
        let url = match line.trim().strip_prefix("cairn listening on ") {
            Some(url) => url.to_owned(),
            None => {
                let _ = child.kill();
                panic!(
                    "cairn did not start: {line:?}\n{}",
                    std::fs::read_to_string(&log).unwrap_or_default()
                );
            }
        };
        // Keep draining stdout so the child never blocks on a full pipe.
        std::thread::spawn(move || {
            let mut sink = Vec::new();
            let _ = reader.read_to_end(&mut sink);
        });
        Cairn { url, child, log }
    }

    /// The npm registry URL of this node.
    pub fn npm(&self) -> String {
        format!("{}/npm/", self.url)
    }

    /// SIGTERM, then wait for a clean exit. The signal is sent by the kill(2) call itself (a
    /// `kill` command can fail to start on a loaded machine, and then nothing is sent).
    pub fn stop(mut self) {
        terminate(&self.child);
        let status = wait_timeout(&mut self.child, Duration::from_secs(20));
        assert!(
            status.is_some_and(|s| s.success()),
            "cairn did not stop cleanly ({status:?}):\n{}",
            self.logs()
        );
    }

    /// SIGKILL: a crash.
    pub fn kill(mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }

    pub fn logs(&self) -> String {
        std::fs::read_to_string(&self.log).unwrap_or_default()
    }

    /// One metric's value from /metrics (0 when absent).
    pub fn metric(&self, series: &str) -> f64 {
        let text = get(&format!("{}/metrics", self.url)).text;
        text.lines()
            .find_map(|l| l.strip_prefix(series).and_then(|v| v.trim().parse().ok()))
            .unwrap_or(0.0)
    }
}

impl Drop for Cairn {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

fn wait_timeout(child: &mut Child, limit: Duration) -> Option<std::process::ExitStatus> {
    let deadline = Instant::now() + limit;
    while Instant::now() < deadline {
        if let Ok(Some(status)) = child.try_wait() {
            return Some(status);
        }
        std::thread::sleep(Duration::from_millis(50));
    }
    None
}

/// An HTTP response, read whole.
pub struct Reply {
    pub status: u16,
    pub headers: reqwest::header::HeaderMap,
    pub body: bytes::Bytes,
    pub text: String,
}

impl Reply {
    /// A response header as text.
    pub fn header(&self, name: &str) -> Option<String> {
        self.headers
            .get(name)
            .and_then(|v| v.to_str().ok())
            .map(str::to_owned)
    }
}

pub fn get_with(url: &str, headers: &[(&str, &str)]) -> Reply {
    runtime().block_on(async {
        let client = reqwest::Client::new();
        let mut request = client.get(url);
        for (k, v) in headers {
            request = request.header(*k, *v);
        }
        let response = request.send().await.expect("request");
        let status = response.status().as_u16();
        let headers = response.headers().clone();
        let body = response.bytes().await.unwrap_or_default();
        let text = String::from_utf8_lossy(&body).into_owned();
        Reply {
            status,
            headers,
            body,
            text,
        }
    })
}

pub fn get(url: &str) -> Reply {
    get_with(url, &[])
}

/// Send a request line verbatim (no URL normalisation) and return the status code.
pub fn raw_status(base: &str, target: &str) -> u16 {
    let addr = base.trim_start_matches("http://");
    let mut stream = std::net::TcpStream::connect(addr).expect("connect");
    stream
        .set_read_timeout(Some(Duration::from_secs(30)))
        .expect("timeout");
    write!(
        stream,
        "GET {target} HTTP/1.1\r\nHost: {addr}\r\nConnection: close\r\n\r\n"
    )
    .expect("write");
    let mut first = String::new();
    BufReader::new(stream).read_line(&mut first).expect("read");
    first
        .split_whitespace()
        .nth(1)
        .and_then(|s| s.parse().ok())
        .unwrap_or_else(|| panic!("no status in {first:?}"))
}

/// Send SIGTERM to `child`.
pub fn terminate(child: &Child) {
    let pid = rustix::process::Pid::from_raw(child.id() as i32).expect("a child's pid");
    rustix::process::kill_process(pid, rustix::process::Signal::TERM).expect("SIGTERM");
}

/// A private environment for a JS package manager: its own HOME, npmrc and cache.
pub struct ClientEnv {
    pub dir: PathBuf,
    pub registry: String,
}

impl ClientEnv {
    pub fn new(dir: &Path, registry: &str) -> ClientEnv {
        std::fs::create_dir_all(dir.join("home")).expect("home");
        let npmrc = format!(
            "registry={registry}\ncache={}\naudit=false\nfund=false\nupdate-notifier=false\n\
             omit-lockfile-registry-resolved=false\nfetch-retries=0\n",
            dir.join("cache").display()
        );
        std::fs::write(dir.join("npmrc"), npmrc).expect("npmrc");
        ClientEnv {
            dir: dir.to_path_buf(),
            registry: registry.to_owned(),
        }
    }

    /// Empty the client's cache (a fresh machine).
    pub fn clear_cache(&self) {
        let _ = std::fs::remove_dir_all(self.dir.join("cache"));
        let _ = std::fs::remove_dir_all(self.dir.join("home"));
        std::fs::create_dir_all(self.dir.join("home")).expect("home");
    }

    /// Run `program args…` in `cwd` with this environment.
    pub fn run(&self, program: &str, args: &[&str], cwd: &Path) -> Output {
        self.command(program, args, cwd)
            .output()
            .unwrap_or_else(|e| panic!("cannot run {program} (it must be installed): {e}"))
    }

    /// `program args…` in `cwd` with this environment, to add to and run.
    pub fn command(&self, program: &str, args: &[&str], cwd: &Path) -> Command {
        let mut command = Command::new(program);
        command
            .args(args)
            .current_dir(cwd)
            .env("HOME", self.dir.join("home"))
            .env("NPM_CONFIG_USERCONFIG", self.dir.join("npmrc"))
            .env("NPM_CONFIG_REGISTRY", &self.registry)
            .env("NPM_CONFIG_CACHE", self.dir.join("cache"))
            .env("YARN_CACHE_FOLDER", self.dir.join("yarn-cache"))
            .env("XDG_CACHE_HOME", self.dir.join("xdg-cache"))
            .env("XDG_DATA_HOME", self.dir.join("xdg-data"))
            .env("XDG_CONFIG_HOME", self.dir.join("xdg-config"))
            .env_remove("NPM_CONFIG_PREFIX")
            .stdin(Stdio::null());
        command
    }
}

/// Fail with the client's output unless it succeeded.
pub fn assert_success(output: &Output, what: &str) {
    assert!(
        output.status.success(),
        "{what} failed ({}):\n--- stdout\n{}\n--- stderr\n{}",
        output.status,
        String::from_utf8_lossy(&output.stdout),
        String::from_utf8_lossy(&output.stderr)
    );
}

/// A project directory with this `package.json` dependencies map.
pub fn project(dir: &Path, dependencies: serde_json::Value) -> PathBuf {
    std::fs::create_dir_all(dir).expect("project dir");
    let manifest = serde_json::json!({
        "name": "e2e-project",
        "version": "1.0.0",
        "private": true,
        "dependencies": dependencies,
    });
    std::fs::write(dir.join("package.json"), manifest.to_string()).expect("package.json");
    dir.to_path_buf()
}

/// Every file under `dir` (none when it does not exist).
pub fn files_under(dir: &Path) -> Vec<PathBuf> {
    let mut out = Vec::new();
    let Ok(entries) = std::fs::read_dir(dir) else {
        return out;
    };
    for entry in entries.flatten() {
        let path = entry.path();
        if path.is_dir() {
            out.extend(files_under(&path));
        } else {
            out.push(path);
        }
    }
    out
}

/// `reply` refused the artifact `key` of `ecosystem` with `status`, and the node on `data_dir`
/// stored nothing of it: no index row for the key, no blob the index does not name (a refused
/// download leaves none), no blob holding any of `bytes` (what upstream lists) or the tampered
/// copy the fake upstream sends of them, and nothing left in `tmp/`.
pub fn assert_refused_and_nothing_stored(
    reply: &Reply,
    status: u16,
    data_dir: &Path,
    ecosystem: &str,
    key: &str,
    bytes: &[&[u8]],
) {
    assert_eq!(reply.status, status, "{ecosystem} {key}: {}", reply.text);
    let store = cairn_mirror::store::Store::attach(data_dir)
        .unwrap_or_else(|e| panic!("opening the store in {}: {e}", data_dir.display()));
    let index = store.index();
    let row = index.get_artifact(ecosystem, key).expect("read the index");
    assert!(
        row.is_none(),
        "the refused {ecosystem} {key} has an index row: {row:?}"
    );
    // Other downloads the client started beside the refused one may still be committing (file
    // renamed into place, row not yet written; temp file not yet renamed): wait for them, then
    // every blob must be named by a row and `tmp/` empty.
    let refused: Vec<Vec<u8>> = bytes
        .iter()
        .flat_map(|b| [b.to_vec(), crate::fake_upstream::tampered(b)])
        .collect();
    let blobs = wait_for(
        Duration::from_secs(10),
        &format!("every blob named by a row and tmp/ empty after refusing {ecosystem} {key}"),
        || {
            let named: std::collections::HashSet<String> = index
                .all_artifacts()
                .expect("read the index")
                .into_iter()
                .map(|(_, _, record)| record.flat.to_string())
                .collect();
            let blobs = files_under(&data_dir.join("blobs"));
            let unnamed = blobs.iter().any(|blob| {
                let name = blob.file_name().map(|n| n.to_string_lossy().into_owned());
                !name.is_some_and(|n| named.contains(&n))
            });
            let left = files_under(&data_dir.join("tmp"));
            (!unnamed && left.is_empty()).then_some(blobs)
        },
    );
    for blob in blobs {
        let content = std::fs::read(&blob).expect("read blob");
        assert!(
            !refused.contains(&content),
            "the refused {ecosystem} {key} is stored as {}",
            blob.display()
        );
    }
}

/// Ask `check` every 100 ms until it gives a value; panic naming `what` after `limit`.
pub fn wait_for<T>(limit: Duration, what: &str, mut check: impl FnMut() -> Option<T>) -> T {
    let deadline = Instant::now() + limit;
    loop {
        if let Some(value) = check() {
            return value;
        }
        assert!(
            Instant::now() < deadline,
            "timed out after {limit:?}: {what}"
        );
        std::thread::sleep(Duration::from_millis(100));
    }
}

/// An IPFS `swarm.key` whose 32 bytes are all `byte`.
pub fn swarm_key(path: &Path, byte: u8) -> PathBuf {
    let hex: String = std::iter::repeat_n(format!("{byte:02x}"), 32).collect();
    std::fs::write(path, format!("/key/swarm/psk/1.0.0/\n/base16/\n{hex}\n")).expect("swarm key");
    path.to_path_buf()
}

/// The sum of every series of /metrics text that starts with `prefix` (a name, or a name and
/// the start of its labels: `cairn_peer_received_bytes_total{peer="12D3…"`).
pub fn metric_sum(text: &str, prefix: &str) -> f64 {
    text.lines()
        .filter(|l| l.starts_with(prefix))
        .filter_map(|l| l.rsplit(' ').next()?.parse::<f64>().ok())
        .sum()
}

impl Cairn {
    /// `/api/v1/peers`.
    pub fn peers(&self) -> serde_json::Value {
        let reply = get(&format!("{}/api/v1/peers", self.url));
        assert_eq!(reply.status, 200, "/api/v1/peers: {}", reply.text);
        serde_json::from_slice(&reply.body).expect("/api/v1/peers JSON")
    }

    /// This node's peer ID.
    pub fn peer_id(&self) -> String {
        let report = self.peers();
        report["peer_id"]
            .as_str()
            .unwrap_or_else(|| panic!("no peer_id in /api/v1/peers: {report}"))
            .to_owned()
    }

    /// The first TCP listen address on 127.0.0.1, ending in `/p2p/PEERID`.
    pub fn p2p_address(&self) -> String {
        wait_for(Duration::from_secs(10), "a TCP listen address", || {
            let report = self.peers();
            report["listen"]
                .as_array()?
                .iter()
                .filter_map(|a| a.as_str())
                .find(|a| a.starts_with("/ip4/127.0.0.1/tcp/"))
                .map(|a| {
                    if a.contains("/p2p/") {
                        a.to_owned()
                    } else {
                        format!("{a}/p2p/{}", report["peer_id"].as_str().unwrap_or_default())
                    }
                })
        })
    }

    /// The peer IDs this node is connected to.
    pub fn connected(&self) -> Vec<String> {
        self.peers()["peers"]
            .as_array()
            .map(|peers| {
                peers
                    .iter()
                    .filter_map(|p| p["peer"].as_str().map(str::to_owned))
                    .collect()
            })
            .unwrap_or_default()
    }

    /// Wait until this node is connected to every peer of `peers`.
    pub fn wait_connected(&self, peers: &[&str], limit: Duration) {
        wait_for(limit, &format!("connected to {peers:?}"), || {
            let connected = self.connected();
            peers
                .iter()
                .all(|p| connected.iter().any(|c| c == p))
                .then_some(())
        });
    }

    /// The whole /metrics text.
    pub fn metrics(&self) -> String {
        get(&format!("{}/metrics", self.url)).text
    }
}
