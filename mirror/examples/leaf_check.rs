//! What checking served bytes costs: sha2-256 of 1 MiB leaves against their CIDs, as a cached
//! artifact is read for sending (BENCHMARKS.md). Prints MB/s over 1 GiB, leaves in memory.
//!
//! `cargo run --release -p cairn-mirror --example leaf_check`.

fn main() {
    const LEAF: usize = 1 << 20;
    const LEAVES: usize = 1024;
    let data = cairn_mirror::testing::noise(LEAF * 16, 7);
    let cids: Vec<cid::Cid> = data
        .chunks(LEAF)
        .map(cairn_mirror::cid::raw_block_cid)
        .collect();
    let mut best = f64::MAX;
    for _ in 0..3 {
        let started = std::time::Instant::now();
        for i in 0..LEAVES {
            let (leaf, cid) = (&data[(i % 16) * LEAF..][..LEAF], &cids[i % 16]);
            if let Err(e) = cairn_mirror::blocks::verify(cid, leaf, String::new) {
                eprintln!("leaf {i}: {e}");
                std::process::exit(1);
            }
        }
        best = best.min(started.elapsed().as_secs_f64());
    }
    let mb = (LEAF * LEAVES) as f64 / 1e6;
    println!(
        "checked {mb:.0} MB of 1 MiB leaves in {best:.3} s (best of 3): {:.0} MB/s on one core",
        mb / best
    );
}
