//! `cairn pin [CID]`: keep a snapshot, the current state's or the one named.

use anyhow::{Context, Result};

use crate::bundles;
use crate::cli::Common;
use crate::settings::{self, FileSettings};

pub async fn run(common: &Common, file: &FileSettings, root: Option<cid::Cid>) -> Result<()> {
    let data_dir = settings::data_dir(common.data_dir.as_deref(), file);
    tokio::task::spawn_blocking(move || bundles::pin(&data_dir, root))
        .await
        .context("pin")?
}
