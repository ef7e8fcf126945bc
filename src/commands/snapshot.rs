//! `cairn snapshot`: print the root CID of the node's current state, and keep that snapshot.

use anyhow::{Context, Result};

use crate::bundles;
use crate::cli::Common;
use crate::settings::{self, FileSettings};

pub async fn run(common: &Common, file: &FileSettings) -> Result<()> {
    let data_dir = settings::data_dir(common.data_dir.as_deref(), file);
    tokio::task::spawn_blocking(move || bundles::snapshot(&data_dir))
        .await
        .context("snapshot")?
}
