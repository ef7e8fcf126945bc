//! A byte-bounded least-recently-used map, for bodies kept in memory (rendered metadata, hot
//! small artifacts). Values report their weight; an entry heavier than a quarter of the budget is
//! never kept, and eviction drops the least recently used entries down to three quarters of it.

use std::collections::HashMap;
use std::hash::Hash;
use std::sync::Mutex;

/// How many bytes a cached value holds.
pub trait Weight {
    fn weight(&self) -> usize;
}

impl Weight for bytes::Bytes {
    fn weight(&self) -> usize {
        self.len()
    }
}

impl<T: Weight> Weight for std::sync::Arc<T> {
    fn weight(&self) -> usize {
        (**self).weight()
    }
}

pub struct Lru<K, V> {
    budget: usize,
    inner: Mutex<Entries<K, V>>,
}

struct Entries<K, V> {
    used: usize,
    tick: u64,
    map: HashMap<K, (V, u64)>,
}

impl<K: Hash + Eq + Clone, V: Weight + Clone> Lru<K, V> {
    pub fn new(budget: usize) -> Self {
        Lru {
            budget,
            inner: Mutex::new(Entries {
                used: 0,
                tick: 0,
                map: HashMap::new(),
            }),
        }
    }

    /// True when a value of `weight` bytes would be kept.
    pub fn admits(&self, weight: usize) -> bool {
        weight <= self.budget / 4
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, Entries<K, V>> {
        self.inner.lock().unwrap_or_else(|p| p.into_inner())
    }

    pub fn get(&self, key: &K) -> Option<V> {
        let mut entries = self.lock();
        entries.tick += 1;
        let tick = entries.tick;
        entries.map.get_mut(key).map(|(value, used)| {
            *used = tick;
            value.clone()
        })
    }

    pub fn remove(&self, key: &K) {
        let mut entries = self.lock();
        if let Some((old, _)) = entries.map.remove(key) {
            entries.used -= old.weight();
        }
    }

    /// Drop every entry.
    pub fn clear(&self) {
        let mut entries = self.lock();
        entries.map = HashMap::new();
        entries.used = 0;
    }

    /// Keep only the entries `keep` says to.
    pub fn retain(&self, mut keep: impl FnMut(&K, &V) -> bool) {
        let mut entries = self.lock();
        let mut freed = 0;
        entries.map.retain(|key, (value, _)| {
            let kept = keep(key, value);
            if !kept {
                freed += value.weight();
            }
            kept
        });
        entries.used -= freed;
    }

    pub fn insert(&self, key: K, value: V) {
        let weight = value.weight();
        if !self.admits(weight) {
            return;
        }
        let mut entries = self.lock();
        entries.tick += 1;
        let tick = entries.tick;
        if let Some((old, _)) = entries.map.insert(key, (value, tick)) {
            entries.used -= old.weight();
        }
        entries.used += weight;
        if entries.used > self.budget {
            let mut by_age: Vec<(u64, K)> = entries
                .map
                .iter()
                .map(|(k, (_, used))| (*used, k.clone()))
                .collect();
            by_age.sort_unstable_by_key(|(used, _)| *used);
            for (_, key) in by_age {
                if entries.used <= self.budget * 3 / 4 {
                    break;
                }
                if let Some((old, _)) = entries.map.remove(&key) {
                    entries.used -= old.weight();
                }
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use bytes::Bytes;

    fn body(len: usize) -> Bytes {
        Bytes::from(vec![b'x'; len])
    }

    #[test]
    fn least_recently_used_entries_are_evicted_first() {
        let cache = Lru::new(100);
        cache.insert(1, body(20));
        cache.insert(2, body(20));
        cache.insert(3, body(20));
        assert!(cache.get(&1).is_some());
        cache.insert(4, body(25));
        cache.insert(5, body(25));
        assert!(cache.get(&1).is_some(), "recently used survives");
        assert!(cache.get(&2).is_none(), "oldest goes");
        cache.insert(6, body(26));
        assert!(
            cache.get(&6).is_none(),
            "over a quarter of the budget is not kept"
        );
    }

    #[test]
    fn retained_entries_stay_and_the_others_free_their_budget() {
        let cache = Lru::new(100);
        for key in 1..=4 {
            cache.insert(key, body(25));
        }
        cache.retain(|key, _| key % 2 == 0);
        assert!(cache.get(&1).is_none() && cache.get(&3).is_none());
        assert!(cache.get(&2).is_some() && cache.get(&4).is_some());
        // Half the budget was freed: two more fit without pushing anything out.
        cache.insert(5, body(25));
        cache.insert(6, body(25));
        assert!([2, 4, 5, 6].iter().all(|key| cache.get(key).is_some()));
    }
}
