//! Registry digests: the hash functions registries publish ([`Algorithm`]), a published digest
//! of a whole file ([`Digest`]) and the hash that checks one over a stream ([`Hasher`]).
//!
//! Needs no CID crate and, without the `hash` feature, no hash function either: naming an
//! artifact by the digest its registry published is all an adapter does, so adapters depend on
//! it with neither feature. Computing digests ([`Digest::of`], [`Hasher`]) is the engine's job. The CIDs these digests key the store
//! by are in the `cid` module (feature `cid`).

use std::fmt;

#[cfg(feature = "hash")]
use sha1::Digest as _;

/// Multihash code of sha2-256.
pub const SHA2_256: u64 = 0x12;
/// Multihash code of sha2-512.
pub const SHA2_512: u64 = 0x13;
/// Multihash code of sha1.
pub const SHA1: u64 = 0x11;

/// A CID or a digest could not be parsed (a digest of the wrong length for its algorithm).
#[derive(Debug)]
pub struct CidParseError {
    pub(crate) input: String,
    pub(crate) reason: String,
}

impl fmt::Display for CidParseError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "invalid CID {:?}: {}", self.input, self.reason)
    }
}

impl std::error::Error for CidParseError {}

/// The hash functions registries publish digests in.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum Algorithm {
    Sha1,
    Sha256,
    Sha512,
}

impl Algorithm {
    pub fn multihash_code(self) -> u64 {
        match self {
            Algorithm::Sha1 => SHA1,
            Algorithm::Sha256 => SHA2_256,
            Algorithm::Sha512 => SHA2_512,
        }
    }

    pub fn from_multihash_code(code: u64) -> Option<Self> {
        match code {
            SHA1 => Some(Algorithm::Sha1),
            SHA2_256 => Some(Algorithm::Sha256),
            SHA2_512 => Some(Algorithm::Sha512),
            _ => None,
        }
    }

    pub fn digest_len(self) -> usize {
        match self {
            Algorithm::Sha1 => 20,
            Algorithm::Sha256 => 32,
            Algorithm::Sha512 => 64,
        }
    }

    /// The name used in SRI strings and in messages (`sha512`, `sha256`, `sha1`).
    pub fn name(self) -> &'static str {
        match self {
            Algorithm::Sha1 => "sha1",
            Algorithm::Sha256 => "sha256",
            Algorithm::Sha512 => "sha512",
        }
    }
}

/// A digest of a whole artifact, as the registry published it.
#[derive(Clone, PartialEq, Eq, Hash)]
pub struct Digest {
    algorithm: Algorithm,
    bytes: Vec<u8>,
}

impl Digest {
    /// A digest from its raw bytes; fails when the length does not fit the algorithm.
    pub fn new(algorithm: Algorithm, bytes: Vec<u8>) -> Result<Self, CidParseError> {
        if bytes.len() != algorithm.digest_len() {
            return Err(CidParseError {
                input: hex::encode(&bytes),
                reason: format!(
                    "a {} digest has {} bytes, not {}",
                    algorithm.name(),
                    algorithm.digest_len(),
                    bytes.len()
                ),
            });
        }
        Ok(Digest { algorithm, bytes })
    }

    pub fn algorithm(&self) -> Algorithm {
        self.algorithm
    }

    pub fn bytes(&self) -> &[u8] {
        &self.bytes
    }

    /// Digest of `data` under `algorithm`.
    #[cfg(feature = "hash")]
    pub fn of(algorithm: Algorithm, data: &[u8]) -> Self {
        let mut hasher = Hasher::new(algorithm);
        hasher.update(data);
        hasher.finish()
    }
}

impl fmt::Display for Digest {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}:{}", self.algorithm.name(), hex::encode(&self.bytes))
    }
}

impl fmt::Debug for Digest {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        fmt::Display::fmt(self, f)
    }
}

/// Incremental hash of a stream under one [`Algorithm`].
#[cfg(feature = "hash")]
pub enum Hasher {
    Sha1(sha1::Sha1),
    Sha256(sha2::Sha256),
    Sha512(sha2::Sha512),
}

#[cfg(feature = "hash")]
impl Hasher {
    pub fn new(algorithm: Algorithm) -> Self {
        match algorithm {
            Algorithm::Sha1 => Hasher::Sha1(sha1::Sha1::new()),
            Algorithm::Sha256 => Hasher::Sha256(sha2::Sha256::new()),
            Algorithm::Sha512 => Hasher::Sha512(sha2::Sha512::new()),
        }
    }

    pub fn update(&mut self, data: &[u8]) {
        match self {
            Hasher::Sha1(h) => h.update(data),
            Hasher::Sha256(h) => h.update(data),
            Hasher::Sha512(h) => h.update(data),
        }
    }

    pub fn finish(self) -> Digest {
        let (algorithm, bytes) = match self {
            Hasher::Sha1(h) => (Algorithm::Sha1, h.finalize().to_vec()),
            Hasher::Sha256(h) => (Algorithm::Sha256, h.finalize().to_vec()),
            Hasher::Sha512(h) => (Algorithm::Sha512, h.finalize().to_vec()),
        };
        Digest { algorithm, bytes }
    }
}

/// sha2-256 of `data`.
#[cfg(feature = "hash")]
pub fn sha256(data: &[u8]) -> [u8; 32] {
    sha2::Sha256::digest(data).into()
}
