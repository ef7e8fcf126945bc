//! Helpers for tests of this crate and of the crates built on it (hidden from the docs).

/// `len` deterministic, incompressible bytes (xorshift64 from `seed`). No 1 MiB chunk repeats
/// another, so every leaf of a generated file is a different block, and gzip leaves it as big.
pub fn noise(len: usize, seed: u64) -> Vec<u8> {
    let mut state = seed | 1;
    let mut out = Vec::with_capacity(len + 8);
    while out.len() < len {
        state ^= state << 13;
        state ^= state >> 7;
        state ^= state << 17;
        out.extend_from_slice(&state.to_le_bytes());
    }
    out.truncate(len);
    out
}
