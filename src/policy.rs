//! Policy: the decision layer between parsing and forwarding.
//!
//! # Design: permits (default deny)
//!
//! Nothing is forwarded without a [`Permit`]. A permit can only be constructed inside this
//! module, by [`decide`], after every parsed unit of the exchange (the request as a whole, each
//! PDU and EDU of a transaction) went through the configured [`Policy`]. The forwarding layer
//! (`proxy::upstream`) takes a `Permit<Forward>` by value, so a code path that skips the policy
//! does not compile. This is linkerd2-proxy's "permits produced by the policy layer and required
//! by the forwarding layer", applied to federation traffic.
//!
//! Responses work the same way: [`decide_response`] produces a `Permit<Release>` that the
//! listener needs to answer the requester.
//!
//! # User data and to-device messages
//!
//! Text that is not in room events is judged per field and per device: [`Policy::user_field`]
//! for the fields of user-data and directory responses (profile, devices, keys, public rooms,
//! hierarchy) and [`Policy::to_device`] for each recipient device of a to-device EDU. A refusal
//! removes only that field or that device's message (never a whole device, room or profile;
//! an EDU left without messages is dropped). Both default to allow, so a policy that only
//! implements [`Policy::edu`] still decides over a to-device EDU as a whole.
//!
//! # Text in requests
//!
//! [`decide`] lists the text the request itself carries (path and query parameters, bodies
//! without events: `federation::request_text`) from the very bytes it is about to permit and
//! asks [`Policy::request_text`] about each piece; any refusal refuses the request. Text that
//! does not decode refuses it too (400).
//!
//! # Decision records
//!
//! [`decide_recorded`] and [`decide_response_recorded`] also return a record per unit (verdict,
//! rule, matched rules with masked spans, event id, …; [`decisions`]); the findings come from
//! the `explain_*` methods of [`Policy`], which answer from the same scan as the verdict.
//!
//! The layers that plug into this trait: [`StaticPolicy`] and the config's `[[rule]]` list
//! ([`rules`]), media ([`media`]), the DLP rule set ([`dlp`]) and security labels ([`labels`]).
pub mod decisions;
pub mod dlp;
pub mod frame;
pub mod identity;
pub mod labels;
pub mod layers;
pub mod manifest;
pub mod media;
pub mod opaque;
pub mod pause;
pub mod permit;
pub(crate) mod replay;
pub mod rules;
pub mod static_policy;
pub mod ti_edu;
pub mod verdict;
pub mod whatif;
pub mod yara_text;

pub use crate::federation::request_text::{RequestText, TextKind};
pub use crate::federation::userdata::{FieldKind, FieldPath, ToDeviceMessage, UserField};
pub use decisions::{Findings, LabelFinding, RuleHit, UnitDecision, UnitKind, UnitVerdict};
pub use layers::Layers;
pub use permit::{
    decide, decide_recorded, decide_response, decide_response_recorded, FieldRemoval, Forward,
    Modification, Permit, Release, Rewrite, ToDeviceDrop, Units, Verdicts,
};
pub use static_policy::StaticPolicy;
pub use verdict::{Decision, EduVerdict, FieldVerdict, PduVerdict, Refusal, RefusalReason};

use crate::federation::catalog::Endpoint;
use crate::federation::pdu::{EduView, EventView, PduView};

/// Which way traffic flows, seen from the protected side (also a metrics label).
pub use crate::telemetry::Direction;

/// What the policy knows about one federation exchange (one request and its response).
#[derive(Debug, Clone)]
pub struct ExchangeCtx {
    pub direction: Direction,
    pub endpoint: &'static Endpoint,
    /// The remote server name: the X-Matrix origin inbound, the destination outbound.
    /// `None` for unauthenticated inbound requests (key server, openid, 3pid).
    pub peer: Option<String>,
    /// The protected server taking part.
    pub protected: String,
    /// Transaction id for `/send`, for logs.
    pub txn_id: Option<String>,
}

/// A policy decides over each parsed unit of an exchange.
///
/// Implementations must be deterministic for the same input (a refused transaction is retried
/// with the same content and must get the same decision).
pub trait Policy: Send + Sync {
    /// Request-level decision: endpoint class, peer server.
    fn request(&self, ctx: &ExchangeCtx) -> Decision;
    /// Called once with every unit of a request or response before any of them is judged
    /// (a layer that learns from the units — room labels — learns from all of them first, so
    /// the order of events in a body does not change a decision).
    fn prepare(&self, _ctx: &ExchangeCtx, _units: &permit::Units<'_>) {}
    /// Per PDU inside a request or response.
    fn pdu(&self, ctx: &ExchangeCtx, pdu: &PduView<'_>) -> PduVerdict;
    /// Per non-PDU event (stripped state, `make_*` templates, partial events) in a body.
    fn event(&self, ctx: &ExchangeCtx, event: &EventView<'_>) -> PduVerdict;
    /// Per EDU inside a transaction.
    fn edu(&self, ctx: &ExchangeCtx, edu: &EduView<'_>) -> EduVerdict;
    /// Response-level decision (after the response body was parsed).
    fn response(&self, ctx: &ExchangeCtx) -> Decision;
    /// Per user-typed field of a user-data or directory response (display names, room names,
    /// topics, aliases; see `federation::userdata`). `Remove` removes the field's key; the
    /// device, room or profile stays. `ctx.direction` is the direction the data flows.
    fn user_field(&self, _ctx: &ExchangeCtx, _field: &UserField<'_>) -> FieldVerdict {
        FieldVerdict::Allow
    }
    /// Per recipient device of a to-device EDU (`m.direct_to_device`), after [`Policy::edu`]
    /// allowed the EDU as a whole. `Drop` removes that device's message; an EDU left without
    /// messages is dropped.
    fn to_device(&self, _ctx: &ExchangeCtx, _msg: &ToDeviceMessage<'_>) -> EduVerdict {
        EduVerdict::Allow
    }
    /// Per PDU in its redacted form, after a verdict asked to redact it: anything but `Allow`
    /// means redaction does not remove what the rule found, and the room is paused
    /// ([`pause`]). Default: the same judgement as [`Policy::pdu`].
    fn redacted_pdu(&self, ctx: &ExchangeCtx, pdu: &PduView<'_>) -> PduVerdict {
        self.pdu(ctx, pdu)
    }
    /// As [`Policy::redacted_pdu`], for non-PDU events.
    fn redacted_event(&self, ctx: &ExchangeCtx, event: &EventView<'_>) -> PduVerdict {
        self.event(ctx, event)
    }
    /// Where the rules matched in a PDU (rule, field, byte span; never the matched text), for
    /// the reviewer of a held event (`proxy::hold`). Default: nothing known.
    fn matches(&self, _ctx: &ExchangeCtx, _pdu: &PduView<'_>) -> Vec<crate::review::Match> {
        Vec::new()
    }
    /// Per piece of text the request carries outside events (path and query parameters,
    /// non-event bodies; see `federation::request_text`), before it is forwarded. A refusal
    /// refuses the whole request. `ctx.direction` is the request's direction.
    fn request_text(&self, _ctx: &ExchangeCtx, _text: &RequestText<'_>) -> Decision {
        Decision::Allow
    }
    /// The text a response carries outside its events and user-data fields (every other key,
    /// string and number; see `federation::response_text`), before it is released. A refusal
    /// refuses the whole response: this text cannot be removed piece by piece.
    /// `ctx.direction` is the direction the data flows. Default: each piece as
    /// [`Policy::request_text`], the first refusal wins.
    fn response_text(&self, ctx: &ExchangeCtx, texts: &[RequestText<'_>]) -> Decision {
        for t in texts {
            if let Decision::Refuse(r) = self.request_text(ctx, t) {
                return Decision::Refuse(r);
            }
        }
        Decision::Allow
    }
    /// [`Policy::pdu`], adding what the verdict rests on to `found` (matched rules with field,
    /// span and masked excerpt; the effective label). For decision records
    /// ([`decisions`]): the same judgement as `pdu`, from the same scan. Default: `pdu`, nothing
    /// added (the layer stack names the rule of a verdict a layer gives without findings).
    fn explain_pdu(
        &self,
        ctx: &ExchangeCtx,
        pdu: &PduView<'_>,
        _found: &mut Findings,
    ) -> PduVerdict {
        self.pdu(ctx, pdu)
    }
    /// [`Policy::event`] with findings, as [`Policy::explain_pdu`].
    fn explain_event(
        &self,
        ctx: &ExchangeCtx,
        event: &EventView<'_>,
        _found: &mut Findings,
    ) -> PduVerdict {
        self.event(ctx, event)
    }
    /// [`Policy::edu`] with findings, as [`Policy::explain_pdu`].
    fn explain_edu(
        &self,
        ctx: &ExchangeCtx,
        edu: &EduView<'_>,
        _found: &mut Findings,
    ) -> EduVerdict {
        self.edu(ctx, edu)
    }
    /// [`Policy::to_device`] with findings, as [`Policy::explain_pdu`].
    fn explain_to_device(
        &self,
        ctx: &ExchangeCtx,
        msg: &ToDeviceMessage<'_>,
        _found: &mut Findings,
    ) -> EduVerdict {
        self.to_device(ctx, msg)
    }
    /// [`Policy::user_field`] with findings, as [`Policy::explain_pdu`].
    fn explain_user_field(
        &self,
        ctx: &ExchangeCtx,
        field: &UserField<'_>,
        _found: &mut Findings,
    ) -> FieldVerdict {
        self.user_field(ctx, field)
    }
}
