//! End-to-end: a room shared with a cleared and an uncleared remote server, on a three-server
//! lab with labels (`lab up --servers 3 --labels`, real Synapse).
//!
//! hs1 is protected (DEU-VS, unlabeled = VS-NfD). hs2 is cleared for NATO RESTRICTED (=
//! VS-NfD), hs3 only for NATO UNCLASSIFIED (= OFFEN). hs2 and hs3 federate with each other
//! directly, past the guard. The guard must never let hs3 have an event it is not cleared for —
//! neither directly nor through hs2, which would serve the room's events to hs3 on request
//! (`/event`, `/backfill`). So in a room with both, what leaves hs1 is released at hs3's
//! clearance (rule `label:room_server` for hs2); in a room with hs2 alone it is released at
//! hs2's. The test asks hs2 itself, with a request signed by hs3's real key, for the events:
//! what hs2 holds is what the guard released.
#[path = "common/lab.rs"]
mod common;

use std::net::SocketAddr;
use std::time::Duration;

use grenzwacht::lab::client::{encode_segment, MatrixClient, Session};
use grenzwacht::lab::guard::LAB_DEU_POLICY;
use grenzwacht::lab::{HomeserverInfo, LabInfo};
use serde_json::{json, Value};

const WAIT: Duration = Duration::from_secs(60);

async fn send(who: &Session, room: &str, content: &Value) -> String {
    common::send_content(who, room, "m.room.message", content).await
}

fn text(body: &str, label: Option<Value>) -> Value {
    common::labeled_text(body, label)
}

/// What `who` reads of event `id` (waits until it has it).
async fn seen(who: &Session, room: &str, id: &str) -> Value {
    common::wait_event(who, room, id, WAIT).await["content"].clone()
}

/// A federation GET from `from` (signed with its real key) to `to`, sent to `addr`.
async fn federation_get(
    info: &LabInfo,
    from: &HomeserverInfo,
    to: &HomeserverInfo,
    addr: SocketAddr,
    path: &str,
) -> (u16, Value) {
    let auth = common::xmatrix_signed(
        &from.signing_key,
        &from.server_name,
        &to.server_name,
        "GET",
        path,
        b"",
    );
    let head = common::head("GET", path, &to.server_name, &[("Authorization", &auth)], 0);
    let r = common::tls_request(addr, &info.ca_cert, &head, b"").await;
    let body = serde_json::from_slice(&r.body).unwrap_or(Value::Null);
    (r.status, body)
}

fn fed_addr(h: &HomeserverInfo) -> SocketAddr {
    h.federation_url
        .trim_start_matches("https://")
        .parse()
        .expect("federation address")
}

/// The PDUs of `/event` or `/backfill` answers, by event id (room version 10: computed ids
/// are not in the PDU, so match on the body's marker instead and return every content).
fn pdu_contents(answer: &Value) -> Vec<Value> {
    answer["pdus"]
        .as_array()
        .map(|a| a.iter().map(|p| p["content"].clone()).collect())
        .unwrap_or_default()
}

fn label_outcomes(m: &[grenzwacht::lab::metrics::Sample], outcome: &str) -> f64 {
    m.iter()
        .filter(|s| {
            s.name == "grenzwacht_label_decisions_total"
                && s.label("outcome") == outcome
                && s.label("direction") == "outbound"
        })
        .map(|s| s.value)
        .sum()
}

#[tokio::test]
async fn a_room_with_an_uncleared_remote_server_is_released_at_its_clearance() {
    let lab = common::e2e_lab_with("labels-three", |o| {
        o.labels = true;
        o.servers = 3;
    })
    .await;
    let common::E2eLab {
        info, alice, bob, ..
    } = lab;
    let (hs1, hs2) = (info.hs1().clone(), info.hs2().clone());
    let hs3 = info.hs3().expect("three-server lab has hs3").clone();
    let carol = MatrixClient::new(&hs3.client_url)
        .register_shared_secret(&hs3.registration_shared_secret, "carol", "pw-carol", false)
        .await
        .unwrap();

    // Control: a room with hs2 alone. Unlabeled = VS-NfD, for which hs2 is cleared.
    let solo = alice
        .create_room(&json!({"preset": "private_chat", "name": "nur hs2"}))
        .await
        .unwrap();
    alice.invite(&solo, &bob.user_id).await.unwrap();
    bob.wait_for_invite(&solo, WAIT).await.unwrap();
    bob.join(&solo, &[&hs1.server_name]).await.unwrap();
    alice
        .wait_for_member(&solo, &bob.user_id, WAIT)
        .await
        .unwrap();
    let m0 = common::marker("solo-nfd-");
    let c0 = text(&m0, None);
    let e0 = send(&alice, &solo, &c0).await;
    assert_eq!(
        seen(&bob, &solo, &e0).await,
        c0,
        "VS-NfD reaches the cleared hs2 in a room without hs3"
    );

    // The shared room: hs2 and hs3 both join through hs1.
    let room = alice
        .create_room(&json!({"preset": "private_chat", "name": "hs2 und hs3"}))
        .await
        .unwrap();
    for (who, s) in [(&bob, &hs1), (&carol, &hs1)] {
        alice.invite(&room, &who.user_id).await.unwrap();
        who.wait_for_invite(&room, WAIT).await.unwrap();
        who.join(&room, &[&s.server_name]).await.unwrap();
        alice
            .wait_for_member(&room, &who.user_id, WAIT)
            .await
            .unwrap();
    }
    // hs2 and hs3 see each other in the room (they federate directly).
    bob.wait_for_member(&room, &carol.user_id, WAIT)
        .await
        .unwrap();
    carol
        .wait_for_member(&room, &bob.user_id, WAIT)
        .await
        .unwrap();

    // 1. Unlabeled (VS-NfD): hs3 is not cleared, so neither gets it — hs2 would pass it on.
    let m1 = common::marker("shared-nfd-");
    let e1 = send(&alice, &room, &text(&m1, None)).await;
    assert_eq!(
        seen(&carol, &room, &e1).await,
        json!({}),
        "redacted for hs3"
    );
    assert_eq!(
        seen(&bob, &room, &e1).await,
        json!({}),
        "redacted for hs2 too, because hs3 is in the room"
    );
    // 2. OFFEN: every remote server is cleared for it.
    let m2 = common::marker("shared-offen-");
    let c2 = text(
        &m2,
        Some(json!({"policy": LAB_DEU_POLICY, "classification": 1})),
    );
    let e2 = send(&alice, &room, &c2).await;
    assert_eq!(seen(&carol, &room, &e2).await, c2, "OFFEN reaches hs3");
    assert_eq!(seen(&bob, &room, &e2).await, c2, "OFFEN reaches hs2");

    // 3. Via the cleared one: hs3 asks hs2 (directly, signed with hs3's key) for the events.
    // hs2 answers — the OFFEN message comes back intact, proving the path works — and what
    // it holds of the VS-NfD message is the redacted form.
    for (id, marker, releasable) in [(&e1, &m1, false), (&e2, &m2, true)] {
        let path = format!("/_matrix/federation/v1/event/{}", encode_segment(id));
        let (status, body) = federation_get(&info, &hs3, &hs2, fed_addr(&hs2), &path).await;
        assert_eq!(status, 200, "hs2 serves hs3 the event {id}: {body}");
        let contents = pdu_contents(&body);
        assert_eq!(contents.len(), 1, "{body}");
        assert_eq!(
            body.to_string().contains(marker.as_str()),
            releasable,
            "hs2's copy of {id} as hs3 gets it: {body}"
        );
    }
    let backfill = format!(
        "/_matrix/federation/v1/backfill/{}?v={}&limit=50",
        encode_segment(&room),
        encode_segment(&e2)
    );
    let (status, body) = federation_get(&info, &hs3, &hs2, fed_addr(&hs2), &backfill).await;
    assert_eq!(status, 200, "hs2 backfills for hs3: {body}");
    assert!(
        pdu_contents(&body).len() >= 2,
        "backfill returns the room's history: {body}"
    );
    assert!(
        body.to_string().contains(m2.as_str()) && !body.to_string().contains(m1.as_str()),
        "hs2's history as hs3 gets it: the OFFEN message, not the VS-NfD one"
    );
    // And directly from hs1 through the guard: redacted as well.
    let path = format!("/_matrix/federation/v1/event/{}", encode_segment(&e1));
    let (status, body) = federation_get(&info, &hs3, &hs1, info.guard.inbound_addr, &path).await;
    assert_eq!(status, 200, "{body}");
    assert!(!body.to_string().contains(m1.as_str()), "{body}");
    // Nothing hs3 can read carries the VS-NfD marker.
    let history = carol.room_events(&room, 50).await.unwrap();
    assert!(
        !Value::Array(history).to_string().contains(m1.as_str()),
        "hs3's timeline never holds the VS-NfD message"
    );

    // 4. When hs3 leaves, the room is released at hs2's clearance again.
    carol.leave(&room).await.unwrap();
    alice
        .wait_for_member_gone(&room, &carol.user_id, WAIT)
        .await
        .unwrap();
    let m3 = common::marker("after-leave-nfd-");
    let c3 = text(&m3, None);
    let e3 = send(&alice, &room, &c3).await;
    assert_eq!(
        seen(&bob, &room, &e3).await,
        c3,
        "VS-NfD reaches hs2 once hs3 has left"
    );

    // Which rule decided: label:room_server for hs2 (events 1 and the unlabeled state events
    // of the shared room), label:deny for hs3 itself.
    let m = common::guard_metrics(&info).await;
    assert!(
        label_outcomes(&m, "label:room_server") >= 1.0,
        "room_server decisions: {}",
        label_outcomes(&m, "label:room_server")
    );
    assert!(label_outcomes(&m, "label:deny") >= 1.0);
}
