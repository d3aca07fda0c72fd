//! Findings of the label layer for decision records: the effective label and the clearance
//! it was released against, as display markings (never content). Computed only for units the
//! layer refused.
use std::borrow::Cow;
use std::collections::BTreeMap;

use serde_json::value::RawValue;

use super::LabelPolicy;
use crate::policy::decisions::{Findings, LabelFinding, RuleHit, UnitVerdict};
use crate::policy::{ExchangeCtx, PduVerdict};

impl LabelPolicy {
    /// Adds the label finding of a refused event (`verdict` not allow) to `found`: the
    /// effective label (the event's own, else the room's, else the sending side's default)
    /// and the destination's clearance, as display markings.
    pub(super) fn explain_verdict(
        &self,
        ctx: &ExchangeCtx,
        room: Option<&str>,
        content: &RawValue,
        verdict: &PduVerdict,
        found: &mut Findings,
    ) {
        let (v, Some(rule)) = UnitVerdict::of_pdu(verdict) else {
            return;
        };
        let fields: BTreeMap<Cow<'_, str>, &RawValue> =
            serde_json::from_str(content.get()).unwrap_or_default();
        let (from, _) = self.sides(ctx.direction);
        let eff = match fields.get(self.event_key.as_str()) {
            Some(raw) => self.parse_cached(raw),
            None => room
                .and_then(|r| self.room_label(r))
                .unwrap_or_else(|| from.default_label.clone()),
        };
        let label = eff
            .as_ref()
            .as_ref()
            .ok()
            .and_then(|l| self.spifs.marking(l, None).ok());
        let clearance = self
            .spifs
            .clearance_marking(self.clearance_for(ctx.direction, ctx), None)
            .ok();
        found.label = Some(LabelFinding {
            label,
            clearance,
            rule: rule.to_string(),
        });
        found
            .hits
            .push(RuleHit::rule_only("labels", rule, v.as_str()));
    }
}
