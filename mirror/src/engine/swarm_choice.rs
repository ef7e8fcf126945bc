//! Which files a node of a private swarm evicts: the swarm is one cache, so a node lets go
//! first of what another node holds, and keeps what may be the swarm's last copy unless nothing
//! else can go. The candidates are the least recently used files (a window of several times
//! the bytes needed, so there is a choice); the peers are asked which of them they hold
//! (`PeerSource::held_elsewhere`, bounded in time); then those held elsewhere go first and the
//! last copies after, each group least recently used first. With no answer every candidate
//! counts as a last copy, and the choice is plain LRU.
//!
//! An answer is only a snapshot: two nodes evicting at the same moment may each let go of the
//! copy the other was counting on. The rule lowers the odds of losing a file from the swarm; it
//! does not promise a copy survives (pin what must).

use std::collections::HashSet;

use crate::cid::FlatCid;
use crate::index::HeldFile;

/// Candidates looked at: files least recently used until this many times the bytes needed.
pub const WINDOW: u64 = 4;

/// What to evict from `candidates` (least recently used first) to free `need` bytes, given the
/// files a peer holds (`shared`): those first, then the last copies, each in LRU order. The
/// files chosen, and how many of them a peer holds.
pub fn choose(
    candidates: Vec<HeldFile>,
    shared: &HashSet<FlatCid>,
    need: u64,
) -> (Vec<HeldFile>, usize) {
    let (held_elsewhere, last_copies): (Vec<HeldFile>, Vec<HeldFile>) = candidates
        .into_iter()
        .partition(|file| shared.contains(&file.flat));
    let mut chosen = Vec::new();
    let (mut freed, mut from_shared) = (0u64, 0usize);
    for (file, is_shared) in held_elsewhere
        .into_iter()
        .map(|f| (f, true))
        .chain(last_copies.into_iter().map(|f| (f, false)))
    {
        if freed >= need {
            break;
        }
        freed += file.size;
        from_shared += usize::from(is_shared);
        chosen.push(file);
    }
    (chosen, from_shared)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::cid::{Algorithm, Digest, RootCid};

    fn file(n: u8, size: u64) -> HeldFile {
        let flat = Digest::of(Algorithm::Sha256, &[n]).flat_cid();
        HeldFile {
            flat,
            root: RootCid(flat.0),
            size,
            last_access: i64::from(n),
        }
    }

    fn numbers(files: &[HeldFile], all: &[HeldFile]) -> Vec<i64> {
        files
            .iter()
            .map(|f| {
                all.iter()
                    .find(|a| a.flat == f.flat)
                    .expect("one")
                    .last_access
            })
            .collect()
    }

    #[test]
    fn files_peers_hold_go_first_then_last_copies_each_least_recently_used_first() {
        let all: Vec<HeldFile> = (1..=6).map(|n| file(n, 10)).collect();
        let shared: HashSet<FlatCid> = [all[1].flat, all[4].flat].into();
        let (chosen, from_shared) = choose(all.clone(), &shared, 25);
        assert_eq!(numbers(&chosen, &all), [2, 5, 1]);
        assert_eq!(from_shared, 2);
        // Enough shared bytes: no last copy goes.
        let (chosen, from_shared) = choose(all.clone(), &shared, 20);
        assert_eq!((numbers(&chosen, &all), from_shared), (vec![2, 5], 2));
    }

    #[test]
    fn with_no_peer_answer_the_choice_is_plain_lru_and_never_more_than_needed() {
        let all: Vec<HeldFile> = (1..=6).map(|n| file(n, 10)).collect();
        let (chosen, from_shared) = choose(all.clone(), &HashSet::new(), 21);
        assert_eq!((numbers(&chosen, &all), from_shared), (vec![1, 2, 3], 0));
        let (chosen, _) = choose(all.clone(), &HashSet::new(), 0);
        assert!(chosen.is_empty());
        // Fewer candidates than needed: all of them.
        let (chosen, _) = choose(all.clone(), &HashSet::new(), 1000);
        assert_eq!(chosen.len(), 6);
    }
}
