//! An in-process fake sparse registry: the index on one port and the `.crate` files on another
//! (a different origin, as real registries have), named by a `dl` template with markers. The
//! crates are real tarballs of tiny generated packages, so cargo can build them.

use std::collections::{BTreeMap, HashSet};
use std::sync::{Arc, Mutex};

use axum::body::Body;
use axum::extract::State;
use axum::response::{IntoResponse, Response};
use bytes::Bytes;
use sha2::Digest as _;

use crate::support::{Hits, bind_local, serve_fake};

/// One published crate version.
#[derive(Clone)]
pub struct Release {
    pub name: String,
    pub version: String,
    pub deps: Vec<(String, String)>,
    pub yanked: bool,
    pub file: Bytes,
}

impl Release {
    pub fn checksum(&self) -> String {
        hex::encode(sha2::Sha256::digest(&self.file))
    }
}

/// A `.crate`: a gzipped tarball of `{name}-{version}/` with a manifest and a library.
fn crate_file(name: &str, version: &str, deps: &[(String, String)]) -> Bytes {
    let mut manifest = format!(
        "[package]\nname = \"{name}\"\nversion = \"{version}\"\nedition = \"2021\"\n\n[dependencies]\n"
    );
    for (dep, req) in deps {
        manifest.push_str(&format!("{dep} = \"{req}\"\n"));
    }
    let lib = format!("pub fn name() -> &'static str {{ \"{name}\" }}\n");
    crate::support::targz([
        (
            format!("{name}-{version}/Cargo.toml"),
            manifest.into_bytes(),
        ),
        (format!("{name}-{version}/src/lib.rs"), lib.into_bytes()),
    ])
}

#[derive(Default, Clone)]
pub struct Registry {
    crates: BTreeMap<String, Vec<Release>>,
}

impl Registry {
    pub fn publish(
        &mut self,
        name: &str,
        version: &str,
        deps: &[(&str, &str)],
        yanked: bool,
    ) -> &mut Self {
        let deps: Vec<(String, String)> = deps
            .iter()
            .map(|(d, r)| (d.to_string(), r.to_string()))
            .collect();
        let file = crate_file(name, version, &deps);
        self.crates
            .entry(name.to_ascii_lowercase())
            .or_default()
            .push(Release {
                name: name.to_owned(),
                version: version.to_owned(),
                deps,
                yanked,
                file,
            });
        self
    }

    pub fn release(&self, name: &str, version: &str) -> &Release {
        self.crates[&name.to_ascii_lowercase()]
            .iter()
            .find(|r| r.version == version)
            .expect("published release")
    }
}

fn index_path(name: &str) -> String {
    let n = name.to_ascii_lowercase();
    match n.len() {
        1 => format!("1/{n}"),
        2 => format!("2/{n}"),
        3 => format!("3/{}/{n}", &n[..1]),
        _ => format!("{}/{}/{n}", &n[..2], &n[2..4]),
    }
}

fn index_file(releases: &[Release]) -> String {
    let mut out = String::new();
    for r in releases {
        let deps: Vec<serde_json::Value> = r
            .deps
            .iter()
            .map(|(name, req)| {
                serde_json::json!({"name": name, "req": req, "features": [], "optional": false,
                    "default_features": true, "target": null, "kind": "normal"})
            })
            .collect();
        let line = serde_json::json!({"name": r.name, "vers": r.version, "deps": deps,
            "cksum": r.checksum(), "features": {}, "yanked": r.yanked, "links": null});
        out.push_str(&line.to_string());
        out.push('\n');
    }
    out
}

struct Shared {
    files_url: String,
    registry: Registry,
    tampered: Mutex<HashSet<String>>,
    hits: Hits,
}

/// A running fake sparse registry.
pub struct FakeCargo {
    /// The index URL (ends in `/`).
    pub index_url: String,
    shared: Arc<Shared>,
}

impl FakeCargo {
    pub fn start(registry: Registry) -> FakeCargo {
        let bind = || bind_local();
        let (index, files) = (bind(), bind());
        let index_url = format!("http://{}/index/", index.local_addr().expect("addr"));
        let files_url = format!("http://{}/", files.local_addr().expect("addr"));
        let shared = Arc::new(Shared {
            files_url,
            registry,
            tampered: Mutex::new(HashSet::new()),
            hits: Hits::default(),
        });
        for listener in [index, files] {
            serve_fake(
                listener,
                axum::Router::new()
                    .fallback(handle)
                    .with_state(shared.clone()),
            );
        }
        FakeCargo { index_url, shared }
    }

    pub fn registry(&self) -> &Registry {
        &self.shared.registry
    }

    /// Serve this crate's file with one byte changed.
    pub fn tamper(&self, name: &str, version: &str) {
        self.shared
            .tampered
            .lock()
            .expect("tampered")
            .insert(format!("{name}-{version}"));
    }

    pub fn hits(&self, path: &str) -> usize {
        self.shared.hits.get(path)
    }

    pub fn total_hits(&self) -> usize {
        self.shared.hits.total()
    }
}

async fn handle(State(shared): State<Arc<Shared>>, request: http::Request<Body>) -> Response {
    let path = request.uri().path().trim_start_matches('/').to_owned();
    shared.hits.record(&path);
    if path == "index/config.json" {
        let dl = format!(
            "{}files/{{lowerprefix}}/{{crate}}/{{crate}}-{{version}}.crate",
            shared.files_url
        );
        return (
            [(http::header::CONTENT_TYPE, "application/json")],
            serde_json::json!({ "dl": dl }).to_string(),
        )
            .into_response();
    }
    if let Some(rest) = path.strip_prefix("index/") {
        let name = rest.rsplit('/').next().unwrap_or_default();
        return match shared.registry.crates.get(name) {
            Some(releases) if index_path(name) == rest => (
                [(http::header::CONTENT_TYPE, "text/plain")],
                index_file(releases),
            )
                .into_response(),
            _ => (http::StatusCode::NOT_FOUND, "no such crate").into_response(),
        };
    }
    if let Some(rest) = path.strip_prefix("files/") {
        let file = rest.rsplit('/').next().unwrap_or_default();
        for releases in shared.registry.crates.values() {
            for r in releases {
                let stem = format!("{}-{}", r.name, r.version);
                if file == format!("{stem}.crate")
                    && rest.starts_with(
                        &index_path(&r.name)[..index_path(&r.name).rfind('/').unwrap_or(0)],
                    )
                {
                    let mut bytes = r.file.to_vec();
                    if shared.tampered.lock().expect("tampered").contains(&stem) {
                        let last = bytes.len() - 1;
                        bytes[last] ^= 0x01;
                    }
                    return ([(http::header::CONTENT_TYPE, "application/gzip")], bytes)
                        .into_response();
                }
            }
        }
    }
    (http::StatusCode::NOT_FOUND, "not found").into_response()
}
