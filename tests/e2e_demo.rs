//! End-to-end (real Synapse): `grenzwacht lab demo`, the real binary, runs its whole script
//! with security labels on — every step succeeds, a VS-NfD-labeled message is released, a
//! GEHEIM-labeled one is redacted by the label layer (`label:deny`), nothing unexpected.
use std::process::Command;

#[test]
fn lab_demo_runs_with_labels() {
    let dir = tempfile::tempdir().unwrap();
    let lab = dir.path().join("lab");
    let out = Command::new(env!("CARGO_BIN_EXE_grenzwacht"))
        .args(["lab", "demo", "--dir"])
        .arg(&lab)
        .env_remove("GRENZWACHT_CONFIG")
        .output()
        .expect("run grenzwacht lab demo");
    let stdout = String::from_utf8_lossy(&out.stdout);
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert_eq!(
        out.status.code(),
        Some(0),
        "stdout:\n{stdout}\nstderr:\n{stderr}"
    );
    for needle in [
        "labeled VS-NfD, releasable to DEU",
        "released: VS-NfD ≙ NATO RESTRICTED",
        "redacted by the label layer (rule label:deny",
        "Label decisions (grenzwacht_label_decisions_total)",
        "reviewer lab-reviewer releases hold",
        "lab stopped",
    ] {
        assert!(stdout.contains(needle), "missing {needle:?}:\n{stdout}");
    }
    for bad in ["UNEXPECTED", "FAILED", "labels are off"] {
        assert!(!stdout.contains(bad), "{bad}:\n{stdout}");
    }
}
