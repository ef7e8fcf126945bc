//! `cairn prefetch --lockfile FILE…`: warm a node's cache with everything the lockfiles pin,
//! metadata included, by asking the node for it through its own routes exactly as the clients
//! would (so everything is verified and indexed by the node, whether it runs as `serve` or, when
//! none answers, in this process). Each downloaded file is also checked here against the
//! lockfile's own digest, which catches a lockfile that disagrees with its registry. Python
//! entries take the files that suit a `Target` (`cairn_pypi::select`); a requirement without
//! hashes (`pip freeze`) takes the file the index page lists, checked against the page's digest.

use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Instant;

use anyhow::{Result, bail};
use cairn_mirror::cid::{Algorithm, Digest, Hasher};
use cairn_pypi::tags::Target;
use futures_util::StreamExt;
use url::Url;

use crate::lockfiles::Item;

/// Files in flight at once.
const PARALLEL: usize = 8;

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
    async fn get(
        &self,
        path: &str,
        accept: Option<&str>,
        digest: Option<&Digest>,
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
            match hasher.as_mut() {
                Some(h) => h.update(&chunk),
                None => kept.extend_from_slice(&chunk),
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

/// Fetch every item through the node at `base`; `apt` holds apt pool files already resolved
/// (archive, path, digest). Prints a summary; fails naming each item that failed. `log`, the
/// in-process node's log, is written around the progress bar while it shows.
pub async fn run(
    base: Url,
    items: Vec<Item>,
    apt: Vec<(String, String, Digest)>,
    log: Option<&crate::barlog::BarLog>,
    target: Option<&Target>,
) -> Result<()> {
    let node = Arc::new(Node {
        client: reqwest::Client::builder()
            // A body ends only once the node has indexed the file, so an export right after
            // the prefetch finds everything it fetched.
            .default_headers(
                [(
                    reqwest::header::HeaderName::from_static(cairn_mirror::server::WAIT_HEADER),
                    reqwest::header::HeaderValue::from_static("committed"),
                )]
                .into_iter()
                .collect(),
            )
            .build()
            .map_err(|e| anyhow::anyhow!("HTTP client: {e}"))?,
        base,
        bytes: AtomicU64::new(0),
    });
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
