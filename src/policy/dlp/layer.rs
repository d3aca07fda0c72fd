//! The DLP rule set as a policy layer on federation traffic.
//!
//! # Design notes
//!
//! * **What is scanned.** Every PDU and non-PDU event (its `content`, through
//!   [`super::fields::fields`]: bodies, HTML reduced to text, file names, edits, polls, room
//!   name/topic/aliases, member display names, …), every EDU's user text
//!   ([`super::fields::edu_fields`]: presence `status_msg`, device display names), each
//!   to-device message (as an event of its type), and each user-data field of a response
//!   (profile, devices, directory; the response field kinds map to the DLP field names
//!   `profile.displayname`, `device.display_name`, `directory.*`).
//! * **Actions.** `redact`, `hold` and `reject` become the PDU verdicts of the same name (hold
//!   goes to the review queue, `proxy::hold`; reject refuses single-event endpoints and redacts
//!   in transactions); for EDUs, to-device messages and user fields any of them drops/removes the
//!   unit. `tag` only logs. `allow` exceptions were applied inside the engine.
//! * **Shadow mode.** Matches of rules in a `mode = "shadow"` file are decided and recorded (log
//!   line with rule, field, span and masked excerpt; `grenzwacht_dlp_decisions_total{mode="shadow"}`)
//!   but never change what crosses.
//! * **Logs never carry payload**: only rule ids, field names, byte spans and the engine's masked
//!   excerpt (at most 4 characters of the match).
use std::sync::Arc;

use serde_json::Value;

use super::engine::{Engine, Outcome, ScanCtx};
use super::fields::{Field, Judged};
use super::{Action, Mode};
use crate::federation::pdu::{EduView, EventView, PduView};
use crate::federation::userdata::{FieldKind, ToDeviceMessage, UserField};
use crate::policy::decisions::{Findings, RuleHit};
use crate::policy::{Decision, EduVerdict, ExchangeCtx, FieldVerdict, PduVerdict, Policy};

pub use crate::telemetry::DLP_DECISIONS_TOTAL;

/// A compiled rule set judging federation traffic.
pub struct DlpPolicy {
    engine: Arc<Engine>,
    /// The rule ids of the loaded set: the only values of the `rule` metric label.
    ids: std::collections::HashSet<Arc<str>>,
}

impl DlpPolicy {
    pub fn new(engine: Arc<Engine>) -> Self {
        let ids = engine.rule_ids().cloned().collect();
        DlpPolicy { engine, ids }
    }
    /// The compiled rule set this layer judges with.
    pub fn engine(&self) -> &Arc<Engine> {
        &self.engine
    }
    /// The `rule` label of [`DLP_DECISIONS_TOTAL`]: a rule id of the loaded set, else `other`.
    fn rule_label(&self, rule: Option<&Arc<str>>) -> String {
        match rule {
            Some(r) if self.ids.contains(r) => r.to_string(),
            _ => "other".to_string(),
        }
    }
    /// Number of compiled rules.
    pub fn rule_count(&self) -> usize {
        self.engine.rule_count()
    }

    /// The engine's outcome, recorded (logs, metrics) with `what` naming the unit.
    fn record(
        &self,
        ctx: &ExchangeCtx,
        what: &str,
        (room, sender): (Option<&str>, Option<&str>),
        out: &Outcome,
    ) {
        if out.matches.is_empty() {
            return;
        }
        for (mode, action) in [
            (Mode::Enforce, out.action),
            (Mode::Shadow, out.shadow_action),
        ] {
            if out.matches.iter().any(|m| m.mode == mode) {
                // The rule that decided in this mode (the first match with the winning action).
                let rule = out
                    .matches
                    .iter()
                    .find(|m| m.mode == mode && m.action == action)
                    .or_else(|| out.matches.iter().find(|m| m.mode == mode))
                    .map(|m| &m.rule);
                metrics::counter!(DLP_DECISIONS_TOTAL, "mode" => mode.as_str(), "action" => action.as_str(), "rule" => self.rule_label(rule)).increment(1);
            }
        }
        for m in &out.matches {
            tracing::info!(
                direction = ctx.direction.as_str(),
                peer = ctx.peer.as_deref().unwrap_or(""),
                room = room.unwrap_or(""),
                sender = sender.unwrap_or(""),
                unit = what,
                rule = %m.rule,
                mode = m.mode.as_str(),
                action = m.action.as_str(),
                field = m.field.as_str(),
                path = m.path.as_deref().unwrap_or(""),
                start = m.start,
                end = m.end,
                excerpt = %m.excerpt,
                "DLP match{}",
                if m.mode == Mode::Shadow { " (shadow: not applied)" } else { "" }
            );
        }
    }

    /// Judge one event (PDU, non-PDU event, to-device message) with the engine's one
    /// event scanner ([`Engine::scan_parts`], shared with `policy test` and `policy explain`):
    /// every member of the event is text.
    fn scan_content(
        &self,
        ctx: &ExchangeCtx,
        what: &str,
        room_id: Option<&str>,
        sender: Option<&str>,
        judged: Judged<'_>,
    ) -> Outcome {
        let out = self.scan_quiet(ctx, room_id, sender, judged);
        self.record(ctx, what, (room_id, sender), &out);
        out
    }

    /// [`Self::scan_content`] without logs and metrics.
    fn scan_quiet(
        &self,
        ctx: &ExchangeCtx,
        room_id: Option<&str>,
        sender: Option<&str>,
        judged: Judged<'_>,
    ) -> Outcome {
        let Some(value) = judged.value() else {
            // Validated bodies are JSON; if this ever fails, nothing readable crosses.
            return unreadable();
        };
        let parts = judged.parts(&value);
        let sctx = ScanCtx {
            direction: ctx.direction,
            peer: ctx.peer.as_deref(),
            room_id,
            sender,
            event_type: parts.event_type,
        };
        self.engine.scan_parts(&sctx, parts)
    }

    /// The engine's outcome for a PDU: what [`Policy::pdu`] decides on (the same scan as
    /// `policy test` and `policy explain`, see the tests).
    pub fn pdu_outcome(&self, ctx: &ExchangeCtx, pdu: &PduView<'_>) -> Outcome {
        self.scan_content(
            ctx,
            "pdu",
            pdu.room_id.as_deref(),
            Some(&pdu.sender),
            Judged::Event(pdu.raw),
        )
    }

    /// The rule that decided (the first enforce match with the winning action).
    fn deciding_rule(out: &Outcome) -> String {
        out.matches
            .iter()
            .find(|m| m.mode == Mode::Enforce && m.action == out.action)
            .map(|m| m.rule.to_string())
            .unwrap_or_else(|| "dlp".to_string())
    }

    fn pdu_verdict(out: &Outcome) -> PduVerdict {
        let rule = || format!("dlp:{}", Self::deciding_rule(out));
        match out.action {
            Action::Allow | Action::Tag => PduVerdict::Allow,
            Action::Redact => PduVerdict::Redact { rule: rule() },
            Action::Hold => PduVerdict::Hold { rule: rule() },
            Action::Reject => PduVerdict::Reject { rule: rule() },
        }
    }

    fn removes(out: &Outcome) -> Option<String> {
        match out.action {
            Action::Allow | Action::Tag => None,
            _ => Some(format!("dlp:{}", Self::deciding_rule(out))),
        }
    }
}

/// The outcome for content that cannot be read: fails closed as a redaction.
fn unreadable() -> Outcome {
    Outcome {
        action: Action::Redact,
        ..Outcome::default()
    }
}

/// The field a user-data field is scanned as, and the pseudo event type rules scope on (the
/// DLP and the YARA text layer alike).
pub(crate) fn user_field_scope(field: &UserField<'_>) -> (Field, &'static str) {
    match user_field_as(field.kind) {
        // A directory entry's avatar (it has a room).
        (Field::AvatarUrl, _) if field.room_id.is_some() => (Field::AvatarUrl, "m.directory"),
        other => other,
    }
}

/// The field a request or response text is scanned as, and its pseudo event type.
pub(crate) fn request_text_scope(kind: crate::policy::TextKind) -> (Field, &'static str) {
    use crate::policy::TextKind;
    let field = match kind {
        TextKind::PathParam | TextKind::Server => Field::RequestPath,
        TextKind::QueryName | TextKind::QueryValue => Field::RequestQuery,
        TextKind::BodyKey | TextKind::BodyValue => Field::RequestBody,
        TextKind::ResponseKey | TextKind::ResponseValue => Field::ResponseBody,
    };
    let pseudo = if kind.in_response() {
        "m.response"
    } else {
        "m.request"
    };
    (field, pseudo)
}

fn user_field_as(kind: FieldKind) -> (Field, &'static str) {
    match kind {
        FieldKind::Displayname | FieldKind::ProfileField => {
            (Field::ProfileDisplayName, "m.profile")
        }
        FieldKind::DeviceDisplayName => (Field::DeviceDisplayName, "m.devices"),
        FieldKind::RoomName => (Field::DirectoryName, "m.directory"),
        FieldKind::RoomTopic => (Field::DirectoryTopic, "m.directory"),
        FieldKind::RoomAlias => (Field::DirectoryAlias, "m.directory"),
        FieldKind::AvatarUrl => (Field::AvatarUrl, "m.profile"),
    }
}

/// The matches of a scan as findings of a decision record (rule, field, span, masked excerpt).
fn add_hits(out: &Outcome, found: &mut Findings) {
    found.hits.extend(out.matches.iter().map(|m| {
        RuleHit {
            layer: "dlp",
            rule: m.rule.to_string(),
            action: m.action.as_str().to_string(),
            shadow: m.mode == Mode::Shadow,
            field: Some(
                m.path
                    .clone()
                    .unwrap_or_else(|| m.field.as_str().to_string()),
            ),
            span: Some((
                m.start.saturating_sub(m.leaf_start),
                m.end.saturating_sub(m.leaf_start),
            )),
            excerpt: Some(m.excerpt.clone()),
        }
    }));
}

impl DlpPolicy {
    fn event_outcome(&self, ctx: &ExchangeCtx, event: &EventView<'_>) -> Outcome {
        self.scan_content(
            ctx,
            "event",
            event.room_id.as_deref(),
            Some(&event.sender),
            Judged::Event(event.raw),
        )
    }
    /// `None`: the EDU's content does not parse (it is dropped, `dlp:unreadable`).
    fn edu_outcome(&self, ctx: &ExchangeCtx, edu: &EduView<'_>) -> Option<Outcome> {
        let value: Value = serde_json::from_str(edu.content.get()).ok()?;
        let sctx = ScanCtx {
            direction: ctx.direction,
            peer: ctx.peer.as_deref(),
            room_id: None,
            sender: None,
            event_type: &edu.edu_type,
        };
        let out = self.engine.scan_edu(&sctx, &edu.edu_type, &value);
        self.record(ctx, "edu", (None, None), &out);
        Some(out)
    }
    fn user_field_outcome(&self, ctx: &ExchangeCtx, field: &UserField<'_>) -> Option<Outcome> {
        let (f, pseudo_type) = user_field_scope(field);
        let sctx = ScanCtx {
            direction: ctx.direction,
            peer: ctx.peer.as_deref(),
            room_id: field.room_id.as_deref(),
            sender: field.user_id.as_deref(),
            event_type: pseudo_type,
        };
        // The key of a field with no fixed name (extended profiles) is text as well.
        let key = (field.kind == FieldKind::ProfileField).then_some(field.key.as_ref());
        let mut pieces = vec![(f, field.value.as_ref())];
        pieces.extend(key.map(|k| (f, k)));
        let out = self.engine.scan_fields(&sctx, &pieces);
        self.record(
            ctx,
            "user_field",
            (field.room_id.as_deref(), field.user_id.as_deref()),
            &out,
        );
        Some(out)
    }
    fn to_device_outcome(&self, ctx: &ExchangeCtx, msg: &ToDeviceMessage<'_>) -> Outcome {
        let event_type = msg.event_type.as_deref().unwrap_or("");
        self.scan_content(
            ctx,
            "to_device",
            None,
            msg.sender.as_deref(),
            Judged::Content {
                event_type,
                content: msg.content,
            },
        )
    }
    fn edu_verdict(out: &Outcome) -> EduVerdict {
        match Self::removes(out) {
            Some(rule) => EduVerdict::Drop { rule },
            None => EduVerdict::Allow,
        }
    }
    fn edu_verdict_of(out: Option<&Outcome>) -> EduVerdict {
        match out {
            Some(o) => Self::edu_verdict(o),
            None => EduVerdict::Drop {
                rule: "dlp:unreadable".into(),
            },
        }
    }
    fn field_verdict(out: Option<&Outcome>) -> FieldVerdict {
        match out.and_then(Self::removes) {
            Some(rule) => FieldVerdict::Remove { rule },
            None => FieldVerdict::Allow,
        }
    }
}

impl Policy for DlpPolicy {
    fn request(&self, _ctx: &ExchangeCtx) -> Decision {
        Decision::Allow
    }
    fn matches(&self, ctx: &ExchangeCtx, pdu: &PduView<'_>) -> Vec<crate::review::Match> {
        let out = self.scan_quiet(
            ctx,
            pdu.room_id.as_deref(),
            Some(&pdu.sender),
            Judged::Event(pdu.raw),
        );
        out.matches
            .iter()
            .filter(|m| m.mode == Mode::Enforce && m.action != Action::Tag)
            .map(|m| crate::review::Match {
                rule: format!("dlp:{}", m.rule),
                field: m
                    .path
                    .clone()
                    .unwrap_or_else(|| m.field.as_str().to_owned()),
                // In the value the match is in (not the blob of a generic field).
                start: m.start.saturating_sub(m.leaf_start),
                end: m.end.saturating_sub(m.leaf_start),
            })
            .collect()
    }
    fn pdu(&self, ctx: &ExchangeCtx, pdu: &PduView<'_>) -> PduVerdict {
        let out = self.pdu_outcome(ctx, pdu);
        Self::pdu_verdict(&out)
    }
    fn explain_pdu(
        &self,
        ctx: &ExchangeCtx,
        pdu: &PduView<'_>,
        found: &mut Findings,
    ) -> PduVerdict {
        let out = self.pdu_outcome(ctx, pdu);
        add_hits(&out, found);
        Self::pdu_verdict(&out)
    }
    fn explain_event(
        &self,
        ctx: &ExchangeCtx,
        event: &EventView<'_>,
        found: &mut Findings,
    ) -> PduVerdict {
        let out = self.event_outcome(ctx, event);
        add_hits(&out, found);
        Self::pdu_verdict(&out)
    }
    fn explain_edu(
        &self,
        ctx: &ExchangeCtx,
        edu: &EduView<'_>,
        found: &mut Findings,
    ) -> EduVerdict {
        let out = self.edu_outcome(ctx, edu);
        if let Some(o) = &out {
            add_hits(o, found);
        }
        Self::edu_verdict_of(out.as_ref())
    }
    fn explain_to_device(
        &self,
        ctx: &ExchangeCtx,
        msg: &ToDeviceMessage<'_>,
        found: &mut Findings,
    ) -> EduVerdict {
        let out = self.to_device_outcome(ctx, msg);
        add_hits(&out, found);
        Self::edu_verdict(&out)
    }
    fn explain_user_field(
        &self,
        ctx: &ExchangeCtx,
        field: &UserField<'_>,
        found: &mut Findings,
    ) -> FieldVerdict {
        let out = self.user_field_outcome(ctx, field);
        if let Some(o) = &out {
            add_hits(o, found);
        }
        Self::field_verdict(out.as_ref())
    }
    fn event(&self, ctx: &ExchangeCtx, event: &EventView<'_>) -> PduVerdict {
        Self::pdu_verdict(&self.event_outcome(ctx, event))
    }
    fn edu(&self, ctx: &ExchangeCtx, edu: &EduView<'_>) -> EduVerdict {
        Self::edu_verdict_of(self.edu_outcome(ctx, edu).as_ref())
    }
    fn response(&self, _ctx: &ExchangeCtx) -> Decision {
        Decision::Allow
    }
    fn user_field(&self, ctx: &ExchangeCtx, field: &UserField<'_>) -> FieldVerdict {
        Self::field_verdict(self.user_field_outcome(ctx, field).as_ref())
    }
    fn to_device(&self, ctx: &ExchangeCtx, msg: &ToDeviceMessage<'_>) -> EduVerdict {
        Self::edu_verdict(&self.to_device_outcome(ctx, msg))
    }
    /// Text in the request itself (path and query parameters, non-event bodies), scanned as
    /// `request.path`, `request.query` or `request.body` of the pseudo event type `m.request`.
    /// Any enforce action other than allow/tag refuses the whole request (403).
    fn request_text(&self, ctx: &ExchangeCtx, text: &crate::policy::RequestText<'_>) -> Decision {
        use crate::policy::{Refusal, RefusalReason};
        let (field, event_type) = request_text_scope(text.kind);
        let sctx = ScanCtx {
            direction: ctx.direction,
            peer: ctx.peer.as_deref(),
            room_id: None,
            sender: None,
            event_type,
        };
        let out = self
            .engine
            .scan_fields(&sctx, &[(field, text.text.as_ref())]);
        let label = text.label();
        self.record(ctx, &format!("request ({label})"), (None, None), &out);
        match Self::removes(&out) {
            Some(rule) => Decision::Refuse(Refusal::forbidden(
                RefusalReason::RequestText,
                text.refused_by(&rule),
            )),
            None => Decision::Allow,
        }
    }
    /// The text of a response outside events and user-data fields, scanned in one pass as
    /// field `response.body` of the pseudo event type `m.response` (the pieces joined by line
    /// feeds, so no match spans two of them). Any enforce action other than allow/tag refuses
    /// the whole response (403).
    fn response_text(
        &self,
        ctx: &ExchangeCtx,
        texts: &[crate::policy::RequestText<'_>],
    ) -> Decision {
        use crate::policy::{Refusal, RefusalReason};
        if texts.is_empty() {
            return Decision::Allow;
        }
        let mut joined = String::new();
        for t in texts {
            if !joined.is_empty() {
                joined.push('\n');
            }
            joined.push_str(&t.text);
        }
        let sctx = ScanCtx {
            direction: ctx.direction,
            peer: ctx.peer.as_deref(),
            room_id: None,
            sender: None,
            event_type: "m.response",
        };
        let out = self
            .engine
            .scan_fields(&sctx, &[(Field::ResponseBody, joined.as_str())]);
        self.record(ctx, "response", (None, None), &out);
        match Self::removes(&out) {
            Some(rule) => Decision::Refuse(Refusal::forbidden(
                RefusalReason::ResponseText,
                format!("response refused: its text refused by rule {rule}"),
            )),
            None => Decision::Allow,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::policy::dlp::RuleSet;
    use crate::policy::Direction;
    use serde_json::value::RawValue;

    const RULES: &str = r#"
mode = "enforce"
[[rule]]
id = "t.iban"
description = "IBAN"
severity = "high"
action = "redact"
regex = '(?-u:\b)DE[0-9]{20}(?-u:\b)'
validator = "iban"
[[rule]]
id = "t.vv"
description = "marking"
severity = "high"
action = "hold"
keywords = ["VS-VERTRAULICH"]
case_sensitive = true
"#;
    const SHADOW: &str = r#"
mode = "shadow"
[[rule]]
id = "s.alpha"
description = "shadow keyword"
severity = "low"
action = "redact"
keywords = ["ALPHA"]
case_sensitive = true
"#;

    fn policy(sources: &[(&str, &str)]) -> DlpPolicy {
        let set = RuleSet::from_sources(sources).unwrap_or_else(|d| panic!("{d}"));
        DlpPolicy::new(set.engine())
    }

    fn ctx(endpoint: &str) -> ExchangeCtx {
        ExchangeCtx {
            direction: Direction::Outbound,
            endpoint: crate::federation::catalog::by_id(endpoint).unwrap(),
            peer: Some("hs2.test".into()),
            protected: "hs1.test".into(),
            txn_id: None,
        }
    }

    fn pdu_raw(content: Value) -> Box<RawValue> {
        serde_json::from_value(serde_json::json!({
            "type": "m.room.message", "room_id": "!r:hs1.test", "sender": "@a:hs1.test", "origin_server_ts": 1, "content": content
        }))
        .unwrap()
    }

    #[test]
    fn reviewer_spans_point_into_the_value_the_match_is_in() {
        let p = policy(&[("a.toml", RULES)]);
        let c = ctx("send_transaction");
        // The marking sits in a custom key after other strings: in the generic `content`
        // blob it is far from offset 0, in its own string at 7.
        let note = "Anlage VS-VERTRAULICH, bitte prüfen";
        let raw = pdu_raw(serde_json::json!({
            "body": "harmlos", "msgtype": "m.text",
            "de.example.meta": {"a": "erster Wert", "b": ["zweiter Wert", note]}
        }));
        let view = PduView::parse(&raw).unwrap();
        let matches = p.matches(&c, &view);
        let m = matches
            .iter()
            .find(|m| m.rule == "dlp:t.vv")
            .unwrap_or_else(|| panic!("{matches:?}"));
        assert!(m.field.contains("de.example.meta"), "{m:?}");
        assert_eq!(&note[m.start..m.end], "VS-VERTRAULICH", "{m:?}");
        // The decision record's finding carries the same span.
        let mut found = Findings::default();
        p.explain_pdu(&c, &view, &mut found);
        let hit = found.hits.iter().find(|h| h.rule == "t.vv").unwrap();
        assert_eq!(hit.span, Some((m.start, m.end)));
        // A named field keeps its own offsets.
        let raw =
            pdu_raw(serde_json::json!({"body": "Betreff: VS-VERTRAULICH", "msgtype": "m.text"}));
        let m = p.matches(&c, &PduView::parse(&raw).unwrap());
        assert_eq!((m[0].start, m[0].end), (9, 23), "{m:?}");
    }

    #[test]
    fn the_sender_and_members_outside_content_are_judged() {
        let p = policy(&[("a.toml", RULES)]);
        let c = ctx("send_transaction");
        let judge = |v: Value| {
            let raw: Box<RawValue> = serde_json::from_value(v).unwrap();
            p.pdu(&c, &PduView::parse(&raw).unwrap())
        };
        let base = || {
            serde_json::json!({
                "type": "m.room.message", "room_id": "!r:hs1.test", "sender": "@a:hs1.test",
                "origin_server_ts": 1, "content": {"body": "hallo", "msgtype": "m.text"}
            })
        };
        assert_eq!(judge(base()), PduVerdict::Allow);
        // A user id chosen to carry an IBAN (the test rule is case-sensitive; the shipped one
        // is not).
        let mut v = base();
        v["sender"] = "@DE89370400440532013000:hs1.test".into();
        assert!(
            matches!(judge(v), PduVerdict::Redact { ref rule } if rule == "dlp:t.iban"),
            "the sender is text"
        );
        // A member no spec names, added by the sending server: it crosses with the event.
        let mut v = base();
        v["x_note"] = serde_json::json!({"k": "Anlage VS-VERTRAULICH"});
        assert!(matches!(judge(v), PduVerdict::Hold { .. }));
        // The key ids of signatures.
        let mut v = base();
        v["signatures"] = serde_json::json!({"hs1.test": {"ed25519:VS-VERTRAULICH": "sig"}});
        assert!(matches!(judge(v), PduVerdict::Hold { .. }));
        // A stripped-state event (lenient view) with `unsigned` and `redacts`.
        let raw: Box<RawValue> = serde_json::from_value(serde_json::json!({
            "type": "m.room.name", "state_key": "", "sender": "@a:hs1.test",
            "content": {"name": "Lage"}, "unsigned": {"note": "VS-VERTRAULICH"}
        }))
        .unwrap();
        let ev = EventView::parse(&raw).unwrap();
        assert!(matches!(p.event(&c, &ev), PduVerdict::Hold { .. }));
    }

    #[test]
    fn the_rule_label_is_an_id_of_the_loaded_set_or_other() {
        let p = policy(&[("a.toml", RULES)]);
        assert_eq!(p.rule_label(Some(&Arc::from("t.iban"))), "t.iban");
        assert_eq!(p.rule_label(Some(&Arc::from("t.unknown"))), "other");
        assert_eq!(p.rule_label(None), "other");
        // The metric carries the deciding rule.
        let handle = crate::telemetry::metrics_handle();
        let count = || -> f64 {
            handle
                .render()
                .lines()
                .filter(|l| {
                    l.starts_with(DLP_DECISIONS_TOTAL)
                        && l.contains(r#"rule="t.vv""#)
                        && l.contains(r#"mode="enforce""#)
                        && l.contains(r#"action="hold""#)
                })
                .filter_map(|l| l.rsplit(' ').next()?.parse::<f64>().ok())
                .sum()
        };
        let before = count();
        let raw = pdu_raw(serde_json::json!({"body": "VS-VERTRAULICH", "msgtype": "m.text"}));
        p.pdu(&ctx("send_transaction"), &PduView::parse(&raw).unwrap());
        assert!(count() - before >= 1.0);
    }

    #[test]
    fn pdu_verdicts_follow_the_rule_actions_and_validators() {
        let p = policy(&[("a.toml", RULES)]);
        let c = ctx("send_transaction");
        let raw = pdu_raw(
            serde_json::json!({"body": "IBAN DE89370400440532013000 bitte", "msgtype": "m.text"}),
        );
        assert_eq!(
            p.pdu(&c, &PduView::parse(&raw).unwrap()),
            PduVerdict::Redact {
                rule: "dlp:t.iban".into()
            }
        );
        // Broken check digit: no match.
        let raw = pdu_raw(
            serde_json::json!({"body": "IBAN DE89370400440532013001 bitte", "msgtype": "m.text"}),
        );
        assert_eq!(p.pdu(&c, &PduView::parse(&raw).unwrap()), PduVerdict::Allow);
        // An edit that adds the IBAN.
        let raw = pdu_raw(
            serde_json::json!({"body": "* korrigiert", "msgtype": "m.text",
            "m.new_content": {"body": "IBAN DE89370400440532013000", "msgtype": "m.text"},
            "m.relates_to": {"rel_type": "m.replace", "event_id": "$x"}}),
        );
        assert_eq!(
            p.pdu(&c, &PduView::parse(&raw).unwrap()),
            PduVerdict::Redact {
                rule: "dlp:t.iban".into()
            }
        );
        let raw =
            pdu_raw(serde_json::json!({"body": "Einstufung VS-VERTRAULICH", "msgtype": "m.text"}));
        assert_eq!(
            p.pdu(&c, &PduView::parse(&raw).unwrap()),
            PduVerdict::Hold {
                rule: "dlp:t.vv".into()
            }
        );
        // A custom event type: every string is scanned.
        let raw: Box<RawValue> = serde_json::from_value(serde_json::json!({
            "type": "org.example.note", "room_id": "!r:hs1.test", "sender": "@a:hs1.test", "origin_server_ts": 1,
            "content": {"note": {"text": "VS-VERTRAULICH"}}
        }))
        .unwrap();
        assert!(matches!(
            p.pdu(&c, &PduView::parse(&raw).unwrap()),
            PduVerdict::Hold { .. }
        ));
    }

    #[test]
    fn presence_status_and_user_fields_are_dropped_or_removed() {
        let p = policy(&[("a.toml", RULES)]);
        let c = ctx("send_transaction");
        let edu: Box<RawValue> = serde_json::from_str(r#"{"edu_type":"m.presence","content":{"push":[{"user_id":"@a:hs1.test","presence":"online","status_msg":"VS-VERTRAULICH Lage"}]}}"#).unwrap();
        assert!(matches!(
            p.edu(&c, &EduView::parse(&edu).unwrap()),
            EduVerdict::Drop { .. }
        ));
        let clean: Box<RawValue> = serde_json::from_str(r#"{"edu_type":"m.presence","content":{"push":[{"user_id":"@a:hs1.test","presence":"online","status_msg":"im Büro"}]}}"#).unwrap();
        assert_eq!(
            p.edu(&c, &EduView::parse(&clean).unwrap()),
            EduVerdict::Allow
        );
        let typing: Box<RawValue> = serde_json::from_str(r#"{"edu_type":"m.typing","content":{"room_id":"!r:x","user_id":"@a:x","typing":true}}"#).unwrap();
        assert_eq!(
            p.edu(&c, &EduView::parse(&typing).unwrap()),
            EduVerdict::Allow
        );
        let field = UserField {
            kind: FieldKind::Displayname,
            key: "displayname".into(),
            user_id: None,
            device_id: None,
            room_id: None,
            value: "Konto DE89370400440532013000".into(),
            path: crate::federation::userdata::FieldPath::default(),
        };
        assert!(matches!(
            p.user_field(&ctx("query_profile"), &field),
            FieldVerdict::Remove { .. }
        ));
    }

    #[test]
    fn shadow_rules_decide_but_never_change_what_crosses() {
        let p = policy(&[("a.toml", RULES), ("s.toml", SHADOW)]);
        let c = ctx("send_transaction");
        let raw = pdu_raw(serde_json::json!({"body": "Projekt ALPHA", "msgtype": "m.text"}));
        let view = PduView::parse(&raw).unwrap();
        assert_eq!(p.pdu(&c, &view), PduVerdict::Allow);
        let sctx = ScanCtx {
            direction: Direction::Outbound,
            peer: None,
            room_id: None,
            sender: None,
            event_type: "m.room.message",
        };
        let out = p.engine.scan_event(
            &sctx,
            &serde_json::json!({"body": "Projekt ALPHA", "msgtype": "m.text"}),
        );
        assert_eq!(
            out.shadow_action,
            Action::Redact,
            "the shadow decision is taken (and recorded)"
        );
        assert_eq!(out.action, Action::Allow);
    }

    /// Ways in without a field of their own, both directions: any key or value of any EDU's
    /// content, and the bytes of a "ciphertext" that is no Olm/Megolm message.
    #[test]
    fn edu_content_and_fake_ciphertext_are_judged_as_text_both_ways() {
        use base64::Engine as _;
        let p = policy(&[("a.toml", RULES)]);
        for direction in [Direction::Outbound, Direction::Inbound] {
            let c = ExchangeCtx {
                direction,
                ..ctx("send_transaction")
            };
            for edu in [
                r#"{"edu_type":"m.receipt","content":{"!r:x":{"m.read":{"@a:x":{"event_ids":["$e"],"data":{"note":"VS-VERTRAULICH"}}}}}}"#,
                r#"{"edu_type":"m.typing","content":{"room_id":"!r:x","user_id":"@a:x","typing":true,"VS-VERTRAULICH":1}}"#,
            ] {
                let raw: Box<RawValue> = serde_json::from_str(edu).unwrap();
                assert!(
                    matches!(
                        p.edu(&c, &EduView::parse(&raw).unwrap()),
                        EduVerdict::Drop { .. }
                    ),
                    "{direction:?}: {edu}"
                );
            }
            let clean: Box<RawValue> = serde_json::from_str(r#"{"edu_type":"m.typing","content":{"room_id":"!r:x","user_id":"@a:x","typing":true}}"#).unwrap();
            assert_eq!(
                p.edu(&c, &EduView::parse(&clean).unwrap()),
                EduVerdict::Allow
            );

            let fake = base64::engine::general_purpose::STANDARD_NO_PAD
                .encode("Einstufung VS-VERTRAULICH, bitte weitergeben");
            let raw: Box<RawValue> = serde_json::from_value(serde_json::json!({
                "type": "m.room.encrypted", "room_id": "!r:hs1.test", "sender": "@a:hs1.test", "origin_server_ts": 1,
                "content": {"algorithm": "m.megolm.v1.aes-sha2", "ciphertext": fake, "sender_key": "k", "session_id": "s", "device_id": "D"}
            }))
            .unwrap();
            assert!(
                matches!(
                    p.pdu(&c, &PduView::parse(&raw).unwrap()),
                    PduVerdict::Hold { .. }
                ),
                "{direction:?}: fake ciphertext"
            );
        }
    }
}
