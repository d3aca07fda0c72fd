//! `grenzwacht policy check|test|explain`, run as the real binary, on the shipped rule set and
//! on broken ones.
use std::io::Write;
use std::path::{Path, PathBuf};
use std::process::{Command, Output, Stdio};

use grenzwacht::policy::dlp::{Action, RuleSet, TestInput};

/// The binary, copied once to a private place: the target dir is shared between worktrees, and
/// another branch's build can replace `target/debug/grenzwacht` while these tests run.
fn bin() -> Command {
    static COPY: std::sync::OnceLock<PathBuf> = std::sync::OnceLock::new();
    let path = COPY.get_or_init(|| {
        // A hard link (same file system, no copy of a 250 MB debug binary); earlier runs' links
        // are removed.
        let dir = Path::new(env!("CARGO_TARGET_TMPDIR"));
        for e in std::fs::read_dir(dir).into_iter().flatten().flatten() {
            if e.file_name()
                .to_string_lossy()
                .starts_with("grenzwacht-policy-cli-")
            {
                let _ = std::fs::remove_file(e.path());
            }
        }
        let to = dir.join(format!("grenzwacht-policy-cli-{}", std::process::id()));
        if std::fs::hard_link(env!("CARGO_BIN_EXE_grenzwacht"), &to).is_err() {
            std::fs::copy(env!("CARGO_BIN_EXE_grenzwacht"), &to).unwrap();
        }
        let ok = Command::new(&to)
            .args(["policy", "--help"])
            .output()
            .unwrap()
            .status
            .success();
        assert!(
            ok,
            "{} has no `policy` command: replaced by another build in the shared target dir? rerun",
            env!("CARGO_BIN_EXE_grenzwacht")
        );
        to
    });
    Command::new(path)
}

fn shipped() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("policies")
}

fn run(args: &[&str]) -> Output {
    bin().args(args).output().expect("run grenzwacht")
}

fn text(o: &Output) -> (String, String) {
    (
        String::from_utf8_lossy(&o.stdout).into_owned(),
        String::from_utf8_lossy(&o.stderr).into_owned(),
    )
}

fn write(dir: &Path, name: &str, content: &str) -> PathBuf {
    let p = dir.join(name);
    std::fs::write(&p, content).unwrap();
    p
}

#[test]
fn check_and_test_pass_on_the_shipped_set() {
    let dir = shipped();
    let o = run(&["policy", "check", "--policies", dir.to_str().unwrap()]);
    let (out, err) = text(&o);
    assert!(o.status.success(), "{out}{err}");
    assert!(out.contains(": OK ("), "{out}");

    let o = run(&["policy", "test", "--policies", dir.to_str().unwrap()]);
    let (out, err) = text(&o);
    assert!(o.status.success(), "{out}{err}");
    assert!(out.contains("test result: ok."), "{out}");
    assert!(out.contains("test pii.iban::1 ... ok"), "{out}");
    assert!(!out.contains("FAILED"), "{out}");
    let ok = out
        .lines()
        .filter(|l| l.starts_with("test ") && l.ends_with(" ... ok"))
        .count();
    let set = RuleSet::load_dir(&dir).unwrap();
    let yara = grenzwacht::media::yara::YaraRules::load_dir(&dir).unwrap();
    let total: usize = set.rules().map(|r| r.tests.len()).sum::<usize>() + yara.tests().len();
    assert!(!yara.tests().is_empty());
    assert!(
        out.contains("test yara:scripts.html_script_element@"),
        "{out}"
    );
    assert_eq!(ok, total);
}

#[test]
fn every_shipped_rule_has_three_positive_and_three_negative_tests() {
    let set = RuleSet::load_dir(shipped()).unwrap_or_else(|d| panic!("{d}"));
    let mut ids = Vec::new();
    for r in set.rules() {
        let pos = r.tests.iter().filter(|t| t.expect != Action::Allow).count();
        let neg = r.tests.iter().filter(|t| t.expect == Action::Allow).count();
        assert!(
            pos >= 3 && neg >= 3,
            "{}: {pos} positive, {neg} negative",
            r.id
        );
        assert!(
            r.tests
                .iter()
                .filter(|t| t.expect != Action::Allow)
                .all(|t| t.expect == r.action),
            "{}",
            r.id
        );
        ids.push(r.id.clone());
    }
    for required in [
        "marking.vs_nfd",
        "marking.vs_vertraulich",
        "marking.geheim",
        "marking.streng_geheim",
        "marking.nato_eu_restricted",
        "marking.nato_eu_confidential",
        "marking.nato_eu_secret",
        "marking.weak",
        "pii.iban",
        "pii.steuer_id",
        "pii.kvnr",
        "pii.id_document",
        "pii.phone",
        "pii.email",
        "secret.private_key",
        "secret.github_token",
        "secret.aws_key",
        "secret.slack_token",
    ] {
        assert!(ids.iter().any(|i| i == required), "missing {required}");
    }
    // Near misses exist for the validated rules (a negative test that differs from a positive).
    let iban = set.rules().find(|r| r.id == "pii.iban").unwrap();
    assert!(iban.tests.iter().any(|t| t.expect == Action::Allow
        && matches!(&t.input, TestInput::Text { text, .. } if text.contains("DE88 3704"))));
}

#[test]
fn broken_rule_files_report_every_problem_with_position() {
    let dir = tempfile::tempdir().unwrap();
    write(
        dir.path(),
        "a.toml",
        r#"mode = "sometimes"
[[rule]]
id = "x.one"
description = "d"
severity = "high"
action = "redact"
regex = "[0-9"
typo = true
[rule.scope]
fields = ["body", "bdy"]
"#,
    );
    write(
        dir.path(),
        "b.toml",
        r#"[[rule]]
id = "x.one"
description = "duplicate id"
severity = "low"
action = "tag"
keywords = ["k"]
validator = "crc32"
"#,
    );
    write(dir.path(), "c.toml", "[[rule]\n");
    write(dir.path(), "ignored.txt", "not a rule file");
    let o = run(&[
        "policy",
        "check",
        "--policies",
        dir.path().to_str().unwrap(),
    ]);
    let (out, err) = text(&o);
    assert!(!o.status.success(), "{out}{err}");
    let a = dir.path().join("a.toml").display().to_string();
    let b = dir.path().join("b.toml").display().to_string();
    let c = dir.path().join("c.toml").display().to_string();
    for want in [
        format!("{a}:1:8: error[DLP005]: invalid mode `sometimes`"),
        format!("{a}:7:9: error[DLP007]: invalid regex"),
        format!("{a}:8:1: error[DLP002]: unknown key `rule[0].typo`"),
        format!("{a}:10:19: error[DLP009]: unknown field `bdy`"),
        format!("{b}:7:13: error[DLP008]: unknown validator `crc32`"),
        format!("{c}:1:"),
    ] {
        assert!(err.contains(&want), "missing `{want}` in:\n{err}");
    }
    assert!(err.contains("error[DLP001]"), "{err}");
    // Every diagnostic line has file:line:col and a code.
    let lines: Vec<&str> = err.lines().filter(|l| l.contains("error[DLP")).collect();
    assert!(lines.len() >= 6, "{err}");

    // Fix b.toml's validator: now the duplicate id across files is reported.
    write(dir.path(), "b.toml", "[[rule]]\nid = \"x.one\"\ndescription = \"d\"\nseverity = \"low\"\naction = \"tag\"\nkeywords = [\"k\"]\n");
    std::fs::remove_file(dir.path().join("a.toml")).unwrap();
    std::fs::remove_file(dir.path().join("c.toml")).unwrap();
    write(dir.path(), "a.toml", "[[rule]]\nid = \"x.one\"\ndescription = \"d\"\nseverity = \"low\"\naction = \"tag\"\nkeywords = [\"j\"]\n");
    let o = run(&[
        "policy",
        "check",
        "--policies",
        dir.path().to_str().unwrap(),
    ]);
    let (_, err) = text(&o);
    assert!(!o.status.success());
    assert!(
        err.contains(&format!(
            "{b}:2:6: error[DLP006]: duplicate rule id `x.one` (first defined at {a}:2:6)"
        )),
        "{err}"
    );

    // A missing directory is one diagnostic.
    let o = run(&[
        "policy",
        "check",
        "--policies",
        dir.path().join("nope").to_str().unwrap(),
    ]);
    assert!(!o.status.success());
    assert!(text(&o).1.contains("error[DLP014]"));
}

#[test]
fn failing_embedded_test_gives_nonzero_exit() {
    let dir = tempfile::tempdir().unwrap();
    write(
        dir.path(),
        "r.toml",
        r#"[[rule]]
id = "kw"
description = "d"
severity = "low"
action = "tag"
keywords = ["Projekt Adler"]
[[rule.test]]
text = "Projekt Adler startet"
expect = "tag"
[[rule.test]]
name = "wrong expectation"
text = "Projekt Falke startet"
expect = "tag"
"#,
    );
    let o = run(&["policy", "test", "--policies", dir.path().to_str().unwrap()]);
    let (out, err) = text(&o);
    assert_eq!(o.status.code(), Some(1), "{out}{err}");
    assert!(out.contains("test kw::1 ... ok"), "{out}");
    assert!(
        out.contains("test kw::2 (wrong expectation) ... FAILED"),
        "{out}"
    );
    assert!(out.contains("kw::2 at "), "{out}");
    assert!(out.contains(":10:1: expected tag, got allow"), "{out}");
    assert!(
        out.contains("test result: FAILED. 1 passed; 1 failed"),
        "{out}"
    );
}

fn explain(event: &str, extra: &[&str]) -> (Output, String, String) {
    let dir = shipped();
    let mut cmd = bin();
    cmd.args([
        "policy",
        "explain",
        "--policies",
        dir.to_str().unwrap(),
        "--event",
        "-",
    ])
    .args(extra);
    let mut child = cmd
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    child
        .stdin
        .take()
        .unwrap()
        .write_all(event.as_bytes())
        .unwrap();
    let o = child.wait_with_output().unwrap();
    let (out, err) = text(&o);
    (o, out, err)
}

#[test]
fn explain_json_names_rule_field_and_span() {
    let body = "Bitte an DE89 3704 0044 0532 0130 00 überweisen";
    let pdu = serde_json::json!({
        "type": "m.room.message", "room_id": "!r:bund.example.de", "sender": "@a:bund.example.de",
        "origin_server_ts": 1, "depth": 3, "auth_events": [], "prev_events": [], "hashes": {"sha256": "x"},
        "content": {"msgtype": "m.text", "body": body}
    });
    let (o, out, err) = explain(&pdu.to_string(), &["--format", "json"]);
    assert!(o.status.success(), "{out}{err}");
    let v: serde_json::Value = serde_json::from_str(out.trim()).unwrap();
    let start = body.find("DE89").unwrap();
    let end = start + "DE89 3704 0044 0532 0130 00".len();
    assert_eq!(
        v,
        serde_json::json!({"verdict": "redact", "matches": [{"rule": "pii.iban", "field": "body", "start": start, "end": end}]})
    );

    // Broken check digit: allowed, no matches.
    let broken = pdu.to_string().replace("DE89 3704", "DE88 3704");
    let (_, out, _) = explain(&broken, &["--format", "json"]);
    let v: serde_json::Value = serde_json::from_str(out.trim()).unwrap();
    assert_eq!(v, serde_json::json!({"verdict": "allow", "matches": []}));

    // An edit that adds an IBAN (bare event, m.new_content).
    let edit = serde_json::json!({"type": "m.room.message", "content": {"msgtype": "m.text", "body": "* ok",
        "m.new_content": {"msgtype": "m.text", "body": "IBAN DE89370400440532013000"},
        "m.relates_to": {"rel_type": "m.replace", "event_id": "$e"}}});
    let (_, out, _) = explain(&edit.to_string(), &["--format", "json"]);
    let v: serde_json::Value = serde_json::from_str(out.trim()).unwrap();
    assert_eq!(v["verdict"], "redact");
    assert_eq!(v["matches"][0]["field"], "new_content.body");
    assert_eq!(v["matches"][0]["start"], 5);
    assert_eq!(v["matches"][0]["end"], 27);
}

#[test]
fn explain_human_output_and_file_input() {
    let dir = tempfile::tempdir().unwrap();
    let ev = write(
        dir.path(),
        "ev.json",
        r#"{"type": "m.room.topic", "room_id": "!r:x", "sender": "@s:x", "content": {"topic": "Lage STRENG GEHEIM, Kontakt max@bund.example.de"}}"#,
    );
    let o = run(&[
        "policy",
        "explain",
        "--policies",
        shipped().to_str().unwrap(),
        "--event",
        ev.to_str().unwrap(),
    ]);
    let (out, err) = text(&o);
    assert!(o.status.success(), "{out}{err}");
    assert!(out.contains("verdict: redact"), "{out}");
    assert!(
        out.contains(
            "rule marking.streng_geheim [redact enforce critical]: field room.topic bytes 5..18"
        ),
        "{out}"
    );
    assert!(out.contains("rule pii.email [tag"), "{out}");
    assert!(
        out.contains("fields scanned: type (12 bytes), room.topic (47 bytes), content"),
        "every piece of text is scanned: {out}"
    );
    assert!(
        !out.contains("max@bund.example.de"),
        "excerpts are masked: {out}"
    );

    // Not an event.
    let bad = write(dir.path(), "bad.json", r#"{"content": {}}"#);
    let o = run(&[
        "policy",
        "explain",
        "--policies",
        shipped().to_str().unwrap(),
        "--event",
        bad.to_str().unwrap(),
    ]);
    assert!(!o.status.success());
    assert!(text(&o).1.contains("needs a string `type`"));
}

/// A rule file without rules (emptied, only comments) is an error (DLP019), so a truncated file
/// never loads as "fewer rules"; `check` prints the set's fingerprint (what the guard logs).
#[test]
fn check_refuses_rule_files_without_rules_and_prints_the_fingerprint() {
    let dir = tempfile::tempdir().unwrap();
    for f in std::fs::read_dir(shipped())
        .unwrap()
        .flatten()
        .filter(|f| f.path().extension().is_some_and(|x| x == "toml"))
    {
        std::fs::copy(f.path(), dir.path().join(f.file_name())).unwrap();
    }
    let d = dir.path().to_str().unwrap();
    let o = run(&["policy", "check", "--policies", d]);
    let (out, err) = text(&o);
    assert!(o.status.success(), "{out}{err}");
    let (_, manifest) = RuleSet::load_dir_with_manifest(dir.path()).unwrap();
    assert!(
        out.contains(&format!(
            "fingerprint {} (gauge value {})",
            manifest.fingerprint(),
            manifest.fingerprint().gauge_value()
        )),
        "{out}"
    );

    write(dir.path(), "pii.toml", "");
    write(dir.path(), "secrets.toml", "# moved\n");
    let o = run(&["policy", "check", "--policies", d]);
    let (out, err) = text(&o);
    assert_eq!(o.status.code(), Some(1), "{out}{err}");
    let codes: Vec<&str> = err
        .lines()
        .filter_map(|l| l.split("error[").nth(1)?.split(']').next())
        .collect();
    assert_eq!(codes, ["DLP019", "DLP019"], "{err}");
    assert!(
        err.contains("pii.toml: error[DLP019]") && err.contains("secrets.toml: error[DLP019]"),
        "{err}"
    );
}

#[test]
fn explain_names_the_json_path_of_a_match_outside_the_known_fields() {
    let dir = tempfile::tempdir().unwrap();
    let ev = write(
        dir.path(),
        "ev.json",
        r#"{"type": "org.example.note", "state_key": "", "content": {"x-meta": {"GEHEIM": true}, "note": "hallo"}}"#,
    );
    let o = run(&[
        "policy",
        "explain",
        "--policies",
        shipped().to_str().unwrap(),
        "--event",
        ev.to_str().unwrap(),
        "--format",
        "json",
    ]);
    let (out, err) = text(&o);
    assert!(o.status.success(), "{out}{err}");
    let v: serde_json::Value = serde_json::from_str(&out).unwrap();
    assert_eq!(v["verdict"], "redact", "{v}");
    assert_eq!(v["matches"][0]["rule"], "marking.geheim", "{v}");
    assert_eq!(v["matches"][0]["field"], "content", "{v}");
    assert_eq!(
        v["matches"][0]["path"], "content.x-meta.GEHEIM (key)",
        "{v}"
    );
}

/// `check` compiles `<policies>/yara/*.yar` with the DLP files: YARA diagnostics as
/// `file:line:col: error[YAR0xx]`, exit 1; the fingerprint covers both (as the guard's does).
#[test]
fn check_compiles_the_yara_rules_and_prints_their_diagnostics() {
    use grenzwacht::media::yara::YaraRules;
    let dir = tempfile::tempdir().unwrap();
    let shipped_dir = shipped();
    for sub in ["", "yara"] {
        std::fs::create_dir_all(dir.path().join(sub)).unwrap();
        for f in std::fs::read_dir(shipped_dir.join(sub)).unwrap().flatten() {
            if f.path().is_file() {
                std::fs::copy(f.path(), dir.path().join(sub).join(f.file_name())).unwrap();
            }
        }
    }
    let d = dir.path().to_str().unwrap();
    let o = run(&["policy", "check", "--policies", d]);
    let (out, err) = text(&o);
    assert!(o.status.success(), "{out}{err}");
    assert!(out.contains("YARA rules in 5 files"), "{out}");
    let (_, mut manifest) = RuleSet::load_dir_with_manifest(dir.path()).unwrap();
    let snap = YaraRules::read_dir(dir.path()).unwrap();
    let (_, yara) = YaraRules::from_snapshot(dir.path(), snap.as_ref()).unwrap();
    manifest.extend(yara);
    assert!(
        out.contains(&format!("fingerprint {} ", manifest.fingerprint())),
        "{out}"
    );

    write(
        &dir.path().join("yara"),
        "broken.yar",
        "rule a {\n  strings:\n    $a = \"x\"\n  condition:\n    $a and nope\n}\n",
    );
    write(&dir.path().join("yara"), "empty.yar", "// nothing\n");
    let o = run(&["policy", "check", "--policies", d]);
    let (out, err) = text(&o);
    assert_eq!(o.status.code(), Some(1), "{out}{err}");
    let broken = dir.path().join("yara/broken.yar");
    assert!(
        err.contains(&format!(
            "{}:5:12: error[YAR002]: unknown identifier `nope`",
            broken.display()
        )),
        "{err}"
    );
    assert!(err.contains("empty.yar: error[YAR003]"), "{err}");
    assert!(err.contains("error: 2 problem(s)"), "{err}");

    // `policy test` runs the embedded tests of the YARA files; a failing one fails it.
    std::fs::remove_file(dir.path().join("yara/empty.yar")).unwrap();
    write(
        &dir.path().join("yara"),
        "broken.yar",
        "rule a { strings: $a = \"needle\" condition: $a }\n// test: a matches \"a needle\"\n// test: a matches \"no nee-dle\"\n",
    );
    let o = run(&["policy", "test", "--policies", d]);
    let (out, err) = text(&o);
    assert_eq!(o.status.code(), Some(1), "{out}{err}");
    assert!(out.contains("test yara:broken.a@2 ... ok"), "{out}");
    assert!(out.contains("test yara:broken.a@3 ... FAILED"), "{out}");
    assert!(
        out.contains("broken.yar:3: expected the rule to match, it did not"),
        "{out}"
    );

    // `policy explain` shows what the YARA `text` rules make of an event.
    write(
        &dir.path().join("yara"),
        "broken.yar",
        "rule nordlicht : text { meta: fields = \"body\" strings: $a = \"Nordlicht\" condition: $a }\n",
    );
    let ev = write(
        dir.path(),
        "ev.json",
        r#"{"type": "m.room.message", "content": {"msgtype": "m.text", "body": "Projekt Nordlicht"}}"#,
    );
    let o = run(&[
        "policy",
        "explain",
        "--policies",
        d,
        "--event",
        ev.to_str().unwrap(),
    ]);
    let (out, err) = text(&o);
    assert!(o.status.success(), "{out}{err}");
    assert!(out.contains("YARA text rules: redact"), "{out}");
    assert!(
        out.contains("  rule yara:broken.nordlicht [redact]: field body"),
        "{out}"
    );
}
