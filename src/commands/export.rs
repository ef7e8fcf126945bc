//! `cairn export`: write a CAR bundle of the lockfiles' needs, of everything, or of a snapshot
//! (`bundles.rs` does the work).

use std::path::PathBuf;

use anyhow::{Context, Result};

use crate::bundles::{self, Selection};
use crate::cli::Common;
use crate::ecosystems;
use crate::pytarget::PythonTargetArgs;
use crate::settings::{self, FileSettings};

/// What `--lockfile`, `--all` and `--snapshot` select (clap keeps them apart).
pub fn selection(
    lockfiles: Vec<String>,
    all: bool,
    snapshot: Option<cid::Cid>,
    python: PythonTargetArgs,
) -> Result<Selection> {
    Ok(match (all, snapshot) {
        (true, _) => Selection::All,
        (_, Some(root)) => Selection::Snapshot(root),
        _ if lockfiles.is_empty() => {
            anyhow::bail!("say what to export: --lockfile FILE…, --all or --snapshot CID")
        }
        _ => Selection::Lockfiles(lockfiles, python),
    })
}

pub async fn run(
    common: &Common,
    file: &FileSettings,
    selection: Selection,
    output: PathBuf,
) -> Result<()> {
    let data_dir = settings::data_dir(common.data_dir.as_deref(), file);
    tokio::task::spawn_blocking(move || {
        bundles::export(&data_dir, ecosystems::base_adapters(), selection, &output)
    })
    .await
    .context("export")?
}
