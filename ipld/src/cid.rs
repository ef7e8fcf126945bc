//! Content identifiers: the registry digests Cairn verifies against and the CIDs it stores by.
//!
//! Two identifiers name every artifact:
//! - [`FlatCid`]: CIDv1 raw over the registry's own digest of the whole file (sha2-512 for npm,
//!   sha2-256 elsewhere, sha1 for very old npm packages). Computable before a byte is seen, so it
//!   keys the store and is what peers look up.
//! - [`RootCid`]: the UnixFS DAG root under the `unixfs-v1-2025` profile, computed at ingest.
//!
//! [`Digest`] is the expected digest as a registry publishes it; [`Hasher`] computes it over a
//! stream. Both live in [`crate::digest`] (which needs no CID crate) and are re-exported here.

use std::fmt;
use std::str::FromStr;

use cid::Cid;

pub use crate::digest::{
    Algorithm, CidParseError, Digest, Hasher, SHA1, SHA2_256, SHA2_512, sha256,
};

/// Multicodec code of raw bytes.
pub const RAW: u64 = 0x55;
/// Multicodec code of dag-pb.
pub const DAG_PB: u64 = 0x70;
/// Multicodec code of dag-cbor.
pub const DAG_CBOR: u64 = 0x71;
/// Multihash code of the identity "hash" (the digest is the data itself).
pub const IDENTITY: u64 = 0x00;
fn make_cid(codec: u64, code: u64, digest: &[u8]) -> Cid {
    // Digests here are at most 64 bytes, the size `cid::Cid`'s multihash holds; `wrap` only
    // fails beyond that, so this cannot fail for the algorithms above.
    match multihash::Multihash::<64>::wrap(code, digest) {
        Ok(mh) => Cid::new_v1(codec, mh),
        Err(_) => unreachable_digest(digest.len()),
    }
}

#[cold]
fn unreachable_digest(len: usize) -> ! {
    panic!("digest of {len} bytes does not fit a 64-byte multihash")
}

/// CIDv1 raw over an existing digest.
pub fn raw_cid(code: u64, digest: &[u8]) -> Cid {
    make_cid(RAW, code, digest)
}

/// CIDv1 raw sha2-256 of `data`: a raw block's CID.
pub fn raw_block_cid(data: &[u8]) -> Cid {
    raw_cid(SHA2_256, &sha256(data))
}

/// CIDv1 dag-pb sha2-256 of an encoded dag-pb node.
pub fn dag_pb_cid(node: &[u8]) -> Cid {
    make_cid(DAG_PB, SHA2_256, &sha256(node))
}

/// Parse CID bytes, naming the input in the error.
pub fn cid_from_bytes(bytes: &[u8]) -> Result<Cid, CidParseError> {
    Cid::try_from(bytes).map_err(|e| CidParseError {
        input: hex::encode(bytes),
        reason: e.to_string(),
    })
}

/// Whether `data` hashes to `cid`'s multihash (identity, sha2-256, sha2-512 or sha1): how a
/// block is checked before it is served or taken. `None` when the multihash is of another
/// function, which Cairn does not compute.
pub fn block_matches(cid: &Cid, data: &[u8]) -> Option<bool> {
    let multihash = cid.hash();
    match multihash.code() {
        IDENTITY => Some(multihash.digest() == data),
        code => Algorithm::from_multihash_code(code)
            .map(|algorithm| Digest::of(algorithm, data).bytes() == multihash.digest()),
    }
}

macro_rules! cid_newtype {
    ($(#[$doc:meta])* $name:ident) => {
        $(#[$doc])*
        #[derive(Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
        pub struct $name(pub Cid);

        impl $name {
            pub fn to_bytes(&self) -> Vec<u8> {
                self.0.to_bytes()
            }

            pub fn from_bytes(bytes: &[u8]) -> Result<Self, CidParseError> {
                cid_from_bytes(bytes).map($name)
            }

            /// The last characters of the string form: enough to tell CIDs apart in logs.
            pub fn short(&self) -> String {
                let s = self.0.to_string();
                let tail = s.len().saturating_sub(10);
                format!("…{}", &s[tail..])
            }
        }

        impl fmt::Display for $name {
            fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                fmt::Display::fmt(&self.0, f)
            }
        }

        impl fmt::Debug for $name {
            fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                write!(f, "{}({})", stringify!($name), self.0)
            }
        }

        impl FromStr for $name {
            type Err = CidParseError;
            fn from_str(s: &str) -> Result<Self, Self::Err> {
                Cid::from_str(s).map($name).map_err(|e| CidParseError {
                    input: s.to_owned(),
                    reason: e.to_string(),
                })
            }
        }
    };
}

cid_newtype!(
    /// CIDv1 raw over the registry's digest of a whole artifact: the key of the artifact store.
    FlatCid
);
cid_newtype!(
    /// Root of an artifact's UnixFS DAG under the `unixfs-v1-2025` profile.
    RootCid
);
cid_newtype!(
    /// CIDv1 raw sha2-256 of a stored metadata document's exact upstream bytes.
    BlockCid
);

impl Digest {
    /// The flat CID this digest names: CIDv1, raw, multihash of this digest.
    pub fn flat_cid(&self) -> FlatCid {
        FlatCid(raw_cid(self.algorithm().multihash_code(), self.bytes()))
    }
}

impl FlatCid {
    /// The digest this flat CID carries, when its hash function is one registries use.
    pub fn digest(&self) -> Option<Digest> {
        let mh = self.0.hash();
        let algorithm = Algorithm::from_multihash_code(mh.code())?;
        Digest::new(algorithm, mh.digest().to_vec()).ok()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn raw_block_cid_matches_spec_example() {
        assert_eq!(
            raw_block_cid(b"test").to_string(),
            "bafkreie7q3iidccmpvszul7kudcvvuavuo7u6gzlbobczuk5nqk3b4akba"
        );
    }

    #[test]
    fn sha512_flat_cid_has_the_expected_prefix() {
        let flat = Digest::of(Algorithm::Sha512, b"x").flat_cid();
        assert!(flat.to_string().starts_with("bafkrgq"), "{flat}");
        assert_eq!(flat.digest(), Some(Digest::of(Algorithm::Sha512, b"x")));
    }

    #[test]
    fn flat_cid_round_trips_through_string_and_bytes() {
        let flat = Digest::of(Algorithm::Sha256, b"abc").flat_cid();
        let parsed: FlatCid = flat.to_string().parse().expect("parse");
        assert_eq!(parsed, flat);
        assert_eq!(FlatCid::from_bytes(&flat.to_bytes()).expect("bytes"), flat);
    }

    #[test]
    fn block_matches_checks_each_supported_hash_and_refuses_the_others() {
        let data = b"a block";
        assert_eq!(block_matches(&raw_block_cid(data), data), Some(true));
        assert_eq!(block_matches(&raw_block_cid(data), b"another"), Some(false));
        let sha512 = Digest::of(Algorithm::Sha512, data).flat_cid().0;
        assert_eq!(block_matches(&sha512, data), Some(true));
        assert_eq!(block_matches(&raw_cid(IDENTITY, data), data), Some(true));
        assert_eq!(block_matches(&raw_cid(IDENTITY, data), b"x"), Some(false));
        // blake3: a hash Cairn does not compute.
        assert_eq!(block_matches(&raw_cid(0x1e, &[0; 32]), data), None);
    }

    #[test]
    fn digest_length_is_checked() {
        let err = Digest::new(Algorithm::Sha256, vec![0; 20]).expect_err("short digest");
        assert!(err.to_string().contains("sha256"), "{err}");
    }
}
