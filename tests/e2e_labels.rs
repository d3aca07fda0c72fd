//! End-to-end: security labels on `grenzwacht lab` with real Synapse.
//!
//! The lab runs with labels on (`LabOptions::labels`): hs1's side uses the shipped DEU-VS
//! policy (unlabeled = VS-NfD), hs2's side the shipped NATO policy; hs2 is cleared for NATO
//! RESTRICTED (= VS-NfD), releasable to DEU. alice@hs1 writes, bob@hs2 reads through the client
//! API:
//! - a VS-NfD-labeled message (JSON form and STANAG 4774 XML) arrives intact;
//! - a GEHEIM-labeled one arrives redacted;
//! - a VS-NfD message released to FRA only arrives redacted;
//! - an `m.room.encrypted` event (well-formed Megolm) without a label arrives redacted, with a
//!   releasable label intact (`[opaque] release = "labeled"`);
//! - a VS-NfD-labeled body marked GEHEIM (and one marked VS-VERTRAULICH) is held for review; a
//!   reviewer cleared like hs1 rejects it, so it arrives redacted;
//! - after the room is labeled GEHEIM, an unlabeled message arrives redacted.
//!
//! The lab guard's keyword rule also redacts `GEHEIM` in clear text. The cases are built so
//! that the label layer decides: labels in the JSON form (no marking words in the content),
//! marking words only where the mismatch is tested, and the guard's label metrics
//! (`grenzwacht_label_decisions_total{outcome="label:…"}`) and log prove which rule acted.
#[path = "common/lab.rs"]
mod common;

use std::time::Duration;

use grenzwacht::lab::client::{encode_segment, Session};
use grenzwacht::lab::guard::{LAB_DEU_POLICY, LAB_NATO_POLICY};
use serde_json::{json, Value};

const WAIT: Duration = Duration::from_secs(60);
const KEY: &str = "de.grenzwacht.label";

fn deu(class: u64, rel: &[u64]) -> Value {
    json!({"policy": LAB_DEU_POLICY, "classification": class,
           "categories": rel.iter().map(|l| json!({"tag_set": format!("{LAB_DEU_POLICY}.1"), "type": "permissive", "lacv": l})).collect::<Vec<_>>()})
}

async fn send(who: &Session, room: &str, ty: &str, content: &Value) -> String {
    common::send_content(who, room, ty, content).await
}

fn text(body: &str, label: Option<Value>) -> Value {
    common::labeled_text(body, label)
}

/// Waits until `who` can read event `event_id` in `room` and returns it.
async fn wait_event(who: &Session, room: &str, event_id: &str) -> Value {
    common::wait_event(who, room, event_id, WAIT).await
}

async fn intact(bob: &Session, room: &str, id: &str, sent: &Value, what: &str) {
    let seen = wait_event(bob, room, id).await;
    assert_eq!(&seen["content"], sent, "{what}: must arrive intact: {seen}");
}

/// A label/content mismatch is held for review (`on_mismatch = "hold"`): the lab's reviewer
/// (cleared like the protected side) rejects it through the admin API with the `review` CLI
/// (the real binary); the running guard delivers it redacted.
async fn reject_held(info: &grenzwacht::lab::LabInfo, event_id: &str) {
    let token = info.guard.review_tokens["lab-reviewer"].clone();
    let cli = move |args: Vec<String>| {
        let out = std::process::Command::new(env!("CARGO_BIN_EXE_grenzwacht"))
            .args(["review", "--admin", &info.guard.admin_url, "--token-file"])
            .arg(&token)
            .args(&args)
            .env_remove("GRENZWACHT_CONFIG")
            .output()
            .expect("run grenzwacht review");
        assert_eq!(
            out.status.code(),
            Some(0),
            "review {args:?}: {}",
            String::from_utf8_lossy(&out.stderr)
        );
        String::from_utf8_lossy(&out.stdout).into_owned()
    };
    let id = grenzwacht::lab::client::wait_until(&format!("{event_id} held"), WAIT, || {
        let listed = cli(vec!["list".into()]);
        async move {
            Ok(listed
                .lines()
                .filter_map(|l| serde_json::from_str::<Value>(l).ok())
                .find(|h| h["event_id"] == event_id)
                .and_then(|h| h["id"].as_i64()))
        }
    })
    .await
    .expect("held for review");
    let answer = cli(vec![
        "reject".into(),
        id.to_string(),
        "--reason".into(),
        "marking above the label".into(),
    ]);
    assert!(answer.contains("\"rejected\""), "{answer}");
}

async fn redacted(bob: &Session, room: &str, id: &str, what: &str) {
    let seen = wait_event(bob, room, id).await;
    assert_eq!(seen["event_id"], id, "{what}: same event id");
    assert_eq!(
        seen["content"],
        json!({}),
        "{what}: must arrive redacted: {seen}"
    );
}

#[tokio::test]
async fn labels_decide_release_per_event() {
    let lab = common::e2e_lab("labels", true).await;
    let common::E2eLab {
        info, alice, bob, ..
    } = lab;
    let hs1 = info.hs1().clone();

    // An unlabeled room: hs1's default VS-NfD = NATO RESTRICTED, for which hs2 is cleared.
    let room = alice
        .create_room(&json!({"preset": "private_chat", "name": "Lage"}))
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

    // Inbound positive control: bob's unlabeled message (NATO RESTRICTED by default) reaches hs1.
    bob.send_text(&room, "Hallo aus hs2")
        .await
        .expect("bob writes");
    alice
        .wait_for_text(&room, &bob.user_id, "Hallo aus hs2", WAIT)
        .await
        .expect("inbound unlabeled message arrives");

    // 1. VS-NfD, released to DEU: intact (JSON form and STANAG 4774 XML).
    let c1 = text("Lagebild 1: alles ruhig", Some(deu(2, &[276])));
    let e1 = send(&alice, &room, "m.room.message", &c1).await;
    intact(&bob, &room, &e1, &c1, "VS-NfD (JSON label)").await;
    let xml = format!(
        "<originatorConfidentialityLabel xmlns=\"urn:nato:stanag:4774:confidentialitymetadatalabel:1:0\"><ConfidentialityInformation>\
         <PolicyIdentifier URI=\"urn:oid:{LAB_DEU_POLICY}\">DEU-VS</PolicyIdentifier><Classification>VS-NUR FÜR DEN DIENSTGEBRAUCH</Classification>\
         </ConfidentialityInformation></originatorConfidentialityLabel>"
    );
    let c1x = text("Lagebild 1b: weiterhin ruhig", Some(json!(xml)));
    let e1x = send(&alice, &room, "m.room.message", &c1x).await;
    intact(&bob, &room, &e1x, &c1x, "VS-NfD (STANAG 4774 label)").await;

    // 2. GEHEIM: redacted (hs2 is cleared for NATO RESTRICTED only).
    let e2 = send(
        &alice,
        &room,
        "m.room.message",
        &text("Lagebild 2: Details", Some(deu(4, &[276]))),
    )
    .await;
    redacted(&bob, &room, &e2, "GEHEIM label").await;

    // 3. VS-NfD released to FRA only: redacted (hs2 is releasable to DEU).
    let e3 = send(
        &alice,
        &room,
        "m.room.message",
        &text("Lagebild 3: nur Frankreich", Some(deu(2, &[250]))),
    )
    .await;
    redacted(&bob, &room, &e3, "release category excludes the peer").await;

    // 4. m.room.encrypted: opaque; only a cleartext label releases it (`[opaque] release =
    // "labeled"` in the labels lab). A structurally well-formed Megolm message (random bytes).
    let ct = grenzwacht::federation::e2ee::synthetic::megolm_content(0, 4);
    let e4 = send(&alice, &room, "m.room.encrypted", &ct).await;
    redacted(&bob, &room, &e4, "unlabeled encrypted event").await;
    let mut ct_labeled = ct.clone();
    ct_labeled[KEY] = deu(2, &[276]);
    let e4b = send(&alice, &room, "m.room.encrypted", &ct_labeled).await;
    intact(
        &bob,
        &room,
        &e4b,
        &ct_labeled,
        "encrypted event with a releasable label",
    )
    .await;

    // 5. Label/content mismatch: a VS-NfD-labeled body marked GEHEIM, one marked VS-VERTRAULICH.
    let e5 = send(
        &alice,
        &room,
        "m.room.message",
        &text("Lagebild 5: GEHEIM", Some(deu(2, &[276]))),
    )
    .await;
    reject_held(&info, &e5).await;
    redacted(&bob, &room, &e5, "GEHEIM body in a VS-NfD event").await;
    let e5b = send(
        &alice,
        &room,
        "m.room.message",
        &text("Einstufung VS-VERTRAULICH", Some(deu(2, &[276]))),
    )
    .await;
    reject_held(&info, &e5b).await;
    redacted(&bob, &room, &e5b, "VS-VERTRAULICH body in a VS-NfD event").await;

    // The conversation goes on (positive control after the redactions).
    let c6 = text("Lagebild 6: ruhig", Some(deu(2, &[276])));
    let e6 = send(&alice, &room, "m.room.message", &c6).await;
    intact(&bob, &room, &e6, &c6, "VS-NfD after the redactions").await;

    // 7. The room is labeled GEHEIM: its unlabeled messages are GEHEIM and do not reach hs2.
    let state = format!(
        "/_matrix/client/v3/rooms/{}/state/de.grenzwacht.room_label",
        encode_segment(&room)
    );
    let rl = alice
        .client
        .call(
            "PUT",
            &state,
            Some(&alice.access_token),
            Some(&json!({KEY: deu(4, &[276])})),
        )
        .await
        .expect("room label");
    let rl_id = rl["event_id"].as_str().unwrap().to_string();
    redacted(&bob, &room, &rl_id, "the GEHEIM room label event itself").await;
    let e7 = send(
        &alice,
        &room,
        "m.room.message",
        &text("Lagebild 7: ohne Label", None),
    )
    .await;
    redacted(&bob, &room, &e7, "unlabeled message in a GEHEIM room").await;
    // hs1 itself keeps everything (labels act in transit only).
    let own = wait_event(&alice, &room, &e7).await;
    assert_eq!(own["content"]["body"], "Lagebild 7: ohne Label");

    // Which layer decided: the label layer's decisions, by rule.
    let m = common::guard_metrics(&info).await;
    let count = |outcome: &str| -> f64 {
        m.iter()
            .filter(|s| {
                s.name == "grenzwacht_label_decisions_total"
                    && s.label("outcome") == outcome
                    && s.label("direction") == "outbound"
            })
            .map(|s| s.value)
            .sum()
    };
    assert!(
        count("label:deny") >= 4.0,
        "GEHEIM, FRA-only, room label event, GEHEIM room: {}",
        count("label:deny")
    );
    assert!(count("label:unlabeled_encrypted") >= 1.0);
    // The opaque layer: the unlabeled ciphertext refused, the labeled one passed on to the
    // label layer.
    let opaque = |outcome: &str| -> f64 {
        m.iter()
            .filter(|s| {
                s.name == "grenzwacht_opaque_decisions_total"
                    && s.label("outcome") == outcome
                    && s.label("direction") == "outbound"
            })
            .map(|s| s.value)
            .sum()
    };
    assert!(
        opaque("opaque:unlabeled") >= 1.0,
        "{}",
        opaque("opaque:unlabeled")
    );
    assert!(opaque("labeled") >= 1.0, "{}", opaque("labeled"));
    assert!(
        count("label:mismatch") >= 2.0,
        "{}",
        count("label:mismatch")
    );
    assert!(count("allow") >= 5.0);
    let log = std::fs::read_to_string(&info.guard.log).unwrap_or_default();
    let log = regex::Regex::new("\x1b\\[[0-9;]*m")
        .unwrap()
        .replace_all(&log, "")
        .into_owned();
    // Per event: the label layer named each denied event and its rule.
    let named = |id: &str, rule: &str| {
        log.lines()
            .any(|l| l.contains(&format!("event_id={id} ")) && l.contains(rule))
    };
    for (id, rule) in [
        (&e2, "label:deny"),
        (&e3, "label:deny"),
        (&e4, "label:unlabeled_encrypted"),
        (&e5, "label:mismatch"),
        (&e5b, "label:mismatch"),
        (&e7, "label:deny"),
    ] {
        assert!(named(id, rule), "guard log names {id} with {rule}");
    }
    // The GEHEIM body matched the DLP marking rule too (redact), but the label layer's hold is
    // more severe, so the label rule is what applied. (The VS-VERTRAULICH body is held by both
    // layers; at equal severity the earlier layer, DLP, is named.)
    let by_dlp: Vec<&str> = log
        .lines()
        .filter(|l| {
            l.contains("redacting event in transit") && l.contains("rule=dlp:marking.geheim")
        })
        .collect();
    assert!(
        by_dlp.is_empty(),
        "the DLP redact rule won over the label hold: {by_dlp:?}"
    );
    assert!(
        log.contains("rule=label:mismatch"),
        "the mismatch was applied under the label rule"
    );
    assert!(log.contains("rule=label:deny") && log.contains("rule=label:unlabeled_encrypted"));
    assert!(
        log.contains("room label learned"),
        "the guard learned the room label"
    );
    assert!(
        !log.contains("Lagebild 2: Details") && !log.contains("Lagebild 5"),
        "content never logged"
    );
    let _ = LAB_NATO_POLICY;
}
