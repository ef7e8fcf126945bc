//! Artifact lookups: a hot or indexed copy, a download under way, the same bytes held under
//! another key, a derived artifact, or a new download; and the references that give an
//! artifact its digest.

use std::sync::Arc;

use url::Url;

use super::{
    CachedArtifact, Enough, HOT_ARTIFACTS, Keep, Mirror, Registered, STORE_RESERVE, blocking,
    now_ms,
};
use crate::cid::{Digest, FlatCid};
use crate::ecosystem::{ArtifactRoute, Listing, MetadataRoute};
use crate::engine::download::Download;
use crate::error::Error;
use crate::index::RefRecord;
use crate::store::Origin;
use crate::upstream::Upstream;

/// What a client gets for an artifact.
pub enum ArtifactBody {
    Cached(Arc<CachedArtifact>),
    Downloading(Arc<Download>),
    /// Streamed from upstream to this one client and checked on the way, not stored: the store
    /// has no room for it.
    Unkept(crate::engine::unkept::Unkept),
}

/// Files remembered as fetched ahead of their requests, at most.
const AHEAD_REMEMBERED: usize = 4096;

/// Whether a lookup is a client's request, or made ahead of one ([`Mirror::look_ahead`]).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Lookup {
    Asked,
    Ahead,
}

impl Mirror {
    /// Look up an artifact: cache, a download under way, or a new download from upstream.
    /// Cancel-safe: a started download goes on without the caller.
    pub(crate) async fn artifact(
        &self,
        registered: &Registered,
        route: &ArtifactRoute,
        keep: Keep,
    ) -> Result<ArtifactBody, Error> {
        if let Listing::Current(document) = &route.listed_by {
            return self.current_artifact(registered, route, document).await;
        }
        self.find_or_fetch(registered, route, keep, Lookup::Asked)
            .await
    }

    /// [`Mirror::artifact`] below the current-document case; a [`Lookup::Ahead`] is not
    /// counted (the request it is ahead of is) and starts nothing but a stored download.
    async fn find_or_fetch(
        &self,
        registered: &Registered,
        route: &ArtifactRoute,
        keep: Keep,
        lookup: Lookup,
    ) -> Result<ArtifactBody, Error> {
        let name = registered.ecosystem.name();
        let count = |result: &'static str| {
            if lookup == Lookup::Asked {
                self.inner.metrics.cache(name, "artifact", result);
            }
        };
        // Before the cache: a refused file is not served from it either.
        self.check_policy(registered, route).await?;
        let asked_at = now_ms();
        // The download map before the index: a download commits to the index before it leaves
        // the map, so a request that misses the one finds the other. (Not when that download
        // just failed for want of room.)
        if keep == Keep::IfRoom
            && let Some(download) = self.download_of(name, &route.key)
        {
            // The request of a file fetched ahead of it is its miss.
            count(if self.asked_after_ahead(name, &route.key) {
                "miss"
            } else {
                "joined"
            });
            return Ok(ArtifactBody::Downloading(download));
        }
        let hot = self
            .hot()
            .get(name)
            .and_then(|by_key| by_key.get(&route.key))
            .cloned();
        let cached = match hot {
            Some(cached) => Some(cached),
            None => {
                let (index, key, store) = (
                    self.inner.index.clone(),
                    route.key.clone(),
                    self.inner.store.clone(),
                );
                let owned_name = registered.name.clone();
                let found = blocking(move || {
                    let name = &*owned_name;
                    Ok(index.get_artifact(name, &key)?.map(|record| {
                        let blob = store.blob(&record.flat);
                        Arc::new(CachedArtifact::new(name, key, record, blob))
                    }))
                })
                .await?;
                if let Some(cached) = &found {
                    let mut hot = self.hot();
                    let by_key = hot.entry(registered.name.clone()).or_default();
                    if by_key.len() >= HOT_ARTIFACTS {
                        by_key.clear();
                    }
                    by_key.insert(route.key.clone(), cached.clone());
                }
                found
            }
        };
        if let Some(cached) = cached {
            count(if self.asked_after_ahead(name, &route.key) {
                "miss"
            } else {
                "hit"
            });
            self.touch(&cached);
            return Ok(ArtifactBody::Cached(cached));
        }
        if let Some(derive) = &route.derive
            && self.reference(name, &route.key).await?.is_none()
        {
            // Upstream does not publish it: make it from the source artifact.
            return self.derive(registered, route, derive).await;
        }
        // Whether a download may go upstream is settled after the cache is searched by content:
        // an offline node serves a file it holds under another name (apt's by-hash names).
        let upstream = self.download_upstream(registered, route);
        let reference = match self.reference(name, &route.key).await? {
            Some(r) => r,
            None => {
                self.reference_from_metadata(registered, route, asked_at)
                    .await?
            }
        };
        let url = Url::parse(&reference.url).map_err(|e| Error::BadMetadata {
            url: reference.url.clone(),
            reason: e.to_string(),
        })?;
        if let Some(cached) = self
            .same_content(name, Some(&route.key), &reference.flat)
            .await?
        {
            count("hit");
            return Ok(ArtifactBody::Cached(cached));
        }
        // The same bytes under another name, downloaded now (or verified, and their listing
        // being read before their row is written): wait for them rather than fetch them twice.
        if let Some(download) = self.download_of_flat(name, &reference.flat)
            && download.committed().await.is_ok()
            && let Some(cached) = self
                .same_content(name, Some(&route.key), &reference.flat)
                .await?
        {
            count("hit");
            return Ok(ArtifactBody::Cached(cached));
        }
        let upstream = upstream?;
        if let Some(upstream) = &upstream {
            if !upstream.allows(&url)
                && let Some(document) = route.listed_by.document()
            {
                // Declared download prefixes live in memory: after a restart, the indexed
                // references come back before the documents that declared them have been read
                // again.
                if let Some(context) = &document.context {
                    self.load_doc(name, context).await?;
                }
                if !upstream.allows(&url) {
                    self.load_doc(name, document).await?;
                }
            }
            upstream.check(&url)?;
        }
        count("miss");
        // A listing must be stored to be read; everything else may pass through unkept when
        // the store is full and nothing can be evicted.
        if let Some(upstream) = &upstream
            && !route.listing
            && (keep == Keep::Never || !self.make_room(reference.size.unwrap_or(0)).await)
        {
            if lookup == Lookup::Ahead {
                // An unkept stream has one reader: the request itself starts it.
                return Err(Error::NoSource {
                    what: format!("{name} artifact {}", route.key),
                    reason: "the store has no room to fetch it ahead".to_owned(),
                    why_not_upstream: String::new(),
                });
            }
            tracing::warn!(ecosystem = name, key = %route.key, free = ?self.inner.store.free_bytes(), "no room in the store: streaming the artifact without keeping it");
            self.inner.metrics.cache(name, "artifact", "unkept");
            return crate::engine::unkept::start(self, name, &route.key, upstream, url, &reference)
                .map(ArtifactBody::Unkept);
        }
        let body = self
            .start_download(
                registered,
                route.key.clone(),
                route,
                upstream,
                url,
                &reference,
            )
            .await?;
        if let (Lookup::Ahead, ArtifactBody::Downloading(_)) = (lookup, &body) {
            let mut ahead = self.inner.ahead.lock().unwrap_or_else(|p| p.into_inner());
            // Bounded: a request that never came (its client left) is forgotten in the end.
            if ahead.len() >= AHEAD_REMEMBERED {
                ahead.clear();
            }
            ahead.insert((Arc::from(name), route.key.clone()));
            self.inner
                .any_ahead
                .store(true, std::sync::atomic::Ordering::Release);
        }
        Ok(body)
    }

    /// The upstream a miss of `key` may download from: `None` when only peers may be asked
    /// (offline, or no upstream configured, with the swarm on). Without the swarm, those are the
    /// errors a client gets.
    pub(super) fn download_upstream(
        &self,
        registered: &Registered,
        route: &ArtifactRoute,
    ) -> Result<Option<Upstream>, Error> {
        let (name, key) = (registered.ecosystem.name(), &route.key);
        let peers = self.peer_source().is_some();
        if self.inner.config.offline {
            return if peers {
                Ok(None)
            } else {
                Err(Error::Offline {
                    what: format!("{name} artifact {key}"),
                })
            };
        }
        // An artifact comes from where the document listing it came from.
        let chosen = match route.listed_by.document() {
            Some(document) => self.upstream_for(registered, &document.key),
            None => self.upstream(registered),
        };
        match chosen {
            Ok(upstream) => Ok(Some(upstream.clone())),
            Err(_) if peers => Ok(None),
            Err(e) => Err(e),
        }
    }

    /// An artifact named by a mutable key ([`Listing::Current`]): whatever file `document`
    /// lists under the key now, served from the cache when those bytes are there, else
    /// downloaded and cached under a key naming its content.
    pub(super) async fn current_artifact(
        &self,
        registered: &Registered,
        route: &ArtifactRoute,
        document: &MetadataRoute,
    ) -> Result<ArtifactBody, Error> {
        let name = registered.ecosystem.name();
        let hit = self.metadata(registered, document).await?;
        if hit.record.cid.is_none() {
            return Err(Error::NotFound(format!(
                "{name} {}: upstream has no {}",
                route.key, document.key
            )));
        }
        let reference = self.reference(name, &route.key).await?.ok_or_else(|| {
            Error::NotFound(format!(
                "{name} {}: not listed in {}",
                route.key, document.key
            ))
        })?;
        if let Some(cached) = self.same_content(name, None, &reference.flat).await? {
            self.inner.metrics.cache(name, "artifact", "hit");
            self.touch(&cached);
            return Ok(ArtifactBody::Cached(cached));
        }
        let key = crate::engine::content_key::make(&route.key, &reference.flat);
        if let Some(download) = self.download_of(name, &key) {
            self.inner.metrics.cache(name, "artifact", "joined");
            return Ok(ArtifactBody::Downloading(download));
        }
        let upstream = self.download_upstream(registered, route)?;
        let url = Url::parse(&reference.url).map_err(|e| Error::BadMetadata {
            url: reference.url.clone(),
            reason: e.to_string(),
        })?;
        if let Some(upstream) = &upstream {
            upstream.check(&url)?;
        }
        self.inner.metrics.cache(name, "artifact", "miss");
        self.start_download(registered, key, route, upstream, url, &reference)
            .await
    }

    /// A cached artifact of `name` with the bytes `flat` names, whatever key it was cached
    /// under; indexed under `alias` too when one is given (the same file named twice, as apt
    /// names an index by path and by hash).
    pub(super) async fn same_content(
        &self,
        name: &str,
        alias: Option<&str>,
        flat: &FlatCid,
    ) -> Result<Option<Arc<CachedArtifact>>, Error> {
        let (store, flat) = (self.inner.store.clone(), *flat);
        let alias = alias.map(str::to_owned);
        let owned_name = name.to_owned();
        blocking(move || {
            let name = owned_name.as_str();
            let Some((key, record)) = store.find_by_flat(name, &flat, alias.as_deref())? else {
                return Ok(None);
            };
            let blob = store.blob(&record.flat);
            Ok(Some(Arc::new(CachedArtifact::new(name, key, record, blob))))
        })
        .await
    }

    /// The digest and URL of an artifact its cached metadata does not list (yet): get the
    /// document (fresh from the cache if another request just fetched it), and if it still does
    /// not list the artifact, fetch it afresh once (a version published since).
    pub(super) async fn reference_from_metadata(
        &self,
        registered: &Registered,
        route: &ArtifactRoute,
        asked_at: i64,
    ) -> Result<RefRecord, Error> {
        let name = registered.ecosystem.name();
        let Some(document) = route.listed_by.document() else {
            if self.wait_for_listings(name).await
                && let Some(found) = self.reference(name, &route.key).await?
            {
                return Ok(found);
            }
            return Err(Error::NotFound(format!(
                "{name} {}: not listed in any index this node holds (fetch the indexes through it first)",
                route.key
            )));
        };
        let hit = self.metadata(registered, document).await?;
        let mut record = hit.record;
        if record.cid.is_some()
            && let Some(found) = self.reference(name, &route.key).await?
        {
            return Ok(found);
        }
        if record.fetched_at < asked_at && hit.stale_because.is_none() {
            record = self
                .refresh(
                    registered,
                    document,
                    Some(record),
                    Enough::FetchedSince(asked_at),
                    None,
                )
                .await
                .map_err(Error::Shared)?;
        }
        if record.cid.is_none() {
            return Err(Error::NotFound(format!(
                "{name} {}: upstream has no {}",
                route.key, document.key
            )));
        }
        self.reference(name, &route.key).await?.ok_or_else(|| {
            Error::NotFound(format!(
                "{name} {}: not listed in {}",
                route.key, document.key
            ))
        })
    }

    /// Make `route`'s artifact from its source (cached or downloaded first), store it and index
    /// it like any artifact. Concurrent calls may both derive; the results are identical.
    pub(super) async fn derive(
        &self,
        registered: &Registered,
        route: &ArtifactRoute,
        derive: &crate::ecosystem::Derive,
    ) -> Result<ArtifactBody, Error> {
        let name = registered.ecosystem.name();
        let source_route = ArtifactRoute {
            key: derive.source.clone(),
            listed_by: route.listed_by.clone(),
            derive: None,
            listing: false,
        };
        // Boxed: `artifact` calls this, and this calls `artifact` for the source.
        let source = match Box::pin(self.artifact(registered, &source_route, Keep::IfRoom)).await? {
            ArtifactBody::Cached(cached) => cached.blob.clone(),
            ArtifactBody::Unkept(_) => {
                // Derived from a stored file only: none can be had while the store is full.
                return Err(Error::Store(crate::error::StoreError::NoRoom {
                    what: format!("{name} {} (derived from {})", route.key, derive.source),
                    needed: STORE_RESERVE,
                    free: self.inner.store.free_bytes().unwrap_or(0),
                }));
            }
            ArtifactBody::Downloading(download) => {
                let record = download
                    .committed()
                    .await
                    .map_err(|(status, message)| Error::Relayed { status, message })?;
                self.inner.store.blob(&record.flat)
            }
        };
        let (store, key) = (self.inner.store.clone(), route.key.clone());
        let (function, source_key) = (derive.function, derive.source.clone());
        let private = self.artifact_is_private(registered, route);
        let owned_name = name.to_owned();
        let cached = blocking(move || {
            let name = owned_name.as_str();
            let mut file = source.open()?;
            let bytes = function(&mut file)
                .map_err(|e| Error::NotFound(format!("{name} {key}: {}", e.0)))?;
            let mut writer =
                store.artifact_writer(Digest::of(crate::cid::Algorithm::Sha256, &bytes))?;
            writer.write(&bytes)?;
            let origin = Origin {
                private,
                upstream_url: format!("derived from {source_key}"),
                fetched_at: now_ms(),
            };
            let committed = store.commit_artifact(name, &key, writer, origin, |_| {})?;
            Ok(Arc::new(CachedArtifact::new(
                name,
                key,
                committed.record,
                committed.blob,
            )))
        })
        .await?;
        self.committed(name);
        tracing::info!(ecosystem = name, key = %route.key, source = %derive.source, "artifact derived");
        Ok(ArtifactBody::Cached(cached))
    }

    pub(super) async fn reference(
        &self,
        name: &str,
        key: &str,
    ) -> Result<Option<RefRecord>, Error> {
        let (index, key) = (self.inner.index.clone(), key.to_owned());
        let name = name.to_owned();
        blocking(move || Ok(index.get_ref(&name, &key)?)).await
    }

    /// Start downloading the file `route` names when this node has neither it nor a download
    /// of it: a client has asked for it already, behind other requests on its connection, and
    /// will join the download when its turn comes (see `http::lookahead`). Whatever stops the
    /// download from starting (a policy refusal, an unknown file, no upstream) is left for that
    /// request to meet and report; a cached file is not touched, so hits are counted once.
    pub(crate) async fn look_ahead(&self, registered: &Registered, route: &ArtifactRoute) {
        let name = registered.ecosystem.name();
        let held = self.download_of(name, &route.key).is_some()
            || self
                .hot()
                .get(name)
                .is_some_and(|by_key| by_key.contains_key(&route.key));
        if held {
            return;
        }
        let (index, key, owned_name) = (
            self.inner.index.clone(),
            route.key.clone(),
            registered.name.clone(),
        );
        let cached = blocking(move || Ok(index.get_artifact(&owned_name, &key)?.is_some())).await;
        if !matches!(cached, Ok(false)) {
            return;
        }
        if matches!(route.listed_by, Listing::Current(_)) {
            return;
        }
        // A download, once started, runs to its end whoever reads it.
        let started = self
            .find_or_fetch(registered, route, Keep::IfRoom, Lookup::Ahead)
            .await;
        if let Ok(ArtifactBody::Downloading(_)) = started {
            tracing::debug!(ecosystem = name, key = %route.key, "fetching a pipelined request's file ahead");
        }
    }

    pub(super) fn hot(&self) -> std::sync::MutexGuard<'_, super::HotArtifacts> {
        self.inner.hot.lock().unwrap_or_else(|p| p.into_inner())
    }

    pub(super) fn downloads(&self) -> std::sync::MutexGuard<'_, super::Downloads> {
        self.inner
            .downloads
            .lock()
            .unwrap_or_else(|p| p.into_inner())
    }

    /// True once for a request of a file fetched ahead of it (see `Inner::ahead`).
    fn asked_after_ahead(&self, name: &str, key: &str) -> bool {
        use std::sync::atomic::Ordering;
        if !self.inner.any_ahead.load(Ordering::Acquire) {
            return false;
        }
        let mut ahead = self.inner.ahead.lock().unwrap_or_else(|p| p.into_inner());
        let found = ahead.remove(&(Arc::from(name), key.to_owned()));
        if ahead.is_empty() {
            self.inner.any_ahead.store(false, Ordering::Release);
        }
        found
    }

    /// A download under way of `name`'s bytes `flat`, under whichever key.
    fn download_of_flat(&self, name: &str, flat: &FlatCid) -> Option<Arc<Download>> {
        self.downloads()
            .iter()
            .find(|((ecosystem, _), download)| &**ecosystem == name && download.flat == *flat)
            .map(|(_, download)| download.clone())
    }

    pub(super) fn download_of(&self, name: &str, key: &str) -> Option<Arc<Download>> {
        self.downloads()
            .get(&(Arc::from(name), key.to_owned()))
            .cloned()
    }
}
