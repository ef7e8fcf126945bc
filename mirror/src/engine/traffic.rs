//! The engine's side of the traffic history ([`crate::traffic`]): read back from the index
//! when the engine is built, written to it with the upkeep and at close, and read as windows
//! for `GET /api/v1/traffic`.

use std::sync::atomic::Ordering;

use super::{Mirror, blocking, now_ms};
use crate::error::Error;
use crate::index::{Index, TrafficRow};
use crate::traffic::{Counts, MINUTES, Series, Traffic, minute_of};

/// The windows the API answers: the last hour by minute, the last day by quarter hour.
pub const WINDOWS: [(&str, usize, i64); 2] = [("hour", 60, 1), ("day", 96, 15)];

/// Take the day's rows from the index into `traffic` (at build).
pub(super) fn restore(index: &Index, traffic: &Traffic) -> Result<(), Error> {
    let from = minute_of(now_ms()) - MINUTES as i64 + 1;
    let rows = index.traffic_since(from)?;
    traffic.restore(
        rows.into_iter()
            .map(|r| {
                let counts = Counts {
                    hits: r.hits,
                    misses: r.misses,
                    cache_bytes: r.cache_bytes,
                    peer_bytes: r.peer_bytes,
                    upstream_bytes: r.upstream_bytes,
                };
                (r.minute, r.ecosystem, counts)
            })
            .collect(),
    );
    Ok(())
}

impl Mirror {
    /// Write the minutes counted since the last write (the last one again: it may have grown)
    /// to the index, and drop what is older than a day.
    pub async fn flush_traffic(&self) -> Result<(), Error> {
        let now = minute_of(now_ms());
        let since = self.inner.traffic_flushed.load(Ordering::SeqCst).min(now) - 1;
        let rows: Vec<TrafficRow> = self
            .inner
            .metrics
            .traffic
            .rows_since(since)
            .into_iter()
            .map(|(minute, ecosystem, c)| TrafficRow {
                minute,
                ecosystem,
                hits: c.hits,
                misses: c.misses,
                cache_bytes: c.cache_bytes,
                peer_bytes: c.peer_bytes,
                upstream_bytes: c.upstream_bytes,
            })
            .collect();
        let index = self.inner.index.clone();
        blocking(move || Ok(index.put_traffic(&rows, now - MINUTES as i64 + 1)?)).await?;
        self.inner.traffic_flushed.store(now, Ordering::SeqCst);
        Ok(())
    }

    /// The traffic of the window named `window` (`hour`, `day`).
    pub fn traffic(&self, window: &str) -> Result<Series, Error> {
        let (_, buckets, width) = WINDOWS
            .iter()
            .find(|(name, _, _)| *name == window)
            .ok_or_else(|| {
                Error::BadRequest(format!(
                    "window {window:?}: expected one of {}",
                    WINDOWS.map(|w| w.0).join(", ")
                ))
            })?;
        Ok(self
            .inner
            .metrics
            .traffic
            .series(minute_of(now_ms()), *buckets, *width))
    }
}
