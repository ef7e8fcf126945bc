//! PyPI's entry in the ecosystem table: its adapter, its upstream (a simple index: pip's
//! `index-url`, else pip's default), `cairn setup pip|uv`, and its lockfiles
//! (`requirements*.txt`, `uv.lock`). `indexes.rs`: the indexes beside the main one, and which
//! projects each takes.

mod indexes;

use std::net::SocketAddr;
use std::path::Path;
use std::sync::Arc;

use anyhow::{Context, Result};
use cairn_mirror::upstream::{redact, redact_text};
use futures_util::future::BoxFuture;
use url::Url;

use super::discover::{Env, Found, client_setting_in, not_installed, points_at_self};
use super::lockfiles::Item;
use super::{CaWay, Client, Entry, Kind, Lockfiles, Registry, Step, TokenWay, point_at_cairn};

pub const ENTRY: Entry = Entry {
    name: "pypi",
    route: "pypi/simple/",
    clients: &[Client::Pip, Client::Uv],
    lockfiles: Lockfiles {
        names: &["requirements*.txt", "uv.lock"],
        read: read_lockfile,
    },
    kind: Kind::Registry(Registry {
        key: "pypi-upstream",
        adapter: || Arc::new(cairn_pypi::Pypi),
        discover,
        routed: indexes::routed,
        print_setup,
        apply_setup,
        token: |_| TokenWay::UrlPassword,
        ca: |client, file| match client {
            Client::Uv => CaWay::ByHand(format!(
                "uv: export SSL_CERT_FILE={} where uv runs (uv.toml has no CA setting)",
                file.display()
            )),
            _ => CaWay::Step(Step {
                program: "python3",
                args: vec![
                    "-m".into(),
                    "pip".into(),
                    "config".into(),
                    "set".into(),
                    "global.cert".into(),
                    file.display().to_string(),
                ],
            }),
        },
    }),
};

/// `uv.lock`, else a requirements file.
fn read_lockfile(file: &str, path: &Path, text: &str) -> Result<Vec<Item>> {
    let items = if path.file_name().and_then(|n| n.to_str()) == Some("uv.lock") {
        cairn_pypi::lockfile::uv_lock(file, text)?
    } else {
        cairn_pypi::lockfile::requirements(file, text)?
    };
    Ok(items.into_iter().map(Item::Pypi).collect())
}

/// `python3 -m pip config set global.index-url URL`.
fn pip_step(url: &Url) -> Step {
    Step {
        program: "python3",
        args: vec![
            "-m".into(),
            "pip".into(),
            "config".into(),
            "set".into(),
            "global.index-url".into(),
            url.to_string(),
        ],
    }
}

/// uv's configuration: one default index, this node.
fn uv_config(url: &Url) -> toml::Table {
    let mut index = toml::Table::new();
    index.insert("name".into(), "cairn".into());
    index.insert("url".into(), url.to_string().into());
    index.insert("default".into(), true.into());
    let mut config = toml::Table::new();
    config.insert(
        "index".into(),
        toml::Value::Array(vec![toml::Value::Table(index)]),
    );
    config
}

/// What `cairn setup pip|uv` prints.
fn print_setup(client: Client, url: &Url) -> Result<String> {
    if client == Client::Uv {
        return Ok(format!(
            "# Add to ~/.config/uv/uv.toml (or run this command with --apply):\n{}\
             # or, for one command: UV_DEFAULT_INDEX={url}\n",
            toml::to_string(&uv_config(url)).context("uv config")?
        ));
    }
    Ok(format!(
        "{}{}\n",
        point_at_cairn(client),
        pip_step(url).shown()
    ))
}

/// `cairn setup pip|uv --apply`: pip's own `config set`, or uv's default index in
/// `uv.toml`.
fn apply_setup(client: Client, url: &Url) -> BoxFuture<'_, Result<()>> {
    Box::pin(async move {
        if client == Client::Uv {
            return apply_uv(url);
        }
        pip_step(url).run().await
    })
}

fn apply_uv(url: &Url) -> Result<()> {
    let path = std::env::var_os("XDG_CONFIG_HOME")
        .map(std::path::PathBuf::from)
        .unwrap_or_else(|| {
            std::path::PathBuf::from(std::env::var_os("HOME").unwrap_or_default()).join(".config")
        })
        .join("uv")
        .join("uv.toml");
    crate::settings::edit_toml(&path, |config| {
        // Replace any other default index: Cairn fronts it now.
        let mut indexes: Vec<toml::Value> = config
            .get("index")
            .and_then(|v| v.as_array())
            .cloned()
            .unwrap_or_default()
            .into_iter()
            .filter(|i| i.get("default").and_then(|d| d.as_bool()) != Some(true))
            .collect();
        indexes.extend(
            uv_config(url)["index"]
                .as_array()
                .cloned()
                .unwrap_or_default(),
        );
        config.insert("index".into(), toml::Value::Array(indexes));
    })?;
    println!("wrote the default index to {}", path.display());
    Ok(())
}

/// The PyPI upstream (a simple index): configured, else `PIP_INDEX_URL`, else pip's configured
/// `index-url`, else pip's built-in default (asked of pip itself).
fn discover<'a>(
    env: &'a Env,
    configured: Option<&'a str>,
    listen: &'a SocketAddr,
    public: Option<&'a Url>,
) -> BoxFuture<'a, Result<Found, String>> {
    Box::pin(pypi_in(env, configured, listen, public))
}

pub(super) async fn pypi_in(
    env: &Env,
    configured: Option<&str>,
    listen: &SocketAddr,
    public: Option<&Url>,
) -> Result<Found, String> {
    let parse = |text: &str| {
        Url::parse(text).map_err(|e| format!("invalid PyPI index {:?}: {e}", redact_text(text)))
    };
    if let Some(text) = configured {
        return Ok(Found::Configured(parse(text)?));
    }
    let hint = "set --pypi-upstream, CAIRN_PYPI_UPSTREAM or pypi-upstream in cairn.toml";
    let (text, from) = match &env.pip_index_url {
        Some(url) => (url.clone(), "PIP_INDEX_URL"),
        None if env.find("python3").is_none() => {
            return Err(not_installed("pip (python3)", "PyPI", "pypi-upstream"));
        }
        None => match client_setting_in(
            env,
            "python3",
            &["-m", "pip", "config", "get", "global.index-url"],
        )
        .await
        {
            Ok(url) if !url.is_empty() => (url, "pip config"),
            _ => {
                let default = client_setting_in(
                    env,
                    "python3",
                    &[
                        "-c",
                        "from pip._internal.models.index import PyPI; print(PyPI.simple_url)",
                    ],
                )
                .await
                .map_err(|e| format!("cannot ask pip for its index ({e}); {hint}"))?;
                (default, "pip's built-in default")
            }
        },
    };
    let url = parse(&text).map_err(|e| format!("{e}; {hint}"))?;
    if points_at_self(&url, listen, public) {
        return Err(format!(
            "pip's index ({}) is this Cairn node; {hint} (cairn setup pip --apply records it)",
            redact(&url)
        ));
    }
    Ok(Found::Discovered { url, from })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn pip_and_uv_setup_print_their_configuration() {
        let url = Url::parse("http://127.0.0.1:7777/pypi/simple/").expect("url");
        assert_eq!(
            print_setup(Client::Pip, &url).expect("pip"),
            "# Point pip at Cairn (or run this command with --apply):\n\
             python3 -m pip config set global.index-url http://127.0.0.1:7777/pypi/simple/\n"
        );
        let uv = print_setup(Client::Uv, &url).expect("uv");
        assert!(uv.starts_with("# Add to ~/.config/uv/uv.toml"), "{uv}");
        assert!(uv.contains("default = true"), "{uv}");
        assert!(
            uv.ends_with(
                "# or, for one command: UV_DEFAULT_INDEX=http://127.0.0.1:7777/pypi/simple/\n"
            ),
            "{uv}"
        );
    }
}
