//! Which large cached files (more than one leaf) earn a place in the in-memory cache of hot
//! artifacts, beside the small ones every hit puts there.
//!
//! A large file is served from disk, every leaf checked against its CID as it goes out. When
//! the same file is read whole from disk a second time while this node still remembers the
//! first (the last [`MAX_SEEN`] files read whole), that second read also keeps the leaves it
//! checked and puts the whole file in the cache, if the cache's budget takes it (a quarter of
//! the budget at most): later hits are served from memory, as a small file's are, with no
//! disk read and no hashing. A file read once (one install of a big project) never pushes
//! hot small files out. At most [`MAX_FILLING`] reads keep their leaves at once, each for a
//! different file, so the memory held while filling stays within the cache's budget.

use std::collections::HashSet;
use std::sync::{Arc, Mutex};

use crate::cid::FlatCid;

/// Large files remembered as read whole once.
const MAX_SEEN: usize = 4096;

/// Reads keeping their leaves at once.
const MAX_FILLING: usize = 4;

#[derive(Default)]
pub(crate) struct LargeFills {
    state: Mutex<State>,
}

#[derive(Default)]
struct State {
    seen: HashSet<FlatCid>,
    filling: HashSet<FlatCid>,
}

/// A read of a whole large file that keeps its leaves for the cache; the slot is given back
/// when it is dropped.
pub(crate) struct Fill {
    fills: Arc<LargeFills>,
    flat: FlatCid,
}

impl Drop for Fill {
    fn drop(&mut self) {
        self.fills.lock().filling.remove(&self.flat);
    }
}

impl LargeFills {
    fn lock(&self) -> std::sync::MutexGuard<'_, State> {
        self.state.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// A whole read of `flat` from disk begins: a [`Fill`] when this read is to keep its
    /// leaves for the cache (the file was read whole before and no other read is filling it).
    pub(crate) fn begin(self: &Arc<Self>, flat: FlatCid) -> Option<Fill> {
        let mut state = self.lock();
        if state.filling.contains(&flat) {
            return None;
        }
        if state.seen.remove(&flat) {
            if state.filling.len() >= MAX_FILLING {
                state.seen.insert(flat);
                return None;
            }
            state.filling.insert(flat);
            return Some(Fill {
                fills: self.clone(),
                flat,
            });
        }
        if state.seen.len() >= MAX_SEEN {
            // Forgetting them all is cheaper than ordering them, and costs one more disk read
            // of each hot file.
            state.seen.clear();
        }
        state.seen.insert(flat);
        None
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::cid::{Algorithm, Digest};

    fn flat(n: u32) -> FlatCid {
        Digest::of(Algorithm::Sha256, &n.to_le_bytes()).flat_cid()
    }

    #[test]
    fn the_second_whole_read_fills_and_one_at_a_time() {
        let fills = Arc::new(LargeFills::default());
        assert!(fills.begin(flat(1)).is_none(), "a first read never fills");
        let fill = fills.begin(flat(1)).expect("the second read fills");
        assert!(fills.begin(flat(1)).is_none(), "one fill per file at once");
        drop(fill);
        assert!(fills.begin(flat(1)).is_none(), "seen again from scratch");
        assert!(fills.begin(flat(1)).is_some());
    }

    #[test]
    fn fills_at_once_are_bounded() {
        let fills = Arc::new(LargeFills::default());
        let held: Vec<Fill> = (0..MAX_FILLING as u32 + 2)
            .filter_map(|n| {
                fills.begin(flat(n));
                fills.begin(flat(n))
            })
            .collect();
        assert_eq!(held.len(), MAX_FILLING);
        // The file refused a slot stays remembered and fills once one is free.
        let refused = flat(MAX_FILLING as u32);
        drop(held);
        assert!(fills.begin(refused).is_some());
    }

    #[test]
    fn the_memory_of_reads_is_bounded() {
        let fills = Arc::new(LargeFills::default());
        for n in 0..(MAX_SEEN as u32 * 3) {
            fills.begin(flat(n));
            assert!(fills.lock().seen.len() <= MAX_SEEN);
        }
    }
}
