//! End-to-end: opaque content on the plain `grenzwacht lab` (`[opaque] release = "deny"`, the
//! product default) with real Synapse. alice@hs1 and bob@hs2 share a room:
//! - a well-formed Megolm `m.room.encrypted` event arrives redacted, outbound and inbound (same
//!   event id, empty content), while cleartext messages around it arrive intact;
//! - a message with an encrypted attachment (`file` with key/iv/hashes) arrives redacted;
//! - an Olm-encrypted to-device message is not delivered, a cleartext one sent after it is;
//! - the guard's `grenzwacht_opaque_decisions_total` and log name the rules.
//!
//! The lab has no E2EE client: the ciphertexts are structurally well-formed messages made of
//! random bytes (`federation::e2ee::synthetic`).
#[path = "common/lab.rs"]
mod common;

use std::time::Duration;

use grenzwacht::federation::e2ee::synthetic;
use grenzwacht::lab::client::{wait_until, Session};
use serde_json::{json, Value};

const WAIT: Duration = Duration::from_secs(60);

async fn redacted(who: &Session, room: &str, id: &str, what: &str) {
    let seen = common::wait_event(who, room, id, WAIT).await;
    assert_eq!(seen["event_id"], id, "{what}: same event id");
    assert_eq!(
        seen["content"],
        json!({}),
        "{what}: must arrive redacted: {seen}"
    );
}

#[tokio::test]
async fn opaque_content_does_not_cross_by_default() {
    let lab = common::e2e_lab("opaque", false).await;
    let common::E2eLab {
        info, alice, bob, ..
    } = lab;
    let hs1 = info.hs1().clone();
    let room = alice
        .create_room(&json!({"preset": "private_chat", "name": "Opak"}))
        .await
        .expect("create room");
    alice.invite(&room, &bob.user_id).await.expect("invite");
    bob.wait_for_invite(&room, WAIT)
        .await
        .expect("bob sees the invite");
    bob.join(&room, &[&hs1.server_name])
        .await
        .expect("bob joins");
    alice
        .wait_for_member(&room, &bob.user_id, WAIT)
        .await
        .expect("alice sees bob");

    // Outbound: ciphertext redacted, cleartext after it intact.
    let ct = synthetic::megolm_content(0, 4);
    let e1 = alice
        .send_event(&room, "m.room.encrypted", &ct)
        .await
        .expect("send encrypted");
    alice
        .send_text(&room, "Klartext danach")
        .await
        .expect("send text");
    bob.wait_for_text(&room, &alice.user_id, "Klartext danach", WAIT)
        .await
        .expect("cleartext crosses");
    redacted(&bob, &room, &e1, "outbound Megolm event").await;
    // hs1 keeps its own event (the guard acts in transit only).
    let own = common::wait_event(&alice, &room, &e1, WAIT).await;
    assert_eq!(own["content"], ct);

    // Outbound: an encrypted attachment.
    let file = json!({"msgtype": "m.file", "body": "plan.pdf",
        "file": {"url": "mxc://lab/plan", "key": {"kty": "oct", "alg": "A256CTR", "ext": true, "k": "a2V5", "key_ops": ["encrypt", "decrypt"]},
                 "iv": "aXY", "hashes": {"sha256": "aGFzaA"}, "v": "v2"}});
    let e2 = alice
        .send_event(&room, "m.room.message", &file)
        .await
        .expect("send attachment");
    redacted(&bob, &room, &e2, "encrypted attachment").await;

    // Inbound: bob's ciphertext is redacted before hs1 (re-signed with the guard key).
    let e3 = bob
        .send_event(&room, "m.room.encrypted", &synthetic::megolm_content(1, 2))
        .await
        .expect("bob sends encrypted");
    bob.send_text(&room, "Antwort im Klartext")
        .await
        .expect("bob writes");
    alice
        .wait_for_text(&room, &bob.user_id, "Antwort im Klartext", WAIT)
        .await
        .expect("inbound cleartext crosses");
    redacted(&alice, &room, &e3, "inbound Megolm event").await;

    // To-device: the Olm message is dropped, the cleartext one sent after it arrives.
    let run = rand::random::<u32>();
    let mut olm = synthetic::olm_content(true);
    olm["run"] = json!(run);
    alice
        .send_to_device(
            "m.room.encrypted",
            &json!({&bob.user_id: {&bob.device_id: olm}}),
        )
        .await
        .expect("send olm to-device");
    alice
        .send_to_device(
            "org.grenzwacht.test",
            &json!({&bob.user_id: {&bob.device_id: {"text": "Treffpunkt 10 Uhr", "run": run}}}),
        )
        .await
        .expect("send clear to-device");
    let ours = |events: Vec<Value>| {
        events
            .into_iter()
            .filter(|e| e["content"]["run"] == run)
            .collect::<Vec<_>>()
    };
    let got = wait_until(
        "bob to get the cleartext to-device message",
        WAIT,
        || async {
            Ok(Some(ours(bob.to_device_events().await?))
                .filter(|v| v.iter().any(|e| e["type"] == "org.grenzwacht.test")))
        },
    )
    .await
    .expect("cleartext to-device message arrives");
    assert!(
        got.iter().all(|e| e["type"] != "m.room.encrypted"),
        "the Olm message reached hs2: {got:?}"
    );

    // The guard's view.
    let m = common::guard_metrics(&info).await;
    let count = |direction: &str, outcome: &str| -> f64 {
        m.iter()
            .filter(|s| {
                s.name == "grenzwacht_opaque_decisions_total"
                    && s.label("direction") == direction
                    && s.label("outcome") == outcome
            })
            .map(|s| s.value)
            .sum()
    };
    assert!(
        count("outbound", "opaque:encrypted") >= 2.0,
        "Megolm event and Olm to-device: {}",
        count("outbound", "opaque:encrypted")
    );
    assert!(count("outbound", "opaque:encrypted_file") >= 1.0);
    assert!(count("inbound", "opaque:encrypted") >= 1.0);
    let log = std::fs::read_to_string(&info.guard.log).unwrap_or_default();
    let log = regex::Regex::new("\x1b\\[[0-9;]*m")
        .unwrap()
        .replace_all(&log, "")
        .into_owned();
    assert!(
        log.lines()
            .any(|l| l.contains("opaque content not released")
                && l.contains("rule=opaque:encrypted_file")),
        "log names the attachment rule"
    );
    assert!(
        !log.contains(ct["ciphertext"].as_str().unwrap()),
        "ciphertext never logged"
    );
}
