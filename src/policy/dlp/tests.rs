//! Engine behaviour on small in-memory rule sets.
use serde_json::json;

use super::*;

const BASE: &str = r#"
[[rule]]
id = "iban"
description = "IBAN"
severity = "high"
action = "redact"
regex = '(?-u:\b)[A-Z]{2}[0-9]{2}(?: ?[A-Z0-9]{4}){3,7}(?: ?[A-Z0-9]{1,3})?(?-u:\b)'
validator = "iban"
[rule.except]
values = ["DE02 1203 0000 0000 2020 51"]

[[rule]]
id = "geheim"
description = "marking"
severity = "critical"
action = "hold"
keywords = ["GEHEIM", "STRENG GEHEIM"]
case_sensitive = true

[[rule]]
id = "weak"
description = "weak marking"
severity = "low"
action = "tag"
keywords = ["vertraulich", "Verschlusssache"]
confidence = 0.3
[[rule.context]]
words = ["eingestuft", "Einstufung"]
weight = 0.4
before = 30
after = 30

[[rule]]
id = "email"
description = "e-mail"
severity = "low"
action = "tag"
regex = '(?-u:\b)[A-Za-z0-9._%+-]+@[A-Za-z0-9-]+(?:\.[A-Za-z0-9-]+)*\.[A-Za-z]{2,}(?-u:\b)'
min_matches = 2
[rule.scope]
directions = ["outbound"]
fields = ["body"]

[[exception]]
rules = ["geheim"]
senders = ["@officer:*"]
"#;

fn set() -> RuleSet {
    RuleSet::from_sources(&[("base.toml", BASE)]).unwrap_or_else(|d| panic!("{d}"))
}

fn ctx(event_type: &str) -> ScanCtx<'_> {
    ScanCtx {
        direction: Direction::Outbound,
        peer: Some("land.example.de"),
        room_id: Some("!r:x"),
        sender: Some("@a:x"),
        event_type,
    }
}

#[test]
fn iban_valid_redacted_broken_not() {
    let e = set().engine();
    let text = "Bitte überweisen an DE89 3704 0044 0532 0130 00, danke";
    let o = e.scan_event(&ctx("m.room.message"), &json!({"body": text}));
    assert_eq!(o.action, Action::Redact);
    assert_eq!(o.matches.len(), 1);
    let m = &o.matches[0];
    assert_eq!(&*m.rule, "iban");
    assert_eq!(&text[m.start..m.end], "DE89 3704 0044 0532 0130 00");
    assert!(!m.excerpt.contains("3704"), "masked: {}", m.excerpt);
    let o = e.scan_event(
        &ctx("m.room.message"),
        &json!({"body": "an DE88 3704 0044 0532 0130 00"}),
    );
    assert_eq!(o.action, Action::Allow);
    assert!(o.matches.is_empty());
    // Allow-listed value.
    let o = e.scan_event(
        &ctx("m.room.message"),
        &json!({"body": "Spenden: DE02120300000000202051"}),
    );
    assert_eq!(o.action, Action::Allow, "{o:?}");
}

#[test]
fn edit_html_and_fields_are_scanned() {
    let e = set().engine();
    let c =
        json!({"body": "* Korrektur", "m.new_content": {"body": "Konto DE89370400440532013000"}});
    let o = e.scan_event(&ctx("m.room.message"), &c);
    assert_eq!(o.action, Action::Redact);
    assert_eq!(o.matches[0].field, Field::NewContentBody);
    let c = json!({"body": "x", "formatted_body": "<p>DE89<b>3704</b>0044 0532 0130 00</p>"});
    let o = e.scan_event(&ctx("m.room.message"), &c);
    assert_eq!(o.action, Action::Redact);
    assert_eq!(o.matches[0].field, Field::FormattedBody);
    let o = e.scan_event(&ctx("m.room.topic"), &json!({"topic": "Lage GEHEIM"}));
    assert_eq!(o.action, Action::Hold);
    assert_eq!(o.matches[0].field, Field::RoomTopic);
    let o = e.scan_fields(
        &ctx("m.presence"),
        &fields::edu_fields(
            "m.presence",
            &json!({"push": [{"status_msg": "STRENG GEHEIM"}]}),
        ),
    );
    assert_eq!(o.action, Action::Hold);
    assert_eq!(
        o.matches.len(),
        1,
        "GEHEIM inside STRENG GEHEIM counts once for the rule: {o:?}"
    );
    assert_eq!((o.matches[0].start, o.matches[0].end), (0, 13));
}

#[test]
fn most_severe_wins_and_exceptions_apply_first() {
    let e = set().engine();
    let body = json!({"body": "GEHEIM: DE89370400440532013000"});
    let o = e.scan_event(&ctx("m.room.message"), &body);
    assert_eq!(o.action, Action::Hold);
    assert_eq!(o.matches.len(), 2);
    let mut c = ctx("m.room.message");
    c.sender = Some("@officer:bund.example.de");
    let o = e.scan_event(&c, &body);
    assert_eq!(
        o.action,
        Action::Redact,
        "the marking rule is excepted for the officer"
    );
    assert!(o.matches.iter().all(|m| &*m.rule == "iban"));
}

#[test]
fn keywords_case_whole_word_and_folding() {
    let e = set().engine();
    let c = ctx("m.room.message");
    for (text, want) in [
        ("das ist geheim", Action::Allow),
        ("GEHEIMNIS", Action::Allow),
        ("Einstufung: GEHEIM", Action::Hold),
        ("das bleibt vertraulich", Action::Allow),
        ("als VERTRAULICH eingestuft", Action::Tag),
        ("Verschlußsache, eingestuft", Action::Tag),
        ("Verschlusssachen eingestuft", Action::Allow),
    ] {
        let o = e.scan_fields(&c, &[(Field::Body, text)]);
        assert_eq!(o.action, want, "{text}: {o:?}");
    }
    let text = "eingestuft als Verschlußsache";
    let o = e.scan_fields(&c, &[(Field::Body, text)]);
    let m = &o.matches[0];
    assert_eq!(&text[m.start..m.end], "Verschlußsache");
}

#[test]
fn scope_min_matches_and_shadow() {
    let e = set().engine();
    let two = "a@example.org und b@example.org";
    assert_eq!(
        e.scan_fields(
            &ctx("m.room.message"),
            &[(Field::Body, "nur a@example.org")]
        )
        .action,
        Action::Allow
    );
    assert_eq!(
        e.scan_fields(&ctx("m.room.message"), &[(Field::Body, two)])
            .action,
        Action::Tag
    );
    assert_eq!(
        e.scan_fields(&ctx("m.room.message"), &[(Field::FormattedBody, two)])
            .action,
        Action::Allow,
        "field scope"
    );
    let mut c = ctx("m.room.message");
    c.direction = Direction::Inbound;
    assert_eq!(
        e.scan_fields(&c, &[(Field::Body, two)]).action,
        Action::Allow,
        "direction scope"
    );

    let shadow = format!(
        "mode = \"shadow\"\n{}",
        BASE.replace("id = \"iban\"", "id = \"iban2\"")
            .split("[[rule]]\nid = \"geheim\"")
            .next()
            .unwrap()
    );
    let set = RuleSet::from_sources(&[("a.toml", BASE), ("b.toml", &shadow)])
        .unwrap_or_else(|d| panic!("{d}"));
    assert_eq!(set.mode(), Mode::Enforce);
    let o = set.engine().scan_fields(
        &ctx("m.room.message"),
        &[(Field::Body, "DE89370400440532013000")],
    );
    assert_eq!(
        (o.action, o.shadow_action),
        (Action::Redact, Action::Redact)
    );
    let only = RuleSet::from_sources(&[("b.toml", &shadow)]).unwrap();
    assert_eq!(only.mode(), Mode::Shadow);
    let o = only.engine().scan_fields(
        &ctx("m.room.message"),
        &[(Field::Body, "DE89370400440532013000")],
    );
    assert_eq!((o.action, o.shadow_action), (Action::Allow, Action::Redact));
    assert_eq!(o.matches[0].mode, Mode::Shadow);
}

#[test]
fn directory_checks_duplicate_ids_and_unknown_exception_rules() {
    let extra = "[[rule]]\nid = \"iban\"\ndescription = \"d\"\nseverity = \"low\"\naction = \"tag\"\nkeywords = [\"x\"]\n\n[[exception]]\nrules = [\"nope\"]\n";
    let err = RuleSet::from_sources(&[("a.toml", BASE), ("b.toml", extra)]).unwrap_err();
    let codes: Vec<_> = err
        .0
        .iter()
        .map(|d| (d.code, d.file.as_str(), d.line))
        .collect();
    assert!(codes.contains(&("DLP006", "b.toml", 2)), "{codes:?}");
    assert!(codes.contains(&("DLP013", "b.toml", 9)), "{codes:?}");
    assert!(
        err.to_string().contains("b.toml:2:6: error[DLP006]"),
        "{err}"
    );
}

#[test]
fn embedded_tests_run_against_the_rule() {
    let src = format!(
        "{BASE}\n[[rule]]\nid = \"t\"\ndescription = \"d\"\nseverity = \"low\"\naction = \"tag\"\nkeywords = [\"foo\"]\n\
         [[rule.test]]\ntext = \"a foo b\"\nexpect = \"tag\"\n[[rule.test]]\ntext = \"food\"\nexpect = \"allow\"\n\
         [[rule.test]]\ntext = \"nothing\"\nexpect = \"tag\"\n\
         [[rule.test]]\nevent = '{{\"type\": \"m.room.name\", \"content\": {{\"name\": \"foo\"}}}}'\nexpect = \"tag\"\n"
    );
    let set = RuleSet::from_sources(&[("t.toml", &src)]).unwrap_or_else(|d| panic!("{d}"));
    let r = set.run_tests();
    assert_eq!(r.len(), 4);
    let passed: Vec<bool> = r.iter().map(|t| t.passed()).collect();
    assert_eq!(passed, vec![true, true, false, true]);
    assert_eq!(r[2].got, Action::Allow);
}

#[test]
fn engine_is_send_sync() {
    fn check<T: Send + Sync>() {}
    check::<Engine>();
    check::<RuleSet>();
}

#[test]
fn suppressed_by_drops_overlapping_lower_rule() {
    let src = format!(
        "{BASE}\n[[rule]]\nid = \"digits\"\ndescription = \"d\"\nseverity = \"low\"\naction = \"tag\"\nregex = '0[0-9]{{3}} [0-9]{{4}}'\nsuppressed_by = [\"iban\"]\n"
    );
    let e = RuleSet::from_sources(&[("s.toml", &src)])
        .unwrap_or_else(|d| panic!("{d}"))
        .engine();
    let c = ctx("m.room.message");
    let o = e.scan_fields(&c, &[(Field::Body, "DE89 3704 0044 0532 0130 00")]);
    assert_eq!(
        o.matches.iter().map(|m| &*m.rule).collect::<Vec<_>>(),
        vec!["iban"]
    );
    // An IBAN-shaped token with broken check digits still suppresses (it is no phone number).
    let o = e.scan_fields(&c, &[(Field::Body, "DE88 3704 0044 0532 0130 00")]);
    assert_eq!(o.action, Action::Allow, "{o:?}");
    // Without an IBAN-shaped token the digits rule stands.
    let o = e.scan_fields(&c, &[(Field::Body, "Ruf an: 0532 0130")]);
    assert_eq!(o.action, Action::Tag);
    assert!(o.matches.iter().all(|m| &*m.rule == "digits"));
    let bad = format!("{BASE}\n[[rule]]\nid = \"d2\"\ndescription = \"d\"\nseverity = \"low\"\naction = \"tag\"\nkeywords = [\"x\"]\nsuppressed_by = [\"nope\"]\n");
    let err = RuleSet::from_sources(&[("s.toml", &bad)]).unwrap_err();
    assert_eq!(err.0[0].code, "DLP013");
}

/// One scanner: every embedded test of the shipped rule set gets the same verdict for its
/// rule from the CLI path (`RuleSet::run_tests`, what `policy test` runs) and from the guard's
/// layer on traffic (`DlpPolicy::pdu_outcome` on a PDU carrying the same text, in the test's
/// direction, from the test's sender and room, to the test's peer).
#[test]
fn guard_and_policy_cli_agree_on_every_shipped_test() {
    use crate::federation::pdu::PduView;
    use crate::policy::dlp::layer::DlpPolicy;
    use crate::policy::ExchangeCtx;

    let set = RuleSet::load_dir(concat!(env!("CARGO_MANIFEST_DIR"), "/policies"))
        .unwrap_or_else(|d| panic!("{d}"));
    let policy = DlpPolicy::new(set.engine());
    let cli = set.run_tests();
    let mut compared = 0;
    for (r, res) in set
        .rules()
        .flat_map(|r| r.tests.iter().map(move |t| (r, t)))
        .zip(&cli)
    {
        let (rule, t) = r;
        assert_eq!(res.rule, rule.id);
        // The carrier of the test's text on the wire.
        let (ty, state_key, content) = match &t.input {
            TestInput::Event(ev) => (
                ev["type"].as_str().unwrap_or("").to_owned(),
                ev.get("state_key")
                    .and_then(|v| v.as_str())
                    .map(str::to_owned),
                ev["content"].clone(),
            ),
            TestInput::Text { text, field } => match field.as_str() {
                "body" => (
                    "m.room.message".into(),
                    None,
                    json!({"msgtype": "m.text", "body": text}),
                ),
                "formatted_body" => (
                    "m.room.message".into(),
                    None,
                    json!({"msgtype": "m.text", "body": "x", "format": "org.matrix.custom.html", "formatted_body": text}),
                ),
                "filename" => (
                    "m.room.message".into(),
                    None,
                    json!({"msgtype": "m.file", "body": "Datei", "filename": text}),
                ),
                "room.topic" => (
                    "m.room.topic".into(),
                    Some(String::new()),
                    json!({"topic": text}),
                ),
                "room.name" => (
                    "m.room.name".into(),
                    Some(String::new()),
                    json!({"name": text}),
                ),
                "member.displayname" => (
                    "m.room.member".into(),
                    Some("@a:hs1.test".into()),
                    json!({"membership": "join", "displayname": text}),
                ),
                // Fields that do not travel in a room event (EDUs, user data).
                _ => continue,
            },
        };
        let mut pdu = json!({
            "type": ty,
            "room_id": t.room.as_deref().unwrap_or("!r:hs1.test"),
            "sender": t.sender.as_deref().unwrap_or("@a:hs1.test"),
            "origin_server_ts": 1,
            "content": content,
        });
        if let Some(k) = state_key {
            pdu["state_key"] = json!(k);
        }
        let raw = serde_json::value::RawValue::from_string(pdu.to_string()).unwrap();
        let view = PduView::parse(&raw).unwrap();
        let ctx = ExchangeCtx {
            direction: t.direction,
            endpoint: crate::federation::catalog::by_id("send_transaction").unwrap(),
            peer: Some(t.peer.clone().unwrap_or_else(|| "hs2.test".into())),
            protected: "hs1.test".into(),
            txn_id: None,
        };
        let guard = policy.pdu_outcome(&ctx, &view).verdict_of(&rule.id);
        assert_eq!(
            guard, res.got,
            "{}::{} ({:?}) at {}:{}: guard {guard:?}, policy test {:?}",
            rule.id, res.index, res.name, res.file, res.loc.line, res.got
        );
        compared += 1;
    }
    assert!(
        compared >= 120,
        "compared {compared} of {} tests",
        cli.len()
    );
}

#[test]
fn a_rule_file_without_rules_is_an_error_but_a_broken_rule_is_reported_as_itself() {
    for (what, text) in [
        ("empty", ""),
        ("comments", "# all rules moved\n# to another file\n"),
        ("mode only", "mode = \"enforce\"\n"),
    ] {
        let err = RuleSet::from_sources(&[("a.toml", BASE), ("b.toml", text)]).unwrap_err();
        let codes: Vec<_> = err.0.iter().map(|d| (d.code, d.file.as_str())).collect();
        assert_eq!(codes, vec![("DLP019", "b.toml")], "{what}");
        assert!(
            err.to_string()
                .starts_with("b.toml: error[DLP019]: rule file has no rules"),
            "{err}"
        );
    }
    // A file whose only rule is broken reports the rule's problem, not DLP019.
    let err = RuleSet::from_sources(&[("b.toml", "[[rule]]\nid = \"x\"\n")]).unwrap_err();
    assert!(err.0.iter().all(|d| d.code != "DLP019"), "{err}");
    assert!(err.0.iter().any(|d| d.code == "DLP004"), "{err}");
}

#[test]
fn a_snapshot_loads_with_a_manifest_of_file_names_rule_ids_and_hashes() {
    use crate::policy::manifest::{Manifest, Snapshot};
    let extra = "[[rule]]\nid = \"x.one\"\ndescription = \"d\"\nseverity = \"low\"\naction = \"tag\"\nkeywords = [\"eins\"]\n";
    let snap = Snapshot::from_files([("b.toml", extra.as_bytes()), ("a.toml", BASE.as_bytes())]);
    let (set, manifest) =
        RuleSet::from_snapshot(Path::new("/p"), &snap).unwrap_or_else(|d| panic!("{d}"));
    assert_eq!(set.rules().count(), 5);
    let mut expected = Manifest::new();
    expected.insert(
        "a.toml",
        BASE.as_bytes(),
        ["iban", "geheim", "weak", "email"],
    );
    expected.insert("b.toml", extra.as_bytes(), ["x.one"]);
    assert_eq!(manifest, expected);
    assert_eq!(manifest.fingerprint(), snap.fingerprint());
    // Diagnostics name files by path; unreadable and non-UTF-8 files are DLP014.
    let bad = Snapshot::from_files([("a.toml", BASE.as_bytes()), ("c.toml", &b"\xff\xfe"[..])]);
    let err = RuleSet::from_snapshot(Path::new("/p"), &bad).unwrap_err();
    assert_eq!(
        err.0.iter().map(|d| d.code).collect::<Vec<_>>(),
        vec!["DLP014"],
        "{err}"
    );
    let none = Snapshot::from_files([]);
    assert_eq!(
        RuleSet::from_snapshot(Path::new("/p"), &none)
            .unwrap_err()
            .0[0]
            .code,
        "DLP015"
    );
}
