//! Project pages read as slices of their own JSON text: the path every page takes when it is
//! read for its files and rendered as PEP 691 JSON.
//!
//! A tree of `serde_json::Value`s allocates every key, every string and every nested map of
//! every file: on a page listing 15,000 files that was most of the time a miss spent reading
//! and rendering it. Here the page's members and each file's members are kept as raw JSON
//! slices of the body; a value is decoded only when it is asked for, and rendering copies the
//! members it does not change verbatim. Decoding stays as lenient as the tree's accessors: a
//! member of an unexpected type reads as absent.
//!
//! HTML pages (PEP 503) are read into the JSON model first ([`super::parse_unresolved`]) and
//! then take this path too.

use std::borrow::Cow;
use std::fmt;

use serde::de::{DeserializeSeed, Deserializer, MapAccess, SeqAccess, Visitor};
use serde_json::value::RawValue;

/// Members of a JSON object in name order, each a raw slice of the text (a repeated name keeps
/// its last value, as in a tree). Objects here are small: lookups scan.
#[derive(Default)]
pub struct Members<'a>(Vec<(Cow<'a, str>, &'a RawValue)>);

impl<'a> Members<'a> {
    pub fn get(&self, name: &str) -> Option<&'a RawValue> {
        self.0.iter().find(|(n, _)| n == name).map(|(_, v)| *v)
    }

    pub fn iter(&self) -> impl Iterator<Item = (&str, &'a RawValue)> {
        self.0.iter().map(|(n, v)| (n.as_ref(), *v))
    }

    fn sorted(mut members: Vec<(Cow<'a, str>, &'a RawValue)>) -> Self {
        // Stable: of equal names the last read stays last, and is the one kept.
        members.sort_by(|a, b| a.0.cmp(&b.0));
        let mut out: Vec<(Cow<'a, str>, &'a RawValue)> = Vec::with_capacity(members.len());
        for member in members {
            match out.last_mut() {
                Some(last) if last.0 == member.0 => *last = member,
                _ => out.push(member),
            }
        }
        Members(out)
    }
}

/// A page: its members but `files`, and its files, each checked to be an object with a
/// well-formed `filename` and a string `url` (an empty list when the project is quarantined).
pub struct Page<'a> {
    pub members: Members<'a>,
    pub files: Vec<Members<'a>>,
}

/// Read `body` (PEP 691 JSON, or PEP 503 HTML) and hand the page to `with`.
pub fn with_page<R>(
    project: &str,
    body: &[u8],
    with: impl FnOnce(&Page<'_>) -> R,
) -> Result<R, String> {
    let text =
        std::str::from_utf8(body).map_err(|e| format!("page of {project} is not UTF-8: {e}"))?;
    if text.trim_start().starts_with('{') {
        return Ok(with(&page(project, text)?));
    }
    // Rare (indexes that only speak HTML): read into the model, then as its JSON text.
    let model = super::parse_unresolved(project, body)?;
    let text = serde_json::to_string(&model).map_err(|e| format!("page of {project}: {e}"))?;
    Ok(with(&page(project, &text)?))
}

/// The page in `text`, read in one pass.
fn page<'a>(project: &str, text: &'a str) -> Result<Page<'a>, String> {
    let mut de = serde_json::Deserializer::from_str(text);
    let (members, files) = PageVisitor
        .deserialize(&mut de)
        .and_then(|page| de.end().map(|()| page))
        .map_err(|e| format!("page of {project} is not valid JSON: {e}"))?;
    let files = files.ok_or_else(|| format!("page of {project} has no files list"))?;
    if quarantined(&members) {
        return Ok(Page {
            members,
            files: Vec::new(),
        });
    }
    for file in &files {
        let filename = text_of(file, "filename").unwrap_or_default();
        crate::name::check_file(&filename).map_err(|e| format!("page of {project}: {e}"))?;
        if text_of(file, "url").is_none() {
            return Err(format!("page of {project}: {filename} has no url"));
        }
    }
    Ok(Page { members, files })
}

/// A name, borrowed from the text unless it has escapes.
struct Name<'a>(Cow<'a, str>);

impl<'de> serde::Deserialize<'de> for Name<'de> {
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        struct V;
        impl<'de> Visitor<'de> for V {
            type Value = Name<'de>;
            fn expecting(&self, f: &mut fmt::Formatter) -> fmt::Result {
                f.write_str("a member name")
            }
            fn visit_borrowed_str<E>(self, v: &'de str) -> Result<Self::Value, E> {
                Ok(Name(Cow::Borrowed(v)))
            }
            fn visit_str<E>(self, v: &str) -> Result<Self::Value, E> {
                Ok(Name(Cow::Owned(v.to_owned())))
            }
        }
        deserializer.deserialize_str(V)
    }
}

/// The top-level object: its members but `files`, and `files` if it is there.
struct PageVisitor;

type PageParts<'a> = (Members<'a>, Option<Vec<Members<'a>>>);

impl<'de> DeserializeSeed<'de> for PageVisitor {
    type Value = PageParts<'de>;
    fn deserialize<D: Deserializer<'de>>(self, deserializer: D) -> Result<Self::Value, D::Error> {
        deserializer.deserialize_map(self)
    }
}

impl<'de> Visitor<'de> for PageVisitor {
    type Value = PageParts<'de>;
    fn expecting(&self, f: &mut fmt::Formatter) -> fmt::Result {
        f.write_str("a page object")
    }
    fn visit_map<A: MapAccess<'de>>(self, mut map: A) -> Result<Self::Value, A::Error> {
        let mut members = Vec::new();
        let mut files = None;
        while let Some(Name(name)) = map.next_key()? {
            if name == "files" {
                files = Some(map.next_value_seed(FilesVisitor)?);
            } else {
                members.push((name, map.next_value::<&'de RawValue>()?));
            }
        }
        Ok((Members::sorted(members), files))
    }
}

/// `files`: a list of objects.
struct FilesVisitor;

impl<'de> DeserializeSeed<'de> for FilesVisitor {
    type Value = Vec<Members<'de>>;
    fn deserialize<D: Deserializer<'de>>(self, deserializer: D) -> Result<Self::Value, D::Error> {
        deserializer.deserialize_seq(self)
    }
}

impl<'de> Visitor<'de> for FilesVisitor {
    type Value = Vec<Members<'de>>;
    fn expecting(&self, f: &mut fmt::Formatter) -> fmt::Result {
        f.write_str("a list of files")
    }
    fn visit_seq<A: SeqAccess<'de>>(self, mut seq: A) -> Result<Self::Value, A::Error> {
        let mut files = Vec::with_capacity(seq.size_hint().unwrap_or(0));
        while let Some(file) = seq.next_element_seed(ObjectVisitor)? {
            files.push(file);
        }
        Ok(files)
    }
}

/// One object, as raw members.
struct ObjectVisitor;

impl<'de> DeserializeSeed<'de> for ObjectVisitor {
    type Value = Members<'de>;
    fn deserialize<D: Deserializer<'de>>(self, deserializer: D) -> Result<Self::Value, D::Error> {
        deserializer.deserialize_map(self)
    }
}

impl<'de> Visitor<'de> for ObjectVisitor {
    type Value = Members<'de>;
    fn expecting(&self, f: &mut fmt::Formatter) -> fmt::Result {
        f.write_str("an object")
    }
    fn visit_map<A: MapAccess<'de>>(self, mut map: A) -> Result<Self::Value, A::Error> {
        let mut members = Vec::with_capacity(map.size_hint().unwrap_or(12));
        while let Some(Name(name)) = map.next_key()? {
            members.push((name, map.next_value::<&'de RawValue>()?));
        }
        Ok(Members::sorted(members))
    }
}

/// An object's raw members, if `raw` is an object.
fn object(raw: &RawValue) -> Option<Members<'_>> {
    let mut de = serde_json::Deserializer::from_str(raw.get());
    ObjectVisitor.deserialize(&mut de).ok()
}

/// True when the page says its project is quarantined (PEP 792).
fn quarantined(members: &Members<'_>) -> bool {
    members
        .get("project-status")
        .and_then(object)
        .and_then(|status| text_of(&status, "status"))
        .is_some_and(|s| s.eq_ignore_ascii_case("quarantined"))
}

/// A raw value as a string, if it is one.
pub fn text(raw: &RawValue) -> Option<Cow<'_, str>> {
    let json = raw.get();
    if !json.starts_with('"') {
        return None;
    }
    // Borrowed unless it has escapes.
    match serde_json::from_str::<&str>(json) {
        Ok(s) => Some(Cow::Borrowed(s)),
        Err(_) => serde_json::from_str::<String>(json).ok().map(Cow::Owned),
    }
}

/// The member `name` of `members` as a string, if it is one.
pub fn text_of<'a>(members: &Members<'a>, name: &str) -> Option<Cow<'a, str>> {
    text(members.get(name)?)
}

/// A raw value as an unsigned integer, if it is one.
pub fn unsigned(raw: &RawValue) -> Option<u64> {
    raw.get().parse().ok()
}

/// `{"sha256": hex}` → the hex digest, for `hashes` and `core-metadata` maps.
pub fn sha256_of<'a>(raw: Option<&'a RawValue>) -> Option<Cow<'a, str>> {
    text_of(&object(raw?)?, "sha256")
}

/// The advertised core-metadata entry of a file (PEP 714's name first, then PEP 658's).
pub fn core_metadata<'a>(file: &Members<'a>) -> Option<&'a RawValue> {
    file.get("core-metadata")
        .or_else(|| file.get("dist-info-metadata"))
}

/// PEP 592: `true`, or a reason (any string: an empty one is no yank only in HTML).
pub fn yanked(file: &Members<'_>) -> bool {
    file.get("yanked")
        .is_some_and(|raw| raw.get() == "true" || raw.get().starts_with('"'))
}

/// The page as PEP 691 JSON with every file URL at `{files_base}{filename}`, provenance URLs
/// of the Integrity API's form under `integrity_base` (others dropped), and core metadata
/// advertised for every wheel with a sha256 (Cairn serves it from the wheel). Members are
/// written in name order; what is not changed is copied as upstream wrote it.
pub fn render_json(page: &Page<'_>, files_base: &str, integrity_base: &str) -> Vec<u8> {
    let size: usize = page
        .members
        .iter()
        .map(|(_, v)| v.get().len())
        .sum::<usize>()
        + page
            .files
            .iter()
            .map(|f| f.iter().map(|(_, v)| v.get().len() + 16).sum::<usize>())
            .sum::<usize>();
    let mut out = Vec::with_capacity(size + size / 4);
    out.push(b'{');
    let mut first = true;
    let mut files_written = false;
    for (name, value) in page.members.iter() {
        if !files_written && name > "files" {
            member(&mut out, &mut first, "files");
            files(&mut out, page, files_base, integrity_base);
            files_written = true;
        }
        member(&mut out, &mut first, name);
        out.extend_from_slice(value.get().as_bytes());
    }
    if !files_written {
        member(&mut out, &mut first, "files");
        files(&mut out, page, files_base, integrity_base);
    }
    out.push(b'}');
    out
}

/// `"name":`, after a comma unless it is the first member.
fn member(out: &mut Vec<u8>, first: &mut bool, name: &str) {
    if !std::mem::take(first) {
        out.push(b',');
    }
    string(out, name);
    out.push(b':');
}

fn string(out: &mut Vec<u8>, text: &str) {
    // Writing a string into a Vec cannot fail.
    let _ = serde_json::to_writer(&mut *out, text);
}

fn files(out: &mut Vec<u8>, page: &Page<'_>, files_base: &str, integrity_base: &str) {
    out.push(b'[');
    for (i, file) in page.files.iter().enumerate() {
        if i > 0 {
            out.push(b',');
        }
        let filename = text_of(file, "filename").unwrap_or_default();
        let advertise = filename.ends_with(".whl")
            && sha256_of(file.get("hashes")).is_some()
            && !core_metadata(file)
                .is_some_and(|raw| raw.get() == "true" || raw.get().starts_with('{'));
        out.push(b'{');
        let mut first = true;
        let mut advertised = !advertise;
        for (name, value) in file.iter() {
            if !advertised && name > "core-metadata" {
                member(out, &mut first, "core-metadata");
                out.extend_from_slice(b"true");
                advertised = true;
            }
            match name {
                "url" => {
                    member(out, &mut first, name);
                    string(out, &format!("{files_base}{filename}"));
                }
                "provenance" if value.get().starts_with('"') => {
                    // A URL of another form could not be served here: the client must not be
                    // sent elsewhere for it.
                    let Some(rest) = text(value)
                        .as_deref()
                        .and_then(super::integrity_path)
                        .map(str::to_owned)
                    else {
                        continue;
                    };
                    member(out, &mut first, name);
                    string(out, &format!("{integrity_base}{rest}"));
                }
                "core-metadata" if advertise => {
                    // Replaced: what it held did not advertise a hash.
                    continue;
                }
                _ => {
                    member(out, &mut first, name);
                    out.extend_from_slice(value.get().as_bytes());
                }
            }
        }
        if !advertised {
            member(out, &mut first, "core-metadata");
            out.extend_from_slice(b"true");
        }
        out.push(b'}');
    }
    out.push(b']');
}
