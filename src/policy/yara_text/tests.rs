use serde_json::json;
use serde_json::value::RawValue;

use super::*;
use crate::media::yara::YaraRules;

const RULES: &str = r#"
rule geheim : text
{
    meta:
        fields = "body,formatted_body"
        directions = "outbound"
        event_types = "m.room.message"
        action = "redact"
    strings:
        $a = "Projekt Nordlicht" nocase
    condition:
        $a
}

rule hold_me : text
{
    meta:
        event_types = "m.room.*"
        action = "hold"
    strings:
        $a = "BITTE-PRUEFEN"
    condition:
        $a
}

rule only_files
{
    strings:
        $a = "nur-dateien"
    condition:
        $a
}
"#;

fn policy() -> YaraTextPolicy {
    policy_of(RULES)
}

fn policy_of(source: &str) -> YaraTextPolicy {
    let rules = YaraRules::from_sources(&[("t.yar", source)]).unwrap_or_else(|d| {
        panic!(
            "{}",
            d.iter()
                .map(|d| d.to_string())
                .collect::<Vec<_>>()
                .join("\n")
        )
    });
    YaraTextPolicy::new(Arc::new(rules))
}

fn ctx(direction: Direction) -> ExchangeCtx {
    ExchangeCtx {
        direction,
        endpoint: crate::federation::catalog::by_id("send_transaction").unwrap(),
        peer: Some("hs2.test".into()),
        protected: "hs1.test".into(),
        txn_id: None,
    }
}

fn pdu_raw(event_type: &str, content: Value) -> Box<RawValue> {
    serde_json::from_value(json!({
        "type": event_type, "room_id": "!r:hs1.test", "sender": "@a:hs1.test",
        "origin_server_ts": 1, "content": content
    }))
    .unwrap()
}

fn verdict(p: &YaraTextPolicy, dir: Direction, event_type: &str, content: Value) -> PduVerdict {
    let raw = pdu_raw(event_type, content);
    p.pdu(&ctx(dir), &PduView::parse(&raw).unwrap())
}

#[test]
fn a_text_rule_redacts_a_matching_message_in_scope_only() {
    let p = policy();
    assert_eq!(p.rule_count(), 2);
    let msg = json!({"msgtype": "m.text", "body": "Zum projekt NORDLICHT: Termin am Montag"});
    assert_eq!(
        verdict(&p, Direction::Outbound, "m.room.message", msg.clone()),
        PduVerdict::Redact {
            rule: "yara:t.geheim".into()
        }
    );
    // Out of scope: the other direction, another event type, another field.
    assert_eq!(
        verdict(&p, Direction::Inbound, "m.room.message", msg.clone()),
        PduVerdict::Allow
    );
    assert_eq!(
        verdict(
            &p,
            Direction::Outbound,
            "m.room.topic",
            json!({"topic": "Projekt Nordlicht"})
        ),
        PduVerdict::Allow
    );
    assert_eq!(
        verdict(
            &p,
            Direction::Outbound,
            "m.room.message",
            json!({"msgtype": "m.text", "body": "hallo", "x.custom": "Projekt Nordlicht"})
        ),
        PduVerdict::Allow
    );
    // Rules without the `text` tag never judge text.
    assert_eq!(
        verdict(
            &p,
            Direction::Outbound,
            "m.room.message",
            json!({"msgtype": "m.text", "body": "nur-dateien"})
        ),
        PduVerdict::Allow
    );
    // Harmless text.
    assert_eq!(
        verdict(
            &p,
            Direction::Outbound,
            "m.room.message",
            json!({"msgtype": "m.text", "body": "Projekt Südlicht"})
        ),
        PduVerdict::Allow
    );
}

#[test]
fn text_is_read_through_the_text_pipeline() {
    let p = policy();
    // Zero-width space inside the phrase, and HTML markup in formatted_body.
    for content in [
        json!({"msgtype": "m.text", "body": "Projekt\u{200b} Nordlicht"}),
        json!({"msgtype": "m.text", "body": "x", "format": "org.matrix.custom.html",
               "formatted_body": "<b>Projekt</b> Nord&shy;licht"}),
    ] {
        assert_eq!(
            verdict(&p, Direction::Outbound, "m.room.message", content.clone()),
            PduVerdict::Redact {
                rule: "yara:t.geheim".into()
            },
            "{content}"
        );
    }
}

#[test]
fn the_most_severe_action_wins_and_findings_name_the_rules() {
    let p = policy();
    let raw = pdu_raw(
        "m.room.message",
        json!({"msgtype": "m.text", "body": "Projekt Nordlicht BITTE-PRUEFEN"}),
    );
    let view = PduView::parse(&raw).unwrap();
    let c = ctx(Direction::Outbound);
    let mut found = Findings::default();
    let v = p.explain_pdu(&c, &view, &mut found);
    assert_eq!(
        v,
        PduVerdict::Hold {
            rule: "yara:t.hold_me".into()
        }
    );
    let mut rules: Vec<(&str, &str, Option<&str>)> = found
        .hits
        .iter()
        .map(|h| (h.rule.as_str(), h.action.as_str(), h.field.as_deref()))
        .collect();
    rules.sort();
    assert_eq!(
        rules,
        vec![
            ("yara:t.geheim", "redact", Some("body")),
            ("yara:t.hold_me", "hold", Some("body"))
        ]
    );
    let m = p.matches(&c, &view);
    assert_eq!(m.len(), 2);
    // The redacted form (no content) is clean.
    let redacted = pdu_raw("m.room.message", json!({}));
    assert_eq!(
        p.redacted_pdu(&c, &PduView::parse(&redacted).unwrap()),
        PduVerdict::Allow
    );
}

#[test]
fn a_failing_matcher_fails_closed() {
    struct Broken(Vec<TextRule>);
    impl TextMatcher for Broken {
        fn text_rules(&self) -> &[TextRule] {
            &self.0
        }
        fn match_texts(&self, _: &[&[u8]]) -> Result<Vec<Vec<usize>>, TextScanError> {
            Err(TextScanError::Timeout)
        }
    }
    let p = YaraTextPolicy::new(Arc::new(Broken(vec![TextRule {
        name: "x.y".into(),
        fields: vec![],
        directions: vec![],
        event_types: vec![],
        action: Action::Tag,
    }])));
    assert_eq!(
        verdict(
            &p,
            Direction::Inbound,
            "m.room.message",
            json!({"body": "anything"})
        ),
        PduVerdict::Redact {
            rule: "yara:scan_failed".into()
        }
    );
}

#[test]
fn globs() {
    assert!(glob(b"m.room.*", b"m.room.message"));
    assert!(glob(b"*", b""));
    assert!(glob(b"m.*.message", b"m.room.message"));
    assert!(!glob(b"m.room.*", b"m.roomx"));
    assert!(!glob(b"m.room.message", b"m.room.messages"));
}

const EVERYWHERE: &str = r#"
rule marker : text
{
    strings:
        $a = "GEHEIM"
    condition:
        $a
}
"#;

/// A `text` rule without scope judges everything the DLP layer judges: EDUs, user-data fields,
/// request text (the peer's server name included) and response text.
#[test]
fn text_rules_judge_edus_user_fields_requests_and_responses() {
    use crate::federation::catalog;
    use crate::federation::request_text::TextKind;
    use crate::federation::userdata::fields_in;
    let p = policy_of(EVERYWHERE);
    let c = ctx(Direction::Outbound);
    let rule = "yara:t.marker".to_string();

    let edu = |status: &str| -> Box<RawValue> {
        serde_json::from_value(json!({"edu_type": "m.presence", "content": {"push": [
            {"user_id": "@a:hs1.test", "presence": "online", "status_msg": status}]}}))
        .unwrap()
    };
    let marked = edu("Lage GEHEIM");
    assert_eq!(
        p.edu(&c, &EduView::parse(&marked).unwrap()),
        EduVerdict::Drop { rule: rule.clone() }
    );
    let clean = edu("im Büro");
    assert_eq!(
        p.edu(&c, &EduView::parse(&clean).unwrap()),
        EduVerdict::Allow
    );

    let profile = catalog::by_id("query_profile").unwrap();
    let body = br#"{"displayname":"Akte G&#69;HEIM","avatar_url":"mxc://hs1.test/a"}"#;
    let fields = fields_in(profile, None, body).unwrap();
    let verdicts: Vec<FieldVerdict> = fields.iter().map(|f| p.user_field(&c, f)).collect();
    assert!(
        verdicts.contains(&FieldVerdict::Remove { rule: rule.clone() }),
        "{verdicts:?}"
    );
    assert!(verdicts.contains(&FieldVerdict::Allow), "the avatar stays");

    let text = |kind, s: &'static str| RequestText {
        kind,
        name: "other",
        text: Cow::Borrowed(s),
    };
    assert!(matches!(
        p.request_text(&c, &text(TextKind::QueryValue, "#GEHEIM:hs2.test")),
        Decision::Refuse(_)
    ));
    assert!(matches!(
        p.request_text(&c, &text(TextKind::Server, "GEHEIM.hs2.test")),
        Decision::Refuse(_)
    ));
    assert!(matches!(
        p.request_text(&c, &text(TextKind::QueryValue, "#lage:hs2.test")),
        Decision::Allow
    ));
    let response = [
        text(TextKind::ResponseKey, "room_type"),
        text(TextKind::ResponseValue, "org.example.GEHEIM"),
    ];
    match p.response_text(&c, &response) {
        Decision::Refuse(r) => assert_eq!(r.reason, RefusalReason::ResponseText),
        other => panic!("{other:?}"),
    }
    assert!(matches!(
        p.response_text(&c, &response[..1]),
        Decision::Allow
    ));
}
