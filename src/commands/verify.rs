//! `cairn verify [--repair] [--json]`: read every stored file again and check it (the store's
//! `check_artifact`: an artifact against its flat CID and its DAG; a metadata block against
//! its CID). The reading happens here, beside a running node or not, one file at a time; a
//! file found damaged is handed to whoever can drop it:
//!
//! - the node answering at `--listen` (`POST /api/v1/repair/…`, loopback only), which checks it
//!   again, drops it from its memory caches and its announcements too, and with `--repair`
//!   fetches it again through its peers and upstream;
//! - with `--repair` and no node: an engine run in this process with `serve`'s settings
//!   (upstreams only: the swarm is reached through a running node);
//! - else the data directory itself, as its owner.
//!
//! A damaged file is moved aside and its rows dropped, so it is never served again (the next
//! request fetches it again). The run's report is kept in the index for `cairn status`; the
//! exit status is non-zero while any damage found is not repaired. The reading runs at the
//! lowest CPU priority.

use std::time::{Duration, Instant};

use anyhow::{Context, Result, bail};
use cairn_mirror::cid::{BlockCid, FlatCid};
use cairn_mirror::store::{Checked, DamagedFile, Store};
use cairn_mirror::{Mirror, RepairReport, RepairedKey, VERIFY_JOB, VerifyReport};
use tokio::sync::mpsc;

use super::local_node::LocalNode;
use super::serve;
use crate::cli::{Common, Serve};
use crate::settings::{self, FileSettings};

/// Artifact files listed from the index at a time.
const PAGE: usize = 1000;
/// How long a node has to answer one repair (a fetch again of a large file included).
const REPAIR_TIMEOUT: Duration = Duration::from_secs(30 * 60);

/// A stored file the scan found damaged (why is said again by whoever drops it, after its
/// own check).
enum Found {
    Artifact(FlatCid),
    Document(BlockCid),
}

/// Who drops (and repairs) a damaged file.
enum Fixer {
    Node(LocalNode),
    Engine(Mirror),
    Store(Store),
}

pub async fn run(common: &Common, file: &FileSettings, repair: bool, json: bool) -> Result<()> {
    let data_dir = settings::data_dir(common.data_dir.as_deref(), file);
    if !data_dir.join("index.sqlite3").exists() {
        bail!("no Cairn store in {}", data_dir.display());
    }
    let listen = settings::listen(common.listen.as_deref(), file)?;
    let fixer = match LocalNode::find(listen, &data_dir, REPAIR_TIMEOUT).await? {
        Some(node) => Fixer::Node(node),
        None if repair => {
            let mirror = serve::open_mirror(common, file, &Serve::default(), &listen, None)
                .await
                .context("no node answers at --listen: starting one in this process to repair")?;
            Fixer::Engine(mirror)
        }
        None => {
            let dir = data_dir.clone();
            let store = tokio::task::spawn_blocking(move || Store::open(&dir))
                .await
                .context("opening the store")?
                .with_context(|| {
                    format!(
                        "no node answers at {listen}, and the data directory {} cannot be \
                         opened to verify it directly",
                        data_dir.display()
                    )
                })?;
            Fixer::Store(store)
        }
    };
    let store = match &fixer {
        Fixer::Store(store) => store.clone(),
        _ => {
            let dir = data_dir.clone();
            tokio::task::spawn_blocking(move || Store::attach(&dir))
                .await
                .context("opening the store")?
                .with_context(|| format!("cannot open the store in {}", data_dir.display()))?
        }
    };

    let started = Instant::now();
    let bar = {
        let store = store.clone();
        let (_, bytes) = tokio::task::spawn_blocking(move || store.index().held_artifact_count())
            .await
            .context("counting the held files")??;
        progress_bar(bytes)
    };
    let (found_tx, mut found_rx) = mpsc::channel::<Found>(16);
    let scan = {
        let (store, bar) = (store.clone(), bar.clone());
        tokio::task::spawn_blocking(move || scan(&store, &bar, &found_tx))
    };
    let mut report = VerifyReport::default();
    while let Some(found) = found_rx.recv().await {
        let (what, result) = match &found {
            Found::Artifact(flat) => (
                format!("artifact {flat}"),
                fixer.artifact(flat, repair).await,
            ),
            Found::Document(cid) => (format!("document {cid}"), fixer.document(cid, repair).await),
        };
        let damaged = result.with_context(|| format!("dropping the damaged {what}"))?;
        if damaged.damage.is_some() {
            bar.suspend(|| eprintln!("{}", describe(&damaged)));
            if damaged.repaired() {
                report.repaired += 1;
            } else {
                report.remaining += 1;
            }
            report.damaged.push(damaged);
        }
    }
    let (files, bytes, documents) = scan.await.context("verify")??;
    bar.finish_and_clear();
    report.files = files;
    report.bytes = bytes;
    report.documents = documents;
    report.seconds = started.elapsed().as_secs_f64();

    let text = serde_json::to_string_pretty(&report).context("verify report")?;
    {
        let (store, text) = (store.clone(), text.clone());
        tokio::task::spawn_blocking(move || {
            store
                .index()
                .record_run(VERIFY_JOB, cairn_mirror::now_ms(), &text)
        })
        .await
        .context("recording the run")?
        .context("recording the run in the index")?;
    }
    if json {
        println!("{text}");
    } else {
        println!("{}", summary(&report));
    }
    if report.remaining > 0 {
        bail!(
            "{} damaged files are not held any more (run `cairn verify --repair` to fetch them \
             again, or let the next requests do it)",
            report.remaining
        );
    }
    Ok(())
}

/// Check every artifact file, a page at a time, then every metadata block, sending what is
/// damaged to `found`. Files, bytes and documents checked. Blocking; the thread runs at the
/// lowest CPU priority (and so the lowest I/O priority of its class), so that a node serving
/// beside it keeps the machine.
fn scan(
    store: &Store,
    bar: &indicatif::ProgressBar,
    found: &mpsc::Sender<Found>,
) -> Result<(u64, u64, u64)> {
    // On Linux this sets the calling thread's nice value; a failure only costs the node time.
    if let Err(e) = rustix::process::setpriority_process(None, 19) {
        tracing::debug!("cannot lower verify's priority: {e}");
    }
    let (mut files, mut bytes) = (0u64, 0u64);
    let mut after = None;
    loop {
        let page = store
            .index()
            .held_artifacts_after(after.as_ref(), PAGE)
            .context("listing the held files")?;
        let Some(last) = page.last() else { break };
        after = Some(last.flat);
        for held in page {
            let checked = store
                .check_artifact(&held, &mut |n| bar.inc(n))
                .with_context(|| format!("checking artifact {}", held.flat))?;
            files += 1;
            bytes += held.size;
            if let Checked::Damaged(_) = checked
                && found.blocking_send(Found::Artifact(held.flat)).is_err()
            {
                bail!("verify stopped");
            }
        }
    }
    let blocks = store
        .document_block_list()
        .context("listing the metadata blocks")?;
    bar.set_message(format!("{} documents", blocks.len()));
    let mut documents = 0;
    for cid in blocks {
        let checked = store
            .check_document(&cid)
            .with_context(|| format!("checking document {cid}"))?;
        documents += 1;
        if let Checked::Damaged(_) = checked
            && found.blocking_send(Found::Document(cid)).is_err()
        {
            bail!("verify stopped");
        }
    }
    Ok((files, bytes, documents))
}

impl Fixer {
    /// Drop (and with `repair`, fetch again) the artifact `flat`, found damaged (it is checked
    /// again first).
    async fn artifact(&self, flat: &FlatCid, repair: bool) -> Result<RepairReport> {
        match self {
            Fixer::Node(node) => {
                let path = format!("api/v1/repair/artifact/{flat}?fetch={repair}");
                node.call(
                    reqwest::Method::POST,
                    &path,
                    &format!("the repair of {flat}"),
                )
                .await
            }
            Fixer::Engine(mirror) => Ok(mirror.repair_artifact(*flat, repair).await?),
            Fixer::Store(store) => {
                let (store, flat) = (store.clone(), *flat);
                let dropped =
                    tokio::task::spawn_blocking(move || store.forget_if_damaged(&flat)).await??;
                Ok(dropped_report(flat.to_string(), dropped))
            }
        }
    }

    /// Drop (and with `repair`, fetch again) the metadata block `cid`, found damaged (it is
    /// checked again first).
    async fn document(&self, cid: &BlockCid, repair: bool) -> Result<RepairReport> {
        match self {
            Fixer::Node(node) => {
                let path = format!("api/v1/repair/document/{cid}?fetch={repair}");
                node.call(
                    reqwest::Method::POST,
                    &path,
                    &format!("the repair of {cid}"),
                )
                .await
            }
            Fixer::Engine(mirror) => Ok(mirror.repair_document(*cid, repair).await?),
            Fixer::Store(store) => {
                let (store, cid) = (store.clone(), *cid);
                let dropped =
                    tokio::task::spawn_blocking(move || store.forget_document_if_damaged(&cid))
                        .await??;
                Ok(dropped_report(cid.to_string(), dropped))
            }
        }
    }
}

/// The report of a file dropped from the store directly (nothing fetched again).
fn dropped_report(cid: String, dropped: Option<DamagedFile>) -> RepairReport {
    let Some(dropped) = dropped else {
        return RepairReport {
            cid,
            ..RepairReport::default()
        };
    };
    RepairReport {
        cid,
        damage: Some(dropped.why),
        keys: dropped
            .keys
            .into_iter()
            .map(|(ecosystem, key)| RepairedKey {
                ecosystem,
                key,
                repaired: false,
                error: None,
            })
            .collect(),
    }
}

/// One damaged file, for the terminal.
fn describe(report: &RepairReport) -> String {
    let why = report.damage.as_deref().unwrap_or("sound");
    let mut out = format!("damaged: {} ({why})", report.cid);
    for key in &report.keys {
        let done = match (&key.error, key.repaired) {
            (_, true) => "fetched again".to_owned(),
            (Some(error), false) => format!("not fetched again: {error}"),
            (None, false) => "dropped (the next request fetches it again)".to_owned(),
        };
        out.push_str(&format!("\n  {} {}: {done}", key.ecosystem, key.key));
    }
    out
}

/// The run in one line.
fn summary(report: &VerifyReport) -> String {
    let size = cairn_mirror::units::size;
    let rate = report.bytes as f64 / report.seconds.max(1e-3);
    let mut line = format!(
        "verified {} files ({}) and {} documents in {:.1} s ({}/s): ",
        report.files,
        size(report.bytes),
        report.documents,
        report.seconds,
        size(rate as u64),
    );
    if report.damaged.is_empty() {
        line.push_str("no damage");
    } else {
        line.push_str(&format!(
            "{} damaged, {} repaired, {} not held any more",
            report.damaged.len(),
            report.repaired,
            report.remaining
        ));
    }
    line
}

/// A bar of the bytes read, on stderr (hidden when it is not a terminal).
fn progress_bar(total: u64) -> indicatif::ProgressBar {
    let bar = indicatif::ProgressBar::with_draw_target(
        Some(total),
        indicatif::ProgressDrawTarget::stderr(),
    );
    if let Ok(style) = indicatif::ProgressStyle::with_template(
        "verify [{bar:30}] {bytes}/{total_bytes} {binary_bytes_per_sec} {msg}",
    ) {
        bar.set_style(style.progress_chars("=> "));
    }
    bar
}
