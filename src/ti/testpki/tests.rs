use std::time::{Duration, SystemTime};

use super::*;
use crate::ti::jws::{verify_list, JwsError};
use crate::ti::pki::PkiError;

fn now() -> SystemTime {
    SystemTime::UNIX_EPOCH + Duration::from_secs(1_780_272_000)
}

fn day() -> Duration {
    Duration::from_secs(86_400)
}

fn opts() -> TestPkiOptions {
    TestPkiOptions::new(now() - day(), now() + day())
}

#[test]
fn certificates_parse_and_chain() {
    let pki = TestPki::generate(now() - day(), now() + day());
    let leaf = pki
        .anchors()
        .verify_leaf_detailed(pki.leaf_der(), now())
        .expect("chain");
    assert_eq!(leaf.public_key, public_sec1(&pki.leaf_key));
    assert!(leaf.subject.contains("list signer"), "{}", leaf.subject);
    assert_eq!(leaf.path.len(), 2);
    assert!(leaf.path[1].contains("root CA"));
}

#[test]
fn files_load_as_trust_anchors() {
    let pki = TestPki::generate(now() - day(), now() + day());
    let dir = tempfile::tempdir().expect("tempdir");
    let files = pki.write_files(dir.path()).expect("write");
    let anchors = TrustAnchors::load(&files.tsl_roots, std::slice::from_ref(&files.intermediate))
        .expect("load");
    assert_eq!(anchors.roots, vec![pki.root_der().to_vec()]);
    assert_eq!(anchors.intermediates, vec![pki.intermediate_der().to_vec()]);
    let jws = pki.sign_list(&TestPki::payload(3, &[("a.example", false)]));
    assert_eq!(
        verify_list(jws.as_bytes(), &anchors, now())
            .expect("valid")
            .version,
        3
    );
    // without the intermediate there is no path
    let no_inter = TrustAnchors::load(&files.tsl_roots, &[]).expect("load");
    let err = verify_list(jws.as_bytes(), &no_inter, now()).unwrap_err();
    assert!(
        matches!(err, JwsError::Chain(PkiError::NoPath { .. })),
        "{err}"
    );
}

#[test]
fn expired_leaf_is_refused() {
    let mut o = opts();
    o.leaf_not_after = Some(now() - Duration::from_secs(60));
    let pki = TestPki::generate_with(&o);
    let jws = pki.sign_list(&TestPki::payload(1, &[("a.example", false)]));
    let err = verify_list(jws.as_bytes(), &pki.anchors(), now()).unwrap_err();
    assert!(
        matches!(err, JwsError::Chain(PkiError::Expired { .. })),
        "{err}"
    );
}

#[test]
fn expired_root_is_refused() {
    // every certificate valid until yesterday but the leaf: the root's validity counts too
    let mut o = TestPkiOptions::new(now() - day() * 10, now() - day());
    o.leaf_not_after = Some(now() + day());
    let pki = TestPki::generate_with(&o);
    let jws = pki.sign_list(&TestPki::payload(1, &[("a.example", false)]));
    let err = verify_list(jws.as_bytes(), &pki.anchors(), now()).unwrap_err();
    assert!(
        matches!(err, JwsError::Chain(PkiError::Expired { .. })),
        "{err}"
    );
}

#[test]
fn leaf_without_digital_signature_is_refused() {
    let mut o = opts();
    o.leaf_digital_signature = false;
    let pki = TestPki::generate_with(&o);
    let jws = pki.sign_list(&TestPki::payload(1, &[("a.example", false)]));
    let err = verify_list(jws.as_bytes(), &pki.anchors(), now()).unwrap_err();
    assert!(
        matches!(err, JwsError::Chain(PkiError::Constraint { ref reason, .. }) if reason.contains("digitalSignature")),
        "{err}"
    );
}

#[test]
fn intermediate_without_ca_is_refused() {
    let mut o = opts();
    o.intermediate_is_ca = false;
    let pki = TestPki::generate_with(&o);
    let jws = pki.sign_list(&TestPki::payload(1, &[("a.example", false)]));
    let err = verify_list(jws.as_bytes(), &pki.anchors(), now()).unwrap_err();
    assert!(
        matches!(err, JwsError::Chain(PkiError::Constraint { ref reason, .. }) if reason.contains("not a CA")),
        "{err}"
    );
}

#[test]
fn far_validity_uses_generalized_time() {
    // 2051: GeneralizedTime in the certificate, still read back correctly
    let end = SystemTime::UNIX_EPOCH + Duration::from_secs(2_556_144_000);
    let pki = TestPki::generate(now() - day(), end);
    let leaf = pki
        .anchors()
        .verify_leaf_detailed(pki.leaf_der(), now())
        .expect("chain");
    assert!(leaf.not_after.starts_with("2051-"), "{}", leaf.not_after);
}

#[test]
fn tsl_json_has_the_gematik_shape() {
    let pki = TestPki::generate(now() - day(), now() + day());
    let v: serde_json::Value = serde_json::from_str(&pki.tsl_roots_json()).expect("json");
    let items = v.as_array().expect("array");
    assert_eq!(items.len(), 1);
    for key in ["cert", "cn", "name", "next", "prev", "nva", "nvb", "ski"] {
        assert!(items[0].get(key).is_some(), "{key}");
    }
}

#[test]
fn der_lengths_and_integers() {
    assert_eq!(der::tlv(0x04, &[0; 3]), vec![0x04, 3, 0, 0, 0]);
    let long = der::tlv(0x04, &[0; 300]);
    assert_eq!(&long[..4], &[0x04, 0x82, 0x01, 0x2c]);
    assert_eq!(der::integer(0), vec![0x02, 1, 0]);
    assert_eq!(der::integer(128), vec![0x02, 2, 0, 0x80]);
    assert_eq!(
        der::oid("1.2.840.10045.4.3.2"),
        vec![0x06, 8, 0x2a, 0x86, 0x48, 0xce, 0x3d, 4, 3, 2]
    );
}
