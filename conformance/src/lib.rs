//! One conformance check of the adapter contract, run over every adapter by
//! `tests/adapters.rs`: whatever a document lists, a client that follows the URLs Cairn rendered
//! for it comes back to the same artifact, listed by the same document, and never leaves the node;
//! and a purge of the package the document is reaches all of it.
//!
//! Why a crate of its own: the check needs all four adapters. `cairn-ecosystem` cannot have them
//! as dev-dependencies (they depend on it); `mirror/tests/` would tie a check of the pure contract
//! to the engine's build (and make every engine test build compile the adapters); the `cairn`
//! package's tests build the whole binary with libp2p. This crate depends on the contract alone,
//! and on the adapters only for its tests, so it builds in seconds and stays as free of I/O as the
//! adapters are.
//!
//! The check is one body, [`check`]; a [`Case`] is what differs per adapter: the document's
//! listed artifacts (what the adapter said), and the URLs a client takes from what the adapter
//! rendered (read the way that client reads them, not through the adapter's code).

use std::collections::BTreeSet;

use cairn_ecosystem::{ArtifactRef, Ecosystem, Listing, Method, Request, Route};
use url::Url;

/// Where a case's artifacts say their digests come from.
#[derive(Clone, Copy, Debug)]
pub enum ListedBy<'a> {
    /// The metadata document with this key ([`Listing::Document`] or [`Listing::Current`]).
    Document(&'a str),
    /// A listing artifact ([`Listing::Listings`]: apt's `Packages`).
    Listings,
}

/// One document of one adapter, as a client sees it through Cairn.
pub struct Case<'a> {
    pub adapter: &'a dyn Ecosystem,
    /// The node's URL for this adapter (`http://node/npm/`), ending in `/`.
    pub base: &'a Url,
    pub listed_by: ListedBy<'a>,
    /// What the adapter read from the upstream document.
    pub listed: &'a [ArtifactRef],
    /// Every artifact URL a client takes from the rendered document(s), fragments removed (a
    /// client does not send them).
    pub client_urls: &'a [String],
    /// The package the document is, as an operator names it to `cairn purge` (any spelling the
    /// registry takes); `None` when the document is no one package's (apt's).
    pub package: Option<&'a str>,
}

/// Most problems one check reports (a broken adapter breaks every artifact the same way).
const MAX_REPORTED: usize = 20;

/// Every problem found, each naming the URL or key it is about; empty when the case conforms.
///
/// - Every client URL is under `base`, and routes (relative to `base`, as the server routes it)
///   to an artifact that the document lists (or that is derived from one it lists), listed by the
///   same document.
/// - Every artifact the document lists is reached by some client URL.
/// - Every listed key routes back to itself through [`Ecosystem::key_route`], listed by the same
///   document (how keys that come from a bundle or a peer are checked).
/// - The package's scope ([`Ecosystem::package_scope`]) holds the document, and reaches and owns
///   every artifact key a client can reach (a purge of the package leaves nothing of it).
pub fn check(case: &Case<'_>) -> Vec<String> {
    let mut problems = Vec::new();
    if case.listed.is_empty() {
        problems.push("the document lists no artifacts".to_owned());
    }
    let listed: BTreeSet<&str> = case.listed.iter().map(|a| a.key.as_str()).collect();
    let mut reached = BTreeSet::new();
    for url in case.client_urls {
        match reach(case, url, &listed) {
            Ok(key) => {
                reached.insert(key);
            }
            Err(problem) => problems.push(format!("{url}: {problem}")),
        }
    }
    for key in &listed {
        if !reached.contains(*key) {
            problems.push(format!("{key}: listed, but no rendered URL leads to it"));
        }
        match case.adapter.key_route(key) {
            Ok(Some(Route::Artifact(route))) if route.key == *key => {
                if let Err(problem) = same_listing(case.listed_by, &route.listed_by) {
                    problems.push(format!("key {key}: {problem}"));
                }
            }
            other => problems.push(format!(
                "key {key} does not route back to itself: {other:?}"
            )),
        }
    }
    if let Some(package) = case.package {
        problems.extend(check_scope(case, package, &reached));
    }
    problems.truncate(MAX_REPORTED);
    problems
}

/// What is wrong with `package`'s scope: a document it leaves, or a `reached` key (listed or
/// derived) it does not reach or own.
fn check_scope(case: &Case<'_>, package: &str, reached: &BTreeSet<String>) -> Vec<String> {
    let scope = match case.adapter.package_scope(package, None) {
        Ok(scope) => scope,
        Err(e) => return vec![format!("package {package}: no scope: {e}")],
    };
    let mut problems = Vec::new();
    let document = match case.listed_by {
        ListedBy::Document(key) => Some(key),
        ListedBy::Listings => None,
    };
    if let Some(key) = document
        && !scope.documents.iter().any(|d| d == key)
    {
        problems.push(format!(
            "package {package}: its scope leaves the document {key}"
        ));
    }
    let listed: BTreeSet<&str> = case.listed.iter().map(|a| a.key.as_str()).collect();
    for key in listed
        .iter()
        .copied()
        .chain(reached.iter().map(String::as_str))
    {
        let by_prefix = scope
            .artifact_prefixes
            .iter()
            .any(|p| key.starts_with(p.as_str()));
        let by_refs = listed.contains(key)
            && document.is_some_and(|d| scope.listed_by.iter().any(|l| l == d));
        if !(by_prefix || by_refs) || !(scope.owns)(key) {
            problems.push(format!("package {package}: its scope does not reach {key}"));
        }
    }
    problems
}

/// The listed key `url` leads to.
fn reach(case: &Case<'_>, url: &str, listed: &BTreeSet<&str>) -> Result<String, String> {
    let parsed = Url::parse(url).map_err(|e| format!("not a URL: {e}"))?;
    if parsed.fragment().is_some() {
        return Err("has a fragment".to_owned());
    }
    let relative = parsed
        .as_str()
        .strip_prefix(case.base.as_str())
        .ok_or_else(|| format!("not under the node's base {}", case.base))?;
    let (path, query) = match relative.split_once('?') {
        Some((path, query)) => (path, Some(query)),
        None => (relative, None),
    };
    let request = Request {
        method: &Method::GET,
        path,
        query,
        accept: None,
    };
    let route = match case.adapter.route(&request) {
        Ok(Some(Route::Artifact(route))) => route,
        other => return Err(format!("routes to {other:?}, not an artifact")),
    };
    let source = route.derive.as_ref().map_or(&route.key, |d| &d.source);
    if !listed.contains(source.as_str()) {
        return Err(format!(
            "routes to {source}, which the document does not list"
        ));
    }
    same_listing(case.listed_by, &route.listed_by)?;
    Ok(route.key)
}

fn same_listing(expected: ListedBy<'_>, got: &Listing) -> Result<(), String> {
    match (expected, got) {
        (ListedBy::Document(key), got) if got.document().is_some_and(|d| d.key == key) => Ok(()),
        (ListedBy::Listings, Listing::Listings) => Ok(()),
        (expected, got) => Err(format!("listed by {got:?}, not {expected:?}")),
    }
}
