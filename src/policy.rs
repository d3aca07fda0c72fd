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
//! Issue 2 ships [`StaticPolicy`]: allow everything except what the configuration refuses per
//! endpoint class and per remote server name. Later issues (redaction, DLP, labels) plug into the
//! same trait and return richer verdicts.
pub mod dlp;
pub mod permit;
pub mod rules;
pub mod static_policy;
pub mod verdict;

pub use permit::{decide, decide_response, replay, Forward, Modification, Permit, Release, Rewrite, Units, Verdicts};
pub use static_policy::StaticPolicy;
pub use verdict::{Decision, EduVerdict, PduVerdict, Refusal, RefusalReason};

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
    /// Per PDU inside a request or response.
    fn pdu(&self, ctx: &ExchangeCtx, pdu: &PduView<'_>) -> PduVerdict;
    /// Per non-PDU event (stripped state, `make_*` templates, partial events) in a body.
    fn event(&self, ctx: &ExchangeCtx, event: &EventView<'_>) -> PduVerdict;
    /// Per EDU inside a transaction.
    fn edu(&self, ctx: &ExchangeCtx, edu: &EduView<'_>) -> EduVerdict;
    /// Response-level decision (after the response body was parsed).
    fn response(&self, ctx: &ExchangeCtx) -> Decision;
}
