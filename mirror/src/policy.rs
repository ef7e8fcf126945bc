//! Supply-chain policy: which published versions this node offers. Rules, in the order they
//! decide:
//! 1. `allow` (`ECOSYSTEM:NAME@VERSIONS`): a named version is offered whatever else says (the
//!    break-glass for an urgent fix);
//! 2. `deny`: a named version is refused;
//! 3. `cutoff`: a version published after this instant is refused;
//! 4. `min-age` (global, or per ecosystem): a version published less than this long ago is
//!    refused, until it is old enough.
//!
//! A version whose publication time is unknown passes `cutoff` and `min-age` unless
//! `unknown-age` says to refuse it. Publication times are the registries' own, as this node
//! first saw them (see `cairn_store::index::refs`): an upstream cannot backdate a version it
//! adds to a document this node had read.
//!
//! The engine enforces a policy on both paths: documents are rendered without what it refuses
//! (so resolvers pick an allowed version), and a request for a refused file (a lockfile
//! pinning it) gets `403` naming the rule. [`versions`]: how rules name versions.

pub mod as_of;
pub mod versions;

use std::collections::BTreeMap;

use crate::ecosystem::time::format_rfc3339;
use crate::index::ecosystem_family;
pub use as_of::AsOf;
pub use versions::VersionSet;

/// `ms` as the settings write durations: in whole days, hours, minutes or seconds (`7d`).
pub fn duration_text(ms: i64) -> String {
    let seconds = ms / 1000;
    for (unit, size) in [("d", 86_400), ("h", 3_600), ("m", 60)] {
        if seconds >= size && seconds % size == 0 {
            return format!("{}{unit}", seconds / size);
        }
    }
    format!("{seconds}s")
}

/// A rule of `allow` or `deny`: an ecosystem (`npm`, `cargo`, `pypi`), a package name
/// as that ecosystem spells its keys, and versions.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Rule {
    pub ecosystem: String,
    pub name: String,
    pub versions: VersionSet,
    /// As written, for messages.
    pub text: String,
}

/// The ecosystems rules can name. apt's indexes carry no publication times, so only `deny` and
/// `allow` cover it (by binary or source package name and Debian version relations), and only
/// on the file path: its indexes are signed, so they are served whole.
const FAMILIES: [&str; 4] = ["npm", "cargo", "pypi", "apt"];

impl Rule {
    /// `ECOSYSTEM:NAME@VERSIONS` (`npm:axios@1.14.1`, `npm:@scope/pkg@>=2 <3`,
    /// `pypi:litellm@>=1.82.7,<1.82.9`, `cargo:evil-crate`: every version).
    pub fn parse(text: &str) -> Result<Rule, String> {
        let bad = |why: &str| format!("policy rule {text:?}: {why}");
        let (ecosystem, rest) = text
            .split_once(':')
            .ok_or_else(|| bad("expected ECOSYSTEM:NAME@VERSIONS"))?;
        let ecosystem = ecosystem.trim().to_ascii_lowercase();
        if !FAMILIES.contains(&ecosystem.as_str()) {
            return Err(bad(&format!(
                "the ecosystem must be one of {}",
                FAMILIES.join(", ")
            )));
        }
        let rest = rest.trim();
        // An npm scope starts with `@`: the version's `@` comes after it.
        let at = rest
            .char_indices()
            .skip(1)
            .find(|&(_, c)| c == '@')
            .map(|(i, _)| i);
        let (name, versions) = match at {
            Some(i) => (&rest[..i], &rest[i + 1..]),
            None => (rest, ""),
        };
        if name.is_empty()
            || name.len() > 214
            || !name
                .bytes()
                .all(|b| b.is_ascii_alphanumeric() || b"@/._-~+".contains(&b))
        {
            return Err(bad("the name is not a package name"));
        }
        // Debian writes strictly less and greater `<<` and `>>`; its old `<` and `>` meant
        // `<=` and `>=`, so they are refused rather than read either way.
        if ecosystem == "apt" {
            let lone = |s: &str, c: char| {
                s.match_indices(c).any(|(i, _)| {
                    let next = s[i + 1..].chars().next();
                    let prev = s[..i].chars().next_back();
                    next != Some(c) && next != Some('=') && prev != Some(c)
                })
            };
            if lone(versions, '<') || lone(versions, '>') {
                return Err(bad(
                    "apt relations are <<, <=, =, >= and >> (as Debian writes them)",
                ));
            }
        }
        Ok(Rule {
            name: normalize(&ecosystem, name),
            versions: VersionSet::parse(versions).map_err(|e| bad(&e))?,
            ecosystem,
            text: text.trim().to_owned(),
        })
    }

    fn names(&self, family: &str, name: &str, version: Option<&str>) -> bool {
        self.ecosystem == family
            && self.name == name
            && match (&self.versions, version) {
                (VersionSet::Any, _) => true,
                (set, Some(version)) => set.contains(family, version),
                (_, None) => false,
            }
    }
}

/// `FAMILY:NAME@VERSION` (or without `@VERSION`), as refusals name what they refuse.
pub(crate) fn package_text(family: &str, name: &str, version: Option<&str>) -> String {
    match version {
        Some(version) => format!("{family}:{name}@{version}"),
        None => format!("{family}:{name}"),
    }
}

/// A package name as its ecosystem's metadata keys spell it: PyPI's normalised, cargo's lower
/// case, npm's as it is.
fn normalize(family: &str, name: &str) -> String {
    match family {
        "pypi" => {
            let mut out = String::with_capacity(name.len());
            for c in name.chars() {
                if matches!(c, '-' | '_' | '.') {
                    if !out.ends_with('-') {
                        out.push('-');
                    }
                } else {
                    out.push(c.to_ascii_lowercase());
                }
            }
            out
        }
        "cargo" | "apt" => name.to_ascii_lowercase(),
        _ => name.to_owned(),
    }
}

/// What to do with a version whose publication time is unknown.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub enum UnknownAge {
    #[default]
    Allow,
    Deny,
}

/// What to do with a version upstream removed (its document lists it no more) that this node
/// still holds.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub enum OnRemoval {
    /// Refuse it, from the cache and offline too.
    #[default]
    Refuse,
    /// Serve what the cache holds.
    Keep,
}

/// What to do with a file upstream marks yanked (PyPI under PEP 592, cargo's index) that a
/// lockfile pins. Registries still serve such files to what pins them.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub enum OnYanked {
    /// Serve it to what pins it, as the registry does (it stays in documents, marked).
    #[default]
    Serve,
    /// Refuse it, and leave it out of documents.
    Refuse,
}

/// Where upstream stands on one file it listed: since when it lists it no more, and whether
/// it marks it yanked.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct Standing {
    pub removed: Option<i64>,
    pub yanked: bool,
}

impl From<&crate::index::RefRecord> for Standing {
    fn from(reference: &crate::index::RefRecord) -> Self {
        Standing {
            removed: reference.removed,
            yanked: reference.yanked,
        }
    }
}

/// A policy; the default refuses only what upstream removed.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Policy {
    /// Milliseconds a version must have been published for, everywhere.
    pub min_age: Option<i64>,
    /// The same per ecosystem (`npm`, `cargo`, `pypi`), over `min_age`.
    pub min_age_by: BTreeMap<String, i64>,
    /// Nothing published after this instant (ms since the epoch) is offered.
    pub cutoff: Option<i64>,
    pub unknown_age: UnknownAge,
    pub on_removal: OnRemoval,
    pub on_yanked: OnYanked,
    pub deny: Vec<Rule>,
    pub allow: Vec<Rule>,
}

/// Why a version is refused.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Refusal {
    /// `deny`, `cutoff`, `min-age` or `unknown-age`, the metric's label.
    pub rule: &'static str,
    /// The whole reason, for the client and the log.
    pub reason: String,
    /// When the refusal lapses (a `min-age` one), in ms since the epoch.
    pub until: Option<i64>,
}

impl Policy {
    /// True when it refuses nothing anywhere.
    pub fn is_empty(&self) -> bool {
        self.min_age.is_none()
            && self.min_age_by.is_empty()
            && self.cutoff.is_none()
            && self.deny.is_empty()
            && self.on_yanked == OnYanked::Serve
    }

    /// True when it may refuse something of `ecosystem` (an ecosystem name: `cargo/corp` is
    /// cargo's).
    pub fn applies_to(&self, ecosystem: &str) -> bool {
        let family = ecosystem_family(ecosystem);
        self.min_age.is_some()
            || self.min_age_by.contains_key(family)
            || self.cutoff.is_some()
            || self.deny.iter().any(|r| r.ecosystem == family)
            || self.on_yanked == OnYanked::Refuse
    }

    fn min_age_of(&self, family: &str) -> Option<i64> {
        self.min_age_by.get(family).copied().or(self.min_age)
    }

    /// The decision of `allow` and `deny` alone on `name@version` of `ecosystem`: what an
    /// ecosystem without publication times (apt) is judged by.
    pub fn decide_by_rules(
        &self,
        ecosystem: &str,
        name: &str,
        version: Option<&str>,
    ) -> Option<Refusal> {
        let family = ecosystem_family(ecosystem);
        if self.allow.iter().any(|r| r.names(family, name, version)) {
            return None;
        }
        let rule = self.deny.iter().find(|r| r.names(family, name, version))?;
        let what = package_text(family, name, version);
        Some(Refusal {
            rule: "deny",
            reason: format!(
                "{what} is refused by this node's policy: deny {:?}",
                rule.text
            ),
            until: None,
        })
    }

    /// The decision on `name@version` of `ecosystem`, published at `published` (ms), with
    /// upstream's `standing` on it (removed, yanked), at `now`: `None` when it is offered.
    pub fn decide(
        &self,
        ecosystem: &str,
        name: &str,
        version: Option<&str>,
        published: Option<i64>,
        standing: Standing,
        now: i64,
    ) -> Option<Refusal> {
        let family = ecosystem_family(ecosystem);
        let what = package_text(family, name, version);
        if self.allow.iter().any(|r| r.names(family, name, version)) {
            return None;
        }
        if let Some(removed) = standing.removed
            && self.on_removal == OnRemoval::Refuse
        {
            return Some(Refusal {
                rule: "removed",
                reason: format!(
                    "{what} is refused by this node's policy: upstream no longer lists it (since \
                     {}: unpublished, replaced, quarantined or deleted; on-removal = \"refuse\")",
                    format_rfc3339(removed)
                ),
                until: None,
            });
        }
        if standing.yanked && self.on_yanked == OnYanked::Refuse {
            return Some(Refusal {
                rule: "yanked",
                reason: format!(
                    "{what} is refused by this node's policy: upstream marks it yanked \
                     (on-yanked = \"refuse\")"
                ),
                until: None,
            });
        }
        if let Some(rule) = self.deny.iter().find(|r| r.names(family, name, version)) {
            return Some(Refusal {
                rule: "deny",
                reason: format!(
                    "{what} is refused by this node's policy: deny {:?}",
                    rule.text
                ),
                until: None,
            });
        }
        let min_age = self.min_age_of(family);
        if self.cutoff.is_none() && min_age.is_none() {
            return None;
        }
        let Some(published) = published else {
            return (self.unknown_age == UnknownAge::Deny).then(|| Refusal {
                rule: "unknown-age",
                reason: format!(
                    "{what} is refused by this node's policy: its publication time is unknown \
                     (unknown-age = \"deny\")"
                ),
                until: None,
            });
        };
        if let Some(cutoff) = self.cutoff
            && published > cutoff
        {
            return Some(Refusal {
                rule: "cutoff",
                reason: format!(
                    "{what} is refused by this node's policy: published {}, after the cutoff {}",
                    format_rfc3339(published),
                    format_rfc3339(cutoff)
                ),
                until: None,
            });
        }
        if let Some(min_age) = min_age
            && now - published < min_age
        {
            let until = published.saturating_add(min_age);
            return Some(Refusal {
                rule: "min-age",
                reason: format!(
                    "{what} is refused by this node's policy: published {}, less than the minimum \
                     age of {} ago; it is offered from {}",
                    format_rfc3339(published),
                    duration_text(min_age),
                    format_rfc3339(until)
                ),
                until: Some(until),
            });
        }
        None
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const DAY: i64 = 86_400_000;
    const NOW: i64 = 1_787_184_000_000;

    fn rule(text: &str) -> Rule {
        Rule::parse(text).expect("rule")
    }

    #[test]
    fn rules_name_an_ecosystem_a_package_and_versions() {
        let scoped = rule("npm:@corp/app@>=2 <3");
        assert_eq!(scoped.name, "@corp/app");
        assert!(scoped.names("npm", "@corp/app", Some("2.5.0")));
        assert!(!scoped.names("npm", "@corp/app", Some("3.0.0")));
        assert_eq!(rule("pypi:LiteLLM@>=1.82.7,<1.82.9").name, "litellm");
        assert_eq!(rule("cargo:Evil_Crate").name, "evil_crate");
        assert!(rule("cargo:evil_crate").names("cargo", "evil_crate", None));
        let apt = rule("apt:OpenSSL@<< 3.0.11-1");
        assert_eq!(apt.name, "openssl");
        assert!(apt.names("apt", "openssl", Some("3.0.9-1")));
        assert!(!apt.names("apt", "openssl", Some("3.0.11-1")));
        assert!(rule("apt:libc6@>= 2.36-9, <= 2.36-9+deb12u4").names(
            "apt",
            "libc6",
            Some("2.36-9+deb12u3")
        ));
        assert!(rule("apt:g++-12").names("apt", "g++-12", Some("12.2.0-14")));
        for bad in [
            "axios@1.0",
            "gem:rails",
            "apt:openssl@< 3.0",
            "apt:openssl@>3.0",
            "npm:",
            "npm:a b@1",
            "npm:x@>=",
        ] {
            assert!(Rule::parse(bad).is_err(), "{bad}");
        }
    }

    fn removed_at(at: i64) -> Standing {
        Standing {
            removed: Some(at),
            yanked: false,
        }
    }

    #[test]
    fn yanked_files_are_served_unless_the_policy_refuses_them() {
        let yanked = Standing {
            removed: None,
            yanked: true,
        };
        let old = Some(NOW - 30 * DAY);
        assert_eq!(
            Policy::default().decide("pypi", "x", Some("1.0"), old, yanked, NOW),
            None
        );
        let strict = Policy {
            on_yanked: OnYanked::Refuse,
            allow: vec![rule("pypi:x@1.1")],
            ..Policy::default()
        };
        assert!(strict.applies_to("cargo") && !strict.is_empty());
        let refused = strict
            .decide("pypi", "x", Some("1.0"), old, yanked, NOW)
            .expect("yanked refused");
        assert_eq!(refused.rule, "yanked");
        assert_eq!(
            refused.reason,
            "pypi:x@1.0 is refused by this node's policy: upstream marks it yanked (on-yanked = \"refuse\")"
        );
        // The break-glass still wins; a file not yanked is not touched.
        assert_eq!(
            strict.decide("pypi", "x", Some("1.1"), old, yanked, NOW),
            None
        );
        assert_eq!(
            strict.decide("pypi", "x", Some("1.0"), old, Standing::default(), NOW),
            None
        );
    }

    #[test]
    fn allow_then_deny_then_cutoff_then_min_age_decide() {
        let policy = Policy {
            min_age: Some(7 * DAY),
            min_age_by: BTreeMap::from([("cargo".to_owned(), DAY)]),
            cutoff: Some(NOW - 2 * DAY),
            deny: vec![rule("npm:axios@1.14.1")],
            allow: vec![rule("npm:young@2.0.0")],
            ..Policy::default()
        };
        let old = Some(NOW - 30 * DAY);
        assert_eq!(
            policy.decide(
                "npm",
                "axios",
                Some("1.14.0"),
                old,
                Standing::default(),
                NOW
            ),
            None
        );
        let denied = policy
            .decide(
                "npm",
                "axios",
                Some("1.14.1"),
                old,
                Standing::default(),
                NOW,
            )
            .expect("denied");
        assert_eq!(denied.rule, "deny");
        assert!(
            denied.reason.contains("npm:axios@1.14.1"),
            "{}",
            denied.reason
        );
        let young = Some(NOW - 3 * DAY);
        let refused = policy
            .decide("npm", "lib", Some("1.0.0"), young, Standing::default(), NOW)
            .expect("young");
        assert_eq!(refused.rule, "min-age");
        assert_eq!(refused.until, Some(NOW + 4 * DAY));
        assert!(
            refused.reason.contains("offered from"),
            "{}",
            refused.reason
        );
        assert_eq!(
            policy.decide(
                "npm",
                "young",
                Some("2.0.0"),
                young,
                Standing::default(),
                NOW
            ),
            None
        );
        // cargo's own minimum age is one day; the cutoff still holds for it.
        assert_eq!(
            policy.decide(
                "cargo/corp",
                "c",
                Some("1.0.0"),
                Some(NOW - 3 * DAY),
                Standing::default(),
                NOW
            ),
            None
        );
        let late = policy
            .decide(
                "cargo",
                "c",
                Some("1.0.0"),
                Some(NOW - DAY - 1),
                Standing::default(),
                NOW,
            )
            .expect("after the cutoff");
        assert_eq!(late.rule, "cutoff");
        // Unknown times pass unless the policy says otherwise.
        assert_eq!(
            policy.decide("npm", "x", Some("1.0.0"), None, Standing::default(), NOW),
            None
        );
        let strict = Policy {
            unknown_age: UnknownAge::Deny,
            ..policy.clone()
        };
        assert_eq!(
            strict
                .decide("npm", "x", Some("1.0.0"), None, Standing::default(), NOW)
                .map(|r| r.rule),
            Some("unknown-age")
        );
        // What upstream removed is refused unless the policy keeps it; an allow still wins.
        let removed = policy
            .decide(
                "npm",
                "gone",
                Some("1.0.0"),
                old,
                removed_at(NOW - DAY),
                NOW,
            )
            .expect("removed");
        assert_eq!(removed.rule, "removed");
        let keep = Policy {
            on_removal: OnRemoval::Keep,
            ..Policy::default()
        };
        assert_eq!(
            keep.decide("npm", "gone", Some("1.0.0"), old, removed_at(NOW), NOW),
            None
        );
        assert_eq!(
            policy.decide("npm", "young", Some("2.0.0"), young, removed_at(NOW), NOW),
            None
        );
        let apt = Policy {
            deny: vec![rule("apt:openssl@<< 3.0.11-1")],
            allow: vec![rule("apt:openssl@3.0.9-1")],
            ..Policy::default()
        };
        assert!(apt.applies_to("apt/debian"));
        let denied = apt
            .decide_by_rules("apt/debian", "openssl", Some("3.0.10-1"))
            .expect("denied");
        assert_eq!(
            denied.reason,
            "apt:openssl@3.0.10-1 is refused by this node's policy: deny \"apt:openssl@<< 3.0.11-1\""
        );
        assert_eq!(
            apt.decide_by_rules("apt/debian", "openssl", Some("3.0.9-1")),
            None
        );
        assert_eq!(
            apt.decide_by_rules("apt/debian", "openssl", Some("3.0.11-1")),
            None
        );
        assert_eq!(
            apt.decide_by_rules("apt/debian", "libssl3", Some("3.0.1-1")),
            None
        );
        assert!(Policy::default().is_empty());
        assert!(!Policy::default().applies_to("npm"));
        assert!(policy.applies_to("apt/debian"));
    }
}
