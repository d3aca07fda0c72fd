//! `[labels] marking_detector = "dlp"`: the DLP rules with a `classification` as the label
//! layer's marking detector — on the guard (start-up, reload) and through `grenzwacht check`
//! (the real binary).
use std::path::Path;
use std::process::Command;

use grenzwacht::config::Config;
use grenzwacht::federation::catalog;
use grenzwacht::federation::pdu::PduView;
use grenzwacht::policy::{Direction, ExchangeCtx, PduVerdict, Policy};
use grenzwacht::proxy::guard::Guard;
use grenzwacht::store::Store;
use serde_json::{json, value::RawValue};

const BIN: &str = env!("CARGO_BIN_EXE_grenzwacht");
const ROOT: &str = env!("CARGO_MANIFEST_DIR");
const DEU: &str = "1.3.6.1.4.1.99999.1.1";

/// A rule for the code word ADLER, meaning DEU-VS `classification` (a TOML inline table).
fn rule(classification: &str) -> String {
    format!(
        "[[rule]]\nid = \"codeword.adler\"\ndescription = \"Projekt ADLER\"\nseverity = \"low\"\naction = \"tag\"\nkeywords = [\"ADLER\"]\ncase_sensitive = true\nclassification = {classification}\n"
    )
}

/// Both sides DEU-VS, cleared for everything: only the consistency check can object.
fn config(dir: &Path, detector: &str, dlp: bool) -> String {
    let dlp = if dlp {
        format!(
            "[dlp]\npolicies = \"{}\"\nwatch_interval_ms = 0\n",
            dir.join("policies").display()
        )
    } else {
        String::new()
    };
    let side = format!(
        "policy = \"{DEU}\"\ndefault_label = {{ policy = \"{DEU}\", classification = 2 }}\nclearance = {{ policy = \"{DEU}\", classifications = [1, 2, 3, 4, 5] }}\n"
    );
    format!(
        "[store]\npath = \"{store}\"\n[audit]\ndir = \"{audit}\"\nkey_file = \"{key}\"\n{dlp}[labels]\nspifs = [\"{ROOT}/spif/deu-vs.xml\", \"{ROOT}/spif/nato.xml\"]\nmarking_detector = \"{detector}\"\n[labels.protected]\n{side}[labels.remote]\n{side}",
        store = dir.join("gw.db").display(),
        audit = dir.join("audit").display(),
        key = dir.join("audit.key").display(),
    )
}

fn setup(detector: &str, dlp: bool, rules: &str) -> (tempfile::TempDir, std::path::PathBuf) {
    let dir = tempfile::tempdir().unwrap();
    std::fs::create_dir(dir.path().join("policies")).unwrap();
    std::fs::write(dir.path().join("policies/codewords.toml"), rules).unwrap();
    let key = grenzwacht::keys::SigningKey::generate("audit1").unwrap();
    std::fs::write(dir.path().join("audit.key"), key.to_synapse_string()).unwrap();
    let path = dir.path().join("gw.toml");
    std::fs::write(&path, config(dir.path(), detector, dlp)).unwrap();
    (dir, path)
}

fn check(path: &Path) -> (i32, String) {
    let out = Command::new(BIN)
        .args(["check", "--config", path.to_str().unwrap()])
        .env_remove("GRENZWACHT_CONFIG")
        .output()
        .unwrap();
    (
        out.status.code().unwrap_or(-1),
        String::from_utf8_lossy(&out.stderr).into_owned(),
    )
}

/// The guard's verdict on an outbound message labeled VS-NfD.
fn verdict(guard: &Guard, body: &str) -> PduVerdict {
    let pdu = json!({"type": "m.room.message", "room_id": "!r:hs1.test", "sender": "@a:hs1.test",
        "origin_server_ts": 1, "event_id": "$e1",
        "content": {"msgtype": "m.text", "body": body,
            "de.grenzwacht.label": {"policy": DEU, "classification": 2}}});
    let raw = RawValue::from_string(pdu.to_string()).unwrap();
    let ctx = ExchangeCtx {
        direction: Direction::Outbound,
        endpoint: catalog::by_id("send_transaction").unwrap(),
        peer: Some("hs2.test".into()),
        protected: "hs1.test".into(),
        txn_id: None,
    };
    guard.policy().pdu(&ctx, &PduView::parse(&raw).unwrap())
}

#[test]
fn the_guard_uses_the_running_rules_classifications() {
    let (dir, path) = setup(
        "dlp",
        true,
        &rule(r#"{ policy = "DEU-VS", name = "GEHEIM" }"#),
    );
    let cfg = Config::load(&path).unwrap_or_else(|e| panic!("{e}"));
    let guard = Guard::from_config(&cfg, Store::open_in_memory().unwrap()).unwrap();
    let mismatch = PduVerdict::Hold {
        rule: "label:mismatch".into(),
    };
    assert_eq!(verdict(&guard, "Projekt ADLER, Stand 6.12."), mismatch);
    assert_eq!(
        verdict(&guard, "Der Adler ist gelandet."),
        PduVerdict::Allow
    );

    // A reload that says ADLER is VS-NfD: consistent with the label now.
    let file = dir.path().join("policies/codewords.toml");
    std::fs::write(&file, rule(r#"{ policy = "DEU-VS", lacv = 2 }"#)).unwrap();
    guard.reload_policies().unwrap();
    assert_eq!(verdict(&guard, "Projekt ADLER"), PduVerdict::Allow);

    // A classification the SPIFs do not have refuses the reload; the running rules stay.
    std::fs::write(&file, rule(r#"{ policy = "DEU-VS", lacv = 9 }"#)).unwrap();
    let e = guard.reload_policies().unwrap_err().to_string();
    assert!(e.contains("codewords.toml:8:18: error[DLP020]"), "{e}");
    assert_eq!(verdict(&guard, "Projekt ADLER"), PduVerdict::Allow);
    std::fs::write(
        &file,
        rule(r#"{ policy = "1.3.26.1.3.1", name = "SECRET" }"#),
    )
    .unwrap();
    guard.reload_policies().unwrap();
    assert_eq!(
        verdict(&guard, "Projekt ADLER"),
        mismatch,
        "NATO SECRET ≙ GEHEIM"
    );

    // With the default detector (the SPIFs' phrases) the code word is no marking.
    std::fs::write(&path, config(dir.path(), "spif", true)).unwrap();
    let cfg = Config::load(&path).unwrap_or_else(|e| panic!("{e}"));
    let guard = Guard::from_config(&cfg, Store::open_in_memory().unwrap()).unwrap();
    assert_eq!(verdict(&guard, "Projekt ADLER"), PduVerdict::Allow);
    assert_eq!(verdict(&guard, "Einstufung: GEHEIM"), mismatch);
}

#[test]
fn check_reports_classifications_the_spifs_do_not_have() {
    // The shipped rules with the shipped SPIFs.
    let (dir, path) = setup(
        "both",
        true,
        &rule(r#"{ policy = "DEU-VS", name = "GEHEIM" }"#),
    );
    std::fs::remove_file(dir.path().join("policies/codewords.toml")).unwrap();
    for f in ["markings.toml", "pii.toml", "secrets.toml"] {
        std::fs::copy(
            Path::new(ROOT).join("policies").join(f),
            dir.path().join("policies").join(f),
        )
        .unwrap();
    }
    let (code, err) = check(&path);
    assert_eq!(code, 0, "{err}");

    // An unknown policy, an unknown classification name: file, line and column of the key.
    for (c, needle) in [
        (
            r#"{ policy = "DEU-VX", name = "GEHEIM" }"#,
            "no loaded SPIF is policy `DEU-VX`",
        ),
        (
            r#"{ policy = "DEU-VS", name = "GEHEIMER" }"#,
            "no classification `GEHEIMER`",
        ),
    ] {
        let (_dir, path) = setup("spif", true, &rule(c));
        let (code, err) = check(&path);
        assert_eq!(code, 2, "{err}");
        assert!(err.contains("codewords.toml:8:18: error[DLP020]"), "{err}");
        assert!(err.contains(needle), "{err}");
    }

    // The DLP detector without a DLP rule set.
    let (_dir, path) = setup("dlp", false, &rule(r#"{ policy = "DEU-VS", lacv = 4 }"#));
    let (code, err) = check(&path);
    assert_eq!(code, 2, "{err}");
    assert!(
        err.contains(&format!(
            "{}:8:20: `labels.marking_detector = \"dlp\"` needs `[dlp] policies`",
            path.display()
        )),
        "{err}"
    );
}
