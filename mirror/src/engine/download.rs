//! One upstream download of an artifact, shared by every client that asks for it meanwhile.
//!
//! The download runs in its own task, so it finishes (and fills the cache) even when the client
//! that started it goes away. Bytes go to a temp file in the store while they are hashed (digest
//! and UnixFS leaves) on a blocking thread. Readers stream from that file as it grows, through a
//! shared file handle read by offset, so any number of clients share one upstream request and
//! none waits for the whole file (no store-then-forward).
//!
//! Nothing unverified is ever handed out whole: readers may read only up to [`HOLDBACK`] bytes
//! short of what was written until the whole-file digest has matched. A file smaller than that
//! is therefore not sent at all before it is verified, so a mismatch is a clean 502; a larger one
//! ends in an aborted body, never in a complete wrong file. Bytes from a host the upstream
//! redirected the download to (another origin than the one asked and the upstream's base) are
//! not handed out at all before they verify ([`Progress::withhold`]).

use std::fs::File;
use std::os::unix::fs::FileExt;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};

use bytes::Bytes;
use http::StatusCode;
use tokio::sync::watch;

use crate::error::Error;
use crate::index::ArtifactRecord;

/// Bytes withheld from readers until the digest is verified.
pub const HOLDBACK: u64 = 256 * 1024;
/// Size of each read a reader makes.
const READ_SIZE: u64 = 256 * 1024;

/// Where a download is.
#[derive(Clone, Debug)]
pub enum State {
    /// Bytes `[0, readable)` may be sent. `total` is the expected size when known.
    Running { readable: u64, total: Option<u64> },
    /// Verified: all `size` bytes may be sent. `record` is set once it is committed to the index.
    Verified {
        size: u64,
        record: Option<Box<ArtifactRecord>>,
    },
    /// Failed; nothing was stored.
    Failed { status: StatusCode, message: String },
}

/// A download in progress, shared by its readers.
pub struct Download {
    file: Arc<File>,
    state: watch::Receiver<State>,
    /// The flat CID the bytes must hash to (known before the first byte).
    pub flat: crate::cid::FlatCid,
    /// How many bytes at the start of the file came from peers (raised before they are
    /// written); the rest came from upstream. For the served-bytes metric.
    from_peers: AtomicU64,
}

/// The writing side, held by the download task.
#[derive(Clone)]
pub struct Progress {
    state: watch::Sender<State>,
    /// Set when nothing more may be read before the digest is verified.
    withheld: Arc<std::sync::atomic::AtomicBool>,
}

impl Download {
    /// A new download writing into `file` (the writer's temp file, opened for reading too).
    pub fn new(file: Arc<File>, flat: crate::cid::FlatCid) -> (Arc<Download>, Progress) {
        let (tx, rx) = watch::channel(State::Running {
            readable: 0,
            total: None,
        });
        (
            Arc::new(Download {
                file,
                state: rx,
                flat,
                from_peers: AtomicU64::new(0),
            }),
            Progress {
                state: tx,
                withheld: Arc::new(std::sync::atomic::AtomicBool::new(false)),
            },
        )
    }

    /// Bytes at the start of the file that came from peers.
    pub fn peer_bytes(&self) -> u64 {
        self.from_peers.load(Ordering::Acquire)
    }

    /// `len` more bytes come from peers, right after those before; call it before they are
    /// written, so that a reader never takes a peer's byte for upstream's.
    pub fn add_peer_bytes(&self, len: u64) {
        self.from_peers.fetch_add(len, Ordering::AcqRel);
    }

    /// Of the `len` bytes at `pos` (already written), how many came from peers and how many
    /// from upstream.
    pub fn sources(&self, pos: u64, len: u64) -> (u64, u64) {
        let peer = self.peer_bytes().saturating_sub(pos).min(len);
        (peer, len - peer)
    }

    /// The temp file being written, for peers reading the leaves already hashed.
    pub fn file(&self) -> &Arc<File> {
        &self.file
    }

    pub fn state(&self) -> State {
        self.state.borrow().clone()
    }

    /// Wait until there is something to send (or the download ended), and return the total size
    /// if it is known by then. Errors are the download's failure, for a clean error response.
    /// Cancel-safe.
    pub async fn ready(&self) -> Result<Option<u64>, (StatusCode, String)> {
        let mut state = self.state.clone();
        let result = state
            .wait_for(|s| match s {
                State::Running { readable, .. } => *readable > 0,
                _ => true,
            })
            .await;
        match result.as_deref() {
            Ok(State::Running { total, .. }) => Ok(*total),
            Ok(State::Verified { size, .. }) => Ok(Some(*size)),
            Ok(State::Failed { status, message }) => Err((*status, message.clone())),
            Err(_) => Err(abandoned()),
        }
    }

    /// Wait until the download is verified and committed to the index. Cancel-safe.
    pub async fn committed(&self) -> Result<ArtifactRecord, (StatusCode, String)> {
        let mut state = self.state.clone();
        let result = state
            .wait_for(|s| {
                matches!(
                    s,
                    State::Failed { .. }
                        | State::Verified {
                            record: Some(_),
                            ..
                        }
                )
            })
            .await;
        match result.as_deref() {
            Ok(State::Verified {
                record: Some(record),
                ..
            }) => Ok((**record).clone()),
            Ok(State::Failed { status, message }) => Err((*status, message.clone())),
            _ => Err(abandoned()),
        }
    }

    /// Stream the whole artifact as it becomes readable. A failure ends the stream with an
    /// error, which aborts the response body.
    pub fn stream(
        self: Arc<Self>,
    ) -> impl futures_util::Stream<Item = Result<Bytes, std::io::Error>> + Send + 'static {
        futures_util::stream::unfold((self, 0u64), |(download, pos)| async move {
            let mut state = download.state.clone();
            let limit = state
                .wait_for(|s| match s {
                    State::Running { readable, .. } => *readable > pos,
                    _ => true,
                })
                .await
                .map(|s| s.clone());
            let limit = match limit {
                Ok(State::Running { readable, .. }) => readable,
                Ok(State::Verified { size, .. }) if pos >= size => return None,
                Ok(State::Verified { size, .. }) => size,
                Ok(State::Failed { message, .. }) => {
                    return Some((Err(std::io::Error::other(message)), (download, u64::MAX)));
                }
                Err(_) => {
                    return Some((
                        Err(std::io::Error::other(abandoned().1)),
                        (download, u64::MAX),
                    ));
                }
            };
            if pos == u64::MAX {
                return None;
            }
            let len = (limit - pos).min(READ_SIZE);
            let file = download.file.clone();
            let read = tokio::task::spawn_blocking(move || {
                let mut buf = cairn_ipld::buffer::zeroed(len as usize);
                file.read_exact_at(&mut buf, pos).map(|()| Bytes::from(buf))
            })
            .await
            .unwrap_or_else(|e| Err(std::io::Error::other(e)));
            match read {
                Ok(bytes) => Some((Ok(bytes), (download, pos + len))),
                Err(e) => Some((Err(e), (download, u64::MAX))),
            }
        })
    }
}

/// What one reader of a download sent, counted in the served-bytes metric by where the bytes
/// came from (peers for the first [`Download::peer_bytes`], upstream after), once they are
/// known good: as soon as the download is verified, or when the reader goes away from a
/// download that has not failed. Bytes sent from a download that then failed (its digest did
/// not match) are not counted as served.
pub struct ServedTally {
    download: Arc<Download>,
    mirror: crate::Mirror,
    ecosystem: Arc<str>,
    pos: u64,
    peer: u64,
    upstream: u64,
}

impl ServedTally {
    pub fn new(download: Arc<Download>, mirror: crate::Mirror, ecosystem: Arc<str>) -> Self {
        ServedTally {
            download,
            mirror,
            ecosystem,
            pos: 0,
            peer: 0,
            upstream: 0,
        }
    }

    /// The next `len` bytes of the file were sent.
    pub fn sent(&mut self, len: u64) {
        let (peer, upstream) = self.download.sources(self.pos, len);
        self.pos += len;
        self.peer += peer;
        self.upstream += upstream;
        if matches!(*self.download.state.borrow(), State::Verified { .. }) {
            self.flush();
        }
    }

    fn flush(&mut self) {
        let metrics = self.mirror.metrics();
        for (source, bytes) in [("peer", &mut self.peer), ("upstream", &mut self.upstream)] {
            if *bytes > 0 {
                metrics.served(&self.ecosystem, source, std::mem::take(bytes));
            }
        }
    }
}

impl Drop for ServedTally {
    fn drop(&mut self) {
        if !matches!(*self.download.state.borrow(), State::Failed { .. }) {
            self.flush();
        }
    }
}

fn abandoned() -> (StatusCode, String) {
    (
        StatusCode::INTERNAL_SERVER_ERROR,
        "download task ended without a result".to_owned(),
    )
}

impl Progress {
    /// From now on, readers get no more bytes until the digest is verified (the bytes come
    /// from a host the download was redirected to). What was readable stays readable.
    pub fn withhold(&self) {
        self.withheld
            .store(true, std::sync::atomic::Ordering::Release);
    }

    /// `written` bytes are in the temp file.
    pub fn written(&self, written: u64) {
        if self.withheld.load(std::sync::atomic::Ordering::Acquire) {
            return;
        }
        self.state.send_modify(|s| {
            if let State::Running { readable, .. } = s {
                *readable = written.saturating_sub(HOLDBACK);
            }
        });
    }

    /// The total size became known (from the upstream's `Content-Length`).
    pub fn total(&self, size: Option<u64>) {
        self.state.send_modify(|s| {
            if let State::Running { total, .. } = s {
                *total = size;
            }
        });
    }

    /// The digest matched: release everything.
    pub fn verified(&self, size: u64) {
        self.state
            .send_replace(State::Verified { size, record: None });
    }

    /// Committed to the store and the index.
    pub fn committed(&self, record: ArtifactRecord) {
        let size = record.size;
        self.state.send_replace(State::Verified {
            size,
            record: Some(Box::new(record)),
        });
    }

    pub fn failed(&self, error: &Error) {
        self.state.send_replace(State::Failed {
            status: error.status(),
            message: error.to_string(),
        });
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn readable(download: &Download) -> u64 {
        match download.state() {
            State::Running { readable, .. } => readable,
            State::Verified { size, .. } => size,
            State::Failed { .. } => 0,
        }
    }

    #[test]
    fn withheld_bytes_wait_for_verification() {
        let file = Arc::new(tempfile::tempfile().expect("temp file"));
        let flat = crate::cid::Digest::of(crate::cid::Algorithm::Sha256, b"x").flat_cid();
        let (download, progress) = Download::new(file, flat);
        progress.written(HOLDBACK + 10);
        assert_eq!(readable(&download), 10);
        progress.withhold();
        progress.written(4 * HOLDBACK);
        assert_eq!(readable(&download), 10, "withheld bytes were released");
        progress.verified(4 * HOLDBACK);
        assert_eq!(readable(&download), 4 * HOLDBACK);
    }
}
