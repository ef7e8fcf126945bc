//! Upstream discovery, what every ecosystem's shares: Cairn fronts whatever the machine's own
//! clients already use, so no registry host is written into Cairn itself. Each ecosystem's
//! module (`npm.rs`, `cargo.rs`, `pypi.rs`) asks its clients; a registry that points back at
//! this node (after `cairn setup CLIENT --apply`) is refused, and `setup` records the original
//! upstream in `cairn.toml` first.
//!
//! A client that is not installed (a dedicated cache host often has no npm or Python) turns its
//! ecosystem off with a message naming the flag that turns it on. Discovery reads the
//! environment through `Env`, so tests give it a fake `PATH` and home.

use std::ffi::OsString;
use std::net::SocketAddr;
use std::path::PathBuf;
use std::process::Stdio;
use std::time::Duration;

use cairn_mirror::upstream::redact;
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
    /// `PIP_EXTRA_INDEX_URL`.
    pub pip_extra_index_url: Option<String>,
    /// `NETRC`, else `~/.netrc`.
    pub netrc: PathBuf,
    /// The `CARGO_REGISTRIES_*` variables (alternative registries and their tokens).
    pub cargo_vars: Vec<(String, String)>,
    /// `$HOME`, where the user's own client settings live.
    pub home: PathBuf,
    /// The working directory, where a project's settings (`.npmrc`) live.
    pub cwd: PathBuf,
}

impl Env {
    pub fn current() -> Env {
        Env {
            path: std::env::var_os("PATH"),
            cargo_home: super::cargo::cargo_home(),
            pip_index_url: std::env::var("PIP_INDEX_URL")
                .ok()
                .filter(|u| !u.is_empty()),
            pip_extra_index_url: std::env::var("PIP_EXTRA_INDEX_URL")
                .ok()
                .filter(|u| !u.is_empty()),
            netrc: std::env::var_os("NETRC")
                .map(PathBuf::from)
                .unwrap_or_else(|| {
                    PathBuf::from(std::env::var_os("HOME").unwrap_or_default()).join(".netrc")
                }),
            cargo_vars: std::env::vars()
                .filter(|(k, _)| k.starts_with("CARGO_REGISTRIES_"))
                .collect(),
            home: std::env::var_os("HOME")
                .map(PathBuf::from)
                .unwrap_or_default(),
            cwd: std::env::current_dir().unwrap_or_default(),
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
pub fn not_installed(client: &str, ecosystem: &str, flag: &str) -> String {
    let env = crate::settings::env_name(flag);
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
pub async fn client_setting_in(env: &Env, program: &str, args: &[&str]) -> Result<String, String> {
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

/// `url` with a trailing `/` on its path: a registry base, under which paths are joined.
pub fn with_slash(mut url: Url) -> Url {
    if !url.path().ends_with('/') {
        let path = format!("{}/", url.path());
        url.set_path(&path);
    }
    url
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

/// What the ecosystems' discovery tests share: a fake environment and a runtime.
#[cfg(test)]
pub(crate) mod testing {
    use std::path::Path;

    use super::*;

    pub fn env(path: &Path, home: &Path) -> Env {
        Env {
            path: Some(path.as_os_str().to_owned()),
            cargo_home: home.to_owned(),
            pip_index_url: None,
            pip_extra_index_url: None,
            netrc: home.join(".netrc"),
            cargo_vars: Vec::new(),
            home: home.to_owned(),
            cwd: home.to_owned(),
        }
    }

    pub fn run<T>(f: impl std::future::Future<Output = T>) -> T {
        tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
            .expect("runtime")
            .block_on(f)
    }

    pub fn listen() -> SocketAddr {
        "127.0.0.1:7777".parse().expect("addr")
    }
}

#[cfg(test)]
mod env_tests {
    use super::testing::{env, listen, run};
    use super::*;
    use crate::ecosystems::{cargo::cargo_in, npm::npm_in, pypi::pypi_in};

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
}
