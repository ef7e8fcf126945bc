//! Upstream discovery: Cairn fronts whatever the machine's own clients already use, so no
//! registry host is written into Cairn itself.
//!
//! npm: `npm config get registry`, which honours the user's and the project's `.npmrc` and
//! `NPM_CONFIG_REGISTRY`. A registry that points back at this node (after `cairn setup npm
//! --apply`) is refused; `setup` records the original upstream in `cairn.toml` first.
//!
//! A client that is not installed (a dedicated cache host often has no npm or Python) turns its
//! ecosystem off with a message naming the flag that turns it on. Discovery reads the
//! environment through `Env`, so tests give it a fake `PATH` and home.

use std::ffi::OsString;
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::process::Stdio;
use std::time::Duration;

use cairn_mirror::upstream::{redact, redact_text};
use url::Url;

/// How an upstream was chosen, for the start-up log and `cairn status`.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Found {
    Configured(Url),
    Discovered { url: Url, from: &'static str },
}

impl Found {
    pub fn url(&self) -> &Url {
        match self {
            Found::Configured(url) | Found::Discovered { url, .. } => url,
        }
    }

    /// The URL for logs and `cairn status`: any user name and password masked.
    pub fn shown(&self) -> String {
        redact(self.url())
    }
}

/// What discovery reads from the environment.
#[derive(Clone, Debug)]
pub struct Env {
    /// `PATH`, where clients are looked for.
    pub path: Option<OsString>,
    /// `$CARGO_HOME`, else `~/.cargo`.
    pub cargo_home: PathBuf,
    /// `PIP_INDEX_URL`.
    pub pip_index_url: Option<String>,
}

impl Env {
    pub fn current() -> Env {
        Env {
            path: std::env::var_os("PATH"),
            cargo_home: cargo_home(),
            pip_index_url: std::env::var("PIP_INDEX_URL")
                .ok()
                .filter(|u| !u.is_empty()),
        }
    }

    /// The executable `program` on `PATH`, if any.
    pub fn find(&self, program: &str) -> Option<PathBuf> {
        use std::os::unix::fs::PermissionsExt as _;
        std::env::split_paths(self.path.as_deref()?)
            .filter(|dir| !dir.as_os_str().is_empty())
            .map(|dir| dir.join(program))
            .find(|p| {
                std::fs::metadata(p)
                    .is_ok_and(|m| m.is_file() && m.permissions().mode() & 0o111 != 0)
            })
    }
}

/// `NAME is not installed here; turn ECOSYSTEM on with --FLAG URL (…)`.
fn not_installed(client: &str, ecosystem: &str, flag: &str) -> String {
    let env = format!("CAIRN_{}", flag.to_ascii_uppercase().replace('-', "_"));
    format!(
        "{client} is not installed here; turn {ecosystem} on with --{flag} URL (or {env}, or \
         {flag} in cairn.toml)"
    )
}

/// Run a client's config command and return its trimmed output (at most 15 s).
pub async fn client_setting(program: &str, args: &[&str]) -> Result<String, String> {
    client_setting_in(&Env::current(), program, args).await
}

/// `client_setting` with the client looked for on `env`'s `PATH`.
async fn client_setting_in(env: &Env, program: &str, args: &[&str]) -> Result<String, String> {
    let Some(path) = env.find(program) else {
        return Err(format!("cannot run `{program}`: not on PATH"));
    };
    let child = tokio::process::Command::new(path)
        .args(args)
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::null())
        .kill_on_drop(true)
        .output();
    match tokio::time::timeout(Duration::from_secs(15), child).await {
        Err(_) => Err(format!(
            "`{program} {}` did not answer within 15 s",
            args.join(" ")
        )),
        Ok(Err(e)) => Err(format!("cannot run `{program}`: {e}")),
        Ok(Ok(out)) if !out.status.success() => Err(format!(
            "`{program} {}` failed with {}",
            args.join(" "),
            out.status
        )),
        Ok(Ok(out)) => Ok(String::from_utf8_lossy(&out.stdout).trim().to_owned()),
    }
}

/// True when `url` points at this node (`listen`, or the loopback/any address on its port).
pub fn points_at_self(url: &Url, listen: &SocketAddr, public: Option<&Url>) -> bool {
    if let Some(public) = public
        && public.host_str() == url.host_str()
        && public.port_or_known_default() == url.port_or_known_default()
    {
        return true;
    }
    let Some(port) = url.port_or_known_default() else {
        return false;
    };
    if port != listen.port() {
        return false;
    }
    match url.host_str() {
        Some("localhost") => true,
        Some(host) => host
            .trim_start_matches('[')
            .trim_end_matches(']')
            .parse::<std::net::IpAddr>()
            .is_ok_and(|ip| ip.is_loopback() || ip == listen.ip() || listen.ip().is_unspecified()),
        None => false,
    }
}

/// The npm upstream: configured, else npm's own `registry` setting.
pub async fn npm(
    configured: Option<&str>,
    listen: &SocketAddr,
    public: Option<&Url>,
) -> Result<Found, String> {
    npm_in(&Env::current(), configured, listen, public).await
}

async fn npm_in(
    env: &Env,
    configured: Option<&str>,
    listen: &SocketAddr,
    public: Option<&Url>,
) -> Result<Found, String> {
    if let Some(text) = configured {
        let url = Url::parse(text)
            .map_err(|e| format!("invalid npm upstream {:?}: {e}", redact_text(text)))?;
        return Ok(Found::Configured(url));
    }
    let hint = "set --npm-upstream, CAIRN_NPM_UPSTREAM or npm-upstream in cairn.toml";
    if env.find("npm").is_none() {
        return Err(not_installed("npm", "npm", "npm-upstream"));
    }
    let text = client_setting_in(env, "npm", &["config", "get", "registry"])
        .await
        .map_err(|e| format!("cannot discover npm's registry ({e}); {hint}"))?;
    let url = Url::parse(&text).map_err(|e| {
        format!(
            "npm's registry setting {:?} is not a URL ({e}); {hint}",
            redact_text(&text)
        )
    })?;
    if points_at_self(&url, listen, public) {
        return Err(format!(
            "npm's registry ({}) is this Cairn node; {hint} (cairn setup npm --apply records it)",
            redact(&url)
        ));
    }
    Ok(Found::Discovered {
        url,
        from: "npm config get registry",
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn self_loops_are_detected() {
        let listen: SocketAddr = "127.0.0.1:7777".parse().expect("addr");
        let any: SocketAddr = "0.0.0.0:7777".parse().expect("addr");
        for (url, at, expect) in [
            ("http://127.0.0.1:7777/npm/", listen, true),
            ("http://localhost:7777/npm/", listen, true),
            ("http://[::1]:7777/npm/", listen, true),
            ("http://10.1.2.3:7777/npm/", any, true),
            ("http://127.0.0.1:8888/npm/", listen, false),
            ("https://upstream.invalid/", listen, false),
        ] {
            let url = Url::parse(url).expect("url");
            assert_eq!(points_at_self(&url, &at, None), expect, "{url} vs {at}");
        }
        let public = Url::parse("http://cache.internal:7777/").expect("url");
        let url = Url::parse("http://cache.internal:7777/npm/").expect("url");
        assert!(points_at_self(&url, &listen, Some(&public)));
    }
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
pub async fn cargo(
    configured: Option<&str>,
    listen: &SocketAddr,
    public: Option<&Url>,
) -> Result<Found, String> {
    cargo_in(&Env::current(), configured, listen, public).await
}

async fn cargo_in(
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
mod cargo_tests {
    use super::*;

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
}

/// The PyPI upstream (a simple index): configured, else `PIP_INDEX_URL`, else pip's configured
/// `index-url`, else pip's built-in default (asked of pip itself).
pub async fn pypi(
    configured: Option<&str>,
    listen: &SocketAddr,
    public: Option<&Url>,
) -> Result<Found, String> {
    pypi_in(&Env::current(), configured, listen, public).await
}

async fn pypi_in(
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
mod env_tests {
    use super::*;

    fn env(path: &Path, home: &Path) -> Env {
        Env {
            path: Some(path.as_os_str().to_owned()),
            cargo_home: home.to_owned(),
            pip_index_url: None,
        }
    }

    fn run<T>(f: impl std::future::Future<Output = T>) -> T {
        tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
            .expect("runtime")
            .block_on(f)
    }

    fn listen() -> SocketAddr {
        "127.0.0.1:7777".parse().expect("addr")
    }

    #[test]
    fn clients_missing_from_path_name_the_flag_that_turns_them_on() {
        let tmp = tempfile::tempdir().expect("tempdir");
        let (bin, home) = (tmp.path().join("bin"), tmp.path().join("cargo-home"));
        std::fs::create_dir_all(&bin).expect("bin");
        // A non-executable file named like a client is not one.
        std::fs::write(bin.join("npm"), "").expect("npm");
        let env = env(&bin, &home);
        let npm = run(npm_in(&env, None, &listen(), None)).expect_err("no npm");
        assert!(
            npm.starts_with("npm is not installed here; turn npm on with --npm-upstream URL"),
            "{npm}"
        );
        let pypi = run(pypi_in(&env, None, &listen(), None)).expect_err("no python3");
        assert!(
            pypi.starts_with(
                "pip (python3) is not installed here; turn PyPI on with --pypi-upstream URL"
            ),
            "{pypi}"
        );
        let cargo = run(cargo_in(&env, None, &listen(), None)).expect_err("no cargo");
        assert!(
            cargo.starts_with("cargo is not installed here; turn cargo on with --cargo-upstream URL (or CAIRN_CARGO_UPSTREAM"),
            "{cargo}"
        );
        // PIP_INDEX_URL needs no pip.
        let with_index = Env {
            pip_index_url: Some("http://pypi.example.invalid/simple/".into()),
            ..env.clone()
        };
        let found = run(pypi_in(&with_index, None, &listen(), None)).expect("index");
        assert_eq!(found.url().as_str(), "http://pypi.example.invalid/simple/");
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
