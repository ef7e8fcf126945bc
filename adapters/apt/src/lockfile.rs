//! apt's "lockfile": a list of packages, one per line (`name`, `name=version`, `name:arch`), or
//! `dpkg --get-selections` output (`name<TAB>install`), resolved against the `Packages` indexes
//! a node holds to exact pool files (with their SHA256). Dependencies are not followed: the list
//! is the whole set, as `dpkg --get-selections` gives it.

use std::cmp::Ordering;

use crate::packages::PoolFile;

/// One package a list asks for.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Wanted {
    pub name: String,
    pub arch: Option<String>,
    pub version: Option<String>,
    pub line: usize,
}

#[derive(Debug, thiserror::Error)]
#[error("{file}:{line}: {reason}")]
pub struct ListError {
    pub file: String,
    pub line: usize,
    pub reason: String,
}

fn valid_name(name: &str) -> bool {
    name.len() >= 2
        && name.len() <= 128
        && name.starts_with(|c: char| c.is_ascii_lowercase() || c.is_ascii_digit())
        && name
            .bytes()
            .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b"+-.".contains(&b))
}

/// Read a package list; `#` starts a comment. Selections other than `install`/`hold` are
/// skipped (`deinstall`, `purge`).
pub fn read(file: &str, text: &str) -> Result<Vec<Wanted>, ListError> {
    let mut out = Vec::new();
    for (n, line) in text.lines().enumerate() {
        let fail = |reason: String| ListError {
            file: file.to_owned(),
            line: n + 1,
            reason,
        };
        let line = line.split('#').next().unwrap_or_default().trim();
        if line.is_empty() {
            continue;
        }
        let mut words = line.split_whitespace();
        let spec = words.next().unwrap_or_default();
        match words.next() {
            None | Some("install") | Some("hold") => {}
            Some("deinstall") | Some("purge") => continue,
            Some(other) => return Err(fail(format!("unknown selection {other:?}"))),
        }
        if let Some(extra) = words.next() {
            return Err(fail(format!("unexpected {extra:?}")));
        }
        let (spec, version) = match spec.split_once('=') {
            Some((s, v)) if !v.is_empty() => (s, Some(v.to_owned())),
            Some(_) => return Err(fail(format!("{spec:?} has an empty version"))),
            None => (spec, None),
        };
        let (name, arch) = match spec.split_once(':') {
            Some((n, a)) => (n, Some(a.to_owned())),
            None => (spec, None),
        };
        if !valid_name(name) {
            return Err(fail(format!("{name:?} is not a Debian package name")));
        }
        out.push(Wanted {
            name: name.to_owned(),
            arch,
            version,
            line: n + 1,
        });
    }
    Ok(out)
}

/// The pool file for each wanted package: the pinned version, else the highest one listed.
/// `arch_of` tells a pool file's architecture (from its name). Errors name each package not
/// found.
pub fn resolve<'a>(
    file: &str,
    wanted: &[Wanted],
    listed: &'a [PoolFile],
) -> Result<Vec<&'a PoolFile>, ListError> {
    let mut out = Vec::new();
    let mut missing = Vec::new();
    for w in wanted {
        let best = listed
            .iter()
            .filter(|f| f.package == w.name && f.filename.ends_with(".deb"))
            .filter(|f| w.version.as_ref().is_none_or(|v| *v == f.version))
            .filter(|f| {
                w.arch
                    .as_ref()
                    .is_none_or(|a| f.filename.ends_with(&format!("_{a}.deb")))
            })
            .max_by(|a, b| compare_versions(&a.version, &b.version));
        match best {
            Some(f) => out.push(f),
            None => missing.push((w.line, w.name.clone())),
        }
    }
    if let Some((line, _)) = missing.first() {
        let names: Vec<String> = missing.iter().map(|(_, n)| n.clone()).collect();
        return Err(ListError {
            file: file.to_owned(),
            line: *line,
            reason: format!("not in any index this node holds: {}", names.join(", ")),
        });
    }
    Ok(out)
}

/// Debian version order (deb-version(7)): epoch, then upstream version and revision compared
/// part by part, non-digits before digits, `~` sorting before everything, even the end.
pub fn compare_versions(a: &str, b: &str) -> Ordering {
    let split = |v: &str| -> (u64, String, String) {
        let (epoch, rest) = match v.split_once(':') {
            Some((e, r)) => (e.parse().unwrap_or(0), r),
            None => (0, v),
        };
        let (upstream, revision) = match rest.rsplit_once('-') {
            Some((u, r)) => (u, r),
            None => (rest, ""),
        };
        (epoch, upstream.to_owned(), revision.to_owned())
    };
    let (ea, ua, ra) = split(a);
    let (eb, ub, rb) = split(b);
    ea.cmp(&eb)
        .then_with(|| compare_part(&ua, &ub))
        .then_with(|| compare_part(&ra, &rb))
}

fn order(c: Option<u8>) -> i32 {
    match c {
        None => 0,
        Some(b'~') => -1,
        Some(c) if c.is_ascii_alphabetic() => i32::from(c),
        Some(c) => i32::from(c) + 256,
    }
}

fn compare_part(a: &str, b: &str) -> Ordering {
    let (mut a, mut b) = (a.as_bytes(), b.as_bytes());
    while !a.is_empty() || !b.is_empty() {
        // Non-digit prefixes, character by character.
        loop {
            let (ca, cb) = (
                a.first().copied().filter(|c| !c.is_ascii_digit()),
                b.first().copied().filter(|c| !c.is_ascii_digit()),
            );
            if ca.is_none() && cb.is_none() {
                break;
            }
            match order(ca).cmp(&order(cb)) {
                Ordering::Equal => {
                    a = &a[1..];
                    b = &b[1..];
                }
                other => return other,
            }
        }
        // Digit runs, as numbers.
        let digits = |s: &[u8]| s.iter().take_while(|c| c.is_ascii_digit()).count();
        let (da, db) = (digits(a), digits(b));
        let number = |s: &[u8]| {
            s.iter()
                .skip_while(|c| **c == b'0')
                .map(|c| *c as char)
                .collect::<String>()
        };
        let (na, nb) = (number(&a[..da]), number(&b[..db]));
        match na.len().cmp(&nb.len()).then_with(|| na.cmp(&nb)) {
            Ordering::Equal => {
                a = &a[da..];
                b = &b[db..];
            }
            other => return other,
        }
    }
    Ordering::Equal
}
