//! Policy layers: the configured policies (static allow/deny, config rules, DLP rule sets,
//! security labels) combined into one [`Policy`].
//!
//! # Design notes
//!
//! * **Most severe wins.** A request or response is refused if any layer refuses it (the first
//!   refusal is reported; likewise for each piece of request text); a PDU gets the most severe verdict of all layers (allow < redact <
//!   hold < reject, first layer wins a tie); an EDU, a to-device message or a user-data field
//!   is dropped/removed if any layer says so. A layer can only add restrictions.
//! * **One snapshot per exchange.** The guard swaps a whole new `Layers` in on reload and every
//!   exchange takes one `Arc` of it at its start, so a request and its response are judged by
//!   one consistent policy, never by half of an old and half of a new one.
use std::sync::Arc;

use super::decisions::{Findings, RuleHit, UnitVerdict};
use super::{
    Decision, EduVerdict, ExchangeCtx, FieldVerdict, PduVerdict, Policy, RequestText,
    ToDeviceMessage, UserField,
};
use crate::federation::pdu::{EduView, EventView, PduView};

/// Several policies judged together; see the module notes.
#[derive(Default, Clone)]
pub struct Layers {
    layers: Vec<(&'static str, Arc<dyn Policy>)>,
    /// The policy version (the rule set's combined hash, `policy::identity`), for records.
    version: Option<Arc<str>>,
    /// Compiled rules that other components take from the same load as the layers (media
    /// inspection's scanners); opaque to the policy, so a reload swaps them together.
    attachment: Option<Arc<dyn std::any::Any + Send + Sync>>,
}

impl Layers {
    pub fn new() -> Self {
        Layers::default()
    }
    /// Adds a layer under a short name (for logs).
    pub fn with(mut self, name: &'static str, policy: Arc<dyn Policy>) -> Self {
        self.layers.push((name, policy));
        self
    }
    /// Sets the policy version this stack was built from (see [`Layers::version`]).
    pub fn with_version(mut self, version: impl Into<Arc<str>>) -> Self {
        self.version = Some(version.into());
        self
    }
    /// The policy version: the hex SHA-256 fingerprint of the DLP rule set the stack was built
    /// from (`policy::manifest::Manifest::fingerprint`), `None` without one.
    pub fn version(&self) -> Option<&str> {
        self.version.as_deref()
    }
    /// Attaches compiled rules of the same load for other components (see
    /// [`Layers::attachment`]).
    pub fn with_attachment(mut self, a: Arc<dyn std::any::Any + Send + Sync>) -> Self {
        self.attachment = Some(a);
        self
    }
    /// The attachment of this stack's load, if it is a `T`.
    pub fn attachment<T: std::any::Any>(&self) -> Option<&T> {
        self.attachment.as_ref()?.downcast_ref::<T>()
    }
    /// The layer names, in order.
    pub fn names(&self) -> Vec<&'static str> {
        self.layers.iter().map(|(n, _)| *n).collect()
    }
    fn most_severe(&self, f: impl Fn(&dyn Policy) -> PduVerdict) -> PduVerdict {
        let mut best = PduVerdict::Allow;
        for (_, p) in &self.layers {
            let v = f(p.as_ref());
            if v.severity() > best.severity() {
                best = v;
            }
        }
        best
    }
    fn first_refusal(&self, f: impl Fn(&dyn Policy) -> Decision) -> Decision {
        for (_, p) in &self.layers {
            if let d @ Decision::Refuse(_) = f(p.as_ref()) {
                return d;
            }
        }
        Decision::Allow
    }
    fn first_drop(&self, f: impl Fn(&dyn Policy) -> EduVerdict) -> EduVerdict {
        for (_, p) in &self.layers {
            if let v @ EduVerdict::Drop { .. } = f(p.as_ref()) {
                return v;
            }
        }
        EduVerdict::Allow
    }
    /// [`Layers::most_severe`] with findings: each layer's findings are named after it.
    fn most_severe_explained(
        &self,
        found: &mut Findings,
        f: impl Fn(&dyn Policy, &mut Findings) -> PduVerdict,
    ) -> PduVerdict {
        let mut best = PduVerdict::Allow;
        for (name, p) in &self.layers {
            let before = found.hits.len();
            let v = f(p.as_ref(), found);
            name_findings(found, before, name, UnitVerdict::of_pdu(&v));
            if v.severity() > best.severity() {
                best = v;
            }
        }
        best
    }
    /// [`Layers::first_drop`] with findings (the layers after the first drop are not asked).
    fn first_drop_explained(
        &self,
        found: &mut Findings,
        f: impl Fn(&dyn Policy, &mut Findings) -> EduVerdict,
    ) -> EduVerdict {
        for (name, p) in &self.layers {
            let before = found.hits.len();
            let v = f(p.as_ref(), found);
            let rule = match &v {
                EduVerdict::Allow => None,
                EduVerdict::Drop { rule } => Some(rule.as_str()),
            };
            name_findings(found, before, name, (UnitVerdict::Drop, rule));
            if rule.is_some() {
                return v;
            }
        }
        EduVerdict::Allow
    }
}

/// Names the findings a layer added after `before`; a layer that refused without adding any is
/// named with the rule of its verdict.
fn name_findings(
    found: &mut Findings,
    before: usize,
    layer: &'static str,
    (verdict, rule): (UnitVerdict, Option<&str>),
) {
    for h in &mut found.hits[before..] {
        h.layer = layer;
    }
    if let Some(rule) = rule {
        if found.hits.len() == before {
            found
                .hits
                .push(RuleHit::rule_only(layer, rule, verdict.as_str()));
        }
    }
}

impl Policy for Layers {
    fn request(&self, ctx: &ExchangeCtx) -> Decision {
        self.first_refusal(|p| p.request(ctx))
    }
    fn prepare(&self, ctx: &ExchangeCtx, units: &crate::policy::Units<'_>) {
        for (_, p) in &self.layers {
            p.prepare(ctx, units);
        }
    }
    fn pdu(&self, ctx: &ExchangeCtx, pdu: &PduView<'_>) -> PduVerdict {
        crate::fault::policy_panic();
        self.most_severe(|p| p.pdu(ctx, pdu))
    }
    fn event(&self, ctx: &ExchangeCtx, event: &EventView<'_>) -> PduVerdict {
        crate::fault::policy_panic();
        self.most_severe(|p| p.event(ctx, event))
    }
    fn edu(&self, ctx: &ExchangeCtx, edu: &EduView<'_>) -> EduVerdict {
        self.first_drop(|p| p.edu(ctx, edu))
    }
    fn response(&self, ctx: &ExchangeCtx) -> Decision {
        self.first_refusal(|p| p.response(ctx))
    }
    fn user_field(&self, ctx: &ExchangeCtx, field: &UserField<'_>) -> FieldVerdict {
        for (_, p) in &self.layers {
            if let v @ FieldVerdict::Remove { .. } = p.user_field(ctx, field) {
                return v;
            }
        }
        FieldVerdict::Allow
    }
    fn to_device(&self, ctx: &ExchangeCtx, msg: &ToDeviceMessage<'_>) -> EduVerdict {
        self.first_drop(|p| p.to_device(ctx, msg))
    }
    fn redacted_pdu(&self, ctx: &ExchangeCtx, pdu: &PduView<'_>) -> PduVerdict {
        self.most_severe(|p| p.redacted_pdu(ctx, pdu))
    }
    fn redacted_event(&self, ctx: &ExchangeCtx, event: &EventView<'_>) -> PduVerdict {
        self.most_severe(|p| p.redacted_event(ctx, event))
    }
    fn request_text(&self, ctx: &ExchangeCtx, text: &RequestText<'_>) -> Decision {
        self.first_refusal(|p| p.request_text(ctx, text))
    }
    fn response_text(&self, ctx: &ExchangeCtx, texts: &[RequestText<'_>]) -> Decision {
        self.first_refusal(|p| p.response_text(ctx, texts))
    }
    fn explain_pdu(
        &self,
        ctx: &ExchangeCtx,
        pdu: &PduView<'_>,
        found: &mut Findings,
    ) -> PduVerdict {
        crate::fault::policy_panic();
        self.most_severe_explained(found, |p, f| p.explain_pdu(ctx, pdu, f))
    }
    fn explain_event(
        &self,
        ctx: &ExchangeCtx,
        event: &EventView<'_>,
        found: &mut Findings,
    ) -> PduVerdict {
        crate::fault::policy_panic();
        self.most_severe_explained(found, |p, f| p.explain_event(ctx, event, f))
    }
    fn explain_edu(
        &self,
        ctx: &ExchangeCtx,
        edu: &EduView<'_>,
        found: &mut Findings,
    ) -> EduVerdict {
        self.first_drop_explained(found, |p, f| p.explain_edu(ctx, edu, f))
    }
    fn explain_to_device(
        &self,
        ctx: &ExchangeCtx,
        msg: &ToDeviceMessage<'_>,
        found: &mut Findings,
    ) -> EduVerdict {
        self.first_drop_explained(found, |p, f| p.explain_to_device(ctx, msg, f))
    }
    fn explain_user_field(
        &self,
        ctx: &ExchangeCtx,
        field: &UserField<'_>,
        found: &mut Findings,
    ) -> FieldVerdict {
        for (name, p) in &self.layers {
            let before = found.hits.len();
            let v = p.explain_user_field(ctx, field, found);
            let rule = match &v {
                FieldVerdict::Allow => None,
                FieldVerdict::Remove { rule } => Some(rule.as_str()),
            };
            name_findings(found, before, name, (UnitVerdict::Drop, rule));
            if rule.is_some() {
                return v;
            }
        }
        FieldVerdict::Allow
    }
    fn matches(&self, ctx: &ExchangeCtx, pdu: &PduView<'_>) -> Vec<crate::review::Match> {
        self.layers
            .iter()
            .flat_map(|(_, p)| p.matches(ctx, pdu))
            .collect()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::federation::catalog;
    use crate::policy::{Refusal, RefusalReason};
    use serde_json::value::RawValue;

    /// A layer that answers every question the same way.
    struct Fixed(PduVerdict, bool, bool);
    impl Policy for Fixed {
        fn request(&self, _: &ExchangeCtx) -> Decision {
            if self.1 {
                Decision::Refuse(Refusal::forbidden(RefusalReason::Policy, "fixed"))
            } else {
                Decision::Allow
            }
        }
        fn pdu(&self, _: &ExchangeCtx, _: &PduView<'_>) -> PduVerdict {
            self.0.clone()
        }
        fn event(&self, _: &ExchangeCtx, _: &EventView<'_>) -> PduVerdict {
            self.0.clone()
        }
        fn edu(&self, _: &ExchangeCtx, _: &EduView<'_>) -> EduVerdict {
            if self.2 {
                EduVerdict::Drop {
                    rule: "fixed".into(),
                }
            } else {
                EduVerdict::Allow
            }
        }
        fn response(&self, _: &ExchangeCtx) -> Decision {
            Decision::Allow
        }
    }

    fn ctx() -> ExchangeCtx {
        let ep = catalog::by_id("send_transaction").unwrap();
        ExchangeCtx {
            direction: crate::policy::Direction::Inbound,
            endpoint: ep,
            peer: None,
            protected: "hs".into(),
            txn_id: None,
        }
    }

    #[test]
    fn most_severe_verdict_wins_and_any_refusal_or_drop_counts() {
        let raw: Box<RawValue> = serde_json::from_str(r#"{"type":"m.room.message","room_id":"!r:x","sender":"@a:x","origin_server_ts":1,"content":{}}"#).unwrap();
        let pdu = PduView::parse(&raw).unwrap();
        let edu_raw: Box<RawValue> =
            serde_json::from_str(r#"{"edu_type":"m.typing","content":{}}"#).unwrap();
        let edu = EduView::parse(&edu_raw).unwrap();
        let allow = Arc::new(Fixed(PduVerdict::Allow, false, false));
        let redact = Arc::new(Fixed(PduVerdict::Redact { rule: "r".into() }, false, false));
        let reject = Arc::new(Fixed(PduVerdict::Reject { rule: "x".into() }, false, true));
        let refuse = Arc::new(Fixed(PduVerdict::Allow, true, false));
        let c = ctx();
        let l = Layers::new()
            .with("a", allow.clone())
            .with("r", redact.clone());
        assert_eq!(l.pdu(&c, &pdu), PduVerdict::Redact { rule: "r".into() });
        assert_eq!(l.edu(&c, &edu), EduVerdict::Allow);
        assert_eq!(l.request(&c), Decision::Allow);
        let l = l.with("x", reject).with("f", refuse);
        assert_eq!(l.pdu(&c, &pdu), PduVerdict::Reject { rule: "x".into() });
        assert_eq!(
            l.edu(&c, &edu),
            EduVerdict::Drop {
                rule: "fixed".into()
            }
        );
        assert!(matches!(l.request(&c), Decision::Refuse(_)));
        assert_eq!(l.names(), vec!["a", "r", "x", "f"]);
        assert_eq!(
            Layers::new().pdu(&c, &pdu),
            PduVerdict::Allow,
            "no layer: allow (the static layer is always configured)"
        );
    }
}
