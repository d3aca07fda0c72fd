//! A simple keyword/regex rule list (`[[rule]]` in the config), for quick local rules beside the
//! DLP rule set (`policy::dlp`).
//!
//! All rules compile into one [`RegexSet`], so each string of an event is scanned once, not once
//! per rule. Keywords are matched literally and case-sensitively (a marking like `GEHEIM` is
//! upper case; the ordinary word "geheim" is not a marking). Rules look at every string value of
//! an event's `content` (at any depth) — or only at the keys named in `fields`.
//!
//! Verdicts: a PDU that matches gets the most severe action of the matching rules (reject >
//! hold > redact); `drop` on a PDU redacts it (a PDU is never removed from a transaction). An EDU
//! that matches any rule is dropped. A to-device EDU is judged per recipient device: a message
//! that matches is removed, the others go on (the EDU's other members, outside `messages`,
//! drop the whole EDU if they match). A user-data field (display name, room name, topic,
//! alias, …) that matches is removed from the response; for user fields and to-device
//! messages every action means "remove" (there is nothing to redact, review or refuse
//! separately). `fields` filters apply to user fields by the field's name
//! (`federation::userdata::FieldKind::as_str`: `displayname`, `device_display_name`, `name`,
//! `topic`, `alias`, …) or its key in the body.
//!
//! Text the request itself carries (path and query parameters, bodies without events; see
//! `federation::request_text`) is judged too: any matching rule refuses the request (403
//! `M_FORBIDDEN`). `fields` filters apply by `request.path`, `request.query`, `request.body` or
//! the parameter's name. The text of a response outside its events and user-data fields (see
//! `federation::response_text`) is judged piece by piece the same way, as `response.body`: a
//! match refuses the response.
use regex::RegexSet;
use serde_json::value::RawValue;

use super::{
    Decision, Direction, EduVerdict, ExchangeCtx, FieldVerdict, PduVerdict, Policy, Refusal,
    RefusalReason, RequestText, StaticPolicy, TextKind,
};
use crate::federation::pdu::{EduView, EventView, PduView};
use crate::federation::userdata::{ToDeviceMessage, UserField, TO_DEVICE_EDU};

pub use crate::config::rules::{RuleAction, RuleConfig, RuleDirection};

/// A rule set that does not compile.
#[derive(Debug, thiserror::Error)]
pub enum RuleError {
    #[error("rule {id}: needs `keywords` or `regex`")]
    Empty { id: String },
    #[error("rule {id}: invalid regex: {reason}")]
    Regex { id: String, reason: String },
    #[error("rule {id}: duplicate rule id")]
    Duplicate { id: String },
}

struct Compiled {
    id: String,
    fields: Vec<String>,
    inbound: bool,
    outbound: bool,
    action: RuleAction,
}

/// The rule id reported for content that cannot be read (fails closed).
const UNREADABLE: &str = "unreadable_content";

/// The compiled rule list.
pub struct Rules {
    set: RegexSet,
    /// Pattern index → rule index.
    owner: Vec<usize>,
    rules: Vec<Compiled>,
}

impl Rules {
    pub fn compile(cfg: &[RuleConfig]) -> Result<Rules, RuleError> {
        let mut patterns = Vec::new();
        let mut owner = Vec::new();
        let mut rules = Vec::new();
        let mut ids = std::collections::HashSet::new();
        for (i, r) in cfg.iter().enumerate() {
            if !ids.insert(r.id.clone()) {
                return Err(RuleError::Duplicate { id: r.id.clone() });
            }
            if r.keywords.is_empty() && r.regex.is_none() {
                return Err(RuleError::Empty { id: r.id.clone() });
            }
            // Text is matched in its normalised views (`crate::text`), so the rules are
            // compiled in normalised form too.
            for k in &r.keywords {
                patterns.push(regex::escape(&crate::text::normalize(k)));
                owner.push(i);
            }
            if let Some(re) = &r.regex {
                let re = crate::text::normalize(re).into_owned();
                regex::Regex::new(&re).map_err(|e| RuleError::Regex {
                    id: r.id.clone(),
                    reason: e.to_string(),
                })?;
                patterns.push(re);
                owner.push(i);
            }
            rules.push(Compiled {
                id: r.id.clone(),
                fields: r.fields.clone(),
                inbound: r.directions.is_empty() || r.directions.contains(&RuleDirection::Inbound),
                outbound: r.directions.is_empty()
                    || r.directions.contains(&RuleDirection::Outbound),
                action: r.action,
            });
        }
        let set = RegexSet::new(&patterns).map_err(|e| RuleError::Regex {
            id: "(set)".into(),
            reason: e.to_string(),
        })?;
        Ok(Rules { set, owner, rules })
    }

    pub fn is_empty(&self) -> bool {
        self.rules.is_empty()
    }

    /// The matching rule with the most severe action, if any.
    pub fn check(&self, direction: Direction, content: &RawValue) -> Option<(&str, RuleAction)> {
        if self.rules.is_empty() {
            return None;
        }
        match serde_json::from_str::<serde_json::Value>(content.get()) {
            Ok(value) => self.check_value(direction, &value),
            // Validated bodies are JSON, so this cannot happen; if it does, the content does
            // not cross unread.
            Err(_) => Some((UNREADABLE, RuleAction::Redact)),
        }
    }

    /// An event, every member of it: its `type`, `state_key` and `redacts` (matched by rules
    /// without a `fields` filter or naming `type`/`state_key`/`redacts`), and every string of
    /// the rest — `content`, `unsigned`, `sender`, ids, members the spec does not name — like
    /// [`Rules::check`].
    pub fn check_event(
        &self,
        direction: Direction,
        event: &RawValue,
    ) -> Option<(&str, RuleAction)> {
        if self.rules.is_empty() {
            return None;
        }
        let Ok(serde_json::Value::Object(mut members)) =
            serde_json::from_str::<serde_json::Value>(event.get())
        else {
            // Validated bodies are JSON objects; if not, the event does not cross unread.
            return Some((UNREADABLE, RuleAction::Redact));
        };
        let mut best: Option<(usize, RuleAction)> = None;
        for name in ["type", "state_key", "redacts"] {
            // A member that is no string stays with the rest.
            if let Some(serde_json::Value::String(t)) = members.get(name) {
                self.scan(
                    direction,
                    t,
                    |r| r.fields.iter().any(|f| f == name),
                    &mut best,
                );
                members.remove(name);
            }
        }
        let top = best.map(|(i, a)| (self.rules[i].id.as_str(), a));
        let rest = self.check_value(direction, &serde_json::Value::Object(members));
        match (top, rest) {
            (Some(x), Some(y)) => Some(if severity(y.1) > severity(x.1) { y } else { x }),
            (x, None) => x,
            (None, y) => y,
        }
    }

    /// As [`Rules::check`], on a parsed value.
    pub fn check_value(
        &self,
        direction: Direction,
        value: &serde_json::Value,
    ) -> Option<(&str, RuleAction)> {
        let mut best: Option<(usize, RuleAction)> = None;
        walk(value, None, &mut |key, s| {
            self.scan(
                direction,
                s,
                |r| key.is_some_and(|k| r.fields.iter().any(|f| f == k)),
                &mut best,
            )
        });
        best.map(|(i, a)| (self.rules[i].id.as_str(), a))
    }

    /// One text that is a field with the given names (a user-data field: its kind's name and
    /// its key, e.g. `alias` and `canonical_alias`). A rule with `fields` applies if one of the
    /// names is among them.
    pub fn check_text(
        &self,
        direction: Direction,
        names: &[&str],
        text: &str,
    ) -> Option<(&str, RuleAction)> {
        let mut best: Option<(usize, RuleAction)> = None;
        self.scan(
            direction,
            text,
            |r| names.iter().any(|n| r.fields.iter().any(|f| f == n)),
            &mut best,
        );
        best.map(|(i, a)| (self.rules[i].id.as_str(), a))
    }

    /// Matches `s` and keeps the most severe applicable rule in `best`; `field_ok` decides for
    /// rules with a `fields` filter.
    fn scan(
        &self,
        direction: Direction,
        s: &str,
        field_ok: impl Fn(&Compiled) -> bool,
        best: &mut Option<(usize, RuleAction)>,
    ) {
        if self.rules.is_empty() {
            return;
        }
        VIEWS.with(|views| {
            let mut views = views.borrow_mut();
            for view in views.build(s, false) {
                self.scan_view(direction, &view.text, &field_ok, best);
            }
        });
    }

    /// [`Rules::scan`] on one view of the text.
    fn scan_view(
        &self,
        direction: Direction,
        s: &str,
        field_ok: &impl Fn(&Compiled) -> bool,
        best: &mut Option<(usize, RuleAction)>,
    ) {
        for p in self.set.matches(s).iter() {
            let ri = self.owner[p];
            let r = &self.rules[ri];
            let dir_ok = match direction {
                Direction::Inbound => r.inbound,
                Direction::Outbound => r.outbound,
            };
            let field_ok = r.fields.is_empty() || field_ok(r);
            if dir_ok && field_ok && best.is_none_or(|(_, a)| severity(r.action) > severity(a)) {
                *best = Some((ri, r.action));
            }
        }
    }
}

fn severity(a: RuleAction) -> u8 {
    match a {
        RuleAction::Drop | RuleAction::Redact => 1,
        RuleAction::Hold => 2,
        RuleAction::Reject => 3,
    }
}

thread_local! {
    static VIEWS: std::cell::RefCell<crate::text::Views> = std::cell::RefCell::new(crate::text::Views::new());
}

/// Every string value, object key and number under `v`, with the key it is under (an object
/// key is reported under its own name).
fn walk<'v>(
    v: &'v serde_json::Value,
    key: Option<&'v str>,
    f: &mut impl FnMut(Option<&'v str>, &str),
) {
    match v {
        serde_json::Value::String(s) => f(key, s),
        serde_json::Value::Number(n) => f(key, &n.to_string()),
        serde_json::Value::Array(a) => a.iter().for_each(|x| walk(x, key, f)),
        serde_json::Value::Object(o) => o.iter().for_each(|(k, x)| {
            f(Some(k.as_str()), k);
            walk(x, Some(k.as_str()), f)
        }),
        _ => {}
    }
}

/// The configured policy: server/class allow-deny lists first, then the content rules.
pub struct RulesPolicy {
    pub base: StaticPolicy,
    pub rules: Rules,
}

fn pdu_verdict(m: Option<(&str, RuleAction)>) -> PduVerdict {
    match m {
        None => PduVerdict::Allow,
        Some((id, RuleAction::Reject)) => PduVerdict::Reject {
            rule: id.to_string(),
        },
        Some((id, RuleAction::Hold)) => PduVerdict::Hold {
            rule: id.to_string(),
        },
        Some((id, _)) => PduVerdict::Redact {
            rule: id.to_string(),
        },
    }
}

impl Policy for RulesPolicy {
    fn request(&self, ctx: &ExchangeCtx) -> Decision {
        self.base.request(ctx)
    }
    fn pdu(&self, ctx: &ExchangeCtx, pdu: &PduView<'_>) -> PduVerdict {
        pdu_verdict(self.rules.check_event(ctx.direction, pdu.raw))
    }
    fn event(&self, ctx: &ExchangeCtx, event: &EventView<'_>) -> PduVerdict {
        pdu_verdict(self.rules.check_event(ctx.direction, event.raw))
    }
    fn edu(&self, ctx: &ExchangeCtx, edu: &EduView<'_>) -> EduVerdict {
        let base = self.base.edu(ctx, edu);
        if base != EduVerdict::Allow {
            return base;
        }
        if self.rules.is_empty() {
            return EduVerdict::Allow;
        }
        let m = if edu.edu_type == TO_DEVICE_EDU {
            // The messages are judged per recipient device (`to_device`); the rest of the
            // content here, with the recipients (user and device ids, which a sender chooses).
            let mut value: serde_json::Value = match serde_json::from_str(edu.content.get()) {
                Ok(v) => v,
                // Cannot happen for a validated body; fail closed if it does.
                Err(_) => {
                    return EduVerdict::Drop {
                        rule: UNREADABLE.into(),
                    }
                }
            };
            if let Some(serde_json::Value::Object(users)) = value.get_mut("messages") {
                for devices in users.values_mut() {
                    match devices.as_object_mut() {
                        Some(d) => d.values_mut().for_each(|m| *m = serde_json::Value::Null),
                        None => *devices = serde_json::Value::Null,
                    }
                }
            }
            self.rules.check_value(ctx.direction, &value)
        } else {
            self.rules.check(ctx.direction, edu.content)
        };
        match m {
            None => EduVerdict::Allow,
            Some((id, _)) => EduVerdict::Drop {
                rule: id.to_string(),
            },
        }
    }
    fn response(&self, ctx: &ExchangeCtx) -> Decision {
        self.base.response(ctx)
    }
    /// Any matching rule removes the field, whatever its action (drop/redact/hold/reject all
    /// mean "this text does not cross"; there is no review queue and no single event to
    /// refuse). `fields` filters match the field's kind name or its key.
    fn user_field(&self, ctx: &ExchangeCtx, field: &UserField<'_>) -> FieldVerdict {
        match self.rules.check_text(
            ctx.direction,
            &[field.kind.as_str(), &field.key],
            &field.value,
        ) {
            None => FieldVerdict::Allow,
            Some((id, _)) => FieldVerdict::Remove {
                rule: id.to_string(),
            },
        }
    }
    /// Any matching rule drops that device's message (all actions alike, as for user fields).
    /// The content is scanned like event content (`fields` filter on its keys); encrypted
    /// messages are opaque ciphertext to the rules.
    fn to_device(&self, ctx: &ExchangeCtx, msg: &ToDeviceMessage<'_>) -> EduVerdict {
        match self.rules.check(ctx.direction, msg.content) {
            None => EduVerdict::Allow,
            Some((id, _)) => EduVerdict::Drop {
                rule: id.to_string(),
            },
        }
    }
    /// Any matching rule refuses the request (403), whatever its action: text in a path,
    /// query or non-event body cannot be redacted. `fields` filters match `request.path`,
    /// `request.query`, `request.body` or the parameter's name (`room_alias`, `user_id`, …).
    /// The text of a response outside events and user-data fields comes here piece by piece
    /// too (`Policy::response_text`), as field `response.body`; a match refuses the response.
    fn request_text(&self, ctx: &ExchangeCtx, text: &RequestText<'_>) -> Decision {
        let field = match text.kind {
            TextKind::PathParam | TextKind::Server => "request.path",
            TextKind::QueryName | TextKind::QueryValue => "request.query",
            TextKind::BodyKey | TextKind::BodyValue => "request.body",
            TextKind::ResponseKey | TextKind::ResponseValue => "response.body",
        };
        match self
            .rules
            .check_text(ctx.direction, &[field, text.name], &text.text)
        {
            None => Decision::Allow,
            Some((id, _)) => {
                let label = text.label();
                tracing::info!(direction = ctx.direction.as_str(), peer = ctx.peer.as_deref().unwrap_or(""), rule = id, text = %label, "content rule matched request or response text");
                let reason = if text.kind.in_response() {
                    RefusalReason::ResponseText
                } else {
                    RefusalReason::RequestText
                };
                Decision::Refuse(Refusal::forbidden(reason, text.refused_by(id)))
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn rule(id: &str, kw: &[&str], action: RuleAction) -> RuleConfig {
        RuleConfig {
            id: id.into(),
            description: String::new(),
            keywords: kw.iter().map(|s| s.to_string()).collect(),
            regex: None,
            fields: vec![],
            directions: vec![],
            action,
        }
    }

    fn raw(s: &str) -> Box<RawValue> {
        RawValue::from_string(s.to_string()).unwrap()
    }

    #[test]
    fn keyword_matches_case_sensitively_anywhere_in_content() {
        let r = Rules::compile(&[rule("geheim", &["GEHEIM"], RuleAction::Redact)]).unwrap();
        assert_eq!(
            r.check(Direction::Outbound, &raw(r#"{"body":"Dies ist GEHEIM."}"#)),
            Some(("geheim", RuleAction::Redact))
        );
        assert_eq!(
            r.check(
                Direction::Outbound,
                &raw(r#"{"m.new_content":{"body":"x GEHEIM"}}"#)
            )
            .map(|m| m.0),
            Some("geheim")
        );
        assert_eq!(
            r.check(
                Direction::Outbound,
                &raw(r#"{"push":[{"status_msg":"GEHEIM"}]}"#)
            )
            .map(|m| m.0),
            Some("geheim")
        );
        assert_eq!(
            r.check(Direction::Outbound, &raw(r#"{"body":"das bleibt geheim"}"#)),
            None
        );
        assert_eq!(
            r.check(Direction::Outbound, &raw(r#"{"body":"harmlos"}"#)),
            None
        );
    }

    #[test]
    fn most_severe_action_wins_and_directions_and_fields_restrict() {
        let mut only_in = rule("in", &["X"], RuleAction::Reject);
        only_in.directions = vec![RuleDirection::Inbound];
        let mut topic = rule("topic", &["Y"], RuleAction::Hold);
        topic.fields = vec!["topic".into()];
        let r = Rules::compile(&[rule("a", &["X"], RuleAction::Redact), only_in, topic]).unwrap();
        assert_eq!(
            r.check(Direction::Inbound, &raw(r#"{"body":"X"}"#)),
            Some(("in", RuleAction::Reject))
        );
        assert_eq!(
            r.check(Direction::Outbound, &raw(r#"{"body":"X"}"#)),
            Some(("a", RuleAction::Redact))
        );
        assert_eq!(r.check(Direction::Outbound, &raw(r#"{"body":"Y"}"#)), None);
        assert_eq!(
            r.check(Direction::Outbound, &raw(r#"{"topic":"Y"}"#)),
            Some(("topic", RuleAction::Hold))
        );
    }

    /// Every member of an event is text: `type`/`state_key`/`redacts` as their own fields, the
    /// rest (`content`, `unsigned`, `sender`, members the spec does not name) like content.
    #[test]
    fn every_member_of_an_event_is_judged() {
        let mut only_type = rule("type", &["Z"], RuleAction::Hold);
        only_type.fields = vec!["type".into()];
        let r =
            Rules::compile(&[rule("geheim", &["GEHEIM"], RuleAction::Redact), only_type]).unwrap();
        let judge = |ev: &str| r.check_event(Direction::Outbound, &raw(ev)).map(|m| m.0);
        let base = r#""type":"m.room.message","content":{"body":"hallo"}"#;
        assert_eq!(judge(&format!("{{{base}}}")), None);
        for extra in [
            r#""sender":"@GEHEIM:hs1""#,
            r#""x_note":{"k":"GEHEIM"}"#,
            r#""unsigned":{"n":"GEHEIM"}"#,
            r#""state_key":"GEHEIM""#,
        ] {
            assert_eq!(
                judge(&format!("{{{base},{extra}}}")),
                Some("geheim"),
                "{extra}"
            );
        }
        assert_eq!(judge(r#"{"type":"Z","content":{}}"#), Some("type"));
        // A rule for `type` only does not judge the rest, and a `type` that is no string is
        // judged with the rest.
        assert_eq!(judge(r#"{"type":"m.x","content":{"body":"Z"}}"#), None);
        assert_eq!(judge(r#"{"type":["GEHEIM"],"content":{}}"#), Some("geheim"));
    }

    fn policy(rules: &[RuleConfig]) -> RulesPolicy {
        RulesPolicy {
            base: StaticPolicy::default(),
            rules: Rules::compile(rules).unwrap(),
        }
    }

    fn ctx(endpoint: &str, direction: Direction) -> ExchangeCtx {
        ExchangeCtx {
            direction,
            endpoint: crate::federation::catalog::by_id(endpoint).unwrap(),
            peer: Some("hs2.test".into()),
            protected: "hs1.test".into(),
            txn_id: None,
        }
    }

    /// Records the verdicts it is asked to apply.
    struct Recorder(std::sync::Mutex<Option<crate::policy::Verdicts>>);
    impl<T> crate::policy::Rewrite<T> for Recorder {
        fn rewrite(
            &self,
            item: T,
            v: &crate::policy::Verdicts,
        ) -> Result<T, crate::policy::Refusal> {
            *self.0.lock().unwrap() = Some(v.clone());
            Ok(item)
        }
    }

    #[test]
    fn user_fields_removed_by_any_action_respecting_fields_and_direction() {
        use crate::federation::userdata::fields_in;
        let mut names_only = rule("names", &["VS-NfD"], RuleAction::Reject);
        names_only.fields = vec!["displayname".into()];
        let mut alias_key = rule("alias", &["#intern"], RuleAction::Hold);
        alias_key.fields = vec!["canonical_alias".into()];
        let mut inbound_only = rule("in", &["EINGANG"], RuleAction::Drop);
        inbound_only.directions = vec![RuleDirection::Inbound];
        let p = policy(&[
            rule("geheim", &["GEHEIM"], RuleAction::Redact),
            names_only,
            alias_key,
            inbound_only,
        ]);
        let out = ctx("query_profile", Direction::Outbound);
        let body = br#"{"displayname":"Carol VS-NfD","avatar_url":"mxc://x/VS-NfD","m.note":"EINGANG GEHEIM"}"#;
        let fields = fields_in(out.endpoint, None, body).unwrap();
        let v: Vec<FieldVerdict> = fields.iter().map(|f| p.user_field(&out, f)).collect();
        assert_eq!(
            v,
            [
                FieldVerdict::Remove {
                    rule: "names".into()
                },
                FieldVerdict::Allow, // the `fields` filter: avatar_url is not a displayname
                FieldVerdict::Remove {
                    rule: "geheim".into()
                },
            ]
        );
        let f = &fields_in(out.endpoint, None, br#"{"displayname":"EINGANG"}"#).unwrap()[0];
        assert_eq!(
            p.user_field(&out, f),
            FieldVerdict::Allow,
            "inbound-only rule on outbound data"
        );
        assert_eq!(
            p.user_field(&ctx("query_profile", Direction::Inbound), f),
            FieldVerdict::Remove { rule: "in".into() }
        );
        // The key (`canonical_alias`) and the kind name (`alias`) both select a field.
        let rooms = ctx("public_rooms_get", Direction::Outbound);
        let body = br##"{"chunk":[{"room_id":"!a:b","name":"#intern","canonical_alias":"#intern:hs1.test"}]}"##;
        let fields = fields_in(rooms.endpoint, None, body).unwrap();
        assert_eq!(p.user_field(&rooms, &fields[0]), FieldVerdict::Allow);
        assert_eq!(
            p.user_field(&rooms, &fields[1]),
            FieldVerdict::Remove {
                rule: "alias".into()
            }
        );
    }

    #[test]
    fn decide_response_collects_field_removals_in_the_data_direction() {
        use crate::federation::userdata::fields_in;
        use crate::policy::{decide_response, Release, Units};
        let mut out_only = rule("out", &["GEHEIM"], RuleAction::Redact);
        out_only.directions = vec![RuleDirection::Outbound];
        let p = policy(&[out_only]);
        let body = br#"{"displayname":"GEHEIM","avatar_url":"mxc://x/y"}"#;
        let release = || Release {
            status: http::StatusCode::OK,
            headers: http::HeaderMap::new(),
            body: bytes::Bytes::from_static(body),
        };
        // An inbound request (remote asks hs1's profile): the answer is outbound data.
        let c = ctx("query_profile", Direction::Inbound);
        let units = Units {
            user_fields: fields_in(c.endpoint, None, body).unwrap(),
            ..Default::default()
        };
        let rec = Recorder(Default::default());
        decide_response(&p, &c, &units, release(), &rec).unwrap();
        let v = rec.0.lock().unwrap().take().expect("rewrite asked for");
        assert_eq!(v.remove_fields.len(), 1);
        assert_eq!(v.remove_fields[0].path.to_string(), "/displayname");
        assert_eq!(v.remove_fields[0].rule, "out");
        // The answer to an outbound request is inbound data: the outbound-only rule is silent.
        let c = ctx("query_profile", Direction::Outbound);
        let rec = Recorder(Default::default());
        decide_response(&p, &c, &units, release(), &rec).unwrap();
        assert!(rec.0.lock().unwrap().is_none(), "nothing to rewrite");
    }

    #[test]
    fn to_device_judged_per_device_and_the_rest_of_the_edu_as_a_whole() {
        use crate::federation::userdata::to_device_in;
        use crate::policy::{decide, Forward, Units};
        let p = policy(&[rule("geheim", &["GEHEIM"], RuleAction::Redact)]);
        let c = ctx("send_transaction", Direction::Outbound);
        let clean_sender = br#"{"edu_type":"m.direct_to_device","content":{"sender":"@a:hs1.test","type":"m.x","message_id":"m1","messages":{"@bob:hs2.test":{"P":{"t":"GEHEIM"},"L":{"t":"ok"}}}}}"#;
        let marked_sender = br#"{"edu_type":"m.direct_to_device","content":{"sender":"@a:hs1.test","type":"GEHEIM","message_id":"m2","messages":{"@bob:hs2.test":{"P":{"t":"GEHEIM"}}}}}"#;
        let marked_device = br#"{"edu_type":"m.direct_to_device","content":{"sender":"@a:hs1.test","type":"m.x","message_id":"m3","messages":{"@bob:hs2.test":{"GEHEIM":{"t":"ok"}}}}}"#;
        let raws: Vec<&RawValue> = [&clean_sender[..], &marked_sender[..], &marked_device[..]]
            .iter()
            .map(|b| serde_json::from_slice(b).unwrap())
            .collect();
        let edus: Vec<EduView> = raws.iter().map(|r| EduView::parse(r).unwrap()).collect();
        // edu(): a to-device EDU is not dropped for its messages, only for the rest.
        assert_eq!(p.edu(&c, &edus[0]), EduVerdict::Allow);
        // The sender's type, and a recipient device id a sender chose, drop the EDU.
        for marked in &edus[1..] {
            assert_eq!(
                p.edu(&c, marked),
                EduVerdict::Drop {
                    rule: "geheim".into()
                }
            );
        }
        let to_device = edus
            .iter()
            .enumerate()
            .flat_map(|(i, e)| to_device_in(i, e).unwrap())
            .collect();
        let units = Units {
            edus,
            to_device,
            ..Default::default()
        };
        let fwd = Forward {
            method: http::Method::PUT,
            path_and_query: "/_matrix/federation/v1/send/t".into(),
            headers: http::HeaderMap::new(),
            body: bytes::Bytes::new(),
        };
        let rec = Recorder(Default::default());
        decide(&p, &c, &units, fwd, &rec).unwrap();
        let v = rec.0.lock().unwrap().take().unwrap();
        assert_eq!(
            v.drop_edus.iter().map(|m| m.pos).collect::<Vec<_>>(),
            [1, 2]
        );
        // Per device: only the marked message of the EDU that was not dropped whole.
        assert_eq!(v.drop_to_device.len(), 1);
        assert_eq!(
            (
                v.drop_to_device[0].edu,
                v.drop_to_device[0].user_id.as_str(),
                v.drop_to_device[0].device_id.as_str()
            ),
            (0, "@bob:hs2.test", "P")
        );
    }

    #[test]
    fn bad_rules_are_refused() {
        assert!(matches!(
            Rules::compile(&[rule("e", &[], RuleAction::Redact)]),
            Err(RuleError::Empty { .. })
        ));
        let mut bad = rule("r", &[], RuleAction::Redact);
        bad.regex = Some("(".into());
        assert!(matches!(
            Rules::compile(&[bad]),
            Err(RuleError::Regex { .. })
        ));
        assert!(matches!(
            Rules::compile(&[
                rule("d", &["a"], RuleAction::Redact),
                rule("d", &["b"], RuleAction::Redact)
            ]),
            Err(RuleError::Duplicate { .. })
        ));
    }
}
