//! `cairn pin [CID | --lockfile FILE…]`, `cairn unpin CID`, `cairn pins`: the snapshots the
//! store keeps whatever its size limit (`bundles.rs` does the work).

use anyhow::{Context, Result};

use crate::bundles;
use crate::cli::Common;
use crate::pytarget::PythonTargetArgs;
use crate::settings::{self, FileSettings};

pub async fn run(
    common: &Common,
    file: &FileSettings,
    root: Option<cid::Cid>,
    lockfiles: Vec<String>,
    python: PythonTargetArgs,
) -> Result<()> {
    let data_dir = settings::data_dir(common.data_dir.as_deref(), file);
    tokio::task::spawn_blocking(move || {
        if lockfiles.is_empty() {
            bundles::pin(&data_dir, root)
        } else {
            bundles::pin_lockfiles(&data_dir, &lockfiles, &python)
        }
    })
    .await
    .context("pin")?
}

pub async fn unpin(common: &Common, file: &FileSettings, root: cid::Cid) -> Result<()> {
    let data_dir = settings::data_dir(common.data_dir.as_deref(), file);
    tokio::task::spawn_blocking(move || bundles::unpin(&data_dir, &root))
        .await
        .context("unpin")?
}

pub async fn list(common: &Common, file: &FileSettings, json: bool) -> Result<()> {
    let data_dir = settings::data_dir(common.data_dir.as_deref(), file);
    tokio::task::spawn_blocking(move || bundles::list_pins(&data_dir, json))
        .await
        .context("pins")?
}
