//! The subset of dag-cbor Cairn writes and reads (the snapshot DAG): maps with text keys in
//! canonical order, arrays, text and byte strings, integers, null, booleans and CIDs (tag 42).
//! Encoding is shortest-form as dag-cbor requires; decoding is strict (no indefinite lengths,
//! no floats, no other tags, shortest forms only, sorted unique keys), with a depth limit.

use cid::Cid;

const CID_TAG: u64 = 42;
const MAX_DEPTH: usize = 16;

/// A decoded dag-cbor value.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Value {
    Null,
    Bool(bool),
    Int(i128),
    Text(String),
    Bytes(Vec<u8>),
    Array(Vec<Value>),
    /// Entries in canonical key order.
    Map(Vec<(String, Value)>),
    Link(Cid),
}

/// An item head in its shortest form.
pub fn head(out: &mut Vec<u8>, major: u8, value: u64) {
    let major = major << 5;
    if value < 24 {
        out.push(major | value as u8);
    } else if let Ok(v) = u8::try_from(value) {
        out.extend_from_slice(&[major | 24, v]);
    } else if let Ok(v) = u16::try_from(value) {
        out.push(major | 25);
        out.extend_from_slice(&v.to_be_bytes());
    } else if let Ok(v) = u32::try_from(value) {
        out.push(major | 26);
        out.extend_from_slice(&v.to_be_bytes());
    } else {
        out.push(major | 27);
        out.extend_from_slice(&value.to_be_bytes());
    }
}

/// dag-cbor's canonical key order: shorter keys first, then bytewise.
fn key_order(a: &str, b: &str) -> std::cmp::Ordering {
    a.len()
        .cmp(&b.len())
        .then_with(|| a.as_bytes().cmp(b.as_bytes()))
}

impl Value {
    /// A map from entries in any order (sorted here).
    pub fn map(mut entries: Vec<(&str, Value)>) -> Value {
        entries.sort_by(|a, b| key_order(a.0, b.0));
        Value::Map(
            entries
                .into_iter()
                .map(|(k, v)| (k.to_owned(), v))
                .collect(),
        )
    }

    pub fn text(s: impl Into<String>) -> Value {
        Value::Text(s.into())
    }

    pub fn opt_text(s: Option<&str>) -> Value {
        s.map_or(Value::Null, Value::text)
    }

    pub fn encode(&self) -> Vec<u8> {
        let mut out = Vec::new();
        self.write(&mut out);
        out
    }

    fn write(&self, out: &mut Vec<u8>) {
        match self {
            Value::Null => out.push(0xf6),
            Value::Bool(false) => out.push(0xf4),
            Value::Bool(true) => out.push(0xf5),
            Value::Int(n) if *n >= 0 => head(out, 0, *n as u64),
            Value::Int(n) => head(out, 1, (-1 - *n) as u64),
            Value::Text(s) => {
                head(out, 3, s.len() as u64);
                out.extend_from_slice(s.as_bytes());
            }
            Value::Bytes(b) => {
                head(out, 2, b.len() as u64);
                out.extend_from_slice(b);
            }
            Value::Array(items) => {
                head(out, 4, items.len() as u64);
                for item in items {
                    item.write(out);
                }
            }
            Value::Map(entries) => {
                head(out, 5, entries.len() as u64);
                for (k, v) in entries {
                    head(out, 3, k.len() as u64);
                    out.extend_from_slice(k.as_bytes());
                    v.write(out);
                }
            }
            Value::Link(cid) => {
                let bytes = cid.to_bytes();
                head(out, 6, CID_TAG);
                head(out, 2, bytes.len() as u64 + 1);
                out.push(0);
                out.extend_from_slice(&bytes);
            }
        }
    }

    /// Decode one value that must fill `bytes` exactly.
    pub fn decode(bytes: &[u8]) -> Result<Value, String> {
        let mut reader = Reader { bytes, pos: 0 };
        let value = reader.value(0)?;
        if reader.pos != bytes.len() {
            return Err(format!("{} trailing bytes", bytes.len() - reader.pos));
        }
        Ok(value)
    }

    /// The entry `key` of a map.
    pub fn get(&self, key: &str) -> Option<&Value> {
        match self {
            Value::Map(entries) => entries.iter().find(|(k, _)| k == key).map(|(_, v)| v),
            _ => None,
        }
    }

    pub fn as_text(&self) -> Option<&str> {
        match self {
            Value::Text(s) => Some(s),
            _ => None,
        }
    }

    pub fn as_u64(&self) -> Option<u64> {
        match self {
            Value::Int(n) => u64::try_from(*n).ok(),
            _ => None,
        }
    }

    pub fn as_i64(&self) -> Option<i64> {
        match self {
            Value::Int(n) => i64::try_from(*n).ok(),
            _ => None,
        }
    }

    pub fn as_link(&self) -> Option<&Cid> {
        match self {
            Value::Link(cid) => Some(cid),
            _ => None,
        }
    }

    pub fn as_array(&self) -> Option<&[Value]> {
        match self {
            Value::Array(items) => Some(items),
            _ => None,
        }
    }

    pub fn is_null(&self) -> bool {
        matches!(self, Value::Null)
    }
}

struct Reader<'a> {
    bytes: &'a [u8],
    pos: usize,
}

impl<'a> Reader<'a> {
    fn fail<T>(&self, reason: impl std::fmt::Display) -> Result<T, String> {
        Err(format!("byte {}: {reason}", self.pos))
    }

    fn take(&mut self, len: u64) -> Result<&'a [u8], String> {
        let bytes = self.bytes;
        let Some(end) = usize::try_from(len)
            .ok()
            .and_then(|len| self.pos.checked_add(len))
            .filter(|&end| end <= bytes.len())
        else {
            return self.fail(format!("item of {len} bytes runs past the end"));
        };
        let taken = &bytes[self.pos..end];
        self.pos = end;
        Ok(taken)
    }

    fn head(&mut self) -> Result<(u8, u8, u64), String> {
        let initial = self.take(1)?[0];
        let (major, info) = (initial >> 5, initial & 0x1f);
        let uint = |r: &mut Self, n: u64| -> Result<u64, String> {
            Ok(r.take(n)?
                .iter()
                .fold(0u64, |acc, &b| (acc << 8) | u64::from(b)))
        };
        let (value, min) = match info {
            0..=23 => (u64::from(info), 0),
            24 => (uint(self, 1)?, 24),
            25 => (uint(self, 2)?, 0x100),
            26 => (uint(self, 4)?, 0x1_0000),
            27 => (uint(self, 8)?, 0x1_0000_0000),
            _ => return self.fail(format!("indefinite or reserved item 0x{initial:02x}")),
        };
        if value < min && major != 7 {
            return self.fail("integer not in its shortest form");
        }
        Ok((major, info, value))
    }

    fn value(&mut self, depth: usize) -> Result<Value, String> {
        if depth > MAX_DEPTH {
            return self.fail("nested too deeply");
        }
        let (major, info, n) = self.head()?;
        Ok(match major {
            0 => Value::Int(i128::from(n)),
            1 => Value::Int(-1 - i128::from(n)),
            2 => Value::Bytes(self.take(n)?.to_vec()),
            3 => Value::Text(self.text(n)?),
            4 => {
                let mut items = Vec::new();
                for _ in 0..n {
                    items.push(self.value(depth + 1)?);
                }
                Value::Array(items)
            }
            5 => {
                let mut entries: Vec<(String, Value)> = Vec::new();
                for _ in 0..n {
                    let (major, _, len) = self.head()?;
                    if major != 3 {
                        return self.fail("map key is not text");
                    }
                    let key = self.text(len)?;
                    if let Some((last, _)) = entries.last()
                        && key_order(last, &key) != std::cmp::Ordering::Less
                    {
                        return self.fail(format!("map key {key:?} out of canonical order"));
                    }
                    let value = self.value(depth + 1)?;
                    entries.push((key, value));
                }
                Value::Map(entries)
            }
            6 if n == CID_TAG => {
                let (major, _, len) = self.head()?;
                if major != 2 {
                    return self.fail("tag 42 over something other than bytes");
                }
                let bytes = self.take(len)?;
                let Some((&0, cid)) = bytes.split_first() else {
                    return self.fail("CID bytes lack the 00 prefix");
                };
                let parsed = Cid::read_bytes(cid).map_err(|e| format!("bad CID: {e}"))?;
                if parsed.encoded_len() != cid.len() {
                    return self.fail("trailing bytes after a CID");
                }
                Value::Link(parsed)
            }
            6 => return self.fail(format!("tag {n} is not allowed in dag-cbor")),
            7 => match info {
                20 => Value::Bool(false),
                21 => Value::Bool(true),
                22 => Value::Null,
                _ => return self.fail("floats and simple values are not used here"),
            },
            _ => return self.fail(format!("unknown major type {major}")),
        })
    }

    fn text(&mut self, len: u64) -> Result<String, String> {
        let bytes = self.take(len)?;
        String::from_utf8(bytes.to_vec()).or_else(|_| self.fail("text is not UTF-8"))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn round_trip_in_canonical_order() {
        let cid: Cid = "bafkreie7q3iidccmpvszul7kudcvvuavuo7u6gzlbobczuk5nqk3b4akba"
            .parse()
            .expect("cid");
        let value = Value::map(vec![
            ("version", Value::Int(1)),
            ("roots", Value::Array(vec![Value::Link(cid)])),
            ("n", Value::Int(-300)),
            ("z", Value::Null),
            ("b", Value::Bytes(vec![1, 2, 3])),
            ("t", Value::Bool(true)),
        ]);
        let bytes = value.encode();
        assert_eq!(Value::decode(&bytes).expect("decode"), value);
        // The CAR header of docs/protocols.md is this encoding of {roots, version}.
        let header = Value::map(vec![
            ("version", Value::Int(1)),
            ("roots", Value::Array(vec![Value::Link(cid)])),
        ])
        .encode();
        assert_eq!(
            &header[..8],
            &[0xa2, 0x65, b'r', b'o', b'o', b't', b's', 0x81]
        );
        assert_eq!(header.len(), 58);
    }

    #[test]
    fn strictness() {
        // Keys out of order, non-shortest ints, floats, other tags, trailing bytes.
        assert!(Value::decode(&[0xa2, 0x61, b'b', 0x01, 0x61, b'a', 0x02]).is_err());
        assert!(Value::decode(&[0x18, 0x05]).is_err());
        assert!(Value::decode(&[0xfb, 0, 0, 0, 0, 0, 0, 0, 0]).is_err());
        assert!(Value::decode(&[0xc1, 0x00]).is_err());
        assert!(Value::decode(&[0x01, 0x02]).is_err());
        assert!(Value::decode(&[0x9f]).is_err());
        let mut deep = vec![0x81; 40];
        deep.push(0x00);
        assert!(Value::decode(&deep).is_err());
        assert!(Value::decode(&[0x62, b'a']).is_err());
    }
}
