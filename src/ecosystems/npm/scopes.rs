//! npm's scoped registries and the credentials of npm's upstreams. A scope (`@corp`) is
//! routed to exactly its registry: every `@corp/…` package is looked up there and nowhere
//! else, and no other package is ever asked of that registry. The scopes are `--npm-scope
//! @SCOPE=URL` when given, else npm's own `@SCOPE:registry` settings (`npm config list
//! --json`, which merges the project's, the user's and the global configuration); each
//! upstream's credentials come from the `.npmrc` files npm reads ([`super::super::npmrc`]).

use std::net::SocketAddr;
use std::path::{Path, PathBuf};

use cairn_mirror::RoutedUpstream;
use cairn_mirror::upstream::routing::Pattern;
use cairn_mirror::upstream::{redact, redact_text};
use futures_util::future::BoxFuture;
use url::Url;

use crate::ecosystems::discover::{Env, client_setting_in, points_at_self, with_slash};
use crate::ecosystems::npmrc::Npmrc;
use crate::ecosystems::{RouteSettings, Upstreams};

/// The longest npm scope name (npm's limit on a whole package name).
const MAX_SCOPE: usize = 214;

/// [`super::Registry::routed`] for npm.
pub(in crate::ecosystems) fn routed<'a>(
    env: &'a Env,
    settings: &'a RouteSettings,
    main: Option<&'a Url>,
    listen: &'a SocketAddr,
    public: Option<&'a Url>,
) -> BoxFuture<'a, Result<Upstreams, String>> {
    Box::pin(routed_in(env, settings, main, listen, public))
}

pub(in crate::ecosystems) async fn routed_in(
    env: &Env,
    settings: &RouteSettings,
    main: Option<&Url>,
    listen: &SocketAddr,
    public: Option<&Url>,
) -> Result<Upstreams, String> {
    let configured = !settings.npm_scope.is_empty();
    let config = npm_config(env).await;
    let npmrc = Npmrc::read(&npmrc_files(env, config.as_ref()), &|name| {
        std::env::var(name).ok()
    });
    let scopes = if configured {
        settings
            .npm_scope
            .iter()
            .map(|entry| parse_scope_setting(entry))
            .collect::<Result<Vec<_>, _>>()?
    } else {
        config.as_ref().map(discovered_scopes).unwrap_or_default()
    };
    let mut out = Upstreams {
        routed_from: if configured {
            "configured"
        } else {
            "npm config list"
        },
        ..Upstreams::default()
    };
    if let Some(main) = main {
        match npmrc.credentials(main) {
            Ok(found) => {
                out.credentials_from = found.as_ref().map(|_| "npm's configuration".to_owned());
                out.credentials = found;
            }
            Err(why) => {
                tracing::warn!(target: crate::logging::TARGET, ecosystem = "npm", upstream = %redact(main), "credentials not used: {why}")
            }
        }
    }
    for (scope, url) in scopes {
        if points_at_self(&url, listen, public) {
            let why = format!(
                "npm scope {scope}'s registry ({}) is this Cairn node; set --npm-scope \
                 {scope}=URL (cairn setup npm --apply records it)",
                redact(&url)
            );
            if configured {
                return Err(why);
            }
            tracing::warn!(target: crate::logging::TARGET, ecosystem = "npm", "scope not routed: {why}");
            continue;
        }
        let credentials = match npmrc.credentials(&url) {
            Ok(found) => found,
            Err(why) => {
                tracing::warn!(target: crate::logging::TARGET, ecosystem = "npm", scope = %scope, upstream = %redact(&url), "credentials not used: {why}");
                None
            }
        };
        let pattern = Pattern::new(&format!("{scope}/*"))?;
        out.routed.push(RoutedUpstream {
            name: scope,
            patterns: vec![pattern],
            url,
            credentials,
        });
    }
    Ok(out)
}

/// `cairn setup npm|pnpm --apply`, for scopes: each scoped registry of npm's configuration is
/// recorded in `cairn.toml` (`npm-scope`, unless the file names some already), then the
/// client's `@SCOPE:registry` is pointed at the node, so that scoped packages come through it
/// too (routed there to their own registry).
pub async fn apply_setup(
    client: crate::ecosystems::Client,
    config: Option<&Path>,
    recorded: Option<&[String]>,
    listen: &SocketAddr,
    url: &Url,
) -> anyhow::Result<()> {
    let scopes: Vec<String> = match recorded {
        Some(entries) => entries
            .iter()
            .filter_map(|e| parse_scope_setting(e).ok().map(|(scope, _)| scope))
            .collect(),
        None => {
            let found = routed_in(
                &Env::current(),
                &RouteSettings::default(),
                None,
                listen,
                Some(url),
            )
            .await
            .map_err(anyhow::Error::msg)?;
            if found.routed.is_empty() {
                return Ok(());
            }
            let entries: Vec<String> = found
                .routed
                .iter()
                .map(|r| format!("{}={}", r.name, r.url))
                .collect();
            let path = crate::settings::record_list(config, "npm-scope", &entries)?;
            for r in &found.routed {
                println!(
                    "recorded npm-scope {}={} in {}",
                    r.name,
                    redact(&r.url),
                    path.display()
                );
            }
            found.routed.into_iter().map(|r| r.name).collect()
        }
    };
    let program = match client {
        crate::ecosystems::Client::Pnpm => "pnpm",
        _ => "npm",
    };
    for scope in scopes {
        crate::ecosystems::config_set(program, &format!("{scope}:registry"), url)
            .run()
            .await?;
    }
    Ok(())
}

/// `@SCOPE=URL`, checked.
fn parse_scope_setting(entry: &str) -> Result<(String, Url), String> {
    let shown = redact_text(entry);
    let (scope, url) = entry
        .split_once('=')
        .ok_or_else(|| format!("npm-scope {shown:?}: expected @SCOPE=URL"))?;
    let scope = check_scope(scope.trim()).map_err(|why| format!("npm-scope {shown:?}: {why}"))?;
    let url = Url::parse(url.trim()).map_err(|e| format!("npm-scope {shown:?}: {e}"))?;
    Ok((scope, with_slash(url)))
}

/// A scope as npm spells it: `@` and a lower-case name of URL-safe characters.
fn check_scope(scope: &str) -> Result<String, String> {
    let name = scope
        .strip_prefix('@')
        .ok_or_else(|| format!("the scope {scope:?} must start with @"))?;
    let fine = !name.is_empty()
        && scope.len() <= MAX_SCOPE
        && !name.starts_with('.')
        && name
            .bytes()
            .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b"-._~".contains(&b));
    if fine {
        Ok(scope.to_owned())
    } else {
        Err(format!(
            "the scope {scope:?} is not an npm scope (lower-case letters, digits, - . _ ~)"
        ))
    }
}

/// npm's merged configuration, or `None` (with a warning) when npm cannot say.
async fn npm_config(env: &Env) -> Option<serde_json::Value> {
    env.find("npm")?;
    let text = match client_setting_in(env, "npm", &["config", "list", "--json"]).await {
        Ok(text) => text,
        Err(e) => {
            tracing::warn!(target: crate::logging::TARGET, ecosystem = "npm", "npm's scoped registries not read: {e}");
            return None;
        }
    };
    match serde_json::from_str(&text) {
        Ok(config) => Some(config),
        Err(e) => {
            tracing::warn!(target: crate::logging::TARGET, ecosystem = "npm", "npm's scoped registries not read: `npm config list --json` printed no JSON ({e})");
            None
        }
    }
}

/// The `@SCOPE:registry` settings of npm's configuration; one that is not a scope or not a URL
/// is left out with a warning.
fn discovered_scopes(config: &serde_json::Value) -> Vec<(String, Url)> {
    let Some(keys) = config.as_object() else {
        return Vec::new();
    };
    let mut out = Vec::new();
    for (key, value) in keys {
        let Some(scope) = key.strip_suffix(":registry") else {
            continue;
        };
        let Some(text) = value.as_str() else {
            continue;
        };
        match (check_scope(scope), Url::parse(text)) {
            (Ok(scope), Ok(url)) => out.push((scope, with_slash(url))),
            (Err(why), _) => {
                tracing::warn!(target: crate::logging::TARGET, ecosystem = "npm", "{key} not routed: {why}")
            }
            (_, Err(e)) => {
                tracing::warn!(target: crate::logging::TARGET, ecosystem = "npm", "{key} not routed: {:?} is not a URL ({e})", redact_text(text))
            }
        }
    }
    out
}

/// The `.npmrc` files npm reads, in its order of precedence: the project's (the working
/// directory's), the user's, the global one.
fn npmrc_files(env: &Env, config: Option<&serde_json::Value>) -> Vec<PathBuf> {
    let named = |key: &str| {
        config
            .and_then(|c| c.get(key))
            .and_then(|v| v.as_str())
            .filter(|p| !p.is_empty())
            .map(PathBuf::from)
    };
    let mut files = vec![env.cwd.join(".npmrc")];
    files.push(named("userconfig").unwrap_or_else(|| env.home.join(".npmrc")));
    files.extend(named("globalconfig"));
    files.dedup();
    files
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::ecosystems::discover::testing::{env, listen, run};

    #[test]
    fn configured_scopes_are_checked() {
        let (scope, url) = parse_scope_setting("@corp=http://127.0.0.1:9/corp").expect("ok");
        assert_eq!(scope, "@corp");
        assert_eq!(url.as_str(), "http://127.0.0.1:9/corp/");
        for bad in [
            "corp=http://127.0.0.1:9/",
            "@Corp=http://127.0.0.1:9/",
            "@=http://127.0.0.1:9/",
            "@corp/x=http://127.0.0.1:9/",
            "@corp",
            "@corp=not a url",
        ] {
            assert!(parse_scope_setting(bad).is_err(), "{bad}");
        }
        let hidden = parse_scope_setting("@Corp=http://u:s3cret@h.invalid/").expect_err("bad");
        assert!(!hidden.contains("s3cret"), "{hidden}");
    }

    #[test]
    fn discovered_scopes_are_the_registry_keys_of_npms_config() {
        let config = serde_json::json!({
            "registry": "https://public.invalid/",
            "@corp:registry": "http://127.0.0.1:9/corp",
            "@Bad:registry": "http://127.0.0.1:9/",
            "@odd:registry": "nope",
            "userconfig": "/nonexistent/.npmrc",
        });
        let scopes = discovered_scopes(&config);
        assert_eq!(scopes.len(), 1);
        assert_eq!(scopes[0].0, "@corp");
        assert_eq!(scopes[0].1.as_str(), "http://127.0.0.1:9/corp/");
    }

    #[test]
    fn configured_scopes_take_credentials_from_the_user_npmrc_and_refuse_this_node() {
        let tmp = tempfile::tempdir().expect("tempdir");
        let (bin, home) = (tmp.path().join("bin"), tmp.path().join("home"));
        std::fs::create_dir_all(&bin).expect("bin");
        std::fs::create_dir_all(&home).expect("home");
        std::fs::write(
            home.join(".npmrc"),
            "//127.0.0.1:9/corp/:_authToken=t0ken\n//public.invalid/:_auth=dTpw\n",
        )
        .expect("npmrc");
        // No npm on PATH: the user's ~/.npmrc is still read.
        let env = env(&bin, &home);
        let settings = RouteSettings {
            npm_scope: vec!["@corp=http://127.0.0.1:9/corp/".into()],
            ..RouteSettings::default()
        };
        let main = Url::parse("https://public.invalid/").expect("url");
        let found = run(routed_in(&env, &settings, Some(&main), &listen(), None)).expect("ok");
        assert_eq!(found.routed.len(), 1);
        let corp = &found.routed[0];
        assert_eq!(corp.name, "@corp");
        assert!(corp.patterns[0].matches("@corp/x"));
        assert_eq!(
            corp.credentials,
            Some(cairn_mirror::upstream::Credentials::Bearer("t0ken".into()))
        );
        assert_eq!(
            found.credentials,
            Some(cairn_mirror::upstream::Credentials::Basic {
                user: "u".into(),
                password: "p".into()
            })
        );
        let to_self = RouteSettings {
            npm_scope: vec!["@corp=http://127.0.0.1:7777/npm/".into()],
            ..RouteSettings::default()
        };
        let err = run(routed_in(&env, &to_self, None, &listen(), None)).expect_err("self");
        assert!(err.contains("is this Cairn node"), "{err}");
    }
}
