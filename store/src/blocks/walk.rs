//! [`Walk`]: the blocks of a DAG in depth-first order, and the [`Selector`] that limits it
//! (`dag-scope`, `entity-bytes` and `dups` of the HTTP trustless gateway).

use std::collections::HashSet;
use std::fmt;
use std::fs::File;
use std::str::FromStr;

use bytes::Bytes;
use cid::Cid;

use crate::cid::{DAG_PB, FlatCid, IDENTITY, RAW};
use crate::unixfs::{decode_node, decode_unixfs};

use super::{BlockError, BlockErrorKind, Blocks, Location, MAX_BLOCK_SIZE, MAX_DEPTH};

impl Blocks {
    /// A depth-first walk of the DAG under `root` limited by `selector`, or `None` when the
    /// root block is not held. The root is read and verified here, so the errors a caller can
    /// still answer with a status (a range outside the file, a root too large for a block) come
    /// before the first block.
    pub fn walk(&self, root: Cid, selector: Selector) -> Result<Option<Walk>, BlockError> {
        let Some(location) = self.locate(&root)? else {
            return Ok(None);
        };
        if location.size() > MAX_BLOCK_SIZE {
            let hint = match &location {
                Location::Flat { root, .. } => {
                    format!(" (a whole artifact: walk its UnixFS DAG under {root} instead)")
                }
                _ => String::new(),
            };
            return Err(BlockErrorKind::TooLarge {
                cid: root,
                size: location.size(),
                hint,
            }
            .into());
        }
        let mut open = None;
        let data = self.read_with(&root, &location, &mut open)?;
        let mut walk = Walk {
            blocks: self.clone(),
            root,
            pending: Some(data.clone()),
            stack: Vec::new(),
            follow: Follow::None,
            range: None,
            dups: selector.dups,
            seen: HashSet::new(),
            open,
            entity_size: None,
            failed: false,
        };
        walk.start(&data, selector)?;
        Ok(Some(walk))
    }
}

/// `dag-scope`: how much of the DAG under the root to walk.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Hash)]
pub enum DagScope {
    /// The root block only.
    Block,
    /// The blocks needed to read the root's entity: for a UnixFS file, the whole file; for
    /// anything else, the root block.
    Entity,
    /// Everything reachable from the root.
    #[default]
    All,
}

impl FromStr for DagScope {
    type Err = String;
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        match s {
            "block" => Ok(DagScope::Block),
            "entity" => Ok(DagScope::Entity),
            "all" => Ok(DagScope::All),
            other => Err(format!(
                "dag-scope={other:?} is not one of block, entity, all"
            )),
        }
    }
}

impl fmt::Display for DagScope {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            DagScope::Block => "block",
            DagScope::Entity => "entity",
            DagScope::All => "all",
        })
    }
}

/// `entity-bytes=from:to`: an inclusive byte range of a file; `to` = `None` is `*` (the end);
/// negative values count from the end.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub struct EntityBytes {
    pub from: i64,
    pub to: Option<i64>,
}

impl FromStr for EntityBytes {
    type Err = String;
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        let bad = || format!("entity-bytes={s:?} is not from:to (integers, or * for to)");
        let (from, to) = s.split_once(':').ok_or_else(bad)?;
        let from = from.parse().map_err(|_| bad())?;
        let to = match to {
            "*" => None,
            to => Some(to.parse().map_err(|_| bad())?),
        };
        Ok(EntityBytes { from, to })
    }
}

impl fmt::Display for EntityBytes {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self.to {
            Some(to) => write!(f, "{}:{to}", self.from),
            None => write!(f, "{}:*", self.from),
        }
    }
}

/// An [`EntityBytes`] applied to an entity of known size.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Resolved {
    /// The inclusive range `[first, last]`, within the entity.
    Range(u64, u64),
    /// No byte at all (`to` before `from`, or an empty entity): only the root is needed.
    Empty,
    /// `from` is at or past the end.
    Outside,
}

impl EntityBytes {
    pub fn resolve(self, size: u64) -> Resolved {
        if size == 0 {
            return Resolved::Empty;
        }
        let from_end = |n: i64| size.checked_sub(n.unsigned_abs());
        let first = match self.from {
            n if n < 0 => from_end(n).unwrap_or(0),
            n => n as u64,
        };
        if first >= size {
            return Resolved::Outside;
        }
        let last = match self.to {
            None => Some(size - 1),
            Some(n) if n < 0 => from_end(n),
            Some(n) => Some((n as u64).min(size - 1)),
        };
        match last {
            Some(last) if last >= first => Resolved::Range(first, last),
            _ => Resolved::Empty,
        }
    }
}

/// What to walk: the gateway's `dag-scope`, `entity-bytes` and `dups`.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Hash)]
pub struct Selector {
    pub scope: DagScope,
    /// Implies [`DagScope::Entity`].
    pub bytes: Option<EntityBytes>,
    /// Yield a block every time the DAG links to it (`dups=y`), not only the first time.
    pub dups: bool,
}

/// Which links a walk follows.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Follow {
    /// None: the root block only.
    None,
    /// Those of UnixFS file nodes.
    File,
    /// All of them.
    All,
}

/// A child to visit, with the offset in the file where its bytes start.
struct Child {
    cid: Cid,
    start: u64,
}

/// Blocks of a DAG in depth-first order. Yields `(cid, verified bytes)`; identity blocks are
/// skipped (their bytes are in their parent), and so are repeats unless `dups` is set. Stops
/// after the first error: a missing or corrupt block ends the walk.
pub struct Walk {
    blocks: Blocks,
    root: Cid,
    /// The root block, until it is yielded.
    pending: Option<Bytes>,
    /// One entry per level below the root: the children still to visit.
    stack: Vec<std::vec::IntoIter<Child>>,
    follow: Follow,
    /// Inclusive file byte range whose blocks are wanted.
    range: Option<(u64, u64)>,
    dups: bool,
    seen: HashSet<Cid>,
    open: Option<(FlatCid, File)>,
    entity_size: Option<u64>,
    failed: bool,
}

impl fmt::Debug for Walk {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Walk")
            .field("root", &self.root)
            .field("depth", &self.stack.len())
            .field("range", &self.range)
            .finish_non_exhaustive()
    }
}

impl Walk {
    pub fn root(&self) -> &Cid {
        &self.root
    }

    /// Bytes of the root's entity when it is a file (a UnixFS file or a raw block).
    pub fn entity_size(&self) -> Option<u64> {
        self.entity_size
    }

    /// Work out from the root block what to follow.
    fn start(&mut self, data: &[u8], selector: Selector) -> Result<(), BlockError> {
        let root = self.root;
        let mut file = false;
        match root.codec() {
            DAG_PB => {
                let node = decode_node(data).map_err(|source| {
                    BlockError::from(BlockErrorKind::Decode { cid: root, source })
                })?;
                if let Some(unixfs) = node.data.and_then(|d| decode_unixfs(d).ok())
                    && unixfs.is_file()
                {
                    file = true;
                    self.entity_size = Some(unixfs.file_size());
                }
            }
            RAW => {
                file = true;
                self.entity_size = Some(data.len() as u64);
            }
            _ => {}
        }
        let scope = if selector.bytes.is_some() {
            DagScope::Entity
        } else {
            selector.scope
        };
        self.follow = match scope {
            DagScope::Block => Follow::None,
            DagScope::Entity if file => Follow::File,
            DagScope::Entity => Follow::None,
            DagScope::All => Follow::All,
        };
        if let (Some(range), Some(size)) = (selector.bytes, self.entity_size) {
            match range.resolve(size) {
                Resolved::Range(first, last) => self.range = Some((first, last)),
                Resolved::Empty => self.follow = Follow::None,
                Resolved::Outside => {
                    return Err(BlockErrorKind::RangeOutside {
                        cid: root,
                        range,
                        size,
                    }
                    .into());
                }
            }
        }
        self.expand(&root, data, 0)
    }

    /// Push the children of the block `cid` (whose file bytes start at `start`) to visit.
    fn expand(&mut self, cid: &Cid, data: &[u8], start: u64) -> Result<(), BlockError> {
        if self.follow == Follow::None || cid.codec() != DAG_PB {
            return Ok(());
        }
        let node = decode_node(data)
            .map_err(|source| BlockError::from(BlockErrorKind::Decode { cid: *cid, source }))?;
        if node.links.is_empty() {
            return Ok(());
        }
        let unixfs = node.data.and_then(|d| decode_unixfs(d).ok());
        let file = unixfs.as_ref().filter(|u| u.is_file());
        if self.follow == Follow::File && file.is_none() {
            return Ok(());
        }
        if self.stack.len() >= MAX_DEPTH {
            return Err(BlockErrorKind::TooDeep { root: self.root }.into());
        }
        // Offsets come from `blocksizes`; without one size per link, nothing can be skipped.
        let sizes = file
            .filter(|u| u.blocksizes.len() == node.links.len())
            .map(|u| (u.data.len() as u64, &u.blocksizes));
        let mut children = Vec::with_capacity(node.links.len());
        match (sizes, self.range) {
            (Some((inline, sizes)), Some((first, last))) => {
                // Saturating: `blocksizes` come from the block (an identity root is the
                // client's), and hostile ones may sum past `u64::MAX`.
                let mut offset = start.saturating_add(inline);
                for (link, &size) in node.links.iter().zip(sizes) {
                    if offset <= last && offset.saturating_add(size) > first {
                        children.push(Child {
                            cid: link.cid,
                            start: offset,
                        });
                    }
                    offset = offset.saturating_add(size);
                }
            }
            _ => children.extend(node.links.iter().map(|link| Child {
                cid: link.cid,
                start,
            })),
        }
        if !children.is_empty() {
            self.stack.push(children.into_iter());
        }
        Ok(())
    }

    fn step(&mut self) -> Result<Option<(Cid, Bytes)>, BlockError> {
        if let Some(data) = self.pending.take()
            && self.root.hash().code() != IDENTITY
        {
            if !self.dups {
                self.seen.insert(self.root);
            }
            return Ok(Some((self.root, data)));
        }
        loop {
            let Some(level) = self.stack.last_mut() else {
                return Ok(None);
            };
            let Some(child) = level.next() else {
                self.stack.pop();
                continue;
            };
            let repeat = !self.dups && self.seen.contains(&child.cid);
            // A repeated node is still descended: this time the range may need other leaves.
            if repeat && child.cid.codec() != DAG_PB {
                continue;
            }
            let location = self
                .blocks
                .locate(&child.cid)?
                .ok_or_else(|| BlockError::from(BlockErrorKind::Missing { cid: child.cid }))?;
            if location.size() > MAX_BLOCK_SIZE {
                return Err(BlockErrorKind::TooLarge {
                    cid: child.cid,
                    size: location.size(),
                    hint: String::new(),
                }
                .into());
            }
            let data = self
                .blocks
                .read_with(&child.cid, &location, &mut self.open)?;
            self.expand(&child.cid, &data, child.start)?;
            if repeat || child.cid.hash().code() == IDENTITY {
                continue;
            }
            if !self.dups {
                self.seen.insert(child.cid);
            }
            return Ok(Some((child.cid, data)));
        }
    }
}

impl Iterator for Walk {
    type Item = Result<(Cid, Bytes), BlockError>;

    fn next(&mut self) -> Option<Self::Item> {
        if self.failed {
            return None;
        }
        let item = self.step();
        self.failed = item.is_err();
        item.transpose()
    }
}
