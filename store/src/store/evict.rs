//! Eviction: the least recently used artifact files go until enough bytes are free. Rows go
//! first, in batches of [`BATCH`] per transaction (so commits are never held up long), then the
//! files; each file is a [`StoreEvent::Evicted`] to the subscribers (the node withdraws it
//! from the swarm, the engine drops it from its memory caches).
//!
//! A response already streaming an evicted file keeps its open descriptor and ends whole. The
//! references that named the file stay, so the next request fetches it again. If the same
//! bytes are committed again while their old file is being evicted, the new row may name a file
//! that is gone: the first read finds it missing and fetches it again, as for any damaged file.

use std::fs;

use super::Store;
use crate::cid::FlatCid;
use crate::error::StoreError;
use crate::events::StoreEvent;
use crate::index::{HeldBytes, HeldFile};

/// Files whose rows are dropped in one transaction.
pub const BATCH: usize = 256;

impl Store {
    /// Bytes of the artifact files held, each counted once.
    pub fn held_bytes(&self) -> Result<u64, StoreError> {
        Ok(self.index.held_bytes()?)
    }

    /// Bytes of the artifact files held, in all and per ecosystem, counted from the index in
    /// one pass; the count [`Store::held_now`] goes on from
    /// ([`Index::held_bytes_by_ecosystem`](crate::index::Index::held_bytes_by_ecosystem)).
    pub fn held_bytes_by_ecosystem(&self) -> Result<HeldBytes, StoreError> {
        Ok(self.index.held_bytes_by_ecosystem()?)
    }

    /// What is held, in all and per ecosystem family, as this process knows it without a scan:
    /// the last [`Store::held_bytes_by_ecosystem`] with every commit, eviction, purge and
    /// import this process made since, exact. `None` before the first count.
    pub fn held_now(&self) -> Option<HeldBytes> {
        self.index.held_now()
    }

    /// Bytes of every artifact file, as [`Store::held_now`] knows it.
    pub fn held_total_now(&self) -> Option<u64> {
        self.index.held_total_now()
    }

    /// Bytes an ecosystem family names (`npm`; `apt` for every archive), as
    /// [`Store::held_now`] knows it.
    pub fn held_in_now(&self, family: &str) -> Option<u64> {
        self.index.held_in_now(family)
    }

    /// Evict the least recently used artifact files until `need` bytes are freed or no file is
    /// left that `keep` lets go. Blocking; returns the files evicted.
    pub fn evict(
        &self,
        need: u64,
        keep: &dyn Fn(&FlatCid) -> bool,
    ) -> Result<Vec<HeldFile>, StoreError> {
        self.evict_in(None, need, keep)
    }

    /// As [`Store::evict`], choosing among the files `ecosystem` names when given (`npm`; `apt`
    /// is every apt archive). A chosen file goes under all its keys, in every ecosystem.
    pub fn evict_in(
        &self,
        ecosystem: Option<&str>,
        need: u64,
        keep: &dyn Fn(&FlatCid) -> bool,
    ) -> Result<Vec<HeldFile>, StoreError> {
        let chosen = self.index.least_recently_used_in(ecosystem, need, keep)?;
        self.evict_files(&chosen)
    }

    /// Evict exactly the files `chosen` (from [`crate::index::Index::least_recently_used_in`]),
    /// each unless it was used since it was chosen. Blocking; returns the files evicted.
    pub fn evict_files(&self, chosen: &[HeldFile]) -> Result<Vec<HeldFile>, StoreError> {
        let mut evicted = Vec::with_capacity(chosen.len());
        for batch in chosen.chunks(BATCH) {
            for file in self.index.drop_files(batch)? {
                let path = self.blob_path(&file.flat);
                match fs::remove_file(&path) {
                    Ok(()) => {}
                    Err(e) if e.kind() == std::io::ErrorKind::NotFound => {}
                    Err(e) => {
                        // The rows are gone: the file is an orphan that `gc` will remove.
                        tracing::warn!("evicted {} but cannot delete it: {e}", path.display());
                    }
                }
                self.events.emit(StoreEvent::Evicted {
                    flat: file.flat,
                    root: file.root,
                    size: file.size,
                });
                evicted.push(file);
            }
        }
        Ok(evicted)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::cid::{Algorithm, Digest};
    use crate::index::{PurgeKeys, ecosystem_family};
    use crate::store::Origin;
    use crate::testing::noise;

    /// Commit `data` under `key`, last used at `at`.
    fn add(store: &Store, key: &str, data: &[u8], at: i64) -> HeldFile {
        add_in(store, "npm", key, data, at)
    }

    /// Commit `data` under `key` of `ecosystem`, last used at `at`.
    fn add_in(store: &Store, ecosystem: &str, key: &str, data: &[u8], at: i64) -> HeldFile {
        let mut writer = store
            .artifact_writer(Digest::of(Algorithm::Sha512, data))
            .expect("writer");
        writer.write(data).expect("write");
        let origin = Origin {
            private: false,
            upstream_url: format!("http://upstream.invalid/{key}"),
            fetched_at: at,
        };
        let committed = store
            .commit_artifact(ecosystem, key, writer, origin, |_| {})
            .expect("commit");
        HeldFile {
            flat: committed.record.flat,
            root: committed.record.root,
            size: committed.record.size,
            last_access: at,
        }
    }

    fn open() -> (tempfile::TempDir, Store) {
        let dir = tempfile::tempdir().expect("tempdir");
        let store = Store::open(dir.path()).expect("store");
        (dir, store)
    }

    /// What a count from the index would say now, read by a second opening of the index (its
    /// own count), without the families that hold nothing.
    fn scanned(dir: &std::path::Path) -> HeldBytes {
        let mut held = crate::index::Index::open(&dir.join(crate::store::INDEX_FILE))
            .expect("second opening")
            .held_bytes_by_ecosystem()
            .expect("count");
        held.by_ecosystem.retain(|_, b| *b > 0);
        held
    }

    /// One change to the rows, in a test that checks the count after each.
    type Step<'a> = Box<dyn Fn(&Store) + 'a>;

    fn now(store: &Store) -> HeldBytes {
        let mut held = store.held_now().expect("counted");
        held.by_ecosystem.retain(|_, b| *b > 0);
        held
    }

    #[test]
    fn the_count_kept_as_rows_change_is_what_a_count_from_the_index_says() {
        let (dir, store) = open();
        assert_eq!(store.held_now(), None, "nothing before the first count");
        add(&store, "before.tgz", &noise(700, 61), 1);
        store.held_bytes_by_ecosystem().expect("first count");
        assert_eq!(now(&store), scanned(dir.path()));

        let shared = noise(5000, 63);
        let steps: Vec<Step<'_>> = vec![
            Box::new(|s| {
                add_in(s, "npm", "a/shared.tgz", &shared, 2);
            }),
            // The same bytes under a second key, in the same ecosystem and in another.
            Box::new(|s| {
                add_in(s, "npm", "b/shared.tgz", &shared, 3);
            }),
            Box::new(|s| {
                add_in(s, "pypi", "shared.whl", &shared, 4);
            }),
            Box::new(|s| {
                add_in(s, "apt/debian", "pool/x.deb", &noise(300, 65), 5);
            }),
            Box::new(|s| {
                add_in(s, "apt/ubuntu", "pool/x.deb", &noise(300, 65), 6);
            }),
            // A key committed again with other bytes: its old file is held no more.
            Box::new(|s| {
                add(s, "before.tgz", &noise(900, 67), 7);
            }),
            Box::new(|s| {
                let record = s.index().get_artifact("npm", "a/shared.tgz").expect("read");
                let record = record.expect("held");
                s.index()
                    .alias_artifact("cargo", "sh/ar/ed", &record)
                    .expect("alias");
            }),
            Box::new(|s| drop(s.evict_in(Some("apt"), 1, &|_| false).expect("evict"))),
            Box::new(|s| {
                let flat = s.index().get_artifact("npm", "before.tgz").expect("read");
                s.index()
                    .forget_flat(&flat.expect("held").flat)
                    .expect("forget");
            }),
            Box::new(|s| {
                let owns = |key: &str| key.starts_with("a/");
                let keys = PurgeKeys {
                    documents: &[],
                    listed_by: &[],
                    artifact_prefixes: &["a/".to_owned()],
                    owns: &owns,
                };
                s.purge("npm", &keys).expect("purge");
            }),
        ];
        for (i, step) in steps.iter().enumerate() {
            step(&store);
            assert_eq!(now(&store), scanned(dir.path()), "after step {i}");
        }
        assert_eq!(now(&store).total, 0, "the purge took the last shared file");
    }

    #[test]
    fn a_count_from_the_index_while_commits_land_neither_loses_nor_doubles_them() {
        let (dir, store) = open();
        store.held_bytes_by_ecosystem().expect("first count");
        let done = std::sync::atomic::AtomicBool::new(false);
        std::thread::scope(|scope| {
            scope.spawn(|| {
                for i in 0..300u64 {
                    let ecosystem = ["npm", "pypi", "apt/debian"][i as usize % 3];
                    add_in(
                        &store,
                        ecosystem,
                        &format!("k{i}"),
                        &noise(100 + i as usize, 2 * i + 1),
                        1,
                    );
                    if i % 7 == 0 {
                        drop(store.evict(1, &|_| false).expect("evict"));
                    }
                }
                done.store(true, std::sync::atomic::Ordering::SeqCst);
            });
            let mut counts = 0;
            while !done.load(std::sync::atomic::Ordering::SeqCst) {
                store.held_bytes_by_ecosystem().expect("count");
                counts += 1;
            }
            assert!(counts > 1, "counts ran while commits landed");
        });
        assert_eq!(now(&store), scanned(dir.path()));
    }

    #[test]
    fn the_least_recently_used_files_go_first_until_enough_is_freed() {
        let (_dir, store) = open();
        let old = add(&store, "old.tgz", &noise(3000, 1), 10);
        let middle = add(&store, "middle.tgz", &noise(2000, 2), 20);
        let recent = add(&store, "recent.tgz", &noise(1000, 3), 30);
        // Used since it was committed: the most recent now.
        store
            .touch_artifacts(&[("npm", "old.tgz", 40)])
            .expect("touch");
        assert_eq!(store.held_bytes().expect("count"), 6000);
        let mut events = store.subscribe().expect("subscribe");

        let evicted = store.evict(2500, &|_| false).expect("evict");

        assert_eq!(
            evicted.iter().map(|f| f.flat).collect::<Vec<_>>(),
            [middle.flat, recent.flat]
        );
        assert_eq!(store.held_bytes().expect("count"), 3000);
        for gone in [&middle, &recent] {
            assert!(!store.blob_path(&gone.flat).exists(), "the file is deleted");
            assert_eq!(store.index().get_flat(&gone.flat).expect("read"), None);
            assert_eq!(
                events.try_recv().expect("an event"),
                StoreEvent::Evicted {
                    flat: gone.flat,
                    root: gone.root,
                    size: gone.size
                }
            );
        }
        assert!(store.blob_path(&old.flat).exists());
        assert!(
            store
                .index()
                .get_artifact("npm", "old.tgz")
                .expect("read")
                .is_some()
        );
    }

    #[test]
    fn files_kept_by_the_caller_stay_and_the_pass_stops_when_nothing_else_may_go() {
        let (_dir, store) = open();
        let pinned = add(&store, "pinned.tgz", &noise(4000, 4), 1);
        let other = add(&store, "other.tgz", &noise(1000, 5), 2);
        let evicted = store
            .evict(10_000, &|flat| *flat == pinned.flat)
            .expect("evict");
        assert_eq!(evicted, [other]);
        assert!(store.blob_path(&pinned.flat).exists());
        assert_eq!(store.held_bytes().expect("count"), 4000);
    }

    #[test]
    fn bytes_under_two_keys_are_one_file_counted_once_and_evicted_under_both() {
        let (_dir, store) = open();
        let data = noise(5000, 6);
        let first = add(&store, "a/x.tgz", &data, 5);
        let second = add(&store, "b/x.tgz", &data, 7);
        assert_eq!(first.flat, second.flat);
        assert_eq!(store.held_bytes().expect("count"), 5000);
        let evicted = store.evict(1, &|_| false).expect("evict");
        assert_eq!(evicted.len(), 1);
        assert_eq!(
            evicted[0].last_access, 7,
            "the file's last use is its newest key's"
        );
        for key in ["a/x.tgz", "b/x.tgz"] {
            assert!(
                store
                    .index()
                    .get_artifact("npm", key)
                    .expect("read")
                    .is_none()
            );
        }
        assert_eq!(store.held_bytes().expect("count"), 0);
    }

    #[test]
    fn the_files_to_announce_are_the_most_recently_used_first_within_the_limit() {
        let (_dir, store) = open();
        let old = add(&store, "old.tgz", &noise(100, 8), 1);
        let recent = add(&store, "recent.tgz", &noise(100, 10), 3);
        let middle = add(&store, "middle.tgz", &noise(100, 12), 2);
        let listed = store.index().held_files(Some(2)).expect("list");
        assert_eq!(
            listed,
            [(recent.flat, recent.root), (middle.flat, middle.root)]
        );
        assert_eq!(store.index().held_files(None).expect("list").len(), 3);
        assert!(!listed.contains(&(old.flat, old.root)));
    }

    #[test]
    fn bytes_per_ecosystem_count_each_file_once_in_each_ecosystem_that_names_it() {
        let (_dir, store) = open();
        let shared = noise(5000, 41);
        add_in(&store, "npm", "a/shared.tgz", &shared, 1);
        add_in(&store, "npm", "b/shared.tgz", &shared, 2);
        add_in(&store, "pypi", "shared.whl", &shared, 3);
        add_in(&store, "npm", "only.tgz", &noise(1000, 43), 4);
        let deb = noise(300, 45);
        add_in(&store, "apt/debian", "pool/x.deb", &deb, 5);
        add_in(&store, "apt/ubuntu", "pool/x.deb", &deb, 6);
        add_in(&store, "apt/ubuntu", "pool/y.deb", &noise(200, 47), 7);

        let held = store.held_bytes_by_ecosystem().expect("count");

        assert_eq!(held.total, 5000 + 1000 + 300 + 200);
        assert_eq!(held.total, store.held_bytes().expect("count"));
        let by: Vec<(&str, u64)> = held
            .by_ecosystem
            .iter()
            .map(|(e, b)| (e.as_str(), *b))
            .collect();
        assert_eq!(by, [("apt", 500), ("npm", 6000), ("pypi", 5000)]);
        assert_eq!(ecosystem_family("apt/debian"), "apt");
        assert_eq!(ecosystem_family("npm"), "npm");
    }

    #[test]
    fn eviction_in_one_ecosystem_takes_only_its_files_least_recently_used_first() {
        // Odd seeds: `noise` sets the lowest bit, so 2k and 2k+1 would give the same bytes.
        let (_dir, store) = open();
        let old_pypi = add_in(&store, "pypi", "old.whl", &noise(4000, 51), 1);
        let old_npm = add_in(&store, "npm", "old.tgz", &noise(1000, 53), 2);
        let new_npm = add_in(&store, "npm", "new.tgz", &noise(1000, 55), 9);
        // Named by both: its last use is pypi's (8), after `mid.tgz`'s.
        let shared = noise(1000, 57);
        let both = add_in(&store, "npm", "shared.tgz", &shared, 3);
        add_in(&store, "pypi", "shared.whl", &shared, 8);
        let mid_npm = add_in(&store, "npm", "mid.tgz", &noise(1000, 59), 5);
        let deb = add_in(&store, "apt/debian", "pool/x.deb", &noise(700, 61), 0);

        let chosen = store
            .index()
            .least_recently_used_in(Some("npm"), 2000, &|_| false)
            .expect("choose");
        assert_eq!(
            chosen.iter().map(|f| f.flat).collect::<Vec<_>>(),
            [old_npm.flat, mid_npm.flat]
        );

        let evicted = store
            .evict_in(Some("npm"), 2500, &|_| false)
            .expect("evict");
        assert_eq!(
            evicted.iter().map(|f| f.flat).collect::<Vec<_>>(),
            [old_npm.flat, mid_npm.flat, both.flat]
        );
        assert_eq!(evicted[2].last_access, 8, "its last use under any key");
        assert!(
            store.blob_path(&old_pypi.flat).exists(),
            "pypi's own file stays"
        );
        assert!(store.blob_path(&new_npm.flat).exists());
        assert!(
            store
                .index()
                .get_artifact("pypi", "shared.whl")
                .expect("read")
                .is_none(),
            "a file goes under all its keys"
        );

        let apt = store.evict_in(Some("apt"), 1, &|_| false).expect("evict");
        assert_eq!(apt, [deb], "`apt` is every apt archive");
        assert_eq!(
            store.evict_in(Some("cargo"), 1, &|_| false).expect("evict"),
            []
        );
    }

    #[test]
    fn a_file_used_after_it_was_chosen_keeps_its_rows() {
        let (_dir, store) = open();
        let file = add(&store, "busy.tgz", &noise(1000, 7), 1);
        let chosen = store
            .index
            .least_recently_used(1, &|_| false)
            .expect("choose");
        assert_eq!(chosen, [file]);
        store
            .touch_artifacts(&[("npm", "busy.tgz", 2)])
            .expect("touch");
        assert_eq!(store.index.drop_files(&chosen).expect("drop"), []);
        assert!(
            store
                .index()
                .get_artifact("npm", "busy.tgz")
                .expect("read")
                .is_some()
        );
    }
}
