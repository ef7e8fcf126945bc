//! This node's holdings as the swarm reads them ([`LocalContent`]): a read-only view of the
//! store and index, and the store's events as the changes the swarm announces. The swarm holds a
//! [`Holdings`] and nothing of the engine.
//!
//! What peers may read: every block the gateway serves (verified on read, as ever), committed
//! artifacts, and the metadata documents this node fetched, as upstream sent them, with the
//! upstream URL stripped of any credentials (rows written before they were kept out of URLs
//! may still carry them). Upstream's "not found" answers are not documents.
//!
//! An open swarm (no swarm key) reads the holdings [`Holdings::without_private`]: private
//! content (from an upstream that was sent credentials) is then neither announced, nor listed,
//! nor served, as a file, a leaf of one, or a document. A file some public key also names is
//! public: its bytes are on a public registry anyway. A DAG's inner nodes stay readable: they
//! hold only links and sizes, and nobody is told their CIDs.

use std::sync::Arc;

use bytes::Bytes;
use cairn_peering::{
    ContentError, HoldingChange, LocalContent, PeerDocument, changes_from, strip_userinfo,
};
use cid::Cid;
use futures_util::stream::BoxStream;

use crate::blocks::{Blocks, Location};
use crate::cid::{FlatCid, RootCid};
use crate::events::StoreEvent;
use crate::index::Index;
use crate::store::Store;

/// The store and index, read for peers. Cheap to clone.
#[derive(Clone)]
pub struct Holdings {
    store: Store,
    index: Arc<Index>,
    blocks: Blocks,
    /// Private content is shown (a private swarm).
    private: bool,
}

impl Holdings {
    pub fn new(store: Store) -> Self {
        Holdings {
            blocks: store.blocks(),
            index: store.index().clone(),
            store,
            private: true,
        }
    }

    /// The same holdings with private content hidden, for an open swarm.
    pub fn without_private(self) -> Self {
        Holdings {
            private: false,
            ..self
        }
    }

    /// True when `flat` is to be hidden: private content that these holdings do not show.
    fn hides_file(&self, flat: &FlatCid) -> Result<bool, ContentError> {
        if self.private {
            return Ok(false);
        }
        self.index
            .file_is_private(flat)
            .map_err(|e| ContentError(format!("looking up artifact {flat}: {e}")))
    }
}

impl std::fmt::Debug for Holdings {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Holdings")
            .field("store", &self.store)
            .finish_non_exhaustive()
    }
}

impl LocalContent for Holdings {
    fn block(&self, cid: &Cid, max_size: u64) -> Result<Option<Bytes>, ContentError> {
        // A flat CID names a whole file: its size is known before a byte is read.
        let Some(location) = self
            .blocks
            .locate(cid)
            .map_err(|e| ContentError(format!("looking up block {cid}: {e}")))?
        else {
            return Ok(None);
        };
        if location.size() > max_size {
            return Ok(None);
        }
        let hidden = match &location {
            Location::Leaf(leaf) => self.hides_file(&leaf.flat)?,
            Location::Flat { flat, .. } => self.hides_file(flat)?,
            Location::Metadata { cid: block, .. } if !self.private => self
                .index
                .document_is_private(block)
                .map_err(|e| ContentError(format!("looking up block {cid}: {e}")))?,
            _ => false,
        };
        if hidden {
            return Ok(None);
        }
        self.blocks
            .read(cid, &location)
            .map(Some)
            .map_err(|e| ContentError(e.to_string()))
    }

    fn artifact(&self, flat: &FlatCid) -> Result<Option<(RootCid, u64)>, ContentError> {
        if self.hides_file(flat)? {
            return Ok(None);
        }
        let found = self
            .index
            .get_flat(flat)
            .map_err(|e| ContentError(format!("looking up artifact {flat}: {e}")))?;
        Ok(found.map(|(size, root)| (root, size)))
    }

    fn held_artifacts(&self, limit: usize) -> Result<Vec<(FlatCid, RootCid)>, ContentError> {
        let listed = if self.private {
            self.index.held_files(Some(limit))
        } else {
            self.index.held_public_files(limit)
        };
        listed.map_err(|e| ContentError(format!("listing the held artifacts: {e}")))
    }

    fn changes(&self) -> Result<BoxStream<'static, HoldingChange>, ContentError> {
        let events = self
            .store
            .subscribe()
            .map_err(|e| ContentError(format!("following the store's events: {e}")))?;
        let shows_private = self.private;
        Ok(changes_from(events, move |event| {
            let (flat, root) = event.cids();
            match event {
                StoreEvent::Committed { private, .. } | StoreEvent::Imported { private, .. } => {
                    (shows_private || !private).then_some(HoldingChange::Held { flat, root })
                }
                StoreEvent::Evicted { .. } | StoreEvent::Purged { .. } => {
                    Some(HoldingChange::Dropped { flat, root })
                }
            }
        }))
    }

    fn document(&self, ecosystem: &str, key: &str) -> Result<Option<PeerDocument>, ContentError> {
        let failed = |e: &dyn std::fmt::Display| {
            ContentError(format!("reading document {key:?} of {ecosystem}: {e}"))
        };
        let Some(record) = self
            .index
            .get_metadata(ecosystem, key)
            .map_err(|e| failed(&e))?
        else {
            return Ok(None);
        };
        let Some(cid) = record.cid else {
            return Ok(None);
        };
        if record.private && !self.private {
            return Ok(None);
        }
        let body = self.store.read_metadata(&cid).map_err(|e| failed(&e))?;
        Ok(Some(PeerDocument {
            body,
            upstream_url: strip_userinfo(&record.upstream_url).into_owned(),
            fetched_at: record.fetched_at,
            etag: record.etag,
            last_modified: record.last_modified,
            peer: Arc::from("self"),
        }))
    }
}

#[cfg(test)]
mod tests;
