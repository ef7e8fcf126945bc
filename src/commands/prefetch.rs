//! `cairn prefetch --lockfile FILE…`: warm a node's cache with everything the lockfiles pin,
//! metadata included, by asking the node for it through its own routes exactly as the clients
//! would (so everything is verified and indexed by the node, whether it runs as `serve` or, when
//! none answers, in this process). Each downloaded file is also checked here against the
//! lockfile's own digest, which catches a lockfile that disagrees with its registry. Python
//! entries take the files that suit a `Target` (`cairn_pypi::select`); a requirement without
//! hashes (`pip freeze`) takes the file the index page lists, checked against the page's digest.
//!
//! apt package lists name packages, not files: for them the node's `InRelease` of every suite
//! of the apt sources is read, the indexes `apt-get update` fetches are fetched through it (so
//! an export carries them all), and the packages are resolved against its `Packages` files.
//! Everything comes from the node over HTTP: no data directory is read.

use std::net::SocketAddr;
use std::path::PathBuf;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, Instant};

use anyhow::{Context as _, Result, bail};
use cairn_mirror::cid::{Algorithm, Digest, Hasher};
use cairn_pypi::tags::Target;
use futures_util::StreamExt;
use url::Url;

use super::serve;
use crate::apt::{self, AptSuite};
use crate::cli::{Common, Serve};
use crate::lockfiles::Item;
use crate::settings::{self, FileSettings};

/// Files in flight at once.
const PARALLEL: usize = 8;
/// The largest body kept in memory: a document, or an apt `Packages` file as served
/// (compressed; Debian's largest is about a tenth of this).
const MAX_KEPT: u64 = 256 << 20;

/// One file to fetch: a request path below the node and the digest it must have.
struct Fetch {
    path: String,
    digest: Option<Digest>,
}

/// Client for the node at `base` (`http://HOST:PORT/`).
struct Node {
    client: reqwest::Client,
    base: Url,
    bytes: AtomicU64,
}

impl Node {
    fn url(&self, path: &str) -> Result<Url, String> {
        self.base.join(path).map_err(|e| format!("{path}: {e}"))
    }

    /// GET `path` (an absolute URL, or a path below the node), checking the body's digest.
    /// The body is returned when there is no digest to check, else empty.
    async fn get(
        &self,
        path: &str,
        accept: Option<&str>,
        digest: Option<&Digest>,
    ) -> Result<Vec<u8>, String> {
        self.fetch(path, accept, digest, digest.is_none(), MAX_KEPT)
            .await
    }

    /// GET `path`, checking its digest if one is given, and returning the body (at most
    /// `limit` bytes) when `keep`.
    async fn fetch(
        &self,
        path: &str,
        accept: Option<&str>,
        digest: Option<&Digest>,
        keep: bool,
        limit: u64,
    ) -> Result<Vec<u8>, String> {
        let url = self.url(path)?;
        let mut request = self.client.get(url.clone());
        if let Some(accept) = accept {
            request = request.header("accept", accept);
        }
        let response = request.send().await.map_err(|e| format!("{url}: {e}"))?;
        let status = response.status();
        if !status.is_success() {
            let body = response.text().await.unwrap_or_default();
            return Err(format!("{url}: {status} {}", body.trim()));
        }
        let mut hasher = digest.map(|d| Hasher::new(d.algorithm()));
        let mut kept = Vec::new();
        let mut stream = response.bytes_stream();
        while let Some(chunk) = stream.next().await {
            let chunk = chunk.map_err(|e| format!("{url}: {e}"))?;
            self.bytes.fetch_add(chunk.len() as u64, Ordering::Relaxed);
            if let Some(h) = hasher.as_mut() {
                h.update(&chunk);
            }
            if keep {
                if kept.len() as u64 + chunk.len() as u64 > limit {
                    return Err(format!("{url}: larger than {limit} bytes"));
                }
                kept.extend_from_slice(&chunk);
            }
        }
        if let (Some(hasher), Some(expected)) = (hasher, digest) {
            let got = hasher.finish();
            if got != *expected {
                return Err(format!(
                    "{url}: the lockfile says {expected}, the node served {got}"
                ));
            }
        }
        Ok(kept)
    }
}

/// The requests that fetch one lockfile item (metadata first), and the files chosen for it when
/// there was a choice to make (PyPI).
async fn plan(
    node: &Node,
    item: &Item,
    target: Option<&Target>,
) -> Result<(Vec<Fetch>, Vec<String>), String> {
    let fetch = |path: String, digest: Option<Digest>| Fetch { path, digest };
    if let Item::Pypi(l) = item {
        return plan_pypi(node, l, target).await;
    }
    Ok((
        match item {
            Item::Npm(l) => {
                let file = l.name.rsplit('/').next().unwrap_or(&l.name);
                vec![
                    fetch(format!("npm/{}", l.name), None),
                    fetch(
                        format!("npm/{}/-/{file}-{}.tgz", l.name, l.version),
                        Some(l.integrity.clone()),
                    ),
                ]
            }
            Item::Cargo(l) => vec![
                fetch("cargo/index/config.json".into(), None),
                fetch(
                    format!("cargo/index/{}", cairn_cargo::index::index_path(&l.name)),
                    None,
                ),
                fetch(
                    format!("cargo/crates/{}/{}/download", l.name, l.version),
                    Some(l.checksum.clone()),
                ),
            ],
            Item::Pypi(_) | Item::Apt(_) => Vec::new(),
        },
        Vec::new(),
    ))
}

/// A Python requirement: its page (as JSON), the files of it the lockfile names (by hash and
/// name when it gives them), the ones `target` takes, each checked against the lockfile's
/// digest, else the page's.
async fn plan_pypi(
    node: &Node,
    l: &cairn_pypi::lockfile::Locked,
    target: Option<&Target>,
) -> Result<(Vec<Fetch>, Vec<String>), String> {
    let page = format!("pypi/simple/{}/", cairn_pypi::name::normalize(&l.project));
    let body = node
        .get(&page, Some("application/vnd.pypi.simple.v1+json"), None)
        .await?;
    let json: serde_json::Value =
        serde_json::from_slice(&body).map_err(|e| format!("{page}: {e}"))?;
    let mut listed: Vec<(&str, &str, Digest)> = Vec::new();
    for file in json["files"].as_array().into_iter().flatten() {
        let (Some(name), Some(url), Some(sha)) = (
            file["filename"].as_str(),
            file["url"].as_str(),
            file["hashes"]["sha256"].as_str(),
        ) else {
            continue; // a file without a sha256 cannot be verified
        };
        let Some(digest) = hex::decode(sha)
            .ok()
            .and_then(|b| Digest::new(Algorithm::Sha256, b).ok())
        else {
            continue;
        };
        if !l.sha256.is_empty() && !l.sha256.contains(&digest) {
            continue;
        }
        if !l.filenames.is_empty() && !l.filenames.iter().any(|f| f == name) {
            continue;
        }
        listed.push((name, url, digest));
    }
    if listed.is_empty() && !l.sha256.is_empty() {
        return Err(format!(
            "{page}: no file there has a hash the lockfile gives for {}=={}",
            l.project, l.version
        ));
    }
    let names: Vec<&str> = listed.iter().map(|(n, _, _)| *n).collect();
    let chosen =
        cairn_pypi::select::select(l, &names, target).map_err(|e| format!("{page}: {e}"))?;
    let mut out = Vec::new();
    for (name, url, digest) in listed.iter().filter(|(n, _, _)| chosen.contains(n)) {
        out.push(Fetch {
            path: (*url).to_owned(),
            digest: Some(digest.clone()),
        });
        if name.ends_with(".whl") {
            // pip and uv ask for PEP 658 metadata before the wheel.
            out.push(Fetch {
                path: format!("{url}.metadata"),
                digest: None,
            });
        }
    }
    Ok((out, chosen.iter().map(|c| (*c).to_owned()).collect()))
}

/// What apt package lists are resolved against: the suites of the machines' sources, and the
/// architectures whose indexes their `apt-get update` fetches.
pub struct AptScope {
    pub suites: Vec<AptSuite>,
    pub architectures: Vec<String>,
}

/// The pool files a `Packages` index of an archive lists.
type ArchiveFiles = (String, Vec<cairn_apt::packages::PoolFile>);

/// Fetch, through the node, the `InRelease` of every suite of `scope` and the indexes
/// `apt-get update` fetches for it (each checked against the `InRelease`); then resolve
/// `wanted` against the `Packages` files among them: (archive, pool path, digest) of each.
async fn apt_files(
    node: &Arc<Node>,
    scope: &AptScope,
    wanted: &[cairn_apt::lockfile::Wanted],
) -> Result<Vec<(String, String, Digest)>> {
    let mut fetches: Vec<(String, String, bool, Digest)> = Vec::new();
    let mut failures = Vec::new();
    for suite in &scope.suites {
        let path = format!("apt/{}/dists/{}/InRelease", suite.archive, suite.suite);
        let release = match node.get(&path, None, None).await.and_then(|body| {
            let text =
                cairn_apt::indexes::signed_text(&body).map_err(|e| format!("{path}: {e}"))?;
            cairn_apt::release::Release::parse(&text).map_err(|e| format!("{path}: {e}"))
        }) {
            Ok(release) => release,
            Err(e) => {
                failures.push(e);
                continue;
            }
        };
        for file in cairn_apt::indexes::update_indexes(
            &release,
            &suite.components,
            &scope.architectures,
            suite.sources,
        ) {
            let digest = Digest::new(Algorithm::Sha256, file.sha256.to_vec())
                .map_err(|e| anyhow::anyhow!("{path}: {}: {e}", file.path))?;
            let is_packages = file.path.contains("/binary-")
                && file
                    .path
                    .rsplit('/')
                    .next()
                    .is_some_and(|f| f.starts_with("Packages"));
            fetches.push((
                suite.archive.clone(),
                format!("apt/{}/dists/{}/{}", suite.archive, suite.suite, file.path),
                is_packages,
                digest,
            ));
        }
    }
    let results: Vec<Result<Option<ArchiveFiles>, String>> = futures_util::stream::iter(fetches)
        .map(|(archive, path, is_packages, digest)| {
            let node = node.clone();
            async move {
                let body = node
                    .fetch(&path, None, Some(&digest), is_packages, MAX_KEPT)
                    .await?;
                if !is_packages {
                    return Ok(None);
                }
                let files =
                    tokio::task::spawn_blocking(move || cairn_apt::packages::read(body.as_slice()))
                        .await
                        .map_err(|e| format!("{path}: {e}"))?
                        .map_err(|e| format!("{path}: {e}"))?;
                Ok(Some((archive, files)))
            }
        })
        .buffer_unordered(PARALLEL)
        .collect()
        .await;
    let mut listed = Vec::new();
    let mut archive_of = std::collections::HashMap::new();
    for result in results {
        match result {
            Ok(Some((archive, files))) => {
                for f in files {
                    archive_of.insert(f.filename.clone(), archive.clone());
                    listed.push(f);
                }
            }
            Ok(None) => {}
            Err(e) => failures.push(e),
        }
    }
    if !failures.is_empty() {
        bail!(
            "{} apt indexes could not be fetched through the node (are these the suites it \
             serves? see --apt-sources):\n{}",
            failures.len(),
            failures.join("\n")
        );
    }
    let found = cairn_apt::lockfile::resolve("package lists", wanted, &listed)?;
    found
        .into_iter()
        .map(|f| {
            let digest = Digest::new(Algorithm::Sha256, f.sha256.to_vec())
                .map_err(|e| anyhow::anyhow!("{}: {e}", f.filename))?;
            let archive = archive_of.get(&f.filename).cloned().unwrap_or_default();
            Ok((archive, f.filename.clone(), digest))
        })
        .collect()
}

/// Fetch every item through the node at `base`, apt package lists resolved within `apt`.
/// Prints a summary; fails naming each item that failed. `log`, the in-process node's log, is
/// written around the progress bar while it shows; `target` chooses Python files.
pub async fn run(
    base: Url,
    items: Vec<Item>,
    apt: Option<AptScope>,
    log: Option<&crate::barlog::BarLog>,
    target: Option<&Target>,
    mut headers: reqwest::header::HeaderMap,
) -> Result<()> {
    // A body ends only once the node has indexed the file, so an export right after the
    // prefetch finds everything it fetched.
    headers.insert(
        reqwest::header::HeaderName::from_static(cairn_mirror::http::WAIT_HEADER),
        reqwest::header::HeaderValue::from_static("committed"),
    );
    let node = Arc::new(Node {
        client: reqwest::Client::builder()
            .default_headers(headers)
            .build()
            .map_err(|e| anyhow::anyhow!("HTTP client: {e}"))?,
        base,
        bytes: AtomicU64::new(0),
    });
    let wanted = crate::lockfiles::apt_wanted(&items);
    let apt = match apt {
        Some(scope) if !wanted.is_empty() => apt_files(&node, &scope, &wanted).await?,
        _ => Vec::new(),
    };
    let mut jobs: Vec<(String, Option<Item>, Vec<Fetch>)> = items
        .into_iter()
        .filter(|i| !matches!(i, Item::Apt(_)))
        .map(|i| (i.describe(), Some(i), Vec::new()))
        .collect();
    for (archive, path, digest) in apt {
        jobs.push((
            format!("apt {archive} {path}"),
            None,
            vec![Fetch {
                path: format!("apt/{archive}/{path}"),
                digest: Some(digest),
            }],
        ));
    }
    let total = jobs.len() as u64;
    let bar = indicatif::ProgressBar::with_draw_target(
        Some(total),
        indicatif::ProgressDrawTarget::stderr(),
    );
    if let Ok(style) =
        indicatif::ProgressStyle::with_template("prefetch [{bar:30}] {pos}/{len} items {msg}")
    {
        bar.set_style(style.progress_chars("=> "));
    }
    if let Some(log) = log {
        log.attach(&bar);
    }
    let started = Instant::now();
    let results: Vec<Result<Option<String>, String>> = futures_util::stream::iter(jobs)
        .map(|(what, item, fixed)| {
            let (node, bar) = (node.clone(), bar.clone());
            async move {
                let result = async {
                    let (fetches, chosen) = match &item {
                        Some(item) => plan(&node, item, target).await?,
                        None => (fixed, Vec::new()),
                    };
                    for f in fetches {
                        node.get(&f.path, None, f.digest.as_ref()).await?;
                    }
                    Ok::<_, String>(
                        (!chosen.is_empty()).then(|| format!("{what}: {}", chosen.join(", "))),
                    )
                }
                .await;
                let bytes = node.bytes.load(Ordering::Relaxed);
                let secs = started.elapsed().as_secs_f64().max(0.001);
                bar.set_message(format!(
                    "{:.1} MiB, {:.1} MiB/s",
                    bytes as f64 / 1048576.0,
                    bytes as f64 / 1048576.0 / secs
                ));
                bar.inc(1);
                result.map_err(|e| format!("{what}: {e}"))
            }
        })
        .buffer_unordered(PARALLEL)
        .collect()
        .await;
    bar.finish_and_clear();
    if let Some(log) = log {
        log.detach();
    }
    let mut chosen: Vec<&String> = results
        .iter()
        .filter_map(|r| r.as_ref().ok()?.as_ref())
        .collect();
    chosen.sort();
    for line in chosen {
        eprintln!("{line}");
    }
    let failures: Vec<&String> = results.iter().filter_map(|r| r.as_ref().err()).collect();
    let bytes = node.bytes.load(Ordering::Relaxed);
    eprintln!(
        "prefetched {} of {total} items ({:.1} MiB) in {:.1} s",
        total - failures.len() as u64,
        bytes as f64 / 1048576.0,
        started.elapsed().as_secs_f64()
    );
    if !failures.is_empty() {
        let failures: Vec<&str> = failures.iter().map(|f| f.as_str()).collect();
        bail!("{} items failed:\n{}", failures.len(), failures.join("\n"));
    }
    Ok(())
}

/// `cairn prefetch`: through the node at `url` (or `--listen`) when one answers, else through a
/// node run in this process for the purpose, with the same settings `serve` would use. Only
/// that second case opens a data directory.
pub async fn command(
    common: &Common,
    file: &FileSettings,
    lockfiles: Vec<String>,
    url: Option<Url>,
    python: &crate::pytarget::PythonTargetArgs,
    apt_sources: &[PathBuf],
) -> Result<()> {
    let items = crate::lockfiles::read_all(&lockfiles)?;
    let target = pypi_target(&items, python)?;
    let apt = if items.iter().any(|i| matches!(i, Item::Apt(_))) {
        Some(AptScope {
            suites: apt::suites(apt_sources, std::path::Path::new(apt::APT_ETC))?,
            architectures: apt::machine_architectures(),
        })
    } else {
        None
    };
    let listen = settings::listen(common.listen.as_deref(), file)?;
    let base = match &url {
        Some(url) => url.clone(),
        None => Url::parse(&format!("http://{listen}/")).context("node URL")?,
    };
    let answers = tokio::time::timeout(
        Duration::from_secs(2),
        reqwest::get(base.join("healthz").context("node URL")?),
    )
    .await
    .is_ok_and(|r| r.is_ok_and(|r| r.status().is_success()));
    if answers {
        let data_dir = settings::data_dir(common.data_dir.as_deref(), file);
        let headers = super::local_node::token_headers(&data_dir)?;
        return run(base, items, apt, None, target.as_ref(), headers).await;
    }
    if url.is_some() {
        // A node named explicitly is the one to warm: another one's data directory is not.
        anyhow::bail!("no Cairn node answers at {base} (GET /healthz)");
    }
    // No node there: run one here, on a free port, for the prefetch. Its log is for trouble
    // (warnings and errors, unless CAIRN_LOG says otherwise), written around the progress bar.
    let log = crate::barlog::BarLog::default();
    crate::logging::init_to("text", "warn,libp2p_kad::behaviour=error", log.clone()).ok();
    let local: SocketAddr = "127.0.0.1:0".parse().context("address")?;
    let mirror = serve::open_mirror(common, file, &Serve::default(), &listen, None).await?;
    let listener = tokio::net::TcpListener::bind(local)
        .await
        .context("cannot listen on 127.0.0.1")?;
    let bound = listener.local_addr().context("listen address")?;
    let serving = mirror.serve(listener, serve::connection_limits(file, &Serve::default())?);
    let base = Url::parse(&format!("http://{bound}/")).context("node URL")?;
    let result = run(
        base,
        items,
        apt,
        Some(&log),
        target.as_ref(),
        reqwest::header::HeaderMap::new(),
    )
    .await;
    serving
        .shutdown(Duration::from_secs(10))
        .await
        .context("closing the store")?;
    result
}

/// The Python target for `items`, said on stderr; not probed when no item is PyPI's.
fn pypi_target(
    items: &[Item],
    python: &crate::pytarget::PythonTargetArgs,
) -> Result<Option<cairn_pypi::tags::Target>> {
    if !items.iter().any(|i| matches!(i, Item::Pypi(_))) {
        return Ok(None);
    }
    let target = python.target()?;
    match &target {
        Some(t) => eprintln!("pypi: files for {}", cairn_pypi::select::describe(t)),
        None => eprintln!("pypi: every file the lockfiles name (--all-platforms)"),
    }
    Ok(target)
}
