//! An artifact the store has no room for, streamed from upstream to one client and checked on
//! the way, never written to disk: a full disk degrades the cache, not the service.
//!
//! The rule of stored downloads holds: nothing unverified is served whole. The last
//! [`HOLDBACK`] bytes stay in memory until the registry digest matches (the whole body, up to
//! [`MAX_WITHHELD`], when upstream redirected to another origin); on a mismatch the body is cut,
//! so the client never holds a complete wrong file. A file announced at no more than
//! [`HOLDBACK`] is answered only once it has verified, so its mismatch is a clean `502`. Each such client has its own upstream
//! download, shared with no one and kept nowhere, within the upstream's artifact slots.

use std::collections::VecDeque;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};

use bytes::Bytes;
use futures_util::Stream;
use tokio::sync::{mpsc, oneshot};
use url::Url;

use crate::cid::{Digest, FlatCid, Hasher};
use crate::engine::Mirror;
use crate::engine::download::HOLDBACK;
use crate::error::{DigestMismatch, Error, StoreError};
use crate::index::RefRecord;
use crate::metrics::EcosystemLabels;
use crate::upstream::{Upstream, redact};

/// The most a download redirected to another origin may hold in memory while it cannot be
/// released before it verifies.
const MAX_WITHHELD: usize = 64 << 20;

/// A response under way: its headers once upstream's are in, then its body.
pub struct Unkept {
    pub flat: FlatCid,
    head: oneshot::Receiver<Result<Option<u64>, Error>>,
    body: mpsc::Receiver<Result<Bytes, std::io::Error>>,
}

impl Unkept {
    /// The length upstream announced (if it did), once its headers are in; or why there will
    /// be no body.
    pub async fn ready(&mut self) -> Result<Option<u64>, Error> {
        match (&mut self.head).await {
            Ok(result) => result,
            Err(_) => Err(Error::DownloadEnded { flat: self.flat }),
        }
    }

    /// The body: verified bytes, cut with an error if the whole does not match its digest.
    pub fn into_stream(self) -> impl Stream<Item = Result<Bytes, std::io::Error>> + Send {
        futures_util::stream::unfold(self.body, |mut body| async move {
            body.recv().await.map(|item| (item, body))
        })
    }
}

/// Start streaming `key` from `url` without keeping it.
pub(crate) fn start(
    mirror: &Mirror,
    name: &str,
    key: &str,
    upstream: &Upstream,
    url: Url,
    reference: &RefRecord,
) -> Result<Unkept, Error> {
    let expected = reference
        .flat
        .digest()
        .ok_or_else(|| Error::UnsupportedDigest {
            key: key.to_string(),
            flat: reference.flat,
        })?;
    let (cap, too_large) = mirror.artifact_cap(name, key, &url, reference.size)?;
    let (head_tx, head) = oneshot::channel();
    let (body_tx, body) = mpsc::channel(16);
    let (chunk_tx, chunks) = mpsc::channel::<(Bytes, Option<cid::Cid>)>(16);
    let withhold_all = Arc::new(AtomicBool::new(false));
    let relay = {
        let (body_tx, withhold_all) = (body_tx.clone(), withhold_all.clone());
        let algorithm = expected.algorithm();
        tokio::task::spawn_blocking(move || {
            relay(chunks, &body_tx, Hasher::new(algorithm), &withhold_all)
        })
    };
    let owner = mirror.clone();
    let (mirror, key, upstream) = (mirror.clone(), key.to_owned(), upstream.clone());
    let name = name.to_owned();
    owner.spawn(async move {
        let name = name.as_str();
        let head_tx = Mutex::new(Some(head_tx));
        let send_head = |result: Result<Option<u64>, Error>| -> Result<(), Error> {
            let sender = head_tx.lock().unwrap_or_else(|p| p.into_inner()).take();
            match sender {
                Some(sender) => sender.send(result).map_err(|_| client_gone()),
                None => result.map(|_| ()),
            }
        };
        // A body no bigger than what is held back is released only once it verifies: its
        // headers wait for that too, so a mismatch is a clean error status, not a cut 200.
        let mut deferred_head = None;
        let mut on_headers = |total: Option<u64>, away: bool| {
            withhold_all.store(away, Ordering::Relaxed);
            if total.is_some_and(|t| t <= HOLDBACK) {
                deferred_head = Some(total);
                return Ok(());
            }
            send_head(Ok(total))
        };
        let copied = mirror
            .copy_upstream(
                name,
                &key,
                &upstream,
                &url,
                &chunk_tx,
                0,
                &mut on_headers,
                (cap, &too_large),
            )
            .await;
        drop(chunk_tx);
        let relayed = relay
            .await
            .unwrap_or_else(|source| {
                Err(Error::Task {
                    what: format!("the relay of {key}"),
                    source,
                })
            });
        let failure = match (copied, relayed) {
            (Ok(()), Ok((held, digest, size))) if digest == expected => {
                if let Some(total) = deferred_head
                    && send_head(Ok(total)).is_err()
                {
                    return;
                }
                for chunk in held {
                    if body_tx.send(Ok(chunk)).await.is_err() {
                        return;
                    }
                }
                mirror.metrics().served(name, "upstream", size);
                tracing::info!(ecosystem = name, key = %key, size, "artifact served unkept (no room in the store)");
                return;
            }
            (Ok(()), Ok((_, digest, _))) => {
                mirror
                    .metrics()
                    .digest_mismatches
                    .get_or_create(&EcosystemLabels {
                        ecosystem: name.to_owned(),
                    })
                    .inc();
                let message = format!(
                    "{name} artifact {key} from {} does not match its registry digest: expected {expected}, got {digest}",
                    redact(&url)
                );
                tracing::error!(ecosystem = name, key = %key, "rejected artifact: {message}");
                mirror
                    .metrics()
                    .refused("digest", None, name, &key, message.clone());
                Error::from(StoreError::DigestMismatch(Box::new(DigestMismatch {
                    flat: expected.flat_cid(),
                    expected,
                    got: digest,
                })))
            }
            // The relay stopped first (client gone, or too much to withhold): its reason.
            (Err(_), Err(e)) | (Ok(()), Err(e)) => e,
            (Err(e), Ok(_)) => e,
        };
        if matches!(&failure, Error::ClientGone) {
            return;
        }
        tracing::warn!(ecosystem = name, key = %key, error = %failure, "unkept download failed");
        let message = failure.to_string();
        if send_head(Err(failure)).is_ok() {
            // Headers were sent: cut the body so the client sees it incomplete.
            let _ = body_tx.send(Err(std::io::Error::other(message))).await;
        }
    });
    Ok(Unkept {
        flat: reference.flat,
        head,
        body,
    })
}

fn client_gone() -> Error {
    Error::ClientGone
}

/// Hash the chunks and pass them on to the client, all but the last [`HOLDBACK`] bytes (all of
/// them when `withhold_all`). Returns what is held back, the digest and the size. Runs on a
/// blocking thread: hashing is CPU work.
fn relay(
    mut chunks: mpsc::Receiver<(Bytes, Option<cid::Cid>)>,
    body: &mpsc::Sender<Result<Bytes, std::io::Error>>,
    mut hasher: Hasher,
    withhold_all: &AtomicBool,
) -> Result<(VecDeque<Bytes>, Digest, u64), Error> {
    let mut held: VecDeque<Bytes> = VecDeque::new();
    let (mut held_bytes, mut size) = (0usize, 0u64);
    while let Some((chunk, _)) = chunks.blocking_recv() {
        hasher.update(&chunk);
        size += chunk.len() as u64;
        held_bytes += chunk.len();
        held.push_back(chunk);
        if withhold_all.load(Ordering::Relaxed) {
            if held_bytes > MAX_WITHHELD {
                return Err(Error::TooBigToHoldBack {
                    limit_mib: MAX_WITHHELD >> 20,
                });
            }
            continue;
        }
        while held_bytes > HOLDBACK as usize {
            let Some(mut front) = held.pop_front() else {
                break;
            };
            let excess = held_bytes - HOLDBACK as usize;
            if front.len() > excess {
                // Send only the excess; the rest of this chunk stays held back.
                let rest = front.split_off(excess);
                held.push_front(rest);
            }
            held_bytes -= front.len();
            if body.blocking_send(Ok(front)).is_err() {
                return Err(client_gone());
            }
        }
    }
    Ok((held, hasher.finish(), size))
}
