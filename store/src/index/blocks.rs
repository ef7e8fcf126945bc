//! The `blocks` (encoded inner nodes, snapshot nodes), `leaves` (raw leaves as ranges of flat
//! files) and `pins` (snapshot roots `gc` keeps) tables.

use rusqlite::{OptionalExtension, params};

use super::{Index, IndexError, corrupt, err, lock};
use crate::cid::FlatCid;

/// A raw leaf: `len` bytes at `offset` of the flat file of `flat`.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct LeafRecord {
    pub flat: FlatCid,
    pub offset: u64,
    pub len: u64,
}

impl Index {
    /// Store blocks (snapshot nodes) in the `blocks` table.
    pub(crate) fn put_blocks(&self, blocks: &[(cid::Cid, Vec<u8>)]) -> Result<(), IndexError> {
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
    pub(crate) fn pin(&self, root: &cid::Cid, at: i64) -> Result<(), IndexError> {
        lock(&self.writer)
            .prepare_cached("INSERT OR REPLACE INTO pins (root, pinned_at) VALUES (?1, ?2)")
            .and_then(|mut s| s.execute(params![root.to_bytes(), at]))
            .map(drop)
            .map_err(err("pin snapshot"))
    }

    /// Stop keeping snapshot `root`; whether it was pinned. Its blocks stay (they are small, and
    /// a later `gc` removes what nothing names).
    pub(crate) fn unpin(&self, root: &cid::Cid) -> Result<bool, IndexError> {
        lock(&self.writer)
            .prepare_cached("DELETE FROM pins WHERE root = ?1")
            .and_then(|mut s| s.execute(params![root.to_bytes()]))
            .map(|n| n > 0)
            .map_err(err("unpin snapshot"))
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

    /// Delete an inner node, as a damaged index would lose it. For tests.
    #[cfg(test)]
    pub(crate) fn delete_block_for_tests(&self, cid: &cid::Cid) -> Result<usize, IndexError> {
        super::lock(&self.writer)
            .execute("DELETE FROM blocks WHERE cid = ?1", [cid.to_bytes()])
            .map_err(super::err("delete a block"))
    }
}
