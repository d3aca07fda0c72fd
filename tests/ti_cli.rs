//! `grenzwacht ti verify-list`, run as the real binary on gematik's test list.
use std::path::PathBuf;
use std::process::{Command, Output};

use base64::Engine as _;

fn fx(name: &str) -> String {
    PathBuf::from(env!("CARGO_MANIFEST_DIR"))
        .join("tests/fixtures/ti-messenger")
        .join(name)
        .display()
        .to_string()
}

fn run(args: &[&str]) -> Output {
    Command::new(env!("CARGO_BIN_EXE_grenzwacht"))
        .args(args)
        .output()
        .expect("run grenzwacht")
}

fn out(o: &Output) -> String {
    String::from_utf8_lossy(&o.stdout).into_owned()
}

fn err(o: &Output) -> String {
    String::from_utf8_lossy(&o.stderr).into_owned()
}

fn verify(jws: &str, extra: &[&str]) -> Output {
    let roots = fx("tsl_roots_test.json");
    let inter = fx("GEM.KOMP-CA50-TEST-ONLY.der");
    let mut args = vec![
        "ti",
        "verify-list",
        "--jws",
        jws,
        "--roots",
        &roots,
        "--intermediate",
        &inter,
    ];
    args.extend_from_slice(extra);
    run(&args)
}

const AT: &str = "2026-06-01T00:00:00Z";

#[test]
fn valid_list_exit_0_with_version_and_count() {
    let o = verify(&fx("federation-list-v956.jws"), &["--at", AT]);
    assert_eq!(o.status.code(), Some(0), "{}{}", out(&o), err(&o));
    let text = out(&o);
    assert!(text.contains("version 956"), "{text}");
    assert!(text.contains("175 entries"), "{text}");
    assert!(text.contains("VZD-FHIR-FList-Signer"), "{text}");
    assert!(text.contains("2028-01-24T10:43:55Z"), "{text}");

    let o = verify(
        &fx("federation-list-v956.jws"),
        &["--at", AT, "--json", "--domains"],
    );
    assert_eq!(o.status.code(), Some(0), "{}", err(&o));
    let v: serde_json::Value = serde_json::from_str(out(&o).trim()).expect("json");
    assert_eq!(v["valid"], true);
    assert_eq!(v["version"], 956);
    assert_eq!(v["entries"], 175);
    assert_eq!(v["domains"].as_array().map(Vec::len), Some(173));
}

#[test]
fn tampered_copy_exit_1_with_reason() {
    let dir = tempfile::tempdir().expect("tempdir");
    let text = std::fs::read_to_string(fx("federation-list-v956.jws")).expect("read");
    let parts: Vec<&str> = text.trim_end().split('.').collect();
    let b64 = base64::engine::general_purpose::URL_SAFE_NO_PAD;
    let mut payload = b64.decode(parts[1]).expect("payload");
    let at = payload
        .windows(6)
        .position(|w| w == b"attria")
        .expect("a domain");
    payload[at] = b'e'; // tim-test.attrian.com → tim-test.ettrian.com
    let tampered = dir.path().join("tampered.jws");
    std::fs::write(
        &tampered,
        format!("{}.{}.{}\n", parts[0], b64.encode(&payload), parts[2]),
    )
    .expect("write");
    let o = verify(&tampered.display().to_string(), &["--at", AT]);
    assert_eq!(o.status.code(), Some(1), "{}{}", out(&o), err(&o));
    assert!(err(&o).starts_with("invalid: "), "{}", err(&o));
    assert!(err(&o).contains("signature"), "{}", err(&o));

    let o = verify(&tampered.display().to_string(), &["--at", AT, "--json"]);
    assert_eq!(o.status.code(), Some(1));
    let v: serde_json::Value = serde_json::from_str(out(&o).trim()).expect("json");
    assert_eq!(v["valid"], false);
    assert_eq!(v["kind"], "signature");

    // after the signer certificate expired
    let o = verify(
        &fx("federation-list-v956.jws"),
        &["--at", "2028-02-01T00:00:00Z"],
    );
    assert_eq!(o.status.code(), Some(1));
    assert!(err(&o).contains("expired at 2028-01-24"), "{}", err(&o));
}

#[test]
fn missing_file_and_usage_errors_exit_2() {
    let o = verify("/nonexistent/list.jws", &["--at", AT]);
    assert_eq!(o.status.code(), Some(2), "{}", err(&o));
    assert!(err(&o).contains("/nonexistent/list.jws"), "{}", err(&o));

    let jws = fx("federation-list-v956.jws");
    let o = run(&[
        "ti",
        "verify-list",
        "--jws",
        &jws,
        "--roots",
        "/nonexistent/roots.json",
    ]);
    assert_eq!(o.status.code(), Some(2), "{}", err(&o));

    let o = verify(&jws, &["--at", "yesterday"]);
    assert_eq!(o.status.code(), Some(2), "{}", err(&o));
    let o = run(&["ti", "verify-list", "--jws", &jws]);
    assert_eq!(o.status.code(), Some(2), "{}", err(&o));
}

#[test]
fn help_describes_every_option() {
    let o = run(&["ti", "verify-list", "--help"]);
    assert_eq!(o.status.code(), Some(0));
    let text = out(&o);
    for opt in [
        "--jws",
        "--roots",
        "--intermediate",
        "--at",
        "--json",
        "--domains",
    ] {
        let line = text
            .lines()
            .find(|l| l.trim_start().starts_with(opt))
            .unwrap_or_else(|| panic!("{opt} missing: {text}"));
        assert!(
            line.trim().len() > opt.len() + 8,
            "{opt} has no help: {line}"
        );
    }
}
