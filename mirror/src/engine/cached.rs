//! Cached artifacts: what a hit needs worked out once, kept hot in memory; access times
//! batched; damaged copies dropped so that the next request fetches them again.

use std::sync::Arc;
use std::time::Duration;

use super::{Mirror, now_ms};
use crate::index::ArtifactRecord;
use crate::store::Blob;

/// A cached artifact with what its responses need worked out once: artifacts are immutable, so
/// hot ones are kept in memory and a hit touches neither SQLite nor a CID encoder.
#[derive(Debug)]
pub struct CachedArtifact {
    pub ecosystem: Arc<str>,
    pub key: String,
    pub record: ArtifactRecord,
    /// Its stored file.
    pub blob: Blob,
    /// `"<flat CID>"`: a strong validator for every representation of the file.
    pub etag: http::HeaderValue,
    pub root: http::HeaderValue,
    pub last_modified: http::HeaderValue,
}

impl CachedArtifact {
    pub(super) fn new(ecosystem: &str, key: String, record: ArtifactRecord, blob: Blob) -> Self {
        let value = |s: String| {
            http::HeaderValue::from_str(&s).unwrap_or(http::HeaderValue::from_static("invalid"))
        };
        CachedArtifact {
            etag: value(format!("\"{}\"", record.flat)),
            root: value(record.root.to_string()),
            last_modified: http_date(record.fetched_at),
            ecosystem: Arc::from(ecosystem),
            key,
            record,
            blob,
        }
    }
}

/// `ms` since the epoch as an HTTP date header value.
pub(crate) fn http_date(ms: i64) -> http::HeaderValue {
    let time = std::time::UNIX_EPOCH + Duration::from_millis(ms.max(0) as u64);
    http::HeaderValue::from_str(&httpdate::fmt_http_date(time)).unwrap_or(
        http::HeaderValue::from_static("Thu, 01 Jan 1970 00:00:00 GMT"),
    )
}

impl Mirror {
    /// Drop an artifact whose stored file was found damaged or missing when it was served: out
    /// of the hot rows, its file moved aside (into `tmp/`, emptied at the next start), its rows
    /// and leaves out of the index. The references that named it stay, so the next request
    /// fetches it again. Blocking.
    pub(crate) fn forget_damaged(&self, cached: &CachedArtifact, why: &str) {
        let flat = cached.record.flat;
        tracing::error!(
            ecosystem = %cached.ecosystem,
            key = %cached.key,
            flat = %flat,
            "stored artifact is damaged ({why}): dropped, to be fetched again"
        );
        for by_key in self.hot().values_mut() {
            by_key.retain(|_, c| c.record.flat != flat);
        }
        if let Err(e) = self.inner.store.forget_damaged(&flat) {
            tracing::warn!(flat = %flat, "cannot drop the damaged artifact: {e}");
        }
        self.inner
            .metrics
            .cache(&cached.ecosystem, "artifact", "damaged");
        self.inner.metrics.damaged_files.inc();
    }

    pub(super) fn touch(&self, cached: &Arc<CachedArtifact>) {
        let mut touched = self.inner.touched.lock().unwrap_or_else(|p| p.into_inner());
        if touched.len() < 100_000 {
            touched.push((cached.clone(), now_ms()));
        }
    }
}
