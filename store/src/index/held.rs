//! The bytes the artifact files hold, in all and per ecosystem family, kept exact in memory as
//! this process changes the `artifacts` rows, so that size limits are checked without a scan.
//!
//! Every write that adds or drops artifact rows reads, inside its transaction, how the files
//! it touches are held before and after ([`Touched`]), and applies the difference once it has
//! committed, while it still holds the writer's lock. A count from the index
//! ([`Index::held_bytes_by_ecosystem`]) opens its read snapshot under that same lock and keeps
//! the differences applied after that moment: each change is then either in the scan or added
//! to it, never both and never neither. Writes by another process (an import beside a node)
//! are seen at the next count.

use std::collections::{BTreeMap, HashMap};
use std::sync::Mutex;

use rusqlite::{Connection, OptionalExtension, params};

use super::eviction::{HeldBytes, ecosystem_family};
use super::{Index, IndexError, err, lock};

/// The counts, and what changed since a count in progress opened its snapshot.
#[derive(Default)]
pub(super) struct Held {
    state: Mutex<State>,
    /// Held by a count from the index: one at a time.
    counting: Mutex<()>,
}

#[derive(Default)]
struct State {
    /// `None` until the first count from the index.
    counts: Option<HeldBytes>,
    /// While a count runs: the changes applied since its snapshot.
    since_snapshot: Option<Vec<Delta>>,
}

/// How a write changed what is held: bytes in all and per ecosystem family.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub(super) struct Delta {
    total: i64,
    by_family: BTreeMap<String, i64>,
}

impl Delta {
    fn is_empty(&self) -> bool {
        self.total == 0 && self.by_family.values().all(|&d| d == 0)
    }

    fn apply_to(&self, counts: &mut HeldBytes) {
        counts.total = add(counts.total, self.total);
        for (family, &d) in &self.by_family {
            let count = counts.by_ecosystem.entry(family.clone()).or_default();
            *count = add(*count, d);
        }
    }
}

fn add(count: u64, delta: i64) -> u64 {
    if delta >= 0 {
        count.saturating_add(delta as u64)
    } else {
        count.saturating_sub(delta.unsigned_abs())
    }
}

/// How one file is held: its size and the families whose rows name it (none: not held).
struct Holding {
    size: u64,
    families: Vec<String>,
}

fn holding(conn: &Connection, flat: &[u8]) -> Result<Holding, IndexError> {
    let what = "read how a file is held";
    let mut stmt = conn
        .prepare_cached("SELECT ecosystem, size FROM artifacts WHERE flat_cid = ?1")
        .map_err(err(what))?;
    let mut rows = stmt.query(params![flat]).map_err(err(what))?;
    let mut held = Holding {
        size: 0,
        families: Vec::new(),
    };
    while let Some(row) = rows.next().map_err(err(what))? {
        let ecosystem: String = row.get(0).map_err(err(what))?;
        held.size = held
            .size
            .max(row.get::<_, i64>(1).map_err(err(what))?.max(0) as u64);
        let family = ecosystem_family(&ecosystem);
        if !held.families.iter().any(|f| f == family) {
            held.families.push(family.to_owned());
        }
    }
    Ok(held)
}

/// The files a write touches, each with how it was held before the write.
#[derive(Default)]
pub(super) struct Touched {
    files: HashMap<Vec<u8>, Holding>,
}

impl Touched {
    /// Note the file `flat` before the write changes its rows (once per file).
    pub(super) fn file(&mut self, conn: &Connection, flat: &[u8]) -> Result<(), IndexError> {
        if !self.files.contains_key(flat) {
            let before = holding(conn, flat)?;
            self.files.insert(flat.to_vec(), before);
        }
        Ok(())
    }

    /// Note the file the row `(ecosystem, key)` names now, if any: a write replacing the row
    /// may leave that file held less.
    pub(super) fn key(
        &mut self,
        conn: &Connection,
        ecosystem: &str,
        key: &str,
    ) -> Result<(), IndexError> {
        let flat: Option<Vec<u8>> = conn
            .prepare_cached("SELECT flat_cid FROM artifacts WHERE ecosystem = ?1 AND key = ?2")
            .and_then(|mut stmt| {
                stmt.query_row(params![ecosystem, key], |row| row.get(0))
                    .optional()
            })
            .map_err(err("read the file a key names"))?;
        match flat {
            Some(flat) => self.file(conn, &flat),
            None => Ok(()),
        }
    }

    /// What the write changed, read after it (inside its transaction).
    pub(super) fn delta(self, conn: &Connection) -> Result<Delta, IndexError> {
        let mut delta = Delta::default();
        for (flat, before) in self.files {
            let after = holding(conn, &flat)?;
            let size = if before.families.is_empty() {
                after.size
            } else {
                before.size
            } as i64;
            let held = |h: &Holding| i64::from(!h.families.is_empty());
            delta.total += size * (held(&after) - held(&before));
            for family in &before.families {
                if !after.families.contains(family) {
                    *delta.by_family.entry(family.clone()).or_default() -= size;
                }
            }
            for family in &after.families {
                if !before.families.contains(family) {
                    *delta.by_family.entry(family.clone()).or_default() += size;
                }
            }
        }
        Ok(delta)
    }
}

impl Held {
    /// Apply a committed write's change. Call with the writer's lock still held.
    pub(super) fn apply(&self, delta: Delta) {
        if delta.is_empty() {
            return;
        }
        let mut state = lock(&self.state);
        if let Some(counts) = &mut state.counts {
            delta.apply_to(counts);
        }
        if let Some(since) = &mut state.since_snapshot {
            since.push(delta);
        }
    }

    fn read<T>(&self, f: impl FnOnce(&HeldBytes) -> T) -> Option<T> {
        lock(&self.state).counts.as_ref().map(f)
    }
}

impl Index {
    /// What is held in all and per ecosystem family as this process knows it: the last count
    /// from the index ([`Index::held_bytes_by_ecosystem`]) with every change this process made
    /// since. `None` before the first count.
    pub fn held_now(&self) -> Option<HeldBytes> {
        self.held.read(HeldBytes::clone)
    }

    /// Bytes of every artifact file, as [`Index::held_now`] knows it.
    pub fn held_total_now(&self) -> Option<u64> {
        self.held.read(|h| h.total)
    }

    /// Bytes an ecosystem family's rows name, as [`Index::held_now`] knows it (0 for a family
    /// that holds nothing).
    pub fn held_in_now(&self, family: &str) -> Option<u64> {
        self.held
            .read(|h| h.by_ecosystem.get(family).copied().unwrap_or(0))
    }

    /// Count what is held from the index, in all and per ecosystem family (one scan), and make
    /// it what [`Index::held_now`] answers from.
    pub fn held_bytes_by_ecosystem(&self) -> Result<HeldBytes, IndexError> {
        let _one = lock(&self.held.counting);
        let scanned = self.read(|conn| {
            let what = "count the held bytes per ecosystem";
            conn.execute_batch("BEGIN").map_err(err(what))?;
            let scanned = (|| {
                {
                    // The snapshot opens at the transaction's first read; no write commits
                    // while the writer's lock is held, so every change is on one side of it.
                    let _writes = lock(&self.writer);
                    conn.query_row("SELECT 1 FROM artifacts LIMIT 1", [], |_| Ok(()))
                        .optional()
                        .map_err(err(what))?;
                    lock(&self.held.state).since_snapshot = Some(Vec::new());
                }
                self.scan_held(conn)
            })();
            if conn.execute_batch("COMMIT").is_err() {
                let _ = conn.execute_batch("ROLLBACK");
            }
            scanned
        });
        let mut state = lock(&self.held.state);
        let since = state.since_snapshot.take().unwrap_or_default();
        let mut counts = scanned?;
        for delta in &since {
            delta.apply_to(&mut counts);
        }
        // A family that held something and holds nothing now reads 0.
        if let Some(last) = &state.counts {
            for family in last.by_ecosystem.keys() {
                counts.by_ecosystem.entry(family.clone()).or_default();
            }
        }
        state.counts = Some(counts.clone());
        Ok(counts)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn held(total: u64, families: &[(&str, u64)]) -> HeldBytes {
        HeldBytes {
            total,
            by_ecosystem: families.iter().map(|(f, b)| (f.to_string(), *b)).collect(),
        }
    }

    #[test]
    fn a_delta_adds_and_takes_away_without_going_below_zero() {
        let mut counts = held(100, &[("npm", 100)]);
        let delta = Delta {
            total: -150,
            by_family: [("npm".to_owned(), -150), ("pypi".to_owned(), 20)].into(),
        };
        delta.apply_to(&mut counts);
        assert_eq!(counts, held(0, &[("npm", 0), ("pypi", 20)]));
    }

    #[test]
    fn changes_are_lost_before_the_first_count_and_kept_after() {
        let h = Held::default();
        h.apply(Delta {
            total: 5,
            by_family: [("npm".to_owned(), 5)].into(),
        });
        assert!(h.read(|c| c.total).is_none());
        lock(&h.state).counts = Some(held(10, &[("npm", 10)]));
        h.apply(Delta {
            total: 5,
            by_family: [("npm".to_owned(), 5)].into(),
        });
        assert_eq!(h.read(|c| c.total), Some(15));
    }
}
