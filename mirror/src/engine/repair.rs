//! Repairing a damaged stored file (`cairn verify`, `POST /api/v1/repair/…`): the file is
//! checked again here (the caller's check may be stale: the file may have been evicted or
//! fetched again since), and when it is damaged it is dropped as a damaged file found while
//! serving is (moved aside, its rows out of the index, withdrawn from the swarm, out of the
//! memory caches); then, when asked, each key that named it is fetched again exactly as a
//! client's request would fetch it (peers, then upstream) and verified like any download.

use std::collections::HashSet;
use std::sync::atomic::Ordering;

use serde::{Deserialize, Serialize};

use super::fill::Keep;
use super::{ArtifactBody, Mirror, blocking};
use crate::bundle::check::{artifact_route, document_route};
use crate::cid::{BlockCid, FlatCid};
use crate::error::Error;
use crate::store::DamagedFile;

/// Path prefix of the repair routes: `POST /api/v1/repair/artifact/FLAT-CID` and
/// `POST /api/v1/repair/document/BLOCK-CID`, each with `?fetch=true` to fetch it again.
pub const REPAIR_PREFIX: &str = "/api/v1/repair/";

/// The name under which the last `cairn verify` run is kept in the index
/// ([`crate::index::Index::record_run`]).
pub const VERIFY_JOB: &str = "verify";

/// What a `cairn verify` run found and did, as kept in the index and printed with `--json`.
#[derive(Clone, Debug, Default, Serialize, Deserialize)]
pub struct VerifyReport {
    /// Artifact files checked, and their bytes.
    pub files: u64,
    pub bytes: u64,
    /// Metadata blocks checked.
    pub documents: u64,
    pub seconds: f64,
    /// The damaged files, each with what was done.
    pub damaged: Vec<RepairReport>,
    /// Damaged files held again (`--repair`).
    pub repaired: u64,
    /// Damaged files not held again.
    pub remaining: u64,
}

/// What a repair of one stored file found and did.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct RepairReport {
    /// The file's CID (a flat CID for an artifact, a block CID for a document).
    pub cid: String,
    /// Why the file is damaged; `None` when it is sound, or no longer held.
    pub damage: Option<String>,
    /// Each key that named the damaged file, and whether it was fetched again.
    pub keys: Vec<RepairedKey>,
}

/// One key of a damaged file.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct RepairedKey {
    pub ecosystem: String,
    pub key: String,
    /// True once fetched again, verified and held.
    pub repaired: bool,
    /// Why it could not be fetched again (not asked to: `None` and not repaired).
    pub error: Option<String>,
}

impl RepairReport {
    /// True when the file was damaged and every key of it is held again.
    pub fn repaired(&self) -> bool {
        self.damage.is_some() && !self.keys.is_empty() && self.keys.iter().all(|k| k.repaired)
    }
}

impl Mirror {
    /// Check the artifact file `flat` and, when it is damaged, drop it; with `fetch`, fetch
    /// each key that named it again.
    pub async fn repair_artifact(&self, flat: FlatCid, fetch: bool) -> Result<RepairReport, Error> {
        let store = self.inner.store.clone();
        let found = blocking(move || Ok(store.forget_if_damaged(&flat)?)).await?;
        let mut report = RepairReport {
            cid: flat.to_string(),
            ..RepairReport::default()
        };
        let Some(DamagedFile { why, keys, .. }) = found else {
            return Ok(report);
        };
        tracing::error!(flat = %flat, "stored artifact is damaged ({why}): dropped, to be fetched again");
        self.forget_damaged_file(&flat);
        for (ecosystem, _) in &keys {
            self.inner.metrics.cache(ecosystem, "artifact", "damaged");
        }
        self.inner.metrics.damaged_files.inc();
        report.damage = Some(why);
        for (ecosystem, key) in keys {
            let error = if fetch {
                self.fetch_artifact_again(&ecosystem, &key, &flat)
                    .await
                    .err()
            } else {
                None
            };
            report.keys.push(RepairedKey {
                repaired: fetch && error.is_none(),
                ecosystem,
                key,
                error,
            });
        }
        self.count_repaired(&report);
        Ok(report)
    }

    /// Check the metadata block `cid` and, when it is damaged, drop it and the rows naming it;
    /// with `fetch`, fetch each of those documents again.
    pub async fn repair_document(&self, cid: BlockCid, fetch: bool) -> Result<RepairReport, Error> {
        let store = self.inner.store.clone();
        let found = blocking(move || Ok(store.forget_document_if_damaged(&cid)?)).await?;
        let mut report = RepairReport {
            cid: cid.to_string(),
            ..RepairReport::default()
        };
        let Some(DamagedFile { why, keys, .. }) = found else {
            return Ok(report);
        };
        tracing::error!(block = %cid, "stored metadata document is damaged ({why}): dropped, to be fetched again");
        self.forget_damaged_document(&cid, &keys);
        self.inner.metrics.damaged_files.inc();
        report.damage = Some(why);
        for (ecosystem, key) in keys {
            let error = if fetch {
                self.fetch_document_again(&ecosystem, &key).await.err()
            } else {
                None
            };
            report.keys.push(RepairedKey {
                repaired: fetch && error.is_none(),
                ecosystem,
                key,
                error,
            });
        }
        self.count_repaired(&report);
        Ok(report)
    }

    fn count_repaired(&self, report: &RepairReport) {
        if report.repaired() {
            self.inner.metrics.repaired_files.inc();
        }
    }

    /// Drop a damaged artifact file from the memory caches and the held count.
    fn forget_damaged_file(&self, flat: &FlatCid) {
        for by_key in self.hot().values_mut() {
            by_key.retain(|_, c| c.record.flat != *flat);
        }
        self.content().remove(flat);
        self.show_held();
    }

    /// Drop a damaged document's hot rows and rendered forms.
    fn forget_damaged_document(&self, cid: &BlockCid, keys: &[(String, String)]) {
        let mut hot = self.hot_metadata();
        // Under the lock the hot rows are written with, as a purge does: a lookup that read
        // the index before does not remember what it read.
        self.inner.purges.fetch_add(1, Ordering::SeqCst);
        for (ecosystem, key) in keys {
            if let Some(by_key) = hot.get_mut(ecosystem.as_str()) {
                by_key.remove(key);
            }
        }
        drop(hot);
        let blocks: HashSet<BlockCid> = [*cid].into();
        self.inner
            .rendered
            .retain(|key, _| !blocks.contains(&key.cid));
    }

    /// Fetch the artifact `key` again, as a request for it would, and wait until it is held.
    async fn fetch_artifact_again(
        &self,
        ecosystem: &str,
        key: &str,
        flat: &FlatCid,
    ) -> Result<(), String> {
        let registered = self
            .ecosystem(ecosystem)
            .ok_or_else(|| format!("this node serves no ecosystem {ecosystem:?}"))?;
        let route =
            artifact_route(registered.ecosystem.as_ref(), key, flat).map_err(|e| e.to_string())?;
        let body = self
            .artifact(registered, &route, Keep::IfRoom)
            .await
            .map_err(|e| e.to_string())?;
        match body {
            ArtifactBody::Cached(_) => Ok(()),
            ArtifactBody::Downloading(download) => download
                .committed()
                .await
                .map(drop)
                .map_err(|(status, message)| format!("{status}: {message}")),
            ArtifactBody::Unkept(_) => {
                Err("the store has no room for it: it was not kept".to_owned())
            }
        }
    }

    /// Fetch the document `key` again, as a request for it would.
    async fn fetch_document_again(&self, ecosystem: &str, key: &str) -> Result<(), String> {
        let registered = self
            .ecosystem(ecosystem)
            .ok_or_else(|| format!("this node serves no ecosystem {ecosystem:?}"))?;
        let route =
            document_route(registered.ecosystem.as_ref(), key).map_err(|e| e.to_string())?;
        let hit = self
            .metadata(registered, &route)
            .await
            .map_err(|e| e.to_string())?;
        match hit.record.cid {
            Some(_) => Ok(()),
            None => Err(format!("upstream answered {} for it", hit.record.status)),
        }
    }
}

impl Mirror {
    /// Read what `/metrics` shows of the store's upkeep from the index: the pinned snapshots
    /// and the last `cairn verify` run (which another process records).
    pub async fn refresh_upkeep_gauges(&self) -> Result<(), Error> {
        let index = self.inner.index.clone();
        let (pins, run) =
            blocking(move || Ok((index.pins()?.len(), index.last_run(VERIFY_JOB)?))).await?;
        let metrics = &self.inner.metrics;
        metrics.pinned_snapshots.set(pins as i64);
        if let Some((at, report)) = run {
            let report: VerifyReport = serde_json::from_str(&report).unwrap_or_default();
            metrics.verify_last_run_seconds.set(at / 1000);
            metrics.verify_last_damaged.set(report.damaged.len() as i64);
            metrics.verify_last_remaining.set(report.remaining as i64);
        }
        Ok(())
    }
}
