//! An in-process fake sparse registry: the index on one port and the `.crate` files on another
//! (a different origin, as real registries have), named by a `dl` template with markers. The
//! crates are real tarballs of tiny generated packages, so cargo can build them. Requests are
//! counted and faults injected by the shared fake upstream (`fake_upstream.rs`).

use std::collections::BTreeMap;
use std::sync::Arc;

use axum::response::{IntoResponse, Response};
use bytes::Bytes;
use sha2::Digest as _;

use crate::fake_upstream::{FakeUpstream, Faults, Request, Routes};

/// One published crate version.
#[derive(Clone)]
pub struct Release {
    pub name: String,
    pub version: String,
    pub deps: Vec<(String, String)>,
    pub yanked: bool,
    pub file: Bytes,
    /// Its `pubtime` (RFC 3339), when the test sets one; else the index line has none.
    pub published: Option<String>,
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
                published: None,
            });
        self
    }

    /// Date the release of `name` published last: `published` (RFC 3339).
    pub fn published_at(&mut self, name: &str, published: &str) -> &mut Self {
        if let Some(last) = self
            .crates
            .get_mut(&name.to_ascii_lowercase())
            .and_then(|r| r.last_mut())
        {
            last.published = Some(published.to_owned());
        }
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
        let mut line = serde_json::json!({"name": r.name, "vers": r.version, "deps": deps,
            "cksum": r.checksum(), "features": {}, "yanked": r.yanked, "links": null});
        if let Some(published) = &r.published {
            line["pubtime"] = published.clone().into();
        }
        out.push_str(&line.to_string());
        out.push('\n');
    }
    out
}

/// The sparse index routes (index origin) and the `.crate` files (files origin).
struct Crates {
    files_url: String,
    registry: Arc<Registry>,
    /// The token every request must carry as its whole `Authorization` (a private registry,
    /// whose `config.json` then says `auth-required`), if any.
    required: Option<String>,
}

/// A running fake sparse registry.
pub struct FakeCargo {
    /// The index URL (ends in `/`).
    pub index_url: String,
    pub faults: Arc<Faults>,
    upstream: FakeUpstream,
    registry: Arc<Registry>,
}

impl FakeCargo {
    pub fn start(registry: Registry) -> FakeCargo {
        let registry = Arc::new(registry);
        let upstream = FakeUpstream::start(2, |origins| Crates {
            files_url: origins[1].clone(),
            registry: registry.clone(),
            required: None,
        });
        FakeCargo {
            index_url: format!("{}index/", upstream.origins[0]),
            faults: upstream.faults.clone(),
            upstream,
            registry,
        }
    }

    /// A private registry: index and files on one origin, every request without
    /// `Authorization: TOKEN` answered `401`.
    pub fn start_guarded(registry: Registry, token: &str) -> FakeCargo {
        let registry = Arc::new(registry);
        let upstream = FakeUpstream::start(1, |origins| Crates {
            files_url: origins[0].clone(),
            registry: registry.clone(),
            required: Some(token.to_owned()),
        });
        FakeCargo {
            index_url: format!("{}index/", upstream.origins[0]),
            faults: upstream.faults.clone(),
            upstream,
            registry,
        }
    }

    /// Every request path seen, as sent.
    pub fn requests(&self) -> Vec<String> {
        self.upstream.requests()
    }

    pub fn registry(&self) -> &Registry {
        &self.registry
    }

    /// Serve this crate's file with one byte changed.
    pub fn tamper(&self, name: &str, version: &str) {
        self.faults.tamper(&format!("{name}-{version}.crate"));
    }

    pub fn hits(&self, path: &str) -> usize {
        self.upstream.hits(path)
    }

    pub fn total_hits(&self) -> usize {
        self.upstream.total_hits()
    }
}

impl Routes for Crates {
    fn answer(&self, request: &Request) -> Response {
        if let Some(refused) = crate::fake_upstream::unauthorized(
            request,
            self.required.as_deref(),
            "Bearer realm=\"fake\"",
        ) {
            return refused;
        }
        let path = request.path.as_str();
        if path == "index/config.json" {
            let dl = format!(
                "{}files/{{lowerprefix}}/{{crate}}/{{crate}}-{{version}}.crate",
                self.files_url
            );
            return (
                [(http::header::CONTENT_TYPE, "application/json")],
                if self.required.is_some() {
                    serde_json::json!({ "dl": dl, "auth-required": true })
                } else {
                    serde_json::json!({ "dl": dl })
                }
                .to_string(),
            )
                .into_response();
        }
        if let Some(rest) = path.strip_prefix("index/") {
            let name = rest.rsplit('/').next().unwrap_or_default();
            return match self.registry.crates.get(name) {
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
            for releases in self.registry.crates.values() {
                for r in releases {
                    let stem = format!("{}-{}", r.name, r.version);
                    if file == format!("{stem}.crate")
                        && rest.starts_with(
                            &index_path(&r.name)[..index_path(&r.name).rfind('/').unwrap_or(0)],
                        )
                    {
                        return (
                            [(http::header::CONTENT_TYPE, "application/gzip")],
                            r.file.clone(),
                        )
                            .into_response();
                    }
                }
            }
        }
        (http::StatusCode::NOT_FOUND, "not found").into_response()
    }
}
