//! Buffers for reading whole blocks (up to a 1 MiB leaf, or a CAR or wire frame) into.
//!
//! `vec![0u8; n]` asks the allocator for zeroed memory (`calloc`). For sizes like a leaf's,
//! jemalloc answers that by handing back pages it has just let the kernel drop, so every byte
//! later written into the buffer first takes a page fault and a kernel page clear: 256 faults
//! per MiB, measured at about a tenth of a peer transfer's CPU on both ends. Asking for
//! uninitialised capacity and filling it with zeros reuses memory the allocator keeps instead:
//! the zeroing is a `memset` of memory already mapped.

/// A buffer of `len` zero bytes, from reused memory where the allocator has some.
#[expect(
    clippy::slow_vector_initialization,
    reason = "vec![0; len] is the calloc this avoids"
)]
pub fn zeroed(len: usize) -> Vec<u8> {
    let mut buffer = Vec::with_capacity(len);
    buffer.resize(len, 0);
    buffer
}

#[cfg(test)]
mod tests {
    #[test]
    fn zeroed_is_zeros_of_the_length_asked() {
        for len in [0, 1, 4096, 1 << 20] {
            let buffer = super::zeroed(len);
            assert_eq!(buffer.len(), len);
            assert!(buffer.iter().all(|b| *b == 0));
        }
    }
}
