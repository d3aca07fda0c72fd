//! End-to-end: decisions made visible on `grenzwacht lab` (real Synapse homeservers).
//!
//! - the guard's log file has no colour codes, names the loaded policy at start-up, carries a
//!   decision line with event id, sender, room and rule for a redacted message, and names the
//!   path of a refused unknown endpoint;
//! - `grenzwacht_decisions_total` and `grenzwacht_dlp_decisions_total{rule}` count them;
//! - `policy replay` on the session's events (the sender's copies), and on the guard's own
//!   audit log of the session, with one rule changed lists exactly the event whose verdict
//!   changes; the audit log verifies with the audit key.
#[path = "common/lab.rs"]
mod common;

use std::time::Duration;

use common::*;
use serde_json::{json, Value};

const WAIT: Duration = Duration::from_secs(60);

#[tokio::test(flavor = "multi_thread")]
async fn decisions_are_visible_in_log_metrics_and_replay() {
    let lab = e2e_lab("observe", false).await;
    let (info, alice, bob) = (&lab.info, &lab.alice, &lab.bob);
    let (hs1, hs2) = (info.hs1().clone(), info.hs2().clone());
    let room = alice
        .create_room(&json!({"preset": "private_chat", "name": "observe"}))
        .await
        .expect("create room");
    alice.invite(&room, &bob.user_id).await.expect("invite");
    bob.wait_for_invite(&room, WAIT).await.expect("invite seen");
    bob.join(&room, &[&hs1.server_name]).await.expect("join");
    alice
        .wait_for_member(&room, &bob.user_id, WAIT)
        .await
        .expect("member");

    let texts = [
        format!("{}: Lagebericht GEHEIM", marker("m")),
        format!("{}: Mittagessen um zwölf", marker("m")),
        format!("{}: STRENG GEHEIM und GEHEIM", marker("m")),
    ];
    let mut ids = Vec::new();
    for t in &texts {
        let id = alice.send_text(&room, t).await.expect("send");
        wait_event(bob, &room, &id, WAIT).await;
        ids.push(id);
    }

    // An unknown endpoint, inbound.
    let unknown = marker("gwobserve_unknown_");
    let path = format!("/_matrix/federation/v1/{unknown}");
    let auth = xmatrix_signed(
        &hs2.signing_key,
        &hs2.server_name,
        &hs1.server_name,
        "GET",
        &path,
        b"",
    );
    let r = tls_request(
        info.guard.inbound_addr,
        &info.ca_cert,
        &head(
            "GET",
            &format!("{path}?secret=value"),
            &hs1.server_name,
            &[("Authorization", &auth)],
            0,
        ),
        b"",
    )
    .await;
    assert_eq!(r.status, 404);

    // ---- The log file --------------------------------------------------------------------
    let log = std::fs::read_to_string(&info.guard.log).unwrap();
    assert!(
        !log.contains("\x1b["),
        "colour codes in the guard's log file"
    );
    let startup = log
        .lines()
        .find(|l| l.contains("policy loaded") && l.contains("event=\"startup\""))
        .unwrap_or_else(|| panic!("no start-up record in\n{log}"));
    assert!(startup.contains("policy_version=\"sha256:"), "{startup}");
    assert!(startup.contains("config_sha256=\"sha256:"), "{startup}");
    assert!(
        log.lines().any(|l| l.contains("policy input")
            && l.contains("markings.toml")
            && l.contains("sha256:")),
        "no rule file line in\n{log}"
    );
    let decision = log
        .lines()
        .find(|l| l.contains(" decision") && l.contains(&format!("event_id=\"{}\"", ids[0])))
        .unwrap_or_else(|| panic!("no decision line for {} in\n{log}", ids[0]));
    for part in [
        format!("sender=\"{}\"", alice.user_id),
        format!("room=\"{room}\""),
        "verdict=\"redact\"".to_string(),
        "rule=\"dlp:marking.geheim\"".to_string(),
        "direction=\"outbound\"".to_string(),
    ] {
        assert!(decision.contains(&part), "{part} missing in {decision}");
    }
    assert!(
        !decision.contains("Lagebericht"),
        "content in the log: {decision}"
    );
    let refused = log
        .lines()
        .find(|l| l.contains("unknown endpoint refused"))
        .unwrap_or_else(|| panic!("no unknown-endpoint line in\n{log}"));
    assert!(
        refused.contains(&unknown) && refused.contains("GET"),
        "{refused}"
    );
    assert!(
        !refused.contains("secret=value"),
        "query values are not logged: {refused}"
    );

    // ---- Metrics -------------------------------------------------------------------------
    let m = guard_metrics(info).await;
    let sum = |name: &str, labels: &[(&str, &str)]| -> f64 {
        m.iter()
            .filter(|s| s.name == name && labels.iter().all(|(k, v)| s.label(k) == *v))
            .map(|s| s.value)
            .sum()
    };
    assert!(
        sum(
            "grenzwacht_decisions_total",
            &[
                ("direction", "outbound"),
                ("verdict", "redact"),
                ("unit", "pdu")
            ]
        ) >= 2.0
    );
    assert!(sum("grenzwacht_decisions_total", &[("verdict", "allow")]) >= 1.0);
    assert!(
        sum(
            "grenzwacht_dlp_decisions_total",
            &[("mode", "enforce"), ("rule", "marking.geheim")]
        ) >= 1.0
    );

    // ---- policy replay on the session's events ---------------------------------------------
    let tmp = tempfile::tempdir().unwrap();
    let mut lines = Vec::new();
    for id in &ids {
        let ev: Value = wait_event(alice, &room, id, WAIT).await;
        lines.push(
            json!({"event": ev, "direction": "outbound", "peer": hs2.server_name}).to_string(),
        );
    }
    let corpus = tmp.path().join("session.jsonl");
    std::fs::write(&corpus, lines.join("\n")).unwrap();
    let cfg = grenzwacht::config::Config::load(&info.guard.config).unwrap();
    let current = cfg.dlp.unwrap().policies;
    let cand = tmp.path().join("candidate");
    std::fs::create_dir_all(&cand).unwrap();
    // The rule files (the `yara/` directory of the set is not needed by the replay).
    for e in std::fs::read_dir(&current).unwrap().flatten() {
        if e.path().is_dir() {
            continue;
        }
        let mut text = std::fs::read_to_string(e.path()).unwrap();
        if e.file_name() == "markings.toml" {
            let at = text.find("id = \"marking.geheim\"").unwrap();
            let a = at + text[at..].find("action = \"redact\"").unwrap();
            text.replace_range(a..a + "action = \"redact\"".len(), "action = \"tag\"");
        }
        std::fs::write(cand.join(e.file_name()), text).unwrap();
    }
    let out = std::process::Command::new(env!("CARGO_BIN_EXE_grenzwacht"))
        .args(["policy", "replay", "--config"])
        .arg(&info.guard.config)
        .arg("--policies")
        .arg(&cand)
        .arg("--events")
        .arg(&corpus)
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let changed: Vec<Value> = String::from_utf8_lossy(&out.stdout)
        .lines()
        .map(|l| serde_json::from_str(l).unwrap())
        .collect();
    assert_eq!(changed.len(), 1, "{changed:#?}");
    assert_eq!(changed[0]["event_id"], ids[0].as_str());
    assert_eq!(changed[0]["old"]["verdict"], "redact");
    assert_eq!(changed[0]["new"]["verdict"], "allow");

    // ---- the same from the guard's own audit log of the session ------------------------------
    // (The lab keeps content in its decision records.) Every unit the guard decided is judged
    // again: only the message whose verdict the candidate changes is listed, however often it
    // crossed (transaction, answers to fetches).
    let out = std::process::Command::new(env!("CARGO_BIN_EXE_grenzwacht"))
        .args(["policy", "replay", "--config"])
        .arg(&info.guard.config)
        .arg("--policies")
        .arg(&cand)
        .arg("--audit")
        .arg(&info.guard.audit_dir)
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let changed: Vec<Value> = String::from_utf8_lossy(&out.stdout)
        .lines()
        .map(|l| serde_json::from_str(l).unwrap())
        .collect();
    let ids_changed: std::collections::BTreeSet<&str> = changed
        .iter()
        .map(|c| c["event_id"].as_str().unwrap_or(""))
        .collect();
    assert_eq!(
        ids_changed,
        std::collections::BTreeSet::from([ids[0].as_str()]),
        "{changed:#?}\n{}",
        String::from_utf8_lossy(&out.stderr)
    );
    for c in &changed {
        assert_eq!(c["old"]["verdict"], "redact", "{c}");
        assert_eq!(c["new"]["verdict"], "allow", "{c}");
    }
    // The session's audit log is intact and signed.
    let out = std::process::Command::new(env!("CARGO_BIN_EXE_grenzwacht"))
        .args(["audit", "verify"])
        .arg(&info.guard.audit_dir)
        .arg("--key")
        .arg(&info.guard.audit_public_key)
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
}
