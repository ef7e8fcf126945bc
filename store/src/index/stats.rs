//! Counts for `cairn status`, and upkeep of the whole index: stripping credentials from stored
//! URLs, checkpointing the WAL.

use rusqlite::params;

use super::{Index, IndexError, err, lock};

/// Counts for `cairn status`.
#[derive(Clone, Debug, Default, PartialEq, Eq, serde::Serialize)]
pub struct EcosystemStats {
    pub ecosystem: String,
    pub artifacts: u64,
    pub artifact_bytes: u64,
    pub metadata_documents: u64,
}

impl Index {
    /// Per-ecosystem counts.
    pub fn stats(&self) -> Result<Vec<EcosystemStats>, IndexError> {
        self.read(|conn| {
            let mut out: Vec<EcosystemStats> = Vec::new();
            let mut stmt = conn
                .prepare(
                    "SELECT ecosystem, COUNT(*), COALESCE(SUM(size), 0) FROM artifacts
                     GROUP BY ecosystem ORDER BY ecosystem",
                )
                .map_err(err("count artifacts"))?;
            let rows = stmt
                .query_map([], |r| {
                    Ok((
                        r.get::<_, String>(0)?,
                        r.get::<_, i64>(1)?,
                        r.get::<_, i64>(2)?,
                    ))
                })
                .map_err(err("count artifacts"))?;
            for row in rows {
                let (ecosystem, n, bytes) = row.map_err(err("count artifacts"))?;
                out.push(EcosystemStats {
                    ecosystem,
                    artifacts: n as u64,
                    artifact_bytes: bytes as u64,
                    metadata_documents: 0,
                });
            }
            let mut stmt = conn
                .prepare(
                    "SELECT ecosystem, COUNT(*) FROM metadata WHERE cid IS NOT NULL
                     GROUP BY ecosystem ORDER BY ecosystem",
                )
                .map_err(err("count metadata"))?;
            let rows = stmt
                .query_map([], |r| Ok((r.get::<_, String>(0)?, r.get::<_, i64>(1)?)))
                .map_err(err("count metadata"))?;
            for row in rows {
                let (ecosystem, n) = row.map_err(err("count metadata"))?;
                match out.iter_mut().find(|s| s.ecosystem == ecosystem) {
                    Some(s) => s.metadata_documents = n as u64,
                    None => out.push(EcosystemStats {
                        ecosystem,
                        metadata_documents: n as u64,
                        ..EcosystemStats::default()
                    }),
                }
            }
            out.sort_by(|a, b| a.ecosystem.cmp(&b.ecosystem));
            Ok(out)
        })
    }

    /// Remove any user name and password from the URLs the index holds (rows written before
    /// credentials were kept out of URLs), so they are never exported or sent to peers.
    /// `strip` is the caller's rule for taking them out of one URL. Returns how many rows
    /// changed.
    pub(crate) fn strip_credentials(
        &self,
        strip: impl Fn(&str) -> std::borrow::Cow<'_, str>,
    ) -> Result<usize, IndexError> {
        let mut conn = lock(&self.writer);
        let tx = conn.transaction().map_err(err("strip credentials"))?;
        let mut changed = 0;
        for (table, column) in [
            ("metadata", "upstream_url"),
            ("artifacts", "upstream_url"),
            ("artifact_refs", "url"),
        ] {
            let rows: Vec<(String, String, String)> = tx
                .prepare(&format!(
                    "SELECT ecosystem, key, {column} FROM {table} WHERE {column} LIKE '%@%'"
                ))
                .and_then(|mut s| {
                    s.query_map([], |r| Ok((r.get(0)?, r.get(1)?, r.get(2)?)))?
                        .collect()
                })
                .map_err(err("strip credentials"))?;
            for (ecosystem, key, url) in rows {
                let stripped = strip(&url);
                if stripped != url {
                    tx.execute(
                        &format!(
                            "UPDATE {table} SET {column} = ?3 WHERE ecosystem = ?1 AND key = ?2"
                        ),
                        params![ecosystem, key, stripped.as_ref()],
                    )
                    .map_err(err("strip credentials"))?;
                    changed += 1;
                }
            }
        }
        tx.commit().map_err(err("strip credentials"))?;
        Ok(changed)
    }

    pub(crate) fn checkpoint(&self) -> Result<(), IndexError> {
        lock(&self.writer)
            .execute_batch("PRAGMA wal_checkpoint(TRUNCATE);")
            .map_err(err("checkpoint"))
    }
}
