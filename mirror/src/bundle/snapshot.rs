//! Reading a bundle's snapshot from the start of its CAR: the dag-cbor blocks the root links to,
//! in any order, within the bounds of what is held while it is incomplete.

use std::collections::HashMap;
use std::io::Read;

use cid::Cid;

use crate::car::CarReader;
use crate::cid::DAG_CBOR;
use crate::snapshot::Snapshot;

use super::{BundleError, MAX_SNAPSHOT_BYTES, MAX_UNLINKED_BYTES};

/// A snapshot's blocks, by CID.
pub(super) type SnapshotBlocks = Vec<(Cid, Vec<u8>)>;

/// The dag-cbor blocks `data` links to.
pub(super) fn snapshot_links(cid: &Cid, data: &[u8]) -> Result<Vec<Cid>, BundleError> {
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
pub(super) fn read_snapshot<R: Read>(
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
