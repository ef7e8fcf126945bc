//! yarn's `yarn.lock` v1, read line by line; yarn berry lockfiles are refused.

use super::{Locked, LockfileError, Out, split_at_version};

/// Undo yarn's JSON-style quoting (values without quotes are returned as they are).
fn unquote_yarn(value: &str) -> Option<String> {
    if value.starts_with('"') {
        serde_json::from_str(value).ok()
    } else {
        Some(value.to_owned())
    }
}

struct YarnEntry {
    line: usize,
    name: String,
    version: Option<String>,
    resolved: Option<String>,
    integrity: Option<String>,
}

impl YarnEntry {
    fn finish(self, out: &mut Out<'_>) -> Result<(), LockfileError> {
        let Some(version) = &self.version else {
            return Err(out.fail(self.line, format!("{} has no version", self.name)));
        };
        let shasum = self
            .resolved
            .as_deref()
            .and_then(|r| r.split_once('#'))
            .map(|(_, fragment)| fragment)
            .filter(|f| f.len() == 40 && f.bytes().all(|b| b.is_ascii_hexdigit()));
        out.entry(
            self.line,
            &self.name,
            version,
            self.resolved.as_deref(),
            self.integrity.as_deref(),
            shasum,
        )
    }
}

/// Read a yarn v1 `yarn.lock` (`# yarn lockfile v1`). Yarn berry lockfiles are refused.
pub fn yarn_lock(file: &str, text: &str) -> Result<Vec<Locked>, LockfileError> {
    let mut out = Out::new(file);
    let mut entry: Option<YarnEntry> = None;
    for (i, raw) in text.lines().enumerate() {
        let n = i + 1;
        let body = raw.trim_start_matches(' ');
        if body.trim().is_empty() || body.starts_with('#') {
            continue;
        }
        if body.starts_with('\t') {
            return Err(out.fail(n, "indented with a tab"));
        }
        match raw.len() - body.len() {
            0 => {
                if raw.starts_with("__metadata:") {
                    return Err(out.fail(
                        n,
                        "a yarn berry (v2+) lockfile: its checksums are yarn's own zip-archive \
                         digests, not registry digests, so it is not supported",
                    ));
                }
                if let Some(done) = entry.take() {
                    done.finish(&mut out)?;
                }
                entry = Some(yarn_header(&out, n, raw)?);
            }
            2 => {
                let Some(e) = entry.as_mut() else {
                    return Err(out.fail(n, "indented line outside an entry"));
                };
                let body = body.trim_end();
                if body.ends_with(':') {
                    continue; // `dependencies:` and other blocks
                }
                let Some((key, value)) = body.split_once(' ') else {
                    return Err(out.fail(n, format!("expected `key value`, got {body:?}")));
                };
                let value = unquote_yarn(value.trim())
                    .ok_or_else(|| out.fail(n, format!("badly quoted value {value:?}")))?;
                match key {
                    "version" => e.version = Some(value),
                    "resolved" => e.resolved = Some(value),
                    "integrity" => e.integrity = Some(value),
                    _ => {}
                }
            }
            _ if entry.is_none() => return Err(out.fail(n, "indented line outside an entry")),
            _ => {} // inside a block
        }
    }
    if let Some(done) = entry {
        done.finish(&mut out)?;
    }
    out.finish()
}

/// An entry's header, `"a@^1", a@~1.2:`, naming the package (an alias's real name).
fn yarn_header(out: &Out<'_>, n: usize, raw: &str) -> Result<YarnEntry, LockfileError> {
    let bad = || {
        out.fail(
            n,
            format!("expected an entry header `name@range:`, got {raw:?}"),
        )
    };
    let header = raw.trim_end().strip_suffix(':').ok_or_else(bad)?;
    let first = header.split(',').next().unwrap_or_default().trim();
    let spec = unquote_yarn(first).ok_or_else(bad)?;
    let (name, range) = split_at_version(&spec).ok_or_else(bad)?;
    // An alias: `"foo@npm:bar@^1"` installs bar.
    let name = match range.strip_prefix("npm:").and_then(split_at_version) {
        Some((real, _)) => real,
        None => name,
    };
    Ok(YarnEntry {
        line: n,
        name: name.to_owned(),
        version: None,
        resolved: None,
        integrity: None,
    })
}
