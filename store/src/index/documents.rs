//! The `metadata` table: cached metadata documents (by their raw block CID) and cached upstream
//! "not found"s, with their freshness and validators.

use rusqlite::{Connection, OptionalExtension, params};

use super::refs::{RefRecord, insert_refs};
use super::{Index, IndexError, cid_column, err, lock};
use crate::cid::BlockCid;

/// A cached metadata document (or a cached upstream "not found").
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct MetadataRecord {
    /// The stored raw block; `None` when upstream answered `status` without a document.
    pub cid: Option<BlockCid>,
    pub status: u16,
    pub upstream_url: String,
    /// Milliseconds since the Unix epoch.
    pub fetched_at: i64,
    pub etag: Option<String>,
    pub last_modified: Option<String>,
    pub size: u64,
    /// It came from an upstream that was sent credentials: an open swarm is not shown it.
    pub private: bool,
}

/// Insert or replace a metadata row (the caller's connection or transaction).
pub(super) fn insert_metadata(
    conn: &Connection,
    ecosystem: &str,
    key: &str,
    record: &MetadataRecord,
) -> Result<(), IndexError> {
    conn.prepare_cached(
        "INSERT OR REPLACE INTO metadata
         (ecosystem, key, cid, status, upstream_url, fetched_at, etag, last_modified, size,
          private)
         VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8, ?9, ?10)",
    )
    .and_then(|mut stmt| {
        stmt.execute(params![
            ecosystem,
            key,
            record.cid.map(|c| c.to_bytes()),
            record.status,
            record.upstream_url,
            record.fetched_at,
            record.etag,
            record.last_modified,
            record.size as i64,
            record.private
        ])
    })
    .map(drop)
    .map_err(err("write metadata"))
}

/// A metadata record from columns `at..`: CID, status, upstream URL, fetched-at, ETag,
/// Last-Modified, size, private.
pub(super) fn metadata_columns(
    row: &rusqlite::Row<'_>,
    at: usize,
) -> rusqlite::Result<MetadataRecord> {
    let cid = match row.get::<_, Option<Vec<u8>>>(at)? {
        Some(_) => Some(cid_column(row, at, BlockCid::from_bytes)?),
        None => None,
    };
    Ok(MetadataRecord {
        cid,
        status: row.get(at + 1)?,
        upstream_url: row.get(at + 2)?,
        fetched_at: row.get(at + 3)?,
        etag: row.get(at + 4)?,
        last_modified: row.get(at + 5)?,
        size: row.get::<_, i64>(at + 6)? as u64,
        private: row.get(at + 7)?,
    })
}

impl Index {
    pub fn get_metadata(
        &self,
        ecosystem: &str,
        key: &str,
    ) -> Result<Option<MetadataRecord>, IndexError> {
        self.read(|conn| {
            conn.prepare_cached(
                "SELECT cid, status, upstream_url, fetched_at, etag, last_modified, size, private
                 FROM metadata WHERE ecosystem = ?1 AND key = ?2",
            )
            .and_then(|mut stmt| {
                stmt.query_row(params![ecosystem, key], |row| metadata_columns(row, 0))
                    .optional()
            })
            .map_err(err("read metadata"))
        })
    }

    /// Record a fetched metadata document and, when given, the artifacts it names, atomically.
    pub(crate) fn put_metadata(
        &self,
        ecosystem: &str,
        key: &str,
        record: &MetadataRecord,
        refs: &[(String, RefRecord)],
    ) -> Result<(), IndexError> {
        let mut conn = lock(&self.writer);
        let tx = conn.transaction().map_err(err("begin"))?;
        insert_metadata(&tx, ecosystem, key, record)?;
        let removed = insert_refs(&tx, ecosystem, key, refs)?;
        tx.commit().map_err(err("commit metadata"))?;
        self.note_removed(removed);
        Ok(())
    }

    /// Mark a cached document fresh again (upstream answered 304 or sent the same bytes).
    pub(crate) fn touch_metadata(
        &self,
        ecosystem: &str,
        key: &str,
        fetched_at: i64,
    ) -> Result<(), IndexError> {
        lock(&self.writer)
            .prepare_cached("UPDATE metadata SET fetched_at = ?3 WHERE ecosystem = ?1 AND key = ?2")
            .and_then(|mut s| s.execute(params![ecosystem, key, fetched_at]))
            .map(drop)
            .map_err(err("touch metadata"))
    }

    /// Forget cached upstream "not found"s fetched before `before` (ms since the epoch), then
    /// the oldest ones beyond the newest `keep`. Returns how many went.
    pub(crate) fn expire_negative(&self, before: i64, keep: u64) -> Result<usize, IndexError> {
        let conn = lock(&self.writer);
        let expired = conn
            .prepare_cached("DELETE FROM metadata WHERE cid IS NULL AND fetched_at < ?1")
            .and_then(|mut s| s.execute(params![before]))
            .map_err(err("expire negative entries"))?;
        let over = conn
            .prepare_cached(
                "DELETE FROM metadata WHERE cid IS NULL AND (ecosystem, key) IN (
                     SELECT ecosystem, key FROM metadata WHERE cid IS NULL
                     ORDER BY fetched_at DESC LIMIT -1 OFFSET ?1)",
            )
            .and_then(|mut s| s.execute(params![keep.min(i64::MAX as u64) as i64]))
            .map_err(err("bound negative entries"))?;
        Ok(expired + over)
    }

    /// True when the document block `cid` is held only under private keys.
    pub fn document_is_private(&self, cid: &BlockCid) -> Result<bool, IndexError> {
        self.read(|conn| {
            conn.prepare_cached(
                "SELECT EXISTS (SELECT 1 FROM metadata WHERE cid = ?1 AND private = 1)
                    AND NOT EXISTS (SELECT 1 FROM metadata WHERE cid = ?1 AND private = 0)",
            )
            .and_then(|mut stmt| stmt.query_row(params![cid.to_bytes()], |row| row.get(0)))
            .map_err(err("look up a document's privacy"))
        })
    }

    /// Every cached metadata document (not the cached "not found"s), by ecosystem and key.
    pub fn all_metadata(&self) -> Result<Vec<(String, String, MetadataRecord)>, IndexError> {
        self.read(|conn| {
            let mut stmt = conn
                .prepare(
                    "SELECT ecosystem, key, cid, status, upstream_url, fetched_at, etag,
                            last_modified, size, private
                     FROM metadata WHERE cid IS NOT NULL ORDER BY ecosystem, key",
                )
                .map_err(err("list metadata"))?;
            stmt.query_map([], |row| {
                Ok((row.get(0)?, row.get(1)?, metadata_columns(row, 2)?))
            })
            .and_then(|rows| rows.collect())
            .map_err(err("list metadata"))
        })
    }

    /// The keys of `ecosystem`'s cached documents (not the "not found"s), sorted, at most
    /// `limit`.
    pub fn metadata_keys(&self, ecosystem: &str, limit: usize) -> Result<Vec<String>, IndexError> {
        self.read(|conn| {
            let mut stmt = conn
                .prepare(
                    "SELECT key FROM metadata WHERE ecosystem = ?1 AND cid IS NOT NULL
                     ORDER BY key LIMIT ?2",
                )
                .map_err(err("list metadata keys"))?;
            stmt.query_map(
                rusqlite::params![ecosystem, i64::try_from(limit).unwrap_or(i64::MAX)],
                |row| row.get(0),
            )
            .and_then(|rows| rows.collect())
            .map_err(err("list metadata keys"))
        })
    }
}
