//! `cairn setup CLIENT [--url URL] [--apply]`: the client configuration that points a package
//! manager at this node, printed, or applied (with the client's own config command, or for cargo
//! by editing `$CARGO_HOME/config.toml`).
//!
//! Applying first records the client's current upstream in `cairn.toml` (unless one is set
//! there), so Cairn keeps fronting the same registry after the client points at Cairn. It
//! refuses when the node would have no upstream for the client's ecosystem (the running node
//! says so in `/api/v1/status`; with none running, nothing is configured or discoverable), as
//! the client would then point at nothing.

use std::path::Path;

use anyhow::{Context, Result, bail};
use url::Url;

use crate::discover;

/// The clients `setup` knows.
#[derive(Clone, Copy, Debug, PartialEq, Eq, clap::ValueEnum)]
pub enum Client {
    Npm,
    Yarn,
    Pnpm,
    Cargo,
    Pip,
    Uv,
    Apt,
}

impl Client {
    /// The client's own name, as users type it.
    pub fn name(self) -> &'static str {
        match self {
            Client::Npm => "npm",
            Client::Yarn => "yarn",
            Client::Pnpm => "pnpm",
            Client::Cargo => "cargo",
            Client::Pip => "pip",
            Client::Uv => "uv",
            Client::Apt => "apt",
        }
    }

    /// The route prefix of the client's ecosystem on a node.
    pub fn path(self) -> &'static str {
        match self {
            Client::Npm | Client::Yarn | Client::Pnpm => "npm/",
            Client::Cargo => "cargo/index/",
            Client::Pip | Client::Uv => "pypi/simple/",
            Client::Apt => "apt/",
        }
    }
}

/// One command that configures a client.
struct Step {
    program: &'static str,
    args: Vec<String>,
}

impl Step {
    fn shown(&self) -> String {
        let args: Vec<String> = self
            .args
            .iter()
            .map(|a| {
                if a.contains([' ', '"', '[']) {
                    format!("'{a}'")
                } else {
                    a.clone()
                }
            })
            .collect();
        format!("{} {}", self.program, args.join(" "))
    }
}

async fn steps(client: Client, url: &Url) -> Vec<Step> {
    let url = url.to_string();
    match client {
        Client::Npm => vec![Step {
            program: "npm",
            args: vec!["config".into(), "set".into(), "registry".into(), url],
        }],
        Client::Pnpm => vec![Step {
            program: "pnpm",
            args: vec!["config".into(), "set".into(), "registry".into(), url],
        }],
        Client::Cargo | Client::Uv | Client::Apt => Vec::new(),
        Client::Pip => vec![Step {
            program: "python3",
            args: vec![
                "-m".into(),
                "pip".into(),
                "config".into(),
                "set".into(),
                "global.index-url".into(),
                url,
            ],
        }],
        // yarn 1 only: yarn 2+ is configured through `.yarnrc.yml` (see `apply_yarn_berry`).
        Client::Yarn if yarn_is_v1().await => vec![Step {
            program: "yarn",
            args: vec!["config".into(), "set".into(), "registry".into(), url],
        }],
        Client::Yarn => Vec::new(),
    }
}

/// True when the `yarn` on the PATH is yarn 1 (classic). yarn 2+ is often a per-project
/// version (corepack), so its configuration is written whatever this says.
async fn yarn_is_v1() -> bool {
    discover::client_setting("yarn", &["--version"])
        .await
        .is_ok_and(|v| v.starts_with("1."))
}

/// yarn 2+'s user configuration file: `~/.yarnrc.yml`.
fn yarnrc_path() -> std::path::PathBuf {
    std::path::PathBuf::from(std::env::var_os("HOME").unwrap_or_default()).join(".yarnrc.yml")
}

fn apply_yarn_berry(url: &Url) -> Result<()> {
    let path = yarnrc_path();
    let existing = match std::fs::read_to_string(&path) {
        Ok(text) => text,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => String::new(),
        Err(e) => return Err(e).with_context(|| format!("cannot read {}", path.display())),
    };
    let temp = path.with_extension("yml.cairn-tmp");
    std::fs::write(&temp, crate::yarnrc::edit(&existing, url))
        .with_context(|| format!("cannot write {}", temp.display()))?;
    std::fs::rename(&temp, &path).with_context(|| format!("cannot write {}", path.display()))?;
    println!(
        "wrote npmRegistryServer{} to {} (yarn 2+)",
        if url.scheme() == "http" {
            " and unsafeHttpWhitelist"
        } else {
            ""
        },
        path.display()
    );
    Ok(())
}

/// The source replacement that points cargo at `url`, merged into `config`.
fn cargo_config(config: &mut toml::Table, url: &Url) {
    let sources = config
        .entry("source")
        .or_insert_with(|| toml::Value::Table(toml::Table::new()));
    if let Some(sources) = sources.as_table_mut() {
        let mut crates_io = toml::Table::new();
        crates_io.insert("replace-with".into(), "cairn".into());
        sources.insert("crates-io".into(), toml::Value::Table(crates_io));
        let mut cairn = toml::Table::new();
        cairn.insert("registry".into(), format!("sparse+{url}").into());
        sources.insert("cairn".into(), toml::Value::Table(cairn));
    }
}

fn apply_cargo(url: &Url) -> Result<()> {
    let home = discover::cargo_home();
    let path = discover::cargo_config_path(&home).unwrap_or_else(|| home.join("config.toml"));
    crate::settings::edit_toml(&path, |config| cargo_config(config, url))?;
    println!(
        "wrote the crates-io source replacement to {}",
        path.display()
    );
    Ok(())
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

/// The ecosystem of `client` as the node names it, and the flag that gives its upstream.
fn ecosystem(client: Client) -> (&'static str, &'static str) {
    match client {
        Client::Pip | Client::Uv => ("pypi", "pypi-upstream"),
        Client::Cargo => ("cargo", "cargo-upstream"),
        _ => ("npm", "npm-upstream"),
    }
}

/// What the node at `url` (a client URL below it) says of `client`'s ecosystem: `None` when no
/// node answers there, else `Err(why it is off)` or `Ok(())`.
async fn node_has_upstream(client: Client, url: &Url) -> Option<Result<(), String>> {
    let mut base = url.clone();
    let path = base.path().to_owned();
    base.set_path(path.strip_suffix(client.path()).unwrap_or("/"));
    let status = base.join("api/v1/status").ok()?;
    let response = tokio::time::timeout(std::time::Duration::from_secs(2), reqwest::get(status))
        .await
        .ok()?
        .ok()?;
    if !response.status().is_success() {
        return None;
    }
    // A status report is small; more than 1 MiB is not one.
    let mut response = response;
    let read = async {
        let mut body = Vec::new();
        while let Some(chunk) = response.chunk().await.ok()? {
            body.extend_from_slice(&chunk);
            if body.len() > 1 << 20 {
                return None;
            }
        }
        Some(body)
    };
    let body = tokio::time::timeout(std::time::Duration::from_secs(2), read)
        .await
        .ok()??;
    let report: serde_json::Value = serde_json::from_slice(&body).ok()?;
    let (name, _) = ecosystem(client);
    let entry = report["upstreams"]
        .as_array()?
        .iter()
        .find(|u| u["ecosystem"] == name)?;
    if entry["upstream"].is_string() {
        return Some(Ok(()));
    }
    Some(Err(entry["disabled_because"]
        .as_str()
        .unwrap_or("no upstream")
        .to_owned()))
}

/// Record the client's current upstream in `cairn.toml` unless one is recorded there already.
/// True when the node will have an upstream for it (recorded, in the environment, or found).
async fn record_upstream(
    client: Client,
    config: Option<&Path>,
    file: &crate::settings::FileSettings,
    listen: &std::net::SocketAddr,
    url: &Url,
) -> Result<bool> {
    let (_, flag) = ecosystem(client);
    let env = format!("CAIRN_{}", flag.to_ascii_uppercase().replace('-', "_"));
    let in_env = std::env::var(&env).is_ok_and(|v| !v.is_empty());
    let (key, recorded, found) = match client {
        Client::Pip | Client::Uv => (
            "pypi-upstream",
            file.pypi_upstream.is_some(),
            discover::pypi(None, listen, Some(url)).await,
        ),
        Client::Cargo => (
            "cargo-upstream",
            file.cargo_upstream.is_some(),
            discover::cargo(None, listen, Some(url)).await,
        ),
        _ => (
            "npm-upstream",
            file.npm_upstream.is_some(),
            discover::npm(None, listen, Some(url)).await,
        ),
    };
    if recorded {
        return Ok(true);
    }
    match found {
        Ok(found) => {
            let path = crate::settings::record(config, key, found.url().as_str())?;
            println!("recorded {key} = {} in {}", found.shown(), path.display());
            Ok(true)
        }
        Err(e) => {
            println!("no upstream recorded: {e}");
            Ok(in_env)
        }
    }
}

/// Print or apply the configuration of `client` for the node at `url`.
pub async fn run(
    client: Client,
    url: &Url,
    apply: bool,
    config: Option<&Path>,
    file: &crate::settings::FileSettings,
    listen: &std::net::SocketAddr,
) -> Result<()> {
    if client == Client::Apt {
        return crate::apt::setup(
            url,
            apply,
            config,
            Path::new(crate::apt::APT_ETC),
            listen,
            &mut std::io::stdout().lock(),
        );
    }
    let steps = steps(client, url).await;
    if !apply {
        if client == Client::Uv {
            println!("# Add to ~/.config/uv/uv.toml (or run this command with --apply):");
            print!("{}", toml::to_string(&uv_config(url)).context("uv config")?);
            println!("# or, for one command: UV_DEFAULT_INDEX={url}");
            return Ok(());
        }
        if client == Client::Cargo {
            let mut snippet = toml::Table::new();
            cargo_config(&mut snippet, url);
            println!("# Add to $CARGO_HOME/config.toml (or run this command with --apply):");
            print!("{}", toml::to_string(&snippet).context("cargo config")?);
            return Ok(());
        }
        println!(
            "# Point {} at Cairn (or run this command with --apply):",
            client.name()
        );
        if client == Client::Yarn {
            println!("# yarn 1:");
            println!("yarn config set registry {url}");
            println!("# yarn 2+, in ~/.yarnrc.yml (or a project's .yarnrc.yml, which wins):");
            print!("{}", crate::yarnrc::edit("", url));
            return Ok(());
        }
        for step in &steps {
            println!("{}", step.shown());
        }
        if client == Client::Npm {
            println!("# or, in .npmrc: registry={url}");
        }
        return Ok(());
    }
    let (name, flag) = ecosystem(client);
    let node = node_has_upstream(client, url).await;
    if let Some(Err(why)) = &node {
        bail!(
            "refusing to point {client:?} at {url}: that node has no {name} upstream ({why}); \
             restart it with --{flag} URL"
        );
    }
    let recorded = record_upstream(client, config, file, listen, url).await?;
    if !recorded && node.is_none() {
        bail!(
            "refusing to point {client:?} at {url}: the node would have no {name} upstream (none \
             in cairn.toml, CAIRN_{} or the client's own settings); give one with --{flag} URL \
             or {flag} in cairn.toml first",
            flag.to_ascii_uppercase().replace('-', "_")
        );
    }
    if client == Client::Cargo {
        return apply_cargo(url);
    }
    if client == Client::Uv {
        return apply_uv(url);
    }
    if client == Client::Yarn {
        apply_yarn_berry(url)?;
    }
    for step in &steps {
        let status = tokio::process::Command::new(step.program)
            .args(&step.args)
            .status()
            .await
            .with_context(|| format!("cannot run {}", step.shown()))?;
        if !status.success() {
            bail!("{} failed with {status}", step.shown());
        }
        println!("ran: {}", step.shown());
    }
    Ok(())
}
