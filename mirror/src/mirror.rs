//! The mirror: the store, the index and the upstreams behind the registered ecosystems, and the
//! two lookups every request comes down to, metadata and artifacts.
//!
//! Metadata: a fresh cached document is served as it is; a stale one is revalidated upstream
//! (conditional GET, one request per key however many clients ask); when upstream fails or the
//! node is offline a stale copy is served (marked by `Age`), and a miss is a 504 that says why.
//! Each fetched version is checked by the adapter ([`Ecosystem::artifacts`]) before it is stored,
//! and the digests it lists are indexed with it.
//!
//! Artifacts: a cached one is a flat file; a miss starts one shared [`Download`] whose digest
//! is known before the first byte (from the indexed metadata), and which commits only verified
//! bytes.

use std::collections::HashMap;
use std::path::PathBuf;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant, SystemTime};

use bytes::Bytes;
use http::StatusCode;
use url::Url;

use crate::cid::{BlockCid, Digest, FlatCid, RootCid, raw_block_cid};
use crate::download::{Download, Progress};
use crate::ecosystem::{ArtifactRoute, Ecosystem, Listing, MetadataDoc, MetadataRoute};
use crate::error::Error;
use crate::flight::SingleFlight;
use crate::index::{ArtifactRecord, Index, MetadataRecord, RefRecord};
use crate::metrics::{EcosystemLabels, Metrics, UpstreamLabels};
use crate::peers::{LeafProgress, PeerDocument, PeerSource, PendingLeaves};
use crate::render::{RenderCache, RenderKey, RenderedDoc};
use crate::store::Store;
use crate::upstream::{Upstream, UpstreamLimits, redact, strip_userinfo, without_credentials};

/// Settings of the mirror core.
#[derive(Clone, Debug)]
pub struct MirrorConfig {
    pub data_dir: PathBuf,
    /// Never contact an upstream.
    pub offline: bool,
    /// How long a fetched metadata document is served without asking upstream again.
    pub metadata_ttl: Duration,
    /// How long an upstream "not found" is remembered.
    pub negative_ttl: Duration,
    /// The URL clients reach this node at; by default taken from each request's `Host`.
    pub public_url: Option<Url>,
    pub limits: UpstreamLimits,
    /// Memory for rendered metadata documents.
    pub render_cache_bytes: usize,
    /// Memory for the bytes of hot small artifacts (each at most 1 MiB).
    pub content_cache_bytes: usize,
    /// Largest metadata document accepted from upstream or a peer, for every ecosystem;
    /// `None`: each ecosystem's own ([`Ecosystem::max_document_bytes`]).
    pub max_document_bytes: Option<u64>,
    /// Largest artifact downloaded (one whose listing declares its size is also held to that
    /// size).
    pub max_artifact_bytes: u64,
}

impl MirrorConfig {
    pub fn new(data_dir: PathBuf) -> Self {
        MirrorConfig {
            data_dir,
            offline: false,
            metadata_ttl: Duration::from_secs(300),
            negative_ttl: Duration::from_secs(60),
            public_url: None,
            limits: UpstreamLimits::default(),
            render_cache_bytes: 24 << 20,
            content_cache_bytes: 16 << 20,
            max_document_bytes: None,
            max_artifact_bytes: 8 << 30,
        }
    }
}

/// An ecosystem to serve, with its upstream (or why it has none).
pub struct EcosystemSetup {
    pub ecosystem: Arc<dyn Ecosystem>,
    pub upstream: Result<Url, String>,
}

pub(crate) struct Registered {
    pub ecosystem: Arc<dyn Ecosystem>,
    pub upstream: Result<Upstream, String>,
}

/// When a copy already in the index makes an upstream fetch unnecessary.
#[derive(Clone, Copy, Debug)]
enum Enough {
    /// It is within its TTL.
    Fresh,
    /// It was fetched at or after this time (ms since the epoch).
    FetchedSince(i64),
}

/// A document as fetched (from upstream or a peer), before it is checked and stored.
struct Fetched {
    url: Url,
    body: Bytes,
    fetched_at: i64,
    etag: Option<String>,
    last_modified: Option<String>,
}

/// A context document, owned.
struct ContextDoc {
    key: String,
    url: Url,
    body: Bytes,
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

/// What a client gets for an artifact.
pub enum ArtifactBody {
    Cached(Arc<CachedArtifact>),
    Downloading(Arc<Download>),
    /// Streamed from upstream to this one client and checked on the way, not stored: the store
    /// has no room for it.
    Unkept(crate::unkept::Unkept),
}

/// A cached artifact with what its responses need worked out once: artifacts are immutable, so
/// hot ones are kept in memory and a hit touches neither SQLite nor a CID encoder.
#[derive(Debug)]
pub struct CachedArtifact {
    pub ecosystem: &'static str,
    pub key: String,
    pub record: ArtifactRecord,
    pub path: PathBuf,
    /// `"<flat CID>"`: a strong validator for every representation of the file.
    pub etag: http::HeaderValue,
    pub root: http::HeaderValue,
    pub last_modified: http::HeaderValue,
}

impl CachedArtifact {
    fn new(ecosystem: &'static str, key: String, record: ArtifactRecord, path: PathBuf) -> Self {
        let value = |s: String| {
            http::HeaderValue::from_str(&s).unwrap_or(http::HeaderValue::from_static("invalid"))
        };
        CachedArtifact {
            etag: value(format!("\"{}\"", record.flat)),
            root: value(record.root.to_string()),
            last_modified: http_date(record.fetched_at),
            ecosystem,
            key,
            record,
            path,
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

/// Hot artifact rows (about 400 bytes each) and metadata rows kept in memory at most, per
/// ecosystem.
const HOT_ARTIFACTS: usize = 50_000;

/// Cached upstream "not found"s kept at most (the newest): each random name asked for leaves
/// one until the negative TTL sweeps it.
const MAX_NEGATIVE: u64 = 100_000;

/// How long an artifact whose bytes from peers failed its digest is fetched from upstream only.
const PEER_FAILURE_MEMORY: Duration = Duration::from_secs(600);

/// Space the store keeps free beyond a download's own size, for the index's WAL and the next
/// metadata documents. A download that would eat into it is streamed to its client unkept.
const STORE_RESERVE: u64 = 1 << 20;

/// How long after the disk filled up every miss is streamed unkept, whatever `statvfs` says
/// (a download that fills the disk frees its temp file when it fails).
const FULL_BACKOFF: Duration = Duration::from_secs(30);

/// Whether a miss is downloaded into the store, or streamed to its client without keeping it.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum Keep {
    /// Into the store when it has room for it; unkept otherwise.
    IfRoom,
    /// Unkept: the store just ran out of room for this one.
    Never,
}

/// The mirror. Cheap to clone.
#[derive(Clone)]
pub struct Mirror {
    pub(crate) inner: Arc<Inner>,
}

pub(crate) struct Inner {
    pub config: MirrorConfig,
    pub store: Store,
    pub index: Arc<Index>,
    pub ecosystems: HashMap<&'static str, Registered>,
    pub metrics: Metrics,
    downloads: Mutex<HashMap<(&'static str, String), Arc<Download>>>,
    metadata_flights: SingleFlight<(&'static str, String), Result<MetadataRecord, Arc<Error>>>,
    /// Asks of the peers for a document upstream could not give, once for all callers.
    peer_metadata_flights: SingleFlight<(&'static str, String), Option<MetadataRecord>>,
    render_flights: SingleFlight<RenderKey, Result<Arc<RenderedDoc>, Arc<Error>>>,
    rendered: RenderCache,
    pub content: crate::lru::Lru<FlatCid, Bytes>,
    hot: Mutex<HashMap<&'static str, HashMap<String, Arc<CachedArtifact>>>>,
    /// Metadata records as last read or written by this process: a hit skips SQLite.
    hot_metadata: Mutex<HashMap<&'static str, HashMap<String, MetadataRecord>>>,
    touched: Mutex<Vec<(Arc<CachedArtifact>, i64)>>,
    /// Listing artifacts being downloaded or read, per ecosystem, and their completions.
    listings: (Mutex<HashMap<&'static str, usize>>, tokio::sync::Notify),
    /// The swarm, once the node has started (`--no-p2p`: never).
    peers: std::sync::OnceLock<Arc<dyn PeerSource>>,
    /// Artifacts whose bytes from peers failed the registry digest, and when.
    peer_failures: Mutex<HashMap<FlatCid, Instant>>,
    /// When a download last failed for want of disk space.
    store_filled_at: Mutex<Option<Instant>>,
}

/// Milliseconds since the Unix epoch.
pub fn now_ms() -> i64 {
    SystemTime::now()
        .duration_since(SystemTime::UNIX_EPOCH)
        .map(|d| d.as_millis() as i64)
        .unwrap_or(0)
}

/// Run blocking work (SQLite, hashing, fsync) off the async workers.
pub(crate) async fn blocking<T: Send + 'static>(
    f: impl FnOnce() -> Result<T, Error> + Send + 'static,
) -> Result<T, Error> {
    tokio::task::spawn_blocking(f)
        .await
        .map_err(|e| Error::Internal(format!("blocking task failed: {e}")))?
}

impl Mirror {
    /// Open the store and index under `config.data_dir` and register `ecosystems`. Blocking.
    pub fn open(config: MirrorConfig, ecosystems: Vec<EcosystemSetup>) -> Result<Self, Error> {
        let store = Store::open(&config.data_dir)?;
        let index = Arc::new(Index::open(&config.data_dir.join("index.sqlite3"))?);
        let stripped = index.strip_credentials()?;
        if stripped > 0 {
            tracing::info!(
                rows = stripped,
                "removed credentials from stored upstream URLs"
            );
        }
        let mut registered = HashMap::new();
        for setup in ecosystems {
            let upstream = match setup.upstream {
                Ok(url) => Ok(Upstream::new(url, config.limits.clone())?),
                Err(hint) => Err(hint),
            };
            registered.insert(
                setup.ecosystem.name(),
                Registered {
                    ecosystem: setup.ecosystem,
                    upstream,
                },
            );
        }
        Ok(Mirror {
            inner: Arc::new(Inner {
                rendered: RenderCache::new(config.render_cache_bytes),
                content: crate::lru::Lru::new(config.content_cache_bytes),
                config,
                store,
                index,
                ecosystems: registered,
                metrics: Metrics::new(),
                downloads: Mutex::new(HashMap::new()),
                metadata_flights: SingleFlight::default(),
                peer_metadata_flights: SingleFlight::default(),
                render_flights: SingleFlight::default(),
                hot: Mutex::new(HashMap::new()),
                hot_metadata: Mutex::new(HashMap::new()),
                touched: Mutex::new(Vec::new()),
                listings: (Mutex::new(HashMap::new()), tokio::sync::Notify::new()),
                peers: std::sync::OnceLock::new(),
                peer_failures: Mutex::new(HashMap::new()),
                store_filled_at: Mutex::new(None),
            }),
        })
    }

    pub fn config(&self) -> &MirrorConfig {
        &self.inner.config
    }

    /// Connect the swarm: from now on misses ask peers first, and what this node downloads or
    /// holds is announced to them. Set once; a second call is ignored.
    pub fn set_peers(&self, peers: Arc<dyn PeerSource>) {
        let _ = self.inner.peers.set(peers);
    }

    /// The swarm, when it is on.
    pub fn peer_source(&self) -> Option<&Arc<dyn PeerSource>> {
        self.inner.peers.get()
    }

    /// Every block this node holds, by CID (what Bitswap and the gateway serve).
    pub fn blocks(&self) -> crate::blocks::Blocks {
        crate::blocks::Blocks::new(self.inner.store.clone(), self.inner.index.clone())
    }

    /// The cached copy of metadata document `key` of `ecosystem`, as a peer asking for it gets
    /// it: the exact upstream bytes with their age and validators. `None` when this node has no
    /// document under that key (or only upstream's "not found"). Blocking: call it on a blocking
    /// thread.
    pub fn peer_document(
        &self,
        ecosystem: &str,
        key: &str,
    ) -> Result<Option<crate::peers::PeerDocument>, Error> {
        let Some(record) = self.inner.index.get_metadata(ecosystem, key)? else {
            return Ok(None);
        };
        let Some(cid) = record.cid else {
            return Ok(None);
        };
        let body = self.inner.store.read_metadata(&cid)?;
        Ok(Some(crate::peers::PeerDocument {
            body,
            upstream_url: strip_userinfo(&record.upstream_url).into_owned(),
            fetched_at: record.fetched_at,
            etag: record.etag,
            last_modified: record.last_modified,
            peer: Arc::from("self"),
        }))
    }

    /// Flat and root CIDs of every artifact held, to announce at start. Blocking.
    pub fn held_artifacts(&self) -> Result<Vec<(FlatCid, RootCid)>, Error> {
        Ok(self.inner.index.held_files()?)
    }

    pub fn metrics(&self) -> &Metrics {
        &self.inner.metrics
    }

    /// Bytes of hot small artifacts, by flat CID.
    pub(crate) fn content(&self) -> &crate::lru::Lru<FlatCid, Bytes> {
        &self.inner.content
    }

    pub fn index(&self) -> &Arc<Index> {
        &self.inner.index
    }

    /// The registered ecosystems and their upstreams (or why there is none).
    pub fn upstreams(&self) -> Vec<(&'static str, Result<String, String>)> {
        let mut out: Vec<_> = self
            .inner
            .ecosystems
            .iter()
            .map(|(name, r)| {
                (
                    *name,
                    r.upstream
                        .as_ref()
                        .map(Upstream::shown)
                        .map_err(Clone::clone),
                )
            })
            .collect();
        out.sort_by_key(|(name, _)| *name);
        out
    }

    pub(crate) fn ecosystem(&self, name: &str) -> Option<&Registered> {
        self.inner.ecosystems.get(name)
    }

    /// The ecosystem whose upstream base URL holds `path` on `host:port` (the scheme is not
    /// compared: an https upstream may be asked for by an http proxy client), and the path
    /// below that base.
    pub(crate) fn ecosystem_for_upstream(
        &self,
        host: &str,
        port: Option<u16>,
        path: &str,
    ) -> Option<(&Registered, String)> {
        self.inner.ecosystems.values().find_map(|registered| {
            let base = registered.upstream.as_ref().ok()?.base();
            let same_port =
                port.is_none_or(|p| Some(p) == base.port_or_known_default()) || port == base.port();
            if !base.host_str()?.eq_ignore_ascii_case(host) || !same_port {
                return None;
            }
            let below = path.strip_prefix(base.path())?;
            Some((registered, below.to_owned()))
        })
    }

    fn upstream<'a>(&self, registered: &'a Registered) -> Result<&'a Upstream, Error> {
        registered
            .upstream
            .as_ref()
            .map_err(|hint| Error::NoUpstream {
                ecosystem: registered.ecosystem.name(),
                hint: hint.clone(),
            })
    }

    // ---- metadata ----

    fn is_fresh(&self, record: &MetadataRecord, now: i64) -> bool {
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
                let record = blocking(move || Ok(index.get_metadata(name, &key)?)).await?;
                if let Some(record) = &record {
                    self.remember_metadata(name, &route.key, record);
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
            self.refresh(registered, route, cached.clone(), Enough::Fresh)
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
    async fn refused_peer_copies(
        &self,
        registered: &Registered,
        route: &MetadataRoute,
        why_not_upstream: &Error,
    ) -> Option<Error> {
        let peers = self.peer_source()?;
        let why = peers.metadata_refused()?;
        let name = registered.ecosystem.name();
        let holders = peers.metadata_holders(name, route.key.clone()).await;
        if holders == 0 {
            return None;
        }
        let error = Error::PeerMetadataRefused {
            what: format!("{name} metadata {}", route.key),
            holders,
            why,
            why_not_upstream: why_not_upstream.to_string(),
        };
        tracing::warn!(ecosystem = name, key = %route.key, "{error}");
        Some(error)
    }

    /// Fetch a document from upstream (once for all concurrent callers) and index it, unless
    /// the indexed copy, read again inside the flight, already satisfies `enough` (another
    /// caller fetched it since this one looked).
    async fn refresh(
        &self,
        registered: &Registered,
        route: &MetadataRoute,
        cached: Option<MetadataRecord>,
        enough: Enough,
    ) -> Result<MetadataRecord, Arc<Error>> {
        let name = registered.ecosystem.name();
        let this = self.clone();
        let ecosystem = registered.ecosystem.clone();
        let upstream = self.upstream(registered).map_err(Arc::new)?.clone();
        let route = route.clone();
        self.inner
            .metadata_flights
            .run((name, route.key.clone()), move || async move {
                let (index, key) = (this.inner.index.clone(), route.key.clone());
                let latest = blocking(move || Ok(index.get_metadata(name, &key)?))
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
                    .fetch_metadata(ecosystem, &upstream, &route, cached)
                    .await
                    .map_err(Arc::new)?;
                this.remember_metadata(name, &route.key, &record);
                Ok(record)
            })
            .await
    }

    fn hot_metadata(
        &self,
    ) -> std::sync::MutexGuard<'_, HashMap<&'static str, HashMap<String, MetadataRecord>>> {
        self.inner
            .hot_metadata
            .lock()
            .unwrap_or_else(|p| p.into_inner())
    }

    fn remember_metadata(&self, name: &'static str, key: &str, record: &MetadataRecord) {
        let mut hot = self.hot_metadata();
        let by_key = hot.entry(name).or_default();
        if by_key.len() >= HOT_ARTIFACTS && !by_key.contains_key(key) {
            by_key.clear();
        }
        by_key.insert(key.to_owned(), record.clone());
    }

    async fn fetch_metadata(
        &self,
        ecosystem: Arc<dyn Ecosystem>,
        upstream: &Upstream,
        route: &MetadataRoute,
        cached: Option<MetadataRecord>,
    ) -> Result<MetadataRecord, Error> {
        let name = ecosystem.name();
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
            self.observe_upstream(name, started, response.as_ref().ok().map(|r| r.status()));
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
            let body = read_limited(response, &url, name, limit).await?;
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
        let index = self.inner.index.clone();
        let key = route.key.clone();
        if status == StatusCode::NOT_MODIFIED
            && let Some(mut record) = cached.clone()
        {
            self.inner.metrics.cache(name, "metadata", "revalidated");
            blocking(move || Ok(index.touch_metadata(name, &key, now)?)).await?;
            record.fetched_at = now;
            return Ok(record);
        }
        if matches!(status.as_u16(), 404 | 410 | 451) {
            let record = MetadataRecord {
                cid: None,
                status: status.as_u16(),
                upstream_url: url.to_string(),
                fetched_at: now,
                etag: None,
                last_modified: None,
                size: 0,
            };
            let r = record.clone();
            blocking(move || Ok(index.put_metadata(name, &key, &r, &[])?)).await?;
            return Ok(record);
        }
        let Some(((etag, last_modified), body)) = got else {
            return Err(Error::UpstreamStatus {
                url: redact(&url),
                status,
            });
        };
        self.inner.metrics.cache(name, "metadata", "miss");
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
        self.ingest_metadata(ecosystem, Some(upstream), route, cached, fetched)
            .await
    }

    /// Check a fetched document with the adapter, store it and index it with the artifacts it
    /// lists (unless it is the cached copy again, which is only touched).
    async fn ingest_metadata(
        &self,
        ecosystem: Arc<dyn Ecosystem>,
        upstream: Option<&Upstream>,
        route: &MetadataRoute,
        cached: Option<MetadataRecord>,
        fetched: Fetched,
    ) -> Result<MetadataRecord, Error> {
        let name = ecosystem.name();
        let context = match &route.context {
            Some(context) => Some(self.load_doc(name, context).await?),
            None => None,
        };
        let (index, key) = (self.inner.index.clone(), route.key.clone());
        let store = self.inner.store.clone();
        let upstream = upstream.cloned();
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
                index.touch_metadata(name, &key, fetched_at)?;
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
            let refs = ecosystem.artifacts(&doc).map_err(|e| Error::BadMetadata {
                url: redact(&url),
                reason: e.0,
            })?;
            if let Some(upstream) = &upstream {
                upstream.add_prefixes(ecosystem.download_prefixes(&doc));
            }
            let refs = ref_records(refs);
            store.put_metadata(&body)?;
            let record = MetadataRecord {
                cid: Some(cid),
                status: 200,
                upstream_url: url.to_string(),
                fetched_at,
                etag,
                last_modified,
                size: body.len() as u64,
            };
            index.put_metadata(name, &key, &record, &refs)?;
            tracing::info!(ecosystem = name, key = %key, bytes = body.len(), artifacts = refs.len(), "metadata fetched");
            Ok(record)
        })
        .await
    }

    /// [`Mirror::metadata_from_peers`], once for all the callers that miss the same document at
    /// the same time.
    async fn shared_metadata_from_peers(
        &self,
        registered: &Registered,
        route: &MetadataRoute,
        cached: &Option<MetadataRecord>,
    ) -> Option<MetadataRecord> {
        self.peer_source()?;
        let key = (registered.ecosystem.name(), route.key.clone());
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
    async fn metadata_from_peers(
        &self,
        registered: &Registered,
        route: &MetadataRoute,
        cached: Option<&MetadataRecord>,
    ) -> Option<MetadataRecord> {
        let peers = self.peer_source()?;
        let name = registered.ecosystem.name();
        let cached_at = cached.filter(|c| c.cid.is_some()).map(|c| c.fetched_at);
        for mut doc in peers.metadata(name, route.key.clone()).await {
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
                        .get_or_create(&EcosystemLabels { ecosystem: name })
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
    async fn ingest_peer_document(
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
        let upstream = registered.upstream.as_ref().ok();
        self.ingest_metadata(
            registered.ecosystem.clone(),
            upstream,
            route,
            cached.cloned(),
            fetched,
        )
        .await
        .map_err(|e| e.to_string())
    }

    /// A document (cached, or fetched like any metadata), with the download prefixes it declares
    /// registered on the upstream. Used for context documents, and to register prefixes again
    /// after a restart.
    async fn load_doc(
        &self,
        name: &'static str,
        route: &MetadataRoute,
    ) -> Result<ContextDoc, Error> {
        let registered = self
            .ecosystem(name)
            .ok_or_else(|| Error::Internal(format!("ecosystem {name} is not registered")))?;
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
        let url = Url::parse(&hit.record.upstream_url)
            .map_err(|e| Error::Internal(format!("stored URL {}: {e}", hit.record.upstream_url)))?;
        let context = ContextDoc {
            key: route.key.clone(),
            url,
            body,
        };
        if let Ok(upstream) = &registered.upstream {
            let doc = MetadataDoc {
                key: &context.key,
                url: &context.url,
                body: &context.body,
                context: None,
            };
            upstream.add_prefixes(registered.ecosystem.download_prefixes(&doc));
        }
        Ok(context)
    }

    /// The largest document `ecosystem` accepts: the operator's limit, else the adapter's.
    fn document_limit(&self, ecosystem: &dyn Ecosystem) -> u64 {
        self.inner
            .config
            .max_document_bytes
            .unwrap_or_else(|| ecosystem.max_document_bytes())
    }

    fn observe_upstream(&self, name: &'static str, started: Instant, status: Option<StatusCode>) {
        let metrics = &self.inner.metrics;
        metrics
            .upstream_latency
            .get_or_create(&EcosystemLabels { ecosystem: name })
            .observe(started.elapsed().as_secs_f64());
        metrics
            .upstream_requests
            .get_or_create(&UpstreamLabels {
                ecosystem: name,
                status: status.map_or(0, |s| s.as_u16()),
            })
            .inc();
    }

    /// The document behind `hit`, or its `part` when one is named, rendered as `variant` for
    /// clients at `base`. A part the document does not have is [`Error::NotFound`]. Cancel-safe.
    pub(crate) async fn render(
        &self,
        registered: &Registered,
        route: &MetadataRoute,
        part: Option<&str>,
        hit: &MetadataHit,
        base: &Url,
    ) -> Result<Arc<RenderedDoc>, Error> {
        let Some(cid) = hit.record.cid else {
            return Err(Error::Internal(format!(
                "{} has no body to render",
                route.key
            )));
        };
        let key = RenderKey {
            cid,
            variant: route.variant,
            part: part.map(str::to_owned),
            base: base.to_string(),
        };
        if let Some(doc) = self.inner.rendered.get(&key) {
            return Ok(doc);
        }
        let this = self.clone();
        let ecosystem = registered.ecosystem.clone();
        let (doc_key, upstream_url, base) = (
            route.key.clone(),
            hit.record.upstream_url.clone(),
            base.clone(),
        );
        self.inner
            .render_flights
            .run(key.clone(), move || async move {
                let store = this.inner.store.clone();
                let etag = key.etag();
                let variant = key.variant;
                let part = key.part.clone();
                let rendered = blocking(move || {
                    let body = store.read_metadata(&cid)?;
                    let url = Url::parse(&upstream_url)
                        .map_err(|e| Error::Internal(format!("stored URL {upstream_url}: {e}")))?;
                    let doc = MetadataDoc {
                        key: &doc_key,
                        url: &url,
                        body: &body,
                        context: None,
                    };
                    let bad = |e: crate::ecosystem::AdapterError| Error::BadMetadata {
                        url: redact(&url),
                        reason: e.0,
                    };
                    let rendered = match &part {
                        None => ecosystem.render(&doc, variant, &base).map_err(bad)?,
                        Some(part) => ecosystem
                            .render_part(&doc, variant, part, &base)
                            .map_err(bad)?
                            .ok_or_else(|| {
                                Error::NotFound(format!(
                                    "{} {doc_key} has no {part:?}",
                                    ecosystem.name()
                                ))
                            })?,
                    };
                    Ok(Arc::new(RenderedDoc::new(
                        rendered.body,
                        rendered.content_type,
                        etag,
                    )))
                })
                .await
                .map_err(Arc::new)?;
                this.inner.rendered.insert(key, rendered.clone());
                Ok(rendered)
            })
            .await
            .map_err(Error::Shared)
    }

    // ---- artifacts ----

    /// Look up an artifact: cache, a download under way, or a new download from upstream.
    /// Cancel-safe: a started download goes on without the caller.
    pub(crate) async fn artifact(
        &self,
        registered: &Registered,
        route: &ArtifactRoute,
        keep: Keep,
    ) -> Result<ArtifactBody, Error> {
        let name = registered.ecosystem.name();
        if let Listing::Current(document) = &route.listed_by {
            return self.current_artifact(registered, route, document).await;
        }
        let asked_at = now_ms();
        // The download map before the index: a download commits to the index before it leaves
        // the map, so a request that misses the one finds the other. (Not when that download
        // just failed for want of room.)
        if keep == Keep::IfRoom
            && let Some(download) = self.download_of(name, &route.key)
        {
            self.inner.metrics.cache(name, "artifact", "joined");
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
                let found = blocking(move || {
                    Ok(index.get_artifact(name, &key)?.map(|record| {
                        let path = store.blob_path(&record.flat);
                        Arc::new(CachedArtifact::new(name, key, record, path))
                    }))
                })
                .await?;
                if let Some(cached) = &found {
                    let mut hot = self.hot();
                    let by_key = hot.entry(name).or_default();
                    if by_key.len() >= HOT_ARTIFACTS {
                        by_key.clear();
                    }
                    by_key.insert(route.key.clone(), cached.clone());
                }
                found
            }
        };
        if let Some(cached) = cached {
            self.inner.metrics.cache(name, "artifact", "hit");
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
        let upstream = self.download_upstream(registered, &route.key);
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
            self.inner.metrics.cache(name, "artifact", "hit");
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
        self.inner.metrics.cache(name, "artifact", "miss");
        // A listing must be stored to be read; everything else may pass through unkept when
        // the store is full (until something can be evicted).
        if let Some(upstream) = &upstream
            && !registered.ecosystem.is_listing(&route.key)
            && (keep == Keep::Never || !self.has_room(reference.size.unwrap_or(0)))
        {
            tracing::warn!(ecosystem = name, key = %route.key, free = ?self.inner.store.free_bytes(), "no room in the store: streaming the artifact without keeping it");
            self.inner.metrics.cache(name, "artifact", "unkept");
            return crate::unkept::start(self, name, &route.key, upstream, url, &reference)
                .map(ArtifactBody::Unkept);
        }
        self.start_download(
            registered,
            route.key.clone(),
            &route.key,
            upstream,
            url,
            &reference,
        )
        .await
    }

    /// The upstream a miss of `key` may download from: `None` when only peers may be asked
    /// (offline, or no upstream configured, with the swarm on). Without the swarm, those are the
    /// errors a client gets.
    fn download_upstream(
        &self,
        registered: &Registered,
        key: &str,
    ) -> Result<Option<Upstream>, Error> {
        let name = registered.ecosystem.name();
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
        match self.upstream(registered) {
            Ok(upstream) => Ok(Some(upstream.clone())),
            Err(_) if peers => Ok(None),
            Err(e) => Err(e),
        }
    }

    /// An artifact named by a mutable key ([`Listing::Current`]): whatever file `document`
    /// lists under the key now, served from the cache when those bytes are there, else
    /// downloaded and cached under a key naming its content.
    async fn current_artifact(
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
        let key = format!("{}@{}", route.key, reference.flat);
        if let Some(download) = self.download_of(name, &key) {
            self.inner.metrics.cache(name, "artifact", "joined");
            return Ok(ArtifactBody::Downloading(download));
        }
        let upstream = self.download_upstream(registered, &route.key)?;
        let url = Url::parse(&reference.url).map_err(|e| Error::BadMetadata {
            url: reference.url.clone(),
            reason: e.to_string(),
        })?;
        if let Some(upstream) = &upstream {
            upstream.check(&url)?;
        }
        self.inner.metrics.cache(name, "artifact", "miss");
        self.start_download(registered, key, &route.key, upstream, url, &reference)
            .await
    }

    /// A cached artifact of `name` with the bytes `flat` names, whatever key it was cached
    /// under; indexed under `alias` too when one is given (the same file named twice, as apt
    /// names an index by path and by hash).
    async fn same_content(
        &self,
        name: &'static str,
        alias: Option<&str>,
        flat: &FlatCid,
    ) -> Result<Option<Arc<CachedArtifact>>, Error> {
        let (index, store, flat) = (self.inner.index.clone(), self.inner.store.clone(), *flat);
        let alias = alias.map(str::to_owned);
        blocking(move || {
            let Some((key, record)) = index.find_by_flat(name, &flat)? else {
                return Ok(None);
            };
            let key = match alias {
                Some(alias) => {
                    index.alias_artifact(name, &alias, &record)?;
                    alias
                }
                None => key,
            };
            let path = store.blob_path(&record.flat);
            Ok(Some(Arc::new(CachedArtifact::new(name, key, record, path))))
        })
        .await
    }

    /// The digest and URL of an artifact its cached metadata does not list (yet): get the
    /// document (fresh from the cache if another request just fetched it), and if it still does
    /// not list the artifact, fetch it afresh once (a version published since).
    async fn reference_from_metadata(
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
    async fn derive(
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
        };
        // Boxed: `artifact` calls this, and this calls `artifact` for the source.
        let source = match Box::pin(self.artifact(registered, &source_route, Keep::IfRoom)).await? {
            ArtifactBody::Cached(cached) => cached.path.clone(),
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
                self.inner.store.blob_path(&record.flat)
            }
        };
        let (store, index, key) = (
            self.inner.store.clone(),
            self.inner.index.clone(),
            route.key.clone(),
        );
        let (function, source_key) = (derive.function, derive.source.clone());
        let cached = blocking(move || {
            let mut file = std::fs::File::open(&source)
                .map_err(|e| crate::error::StoreError::io("open", &source, e))?;
            let bytes = function(&mut file)
                .map_err(|e| Error::NotFound(format!("{name} {key}: {}", e.0)))?;
            let mut writer =
                store.artifact_writer(Digest::of(crate::cid::Algorithm::Sha256, &bytes))?;
            writer.write(&bytes)?;
            let committed = writer.finish()?;
            let record = ArtifactRecord {
                flat: committed.flat,
                root: RootCid(committed.dag.root),
                size: committed.dag.size,
                upstream_url: format!("derived from {source_key}"),
                fetched_at: now_ms(),
            };
            index.put_artifact(name, &key, &record, &committed.dag)?;
            Ok(Arc::new(CachedArtifact::new(
                name,
                key,
                record,
                committed.path,
            )))
        })
        .await?;
        tracing::info!(ecosystem = name, key = %route.key, source = %derive.source, "artifact derived");
        Ok(ArtifactBody::Cached(cached))
    }

    async fn reference(&self, name: &'static str, key: &str) -> Result<Option<RefRecord>, Error> {
        let (index, key) = (self.inner.index.clone(), key.to_owned());
        blocking(move || Ok(index.get_ref(name, &key)?)).await
    }

    fn hot(
        &self,
    ) -> std::sync::MutexGuard<'_, HashMap<&'static str, HashMap<String, Arc<CachedArtifact>>>>
    {
        self.inner.hot.lock().unwrap_or_else(|p| p.into_inner())
    }

    fn downloads(
        &self,
    ) -> std::sync::MutexGuard<'_, HashMap<(&'static str, String), Arc<Download>>> {
        self.inner
            .downloads
            .lock()
            .unwrap_or_else(|p| p.into_inner())
    }

    fn download_of(&self, name: &'static str, key: &str) -> Option<Arc<Download>> {
        self.downloads().get(&(name, key.to_owned())).cloned()
    }

    /// Start downloading `reference` as the artifact `key` (the route's key `asked`, or a key
    /// naming its content), or join the download of it already under way, or take it from the
    /// index when a download committed it since the caller looked.
    async fn start_download(
        &self,
        registered: &Registered,
        key: String,
        asked: &str,
        upstream: Option<Upstream>,
        url: Url,
        reference: &RefRecord,
    ) -> Result<ArtifactBody, Error> {
        let ecosystem = registered.ecosystem.clone();
        let name = ecosystem.name();
        let expected = reference.flat.digest().ok_or_else(|| {
            Error::Internal(format!("{asked}: unsupported digest in {}", reference.flat))
        })?;
        let listing = ecosystem.is_listing(asked).then(|| asked.to_owned());
        let store = self.inner.store.clone();
        let writer = {
            let expected = expected.clone();
            blocking(move || Ok(store.artifact_writer(expected)?)).await?
        };
        let file = writer
            .file()
            .try_clone()
            .map_err(|e| Error::Internal(format!("cannot share temp file of {key}: {e}")))?;
        let (download, progress) = Download::new(Arc::new(file), expected.flat_cid());
        {
            let mut downloads = self.downloads();
            if let Some(existing) = downloads.get(&(name, key.clone())) {
                // Another request started it meanwhile; our writer is dropped and its temp
                // file deleted.
                return Ok(ArtifactBody::Downloading(existing.clone()));
            }
            // A download commits to the index before it leaves the map, so under the map's
            // lock the index tells whether one finished since the caller looked (a point
            // lookup, short enough to hold the lock for).
            if let Some(record) = self.inner.index.get_artifact(name, &key)? {
                let path = self.inner.store.blob_path(&record.flat);
                return Ok(ArtifactBody::Cached(Arc::new(CachedArtifact::new(
                    name, key, record, path,
                ))));
            }
            downloads.insert((name, key.clone()), download.clone());
        }
        if listing.is_some() {
            // Counted from before any byte reaches a client: a client that has the whole index
            // (apt after `update`) and asks for a file it names must find the entry, or wait
            // for it (see `wait_for_listings`).
            self.listings_started(name);
            progress.hold_until_committed();
        }
        let this = self.clone();
        let (shared, size) = (download.clone(), reference.size);
        tokio::spawn(async move {
            let result = this
                .run_download(
                    name,
                    &key,
                    upstream.as_ref(),
                    &url,
                    writer,
                    &progress,
                    &shared,
                    size,
                )
                .await;
            if let Some(listing) = listing {
                if let Ok(record) = &result {
                    this.read_listing(ecosystem, listing, record).await;
                }
                this.listings_done(name);
            }
            match result {
                Ok(record) => {
                    tracing::info!(ecosystem = name, key = %key, size = record.size, root = %record.root.short(), from_peers = shared.peer_bytes(), "artifact cached");
                    if let Some(peers) = this.peer_source() {
                        peers.holds(record.flat, record.root);
                    }
                    progress.committed(record);
                }
                Err(e) => {
                    if let Error::DigestMismatch(_) = e {
                        if shared.peer_bytes() > 0 {
                            // The peers' bytes did not make the registry's file: the next
                            // attempt goes to upstream.
                            this.peer_failures().insert(shared.flat, Instant::now());
                        }
                        this.inner
                            .metrics
                            .digest_mismatches
                            .get_or_create(&EcosystemLabels { ecosystem: name })
                            .inc();
                        tracing::error!(ecosystem = name, key = %key, url = %redact(&url), error = %e, "rejected artifact");
                    } else {
                        if e.is_disk_full() {
                            this.store_filled();
                        }
                        tracing::warn!(ecosystem = name, key = %key, error = %e, "download failed");
                    }
                    progress.failed(&e);
                }
            }
            this.downloads().remove(&(name, key));
        });
        Ok(ArtifactBody::Downloading(download))
    }

    /// Fill `writer` with the artifact: from peers when one holds it or is downloading it,
    /// else (or from where the peers left off) from upstream; then verify and commit it.
    #[allow(clippy::too_many_arguments)]
    async fn run_download(
        &self,
        name: &'static str,
        key: &str,
        upstream: Option<&Upstream>,
        url: &Url,
        writer: crate::store::ArtifactWriter,
        progress: &Progress,
        download: &Arc<Download>,
        size: Option<u64>,
    ) -> Result<ArtifactRecord, Error> {
        let flat = download.flat;
        let (cap, too_large) = self.artifact_cap(name, key, url, size)?;
        let peers = self.peer_source().cloned();
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
        let writer_task = tokio::task::spawn_blocking(move || {
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
        let (writer, leaves) = writer_task
            .await
            .map_err(|e| Error::Internal(format!("writer of {key} panicked: {e}")))??;
        read_result?;
        let index = self.inner.index.clone();
        let (key, upstream_url) = (key.to_owned(), url.to_string());
        let verified = progress.clone();
        blocking(move || {
            let committed = writer.finish_with(|size| verified.verified(size))?;
            let record = ArtifactRecord {
                flat: committed.flat,
                root: RootCid(committed.dag.root),
                size: committed.dag.size,
                upstream_url,
                fetched_at: now_ms(),
            };
            index.put_artifact(name, &key, &record, &committed.dag)?;
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
        name: &'static str,
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

    /// Whether the store can take `bytes` more and keep [`STORE_RESERVE`] free, and has not
    /// run out of space in the last [`FULL_BACKOFF`]. A `statvfs`, quick enough to make
    /// inline.
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
            .is_none_or(|free| free >= bytes.saturating_add(STORE_RESERVE))
    }

    /// [`Mirror::has_room`] as an error naming what did not fit.
    fn check_room(&self, name: &'static str, key: &str, bytes: u64) -> Result<(), Error> {
        if self.has_room(bytes) {
            return Ok(());
        }
        Err(Error::Store(crate::error::StoreError::NoRoom {
            what: format!("{name} artifact {key}"),
            needed: bytes.saturating_add(STORE_RESERVE),
            free: self.inner.store.free_bytes().unwrap_or(0),
        }))
    }

    /// Remember that the disk filled up: for [`FULL_BACKOFF`], misses are streamed unkept.
    fn store_filled(&self) {
        *self
            .inner
            .store_filled_at
            .lock()
            .unwrap_or_else(|p| p.into_inner()) = Some(Instant::now());
    }

    /// Why an artifact cannot be downloaded from upstream now, for an error message.
    fn no_upstream_reason(&self, name: &'static str) -> String {
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
        name: &'static str,
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
        self.observe_upstream(name, started, response.as_ref().ok().map(|r| r.status()));
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
                        return Err(Error::Internal(format!("writer of {key} stopped")));
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

    fn peer_failures(&self) -> std::sync::MutexGuard<'_, HashMap<FlatCid, Instant>> {
        self.inner
            .peer_failures
            .lock()
            .unwrap_or_else(|p| p.into_inner())
    }

    /// Whether peers' bytes for `flat` failed the registry digest lately.
    fn peers_failed(&self, flat: &FlatCid) -> bool {
        let mut failures = self.peer_failures();
        failures.retain(|_, at| at.elapsed() < PEER_FAILURE_MEMORY);
        failures.contains_key(flat)
    }

    fn listings_started(&self, name: &'static str) {
        let mut counts = self
            .inner
            .listings
            .0
            .lock()
            .unwrap_or_else(|p| p.into_inner());
        *counts.entry(name).or_default() += 1;
    }

    fn listings_done(&self, name: &'static str) {
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
    async fn wait_for_listings(&self, name: &'static str) -> bool {
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
    async fn read_listing(
        &self,
        ecosystem: Arc<dyn Ecosystem>,
        key: String,
        record: &ArtifactRecord,
    ) {
        let name = ecosystem.name();
        let (index, path) = (
            self.inner.index.clone(),
            self.inner.store.blob_path(&record.flat),
        );
        let upstream_url = record.upstream_url.clone();
        let result = blocking(move || {
            let url = Url::parse(&upstream_url)
                .map_err(|e| Error::Internal(format!("stored URL {upstream_url}: {e}")))?;
            let mut file = std::io::BufReader::new(
                std::fs::File::open(&path)
                    .map_err(|e| crate::error::StoreError::io("open", &path, e))?,
            );
            let started = Instant::now();
            let mut batch = Vec::with_capacity(LISTING_BATCH);
            let mut indexed = 0usize;
            let mut index_error = None;
            let mut each = |r: crate::ecosystem::ArtifactRef| {
                batch.push(ref_record(r));
                if batch.len() >= LISTING_BATCH {
                    if let Err(e) = index.put_refs(name, &key, &batch) {
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
            index.put_refs(name, &key, &batch)?;
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

    /// Drop an artifact whose stored file was found damaged or missing when it was served: out
    /// of the hot rows, its file moved aside (into `tmp/`, emptied at the next start), its rows
    /// and leaves out of the index. The references that named it stay, so the next request
    /// fetches it again. Blocking.
    pub(crate) fn forget_damaged(&self, cached: &CachedArtifact, why: &str) {
        let flat = cached.record.flat;
        tracing::error!(
            ecosystem = cached.ecosystem,
            key = %cached.key,
            flat = %flat,
            "stored artifact is damaged ({why}): dropped, to be fetched again"
        );
        for by_key in self.hot().values_mut() {
            by_key.retain(|_, c| c.record.flat != flat);
        }
        let aside = self
            .inner
            .store
            .root()
            .join("tmp")
            .join(format!("damaged-{flat}"));
        if let Err(e) = std::fs::rename(&cached.path, &aside)
            && e.kind() != std::io::ErrorKind::NotFound
        {
            tracing::warn!(flat = %flat, "cannot move the damaged file aside: {e}");
        }
        if let Err(e) = self.inner.index.forget_flat(&flat) {
            tracing::warn!(flat = %flat, "cannot drop the damaged artifact from the index: {e}");
        }
        self.inner
            .metrics
            .cache(cached.ecosystem, "artifact", "damaged");
    }

    fn touch(&self, cached: &Arc<CachedArtifact>) {
        let mut touched = self.inner.touched.lock().unwrap_or_else(|p| p.into_inner());
        if touched.len() < 100_000 {
            touched.push((cached.clone(), now_ms()));
        }
    }

    /// Delete cached upstream "not found"s older than the negative TTL, and the oldest beyond
    /// `MAX_NEGATIVE` (100,000), from the index and from memory. Returns how many rows went.
    pub async fn expire_negative(&self) -> Result<usize, Error> {
        let now = now_ms();
        let before = now.saturating_sub(self.inner.config.negative_ttl.as_millis() as i64);
        self.hot_metadata().values_mut().for_each(|by_key| {
            by_key.retain(|_, record| record.cid.is_some() || self.is_fresh(record, now))
        });
        let index = self.inner.index.clone();
        blocking(move || Ok(index.expire_negative(before, MAX_NEGATIVE)?)).await
    }

    /// Write batched last-access times to the index. Blocking work runs off the async workers.
    pub async fn flush_access_times(&self) -> Result<(), Error> {
        let batch =
            std::mem::take(&mut *self.inner.touched.lock().unwrap_or_else(|p| p.into_inner()));
        if batch.is_empty() {
            return Ok(());
        }
        let index = self.inner.index.clone();
        blocking(move || {
            let batch: Vec<(&str, &str, i64)> = batch
                .iter()
                .map(|(c, at)| (c.ecosystem, c.key.as_str(), *at))
                .collect();
            Ok(index.touch_artifacts(&batch)?)
        })
        .await
    }

    /// Flush what is pending and checkpoint the index (at shutdown).
    pub async fn close(&self) -> Result<(), Error> {
        self.flush_access_times().await?;
        let index = self.inner.index.clone();
        blocking(move || Ok(index.checkpoint()?)).await
    }

    /// The flat CID of an artifact key, if cached.
    pub async fn cached_flat(
        &self,
        name: &'static str,
        key: &str,
    ) -> Result<Option<FlatCid>, Error> {
        let (index, key) = (self.inner.index.clone(), key.to_owned());
        blocking(move || Ok(index.get_artifact(name, &key)?.map(|r| r.flat))).await
    }
}

/// References of a listing indexed per transaction (see [`Mirror::read_listing`]).
const LISTING_BATCH: usize = 10_000;

/// An artifact reference as the index keeps it.
fn ref_record(r: crate::ecosystem::ArtifactRef) -> (String, RefRecord) {
    (
        r.key,
        RefRecord {
            flat: r.digest.flat_cid(),
            url: without_credentials(&r.url).to_string(),
            size: r.size,
        },
    )
}

/// Artifact references as the index keeps them.
pub(crate) fn ref_records(refs: Vec<crate::ecosystem::ArtifactRef>) -> Vec<(String, RefRecord)> {
    refs.into_iter().map(ref_record).collect()
}

/// The error for a document of `ecosystem` from `url` over `limit` bytes.
fn document_too_large(url: &Url, ecosystem: &str, limit: u64) -> Error {
    Error::TooLarge {
        what: format!("{ecosystem} document {}", redact(url)),
        limit: crate::limits::size(limit),
        setting: format!("{ecosystem} documents (--max-document-size)"),
    }
}

/// Read a document's body into memory, refusing more than `limit` bytes (`ecosystem`'s limit,
/// named in the error).
async fn read_limited(
    mut response: reqwest::Response,
    url: &Url,
    ecosystem: &str,
    limit: u64,
) -> Result<Bytes, Error> {
    if response.content_length().is_some_and(|n| n > limit) {
        return Err(document_too_large(url, ecosystem, limit));
    }
    let mut body = Vec::with_capacity(response.content_length().unwrap_or(0) as usize);
    loop {
        match response.chunk().await {
            Ok(Some(chunk)) => {
                if body.len() as u64 + chunk.len() as u64 > limit {
                    return Err(document_too_large(url, ecosystem, limit));
                }
                body.extend_from_slice(&chunk);
            }
            Ok(None) => return Ok(Bytes::from(body)),
            Err(e) => {
                return Err(Error::UpstreamFailed {
                    url: redact(url),
                    reason: crate::upstream::describe(&e),
                });
            }
        }
    }
}

#[cfg(test)]
mod credentials_tests;
