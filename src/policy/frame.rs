//! The split appliance's frame layer: what has no diode frame encoding does not cross.
//!
//! On a half of a split appliance (`crate::split`) everything this half's policy judges goes to
//! the other half in a frame whose text a hardware verifier checks (`hw/FRAMES.md`: no control
//! characters — so no newline or tab —, NFC text without combining marks, integers only).
//! Events are never changed to fit: an event whose JSON does not conform is redacted
//! (`frame:nonconforming`; its id, hashes and signatures stay, the receiver stores the redacted
//! copy), and if even its redacted form does not conform (a control character in a state key)
//! it is rejected like any other event redaction cannot clean. EDUs, to-device messages and
//! user-data fields that do not conform are dropped or removed; other request text that does not
//! conform refuses the request, other response text the response.
use super::{
    Decision, EduVerdict, ExchangeCtx, FieldVerdict, PduVerdict, Policy, RefusalReason,
    ToDeviceMessage, UserField,
};
use crate::federation::pdu::{EduView, EventView, PduView};
use crate::federation::request_text::RequestText;
use crate::split::wire;

/// The rule id of this layer's verdicts.
pub const RULE: &str = "frame:nonconforming";

/// The layer (stateless).
#[derive(Debug, Default)]
pub struct FramePolicy;

fn unit(raw: &str) -> bool {
    wire::conforms(raw).is_ok()
}

fn text_conforms(s: &str) -> bool {
    let mut sink = Vec::with_capacity(s.len() + 2);
    wire::encode_value(&serde_json::Value::from(s), 0, &mut sink).is_ok()
}

fn pdu_verdict(ok: bool) -> PduVerdict {
    if ok {
        PduVerdict::Allow
    } else {
        PduVerdict::Redact { rule: RULE.into() }
    }
}

fn redacted_verdict(ok: bool) -> PduVerdict {
    if ok {
        PduVerdict::Allow
    } else {
        PduVerdict::Reject { rule: RULE.into() }
    }
}

impl Policy for FramePolicy {
    fn request(&self, _ctx: &ExchangeCtx) -> Decision {
        Decision::Allow
    }
    fn pdu(&self, _ctx: &ExchangeCtx, pdu: &PduView<'_>) -> PduVerdict {
        pdu_verdict(unit(pdu.raw.get()))
    }
    fn event(&self, _ctx: &ExchangeCtx, event: &EventView<'_>) -> PduVerdict {
        pdu_verdict(unit(event.raw.get()))
    }
    fn redacted_pdu(&self, _ctx: &ExchangeCtx, pdu: &PduView<'_>) -> PduVerdict {
        redacted_verdict(unit(pdu.raw.get()))
    }
    fn redacted_event(&self, _ctx: &ExchangeCtx, event: &EventView<'_>) -> PduVerdict {
        redacted_verdict(unit(event.raw.get()))
    }
    fn edu(&self, _ctx: &ExchangeCtx, edu: &EduView<'_>) -> EduVerdict {
        if unit(edu.raw.get()) {
            EduVerdict::Allow
        } else {
            EduVerdict::Drop { rule: RULE.into() }
        }
    }
    fn to_device(&self, _ctx: &ExchangeCtx, _msg: &ToDeviceMessage<'_>) -> EduVerdict {
        // Judged with the whole EDU by `edu`.
        EduVerdict::Allow
    }
    fn response(&self, _ctx: &ExchangeCtx) -> Decision {
        Decision::Allow
    }
    fn user_field(&self, _ctx: &ExchangeCtx, field: &UserField<'_>) -> FieldVerdict {
        if text_conforms(&field.value) {
            FieldVerdict::Allow
        } else {
            FieldVerdict::Remove { rule: RULE.into() }
        }
    }
    fn request_text(&self, _ctx: &ExchangeCtx, text: &RequestText<'_>) -> Decision {
        if text_conforms(&text.text) {
            Decision::Allow
        } else {
            let (reason, what) = if text.kind.in_response() {
                (RefusalReason::ResponseText, "response")
            } else {
                (RefusalReason::RequestText, "request")
            };
            Decision::Refuse(super::Refusal::forbidden(
                reason,
                format!("the {what} carries text this guard cannot pass on"),
            ))
        }
    }
}
