//! Protected users' invite permission configs through the homeserver's admin API.
//! Owner: helper `ti-keeper`.
use super::permissions::PermissionConfig;
use crate::config::ti::TiConfig;

/// Reading a permission config failed.
#[derive(Debug, thiserror::Error)]
pub enum AccountDataError {
    #[error("{0}")]
    Unreadable(String),
}

/// Reads (and briefly caches) permission configs.
pub struct AccountDataReader {}

impl AccountDataReader {
    pub fn new(_cfg: &TiConfig) -> Result<AccountDataReader, AccountDataError> {
        Ok(AccountDataReader {})
    }
    /// The user's permission config; `None` when the user has none.
    pub async fn permission_config(
        &self,
        _user_id: &str,
    ) -> Result<Option<PermissionConfig>, AccountDataError> {
        Err(AccountDataError::Unreadable("not implemented".into()))
    }
}
