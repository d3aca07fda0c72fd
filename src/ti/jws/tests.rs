use std::path::PathBuf;
use std::time::{Duration, SystemTime};

use base64::Engine as _;

use super::*;
use crate::ti::testpki::TestPki;

fn fixture(name: &str) -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR"))
        .join("tests/fixtures/ti-messenger")
        .join(name)
}

fn gematik() -> TrustAnchors {
    TrustAnchors::load(
        &fixture("tsl_roots_test.json"),
        &[fixture("GEM.KOMP-CA50-TEST-ONLY.der")],
    )
    .expect("load gematik anchors")
}

fn list_jws() -> Vec<u8> {
    std::fs::read(fixture("federation-list-v956.jws")).expect("read list")
}

/// 2026-06-01T00:00:00Z: inside the signer's validity (2023-01-25 … 2028-01-24).
fn pinned() -> SystemTime {
    SystemTime::UNIX_EPOCH + Duration::from_secs(1_780_272_000)
}

/// The error of a JWS that must be refused (without printing a whole list on failure).
fn refused(jws: &[u8], what: &str) -> JwsError {
    match verify_list(jws, &gematik(), pinned()) {
        Ok(l) => panic!("{what}: accepted (version {})", l.version),
        Err(e) => e,
    }
}

fn b64url() -> base64::engine::GeneralPurpose {
    base64::engine::general_purpose::URL_SAFE_NO_PAD
}

fn parts(jws: &[u8]) -> Vec<String> {
    std::str::from_utf8(jws)
        .expect("ascii")
        .trim_end()
        .split('.')
        .map(str::to_owned)
        .collect()
}

#[test]
fn gematik_list_verifies() {
    let v = verify_list_detailed(&list_jws(), &gematik(), pinned()).expect("valid list");
    assert_eq!(v.list.version, 956);
    assert_eq!(v.list.entry_count(), 175);
    // tsitimdev2.tim-referenz.tim.fg1.ffm.osc.live is listed three times
    assert_eq!(v.list.len(), 173);
    assert_eq!(v.list.skipped(), 0);
    assert!(
        v.signer.subject.contains("VZD-FHIR-FList-Signer"),
        "{}",
        v.signer.subject
    );
    assert_eq!(v.signer.not_after, "2028-01-24T10:43:55Z");
    assert_eq!(v.signer.path.len(), 2, "{:?}", v.signer.path);
    assert!(v.signer.path[0].contains("KOMP-CA50"));
    assert!(v.signer.path[1].contains("RCA4"));
    assert!(v.list.lookup("tim-test.attrian.com:443").is_some());
}

#[test]
fn trailing_newline_tolerated_but_not_inner_whitespace() {
    let mut jws = list_jws();
    jws.extend_from_slice(b"\r\n\n");
    assert!(verify_list(&jws, &gematik(), pinned()).is_ok());
    let mut p = parts(&list_jws());
    p[1].insert(10, '\n');
    let err = refused(p.join(".").as_bytes(), "");
    assert!(matches!(err, JwsError::Malformed(_)), "{err}");
}

#[test]
fn changed_payload_byte_breaks_the_signature() {
    let p = parts(&list_jws());
    let mut payload = b64url().decode(&p[1]).expect("payload");
    let at = payload
        .windows(3)
        .position(|w| w == b"956")
        .expect("version in payload");
    payload[at + 2] = b'7';
    let tampered = format!("{}.{}.{}", p[0], b64url().encode(&payload), p[2]);
    let err = refused(tampered.as_bytes(), "");
    assert!(matches!(err, JwsError::Signature), "{err}");
    // a flipped signature byte too
    let mut sig = b64url().decode(&p[2]).expect("sig");
    sig[10] ^= 1;
    let tampered = format!("{}.{}.{}", p[0], p[1], b64url().encode(&sig));
    let err = refused(tampered.as_bytes(), "");
    assert!(matches!(err, JwsError::Signature), "{err}");
}

#[test]
fn root_list_without_rca4_has_no_path() {
    let json = std::fs::read(fixture("tsl_roots_test.json")).expect("tsl");
    let mut items: Vec<serde_json::Value> = serde_json::from_slice(&json).expect("json");
    let before = items.len();
    items.retain(|i| i["cn"] != "GEM.RCA4 TEST-ONLY");
    assert_eq!(items.len(), before - 1);
    // the cross certificates that name RCA4 go too (they would let RCA3/RCA5 vouch for RCA4)
    for i in items.iter_mut() {
        for k in ["next", "prev"] {
            i[k] = serde_json::Value::String(String::new());
        }
    }
    let mut anchors =
        TrustAnchors::from_tsl_json(&serde_json::to_vec(&items).expect("ser")).expect("tsl");
    anchors
        .intermediates
        .push(std::fs::read(fixture("GEM.KOMP-CA50-TEST-ONLY.der")).expect("ca50"));
    let err = verify_list(&list_jws(), &anchors, pinned()).unwrap_err();
    assert!(
        matches!(err, JwsError::Chain(PkiError::NoPath { .. })),
        "{err}"
    );
    assert!(
        err.to_string().contains("no path to a trusted root"),
        "{err}"
    );
}

/// The gematik anchors with only the named root kept as a root (all cross certificates stay).
fn only_root(cn: &str) -> TrustAnchors {
    let json = std::fs::read(fixture("tsl_roots_test.json")).expect("tsl");
    let items: Vec<serde_json::Value> = serde_json::from_slice(&json).expect("json");
    let one: Vec<serde_json::Value> = items.into_iter().filter(|i| i["cn"] == cn).collect();
    assert_eq!(one.len(), 1, "{cn}");
    let mut anchors =
        TrustAnchors::from_tsl_json(&serde_json::to_vec(&one).expect("ser")).expect("tsl");
    anchors.intermediates = gematik().intermediates;
    anchors
}

#[test]
fn cross_certificates_reach_rca4_from_a_neighbour_root() {
    // KOMP-CA50 → RCA4 (cross certificate issued by RCA5, "next" of RCA4) → RCA5
    let v = verify_list_detailed(&list_jws(), &only_root("GEM.RCA5 TEST-ONLY"), pinned())
        .expect("path through RCA5");
    assert_eq!(v.signer.path.len(), 3, "{:?}", v.signer.path);
    assert!(v.signer.path[1].contains("RCA4"));
    assert!(v.signer.path[2].contains("RCA5"));
    // … and through RCA3 ("prev" of RCA4) while RCA3 is valid (until 2027-08-09)
    let v = verify_list_detailed(&list_jws(), &only_root("GEM.RCA3 TEST-ONLY"), pinned())
        .expect("path through RCA3");
    assert!(v.signer.path[2].contains("RCA3"));
    let after_rca3 = SystemTime::UNIX_EPOCH + Duration::from_secs(1_800_000_000); // 2027-01-15
    assert!(verify_list(&list_jws(), &only_root("GEM.RCA3 TEST-ONLY"), after_rca3).is_ok());
    let late = SystemTime::UNIX_EPOCH + Duration::from_secs(1_820_000_000); // 2027-09-04
    let err = verify_list(&list_jws(), &only_root("GEM.RCA3 TEST-ONLY"), late).unwrap_err();
    assert!(
        matches!(err, JwsError::Chain(PkiError::Expired { .. })),
        "{err}"
    );
    // RCA8 is two cross certificates away through RCA6, whose key is RSA: refused
    let err = verify_list(&list_jws(), &only_root("GEM.RCA8 TEST-ONLY"), pinned()).unwrap_err();
    assert!(matches!(err, JwsError::Chain(_)), "{err}");
}

#[test]
fn test_pki_roots_do_not_accept_gematik_list() {
    let pki = TestPki::generate(
        pinned() - Duration::from_secs(86_400),
        pinned() + Duration::from_secs(86_400),
    );
    let err = verify_list(&list_jws(), &pki.anchors(), pinned()).unwrap_err();
    assert!(matches!(err, JwsError::Chain(_)), "{err}");
}

#[test]
fn after_leaf_expiry_is_invalid() {
    // 2028-02-01T00:00:00Z
    let at = SystemTime::UNIX_EPOCH + Duration::from_secs(1_832_976_000);
    let err = verify_list(&list_jws(), &gematik(), at).unwrap_err();
    assert!(
        matches!(err, JwsError::Chain(PkiError::Expired { .. })),
        "{err}"
    );
    assert!(err.to_string().contains("expired at 2028-01-24"), "{err}");
    // and before it started
    let at = SystemTime::UNIX_EPOCH + Duration::from_secs(1_600_000_000);
    let err = verify_list(&list_jws(), &gematik(), at).unwrap_err();
    assert!(
        matches!(err, JwsError::Chain(PkiError::NotYetValid { .. })),
        "{err}"
    );
}

fn with_header(jws: &[u8], edit: impl Fn(&mut serde_json::Value)) -> String {
    let p = parts(jws);
    let mut header: serde_json::Value =
        serde_json::from_slice(&b64url().decode(&p[0]).expect("hdr")).expect("json");
    edit(&mut header);
    let h = b64url().encode(serde_json::to_vec(&header).expect("ser"));
    format!("{h}.{}.{}", p[1], p[2])
}

#[test]
fn other_algorithms_are_refused() {
    for alg in ["ES256", "none", "bp256r1", "BP256R1 ", "HS256"] {
        let jws = with_header(&list_jws(), |h| h["alg"] = alg.into());
        let err = refused(jws.as_bytes(), "");
        assert!(
            matches!(err, JwsError::Algorithm(ref a) if a == alg),
            "{alg}: {err}"
        );
    }
    let jws = with_header(&list_jws(), |h| {
        h.as_object_mut().expect("obj").remove("alg");
    });
    let err = refused(jws.as_bytes(), "");
    assert!(matches!(err, JwsError::Algorithm(_)), "{err}");
    // alg:none with an empty signature part: malformed before anything else
    let p = parts(&list_jws());
    let none = with_header(&list_jws(), |h| h["alg"] = "none".into());
    let none = format!("{}.{}.", parts(none.as_bytes())[0], p[1]);
    assert!(verify_list(none.as_bytes(), &gematik(), pinned()).is_err());
}

#[test]
fn crit_and_missing_x5c_are_refused() {
    let jws = with_header(&list_jws(), |h| h["crit"] = serde_json::json!(["exp"]));
    let err = refused(jws.as_bytes(), "");
    assert!(
        matches!(err, JwsError::Malformed(ref m) if m.contains("crit")),
        "{err}"
    );
    let jws = with_header(&list_jws(), |h| {
        h.as_object_mut().expect("obj").remove("x5c");
    });
    let err = refused(jws.as_bytes(), "");
    assert!(
        matches!(err, JwsError::Malformed(ref m) if m.contains("x5c")),
        "{err}"
    );
}

#[test]
fn malformed_compact_forms_are_refused() {
    let jws = list_jws();
    let text = std::str::from_utf8(&jws)
        .expect("ascii")
        .trim_end()
        .to_owned();
    let p = parts(&jws);
    let padded_sig = base64::engine::general_purpose::URL_SAFE.encode(
        b64url()
            .decode(&p[2])
            .expect("sig")
            .iter()
            .chain([0u8].iter())
            .copied()
            .collect::<Vec<u8>>(),
    );
    assert!(padded_sig.ends_with('='));
    let cases: Vec<(String, &str)> = vec![
        (text[..text.len() / 2].to_owned(), "truncated"),
        (format!("{}.{}", p[0], p[1]), "two parts"),
        (format!("{}.{}.{}.{}", p[0], p[1], p[2], p[2]), "four parts"),
        (format!("{}.{}.{}=", p[0], p[1], p[2]), "padding"),
        (
            format!("{}.{}.{}", p[0], p[1], padded_sig),
            "padded 65-byte signature",
        ),
        (
            format!("{}.{}.{}", p[0], p[1], &p[2][..p[2].len() - 4]),
            "short signature",
        ),
        (
            format!("{}.+{}.{}", p[0], &p[1][1..], p[2]),
            "standard alphabet",
        ),
        (
            format!("{}.{}.{}", p[0], p[1], p[2].replace(['-', '_'], "/")),
            "standard alphabet in signature",
        ),
        (format!("{}..{}", p[0], p[2]), "empty payload"),
        (String::new(), "empty"),
        (format!(" {text}"), "leading space"),
    ];
    for (jws, what) in cases {
        let err = refused(jws.as_bytes(), what);
        assert!(
            matches!(err, JwsError::Malformed(_) | JwsError::Signature),
            "{what}: {err}"
        );
    }
    // a truncated signature is malformed, not a signature failure
    let short = format!("{}.{}.{}", p[0], p[1], &p[2][..p[2].len() - 4]);
    assert!(matches!(
        verify_list(short.as_bytes(), &gematik(), pinned()),
        Err(JwsError::Malformed(_))
    ));
}

#[test]
fn test_pki_round_trip() {
    let nb = pinned() - Duration::from_secs(86_400);
    let na = pinned() + Duration::from_secs(86_400);
    let pki = TestPki::generate(nb, na);
    let payload = TestPki::payload(7, &[("hs1.example", false), ("HS2.example.", true)]);
    let jws = pki.sign_list(&payload);
    let list = verify_list(jws.as_bytes(), &pki.anchors(), pinned()).expect("own roots");
    assert_eq!(list.version, 7);
    assert_eq!(list.len(), 2);
    assert!(list
        .lookup("hs2.example:8448")
        .is_some_and(|e| e.is_insurance));
    assert!(list.lookup("hs1.example").is_some_and(|e| !e.is_insurance));
    // not with gematik's roots
    let err = refused(jws.as_bytes(), "");
    assert!(matches!(err, JwsError::Chain(_)), "{err}");
    // not with another test PKI's roots
    let other = TestPki::generate(nb, na);
    let err = verify_list(jws.as_bytes(), &other.anchors(), pinned()).unwrap_err();
    assert!(matches!(err, JwsError::Chain(_)), "{err}");
    // not after it expired
    let err = verify_list(jws.as_bytes(), &pki.anchors(), na + Duration::from_secs(1)).unwrap_err();
    assert!(
        matches!(err, JwsError::Chain(PkiError::Expired { .. })),
        "{err}"
    );
    // a payload the verifier cannot read: signature and chain fine, payload error
    let jws = pki.sign_raw(
        &serde_json::json!({"alg": "BP256R1", "x5c": [base64::engine::general_purpose::STANDARD.encode(pki.leaf_der())]}),
        b"[1,2]",
    );
    let err = verify_list(jws.as_bytes(), &pki.anchors(), pinned()).unwrap_err();
    assert!(matches!(err, JwsError::Payload(_)), "{err}");
}

#[test]
fn signer_key_of_x5c_is_what_counts() {
    // A list signed by one test PKI's leaf but carrying another's certificate.
    let nb = pinned() - Duration::from_secs(86_400);
    let na = pinned() + Duration::from_secs(86_400);
    let a = TestPki::generate(nb, na);
    let b = TestPki::generate(nb, na);
    let jws = a.sign_raw(
        &serde_json::json!({"alg": "BP256R1", "x5c": [base64::engine::general_purpose::STANDARD.encode(b.leaf_der())]}),
        &serde_json::to_vec(&TestPki::payload(1, &[("x.example", false)])).expect("ser"),
    );
    let err = verify_list(jws.as_bytes(), &b.anchors(), pinned()).unwrap_err();
    assert!(matches!(err, JwsError::Signature), "{err}");
}

#[test]
fn oversized_and_bad_x5c_are_refused() {
    let mut big = list_jws();
    big.resize(MAX_JWS_BYTES + 1, b'A');
    assert!(matches!(refused(&big, "big"), JwsError::Malformed(m) if m.contains("larger")));
    let jws = with_header(&list_jws(), |h| h["x5c"] = serde_json::json!(["AAAA"]));
    let err = refused(jws.as_bytes(), "x5c not a certificate");
    assert!(
        matches!(err, JwsError::Chain(PkiError::Parse { .. })),
        "{err}"
    );
    let jws = with_header(&list_jws(), |h| {
        h["x5c"] = serde_json::json!(["not base64!"])
    });
    let err = refused(jws.as_bytes(), "x5c not base64");
    assert!(matches!(err, JwsError::Malformed(_)), "{err}");
    // the header as a JSON array
    let p = parts(&list_jws());
    let jws = format!("{}.{}.{}", b64url().encode(b"[]"), p[1], p[2]);
    assert!(matches!(
        refused(jws.as_bytes(), "array header"),
        JwsError::Malformed(_)
    ));
}
