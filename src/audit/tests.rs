//! Unit tests of the writer against real files.
use std::path::Path;

use super::verify::{verify, Outcome, PublicKey};
use super::*;

pub(crate) fn key_file(dir: &Path, version: &str) -> (std::path::PathBuf, PublicKey) {
    let k = crate::keys::SigningKey::generate(version).unwrap();
    let p = dir.join(format!("{version}.key"));
    std::fs::write(&p, k.to_synapse_string()).unwrap();
    (
        p,
        PublicKey {
            key_id: k.key_id(),
            key: k.public_key(),
        },
    )
}

pub(crate) fn config(dir: &Path, key: &Path) -> AuditConfig {
    AuditConfig {
        dir: dir.to_path_buf(),
        key_file: key.to_path_buf(),
        ..AuditConfig::default()
    }
}

fn admin(i: usize) -> Record {
    Record::from(AdminRecord {
        principal: Some(format!("alice{i}")),
        role: Some("admin".into()),
        action: "search".into(),
        target: "audit".into(),
        outcome: "ok".into(),
    })
}

fn rt() -> tokio::runtime::Runtime {
    tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .unwrap()
}

#[test]
fn append_close_reopen_verifies() {
    let tmp = tempfile::tempdir().unwrap();
    let (key, public) = key_file(tmp.path(), "audit1");
    let dir = tmp.path().join("log");
    let cfg = config(&dir, &key);
    rt().block_on(async {
        let a = Auditor::open(&cfg).unwrap();
        // startup (0) and its checkpoint (1) come first.
        assert_eq!(a.append(admin(0)).await.unwrap(), 2);
        a.append_all((1..5).map(admin).collect()).await.unwrap();
        assert_eq!(a.append(admin(5)).await.unwrap(), 7);
        assert!(a.health().is_ok());
        a.close().await.unwrap();
        assert!(matches!(a.append(admin(6)).await, Err(AuditError::Closed)));
        assert!(a.health().is_err());
        let b = Auditor::open(&cfg).unwrap();
        // 8 shutdown, 9 checkpoint; reopen: 10 startup, 11 checkpoint.
        assert_eq!(b.append(admin(7)).await.unwrap(), 12);
        b.close().await.unwrap();
    });
    let Outcome::Intact(s) = verify(&dir, Some(&public), None).unwrap() else {
        panic!("intact log fails verify")
    };
    assert_eq!(
        (s.first_seq, s.last_seq, s.segments, s.checkpoints),
        (0, 14, 2, 4)
    );
    let startup: serde_json::Value = serde_json::from_str(
        std::fs::read_to_string(dir.join(segment::name(10)))
            .unwrap()
            .lines()
            .next()
            .unwrap(),
    )
    .unwrap();
    assert_eq!(startup["kind"], "startup");
    assert_eq!(startup["data"]["previous_run"], "clean");
}

#[test]
fn content_is_dropped_unless_configured() {
    let tmp = tempfile::tempdir().unwrap();
    let (key, _) = key_file(tmp.path(), "audit1");
    let rec = Record::from(DecisionRecord {
        unit: Unit::Pdu,
        txn_id: Some("t1".into()),
        event_id: Some("$e".into()),
        room_id: Some("!r:a".into()),
        sender: Some("@u:a".into()),
        origin: "a".into(),
        destination: "b".into(),
        direction: Direction::Outbound,
        endpoint: "/_matrix/federation/v1/send/{txnId}".into(),
        verdict: Verdict::Redact,
        effect: None,
        rules: vec![],
        label: None,
        clearance: None,
        policy_hash: None,
        content_sha256: Some(content_sha256(b"{}")),
        content: Some(serde_json::json!({"body": "secret"})),
    });
    for store in [false, true] {
        let dir = tmp.path().join(format!("log-{store}"));
        let mut cfg = config(&dir, &key);
        cfg.store_content = store;
        rt().block_on(async {
            let a = Auditor::open(&cfg).unwrap();
            a.append(rec.clone()).await.unwrap();
            a.close().await.unwrap();
        });
        let all = query::search(&dir, &query::Filter::default()).unwrap();
        let d = all.iter().find(|r| r["kind"] == "decision").unwrap();
        assert_eq!(d["data"].get("content").is_some(), store);
        assert_eq!(d["data"]["content_sha256"], content_sha256(b"{}"));
    }
}

/// The checkpoint of `deploy/AUDIT-FORMAT.md`: a fixed key (seed 32 × 0x01), time and chain.
/// Ed25519 is deterministic, so the line is stable; the format must never change it. (Checked
/// independently with Python's `cryptography` Ed25519 and `json.dumps(sort_keys=True, …)`.)
#[test]
fn golden_checkpoint() {
    use base64::Engine as _;
    let key = crate::keys::SigningKey::from_seed("audit1", [1u8; 32]).unwrap();
    let mut data = serde_json::Map::new();
    data.insert("reason".into(), serde_json::json!("shutdown"));
    data.insert("key_id".into(), serde_json::json!(key.key_id()));
    data.insert(
        "segments".into(),
        serde_json::json!([{"name": segment::name(0), "first_seq": 0}]),
    );
    let sign = |m: &[u8]| base64::engine::general_purpose::STANDARD_NO_PAD.encode(key.sign(m));
    let e = format::encode(
        2,
        "2026-12-06T13:24:00.000Z",
        "checkpoint",
        "99dfafd795ed3f06a1d1f6451ade6073c01858d8754f08a888154c101b0dfaaf",
        data,
        Some(&sign),
    );
    assert_eq!(e.line, GOLDEN_CHECKPOINT);
    // And it verifies with the public key alone.
    let dir = tempfile::tempdir().unwrap();
    let mut text = String::new();
    let mut prev = format::GENESIS_PREV.to_owned();
    for (seq, kind) in [(0u64, "startup"), (1, "shutdown")] {
        let e = format::encode(
            seq,
            "2026-12-06T13:23:59.000Z",
            kind,
            &prev,
            Default::default(),
            None,
        );
        text.push_str(&e.line);
        prev = e.hash;
    }
    let public = PublicKey {
        key_id: key.key_id(),
        key: key.public_key(),
    };
    let e = format::encode(
        2,
        "2026-12-06T13:24:00.000Z",
        "checkpoint",
        &prev,
        serde_json::from_str::<serde_json::Value>(GOLDEN_CHECKPOINT).unwrap()["data"]
            .as_object()
            .unwrap()
            .clone(),
        Some(&sign),
    );
    text.push_str(&e.line);
    std::fs::write(dir.path().join(segment::name(0)), text).unwrap();
    assert!(matches!(
        verify(dir.path(), Some(&public), None).unwrap(),
        Outcome::Intact(_)
    ));
}

const GOLDEN_CHECKPOINT: &str = concat!(
    r#"{"data":{"key_id":"ed25519:audit1","reason":"shutdown","segments":[{"first_seq":0,"name":"audit-00000000000000000000.log"}],"sig":"g0xgDa/3jCGQJB+tfyZ+BuRej9Q9cA/yAaLntlQHQSyMJB4TJeY877zQHPpq2W7ERlpAEEE3PUAwMeGta9KjAA"},"hash":"99309a2b22049f2e1d07888be67f04d1e3aef8d5c00e811eda60e9b4e3a8e06f","kind":"checkpoint","prev":"99dfafd795ed3f06a1d1f6451ade6073c01858d8754f08a888154c101b0dfaaf","seq":2,"ts":"2026-12-06T13:24:00.000Z","v":1}"#,
    "\n"
);

#[test]
fn interval_checkpoints_under_load_and_when_idle() {
    let tmp = tempfile::tempdir().unwrap();
    let (key, public) = key_file(tmp.path(), "audit1");
    let dir = tmp.path().join("log");
    let mut cfg = config(&dir, &key);
    cfg.checkpoint_interval_secs = 1;
    let intervals = || {
        query::search(&dir, &query::Filter::default())
            .unwrap()
            .iter()
            .filter(|r| r["kind"] == "checkpoint" && r["data"]["reason"] == "interval")
            .count()
    };
    rt().block_on(async {
        let a = Auditor::open(&cfg).unwrap();
        // Appends without a pause (the writer never waits for the timer) until an interval
        // checkpoint shows up among them: at most 20 s on a loaded machine.
        let start = std::time::Instant::now();
        let mut i = 0;
        while intervals() == 0 {
            assert!(
                start.elapsed() < std::time::Duration::from_secs(20),
                "no interval checkpoint under constant load"
            );
            for _ in 0..50 {
                a.append(admin(i)).await.unwrap();
                i += 1;
            }
        }
        let before = intervals();
        // Idle: the timer writes one for the records since the last checkpoint, then none.
        a.append(admin(0)).await.unwrap();
        let idle = std::time::Instant::now();
        while intervals() == before {
            assert!(
                idle.elapsed() < std::time::Duration::from_secs(20),
                "no interval checkpoint for the record written before going idle"
            );
            tokio::time::sleep(std::time::Duration::from_millis(100)).await;
        }
        assert_eq!(intervals(), before + 1);
        // Nothing new since: no further checkpoint over more than one interval.
        tokio::time::sleep(std::time::Duration::from_millis(2500)).await;
        assert_eq!(intervals(), before + 1, "a checkpoint without new records");
        a.close().await.unwrap();
    });
    assert!(matches!(
        verify(&dir, Some(&public), None).unwrap(),
        Outcome::Intact(_)
    ));
}

#[test]
fn one_auditor_per_directory() {
    let tmp = tempfile::tempdir().unwrap();
    let (key, _) = key_file(tmp.path(), "audit1");
    let cfg = config(&tmp.path().join("log"), &key);
    rt().block_on(async {
        let a = Auditor::open(&cfg).unwrap();
        let e = Auditor::open(&cfg).unwrap_err();
        assert!(e.to_string().contains("in use by another auditor"), "{e}");
        a.close().await.unwrap();
        // Closed: the directory is free at once.
        let b = Auditor::open(&cfg).unwrap();
        b.append(admin(1)).await.unwrap();
        drop(b);
    });
}

#[test]
fn append_blocking_from_a_plain_thread_and_inside_a_task() {
    let tmp = tempfile::tempdir().unwrap();
    let (key, public) = key_file(tmp.path(), "audit1");
    let dir = tmp.path().join("log");
    let a = Auditor::open(&config(&dir, &key)).unwrap();
    let b = a.clone();
    let seq = std::thread::spawn(move || b.append_blocking(admin(1)).unwrap())
        .join()
        .unwrap();
    assert_eq!(seq, 2);
    rt().block_on(async {
        assert_eq!(a.append_blocking(admin(2)).unwrap(), 3);
        assert_eq!(a.append(admin(3)).await.unwrap(), 4);
        a.close().await.unwrap();
    });
    assert!(matches!(
        a.append_blocking(admin(4)),
        Err(AuditError::Closed)
    ));
    let Outcome::Intact(s) = verify(&dir, Some(&public), None).unwrap() else {
        panic!("intact")
    };
    assert_eq!(s.last_seq, 6);
}
