//! Lockfile readers: `requirements.txt` (pinned `==` lines, with `--hash` options or without, as
//! `pip freeze` writes them) and `uv.lock`. Hashes name distribution files by their sha256,
//! which is their flat CID; a line without them is resolved against the index (`select.rs`).
//! Errors name the file and the line.

use cairn_ecosystem::digest::{Algorithm, Digest};

/// One pinned requirement, with the digests a file for it may have.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Locked {
    /// Normalised project name.
    pub project: String,
    pub version: String,
    /// The file names, when the lockfile says them (`uv.lock` does, `requirements.txt` does
    /// not); in the order of `sha256` when given.
    pub filenames: Vec<String>,
    /// The digests a file may have; none for a `pip freeze` line.
    pub sha256: Vec<Digest>,
}

#[derive(Debug)]
pub struct LockfileError {
    pub file: String,
    pub line: usize,
    pub reason: String,
}

impl std::fmt::Display for LockfileError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{}:{}: {}", self.file, self.line, self.reason)
    }
}

impl std::error::Error for LockfileError {}

fn digest(hex_digest: &str) -> Option<Digest> {
    Digest::new(Algorithm::Sha256, hex::decode(hex_digest).ok()?).ok()
}

/// Read a `requirements.txt` whose requirements are all pinned with `==`.
pub fn requirements(file: &str, text: &str) -> Result<Vec<Locked>, LockfileError> {
    let fail = |line: usize, reason: String| LockfileError {
        file: file.to_owned(),
        line,
        reason,
    };
    let mut out = Vec::new();
    let mut logical = String::new();
    let mut start = 0;
    for (n, raw) in text.lines().enumerate() {
        let line = raw.split(" #").next().unwrap_or_default();
        let line = if line.trim_start().starts_with('#') {
            ""
        } else {
            line
        };
        if logical.is_empty() {
            start = n + 1;
        }
        if let Some(continued) = line.strip_suffix('\\') {
            logical.push_str(continued);
            logical.push(' ');
            continue;
        }
        logical.push_str(line);
        let entry = std::mem::take(&mut logical);
        let entry = entry.trim();
        if entry.is_empty() {
            continue;
        }
        if entry.starts_with('-') {
            if entry.starts_with("-r")
                || entry.starts_with("--requirement")
                || entry.starts_with("-c")
            {
                return Err(fail(
                    start,
                    format!("nested requirement files are not followed: {entry}"),
                ));
            }
            if entry.starts_with("-e") || entry.starts_with("--editable") {
                return Err(fail(
                    start,
                    format!("{entry}: an editable install is not from an index"),
                ));
            }
            continue; // index options and the like
        }
        let mut words = entry.split_whitespace();
        let spec = words.next().unwrap_or_default();
        let spec = spec.split(';').next().unwrap_or_default();
        if entry.contains(" @ ") || spec.contains("://") {
            return Err(fail(
                start,
                format!("{entry}: a direct URL or path is not from an index; pin it with =="),
            ));
        }
        let Some((name, version)) = spec.split_once("==") else {
            return Err(fail(
                start,
                format!("{spec} is not pinned with == (ranges and bare names are not resolved)"),
            ));
        };
        let version = version.trim();
        if version.is_empty() || version.contains(['*', ',', '<', '>', '=', '!', '~']) {
            return Err(fail(start, format!("{spec} is not pinned to one version")));
        }
        let name = name.split('[').next().unwrap_or_default();
        crate::name::check_name(name).map_err(|e| fail(start, e.to_string()))?;
        let mut sha256 = Vec::new();
        for word in words {
            if let Some(hash) = word.strip_prefix("--hash=") {
                let hex = hash
                    .strip_prefix("sha256:")
                    .ok_or_else(|| fail(start, format!("{hash}: only sha256 hashes are used")))?;
                sha256.push(
                    digest(hex).ok_or_else(|| fail(start, format!("invalid sha256 {hex:?}")))?,
                );
            }
        }
        out.push(Locked {
            project: crate::name::normalize(name),
            version: version.to_owned(),
            filenames: Vec::new(),
            sha256,
        });
    }
    Ok(out)
}

/// One `[[package]]` of a `uv.lock`, read from its TOML table (the few fields used here; the
/// table is walked by hand so the adapter needs no derive macros).
struct UvPackage<'a> {
    name: &'a str,
    version: Option<&'a str>,
    /// The sdist then the wheels: `(url, hash)`, either absent for path and git sources.
    files: Vec<(Option<&'a str>, Option<&'a str>)>,
}

/// A `uv.lock` field of the wrong type.
fn wrong_type(file: &str, what: &str) -> LockfileError {
    LockfileError {
        file: file.to_owned(),
        line: 0,
        reason: format!("not a uv.lock: {what} has the wrong type"),
    }
}

fn uv_packages<'a>(file: &str, lock: &'a toml::Table) -> Result<Vec<UvPackage<'a>>, LockfileError> {
    let Some(packages) = lock.get("package") else {
        return Ok(Vec::new());
    };
    let packages = packages
        .as_array()
        .ok_or_else(|| wrong_type(file, "`package`"))?;
    let mut out = Vec::with_capacity(packages.len());
    for package in packages {
        let package = package
            .as_table()
            .ok_or_else(|| wrong_type(file, "a `package`"))?;
        let string = |key: &str| -> Result<Option<&'a str>, LockfileError> {
            match package.get(key) {
                None => Ok(None),
                Some(value) => value
                    .as_str()
                    .map(Some)
                    .ok_or_else(|| wrong_type(file, &format!("a package's `{key}`"))),
            }
        };
        let name = string("name")?.ok_or_else(|| LockfileError {
            file: file.to_owned(),
            line: 0,
            reason: "not a uv.lock: a package has no `name`".to_owned(),
        })?;
        let dist =
            |value: &'a toml::Value| -> Result<(Option<&'a str>, Option<&'a str>), LockfileError> {
                let table = value
                    .as_table()
                    .ok_or_else(|| wrong_type(file, &format!("a file of {name}")))?;
                let field = |key: &str| match table.get(key) {
                    None => Ok(None),
                    Some(v) => v
                        .as_str()
                        .map(Some)
                        .ok_or_else(|| wrong_type(file, &format!("`{key}` of a file of {name}"))),
                };
                Ok((field("url")?, field("hash")?))
            };
        let mut files = Vec::new();
        if let Some(sdist) = package.get("sdist") {
            files.push(dist(sdist)?);
        }
        if let Some(wheels) = package.get("wheels") {
            let wheels = wheels
                .as_array()
                .ok_or_else(|| wrong_type(file, &format!("`wheels` of {name}")))?;
            for wheel in wheels {
                files.push(dist(wheel)?);
            }
        }
        out.push(UvPackage {
            name,
            version: string("version")?,
            files,
        });
    }
    Ok(out)
}

/// Read a `uv.lock`: every registry sdist and wheel it names.
pub fn uv_lock(file: &str, text: &str) -> Result<Vec<Locked>, LockfileError> {
    let lock: toml::Table = text.parse().map_err(|e: toml::de::Error| LockfileError {
        file: file.to_owned(),
        line: e
            .span()
            .map_or(0, |s| text[..s.start].lines().count().max(1)),
        reason: format!("not a uv.lock: {}", e.message()),
    })?;
    let mut out = Vec::new();
    for package in uv_packages(file, &lock)? {
        let Some(version) = package.version else {
            continue;
        };
        let mut locked = Locked {
            project: crate::name::normalize(package.name),
            version: version.to_owned(),
            filenames: Vec::new(),
            sha256: Vec::new(),
        };
        for (url, hash) in &package.files {
            let (Some(url), Some(hash)) = (url, hash) else {
                continue; // path and git sources
            };
            let sha256 = hash
                .strip_prefix("sha256:")
                .and_then(digest)
                .ok_or_else(|| LockfileError {
                    file: file.to_owned(),
                    line: 0,
                    reason: format!("{} {version}: invalid hash {hash:?}", package.name),
                })?;
            let filename = url.rsplit('/').next().unwrap_or_default();
            let filename = filename.split('#').next().unwrap_or(filename);
            locked.filenames.push(filename.to_owned());
            locked.sha256.push(sha256);
        }
        if !locked.sha256.is_empty() {
            out.push(locked);
        }
    }
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    const SHA: &str = "1e61c37477a1626458e36f7b1d82aa5c9b094fa4802892072e49de9c60c4c926";

    #[test]
    fn pinned_requirements_with_hashes() {
        let text = format!(
            "# comment\n--index-url http://cache.invalid/pypi/simple/\nSix==1.17.0 \\\n    --hash=sha256:{SHA}\nrequests[socks]==2.32.3 ; python_version >= \"3.8\"  # trailing\n"
        );
        let locked = requirements("requirements.txt", &text).expect("read");
        assert_eq!(locked.len(), 2);
        assert_eq!(
            (locked[0].project.as_str(), locked[0].version.as_str()),
            ("six", "1.17.0")
        );
        assert_eq!(locked[0].sha256.len(), 1);
        assert_eq!(locked[1].project, "requests");
    }

    #[test]
    fn unpinned_requirements_name_the_line() {
        let err = requirements("reqs.txt", "six==1.0\n\nflask>=2\n").expect_err("unpinned");
        assert_eq!(
            err.to_string(),
            "reqs.txt:3: flask>=2 is not pinned with == (ranges and bare names are not resolved)"
        );
        for (line, what) in [
            ("requests\n", "requests is not pinned with =="),
            ("six==1.*\n", "six==1.* is not pinned to one version"),
            ("six===1.0\n", "six===1.0 is not pinned to one version"),
            (
                "pkg @ file:///tmp/pkg\n",
                "pkg @ file:///tmp/pkg: a direct URL",
            ),
            (
                "-e git+https://example.invalid/x.git#egg=x\n",
                "-e git+https://example.invalid/x.git#egg=x: an editable install",
            ),
        ] {
            let e = requirements("r.txt", line).expect_err(line);
            assert!(
                e.to_string().starts_with(&format!("r.txt:1: {what}")),
                "{e}"
            );
        }
    }

    #[test]
    fn pip_freeze_output_is_read_without_hashes() {
        let text = "Flask==3.0.3\nJinja2==3.1.4\nMarkupSafe==2.1.5\nzope.interface==6.4.post2\n";
        let locked = requirements("freeze.txt", text).expect("read");
        let names: Vec<(&str, &str)> = locked
            .iter()
            .map(|l| (l.project.as_str(), l.version.as_str()))
            .collect();
        assert_eq!(
            names,
            [
                ("flask", "3.0.3"),
                ("jinja2", "3.1.4"),
                ("markupsafe", "2.1.5"),
                ("zope-interface", "6.4.post2")
            ]
        );
        assert!(
            locked
                .iter()
                .all(|l| l.sha256.is_empty() && l.filenames.is_empty())
        );
    }

    #[test]
    fn uv_lock_files() {
        let text = format!(
            r#"version = 1
requires-python = ">=3.8"

[[package]]
name = "six"
version = "1.17.0"
source = {{ registry = "http://cache.invalid/pypi/simple" }}
sdist = {{ url = "http://cache.invalid/pypi/files/six/six-1.17.0.tar.gz", hash = "sha256:{SHA}", size = 34031 }}
wheels = [
    {{ url = "http://cache.invalid/pypi/files/six/six-1.17.0-py2.py3-none-any.whl", hash = "sha256:{SHA}", size = 11050 }},
]

[[package]]
name = "local"
version = "0.1.0"
source = {{ editable = "." }}
"#
        );
        let locked = uv_lock("uv.lock", &text).expect("read");
        assert_eq!(locked.len(), 1);
        assert_eq!(
            locked[0].filenames,
            ["six-1.17.0.tar.gz", "six-1.17.0-py2.py3-none-any.whl"]
        );
        assert_eq!(locked[0].sha256.len(), 2);
        let err = uv_lock("uv.lock", "[[package]]\nname = \n").expect_err("malformed");
        assert!(err.to_string().starts_with("uv.lock:2:"), "{err}");
    }

    #[test]
    fn uv_lock_fields_of_the_wrong_type_are_named() {
        for (text, named) in [
            ("package = 3\n", "`package`"),
            ("[[package]]\nname = 7\nversion = \"1\"\n", "`name`"),
            ("[[package]]\nversion = \"1\"\n", "no `name`"),
            (
                "[[package]]\nname = \"six\"\nwheels = \"x\"\n",
                "`wheels` of six",
            ),
            (
                "[[package]]\nname = \"six\"\nsdist = { url = 1, hash = \"h\" }\n",
                "`url` of a file of six",
            ),
        ] {
            let err = uv_lock("uv.lock", text).expect_err(text);
            assert!(err.to_string().contains(named), "{text:?}: {err}");
        }
    }
}
