//! Keeping the store under its size limits: the global one (`--max-size`) and each
//! ecosystem's (`--max-size-npm`, …; `apt` covers every apt archive). When the artifact files
//! held in all, or those an ecosystem's rows name, pass their limit, the least recently used go
//! (of that ecosystem, for its limit), down to [`LOW_WATER`] of it, in the background (the
//! upkeep of `Serving`, woken by the commit that crossed the limit). A hit never waits for it:
//! eviction reads the index through its own connection and writes in short batches. Every pass
//! goes through `Mirror::evict_lru`, so pins and files in use are kept alike.
//!
//! The disk has its own floor (`--min-free`, 5% of it by default): a download that would leave
//! less free evicts least recently used artifacts first, limit or not ([`Mirror::make_room`]),
//! and is streamed to its client unkept when nothing more may go.
//!
//! What is never evicted: an artifact a pinned snapshot names (`cairn pin`), and anything used
//! since the pass chose it (access times are written before the pass). A download under way is
//! not in the index yet, and a response already streaming a file ends whole. Metadata
//! documents are not counted against the limits (they are what the node needs to answer at
//! all). A file named in two ecosystems counts in each, and an ecosystem's pass that evicts it
//! takes it from both (the unit is the file).

use std::collections::HashSet;
use std::sync::Arc;

use cid::Cid;

use super::{Mirror, blocking, swarm_choice};
use crate::cid::FlatCid;
use crate::error::Error;
use crate::index::ecosystem_family;
use crate::metrics::EcosystemLabels;
use crate::snapshot::Snapshot;

/// Where a pass stops: this share of the limit.
pub const LOW_WATER: f64 = 0.9;

/// How often what is held is counted again from the index when no pass needs it.
pub const RECOUNT_EVERY: std::time::Duration = std::time::Duration::from_secs(600);

/// What one pass did (over every limit that was passed).
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct Eviction {
    /// Bytes of artifact files held after the pass.
    pub held: u64,
    /// Files and bytes evicted, for the global limit and the ecosystems' together.
    pub files: usize,
    pub bytes: u64,
}

/// The artifacts pinned snapshots name, for the set of pins they were read from.
#[derive(Default)]
pub(crate) struct Pinned {
    roots: Vec<Cid>,
    flats: Arc<HashSet<FlatCid>>,
}

impl Mirror {
    /// Bytes of artifact files held: the store's count, exact for what this node wrote since
    /// its last count from the index; 0 until the first count (see [`Mirror::evict_if_over`]).
    pub fn held_bytes(&self) -> u64 {
        self.inner.store.held_total_now().unwrap_or(0)
    }

    /// Bytes of artifact files an ecosystem's rows name (`npm`; `apt` for every archive), as
    /// [`Mirror::held_bytes`] knows them.
    pub fn held_bytes_in(&self, ecosystem: &str) -> u64 {
        self.inner.store.held_in_now(ecosystem).unwrap_or(0)
    }

    /// A commit in `ecosystem` (the store has counted it): show the counts, and wake the
    /// upkeep when a limit is passed.
    pub(super) fn committed(&self, ecosystem: &str) {
        self.show_held();
        let config = &self.inner.config;
        let family = ecosystem_family(ecosystem);
        let over = config
            .max_store_bytes
            .is_some_and(|max| self.held_bytes() > max)
            || config
                .max_ecosystem_bytes
                .get(family)
                .is_some_and(|&max| self.held_bytes_in(family) > max);
        if over {
            self.inner.upkeep_due.notify_one();
        }
    }

    /// Set the held-bytes gauges from the store's count.
    pub(super) fn show_held(&self) {
        let Some(held) = self.inner.store.held_now() else {
            return;
        };
        let metrics = &self.inner.metrics;
        metrics.store_bytes.set(held.total as i64);
        for (ecosystem, &bytes) in &held.by_ecosystem {
            metrics
                .store_ecosystem_bytes
                .get_or_create(&EcosystemLabels {
                    ecosystem: ecosystem.to_owned(),
                })
                .set(bytes as i64);
        }
    }

    /// Whether what is held is over the global limit or an ecosystem's.
    fn over_a_limit(&self) -> bool {
        let Some(held) = self.inner.store.held_now() else {
            return false;
        };
        let config = &self.inner.config;
        config.max_store_bytes.is_some_and(|max| held.total > max)
            || config
                .max_ecosystem_bytes
                .iter()
                .any(|(ecosystem, &max)| held.by_ecosystem.get(ecosystem).is_some_and(|&b| b > max))
    }

    /// Resolves when a commit has passed the size limit since the last call.
    pub async fn eviction_due(&self) {
        self.inner.upkeep_due.notified().await
    }

    /// One eviction pass when the store is over a limit (nothing without limits): for each
    /// ecosystem over its own limit, evict its least recently used files down to 90% of that
    /// limit; then, when the store is over the global limit, the least recently used of all
    /// down to 90% of it. Pinned files stay. Write access times first
    /// ([`Mirror::flush_access_times`]) so that what was just used counts as used.
    ///
    /// What is held, in all and per ecosystem, is counted from the index (one scan: seconds for
    /// a million artifacts) at the first pass and every 10 minutes after, for what other
    /// processes wrote (an import beside the node); the store keeps the count exact for this
    /// node's own commits, evictions and purges in between.
    pub async fn evict_if_over(&self) -> Result<Eviction, Error> {
        let due = self
            .inner
            .counted_at
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .is_none_or(|at| at.elapsed() >= RECOUNT_EVERY);
        if due {
            self.recount().await?;
        }
        if !self.over_a_limit() {
            return Ok(Eviction {
                held: self.held_bytes(),
                ..Eviction::default()
            });
        }
        let _pass = self.inner.evicting.lock().await;
        let config = &self.inner.config;
        let mut done = Eviction::default();
        for (ecosystem, &max) in &config.max_ecosystem_bytes {
            let held = self.held_bytes_in(ecosystem);
            if held <= max {
                continue;
            }
            let need = held - (max as f64 * LOW_WATER) as u64;
            let (files, bytes) = self.evict_lru(Some(ecosystem), need).await?;
            done.files += files;
            done.bytes += bytes;
            if bytes < need {
                tracing::warn!(
                    ecosystem = %ecosystem,
                    held = self.held_bytes_in(ecosystem),
                    limit = max,
                    "the ecosystem is over its size limit and nothing more of it may be evicted (pinned or just used)"
                );
            }
            tracing::info!(
                ecosystem = %ecosystem,
                files,
                bytes,
                limit = max,
                "evicted the ecosystem's least recently used artifacts"
            );
        }
        if let Some(max) = config.max_store_bytes {
            let held = self.held_bytes();
            if held > max {
                let need = held - (max as f64 * LOW_WATER) as u64;
                let (files, bytes) = self.evict_lru(None, need).await?;
                done.files += files;
                done.bytes += bytes;
                if bytes < need {
                    tracing::warn!(
                        held = self.held_bytes(),
                        limit = max,
                        "the store is over its size limit and nothing more may be evicted (pinned or just used)"
                    );
                }
                tracing::info!(
                    files,
                    bytes,
                    held = self.held_bytes(),
                    limit = max,
                    "evicted least recently used artifacts"
                );
            }
        }
        done.held = self.held_bytes();
        Ok(done)
    }

    /// Count what is held from the index, in all and per ecosystem (one scan); the store goes
    /// on from it.
    async fn recount(&self) -> Result<(), Error> {
        let store = self.inner.store.clone();
        blocking(move || Ok(store.held_bytes_by_ecosystem()?)).await?;
        self.show_held();
        *self
            .inner
            .counted_at
            .lock()
            .unwrap_or_else(|p| p.into_inner()) = Some(std::time::Instant::now());
        Ok(())
    }

    /// Make room for a download of `bytes`: when it would leave less free on the disk than the
    /// reserve (`--min-free`), evict least recently used artifacts (never pinned ones) until it
    /// would not. Whether there is room now; when there is not, the caller streams the download
    /// unkept.
    pub(crate) async fn make_room(&self, bytes: u64) -> bool {
        if self.has_room(bytes) {
            return true;
        }
        let _pass = self.inner.evicting.lock().await;
        // Another pass may have made room meanwhile.
        let Some(free) = self.inner.store.free_bytes() else {
            return false;
        };
        let need = bytes.saturating_add(self.reserve()).saturating_sub(free);
        if need == 0 {
            self.inner.clear_filled();
            return self.has_room(bytes);
        }
        if let Err(e) = self.flush_access_times().await {
            tracing::warn!("cannot record access times before evicting: {e}");
        }
        match self.evict_lru(None, need).await {
            Ok((files, freed)) => {
                tracing::info!(
                    files,
                    bytes = freed,
                    free,
                    needed = need,
                    "evicted least recently used artifacts to make room on the disk"
                );
                if freed > 0 {
                    self.inner.clear_filled();
                }
            }
            Err(e) => tracing::warn!("cannot evict to make room: {e}"),
        }
        self.has_room(bytes)
    }

    /// Evict least recently used, unpinned files (of `ecosystem` when given) until `need`
    /// bytes are freed or nothing more may go; drop them from the memory caches and count them.
    /// The files and bytes evicted. Every pass, for any limit or the disk's floor, goes
    /// through here.
    async fn evict_lru(&self, ecosystem: Option<&str>, need: u64) -> Result<(usize, u64), Error> {
        let pinned = self.pinned_flats().await?;
        let store = self.inner.store.clone();
        let swarm = self
            .peer_source()
            .filter(|peers| peers.shares_holdings())
            .cloned();
        let ecosystem = ecosystem.map(str::to_owned);
        let evicted = match swarm {
            None => {
                blocking(move || {
                    let keep = |flat: &FlatCid| pinned.contains(flat);
                    Ok(store.evict_in(ecosystem.as_deref(), need, &keep)?)
                })
                .await?
            }
            Some(peers) => {
                self.evict_as_swarm(&*peers, ecosystem, need, pinned)
                    .await?
            }
        };
        let bytes: u64 = evicted.iter().map(|f| f.size).sum();
        let gone: HashSet<FlatCid> = evicted.iter().map(|f| f.flat).collect();
        for by_key in self.hot().values_mut() {
            by_key.retain(|_, c| !gone.contains(&c.record.flat));
        }
        for flat in &gone {
            self.content().remove(flat);
        }
        self.show_held();
        let metrics = &self.inner.metrics;
        metrics.evicted_files.inc_by(evicted.len() as u64);
        metrics.evicted_bytes.inc_by(bytes);
        Ok((evicted.len(), bytes))
    }

    /// Evict as a node of a private swarm ([`swarm_choice`]): the least recently used files
    /// (of `ecosystem` when given; a window of [`swarm_choice::WINDOW`] times `need`), the peers asked which of them they
    /// hold, those evicted first. Counts what went as held elsewhere or as a last copy.
    async fn evict_as_swarm(
        &self,
        peers: &dyn crate::peers::PeerSource,
        ecosystem: Option<String>,
        need: u64,
        pinned: Arc<HashSet<FlatCid>>,
    ) -> Result<Vec<crate::index::HeldFile>, Error> {
        let index = self.inner.index.clone();
        let window = need.saturating_mul(swarm_choice::WINDOW);
        let candidates = blocking(move || {
            let keep = |flat: &FlatCid| pinned.contains(flat);
            Ok(index.least_recently_used_in(ecosystem.as_deref(), window, &keep)?)
        })
        .await?;
        let shared = peers
            .held_elsewhere(candidates.iter().map(|f| f.flat).collect())
            .await;
        let (chosen, _) = swarm_choice::choose(candidates, &shared, need);
        let store = self.inner.store.clone();
        let evicted = blocking(move || Ok(store.evict_files(&chosen)?)).await?;
        let held_elsewhere = evicted.iter().filter(|f| shared.contains(&f.flat)).count();
        let metrics = &self.inner.metrics;
        metrics.evicted_shared_files.inc_by(held_elsewhere as u64);
        metrics
            .evicted_last_copies
            .inc_by((evicted.len() - held_elsewhere) as u64);
        if evicted.len() > held_elsewhere {
            tracing::info!(
                files = evicted.len() - held_elsewhere,
                "evicted files no peer of the private swarm holds (nothing else could go)"
            );
        }
        Ok(evicted)
    }

    /// The artifacts pinned snapshots name; read again only when the pins change.
    async fn pinned_flats(&self) -> Result<Arc<HashSet<FlatCid>>, Error> {
        let index = self.inner.index.clone();
        let roots = blocking(move || Ok(index.pins()?)).await?;
        {
            let cached = self.inner.pinned.lock().unwrap_or_else(|p| p.into_inner());
            if cached.roots == roots {
                return Ok(cached.flats.clone());
            }
        }
        let index = self.inner.index.clone();
        let read = roots.clone();
        let flats = blocking(move || {
            let mut flats = HashSet::new();
            for root in &read {
                let snapshot = Snapshot::decode(root, |cid| {
                    index
                        .get_block(cid)
                        .map_err(|e| e.to_string())?
                        .ok_or_else(|| format!("block {cid} is not held"))
                });
                match snapshot {
                    Ok(snapshot) => {
                        flats.extend(snapshot.artifacts.iter().map(|a| a.record.flat));
                    }
                    // A pin that cannot be read keeps nothing; the operator is told.
                    Err(e) => tracing::warn!(%root, "cannot read a pinned snapshot: {e}"),
                }
            }
            Ok(Arc::new(flats))
        })
        .await?;
        let mut cached = self.inner.pinned.lock().unwrap_or_else(|p| p.into_inner());
        *cached = Pinned {
            roots,
            flats: flats.clone(),
        };
        Ok(flats)
    }
}
