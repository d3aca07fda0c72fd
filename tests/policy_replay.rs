//! `grenzwacht policy replay`, run as the real binary: a recorded corpus through a candidate
//! rule set that changes one rule lists exactly the events whose verdict changes.
use std::collections::BTreeSet;
use std::path::{Path, PathBuf};
use std::process::{Command, Output};

use grenzwacht::policy::dlp::layer::DlpPolicy;
use grenzwacht::policy::dlp::RuleSet;
use grenzwacht::policy::whatif::{judge, ReplayItem};
use grenzwacht::policy::{Layers, UnitVerdict};
use grenzwacht::telemetry::Direction;
use serde_json::{json, Value};

/// The binary, linked once to a private place (the target dir may be shared with other builds).
fn bin() -> Command {
    static COPY: std::sync::OnceLock<PathBuf> = std::sync::OnceLock::new();
    let path = COPY.get_or_init(|| {
        let dir = Path::new(env!("CARGO_TARGET_TMPDIR"));
        let to = dir.join(format!("grenzwacht-policy-replay-{}", std::process::id()));
        let _ = std::fs::remove_file(&to);
        if std::fs::hard_link(env!("CARGO_BIN_EXE_grenzwacht"), &to).is_err() {
            std::fs::copy(env!("CARGO_BIN_EXE_grenzwacht"), &to).unwrap();
        }
        to
    });
    Command::new(path)
}

fn run(args: &[&str]) -> Output {
    bin().args(args).output().expect("run grenzwacht")
}

fn shipped() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("policies")
}

/// The texts of the corpus: clean, marked, personal data, weak markings.
const TEXTS: &[&str] = &[
    "Guten Morgen, Besprechung um zehn",
    "Lagebericht: GEHEIM, nicht weitergeben",
    "Das ist STRENG GEHEIM",
    "VS-VERTRAULICH und außerdem GEHEIM",
    "Bitte überweise an DE89370400440532013000",
    "Das bleibt geheim unter uns",
    "GEHEIM",
    "Kantine hat heute Suppe",
    "IBAN DE89370400440532013000 und GEHEIM",
];

fn pdu(i: usize, text: &str) -> Value {
    json!({
        "type": "m.room.message", "room_id": "!lage:hs1.test", "sender": "@alice:hs1.test",
        "origin_server_ts": 1_700_000_000_000u64 + i as u64, "depth": i + 3,
        "auth_events": [], "prev_events": [], "hashes": {"sha256": "x"}, "signatures": {},
        "content": {"msgtype": "m.text", "body": text},
    })
}

/// A copy of the shipped rule set with `marking.geheim` turned from redact into tag.
fn candidate(dir: &Path) -> PathBuf {
    let to = dir.join("candidate");
    std::fs::create_dir_all(&to).unwrap();
    for e in std::fs::read_dir(shipped()).unwrap().flatten() {
        let name = e.file_name();
        if !name.to_string_lossy().ends_with(".toml") {
            continue;
        }
        let mut text = std::fs::read_to_string(e.path()).unwrap();
        if name == "markings.toml" {
            let at = text.find("id = \"marking.geheim\"").expect("shipped rule");
            let action = at + text[at..].find("action = \"redact\"").unwrap();
            text.replace_range(
                action..action + "action = \"redact\"".len(),
                "action = \"tag\"",
            );
        }
        std::fs::write(to.join(name), text).unwrap();
    }
    to
}

fn layers(dir: &Path) -> Layers {
    let set = RuleSet::load_dir(dir).unwrap_or_else(|d| panic!("{d}"));
    Layers::new().with("dlp", std::sync::Arc::new(DlpPolicy::new(set.engine())))
}

fn item(i: usize, text: &str) -> ReplayItem {
    ReplayItem {
        line: i + 1,
        event: pdu(i, text),
        direction: Direction::Outbound,
        peer: Some("hs2.test".into()),
        event_id: Some(format!("$ev{i}")),
        room_version: None,
        verdict: None,
        rules: None,
    }
}

fn changes(o: &Output) -> Vec<Value> {
    assert!(
        o.status.success(),
        "exit {:?}: {}",
        o.status,
        String::from_utf8_lossy(&o.stderr)
    );
    String::from_utf8_lossy(&o.stdout)
        .lines()
        .map(|l| serde_json::from_str(l).expect("a JSON line"))
        .collect()
}

#[test]
fn replay_lists_exactly_the_events_whose_verdict_changes() {
    let tmp = tempfile::tempdir().unwrap();
    let cand = candidate(tmp.path());
    // The expectation, from the library's own judgement of each event under both sets.
    let (old, new) = (layers(&shipped()), layers(&cand));
    let mut expected = BTreeSet::new();
    for (i, t) in TEXTS.iter().enumerate() {
        let (a, b) = (
            judge(&old, &item(i, t)).unwrap(),
            judge(&new, &item(i, t)).unwrap(),
        );
        if a.verdict != b.verdict {
            expected.insert(format!("$ev{i}"));
        }
    }
    // Independent of the library: the changed rule's keyword decides alone in exactly these.
    let by_text: BTreeSet<String> = TEXTS
        .iter()
        .enumerate()
        .filter(|(_, t)| *t == &"GEHEIM" || t.starts_with("Lagebericht"))
        .map(|(i, _)| format!("$ev{i}"))
        .collect();
    assert_eq!(expected, by_text);

    // 1. A corpus without recorded verdicts: the current set computes "old".
    let corpus = tmp.path().join("events.jsonl");
    let lines: Vec<String> = TEXTS
        .iter()
        .enumerate()
        .map(|(i, t)| {
            json!({"event": pdu(i, t), "direction": "outbound", "peer": "hs2.test", "event_id": format!("$ev{i}")})
                .to_string()
        })
        .collect();
    std::fs::write(&corpus, lines.join("\n") + "\n").unwrap();
    let out = run(&[
        "policy",
        "replay",
        "--policies",
        cand.to_str().unwrap(),
        "--current",
        shipped().to_str().unwrap(),
        "--events",
        corpus.to_str().unwrap(),
    ]);
    let got = changes(&out);
    let ids: BTreeSet<String> = got
        .iter()
        .map(|c| c["event_id"].as_str().unwrap().to_string())
        .collect();
    assert_eq!(ids, expected, "{got:#?}");
    for c in &got {
        assert_eq!(c["old"]["verdict"], "redact", "{c}");
        assert_eq!(c["old"]["rule"], "dlp:marking.geheim", "{c}");
        assert!(c["old"]["rules"]
            .as_array()
            .unwrap()
            .contains(&json!("marking.geheim")));
        assert_eq!(c["new"]["verdict"], "allow", "{c}");
        assert_eq!(
            c["new"]["rules"],
            json!([]),
            "a tag is no deciding rule: {c}"
        );
        assert_eq!(c["room_id"], "!lage:hs1.test");
        assert_eq!(c["direction"], "outbound");
    }
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(
        stderr.contains(&format!(
            "{} of {} decisions change",
            expected.len(),
            TEXTS.len()
        )),
        "{stderr}"
    );

    // 2. A recorded corpus (verdict and rules as the guard decided them): no current set needed.
    let recorded: Vec<String> = TEXTS
        .iter()
        .enumerate()
        .map(|(i, t)| {
            let d = judge(&old, &item(i, t)).unwrap();
            json!({"event": pdu(i, t), "event_id": format!("$ev{i}"), "peer": "hs2.test",
                   "verdict": d.verdict.as_str(), "rules": d.rules})
            .to_string()
        })
        .collect();
    let rec_file = tmp.path().join("recorded.jsonl");
    std::fs::write(&rec_file, recorded.join("\n")).unwrap();
    let got = changes(&run(&[
        "policy",
        "replay",
        "--policies",
        cand.to_str().unwrap(),
        "--events",
        rec_file.to_str().unwrap(),
    ]));
    let ids: BTreeSet<String> = got
        .iter()
        .map(|c| c["event_id"].as_str().unwrap().to_string())
        .collect();
    assert_eq!(ids, expected);

    // 3. The same rule set as candidate: nothing changes.
    let got = changes(&run(&[
        "policy",
        "replay",
        "--policies",
        shipped().to_str().unwrap(),
        "--events",
        rec_file.to_str().unwrap(),
    ]));
    assert!(got.is_empty(), "{got:#?}");
}

#[test]
fn replay_names_unusable_input_and_fails() {
    let tmp = tempfile::tempdir().unwrap();
    let corpus = tmp.path().join("events.jsonl");
    let clean = json!({"event": pdu(0, "hallo"), "verdict": "allow", "rules": []}).to_string();
    let unrecorded = json!({"event": pdu(1, "GEHEIM"), "room_version": "10"}).to_string();
    std::fs::write(&corpus, format!("{clean}\n{unrecorded}\n")).unwrap();
    let p = shipped();
    let base = ["policy", "replay", "--policies", p.to_str().unwrap()];
    // No recorded verdict on line 2 and no current set.
    let o = run(&[&base[..], &["--events", corpus.to_str().unwrap()]].concat());
    assert!(!o.status.success());
    assert!(
        String::from_utf8_lossy(&o.stderr).contains("line 2: no recorded verdict"),
        "{}",
        String::from_utf8_lossy(&o.stderr)
    );
    // With the current set: line 2's event id is its reference hash under room version 10.
    let o = run(&[
        &base[..],
        &[
            "--current",
            p.to_str().unwrap(),
            "--events",
            corpus.to_str().unwrap(),
        ],
    ]
    .concat());
    assert!(changes(&o).is_empty());
    // An audit directory that is not an audit log: a clear error, non-zero.
    let not_a_log = tmp.path().join("not-a-log");
    std::fs::create_dir_all(&not_a_log).unwrap();
    std::fs::write(not_a_log.join(audit_segment_name()), "garbage\n").unwrap();
    let o = run(&[&base[..], &["--audit", not_a_log.to_str().unwrap()]].concat());
    assert!(!o.status.success());
    assert!(
        String::from_utf8_lossy(&o.stderr).contains("audit log"),
        "{}",
        String::from_utf8_lossy(&o.stderr)
    );
    // A recorded verdict that differs from the candidate's: the computed event id is listed.
    let lied =
        json!({"event": pdu(1, "GEHEIM"), "room_version": "10", "verdict": "allow"}).to_string();
    std::fs::write(&corpus, lied).unwrap();
    let got = changes(&run(
        &[&base[..], &["--events", corpus.to_str().unwrap()]].concat()
    ));
    assert_eq!(got.len(), 1);
    let id = got[0]["event_id"].as_str().unwrap();
    assert!(id.starts_with('$') && id.len() == 44, "{id}");
    assert_eq!(got[0]["line"], 1);
    assert_eq!(got[0]["new"]["verdict"], UnitVerdict::Redact.as_str());
}

/// The name of the first segment of an audit log.
fn audit_segment_name() -> String {
    grenzwacht::audit::segment::name(0)
}

/// The same corpus recorded in a real audit log (decision records with the stored event, as
/// with `[audit] store_content = true`, plus one record without it): `--audit` lists exactly
/// the events whose verdict changes, named by event id and the record's seq.
#[test]
fn replay_from_an_audit_log_lists_exactly_the_changed_decisions() {
    use grenzwacht::audit::{AuditConfig, Auditor, DecisionRecord, Record, Unit, Verdict};
    let tmp = tempfile::tempdir().unwrap();
    let key = grenzwacht::keys::SigningKey::generate("audit1").unwrap();
    let key_file = tmp.path().join("audit.key");
    std::fs::write(&key_file, key.to_synapse_string()).unwrap();
    let dir = tmp.path().join("audit");
    let cfg = AuditConfig {
        dir: dir.clone(),
        key_file,
        store_content: true,
        ..AuditConfig::default()
    };
    let old = layers(&shipped());
    let cand = candidate(tmp.path());
    let new = layers(&cand);
    let verdict = |v: UnitVerdict| match v {
        UnitVerdict::Allow => Verdict::Allow,
        UnitVerdict::Redact => Verdict::Redact,
        UnitVerdict::Hold => Verdict::Hold,
        UnitVerdict::Reject => Verdict::Reject,
        other => panic!("{other:?}"),
    };
    let mut expected = BTreeSet::new();
    let mut records = Vec::new();
    for (i, t) in TEXTS.iter().enumerate() {
        let it = item(i, t);
        let d = judge(&old, &it).unwrap();
        if d.verdict != judge(&new, &it).unwrap().verdict {
            expected.insert(format!("$ev{i}"));
        }
        records.push(Record::from(DecisionRecord {
            unit: Unit::Pdu,
            txn_id: Some("t1".into()),
            event_id: Some(format!("$ev{i}")),
            room_id: Some("!lage:hs1.test".into()),
            sender: Some("@alice:hs1.test".into()),
            origin: "hs1.test".into(),
            destination: "hs2.test".into(),
            direction: grenzwacht::audit::Direction::Outbound,
            endpoint: "/_matrix/federation/v1/send/{txnId}".into(),
            verdict: verdict(d.verdict),
            effect: None,
            rules: vec![],
            label: None,
            clearance: None,
            policy_hash: None,
            content_sha256: None,
            content: Some(pdu(i, t)),
        }));
    }
    assert!(!expected.is_empty());
    // A decision record without the event: skipped, said so.
    let bare = serde_json::from_value::<DecisionRecord>(serde_json::Value::Object(
        records[1].data().clone(),
    ))
    .unwrap();
    records.push(Record::from(DecisionRecord {
        content: None,
        event_id: Some("$bare".into()),
        ..bare
    }));
    tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .unwrap()
        .block_on(async {
            let a = Auditor::open(&cfg).unwrap();
            a.append_all(records).await.unwrap();
            a.close().await.unwrap();
        });
    let out = run(&[
        "policy",
        "replay",
        "--policies",
        cand.to_str().unwrap(),
        "--audit",
        dir.to_str().unwrap(),
    ]);
    let got = changes(&out);
    let ids: BTreeSet<String> = got
        .iter()
        .map(|c| c["event_id"].as_str().unwrap().to_string())
        .collect();
    assert_eq!(ids, expected, "{got:#?}");
    for c in &got {
        assert_eq!(c["old"]["verdict"], "redact");
        assert_eq!(c["new"]["verdict"], "allow");
        assert!(c["line"].as_u64().unwrap() >= 2, "the record's seq: {c}");
    }
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(
        stderr.contains("1 decision record(s) without a stored event skipped"),
        "{stderr}"
    );
    assert!(
        stderr.contains(&format!(
            "{} of {} decisions change",
            expected.len(),
            TEXTS.len()
        )),
        "{stderr}"
    );
}
