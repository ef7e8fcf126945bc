//! Listing artifacts (apt's `Packages`): artifacts that name other artifacts' digests, read
//! once verified and indexed in batches, and the wait for them when a digest is not known yet.

use std::sync::Arc;
use std::time::{Duration, Instant};

use url::Url;

use super::{LISTING_BATCH, Mirror, blocking, ref_record};
use crate::ecosystem::Ecosystem;
use crate::error::Error;
use crate::index::ArtifactRecord;
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

    /// Index what a verified listing artifact says about other artifacts, on a blocking thread,
    /// in transactions of [`LISTING_BATCH`] references: memory stays flat however long the
    /// listing, and other writers of the index (every fetch and commit) wait at most one batch.
    /// A listing that cannot be read is logged: its own bytes are verified and still served,
    /// and the references read before the failure (from those verified bytes) stay indexed.
    pub(super) async fn read_listing(
        &self,
        ecosystem: Arc<dyn Ecosystem>,
        key: String,
        record: &ArtifactRecord,
    ) {
        let name = ecosystem.name().to_owned();
        let store = self.inner.store.clone();
        let blob = store.blob(&record.flat);
        let upstream_url = record.upstream_url.clone();
        let owned_name = name.clone();
        let result = blocking(move || {
            let name = owned_name;
            let url = Url::parse(&upstream_url).map_err(|source| Error::StoredUrl {
                url: upstream_url.clone(),
                source,
            })?;
            let mut file = std::io::BufReader::new(blob.open()?);
            let started = Instant::now();
            let mut batch = Vec::with_capacity(LISTING_BATCH);
            let mut indexed = 0usize;
            let mut index_error = None;
            let mut each = |r: crate::ecosystem::ArtifactRef| {
                batch.push(ref_record(r));
                if batch.len() >= LISTING_BATCH {
                    if let Err(e) = store.put_refs(&name, &key, &batch) {
                        let message = e.to_string();
                        index_error = Some(e);
                        return Err(crate::ecosystem::AdapterError(message));
                    }
                    indexed += batch.len();
                    batch.clear();
                }
                Ok(())
            };
            let read = ecosystem.listing(&key, &url, &mut file, &mut each);
            if let Some(e) = index_error {
                return Err(e.into());
            }
            read.map_err(|e| Error::BadMetadata {
                url: redact(&url),
                reason: e.0,
            })?;
            store.put_refs(&name, &key, &batch)?;
            Ok((indexed + batch.len(), started.elapsed().as_millis()))
        })
        .await;
        match result {
            Ok((n, ms)) => {
                tracing::info!(ecosystem = name, artifacts = n, ms, "listing indexed")
            }
            Err(e) => tracing::warn!(ecosystem = name, error = %e, "listing not indexed"),
        }
    }
}
