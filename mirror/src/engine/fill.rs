//! Filling the store: one shared download per artifact, from peers first and then upstream,
//! verified against the registry's digest before it is committed, or streamed unkept when the
//! store has no room.

use std::collections::HashMap;
use std::sync::Arc;
use std::time::Instant;

use bytes::Bytes;
use url::Url;

use super::{
    ArtifactBody, CachedArtifact, FULL_BACKOFF, Mirror, PEER_FAILURE_MEMORY, Registered, blocking,
    now_ms,
};
use crate::cid::FlatCid;
use crate::ecosystem::{ArtifactRoute, Ecosystem};
use crate::engine::download::{Download, Progress};
use crate::error::Error;
use crate::index::{ArtifactRecord, RefRecord};
use crate::metrics::EcosystemLabels;
use crate::peers::{LeafProgress, PendingLeaves};
use crate::upstream::{Upstream, redact};

/// Whether a miss is downloaded into the store, or streamed to its client without keeping it.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum Keep {
    /// Into the store when it has room for it; unkept otherwise.
    IfRoom,
    /// Unkept: the store just ran out of room for this one.
    Never,
}

impl Mirror {
    /// Start downloading `reference` as the artifact `key` (the key of `route`, or a key
    /// naming its content), or join the download of it already under way, or take it from the
    /// index when a download committed it since the caller looked.
    pub(super) async fn start_download(
        &self,
        registered: &Registered,
        key: String,
        route: &ArtifactRoute,
        upstream: Option<Upstream>,
        url: Url,
        reference: &RefRecord,
    ) -> Result<ArtifactBody, Error> {
        let ecosystem = registered.ecosystem.clone();
        let name = registered.name.clone();
        let asked = route.key.as_str();
        let expected = reference
            .flat
            .digest()
            .ok_or_else(|| Error::UnsupportedDigest {
                key: asked.to_string(),
                flat: reference.flat,
            })?;
        let listing = route.listing.then(|| asked.to_owned());
        let store = self.inner.store.clone();
        let writer = {
            let expected = expected.clone();
            blocking(move || Ok(store.artifact_writer(expected)?)).await?
        };
        let file = writer.file().try_clone().map_err(|source| Error::Io {
            op: "share",
            what: format!("the temp file of {key}"),
            source,
        })?;
        let (download, progress) = Download::new(Arc::new(file), expected.flat_cid());
        {
            let mut downloads = self.downloads();
            if let Some(existing) = downloads.get(&(name.clone(), key.clone())) {
                // Another request started it meanwhile; our writer is dropped and its temp
                // file deleted.
                return Ok(ArtifactBody::Downloading(existing.clone()));
            }
            // A download commits to the index before it leaves the map, so under the map's
            // lock the index tells whether one finished since the caller looked (a point
            // lookup, short enough to hold the lock for).
            if let Some(record) = self.inner.index.get_artifact(&name, &key)? {
                let blob = self.inner.store.blob(&record.flat);
                return Ok(ArtifactBody::Cached(Arc::new(CachedArtifact::new(
                    &name, key, record, blob,
                ))));
            }
            downloads.insert((name.clone(), key.clone()), download.clone());
        }
        if listing.is_some() {
            // Counted from before any byte reaches a client: a client that has the whole index
            // (apt after `update`) and asks for a file it names must find the entry, or wait
            // for it (see `wait_for_listings`). The client is not held back meanwhile: apt
            // reads the index it just got while this node indexes it.
            self.listings_started(&name);
        }
        let reads_listing = listing.is_some().then(|| ecosystem.clone());
        let this = self.clone();
        let (shared, size) = (download.clone(), reference.size);
        let private = self.artifact_is_private(registered, route);
        let abandon = self.inner.abandon.clone();
        self.spawn(async move {
            let run = this.run_download(
                &name,
                &key,
                private,
                upstream.as_ref(),
                &url,
                writer,
                &progress,
                &shared,
                size,
                reads_listing,
            );
            let result = tokio::select! {
                result = run => result,
                () = abandon.cancelled() => Err(Error::Abandoned { key: key.clone() }),
            };
            if listing.is_some() {
                this.listings_done(&name);
            }
            match result {
                Ok(record) => {
                    tracing::info!(ecosystem = %name, key = %key, size = record.size, root = %record.root.short(), from_peers = shared.peer_bytes(), "artifact cached");
                    this.committed(&name);
                    progress.committed(record);
                }
                Err(e) => {
                    if let Error::DigestMismatch(mismatch) = &e {
                        let from_peers = shared.peer_bytes() > 0;
                        if from_peers {
                            // The peers' bytes did not make the registry's file: the next
                            // attempt goes to upstream.
                            this.peer_failures().insert(shared.flat, Instant::now());
                        }
                        this.inner.metrics.refused(
                            if from_peers { "peer-digest" } else { "digest" },
                            None,
                            &name,
                            &key,
                            format!("{} (from {})", mismatch.without_path(), redact(&url)),
                        );
                        this.inner
                            .metrics
                            .digest_mismatches
                            .get_or_create(&EcosystemLabels {
                                ecosystem: name.to_string(),
                            })
                            .inc();
                        tracing::error!(ecosystem = %name, key = %key, url = %redact(&url), error = %e, "rejected artifact");
                    } else {
                        if e.is_disk_full() {
                            this.store_filled();
                        }
                        tracing::warn!(ecosystem = %name, key = %key, error = %e, "download failed");
                    }
                    progress.failed(&e);
                }
            }
            this.downloads().remove(&(name, key));
        });
        Ok(ArtifactBody::Downloading(download))
    }

    /// Fill `writer` with the artifact: from peers when one holds it or is downloading it,
    /// else (or from where the peers left off) from upstream; then verify and commit it. A
    /// `private` one is not asked of (nor offered to) an open swarm, and is stored as private.
    /// A `listing` is read by its ecosystem and what it names indexed before its own row.
    #[allow(clippy::too_many_arguments)]
    pub(super) async fn run_download(
        &self,
        name: &str,
        key: &str,
        private: bool,
        upstream: Option<&Upstream>,
        url: &Url,
        writer: crate::store::ArtifactWriter,
        progress: &Progress,
        download: &Arc<Download>,
        size: Option<u64>,
        listing: Option<Arc<dyn Ecosystem>>,
    ) -> Result<ArtifactRecord, Error> {
        let flat = download.flat;
        let (cap, too_large) = self.artifact_cap(name, key, url, size)?;
        let peers = self.peers_for(private).cloned();
        let from_peers = match &peers {
            Some(peers) if !self.peers_failed(&flat) => peers.fetch(flat, size).await,
            _ => None,
        };
        let (leaves, pending) = tokio::sync::watch::channel(LeafProgress::default());
        match (&from_peers, &peers, upstream) {
            (Some(_), _, _) => {
                progress.total(size);
            }
            (None, Some(peers), Some(_)) => peers.downloading(PendingLeaves {
                flat,
                file: download.file().clone(),
                progress: pending,
            }),
            _ => {}
        }
        // The blocking side writes, hashes and reports progress (to readers, and the leaves
        // hashed so far to peers); this side reads the network.
        // Each chunk comes with the leaf CID a peer's block was verified against, if any.
        let (tx, mut rx) = tokio::sync::mpsc::channel::<(Bytes, Option<cid::Cid>)>(16);
        let writer_progress = progress.clone();
        let writer_too_large = too_large.clone();
        let writer_task = self.inner.tasks.spawn_blocking(move || {
            let mut writer = writer;
            let mut published = 0;
            while let Some((chunk, leaf)) = rx.blocking_recv() {
                if writer.len() + chunk.len() as u64 > cap {
                    // Dropping the writer deletes its temp file.
                    return Err(writer_too_large());
                }
                writer.write_leaf(&chunk, leaf.as_ref())?;
                writer_progress.written(writer.len());
                let hashed = writer.leaves();
                if hashed.len() > published {
                    leaves.send_modify(|p| p.leaves.extend_from_slice(&hashed[published..]));
                    published = hashed.len();
                }
            }
            Ok::<_, Error>((writer, leaves))
        });
        let mut sent = 0u64;
        let mut peer_error = None;
        if let Some(mut fetch) = from_peers {
            peer_error = Some(loop {
                match fetch.chunks.recv().await {
                    Some(Ok(chunk)) => {
                        // `peer_bytes` is counted by the peer source, per block received.
                        let len = chunk.data.len() as u64;
                        download.add_peer_bytes(len);
                        if tx.send((chunk.data, chunk.leaf)).await.is_err() {
                            break format!("writer of {key} stopped");
                        }
                        sent += len;
                    }
                    Some(Err(reason)) => break reason,
                    None => break String::new(),
                }
            })
            .filter(|reason| !reason.is_empty());
            if let Some(reason) = &peer_error {
                tracing::warn!(ecosystem = name, key = %key, at = sent, "peers could not finish the artifact: {reason}");
            }
        }
        let read_result = match (&peer_error, upstream) {
            (None, _) if sent > 0 || size == Some(0) => Ok(()),
            (Some(reason), None) => Err(Error::NoSource {
                what: format!("{name} artifact {key}"),
                reason: reason.clone(),
                why_not_upstream: self.no_upstream_reason(name),
            }),
            (None, None) => Err(Error::NoSource {
                what: format!("{name} artifact {key}"),
                reason: "no peer holds it".to_owned(),
                why_not_upstream: self.no_upstream_reason(name),
            }),
            (_, Some(upstream)) => {
                let mut on_headers = |total: Option<u64>, away: bool| {
                    if away {
                        progress.withhold();
                    }
                    // A body announced bigger than the room left is not started: the client
                    // gets it streamed unkept instead (see `Keep`).
                    if let Some(total) = total {
                        self.check_room(name, key, total.saturating_sub(sent))?;
                    }
                    progress.total(total);
                    Ok(())
                };
                self.copy_upstream(
                    name,
                    key,
                    upstream,
                    url,
                    &tx,
                    sent,
                    &mut on_headers,
                    (cap, &too_large),
                )
                .await
            }
        };
        drop(tx);
        let (writer, leaves) = writer_task.await.map_err(|source| Error::Task {
            what: format!("the writer of {key}"),
            source,
        })??;
        read_result?;
        let store = self.inner.store.clone();
        let (key, upstream_url) = (key.to_owned(), url.to_string());
        let origin_url = upstream_url.clone();
        let verified = progress.clone();
        let owned_name = name.to_owned();
        blocking(move || {
            let name = owned_name.as_str();
            let origin = crate::store::Origin {
                private,
                upstream_url,
                fetched_at: now_ms(),
            };
            let read = |blob: &crate::store::Blob| {
                if let Some(ecosystem) = &listing {
                    super::listings::index_listing(
                        &store,
                        ecosystem.as_ref(),
                        &key,
                        &origin_url,
                        blob,
                    );
                }
            };
            let committed = store.commit_listing(
                name,
                &key,
                writer,
                origin,
                |size| verified.verified(size),
                read,
            )?;
            let record = committed.record;
            leaves.send_modify(|p| {
                p.leaves = committed.dag.leaves.clone();
                p.done = Some(Ok((record.root, record.size)));
            });
            Ok(record)
        })
        .await
    }

    /// The most bytes a download of `key` may bring, and the error for going over: what the
    /// listing declares, or what the operator allows when it declares none, so an endless body
    /// cannot fill the disk. An artifact declared over the operator's limit is refused here.
    pub(crate) fn artifact_cap(
        &self,
        name: &str,
        key: &str,
        url: &Url,
        size: Option<u64>,
    ) -> Result<(u64, impl Fn() -> Error + Sync + Send + Clone + 'static), Error> {
        let max = self.inner.config.max_artifact_bytes;
        let (cap, setting) = match size {
            Some(declared) if declared <= max => (declared, "the size its listing declares"),
            _ => (max, "--max-artifact-size"),
        };
        let what = format!("{name} artifact {key} from {}", redact(url));
        let too_large = move || Error::TooLarge {
            what: what.clone(),
            limit: crate::limits::size(cap),
            setting: setting.to_owned(),
        };
        if size.is_some_and(|declared| declared > cap) {
            return Err(too_large());
        }
        Ok((cap, too_large))
    }

    /// The free space the store keeps beyond a download's own size (`--min-free`, at least
    /// 1 MiB).
    pub(crate) fn reserve(&self) -> u64 {
        self.inner
            .config
            .min_free
            .bytes(self.inner.store.disk_bytes())
    }

    /// Whether the store can take `bytes` more and keep its reserve free, and has not run out
    /// of space in the last [`FULL_BACKOFF`]. A `statvfs`, quick enough to make inline.
    pub(crate) fn has_room(&self, bytes: u64) -> bool {
        let filled = *self
            .inner
            .store_filled_at
            .lock()
            .unwrap_or_else(|p| p.into_inner());
        if filled.is_some_and(|at| at.elapsed() < FULL_BACKOFF) {
            return false;
        }
        self.inner
            .store
            .free_bytes()
            .is_none_or(|free| free >= bytes.saturating_add(self.reserve()))
    }

    /// [`Mirror::has_room`] as an error naming what did not fit.
    /// When there is none, an eviction pass starts in the background, so that the next
    /// download finds room (this one is streamed unkept).
    pub(super) fn check_room(&self, name: &str, key: &str, bytes: u64) -> Result<(), Error> {
        if self.has_room(bytes) {
            return Ok(());
        }
        let this = self.clone();
        self.inner.tasks.spawn(async move {
            this.make_room(bytes).await;
        });
        Err(Error::Store(crate::error::StoreError::NoRoom {
            what: format!("{name} artifact {key}"),
            needed: bytes.saturating_add(self.reserve()),
            free: self.inner.store.free_bytes().unwrap_or(0),
        }))
    }

    /// Remember that the disk filled up: for [`FULL_BACKOFF`], misses are streamed unkept.
    pub(super) fn store_filled(&self) {
        *self
            .inner
            .store_filled_at
            .lock()
            .unwrap_or_else(|p| p.into_inner()) = Some(Instant::now());
    }

    /// Why an artifact cannot be downloaded from upstream now, for an error message.
    pub(super) fn no_upstream_reason(&self, name: &str) -> String {
        if self.inner.config.offline {
            return "--offline forbids contacting upstream".to_owned();
        }
        match self.ecosystem(name).map(|r| &r.upstream) {
            Some(Err(hint)) => format!("{name} has no upstream configured: {hint}"),
            _ => "upstream was not asked".to_owned(),
        }
    }

    /// Send the artifact's bytes from upstream into `tx`, skipping the first `skip` bytes (which
    /// peers already supplied). A body announced or running over `cap.0` bytes is refused with
    /// the error `cap.1` makes; one arriving slower than the minimum rate is ended. Once the
    /// headers are in, `on_headers` gets the announced length and whether the answer came from
    /// another origin than the one asked (the download must then be held back until verified);
    /// its error ends the copy before any byte is sent.
    #[allow(clippy::too_many_arguments)]
    pub(crate) async fn copy_upstream(
        &self,
        name: &str,
        key: &str,
        upstream: &Upstream,
        url: &Url,
        tx: &tokio::sync::mpsc::Sender<(Bytes, Option<cid::Cid>)>,
        skip: u64,
        on_headers: &mut (dyn FnMut(Option<u64>, bool) -> Result<(), Error> + Send),
        (cap, too_large): (u64, &(dyn Fn() -> Error + Sync)),
    ) -> Result<(), Error> {
        let _permit = upstream.artifact_permit(url).await?;
        let limits = upstream.limits();
        let started = Instant::now();
        let response = upstream.get(url, None, None, None).await;
        self.observe_upstream(name, upstream, started, &response);
        let mut response = response?;
        if !response.status().is_success() {
            return Err(Error::UpstreamStatus {
                url: redact(url),
                status: response.status(),
            });
        }
        let away = upstream.redirected_away(url, &response);
        if away {
            // Bytes from a host the request was redirected to are not handed to clients
            // before they verify.
            tracing::info!(ecosystem = name, key = %key, to = %redact(response.url()), "redirected to another origin: holding the artifact back until it verifies");
        }
        let total = response.content_length();
        if total.is_some_and(|n| n > cap) {
            return Err(too_large());
        }
        on_headers(total, away)?;
        let mut rate = crate::limits::MinRate::new(limits.read_timeout, limits.min_artifact_rate);
        let mut received = 0u64;
        loop {
            // The read timeout bounds silence; the rate check, a body trickling in.
            let chunk = match tokio::time::timeout(rate.until_check(), response.chunk()).await {
                Ok(chunk) => chunk,
                Err(_) => {
                    rate.check().map_err(|reason| Error::UpstreamFailed {
                        url: redact(url),
                        reason,
                    })?;
                    continue;
                }
            };
            if let Ok(Some(chunk)) = &chunk {
                rate.add(chunk.len() as u64)
                    .map_err(|reason| Error::UpstreamFailed {
                        url: redact(url),
                        reason,
                    })?;
                if received + chunk.len() as u64 > cap {
                    return Err(too_large());
                }
            }
            match chunk {
                Ok(Some(mut chunk)) => {
                    let start = received;
                    received += chunk.len() as u64;
                    if received <= skip {
                        continue;
                    }
                    if start < skip {
                        let _ = chunk.split_to((skip - start) as usize);
                    }
                    if tx.send((chunk, None)).await.is_err() {
                        return Err(Error::WriterStopped {
                            key: key.to_owned(),
                        });
                    }
                }
                Ok(None) => break,
                Err(e) => {
                    return Err(Error::UpstreamFailed {
                        url: redact(url),
                        reason: crate::upstream::describe(&e),
                    });
                }
            }
        }
        if let Some(total) = total
            && total != received
        {
            return Err(Error::UpstreamFailed {
                url: redact(url),
                reason: format!("sent {received} of {total} bytes"),
            });
        }
        Ok(())
    }

    pub(super) fn peer_failures(&self) -> std::sync::MutexGuard<'_, HashMap<FlatCid, Instant>> {
        self.inner
            .peer_failures
            .lock()
            .unwrap_or_else(|p| p.into_inner())
    }

    /// Whether peers' bytes for `flat` failed the registry digest lately.
    pub(super) fn peers_failed(&self, flat: &FlatCid) -> bool {
        let mut failures = self.peer_failures();
        failures.retain(|_, at| at.elapsed() < PEER_FAILURE_MEMORY);
        failures.contains_key(flat)
    }
}
