//! Prometheus metrics, served at `/metrics` in the text exposition format: the engine's, and
//! those other parts register into the same registry ([`Metrics::register`]: the swarm's, which
//! `cairn-node` keeps).

use prometheus_client::encoding::EncodeLabelSet;
use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::family::Family;
use prometheus_client::metrics::gauge::Gauge;
use prometheus_client::metrics::histogram::Histogram;
use prometheus_client::registry::Registry;
use std::sync::{Mutex, MutexGuard, PoisonError};

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct RequestLabels {
    /// An ecosystem (`npm`) or one of Cairn's own routes (`healthz`, `metrics`, …).
    pub route: String,
    /// For ecosystems: `metadata`, `artifact`, `local`, `passthrough` or `other`.
    pub kind: &'static str,
    pub status: u16,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct CacheLabels {
    pub ecosystem: String,
    pub kind: &'static str,
    pub result: &'static str,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct RenderLabels {
    pub ecosystem: String,
    /// `ahead` (beside the fetch of a missing document) or `on-request`.
    pub when: &'static str,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct SourceLabels {
    pub source: &'static str,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct EcosystemLabels {
    pub ecosystem: String,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct PolicyLabels {
    pub ecosystem: String,
    /// `deny`, `cutoff`, `min-age` or `unknown-age`.
    pub rule: &'static str,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct UpstreamLabels {
    pub ecosystem: String,
    pub status: u16,
}

/// Every metric the engine exports, and the registry `/metrics` encodes.
pub struct Metrics {
    registry: Mutex<Registry>,
    /// The day's traffic per ecosystem, minute by minute (the dashboard's charts).
    pub traffic: crate::traffic::Traffic,
    /// The recent refusals, with their reasons.
    pub refusals: crate::refusals::Refusals,
    /// Each upstream's health: answers, latency, recent errors, stale copies served.
    pub health: crate::health::Health,
    /// HTTP requests served, by route and status.
    pub requests: Family<RequestLabels, Counter>,
    /// Cache lookups by ecosystem, kind (`metadata`, `artifact`) and result (`hit`, `miss`,
    /// `stale`, `revalidated`).
    pub cache: Family<CacheLabels, Counter>,
    /// Documents rendered for clients (the rendered-document cache's misses), by ecosystem and
    /// when.
    pub renders: Family<RenderLabels, Counter>,
    /// Artifact and metadata bytes sent to clients, by where they came from. A download's
    /// bytes are split at the point where upstream took over from peers, and counted once the
    /// download is verified (a download that fails its digest counts nothing).
    pub bytes: Family<SourceLabels, Counter>,
    /// Bytes of large cached files sent to clients by the kernel, straight from the store
    /// (plain HTTP/1; also counted in `bytes`).
    pub sent_from_files: Counter,
    /// Time to response headers from upstream.
    pub upstream_latency: Family<EcosystemLabels, Histogram>,
    /// Upstream responses by status (0: no response).
    pub upstream_requests: Family<UpstreamLabels, Counter>,
    /// Artifacts rejected because their bytes did not match the registry's digest.
    pub digest_mismatches: Family<EcosystemLabels, Counter>,
    /// Requests for files the supply-chain policy refuses, by ecosystem and rule.
    pub policy_refusals: Family<PolicyLabels, Counter>,
    /// Metadata documents taken from peers, by ecosystem.
    pub peer_documents: Family<EcosystemLabels, Counter>,
    /// Bytes of artifact files held (each file once).
    pub store_bytes: Gauge,
    /// The size limit (`--max-size`); 0 when there is none.
    pub store_limit_bytes: Gauge,
    /// Bytes of artifact files held per ecosystem (`apt` for every archive; a file named in
    /// two ecosystems counts in each).
    pub store_ecosystem_bytes: Family<EcosystemLabels, Gauge>,
    /// Per-ecosystem size limits (`--max-size-npm`, …), only for ecosystems that have one.
    pub store_ecosystem_limit_bytes: Family<EcosystemLabels, Gauge>,
    /// Artifact files evicted to stay under the limit, and their bytes.
    pub evicted_files: Counter,
    pub evicted_bytes: Counter,
    /// Of those, in a private swarm: files a peer held when they went, and files no peer
    /// answered it held (the swarm's last copies, evicted because nothing else could go).
    pub evicted_shared_files: Counter,
    pub evicted_last_copies: Counter,
    /// Artifact files purged (`cairn purge`), and their bytes.
    pub purged_files: Counter,
    pub purged_bytes: Counter,
    /// Stored files (artifacts and documents) found damaged, while serving them or at a
    /// verify's request, and dropped; and those fetched again by a repair.
    pub damaged_files: Counter,
    pub repaired_files: Counter,
    /// Snapshots pinned (`cairn pin`), as last read from the index.
    pub pinned_snapshots: Gauge,
    /// The last `cairn verify` run: when it ended (Unix seconds), the damaged files it found,
    /// and those not held again.
    pub verify_last_run_seconds: Gauge,
    pub verify_last_damaged: Gauge,
    pub verify_last_remaining: Gauge,
}

impl Default for Metrics {
    fn default() -> Self {
        Self::new()
    }
}

impl Metrics {
    pub fn new() -> Self {
        let mut registry = Registry::with_prefix("cairn");
        let requests = Family::default();
        registry.register("http_requests", "HTTP requests served", requests.clone());
        let cache = Family::default();
        registry.register("cache_lookups", "Cache lookups by result", cache.clone());
        let renders = Family::default();
        registry.register(
            "documents_rendered",
            "Documents rendered for clients, beside their fetch (ahead) or on request",
            renders.clone(),
        );
        let bytes = Family::default();
        registry.register(
            "served_bytes",
            "Bytes sent to clients, by source (cache, upstream, peer)",
            bytes.clone(),
        );
        let upstream_latency = Family::<EcosystemLabels, Histogram>::new_with_constructor(|| {
            Histogram::new([
                0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0,
            ])
        });
        registry.register(
            "upstream_response_seconds",
            "Time from request to response headers from upstream",
            upstream_latency.clone(),
        );
        let upstream_requests = Family::default();
        registry.register(
            "upstream_requests",
            "Upstream responses by status (0: no response)",
            upstream_requests.clone(),
        );
        let digest_mismatches = Family::default();
        registry.register(
            "digest_mismatches",
            "Artifacts rejected because their bytes did not match the published digest",
            digest_mismatches.clone(),
        );
        let policy_refusals = Family::default();
        registry.register(
            "policy_refusals",
            "Requests for files the supply-chain policy refuses, by rule",
            policy_refusals.clone(),
        );
        let peer_documents = Family::default();
        registry.register(
            "peer_documents",
            "Metadata documents taken from peers while upstream was unreachable",
            peer_documents.clone(),
        );
        let store_bytes = Gauge::default();
        registry.register(
            "store_bytes",
            "Bytes of artifact files held, each file once",
            store_bytes.clone(),
        );
        let store_limit_bytes = Gauge::default();
        registry.register(
            "store_limit_bytes",
            "The store's size limit (0: none)",
            store_limit_bytes.clone(),
        );
        let store_ecosystem_bytes = Family::default();
        registry.register(
            "store_ecosystem_bytes",
            "Bytes of artifact files held per ecosystem, each file once in each ecosystem naming it",
            store_ecosystem_bytes.clone(),
        );
        let store_ecosystem_limit_bytes = Family::default();
        registry.register(
            "store_ecosystem_limit_bytes",
            "The size limit of each ecosystem that has one",
            store_ecosystem_limit_bytes.clone(),
        );
        let evicted_files = Counter::default();
        registry.register(
            "evicted_files",
            "Artifact files evicted to stay under the size limit",
            evicted_files.clone(),
        );
        let evicted_bytes = Counter::default();
        registry.register(
            "evicted_bytes",
            "Bytes of artifact files evicted to stay under the size limit",
            evicted_bytes.clone(),
        );
        let purged_files = Counter::default();
        registry.register(
            "purged_files",
            "Artifact files dropped by purges",
            purged_files.clone(),
        );
        let purged_bytes = Counter::default();
        registry.register(
            "purged_bytes",
            "Bytes of artifact files dropped by purges",
            purged_bytes.clone(),
        );
        let evicted_shared_files = Counter::default();
        registry.register(
            "evicted_shared_files",
            "Files evicted in a private swarm while a peer held them",
            evicted_shared_files.clone(),
        );
        let evicted_last_copies = Counter::default();
        registry.register(
            "evicted_last_copies",
            "Files evicted in a private swarm that no peer said it held (nothing else could go)",
            evicted_last_copies.clone(),
        );
        let sent_from_files = Counter::default();
        registry.register(
            "sent_from_files_bytes",
            "Bytes of large cached files the kernel sent to clients straight from the store (sendfile)",
            sent_from_files.clone(),
        );
        let damaged_files = Counter::default();
        registry.register(
            "damaged_files",
            "Stored files found damaged (while serving them, or by cairn verify) and dropped",
            damaged_files.clone(),
        );
        let repaired_files = Counter::default();
        registry.register(
            "repaired_files",
            "Damaged stored files fetched again and verified by cairn verify --repair",
            repaired_files.clone(),
        );
        let pinned_snapshots = Gauge::default();
        registry.register(
            "pinned_snapshots",
            "Snapshots pinned (cairn pin): what they name is never evicted",
            pinned_snapshots.clone(),
        );
        let verify_last_run_seconds = Gauge::default();
        registry.register(
            "verify_last_run_timestamp_seconds",
            "When the last cairn verify ended (Unix time; 0: never)",
            verify_last_run_seconds.clone(),
        );
        let verify_last_damaged = Gauge::default();
        registry.register(
            "verify_last_damaged_files",
            "Damaged files the last cairn verify found",
            verify_last_damaged.clone(),
        );
        let verify_last_remaining = Gauge::default();
        registry.register(
            "verify_last_unrepaired_files",
            "Damaged files the last cairn verify found and did not get back",
            verify_last_remaining.clone(),
        );
        Metrics {
            registry: Mutex::new(registry),
            traffic: crate::traffic::Traffic::default(),
            refusals: crate::refusals::Refusals::default(),
            health: crate::health::Health::default(),
            store_bytes,
            store_limit_bytes,
            store_ecosystem_bytes,
            store_ecosystem_limit_bytes,
            evicted_files,
            evicted_bytes,
            evicted_shared_files,
            evicted_last_copies,
            purged_files,
            purged_bytes,
            sent_from_files,
            damaged_files,
            repaired_files,
            pinned_snapshots,
            verify_last_run_seconds,
            verify_last_damaged,
            verify_last_remaining,
            peer_documents,
            requests,
            cache,
            renders,
            bytes,
            upstream_latency,
            upstream_requests,
            digest_mismatches,
            policy_refusals,
        }
    }

    /// A cache lookup of `ecosystem`; also counted in the traffic history (a hit when the
    /// node answered from what it held or from a download already under way).
    pub fn cache(&self, ecosystem: &str, kind: &'static str, result: &'static str) {
        self.cache
            .get_or_create(&CacheLabels {
                ecosystem: ecosystem.to_owned(),
                kind,
                result,
            })
            .inc();
        let hit = match result {
            "hit" | "stale" | "revalidated" | "joined" => true,
            "miss" | "unkept" => false,
            _ => return,
        };
        self.traffic.lookup(crate::engine::now_ms(), ecosystem, hit);
    }

    /// A document of `ecosystem` rendered `when` (`ahead` or `on-request`).
    pub fn rendered(&self, ecosystem: &str, when: &'static str) {
        self.renders
            .get_or_create(&RenderLabels {
                ecosystem: ecosystem.to_owned(),
                when,
            })
            .inc();
    }

    /// Keep a refusal of `key` of `ecosystem` among the recent ones (`kind`: `digest`,
    /// `peer-digest`, `policy` with its `rule`).
    pub fn refused(
        &self,
        kind: &'static str,
        rule: Option<&'static str>,
        ecosystem: &str,
        key: &str,
        reason: String,
    ) {
        self.refusals.push(crate::refusals::Refused {
            at: crate::ecosystem::time::format_rfc3339(crate::engine::now_ms()),
            kind,
            rule,
            ecosystem: ecosystem.to_owned(),
            key: key.to_owned(),
            reason,
        });
    }

    /// `bytes` of `ecosystem` sent to clients from `source` (`cache`, `peer`, `upstream`).
    pub fn served(&self, ecosystem: &str, source: &'static str, bytes: u64) {
        self.bytes
            .get_or_create(&SourceLabels { source })
            .inc_by(bytes);
        self.traffic
            .served(crate::engine::now_ms(), ecosystem, source, bytes);
    }

    /// Register more metrics into the registry `/metrics` encodes (its prefix is `cairn`):
    /// `register` gets the registry and returns what it registered, e.g.
    /// `metrics.register(cairn_node::NodeMetrics::register)`.
    pub fn register<T>(&self, register: impl FnOnce(&mut Registry) -> T) -> T {
        register(&mut self.registry())
    }

    fn registry(&self) -> MutexGuard<'_, Registry> {
        self.registry.lock().unwrap_or_else(PoisonError::into_inner)
    }

    /// The text exposition.
    pub fn encode(&self) -> String {
        let mut out = String::new();
        // Writing into a String cannot fail.
        let _ = prometheus_client::encoding::text::encode(&mut out, &self.registry());
        out
    }
}
