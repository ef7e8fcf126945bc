//! Purging: the operator drops one package's cached files and documents at once (`cairn
//! purge`), so that nothing of it is served, held or announced, and the next request fetches it
//! from upstream again. The rows go in one transaction ([`Index::purge`]), then the files; each
//! file is a [`StoreEvent::Purged`] to the subscribers (the node withdraws it from the swarm).
//!
//! The unit is an artifact file, as for eviction: the bytes are what is purged, so a file goes
//! under every key that names it, even a key outside the selection (the same tarball cached
//! under another name): that key is fetched again on its next request. A document's `meta/`
//! file goes when no other row names the same block.
//!
//! A download under way is not in the index yet: one that commits after the purge is held
//! again (the engine's purge waits for the package's downloads first).
//!
//! [`Index::purge`]: crate::index::Index

use std::fs;

use super::Store;
use crate::error::StoreError;
use crate::events::StoreEvent;
use crate::index::{PurgeKeys, PurgedRows};

impl Store {
    /// Drop what `keys` selects in `ecosystem`: rows first, in one transaction, then the files.
    /// Blocking; returns what went. A file that cannot be deleted after its rows went is an
    /// orphan (logged), never served again.
    pub fn purge(&self, ecosystem: &str, keys: &PurgeKeys<'_>) -> Result<PurgedRows, StoreError> {
        let purged = self.index.purge(ecosystem, keys)?;
        for file in &purged.files {
            remove(&self.blob_path(&file.flat));
            self.events.emit(StoreEvent::Purged {
                flat: file.flat,
                root: file.root,
                size: file.size,
            });
        }
        for block in &purged.unnamed_blocks {
            remove(&self.meta_path(block));
        }
        Ok(purged)
    }
}

/// Delete a file whose rows are gone (already gone is fine).
fn remove(path: &std::path::Path) {
    match fs::remove_file(path) {
        Ok(()) => {}
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => {}
        Err(e) => tracing::warn!("purged {} but cannot delete it: {e}", path.display()),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::cid::{Algorithm, Digest, FlatCid};
    use crate::index::{MetadataRecord, RefRecord};
    use crate::store::Origin;
    use crate::testing::noise;

    fn open() -> (tempfile::TempDir, Store) {
        let dir = tempfile::tempdir().expect("tempdir");
        let store = Store::open(dir.path()).expect("store");
        (dir, store)
    }

    /// Commit `data` under `ecosystem`/`key`.
    fn add(store: &Store, ecosystem: &str, key: &str, data: &[u8]) -> FlatCid {
        let mut writer = store
            .artifact_writer(Digest::of(Algorithm::Sha512, data))
            .expect("writer");
        writer.write(data).expect("write");
        let origin = Origin {
            private: false,
            upstream_url: format!("http://upstream.invalid/{key}"),
            fetched_at: 1,
        };
        store
            .commit_artifact(ecosystem, key, writer, origin, |_| {})
            .expect("commit")
            .record
            .flat
    }

    /// Store a document `key` of `body` listing `refs` (key, bytes).
    fn document(store: &Store, key: &str, body: &[u8], refs: &[(&str, &[u8])]) {
        let record = MetadataRecord {
            private: false,
            cid: None,
            status: 200,
            upstream_url: format!("http://upstream.invalid/{key}"),
            fetched_at: 1,
            etag: None,
            last_modified: None,
            size: 0,
        };
        let refs: Vec<(String, RefRecord)> = refs
            .iter()
            .map(|(k, data)| {
                (
                    (*k).to_owned(),
                    RefRecord {
                        version: None,
                        published: None,
                        removed: None,
                        yanked: false,
                        package: None,
                        flat: Digest::of(Algorithm::Sha512, data).flat_cid(),
                        url: format!("http://upstream.invalid/{k}"),
                        size: Some(data.len() as u64),
                    },
                )
            })
            .collect();
        store
            .put_document("npm", key, body, record, &refs)
            .expect("document");
    }

    fn strings(items: &[&str]) -> Vec<String> {
        items.iter().map(|s| (*s).to_owned()).collect()
    }

    #[test]
    fn a_package_purge_drops_its_document_refs_files_and_leaves_and_tells_subscribers() {
        let (_dir, store) = open();
        let (old, new, other) = (noise(3000, 1), noise(2_500_000, 3), noise(1000, 5));
        document(
            &store,
            "left-pad",
            b"{\"name\":\"left-pad\"}",
            &[
                ("left-pad/-/left-pad-1.0.0.tgz", &old),
                ("left-pad/-/left-pad-1.1.0.tgz", &new),
            ],
        );
        document(
            &store,
            "lodash",
            b"{\"name\":\"lodash\"}",
            &[("lodash/-/lodash-4.0.0.tgz", &other)],
        );
        let old_flat = add(&store, "npm", "left-pad/-/left-pad-1.0.0.tgz", &old);
        let new_flat = add(&store, "npm", "left-pad/-/left-pad-1.1.0.tgz", &new);
        let kept = add(&store, "npm", "lodash/-/lodash-4.0.0.tgz", &other);
        let doc_cid = store
            .index()
            .get_metadata("npm", "left-pad")
            .expect("read")
            .and_then(|r| r.cid)
            .expect("a stored document");
        let mut events = store.subscribe().expect("subscribe");

        let purged = store
            .purge(
                "npm",
                &PurgeKeys {
                    documents: &strings(&["left-pad"]),
                    listed_by: &strings(&["left-pad"]),
                    artifact_prefixes: &strings(&["left-pad/-/"]),
                    owns: &|_| true,
                },
            )
            .expect("purge");

        assert_eq!(purged.documents, ["left-pad"]);
        assert_eq!(purged.files.len(), 2);
        assert_eq!(purged.unnamed_blocks, [doc_cid]);
        let index = store.index();
        assert_eq!(index.get_metadata("npm", "left-pad").expect("read"), None);
        for (key, flat) in [
            ("left-pad/-/left-pad-1.0.0.tgz", old_flat),
            ("left-pad/-/left-pad-1.1.0.tgz", new_flat),
        ] {
            assert_eq!(index.get_artifact("npm", key).expect("read"), None, "{key}");
            assert_eq!(index.get_ref("npm", key).expect("read"), None, "{key}");
            assert_eq!(index.get_flat(&flat).expect("read"), None);
            assert!(!store.blob_path(&flat).exists(), "{key}'s file is deleted");
        }
        // Nothing of it is left to serve to a peer.
        assert!(
            store
                .blocks()
                .locate(&new_flat.0)
                .expect("locate")
                .is_none()
        );
        assert!(
            !store.meta_path(&doc_cid).exists(),
            "the document's block is deleted"
        );
        let mut heard = Vec::new();
        while let Ok(event) = events.try_recv() {
            heard.push(event);
        }
        assert_eq!(heard.len(), 2, "{heard:?}");
        assert!(heard.iter().all(|e| matches!(e, StoreEvent::Purged { .. })));
        // Another package is untouched.
        assert!(store.blob_path(&kept).exists());
        assert!(index.get_metadata("npm", "lodash").expect("read").is_some());
        assert!(
            index
                .get_ref("npm", "lodash/-/lodash-4.0.0.tgz")
                .expect("read")
                .is_some()
        );
    }

    #[test]
    fn a_version_purge_drops_only_the_files_it_owns_and_keeps_the_document() {
        let (_dir, store) = open();
        let (one, two) = (noise(1000, 5), noise(1000, 7));
        document(
            &store,
            "left-pad",
            b"{}",
            &[
                ("left-pad/-/left-pad-1.0.0.tgz", &one),
                ("left-pad/-/left-pad-2.0.0.tgz", &two),
            ],
        );
        let gone = add(&store, "npm", "left-pad/-/left-pad-1.0.0.tgz", &one);
        let stays = add(&store, "npm", "left-pad/-/left-pad-2.0.0.tgz", &two);
        let purged = store
            .purge(
                "npm",
                &PurgeKeys {
                    documents: &[],
                    listed_by: &strings(&["left-pad"]),
                    artifact_prefixes: &strings(&["left-pad/-/"]),
                    owns: &|key| key == "left-pad/-/left-pad-1.0.0.tgz",
                },
            )
            .expect("purge");
        assert_eq!(purged.files.len(), 1);
        assert!(purged.documents.is_empty());
        assert!(!store.blob_path(&gone).exists());
        assert!(store.blob_path(&stays).exists());
        let index = store.index();
        assert!(
            index
                .get_metadata("npm", "left-pad")
                .expect("read")
                .is_some()
        );
        // The document stays, so do its references: the next request is verified against them.
        assert!(
            index
                .get_ref("npm", "left-pad/-/left-pad-1.0.0.tgz")
                .expect("read")
                .is_some()
        );
    }

    #[test]
    fn the_same_bytes_under_a_key_outside_the_purge_go_too() {
        let (_dir, store) = open();
        let data = noise(2000, 9);
        let flat = add(&store, "npm", "evil/-/evil-1.0.0.tgz", &data);
        add(&store, "npm", "innocent/-/innocent-1.0.0.tgz", &data);
        add(&store, "pypi", "evil/evil-1.0.0.tar.gz", &data);
        let purged = store
            .purge(
                "npm",
                &PurgeKeys {
                    documents: &[],
                    listed_by: &[],
                    artifact_prefixes: &strings(&["evil/-/"]),
                    owns: &|_| true,
                },
            )
            .expect("purge");
        assert_eq!(purged.files.len(), 1);
        assert_eq!(
            purged.files[0].keys,
            [
                ("npm".to_owned(), "evil/-/evil-1.0.0.tgz".to_owned()),
                ("npm".to_owned(), "innocent/-/innocent-1.0.0.tgz".to_owned()),
                ("pypi".to_owned(), "evil/evil-1.0.0.tar.gz".to_owned()),
            ]
        );
        assert_eq!(store.index().get_flat(&flat).expect("read"), None);
        assert!(!store.blob_path(&flat).exists());
    }

    #[test]
    fn a_document_block_another_row_names_stays() {
        let (_dir, store) = open();
        document(&store, "a", b"same bytes", &[]);
        document(&store, "b", b"same bytes", &[]);
        let cid = store
            .index()
            .get_metadata("npm", "a")
            .expect("read")
            .and_then(|r| r.cid)
            .expect("cid");
        let purged = store
            .purge(
                "npm",
                &PurgeKeys {
                    documents: &strings(&["a"]),
                    listed_by: &[],
                    artifact_prefixes: &[],
                    owns: &|_| true,
                },
            )
            .expect("purge");
        assert_eq!(purged.documents, ["a"]);
        assert!(purged.unnamed_blocks.is_empty());
        assert!(store.meta_path(&cid).exists(), "b still names the block");
        assert_eq!(store.read_metadata(&cid).expect("read"), &b"same bytes"[..]);
    }

    #[test]
    fn a_prefix_does_not_reach_a_package_whose_name_only_starts_alike() {
        let (_dir, store) = open();
        let kept = add(
            &store,
            "npm",
            "left-pad-extra/-/left-pad-extra-1.0.0.tgz",
            &noise(100, 11),
        );
        let purged = store
            .purge(
                "npm",
                &PurgeKeys {
                    documents: &strings(&["left-pad"]),
                    listed_by: &strings(&["left-pad"]),
                    artifact_prefixes: &strings(&["left-pad/-/"]),
                    owns: &|_| true,
                },
            )
            .expect("purge");
        assert_eq!(purged, PurgedRows::default());
        assert!(store.blob_path(&kept).exists());
    }
}
