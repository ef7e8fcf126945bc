//! Snapshots: a dag-cbor DAG naming, per ecosystem, each cached metadata document and artifact
//! by CID. Its root CID identifies a state of the mirror; `cairn export`
//! writes it as the root of a CAR, and `cairn import` reads it to know what the CAR holds.
//!
//! ```text
//! root  {"type": "cairn-snapshot", "version": 1 or 2, "ecosystems": {NAME: link(eco)}}
//! eco   {"refs": [link(page)…], "artifacts": [link(page)…], "documents": [link(page)…]}
//! documents page  [{"key", "cid": link(raw block), "root"?: link(dag-pb), "url", "size", "etag", "status", "fetched", "modified"}…]
//! artifacts page  [{"key", "flat": link(flat CID), "root": link(root CID), "url", "size", "fetched"}…]
//! refs page       [{"key", "flat": link, "url", "size", "listed-by"}…]
//! ```
//! Pages hold at most [`PAGE`] entries, so every block stays far below the 1 MiB block size.
//!
//! A document is named by its raw block CID (the sha2-256 of its bytes), whatever its size. One
//! over [`MAX_DOCUMENT_BLOCK`] cannot travel as one block, so a bundle carries it as a UnixFS
//! file and its entry also links that file's `root`. Version 2 is the format with such roots; a
//! snapshot without any is written as version 1, byte for byte as before, so older nodes still
//! read it.
//! `refs` carries what documents and listings say about artifacts not in the snapshot (apt's
//! `Packages` entries, versions not yet fetched), so an imported node resolves names as the
//! exporting one did.

use std::collections::BTreeMap;

use cid::Cid;

use crate::cid::{BlockCid, DAG_CBOR, FlatCid, RootCid, raw_cid};
use crate::dagcbor::Value;
use crate::index::{ArtifactRecord, MetadataRecord, RefRecord};
use crate::upstream::strip_userinfo;

/// Entries per page block.
pub const PAGE: usize = 2048;
const TYPE: &str = "cairn-snapshot";
/// The largest document a bundle carries as one raw block: the largest block a CAR reader
/// takes. Larger ones travel as UnixFS files (1 MiB raw leaves under dag-pb nodes).
pub const MAX_DOCUMENT_BLOCK: u64 = crate::car::MAX_BLOCK_SIZE;

/// A cached metadata document.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct DocumentEntry {
    pub ecosystem: String,
    pub key: String,
    pub record: MetadataRecord,
    /// The root of the UnixFS file a bundle carries the document as, for one over
    /// [`MAX_DOCUMENT_BLOCK`] ([`crate::bundle::chunk_documents`] sets it); `None` for one that
    /// travels as its raw block.
    pub root: Option<RootCid>,
}

/// A cached artifact.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ArtifactEntry {
    pub ecosystem: String,
    pub key: String,
    pub record: ArtifactRecord,
}

/// What a document or listing says about an artifact.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct RefEntry {
    pub ecosystem: String,
    pub key: String,
    pub listed_by: String,
    pub record: RefRecord,
}

/// A state of the mirror.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Snapshot {
    pub documents: Vec<DocumentEntry>,
    pub artifacts: Vec<ArtifactEntry>,
    pub refs: Vec<RefEntry>,
}

fn dag_cbor_cid(bytes: &[u8]) -> Cid {
    let digest = crate::cid::sha256(bytes);
    let raw = raw_cid(crate::cid::SHA2_256, &digest);
    Cid::new_v1(DAG_CBOR, *raw.hash())
}

/// A snapshot encoded: its root CID and every block, root first.
#[derive(Clone, Debug)]
pub struct Encoded {
    pub root: Cid,
    pub blocks: Vec<(Cid, Vec<u8>)>,
}

impl Snapshot {
    /// Entries in the order [`Snapshot::decode`] returns them (ecosystems in dag-cbor key order,
    /// then keys), which is the order a bundle carries their blocks in.
    pub fn normalize(&mut self) {
        fn order(eco: &str) -> (usize, &str) {
            (eco.len(), eco)
        }
        self.documents
            .sort_by(|a, b| (order(&a.ecosystem), &a.key).cmp(&(order(&b.ecosystem), &b.key)));
        self.artifacts
            .sort_by(|a, b| (order(&a.ecosystem), &a.key).cmp(&(order(&b.ecosystem), &b.key)));
        self.refs
            .sort_by(|a, b| (order(&a.ecosystem), &a.key).cmp(&(order(&b.ecosystem), &b.key)));
    }

    /// Encode as dag-cbor blocks. Deterministic: the same state gives the same root.
    pub fn encode(&self) -> Encoded {
        #[derive(Default)]
        struct Eco<'a> {
            documents: Vec<&'a DocumentEntry>,
            artifacts: Vec<&'a ArtifactEntry>,
            refs: Vec<&'a RefEntry>,
        }
        let mut ecos: BTreeMap<&str, Eco<'_>> = BTreeMap::new();
        for d in &self.documents {
            ecos.entry(&d.ecosystem).or_default().documents.push(d);
        }
        for a in &self.artifacts {
            ecos.entry(&a.ecosystem).or_default().artifacts.push(a);
        }
        for r in &self.refs {
            ecos.entry(&r.ecosystem).or_default().refs.push(r);
        }
        let mut blocks: Vec<(Cid, Vec<u8>)> = Vec::new();
        let put = |value: Value, blocks: &mut Vec<(Cid, Vec<u8>)>| {
            let bytes = value.encode();
            let cid = dag_cbor_cid(&bytes);
            blocks.push((cid, bytes));
            cid
        };
        let pages = |entries: Vec<Value>, blocks: &mut Vec<(Cid, Vec<u8>)>| -> Value {
            Value::Array(
                entries
                    .chunks(PAGE)
                    .map(|chunk| Value::Link(put(Value::Array(chunk.to_vec()), blocks)))
                    .collect(),
            )
        };
        let mut eco_links = Vec::new();
        for (name, mut eco) in ecos {
            eco.documents.sort_by(|a, b| a.key.cmp(&b.key));
            eco.artifacts.sort_by(|a, b| a.key.cmp(&b.key));
            eco.refs.sort_by(|a, b| a.key.cmp(&b.key));
            let mut eco_pages = Vec::new();
            let documents = pages(
                eco.documents.iter().map(|d| document(d)).collect(),
                &mut eco_pages,
            );
            let artifacts = pages(
                eco.artifacts.iter().map(|a| artifact(a)).collect(),
                &mut eco_pages,
            );
            let refs = pages(
                eco.refs.iter().map(|r| reference(r)).collect(),
                &mut eco_pages,
            );
            let node = Value::map(vec![
                ("documents", documents),
                ("artifacts", artifacts),
                ("refs", refs),
            ]);
            // Each block after the ones that link to it, so a reader never holds a block it
            // cannot place yet.
            eco_links.push((name, Value::Link(put(node, &mut blocks))));
            blocks.append(&mut eco_pages);
        }
        // Version 1 unless a document needs what only version 2 says.
        let version = if self.documents.iter().any(|d| d.root.is_some()) {
            2
        } else {
            1
        };
        let root = Value::map(vec![
            ("type", Value::text(TYPE)),
            ("version", Value::Int(version)),
            ("ecosystems", Value::map(eco_links)),
        ]);
        let root_cid = put(root, &mut blocks);
        // Root first: a reader of the CAR learns the structure before the content, and every
        // block comes after the block that links to it.
        blocks.rotate_right(1);
        Encoded {
            root: root_cid,
            blocks,
        }
    }

    /// Decode the snapshot rooted at `root`, fetching its blocks with `get` (verified by the
    /// caller against their CIDs).
    pub fn decode(
        root: &Cid,
        mut get: impl FnMut(&Cid) -> Result<Vec<u8>, String>,
    ) -> Result<Snapshot, String> {
        let mut read = |cid: &Cid| -> Result<Value, String> {
            if cid.codec() != DAG_CBOR {
                return Err(format!("snapshot block {cid} is not dag-cbor"));
            }
            Value::decode(&get(cid)?).map_err(|e| format!("snapshot block {cid}: {e}"))
        };
        let top = read(root)?;
        if top.get("type").and_then(Value::as_text) != Some(TYPE) {
            return Err(format!("{root} is not a Cairn snapshot"));
        }
        let version = match top.get("version").and_then(Value::as_u64) {
            Some(v @ (1 | 2)) => v,
            Some(v) => {
                return Err(format!(
                    "{root} is a version {v} Cairn snapshot; this node reads versions 1 and 2 (upgrade it)"
                ));
            }
            None => return Err(format!("snapshot {root} has no version")),
        };
        let Some(Value::Map(ecos)) = top.get("ecosystems") else {
            return Err(format!("snapshot {root} has no ecosystems map"));
        };
        let mut snapshot = Snapshot::default();
        for (name, link) in ecos {
            let eco_cid = link
                .as_link()
                .ok_or_else(|| format!("snapshot ecosystem {name} is not a link"))?;
            let eco = read(eco_cid)?;
            for (field, kind) in [("documents", 0), ("artifacts", 1), ("refs", 2)] {
                let pages = eco
                    .get(field)
                    .and_then(Value::as_array)
                    .ok_or_else(|| format!("snapshot {name}: no {field} list"))?;
                for page in pages {
                    let page_cid = page
                        .as_link()
                        .ok_or_else(|| format!("snapshot {name} {field}: not a link"))?;
                    let entries = read(page_cid)?;
                    let entries = entries
                        .as_array()
                        .ok_or_else(|| format!("snapshot page {page_cid} is not a list"))?;
                    for entry in entries {
                        let bad = |what: &str| format!("snapshot page {page_cid}: {what}");
                        match kind {
                            0 => snapshot
                                .documents
                                .push(read_document(name, entry, version).map_err(|e| bad(&e))?),
                            1 => snapshot
                                .artifacts
                                .push(read_artifact(name, entry).map_err(|e| bad(&e))?),
                            _ => snapshot
                                .refs
                                .push(read_reference(name, entry).map_err(|e| bad(&e))?),
                        }
                    }
                }
            }
        }
        Ok(snapshot)
    }
}

/// The snapshot of what `index` holds: everything, or (`only`) the artifacts with these flat
/// CIDs plus what serving them offline needs: the documents and listings that name them (and
/// the documents that name those listings), what was derived from them, documents that list no
/// artifact at all (cargo's `config.json`), and the references those documents and listings
/// carry. Returns the flat CIDs of `only` the index does not hold.
pub fn collect(
    index: &crate::index::Index,
    only: Option<&std::collections::HashSet<FlatCid>>,
) -> Result<(Snapshot, Vec<FlatCid>), crate::error::IndexError> {
    use std::collections::HashSet;
    let documents = index.all_metadata()?;
    let artifacts = index.all_artifacts()?;
    let refs = index.all_refs()?;
    let to_snapshot = |d: Vec<(String, String, MetadataRecord)>,
                       a: Vec<(String, String, ArtifactRecord)>,
                       r: Vec<(String, String, String, RefRecord)>| {
        let mut snapshot = Snapshot {
            documents: d
                .into_iter()
                .map(|(ecosystem, key, record)| DocumentEntry {
                    ecosystem,
                    key,
                    record,
                    root: None,
                })
                .collect(),
            artifacts: a
                .into_iter()
                .map(|(ecosystem, key, record)| ArtifactEntry {
                    ecosystem,
                    key,
                    record,
                })
                .collect(),
            refs: r
                .into_iter()
                .map(|(ecosystem, key, listed_by, record)| RefEntry {
                    ecosystem,
                    key,
                    listed_by,
                    record,
                })
                .collect(),
        };
        snapshot.normalize();
        snapshot
    };
    let Some(only) = only else {
        return Ok((to_snapshot(documents, artifacts, refs), Vec::new()));
    };
    let listed_by: std::collections::HashMap<(&str, &str), &str> = refs
        .iter()
        .map(|(eco, key, by, _)| ((eco.as_str(), key.as_str()), by.as_str()))
        .collect();
    let doc_keys: HashSet<(&str, &str)> = documents
        .iter()
        .map(|(eco, key, _)| (eco.as_str(), key.as_str()))
        .collect();
    let art_keys: HashSet<(&str, &str)> = artifacts
        .iter()
        .map(|(eco, key, _)| (eco.as_str(), key.as_str()))
        .collect();
    let mut found = HashSet::new();
    let mut want_arts: HashSet<(String, String)> = HashSet::new();
    for (eco, key, record) in &artifacts {
        if only.contains(&record.flat) {
            found.insert(record.flat);
            want_arts.insert((eco.clone(), key.clone()));
        }
    }
    // Artifacts derived from a selected one (PyPI's `.metadata`).
    for (eco, key, record) in &artifacts {
        if let Some(source) = record.upstream_url.strip_prefix("derived from ")
            && want_arts.contains(&(eco.clone(), source.to_owned()))
        {
            want_arts.insert((eco.clone(), key.clone()));
        }
    }
    // Follow what lists each selected artifact up to a document.
    let mut want_docs: HashSet<(String, String)> = HashSet::new();
    let mut queue: Vec<(String, String)> = want_arts.iter().cloned().collect();
    while let Some((eco, key)) = queue.pop() {
        let by = listed_by.get(&(eco.as_str(), key.as_str())).or_else(|| {
            // A file named through a mutable key is indexed as `KEY@FLAT`.
            let (name, _) = crate::content_key::read(&key)?;
            listed_by.get(&(eco.as_str(), name))
        });
        let Some(by) = by else { continue };
        if doc_keys.contains(&(eco.as_str(), *by)) {
            want_docs.insert((eco.clone(), (*by).to_owned()));
        } else if art_keys.contains(&(eco.as_str(), *by))
            && want_arts.insert((eco.clone(), (*by).to_owned()))
        {
            queue.push((eco.clone(), (*by).to_owned()));
        }
    }
    // Documents that list nothing (cargo's config.json, apt's Release.gpg) cost little.
    let listing: HashSet<(&str, &str)> = refs
        .iter()
        .map(|(eco, _, by, _)| (eco.as_str(), by.as_str()))
        .collect();
    for (eco, key, _) in &documents {
        if !listing.contains(&(eco.as_str(), key.as_str())) {
            want_docs.insert((eco.clone(), key.clone()));
        }
    }
    let by_wanted = |eco: &str, by: &str| {
        let pair = (eco.to_owned(), by.to_owned());
        want_docs.contains(&pair) || want_arts.contains(&pair)
    };
    let refs: Vec<_> = refs
        .iter()
        .filter(|(eco, _, by, _)| by_wanted(eco, by))
        .cloned()
        .collect();
    let documents: Vec<_> = documents
        .into_iter()
        .filter(|(eco, key, _)| want_docs.contains(&(eco.clone(), key.clone())))
        .collect();
    let artifacts: Vec<_> = artifacts
        .into_iter()
        .filter(|(eco, key, _)| want_arts.contains(&(eco.clone(), key.clone())))
        .collect();
    let missing = only
        .iter()
        .filter(|f| !found.contains(*f))
        .copied()
        .collect();
    Ok((to_snapshot(documents, artifacts, refs), missing))
}

fn document(d: &DocumentEntry) -> Value {
    let r = &d.record;
    let mut fields = vec![
        ("key", Value::text(&d.key)),
        ("cid", r.cid.map_or(Value::Null, |c| Value::Link(c.0))),
        (
            "url",
            Value::text(strip_userinfo(&r.upstream_url).into_owned()),
        ),
        ("size", Value::Int(i128::from(r.size))),
        ("etag", Value::opt_text(r.etag.as_deref())),
        ("status", Value::Int(i128::from(r.status))),
        ("fetched", Value::Int(i128::from(r.fetched_at))),
        ("modified", Value::opt_text(r.last_modified.as_deref())),
    ];
    // Only when there is one: an entry without it is exactly a version 1 entry.
    if let Some(root) = d.root {
        fields.push(("root", Value::Link(root.0)));
    }
    Value::map(fields)
}

fn artifact(a: &ArtifactEntry) -> Value {
    let r = &a.record;
    Value::map(vec![
        ("key", Value::text(&a.key)),
        ("flat", Value::Link(r.flat.0)),
        ("root", Value::Link(r.root.0)),
        (
            "url",
            Value::text(strip_userinfo(&r.upstream_url).into_owned()),
        ),
        ("size", Value::Int(i128::from(r.size))),
        ("fetched", Value::Int(i128::from(r.fetched_at))),
    ])
}

fn reference(r: &RefEntry) -> Value {
    Value::map(vec![
        ("key", Value::text(&r.key)),
        ("flat", Value::Link(r.record.flat.0)),
        (
            "url",
            Value::text(strip_userinfo(&r.record.url).into_owned()),
        ),
        (
            "size",
            r.record
                .size
                .map_or(Value::Null, |s| Value::Int(i128::from(s))),
        ),
        ("listed-by", Value::text(&r.listed_by)),
    ])
}

fn text(v: &Value, field: &str) -> Result<String, String> {
    v.get(field)
        .and_then(Value::as_text)
        .map(str::to_owned)
        .ok_or_else(|| format!("entry without text {field}"))
}

/// The `url` field, without any userinfo a bundle written elsewhere may carry.
fn url_text(v: &Value) -> Result<String, String> {
    text(v, "url").map(|url| strip_userinfo(&url).into_owned())
}

fn opt_text(v: &Value, field: &str) -> Option<String> {
    v.get(field).and_then(Value::as_text).map(str::to_owned)
}

fn link(v: &Value, field: &str) -> Result<Cid, String> {
    v.get(field)
        .and_then(Value::as_link)
        .copied()
        .ok_or_else(|| format!("entry without link {field}"))
}

fn int(v: &Value, field: &str) -> Result<i64, String> {
    v.get(field)
        .and_then(Value::as_i64)
        .ok_or_else(|| format!("entry without integer {field}"))
}

fn read_document(eco: &str, v: &Value, version: u64) -> Result<DocumentEntry, String> {
    let cid = link(v, "cid")?;
    if cid.codec() != crate::cid::RAW || cid.hash().code() != crate::cid::SHA2_256 {
        return Err(format!("document {cid} is not a sha2-256 raw block"));
    }
    let root = match v.get("root") {
        None => None,
        Some(_) if version < 2 => {
            return Err(format!(
                "document {cid} has a root, which version {version} snapshots do not carry"
            ));
        }
        Some(root) => {
            let root = root
                .as_link()
                .copied()
                .ok_or_else(|| format!("document {cid}: its root is not a link"))?;
            if root.codec() != crate::cid::DAG_PB {
                return Err(format!("document {cid}: its root {root} is not dag-pb"));
            }
            Some(RootCid(root))
        }
    };
    Ok(DocumentEntry {
        root,
        ecosystem: eco.to_owned(),
        key: text(v, "key")?,
        record: MetadataRecord {
            private: false,
            cid: Some(BlockCid(cid)),
            status: u16::try_from(int(v, "status")?).map_err(|_| "bad status")?,
            upstream_url: url_text(v)?,
            fetched_at: int(v, "fetched")?,
            etag: opt_text(v, "etag"),
            last_modified: opt_text(v, "modified"),
            size: u64::try_from(int(v, "size")?).map_err(|_| "bad size")?,
        },
    })
}

fn read_artifact(eco: &str, v: &Value) -> Result<ArtifactEntry, String> {
    let flat = FlatCid(link(v, "flat")?);
    if flat.digest().is_none() {
        return Err(format!("artifact flat CID {flat} names no registry digest"));
    }
    Ok(ArtifactEntry {
        ecosystem: eco.to_owned(),
        key: text(v, "key")?,
        record: ArtifactRecord {
            private: false,
            flat,
            root: RootCid(link(v, "root")?),
            size: u64::try_from(int(v, "size")?).map_err(|_| "bad size")?,
            upstream_url: url_text(v)?,
            fetched_at: int(v, "fetched")?,
        },
    })
}

fn read_reference(eco: &str, v: &Value) -> Result<RefEntry, String> {
    Ok(RefEntry {
        ecosystem: eco.to_owned(),
        key: text(v, "key")?,
        listed_by: text(v, "listed-by")?,
        record: RefRecord {
            version: None,
            published: None,
            removed: None,
            yanked: false,
            package: None,
            flat: FlatCid(link(v, "flat")?),
            url: url_text(v)?,
            size: v.get("size").and_then(Value::as_u64),
        },
    })
}

#[cfg(test)]
mod tests;
