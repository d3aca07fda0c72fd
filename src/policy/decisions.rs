//! Decision records: what the policy decided for every unit of a request or response, and why.
//!
//! # Design notes
//!
//! * **One record per unit.** [`super::decide_recorded`] and [`super::decide_response_recorded`]
//!   return a [`UnitDecision`] for every PDU, non-PDU event, EDU, to-device message and
//!   user-data field of the body — allowed ones included, so an auditor sees what crossed.
//!   A record names the unit (kind, position, event id, room, sender, type), the policy's
//!   verdict and its deciding rule, what happened to the bytes ([`Effect`]), every rule that
//!   matched ([`RuleHit`]: layer, rule, action, field, byte span, masked excerpt) and, when the
//!   label layer refused the unit, the effective label and the destination's clearance
//!   ([`LabelFinding`]).
//! * **No second scan.** The findings come out of the same call that decides the verdict: the
//!   policy's `explain_*` methods ([`super::Policy::explain_pdu`], …) return the verdict and add
//!   their findings. `check_units` runs unchanged over a [`Recording`] wrapper that answers each
//!   unit question through the `explain_*` method of the real policy and keeps the findings
//!   per unit (keyed by the address of the unit's bytes); the records are assembled afterwards
//!   from those findings and the [`Verdicts`]. `Layers` names the layer of each finding, and a
//!   layer that refuses without findings (config rules, media, opaque content) is named with
//!   its rule.
//! * **Event ids.** A PDU's event id is its `event_id` (room versions 1–2) or its reference hash,
//!   computed through [`super::pause::RoomGate::event_id`]: for every PDU when the caller asks
//!   for records, for the refused ones only (their log line) otherwise.
//! * **Visible.** Every record counts in `grenzwacht_decisions_total{direction,verdict,unit}`
//!   (fixed label values); a record that is not a plain allow is logged (`decision`, with event
//!   id, sender, room, verdict, effect and rule), allowed units at debug level.
use std::collections::HashMap;
use std::sync::Mutex;

use serde::Serialize;

use super::permit::{check_units, Units, Verdicts};
use super::{
    Decision, EduVerdict, ExchangeCtx, FieldVerdict, PduVerdict, Policy, Refusal, RequestText,
    ToDeviceMessage, UserField,
};
use crate::federation::pdu::{EduView, EventView, PduView};
use crate::telemetry::{self as tm, Direction};

/// The kind of unit a record is about.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum UnitKind {
    Pdu,
    /// A non-PDU event (stripped state, templates, partial events).
    Event,
    Edu,
    /// One recipient device's message of a to-device EDU.
    ToDevice,
    /// A user-data field of a response (profile, device, directory).
    Field,
}

impl UnitKind {
    pub const ALL: [UnitKind; 5] = [
        UnitKind::Pdu,
        UnitKind::Event,
        UnitKind::Edu,
        UnitKind::ToDevice,
        UnitKind::Field,
    ];
    /// The `unit` label of `grenzwacht_decisions_total`.
    pub fn as_str(self) -> &'static str {
        match self {
            UnitKind::Pdu => "pdu",
            UnitKind::Event => "event",
            UnitKind::Edu => "edu",
            UnitKind::ToDevice => "to_device",
            UnitKind::Field => "field",
        }
    }
}

/// What the policy decided for a unit.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum UnitVerdict {
    Allow,
    Redact,
    Hold,
    Reject,
    /// An EDU, a to-device message or a user-data field removed.
    Drop,
    /// A PDU left out (its room is paused, or the receiver would reject it).
    Withhold,
    /// Not judged: the exchange was refused before the policy came to this unit.
    Unjudged,
}

impl UnitVerdict {
    pub const ALL: [UnitVerdict; 7] = [
        UnitVerdict::Allow,
        UnitVerdict::Redact,
        UnitVerdict::Hold,
        UnitVerdict::Reject,
        UnitVerdict::Drop,
        UnitVerdict::Withhold,
        UnitVerdict::Unjudged,
    ];
    /// The `verdict` label of `grenzwacht_decisions_total`.
    pub fn as_str(self) -> &'static str {
        match self {
            UnitVerdict::Allow => "allow",
            UnitVerdict::Redact => "redact",
            UnitVerdict::Hold => "hold",
            UnitVerdict::Reject => "reject",
            UnitVerdict::Drop => "drop",
            UnitVerdict::Withhold => "withhold",
            UnitVerdict::Unjudged => "unjudged",
        }
    }
    /// The verdict and rule of a PDU/event verdict.
    pub fn of_pdu(v: &PduVerdict) -> (UnitVerdict, Option<&str>) {
        match v {
            PduVerdict::Allow => (UnitVerdict::Allow, None),
            PduVerdict::Redact { rule } => (UnitVerdict::Redact, Some(rule)),
            PduVerdict::Hold { rule } => (UnitVerdict::Hold, Some(rule)),
            PduVerdict::Reject { rule } => (UnitVerdict::Reject, Some(rule)),
        }
    }
    fn of_edu(v: &EduVerdict) -> (UnitVerdict, Option<&str>) {
        match v {
            EduVerdict::Allow => (UnitVerdict::Allow, None),
            EduVerdict::Drop { rule } => (UnitVerdict::Drop, Some(rule)),
        }
    }
    fn of_field(v: &FieldVerdict) -> (UnitVerdict, Option<&str>) {
        match v {
            FieldVerdict::Allow => (UnitVerdict::Allow, None),
            FieldVerdict::Remove { rule } => (UnitVerdict::Drop, Some(rule)),
        }
    }
}

/// What happened to the unit's bytes.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum Effect {
    /// Crossed as received.
    Crossed,
    /// Crossed redacted (redact, hold, and reject inside a transaction).
    Redacted,
    /// Left out of the body.
    Withheld,
    /// Held for review: taken over by the hold queue, crosses after the decision.
    Held,
    /// Queued behind a held event of its room: crosses after that event was decided.
    Queued,
    /// Removed (EDU, to-device message, user-data field).
    Dropped,
    /// The whole exchange was refused: nothing of it crossed.
    Refused,
}

impl Effect {
    pub fn as_str(self) -> &'static str {
        match self {
            Effect::Crossed => "crossed",
            Effect::Redacted => "redacted",
            Effect::Withheld => "withheld",
            Effect::Held => "held",
            Effect::Queued => "queued",
            Effect::Dropped => "dropped",
            Effect::Refused => "refused",
        }
    }
}

/// One rule that matched a unit (whether or not it decided).
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct RuleHit {
    /// The policy layer (`config`, `media`, `dlp`, `labels`, `opaque`).
    pub layer: &'static str,
    /// The rule id as the layer names it (DLP: the rule file's id, without `dlp:`).
    pub rule: String,
    /// What the rule asks for (`redact`, `hold`, `reject`, `drop`, `tag`, …).
    pub action: String,
    /// A rule of a `mode = "shadow"` file: recorded, not applied.
    pub shadow: bool,
    /// The field the match is in (`body`, `formatted_body`, `content.x.y`, …).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub field: Option<String>,
    /// Byte span in the field's text (in a generic field: in the string, key or number at
    /// `field`, not in the field's blob).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub span: Option<(usize, usize)>,
    /// The matched text masked (at most four characters shown), never the content.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub excerpt: Option<String>,
}

impl RuleHit {
    /// A finding that only names its rule (a layer without spans).
    pub fn rule_only(layer: &'static str, rule: &str, action: &str) -> RuleHit {
        RuleHit {
            layer,
            rule: rule.to_string(),
            action: action.to_string(),
            shadow: false,
            field: None,
            span: None,
            excerpt: None,
        }
    }
}

/// What the label layer saw when it refused a unit: display markings, never content.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct LabelFinding {
    /// The effective label's display marking (the event's own label, else the room's, else
    /// the side's default); `None` when it does not parse.
    pub label: Option<String>,
    /// The display marking of the clearance the unit was released against.
    pub clearance: Option<String>,
    /// The label rule (`label:deny`, `label:mismatch`, …).
    pub rule: String,
}

/// What a policy adds to a verdict through its `explain_*` methods.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct Findings {
    pub hits: Vec<RuleHit>,
    pub label: Option<LabelFinding>,
}

/// The record of one unit.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct UnitDecision {
    pub kind: UnitKind,
    /// PDUs and events: the position among the body's events (as in [`Units`]); EDUs and
    /// to-device messages: the EDU's index; fields: the index among the response's fields.
    pub pos: usize,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub event_id: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub room_id: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub sender: Option<String>,
    /// Event type, EDU type, to-device event type, or the field kind.
    #[serde(rename = "type", skip_serializing_if = "Option::is_none")]
    pub unit_type: Option<String>,
    /// To-device: `user_id device_id` of the recipient; fields: the field's path.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub target: Option<String>,
    pub verdict: UnitVerdict,
    /// The rule that decided (the verdict's rule); `None` for allow.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub rule: Option<String>,
    pub effect: Effect,
    /// Every rule that matched, deciding or not (shadow and tag matches too).
    pub hits: Vec<RuleHit>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub label: Option<LabelFinding>,
}

/// What the policy answered for one unit during `check_units`.
struct Seen {
    verdict: UnitVerdict,
    rule: Option<String>,
    found: Findings,
}

/// A policy that answers every unit question through the `explain_*` method of the policy it
/// wraps and keeps the findings, keyed by unit kind and the address of the unit's bytes.
pub(crate) struct Recording<'p> {
    inner: &'p dyn Policy,
    seen: Mutex<HashMap<(UnitKind, usize), Seen>>,
}

fn key<T: ?Sized>(r: &T) -> usize {
    r as *const T as *const u8 as usize
}

impl<'p> Recording<'p> {
    pub(crate) fn new(inner: &'p dyn Policy) -> Self {
        Recording {
            inner,
            seen: Mutex::new(HashMap::new()),
        }
    }
    fn note(
        &self,
        kind: UnitKind,
        at: usize,
        (verdict, rule): (UnitVerdict, Option<&str>),
        found: Findings,
    ) {
        let mut seen = self
            .seen
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner);
        seen.insert(
            (kind, at),
            Seen {
                verdict,
                rule: rule.map(str::to_string),
                found,
            },
        );
    }
}

impl Policy for Recording<'_> {
    fn request(&self, ctx: &ExchangeCtx) -> Decision {
        self.inner.request(ctx)
    }
    fn prepare(&self, ctx: &ExchangeCtx, units: &Units<'_>) {
        self.inner.prepare(ctx, units)
    }
    fn pdu(&self, ctx: &ExchangeCtx, pdu: &PduView<'_>) -> PduVerdict {
        let mut f = Findings::default();
        let v = self.inner.explain_pdu(ctx, pdu, &mut f);
        self.note(UnitKind::Pdu, key(pdu.content), UnitVerdict::of_pdu(&v), f);
        v
    }
    fn event(&self, ctx: &ExchangeCtx, event: &EventView<'_>) -> PduVerdict {
        let mut f = Findings::default();
        let v = self.inner.explain_event(ctx, event, &mut f);
        self.note(
            UnitKind::Event,
            key(event.content),
            UnitVerdict::of_pdu(&v),
            f,
        );
        v
    }
    fn edu(&self, ctx: &ExchangeCtx, edu: &EduView<'_>) -> EduVerdict {
        let mut f = Findings::default();
        let v = self.inner.explain_edu(ctx, edu, &mut f);
        self.note(UnitKind::Edu, key(edu.content), UnitVerdict::of_edu(&v), f);
        v
    }
    fn response(&self, ctx: &ExchangeCtx) -> Decision {
        self.inner.response(ctx)
    }
    fn user_field(&self, ctx: &ExchangeCtx, field: &UserField<'_>) -> FieldVerdict {
        let mut f = Findings::default();
        let v = self.inner.explain_user_field(ctx, field, &mut f);
        self.note(UnitKind::Field, key(field), UnitVerdict::of_field(&v), f);
        v
    }
    fn to_device(&self, ctx: &ExchangeCtx, msg: &ToDeviceMessage<'_>) -> EduVerdict {
        let mut f = Findings::default();
        let v = self.inner.explain_to_device(ctx, msg, &mut f);
        self.note(
            UnitKind::ToDevice,
            key(msg.content),
            UnitVerdict::of_edu(&v),
            f,
        );
        v
    }
    fn redacted_pdu(&self, ctx: &ExchangeCtx, pdu: &PduView<'_>) -> PduVerdict {
        self.inner.redacted_pdu(ctx, pdu)
    }
    fn redacted_event(&self, ctx: &ExchangeCtx, event: &EventView<'_>) -> PduVerdict {
        self.inner.redacted_event(ctx, event)
    }
    fn request_text(&self, ctx: &ExchangeCtx, text: &RequestText<'_>) -> Decision {
        self.inner.request_text(ctx, text)
    }
    fn response_text(&self, ctx: &ExchangeCtx, texts: &[RequestText<'_>]) -> Decision {
        self.inner.response_text(ctx, texts)
    }
}

/// `check_units` over a [`Recording`] of `policy`; the records go to `records` (every PDU with
/// its event id) when given, and are counted and logged either way.
pub(super) fn check_units_recorded(
    policy: &dyn Policy,
    ctx: &ExchangeCtx,
    units: &Units<'_>,
    records: Option<&mut Vec<UnitDecision>>,
) -> Result<Verdicts, Refusal> {
    let rec = Recording::new(policy);
    let result = check_units(&rec, ctx, units);
    let all_ids = records.is_some();
    let list = rec.assemble(units, result.as_ref(), all_ids);
    publish(ctx.direction, &list);
    if let Some(out) = records {
        out.extend(list);
    }
    result
}

/// The PDU verdict of a recorded verdict and rule (`None` for verdicts a PDU verdict does not
/// have: withhold, drop, unjudged).
fn as_pdu_verdict(v: UnitVerdict, rule: Option<&str>) -> Option<PduVerdict> {
    let rule = || rule.unwrap_or_default().to_string();
    Some(match v {
        UnitVerdict::Allow => PduVerdict::Allow,
        UnitVerdict::Redact => PduVerdict::Redact { rule: rule() },
        UnitVerdict::Hold => PduVerdict::Hold { rule: rule() },
        UnitVerdict::Reject => PduVerdict::Reject { rule: rule() },
        UnitVerdict::Drop | UnitVerdict::Withhold | UnitVerdict::Unjudged => return None,
    })
}

/// The effect of a judged PDU or event at `pos`.
fn event_effect(verdicts: Result<&Verdicts, &Refusal>, pos: usize) -> Effect {
    match verdicts {
        Err(_) => Effect::Refused,
        Ok(v) if v.withhold.iter().any(|m| m.pos == pos) => Effect::Withheld,
        Ok(v) if v.hold.iter().any(|m| m.pos == pos) => Effect::Held,
        Ok(v) if v.queue.iter().any(|m| m.pos == pos) => Effect::Queued,
        Ok(v) if v.redact.iter().any(|m| m.pos == pos) => Effect::Redacted,
        Ok(_) => Effect::Crossed,
    }
}

impl Recording<'_> {
    /// The records of every unit of `units`, after `check_units` ran over `self`.
    pub(crate) fn assemble(
        self,
        units: &Units<'_>,
        verdicts: Result<&Verdicts, &Refusal>,
        all_ids: bool,
    ) -> Vec<UnitDecision> {
        let mut seen = self
            .seen
            .into_inner()
            .unwrap_or_else(std::sync::PoisonError::into_inner);
        let refused = verdicts.is_err();
        let mut out = Vec::with_capacity(
            units.pdus.len()
                + units.omit.len()
                + units.events.len()
                + units.edus.len()
                + units.to_device.len()
                + units.user_fields.len(),
        );
        // Withheld before or after judging: the Verdicts say so (with the rule).
        let withheld = |pos: usize| -> Option<String> {
            verdicts
                .ok()?
                .withhold
                .iter()
                .find(|m| m.pos == pos)
                .map(|m| m.rule.clone())
        };
        let mut event_record = |kind: UnitKind,
                                pos: usize,
                                content_key: usize,
                                raw_id: Option<&str>,
                                room: Option<&str>,
                                sender: &str,
                                unit_type: &str,
                                compute_id: &dyn Fn() -> Option<String>|
         -> UnitDecision {
            let s = seen.remove(&(kind, content_key));
            let (verdict, rule, found) = match (withheld(pos), s) {
                (Some(rule), s) => (
                    UnitVerdict::Withhold,
                    Some(rule),
                    s.map(|s| s.found).unwrap_or_default(),
                ),
                (None, Some(s)) => (s.verdict, s.rule, s.found),
                (None, None) => (UnitVerdict::Unjudged, None, Findings::default()),
            };
            let effect = if verdict == UnitVerdict::Unjudged {
                Effect::Refused
            } else {
                event_effect(verdicts, pos)
            };
            let event_id = match raw_id {
                Some(id) => Some(id.to_string()),
                None if all_ids || verdict != UnitVerdict::Allow => compute_id(),
                None => None,
            };
            UnitDecision {
                kind,
                pos,
                event_id,
                room_id: room.map(str::to_string),
                sender: Some(sender.to_string()),
                unit_type: Some(unit_type.to_string()),
                target: None,
                verdict,
                rule,
                effect,
                hits: found.hits,
                label: found.label,
            }
        };
        for (i, (pdu, &pos)) in units.pdus.iter().zip(&units.pdu_pos).enumerate() {
            let compute = || {
                units
                    .rooms
                    .and_then(|g| g.event_id(pdu.raw, pdu.room_id.as_deref()))
            };
            let mut d = event_record(
                UnitKind::Pdu,
                pos,
                key(pdu.content),
                pdu.event_id.as_deref(),
                pdu.room_id.as_deref(),
                &pdu.sender,
                &pdu.event_type,
                &compute,
            );
            // As `check_units` decides: the guard's own integrity finding when more severe,
            // then a reviewer's decision on a held event.
            if let Some(mut v) = as_pdu_verdict(d.verdict, d.rule.as_deref()) {
                if let Some(Some(finding)) = units.pdu_findings.get(i) {
                    if finding.severity() > v.severity() {
                        v = finding.clone();
                        let (fv, rule) = UnitVerdict::of_pdu(&v);
                        d.hits.push(RuleHit::rule_only(
                            "integrity",
                            rule.unwrap_or_default(),
                            fv.as_str(),
                        ));
                    }
                }
                if let Some((_, r)) = units.reviewed.iter().find(|(p, _)| *p == pos) {
                    v = super::permit::reviewed(v, *r);
                }
                let (verdict, rule) = UnitVerdict::of_pdu(&v);
                d.verdict = verdict;
                d.rule = rule.map(str::to_string);
            }
            out.push(d);
        }
        // Malformed PDUs of a transaction have a position but no view.
        for &pos in &units.omit {
            if units.pdu_pos.contains(&pos) {
                continue;
            }
            out.push(UnitDecision {
                kind: UnitKind::Pdu,
                pos,
                event_id: None,
                room_id: None,
                sender: None,
                unit_type: None,
                target: None,
                verdict: UnitVerdict::Withhold,
                rule: withheld(pos).or_else(|| Some("unacceptable".into())),
                effect: if refused {
                    Effect::Refused
                } else {
                    Effect::Withheld
                },
                hits: Vec::new(),
                label: None,
            });
        }
        let hint = units.room_hint();
        for (ev, &pos) in units.events.iter().zip(&units.event_pos) {
            let room = ev.room_id.as_deref().or(hint.as_deref());
            out.push(event_record(
                UnitKind::Event,
                pos,
                key(ev.content),
                ev.event_id.as_deref(),
                room,
                &ev.sender,
                &ev.event_type,
                &|| None,
            ));
        }
        let dropped_edu = |i: usize| -> Option<String> {
            verdicts
                .ok()?
                .drop_edus
                .iter()
                .find(|m| m.pos == i)
                .map(|m| m.rule.clone())
        };
        for (i, edu) in units.edus.iter().enumerate() {
            let s = seen.remove(&(UnitKind::Edu, key(edu.content)));
            let (verdict, rule, found) = match (dropped_edu(i), s) {
                (Some(rule), s) => (
                    UnitVerdict::Drop,
                    Some(rule),
                    s.map(|s| s.found).unwrap_or_default(),
                ),
                (None, Some(s)) => (s.verdict, s.rule, s.found),
                (None, None) => (UnitVerdict::Unjudged, None, Findings::default()),
            };
            let effect = match (refused, verdict) {
                (true, _) => Effect::Refused,
                (false, UnitVerdict::Drop) => Effect::Dropped,
                _ => Effect::Crossed,
            };
            out.push(UnitDecision {
                kind: UnitKind::Edu,
                pos: i,
                event_id: None,
                room_id: None,
                sender: None,
                unit_type: Some(edu.edu_type.to_string()),
                target: None,
                verdict,
                rule,
                effect,
                hits: found.hits,
                label: found.label,
            });
        }
        for msg in &units.to_device {
            let s = seen.remove(&(UnitKind::ToDevice, key(msg.content)));
            let dropped = verdicts.ok().and_then(|v| {
                v.drop_to_device
                    .iter()
                    .find(|d| {
                        d.edu == msg.edu && d.user_id == msg.user_id && d.device_id == msg.device_id
                    })
                    .map(|d| d.rule.clone())
            });
            let (verdict, rule, found) = match (dropped_edu(msg.edu).or(dropped), s) {
                (Some(rule), s) => (
                    UnitVerdict::Drop,
                    Some(rule),
                    s.map(|s| s.found).unwrap_or_default(),
                ),
                (None, Some(s)) => (s.verdict, s.rule, s.found),
                (None, None) => (UnitVerdict::Unjudged, None, Findings::default()),
            };
            let effect = match (refused, verdict) {
                (true, _) => Effect::Refused,
                (false, UnitVerdict::Drop) => Effect::Dropped,
                _ => Effect::Crossed,
            };
            out.push(UnitDecision {
                kind: UnitKind::ToDevice,
                pos: msg.edu,
                event_id: msg.message_id.as_deref().map(str::to_string),
                room_id: None,
                sender: msg.sender.as_deref().map(str::to_string),
                unit_type: msg.event_type.as_deref().map(str::to_string),
                target: Some(format!("{} {}", msg.user_id, msg.device_id)),
                verdict,
                rule,
                effect,
                hits: found.hits,
                label: found.label,
            });
        }
        for (i, field) in units.user_fields.iter().enumerate() {
            let s = seen.remove(&(UnitKind::Field, key(field)));
            let (verdict, rule, found) = match s {
                Some(s) => (s.verdict, s.rule, s.found),
                None => (UnitVerdict::Unjudged, None, Findings::default()),
            };
            let effect = match (refused, verdict) {
                (true, _) => Effect::Refused,
                (false, UnitVerdict::Drop) => Effect::Dropped,
                (false, UnitVerdict::Unjudged) => Effect::Refused,
                _ => Effect::Crossed,
            };
            out.push(UnitDecision {
                kind: UnitKind::Field,
                pos: i,
                event_id: None,
                room_id: field.room_id.as_deref().map(str::to_string),
                sender: field.user_id.as_deref().map(str::to_string),
                unit_type: Some(field.kind.as_str().to_string()),
                target: Some(field.path.to_string()),
                verdict,
                rule,
                effect,
                hits: found.hits,
                label: found.label,
            });
        }
        out
    }
}

/// Counts the records in `grenzwacht_decisions_total` (one increment per label set) and logs
/// each one that is not a plain allow.
pub fn publish(direction: Direction, records: &[UnitDecision]) {
    let mut counts: [[u64; UnitVerdict::ALL.len()]; UnitKind::ALL.len()] = Default::default();
    for r in records {
        let k = UnitKind::ALL.iter().position(|x| *x == r.kind).unwrap_or(0);
        let v = UnitVerdict::ALL
            .iter()
            .position(|x| *x == r.verdict)
            .unwrap_or(0);
        counts[k][v] += 1;
        log(direction, r);
    }
    for (k, row) in counts.iter().enumerate() {
        for (v, &n) in row.iter().enumerate() {
            if n > 0 {
                tm::record_decisions(
                    direction,
                    UnitVerdict::ALL[v].as_str(),
                    UnitKind::ALL[k].as_str(),
                    n,
                );
            }
        }
    }
}

/// The decision line of one record: event id, sender, room, verdict, effect and rule.
fn log(direction: Direction, r: &UnitDecision) {
    let mut rules: Vec<&str> = Vec::new();
    for h in &r.hits {
        if !rules.contains(&h.rule.as_str()) {
            rules.push(&h.rule);
        }
    }
    macro_rules! line {
        ($lvl:ident) => {
            tracing::$lvl!(
                direction = direction.as_str(),
                unit = r.kind.as_str(),
                pos = r.pos,
                event_id = r.event_id.as_deref().unwrap_or(""),
                sender = r.sender.as_deref().unwrap_or(""),
                room = r.room_id.as_deref().unwrap_or(""),
                unit_type = r.unit_type.as_deref().unwrap_or(""),
                target = r.target.as_deref().unwrap_or(""),
                verdict = r.verdict.as_str(),
                effect = r.effect.as_str(),
                rule = r.rule.as_deref().unwrap_or(""),
                matched = %rules.join(","),
                label = r.label.as_ref().and_then(|l| l.label.as_deref()).unwrap_or(""),
                clearance = r.label.as_ref().and_then(|l| l.clearance.as_deref()).unwrap_or(""),
                "decision"
            )
        };
    }
    if r.verdict == UnitVerdict::Allow && r.effect == Effect::Crossed {
        line!(debug);
    } else {
        line!(info);
    }
}

#[cfg(test)]
mod tests;
