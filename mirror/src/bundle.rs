//! CAR bundles: a snapshot and every block needed to serve it offline, written as one CAR v1
//! (`cairn export`), and read back into another node's store (`cairn import`).
//!
//! Order of the blocks after the header (whose one root is the snapshot root):
//! 1. the snapshot's dag-cbor blocks, root first;
//! 2. each metadata document in snapshot order: its raw block, or, for one over
//!    [`MAX_DOCUMENT_BLOCK`] (whose snapshot entry links a `root`), its UnixFS file laid out as
//!    an artifact's below;
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
//! registry digest (its flat CID) and its rebuilt DAG against the snapshot's root CID, and every
//! document carried in pieces against its own raw block CID (and its DAG against its root) before
//! an adapter reads it. A document's size is checked against its ecosystem's
//! [`Ecosystem::max_document_bytes`] before any of its bytes are read; its pieces go to a file
//! under `tmp/`, so memory holds one block at a time. Export applies the same checks of keys,
//! URLs and sizes (`check_entries`) and refuses, naming the entry, what import would refuse. Nothing is
//! placed or indexed until the whole CAR has been read and verified; then files are renamed into
//! place and the index written in one transaction. A truncated or tampered CAR leaves the store
//! as it was.

use std::collections::{HashMap, HashSet};
use std::io::{Read, Write};
use std::sync::Arc;

use cid::Cid;
use url::Url;

use crate::car::{CarError, CarReader, CarWriter};
use crate::cid::{
    Algorithm, BlockCid, DAG_CBOR, DAG_PB, Digest, FlatCid, RAW, RootCid, raw_block_cid,
};
use crate::ecosystem::{ArtifactRoute, Ecosystem, Listing, MetadataDoc, MetadataRoute, Route};
use crate::index::{ArtifactRecord, ImportedDocument, Index, MetadataRecord, RefRecord};
use crate::snapshot::{Encoded, MAX_DOCUMENT_BLOCK, Snapshot};
use crate::store::{ArtifactWriter, Blob, Import, Staged, Store};
use crate::unixfs::{CHUNK_SIZE, Dag, MAX_LINKS};

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
    #[error(
        "the bundle holds {ecosystem}, which this node does not serve (configure it, then import again)"
    )]
    UnknownEcosystem { ecosystem: String },
    #[error("{ecosystem} {what} key {key:?} is refused: {reason}")]
    BadKey {
        ecosystem: String,
        what: &'static str,
        key: String,
        reason: String,
    },
    #[error("{ecosystem} document {key} is refused: {reason}")]
    BadDocument {
        ecosystem: String,
        key: String,
        reason: String,
    },
    #[error("{ecosystem} artifact {key}: no document or listing names its digest {flat}")]
    Unlisted {
        ecosystem: String,
        key: String,
        /// The flat CID, as text (keeps the error small).
        flat: String,
    },
    #[error(
        "{ecosystem} artifact {key}: this node holds it as {held}, the bundle as {bundled} (a held artifact is never replaced)"
    )]
    Rebinds {
        ecosystem: String,
        key: String,
        held: String,
        bundled: String,
    },
    #[error("the snapshot's blocks pass the limit of {limit} bytes")]
    SnapshotTooLarge { limit: u64 },
    #[error(
        "over {limit} bytes of blocks the snapshot does not link to came before it was complete (at byte {offset})"
    )]
    Unlinked { limit: u64, offset: u64 },
}

/// Counts of what a bundle holds.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct Counts {
    /// Documents written (export: documents in the bundle).
    pub documents: u64,
    pub artifacts: u64,
    /// Artifact bytes.
    pub bytes: u64,
    /// Import: documents of the bundle not written, the node holding them or a newer copy.
    pub documents_kept: u64,
    /// Import: artifacts whose bytes the node already held (read past, not written again).
    pub artifacts_held: u64,
    /// Import: the bytes of those.
    pub bytes_held: u64,
    /// Bytes of the CAR.
    pub car_bytes: u64,
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

/// Check every entry of `snapshot` as an import checks it before reading any of its bytes:
/// each ecosystem is one of `ecosystems`, each key one its adapter routes (and no key twice),
/// each upstream URL http or https, each document within its ecosystem's
/// [`Ecosystem::max_document_bytes`] and carried as the snapshot says it must be (one block up
/// to [`MAX_DOCUMENT_BLOCK`], a UnixFS file over it). Returns each entry's route.
fn check_entries(
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
fn check_encoded(encoded: &Encoded) -> Result<(), BundleError> {
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

/// Write the blocks of the UnixFS DAG `dag` of `data`, depth first from the root (inner nodes,
/// then the leaves they link to, so the leaves come in file order).
fn write_dag(
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
fn write_bundle(
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

/// The most bytes of snapshot blocks an import holds while it reads the snapshot (which comes
/// whole before anything else).
pub const MAX_SNAPSHOT_BYTES: u64 = 256 << 20;
/// The most bytes of blocks that no snapshot block read so far links to, held while the
/// snapshot is read. Cairn writes every snapshot block after the block linking to it, so its
/// own bundles need none of this.
pub const MAX_UNLINKED_BYTES: u64 = 16 << 20;

/// A snapshot's blocks, by CID.
type SnapshotBlocks = Vec<(Cid, Vec<u8>)>;

/// The dag-cbor blocks `data` links to.
fn snapshot_links(cid: &Cid, data: &[u8]) -> Result<Vec<Cid>, BundleError> {
    fn walk(value: &crate::dagcbor::Value, out: &mut Vec<Cid>) {
        use crate::dagcbor::Value;
        match value {
            Value::Link(cid) if cid.codec() == DAG_CBOR => out.push(*cid),
            Value::Array(items) => items.iter().for_each(|v| walk(v, out)),
            Value::Map(entries) => entries.iter().for_each(|(_, v)| walk(v, out)),
            _ => {}
        }
    }
    let value = crate::dagcbor::Value::decode(data)
        .map_err(|e| BundleError::Invalid(format!("snapshot block {cid}: {e}")))?;
    let mut links = Vec::new();
    walk(&value, &mut links);
    Ok(links)
}

/// Read the snapshot rooted at `root` from the start of `car`: the blocks it links to, in any
/// order, holding at most [`MAX_SNAPSHOT_BYTES`] of them and [`MAX_UNLINKED_BYTES`] of blocks
/// not linked (yet).
fn read_snapshot<R: Read>(
    car: &mut CarReader<R>,
    root: Cid,
) -> Result<(Snapshot, SnapshotBlocks), BundleError> {
    // Linked blocks: `None` until they arrive.
    let mut linked: HashMap<Cid, Option<Vec<u8>>> = HashMap::from([(root, None)]);
    let mut missing = 1usize;
    let mut unlinked: HashMap<Cid, Vec<u8>> = HashMap::new();
    let (mut unlinked_bytes, mut total) = (0u64, 0u64);
    while missing > 0 {
        let at = car.offset();
        let Some((cid, data)) = car.next_block()? else {
            return Err(BundleError::Invalid(format!(
                "the CAR ends at byte {at} before the snapshot is complete ({missing} blocks missing)"
            )));
        };
        if cid != root && linked.get(&root) == Some(&None) {
            return Err(BundleError::Invalid(format!(
                "the first block is {cid}, not the snapshot root {root}"
            )));
        }
        if cid.codec() != DAG_CBOR {
            return Err(BundleError::Invalid(format!(
                "snapshot incomplete ({missing} blocks missing), but the CAR goes on with {cid}"
            )));
        }
        total += data.len() as u64;
        if total > MAX_SNAPSHOT_BYTES {
            return Err(BundleError::SnapshotTooLarge {
                limit: MAX_SNAPSHOT_BYTES,
            });
        }
        match linked.get(&cid) {
            Some(Some(_)) => continue, // a duplicate
            Some(None) => {}
            None => {
                if unlinked.contains_key(&cid) {
                    continue;
                }
                unlinked_bytes += data.len() as u64;
                if unlinked_bytes > MAX_UNLINKED_BYTES {
                    return Err(BundleError::Unlinked {
                        limit: MAX_UNLINKED_BYTES,
                        offset: car.offset(),
                    });
                }
                unlinked.insert(cid, data);
                continue;
            }
        }
        // A linked block arrived: place it and whatever it links to that came early.
        let mut arrived = vec![(cid, data)];
        while let Some((cid, data)) = arrived.pop() {
            for link in snapshot_links(&cid, &data)? {
                if linked.contains_key(&link) {
                    continue;
                }
                match unlinked.remove(&link) {
                    Some(early) => {
                        unlinked_bytes -= early.len() as u64;
                        linked.insert(link, None);
                        missing += 1;
                        arrived.push((link, early));
                    }
                    None => {
                        linked.insert(link, None);
                        missing += 1;
                    }
                }
            }
            linked.insert(cid, Some(data));
            missing -= 1;
        }
    }
    let snapshot = Snapshot::decode(&root, |cid| {
        linked
            .get(cid)
            .and_then(Option::clone)
            .ok_or_else(|| format!("snapshot block {cid} is missing"))
    })
    .map_err(BundleError::Invalid)?;
    let blocks = linked
        .into_iter()
        .filter_map(|(cid, data)| Some((cid, data?)))
        .collect();
    Ok((snapshot, blocks))
}

/// The ecosystem a bundle names, if this node serves it.
fn registered<'a>(
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
fn document_route(ecosystem: &dyn Ecosystem, key: &str) -> Result<MetadataRoute, BundleError> {
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
fn artifact_route(
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
fn check_url(ecosystem: &str, key: &str, url: &str) -> Result<Url, BundleError> {
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

/// An artifact read from the bundle, waiting for its digest to be found listed.
struct Arrived {
    ecosystem: Arc<dyn Ecosystem>,
    key: String,
    route: ArtifactRoute,
    record: ArtifactRecord,
    dag: Option<Dag>,
    /// Its bytes: staged under `tmp/`, or the held file.
    blob: Blob,
}

/// Read a bundle into `store` and `index`: all of it, verified, or nothing. Everything goes
/// through the checks a download goes through: each key must be one the ecosystem's adapter
/// routes (an ecosystem this node does not serve is refused), each document must pass the
/// adapter (apt's signatures), each artifact's digest must be named by a document or listing
/// (imported or held) or, for a derived artifact, match what its source gives. A held
/// artifact is never replaced, a held document only by a newer one, and times from the
/// bundle are clamped to now. `progress(bytes)` is called with the CAR bytes read so far.
/// Blocking.
pub fn import(
    store: &Store,
    index: &Index,
    ecosystems: &[Arc<dyn Ecosystem>],
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

/// The blocks of a UnixFS file read from a bundle.
struct FileBlocks {
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
fn read_file<R: Read>(
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
fn check_dag(name: &str, dag: &Dag, blocks: &FileBlocks, root: &Cid) -> Result<(), BundleError> {
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

/// Check that every arrived artifact's digest is named for its key by a document (`named`,
/// from the bundle's documents), a listing (held, or arrived and itself named, read here), or
/// held references; or, for a derived artifact, that its source gives exactly its bytes.
/// Returns the references the arrived listings give, to index.
#[allow(clippy::type_complexity)]
fn check_listed(
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

#[cfg(test)]
mod tests;
