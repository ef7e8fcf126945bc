//! The check that every artifact an import brings is named by a document or listing (held or
//! in the bundle), or, for a derived artifact, is what its source gives.

use std::collections::HashMap;

use url::Url;

use crate::cid::{Algorithm, Digest, FlatCid};
use crate::index::{Index, RefRecord};
use crate::store::Store;

use super::BundleError;
use super::import::Arrived;

/// Check that every arrived artifact's digest is named for its key by a document (`named`,
/// from the bundle's documents), a listing (held, or arrived and itself named, read here), or
/// held references; or, for a derived artifact, that its source gives exactly its bytes.
/// Returns the references the arrived listings give, to index.
#[allow(clippy::type_complexity)]
pub(super) fn check_listed(
    store: &Store,
    index: &Index,
    arrived: &[Arrived],
    named: &mut HashMap<(String, String), Vec<FlatCid>>,
) -> Result<Vec<(String, String, Vec<(String, RefRecord)>)>, BundleError> {
    let mut listing_refs = Vec::new();
    let mut accepted = vec![false; arrived.len()];
    // Listings first, over and over: a listing's references can name another listing.
    loop {
        let mut progress = false;
        for (i, a) in arrived.iter().enumerate() {
            if accepted[i] {
                continue;
            }
            let name = a.ecosystem.name();
            let route_key = a.route.key.as_str();
            let listed = named
                .get(&(name.to_owned(), route_key.to_owned()))
                .is_some_and(|flats| flats.contains(&a.record.flat))
                || index
                    .get_ref(name, route_key)?
                    .is_some_and(|r| r.flat == a.record.flat);
            if !listed {
                continue;
            }
            accepted[i] = true;
            progress = true;
            if !a.route.listing {
                continue;
            }
            let url = Url::parse(&a.record.upstream_url)
                .map_err(|e| BundleError::Invalid(format!("{name} listing {}: {e}", a.key)))?;
            let file = a.blob.open()?;
            let mut reader = std::io::BufReader::new(file);
            let mut read = Vec::new();
            let listed = a.ecosystem.listing(route_key, &url, &mut reader, &mut |r| {
                read.push(r);
                Ok(())
            });
            match listed {
                Ok(()) => {
                    let refs = crate::engine::ref_records(read);
                    for (key, r) in &refs {
                        named
                            .entry((name.to_owned(), key.clone()))
                            .or_default()
                            .push(r.flat);
                    }
                    listing_refs.push((name.to_owned(), route_key.to_owned(), refs));
                }
                // As for a download: the listing's own bytes are verified; what it would have
                // named stays unlisted.
                Err(e) => {
                    tracing::warn!(ecosystem = name, key = %a.key, "listing not read: {}", e.0)
                }
            }
        }
        if !progress {
            break;
        }
    }
    // Derived artifacts: made again from their source, which must give the same bytes.
    for (i, a) in arrived.iter().enumerate() {
        if accepted[i] {
            continue;
        }
        let name = a.ecosystem.name();
        let unlisted = || BundleError::Unlisted {
            ecosystem: name.to_owned(),
            key: a.key.clone(),
            flat: a.record.flat.to_string(),
        };
        let Some(derive) = &a.route.derive else {
            return Err(unlisted());
        };
        let source = arrived
            .iter()
            .enumerate()
            .find(|(j, s)| accepted[*j] && s.ecosystem.name() == name && s.key == derive.source)
            .map(|(_, s)| s.blob.clone());
        let source = match source {
            Some(blob) => blob,
            None => match index.get_artifact(name, &derive.source)? {
                Some(record) => store.blob(&record.flat),
                None => return Err(unlisted()),
            },
        };
        let mut file = source.open()?;
        let bytes = (derive.function)(&mut file).map_err(|e| BundleError::BadDocument {
            ecosystem: name.to_owned(),
            key: a.key.clone(),
            reason: format!("deriving it from {}: {}", derive.source, e.0),
        })?;
        if Digest::of(Algorithm::Sha256, &bytes).flat_cid() != a.record.flat {
            return Err(unlisted());
        }
        accepted[i] = true;
    }
    Ok(listing_refs)
}
