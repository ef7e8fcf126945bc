//! `cairn gc [--dry-run] [--min-age DUR] [--json]`: remove what nothing needs from the data
//! directory (the store's `gc` says what that is), keeping what the pinned snapshots need
//! (their documents and their own blocks); it works beside a running node.

use anyhow::{Context, Result};

use cairn_mirror::snapshot::Snapshot;
use cairn_mirror::store::{GcKeep, Store};

use crate::cli::Common;
use crate::settings::{self, FileSettings};

pub async fn run(
    common: &Common,
    file: &FileSettings,
    dry_run: bool,
    min_age: &str,
    json: bool,
) -> Result<()> {
    let data_dir = settings::data_dir(common.data_dir.as_deref(), file);
    let grace = settings::parse_duration(min_age).context("--min-age")?;
    if !data_dir.join("index.sqlite3").exists() {
        anyhow::bail!("no Cairn store in {}", data_dir.display());
    }
    let dir = data_dir.clone();
    let report = tokio::task::spawn_blocking(move || {
        let store = Store::attach(&dir).context("opening the store")?;
        let keep = pinned(&store)?;
        store.gc(dry_run, grace, &keep).context("gc")
    })
    .await
    .context("gc")?
    .with_context(|| format!("gc of {}", data_dir.display()))?;
    if json {
        println!(
            "{}",
            serde_json::to_string_pretty(&report).context("gc report")?
        );
        return Ok(());
    }
    let size = cairn_mirror::units::size;
    let verb = if dry_run { "would remove" } else { "removed" };
    println!(
        "{verb} {} files no row names ({}), {} temp files ({}); {} rows whose file is gone, {} orphan leaf rows, {} blocks of unpinned snapshots",
        report.orphan_files,
        size(report.orphan_bytes),
        report.temp_files,
        size(report.temp_bytes),
        report.missing_files,
        report.orphan_leaf_rows,
        report.snapshot_blocks,
    );
    if report.foreign_files > 0 {
        println!(
            "left alone: {} files whose names are not Cairn's",
            report.foreign_files
        );
    }
    Ok(())
}

/// What the pinned snapshots need: their documents' blocks and their own blocks. A pinned
/// snapshot that cannot be read stops the gc (what it needs is unknown). Blocking.
fn pinned(store: &Store) -> Result<GcKeep> {
    let mut keep = GcKeep::default();
    for root in store.index().pins().context("reading the pins")? {
        let snapshot = Snapshot::decode(&root, |cid| {
            keep.snapshot_blocks.insert(*cid);
            store
                .index()
                .get_block(cid)
                .map_err(|e| e.to_string())?
                .ok_or_else(|| format!("block {cid} is not held"))
        })
        .map_err(|e| {
            anyhow::anyhow!(
                "the pinned snapshot {root} cannot be read ({e}): nothing was removed (unpin it, \
                 or import its bundle again)"
            )
        })?;
        keep.documents
            .extend(snapshot.documents.iter().filter_map(|d| d.record.cid));
    }
    Ok(keep)
}
