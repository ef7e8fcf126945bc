//! What a purge (`cairn purge`: the operator dropping one package at once) reads and writes of
//! the index: the artifact files a selection names, their rows under every key (the bytes are
//! what is purged, whoever else named them), their leaves, and the selection's documents with
//! the references they recorded. One transaction: a purge is whole or not at all.

use std::collections::BTreeMap;

use rusqlite::{OptionalExtension, Transaction, params};

use super::held::Touched;
use super::{Index, IndexError, cid_column, err, lock};
use crate::cid::{BlockCid, FlatCid, RootCid};

/// What to purge in one ecosystem, in its adapter's keys.
pub struct PurgeKeys<'a> {
    /// Metadata documents dropped whole (cached "not found"s too), with the references they
    /// recorded.
    pub documents: &'a [String],
    /// Documents whose recorded references name candidate artifact keys.
    pub listed_by: &'a [String],
    /// Artifact keys beginning with one of these are candidates too.
    pub artifact_prefixes: &'a [String],
    /// Of the candidates, the keys that go.
    pub owns: &'a dyn Fn(&str) -> bool,
}

/// An artifact file a purge dropped, and every key that named it.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct PurgedFile {
    pub flat: FlatCid,
    pub root: RootCid,
    pub size: u64,
    /// `(ecosystem, key)` of every row that named the file, sorted.
    pub keys: Vec<(String, String)>,
}

/// What a purge dropped from the index.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct PurgedRows {
    pub files: Vec<PurgedFile>,
    /// The document keys whose rows went (documents and cached "not found"s), sorted.
    pub documents: Vec<String>,
    /// The blocks of the documents whose rows went (for caches of what was made of them).
    pub blocks: Vec<BlockCid>,
    /// Of those, the blocks no row names any more: their `meta/` files may go.
    pub unnamed_blocks: Vec<BlockCid>,
}

/// Candidate artifact rows `(key, flat)` of `ecosystem` under `prefix`.
fn under_prefix(
    tx: &Transaction<'_>,
    ecosystem: &str,
    prefix: &str,
) -> Result<Vec<(String, FlatCid)>, IndexError> {
    // Keys in [prefix, prefix + U+10FFFF): an indexed range of the primary key.
    let end = format!("{prefix}\u{10FFFF}");
    let mut stmt = tx
        .prepare_cached(
            "SELECT key, flat_cid FROM artifacts WHERE ecosystem = ?1 AND key >= ?2 AND key < ?3",
        )
        .map_err(err("list artifacts to purge"))?;
    stmt.query_map(params![ecosystem, prefix, end], |row| {
        Ok((row.get(0)?, cid_column(row, 1, FlatCid::from_bytes)?))
    })
    .and_then(|rows| rows.collect())
    .map_err(err("list artifacts to purge"))
}

/// Candidate artifact rows `(key, flat)` of `ecosystem` that `document` recorded references to.
fn listed_by(
    tx: &Transaction<'_>,
    ecosystem: &str,
    document: &str,
) -> Result<Vec<(String, FlatCid)>, IndexError> {
    let mut stmt = tx
        .prepare_cached(
            "SELECT a.key, a.flat_cid FROM artifact_refs r
             JOIN artifacts a ON a.ecosystem = r.ecosystem AND a.key = r.key
             WHERE r.ecosystem = ?1 AND r.metadata_key = ?2",
        )
        .map_err(err("list listed artifacts to purge"))?;
    stmt.query_map(params![ecosystem, document], |row| {
        Ok((row.get(0)?, cid_column(row, 1, FlatCid::from_bytes)?))
    })
    .and_then(|rows| rows.collect())
    .map_err(err("list listed artifacts to purge"))
}

/// Drop the rows of the file `flat` under every key (any ecosystem) and its leaves; `None` when
/// no row names it.
fn drop_file(tx: &Transaction<'_>, flat: &FlatCid) -> Result<Option<PurgedFile>, IndexError> {
    let bytes = flat.to_bytes();
    let rows: Vec<(String, String, RootCid, i64)> = tx
        .prepare_cached(
            "SELECT ecosystem, key, root_cid, size FROM artifacts WHERE flat_cid = ?1
             ORDER BY ecosystem, key",
        )
        .and_then(|mut stmt| {
            stmt.query_map(params![bytes], |row| {
                Ok((
                    row.get(0)?,
                    row.get(1)?,
                    cid_column(row, 2, RootCid::from_bytes)?,
                    row.get(3)?,
                ))
            })
            .and_then(|rows| rows.collect())
        })
        .map_err(err("list the keys of a purged file"))?;
    let Some((_, _, root, size)) = rows.first().cloned() else {
        return Ok(None);
    };
    tx.prepare_cached("DELETE FROM artifacts WHERE flat_cid = ?1")
        .and_then(|mut stmt| stmt.execute(params![bytes]))
        .map_err(err("drop purged artifact rows"))?;
    tx.prepare_cached("DELETE FROM leaves WHERE flat_cid = ?1")
        .and_then(|mut stmt| stmt.execute(params![bytes]))
        .map_err(err("drop purged leaf rows"))?;
    Ok(Some(PurgedFile {
        flat: *flat,
        root,
        size: size.max(0) as u64,
        keys: rows.into_iter().map(|(e, k, _, _)| (e, k)).collect(),
    }))
}

impl Index {
    /// Drop what `keys` selects in `ecosystem`, in one transaction: every artifact file a
    /// candidate key it owns names (its rows under every key, in any ecosystem, and its
    /// leaves), then the documents (their rows and the references they recorded). The caller
    /// deletes the files afterwards: a file without rows is an orphan, never a row without a
    /// file.
    pub(crate) fn purge(
        &self,
        ecosystem: &str,
        keys: &PurgeKeys<'_>,
    ) -> Result<PurgedRows, IndexError> {
        let mut conn = lock(&self.writer);
        let tx = conn.transaction().map_err(err("begin"))?;
        // Candidates, by flat file (sorted: the report and the deletes are deterministic).
        let mut flats = BTreeMap::new();
        let mut candidates = Vec::new();
        for prefix in keys.artifact_prefixes {
            candidates.extend(under_prefix(&tx, ecosystem, prefix)?);
        }
        for document in keys.listed_by {
            candidates.extend(listed_by(&tx, ecosystem, document)?);
        }
        for (key, flat) in candidates {
            if (keys.owns)(&key) {
                flats.insert(flat.to_bytes(), flat);
            }
        }
        let mut purged = PurgedRows::default();
        let mut touched = Touched::default();
        for (bytes, flat) in &flats {
            touched.file(&tx, bytes)?;
            purged.files.extend(drop_file(&tx, flat)?);
        }
        let mut blocks = Vec::new();
        for document in keys.documents {
            let found: Option<Option<Vec<u8>>> = tx
                .prepare_cached("SELECT cid FROM metadata WHERE ecosystem = ?1 AND key = ?2")
                .and_then(|mut stmt| {
                    stmt.query_row(params![ecosystem, document], |row| row.get(0))
                        .optional()
                })
                .map_err(err("read a purged document"))?;
            tx.prepare_cached(
                "DELETE FROM artifact_refs WHERE ecosystem = ?1 AND metadata_key = ?2",
            )
            .and_then(|mut stmt| stmt.execute(params![ecosystem, document]))
            .map_err(err("drop a purged document's references"))?;
            let Some(cid) = found else {
                continue;
            };
            tx.prepare_cached("DELETE FROM metadata WHERE ecosystem = ?1 AND key = ?2")
                .and_then(|mut stmt| stmt.execute(params![ecosystem, document]))
                .map_err(err("drop a purged document"))?;
            purged.documents.push(document.clone());
            blocks.extend(cid);
        }
        for bytes in blocks {
            let block = BlockCid::from_bytes(&bytes).map_err(super::corrupt)?;
            purged.blocks.push(block);
            let named: bool = tx
                .prepare_cached("SELECT EXISTS (SELECT 1 FROM metadata WHERE cid = ?1)")
                .and_then(|mut stmt| stmt.query_row(params![bytes], |row| row.get(0)))
                .map_err(err("look for other rows naming a purged document"))?;
            if !named {
                purged.unnamed_blocks.push(block);
            }
        }
        let delta = touched.delta(&tx)?;
        tx.commit().map_err(err("commit a purge"))?;
        self.held.apply(delta);
        purged.documents.sort();
        purged.blocks.sort();
        purged.blocks.dedup();
        purged.unnamed_blocks.sort();
        purged.unnamed_blocks.dedup();
        Ok(purged)
    }
}
