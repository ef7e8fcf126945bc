//! A byte-bounded cache of metadata documents as rendered for clients.
//!
//! Rendering a packument means parsing and rewriting it; a hit must cost no more than handing out
//! bytes, so rendered bodies are kept in memory keyed by (document CID, variant, base URL), with
//! their ETag computed once. Least recently used entries go first when the budget is exceeded;
//! a body larger than a quarter of the budget is served but not kept.

use std::collections::HashMap;
use std::sync::{Arc, Mutex};

use bytes::Bytes;

use crate::cid::{BlockCid, sha256};

#[derive(Clone, Debug, Hash, PartialEq, Eq)]
pub struct RenderKey {
    pub cid: BlockCid,
    pub variant: &'static str,
    pub base: String,
}

impl RenderKey {
    /// A strong validator for the rendered body: rendering is deterministic in these inputs.
    pub fn etag(&self) -> String {
        let mut input = self.cid.to_bytes();
        input.extend_from_slice(self.variant.as_bytes());
        input.push(0);
        input.extend_from_slice(self.base.as_bytes());
        format!("\"{}\"", hex::encode(&sha256(&input)[..16]))
    }
}

/// A rendered body ready to send.
#[derive(Debug)]
pub struct RenderedDoc {
    pub body: Bytes,
    pub content_type: &'static str,
    pub etag: String,
    /// The body gzipped, made on the first request that accepts it.
    pub gzip: std::sync::OnceLock<Bytes>,
}

impl RenderedDoc {
    pub fn new(body: Bytes, content_type: &'static str, etag: String) -> Self {
        RenderedDoc {
            body,
            content_type,
            etag,
            gzip: std::sync::OnceLock::new(),
        }
    }

    /// The gzipped body (blocking: compresses on first use).
    pub fn gzipped(&self) -> Bytes {
        self.gzip
            .get_or_init(|| {
                use std::io::Write as _;
                let mut encoder = flate2::write::GzEncoder::new(
                    Vec::with_capacity(self.body.len() / 4),
                    flate2::Compression::new(4),
                );
                // Writing to a Vec cannot fail.
                let _ = encoder.write_all(&self.body);
                Bytes::from(encoder.finish().unwrap_or_default())
            })
            .clone()
    }

    /// The ETag of the gzipped representation (distinct, as strong validators must be).
    pub fn gzip_etag(&self) -> String {
        format!("{}-gzip\"", self.etag.trim_end_matches('"'))
    }
}

pub struct RenderCache {
    budget: usize,
    inner: Mutex<Entries>,
}

#[derive(Default)]
struct Entries {
    used: usize,
    tick: u64,
    map: HashMap<RenderKey, (Arc<RenderedDoc>, u64)>,
}

impl RenderCache {
    pub fn new(budget: usize) -> Self {
        RenderCache {
            budget,
            inner: Mutex::new(Entries::default()),
        }
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, Entries> {
        self.inner.lock().unwrap_or_else(|p| p.into_inner())
    }

    pub fn get(&self, key: &RenderKey) -> Option<Arc<RenderedDoc>> {
        let mut entries = self.lock();
        entries.tick += 1;
        let tick = entries.tick;
        entries.map.get_mut(key).map(|(doc, used)| {
            *used = tick;
            doc.clone()
        })
    }

    pub fn insert(&self, key: RenderKey, doc: Arc<RenderedDoc>) {
        let size = doc.body.len();
        if size > self.budget / 4 {
            return;
        }
        let mut entries = self.lock();
        entries.tick += 1;
        let tick = entries.tick;
        if let Some((old, _)) = entries.map.insert(key, (doc, tick)) {
            entries.used -= old.body.len();
        }
        entries.used += size;
        if entries.used > self.budget {
            let mut by_age: Vec<(u64, RenderKey)> = entries
                .map
                .iter()
                .map(|(k, (_, used))| (*used, k.clone()))
                .collect();
            by_age.sort_unstable_by_key(|(used, _)| *used);
            for (_, key) in by_age {
                if entries.used <= self.budget * 3 / 4 {
                    break;
                }
                if let Some((old, _)) = entries.map.remove(&key) {
                    entries.used -= old.body.len();
                }
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn key(n: u8) -> RenderKey {
        RenderKey {
            cid: BlockCid(crate::cid::raw_block_cid(&[n])),
            variant: "full",
            base: "http://h/npm/".into(),
        }
    }

    fn doc(len: usize) -> Arc<RenderedDoc> {
        Arc::new(RenderedDoc::new(
            Bytes::from(vec![b'x'; len]),
            "application/json",
            "\"e\"".into(),
        ))
    }

    #[test]
    fn gzip_round_trips_with_its_own_etag() {
        use std::io::Read as _;
        let d = doc(10_000);
        let mut out = Vec::new();
        flate2::read::GzDecoder::new(&d.gzipped()[..])
            .read_to_end(&mut out)
            .expect("gunzip");
        assert_eq!(out, d.body);
        assert!(d.gzipped().len() < 1000);
        assert_eq!(d.gzip_etag(), "\"e-gzip\"");
    }

    #[test]
    fn least_recently_used_entries_are_evicted_first() {
        let cache = RenderCache::new(100);
        cache.insert(key(1), doc(20));
        cache.insert(key(2), doc(20));
        cache.insert(key(3), doc(20));
        assert!(cache.get(&key(1)).is_some());
        cache.insert(key(4), doc(25));
        cache.insert(key(5), doc(25));
        assert!(cache.get(&key(1)).is_some(), "recently used survives");
        assert!(cache.get(&key(2)).is_none(), "oldest goes");
        cache.insert(key(6), doc(26));
        assert!(
            cache.get(&key(6)).is_none(),
            "over a quarter of the budget is not kept"
        );
    }

    #[test]
    fn etags_differ_by_variant_and_base() {
        let a = key(1);
        let mut b = key(1);
        b.variant = "abbreviated";
        let mut c = key(1);
        c.base = "http://other/npm/".into();
        assert_ne!(a.etag(), b.etag());
        assert_ne!(a.etag(), c.etag());
        assert_eq!(a.etag(), key(1).etag());
    }
}
