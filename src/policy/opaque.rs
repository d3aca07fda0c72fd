//! Opaque content: what the guard cannot read crosses only where configuration says so
//! explicitly (`[opaque]`, `config::opaque`).
//!
//! # What is opaque
//!
//! Judged per PDU, non-PDU event, EDU and recipient device of a to-device EDU, on the content
//! ([`crate::federation::e2ee`]):
//!
//! * **well-formed ciphertext** — an Olm or Megolm message that parses strictly (any event or
//!   to-device type; in practice `m.room.encrypted`, which also wraps `m.room_key` and the
//!   other key-sharing messages);
//! * **encrypted attachments** — `file` / `info.thumbnail_file` with `key`, `iv`, `hashes` and
//!   `url` (also in an edit's `m.new_content`): the media behind them cannot be inspected;
//! * **malformed ciphertext** — content with a `ciphertext` that does not parse, and
//!   `m.room.encrypted` content that is neither empty (redacted) nor ciphertext. This is not
//!   opaque but suspicious: it is judged as text (its decoded bytes included) by the content
//!   rules.
//!
//! Content without any of these is not this layer's business (no verdict, no metric).
//!
//! # Decisions
//!
//! | `release` | well-formed / attachment | malformed |
//! |---|---|---|
//! | `deny` (default) | redact / drop (`opaque:encrypted`, `opaque:encrypted_file`) | redact / drop (`opaque:malformed`) |
//! | `labeled` | crosses this layer only with the content's own label (`[labels] event_key`), else `opaque:unlabeled`; the label layer then decides access | no objection: judged as text by the content rules |
//! | `allow` | crosses this layer | no objection: judged as text by the content rules |
//!
//! With `peers`, only a peer (the remote server of the exchange) that matches one of the globs
//! gets `labeled`/`allow`; every other peer, and an exchange without an authenticated peer,
//! gets `deny`. Events are redacted (their id, hashes and signatures stay; the spec redaction
//! algorithm empties an `m.room.encrypted` content), EDUs and to-device messages dropped. The
//! layers combine most-severe-wins, so this layer only ever adds restrictions: a released
//! ciphertext can still be denied by the label layer (e.g. `encrypted_without_label = "deny"`)
//! and its cleartext fields by the content rules.
//!
//! Malformed ciphertext is not released by `deny` because a sender that wants its text to
//! cross has every reason to pass it off as ciphertext; under `labeled`/`allow` it is left to
//! the content rules because that is what it is: text in a field with an unusual name.
//!
//! Every decision on opaque content is counted in
//! `grenzwacht_opaque_decisions_total{direction,outcome}` (`outcome`: `release`, `labeled`,
//! `as_text`, or the rule id) and refusals are logged (rule, unit, event id; never content).
use std::sync::Arc;

use serde_json::value::RawValue;
use serde_json::Value;

use super::{Decision, EduVerdict, ExchangeCtx, PduVerdict, Policy, ToDeviceMessage};
use crate::config::opaque::{glob_match, OpaqueRelease};
use crate::config::Config;
use crate::federation::e2ee::{self, Ciphertext};
use crate::federation::pdu::{EduView, EventView, PduView};
use crate::federation::userdata::TO_DEVICE_EDU;

pub use crate::telemetry::OPAQUE_DECISIONS_TOTAL;

/// The event type of encrypted room events and to-device messages.
const ENCRYPTED_TYPE: &str = "m.room.encrypted";

/// Rule ids (refusals).
pub const RULE_ENCRYPTED: &str = "opaque:encrypted";
pub const RULE_ENCRYPTED_FILE: &str = "opaque:encrypted_file";
pub const RULE_MALFORMED: &str = "opaque:malformed";
pub const RULE_UNLABELED: &str = "opaque:unlabeled";

/// Why opaque content may cross this layer.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Pass {
    /// Released by `release = "allow"`.
    Release,
    /// Carries its own label (`release = "labeled"`); the label layer decides.
    Labeled,
    /// Malformed ciphertext: judged as text by the content rules.
    AsText,
}

impl Pass {
    fn as_str(self) -> &'static str {
        match self {
            Pass::Release => "release",
            Pass::Labeled => "labeled",
            Pass::AsText => "as_text",
        }
    }
}

/// The outcome for one unit: `None` when nothing in it is opaque.
pub type Judgement = Option<Result<Pass, &'static str>>;

/// The opaque-content layer; see the module documentation.
#[derive(Debug, Clone)]
pub struct OpaquePolicy {
    release: OpaqueRelease,
    /// Lower-cased globs; `None`: every peer.
    peers: Option<Vec<String>>,
    /// `[labels] event_key`. With `labeled` but no `[labels]` (refused by the config check),
    /// nothing counts as labeled: fail closed.
    label_key: Option<String>,
}

impl OpaquePolicy {
    pub fn from_config(cfg: &Config) -> Self {
        // The TI-Messenger profile releases end-to-end encrypted content by its own explicit
        // setting (`[ti] release_encrypted`, default on): E2EE is the norm there and who may
        // talk to whom is enforced by the federation list and invite permissions instead.
        let release = match &cfg.ti {
            Some(t) if t.release_encrypted && cfg.opaque.release == OpaqueRelease::Deny => {
                OpaqueRelease::Allow
            }
            _ => cfg.opaque.release,
        };
        OpaquePolicy {
            release,
            peers: cfg
                .opaque
                .peers
                .as_ref()
                .map(|p| p.iter().map(|g| g.to_ascii_lowercase()).collect()),
            label_key: cfg.labels.as_ref().map(|l| l.event_key.clone()),
        }
    }

    /// The release mode that applies to this exchange's peer.
    fn release_for(&self, ctx: &ExchangeCtx) -> OpaqueRelease {
        match (&self.peers, ctx.peer.as_deref()) {
            (None, _) => self.release,
            (Some(globs), Some(peer)) if globs.iter().any(|g| glob_match(g, peer)) => self.release,
            _ => OpaqueRelease::Deny,
        }
    }

    /// The decision for one content of type `event_type` (if known); see the module
    /// documentation.
    pub fn judge(
        &self,
        ctx: &ExchangeCtx,
        event_type: Option<&str>,
        content: &RawValue,
    ) -> Judgement {
        let raw = content.get();
        let encrypted_type = event_type == Some(ENCRYPTED_TYPE);
        // Fast path: none of the keys that make content opaque (escaped keys take the slow path).
        if !encrypted_type
            && !["\"ciphertext\"", "\"file\"", "\"thumbnail_file\"", "\\u"]
                .iter()
                .any(|k| raw.contains(k))
        {
            return None;
        }
        let value: Value = match serde_json::from_str(raw) {
            Ok(v) => v,
            // Validated bodies are JSON; if this fails, treat it as unreadable ciphertext.
            Err(_) => Value::Null,
        };
        let mut class = e2ee::classify(&value);
        if class == Ciphertext::NotEncrypted
            && encrypted_type
            && value.as_object().is_none_or(|o| !o.is_empty())
        {
            // Claims to be encrypted, is not ciphertext and not redacted.
            class = Ciphertext::Malformed {
                decoded: Vec::new(),
            };
        }
        let file = e2ee::has_encrypted_file(&value);
        if class == Ciphertext::NotEncrypted && !file {
            return None;
        }
        let release = self.release_for(ctx);
        let labeled = || {
            self.label_key
                .as_ref()
                .is_some_and(|k| value.get(k).is_some())
        };
        let opaque = |rule: &'static str| match release {
            OpaqueRelease::Deny => Err(rule),
            OpaqueRelease::Allow => Ok(Pass::Release),
            OpaqueRelease::Labeled if labeled() => Ok(Pass::Labeled),
            OpaqueRelease::Labeled => Err(RULE_UNLABELED),
        };
        let cipher = match class {
            Ciphertext::NotEncrypted => None,
            Ciphertext::WellFormed => Some(opaque(RULE_ENCRYPTED)),
            Ciphertext::Malformed { .. } if release == OpaqueRelease::Deny => {
                Some(Err(RULE_MALFORMED))
            }
            Ciphertext::Malformed { .. } => Some(Ok(Pass::AsText)),
        };
        let attachment = file.then(|| opaque(RULE_ENCRYPTED_FILE));
        // The first refusal, else the strongest reason to pass (release/labeled before as-text).
        match (cipher, attachment) {
            (Some(Err(r)), _) | (_, Some(Err(r))) => Some(Err(r)),
            (Some(Ok(Pass::AsText)), Some(a)) => Some(a),
            (c, a) => c.or(a),
        }
    }

    fn record(
        &self,
        ctx: &ExchangeCtx,
        what: &'static str,
        id: Option<&str>,
        room: Option<&str>,
        j: &Judgement,
    ) {
        let Some(r) = j else { return };
        let outcome = match r {
            Ok(p) => p.as_str(),
            Err(rule) => rule,
        };
        metrics::counter!(OPAQUE_DECISIONS_TOTAL, "direction" => ctx.direction.as_str(), "outcome" => outcome).increment(1);
        match r {
            Err(rule) => tracing::info!(
                direction = ctx.direction.as_str(),
                peer = ctx.peer.as_deref().unwrap_or(""),
                unit = what,
                event_id = id.unwrap_or(""),
                room = room.unwrap_or(""),
                rule = %rule,
                release = self.release_for(ctx).as_str(),
                "opaque content not released"
            ),
            Ok(p) => tracing::debug!(
                direction = ctx.direction.as_str(),
                unit = what,
                event_id = id.unwrap_or(""),
                outcome = p.as_str(),
                "opaque content passes"
            ),
        }
    }

    fn event_like(
        &self,
        ctx: &ExchangeCtx,
        what: &'static str,
        event_type: &str,
        id: Option<&str>,
        room: Option<&str>,
        content: &RawValue,
    ) -> PduVerdict {
        let j = self.judge(ctx, Some(event_type), content);
        self.record(ctx, what, id, room, &j);
        match j {
            Some(Err(rule)) => PduVerdict::Redact {
                rule: rule.to_string(),
            },
            _ => PduVerdict::Allow,
        }
    }

    fn drop_verdict(j: Judgement) -> EduVerdict {
        match j {
            Some(Err(rule)) => EduVerdict::Drop {
                rule: rule.to_string(),
            },
            _ => EduVerdict::Allow,
        }
    }
}

impl Policy for OpaquePolicy {
    fn request(&self, _: &ExchangeCtx) -> Decision {
        Decision::Allow
    }
    fn response(&self, _: &ExchangeCtx) -> Decision {
        Decision::Allow
    }
    fn pdu(&self, ctx: &ExchangeCtx, pdu: &PduView<'_>) -> PduVerdict {
        self.event_like(
            ctx,
            "pdu",
            &pdu.event_type,
            pdu.event_id.as_deref(),
            pdu.room_id.as_deref(),
            pdu.content,
        )
    }
    fn event(&self, ctx: &ExchangeCtx, ev: &EventView<'_>) -> PduVerdict {
        self.event_like(
            ctx,
            "event",
            &ev.event_type,
            ev.event_id.as_deref(),
            ev.room_id.as_deref(),
            ev.content,
        )
    }
    fn edu(&self, ctx: &ExchangeCtx, edu: &EduView<'_>) -> EduVerdict {
        if edu.edu_type == TO_DEVICE_EDU {
            return EduVerdict::Allow; // judged per recipient device
        }
        let j = self.judge(ctx, None, edu.content);
        self.record(ctx, "edu", None, None, &j);
        Self::drop_verdict(j)
    }
    fn to_device(&self, ctx: &ExchangeCtx, msg: &ToDeviceMessage<'_>) -> EduVerdict {
        let j = self.judge(ctx, msg.event_type.as_deref(), msg.content);
        self.record(ctx, "to_device", msg.message_id.as_deref(), None, &j);
        Self::drop_verdict(j)
    }
}

/// The layer for `cfg`, shared.
pub fn layer(cfg: &Config) -> Arc<OpaquePolicy> {
    Arc::new(OpaquePolicy::from_config(cfg))
}

#[cfg(test)]
mod tests;
