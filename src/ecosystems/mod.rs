//! The ecosystems the bin knows, in ONE table ([`TABLE`]): per ecosystem its adapter, how its
//! upstream is found, the clients `cairn setup` configures for it, and the lockfiles
//! `--lockfile` reads for it. `serve`, `import`, `export`, `status`, `setup` and `prefetch` all
//! walk this table, so adding an ecosystem means one new entry (and its module beside this one).
//!
//! apt is the one ecosystem with many upstreams (one adapter per archive, from the flags or the
//! machine's apt sources): its entry says so ([`Kind::Apt`]) and `apt.rs` holds its specifics.

pub mod apt;
pub mod cargo;
pub mod discover;
pub mod lockfiles;
mod netrc;
pub mod npm;
mod npmrc;
pub mod pypi;
mod yarnrc;

use std::net::SocketAddr;
use std::path::Path;
use std::sync::Arc;

use anyhow::{Context, Result, bail};
use futures_util::future::BoxFuture;
use url::Url;

use self::discover::{Env, Found};
use self::lockfiles::Item;

/// One ecosystem.
pub struct Entry {
    /// Its name, as the node and its adapter name it (`npm`), and the `KIND:` prefix of
    /// `--lockfile`.
    pub name: &'static str,
    /// The route prefix its clients are pointed at on a node.
    pub route: &'static str,
    /// The clients `cairn setup` configures for it.
    pub clients: &'static [Client],
    /// The lockfiles `--lockfile` reads for it.
    pub lockfiles: Lockfiles,
    pub kind: Kind,
}

/// How an ecosystem's upstreams are set up.
pub enum Kind {
    /// One upstream URL: configured, else discovered from its clients' own settings.
    Registry(Registry),
    /// One adapter per apt archive (`apt.rs`).
    Apt,
}

/// Finds an ecosystem's upstream: the configured one (`Some`), else the clients' setting;
/// `listen` and the public URL are this node's, whose own URL is refused.
pub type Discover = for<'a> fn(
    &'a Env,
    Option<&'a str>,
    &'a SocketAddr,
    Option<&'a Url>,
) -> BoxFuture<'a, Result<Found, String>>;

/// Finds an ecosystem's routed upstreams and the credentials of each upstream: from the
/// settings, else the clients' own configuration. The main upstream's URL is given when it is
/// known; `listen` and the public URL are this node's, whose own URL is refused.
pub type FindRouted = for<'a> fn(
    &'a Env,
    &'a RouteSettings,
    Option<&'a Url>,
    &'a SocketAddr,
    Option<&'a Url>,
) -> BoxFuture<'a, Result<Upstreams, String>>;

/// The settings that route packages to upstreams of their own (`--npm-scope`, …), as the
/// flags, the environment and `cairn.toml` give them.
#[derive(Clone, Debug, Default)]
pub struct RouteSettings {
    /// `@SCOPE=URL` per npm scope.
    pub npm_scope: Vec<String>,
    /// `NAME=URL` per PyPI index beside the main one.
    pub pypi_index: Vec<String>,
    /// `PATTERN=NAME`: the PyPI projects an index takes.
    pub pypi_route: Vec<String>,
}

/// An ecosystem's upstreams beyond the main URL.
#[derive(Debug, Default)]
pub struct Upstreams {
    /// The main upstream's credentials.
    pub credentials: Option<cairn_mirror::upstream::Credentials>,
    /// Where they came from, for the log.
    pub credentials_from: Option<String>,
    pub routed: Vec<cairn_mirror::RoutedUpstream>,
    /// Where the routed upstreams came from (`configured`, or the client setting).
    pub routed_from: &'static str,
}

/// For an ecosystem with no routed upstreams: nothing beyond the main URL.
pub fn no_routes<'a>(
    _: &'a Env,
    _: &'a RouteSettings,
    _: Option<&'a Url>,
    _: &'a SocketAddr,
    _: Option<&'a Url>,
) -> BoxFuture<'a, Result<Upstreams, String>> {
    Box::pin(async { Ok(Upstreams::default()) })
}

/// Applies a client's configuration for the node at the URL.
pub type Apply = for<'a> fn(Client, &'a Url) -> BoxFuture<'a, Result<()>>;

/// An ecosystem with one upstream URL.
pub struct Registry {
    /// The setting that gives the upstream: the flag `--KEY`, the key in `cairn.toml`, and
    /// `CAIRN_KEY` in the environment.
    pub key: &'static str,
    /// Its adapter.
    pub adapter: fn() -> Arc<dyn cairn_mirror::ecosystem::Ecosystem>,
    pub discover: Discover,
    pub routed: FindRouted,
    /// The configuration `cairn setup CLIENT` prints.
    pub print_setup: fn(Client, &Url) -> Result<String>,
    /// What `cairn setup CLIENT --apply` does once the upstream is recorded.
    pub apply_setup: Apply,
    /// How `cairn setup CLIENT --token SECRET` hands the client its access token.
    pub token: fn(Client) -> TokenWay,
    /// How `cairn setup CLIENT --ca-file FILE` makes the client trust the CA of the node's
    /// certificate.
    pub ca: fn(Client, &Path) -> CaWay,
}

/// How a client is told which CA to trust for a node serving HTTPS.
pub enum CaWay {
    /// One of the client's own config commands.
    Step(Step),
    /// Keys merged into a TOML config file of the client's.
    Toml {
        path: std::path::PathBuf,
        table: toml::Table,
    },
    /// `setup` cannot write it: what to do by hand.
    ByHand(String),
}

/// How a client presents an access token to a node requiring them.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum TokenWay {
    /// As the password of the node's URL (`http://cairn:SECRET@host/…`), which the client
    /// sends as HTTP Basic credentials.
    UrlPassword,
    /// npm's per-registry `//HOST/PATH/:_authToken`, sent as a Bearer token.
    NpmAuthToken,
    /// cargo's: the node named as a registry of cargo's (which crates-io is replaced with),
    /// its token in `credentials.toml` for cargo's `cargo:token` provider.
    CargoRegistry,
    /// `setup` cannot write it yet: what to do by hand.
    ByHand(&'static str),
}

/// The lockfiles of an ecosystem.
pub struct Lockfiles {
    /// The file names that say a file is one (`*` stands for any text), in the order errors
    /// list them. Empty when only the `KIND:` prefix says so (apt package lists).
    pub names: &'static [&'static str],
    /// Read one: the file's name for errors, its path, its text.
    pub read: fn(&str, &Path, &str) -> Result<Vec<Item>>,
}

/// Every ecosystem, in the order commands list them.
pub static TABLE: [Entry; 4] = [npm::ENTRY, cargo::ENTRY, pypi::ENTRY, apt::ENTRY];

/// The ecosystems with one upstream URL, with their entries.
pub fn registries() -> impl Iterator<Item = (&'static Entry, &'static Registry)> {
    TABLE.iter().filter_map(|entry| match &entry.kind {
        Kind::Registry(registry) => Some((entry, registry)),
        Kind::Apt => None,
    })
}

/// The adapters every node has (apt archives are configured).
pub fn base_adapters() -> Vec<Arc<dyn cairn_mirror::ecosystem::Ecosystem>> {
    registries()
        .map(|(_, registry)| (registry.adapter)())
        .collect()
}

/// The upstream of `registry`: `configured`, else discovered from the machine's clients.
pub async fn find_upstream(
    registry: &Registry,
    configured: Option<&str>,
    listen: &SocketAddr,
    public: Option<&Url>,
) -> Result<Found, String> {
    (registry.discover)(&Env::current(), configured, listen, public).await
}

/// The routed upstreams of `registry` and the credentials of its upstreams.
pub async fn find_routed(
    registry: &Registry,
    settings: &RouteSettings,
    main: Option<&Url>,
    listen: &SocketAddr,
    public: Option<&Url>,
) -> Result<Upstreams, String> {
    (registry.routed)(&Env::current(), settings, main, listen, public).await
}

/// The upstream settings a command was given (flags, the environment, `cairn.toml`).
pub struct Chosen<'a> {
    /// The configured main upstream of a registry, by its setting key (`npm-upstream`).
    pub upstream: &'a dyn Fn(&str) -> Option<String>,
    pub routes: RouteSettings,
    /// `--cargo-registry`: cargo's alternative registries.
    pub cargo_registry: Vec<String>,
    /// `--apt-upstream` and `--apt-keyring`.
    pub apt_upstream: Vec<String>,
    pub apt_keyring: Vec<String>,
}

/// Every ecosystem to serve, with its upstreams as `chosen` configures them or the clients'
/// settings give them, each logged; an ecosystem without an upstream is set up off, with why.
/// `listen` and the public URL are this node's, whose own URL is refused as an upstream.
pub async fn setups(
    chosen: &Chosen<'_>,
    listen: &SocketAddr,
    public: Option<&Url>,
) -> Result<Vec<cairn_mirror::EcosystemSetup>> {
    use cairn_mirror::upstream::redact;
    let mut setups = Vec::new();
    for (entry, registry) in registries() {
        let configured = (chosen.upstream)(registry.key);
        let found = find_upstream(registry, configured.as_deref(), listen, public).await;
        let name = entry.name;
        match &found {
            Ok(found @ Found::Configured(_)) => {
                tracing::info!(target: crate::logging::TARGET, ecosystem = name, upstream = %found.shown(), "upstream (configured)")
            }
            Ok(found @ Found::Discovered { from, .. }) => {
                tracing::info!(target: crate::logging::TARGET, ecosystem = name, upstream = %found.shown(), from, "upstream (discovered)")
            }
            Err(why) => {
                tracing::warn!(target: crate::logging::TARGET, ecosystem = name, "off: {why}")
            }
        }
        let main = found.as_ref().ok().map(|f| f.url());
        let extra = find_routed(registry, &chosen.routes, main, listen, public)
            .await
            .map_err(anyhow::Error::msg)
            .with_context(|| format!("{name} upstreams"))?;
        if let (Some(main), Some(from)) = (main, &extra.credentials_from) {
            tracing::info!(target: crate::logging::TARGET, ecosystem = name, upstream = %redact(main), from = %from, "upstream credentials");
        }
        for routed in &extra.routed {
            let patterns: Vec<&str> = routed.patterns.iter().map(|p| p.as_str()).collect();
            tracing::info!(target: crate::logging::TARGET, ecosystem = name, route = %routed.name, names = %patterns.join(" "), upstream = %redact(&routed.url), credentials = routed.credentials.is_some(), from = extra.routed_from, "routed upstream");
        }
        let mut setup = cairn_mirror::EcosystemSetup::new(
            (registry.adapter)(),
            name,
            found.map(|f| f.url().clone()),
        );
        setup.credentials = extra.credentials;
        setup.routed = extra.routed;
        setups.push(setup);
    }
    setups.extend(cargo::registries::setups(
        &Env::current(),
        &chosen.cargo_registry,
        listen,
        public,
    )?);
    setups.extend(apt::adapters(
        &chosen.apt_upstream,
        &chosen.apt_keyring,
        listen,
        public,
    )?);
    Ok(setups)
}

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

    /// The ecosystem the client installs from.
    pub fn entry(self) -> &'static Entry {
        // Every client is in one entry's list (checked by a test), so the search always
        // finds it; apt's entry is the fallback only a mistake in the table could reach.
        TABLE
            .iter()
            .find(|entry| entry.clients.contains(&self))
            .unwrap_or(&TABLE[TABLE.len() - 1])
    }

    /// The route prefix of the client's ecosystem on a node.
    pub fn path(self) -> &'static str {
        self.entry().route
    }
}

/// One command that configures a client.
pub struct Step {
    pub program: &'static str,
    pub args: Vec<String>,
}

impl Step {
    /// The command as a shell would take it.
    pub fn shown(&self) -> String {
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

    /// Run the command; its failure is an error naming it.
    pub async fn run(&self) -> Result<()> {
        let status = tokio::process::Command::new(self.program)
            .args(&self.args)
            .status()
            .await
            .with_context(|| format!("cannot run {}", self.shown()))?;
        if !status.success() {
            bail!("{} failed with {status}", self.shown());
        }
        println!("ran: {}", self.shown());
        Ok(())
    }
}

/// A client's own `config set` command: `PROGRAM config set KEY URL`.
pub fn config_set(program: &'static str, key: &str, url: &Url) -> Step {
    Step {
        program,
        args: vec!["config".into(), "set".into(), key.into(), url.to_string()],
    }
}

/// `# Point CLIENT at Cairn (or run this command with --apply):`, the first line of the
/// configuration `setup` prints for a client configured by commands.
pub fn point_at_cairn(client: Client) -> String {
    format!(
        "# Point {} at Cairn (or run this command with --apply):\n",
        client.name()
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_client_belongs_to_exactly_one_ecosystem() {
        use clap::ValueEnum as _;
        for client in Client::value_variants() {
            let owners: Vec<&str> = TABLE
                .iter()
                .filter(|e| e.clients.contains(client))
                .map(|e| e.name)
                .collect();
            assert_eq!(owners.len(), 1, "{client:?} is in {owners:?}");
            assert_eq!(client.entry().name, owners[0]);
        }
        assert_eq!(Client::Yarn.path(), "npm/");
        assert_eq!(Client::Uv.path(), "pypi/simple/");
        assert_eq!(Client::Cargo.path(), "cargo/index/");
        assert_eq!(Client::Apt.path(), "apt/");
    }

    #[test]
    fn table_names_are_the_adapters_names_and_unique() {
        for (entry, registry) in registries() {
            assert_eq!((registry.adapter)().name(), entry.name);
            assert_eq!(registry.key, format!("{}-upstream", entry.name));
        }
        let mut names: Vec<&str> = TABLE.iter().map(|e| e.name).collect();
        names.sort();
        names.dedup();
        assert_eq!(names.len(), TABLE.len());
        assert_eq!(
            base_adapters().iter().map(|a| a.name()).collect::<Vec<_>>(),
            ["npm", "cargo", "pypi"]
        );
    }
}
