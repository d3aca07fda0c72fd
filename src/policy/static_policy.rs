//! The configuration-driven policy: allow/deny per remote server and endpoint class.
use std::collections::HashSet;

use super::{
    Decision, Direction, EduVerdict, ExchangeCtx, PduVerdict, Policy, Refusal, RefusalReason,
};
use crate::config::PolicyConfig;
use crate::federation::pdu::{EduView, EventView, PduView};
use crate::federation::EndpointClass;

/// Allows everything except what the configuration refuses.
#[derive(Debug, Clone, Default)]
pub struct StaticPolicy {
    allow_servers: HashSet<String>,
    deny_servers: HashSet<String>,
    deny_inbound: HashSet<EndpointClass>,
    deny_outbound: HashSet<EndpointClass>,
    /// Extra EDU types from `[policy] allow_edu_types`.
    allow_edu_types: HashSet<String>,
}

/// EDU types the guard knows and lets through (their content is still judged by the
/// content layers): the server-server spec's EDUs and Synapse's unstable cross-signing name.
pub const KNOWN_EDU_TYPES: &[&str] = &[
    "m.typing",
    "m.receipt",
    "m.presence",
    "m.device_list_update",
    "m.signing_key_update",
    "org.matrix.signing_key_update",
    "m.direct_to_device",
];

/// Rule id of a dropped EDU of an unknown type.
pub const UNKNOWN_EDU_RULE: &str = "edu:unknown_type";

impl StaticPolicy {
    pub fn from_config(cfg: &PolicyConfig) -> Self {
        let norm = |s: &String| s.to_ascii_lowercase();
        let mut deny_inbound: HashSet<_> = cfg.deny_classes.iter().copied().collect();
        let mut deny_outbound = deny_inbound.clone();
        deny_inbound.extend(cfg.deny_inbound_classes.iter().copied());
        deny_outbound.extend(cfg.deny_outbound_classes.iter().copied());
        StaticPolicy {
            allow_servers: cfg.allow_servers.iter().map(norm).collect(),
            deny_servers: cfg.deny_servers.iter().map(norm).collect(),
            deny_inbound,
            deny_outbound,
            allow_edu_types: cfg.allow_edu_types.iter().cloned().collect(),
        }
    }

    /// Whether a remote server may federate at all (used before a CONNECT tunnel is opened too).
    ///
    /// A list entry matches the server name exactly or, if the entry has no port, any port of
    /// that host: denying `evil.example` also denies `evil.example:8448` (a CONNECT target).
    pub fn server_allowed(&self, server_name: &str) -> Result<(), Refusal> {
        let name = server_name.to_ascii_lowercase();
        let host = crate::federation::server_name::host_part(&name).to_string();
        let listed = |set: &HashSet<String>| set.contains(&name) || set.contains(&host);
        if listed(&self.deny_servers) {
            return Err(Refusal::forbidden(
                RefusalReason::ServerDenied,
                format!("federation with {server_name} is not permitted"),
            ));
        }
        if !self.allow_servers.is_empty() && !listed(&self.allow_servers) {
            return Err(Refusal::forbidden(
                RefusalReason::ServerDenied,
                format!("federation with {server_name} is not permitted"),
            ));
        }
        Ok(())
    }
}

impl Policy for StaticPolicy {
    fn request(&self, ctx: &ExchangeCtx) -> Decision {
        if let Some(peer) = &ctx.peer {
            if let Err(r) = self.server_allowed(peer) {
                return Decision::Refuse(r);
            }
        }
        let denied = match ctx.direction {
            Direction::Inbound => &self.deny_inbound,
            Direction::Outbound => &self.deny_outbound,
        };
        if denied.contains(&ctx.endpoint.class) {
            return Decision::Refuse(Refusal::forbidden(
                RefusalReason::ClassDenied,
                format!(
                    "{} requests are not permitted {}",
                    ctx.endpoint.id,
                    ctx.direction.as_str()
                ),
            ));
        }
        Decision::Allow
    }
    fn pdu(&self, _ctx: &ExchangeCtx, _pdu: &PduView<'_>) -> PduVerdict {
        PduVerdict::Allow
    }
    fn event(&self, _ctx: &ExchangeCtx, _event: &EventView<'_>) -> PduVerdict {
        PduVerdict::Allow
    }
    /// EDUs of a type the guard does not know (and the config does not name) are dropped:
    /// an unknown type is a channel no rule was written for.
    fn edu(&self, _ctx: &ExchangeCtx, edu: &EduView<'_>) -> EduVerdict {
        if KNOWN_EDU_TYPES.contains(&edu.edu_type.as_ref())
            || self.allow_edu_types.contains(edu.edu_type.as_ref())
        {
            EduVerdict::Allow
        } else {
            EduVerdict::Drop {
                rule: UNKNOWN_EDU_RULE.into(),
            }
        }
    }
    fn response(&self, _ctx: &ExchangeCtx) -> Decision {
        Decision::Allow
    }
}
