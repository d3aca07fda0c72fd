//! The `spif` / `label` subcommands, run as the real binary.
use std::path::PathBuf;
use std::process::{Command, Output};

fn root() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR"))
}

fn p(rel: &str) -> String {
    root().join(rel).display().to_string()
}

fn run(args: &[&str]) -> Output {
    Command::new(env!("CARGO_BIN_EXE_grenzwacht"))
        .args(args)
        .output()
        .expect("run grenzwacht")
}

fn stdout(o: &Output) -> String {
    String::from_utf8_lossy(&o.stdout).trim_end().to_string()
}

fn json(o: &Output) -> serde_json::Value {
    serde_json::from_str(&stdout(o)).unwrap_or_else(|e| panic!("not JSON ({e}): {}", stdout(o)))
}

const DEU: &str = "spif/deu-vs.xml";
const NATO: &str = "spif/nato.xml";
const FX: &str = "tests/fixtures/spiffing";

#[test]
fn spif_check_exit_codes_and_diagnostics() {
    let ok = run(&["spif", "check", &p(DEU), &p(NATO)]);
    assert!(
        ok.status.success(),
        "{}",
        String::from_utf8_lossy(&ok.stderr)
    );
    assert!(stdout(&ok).contains("OK (policy DEU-VS 1.3.6.1.4.1.99999.1.1)"));
    let bad = run(&["spif", "check", &p(&format!("{FX}/food-policy-borked.xml"))]);
    assert_eq!(bad.status.code(), Some(1));
    let err = String::from_utf8_lossy(&bad.stderr);
    assert!(
        err.contains("SPIF025")
            && err.contains("Duplicate excluded classification in category")
            && err.contains("line 38"),
        "{err}"
    );
    let truncated = run(&["spif", "check", &p(&format!("{FX}/bsi-commercial.xml"))]);
    assert_eq!(truncated.status.code(), Some(1));
    let missing = run(&["spif", "check", "/nonexistent.xml"]);
    assert_eq!(missing.status.code(), Some(1));
}

#[test]
fn label_marking_selects_spif_by_policy_and_language() {
    let spifs = ["--spif", &p(DEU), "--spif", &p(NATO)];
    let mk = |label: &str, lang: Option<&str>| {
        let mut a: Vec<&str> = vec!["label", "marking"];
        a.extend_from_slice(&spifs);
        let l = p(label);
        a.extend_from_slice(&["--label", &l]);
        if let Some(lang) = lang {
            a.extend_from_slice(&["--lang", lang]);
        }
        let o = run(&a);
        assert!(o.status.success(), "{}", String::from_utf8_lossy(&o.stderr));
        stdout(&o)
    };
    assert_eq!(
        mk("tests/fixtures/spif-labels/geheim-deu.json", None),
        "GEHEIM - Freigabe an DEU"
    );
    assert_eq!(
        mk("tests/fixtures/spif-labels/geheim-deu.json", Some("en")),
        "SECRET (GEHEIM) - Releasable to Germany"
    );
    assert_eq!(
        mk("tests/fixtures/spif-labels/nfd.nato", None),
        "VS-NUR FÜR DEN DIENSTGEBRAUCH"
    );
    // A NATO 4774 label from the conformance data against the shipped NATO SPIF, in French.
    assert_eq!(
        mk(&format!("{FX}/nato-4774-17-1.nato"), Some("fr-CA")),
        "NATO SANS CLASSIFICATION Communicable a ISAF, KFOR, RESOLUTE SUPPORT"
    );
    // Unknown policy: non-zero with the reason.
    let o = run(&[
        "label",
        "marking",
        "--spif",
        &p(DEU),
        "--label",
        &p(&format!("{FX}/nato-4774-17-2.xml")),
    ]);
    assert!(!o.status.success());
    assert!(String::from_utf8_lossy(&o.stderr).contains("Unknown policy id: 1.3.26.1.3.1"));
}

#[test]
fn label_check_json() {
    let check = |label: &str, clearance: Option<&str>| {
        let l = p(label);
        let c = clearance.map(p);
        let mut a = vec![
            "label", "check", "--spif", DEU, "--spif", NATO, "--label", &l,
        ];
        if let Some(c) = &c {
            a.extend_from_slice(&["--clearance", c]);
        }
        let o = Command::new(env!("CARGO_BIN_EXE_grenzwacht"))
            .current_dir(root())
            .args(&a)
            .output()
            .unwrap();
        assert!(o.status.success(), "{}", String::from_utf8_lossy(&o.stderr));
        json(&o)
    };
    let clr = Some("tests/fixtures/spif-labels/clearance-nfd-deu.json");
    let v = check("tests/fixtures/spif-labels/nfd.nato", clr);
    assert_eq!(
        v,
        serde_json::json!({"valid": true, "error": null, "access": "grant"})
    );
    let v = check("tests/fixtures/spif-labels/geheim-deu.json", clr);
    assert_eq!(
        v,
        serde_json::json!({"valid": true, "error": null, "access": "deny"})
    );
    let v = check("tests/fixtures/spif-labels/geheim-deu.json", None);
    assert_eq!(v["access"], serde_json::Value::Null);
    // Invalid under the food policy (Chocolate excludes Commodity).
    let o = run(&[
        "label",
        "check",
        "--spif",
        &p(&format!("{FX}/food-policy.xml")),
        "--label",
        &p(&format!("{FX}/food-label-cheap-milk-chocolate.xml")),
        "--clearance",
        &p(&format!("{FX}/food-clearance-all-okay.xml")),
    ]);
    let v = json(&o);
    assert_eq!(v["valid"], false);
    assert_eq!(v["access"], "deny");
    assert!(v["error"].as_str().unwrap().contains("Chocolate"), "{v}");
}

#[test]
fn label_translate() {
    let o = run(&[
        "label",
        "translate",
        "--spif",
        &p(DEU),
        "--spif",
        &p(NATO),
        "--label",
        &p("tests/fixtures/spif-labels/geheim-deu.json"),
        "--to",
        "1.3.26.1.3.1",
    ]);
    assert!(o.status.success(), "{}", String::from_utf8_lossy(&o.stderr));
    let v = json(&o);
    assert_eq!(v["marking"], "NATO SECRET Releasable to Germany");
    let xml = v["label"].as_str().unwrap();
    assert!(
        xml.contains("<Classification>SECRET</Classification>")
            && xml.contains("urn:oid:1.3.26.1.3.1"),
        "{xml}"
    );
    // The 4774 output is itself a label the CLI reads back, and translates back to GEHEIM.
    let dir = tempfile::tempdir().unwrap();
    let f = dir.path().join("nato-secret.nato");
    std::fs::write(&f, xml).unwrap();
    let back = run(&[
        "label",
        "translate",
        "--spif",
        &p(DEU),
        "--spif",
        &p(NATO),
        "--label",
        &f.display().to_string(),
        "--to",
        "1.3.6.1.4.1.99999.1.1",
    ]);
    assert!(
        back.status.success(),
        "{}",
        String::from_utf8_lossy(&back.stderr)
    );
    assert_eq!(json(&back)["marking"], "GEHEIM - Freigabe an DEU");
    // Fail closed: EU release has no NATO equivalent.
    let o = run(&[
        "label",
        "translate",
        "--spif",
        &p(DEU),
        "--spif",
        &p(NATO),
        "--label",
        &p("tests/fixtures/spif-labels/geheim-eu.json"),
        "--to",
        "1.3.26.1.3.1",
    ]);
    assert_eq!(o.status.code(), Some(1));
    assert!(o.stdout.is_empty());
    assert!(
        String::from_utf8_lossy(&o.stderr).contains("No equivalence to 'EU'"),
        "{}",
        String::from_utf8_lossy(&o.stderr)
    );
}
