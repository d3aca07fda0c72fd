use proptest::prelude::*;
use serde_json::{json, Value};

use super::synthetic::*;
use super::*;

fn megolm(ct: &str) -> Value {
    json!({"algorithm": MEGOLM_V1, "ciphertext": ct, "sender_key": "x", "device_id": "D", "session_id": "s"})
}

fn olm(ty: u64, body: &str) -> Value {
    json!({"algorithm": OLM_V1, "sender_key": "x", "ciphertext": {"KEY": {"type": ty, "body": body}}})
}

fn malformed(c: &Value) -> Vec<Vec<u8>> {
    match classify(c) {
        Ciphertext::Malformed { decoded } => decoded,
        other => panic!("expected Malformed, got {other:?} for {c}"),
    }
}

/// A Megolm message written out byte by byte from the format description.
fn megolm_by_hand() -> Vec<u8> {
    let mut m = vec![0x03, 0x08, 0xAC, 0x02, 0x12, 0x20]; // index 300, 32 bytes of ciphertext
    m.extend((0..32u8).map(|i| 0x80 | i.wrapping_mul(37)));
    m.extend([0x91; MAC_LEN]);
    m.extend([0xE5; SIGNATURE_LEN]);
    m
}

#[test]
fn megolm_by_hand_is_well_formed_and_parses_its_index() {
    let m = megolm_by_hand();
    assert_eq!(parse_megolm(&m), Some(300));
    assert_eq!(classify(&megolm(&b64(&m))), Ciphertext::WellFormed);
    assert_eq!(classify(&megolm_content(0, 1)), Ciphertext::WellFormed);
    assert_eq!(
        classify(&megolm_content(u32::MAX, 40)),
        Ciphertext::WellFormed
    );
}

#[test]
fn megolm_structure_violations_are_malformed_with_their_bytes() {
    let good = megolm_by_hand();
    let mut cases: Vec<(&str, Vec<u8>)> = Vec::new();
    cases.push(("truncated by one", good[..good.len() - 1].to_vec()));
    cases.push(("one byte extra", [good.as_slice(), &[0x99]].concat()));
    let mut v = good.clone();
    v[0] = 0x04;
    cases.push(("version 4 (full MAC, not v1)", v));
    let mut v = good.clone();
    v[1] = 0x10;
    cases.push(("wrong index tag", v));
    let mut v = good.clone();
    v[4] = 0x1A;
    cases.push(("wrong ciphertext tag", v));
    let mut v = good.clone();
    v[5] = 0x21;
    cases.push(("ciphertext length off by one", v));
    // Ciphertext of 17 bytes (not a whole AES block), lengths otherwise consistent.
    let mut v = vec![0x03, 0x08, 0x01, 0x12, 0x11];
    v.extend([0x81; 17]);
    v.extend([0x82; MAC_LEN + SIGNATURE_LEN]);
    cases.push(("ciphertext not a multiple of 16", v));
    // Non-minimal varint for the index (0x81 0x00 = 1).
    let mut v = vec![0x03, 0x08, 0x81, 0x00, 0x12, 0x10];
    v.extend([0x81; 16]);
    v.extend([0x82; MAC_LEN + SIGNATURE_LEN]);
    cases.push(("non-minimal varint", v));
    // Index above 32 bits.
    let mut v = vec![0x03, 0x08, 0x80, 0x80, 0x80, 0x80, 0x10, 0x12, 0x10];
    v.extend([0x81; 16]);
    v.extend([0x82; MAC_LEN + SIGNATURE_LEN]);
    cases.push(("index above u32", v));
    cases.push((
        "no MAC or signature",
        good[..good.len() - MAC_LEN - SIGNATURE_LEN].to_vec(),
    ));
    cases.push(("empty", Vec::new()));
    for (what, bytes) in cases {
        let c = megolm(&b64(&bytes));
        let decoded = malformed(&c);
        if bytes.is_empty() {
            assert!(decoded.is_empty(), "{what}");
        } else {
            assert_eq!(
                decoded,
                vec![bytes],
                "{what}: the decoded bytes are handed on"
            );
        }
    }
}

#[test]
fn plaintext_in_a_well_formed_structure_is_malformed() {
    // The ciphertext field holds readable text (a whole number of AES blocks).
    let text = b"Lagebild GEHEIM: Truppen bei X.."; // 32 bytes
    let mut m = vec![0x03, 0x08, 0x00, 0x12, 0x20];
    m.extend_from_slice(text);
    m.extend([0x91; MAC_LEN]);
    m.extend([0xE5; SIGNATURE_LEN]);
    assert!(parse_megolm(&m).is_some(), "the structure itself is fine");
    let decoded = malformed(&megolm(&b64(&m)));
    assert!(decoded[0].windows(text.len()).any(|w| w == text));
    // Text in the signature bytes too.
    let mut m = megolm_by_hand();
    let n = m.len();
    m[n - 20..].copy_from_slice(b"GEHEIM GEHEIM GEHEIM");
    assert!(matches!(
        classify(&megolm(&b64(&m))),
        Ciphertext::Malformed { .. }
    ));
}

#[test]
fn base64_must_be_unpadded_canonical_standard() {
    let m = megolm_by_hand();
    let unpadded = b64(&m);
    assert_eq!(classify(&megolm(&unpadded)), Ciphertext::WellFormed);
    // Padded: not what libolm/vodozemac write; judged as text (the bytes are still decoded).
    let padded = base64::engine::general_purpose::STANDARD.encode(&m);
    assert_ne!(padded, unpadded, "the vector needs padding");
    assert_eq!(malformed(&megolm(&padded)), vec![m.clone()]);
    // URL-safe alphabet.
    let url = base64::engine::general_purpose::URL_SAFE_NO_PAD.encode(&m);
    assert_ne!(url, unpadded, "the vector has + or /");
    assert_eq!(malformed(&megolm(&url)), vec![m.clone()]);
    // Whitespace inside.
    let spaced = format!("{} {}", &unpadded[..10], &unpadded[10..]);
    assert_eq!(malformed(&megolm(&spaced)), vec![m]);
    // Not base64 at all: nothing decodes.
    assert!(malformed(&megolm("GEHEIM: Lagebericht!")).is_empty());
}

#[test]
fn plaintext_as_base64_is_malformed_and_decoded() {
    let hidden = b"Streng GEHEIM: Standort Bravo";
    let c = megolm(&b64(hidden));
    assert_eq!(malformed(&c), vec![hidden.to_vec()]);
}

#[test]
fn olm_messages_of_both_types_are_well_formed() {
    assert_eq!(classify(&olm_content(false)), Ciphertext::WellFormed);
    assert_eq!(classify(&olm_content(true)), Ciphertext::WellFormed);
    // By hand: a normal message with chain index 0.
    let mut m = vec![0x03, 0x0A, 0x20];
    m.extend([0xA1; KEY_LEN]);
    m.extend([0x10, 0x00, 0x22, 0x10]);
    m.extend([0xB2; 16]);
    m.extend([0xC3; MAC_LEN]);
    assert!(parse_olm_message(&m).is_some());
    assert_eq!(classify(&olm(1, &b64(&m))), Ciphertext::WellFormed);
    // The same as a pre-key message's payload.
    let mut p = vec![0x03];
    for tag in [0x0A, 0x12, 0x1A] {
        p.extend([tag, 0x20]);
        p.extend([0xD4; KEY_LEN]);
    }
    p.push(0x22);
    p.push(m.len() as u8);
    p.extend(&m);
    assert_eq!(classify(&olm(0, &b64(&p))), Ciphertext::WellFormed);
    // Types swapped: malformed.
    assert!(matches!(
        classify(&olm(0, &b64(&m))),
        Ciphertext::Malformed { .. }
    ));
    assert!(matches!(
        classify(&olm(1, &b64(&p))),
        Ciphertext::Malformed { .. }
    ));
}

#[test]
fn olm_structure_violations_are_malformed() {
    let normal = olm_message_bytes(7, 2);
    let pre = olm_pre_key_bytes(0, 1);
    let mut cases: Vec<(&str, u64, Vec<u8>)> = vec![
        ("normal truncated", 1, normal[..normal.len() - 1].to_vec()),
        ("normal extended", 1, [normal.as_slice(), &[0x88]].concat()),
        ("pre-key truncated", 0, pre[..pre.len() - 1].to_vec()),
        ("pre-key extended", 0, [pre.as_slice(), &[0x88]].concat()),
        ("type 2", 2, normal.clone()),
    ];
    let mut v = normal.clone();
    v[0] = 0x04;
    cases.push(("normal version 4", 1, v));
    let mut v = normal.clone();
    v[1] = 0x12;
    cases.push(("ratchet key tag", 1, v));
    let mut v = normal.clone();
    v[2] = 0x1F;
    cases.push(("ratchet key of 31 bytes", 1, v));
    let mut v = pre.clone();
    v[0] = 0x02;
    cases.push(("pre-key version 2", 0, v));
    let mut v = pre.clone();
    v[35] = 0x0A;
    cases.push(("base key tag", 0, v));
    // A pre-key message whose embedded message is broken (last byte of the MAC cut).
    let inner = &normal[..normal.len() - 1];
    let mut v = pre[..1 + 3 * 34].to_vec();
    v.push(0x22);
    v.push(inner.len() as u8);
    v.extend(inner);
    cases.push(("pre-key with broken inner message", 0, v));
    for (what, ty, bytes) in cases {
        let decoded = malformed(&olm(ty, &b64(&bytes)));
        assert_eq!(decoded, vec![bytes], "{what}");
    }
}

#[test]
fn olm_envelope_shape_is_checked() {
    let body = b64(&olm_message_bytes(0, 1));
    for c in [
        json!({"algorithm": OLM_V1, "ciphertext": {}}),
        json!({"algorithm": OLM_V1, "ciphertext": body}),
        json!({"algorithm": OLM_V1, "ciphertext": {"K": {"type": 1}}}),
        json!({"algorithm": OLM_V1, "ciphertext": {"K": {"type": "1", "body": body}}}),
        json!({"algorithm": OLM_V1, "ciphertext": {"K": {"type": 1, "body": body, "note": "GEHEIM"}}}),
        json!({"algorithm": OLM_V1, "ciphertext": {"K": {"type": 1, "body": body}, "L": {"type": 1, "body": "R0VIRUlN"}}}),
        json!({"algorithm": MEGOLM_V1, "ciphertext": {"K": {"type": 1, "body": body}}}),
        json!({"algorithm": "m.megolm.v2.aes-sha2", "ciphertext": b64(&megolm_by_hand())}),
        json!({"ciphertext": b64(&megolm_by_hand())}),
        json!({"algorithm": MEGOLM_V1, "ciphertext": 5}),
    ] {
        assert!(matches!(classify(&c), Ciphertext::Malformed { .. }), "{c}");
    }
    // Every body that decodes is handed on.
    let c = json!({"algorithm": OLM_V1, "ciphertext": {"K": {"type": 1, "body": body}, "L": {"type": 1, "body": "R0VIRUlN"}}});
    let d = malformed(&c);
    assert!(d.contains(&b"GEHEIM".to_vec()), "{d:?}");
}

#[test]
fn not_encrypted_content() {
    for c in [
        json!({}),
        json!({"body": "hi", "msgtype": "m.text"}),
        json!("string"),
        json!([1, 2]),
        // `m.room.encryption` state: an algorithm, no ciphertext.
        json!({"algorithm": MEGOLM_V1, "rotation_period_ms": 604800000}),
        // A cleartext key request's body names an algorithm too.
        json!({"action": "request", "body": {"algorithm": MEGOLM_V1, "room_id": "!r:x", "session_id": "s"}}),
    ] {
        assert_eq!(classify(&c), Ciphertext::NotEncrypted, "{c}");
    }
}

#[test]
fn encrypted_attachments() {
    let file = json!({"url": "mxc://a/b", "key": {"k": "x"}, "iv": "i", "hashes": {"sha256": "h"}, "v": "v2"});
    assert!(has_encrypted_file(
        &json!({"msgtype": "m.file", "body": "a.pdf", "file": file})
    ));
    assert!(has_encrypted_file(
        &json!({"msgtype": "m.image", "body": "a", "url": "mxc://a/c", "info": {"thumbnail_file": file}})
    ));
    assert!(has_encrypted_file(
        &json!({"msgtype": "m.text", "body": "* x", "m.new_content": {"msgtype": "m.file", "file": file}})
    ));
    assert!(!has_encrypted_file(
        &json!({"msgtype": "m.file", "body": "a.pdf", "url": "mxc://a/b"})
    ));
    assert!(!has_encrypted_file(
        &json!({"msgtype": "m.file", "file": {"url": "mxc://a/b", "key": {}}})
    ));
    assert!(!has_encrypted_file(&json!({"file": "mxc://a/b"})));
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(1000))]

    /// Random bytes, however long, are not a well-formed Megolm or Olm message (the version,
    /// tags and lengths all have to line up).
    #[test]
    fn random_bytes_are_not_well_formed(bytes in proptest::collection::vec(any::<u8>(), 0..400)) {
        let s = b64(&bytes);
        prop_assert_ne!(classify(&megolm(&s)), Ciphertext::WellFormed);
        prop_assert_ne!(classify(&olm(0, &s)), Ciphertext::WellFormed);
        prop_assert_ne!(classify(&olm(1, &s)), Ciphertext::WellFormed);
    }

    /// Random bytes after a correct prefix (version and first tag) are still not well-formed
    /// (a chance of about 10⁻⁷ per case that the rest lines up).
    #[test]
    fn random_tails_are_not_well_formed(tail in proptest::collection::vec(any::<u8>(), 0..300)) {
        let m = [&[0x03u8, 0x08][..], &tail].concat();
        prop_assert_ne!(classify(&megolm(&b64(&m))), Ciphertext::WellFormed);
        let o = [&[0x03u8, 0x0A, 0x20][..], &tail].concat();
        prop_assert_ne!(classify(&olm(1, &b64(&o))), Ciphertext::WellFormed);
        prop_assert_ne!(classify(&olm(0, &b64(&o))), Ciphertext::WellFormed);
    }

    /// Every truncation and every single-byte extension of a well-formed message is malformed.
    #[test]
    fn truncations_and_extensions_are_malformed(index in any::<u32>(), blocks in 1usize..8, cut in 1usize..50, extra in any::<u8>()) {
        let m = megolm_bytes(index, blocks);
        prop_assert_eq!(classify(&megolm(&b64(&m))), Ciphertext::WellFormed);
        let short = &m[..m.len().saturating_sub(cut)];
        prop_assert_eq!(malformed(&megolm(&b64(short))), vec![short.to_vec()]);
        let long = [m.as_slice(), &[extra]].concat();
        prop_assert_eq!(malformed(&megolm(&b64(&long))), vec![long.clone()]);
        let o = olm_pre_key_bytes(u64::from(index), blocks);
        prop_assert_eq!(classify(&olm(0, &b64(&o))), Ciphertext::WellFormed);
        let short = &o[..o.len().saturating_sub(cut)];
        let is_malformed = matches!(classify(&olm(0, &b64(short))), Ciphertext::Malformed { .. });
        prop_assert!(is_malformed);
    }
}
