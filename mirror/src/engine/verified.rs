//! Cached artifacts read for serving, each 1 MiB leaf checked against its CID on the way out. A
//! flat file damaged on disk (or gone) is never served: the request that notices it drops the
//! artifact from the index ([`Mirror::forget_damaged`]) and the artifact is fetched again.
//!
//! A small file (one leaf) is checked when it is read from disk, before any byte is sent, so a
//! damaged one is fetched again within the same request; it is then served from memory. A large
//! file is checked leaf by leaf as it is sent, on a blocking thread writing into a bounded
//! channel: a bad leaf ends the body (the client sees a broken transfer, never wrong bytes) and
//! the next request fetches the file again. A large file whose every byte was checked moments
//! ago (as the store wrote it, or by a whole read) and that has not been written since is
//! streamed without hashing (`cairn_store::checked`). BENCHMARKS.md has the cost.

use std::fs::File;
use std::os::unix::fs::FileExt;
use std::sync::Arc;

use axum::body::Body;
use bytes::Bytes;
use cid::Cid;
use tokio::sync::mpsc;

use crate::cid::RAW;
use crate::engine::large_fills::Fill;
use crate::engine::{CachedArtifact, Mirror};
use crate::error::Error;
use crate::index::{ArtifactRecord, Index};
use crate::unixfs::CHUNK_SIZE;
use cairn_store::checked::Stamp;

/// Leaves read ahead of the client at most, per response. One keeps the reading and hashing
/// beside the sending; four gave the same rate with a third more memory when 64 responses
/// streamed an 8 MiB file at once (bench/big-hits.sh: 336 against 226 MB peak RSS).
const QUEUE: usize = 1;

/// Why a stored artifact cannot be served: its file is damaged or gone.
pub(crate) type Damage = String;

/// The leaf CIDs of an artifact, in file order (its root alone for a file of one leaf).
/// Blocking.
pub(crate) fn leaves(index: &Index, record: &ArtifactRecord) -> Result<Vec<Cid>, Damage> {
    let mut out = Vec::new();
    let mut pending = vec![record.root.0];
    while let Some(cid) = pending.pop() {
        if cid.codec() == RAW {
            out.push(cid);
            continue;
        }
        let node = index
            .get_block(&cid)
            .map_err(|e| format!("inner node {cid}: {e}"))?
            .ok_or_else(|| format!("inner node {cid} is not indexed"))?;
        let links = crate::unixfs::decode_node(&node)
            .map_err(|e| format!("inner node {cid}: {e}"))?
            .links;
        pending.extend(links.iter().rev().map(|l| l.cid));
    }
    if out.len() as u64 != record.size.div_ceil(CHUNK_SIZE).max(1) {
        return Err(format!(
            "its DAG has {} leaves for {} bytes",
            out.len(),
            record.size
        ));
    }
    Ok(out)
}

/// A failure reading a stored file: damage when the file is gone, else an error that names the
/// artifact (the file's place goes to the log, not to the client).
fn io_failure(flat: &crate::cid::FlatCid, e: crate::error::StoreError) -> Result<Damage, Error> {
    if e.is_not_found() {
        return Ok("its file is missing".to_owned());
    }
    tracing::error!("cannot read a stored artifact: {e}");
    match e {
        crate::error::StoreError::Io { op, source, .. } => Err(Error::Io {
            op,
            what: format!("the stored file of {flat}"),
            source,
        }),
        other => Err(other.into()),
    }
}

/// A file of one leaf, read whole and checked against its CID. Blocking.
pub(crate) fn read_whole(cached: &CachedArtifact) -> Result<Result<Bytes, Damage>, Error> {
    let record = &cached.record;
    let bytes = match cached.blob.read() {
        Ok(bytes) => bytes,
        Err(e) => return io_failure(&record.flat, e).map(Err),
    };
    if bytes.len() as u64 != record.size {
        return Ok(Err(format!(
            "its file has {} bytes, the index says {}",
            bytes.len(),
            record.size
        )));
    }
    if record.root.0.codec() != RAW {
        return Ok(Err(format!(
            "{} bytes under the DAG root {}",
            record.size, record.root
        )));
    }
    if let Err(e) = crate::blocks::verify(&record.root.0, &bytes, String::new) {
        return Ok(Err(e.to_string()));
    }
    Ok(Ok(Bytes::from(bytes)))
}

/// A stored file opened to stream.
pub(crate) struct Opened {
    file: File,
    stamp: Stamp,
    /// The leaves to check it against; `None` when it was checked whole moments ago and has
    /// not changed since.
    leaves: Option<Vec<Cid>>,
}

impl Opened {
    /// True when the file was checked whole moments ago: nothing to check as it is read.
    pub(crate) fn checked_moments_ago(&self) -> bool {
        self.leaves.is_none()
    }

    /// The file, and its stamp when it was opened.
    pub(crate) fn into_file(self) -> (File, Stamp) {
        (self.file, self.stamp)
    }
}

/// The file, and its leaves unless `check` is false and it was checked whole moments ago
/// ([`cairn_store::checked`]). Blocking.
pub(crate) fn open(
    mirror: &Mirror,
    cached: &CachedArtifact,
    check: bool,
) -> Result<Result<Opened, Damage>, Error> {
    let opened = cached.blob.open().and_then(|file| {
        let stamp = Stamp::of_file(&file).map_err(|e| cached.blob.error("look up", e))?;
        Ok((file, stamp))
    });
    let (file, stamp) = match opened {
        Ok(opened) => opened,
        Err(e) => return io_failure(&cached.record.flat, e).map(Err),
    };
    if !check && mirror.store().checked().stands(&cached.record.flat, &stamp) {
        return Ok(Ok(Opened {
            file,
            stamp,
            leaves: None,
        }));
    }
    Ok(leaves(mirror.index(), &cached.record).map(|leaves| Opened {
        file,
        stamp,
        leaves: Some(leaves),
    }))
}

/// Bytes `start..start + len` of the opened file, read a whole leaf at a time and each leaf
/// checked (unless it was checked whole moments ago) before any of it is sent. A bad leaf ends
/// the body and drops the artifact; a whole read whose every leaf checked is remembered
/// ([`cairn_store::checked`]). With `fill` (a whole read, see `large_fills.rs`; opened with its
/// leaves) the checked leaves are kept and, once all are sent, put together into the
/// hot-artifact cache.
pub(crate) fn stream(
    mirror: Mirror,
    cached: Arc<CachedArtifact>,
    opened: Opened,
    (start, len): (u64, u64),
    fill: Option<Fill>,
) -> Body {
    let Opened {
        file,
        stamp,
        leaves: mut leaf_cids,
    } = opened;
    // Every leaf is to be checked (so the file may be remembered as checked once all are).
    let checking = leaf_cids.is_some();
    let (tx, rx) = mpsc::channel::<Result<Bytes, std::io::Error>>(QUEUE);
    tokio::task::spawn_blocking(move || {
        if len == 0 {
            return;
        }
        let mut kept: Option<Vec<Bytes>> = fill.as_ref().map(|_| Vec::new());
        let end = start + len;
        let size = cached.record.size;
        for i in start / CHUNK_SIZE..=(end - 1) / CHUNK_SIZE {
            let offset = i * CHUNK_SIZE;
            let n = CHUNK_SIZE.min(size - offset) as usize;
            let mut leaf = cairn_ipld::buffer::zeroed(n);
            let mut damage = file
                .read_exact_at(&mut leaf, offset)
                .err()
                .map(|e| format!("reading leaf {i}: {e}"));
            if damage.is_none() && leaf_cids.is_none() && !stamp.describes(&file) {
                // Written since it was opened (looked at after the read, so a write during it
                // shows): every leaf from this one on is checked.
                match leaves(mirror.index(), &cached.record) {
                    Ok(cids) => leaf_cids = Some(cids),
                    Err(e) => damage = Some(e),
                }
            }
            if let (None, Some(cids)) = (&damage, &leaf_cids) {
                damage = match cids.get(i as usize) {
                    None => Some(format!("no leaf {i} in its DAG")),
                    Some(cid) => crate::blocks::verify(cid, &leaf, String::new)
                        .err()
                        .map(|e| format!("leaf {i}: {e}")),
                };
            }
            if let Some(damage) = damage {
                mirror.forget_damaged(&cached, &damage);
                let _ = tx.blocking_send(Err(std::io::Error::other(format!(
                    "stored artifact {} is damaged ({damage}); it will be fetched again",
                    cached.record.flat
                ))));
                return;
            }
            let from = (start.max(offset) - offset) as usize;
            let to = (end.min(offset + n as u64) - offset) as usize;
            let leaf = Bytes::from(leaf);
            if checking && start == 0 && offset + n as u64 == size {
                // The whole file checked, before its last leaf goes out.
                mirror.store().checked().record(cached.record.flat, stamp);
            }
            if let Some(kept) = &mut kept {
                kept.push(leaf.clone());
                if offset + n as u64 == size {
                    // Every leaf checked: cached before the last goes out, so a client that
                    // has the whole body finds the file in memory on its next request.
                    let mut whole = Vec::with_capacity(len as usize);
                    for leaf in kept.iter() {
                        whole.extend_from_slice(leaf);
                    }
                    mirror
                        .content()
                        .insert(cached.record.flat, Bytes::from(whole));
                }
            }
            if tx.blocking_send(Ok(leaf.slice(from..to))).is_err() {
                return; // the client went away
            }
        }
        drop(fill);
    });
    Body::from_stream(futures_util::stream::unfold(rx, |mut rx| async move {
        rx.recv().await.map(|item| (item, rx))
    }))
}
