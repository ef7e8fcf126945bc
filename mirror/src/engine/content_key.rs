//! Content keys: the keys the engine invents for artifacts named by a mutable key
//! ([`Listing::Current`](crate::ecosystem::Listing::Current), apt's `dists/…/Packages.xz`).
//! Each version of such a file is cached under `KEY@FLATCID`, so a newer `InRelease` never pairs
//! with an older index. Adapters never see these keys; everything that meets one in the index
//! (bundles, snapshots, the bin) reads it with [`read`], and only the engine makes one, with
//! [`make`].

use std::str::FromStr;

use crate::cid::FlatCid;

/// The key the file `flat` listed under the mutable key `key` is cached under.
pub fn make(key: &str, flat: &FlatCid) -> String {
    format!("{key}@{flat}")
}

/// The mutable key and the flat CID of a content key; `None` for any other key (including one
/// with an `@` that is not followed by a CID, as npm's scoped names have).
pub fn read(key: &str) -> Option<(&str, FlatCid)> {
    let (name, tail) = key.rsplit_once('@')?;
    let flat = FlatCid::from_str(tail).ok()?;
    Some((name, flat))
}

/// The key a request names for the artifact stored under `key`: the mutable key of a content
/// key, else `key` itself.
pub fn route_key(key: &str) -> &str {
    read(key).map_or(key, |(name, _)| name)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::cid::{Algorithm, Digest};

    #[test]
    fn content_keys_round_trip_and_other_keys_are_not_read_as_them() {
        let flat = Digest::of(Algorithm::Sha256, b"Packages").flat_cid();
        let key = make("dists/stable/main/binary-amd64/Packages.xz", &flat);
        assert_eq!(
            read(&key),
            Some(("dists/stable/main/binary-amd64/Packages.xz", flat))
        );
        assert_eq!(
            route_key(&key),
            "dists/stable/main/binary-amd64/Packages.xz"
        );
        for other in [
            "@types/node",
            "@types/node/-/node-1.0.0.tgz",
            "pool/main/a/a_1.0@2_all.deb",
            "plain",
        ] {
            assert_eq!(read(other), None, "{other}");
            assert_eq!(route_key(other), other);
        }
    }
}
