//! What committing a large metadata document costs the index's writer: one document listing
//! FILES (default 15,000, as a large PyPI project's page does) written with `put_document`,
//! RUNS times (default 9) into one store, each under its own key; prints every commit's time
//! and their median (BENCHMARKS.md, PyPI). A commit holds the index's one writer, so every
//! other commit waits for it.
//!
//! `cargo run --release -p cairn-store --example document_commit [FILES] [RUNS]`.

use std::time::Instant;

use cairn_store::cid::{Algorithm, Digest};
use cairn_store::index::{MetadataRecord, RefRecord};
use cairn_store::store::Store;

fn main() {
    let mut args = std::env::args().skip(1);
    let files: usize = args.next().and_then(|a| a.parse().ok()).unwrap_or(15_000);
    let runs: usize = args.next().and_then(|a| a.parse().ok()).unwrap_or(9);
    let dir = match tempfile::tempdir() {
        Ok(dir) => dir,
        Err(e) => {
            eprintln!("cannot make a temporary directory: {e}");
            std::process::exit(1);
        }
    };
    let store = match Store::open(dir.path()) {
        Ok(store) => store,
        Err(e) => {
            eprintln!("cannot open a store in {}: {e}", dir.path().display());
            std::process::exit(1);
        }
    };
    let mut times = Vec::new();
    for run in 0..runs {
        let project = format!("project-{run}");
        // Keys, URLs and versions shaped like a wheel-heavy project's files.
        let refs: Vec<(String, RefRecord)> = (0..files)
            .map(|i| {
                let name = format!(
                    "{}-2.{}.{}-cp3{}-cp3{}-manylinux_2_17_x86_64.manylinux2014_x86_64.whl",
                    project.replace('-', "_"),
                    i / 40,
                    i % 40,
                    8 + i % 6,
                    8 + i % 6
                );
                let digest = Digest::of(Algorithm::Sha256, name.as_bytes());
                let reference = RefRecord {
                    flat: digest.flat_cid(),
                    url: format!(
                        "https://files.upstream.invalid/packages/{:02x}/{:02x}/{}/{name}",
                        i % 256,
                        (i / 256) % 256,
                        digest.flat_cid()
                    ),
                    size: Some(2_000_000 + i as u64),
                    version: Some(format!("2.{}.{}", i / 40, i % 40)),
                    published: Some(1_700_000_000_000 + i as i64),
                    removed: None,
                    yanked: false,
                    package: None,
                };
                (format!("{project}/{name}"), reference)
            })
            .collect();
        let body: Vec<u8> = refs
            .iter()
            .flat_map(|(key, r)| [key.as_bytes(), b" ", r.url.as_bytes(), b"\n"].concat())
            .collect();
        let record = MetadataRecord {
            cid: None,
            status: 200,
            upstream_url: format!("https://upstream.invalid/simple/{project}/"),
            fetched_at: 1,
            etag: None,
            last_modified: None,
            size: 0,
            private: false,
        };
        let started = Instant::now();
        if let Err(e) = store.put_document("pypi", &project, &body, record, &refs) {
            eprintln!("commit {run}: {e}");
            std::process::exit(1);
        }
        let ms = started.elapsed().as_secs_f64() * 1000.0;
        println!("commit {run}: {files} references, {ms:.1} ms");
        times.push(ms);
    }
    times.sort_by(f64::total_cmp);
    if let Some(median) = times.get(times.len() / 2) {
        println!("median of {runs}: {median:.1} ms for {files} references");
    }
}
