//! Expected results written from the SPIFs' own rules (`tests/fixtures/spif/expected/*.toml`,
//! format in its `README.md`), run through the library (`Spif::load`, `SpifSet::validate`,
//! `marking`, `translate`, `decide_access`) and through the real binary (`grenzwacht spif check`,
//! `label check`, `label marking`, `label translate`, with the exit codes of docs/labels.md).
//!
//! Every SPIF in the repository — `spif/`, `tests/fixtures/spif/`, the spiffing conformance
//! data, the AuthzForce examples, any other — must have an expected file: a new SPIF without
//! expectations fails [`every_spif_of_the_test_set_has_expected_results`].
use std::collections::BTreeSet;
use std::path::{Path, PathBuf};
use std::process::{Command, Output};

use grenzwacht::spif::{Clearance, Label, LabelError, Oid, Severity, Spif, SpifError, SpifSet};
use serde::Deserialize;

/// Directories of the repository not searched for SPIFs (build output, VCS data).
const SKIP_DIRS: &[&str] = &["target", ".git", "node_modules"];
const EXPECTED_DIR: &str = "tests/fixtures/spif/expected";

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct Expected {
    spif: String,
    #[serde(default)]
    also: Vec<String>,
    load: String,
    #[serde(default)]
    errors: Vec<String>,
    warnings: Option<Vec<String>>,
    load_rule: String,
    #[serde(default, rename = "case")]
    cases: Vec<Case>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct Case {
    name: String,
    rule: String,
    label: Option<toml::Value>,
    label_file: Option<String>,
    lang: Option<String>,
    valid: Option<bool>,
    invalid: Option<String>,
    marking: Option<String>,
    clearance: Option<toml::Value>,
    clearance_file: Option<String>,
    access: Option<String>,
    denial: Option<String>,
    translate_to: Option<String>,
    translated_marking: Option<String>,
    translated_label: Option<toml::Value>,
    translate_error: Option<String>,
}

fn root() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR"))
}

fn path(rel: &str) -> String {
    root().join(rel).display().to_string()
}

fn expected_files() -> Vec<(String, Expected)> {
    let mut out = Vec::new();
    let mut entries: Vec<_> = std::fs::read_dir(root().join(EXPECTED_DIR))
        .unwrap()
        .map(|e| e.unwrap().path())
        .filter(|p| p.extension().is_some_and(|e| e == "toml"))
        .collect();
    entries.sort();
    for p in entries {
        let text = std::fs::read_to_string(&p).unwrap();
        let e: Expected =
            toml::from_str(&text).unwrap_or_else(|err| panic!("{}: {err}", p.display()));
        out.push((p.file_name().unwrap().to_string_lossy().into_owned(), e));
    }
    out
}

/// The reason class of a label error or of the CLI's error text for it (see the README).
fn class_of(msg: &str) -> String {
    let c = if msg.contains("Unknown policy") {
        "unknown_policy"
    } else if msg.contains("is ambiguous") {
        "ambiguous"
    } else if msg.contains("Unknown classification") {
        "unknown_classification"
    } else if msg.contains("Unknown category") {
        "unknown_category"
    } else if msg.contains("is obsolete") {
        "obsolete"
    } else if msg.contains("not valid before")
        || msg.contains("not valid after")
        || msg.contains("unparsable date")
    {
        "validity_date"
    } else if msg.contains("is not allowed with classification") {
        "excluded_class"
    } else if msg.contains(" excludes category ") {
        "excluded_category"
    } else if msg.contains(" requires ") {
        "required_category"
    } else if msg.contains("selection") {
        "selection"
    } else if msg.contains("privacy mark") {
        "privacy_mark"
    } else {
        return format!("unclassified: {msg}");
    };
    c.to_string()
}

fn toml_json(v: &toml::Value) -> serde_json::Value {
    serde_json::to_value(v).expect("TOML value as JSON")
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

fn run(args: &[String]) -> Output {
    Command::new(env!("CARGO_BIN_EXE_grenzwacht"))
        .args(args)
        .output()
        .expect("run grenzwacht")
}

fn stdout(o: &Output) -> String {
    String::from_utf8_lossy(&o.stdout).trim_end().to_string()
}

fn stderr(o: &Output) -> String {
    String::from_utf8_lossy(&o.stderr).to_string()
}

fn json(o: &Output) -> serde_json::Value {
    serde_json::from_str(&stdout(o)).unwrap_or(serde_json::Value::Null)
}

/// The label of a case through the library: parsed (and resolved) or the error.
fn library_label(set: &SpifSet, c: &Case) -> Result<Label, LabelError> {
    match (&c.label, &c.label_file) {
        (Some(v), None) => Label::from_json(&toml_json(v)),
        (None, Some(f)) => set.load_label_file(Path::new(&path(f))),
        _ => panic!("case {}: exactly one of label / label_file", c.name),
    }
}

fn library_clearance(set: &SpifSet, c: &Case) -> Option<Clearance> {
    match (&c.clearance, &c.clearance_file) {
        (Some(v), None) => Some(Clearance::from_json(&toml_json(v)).expect("clearance JSON")),
        (None, Some(f)) => Some(
            set.load_clearance_file(Path::new(&path(f)))
                .unwrap_or_else(|e| panic!("case {}: clearance {f}: {e}", c.name)),
        ),
        (None, None) => None,
        _ => panic!("case {}: at most one of clearance / clearance_file", c.name),
    }
}

fn check_library(set: &SpifSet, file: &str, c: &Case, t: &mut Tally) {
    let ctx = format!("{file} case {} (lib)", c.name);
    let label = library_label(set, c);
    let validity = label
        .clone()
        .and_then(|l| set.validate(&l).map(|_| l))
        .map_err(|e| e.to_string());
    match (&c.valid, &c.invalid) {
        (Some(true), None) => t.check(validity.is_ok(), || {
            format!("{ctx}: expected valid, got {validity:?}")
        }),
        (None, Some(class)) => {
            let got = validity.as_ref().err().map(|e| class_of(e));
            t.check(got.as_deref() == Some(class.as_str()), || {
                format!("{ctx}: expected invalid '{class}', got {validity:?}")
            })
        }
        _ => panic!("{ctx}: exactly one of valid = true / invalid = CLASS"),
    }
    if let Some(m) = &c.marking {
        let got = label
            .as_ref()
            .map_err(|e| e.to_string())
            .and_then(|l| set.marking(l, c.lang.as_deref()).map_err(|e| e.to_string()));
        t.check(got.as_deref() == Ok(m.as_str()), || {
            format!("{ctx}: marking expected {m:?}, got {got:?}")
        });
    }
    if let Some(to) = &c.translate_to {
        let to = Oid::parse(to).expect("translate_to OID");
        let got = label
            .as_ref()
            .map_err(|e| e.clone())
            .and_then(|l| set.translate(l, &to));
        match (&c.translated_marking, &c.translate_error) {
            (Some(m), None) => {
                let marking = got.as_ref().map_err(|e| e.to_string()).and_then(|l| {
                    if l.policy != to {
                        return Err(format!("translated into {}", l.policy));
                    }
                    set.marking(l, c.lang.as_deref()).map_err(|e| e.to_string())
                });
                t.check(marking.as_deref() == Ok(m.as_str()), || {
                    format!("{ctx}: translation expected {m:?}, got {marking:?}")
                });
                if let Some(want) = &c.translated_label {
                    let want = Label::from_json(&toml_json(want)).expect("translated_label");
                    t.check(got.as_ref() == Ok(&want), || {
                        format!("{ctx}: translated label expected {want:?}, got {got:?}")
                    });
                }
            }
            (None, Some(kind)) => {
                let got_kind = match &got {
                    Ok(l) => format!("translated: {l:?}"),
                    Err(LabelError::NoEquivalent { .. }) => "no_equivalent".into(),
                    Err(_) => "invalid".into(),
                };
                t.check(&got_kind == kind, || {
                    format!("{ctx}: translation expected error '{kind}', got {got:?}")
                });
            }
            _ => panic!("{ctx}: translate_to needs translated_marking or translate_error"),
        }
    }
    if let Some(clearance) = library_clearance(set, c) {
        let want = c.access.as_deref().expect("clearance without access");
        let got = match &label {
            Ok(l) => set.decide_access(l, &clearance).map_err(|d| d.code()),
            Err(_) => Err("invalid"),
        };
        let ok = match (want, &got) {
            ("grant", Ok(())) => true,
            ("deny", Err(code)) => Some(*code) == c.denial.as_deref(),
            _ => false,
        };
        t.check(ok, || {
            format!("{ctx}: access expected {want} {:?}, got {got:?}", c.denial)
        });
    }
}

/// A file argument for the CLI: the named file, or the inline JSON written to `dir`.
fn cli_file(
    dir: &Path,
    inline: &Option<toml::Value>,
    file: &Option<String>,
    stem: String,
) -> Option<String> {
    match (inline, file) {
        (Some(v), _) => {
            let p = dir.join(format!("{stem}.json"));
            std::fs::write(&p, serde_json::to_vec(&toml_json(v)).unwrap()).unwrap();
            Some(p.display().to_string())
        }
        (None, Some(f)) => Some(path(f)),
        (None, None) => None,
    }
}

fn check_cli(
    spif_args: &[String],
    set: &SpifSet,
    dir: &Path,
    file: &str,
    n: usize,
    c: &Case,
    t: &mut Tally,
) {
    let ctx = format!("{file} case {} (cli)", c.name);
    let label = cli_file(dir, &c.label, &c.label_file, format!("label-{n}")).unwrap();
    let cmd = |sub: &str, extra: &[&str]| -> Output {
        let mut a: Vec<String> = vec!["label".into(), sub.into()];
        a.extend(spif_args.iter().cloned());
        a.push("--label".into());
        a.push(label.clone());
        a.extend(extra.iter().map(|s| s.to_string()));
        run(&a)
    };
    let lang: Vec<&str> = match &c.lang {
        Some(l) => vec!["--lang", l.as_str()],
        None => vec![],
    };
    // Validity: `label check` without a clearance.
    let o = cmd("check", &[]);
    // An unknown policy and an ambiguous STANAG 4774 name are input errors (exit 2).
    let input_error = matches!(c.invalid.as_deref(), Some("unknown_policy" | "ambiguous"));
    let want_code = if c.valid == Some(true) {
        0
    } else if input_error {
        2
    } else {
        1
    };
    t.check(o.status.code() == Some(want_code), || {
        format!(
            "{ctx}: label check exit {:?}, expected {want_code}: {}",
            o.status.code(),
            stderr(&o)
        )
    });
    if let Some(class) = &c.invalid {
        if input_error {
            let want = if class == "ambiguous" {
                "is ambiguous"
            } else {
                "Unknown policy"
            };
            t.check(stderr(&o).contains(want) && o.stdout.is_empty(), || {
                format!("{ctx}: stderr {}", stderr(&o))
            });
        } else {
            let v = json(&o);
            let got = v["error"].as_str().map(class_of);
            t.check(
                v["valid"] == false && got.as_deref() == Some(class.as_str()),
                || format!("{ctx}: label check JSON {v}, expected invalid '{class}'"),
            );
        }
    } else {
        let v = json(&o);
        t.check(v["valid"] == true && v["access"].is_null(), || {
            format!("{ctx}: label check JSON {v}")
        });
    }
    // Marking: `label marking` prints it for a valid label and refuses an invalid one.
    let o = cmd("marking", &lang);
    match (&c.marking, c.valid == Some(true)) {
        (Some(m), _) => t.check(o.status.code() == Some(0) && &stdout(&o) == m, || {
            format!(
                "{ctx}: label marking exit {:?} {:?}, expected {m:?}: {}",
                o.status.code(),
                stdout(&o),
                stderr(&o)
            )
        }),
        (None, true) => t.check(o.status.code() == Some(0), || {
            format!("{ctx}: label marking exit {:?}", o.status.code())
        }),
        (None, false) => t.check(
            o.status.code() == Some(want_code) && o.stdout.is_empty(),
            || {
                format!(
                    "{ctx}: label marking of an invalid label: exit {:?}, stdout {:?}",
                    o.status.code(),
                    stdout(&o)
                )
            },
        ),
    }
    // Translation.
    if let Some(to) = &c.translate_to {
        let mut extra = vec!["--to", to.as_str()];
        extra.extend(lang.iter().copied());
        let o = cmd("translate", &extra);
        match (&c.translated_marking, &c.translate_error) {
            (Some(m), _) => {
                let v = json(&o);
                t.check(
                    o.status.code() == Some(0) && v["marking"] == m.as_str(),
                    || {
                        format!(
                            "{ctx}: label translate exit {:?} {v}, expected {m:?}: {}",
                            o.status.code(),
                            stderr(&o)
                        )
                    },
                );
                // The STANAG 4774 label it prints is the translated label.
                if let Some(want) = &c.translated_label {
                    let want = Label::from_json(&toml_json(want)).expect("translated_label");
                    let got = v["label"]
                        .as_str()
                        .ok_or_else(|| "no label".to_string())
                        .and_then(|x| set.parse_label(x.as_bytes()).map_err(|e| e.to_string()));
                    t.check(got.as_ref() == Ok(&want), || {
                        format!("{ctx}: label translate printed {got:?}, expected {want:?}")
                    });
                }
            }
            (None, Some(kind)) => {
                let no_eq = stderr(&o).contains("no equivalent in policy");
                t.check(
                    o.status.code() == Some(1)
                        && o.stdout.is_empty()
                        && no_eq == (kind == "no_equivalent"),
                    || {
                        format!(
                            "{ctx}: label translate exit {:?}, expected {kind}: {}",
                            o.status.code(),
                            stderr(&o)
                        )
                    },
                )
            }
            (None, None) => {}
        }
    }
    // Access: `label check --clearance` (translates into the clearance's policy itself).
    if let Some(clearance) = cli_file(
        dir,
        &c.clearance,
        &c.clearance_file,
        format!("clearance-{n}"),
    ) {
        let o = cmd("check", &["--clearance", &clearance]);
        let v = json(&o);
        let grant = c.access.as_deref() == Some("grant");
        let code_ok = o.status.code() == Some(if grant { 0 } else { 1 });
        let ok = if grant {
            code_ok && v["access"] == "grant" && v["reason"].is_null()
        } else {
            let denial = c.denial.as_deref().unwrap_or("?");
            let reason = v["reason"].as_str().unwrap_or("");
            code_ok
                && v["access"] == "deny"
                && reason.starts_with(&format!("{denial}: "))
                && stderr(&o).contains(reason)
        };
        t.check(ok, || {
            format!(
                "{ctx}: label check --clearance exit {:?} {v}, expected {:?} {:?}: {}",
                o.status.code(),
                c.access,
                c.denial,
                stderr(&o)
            )
        });
    }
}

/// Loads the SPIF of an expected file and checks the load outcome (library and `spif check`).
fn check_load(file: &str, e: &Expected, t: &mut Tally) -> Option<SpifSet> {
    let ctx = format!("{file} load ({})", e.load_rule);
    let loaded = Spif::load(&root().join(&e.spif));
    let o = run(&["spif".into(), "check".into(), path(&e.spif)]);
    match e.load.as_str() {
        "ok" => {
            t.check(o.status.code() == Some(0), || {
                format!(
                    "{ctx}: spif check exit {:?}: {}",
                    o.status.code(),
                    stderr(&o)
                )
            });
            let spif = match loaded {
                Ok(s) => s,
                Err(err) => {
                    t.check(false, || format!("{ctx}: does not load: {err}"));
                    return None;
                }
            };
            if let Some(want) = &e.warnings {
                let got: BTreeSet<&str> = spif.warnings.iter().map(|d| d.code).collect();
                let want: BTreeSet<&str> = want.iter().map(String::as_str).collect();
                t.check(got == want, || {
                    format!(
                        "{ctx}: warnings {got:?}, expected {want:?}: {:#?}",
                        spif.warnings
                    )
                });
            }
            let mut set = SpifSet::new();
            set.insert(spif).unwrap();
            for a in &e.also {
                set.insert(Spif::load(&root().join(a)).unwrap_or_else(|err| panic!("{a}: {err}")))
                    .unwrap();
            }
            let eq_errors: Vec<_> = set
                .check_equivalences()
                .into_iter()
                .filter(|d| d.severity == Severity::Error)
                .collect();
            t.check(eq_errors.is_empty(), || {
                format!("{ctx}: equivalence errors {eq_errors:?}")
            });
            Some(set)
        }
        "error" => {
            t.check(o.status.code() == Some(1), || {
                format!("{ctx}: spif check exit {:?}", o.status.code())
            });
            match loaded {
                Err(SpifError::Invalid { diagnostics }) => {
                    for code in &e.errors {
                        let found = diagnostics
                            .iter()
                            .any(|d| d.severity == Severity::Error && d.code == code.as_str());
                        t.check(found, || {
                            format!("{ctx}: no error {code} in {diagnostics:?}")
                        });
                        t.check(stderr(&o).contains(&format!("error[{code}]")), || {
                            format!("{ctx}: spif check stderr lacks {code}: {}", stderr(&o))
                        });
                    }
                }
                other => t.check(false, || {
                    format!("{ctx}: expected errors {:?}, got {other:?}", e.errors)
                }),
            }
            None
        }
        "xml" => {
            t.check(
                o.status.code() == Some(1) && stderr(&o).contains("not well-formed XML"),
                || {
                    format!(
                        "{ctx}: spif check exit {:?}: {}",
                        o.status.code(),
                        stderr(&o)
                    )
                },
            );
            t.check(matches!(loaded, Err(SpifError::Xml(_))), || {
                format!("{ctx}: expected an XML error, got {:?}", loaded.err())
            });
            None
        }
        other => panic!("{file}: load = {other:?} (ok, error, xml)"),
    }
}

#[test]
fn expected_results_through_library_and_cli() {
    let dir = tempfile::tempdir().unwrap();
    let mut t = Tally::default();
    let (mut files, mut cases) = (0, 0);
    let mut seen = BTreeSet::new();
    // (file, --spif arguments, expected, first case number) for the binary's runs.
    let mut cli_runs = Vec::new();
    for (file, e) in expected_files() {
        files += 1;
        let Some(set) = check_load(&file, &e, &mut t) else {
            assert!(
                e.cases.is_empty(),
                "{file}: cases for a SPIF that does not load"
            );
            continue;
        };
        let mut spif_args = vec!["--spif".to_string(), path(&e.spif)];
        for a in &e.also {
            spif_args.push("--spif".into());
            spif_args.push(path(a));
        }
        for c in &e.cases {
            assert!(
                seen.insert((file.clone(), c.name.clone())),
                "{file}: case {} twice",
                c.name
            );
            assert!(!c.rule.trim().is_empty(), "{file} case {}: no rule", c.name);
            check_library(&set, &file, c, &mut t);
        }
        cli_runs.push((file, spif_args, e, cases, set));
        cases += cli_runs.last().unwrap().2.cases.len();
    }
    // The binary's runs (about five per case) dominate the time: a few threads share them.
    let next = std::sync::atomic::AtomicUsize::new(0);
    let tallies: Vec<Tally> = std::thread::scope(|s| {
        let workers: Vec<_> = (0..4)
            .map(|_| {
                s.spawn(|| {
                    let mut t = Tally::default();
                    loop {
                        let i = next.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
                        let Some((file, spif_args, e, first, set)) = cli_runs.get(i) else {
                            return t;
                        };
                        for (k, c) in e.cases.iter().enumerate() {
                            check_cli(spif_args, set, dir.path(), file, first + k, c, &mut t);
                        }
                    }
                })
            })
            .collect();
        workers.into_iter().map(|w| w.join().unwrap()).collect()
    });
    for w in tallies {
        t.checks += w.checks;
        t.failures.extend(w.failures);
    }
    println!(
        "expected results: {files} SPIFs, {cases} cases, {} checks, {} failures",
        t.checks,
        t.failures.len()
    );
    for f in &t.failures {
        println!("FAIL {f}");
    }
    assert!(
        t.failures.is_empty(),
        "{} of {} checks failed:\n{}",
        t.failures.len(),
        t.checks,
        t.failures.join("\n")
    );
    assert!(files >= 18 && cases >= 200, "{files} files, {cases} cases");
}

/// Whether `p` holds a SPIF (its root element is `SPIF`, with or without a prefix), judged
/// from the text so that SPIFs that are not well-formed count too.
fn is_spif(p: &Path) -> bool {
    let Ok(text) = std::fs::read(p) else {
        return false;
    };
    let text = String::from_utf8_lossy(&text);
    text.contains("<SPIF") || text.contains(":SPIF ") || text.contains(":SPIF\n")
}

/// Every `.xml` file under `dir` (recursively) that holds a SPIF, relative to the crate root.
fn spifs_under(dir: &Path, out: &mut BTreeSet<String>) {
    for entry in std::fs::read_dir(dir).unwrap() {
        let p = entry.unwrap().path();
        let name = p.file_name().unwrap().to_string_lossy();
        if p.is_dir() {
            if !SKIP_DIRS.contains(&name.as_ref()) {
                spifs_under(&p, out);
            }
        } else if name.ends_with(".xml") && is_spif(&p) {
            out.insert(p.strip_prefix(root()).unwrap().display().to_string());
        }
    }
}

/// The test set is every SPIF in the repository: `spif/`, `tests/fixtures/spif/`, the
/// spiffing conformance data, the AuthzForce examples, and any SPIF added anywhere later.
#[test]
fn every_spif_of_the_test_set_has_expected_results() {
    let mut spifs = BTreeSet::new();
    spifs_under(&root(), &mut spifs);
    let mut covered = BTreeSet::new();
    for (file, e) in expected_files() {
        assert!(
            root().join(&e.spif).is_file(),
            "{file}: {} does not exist",
            e.spif
        );
        assert!(
            covered.insert(e.spif.clone()),
            "{file}: {} has a second expected file",
            e.spif
        );
    }
    let missing: Vec<_> = spifs.difference(&covered).collect();
    assert!(
        missing.is_empty(),
        "SPIFs without expected results in {EXPECTED_DIR}: {missing:?}"
    );
    // The test set as it stands: a SPIF that disappears must be noticed too.
    assert!(spifs.len() >= 18, "{spifs:?}");
    assert_eq!(spifs, covered);
}
