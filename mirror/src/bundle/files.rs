//! UnixFS files in a bundle: how many blocks a file of a given size takes, laying large documents
//! out as UnixFS files for export, writing a DAG's blocks depth first, and reading a file's blocks
//! back and checking them against the DAG its bytes build.

use std::collections::{HashMap, HashSet};
use std::io::{Read, Write};

use cid::Cid;

use crate::car::{CarReader, CarWriter};
use crate::cid::{DAG_PB, RAW, RootCid};
use crate::snapshot::{MAX_DOCUMENT_BLOCK, Snapshot};
use crate::store::{ArtifactWriter, Store};
use crate::unixfs::{CHUNK_SIZE, Dag, MAX_LINKS};

use super::{BundleError, read_full};

/// Leaves of a file of `size` bytes.
pub(super) fn leaf_count(size: u64) -> u64 {
    size.div_ceil(CHUNK_SIZE).max(1)
}

/// Inner nodes of a balanced DAG over `leaves` leaves.
pub(super) fn inner_count(leaves: u64) -> u64 {
    let mut level = leaves;
    let mut nodes = 0;
    while level > 1 {
        level = level.div_ceil(MAX_LINKS as u64);
        nodes += level;
    }
    nodes
}

/// Give each document of `snapshot` over [`MAX_DOCUMENT_BLOCK`] the root of the UnixFS file a
/// bundle carries it as, and each its size as stored; call before [`Snapshot::encode`] for a
/// snapshot to export. Streams each large document from the store once (1 MiB at a time); a
/// small one is only looked up. A document missing from the store is left as the index has it
/// (an export of it fails, naming it).
pub fn chunk_documents(store: &Store, snapshot: &mut Snapshot) -> Result<(), BundleError> {
    let mut buffer = vec![0u8; CHUNK_SIZE as usize];
    for doc in &mut snapshot.documents {
        let Some(cid) = doc.record.cid else { continue };
        let blob = store.document_blob(&cid);
        let Some(stored) = blob.len()? else { continue };
        if stored <= MAX_DOCUMENT_BLOCK {
            doc.record.size = stored;
            doc.root = None;
            continue;
        }
        let mut file = blob.open()?;
        let mut builder = crate::unixfs::DagBuilder::new();
        loop {
            let n = read_full(&mut file, &mut buffer).map_err(|e| blob.error("read", e))?;
            builder.update(&buffer[..n]);
            if n < buffer.len() {
                break;
            }
        }
        doc.record.size = builder.len();
        doc.root = (builder.len() > MAX_DOCUMENT_BLOCK).then(|| RootCid(builder.finish().root));
    }
    Ok(())
}

/// Write the blocks of the UnixFS DAG `dag` of `data`, depth first from the root (inner nodes,
/// then the leaves they link to, so the leaves come in file order).
pub(super) fn write_dag(
    car: &mut CarWriter<impl Write>,
    dag: &Dag,
    data: &[u8],
    name: &str,
) -> Result<(), BundleError> {
    let nodes: HashMap<Cid, &[u8]> = dag.nodes.iter().map(|(c, b)| (*c, b.as_slice())).collect();
    let mut leaves = dag.leaves.iter();
    let mut pending = vec![dag.root];
    while let Some(cid) = pending.pop() {
        if cid.codec() == RAW {
            let leaf = leaves
                .next()
                .filter(|leaf| leaf.cid == cid)
                .ok_or_else(|| BundleError::Invalid(format!("{name}: leaf {cid} out of order")))?;
            let range = leaf.offset as usize..(leaf.offset + leaf.len) as usize;
            let chunk = data.get(range).ok_or_else(|| {
                BundleError::Invalid(format!("{name}: leaf {cid} passes the end of the file"))
            })?;
            car.write_block(&cid, chunk).map_err(BundleError::Write)?;
            continue;
        }
        let node = nodes
            .get(&cid)
            .ok_or_else(|| BundleError::Invalid(format!("{name}: node {cid} is not in its DAG")))?;
        let links = crate::unixfs::decode_node(node)
            .map_err(|e| BundleError::Invalid(format!("{name}: node {cid}: {e}")))?
            .links;
        pending.extend(links.iter().rev().map(|l| l.cid));
        car.write_block(&cid, node).map_err(BundleError::Write)?;
    }
    Ok(())
}

/// The blocks of a UnixFS file read from a bundle.
pub(super) struct FileBlocks {
    /// Leaf CIDs, in file order.
    leaves: Vec<Cid>,
    /// Inner nodes, each checked against its CID.
    nodes: HashSet<Cid>,
}

/// Read the blocks of the UnixFS file `name` of `size` bytes from `car`, depth first (inner
/// nodes and leaves interleaved, the leaves in file order): into `writer` when the bytes are
/// wanted (its DAG builder hashes the leaves, compared by [`check_dag`]), else each block
/// checked against its CID. Nothing is sized by the snapshot's numbers: `size` drives no
/// allocation, only how many blocks are read, and the leaves may not pass it.
pub(super) fn read_file<R: Read>(
    car: &mut CarReader<R>,
    name: &str,
    size: u64,
    mut writer: Option<&mut ArtifactWriter>,
    progress: &mut impl FnMut(u64),
) -> Result<FileBlocks, BundleError> {
    let leaves = leaf_count(size);
    let mut received = 0u64;
    let mut blocks = FileBlocks {
        leaves: Vec::new(),
        nodes: HashSet::new(),
    };
    for i in 0..leaves.saturating_add(inner_count(leaves)) {
        let at = car.offset();
        let Some((cid, data)) = car.next_section()? else {
            return Err(BundleError::Invalid(format!(
                "the CAR ends at byte {at} inside {name} (block {i})"
            )));
        };
        match cid.codec() {
            RAW => {
                received += data.len() as u64;
                if received > size {
                    return Err(BundleError::Invalid(format!(
                        "{name}: its leaves pass the {size} bytes the snapshot says"
                    )));
                }
                match writer.as_mut() {
                    // Hashed by the writer's DAG builder, compared in check_dag.
                    Some(writer) => writer.write(&data)?,
                    None => crate::car::verify_block(&cid, &data, at)?,
                }
                blocks.leaves.push(cid);
            }
            DAG_PB => {
                crate::car::verify_block(&cid, &data, at)?;
                blocks.nodes.insert(cid);
            }
            _ => {
                return Err(BundleError::Invalid(format!(
                    "{name}: unexpected block {cid} at byte {at}"
                )));
            }
        }
        progress(car.offset());
    }
    if received != size || blocks.leaves.len() as u64 != leaves {
        return Err(BundleError::Invalid(format!(
            "{name}: {received} bytes in {} leaves, the snapshot says {size} bytes",
            blocks.leaves.len(),
        )));
    }
    Ok(blocks)
}

/// Check that `dag`, built from the bytes written, is the one `blocks` named, with root `root`.
pub(super) fn check_dag(
    name: &str,
    dag: &Dag,
    blocks: &FileBlocks,
    root: &Cid,
) -> Result<(), BundleError> {
    if let Some((i, (built, named))) = dag
        .leaves
        .iter()
        .zip(&blocks.leaves)
        .enumerate()
        .find(|(_, (built, named))| built.cid != **named)
    {
        return Err(BundleError::Invalid(format!(
            "{name}: leaf {i} is named {named} but its bytes hash to {}",
            built.cid
        )));
    }
    let whole = dag.root == *root
        && dag.nodes.iter().all(|(cid, _)| blocks.nodes.contains(cid))
        && dag.leaves.len() == blocks.leaves.len();
    if !whole {
        return Err(BundleError::Invalid(format!(
            "{name}: its blocks do not make the root {root} the snapshot names"
        )));
    }
    Ok(())
}
