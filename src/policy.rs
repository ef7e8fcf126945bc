//! The supply-chain policy a node enforces ([`cairn_mirror::policy`]), from the flags and the
//! `[policy]` table of `cairn.toml` (a flag wins over its key), and its reload: `serve` looks at
//! `cairn.toml` every two seconds and puts a changed policy in force without a restart. A
//! policy that does not read is refused at start and, on a reload, logged and not taken (the
//! one in force stays).
//!
//! ```toml
//! [policy]
//! min-age = "7d"
//! min-age-cargo = "3d"            # also -npm, -pypi
//! cutoff = "2026-08-20T00:00:00Z"
//! unknown-age = "allow"           # or "deny"
//! on-removal = "refuse"           # or "keep": a version upstream removed
//! deny = ["npm:axios@1.14.1", "pypi:litellm@>=1.82.7,<1.82.9"]
//! allow = ["npm:axios@1.14.2"]
//! ```

use std::path::PathBuf;
use std::time::{Duration, SystemTime};

use anyhow::{Context, Result, bail};
use cairn_mirror::Mirror;
use cairn_mirror::policy::{OnRemoval, OnYanked, Policy, Rule, UnknownAge, duration_text};
use serde::Deserialize;

use crate::settings;

/// How often `cairn.toml` is looked at for a changed policy.
const RELOAD_EVERY: Duration = Duration::from_secs(2);

/// The ecosystems a minimum age may be set for on its own (apt is not covered yet).
const FAMILIES: [&str; 3] = ["npm", "cargo", "pypi"];

/// `[policy]` in `cairn.toml`.
#[derive(Clone, Debug, Default, Deserialize, PartialEq, Eq)]
#[serde(deny_unknown_fields, rename_all = "kebab-case")]
pub struct PolicySettings {
    pub min_age: Option<String>,
    pub min_age_npm: Option<String>,
    pub min_age_cargo: Option<String>,
    pub min_age_pypi: Option<String>,
    pub cutoff: Option<String>,
    pub unknown_age: Option<String>,
    pub on_removal: Option<String>,
    pub on_yanked: Option<String>,
    pub deny: Option<Vec<String>>,
    pub allow: Option<Vec<String>>,
}

impl PolicySettings {
    fn min_age_of(&self, family: &str) -> Option<&str> {
        match family {
            "npm" => self.min_age_npm.as_deref(),
            "cargo" => self.min_age_cargo.as_deref(),
            "pypi" => self.min_age_pypi.as_deref(),
            _ => None,
        }
    }
}

/// The policy flags of `serve`.
#[derive(clap::Args, Clone, Debug, Default)]
pub struct PolicyArgs {
    /// Versions published less than this long ago are not offered (e.g. 7d) [default: none]
    #[arg(long, env = "CAIRN_MIN_AGE", value_name = "DURATION")]
    pub min_age: Option<String>,
    /// Nothing published after this instant is offered (RFC 3339, e.g. 2026-08-20T00:00:00Z)
    #[arg(long, env = "CAIRN_CUTOFF", value_name = "DATE")]
    pub cutoff: Option<String>,
    /// A version with no known publication time: allow or deny [default: allow]
    #[arg(long, env = "CAIRN_UNKNOWN_AGE", value_name = "allow|deny")]
    pub unknown_age: Option<String>,
    /// A version upstream removed (unpublished, quarantined, deleted) that the cache holds:
    /// refuse or keep [default: refuse]
    #[arg(long, env = "CAIRN_ON_REMOVAL", value_name = "refuse|keep")]
    pub on_removal: Option<String>,
    /// A file upstream marks yanked (PyPI, cargo) that a lockfile pins: serve it, as the
    /// registry does, or refuse it [default: serve]
    #[arg(long, env = "CAIRN_ON_YANKED", value_name = "serve|refuse")]
    pub on_yanked: Option<String>,
    /// Refuse these versions: ECOSYSTEM:NAME@VERSIONS (repeatable)
    #[arg(long, env = "CAIRN_DENY", value_name = "RULE", value_delimiter = ';')]
    pub deny: Vec<String>,
    /// Offer these versions whatever else says (repeatable)
    #[arg(long, env = "CAIRN_ALLOW", value_name = "RULE", value_delimiter = ';')]
    pub allow: Vec<String>,
}

/// The policy the flags and `file` make.
pub fn build(args: &PolicyArgs, file: Option<&PolicySettings>) -> Result<Policy> {
    let empty = PolicySettings::default();
    let file = file.unwrap_or(&empty);
    let millis = |key: &str, given: Option<&str>, file: Option<&str>| -> Result<Option<i64>> {
        Ok(settings::duration(key, given, file)?.map(|d| d.as_millis() as i64))
    };
    let mut policy = Policy {
        min_age: millis("min-age", args.min_age.as_deref(), file.min_age.as_deref())?,
        ..Policy::default()
    };
    for family in FAMILIES {
        let key = format!("min-age-{family}");
        if let Some(ms) = millis(&key, None, file.min_age_of(family))? {
            policy.min_age_by.insert(family.to_owned(), ms);
        }
    }
    if let Some(text) = settings::value(args.cutoff.as_deref(), file.cutoff.as_deref()) {
        policy.cutoff = Some(
            cairn_mirror::ecosystem::time::parse_rfc3339(text)
                .with_context(|| format!("cutoff {text:?} is not an RFC 3339 date and time"))?,
        );
    }
    policy.unknown_age =
        match settings::value(args.unknown_age.as_deref(), file.unknown_age.as_deref()) {
            None | Some("allow") => UnknownAge::Allow,
            Some("deny") => UnknownAge::Deny,
            Some(other) => bail!("unknown-age {other:?}: expected allow or deny"),
        };
    policy.on_removal =
        match settings::value(args.on_removal.as_deref(), file.on_removal.as_deref()) {
            None | Some("refuse") => OnRemoval::Refuse,
            Some("keep") => OnRemoval::Keep,
            Some(other) => bail!("on-removal {other:?}: expected refuse or keep"),
        };
    policy.on_yanked = match settings::value(args.on_yanked.as_deref(), file.on_yanked.as_deref()) {
        None | Some("serve") => OnYanked::Serve,
        Some("refuse") => OnYanked::Refuse,
        Some(other) => bail!("on-yanked {other:?}: expected serve or refuse"),
    };
    let rules = |flag: &[String], key: &Option<Vec<String>>| -> Result<Vec<Rule>> {
        settings::pick(flag, key)
            .iter()
            .map(|text| Rule::parse(text).map_err(anyhow::Error::msg))
            .collect()
    };
    policy.deny = rules(&args.deny, &file.deny)?;
    policy.allow = rules(&args.allow, &file.allow)?;
    Ok(policy)
}

/// One line on the policy in force, for the log.
pub fn describe(policy: &Policy) -> String {
    let removal = match policy.on_removal {
        OnRemoval::Refuse => "what upstream removed is refused",
        OnRemoval::Keep => "what upstream removed is kept",
    };
    if policy.is_empty() {
        return removal.to_owned();
    }
    let mut parts = vec![removal.to_owned()];
    if policy.on_yanked == OnYanked::Refuse {
        parts.push("yanked files refused".to_owned());
    }
    if let Some(ms) = policy.min_age {
        parts.push(format!("min-age {}", duration_text(ms)));
    }
    for (family, ms) in &policy.min_age_by {
        parts.push(format!("min-age-{family} {}", duration_text(*ms)));
    }
    if let Some(cutoff) = policy.cutoff {
        parts.push(format!(
            "cutoff {}",
            cairn_mirror::ecosystem::time::format_rfc3339(cutoff)
        ));
    }
    if !policy.deny.is_empty() {
        parts.push(format!("{} deny rules", policy.deny.len()));
    }
    if !policy.allow.is_empty() {
        parts.push(format!("{} allow rules", policy.allow.len()));
    }
    parts.join(", ")
}

/// Look at the config file every two seconds; when it changed, read its policy and put it in
/// force (with the flags over it).
pub fn spawn_reload(mirror: Mirror, args: PolicyArgs, config: Option<PathBuf>) {
    let (path, _) = settings::config_path(config.as_deref());
    tokio::spawn(async move {
        let mut seen = modified(&path);
        loop {
            tokio::time::sleep(RELOAD_EVERY).await;
            let now = modified(&path);
            if now == seen {
                continue;
            }
            seen = now;
            let loaded = settings::load(config.as_deref(), true)
                .and_then(|file| build(&args, file.policy.as_ref()));
            match loaded {
                Ok(policy) => {
                    if *mirror.policy() != policy {
                        tracing::info!(target: crate::logging::TARGET, file = %path.display(), policy = %describe(&policy), "policy reloaded");
                        mirror.set_policy(policy);
                    }
                }
                Err(e) => {
                    tracing::error!(target: crate::logging::TARGET, file = %path.display(), "policy not reloaded, the one in force stays: {e:#}")
                }
            }
        }
    });
}

/// When `path` last changed (and its size, for two writes within a second), if it exists.
fn modified(path: &std::path::Path) -> Option<(SystemTime, u64)> {
    let meta = std::fs::metadata(path).ok()?;
    Some((meta.modified().ok()?, meta.len()))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn flags_win_over_the_file_and_bad_values_name_their_key() {
        let file: PolicySettings = toml::from_str(
            "min-age = \"7d\"\nmin-age-cargo = \"1d\"\ncutoff = \"2026-08-20T00:00:00Z\"\n\
             deny = [\"npm:axios@1.14.1\"]\nallow = [\"npm:axios@1.14.2\"]\n",
        )
        .expect("toml");
        let policy = build(&PolicyArgs::default(), Some(&file)).expect("policy");
        assert_eq!(policy.min_age, Some(7 * 86_400_000));
        assert_eq!(policy.min_age_by.get("cargo"), Some(&86_400_000));
        assert_eq!(policy.cutoff, Some(1_787_184_000_000));
        assert_eq!(policy.deny.len(), 1);
        let args = PolicyArgs {
            min_age: Some("2d".into()),
            deny: vec!["pypi:litellm@>=1.82.7,<1.82.9".into()],
            ..PolicyArgs::default()
        };
        let policy = build(&args, Some(&file)).expect("policy");
        assert_eq!(policy.min_age, Some(2 * 86_400_000));
        assert_eq!(policy.deny[0].name, "litellm");
        assert!(
            describe(&policy).contains("min-age 2d"),
            "{}",
            describe(&policy)
        );
        for (bad, named) in [
            ("min-age = \"7\"", "min-age"),
            ("cutoff = \"yesterday\"", "cutoff"),
            ("unknown-age = \"maybe\"", "unknown-age"),
            ("on-removal = \"never\"", "on-removal"),
            ("on-yanked = \"sometimes\"", "on-yanked"),
            ("deny = [\"gem:rails\"]", "gem:rails"),
        ] {
            let file: PolicySettings = toml::from_str(bad).expect("toml");
            let e = build(&PolicyArgs::default(), Some(&file)).expect_err(bad);
            assert!(format!("{e:#}").contains(named), "{bad}: {e:#}");
        }
        let file: PolicySettings = toml::from_str("on-yanked = \"refuse\"").expect("toml");
        let policy = build(&PolicyArgs::default(), Some(&file)).expect("policy");
        assert_eq!(policy.on_yanked, OnYanked::Refuse);
        assert!(describe(&policy).contains("yanked files refused"));
        assert!(toml::from_str::<PolicySettings>("min-ages = \"7d\"").is_err());
        assert!(
            build(&PolicyArgs::default(), None)
                .expect("none")
                .is_empty()
        );
    }
}
