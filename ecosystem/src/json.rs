//! A zero-copy JSON span scanner, for rewriting large documents in one pass.
//!
//! Metadata documents can be tens of megabytes (npm's own packument is over 20 MB). Building a
//! `serde_json::Value` of one costs several times its size; instead, adapters walk the document
//! as byte spans with [`members`] and copy what they keep verbatim, so memory stays at input plus
//! output, and unknown fields survive byte for byte.
//!
//! The scanner checks structure (balanced brackets, terminated strings, separators); it does not
//! validate numbers or escapes inside spans it copies, which adapters parse with serde where they
//! need a value.

/// A malformed document, with the byte offset where scanning failed.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct JsonError {
    pub offset: usize,
    pub reason: &'static str,
}

impl std::fmt::Display for JsonError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "malformed JSON at byte {}: {}", self.offset, self.reason)
    }
}

impl std::error::Error for JsonError {}

fn fail<T>(offset: usize, reason: &'static str) -> Result<T, JsonError> {
    Err(JsonError { offset, reason })
}

/// Index of the first non-whitespace byte at or after `i`.
pub fn skip_ws(bytes: &[u8], mut i: usize) -> usize {
    while i < bytes.len() && matches!(bytes[i], b' ' | b'\t' | b'\n' | b'\r') {
        i += 1;
    }
    i
}

/// End (exclusive) of the string starting at `i` (which must be `"`).
fn string_end(bytes: &[u8], i: usize) -> Result<usize, JsonError> {
    let mut j = i + 1;
    while j < bytes.len() {
        match bytes[j] {
            b'"' => return Ok(j + 1),
            b'\\' => j += 2,
            _ => j += 1,
        }
    }
    fail(i, "unterminated string")
}

/// End (exclusive) of the value starting at or after `i` (leading whitespace skipped).
pub fn value_end(bytes: &[u8], i: usize) -> Result<usize, JsonError> {
    let i = skip_ws(bytes, i);
    match bytes.get(i) {
        None => fail(i, "expected a value"),
        Some(b'"') => string_end(bytes, i),
        Some(b'{' | b'[') => {
            let mut depth = 0usize;
            let mut j = i;
            while j < bytes.len() {
                match bytes[j] {
                    b'"' => {
                        j = string_end(bytes, j)?;
                        continue;
                    }
                    b'{' | b'[' => depth += 1,
                    b'}' | b']' => {
                        depth -= 1;
                        if depth == 0 {
                            return Ok(j + 1);
                        }
                    }
                    _ => {}
                }
                j += 1;
            }
            fail(i, "unterminated object or array")
        }
        Some(_) => {
            let mut j = i;
            while j < bytes.len()
                && !matches!(bytes[j], b',' | b'}' | b']' | b' ' | b'\t' | b'\n' | b'\r')
            {
                j += 1;
            }
            if j == i {
                fail(i, "expected a value")
            } else {
                Ok(j)
            }
        }
    }
}

/// One member of an object: the key's raw span (with quotes) and the value's span.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Member<'a> {
    pub key: &'a [u8],
    pub value: &'a [u8],
}

impl Member<'_> {
    /// True when the key is `name` (keys with escapes are decoded first).
    pub fn is(&self, name: &str) -> bool {
        let inner = &self.key[1..self.key.len() - 1];
        if !inner.contains(&b'\\') {
            return inner == name.as_bytes();
        }
        serde_json::from_slice::<String>(self.key).is_ok_and(|k| k == name)
    }

    /// The key, decoded.
    pub fn key_string(&self) -> Result<String, JsonError> {
        serde_json::from_slice(self.key).map_err(|_| JsonError {
            offset: 0,
            reason: "invalid key",
        })
    }
}

/// The members of the object `bytes` (one whole object, surrounding whitespace allowed).
pub fn members(bytes: &[u8]) -> Result<Vec<Member<'_>>, JsonError> {
    let mut out = Vec::new();
    let mut i = skip_ws(bytes, 0);
    if bytes.get(i) != Some(&b'{') {
        return fail(i, "expected an object");
    }
    i = skip_ws(bytes, i + 1);
    if bytes.get(i) == Some(&b'}') {
        return end_of(bytes, i + 1, out);
    }
    loop {
        if bytes.get(i) != Some(&b'"') {
            return fail(i, "expected a key");
        }
        let key_end = string_end(bytes, i)?;
        let key = &bytes[i..key_end];
        i = skip_ws(bytes, key_end);
        if bytes.get(i) != Some(&b':') {
            return fail(i, "expected ':'");
        }
        let start = skip_ws(bytes, i + 1);
        let end = value_end(bytes, start)?;
        out.push(Member {
            key,
            value: &bytes[start..end],
        });
        i = skip_ws(bytes, end);
        match bytes.get(i) {
            Some(b',') => i = skip_ws(bytes, i + 1),
            Some(b'}') => return end_of(bytes, i + 1, out),
            _ => return fail(i, "expected ',' or '}'"),
        }
    }
}

fn end_of<'a>(bytes: &[u8], i: usize, out: Vec<Member<'a>>) -> Result<Vec<Member<'a>>, JsonError> {
    if skip_ws(bytes, i) != bytes.len() {
        return fail(i, "trailing bytes after the object");
    }
    Ok(out)
}

/// Writes an object member by member, separators included.
pub struct ObjectWriter<'o> {
    out: &'o mut Vec<u8>,
    first: bool,
}

impl<'o> ObjectWriter<'o> {
    pub fn new(out: &'o mut Vec<u8>) -> Self {
        out.push(b'{');
        ObjectWriter { out, first: true }
    }

    /// Start a member with `key` (a raw JSON string span); returns the buffer to write the value
    /// into.
    pub fn key(&mut self, key: &[u8]) -> &mut Vec<u8> {
        if !self.first {
            self.out.push(b',');
        }
        self.first = false;
        self.out.extend_from_slice(key);
        self.out.push(b':');
        self.out
    }

    /// A member copied verbatim.
    pub fn copy(&mut self, member: &Member<'_>) {
        self.key(member.key).extend_from_slice(member.value);
    }

    pub fn finish(self) {
        self.out.push(b'}');
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn members_of_nested_objects() {
        let doc = br#" { "a" : 1, "b":{"c":[1,{"d":"}"}]}, "e\"q": "x\\" , "f":null } "#;
        let m = members(doc).expect("members");
        assert_eq!(m.len(), 4);
        assert!(m[0].is("a"));
        assert_eq!(m[0].value, b"1");
        assert_eq!(m[1].value, br#"{"c":[1,{"d":"}"}]}"#);
        assert!(m[2].is("e\"q"));
        assert_eq!(m[2].value, br#""x\\""#);
        assert_eq!(m[3].value, b"null");
    }

    #[test]
    fn malformed_documents_are_refused() {
        for doc in [
            &b"<html>"[..],
            b"{",
            b"{\"a\":}",
            b"{\"a\" 1}",
            b"{\"a\":1,}",
            b"{\"a\":\"unterminated}",
            b"{\"a\":1} trailing",
            b"[1,2]",
        ] {
            assert!(members(doc).is_err(), "{}", String::from_utf8_lossy(doc));
        }
        assert_eq!(members(b"{}").expect("empty").len(), 0);
    }

    #[test]
    fn writer_round_trips() {
        let doc = br#"{"a":1,"b":[2]}"#;
        let mut out = Vec::new();
        let mut w = ObjectWriter::new(&mut out);
        for m in members(doc).expect("members") {
            w.copy(&m);
        }
        w.finish();
        assert_eq!(out, doc);
    }
}
