//! Helpers shared by the node's integration tests.

/// Deterministic bytes (xorshift, seeded) that do not repeat across 1 MiB chunks, so every leaf
/// of a test file is a different block.
pub fn file_bytes(len: usize, seed: u64) -> Vec<u8> {
    let mut state = 0x2545_f491_4f6c_dd1du64 ^ seed;
    (0..len)
        .map(|_| {
            state ^= state << 13;
            state ^= state >> 7;
            state ^= state << 17;
            state as u8
        })
        .collect()
}
