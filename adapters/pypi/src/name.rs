//! Project names (PEP 503 normalisation) and file names as they arrive in request paths.

use percent_encoding::percent_decode_str;

/// Longest project name accepted.
pub const MAX_NAME_LEN: usize = 200;

/// Why a name or path was refused.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum NameError {
    BadName(String),
    BadFile(String),
    Encoding(String),
}

impl std::fmt::Display for NameError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            NameError::BadName(name) => {
                write!(
                    f,
                    "project name {name:?} is not a valid Python project name"
                )
            }
            NameError::BadFile(name) => {
                write!(
                    f,
                    "file name {name:?} is not a valid distribution file name"
                )
            }
            NameError::Encoding(raw) => write!(f, "{raw:?} is not valid percent-encoded UTF-8"),
        }
    }
}

impl std::error::Error for NameError {}

/// PEP 503: runs of `-`, `_` and `.` become one `-`, and the name is lower-cased.
pub fn normalize(name: &str) -> String {
    let mut out = String::with_capacity(name.len());
    let mut in_run = false;
    for c in name.chars() {
        if matches!(c, '-' | '_' | '.') {
            if !in_run {
                out.push('-');
            }
            in_run = true;
        } else {
            out.push(c.to_ascii_lowercase());
            in_run = false;
        }
    }
    out
}

/// Check a (decoded) project name: ASCII letters and digits, with `-`, `_` and `.` inside.
pub fn check_name(name: &str) -> Result<(), NameError> {
    let ok = !name.is_empty()
        && name.len() <= MAX_NAME_LEN
        && name
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || matches!(c, '-' | '_' | '.'))
        && name.starts_with(|c: char| c.is_ascii_alphanumeric())
        && name.ends_with(|c: char| c.is_ascii_alphanumeric());
    if ok {
        Ok(())
    } else {
        Err(NameError::BadName(name.to_owned()))
    }
}

/// Check a (decoded) distribution file name: no path, no control characters.
pub fn check_file(file: &str) -> Result<(), NameError> {
    let ok = !file.is_empty()
        && file.len() <= 255
        && !file.starts_with('.')
        && file
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || matches!(c, '-' | '_' | '.' | '+' | '!' | '~'));
    if ok {
        Ok(())
    } else {
        Err(NameError::BadFile(file.to_owned()))
    }
}

/// Percent-decode a path segment.
pub fn decode(raw: &str) -> Result<String, NameError> {
    percent_decode_str(raw)
        .decode_utf8()
        .map(|s| s.into_owned())
        .map_err(|_| NameError::Encoding(raw.to_owned()))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn normalisation() {
        for (name, normal) in [
            ("Django", "django"),
            ("zope.interface", "zope-interface"),
            ("Foo__Bar-.baz", "foo-bar-baz"),
            ("typing_extensions", "typing-extensions"),
        ] {
            assert_eq!(normalize(name), normal, "{name}");
        }
    }

    #[test]
    fn names_and_files() {
        assert!(check_name("zope.interface").is_ok());
        assert!(check_name("..").is_err());
        assert!(check_name("a/b").is_err());
        assert!(check_name("-a").is_err());
        assert!(check_name(&"a".repeat(201)).is_err());
        assert!(check_file("six-1.17.0-py2.py3-none-any.whl").is_ok());
        assert!(check_file("pkg-1.0+local.tar.gz").is_ok());
        assert!(check_file("../etc/passwd").is_err());
        assert!(check_file("a\0b").is_err());
        assert!(check_file(".hidden").is_err());
    }
}
