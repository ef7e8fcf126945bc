//! yarn 2+ ("berry") configuration for `cairn setup yarn`: `npmRegistryServer` and, for a
//! plain-http node, `unsafeHttpWhitelist` (berry refuses http registries whose host is not
//! listed there) set in a `.yarnrc.yml`.
//!
//! The file is edited line by line rather than through a YAML library: the two top-level keys
//! Cairn owns are replaced (with whatever lines continue them), every other line is kept as it
//! was, comments included. Hosts already whitelisted stay whitelisted.

use url::Url;

const REGISTRY_KEY: &str = "npmRegistryServer";
const WHITELIST_KEY: &str = "unsafeHttpWhitelist";

/// The value after `key:` when `line` is that top-level key (no indentation), else `None`.
fn top_level_value<'a>(line: &'a str, key: &str) -> Option<&'a str> {
    let rest = line.strip_prefix(key)?;
    let rest = rest.trim_start_matches([' ', '\t']);
    rest.strip_prefix(':').map(str::trim)
}

/// True for a line that continues the value of the top-level key before it: indented, or a
/// block-sequence item (YAML allows those at column 0 under a mapping key).
fn continues(line: &str) -> bool {
    line.starts_with([' ', '\t']) || line == "-" || line.starts_with("- ")
}

/// One scalar as written in YAML: quotes removed, an unquoted scalar's trailing comment dropped.
fn scalar(text: &str) -> String {
    let text = text.trim();
    for quote in ['"', '\''] {
        if let Some(inner) = text
            .strip_prefix(quote)
            .and_then(|t| t.rfind(quote).map(|end| &t[..end]))
        {
            return inner.to_owned();
        }
    }
    text.split(" #").next().unwrap_or("").trim().to_owned()
}

/// The hosts of a flow sequence (`["a", b]`) or, when `value` is empty, of the block sequence
/// items in `items`.
fn hosts(value: &str, items: &[&str]) -> Vec<String> {
    let value = value.split(" #").next().unwrap_or("").trim();
    let listed: Vec<String> = match value.strip_prefix('[') {
        Some(flow) => flow.trim_end_matches(']').split(',').map(scalar).collect(),
        None if value.is_empty() => items
            .iter()
            .filter_map(|l| l.trim_start().strip_prefix('-'))
            .map(scalar)
            .collect(),
        None => vec![scalar(value)],
    };
    listed.into_iter().filter(|h| !h.is_empty()).collect()
}

/// A YAML double-quoted scalar (JSON's string syntax is valid YAML).
fn quoted(text: &str) -> String {
    serde_json::Value::String(text.to_owned()).to_string()
}

/// `existing` (the text of a `.yarnrc.yml`, possibly empty) pointing yarn at `url`.
pub fn edit(existing: &str, url: &Url) -> String {
    let lines: Vec<&str> = existing.lines().collect();
    let mut kept: Vec<&str> = Vec::with_capacity(lines.len());
    let mut whitelist: Vec<String> = Vec::new();
    let mut i = 0;
    while i < lines.len() {
        let line = lines[i];
        let registry = top_level_value(line, REGISTRY_KEY).is_some();
        let listed = top_level_value(line, WHITELIST_KEY);
        if !registry && listed.is_none() {
            kept.push(line);
            i += 1;
            continue;
        }
        let start = i + 1;
        i = start;
        while i < lines.len() && continues(lines[i]) {
            i += 1;
        }
        if let Some(value) = listed {
            whitelist.extend(hosts(value, &lines[start..i]));
        }
    }
    if url.scheme() == "http"
        && let Some(host) = url.host_str()
        && !whitelist.iter().any(|h| h == host)
    {
        whitelist.push(host.to_owned());
    }
    let mut out = kept.join("\n");
    if !out.is_empty() {
        out.push('\n');
    }
    out.push_str(&format!("{REGISTRY_KEY}: {}\n", quoted(url.as_str())));
    if !whitelist.is_empty() {
        out.push_str(&format!("{WHITELIST_KEY}:\n"));
        for host in &whitelist {
            out.push_str(&format!("  - {}\n", quoted(host)));
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    fn url(text: &str) -> Url {
        Url::parse(text).expect("url")
    }

    #[test]
    fn an_empty_file_gets_the_registry_and_the_http_host() {
        assert_eq!(
            edit("", &url("http://cache.internal:7777/npm/")),
            "npmRegistryServer: \"http://cache.internal:7777/npm/\"\n\
             unsafeHttpWhitelist:\n  - \"cache.internal\"\n"
        );
    }

    #[test]
    fn an_https_node_needs_no_whitelist() {
        assert_eq!(
            edit("", &url("https://cache.internal/npm/")),
            "npmRegistryServer: \"https://cache.internal/npm/\"\n"
        );
    }

    #[test]
    fn other_settings_and_whitelisted_hosts_are_kept() {
        let existing = "# team settings\n\
                        nodeLinker: node-modules\n\
                        npmRegistryServer: \"http://old.internal/\"\n\
                        unsafeHttpWhitelist:\n  - \"*.corp.internal\"\n  - localhost # dev\n\
                        packageExtensions:\n  \"a@*\":\n    dependencies:\n      b: \"*\"\n\
                        enableTelemetry: false";
        let edited = edit(existing, &url("http://127.0.0.1:7777/npm/"));
        assert_eq!(
            edited,
            "# team settings\n\
             nodeLinker: node-modules\n\
             packageExtensions:\n  \"a@*\":\n    dependencies:\n      b: \"*\"\n\
             enableTelemetry: false\n\
             npmRegistryServer: \"http://127.0.0.1:7777/npm/\"\n\
             unsafeHttpWhitelist:\n  - \"*.corp.internal\"\n  - \"localhost\"\n  - \"127.0.0.1\"\n"
        );
        // Applying twice changes nothing.
        assert_eq!(edit(&edited, &url("http://127.0.0.1:7777/npm/")), edited);
    }

    #[test]
    fn flow_and_column_zero_sequences_are_read() {
        for existing in [
            "unsafeHttpWhitelist: [\"a.internal\", 'b.internal']\n",
            "unsafeHttpWhitelist:\n- a.internal\n- \"b.internal\"\n",
        ] {
            assert_eq!(
                edit(existing, &url("http://b.internal/npm/")),
                "npmRegistryServer: \"http://b.internal/npm/\"\n\
                 unsafeHttpWhitelist:\n  - \"a.internal\"\n  - \"b.internal\"\n",
                "{existing}"
            );
        }
    }

    #[test]
    fn keys_that_only_start_alike_are_not_touched() {
        let existing = "npmRegistryServerExtra: x\n  npmRegistryServer: nested\n";
        let edited = edit(existing, &url("https://n.internal/npm/"));
        assert!(edited.starts_with(existing), "{edited}");
    }
}
