//! Memory given back while nobody asks. The in-memory caches (rendered documents with their
//! gzip forms, hot artifacts) fill to their budget while clients ask, by design, and SQLite
//! keeps a page cache per connection. A node that has answered no request for [`IDLE`] empties
//! them ([`Mirror::release_memory_if_idle`], run by the upkeep): the allocator hands the pages
//! back within seconds, and the first requests after render and read again (milliseconds
//! each). So a busy node keeps its budget and an idle one shrinks back near its start
//! (BENCHMARKS.md, "The in-memory caches' budget").

use std::sync::atomic::{AtomicBool, AtomicI64, Ordering};
use std::time::Duration;

use super::{Mirror, now_ms};

/// How long without a request before the caches are emptied.
pub const IDLE: Duration = Duration::from_secs(60);

/// When the last request came, and whether the caches were emptied since.
#[derive(Debug)]
pub(crate) struct Idleness {
    last_request_ms: AtomicI64,
    released: AtomicBool,
}

impl Default for Idleness {
    fn default() -> Self {
        Idleness {
            last_request_ms: AtomicI64::new(now_ms()),
            released: AtomicBool::new(false),
        }
    }
}

impl Mirror {
    /// A request came (every request the HTTP front gets).
    pub fn note_request(&self) {
        let idleness = &self.inner.idleness;
        idleness.last_request_ms.store(now_ms(), Ordering::Relaxed);
        if idleness.released.load(Ordering::Relaxed) {
            idleness.released.store(false, Ordering::Relaxed);
        }
    }

    /// Empty the in-memory caches and the index's page caches if no request came for a minute
    /// and they were not emptied since the last one. True when they were emptied now.
    pub async fn release_memory_if_idle(&self) -> bool {
        self.release_memory_if_idle_at(now_ms()).await
    }

    async fn release_memory_if_idle_at(&self, now_ms: i64) -> bool {
        let idleness = &self.inner.idleness;
        let last = idleness.last_request_ms.load(Ordering::Relaxed);
        if now_ms.saturating_sub(last) < IDLE.as_millis() as i64
            || idleness.released.swap(true, Ordering::Relaxed)
        {
            return false;
        }
        self.inner.rendered.clear();
        self.inner.content.clear();
        let index = self.inner.index.clone();
        match super::blocking(move || Ok(index.release_memory()?)).await {
            Ok(()) => tracing::debug!("no request for {IDLE:?}: in-memory caches emptied"),
            Err(e) => tracing::warn!("cannot give back the index's page caches: {e}"),
        }
        true
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::MirrorConfig;

    #[tokio::test]
    async fn the_caches_are_emptied_once_after_a_quiet_minute_and_not_while_asked() {
        let dir = tempfile::tempdir().expect("tempdir");
        let mirror =
            Mirror::open(MirrorConfig::new(dir.path().to_path_buf()), Vec::new()).expect("open");
        let flat = crate::cid::FlatCid(crate::cid::raw_block_cid(b"hot"));
        let hot = |mirror: &Mirror| mirror.content().get(&flat).is_some();
        mirror.note_request();
        mirror
            .content()
            .insert(flat, bytes::Bytes::from_static(b"hot"));
        let start = now_ms();
        let quiet = IDLE.as_millis() as i64;
        assert!(!mirror.release_memory_if_idle_at(start + quiet - 1000).await);
        assert!(hot(&mirror), "emptied while asked");
        assert!(mirror.release_memory_if_idle_at(start + quiet + 1000).await);
        assert!(!hot(&mirror), "kept while idle");
        // Once per quiet spell: filled again with no request between, it stays.
        mirror
            .content()
            .insert(flat, bytes::Bytes::from_static(b"hot"));
        assert!(!mirror.release_memory_if_idle_at(start + 3 * quiet).await);
        assert!(hot(&mirror));
        // A request, then a quiet minute after it: emptied again, and the index still reads.
        mirror.note_request();
        assert!(
            mirror
                .release_memory_if_idle_at(now_ms() + quiet + 1000)
                .await
        );
        assert!(!hot(&mirror));
        assert!(mirror.index().schema_version().is_ok());
    }
}
