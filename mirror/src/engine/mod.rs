//! The engine: the store, the index and the upstreams behind the registered ecosystems, and the
//! two lookups every request comes down to, metadata and artifacts. One [`Mirror`] type, its
//! methods split by job:
//!
//! - [`metadata`]: a fresh cached document is served as it is; a stale one is revalidated
//!   upstream (conditional GET, one request per key however many clients ask); when upstream
//!   fails or the node is offline a stale copy is served (marked by `Age`), and a miss is a 504
//!   that says why. Each fetched version is read by the adapter before it is stored, and the
//!   digests it lists are indexed with it. [`from_peers`] asks trusted peers when upstream cannot
//!   answer; [`rendering`] turns stored documents into what clients get.
//! - [`artifacts`]: a cached one is a flat file ([`cached`]); a miss starts one shared
//!   [`Download`] ([`fill`]) whose digest is known before the first byte (from the indexed
//!   metadata), and which commits only verified bytes. [`listings`] reads artifacts that list
//!   other artifacts' digests.
//!
//! The helpers they share: [`download`] (one download's progress, shared by its readers),
//! [`flight`] (one call per key), [`lru`] and [`render`] (bounded memory caches), [`unkept`]
//! (streaming when the store is full) and [`verified`] (checking cached files as they are served).

mod artifacts;
mod builder;
mod cached;
pub mod content_key;
pub mod download;
pub mod eviction;
mod fill;
pub(crate) mod flight;
mod from_peers;
mod idle;
pub(crate) mod large_fills;
mod listings;
pub(crate) mod lru;
mod metadata;
mod policing;
pub mod purge;
pub(crate) mod render;
mod rendering;
pub mod repair;
pub mod store_report;
pub(crate) mod swarm_choice;
pub mod tokens;
pub mod traffic;
pub(crate) mod unkept;
pub(crate) mod verified;

pub use artifacts::ArtifactBody;
pub use builder::Builder;
pub use cached::CachedArtifact;
pub(crate) use cached::http_date;
pub(crate) use fill::Keep;
pub use metadata::MetadataHit;
#[cfg(test)]
pub(crate) use metadata::stale_reason;
use metadata::{Enough, Fetched};
pub use rendering::RenderAhead;

use std::collections::{BTreeMap, HashMap};
use std::path::PathBuf;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant, SystemTime};

use bytes::Bytes;
use url::Url;

use crate::cid::{FlatCid, RootCid};
use crate::ecosystem::{ArtifactRoute, Ecosystem};
use crate::engine::download::Download;
use crate::engine::flight::SingleFlight;
use crate::engine::render::{RenderCache, RenderKey, RenderedDoc};
use crate::error::Error;
use crate::index::{Index, MetadataRecord, RefRecord};
use crate::metrics::Metrics;
use crate::peers::PeerSource;
use crate::store::Store;
use crate::upstream::routing::Pattern;
use crate::upstream::{Credentials, Upstream, UpstreamLimits, redact, without_credentials};

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
    /// Memory for the bytes of hot artifacts (each at most a quarter of it).
    pub content_cache_bytes: usize,
    /// Largest metadata document accepted from upstream or a peer, for every ecosystem;
    /// `None`: each ecosystem's own ([`Ecosystem::max_document_bytes`]).
    pub max_document_bytes: Option<u64>,
    /// Largest artifact downloaded (one whose listing declares its size is also held to that
    /// size).
    pub max_artifact_bytes: u64,
    /// The most bytes of artifact files the store keeps (`--max-size`): past it, the least
    /// recently used are evicted (`Mirror::evict_if_over`). `None`: no limit.
    pub max_store_bytes: Option<u64>,
    /// Size limits per ecosystem (`--max-size-npm`, …; `apt` is every apt archive): past one,
    /// that ecosystem's least recently used files are evicted. Beside `max_store_bytes`, which
    /// still holds over everything.
    pub max_ecosystem_bytes: BTreeMap<String, u64>,
    /// Free space the store keeps on its disk (`--min-free`): a download that would leave less
    /// first evicts least recently used artifacts to make room (at least 1 MiB is kept).
    pub min_free: MinFree,
    /// Every route but `/healthz` needs an access token (`--auth required`).
    pub auth_required: bool,
    /// With `auth_required`, `/metrics` needs an admin token (`--admin-metrics`).
    pub admin_metrics: bool,
}

/// How much of its disk the store leaves free.
#[derive(Clone, Copy, Debug, PartialEq)]
pub enum MinFree {
    Bytes(u64),
    /// A share of the disk's size, in percent.
    Percent(f64),
}

impl MinFree {
    /// The bytes to keep free on a disk of `disk` bytes (unknown: the share is of nothing).
    pub fn bytes(self, disk: Option<u64>) -> u64 {
        let wanted = match self {
            MinFree::Bytes(bytes) => bytes,
            MinFree::Percent(share) => (disk.unwrap_or(0) as f64 * share / 100.0) as u64,
        };
        wanted.max(STORE_RESERVE)
    }
}

/// The in-memory caches' budget by default: 96 MiB of rendered documents (one may take a
/// quarter: the largest packuments, 20 MB rendered plus their gzip, stay cached instead of
/// being rendered per request) and 16 MiB of hot small artifacts.
pub const DEFAULT_MEMORY_BUDGET: usize = 112 << 20;

/// The most the hot small artifacts get of a budget.
const MAX_CONTENT_CACHE: usize = 16 << 20;

impl MirrorConfig {
    pub fn new(data_dir: PathBuf) -> Self {
        let mut config = MirrorConfig {
            data_dir,
            offline: false,
            metadata_ttl: Duration::from_secs(300),
            negative_ttl: Duration::from_secs(60),
            public_url: None,
            limits: UpstreamLimits::default(),
            render_cache_bytes: 0,
            content_cache_bytes: 0,
            max_document_bytes: None,
            max_artifact_bytes: 8 << 30,
            max_store_bytes: None,
            max_ecosystem_bytes: BTreeMap::new(),
            min_free: MinFree::Percent(5.0),
            auth_required: false,
            admin_metrics: false,
        };
        config.set_memory_budget(DEFAULT_MEMORY_BUDGET);
        config
    }

    /// Give the in-memory caches `bytes` in all (`--memory-budget`): a quarter, at most
    /// 16 MiB, to hot small artifacts, the rest to rendered documents.
    pub fn set_memory_budget(&mut self, bytes: usize) {
        self.content_cache_bytes = (bytes / 4).min(MAX_CONTENT_CACHE);
        self.render_cache_bytes = bytes - self.content_cache_bytes;
    }
}

/// An ecosystem to serve, where, and with its upstream (or why it has none).
pub struct EcosystemSetup {
    pub ecosystem: Arc<dyn Ecosystem>,
    /// The path prefix it is served under, without slashes at either end (`npm`, `apt/debian`).
    /// Its identity (index namespace, metric label) is the adapter's [`Ecosystem::name`].
    pub mount: String,
    /// The main upstream: every package no route takes.
    pub upstream: Result<Url, String>,
    /// The main upstream's credentials (a user name and password in its URL win over them).
    pub credentials: Option<Credentials>,
    /// Upstreams that each take the packages their patterns name ([`crate::upstream::routing`]),
    /// in order: the first whose pattern matches a name takes it.
    pub routed: Vec<RoutedUpstream>,
}

impl EcosystemSetup {
    /// True when what is held under the metadata key `key` (or, for `None`, under no key a
    /// route takes) comes from an upstream that is sent credentials: as [`Mirror`] decides
    /// it, for a command that has the setup but no mirror (`cairn import`).
    pub fn is_private(&self, key: Option<&str>) -> bool {
        let has_userinfo = |url: &Url| !url.username().is_empty() || url.password().is_some();
        let routed = key.and_then(|key| {
            let name = self.ecosystem.routing_name(key);
            self.routed
                .iter()
                .find(|r| r.patterns.iter().any(|p| p.matches(name)))
        });
        match routed {
            Some(r) => r.credentials.is_some() || has_userinfo(&r.url),
            None => self.credentials.is_some() || self.upstream.as_ref().is_ok_and(has_userinfo),
        }
    }

    /// `ecosystem` at `mount` with one upstream (or why it has none) and no credentials.
    pub fn new(ecosystem: Arc<dyn Ecosystem>, mount: &str, upstream: Result<Url, String>) -> Self {
        EcosystemSetup {
            ecosystem,
            mount: mount.to_owned(),
            upstream,
            credentials: None,
            routed: Vec::new(),
        }
    }
}

/// An upstream that takes the packages whose names match its patterns.
#[derive(Clone, Debug)]
pub struct RoutedUpstream {
    /// Its name, for logs and status (`@corp`, `corp`).
    pub name: String,
    pub patterns: Vec<Pattern>,
    pub url: Url,
    pub credentials: Option<Credentials>,
}

pub(crate) struct Registered {
    pub ecosystem: Arc<dyn Ecosystem>,
    /// [`Ecosystem::name`], shared by the engine's maps and labels.
    pub name: Arc<str>,
    /// Where it is served ([`EcosystemSetup::mount`]).
    pub mount: String,
    pub upstream: Result<Upstream, String>,
    pub routed: Vec<Routed>,
}

/// A routed upstream as status reports show it (credentials masked).
#[derive(Clone, Debug, serde::Serialize)]
pub struct RouteReport {
    pub name: String,
    /// Its patterns.
    pub names: Vec<String>,
    pub upstream: String,
    /// Sent credentials: what it serves stays out of an open swarm.
    pub private: bool,
}

/// A [`RoutedUpstream`], made.
pub(crate) struct Routed {
    pub name: String,
    pub patterns: Vec<Pattern>,
    pub upstream: Upstream,
}

impl Registered {
    /// The routed upstream that takes `key` (a metadata key), if one does.
    pub(crate) fn routed(&self, key: &str) -> Option<&Routed> {
        let name = self.ecosystem.routing_name(key);
        self.routed
            .iter()
            .find(|r| r.patterns.iter().any(|p| p.matches(name)))
    }
}

/// Downloads under way, by ecosystem name and artifact key.
pub(crate) type Downloads = HashMap<(Arc<str>, String), Arc<Download>>;

/// Hot artifacts, by ecosystem name, then key.
pub(crate) type HotArtifacts = HashMap<Arc<str>, HashMap<String, Arc<CachedArtifact>>>;

/// Hot artifact rows (about 400 bytes each) and metadata rows kept in memory at most, per
/// ecosystem.
const HOT_ARTIFACTS: usize = 50_000;

/// Cached upstream "not found"s kept at most (the newest): each random name asked for leaves
/// one until the negative TTL sweeps it.
const MAX_NEGATIVE: u64 = 100_000;

/// How long an artifact whose bytes from peers failed its digest is fetched from upstream only.
const PEER_FAILURE_MEMORY: Duration = Duration::from_secs(600);

/// The least space the store keeps free beyond a download's own size, for the index's WAL and
/// the next metadata documents, whatever `--min-free` says. A download that would eat into the
/// reserve evicts what it can first ([`MirrorConfig::min_free`]), and is streamed to its client
/// unkept when that is not enough.
const STORE_RESERVE: u64 = 1 << 20;

/// How long after the disk filled up every miss is streamed unkept, whatever `statvfs` says
/// (a download that fills the disk frees its temp file when it fails).
const FULL_BACKOFF: Duration = Duration::from_secs(30);

/// The mirror. Cheap to clone.
#[derive(Clone)]
pub struct Mirror {
    pub(crate) inner: Arc<Inner>,
}

pub(crate) struct Inner {
    pub config: MirrorConfig,
    pub store: Store,
    pub index: Arc<Index>,
    /// By name ([`Ecosystem::name`]).
    pub ecosystems: HashMap<Arc<str>, Registered>,
    /// Names by mount.
    mounts: HashMap<String, Arc<str>>,
    pub metrics: Metrics,
    downloads: Mutex<Downloads>,
    metadata_flights: SingleFlight<(Arc<str>, String), Result<MetadataRecord, Arc<Error>>>,
    /// Asks of the peers for a document upstream could not give, once for all callers.
    peer_metadata_flights: SingleFlight<(Arc<str>, String), Option<MetadataRecord>>,
    render_flights: SingleFlight<RenderKey, Result<Arc<RenderedDoc>, Arc<Error>>>,
    rendered: RenderCache,
    pub content: crate::engine::lru::Lru<FlatCid, Bytes>,
    /// Which large files are read into `content` (`large_fills.rs`).
    large_fills: Arc<crate::engine::large_fills::LargeFills>,
    hot: Mutex<HotArtifacts>,
    /// Files whose download was started ahead of their (pipelined) request, which has not
    /// come yet: that request is their miss, whether it joins the download or finds the file.
    ahead: Mutex<std::collections::HashSet<(Arc<str>, String)>>,
    /// `ahead` is not empty: a hit looks no further when it is.
    any_ahead: std::sync::atomic::AtomicBool,
    /// Metadata records as last read or written by this process: a hit skips SQLite.
    hot_metadata: Mutex<HashMap<Arc<str>, HashMap<String, MetadataRecord>>>,
    touched: Mutex<Vec<(Arc<CachedArtifact>, i64)>>,
    /// Listing artifacts being downloaded or read, per ecosystem, and their completions.
    listings: (Mutex<HashMap<Arc<str>, usize>>, tokio::sync::Notify),
    /// The swarm (`--no-p2p`: none).
    peers: Option<Arc<dyn PeerSource>>,
    /// Artifacts whose bytes from peers failed the registry digest, and when.
    peer_failures: Mutex<HashMap<FlatCid, Instant>>,
    /// When a download last failed for want of disk space.
    store_filled_at: Mutex<Option<Instant>>,
    /// Every task the engine starts that outlives the request that started it (downloads,
    /// unkept streams), so that shutdown can wait for them.
    tasks: tokio_util::task::TaskTracker,
    /// Cancelled when shutdown stops waiting: downloads still running are abandoned.
    abandon: tokio_util::sync::CancellationToken,
    /// Notified when a commit passes the size limit.
    upkeep_due: tokio::sync::Notify,
    /// The artifacts pinned snapshots name, cached by their roots.
    pinned: Mutex<eviction::Pinned>,
    /// Held by an eviction pass: one at a time.
    evicting: tokio::sync::Mutex<()>,
    /// When the last request came, for [`Mirror::release_memory_if_idle`].
    idleness: idle::Idleness,
    /// When what is held was last counted from the index ([`eviction`]).
    counted_at: Mutex<Option<Instant>>,
    /// The access tokens accepted ([`tokens`]).
    tokens: tokens::Tokens,
    /// The supply-chain policy in force ([`crate::policy`]), and how many times it changed
    /// (rendered documents are cached per generation).
    policy: std::sync::RwLock<Arc<crate::policy::Policy>>,
    policy_generation: std::sync::atomic::AtomicU64,
    /// Purges done: a metadata row read from the index before a purge is not remembered after
    /// it (it may name a document the purge dropped).
    purges: std::sync::atomic::AtomicU64,
    /// The minute up to which the traffic history was written to the index.
    traffic_flushed: std::sync::atomic::AtomicI64,
}

impl Inner {
    /// Forget that the disk filled up (eviction has made room since).
    fn clear_filled(&self) {
        *self
            .store_filled_at
            .lock()
            .unwrap_or_else(|p| p.into_inner()) = None;
    }
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
        .map_err(|source| Error::Task {
            what: "a blocking task".to_owned(),
            source,
        })?
}

impl Mirror {
    /// Open the store under `config.data_dir` and register `ecosystems`, with no peers: what
    /// [`Mirror::builder`] builds when given nothing else. Blocking.
    pub fn open(config: MirrorConfig, ecosystems: Vec<EcosystemSetup>) -> Result<Self, Error> {
        Mirror::builder(config, ecosystems).build()
    }

    /// A mirror to build: give it the store, metrics and peers opened before it (the node
    /// reads the same store and registers its metrics beside the engine's), then
    /// [`Builder::build`].
    pub fn builder(config: MirrorConfig, ecosystems: Vec<EcosystemSetup>) -> Builder {
        Builder::new(config, ecosystems)
    }

    pub fn config(&self) -> &MirrorConfig {
        &self.inner.config
    }

    /// The swarm, when it is on.
    pub fn peer_source(&self) -> Option<&Arc<dyn PeerSource>> {
        self.inner.peers.as_ref()
    }

    /// Every block this node holds, by CID (what Bitswap and the gateway serve).
    pub fn blocks(&self) -> crate::blocks::Blocks {
        self.inner.store.blocks()
    }

    /// Flat and root CIDs of every artifact held. Blocking.
    pub fn held_artifacts(&self) -> Result<Vec<(FlatCid, RootCid)>, Error> {
        Ok(self.inner.index.held_files(None)?)
    }

    pub fn metrics(&self) -> &Metrics {
        &self.inner.metrics
    }

    /// Bytes of hot artifacts (small ones, and large ones read whole twice), by flat CID.
    pub(crate) fn content(&self) -> &crate::engine::lru::Lru<FlatCid, Bytes> {
        &self.inner.content
    }

    /// Which large files are read into [`Mirror::content`].
    pub(crate) fn large_fills(&self) -> &Arc<crate::engine::large_fills::LargeFills> {
        &self.inner.large_fills
    }

    /// The index, to read.
    pub fn index(&self) -> &Arc<Index> {
        &self.inner.index
    }

    /// The data directory (every write to it goes through the store).
    pub fn store(&self) -> &Store {
        &self.inner.store
    }

    /// The registered ecosystems (by name) and their upstreams (or why there is none).
    pub fn upstreams(&self) -> Vec<(&str, Result<String, String>)> {
        let mut out: Vec<_> = self
            .inner
            .ecosystems
            .iter()
            .map(|(name, r)| {
                (
                    &**name,
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

    /// The routed upstreams of the ecosystem `name`, in the order they are tried.
    pub fn routes_of(&self, name: &str) -> Vec<RouteReport> {
        self.ecosystem(name)
            .map(|registered| {
                registered
                    .routed
                    .iter()
                    .map(|r| RouteReport {
                        name: r.name.clone(),
                        names: r.patterns.iter().map(|p| p.to_string()).collect(),
                        upstream: r.upstream.shown(),
                        private: r.upstream.private(),
                    })
                    .collect()
            })
            .unwrap_or_default()
    }

    pub(crate) fn ecosystem(&self, name: &str) -> Option<&Registered> {
        self.inner.ecosystems.get(name)
    }

    /// The ecosystem served under `mount` (a path prefix without slashes at its ends).
    pub(crate) fn ecosystem_at(&self, mount: &str) -> Option<&Registered> {
        self.ecosystem(self.inner.mounts.get(mount)?)
    }

    /// Where the ecosystem `name` is served, if it is registered.
    pub fn mount_of(&self, name: &str) -> Option<&str> {
        self.ecosystem(name).map(|r| r.mount.as_str())
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

    /// The main upstream of `registered`.
    fn upstream<'a>(&self, registered: &'a Registered) -> Result<&'a Upstream, Error> {
        registered
            .upstream
            .as_ref()
            .map_err(|hint| Error::NoUpstream {
                ecosystem: registered.name.to_string(),
                hint: hint.clone(),
            })
    }

    /// True when what `registered` holds under the metadata key `key` (and the artifacts its
    /// document lists) comes from an upstream that is sent credentials: it is stored as
    /// private, and neither asked of nor shown to an open swarm.
    pub(crate) fn is_private(&self, registered: &Registered, key: &str) -> bool {
        self.upstream_for(registered, key)
            .is_ok_and(|upstream| upstream.private())
    }

    /// Whether an artifact route's file is private: as the document listing it is (a file an
    /// apt listing names is as private as the archive).
    pub(crate) fn artifact_is_private(
        &self,
        registered: &Registered,
        route: &ArtifactRoute,
    ) -> bool {
        match route.listed_by.document() {
            Some(document) => self.is_private(registered, &document.key),
            None => self
                .upstream(registered)
                .is_ok_and(|upstream| upstream.private()),
        }
    }

    /// The peers content may be asked of: none for private content unless the swarm is
    /// private (asking an open swarm would tell it what this node wants).
    pub(crate) fn peers_for(&self, private: bool) -> Option<&Arc<dyn PeerSource>> {
        self.peer_source()
            .filter(|peers| !private || peers.shares_holdings())
    }

    /// The upstream that takes the metadata key `key` (and the artifacts its document lists):
    /// the routed one whose pattern matches it, else the main one.
    pub(crate) fn upstream_for<'a>(
        &self,
        registered: &'a Registered,
        key: &str,
    ) -> Result<&'a Upstream, Error> {
        match registered.routed(key) {
            Some(routed) => Ok(&routed.upstream),
            None => self.upstream(registered),
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
        let store = self.inner.store.clone();
        blocking(move || Ok(store.expire_not_found(before, MAX_NEGATIVE)?)).await
    }

    /// Write batched last-access times to the index. Blocking work runs off the async workers.
    pub async fn flush_access_times(&self) -> Result<(), Error> {
        let batch =
            std::mem::take(&mut *self.inner.touched.lock().unwrap_or_else(|p| p.into_inner()));
        if batch.is_empty() {
            return Ok(());
        }
        let store = self.inner.store.clone();
        blocking(move || {
            let batch: Vec<(&str, &str, i64)> = batch
                .iter()
                .map(|(c, at)| (&*c.ecosystem, c.key.as_str(), *at))
                .collect();
            Ok(store.touch_artifacts(&batch)?)
        })
        .await
    }

    /// Flush what is pending and checkpoint the index (at shutdown).
    /// Let the downloads under way finish within `deadline`, then abandon the rest: each one's
    /// temp file is deleted and whoever waits on it gets a 503. Call it once the HTTP front has
    /// drained, before the peer stops and the store closes. Returns how many were abandoned.
    pub async fn finish_downloads(&self, deadline: Duration) -> usize {
        let tasks = &self.inner.tasks;
        tasks.close();
        if tokio::time::timeout(deadline, tasks.wait()).await.is_ok() {
            return 0;
        }
        let abandoned = self.downloads().len();
        tracing::warn!(
            downloads = abandoned,
            "downloads still running at shutdown; abandoning them"
        );
        self.inner.abandon.cancel();
        // An abandoned download ends at its next await; an unkept stream ends with its client,
        // which the HTTP drain has already cut.
        if tokio::time::timeout(Duration::from_secs(5), tasks.wait())
            .await
            .is_err()
        {
            tracing::warn!(
                tasks = tasks.len(),
                "engine tasks still running after abandon"
            );
        }
        abandoned
    }

    /// Start `task` as one of the engine's own (see [`Mirror::finish_downloads`]; a download's
    /// blocking writer is one too, so that waiting for the tasks waits for its temp file to go).
    pub(super) fn spawn<F>(&self, task: F)
    where
        F: std::future::Future<Output = ()> + Send + 'static,
    {
        self.inner.tasks.spawn(task);
    }

    pub async fn close(&self) -> Result<(), Error> {
        self.flush_access_times().await?;
        self.flush_traffic().await?;
        let store = self.inner.store.clone();
        blocking(move || Ok(store.checkpoint()?)).await
    }

    /// The flat CID of an artifact key, if cached.
    pub async fn cached_flat(&self, name: &str, key: &str) -> Result<Option<FlatCid>, Error> {
        let (index, key, name) = (self.inner.index.clone(), key.to_owned(), name.to_owned());
        blocking(move || Ok(index.get_artifact(&name, &key)?.map(|r| r.flat))).await
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
            version: r.version,
            published: r.published,
            removed: None,
            yanked: r.yanked,
            package: r.package,
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
