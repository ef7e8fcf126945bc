//! The sparse index: crate names, index file paths, index lines, and the `dl` template.
//!
//! Index paths are computed from the lower-cased name (docs/protocols.md): `1/a`, `2/io`,
//! `3/s/syn`, `se/rd/serde`. Index lines are one JSON object per published version and are
//! passed through byte for byte; only `name`, `vers` and `cksum` are read here.

use cairn_ecosystem::digest::{Algorithm, Digest};
use serde::Deserialize;

/// crates.io's limit on a crate name's length.
pub const MAX_NAME_LEN: usize = 64;

/// Why a name, version or path was refused.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum NameError {
    #[error("crate name is empty")]
    Empty,
    #[error("crate name {0:?} is longer than {MAX_NAME_LEN} characters")]
    TooLong(String),
    #[error("crate name {name:?} contains {ch:?}; names are ASCII letters, digits, '-' and '_'")]
    BadChar { name: String, ch: char },
    #[error("crate name {0:?} must start with a letter")]
    BadStart(String),
    #[error("version {0:?} is not a valid crate version")]
    BadVersion(String),
}

/// Check a crate name as published (case kept).
pub fn check_name(name: &str) -> Result<(), NameError> {
    if name.is_empty() {
        return Err(NameError::Empty);
    }
    if name.len() > MAX_NAME_LEN {
        return Err(NameError::TooLong(name.to_owned()));
    }
    if let Some(ch) = name
        .chars()
        .find(|c| !(c.is_ascii_alphanumeric() || *c == '-' || *c == '_'))
    {
        return Err(NameError::BadChar {
            name: name.to_owned(),
            ch,
        });
    }
    if !name.starts_with(|c: char| c.is_ascii_alphabetic()) {
        return Err(NameError::BadStart(name.to_owned()));
    }
    Ok(())
}

/// Check a version as it appears in a download path (semver characters only).
pub fn check_version(version: &str) -> Result<(), NameError> {
    let ok = !version.is_empty()
        && version.len() <= 128
        && version.starts_with(|c: char| c.is_ascii_digit())
        && version
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || matches!(c, '.' | '-' | '+'))
        && !version.contains("..");
    if ok {
        Ok(())
    } else {
        Err(NameError::BadVersion(version.to_owned()))
    }
}

/// The directory part of a crate's index path, from its name as given (`{prefix}`); lower-case
/// the name first for the index path and `{lowerprefix}`.
pub fn prefix(name: &str) -> String {
    match name.len() {
        1 => "1".to_owned(),
        2 => "2".to_owned(),
        3 => format!("3/{}", &name[..1]),
        _ => format!("{}/{}", &name[..2], &name[2..4]),
    }
}

/// The index file path of a crate: `{lowerprefix}/{lowercased name}`.
pub fn index_path(name: &str) -> String {
    let lower = name.to_ascii_lowercase();
    format!("{}/{lower}", prefix(&lower))
}

/// The crate name an index path names, if the path is well formed for it.
pub fn name_of_index_path(path: &str) -> Option<&str> {
    let name = path.rsplit('/').next()?;
    (check_name(name).is_ok() && index_path(name) == path).then_some(name)
}

#[derive(Deserialize)]
struct Line<'a> {
    #[serde(borrow)]
    name: std::borrow::Cow<'a, str>,
    #[serde(borrow)]
    vers: std::borrow::Cow<'a, str>,
    #[serde(borrow)]
    cksum: std::borrow::Cow<'a, str>,
    /// When the version was published (RFC 3339), on registries that record it.
    #[serde(default, borrow)]
    pubtime: Option<std::borrow::Cow<'a, str>>,
    /// Taken back by its publisher: still downloadable by what pins it.
    #[serde(default)]
    yanked: bool,
}

/// One published version as the index lists it.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Release {
    pub name: String,
    pub version: String,
    pub checksum: Digest,
    /// `pubtime`, in milliseconds since the epoch (`None` when absent or not a date).
    pub published: Option<i64>,
    pub yanked: bool,
}

/// The releases an index file lists. Every line must parse and name `expected` (any case).
pub fn releases(expected: &str, body: &[u8]) -> Result<Vec<Release>, String> {
    let text = std::str::from_utf8(body)
        .map_err(|e| format!("index file of {expected} is not UTF-8: {e}"))?;
    let mut out = Vec::new();
    for (n, line) in text.lines().enumerate() {
        if line.trim().is_empty() {
            continue;
        }
        let parsed: Line<'_> = serde_json::from_str(line)
            .map_err(|e| format!("index file of {expected}, line {}: {e}", n + 1))?;
        if !parsed.name.eq_ignore_ascii_case(expected) {
            return Err(format!(
                "index file of {expected}, line {}: lists crate {:?}",
                n + 1,
                parsed.name
            ));
        }
        check_version(&parsed.vers)
            .map_err(|e| format!("index file of {expected}, line {}: {e}", n + 1))?;
        let bytes = hex::decode(parsed.cksum.as_ref())
            .map_err(|e| format!("index file of {expected}, line {}: cksum: {e}", n + 1))?;
        let checksum = Digest::new(Algorithm::Sha256, bytes)
            .map_err(|e| format!("index file of {expected}, line {}: cksum: {e}", n + 1))?;
        out.push(Release {
            published: parsed
                .pubtime
                .as_deref()
                .and_then(cairn_ecosystem::time::parse_rfc3339),
            name: parsed.name.into_owned(),
            version: parsed.vers.into_owned(),
            checksum,
            yanked: parsed.yanked,
        });
    }
    Ok(out)
}

/// The markers a `dl` template may carry.
const MARKERS: [&str; 5] = [
    "{crate}",
    "{version}",
    "{prefix}",
    "{lowerprefix}",
    "{sha256-checksum}",
];

/// Expand a `config.json` `dl` template for one release. Without markers, cargo appends
/// `/{crate}/{version}/download`.
pub fn download_url(dl: &str, release: &Release) -> String {
    if !MARKERS.iter().any(|m| dl.contains(m)) {
        return format!(
            "{}/{}/{}/download",
            dl.trim_end_matches('/'),
            release.name,
            release.version
        );
    }
    dl.replace("{crate}", &release.name)
        .replace("{version}", &release.version)
        .replace("{prefix}", &prefix(&release.name))
        .replace("{lowerprefix}", &prefix(&release.name.to_ascii_lowercase()))
        .replace("{sha256-checksum}", &hex::encode(release.checksum.bytes()))
}

/// The fixed part of a `dl` template: everything before its first marker, or the whole URL
/// followed by `/` when it has none.
pub fn download_prefix(dl: &str) -> String {
    match MARKERS.iter().filter_map(|m| dl.find(m)).min() {
        Some(at) => {
            let fixed = &dl[..at];
            // Keep whole path segments only: `…/crates/{crate}` → `…/crates/`.
            match fixed.rfind('/') {
                Some(slash) => fixed[..=slash].to_owned(),
                None => fixed.to_owned(),
            }
        }
        None => format!("{}/", dl.trim_end_matches('/')),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn index_paths() {
        for (name, path) in [
            ("a", "1/a"),
            ("io", "2/io"),
            ("syn", "3/s/syn"),
            ("serde", "se/rd/serde"),
            ("itoa", "it/oa/itoa"),
            ("MixedCase", "mi/xe/mixedcase"),
        ] {
            assert_eq!(index_path(name), path, "{name}");
        }
        assert_eq!(prefix("MixedCase"), "Mi/xe");
        assert_eq!(name_of_index_path("se/rd/serde"), Some("serde"));
        assert_eq!(name_of_index_path("xx/rd/serde"), None);
        assert_eq!(name_of_index_path("se/rd/../serde"), None);
        assert_eq!(
            name_of_index_path("Se/rd/Serde"),
            None,
            "paths are lower case"
        );
    }

    #[test]
    fn names_and_versions() {
        assert!(check_name("serde_json").is_ok());
        assert!(check_name("dash-crate").is_ok());
        assert!(check_name("").is_err());
        assert!(check_name("1abc").is_err());
        assert!(check_name("a.b").is_err());
        assert!(check_name(&"a".repeat(65)).is_err());
        assert!(check_version("1.0.0-beta.1+build").is_ok());
        assert!(check_version("..").is_err());
        assert!(check_version("1/2").is_err());
    }

    fn release() -> Release {
        Release {
            name: "MixedCase".into(),
            version: "1.2.3".into(),
            checksum: Digest::of(Algorithm::Sha256, b"x"),
            published: None,
            yanked: false,
        }
    }

    #[test]
    fn download_templates() {
        let r = release();
        assert_eq!(
            download_url("https://dl.invalid/crates", &r),
            "https://dl.invalid/crates/MixedCase/1.2.3/download"
        );
        assert_eq!(
            download_url(
                "https://dl.invalid/{lowerprefix}/{crate}-{version}.crate",
                &r
            ),
            "https://dl.invalid/mi/xe/MixedCase-1.2.3.crate"
        );
        assert!(
            download_url("https://dl.invalid/{sha256-checksum}", &r)
                .ends_with(&hex::encode(r.checksum.bytes()))
        );
        assert_eq!(
            download_prefix("https://dl.invalid/crates"),
            "https://dl.invalid/crates/"
        );
        assert_eq!(
            download_prefix("https://dl.invalid/files/{crate}/{crate}-{version}.crate"),
            "https://dl.invalid/files/"
        );
    }

    #[test]
    fn index_lines() {
        let cksum = hex::encode(Digest::of(Algorithm::Sha256, b"c").bytes());
        let body = format!(
            "{{\"name\":\"Foo\",\"vers\":\"1.0.0\",\"deps\":[],\"cksum\":\"{cksum}\",\"features\":{{}},\"yanked\":false}}\n\
             {{\"name\":\"Foo\",\"vers\":\"1.1.0\",\"deps\":[],\"cksum\":\"{cksum}\",\"features\":{{}},\"yanked\":true,\"v\":2}}\n"
        );
        let list = releases("foo", body.as_bytes()).expect("releases");
        assert_eq!(list.len(), 2);
        assert_eq!(list[1].version, "1.1.0");
        assert!(
            releases("bar", body.as_bytes())
                .expect_err("wrong crate")
                .contains("lists crate")
        );
        assert!(
            releases("foo", b"<html>")
                .expect_err("not json")
                .contains("line 1")
        );
    }
}
