//! What `gc` reads and writes of the index: the documents' blocks that rows name, the files
//! artifact rows name, and leaf rows whose file no artifact row names.

use std::collections::HashSet;

use super::{Index, IndexError, cid_column, err, lock};
use crate::cid::{BlockCid, FlatCid};

impl Index {
    /// The blocks (under `meta/`) that metadata rows name.
    pub(crate) fn document_blocks(&self) -> Result<HashSet<BlockCid>, IndexError> {
        self.read(|conn| {
            let mut stmt = conn
                .prepare("SELECT DISTINCT cid FROM metadata WHERE cid IS NOT NULL")
                .map_err(err("list document blocks"))?;
            stmt.query_map([], |row| cid_column(row, 0, BlockCid::from_bytes))
                .and_then(|rows| rows.collect())
                .map_err(err("list document blocks"))
        })
    }

    /// The files artifact rows name for which `missing` says true (each file once).
    pub(crate) fn files_where(
        &self,
        missing: &dyn Fn(&FlatCid) -> bool,
    ) -> Result<Vec<FlatCid>, IndexError> {
        self.read(|conn| {
            let mut stmt = conn
                .prepare("SELECT DISTINCT flat_cid FROM artifacts")
                .map_err(err("list artifact files"))?;
            let mut rows = stmt.query([]).map_err(err("list artifact files"))?;
            let mut found = Vec::new();
            while let Some(row) = rows.next().map_err(err("list artifact files"))? {
                let flat =
                    cid_column(row, 0, FlatCid::from_bytes).map_err(err("list artifact files"))?;
                if missing(&flat) {
                    found.push(flat);
                }
            }
            Ok(found)
        })
    }

    /// Leaf rows whose file no artifact row names (left by an older release's forgetting):
    /// how many, deleted unless `dry_run`.
    pub(crate) fn orphan_leaves(&self, dry_run: bool) -> Result<u64, IndexError> {
        const ORPHANS: &str = "FROM leaves WHERE flat_cid NOT IN (SELECT flat_cid FROM artifacts)";
        if dry_run {
            return self.read(|conn| {
                conn.query_row(&format!("SELECT COUNT(*) {ORPHANS}"), [], |row| {
                    row.get::<_, i64>(0)
                })
                .map(|n| n.max(0) as u64)
                .map_err(err("count orphan leaf rows"))
            });
        }
        lock(&self.writer)
            .execute(&format!("DELETE {ORPHANS}"), [])
            .map(|n| n as u64)
            .map_err(err("delete orphan leaf rows"))
    }

    /// The snapshot nodes held: the dag-cbor blocks of the `blocks` table (the others are
    /// artifacts' dag-pb inner nodes).
    pub(crate) fn snapshot_blocks(&self) -> Result<Vec<cid::Cid>, IndexError> {
        const OP: &str = "list snapshot blocks";
        self.read(|conn| {
            // A CIDv1's bytes begin with its version (1) and its codec (dag-cbor, 0x71).
            let mut stmt = conn
                .prepare("SELECT cid FROM blocks WHERE substr(cid, 1, 2) = x'0171'")
                .map_err(err(OP))?;
            let rows = stmt
                .query_map([], |row| row.get::<_, Vec<u8>>(0))
                .and_then(|rows| rows.collect::<Result<Vec<_>, _>>())
                .map_err(err(OP))?;
            rows.iter()
                .map(|bytes| crate::cid::cid_from_bytes(bytes).map_err(super::corrupt))
                .collect()
        })
    }

    /// Delete `cids` from the `blocks` table; how many were there.
    pub(crate) fn delete_blocks(&self, cids: &[cid::Cid]) -> Result<u64, IndexError> {
        let mut conn = lock(&self.writer);
        let tx = conn.transaction().map_err(err("begin"))?;
        let mut deleted = 0;
        {
            let mut stmt = tx
                .prepare_cached("DELETE FROM blocks WHERE cid = ?1")
                .map_err(err("delete blocks"))?;
            for cid in cids {
                deleted += stmt
                    .execute([cid.to_bytes()])
                    .map_err(err("delete blocks"))? as u64;
            }
        }
        tx.commit().map_err(err("commit deleting blocks"))?;
        Ok(deleted)
    }
}
