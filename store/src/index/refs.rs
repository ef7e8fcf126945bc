//! The `artifact_refs` table: what metadata documents and listings say about artifacts not
//! (yet) cached, so a download knows its digest before its first byte.

use rusqlite::{OptionalExtension, params};

use super::{Index, IndexError, cid_column, err, lock};
use crate::cid::FlatCid;

/// What a metadata document says about an artifact.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct RefRecord {
    pub flat: FlatCid,
    pub url: String,
    pub size: Option<u64>,
}

/// Insert or replace artifact references listed by `listed_by`, inside the caller's transaction.
pub(super) fn insert_refs(
    tx: &rusqlite::Transaction<'_>,
    ecosystem: &str,
    listed_by: &str,
    refs: &[(String, RefRecord)],
) -> Result<(), IndexError> {
    let mut stmt = tx
        .prepare_cached(
            "INSERT OR REPLACE INTO artifact_refs
             (ecosystem, key, flat_cid, url, size, metadata_key)
             VALUES (?1, ?2, ?3, ?4, ?5, ?6)",
        )
        .map_err(err("write artifact references"))?;
    for (artifact_key, r) in refs {
        stmt.execute(params![
            ecosystem,
            artifact_key,
            r.flat.to_bytes(),
            r.url,
            r.size.map(|s| s as i64),
            listed_by
        ])
        .map_err(err("write artifact references"))?;
    }
    Ok(())
}

/// A reference from columns `at..`: flat CID, URL, size.
pub(super) fn ref_columns(row: &rusqlite::Row<'_>, at: usize) -> rusqlite::Result<RefRecord> {
    Ok(RefRecord {
        flat: cid_column(row, at, FlatCid::from_bytes)?,
        url: row.get(at + 1)?,
        size: row.get::<_, Option<i64>>(at + 2)?.map(|s| s as u64),
    })
}

impl Index {
    /// Record what a listing artifact (`listed_by`, apt's `Packages`) says about other
    /// artifacts, in one transaction.
    pub(crate) fn put_refs(
        &self,
        ecosystem: &str,
        listed_by: &str,
        refs: &[(String, RefRecord)],
    ) -> Result<(), IndexError> {
        let mut conn = lock(&self.writer);
        let tx = conn.transaction().map_err(err("begin"))?;
        insert_refs(&tx, ecosystem, listed_by, refs)?;
        tx.commit().map_err(err("commit artifact references"))
    }

    pub fn get_ref(&self, ecosystem: &str, key: &str) -> Result<Option<RefRecord>, IndexError> {
        self.read(|conn| {
            conn.prepare_cached(
                "SELECT flat_cid, url, size FROM artifact_refs WHERE ecosystem = ?1 AND key = ?2",
            )
            .and_then(|mut stmt| {
                stmt.query_row(params![ecosystem, key], |row| ref_columns(row, 0))
                    .optional()
            })
            .map_err(err("read artifact reference"))
        })
    }

    /// The references whose key starts with `prefix` (one PyPI project's files, `PROJECT/`),
    /// by key, at most `limit` of them.
    pub fn refs_with_prefix(
        &self,
        ecosystem: &str,
        prefix: &str,
        limit: usize,
    ) -> Result<Vec<(String, RefRecord)>, IndexError> {
        // Keys in [prefix, prefix + U+10FFFF): an indexed range of the primary key.
        let end = format!("{prefix}\u{10FFFF}");
        self.read(|conn| {
            conn.prepare_cached(
                "SELECT key, flat_cid, url, size FROM artifact_refs
                 WHERE ecosystem = ?1 AND key >= ?2 AND key < ?3 ORDER BY key LIMIT ?4",
            )
            .and_then(|mut stmt| {
                stmt.query_map(
                    params![
                        ecosystem,
                        prefix,
                        end,
                        i64::try_from(limit).unwrap_or(i64::MAX)
                    ],
                    |row| Ok((row.get(0)?, ref_columns(row, 1)?)),
                )
                .and_then(|rows| rows.collect())
            })
            .map_err(err("list artifact references"))
        })
    }

    /// Every artifact reference, by ecosystem and key, with the document or listing naming it.
    #[allow(clippy::type_complexity)]
    pub fn all_refs(&self) -> Result<Vec<(String, String, String, RefRecord)>, IndexError> {
        self.read(|conn| {
            let mut stmt = conn
                .prepare(
                    "SELECT ecosystem, key, metadata_key, flat_cid, url, size
                     FROM artifact_refs ORDER BY ecosystem, key",
                )
                .map_err(err("list artifact references"))?;
            stmt.query_map([], |row| {
                Ok((row.get(0)?, row.get(1)?, row.get(2)?, ref_columns(row, 3)?))
            })
            .and_then(|rows| rows.collect())
            .map_err(err("list artifact references"))
        })
    }
}
