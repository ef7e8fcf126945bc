//! The `events` table: what a process wrote that the store serving the same data directory in
//! another process must hear of. An import writes one row per artifact it indexed, in its own
//! transaction; the serving store's [`EventFeed`] notices the commit cheaply (`PRAGMA
//! data_version` changes only when another connection wrote) and reads the rows after the last
//! one it saw. Rows older than [`KEEP_EVENTS_MS`] are trimmed by the feed.

use std::path::Path;

use rusqlite::{Connection, Transaction, params};

use super::artifacts::ArtifactRecord;
use super::{IndexError, cid_column, err, open_connection};
use crate::cid::{FlatCid, RootCid};

/// How long an event row is kept: long enough for any serving store polling every second to
/// have read it.
pub(crate) const KEEP_EVENTS_MS: i64 = 10 * 60 * 1000;

/// Rows read per poll at most; the rest come at the next.
const BATCH: i64 = 1000;

/// What an event row says happened.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum EventKind {
    Imported,
}

impl EventKind {
    fn as_str(self) -> &'static str {
        match self {
            EventKind::Imported => "imported",
        }
    }
}

/// One row of the table.
#[derive(Clone, Debug, PartialEq, Eq)]
pub(crate) struct EventRow {
    pub kind: EventKind,
    pub ecosystem: String,
    pub key: String,
    pub flat: FlatCid,
    pub root: RootCid,
    pub private: bool,
}

fn now_ms() -> i64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| i64::try_from(d.as_millis()).unwrap_or(i64::MAX))
        .unwrap_or(0)
}

/// Append an event, inside the caller's transaction.
pub(crate) fn insert_event(
    tx: &Transaction<'_>,
    kind: EventKind,
    ecosystem: &str,
    key: &str,
    record: &ArtifactRecord,
) -> Result<(), IndexError> {
    tx.prepare_cached(
        "INSERT INTO events (kind, ecosystem, key, flat_cid, root_cid, at, private)
         VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7)",
    )
    .and_then(|mut stmt| {
        stmt.execute(params![
            kind.as_str(),
            ecosystem,
            key,
            record.flat.to_bytes(),
            record.root.to_bytes(),
            now_ms(),
            record.private
        ])
    })
    .map(drop)
    .map_err(err("write event"))
}

/// Reads the events other connections append, from those after its opening on. Owns a
/// connection of its own: `PRAGMA data_version` reports the commits of every other one.
pub(crate) struct EventFeed {
    conn: Connection,
    data_version: i64,
    last: i64,
}

impl EventFeed {
    /// Start following the index at `path` from its newest event.
    pub(crate) fn open(path: &Path) -> Result<Self, IndexError> {
        let conn = open_connection(path)?;
        let data_version = data_version(&conn)?;
        let last = conn
            .query_row("SELECT COALESCE(MAX(id), 0) FROM events", [], |r| r.get(0))
            .map_err(err("read events"))?;
        Ok(EventFeed {
            conn,
            data_version,
            last,
        })
    }

    /// The events appended since the last poll; a cheap no-op when nothing was written.
    pub(crate) fn poll(&mut self) -> Result<Vec<EventRow>, IndexError> {
        let version = data_version(&self.conn)?;
        if version == self.data_version {
            return Ok(Vec::new());
        }
        let rows: Vec<(i64, String, String, FlatCid, RootCid, bool)> = self
            .conn
            .prepare_cached(
                "SELECT id, ecosystem, key, flat_cid, root_cid, private FROM events
                 WHERE id > ?1 AND kind = 'imported' ORDER BY id LIMIT ?2",
            )
            .and_then(|mut stmt| {
                stmt.query_map(params![self.last, BATCH], |row| {
                    Ok((
                        row.get(0)?,
                        row.get(1)?,
                        row.get(2)?,
                        cid_column(row, 3, FlatCid::from_bytes)?,
                        cid_column(row, 4, RootCid::from_bytes)?,
                        row.get(5)?,
                    ))
                })?
                .collect()
            })
            .map_err(err("read events"))?;
        // A full batch leaves more to read: look again at the next poll whatever the version.
        if (rows.len() as i64) < BATCH {
            self.data_version = version;
        }
        if let Some((id, ..)) = rows.last() {
            self.last = *id;
        }
        Ok(rows
            .into_iter()
            .map(|(_, ecosystem, key, flat, root, private)| EventRow {
                kind: EventKind::Imported,
                ecosystem,
                key,
                flat,
                root,
                private,
            })
            .collect())
    }

    /// Delete the rows older than [`KEEP_EVENTS_MS`]. Returns how many went.
    pub(crate) fn trim(&self) -> Result<usize, IndexError> {
        self.conn
            .execute(
                "DELETE FROM events WHERE at < ?1",
                params![now_ms().saturating_sub(KEEP_EVENTS_MS)],
            )
            .map_err(err("trim events"))
    }
}

fn data_version(conn: &Connection) -> Result<i64, IndexError> {
    conn.query_row("PRAGMA data_version", [], |r| r.get(0))
        .map_err(err("read data version"))
}
