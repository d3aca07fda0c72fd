use super::*;
use serde_json::json;

#[test]
fn corpus_lines_parse_with_defaults_and_bad_lines_are_named() {
    let text = r#"
# a comment
{"event": {"type": "m.room.message", "content": {}}, "verdict": "redact", "rules": ["a"]}
{"event": {"type": "m.room.message", "content": {}}, "direction": "inbound", "peer": "hs2", "event_id": "$e"}
"#;
    let items = parse_events(text).unwrap();
    assert_eq!(items.len(), 2);
    assert_eq!(
        (items[0].line, items[0].direction, items[0].verdict),
        (3, Direction::Outbound, Some(UnitVerdict::Redact))
    );
    assert_eq!(items[0].rules.as_deref(), Some(&["a".to_string()][..]));
    assert_eq!(
        (
            items[1].direction,
            items[1].peer.as_deref(),
            items[1].verdict
        ),
        (Direction::Inbound, Some("hs2"), None)
    );
    for (bad, what) in [
        (r#"{"direction": "outbound"}"#, "`event`"),
        (r#"{"event": {}, "verdict": "maybe"}"#, "unknown verdict"),
        (r#"{"event": {}, "direction": "sideways"}"#, "`direction`"),
        (r#"{"event": {}, "rules": [1]}"#, "`rules`"),
        ("[1, 2", "not JSON"),
    ] {
        let e = parse_events(&format!("\n{bad}\n")).unwrap_err().to_string();
        assert!(e.starts_with("line 2: ") && e.contains(what), "{bad}: {e}");
    }
}

#[test]
fn audit_decision_records_with_content_become_items() {
    let rec = json!({"kind": "decision", "seq": 4, "data": {
        "unit": "pdu", "event_id": "$x", "origin": "hs1.test", "destination": "hs2.test",
        "direction": "outbound", "endpoint": "/send", "verdict": "redact",
        "rules": [{"rule": "marking.geheim", "field": "body", "excerpt": "G****M"}],
        "content": {"type": "m.room.message", "content": {"body": "x"}}
    }});
    let item = item_from_audit_record(7, &rec, &["hs1.test"]).unwrap();
    assert_eq!(item.peer.as_deref(), Some("hs2.test"));
    assert_eq!(item.event_id.as_deref(), Some("$x"));
    assert_eq!(item.verdict, Some(UnitVerdict::Redact));
    assert_eq!(item.rules, Some(vec!["marking.geheim".to_string()]));
    assert_eq!(item.line, 7);
    // Without stored content, or another kind: nothing to replay.
    let mut no_content = rec.clone();
    no_content["data"]
        .as_object_mut()
        .unwrap()
        .remove("content");
    assert!(item_from_audit_record(1, &no_content, &["hs1.test"]).is_none());
    assert!(item_from_audit_record(1, &json!({"kind": "load", "data": {}}), &[]).is_none());
}
