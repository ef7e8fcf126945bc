//! The index's schema and its versions. The version is SQLite's `PRAGMA user_version`; at open,
//! the migrations after it run in order, each in the same transaction as the version it sets,
//! so an index is always at one version or the next, never between. Version 1 is the schema of
//! the releases before versions were kept: its statements are all `IF NOT EXISTS`, so an index
//! those releases made (version 0, tables present) becomes version 1 unchanged. An index of a
//! newer version than [`SCHEMA_VERSION`] is refused, never written.

use std::path::Path;

use rusqlite::{Connection, TransactionBehavior};

use super::{IndexError, err};

/// The newest schema version this build reads and writes.
pub const SCHEMA_VERSION: i64 = 9;

/// Version 1: the tables as the first releases created them.
const V1: &str = r#"
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

/// Version 2: an append-only log of what one process wrote that the store serving the same
/// data directory in another process must hear of (an import beside a running `serve`).
const V2: &str = r#"
CREATE TABLE events (
    id        INTEGER PRIMARY KEY AUTOINCREMENT,
    kind      TEXT NOT NULL,
    ecosystem TEXT NOT NULL,
    key       TEXT NOT NULL,
    flat_cid  BLOB NOT NULL,
    root_cid  BLOB NOT NULL,
    at        INTEGER NOT NULL
);
"#;

/// Version 3: leaf rows found by their file, for dropping an artifact's leaves (eviction,
/// damage) without a scan of every leaf.
const V3: &str = r#"
CREATE INDEX leaves_by_flat ON leaves (flat_cid);
"#;

/// The last run of each upkeep job (`verify`), for `cairn status` and `/metrics`.
const V4: &str = r#"
CREATE TABLE upkeep_runs (
    job         TEXT PRIMARY KEY,
    finished_at INTEGER NOT NULL,
    report      TEXT NOT NULL
) WITHOUT ROWID;
"#;

/// Access tokens (`cairn token`): only the SHA-256 of each token is kept.
const V5: &str = r#"
CREATE TABLE tokens (
    name       TEXT PRIMARY KEY,
    hash       BLOB NOT NULL UNIQUE,
    admin      INTEGER NOT NULL,
    created_at INTEGER NOT NULL,
    expires_at INTEGER
);
"#;

/// Private content: artifacts and documents that came from an upstream which was sent
/// credentials. An open swarm is never shown them; the partial indexes find the few private
/// rows of a file or block without a scan.
const V6: &str = r#"
ALTER TABLE artifacts ADD COLUMN private INTEGER NOT NULL DEFAULT 0;
ALTER TABLE metadata ADD COLUMN private INTEGER NOT NULL DEFAULT 0;
CREATE INDEX artifacts_private ON artifacts (flat_cid) WHERE private = 1;
CREATE INDEX metadata_private ON metadata (cid) WHERE private = 1;
ALTER TABLE events ADD COLUMN private INTEGER NOT NULL DEFAULT 0;
"#;

/// What supply-chain policy reads of each artifact a document lists: its version and when it
/// was published (as first seen by this node; see `refs.rs`), and since when its document no
/// longer lists it (removed upstream); and the references of one document found without a
/// scan.
const V7: &str = r#"
ALTER TABLE artifact_refs ADD COLUMN version TEXT;
ALTER TABLE artifact_refs ADD COLUMN published INTEGER;
ALTER TABLE artifact_refs ADD COLUMN removed INTEGER;
CREATE INDEX artifact_refs_by_document ON artifact_refs (ecosystem, metadata_key);
CREATE INDEX artifact_refs_removed ON artifact_refs (ecosystem, key) WHERE removed IS NOT NULL;
"#;

/// Whether upstream marks each referenced file yanked (PEP 592, cargo's index), which the
/// policy may refuse; and the package of a file a listing names (apt), which its rules name.
const V8: &str = r#"
ALTER TABLE artifact_refs ADD COLUMN yanked INTEGER NOT NULL DEFAULT 0;
ALTER TABLE artifact_refs ADD COLUMN package TEXT;
"#;

/// The day's traffic per ecosystem and minute, kept across restarts for the dashboard.
const V9: &str = r#"
CREATE TABLE traffic (
    minute         INTEGER NOT NULL,
    ecosystem      TEXT NOT NULL,
    hits           INTEGER NOT NULL,
    misses         INTEGER NOT NULL,
    cache_bytes    INTEGER NOT NULL,
    peer_bytes     INTEGER NOT NULL,
    upstream_bytes INTEGER NOT NULL,
    PRIMARY KEY (minute, ecosystem)
) WITHOUT ROWID;
"#;

/// The migration to each version, in order: `MIGRATIONS[n]` takes an index from version `n` to
/// `n + 1`.
const MIGRATIONS: &[&str] = &[V1, V2, V3, V4, V5, V6, V7, V8, V9];

/// Bring the index behind `conn` (at `path`, for messages) to [`SCHEMA_VERSION`]; returns the
/// version it was at. Another process opening the same index at the same time waits for this
/// one's transaction, then finds it migrated.
pub(super) fn migrate(conn: &mut Connection, path: &Path) -> Result<i64, IndexError> {
    let tx = conn
        .transaction_with_behavior(TransactionBehavior::Immediate)
        .map_err(err("begin schema migration"))?;
    let found = version(&tx)?;
    if found > SCHEMA_VERSION {
        return Err(IndexError::TooNew {
            path: path.to_path_buf(),
            found,
            supported: SCHEMA_VERSION,
        });
    }
    for (from, sql) in MIGRATIONS.iter().enumerate().skip(found.max(0) as usize) {
        tx.execute_batch(sql).map_err(err("migrate schema"))?;
        // `PRAGMA` takes no parameters; the version is a number this code chose.
        tx.execute_batch(&format!("PRAGMA user_version = {}", from + 1))
            .map_err(err("record schema version"))?;
    }
    tx.commit().map_err(err("commit schema migration"))?;
    Ok(found)
}

/// The schema version of the index behind `conn`.
pub(super) fn version(conn: &Connection) -> Result<i64, IndexError> {
    conn.query_row("PRAGMA user_version", [], |row| row.get(0))
        .map_err(err("read schema version"))
}
