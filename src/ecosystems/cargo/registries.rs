//! cargo's alternative registries (`[registries.NAME]`), each served at `/cargo/NAME/index/`
//! beside the crates-io replacement and kept apart from it (index namespace `cargo/NAME`).
//!
//! Which: `--cargo-registry NAME=URL` when given, else every sparse registry of cargo's own
//! configuration: `[registries.NAME] index = "sparse+URL"` in the working directory's
//! `.cargo/config.toml` (which wins) and `$CARGO_HOME/config.toml`, and
//! `CARGO_REGISTRIES_NAME_INDEX`. A git index cannot be fronted (the log says so); a registry
//! that is this node (the registry `setup` names for tokens) is left out.
//!
//! Each registry's token, as cargo's `cargo:token` provider finds it:
//! `CARGO_REGISTRIES_NAME_TOKEN`, else `[registries.NAME] token` in
//! `$CARGO_HOME/credentials.toml`, else in the config. It is sent as the whole `Authorization`
//! value, as cargo sends it, to the registry's own origin only.

use std::net::SocketAddr;
use std::path::Path;
use std::sync::Arc;

use anyhow::{Result, bail};
use cairn_mirror::EcosystemSetup;
use cairn_mirror::upstream::{Credentials, redact, redact_text};
use url::Url;

use crate::ecosystems::discover::{Env, points_at_self, with_slash};

/// Largest cargo config or credentials file read.
const MAX_CONFIG: u64 = 1 << 20;

/// One registry found.
#[derive(Debug)]
struct Found {
    name: String,
    url: Url,
    token: Option<String>,
    from: &'static str,
}

/// The setups of cargo's alternative registries (see the module doc).
pub fn setups(
    env: &Env,
    configured: &[String],
    listen: &SocketAddr,
    public: Option<&Url>,
) -> Result<Vec<EcosystemSetup>> {
    let found = if configured.is_empty() {
        discovered(env)
    } else {
        configured
            .iter()
            .map(|entry| parse_setting(entry))
            .collect::<Result<Vec<_>>>()?
    };
    let credentials = read_toml(&env.cargo_home.join("credentials.toml"));
    let mut out = Vec::new();
    for mut registry in found {
        if points_at_self(&registry.url, listen, public) {
            if !configured.is_empty() {
                bail!(
                    "cargo registry {} ({}) is this Cairn node; give --cargo-registry {}=URL the \
                     registry itself",
                    registry.name,
                    redact(&registry.url),
                    registry.name
                );
            }
            continue;
        }
        let ecosystem = match cairn_cargo::Alternative::new(&registry.name) {
            Ok(ecosystem) => ecosystem,
            Err(why) if configured.is_empty() => {
                tracing::warn!(target: crate::logging::TARGET, ecosystem = "cargo", "registry not served: {why}");
                continue;
            }
            Err(why) => bail!(why),
        };
        registry.token = token_of(env, &registry.name, credentials.as_ref()).or(registry.token);
        let name = cairn_mirror::ecosystem::Ecosystem::name(&ecosystem).to_owned();
        tracing::info!(target: crate::logging::TARGET, ecosystem = %name, upstream = %redact(&registry.url), from = registry.from, token = registry.token.is_some(), "upstream (alternative registry)");
        let mut setup = EcosystemSetup::new(Arc::new(ecosystem), &name, Ok(registry.url));
        setup.credentials = registry.token.map(Credentials::Token);
        out.push(setup);
    }
    Ok(out)
}

/// `NAME=URL` (the URL with or without cargo's `sparse+`).
fn parse_setting(entry: &str) -> Result<Found> {
    let shown = redact_text(entry);
    let Some((name, url)) = entry.split_once('=') else {
        bail!("cargo-registry {shown:?}: expected NAME=URL");
    };
    let url = url.trim();
    let url = Url::parse(url.strip_prefix("sparse+").unwrap_or(url))
        .map_err(|e| anyhow::anyhow!("cargo-registry {shown:?}: {e}"))?;
    Ok(Found {
        name: name.trim().to_owned(),
        url: with_slash(url),
        token: None,
        from: "configured",
    })
}

/// The sparse registries of cargo's configuration and environment.
fn discovered(env: &Env) -> Vec<Found> {
    let mut out: Vec<Found> = Vec::new();
    let mut add = |name: &str, index: &str, token: Option<String>, from: &'static str| {
        if out.iter().any(|f| f.name.eq_ignore_ascii_case(name)) {
            return;
        }
        let Some(sparse) = index.strip_prefix("sparse+") else {
            tracing::warn!(target: crate::logging::TARGET, ecosystem = "cargo", registry = name, "not served: only sparse registries (index = \"sparse+URL\") can be fronted");
            return;
        };
        match Url::parse(sparse) {
            Ok(url) => out.push(Found {
                name: name.to_owned(),
                url: with_slash(url),
                token,
                from,
            }),
            Err(e) => {
                tracing::warn!(target: crate::logging::TARGET, ecosystem = "cargo", registry = name, "not served: {:?} is not a URL ({e})", redact_text(sparse))
            }
        }
    };
    // The environment wins over every file, as in cargo.
    for (var, value) in &env.cargo_vars {
        if let Some(upper) = var
            .strip_prefix("CARGO_REGISTRIES_")
            .and_then(|v| v.strip_suffix("_INDEX"))
        {
            let name = upper.to_ascii_lowercase().replace('_', "-");
            add(&name, value, None, "CARGO_REGISTRIES_*_INDEX");
        }
    }
    let files = [
        (
            env.cwd.join(".cargo").join("config.toml"),
            "the project's .cargo/config.toml",
        ),
        (
            env.cwd.join(".cargo").join("config"),
            "the project's .cargo/config",
        ),
        (
            env.cargo_home.join("config.toml"),
            "$CARGO_HOME/config.toml",
        ),
        (env.cargo_home.join("config"), "$CARGO_HOME/config"),
    ];
    for (path, from) in files {
        let Some(config) = read_toml(&path) else {
            continue;
        };
        let Some(registries) = config.get("registries").and_then(|r| r.as_table()) else {
            continue;
        };
        for (name, registry) in registries {
            let Some(index) = registry.get("index").and_then(|i| i.as_str()) else {
                continue;
            };
            let token = registry
                .get("token")
                .and_then(|t| t.as_str())
                .map(str::to_owned);
            add(name, index, token, from);
        }
    }
    out
}

/// The token of registry `name`: `CARGO_REGISTRIES_NAME_TOKEN`, else `credentials.toml`.
fn token_of(env: &Env, name: &str, credentials: Option<&toml::Table>) -> Option<String> {
    let var = format!(
        "CARGO_REGISTRIES_{}_TOKEN",
        name.to_ascii_uppercase().replace('-', "_")
    );
    env.cargo_vars
        .iter()
        .find(|(k, _)| *k == var)
        .map(|(_, v)| v.clone())
        .or_else(|| {
            credentials?
                .get("registries")?
                .get(name)?
                .get("token")?
                .as_str()
                .map(str::to_owned)
        })
        .filter(|t| !t.is_empty())
}

/// A TOML file, `None` when missing; unreadable or malformed is a warning (cargo would
/// refuse it too).
fn read_toml(path: &Path) -> Option<toml::Table> {
    use std::io::Read as _;
    let file = match std::fs::File::open(path) {
        Ok(file) => file,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return None,
        Err(e) => {
            tracing::warn!(target: crate::logging::TARGET, file = %path.display(), "not read: {e}");
            return None;
        }
    };
    let mut text = String::new();
    if let Err(e) = file.take(MAX_CONFIG).read_to_string(&mut text) {
        tracing::warn!(target: crate::logging::TARGET, file = %path.display(), "not read: {e}");
        return None;
    }
    match text.parse::<toml::Table>() {
        Ok(table) => Some(table),
        Err(e) => {
            // The message may quote the file, tokens included: say only where.
            let at = e
                .span()
                .map_or(String::new(), |s| format!(" at byte {}", s.start));
            tracing::warn!(target: crate::logging::TARGET, file = %path.display(), "not read: not TOML{at}");
            None
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::ecosystems::discover::testing::{env, listen};

    #[test]
    fn sparse_registries_come_from_the_environment_then_the_project_then_cargo_home() {
        let tmp = tempfile::tempdir().expect("tempdir");
        let mut env = env(&tmp.path().join("bin"), &tmp.path().join("home"));
        env.cwd = tmp.path().join("project");
        std::fs::create_dir_all(env.cwd.join(".cargo")).expect("project");
        std::fs::create_dir_all(&env.cargo_home).expect("home");
        std::fs::write(
            env.cwd.join(".cargo/config.toml"),
            "[registries.corp]\nindex = \"sparse+https://project.invalid/index/\"\n",
        )
        .expect("project config");
        std::fs::write(
            env.cargo_home.join("config.toml"),
            "[registries.corp]\nindex = \"sparse+https://home.invalid/index/\"\n\
             [registries.old]\nindex = \"https://github.invalid/old-index\"\n\
             [registries.self]\nindex = \"sparse+http://127.0.0.1:7777/cargo/index/\"\n\
             [registries.tools]\nindex = \"sparse+https://tools.invalid/index\"\ntoken = \"in-config\"\n",
        )
        .expect("home config");
        std::fs::write(
            env.cargo_home.join("credentials.toml"),
            "[registries.corp]\ntoken = \"corp-s3cret\"\n",
        )
        .expect("credentials");
        env.cargo_vars = vec![
            (
                "CARGO_REGISTRIES_EDGE_INDEX".into(),
                "sparse+https://edge.invalid/".into(),
            ),
            ("CARGO_REGISTRIES_TOOLS_TOKEN".into(), "from-env".into()),
        ];
        let setups = setups(&env, &[], &listen(), None).expect("setups");
        let shown: Vec<(String, String, Option<Credentials>)> = setups
            .iter()
            .map(|s| {
                (
                    s.mount.clone(),
                    s.upstream.as_ref().expect("url").to_string(),
                    s.credentials.clone(),
                )
            })
            .collect();
        assert_eq!(
            shown,
            [
                ("cargo/edge".into(), "https://edge.invalid/".into(), None),
                (
                    "cargo/corp".into(),
                    "https://project.invalid/index/".into(),
                    Some(Credentials::Token("corp-s3cret".into()))
                ),
                (
                    "cargo/tools".into(),
                    "https://tools.invalid/index/".into(),
                    Some(Credentials::Token("from-env".into()))
                ),
            ]
        );
    }

    #[test]
    fn configured_registries_are_checked() {
        let tmp = tempfile::tempdir().expect("tempdir");
        let env = env(&tmp.path().join("bin"), tmp.path());
        let ok = setups(
            &env,
            &["corp=sparse+http://127.0.0.1:9/index".into()],
            &listen(),
            None,
        )
        .expect("ok");
        assert_eq!(ok[0].mount, "cargo/corp");
        for bad in [
            "corp",
            "index=http://127.0.0.1:9/",
            "c/d=http://127.0.0.1:9/",
            "corp=nope",
            "corp=http://127.0.0.1:7777/cargo/index/",
        ] {
            assert!(
                setups(&env, &[bad.into()], &listen(), None).is_err(),
                "{bad}"
            );
        }
    }
}
