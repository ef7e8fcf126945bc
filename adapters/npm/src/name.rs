//! npm package names and tarball file names as they arrive in request paths.
//!
//! The same scoped name arrives as `@scope%2fname`, `@scope%2Fname` or `@scope/name`; all map to
//! one [`PackageName`]. Anything that could escape a path or confuse an upstream is refused: NUL
//! and control characters, `..`, backslashes, names over 214 characters, a leading `.` or `_`, and
//! characters npm does not allow in names.

use std::fmt;

use percent_encoding::percent_decode_str;

/// npm's limit on a package name's length.
pub const MAX_NAME_LEN: usize = 214;

/// A validated package name, scoped (`@scope/name`) or not.
#[derive(Clone, Debug, PartialEq, Eq, Hash)]
pub struct PackageName {
    scope: Option<String>,
    name: String,
}

/// Why a name or path was refused.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum NameError {
    #[error("package name is empty")]
    Empty,
    #[error("package name {0:?} is longer than {MAX_NAME_LEN} characters")]
    TooLong(String),
    #[error("package name {0:?} contains a NUL or control character")]
    Control(String),
    #[error("path segment {0:?} is not allowed")]
    DotSegment(String),
    #[error("package name {name:?} contains {ch:?}, which npm does not allow")]
    BadChar { name: String, ch: char },
    #[error("package name {0:?} may not start with '.' or '_'")]
    BadStart(String),
    #[error("{0:?} is not valid percent-encoded UTF-8")]
    Encoding(String),
    #[error("tarball file name {0:?} is not a .tgz file name")]
    BadFile(String),
}

/// Percent-decode one path component, refusing invalid UTF-8 and control characters.
pub fn decode(raw: &str) -> Result<String, NameError> {
    let decoded = percent_decode_str(raw)
        .decode_utf8()
        .map_err(|_| NameError::Encoding(raw.to_owned()))?
        .into_owned();
    if decoded.chars().any(char::is_control) {
        return Err(NameError::Control(decoded));
    }
    Ok(decoded)
}

fn check_part(whole: &str, part: &str) -> Result<(), NameError> {
    if part.is_empty() {
        return Err(NameError::Empty);
    }
    if part == "." || part == ".." {
        return Err(NameError::DotSegment(part.to_owned()));
    }
    if part.starts_with('.') || part.starts_with('_') {
        return Err(NameError::BadStart(whole.to_owned()));
    }
    // The characters `encodeURIComponent` leaves alone: what npm's name validation accepts.
    if let Some(ch) = part
        .chars()
        .find(|c| !(c.is_ascii_alphanumeric() || "-._~!*'()".contains(*c)))
    {
        return Err(NameError::BadChar {
            name: whole.to_owned(),
            ch,
        });
    }
    Ok(())
}

impl PackageName {
    /// Parse a decoded name: `name` or `@scope/name`.
    pub fn parse(decoded: &str) -> Result<Self, NameError> {
        if decoded.is_empty() {
            return Err(NameError::Empty);
        }
        if decoded.chars().any(char::is_control) {
            return Err(NameError::Control(decoded.to_owned()));
        }
        if decoded.len() > MAX_NAME_LEN {
            return Err(NameError::TooLong(decoded.to_owned()));
        }
        match decoded.strip_prefix('@') {
            Some(scoped) => {
                let (scope, name) = scoped.split_once('/').ok_or_else(|| NameError::BadChar {
                    name: decoded.to_owned(),
                    ch: '@',
                })?;
                check_part(decoded, scope)?;
                check_part(decoded, name)?;
                Ok(PackageName {
                    scope: Some(scope.to_owned()),
                    name: name.to_owned(),
                })
            }
            None => {
                check_part(decoded, decoded)?;
                Ok(PackageName {
                    scope: None,
                    name: decoded.to_owned(),
                })
            }
        }
    }

    /// The name without its scope (the tarball file's stem).
    pub fn unscoped(&self) -> &str {
        &self.name
    }

    /// The path of the packument upstream: `@scope%2fname` or `name`.
    pub fn upstream_path(&self) -> String {
        match &self.scope {
            Some(scope) => format!("@{scope}%2f{}", self.name),
            None => self.name.clone(),
        }
    }

    /// The path clients use for tarballs: `@scope/name` or `name` (a literal `/`).
    pub fn path(&self) -> String {
        self.to_string()
    }
}

impl fmt::Display for PackageName {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match &self.scope {
            Some(scope) => write!(f, "@{scope}/{}", self.name),
            None => f.write_str(&self.name),
        }
    }
}

/// Check a decoded tarball file name (`name-1.0.0.tgz`).
pub fn check_file(decoded: &str) -> Result<(), NameError> {
    let stem = decoded
        .strip_suffix(".tgz")
        .ok_or_else(|| NameError::BadFile(decoded.to_owned()))?;
    if stem.is_empty() || decoded.len() > MAX_NAME_LEN + 64 {
        return Err(NameError::BadFile(decoded.to_owned()));
    }
    if let Some(ch) = decoded
        .chars()
        .find(|c| !(c.is_ascii_alphanumeric() || "-._~!*'()+".contains(*c)))
    {
        return Err(NameError::BadChar {
            name: decoded.to_owned(),
            ch,
        });
    }
    if decoded.starts_with('.') {
        return Err(NameError::BadStart(decoded.to_owned()));
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn check(raw: &str, expect: Result<&str, ()>) {
        let got = decode(raw).and_then(|d| PackageName::parse(&d));
        match (got, expect) {
            (Ok(name), Ok(want)) => assert_eq!(name.to_string(), want, "{raw}"),
            (Err(_), Err(())) => {}
            (got, want) => panic!("{raw}: got {got:?}, want {want:?}"),
        }
    }

    #[test]
    fn names() {
        check("lodash", Ok("lodash"));
        check("JSONStream", Ok("JSONStream"));
        check("@types%2fnode", Ok("@types/node"));
        check("@types%2Fnode", Ok("@types/node"));
        check("@babel/core", Ok("@babel/core"));
        check("lodash.merge", Ok("lodash.merge"));
        check("..", Err(()));
        check("%2e%2e", Err(()));
        check("@scope%2f..", Err(()));
        check("a%00b", Err(()));
        check("a%0ab", Err(()));
        check(".hidden", Err(()));
        check("_private", Err(()));
        check("a b", Err(()));
        check("a%5cb", Err(()));
        check("@scope", Err(()));
        check("@scope/a/b", Err(()));
        check("%ff", Err(()));
        check(&"a".repeat(214), Ok(&"a".repeat(214)));
        check(&"a".repeat(215), Err(()));
    }

    #[test]
    fn paths() {
        let scoped = PackageName::parse("@types/node").expect("scoped");
        assert_eq!(scoped.upstream_path(), "@types%2fnode");
        assert_eq!(scoped.path(), "@types/node");
        assert_eq!(scoped.unscoped(), "node");
    }

    #[test]
    fn files() {
        assert!(check_file("lodash-4.17.21.tgz").is_ok());
        assert!(check_file("pkg-1.0.0-beta.1+build.5.tgz").is_ok());
        assert!(check_file("lodash-4.17.21.tar").is_err());
        assert!(check_file("../etc/passwd.tgz").is_err());
        assert!(check_file(".tgz").is_err());
        assert!(check_file("a/b.tgz").is_err());
    }
}
