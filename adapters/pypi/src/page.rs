//! Project pages: read from upstream (PEP 691 JSON, or PEP 503 HTML for indexes that only speak
//! that) into one JSON model, and rendered back as JSON or HTML with file URLs pointing at Cairn.
//!
//! The model is the PEP 691 document itself (`serde_json::Value`), so unknown keys (PEP 740
//! provenance, `_`-private keys) pass through. Only `files[].url` is rewritten; hashes, sizes,
//! `upload-time`, `yanked`, `requires-python` and `core-metadata` are kept as upstream sent them.

use serde_json::{Map, Value};
use url::Url;

pub mod raw;

/// PEP 691's JSON type and the v1 HTML type.
pub const JSON: &str = "application/vnd.pypi.simple.v1+json";
pub const HTML: &str = "application/vnd.pypi.simple.v1+html";

/// Read an upstream page (JSON or HTML) into the JSON model, with file URLs made absolute.
pub fn parse(project: &str, page_url: &Url, body: &[u8]) -> Result<Value, String> {
    let mut page = parse_unresolved(project, body)?;
    for file in files_mut(&mut page) {
        let href = file.get("url").and_then(Value::as_str).unwrap_or_default();
        let url = resolve(page_url, href).map_err(|e| {
            let filename = file.get("filename").and_then(Value::as_str);
            format!(
                "page of {project}: url of {}: {e}",
                filename.unwrap_or_default()
            )
        })?;
        file.insert("url".into(), url.to_string().into());
        // A provenance URL, absolute too; one that does not read is dropped.
        if let Some(provenance) = file.get("provenance").and_then(Value::as_str) {
            match page_url.join(provenance) {
                Ok(absolute) => {
                    file.insert("provenance".into(), absolute.to_string().into());
                }
                Err(_) => {
                    file.remove("provenance");
                }
            }
        }
    }
    Ok(page)
}

/// A file's URL as its page gives it (`href`), made absolute against the page's, without its
/// fragment (where PEP 503 pages carry the hash).
pub fn resolve(page_url: &Url, href: &str) -> Result<Url, url::ParseError> {
    let mut url = page_url.join(href)?;
    url.set_fragment(None);
    Ok(url)
}

/// The files of a page, to change.
fn files_mut(page: &mut Value) -> impl Iterator<Item = &mut Map<String, Value>> {
    page.get_mut("files")
        .and_then(Value::as_array_mut)
        .into_iter()
        .flatten()
        .filter_map(Value::as_object_mut)
}

/// [`parse`] without making the file URLs absolute, for readers that resolve each URL once
/// themselves ([`resolve`]) or replace it (rendering). Every file still has a checked name and
/// a `url` string.
pub fn parse_unresolved(project: &str, body: &[u8]) -> Result<Value, String> {
    let text =
        std::str::from_utf8(body).map_err(|e| format!("page of {project} is not UTF-8: {e}"))?;
    let mut page = if text.trim_start().starts_with('{') {
        serde_json::from_str::<Value>(text)
            .map_err(|e| format!("page of {project} is not valid JSON: {e}"))?
    } else if text.contains("<a") || text.to_ascii_lowercase().contains("<html") {
        from_html(project, text)
    } else {
        return Err(format!(
            "page of {project} is neither PEP 691 JSON nor PEP 503 HTML"
        ));
    };
    let is_quarantined = quarantined(&page);
    let files = page
        .get_mut("files")
        .and_then(Value::as_array_mut)
        .ok_or_else(|| format!("page of {project} has no files list"))?;
    if is_quarantined {
        files.clear();
    }
    for file in files.iter_mut() {
        let object = file
            .as_object_mut()
            .ok_or_else(|| format!("page of {project}: a file entry is not an object"))?;
        let filename = object
            .get("filename")
            .and_then(Value::as_str)
            .unwrap_or_default();
        crate::name::check_file(filename).map_err(|e| format!("page of {project}: {e}"))?;
        if !object.get("url").is_some_and(Value::is_string) {
            return Err(format!("page of {project}: {filename} has no url"));
        }
    }
    Ok(page)
}

/// The files of a page (each an object with at least `filename` and an absolute `url`).
pub fn files(page: &Value) -> impl Iterator<Item = &Map<String, Value>> {
    page.get("files")
        .and_then(Value::as_array)
        .into_iter()
        .flatten()
        .filter_map(Value::as_object)
}

/// `{"sha256": hex}` → the hex digest, for `hashes` and `core-metadata` maps.
pub fn sha256_of(value: Option<&Value>) -> Option<&str> {
    value?.get("sha256")?.as_str()
}

/// The advertised core-metadata hash of a file (PEP 714 name first, then PEP 658's).
pub fn core_metadata(file: &Map<String, Value>) -> Option<&Value> {
    file.get("core-metadata")
        .or_else(|| file.get("dist-info-metadata"))
}

/// Rewrite every file URL to `{files_base}{filename}`, and every PEP 740 provenance URL of
/// the Integrity API's form (`…/integrity/PROJECT/VERSION/FILENAME/provenance`) to
/// `{integrity_base}PROJECT/VERSION/FILENAME/provenance`; one of another form is dropped (this
/// node could not serve it, and a client must not be sent elsewhere for it).
pub fn rewrite(page: &mut Value, files_base: &str, integrity_base: &str) {
    if let Some(files) = page.get_mut("files").and_then(Value::as_array_mut) {
        for file in files.iter_mut().filter_map(Value::as_object_mut) {
            let filename = file
                .get("filename")
                .and_then(Value::as_str)
                .unwrap_or_default()
                .to_owned();
            file.insert("url".into(), format!("{files_base}{filename}").into());
            let Some(provenance) = file.get("provenance").and_then(Value::as_str) else {
                continue;
            };
            match integrity_path(provenance) {
                Some(rest) => {
                    let here = format!("{integrity_base}{rest}");
                    file.insert("provenance".into(), here.into());
                }
                None => {
                    file.remove("provenance");
                }
            }
        }
    }
}

/// `PROJECT/VERSION/FILENAME/provenance` of a provenance URL in the Integrity API's form.
pub fn integrity_path(url: &str) -> Option<&str> {
    const MARK: &str = "/integrity/";
    let rest = &url[url.find(MARK)? + MARK.len()..];
    let ok = rest.ends_with("/provenance")
        && rest.split('/').count() == 4
        && !rest.contains(['?', '#', '\\'])
        && rest
            .split('/')
            .all(|s| !s.is_empty() && s != "." && s != "..");
    ok.then_some(rest)
}

/// Advertise core metadata (`true`: its hash is known only once it is extracted) for every
/// wheel whose upstream entry has none: Cairn serves it from the wheel itself.
pub fn advertise_wheel_metadata(page: &mut Value) {
    if let Some(files) = page.get_mut("files").and_then(Value::as_array_mut) {
        for file in files.iter_mut().filter_map(Value::as_object_mut) {
            let is_wheel = file
                .get("filename")
                .and_then(Value::as_str)
                .is_some_and(|f| f.ends_with(".whl"));
            let has_hash = file.contains_key("hashes") && sha256_of(file.get("hashes")).is_some();
            let advertised = matches!(
                core_metadata(file),
                Some(Value::Object(_) | Value::Bool(true))
            );
            if is_wheel && has_hash && !advertised {
                file.insert("core-metadata".into(), Value::Bool(true));
            }
        }
    }
}

fn escape(text: &str) -> String {
    let mut out = String::with_capacity(text.len());
    for c in text.chars() {
        match c {
            '&' => out.push_str("&amp;"),
            '<' => out.push_str("&lt;"),
            '>' => out.push_str("&gt;"),
            '"' => out.push_str("&quot;"),
            '\'' => out.push_str("&#39;"),
            c => out.push(c),
        }
    }
    out
}

fn unescape(text: &str) -> String {
    text.replace("&lt;", "<")
        .replace("&gt;", ">")
        .replace("&quot;", "\"")
        .replace("&#39;", "'")
        .replace("&#x27;", "'")
        .replace("&amp;", "&")
}

/// A sha256 digest fit to be written into a page: exactly 64 hex digits (lowercased), else
/// `None`, so whatever upstream put in a hash field never reaches the HTML as markup.
fn hex_sha256(value: Option<&Value>) -> Option<String> {
    sha256_of(value)
        .filter(|hex| hex.len() == 64 && hex.bytes().all(|b| b.is_ascii_hexdigit()))
        .map(str::to_ascii_lowercase)
}

/// The simple root as PEP 691 JSON: one `{"name": …}` per project (normalised names).
pub fn root_json(projects: &[String]) -> Vec<u8> {
    let projects: Vec<Value> = projects
        .iter()
        .map(|name| serde_json::json!({ "name": name }))
        .collect();
    serde_json::json!({ "meta": { "api-version": "1.0" }, "projects": projects })
        .to_string()
        .into_bytes()
}

/// The simple root as PEP 503 HTML: one link per project, to its page (relative, so it follows
/// wherever the root is served from).
pub fn root_html(projects: &[String]) -> String {
    let mut out = String::from(
        "<!DOCTYPE html>\n<html>\n  <head>\n    <meta name=\"pypi:repository-version\" content=\"1.0\">\n    <title>Simple index</title>\n  </head>\n  <body>\n",
    );
    for name in projects {
        let name = escape(name);
        out.push_str(&format!("    <a href=\"{name}/\">{name}</a>\n"));
    }
    out.push_str("  </body>\n</html>\n");
    out
}

/// Render the model as PEP 503 HTML (with PEP 592, 658 and 714 attributes). Every value is
/// escaped; digests are written only when they are hex of the right length.
pub fn to_html(page: &Value) -> String {
    let name = escape(page.get("name").and_then(Value::as_str).unwrap_or_default());
    let mut out = format!(
        "<!DOCTYPE html>\n<html>\n  <head>\n    <meta name=\"pypi:repository-version\" content=\"1.1\">\n    <title>Links for {name}</title>\n  </head>\n  <body>\n    <h1>Links for {name}</h1>\n"
    );
    for file in files(page) {
        let filename = file
            .get("filename")
            .and_then(Value::as_str)
            .unwrap_or_default();
        let mut href = file
            .get("url")
            .and_then(Value::as_str)
            .unwrap_or_default()
            .to_owned();
        href.truncate(href.find('#').unwrap_or(href.len()));
        if let Some(sha) = hex_sha256(file.get("hashes")) {
            href.push_str(&format!("#sha256={sha}"));
        }
        out.push_str(&format!("    <a href=\"{}\"", escape(&href)));
        if let Some(rp) = file.get("requires-python").and_then(Value::as_str) {
            out.push_str(&format!(" data-requires-python=\"{}\"", escape(rp)));
        }
        match file.get("yanked") {
            Some(Value::String(reason)) => {
                out.push_str(&format!(" data-yanked=\"{}\"", escape(reason)))
            }
            Some(Value::Bool(true)) => out.push_str(" data-yanked=\"\""),
            _ => {}
        }
        if let Some(provenance) = file.get("provenance").and_then(Value::as_str) {
            out.push_str(&format!(" data-provenance=\"{}\"", escape(provenance)));
        }
        match core_metadata(file) {
            Some(Value::Bool(true)) => {
                out.push_str(" data-core-metadata=\"true\" data-dist-info-metadata=\"true\"")
            }
            Some(meta @ Value::Object(_)) => {
                if let Some(sha) = hex_sha256(Some(meta)) {
                    out.push_str(&format!(
                        " data-core-metadata=\"sha256={sha}\" data-dist-info-metadata=\"sha256={sha}\""
                    ));
                }
            }
            _ => {}
        }
        out.push_str(&format!(">{}</a><br/>\n", escape(filename)));
    }
    out.push_str("  </body>\n</html>\n");
    out
}

/// Attributes of one `<a …>` start tag.
fn attributes(tag: &str) -> Vec<(String, String)> {
    let mut out = Vec::new();
    let mut rest = tag;
    while let Some(eq) = rest.find('=') {
        let name = rest[..eq]
            .trim()
            .rsplit(char::is_whitespace)
            .next()
            .unwrap_or_default()
            .to_ascii_lowercase();
        let after = rest[eq + 1..].trim_start();
        let (value, next) = match after.chars().next() {
            Some(q @ ('"' | '\'')) => match after[1..].find(q) {
                Some(end) => (&after[1..1 + end], &after[end + 2..]),
                None => (&after[1..], ""),
            },
            _ => {
                let end = after.find(char::is_whitespace).unwrap_or(after.len());
                (&after[..end], &after[end..])
            }
        };
        out.push((name, unescape(value)));
        rest = next;
    }
    out
}

/// Read PEP 503 HTML anchors into the JSON model.
fn from_html(project: &str, text: &str) -> Value {
    let mut files = Vec::new();
    let mut rest = text;
    while let Some(start) = rest.find("<a ").or_else(|| rest.find("<A ")) {
        let tag_end = match rest[start..].find('>') {
            Some(e) => start + e,
            None => break,
        };
        let close = rest[tag_end..]
            .find("</a>")
            .or_else(|| rest[tag_end..].find("</A>"))
            .map_or(rest.len(), |c| tag_end + c);
        let attrs = attributes(&rest[start + 3..tag_end]);
        let filename = unescape(rest[tag_end + 1..close].trim());
        rest = &rest[close.min(rest.len())..];
        let Some((_, href)) = attrs.iter().find(|(n, _)| n == "href") else {
            continue;
        };
        let mut file = Map::new();
        let (url, fragment) = href.split_once('#').unwrap_or((href, ""));
        file.insert("filename".into(), filename.into());
        file.insert("url".into(), url.into());
        let mut hashes = Map::new();
        if let Some((algo, hex)) = fragment.split_once('=') {
            hashes.insert(algo.to_owned(), hex.into());
        }
        file.insert("hashes".into(), Value::Object(hashes));
        for (name, value) in &attrs {
            match name.as_str() {
                "data-requires-python" => {
                    file.insert("requires-python".into(), value.clone().into());
                }
                "data-provenance" => {
                    file.insert("provenance".into(), value.clone().into());
                }
                "data-yanked" => {
                    let yanked = if value.is_empty() {
                        Value::Bool(true)
                    } else {
                        value.clone().into()
                    };
                    file.insert("yanked".into(), yanked);
                }
                "data-core-metadata" | "data-dist-info-metadata"
                    if !file.contains_key("core-metadata") =>
                {
                    let meta = match value.split_once('=') {
                        Some((algo, hex)) => serde_json::json!({ algo: hex }),
                        None => Value::Bool(value == "true"),
                    };
                    file.insert("core-metadata".into(), meta);
                }
                _ => {}
            }
        }
        files.push(Value::Object(file));
    }
    let mut page = serde_json::json!({
        "meta": { "api-version": "1.0" },
        "name": crate::name::normalize(project),
        "files": files,
    });
    // PEP 792's status, in HTML a `<meta name="pypi:project-status" content="…">`.
    if let Some(at) = text.find("pypi:project-status") {
        let tag = &text[at..text[at..].find('>').map_or(text.len(), |e| at + e)];
        if let Some(status) = attributes(tag)
            .into_iter()
            .find(|(n, _)| n == "content")
            .map(|(_, v)| v)
        {
            page["project-status"] = serde_json::json!({ "status": status });
        }
    }
    page
}

/// True when the page says its project is quarantined (PEP 792): none of its files may be
/// installed, so none is listed or served.
pub fn quarantined(page: &Value) -> bool {
    page.get("project-status")
        .and_then(|s| s.get("status"))
        .and_then(Value::as_str)
        .is_some_and(|s| s.eq_ignore_ascii_case("quarantined"))
}

#[cfg(test)]
mod tests;
