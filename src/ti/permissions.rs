//! Invite permissions (`de.gematik.tim.account.permissionconfig.{pro,epa}.v1`) and the invite
//! decision.
//!
//! # The config
//!
//! The account data content (gematik `api-ti-messenger`, `src/schema/TI-M_Pro/permissionConfig_V1.json`
//! and `TI-M_ePA/permissionConfig_V1.json`):
//!
//! ```json
//! {"defaultSetting": "allow all" | "block all",
//!  "serverExceptions": {"<server name>": {}},
//!  "userExceptions": {"@<localpart>:<server name>": {}},
//!  "groupExceptions": [{"groupName": "isInsuredPerson"}]}
//! ```
//!
//! [`PermissionConfig::parse`] reads it leniently where leniency cannot open a door: unknown
//! keys are ignored, the values of `serverExceptions` / `userExceptions` entries (empty objects
//! "for future enhancement") are not looked at, `groupExceptions` items that are not objects
//! with a known `groupName` are ignored. It refuses (an error: the caller fails closed) what it
//! cannot read without guessing: content that is not an object, a `defaultSetting` that is not
//! one of the two strings, exception fields of the wrong JSON type (an ignored exception list
//! could turn "block these" into "allow everyone"). A missing or `null` `defaultSetting` is read
//! as `"allow all"`, as `famedly/synapse-invite-checker` does for an incomplete config.
//!
//! # A user without a config
//!
//! Both reference implementations give a user who has no permission config the operator's
//! default config, which by default is `{"defaultSetting": "allow all"}` without exceptions
//! (`famedly/synapse-invite-checker` writes its configured default template into the user's
//! account data; `tim-ref/messenger-proxy` writes its `inviteRejectionPolicy`, default
//! `ALLOW_ALL`). [`decide`] does the same with `config: None`: allow all, no exceptions (the ePA
//! rule between insured persons still applies). Whether a config exists is the admin API
//! reader's answer (`ti::accountdata`); a config that cannot be read is refused before
//! [`decide`] is called.
//!
//! # The decision
//!
//! The default (`allow all` / `block all`) is flipped once if any exception matches the
//! inviter (as in `famedly/synapse-invite-checker`; two matching exceptions do not flip it
//! back):
//! * `userExceptions` names the inviter's MXID (localpart exact, server name case-insensitive,
//!   port included: `@a:hs2:8448` is another user than `@a:hs2`, so an exception allows no
//!   one it does not name);
//! * `serverExceptions` names the inviter's domain (the same comparison, [`domain_of`]);
//! * `groupExceptions` has `isInsuredPerson` and the inviter's domain is on the federation list
//!   with `isInsurance`.
//!
//! In the ePA variant an invite whose inviter's and invitee's domains both have `isInsurance`
//! is refused first ([`TiDenial::InsuredToInsured`]), whatever the config says.
use std::collections::HashSet;

use super::list::{domain_of, FederationList};
use super::TiDenial;
use crate::config::ti::TiVariant;
use crate::federation::server_name::split_user_id;

/// `defaultSetting`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum DefaultSetting {
    /// `"allow all"`: exceptions block.
    #[default]
    AllowAll,
    /// `"block all"`: exceptions allow.
    BlockAll,
}

/// A group named in `groupExceptions`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Group {
    /// `isInsuredPerson`: inviters whose domain has `isInsurance` on the federation list.
    InsuredPerson,
}

/// A user's permission config, parsed leniently (see the module notes).
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct PermissionConfig {
    pub default_setting: DefaultSetting,
    /// `serverExceptions` keys, normalised by [`domain_of`].
    pub server_exceptions: HashSet<String>,
    /// `userExceptions` keys, normalised by [`normalize_mxid`] (keys that are no MXID are
    /// dropped: they cannot match an inviter).
    pub user_exceptions: HashSet<String>,
    /// Known groups of `groupExceptions`.
    pub group_exceptions: HashSet<Group>,
}

impl PermissionConfig {
    /// Parses the account data content.
    pub fn parse(content: &serde_json::Value) -> Result<PermissionConfig, String> {
        let obj = content
            .as_object()
            .ok_or("permission config is not a JSON object")?;
        let default_setting = match obj.get("defaultSetting") {
            None | Some(serde_json::Value::Null) => DefaultSetting::AllowAll,
            Some(serde_json::Value::String(s)) if s == "allow all" => DefaultSetting::AllowAll,
            Some(serde_json::Value::String(s)) if s == "block all" => DefaultSetting::BlockAll,
            Some(_) => {
                return Err("defaultSetting is neither \"allow all\" nor \"block all\"".into())
            }
        };
        let keys = |field: &str| -> Result<Vec<String>, String> {
            match obj.get(field) {
                None | Some(serde_json::Value::Null) => Ok(Vec::new()),
                Some(serde_json::Value::Object(m)) => Ok(m.keys().cloned().collect()),
                Some(_) => Err(format!("{field} is not a JSON object")),
            }
        };
        let server_exceptions = keys("serverExceptions")?
            .iter()
            .map(|s| domain_of(s))
            .collect();
        let user_exceptions = keys("userExceptions")?
            .iter()
            .filter_map(|u| normalize_mxid(u))
            .collect();
        let group_exceptions = match obj.get("groupExceptions") {
            None | Some(serde_json::Value::Null) => HashSet::new(),
            Some(serde_json::Value::Array(items)) => items
                .iter()
                .filter_map(|i| i.get("groupName")?.as_str())
                .filter_map(|g| match g {
                    "isInsuredPerson" => Some(Group::InsuredPerson),
                    _ => None,
                })
                .collect(),
            Some(_) => return Err("groupExceptions is not a JSON array".into()),
        };
        Ok(PermissionConfig {
            default_setting,
            server_exceptions,
            user_exceptions,
            group_exceptions,
        })
    }
}

/// An MXID for comparison: `@localpart:server` with the localpart as written and the server
/// name in lower case (the port stays). `None` if it is no MXID.
pub fn normalize_mxid(mxid: &str) -> Option<String> {
    let (local, server) = split_user_id(mxid)?;
    Some(format!("@{local}:{}", server.to_ascii_lowercase()))
}

/// Whether `inviter` may invite `invitee` under `config` (`None`: the user has none, which
/// reads as "allow all" — see the module notes). `list` answers `isInsurance`.
pub fn decide(
    variant: TiVariant,
    config: Option<&PermissionConfig>,
    inviter: &str,
    invitee: &str,
    list: &FederationList,
) -> Result<(), TiDenial> {
    decide_with(variant, config, inviter, invitee, |server| {
        list.lookup(server).is_some_and(|e| e.is_insurance)
    })
}

/// [`decide`] with `is_insurance(server name)` in place of the list.
pub fn decide_with(
    variant: TiVariant,
    config: Option<&PermissionConfig>,
    inviter: &str,
    invitee: &str,
    is_insurance: impl Fn(&str) -> bool,
) -> Result<(), TiDenial> {
    let refused = || TiDenial::InviteRefused {
        inviter: inviter.to_owned(),
        invitee: invitee.to_owned(),
    };
    // An inviter that is no MXID matches no exception and names no domain: refused.
    let Some((_, inviter_server)) = split_user_id(inviter) else {
        return Err(refused());
    };
    let inviter_insured = is_insurance(inviter_server);
    if variant == TiVariant::Epa && inviter_insured {
        if let Some((_, invitee_server)) = split_user_id(invitee) {
            if is_insurance(invitee_server) {
                return Err(TiDenial::InsuredToInsured);
            }
        }
    }
    let default_cfg = PermissionConfig::default();
    let cfg = config.unwrap_or(&default_cfg);
    let excepted = normalize_mxid(inviter).is_some_and(|m| cfg.user_exceptions.contains(&m))
        || cfg.server_exceptions.contains(&domain_of(inviter_server))
        || (inviter_insured && cfg.group_exceptions.contains(&Group::InsuredPerson));
    let allowed = match cfg.default_setting {
        DefaultSetting::AllowAll => !excepted,
        DefaultSetting::BlockAll => excepted,
    };
    if allowed {
        Ok(())
    } else {
        Err(refused())
    }
}

#[cfg(test)]
mod tests;
