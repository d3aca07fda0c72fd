//! `[notices]`: telling a protected user that their event did not cross as sent
//! (`proxy::notices`). Off by default.
//!
//! ```toml
//! [notices]
//! enabled = true
//! # which outcomes are told: "redacted", "held", "rejected", "released"
//! outcomes = ["redacted", "held", "rejected"]
//! # rule ids in the notice help a user understand — and an insider probe the rules
//! include_rule_ids = false
//! # "de" or "en"
//! language = "de"
//! # notices one sender may get per minute (beyond: counted and not sent)
//! per_sender_per_minute = 10
//! ```
//!
//! The notice goes through the protected homeserver's admin API (`[[protected]] admin_api`
//! and `admin_token_file`, Synapse's server notices: the homeserver needs `server_notices`
//! configured); a protected server without an admin API gets no notices (`grenzwacht check`
//! reports it).
use serde::Deserialize;

/// What happened to an event, as far as its sender is told.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum NoticeOutcome {
    /// Redacted in transit: the receivers got the event without its content.
    Redacted,
    /// Held for review: not delivered yet.
    Held,
    /// Rejected by a reviewer: delivered redacted.
    Rejected,
    /// Released by a reviewer: delivered as sent.
    Released,
}

impl NoticeOutcome {
    pub fn as_str(self) -> &'static str {
        match self {
            NoticeOutcome::Redacted => "redacted",
            NoticeOutcome::Held => "held",
            NoticeOutcome::Rejected => "rejected",
            NoticeOutcome::Released => "released",
        }
    }
}

/// Language of the notice texts.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Language {
    #[default]
    De,
    En,
}

/// `[notices]`
#[derive(Debug, Clone, PartialEq, Eq, Deserialize)]
#[serde(default)]
pub struct NoticesConfig {
    /// Send notices at all (default `false`).
    pub enabled: bool,
    /// Outcomes that are told (default: redacted, held, rejected).
    pub outcomes: Vec<NoticeOutcome>,
    /// Name the rule ids in the notice (default `false`).
    pub include_rule_ids: bool,
    pub language: Language,
    /// Notices per sender and minute (default 10; at least 1).
    pub per_sender_per_minute: u32,
}

impl Default for NoticesConfig {
    fn default() -> Self {
        Self {
            enabled: false,
            outcomes: vec![
                NoticeOutcome::Redacted,
                NoticeOutcome::Held,
                NoticeOutcome::Rejected,
            ],
            include_rule_ids: false,
            language: Language::De,
            per_sender_per_minute: 10,
        }
    }
}

impl NoticesConfig {
    /// Problems as `(key, message)`.
    pub fn check(&self) -> Vec<(&'static str, String)> {
        let mut out = Vec::new();
        if self.per_sender_per_minute == 0 {
            out.push((
                "per_sender_per_minute",
                "`notices.per_sender_per_minute` must be at least 1".to_string(),
            ));
        }
        out
    }

    /// Whether `outcome` is told.
    pub fn tells(&self, outcome: NoticeOutcome) -> bool {
        self.enabled && self.outcomes.contains(&outcome)
    }
}
