//! What the swarm reads of this node's holdings to serve peers ([`LocalContent`]): blocks by
//! CID, committed artifacts with their leaves, the artifacts to announce (those held at start,
//! then each new one as it comes: [`HoldingChange`]), and metadata documents. The store side
//! implements it; the swarm holds it and nothing of the engine.
//!
//! Every method but [`LocalContent::changes`] blocks (a database, files): the swarm calls them on
//! the blocking thread pool.

use bytes::Bytes;
use cairn_ipld::cid::{DAG_PB, FlatCid, RAW, RootCid};
use cairn_ipld::unixfs::{self, Leaf};
use cid::Cid;
use futures_util::StreamExt as _;
use futures_util::stream::BoxStream;
use tokio::sync::broadcast;

use crate::source::PeerDocument;

/// Deepest DAG [`LocalContent::held`] walks (Cairn's are at most 4 levels below a PiB).
pub const MAX_DEPTH: usize = 16;

/// Largest inner node [`LocalContent::held`] reads: 1024 links of about 40 bytes each, with
/// room to spare.
pub const MAX_INNER_NODE: u64 = 1 << 20;

/// Why this node's holdings could not be read; the message names what was being read.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
#[error("{0}")]
pub struct ContentError(pub String);

impl ContentError {
    pub fn new(message: impl Into<String>) -> Self {
        ContentError(message.into())
    }
}

/// An artifact this node holds: its DAG root, size and leaves in file order.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct HeldArtifact {
    pub root: RootCid,
    pub size: u64,
    pub leaves: Vec<Leaf>,
}

/// This node's holdings, as the swarm reads them to serve peers.
///
/// Contract: every method blocks and is called off the async workers; `Ok(None)` (or an empty
/// list) means "not held here"; an `Err` is a failure to read, which the swarm logs and answers
/// as not held.
pub trait LocalContent: Send + Sync + 'static {
    /// The bytes of block `cid`, verified against it, when this node holds it and it is at most
    /// `max_size` bytes long (checked before any byte is read: a flat CID names a whole file).
    fn block(&self, cid: &Cid, max_size: u64) -> Result<Option<Bytes>, ContentError>;

    /// The UnixFS root and size of the committed artifact whose flat CID is `flat`.
    fn artifact(&self, flat: &FlatCid) -> Result<Option<(RootCid, u64)>, ContentError>;

    /// The committed artifact `flat` with its leaves in file order: [`LocalContent::artifact`],
    /// and the leaves listed by walking its DAG through [`LocalContent::block`]. The walk checks
    /// that the leaves cover exactly the artifact's size.
    fn held(&self, flat: &FlatCid) -> Result<Option<HeldArtifact>, ContentError> {
        let Some((root, size)) = self.artifact(flat)? else {
            return Ok(None);
        };
        let mut leaves = Vec::new();
        if root.0.codec() == RAW {
            leaves.push(Leaf {
                cid: root.0,
                offset: 0,
                len: size,
            });
        } else {
            list_leaves(
                &|cid: &Cid| self.block(cid, MAX_INNER_NODE),
                root.0,
                0,
                &mut leaves,
            )?;
        }
        let listed: u64 = leaves.iter().map(|l| l.len).sum();
        if listed != size {
            return Err(ContentError(format!(
                "the DAG of {flat} under {root} lists {listed} bytes, not {size}"
            )));
        }
        Ok(Some(HeldArtifact { root, size, leaves }))
    }

    /// Flat and root CIDs of the artifacts held, to announce to the swarm at start: the most
    /// recently used first, at most `limit` of them.
    fn held_artifacts(&self, limit: usize) -> Result<Vec<(FlatCid, RootCid)>, ContentError>;

    /// Every artifact this node comes to hold from now on (downloaded and committed, imported
    /// from a bundle by this process or another one writing the same data directory), as it
    /// comes: the swarm announces each. Taken once, before [`LocalContent::held_artifacts`], so
    /// that nothing falls between the two. Does not block; the stream ends when the holdings
    /// go.
    fn changes(&self) -> Result<BoxStream<'static, HoldingChange>, ContentError>;

    /// The copy of metadata document `key` of `ecosystem` that peers may read: the exact bytes
    /// upstream sent, their age and validators, and an `upstream_url` with no credentials.
    /// `None` when there is no document under that key (or only upstream's "not found").
    fn document(&self, ecosystem: &str, key: &str) -> Result<Option<PeerDocument>, ContentError>;
}

/// What [`LocalContent::changes`] tells the swarm.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum HoldingChange {
    /// Artifact `flat`, with UnixFS root `root`, is held now.
    Held { flat: FlatCid, root: RootCid },
    /// Artifact `flat`, with UnixFS root `root`, is no longer held (evicted).
    Dropped { flat: FlatCid, root: RootCid },
    /// `count` changes went by before they could be read: list what is held again.
    Missed { count: u64 },
}

/// The changes a broadcast `receiver` carries, each made a [`HoldingChange`] by `change` (or
/// passed over when it gives `None`); a receiver that lagged says [`HoldingChange::Missed`].
/// Ends when the sender goes.
pub fn changes_from<T, F>(
    receiver: broadcast::Receiver<T>,
    change: F,
) -> BoxStream<'static, HoldingChange>
where
    T: Clone + Send + 'static,
    F: Fn(T) -> Option<HoldingChange> + Send + 'static,
{
    use broadcast::error::RecvError;
    futures_util::stream::unfold((receiver, change), |(mut receiver, change)| async move {
        let next = loop {
            match receiver.recv().await {
                Ok(item) => match change(item) {
                    Some(next) => break next,
                    None => continue,
                },
                Err(RecvError::Lagged(count)) => break HoldingChange::Missed { count },
                Err(RecvError::Closed) => return None,
            }
        };
        Some((next, (receiver, change)))
    })
    .boxed()
}

type GetBlock<'a> = dyn Fn(&Cid) -> Result<Option<Bytes>, ContentError> + 'a;

/// Append the leaves under dag-pb node `cid` to `out`, offsets counted from `out`'s end.
fn list_leaves(
    get: &GetBlock<'_>,
    cid: Cid,
    depth: usize,
    out: &mut Vec<Leaf>,
) -> Result<(), ContentError> {
    if depth > MAX_DEPTH {
        return Err(ContentError(format!(
            "the DAG above {cid} is deeper than {MAX_DEPTH} levels"
        )));
    }
    let data = get(&cid)?.ok_or_else(|| ContentError(format!("inner node {cid} is not held")))?;
    let node = unixfs::decode_node(&data).map_err(|e| ContentError(format!("{cid}: {e}")))?;
    let file = node
        .data
        .map(unixfs::decode_unixfs)
        .transpose()
        .map_err(|e| ContentError(format!("{cid}: {e}")))?
        .ok_or_else(|| ContentError(format!("{cid} has no UnixFS data")))?;
    if !file.data.is_empty() || file.blocksizes.len() != node.links.len() {
        return Err(ContentError(format!(
            "{cid} is not a file node of the unixfs-v1-2025 profile"
        )));
    }
    for (link, len) in node.links.iter().zip(file.blocksizes) {
        match link.cid.codec() {
            RAW => {
                let offset = out.last().map_or(0, |l: &Leaf| l.offset + l.len);
                out.push(Leaf {
                    cid: link.cid,
                    offset,
                    len,
                });
            }
            DAG_PB => list_leaves(get, link.cid, depth + 1, out)?,
            codec => {
                return Err(ContentError(format!(
                    "{cid} links to {} of codec 0x{codec:x}",
                    link.cid
                )));
            }
        }
    }
    Ok(())
}

/// The text `url` (a URL or not) with the userinfo of a `scheme://user:pass@host` part removed.
/// Text that is not a URL with an authority comes back unchanged. For stored URL strings (index
/// rows, bundles, peers' answers), which may predate the rule or come from elsewhere: a
/// [`PeerDocument`]'s URL goes through it on the way out and on the way in.
pub fn strip_userinfo(url: &str) -> std::borrow::Cow<'_, str> {
    let Some(scheme_end) = url.find("://") else {
        return url.into();
    };
    let authority_start = scheme_end + 3;
    let rest = &url[authority_start..];
    let authority_len = rest.find(['/', '?', '#']).unwrap_or(rest.len());
    match rest[..authority_len].rfind('@') {
        Some(at) => format!("{}{}", &url[..authority_start], &rest[at + 1..]).into(),
        None => url.into(),
    }
}

#[cfg(test)]
mod tests;
