//! The node's recent refusals, for the operator: files refused because their bytes did not
//! match the registry's digest (from upstream or from peers) and requests the supply-chain
//! policy refused, each with its reason, newest first. A bounded ring in memory
//! ([`RECENT_REFUSALS`]); the log and `/metrics` keep the full record.

use std::collections::VecDeque;
use std::sync::Mutex;

/// How many refusals are kept.
pub const RECENT_REFUSALS: usize = 200;

/// Longest reason kept (reasons quote upstream answers, which can be long).
const MAX_REASON: usize = 1000;

/// One refusal.
#[derive(Clone, Debug, PartialEq, Eq, serde::Serialize)]
pub struct Refused {
    /// When, RFC 3339.
    pub at: String,
    /// `digest` (upstream's bytes did not match), `peer-digest` (peers' bytes did not), or
    /// `policy`.
    pub kind: &'static str,
    /// For `policy`, the rule (`min-age`, `deny`, …).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub rule: Option<&'static str>,
    pub ecosystem: String,
    /// The file's key.
    pub key: String,
    pub reason: String,
}

/// The ring.
#[derive(Default)]
pub struct Refusals {
    recent: Mutex<VecDeque<Refused>>,
}

impl Refusals {
    /// Keep `refused`, dropping the oldest beyond [`RECENT_REFUSALS`].
    pub fn push(&self, mut refused: Refused) {
        if refused.reason.len() > MAX_REASON {
            let mut end = MAX_REASON;
            while !refused.reason.is_char_boundary(end) {
                end -= 1;
            }
            refused.reason.truncate(end);
            refused.reason.push('…');
        }
        let mut recent = self
            .recent
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner);
        if recent.len() == RECENT_REFUSALS {
            recent.pop_back();
        }
        recent.push_front(refused);
    }

    /// The refusals kept, newest first.
    pub fn recent(&self) -> Vec<Refused> {
        self.recent
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
            .iter()
            .cloned()
            .collect()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn newest_first_bounded_and_reasons_cut() {
        let refusals = Refusals::default();
        for i in 0..(RECENT_REFUSALS + 5) {
            refusals.push(Refused {
                at: String::new(),
                kind: "digest",
                rule: None,
                ecosystem: "npm".into(),
                key: format!("k{i}"),
                reason: "é".repeat(600),
            });
        }
        let recent = refusals.recent();
        assert_eq!(recent.len(), RECENT_REFUSALS);
        assert_eq!(recent[0].key, format!("k{}", RECENT_REFUSALS + 4));
        assert!(recent[0].reason.len() <= MAX_REASON + '…'.len_utf8());
        assert!(recent[0].reason.ends_with('…'));
    }
}
