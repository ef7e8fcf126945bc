//! `cairn import FILE.car`: read a bundle into the store, every document and artifact checked
//! by the adapters as if upstream had sent it (`bundles.rs` does the work).

use std::path::PathBuf;

use anyhow::{Context, Result};

use crate::bundles;
use crate::cli::{AptArgs, Common};
use crate::ecosystems;
use crate::settings::{self, FileSettings};

pub async fn run(
    common: &Common,
    file: &FileSettings,
    car: PathBuf,
    pin: bool,
    args: &AptArgs,
) -> Result<()> {
    let data_dir = settings::data_dir(common.data_dir.as_deref(), file);
    let listen = settings::listen(common.listen.as_deref(), file)?;
    // The adapters check what the bundle holds as they check what upstream sends; the
    // upstreams, as `serve` would find them, say what is private.
    let chosen = ecosystems::Chosen {
        upstream: &|key| settings::from_env(key, file.upstream(key)),
        routes: ecosystems::RouteSettings {
            npm_scope: settings::list_from_env("npm-scope", &file.npm_scope),
            pypi_index: settings::list_from_env("pypi-index", &file.pypi_index),
            pypi_route: settings::list_from_env("pypi-route", &file.pypi_route),
        },
        cargo_registry: settings::list_from_env("cargo-registry", &file.cargo_registry),
        apt_upstream: settings::pick(&args.apt_upstream, &file.apt_upstream),
        apt_keyring: settings::pick(&args.apt_keyring, &file.apt_keyring),
    };
    let setups = ecosystems::setups(&chosen, &listen, None).await?;
    tokio::task::spawn_blocking(move || bundles::import(&data_dir, &setups, &car, pin))
        .await
        .context("import")?
}
