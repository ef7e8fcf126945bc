//! PyPI indexes beside the main one, and which projects each takes. `--pypi-index NAME=URL`
//! names an index (else pip's own `extra-index-url` settings do, each named by its
//! `HOST[:PORT]`); `--pypi-route PATTERN=NAME` sends the projects whose normalised names match
//! the pattern (`corp-*`) to that index, and to no other. Unlike pip, Cairn never merges the
//! pages of several indexes: a project comes from exactly one, so a public project published
//! under a private name cannot stand in for it. An index no route names takes nothing (the log
//! says so).
//!
//! Credentials: in an index's URL, else the `.netrc` entry of its host (`NETRC`, else
//! `~/.netrc`), as pip finds them; the main index's likewise.

use std::net::SocketAddr;

use cairn_mirror::RoutedUpstream;
use cairn_mirror::upstream::routing::Pattern;
use cairn_mirror::upstream::{redact, redact_text};
use cairn_pypi::name::normalize;
use futures_util::future::BoxFuture;
use url::Url;

use crate::ecosystems::discover::{Env, client_setting_in, points_at_self, with_slash};
use crate::ecosystems::netrc::Netrc;
use crate::ecosystems::{RouteSettings, Upstreams};

/// [`crate::ecosystems::Registry::routed`] for PyPI.
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
    let netrc = Netrc::read(&env.netrc);
    let from_netrc = |url: &Url| {
        let bare = url.username().is_empty() && url.password().is_none();
        url.host_str()
            .filter(|_| bare)
            .and_then(|host| netrc.credentials(host))
    };
    let mut out = Upstreams {
        routed_from: "configured",
        ..Upstreams::default()
    };
    if let Some(main) = main
        && let Some(found) = from_netrc(main)
    {
        out.credentials = Some(found);
        out.credentials_from = Some("netrc".to_owned());
    }
    let routes = settings
        .pypi_route
        .iter()
        .map(|entry| parse_route(entry))
        .collect::<Result<Vec<_>, _>>()?;
    let indexes = if !settings.pypi_index.is_empty() {
        settings
            .pypi_index
            .iter()
            .map(|entry| parse_index(entry))
            .collect::<Result<Vec<_>, _>>()?
    } else if routes.is_empty() {
        // Nothing would be routed to pip's extra indexes: they are not looked for.
        Vec::new()
    } else {
        out.routed_from = "pip's extra-index-url";
        extra_indexes(env).await
    };
    if let Some((_, name)) = routes
        .iter()
        .find(|(_, name)| !indexes.iter().any(|(n, _)| n == name))
    {
        let known: Vec<&str> = indexes.iter().map(|(n, _)| n.as_str()).collect();
        return Err(format!(
            "pypi-route names the index {name:?}, which is not one of {known:?} (--pypi-index \
             NAME=URL, or pip's extra-index-url named by host)"
        ));
    }
    for (name, url) in indexes {
        if points_at_self(&url, listen, public) {
            return Err(format!(
                "PyPI index {name} ({}) is this Cairn node; set --pypi-index {name}=URL to the \
                 index itself",
                redact(&url)
            ));
        }
        let patterns: Vec<Pattern> = routes
            .iter()
            .filter(|(_, n)| *n == name)
            .map(|(p, _)| p.clone())
            .collect();
        if patterns.is_empty() {
            tracing::warn!(target: crate::logging::TARGET, ecosystem = "pypi", index = %name, upstream = %redact(&url), "this index takes no project: route names to it with --pypi-route PATTERN={name}");
            continue;
        }
        let credentials = from_netrc(&url);
        out.routed.push(RoutedUpstream {
            name,
            patterns,
            url,
            credentials,
        });
    }
    Ok(out)
}

/// `PATTERN=NAME`: the pattern normalised as project names are.
fn parse_route(entry: &str) -> Result<(Pattern, String), String> {
    let (pattern, name) = entry
        .split_once('=')
        .ok_or_else(|| format!("pypi-route {entry:?}: expected PATTERN=NAME"))?;
    let pattern = Pattern::new(&normalize(pattern.trim()))
        .map_err(|e| format!("pypi-route {entry:?}: {e}"))?;
    Ok((
        pattern,
        check_name(name.trim()).map_err(|e| format!("pypi-route {entry:?}: {e}"))?,
    ))
}

/// `NAME=URL`.
fn parse_index(entry: &str) -> Result<(String, Url), String> {
    let shown = redact_text(entry);
    let (name, url) = entry
        .split_once('=')
        .ok_or_else(|| format!("pypi-index {shown:?}: expected NAME=URL"))?;
    let name = check_name(name.trim()).map_err(|e| format!("pypi-index {shown:?}: {e}"))?;
    let url = Url::parse(url.trim()).map_err(|e| format!("pypi-index {shown:?}: {e}"))?;
    Ok((name, with_slash(url)))
}

/// An index name: 1 to 64 of `a-z 0-9 . _ - :`.
fn check_name(name: &str) -> Result<String, String> {
    let fine = !name.is_empty()
        && name.len() <= 64
        && name
            .bytes()
            .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b"._-:".contains(&b));
    if fine {
        Ok(name.to_owned())
    } else {
        Err(format!(
            "the index name {name:?} must be 1 to 64 of a-z, 0-9, '.', '_', '-', ':'"
        ))
    }
}

/// pip's extra indexes (`PIP_EXTRA_INDEX_URL`, else `pip config get
/// global.extra-index-url`), each named by its `HOST[:PORT]`.
async fn extra_indexes(env: &Env) -> Vec<(String, Url)> {
    let text = match &env.pip_extra_index_url {
        Some(text) => text.clone(),
        None if env.find("python3").is_none() => return Vec::new(),
        None => client_setting_in(
            env,
            "python3",
            &["-m", "pip", "config", "get", "global.extra-index-url"],
        )
        .await
        .unwrap_or_default(),
    };
    named_by_host(&text)
}

/// URLs separated by white space, each named by its `HOST[:PORT]`; what is not a URL is left
/// out with a warning.
fn named_by_host(text: &str) -> Vec<(String, Url)> {
    let mut out = Vec::new();
    for word in text.split_whitespace() {
        match Url::parse(word) {
            Ok(url) => {
                let Some(host) = url.host_str() else {
                    continue;
                };
                let name = match url.port() {
                    Some(port) => format!("{host}:{port}"),
                    None => host.to_owned(),
                }
                .to_ascii_lowercase();
                out.push((name, with_slash(url)));
            }
            Err(e) => {
                tracing::warn!(target: crate::logging::TARGET, ecosystem = "pypi", "extra-index-url {:?} left out: {e}", redact_text(word))
            }
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::ecosystems::discover::testing::{env, listen, run};
    use cairn_mirror::upstream::Credentials;

    #[test]
    fn names_and_patterns_are_normalised_as_pypi_compares_them() {
        assert_eq!(normalize("Corp_Tools.Extra"), "corp-tools-extra");
        assert_eq!(normalize("corp__-*"), "corp-*");
        let (pattern, name) = parse_route("Corp_* = corp").expect("route");
        assert!(pattern.matches("corp-billing"));
        assert_eq!(name, "corp");
        for bad in ["corp-*", "*=corp", "corp-*=Corp", "corp-*="] {
            assert!(parse_route(bad).is_err(), "{bad}");
        }
        let (name, url) = parse_index("corp=http://127.0.0.1:9/simple").expect("index");
        assert_eq!(
            (name.as_str(), url.as_str()),
            ("corp", "http://127.0.0.1:9/simple/")
        );
        let hidden = parse_index("Corp=http://u:s3cret@h.invalid/").expect_err("bad name");
        assert!(!hidden.contains("s3cret"), "{hidden}");
    }

    #[test]
    fn pips_extra_indexes_are_named_by_host() {
        let named =
            named_by_host("https://pypi.corp.invalid/simple\n http://127.0.0.1:8080/x/ nope");
        let names: Vec<&str> = named.iter().map(|(n, _)| n.as_str()).collect();
        assert_eq!(names, ["pypi.corp.invalid", "127.0.0.1:8080"]);
    }

    #[test]
    fn routes_need_their_index_and_take_credentials_from_netrc() {
        let tmp = tempfile::tempdir().expect("tempdir");
        let mut env = env(&tmp.path().join("bin"), tmp.path());
        env.netrc = tmp.path().join(".netrc");
        std::fs::write(
            &env.netrc,
            "machine corp.invalid login ci password pypi-s3cret\n",
        )
        .expect("netrc");
        let settings = RouteSettings {
            pypi_index: vec![
                "corp=https://corp.invalid/simple/".into(),
                "idle=https://idle.invalid/simple/".into(),
            ],
            pypi_route: vec!["corp-*=corp".into(), "acme_internal=corp".into()],
            ..RouteSettings::default()
        };
        let main = Url::parse("https://public.invalid/simple/").expect("url");
        let found = run(routed_in(&env, &settings, Some(&main), &listen(), None)).expect("ok");
        assert_eq!(found.credentials, None);
        assert_eq!(
            found.routed.len(),
            1,
            "an index no route names takes nothing"
        );
        let corp = &found.routed[0];
        assert!(corp.patterns.iter().any(|p| p.matches("acme-internal")));
        assert!(corp.patterns.iter().any(|p| p.matches("corp-billing")));
        assert_eq!(
            corp.credentials,
            Some(Credentials::Basic {
                user: "ci".into(),
                password: "pypi-s3cret".into()
            })
        );
        let unknown = RouteSettings {
            pypi_route: vec!["corp-*=nowhere".into()],
            ..settings.clone()
        };
        let err = run(routed_in(&env, &unknown, None, &listen(), None)).expect_err("unknown");
        assert!(err.contains("nowhere"), "{err}");
        let to_self = RouteSettings {
            pypi_index: vec!["corp=http://127.0.0.1:7777/pypi/simple/".into()],
            pypi_route: vec!["corp-*=corp".into()],
            ..RouteSettings::default()
        };
        let err = run(routed_in(&env, &to_self, None, &listen(), None)).expect_err("self");
        assert!(err.contains("is this Cairn node"), "{err}");
    }
}
