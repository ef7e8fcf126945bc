//! The traffic history's cost: the memory it holds after a week of simulated traffic (the
//! process's resident set before and after, measured, not estimated), and the time one count
//! takes on the request path, alone and with every core counting at once (its lock contended).
//!
//!   cargo bench -p cairn-mirror --bench traffic_memory
//!
//! A week: every minute of seven days, each of `CAIRN_BENCH_ECOSYSTEMS` ecosystems (default 8:
//! npm, cargo, pypi, and apt archives) gets `CAIRN_BENCH_PER_MINUTE` lookups (default 200) and
//! as many served-bytes counts, in time order, as a node running a week does.

use std::time::Instant;

use cairn_mirror::traffic::{MINUTES, Traffic};

/// This process's resident memory, in KiB (the workspace forbids `unsafe`, so no counting
/// allocator: the resident set's growth is what the history holds, to a few pages).
fn resident_kib() -> i64 {
    std::fs::read_to_string("/proc/self/status")
        .unwrap_or_default()
        .lines()
        .find_map(|l| l.strip_prefix("VmRSS:"))
        .and_then(|v| v.trim().trim_end_matches(" kB").trim().parse().ok())
        .unwrap_or(0)
}

fn env(name: &str, default: u64) -> u64 {
    std::env::var(name)
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(default)
}

fn main() {
    let ecosystems_n = env("CAIRN_BENCH_ECOSYSTEMS", 8) as usize;
    let per_minute = env("CAIRN_BENCH_PER_MINUTE", 200);
    let names: Vec<String> = ["npm", "cargo", "pypi"]
        .iter()
        .map(|s| s.to_string())
        .chain((0..).map(|i| format!("apt/archive-{i}")))
        .take(ecosystems_n)
        .collect();
    let week = 7 * MINUTES as i64;
    let start_ms: i64 = 1_800_000_000_000;

    let before = resident_kib();
    let traffic = Traffic::default();
    let began = Instant::now();
    let mut counts = 0u64;
    for minute in 0..week {
        let at = start_ms + minute * 60_000;
        for name in &names {
            for i in 0..per_minute {
                let ms = at + (i as i64 * 60_000) / per_minute as i64;
                traffic.lookup(ms, name, i % 4 != 0);
                traffic.served(
                    ms,
                    name,
                    if i % 4 != 0 { "cache" } else { "upstream" },
                    65_536,
                );
                counts += 2;
            }
        }
    }
    let took = began.elapsed();
    let held = (resident_kib() - before) * 1024;
    println!(
        "a week of traffic: {} ecosystems × {} lookups a minute, {} counts in {:.2} s ({:.0} ns a count, one thread)",
        names.len(),
        per_minute,
        counts,
        took.as_secs_f64(),
        took.as_nanos() as f64 / counts as f64
    );
    println!(
        "memory held by the history afterwards: {} bytes ({:.2} MiB; {:.0} bytes per ecosystem and minute kept; {} buckets kept, the day)",
        held,
        held as f64 / (1 << 20) as f64,
        held as f64 / (names.len() * MINUTES) as f64,
        traffic.len(),
    );

    // Contended: every core counting into the same history at once.
    let threads = std::thread::available_parallelism().map_or(2, |n| n.get());
    let per_thread = 2_000_000u64;
    let shared = std::sync::Arc::new(Traffic::default());
    let began = Instant::now();
    let handles: Vec<_> = (0..threads)
        .map(|t| {
            let shared = shared.clone();
            let name = names[t % names.len()].clone();
            std::thread::spawn(move || {
                for i in 0..per_thread {
                    let ms = start_ms + (i as i64 / 10_000) * 60_000;
                    shared.lookup(ms, &name, i % 4 != 0);
                }
            })
        })
        .collect();
    for handle in handles {
        let _ = handle.join();
    }
    let took = began.elapsed();
    println!(
        "{threads} threads counting at once: {:.0} ns a count per thread ({:.1} M counts/s in all)",
        took.as_nanos() as f64 / per_thread as f64,
        (threads as u64 * per_thread) as f64 / took.as_secs_f64() / 1e6
    );
}
