use std::sync::OnceLock;

use proptest::prelude::*;
use serde_json::json;

use super::*;
use crate::config::labels::{MarkingConfig, MarkingWords, PeerConfig, SideConfig};
use crate::federation::catalog;
use crate::spif::Spif;

const DEU: &str = "1.3.6.1.4.1.99999.1.1";
const FREIGABE: &str = "1.3.6.1.4.1.99999.1.1.1";
const ZUSATZ: &str = "1.3.6.1.4.1.99999.1.1.2";
const NATO: &str = "1.3.26.1.3.1";
const REL_TO: &str = "1.3.26.1.4.2";
const CONTEXT: &str = "1.3.26.1.4.4";
const ADDITIONAL: &str = "1.3.26.1.4.1";
const ROOM: &str = "!room:hs1.test";

fn set() -> SpifSet {
    static SET: OnceLock<SpifSet> = OnceLock::new();
    SET.get_or_init(|| {
        let mut s = SpifSet::new();
        s.insert(Spif::parse(include_str!("../../../spif/deu-vs.xml")).unwrap())
            .unwrap();
        s.insert(Spif::parse(include_str!("../../../spif/nato.xml")).unwrap())
            .unwrap();
        s
    })
    .clone()
}

fn deu(class: u64, rel: &[u64]) -> Value {
    json!({"policy": DEU, "classification": class, "categories": rel.iter().map(|l| json!({"tag_set": FREIGABE, "type": "permissive", "lacv": l})).collect::<Vec<_>>()})
}

/// The remote peer's clearance: NATO UNCLASSIFIED and RESTRICTED, releasable to DEU, NATO context.
fn nato_clearance(classes: &[u64], rel: &[u64]) -> Value {
    let mut cats: Vec<Value> = rel
        .iter()
        .map(|l| json!({"tag_set": REL_TO, "type": "enumeratedPermissive", "lacv": l}))
        .collect();
    cats.push(json!({"tag_set": CONTEXT, "type": "permissive", "lacv": 1001}));
    json!({"policy": NATO, "classifications": classes, "categories": cats})
}

fn config(peers: Vec<PeerConfig>) -> LabelsConfig {
    let all_deu: Vec<Value> = [276u64, 250, 840, 1001, 2000]
        .iter()
        .map(|l| json!({"tag_set": FREIGABE, "type": "permissive", "lacv": l}))
        .chain(
            [2u64, 10]
                .iter()
                .map(|l| json!({"tag_set": ZUSATZ, "type": "restrictive", "lacv": l})),
        )
        .collect();
    LabelsConfig {
        spifs: vec![],
        event_key: "de.grenzwacht.label".into(),
        room_label_type: "de.grenzwacht.room_label".into(),
        on_deny: LabelAction::Redact,
        on_mismatch: LabelAction::Hold,
        encrypted_without_label: EncryptedWithoutLabel::Deny,
        marking_check: true,
        protected: SideConfig {
            policy: DEU.into(),
            default_label: Some(deu(2, &[])),
            default_label_file: None,
            clearance: Some(
                json!({"policy": DEU, "classifications": [1, 2, 3, 4, 5], "categories": all_deu}),
            ),
            clearance_file: None,
        },
        remote: SideConfig {
            policy: NATO.into(),
            default_label: Some(
                json!({"policy": NATO, "classification": 2, "categories": [{"tag_set": CONTEXT, "type": "permissive", "lacv": 1001}]}),
            ),
            default_label_file: None,
            clearance: Some(nato_clearance(&[1, 2], &[276])),
            clearance_file: None,
        },
        peer: peers,
        marking: vec![],
        marking_detector: Default::default(),
    }
}

fn policy_with(store: Store, peers: Vec<PeerConfig>) -> LabelPolicy {
    LabelPolicy::new(&config(peers), set(), store, &["hs1.test".to_string()]).unwrap()
}

fn policy() -> LabelPolicy {
    policy_with(Store::open_in_memory().unwrap(), vec![])
}

fn ctx(direction: Direction, peer: &str) -> ExchangeCtx {
    ExchangeCtx {
        direction,
        endpoint: catalog::by_id("send_transaction").unwrap(),
        peer: Some(peer.into()),
        protected: "hs1.test".into(),
        txn_id: None,
    }
}

fn out() -> ExchangeCtx {
    ctx(Direction::Outbound, "hs2.test")
}

fn raw(v: &Value) -> Box<RawValue> {
    RawValue::from_string(v.to_string()).unwrap()
}

fn pdu_json(
    ty: &str,
    sender: &str,
    state_key: Option<&str>,
    content: Value,
    ts: i64,
) -> Box<RawValue> {
    let mut v = json!({"type": ty, "room_id": ROOM, "sender": sender, "origin_server_ts": ts, "content": content, "event_id": format!("$e{ts}")});
    if let Some(k) = state_key {
        v["state_key"] = json!(k);
    }
    raw(&v)
}

fn judge_pdu(p: &LabelPolicy, c: &ExchangeCtx, ty: &str, content: Value) -> PduVerdict {
    let r = pdu_json(ty, "@alice:hs1.test", None, content, 10);
    p.pdu(c, &PduView::parse(&r).unwrap())
}

fn msg(body: &str, label: Option<Value>) -> Value {
    let mut c = json!({"msgtype": "m.text", "body": body});
    if let Some(l) = label {
        c["de.grenzwacht.label"] = l;
    }
    c
}

fn set_room_label(
    p: &LabelPolicy,
    c: &ExchangeCtx,
    sender: &str,
    label: Value,
    ts: i64,
) -> PduVerdict {
    let r = pdu_json(
        "de.grenzwacht.room_label",
        sender,
        Some(""),
        json!({"de.grenzwacht.label": label}),
        ts,
    );
    p.pdu(c, &PduView::parse(&r).unwrap())
}

fn redact(rule: &str) -> PduVerdict {
    PduVerdict::Redact { rule: rule.into() }
}

#[test]
fn release_by_label_and_clearance() {
    let p = policy();
    let c = out();
    assert_eq!(
        judge_pdu(
            &p,
            &c,
            "m.room.message",
            msg("Lage ruhig", Some(deu(2, &[])))
        ),
        PduVerdict::Allow,
        "VS-NfD to a RESTRICTED peer"
    );
    assert_eq!(
        judge_pdu(
            &p,
            &c,
            "m.room.message",
            msg("Lage ruhig", Some(deu(2, &[276])))
        ),
        PduVerdict::Allow,
        "released to DEU, peer cleared for DEU"
    );
    assert_eq!(
        judge_pdu(
            &p,
            &c,
            "m.room.message",
            msg("Lage ruhig", Some(deu(4, &[])))
        ),
        redact("label:deny"),
        "GEHEIM"
    );
    assert_eq!(
        judge_pdu(
            &p,
            &c,
            "m.room.message",
            msg("Lage ruhig", Some(deu(2, &[250])))
        ),
        redact("label:deny"),
        "released to FRA only"
    );
    assert_eq!(
        judge_pdu(
            &p,
            &c,
            "m.room.message",
            msg("Lage ruhig", Some(deu(2, &[2000])))
        ),
        redact("label:no_equivalent"),
        "EU has no NATO equivalent"
    );
    assert_eq!(
        judge_pdu(&p, &c, "m.room.message", msg("Lage ruhig", None)),
        PduVerdict::Allow,
        "protected default VS-NfD"
    );
    // A peer with its own clearance.
    let p = policy_with(
        Store::open_in_memory().unwrap(),
        vec![PeerConfig {
            server: "HS3.test".into(),
            clearance: Some(nato_clearance(&[1, 2, 3, 4], &[250])),
            clearance_file: None,
        }],
    );
    let c3 = ctx(Direction::Outbound, "hs3.test");
    assert_eq!(
        judge_pdu(&p, &c3, "m.room.message", msg("x", Some(deu(4, &[250])))),
        PduVerdict::Allow
    );
    assert_eq!(
        judge_pdu(&p, &c, "m.room.message", msg("x", Some(deu(4, &[250])))),
        redact("label:deny"),
        "hs2 keeps the default"
    );
}

#[test]
fn label_formats_and_invalid_labels() {
    let p = policy();
    let c = out();
    let l = Label::from_json(&deu(2, &[276])).unwrap();
    let xml = p.spifs().to_4774_xml(&l).unwrap();
    assert_eq!(
        judge_pdu(&p, &c, "m.room.message", msg("x", Some(json!(xml)))),
        PduVerdict::Allow,
        "STANAG 4774 string"
    );
    let geheim = p
        .spifs()
        .to_4774_xml(&Label::from_json(&deu(4, &[])).unwrap())
        .unwrap();
    assert_eq!(
        judge_pdu(&p, &c, "m.room.message", msg("x", Some(json!(geheim)))),
        redact("label:deny")
    );
    for bad in [
        json!("<garbage"),
        json!(42),
        json!({"policy": DEU, "classification": 9}),
        json!({"policy": "1.2.3", "classification": 1}),
        json!({"policy": DEU, "classification": 2, "typo": 1}),
    ] {
        assert_eq!(
            judge_pdu(&p, &c, "m.room.message", msg("x", Some(bad.clone()))),
            redact("label:invalid"),
            "{bad}"
        );
    }
    // KRYPTO is excluded for VS-NfD: an invalid combination.
    let krypto = json!({"policy": DEU, "classification": 2, "categories": [{"tag_set": ZUSATZ, "type": "restrictive", "lacv": 2}]});
    assert_eq!(
        judge_pdu(&p, &c, "m.room.message", msg("x", Some(krypto))),
        redact("label:invalid")
    );
}

#[test]
fn room_label_is_default_and_ceiling() {
    let p = policy();
    let c = out();
    assert_eq!(
        set_room_label(&p, &c, "@alice:hs1.test", deu(4, &[]), 1),
        redact("label:deny"),
        "the GEHEIM room label event itself is not released to hs2"
    );
    assert_eq!(
        judge_pdu(&p, &c, "m.room.message", msg("x", None)),
        redact("label:deny"),
        "unlabeled in a GEHEIM room"
    );
    assert_eq!(
        judge_pdu(&p, &c, "m.room.message", msg("x", Some(deu(2, &[])))),
        PduVerdict::Allow,
        "an event labeled below the room ceiling"
    );
    // Lowered by the protected side: now a VS-NfD room released to DEU and FRA.
    assert_eq!(
        set_room_label(&p, &c, "@alice:hs1.test", deu(2, &[276, 250]), 2),
        PduVerdict::Allow
    );
    assert_eq!(
        judge_pdu(&p, &c, "m.room.message", msg("x", None)),
        PduVerdict::Allow
    );
    let high_peer = policy_with(
        p.store.clone(),
        vec![PeerConfig {
            server: "hs2.test".into(),
            clearance: Some(nato_clearance(&[1, 2, 3, 4], &[276])),
            clearance_file: None,
        }],
    );
    assert_eq!(
        judge_pdu(
            &high_peer,
            &c,
            "m.room.message",
            msg("x", Some(deu(4, &[])))
        ),
        redact("label:above_room"),
        "above the room label, even for a cleared peer"
    );
    assert_eq!(
        judge_pdu(
            &high_peer,
            &c,
            "m.room.message",
            msg("x", Some(deu(3, &[])))
        ),
        redact("label:above_room")
    );
    assert_eq!(
        judge_pdu(
            &high_peer,
            &c,
            "m.room.message",
            msg("x", Some(deu(2, &[276, 250, 840])))
        ),
        PduVerdict::Allow,
        "a wider release is within the room"
    );
    assert_eq!(
        judge_pdu(
            &high_peer,
            &c,
            "m.room.message",
            msg("x", Some(deu(2, &[276])))
        ),
        redact("label:above_room"),
        "a narrower release is more sensitive than the room"
    );
    // The ceiling check is cached per (event label, room label): after the room label is
    // raised, the same event label is judged against the new ceiling, not the cached outcome.
    assert_eq!(
        judge_pdu(
            &high_peer,
            &c,
            "m.room.message",
            msg("x", Some(deu(3, &[276])))
        ),
        redact("label:above_room")
    );
    assert_eq!(
        judge_pdu(
            &high_peer,
            &c,
            "m.room.message",
            msg("x", Some(deu(3, &[276])))
        ),
        redact("label:above_room"),
        "cached: same outcome"
    );
    assert_eq!(
        set_room_label(&high_peer, &c, "@alice:hs1.test", deu(4, &[276]), 3),
        PduVerdict::Allow
    );
    assert_eq!(
        judge_pdu(
            &high_peer,
            &c,
            "m.room.message",
            msg("x", Some(deu(3, &[276])))
        ),
        PduVerdict::Allow,
        "below the raised ceiling now"
    );
}

#[test]
fn room_label_changes_remote_may_only_raise() {
    let store = Store::open_in_memory().unwrap();
    let p = policy_with(store.clone(), vec![]);
    let inbound = ctx(Direction::Inbound, "hs2.test");
    let stored = || {
        Label::from_json(
            &serde_json::from_str::<Value>(&store.room_label(ROOM).unwrap().unwrap().label)
                .unwrap(),
        )
        .unwrap()
        .classification
        .0
    };
    set_room_label(&p, &out(), "@alice:hs1.test", deu(3, &[]), 10);
    assert_eq!(stored(), 3);
    set_room_label(&p, &inbound, "@bob:hs2.test", deu(2, &[]), 20);
    assert_eq!(stored(), 3, "a remote cannot lower the room label");
    // Even forged as a protected user, inbound (it did not leave the protected side).
    set_room_label(&p, &inbound, "@alice:hs1.test", deu(2, &[]), 21);
    assert_eq!(stored(), 3);
    set_room_label(&p, &inbound, "@bob:hs2.test", deu(4, &[]), 22);
    assert_eq!(stored(), 4, "a raise is accepted from anyone");
    set_room_label(&p, &out(), "@alice:hs1.test", deu(2, &[]), 5);
    assert_eq!(stored(), 4, "an older protected-side change does not win");
    set_room_label(&p, &out(), "@alice:hs1.test", deu(2, &[]), 30);
    assert_eq!(stored(), 2, "the protected side may lower its room's label");
    // Persisted: a new layer on the same store knows it.
    let p2 = policy_with(store.clone(), vec![]);
    assert_eq!(
        judge_pdu(&p2, &out(), "m.room.message", msg("x", Some(deu(3, &[])))),
        redact("label:above_room")
    );
    // An unparsable room label makes the room's unlabeled events fail closed.
    let store2 = Store::open_in_memory().unwrap();
    let p3 = policy_with(store2, vec![]);
    set_room_label(&p3, &out(), "@alice:hs1.test", json!("<nonsense/>"), 1);
    assert_eq!(
        judge_pdu(&p3, &out(), "m.room.message", msg("x", None)),
        redact("label:invalid")
    );
}

#[test]
fn encrypted_needs_a_cleartext_label() {
    let p = policy();
    let c = out();
    let ct = json!({"algorithm": "m.megolm.v1.aes-sha2", "ciphertext": "AwgAEnAc GEHEIM", "session_id": "s", "sender_key": "k", "device_id": "D"});
    assert_eq!(
        judge_pdu(&p, &c, "m.room.encrypted", ct.clone()),
        redact("label:unlabeled_encrypted")
    );
    let mut labeled = ct.clone();
    labeled["de.grenzwacht.label"] = deu(2, &[276]);
    assert_eq!(
        judge_pdu(&p, &c, "m.room.encrypted", labeled),
        PduVerdict::Allow,
        "releasable label; ciphertext not scanned"
    );
    let mut high = ct;
    high["de.grenzwacht.label"] = deu(4, &[]);
    assert_eq!(
        judge_pdu(&p, &c, "m.room.encrypted", high),
        redact("label:deny")
    );
}

#[test]
fn body_marked_above_its_label_is_held() {
    let p = policy();
    let c = out();
    let nfd = || Some(deu(2, &[]));
    assert_eq!(
        judge_pdu(
            &p,
            &c,
            "m.room.message",
            msg("Bericht GEHEIM, bitte prüfen", nfd())
        ),
        PduVerdict::Hold {
            rule: "label:mismatch".into()
        }
    );
    assert_eq!(
        judge_pdu(&p, &c, "m.room.message", msg("STRENG GEHEIM", nfd())),
        PduVerdict::Hold {
            rule: "label:mismatch".into()
        }
    );
    assert_eq!(
        judge_pdu(
            &p,
            &c,
            "m.room.message",
            msg("Einstufung VS-VERTRAULICH.", nfd())
        ),
        PduVerdict::Hold {
            rule: "label:mismatch".into()
        }
    );
    assert_eq!(
        judge_pdu(&p, &c, "m.room.message", msg("NATO SECRET", nfd())),
        PduVerdict::Hold {
            rule: "label:mismatch".into()
        },
        "NATO marking, equivalent above VS-NfD"
    );
    let mut html = msg("plain", nfd());
    html["formatted_body"] = json!("<b>GEHEIM</b>");
    assert_eq!(
        judge_pdu(&p, &c, "m.room.message", html),
        PduVerdict::Hold {
            rule: "label:mismatch".into()
        }
    );
    let mut edit = msg("* fixed", nfd());
    edit["m.new_content"] = json!({"body": "jetzt GEHEIM"});
    assert_eq!(
        judge_pdu(&p, &c, "m.room.message", edit),
        PduVerdict::Hold {
            rule: "label:mismatch".into()
        }
    );
    // Not markings: lower case, part of a word, at or below the label.
    for ok in [
        "das bleibt geheim",
        "GEHEIMNISSE",
        "VS-NfD",
        "Dieser Text ist VS-NUR FÜR DEN DIENSTGEBRAUCH",
        "RESTRICTED",
    ] {
        assert_eq!(
            judge_pdu(&p, &c, "m.room.message", msg(ok, nfd())),
            PduVerdict::Allow,
            "{ok}"
        );
    }
    // Unlabeled events are checked against their effective label (the side default VS-NfD).
    assert_eq!(
        judge_pdu(&p, &c, "m.room.message", msg("GEHEIM", None)),
        PduVerdict::Hold {
            rule: "label:mismatch".into()
        }
    );
    // A GEHEIM label with a GEHEIM body is consistent (denied by clearance, not mismatch).
    assert_eq!(
        judge_pdu(&p, &c, "m.room.message", msg("GEHEIM", Some(deu(4, &[])))),
        redact("label:deny")
    );
    // An extra detector counts too.
    let d: MarkingDetector = Arc::new(|c: &RawValue| {
        c.get()
            .contains("Codewort")
            .then(|| (Oid::parse(NATO).unwrap(), Lacv(3)))
    });
    let p = policy().with_detector(d);
    assert_eq!(
        judge_pdu(&p, &c, "m.room.message", msg("Codewort Adler", nfd())),
        PduVerdict::Hold {
            rule: "label:mismatch".into()
        }
    );
}

#[test]
fn marking_words_are_configurable_per_spif() {
    // A DEU deployment: an English footer "CONFIDENTIAL" under a VS-NfD message is a NATO
    // classification name (≙ VS-VERTRAULICH) by default, an ordinary word with NATO's words
    // "qualified".
    let c = out();
    let nfd = || Some(deu(2, &[]));
    let hold = || PduVerdict::Hold {
        rule: "label:mismatch".into(),
    };
    let footer = "Lagebericht 06:00, keine Vorkommnisse.\n\n-- \nCONFIDENTIAL";
    assert_eq!(
        judge_pdu(&policy(), &c, "m.room.message", msg(footer, nfd())),
        hold(),
        "default: every SPIF's words count"
    );
    let with = |words: MarkingWords| {
        let mut cfg = config(vec![]);
        cfg.marking = vec![MarkingConfig {
            policy: NATO.into(),
            words,
        }];
        LabelPolicy::new(
            &cfg,
            set(),
            Store::open_in_memory().unwrap(),
            &["hs1.test".to_string()],
        )
        .unwrap()
    };
    let q = with(MarkingWords::Qualified);
    for ok in [
        footer,
        "CONFIDENTIAL",
        "SECRET meeting",
        "CONFIDENTIALITY",
        "nato confidential",
        "NATOCONFIDENTIAL",
    ] {
        assert_eq!(
            judge_pdu(&q, &c, "m.room.message", msg(ok, nfd())),
            PduVerdict::Allow,
            "qualified: {ok}"
        );
    }
    for marked in [
        "NATO CONFIDENTIAL",
        "Einstufung: NATO SECRET",
        "VS-VERTRAULICH",
        "CONFIDENTIAL (VS-VERTRAULICH)",
        "GEHEIM",
    ] {
        assert_eq!(
            judge_pdu(&q, &c, "m.room.message", msg(marked, nfd())),
            hold(),
            "qualified: {marked}"
        );
    }
    let off = with(MarkingWords::Off);
    assert_eq!(
        judge_pdu(&off, &c, "m.room.message", msg("NATO SECRET", nfd())),
        PduVerdict::Allow,
        "off: NATO's words do not count"
    );
    assert_eq!(
        judge_pdu(&off, &c, "m.room.message", msg("GEHEIM", nfd())),
        hold(),
        "off applies to that SPIF only"
    );
    // A policy that is no loaded SPIF is a configuration error.
    let mut cfg = config(vec![]);
    cfg.marking = vec![MarkingConfig {
        policy: "1.2.3.4".into(),
        words: MarkingWords::Off,
    }];
    let e = LabelPolicy::new(
        &cfg,
        set(),
        Store::open_in_memory().unwrap(),
        &["hs1.test".to_string()],
    )
    .expect_err("unknown policy refused");
    assert!(e.to_string().contains("marking[0].policy"), "{e}");
}

#[test]
fn inbound_uses_the_protected_clearance_and_remote_default() {
    let p = policy();
    let c = ctx(Direction::Inbound, "hs2.test");
    let nato = |class: u64| json!({"policy": NATO, "classification": class, "categories": [{"tag_set": CONTEXT, "type": "permissive", "lacv": 1001}]});
    assert_eq!(
        judge_pdu(&p, &c, "m.room.message", msg("hello", None)),
        PduVerdict::Allow,
        "remote default NATO RESTRICTED → VS-NfD"
    );
    assert_eq!(
        judge_pdu(&p, &c, "m.room.message", msg("hello", Some(nato(4)))),
        PduVerdict::Allow,
        "protected side cleared up to STRENG GEHEIM"
    );
    assert_eq!(
        judge_pdu(&p, &c, "m.room.message", msg("hello", Some(nato(1)))),
        redact("label:no_equivalent"),
        "NATO UNCLASSIFIED has no VS equivalent"
    );
    let crypto = json!({"policy": NATO, "classification": 3, "categories": [{"tag_set": ADDITIONAL, "type": "restrictive", "lacv": 2}, {"tag_set": CONTEXT, "type": "permissive", "lacv": 1001}]});
    assert_eq!(
        judge_pdu(&p, &c, "m.room.message", msg("hello", Some(crypto))),
        PduVerdict::Allow,
        "CRYPTO ↔ KRYPTO"
    );
}

#[test]
fn edus_and_to_device() {
    let p = policy();
    let c = out();
    set_room_label(&p, &c, "@alice:hs1.test", deu(4, &[]), 1);
    let edu = |v: Value| raw(&v);
    let typing = edu(
        json!({"edu_type": "m.typing", "content": {"room_id": ROOM, "user_id": "@alice:hs1.test", "typing": true}}),
    );
    assert_eq!(
        p.edu(&c, &EduView::parse(&typing).unwrap()),
        EduVerdict::Drop {
            rule: "label:deny".into()
        },
        "typing in a GEHEIM room"
    );
    let presence = edu(json!({"edu_type": "m.presence", "content": {"push": []}}));
    assert_eq!(
        p.edu(&c, &EduView::parse(&presence).unwrap()),
        EduVerdict::Allow,
        "side default"
    );
    let labeled =
        edu(json!({"edu_type": "org.example", "content": {"de.grenzwacht.label": deu(4, &[])}}));
    assert_eq!(
        p.edu(&c, &EduView::parse(&labeled).unwrap()),
        EduVerdict::Drop {
            rule: "label:deny".into()
        }
    );
    let td = |ty: &str, content: Value| (ty.to_string(), raw(&content));
    for ((ty, content), want) in [
        (
            td(
                "m.room.encrypted",
                json!({"algorithm": "m.olm.v1.curve25519-aes-sha2", "ciphertext": {}}),
            ),
            Some("label:unlabeled_encrypted"),
        ),
        (
            td(
                "m.room.encrypted",
                json!({"algorithm": "x", "ciphertext": {}, "de.grenzwacht.label": deu(2, &[])}),
            ),
            None,
        ),
        (td("org.example", json!({"text": "hi"})), None),
        (
            td(
                "org.example",
                json!({"text": "hi", "de.grenzwacht.label": deu(4, &[])}),
            ),
            Some("label:deny"),
        ),
    ] {
        let m = ToDeviceMessage {
            edu: 0,
            sender: None,
            event_type: Some(Cow::Owned(ty.clone())),
            message_id: None,
            user_id: "@bob:hs2.test".into(),
            device_id: "D".into(),
            content: &content,
        };
        let want = want.map_or(EduVerdict::Allow, |r| EduVerdict::Drop { rule: r.into() });
        assert_eq!(p.to_device(&c, &m), want, "{ty} {content}");
    }
}

#[test]
fn hold_on_deny_and_encrypted_default() {
    let mut cfg = config(vec![]);
    cfg.on_deny = LabelAction::Hold;
    cfg.on_mismatch = LabelAction::Redact;
    cfg.encrypted_without_label = EncryptedWithoutLabel::Default;
    let p = LabelPolicy::new(&cfg, set(), Store::open_in_memory().unwrap(), &[]).unwrap();
    let c = out();
    assert_eq!(
        judge_pdu(&p, &c, "m.room.message", msg("x", Some(deu(4, &[])))),
        PduVerdict::Hold {
            rule: "label:deny".into()
        }
    );
    assert_eq!(
        judge_pdu(&p, &c, "m.room.message", msg("GEHEIM", None)),
        redact("label:mismatch")
    );
    assert_eq!(
        judge_pdu(&p, &c, "m.room.encrypted", json!({"ciphertext": "x"})),
        PduVerdict::Allow,
        "judged by the side default"
    );
}

#[test]
fn config_errors_name_the_key() {
    let mut cfg = config(vec![]);
    cfg.remote.clearance = Some(json!({"policy": DEU, "classifications": [1]}));
    let e = LabelPolicy::new(&cfg, set(), Store::open_in_memory().unwrap(), &[])
        .unwrap_err()
        .to_string();
    assert!(
        e.contains("labels.remote.clearance") && e.contains("side's policy"),
        "{e}"
    );
    let mut cfg = config(vec![]);
    cfg.protected.default_label = Some(json!({"policy": DEU, "classification": 9}));
    let e = LabelPolicy::new(&cfg, set(), Store::open_in_memory().unwrap(), &[])
        .unwrap_err()
        .to_string();
    assert!(
        e.contains("labels.protected.default_label") && e.contains("Unknown classification"),
        "{e}"
    );
    let mut cfg = config(vec![]);
    cfg.protected.policy = "1.2.3".into();
    let e = LabelPolicy::new(&cfg, set(), Store::open_in_memory().unwrap(), &[])
        .unwrap_err()
        .to_string();
    assert!(
        e.contains("labels.protected.policy") && e.contains("no SPIF"),
        "{e}"
    );
    let cfg = config(vec![PeerConfig {
        server: "hs2.test".into(),
        clearance: Some(
            json!({"policy": NATO, "classifications": [1], "categories": [{"tag_set": REL_TO, "type": "enumeratedPermissive", "lacv": 9999}]}),
        ),
        clearance_file: None,
    }]);
    let e = LabelPolicy::new(&cfg, set(), Store::open_in_memory().unwrap(), &[])
        .unwrap_err()
        .to_string();
    assert!(e.contains("labels.peer[0].clearance"), "{e}");
    // A file that does not exist.
    let mut cfg = config(vec![]);
    cfg.remote.default_label = None;
    cfg.remote.default_label_file = Some("/nonexistent/label.xml".into());
    let e = LabelPolicy::new(&cfg, set(), Store::open_in_memory().unwrap(), &[])
        .unwrap_err()
        .to_string();
    assert!(
        e.contains("labels.remote.default_label_file (/nonexistent/label.xml)"),
        "{e}"
    );
}

// ---- properties over generated labels of the shipped SPIFs ---------------------------------

const DEU_REL: [u64; 5] = [276, 250, 840, 1001, 2000];
const NATO_REL: [u64; 6] = [276, 250, 840, 56, 124, 826];

fn arb_deu_label() -> impl Strategy<Value = Value> {
    (
        1u64..=5,
        proptest::sample::subsequence(DEU_REL.to_vec(), 0..4),
        any::<bool>(),
    )
        .prop_map(|(c, rel, krypto)| {
            let mut l = deu(c, &rel);
            if krypto {
                l["categories"]
                    .as_array_mut()
                    .unwrap()
                    .push(json!({"tag_set": ZUSATZ, "type": "restrictive", "lacv": 2}));
            }
            l
        })
}

fn arb_nato_clearance() -> impl Strategy<Value = (Vec<u64>, Vec<u64>, bool)> {
    (
        proptest::sample::subsequence(vec![1u64, 2, 3, 4, 5], 0..5),
        proptest::sample::subsequence(NATO_REL.to_vec(), 0..6),
        any::<bool>(),
    )
}

fn nato_clearance_of((classes, rel, crypto): &(Vec<u64>, Vec<u64>, bool)) -> Value {
    let mut c = nato_clearance(classes, rel);
    if *crypto {
        c["categories"]
            .as_array_mut()
            .unwrap()
            .push(json!({"tag_set": ADDITIONAL, "type": "restrictive", "lacv": 2}));
    }
    c
}

fn released(label: &Value, clearance: &Value) -> bool {
    let cfg = config(vec![PeerConfig {
        server: "hs2.test".into(),
        clearance: Some(clearance.clone()),
        clearance_file: None,
    }]);
    let p = LabelPolicy::new(&cfg, set(), Store::open_in_memory().unwrap(), &[]).unwrap();
    // A body without markings: only the release decision counts.
    judge_pdu(
        &p,
        &out(),
        "m.room.message",
        msg("Lage", Some(label.clone())),
    ) == PduVerdict::Allow
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 64, ..ProptestConfig::default() })]

    /// Through the layer (translation DEU-VS → NATO included): raising the peer's clearance
    /// never turns a release into a denial.
    #[test]
    fn release_monotone_in_clearance(l in arb_deu_label(), c in arb_nato_clearance(), extra in arb_nato_clearance()) {
        let mut bigger = c.clone();
        bigger.0 = c.0.iter().chain(&extra.0).copied().collect::<std::collections::BTreeSet<_>>().into_iter().collect();
        bigger.1 = c.1.iter().chain(&extra.1).copied().collect::<std::collections::BTreeSet<_>>().into_iter().collect();
        bigger.2 |= extra.2;
        prop_assert!(!released(&l, &nato_clearance_of(&c)) || released(&l, &nato_clearance_of(&bigger)));
    }

    /// Raising the label (one that dominates it) never turns a denial into a release — for
    /// valid labels that have an equivalent in the destination's policy (an invalid or
    /// untranslatable label is denied whatever dominates it: fail closed, see
    /// `untranslatable_wider_release_is_denied`).
    #[test]
    fn release_monotone_in_label(low in arb_deu_label(), high in arb_deu_label(), c in arb_nato_clearance()) {
        let s = set();
        let (lo, hi) = (Label::from_json(&low).unwrap(), Label::from_json(&high).unwrap());
        if s.dominates(&hi, &lo) && s.validate(&lo).is_ok() && s.translate(&lo, &Oid::parse(NATO).unwrap()).is_ok() {
            let c = nato_clearance_of(&c);
            prop_assert!(!released(&high, &c) || released(&low, &c), "higher label released, dominated lower one denied");
        }
    }

    /// On the NATO SPIF directly: access is monotone in the clearance for generated NATO labels.
    #[test]
    fn nato_access_monotone_in_clearance(class in 1u64..=5, rel in proptest::sample::subsequence(NATO_REL.to_vec(), 0..4), crypto in any::<bool>(), c in arb_nato_clearance(), extra in arb_nato_clearance()) {
        let s = set();
        let mut cats: Vec<Value> = rel.iter().map(|l| json!({"tag_set": REL_TO, "type": "enumeratedPermissive", "lacv": l})).collect();
        cats.push(json!({"tag_set": CONTEXT, "type": "permissive", "lacv": 1001}));
        if crypto {
            cats.push(json!({"tag_set": ADDITIONAL, "type": "restrictive", "lacv": 2}));
        }
        let l = Label::from_json(&json!({"policy": NATO, "classification": class, "categories": cats})).unwrap();
        let small = Clearance::from_json(&nato_clearance_of(&c)).unwrap();
        let mut big = small.clone();
        let e = Clearance::from_json(&nato_clearance_of(&extra)).unwrap();
        big.classifications.extend(e.classifications);
        big.categories.extend(e.categories);
        let grant = |c: &Clearance| matches!(s.access(&l, c), Ok(crate::spif::AccessDecision::Grant));
        prop_assert!(!grant(&small) || grant(&big));
    }
}

/// The corner the label property excludes: a wider release list that includes a category
/// without a NATO equivalent (EU) is denied, although a narrower (dominating) label is
/// released. Fail closed: translation never drops a release group.
#[test]
fn untranslatable_wider_release_is_denied() {
    let s = set();
    let c = nato_clearance_of(&(vec![1, 2], vec![276], false));
    let (narrow, wide) = (deu(2, &[276]), deu(2, &[276, 2000]));
    assert!(s.dominates(
        &Label::from_json(&narrow).unwrap(),
        &Label::from_json(&wide).unwrap()
    ));
    assert!(released(&narrow, &c));
    assert!(!released(&wide, &c));
}

#[test]
fn generated_labels_are_released_somewhere() {
    // Guard against vacuous properties: some generated labels are released, some denied.
    let c = nato_clearance_of(&(vec![1, 2, 3], vec![276, 250], false));
    assert!(released(&deu(2, &[276]), &c));
    assert!(released(&deu(3, &[250, 276]), &c));
    assert!(!released(&deu(4, &[276]), &c));
}

/// A body whose room label comes after the state it governs (a `send_join` response in any
/// order): every layer sees all units before any is judged, so the topic is judged by the room
/// label whatever the order. Stripped state without a room id is judged by the room of the
/// body's PDUs.
#[test]
fn the_whole_body_is_read_before_any_unit_is_judged() {
    use crate::policy::Units;
    for label_first in [false, true] {
        let p = policy();
        let c = out();
        let topic = pdu_json(
            "m.room.topic",
            "@alice:hs1.test",
            Some(""),
            json!({"topic": "Lage"}),
            5,
        );
        let label = pdu_json(
            "de.grenzwacht.room_label",
            "@alice:hs1.test",
            Some(""),
            json!({"de.grenzwacht.label": deu(4, &[])}),
            4,
        );
        let (a, b) = if label_first {
            (&label, &topic)
        } else {
            (&topic, &label)
        };
        let units = Units {
            pdus: vec![PduView::parse(a).unwrap(), PduView::parse(b).unwrap()],
            pdu_pos: vec![0, 1],
            ..Units::default()
        };
        p.prepare(&c, &units);
        let topic_view = PduView::parse(&topic).unwrap();
        assert_eq!(
            p.pdu(&c, &topic_view),
            redact("label:deny"),
            "label first: {label_first}"
        );
    }
    // Stripped state of an invite: no room id of its own, the invite PDU's room decides.
    let p = policy();
    let c = out();
    set_room_label(&p, &c, "@alice:hs1.test", deu(4, &[]), 1);
    let invite = pdu_json(
        "m.room.member",
        "@alice:hs1.test",
        Some("@bob:hs2.test"),
        json!({"membership": "invite"}),
        6,
    );
    let stripped = raw(
        &json!({"type": "m.room.name", "state_key": "", "sender": "@alice:hs1.test", "content": {"name": "Lage"}}),
    );
    let units = Units {
        pdus: vec![PduView::parse(&invite).unwrap()],
        pdu_pos: vec![0],
        events: vec![crate::federation::pdu::EventView::parse(&stripped).unwrap()],
        event_pos: vec![1],
        ..Units::default()
    };
    assert_eq!(units.room_hint().as_deref(), Some(ROOM));
    let v = crate::policy::permit::check_units_for_tests(&p, &c, &units).unwrap();
    assert!(
        v.redact.iter().any(|m| m.pos == 1),
        "the stripped room name is judged by the GEHEIM room label: {v:?}"
    );
}

/// Directory and hierarchy entries carry a room's name and topic outside any event: they are
/// judged by the room's label (removed towards a peer not cleared for it) or the side default.
#[test]
fn room_fields_in_directory_answers_follow_the_room_label() {
    use crate::policy::{FieldKind, FieldPath, FieldVerdict, UserField};
    let p = policy();
    let c = out();
    let field = |room: &str| UserField {
        kind: FieldKind::RoomName,
        key: "name".into(),
        user_id: None,
        device_id: None,
        room_id: Some(room.to_owned().into()),
        value: "Lage".into(),
        path: FieldPath::default(),
    };
    assert_eq!(
        p.user_field(&c, &field("!other:hs1.test")),
        FieldVerdict::Allow,
        "unknown room: the side default (VS-NfD, released to hs2)"
    );
    set_room_label(&p, &c, "@alice:hs1.test", deu(4, &[]), 1);
    assert!(
        matches!(p.user_field(&c, &field(ROOM)), FieldVerdict::Remove { .. }),
        "a GEHEIM room's name does not reach hs2"
    );
}

/// The body-marking check reads text through the same pipeline as the DLP rules: a marking
/// hidden with a zero-width space or look-alike letters is still above the label.
#[test]
fn hidden_body_markings_are_still_above_the_label() {
    let p = policy();
    let c = out();
    for body in [
        "Lage GEH\u{200b}EIM",
        "Lage G\u{415}H\u{415}\u{406}M",
        "Lage \u{ff27}\u{ff25}\u{ff28}\u{ff25}\u{ff29}\u{ff2d}",
    ] {
        let v = judge_pdu(&p, &c, "m.room.message", msg(body, Some(deu(2, &[276]))));
        assert!(
            matches!(v, PduVerdict::Hold { .. } | PduVerdict::Redact { .. }),
            "{body:?}: {v:?}"
        );
    }
    assert_eq!(
        judge_pdu(
            &p,
            &c,
            "m.room.message",
            msg("Lage ruhig", Some(deu(2, &[276])))
        ),
        PduVerdict::Allow
    );
}

#[test]
fn refused_room_label_changes_and_held_labels_are_visible() {
    let store = Store::open_in_memory().unwrap();
    let p = policy_with(store.clone(), vec![]);
    let inbound = ctx(Direction::Inbound, "hs2.test");
    assert!(p.refused_changes().is_empty());
    assert!(p.room_labels(10).unwrap().is_empty());
    set_room_label(&p, &out(), "@alice:hs1.test", deu(3, &[]), 10);
    set_room_label(&p, &inbound, "@bob:hs2.test", deu(2, &[]), 20);
    set_room_label(&p, &inbound, "@bob:hs2.test", deu(4, &[]), 22);
    let refused = p.refused_changes();
    assert_eq!(
        refused.len(),
        1,
        "only the lowering was refused: {refused:?}"
    );
    assert_eq!(
        (refused[0].room_id.as_str(), refused[0].sender.as_str()),
        (ROOM, "@bob:hs2.test")
    );
    assert!(refused[0].at_ms > 0);
    let labels = p.room_labels(10).unwrap();
    assert_eq!(labels.len(), 1);
    assert_eq!(labels[0].room_id, ROOM);
    assert_eq!(labels[0].sender, "@bob:hs2.test", "the raise was learned");
    assert_eq!(labels[0].label["classification"], 4);
    let marking = labels[0].marking.as_deref().unwrap_or_default();
    assert!(!marking.is_empty(), "a valid label has a display marking");
}

/// Feeds one membership PDU through `prepare`, as a transaction carrying it would.
fn see_member(p: &LabelPolicy, c: &ExchangeCtx, user: &str, membership: &str, ts: i64) {
    let ev = pdu_json(
        "m.room.member",
        user,
        Some(user),
        json!({"membership": membership}),
        ts,
    );
    let units = crate::policy::Units {
        pdus: vec![PduView::parse(&ev).unwrap()],
        pdu_pos: vec![0],
        ..Default::default()
    };
    p.prepare(c, &units);
}

/// A room is released at the lowest clearance among its remote servers: an event the cleared
/// hs2 may see but hs3 (in the same room) may not is denied to hs2 too, because hs2 would pass
/// it on to hs3 (backfill, get_missing_events). Membership comes from the member events the
/// guard sees, in either direction, and later events win over older ones.
#[test]
fn a_room_is_released_at_the_lowest_clearance_among_its_remote_servers() {
    let p = policy_with(
        Store::open_in_memory().unwrap(),
        vec![PeerConfig {
            server: "hs2.test".into(),
            // VS-VERTRAULICH ↔ NATO CONFIDENTIAL: hs2 is cleared, hs3 (remote default) not.
            clearance: Some(nato_clearance(&[1, 2, 3], &[276])),
            clearance_file: None,
        }],
    );
    let to_hs2 = out();
    let to_hs3 = ctx(Direction::Outbound, "hs3.test");
    let inbound = ctx(Direction::Inbound, "hs3.test");
    let vs_v = || msg("Lage", Some(deu(3, &[276])));
    // Only hs2 (and the protected side) in the room: released to hs2.
    see_member(&p, &inbound, "@bob:hs2.test", "join", 1);
    see_member(&p, &to_hs2, "@alice:hs1.test", "join", 1);
    assert_eq!(
        judge_pdu(&p, &to_hs2, "m.room.message", vs_v()),
        PduVerdict::Allow
    );
    assert_eq!(
        judge_pdu(&p, &to_hs3, "m.room.message", vs_v()),
        redact("label:deny"),
        "hs3 itself is not cleared"
    );
    // hs3 joins (its join arrives inbound): now hs2 no longer gets it either.
    see_member(&p, &inbound, "@carol:hs3.test", "join", 5);
    assert_eq!(
        judge_pdu(&p, &to_hs2, "m.room.message", vs_v()),
        redact("label:room_server")
    );
    // What every remote server is cleared for still crosses; inbound is not affected.
    assert_eq!(
        judge_pdu(
            &p,
            &to_hs2,
            "m.room.message",
            msg("Lage", Some(deu(2, &[])))
        ),
        PduVerdict::Allow
    );
    assert_eq!(
        judge_pdu(&p, &inbound, "m.room.message", msg("x", None)),
        PduVerdict::Allow
    );
    // An older leave (backfilled) does not remove hs3; a newer one does.
    see_member(&p, &inbound, "@carol:hs3.test", "leave", 3);
    assert_eq!(
        judge_pdu(&p, &to_hs2, "m.room.message", vs_v()),
        redact("label:room_server")
    );
    see_member(&p, &inbound, "@carol:hs3.test", "leave", 6);
    assert_eq!(
        judge_pdu(&p, &to_hs2, "m.room.message", vs_v()),
        PduVerdict::Allow
    );
    // An invite counts as membership (the invitee may join and backfill).
    see_member(&p, &to_hs3, "@dave:hs3.test", "invite", 7);
    assert_eq!(
        judge_pdu(&p, &to_hs2, "m.room.message", vs_v()),
        redact("label:room_server")
    );
    // The protected homeserver's current state counts like the events it holds.
    let state = vec![
        json!({"type": "m.room.member", "state_key": "@dave:hs3.test", "sender": "@dave:hs3.test", "origin_server_ts": 8, "content": {"membership": "leave"}}),
        json!({"type": "m.room.member", "state_key": "@bob:hs2.test", "sender": "@bob:hs2.test", "origin_server_ts": 1, "content": {"membership": "join"}}),
    ];
    assert!(!p.learn_from_state(&to_hs2, ROOM, &state), "no label in it");
    assert_eq!(
        judge_pdu(&p, &to_hs2, "m.room.message", vs_v()),
        PduVerdict::Allow
    );
    assert!(p.room_members_known(ROOM));
    assert!(!p.room_members_known("!other:hs1.test"));
}

/// A room with more members than the guard keeps is saturated: every remote clearance counts
/// (the side default and every peer's), so the cleared hs2 alone no longer gets what the
/// remote default is not cleared for.
#[test]
fn a_saturated_room_is_released_at_the_lowest_remote_clearance() {
    use crate::store::room_members::MembershipSource;
    let store = Store::open_in_memory().unwrap();
    let p = policy_with(
        store.clone(),
        vec![PeerConfig {
            server: "hs2.test".into(),
            clearance: Some(nato_clearance(&[1, 2, 3], &[276])),
            clearance_file: None,
        }],
    );
    let to_hs2 = out();
    let vs_v = || msg("Lage", Some(deu(3, &[276])));
    see_member(&p, &to_hs2, "@bob:hs2.test", "join", 1);
    assert_eq!(
        judge_pdu(&p, &to_hs2, "m.room.message", vs_v()),
        PduVerdict::Allow
    );
    // Fill the room past a small bound (the real bound is `MAX_ROWS_PER_ROOM`).
    for i in 0..3 {
        store
            .put_room_member_within(
                ROOM,
                &format!("@x:hs2-{i}.test"),
                "join",
                1,
                MembershipSource::Event,
                (10, 2),
            )
            .unwrap();
    }
    assert!(store.room_servers(ROOM).unwrap().saturated);
    assert_eq!(
        judge_pdu(&p, &to_hs2, "m.room.message", vs_v()),
        redact("label:room_server")
    );
}

/// A membership the store could not write leaves the room's member list incomplete: that
/// room's releases are denied from then on (other rooms are not affected).
#[test]
fn a_room_whose_membership_could_not_be_recorded_is_denied() {
    let p = policy();
    let c = out();
    assert_eq!(
        judge_pdu(&p, &c, "m.room.message", msg("Lage", Some(deu(2, &[])))),
        PduVerdict::Allow
    );
    p.unrecorded.mark(ROOM);
    assert_eq!(
        judge_pdu(&p, &c, "m.room.message", msg("Lage", Some(deu(2, &[])))),
        redact("label:room_server")
    );
    assert!(!p.unrecorded.contains("!other:hs1.test"));
}
