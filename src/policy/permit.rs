//! Permits: the only way to forward a request or release a response.
use bytes::Bytes;
use http::{HeaderMap, Method, StatusCode};

use super::pause::{self, RoomGate, Screen, Screened, Unit};
use super::{
    Decision, Direction, EduVerdict, ExchangeCtx, FieldVerdict, PduVerdict, Policy, Refusal,
    RefusalReason,
};
use crate::federation::catalog::Handler;
use crate::federation::pdu::{EduView, EventView, PduView};
use crate::federation::userdata::{FieldKind, FieldPath, ToDeviceMessage, UserField};

/// Proof that the policy released `T`. Only [`decide`], [`decide_response`] and the
/// crate-private replay of a stored transaction decision construct it; nothing outside the
/// `policy` module can:
///
/// Anyone may hold and read one:
///
/// ```
/// use grenzwacht::policy::{Forward, Permit};
/// fn body(p: &Permit<Forward>) -> &[u8] {
///     &p.get().body
/// }
/// ```
///
/// ```compile_fail
/// use grenzwacht::policy::{Forward, Permit};
/// fn forge(f: Forward) -> Permit<Forward> {
///     Permit { inner: f } // private field: does not compile
/// }
/// ```
///
/// ```compile_fail
/// use grenzwacht::policy::{Forward, Permit};
/// fn forge(f: Forward) -> Permit<Forward> {
///     Permit::issue(f) // restricted to the policy module: does not compile
/// }
/// ```
///
/// ```compile_fail
/// // The replay of a stored decision is crate-private as well.
/// use grenzwacht::policy::replay::replay;
/// ```
#[derive(Debug)]
pub struct Permit<T> {
    inner: T,
}

impl<T> Permit<T> {
    /// Only the policy module issues permits ([`decide`], [`decide_response`] and the replay of
    /// a stored decision in `policy::replay`).
    pub(super) fn issue(inner: T) -> Self {
        Permit { inner }
    }
    /// A request from the other half of a split appliance, in a frame the verifier accepted:
    /// the other half's policy decided it (`crate::split`). Only the split receive loop has a
    /// [`Crossed`](crate::split::Crossed) to give.
    pub(crate) fn crossed(inner: T, _proof: crate::split::Crossed) -> Self {
        Permit { inner }
    }
    pub fn get(&self) -> &T {
        &self.inner
    }
    /// Consumes the permit; the forwarding layer calls this at the last moment.
    pub fn into_inner(self) -> T {
        self.inner
    }
}

/// A request ready to go to the other side: method, path and query exactly as received,
/// end-to-end headers, body bytes.
#[derive(Debug, Clone)]
pub struct Forward {
    pub method: Method,
    /// Path and query bytes exactly as received (X-Matrix signs them).
    pub path_and_query: String,
    pub headers: HeaderMap,
    pub body: Bytes,
}

/// A response ready to go back to the requester.
#[derive(Debug, Clone)]
pub struct Release {
    pub status: StatusCode,
    pub headers: HeaderMap,
    pub body: Bytes,
}

/// The parsed units of one request or response body that the policy must see.
///
/// `pdu_pos`/`event_pos` give each unit's position among all events of the body (the order of
/// `federation::pdu::pdus_in`; for a transaction, the index in `pdus`), which is what a
/// [`Rewrite`] needs to modify the right one.
#[derive(Debug, Default)]
pub struct Units<'a> {
    pub pdus: Vec<PduView<'a>>,
    pub pdu_pos: Vec<usize>,
    /// Events that are not full PDUs (stripped state, templates, partial events).
    pub events: Vec<EventView<'a>>,
    pub event_pos: Vec<usize>,
    pub edus: Vec<EduView<'a>>,
    /// Findings of the guard's own integrity checks, one per PDU (empty = none): merged with
    /// the policy's verdict for that PDU, the most severe wins.
    pub pdu_findings: Vec<Option<PduVerdict>>,
    /// User-typed fields of a user-data or directory response (`federation::userdata`).
    pub user_fields: Vec<UserField<'a>>,
    /// Per-device messages of the to-device EDUs among `edus` (`ToDeviceMessage::edu` is the
    /// index in `edus`).
    pub to_device: Vec<ToDeviceMessage<'a>>,
    /// The text of a response outside its events and user-data fields
    /// (`federation::response_text`), judged as a whole ([`Policy::response_text`]).
    pub response_texts: Vec<super::RequestText<'a>>,
    /// Paused rooms and re-judgement of redacted events ([`super::pause`]); `None`: neither.
    pub rooms: Option<&'a dyn RoomGate>,
    /// Positions (as in `pdu_pos`) of PDUs the receiver would itself reject (`proxy::perpdu`;
    /// a malformed PDU of a transaction has a position but no view): left out of the
    /// transaction or response (`Verdicts::withhold`), never judged.
    pub omit: Vec<usize>,
    /// Reviewers' decisions on held PDUs, by position (as in `pdu_pos`): the guard's own
    /// delivery of held traffic (`proxy::hold`). A hold verdict on a released PDU becomes
    /// allow, any verdict on a rejected PDU at least redact; nothing else changes.
    pub reviewed: Vec<(usize, crate::review::Decision)>,
}

impl Units<'_> {
    /// The room of the body's PDUs and room-bearing events, when there is exactly one.
    pub fn room_hint(&self) -> Option<String> {
        let mut rooms = self
            .pdus
            .iter()
            .filter_map(|p| p.room_id.as_deref())
            .chain(self.events.iter().filter_map(|e| e.room_id.as_deref()));
        let first = rooms.next()?;
        rooms.all(|r| r == first).then(|| first.to_owned())
    }
}

/// One modification the policy asks for.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Modification {
    /// Position of the event among all events of the body (see [`Units`]), or EDU index.
    pub pos: usize,
    /// Room of the event, if known (room version lookup).
    pub room_id: Option<String>,
    /// The rule that asked for it (for logs and audit).
    pub rule: String,
}

/// A user-data field to remove from a response.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct FieldRemoval {
    pub path: FieldPath,
    pub kind: FieldKind,
    /// The rule that asked for it.
    pub rule: String,
}

/// One recipient device's message to remove from a to-device EDU.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ToDeviceDrop {
    /// Index of the EDU in the transaction's `edus`.
    pub edu: usize,
    pub user_id: String,
    /// Device id or `*`.
    pub device_id: String,
    pub rule: String,
}

/// What must change before a body may cross. Empty = forward as received.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Verdicts {
    /// Events to redact in transit (PDUs and non-PDU events alike, by position).
    pub redact: Vec<Modification>,
    /// EDUs to remove from a transaction.
    pub drop_edus: Vec<Modification>,
    /// User-data fields to remove from a response.
    pub remove_fields: Vec<FieldRemoval>,
    /// To-device messages to remove, per recipient device (never for an EDU in `drop_edus`).
    pub drop_to_device: Vec<ToDeviceDrop>,
    /// PDUs to remove from a transaction (their room is paused, [`super::pause`]) or from a
    /// transaction or response (the receiver would reject them, [`Units::omit`]).
    pub withhold: Vec<Modification>,
    /// PDUs held for review: removed from a transaction and taken over by the guard's hold
    /// queue (`proxy::hold`); the sender gets success for them. Only with a `RoomGate` that
    /// has a hold queue (`RoomGate::holds`); without one, hold acts as redact.
    pub hold: Vec<Modification>,
    /// PDUs of a room waiting behind a held event: removed from a transaction and queued
    /// behind it, in order (the sender gets success for them).
    pub queue: Vec<Modification>,
}

impl Verdicts {
    pub fn is_empty(&self) -> bool {
        self.redact.is_empty()
            && self.drop_edus.is_empty()
            && self.remove_fields.is_empty()
            && self.drop_to_device.is_empty()
            && self.withhold.is_empty()
            && self.hold.is_empty()
            && self.queue.is_empty()
    }
}

/// Applies [`Verdicts`] to a request or response (redaction, EDU removal, re-signing).
/// Implemented by the proxy layer; a failure refuses the exchange.
pub trait Rewrite<T> {
    fn rewrite(&self, item: T, verdicts: &Verdicts) -> Result<T, Refusal>;
}

/// Runs the policy over the request and every unit in it, applies the verdicts through
/// `rewrite`, and returns the permit.
pub fn decide(
    policy: &dyn Policy,
    ctx: &ExchangeCtx,
    units: &Units<'_>,
    forward: Forward,
    rewrite: &dyn Rewrite<Forward>,
) -> Result<Permit<Forward>, Refusal> {
    decide_recorded(policy, ctx, units, forward, rewrite, None)
}

/// [`decide`], appending the record of every unit to `records` ([`super::decisions`]; also
/// when the exchange is refused over a unit). Without `records` the decisions are still
/// counted and logged.
pub fn decide_recorded(
    policy: &dyn Policy,
    ctx: &ExchangeCtx,
    units: &Units<'_>,
    forward: Forward,
    rewrite: &dyn Rewrite<Forward>,
    records: Option<&mut Vec<super::UnitDecision>>,
) -> Result<Permit<Forward>, Refusal> {
    if let Decision::Refuse(r) = policy.request(ctx) {
        return Err(r);
    }
    check_request_text(policy, ctx, &forward)?;
    let verdicts = super::decisions::check_units_recorded(policy, ctx, units, records)?;
    let forward = if verdicts.is_empty() {
        forward
    } else {
        rewrite.rewrite(forward, &verdicts)?
    };
    Ok(Permit { inner: forward })
}

/// The text the request carries outside events, listed from the bytes about to be forwarded,
/// and the peer server's name (the destination of an outbound request: a name the protected
/// side chooses, which would cross in DNS, SNI and headers), judged piece by piece
/// ([`Policy::request_text`]); the first refusal refuses the request. Text that does not
/// decode is refused (400): nothing crosses that the guard did not read as the receiver will.
pub(crate) fn check_request_text(
    policy: &dyn Policy,
    ctx: &ExchangeCtx,
    forward: &Forward,
) -> Result<(), Refusal> {
    use crate::federation::request_text::{request_texts, RequestText, RequestTextError, TextKind};
    let texts = request_texts(
        ctx.endpoint,
        &forward.method,
        &forward.path_and_query,
        &forward.body,
    )
    .map_err(|e| match e {
        RequestTextError::PathMismatch => Refusal::new(
            StatusCode::INTERNAL_SERVER_ERROR,
            "M_UNKNOWN",
            RefusalReason::Internal,
            e.to_string(),
        ),
        RequestTextError::Body => Refusal::new(
            StatusCode::BAD_REQUEST,
            "M_NOT_JSON",
            RefusalReason::BadJson,
            e.to_string(),
        ),
        RequestTextError::Path { .. } | RequestTextError::Query(_) => Refusal::new(
            StatusCode::BAD_REQUEST,
            "M_INVALID_PARAM",
            RefusalReason::BadJson,
            e.to_string(),
        ),
    })?;
    let server = ctx.peer.as_deref().map(|p| RequestText {
        kind: TextKind::Server,
        name: match ctx.direction {
            Direction::Outbound => "destination",
            Direction::Inbound => "origin",
        },
        text: std::borrow::Cow::Borrowed(p),
    });
    for t in server.iter().chain(&texts) {
        if let Decision::Refuse(r) = policy.request_text(ctx, t) {
            return Err(r);
        }
    }
    Ok(())
}

/// Runs the policy over a response and every unit in it, applies the verdicts, returns the
/// permit.
pub fn decide_response(
    policy: &dyn Policy,
    ctx: &ExchangeCtx,
    units: &Units<'_>,
    release: Release,
    rewrite: &dyn Rewrite<Release>,
) -> Result<Permit<Release>, Refusal> {
    decide_response_recorded(policy, ctx, units, release, rewrite, None)
}

/// [`decide_response`], appending the record of every unit to `records` (as
/// [`decide_recorded`]; the records carry the direction the data flows).
pub fn decide_response_recorded(
    policy: &dyn Policy,
    ctx: &ExchangeCtx,
    units: &Units<'_>,
    release: Release,
    rewrite: &dyn Rewrite<Release>,
    records: Option<&mut Vec<super::UnitDecision>>,
) -> Result<Permit<Release>, Refusal> {
    // A response carries data the other way: the answer to an inbound request leaves the
    // protected side. Content rules see the direction the data flows.
    let data_ctx = ExchangeCtx {
        direction: ctx.direction.reverse(),
        ..ctx.clone()
    };
    let verdicts = super::decisions::check_units_recorded(policy, &data_ctx, units, records)?;
    if let Decision::Refuse(r) = policy.response(ctx) {
        return Err(r);
    }
    if let Decision::Refuse(r) = policy.response_text(&data_ctx, &units.response_texts) {
        return Err(r);
    }
    let release = if verdicts.is_empty() {
        release
    } else {
        rewrite.rewrite(release, &verdicts)?
    };
    Ok(Permit { inner: release })
}

/// Whether `verdict` lets the event cross redacted (a reject outside a transaction refuses the
/// exchange instead: nothing of the event crosses, so its redacted form need not be judged).
fn crosses_redacted(verdict: &PduVerdict, in_transaction: bool, holds: bool) -> bool {
    match verdict {
        PduVerdict::Allow => false,
        PduVerdict::Reject { .. } => in_transaction,
        // Held: nothing of the event crosses until a reviewer decided.
        PduVerdict::Hold { .. } => !holds,
        PduVerdict::Redact { .. } => true,
    }
}

/// A verdict after a reviewer's decision on the event (see [`Units::reviewed`]).
pub(super) fn reviewed(verdict: PduVerdict, decision: crate::review::Decision) -> PduVerdict {
    use crate::review::Decision as D;
    match (decision, verdict) {
        (D::Release, PduVerdict::Hold { .. }) => PduVerdict::Allow,
        (D::Reject, PduVerdict::Allow) => PduVerdict::Redact {
            rule: "review_rejected".into(),
        },
        (D::Reject, PduVerdict::Hold { rule }) => PduVerdict::Redact { rule },
        (_, v) => v,
    }
}

/// [`check_units`] for unit tests of policies.
#[cfg(test)]
pub(crate) fn check_units_for_tests(
    policy: &dyn Policy,
    ctx: &ExchangeCtx,
    units: &Units<'_>,
) -> Result<Verdicts, Refusal> {
    check_units(policy, ctx, units)
}

pub(super) fn check_units(
    policy: &dyn Policy,
    ctx: &ExchangeCtx,
    units: &Units<'_>,
) -> Result<Verdicts, Refusal> {
    // Every layer sees the whole unit set before judging any part of it (e.g. a room label
    // listed after the state it governs).
    policy.prepare(ctx, units);
    let in_transaction = ctx.endpoint.handler == Handler::Transaction;
    let holds = units.rooms.is_some_and(|g| g.holds());
    let mut v = Verdicts::default();
    let mut held = Vec::new();
    let mut apply =
        |verdict: PduVerdict, pos: usize, room_id: Option<String>| -> Result<(), Refusal> {
            match verdict {
                PduVerdict::Allow => Ok(()),
                // A transaction never loses a PDU (holes in the DAG): reject acts as redact there.
                PduVerdict::Reject { rule } if !in_transaction => Err(Refusal::forbidden(
                    RefusalReason::Policy,
                    format!("event refused by rule {rule}"),
                )),
                // Held for review: the hold queue takes a transaction's PDU over; any other
                // exchange carrying it is answered as for a paused room.
                PduVerdict::Hold { rule } if holds => {
                    if !in_transaction {
                        return Err(pause::not_found());
                    }
                    held.push(Modification { pos, room_id, rule });
                    Ok(())
                }
                // Without a review queue, hold applies redact.
                PduVerdict::Reject { rule }
                | PduVerdict::Redact { rule }
                | PduVerdict::Hold { rule } => {
                    v.redact.push(Modification { pos, room_id, rule });
                    Ok(())
                }
            }
        };
    // Paused rooms: their events are withheld from a transaction and refuse anything else.
    let mut screen = Screen::new(units.rooms, ctx.direction);
    let mut withhold = Vec::new();
    let mut queue = Vec::new();
    let mut withheld = |s: Screened, pos: usize| -> Result<bool, Refusal> {
        match s {
            Screened::Pass => Ok(false),
            Screened::Withhold { .. } | Screened::Queue { .. } if !in_transaction => {
                Err(pause::not_found())
            }
            Screened::Queue { room } => {
                queue.push(Modification {
                    pos,
                    room_id: Some(room),
                    rule: "room_held".into(),
                });
                Ok(true)
            }
            Screened::Withhold { room, rule } => {
                withhold.push(Modification {
                    pos,
                    room_id: Some(room),
                    rule,
                });
                Ok(true)
            }
        }
    };
    let omitted: Vec<Modification> = units
        .omit
        .iter()
        .map(|&pos| Modification {
            pos,
            room_id: None,
            rule: "unacceptable".into(),
        })
        .collect();
    for (i, (pdu, &pos)) in units.pdus.iter().zip(&units.pdu_pos).enumerate() {
        if units.omit.contains(&pos) {
            continue;
        }
        let unit = Unit::Pdu(pdu);
        if withheld(screen.before(&unit), pos)? {
            continue;
        }
        let mut verdict = policy.pdu(ctx, pdu);
        if let Some(Some(finding)) = units.pdu_findings.get(i) {
            if finding.severity() > verdict.severity() {
                verdict = finding.clone();
            }
        }
        if let Some((_, d)) = units.reviewed.iter().find(|(p, _)| *p == pos) {
            verdict = reviewed(verdict, *d);
        } else if let (PduVerdict::Hold { .. }, false) = (&verdict, in_transaction) {
            // An answer carrying an event a reviewer already decided follows the decision;
            // one still waiting answers 404 (below).
            if let Some(d) = units
                .rooms
                .and_then(|g| g.review_decision(ctx.direction, pdu.raw, pdu.room_id.as_deref()))
            {
                verdict = reviewed(verdict, d);
            }
        }
        if crosses_redacted(&verdict, in_transaction, holds)
            && withheld(screen.after(policy, ctx, &unit, &verdict), pos)?
        {
            continue;
        }
        if let (PduVerdict::Hold { .. }, true, true) = (&verdict, holds, in_transaction) {
            // Later PDUs of the room in this transaction queue behind it.
            if let Some(room) = units
                .rooms
                .and_then(|g| g.room(pdu.raw, pdu.room_id.as_deref()))
            {
                screen.held(room);
            }
        }
        apply(verdict, pos, pdu.room_id.as_deref().map(str::to_string))?;
    }
    // Stripped state (invites, knocks) carries no room id: it belongs to the room of the
    // body's PDUs when they are all of one room.
    let hint = units.room_hint();
    for (ev, &pos) in units.events.iter().zip(&units.event_pos) {
        let unit = Unit::Event(ev);
        if withheld(screen.before(&unit), pos)? {
            continue;
        }
        let verdict = match (&ev.room_id, &hint) {
            (None, Some(room)) => {
                let mut with_room = ev.clone();
                with_room.room_id = Some(std::borrow::Cow::Owned(room.clone()));
                policy.event(ctx, &with_room)
            }
            _ => policy.event(ctx, ev),
        };
        if crosses_redacted(&verdict, in_transaction, holds)
            && withheld(screen.after(policy, ctx, &unit, &verdict), pos)?
        {
            continue;
        }
        apply(verdict, pos, ev.room_id.as_deref().map(str::to_string))?;
    }
    v.withhold = withhold;
    v.withhold.extend(omitted);
    v.hold = held;
    v.queue = queue;
    for (i, edu) in units.edus.iter().enumerate() {
        if screen.edu_paused(edu) {
            v.drop_edus.push(Modification {
                pos: i,
                room_id: None,
                rule: "room_paused".into(),
            });
            continue;
        }
        if let EduVerdict::Drop { rule } = policy.edu(ctx, edu) {
            v.drop_edus.push(Modification {
                pos: i,
                room_id: None,
                rule,
            });
        }
    }
    // Per recipient device, for the to-device EDUs that were not dropped whole.
    for msg in &units.to_device {
        if v.drop_edus.iter().any(|m| m.pos == msg.edu) {
            continue;
        }
        if let EduVerdict::Drop { rule } = policy.to_device(ctx, msg) {
            v.drop_to_device.push(ToDeviceDrop {
                edu: msg.edu,
                user_id: msg.user_id.clone(),
                device_id: msg.device_id.clone(),
                rule,
            });
        }
    }
    for field in &units.user_fields {
        if let FieldVerdict::Remove { rule } = policy.user_field(ctx, field) {
            v.remove_fields.push(FieldRemoval {
                path: field.path.clone(),
                kind: field.kind,
                rule,
            });
        }
    }
    Ok(v)
}

#[cfg(test)]
mod response_tests;

#[cfg(test)]
mod tests {
    use super::*;
    use crate::federation::catalog;
    use crate::policy::dlp::layer::DlpPolicy;
    use crate::policy::dlp::RuleSet;
    use crate::policy::rules::{RuleAction, RuleConfig, Rules, RulesPolicy};
    use crate::policy::{Direction, Layers, StaticPolicy};
    use std::sync::Arc;

    const DLP: &str = r#"
mode = "enforce"
[[rule]]
id = "t.geheim"
description = "marking"
severity = "high"
action = "redact"
keywords = ["GEHEIM"]
case_sensitive = true
[[rule]]
id = "t.inbound_only"
description = "inbound"
severity = "high"
action = "hold"
keywords = ["EINGANG"]
case_sensitive = true
[rule.scope]
directions = ["inbound"]
[[rule]]
id = "t.audit"
description = "audited only"
severity = "low"
action = "tag"
keywords = ["PROTOKOLL"]
case_sensitive = true
"#;

    struct Unchanged;
    impl Rewrite<Forward> for Unchanged {
        fn rewrite(&self, item: Forward, _: &Verdicts) -> Result<Forward, Refusal> {
            Ok(item)
        }
    }

    fn dlp_only() -> Layers {
        let set = RuleSet::from_sources(&[("t.toml", DLP)]).unwrap_or_else(|d| panic!("{d}"));
        Layers::new().with("dlp", Arc::new(DlpPolicy::new(set.engine())))
    }

    /// A config `[[rule]]` refusing `GEHEIM` in the given fields (all when empty).
    pub(super) fn config_rules(fields: &[&str]) -> Layers {
        let rule = RuleConfig {
            id: "cfg.geheim".into(),
            description: String::new(),
            keywords: vec!["GEHEIM".into()],
            regex: None,
            fields: fields.iter().map(|s| s.to_string()).collect(),
            directions: vec![],
            action: RuleAction::Redact,
        };
        Layers::new().with(
            "config",
            Arc::new(RulesPolicy {
                base: StaticPolicy::default(),
                rules: Rules::compile(&[rule]).unwrap(),
            }),
        )
    }

    /// `decide` for one request; `Ok(())` if a permit was issued.
    fn run(
        policy: &dyn Policy,
        direction: Direction,
        method: http::Method,
        target: &str,
        body: &[u8],
    ) -> Result<(), Refusal> {
        let path = target.split('?').next().unwrap();
        let endpoint = catalog::lookup(&method, path).expect("catalogued").endpoint;
        let ctx = ExchangeCtx {
            direction,
            endpoint,
            peer: Some("hs2.test".into()),
            protected: "hs1.test".into(),
            txn_id: None,
        };
        let fwd = Forward {
            method,
            path_and_query: target.into(),
            headers: HeaderMap::new(),
            body: Bytes::copy_from_slice(body),
        };
        decide(policy, &ctx, &Units::default(), fwd, &Unchanged).map(|_| ())
    }

    fn refused_for_text(r: Result<(), Refusal>) -> Refusal {
        let r = r.expect_err("request must be refused");
        assert_eq!(
            (r.status.as_u16(), r.errcode, r.reason),
            (403, "M_FORBIDDEN", RefusalReason::RequestText),
            "{r}"
        );
        r
    }

    #[test]
    fn marked_aliases_user_ids_and_search_terms_refuse_the_request() {
        for layers in [dlp_only(), config_rules(&[])] {
            let out = Direction::Outbound;
            let r = refused_for_text(run(
                &layers,
                out,
                http::Method::GET,
                "/_matrix/federation/v1/query/directory?room_alias=%23GEHEIM%3Ahs2",
                b"",
            ));
            assert!(r.message.contains("query parameter room_alias"), "{r}");
            assert!(
                !r.message.contains("#GEHEIM"),
                "the refusal never carries the text: {r}"
            );
            refused_for_text(run(
                &layers,
                out,
                http::Method::GET,
                "/_matrix/federation/v1/query/profile?user_id=%40GEHEIM-x%3Ahs2",
                b"",
            ));
            refused_for_text(run(
                &layers,
                out,
                http::Method::GET,
                "/_matrix/federation/v1/query/profile?user_id=%40a%3Ahs2&GEHEIM",
                b"",
            ));
            refused_for_text(run(
                &layers,
                out,
                http::Method::GET,
                "/_matrix/federation/v1/hierarchy/%21GEHEIM%3Ahs2",
                b"",
            ));
            let search = br#"{"limit":10,"filter":{"generic_search_term":"Akte GEHEIM"}}"#;
            refused_for_text(run(
                &layers,
                out,
                http::Method::POST,
                "/_matrix/federation/v1/publicRooms",
                search,
            ));
            refused_for_text(run(
                &layers,
                out,
                http::Method::POST,
                "/_matrix/federation/v1/user/keys/query",
                br#"{"device_keys":{"@GEHEIM:hs2":[]}}"#,
            ));
            // Obfuscated: a zero-width space and a soft hyphen inside the marking (the text
            // pipeline normalises request text like any other).
            refused_for_text(run(
                &layers,
                out,
                http::Method::GET,
                "/_matrix/federation/v1/query/directory?room_alias=%23GE%E2%80%8BHE%C2%ADIM%3Ahs2",
                b"",
            ));
            // Inbound requests are judged too.
            refused_for_text(run(
                &layers,
                Direction::Inbound,
                http::Method::GET,
                "/_matrix/federation/v1/query/directory?room_alias=%23GEHEIM%3Ahs1",
                b"",
            ));
            // Clean requests pass; lower-case `geheim` is no marking.
            run(
                &layers,
                out,
                http::Method::GET,
                "/_matrix/federation/v1/query/directory?room_alias=%23geheimnis%3Ahs2",
                b"",
            )
            .unwrap();
            run(
                &layers,
                out,
                http::Method::POST,
                "/_matrix/federation/v1/publicRooms",
                br#"{"filter":{"generic_search_term":"Akte"}}"#,
            )
            .unwrap();
            // Events are judged per event (not here, `Units` is empty), not as request text; the
            // rest of an event-carrying body is request text.
            let txn = br#"{"origin":"hs1.test","origin_server_ts":1,"pdus":[{"content":{"body":"GEHEIM"}}],"edus":[]}"#;
            run(
                &layers,
                out,
                http::Method::PUT,
                "/_matrix/federation/v1/send/t1",
                txn,
            )
            .unwrap();
            let txn =
                br#"{"origin":"hs1.test","origin_server_ts":1,"pdus":[],"edus":[],"x":"GEHEIM"}"#;
            refused_for_text(run(
                &layers,
                out,
                http::Method::PUT,
                "/_matrix/federation/v1/send/t1",
                txn,
            ));
        }
    }

    #[test]
    fn dlp_scope_and_actions_and_config_field_filters_apply_to_request_text() {
        let dlp = dlp_only();
        let q = "/_matrix/federation/v1/query/directory?room_alias=%23EINGANG%3Ahs2";
        run(&dlp, Direction::Outbound, http::Method::GET, q, b"")
            .expect("an inbound-only rule is silent outbound");
        refused_for_text(run(&dlp, Direction::Inbound, http::Method::GET, q, b""));
        run(
            &dlp,
            Direction::Outbound,
            http::Method::GET,
            "/_matrix/federation/v1/query/directory?room_alias=%23PROTOKOLL%3Ahs2",
            b"",
        )
        .expect("tag only logs");
        // `fields` of a config rule: the field name or the parameter name.
        let only_body = config_rules(&["request.body"]);
        run(
            &only_body,
            Direction::Outbound,
            http::Method::GET,
            "/_matrix/federation/v1/query/directory?room_alias=%23GEHEIM%3Ahs2",
            b"",
        )
        .unwrap();
        refused_for_text(run(
            &only_body,
            Direction::Outbound,
            http::Method::POST,
            "/_matrix/federation/v1/publicRooms",
            br#"{"filter":{"generic_search_term":"GEHEIM"}}"#,
        ));
        let only_alias = config_rules(&["room_alias"]);
        refused_for_text(run(
            &only_alias,
            Direction::Outbound,
            http::Method::GET,
            "/_matrix/federation/v1/query/directory?room_alias=%23GEHEIM%3Ahs2",
            b"",
        ));
        run(
            &only_alias,
            Direction::Outbound,
            http::Method::GET,
            "/_matrix/federation/v1/query/profile?user_id=%40GEHEIM%3Ahs2",
            b"",
        )
        .unwrap();
    }

    #[test]
    fn undecodable_request_text_is_refused_as_a_bad_request() {
        let r = run(
            &Layers::new(),
            Direction::Outbound,
            http::Method::GET,
            "/_matrix/federation/v1/query/directory?room_alias=%23GEHEIM%FF",
            b"",
        )
        .unwrap_err();
        assert_eq!((r.status.as_u16(), r.errcode), (400, "M_INVALID_PARAM"));
        let r = run(
            &Layers::new(),
            Direction::Outbound,
            http::Method::GET,
            "/_matrix/federation/v1/hierarchy/%C3%28",
            b"",
        )
        .unwrap_err();
        assert_eq!((r.status.as_u16(), r.errcode), (400, "M_INVALID_PARAM"));
    }
}
