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
    let item = item_from_audit_record(7, &rec).unwrap();
    assert_eq!(item.peer.as_deref(), Some("hs2.test"));
    assert_eq!(item.event_id.as_deref(), Some("$x"));
    assert_eq!(item.verdict, Some(UnitVerdict::Redact));
    assert_eq!(item.rules, Some(vec!["marking.geheim".to_string()]));
    assert_eq!(item.line, 4, "named by its seq");
    assert_eq!(item.event["content"]["body"], "x");
    // Inbound: the peer is the origin.
    let mut inbound = rec.clone();
    inbound["data"]["direction"] = json!("inbound");
    assert_eq!(
        item_from_audit_record(1, &inbound).unwrap().peer.as_deref(),
        Some("hs1.test")
    );
    // Only the content object: with `data.type` it is an event of that type.
    let mut bare = rec.clone();
    bare["data"]["content"] = json!({"body": "y"});
    assert!(
        item_from_audit_record(1, &bare).is_none(),
        "no type: nothing to replay"
    );
    bare["data"]["type"] = json!("m.room.message");
    bare["data"]["room_id"] = json!("!r:hs1.test");
    let e = item_from_audit_record(1, &bare).unwrap().event;
    assert_eq!(
        (
            e["type"].clone(),
            e["content"]["body"].clone(),
            e["room_id"].clone()
        ),
        (json!("m.room.message"), json!("y"), json!("!r:hs1.test"))
    );
    // Without stored content, or another kind: nothing to replay.
    let mut no_content = rec.clone();
    no_content["data"]
        .as_object_mut()
        .unwrap()
        .remove("content");
    assert!(item_from_audit_record(1, &no_content).is_none());
    assert!(item_from_audit_record(1, &json!({"kind": "load", "data": {}})).is_none());
}

#[test]
fn rule_changes_under_the_same_verdict_are_listed_only_when_asked() {
    use crate::policy::dlp::{layer::DlpPolicy, RuleSet};
    use crate::policy::Layers;
    let set = RuleSet::from_sources(&[(
        "a.toml",
        "mode = \"enforce\"\n[[rule]]\nid = \"t.new\"\ndescription = \"d\"\nseverity = \"high\"\naction = \"redact\"\nkeywords = [\"GEHEIM\"]\n",
    )])
    .unwrap_or_else(|d| panic!("{d}"));
    let cand = Layers::new().with("dlp", std::sync::Arc::new(DlpPolicy::new(set.engine())));
    let text = r#"{"event": {"type": "m.room.message", "room_id": "!r:a", "sender": "@a:a", "origin_server_ts": 1, "content": {"body": "GEHEIM"}}, "verdict": "redact", "rules": ["t.old"]}"#;
    let items = parse_events(text).unwrap();
    assert!(replay(None, &cand, &items, false).unwrap().is_empty());
    let c = replay(None, &cand, &items, true).unwrap();
    assert_eq!(c.len(), 1);
    assert_eq!(
        (c[0].old.rules.clone(), c[0].new.rules.clone()),
        (vec!["t.old".to_string()], vec!["t.new".to_string()])
    );
    assert_eq!(c[0].new.rule.as_deref(), Some("dlp:t.new"));
}
