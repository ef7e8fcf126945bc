//! Traffic over time, per ecosystem: how many lookups the node answered from what it held and
//! how many it had to fetch, and the bytes it served by where they came from, in one-minute
//! buckets over the last day. The dashboard's charts and `GET /api/v1/traffic` read it.
//!
//! It lives in memory (at most [`MINUTES`] buckets, each a few counters per ecosystem: bounded
//! whatever the traffic, about 130 bytes per ecosystem and minute as `benches/traffic_memory.rs`
//! measures it) and is written to the index with the upkeep, so a restart keeps the day's
//! history; what is older than a day is dropped from both.

use std::collections::{BTreeMap, VecDeque};
use std::sync::Mutex;

/// How many one-minute buckets are kept: a day.
pub const MINUTES: usize = 24 * 60;

/// Counts of one ecosystem in one bucket.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub struct Counts {
    /// Lookups answered from what the node held: fresh, stale or revalidated copies, and
    /// downloads already under way for another client.
    pub hits: u64,
    /// Lookups that had to fetch (from peers or upstream).
    pub misses: u64,
    /// Bytes served from the store.
    pub cache_bytes: u64,
    /// Bytes served as they arrived from peers.
    pub peer_bytes: u64,
    /// Bytes served as they arrived from upstream.
    pub upstream_bytes: u64,
}

impl Counts {
    pub fn add(&mut self, other: &Counts) {
        self.hits += other.hits;
        self.misses += other.misses;
        self.cache_bytes += other.cache_bytes;
        self.peer_bytes += other.peer_bytes;
        self.upstream_bytes += other.upstream_bytes;
    }

    /// Requests counted: hits and misses.
    pub fn requests(&self) -> u64 {
        self.hits + self.misses
    }
}

/// One bucket: its minute (since the epoch) and the counts by ecosystem.
type Bucket = (i64, BTreeMap<String, Counts>);

/// The buckets of the last day, oldest first.
#[derive(Default)]
pub struct Traffic {
    buckets: Mutex<VecDeque<Bucket>>,
}

/// The minute (since the epoch) of `ms`.
pub fn minute_of(ms: i64) -> i64 {
    ms.div_euclid(60_000)
}

impl Traffic {
    fn buckets(&self) -> std::sync::MutexGuard<'_, VecDeque<Bucket>> {
        self.buckets
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
    }

    /// Change the counts of `ecosystem` in the bucket of `minute` (a late count, after a
    /// clock step or from a download counted once verified, goes to its own minute while that
    /// is kept).
    fn record(&self, minute: i64, ecosystem: &str, change: impl FnOnce(&mut Counts)) {
        let day = MINUTES as i64;
        let mut buckets = self.buckets();
        if buckets.back().is_some_and(|b| minute <= b.0 - day) {
            return;
        }
        let at = match buckets.back() {
            Some(b) if b.0 == minute => buckets.len() - 1,
            _ => match buckets.binary_search_by_key(&minute, |b| b.0) {
                Ok(at) => at,
                Err(at) => {
                    buckets.insert(at, (minute, BTreeMap::new()));
                    at
                }
            },
        };
        let counts = &mut buckets[at].1;
        match counts.get_mut(ecosystem) {
            Some(c) => change(c),
            None => change(counts.entry(ecosystem.to_owned()).or_default()),
        }
        let newest = buckets.back().map_or(minute, |b| b.0);
        while buckets.front().is_some_and(|b| b.0 <= newest - day) {
            buckets.pop_front();
        }
    }

    /// A lookup of `ecosystem` at `ms`: answered from what the node held (`hit`) or not.
    pub fn lookup(&self, ms: i64, ecosystem: &str, hit: bool) {
        self.record(minute_of(ms), ecosystem, |c| {
            if hit {
                c.hits += 1;
            } else {
                c.misses += 1;
            }
        });
    }

    /// `bytes` of `ecosystem` served at `ms` from `source` (`cache`, `peer`, `upstream`).
    pub fn served(&self, ms: i64, ecosystem: &str, source: &str, bytes: u64) {
        self.record(minute_of(ms), ecosystem, |c| match source {
            "cache" => c.cache_bytes += bytes,
            "peer" => c.peer_bytes += bytes,
            _ => c.upstream_bytes += bytes,
        });
    }

    /// Take in rows read back from the index (after a restart): added to what is counted.
    pub fn restore(&self, rows: Vec<(i64, String, Counts)>) {
        for (minute, ecosystem, counts) in rows {
            self.record(minute, &ecosystem, |c| c.add(&counts));
        }
    }

    /// The rows of the buckets from `minute` on, to write to the index.
    pub fn rows_since(&self, minute: i64) -> Vec<(i64, String, Counts)> {
        self.buckets()
            .iter()
            .filter(|b| b.0 >= minute)
            .flat_map(|(m, by)| by.iter().map(|(e, c)| (*m, e.clone(), *c)))
            .collect()
    }

    /// The counts of the last `buckets` buckets of `width` minutes each, ending with the one
    /// holding `now_minute`, per ecosystem (every ecosystem seen in the window gets every
    /// bucket), oldest first; and the window's totals per ecosystem.
    pub fn series(&self, now_minute: i64, buckets: usize, width: i64) -> Series {
        let width = width.max(1);
        let last = now_minute.div_euclid(width);
        let first = last - buckets as i64 + 1;
        let mut by: BTreeMap<String, Vec<Counts>> = BTreeMap::new();
        for (minute, counts) in self.buckets().iter() {
            let slot = minute.div_euclid(width) - first;
            if slot < 0 || slot >= buckets as i64 {
                continue;
            }
            for (ecosystem, c) in counts {
                by.entry(ecosystem.clone())
                    .or_insert_with(|| vec![Counts::default(); buckets])[slot as usize]
                    .add(c);
            }
        }
        let totals = by
            .iter()
            .map(|(e, series)| {
                let mut total = Counts::default();
                series.iter().for_each(|c| total.add(c));
                (e.clone(), total)
            })
            .collect();
        Series {
            start_minute: first * width,
            bucket_minutes: width,
            ecosystems: by,
            totals,
        }
    }

    /// Buckets held now (for the memory report).
    pub fn len(&self) -> usize {
        self.buckets().len()
    }

    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }
}

/// A window of the traffic, as `GET /api/v1/traffic` answers it.
#[derive(Debug, serde::Serialize)]
pub struct Series {
    /// The first bucket's first minute, since the epoch.
    pub start_minute: i64,
    pub bucket_minutes: i64,
    /// Per ecosystem, one entry per bucket, oldest first.
    pub ecosystems: BTreeMap<String, Vec<Counts>>,
    /// Per ecosystem, the whole window.
    pub totals: BTreeMap<String, Counts>,
}

#[cfg(test)]
mod tests {
    use super::*;

    const T: i64 = 1_790_000_000_000;

    #[test]
    fn lookups_and_bytes_land_in_their_minute_per_ecosystem() {
        let traffic = Traffic::default();
        traffic.lookup(T, "npm", true);
        traffic.lookup(T + 1_000, "npm", false);
        traffic.served(T + 2_000, "npm", "cache", 100);
        traffic.served(T + 61_000, "npm", "peer", 7);
        traffic.served(T + 61_000, "pypi", "upstream", 9);
        let now = minute_of(T + 61_000);
        let series = traffic.series(now, 60, 1);
        let npm = &series.ecosystems["npm"];
        assert_eq!(npm.len(), 60);
        assert_eq!(
            npm[58],
            Counts {
                hits: 1,
                misses: 1,
                cache_bytes: 100,
                ..Counts::default()
            }
        );
        assert_eq!(npm[59].peer_bytes, 7);
        assert_eq!(series.totals["pypi"].upstream_bytes, 9);
        assert_eq!(series.totals["npm"].requests(), 2);
        // Wider buckets sum their minutes.
        let day = traffic.series(now, 96, 15);
        assert_eq!(day.totals["npm"].cache_bytes, 100);
        assert_eq!(
            day.ecosystems["npm"]
                .iter()
                .map(Counts::requests)
                .sum::<u64>(),
            2
        );
    }

    #[test]
    fn a_day_is_kept_and_no_more_and_rows_restore_after_a_restart() {
        let traffic = Traffic::default();
        for minute in 0..(MINUTES as i64 + 100) {
            traffic.lookup(T + minute * 60_000, "cargo", true);
        }
        assert_eq!(traffic.len(), MINUTES);
        let now = minute_of(T) + MINUTES as i64 + 99;
        assert_eq!(
            traffic.series(now, MINUTES, 1).totals["cargo"].hits,
            MINUTES as u64
        );
        // A late count goes to its own minute; one older than the day is dropped.
        traffic.lookup(T + (MINUTES as i64 + 50) * 60_000, "cargo", false);
        traffic.lookup(T, "cargo", false);
        assert_eq!(traffic.series(now, MINUTES, 1).totals["cargo"].misses, 1);

        let rows = traffic.rows_since(now - 10);
        assert_eq!(rows.len(), 11);
        let again = Traffic::default();
        again.restore(traffic.rows_since(0));
        assert_eq!(
            again.series(now, MINUTES, 1).totals,
            traffic.series(now, MINUTES, 1).totals
        );
    }
}
