//! Runs every case of the spiffing conformance suite (`tests/fixtures/spiffing/tests.xml`,
//! MIT-licensed test data from surevine/spiffing, see its LICENSE) generically.
//!
//! Semantics follow the suite's own runner: per `<sequence>`, load each `<policy>` (an
//! `exception` attribute means the load must fail with that message); per `<test>`: parse the
//! label (an `exception` attribute means parse … must fail with that message), check `valid`,
//! `label-marking` (in `xml:lang`), translate to `encrypt` and check `encrypt-marking`, then
//! with `clearance` check `clearance-marking` and `acdf-result` (on the translated label when
//! `encrypt` is given), and the same decision through `SpifSet::decide_access` on the label as
//! given (it translates into the clearance's policy itself). Error messages are matched by
//! containment (ours add context). [`cross_policy_access_through_library_and_cli`] adds the
//! suite's SPIFs' cross-policy denials, through the library and the binary.
use std::path::{Path, PathBuf};

use grenzwacht::spif::xml;
use grenzwacht::spif::{AccessDecision, Oid, Spif, SpifSet};

fn dir() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/fixtures/spiffing")
}

#[derive(Default)]
struct Tally {
    checks: usize,
    failures: Vec<String>,
}

impl Tally {
    fn check(&mut self, ok: bool, what: impl FnOnce() -> String) {
        self.checks += 1;
        if !ok {
            self.failures.push(what());
        }
    }
}

fn run_test(
    set: &SpifSet,
    t: &xml::Element,
    n: usize,
    tally: &mut Tally,
    cross_policy: &mut Vec<usize>,
) {
    let label_file = t.attr("label").expect("test without label");
    let expected_ex = t.attr("exception");
    let lang = t.attr("xml:lang");
    let ctx = format!(
        "test {n} ({label_file}{})",
        lang.map(|l| format!(", lang {l}")).unwrap_or_default()
    );
    let result: Result<(), String> = (|| {
        let mut label = set
            .load_label_file(&dir().join(label_file))
            .map_err(|e| e.to_string())?;
        let original = label.clone();
        if let Some(v) = t.attr("valid") {
            let got = set.validate(&label);
            let want = v.starts_with('t');
            tally.check(got.is_ok() == want, || {
                format!("{ctx}: valid expected {want}, got {got:?}")
            });
        }
        if let Some(m) = t.attr("label-marking") {
            let got = set.marking(&label, lang).map_err(|e| e.to_string())?;
            tally.check(got == m, || {
                format!("{ctx}: label-marking expected {m:?}, got {got:?}")
            });
        }
        if let Some(to) = t.attr("encrypt") {
            let to = Oid::parse(to).ok_or("bad encrypt OID")?;
            label = set.translate(&label, &to).map_err(|e| e.to_string())?;
            tally.check(label.policy == to, || {
                format!("{ctx}: translated policy {}", label.policy)
            });
        }
        if let Some(m) = t.attr("encrypt-marking") {
            let got = set.marking(&label, lang).map_err(|e| e.to_string())?;
            tally.check(got == m, || {
                format!("{ctx}: encrypt-marking expected {m:?}, got {got:?}")
            });
        }
        if let Some(c) = t.attr("clearance") {
            let clearance = set
                .load_clearance_file(&dir().join(c))
                .map_err(|e| e.to_string())?;
            if let Some(m) = t.attr("clearance-marking") {
                let got = set
                    .clearance_marking(&clearance, None)
                    .map_err(|e| e.to_string())?;
                tally.check(got == m, || {
                    format!("{ctx}: clearance-marking expected {m:?}, got {got:?}")
                });
            }
            let want = t
                .attr("acdf-result")
                .expect("clearance without acdf-result")
                == "1";
            let got = set.access(&label, &clearance).map_err(|e| e.to_string())?;
            tally.check((got == AccessDecision::Grant) == want, || {
                format!("{ctx}: acdf expected {want}, got {got:?}")
            });
            // The decision the traffic path and `label check` share, on the label as given:
            // it translates into the clearance's policy itself (cross-policy cases).
            let shared = set.decide_access(&original, &clearance);
            tally.check(shared.is_ok() == want, || {
                format!("{ctx}: decide_access expected {want}, got {shared:?}")
            });
            if original.policy != clearance.policy {
                cross_policy.push(n);
            }
        }
        Ok(())
    })();
    match (result, expected_ex) {
        (Ok(()), None) => {}
        (Ok(()), Some(ex)) => tally.check(false, || {
            format!("{ctx}: expected exception {ex:?}, got none")
        }),
        (Err(e), Some(ex)) => tally.check(e.contains(ex), || {
            format!("{ctx}: expected exception {ex:?}, got {e:?}")
        }),
        (Err(e), None) => tally.check(false, || format!("{ctx}: unexpected error {e}")),
    }
}

#[test]
fn spiffing_conformance_suite() {
    let text = std::fs::read_to_string(dir().join("tests.xml")).unwrap();
    let root = xml::parse(&text, 1 << 20).unwrap();
    assert_eq!(root.name, "tests");
    let mut tally = Tally::default();
    let mut cross_policy = Vec::new();
    let (mut n, mut policies, mut tests) = (0usize, 0usize, 0usize);
    for seq in root.children_named("sequence") {
        let mut set = SpifSet::new();
        for p in seq.children_named("policy") {
            n += 1;
            policies += 1;
            let file = p.attr("spif").unwrap();
            let res = Spif::load(&dir().join(file))
                .map_err(|e| e.to_string())
                .and_then(|s| set.insert(s).map_err(|e| e.to_string()));
            match (res, p.attr("exception")) {
                (Ok(()), None) => tally.check(true, String::new),
                (Ok(()), Some(ex)) => tally.check(false, || {
                    format!("policy {file}: expected exception {ex:?}")
                }),
                (Err(e), Some(ex)) => tally.check(e.contains(ex), || {
                    format!("policy {file}: expected {ex:?}, got {e:?}")
                }),
                (Err(e), None) => tally.check(false, || format!("policy {file}: {e}")),
            }
        }
        for t in seq.children_named("test") {
            n += 1;
            tests += 1;
            run_test(&set, t, n, &mut tally, &mut cross_policy);
        }
    }
    println!(
        "spiffing conformance: {policies} policy loads, {tests} tests, {} checks, {} failures",
        tally.checks,
        tally.failures.len()
    );
    for f in &tally.failures {
        println!("FAIL {f}");
    }
    assert!(
        tally.failures.is_empty(),
        "{} of {} checks failed:\n{}",
        tally.failures.len(),
        tally.checks,
        tally.failures.join("\n")
    );
    // The suite as shipped: 6 policy loads and 25 tests (one more is commented out) (a change of the data must be noticed).
    assert_eq!((policies, tests), (6, 25));
    assert!(tally.checks >= 62, "only {} checks ran", tally.checks);
    // The suite's one access decision across policies (TLPX label, UK-DEMO clearance) ran
    // through the shared decision.
    assert_eq!(
        cross_policy.len(),
        1,
        "cross-policy cases: {cross_policy:?}"
    );
}

/// Access decisions whose label and clearance are in different policies, on the suite's own
/// SPIFs and labels, through [`SpifSet::decide_access`] and through the real binary
/// (`grenzwacht label check --clearance`, which translates into the clearance's policy itself,
/// exit 0 grant / 1 deny with the reason). The suite has one such case, a grant; these add the
/// denials: no equivalence (`no_equivalent`), a translation the clearance's policy refuses
/// (`invalid`) and a translated label the clearance does not cover (`not_cleared`). The whole
/// suite through the binary is `tests/spif_cli.rs` (`spiffing_suite_through_the_cli`).
#[test]
fn cross_policy_access_through_library_and_cli() {
    use std::process::Command;

    const TLP: &[&str] = &["tlp-plus.xml", "tlp.xml", "uk-demo.xml"];
    const FOOD: &[&str] = &["food-policy.xml", "uk-demo.xml"];
    /// SPIFs, label (file or inline JSON), clearance (file or inline JSON), the expected
    /// denial code (`None` = grant), why.
    type Case<'a> = (&'a [&'a str], &'a str, &'a str, Option<&'a str>, &'a str);
    let cases: &[Case] = &[
        (
            TLP,
            "tlpx-amber-eu.xml",
            "uk-demo-secret-uk.xml",
            None,
            "the suite's case: TLPX AMBER → UK SECRET, EU → UK/EU Eyes Only, all held",
        ),
        (
            TLP,
            "tlpx-green-sh-na.xml",
            "uk-demo-secret-uk.xml",
            Some("no_equivalent"),
            "'Do not action' has an equivalence to TLP only",
        ),
        (
            FOOD,
            "food-label-milk-chocolate.xml",
            "uk-demo-secret-uk.xml",
            Some("no_equivalent"),
            "Food and UK-DEMO declare no equivalence",
        ),
        (
            TLP,
            "tlpx-amber-eu.xml",
            r#"{"policy": "1.2.826.0.1.6726289.0.4", "classifications": [4], "categories": [{"tag_set": "1.2.826.0.1.6726289.0.4.3", "type": "permissive", "lacv": 2}]}"#,
            Some("not_cleared"),
            "translated to UK/EU Eyes Only, the clearance holds NATO only",
        ),
        (
            TLP,
            "tlpx-amber-eu.xml",
            r#"{"policy": "1.2.826.0.1.6726289.0.4", "classifications": [10], "categories": [{"tag_set": "1.2.826.0.1.6726289.0.4.3", "type": "permissive", "lacv": 0}]}"#,
            Some("not_cleared"),
            "translated to UK SECRET, the clearance is OFFICIAL",
        ),
        (
            TLP,
            r#"{"policy": "1.2.826.0.1.6726289.0.2", "classification": 11}"#,
            r#"{"policy": "1.2.826.0.1.6726289.0.1", "classifications": [11]}"#,
            None,
            "TLP GREEN → TLPX GREEN (equivalentClassification both)",
        ),
        (
            TLP,
            r#"{"policy": "1.2.826.0.1.6726289.0.2", "classification": 12}"#,
            r#"{"policy": "1.2.826.0.1.6726289.0.1", "classifications": [12, 13]}"#,
            Some("invalid"),
            "TLP AMBER → TLPX AMBER, which requires a Dissemination category",
        ),
    ];
    let tmp = tempfile::tempdir().unwrap();
    let file = |s: &str, n: usize, what: &str| -> PathBuf {
        if s.starts_with('{') {
            let p = tmp.path().join(format!("{what}-{n}.json"));
            std::fs::write(&p, s).unwrap();
            p
        } else {
            dir().join(s)
        }
    };
    for (n, &(spifs, label, clearance, want, why)) in cases.iter().enumerate() {
        let ctx = format!("case {n} ({why})");
        let (label, clearance) = (file(label, n, "label"), file(clearance, n, "clearance"));
        let set = SpifSet::load(spifs.iter().map(|s| dir().join(s))).unwrap();
        let l = set.load_label_file(&label).unwrap();
        let c = set.load_clearance_file(&clearance).unwrap();
        assert_ne!(l.policy, c.policy, "{ctx}: not across policies");
        let got = set.decide_access(&l, &c);
        assert_eq!(got.as_ref().err().map(|d| d.code()), want, "{ctx}: {got:?}");
        let mut args: Vec<String> = vec!["label".into(), "check".into()];
        for s in spifs {
            args.push("--spif".into());
            args.push(dir().join(s).display().to_string());
        }
        args.extend([
            "--label".into(),
            label.display().to_string(),
            "--clearance".into(),
            clearance.display().to_string(),
        ]);
        let o = Command::new(env!("CARGO_BIN_EXE_grenzwacht"))
            .args(&args)
            .output()
            .unwrap();
        let v: serde_json::Value = serde_json::from_slice(&o.stdout)
            .unwrap_or_else(|e| panic!("{ctx}: {e}: {}", String::from_utf8_lossy(&o.stderr)));
        let stderr = String::from_utf8_lossy(&o.stderr);
        match want {
            None => {
                assert_eq!(o.status.code(), Some(0), "{ctx}: {stderr}");
                assert_eq!(v["access"], "grant", "{ctx}: {v}");
            }
            Some(code) => {
                assert_eq!(o.status.code(), Some(1), "{ctx}: {v}");
                assert_eq!(v["access"], "deny", "{ctx}: {v}");
                let reason = v["reason"].as_str().unwrap_or_default();
                assert!(reason.starts_with(&format!("{code}: ")), "{ctx}: {v}");
                assert!(stderr.contains(reason), "{ctx}: {stderr}");
            }
        }
    }
}
