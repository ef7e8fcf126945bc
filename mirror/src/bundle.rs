//! CAR bundles: a snapshot and every block needed to serve it offline, written as one CAR v1
//! (`cairn export`), and read back into another node's store (`cairn import`).
//!
//! Order of the blocks after the header (whose one root is the snapshot root):
//! 1. the snapshot's dag-cbor blocks, root first;
//! 2. each metadata document's raw block, in snapshot order;
//! 3. each artifact in snapshot order: its DAG depth first from the root (inner dag-pb nodes,
//!    then the leaves they link to, so the leaves come in file order; a file of one chunk is
//!    its root leaf alone).
//!
//! Both sides stream: export reads each flat file once, in 1 MiB chunks, naming the leaves from
//! the DAG's inner nodes (no hashing); import writes each artifact to `tmp/` as its leaves
//! arrive, hashing each byte once per digest (the leaf CIDs and the registry digest, the latter
//! on a thread of its own for large files). Memory holds the
//! snapshot's entries, never the bytes.
//!
//! Import verifies every block against its CID (the CAR reader does), every artifact against its
//! registry digest (its flat CID) and its rebuilt DAG against the snapshot's root CID. Nothing is
//! placed or indexed until the whole CAR has been read and verified; then files are renamed into
//! place and the index written in one transaction. A truncated or tampered CAR leaves the store
//! as it was.

use std::collections::{HashMap, HashSet};
use std::io::{Read, Write};

use cid::Cid;

use crate::car::{CarError, CarReader, CarWriter};
use crate::cid::{DAG_CBOR, DAG_PB, FlatCid, RAW};
use crate::index::Index;
use crate::snapshot::{Encoded, Snapshot};
use crate::store::{Staged, Store};
use crate::unixfs::{CHUNK_SIZE, MAX_LINKS};

/// What went wrong with a bundle; the message names the block, artifact or file.
#[derive(Debug, thiserror::Error)]
pub enum BundleError {
    #[error(transparent)]
    Car(#[from] CarError),
    #[error("{0}")]
    Invalid(String),
    #[error("{0}")]
    Store(#[from] crate::error::StoreError),
    #[error("{0}")]
    Index(#[from] crate::error::IndexError),
    #[error("writing the CAR: {0}")]
    Write(std::io::Error),
}

/// Counts of what a bundle holds.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct Counts {
    pub documents: u64,
    pub artifacts: u64,
    /// Artifact bytes.
    pub bytes: u64,
}

/// Leaves of a file of `size` bytes.
fn leaf_count(size: u64) -> u64 {
    size.div_ceil(CHUNK_SIZE).max(1)
}

/// Inner nodes of a balanced DAG over `leaves` leaves.
fn inner_count(leaves: u64) -> u64 {
    let mut level = leaves;
    let mut nodes = 0;
    while level > 1 {
        level = level.div_ceil(MAX_LINKS as u64);
        nodes += level;
    }
    nodes
}

/// Write `snapshot` (already encoded) and every block it needs to `out` as a CAR v1.
/// `progress(bytes)` is called as artifact bytes go out. Blocking.
pub fn export(
    store: &Store,
    index: &Index,
    snapshot: &Snapshot,
    encoded: &Encoded,
    out: impl Write,
    mut progress: impl FnMut(u64),
) -> Result<Counts, BundleError> {
    let mut snapshot = snapshot.clone();
    snapshot.normalize();
    let mut car = CarWriter::new(out, &[encoded.root]).map_err(BundleError::Write)?;
    for (cid, block) in &encoded.blocks {
        car.write_block(cid, block).map_err(BundleError::Write)?;
    }
    let mut counts = Counts::default();
    for doc in &snapshot.documents {
        let Some(cid) = doc.record.cid else { continue };
        let body = store.read_metadata(&cid)?;
        car.write_block(&cid.0, &body).map_err(BundleError::Write)?;
        counts.documents += 1;
    }
    let mut buffer = vec![0u8; CHUNK_SIZE as usize];
    for artifact in &snapshot.artifacts {
        let record = &artifact.record;
        let name = format!("{} {}", artifact.ecosystem, artifact.key);
        let path = store.blob_path(&record.flat);
        let mut file = std::fs::File::open(&path)
            .map_err(|e| crate::error::StoreError::io("open", &path, e))?;
        // Depth first from the root: inner nodes from the index, and the leaves they link to,
        // which come in file order, read from the flat file. The leaves are not hashed here:
        // the importer checks every one.
        let mut pending = vec![record.root.0];
        let mut written = 0u64;
        while let Some(cid) = pending.pop() {
            if cid.codec() == RAW {
                let want = (record.size - written).min(CHUNK_SIZE) as usize;
                let chunk = &mut buffer[..want];
                let n = read_full(&mut file, chunk)
                    .map_err(|e| crate::error::StoreError::io("read", &path, e))?;
                if n != want {
                    return Err(BundleError::Invalid(format!(
                        "{name}: the stored file {} is shorter than the {} bytes indexed",
                        path.display(),
                        record.size
                    )));
                }
                car.write_block(&cid, chunk).map_err(BundleError::Write)?;
                written += n as u64;
                progress(n as u64);
                continue;
            }
            let node = index.get_block(&cid)?.ok_or_else(|| {
                BundleError::Invalid(format!(
                    "{name}: inner node {cid} is missing from the index"
                ))
            })?;
            let links = crate::unixfs::decode_node(&node)
                .map_err(|e| BundleError::Invalid(format!("{name}: node {cid}: {e}")))?
                .links;
            pending.extend(links.iter().rev().map(|l| l.cid));
            car.write_block(&cid, &node).map_err(BundleError::Write)?;
        }
        if written != record.size {
            return Err(BundleError::Invalid(format!(
                "{name}: its DAG covers {written} bytes, the index says {}",
                record.size
            )));
        }
        counts.artifacts += 1;
        counts.bytes += record.size;
    }
    car.finish().map_err(BundleError::Write)?;
    Ok(counts)
}

fn read_full(file: &mut impl Read, buffer: &mut [u8]) -> std::io::Result<usize> {
    let mut filled = 0;
    while filled < buffer.len() {
        match file.read(&mut buffer[filled..]) {
            Ok(0) => break,
            Ok(n) => filled += n,
            Err(e) if e.kind() == std::io::ErrorKind::Interrupted => {}
            Err(e) => return Err(e),
        }
    }
    Ok(filled)
}

/// Read a bundle into `store` and `index`: all of it, verified, or nothing. `progress(bytes)`
/// is called with the CAR bytes read so far. Blocking.
pub fn import(
    store: &Store,
    index: &Index,
    input: impl Read,
    mut progress: impl FnMut(u64),
) -> Result<(Cid, Counts), BundleError> {
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
    let mut snapshot_blocks: HashMap<Cid, Vec<u8>> = HashMap::new();
    let (first, data) = next("the snapshot", &mut car)?;
    if first != root {
        return Err(BundleError::Invalid(format!(
            "the first block is {first}, not the snapshot root {root}"
        )));
    }
    snapshot_blocks.insert(first, data);
    let snapshot = loop {
        let attempt = Snapshot::decode(&root, |cid| {
            snapshot_blocks
                .get(cid)
                .cloned()
                .ok_or_else(|| format!("need {cid}"))
        });
        match attempt {
            Ok(snapshot) => break snapshot,
            Err(e) if e.starts_with("need ") => {
                let (cid, data) = next("the rest of the snapshot", &mut car)?;
                if cid.codec() != DAG_CBOR {
                    return Err(BundleError::Invalid(format!(
                        "snapshot incomplete: {e}, but the CAR goes on with {cid}"
                    )));
                }
                snapshot_blocks.insert(cid, data);
            }
            Err(e) => return Err(BundleError::Invalid(e)),
        }
    };
    progress(car.offset());

    // 2. Documents.
    let mut staged: Vec<Staged> = Vec::new();
    for doc in &snapshot.documents {
        let Some(expected) = doc.record.cid else {
            continue;
        };
        let (cid, data) = next(&format!("{} document {}", doc.ecosystem, doc.key), &mut car)?;
        if cid != expected.0 {
            return Err(BundleError::Invalid(format!(
                "block at byte {} is {cid}, expected {} document {} ({})",
                car.offset(),
                doc.ecosystem,
                doc.key,
                expected.0
            )));
        }
        if !store.meta_path(&expected).exists() {
            staged.push(store.stage_metadata(&data)?);
        }
        progress(car.offset());
    }

    // 3. Artifacts.
    let mut artifacts = Vec::new();
    let mut have: HashSet<FlatCid> = HashSet::new();
    for entry in &snapshot.artifacts {
        let record = &entry.record;
        let name = format!("{} artifact {}", entry.ecosystem, entry.key);
        let digest = record.flat.digest().ok_or_else(|| {
            BundleError::Invalid(format!("{name}: flat CID {} names no digest", record.flat))
        })?;
        // Bytes this store (or this bundle, earlier) already holds are consumed, not rewritten.
        let held = if have.contains(&record.flat) {
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
        let present = have.contains(&record.flat) || held.is_some();
        let leaves = leaf_count(record.size);
        let mut writer = if present {
            None
        } else {
            Some(store.artifact_writer(digest)?)
        };
        // Depth first: inner nodes and leaves interleaved, the leaves in file order.
        let mut received = 0u64;
        let mut leaf_cids = Vec::with_capacity(leaves as usize);
        let mut nodes = HashSet::new();
        for i in 0..leaves + inner_count(leaves) {
            let at = car.offset();
            let Some((cid, data)) = car.next_section()? else {
                return Err(BundleError::Invalid(format!(
                    "the CAR ends at byte {at} inside {name} (block {i})"
                )));
            };
            match cid.codec() {
                RAW => {
                    received += data.len() as u64;
                    match writer.as_mut() {
                        // Hashed by the writer's DAG builder, compared below.
                        Some(writer) => writer.write(&data)?,
                        None => crate::car::verify_block(&cid, &data, at)?,
                    }
                    leaf_cids.push(cid);
                }
                DAG_PB => {
                    crate::car::verify_block(&cid, &data, at)?;
                    nodes.insert(cid);
                }
                _ => {
                    return Err(BundleError::Invalid(format!(
                        "{name}: unexpected block {cid} at byte {at}"
                    )));
                }
            }
            progress(car.offset());
        }
        if received != record.size || leaf_cids.len() as u64 != leaves {
            return Err(BundleError::Invalid(format!(
                "{name}: {received} bytes in {} leaves, the snapshot says {} bytes",
                leaf_cids.len(),
                record.size
            )));
        }
        let dag = match writer {
            Some(writer) => {
                let (file, flat, dag) = writer
                    .verify()
                    .map_err(|e| BundleError::Invalid(format!("{name}: {e}")))?;
                if let Some((i, (built, named))) = dag
                    .leaves
                    .iter()
                    .zip(&leaf_cids)
                    .enumerate()
                    .find(|(_, (built, named))| built.cid != **named)
                {
                    return Err(BundleError::Invalid(format!(
                        "{name}: leaf {i} is named {named} but its bytes hash to {}",
                        built.cid
                    )));
                }
                staged.push(file);
                have.insert(flat);
                Some(dag)
            }
            None => None,
        };
        let root_ok = match &dag {
            Some(dag) => {
                dag.root == record.root.0
                    && dag.nodes.iter().all(|(cid, _)| nodes.contains(cid))
                    && dag.leaves.iter().map(|l| &l.cid).eq(leaf_cids.iter())
            }
            None => true, // the root was checked against the held copy above
        };
        if !root_ok {
            return Err(BundleError::Invalid(format!(
                "{name}: its blocks do not make the root {} the snapshot names",
                record.root
            )));
        }
        artifacts.push((
            entry.ecosystem.clone(),
            entry.key.clone(),
            record.clone(),
            dag,
        ));
    }
    if let Some((cid, _)) = car.next_block()? {
        return Err(BundleError::Invalid(format!(
            "unexpected block {cid} after everything the snapshot names (byte {})",
            car.offset()
        )));
    }

    // Everything verified: place the files, then index it all at once.
    for file in staged {
        file.place()?;
    }
    let documents: Vec<_> = snapshot
        .documents
        .iter()
        .map(|d| (d.ecosystem.clone(), d.key.clone(), d.record.clone()))
        .collect();
    let refs: Vec<_> = snapshot
        .refs
        .iter()
        .map(|r| {
            (
                r.ecosystem.clone(),
                r.key.clone(),
                r.listed_by.clone(),
                r.record.clone(),
            )
        })
        .collect();
    index.import(&documents, &artifacts, &refs)?;
    index.put_blocks(&snapshot_blocks.into_iter().collect::<Vec<(Cid, Vec<u8>)>>())?;
    let counts = Counts {
        documents: documents.len() as u64,
        artifacts: artifacts.len() as u64,
        bytes: snapshot.artifacts.iter().map(|a| a.record.size).sum(),
    };
    Ok((root, counts))
}

#[cfg(test)]
mod tests;
