//! What eviction reads and writes of the index: the bytes the artifacts' files hold (in all
//! and per ecosystem), the files in order of last access (of all ecosystems or of one), and
//! dropping a file's rows. A file may be named by several keys (the same bytes under another
//! name, in one ecosystem or several); it is used when any of them is, and goes with all of
//! them.

use std::collections::BTreeMap;

use rusqlite::params;
use rusqlite::types::{FromSqlError, Type};

use super::held::Touched;
use super::{Index, IndexError, cid_column, err, lock};
use crate::cid::{FlatCid, RootCid};

/// One artifact file as eviction sees it.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct HeldFile {
    pub flat: FlatCid,
    pub root: RootCid,
    pub size: u64,
    /// The last access under any of its keys (ms since the epoch), as last written.
    pub last_access: i64,
}

/// What the artifact files hold, counted in one pass over the index.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct HeldBytes {
    /// Bytes of every artifact file, each counted once.
    pub total: u64,
    /// Bytes per ecosystem ([`ecosystem_family`]: every apt archive is `apt`): the files its
    /// rows name, each counted once in it. A file named in two ecosystems counts in each.
    pub by_ecosystem: BTreeMap<String, u64>,
}

/// The ecosystem an index row's `ecosystem` belongs to, as size limits and their metrics name
/// it: the part before the first `/` (`apt/debian` is `apt`; `npm` is `npm`).
pub fn ecosystem_family(ecosystem: &str) -> &str {
    ecosystem
        .split_once('/')
        .map_or(ecosystem, |(family, _)| family)
}

/// A column that is not of the type its query reads.
fn conversion(column: usize, kind: Type, e: FromSqlError) -> rusqlite::Error {
    rusqlite::Error::FromSqlConversionFailure(column, kind, Box::new(e))
}

impl Index {
    /// Bytes of the artifact files the index names, each file counted once.
    pub fn held_bytes(&self) -> Result<u64, IndexError> {
        self.read(|conn| {
            conn.query_row(
                "SELECT COALESCE(SUM(size), 0) FROM
                   (SELECT MAX(size) AS size FROM artifacts GROUP BY flat_cid)",
                [],
                |row| row.get::<_, i64>(0),
            )
            .map(|n| n.max(0) as u64)
            .map_err(err("sum the held bytes"))
        })
    }

    /// Bytes held in all and per ecosystem ([`HeldBytes`]), in one pass over the rows in file
    /// order (the `artifacts_by_flat` index) on the caller's connection: a file's rows come
    /// together, so each file is counted once in all and once in each ecosystem that names it.
    pub(super) fn scan_held(&self, conn: &rusqlite::Connection) -> Result<HeldBytes, IndexError> {
        let what = "count the held bytes per ecosystem";
        let mut stmt = conn
            .prepare("SELECT flat_cid, ecosystem, size FROM artifacts ORDER BY flat_cid")
            .map_err(err(what))?;
        let mut rows = stmt.query([]).map_err(err(what))?;
        let mut held = HeldBytes::default();
        // The file whose rows are being read, and the ecosystems it was counted in.
        let mut flat: Vec<u8> = Vec::new();
        let mut counted: Vec<String> = Vec::new();
        while let Some(row) = rows.next().map_err(err(what))? {
            let this = row
                .get_ref(0)
                .and_then(|v| v.as_blob().map_err(|e| conversion(0, Type::Blob, e)))
                .map_err(err(what))?;
            let ecosystem = row
                .get_ref(1)
                .and_then(|v| v.as_str().map_err(|e| conversion(1, Type::Text, e)))
                .map_err(err(what))?;
            let size = row.get::<_, i64>(2).map_err(err(what))?.max(0) as u64;
            if this != flat.as_slice() {
                flat.clear();
                flat.extend_from_slice(this);
                counted.clear();
                held.total += size;
            }
            let family = ecosystem_family(ecosystem);
            if !counted.iter().any(|c| c == family) {
                counted.push(family.to_owned());
                *held.by_ecosystem.entry(family.to_owned()).or_default() += size;
            }
        }
        Ok(held)
    }

    /// Files least recently used first, skipping those `keep` says must stay, until their sizes
    /// add up to `need` bytes (or every file has been seen).
    pub fn least_recently_used(
        &self,
        need: u64,
        keep: &dyn Fn(&FlatCid) -> bool,
    ) -> Result<Vec<HeldFile>, IndexError> {
        self.least_recently_used_in(None, need, keep)
    }

    /// As [`Index::least_recently_used`], among the files `ecosystem` names when given (an
    /// [`ecosystem_family`]: `apt` is every apt archive). A file's last use is still its last
    /// use under any key in any ecosystem, as `Index::drop_files` checks it.
    pub fn least_recently_used_in(
        &self,
        ecosystem: Option<&str>,
        need: u64,
        keep: &dyn Fn(&FlatCid) -> bool,
    ) -> Result<Vec<HeldFile>, IndexError> {
        self.read(|conn| {
            // `?1` NULL: every file; else those with a row in the ecosystem or one of its
            // archives (`apt` and `apt/...`).
            let mut stmt = conn
                .prepare(
                    "SELECT flat_cid, MAX(root_cid), MAX(size), MAX(last_access) AS seen
                     FROM artifacts GROUP BY flat_cid
                     HAVING ?1 IS NULL OR MAX(ecosystem = ?1 OR substr(ecosystem, 1, length(?1) + 1) = ?1 || '/')
                     ORDER BY seen, flat_cid",
                )
                .map_err(err("list files by last access"))?;
            let mut rows = stmt
                .query(params![ecosystem])
                .map_err(err("list files by last access"))?;
            let (mut chosen, mut freed) = (Vec::new(), 0u64);
            while freed < need {
                let Some(row) = rows.next().map_err(err("list files by last access"))? else {
                    break;
                };
                let file = HeldFile {
                    flat: cid_column(row, 0, FlatCid::from_bytes)
                        .map_err(err("list files by last access"))?,
                    root: cid_column(row, 1, RootCid::from_bytes)
                        .map_err(err("list files by last access"))?,
                    size: row
                        .get::<_, i64>(2)
                        .map_err(err("list files by last access"))?
                        .max(0) as u64,
                    last_access: row.get(3).map_err(err("list files by last access"))?,
                };
                if keep(&file.flat) {
                    continue;
                }
                freed += file.size;
                chosen.push(file);
            }
            Ok(chosen)
        })
    }

    /// Drop the rows of `files` (under every key, and their leaves) in one transaction, except
    /// those used since they were chosen (a row accessed after `last_access`, or a new key for
    /// the same bytes): the files whose rows went, which the caller may now delete.
    pub(crate) fn drop_files(&self, files: &[HeldFile]) -> Result<Vec<HeldFile>, IndexError> {
        let mut conn = lock(&self.writer);
        let tx = conn.transaction().map_err(err("begin"))?;
        let mut dropped = Vec::with_capacity(files.len());
        let mut touched = Touched::default();
        {
            let mut used = tx
                .prepare_cached(
                    "SELECT EXISTS (SELECT 1 FROM artifacts WHERE flat_cid = ?1 AND last_access > ?2)",
                )
                .map_err(err("check a file's last access"))?;
            let mut artifacts = tx
                .prepare_cached("DELETE FROM artifacts WHERE flat_cid = ?1")
                .map_err(err("drop artifact rows"))?;
            let mut leaves = tx
                .prepare_cached("DELETE FROM leaves WHERE flat_cid = ?1")
                .map_err(err("drop leaf rows"))?;
            for file in files {
                let flat = file.flat.to_bytes();
                let since: bool = used
                    .query_row(params![flat, file.last_access], |row| row.get(0))
                    .map_err(err("check a file's last access"))?;
                if since {
                    continue;
                }
                touched.file(&tx, &flat)?;
                if artifacts
                    .execute(params![flat])
                    .map_err(err("drop artifact rows"))?
                    == 0
                {
                    continue;
                }
                leaves
                    .execute(params![flat])
                    .map_err(err("drop leaf rows"))?;
                dropped.push(*file);
            }
        }
        let delta = touched.delta(&tx)?;
        tx.commit().map_err(err("commit an eviction"))?;
        self.held.apply(delta);
        Ok(dropped)
    }

    /// The snapshot roots `cairn pin` keeps, oldest pin first.
    pub fn pins(&self) -> Result<Vec<cid::Cid>, IndexError> {
        Ok(self.pinned()?.into_iter().map(|(root, _)| root).collect())
    }

    /// The snapshot roots `cairn pin` keeps, with when each was pinned (ms since the epoch),
    /// oldest first.
    pub fn pinned(&self) -> Result<Vec<(cid::Cid, i64)>, IndexError> {
        self.read(|conn| {
            let mut stmt = conn
                .prepare_cached("SELECT root, pinned_at FROM pins ORDER BY pinned_at, root")
                .map_err(err("list pins"))?;
            stmt.query_map([], |row| {
                let bytes: Vec<u8> = row.get(0)?;
                let root = cid::Cid::try_from(bytes.as_slice()).map_err(|e| {
                    rusqlite::Error::FromSqlConversionFailure(
                        0,
                        rusqlite::types::Type::Blob,
                        Box::new(e),
                    )
                })?;
                Ok((root, row.get(1)?))
            })
            .and_then(|rows| rows.collect())
            .map_err(err("list pins"))
        })
    }
}
