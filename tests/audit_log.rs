//! The audit log on real files and through the real binary: `audit verify` on an intact log
//! and on each kind of tampering, retention, the fail-closed state, query filters, export
//! formats (golden lines) and live syslog forwarding over TLS to a local collector.
use std::io::{BufRead as _, Read as _, Write as _};
use std::path::{Path, PathBuf};
use std::process::Command;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use base64::Engine as _;
use grenzwacht::audit::format::{self, canonical, hashed_form, sha256_hex, signed_form};
use grenzwacht::audit::{
    segment, AdminRecord, AuditConfig, AuditError, Auditor, DecisionRecord, Direction, Durability,
    Record, RuleMatch, SyslogConfig, Unit, Verdict,
};
use grenzwacht::keys::SigningKey;
use serde_json::{json, Map, Value};

const BIN: &str = env!("CARGO_BIN_EXE_grenzwacht");

fn run(args: &[&str]) -> (i32, String, String) {
    let out = Command::new(BIN)
        .args(args)
        .output()
        .expect("run grenzwacht");
    (
        out.status.code().unwrap_or(-1),
        String::from_utf8_lossy(&out.stdout).into(),
        String::from_utf8_lossy(&out.stderr).into(),
    )
}

fn rt() -> tokio::runtime::Runtime {
    tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .unwrap()
}

/// An audit key made by the real `keys generate --kind audit` (key file, public key file).
fn audit_key(dir: &Path, name: &str) -> (PathBuf, PathBuf) {
    let key = dir.join(name);
    let (code, out, err) = run(&[
        "keys",
        "generate",
        "--kind",
        "audit",
        "--version",
        "audit1",
        "--out",
        key.to_str().unwrap(),
    ]);
    assert_eq!(code, 0, "{out}{err}");
    let public = dir.join(format!("{name}.pub"));
    assert!(public.exists());
    (key, public)
}

fn config(dir: &Path, key: &Path) -> AuditConfig {
    AuditConfig {
        dir: dir.to_path_buf(),
        key_file: key.to_path_buf(),
        ..AuditConfig::default()
    }
}

const VERDICTS: [Verdict; 4] = [
    Verdict::Allow,
    Verdict::Redact,
    Verdict::Hold,
    Verdict::Reject,
];

fn decision(i: usize) -> Record {
    let verdict = VERDICTS[i % 4];
    Record::from(DecisionRecord {
        unit: Unit::Pdu,
        txn_id: Some(format!("txn{i}")),
        event_id: Some(format!("$event{i}")),
        room_id: Some(format!("!room{}:hs1", i % 3)),
        sender: Some(format!("@user{}:hs1", i % 4)),
        origin: "hs1".into(),
        destination: if i % 2 == 1 { "hs2" } else { "hs3" }.into(),
        direction: Direction::Outbound,
        endpoint: "/_matrix/federation/v1/send/{txnId}".into(),
        verdict,
        effect: None,
        rules: if verdict == Verdict::Allow {
            vec![]
        } else {
            vec![RuleMatch {
                rule: format!("rule-{}", i % 5),
                field: "content.body".into(),
                excerpt: "…se*****et…".into(),
            }]
        },
        label: Some(if i % 2 == 1 { "VS-NfD" } else { "OFFEN" }.into()),
        clearance: Some("VS-NfD".into()),
        policy_hash: Some("p".repeat(16)),
        content_sha256: Some(grenzwacht::audit::content_sha256(format!("{i}").as_bytes())),
        content: None,
    })
}

/// A closed log of 60 decisions over several segments with checkpoints in between.
fn build_log(dir: &Path, key: &Path) {
    let mut cfg = config(dir, key);
    cfg.segment_max_bytes = 4096;
    rt().block_on(async {
        let a = Auditor::open(&cfg).unwrap();
        for i in 0..60 {
            a.append(decision(i)).await.unwrap();
            if i % 20 == 19 {
                a.checkpoint().await.unwrap();
            }
        }
        a.close().await.unwrap();
    });
}

/// Every record line of the log: (segment path, line index, text).
fn lines(dir: &Path) -> Vec<(PathBuf, usize, String)> {
    let mut out = Vec::new();
    for s in segment::list(dir).unwrap() {
        let text = std::fs::read_to_string(&s.path).unwrap();
        for (i, l) in text.lines().enumerate() {
            out.push((s.path.clone(), i, l.to_owned()));
        }
    }
    out
}

fn write_lines(dir: &Path, all: &[(PathBuf, usize, String)]) {
    for s in segment::list(dir).unwrap() {
        let text: String = all
            .iter()
            .filter(|(p, _, _)| *p == s.path)
            .map(|(_, _, l)| format!("{l}\n"))
            .collect();
        std::fs::write(&s.path, text).unwrap();
    }
}

fn seq_of(line: &str) -> u64 {
    serde_json::from_str::<Value>(line).unwrap()["seq"]
        .as_u64()
        .unwrap()
}

/// What a forger without the key can do: recompute every hash and `prev` after an edit, and
/// optionally re-sign checkpoints with a key of their own.
fn rechain(all: &mut [(PathBuf, usize, String)], resign: Option<&SigningKey>) {
    let mut prev: Option<String> = None;
    for (_, _, l) in all.iter_mut() {
        let mut m: Map<String, Value> = serde_json::from_str(l).unwrap();
        if let Some(p) = &prev {
            m.insert("prev".into(), json!(p));
        }
        if let (Some(k), Some("checkpoint")) = (resign, m["kind"].as_str()) {
            let sig = base64::engine::general_purpose::STANDARD_NO_PAD
                .encode(k.sign(signed_form(&m).as_bytes()));
            m["data"]["sig"] = json!(sig);
            m["data"]["key_id"] = json!(k.key_id());
        }
        let h = sha256_hex(hashed_form(&m).as_bytes());
        m.insert("hash".into(), json!(h));
        *l = canonical(&Value::Object(m));
        prev = Some(h);
    }
}

fn verify(dir: &Path, public: &Path, extra: &[&str]) -> (i32, String) {
    let mut args = vec![
        "audit",
        "verify",
        dir.to_str().unwrap(),
        "--key",
        public.to_str().unwrap(),
    ];
    args.extend_from_slice(extra);
    let (code, out, err) = run(&args);
    (code, format!("{out}{err}"))
}

fn assert_fails_at(dir: &Path, public: &Path, seq: u64, why: &str) {
    let (code, out) = verify(dir, public, &[]);
    assert_eq!(code, 1, "{out}");
    assert!(
        out.contains(&format!("FAIL: record seq {seq} ")) && out.contains(why),
        "expected a failure at seq {seq} ({why}): {out}"
    );
}

/// A fresh copy of an intact log to tamper with.
struct Fixture {
    tmp: tempfile::TempDir,
    dir: PathBuf,
    key: PathBuf,
    public: PathBuf,
}

fn fixture() -> Fixture {
    let tmp = tempfile::tempdir().unwrap();
    let (key, public) = audit_key(tmp.path(), "audit.key");
    let dir = tmp.path().join("audit");
    build_log(&dir, &key);
    Fixture {
        tmp,
        dir,
        key,
        public,
    }
}

#[test]
fn verify_passes_on_an_intact_log_of_several_segments_and_checkpoints() {
    let f = fixture();
    let segs = segment::list(&f.dir).unwrap();
    assert!(segs.len() >= 4, "several segments: {}", segs.len());
    let (code, out) = verify(&f.dir, &f.public, &[]);
    assert_eq!(code, 0, "{out}");
    let n = lines(&f.dir).len();
    // startup + checkpoint, 60 decisions, 3 requested checkpoints, shutdown + checkpoint.
    assert_eq!(n, 2 + 60 + 3 + 2);
    assert!(
        out.contains(&format!("OK: {n} records (seq 0..={})", n - 1)),
        "{out}"
    );
    assert!(
        out.contains(&format!("{} segments, 5 checkpoints", segs.len())),
        "{out}"
    );
    assert!(out.contains("verified with ed25519:audit1"), "{out}");
    // The public key can also come from the config's key file.
    let conf = f.tmp.path().join("g.toml");
    std::fs::write(
        &conf,
        format!(
            "[audit]\ndir = \"{}\"\nkey_file = \"{}\"\n",
            f.dir.display(),
            f.key.display()
        ),
    )
    .unwrap();
    let (code, out, _) = run(&[
        "audit",
        "verify",
        f.dir.to_str().unwrap(),
        "--config",
        conf.to_str().unwrap(),
    ]);
    assert_eq!(code, 0, "{out}");
    // Without a key it says what it did not check.
    let (code, out, _) = run(&["audit", "verify", f.dir.to_str().unwrap()]);
    assert_eq!(code, 0, "{out}");
    assert!(out.contains("NOT verified"), "{out}");
    // A check that cannot run: exit 2.
    let missing = f.tmp.path().join("missing");
    let (code, _, err) = run(&["audit", "verify", missing.to_str().unwrap()]);
    assert_eq!(code, 2, "{err}");
    let nokey = f.tmp.path().join("none.pub");
    let (code, _, err) = run(&[
        "audit",
        "verify",
        f.dir.to_str().unwrap(),
        "--key",
        nokey.to_str().unwrap(),
    ]);
    assert_eq!(code, 2, "{err}");
}

#[test]
fn check_validates_the_audit_section() {
    let tmp = tempfile::tempdir().unwrap();
    let (key, _) = audit_key(tmp.path(), "audit.key");
    let store = tmp.path().join("gw.db");
    let conf = tmp.path().join("g.toml");
    let write = |dir: &Path, key: &Path| {
        std::fs::write(
            &conf,
            format!(
                "[store]\npath = \"{}\"\n[audit]\ndir = \"{}\"\nkey_file = \"{}\"\n",
                store.display(),
                dir.display(),
                key.display()
            ),
        )
        .unwrap();
    };
    // A directory that does not exist yet, under a writable parent: fine, nothing is created.
    let dir = tmp.path().join("audit");
    write(&dir, &key);
    let (code, out, err) = run(&["check", "--config", conf.to_str().unwrap()]);
    assert_eq!(code, 0, "{out}{err}");
    assert!(!dir.exists());
    // A file where the directory should be.
    std::fs::write(&dir, "x").unwrap();
    let (code, _, err) = run(&["check", "--config", conf.to_str().unwrap()]);
    assert_eq!(code, 2, "{err}");
    assert!(
        err.contains("[audit]") && err.contains("not a directory"),
        "{err}"
    );
    // A key file that is no key.
    std::fs::remove_file(&dir).unwrap();
    let bad = tmp.path().join("bad.key");
    std::fs::write(&bad, "not a key\n").unwrap();
    write(&dir, &bad);
    let (code, _, err) = run(&["check", "--config", conf.to_str().unwrap()]);
    assert_eq!(code, 2, "{err}");
    assert!(
        err.contains("[audit]") && err.contains("audit key"),
        "{err}"
    );
    // A missing key file is reported at its line.
    write(&dir, &tmp.path().join("nope.key"));
    let (code, _, err) = run(&["check", "--config", conf.to_str().unwrap()]);
    assert_eq!(code, 2, "{err}");
    assert!(
        err.contains("g.toml:5:") && err.contains("nope.key"),
        "{err}"
    );
}

#[test]
fn verify_names_a_record_with_a_flipped_byte() {
    let f = fixture();
    let mut all = lines(&f.dir);
    let k = all.len() / 2;
    let seq = seq_of(&all[k].2);
    // Inside a value: still valid JSON, the hash no longer matches.
    all[k].2 = all[k].2.replacen("$event", "$evfnt", 1);
    write_lines(&f.dir, &all);
    assert_fails_at(&f.dir, &f.public, seq, "hash does not match");
    // A structural byte: the line is no JSON any more; the seq expected there is named.
    let mut all = lines(&f.dir);
    all[k + 3].2.replace_range(0..1, "[");
    all[k].2 = all[k].2.replacen("$evfnt", "$event", 1);
    write_lines(&f.dir, &all);
    assert_fails_at(&f.dir, &f.public, seq + 3, "not a JSON object");
}

#[test]
fn verify_names_a_deleted_record() {
    let f = fixture();
    let mut all = lines(&f.dir);
    let k = all.len() / 3;
    let seq = seq_of(&all[k].2);
    all.remove(k);
    write_lines(&f.dir, &all);
    assert_fails_at(
        &f.dir,
        &f.public,
        seq,
        "a record is missing or out of order",
    );
}

#[test]
fn verify_names_two_swapped_records() {
    let f = fixture();
    let mut all = lines(&f.dir);
    // Two neighbours in one segment.
    let k = (1..all.len())
        .find(|&i| i > all.len() / 2 && all[i].0 == all[i + 1].0)
        .unwrap();
    let seq = seq_of(&all[k].2);
    let (a, b) = (all[k].2.clone(), all[k + 1].2.clone());
    all[k].2 = b;
    all[k + 1].2 = a;
    write_lines(&f.dir, &all);
    assert_fails_at(
        &f.dir,
        &f.public,
        seq,
        "a record is missing or out of order",
    );
}

#[test]
fn verify_detects_a_truncated_tail() {
    let f = fixture();
    // The collector's copy, taken while the log was intact: its last checkpoint is the anchor.
    let (code, syslog, _) = run(&[
        "audit",
        "export",
        f.dir.to_str().unwrap(),
        "--format",
        "syslog",
    ]);
    assert_eq!(code, 0);
    let anchor = f.tmp.path().join("collector.log");
    std::fs::write(&anchor, &syslog).unwrap();
    let (code, out) = verify(&f.dir, &f.public, &["--anchor", anchor.to_str().unwrap()]);
    assert_eq!(code, 0, "{out}");
    let all = lines(&f.dir);
    let last_seq = seq_of(&all.last().unwrap().2);
    assert!(
        out.contains(&format!("anchor checkpoint seq {last_seq} found")),
        "{out}"
    );

    // A cut inside the last record.
    let last = segment::list(&f.dir).unwrap().pop().unwrap().path;
    let len = std::fs::metadata(&last).unwrap().len();
    let file = std::fs::OpenOptions::new().write(true).open(&last).unwrap();
    file.set_len(len - 20).unwrap();
    assert_fails_at(&f.dir, &f.public, last_seq, "truncated record");

    // Whole records cut (the last requested checkpoint, shutdown and the final one): the chain is intact, the anchor
    // shows the cut; without it, the unattested records are reported.
    let mut all = all;
    all.truncate(all.len() - 3);
    write_lines(&f.dir, &all);
    let (code, out) = verify(&f.dir, &f.public, &[]);
    assert_eq!(code, 0, "{out}");
    // The last 20 decisions came after the last checkpoint left.
    assert!(
        out.contains("20 records after the last checkpoint are not attested"),
        "{out}"
    );
    let (code, out) = verify(&f.dir, &f.public, &["--anchor", anchor.to_str().unwrap()]);
    assert_eq!(code, 1, "{out}");
    assert!(
        out.contains(&format!("FAIL: record seq {} ", last_seq - 2))
            && out.contains(&format!(
                "tail cut: the log ends at seq {}, the anchor checkpoint is seq {last_seq}",
                last_seq - 3
            )),
        "{out}"
    );
}

#[test]
fn verify_detects_forged_checkpoints() {
    let f = fixture();
    let intact = lines(&f.dir);
    let cp = intact
        .iter()
        .position(|(_, _, l)| l.contains("\"reason\":\"requested\""))
        .unwrap();
    let cp_seq = seq_of(&intact[cp].2);

    // An edited checkpoint, chain recomputed: its signature no longer verifies.
    let mut all = intact.clone();
    all[cp].2 = all[cp]
        .2
        .replace("\"reason\":\"requested\"", "\"reason\":\"interval\"");
    rechain(&mut all, None);
    write_lines(&f.dir, &all);
    assert_fails_at(&f.dir, &f.public, cp_seq, "signature does not verify");

    // An edited decision with the chain recomputed: the next checkpoint's signature fails.
    let mut all = intact.clone();
    all[cp - 2].2 = all[cp - 2]
        .2
        .replace("\"verdict\":\"reject\"", "\"verdict\":\"allow\"");
    all[cp - 2].2 = all[cp - 2]
        .2
        .replace("\"verdict\":\"hold\"", "\"verdict\":\"allow\"");
    rechain(&mut all, None);
    write_lines(&f.dir, &all);
    let (code, out) = verify(&f.dir, &f.public, &[]);
    assert_eq!(code, 1, "{out}");
    assert!(out.contains("signature does not verify"), "{out}");

    // Every checkpoint re-signed with another key of the same version.
    let other = SigningKey::generate("audit1").unwrap();
    let mut all = intact.clone();
    all[cp - 1].2 = all[cp - 1].2.replace("@user", "@other");
    rechain(&mut all, Some(&other));
    write_lines(&f.dir, &all);
    assert_fails_at(
        &f.dir,
        &f.public,
        1,
        "signature does not verify with the audit key",
    );
    // … and a forger's key id is named.
    let other = SigningKey::generate("forged").unwrap();
    rechain(&mut all, Some(&other));
    write_lines(&f.dir, &all);
    assert_fails_at(
        &f.dir,
        &f.public,
        1,
        "signed with key ed25519:forged, expected ed25519:audit1",
    );

    // The intact log again verifies (the fixture's tampering is the only cause).
    write_lines(&f.dir, &intact);
    assert_eq!(verify(&f.dir, &f.public, &[]).0, 0);
}

#[test]
fn unknown_kinds_fail_verify() {
    let f = fixture();
    let mut all = lines(&f.dir);
    let k = 5;
    let seq = seq_of(&all[k].2);
    all[k].2 = all[k]
        .2
        .replace("\"kind\":\"decision\"", "\"kind\":\"decisionx\"");
    rechain(&mut all, None);
    write_lines(&f.dir, &all);
    assert_fails_at(&f.dir, &f.public, seq, "unknown kind `decisionx`");
}

#[test]
fn retention_deletes_old_segments_and_an_attackers_deletion_is_detected() {
    let tmp = tempfile::tempdir().unwrap();
    let (key, public) = audit_key(tmp.path(), "audit.key");
    let dir = tmp.path().join("audit");
    let mut cfg = config(&dir, &key);
    cfg.segment_max_bytes = 4096;
    cfg.retention_max_bytes = 12_000;
    rt().block_on(async {
        let a = Auditor::open(&cfg).unwrap();
        for i in 0..80 {
            a.append(decision(i)).await.unwrap();
        }
        a.close().await.unwrap();
    });
    let segs = segment::list(&dir).unwrap();
    assert!(segs[0].first_seq > 0, "the oldest segments were deleted");
    let total: u64 = segs
        .iter()
        .map(|s| std::fs::metadata(&s.path).unwrap().len())
        .sum();
    assert!(total <= 12_000 + 4096 + 2048, "total {total}");
    let all = lines(&dir);
    assert!(all
        .iter()
        .any(|(_, _, l)| l.contains("\"reason\":\"retention\"") && l.contains("\"deleted\":[")));
    let (code, out) = verify(&dir, &public, &[]);
    assert_eq!(code, 0, "{out}");

    // Reopening keeps the retention mark: the next checkpoints still attest it.
    rt().block_on(async {
        let a = Auditor::open(&cfg).unwrap();
        a.append(decision(0)).await.unwrap();
        a.close().await.unwrap();
    });
    assert_eq!(verify(&dir, &public, &[]).0, 0);

    // An attacker removes the oldest remaining segment: nothing attests that.
    let oldest = segment::list(&dir).unwrap().remove(0);
    let next = segment::list(&dir).unwrap()[1].first_seq;
    std::fs::remove_file(&oldest.path).unwrap();
    assert_fails_at(
        &dir,
        &public,
        next,
        "no checkpoint attests their deletion by retention",
    );
}

#[test]
fn retention_by_age() {
    let tmp = tempfile::tempdir().unwrap();
    let (key, public) = audit_key(tmp.path(), "audit.key");
    let dir = tmp.path().join("audit");
    let mut cfg = config(&dir, &key);
    cfg.segment_max_bytes = 4096;
    rt().block_on(async {
        let a = Auditor::open(&cfg).unwrap();
        for i in 0..30 {
            a.append(decision(i)).await.unwrap();
        }
        a.close().await.unwrap();
    });
    let before = segment::list(&dir).unwrap();
    // All but the newest segment were last written two days ago.
    let old = std::time::SystemTime::now() - Duration::from_secs(2 * 86_400);
    for s in &before[..before.len() - 1] {
        std::fs::File::options()
            .write(true)
            .open(&s.path)
            .unwrap()
            .set_modified(old)
            .unwrap();
    }
    cfg.retention_days = 1;
    rt().block_on(async {
        let a = Auditor::open(&cfg).unwrap();
        // The first rotation applies retention.
        for i in 0..10 {
            a.append(decision(i)).await.unwrap();
        }
        a.close().await.unwrap();
    });
    let after = segment::list(&dir).unwrap();
    assert_eq!(after[0].first_seq, before.last().unwrap().first_seq);
    assert_eq!(verify(&dir, &public, &[]).0, 0);
}

#[test]
fn a_vanished_directory_fails_closed_and_health_says_why() {
    // Works as root too: the directory is moved away and a plain file put in its place, so
    // the segment path no longer resolves (permissions would not stop root).
    let tmp = tempfile::tempdir().unwrap();
    let (key, _) = audit_key(tmp.path(), "audit.key");
    let dir = tmp.path().join("audit");
    for durability in [Durability::Group, Durability::Fsync] {
        let _ = std::fs::remove_file(&dir);
        let mut cfg = config(&dir, &key);
        cfg.durability = durability;
        rt().block_on(async {
            let a = Auditor::open(&cfg).unwrap();
            a.append(decision(0)).await.unwrap();
            assert!(a.health().is_ok());
            let moved = tmp.path().join(format!("moved-{}", durability.as_str()));
            std::fs::rename(&dir, &moved).unwrap();
            std::fs::write(&dir, b"not a directory").unwrap();
            let e = a.append(decision(1)).await.unwrap_err();
            assert!(matches!(e, AuditError::Failed(_)), "{e}");
            let why = a.health().unwrap_err();
            assert!(why.contains("is gone") && why.contains("audit-"), "{why}");
            // Every later append fails too, and so does closing.
            assert!(a.append(decision(2)).await.is_err());
            assert!(a.append_all(vec![decision(3)]).await.is_err());
            assert!(a.close().await.is_err());
            assert!(a.health().is_err());
        });
        // Opening on a file fails.
        assert!(Auditor::open(&cfg).is_err());
    }
}

#[test]
fn a_segment_that_cannot_be_created_fails_closed() {
    let tmp = tempfile::tempdir().unwrap();
    let (key, public) = audit_key(tmp.path(), "audit.key");
    let dir = tmp.path().join("audit");
    let mut cfg = config(&dir, &key);
    cfg.segment_max_bytes = 4096;
    rt().block_on(async {
        let a = Auditor::open(&cfg).unwrap();
        // Squat the names of the next segments with directories.
        let next = segment::list(&dir).unwrap().pop().unwrap().first_seq;
        for s in next + 1..next + 40 {
            std::fs::create_dir(dir.join(segment::name(s))).unwrap();
        }
        let mut failed = None;
        for i in 0..40 {
            if let Err(e) = a.append(decision(i)).await {
                failed = Some(e);
                break;
            }
        }
        let e = failed.expect("rotation into a squatted name fails");
        assert!(e.to_string().contains("creating segment"), "{e}");
        assert!(a.health().unwrap_err().contains("creating segment"));
        assert!(a.append(decision(0)).await.is_err());
        // Recovery is a new open (the failed auditor gave up the directory), here once the
        // squatters are gone; the old handle stays failed.
        for e in std::fs::read_dir(&dir).unwrap() {
            let p = e.unwrap().path();
            if p.is_dir() {
                std::fs::remove_dir(p).unwrap();
            }
        }
        let b = Auditor::open(&cfg).unwrap();
        b.append(decision(1)).await.unwrap();
        assert!(a.health().is_err() && b.health().is_ok());
        b.close().await.unwrap();
        let startup = lines(&dir)
            .into_iter()
            .rev()
            .find(|(_, _, l)| l.contains("\"kind\":\"startup\""))
            .unwrap();
        assert!(
            startup.2.contains("\"previous_run\":\"unclean\""),
            "{}",
            startup.2
        );
    });
    assert_eq!(verify(&dir, &public, &[]).0, 0);
}

#[test]
fn a_torn_last_line_is_cut_at_reopen_and_recorded() {
    let f = fixture();
    let last = segment::list(&f.dir).unwrap().pop().unwrap().path;
    let mut file = std::fs::OpenOptions::new()
        .append(true)
        .open(&last)
        .unwrap();
    file.write_all(b"{\"data\":{\"half").unwrap();
    drop(file);
    let (code, _) = verify(&f.dir, &f.public, &[]);
    assert_eq!(code, 1);
    let cfg = config(&f.dir, &f.key);
    rt().block_on(async {
        let a = Auditor::open(&cfg).unwrap();
        a.close().await.unwrap();
    });
    let (code, out) = verify(&f.dir, &f.public, &[]);
    assert_eq!(code, 0, "{out}");
    let all = lines(&f.dir);
    let startup = all
        .iter()
        .rev()
        .find(|(_, _, l)| l.contains("\"kind\":\"startup\""))
        .unwrap();
    let v: Value = serde_json::from_str(&startup.2).unwrap();
    assert_eq!(v["data"]["torn_tail_bytes"], b"{\"data\":{\"half".len());
    assert_eq!(
        v["data"]["torn_tail_sha256"],
        sha256_hex(b"{\"data\":{\"half")
    );
    assert_eq!(v["data"]["previous_run"], "clean");
}

/// A handcrafted log with known times (one record per hour from 2026-01-01T00:00Z).
fn handcrafted(dir: &Path, records: &[(&str, Value)]) {
    std::fs::create_dir_all(dir).unwrap();
    let mut prev = format::GENESIS_PREV.to_owned();
    let mut text = String::new();
    for (i, (kind, data)) in records.iter().enumerate() {
        let ts = format::rfc3339_ms(1_767_225_600_000 + i as i64 * 3_600_000);
        let e = format::encode(
            i as u64,
            &ts,
            kind,
            &prev,
            data.as_object().unwrap().clone(),
            None,
        );
        text.push_str(&e.line);
        prev = e.hash;
    }
    std::fs::write(dir.join(segment::name(0)), text).unwrap();
}

fn query(dir: &Path, args: &[&str]) -> Vec<u64> {
    let mut a = vec!["audit", "query", dir.to_str().unwrap()];
    a.extend_from_slice(args);
    let (code, out, err) = run(&a);
    assert_eq!(code, 0, "{err}");
    out.lines().map(seq_of).collect()
}

#[test]
fn query_filters() {
    let tmp = tempfile::tempdir().unwrap();
    let dir = tmp.path().join("audit");
    let recs: Vec<(&str, Value)> = (0..12)
        .map(|i| {
            let r = decision(i);
            ("decision", Value::Object(r.data().clone()))
        })
        .chain(std::iter::once((
            "refusal",
            json!({"status": 403, "errcode": "M_FORBIDDEN", "reason": "unknown_path", "method": "GET", "path": "/_matrix/x", "peer": "hs9", "direction": "inbound"}),
        )))
        .collect();
    handcrafted(&dir, &recs);
    let expect = |pred: &dyn Fn(usize) -> bool| -> Vec<u64> {
        (0..12).filter(|&i| pred(i)).map(|i| i as u64).collect()
    };
    assert_eq!(query(&dir, &[]).len(), 13);
    assert_eq!(
        query(
            &dir,
            &[
                "--from",
                "2026-01-01T03:00:00Z",
                "--to",
                "2026-01-01T06:30:00+01:00"
            ]
        ),
        vec![3, 4, 5]
    );
    assert_eq!(
        query(&dir, &["--from", "2026-01-01T10:00:00.000Z"]),
        vec![10, 11, 12]
    );
    assert_eq!(
        query(&dir, &["--room", "!room1:hs1"]),
        expect(&|i| i % 3 == 1)
    );
    assert_eq!(
        query(&dir, &["--sender", "@user2:hs1"]),
        expect(&|i| i % 4 == 2)
    );
    assert_eq!(query(&dir, &["--server", "HS2"]), expect(&|i| i % 2 == 1));
    assert_eq!(query(&dir, &["--server", "hs9"]), vec![12]);
    assert_eq!(query(&dir, &["--verdict", "hold"]), expect(&|i| i % 4 == 2));
    assert_eq!(
        query(&dir, &["--rule", "rule-3"]),
        expect(&|i| i % 4 != 0 && i % 5 == 3)
    );
    assert_eq!(query(&dir, &["--label", "VS-NfD"]), expect(&|i| i % 2 == 1));
    assert_eq!(
        query(
            &dir,
            &[
                "--label",
                "VS-NfD",
                "--verdict",
                "redact",
                "--room",
                "!room0:hs1"
            ]
        ),
        expect(&|i| i % 2 == 1 && i % 4 == 1 && i % 3 == 0)
    );
    assert_eq!(
        query(&dir, &["--verdict", "redact", "--limit", "2"]),
        vec![5, 9]
    );
    let (code, _, err) = run(&[
        "audit",
        "query",
        dir.to_str().unwrap(),
        "--from",
        "yesterday",
    ]);
    assert_eq!(code, 1);
    assert!(err.contains("not an RFC 3339 time"), "{err}");
    // The library search the admin API calls: same filters, newest `limit`.
    let filter = grenzwacht::audit::query::Filter {
        verdict: Some("reject".into()),
        limit: 2,
        ..Default::default()
    };
    let got: Vec<u64> = grenzwacht::audit::query::search(&dir, &filter)
        .unwrap()
        .iter()
        .map(|v| v["seq"].as_u64().unwrap())
        .collect();
    assert_eq!(got, vec![7, 11]);
}

#[test]
fn export_formats_golden() {
    let tmp = tempfile::tempdir().unwrap();
    let dir = tmp.path().join("audit");
    handcrafted(
        &dir,
        &[
            (
                "decision",
                json!({"unit": "pdu", "event_id": "$e1", "room_id": "!a|b=c\\d:hs1", "sender": "@u:hs1",
                       "origin": "hs1", "destination": "hs2", "direction": "outbound",
                       "endpoint": "/_matrix/federation/v1/send/{txnId}", "verdict": "redact",
                       "rules": [{"rule": "r|1", "field": "content.body", "excerpt": "x=*"}],
                       "label": "VS-NfD"}),
            ),
            (
                "refusal",
                json!({"status": 403, "errcode": "M_FORBIDDEN", "reason": "unknown_path",
                       "method": "GET", "path": "/a=b\nc", "peer": "127.0.0.1", "direction": "inbound"}),
            ),
        ],
    );
    let jsonl = std::fs::read_to_string(dir.join(segment::name(0))).unwrap();
    let (code, out, _) = run(&[
        "audit",
        "export",
        dir.to_str().unwrap(),
        "--format",
        "jsonl",
    ]);
    assert_eq!(code, 0);
    assert_eq!(out, jsonl);
    let hashes: Vec<String> = jsonl
        .lines()
        .map(|l| {
            serde_json::from_str::<Value>(l).unwrap()["hash"]
                .as_str()
                .unwrap()
                .to_owned()
        })
        .collect();
    assert_eq!(
        hashes,
        [
            "7a61276149e7332a145ee22f54414e98045a4c6af234614bdeb459c9d1947efe",
            "2dc986901ac3c64584a9437cef7f2eb7aea4b8c98fb23b331df715dfdc7d1c5d"
        ]
    );
    let (code, out, _) = run(&["audit", "export", dir.to_str().unwrap(), "--format", "cef"]);
    assert_eq!(code, 0);
    let v = env!("CARGO_PKG_VERSION");
    let h = &hashes;
    assert_eq!(
        out,
        format!(
            "CEF:0|grenzwacht|grenzwacht|{v}|decision|decision redact|5|rt=1767225600000 cn1=0 cn1Label=seq act=redact shost=hs1 dhost=hs2 suser=@u:hs1 request=/_matrix/federation/v1/send/{{txnId}} cs1=!a|b\\=c\\\\d:hs1 cs1Label=room cs2=$e1 cs2Label=eventId cs3=r|1 cs3Label=rules cs4=VS-NfD cs4Label=label cs5={} cs5Label=hash deviceDirection=1\n\
             CEF:0|grenzwacht|grenzwacht|{v}|refusal|refusal 403 M_FORBIDDEN|5|rt=1767229200000 cn1=1 cn1Label=seq src=127.0.0.1 requestMethod=GET request=/a\\=b\\nc cs5={} cs5Label=hash deviceDirection=0\n",
            h[0], h[1]
        )
    );
    let (code, out, _) = run(&[
        "audit",
        "export",
        dir.to_str().unwrap(),
        "--format",
        "syslog",
        "--hostname",
        "guard1",
    ]);
    assert_eq!(code, 0);
    let j: Vec<&str> = jsonl.lines().collect();
    assert_eq!(
        out,
        format!(
            "<110>1 2026-01-01T00:00:00.000Z guard1 grenzwacht - decision [gw@32473 seq=\"0\" hash=\"{}\"] {}\n\
             <110>1 2026-01-01T01:00:00.000Z guard1 grenzwacht - refusal [gw@32473 seq=\"1\" hash=\"{}\"] {}\n",
            h[0], j[0], h[1], j[1]
        )
    );
}

#[test]
fn a_header_field_with_a_pipe_is_escaped_in_cef() {
    let rec = json!({"kind": "adm|n\\x", "seq": 1, "data": {}});
    let line = grenzwacht::audit::export::cef(&rec);
    assert!(line.contains("|adm\\|n\\\\x|adm\\|n\\\\x|"), "{line}");
}

/// A TLS syslog collector on 127.0.0.1:0 that requires a client certificate; it collects
/// the octet-counted frames it reads.
struct Collector {
    addr: std::net::SocketAddr,
    frames: Arc<Mutex<Vec<String>>>,
    stop: Arc<std::sync::atomic::AtomicBool>,
}

struct TestPki {
    ca: PathBuf,
    client_cert: PathBuf,
    client_key: PathBuf,
    server: Arc<rustls::ServerConfig>,
}

fn test_pki(dir: &Path) -> TestPki {
    use rcgen::{
        BasicConstraints, CertificateParams, DnType, ExtendedKeyUsagePurpose, IsCa, KeyPair,
        KeyUsagePurpose,
    };
    let ca_key = KeyPair::generate().unwrap();
    let mut p = CertificateParams::new(Vec::<String>::new()).unwrap();
    p.is_ca = IsCa::Ca(BasicConstraints::Unconstrained);
    p.key_usages = vec![
        KeyUsagePurpose::KeyCertSign,
        KeyUsagePurpose::CrlSign,
        KeyUsagePurpose::DigitalSignature,
    ];
    p.distinguished_name
        .push(DnType::CommonName, "audit test CA");
    let ca = p.self_signed(&ca_key).unwrap();
    let leaf = |names: Vec<String>, eku: ExtendedKeyUsagePurpose| {
        let k = KeyPair::generate().unwrap();
        let mut lp = CertificateParams::new(names).unwrap();
        lp.extended_key_usages = vec![eku];
        lp.distinguished_name.push(DnType::CommonName, "leaf");
        let c = lp.signed_by(&k, &ca, &ca_key).unwrap();
        (c, k)
    };
    let (server_cert, server_key) = leaf(
        vec!["127.0.0.1".into()],
        ExtendedKeyUsagePurpose::ServerAuth,
    );
    let (client_cert, client_key) = leaf(
        vec!["guard.test".into()],
        ExtendedKeyUsagePurpose::ClientAuth,
    );
    let w = |name: &str, text: String| {
        let p = dir.join(name);
        std::fs::write(&p, text).unwrap();
        p
    };
    let ca_path = w("ca.crt", ca.pem());
    let provider = Arc::new(rustls::crypto::ring::default_provider());
    let mut roots = rustls::RootCertStore::empty();
    roots.add(ca.der().clone()).unwrap();
    let verifier = rustls::server::WebPkiClientVerifier::builder_with_provider(
        Arc::new(roots),
        provider.clone(),
    )
    .build()
    .unwrap();
    let server = rustls::ServerConfig::builder_with_provider(provider)
        .with_safe_default_protocol_versions()
        .unwrap()
        .with_client_cert_verifier(verifier)
        .with_single_cert(
            vec![server_cert.der().clone()],
            rustls::pki_types::PrivateKeyDer::Pkcs8(server_key.serialize_der().into()),
        )
        .unwrap();
    TestPki {
        ca: ca_path,
        client_cert: w("client.crt", client_cert.pem()),
        client_key: w("client.key", client_key.serialize_pem()),
        server: Arc::new(server),
    }
}

fn collector(server: Arc<rustls::ServerConfig>) -> Collector {
    collector_at(server, "127.0.0.1:0".parse().unwrap())
}

fn collector_at(server: Arc<rustls::ServerConfig>, at: std::net::SocketAddr) -> Collector {
    let listener = std::net::TcpListener::bind(at).unwrap();
    let addr = listener.local_addr().unwrap();
    let frames = Arc::new(Mutex::new(Vec::new()));
    let stop = Arc::new(std::sync::atomic::AtomicBool::new(false));
    let (f, s) = (frames.clone(), stop.clone());
    std::thread::spawn(move || {
        for tcp in listener.incoming() {
            if s.load(std::sync::atomic::Ordering::SeqCst) {
                return;
            }
            let Ok(tcp) = tcp else { continue };
            let conn = rustls::ServerConnection::new(server.clone()).unwrap();
            let mut tls = std::io::BufReader::new(rustls::StreamOwned::new(conn, tcp));
            // RFC 5425: "<length> <message>".
            loop {
                let mut len = Vec::new();
                if tls.read_until(b' ', &mut len).unwrap_or(0) == 0 {
                    break;
                }
                let n: usize = String::from_utf8_lossy(&len).trim().parse().unwrap();
                let mut msg = vec![0; n];
                if tls.read_exact(&mut msg).is_err() {
                    break;
                }
                f.lock().unwrap().push(String::from_utf8(msg).unwrap());
                if s.load(std::sync::atomic::Ordering::SeqCst) {
                    return;
                }
            }
        }
    });
    Collector { addr, frames, stop }
}

fn wait_for(what: &str, mut cond: impl FnMut() -> bool) {
    let until = std::time::Instant::now() + Duration::from_secs(20);
    while !cond() {
        assert!(
            std::time::Instant::now() < until,
            "timed out waiting for {what}"
        );
        std::thread::sleep(Duration::from_millis(20));
    }
}

#[test]
fn syslog_forwarding_over_mutual_tls_and_a_failing_collector_does_not_stop_appends() {
    let tmp = tempfile::tempdir().unwrap();
    let (key, public) = audit_key(tmp.path(), "audit.key");
    let pki = test_pki(tmp.path());
    let c = collector(pki.server.clone());
    let dir = tmp.path().join("audit");
    let mut cfg = config(&dir, &key);
    cfg.syslog = Some(SyslogConfig {
        address: c.addr.to_string(),
        ca_file: pki.ca.clone(),
        client_cert: Some(pki.client_cert.clone()),
        client_key: Some(pki.client_key.clone()),
        ..SyslogConfig::default()
    });
    rt().block_on(async {
        let a = Auditor::open(&cfg).unwrap();
        for i in 0..5 {
            a.append(decision(i)).await.unwrap();
        }
        a.append(Record::from(AdminRecord {
            principal: Some("alice".into()),
            role: Some("auditor".into()),
            action: "search".into(),
            target: "audit".into(),
            outcome: "ok".into(),
        }))
        .await
        .unwrap();
        a.checkpoint().await.unwrap();
        wait_for("9 records at the collector", || {
            c.frames.lock().unwrap().len() >= 9
        });
        assert!(a.syslog_health().is_ok());

        // The collector's frames are the log's lines, in order, as RFC 5424 messages.
        let frames = c.frames.lock().unwrap().clone();
        let all = lines(&dir);
        for (frame, (_, _, line)) in frames.iter().zip(&all) {
            let v: Value = serde_json::from_str(line).unwrap();
            let pri = if matches!(v["kind"].as_str(), Some("decision")) {
                110
            } else {
                109
            };
            assert!(
                frame.starts_with(&format!("<{pri}>1 {} ", v["ts"].as_str().unwrap()))
                    && frame.ends_with(&format!("] {line}")),
                "{frame}"
            );
        }
        // The collector's last checkpoint anchors the log.
        let anchor = tmp.path().join("anchor.log");
        std::fs::write(&anchor, frames.join("\n")).unwrap();
        let (code, out) = verify(&dir, &public, &["--anchor", anchor.to_str().unwrap()]);
        assert_eq!(code, 0, "{out}");

        // The collector goes away: appends go on, syslog health reports it.
        c.stop.store(true, std::sync::atomic::Ordering::SeqCst);
        let _ = std::net::TcpStream::connect(c.addr);
        for i in 0..50 {
            a.append(decision(i)).await.unwrap();
        }
        wait_for("syslog health to report the collector", || {
            a.syslog_health().is_err_and(|e| e.contains("collector"))
        });
        assert!(a.health().is_ok());

        // It comes back on the same address: the forwarder reconnects and sends again.
        let c2 = collector_at(pki.server.clone(), c.addr);
        a.append(decision(99)).await.unwrap();
        let seq = a.checkpoint().await.unwrap();
        wait_for("the checkpoint at the new collector", || {
            c2.frames
                .lock()
                .unwrap()
                .iter()
                .any(|f| f.contains(&format!("seq=\"{seq}\"")))
        });
        assert!(a.syslog_health().is_ok());
        a.close().await.unwrap();
    });
    assert_eq!(verify(&dir, &public, &[]).0, 0);
}

#[test]
fn a_collector_without_the_client_certificate_is_not_trusted() {
    // Without the client certificate the collector refuses the handshake; appends still work.
    let tmp = tempfile::tempdir().unwrap();
    let (key, _) = audit_key(tmp.path(), "audit.key");
    let pki = test_pki(tmp.path());
    let c = collector(pki.server.clone());
    let mut cfg = config(&tmp.path().join("audit"), &key);
    cfg.syslog = Some(SyslogConfig {
        address: c.addr.to_string(),
        ca_file: pki.ca.clone(),
        ..SyslogConfig::default()
    });
    rt().block_on(async {
        let a = Auditor::open(&cfg).unwrap();
        a.append(decision(0)).await.unwrap();
        wait_for("syslog health to report the refusal", || {
            a.syslog_health()
                .is_err_and(|e| e.contains("refused the connection"))
        });
        assert!(c.frames.lock().unwrap().is_empty());
        assert!(a.health().is_ok());
        a.close().await.unwrap();
    });
}
