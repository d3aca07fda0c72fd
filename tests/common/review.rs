//! In-test stand-ins for the review contract (`grenzwacht::review`): a hold queue that
//! enforces clearance, roles, mandatory reasons and four-eyes, an audit store that records
//! every journal entry and decision and answers searches from them, and a token table.
#![allow(dead_code)]
use std::collections::HashMap;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};

use serde_json::{json, Value};

use grenzwacht::review::{
    ActionJournal, Approval, AuditFilter, AuditSearch, Authenticate, Decision, HeldDetail,
    HeldSummary, HoldId, HoldState, Match, Outcome, Principal, ReviewError, ReviewQueue, Role,
};

fn now_ms() -> i64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_millis() as i64
}

/// The audit log: every record a JSON object with `seq`, `at_ms`, `kind`, `actor`, ….
#[derive(Default)]
pub struct TestAudit {
    pub records: Mutex<Vec<Value>>,
    /// When set, every write fails (the audit log is down).
    pub failing: AtomicBool,
}

impl TestAudit {
    fn write(&self, mut record: Value) -> Result<(), String> {
        if self.failing.load(Ordering::SeqCst) {
            return Err("audit disk full at /var/lib/secret/path".into());
        }
        let mut records = self.records.lock().unwrap();
        record["seq"] = json!(records.len() + 1);
        record["at_ms"] = json!(now_ms());
        records.push(record);
        Ok(())
    }

    pub fn all(&self) -> Vec<Value> {
        self.records.lock().unwrap().clone()
    }

    /// Records whose `action` and `outcome` are as given.
    pub fn actions(&self, action: &str, outcome: &str) -> Vec<Value> {
        self.all()
            .into_iter()
            .filter(|r| r["action"] == action && r["outcome"] == outcome)
            .collect()
    }
}

impl ActionJournal for TestAudit {
    fn admin_action(
        &self,
        who: Option<&Principal>,
        action: &str,
        target: &str,
        outcome: &str,
    ) -> Result<(), String> {
        self.write(json!({
            "kind": "admin_action",
            "actor": who.map(|p| p.name.clone()),
            "role": who.map(|p| p.role.as_str()),
            "action": action,
            "target": target,
            "outcome": outcome,
        }))
    }
}

fn narrows(record: &Value, keys: &[&str], wanted: &Option<String>) -> bool {
    match wanted {
        None => true,
        Some(w) => keys
            .iter()
            .any(|k| record[*k].as_str().is_some_and(|v| v.contains(w.as_str()))),
    }
}

impl AuditSearch for TestAudit {
    fn search(&self, f: &AuditFilter) -> Result<Vec<Value>, String> {
        let hits: Vec<Value> = self
            .all()
            .into_iter()
            .filter(|r| {
                narrows(r, &["room"], &f.room)
                    && narrows(r, &["sender", "actor"], &f.sender)
                    && narrows(r, &["origin", "destinations"], &f.server)
                    && narrows(r, &["verdict", "outcome"], &f.verdict)
                    && narrows(r, &["rules"], &f.rule)
                    && narrows(r, &["label"], &f.label)
            })
            .collect();
        let limit = if f.limit == 0 { 100 } else { f.limit };
        Ok(hits[hits.len().saturating_sub(limit)..].to_vec())
    }
}

/// Bearer tokens of the test principals.
#[derive(Default)]
pub struct TestAuth {
    pub tokens: HashMap<String, Principal>,
}

impl Authenticate for TestAuth {
    fn bearer(&self, token: &str) -> Option<Principal> {
        self.tokens.get(token).cloned()
    }
}

pub struct Held {
    pub summary: HeldSummary,
    pub content: Option<Value>,
    pub matches: Vec<Match>,
}

/// A hold queue keeping the contract of `grenzwacht::review::ReviewQueue`.
pub struct TestQueue {
    pub held: Mutex<Vec<Held>>,
    pub audit: Arc<TestAudit>,
}

/// A clearance for the given display markings (the test's form of a SPIF clearance).
pub fn clearance(markings: &[&str]) -> Value {
    json!({"policy": "test", "classifications": markings})
}

fn cleared(who: &Principal, marking: Option<&str>) -> bool {
    let Some(m) = marking else {
        return true;
    };
    who.clearance
        .as_ref()
        .and_then(|c| c["classifications"].as_array())
        .is_some_and(|list| list.iter().any(|c| c == m))
}

impl TestQueue {
    pub fn state(&self, id: HoldId) -> HoldState {
        let held = self.held.lock().unwrap();
        held.iter()
            .find(|h| h.summary.id == id)
            .unwrap()
            .summary
            .state
    }

    pub fn approvals(&self, id: HoldId) -> Vec<Approval> {
        let held = self.held.lock().unwrap();
        held.iter()
            .find(|h| h.summary.id == id)
            .unwrap()
            .summary
            .approvals
            .clone()
    }
}

impl ReviewQueue for TestQueue {
    fn list(
        &self,
        who: &Principal,
        include_decided: bool,
    ) -> Result<Vec<HeldSummary>, ReviewError> {
        let held = self.held.lock().unwrap();
        Ok(held
            .iter()
            .filter(|h| cleared(who, h.summary.marking.as_deref()))
            .filter(|h| include_decided || h.summary.state == HoldState::Pending)
            .map(|h| h.summary.clone())
            .collect())
    }

    fn show(&self, who: &Principal, id: HoldId) -> Result<HeldDetail, ReviewError> {
        let held = self.held.lock().unwrap();
        let h = held
            .iter()
            .find(|h| h.summary.id == id)
            .ok_or(ReviewError::NotFound)?;
        if !cleared(who, h.summary.marking.as_deref()) {
            return Err(ReviewError::NotCleared);
        }
        Ok(HeldDetail {
            summary: h.summary.clone(),
            content: h.content.clone(),
            matches: h.matches.clone(),
        })
    }

    fn decide(
        &self,
        who: &Principal,
        id: HoldId,
        decision: Decision,
        reason: &str,
    ) -> Result<Outcome, ReviewError> {
        if !who.role.may_decide() {
            return Err(ReviewError::Forbidden);
        }
        if reason.trim().is_empty() {
            return Err(ReviewError::ReasonRequired);
        }
        let mut held = self.held.lock().unwrap();
        let h = held
            .iter_mut()
            .find(|h| h.summary.id == id)
            .ok_or(ReviewError::NotFound)?;
        if !cleared(who, h.summary.marking.as_deref()) {
            return Err(ReviewError::NotCleared);
        }
        if h.summary.state != HoldState::Pending {
            return Err(ReviewError::AlreadyDecided);
        }
        let s = &mut h.summary;
        let (verdict, outcome) = match decision {
            Decision::Reject => ("rejected", Outcome::Decided(HoldState::Rejected)),
            Decision::Release if s.four_eyes => {
                let firsts: Vec<&Approval> = s
                    .approvals
                    .iter()
                    .filter(|a| a.decision == Decision::Release)
                    .collect();
                if firsts.iter().any(|a| a.reviewer == who.name) {
                    return Err(ReviewError::SameReviewer);
                }
                if firsts.is_empty() {
                    ("approved_first", Outcome::AwaitingSecond)
                } else {
                    ("released", Outcome::Decided(HoldState::Released))
                }
            }
            Decision::Release => ("released", Outcome::Decided(HoldState::Released)),
        };
        // Audited before it takes effect; no audit, no decision.
        self.audit
            .write(json!({
                "kind": "review_decision",
                "actor": who.name,
                "hold": id,
                "event_id": s.event_id,
                "room": s.room_id,
                "sender": s.sender,
                "origin": s.origin,
                "destinations": s.destinations.join(","),
                "rules": s.rules.join(","),
                "label": s.marking,
                "verdict": verdict,
                "reason": reason,
            }))
            .map_err(ReviewError::Unavailable)?;
        s.approvals.push(Approval {
            reviewer: who.name.clone(),
            decision,
            reason: reason.to_string(),
            at_ms: now_ms(),
        });
        if let Outcome::Decided(state) = outcome {
            s.state = state;
        }
        Ok(outcome)
    }
}

pub fn principal(name: &str, role: Role, markings: &[&str]) -> Principal {
    Principal {
        name: name.into(),
        role,
        clearance: Some(clearance(markings)),
    }
}

/// A held event in room `!ops:a.test` from `@mallory:a.test`, pending, no approvals.
pub fn held(
    id: HoldId,
    marking: Option<&str>,
    four_eyes: bool,
    body: &str,
    spans: &[(&str, usize, usize)],
) -> Held {
    Held {
        summary: HeldSummary {
            id,
            room_id: "!ops:a.test".into(),
            event_id: format!("$event{id}"),
            sender: "@mallory:a.test".into(),
            origin: "a.test".into(),
            direction: "outbound".into(),
            destinations: vec!["b.test".into(), "c.test".into()],
            rules: spans.iter().map(|(r, _, _)| r.to_string()).collect(),
            marking: marking.map(str::to_string),
            held_at_ms: 1_796_563_200_000 + id,
            state: HoldState::Pending,
            approvals: vec![],
            four_eyes,
        },
        content: Some(json!({"msgtype": "m.text", "body": body})),
        matches: spans
            .iter()
            .map(|(rule, start, end)| Match {
                rule: rule.to_string(),
                field: "body".into(),
                start: *start,
                end: *end,
            })
            .collect(),
    }
}
