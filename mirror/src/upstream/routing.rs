//! Which of an ecosystem's upstreams a package goes to. Besides its main upstream, an ecosystem
//! may have routed ones (a private npm scope's registry, a private PyPI index), each taking
//! the packages whose names match its patterns. The choice is exclusive: a name a pattern
//! matches is looked up on that upstream only, never on the main one, and a name no pattern
//! matches never reaches a routed upstream. So a package published on a public registry under
//! a private name can never stand in for the private one (dependency confusion).
//!
//! A pattern is a package name in which `*` stands for any run of characters (`@corp/*`,
//! `corp-*`). Names are matched as the ecosystem's metadata keys spell them (npm's package
//! name, PyPI's normalised project name): whoever builds the patterns normalises them the same
//! way.

/// The longest pattern accepted.
const MAX_PATTERN: usize = 214;

/// A checked routing pattern.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Pattern(String);

impl Pattern {
    /// `text` as a pattern: printable ASCII without spaces, at most 214 characters, and not `*`
    /// alone (a route that takes every name is the main upstream).
    pub fn new(text: &str) -> Result<Pattern, String> {
        if text.is_empty() || text.len() > MAX_PATTERN {
            return Err(format!(
                "routing pattern {text:?} must have 1 to {MAX_PATTERN} characters"
            ));
        }
        if !text.bytes().all(|b| b.is_ascii_graphic()) {
            return Err(format!(
                "routing pattern {text:?} may only hold printable ASCII without spaces"
            ));
        }
        if text.bytes().all(|b| b == b'*') {
            return Err(format!(
                "routing pattern {text:?} takes every name: make that upstream the main one"
            ));
        }
        Ok(Pattern(text.to_owned()))
    }

    pub fn as_str(&self) -> &str {
        &self.0
    }

    /// True when `name` matches: the pattern's literal runs appear in order, the first at the
    /// start and the last at the end, `*` taking whatever lies between.
    pub fn matches(&self, name: &str) -> bool {
        let mut parts = self.0.split('*');
        let first = parts.next().unwrap_or("");
        let Some(mut rest) = name.strip_prefix(first) else {
            return false;
        };
        let parts: Vec<&str> = parts.collect();
        let Some((last, middle)) = parts.split_last() else {
            // No `*`: the whole name.
            return rest.is_empty();
        };
        for part in middle {
            match rest.find(part) {
                Some(at) => rest = &rest[at + part.len()..],
                None => return false,
            }
        }
        rest.len() >= last.len() && rest.ends_with(last)
    }
}

impl std::fmt::Display for Pattern {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(&self.0)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn matches(pattern: &str, name: &str) -> bool {
        Pattern::new(pattern).expect("pattern").matches(name)
    }

    #[test]
    fn stars_take_any_run_and_literals_must_line_up() {
        assert!(matches("@corp/*", "@corp/x"));
        assert!(matches("@corp/*", "@corp/"));
        assert!(!matches("@corp/*", "@corpx/x"));
        assert!(!matches("@corp/*", "x@corp/x"));
        assert!(matches("corp-*", "corp-tools"));
        assert!(!matches("corp-*", "notcorp-tools"));
        assert!(matches("*-internal", "billing-internal"));
        assert!(!matches("*-internal", "billing-internal-x"));
        assert!(matches("corp-*-lib", "corp-a-lib"));
        assert!(matches("corp-*-lib", "corp--lib"));
        assert!(!matches("corp-*-lib", "corp-lib"));
        assert!(matches("a*b*c", "axxbyyc"));
        assert!(!matches("a*b*c", "axxcyyb"));
        assert!(matches("exact", "exact"));
        assert!(!matches("exact", "exactly"));
        assert!(matches("*x*", "x"));
    }

    #[test]
    fn patterns_that_take_everything_or_hold_odd_characters_are_refused() {
        for bad in ["", "*", "**", "a b", "caf\u{e9}", &"a".repeat(215)] {
            assert!(Pattern::new(bad).is_err(), "{bad:?}");
        }
    }
}
