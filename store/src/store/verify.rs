//! `verify`: reading stored files again and checking them against the CIDs the index holds for
//! them. An artifact's bytes are checked against its flat CID (the registry's digest) and its
//! DAG: the UnixFS layout is built again from the bytes (every 1 MiB leaf hashed) and its root
//! must be the row's, and the index must hold the DAG's inner nodes (without them the file
//! cannot be served to peers). A metadata block is checked against its CID.
//!
//! A file is read one leaf at a time, so memory does not grow with its size. A file that went
//! between the listing and its check (evicted, purged) is not damage: only a file that rows
//! still name counts. What to do with damage (move it aside, fetch it again) is the caller's:
//! [`Store::forget_damaged`], [`Store::forget_damaged_document`].

use std::fs::{self, File};
use std::io::{ErrorKind, Read};

use super::Store;
use crate::cid::{BlockCid, FlatCid, Hasher, RAW, raw_block_cid};
use crate::error::StoreError;
use crate::index::HeldArtifact;
use crate::unixfs::{CHUNK_SIZE, DagBuilder};

/// What a check of one stored file found.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Checked {
    /// The file is whole and matches its CIDs.
    Sound,
    /// Nothing names the file any more (evicted or purged meanwhile): nothing to check.
    Gone,
    /// The file is missing, unreadable or does not match: why, in words.
    Damaged(String),
}

/// A stored file found damaged and dropped.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct DamagedFile {
    /// Why it is damaged, in words.
    pub why: String,
    /// The `(ecosystem, key)` of the rows that named it (dropped with it).
    pub keys: Vec<(String, String)>,
    /// Its size as the index had it (an artifact), or on disk (a document).
    pub size: u64,
}

impl Store {
    /// Check one artifact file against its rows, calling `read` with the bytes of each chunk
    /// read (for progress). Blocking.
    pub fn check_artifact(
        &self,
        held: &HeldArtifact,
        read: &mut dyn FnMut(u64),
    ) -> Result<Checked, StoreError> {
        let path = self.blob_path(&held.flat);
        let found = match File::open(&path) {
            Ok(file) => hash_file(file, held, read),
            Err(e) if e.kind() == ErrorKind::NotFound => Err("its file is missing".to_owned()),
            Err(e) => Err(format!("its file cannot be opened: {e}")),
        };
        let damage = match found {
            Ok(()) => match self.missing_inner_node(held)? {
                None => return Ok(Checked::Sound),
                Some(missing) => missing,
            },
            Err(damage) => damage,
        };
        // Damage counts only while rows still name the file: an eviction or a purge may have
        // taken it since the listing.
        Ok(match self.index.get_flat(&held.flat)? {
            Some(_) => Checked::Damaged(damage),
            None => Checked::Gone,
        })
    }

    /// Check one metadata block against its CID. Blocking.
    pub fn check_document(&self, cid: &BlockCid) -> Result<Checked, StoreError> {
        let path = self.meta_path(cid);
        let damage = match fs::read(&path) {
            Ok(bytes) => {
                let got = BlockCid(raw_block_cid(&bytes));
                if got == *cid {
                    return Ok(Checked::Sound);
                }
                format!("its bytes hash to {got}")
            }
            Err(e) if e.kind() == ErrorKind::NotFound => "its file is missing".to_owned(),
            Err(e) => format!("its file cannot be read: {e}"),
        };
        Ok(if self.index.document_blocks()?.contains(cid) {
            Checked::Damaged(damage)
        } else {
            Checked::Gone
        })
    }

    /// Drop the metadata block `cid`, found damaged: its file moved aside (into `tmp/`) and
    /// the rows naming it deleted, so that the next request fetches those documents again.
    /// The `(ecosystem, key)` of the rows dropped. Blocking.
    pub fn forget_damaged_document(
        &self,
        cid: &BlockCid,
    ) -> Result<Vec<(String, String)>, StoreError> {
        let path = self.meta_path(cid);
        let aside = self.root.join("tmp").join(format!("damaged-{cid}"));
        let moved = match fs::rename(&path, &aside) {
            Err(e) if e.kind() != ErrorKind::NotFound => {
                Err(StoreError::io("move aside", &path, e))
            }
            _ => Ok(()),
        };
        let keys = self.index.forget_document_block(cid)?;
        moved.map(|()| keys)
    }

    /// Check the artifact file `flat` again and, when it is damaged, drop it
    /// ([`Store::forget_damaged`]). What was dropped; `None` when the file is sound or no
    /// longer held. Blocking.
    pub fn forget_if_damaged(&self, flat: &FlatCid) -> Result<Option<DamagedFile>, StoreError> {
        let Some((size, root)) = self.index.get_flat(flat)? else {
            return Ok(None);
        };
        let held = HeldArtifact {
            flat: *flat,
            root,
            size,
        };
        let Checked::Damaged(why) = self.check_artifact(&held, &mut |_| {})? else {
            return Ok(None);
        };
        let keys = self.index.keys_of(flat)?;
        self.forget_damaged(flat)?;
        Ok(Some(DamagedFile { why, keys, size }))
    }

    /// Check the metadata block `cid` again and, when it is damaged, drop it
    /// ([`Store::forget_damaged_document`]). Blocking.
    pub fn forget_document_if_damaged(
        &self,
        cid: &BlockCid,
    ) -> Result<Option<DamagedFile>, StoreError> {
        let path = self.meta_path(cid);
        let size = fs::metadata(&path).map(|m| m.len()).unwrap_or(0);
        let Checked::Damaged(why) = self.check_document(cid)? else {
            return Ok(None);
        };
        let keys = self.forget_damaged_document(cid)?;
        Ok(Some(DamagedFile { why, keys, size }))
    }

    /// The metadata blocks rows name, in CID order.
    pub fn document_block_list(&self) -> Result<Vec<BlockCid>, StoreError> {
        let mut blocks: Vec<BlockCid> = self.index.document_blocks()?.into_iter().collect();
        blocks.sort_by_key(BlockCid::to_bytes);
        Ok(blocks)
    }

    /// The first inner node of `held`'s DAG that the index does not hold, named.
    fn missing_inner_node(&self, held: &HeldArtifact) -> Result<Option<String>, StoreError> {
        let mut pending = vec![held.root.0];
        while let Some(cid) = pending.pop() {
            if cid.codec() == RAW {
                continue;
            }
            let Some(block) = self.index.get_block(&cid)? else {
                return Ok(Some(format!("its DAG's inner node {cid} is not indexed")));
            };
            match crate::unixfs::decode_node(&block) {
                Ok(node) => pending.extend(node.links.iter().map(|l| l.cid)),
                Err(e) => return Ok(Some(format!("its DAG's inner node {cid}: {e}"))),
            }
        }
        Ok(None)
    }
}

/// Read `file` a chunk at a time and check it against `held`: its size, its flat CID's digest
/// (when the flat CID's hash function is one Cairn computes) and its DAG root.
fn hash_file(mut file: File, held: &HeldArtifact, read: &mut dyn FnMut(u64)) -> Result<(), String> {
    let expected = held.flat.digest();
    let mut flat = expected.as_ref().map(|d| Hasher::new(d.algorithm()));
    let mut dag = DagBuilder::new();
    let mut buf = vec![0u8; CHUNK_SIZE as usize];
    let mut total = 0u64;
    loop {
        let n = match file.read(&mut buf) {
            Ok(0) => break,
            Ok(n) => n,
            Err(e) if e.kind() == ErrorKind::Interrupted => continue,
            Err(e) => return Err(format!("its file cannot be read at byte {total}: {e}")),
        };
        total += n as u64;
        if total > held.size {
            return Err(format!("its file is longer than its {} bytes", held.size));
        }
        dag.update(&buf[..n]);
        if let Some(flat) = &mut flat {
            flat.update(&buf[..n]);
        }
        read(n as u64);
    }
    if total != held.size {
        return Err(format!("its file has {total} bytes, not its {}", held.size));
    }
    if let (Some(expected), Some(flat)) = (expected, flat)
        && flat.finish() != expected
    {
        return Err("its bytes do not match its flat CID (the registry's digest)".to_owned());
    }
    let root = dag.finish().root;
    if root != held.root.0 {
        return Err(format!("its bytes make the DAG {root}, not {}", held.root));
    }
    Ok(())
}
