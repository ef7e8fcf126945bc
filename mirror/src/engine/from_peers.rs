//! Metadata documents from peers, for when upstream cannot be asked: taken only from peers this
//! node trusts with metadata, and read by the adapter like an upstream copy before it is stored.

use url::Url;

use super::{Fetched, Mirror, Registered, document_too_large, now_ms};
use crate::ecosystem::MetadataRoute;
use crate::index::MetadataRecord;
use crate::metrics::EcosystemLabels;
use crate::peers::PeerDocument;
use crate::upstream::{strip_userinfo, without_credentials};

impl Mirror {
    /// [`Mirror::metadata_from_peers`], once for all the callers that miss the same document at
    /// the same time.
    pub(super) async fn shared_metadata_from_peers(
        &self,
        registered: &Registered,
        route: &MetadataRoute,
        cached: &Option<MetadataRecord>,
    ) -> Option<MetadataRecord> {
        self.peers_for(self.is_private(registered, &route.key))?;
        let key = (registered.name.clone(), route.key.clone());
        self.inner
            .peer_metadata_flights
            .run(key, || {
                self.metadata_from_peers(registered, route, cached.as_ref())
            })
            .await
    }

    /// The freshest copy of a document that peers hold and the adapter accepts, when it is
    /// newer than `cached`, checked and indexed like a document from upstream (apt's
    /// signatures included). A refused copy is logged with its peer and the next one is tried.
    pub(super) async fn metadata_from_peers(
        &self,
        registered: &Registered,
        route: &MetadataRoute,
        cached: Option<&MetadataRecord>,
    ) -> Option<MetadataRecord> {
        let peers = self.peers_for(self.is_private(registered, &route.key))?;
        let name = registered.ecosystem.name();
        let cached_at = cached.filter(|c| c.cid.is_some()).map(|c| c.fetched_at);
        for mut doc in peers.metadata(name.to_owned(), route.key.clone()).await {
            // A peer's clock, or a forged date, cannot make its copy fresher than now.
            doc.fetched_at = doc.fetched_at.min(now_ms());
            if cached_at.is_some_and(|at| at >= doc.fetched_at) {
                // Newest first: no later copy is newer than the cache either.
                break;
            }
            let peer = doc.peer.clone();
            match self
                .ingest_peer_document(registered, route, cached, doc)
                .await
            {
                Ok(record) => {
                    self.inner
                        .metrics
                        .peer_documents
                        .get_or_create(&EcosystemLabels {
                            ecosystem: name.to_owned(),
                        })
                        .inc();
                    tracing::info!(ecosystem = name, key = %route.key, peer = %peer, "metadata taken from a peer");
                    self.remember_metadata(name, &route.key, &record);
                    return Some(record);
                }
                Err(e) => {
                    tracing::warn!(ecosystem = name, key = %route.key, peer = %peer, "refused a peer's document: {e}");
                }
            }
        }
        None
    }

    /// Check and index one peer's copy of a document, as if upstream had sent it. Its
    /// `fetched_at` is clamped to now: a copy dated in the future would stay fresh until then.
    pub(super) async fn ingest_peer_document(
        &self,
        registered: &Registered,
        route: &MetadataRoute,
        cached: Option<&MetadataRecord>,
        doc: PeerDocument,
    ) -> Result<MetadataRecord, String> {
        let url = Url::parse(&doc.upstream_url)
            .map(|url| without_credentials(&url))
            .map_err(|e| {
                let shown = strip_userinfo(&doc.upstream_url);
                format!("bad upstream URL {shown:?}: {e}")
            })?;
        let limit = self.document_limit(registered.ecosystem.as_ref());
        if doc.body.len() as u64 > limit {
            return Err(document_too_large(&url, registered.ecosystem.name(), limit).to_string());
        }
        let fetched = Fetched {
            url,
            body: doc.body,
            fetched_at: doc.fetched_at.min(now_ms()),
            etag: doc.etag,
            last_modified: doc.last_modified,
        };
        let upstream = self.upstream_for(registered, &route.key).ok();
        self.ingest_metadata(
            registered.ecosystem.clone(),
            upstream,
            route,
            cached.cloned(),
            fetched,
            None,
        )
        .await
        .map_err(|e| e.to_string())
    }
}
