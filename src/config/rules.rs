//! `[[rule]]`: quick keyword/regex rules in the config (compiled by `policy::rules`).
use serde::Deserialize;

/// What a rule does when it matches.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum RuleAction {
    /// Redact the event (drop the EDU).
    Redact,
    /// Hold for review (`proxy::hold`).
    Hold,
    /// Single-event endpoints: refuse with 403. In a transaction: redact.
    Reject,
    /// EDUs: drop. PDUs: redact.
    Drop,
}

/// One `[[rule]]` of the config.
#[derive(Debug, Clone, PartialEq, Eq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RuleConfig {
    pub id: String,
    #[serde(default)]
    pub description: String,
    /// Literal, case-sensitive keywords.
    #[serde(default)]
    pub keywords: Vec<String>,
    /// A regular expression (Rust `regex` syntax).
    #[serde(default)]
    pub regex: Option<String>,
    /// Content keys to look at (at any depth); empty = every string in `content`.
    #[serde(default)]
    pub fields: Vec<String>,
    /// Directions the rule applies to; empty = both.
    #[serde(default)]
    pub directions: Vec<RuleDirection>,
    pub action: RuleAction,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum RuleDirection {
    Inbound,
    Outbound,
}

impl RuleConfig {
    /// What is wrong with this rule on its own (no keywords and no regex, a regex that does not
    /// compile in normalised form), for `grenzwacht check`.
    pub fn problem(&self) -> Option<String> {
        if self.keywords.is_empty() && self.regex.is_none() {
            return Some("needs `keywords` or `regex`".into());
        }
        let re = crate::text::normalize(self.regex.as_deref()?);
        regex::Regex::new(&re)
            .err()
            .map(|e| format!("invalid regex: {e}"))
    }
}
