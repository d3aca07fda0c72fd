//! What-if for rule changes: recorded events run through a candidate rule set
//! (`grenzwacht policy replay`), listing every decision that would change.
//!
//! # Input
//!
//! A corpus of [`ReplayItem`]s. `--events FILE` reads JSON lines ([`parse_events`]), one event
//! per line, blank lines and lines starting with `#` skipped:
//!
//! ```json
//! {"event": {"type": "m.room.message", "room_id": "!r:hs1", "sender": "@a:hs1", "origin_server_ts": 1, "content": {"body": "…"}},
//!  "direction": "outbound", "peer": "hs2.example", "event_id": "$…", "room_version": "10",
//!  "verdict": "allow", "rules": []}
//! ```
//!
//! * `event` (required): the PDU as it crossed (at least `type`, `room_id`, `sender`,
//!   `origin_server_ts`, `content`).
//! * `direction`: `outbound` (default) or `inbound`, the way the event's data flowed.
//! * `peer`: the remote server (rule scopes and exceptions).
//! * `event_id`: names the event in the output; else the event's own `event_id` (room versions
//!   1–2), else its reference hash when `room_version` is given.
//! * `verdict` and `rules`: the recorded decision ("old"). When `verdict` is absent, the
//!   current rule set (`--config`'s `[dlp] policies` and `[[rule]]` list, or `--current DIR`)
//!   computes it.
//!
//! `--audit DIR` reads the `decision` records of an audit log ([`read_audit`],
//! [`item_from_audit_record`]): those that stored the event (`[audit] store_content = true`)
//! map the same way — `data.content` is the event, `data.verdict` and `data.rules[].rule` the
//! recorded decision, `data.direction`, `data.event_id`, and the remote side of
//! `data.origin`/`data.destination`. The record's `seq` names it in the output (`line`).
//!
//! # Judgement
//!
//! Each event is judged as one PDU of a transaction by the same code path as the guard
//! (`check_units` over the layer stack with decision records, [`super::decisions`]): the
//! config's `[[rule]]` layer (with `--config`) and the DLP rule set. Security labels are not
//! replayed (they depend on room state in the guard's store).
//!
//! # Output
//!
//! One JSON object per changed decision ([`Change`]), in corpus order: `line`, `event_id`,
//! `room_id`, `direction`, `old` and `new` (`verdict`, deciding `rule`, matched `rules`). A
//! decision changes when its verdict changes; with `include_rule_changes` also when the
//! matched rules change under the same verdict.
use serde::Serialize;
use serde_json::value::RawValue;
use serde_json::Value;

use super::decisions::{check_units_recorded, UnitVerdict};
use super::{ExchangeCtx, Policy, Units};
use crate::federation::catalog;
use crate::federation::pdu::PduView;
use crate::telemetry::Direction;

/// Errors of a replay. Messages name corpus lines and fields, never event content.
#[derive(Debug, thiserror::Error)]
pub enum ReplayError {
    /// A corpus line that is not a usable item.
    #[error("line {line}: {message}")]
    Line { line: usize, message: String },
    /// A line without a recorded verdict, and no current rule set to compute it.
    #[error(
        "line {line}: no recorded verdict and no current rule set (give --config or --current)"
    )]
    NoCurrent { line: usize },
    /// The audit log could not be read.
    #[error("audit log: {0}")]
    Audit(String),
}

/// One recorded event to replay.
#[derive(Debug, Clone, PartialEq)]
pub struct ReplayItem {
    /// 1-based line of the corpus (or record index).
    pub line: usize,
    pub event: Value,
    pub direction: Direction,
    pub peer: Option<String>,
    pub event_id: Option<String>,
    pub room_version: Option<String>,
    /// The recorded decision, if any.
    pub verdict: Option<UnitVerdict>,
    pub rules: Option<Vec<String>>,
}

fn parse_verdict(s: &str) -> Option<UnitVerdict> {
    UnitVerdict::ALL.into_iter().find(|v| v.as_str() == s)
}

fn parse_direction(v: Option<&Value>) -> Result<Direction, String> {
    match v.and_then(Value::as_str) {
        None if v.is_none() => Ok(Direction::Outbound),
        Some("outbound") => Ok(Direction::Outbound),
        Some("inbound") => Ok(Direction::Inbound),
        _ => Err("`direction` must be \"inbound\" or \"outbound\"".into()),
    }
}

fn opt_str(o: &serde_json::Map<String, Value>, key: &str) -> Result<Option<String>, String> {
    match o.get(key) {
        None | Some(Value::Null) => Ok(None),
        Some(Value::String(s)) => Ok(Some(s.clone())),
        Some(_) => Err(format!("`{key}` must be a string")),
    }
}

/// One corpus line (a JSON object) as an item.
fn item_from_line(line: usize, v: Value) -> Result<ReplayItem, ReplayError> {
    let bad = |message: String| ReplayError::Line { line, message };
    let Value::Object(o) = v else {
        return Err(bad("not a JSON object".into()));
    };
    let event = match o.get("event") {
        Some(e @ Value::Object(_)) => e.clone(),
        _ => return Err(bad("`event` (an object) is required".into())),
    };
    let verdict = match o.get("verdict") {
        None | Some(Value::Null) => None,
        Some(Value::String(s)) => {
            Some(parse_verdict(s).ok_or_else(|| bad(format!("unknown verdict {s:?}")))?)
        }
        Some(_) => return Err(bad("`verdict` must be a string".into())),
    };
    let rules = match o.get("rules") {
        None | Some(Value::Null) => None,
        Some(Value::Array(a)) => Some(
            a.iter()
                .map(|r| r.as_str().map(str::to_string))
                .collect::<Option<Vec<_>>>()
                .ok_or_else(|| bad("`rules` must be an array of strings".into()))?,
        ),
        Some(_) => return Err(bad("`rules` must be an array of strings".into())),
    };
    Ok(ReplayItem {
        line,
        event,
        direction: parse_direction(o.get("direction")).map_err(bad)?,
        peer: opt_str(&o, "peer").map_err(bad)?,
        event_id: opt_str(&o, "event_id").map_err(bad)?,
        room_version: opt_str(&o, "room_version").map_err(bad)?,
        verdict,
        rules,
    })
}

/// Parses a JSON-lines corpus (see the module documentation); the first bad line is an error.
pub fn parse_events(text: &str) -> Result<Vec<ReplayItem>, ReplayError> {
    let mut out = Vec::new();
    for (i, l) in text.lines().enumerate() {
        let t = l.trim();
        if t.is_empty() || t.starts_with('#') {
            continue;
        }
        let v: Value = serde_json::from_str(t).map_err(|e| ReplayError::Line {
            line: i + 1,
            message: format!("not JSON (column {})", e.column()),
        })?;
        out.push(item_from_line(i + 1, v)?);
    }
    Ok(out)
}

/// An item from an audit `decision` record (`{"kind": "decision", "seq": N, "data": {…}}`,
/// or its `data` alone) that stored the event; `None` for other records and records without
/// a stored event. The event is `data.content` when that is a whole event (it has `type` and
/// `content`), or `data.content` as the event's content with `data.type` as its type (and
/// `data.room_id`, `data.sender`); the peer is `data.destination` outbound, `data.origin`
/// inbound; `index` is used when the record has no `seq`.
pub fn item_from_audit_record(index: usize, record: &Value) -> Option<ReplayItem> {
    let data = match record.get("kind") {
        Some(k) if k != "decision" => return None,
        Some(_) => record.get("data")?,
        None => record,
    };
    let s = |k: &str| data.get(k).and_then(Value::as_str).map(str::to_string);
    let content = data.get("content").filter(|c| c.is_object())?;
    let event = if content.get("type").is_some_and(Value::is_string)
        && content.get("content").is_some_and(Value::is_object)
    {
        content.clone()
    } else {
        let mut e = serde_json::json!({
            "type": s("type")?,
            "content": content,
            "origin_server_ts": 0,
        });
        for k in ["room_id", "sender"] {
            if let Some(v) = s(k) {
                e[k] = Value::String(v);
            }
        }
        e
    };
    let direction = parse_direction(data.get("direction")).ok()?;
    let peer = match direction {
        Direction::Outbound => s("destination"),
        Direction::Inbound => s("origin"),
    };
    let rules = data.get("rules").and_then(Value::as_array).map(|a| {
        a.iter()
            .filter_map(|m| m.get("rule").and_then(Value::as_str).map(str::to_string))
            .collect()
    });
    let line = record
        .get("seq")
        .and_then(Value::as_u64)
        .map_or(index, |n| n as usize);
    Some(ReplayItem {
        line,
        event,
        direction,
        peer,
        event_id: s("event_id"),
        room_version: None,
        verdict: s("verdict").as_deref().and_then(parse_verdict),
        rules,
    })
}

/// The replay items of the audit log in `dir`: every `decision` record that stored its event,
/// in log order, and the number of decision records that did not (skipped).
pub fn read_audit(dir: &std::path::Path) -> Result<(Vec<ReplayItem>, usize), ReplayError> {
    let (mut items, mut skipped, mut n) = (Vec::new(), 0usize, 0usize);
    crate::audit::query::for_each(dir, &crate::audit::query::Filter::default(), |_, v| {
        if v.get("kind").and_then(Value::as_str) == Some("decision") {
            n += 1;
            match item_from_audit_record(n, &v) {
                Some(i) => items.push(i),
                None => skipped += 1,
            }
        }
        Ok(())
    })
    .map_err(|e| ReplayError::Audit(e.to_string()))?;
    Ok((items, skipped))
}

/// A decision: verdict, deciding rule, matched rules (enforced, not `tag`).
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Judged {
    pub verdict: UnitVerdict,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub rule: Option<String>,
    pub rules: Vec<String>,
}

/// One decision that would change.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Change {
    pub line: usize,
    pub event_id: Option<String>,
    pub room_id: Option<String>,
    pub direction: &'static str,
    pub old: Judged,
    pub new: Judged,
}

/// The event id of an item: given, the event's own, or its reference hash under
/// `room_version`.
fn event_id_of(item: &ReplayItem, raw: &RawValue) -> Option<String> {
    if let Some(id) = &item.event_id {
        return Some(id.clone());
    }
    if let Some(id) = item.event.get("event_id").and_then(Value::as_str) {
        return Some(id.to_string());
    }
    crate::federation::redact::reference_event_id(raw, item.room_version.as_deref()?)
}

/// Judges one item's event with `policy`, as one PDU of a transaction.
pub fn judge(policy: &dyn Policy, item: &ReplayItem) -> Result<Judged, ReplayError> {
    let raw = RawValue::from_string(item.event.to_string()).map_err(|_| ReplayError::Line {
        line: item.line,
        message: "event does not serialise".into(),
    })?;
    let pdu = PduView::parse(&raw).map_err(|e| ReplayError::Line {
        line: item.line,
        message: format!("not a PDU: {e}"),
    })?;
    let ctx = ExchangeCtx {
        direction: item.direction,
        endpoint: catalog::by_id("send_transaction").expect("the catalog has /send"),
        peer: item.peer.clone(),
        protected: String::new(),
        txn_id: None,
    };
    let units = Units {
        pdus: vec![pdu],
        pdu_pos: vec![0],
        ..Default::default()
    };
    let mut records = Vec::new();
    // In a transaction nothing refuses the exchange (reject acts as redact), so a refusal
    // here is a policy that refuses every event; it still leaves the record.
    let _ = check_units_recorded(policy, &ctx, &units, Some(&mut records));
    let Some(r) = records.into_iter().next() else {
        return Err(ReplayError::Line {
            line: item.line,
            message: "no decision recorded".into(),
        });
    };
    let mut rules: Vec<String> = r
        .hits
        .iter()
        .filter(|h| !h.shadow && h.action != "tag")
        .map(|h| h.rule.clone())
        .collect();
    rules.dedup();
    Ok(Judged {
        verdict: r.verdict,
        rule: r.rule,
        rules,
    })
}

/// Runs `items` through `candidate` and lists every decision that would change against the
/// recorded one (or, for items without a recorded verdict, the decision of `current`).
pub fn replay(
    current: Option<&dyn Policy>,
    candidate: &dyn Policy,
    items: &[ReplayItem],
    include_rule_changes: bool,
) -> Result<Vec<Change>, ReplayError> {
    let mut out = Vec::new();
    for item in items {
        let old = match (item.verdict, current) {
            (Some(verdict), _) => Judged {
                verdict,
                rule: None,
                rules: item.rules.clone().unwrap_or_default(),
            },
            (None, Some(p)) => judge(p, item)?,
            (None, None) => return Err(ReplayError::NoCurrent { line: item.line }),
        };
        let new = judge(candidate, item)?;
        let changed = old.verdict != new.verdict
            || (include_rule_changes && {
                let (mut a, mut b) = (old.rules.clone(), new.rules.clone());
                a.sort();
                b.sort();
                a != b
            });
        if !changed {
            continue;
        }
        let raw = RawValue::from_string(item.event.to_string()).ok();
        out.push(Change {
            line: item.line,
            event_id: raw.as_deref().and_then(|r| event_id_of(item, r)),
            room_id: item
                .event
                .get("room_id")
                .and_then(Value::as_str)
                .map(str::to_string),
            direction: item.direction.as_str(),
            old,
            new,
        });
    }
    Ok(out)
}

pub mod cli;

#[cfg(test)]
mod tests;
