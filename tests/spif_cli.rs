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

fn stderr(o: &Output) -> String {
    String::from_utf8_lossy(&o.stderr).trim_end().to_string()
}

/// `label check` with the shipped DEU-VS and NATO SPIFs (paths relative to the crate).
fn check(label: &str, clearance: Option<&str>) -> Output {
    let mut a = vec![
        "label", "check", "--spif", DEU, "--spif", NATO, "--label", label,
    ];
    if let Some(c) = clearance {
        a.extend_from_slice(&["--clearance", c]);
    }
    Command::new(env!("CARGO_BIN_EXE_grenzwacht"))
        .current_dir(root())
        .args(&a)
        .output()
        .unwrap()
}

#[test]
fn label_check_json_and_exit_codes() {
    let clr = Some("tests/fixtures/spif-labels/clearance-nfd-deu.json");
    // 0: valid and granted (a NATO 4774 label, a DEU-VS clearance: translated first).
    let o = check("tests/fixtures/spif-labels/nfd.nato", clr);
    assert_eq!(o.status.code(), Some(0), "{}", stderr(&o));
    assert_eq!(
        json(&o),
        serde_json::json!({"valid": true, "error": null, "access": "grant", "reason": null})
    );
    // 0: valid, no clearance given.
    let o = check("tests/fixtures/spif-labels/geheim-deu.json", None);
    assert_eq!(o.status.code(), Some(0), "{}", stderr(&o));
    assert_eq!(json(&o)["access"], serde_json::Value::Null);
    // 1: denied, with the reason in the JSON and on stderr.
    let o = check("tests/fixtures/spif-labels/geheim-deu.json", clr);
    assert_eq!(o.status.code(), Some(1));
    let v = json(&o);
    assert_eq!((&v["valid"], &v["access"]), (&true.into(), &"deny".into()));
    let reason = v["reason"].as_str().unwrap();
    assert_eq!(
        reason,
        "not_cleared: clearance does not cover classification 'GEHEIM'"
    );
    assert!(stderr(&o).contains(reason), "{}", stderr(&o));
    // 1: invalid under the food policy (Chocolate excludes Commodity).
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
    assert_eq!(o.status.code(), Some(1));
    let v = json(&o);
    assert_eq!(v["valid"], false);
    assert_eq!(v["access"], "deny");
    assert!(v["error"].as_str().unwrap().contains("Chocolate"), "{v}");
    assert!(
        v["reason"].as_str().unwrap().starts_with("invalid: "),
        "{v}"
    );
    assert!(stderr(&o).contains("Chocolate"), "{}", stderr(&o));
    // 1 without a clearance too: an invalid label is refused.
    let o = run(&[
        "label",
        "check",
        "--spif",
        &p(&format!("{FX}/food-policy.xml")),
        "--label",
        &p(&format!("{FX}/food-label-meaty-milk-chocolate.xml")),
    ]);
    assert_eq!(o.status.code(), Some(1));
    assert_eq!(json(&o)["valid"], false);
}

/// Runs `args` and expects exit 2, nothing on stdout and one `error: …` line on stderr that
/// contains `want`; returns that line.
fn input_error(args: &[&str], want: &str) -> String {
    let o = run(args);
    let err = stderr(&o);
    assert_eq!(o.status.code(), Some(2), "{args:?}: {err}");
    assert!(o.stdout.is_empty(), "{args:?}: {}", stdout(&o));
    assert!(
        err.starts_with("error: ") && err.lines().count() == 1 && err.contains(want),
        "{args:?}: {err}"
    );
    err
}

#[test]
fn label_input_errors_exit_2_and_name_the_path_once() {
    let dir = tempfile::tempdir().unwrap();
    let text = dir.path().join("geheim.txt");
    std::fs::write(&text, "GEHEIM\n").unwrap();
    let text = text.display().to_string();
    let broken = dir.path().join("broken.xml");
    std::fs::write(&broken, "<spif").unwrap();
    let broken = broken.display().to_string();
    let missing = dir.path().join("missing.json").display().to_string();
    let deu = p(DEU);
    let label = p("tests/fixtures/spif-labels/geheim-deu.json");
    for cmd in ["check", "marking"] {
        // Unreadable label file.
        let e = input_error(
            &["label", cmd, "--spif", &deu, "--label", &missing],
            "cannot read: No such file",
        );
        assert_eq!(e.matches(&missing).count(), 1, "{e}");
        // A file that is no label: says so, not "BER label: truncated".
        let e = input_error(
            &["label", cmd, "--spif", &deu, "--label", &text],
            "not a security label: ",
        );
        assert!(!e.contains("BER label") && !e.contains("truncated"), "{e}");
        // A label of a policy no --spif defines.
        input_error(
            &[
                "label",
                cmd,
                "--spif",
                &deu,
                "--label",
                &p(&format!("{FX}/nato-4774-17-2.xml")),
            ],
            "Unknown policy id: 1.3.26.1.3.1",
        );
        // A SPIF that is missing or not well-formed: the message once, the path once.
        let e = input_error(
            &["label", cmd, "--spif", &missing, "--label", &label],
            "No such file",
        );
        assert_eq!(e.matches(&missing).count(), 1, "{e}");
        assert_eq!(e.matches("No such file").count(), 1, "{e}");
        let e = input_error(
            &["label", cmd, "--spif", &broken, "--label", &label],
            "SPIF is not well-formed XML",
        );
        assert_eq!(e.matches("not well-formed").count(), 1, "{e}");
        assert_eq!(e.matches("not closed").count(), 1, "{e}");
    }
    // A clearance that is no clearance, and one that cannot be read.
    input_error(
        &[
            "label",
            "check",
            "--spif",
            &deu,
            "--label",
            &label,
            "--clearance",
            &text,
        ],
        "not a clearance: ",
    );
    input_error(
        &[
            "label",
            "check",
            "--spif",
            &deu,
            "--label",
            &label,
            "--clearance",
            &missing,
        ],
        "cannot read",
    );
    // Translation to a policy no --spif defines, or no OID at all.
    input_error(
        &[
            "label",
            "translate",
            "--spif",
            &deu,
            "--label",
            &label,
            "--to",
            "1.2.3",
        ],
        "no --spif defines policy 1.2.3",
    );
    input_error(
        &[
            "label",
            "translate",
            "--spif",
            &deu,
            "--label",
            &label,
            "--to",
            "NATO",
        ],
        "invalid OID",
    );
    // Usage: clap's own exit code 2.
    let o = run(&["label", "check", "--spif", &deu]);
    assert_eq!(o.status.code(), Some(2));
    // `spif check` names a missing file once.
    let o = run(&["spif", "check", &missing]);
    assert_eq!(o.status.code(), Some(1));
    assert_eq!(stderr(&o).matches(&missing).count(), 1, "{}", stderr(&o));
}

#[test]
fn label_marking_refuses_an_invalid_label() {
    let food = p(&format!("{FX}/food-policy.xml"));
    let o = run(&[
        "label",
        "marking",
        "--spif",
        &food,
        "--label",
        &p(&format!("{FX}/food-label-cheap-milk-chocolate.xml")),
    ]);
    assert_eq!(o.status.code(), Some(1));
    assert!(o.stdout.is_empty(), "{}", stdout(&o));
    assert!(
        stderr(&o).contains("category 'Chocolate' is not allowed with classification 'Commodity'"),
        "{}",
        stderr(&o)
    );
    // The same policy's valid label is marked.
    let o = run(&[
        "label",
        "marking",
        "--spif",
        &food,
        "--label",
        &p(&format!("{FX}/food-label-water.xml")),
    ]);
    assert_eq!(o.status.code(), Some(0), "{}", stderr(&o));
    assert_eq!(stdout(&o), "[ Food FREE British Flag ]");
}

#[test]
fn label_options_document_the_accepted_forms() {
    for cmd in ["check", "marking", "translate"] {
        let o = run(&["label", cmd, "--help"]);
        assert!(o.status.success());
        let h = stdout(&o);
        for form in [
            "STANAG 4774 XML: <originatorConfidentialityLabel",
            "spiffing XML: <label xmlns=\"http://surevine.com/xmlns/spiffy\"",
            "ESS SecurityLabel, BER/DER",
            "JSON: {\"policy\": OID, \"classification\": N",
            "Open XML SPIF",
        ] {
            assert_eq!(
                h.matches(form).count(),
                1,
                "label {cmd} --help lacks {form:?}:\n{h}"
            );
        }
        if cmd == "check" {
            assert!(
                h.contains("JSON: {\"policy\": OID, \"classifications\": [N"),
                "{h}"
            );
            assert!(
                h.contains("Exit 0") && h.contains("2: usage or input error"),
                "{h}"
            );
        }
        if cmd != "check" {
            assert!(h.contains("fr-CA"), "{h}");
        }
    }
    let o = run(&["spif", "check", "--help"]);
    assert!(
        stdout(&o).contains("Open XML SPIF 1.0-2.1"),
        "{}",
        stdout(&o)
    );
}

/// The spiffing suite through the binary: every test's validity (`label check` exit code and
/// JSON), marking (`label marking`, in the test's language) and access decision (`label check
/// --clearance` on the label as given — the CLI translates into the clearance's policy itself,
/// which the suite's one cross-policy case needs).
#[test]
fn spiffing_suite_through_the_cli() {
    use grenzwacht::spif::xml;
    let text = std::fs::read_to_string(root().join(FX).join("tests.xml")).unwrap();
    let tests = xml::parse(&text, 1 << 20).unwrap();
    let (mut valid, mut marking, mut access, mut cross, mut translated) = (0, 0, 0, 0, 0);
    for seq in tests.children_named("sequence") {
        let mut spifs: Vec<String> = Vec::new();
        for pol in seq.children_named("policy") {
            if pol.attr("exception").is_none() {
                spifs.push("--spif".into());
                spifs.push(p(&format!("{FX}/{}", pol.attr("spif").unwrap())));
            }
        }
        for t in seq.children_named("test") {
            let label = p(&format!("{FX}/{}", t.attr("label").unwrap()));
            let with = |cmd: &str, extra: &[&str]| {
                let mut a: Vec<&str> = vec!["label", cmd];
                a.extend(spifs.iter().map(String::as_str));
                a.extend_from_slice(&["--label", &label]);
                a.extend_from_slice(extra);
                run(&a)
            };
            if let Some(ex) = t.attr("exception") {
                let o = with("check", &[]);
                assert_eq!(o.status.code(), Some(2), "{label}: {}", stderr(&o));
                let want = if ex == "No data to parse" {
                    "cannot read"
                } else {
                    ex
                };
                assert!(stderr(&o).contains(want), "{label}: {}", stderr(&o));
                continue;
            }
            if let Some(v) = t.attr("valid") {
                let o = with("check", &[]);
                let want = v.starts_with('t');
                assert_eq!(o.status.code(), Some(if want { 0 } else { 1 }), "{label}");
                assert_eq!(json(&o)["valid"], want, "{label}");
                valid += 1;
            }
            if let Some(m) = t.attr("label-marking") {
                let mut extra = vec![];
                if let Some(l) = t.attr("xml:lang") {
                    extra = vec!["--lang", l];
                }
                let o = with("marking", &extra);
                assert_eq!(o.status.code(), Some(0), "{label}: {}", stderr(&o));
                assert_eq!(stdout(&o), m, "{label}");
                marking += 1;
            }
            if let (Some(to), Some(m)) = (t.attr("encrypt"), t.attr("encrypt-marking")) {
                let o = with("translate", &["--to", to]);
                assert_eq!(o.status.code(), Some(0), "{label}: {}", stderr(&o));
                assert_eq!(json(&o)["marking"], m, "{label}");
                translated += 1;
            }
            if let Some(c) = t.attr("clearance") {
                let clearance = p(&format!("{FX}/{c}"));
                let o = with("check", &["--clearance", &clearance]);
                let grant = t.attr("acdf-result") == Some("1");
                assert_eq!(
                    o.status.code(),
                    Some(if grant { 0 } else { 1 }),
                    "{label}: {}",
                    stderr(&o)
                );
                let v = json(&o);
                assert_eq!(
                    v["access"],
                    if grant { "grant" } else { "deny" },
                    "{label}: {v}"
                );
                assert_eq!(v["reason"].is_null(), grant, "{label}: {v}");
                access += 1;
                if t.attr("encrypt").is_some() {
                    cross += 1;
                }
            }
        }
    }
    // As shipped (tests/spif_conformance.rs counts the same data): a change must be noticed.
    assert_eq!(
        (valid, marking, access, cross, translated),
        (22, 18, 3, 1, 3)
    );
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
