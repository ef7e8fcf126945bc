//! Writing what a bundle brought (documents, artifacts with their DAGs, listings' references)
//! in one transaction, without replacing what the node holds.

use rusqlite::{OptionalExtension, params};

use super::artifacts::{ArtifactRecord, insert_dag};
use super::documents::{MetadataRecord, insert_metadata};
use super::events::{EventKind, insert_event};
use super::held::Touched;
use super::refs::{RefRecord, insert_refs};
use super::{Index, IndexError, err, lock};
use crate::unixfs::Dag;

/// A metadata document a bundle brought, with the references its adapter read from it.
#[derive(Clone, Debug)]
pub struct ImportedDocument {
    pub ecosystem: String,
    pub key: String,
    pub record: MetadataRecord,
    pub refs: Vec<(String, RefRecord)>,
}

/// What one listing artifact says about others: `(ecosystem, listing key, references)`.
pub type ListingRefs = (String, String, Vec<(String, RefRecord)>);

impl Index {
    /// Index what a bundle brought, in one transaction, without replacing what is held: a
    /// document is written (with the references it lists) only when the node has no copy as new;
    /// an artifact only when its key is free. Listings' references are written as given. Each
    /// artifact indexed adds a row to `events`, in the same transaction, so that a store serving
    /// the same data directory in another process learns of it ([`super::events`]). Either all
    /// of it is indexed or none. Returns how many documents were written.
    pub(crate) fn import(
        &self,
        documents: &[ImportedDocument],
        artifacts: &[(String, String, ArtifactRecord, Option<Dag>)],
        listing_refs: &[ListingRefs],
    ) -> Result<u64, IndexError> {
        let mut conn = lock(&self.writer);
        let tx = conn.transaction().map_err(err("begin"))?;
        let mut written = 0;
        let mut removed = false;
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
            removed |= insert_refs(&tx, &doc.ecosystem, &doc.key, &doc.refs)?;
            written += 1;
        }
        let mut touched = Touched::default();
        for (eco, key, record, dag) in artifacts {
            touched.file(&tx, &record.flat.to_bytes())?;
            tx.prepare_cached(
                "INSERT INTO artifacts
                 (ecosystem, key, flat_cid, root_cid, size, upstream_url, fetched_at, last_access,
                  private)
                 VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?7, ?8)
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
                    record.fetched_at,
                    record.private
                ])
            })
            .map_err(err("write artifact"))
            .and_then(|added| match added {
                0 => Ok(()),
                _ => insert_event(&tx, EventKind::Imported, eco, key, record),
            })?;
            if let Some(dag) = dag {
                insert_dag(&tx, &record.flat, dag)?;
            }
        }
        for (eco, listed_by, refs) in listing_refs {
            removed |= insert_refs(&tx, eco, listed_by, refs)?;
        }
        let delta = touched.delta(&tx)?;
        tx.commit().map_err(err("commit import"))?;
        self.held.apply(delta);
        self.note_removed(removed);
        Ok(written)
    }
}
