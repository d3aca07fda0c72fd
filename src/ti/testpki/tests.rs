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

/// A hand-made chain: root → CAs (each with its path length) → leaf with `leaf_odd`.
struct Chain {
    anchors: TrustAnchors,
    leaf: Vec<u8>,
}

fn chain(
    ca_path_lens: &[Option<u8>],
    ca_odd: impl Fn(usize) -> Odd<'static>,
    leaf_odd: Odd<'_>,
) -> Chain {
    let validity = (now() - day(), now() + day());
    let root_key = random_key();
    let root_name = name("chain root");
    let root = certificate(CertSpec {
        serial: 1,
        issuer: &root_name,
        subject: &root_name,
        validity,
        subject_key: &root_key,
        issuer_key: &root_key,
        ca: Some(None),
        key_usage: KU_KEY_CERT_SIGN,
        odd: Odd::default(),
    });
    let mut anchors = TrustAnchors {
        roots: vec![root],
        intermediates: vec![],
    };
    let (mut issuer_key, mut issuer_name) = (root_key, root_name);
    for (i, len) in ca_path_lens.iter().enumerate() {
        let key = random_key();
        let subject = name(&format!("chain CA {i}"));
        anchors.intermediates.push(certificate(CertSpec {
            serial: 10 + i as u64,
            issuer: &issuer_name,
            subject: &subject,
            validity,
            subject_key: &key,
            issuer_key: &issuer_key,
            ca: Some(*len),
            key_usage: KU_KEY_CERT_SIGN,
            odd: ca_odd(i),
        }));
        (issuer_key, issuer_name) = (key, subject);
    }
    let leaf_key = random_key();
    let leaf = certificate(CertSpec {
        serial: 99,
        issuer: &issuer_name,
        subject: &name("chain leaf"),
        validity,
        subject_key: &leaf_key,
        issuer_key: &issuer_key,
        ca: None,
        key_usage: KU_DIGITAL_SIGNATURE,
        odd: leaf_odd,
    });
    Chain { anchors, leaf }
}

fn check(c: &Chain) -> Result<crate::ti::pki::VerifiedLeaf, PkiError> {
    c.anchors.verify_leaf_detailed(&c.leaf, now())
}

#[test]
fn path_len_constraint_is_enforced() {
    // root → CA0 (pathLen 1) → CA1 (pathLen 0) → leaf: fine
    let ok = chain(&[Some(1), Some(0)], |_| Odd::default(), Odd::default());
    assert_eq!(check(&ok).expect("within path lengths").path.len(), 3);
    // root → CA0 (pathLen 0) → CA1 → leaf: CA0 admits no CA below it
    let bad = chain(&[Some(0), None], |_| Odd::default(), Odd::default());
    let err = check(&bad).unwrap_err();
    assert!(
        matches!(err, PkiError::Constraint { ref reason, .. } if reason.contains("pathLenConstraint 0")),
        "{err}"
    );
}

#[test]
fn path_length_is_bounded() {
    // MAX_PATH certificates are fine; one more is not
    let n = crate::ti::pki::MAX_PATH - 2;
    let ok = chain(&vec![None; n], |_| Odd::default(), Odd::default());
    assert!(check(&ok).is_ok());
    let long = chain(&vec![None; n + 1], |_| Odd::default(), Odd::default());
    let err = check(&long).unwrap_err();
    assert!(matches!(err, PkiError::PathTooLong { .. }), "{err}");
}

#[test]
fn authority_key_identifier_must_match() {
    let c = chain(
        &[None],
        |_| Odd::default(),
        Odd {
            aki: Some(&[7u8; 20]),
            ..Odd::default()
        },
    );
    let err = check(&c).unwrap_err();
    assert!(matches!(err, PkiError::NoPath { .. }), "{err}");
}

#[test]
fn unknown_critical_extension_is_refused() {
    let ext = der::extension("1.2.3.4.5", true, &der::seq(&[]));
    let c = chain(
        &[None],
        |_| Odd::default(),
        Odd {
            extensions: vec![ext.clone()],
            ..Odd::default()
        },
    );
    let err = check(&c).unwrap_err();
    assert!(
        matches!(err, PkiError::Constraint { ref reason, .. } if reason.contains("1.2.3.4.5")),
        "{err}"
    );
    // on a CA too
    let c = chain(
        &[None],
        move |_| Odd {
            extensions: vec![ext.clone()],
            ..Odd::default()
        },
        Odd::default(),
    );
    assert!(matches!(check(&c), Err(PkiError::Constraint { .. })));
    // the same extension not critical is ignored
    let ext = der::extension("1.2.3.4.5", false, &der::seq(&[]));
    let c = chain(
        &[None],
        |_| Odd::default(),
        Odd {
            extensions: vec![ext],
            ..Odd::default()
        },
    );
    assert!(check(&c).is_ok());
}

#[test]
fn other_algorithms_are_unsupported() {
    // a CA whose key claims to be on P-256
    let c = chain(
        &[None],
        |_| Odd {
            curve: Some("1.2.840.10045.3.1.7"),
            ..Odd::default()
        },
        Odd::default(),
    );
    let err = check(&c).unwrap_err();
    assert!(
        matches!(err, PkiError::UnsupportedAlgorithm { ref algorithm, .. } if algorithm.contains("prime256v1")),
        "{err}"
    );
    // a leaf whose signature claims ecdsa-with-SHA384
    let c = chain(
        &[None],
        |_| Odd::default(),
        Odd {
            sig_alg: Some("1.2.840.10045.4.3.3"),
            ..Odd::default()
        },
    );
    let err = check(&c).unwrap_err();
    assert!(
        matches!(err, PkiError::UnsupportedAlgorithm { ref algorithm, .. } if algorithm.contains("SHA384")),
        "{err}"
    );
    // a leaf key on another curve
    let c = chain(
        &[None],
        |_| Odd::default(),
        Odd {
            curve: Some("1.3.132.0.34"),
            ..Odd::default()
        },
    );
    assert!(matches!(
        check(&c),
        Err(PkiError::UnsupportedAlgorithm { .. })
    ));
}

#[test]
fn signature_by_another_key_is_refused() {
    // the CA certificate is signed by a key that is not the root's
    let pki = TestPki::generate(now() - day(), now() + day());
    let other = TestPki::generate(now() - day(), now() + day());
    // same names, other keys: the other PKI's intermediate claims the same issuer name
    let mut anchors = pki.anchors();
    anchors.intermediates = other.anchors().intermediates;
    let err = anchors.verify_leaf(other.leaf_der(), now()).unwrap_err();
    // the AKI of the other intermediate names the other root's key: no path
    assert!(matches!(err, PkiError::NoPath { .. }), "{err}");
}
