//! Listing artifacts (apt's `Packages`): artifacts that name other artifacts' digests, read
//! once verified and indexed in batches before their own row, and the wait for them when a
//! digest is not known yet.

use std::sync::Arc;
use std::time::{Duration, Instant};

use url::Url;

use super::{LISTING_BATCH, Mirror, ref_record};
use crate::ecosystem::Ecosystem;
use crate::error::Error;
use crate::error::StoreError;
use crate::index::RefRecord;
use crate::store::{Blob, Store};
use crate::upstream::redact;

impl Mirror {
    pub(super) fn listings_started(&self, name: &str) {
        let mut counts = self
            .inner
            .listings
            .0
            .lock()
            .unwrap_or_else(|p| p.into_inner());
        *counts.entry(Arc::from(name)).or_default() += 1;
    }

    pub(super) fn listings_done(&self, name: &str) {
        let mut counts = self
            .inner
            .listings
            .0
            .lock()
            .unwrap_or_else(|p| p.into_inner());
        if let Some(n) = counts.get_mut(name) {
            *n = n.saturating_sub(1);
        }
        self.inner.listings.1.notify_waiters();
    }

    /// Wait (30 s at most) until no listing of `name` is being downloaded or read; true if
    /// there was one to wait for.
    pub(super) async fn wait_for_listings(&self, name: &str) -> bool {
        let deadline = Instant::now() + Duration::from_secs(30);
        let mut waited = false;
        loop {
            let notified = self.inner.listings.1.notified();
            let pending = {
                let counts = self
                    .inner
                    .listings
                    .0
                    .lock()
                    .unwrap_or_else(|p| p.into_inner());
                counts.get(name).copied().unwrap_or(0)
            };
            if pending == 0 {
                return waited;
            }
            waited = true;
            let left = deadline.saturating_duration_since(Instant::now());
            if left.is_zero() || tokio::time::timeout(left, notified).await.is_err() {
                return true;
            }
        }
    }
}

/// Index what the verified listing `blob` (the artifact `key` of `ecosystem`, fetched from
/// `upstream_url`) says about other artifacts, in transactions of [`LISTING_BATCH`]
/// references written on a thread of their own while the listing is read: memory stays flat
/// however long the listing, and other writers of the index (every fetch and commit) wait at
/// most one batch. Runs on the committing thread, before the
/// listing's own row is written (`Store::commit_listing`). A listing that cannot be read is
/// logged: its own bytes are verified and still served, and the references read before the
/// failure (from those verified bytes) stay indexed.
pub(super) fn index_listing(
    store: &Store,
    ecosystem: &dyn Ecosystem,
    key: &str,
    upstream_url: &str,
    blob: &Blob,
) {
    let name = ecosystem.name();
    let started = Instant::now();
    match read_listing(store, ecosystem, key, upstream_url, blob) {
        Ok(n) => {
            let ms = started.elapsed().as_millis();
            tracing::info!(ecosystem = name, key, artifacts = n, ms, "listing indexed")
        }
        Err(e) => tracing::warn!(ecosystem = name, key, error = %e, "listing not indexed"),
    }
}

fn read_listing(
    store: &Store,
    ecosystem: &dyn Ecosystem,
    key: &str,
    upstream_url: &str,
    blob: &Blob,
) -> Result<usize, Error> {
    let name = ecosystem.name();
    let url = Url::parse(upstream_url).map_err(|source| Error::StoredUrl {
        url: upstream_url.to_owned(),
        source,
    })?;
    let mut file = std::io::BufReader::new(blob.open()?);
    // Decoding and parsing (this thread) and writing the index (the writer's) take about as
    // long each for a Debian-sized listing: done side by side, the listing is indexed in
    // about half the time. One batch waits between them at most, so memory stays flat.
    let (batches, inbox) = std::sync::mpsc::sync_channel::<Vec<(String, RefRecord)>>(1);
    std::thread::scope(|scope| {
        let writer = scope.spawn(move || {
            let mut indexed = 0usize;
            for batch in inbox {
                store.put_listed_refs(name, key, &batch)?;
                indexed += batch.len();
            }
            Ok::<_, StoreError>(indexed)
        });
        let mut batch = Vec::with_capacity(LISTING_BATCH);
        let mut each = |r: crate::ecosystem::ArtifactRef| {
            batch.push(ref_record(r));
            if batch.len() >= LISTING_BATCH {
                let full = std::mem::replace(&mut batch, Vec::with_capacity(LISTING_BATCH));
                // The writer stopped at an error it reports below.
                batches.send(full).map_err(|_| {
                    crate::ecosystem::AdapterError("the index writer stopped".to_owned())
                })?;
            }
            Ok(())
        };
        let read = ecosystem.listing(key, &url, &mut file, &mut each);
        if read.is_ok() && !batch.is_empty() {
            // A failed send leaves the writer's error to report.
            let _ = batches.send(batch);
        }
        drop(batches);
        let written = writer.join().map_err(|_| Error::WriterStopped {
            key: format!("the references of {key}"),
        })?;
        let indexed = written?;
        read.map_err(|e| Error::BadMetadata {
            url: redact(&url),
            reason: e.0,
        })?;
        Ok(indexed)
    })
}
