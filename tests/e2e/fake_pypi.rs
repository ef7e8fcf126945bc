//! An in-process fake PyPI: a simple index (PEP 691 JSON, or PEP 503 HTML when asked) on one
//! port and the files on another (a separate file host, as real indexes have). Wheels are real:
//! built by the machine's python3 with a proper `RECORD`, so pip and uv install them. Requests
//! are counted and faults injected by the shared fake upstream (`fake_upstream.rs`).

use std::path::Path;
use std::process::Command;
use std::sync::Arc;

use axum::response::{IntoResponse, Response};
use bytes::Bytes;
use sha2::Digest as _;

use crate::fake_upstream::{FakeUpstream, Faults, Request, Routes};

/// Builds `{dist}-{version}-{tag}.whl` with a package that records its own version and tag.
const BUILD_WHEEL: &str = r#"
import base64, hashlib, sys, zipfile
out, name, version, tag = sys.argv[1], sys.argv[2], sys.argv[3], sys.argv[4]
requires = sys.argv[5:]
dist = name.replace("-", "_")
module = dist.lower()
info = f"{dist}-{version}.dist-info"
files = {
    f"{module}/__init__.py": f"VERSION = {version!r}\nTAG = {tag!r}\n",
    f"{info}/METADATA": "Metadata-Version: 2.1\nName: " + name + "\nVersion: " + version + "\n"
        + "".join(f"Requires-Dist: {r}\n" for r in requires),
    f"{info}/WHEEL": "Wheel-Version: 1.0\nGenerator: cairn-e2e\nRoot-Is-Purelib: true\nTag: " + tag + "\n",
}
record = []
with zipfile.ZipFile(out, "w", zipfile.ZIP_DEFLATED) as z:
    for path, text in files.items():
        data = text.encode()
        digest = base64.urlsafe_b64encode(hashlib.sha256(data).digest()).rstrip(b"=").decode()
        record.append(f"{path},sha256={digest},{len(data)}")
        z.writestr(path, data)
    record.append(f"{info}/RECORD,,")
    z.writestr(f"{info}/RECORD", "\n".join(record) + "\n")
"#;

/// One file of a release.
#[derive(Clone)]
pub struct File {
    pub project: String,
    pub filename: String,
    pub bytes: Bytes,
    pub yanked: Option<String>,
    /// Its PEP 700 `upload-time` (RFC 3339), when the test sets one; else a January date.
    pub uploaded: Option<String>,
}

impl File {
    pub fn sha256(&self) -> String {
        hex::encode(sha2::Sha256::digest(&self.bytes))
    }

    /// Its version, from its name (`NAME-VERSION-…` or `NAME-VERSION.tar.gz`).
    pub fn version(&self) -> &str {
        let stem = self.filename.trim_end_matches(".tar.gz");
        stem.split('-').nth(1).unwrap_or_default()
    }

    /// Where the index publishes its PEP 740 provenance, below the index's origin.
    pub fn provenance_path(&self) -> String {
        format!(
            "integrity/{}/{}/{}/provenance",
            self.project,
            self.version(),
            self.filename
        )
    }

    /// The provenance document the index serves for it: its shape, with a stand-in bundle.
    pub fn provenance(&self) -> serde_json::Value {
        serde_json::json!({
            "version": 1,
            "attestation_bundles": [{
                "publisher": {"kind": "GitHub", "repository": "example/project", "workflow": "release.yml"},
                "attestations": [{"version": 1, "envelope": {"statement": "e30=", "signature": "c2ln"},
                                  "verification_material": {"certificate": "Y2VydA==", "transparency_entries": []}}],
            }],
        })
    }
}

/// Normalised project name (PEP 503).
fn normalize(name: &str) -> String {
    let mut out = String::new();
    for c in name.chars() {
        if matches!(c, '-' | '_' | '.') {
            if !out.ends_with('-') {
                out.push('-');
            }
        } else {
            out.push(c.to_ascii_lowercase());
        }
    }
    out
}

#[derive(Default, Clone)]
pub struct Index {
    files: Vec<File>,
    /// Projects marked quarantined (PEP 792) on their pages.
    quarantined: Vec<String>,
}

impl Index {
    /// Publish a wheel of `name` `version` requiring `requires`, built in `work`.
    pub fn wheel(
        &mut self,
        work: &Path,
        name: &str,
        version: &str,
        requires: &[&str],
        yanked: Option<&str>,
    ) -> &mut Self {
        self.build(work, name, version, "py3-none-any", requires, yanked)
    }

    /// Publish a wheel of `name` `version` tagged `tag` (`cp311-cp311-manylinux_2_17_x86_64`).
    pub fn wheel_tagged(&mut self, work: &Path, name: &str, version: &str, tag: &str) -> &mut Self {
        self.build(work, name, version, tag, &[], None)
    }

    /// Publish an sdist `{name}-{version}.tar.gz` (a `PKG-INFO`, enough to be listed and fetched).
    pub fn sdist(&mut self, name: &str, version: &str) -> &mut Self {
        let root = format!("{name}-{version}");
        let pkg_info = format!("Metadata-Version: 2.1\nName: {name}\nVersion: {version}\n");
        self.files.push(File {
            project: normalize(name),
            filename: format!("{root}.tar.gz"),
            bytes: crate::support::targz([(format!("{root}/PKG-INFO"), pkg_info.into_bytes())]),
            yanked: None,
            uploaded: None,
        });
        self
    }

    fn build(
        &mut self,
        work: &Path,
        name: &str,
        version: &str,
        tag: &str,
        requires: &[&str],
        yanked: Option<&str>,
    ) -> &mut Self {
        std::fs::create_dir_all(work).expect("work dir");
        let filename = format!("{}-{version}-{tag}.whl", name.replace('-', "_"));
        let out = work.join(&filename);
        let status = Command::new("python3")
            .args(["-c", BUILD_WHEEL])
            .arg(&out)
            .args([name, version, tag])
            .args(requires)
            .status()
            .expect("python3 must be installed");
        assert!(status.success(), "building {filename}");
        self.files.push(File {
            project: normalize(name),
            filename,
            bytes: Bytes::from(std::fs::read(&out).expect("wheel")),
            yanked: yanked.map(str::to_owned),
            uploaded: None,
        });
        self
    }

    /// Date the file published last: `uploaded` (RFC 3339).
    pub fn uploaded_at(&mut self, uploaded: &str) -> &mut Self {
        if let Some(last) = self.files.last_mut() {
            last.uploaded = Some(uploaded.to_owned());
        }
        self
    }

    /// Mark `project`'s page quarantined (PEP 792); its files stay listed, as a lax index
    /// would leave them.
    pub fn quarantine(&mut self, project: &str) -> &mut Self {
        self.quarantined.push(normalize(project));
        self
    }

    pub fn files(&self) -> &[File] {
        &self.files
    }

    pub fn file(&self, filename: &str) -> &File {
        self.files
            .iter()
            .find(|f| f.filename == filename)
            .expect("published file")
    }
}

/// The simple index routes (pages origin) and the files (files origin).
struct Simple {
    /// The pages' origin, where the Integrity API lives too.
    index_origin: String,
    files_url: String,
    index: Arc<Index>,
    /// The `Authorization` value every request must carry (a private index), if any.
    required: Option<String>,
}

/// A running fake index.
pub struct FakePypi {
    /// The simple index URL (ends in `/`).
    pub simple_url: String,
    pub faults: Arc<Faults>,
    upstream: FakeUpstream,
    index: Arc<Index>,
}

impl FakePypi {
    pub fn start(index: Index) -> FakePypi {
        let index = Arc::new(index);
        let upstream = FakeUpstream::start(2, |origins| Simple {
            index_origin: origins[0].clone(),
            files_url: format!("{}packages/", origins[1]),
            index: index.clone(),
            required: None,
        });
        FakePypi {
            simple_url: format!("{}simple/", upstream.origins[0]),
            faults: upstream.faults.clone(),
            upstream,
            index,
        }
    }

    /// A private index, as private indexes are usually set up: pages and files on one origin,
    /// every request without `Authorization: REQUIRED` answered `401`.
    pub fn start_guarded(index: Index, required: &str) -> FakePypi {
        let index = Arc::new(index);
        let upstream = FakeUpstream::start(1, |origins| Simple {
            index_origin: origins[0].clone(),
            files_url: format!("{}packages/", origins[0]),
            index: index.clone(),
            required: Some(required.to_owned()),
        });
        FakePypi {
            simple_url: format!("{}simple/", upstream.origins[0]),
            faults: upstream.faults.clone(),
            upstream,
            index,
        }
    }

    /// Every request path seen, as sent.
    pub fn requests(&self) -> Vec<String> {
        self.upstream.requests()
    }

    pub fn index(&self) -> &Index {
        &self.index
    }

    pub fn tamper(&self, filename: &str) {
        self.faults.tamper(filename);
    }

    pub fn hits(&self, path: &str) -> usize {
        self.upstream.hits(path)
    }

    pub fn total_hits(&self) -> usize {
        self.upstream.total_hits()
    }
}

fn page_json(shared: &Simple, project: &str) -> serde_json::Value {
    let files: Vec<serde_json::Value> = shared
        .index
        .files
        .iter()
        .filter(|f| f.project == project)
        .map(|f| {
            serde_json::json!({
                "filename": f.filename,
                "url": format!("{}{}/{}", shared.files_url, &f.sha256()[..8], f.filename),
                "hashes": { "sha256": f.sha256() },
                "requires-python": ">=3.8",
                "size": f.bytes.len(),
                "upload-time": f.uploaded.clone().unwrap_or_else(|| "2026-01-02T03:04:05.000000Z".to_owned()),
                "yanked": f.yanked.clone().map_or(serde_json::Value::Bool(false), Into::into),
                "provenance": format!("{}{}", shared.index_origin, f.provenance_path()),
            })
        })
        .collect();
    let mut page = serde_json::json!({ "meta": { "api-version": "1.1", "_last-serial": 7 }, "name": project, "versions": ["x"], "files": files });
    if shared.index.quarantined.iter().any(|q| q == project) {
        page["project-status"] = serde_json::json!({ "status": "quarantined" });
    }
    page
}

fn page_html(shared: &Simple, project: &str) -> String {
    let mut out = String::from("<!DOCTYPE html><html><body>\n");
    for f in shared.index.files.iter().filter(|f| f.project == project) {
        let yanked = f
            .yanked
            .as_ref()
            .map_or(String::new(), |r| format!(" data-yanked=\"{r}\""));
        out.push_str(&format!(
            "<a href=\"{}{}/{}#sha256={}\" data-requires-python=\"&gt;=3.8\"{yanked}>{}</a><br/>\n",
            shared.files_url,
            &f.sha256()[..8],
            f.filename,
            f.sha256(),
            f.filename
        ));
    }
    out.push_str("</body></html>\n");
    out
}

impl Routes for Simple {
    fn answer(&self, request: &Request) -> Response {
        if let Some(refused) = crate::fake_upstream::unauthorized(
            request,
            self.required.as_deref(),
            "Basic realm=\"fake\"",
        ) {
            return refused;
        }
        let path = request.path.as_str();
        if let Some(project) = path
            .strip_prefix("simple/")
            .and_then(|p| p.strip_suffix('/'))
        {
            if !self.index.files.iter().any(|f| f.project == project) {
                return (http::StatusCode::NOT_FOUND, "no such project").into_response();
            }
            let wants_json = request
                .headers
                .get(http::header::ACCEPT)
                .and_then(|v| v.to_str().ok())
                .is_some_and(|a| a.contains("vnd.pypi.simple.v1+json"));
            return if wants_json {
                (
                    [(
                        http::header::CONTENT_TYPE,
                        "application/vnd.pypi.simple.v1+json",
                    )],
                    page_json(self, project).to_string(),
                )
                    .into_response()
            } else {
                (
                    [(http::header::CONTENT_TYPE, "text/html")],
                    page_html(self, project),
                )
                    .into_response()
            };
        }
        if path.starts_with("integrity/")
            && let Some(f) = self
                .index
                .files
                .iter()
                .find(|f| f.provenance_path() == path)
        {
            return (
                [(
                    http::header::CONTENT_TYPE,
                    "application/vnd.pypi.integrity.v1+json",
                )],
                f.provenance().to_string(),
            )
                .into_response();
        }
        if let Some(rest) = path.strip_prefix("packages/") {
            let filename = rest.rsplit('/').next().unwrap_or_default();
            if let Some(f) = self.index.files.iter().find(|f| f.filename == filename) {
                return (
                    [(http::header::CONTENT_TYPE, "application/octet-stream")],
                    f.bytes.clone(),
                )
                    .into_response();
            }
        }
        (http::StatusCode::NOT_FOUND, "not found").into_response()
    }
}
