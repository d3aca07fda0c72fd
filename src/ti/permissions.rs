//! Invite permissions (`de.gematik.tim.account.permissionconfig.{pro,epa}.v1`) and the invite
//! decision. Owner: helper `ti-client`.
use super::list::FederationList;
use super::TiDenial;
use crate::config::ti::TiVariant;

/// A user's permission config, parsed leniently.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct PermissionConfig {}

impl PermissionConfig {
    /// Parses the account data content.
    pub fn parse(_content: &serde_json::Value) -> Result<PermissionConfig, String> {
        Err("not implemented".into())
    }
}

/// Whether `inviter` may invite `invitee` under `config` (`None`: the user has none).
pub fn decide(
    _variant: TiVariant,
    _config: Option<&PermissionConfig>,
    inviter: &str,
    invitee: &str,
    _list: &FederationList,
) -> Result<(), TiDenial> {
    Err(TiDenial::InviteRefused {
        inviter: inviter.to_owned(),
        invitee: invitee.to_owned(),
    })
}
