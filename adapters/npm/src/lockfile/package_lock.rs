//! npm's lockfiles, `package-lock.json` and `npm-shrinkwrap.json` (lockfileVersion 1, 2 and 3):
//! the `packages` map, or the nested `dependencies` tree of version 1.

use cairn_ecosystem::json::{self, JsonError};
use serde::Deserialize;

use super::{Locked, LockfileError, Out, split_at_version};

/// Line numbers of byte offsets and spans inside one document.
struct Lines<'a> {
    text: &'a [u8],
    /// Offsets of the document's newlines.
    newlines: Vec<usize>,
}

impl<'a> Lines<'a> {
    fn new(text: &'a [u8]) -> Self {
        let newlines = (0..text.len()).filter(|&i| text[i] == b'\n').collect();
        Lines { text, newlines }
    }

    /// The line of byte `offset`.
    fn at(&self, offset: usize) -> usize {
        self.newlines.partition_point(|&nl| nl < offset) + 1
    }

    /// The line of byte `offset` of `span`, a sub-slice of the document (as `json::members`
    /// returns).
    fn in_span(&self, span: &[u8], offset: usize) -> usize {
        let start = span.as_ptr().addr().wrapping_sub(self.text.as_ptr().addr());
        self.at(start.saturating_add(offset))
    }

    /// The line where `span` starts.
    fn of(&self, span: &[u8]) -> usize {
        self.in_span(span, 0)
    }
}

/// An entry of `packages` (lockfileVersion 2 and 3).
#[derive(Deserialize)]
struct PackageEntry {
    name: Option<String>,
    version: Option<String>,
    resolved: Option<String>,
    integrity: Option<String>,
    #[serde(default)]
    link: bool,
    #[serde(default, rename = "inBundle")]
    in_bundle: bool,
}

/// An entry of the nested `dependencies` tree (lockfileVersion 1).
#[derive(Deserialize)]
struct TreeEntry {
    version: Option<String>,
    resolved: Option<String>,
    integrity: Option<String>,
    #[serde(default)]
    bundled: bool,
}

/// Read a `package-lock.json` or `npm-shrinkwrap.json` (lockfileVersion 1, 2 or 3).
pub fn package_lock(file: &str, text: &str) -> Result<Vec<Locked>, LockfileError> {
    let mut out = Out::new(file);
    serde_json::from_str::<serde::de::IgnoredAny>(text)
        .map_err(|e| out.fail(e.line(), format!("not valid JSON: {e}")))?;
    let lines = Lines::new(text.as_bytes());
    let members = |span| {
        json::members(span)
            .map_err(|e: JsonError| out.fail(lines.in_span(span, e.offset), e.to_string()))
    };
    let top = members(text.as_bytes())?;
    let version = match top.iter().find(|m| m.is("lockfileVersion")) {
        None => 1,
        Some(m) => {
            let line = lines.of(m.key);
            match serde_json::from_slice::<u64>(m.value) {
                Ok(v @ 1..=3) => v,
                _ => {
                    return Err(out.fail(
                        line,
                        format!(
                            "lockfileVersion {} is not supported (1, 2 and 3 are)",
                            String::from_utf8_lossy(m.value)
                        ),
                    ));
                }
            }
        }
    };
    let packages = top.iter().find(|m| m.is("packages"));
    let tree = top.iter().find(|m| m.is("dependencies"));
    let mut found = Vec::new();
    if let Some(packages) = packages.filter(|_| version >= 2) {
        for m in members(packages.value)? {
            let line = lines.of(m.key);
            let key = m
                .key_string()
                .map_err(|e| out.fail(line, format!("packages: {e}")))?;
            let entry: PackageEntry = serde_json::from_slice(m.value)
                .map_err(|e| out.fail(line, format!("packages[{key:?}]: {e}")))?;
            if key.is_empty() || entry.link || entry.in_bundle {
                continue;
            }
            let from_path = key.rsplit_once("node_modules/").map(|(_, n)| n.to_owned());
            let (Some(name), Some(version)) = (entry.name.or(from_path), entry.version) else {
                continue; // a workspace folder or another local package
            };
            found.push((line, name, version, entry.resolved, entry.integrity));
        }
    } else if let Some(tree) = tree {
        let mut stack = vec![tree.value];
        // Each tree's entries, then their nested trees (order does not matter: results are
        // sorted). serde_json bounded the nesting above.
        while let Some(deps) = stack.pop() {
            let mut children = Vec::new();
            for m in members(deps)? {
                let line = lines.of(m.key);
                let key = m
                    .key_string()
                    .map_err(|e| out.fail(line, format!("dependencies: {e}")))?;
                let entry: TreeEntry = serde_json::from_slice(m.value)
                    .map_err(|e| out.fail(line, format!("dependencies[{key:?}]: {e}")))?;
                if let Some(nested) = members(m.value)?.iter().find(|f| f.is("dependencies")) {
                    children.push(nested.value);
                }
                let (Some(version), false) = (entry.version, entry.bundled) else {
                    continue;
                };
                // An alias: `"foo": {"version": "npm:bar@1.0.0"}`.
                let (name, version) = match version.strip_prefix("npm:").and_then(split_at_version)
                {
                    Some((real, v)) => (real.to_owned(), v.to_owned()),
                    None => (key, version),
                };
                found.push((line, name, version, entry.resolved, entry.integrity));
            }
            stack.extend(children.into_iter().rev());
        }
    }
    for (line, name, version, resolved, integrity) in found {
        out.entry(
            line,
            &name,
            &version,
            resolved.as_deref(),
            integrity.as_deref(),
            None,
        )?;
    }
    out.finish()
}
