//! The SQLite index (WAL mode): what is cached, under which CIDs, and how fresh it is.
//!
//! Tables (all keyed by `(ecosystem, key)` where a key is the adapter's own name for a thing):
//! - `artifacts`: artifact key → flat CID, root CID, size, upstream URL, fetched and last-access
//!   times. A row exists only once the flat file is in place (see `store.rs`).
//! - `artifact_refs`: what metadata documents say about artifacts not (yet) cached: key →
//!   expected flat CID (the registry digest), upstream URL, size. Written with the document, so a
//!   download knows its digest before the first byte and without re-parsing metadata.
//! - `metadata`: document key → raw block CID (none for a cached 404), status, fetched-at,
//!   upstream validators, size. A cached 404 ("negative entry") lives for the negative TTL: it
//!   is refetched after that, and deleted by the periodic [`Index::expire_negative`] sweep,
//!   which also keeps only the newest ones beyond a fixed count.
//! - `blocks`: encoded dag-pb inner nodes of artifact DAGs, by CID.
//! - `leaves`: raw leaf CID → (flat CID, offset, length): leaves are ranges of flat files.
//! - `pins`: snapshot root CIDs to keep (`cairn pin`); their nodes are in `blocks`.
//!
//! All methods block: call them from a blocking thread. One writer connection (SQLite allows one
//! writer at a time anyway) and a small pool of readers, so reads never wait behind a write.

use std::path::Path;
use std::sync::Mutex;

use rusqlite::{Connection, OptionalExtension, params};

use crate::cid::{BlockCid, FlatCid, RootCid};
use crate::error::IndexError;
use crate::unixfs::Dag;

const SCHEMA: &str = r#"
CREATE TABLE IF NOT EXISTS artifacts (
    ecosystem    TEXT NOT NULL,
    key          TEXT NOT NULL,
    flat_cid     BLOB NOT NULL,
    root_cid     BLOB NOT NULL,
    size         INTEGER NOT NULL,
    upstream_url TEXT NOT NULL,
    fetched_at   INTEGER NOT NULL,
    last_access  INTEGER NOT NULL,
    PRIMARY KEY (ecosystem, key)
) WITHOUT ROWID;
CREATE INDEX IF NOT EXISTS artifacts_by_flat ON artifacts (flat_cid);
CREATE TABLE IF NOT EXISTS artifact_refs (
    ecosystem    TEXT NOT NULL,
    key          TEXT NOT NULL,
    flat_cid     BLOB NOT NULL,
    url          TEXT NOT NULL,
    size         INTEGER,
    metadata_key TEXT NOT NULL,
    PRIMARY KEY (ecosystem, key)
) WITHOUT ROWID;
CREATE TABLE IF NOT EXISTS metadata (
    ecosystem     TEXT NOT NULL,
    key           TEXT NOT NULL,
    cid           BLOB,
    status        INTEGER NOT NULL,
    upstream_url  TEXT NOT NULL,
    fetched_at    INTEGER NOT NULL,
    etag          TEXT,
    last_modified TEXT,
    size          INTEGER NOT NULL,
    PRIMARY KEY (ecosystem, key)
) WITHOUT ROWID;
CREATE TABLE IF NOT EXISTS blocks (
    cid  BLOB PRIMARY KEY,
    data BLOB NOT NULL
) WITHOUT ROWID;
CREATE TABLE IF NOT EXISTS pins (
    root      BLOB PRIMARY KEY,
    pinned_at INTEGER NOT NULL
) WITHOUT ROWID;
CREATE TABLE IF NOT EXISTS leaves (
    cid      BLOB PRIMARY KEY,
    flat_cid BLOB NOT NULL,
    offset   INTEGER NOT NULL,
    len      INTEGER NOT NULL
) WITHOUT ROWID;
"#;

const READERS: usize = 4;

/// A cached artifact.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ArtifactRecord {
    pub flat: FlatCid,
    pub root: RootCid,
    pub size: u64,
    pub upstream_url: String,
    /// Milliseconds since the Unix epoch.
    pub fetched_at: i64,
}

/// What a metadata document says about an artifact.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct RefRecord {
    pub flat: FlatCid,
    pub url: String,
    pub size: Option<u64>,
}

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
}

/// A metadata document a bundle brought, with the references its adapter read from it.
#[derive(Clone, Debug)]
pub struct ImportedDocument {
    pub ecosystem: String,
    pub key: String,
    pub record: MetadataRecord,
    pub refs: Vec<(String, RefRecord)>,
}

/// Counts for `cairn status`.
#[derive(Clone, Debug, Default, PartialEq, Eq, serde::Serialize)]
pub struct EcosystemStats {
    pub ecosystem: String,
    pub artifacts: u64,
    pub artifact_bytes: u64,
    pub metadata_documents: u64,
}

/// The index. Cheap to share behind an `Arc`.
pub struct Index {
    writer: Mutex<Connection>,
    readers: Mutex<Vec<Connection>>,
    path: std::path::PathBuf,
}

fn err(op: &'static str) -> impl FnOnce(rusqlite::Error) -> IndexError {
    move |source| IndexError { op, source }
}

fn open_connection(path: &Path) -> Result<Connection, IndexError> {
    let conn = Connection::open(path).map_err(err("open"))?;
    conn.busy_timeout(std::time::Duration::from_secs(10))
        .map_err(err("set busy timeout"))?;
    conn.execute_batch(
        "PRAGMA journal_mode=WAL; PRAGMA synchronous=NORMAL; PRAGMA foreign_keys=ON; PRAGMA cache_size=-2048;",
    )
    .map_err(err("configure"))?;
    Ok(conn)
}

/// Insert or replace an artifact row (the caller's connection or transaction).
fn insert_artifact(
    conn: &Connection,
    ecosystem: &str,
    key: &str,
    record: &ArtifactRecord,
) -> Result<(), IndexError> {
    conn.prepare_cached(
        "INSERT OR REPLACE INTO artifacts
         (ecosystem, key, flat_cid, root_cid, size, upstream_url, fetched_at, last_access)
         VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?7)",
    )
    .and_then(|mut stmt| {
        stmt.execute(params![
            ecosystem,
            key,
            record.flat.to_bytes(),
            record.root.to_bytes(),
            record.size as i64,
            record.upstream_url,
            record.fetched_at
        ])
    })
    .map(drop)
    .map_err(err("write artifact"))
}

/// Insert or replace a metadata row (the caller's connection or transaction).
fn insert_metadata(
    conn: &Connection,
    ecosystem: &str,
    key: &str,
    record: &MetadataRecord,
) -> Result<(), IndexError> {
    conn.prepare_cached(
        "INSERT OR REPLACE INTO metadata
         (ecosystem, key, cid, status, upstream_url, fetched_at, etag, last_modified, size)
         VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8, ?9)",
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
            record.size as i64
        ])
    })
    .map(drop)
    .map_err(err("write metadata"))
}

/// Insert a DAG's inner nodes and leaves, inside the caller's transaction.
fn insert_dag(tx: &rusqlite::Transaction<'_>, flat: &FlatCid, dag: &Dag) -> Result<(), IndexError> {
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

/// Insert or replace artifact references listed by `listed_by`, inside the caller's transaction.
fn insert_refs(
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

fn lock<T>(m: &Mutex<T>) -> std::sync::MutexGuard<'_, T> {
    // A panic while holding the lock leaves a connection that is still usable: SQLite rolls
    // back any open transaction when the statement or transaction object is dropped.
    m.lock().unwrap_or_else(|poisoned| poisoned.into_inner())
}

impl Index {
    /// Open (creating) the index at `path`.
    pub fn open(path: &Path) -> Result<Self, IndexError> {
        let writer = open_connection(path)?;
        writer.execute_batch(SCHEMA).map_err(err("create schema"))?;
        Ok(Index {
            writer: Mutex::new(writer),
            readers: Mutex::new(Vec::new()),
            path: path.to_path_buf(),
        })
    }

    /// Remove any user name and password from the URLs the index holds (rows written before
    /// credentials were kept out of URLs), so they are never exported or sent to peers.
    /// Returns how many rows changed.
    pub fn strip_credentials(&self) -> Result<usize, IndexError> {
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
                let stripped = crate::upstream::strip_userinfo(&url);
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

    fn read<T>(
        &self,
        f: impl FnOnce(&Connection) -> Result<T, IndexError>,
    ) -> Result<T, IndexError> {
        let conn = lock(&self.readers).pop();
        let conn = match conn {
            Some(c) => c,
            None => open_connection(&self.path)?,
        };
        let result = f(&conn);
        let mut pool = lock(&self.readers);
        if pool.len() < READERS {
            pool.push(conn);
        }
        result
    }

    pub fn get_artifact(
        &self,
        ecosystem: &str,
        key: &str,
    ) -> Result<Option<ArtifactRecord>, IndexError> {
        self.read(|conn| {
            conn.prepare_cached(
                "SELECT flat_cid, root_cid, size, upstream_url, fetched_at FROM artifacts
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
    pub fn put_artifact(
        &self,
        ecosystem: &str,
        key: &str,
        record: &ArtifactRecord,
        dag: &Dag,
    ) -> Result<(), IndexError> {
        let mut conn = lock(&self.writer);
        let tx = conn.transaction().map_err(err("begin"))?;
        insert_artifact(&tx, ecosystem, key, record)?;
        insert_dag(&tx, &record.flat, dag)?;
        tx.commit().map_err(err("commit artifact"))
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
    pub fn alias_artifact(
        &self,
        ecosystem: &str,
        key: &str,
        record: &ArtifactRecord,
    ) -> Result<(), IndexError> {
        insert_artifact(&lock(&self.writer), ecosystem, key, record)
    }

    /// Record what a listing artifact (`listed_by`, apt's `Packages`) says about other
    /// artifacts, in one transaction.
    pub fn put_refs(
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

    pub fn get_metadata(
        &self,
        ecosystem: &str,
        key: &str,
    ) -> Result<Option<MetadataRecord>, IndexError> {
        self.read(|conn| {
            conn.prepare_cached(
                "SELECT cid, status, upstream_url, fetched_at, etag, last_modified, size
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
    pub fn put_metadata(
        &self,
        ecosystem: &str,
        key: &str,
        record: &MetadataRecord,
        refs: &[(String, RefRecord)],
    ) -> Result<(), IndexError> {
        let mut conn = lock(&self.writer);
        let tx = conn.transaction().map_err(err("begin"))?;
        insert_metadata(&tx, ecosystem, key, record)?;
        insert_refs(&tx, ecosystem, key, refs)?;
        tx.commit().map_err(err("commit metadata"))
    }

    /// Mark a cached document fresh again (upstream answered 304 or sent the same bytes).
    pub fn touch_metadata(
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
    pub fn expire_negative(&self, before: i64, keep: u64) -> Result<usize, IndexError> {
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

    /// Record last-access times, batched by the caller.
    pub fn touch_artifacts(&self, touched: &[(&str, &str, i64)]) -> Result<(), IndexError> {
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

    /// Every cached metadata document (not the cached "not found"s), by ecosystem and key.
    pub fn all_metadata(&self) -> Result<Vec<(String, String, MetadataRecord)>, IndexError> {
        self.read(|conn| {
            let mut stmt = conn
                .prepare(
                    "SELECT ecosystem, key, cid, status, upstream_url, fetched_at, etag,
                            last_modified, size
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

    /// Every cached artifact, by ecosystem and key.
    pub fn all_artifacts(&self) -> Result<Vec<(String, String, ArtifactRecord)>, IndexError> {
        self.read(|conn| {
            let mut stmt = conn
                .prepare(
                    "SELECT ecosystem, key, flat_cid, root_cid, size, upstream_url, fetched_at
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

    /// The flat and root CID of every distinct file held, whatever its keys (what a node
    /// announces to its peers at start).
    pub fn held_files(&self) -> Result<Vec<(FlatCid, RootCid)>, IndexError> {
        self.read(|conn| {
            let mut stmt = conn
                .prepare("SELECT DISTINCT flat_cid, root_cid FROM artifacts")
                .map_err(err("list held files"))?;
            stmt.query_map([], |row| {
                Ok((
                    cid_column(row, 0, FlatCid::from_bytes)?,
                    cid_column(row, 1, RootCid::from_bytes)?,
                ))
            })
            .and_then(|rows| rows.collect())
            .map_err(err("list held files"))
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

    /// Store blocks (snapshot nodes) in the `blocks` table.
    pub fn put_blocks(&self, blocks: &[(cid::Cid, Vec<u8>)]) -> Result<(), IndexError> {
        let mut conn = lock(&self.writer);
        let tx = conn.transaction().map_err(err("begin"))?;
        {
            let mut stmt = tx
                .prepare_cached("INSERT OR IGNORE INTO blocks (cid, data) VALUES (?1, ?2)")
                .map_err(err("write blocks"))?;
            for (cid, data) in blocks {
                stmt.execute(params![cid.to_bytes(), data])
                    .map_err(err("write blocks"))?;
            }
        }
        tx.commit().map_err(err("commit blocks"))
    }

    /// Record a pinned snapshot (kept by `gc`).
    pub fn pin(&self, root: &cid::Cid, at: i64) -> Result<(), IndexError> {
        lock(&self.writer)
            .prepare_cached("INSERT OR REPLACE INTO pins (root, pinned_at) VALUES (?1, ?2)")
            .and_then(|mut s| s.execute(params![root.to_bytes(), at]))
            .map(drop)
            .map_err(err("pin snapshot"))
    }

    /// Write a whole imported state in one transaction: documents, artifacts (with their DAGs)
    /// and references. Either all of it is indexed or none.
    #[allow(clippy::type_complexity)]
    /// Index what a bundle brought, in one transaction, without replacing what is held: a
    /// document is written (with the references it lists) only when the node has no copy as new;
    /// an artifact only when its key is free. Listings' references are written as given.
    /// Returns how many documents were written.
    pub fn import(
        &self,
        documents: &[ImportedDocument],
        artifacts: &[(String, String, ArtifactRecord, Option<Dag>)],
        listing_refs: &[(String, String, Vec<(String, RefRecord)>)],
    ) -> Result<u64, IndexError> {
        let mut conn = lock(&self.writer);
        let tx = conn.transaction().map_err(err("begin"))?;
        let mut written = 0;
        for doc in documents {
            let held: Option<i64> = tx
                .prepare_cached(
                    "SELECT fetched_at FROM metadata
                     WHERE ecosystem = ?1 AND key = ?2 AND cid IS NOT NULL",
                )
                .and_then(|mut stmt| {
                    stmt.query_row(params![doc.ecosystem, doc.key], |row| row.get(0))
                        .optional()
                })
                .map_err(err("read metadata"))?;
            if held.is_some_and(|at| at >= doc.record.fetched_at) {
                continue;
            }
            insert_metadata(&tx, &doc.ecosystem, &doc.key, &doc.record)?;
            insert_refs(&tx, &doc.ecosystem, &doc.key, &doc.refs)?;
            written += 1;
        }
        for (eco, key, record, dag) in artifacts {
            tx.prepare_cached(
                "INSERT INTO artifacts
                 (ecosystem, key, flat_cid, root_cid, size, upstream_url, fetched_at, last_access)
                 VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?7)
                 ON CONFLICT (ecosystem, key) DO NOTHING",
            )
            .and_then(|mut stmt| {
                stmt.execute(params![
                    eco,
                    key,
                    record.flat.to_bytes(),
                    record.root.to_bytes(),
                    record.size as i64,
                    record.upstream_url,
                    record.fetched_at
                ])
            })
            .map_err(err("write artifact"))?;
            if let Some(dag) = dag {
                insert_dag(&tx, &record.flat, dag)?;
            }
        }
        for (eco, listed_by, refs) in listing_refs {
            insert_refs(&tx, eco, listed_by, refs)?;
        }
        tx.commit().map_err(err("commit import"))?;
        Ok(written)
    }

    /// Forget the artifact whose flat file is `flat` (it was found damaged or missing): its rows
    /// under every key and its leaves. The references that named it stay, so the next request
    /// fetches it again.
    pub fn forget_flat(&self, flat: &FlatCid) -> Result<u64, IndexError> {
        let mut conn = lock(&self.writer);
        let tx = conn.transaction().map_err(err("begin"))?;
        let bytes = flat.to_bytes();
        let rows = tx
            .execute("DELETE FROM artifacts WHERE flat_cid = ?1", params![bytes])
            .map_err(err("forget artifact"))?;
        tx.execute("DELETE FROM leaves WHERE flat_cid = ?1", params![bytes])
            .map_err(err("forget leaves"))?;
        tx.commit().map_err(err("commit forgetting an artifact"))?;
        Ok(rows as u64)
    }

    pub fn checkpoint(&self) -> Result<(), IndexError> {
        lock(&self.writer)
            .execute_batch("PRAGMA wal_checkpoint(TRUNCATE);")
            .map_err(err("checkpoint"))
    }

    /// An encoded inner node (or any block kept in the `blocks` table), by CID.
    pub fn get_block(&self, cid: &cid::Cid) -> Result<Option<Vec<u8>>, IndexError> {
        self.read(|conn| {
            conn.prepare_cached("SELECT data FROM blocks WHERE cid = ?1")
                .and_then(|mut stmt| {
                    stmt.query_row(params![cid.to_bytes()], |row| row.get::<_, Vec<u8>>(0))
                        .optional()
                })
                .map_err(err("read block"))
        })
    }

    /// Where a raw leaf's bytes are: a range of an artifact's flat file.
    pub fn get_leaf(&self, cid: &cid::Cid) -> Result<Option<LeafRecord>, IndexError> {
        self.read(|conn| {
            conn.prepare_cached("SELECT flat_cid, offset, len FROM leaves WHERE cid = ?1")
                .and_then(|mut stmt| {
                    stmt.query_row(params![cid.to_bytes()], |row| {
                        Ok((
                            row.get::<_, Vec<u8>>(0)?,
                            row.get::<_, i64>(1)?,
                            row.get::<_, i64>(2)?,
                        ))
                    })
                    .optional()
                })
                .map_err(err("read leaf"))?
                .map(|(flat, offset, len)| {
                    Ok(LeafRecord {
                        flat: FlatCid::from_bytes(&flat).map_err(corrupt)?,
                        offset: offset as u64,
                        len: len as u64,
                    })
                })
                .transpose()
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

/// A raw leaf: `len` bytes at `offset` of the flat file of `flat`.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct LeafRecord {
    pub flat: FlatCid,
    pub offset: u64,
    pub len: u64,
}

/// A CID in column `at`.
fn cid_column<T>(
    row: &rusqlite::Row<'_>,
    at: usize,
    parse: fn(&[u8]) -> Result<T, crate::cid::CidParseError>,
) -> rusqlite::Result<T> {
    parse(&row.get::<_, Vec<u8>>(at)?).map_err(|e| {
        rusqlite::Error::FromSqlConversionFailure(at, rusqlite::types::Type::Blob, Box::new(e))
    })
}

/// An artifact from columns `at..`: flat CID, root CID, size, upstream URL, fetched-at.
fn artifact_columns(row: &rusqlite::Row<'_>, at: usize) -> rusqlite::Result<ArtifactRecord> {
    Ok(ArtifactRecord {
        flat: cid_column(row, at, FlatCid::from_bytes)?,
        root: cid_column(row, at + 1, RootCid::from_bytes)?,
        size: row.get::<_, i64>(at + 2)? as u64,
        upstream_url: row.get(at + 3)?,
        fetched_at: row.get(at + 4)?,
    })
}

/// A reference from columns `at..`: flat CID, URL, size.
fn ref_columns(row: &rusqlite::Row<'_>, at: usize) -> rusqlite::Result<RefRecord> {
    Ok(RefRecord {
        flat: cid_column(row, at, FlatCid::from_bytes)?,
        url: row.get(at + 1)?,
        size: row.get::<_, Option<i64>>(at + 2)?.map(|s| s as u64),
    })
}

/// A metadata record from columns `at..`: CID, status, upstream URL, fetched-at, ETag,
/// Last-Modified, size.
fn metadata_columns(row: &rusqlite::Row<'_>, at: usize) -> rusqlite::Result<MetadataRecord> {
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
    })
}

fn corrupt(e: crate::cid::CidParseError) -> IndexError {
    IndexError {
        op: "decode CID",
        source: rusqlite::Error::FromSqlConversionFailure(
            0,
            rusqlite::types::Type::Blob,
            Box::new(e),
        ),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::cid::{Algorithm, Digest};
    use crate::unixfs::DagBuilder;

    fn index() -> (tempfile::TempDir, Index) {
        let dir = tempfile::tempdir().expect("tempdir");
        let index = Index::open(&dir.path().join("index.sqlite3")).expect("open");
        (dir, index)
    }

    #[test]
    fn artifacts_round_trip() {
        let (_dir, index) = index();
        let mut builder = DagBuilder::new();
        builder.update(b"bytes");
        let dag = builder.finish();
        let record = ArtifactRecord {
            flat: Digest::of(Algorithm::Sha512, b"bytes").flat_cid(),
            root: RootCid(dag.root),
            size: 5,
            upstream_url: "http://upstream/x.tgz".into(),
            fetched_at: 42,
        };
        assert_eq!(index.get_artifact("npm", "x").expect("get"), None);
        index.put_artifact("npm", "x", &record, &dag).expect("put");
        assert_eq!(index.get_artifact("npm", "x").expect("get"), Some(record));
        assert_eq!(index.get_artifact("cargo", "x").expect("get"), None);
        let stats = index.stats().expect("stats");
        assert_eq!(stats[0].artifacts, 1);
        assert_eq!(stats[0].artifact_bytes, 5);
    }

    #[test]
    fn negative_entries_expire_and_are_bounded() {
        let dir = tempfile::tempdir().expect("tempdir");
        let index = Index::open(&dir.path().join("i.sqlite3")).expect("open");
        let record = |cid: Option<BlockCid>, fetched_at| MetadataRecord {
            cid,
            status: if cid.is_some() { 200 } else { 404 },
            upstream_url: "https://upstream.invalid/x".into(),
            fetched_at,
            etag: None,
            last_modified: None,
            size: 0,
        };
        let found = BlockCid(crate::cid::raw_block_cid(b"doc"));
        index
            .put_metadata("npm", "kept", &record(Some(found), 1), &[])
            .expect("put");
        for (key, at) in [("old", 10), ("newer", 20), ("newest", 30), ("latest", 40)] {
            index
                .put_metadata("npm", key, &record(None, at), &[])
                .expect("put");
        }
        // "old" has expired; of the rest, only the newest two are kept.
        assert_eq!(index.expire_negative(15, 2).expect("expire"), 2);
        let present = |key: &str| index.get_metadata("npm", key).expect("get").is_some();
        assert!(!present("old") && !present("newer"));
        assert!(present("newest") && present("latest"));
        // A document is never expired this way, however old.
        assert!(present("kept"));
        assert_eq!(index.expire_negative(i64::MAX, 10).expect("expire"), 2);
        assert!(present("kept"));
    }

    #[test]
    fn metadata_and_refs_are_written_together() {
        let (_dir, index) = index();
        let record = MetadataRecord {
            cid: Some(BlockCid(crate::cid::raw_block_cid(b"{}"))),
            status: 200,
            upstream_url: "http://upstream/x".into(),
            fetched_at: 1,
            etag: Some("\"e\"".into()),
            last_modified: None,
            size: 2,
        };
        let reference = RefRecord {
            flat: Digest::of(Algorithm::Sha256, b"a").flat_cid(),
            url: "http://upstream/x/-/x-1.0.0.tgz".into(),
            size: Some(1),
        };
        index
            .put_metadata(
                "npm",
                "x",
                &record,
                &[("x/-/x-1.0.0.tgz".into(), reference.clone())],
            )
            .expect("put");
        assert_eq!(
            index.get_metadata("npm", "x").expect("get"),
            Some(record.clone())
        );
        assert_eq!(
            index.get_ref("npm", "x/-/x-1.0.0.tgz").expect("ref"),
            Some(reference.clone())
        );
        // One project's references by key prefix: not its neighbours' nor another ecosystem's.
        let refs = |keys: &[&str]| -> Vec<(String, RefRecord)> {
            keys.iter()
                .map(|k| ((*k).to_owned(), reference.clone()))
                .collect()
        };
        index
            .put_metadata(
                "pypi",
                "six",
                &record,
                &refs(&["six/a.whl", "six/b.tar.gz"]),
            )
            .expect("put");
        index
            .put_metadata("pypi", "sixty", &record, &refs(&["sixty/c.whl"]))
            .expect("put");
        index
            .put_metadata("pypi", "si", &record, &refs(&["si/d.whl"]))
            .expect("put");
        let keys = |prefix: &str, limit: usize| -> Vec<String> {
            index
                .refs_with_prefix("pypi", prefix, limit)
                .expect("prefix")
                .into_iter()
                .map(|(k, _)| k)
                .collect()
        };
        assert_eq!(keys("six/", 10), ["six/a.whl", "six/b.tar.gz"]);
        assert_eq!(keys("six/", 1), ["six/a.whl"]);
        assert!(keys("x/", 10).is_empty());
        index.touch_metadata("npm", "x", 99).expect("touch");
        assert_eq!(
            index
                .get_metadata("npm", "x")
                .expect("get")
                .map(|r| r.fetched_at),
            Some(99)
        );
    }

    #[test]
    fn stored_credentials_are_stripped() {
        let (_dir, index) = index();
        let record = MetadataRecord {
            cid: Some(BlockCid(crate::cid::raw_block_cid(b"{}"))),
            status: 200,
            upstream_url: "http://cairn:s3cret@upstream.invalid/x".into(),
            fetched_at: 1,
            etag: None,
            last_modified: None,
            size: 2,
        };
        let reference = RefRecord {
            flat: Digest::of(Algorithm::Sha256, b"a").flat_cid(),
            url: "http://cairn:s3cret@upstream.invalid/x/-/x-1.0.0.tgz".into(),
            size: Some(1),
        };
        let scoped = MetadataRecord {
            upstream_url: "http://upstream.invalid/@types%2fnode".into(),
            ..record.clone()
        };
        index
            .put_metadata(
                "npm",
                "x",
                &record,
                &[("x/-/x-1.0.0.tgz".into(), reference)],
            )
            .expect("put");
        index
            .put_metadata("npm", "@types/node", &scoped, &[])
            .expect("put");
        assert_eq!(index.strip_credentials().expect("strip"), 2);
        let got = index.get_metadata("npm", "x").expect("get").expect("row");
        assert_eq!(got.upstream_url, "http://upstream.invalid/x");
        let got = index
            .get_ref("npm", "x/-/x-1.0.0.tgz")
            .expect("ref")
            .expect("row");
        assert_eq!(got.url, "http://upstream.invalid/x/-/x-1.0.0.tgz");
        let got = index
            .get_metadata("npm", "@types/node")
            .expect("get")
            .expect("row");
        assert_eq!(got.upstream_url, scoped.upstream_url);
        assert_eq!(index.strip_credentials().expect("strip"), 0);
    }
}
