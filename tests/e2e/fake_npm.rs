//! An in-process fake npm registry on 127.0.0.1:0, serving packuments and tarballs the test
//! generates (real gzipped tarballs with a `package.json`), counting every request, and able to
//! misbehave on demand: tampered tarballs, malformed packuments, throttled bodies, an outage.

use std::collections::{BTreeMap, HashMap, HashSet};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use axum::body::Body;
use axum::extract::State;
use axum::response::{IntoResponse, Response};
use base64::Engine as _;
use bytes::Bytes;
use sha2::Digest as _;

use crate::support::{Hits, bind_local, serve_fake};

/// One published version.
#[derive(Clone)]
pub struct Version {
    pub version: String,
    pub dependencies: Vec<(String, String)>,
    pub tarball: Bytes,
    pub scripts: Vec<(String, String)>,
}

impl Version {
    pub fn integrity(&self) -> String {
        let digest = sha2::Sha512::digest(&self.tarball);
        format!(
            "sha512-{}",
            base64::engine::general_purpose::STANDARD.encode(digest)
        )
    }
}

/// The packages a fake registry serves.
#[derive(Default, Clone)]
pub struct Registry {
    packages: BTreeMap<String, Vec<Version>>,
}

/// Deterministic incompressible bytes, so big tarballs stay big after gzip.
pub use cairn_mirror::testing::noise;

/// A gzipped npm tarball holding `package/package.json`, `package/index.js` and extra files.
pub fn tarball(
    name: &str,
    version: &str,
    deps: &[(String, String)],
    extra: &[(&str, Vec<u8>)],
) -> Bytes {
    let dependencies: serde_json::Map<String, serde_json::Value> = deps
        .iter()
        .map(|(n, r)| (n.clone(), serde_json::Value::String(r.clone())))
        .collect();
    let manifest = serde_json::json!({
        "name": name,
        "version": version,
        "main": "index.js",
        "license": "MIT",
        "dependencies": dependencies,
    });
    let manifest = serde_json::to_vec_pretty(&manifest).expect("manifest");
    let index = format!("module.exports = {{ name: {name:?}, version: {version:?} }};\n");
    let mut files: Vec<(String, Vec<u8>)> = vec![
        ("package/package.json".into(), manifest),
        ("package/index.js".into(), index.into_bytes()),
    ];
    for (path, data) in extra {
        files.push((format!("package/{path}"), data.clone()));
    }
    crate::support::targz(files)
}

impl Registry {
    /// Publish `name@version` depending on `deps` (name, range), with optional extra files.
    pub fn publish(
        &mut self,
        name: &str,
        version: &str,
        deps: &[(&str, &str)],
        extra: &[(&str, Vec<u8>)],
    ) -> &mut Self {
        let dependencies: Vec<(String, String)> = deps
            .iter()
            .map(|(n, r)| (n.to_string(), r.to_string()))
            .collect();
        let tarball = tarball(name, version, &dependencies, extra);
        self.packages
            .entry(name.to_owned())
            .or_default()
            .push(Version {
                version: version.to_owned(),
                dependencies,
                tarball,
                scripts: Vec::new(),
            });
        self
    }

    pub fn version(&self, name: &str, version: &str) -> &Version {
        self.packages[name]
            .iter()
            .find(|v| v.version == version)
            .expect("published version")
    }
}

fn file_name(name: &str, version: &str) -> String {
    let unscoped = name.rsplit('/').next().unwrap_or(name);
    format!("{unscoped}-{version}.tgz")
}

/// Behaviour switches, flipped by tests while the server runs.
#[derive(Default)]
pub struct Faults {
    /// Tarball paths (`name/-/file.tgz`) served with one byte changed.
    pub tampered: Mutex<HashSet<String>>,
    /// Package names whose packument is served as HTML.
    pub malformed: Mutex<HashSet<String>>,
    /// Tarball paths streamed slowly: (chunk bytes, pause between chunks).
    pub throttled: Mutex<HashMap<String, (usize, Duration)>>,
    /// Every request answered 503.
    pub down: AtomicBool,
}

struct Shared {
    url: String,
    registry: Registry,
    faults: Arc<Faults>,
    hits: Hits,
}

/// A running fake registry.
pub struct FakeNpm {
    pub url: String,
    pub faults: Arc<Faults>,
    shared: Arc<Shared>,
}

impl FakeNpm {
    pub fn start(registry: Registry) -> FakeNpm {
        let listener = bind_local();
        let addr = listener.local_addr().expect("addr");
        let url = format!("http://{addr}/");
        let faults = Arc::new(Faults::default());
        let shared = Arc::new(Shared {
            url: url.clone(),
            registry,
            faults: faults.clone(),
            hits: Hits::default(),
        });
        serve_fake(
            listener,
            axum::Router::new()
                .fallback(handle)
                .with_state(shared.clone()),
        );
        FakeNpm {
            url,
            faults,
            shared,
        }
    }

    /// Requests seen for a raw path (without the leading `/`).
    pub fn hits(&self, path: &str) -> usize {
        self.shared.hits.get(path)
    }

    /// Requests seen in all.
    pub fn total_hits(&self) -> usize {
        self.shared.hits.total()
    }

    pub fn registry(&self) -> &Registry {
        &self.shared.registry
    }
}

fn packument(shared: &Shared, name: &str) -> Option<serde_json::Value> {
    let versions = shared.registry.packages.get(name)?;
    let mut out = serde_json::Map::new();
    let mut time = serde_json::Map::new();
    for (i, v) in versions.iter().enumerate() {
        let deps: serde_json::Map<String, serde_json::Value> = v
            .dependencies
            .iter()
            .map(|(n, r)| (n.clone(), r.clone().into()))
            .collect();
        let scripts: serde_json::Map<String, serde_json::Value> = v
            .scripts
            .iter()
            .map(|(n, s)| (n.clone(), s.clone().into()))
            .collect();
        let shasum = hex::encode(sha1::Sha1::digest(&v.tarball));
        out.insert(
            v.version.clone(),
            serde_json::json!({
                "name": name,
                "version": v.version,
                "description": format!("{name} test package"),
                "dependencies": deps,
                "scripts": scripts,
                "_id": format!("{name}@{}", v.version),
                "dist": {
                    "integrity": v.integrity(),
                    "shasum": shasum,
                    "tarball": format!("{}{name}/-/{}", shared.url, file_name(name, &v.version)),
                },
            }),
        );
        // A minute apart, so thousands of versions still have valid times in January.
        time.insert(
            v.version.clone(),
            format!(
                "2026-01-{:02}T{:02}:{:02}:00.000Z",
                1 + i / 1440,
                i / 60 % 24,
                i % 60
            )
            .into(),
        );
    }
    time.insert("modified".into(), "2026-02-01T00:00:00.000Z".into());
    let latest = versions
        .last()
        .map(|v| v.version.clone())
        .unwrap_or_default();
    Some(serde_json::json!({
        "_id": name,
        "name": name,
        "dist-tags": { "latest": latest },
        "versions": out,
        "time": time,
        "readme": "a long readme that abbreviated packuments leave out",
    }))
}

async fn handle(State(shared): State<Arc<Shared>>, request: http::Request<Body>) -> Response {
    let raw = request.uri().path().trim_start_matches('/').to_owned();
    shared.hits.record(&raw);
    if shared.faults.down.load(Ordering::SeqCst) {
        return (http::StatusCode::SERVICE_UNAVAILABLE, "down for the test").into_response();
    }
    if raw == "-/npm/v1/security/advisories/bulk" {
        return bulk_advisories(request).await;
    }
    let decoded = raw.replace("%2f", "/").replace("%2F", "/");
    if let Some((name, file)) = decoded.split_once("/-/") {
        let Some(version) = shared
            .registry
            .packages
            .get(name)
            .and_then(|vs| vs.iter().find(|v| file_name(name, &v.version) == file))
        else {
            return (http::StatusCode::NOT_FOUND, "no such tarball").into_response();
        };
        let mut bytes = version.tarball.to_vec();
        let key = format!("{name}/-/{file}");
        if shared
            .faults
            .tampered
            .lock()
            .expect("faults")
            .contains(&key)
        {
            let mid = bytes.len() / 2;
            bytes[mid] ^= 0xff;
        }
        let throttle = shared
            .faults
            .throttled
            .lock()
            .expect("faults")
            .get(&key)
            .copied();
        let len = bytes.len();
        let body = match throttle {
            None => Body::from(bytes),
            Some((chunk, pause)) => {
                let chunks: Vec<Bytes> = bytes.chunks(chunk).map(Bytes::copy_from_slice).collect();
                let stream =
                    futures_util::stream::unfold(chunks.into_iter(), move |mut it| async move {
                        let next = it.next()?;
                        tokio::time::sleep(pause).await;
                        Some((Ok::<_, std::io::Error>(next), it))
                    });
                Body::from_stream(stream)
            }
        };
        return (
            [
                (
                    http::header::CONTENT_TYPE,
                    "application/octet-stream".to_owned(),
                ),
                (http::header::CONTENT_LENGTH, len.to_string()),
            ],
            body,
        )
            .into_response();
    }
    if shared
        .faults
        .malformed
        .lock()
        .expect("faults")
        .contains(&decoded)
    {
        return (
            [(http::header::CONTENT_TYPE, "text/html")],
            "<html><body>upstream error page</body></html>",
        )
            .into_response();
    }
    match packument(&shared, &decoded) {
        Some(doc) => (
            [(http::header::CONTENT_TYPE, "application/json")],
            doc.to_string(),
        )
            .into_response(),
        None => (
            http::StatusCode::NOT_FOUND,
            [(http::header::CONTENT_TYPE, "application/json")],
            "{\"error\":\"Not found\"}",
        )
            .into_response(),
    }
}

/// npm's bulk advisory endpoint: one advisory against `lib-d` below 2.0.0, if the (gzipped)
/// request body asks about it.
async fn bulk_advisories(request: http::Request<Body>) -> Response {
    let gzipped = request
        .headers()
        .get(http::header::CONTENT_ENCODING)
        .is_some_and(|v| v == "gzip");
    let Ok(body) = axum::body::to_bytes(request.into_body(), 1 << 20).await else {
        return (http::StatusCode::BAD_REQUEST, "unreadable body").into_response();
    };
    let mut json = Vec::new();
    if gzipped {
        use std::io::Read as _;
        if flate2::read::GzDecoder::new(&body[..])
            .read_to_end(&mut json)
            .is_err()
        {
            return (http::StatusCode::BAD_REQUEST, "bad gzip").into_response();
        }
    } else {
        json = body.to_vec();
    }
    let asked: serde_json::Value = serde_json::from_slice(&json).unwrap_or_default();
    let mut reply = serde_json::Map::new();
    if asked.get("lib-d").is_some() {
        reply.insert(
            "lib-d".into(),
            serde_json::json!([{
                "id": 1001,
                "url": "https://advisories.invalid/1001",
                "title": "Cairn e2e test advisory",
                "severity": "high",
                "vulnerable_versions": "<2.0.0",
                "cwe": ["CWE-400"],
                "cvss": { "score": 7.5, "vectorString": null }
            }]),
        );
    }
    (
        [(http::header::CONTENT_TYPE, "application/json")],
        serde_json::Value::Object(reply).to_string(),
    )
        .into_response()
}
