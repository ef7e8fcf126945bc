//! Helpers for tests of this crate and of the crates built on it (hidden from the docs).

pub use cairn_peering::testing::noise;

/// Commit `writer` as `ecosystem`/`key` with only the first `keep` leaves of its DAG indexed:
/// an index that lost leaf rows, for tests of what its readers do then. Returns the committed
/// artifact with its whole DAG.
pub fn commit_keeping_leaves(
    store: &crate::store::Store,
    ecosystem: &str,
    key: &str,
    writer: crate::store::ArtifactWriter,
    origin: crate::store::Origin,
    keep: usize,
) -> Result<crate::store::Committed, crate::error::StoreError> {
    let placed = writer.finish_with(|_| {})?;
    let mut dag = placed.dag.clone();
    dag.leaves.truncate(keep);
    let record = crate::index::ArtifactRecord {
        private: false,
        flat: placed.flat,
        root: crate::cid::RootCid(placed.dag.root),
        size: placed.dag.size,
        upstream_url: origin.upstream_url,
        fetched_at: origin.fetched_at,
    };
    store.index().put_artifact(ecosystem, key, &record, &dag)?;
    Ok(crate::store::Committed {
        record,
        dag: placed.dag,
        blob: placed.blob,
    })
}

/// Where the flat file of `flat` lives, for tests that damage a stored file as a disk would.
pub fn blob_path(store: &crate::store::Store, flat: &crate::cid::FlatCid) -> std::path::PathBuf {
    store.blob_path(flat)
}

/// Fill `store` with `count` artifacts of `size` bytes each (different bytes each), as
/// `ecosystem`/`synthetic/N`, last used in the order they are numbered (artifact `n` at `n`
/// ms), with files written without fsync and rows in batches: a large store for benchmarks,
/// built in minutes rather than hours. Returns the bytes written.
pub fn synthetic_artifacts(
    store: &crate::store::Store,
    ecosystem: &str,
    count: u64,
    size: usize,
) -> Result<u64, crate::error::StoreError> {
    use crate::cid::{Algorithm, Digest, RootCid};
    const BATCH: u64 = 10_000;
    let mut written = 0u64;
    let mut start = 0u64;
    while start < count {
        let end = (start + BATCH).min(count);
        let mut rows = Vec::with_capacity((end - start) as usize);
        for n in start..end {
            let data: Vec<u8> = n
                .to_le_bytes()
                .iter()
                .copied()
                .cycle()
                .take(size.max(8))
                .collect();
            let flat = Digest::of(Algorithm::Sha256, &data).flat_cid();
            let mut builder = crate::unixfs::DagBuilder::new();
            builder.update(&data);
            let dag = builder.finish();
            let path = store.blob_path(&flat);
            if let Some(parent) = path.parent() {
                std::fs::create_dir_all(parent)
                    .map_err(|e| crate::error::StoreError::io("create directory", parent, e))?;
            }
            std::fs::write(&path, &data)
                .map_err(|e| crate::error::StoreError::io("write", &path, e))?;
            written += data.len() as u64;
            let record = crate::index::ArtifactRecord {
                private: false,
                flat,
                root: RootCid(dag.root),
                size: dag.size,
                upstream_url: format!("http://upstream.invalid/synthetic/{n}"),
                fetched_at: n as i64,
            };
            rows.push((ecosystem.to_owned(), format!("synthetic/{n}"), record, dag));
        }
        store.index().put_artifacts(&rows)?;
        start = end;
    }
    Ok(written)
}
