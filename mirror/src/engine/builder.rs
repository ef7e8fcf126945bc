//! Building a [`Mirror`]: the store, metrics and peers it is given (or opens itself), and the
//! ecosystems it serves. The bin opens the store first, starts the node over it (the node reads
//! the store's holdings and registers its metrics in the engine's registry), then builds the
//! mirror with that node as its peers: every part is whole when the mirror is, and the node
//! holds nothing of the mirror.

use std::collections::HashMap;
use std::sync::{Arc, Mutex};

use super::{EcosystemSetup, Inner, Mirror, MirrorConfig, Registered, Routed};
use crate::engine::flight::SingleFlight;
use crate::engine::render::RenderCache;
use crate::error::Error;
use crate::metrics::Metrics;
use crate::peers::PeerSource;
use crate::store::Store;
use crate::upstream::Upstream;

/// What a [`Mirror`] is built from ([`Mirror::builder`]).
pub struct Builder {
    config: MirrorConfig,
    ecosystems: Vec<EcosystemSetup>,
    store: Option<Store>,
    metrics: Option<Metrics>,
    peers: Option<Arc<dyn PeerSource>>,
}

impl Builder {
    pub(super) fn new(config: MirrorConfig, ecosystems: Vec<EcosystemSetup>) -> Self {
        Builder {
            config,
            ecosystems,
            store: None,
            metrics: None,
            peers: None,
        }
    }

    /// The store of `config.data_dir`, opened already (the node reads it too); without one,
    /// [`Builder::build`] opens it.
    pub fn store(mut self, store: Store) -> Self {
        self.store = Some(store);
        self
    }

    /// The metrics registry, with what was registered in it before (the node's families).
    pub fn metrics(mut self, metrics: Metrics) -> Self {
        self.metrics = Some(metrics);
        self
    }

    /// The swarm: misses ask peers first, and downloads under way are offered to them.
    pub fn peers(mut self, peers: Arc<dyn PeerSource>) -> Self {
        self.peers = Some(peers);
        self
    }

    /// Open what was not given, register the ecosystems, and return the mirror. Blocking (it
    /// may open the store, and it removes credentials from stored upstream URLs).
    pub fn build(self) -> Result<Mirror, Error> {
        let config = self.config;
        let store = match self.store {
            Some(store) => store,
            None => Store::open(&config.data_dir)?,
        };
        let index = store.index().clone();
        let stripped = store.strip_credentials(crate::upstream::strip_userinfo)?;
        if stripped > 0 {
            tracing::info!(
                rows = stripped,
                "removed credentials from stored upstream URLs"
            );
        }
        let metrics = self.metrics.unwrap_or_default();
        super::traffic::restore(&index, &metrics.traffic)?;
        metrics
            .store_limit_bytes
            .set(config.max_store_bytes.unwrap_or(0) as i64);
        for (ecosystem, &limit) in &config.max_ecosystem_bytes {
            metrics
                .store_ecosystem_limit_bytes
                .get_or_create(&crate::metrics::EcosystemLabels {
                    ecosystem: ecosystem.clone(),
                })
                .set(limit as i64);
        }
        let mut registered = HashMap::new();
        let mut mounts = HashMap::new();
        for setup in self.ecosystems {
            let upstream = match setup.upstream {
                Ok(url) => Ok(Upstream::with_credentials(
                    url,
                    setup.credentials.as_ref(),
                    config.limits.clone(),
                )?),
                Err(hint) => Err(hint),
            };
            let name: Arc<str> = Arc::from(setup.ecosystem.name());
            let mut routed = Vec::new();
            for route in setup.routed {
                if route.patterns.is_empty() || routed.iter().any(|r: &Routed| r.name == route.name)
                {
                    return Err(Error::Registration(format!(
                        "{name} upstream {}: a routed upstream needs a unique name and at least \
                         one pattern",
                        route.name
                    )));
                }
                routed.push(Routed {
                    upstream: Upstream::with_credentials(
                        route.url,
                        route.credentials.as_ref(),
                        config.limits.clone(),
                    )?,
                    name: route.name,
                    patterns: route.patterns,
                });
            }
            let mount = setup.mount.trim_matches('/').to_owned();
            if mount.is_empty() || mounts.contains_key(&mount) || registered.contains_key(&name) {
                return Err(Error::Registration(format!(
                    "ecosystem {name} at /{mount}/: the name and the mount must be unique and the mount not empty"
                )));
            }
            mounts.insert(mount.clone(), name.clone());
            registered.insert(
                name.clone(),
                Registered {
                    ecosystem: setup.ecosystem,
                    name,
                    mount,
                    upstream,
                    routed,
                },
            );
        }
        Ok(Mirror {
            inner: Arc::new(Inner {
                rendered: RenderCache::new(config.render_cache_bytes),
                content: crate::engine::lru::Lru::new(config.content_cache_bytes),
                config,
                store,
                index,
                ecosystems: registered,
                mounts,
                metrics,
                downloads: Mutex::new(HashMap::new()),
                metadata_flights: SingleFlight::default(),
                peer_metadata_flights: SingleFlight::default(),
                render_flights: SingleFlight::default(),
                large_fills: Arc::default(),
                hot: Mutex::new(HashMap::new()),
                ahead: Mutex::default(),
                any_ahead: std::sync::atomic::AtomicBool::new(false),
                hot_metadata: Mutex::new(HashMap::new()),
                touched: Mutex::new(Vec::new()),
                listings: (Mutex::new(HashMap::new()), tokio::sync::Notify::new()),
                peers: self.peers,
                peer_failures: Mutex::new(HashMap::new()),
                store_filled_at: Mutex::new(None),
                tasks: tokio_util::task::TaskTracker::new(),
                abandon: tokio_util::sync::CancellationToken::new(),
                upkeep_due: tokio::sync::Notify::new(),
                pinned: Mutex::default(),
                evicting: tokio::sync::Mutex::new(()),
                idleness: Default::default(),
                counted_at: Mutex::new(None),
                tokens: super::tokens::Tokens::default(),
                policy: std::sync::RwLock::default(),
                policy_generation: std::sync::atomic::AtomicU64::new(0),
                purges: std::sync::atomic::AtomicU64::new(0),
                traffic_flushed: std::sync::atomic::AtomicI64::new(0),
            }),
        })
    }
}
