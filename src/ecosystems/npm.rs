//! npm's entry in the ecosystem table: its adapter, its upstream (npm's own `registry`
//! setting), `cairn setup npm|yarn|pnpm`, and its lockfiles (`package-lock.json`,
//! `npm-shrinkwrap.json`, `yarn.lock`, `pnpm-lock.yaml`).

pub mod scopes;

use std::net::SocketAddr;
use std::path::Path;
use std::sync::Arc;

use anyhow::{Context, Result};
use cairn_mirror::upstream::{redact, redact_text};
use futures_util::future::BoxFuture;
use url::Url;

use super::discover::{
    Env, Found, client_setting, client_setting_in, not_installed, points_at_self,
};
use super::lockfiles::Item;
use super::{
    CaWay, Client, Entry, Kind, Lockfiles, Registry, Step, TokenWay, config_set, point_at_cairn,
};

pub const ENTRY: Entry = Entry {
    name: "npm",
    route: "npm/",
    clients: &[Client::Npm, Client::Yarn, Client::Pnpm],
    lockfiles: Lockfiles {
        names: &[
            "package-lock.json",
            "npm-shrinkwrap.json",
            "yarn.lock",
            "pnpm-lock.yaml",
        ],
        read: read_lockfile,
    },
    kind: Kind::Registry(Registry {
        key: "npm-upstream",
        adapter: || Arc::new(cairn_npm::Npm),
        discover,
        routed: scopes::routed,
        print_setup,
        apply_setup,
        token: |client| match client {
            Client::Yarn => TokenWay::ByHand(
                "yarn: set npmAuthToken in .yarnrc.yml (yarn 2+) or \
                 //HOST/npm/:_authToken in .npmrc (yarn 1)",
            ),
            _ => TokenWay::NpmAuthToken,
        },
        ca: |client, file| match client {
            Client::Yarn => CaWay::ByHand(format!(
                "yarn: set httpsCaFilePath: {} in .yarnrc.yml (yarn 2+), or `yarn config set \
                 cafile {}` (yarn 1)",
                file.display(),
                file.display()
            )),
            Client::Pnpm => config_set_value("pnpm", "cafile", &file.display().to_string()),
            _ => config_set_value("npm", "cafile", &file.display().to_string()),
        },
    }),
};

fn read_lockfile(file: &str, _path: &Path, text: &str) -> Result<Vec<Item>> {
    Ok(cairn_npm::lockfile::read(file, text)?
        .into_iter()
        .map(Item::Npm)
        .collect())
}

/// The npm upstream: configured, else npm's own `registry` setting (`npm config get
/// registry`, which honours the user's and the project's `.npmrc` and `NPM_CONFIG_REGISTRY`).
fn discover<'a>(
    env: &'a Env,
    configured: Option<&'a str>,
    listen: &'a SocketAddr,
    public: Option<&'a Url>,
) -> BoxFuture<'a, Result<Found, String>> {
    Box::pin(npm_in(env, configured, listen, public))
}

pub(super) async fn npm_in(
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

/// What `cairn setup npm|pnpm|yarn` prints.
fn print_setup(client: Client, url: &Url) -> Result<String> {
    let mut out = point_at_cairn(client);
    match client {
        Client::Yarn => {
            out.push_str("# yarn 1:\n");
            out.push_str(&format!("yarn config set registry {url}\n"));
            out.push_str("# yarn 2+, in ~/.yarnrc.yml (or a project's .yarnrc.yml, which wins):\n");
            out.push_str(&super::yarnrc::edit("", url));
        }
        _ => {
            out.push_str(&format!("{}\n", program_step(client, url).shown()));
            if client == Client::Npm {
                out.push_str(&format!("# or, in .npmrc: registry={url}\n"));
            }
        }
    }
    Ok(out)
}

/// `npm|pnpm config set registry URL`.
fn program_step(client: Client, url: &Url) -> Step {
    match client {
        Client::Pnpm => config_set("pnpm", "registry", url),
        Client::Yarn => config_set("yarn", "registry", url),
        _ => config_set("npm", "registry", url),
    }
}

/// `cairn setup npm|pnpm|yarn --apply`: the client's own `config set registry`; for yarn,
/// `~/.yarnrc.yml` (yarn 2+), and `yarn config set` only when the `yarn` on `PATH` is yarn 1.
fn apply_setup(client: Client, url: &Url) -> BoxFuture<'_, Result<()>> {
    Box::pin(async move {
        if client == Client::Yarn {
            let v1 = yarn_is_v1().await;
            apply_yarn_berry(url)?;
            if !v1 {
                return Ok(());
            }
        }
        program_step(client, url).run().await
    })
}

/// True when the `yarn` on the PATH is yarn 1 (classic). yarn 2+ is often a per-project
/// version (corepack), so its configuration is written whatever this says.
async fn yarn_is_v1() -> bool {
    client_setting("yarn", &["--version"])
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
    crate::settings::write_whole(&path, &super::yarnrc::edit(&existing, url), 0o644)?;
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

/// `PROGRAM config set KEY VALUE`, as the CA step.
fn config_set_value(program: &'static str, key: &str, value: &str) -> CaWay {
    CaWay::Step(Step {
        program,
        args: vec!["config".into(), "set".into(), key.into(), value.into()],
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn npm_setup_prints_the_config_command_and_the_npmrc_line() {
        let url = Url::parse("http://127.0.0.1:7777/npm/").expect("url");
        assert_eq!(
            print_setup(Client::Npm, &url).expect("npm"),
            "# Point npm at Cairn (or run this command with --apply):\n\
             npm config set registry http://127.0.0.1:7777/npm/\n\
             # or, in .npmrc: registry=http://127.0.0.1:7777/npm/\n"
        );
        let pnpm = print_setup(Client::Pnpm, &url).expect("pnpm");
        assert!(
            pnpm.ends_with("\npnpm config set registry http://127.0.0.1:7777/npm/\n"),
            "{pnpm}"
        );
        let yarn = print_setup(Client::Yarn, &url).expect("yarn");
        assert!(
            yarn.contains("\nyarn config set registry http://127.0.0.1:7777/npm/\n# yarn 2+"),
            "{yarn}"
        );
        assert!(yarn.contains("npmRegistryServer"), "{yarn}");
    }
}
