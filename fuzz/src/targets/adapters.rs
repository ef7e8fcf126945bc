//! Targets for the adapters: documents from upstreams (packuments, index files, simple pages,
//! apt's signed Release files and indexes), wheels, request paths, lockfiles and apt sources.
//! Each goes through the adapter's `Ecosystem` implementation, as the mirror calls it.

use std::io::Cursor;
use std::sync::OnceLock;

use cairn_mirror::ecosystem::{Ecosystem, MetadataDoc, MetadataRoute, Request, Route};
use http::Method;
use url::Url;

const UPSTREAM: &str = "https://upstream.invalid/";
const BASE: &str = "http://127.0.0.1:8080/eco/";

fn url(text: &str) -> Url {
    Url::parse(text).expect("a fixed URL parses")
}

fn get<'a>(path: &'a str, accept: Option<&'a str>) -> Request<'a> {
    Request {
        method: &Method::GET,
        path,
        query: None,
        accept,
    }
}

/// The metadata route `eco` gives `path`, if it is one.
fn metadata_route(eco: &dyn Ecosystem, path: &str, accept: Option<&str>) -> Option<MetadataRoute> {
    match eco.route(&get(path, accept)) {
        Ok(Some(Route::Metadata(route))) => Some(route),
        _ => None,
    }
}

/// Read `body` as the document `route` names, as the mirror does when it ingests and serves it:
/// its artifacts, download locations, and every rendering. True when the adapter accepted it.
fn ingest_and_render(
    eco: &dyn Ecosystem,
    routes: &[MetadataRoute],
    body: &[u8],
    context: Option<&MetadataDoc<'_>>,
) -> bool {
    let Some(first) = routes.first() else {
        return false;
    };
    let doc_url = url(UPSTREAM).join(&first.upstream_path).ok();
    let Some(doc_url) = doc_url else {
        return false;
    };
    let doc = MetadataDoc {
        key: &first.key,
        url: &doc_url,
        body,
        context,
    };
    let accepted = eco.read(&doc).is_ok();
    let base = url(BASE);
    for route in routes {
        let _ = eco.render(&doc, route.variant, &base);
        // Parts (npm's versions and dist-tags) are cut from the same document.
        for part in ["latest", "1.0.0"] {
            let _ = eco.render_part(&doc, route.variant, part, &base);
        }
    }
    accepted
}

#[derive(serde::Deserialize)]
struct Named {
    name: Option<String>,
}

/// The `name` a JSON document gives itself, if any (the packument's own name, so that
/// recorded packuments are read under their names).
fn own_name(body: &[u8]) -> Option<String> {
    let mut stream = serde_json::Deserializer::from_slice(body).into_iter::<Named>();
    stream.next()?.ok()?.name
}

/// A packument, read under its own name when that is valid.
pub fn npm_packument(input: &[u8]) -> bool {
    let npm = cairn_npm::Npm;
    let name = own_name(input)
        .filter(|n| cairn_npm::name::PackageName::parse(n).is_ok())
        .unwrap_or_else(|| "demo".into());
    let mut routes = Vec::new();
    for accept in [None, Some(cairn_npm::ABBREVIATED)] {
        routes.extend(metadata_route(&npm, &name, accept));
    }
    routes.extend(metadata_route(
        &npm,
        &format!("-/package/{name}/dist-tags"),
        None,
    ));
    ingest_and_render(&npm, &routes, input, None)
}

/// A sparse registry's `config.json`, as recorded from a registry.
const CARGO_CONFIG: &[u8] =
    br#"{"dl":"https://files.upstream.invalid/crates/{crate}/{version}/download","api":"https://upstream.invalid"}"#;

/// The recorded `config.json` as a fetched document.
fn recorded_config() -> MetadataDoc<'static> {
    static URL: OnceLock<Url> = OnceLock::new();
    MetadataDoc {
        key: "config.json",
        url: URL.get_or_init(|| url("https://upstream.invalid/index/config.json")),
        body: CARGO_CONFIG,
        context: None,
    }
}

/// A cargo index file, read with the recorded `config.json` as its context.
pub fn cargo_index(input: &[u8]) -> bool {
    let cargo = cairn_cargo::Cargo;
    let name = own_name(input)
        .filter(|n| cairn_cargo::index::check_name(n).is_ok())
        .unwrap_or_else(|| "demo".into());
    let path = format!("index/{}", cairn_cargo::index::index_path(&name));
    let routes: Vec<_> = metadata_route(&cargo, &path, None).into_iter().collect();
    let config = recorded_config();
    ingest_and_render(&cargo, &routes, input, Some(&config))
}

/// A `config.json`: read, rendered, and used as the context of a small index file.
pub fn cargo_config(input: &[u8]) -> bool {
    let cargo = cairn_cargo::Cargo;
    let routes: Vec<_> = metadata_route(&cargo, "index/config.json", None)
        .into_iter()
        .collect();
    let accepted = ingest_and_render(&cargo, &routes, input, None);
    let config_url = url("https://upstream.invalid/index/config.json");
    let config = MetadataDoc {
        key: "config.json",
        url: &config_url,
        body: input,
        context: None,
    };
    let index: &[u8] = br#"{"name":"demo","vers":"1.0.0","deps":[],"cksum":"0000000000000000000000000000000000000000000000000000000000000000","features":{},"yanked":false}"#;
    if let Some(route) = metadata_route(&cargo, "index/de/mo/demo", None) {
        let _ = ingest_and_render(&cargo, &[route], index, Some(&config));
    }
    accepted
}

/// A simple page, JSON or HTML, as every variant a client may ask for.
pub fn pypi_page(input: &[u8]) -> bool {
    let pypi = cairn_pypi::Pypi;
    let mut routes = Vec::new();
    for accept in [
        Some(cairn_pypi::page::JSON),
        Some(cairn_pypi::page::HTML),
        None,
    ] {
        routes.extend(metadata_route(&pypi, "simple/demo/", accept));
    }
    ingest_and_render(&pypi, &routes, input, None)
}

/// A wheel, read by the `.metadata` route's derive function.
pub fn pypi_wheel(input: &[u8]) -> bool {
    let pypi = cairn_pypi::Pypi;
    let path = "files/demo/demo-1.0-py3-none-any.whl.metadata";
    let function = match pypi.route(&get(path, None)) {
        Ok(Some(Route::Artifact(route))) => route.derive.map(|d| d.function),
        _ => None,
    }
    .unwrap_or(cairn_pypi::wheel::metadata);
    function(&mut Cursor::new(input)).is_ok()
}

/// The throwaway signing key of the `apt-inrelease` seeds (`fuzz/data/README.md`).
const APT_KEYRING: &[u8] = include_bytes!("../../data/apt-keyring.gpg");

fn new_archive() -> cairn_apt::Archive {
    let keyring = cairn_apt::Keyring::from_bytes(APT_KEYRING, "fuzz keyring")
        .expect("the fuzz keyring parses");
    cairn_apt::Archive::new("debian", keyring).expect("a valid archive name")
}

fn archive() -> &'static cairn_apt::Archive {
    static ARCHIVE: OnceLock<cairn_apt::Archive> = OnceLock::new();
    ARCHIVE.get_or_init(new_archive)
}

/// Every adapter, as `cairn import` is given them (apt with the fuzz keyring).
pub(crate) fn ecosystems() -> Vec<std::sync::Arc<dyn Ecosystem>> {
    vec![
        std::sync::Arc::new(cairn_npm::Npm),
        std::sync::Arc::new(cairn_cargo::Cargo),
        std::sync::Arc::new(cairn_pypi::Pypi),
        std::sync::Arc::new(new_archive()),
    ]
}

fn apt_doc(archive: &cairn_apt::Archive, path: &str, body: &[u8]) -> bool {
    let Some(route) = metadata_route(archive, path, None) else {
        return false;
    };
    let doc_url = url("https://upstream.invalid/debian/").join(path);
    let Ok(doc_url) = doc_url else {
        return false;
    };
    let doc = MetadataDoc {
        key: &route.key,
        url: &doc_url,
        body,
        context: None,
    };
    let accepted = archive.read(&doc).is_ok();
    let _ = archive.render(&doc, route.variant, &url(BASE));
    accepted
}

/// A clear-signed `InRelease`, and the same bytes as a detached `Release.gpg`.
pub fn apt_inrelease(input: &[u8]) -> bool {
    let archive = archive();
    let accepted = apt_doc(archive, "dists/stable/InRelease", input);
    let _ = apt_doc(archive, "dists/stable/Release.gpg", input);
    accepted
}

/// The text of a `Release` file, or of an `InRelease` unwrapped unverified as `cairn prefetch`
/// reads a node's (signature checks are `apt-inrelease`'s), with its dates checked against a
/// fixed time, and the indexes `apt-get update` would fetch picked from it.
pub fn apt_release(input: &[u8]) -> bool {
    let Ok(text) = cairn_apt::indexes::signed_text(input) else {
        return false;
    };
    let Ok(release) = cairn_apt::release::Release::parse(&text) else {
        return false;
    };
    let now = std::time::UNIX_EPOCH + std::time::Duration::from_secs(1_800_000_000);
    let _ = release.field("Suite");
    let picked = cairn_apt::indexes::update_indexes(
        &release,
        &["main".to_owned(), "contrib".to_owned()],
        &["amd64".to_owned(), "all".to_owned()],
        true,
    );
    assert!(picked.len() <= release.files.len());
    for file in &release.files {
        let _ = cairn_apt::indexes::is_update_index(&file.path);
    }
    release.check_dates(now).is_ok()
}

/// A `Packages` or `Sources` index (plain, gzip or xz), read as a verified listing.
pub fn apt_packages(input: &[u8]) -> bool {
    let archive = archive();
    let mut accepted = false;
    for key in [
        "dists/stable/main/binary-amd64/Packages",
        "dists/stable/main/source/Sources.xz",
    ] {
        let file_url = url("https://upstream.invalid/debian/").join(key);
        let Ok(file_url) = file_url else {
            continue;
        };
        accepted |= archive
            .listing(key, &file_url, &mut Cursor::new(input), &mut |_| Ok(()))
            .is_ok();
    }
    accepted
}

/// apt's sources in both formats, and the deb822 written back from them.
pub fn apt_sources(input: &[u8]) -> bool {
    let Ok(text) = std::str::from_utf8(input) else {
        return false;
    };
    let mut sources = cairn_apt::sources::parse_list(text);
    sources.extend(cairn_apt::sources::parse_deb822(text));
    for source in &sources {
        let _ = source.archive_name();
        if let Some(signed_by) = &source.signed_by {
            let _ = cairn_apt::sources::keyring_files(signed_by);
        }
    }
    let _ = cairn_apt::sources::render_deb822(&sources, &url(BASE));
    !sources.is_empty()
}

/// Keys a route hands to the mirror never climb out of their namespace. (A passthrough's
/// upstream path is checked where it is sent: `Upstream::check` refuses dot segments.)
fn check_routed(path: &str, route: &Route) {
    let keys: Vec<&str> = match route {
        Route::Metadata(m) | Route::Part { document: m, .. } => vec![&m.key],
        Route::Artifact(a) => {
            let mut keys = vec![a.key.as_str()];
            keys.extend(a.listed_by.document().map(|d| d.key.as_str()));
            keys.extend(a.derive.as_ref().map(|d| d.source.as_str()));
            keys
        }
        Route::Redirect { path } => vec![path],
        Route::Passthrough { .. }
        | Route::Local { .. }
        | Route::Refused { .. }
        | Route::Held { .. } => Vec::new(),
    };
    for key in keys {
        let bad = key.contains('\0')
            || key.starts_with('/')
            || key.split('/').any(|s| s == ".." || s == ".");
        assert!(!bad, "path {path:?} routed to key {key:?} in {route:?}");
    }
}

/// A request: `ECOSYSTEM\nPATH?QUERY\nACCEPT`. The path and query are what an HTTP request
/// line can carry (parsed as the server's URI is). Beside not panicking, a routed key must not
/// climb out of its namespace.
pub fn route(input: &[u8]) -> bool {
    let text = String::from_utf8_lossy(input);
    let mut lines = text.splitn(3, '\n');
    let eco = lines.next().unwrap_or_default();
    let target = lines.next().unwrap_or_default();
    let accept = lines.next().filter(|a| !a.is_empty());
    let Ok(uri) = http::uri::PathAndQuery::try_from(format!("/{target}")) else {
        return false;
    };
    let path = uri.path().strip_prefix('/').unwrap_or_default();
    let request = Request {
        method: &Method::GET,
        path,
        query: uri.query(),
        accept,
    };
    let routed = match eco {
        "npm" => cairn_npm::Npm.route(&request),
        "cargo" => cairn_cargo::Cargo.route(&request),
        "pypi" => cairn_pypi::Pypi.route(&request),
        _ => archive().route(&request),
    };
    match routed {
        Ok(Some(route)) => {
            check_routed(path, &route);
            true
        }
        _ => false,
    }
}

/// A lockfile: `NAME\nTEXT`, dispatched by name as `--lockfile` does (npm's three formats,
/// `Cargo.lock`, `uv.lock`, `requirements*.txt`, else an apt package list resolved against a
/// small pool).
pub fn lockfile(input: &[u8]) -> bool {
    let Ok(text) = std::str::from_utf8(input) else {
        return false;
    };
    let (file, text) = text.split_once('\n').unwrap_or((text, ""));
    match file {
        "package-lock.json" | "npm-shrinkwrap.json" | "yarn.lock" | "pnpm-lock.yaml" => {
            cairn_npm::lockfile::read(file, text).is_ok()
        }
        "Cargo.lock" => cairn_cargo::lockfile::read(file, text).is_ok(),
        "uv.lock" => pypi_select(text, cairn_pypi::lockfile::uv_lock(file, text)),
        f if f.starts_with("requirements") && f.ends_with(".txt") => {
            pypi_select(text, cairn_pypi::lockfile::requirements(file, text))
        }
        _ => match cairn_apt::lockfile::read(file, text) {
            Ok(wanted) => {
                let pool = apt_pool();
                let _ = cairn_apt::lockfile::resolve(file, &wanted, pool);
                true
            }
            Err(_) => false,
        },
    }
}

/// Python entries also go through file selection, the words of the input standing for the file
/// names an index page lists (wheel and sdist names are outside input too).
fn pypi_select(
    text: &str,
    read: Result<Vec<cairn_pypi::lockfile::Locked>, cairn_pypi::lockfile::LockfileError>,
) -> bool {
    let Ok(locked) = read else {
        return false;
    };
    let names: Vec<&str> = text
        .split(|c: char| c.is_whitespace() || c == '"' || c == '/')
        .take(256)
        .collect();
    let target = cairn_pypi::tags::Target {
        python: cairn_pypi::tags::Python::parse("3.11", "cp").ok(),
        groups: vec![
            vec!["manylinux_2_17_x86_64".into(), "linux_x86_64".into()],
            vec!["macosx_11_0_arm64".into()],
            vec!["any".into()],
        ],
    };
    for l in locked.iter().take(64) {
        let _ = cairn_pypi::select::select(l, &names, Some(&target));
        let _ = cairn_pypi::select::select(l, &names, None);
    }
    true
}

fn apt_pool() -> &'static [cairn_apt::packages::PoolFile] {
    static POOL: OnceLock<Vec<cairn_apt::packages::PoolFile>> = OnceLock::new();
    POOL.get_or_init(|| {
        [
            ("hello", "2.10-3"),
            ("hello", "1:2.9-1"),
            ("hello", "2.10-3+b1"),
            ("hello", "2.10~rc1-1"),
            ("libc6", "2.36-9+deb12u7"),
        ]
        .into_iter()
        .map(|(package, version)| cairn_apt::packages::PoolFile {
            package: package.into(),
            version: version.into(),
            filename: format!("pool/main/{package}_{version}_amd64.deb"),
            size: 1,
            sha256: [7; 32],
        })
        .collect()
    })
}
