//! The registry as of an instant: `/as-of/INSTANT/MOUNT/…` serves each ecosystem as it stood
//! then, from publication times. A version published after the instant is left out of
//! documents and its files are refused (`403`, rule `as-of`), so a resolution through the view
//! gives the same versions later, whatever has been published since.
//!
//! Publication times are those the policy uses, as this node first saw them: a version added
//! to a document this node had read is dated no earlier than that sighting, so an upstream
//! cannot slip a backdated version into a past view. A version with no publication time is
//! in the view or not as the policy's `unknown-age` says. The view is on top of the policy,
//! never instead of it: what the policy refuses, the view refuses too.

use crate::ecosystem::time::{format_rfc3339, parse_rfc3339};
use crate::index::ecosystem_family;

use super::{Refusal, UnknownAge};

/// The path segment before the instant.
pub const PREFIX: &str = "as-of";

/// The ecosystems whose registries date every version, and so have a view (apt archives date
/// a whole release, not the packages in it).
pub const DATED: [&str; 3] = ["npm", "cargo", "pypi"];

/// An instant a view is of.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct AsOf {
    /// Milliseconds since the epoch.
    pub instant: i64,
    /// Its canonical spelling (`2026-08-19T12:00:00Z`), the one rendered URLs carry.
    pub text: String,
}

impl AsOf {
    /// Read the instant of a view: RFC 3339 (`2026-08-19T12:00:00Z`, an offset, fractions of a
    /// second) or a date (`2026-08-19`, its first instant in UTC). An instant after `now` is
    /// refused: the view of a future instant would change as versions are published.
    pub fn parse(text: &str, now: i64) -> Result<AsOf, String> {
        let instant = if text.len() == 10 {
            parse_rfc3339(&format!("{text}T00:00:00Z"))
        } else {
            parse_rfc3339(text)
        }
        .ok_or_else(|| {
            format!(
                "as-of {text:?}: expected an instant (2026-08-19T12:00:00Z) or a date (2026-08-19)"
            )
        })?;
        if instant > now {
            return Err(format!(
                "as-of {text:?} is in the future (now is {}): a view of it would change as \
                 versions are published",
                format_rfc3339(now)
            ));
        }
        // Whole seconds: the spelling rendered URLs carry names the same instant.
        let instant = instant - instant.rem_euclid(1000);
        Ok(AsOf {
            instant,
            text: format_rfc3339(instant),
        })
    }

    /// The refusal of `name@version` of `ecosystem`, published at `published` (ms), in this
    /// view: published after the instant, or of unknown age where `unknown_age` denies.
    pub fn decide(
        &self,
        ecosystem: &str,
        name: &str,
        version: Option<&str>,
        published: Option<i64>,
        unknown_age: UnknownAge,
    ) -> Option<Refusal> {
        let family = ecosystem_family(ecosystem);
        let what = super::package_text(family, name, version);
        let reason = match published {
            Some(published) if published > self.instant => format!(
                "{what} is not in the view as of {}: published {}",
                self.text,
                format_rfc3339(published)
            ),
            None if unknown_age == UnknownAge::Deny => format!(
                "{what} is not in the view as of {}: its publication time is unknown \
                 (unknown-age = \"deny\")",
                self.text
            ),
            _ => return None,
        };
        Some(Refusal {
            rule: "as-of",
            reason,
            until: None,
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const NOW: i64 = 1_790_000_000_000;

    #[test]
    fn instants_and_dates_read_to_one_canonical_spelling() {
        for (text, canonical) in [
            ("2026-08-19T12:00:00Z", "2026-08-19T12:00:00Z"),
            ("2026-08-19T12:00:00.750Z", "2026-08-19T12:00:00Z"),
            ("2026-08-19T14:00:00+02:00", "2026-08-19T12:00:00Z"),
            ("2026-08-19", "2026-08-19T00:00:00Z"),
        ] {
            let as_of = AsOf::parse(text, NOW).expect(text);
            assert_eq!(as_of.text, canonical, "{text}");
            assert_eq!(AsOf::parse(&as_of.text, NOW), Ok(as_of));
        }
        for bad in [
            "",
            "yesterday",
            "2026-13-01",
            "2026-08-19T12:00",
            "../npm",
            "2026-08-1",
        ] {
            let err = AsOf::parse(bad, NOW).expect_err(bad);
            assert!(err.contains("expected an instant"), "{bad}: {err}");
        }
        let future = AsOf::parse("2099-01-01", NOW).expect_err("future");
        assert!(future.contains("in the future"), "{future}");
    }

    #[test]
    fn versions_published_after_the_instant_are_not_in_the_view() {
        let as_of = AsOf::parse("2026-08-19T12:00:00Z", NOW).expect("as-of");
        let at = as_of.instant;
        let allow = UnknownAge::Allow;
        assert_eq!(
            as_of.decide("npm", "axios", Some("1.0.0"), Some(at), allow),
            None
        );
        let late = as_of
            .decide("cargo/corp", "serde", Some("2.0.0"), Some(at + 1000), allow)
            .expect("after the instant");
        assert_eq!(late.rule, "as-of");
        assert_eq!(
            late.reason,
            "cargo:serde@2.0.0 is not in the view as of 2026-08-19T12:00:00Z: published \
             2026-08-19T12:00:01Z"
        );
        assert_eq!(as_of.decide("pypi", "x", Some("1"), None, allow), None);
        let unknown = as_of
            .decide("pypi", "x", Some("1"), None, UnknownAge::Deny)
            .expect("unknown age denied");
        assert!(unknown.reason.contains("unknown"), "{}", unknown.reason);
    }
}
