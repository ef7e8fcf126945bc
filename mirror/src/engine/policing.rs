//! The engine's side of the supply-chain policy ([`crate::policy`]): the policy in force
//! (replaced whole when the operator's settings change), the refusal of a file a request names,
//! and the files of a document a render leaves out.

use std::collections::BTreeSet;
use std::sync::Arc;
use std::sync::atomic::Ordering;

use super::{Mirror, Registered, blocking, now_ms};
use crate::ecosystem::{ArtifactRoute, Listing};
use crate::error::Error;
use crate::metrics::PolicyLabels;
use crate::policy::{AsOf, Policy, Refusal, Standing};

/// What a policy refuses of one document: the artifact keys, and when the first of those
/// refusals lapses (a `min-age` one).
#[derive(Debug, Default)]
pub(crate) struct Refused {
    pub keys: BTreeSet<String>,
    pub until: Option<i64>,
}

impl Mirror {
    /// Put `policy` in force from the next request on. Documents rendered under the one before
    /// are rendered again.
    pub fn set_policy(&self, policy: Policy) {
        let mut current = self.inner.policy.write().unwrap_or_else(|p| p.into_inner());
        if **current != policy {
            *current = Arc::new(policy);
            self.inner.policy_generation.fetch_add(1, Ordering::SeqCst);
        }
    }

    /// The policy in force.
    pub fn policy(&self) -> Arc<Policy> {
        self.inner
            .policy
            .read()
            .unwrap_or_else(|p| p.into_inner())
            .clone()
    }

    /// True when `policy` may refuse something of `ecosystem` here: its rules say so, or it
    /// refuses what upstream removed and something was.
    pub(crate) fn policed(&self, policy: &Policy, ecosystem: &str) -> bool {
        policy.applies_to(ecosystem)
            || (policy.on_removal == crate::policy::OnRemoval::Refuse
                && self.inner.index.any_removed())
    }

    /// How many times the policy changed.
    pub(crate) fn policy_generation(&self) -> u64 {
        self.inner.policy_generation.load(Ordering::SeqCst)
    }

    /// The refusal of the file `route` names, if the policy refuses it: its version and
    /// publication come from the reference its document recorded (the document is fetched
    /// first when the node has none). A file no document lists is not judged.
    pub(crate) async fn artifact_refusal(
        &self,
        registered: &Registered,
        route: &ArtifactRoute,
    ) -> Result<Option<Refusal>, Error> {
        let policy = self.policy();
        let name = registered.ecosystem.name();
        if !self.policed(&policy, name) {
            return Ok(None);
        }
        let document = match &route.listed_by {
            Listing::Document(document) => document,
            // A file an index lists (apt's `.deb`s): undated, judged by `allow` and `deny`
            // alone, by the package and version its index gave.
            Listing::Listings => {
                let Some(reference) = self.reference(name, &route.key).await? else {
                    return Ok(None);
                };
                let Some(package) = reference.package.as_deref() else {
                    return Ok(None);
                };
                let refusal = policy.decide_by_rules(name, package, reference.version.as_deref());
                if let Some(refusal) = &refusal {
                    self.count_refusal(name, &route.key, refusal);
                }
                return Ok(refusal);
            }
            Listing::Current(_) => return Ok(None),
        };
        let Some(reference) = self.judged_reference(registered, route).await? else {
            return Ok(None);
        };
        let refusal = policy.decide(
            name,
            &document.key,
            reference.version.as_deref(),
            reference.published,
            Standing::from(&reference),
            now_ms(),
        );
        if let Some(refusal) = &refusal {
            self.count_refusal(name, &route.key, refusal);
        }
        Ok(refusal)
    }

    /// Fail unless the file `route` names is in the view `as_of` (its version published by
    /// then), judged as [`Mirror::artifact_refusal`] judges it. A file no document lists is
    /// not judged.
    pub(crate) async fn check_as_of(
        &self,
        registered: &Registered,
        route: &ArtifactRoute,
        as_of: &AsOf,
    ) -> Result<(), Error> {
        let name = registered.ecosystem.name();
        let Listing::Document(document) = &route.listed_by else {
            return Ok(());
        };
        let Some(reference) = self.judged_reference(registered, route).await? else {
            return Ok(());
        };
        let unknown_age = self.policy().unknown_age;
        match as_of.decide(
            name,
            &document.key,
            reference.version.as_deref(),
            reference.published,
            unknown_age,
        ) {
            Some(refusal) => {
                self.count_refusal(name, &route.key, &refusal);
                Err(Error::PolicyRefused(refusal.reason))
            }
            None => Ok(()),
        }
    }

    /// The reference a file is judged by: the one its document recorded, the document fetched
    /// first when the node has none. `None` when no document lists it (the request then fails
    /// as it would without a policy).
    async fn judged_reference(
        &self,
        registered: &Registered,
        route: &ArtifactRoute,
    ) -> Result<Option<crate::index::RefRecord>, Error> {
        let name = registered.ecosystem.name();
        Ok(match self.reference(name, &route.key).await? {
            Some(reference) => Some(reference),
            None => self
                .reference_from_metadata(registered, route, now_ms())
                .await
                .ok(),
        })
    }

    /// Count and log a refusal of the file `key` of `ecosystem`.
    fn count_refusal(&self, ecosystem: &str, key: &str, refusal: &Refusal) {
        self.inner
            .metrics
            .policy_refusals
            .get_or_create(&PolicyLabels {
                ecosystem: ecosystem.to_owned(),
                rule: refusal.rule,
            })
            .inc();
        tracing::info!(
            ecosystem,
            key,
            rule = refusal.rule,
            "refused by policy: {}",
            refusal.reason
        );
        self.inner.metrics.refused(
            "policy",
            Some(refusal.rule),
            ecosystem,
            key,
            refusal.reason.clone(),
        );
    }

    /// Fail with the policy's refusal of the file `route` names, if it refuses it.
    pub(crate) async fn check_policy(
        &self,
        registered: &Registered,
        route: &ArtifactRoute,
    ) -> Result<(), Error> {
        match self.artifact_refusal(registered, route).await? {
            Some(refusal) => Err(Error::PolicyRefused(refusal.reason)),
            None => Ok(()),
        }
    }

    /// What the policy refuses of the files document `key` of `ecosystem` lists, as its
    /// references record them, with what the view `as_of` leaves out besides when there is
    /// one: one reading of the references for both. Blocking.
    pub(crate) fn refused_in(
        &self,
        policy: &Policy,
        ecosystem: &str,
        key: &str,
        as_of: Option<&AsOf>,
    ) -> Result<Refused, Error> {
        let mut refused = Refused::default();
        let policed = self.policed(policy, ecosystem);
        if !policed && as_of.is_none() {
            return Ok(refused);
        }
        let now = now_ms();
        for (artifact, reference) in self.inner.index.refs_listed_by(ecosystem, key)? {
            let version = reference.version.as_deref();
            let by_policy = policed
                .then(|| {
                    policy.decide(
                        ecosystem,
                        key,
                        version,
                        reference.published,
                        Standing::from(&reference),
                        now,
                    )
                })
                .flatten();
            if let Some(until) = by_policy.as_ref().and_then(|r| r.until) {
                refused.until = Some(refused.until.map_or(until, |u| u.min(until)));
            }
            let in_view = as_of.is_none_or(|as_of| {
                as_of
                    .decide(
                        ecosystem,
                        key,
                        version,
                        reference.published,
                        policy.unknown_age,
                    )
                    .is_none()
            });
            if by_policy.is_some() || !in_view {
                refused.keys.insert(artifact);
            }
        }
        Ok(refused)
    }

    /// [`Mirror::refused_in`] off the async workers, under the policy in force.
    pub(crate) async fn refused_in_document(
        &self,
        ecosystem: &str,
        key: &str,
        as_of: Option<&AsOf>,
    ) -> Result<Refused, Error> {
        let (this, ecosystem, key) = (self.clone(), ecosystem.to_owned(), key.to_owned());
        let as_of = as_of.cloned();
        blocking(move || this.refused_in(&this.policy(), &ecosystem, &key, as_of.as_ref())).await
    }
}

/// What the policy decides on one version, and why: `cairn policy explain`.
#[derive(Debug, serde::Serialize)]
pub struct Explanation {
    pub package: String,
    pub ecosystem: String,
    pub name: String,
    pub version: String,
    /// `offered`, or the rule that refuses it (`deny`, `cutoff`, `min-age`, `unknown-age`).
    pub decision: String,
    pub reason: Option<String>,
    /// Its files as the registry lists them, with their publication times as this node
    /// recorded them (its first sighting when that is later).
    pub files: Vec<ExplainedFile>,
    pub policy: PolicyView,
}

#[derive(Debug, serde::Serialize)]
pub struct ExplainedFile {
    pub key: String,
    pub published: Option<String>,
    /// Since when upstream no longer lists it, if it does not.
    pub removed: Option<String>,
    /// Upstream marks it yanked.
    pub yanked: bool,
    pub refused_by: Option<&'static str>,
}

/// The policy's current values, for explanations.
#[derive(Debug, serde::Serialize)]
pub struct PolicyView {
    pub min_age_seconds: Option<i64>,
    pub min_age_seconds_here: Option<i64>,
    pub cutoff: Option<String>,
    pub unknown_age: &'static str,
    pub on_removal: &'static str,
    pub on_yanked: &'static str,
    pub deny: Vec<String>,
    pub allow: Vec<String>,
}

impl Mirror {
    /// Which rule decides on `package` (`ECOSYSTEM:NAME@VERSION`, the ecosystem one this node
    /// serves: `npm`, `cargo`, `pypi`, `cargo/NAME`), fetching its document when the node has
    /// none.
    pub async fn explain(&self, package: &str) -> Result<Explanation, Error> {
        let bad = |why: &str| Error::BadRequest(format!("{package:?}: {why}"));
        let (ecosystem, rest) = package
            .split_once(':')
            .ok_or_else(|| bad("expected ECOSYSTEM:NAME@VERSION"))?;
        let at = rest
            .char_indices()
            .skip(1)
            .find(|&(_, c)| c == '@')
            .map(|(i, _)| i)
            .ok_or_else(|| bad("expected ECOSYSTEM:NAME@VERSION"))?;
        let (name, version) = (&rest[..at], &rest[at + 1..]);
        let registered = self.ecosystem(ecosystem).ok_or_else(|| {
            Error::NotFound(format!("{package}: this node serves no {ecosystem}"))
        })?;
        let Some(crate::ecosystem::Route::Metadata(route)) = registered
            .ecosystem
            .key_route(name)
            .map_err(|e| bad(&e.0))?
        else {
            return Err(bad("not a package this ecosystem names"));
        };
        self.metadata(registered, &route).await?;
        let policy = self.policy();
        let family = crate::index::ecosystem_family(ecosystem).to_owned();
        let refs = {
            let (index, ecosystem, key) = (
                self.inner.index.clone(),
                ecosystem.to_owned(),
                route.key.clone(),
            );
            blocking(move || Ok(index.refs_listed_by(&ecosystem, &key)?)).await?
        };
        let now = now_ms();
        let mut files = Vec::new();
        let mut decision: Option<Refusal> = None;
        for (key, reference) in refs {
            let Some(listed) = reference.version.as_deref() else {
                continue;
            };
            let same = listed == version
                || crate::policy::versions::compare(&family, listed, version)
                    == Some(std::cmp::Ordering::Equal);
            if !same {
                continue;
            }
            let refusal = policy.decide(
                ecosystem,
                &route.key,
                Some(listed),
                reference.published,
                Standing::from(&reference),
                now,
            );
            files.push(ExplainedFile {
                key,
                published: reference
                    .published
                    .map(crate::ecosystem::time::format_rfc3339),
                removed: reference
                    .removed
                    .map(crate::ecosystem::time::format_rfc3339),
                yanked: reference.yanked,
                refused_by: refusal.as_ref().map(|r| r.rule),
            });
            if decision.is_none() {
                decision = refusal;
            }
        }
        if files.is_empty() {
            return Err(Error::NotFound(format!(
                "{package}: the registry lists no such version"
            )));
        }
        let ms = |v: i64| v / 1000;
        Ok(Explanation {
            package: package.to_owned(),
            ecosystem: ecosystem.to_owned(),
            name: route.key.clone(),
            version: version.to_owned(),
            decision: decision
                .as_ref()
                .map_or("offered".to_owned(), |r| r.rule.to_owned()),
            reason: decision.map(|r| r.reason),
            files,
            policy: PolicyView {
                min_age_seconds: policy.min_age.map(ms),
                min_age_seconds_here: policy
                    .min_age_by
                    .get(&family)
                    .copied()
                    .or(policy.min_age)
                    .map(ms),
                cutoff: policy.cutoff.map(crate::ecosystem::time::format_rfc3339),
                unknown_age: match policy.unknown_age {
                    crate::policy::UnknownAge::Allow => "allow",
                    crate::policy::UnknownAge::Deny => "deny",
                },
                on_removal: match policy.on_removal {
                    crate::policy::OnRemoval::Refuse => "refuse",
                    crate::policy::OnRemoval::Keep => "keep",
                },
                on_yanked: match policy.on_yanked {
                    crate::policy::OnYanked::Serve => "serve",
                    crate::policy::OnYanked::Refuse => "refuse",
                },
                deny: policy.deny.iter().map(|r| r.text.clone()).collect(),
                allow: policy.allow.iter().map(|r| r.text.clone()).collect(),
            },
        })
    }
}
