//! `Cargo.lock` reader: the registry crates a lockfile pins, with their checksums (the same
//! value as the index's `cksum`, so each one's flat CID is known without asking upstream).
//!
//! Lockfile versions 3 and 4 keep `checksum` on each `[[package]]`; version 1 kept them in a
//! `[metadata]` table keyed `"checksum NAME VERSION (SOURCE)"`. Path and git dependencies have
//! no checksum and are skipped.

use std::collections::BTreeMap;

use cairn_ecosystem::digest::{Algorithm, Digest};
use serde::Deserialize;

/// One registry crate a lockfile pins.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct LockedCrate {
    pub name: String,
    pub version: String,
    pub checksum: Digest,
}

/// A lockfile that cannot be read; the message names the file and, where TOML says, the line.
#[derive(Debug, thiserror::Error)]
#[error("{file}: {reason}")]
pub struct LockfileError {
    pub file: String,
    pub reason: String,
}

#[derive(Deserialize)]
struct Lockfile {
    #[serde(default)]
    package: Vec<Package>,
    #[serde(default)]
    metadata: BTreeMap<String, String>,
}

#[derive(Deserialize)]
struct Package {
    name: String,
    version: String,
    source: Option<String>,
    checksum: Option<String>,
}

fn is_registry(source: &str) -> bool {
    source.starts_with("registry+") || source.starts_with("sparse+")
}

/// Read the registry crates of a `Cargo.lock`; `file` names it in errors.
pub fn read(file: &str, text: &str) -> Result<Vec<LockedCrate>, LockfileError> {
    let fail = |reason: String| LockfileError {
        file: file.to_owned(),
        reason,
    };
    let lock: Lockfile =
        toml::from_str(text).map_err(|e| fail(format!("not a Cargo.lock: {e}")))?;
    let mut out = Vec::new();
    for p in &lock.package {
        let Some(source) = p.source.as_deref().filter(|s| is_registry(s)) else {
            continue;
        };
        let checksum = match &p.checksum {
            Some(c) => c.clone(),
            None => {
                let key = format!("checksum {} {} ({source})", p.name, p.version);
                match lock.metadata.get(&key) {
                    Some(c) => c.clone(),
                    None => return Err(fail(format!("{} {} has no checksum", p.name, p.version))),
                }
            }
        };
        let bytes = hex::decode(&checksum).map_err(|e| {
            fail(format!(
                "{} {}: checksum {checksum:?}: {e}",
                p.name, p.version
            ))
        })?;
        let checksum = Digest::new(Algorithm::Sha256, bytes)
            .map_err(|e| fail(format!("{} {}: {e}", p.name, p.version)))?;
        out.push(LockedCrate {
            name: p.name.clone(),
            version: p.version.clone(),
            checksum,
        });
    }
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    const SUM: &str = "b9c2bbc0a1e0eb1a4f1e0cbd3c0e9d3a4a4f1e0cbd3c0e9d3a4a4f1e0cbd3c0e";

    #[test]
    fn version_4_lockfile() {
        let text = format!(
            r#"version = 4

[[package]]
name = "app"
version = "0.1.0"
dependencies = ["itoa"]

[[package]]
name = "itoa"
version = "1.0.11"
source = "registry+https://github.com/rust-lang/crates.io-index"
checksum = "{SUM}"

[[package]]
name = "local"
version = "0.2.0"
source = "git+https://example.invalid/local.git#abc"
"#
        );
        let crates = read("Cargo.lock", &text).expect("read");
        assert_eq!(crates.len(), 1);
        assert_eq!(
            (crates[0].name.as_str(), crates[0].version.as_str()),
            ("itoa", "1.0.11")
        );
        assert_eq!(hex::encode(crates[0].checksum.bytes()), SUM);
    }

    #[test]
    fn version_1_lockfile_keeps_checksums_in_metadata() {
        let text = format!(
            r#"[[package]]
name = "itoa"
version = "0.4.8"
source = "registry+https://github.com/rust-lang/crates.io-index"

[metadata]
"checksum itoa 0.4.8 (registry+https://github.com/rust-lang/crates.io-index)" = "{SUM}"
"#
        );
        assert_eq!(read("Cargo.lock", &text).expect("read").len(), 1);
    }

    #[test]
    fn malformed_lockfiles_name_file_and_line() {
        let err = read("app/Cargo.lock", "[[package]]\nname = \n").expect_err("malformed");
        let message = err.to_string();
        assert!(
            message.starts_with("app/Cargo.lock:") && message.contains("line 2"),
            "{message}"
        );
        let bad_sum = "[[package]]\nname = \"x\"\nversion = \"1.0.0\"\nsource = \"registry+r\"\nchecksum = \"zz\"\n";
        assert!(
            read("Cargo.lock", bad_sum)
                .expect_err("bad checksum")
                .to_string()
                .contains("x 1.0.0")
        );
    }
}
