//! `cairn id`: this node's peer ID and the addresses other nodes can bootstrap from
//! (`p2p.rs` does the work).

use anyhow::{Context, Result};
use url::Url;

use crate::cli::Common;
use crate::settings::{self, FileSettings};

pub async fn run(common: &Common, file: &FileSettings) -> Result<()> {
    let data_dir = settings::data_dir(common.data_dir.as_deref(), file);
    let listen = settings::listen(common.listen.as_deref(), file)?;
    let node = Url::parse(&format!("http://{listen}/")).context("node URL")?;
    crate::p2p::print_id(&data_dir, &node, file).await
}
