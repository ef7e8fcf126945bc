//! The store at scale: a data directory of `CAIRN_BENCH_ARTIFACTS` artifacts (default
//! 1,000,000 files of 256 bytes, built by `cairn_store::testing::synthetic_artifacts`), then,
//! each timed with the process's memory: opening the mirror on it, counting the bytes held (in
//! all, then in all and per ecosystem in one scan, as the upkeep does), choosing a tenth of the
//! store by last use (of all files, then of one ecosystem's), a `gc` with nothing to remove,
//! `verify`'s scan (every file read and checked against its CIDs), and an eviction pass of a
//! tenth of it under a size limit (rows dropped in batches, files deleted, events sent, the
//! store counted again).
//!
//!   cargo bench -p cairn-mirror --bench store_scale
//!
//! Knobs: `CAIRN_BENCH_ARTIFACTS`, `CAIRN_BENCH_SIZE` (bytes per artifact), `CAIRN_BENCH_DIR`
//! (the data directory's parent; default the system's temp dir; it needs about 5 GB for the
//! default, mostly file-system overhead of a million small files). With
//! `CAIRN_BENCH_BUILD_INTO=DIR` it only builds the store in DIR and exits (`bench/eviction.sh`
//! serves it).

use std::time::Instant;

use cairn_mirror::{Mirror, MirrorConfig};

fn env(name: &str, default: u64) -> u64 {
    std::env::var(name)
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(default)
}

/// This process's resident and peak resident memory, in MiB.
fn memory() -> (f64, f64) {
    let status = std::fs::read_to_string("/proc/self/status").unwrap_or_default();
    let field = |name: &str| {
        status
            .lines()
            .find_map(|l| l.strip_prefix(name))
            .and_then(|v| v.trim().trim_end_matches(" kB").trim().parse::<f64>().ok())
            .map_or(0.0, |kb| kb / 1024.0)
    };
    (field("VmRSS:"), field("VmHWM:"))
}

fn report(what: &str, started: Instant) {
    let (rss, peak) = memory();
    println!(
        "| {what} | {:.2} | {rss:.0} | {peak:.0} |",
        started.elapsed().as_secs_f64()
    );
}

fn main() {
    let count = env("CAIRN_BENCH_ARTIFACTS", 1_000_000);
    let size = env("CAIRN_BENCH_SIZE", 256) as usize;
    if let Some(into) = std::env::var_os("CAIRN_BENCH_BUILD_INTO") {
        let store = cairn_mirror::store::Store::open(std::path::Path::new(&into)).expect("store");
        cairn_store::testing::synthetic_artifacts(&store, "npm", count, size).expect("build");
        store.checkpoint().expect("checkpoint");
        return;
    }
    let parent = std::env::var_os("CAIRN_BENCH_DIR").map_or_else(std::env::temp_dir, Into::into);
    let dir = tempfile::tempdir_in(parent).expect("a temp dir");
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .expect("runtime");

    let built = Instant::now();
    {
        let store = cairn_mirror::store::Store::open(dir.path()).expect("store");
        cairn_store::testing::synthetic_artifacts(&store, "npm", count, size).expect("build");
        store.checkpoint().expect("checkpoint");
    }
    println!(
        "{count} artifacts of {size} bytes built in {:.0} s\n",
        built.elapsed().as_secs_f64()
    );
    println!("| step | seconds | RSS MiB after | peak RSS MiB |");
    println!("|---|---:|---:|---:|");

    let started = Instant::now();
    let mut config = MirrorConfig::new(dir.path().to_owned());
    // Just under what is held: a pass evicts down to 90% of it, a tenth of the store.
    config.max_store_bytes = Some(count * size as u64 - 1);
    let mirror = Mirror::open(config, Vec::new()).expect("open");
    report("open the mirror", started);

    let started = Instant::now();
    let held = mirror.store().held_bytes().expect("held");
    report("count the bytes held", started);
    assert_eq!(held, count * size as u64);

    let started = Instant::now();
    let counted = mirror
        .store()
        .held_bytes_by_ecosystem()
        .expect("held per ecosystem");
    report(
        "count the bytes held in all and per ecosystem (one scan, as the upkeep counts)",
        started,
    );
    assert_eq!(counted.total, held);
    assert_eq!(counted.by_ecosystem.get("npm"), Some(&held));

    let started = Instant::now();
    let chosen = mirror
        .index()
        .least_recently_used(held / 10, &|_| false)
        .expect("choose");
    report("choose a tenth by last use", started);
    assert!(chosen.len() as u64 >= count / 10);
    drop(chosen);

    // `cairn gc` with nothing to remove: every file looked up, every row's file looked at.
    let started = Instant::now();
    let gc = mirror
        .store()
        .gc(
            false,
            std::time::Duration::from_secs(3600),
            &cairn_mirror::store::GcKeep::default(),
        )
        .expect("gc");
    report("gc (nothing to remove)", started);
    assert_eq!(gc.orphan_files + gc.missing_files, 0);

    // `cairn verify`'s scan: every file read and checked, listed a page at a time.
    let started = Instant::now();
    let (mut after, mut checked) = (None, 0u64);
    loop {
        let page = mirror
            .index()
            .held_artifacts_after(after.as_ref(), 1000)
            .expect("page");
        let Some(last) = page.last() else { break };
        after = Some(last.flat);
        for held in &page {
            let sound = mirror
                .store()
                .check_artifact(held, &mut |_| {})
                .expect("check");
            assert_eq!(sound, cairn_mirror::store::Checked::Sound);
            checked += 1;
        }
    }
    report("verify every file", started);
    assert_eq!(checked, count);

    let started = Instant::now();
    let chosen = mirror
        .index()
        .least_recently_used_in(Some("npm"), held / 10, &|_| false)
        .expect("choose in npm");
    report("choose a tenth by last use among npm's files", started);
    assert!(chosen.len() as u64 >= count / 10);
    drop(chosen);

    let started = Instant::now();
    let pass = runtime
        .block_on(mirror.evict_if_over())
        .expect("eviction pass");
    report(
        &format!("evict a tenth ({} files, {} bytes)", pass.files, pass.bytes),
        started,
    );
    assert!(pass.files as u64 >= count / 10);

    let started = Instant::now();
    runtime.block_on(mirror.close()).expect("close");
    drop(mirror);
    let mirror = Mirror::open(MirrorConfig::new(dir.path().to_owned()), Vec::new()).expect("open");
    report("close, then open again", started);
    drop(mirror);
}
