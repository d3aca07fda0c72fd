//! The guard's audit trail: every unit decision, refusal, policy load and review step of the
//! running guard as records of the audit log (`crate::audit`).
//!
//! Design notes:
//! - **Nothing crosses unrecorded.** The decision records of a request are appended — and
//!   durable — before the permitted bytes go upstream; those of a response before the answer
//!   is released. If the append fails, the exchange is refused with 503 `M_UNKNOWN` ("audit log
//!   unavailable"): the sender retries, nothing is lost, and `/health` says why.
//! - **No content by default.** A decision record carries the SHA-256 of the unit's content
//!   as received and, per matched rule, the field and a masked excerpt; the content itself only
//!   with `[audit] store_content = true`.
//! - Refusals are recorded too (the requested path without its query), but a refusal is never
//!   held up by the audit log: nothing crosses either way.
//! - A guard without an auditor (in-process tests, `bench`'s baseline) records nothing; `serve`
//!   always has one (`[audit]` is required).
use std::sync::Arc;

use http::StatusCode;

use super::guard::Guard;
use crate::audit::{
    self, AdminRecord, DecisionRecord, Record, RefusalRecord, ReviewRecord, RuleMatch, Unit,
    Verdict,
};
use crate::policy::decisions::{UnitDecision, UnitKind, UnitVerdict};
use crate::policy::{Direction, ExchangeCtx, Refusal, RefusalReason, Units};
use crate::review::{ActionJournal, Decision, HeldSummary, HoldJournal, Outcome, Principal};

/// Who sent and who receives the data a set of decisions is about.
pub struct Parties<'a> {
    pub origin: &'a str,
    pub destination: &'a str,
    /// The way the data flows.
    pub direction: Direction,
}

impl<'a> Parties<'a> {
    /// The parties of a request's body (`response = false`) or of its answer (`true`).
    pub fn of(ctx: &'a ExchangeCtx, response: bool) -> Parties<'a> {
        let remote = ctx.peer.as_deref().unwrap_or("");
        let (from, to) = match ctx.direction {
            Direction::Inbound => (remote, ctx.protected.as_str()),
            Direction::Outbound => (ctx.protected.as_str(), remote),
        };
        if response {
            Parties {
                origin: to,
                destination: from,
                direction: ctx.direction.reverse(),
            }
        } else {
            Parties {
                origin: from,
                destination: to,
                direction: ctx.direction,
            }
        }
    }
}

fn audit_direction(d: Direction) -> audit::Direction {
    match d {
        Direction::Inbound => audit::Direction::Inbound,
        Direction::Outbound => audit::Direction::Outbound,
    }
}

fn unit(kind: UnitKind) -> Unit {
    match kind {
        UnitKind::Pdu => Unit::Pdu,
        UnitKind::Event => Unit::Event,
        UnitKind::Edu => Unit::Edu,
        UnitKind::ToDevice => Unit::ToDevice,
        UnitKind::Field => Unit::Field,
    }
}

fn verdict(v: UnitVerdict) -> Verdict {
    match v {
        UnitVerdict::Allow => Verdict::Allow,
        UnitVerdict::Redact => Verdict::Redact,
        UnitVerdict::Hold => Verdict::Hold,
        UnitVerdict::Reject => Verdict::Reject,
        UnitVerdict::Drop => Verdict::Drop,
        UnitVerdict::Withhold => Verdict::Withhold,
        UnitVerdict::Unjudged => Verdict::Unjudged,
    }
}

/// The bytes a decision is about, as received: the whole PDU or event (so that
/// `policy replay --audit` can judge it again), the whole EDU, a field's text.
fn content_of<'u>(units: &'u Units<'_>, d: &UnitDecision) -> Option<&'u str> {
    match d.kind {
        UnitKind::Pdu => {
            let i = units.pdu_pos.iter().position(|&p| p == d.pos)?;
            units.pdus.get(i).map(|p| p.raw.get())
        }
        UnitKind::Event => {
            let i = units.event_pos.iter().position(|&p| p == d.pos)?;
            units.events.get(i).map(|e| e.raw.get())
        }
        UnitKind::Edu | UnitKind::ToDevice => units.edus.get(d.pos).map(|e| e.raw.get()),
        UnitKind::Field => units.user_fields.get(d.pos).map(|f| f.value.as_ref()),
    }
}

/// The decision records of one body's units.
pub fn decision_records(
    ctx: &ExchangeCtx,
    parties: &Parties<'_>,
    units: &Units<'_>,
    decisions: &[UnitDecision],
    policy_hash: Option<&str>,
    store_content: bool,
) -> Vec<Record> {
    decisions
        .iter()
        .map(|d| {
            let content = content_of(units, d);
            let (label, clearance) = match &d.label {
                Some(l) => (l.label.clone(), l.clearance.clone()),
                None => (None, None),
            };
            let mut rules: Vec<RuleMatch> = d
                .hits
                .iter()
                .map(|h| RuleMatch {
                    rule: h.rule.clone(),
                    field: h.field.clone().unwrap_or_default(),
                    excerpt: h.excerpt.clone().unwrap_or_default(),
                })
                .collect();
            if let (true, Some(rule)) = (rules.is_empty(), &d.rule) {
                // A verdict without matches (paused room, integrity finding): its rule.
                rules.push(RuleMatch {
                    rule: rule.clone(),
                    field: String::new(),
                    excerpt: String::new(),
                });
            }
            Record::from(DecisionRecord {
                unit: unit(d.kind),
                txn_id: ctx.txn_id.clone(),
                event_id: d.event_id.clone(),
                room_id: d.room_id.clone(),
                sender: d.sender.clone(),
                origin: parties.origin.to_string(),
                destination: parties.destination.to_string(),
                direction: audit_direction(parties.direction),
                endpoint: ctx.endpoint.path.to_string(),
                verdict: verdict(d.verdict),
                effect: Some(d.effect.as_str().to_string()),
                rules,
                label,
                clearance,
                policy_hash: policy_hash.map(str::to_string),
                content_sha256: content.map(|c| audit::content_sha256(c.as_bytes())),
                content: if store_content {
                    content.and_then(|c| {
                        serde_json::from_str(c)
                            .ok()
                            .or_else(|| Some(serde_json::Value::String(c.to_string())))
                    })
                } else {
                    None
                },
            })
        })
        .collect()
}

/// The refusal of an exchange whose decisions could not be recorded.
pub fn unavailable() -> Refusal {
    Refusal::new(
        StatusCode::SERVICE_UNAVAILABLE,
        "M_UNKNOWN",
        RefusalReason::Internal,
        "audit log unavailable: nothing crosses until it is",
    )
}

/// Appends the decisions of one body, durably, before anything of it crosses; a failure
/// refuses the exchange (503).
pub async fn record_decisions(
    guard: &Guard,
    ctx: &ExchangeCtx,
    response: bool,
    units: &Units<'_>,
    decisions: &[UnitDecision],
    policy_hash: Option<&str>,
) -> Result<(), Refusal> {
    index_media(guard, ctx, response, units, decisions);
    let Some(auditor) = guard.auditor() else {
        return Ok(());
    };
    if decisions.is_empty() {
        return auditor.health().map_err(|_| unavailable());
    }
    let parties = Parties::of(ctx, response);
    let recs = decision_records(
        ctx,
        &parties,
        units,
        decisions,
        policy_hash,
        auditor.stores_content(),
    );
    auditor.append_all(recs).await.map_err(|e| {
        tracing::error!(error = %e, txn = ?ctx.txn_id, "decisions not recorded: refused");
        unavailable()
    })
}

/// Feeds the mxc index (`proxy::media`) with the events of one body and what became of them.
pub fn index_media(
    guard: &Guard,
    ctx: &ExchangeCtx,
    response: bool,
    units: &Units<'_>,
    decisions: &[UnitDecision],
) {
    let contents: Vec<(&UnitDecision, &str)> = decisions
        .iter()
        .filter(|d| matches!(d.kind, UnitKind::Pdu | UnitKind::Event))
        .filter_map(|d| content_of(units, d).map(|c| (d, c)))
        .collect();
    super::media::index_decisions(guard, ctx, response, &contents);
}

/// Records a refusal (the requested path without its query). Never fails the exchange.
pub async fn record_refusal(
    guard: &Guard,
    direction: Direction,
    method: &str,
    path: &str,
    origin: Option<&str>,
    peer: Option<String>,
    r: &Refusal,
) {
    let Some(auditor) = guard.auditor() else {
        return;
    };
    let rec = Record::from(RefusalRecord {
        status: r.status.as_u16(),
        errcode: r.errcode.to_string(),
        reason: r.reason.as_str().to_string(),
        method: method.to_string(),
        path: path.chars().take(512).collect(),
        origin: origin.map(str::to_string),
        peer,
        direction: audit_direction(direction),
    });
    if let Err(e) = auditor.append(rec).await {
        tracing::warn!(error = %e, "refusal not recorded");
    }
}

/// Appends every load record of the running guard (start-up, reloads, refused reloads) to
/// the audit log. A load record that cannot be written is logged; the decisions that follow
/// are refused anyway while the audit log is failed.
pub fn load_observer(
    auditor: audit::Auditor,
) -> Box<dyn Fn(&crate::policy::identity::LoadRecord) + Send + Sync> {
    use crate::policy::identity::LoadEvent;
    Box::new(move |r| {
        let change = match r.event {
            LoadEvent::Startup => audit::LoadChange::Start,
            LoadEvent::Reload => audit::LoadChange::Reload,
            LoadEvent::RefusedReload => audit::LoadChange::FailedReload,
        };
        let named = |f: &crate::policy::identity::FileHash| audit::NamedHash {
            name: f.path.clone(),
            sha256: f.sha256.clone().unwrap_or_else(|| "unreadable".into()),
        };
        let rec = Record::from(audit::LoadRecord {
            change,
            config_hash: r.config.as_ref().and_then(|c| c.sha256.clone()),
            rules_hash: r.rule_set.as_ref().map(|s| s.fingerprint.clone()),
            spifs: r.spifs.iter().map(named).collect(),
            error: r.refused.clone(),
        });
        if let Err(e) = auditor.append_blocking(rec) {
            tracing::error!(error = %e, "load record not written to the audit log");
        }
    })
}

/// The audit log as the review queue's and the admin listener's journal: every hold, review
/// step and admin action is appended (durably) before it takes effect.
pub struct AuditJournal(pub audit::Auditor);

impl HoldJournal for AuditJournal {
    fn held(&self, e: &HeldSummary) -> Result<(), String> {
        crate::review::LogJournal.held(e)?;
        self.0
            .append_blocking(Record::from(ReviewRecord {
                principal: "guard".into(),
                hold_id: e.id,
                event_id: e.event_id.clone(),
                room_id: Some(e.room_id.clone()),
                decision: format!("held towards {}", e.destinations.join(", ")),
                reason: e.rules.join(", "),
                four_eyes: if e.four_eyes { "on" } else { "off" }.into(),
            }))
            .map(|_| ())
            .map_err(|e| e.to_string())
    }

    fn decided(
        &self,
        e: &HeldSummary,
        who: &str,
        decision: Decision,
        reason: &str,
        outcome: &Outcome,
    ) -> Result<(), String> {
        crate::review::LogJournal.decided(e, who, decision, reason, outcome)?;
        let decision = match (who, decision) {
            ("timeout", Decision::Release) => "timeout_release",
            ("timeout", Decision::Reject) => "timeout_reject",
            (_, Decision::Release) => "release",
            (_, Decision::Reject) => "reject",
        };
        let four_eyes = match (e.four_eyes, outcome) {
            (false, _) => "off",
            (true, Outcome::AwaitingSecond) => "awaiting_second",
            (true, Outcome::Decided(_)) => "complete",
        };
        self.0
            .append_blocking(Record::from(ReviewRecord {
                principal: who.to_string(),
                hold_id: e.id,
                event_id: e.event_id.clone(),
                room_id: Some(e.room_id.clone()),
                decision: decision.into(),
                reason: reason.to_string(),
                four_eyes: four_eyes.into(),
            }))
            .map(|_| ())
            .map_err(|e| e.to_string())
    }
}

impl ActionJournal for AuditJournal {
    fn admin_action(
        &self,
        who: Option<&Principal>,
        action: &str,
        target: &str,
        outcome: &str,
    ) -> Result<(), String> {
        self.0
            .append_blocking(Record::from(AdminRecord {
                principal: who.map(|p| p.name.clone()),
                role: who.map(|p| p.role.as_str().to_string()),
                action: action.to_string(),
                target: target.to_string(),
                outcome: outcome.to_string(),
            }))
            .map(|_| ())
            .map_err(|e| e.to_string())
    }
}

/// The audit log as the admin API's and the UI's audit search.
pub struct AuditDir(pub std::path::PathBuf);

impl crate::review::AuditSearch for AuditDir {
    fn search(
        &self,
        filter: &crate::review::AuditFilter,
    ) -> Result<Vec<serde_json::Value>, String> {
        let f = crate::audit::query::Filter {
            from: filter.from.clone(),
            to: filter.to.clone(),
            room: filter.room.clone(),
            sender: filter.sender.clone(),
            server: filter.server.clone(),
            verdict: filter.verdict.clone(),
            rule: filter.rule.clone(),
            label: filter.label.clone(),
            limit: filter.limit,
        };
        crate::audit::query::search(&self.0, &f).map_err(|e| e.to_string())
    }
}

/// Shared handle type the admin listener takes.
pub type Journal = Arc<AuditJournal>;

/// Records a PDU the TI-Messenger profile left out of a transaction or response
/// (`proxy::ti_gate`): verdict `withhold`, rule `ti:<reason>`. The PDU does not cross either
/// way, so a failed append is logged, not fatal.
pub async fn record_ti_withheld(
    guard: &Guard,
    ctx: &ExchangeCtx,
    response: bool,
    pdu: &crate::federation::pdu::PduView<'_>,
    reason: &str,
) {
    let Some(auditor) = guard.auditor() else {
        return;
    };
    let parties = Parties::of(ctx, response);
    let content = pdu.raw.get();
    let rec = Record::from(DecisionRecord {
        unit: Unit::Pdu,
        txn_id: ctx.txn_id.clone(),
        event_id: super::perpdu::event_id(guard.store(), pdu.raw, pdu.room_id.as_deref()),
        room_id: pdu.room_id.as_deref().map(str::to_owned),
        sender: Some(pdu.sender.to_string()),
        origin: parties.origin.to_string(),
        destination: parties.destination.to_string(),
        direction: audit_direction(parties.direction),
        endpoint: ctx.endpoint.path.to_string(),
        verdict: audit::Verdict::Withhold,
        effect: Some("withheld".into()),
        rules: vec![RuleMatch {
            rule: format!("ti:{reason}"),
            field: String::new(),
            excerpt: String::new(),
        }],
        label: None,
        clearance: None,
        policy_hash: None,
        content_sha256: Some(audit::content_sha256(content.as_bytes())),
        content: None,
    });
    if let Err(e) = auditor.append(rec).await {
        tracing::warn!(error = %e, "TI: withheld event not recorded");
    }
}
