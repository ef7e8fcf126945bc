//! The allocator's own view of the node's memory, for `/metrics`: the bytes the program holds
//! (`cairn_memory_allocated_bytes`) against the bytes of memory resident for it
//! (`cairn_memory_resident_bytes`). The difference is what jemalloc keeps for reuse and hands
//! back on its timer; the process's RSS adds code, stacks and SQLite's own allocations (which
//! go through the same allocator, so they are in both figures).

use std::time::Duration;

use prometheus_client::metrics::gauge::Gauge;

/// How often the figures are read (reading them is a few `mallctl` calls).
const EVERY: Duration = Duration::from_secs(5);

/// The gauges, registered into `metrics`, and a task that refreshes them until the runtime
/// ends.
pub fn export(metrics: &cairn_mirror::metrics::Metrics) {
    let (allocated, resident) = metrics.register(|registry| {
        let allocated = Gauge::<i64>::default();
        let resident = Gauge::<i64>::default();
        registry.register(
            "memory_allocated_bytes",
            "Bytes the node holds, as its allocator counts them",
            allocated.clone(),
        );
        registry.register(
            "memory_resident_bytes",
            "Bytes of memory resident for the allocator: held, and kept for reuse",
            resident.clone(),
        );
        (allocated, resident)
    });
    tokio::spawn(async move {
        let mut tick = tokio::time::interval(EVERY);
        loop {
            tick.tick().await;
            // Statistics are cached until the epoch moves on.
            if tikv_jemalloc_ctl::epoch::advance().is_err() {
                return;
            }
            if let (Ok(a), Ok(r)) = (
                tikv_jemalloc_ctl::stats::allocated::read(),
                tikv_jemalloc_ctl::stats::resident::read(),
            ) {
                allocated.set(i64::try_from(a).unwrap_or(i64::MAX));
                resident.set(i64::try_from(r).unwrap_or(i64::MAX));
            }
        }
    });
}
