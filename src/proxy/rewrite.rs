//! Applying policy verdicts to bodies in transit: redaction, EDU removal, re-signing.
use super::guard::Guard;
use crate::federation::catalog::Endpoint;
use crate::policy::{ExchangeCtx, Forward, Refusal, RefusalReason, Release, Rewrite, Verdicts};

/// Rewrites requests (and re-signs them).
pub struct RequestRewriter<'a> {
    pub guard: &'a Guard,
    pub ctx: &'a ExchangeCtx,
    pub endpoint: &'static Endpoint,
}

/// Rewrites responses (unsigned: no re-signing needed).
pub struct ResponseRewriter<'a> {
    pub guard: &'a Guard,
    pub ctx: &'a ExchangeCtx,
    pub endpoint: &'static Endpoint,
}

fn unavailable(what: &str) -> Refusal {
    Refusal::forbidden(RefusalReason::Policy, format!("{what} needs modification in transit, which is not available"))
}

impl Rewrite<Forward> for RequestRewriter<'_> {
    fn rewrite(&self, _fwd: Forward, _v: &Verdicts) -> Result<Forward, Refusal> {
        let _ = (self.guard, self.ctx, self.endpoint);
        Err(unavailable("request"))
    }
}

impl Rewrite<Release> for ResponseRewriter<'_> {
    fn rewrite(&self, _rel: Release, _v: &Verdicts) -> Result<Release, Refusal> {
        let _ = (self.guard, self.ctx, self.endpoint);
        Err(unavailable("response"))
    }
}
