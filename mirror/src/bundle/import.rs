//! Reading a bundle into a store: the snapshot, its documents through their adapters, its
//! artifacts verified as they stream to `tmp/`, then everything placed and indexed at once.

use std::collections::HashMap;
use std::io::Read;
use std::sync::Arc;

use cid::Cid;

use crate::car::CarReader;
use crate::cid::{BlockCid, DAG_CBOR, FlatCid, raw_block_cid};
use crate::ecosystem::{ArtifactRoute, Ecosystem, MetadataDoc};
use crate::index::{ArtifactRecord, ImportedDocument, Index, MetadataRecord};
use crate::store::{Blob, Import, Staged, Store};
use crate::unixfs::Dag;

use super::check::{check_entries, check_url, registered};
use super::files::{check_dag, read_file};
use super::listed::check_listed;
use super::snapshot::read_snapshot;
use super::{BundleError, Counts};

/// An artifact read from the bundle, waiting for its digest to be found listed.
pub(super) struct Arrived {
    pub(super) ecosystem: Arc<dyn Ecosystem>,
    pub(super) key: String,
    pub(super) route: ArtifactRoute,
    pub(super) record: ArtifactRecord,
    pub(super) dag: Option<Dag>,
    /// Its bytes: staged under `tmp/`, or the held file.
    pub(super) blob: Blob,
}

/// Read a bundle into `store` and `index`: all of it, verified, or nothing. Everything goes
/// through the checks a download goes through: each key must be one the ecosystem's adapter
/// routes (an ecosystem this node does not serve is refused), each document must pass the
/// adapter (apt's signatures), each artifact's digest must be named by a document or listing
/// (imported or held) or, for a derived artifact, match what its source gives. A held
/// artifact is never replaced, a held document only by a newer one, and times from the
/// bundle are clamped to now. What this node would fetch from an upstream that is sent
/// credentials is stored as private: `private(ecosystem, metadata key)` says which (`None`:
/// an artifact no document lists). `progress(bytes)` is called with the CAR bytes read so far.
/// Blocking.
pub fn import(
    store: &Store,
    index: &Index,
    ecosystems: &[Arc<dyn Ecosystem>],
    private: &dyn Fn(&str, Option<&str>) -> bool,
    input: impl Read,
    mut progress: impl FnMut(u64),
) -> Result<(Cid, Counts), BundleError> {
    let now = crate::now_ms();
    let mut car = CarReader::new(std::io::BufReader::with_capacity(1 << 20, input))?;
    let root = match car.roots() {
        [root] if root.codec() == DAG_CBOR => *root,
        roots => {
            return Err(BundleError::Invalid(format!(
                "not a Cairn bundle: its roots are {roots:?}, not one snapshot"
            )));
        }
    };
    let next = |what: &str, car: &mut CarReader<_>| -> Result<(Cid, Vec<u8>), BundleError> {
        match car.next_block()? {
            Some(block) => Ok(block),
            None => Err(BundleError::Invalid(format!(
                "the CAR ends at byte {} before {what}",
                car.offset()
            ))),
        }
    };

    // 1. The snapshot, root first.
    let (snapshot, snapshot_blocks) = read_snapshot(&mut car, root)?;
    progress(car.offset());

    // Every key is checked before any byte of what it names is read.
    let (doc_routes, art_routes) = check_entries(&snapshot, ecosystems)?;
    for entry in &snapshot.artifacts {
        let bundled = entry.record.flat;
        if let Some(held) = index
            .get_artifact(&entry.ecosystem, &entry.key)?
            .map(|r| r.flat)
            && held != bundled
        {
            return Err(BundleError::Rebinds {
                ecosystem: entry.ecosystem.clone(),
                key: entry.key.clone(),
                held: held.to_string(),
                bundled: bundled.to_string(),
            });
        }
    }

    // 2. Documents, staged.
    let mut staged: Vec<Staged> = Vec::new();
    let mut bodies: HashMap<(&str, &str), (BlockCid, Option<usize>)> = HashMap::new();
    for doc in &snapshot.documents {
        let Some(expected) = doc.record.cid else {
            continue;
        };
        let name = format!("{} document {}", doc.ecosystem, doc.key);
        let held = store.document_blob(&expected).exists();
        let at = match doc.root {
            None => {
                let (cid, data) = next(&name, &mut car)?;
                if cid != expected.0 {
                    return Err(BundleError::Invalid(format!(
                        "block at byte {} is {cid}, expected {name} ({})",
                        car.offset(),
                        expected.0
                    )));
                }
                if held {
                    None
                } else {
                    staged.push(store.stage_metadata(&data)?);
                    Some(staged.len() - 1)
                }
            }
            // In pieces: written to `tmp/` as they come (check_entries bounded the size, which
            // bounds how many blocks are read), then checked as a whole against its raw block
            // CID, the document's identity, and its pieces against the root.
            Some(root) => {
                let mut writer = if held {
                    None
                } else {
                    Some(store.document_writer(&expected)?)
                };
                let blocks = read_file(
                    &mut car,
                    &name,
                    doc.record.size,
                    writer.as_mut(),
                    &mut progress,
                )?;
                match writer {
                    None => None,
                    Some(writer) => {
                        let (file, _, dag) = writer.verify().map_err(|e| {
                            BundleError::Invalid(format!(
                                "{name}: its pieces are not the document {}: {e}",
                                expected.0
                            ))
                        })?;
                        check_dag(&name, &dag, &blocks, &root.0)?;
                        staged.push(file);
                        Some(staged.len() - 1)
                    }
                }
            }
        };
        bodies.insert((&doc.ecosystem, &doc.key), (expected, at));
        progress(car.offset());
    }
    let read_body = |cid: &BlockCid, at: Option<usize>| -> Result<Vec<u8>, BundleError> {
        let blob = match at.and_then(|i| staged[i].blob()) {
            Some(blob) => blob,
            None => store.document_blob(cid),
        };
        let body = blob.read()?;
        // Raw blocks are within the block limit and pieces within the checked size: a body is
        // never larger than its ecosystem's documents may be.
        if raw_block_cid(&body) != cid.0 {
            return Err(BundleError::Invalid(format!(
                "document {cid} changed on disk while it was imported"
            )));
        }
        Ok(body)
    };

    // Each document through its adapter, as if upstream had sent it.
    let mut documents = Vec::with_capacity(snapshot.documents.len());
    let mut named: HashMap<(String, String), Vec<FlatCid>> = HashMap::new();
    for (doc, route) in snapshot.documents.iter().zip(&doc_routes) {
        let Some(&(cid, at)) = bodies.get(&(doc.ecosystem.as_str(), doc.key.as_str())) else {
            continue;
        };
        let ecosystem = registered(ecosystems, &doc.ecosystem)?;
        let refused = |reason: String| BundleError::BadDocument {
            ecosystem: doc.ecosystem.clone(),
            key: doc.key.clone(),
            reason,
        };
        let body = read_body(&cid, at)?;
        let url = check_url(&doc.ecosystem, &doc.key, &doc.record.upstream_url)?;
        let context = match &route.context {
            None => None,
            Some(context) => {
                let bundled = bodies
                    .get(&(doc.ecosystem.as_str(), context.key.as_str()))
                    .copied()
                    .zip(
                        snapshot
                            .documents
                            .iter()
                            .find(|d| d.ecosystem == doc.ecosystem && d.key == context.key)
                            .map(|d| d.record.upstream_url.clone()),
                    );
                let (body, url) = match bundled {
                    Some(((cid, at), url)) => (read_body(&cid, at)?, url),
                    None => match index.get_metadata(&doc.ecosystem, &context.key)? {
                        Some(MetadataRecord {
                            cid: Some(cid),
                            upstream_url,
                            ..
                        }) => (store.read_metadata(&cid)?.to_vec(), upstream_url),
                        _ => {
                            return Err(refused(format!(
                                "it is read with {}, which neither the bundle nor this node holds",
                                context.key
                            )));
                        }
                    },
                };
                let url = check_url(&doc.ecosystem, &context.key, &url)?;
                Some((context.key.clone(), url, body))
            }
        };
        let context_doc = context.as_ref().map(|(key, url, body)| MetadataDoc {
            key,
            url,
            body,
            context: None,
        });
        let facts = ecosystem
            .read(&MetadataDoc {
                key: &doc.key,
                url: &url,
                body: &body,
                context: context_doc.as_ref(),
            })
            .map_err(|e| refused(e.0))?;
        let refs = crate::engine::ref_records(facts.artifacts);
        for (key, r) in &refs {
            named
                .entry((doc.ecosystem.clone(), key.clone()))
                .or_default()
                .push(r.flat);
        }
        documents.push(ImportedDocument {
            ecosystem: doc.ecosystem.clone(),
            key: doc.key.clone(),
            record: MetadataRecord {
                private: private(&doc.ecosystem, Some(&doc.key)),
                cid: Some(cid),
                status: 200,
                upstream_url: url.to_string(),
                fetched_at: doc.record.fetched_at.clamp(0, now),
                etag: doc.record.etag.clone(),
                last_modified: doc.record.last_modified.clone(),
                size: body.len() as u64,
            },
            refs,
        });
    }

    // 3. Artifacts.
    let mut counts = Counts::default();
    let mut arrived = Vec::with_capacity(snapshot.artifacts.len());
    let mut have: HashMap<FlatCid, usize> = HashMap::new();
    for (entry, route) in snapshot.artifacts.iter().zip(art_routes) {
        let record = &entry.record;
        let name = format!("{} artifact {}", entry.ecosystem, entry.key);
        let digest = record.flat.digest().ok_or_else(|| {
            BundleError::Invalid(format!("{name}: flat CID {} names no digest", record.flat))
        })?;
        // Bytes this store (or this bundle, earlier) already holds are consumed, not rewritten.
        let earlier = have.get(&record.flat).copied();
        let held = if earlier.is_some() {
            None
        } else {
            index.find_by_flat(&entry.ecosystem, &record.flat)?
        };
        if let Some((_, existing)) = &held
            && existing.root != record.root
        {
            return Err(BundleError::Invalid(format!(
                "{name}: the snapshot names root {}, this store holds these bytes as {}",
                record.root, existing.root
            )));
        }
        let mut writer = if earlier.is_some() || held.is_some() {
            None
        } else {
            Some(store.artifact_writer(digest)?)
        };
        let blocks = read_file(&mut car, &name, record.size, writer.as_mut(), &mut progress)?;
        let (dag, blob) = match writer {
            Some(writer) => {
                let (file, flat, dag) = writer
                    .verify()
                    .map_err(|e| BundleError::Invalid(format!("{name}: {e}")))?;
                check_dag(&name, &dag, &blocks, &record.root.0)?;
                let blob = file.blob().ok_or_else(|| {
                    BundleError::Invalid(format!("{name}: its staged file is gone"))
                })?;
                staged.push(file);
                have.insert(flat, arrived.len());
                (Some(dag), blob)
            }
            // The root was checked against the held copy above.
            None => {
                if held.is_some() {
                    counts.artifacts_held += 1;
                    counts.bytes_held += record.size;
                }
                match earlier {
                    Some(i) => {
                        let first: &Arrived = &arrived[i];
                        (None, first.blob.clone())
                    }
                    None => (None, store.blob(&record.flat)),
                }
            }
        };
        let mut record = record.clone();
        record.fetched_at = record.fetched_at.clamp(0, now);
        record.private = private(
            &entry.ecosystem,
            route.listed_by.document().map(|d| d.key.as_str()),
        );
        arrived.push(Arrived {
            ecosystem: registered(ecosystems, &entry.ecosystem)?.clone(),
            key: entry.key.clone(),
            route,
            record,
            dag,
            blob,
        });
    }
    if let Some((cid, _)) = car.next_block()? {
        return Err(BundleError::Invalid(format!(
            "unexpected block {cid} after everything the snapshot names (byte {})",
            car.offset()
        )));
    }

    // 4. Each artifact's digest must be one a document or listing names, as for a download.
    let listing_refs = check_listed(store, index, &arrived, &mut named)?;

    // Everything verified: place the files, then index it all at once.
    let artifacts: Vec<_> = arrived
        .into_iter()
        .map(|a| (a.ecosystem.name().to_owned(), a.key, a.record, a.dag))
        .collect();
    let (offered, arrived) = (documents.len() as u64, artifacts.len() as u64);
    let written = store.import(Import {
        staged,
        documents,
        artifacts,
        listing_refs,
        blocks: snapshot_blocks,
    })?;
    counts.documents = written;
    counts.documents_kept = offered.saturating_sub(written);
    counts.artifacts = arrived;
    counts.bytes = snapshot.artifacts.iter().map(|a| a.record.size).sum();
    counts.car_bytes = car.offset();
    Ok((root, counts))
}
