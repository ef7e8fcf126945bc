//! `cairn peers`: the peers the running node is connected to (`p2p.rs` does the work).

use anyhow::{Context, Result};
use url::Url;

use crate::cli::Common;
use crate::settings::{self, FileSettings};

pub async fn run(common: &Common, file: &FileSettings, url: Option<Url>, json: bool) -> Result<()> {
    let url = match url {
        Some(url) => url,
        None => {
            let listen = settings::listen(common.listen.as_deref(), file)?;
            Url::parse(&format!("http://{listen}/")).context("node URL")?
        }
    };
    let data_dir = settings::data_dir(common.data_dir.as_deref(), file);
    crate::p2p::print_peers(&url, &data_dir, json).await
}
