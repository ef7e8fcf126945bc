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
use crate::policy::{Policy, Refusal};

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
        let Listing::Document(document) = &route.listed_by else {
            return Ok(None);
        };
        if !policy.applies_to(name) {
            return Ok(None);
        }
        let reference = match self.reference(name, &route.key).await? {
            Some(reference) => Some(reference),
            // Not listed: the request fails as it would without a policy.
            None => self
                .reference_from_metadata(registered, route, now_ms())
                .await
                .ok(),
        };
        let Some(reference) = reference else {
            return Ok(None);
        };
        let refusal = policy.decide(
            name,
            &document.key,
            reference.version.as_deref(),
            reference.published,
            now_ms(),
        );
        if let Some(refusal) = &refusal {
            self.inner
                .metrics
                .policy_refusals
                .get_or_create(&PolicyLabels {
                    ecosystem: name.to_owned(),
                    rule: refusal.rule,
                })
                .inc();
            tracing::info!(ecosystem = name, key = %route.key, rule = refusal.rule, "refused by policy: {}", refusal.reason);
        }
        Ok(refusal)
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

    /// What the policy refuses of the files document `key` of `registered` lists, as its
    /// references record them. Blocking.
    pub(crate) fn refused_in(
        &self,
        policy: &Policy,
        ecosystem: &str,
        key: &str,
    ) -> Result<Refused, Error> {
        let mut refused = Refused::default();
        if !policy.applies_to(ecosystem) {
            return Ok(refused);
        }
        let now = now_ms();
        for (artifact, reference) in self.inner.index.refs_listed_by(ecosystem, key)? {
            if let Some(refusal) = policy.decide(
                ecosystem,
                key,
                reference.version.as_deref(),
                reference.published,
                now,
            ) {
                if let Some(until) = refusal.until {
                    refused.until = Some(refused.until.map_or(until, |u| u.min(until)));
                }
                refused.keys.insert(artifact);
            }
        }
        Ok(refused)
    }

    /// [`Mirror::refused_in`] off the async workers.
    pub(crate) async fn refused_in_document(
        &self,
        ecosystem: &str,
        key: &str,
    ) -> Result<(Arc<Policy>, Refused), Error> {
        let (this, ecosystem, key) = (self.clone(), ecosystem.to_owned(), key.to_owned());
        blocking(move || {
            let policy = this.policy();
            let refused = this.refused_in(&policy, &ecosystem, &key)?;
            Ok((policy, refused))
        })
        .await
    }
}
