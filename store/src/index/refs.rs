//! The `artifact_refs` table: what metadata documents and listings say about artifacts not
//! (yet) cached, so a download knows its digest before its first byte, and what supply-chain
//! policy decides on (version, publication time).
//!
//! A publication time can only move later: a reference seen before keeps the later of its
//! recorded and its new time, and a reference that appears in a document this node had read
//! before without it is dated no earlier than now, its first sighting. So an upstream cannot
//! backdate a version past a cooldown.

use rusqlite::{OptionalExtension, params};

use super::{Index, IndexError, cid_column, err, lock};
use crate::cid::FlatCid;

/// What a metadata document says about an artifact.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct RefRecord {
    pub flat: FlatCid,
    pub url: String,
    pub size: Option<u64>,
    /// The package version the file belongs to, when its document says.
    pub version: Option<String>,
    /// When it was published (ms since the epoch), as the document said and its first
    /// sighting allows (see the module doc).
    pub published: Option<i64>,
    /// Since when (ms) the document that listed it lists it no more: removed upstream
    /// (unpublished, replaced by a security placeholder, quarantined, deleted).
    pub removed: Option<i64>,
    /// Upstream marks it yanked, as of the document's latest reading.
    pub yanked: bool,
    /// Its package, where that is not the listing document's key (apt).
    pub package: Option<String>,
}

/// Insert or replace artifact references listed by `listed_by`, inside the caller's
/// transaction; those it listed before and lists no more are marked removed. True when some
/// reference of it is marked removed now.
pub(super) fn insert_refs(
    tx: &rusqlite::Transaction<'_>,
    ecosystem: &str,
    listed_by: &str,
    refs: &[(String, RefRecord)],
) -> Result<bool, IndexError> {
    // Whether this document listed anything before: then what it lists for the first time now
    // is first seen now.
    let seen_before: bool = tx
        .prepare_cached(
            "SELECT EXISTS (SELECT 1 FROM artifact_refs WHERE ecosystem = ?1 AND metadata_key = ?2)",
        )
        .and_then(|mut stmt| stmt.query_row(params![ecosystem, listed_by], |row| row.get(0)))
        .map_err(err("read artifact references"))?;
    write_refs(tx, ecosystem, listed_by, refs, seen_before)
}

/// Write `refs` as `listed_by` lists them; `seen_before`: the document listed something before
/// this reading (see [`insert_refs`]).
fn write_refs(
    tx: &rusqlite::Transaction<'_>,
    ecosystem: &str,
    listed_by: &str,
    refs: &[(String, RefRecord)],
    seen_before: bool,
) -> Result<bool, IndexError> {
    let now = now_ms();
    if seen_before {
        // What the document no longer lists was removed upstream; what it lists again is not.
        tx.prepare_cached(
            "UPDATE artifact_refs SET removed = ?3
             WHERE ecosystem = ?1 AND metadata_key = ?2 AND removed IS NULL",
        )
        .and_then(|mut stmt| stmt.execute(params![ecosystem, listed_by, now]))
        .map_err(err("mark removed artifact references"))?;
    }
    let mut stmt = tx
        .prepare_cached(
            "INSERT INTO artifact_refs
             (ecosystem, key, flat_cid, url, size, metadata_key, version, published, yanked,
              package)
             VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8, ?10, ?11)
             ON CONFLICT (ecosystem, key) DO UPDATE SET
                flat_cid = excluded.flat_cid, url = excluded.url, size = excluded.size,
                metadata_key = excluded.metadata_key, version = excluded.version,
                removed = NULL, yanked = excluded.yanked, package = excluded.package,
                published = CASE
                    WHEN artifact_refs.published IS NULL THEN ?9
                    WHEN ?9 IS NULL THEN artifact_refs.published
                    ELSE MAX(artifact_refs.published, ?9) END",
        )
        .map_err(err("write artifact references"))?;
    for (artifact_key, r) in refs {
        let published = match (seen_before, r.published) {
            (true, Some(claimed)) => Some(claimed.max(now)),
            (true, None) => Some(now),
            (false, claimed) => claimed,
        };
        // A new reference is dated from its sighting (?8); one recorded before keeps the later
        // of its date and the one claimed now (?9).
        stmt.execute(params![
            ecosystem,
            artifact_key,
            r.flat.to_bytes(),
            r.url,
            r.size.map(|s| s as i64),
            listed_by,
            r.version,
            published,
            r.published,
            r.yanked,
            r.package
        ])
        .map_err(err("write artifact references"))?;
    }
    if !seen_before {
        return Ok(false);
    }
    tx.prepare_cached(
        "SELECT EXISTS (SELECT 1 FROM artifact_refs
                        WHERE ecosystem = ?1 AND metadata_key = ?2 AND removed IS NOT NULL)",
    )
    .and_then(|mut stmt| stmt.query_row(params![ecosystem, listed_by], |row| row.get(0)))
    .map_err(err("read removed artifact references"))
}

/// A reference from columns `at..`: flat CID, URL, size, version, published, removed, yanked,
/// package.
pub(super) fn ref_columns(row: &rusqlite::Row<'_>, at: usize) -> rusqlite::Result<RefRecord> {
    Ok(RefRecord {
        flat: cid_column(row, at, FlatCid::from_bytes)?,
        url: row.get(at + 1)?,
        size: row.get::<_, Option<i64>>(at + 2)?.map(|s| s as u64),
        version: row.get(at + 3)?,
        published: row.get(at + 4)?,
        removed: row.get(at + 5)?,
        yanked: row.get::<_, Option<bool>>(at + 6)?.unwrap_or(false),
        package: row.get(at + 7)?,
    })
}

fn now_ms() -> i64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| i64::try_from(d.as_millis()).unwrap_or(i64::MAX))
        .unwrap_or(0)
}

impl Index {
    /// Record part of what a listing artifact (`listed_by`, apt's `Packages`) says about other
    /// artifacts, in one transaction. A listing is named by its digest, so every reading of it
    /// says the same: the parts of one reading, written in turn, add up to the whole of it, and
    /// nothing it listed is marked removed nor dated by its sighting (a document's rules, for
    /// documents whose content changes under one name).
    pub(crate) fn put_listed_refs(
        &self,
        ecosystem: &str,
        listed_by: &str,
        refs: &[(String, RefRecord)],
    ) -> Result<(), IndexError> {
        let mut conn = lock(&self.writer);
        let tx = conn.transaction().map_err(err("begin"))?;
        write_refs(&tx, ecosystem, listed_by, refs, false)?;
        tx.commit().map_err(err("commit artifact references"))
    }

    pub fn get_ref(&self, ecosystem: &str, key: &str) -> Result<Option<RefRecord>, IndexError> {
        self.read(|conn| {
            conn.prepare_cached(
                "SELECT flat_cid, url, size, version, published, removed, yanked, package FROM artifact_refs WHERE ecosystem = ?1 AND key = ?2",
            )
            .and_then(|mut stmt| {
                stmt.query_row(params![ecosystem, key], |row| ref_columns(row, 0))
                    .optional()
            })
            .map_err(err("read artifact reference"))
        })
    }

    /// The references the document (or listing) `listed_by` recorded, by key.
    pub fn refs_listed_by(
        &self,
        ecosystem: &str,
        listed_by: &str,
    ) -> Result<Vec<(String, RefRecord)>, IndexError> {
        self.read(|conn| {
            conn.prepare_cached(
                "SELECT key, flat_cid, url, size, version, published, removed, yanked, package FROM artifact_refs
                 WHERE ecosystem = ?1 AND metadata_key = ?2 ORDER BY key",
            )
            .and_then(|mut stmt| {
                stmt.query_map(params![ecosystem, listed_by], |row| {
                    Ok((row.get(0)?, ref_columns(row, 1)?))
                })
                .and_then(|rows| rows.collect())
            })
            .map_err(err("list a document's artifact references"))
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
                "SELECT key, flat_cid, url, size, version, published, removed, yanked, package FROM artifact_refs
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
                    "SELECT ecosystem, key, metadata_key, flat_cid, url, size, version, published, removed, yanked,
                            package
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
