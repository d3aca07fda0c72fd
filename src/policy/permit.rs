//! Permits: the only way to forward a request or release a response.
use bytes::Bytes;
use http::{HeaderMap, Method, StatusCode};

use super::pause::{self, RoomGate, Screen, Screened, Unit};
use super::{Decision, EduVerdict, ExchangeCtx, FieldVerdict, PduVerdict, Policy, Refusal, RefusalReason};
use crate::federation::catalog::Handler;
use crate::federation::pdu::{EduView, EventView, PduView};
use crate::federation::userdata::{FieldKind, FieldPath, ToDeviceMessage, UserField};

/// Proof that the policy released `T`. Only [`decide`] and [`decide_response`] construct it.
#[derive(Debug)]
pub struct Permit<T> {
    inner: T,
}

impl<T> Permit<T> {
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
    /// Paused rooms and re-judgement of redacted events ([`super::pause`]); `None`: neither.
    pub rooms: Option<&'a dyn RoomGate>,
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
    /// PDUs to remove from a transaction: their room is paused ([`super::pause`]).
    pub withhold: Vec<Modification>,
}

impl Verdicts {
    pub fn is_empty(&self) -> bool {
        self.redact.is_empty() && self.drop_edus.is_empty() && self.remove_fields.is_empty() && self.drop_to_device.is_empty() && self.withhold.is_empty()
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
    if let Decision::Refuse(r) = policy.request(ctx) {
        return Err(r);
    }
    let verdicts = check_units(policy, ctx, units)?;
    let forward = if verdicts.is_empty() { forward } else { rewrite.rewrite(forward, &verdicts)? };
    Ok(Permit { inner: forward })
}

/// Replays a decision the policy already took for the same transaction (idempotent retries):
/// the stored forwarded body and X-Matrix header replace the received ones. A sender retries a
/// transaction with the same content; giving the retry anything but the first decision could
/// leak what the first attempt withheld (e.g. after a policy reload).
///
/// This is the only other constructor of `Permit<Forward>`: it re-issues a permit that
/// [`decide`] issued before, from the store.
pub fn replay(mut forward: Forward, stored_body: Bytes, stored_x_matrix: Option<http::HeaderValue>) -> Permit<Forward> {
    forward.body = stored_body;
    match stored_x_matrix {
        Some(h) => {
            forward.headers.insert(http::header::AUTHORIZATION, h);
        }
        None => {
            forward.headers.remove(http::header::AUTHORIZATION);
        }
    }
    Permit { inner: forward }
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
    // A response carries data the other way: the answer to an inbound request leaves the
    // protected side. Content rules see the direction the data flows.
    let data_ctx = ExchangeCtx { direction: ctx.direction.reverse(), ..ctx.clone() };
    let verdicts = check_units(policy, &data_ctx, units)?;
    if let Decision::Refuse(r) = policy.response(ctx) {
        return Err(r);
    }
    let release = if verdicts.is_empty() { release } else { rewrite.rewrite(release, &verdicts)? };
    Ok(Permit { inner: release })
}

/// Whether `verdict` lets the event cross redacted (a reject outside a transaction refuses the
/// exchange instead: nothing of the event crosses, so its redacted form need not be judged).
fn crosses_redacted(verdict: &PduVerdict, in_transaction: bool) -> bool {
    match verdict {
        PduVerdict::Allow => false,
        PduVerdict::Reject { .. } => in_transaction,
        PduVerdict::Redact { .. } | PduVerdict::Hold { .. } => true,
    }
}

fn check_units(policy: &dyn Policy, ctx: &ExchangeCtx, units: &Units<'_>) -> Result<Verdicts, Refusal> {
    let in_transaction = ctx.endpoint.handler == Handler::Transaction;
    let mut v = Verdicts::default();
    let mut apply = |verdict: PduVerdict, pos: usize, room_id: Option<String>| -> Result<(), Refusal> {
        match verdict {
            PduVerdict::Allow => Ok(()),
            // A transaction never loses a PDU (holes in the DAG): reject acts as redact there.
            PduVerdict::Reject { rule } if !in_transaction => {
                Err(Refusal::forbidden(RefusalReason::Policy, format!("event refused by rule {rule}")))
            }
            // Hold needs review queues (audit/review issue); until then it applies redact.
            PduVerdict::Reject { rule } | PduVerdict::Redact { rule } | PduVerdict::Hold { rule } => {
                v.redact.push(Modification { pos, room_id, rule });
                Ok(())
            }
        }
    };
    // Paused rooms: their events are withheld from a transaction and refuse anything else.
    let mut screen = Screen::new(units.rooms, ctx.direction);
    let mut withhold = Vec::new();
    let mut withheld = |s: Screened, pos: usize| -> Result<bool, Refusal> {
        match s {
            Screened::Pass => Ok(false),
            Screened::Withhold { .. } if !in_transaction => Err(pause::not_found()),
            Screened::Withhold { room, rule } => {
                withhold.push(Modification { pos, room_id: Some(room), rule });
                Ok(true)
            }
        }
    };
    for (i, (pdu, &pos)) in units.pdus.iter().zip(&units.pdu_pos).enumerate() {
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
        if crosses_redacted(&verdict, in_transaction) && withheld(screen.after(policy, ctx, &unit, &verdict), pos)? {
            continue;
        }
        apply(verdict, pos, pdu.room_id.as_deref().map(str::to_string))?;
    }
    for (ev, &pos) in units.events.iter().zip(&units.event_pos) {
        let unit = Unit::Event(ev);
        if withheld(screen.before(&unit), pos)? {
            continue;
        }
        let verdict = policy.event(ctx, ev);
        if crosses_redacted(&verdict, in_transaction) && withheld(screen.after(policy, ctx, &unit, &verdict), pos)? {
            continue;
        }
        apply(verdict, pos, ev.room_id.as_deref().map(str::to_string))?;
    }
    v.withhold = withhold;
    for (i, edu) in units.edus.iter().enumerate() {
        if screen.edu_paused(edu) {
            v.drop_edus.push(Modification { pos: i, room_id: None, rule: "room_paused".into() });
            continue;
        }
        if let EduVerdict::Drop { rule } = policy.edu(ctx, edu) {
            v.drop_edus.push(Modification { pos: i, room_id: None, rule });
        }
    }
    // Per recipient device, for the to-device EDUs that were not dropped whole.
    for msg in &units.to_device {
        if v.drop_edus.iter().any(|m| m.pos == msg.edu) {
            continue;
        }
        if let EduVerdict::Drop { rule } = policy.to_device(ctx, msg) {
            v.drop_to_device.push(ToDeviceDrop { edu: msg.edu, user_id: msg.user_id.clone(), device_id: msg.device_id.clone(), rule });
        }
    }
    for field in &units.user_fields {
        if let FieldVerdict::Remove { rule } = policy.user_field(ctx, field) {
            v.remove_fields.push(FieldRemoval { path: field.path.clone(), kind: field.kind, rule });
        }
    }
    Ok(v)
}
