//! YARA rules on event text: the rules of `<policies>/yara/*.yar` tagged `text` also judge
//! the text fields of events, like DLP rules.
//!
//! # Design notes
//!
//! * **Which rules.** Only rules with the YARA tag `text` (`rule x : text { … }`); every other
//!   rule applies to files only (`media::yara`). The rules are compiled once with the whole
//!   YARA set; this layer only sees them through [`TextMatcher`] (the compiled set lives in
//!   `media::yara`, which implements it), so `policy` does not depend on `media`.
//! * **Scope** comes from each rule's `meta:` (checked at load, diagnostics `YAR005`):
//!   `fields = "body,formatted_body"` (names of [`Field`]; default every field),
//!   `directions = "outbound"` (default both), `event_types = "m.room.message,m.room.*"` (globs,
//!   default every type) and `action = "redact"` (`tag`, `redact`, `hold` or `reject`; default
//!   `redact`).
//! * **What is scanned.** The texts of an event as the DLP engine reads them
//!   ([`super::dlp::fields::event_texts`]: `type`, `state_key`, the known content fields,
//!   the rest of `content` and `unsigned` as blobs), each through the text pipeline
//!   ([`crate::text::Views`]: normalised text, and for text with `&` or `<` the rendered HTML
//!   and its markup). A rule matches a field if it matches any view of it.
//! * **Verdicts.** The most severe action of the matching rules; the verdict's rule is
//!   `yara:<namespace>.<rule>` (the first rule with that action). `tag` only logs. A scan that
//!   fails (timeout, error) or content that does not parse fails closed as a redaction
//!   (`yara:scan_failed`, `yara:unreadable`).
//! * **Beyond events** the layer judges what the DLP layer judges, with the same fields and
//!   pseudo event types: every EDU's texts ([`super::dlp::fields::edu_texts`]; a match drops
//!   the EDU), user-data fields (`m.profile`, `m.devices`, `m.directory`; a match removes the
//!   field), request text (`m.request`: path, query, non-event body, the peer server's name;
//!   a match refuses the request) and response text (`m.response`, one scan of the joined
//!   pieces; a match refuses the response).
//! * **Logs never carry payload**: rule, field and unit only.
use std::borrow::Cow;
use std::sync::Arc;

use serde_json::Value;

use super::decisions::{Findings, RuleHit};
use super::dlp::fields::{edu_texts, event_texts, EventParts, Field, Judged};
use super::dlp::layer::{request_text_scope, user_field_scope};
use super::dlp::Action;
use super::{
    Decision, EduVerdict, ExchangeCtx, FieldVerdict, PduVerdict, Policy, Refusal, RefusalReason,
    RequestText,
};
use crate::federation::pdu::{EduView, EventView, PduView};
use crate::federation::userdata::{FieldKind, ToDeviceMessage, UserField};
use crate::telemetry::Direction;

pub use crate::telemetry::YARA_TEXT_DECISIONS_TOTAL;

/// The scope and action of one `text` rule (from its `meta:`).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TextRule {
    /// `namespace.rule`.
    pub name: String,
    /// Empty: every field.
    pub fields: Vec<Field>,
    /// Empty: both directions.
    pub directions: Vec<Direction>,
    /// Event-type globs (`*` matches any run of characters); empty: every type.
    pub event_types: Vec<String>,
    /// `Tag`, `Redact`, `Hold` or `Reject`.
    pub action: Action,
}

impl TextRule {
    fn applies(&self, direction: Direction, event_type: &str) -> bool {
        (self.directions.is_empty() || self.directions.contains(&direction))
            && (self.event_types.is_empty()
                || self
                    .event_types
                    .iter()
                    .any(|g| glob(g.as_bytes(), event_type.as_bytes())))
    }
    fn on_field(&self, f: Field) -> bool {
        self.fields.is_empty() || self.fields.contains(&f)
    }
}

/// `*` matches any run of bytes; everything else matches itself.
fn glob(p: &[u8], s: &[u8]) -> bool {
    let (mut pi, mut si) = (0, 0);
    let mut star: Option<(usize, usize)> = None;
    while si < s.len() {
        if pi < p.len() && p[pi] == b'*' {
            star = Some((pi, si));
            pi += 1;
        } else if pi < p.len() && p[pi] == s[si] {
            pi += 1;
            si += 1;
        } else if let Some((sp, ss)) = star {
            pi = sp + 1;
            si = ss + 1;
            star = Some((sp, ss + 1));
        } else {
            return false;
        }
    }
    p[pi..].iter().all(|&c| c == b'*')
}

/// Why a text scan failed.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum TextScanError {
    #[error("scan timed out")]
    Timeout,
    #[error("scan failed")]
    Failed,
}

/// The compiled `text` rules (implemented by `media::yara::YaraRules`).
pub trait TextMatcher: Send + Sync {
    /// The `text` rules; [`TextMatcher::match_texts`] answers with indexes into this list.
    fn text_rules(&self) -> &[TextRule];
    /// Runs the rules over each text (one scanner for all of them) and returns, per text, the
    /// indexes of the matching `text` rules.
    fn match_texts(&self, texts: &[&[u8]]) -> Result<Vec<Vec<usize>>, TextScanError>;
}

/// One matching rule in one field.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TextHit {
    /// Index into [`TextMatcher::text_rules`].
    pub rule: usize,
    pub field: Field,
}

/// The result of judging one event.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct TextOutcome {
    /// The most severe action of the hits (`Allow` if none).
    pub action: Action,
    pub hits: Vec<TextHit>,
    /// Why the event could not be judged (it is then redacted): `unreadable` or `scan_failed`.
    pub failed: Option<&'static str>,
}

impl TextOutcome {
    /// A unit that could not be read: it does not cross as it is.
    fn unreadable() -> TextOutcome {
        TextOutcome {
            action: Action::Redact,
            hits: Vec::new(),
            failed: Some("unreadable"),
        }
    }
}

/// The `text` YARA rules as a policy layer.
pub struct YaraTextPolicy {
    matcher: Arc<dyn TextMatcher>,
}

impl YaraTextPolicy {
    pub fn new(matcher: Arc<dyn TextMatcher>) -> Self {
        YaraTextPolicy { matcher }
    }

    /// Number of `text` rules.
    pub fn rule_count(&self) -> usize {
        self.matcher.text_rules().len()
    }

    /// Judges the texts of one event of type `event_type` going in `direction`.
    pub fn scan_parts(&self, direction: Direction, parts: EventParts<'_>) -> TextOutcome {
        let rules = self.matcher.text_rules();
        if !rules.iter().any(|r| r.applies(direction, parts.event_type)) {
            return TextOutcome::default();
        }
        let texts = event_texts(parts);
        self.scan_pieces(direction, parts.event_type, &texts.fields)
    }

    /// Judges pieces of text (each with its field) of a unit of type `event_type` (an event,
    /// EDU, or the pseudo types `m.profile`, `m.devices`, `m.directory`, `m.request`,
    /// `m.response`) going in `direction`.
    fn scan_pieces(
        &self,
        direction: Direction,
        event_type: &str,
        pieces: &[(Field, Cow<'_, str>)],
    ) -> TextOutcome {
        let rules = self.matcher.text_rules();
        let active: Vec<usize> = (0..rules.len())
            .filter(|&i| rules[i].applies(direction, event_type))
            .collect();
        if active.is_empty() {
            return TextOutcome::default();
        }
        // Every view of every field some active rule looks at, with its field.
        let mut views = crate::text::Views::new();
        let mut scanned: Vec<(Field, String)> = Vec::new();
        for (field, text) in pieces {
            if !active.iter().any(|&i| rules[i].on_field(*field)) {
                continue;
            }
            for v in views.build(text, false) {
                scanned.push((*field, v.text.clone()));
            }
        }
        if scanned.is_empty() {
            return TextOutcome::default();
        }
        let refs: Vec<&[u8]> = scanned.iter().map(|(_, t)| t.as_bytes()).collect();
        let per_text = match self.matcher.match_texts(&refs) {
            Ok(p) => p,
            Err(_) => {
                return TextOutcome {
                    action: Action::Redact,
                    hits: Vec::new(),
                    failed: Some("scan_failed"),
                }
            }
        };
        let mut out = TextOutcome::default();
        for ((field, _), matched) in scanned.iter().zip(per_text) {
            for r in matched {
                let Some(rule) = rules.get(r) else { continue };
                if !active.contains(&r) || !rule.on_field(*field) {
                    continue;
                }
                let hit = TextHit {
                    rule: r,
                    field: *field,
                };
                if !out.hits.contains(&hit) {
                    out.action = out.action.max(rule.action);
                    out.hits.push(hit);
                }
            }
        }
        out
    }

    /// Judges one event or to-device content: every member of an event is text.
    fn scan_content(&self, ctx: &ExchangeCtx, what: &str, judged: Judged<'_>) -> TextOutcome {
        let Some(value) = judged.value() else {
            return TextOutcome::unreadable();
        };
        let out = self.scan_parts(ctx.direction, judged.parts(&value));
        self.record(ctx, what, &out);
        out
    }

    fn record(&self, ctx: &ExchangeCtx, what: &str, out: &TextOutcome) {
        let rules = self.matcher.text_rules();
        if let Some(reason) = out.failed {
            tracing::warn!(
                direction = ctx.direction.as_str(),
                peer = ctx.peer.as_deref().unwrap_or(""),
                unit = what,
                reason,
                "YARA text scan failed; the unit does not cross (redacted, dropped or refused)"
            );
            metrics::counter!(YARA_TEXT_DECISIONS_TOTAL, "action" => "redact", "result" => reason)
                .increment(1);
            return;
        }
        if out.hits.is_empty() {
            return;
        }
        metrics::counter!(YARA_TEXT_DECISIONS_TOTAL, "action" => out.action.as_str(), "result" => "match")
            .increment(1);
        for h in &out.hits {
            let r = &rules[h.rule];
            tracing::info!(
                direction = ctx.direction.as_str(),
                peer = ctx.peer.as_deref().unwrap_or(""),
                unit = what,
                rule = %r.name,
                action = r.action.as_str(),
                field = h.field.as_str(),
                "YARA text match"
            );
        }
    }

    /// `yara:<namespace>.<rule>` of the first hit with the outcome's action.
    fn deciding_rule(&self, out: &TextOutcome) -> String {
        if let Some(f) = out.failed {
            return format!("yara:{f}");
        }
        let rules = self.matcher.text_rules();
        out.hits
            .iter()
            .map(|h| &rules[h.rule])
            .find(|r| r.action == out.action)
            .map(|r| format!("yara:{}", r.name))
            .unwrap_or_else(|| "yara".to_string())
    }

    /// The rule that removes a unit (EDU, to-device message, field) the outcome does not allow.
    fn removes(&self, out: &TextOutcome) -> Option<String> {
        match self.verdict(out) {
            PduVerdict::Allow => None,
            _ => Some(self.deciding_rule(out)),
        }
    }

    fn verdict(&self, out: &TextOutcome) -> PduVerdict {
        match out.action {
            Action::Allow | Action::Tag => PduVerdict::Allow,
            Action::Redact => PduVerdict::Redact {
                rule: self.deciding_rule(out),
            },
            Action::Hold => PduVerdict::Hold {
                rule: self.deciding_rule(out),
            },
            Action::Reject => PduVerdict::Reject {
                rule: self.deciding_rule(out),
            },
        }
    }

    fn add_hits(&self, out: &TextOutcome, found: &mut Findings) {
        let rules = self.matcher.text_rules();
        found.hits.extend(out.hits.iter().map(|h| {
            let r = &rules[h.rule];
            RuleHit {
                layer: "yara",
                rule: format!("yara:{}", r.name),
                action: r.action.as_str().to_string(),
                shadow: false,
                field: Some(h.field.as_str().to_string()),
                span: None,
                excerpt: None,
            }
        }));
    }

    /// The outcome for a PDU (what [`Policy::pdu`] decides on).
    pub fn pdu_outcome(&self, ctx: &ExchangeCtx, pdu: &PduView<'_>) -> TextOutcome {
        self.scan_content(ctx, "pdu", Judged::Event(pdu.raw))
    }

    fn event_outcome(&self, ctx: &ExchangeCtx, event: &EventView<'_>) -> TextOutcome {
        self.scan_content(ctx, "event", Judged::Event(event.raw))
    }
}

impl Policy for YaraTextPolicy {
    fn request(&self, _ctx: &ExchangeCtx) -> Decision {
        Decision::Allow
    }
    fn pdu(&self, ctx: &ExchangeCtx, pdu: &PduView<'_>) -> PduVerdict {
        self.verdict(&self.pdu_outcome(ctx, pdu))
    }
    fn redacted_pdu(&self, ctx: &ExchangeCtx, pdu: &PduView<'_>) -> PduVerdict {
        self.pdu(ctx, pdu)
    }
    fn event(&self, ctx: &ExchangeCtx, event: &EventView<'_>) -> PduVerdict {
        self.verdict(&self.event_outcome(ctx, event))
    }
    fn edu(&self, ctx: &ExchangeCtx, edu: &EduView<'_>) -> EduVerdict {
        let out = match serde_json::from_str::<Value>(edu.content.get()) {
            Ok(value) => {
                let texts = edu_texts(&edu.edu_type, &value);
                self.scan_pieces(ctx.direction, &edu.edu_type, &texts.fields)
            }
            Err(_) => TextOutcome::unreadable(),
        };
        self.record(ctx, "edu", &out);
        match self.removes(&out) {
            None => EduVerdict::Allow,
            Some(rule) => EduVerdict::Drop { rule },
        }
    }
    fn user_field(&self, ctx: &ExchangeCtx, field: &UserField<'_>) -> FieldVerdict {
        let (f, pseudo) = user_field_scope(field);
        let mut pieces = vec![(f, Cow::Borrowed(field.value.as_ref()))];
        // The key of a field with no fixed name (extended profiles) is text as well.
        if field.kind == FieldKind::ProfileField {
            pieces.push((f, Cow::Borrowed(field.key.as_ref())));
        }
        let out = self.scan_pieces(ctx.direction, pseudo, &pieces);
        self.record(ctx, "user_field", &out);
        match self.removes(&out) {
            None => FieldVerdict::Allow,
            Some(rule) => FieldVerdict::Remove { rule },
        }
    }
    fn request_text(&self, ctx: &ExchangeCtx, text: &RequestText<'_>) -> Decision {
        let (field, pseudo) = request_text_scope(text.kind);
        let out = self.scan_pieces(
            ctx.direction,
            pseudo,
            &[(field, Cow::Borrowed(text.text.as_ref()))],
        );
        self.record(ctx, "request", &out);
        match self.verdict(&out) {
            PduVerdict::Allow => Decision::Allow,
            _ => Decision::Refuse(Refusal::forbidden(
                RefusalReason::RequestText,
                text.refused_by(&self.deciding_rule(&out)),
            )),
        }
    }
    fn response_text(&self, ctx: &ExchangeCtx, texts: &[RequestText<'_>]) -> Decision {
        if texts.is_empty() {
            return Decision::Allow;
        }
        let joined = texts
            .iter()
            .map(|t| t.text.as_ref())
            .collect::<Vec<_>>()
            .join("\n");
        let out = self.scan_pieces(
            ctx.direction,
            "m.response",
            &[(Field::ResponseBody, Cow::Owned(joined))],
        );
        self.record(ctx, "response", &out);
        match self.verdict(&out) {
            PduVerdict::Allow => Decision::Allow,
            _ => Decision::Refuse(Refusal::forbidden(
                RefusalReason::ResponseText,
                format!(
                    "response refused: its text refused by rule {}",
                    self.deciding_rule(&out)
                ),
            )),
        }
    }
    fn response(&self, _ctx: &ExchangeCtx) -> Decision {
        Decision::Allow
    }
    fn to_device(&self, ctx: &ExchangeCtx, msg: &ToDeviceMessage<'_>) -> EduVerdict {
        let out = self.scan_content(
            ctx,
            "to_device",
            Judged::Content {
                event_type: msg.event_type.as_deref().unwrap_or(""),
                content: msg.content,
            },
        );
        match self.removes(&out) {
            None => EduVerdict::Allow,
            Some(rule) => EduVerdict::Drop { rule },
        }
    }
    fn matches(&self, ctx: &ExchangeCtx, pdu: &PduView<'_>) -> Vec<crate::review::Match> {
        let rules = self.matcher.text_rules();
        self.pdu_outcome(ctx, pdu)
            .hits
            .iter()
            .filter(|h| rules[h.rule].action != Action::Tag)
            .map(|h| crate::review::Match {
                rule: format!("yara:{}", rules[h.rule].name),
                field: h.field.as_str().to_string(),
                start: 0,
                end: 0,
            })
            .collect()
    }
    fn explain_pdu(
        &self,
        ctx: &ExchangeCtx,
        pdu: &PduView<'_>,
        found: &mut Findings,
    ) -> PduVerdict {
        let out = self.pdu_outcome(ctx, pdu);
        self.add_hits(&out, found);
        self.verdict(&out)
    }
    fn explain_event(
        &self,
        ctx: &ExchangeCtx,
        event: &EventView<'_>,
        found: &mut Findings,
    ) -> PduVerdict {
        let out = self.event_outcome(ctx, event);
        self.add_hits(&out, found);
        self.verdict(&out)
    }
}

#[cfg(test)]
mod tests;
