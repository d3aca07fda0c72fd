//! Permits: the only way to forward a request or release a response.
use bytes::Bytes;
use http::{HeaderMap, Method, StatusCode};

use super::{Decision, EduVerdict, ExchangeCtx, PduVerdict, Policy, Refusal, RefusalReason};
use crate::federation::pdu::{EduView, EventView, PduView};

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
#[derive(Debug, Default)]
pub struct Units<'a> {
    pub pdus: Vec<PduView<'a>>,
    /// Events that are not full PDUs (stripped state, templates, partial events).
    pub events: Vec<EventView<'a>>,
    pub edus: Vec<EduView<'a>>,
}

/// Runs the policy over the request and every unit in it; on release, returns the permit.
pub fn decide(policy: &dyn Policy, ctx: &ExchangeCtx, units: &Units<'_>, forward: Forward) -> Result<Permit<Forward>, Refusal> {
    if let Decision::Refuse(r) = policy.request(ctx) {
        return Err(r);
    }
    check_units(policy, ctx, units)?;
    Ok(Permit { inner: forward })
}

/// Runs the policy over a response and every unit in it; on release, returns the permit.
pub fn decide_response(policy: &dyn Policy, ctx: &ExchangeCtx, units: &Units<'_>, release: Release) -> Result<Permit<Release>, Refusal> {
    check_units(policy, ctx, units)?;
    if let Decision::Refuse(r) = policy.response(ctx) {
        return Err(r);
    }
    Ok(Permit { inner: release })
}

fn check_units(policy: &dyn Policy, ctx: &ExchangeCtx, units: &Units<'_>) -> Result<(), Refusal> {
    for (i, pdu) in units.pdus.iter().enumerate() {
        match policy.pdu(ctx, pdu) {
            PduVerdict::Allow => {}
            PduVerdict::Reject { rule } => {
                return Err(Refusal::forbidden(RefusalReason::Policy, format!("event {i} refused by rule {rule}")));
            }
            // Modifying content needs redaction in transit (issue 3); until then such a verdict
            // stops the whole exchange: fail closed.
            PduVerdict::Redact { rule } | PduVerdict::Hold { rule } => {
                return Err(Refusal::forbidden(
                    RefusalReason::Policy,
                    format!("event {i} needs modification by rule {rule}, which this build cannot apply"),
                ));
            }
        }
    }
    for (i, ev) in units.events.iter().enumerate() {
        match policy.event(ctx, ev) {
            PduVerdict::Allow => {}
            PduVerdict::Reject { rule } | PduVerdict::Redact { rule } | PduVerdict::Hold { rule } => {
                return Err(Refusal::forbidden(RefusalReason::Policy, format!("event {i} refused by rule {rule}")));
            }
        }
    }
    for (i, edu) in units.edus.iter().enumerate() {
        match policy.edu(ctx, edu) {
            EduVerdict::Allow => {}
            EduVerdict::Drop { rule } => {
                return Err(Refusal::forbidden(
                    RefusalReason::Policy,
                    format!("EDU {i} must be dropped by rule {rule}, which this build cannot apply"),
                ));
            }
        }
    }
    Ok(())
}
