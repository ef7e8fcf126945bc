//! Metadata lookups: a fresh copy from memory or the index, else one revalidation or fetch
//! upstream per key (however many clients ask), checked by the adapter before it is stored; a
//! stale copy when upstream cannot answer.

use std::collections::HashMap;
use std::sync::Arc;
use std::time::Instant;

use bytes::Bytes;
use http::StatusCode;
use url::Url;

use super::{
    HOT_ARTIFACTS, Mirror, Registered, blocking, http_date, now_ms, read_limited, ref_records,
};
use crate::cid::{BlockCid, raw_block_cid};
use crate::ecosystem::{Ecosystem, MetadataDoc, MetadataRoute};
use crate::engine::render::{RenderKey, RenderedDoc};
use crate::engine::rendering::{RenderAhead, RenderRequest, render_body};
use crate::error::Error;
use crate::health::Outcome;
use crate::index::MetadataRecord;
use crate::metrics::{EcosystemLabels, UpstreamLabels};
use crate::upstream::{Upstream, redact};

/// When a copy already in the index makes an upstream fetch unnecessary.
#[derive(Clone, Copy, Debug)]
pub(super) enum Enough {
    /// It is within its TTL.
    Fresh,
    /// It was fetched at or after this time (ms since the epoch).
    FetchedSince(i64),
}

/// A document as fetched (from upstream or a peer), before it is checked and stored.
pub(super) struct Fetched {
    pub(super) url: Url,
    pub(super) body: Bytes,
    pub(super) fetched_at: i64,
    pub(super) etag: Option<String>,
    pub(super) last_modified: Option<String>,
}

/// A context document, owned.
pub(super) struct ContextDoc {
    pub(super) key: String,
    pub(super) url: Url,
    pub(super) body: Bytes,
}

/// Why a stale copy is served instead of a fresh one: what kept Cairn from revalidating it,
/// said for a client reading the `Warning` header (not the error a miss would get).
pub(crate) fn stale_reason(error: &Error) -> String {
    match error {
        Error::Shared(inner) => stale_reason(inner),
        Error::Offline { .. } => "upstream not contacted: this node runs --offline".into(),
        Error::NoUpstream { ecosystem, .. } => {
            format!("upstream not contacted: no {ecosystem} upstream is configured")
        }
        Error::UpstreamStatus { status, .. } => format!("upstream answered {status}"),
        Error::UpstreamFailed { reason, .. } => format!("upstream unreachable: {reason}"),
        Error::UpstreamRequest { source, .. } => {
            format!(
                "upstream unreachable: {}",
                crate::upstream::describe(source)
            )
        }
        Error::BadMetadata { reason, .. } => {
            format!("upstream sent a document Cairn cannot use: {reason}")
        }
        other => format!("revalidation failed: {other}"),
    }
}

/// A metadata lookup's result.
#[derive(Clone, Debug)]
pub struct MetadataHit {
    pub record: MetadataRecord,
    /// Set when the copy is past its TTL and could not be revalidated: why
    /// (`stale_reason`).
    pub stale_because: Option<String>,
}

impl Mirror {
    pub(super) fn is_fresh(&self, record: &MetadataRecord, now: i64) -> bool {
        let ttl = if record.cid.is_some() {
            self.inner.config.metadata_ttl
        } else {
            self.inner.config.negative_ttl
        };
        now.saturating_sub(record.fetched_at) < ttl.as_millis() as i64
    }

    /// Look up a metadata document: cache, then upstream. Cancel-safe.
    pub(crate) async fn metadata(
        &self,
        registered: &Registered,
        route: &MetadataRoute,
    ) -> Result<MetadataHit, Error> {
        self.metadata_for(registered, route, None).await
    }

    /// [`Mirror::metadata`] for a client that will have the document rendered as `ahead` says
    /// (see [`RenderAhead`]).
    pub(crate) async fn metadata_for(
        &self,
        registered: &Registered,
        route: &MetadataRoute,
        ahead: Option<RenderAhead>,
    ) -> Result<MetadataHit, Error> {
        let name = registered.ecosystem.name();
        let hot = self
            .hot_metadata()
            .get(name)
            .and_then(|by_key| by_key.get(&route.key))
            .cloned();
        let cached = match hot {
            Some(record) => Some(record),
            None => {
                let (index, key) = (self.inner.index.clone(), route.key.clone());
                let owned_name = registered.name.clone();
                let purges = self.purges();
                let record = blocking(move || Ok(index.get_metadata(&owned_name, &key)?)).await?;
                if let Some(record) = &record {
                    self.remember_metadata_unless_purged(name, &route.key, record, purges);
                }
                record
            }
        };
        if let Some(record) = &cached
            && self.is_fresh(record, now_ms())
        {
            self.inner.metrics.cache(name, "metadata", "hit");
            return Ok(MetadataHit {
                record: record.clone(),
                stale_because: None,
            });
        }
        let refreshed = if self.inner.config.offline {
            Err(Arc::new(Error::Offline {
                what: format!("{name} metadata {}", route.key),
            }))
        } else {
            self.refresh(registered, route, cached.clone(), Enough::Fresh, ahead)
                .await
        };
        let (refreshed, cached) = match refreshed {
            Err(e) => match self
                .shared_metadata_from_peers(registered, route, &cached)
                .await
            {
                Some(record) => (Err(e), Some(record)),
                None => (Err(e), cached),
            },
            ok => (ok, cached),
        };
        match (refreshed, cached) {
            (Ok(record), _) => Ok(MetadataHit {
                record,
                stale_because: None,
            }),
            (Err(_), Some(peer)) if peer.cid.is_some() && self.is_fresh(&peer, now_ms()) => {
                Ok(MetadataHit {
                    record: peer,
                    stale_because: None,
                })
            }
            (Err(e), Some(stale)) if stale.cid.is_some() => {
                self.inner.metrics.cache(name, "metadata", "stale");
                if let Ok(upstream) = self.upstream_for(registered, &route.key) {
                    self.inner
                        .metrics
                        .health
                        .stale_served(name, &upstream.shown());
                }
                tracing::warn!(ecosystem = name, key = %route.key, error = %e, "serving stale metadata");
                Ok(MetadataHit {
                    record: stale,
                    stale_because: Some(stale_reason(&e)),
                })
            }
            (Err(e), _) => match self.refused_peer_copies(registered, route, &e).await {
                Some(refused) => Err(refused),
                None => {
                    // Offline, or no upstream: what the node was told to do, not a failure.
                    if matches!(*e, Error::Offline { .. } | Error::NoUpstream { .. }) {
                        tracing::info!(ecosystem = name, key = %route.key, "metadata not available: {e}");
                    } else {
                        tracing::warn!(ecosystem = name, key = %route.key, "metadata not available: {e}");
                    }
                    Err(Error::Shared(e))
                }
            },
        }
    }

    /// When peers hold a document this node could not get elsewhere but its policy refuses
    /// peers' metadata: the error that says so and how to change it (logged too), instead of
    /// a bare miss. `None` when peers' copies are taken, or no peer holds one.
    pub(super) async fn refused_peer_copies(
        &self,
        registered: &Registered,
        route: &MetadataRoute,
        why_not_upstream: &Error,
    ) -> Option<Error> {
        let peers = self.peers_for(self.is_private(registered, &route.key))?;
        let why = peers.metadata_refused()?;
        let name = registered.ecosystem.name();
        let holders = peers
            .metadata_holders(name.to_owned(), route.key.clone())
            .await;
        if holders == 0 {
            return None;
        }
        let error = Error::PeerMetadataRefused {
            what: format!("{name} metadata {}", route.key),
            holders,
            why,
            why_not_upstream: why_not_upstream.to_string(),
        };
        tracing::warn!(ecosystem = %name, key = %route.key, "{error}");
        Some(error)
    }

    /// Fetch a document from upstream (once for all concurrent callers) and index it, unless
    /// the indexed copy, read again inside the flight, already satisfies `enough` (another
    /// caller fetched it since this one looked).
    pub(super) async fn refresh(
        &self,
        registered: &Registered,
        route: &MetadataRoute,
        cached: Option<MetadataRecord>,
        enough: Enough,
        ahead: Option<RenderAhead>,
    ) -> Result<MetadataRecord, Arc<Error>> {
        let name = registered.name.clone();
        let this = self.clone();
        let ecosystem = registered.ecosystem.clone();
        let upstream = self
            .upstream_for(registered, &route.key)
            .map_err(Arc::new)?
            .clone();
        let route = route.clone();
        self.inner
            .metadata_flights
            .run((name.clone(), route.key.clone()), move || async move {
                let (index, key) = (this.inner.index.clone(), route.key.clone());
                let latest = blocking({
                    let name = name.clone();
                    move || Ok(index.get_metadata(&name, &key)?)
                })
                .await
                .map_err(Arc::new)?;
                if let Some(latest) = latest {
                    let satisfied = match enough {
                        Enough::Fresh => this.is_fresh(&latest, now_ms()),
                        Enough::FetchedSince(at) => latest.fetched_at >= at,
                    };
                    if satisfied {
                        return Ok(latest);
                    }
                }
                let record = this
                    .fetch_metadata(ecosystem, &upstream, &route, cached, ahead)
                    .await
                    .map_err(Arc::new)?;
                this.remember_metadata(&name, &route.key, &record);
                Ok(record)
            })
            .await
    }

    pub(super) fn hot_metadata(
        &self,
    ) -> std::sync::MutexGuard<'_, HashMap<Arc<str>, HashMap<String, MetadataRecord>>> {
        self.inner
            .hot_metadata
            .lock()
            .unwrap_or_else(|p| p.into_inner())
    }

    pub(super) fn remember_metadata(&self, name: &str, key: &str, record: &MetadataRecord) {
        Self::remember_in(&mut self.hot_metadata(), name, key, record);
    }

    /// Remember a row read from the index when no purge ran since `purges` was read (a row read
    /// before a purge may name a document it dropped). The check and the write hold the lock a
    /// purge drops hot rows under, so no purge falls between them.
    pub(super) fn remember_metadata_unless_purged(
        &self,
        name: &str,
        key: &str,
        record: &MetadataRecord,
        purges: u64,
    ) {
        let mut hot = self.hot_metadata();
        if self.purges() == purges {
            Self::remember_in(&mut hot, name, key, record);
        }
    }

    fn remember_in(
        hot: &mut HashMap<Arc<str>, HashMap<String, MetadataRecord>>,
        name: &str,
        key: &str,
        record: &MetadataRecord,
    ) {
        let by_key = hot.entry(Arc::from(name)).or_default();
        if by_key.len() >= HOT_ARTIFACTS && !by_key.contains_key(key) {
            by_key.clear();
        }
        by_key.insert(key.to_owned(), record.clone());
    }

    pub(super) async fn fetch_metadata(
        &self,
        ecosystem: Arc<dyn Ecosystem>,
        upstream: &Upstream,
        route: &MetadataRoute,
        cached: Option<MetadataRecord>,
        ahead: Option<RenderAhead>,
    ) -> Result<MetadataRecord, Error> {
        let name: Arc<str> = Arc::from(ecosystem.name());
        let url = upstream.join(&route.upstream_path)?;
        let (etag, last_modified) = match &cached {
            Some(c) if c.cid.is_some() => (c.etag.clone(), c.last_modified.clone()),
            _ => (None, None),
        };
        let limit = self.document_limit(ecosystem.as_ref());
        let deadline = upstream.limits().deadline;
        // The whole exchange, from waiting for a slot to the last byte, has one deadline: a
        // trickling upstream cannot hold its slot (and the callers waiting on this flight) for
        // longer.
        let exchange = async {
            let _permit = upstream.permit().await;
            let started = Instant::now();
            let response = upstream
                .get(
                    &url,
                    etag.as_deref(),
                    last_modified.as_deref(),
                    route.upstream_accept,
                )
                .await;
            self.observe_upstream(&name, upstream, started, &response);
            let response = response?;
            let status = response.status();
            if !status.is_success() {
                return Ok((status, None));
            }
            let header = |h: http::HeaderName| {
                response
                    .headers()
                    .get(h)
                    .and_then(|v| v.to_str().ok())
                    .map(str::to_owned)
            };
            let validators = (
                header(http::header::ETAG),
                header(http::header::LAST_MODIFIED),
            );
            let body = read_limited(response, &url, &name, limit).await?;
            Ok::<_, Error>((status, Some((validators, body))))
        };
        let (status, got) = match tokio::time::timeout(deadline, exchange).await {
            Ok(result) => result?,
            Err(_) => {
                return Err(Error::UpstreamFailed {
                    url: redact(&url),
                    reason: format!(
                        "no complete answer within the {} upstream deadline (--upstream-deadline)",
                        crate::limits::duration(deadline)
                    ),
                });
            }
        };
        let now = now_ms();
        let store = self.inner.store.clone();
        let key = route.key.clone();
        if status == StatusCode::NOT_MODIFIED
            && let Some(mut record) = cached.clone()
        {
            self.inner.metrics.cache(&name, "metadata", "revalidated");
            blocking({
                let name = name.clone();
                move || Ok(store.touch_document(&name, &key, now)?)
            })
            .await?;
            record.fetched_at = now;
            return Ok(record);
        }
        if matches!(status.as_u16(), 404 | 410 | 451) {
            let record = MetadataRecord {
                private: upstream.private(),
                cid: None,
                status: status.as_u16(),
                upstream_url: url.to_string(),
                fetched_at: now,
                etag: None,
                last_modified: None,
                size: 0,
            };
            return blocking({
                let name = name.clone();
                move || Ok(store.put_not_found(&name, &key, record)?)
            })
            .await;
        }
        let Some(((etag, last_modified), body)) = got else {
            return Err(Error::UpstreamStatus {
                url: redact(&url),
                status,
            });
        };
        self.inner.metrics.cache(&name, "metadata", "miss");
        // Without an upstream validator, a new body's fetch time stands in for one, so clients
        // that revalidate only by date (apt) get 304s until the document changes.
        let last_modified =
            last_modified.or_else(|| http_date(now).to_str().ok().map(str::to_owned));
        let fetched = Fetched {
            url,
            body,
            fetched_at: now,
            etag,
            last_modified,
        };
        self.ingest_metadata(ecosystem, Some(upstream), route, cached, fetched, ahead)
            .await
    }

    /// Check a fetched document with the adapter, store it and index it with the artifacts it
    /// lists (unless it is the cached copy again, which is only touched).
    pub(super) async fn ingest_metadata(
        &self,
        ecosystem: Arc<dyn Ecosystem>,
        upstream: Option<&Upstream>,
        route: &MetadataRoute,
        cached: Option<MetadataRecord>,
        fetched: Fetched,
        ahead: Option<RenderAhead>,
    ) -> Result<MetadataRecord, Error> {
        let name: Arc<str> = Arc::from(ecosystem.name());
        // A policed ecosystem's rendering needs the document's references indexed first.
        let ahead = ahead
            .filter(|_| !self.policed(&self.policy(), &name))
            .map(|ahead| RenderAhead {
                for_token_clients: self.auth_required(),
                ..ahead
            });
        let (this, variant) = (self.clone(), route.variant);
        let context = match &route.context {
            Some(context) => Some(self.load_doc(&name, context).await?),
            None => None,
        };
        let key = route.key.clone();
        let store = self.inner.store.clone();
        let upstream = upstream.cloned();
        let private = upstream.as_ref().is_some_and(Upstream::private);
        blocking(move || {
            let Fetched {
                url,
                body,
                fetched_at,
                etag,
                last_modified,
            } = fetched;
            let cid = BlockCid(raw_block_cid(&body));
            if let Some(c) = &cached
                && c.cid == Some(cid)
            {
                store.touch_document(&name, &key, fetched_at)?;
                return Ok(MetadataRecord {
                    fetched_at,
                    ..c.clone()
                });
            }
            let context_doc = context.as_ref().map(|c| MetadataDoc {
                key: &c.key,
                url: &c.url,
                body: &c.body,
                context: None,
            });
            let doc = MetadataDoc {
                key: &key,
                url: &url,
                body: &body,
                context: context_doc.as_ref(),
            };
            let facts = ecosystem.read(&doc).map_err(|e| Error::BadMetadata {
                url: redact(&url),
                reason: e.0,
            })?;
            if let Some(upstream) = &upstream {
                upstream.add_prefixes(facts.download_prefixes);
            }
            let refs = ref_records(facts.artifacts);
            let record = MetadataRecord {
                private,
                cid: Some(cid),
                status: 200,
                upstream_url: url.to_string(),
                fetched_at,
                etag,
                last_modified,
                size: body.len() as u64,
            };
            let (record, rendered) = std::thread::scope(|scope| {
                let rendering = ahead.as_ref().map(|ahead| {
                    let doc = (ecosystem.as_ref(), key.as_str(), &url, body.clone());
                    scope.spawn(move || render_ahead(doc, cid, variant, ahead))
                });
                let record = store.put_document(&name, &key, &body, record, &refs);
                (record, rendering.and_then(|r| r.join().ok().flatten()))
            });
            let record = record?;
            if let Some((render_key, doc)) = rendered {
                this.inner.metrics.rendered(&name, "ahead");
                this.inner.rendered.insert(render_key, doc);
            }
            tracing::info!(ecosystem = %name, key = %key, bytes = body.len(), artifacts = refs.len(), "metadata fetched");
            Ok(record)
        })
        .await
    }

    /// A document (cached, or fetched like any metadata), with the download prefixes it declares
    /// registered on the upstream. Used for context documents, and to register prefixes again
    /// after a restart.
    pub(super) async fn load_doc(
        &self,
        name: &str,
        route: &MetadataRoute,
    ) -> Result<ContextDoc, Error> {
        let registered = self
            .ecosystem(name)
            .ok_or_else(|| Error::NotRegistered(name.to_string()))?;
        // Boxed: this is reached from `metadata` itself (a context has no context of its own).
        let hit = Box::pin(self.metadata(registered, route)).await?;
        let Some(cid) = hit.record.cid else {
            return Err(Error::UpstreamStatus {
                url: hit.record.upstream_url.clone(),
                status: StatusCode::from_u16(hit.record.status).unwrap_or(StatusCode::NOT_FOUND),
            });
        };
        let store = self.inner.store.clone();
        let body = blocking(move || Ok(store.read_metadata(&cid)?)).await?;
        let url = Url::parse(&hit.record.upstream_url).map_err(|source| Error::StoredUrl {
            url: hit.record.upstream_url.clone(),
            source,
        })?;
        let context = ContextDoc {
            key: route.key.clone(),
            url,
            body,
        };
        if let Ok(upstream) = self.upstream_for(registered, &route.key) {
            let doc = MetadataDoc {
                key: &context.key,
                url: &context.url,
                body: &context.body,
                context: None,
            };
            // A stored document was read when it was fetched: one that no longer reads (an
            // adapter grown stricter) declares nothing, as before it was stored.
            if let Ok(facts) = registered.ecosystem.read(&doc) {
                upstream.add_prefixes(facts.download_prefixes);
            }
        }
        Ok(context)
    }

    /// The largest document `ecosystem` accepts: the operator's limit, else the adapter's.
    pub(super) fn document_limit(&self, ecosystem: &dyn Ecosystem) -> u64 {
        self.inner
            .config
            .max_document_bytes
            .unwrap_or_else(|| ecosystem.max_document_bytes())
    }

    /// Count a request to `upstream` of `name` started at `started` in the metrics and the
    /// upstream's health.
    pub(super) fn observe_upstream(
        &self,
        name: &str,
        upstream: &Upstream,
        started: Instant,
        response: &Result<reqwest::Response, Error>,
    ) {
        let took = started.elapsed();
        let status = response.as_ref().ok().map(reqwest::Response::status);
        let metrics = &self.inner.metrics;
        metrics
            .upstream_latency
            .get_or_create(&EcosystemLabels {
                ecosystem: name.to_owned(),
            })
            .observe(took.as_secs_f64());
        metrics
            .upstream_requests
            .get_or_create(&UpstreamLabels {
                ecosystem: name.to_owned(),
                status: status.map_or(0, |s| s.as_u16()),
            })
            .inc();
        let error;
        let outcome = match (status, response) {
            (Some(status), _) => Outcome::Answered(status),
            (None, Err(e)) => {
                error = e.to_string();
                Outcome::Failed(&error)
            }
            (None, Ok(_)) => return,
        };
        metrics
            .health
            .observe(name, &upstream.shown(), took, outcome);
    }
}

/// The rendering a client asked for `ahead` of the document `key` just fetched from `url`
/// (`body`, whose block is `cid`), keyed as [`Mirror::render`] looks it up; `None` when it
/// does not render (the request renders it again, and reports why).
fn render_ahead(
    (ecosystem, key, url, body): (&dyn Ecosystem, &str, &Url, Bytes),
    cid: BlockCid,
    variant: &'static str,
    ahead: &RenderAhead,
) -> Option<(RenderKey, Arc<RenderedDoc>)> {
    let for_token_clients = ahead.for_token_clients;
    let render_key = RenderKey {
        cid,
        variant,
        part: None,
        base: ahead.base.to_string(),
        for_token_clients,
        policy: 0,
    };
    let request = RenderRequest {
        variant,
        part: None,
        base: &ahead.base,
        for_token_clients,
    };
    let etag = render_key.etag();
    let doc = render_body(
        ecosystem,
        key,
        url.as_str(),
        body,
        &Default::default(),
        &request,
        etag,
    )
    .ok()?;
    if ahead.gzip && doc.body.len() >= crate::http::GZIP_MIN {
        doc.gzipped();
    }
    Some((render_key, Arc::new(doc)))
}
