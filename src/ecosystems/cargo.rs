//! cargo's entry in the ecosystem table: its adapter, its upstream (a sparse index: cargo's
//! crates-io replacement, else its registry cache, else the index cargo itself would use),
//! `cairn setup cargo` (a source replacement in `$CARGO_HOME/config.toml`), and `Cargo.lock`.
//! `registries.rs`: cargo's alternative registries, served beside it.

pub mod registries;

use std::net::SocketAddr;
use std::path::Path;
use std::process::Stdio;
use std::sync::Arc;
use std::time::Duration;

use anyhow::{Context, Result};
use cairn_mirror::upstream::{redact, redact_text};
use futures_util::future::BoxFuture;
use url::Url;

use super::discover::{Env, Found, not_installed, points_at_self};
use super::lockfiles::Item;
use super::{CaWay, Client, Entry, Kind, Lockfiles, Registry, TokenWay};

pub const ENTRY: Entry = Entry {
    name: "cargo",
    route: "cargo/index/",
    clients: &[Client::Cargo],
    lockfiles: Lockfiles {
        names: &["Cargo.lock"],
        read: read_lockfile,
    },
    kind: Kind::Registry(Registry {
        key: "cargo-upstream",
        adapter: || Arc::new(cairn_cargo::Cargo),
        discover,
        routed: super::no_routes,
        print_setup,
        apply_setup,
        token: |_| TokenWay::CargoRegistry,
        ca: |_, file| {
            let home = cargo_home();
            let mut http = toml::Table::new();
            http.insert("cainfo".into(), file.display().to_string().into());
            let mut table = toml::Table::new();
            table.insert("http".into(), toml::Value::Table(http));
            CaWay::Toml {
                path: cargo_config_path(&home).unwrap_or_else(|| home.join("config.toml")),
                table,
            }
        },
    }),
};

fn read_lockfile(file: &str, _path: &Path, text: &str) -> Result<Vec<Item>> {
    Ok(cairn_cargo::lockfile::read(file, text)?
        .into_iter()
        .map(Item::Cargo)
        .collect())
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

/// The node as a registry of cargo's that crates-io is replaced with, and cargo's `cargo:token`
/// provider on (added to the providers `config` names, if it names some), merged into
/// `config`; the plain source replacement an earlier `setup` wrote is taken out (a name cannot
/// be both a source and a registry).
pub fn cargo_token_config(config: &mut toml::Table, url: &Url) {
    let sources = config
        .entry("source")
        .or_insert_with(|| toml::Value::Table(toml::Table::new()));
    if let Some(sources) = sources.as_table_mut() {
        sources.remove("cairn");
        let mut crates_io = toml::Table::new();
        crates_io.insert("replace-with".into(), "cairn".into());
        sources.insert("crates-io".into(), toml::Value::Table(crates_io));
    }
    let registries = config
        .entry("registries")
        .or_insert_with(|| toml::Value::Table(toml::Table::new()));
    if let Some(registries) = registries.as_table_mut() {
        let mut cairn = toml::Table::new();
        cairn.insert("index".into(), format!("sparse+{url}").into());
        registries.insert("cairn".into(), toml::Value::Table(cairn));
    }
    let registry = config
        .entry("registry")
        .or_insert_with(|| toml::Value::Table(toml::Table::new()));
    if let Some(registry) = registry.as_table_mut() {
        let providers = registry
            .entry("global-credential-providers")
            .or_insert_with(|| toml::Value::Array(Vec::new()));
        if let Some(providers) = providers.as_array_mut()
            && !providers.iter().any(|p| p.as_str() == Some("cargo:token"))
        {
            providers.push("cargo:token".into());
        }
    }
}

/// The token of the node's registry in cargo's `credentials.toml`, merged into `credentials`.
pub fn cargo_token_credentials(credentials: &mut toml::Table, secret: &str) {
    let registries = credentials
        .entry("registries")
        .or_insert_with(|| toml::Value::Table(toml::Table::new()));
    if let Some(registries) = registries.as_table_mut() {
        let mut cairn = toml::Table::new();
        cairn.insert("token".into(), secret.into());
        registries.insert("cairn".into(), toml::Value::Table(cairn));
    }
}

/// What `cairn setup cargo` prints: the source replacement, as TOML.
fn print_setup(_client: Client, url: &Url) -> Result<String> {
    let mut snippet = toml::Table::new();
    cargo_config(&mut snippet, url);
    Ok(format!(
        "# Add to $CARGO_HOME/config.toml (or run this command with --apply):\n{}",
        toml::to_string(&snippet).context("cargo config")?
    ))
}

/// `cairn setup cargo --apply`: the source replacement merged into cargo's config file.
fn apply_setup(_client: Client, url: &Url) -> BoxFuture<'_, Result<()>> {
    Box::pin(async move {
        let home = cargo_home();
        let path = cargo_config_path(&home).unwrap_or_else(|| home.join("config.toml"));
        crate::settings::edit_toml(&path, |config| cargo_config(config, url))?;
        println!(
            "wrote the crates-io source replacement to {}",
            path.display()
        );
        Ok(())
    })
}

/// `$CARGO_HOME`, else `~/.cargo`.
pub fn cargo_home() -> std::path::PathBuf {
    std::env::var_os("CARGO_HOME")
        .map(std::path::PathBuf::from)
        .unwrap_or_else(|| {
            std::env::var_os("HOME")
                .map(std::path::PathBuf::from)
                .unwrap_or_default()
                .join(".cargo")
        })
}

/// cargo's user config file, if any (`config.toml`, or the older `config`).
pub fn cargo_config_path(home: &std::path::Path) -> Option<std::path::PathBuf> {
    ["config.toml", "config"]
        .iter()
        .map(|f| home.join(f))
        .find(|p| p.is_file())
}

/// The registry a `[source.crates-io] replace-with` in cargo's config points at, if any.
fn cargo_replacement(config: &toml::Table) -> Option<String> {
    let sources = config.get("source")?.as_table()?;
    let name = sources.get("crates-io")?.get("replace-with")?.as_str()?;
    Some(sources.get(name)?.get("registry")?.as_str()?.to_owned())
}

/// The sparse index cargo's registry cache is named after (`<host>-<hash>` under
/// `registry/index/`, skipping git indexes).
fn cargo_cached_index(home: &std::path::Path) -> Option<String> {
    let mut names: Vec<String> = std::fs::read_dir(home.join("registry").join("index"))
        .ok()?
        .flatten()
        .filter(|e| e.path().is_dir() && !e.path().join(".git").exists())
        .filter_map(|e| e.file_name().into_string().ok())
        .collect();
    names.sort();
    names.iter().find_map(|name| {
        let (host, hash) = name.rsplit_once('-')?;
        (hash.len() == 16 && hash.chars().all(|c| c.is_ascii_hexdigit()) && host.contains('.'))
            .then(|| format!("https://{host}/"))
    })
}

/// The cargo upstream (a sparse index): configured, else cargo's crates-io replacement, else the
/// index cargo's registry cache is named after, else the one cargo itself would use.
fn discover<'a>(
    env: &'a Env,
    configured: Option<&'a str>,
    listen: &'a SocketAddr,
    public: Option<&'a Url>,
) -> BoxFuture<'a, Result<Found, String>> {
    Box::pin(cargo_in(env, configured, listen, public))
}

pub(super) async fn cargo_in(
    env: &Env,
    configured: Option<&str>,
    listen: &SocketAddr,
    public: Option<&Url>,
) -> Result<Found, String> {
    let parse = |text: &str| {
        let text = text.strip_prefix("sparse+").unwrap_or(text);
        Url::parse(text).map_err(|e| format!("invalid cargo upstream {:?}: {e}", redact_text(text)))
    };
    if let Some(text) = configured {
        return Ok(Found::Configured(parse(text)?));
    }
    let hint = "set --cargo-upstream, CAIRN_CARGO_UPSTREAM or cargo-upstream in cairn.toml";
    let home = env.cargo_home.clone();
    if let Some(path) = cargo_config_path(&home) {
        let text = std::fs::read_to_string(&path)
            .map_err(|e| format!("cannot read {}: {e}; {hint}", path.display()))?;
        let config: toml::Table = toml::from_str(&text)
            .map_err(|e| format!("cannot parse {}: {e}; {hint}", path.display()))?;
        if let Some(registry) = cargo_replacement(&config) {
            if !registry.starts_with("sparse+") {
                return Err(format!(
                    "cargo's crates-io replacement {:?} is not a sparse index; {hint}",
                    redact_text(&registry)
                ));
            }
            let url = parse(&registry)?;
            if points_at_self(&url, listen, public) {
                return Err(format!(
                    "cargo's crates-io replacement ({}) is this Cairn node; {hint} (cairn setup cargo --apply records it)",
                    redact(&url)
                ));
            }
            return Ok(Found::Discovered {
                url,
                from: "crates-io source replacement in cargo's config",
            });
        }
    }
    if let Some(url) = cargo_cached_index(&home) {
        return Ok(Found::Discovered {
            url: parse(&url)?,
            from: "cargo's registry cache",
        });
    }
    let Some(cargo) = env.find("cargo") else {
        return Err(not_installed("cargo", "cargo", "cargo-upstream"));
    };
    let url = cargo_default_index(&cargo, &home)
        .await
        .map_err(|e| format!("{e}; {hint}"))?;
    let url = parse(&url)?;
    if points_at_self(&url, listen, public) {
        return Err(format!(
            "cargo's registry ({}) is this Cairn node; {hint}",
            redact(&url)
        ));
    }
    Ok(Found::Discovered {
        url,
        from: "cargo's default registry",
    })
}

/// The URL in cargo's "failed to download from `URL/config.json`" error, without `config.json`.
fn index_from_cargo_error(stderr: &str) -> Option<String> {
    let marker = "failed to download from `";
    let at = stderr.find(marker)? + marker.len();
    let url = &stderr[at..][..stderr[at..].find('`')?];
    let index = url.strip_suffix("config.json")?;
    (index.starts_with("https://") || index.starts_with("http://")).then(|| index.to_owned())
}

/// Ask cargo which sparse index it uses for crates-io when its config does not say and it has no
/// registry cache yet: resolve a throw-away project with one dependency, with cargo's user
/// config but an empty home, through an HTTP proxy on a closed local port. cargo's first request
/// (the index's `config.json`) fails before anything leaves the machine, and its error names the
/// URL. Nothing is written outside a temporary directory, which is removed.
async fn cargo_default_index(cargo: &Path, home: &Path) -> Result<String, String> {
    let nanos = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| d.as_nanos());
    let dir =
        std::env::temp_dir().join(format!("cairn-cargo-probe-{}-{nanos}", std::process::id()));
    let result = probe_cargo_in(cargo, home, &dir).await;
    let _ = std::fs::remove_dir_all(&dir);
    result
}

async fn probe_cargo_in(cargo: &Path, home: &Path, dir: &Path) -> Result<String, String> {
    let io =
        |e: std::io::Error| format!("cannot prepare a probe of cargo in {}: {e}", dir.display());
    let probe_home = dir.join("home");
    std::fs::create_dir_all(dir.join("src")).map_err(io)?;
    std::fs::create_dir_all(&probe_home).map_err(io)?;
    if let Some(config) = cargo_config_path(home) {
        std::fs::copy(&config, probe_home.join("config.toml")).map_err(io)?;
    }
    std::fs::write(
        dir.join("Cargo.toml"),
        "[package]\nname = \"cairn-probe\"\nversion = \"0.0.0\"\nedition = \"2021\"\n\n\
         [dependencies]\ncairn-probe-dependency = \"1\"\n",
    )
    .map_err(io)?;
    std::fs::write(dir.join("src/lib.rs"), "").map_err(io)?;
    // A port that was free a moment ago: the proxy connection is refused at once.
    let closed = std::net::TcpListener::bind("127.0.0.1:0")
        .and_then(|l| l.local_addr())
        .map_err(|e| format!("cannot find a closed local port: {e}"))?;
    let child = tokio::process::Command::new(cargo)
        .args(["generate-lockfile", "--quiet"])
        .current_dir(dir)
        .env("CARGO_HOME", &probe_home)
        .env("CARGO_HTTP_PROXY", format!("http://{closed}"))
        .env("CARGO_NET_RETRY", "0")
        .env("CARGO_HTTP_TIMEOUT", "5")
        .env_remove("CARGO_NET_OFFLINE")
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(Stdio::piped())
        .kill_on_drop(true)
        .output();
    let out = tokio::time::timeout(Duration::from_secs(15), child)
        .await
        .map_err(|_| "asking cargo for its registry took over 15 s".to_owned())?
        .map_err(|e| format!("cannot run {}: {e}", cargo.display()))?;
    let stderr = String::from_utf8_lossy(&out.stderr);
    index_from_cargo_error(&stderr).ok_or_else(|| {
        // cargo's own error line (a failing toolchain prints a backtrace after it).
        let said = stderr
            .lines()
            .map(str::trim)
            .find(|l| l.starts_with("error") || l.contains("panicked"))
            .or_else(|| stderr.lines().map(str::trim).find(|l| !l.is_empty()))
            .unwrap_or("nothing");
        format!(
            "cannot learn cargo's default registry: `cargo generate-lockfile` named no sparse index \
             Cairn can front (cargo said: {})",
            redact_text(said)
        )
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::ecosystems::discover::testing::{env, listen, run};

    #[test]
    fn setup_prints_a_source_replacement_discovery_reads_back() {
        let url = Url::parse("http://127.0.0.1:7777/cargo/index/").expect("url");
        let text = print_setup(Client::Cargo, &url).expect("cargo");
        let (comment, snippet) = text.split_once('\n').expect("two parts");
        assert_eq!(
            comment,
            "# Add to $CARGO_HOME/config.toml (or run this command with --apply):"
        );
        let config: toml::Table = toml::from_str(snippet).expect("TOML");
        assert_eq!(
            cargo_replacement(&config).as_deref(),
            Some("sparse+http://127.0.0.1:7777/cargo/index/")
        );
    }

    #[test]
    fn replacement_and_cache_names() {
        let config: toml::Table = toml::from_str(
            "[source.crates-io]\nreplace-with = \"corp\"\n[source.corp]\nregistry = \"sparse+https://mirror.invalid/index/\"\n",
        )
        .expect("toml");
        assert_eq!(
            cargo_replacement(&config).as_deref(),
            Some("sparse+https://mirror.invalid/index/")
        );
        let home = tempfile::tempdir().expect("tempdir");
        let index = home.path().join("registry/index");
        std::fs::create_dir_all(index.join("index.example.invalid-1949cf8c6b5b557f")).expect("dir");
        std::fs::create_dir_all(index.join("git.example.invalid-1ecc6299db9ec823/.git"))
            .expect("dir");
        assert_eq!(
            cargo_cached_index(home.path()).as_deref(),
            Some("https://index.example.invalid/")
        );
    }

    #[test]
    fn cargo_with_no_registry_cache_is_asked_for_its_index() {
        use std::os::unix::fs::PermissionsExt as _;
        let tmp = tempfile::tempdir().expect("tempdir");
        let (bin, home) = (tmp.path().join("bin"), tmp.path().join("cargo-home"));
        std::fs::create_dir_all(&bin).expect("bin");
        // A cargo that fails its first download as cargo does, if it was sent through a proxy.
        let script = "#!/bin/sh\n[ -n \"$CARGO_HTTP_PROXY\" ] || exit 3\n\
            echo 'error: failed to get `cairn-probe-dependency`' >&2\n\
            echo 'Caused by:' >&2\n\
            echo '  failed to download from `https://index.example.invalid/config.json`' >&2\n\
            exit 101\n";
        let cargo = bin.join("cargo");
        std::fs::write(&cargo, script).expect("script");
        std::fs::set_permissions(&cargo, std::fs::Permissions::from_mode(0o755)).expect("chmod");
        let found = run(cargo_in(&env(&bin, &home), None, &listen(), None)).expect("found");
        assert_eq!(
            found,
            Found::Discovered {
                url: Url::parse("https://index.example.invalid/").expect("url"),
                from: "cargo's default registry"
            }
        );
        assert!(!home.exists(), "the probe wrote into cargo's home");
    }

    #[test]
    fn the_installed_cargo_names_its_default_sparse_index_without_network() {
        let tmp = tempfile::tempdir().expect("tempdir");
        let path = std::env::var_os("PATH").expect("PATH");
        let env = Env {
            path: Some(path),
            cargo_home: tmp.path().join("empty-home"),
            pip_index_url: None,
            pip_extra_index_url: None,
            netrc: tmp.path().join(".netrc"),
            cargo_vars: Vec::new(),
            home: tmp.path().to_owned(),
            cwd: tmp.path().to_owned(),
        };
        let found = run(cargo_in(&env, None, &listen(), None)).expect("cargo must be installed");
        let url = found.url();
        assert_eq!(url.scheme(), "https", "{url}");
        assert!(url.path().ends_with('/'), "{url}");
        assert!(!url.as_str().contains("config.json"), "{url}");
    }

    #[test]
    fn index_urls_from_cargo_errors() {
        assert_eq!(
            index_from_cargo_error(
                "x\n  failed to download from `https://i.example.invalid/a/config.json`\n"
            )
            .as_deref(),
            Some("https://i.example.invalid/a/")
        );
        assert_eq!(
            index_from_cargo_error("failed to download from `https://i.example.invalid/x.crate`"),
            None
        );
        assert_eq!(
            index_from_cargo_error("failed to fetch `https://git.example.invalid/`"),
            None
        );
    }
}
