//! Metadata documents as rendered for clients, and their cache.
//!
//! Rendering a packument means parsing and rewriting it; a hit must cost no more than handing out
//! bytes, so rendered bodies are kept in memory (a byte-bounded [`crate::engine::lru::Lru`]) keyed by
//! (document CID, variant, part, base URL), with their ETag computed once.

use std::sync::Arc;

use bytes::Bytes;

use crate::cid::{BlockCid, sha256};

#[derive(Clone, Debug, Hash, PartialEq, Eq)]
pub struct RenderKey {
    pub cid: BlockCid,
    pub variant: &'static str,
    /// The part of the document rendered ([`crate::ecosystem::Route::Part`]), if not all of it.
    pub part: Option<String>,
    pub base: String,
    /// Rendered for clients that must present an access token (`--auth required`).
    pub for_token_clients: bool,
    /// The policy generation it was rendered under (0 when no policy applies to its
    /// ecosystem).
    pub policy: u64,
}

impl RenderKey {
    /// A strong validator for the rendered body: rendering is deterministic in these inputs.
    pub fn etag(&self) -> String {
        let mut input = self.cid.to_bytes();
        input.extend_from_slice(self.variant.as_bytes());
        input.push(0);
        if let Some(part) = &self.part {
            input.extend_from_slice(part.as_bytes());
            input.push(0);
        }
        input.extend_from_slice(self.base.as_bytes());
        if self.for_token_clients {
            input.extend_from_slice(b"\0token");
        }
        format!("\"{}\"", hex::encode(&sha256(&input)[..16]))
    }

    /// [`RenderKey::etag`] of a body the policy filtered: it changes with what was left out.
    pub fn etag_without(&self, refused: &std::collections::BTreeSet<String>) -> String {
        if refused.is_empty() {
            return self.etag();
        }
        let mut input = self.etag().into_bytes();
        for key in refused {
            input.push(0);
            input.extend_from_slice(key.as_bytes());
        }
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
    /// When the policy's view of the document changes (a refused version comes of age), in ms
    /// since the epoch: past it, the document is rendered again.
    pub until: Option<i64>,
}

impl RenderedDoc {
    pub fn new(body: Bytes, content_type: &'static str, etag: String) -> Self {
        RenderedDoc {
            body,
            content_type,
            etag,
            gzip: std::sync::OnceLock::new(),
            until: None,
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

impl crate::engine::lru::Weight for RenderedDoc {
    fn weight(&self) -> usize {
        self.body.len() + self.gzip.get().map_or(0, |g| g.len())
    }
}

/// Rendered documents by (document, variant, part, base).
pub type RenderCache = crate::engine::lru::Lru<RenderKey, Arc<RenderedDoc>>;

#[cfg(test)]
mod tests {
    use super::*;

    fn key(n: u8) -> RenderKey {
        RenderKey {
            cid: BlockCid(crate::cid::raw_block_cid(&[n])),
            variant: "full",
            part: None,
            base: "http://h/npm/".into(),
            for_token_clients: false,
            policy: 0,
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
