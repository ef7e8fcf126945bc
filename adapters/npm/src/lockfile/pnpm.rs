//! pnpm's `pnpm-lock.yaml` (lockfileVersion 5.x, 6.x and 9.0): its `packages:` section, read
//! line by line in the fixed shape pnpm writes.

use super::{Locked, LockfileError, Out, split_at_version};

/// Undo YAML scalar quoting (`'a''b'`, `"a"`, or plain).
fn unquote_yaml(value: &str) -> Option<String> {
    let value = value.trim();
    if let Some(inner) = value.strip_prefix('\'') {
        Some(inner.strip_suffix('\'')?.replace("''", "'"))
    } else if value.starts_with('"') {
        serde_json::from_str(value).ok()
    } else {
        Some(value.to_owned())
    }
}

/// An inline map, `{integrity: sha512-…, tarball: https://…}`, as (key, value) pairs.
fn flow_map(text: &str) -> Option<Vec<(String, String)>> {
    let inner = text.trim().strip_prefix('{')?.strip_suffix('}')?;
    let mut pairs = Vec::new();
    let (mut start, mut quote) = (0, None);
    let mut items = Vec::new();
    for (i, c) in inner.char_indices() {
        match (c, quote) {
            ('\'' | '"', None) => quote = Some(c),
            (c, Some(q)) if c == q => quote = None,
            (',', None) => {
                items.push(&inner[start..i]);
                start = i + 1;
            }
            _ => {}
        }
    }
    if quote.is_some() {
        return None;
    }
    items.push(&inner[start..]);
    for item in items.into_iter().filter(|s| !s.trim().is_empty()) {
        let (key, value) = item.split_once(':')?;
        pairs.push((unquote_yaml(key)?, unquote_yaml(value)?));
    }
    Some(pairs)
}

struct PnpmEntry {
    line: usize,
    key: String,
    resolution: Option<Vec<(String, String)>>,
}

impl PnpmEntry {
    fn finish(self, out: &mut Out<'_>, style: KeyStyle) -> Result<(), LockfileError> {
        let Some(resolution) = self.resolution else {
            return Err(out.fail(self.line, format!("{} has no resolution", self.key)));
        };
        let field = |k: &str| {
            resolution
                .iter()
                .find(|(key, _)| key == k)
                .map(|(_, v)| v.as_str())
        };
        let Some((name, version)) = pnpm_key(&self.key, style) else {
            return Ok(()); // git, `file:`, tarball URL and other non-registry keys
        };
        out.entry(
            self.line,
            name,
            version,
            field("tarball"),
            field("integrity"),
            None,
        )
    }
}

/// How a lockfile version writes its `packages` keys.
#[derive(Clone, Copy)]
enum KeyStyle {
    /// `/name/version_peers` (lockfileVersion 5.x).
    Slash,
    /// `/name@version(peers)` (6.x).
    SlashAt,
    /// `name@version` (9.0; peer suffixes live in `snapshots:`, but are stripped all the same).
    At,
}

/// Name and version of a registry package's `packages` key; `None` for other keys (git,
/// `file:`, tarball URLs). Scoped names keep their scope.
fn pnpm_key(key: &str, style: KeyStyle) -> Option<(&str, &str)> {
    let (name, version) = match style {
        KeyStyle::Slash => {
            let rest = key.strip_prefix('/')?;
            let segments = if rest.starts_with('@') { 2 } else { 1 };
            let at = rest.match_indices('/').nth(segments - 1)?.0;
            let version = &rest[at + 1..];
            (&rest[..at], version.split('_').next().unwrap_or(version))
        }
        KeyStyle::SlashAt => split_at_version(key.strip_prefix('/')?)?,
        KeyStyle::At if key.starts_with('/') => return None,
        KeyStyle::At => split_at_version(key)?,
    };
    Some((name, version.split('(').next().unwrap_or(version)))
}

/// Read a `pnpm-lock.yaml` (lockfileVersion 5.x, 6.x or 9.0): its `packages:` section.
pub fn pnpm_lock(file: &str, text: &str) -> Result<Vec<Locked>, LockfileError> {
    let mut out = Out::new(file);
    let mut style = None;
    let mut in_packages = false;
    let mut entry: Option<PnpmEntry> = None;
    let mut block_resolution = false;
    for (i, raw) in text.lines().enumerate() {
        let n = i + 1;
        let body = raw.trim_start_matches(' ');
        if body.trim().is_empty() || body.starts_with('#') {
            continue;
        }
        if body.starts_with('\t') {
            return Err(out.fail(n, "indented with a tab"));
        }
        let indent = raw.len() - body.len();
        let body = body.trim_end();
        if indent == 0 {
            block_resolution = false;
            if let Some(done) = entry.take() {
                done.finish(&mut out, style.unwrap_or(KeyStyle::At))?;
            }
            in_packages = body == "packages:";
            if let Some(v) = body.strip_prefix("lockfileVersion:") {
                let major = unquote_yaml(v)
                    .and_then(|v| v.split('.').next().and_then(|m| m.parse::<u32>().ok()));
                style = Some(match major {
                    Some(5) => KeyStyle::Slash,
                    Some(6..=8) => KeyStyle::SlashAt,
                    Some(9) => KeyStyle::At,
                    _ => {
                        return Err(out.fail(
                            n,
                            format!(
                                "lockfileVersion {} is not supported (5.x to 9.0 are)",
                                v.trim()
                            ),
                        ));
                    }
                });
            }
            if in_packages && style.is_none() {
                return Err(out.fail(n, "packages: before lockfileVersion"));
            }
            continue;
        }
        if !in_packages {
            continue;
        }
        match indent {
            2 => {
                block_resolution = false;
                if let Some(done) = entry.take() {
                    done.finish(&mut out, style.unwrap_or(KeyStyle::At))?;
                }
                let key = body
                    .strip_suffix(':')
                    .and_then(unquote_yaml)
                    .ok_or_else(|| out.fail(n, format!("expected a package key, got {body:?}")))?;
                entry = Some(PnpmEntry {
                    line: n,
                    key,
                    resolution: None,
                });
            }
            4 => {
                let Some(e) = entry.as_mut() else {
                    return Err(out.fail(n, "indented line outside a package"));
                };
                block_resolution = false;
                let Some(value) = body.strip_prefix("resolution:") else {
                    continue;
                };
                if value.trim().is_empty() {
                    block_resolution = true;
                    e.resolution = Some(Vec::new());
                } else {
                    let map = flow_map(value)
                        .ok_or_else(|| out.fail(n, format!("malformed resolution {body:?}")))?;
                    e.resolution = Some(map);
                }
            }
            6 if block_resolution => {
                let pair = body
                    .split_once(':')
                    .and_then(|(k, v)| Some((unquote_yaml(k)?, unquote_yaml(v)?)))
                    .ok_or_else(|| out.fail(n, format!("malformed resolution field {body:?}")))?;
                if let Some(r) = entry.as_mut().and_then(|e| e.resolution.as_mut()) {
                    r.push(pair);
                }
            }
            _ if entry.is_none() => {
                return Err(out.fail(n, "indented line outside a package"));
            }
            _ => {}
        }
    }
    if let Some(done) = entry {
        done.finish(&mut out, style.unwrap_or(KeyStyle::At))?;
    }
    if style.is_none() {
        return Err(out.fail(0, "no lockfileVersion: not a pnpm-lock.yaml"));
    }
    out.finish()
}
