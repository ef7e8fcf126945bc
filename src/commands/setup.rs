//! `cairn setup CLIENT [--url URL] [--ca-file FILE] [--token SECRET] [--apply]`: the client
//! configuration that points a package manager at this node (trusting the CA of its
//! certificate, presenting an access token), printed, or applied (with the client's own config command, or by
//! editing its config file). What each client gets is its ecosystem's, in the table
//! (`ecosystems`); this is the flow every client shares.
//!
//! Applying first records the client's current upstream in `cairn.toml` (unless one is set
//! there), so Cairn keeps fronting the same registry after the client points at Cairn. It
//! refuses when the node would have no upstream for the client's ecosystem (the running node
//! says so in `/api/v1/status`; with none running, nothing is configured or discoverable), as
//! the client would then point at nothing.

use std::net::SocketAddr;
use std::path::{Path, PathBuf};

use anyhow::{Context, Result, bail};
use url::Url;

use crate::cli::Common;
use crate::ecosystems::{self, CaWay, Client, Kind, Registry, Step, TokenWay, apt};
use crate::settings::{self, FileSettings};

/// What the user gave `cairn setup` beside the client.
pub struct Given {
    /// The node's URL for the client.
    pub url: Option<Url>,
    /// The CA the node's certificate chains to.
    pub ca_file: Option<PathBuf>,
    /// An access token.
    pub token: Option<String>,
    /// The instant of the registry view to point the client at.
    pub as_of: Option<String>,
}

/// `url` (a client URL, ending in the client's path below the node) in the node's view as of
/// `instant`: `/as-of/INSTANT/` before the client's path.
fn in_view(client: Client, url: &Url, instant: &str) -> Result<Url> {
    let now = cairn_mirror::now_ms();
    let as_of = cairn_mirror::policy::AsOf::parse(instant, now).map_err(anyhow::Error::msg)?;
    let path = url.path();
    let Some(base) = path.strip_suffix(client.path()) else {
        bail!(
            "{url} does not end in {:?}, so the view cannot be put before it",
            client.path()
        );
    };
    let mut out = url.clone();
    out.set_path(&format!(
        "{base}{}/{}/{}",
        cairn_mirror::policy::as_of::PREFIX,
        as_of.text,
        client.path()
    ));
    Ok(out)
}

/// `cairn setup`: `given.url`, else this node's at `--listen` (127.0.0.1 when it listens on
/// every address), `https` when `cairn.toml` or `CAIRN_TLS_CERT` gives a certificate.
pub async fn run(
    common: &Common,
    file: &FileSettings,
    client: Client,
    given: Given,
    apply: bool,
) -> Result<()> {
    let token = given.token.as_deref();
    let listen = settings::listen(common.listen.as_deref(), file)?;
    let url = match given.url {
        Some(url) => url,
        None => settings::local_url(listen, file)?
            .join(client.path())
            .context("node URL")?,
    };
    let url = match &given.as_of {
        Some(instant) if matches!(client.entry().kind, Kind::Apt) => bail!(
            "--as-of {instant}: apt archives date whole releases, not packages, so there is no \
             view of one as of an instant (the view serves npm, cargo and PyPI clients)"
        ),
        Some(instant) => in_view(client, &url, instant)?,
        None => url,
    };
    let ca_file = match &given.ca_file {
        Some(path) => {
            let path = std::path::absolute(path)
                .with_context(|| format!("cannot resolve {}", path.display()))?;
            std::fs::File::open(&path)
                .with_context(|| format!("cannot read the CA file {}", path.display()))?;
            Some(path)
        }
        None => None,
    };
    let config = common.config.as_deref();
    let registry = match &client.entry().kind {
        Kind::Apt => {
            let etc = Path::new(apt::APT_ETC);
            let mut out = std::io::stdout().lock();
            apt::setup(&url, apply, config, etc, &listen, &mut out)?;
            return apt::access(&url, apply, etc, token, ca_file.as_deref(), &mut out);
        }
        Kind::Registry(registry) => registry,
    };
    // What the client is given: the node's URL, with the token in it for some clients.
    let mut client_url = url.clone();
    let mut token_step = None;
    let mut cargo_token = None;
    if let Some(secret) = token {
        match (registry.token)(client) {
            TokenWay::UrlPassword => {
                if client_url.set_username("cairn").is_err()
                    || client_url.set_password(Some(secret)).is_err()
                {
                    bail!("{url} cannot carry credentials");
                }
            }
            TokenWay::NpmAuthToken => token_step = Some(npm_auth_token(client, &url, secret)),
            TokenWay::CargoRegistry => cargo_token = Some(secret),
            TokenWay::ByHand(what) => bail!("{what}"),
        }
    }
    let ca = ca_file.as_deref().map(|file| (registry.ca)(client, file));
    if let (Some(CaWay::ByHand(what)), true) = (&ca, apply) {
        bail!("{what}");
    }
    if !apply {
        print!("{}", (registry.print_setup)(client, &client_url)?);
        match &ca {
            Some(CaWay::Step(step)) => println!("# trusting the node's CA:\n{}", step.shown()),
            Some(CaWay::Toml { path, table }) => print!(
                "# trusting the node's CA, in {}:\n{}",
                path.display(),
                toml::to_string(table).context("CA setting")?
            ),
            Some(CaWay::ByHand(what)) => println!("# trusting the node's CA: {what}"),
            None => {}
        }
        if let Some(step) = &token_step {
            println!("# with its access token:\n{}", step.shown());
        }
        if let Some(secret) = cargo_token {
            let (config, credentials) = cargo_token_files(&url, secret);
            println!(
                "# with its access token, the node as a registry instead, in \
                 $CARGO_HOME/config.toml:\n{}# and in $CARGO_HOME/credentials.toml (mode 0600):\n{}",
                toml::to_string(&config).context("cargo config")?,
                toml::to_string(&credentials).context("cargo credentials")?
            );
        }
        return Ok(());
    }
    let name = client.entry().name;
    let flag = registry.key;
    let node = node_has_upstream(client, &url, token, ca_file.as_deref()).await;
    if let Some(Err(why)) = &node {
        bail!(
            "refusing to point {client:?} at {url}: that node has no {name} upstream ({why}); \
             restart it with --{flag} URL"
        );
    }
    let recorded = record_upstream(registry, config, file, &listen, &url).await?;
    if !recorded && node.is_none() {
        bail!(
            "refusing to point {client:?} at {url}: the node would have no {name} upstream (none \
             in cairn.toml, {} or the client's own settings); give one with --{flag} URL \
             or {flag} in cairn.toml first",
            settings::env_name(flag)
        );
    }
    if matches!(client, Client::Npm | Client::Pnpm) {
        ecosystems::npm::scopes::apply_setup(
            client,
            config,
            file.npm_scope.as_deref(),
            &listen,
            &url,
        )
        .await?;
    }
    (registry.apply_setup)(client, &client_url).await?;
    match ca {
        Some(CaWay::Step(step)) => step.run().await?,
        Some(CaWay::Toml { path, table }) => {
            settings::edit_toml(&path, |config| merge(config, table))?;
            println!("wrote the CA setting to {}", path.display());
        }
        Some(CaWay::ByHand(_)) | None => {}
    }
    if let Some(step) = &token_step {
        step.run().await?;
    }
    if let Some(secret) = cargo_token {
        let home = ecosystems::cargo::cargo_home();
        let path =
            ecosystems::cargo::cargo_config_path(&home).unwrap_or_else(|| home.join("config.toml"));
        let (_, credentials) = cargo_token_files(&url, secret);
        // Into what is there: the providers it names are kept.
        settings::edit_toml(&path, |c| ecosystems::cargo::cargo_token_config(c, &url))?;
        println!(
            "wrote the node as cargo's registry `cairn` to {}",
            path.display()
        );
        let path = home.join("credentials.toml");
        settings::edit_private_toml(&path, |c| merge(c, credentials))?;
        println!("wrote its token to {}", path.display());
    }
    Ok(())
}

/// cargo's settings for a node requiring tokens: `config.toml` (the node as the registry
/// `cairn`, crates-io replaced with it, the `cargo:token` provider) and `credentials.toml`
/// (its token).
fn cargo_token_files(url: &Url, secret: &str) -> (toml::Table, toml::Table) {
    let mut config = toml::Table::new();
    ecosystems::cargo::cargo_token_config(&mut config, url);
    let mut credentials = toml::Table::new();
    ecosystems::cargo::cargo_token_credentials(&mut credentials, secret);
    (config, credentials)
}

/// Merge `from` into `into`, table by table (a key in both takes `from`'s value).
fn merge(into: &mut toml::Table, from: toml::Table) {
    for (key, value) in from {
        match (into.get_mut(&key), value) {
            (Some(toml::Value::Table(inner)), toml::Value::Table(value)) => merge(inner, value),
            (_, value) => {
                into.insert(key, value);
            }
        }
    }
}

/// `npm|pnpm config set //HOST/PATH/:_authToken SECRET`: npm's token for the registry at `url`
/// (its scheme left out, as npm keys it).
fn npm_auth_token(client: Client, url: &Url, secret: &str) -> Step {
    let program = if client == Client::Pnpm {
        "pnpm"
    } else {
        "npm"
    };
    let host = url.host_str().unwrap_or_default();
    let port = url.port().map(|p| format!(":{p}")).unwrap_or_default();
    let path = url.path();
    let slash = if path.ends_with('/') { "" } else { "/" };
    Step {
        program,
        args: vec![
            "config".into(),
            "set".into(),
            format!("//{host}{port}{path}{slash}:_authToken"),
            secret.into(),
        ],
    }
}

/// The node's own URL above `url`, a client URL below it (in a view: `/as-of/INSTANT/npm/`
/// is below the node too).
fn node_base(client: Client, url: &Url) -> Url {
    let mut base = url.clone();
    let path = url.path();
    let below = path.strip_suffix(client.path()).unwrap_or("/");
    // `/as-of/INSTANT/` at its end: what is above it.
    let above_view = below
        .trim_end_matches('/')
        .rsplit_once('/')
        .and_then(|(above, _)| above.strip_suffix(cairn_mirror::policy::as_of::PREFIX))
        .filter(|above| above.ends_with('/'));
    base.set_path(above_view.unwrap_or(below));
    base
}

/// What the node at `url` (a client URL below it) says of `client`'s ecosystem: `None` when no
/// node answers there, else `Err(why it is off)` or `Ok(())`.
async fn node_has_upstream(
    client: Client,
    url: &Url,
    token: Option<&str>,
    ca_file: Option<&Path>,
) -> Option<Result<(), String>> {
    let status = node_base(client, url).join("api/v1/status").ok()?;
    let mut http = reqwest::Client::builder();
    if let Some(file) = ca_file {
        let pem = std::fs::read(file).ok()?;
        http = http.add_root_certificate(reqwest::Certificate::from_pem(&pem).ok()?);
    }
    let mut request = http.build().ok()?.get(status);
    if let Some(secret) = token {
        request = request.bearer_auth(secret);
    }
    let response = tokio::time::timeout(std::time::Duration::from_secs(2), request.send())
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
    let name = client.entry().name;
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
    registry: &Registry,
    config: Option<&Path>,
    file: &FileSettings,
    listen: &SocketAddr,
    url: &Url,
) -> Result<bool> {
    let key = registry.key;
    let in_env = settings::in_env(key);
    let found = ecosystems::find_upstream(registry, None, listen, Some(url)).await;
    if file.upstream(key).is_some() {
        return Ok(true);
    }
    match found {
        Ok(found) => {
            let path = settings::record(config, key, found.url().as_str())?;
            println!("recorded {key} = {} in {}", found.shown(), path.display());
            Ok(true)
        }
        Err(e) => {
            println!("no upstream recorded: {e}");
            Ok(in_env)
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn npms_token_key_is_the_registry_url_without_its_scheme() {
        let url = Url::parse("https://cache.internal:7443/npm/").expect("url");
        let step = npm_auth_token(Client::Npm, &url, "cairn_x");
        assert_eq!(
            step.shown(),
            "npm config set //cache.internal:7443/npm/:_authToken cairn_x"
        );
        let url = Url::parse("http://127.0.0.1/npm").expect("url");
        let step = npm_auth_token(Client::Pnpm, &url, "s");
        assert_eq!(
            step.shown(),
            "pnpm config set //127.0.0.1/npm/:_authToken s"
        );
    }

    #[test]
    fn a_view_goes_before_the_clients_path_and_the_node_is_above_both() {
        let url = |u: &str| Url::parse(u).expect("url");
        for (client, given, viewed) in [
            (
                Client::Npm,
                "http://127.0.0.1:7777/npm/",
                "http://127.0.0.1:7777/as-of/2026-08-19T00:00:00Z/npm/",
            ),
            (
                Client::Pip,
                "https://cache.internal/mirror/pypi/simple/",
                "https://cache.internal/mirror/as-of/2026-08-19T00:00:00Z/pypi/simple/",
            ),
            (
                Client::Cargo,
                "http://10.0.0.2:7777/cargo/index/",
                "http://10.0.0.2:7777/as-of/2026-08-19T00:00:00Z/cargo/index/",
            ),
        ] {
            let view = in_view(client, &url(given), "2026-08-19").expect("view");
            assert_eq!(view.as_str(), viewed);
            assert_eq!(node_base(client, &view), node_base(client, &url(given)));
        }
        assert_eq!(
            node_base(Client::Pip, &url(given_pip())).as_str(),
            "https://cache.internal/mirror/"
        );
        let err = in_view(Client::Npm, &url("http://h/elsewhere/"), "2026-08-19")
            .expect_err("not a client URL");
        assert!(err.to_string().contains("does not end in"), "{err}");
        let err = in_view(Client::Npm, &url("http://h/npm/"), "2999-01-01").expect_err("future");
        assert!(err.to_string().contains("in the future"), "{err}");
    }

    fn given_pip() -> &'static str {
        "https://cache.internal/mirror/pypi/simple/"
    }

    #[test]
    fn a_ca_setting_merges_into_a_config_keeping_what_it_had() {
        let mut config: toml::Table =
            toml::from_str("[http]\ntimeout = 30\n[net]\nretry = 0\n").expect("toml");
        let from: toml::Table = toml::from_str("[http]\ncainfo = \"/ca.pem\"\n").expect("toml");
        merge(&mut config, from);
        assert_eq!(
            config,
            toml::from_str::<toml::Table>(
                "[http]\ntimeout = 30\ncainfo = \"/ca.pem\"\n[net]\nretry = 0\n"
            )
            .expect("toml")
        );
    }
}
