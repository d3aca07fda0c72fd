//! `[review]`: review of held events (`proxy::hold`): four-eyes, the review timeout and its
//! default decision, content previews for reviewers, and the backoff of the guard's own
//! delivery of held traffic.
//!
//! ```toml
//! [review]
//! # a release needs two different reviewers (a reject by one reviewer is final)
//! four_eyes = false
//! # a held event nobody decided within this many seconds gets `timeout_decision` (0 = never)
//! timeout_secs = 86400
//! timeout_decision = "reject"   # or "release"
//! # reviewers cleared for an event see its content
//! preview = true
//! # delivery of held traffic: retries back off from the first to the last delay, doubling
//! delivery_backoff_initial_ms = 1000
//! delivery_backoff_max_ms = 300000
//! ```
use serde::Deserialize;

/// The decision applied to a held event when the review timeout passes.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum TimeoutDecision {
    Release,
    Reject,
}

/// `[review]`
#[derive(Debug, Clone, PartialEq, Eq, Deserialize)]
#[serde(default)]
pub struct ReviewConfig {
    /// A release needs two different reviewers (default `false`). A reject by one reviewer is
    /// final: it lets nothing of the content cross.
    pub four_eyes: bool,
    /// Seconds a held event waits for a decision before `timeout_decision` applies
    /// (default 86 400 = one day; 0 = it waits for ever).
    pub timeout_secs: u64,
    /// Default decision at the timeout (default `reject`).
    pub timeout_decision: TimeoutDecision,
    /// Reviewers cleared for an event see its content (default `true`).
    pub preview: bool,
    /// First delay before a failed delivery of held traffic is retried (default 1 000 ms).
    pub delivery_backoff_initial_ms: u64,
    /// Longest delay between delivery attempts (default 300 000 ms = 5 min).
    pub delivery_backoff_max_ms: u64,
}

impl Default for ReviewConfig {
    fn default() -> Self {
        Self {
            four_eyes: false,
            timeout_secs: 86_400,
            timeout_decision: TimeoutDecision::Reject,
            preview: true,
            delivery_backoff_initial_ms: 1_000,
            delivery_backoff_max_ms: 300_000,
        }
    }
}

impl ReviewConfig {
    /// Checks within the section: `(key, message)`.
    pub fn check(&self) -> Vec<(&'static str, String)> {
        let mut out = Vec::new();
        if self.delivery_backoff_initial_ms == 0 {
            out.push((
                "delivery_backoff_initial_ms",
                "`review.delivery_backoff_initial_ms` must be greater than 0".into(),
            ));
        }
        if self.delivery_backoff_max_ms < self.delivery_backoff_initial_ms {
            out.push((
                "delivery_backoff_max_ms",
                "`review.delivery_backoff_max_ms` must be at least `delivery_backoff_initial_ms`"
                    .into(),
            ));
        }
        out
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn bounds_are_checked() {
        assert!(ReviewConfig::default().check().is_empty());
        let c = ReviewConfig {
            delivery_backoff_initial_ms: 0,
            ..Default::default()
        };
        assert_eq!(c.check()[0].0, "delivery_backoff_initial_ms");
        let c = ReviewConfig {
            delivery_backoff_max_ms: 10,
            ..Default::default()
        };
        assert_eq!(c.check()[0].0, "delivery_backoff_max_ms");
    }
}
