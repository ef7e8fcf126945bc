//! An in-process fake Debian archive, built with the real tools: `.deb`s from `dpkg-deb`,
//! `Packages` and `Release` from `apt-ftparchive`, `by-hash` copies, and `InRelease` /
//! `Release.gpg` signed by a throwaway gpg key. Served under `/debian/` like a mirror (paths
//! percent-decoded, as apt encodes `+` and `~`), counted and made to lie by the shared fake
//! upstream (`fake_upstream.rs`). `AptClient` runs
//! the real `apt-get` with private state and configuration (never the machine's).

use std::path::{Path, PathBuf};
use std::process::{Command, Output, Stdio};
use std::sync::{Arc, OnceLock};

use axum::response::{IntoResponse, Response};
use bytes::Bytes;
use sha2::Digest as _;

use crate::fake_upstream::{FakeUpstream, Faults, Hits, Request, Routes};
use crate::support::assert_success;

/// The suite and component of the archive.
pub const SUITE: &str = "stable";
pub const COMPONENT: &str = "main";

/// One package of the archive.
#[derive(Clone)]
pub struct Deb {
    pub name: String,
    pub version: String,
    /// The host architecture, or `all`.
    pub arch: String,
    /// `pool/main/…/{name}_{version}_{arch}.deb`, relative to the archive root.
    pub filename: String,
    pub sha256: String,
    pub bytes: Bytes,
}

/// `(name, version, Architecture: all, source, Depends)`. `cairn-hello` pulls in the library and
/// the data package; `cairn-tools` is never needed by it.
const PACKAGES: [(&str, &str, bool, &str, &str); 4] = [
    (
        "cairn-hello",
        "1.0-1",
        false,
        "cairn-hello",
        "libcairn-test++1 (>= 1.0~rc1), cairn-data",
    ),
    (
        "libcairn-test++1",
        "1.0~rc1-1",
        false,
        "libcairn-test++",
        "",
    ),
    ("cairn-data", "0.5-1", true, "cairn-data", ""),
    (
        "cairn-tools",
        "2.0-1",
        false,
        "cairn-tools",
        "cairn-hello (>= 1.0)",
    ),
];

const SIGNING_UID: &str = "Cairn Test Archive <test@cairn.invalid>";
const WRONG_UID: &str = "Cairn Unrelated Key <wrong@cairn.invalid>";

/// A signed archive on disk.
pub struct Archive {
    /// The archive root: `dists/` and `pool/`.
    pub dir: PathBuf,
    /// Binary OpenPGP keyring (`gpg --export`) of the signing key.
    pub keyring: PathBuf,
    /// Binary keyring of a second, unrelated key.
    pub wrong_keyring: PathBuf,
    pub gnupghome: PathBuf,
    /// The host architecture (`dpkg --print-architecture`).
    pub arch: String,
    pub packages: Vec<Deb>,
    /// Holds a short gnupg home under /tmp when `dir` is too deep for gpg's socket paths.
    _short_home: Option<tempfile::TempDir>,
}

impl Archive {
    pub fn deb(&self, name: &str) -> &Deb {
        self.packages
            .iter()
            .find(|d| d.name == name)
            .expect("package in the archive")
    }

    /// `dists/stable/main/binary-{arch}`, relative to the root.
    pub fn binary_dir(&self) -> String {
        format!("dists/{SUITE}/{COMPONENT}/binary-{}", self.arch)
    }

    /// Sign `Release` again (InRelease and Release.gpg) with the unrelated key.
    pub fn resign_with_wrong_key(&self) {
        sign(
            &self.gnupghome,
            &self.dir.join("dists").join(SUITE),
            WRONG_UID,
        );
    }
}

/// Is `tool` an executable on PATH?
fn on_path(tool: &str) -> bool {
    std::env::var_os("PATH")
        .is_some_and(|paths| std::env::split_paths(&paths).any(|dir| dir.join(tool).is_file()))
}

fn run(command: &mut Command, what: &str) -> Output {
    let output = command
        .stdin(Stdio::null())
        .output()
        .unwrap_or_else(|e| panic!("cannot run {what}: {e}"));
    assert_success(&output, what);
    output
}

/// The tools the archive is built with. `apt-ftparchive` (Debian's `apt-utils`) is installed
/// once if missing, at the version of the installed apt so apt itself is not upgraded.
fn ensure_tools() {
    static READY: OnceLock<()> = OnceLock::new();
    READY.get_or_init(|| {
        for tool in [
            "apt-get", "dpkg", "dpkg-deb", "gpg", "gpgconf", "gpgv", "gzip", "xz",
        ] {
            assert!(on_path(tool), "{tool} must be installed for the apt tests");
        }
        if on_path("apt-ftparchive") {
            return;
        }
        let apt = run(
            Command::new("dpkg-query").args(["-W", "-f", "${Version}", "apt"]),
            "dpkg-query apt",
        );
        let pinned = format!("apt-utils={}", String::from_utf8_lossy(&apt.stdout).trim());
        let output = crate::tools::apt_install(&[&pinned, "apt-utils"]);
        assert!(
            output.status.success() && on_path("apt-ftparchive"),
            "apt-ftparchive is missing and `apt-get install apt-utils` failed:\n{}\n{}",
            String::from_utf8_lossy(&output.stdout),
            String::from_utf8_lossy(&output.stderr)
        );
    });
}

fn sha256(bytes: &[u8]) -> String {
    hex::encode(sha2::Sha256::digest(bytes))
}

fn host_arch() -> String {
    let out = run(
        Command::new("dpkg").arg("--print-architecture"),
        "dpkg --print-architecture",
    );
    String::from_utf8_lossy(&out.stdout).trim().to_owned()
}

/// Build one `.deb` into its pool path under `root`.
fn build_deb(root: &Path, work: &Path, host: &str, spec: (&str, &str, bool, &str, &str)) -> Deb {
    let (name, version, all, source, depends) = spec;
    let arch = if all { "all" } else { host };
    let tree = work.join(name);
    let doc = tree.join("usr/share/doc").join(name);
    std::fs::create_dir_all(tree.join("DEBIAN")).expect("DEBIAN");
    std::fs::create_dir_all(&doc).expect("doc dir");
    std::fs::write(doc.join("README"), format!("{name} {version}\n")).expect("README");
    let mut control = format!(
        "Package: {name}\nVersion: {version}\nArchitecture: {arch}\n\
         Maintainer: Cairn Tests <test@cairn.invalid>\nInstalled-Size: 1\n\
         Section: misc\nPriority: optional\n"
    );
    if source != name {
        control.push_str(&format!("Source: {source}\n"));
    }
    if !depends.is_empty() {
        control.push_str(&format!("Depends: {depends}\n"));
    }
    control.push_str(&format!(
        "Description: {name}, a package of the Cairn test archive\n \
         It contains a README and nothing else.\n"
    ));
    std::fs::write(tree.join("DEBIAN/control"), control).expect("control");

    let prefix = if source.starts_with("lib") {
        &source[..4]
    } else {
        &source[..1]
    };
    let upstream = version.split_once(':').map_or(version, |(_, v)| v);
    let filename = format!("pool/{COMPONENT}/{prefix}/{source}/{name}_{upstream}_{arch}.deb");
    let out = root.join(&filename);
    std::fs::create_dir_all(out.parent().expect("pool dir")).expect("pool dir");
    run(
        Command::new("dpkg-deb")
            .args(["--root-owner-group", "-Zgzip", "--build"])
            .arg(&tree)
            .arg(&out)
            .env("SOURCE_DATE_EPOCH", "1700000000"),
        &format!("dpkg-deb --build {name}"),
    );
    let bytes = Bytes::from(std::fs::read(&out).expect("built deb"));
    Deb {
        name: name.to_owned(),
        version: version.to_owned(),
        arch: arch.to_owned(),
        filename,
        sha256: sha256(&bytes),
        bytes,
    }
}

fn gpg(home: &Path) -> Command {
    let mut command = Command::new("gpg");
    command
        .arg("--homedir")
        .arg(home)
        .args(["--batch", "--yes", "--quiet", "--no-tty"])
        .args(["--pinentry-mode", "loopback", "--passphrase", ""]);
    command
}

/// Stops the gpg-agent of a home when dropped, so none lingers (even after a panic).
struct Agent(PathBuf);

impl Drop for Agent {
    fn drop(&mut self) {
        let _ = Command::new("gpgconf")
            .arg("--homedir")
            .arg(&self.0)
            .args(["--kill", "gpg-agent"])
            .output();
    }
}

/// `InRelease` (clearsigned) and `Release.gpg` (detached, armored) of `suite_dir/Release`.
fn sign(home: &Path, suite_dir: &Path, uid: &str) {
    let _agent = Agent(home.to_path_buf());
    let release = suite_dir.join("Release");
    for (mode, out) in [
        (&["--clearsign"][..], "InRelease"),
        (&["--armor", "--detach-sign"][..], "Release.gpg"),
    ] {
        run(
            gpg(home)
                .args(["--local-user", uid, "--digest-algo", "SHA256"])
                .args(mode)
                .arg("--output")
                .arg(suite_dir.join(out))
                .arg(&release),
            &format!("gpg signing {out}"),
        );
    }
}

/// Build a signed archive in `dir` (new or empty): `dists/`, `pool/`, `keys/{keyring,wrong-keyring}.gpg`
/// and the gnupg home `.gnupg` (never served: the fake refuses `.` segments).
pub fn build_archive(dir: &Path) -> Archive {
    build(dir, false)
}

/// The suite of [`build_archive_with_updates`] that only the second suite's package is in.
pub const UPDATES_SUITE: &str = "stable-updates";
/// The package of [`UPDATES_SUITE`].
pub const UPDATES_PACKAGE: (&str, &str, bool, &str, &str) =
    ("cairn-extra", "1.1-1", false, "cairn-extra", "");

/// Like a real distribution's archive: two suites, `stable` and [`UPDATES_SUITE`], each with
/// its own signed `InRelease`, and beside each `Packages` the other indexes a real suite lists:
/// `Translation-en`, DEP-11 `Components` and icons, command-not-found `Commands`, and a
/// `Contents` file apt only fetches when told to.
pub fn build_archive_with_updates(dir: &Path) -> Archive {
    build(dir, true)
}

/// Stanzas in [`build_archive_sized_like_debian`]'s `Packages` besides the real packages':
/// about as many as a Debian release's `main` lists for one architecture.
pub const DEBIAN_SIZED_STANZAS: usize = 63_000;

/// Like [`build_archive`], but its `Packages` is the size of a Debian release's: before the
/// real packages' stanzas come [`DEBIAN_SIZED_STANZAS`] of packages whose files the pool does
/// not have (no client asks for them), with the fields a real stanza has. Reading and indexing
/// it takes a node a noticeable time, the time in which apt already asks for the real ones.
pub fn build_archive_sized_like_debian(dir: &Path) -> Archive {
    build_with(dir, false, DEBIAN_SIZED_STANZAS)
}

/// `count` stanzas of packages the pool does not have, for `host`, in a Debian `Packages`'
/// shape and size (about 800 bytes each, as Debian's average).
fn filler_stanzas(host: &str, count: usize) -> Vec<u8> {
    let mut out = Vec::with_capacity(count * 820);
    for n in 0..count {
        let name = format!("filler-{n:05}");
        let digest = sha256(name.as_bytes());
        let prefix = &name[..1];
        out.extend_from_slice(
            format!(
                "Package: {name}\nVersion: 1.{n}-1\nInstalled-Size: {size}\n\
                 Maintainer: Cairn Tests <test@cairn.invalid>\nArchitecture: {host}\n\
                 Depends: libc6 (>= 2.34), filler-{dep:05}\n\
                 Description: {name}, one of many packages no client installs\n\
                 Homepage: https://cairn.invalid/{name}\nDescription-md5: {md5}\n\
                 Tag: role::program, scope::utility, use::organizing\n\
                 Section: misc\nPriority: optional\n\
                 Filename: pool/{COMPONENT}/{prefix}/{name}/{name}_1.{n}-1_{host}.deb\n\
                 Size: {size}\nMD5sum: {md5}\nSHA256: {digest}\n\n",
                size = 1000 + n,
                dep = (n + 1) % count,
                md5 = &digest[..32],
            )
            .as_bytes(),
        );
    }
    out
}

/// The files of a suite besides `Packages`, relative to `dists/SUITE/`, with their contents.
fn extra_indexes(host: &str, suite: &str, packages: &[Deb]) -> Vec<(String, Vec<u8>)> {
    let names: Vec<&str> = packages.iter().map(|d| d.name.as_str()).collect();
    let translations: String = packages
        .iter()
        .map(|d| {
            format!(
                "Package: {}\nDescription-md5: {}\nDescription-en: {} of {suite}\n a package of the Cairn test archive\n\n",
                d.name,
                &sha256(d.name.as_bytes())[..32],
                d.name
            )
        })
        .collect();
    let components: String = packages
        .iter()
        .map(|d| {
            format!(
                "---\nType: desktop-application\nID: org.cairn.{}\nPackage: {}\nName:\n  C: {}\n",
                d.name, d.name, d.name
            )
        })
        .collect();
    let commands: String = format!(
        "suite: {suite}\ncomponent: {COMPONENT}\narch: {host}\n\n{}",
        names
            .iter()
            .map(|n| format!("name: {n}\nversion: 1\ncommands: {n}\n\n"))
            .collect::<String>()
    );
    let contents: String = packages
        .iter()
        .map(|d| format!("usr/share/doc/{}/README misc/{}\n", d.name, d.name))
        .collect();
    let icons = |size: &str| -> Vec<u8> {
        let mut tar = tar::Builder::new(Vec::new());
        let data = format!("{size} icon of cairn-hello\n").into_bytes();
        let mut header = tar::Header::new_gnu();
        header.set_size(data.len() as u64);
        header.set_mode(0o644);
        header.set_mtime(1_700_000_000);
        header.set_cksum();
        tar.append_data(&mut header, "cairn-hello_org.cairn.png", data.as_slice())
            .expect("tar entry");
        tar.into_inner().expect("tar")
    };
    let c = COMPONENT;
    vec![
        (
            format!("{c}/i18n/Translation-en"),
            translations.into_bytes(),
        ),
        (
            format!("{c}/dep11/Components-{host}.yml"),
            components.into_bytes(),
        ),
        (format!("{c}/dep11/icons-48x48.tar"), icons("48x48")),
        (format!("{c}/dep11/icons-64x64.tar"), icons("64x64")),
        (format!("{c}/cnf/Commands-{host}"), commands.into_bytes()),
        (format!("{c}/Contents-{host}"), contents.into_bytes()),
    ]
}

/// Write `Packages` of the `.deb`s under `pool` (`debs`) into `suite`, with the extra indexes
/// when `extras`, then its `Release`, the `by-hash` copies of every file it lists, `InRelease`
/// and `Release.gpg`.
fn write_suite(
    root: &Path,
    gnupghome: &Path,
    host: &str,
    (suite, pool): (&str, &str),
    debs: &[Deb],
    (extras, filler): (bool, usize),
) {
    let suite_dir = root.join("dists").join(suite);
    let binary = suite_dir.join(format!("{COMPONENT}/binary-{host}"));
    std::fs::create_dir_all(&binary).expect("binary dir");
    // Packages, from the pool directory of the suite, with paths relative to the root.
    let index = run(
        Command::new("apt-ftparchive")
            .args(["packages", pool])
            .current_dir(root),
        "apt-ftparchive packages",
    )
    .stdout;
    assert!(!index.is_empty(), "empty Packages");
    let index = [filler_stanzas(host, filler), index].concat();
    let mut files: Vec<(String, Vec<u8>)> =
        vec![(format!("{COMPONENT}/binary-{host}/Packages"), index)];
    if extras {
        files.extend(extra_indexes(host, suite, debs));
    }
    for (path, bytes) in &files {
        let file = suite_dir.join(path);
        std::fs::create_dir_all(file.parent().expect("index dir")).expect("index dir");
        std::fs::write(&file, bytes).expect("index file");
        let dir = file.parent().expect("index dir");
        let name = file.file_name().expect("name").to_str().expect("utf-8");
        // Like Debian: the tarballs and YAML in gzip only, the rest in xz too. The plain file
        // stays: the Release lists it (apt looks an index up by its uncompressed name).
        let tools: &[&[&str]] = if name.ends_with(".tar") || name.ends_with(".yml") {
            &[&["gzip", "-9nk"]]
        } else {
            // A real-sized index in xz's fastest preset: the default takes 20 s here.
            if filler > 0 {
                &[&["gzip", "-9nk"], &["xz", "-k", "-1"]]
            } else {
                &[&["gzip", "-9nk"], &["xz", "-k"]]
            }
        };
        for tool in tools {
            run(
                Command::new(tool[0])
                    .args(&tool[1..])
                    .arg(name)
                    .current_dir(dir),
                &format!("{} {path}", tool[0]),
            );
        }
    }

    // Release, before the by-hash copies so it lists only the indexes.
    let field = |k: &str, v: &str| format!("APT::FTPArchive::Release::{k}={v}");
    let mut release = run(
        Command::new("apt-ftparchive")
            .arg("release")
            .args(["-o", &field("Origin", "Cairn")])
            .args(["-o", &field("Label", "Cairn")])
            .args(["-o", &field("Suite", suite)])
            .args(["-o", &field("Codename", suite)])
            .args(["-o", &field("Architectures", host)])
            .args(["-o", &field("Components", COMPONENT)])
            .args(["-o", &field("Description", "Cairn test archive")])
            .args(["-o", &field("Acquire-By-Hash", "yes")])
            // MD5Sum and SHA256 only, like Debian: apt asks for the strongest hash's by-hash path.
            .args(["-o", &field("SHA1", "false")])
            .args(["-o", &field("SHA512", "false")])
            .args(["-o", "APT::FTPArchive::Release::Patterns::=Commands-*"])
            .arg(".")
            .current_dir(&suite_dir),
        "apt-ftparchive release",
    )
    .stdout;
    let text = String::from_utf8(release.clone()).expect("Release is text");
    if !text.lines().any(|l| l == "Acquire-By-Hash: yes") {
        // Older apt-ftparchive: add the field to the header, before the checksums.
        let at = text
            .find("\nMD5Sum:")
            .or(text.find("\nSHA256:"))
            .expect("checksums")
            + 1;
        release = format!("{}Acquire-By-Hash: yes\n{}", &text[..at], &text[at..]).into_bytes();
    }
    std::fs::write(suite_dir.join("Release"), &release).expect("Release");
    let text = String::from_utf8_lossy(&release);
    let listed: Vec<(String, String)> = text
        .split("\nSHA256:\n")
        .nth(1)
        .expect("SHA256 section")
        .lines()
        .take_while(|l| l.starts_with(' '))
        .map(|l| {
            let parts: Vec<&str> = l.split_whitespace().collect();
            (parts[0].to_owned(), parts[2].to_owned())
        })
        .collect();
    for name in ["Packages", "Packages.gz", "Packages.xz"] {
        let path = format!("{COMPONENT}/binary-{host}/{name}");
        assert!(
            listed.iter().any(|(_, p)| *p == path),
            "Release lacks {path}:\n{text}"
        );
    }
    if extras {
        for (path, _) in extra_indexes(host, suite, debs) {
            assert!(
                listed.iter().any(|(_, p)| p.starts_with(&path)),
                "Release lacks {path}:\n{text}"
            );
        }
    }
    for (hash, path) in &listed {
        let file = suite_dir.join(path);
        let by_hash = file.parent().expect("index dir").join("by-hash/SHA256");
        std::fs::create_dir_all(&by_hash).expect("by-hash dir");
        let bytes = std::fs::read(&file).expect("listed file");
        assert_eq!(sha256(&bytes), *hash, "{path}");
        std::fs::write(by_hash.join(hash), &bytes).expect("by-hash copy");
    }
    sign(gnupghome, &suite_dir, SIGNING_UID);
}

fn build(dir: &Path, with_updates: bool) -> Archive {
    build_with(dir, with_updates, 0)
}

fn build_with(dir: &Path, with_updates: bool, filler: usize) -> Archive {
    ensure_tools();
    let host = host_arch();
    let root = dir.to_path_buf();
    std::fs::create_dir_all(&root).expect("archive dir");
    let work = root.join(".work");

    let mut packages: Vec<Deb> = PACKAGES
        .iter()
        .map(|spec| build_deb(&root, &work, &host, *spec))
        .collect();

    // Keys: gpg's sockets live in its home, whose path must stay short.
    let (gnupghome, short_home) = if root.as_os_str().len() < 60 {
        (root.join(".gnupg"), None)
    } else {
        let t = tempfile::Builder::new()
            .prefix("cg")
            .tempdir_in("/tmp")
            .expect("short gnupg home");
        (t.path().to_path_buf(), Some(t))
    };
    std::fs::create_dir_all(&gnupghome).expect("gnupg home");
    {
        use std::os::unix::fs::PermissionsExt as _;
        std::fs::set_permissions(&gnupghome, std::fs::Permissions::from_mode(0o700))
            .expect("chmod gnupg home");
    }
    let _agent = Agent(gnupghome.clone());
    let keys = root.join("keys");
    std::fs::create_dir_all(&keys).expect("keys dir");
    for (uid, file) in [
        (SIGNING_UID, "keyring.gpg"),
        (WRONG_UID, "wrong-keyring.gpg"),
    ] {
        run(
            gpg(&gnupghome).args(["--quick-gen-key", uid, "ed25519", "sign", "never"]),
            &format!("gpg --quick-gen-key {uid}"),
        );
        let email = &uid[uid.find('<').expect("email")..];
        run(
            gpg(&gnupghome)
                .arg("--output")
                .arg(keys.join(file))
                .args(["--export", email]),
            &format!("gpg --export {email}"),
        );
    }
    write_suite(
        &root,
        &gnupghome,
        &host,
        (SUITE, "pool/"),
        &packages,
        (with_updates, filler),
    );
    if with_updates {
        let extra = build_deb(&root, &work, &host, UPDATES_PACKAGE);
        let pool = extra
            .filename
            .rsplit_once('/')
            .expect("pool dir")
            .0
            .to_owned();
        write_suite(
            &root,
            &gnupghome,
            &host,
            (UPDATES_SUITE, &pool),
            std::slice::from_ref(&extra),
            (true, 0),
        );
        packages.push(extra);
    }
    let _ = std::fs::remove_dir_all(&work);

    Archive {
        dir: root,
        keyring: keys.join("keyring.gpg"),
        wrong_keyring: keys.join("wrong-keyring.gpg"),
        gnupghome,
        arch: host,
        packages,
        _short_home: short_home,
    }
}

/// The archive's files under `/debian/`.
struct Files {
    root: PathBuf,
    /// The `Authorization` value every request must carry (an archive behind basic auth).
    required: Option<String>,
}

/// A running fake archive.
pub struct FakeArchive {
    /// `http://127.0.0.1:PORT/debian/`.
    pub url: String,
    /// Every request, by decoded path without the leading `/` (`debian/dists/stable/InRelease`).
    pub hits: Arc<Hits>,
    pub faults: Arc<Faults>,
    upstream: FakeUpstream,
    root: PathBuf,
}

impl FakeArchive {
    /// Serve every file whose path ends with `path_suffix` (after a `/`) with one byte flipped
    /// (same length).
    pub fn tamper(&self, path_suffix: &str) {
        self.faults.tamper(path_suffix);
    }

    /// Serve every file as stored again.
    pub fn mend(&self) {
        self.faults.mend();
    }

    /// Answer every request with 503 (or serve again).
    pub fn set_down(&self, down: bool) {
        self.faults.set_down(down);
    }

    /// The request paths as sent, before percent-decoding (`/debian/pool/…%2b…`).
    pub fn requests(&self) -> Vec<String> {
        self.upstream.requests()
    }

    /// The most requests answered at once since the last call.
    pub fn take_most_in_flight(&self) -> usize {
        self.upstream.take_most_in_flight()
    }

    /// A file of the archive, as stored (`path` relative to the root).
    pub fn read(&self, path: &str) -> Vec<u8> {
        std::fs::read(self.root.join(path)).expect("archive file")
    }
}

/// Serve `archive.dir` under `/debian/` on 127.0.0.1.
pub fn serve(archive: &Archive) -> FakeArchive {
    serve_guarded(archive, None)
}

/// [`serve`], every request without `Authorization: REQUIRED` answered `401` when given.
pub fn serve_guarded(archive: &Archive, required: Option<&str>) -> FakeArchive {
    let upstream = FakeUpstream::start(1, |_| Files {
        root: archive.dir.clone(),
        required: required.map(str::to_owned),
    });
    FakeArchive {
        url: format!("{}debian/", upstream.origins[0]),
        hits: upstream.decoded_hits(),
        faults: upstream.faults.clone(),
        upstream,
        root: archive.dir.clone(),
    }
}

fn content_type(path: &str) -> &'static str {
    match path.rsplit('.').next() {
        Some("deb") => "application/vnd.debian.binary-package",
        Some("gz") => "application/gzip",
        Some("xz") => "application/x-xz",
        _ if path.ends_with("Release") || path.ends_with("Packages") => "text/plain",
        _ => "application/octet-stream",
    }
}

impl Routes for Files {
    fn answer(&self, request: &Request) -> Response {
        if let Some(refused) = crate::fake_upstream::unauthorized(
            request,
            self.required.as_deref(),
            "Basic realm=\"archive\"",
        ) {
            return refused;
        }
        let Some(rest) = request.path.strip_prefix("debian/") else {
            return (http::StatusCode::NOT_FOUND, "not found").into_response();
        };
        if rest.split('/').any(|s| s.is_empty() || s.starts_with('.')) {
            return (http::StatusCode::BAD_REQUEST, "bad path").into_response();
        }
        let file = self.root.join(rest);
        if !file.is_file() {
            return (http::StatusCode::NOT_FOUND, "not found").into_response();
        }
        let Ok(bytes) = std::fs::read(&file) else {
            return (http::StatusCode::NOT_FOUND, "not found").into_response();
        };
        ([(http::header::CONTENT_TYPE, content_type(rest))], bytes).into_response()
    }
}

/// The real `apt-get` with private state, cache, sources, keys and configuration.
pub struct AptClient {
    dir: PathBuf,
}

impl AptClient {
    /// A client whose only source is `sources_line`
    /// (`deb [signed-by=/…/keyring.gpg] http://127.0.0.1:PORT/debian stable main`), with no
    /// retries and no translations.
    pub fn new(dir: &Path, sources_line: &str) -> AptClient {
        AptClient::configured(dir, sources_line, true)
    }

    /// A client configured like a desktop machine's: apt's defaults (three retries with their
    /// delays, translations, pdiffs), plus the DEP-11 targets the AppStream package adds and the
    /// `Commands` target of command-not-found. `sources` is its `sources.list`.
    pub fn with_defaults(dir: &Path, sources: &str) -> AptClient {
        let client = AptClient::configured(dir, sources.trim_end(), false);
        let targets = r#"Acquire::IndexTargets {
    deb::DEP-11 {
        MetaKey "$(COMPONENT)/dep11/Components-$(NATIVE_ARCHITECTURE).yml";
        ShortDescription "Components-$(NATIVE_ARCHITECTURE)";
        Description "$(RELEASE)/$(COMPONENT) $(NATIVE_ARCHITECTURE) DEP-11 Metadata";
        KeepCompressed "true";
        KeepCompressedAs "gz";
    };
    deb::DEP-11-icons {
        MetaKey "$(COMPONENT)/dep11/icons-64x64.tar";
        ShortDescription "icons-64x64";
        Description "$(RELEASE)/$(COMPONENT) DEP-11 64x64 Icons";
        KeepCompressed "true";
        KeepCompressedAs "gz";
    };
    deb::CNF {
        MetaKey "$(COMPONENT)/cnf/Commands-$(NATIVE_ARCHITECTURE)";
        ShortDescription "Commands-$(NATIVE_ARCHITECTURE)";
        Description "$(RELEASE)/$(COMPONENT) $(NATIVE_ARCHITECTURE) c-n-f Metadata";
    };
};
"#;
        std::fs::write(dir.join("etc/apt.conf.d/50targets"), targets).expect("targets");
        client
    }

    fn configured(dir: &Path, sources: &str, quiet: bool) -> AptClient {
        let etc = dir.join("etc");
        for sub in [
            "etc/apt.conf.d",
            "etc/sources.list.d",
            "etc/preferences.d",
            "etc/trusted.gpg.d",
            "state/lists/partial",
            "cache/archives/partial",
            "log",
        ] {
            std::fs::create_dir_all(dir.join(sub)).expect("apt dir");
        }
        std::fs::write(dir.join("state/status"), "").expect("status");
        std::fs::write(etc.join("sources.list"), format!("{sources}\n")).expect("sources");
        let d = |p: &str| dir.join(p).display().to_string();
        // Read through APT_CONFIG, which apt reads before (and instead of the machine's)
        // apt.conf.d; `-o` on the command line would come too late for Dir::Etc::Parts.
        let mut conf = vec![
            ("Dir::State", d("state")),
            ("Dir::State::status", d("state/status")),
            ("Dir::Cache", d("cache")),
            ("Dir::Log", d("log")),
            ("Dir::Etc", d("etc")),
            ("Dir::Etc::Main", d("etc/apt.conf")),
            ("Dir::Etc::Parts", d("etc/apt.conf.d")),
            ("Dir::Etc::SourceList", d("etc/sources.list")),
            ("Dir::Etc::SourceParts", d("etc/sources.list.d")),
            ("Dir::Etc::Preferences", d("etc/preferences")),
            ("Dir::Etc::PreferencesParts", d("etc/preferences.d")),
            ("Dir::Etc::Trusted", d("etc/trusted.gpg")),
            ("Dir::Etc::TrustedParts", d("etc/trusted.gpg.d")),
            ("Dir::Etc::netrc", d("etc/auth.conf")),
            ("Debug::NoLocking", "1".to_owned()),
            ("APT::Sandbox::User", "root".to_owned()),
            ("Acquire::http::Timeout", "30".to_owned()),
            ("Acquire::http::Proxy", "DIRECT".to_owned()),
        ];
        if quiet {
            conf.extend([
                ("Acquire::Languages", "none".to_owned()),
                ("Acquire::PDiffs", "false".to_owned()),
                ("Acquire::Retries", "0".to_owned()),
            ]);
        }
        let conf = conf
            .iter()
            .map(|(k, v)| format!("{k} \"{v}\";\n"))
            .collect::<String>();
        std::fs::write(etc.join("apt.conf"), conf).expect("apt.conf");
        AptClient {
            dir: dir.to_path_buf(),
        }
    }

    /// `apt-get args…` (add `-o Acquire::http::Proxy=http://…` to go through a proxy).
    pub fn run(&self, args: &[&str]) -> Output {
        Command::new("apt-get")
            .args(args)
            .env("APT_CONFIG", self.dir.join("etc/apt.conf"))
            .env("DEBIAN_FRONTEND", "noninteractive")
            .env("LC_ALL", "C")
            .env_remove("http_proxy")
            .env_remove("HTTP_PROXY")
            .env_remove("https_proxy")
            .env_remove("HTTPS_PROXY")
            .env_remove("all_proxy")
            .env_remove("no_proxy")
            .stdin(Stdio::null())
            .output()
            .expect("apt-get must be installed")
    }

    /// Where `apt-get install --download-only` puts the `.deb`s.
    pub fn archives_dir(&self) -> PathBuf {
        self.dir.join("cache/archives")
    }

    /// Where `apt-get update` puts the indexes.
    pub fn lists_dir(&self) -> PathBuf {
        self.dir.join("state/lists")
    }
}

/// Fail if apt printed a warning (`W:` lines) or an error.
pub fn assert_no_warnings(output: &Output, what: &str) {
    let text = format!(
        "{}{}",
        String::from_utf8_lossy(&output.stdout),
        String::from_utf8_lossy(&output.stderr)
    );
    assert!(
        !text
            .lines()
            .any(|l| l.starts_with("W:") || l.starts_with("E:")),
        "{what} warned:\n{text}"
    );
}

#[test]
fn fake_archive_works_with_real_apt_get() {
    let tmp = tempfile::tempdir().expect("tempdir");
    let archive = build_archive(&tmp.path().join("archive"));
    let fake = serve(&archive);
    let sources = |keyring: &Path| {
        format!(
            "deb [signed-by={}] {} {SUITE} {COMPONENT}",
            keyring.display(),
            fake.url.trim_end_matches('/')
        )
    };

    let apt = AptClient::new(&tmp.path().join("apt"), &sources(&archive.keyring));
    let update = apt.run(&["update"]);
    assert_success(&update, "apt-get update");
    assert_no_warnings(&update, "apt-get update");
    let by_hash: Vec<String> = ["Packages", "Packages.gz", "Packages.xz"]
        .iter()
        .map(|f| {
            let bytes = fake.read(&format!("{}/{f}", archive.binary_dir()));
            format!(
                "debian/{}/by-hash/SHA256/{}",
                archive.binary_dir(),
                sha256(&bytes)
            )
        })
        .collect();
    assert!(
        by_hash.iter().any(|p| fake.hits.get(p) > 0),
        "no by-hash request: {:?}",
        fake.requests()
    );

    let install = apt.run(&["install", "--download-only", "-y", "cairn-hello"]);
    assert_success(&install, "apt-get install --download-only");
    assert_no_warnings(&install, "apt-get install --download-only");
    let downloaded: Vec<(String, String)> = std::fs::read_dir(apt.archives_dir())
        .expect("archives dir")
        .filter_map(|e| {
            let path = e.expect("entry").path();
            let name = path.file_name()?.to_str()?.to_owned();
            name.ends_with(".deb")
                .then(|| (name, sha256(&std::fs::read(&path).expect("deb"))))
        })
        .collect();
    for name in ["cairn-hello", "libcairn-test++1", "cairn-data"] {
        let deb = archive.deb(name);
        assert!(
            downloaded
                .iter()
                .any(|(f, sum)| f.starts_with(&format!("{name}_")) && *sum == deb.sha256),
            "{name} not downloaded intact: {downloaded:?}"
        );
        assert_eq!(fake.hits.get(&format!("debian/{}", deb.filename)), 1);
    }
    assert_eq!(downloaded.len(), 3, "{downloaded:?}");
    let lib = archive.deb("libcairn-test++1");
    let encoded = format!("/debian/{}", lib.filename)
        .replace('+', "%2b")
        .replace('~', "%7e");
    assert!(
        fake.requests()
            .iter()
            .any(|r| r.eq_ignore_ascii_case(&encoded)),
        "apt did not ask for {encoded}: {:?}",
        fake.requests()
    );
    // Raw and encoded names alike; nothing outside the archive.
    let base = fake.url.trim_end_matches("/debian/");
    for (target, status) in [
        (format!("/debian/{}", lib.filename), 200),
        (encoded.replace("%2b", "%2B").replace("%7e", "%7E"), 200),
        (encoded.clone(), 200),
        ("/debian/.gnupg/pubring.kbx".to_owned(), 400),
        (
            "/debian/pool/%2e%2e/%2e%2e/keys/keyring.gpg".to_owned(),
            400,
        ),
        ("/debian/keys/keyring.gpg".to_owned(), 200),
        ("/debian/dists/stable/nothing".to_owned(), 404),
    ] {
        assert_eq!(
            crate::support::raw_status(base, &target),
            status,
            "{target}"
        );
    }

    let packages = String::from_utf8(fake.read(&format!("{}/Packages", archive.binary_dir())))
        .expect("Packages");
    for deb in &archive.packages {
        assert_eq!(sha256(&deb.bytes), deb.sha256);
        let stanza = format!(
            "Package: {}\nArchitecture: {}\nVersion: {}\n",
            deb.name, deb.arch, deb.version
        );
        assert!(packages.contains(&stanza), "{stanza:?} not in\n{packages}");
    }
    let lists: Vec<String> = std::fs::read_dir(apt.lists_dir())
        .expect("lists dir")
        .map(|e| e.expect("entry").file_name().to_string_lossy().into_owned())
        .collect();
    assert!(lists.iter().any(|f| f.ends_with("_InRelease")), "{lists:?}");

    // The switches that make it lie.
    let tools = archive.deb("cairn-tools");
    fake.tamper(&tools.filename);
    let install = apt.run(&["install", "--download-only", "-y", "cairn-tools"]);
    assert!(
        !install.status.success() && String::from_utf8_lossy(&install.stderr).contains("Hash Sum"),
        "a tampered .deb was accepted:\n{}",
        String::from_utf8_lossy(&install.stderr)
    );
    fake.set_down(true);
    let down = AptClient::new(&tmp.path().join("apt-down"), &sources(&archive.keyring));
    let update = down.run(&["update"]);
    assert!(
        String::from_utf8_lossy(&update.stderr).contains("503"),
        "{}",
        String::from_utf8_lossy(&update.stderr)
    );
    fake.set_down(false);

    // The signature is real: the unrelated key does not verify it.
    let wrong = AptClient::new(
        &tmp.path().join("apt-wrong"),
        &sources(&archive.wrong_keyring),
    );
    let update = wrong.run(&["update"]);
    let stderr = String::from_utf8_lossy(&update.stderr);
    assert!(
        !update.status.success() && stderr.contains("NO_PUBKEY"),
        "apt-get update accepted the wrong key:\n{stderr}"
    );

    // And a re-signed archive fails with the right key.
    archive.resign_with_wrong_key();
    let again = AptClient::new(&tmp.path().join("apt-resigned"), &sources(&archive.keyring));
    let update = again.run(&["update"]);
    assert!(
        !update.status.success(),
        "apt-get update accepted a wrongly signed archive"
    );
}
