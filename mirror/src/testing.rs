//! Helpers for tests of this crate and of the crates built on it (hidden from the docs).

/// `len` deterministic, incompressible bytes (xorshift64 from `seed`). No 1 MiB chunk repeats
/// another, so every leaf of a generated file is a different block, and gzip leaves it as big.
/// The same function the node's tests use, from the crate both sides share.
pub use cairn_peering::testing::noise;
pub use cairn_store::testing::{blob_path, commit_keeping_leaves};
