use std::sync::OnceLock;

use serde_json::json;

use super::*;
use crate::spif::Spif;

const DEU: &str = "1.3.6.1.4.1.99999.1.1";
const NATO: &str = "1.3.26.1.3.1";

fn spifs() -> SpifSet {
    static SET: OnceLock<SpifSet> = OnceLock::new();
    SET.get_or_init(|| {
        let mut s = SpifSet::new();
        s.insert(Spif::parse(include_str!("../../../../spif/deu-vs.xml")).unwrap())
            .unwrap();
        s.insert(Spif::parse(include_str!("../../../../spif/nato.xml")).unwrap())
            .unwrap();
        s
    })
    .clone()
}

fn rules(text: &str) -> Result<MarkingRules, Diagnostics> {
    let set = RuleSet::from_sources(&[("m.toml", text)]).expect("rule file loads");
    MarkingRules::build(&set, &spifs(), "de.grenzwacht.label")
}

fn raw(v: &Value) -> Box<RawValue> {
    RawValue::from_string(v.to_string()).unwrap()
}

fn found(p: &str, lacv: u64) -> Option<(Oid, Lacv)> {
    Some((Oid::parse(p).unwrap(), Lacv(lacv)))
}

/// Two DEU rules (by name and by OID + LACV), a NATO rule, a rule without classification.
const RULES: &str = r#"
[[rule]]
id = "m.geheim"
description = "d"
severity = "critical"
action = "redact"
keywords = ["GEHEIM"]
case_sensitive = true
confusables = true
classification = { policy = "DEU-VS", name = "GEHEIM" }

[[rule]]
id = "m.vs_v"
description = "d"
severity = "high"
action = "hold"
regex = '(?-u:\b)VS ?- ?VERTRAULICH(?-u:\b)'
classification = { policy = "1.3.6.1.4.1.99999.1.1", lacv = 3 }
[rule.scope]
directions = ["inbound"]
fields = ["filename"]

[[rule]]
id = "m.nato_secret"
description = "d"
severity = "critical"
action = "redact"
keywords = ["NATO SECRET"]
case_sensitive = true
classification = { policy = "nato", name = "SECRET", lacv = 4 }

[[rule]]
id = "m.cosmic"
description = "d"
severity = "critical"
action = "redact"
keywords = ["COSMIC TOP SECRET"]
case_sensitive = true
classification = { policy = "NATO", lacv = 5 }

[[rule]]
id = "plain"
description = "d"
severity = "low"
action = "tag"
keywords = ["Lagebericht"]
"#;

#[test]
fn classifications_resolve_by_name_oid_and_lacv() {
    let r = rules(RULES).unwrap();
    assert_eq!(r.rule_count(), 4);
    assert_eq!(r.classification_of("m.geheim"), found(DEU, 4));
    assert_eq!(r.classification_of("m.vs_v"), found(DEU, 3));
    assert_eq!(r.classification_of("m.nato_secret"), found(NATO, 4));
    assert_eq!(r.classification_of("m.cosmic"), found(NATO, 5));
    assert_eq!(r.classification_of("plain"), None);
}

#[test]
fn finds_markings_in_every_text_field_and_normalised_forms() {
    let r = rules(RULES).unwrap();
    let d = |c: Value| r.detect(&raw(&c));
    // formatted_body (HTML: the marking split by markup and written as character references).
    assert_eq!(
        d(json!({"msgtype": "m.text", "body": "Lage",
            "format": "org.matrix.custom.html", "formatted_body": "<b>&#71;E</b>HEIM"})),
        found(DEU, 4)
    );
    // Zero-width space and Cyrillic look-alikes (the rule asks for confusables).
    assert_eq!(
        d(json!({"body": "Lage G\u{200b}\u{415}H\u{415}\u{406}M"})),
        found(DEU, 4)
    );
    // Fields the SPIF phrase scan does not read: file name, an edit's new content, any
    // other string of the content.
    assert_eq!(
        d(json!({"msgtype": "m.file", "body": "anlage.pdf", "filename": "Bericht_GEHEIM.pdf"})),
        found(DEU, 4)
    );
    assert_eq!(
        d(json!({"body": "* x", "m.new_content": {"body": "NATO SECRET"}})),
        found(NATO, 4)
    );
    assert_eq!(
        d(json!({"body": "x", "org.example.note": {"text": "VS-VERTRAULICH"}})),
        found(DEU, 3),
        "scope (direction, fields) does not limit what the text says"
    );
}

#[test]
fn the_highest_finding_counts_across_policies() {
    let r = rules(RULES).unwrap();
    // GEHEIM ≙ NATO SECRET < COSMIC TOP SECRET; VS-VERTRAULICH < GEHEIM.
    assert_eq!(
        r.detect(&raw(&json!({"body": "VS-VERTRAULICH und GEHEIM"}))),
        found(DEU, 4)
    );
    assert_eq!(
        r.detect(&raw(&json!({"body": "GEHEIM, COSMIC TOP SECRET"}))),
        found(NATO, 5)
    );
}

#[test]
fn near_misses_and_the_label_itself_are_not_markings() {
    let r = rules(RULES).unwrap();
    for body in [
        "Das ist streng geheim, sag es niemandem.",
        "DAS IST KEIN GEHEIMNIS",
        "Der Geheimdienst hat angerufen.",
        "the NATO SECRETARY GENERAL spoke",
        "Bitte vertraulich behandeln.",
        "Lagebericht ohne Einstufung",
    ] {
        assert_eq!(r.detect(&raw(&json!({"body": body}))), None, "{body}");
    }
    // A STANAG 4774 label naming its classification is not a body marking.
    let label = "<originatorConfidentialityLabel><ConfidentialityInformation>\
        <Classification>GEHEIM</Classification></ConfidentialityInformation></originatorConfidentialityLabel>";
    assert_eq!(
        r.detect(&raw(&json!({"body": "ok", "de.grenzwacht.label": label}))),
        None
    );
    assert_eq!(r.detect(&raw(&json!("GEHEIM"))), None, "not an object");
}

#[test]
fn shadow_rules_are_checked_but_not_used() {
    let text = format!("mode = \"shadow\"\n{RULES}");
    let r = rules(&text).unwrap();
    assert_eq!(r.rule_count(), 0);
    assert_eq!(r.detect(&raw(&json!({"body": "GEHEIM"}))), None);
    let bad = text.replace("name = \"GEHEIM\"", "name = \"GEHEIMER\"");
    assert!(rules(&bad).is_err());
}

#[test]
fn unknown_policy_name_or_lacv_is_positioned() {
    let bad = RULES
        .replace(
            "policy = \"DEU-VS\", name = \"GEHEIM\"",
            "policy = \"DEU-VX\", name = \"GEHEIM\"",
        )
        .replace("lacv = 3 }", "lacv = 9 }")
        .replace("name = \"SECRET\", lacv = 4", "name = \"SECRET\", lacv = 5");
    let e = rules(&bad).unwrap_err();
    let got: Vec<(&str, usize, usize)> = e.0.iter().map(|d| (d.code, d.line, d.col)).collect();
    assert_eq!(
        got,
        vec![(DLP020, 10, 18), (DLP020, 18, 18), (DLP020, 30, 18)],
        "{e}"
    );
    let text = e.to_string();
    assert!(text.contains("no loaded SPIF is policy `DEU-VX`"), "{text}");
    assert!(text.contains("m.toml:10:18"), "{text}");
    assert!(text.contains("no classification with LACV 9"), "{text}");
    assert!(text.contains("name `SECRET` is LACV 4"), "{text}");
}

#[test]
fn the_source_follows_reloads() {
    let m = DlpMarkings::new("de.grenzwacht.label");
    let d = m.detector();
    let body = raw(&json!({"body": "GEHEIM"}));
    assert_eq!(d(&body), None, "empty until set");
    let set = RuleSet::from_sources(&[("m.toml", RULES)]).unwrap();
    m.set(m.build(&set, &spifs()).unwrap());
    assert_eq!(d(&body), found(DEU, 4));
    let set = RuleSet::from_sources(&[(
        "m.toml",
        &RULES
            .replace("lacv = 5 }", "lacv = 5 }\n")
            .replace("name = \"GEHEIM\" }", "name = \"VS-VERTRAULICH\" }"),
    )])
    .unwrap();
    m.set(m.build(&set, &spifs()).unwrap());
    assert_eq!(d(&body), found(DEU, 3));
}

mod label_layer {
    //! The detector in the label layer: `[labels] marking_detector` with the shipped rules.
    use super::*;
    use crate::config::Config;
    use crate::policy::labels::LabelPolicy;
    use crate::policy::{Direction as PDirection, ExchangeCtx};
    use crate::store::Store;

    const ROOT: &str = env!("CARGO_MANIFEST_DIR");

    fn shipped() -> RuleSet {
        RuleSet::load_dir(format!("{ROOT}/policies")).expect("shipped rules load")
    }

    /// Both sides DEU-VS and cleared for everything: only the consistency check can object.
    fn config(detector: &str) -> Config {
        Config::from_str(
            &format!(
                r#"
[store]
path = "/tmp/x.db"
[dlp]
policies = "{ROOT}/policies"
[labels]
spifs = ["{ROOT}/spif/deu-vs.xml", "{ROOT}/spif/nato.xml"]
marking_detector = "{detector}"
[labels.protected]
policy = "{DEU}"
default_label = {{ policy = "{DEU}", classification = 2 }}
clearance = {{ policy = "{DEU}", classifications = [1, 2, 3, 4, 5] }}
[labels.remote]
policy = "{DEU}"
default_label = {{ policy = "{DEU}", classification = 2 }}
clearance = {{ policy = "{DEU}", classifications = [1, 2, 3, 4, 5] }}
"#
            ),
            "/etc/gw/gw.toml",
        )
        .unwrap()
    }

    fn layer(detector: &str) -> Arc<LabelPolicy> {
        let cfg = config(detector);
        let m = DlpMarkings::new("de.grenzwacht.label");
        let p = LabelPolicy::from_config_with(
            &cfg,
            Store::open_in_memory().unwrap(),
            Some(m.detector()),
        )
        .unwrap()
        .unwrap();
        m.set(m.build(&shipped(), p.spifs()).unwrap());
        p
    }

    fn judge(p: &LabelPolicy, mut content: Value, class: u64) -> Result<(), &'static str> {
        content["de.grenzwacht.label"] = json!({"policy": DEU, "classification": class});
        let ctx = ExchangeCtx {
            direction: PDirection::Outbound,
            endpoint: crate::federation::catalog::by_id("send_transaction").unwrap(),
            peer: Some("hs2.test".into()),
            protected: "hs1.test".into(),
            txn_id: None,
        };
        p.judge(&ctx, None, &raw(&content), false, false)
            .map_err(|d| d.rule)
    }

    #[test]
    fn shipped_marking_rules_resolve_in_the_shipped_spifs() {
        let r = MarkingRules::build(&shipped(), &spifs(), "de.grenzwacht.label").unwrap();
        let want = [
            ("marking.vs_nfd", DEU, 2),
            ("marking.vs_vertraulich", DEU, 3),
            ("marking.geheim", DEU, 4),
            ("marking.streng_geheim", DEU, 5),
            ("marking.nato_eu_restricted", NATO, 2),
            ("marking.nato_eu_confidential", NATO, 3),
            ("marking.nato_eu_secret", NATO, 4),
            ("marking.nato_eu_top_secret", NATO, 5),
        ];
        for (id, p, lacv) in want {
            assert_eq!(r.classification_of(id), found(p, lacv), "{id}");
        }
        assert_eq!(
            r.rule_count(),
            want.len(),
            "weak words carry no classification"
        );
        assert_eq!(r.classification_of("marking.weak"), None);
        // Each resolves to the SPIF classification its marking names.
        let set = spifs();
        for (id, p, lacv) in want {
            let name = &set
                .get(&Oid::parse(p).unwrap())
                .unwrap()
                .classification(Lacv(lacv))
                .unwrap()
                .name;
            let rule = shipped().rules().find(|r| r.id == id).cloned().unwrap();
            assert_eq!(
                rule.classification.unwrap().name.as_deref(),
                Some(name.as_str())
            );
        }
        // Only the DEU SPIF loaded: the NATO rules do not resolve.
        let mut deu_only = SpifSet::new();
        deu_only
            .insert(Spif::parse(include_str!("../../../../spif/deu-vs.xml")).unwrap())
            .unwrap();
        let e = MarkingRules::build(&shipped(), &deu_only, "k").unwrap_err();
        assert_eq!(e.0.len(), 4, "{e}");
        assert!(e
            .0
            .iter()
            .all(|d| d.code == DLP020 && d.file.ends_with("markings.toml")));
    }

    #[test]
    fn a_body_marked_above_its_label_is_a_mismatch() {
        let (spif, dlp, both) = (layer("spif"), layer("dlp"), layer("both"));
        let mismatch = Err("label:mismatch");
        // A marking in the body: every detector sees it.
        let body = json!({"msgtype": "m.text", "body": "Einstufung: GEHEIM"});
        for p in [&spif, &dlp, &both] {
            assert_eq!(judge(p, body.clone(), 2), mismatch);
            assert_eq!(
                judge(p, body.clone(), 4),
                Ok(()),
                "consistent with a GEHEIM label"
            );
        }
        // A field the SPIF phrase scan does not read: the file name.
        let file =
            json!({"msgtype": "m.file", "body": "anlage.pdf", "filename": "Bericht_GEHEIM.pdf"});
        assert_eq!(judge(&spif, file.clone(), 2), Ok(()));
        assert_eq!(judge(&dlp, file.clone(), 2), mismatch);
        assert_eq!(judge(&both, file.clone(), 2), mismatch);
        // Encoded: character references in formatted_body, a zero-width space in the body.
        let html = json!({"msgtype": "m.text", "body": "x", "format": "org.matrix.custom.html",
            "formatted_body": "<p>&#0000071;&#x45HEIM</p>"});
        assert_eq!(judge(&dlp, html, 2), mismatch);
        let zw = json!({"msgtype": "m.text", "body": "Lage STRENG G\u{200b}EHEIM"});
        assert_eq!(
            judge(&dlp, zw.clone(), 4),
            mismatch,
            "STRENG GEHEIM above GEHEIM"
        );
        assert_eq!(judge(&dlp, zw, 5), Ok(()));
        // Another policy's marking, translated through the SPIFs' equivalences.
        let nato = json!({"msgtype": "m.text", "body": "Verteiler: NATO SECRET"});
        assert_eq!(
            judge(&dlp, nato.clone(), 3),
            mismatch,
            "NATO SECRET ≙ GEHEIM"
        );
        assert_eq!(judge(&dlp, nato, 4), Ok(()));
    }

    #[test]
    fn near_misses_are_no_markings() {
        let dlp = layer("dlp");
        for body in [
            "Das ist streng geheim, sag es niemandem.",
            "DAS IST KEIN GEHEIMNIS",
            "Dieses Dokument ist als vertraulich eingestuft.",
            "the NATO SECRETARY GENERAL spoke",
            "a top secret surprise party",
            "Ich öffne das mit VS Code.",
        ] {
            assert_eq!(
                judge(&dlp, json!({"msgtype": "m.text", "body": body}), 1),
                Ok(()),
                "{body}"
            );
        }
        // An English footer "CONFIDENTIAL" under a VS-NfD message: a NATO classification name
        // for the SPIF phrase scan, no marking for the shipped rules (they need "NATO
        // CONFIDENTIAL").
        let footer = json!({"msgtype": "m.text", "body": "Lagebericht 06:00\n-- \nCONFIDENTIAL"});
        assert_eq!(
            judge(&layer("spif"), footer.clone(), 2),
            Err("label:mismatch")
        );
        assert_eq!(judge(&dlp, footer, 2), Ok(()));
    }

    #[test]
    fn dlp_detector_without_the_rule_set_is_an_error() {
        let e =
            LabelPolicy::from_config_with(&config("dlp"), Store::open_in_memory().unwrap(), None)
                .unwrap_err()
                .to_string();
        assert!(e.contains("labels.marking_detector"), "{e}");
        assert!(
            LabelPolicy::from_config(&config("spif"), Store::open_in_memory().unwrap()).is_ok()
        );
    }
}
