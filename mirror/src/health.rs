//! Each upstream's health, for the operator: whether its last exchange succeeded, how long
//! exchanges take, its recent errors, and whether stale copies are being served because of it.
//! Fed by every upstream request the engine makes (documents and files) and by each stale
//! document served; kept in memory, bounded (a few errors per upstream, upstreams are
//! configuration).

use std::collections::{BTreeMap, VecDeque};
use std::sync::Mutex;
use std::time::Duration;

/// Errors kept per upstream.
pub const RECENT_ERRORS: usize = 10;
/// Upstreams tracked at most (they come from configuration; this only bounds a mistake).
const MAX_UPSTREAMS: usize = 256;
/// Longest error text kept.
const MAX_ERROR: usize = 500;
/// Weight of the newest latency in the moving average.
const LATENCY_WEIGHT: f64 = 0.2;

/// What one upstream request came to.
pub enum Outcome<'a> {
    /// An answer, whatever its status.
    Answered(http::StatusCode),
    /// No answer: the error, as the log gives it.
    Failed(&'a str),
}

/// One upstream's record.
#[derive(Clone, Debug, Default, serde::Serialize)]
pub struct UpstreamHealth {
    pub ecosystem: String,
    /// The upstream as shown to operators (no credentials).
    pub upstream: String,
    /// `up` (its last exchange was answered below 500), `down`, or `unknown` (not asked yet).
    pub state: &'static str,
    pub requests: u64,
    /// Requests that got no answer or a 5xx.
    pub errors: u64,
    /// The last exchange's time to its answer, in milliseconds.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub last_latency_ms: Option<f64>,
    /// A moving average of the time to an answer, in milliseconds.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub average_latency_ms: Option<f64>,
    /// Milliseconds since the Unix epoch of the last answer below 500.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub last_ok_ms: Option<u64>,
    /// Stale documents served because this upstream could not be asked or did not answer.
    pub stale_served: u64,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub last_stale_ms: Option<u64>,
    /// The latest errors, newest first.
    pub recent_errors: VecDeque<UpstreamError>,
}

/// One failed exchange.
#[derive(Clone, Debug, serde::Serialize)]
pub struct UpstreamError {
    pub at_ms: u64,
    pub error: String,
}

/// Every upstream's record, by ecosystem and upstream.
#[derive(Default)]
pub struct Health {
    upstreams: Mutex<BTreeMap<(String, String), UpstreamHealth>>,
}

impl Health {
    fn with(&self, ecosystem: &str, upstream: &str, f: impl FnOnce(&mut UpstreamHealth)) {
        let mut all = self
            .upstreams
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner);
        let key = (ecosystem.to_owned(), upstream.to_owned());
        if !all.contains_key(&key) && all.len() >= MAX_UPSTREAMS {
            return;
        }
        let entry = all.entry(key).or_insert_with(|| UpstreamHealth {
            ecosystem: ecosystem.to_owned(),
            upstream: upstream.to_owned(),
            state: "unknown",
            ..UpstreamHealth::default()
        });
        f(entry);
    }

    /// Record one request to `upstream` of `ecosystem` that took `took`.
    pub fn observe(&self, ecosystem: &str, upstream: &str, took: Duration, outcome: Outcome<'_>) {
        let now = now_ms();
        let ms = took.as_secs_f64() * 1000.0;
        self.with(ecosystem, upstream, |h| {
            h.requests += 1;
            let error = match outcome {
                Outcome::Answered(status) if status.is_server_error() => {
                    Some(format!("answered {status}"))
                }
                Outcome::Answered(_) => None,
                Outcome::Failed(why) => Some(why.to_owned()),
            };
            match error {
                None => {
                    h.state = "up";
                    h.last_ok_ms = Some(now);
                    h.last_latency_ms = Some(ms);
                    h.average_latency_ms = Some(match h.average_latency_ms {
                        Some(avg) => avg + LATENCY_WEIGHT * (ms - avg),
                        None => ms,
                    });
                }
                Some(mut error) => {
                    h.state = "down";
                    h.errors += 1;
                    if error.len() > MAX_ERROR {
                        let mut end = MAX_ERROR;
                        while !error.is_char_boundary(end) {
                            end -= 1;
                        }
                        error.truncate(end);
                        error.push('…');
                    }
                    if h.recent_errors.len() == RECENT_ERRORS {
                        h.recent_errors.pop_back();
                    }
                    h.recent_errors
                        .push_front(UpstreamError { at_ms: now, error });
                }
            }
        });
    }

    /// Record a stale document served because `upstream` of `ecosystem` could not refresh it.
    pub fn stale_served(&self, ecosystem: &str, upstream: &str) {
        let now = now_ms();
        self.with(ecosystem, upstream, |h| {
            h.stale_served += 1;
            h.last_stale_ms = Some(now);
        });
    }

    /// Every upstream's record, by ecosystem.
    pub fn report(&self) -> Vec<UpstreamHealth> {
        self.upstreams
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
            .values()
            .cloned()
            .collect()
    }
}

fn now_ms() -> u64 {
    u64::try_from(crate::engine::now_ms()).unwrap_or(0)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn answers_errors_and_stale_copies_are_recorded_and_bounded() {
        let health = Health::default();
        let ms = Duration::from_millis;
        health.observe(
            "npm",
            "http://a/",
            ms(100),
            Outcome::Answered(http::StatusCode::OK),
        );
        health.observe(
            "npm",
            "http://a/",
            ms(200),
            Outcome::Answered(http::StatusCode::NOT_FOUND),
        );
        let h = &health.report()[0];
        assert_eq!((h.state, h.requests, h.errors), ("up", 2, 0));
        assert_eq!(h.last_latency_ms, Some(200.0));
        assert!((h.average_latency_ms.expect("an average") - 120.0).abs() < 1e-9);

        for i in 0..RECENT_ERRORS + 3 {
            health.observe(
                "npm",
                "http://a/",
                ms(5),
                Outcome::Failed(&format!("refused {i}")),
            );
        }
        health.observe(
            "npm",
            "http://a/",
            ms(5),
            Outcome::Answered(http::StatusCode::BAD_GATEWAY),
        );
        health.stale_served("npm", "http://a/");
        let h = &health.report()[0];
        assert_eq!(h.state, "down");
        assert_eq!(h.errors, RECENT_ERRORS as u64 + 4);
        assert_eq!(h.recent_errors.len(), RECENT_ERRORS);
        assert_eq!(h.recent_errors[0].error, "answered 502 Bad Gateway");
        assert_eq!(
            h.recent_errors[1].error,
            format!("refused {}", RECENT_ERRORS + 2)
        );
        assert_eq!(h.stale_served, 1);
        assert_eq!(h.last_latency_ms, Some(200.0), "failures leave the latency");

        let long = "x".repeat(MAX_ERROR * 3);
        health.observe("pypi", "http://b/", ms(1), Outcome::Failed(&long));
        let report = health.report();
        assert_eq!(report.len(), 2);
        assert!(report[1].recent_errors[0].error.len() <= MAX_ERROR + 3);
        for i in 0..MAX_UPSTREAMS * 2 {
            health.stale_served("npm", &format!("http://{i}/"));
        }
        assert_eq!(health.report().len(), MAX_UPSTREAMS);
    }
}
