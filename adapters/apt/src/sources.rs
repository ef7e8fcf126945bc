//! apt's sources: the one-line format (`sources.list`, `*.list`) and deb822 (`*.sources`), read
//! to find the archives a machine uses (each served at `/apt/NAME/`) and to write the client
//! configuration that points them at Cairn (sources.list(5)).

use url::Url;

/// One archive entry of apt's sources.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Source {
    /// `deb`, `deb-src`.
    pub types: Vec<String>,
    pub uri: Url,
    pub suites: Vec<String>,
    pub components: Vec<String>,
    /// The `signed-by` option: keyring files (or an inline key block).
    pub signed_by: Option<String>,
}

impl Source {
    /// The archive's name under `/apt/`: the last segment of the URI's path (`debian`,
    /// `debian-security`), else its host.
    pub fn archive_name(&self) -> String {
        archive_name(&self.uri)
    }
}

/// `/apt/NAME/` for an archive URI.
pub fn archive_name(uri: &Url) -> String {
    let name = uri
        .path_segments()
        .and_then(|mut s| s.rfind(|seg| !seg.is_empty()))
        .map(str::to_owned)
        .or_else(|| uri.host_str().map(str::to_owned))
        .unwrap_or_default();
    name.to_ascii_lowercase()
        .chars()
        .map(|c| {
            if c.is_ascii_alphanumeric() || "._-".contains(c) {
                c
            } else {
                '-'
            }
        })
        .collect()
}

/// Read a one-line-format file (`sources.list`). Lines that are not archive entries are skipped.
pub fn parse_list(text: &str) -> Vec<Source> {
    let mut out = Vec::new();
    for line in text.lines() {
        let line = line.split('#').next().unwrap_or_default().trim();
        let Some((kind, rest)) = line.split_once(char::is_whitespace) else {
            continue;
        };
        if kind != "deb" && kind != "deb-src" {
            continue;
        }
        let mut rest = rest.trim();
        let mut signed_by = None;
        if let Some(options) = rest.strip_prefix('[') {
            let Some((options, after)) = options.split_once(']') else {
                continue;
            };
            for option in options.split_whitespace() {
                if let Some(value) = option.strip_prefix("signed-by=") {
                    signed_by = Some(value.to_owned());
                }
            }
            rest = after.trim();
        }
        let mut words = rest.split_whitespace();
        let (Some(uri), Some(suite)) = (words.next(), words.next()) else {
            continue;
        };
        let Ok(uri) = Url::parse(uri) else {
            continue;
        };
        out.push(Source {
            types: vec![kind.to_owned()],
            uri,
            suites: vec![suite.to_owned()],
            components: words.map(str::to_owned).collect(),
            signed_by,
        });
    }
    out
}

/// Read a deb822 file (`*.sources`): one stanza per group of archives; `Enabled: no` skips it.
pub fn parse_deb822(text: &str) -> Vec<Source> {
    let mut out = Vec::new();
    for stanza in text.split("\n\n") {
        let mut fields: Vec<(String, String)> = Vec::new();
        for line in stanza.lines() {
            if line.trim_start().starts_with('#') {
                continue;
            }
            if line.starts_with([' ', '\t']) {
                if let Some((_, value)) = fields.last_mut() {
                    value.push('\n');
                    value.push_str(line.trim());
                }
            } else if let Some((name, value)) = line.split_once(':') {
                fields.push((name.trim().to_ascii_lowercase(), value.trim().to_owned()));
            }
        }
        let get = |name: &str| {
            fields
                .iter()
                .find(|(n, _)| n == name)
                .map(|(_, v)| v.as_str())
        };
        if get("enabled").is_some_and(|v| v.eq_ignore_ascii_case("no")) {
            continue;
        }
        let words = |name: &str| -> Vec<String> {
            get(name)
                .map(|v| v.split_whitespace().map(str::to_owned).collect())
                .unwrap_or_default()
        };
        let types = words("types");
        if !types.iter().any(|t| t == "deb" || t == "deb-src") {
            continue;
        }
        for uri in words("uris") {
            let Ok(uri) = Url::parse(&uri) else {
                continue;
            };
            out.push(Source {
                types: types.clone(),
                uri,
                suites: words("suites"),
                components: words("components"),
                signed_by: get("signed-by").map(str::to_owned),
            });
        }
    }
    out
}

/// The keyring files a `signed-by` value names (inline key blocks and fingerprints name none).
pub fn keyring_files(signed_by: &str) -> Vec<String> {
    if signed_by.contains("BEGIN PGP") {
        return Vec::new();
    }
    signed_by
        .split([',', ' '])
        .map(str::trim)
        .filter(|s| s.starts_with('/'))
        .map(str::to_owned)
        .collect()
}

/// deb822 stanzas pointing `sources` at Cairn's `base` (`http://HOST:7777/apt/`).
pub fn render_deb822(sources: &[Source], base: &Url) -> String {
    let mut out = String::new();
    for source in sources {
        let uri = base
            .join(&format!("{}/", source.archive_name()))
            .map(|u| u.to_string())
            .unwrap_or_default();
        out.push_str(&format!(
            "Types: {}\nURIs: {}\nSuites: {}\nComponents: {}\n",
            source.types.join(" "),
            uri.trim_end_matches('/'),
            source.suites.join(" "),
            source.components.join(" ")
        ));
        if let Some(signed_by) = &source.signed_by {
            out.push_str(&format!("Signed-By: {}\n", signed_by.replace('\n', "\n ")));
        }
        out.push('\n');
    }
    out
}
