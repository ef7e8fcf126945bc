//! What the store holds, for the operator's view: bytes held against the limits, overall and
//! per ecosystem, the disk's free space, files and documents per ecosystem, pinned snapshots,
//! and the last verification run.

use super::repair::{VERIFY_JOB, VerifyReport};
use super::{Mirror, blocking};
use crate::error::Error;

/// One ecosystem's part of the store.
#[derive(Debug, Default, serde::Serialize)]
pub struct EcosystemHeld {
    pub ecosystem: String,
    /// Bytes of the files its rows name (each file once).
    pub bytes: u64,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub limit_bytes: Option<u64>,
    pub files: u64,
    pub documents: u64,
}

/// The last `cairn verify` run.
#[derive(Debug, serde::Serialize)]
pub struct LastVerify {
    /// When it finished, in milliseconds since the Unix epoch.
    pub at_ms: i64,
    pub files: u64,
    pub bytes: u64,
    pub damaged: usize,
    pub repaired: u64,
    pub remaining: u64,
}

/// The store as `/api/v1/store` shows it.
#[derive(Debug, serde::Serialize)]
pub struct StoreReport {
    pub held_bytes: u64,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub limit_bytes: Option<u64>,
    /// Free space on the store's file system.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub free_bytes: Option<u64>,
    pub ecosystems: Vec<EcosystemHeld>,
    pub pinned_snapshots: usize,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub last_verify: Option<LastVerify>,
}

impl Mirror {
    /// What the store holds now.
    pub async fn store_report(&self) -> Result<StoreReport, Error> {
        let index = self.inner.index.clone();
        let (stats, pins, run) = blocking(move || {
            Ok((
                index.stats()?,
                index.pins()?.len(),
                index.last_run(VERIFY_JOB)?,
            ))
        })
        .await?;
        let config = &self.inner.config;
        let mut ecosystems: Vec<EcosystemHeld> = Vec::new();
        let mut entry = |family: &str| -> usize {
            match ecosystems.iter().position(|e| e.ecosystem == family) {
                Some(at) => at,
                None => {
                    ecosystems.push(EcosystemHeld {
                        ecosystem: family.to_owned(),
                        bytes: self.held_bytes_in(family),
                        limit_bytes: config.max_ecosystem_bytes.get(family).copied(),
                        ..EcosystemHeld::default()
                    });
                    ecosystems.len() - 1
                }
            }
        };
        // Counts per family: every apt archive is `apt`, as the limits name it.
        let mut counted = Vec::new();
        for s in &stats {
            let at = entry(crate::index::ecosystem_family(&s.ecosystem));
            counted.push((at, s.artifacts, s.metadata_documents));
        }
        for family in config.max_ecosystem_bytes.keys() {
            entry(family);
        }
        for (at, files, documents) in counted {
            ecosystems[at].files += files;
            ecosystems[at].documents += documents;
        }
        ecosystems.sort_by(|a, b| a.ecosystem.cmp(&b.ecosystem));
        let last_verify = run.map(|(at_ms, report)| {
            let report: VerifyReport = serde_json::from_str(&report).unwrap_or_default();
            LastVerify {
                at_ms,
                files: report.files,
                bytes: report.bytes,
                damaged: report.damaged.len(),
                repaired: report.repaired,
                remaining: report.remaining,
            }
        });
        Ok(StoreReport {
            held_bytes: self.held_bytes(),
            limit_bytes: config.max_store_bytes,
            free_bytes: self.inner.store.free_bytes(),
            ecosystems,
            pinned_snapshots: pins,
            last_verify,
        })
    }
}
