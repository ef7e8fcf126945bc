//! `cairn snapshot`, `cairn pin`, `cairn export` and `cairn import`: a node's state as a
//! dag-cbor snapshot, and CAR bundles of it to carry to another node.
//! They act on the store directly, alongside a running `serve` (SQLite WAL; `tmp/` left alone).

use std::collections::HashSet;
use std::path::{Path, PathBuf};
use std::sync::Arc;

use anyhow::{Context, Result, bail};
use cairn_mirror::bundle;
use cairn_mirror::cid::{Algorithm, Digest, FlatCid};
use cairn_mirror::index::Index;
use cairn_mirror::snapshot::{self, Snapshot};
use cairn_mirror::store::Store;
use cid::Cid;

use crate::lockfiles::{self, Item};

/// What `cairn export` writes.
pub enum Selection {
    All,
    Lockfiles(Vec<String>),
    Snapshot(Cid),
}

fn open(data_dir: &Path) -> Result<(Store, Arc<Index>)> {
    let index_path = data_dir.join("index.sqlite3");
    if !index_path.exists() {
        bail!(
            "no Cairn store in {} (run `cairn serve` or `cairn import` first)",
            data_dir.display()
        );
    }
    let store = Store::attach(data_dir)
        .with_context(|| format!("cannot open the store in {}", data_dir.display()))?;
    let index = Index::open(&index_path).context("cannot open the index")?;
    Ok((store, Arc::new(index)))
}

fn bar(total: u64, what: &str) -> indicatif::ProgressBar {
    let bar = indicatif::ProgressBar::with_draw_target(
        Some(total),
        indicatif::ProgressDrawTarget::stderr(),
    );
    if let Ok(style) = indicatif::ProgressStyle::with_template(
        "{msg} [{bar:30}] {bytes}/{total_bytes} {bytes_per_sec} {eta}",
    ) {
        bar.set_style(style.progress_chars("=> "));
    }
    bar.set_message(what.to_owned());
    bar
}

/// The current state's snapshot, stored (so it can be exported or pinned later): its root.
fn take_snapshot(index: &Index) -> Result<(Snapshot, snapshot::Encoded)> {
    let (snapshot, _) = snapshot::collect(index, None).context("reading the index")?;
    let encoded = snapshot.encode();
    index
        .put_blocks(&encoded.blocks)
        .context("storing the snapshot")?;
    Ok((snapshot, encoded))
}

pub fn snapshot(data_dir: &Path) -> Result<()> {
    let (_, index) = open(data_dir)?;
    let (snapshot, encoded) = take_snapshot(&index)?;
    eprintln!(
        "{} documents, {} artifacts",
        snapshot.documents.len(),
        snapshot.artifacts.len()
    );
    println!("{}", encoded.root);
    Ok(())
}

pub fn pin(data_dir: &Path, root: Option<Cid>) -> Result<()> {
    let (_, index) = open(data_dir)?;
    let root = match root {
        Some(root) => {
            if index
                .get_block(&root)
                .context("reading the index")?
                .is_none()
            {
                bail!("{root} is not a snapshot of this node (see `cairn snapshot`)");
            }
            root
        }
        None => take_snapshot(&index)?.1.root,
    };
    index
        .pin(&root, cairn_mirror::now_ms())
        .context("pinning")?;
    println!("pinned {root}");
    Ok(())
}

/// A stored snapshot, read back from the index's blocks.
fn stored_snapshot(index: &Index, root: &Cid) -> Result<(Snapshot, snapshot::Encoded)> {
    let mut blocks = Vec::new();
    let snapshot = Snapshot::decode(root, |cid| {
        let block = index
            .get_block(cid)
            .map_err(|e| e.to_string())?
            .ok_or_else(|| format!("{root} is not a snapshot of this node (no block {cid})"))?;
        blocks.push((*cid, block.clone()));
        Ok(block)
    })
    .map_err(anyhow::Error::msg)?;
    Ok((
        snapshot,
        snapshot::Encoded {
            root: *root,
            blocks,
        },
    ))
}

/// The flat CIDs a set of lockfiles names; apt lists are resolved against the indexes held.
fn lockfile_flats(store: &Store, index: &Index, files: &[String]) -> Result<HashSet<FlatCid>> {
    let items = lockfiles::read_all(files)?;
    let mut flats: HashSet<FlatCid> = items
        .iter()
        .flat_map(Item::digests)
        .map(|d| d.flat_cid())
        .collect();
    let wanted: Vec<cairn_apt::lockfile::Wanted> = items
        .iter()
        .filter_map(|i| match i {
            Item::Apt(w) => Some(w.clone()),
            _ => None,
        })
        .collect();
    if !wanted.is_empty() {
        // What apt-get update asks for, for every suite held, besides the packages.
        flats.extend(crate::apt::held_update_indexes(index)?);
        for (_, file) in crate::apt::resolve_held(store, index, "package lists", &wanted)? {
            let digest = Digest::new(Algorithm::Sha256, file.sha256.to_vec())
                .map_err(|e| anyhow::anyhow!("{}: {e}", file.filename))?;
            flats.insert(digest.flat_cid());
        }
    }
    Ok(flats)
}

pub fn export(data_dir: &Path, selection: Selection, output: &Path) -> Result<()> {
    let (store, index) = open(data_dir)?;
    let (snapshot, encoded) = match selection {
        Selection::All => take_snapshot(&index)?,
        Selection::Snapshot(root) => stored_snapshot(&index, &root)?,
        Selection::Lockfiles(files) => {
            let flats = lockfile_flats(&store, &index, &files)?;
            let (snapshot, missing) =
                snapshot::collect(&index, Some(&flats)).context("reading the index")?;
            if !missing.is_empty() {
                let list: Vec<String> = missing.iter().map(|f| f.to_string()).collect();
                bail!(
                    "{} of the files the lockfiles name are not in this node (run `cairn prefetch` \
                     with the same lockfiles first): {}",
                    missing.len(),
                    list.join(", ")
                );
            }
            let encoded = snapshot.encode();
            index
                .put_blocks(&encoded.blocks)
                .context("storing the snapshot")?;
            (snapshot, encoded)
        }
    };
    let total: u64 = snapshot.artifacts.iter().map(|a| a.record.size).sum();
    let temp = PathBuf::from(format!("{}.part", output.display()));
    let file = std::fs::File::create(&temp)
        .with_context(|| format!("cannot create {}", temp.display()))?;
    let progress = bar(total, "export");
    let result = bundle::export(
        &store,
        &index,
        &snapshot,
        &encoded,
        std::io::BufWriter::with_capacity(1 << 20, file),
        |n| progress.inc(n),
    );
    progress.finish_and_clear();
    let counts = match result {
        Ok(counts) => counts,
        Err(e) => {
            let _ = std::fs::remove_file(&temp);
            return Err(e).context(format!("exporting to {}", output.display()));
        }
    };
    std::fs::File::open(&temp)
        .and_then(|f| f.sync_all())
        .and_then(|()| std::fs::rename(&temp, output))
        .with_context(|| format!("cannot write {}", output.display()))?;
    eprintln!(
        "exported {} documents and {} artifacts ({:.1} MiB) to {}",
        counts.documents,
        counts.artifacts,
        counts.bytes as f64 / f64::from(1 << 20),
        output.display()
    );
    println!("{}", encoded.root);
    Ok(())
}

/// Import `input` into the store under `data_dir`, its contents checked by `ecosystems`' adapters.
pub fn import(
    data_dir: &Path,
    ecosystems: &[Arc<dyn cairn_mirror::ecosystem::Ecosystem>],
    input: &Path,
) -> Result<()> {
    std::fs::create_dir_all(data_dir)
        .with_context(|| format!("cannot create data directory {}", data_dir.display()))?;
    let store = Store::attach(data_dir)
        .with_context(|| format!("cannot open the store in {}", data_dir.display()))?;
    let index = Index::open(&data_dir.join("index.sqlite3")).context("cannot open the index")?;
    let file =
        std::fs::File::open(input).with_context(|| format!("cannot read {}", input.display()))?;
    let total = file.metadata().map(|m| m.len()).unwrap_or(0);
    let progress = bar(total, "import");
    let result = bundle::import(&store, &index, ecosystems, file, |at| {
        progress.set_position(at)
    });
    progress.finish_and_clear();
    let (root, counts) = result.with_context(|| {
        format!(
            "{} was not imported (nothing of it was stored)",
            input.display()
        )
    })?;
    eprintln!(
        "imported {} documents and {} artifacts ({:.1} MiB), all verified",
        counts.documents,
        counts.artifacts,
        counts.bytes as f64 / f64::from(1 << 20)
    );
    println!("{root}");
    Ok(())
}
