use std::path::PathBuf;
use std::time::{Duration, SystemTime};

use super::*;

fn fixture(name: &str) -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR"))
        .join("tests/fixtures/ti-messenger")
        .join(name)
}

fn pinned() -> SystemTime {
    SystemTime::UNIX_EPOCH + Duration::from_secs(1_780_272_000)
}

#[test]
fn gematik_tsl_roots_and_cross_certificates() {
    let anchors = TrustAnchors::load(&fixture("tsl_roots_test.json"), &[]).expect("load");
    assert_eq!(anchors.roots.len(), 7);
    // non-empty next/prev values of the file
    let json: Vec<serde_json::Value> =
        serde_json::from_slice(&std::fs::read(fixture("tsl_roots_test.json")).expect("read"))
            .expect("json");
    let cross = json
        .iter()
        .flat_map(|i| [&i["next"], &i["prev"]])
        .filter(|v| v.as_str().is_some_and(|s| !s.is_empty()))
        .count();
    assert_eq!(anchors.intermediates.len(), cross);
}

#[test]
fn komp_ca50_chains_to_rca4() {
    let anchors = TrustAnchors::load(&fixture("tsl_roots_test.json"), &[]).expect("load");
    let ca50 = std::fs::read(fixture("GEM.KOMP-CA50-TEST-ONLY.der")).expect("read");
    // a CA certificate is not a list signer
    let err = anchors.verify_leaf(&ca50, pinned()).unwrap_err();
    assert!(matches!(err, PkiError::Constraint { .. }), "{err}");
}

#[test]
fn load_errors_name_the_file() {
    let dir = tempfile::tempdir().expect("tempdir");
    let missing = dir.path().join("nope.json");
    let err = TrustAnchors::load(&missing, &[]).unwrap_err();
    assert!(matches!(err, PkiError::Read { .. }), "{err}");
    assert!(err.to_string().contains("nope.json"), "{err}");

    for (body, why) in [
        ("{}", "not a JSON array"),
        ("[]", "no root"),
        ("[{\"cert\": \"!!!\"}]", "not base64"),
        ("[{\"cert\": \"AAAA\"}]", "not a readable X.509"),
        ("[{\"name\": \"x\"}]", "cert is not"),
    ] {
        let f = dir.path().join("tsl.json");
        std::fs::write(&f, body).expect("write");
        let err = TrustAnchors::load(&f, &[]).unwrap_err();
        assert!(matches!(err, PkiError::TslFormat { .. }), "{body}: {err}");
        assert!(err.to_string().contains(why), "{body}: {err}");
    }

    let bad_der = dir.path().join("bad.der");
    std::fs::write(&bad_der, b"not a certificate").expect("write");
    let err = TrustAnchors::load(&fixture("tsl_roots_test.json"), &[bad_der]).unwrap_err();
    assert!(matches!(err, PkiError::Parse { .. }), "{err}");
}

#[test]
fn empty_anchors_refuse() {
    let anchors = TrustAnchors::default();
    let ca50 = std::fs::read(fixture("GEM.KOMP-CA50-TEST-ONLY.der")).expect("read");
    assert!(matches!(
        anchors.verify_leaf(&ca50, pinned()),
        Err(PkiError::NoRoots)
    ));
}

#[test]
fn rfc3339_text() {
    assert_eq!(rfc3339(0), "1970-01-01T00:00:00Z");
    assert_eq!(rfc3339(1_832_976_000), "2028-02-01T00:00:00Z");
}
