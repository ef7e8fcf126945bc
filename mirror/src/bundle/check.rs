//! The checks both sides of a bundle run on a snapshot's entries before any of their bytes are
//! read: each ecosystem served, each key one its adapter routes, each upstream URL http or https,
//! each document within its size limit and carried as its size says, and the snapshot's own
//! blocks within their limits.

use std::collections::{HashMap, HashSet};
use std::sync::Arc;

use url::Url;

use crate::cid::FlatCid;
use crate::ecosystem::{ArtifactRoute, Ecosystem, Listing, MetadataRoute, Route};
use crate::snapshot::{Encoded, MAX_DOCUMENT_BLOCK, Snapshot};

use super::{BundleError, MAX_SNAPSHOT_BYTES};

/// Check every entry of `snapshot` as an import checks it before reading any of its bytes:
/// each ecosystem is one of `ecosystems`, each key one its adapter routes (and no key twice),
/// each upstream URL http or https, each document within its ecosystem's
/// [`Ecosystem::max_document_bytes`] and carried as the snapshot says it must be (one block up
/// to [`MAX_DOCUMENT_BLOCK`], a UnixFS file over it). Returns each entry's route.
pub(super) fn check_entries(
    snapshot: &Snapshot,
    ecosystems: &[Arc<dyn Ecosystem>],
) -> Result<(Vec<MetadataRoute>, Vec<ArtifactRoute>), BundleError> {
    let mut doc_routes = Vec::with_capacity(snapshot.documents.len());
    let mut seen_docs: HashSet<(&str, &str)> = HashSet::new();
    for doc in &snapshot.documents {
        let ecosystem = registered(ecosystems, &doc.ecosystem)?;
        doc_routes.push(document_route(ecosystem.as_ref(), &doc.key)?);
        check_url(&doc.ecosystem, &doc.key, &doc.record.upstream_url)?;
        let refused = |reason: String| BundleError::BadDocument {
            ecosystem: doc.ecosystem.clone(),
            key: doc.key.clone(),
            reason,
        };
        if !seen_docs.insert((&doc.ecosystem, &doc.key)) {
            return Err(refused("the snapshot names it twice".into()));
        }
        let size = doc.record.size;
        let limit = ecosystem.max_document_bytes();
        if size > limit {
            return Err(refused(format!(
                "its {size} bytes pass the limit of {limit} bytes for {} documents",
                doc.ecosystem
            )));
        }
        match doc.root {
            Some(_) if size <= MAX_DOCUMENT_BLOCK => {
                return Err(refused(format!(
                    "it is carried in pieces, but its {size} bytes fit one block"
                )));
            }
            None if size > MAX_DOCUMENT_BLOCK && doc.record.cid.is_some() => {
                return Err(refused(format!(
                    "its {size} bytes pass the block limit of {MAX_DOCUMENT_BLOCK} and the snapshot \
                     names no UnixFS root to carry it in pieces (take a new snapshot)"
                )));
            }
            _ => {}
        }
    }
    let mut art_routes = Vec::with_capacity(snapshot.artifacts.len());
    let mut seen: HashMap<(&str, &str), FlatCid> = HashMap::new();
    for entry in &snapshot.artifacts {
        let ecosystem = registered(ecosystems, &entry.ecosystem)?;
        let route = artifact_route(ecosystem.as_ref(), &entry.key, &entry.record.flat)?;
        let url = &entry.record.upstream_url;
        match (&route.derive, url.strip_prefix("derived from ")) {
            (Some(derive), Some(source)) if source == derive.source => {}
            _ => {
                check_url(&entry.ecosystem, &entry.key, url)?;
            }
        }
        let bundled = entry.record.flat;
        if let Some(twice) = seen.insert((&entry.ecosystem, &entry.key), bundled)
            && twice != bundled
        {
            return Err(BundleError::Rebinds {
                ecosystem: entry.ecosystem.clone(),
                key: entry.key.clone(),
                held: twice.to_string(),
                bundled: bundled.to_string(),
            });
        }
        art_routes.push(route);
    }
    Ok((doc_routes, art_routes))
}

/// Check what an import checks of the snapshot's own blocks: each within the block limit, all
/// within [`MAX_SNAPSHOT_BYTES`].
pub(super) fn check_encoded(encoded: &Encoded) -> Result<(), BundleError> {
    let mut total = 0u64;
    for (cid, block) in &encoded.blocks {
        let len = block.len() as u64;
        if len > crate::car::MAX_BLOCK_SIZE {
            return Err(BundleError::Invalid(format!(
                "snapshot block {cid} has {len} bytes, more than the block limit of {}",
                crate::car::MAX_BLOCK_SIZE
            )));
        }
        total += len;
    }
    if total > MAX_SNAPSHOT_BYTES {
        return Err(BundleError::SnapshotTooLarge {
            limit: MAX_SNAPSHOT_BYTES,
        });
    }
    Ok(())
}

/// The ecosystem a bundle names, if this node serves it.
pub(super) fn registered<'a>(
    ecosystems: &'a [Arc<dyn Ecosystem>],
    name: &str,
) -> Result<&'a Arc<dyn Ecosystem>, BundleError> {
    ecosystems
        .iter()
        .find(|e| e.name() == name)
        .ok_or_else(|| BundleError::UnknownEcosystem {
            ecosystem: name.to_owned(),
        })
}

/// The route of a document key, as a request for it gives it.
pub(crate) fn document_route(
    ecosystem: &dyn Ecosystem,
    key: &str,
) -> Result<MetadataRoute, BundleError> {
    let bad = |reason: String| BundleError::BadKey {
        ecosystem: ecosystem.name().to_owned(),
        what: "document",
        key: key.to_owned(),
        reason,
    };
    match ecosystem.key_route(key) {
        Ok(Some(Route::Metadata(route))) if route.key == key => Ok(route),
        Ok(_) => Err(bad("no request names a document by it".into())),
        Err(e) => Err(bad(e.0)),
    }
}

/// The route of an artifact key, as a request for it gives it, and the key the route names (a
/// mutable name, [`Listing::Current`], is held as `KEY@FLAT`).
pub(crate) fn artifact_route(
    ecosystem: &dyn Ecosystem,
    key: &str,
    flat: &FlatCid,
) -> Result<ArtifactRoute, BundleError> {
    let bad = |reason: String| BundleError::BadKey {
        ecosystem: ecosystem.name().to_owned(),
        what: "artifact",
        key: key.to_owned(),
        reason,
    };
    let (name, current) = match crate::content_key::read(key) {
        Some((name, named)) => {
            if named != *flat {
                return Err(bad(format!(
                    "it names the bytes {named}, the bundle brings {flat}"
                )));
            }
            (name, true)
        }
        None => (key, false),
    };
    match ecosystem.key_route(name) {
        Ok(Some(Route::Artifact(route)))
            if route.key == name && matches!(route.listed_by, Listing::Current(_)) == current =>
        {
            Ok(route)
        }
        Ok(_) => Err(bad("no request names an artifact by it".into())),
        Err(e) => Err(bad(e.0)),
    }
}

/// An upstream URL from a bundle, which must be http or https.
pub(super) fn check_url(ecosystem: &str, key: &str, url: &str) -> Result<Url, BundleError> {
    let bad = |reason: String| BundleError::BadKey {
        ecosystem: ecosystem.to_owned(),
        what: "upstream URL of",
        key: key.to_owned(),
        reason,
    };
    let parsed = Url::parse(url).map_err(|e| bad(format!("{url:?}: {e}")))?;
    if !matches!(parsed.scheme(), "http" | "https") {
        return Err(bad(format!("{url:?} is not http or https")));
    }
    Ok(parsed)
}
