use std::sync::Arc;

use bytes::Bytes;
use http::{HeaderMap, Method};
use serde_json::value::RawValue;

use super::*;
use crate::federation::catalog;
use crate::federation::pdu::{EduView, PduView};
use crate::policy::dlp::layer::DlpPolicy;
use crate::policy::dlp::RuleSet;
use crate::policy::rules::{RuleAction, RuleConfig, Rules, RulesPolicy};
use crate::policy::{
    decide_recorded, decide_response_recorded, Forward, Layers, PduVerdict, Release, Rewrite,
    StaticPolicy,
};

const DLP: &str = r#"
mode = "enforce"
[[rule]]
id = "t.geheim"
description = "marking"
severity = "high"
action = "redact"
keywords = ["GEHEIM"]
case_sensitive = true
[[rule]]
id = "t.vv"
description = "marking"
severity = "high"
action = "hold"
keywords = ["VS-VERTRAULICH"]
case_sensitive = true
[[rule]]
id = "t.streng"
description = "marking"
severity = "high"
action = "reject"
keywords = ["STRENG GEHEIM"]
case_sensitive = true
[[rule]]
id = "t.audit"
description = "audited only"
severity = "low"
action = "tag"
keywords = ["PROTOKOLL"]
case_sensitive = true
"#;

struct Unchanged;
impl<T> Rewrite<T> for Unchanged {
    fn rewrite(&self, item: T, _: &Verdicts) -> Result<T, Refusal> {
        Ok(item)
    }
}

fn layers() -> Layers {
    let set = RuleSet::from_sources(&[("t.toml", DLP)]).unwrap_or_else(|d| panic!("{d}"));
    let config = RuleConfig {
        id: "cfg.topsecret".into(),
        description: String::new(),
        keywords: vec!["TOPSECRET".into()],
        regex: None,
        fields: vec![],
        directions: vec![],
        action: RuleAction::Redact,
    };
    Layers::new()
        .with(
            "config",
            Arc::new(RulesPolicy {
                base: StaticPolicy::default(),
                rules: Rules::compile(&[config]).unwrap(),
            }),
        )
        .with("dlp", Arc::new(DlpPolicy::new(set.engine())))
}

fn ctx(endpoint: &str, direction: Direction) -> ExchangeCtx {
    ExchangeCtx {
        direction,
        endpoint: catalog::by_id(endpoint).unwrap(),
        peer: Some("hs2.test".into()),
        protected: "hs1.test".into(),
        txn_id: Some("t1".into()),
    }
}

fn pdu(id: &str, sender: &str, body: &str) -> Box<RawValue> {
    RawValue::from_string(
        serde_json::json!({
            "event_id": id, "room_id": "!r:hs1.test", "sender": sender, "type": "m.room.message",
            "origin_server_ts": 1, "content": {"msgtype": "m.text", "body": body},
        })
        .to_string(),
    )
    .unwrap()
}

fn forward() -> Forward {
    Forward {
        method: Method::PUT,
        path_and_query: "/_matrix/federation/v1/send/t1".into(),
        headers: HeaderMap::new(),
        body: Bytes::from_static(b"{}"),
    }
}

fn record(r: &[UnitDecision], kind: UnitKind, pos: usize) -> &UnitDecision {
    r.iter()
        .find(|d| d.kind == kind && d.pos == pos)
        .unwrap_or_else(|| panic!("no record for {kind:?} {pos}: {r:#?}"))
}

#[test]
fn every_unit_of_a_transaction_gets_a_record_with_its_rules_and_masked_spans() {
    let raws = [
        pdu("$clean", "@alice:hs1.test", "hello PROTOKOLL"),
        pdu("$red", "@bob:hs1.test", "the file is GEHEIM, sorry"),
        pdu("$hold", "@carol:hs1.test", "VS-VERTRAULICH"),
        pdu("$cfg", "@dave:hs1.test", "TOPSECRET"),
    ];
    let edu_raw = RawValue::from_string(
        r#"{"edu_type":"m.typing","content":{"room_id":"!r:hs1.test"}}"#.into(),
    )
    .unwrap();
    let units = Units {
        pdus: raws.iter().map(|r| PduView::parse(r).unwrap()).collect(),
        pdu_pos: vec![0, 1, 2, 3],
        edus: vec![EduView::parse(&edu_raw).unwrap()],
        ..Default::default()
    };
    let c = ctx("send_transaction", Direction::Outbound);
    let mut records = Vec::new();
    decide_recorded(
        &layers(),
        &c,
        &units,
        forward(),
        &Unchanged,
        Some(&mut records),
    )
    .unwrap();
    assert_eq!(records.len(), 5, "{records:#?}");

    let clean = record(&records, UnitKind::Pdu, 0);
    assert_eq!(
        (clean.verdict, clean.effect, clean.rule.as_deref()),
        (UnitVerdict::Allow, Effect::Crossed, None)
    );
    assert_eq!(clean.event_id.as_deref(), Some("$clean"));
    assert_eq!(clean.sender.as_deref(), Some("@alice:hs1.test"));
    // A tag match is recorded on an allowed unit.
    assert_eq!(clean.hits.len(), 1);
    assert_eq!(
        (clean.hits[0].rule.as_str(), clean.hits[0].action.as_str()),
        ("t.audit", "tag")
    );

    let red = record(&records, UnitKind::Pdu, 1);
    assert_eq!(
        (red.verdict, red.effect, red.rule.as_deref()),
        (UnitVerdict::Redact, Effect::Redacted, Some("dlp:t.geheim"))
    );
    assert_eq!(red.event_id.as_deref(), Some("$red"));
    assert_eq!(red.room_id.as_deref(), Some("!r:hs1.test"));
    assert_eq!(red.unit_type.as_deref(), Some("m.room.message"));
    let hit = &red.hits[0];
    assert_eq!((hit.layer, hit.rule.as_str()), ("dlp", "t.geheim"));
    assert_eq!(hit.field.as_deref(), Some("body"));
    // The span points at the match in the field's text.
    let (s, e) = hit.span.unwrap();
    assert_eq!(&"the file is GEHEIM, sorry"[s..e], "GEHEIM");
    let excerpt = hit.excerpt.as_deref().unwrap();
    assert!(
        !excerpt.contains("GEHEIM") && !excerpt.is_empty(),
        "masked: {excerpt}"
    );

    let hold = record(&records, UnitKind::Pdu, 2);
    assert_eq!(
        (hold.verdict, hold.rule.as_deref()),
        (UnitVerdict::Hold, Some("dlp:t.vv"))
    );

    // A layer without spans is named with its rule.
    let cfg = record(&records, UnitKind::Pdu, 3);
    assert_eq!(cfg.verdict, UnitVerdict::Redact);
    assert_eq!(
        cfg.hits,
        vec![RuleHit::rule_only("config", "cfg.topsecret", "redact")]
    );

    let edu = record(&records, UnitKind::Edu, 0);
    assert_eq!(
        (edu.verdict, edu.effect),
        (UnitVerdict::Allow, Effect::Crossed)
    );
    assert_eq!(edu.unit_type.as_deref(), Some("m.typing"));

    // The records serialise (the audit log's input) without the matched text.
    let json = serde_json::to_string(&records).unwrap();
    assert!(
        !json.contains("GEHEIM") && !json.contains("VS-VERTRAULICH"),
        "{json}"
    );
}

#[test]
fn a_reject_outside_a_transaction_is_recorded_with_the_refusal() {
    // A `/event` answer carrying a rejected event: the exchange is refused, the record says so.
    let raw = pdu("$x", "@eve:hs1.test", "STRENG GEHEIM");
    let body = format!(
        r#"{{"origin":"hs1.test","origin_server_ts":1,"pdus":[{}]}}"#,
        raw.get()
    );
    let units = Units {
        pdus: vec![PduView::parse(&raw).unwrap()],
        pdu_pos: vec![0],
        ..Default::default()
    };
    let release = Release {
        status: http::StatusCode::OK,
        headers: HeaderMap::new(),
        body: Bytes::from(body),
    };
    // An inbound request for an event: the answer is outbound data.
    let c = ctx("get_event", Direction::Inbound);
    let mut records = Vec::new();
    let r = decide_response_recorded(
        &layers(),
        &c,
        &units,
        release,
        &Unchanged,
        Some(&mut records),
    );
    assert!(r.is_err(), "a reject refuses a single-event answer");
    assert_eq!(records.len(), 1);
    let d = &records[0];
    assert_eq!(
        (
            d.verdict,
            d.effect,
            d.rule.as_deref(),
            d.event_id.as_deref()
        ),
        (
            UnitVerdict::Reject,
            Effect::Refused,
            Some("dlp:t.streng"),
            Some("$x")
        )
    );
}

#[test]
fn decisions_are_counted_by_direction_verdict_and_unit() {
    let handle = crate::telemetry::metrics_handle();
    // Prometheus text: `name{labels} value`; labels are rendered in sorted order.
    let count = || -> f64 {
        handle
            .render()
            .lines()
            .filter(|l| l.starts_with(crate::telemetry::DECISIONS_TOTAL))
            .filter(|l| {
                l.contains(r#"direction="inbound""#)
                    && l.contains(r#"verdict="hold""#)
                    && l.contains(r#"unit="pdu""#)
            })
            .filter_map(|l| l.rsplit(' ').next()?.parse::<f64>().ok())
            .sum()
    };
    let before = count();
    let raws = [
        pdu("$a", "@a:hs2.test", "VS-VERTRAULICH"),
        pdu("$b", "@b:hs2.test", "VS-VERTRAULICH too"),
    ];
    let units = Units {
        pdus: raws.iter().map(|r| PduView::parse(r).unwrap()).collect(),
        pdu_pos: vec![0, 1],
        ..Default::default()
    };
    let c = ctx("send_transaction", Direction::Inbound);
    // Without a record sink: still counted.
    crate::policy::decide(&layers(), &c, &units, forward(), &Unchanged).unwrap();
    assert!(count() - before >= 2.0, "two held PDUs counted");
}

#[test]
fn records_carry_the_integrity_finding_and_the_reviewers_decision() {
    let raws = [
        pdu("$sig", "@a:hs2.test", "harmless"),
        pdu("$rel", "@b:hs2.test", "VS-VERTRAULICH"),
        pdu("$rej", "@c:hs2.test", "harmless too"),
    ];
    let units = Units {
        pdus: raws.iter().map(|r| PduView::parse(r).unwrap()).collect(),
        pdu_pos: vec![0, 1, 2],
        pdu_findings: vec![
            Some(PduVerdict::Redact {
                rule: "integrity:signature".into(),
            }),
            None,
            None,
        ],
        reviewed: vec![
            (1, crate::review::Decision::Release),
            (2, crate::review::Decision::Reject),
        ],
        ..Default::default()
    };
    let c = ctx("send_transaction", Direction::Inbound);
    let mut records = Vec::new();
    decide_recorded(
        &layers(),
        &c,
        &units,
        forward(),
        &Unchanged,
        Some(&mut records),
    )
    .unwrap();
    let sig = record(&records, UnitKind::Pdu, 0);
    assert_eq!(
        (sig.verdict, sig.rule.as_deref(), sig.effect),
        (
            UnitVerdict::Redact,
            Some("integrity:signature"),
            Effect::Redacted
        )
    );
    assert_eq!(
        sig.hits,
        vec![RuleHit::rule_only(
            "integrity",
            "integrity:signature",
            "redact"
        )]
    );
    let rel = record(&records, UnitKind::Pdu, 1);
    assert_eq!(
        (rel.verdict, rel.effect),
        (UnitVerdict::Allow, Effect::Crossed)
    );
    assert_eq!(rel.hits[0].rule, "t.vv", "the finding stays on the record");
    let rej = record(&records, UnitKind::Pdu, 2);
    assert_eq!(
        (rej.verdict, rej.rule.as_deref(), rej.effect),
        (
            UnitVerdict::Redact,
            Some("review_rejected"),
            Effect::Redacted
        )
    );
}
