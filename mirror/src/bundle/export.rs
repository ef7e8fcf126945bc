//! Writing a bundle: the checks an import will run, then the snapshot's blocks, each document
//! and each artifact's DAG, streamed from the store.

use std::io::Write;
use std::sync::Arc;

use crate::car::CarWriter;
use crate::cid::RAW;
use crate::ecosystem::Ecosystem;
use crate::index::Index;
use crate::snapshot::{Encoded, Snapshot};
use crate::store::Store;
use crate::unixfs::CHUNK_SIZE;

use super::check::{check_encoded, check_entries};
use super::files::write_dag;
use super::{BundleError, Counts, read_full};

/// Write `snapshot` (already encoded) and every block it needs to `out` as a CAR v1, after
/// checking everything an import of it will check before it reads the bytes (`check_entries`
/// with `ecosystems`, the snapshot blocks' sizes): a bundle import would refuse is not written.
/// `progress(bytes)` is called as artifact bytes go out. Blocking.
pub fn export(
    store: &Store,
    index: &Index,
    ecosystems: &[Arc<dyn Ecosystem>],
    snapshot: &Snapshot,
    encoded: &Encoded,
    out: impl Write,
    mut progress: impl FnMut(u64),
) -> Result<Counts, BundleError> {
    let mut snapshot = snapshot.clone();
    snapshot.normalize();
    check_entries(&snapshot, ecosystems)?;
    check_encoded(encoded)?;
    write_bundle(store, index, &snapshot, encoded, out, &mut progress)
}

/// [`export`] without its checks: `snapshot` normalized.
pub(super) fn write_bundle(
    store: &Store,
    index: &Index,
    snapshot: &Snapshot,
    encoded: &Encoded,
    out: impl Write,
    progress: &mut impl FnMut(u64),
) -> Result<Counts, BundleError> {
    let mut car = CarWriter::new(out, &[encoded.root]).map_err(BundleError::Write)?;
    for (cid, block) in &encoded.blocks {
        car.write_block(cid, block).map_err(BundleError::Write)?;
    }
    let mut counts = Counts::default();
    for doc in &snapshot.documents {
        let Some(cid) = doc.record.cid else { continue };
        let refused = |reason: String| BundleError::BadDocument {
            ecosystem: doc.ecosystem.clone(),
            key: doc.key.clone(),
            reason,
        };
        // Bounded: check_entries held the size the snapshot says to the ecosystem's limit.
        let blob = store.document_blob(&cid);
        let stored = blob
            .open()?
            .metadata()
            .map_err(|e| blob.error("read", e))?
            .len();
        if stored != doc.record.size {
            return Err(refused(format!(
                "the store holds {stored} bytes of it, the snapshot says {} (take a new snapshot)",
                doc.record.size
            )));
        }
        let body = store.read_metadata(&cid)?;
        match doc.root {
            None => car.write_block(&cid.0, &body).map_err(BundleError::Write)?,
            Some(root) => {
                let mut builder = crate::unixfs::DagBuilder::new();
                builder.update(&body);
                let dag = builder.finish();
                if dag.root != root.0 {
                    return Err(refused(format!(
                        "its bytes make the UnixFS root {}, the snapshot names {root}",
                        dag.root
                    )));
                }
                let name = format!("{} document {}", doc.ecosystem, doc.key);
                write_dag(&mut car, &dag, &body, &name)?;
            }
        }
        counts.documents += 1;
    }
    let mut buffer = vec![0u8; CHUNK_SIZE as usize];
    for artifact in &snapshot.artifacts {
        let record = &artifact.record;
        let name = format!("{} {}", artifact.ecosystem, artifact.key);
        let blob = store.blob(&record.flat);
        let mut file = blob.open()?;
        // Depth first from the root: inner nodes from the index, and the leaves they link to,
        // which come in file order, read from the flat file. The leaves are not hashed here:
        // the importer checks every one.
        let mut pending = vec![record.root.0];
        let mut written = 0u64;
        while let Some(cid) = pending.pop() {
            if cid.codec() == RAW {
                let want = (record.size - written).min(CHUNK_SIZE) as usize;
                let chunk = &mut buffer[..want];
                let n = read_full(&mut file, chunk).map_err(|e| blob.error("read", e))?;
                if n != want {
                    return Err(BundleError::Invalid(format!(
                        "{name}: the stored file {blob} is shorter than the {} bytes indexed",
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
    counts.car_bytes = car.bytes_written();
    car.finish().map_err(BundleError::Write)?;
    Ok(counts)
}
