//! YARA-X rules (stub; owner: helper "yara").
use std::time::Duration;

/// Compiled YARA-X rules.
pub struct YaraRules {}

/// One matching rule.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct YaraHit {
    /// `namespace.rule`
    pub rule: String,
}

#[derive(Debug, thiserror::Error)]
pub enum YaraScanError {
    #[error("scan timed out")]
    Timeout,
    #[error("scan failed: {0}")]
    Failed(String),
}

impl YaraRules {
    pub fn scan(&self, bytes: &[u8], timeout: Duration) -> Result<Vec<YaraHit>, YaraScanError> {
        let _ = (bytes, timeout);
        Ok(Vec::new())
    }
}
