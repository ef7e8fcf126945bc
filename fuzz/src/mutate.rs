//! The mutation engine: a seeded PRNG and byte-level mutations of corpus inputs.
//!
//! No coverage feedback (that needs compiler instrumentation, which stable Rust does not
//! offer). Instead: stacked mutations of real-shaped seeds, splices of two inputs, and values
//! that parsers treat specially (boundaries, lengths, varints, decimal numbers, syntax bytes).

/// splitmix64: small, fast, and good enough to drive mutations. Deterministic per seed, so a
/// run can be repeated.
#[derive(Clone, Debug)]
pub struct Rng(u64);

impl Rng {
    pub fn new(seed: u64) -> Self {
        Rng(seed)
    }

    pub fn next_u64(&mut self) -> u64 {
        self.0 = self.0.wrapping_add(0x9e37_79b9_7f4a_7c15);
        let mut z = self.0;
        z = (z ^ (z >> 30)).wrapping_mul(0xbf58_476d_1ce4_e5b9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94d0_49bb_1331_11eb);
        z ^ (z >> 31)
    }

    /// Uniform in `0..n` (`0` when `n` is `0`).
    pub fn below(&mut self, n: usize) -> usize {
        if n == 0 {
            0
        } else {
            (self.next_u64() % n as u64) as usize
        }
    }

    /// True with probability `1/n`.
    pub fn one_in(&mut self, n: usize) -> bool {
        self.below(n) == 0
    }

    /// A length that favours short ranges: most edits touch a few bytes, some touch many.
    fn span(&mut self, max: usize) -> usize {
        let cap = match self.below(4) {
            0..=1 => 8,
            2 => 64,
            _ => 4096,
        };
        1 + self.below(cap.min(max.max(1)))
    }
}

/// Bytes that parsers treat specially: boundaries of signed and unsigned types, and the
/// syntax characters of the text formats Cairn reads.
const INTERESTING_BYTES: &[u8] = &[
    0x00, 0xff, 0x7f, 0x80, 0x01, 0xfe, 0x40, 0x20, b'\n', b'\r', b'"', b'\\', b'{', b'}', b'[',
    b']', b':', b',', b'<', b'>', b'&', b'%', b'/', b'.', b'-', b'#', b'@', b'=', b' ', b'\t',
];

/// Text fragments worth inserting into the text formats (JSON, HTML, YAML-ish, deb822, TOML).
const TOKENS: &[&[u8]] = &[
    b"..",
    b"%2e%2e",
    b"%2f",
    b"%00",
    b"\\u0000",
    b"\\ud800",
    b"null",
    b"true",
    b"[]",
    b"{}",
    b"\"\"",
    b"&#0;",
    b"&amp;",
    b"<a href=\"",
    b"</a>",
    b"-----BEGIN PGP SIGNATURE-----\n",
    b"-----END PGP SIGNATURE-----\n",
    b"sha256=",
    b"sha512-",
    b"SHA256:\n ",
    b"Filename: ",
    b"Size: ",
    b"[[package]]\n",
    b"version = ",
    b"\"versions\":",
    b"\"files\":",
    b"@",
    b"\xef\xbb\xbf",
    b"\xc3\x28",
    b"\xf0\x9f\x92\xa9",
    b"18446744073709551615",
    b"9223372036854775808",
    b"-9223372036854775809",
    b"4294967296",
    b"1e999",
    b"-0",
];

fn put_varint(out: &mut Vec<u8>, mut value: u64) {
    while value >= 0x80 {
        out.push((value as u8 & 0x7f) | 0x80);
        value >>= 7;
    }
    out.push(value as u8);
}

/// A number a length or count field might hold: boundaries, powers of two and their
/// neighbours, and values near the input's own length.
fn interesting_number(rng: &mut Rng, len: usize) -> u64 {
    match rng.below(6) {
        0 => [0, 1, 0x7f, 0x80, 0xff, 0x100, 0xffff, 0x1_0000][rng.below(8)],
        1 => {
            let p = 1u64 << rng.below(64);
            match rng.below(3) {
                0 => p.wrapping_sub(1),
                1 => p,
                _ => p.wrapping_add(1),
            }
        }
        2 => u64::MAX - rng.below(3) as u64,
        3 => (i64::MAX as u64).wrapping_add(rng.below(3) as u64),
        4 => (len as u64)
            .wrapping_add(rng.below(5) as u64)
            .wrapping_sub(2),
        _ => rng.next_u64() >> rng.below(64),
    }
}

/// Mutate `input` in place with one to eight stacked edits. `other` is another corpus input,
/// used for splicing. The result is at most `max_len` bytes.
pub fn mutate(rng: &mut Rng, input: &mut Vec<u8>, other: &[u8], max_len: usize) {
    let edits = 1 + rng.below(8);
    for _ in 0..edits {
        mutate_once(rng, input, other);
    }
    input.truncate(max_len);
}

fn mutate_once(rng: &mut Rng, data: &mut Vec<u8>, other: &[u8]) {
    let len = data.len();
    match rng.below(15) {
        // Flip one bit.
        0 if len > 0 => {
            let at = rng.below(len);
            data[at] ^= 1 << rng.below(8);
        }
        // Set a byte to a boundary or syntax value.
        1 if len > 0 => {
            let at = rng.below(len);
            data[at] = INTERESTING_BYTES[rng.below(INTERESTING_BYTES.len())];
        }
        // Set a byte to anything.
        2 if len > 0 => {
            let at = rng.below(len);
            data[at] = rng.next_u64() as u8;
        }
        // Add to or subtract from a byte (lengths off by a little).
        3 if len > 0 => {
            let at = rng.below(len);
            let delta = 1 + rng.below(16) as u8;
            data[at] = if rng.one_in(2) {
                data[at].wrapping_add(delta)
            } else {
                data[at].wrapping_sub(delta)
            };
        }
        // Delete a range.
        4 if len > 0 => {
            let at = rng.below(len);
            let n = rng.span(len - at);
            data.drain(at..at + n.min(len - at));
        }
        // Duplicate a range in place (repeated fields, nesting).
        5 if len > 0 => {
            let at = rng.below(len);
            let n = rng.span(len - at).min(len - at);
            let copy = data[at..at + n].to_vec();
            let to = rng.below(len + 1);
            let times = if rng.one_in(8) { 1 + rng.below(32) } else { 1 };
            for _ in 0..times {
                data.splice(to..to, copy.iter().copied());
            }
        }
        // Insert random or repeated bytes.
        6 => {
            let at = rng.below(len + 1);
            let n = rng.span(256);
            let byte = if rng.one_in(2) {
                INTERESTING_BYTES[rng.below(INTERESTING_BYTES.len())]
            } else {
                rng.next_u64() as u8
            };
            let random = rng.one_in(2);
            let bytes: Vec<u8> = (0..n)
                .map(|_| if random { rng.next_u64() as u8 } else { byte })
                .collect();
            data.splice(at..at, bytes);
        }
        // Insert a token.
        7 => {
            let at = rng.below(len + 1);
            let token = TOKENS[rng.below(TOKENS.len())];
            data.splice(at..at, token.iter().copied());
        }
        // Overwrite with a little- or big-endian number of 1, 2, 4 or 8 bytes.
        8 if len > 0 => {
            let width = [1, 2, 4, 8][rng.below(4)];
            let at = rng.below(len);
            let value = interesting_number(rng, len);
            let bytes = if rng.one_in(2) {
                value.to_le_bytes()
            } else {
                value.to_be_bytes()
            };
            let bytes = if rng.one_in(2) {
                &bytes[..width]
            } else {
                &bytes[8 - width..]
            };
            let end = (at + width).min(len);
            data[at..end].copy_from_slice(&bytes[..end - at]);
        }
        // Insert or overwrite with a uvarint (CAR, dag-pb, Bitswap and frame lengths).
        9 => {
            let mut varint = Vec::new();
            put_varint(&mut varint, interesting_number(rng, len));
            let at = rng.below(len + 1);
            if rng.one_in(2) || at == len {
                data.splice(at..at, varint);
            } else {
                let end = (at + varint.len()).min(len);
                data.splice(at..end, varint);
            }
        }
        // Replace the uvarint starting at some byte with another (protobuf fields, CAR and
        // frame lengths), keeping what follows it in place.
        14 if len > 0 => {
            let at = rng.below(len);
            let end = (at..len.min(at + 10))
                .find(|&i| data[i] & 0x80 == 0)
                .map_or(len, |i| i + 1);
            let mut varint = Vec::new();
            put_varint(&mut varint, interesting_number(rng, len));
            data.splice(at..end, varint);
        }
        // Replace a run of ASCII digits with another decimal number.
        10 if len > 0 => {
            let at = rng.below(len);
            let Some(start) = (at..len).find(|&i| data[i].is_ascii_digit()) else {
                return;
            };
            let end = (start..len)
                .find(|&i| !data[i].is_ascii_digit())
                .unwrap_or(len);
            let value = interesting_number(rng, len);
            let text = if rng.one_in(4) {
                format!("-{value}")
            } else {
                value.to_string()
            };
            data.splice(start..end, text.into_bytes());
        }
        // Splice: keep a prefix of this input and continue with a suffix of the other.
        11 if !other.is_empty() => {
            let keep = rng.below(len + 1);
            let from = rng.below(other.len());
            data.truncate(keep);
            data.extend_from_slice(&other[from..]);
        }
        // Insert a range of the other input.
        12 if !other.is_empty() => {
            let from = rng.below(other.len());
            let n = rng.span(other.len() - from).min(other.len() - from);
            let at = rng.below(len + 1);
            data.splice(at..at, other[from..from + n].iter().copied());
        }
        // Truncate.
        13 if len > 0 => {
            data.truncate(rng.below(len));
        }
        _ => {
            // The chosen edit needs bytes the input does not have: append one.
            data.push(rng.next_u64() as u8);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_same_seed_gives_the_same_mutants() {
        let seed = b"{\"name\":\"demo\",\"versions\":{\"1.0.0\":{}}}".to_vec();
        let run = |s| {
            let mut rng = Rng::new(s);
            (0..200)
                .map(|_| {
                    let mut input = seed.clone();
                    mutate(&mut rng, &mut input, b"other input 123", 1 << 16);
                    input
                })
                .collect::<Vec<_>>()
        };
        assert_eq!(run(7), run(7));
        assert_ne!(run(7), run(8));
        assert!(run(7).iter().any(|m| m != &seed));
    }

    #[test]
    fn mutants_respect_the_length_bound() {
        let mut rng = Rng::new(1);
        for _ in 0..2000 {
            let mut input = vec![b'7'; 100];
            mutate(&mut rng, &mut input, &[0u8; 300], 128);
            assert!(input.len() <= 128);
        }
    }
}
