//! Protected users' invite permission configs through the homeserver's admin API.
//!
//! For each `[[ti.homeserver]]` the reader holds the `admin_url`; the token of
//! `admin_token_file` is read at each lookup (it may be provisioned after the guard starts, as
//! for `[[protected]] admin_token_file`; unreadable → that lookup fails closed). A user's config is
//! `GET {admin_url}/_synapse/admin/v1/users/{user_id, percent-encoded}/accountdata` with the
//! token as bearer, then `account_data.global["de.gematik.tim.account.permissionconfig.pro.v1"]`
//! (`….epa.v1` with `[ti] variant = "epa"`): present → [`PermissionConfig::parse`]; absent →
//! `None`. Fail closed: a user of no configured homeserver, an HTTP error status, a timeout
//! (connect 2 s, total 5 s), an answer over 4 MiB, an answer that is not the expected JSON, or
//! a config that does not parse is an error. Answers (also "none") are cached per user for
//! `permission_cache_secs`, at most [`CACHE_CAPACITY`] users (the oldest entry is evicted
//! first); errors are not cached.
use std::collections::HashMap;
use std::sync::Mutex;
use std::time::{Duration, Instant};

use super::keeper::client;
use super::permissions::PermissionConfig;
use crate::config::ti::TiConfig;

/// Users whose answer is cached at most.
pub const CACHE_CAPACITY: usize = 10_000;
const LIMITS: client::Limits = client::Limits {
    connect: Duration::from_secs(2),
    total: Duration::from_secs(5),
    max_body: 4 * 1024 * 1024,
};

/// Reading a permission config failed.
#[derive(Debug, thiserror::Error)]
pub enum AccountDataError {
    #[error("{0}")]
    Unreadable(String),
    /// A `[[ti.homeserver]]` entry cannot be used (URL, token file).
    #[error("{0}")]
    Setup(String),
}

struct Admin {
    server_name: String,
    target: client::Target,
    token_file: std::path::PathBuf,
}

struct Cached {
    at: Instant,
    config: Option<PermissionConfig>,
}

/// Reads (and briefly caches) permission configs.
pub struct AccountDataReader {
    homeservers: Vec<Admin>,
    account_type: &'static str,
    ttl: Duration,
    limits: client::Limits,
    cache: Mutex<HashMap<String, Cached>>,
}

impl AccountDataReader {
    pub fn new(cfg: &TiConfig) -> Result<AccountDataReader, AccountDataError> {
        let mut homeservers = Vec::new();
        for (i, h) in cfg.homeserver.iter().enumerate() {
            let target = client::Target::parse(&h.admin_url, None, false).map_err(|e| {
                AccountDataError::Setup(format!("ti.homeserver.{i}.admin_url: {e}"))
            })?;
            homeservers.push(Admin {
                server_name: h.server_name.clone(),
                target,
                token_file: h.admin_token_file.clone(),
            });
        }
        Ok(AccountDataReader {
            homeservers,
            account_type: cfg.variant.account_data_type(),
            ttl: Duration::from_secs(cfg.permission_cache_secs),
            limits: LIMITS,
            cache: Mutex::new(HashMap::new()),
        })
    }

    /// The user's permission config; `None` when the user has none.
    pub async fn permission_config(
        &self,
        user_id: &str,
    ) -> Result<Option<PermissionConfig>, AccountDataError> {
        let server = crate::federation::server_name::split_user_id(user_id)
            .map(|(_, s)| s)
            .ok_or_else(|| AccountDataError::Unreadable(format!("`{user_id}` is not a user ID")))?;
        let admin = self
            .homeservers
            .iter()
            .find(|h| h.server_name.eq_ignore_ascii_case(server))
            .ok_or_else(|| {
                AccountDataError::Unreadable(format!(
                    "{server} is not a [[ti.homeserver]]: no permission config for {user_id}"
                ))
            })?;
        if let Some(hit) = self.cached(user_id) {
            return Ok(hit);
        }
        let config = self.fetch(admin, user_id).await?;
        self.remember(user_id, config.clone());
        Ok(config)
    }

    fn cached(&self, user_id: &str) -> Option<Option<PermissionConfig>> {
        let cache = self.cache.lock().unwrap_or_else(|p| p.into_inner());
        cache
            .get(user_id)
            .filter(|c| c.at.elapsed() < self.ttl)
            .map(|c| c.config.clone())
    }

    fn remember(&self, user_id: &str, config: Option<PermissionConfig>) {
        if self.ttl.is_zero() {
            return;
        }
        let mut cache = self.cache.lock().unwrap_or_else(|p| p.into_inner());
        if cache.len() >= CACHE_CAPACITY && !cache.contains_key(user_id) {
            cache.retain(|_, c| c.at.elapsed() < self.ttl);
            while cache.len() >= CACHE_CAPACITY {
                let oldest = cache
                    .iter()
                    .min_by_key(|(_, c)| c.at)
                    .map(|(k, _)| k.clone());
                match oldest {
                    Some(k) => cache.remove(&k),
                    None => break,
                };
            }
        }
        cache.insert(
            user_id.to_owned(),
            Cached {
                at: Instant::now(),
                config,
            },
        );
    }

    async fn fetch(
        &self,
        admin: &Admin,
        user_id: &str,
    ) -> Result<Option<PermissionConfig>, AccountDataError> {
        let unreadable = |what: String| {
            AccountDataError::Unreadable(format!(
                "permission config of {user_id} via {}: {what}",
                admin.target.authority()
            ))
        };
        let path = format!(
            "{}/_synapse/admin/v1/users/{}/accountdata",
            admin.target.base().trim_end_matches('/'),
            client::encode_segment(user_id)
        );
        let token = super::keeper::read_token(&admin.token_file)
            .map_err(|e| unreadable(format!("admin token: {e}")))?;
        let (status, body) = admin
            .target
            .get(&path, Some(&token), self.limits)
            .await
            .map_err(|e| unreadable(e.to_string()))?;
        if status != ::http::StatusCode::OK {
            return Err(unreadable(format!(
                "the admin API answered {}",
                status.as_u16()
            )));
        }
        let doc: serde_json::Value = serde_json::from_slice(&body)
            .map_err(|_| unreadable("the answer is not JSON".into()))?;
        let global = doc
            .get("account_data")
            .and_then(|a| a.get("global"))
            .and_then(|g| g.as_object())
            .ok_or_else(|| unreadable("the answer has no `account_data.global` object".into()))?;
        match global.get(self.account_type) {
            None => Ok(None),
            Some(content) => PermissionConfig::parse(content)
                .map(Some)
                .map_err(|e| unreadable(format!("{}: {e}", self.account_type))),
        }
    }
}

#[cfg(test)]
mod tests;
