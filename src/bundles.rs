//! `cairn snapshot`, `cairn pin`, `cairn export` and `cairn import`: a node's state as a
//! dag-cbor snapshot, and CAR bundles of it to carry to another node.
//! They act on the store directly, alongside a running `serve` (SQLite WAL; `tmp/` left alone).

use std::collections::HashSet;
use std::path::{Path, PathBuf};
use std::sync::Arc;

use anyhow::{Context, Result, bail};
use cairn_mirror::bundle;
use cairn_mirror::cid::{Algorithm, Digest, FlatCid};
use cairn_mirror::ecosystem::Ecosystem;
use cairn_mirror::index::Index;
use cairn_mirror::snapshot::{self, Snapshot};
use cairn_mirror::store::Store;
use cid::Cid;

use crate::lockfiles::{self, Item};

/// What `cairn export` writes.
pub enum Selection {
    All,
    /// What these lockfiles name; Python entries only the files for the target.
    Lockfiles(Vec<String>, crate::pytarget::PythonTargetArgs),
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
    let index = store.index().clone();
    Ok((store, index))
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
fn take_snapshot(store: &Store, index: &Index) -> Result<(Snapshot, snapshot::Encoded)> {
    let (mut snapshot, _) = snapshot::collect(index, None).context("reading the index")?;
    bundle::chunk_documents(store, &mut snapshot).context("reading the documents")?;
    let encoded = snapshot.encode();
    store
        .put_blocks(&encoded.blocks)
        .context("storing the snapshot")?;
    Ok((snapshot, encoded))
}

pub fn snapshot(data_dir: &Path) -> Result<()> {
    let (store, index) = open(data_dir)?;
    let (snapshot, encoded) = take_snapshot(&store, &index)?;
    eprintln!(
        "{} documents, {} artifacts",
        snapshot.documents.len(),
        snapshot.artifacts.len()
    );
    println!("{}", encoded.root);
    Ok(())
}

pub fn pin(data_dir: &Path, root: Option<Cid>) -> Result<()> {
    let (store, index) = open(data_dir)?;
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
        None => take_snapshot(&store, &index)?.1.root,
    };
    store
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

/// Most files one PyPI project's page may list for an export to choose from.
const MAX_PROJECT_FILES: usize = 100_000;

/// The flat CIDs of the files `l` takes for `target`: chosen among the files the lockfile
/// names, or, when it names none by file (`requirements.txt`), among those of the project's
/// page the node holds.
fn pypi_flats(
    index: &Index,
    l: &cairn_pypi::lockfile::Locked,
    target: Option<&cairn_pypi::tags::Target>,
) -> Result<Vec<FlatCid>> {
    let what = format!("pypi {}=={}", l.project, l.version);
    if target.is_none() && !l.sha256.is_empty() {
        return Ok(l.sha256.iter().map(Digest::flat_cid).collect());
    }
    let files: Vec<(String, FlatCid)> = if l.filenames.is_empty() {
        let prefix = format!("{}/", l.project);
        let refs = index
            .refs_with_prefix("pypi", &prefix, MAX_PROJECT_FILES)
            .context("reading the index")?;
        if refs.is_empty() {
            bail!(
                "{what}: this node holds no index page of {} (run `cairn prefetch` with the same \
                 lockfiles first)",
                l.project
            );
        }
        let wanted: HashSet<FlatCid> = l.sha256.iter().map(Digest::flat_cid).collect();
        refs.into_iter()
            .filter(|(_, r)| wanted.is_empty() || wanted.contains(&r.flat))
            .map(|(key, r)| (key[prefix.len()..].to_owned(), r.flat))
            .collect()
    } else {
        l.filenames
            .iter()
            .cloned()
            .zip(l.sha256.iter().map(Digest::flat_cid))
            .collect()
    };
    let names: Vec<&str> = files.iter().map(|(n, _)| n.as_str()).collect();
    let chosen = cairn_pypi::select::select(l, &names, target)
        .map_err(|e| anyhow::anyhow!("{what}: {e}"))?;
    Ok(files
        .iter()
        .filter(|(n, _)| chosen.contains(&n.as_str()))
        .map(|(_, f)| *f)
        .collect())
}

/// The flat CIDs a set of lockfiles names; apt lists are resolved against the indexes held,
/// Python requirements against `python`'s target.
fn lockfile_flats(
    store: &Store,
    index: &Index,
    files: &[String],
    python: &crate::pytarget::PythonTargetArgs,
) -> Result<HashSet<FlatCid>> {
    let items = lockfiles::read_all(files)?;
    let target = if items.iter().any(|i| matches!(i, Item::Pypi(_))) {
        let target = python.target()?;
        match &target {
            Some(t) => eprintln!("pypi: files for {}", cairn_pypi::select::describe(t)),
            None => eprintln!("pypi: every file the lockfiles name (--all-platforms)"),
        }
        target
    } else {
        None
    };
    let mut flats: HashSet<FlatCid> = HashSet::new();
    let mut errors = Vec::new();
    for item in &items {
        match item {
            Item::Pypi(l) => match pypi_flats(index, l, target.as_ref()) {
                Ok(found) => flats.extend(found),
                Err(e) => errors.push(format!("{e:#}")),
            },
            other => flats.extend(other.digests().iter().map(Digest::flat_cid)),
        }
    }
    if !errors.is_empty() {
        bail!("{}", errors.join("\n"));
    }
    let wanted = crate::lockfiles::apt_wanted(&items);
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

/// `ecosystems`, plus each apt archive `snapshot` holds that is not among them, for checking
/// keys only (an export checks what import will; an apt key's route does not depend on the
/// archive's keyring, which only the importing node needs).
fn with_apt_archives(
    mut ecosystems: Vec<Arc<dyn Ecosystem>>,
    snapshot: &Snapshot,
) -> Result<Vec<Arc<dyn Ecosystem>>> {
    let names = snapshot
        .documents
        .iter()
        .map(|d| &d.ecosystem)
        .chain(snapshot.artifacts.iter().map(|a| &a.ecosystem));
    for name in names {
        let Some(archive) = name.strip_prefix("apt/") else {
            continue;
        };
        if ecosystems.iter().any(|e| e.name() == name) {
            continue;
        }
        let keyring = cairn_apt::Keyring::from_bytes(&[], "no keyring (export checks keys only)")
            .map_err(|e| anyhow::anyhow!("{e}"))?;
        let archive = cairn_apt::Archive::new(archive, keyring)
            .map_err(|e| anyhow::anyhow!("apt archive {archive}: {e}"))?;
        ecosystems.push(Arc::new(archive));
    }
    Ok(ecosystems)
}

/// Write a bundle of `selection` to `output`; `ecosystems` check its entries as an import
/// will (apt archives are added as the snapshot names them).
/// `cairn pin --lockfile …`: a snapshot of exactly what `files` need (every artifact must be
/// held), stored and pinned.
pub fn pin_lockfiles(
    data_dir: &Path,
    files: &[String],
    python: &crate::pytarget::PythonTargetArgs,
) -> Result<()> {
    let (store, index) = open(data_dir)?;
    let flats = lockfile_flats(&store, &index, files, python)?;
    let (snapshot, encoded) = lockfile_snapshot(&store, &index, &flats)?;
    store
        .pin(&encoded.root, cairn_mirror::now_ms())
        .context("pinning")?;
    let bytes: u64 = snapshot.artifacts.iter().map(|a| a.record.size).sum();
    eprintln!(
        "keeps {} artifacts ({}) and {} documents",
        snapshot.artifacts.len(),
        cairn_mirror::units::size(bytes),
        snapshot.documents.len()
    );
    println!("pinned {}", encoded.root);
    Ok(())
}

/// `cairn unpin CID`.
pub fn unpin(data_dir: &Path, root: &Cid) -> Result<()> {
    let (store, _) = open(data_dir)?;
    if !store.unpin(root).context("unpinning")? {
        bail!("{root} is not pinned (see `cairn pins`)");
    }
    println!("unpinned {root}");
    Ok(())
}

/// `cairn pins [--json]`: each pinned snapshot, when it was pinned, and what it keeps.
pub fn list_pins(data_dir: &Path, json: bool) -> Result<()> {
    let (_, index) = open(data_dir)?;
    let mut pins = Vec::new();
    for (root, pinned_at) in index.pinned().context("reading the index")? {
        let entry = match stored_snapshot(&index, &root) {
            Ok((snapshot, _)) => serde_json::json!({
                "root": root.to_string(),
                "pinned_at": pinned_at,
                "artifacts": snapshot.artifacts.len(),
                "bytes": snapshot.artifacts.iter().map(|a| a.record.size).sum::<u64>(),
                "documents": snapshot.documents.len(),
            }),
            Err(e) => serde_json::json!({
                "root": root.to_string(),
                "pinned_at": pinned_at,
                "error": format!("{e:#}"),
            }),
        };
        pins.push(entry);
    }
    if json {
        println!(
            "{}",
            serde_json::to_string_pretty(&pins).context("pins report")?
        );
        return Ok(());
    }
    if pins.is_empty() {
        println!("no pinned snapshot");
    }
    for pin in &pins {
        let root = pin["root"].as_str().unwrap_or("?");
        match pin["error"].as_str() {
            Some(e) => println!("{root}  unreadable: {e}"),
            None => println!(
                "{root}  {} artifacts ({}), {} documents",
                pin["artifacts"],
                cairn_mirror::units::size(pin["bytes"].as_u64().unwrap_or(0)),
                pin["documents"]
            ),
        }
    }
    Ok(())
}

/// A snapshot of exactly the artifacts `flats` (and the documents that list them), stored; an
/// error naming the ones this node does not hold.
fn lockfile_snapshot(
    store: &Store,
    index: &Index,
    flats: &HashSet<FlatCid>,
) -> Result<(Snapshot, snapshot::Encoded)> {
    let (mut snapshot, missing) =
        snapshot::collect(index, Some(flats)).context("reading the index")?;
    if !missing.is_empty() {
        let list: Vec<String> = missing.iter().map(|f| f.to_string()).collect();
        bail!(
            "{} of the files the lockfiles name are not in this node (run `cairn prefetch` \
             with the same lockfiles first): {}",
            missing.len(),
            list.join(", ")
        );
    }
    bundle::chunk_documents(store, &mut snapshot).context("reading the documents")?;
    let encoded = snapshot.encode();
    store
        .put_blocks(&encoded.blocks)
        .context("storing the snapshot")?;
    Ok((snapshot, encoded))
}

pub fn export(
    data_dir: &Path,
    ecosystems: Vec<Arc<dyn Ecosystem>>,
    selection: Selection,
    output: &Path,
) -> Result<()> {
    let (store, index) = open(data_dir)?;
    let (snapshot, encoded) = match selection {
        Selection::All => take_snapshot(&store, &index)?,
        Selection::Snapshot(root) => stored_snapshot(&index, &root)?,
        Selection::Lockfiles(files, python) => {
            let flats = lockfile_flats(&store, &index, &files, &python)?;
            lockfile_snapshot(&store, &index, &flats)?
        }
    };
    let ecosystems = with_apt_archives(ecosystems, &snapshot)?;
    let total: u64 = snapshot.artifacts.iter().map(|a| a.record.size).sum();
    let temp = PathBuf::from(format!("{}.part", output.display()));
    let file = std::fs::File::create(&temp)
        .with_context(|| format!("cannot create {}", temp.display()))?;
    let progress = bar(total, "export");
    let result = bundle::export(
        &store,
        &index,
        &ecosystems,
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
    setups: &[cairn_mirror::EcosystemSetup],
    input: &Path,
    pin: bool,
) -> Result<()> {
    let ecosystems: Vec<Arc<dyn cairn_mirror::ecosystem::Ecosystem>> =
        setups.iter().map(|s| s.ecosystem.clone()).collect();
    // Stored as private what this node would fetch from an upstream it sends credentials to.
    let private = |ecosystem: &str, key: Option<&str>| {
        setups
            .iter()
            .find(|s| s.ecosystem.name() == ecosystem)
            .is_some_and(|s| s.is_private(key))
    };
    std::fs::create_dir_all(data_dir)
        .with_context(|| format!("cannot create data directory {}", data_dir.display()))?;
    let store = Store::attach(data_dir)
        .with_context(|| format!("cannot open the store in {}", data_dir.display()))?;
    let index = store.index().clone();
    let file =
        std::fs::File::open(input).with_context(|| format!("cannot read {}", input.display()))?;
    let total = file.metadata().map(|m| m.len()).unwrap_or(0);
    let progress = bar(total, "import");
    let started = std::time::Instant::now();
    let result = bundle::import(&store, &index, &ecosystems, &private, file, |at| {
        progress.set_position(at)
    });
    progress.finish_and_clear();
    let (root, counts) = result.with_context(|| {
        format!(
            "{} was not imported (nothing of it was stored)",
            input.display()
        )
    })?;
    println!("{}", import_summary(&counts, started.elapsed()));
    if pin {
        // After the import: a pin names a snapshot whose blocks are held.
        store
            .pin(&root, cairn_mirror::now_ms())
            .with_context(|| format!("imported, but cannot pin {root}"))?;
        eprintln!("pinned {root}");
    }
    println!("{root}");
    Ok(())
}

/// The lines `cairn import` ends with: what was written, what the node already held, how long.
fn import_summary(counts: &bundle::Counts, elapsed: std::time::Duration) -> String {
    let new_bytes = counts.bytes.saturating_sub(counts.bytes_held);
    format!(
        "imported, all verified, in {:.2} s ({} read):\n  \
         documents: {} written, {} kept (held already, same or newer)\n  \
         artifacts: {} in the bundle, {} written ({}), {} held already ({})",
        elapsed.as_secs_f64(),
        cairn_mirror::units::size(counts.car_bytes),
        counts.documents,
        counts.documents_kept,
        counts.artifacts,
        counts.artifacts - counts.artifacts_held.min(counts.artifacts),
        cairn_mirror::units::size(new_bytes),
        counts.artifacts_held,
        cairn_mirror::units::size(counts.bytes_held),
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_import_summary_names_what_was_written_and_what_was_held() {
        let counts = bundle::Counts {
            documents: 3,
            artifacts: 10,
            bytes: 5 << 20,
            documents_kept: 1,
            artifacts_held: 4,
            bytes_held: 1 << 20,
            car_bytes: 6 << 20,
        };
        let text = import_summary(&counts, std::time::Duration::from_millis(1500));
        assert_eq!(
            text,
            "imported, all verified, in 1.50 s (6 MiB read):\n  \
             documents: 3 written, 1 kept (held already, same or newer)\n  \
             artifacts: 10 in the bundle, 6 written (4 MiB), 4 held already (1 MiB)"
        );
    }
}
