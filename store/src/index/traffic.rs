//! The `traffic` table: the node's traffic per ecosystem, minute by minute, for the last day
//! (the engine's `traffic` module keeps it in memory and writes it here with the upkeep, so a
//! restart keeps the day's history for the dashboard).

use rusqlite::params;

use super::{Index, IndexError, err, lock};

/// One ecosystem's counts in one minute.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct TrafficRow {
    /// Minutes since the Unix epoch.
    pub minute: i64,
    pub ecosystem: String,
    pub hits: u64,
    pub misses: u64,
    pub cache_bytes: u64,
    pub peer_bytes: u64,
    pub upstream_bytes: u64,
}

/// A count as SQLite keeps integers.
fn int(n: u64) -> i64 {
    i64::try_from(n).unwrap_or(i64::MAX)
}

impl Index {
    /// Write `rows` (each replacing the row of its minute and ecosystem) and drop the rows
    /// before `keep_from` (a minute), in one transaction.
    pub fn put_traffic(&self, rows: &[TrafficRow], keep_from: i64) -> Result<(), IndexError> {
        let mut conn = lock(&self.writer);
        let tx = conn.transaction().map_err(err("begin"))?;
        {
            let mut put = tx
                .prepare_cached(
                    "INSERT OR REPLACE INTO traffic
                     (minute, ecosystem, hits, misses, cache_bytes, peer_bytes, upstream_bytes)
                     VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7)",
                )
                .map_err(err("write traffic"))?;
            for r in rows {
                put.execute(params![
                    r.minute,
                    r.ecosystem,
                    int(r.hits),
                    int(r.misses),
                    int(r.cache_bytes),
                    int(r.peer_bytes),
                    int(r.upstream_bytes)
                ])
                .map_err(err("write traffic"))?;
            }
            tx.execute("DELETE FROM traffic WHERE minute < ?1", params![keep_from])
                .map_err(err("drop old traffic"))?;
        }
        tx.commit().map_err(err("commit traffic"))
    }

    /// The rows from minute `from` on, oldest first.
    pub fn traffic_since(&self, from: i64) -> Result<Vec<TrafficRow>, IndexError> {
        self.read(|conn| {
            conn.prepare_cached(
                "SELECT minute, ecosystem, hits, misses, cache_bytes, peer_bytes, upstream_bytes
                 FROM traffic WHERE minute >= ?1 ORDER BY minute, ecosystem",
            )
            .and_then(|mut stmt| {
                stmt.query_map(params![from], |row| {
                    let count = |i: usize| row.get::<_, i64>(i).map(|n| n.max(0) as u64);
                    Ok(TrafficRow {
                        minute: row.get(0)?,
                        ecosystem: row.get(1)?,
                        hits: count(2)?,
                        misses: count(3)?,
                        cache_bytes: count(4)?,
                        peer_bytes: count(5)?,
                        upstream_bytes: count(6)?,
                    })
                })
                .and_then(|rows| rows.collect())
            })
            .map_err(err("read traffic"))
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn rows_replace_their_minute_and_old_ones_go() {
        let dir = tempfile::tempdir().expect("tempdir");
        let index = Index::open(&dir.path().join("index.sqlite")).expect("index");
        let row = |minute, hits| TrafficRow {
            minute,
            ecosystem: "npm".into(),
            hits,
            upstream_bytes: u64::MAX,
            ..TrafficRow::default()
        };
        index
            .put_traffic(&[row(10, 1), row(11, 2)], 0)
            .expect("put");
        index
            .put_traffic(&[row(11, 5), row(12, 1)], 11)
            .expect("put");
        let rows = index.traffic_since(0).expect("read");
        assert_eq!(
            rows.iter().map(|r| (r.minute, r.hits)).collect::<Vec<_>>(),
            [(11, 5), (12, 1)]
        );
        assert_eq!(rows[0].upstream_bytes, i64::MAX as u64);
        assert_eq!(index.traffic_since(12).expect("read").len(), 1);
    }
}
