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
//!   is refetched after that, and deleted by the periodic `Store::expire_not_found` sweep,
//!   which also keeps only the newest ones beyond a fixed count.
//! - `blocks`: encoded dag-pb inner nodes of artifact DAGs, by CID.
//! - `leaves`: raw leaf CID → (flat CID, offset, length): leaves are ranges of flat files.
//! - `pins`: snapshot root CIDs to keep (`cairn pin`); their nodes are in `blocks`.
//! - `events`: what other processes wrote that a serving store should hear of (imports), read
//!   by its `events::EventFeed` and trimmed by age.
//! - `upkeep_runs`: the last run of each upkeep job (`verify`): when it ended, and its report.
//!
//! The schema is versioned (`schema.rs`); one file per table or job beside this one.
//!
//! All methods block: call them from a blocking thread. One writer connection (SQLite allows one
//! writer at a time anyway) and a small pool of readers, so reads never wait behind a write; the
//! log is checkpointed by a thread of its own, so commits never wait for that either
//! (`checkpoint.rs`).

use std::path::Path;
use std::sync::Mutex;

use rusqlite::Connection;

pub use crate::error::IndexError;

mod artifacts;
mod blocks;
mod checkpoint;
mod documents;
pub(crate) mod events;
mod eviction;
mod gc;
mod held;
mod import;
mod purge;
mod refs;
mod schema;
mod search;
mod stats;
#[cfg(test)]
mod tests;
mod tokens;
mod traffic;
mod verify;

pub use artifacts::ArtifactRecord;
pub use blocks::LeafRecord;
pub use documents::MetadataRecord;
pub use eviction::{HeldBytes, HeldFile, ecosystem_family};
pub use import::{ImportedDocument, ListingRefs};
pub use purge::{PurgeKeys, PurgedFile, PurgedRows};
pub use refs::RefRecord;
pub use schema::SCHEMA_VERSION;
pub use search::{FoundFile, MAX_FOUND};
pub use stats::EcosystemStats;
pub use tokens::TokenRecord;
pub use traffic::TrafficRow;
pub use verify::HeldArtifact;

const READERS: usize = 4;

/// The index. Cheap to share behind an `Arc`.
pub struct Index {
    writer: Mutex<Connection>,
    readers: Mutex<Vec<Connection>>,
    path: std::path::PathBuf,
    /// What the artifact files hold, kept as this process writes ([`held`]).
    held: held::Held,
    /// Some artifact reference is marked removed upstream (see `refs.rs`): until one is,
    /// nothing needs looking up for it.
    removed_any: std::sync::atomic::AtomicBool,
    /// The writer's WAL checkpoints, run off its commits ([`checkpoint`]).
    #[cfg_attr(
        not(test),
        allow(dead_code, reason = "held for its Drop, which stops the thread")
    )]
    checkpointer: checkpoint::Checkpointer,
}

fn err(op: &'static str) -> impl FnOnce(rusqlite::Error) -> IndexError {
    move |source| IndexError::Sqlite { op, source }
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

fn lock<T>(m: &Mutex<T>) -> std::sync::MutexGuard<'_, T> {
    // A panic while holding the lock leaves a connection that is still usable: SQLite rolls
    // back any open transaction when the statement or transaction object is dropped.
    m.lock().unwrap_or_else(|poisoned| poisoned.into_inner())
}

impl Index {
    /// Open (creating) the index at `path`, migrating its schema to [`SCHEMA_VERSION`]; an
    /// index of a newer version is refused with an error naming both.
    pub(crate) fn open(path: &Path) -> Result<Self, IndexError> {
        let mut writer = open_connection(path)?;
        schema::migrate(&mut writer, path)?;
        let removed_any: bool = writer
            .query_row(
                "SELECT EXISTS (SELECT 1 FROM artifact_refs WHERE removed IS NOT NULL)",
                [],
                |row| row.get(0),
            )
            .map_err(err("read removed artifact references"))?;
        let checkpointer = checkpoint::Checkpointer::start(&mut writer, path)?;
        Ok(Index {
            writer: Mutex::new(writer),
            readers: Mutex::new(Vec::new()),
            path: path.to_path_buf(),
            held: held::Held::default(),
            removed_any: std::sync::atomic::AtomicBool::new(removed_any),
            checkpointer,
        })
    }

    /// True when some artifact reference is marked removed upstream (by this process, or in
    /// the index it opened).
    pub fn any_removed(&self) -> bool {
        self.removed_any.load(std::sync::atomic::Ordering::Relaxed)
    }

    fn note_removed(&self, removed: bool) {
        if removed {
            self.removed_any
                .store(true, std::sync::atomic::Ordering::Relaxed);
        }
    }

    /// The schema version of the index (after the migrations run at open).
    pub fn schema_version(&self) -> Result<i64, IndexError> {
        schema::version(&lock(&self.writer))
    }

    /// Give back the memory the index holds between requests: the idle readers are closed
    /// (they are opened again as needed) and the writer's page cache is emptied. Blocking.
    pub fn release_memory(&self) -> Result<(), IndexError> {
        lock(&self.readers).clear();
        lock(&self.writer)
            .execute_batch("PRAGMA shrink_memory;")
            .map_err(err("release the writer's page cache"))
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

fn corrupt(e: crate::cid::CidParseError) -> IndexError {
    IndexError::Sqlite {
        op: "decode CID",
        source: rusqlite::Error::FromSqlConversionFailure(
            0,
            rusqlite::types::Type::Blob,
            Box::new(e),
        ),
    }
}
