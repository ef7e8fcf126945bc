//! The text of a `Release` file (or of a verified `InRelease`): its fields, the files it lists
//! with their SHA256 and size, and the date checks apt makes (`Date` not in the future,
//! `Valid-Until` not past).

use std::time::{Duration, SystemTime};

/// Clock skew tolerated on `Date`.
const CLOCK_SKEW: Duration = Duration::from_secs(300);

/// One file a Release lists, relative to `dists/SUITE/`.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Listed {
    pub path: String,
    pub size: u64,
    pub sha256: [u8; 32],
}

/// A parsed Release.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Release {
    /// Single-line fields in order (`Origin`, `Suite`, `Codename`, `Date`, …).
    pub fields: Vec<(String, String)>,
    /// The `SHA256:` section.
    pub files: Vec<Listed>,
}

impl Release {
    /// Parse the text. A Release without a `SHA256` section is refused: apt requires a strong
    /// hash, and so does Cairn, to check the indexes.
    pub fn parse(text: &str) -> Result<Release, String> {
        let mut release = Release::default();
        let mut section: Option<String> = None;
        for (n, line) in text.lines().enumerate() {
            if line.trim().is_empty() {
                continue;
            }
            if line.starts_with([' ', '\t']) {
                match section.as_deref() {
                    Some("SHA256") => release
                        .files
                        .push(listed(line).map_err(|reason| format!("line {}: {reason}", n + 1))?),
                    Some(_) => {}
                    None => return Err(format!("line {}: continuation without a field", n + 1)),
                }
                continue;
            }
            let (name, value) = line
                .split_once(':')
                .ok_or_else(|| format!("line {}: not a `Field: value` line", n + 1))?;
            let value = value.trim();
            if value.is_empty() {
                section = Some(name.to_owned());
            } else {
                section = Some(name.to_owned());
                release.fields.push((name.to_owned(), value.to_owned()));
            }
        }
        if release.files.is_empty() {
            return Err("lists no files with SHA256 (apt requires a strong hash)".to_owned());
        }
        Ok(release)
    }

    pub fn field(&self, name: &str) -> Option<&str> {
        self.fields
            .iter()
            .find(|(n, _)| n.eq_ignore_ascii_case(name))
            .map(|(_, v)| v.as_str())
    }

    /// The checks apt makes on dates, against `now`.
    pub fn check_dates(&self, now: SystemTime) -> Result<(), String> {
        if let Some(date) = self.field("Date") {
            let date = parse_date(date).ok_or_else(|| format!("unreadable Date {date:?}"))?;
            if date > now + CLOCK_SKEW {
                return Err(format!(
                    "Date {} is in the future",
                    httpdate::fmt_http_date(date)
                ));
            }
        }
        if let Some(until) = self.field("Valid-Until") {
            let until =
                parse_date(until).ok_or_else(|| format!("unreadable Valid-Until {until:?}"))?;
            if until < now {
                return Err(format!(
                    "expired: Valid-Until {} has passed",
                    httpdate::fmt_http_date(until)
                ));
            }
        }
        Ok(())
    }
}

fn listed(line: &str) -> Result<Listed, String> {
    let mut parts = line.split_whitespace();
    let (Some(hash), Some(size), Some(path), None) =
        (parts.next(), parts.next(), parts.next(), parts.next())
    else {
        return Err(format!("not `<sha256> <size> <path>`: {:?}", line.trim()));
    };
    let mut sha256 = [0u8; 32];
    hex::decode_to_slice(hash, &mut sha256).map_err(|_| format!("bad SHA256 {hash:?}"))?;
    let size = size.parse().map_err(|_| format!("bad size {size:?}"))?;
    Ok(Listed {
        path: path.to_owned(),
        size,
        sha256,
    })
}

/// A Release date: `Sat, 10 May 2025 08:37:46 UTC` (RFC 2822 with `UTC`, `GMT` or `+0000`).
pub fn parse_date(value: &str) -> Option<SystemTime> {
    let value = value.trim();
    let head = value
        .strip_suffix("UTC")
        .or_else(|| value.strip_suffix("GMT"))
        .or_else(|| value.strip_suffix("+0000"))?
        .trim_end();
    // Day numbers may come without their leading zero.
    let mut parts: Vec<&str> = head.split_whitespace().collect();
    let padded;
    if parts.len() == 5 && parts[1].len() == 1 {
        padded = format!("0{}", parts[1]);
        parts[1] = &padded;
    }
    httpdate::parse_http_date(&format!("{} GMT", parts.join(" "))).ok()
}
