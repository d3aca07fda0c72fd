use super::*;

fn parse(v: serde_json::Value) -> Result<FederationList, PayloadError> {
    FederationList::parse_payload(&serde_json::to_vec(&v).expect("ser"))
}

#[test]
fn domain_of_normalises() {
    for (input, want) in [
        ("Example.ORG", "example.org"),
        ("example.org:8448", "example.org"),
        ("example.org.", "example.org"),
        ("Example.org.:443", "example.org"),
        ("[::1]:8448", "[::1]"),
        ("[::1]", "[::1]"),
        ("[2001:DB8::1]:8448", "[2001:db8::1]"),
        ("127.0.0.1:8448", "127.0.0.1"),
        ("  a.example  ", "a.example"),
        ("", ""),
    ] {
        assert_eq!(domain_of(input), want, "{input}");
    }
}

#[test]
fn lenient_entries() {
    let list = parse(serde_json::json!({
        "version": "12",
        "extra": {"ignored": true},
        "domainList": [
            {"domain": "A.example", "telematikID": "t1", "isInsurance": true, "ik": "123", "x": 1},
            {"domain": "b.example", "iks": ["1", "2", 3], "timAnbieter": null},
            {"domain": "c.example", "isInsurance": "false", "timAnbieter": "ORG-1"},
            {"telematikID": "no domain"},
            {"domain": ""},
            {"domain": 5},
            {"domain": "d.example", "isInsurance": 1},
            "not an object",
            {"domain": "a.example:443", "isInsurance": false}
        ]
    }))
    .expect("parse");
    assert_eq!(list.version, 12);
    assert_eq!(list.len(), 3);
    assert_eq!(list.entry_count(), 4);
    assert_eq!(list.skipped(), 5);
    let a = list.lookup("a.EXAMPLE:8448").expect("a");
    assert_eq!(a.domain, "A.example");
    assert!(a.is_insurance, "the first entry of a domain wins");
    assert_eq!(a.ik, vec!["123"]);
    assert_eq!(a.telematik_id.as_deref(), Some("t1"));
    assert_eq!(a.telematik_id.as_deref(), Some("t1"));
    let b = list.lookup("b.example").expect("b");
    assert!(!b.is_insurance);
    assert_eq!(b.ik, vec!["1", "2"]);
    assert_eq!(b.tim_anbieter, None);
    assert_eq!(b.telematik_id, None);
    let c = list.lookup("c.example").expect("c");
    assert_eq!(c.tim_anbieter.as_deref(), Some("ORG-1"));
    assert!(
        list.lookup("d.example").is_none(),
        "unreadable isInsurance: not listed"
    );
    let mut domains: Vec<&str> = list.domains().collect();
    domains.sort_unstable();
    assert_eq!(domains, ["a.example", "b.example", "c.example"]);
}

#[test]
fn payload_errors() {
    for (v, why) in [
        (serde_json::json!([1]), "not a JSON object"),
        (serde_json::json!({"version": 1}), "domainList is missing"),
        (
            serde_json::json!({"version": 1, "domainList": {}}),
            "not an array",
        ),
        (serde_json::json!({"domainList": []}), "version is missing"),
        (
            serde_json::json!({"version": "x", "domainList": []}),
            "version is not a number",
        ),
        (
            serde_json::json!({"version": -1, "domainList": []}),
            "version",
        ),
        (
            serde_json::json!({"version": 1.5, "domainList": []}),
            "version",
        ),
    ] {
        let err = parse(v.clone()).unwrap_err();
        assert!(err.to_string().contains(why), "{v}: {err}");
    }
    assert!(FederationList::parse_payload(b"{not json").is_err());
    let empty = parse(serde_json::json!({"version": 0, "domainList": []})).expect("empty");
    assert!(empty.is_empty());
}

#[test]
fn duplicate_domains_merge_strictly() {
    let list = parse(serde_json::json!({
        "version": 1,
        "domainList": [
            {"domain": "a.example", "isInsurance": false, "ik": "1"},
            {"domain": "A.EXAMPLE", "isInsurance": true, "iks": ["1", "2"]},
            {"domain": "b.example"}
        ]
    }))
    .expect("parse");
    assert_eq!(list.len(), 2);
    assert_eq!(list.entry_count(), 3);
    let a = list.lookup("a.example").expect("a");
    assert_eq!(a.domain, "a.example");
    assert!(
        a.is_insurance,
        "any entry saying insurance makes the domain insurance"
    );
    assert_eq!(a.ik, vec!["1", "2"]);
}
