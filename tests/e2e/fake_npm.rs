//! An in-process fake npm registry on 127.0.0.1:0, serving packuments and tarballs the test
//! generates (real gzipped tarballs with a `package.json`). The shared fake upstream
//! (`fake_upstream.rs`) counts every request and misbehaves on demand: tampered tarballs,
//! malformed packuments, throttled bodies, an outage.

use std::collections::BTreeMap;
use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};

use axum::response::{IntoResponse, Response};
use base64::Engine as _;
use bytes::Bytes;
use sha2::Digest as _;

use crate::fake_upstream::{FakeUpstream, Request, Routes};

/// One published version.
#[derive(Clone)]
pub struct Version {
    pub version: String,
    pub dependencies: Vec<(String, String)>,
    pub tarball: Bytes,
    pub scripts: Vec<(String, String)>,
    /// Its publication time (RFC 3339), when the test sets one; else a January date.
    pub published: Option<String>,
    /// `dist.signatures[0]`: the registry's key id and its signature (base64 DER ECDSA).
    pub signature: Option<(String, String)>,
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
    /// `GET -/npm/v1/keys`, once [`Registry::sign`] made a signing key.
    keys: Option<serde_json::Value>,
}

/// The key id the fake registry signs with.
pub const SIGNING_KEY_ID: &str = "SHA256:cairn-e2e-registry-key";

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
                published: None,
                signature: None,
            });
        self
    }

    /// Date the last version published of `name`: `published` (RFC 3339).
    pub fn published_at(&mut self, name: &str, published: &str) -> &mut Self {
        if let Some(last) = self.packages.get_mut(name).and_then(|v| v.last_mut()) {
            last.published = Some(published.to_owned());
        }
        self
    }

    /// Sign every version published so far as the registry does (ECDSA P-256 over
    /// `NAME@VERSION:INTEGRITY`, with a key made in `dir` by the openssl CLI) and publish the
    /// public key at `-/npm/v1/keys`. `tampered` names a version signed over the wrong message.
    pub fn sign(&mut self, dir: &std::path::Path, tampered: Option<(&str, &str)>) -> &mut Self {
        let openssl =
            |args: &[&str], input: Option<&[u8]>| crate::support::openssl(dir, args, input);
        openssl(
            &[
                "ecparam",
                "-name",
                "prime256v1",
                "-genkey",
                "-noout",
                "-out",
                "npm-signing.pem",
            ],
            None,
        );
        let public = openssl(
            &["ec", "-in", "npm-signing.pem", "-pubout", "-outform", "DER"],
            None,
        );
        let b64 = base64::engine::general_purpose::STANDARD;
        self.keys = Some(serde_json::json!({"keys": [{
            "expires": null,
            "keyid": SIGNING_KEY_ID,
            "keytype": "ecdsa-sha2-nistp256",
            "scheme": "ecdsa-sha2-nistp256",
            "key": b64.encode(public),
        }]}));
        for (name, versions) in &mut self.packages {
            for v in versions {
                let mut message = format!("{name}@{}:{}", v.version, v.integrity());
                if tampered == Some((name.as_str(), v.version.as_str())) {
                    message.push_str(" (not what was published)");
                }
                let sig = openssl(
                    &["dgst", "-sha256", "-sign", "npm-signing.pem"],
                    Some(message.as_bytes()),
                );
                v.signature = Some((SIGNING_KEY_ID.to_owned(), b64.encode(sig)));
            }
        }
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

pub use crate::fake_upstream::Faults;

/// The npm routes: packuments, tarballs and the bulk advisory endpoint.
struct Npm {
    url: String,
    registry: Arc<Registry>,
    /// The `Authorization` value every request must carry (a private registry), if any.
    required: Option<String>,
    /// Requests that carried an `Authorization` header, whatever it said.
    authorized: Arc<AtomicUsize>,
}

/// A running fake registry.
pub struct FakeNpm {
    pub url: String,
    pub faults: Arc<Faults>,
    upstream: FakeUpstream,
    registry: Arc<Registry>,
    authorized: Arc<AtomicUsize>,
}

impl FakeNpm {
    pub fn start(registry: Registry) -> FakeNpm {
        FakeNpm::start_guarded(registry, None)
    }

    /// A private registry: every request without `Authorization: REQUIRED` gets a 401.
    pub fn start_guarded(registry: Registry, required: Option<&str>) -> FakeNpm {
        let registry = Arc::new(registry);
        let authorized = Arc::new(AtomicUsize::new(0));
        let upstream = FakeUpstream::start(1, |origins| Npm {
            url: origins[0].clone(),
            registry: registry.clone(),
            required: required.map(str::to_owned),
            authorized: authorized.clone(),
        });
        FakeNpm {
            url: upstream.origins[0].clone(),
            faults: upstream.faults.clone(),
            upstream,
            registry,
            authorized,
        }
    }

    /// Requests that carried an `Authorization` header.
    pub fn authorized_hits(&self) -> usize {
        self.authorized.load(Ordering::SeqCst)
    }

    /// Every request path seen, as sent.
    pub fn requests(&self) -> Vec<String> {
        self.upstream.requests()
    }

    /// Requests seen for a raw path (without the leading `/`).
    pub fn hits(&self, path: &str) -> usize {
        self.upstream.hits(path)
    }

    /// Requests seen in all.
    pub fn total_hits(&self) -> usize {
        self.upstream.total_hits()
    }

    pub fn registry(&self) -> &Registry {
        &self.registry
    }
}

fn packument(shared: &Npm, name: &str) -> Option<serde_json::Value> {
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
        let mut manifest = serde_json::json!({
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
        });
        if let Some((keyid, sig)) = &v.signature {
            manifest["dist"]["signatures"] = serde_json::json!([{"keyid": keyid, "sig": sig}]);
        }
        out.insert(v.version.clone(), manifest);
        // A minute apart, so thousands of versions still have valid times in January.
        let published = v.published.clone().unwrap_or_else(|| {
            format!(
                "2026-01-{:02}T{:02}:{:02}:00.000Z",
                1 + i / 1440,
                i / 60 % 24,
                i % 60
            )
        });
        time.insert(v.version.clone(), published.into());
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

impl Routes for Npm {
    fn answer(&self, request: &Request) -> Response {
        let presented = request.headers.get(http::header::AUTHORIZATION);
        if presented.is_some() {
            self.authorized.fetch_add(1, Ordering::SeqCst);
        }
        if let Some(refused) = crate::fake_upstream::unauthorized(
            request,
            self.required.as_deref(),
            "Bearer realm=\"fake\"",
        ) {
            return refused;
        }
        if request.path == "-/npm/v1/security/advisories/bulk" {
            return bulk_advisories(request);
        }
        if request.path == "-/npm/v1/keys"
            && let Some(keys) = &self.registry.keys
        {
            return (
                [(http::header::CONTENT_TYPE, "application/json")],
                keys.to_string(),
            )
                .into_response();
        }
        if let Some(spec) = request.path.strip_prefix("-/npm/v1/attestations/")
            && let Some((name, version)) = spec.rsplit_once('@')
            && let Some(v) = self
                .registry
                .packages
                .get(name)
                .and_then(|vs| vs.iter().find(|v| v.version == version))
            && v.signature.is_some()
        {
            // The shape the registry answers with; the bundle is a stand-in npm is not shown.
            let doc = serde_json::json!({"attestations": [{
                "predicateType": "https://github.com/npm/attestation/tree/main/specs/publish/v0.1",
                "bundle": {"mediaType": "application/vnd.dev.sigstore.bundle+json;version=0.2",
                           "subject": format!("pkg:npm/{name}@{version}"),
                           "integrity": v.integrity()},
            }]});
            return (
                [(http::header::CONTENT_TYPE, "application/json")],
                doc.to_string(),
            )
                .into_response();
        }
        if let Some((name, file)) = request.path.split_once("/-/") {
            let Some(version) = self
                .registry
                .packages
                .get(name)
                .and_then(|vs| vs.iter().find(|v| file_name(name, &v.version) == file))
            else {
                return (http::StatusCode::NOT_FOUND, "no such tarball").into_response();
            };
            return (
                [(http::header::CONTENT_TYPE, "application/octet-stream")],
                version.tarball.clone(),
            )
                .into_response();
        }
        match packument(self, &request.path) {
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
}

/// npm's bulk advisory endpoint: one advisory against `lib-d` below 2.0.0, if the (gzipped)
/// request body asks about it.
fn bulk_advisories(request: &Request) -> Response {
    let gzipped = request
        .headers
        .get(http::header::CONTENT_ENCODING)
        .is_some_and(|v| v == "gzip");
    let body = &request.body;
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
