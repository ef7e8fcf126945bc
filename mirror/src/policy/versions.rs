//! The version part of a policy rule (`npm:axios@1.14.1`, `pypi:litellm@>=1.82.7,<1.82.9`,
//! `apt:openssl@<< 3.0.11-1`), and how each ecosystem orders versions: semver for npm and
//! cargo, PEP 440's release numbers (then pre-releases before, post-releases after) for PyPI,
//! dpkg's order for apt (epoch, upstream version, revision; `~` before anything, even the
//! end); versions of any other kind match only themselves.
//!
//! A set is `*` (every version), one version (exactly it: a rule names versions, it is not a
//! dependency requirement), or comparators (`>=`, `>`, `<=`, `<`, `=`, `==`, `!=`, and
//! Debian's `<<` and `>>` for strictly less and greater) joined by `,` or spaces (all must
//! hold), alternatives joined by `||`.

use std::cmp::Ordering;

/// Which versions a rule names.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum VersionSet {
    Any,
    /// Alternatives, each a list of comparators that must all hold.
    Ranges(Vec<Vec<(Op, String)>>),
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Op {
    Eq,
    Ne,
    Lt,
    Le,
    Gt,
    Ge,
}

impl VersionSet {
    /// Parse the text after `@` (empty is every version).
    pub fn parse(text: &str) -> Result<VersionSet, String> {
        let text = text.trim();
        if text.is_empty() || text == "*" {
            return Ok(VersionSet::Any);
        }
        let mut alternatives = Vec::new();
        for alternative in text.split("||") {
            let mut all = Vec::new();
            // An operator written apart from its version (`<< 3.0`) is joined to it.
            let mut parts: Vec<String> = Vec::new();
            let mut pending = String::new();
            for token in alternative
                .split([',', ' '])
                .map(str::trim)
                .filter(|p| !p.is_empty())
            {
                if token.bytes().all(|b| b"<>=!".contains(&b)) {
                    pending.push_str(token);
                } else {
                    parts.push(format!("{}{token}", std::mem::take(&mut pending)));
                }
            }
            if !pending.is_empty() {
                parts.push(pending);
            }
            for part in &parts {
                let part = part.as_str();
                let (op, version) = if let Some(v) = part.strip_prefix("<<") {
                    (Op::Lt, v)
                } else if let Some(v) = part.strip_prefix(">>") {
                    (Op::Gt, v)
                } else if let Some(v) = part.strip_prefix(">=") {
                    (Op::Ge, v)
                } else if let Some(v) = part.strip_prefix("<=") {
                    (Op::Le, v)
                } else if let Some(v) = part.strip_prefix("==") {
                    (Op::Eq, v)
                } else if let Some(v) = part.strip_prefix("!=") {
                    (Op::Ne, v)
                } else if let Some(v) = part.strip_prefix('>') {
                    (Op::Gt, v)
                } else if let Some(v) = part.strip_prefix('<') {
                    (Op::Lt, v)
                } else if let Some(v) = part.strip_prefix('=') {
                    (Op::Eq, v)
                } else {
                    (Op::Eq, part)
                };
                let version = version.trim();
                if version.is_empty()
                    || version.len() > 128
                    || !version
                        .bytes()
                        .all(|b| b.is_ascii_alphanumeric() || b".-+_~:".contains(&b))
                {
                    return Err(format!("{part:?} is not a version comparison"));
                }
                all.push((op, version.to_owned()));
            }
            if all.is_empty() {
                return Err(format!("{text:?}: an empty alternative"));
            }
            alternatives.push(all);
        }
        Ok(VersionSet::Ranges(alternatives))
    }

    /// True when `version` (of an ecosystem of `family`) is in the set.
    pub fn contains(&self, family: &str, version: &str) -> bool {
        match self {
            VersionSet::Any => true,
            VersionSet::Ranges(alternatives) => alternatives.iter().any(|all| {
                all.iter().all(|(op, bound)| {
                    let Some(order) = compare(family, version, bound) else {
                        // Versions this ecosystem cannot order match only themselves.
                        return match op {
                            Op::Eq => version == bound,
                            Op::Ne => version != bound,
                            _ => false,
                        };
                    };
                    match op {
                        Op::Eq => order == Ordering::Equal,
                        Op::Ne => order != Ordering::Equal,
                        Op::Lt => order == Ordering::Less,
                        Op::Le => order != Ordering::Greater,
                        Op::Gt => order == Ordering::Greater,
                        Op::Ge => order != Ordering::Less,
                    }
                })
            }),
        }
    }
}

/// `a` against `b` as `family` orders versions; `None` when either is not a version it orders.
pub fn compare(family: &str, a: &str, b: &str) -> Option<Ordering> {
    match family {
        "npm" | "cargo" => Some(loose_semver(a)?.cmp_precedence(&loose_semver(b)?)),
        "pypi" => Some(pep440(a)?.cmp(&pep440(b)?)),
        "apt" => debian(a, b),
        _ => None,
    }
}

/// Two Debian versions (`[EPOCH:]UPSTREAM[-REVISION]`) in dpkg's order; `None` when either
/// is not one.
fn debian(a: &str, b: &str) -> Option<Ordering> {
    let (a, b) = (debian_parts(a)?, debian_parts(b)?);
    Some(
        a.0.cmp(&b.0)
            .then_with(|| debian_part(a.1, b.1))
            .then_with(|| debian_part(a.2, b.2)),
    )
}

/// Epoch, upstream version and revision (empty when there is none).
fn debian_parts(version: &str) -> Option<(u64, &str, &str)> {
    let version = version.trim();
    let (epoch, rest) = match version.split_once(':') {
        Some((epoch, rest)) => (epoch.parse().ok()?, rest),
        None => (0, version),
    };
    let (upstream, revision) = rest.rsplit_once('-').unwrap_or((rest, ""));
    let valid = |s: &str, extra: &[u8]| {
        s.bytes()
            .all(|b| b.is_ascii_alphanumeric() || b"+.~".contains(&b) || extra.contains(&b))
    };
    if !upstream.starts_with(|c: char| c.is_ascii_digit())
        || !valid(upstream, b"-:")
        || !valid(revision, b"")
    {
        return None;
    }
    Some((epoch, upstream, revision))
}

/// dpkg's comparison of one part: alternately a run of non-digits, compared character by
/// character (`~` first, even before the end; letters before other characters), and a run of
/// digits, compared as numbers.
fn debian_part(a: &str, b: &str) -> Ordering {
    fn weight(c: Option<u8>) -> i32 {
        match c {
            Some(b'~') => -1,
            None => 0,
            Some(c) if c.is_ascii_digit() => 0,
            Some(c) if c.is_ascii_alphabetic() => i32::from(c),
            Some(c) => i32::from(c) + 256,
        }
    }
    let (mut a, mut b) = (a.as_bytes(), b.as_bytes());
    while !a.is_empty() || !b.is_empty() {
        while a.first().is_some_and(|c| !c.is_ascii_digit())
            || b.first().is_some_and(|c| !c.is_ascii_digit())
        {
            let (x, y) = (weight(a.first().copied()), weight(b.first().copied()));
            if x != y {
                return x.cmp(&y);
            }
            a = a.get(1..).unwrap_or_default();
            b = b.get(1..).unwrap_or_default();
        }
        let digits = |s: &[u8]| s.iter().take_while(|c| c.is_ascii_digit()).count();
        let (n, m) = (digits(a), digits(b));
        let strip =
            |s: &'_ [u8]| -> Vec<u8> { s.iter().skip_while(|&&c| c == b'0').copied().collect() };
        let (x, y) = (strip(&a[..n]), strip(&b[..m]));
        let order = x.len().cmp(&y.len()).then_with(|| x.cmp(&y));
        if order != Ordering::Equal {
            return order;
        }
        a = &a[n..];
        b = &b[m..];
    }
    Ordering::Equal
}

/// A semver version, a bound such as `2` or `2.5` taken as `2.0.0` and `2.5.0`.
fn loose_semver(version: &str) -> Option<semver::Version> {
    let v = version.trim().trim_start_matches(['v', '=']);
    let split = v.find(['-', '+']).unwrap_or(v.len());
    let (core, rest) = v.split_at(split);
    let parts = core.split('.').count();
    let padded = match parts {
        1 => format!("{core}.0.0{rest}"),
        2 => format!("{core}.0{rest}"),
        _ => v.to_owned(),
    };
    semver::Version::parse(&padded).ok()
}

/// A PEP 440 version as an ordering key: the release numbers (trailing zeros ignored), then
/// dev (before pre-releases) < pre-release (a < b < rc) < final < post-release.
fn pep440(version: &str) -> Option<(Vec<u64>, (u8, u64), u64)> {
    let v = version.trim().to_ascii_lowercase();
    let v = v.strip_prefix('v').unwrap_or(&v);
    let v = v.split_once('!').map_or(v, |(_, rest)| rest);
    let v = v.split_once('+').map_or(v, |(release, _)| release);
    let end = v
        .find(|c: char| !(c.is_ascii_digit() || c == '.'))
        .unwrap_or(v.len());
    let (release, rest) = v.split_at(end);
    let mut numbers: Vec<u64> = release
        .trim_end_matches('.')
        .split('.')
        .map(|n| n.parse().ok())
        .collect::<Option<_>>()?;
    while numbers.len() > 1 && numbers.last() == Some(&0) {
        numbers.pop();
    }
    let rest = rest.trim_start_matches(['.', '-', '_']);
    let number = |s: &str| -> u64 { s.trim_start_matches(['.', '-', '_']).parse().unwrap_or(0) };
    let (phase, post) = if rest.is_empty() {
        ((3, 0), 0)
    } else if let Some(n) = rest.strip_prefix("dev") {
        ((0, number(n)), 0)
    } else if let Some(n) = rest.strip_prefix("rc").or_else(|| rest.strip_prefix('c')) {
        ((2, number(n.split("dev").next().unwrap_or(n))), 0)
    } else if let Some(n) = rest.strip_prefix("post").or_else(|| rest.strip_prefix('r')) {
        ((3, 0), number(n) + 1)
    } else if let Some(n) = rest
        .strip_prefix('b')
        .map(|n| n.strip_prefix("eta").unwrap_or(n))
    {
        (
            (1, 1_000_000 + number(n.split("dev").next().unwrap_or(n))),
            0,
        )
    } else if let Some(n) = rest
        .strip_prefix('a')
        .map(|n| n.strip_prefix("lpha").unwrap_or(n))
    {
        ((1, number(n.split("dev").next().unwrap_or(n))), 0)
    } else {
        return None;
    };
    Some((numbers, phase, post))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn set(text: &str) -> VersionSet {
        VersionSet::parse(text).expect("set")
    }

    #[test]
    fn a_bare_version_is_exactly_it_and_comparators_bound() {
        assert!(set("1.14.1").contains("npm", "1.14.1"));
        assert!(!set("1.14.1").contains("npm", "1.14.2"));
        assert!(set("").contains("npm", "9.9.9"));
        let range = set(">=1.82.7,<1.82.9");
        assert!(range.contains("pypi", "1.82.7"));
        assert!(range.contains("pypi", "1.82.8"));
        assert!(!range.contains("pypi", "1.82.9"));
        assert!(!range.contains("pypi", "1.82.6"));
        let npm = set(">=1.0.0 <2.0.0 || 3.0.0");
        assert!(npm.contains("npm", "1.5.0"));
        assert!(npm.contains("npm", "3.0.0"));
        assert!(!npm.contains("npm", "2.0.0"));
        assert!(
            !npm.contains("npm", "1.0.0-rc.1"),
            "a pre-release is below its release"
        );
        assert!(set("!=1.0.0").contains("cargo", "1.0.1"));
    }

    #[test]
    fn pypi_orders_releases_numerically_with_pre_and_post_releases() {
        let order = [
            "1.0.dev1",
            "1.0a1",
            "1.0b2",
            "1.0rc1",
            "1.0",
            "1.0.post1",
            "1.0.1",
            "1.10",
        ];
        for pair in order.windows(2) {
            assert_eq!(
                compare("pypi", pair[0], pair[1]),
                Some(Ordering::Less),
                "{} < {}",
                pair[0],
                pair[1]
            );
        }
        assert_eq!(compare("pypi", "1.0.0", "1.0"), Some(Ordering::Equal));
        assert_eq!(compare("pypi", "1.0", "nonsense"), None);
    }

    #[test]
    fn what_is_not_a_comparison_is_refused_and_unordered_versions_match_only_themselves() {
        for bad in [">=", "1.0;rm", "||", ">= 1.0 || "] {
            assert!(VersionSet::parse(bad).is_err(), "{bad}");
        }
        let apt = set("1:2.36-9+deb12u1");
        assert!(apt.contains("apt", "1:2.36-9+deb12u1"));
        assert!(!apt.contains("apt", "1:2.36-9+deb12u2"));
        assert!(!set(">=1.0").contains("gem", "2.0"));
    }

    #[test]
    fn apt_orders_as_dpkg_does() {
        let order = [
            "1.0~rc1",
            "1.0",
            "1.0-1",
            "1.0-1+deb12u1",
            "1.0a",
            "1.0.1",
            "1.2",
            "1.10",
            "1:0.5",
            "2:0.1~beta",
        ];
        for pair in order.windows(2) {
            assert_eq!(
                compare("apt", pair[0], pair[1]),
                Some(Ordering::Less),
                "{} < {}",
                pair[0],
                pair[1]
            );
            assert_eq!(compare("apt", pair[1], pair[0]), Some(Ordering::Greater));
        }
        assert_eq!(compare("apt", "0:1.0-1", "1.0-1"), Some(Ordering::Equal));
        assert_eq!(compare("apt", "1.01", "1.1"), Some(Ordering::Equal));
        assert_eq!(
            compare("apt", "3.0.11-1~deb12u2", "3.0.11-1"),
            Some(Ordering::Less)
        );
        // Upstream versions may hold `-` and `:` (with an epoch); the revision is after the last `-`.
        assert_eq!(
            compare("apt", "1:2.0-beta-3", "1:2.0-beta-10"),
            Some(Ordering::Less)
        );
        for bad in ["", "abc", "x:1.0", "1.0-1/2", "1.0-a_b"] {
            assert_eq!(compare("apt", bad, "1.0"), None, "{bad:?}");
        }
        let fixed = set("<< 3.0.11-1");
        assert!(fixed.contains("apt", "3.0.10-1+deb12u3"));
        assert!(fixed.contains("apt", "3.0.11-1~deb12u1"));
        assert!(!fixed.contains("apt", "3.0.11-1"));
        assert!(set(">> 1.0").contains("apt", "1.0-1"));
    }
}
