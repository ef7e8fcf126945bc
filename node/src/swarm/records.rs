//! The DHT's record store. libp2p's `MemoryStore` keeps each key's provider records in an
//! inline array sized for 20 of them, so every key costs about 2 KB however few providers it
//! has: a node announcing its 100,000 most recent artifacts (200,000 keys, flat and root) grew
//! by 400 MB, and so did each peer storing those records. This store keeps each key's
//! providers in a vector sized to what it holds (a few hundred bytes a key), with the same
//! bounds and the same answers as `MemoryStore` otherwise: at most `max_provider_keys` keys and
//! `max_providers_per_key` providers a key (later providers of a full key are ignored, against
//! floods), at most `max_records` value records of less than `max_value_bytes`.

use std::borrow::Cow;
use std::collections::{HashMap, HashSet, hash_map};

use libp2p::PeerId;
use libp2p::kad::store::{Error, RecordStore, Result};
use libp2p::kad::{ProviderRecord, Record, RecordKey};

/// The bounds of a [`CompactStore`].
#[derive(Clone, Copy, Debug)]
pub struct Bounds {
    pub max_records: usize,
    pub max_value_bytes: usize,
    pub max_provider_keys: usize,
    pub max_providers_per_key: usize,
}

/// Records and provider records in memory, each key's providers in a vector of its size.
pub struct CompactStore {
    local: PeerId,
    bounds: Bounds,
    records: HashMap<RecordKey, Record>,
    providers: HashMap<RecordKey, Vec<ProviderRecord>>,
    /// The keys this node provides (its record is among the key's providers).
    provided: HashSet<RecordKey>,
}

impl CompactStore {
    pub fn new(local: PeerId, bounds: Bounds) -> Self {
        CompactStore {
            local,
            bounds,
            records: HashMap::new(),
            providers: HashMap::new(),
            provided: HashSet::new(),
        }
    }
}

impl RecordStore for CompactStore {
    type RecordsIter<'a> =
        std::iter::Map<hash_map::Values<'a, RecordKey, Record>, fn(&'a Record) -> Cow<'a, Record>>;
    type ProvidedIter<'a> = Box<dyn Iterator<Item = Cow<'a, ProviderRecord>> + 'a>;

    fn get(&self, key: &RecordKey) -> Option<Cow<'_, Record>> {
        self.records.get(key).map(Cow::Borrowed)
    }

    fn put(&mut self, record: Record) -> Result<()> {
        if record.value.len() >= self.bounds.max_value_bytes {
            return Err(Error::ValueTooLarge);
        }
        let full = self.records.len() >= self.bounds.max_records;
        match self.records.entry(record.key.clone()) {
            hash_map::Entry::Occupied(mut e) => {
                e.insert(record);
            }
            hash_map::Entry::Vacant(_) if full => return Err(Error::MaxRecords),
            hash_map::Entry::Vacant(e) => {
                e.insert(record);
            }
        }
        Ok(())
    }

    fn remove(&mut self, key: &RecordKey) {
        self.records.remove(key);
    }

    fn records(&self) -> Self::RecordsIter<'_> {
        self.records.values().map(Cow::Borrowed)
    }

    fn add_provider(&mut self, record: ProviderRecord) -> Result<()> {
        let full = self.providers.len() >= self.bounds.max_provider_keys;
        let providers = match self.providers.entry(record.key.clone()) {
            hash_map::Entry::Occupied(e) => e.into_mut(),
            hash_map::Entry::Vacant(_) if full => return Err(Error::MaxProvidedKeys),
            hash_map::Entry::Vacant(e) => e.insert(Vec::with_capacity(1)),
        };
        let local = record.provider == self.local;
        if let Some(held) = providers.iter_mut().find(|p| p.provider == record.provider) {
            *held = record;
        } else if providers.len() < self.bounds.max_providers_per_key {
            let key = record.key.clone();
            providers.reserve_exact(1);
            providers.push(record);
            if local {
                self.provided.insert(key);
            }
        }
        Ok(())
    }

    fn providers(&self, key: &RecordKey) -> Vec<ProviderRecord> {
        self.providers.get(key).cloned().unwrap_or_default()
    }

    fn provided(&self) -> Self::ProvidedIter<'_> {
        Box::new(self.provided.iter().filter_map(move |key| {
            self.providers
                .get(key)?
                .iter()
                .find(|p| p.provider == self.local)
                .map(Cow::Borrowed)
        }))
    }

    fn remove_provider(&mut self, key: &RecordKey, provider: &PeerId) {
        let hash_map::Entry::Occupied(mut e) = self.providers.entry(key.clone()) else {
            return;
        };
        let providers = e.get_mut();
        if let Some(i) = providers.iter().position(|p| &p.provider == provider) {
            providers.swap_remove(i);
            if *provider == self.local {
                self.provided.remove(key);
            }
        }
        if providers.is_empty() {
            e.remove();
        } else {
            providers.shrink_to_fit();
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const BOUNDS: Bounds = Bounds {
        max_records: 2,
        max_value_bytes: 16,
        max_provider_keys: 3,
        max_providers_per_key: 2,
    };

    fn provider(key: &RecordKey, peer: PeerId) -> ProviderRecord {
        ProviderRecord::new(key.clone(), peer, Vec::new())
    }

    #[test]
    fn providers_are_kept_per_key_within_the_bounds_and_the_local_ones_are_listed() {
        let me = PeerId::random();
        let mut store = CompactStore::new(me, BOUNDS);
        let (a, b) = (RecordKey::new(&b"a"), RecordKey::new(&b"b"));
        let (p, q, r) = (PeerId::random(), PeerId::random(), PeerId::random());
        store.add_provider(provider(&a, me)).expect("add");
        store.add_provider(provider(&a, p)).expect("add");
        // A full key ignores more providers, and an update replaces in place.
        store.add_provider(provider(&a, q)).expect("add");
        store.add_provider(provider(&a, p)).expect("update");
        let peers: HashSet<PeerId> = store.providers(&a).iter().map(|p| p.provider).collect();
        assert_eq!(peers, [me, p].into());
        store.add_provider(provider(&b, r)).expect("add");
        let provided: Vec<RecordKey> = store.provided().map(|p| p.key.clone()).collect();
        assert_eq!(provided, std::slice::from_ref(&a));
        // Keys are bounded.
        store
            .add_provider(provider(&RecordKey::new(&b"c"), r))
            .expect("third key");
        assert!(matches!(
            store.add_provider(provider(&RecordKey::new(&b"d"), r)),
            Err(Error::MaxProvidedKeys)
        ));
        // Removing the local provider unlists the key; the last provider takes the key.
        store.remove_provider(&a, &me);
        assert_eq!(store.provided().count(), 0);
        assert_eq!(store.providers(&a).len(), 1);
        store.remove_provider(&a, &p);
        assert!(store.providers(&a).is_empty());
        store
            .add_provider(provider(&RecordKey::new(&b"d"), r))
            .expect("room again");
    }

    #[test]
    fn value_records_are_bounded_in_number_and_size() {
        let mut store = CompactStore::new(PeerId::random(), BOUNDS);
        let record = |k: &[u8], v: &[u8]| Record::new(RecordKey::new(&k), v.to_vec());
        store.put(record(b"a", b"1")).expect("put");
        store.put(record(b"b", b"2")).expect("put");
        assert!(matches!(
            store.put(record(b"c", b"3")),
            Err(Error::MaxRecords)
        ));
        store.put(record(b"a", b"again")).expect("replace");
        assert!(matches!(
            store.put(record(b"a", &[0; 16])),
            Err(Error::ValueTooLarge)
        ));
        assert_eq!(store.records().count(), 2);
        store.remove(&RecordKey::new(&b"a"));
        assert!(store.get(&RecordKey::new(&b"a")).is_none());
    }
}
