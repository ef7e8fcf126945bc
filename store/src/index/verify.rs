//! What `verify` reads and writes of the index: the artifact files held, a page at a time in
//! flat CID order (so that a scan of a million files neither holds them all in memory nor
//! misses one that is committed meanwhile below its cursor), the keys naming a file, dropping
//! the rows of a damaged metadata block, and the record of the last run of an upkeep job.

use rusqlite::{OptionalExtension, params};

use super::{Index, IndexError, cid_column, err, lock};
use crate::cid::{BlockCid, FlatCid, RootCid};

/// One artifact file as `verify` checks it: the CIDs and size its rows give it.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct HeldArtifact {
    pub flat: FlatCid,
    pub root: RootCid,
    pub size: u64,
}

impl Index {
    /// At most `limit` artifact files, each once, in flat CID order after `after`.
    pub fn held_artifacts_after(
        &self,
        after: Option<&FlatCid>,
        limit: usize,
    ) -> Result<Vec<HeldArtifact>, IndexError> {
        const OP: &str = "list held artifact files";
        let after = after.map(FlatCid::to_bytes).unwrap_or_default();
        let limit = limit.min(i64::MAX as usize) as i64;
        self.read(|conn| {
            let mut stmt = conn
                .prepare_cached(
                    "SELECT flat_cid, MAX(root_cid), MAX(size) FROM artifacts
                     WHERE flat_cid > ?1 GROUP BY flat_cid ORDER BY flat_cid LIMIT ?2",
                )
                .map_err(err(OP))?;
            stmt.query_map(params![after, limit], |row| {
                Ok(HeldArtifact {
                    flat: cid_column(row, 0, FlatCid::from_bytes)?,
                    root: cid_column(row, 1, RootCid::from_bytes)?,
                    size: row.get::<_, i64>(2)?.max(0) as u64,
                })
            })
            .and_then(|rows| rows.collect())
            .map_err(err(OP))
        })
    }

    /// Files held and their bytes, each file counted once.
    pub fn held_artifact_count(&self) -> Result<(u64, u64), IndexError> {
        self.read(|conn| {
            conn.query_row(
                "SELECT COUNT(*), COALESCE(SUM(size), 0) FROM
                   (SELECT MAX(size) AS size FROM artifacts GROUP BY flat_cid)",
                [],
                |row| Ok((row.get::<_, i64>(0)?, row.get::<_, i64>(1)?)),
            )
            .map(|(n, bytes)| (n.max(0) as u64, bytes.max(0) as u64))
            .map_err(err("count the held files"))
        })
    }

    /// The `(ecosystem, key)` of every artifact row naming the file `flat`.
    pub fn keys_of(&self, flat: &FlatCid) -> Result<Vec<(String, String)>, IndexError> {
        self.read(|conn| {
            let mut stmt = conn
                .prepare_cached(
                    "SELECT ecosystem, key FROM artifacts WHERE flat_cid = ?1 ORDER BY ecosystem, key",
                )
                .map_err(err("list an artifact's keys"))?;
            stmt.query_map(params![flat.to_bytes()], |row| Ok((row.get(0)?, row.get(1)?)))
                .and_then(|rows| rows.collect())
                .map_err(err("list an artifact's keys"))
        })
    }

    /// Delete the metadata rows naming the block `cid` (found damaged); the `(ecosystem, key)`
    /// of each, so that they can be fetched again.
    pub(crate) fn forget_document_block(
        &self,
        cid: &BlockCid,
    ) -> Result<Vec<(String, String)>, IndexError> {
        let mut conn = lock(&self.writer);
        let tx = conn.transaction().map_err(err("begin"))?;
        let keys = {
            let mut stmt = tx
                .prepare("DELETE FROM metadata WHERE cid = ?1 RETURNING ecosystem, key")
                .map_err(err("forget a damaged document"))?;
            stmt.query_map(params![cid.to_bytes()], |row| {
                Ok((row.get(0)?, row.get(1)?))
            })
            .and_then(|rows| rows.collect::<Result<Vec<_>, _>>())
            .map_err(err("forget a damaged document"))?
        };
        tx.commit().map_err(err("commit forgetting a document"))?;
        Ok(keys)
    }

    /// Record the last run of an upkeep job (`verify`): when it ended (ms since the epoch) and
    /// its report, as JSON.
    pub fn record_run(&self, job: &str, at: i64, report: &str) -> Result<(), IndexError> {
        lock(&self.writer)
            .execute(
                "INSERT INTO upkeep_runs (job, finished_at, report) VALUES (?1, ?2, ?3)
                 ON CONFLICT (job) DO UPDATE SET finished_at = ?2, report = ?3",
                params![job, at, report],
            )
            .map(drop)
            .map_err(err("record an upkeep run"))
    }

    /// The last run of an upkeep job: when it ended and its report.
    pub fn last_run(&self, job: &str) -> Result<Option<(i64, String)>, IndexError> {
        self.read(|conn| {
            conn.prepare_cached("SELECT finished_at, report FROM upkeep_runs WHERE job = ?1")
                .and_then(|mut stmt| {
                    stmt.query_row(params![job], |row| Ok((row.get(0)?, row.get(1)?)))
                        .optional()
                })
                .map_err(err("read an upkeep run"))
        })
    }
}
