//! Lockfile readers: `requirements.txt` (pinned `==` lines with `--hash`) and `uv.lock`. Each
//! names the distribution files a project installs by their sha256, which is their flat CID.
//! Errors name the file and the line.

use cairn_mirror::cid::{Algorithm, Digest};
use serde::Deserialize;

/// One pinned requirement, with the digests a file for it may have.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Locked {
    /// Normalised project name.
    pub project: String,
    pub version: String,
    /// The file name, when the lockfile says it (`uv.lock` does, `requirements.txt` does not).
    pub filename: Option<String>,
    pub sha256: Vec<Digest>,
}

#[derive(Debug, thiserror::Error)]
#[error("{file}:{line}: {reason}")]
pub struct LockfileError {
    pub file: String,
    pub line: usize,
    pub reason: String,
}

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
            continue; // index options and the like
        }
        let mut words = entry.split_whitespace();
        let spec = words.next().unwrap_or_default();
        let spec = spec.split(';').next().unwrap_or_default();
        let Some((name, version)) = spec.split_once("==") else {
            return Err(fail(start, format!("{spec} is not pinned with ==")));
        };
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
            version: version.trim().to_owned(),
            filename: None,
            sha256,
        });
    }
    Ok(out)
}

#[derive(Deserialize)]
struct UvLock {
    #[serde(default)]
    package: Vec<UvPackage>,
}

#[derive(Deserialize)]
struct UvPackage {
    name: String,
    version: Option<String>,
    sdist: Option<UvFile>,
    #[serde(default)]
    wheels: Vec<UvFile>,
}

#[derive(Deserialize)]
struct UvFile {
    url: Option<String>,
    hash: Option<String>,
}

/// Read a `uv.lock`: every registry sdist and wheel it names.
pub fn uv_lock(file: &str, text: &str) -> Result<Vec<Locked>, LockfileError> {
    let lock: UvLock = toml::from_str(text).map_err(|e| LockfileError {
        file: file.to_owned(),
        line: e
            .span()
            .map_or(0, |s| text[..s.start].lines().count().max(1)),
        reason: format!("not a uv.lock: {}", e.message()),
    })?;
    let mut out = Vec::new();
    for package in lock.package {
        let Some(version) = package.version else {
            continue;
        };
        for dist in package.sdist.iter().chain(&package.wheels) {
            let (Some(url), Some(hash)) = (&dist.url, &dist.hash) else {
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
            let filename = url
                .rsplit('/')
                .next()
                .map(|f| f.split('#').next().unwrap_or(f).to_owned());
            out.push(Locked {
                project: crate::name::normalize(&package.name),
                version: version.clone(),
                filename,
                sha256: vec![sha256],
            });
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
            "reqs.txt:3: flask>=2 is not pinned with =="
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
        assert_eq!(locked.len(), 2);
        assert_eq!(
            locked[1].filename.as_deref(),
            Some("six-1.17.0-py2.py3-none-any.whl")
        );
        let err = uv_lock("uv.lock", "[[package]]\nname = \n").expect_err("malformed");
        assert!(err.to_string().starts_with("uv.lock:2:"), "{err}");
    }
}
