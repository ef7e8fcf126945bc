//! The `artifacts` table (cached artifacts by key) and the DAG rows written with them: the
//! `blocks` (inner nodes) and `leaves` (ranges of the flat file) of each artifact's UnixFS DAG.

use rusqlite::{Connection, OptionalExtension, params};

use super::held::Touched;
use super::{Index, IndexError, cid_column, corrupt, err, lock};
use crate::cid::{FlatCid, RootCid};
use crate::unixfs::Dag;

/// A cached artifact.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ArtifactRecord {
    pub flat: FlatCid,
    pub root: RootCid,
    pub size: u64,
    pub upstream_url: String,
    /// Milliseconds since the Unix epoch.
    pub fetched_at: i64,
    /// It came from an upstream that was sent credentials: an open swarm is not shown it.
    pub private: bool,
}

/// Insert or replace an artifact row (the caller's connection or transaction).
pub(super) fn insert_artifact(
    conn: &Connection,
    ecosystem: &str,
    key: &str,
    record: &ArtifactRecord,
) -> Result<(), IndexError> {
    conn.prepare_cached(
        "INSERT OR REPLACE INTO artifacts
         (ecosystem, key, flat_cid, root_cid, size, upstream_url, fetched_at, last_access,
          private)
         VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?7, ?8)",
    )
    .and_then(|mut stmt| {
        stmt.execute(params![
            ecosystem,
            key,
            record.flat.to_bytes(),
            record.root.to_bytes(),
            record.size as i64,
            record.upstream_url,
            record.fetched_at,
            record.private
        ])
    })
    .map(drop)
    .map_err(err("write artifact"))
}

/// Insert a DAG's inner nodes and leaves, inside the caller's transaction.
pub(super) fn insert_dag(
    tx: &rusqlite::Transaction<'_>,
    flat: &FlatCid,
    dag: &Dag,
) -> Result<(), IndexError> {
    let flat = flat.to_bytes();
    let mut block = tx
        .prepare_cached("INSERT OR IGNORE INTO blocks (cid, data) VALUES (?1, ?2)")
        .map_err(err("write blocks"))?;
    for (cid, data) in &dag.nodes {
        block
            .execute(params![cid.to_bytes(), data])
            .map_err(err("write blocks"))?;
    }
    let mut leaf = tx
        .prepare_cached(
            "INSERT OR IGNORE INTO leaves (cid, flat_cid, offset, len) VALUES (?1, ?2, ?3, ?4)",
        )
        .map_err(err("write leaves"))?;
    for l in &dag.leaves {
        leaf.execute(params![
            l.cid.to_bytes(),
            flat,
            l.offset as i64,
            l.len as i64
        ])
        .map_err(err("write leaves"))?;
    }
    Ok(())
}

/// An artifact from columns `at..`: flat CID, root CID, size, upstream URL, fetched-at,
/// private.
pub(super) fn artifact_columns(
    row: &rusqlite::Row<'_>,
    at: usize,
) -> rusqlite::Result<ArtifactRecord> {
    Ok(ArtifactRecord {
        flat: cid_column(row, at, FlatCid::from_bytes)?,
        root: cid_column(row, at + 1, RootCid::from_bytes)?,
        size: row.get::<_, i64>(at + 2)? as u64,
        upstream_url: row.get(at + 3)?,
        fetched_at: row.get(at + 4)?,
        private: row.get(at + 5)?,
    })
}

impl Index {
    pub fn get_artifact(
        &self,
        ecosystem: &str,
        key: &str,
    ) -> Result<Option<ArtifactRecord>, IndexError> {
        self.read(|conn| {
            conn.prepare_cached(
                "SELECT flat_cid, root_cid, size, upstream_url, fetched_at, private FROM artifacts
                 WHERE ecosystem = ?1 AND key = ?2",
            )
            .and_then(|mut stmt| {
                stmt.query_row(params![ecosystem, key], |row| artifact_columns(row, 0))
                    .optional()
            })
            .map_err(err("read artifact"))
        })
    }

    /// Record a committed artifact with its DAG's inner nodes and leaves, in one transaction.
    pub(crate) fn put_artifact(
        &self,
        ecosystem: &str,
        key: &str,
        record: &ArtifactRecord,
        dag: &Dag,
    ) -> Result<(), IndexError> {
        let mut conn = lock(&self.writer);
        let tx = conn.transaction().map_err(err("begin"))?;
        let mut touched = Touched::default();
        touched.key(&tx, ecosystem, key)?;
        touched.file(&tx, &record.flat.to_bytes())?;
        insert_artifact(&tx, ecosystem, key, record)?;
        insert_dag(&tx, &record.flat, dag)?;
        let delta = touched.delta(&tx)?;
        tx.commit().map_err(err("commit artifact"))?;
        self.held.apply(delta);
        Ok(())
    }

    /// Record many committed artifacts in one transaction (for building large test stores).
    pub(crate) fn put_artifacts(
        &self,
        rows: &[(String, String, ArtifactRecord, Dag)],
    ) -> Result<(), IndexError> {
        let mut conn = lock(&self.writer);
        let tx = conn.transaction().map_err(err("begin"))?;
        let mut deltas = Vec::with_capacity(rows.len());
        for (ecosystem, key, record, dag) in rows {
            let mut touched = Touched::default();
            touched.key(&tx, ecosystem, key)?;
            touched.file(&tx, &record.flat.to_bytes())?;
            insert_artifact(&tx, ecosystem, key, record)?;
            insert_dag(&tx, &record.flat, dag)?;
            deltas.push(touched.delta(&tx)?);
        }
        tx.commit().map_err(err("commit artifacts"))?;
        for delta in deltas {
            self.held.apply(delta);
        }
        Ok(())
    }

    /// Some artifact of `ecosystem` with these bytes, under whichever key it was cached.
    pub fn find_by_flat(
        &self,
        ecosystem: &str,
        flat: &FlatCid,
    ) -> Result<Option<(String, ArtifactRecord)>, IndexError> {
        let found = self.read(|conn| {
            conn.prepare_cached(
                "SELECT key FROM artifacts WHERE flat_cid = ?1 AND ecosystem = ?2 LIMIT 1",
            )
            .and_then(|mut stmt| {
                stmt.query_row(params![flat.to_bytes(), ecosystem], |row| {
                    row.get::<_, String>(0)
                })
                .optional()
            })
            .map_err(err("find artifact by content"))
        })?;
        match found {
            Some(key) => Ok(self.get_artifact(ecosystem, &key)?.map(|r| (key, r))),
            None => Ok(None),
        }
    }

    /// Index the bytes of an artifact already cached (its DAG is indexed) under another key.
    pub(crate) fn alias_artifact(
        &self,
        ecosystem: &str,
        key: &str,
        record: &ArtifactRecord,
    ) -> Result<(), IndexError> {
        let mut conn = lock(&self.writer);
        let tx = conn.transaction().map_err(err("begin"))?;
        let mut touched = Touched::default();
        touched.key(&tx, ecosystem, key)?;
        touched.file(&tx, &record.flat.to_bytes())?;
        insert_artifact(&tx, ecosystem, key, record)?;
        let delta = touched.delta(&tx)?;
        tx.commit().map_err(err("commit an alias"))?;
        self.held.apply(delta);
        Ok(())
    }

    /// Record last-access times, batched by the caller.
    pub(crate) fn touch_artifacts(&self, touched: &[(&str, &str, i64)]) -> Result<(), IndexError> {
        let mut conn = lock(&self.writer);
        let tx = conn.transaction().map_err(err("begin"))?;
        {
            let mut stmt = tx
                .prepare_cached(
                    "UPDATE artifacts SET last_access = MAX(last_access, ?3)
                     WHERE ecosystem = ?1 AND key = ?2",
                )
                .map_err(err("touch artifacts"))?;
            for (ecosystem, key, at) in touched {
                stmt.execute(params![ecosystem, key, at])
                    .map_err(err("touch artifacts"))?;
            }
        }
        tx.commit().map_err(err("commit access times"))
    }

    /// Every cached artifact, by ecosystem and key.
    pub fn all_artifacts(&self) -> Result<Vec<(String, String, ArtifactRecord)>, IndexError> {
        self.read(|conn| {
            let mut stmt = conn
                .prepare(
                    "SELECT ecosystem, key, flat_cid, root_cid, size, upstream_url, fetched_at, private
                     FROM artifacts ORDER BY ecosystem, key",
                )
                .map_err(err("list artifacts"))?;
            stmt.query_map([], |row| {
                Ok((row.get(0)?, row.get(1)?, artifact_columns(row, 2)?))
            })
            .and_then(|rows| rows.collect())
            .map_err(err("list artifacts"))
        })
    }

    /// The flat and root CID of each distinct file held, whatever its keys, the most recently
    /// used first, at most `limit` of them (what a node announces to its peers at start).
    pub fn held_files(&self, limit: Option<usize>) -> Result<Vec<(FlatCid, RootCid)>, IndexError> {
        let limit = limit.map_or(-1, |l| l.min(i64::MAX as usize) as i64);
        self.read(|conn| {
            let mut stmt = conn
                .prepare(
                    "SELECT flat_cid, MAX(root_cid), MAX(last_access) AS seen FROM artifacts
                     GROUP BY flat_cid ORDER BY seen DESC LIMIT ?1",
                )
                .map_err(err("list held files"))?;
            stmt.query_map([limit], |row| {
                Ok((
                    cid_column(row, 0, FlatCid::from_bytes)?,
                    cid_column(row, 1, RootCid::from_bytes)?,
                ))
            })
            .and_then(|rows| rows.collect())
            .map_err(err("list held files"))
        })
    }

    /// Forget the artifact whose flat file is `flat` (it was found damaged or missing): its rows
    /// under every key and its leaves. The references that named it stay, so the next request
    /// fetches it again.
    pub(crate) fn forget_flat(&self, flat: &FlatCid) -> Result<u64, IndexError> {
        let mut conn = lock(&self.writer);
        let tx = conn.transaction().map_err(err("begin"))?;
        let bytes = flat.to_bytes();
        let mut touched = Touched::default();
        touched.file(&tx, &bytes)?;
        let rows = tx
            .execute("DELETE FROM artifacts WHERE flat_cid = ?1", params![bytes])
            .map_err(err("forget artifact"))?;
        tx.execute("DELETE FROM leaves WHERE flat_cid = ?1", params![bytes])
            .map_err(err("forget leaves"))?;
        let delta = touched.delta(&tx)?;
        tx.commit().map_err(err("commit forgetting an artifact"))?;
        self.held.apply(delta);
        Ok(rows as u64)
    }

    /// Flat and root CIDs of the files some public key names (not only private ones): the most
    /// recently used first, at most `limit`.
    pub fn held_public_files(&self, limit: usize) -> Result<Vec<(FlatCid, RootCid)>, IndexError> {
        let limit = limit.min(i64::MAX as usize) as i64;
        self.read(|conn| {
            let mut stmt = conn
                .prepare(
                    "SELECT flat_cid, MAX(root_cid), MAX(last_access) AS seen FROM artifacts
                     GROUP BY flat_cid HAVING MIN(private) = 0 ORDER BY seen DESC LIMIT ?1",
                )
                .map_err(err("list held public files"))?;
            stmt.query_map([limit], |row| {
                Ok((
                    cid_column(row, 0, FlatCid::from_bytes)?,
                    cid_column(row, 1, RootCid::from_bytes)?,
                ))
            })
            .and_then(|rows| rows.collect())
            .map_err(err("list held public files"))
        })
    }

    /// True when the file `flat` is held only under private keys (from upstreams that were
    /// sent credentials). A file no key names is not private.
    pub fn file_is_private(&self, flat: &FlatCid) -> Result<bool, IndexError> {
        self.read(|conn| {
            conn.prepare_cached(
                "SELECT EXISTS (SELECT 1 FROM artifacts WHERE flat_cid = ?1 AND private = 1)
                    AND NOT EXISTS (SELECT 1 FROM artifacts WHERE flat_cid = ?1 AND private = 0)",
            )
            .and_then(|mut stmt| stmt.query_row(params![flat.to_bytes()], |row| row.get(0)))
            .map_err(err("look up a file's privacy"))
        })
    }

    /// Size and DAG root of a cached artifact with these bytes, in any ecosystem.
    pub fn get_flat(&self, flat: &FlatCid) -> Result<Option<(u64, RootCid)>, IndexError> {
        self.read(|conn| {
            conn.prepare_cached("SELECT size, root_cid FROM artifacts WHERE flat_cid = ?1 LIMIT 1")
                .and_then(|mut stmt| {
                    stmt.query_row(params![flat.to_bytes()], |row| {
                        Ok((row.get::<_, i64>(0)?, row.get::<_, Vec<u8>>(1)?))
                    })
                    .optional()
                })
                .map_err(err("find artifact by flat CID"))?
                .map(|(size, root)| Ok((size as u64, RootCid::from_bytes(&root).map_err(corrupt)?)))
                .transpose()
        })
    }
}
