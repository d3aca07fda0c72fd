//! Runs every case of the spiffing conformance suite (`tests/fixtures/spiffing/tests.xml`,
//! MIT-licensed test data from surevine/spiffing, see its LICENSE) generically.
//!
//! Semantics follow the suite's own runner: per `<sequence>`, load each `<policy>` (an
//! `exception` attribute means the load must fail with that message); per `<test>`: parse the
//! label (an `exception` attribute means parse … must fail with that message), check `valid`,
//! `label-marking` (in `xml:lang`), translate to `encrypt` and check `encrypt-marking`, then
//! with `clearance` check `clearance-marking` and `acdf-result` (on the translated label when
//! `encrypt` is given), and the same decision through `SpifSet::decide_access` on the label as
//! given (it translates into the clearance's policy itself). Error messages are matched by containment (ours add context).
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
