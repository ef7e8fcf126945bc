//! Upstream discovery: Cairn fronts whatever the machine's own clients already use, so no
//! registry host is written into Cairn itself.
//!
//! npm: `npm config get registry`, which honours the user's and the project's `.npmrc` and
//! `NPM_CONFIG_REGISTRY`. A registry that points back at this node (after `cairn setup npm
//! --apply`) is refused; `setup` records the original upstream in `cairn.toml` first.

use std::net::SocketAddr;
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

/// Run a client's config command and return its trimmed output (at most 15 s).
pub async fn client_setting(program: &str, args: &[&str]) -> Result<String, String> {
    let child = tokio::process::Command::new(program)
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
    if let Some(text) = configured {
        let url = Url::parse(text)
            .map_err(|e| format!("invalid npm upstream {:?}: {e}", redact_text(text)))?;
        return Ok(Found::Configured(url));
    }
    let hint = "set --npm-upstream, CAIRN_NPM_UPSTREAM or npm-upstream in cairn.toml";
    let text = client_setting("npm", &["config", "get", "registry"])
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
/// index cargo's registry cache is named after.
pub async fn cargo(
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
    let home = cargo_home();
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
    match cargo_cached_index(&home) {
        Some(url) => Ok(Found::Discovered {
            url: parse(&url)?,
            from: "cargo's registry cache",
        }),
        None => Err(format!(
            "no sparse index found in cargo's config or registry cache ({}); {hint}",
            home.display()
        )),
    }
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
    let parse = |text: &str| {
        Url::parse(text).map_err(|e| format!("invalid PyPI index {:?}: {e}", redact_text(text)))
    };
    if let Some(text) = configured {
        return Ok(Found::Configured(parse(text)?));
    }
    let hint = "set --pypi-upstream, CAIRN_PYPI_UPSTREAM or pypi-upstream in cairn.toml";
    let (text, from) = match std::env::var("PIP_INDEX_URL") {
        Ok(url) if !url.is_empty() => (url, "PIP_INDEX_URL"),
        _ => match client_setting(
            "python3",
            &["-m", "pip", "config", "get", "global.index-url"],
        )
        .await
        {
            Ok(url) if !url.is_empty() => (url, "pip config"),
            _ => {
                let default = client_setting(
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
