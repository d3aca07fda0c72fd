use serde_json::json;

use super::*;
use crate::federation::catalog;
use crate::federation::e2ee::synthetic;
use crate::policy::Direction;

const KEY: &str = "de.grenzwacht.label";

fn layer(release: OpaqueRelease, peers: Option<&[&str]>) -> OpaquePolicy {
    OpaquePolicy {
        release,
        peers: peers.map(|p| p.iter().map(|s| s.to_string()).collect()),
        label_key: Some(KEY.into()),
    }
}

fn ctx(direction: Direction, peer: Option<&str>) -> ExchangeCtx {
    ExchangeCtx {
        direction,
        endpoint: catalog::by_id("send_transaction").unwrap(),
        peer: peer.map(Into::into),
        protected: "hs1.test".into(),
        txn_id: None,
    }
}

fn raw(v: &Value) -> Box<RawValue> {
    serde_json::value::to_raw_value(v).unwrap()
}

fn pdu_verdict(l: &OpaquePolicy, c: &ExchangeCtx, ty: &str, content: &Value) -> PduVerdict {
    let ev = raw(
        &json!({"type": ty, "room_id": "!r:hs1.test", "sender": "@a:hs1.test", "origin_server_ts": 1, "content": content}),
    );
    let pdu = PduView::parse(&ev).unwrap();
    l.pdu(c, &pdu)
}

fn to_device_verdict(l: &OpaquePolicy, c: &ExchangeCtx, ty: &str, content: &Value) -> EduVerdict {
    let r = raw(content);
    let msg = ToDeviceMessage {
        edu: 0,
        sender: Some("@a:hs1.test".into()),
        event_type: Some(ty.into()),
        message_id: Some("m1".into()),
        user_id: "@b:remote.test".into(),
        device_id: "DEV".into(),
        content: &r,
    };
    l.to_device(c, &msg)
}

fn labeled(mut v: Value) -> Value {
    v[KEY] = json!({"policy": "1.2.3", "classification": 1});
    v
}

fn malformed_megolm() -> Value {
    json!({"algorithm": e2ee::MEGOLM_V1, "ciphertext": synthetic::b64(b"Treffpunkt GEHEIM am Bahnhof"), "session_id": "s"})
}

fn attachment() -> Value {
    json!({"msgtype": "m.file", "body": "plan.pdf", "file": {"url": "mxc://hs1.test/abc", "key": {"k": "x", "alg": "A256CTR"}, "iv": "i", "hashes": {"sha256": "h"}, "v": "v2"}})
}

fn redact(rule: &str) -> PduVerdict {
    PduVerdict::Redact { rule: rule.into() }
}

fn dropped(rule: &str) -> EduVerdict {
    EduVerdict::Drop { rule: rule.into() }
}

/// Every release mode × well-formed / malformed ciphertext / attachment × PDU / to-device,
/// unlabeled and labeled, in both directions.
#[test]
fn release_modes_by_content_class_and_unit() {
    use OpaqueRelease::*;
    let megolm = synthetic::megolm_content(5, 3);
    let olm = synthetic::olm_content(true);
    let bad = malformed_megolm();
    let file = attachment();
    // (mode, content, labeled?, expected PDU verdict rule (None = allow))
    let cases: Vec<(OpaqueRelease, &Value, Option<&str>, Option<&str>)> = vec![
        (
            Deny,
            &megolm,
            Some("m.room.encrypted"),
            Some(RULE_ENCRYPTED),
        ),
        (Deny, &bad, Some("m.room.encrypted"), Some(RULE_MALFORMED)),
        (
            Deny,
            &file,
            Some("m.room.message"),
            Some(RULE_ENCRYPTED_FILE),
        ),
        (
            Labeled,
            &megolm,
            Some("m.room.encrypted"),
            Some(RULE_UNLABELED),
        ),
        (Labeled, &bad, Some("m.room.encrypted"), None),
        (Labeled, &file, Some("m.room.message"), Some(RULE_UNLABELED)),
        (Allow, &megolm, Some("m.room.encrypted"), None),
        (Allow, &bad, Some("m.room.encrypted"), None),
        (Allow, &file, Some("m.room.message"), None),
    ];
    for direction in [Direction::Outbound, Direction::Inbound] {
        let c = ctx(direction, Some("remote.test"));
        for (mode, content, ty, rule) in &cases {
            let l = layer(*mode, None);
            let ty = ty.unwrap();
            let want_pdu = rule.map(redact).unwrap_or(PduVerdict::Allow);
            let want_td = rule.map(dropped).unwrap_or(EduVerdict::Allow);
            assert_eq!(
                pdu_verdict(&l, &c, ty, content),
                want_pdu,
                "{mode:?} pdu {content}"
            );
            assert_eq!(
                to_device_verdict(&l, &c, ty, content),
                want_td,
                "{mode:?} to-device {content}"
            );
            // With its own label: only `labeled` changes (deny stays deny).
            let with = labeled((*content).clone());
            let want_labeled = match (mode, rule) {
                (Labeled, Some(r)) if *r == RULE_UNLABELED => PduVerdict::Allow,
                _ => want_pdu.clone(),
            };
            assert_eq!(
                pdu_verdict(&l, &c, ty, &with),
                want_labeled,
                "{mode:?} labeled pdu {content}"
            );
        }
        // Olm to-device messages, both message types.
        assert_eq!(
            to_device_verdict(&layer(Deny, None), &c, "m.room.encrypted", &olm),
            dropped(RULE_ENCRYPTED)
        );
        assert_eq!(
            to_device_verdict(
                &layer(Allow, None),
                &c,
                "m.room.encrypted",
                &synthetic::olm_content(false)
            ),
            EduVerdict::Allow
        );
        assert_eq!(
            to_device_verdict(
                &layer(Labeled, None),
                &c,
                "m.room.encrypted",
                &labeled(olm.clone())
            ),
            EduVerdict::Allow
        );
    }
}

#[test]
fn cleartext_and_redacted_content_is_not_this_layers_business() {
    let l = layer(OpaqueRelease::Deny, None);
    let c = ctx(Direction::Outbound, Some("remote.test"));
    assert_eq!(
        l.judge(
            &c,
            Some("m.room.message"),
            &raw(&json!({"msgtype": "m.text", "body": "hallo"}))
        ),
        None
    );
    assert_eq!(
        l.judge(
            &c,
            Some("m.room.message"),
            &raw(&json!({"msgtype": "m.file", "body": "a", "url": "mxc://a/b"}))
        ),
        None
    );
    // Enabling encryption in a room is cleartext state.
    assert_eq!(
        pdu_verdict(
            &l,
            &c,
            "m.room.encryption",
            &json!({"algorithm": e2ee::MEGOLM_V1, "rotation_period_ms": 604800000})
        ),
        PduVerdict::Allow
    );
    // A redacted m.room.encrypted event has an empty content.
    assert_eq!(
        l.judge(&c, Some("m.room.encrypted"), &raw(&json!({}))),
        None
    );
    // Not redacted, not ciphertext, but claims to be encrypted: malformed.
    assert_eq!(
        l.judge(
            &c,
            Some("m.room.encrypted"),
            &raw(&json!({"body": "GEHEIM"}))
        ),
        Some(Err(RULE_MALFORMED))
    );
    // Any type with ciphertext keys counts, also with escaped key names.
    let escaped = RawValue::from_string(
        r#"{"algorithm":"m.megolm.v1.aes-sha2","cipher\u0074ext":"R0VIRUlN"}"#.to_string(),
    )
    .unwrap();
    assert_eq!(
        l.judge(&c, Some("org.example.custom"), &escaped),
        Some(Err(RULE_MALFORMED))
    );
    let mut custom = synthetic::megolm_content(1, 1);
    custom["note"] = json!("x");
    assert_eq!(
        l.judge(&c, Some("org.example.custom"), &raw(&custom)),
        Some(Err(RULE_ENCRYPTED))
    );
}

#[test]
fn peers_restrict_the_release() {
    let l = layer(
        OpaqueRelease::Allow,
        Some(&["*.partner.test", "127.0.0.1:*"]),
    );
    let megolm = synthetic::megolm_content(0, 1);
    for (peer, allowed) in [
        (Some("hs.partner.test"), true),
        (Some("127.0.0.1:8448"), true),
        (Some("other.test"), false),
        (Some("partner.test"), false),
        (None, false),
    ] {
        for direction in [Direction::Outbound, Direction::Inbound] {
            let c = ctx(direction, peer);
            let want = if allowed {
                PduVerdict::Allow
            } else {
                redact(RULE_ENCRYPTED)
            };
            assert_eq!(
                pdu_verdict(&l, &c, "m.room.encrypted", &megolm),
                want,
                "{peer:?}"
            );
        }
    }
    // Malformed ciphertext for an unlisted peer: denied like everything opaque.
    let c = ctx(Direction::Outbound, Some("other.test"));
    assert_eq!(
        pdu_verdict(&l, &c, "m.room.encrypted", &malformed_megolm()),
        redact(RULE_MALFORMED)
    );
}

#[test]
fn labeled_without_a_label_key_fails_closed() {
    let l = OpaquePolicy {
        release: OpaqueRelease::Labeled,
        peers: None,
        label_key: None,
    };
    let c = ctx(Direction::Outbound, Some("remote.test"));
    assert_eq!(
        pdu_verdict(
            &l,
            &c,
            "m.room.encrypted",
            &labeled(synthetic::megolm_content(0, 1))
        ),
        redact(RULE_UNLABELED)
    );
}

#[test]
fn attachment_and_ciphertext_together_take_the_refusal() {
    let mut both = attachment();
    both["algorithm"] = json!(e2ee::MEGOLM_V1);
    both["ciphertext"] = json!("R0VIRUlN");
    let c = ctx(Direction::Outbound, Some("remote.test"));
    // Malformed ciphertext passes as text under labeled, the attachment needs the label.
    assert_eq!(
        layer(OpaqueRelease::Labeled, None).judge(&c, Some("m.room.message"), &raw(&both)),
        Some(Err(RULE_UNLABELED))
    );
    assert_eq!(
        layer(OpaqueRelease::Labeled, None).judge(
            &c,
            Some("m.room.message"),
            &raw(&labeled(both.clone()))
        ),
        Some(Ok(Pass::Labeled))
    );
    assert_eq!(
        layer(OpaqueRelease::Allow, None).judge(&c, Some("m.room.message"), &raw(&both)),
        Some(Ok(Pass::Release))
    );
}

#[test]
fn edus_with_ciphertext_are_dropped_and_to_device_edus_judged_per_device() {
    let l = layer(OpaqueRelease::Deny, None);
    let c = ctx(Direction::Inbound, Some("remote.test"));
    let custom =
        raw(&json!({"edu_type": "org.example.secret", "content": synthetic::megolm_content(0, 1)}));
    assert_eq!(
        l.edu(&c, &EduView::parse(&custom).unwrap()),
        dropped(RULE_ENCRYPTED)
    );
    let td = raw(
        &json!({"edu_type": TO_DEVICE_EDU, "content": {"sender": "@a:x", "type": "m.room.encrypted", "message_id": "1", "messages": {"@b:y": {"D": synthetic::olm_content(false)}}}}),
    );
    assert_eq!(l.edu(&c, &EduView::parse(&td).unwrap()), EduVerdict::Allow);
    let typing = raw(
        &json!({"edu_type": "m.typing", "content": {"room_id": "!r:x", "user_id": "@a:x", "typing": true}}),
    );
    assert_eq!(
        l.edu(&c, &EduView::parse(&typing).unwrap()),
        EduVerdict::Allow
    );
}

proptest::proptest! {
    /// Content without `ciphertext` and without an encrypted attachment is never judged (no
    /// verdict, no metric), whatever else it holds — also `algorithm` keys.
    #[test]
    fn cleartext_is_never_judged(keys in proptest::collection::vec("[a-z_.]{1,12}", 0..6), vals in proptest::collection::vec("[ -~]{0,20}", 0..6)) {
        let mut obj = serde_json::Map::new();
        for (k, v) in keys.iter().zip(vals.iter()) {
            if k != "ciphertext" && k != "file" && k != "info" && k != "m.new_content" {
                obj.insert(k.clone(), json!(v));
            }
        }
        obj.insert("algorithm".into(), json!(e2ee::MEGOLM_V1));
        let content = Value::Object(obj);
        let c = ctx(Direction::Outbound, Some("remote.test"));
        for mode in [OpaqueRelease::Deny, OpaqueRelease::Labeled, OpaqueRelease::Allow] {
            proptest::prop_assert_eq!(layer(mode, None).judge(&c, Some("m.room.message"), &raw(&content)), None);
        }
    }
}
