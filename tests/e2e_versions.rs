//! End-to-end: room versions from authoritative sources only, and recovery after the guard's
//! store is lost (real Synapse).
//!
//! On the lab (hs1 protected, with the admin API the guard may ask; hs2 remote):
//! (a) alice creates a room on hs1; before any traffic of it crossed the guard, "hs2" sends a
//!     transaction with two forged `m.room.create` events for it — one signed by hs2 claiming
//!     version 13 (its sender is on hs2, not the room's server), one "from hs1" claiming
//!     version 1 without hs1's signature. Neither teaches the guard anything (counted
//!     `unverified`); the room's version comes from hs1's admin API, and alice and bob talk in
//!     the room;
//! (b) a v1 invite (hand-made, signed with hs2's key) into bob's version 1 room reaches alice;
//!     she joins and they talk;
//! (c) the guard is stopped, its store deleted, the guard started again: both existing rooms
//!     federate again in both directions (the guard looks their versions up at hs1).
#[path = "common/lab.rs"]
mod common;

use std::time::Duration;

use grenzwacht::keys::SigningKey;
use grenzwacht::lab::client::{encode_segment, wait_until, MatrixClient, Session};
use grenzwacht::lab::process::{self, PidFile};
use grenzwacht::lab::LabInfo;
use serde_json::json;

const WAIT: Duration = Duration::from_secs(60);

/// `grenzwacht_room_version_claims_total{source="create_event",outcome}`.
async fn create_claims(info: &LabInfo, outcome: &str) -> f64 {
    common::guard_metrics(info)
        .await
        .iter()
        .filter(|s| {
            s.name == "grenzwacht_room_version_claims_total"
                && s.label("source") == "create_event"
                && s.label("outcome") == outcome
        })
        .map(|s| s.value)
        .sum()
}

/// `grenzwacht_room_version_lookups_total{outcome="found"}`.
async fn lookups_found(info: &LabInfo) -> f64 {
    common::guard_metrics(info)
        .await
        .iter()
        .filter(|s| {
            s.name == "grenzwacht_room_version_lookups_total" && s.label("outcome") == "found"
        })
        .map(|s| s.value)
        .sum()
}

/// The room version the guard's store holds for `room` (read from the file while the guard
/// runs: WAL mode allows a second reader) and where it was learned.
fn stored_version(info: &LabInfo, room: &str) -> Option<(String, String)> {
    let store = grenzwacht::store::Store::open(info.dir.join("grenzwacht.db")).expect("store");
    store
        .room_version_record(room)
        .expect("read")
        .map(|r| (r.version, r.learned_from))
}

/// Stops the lab's guard (SIGTERM, as recorded in `pids.json`), runs `between`, and starts
/// it again with the same command line; returns when its `/health` answers.
async fn restart_guard(info: &LabInfo, between: impl FnOnce()) {
    let dir = &info.dir;
    let mut pids = PidFile::load(dir).expect("pids.json").expect("lab running");
    let i = pids
        .processes
        .iter()
        .position(|r| r.name == "guard")
        .expect("guard record");
    let rec = pids.processes[i].clone();
    let outcome = tokio::task::spawn_blocking({
        let rec = rec.clone();
        move || process::stop(&rec, Duration::from_secs(20))
    })
    .await
    .unwrap();
    assert!(
        matches!(
            outcome,
            process::StopOutcome::Terminated | process::StopOutcome::Killed
        ),
        "guard stopped: {outcome:?}"
    );
    between();
    let new = process::spawn("guard", &rec.argv, dir, &rec.log, &[]).expect("start guard");
    pids.processes[i] = new;
    pids.save(dir).expect("save pids.json");
    let admin = MatrixClient::new(&info.guard.admin_url);
    wait_until("guard /health after restart", WAIT, || async {
        Ok(admin
            .raw("GET", "/health", None, None, Duration::from_secs(2))
            .await
            .ok()
            .filter(|r| r.status == 200)
            .map(|_| ()))
    })
    .await
    .expect("guard answers after restart");
}

/// A message each way in `room`: alice first, or (`bob_first`) bob first.
async fn talk(alice: &Session, bob: &Session, room: &str, tag: &str, bob_first: bool) {
    for turn in 0..2 {
        if (turn == 0) != bob_first {
            let out = format!("{tag}: hallo bob");
            alice.send_text(room, &out).await.expect("alice sends");
            bob.wait_for_text(room, &alice.user_id, &out, WAIT)
                .await
                .unwrap_or_else(|e| panic!("{tag}: hs2 gets alice's message: {e}"));
        } else {
            let back = format!("{tag}: hallo alice");
            bob.send_text(room, &back).await.expect("bob sends");
            alice
                .wait_for_text(room, &bob.user_id, &back, WAIT)
                .await
                .unwrap_or_else(|e| panic!("{tag}: hs1 gets bob's message: {e}"));
        }
    }
}

/// PUT as hs2 to the guard's inbound listener (X-Matrix signed with hs2's key).
async fn put_as_hs2(info: &LabInfo, path: &str, body: &serde_json::Value) -> common::Resp {
    let (hs1, hs2) = (info.hs1(), info.hs2());
    let body = serde_json::to_vec(body).unwrap();
    let auth = common::xmatrix_signed(
        &hs2.signing_key,
        &hs2.server_name,
        &hs1.server_name,
        "PUT",
        path,
        &body,
    );
    common::tls_request(
        info.guard.inbound_addr,
        &info.ca_cert,
        &common::head(
            "PUT",
            path,
            &hs1.server_name,
            &[
                ("Authorization", &auth),
                ("Content-Type", "application/json"),
            ],
            body.len(),
        ),
        &body,
    )
    .await
}

/// `v` hashed and signed by hs2 under the rules of `version`.
fn signed_by_hs2(
    info: &LabInfo,
    v: serde_json::Value,
    version: ruma::RoomVersionId,
) -> serde_json::Value {
    let key = SigningKey::from_synapse_file(&info.hs2().signing_key).expect("hs2 key");
    let mut obj: ruma::CanonicalJsonObject = serde_json::from_value(v).unwrap();
    let rules = version.rules().unwrap();
    ruma::signatures::hash_and_sign_event(
        &info.hs2().server_name,
        key.key_pair(),
        &mut obj,
        &rules.redaction,
    )
    .unwrap();
    serde_json::to_value(obj).unwrap()
}

fn now_ms() -> u64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_millis() as u64
}

#[tokio::test]
async fn forged_create_events_change_nothing_v1_invites_work_and_a_lost_store_recovers() {
    let lab = common::e2e_lab("versions", false).await;
    let common::E2eLab {
        info, alice, bob, ..
    } = lab;
    let (hs1, hs2) = (info.hs1().clone(), info.hs2().clone());

    // (a) A fresh room of hs1, unknown to the guard.
    let room = alice
        .create_room(&json!({"preset": "private_chat", "room_version": "10", "name": "echt"}))
        .await
        .expect("create room");
    let unverified_before = create_claims(&info, "unverified").await;
    let forged_by_hs2 = signed_by_hs2(
        &info,
        json!({
            "auth_events": [], "prev_events": [], "depth": 1, "origin_server_ts": now_ms(),
            "room_id": room, "sender": format!("@mallory:{}", hs2.server_name),
            "type": "m.room.create", "state_key": "",
            "content": {"creator": format!("@mallory:{}", hs2.server_name), "room_version": "13"}
        }),
        ruma::RoomVersionId::V10,
    );
    // As if from hs1 (passes the create auth rules), claiming a version the guard knows.
    let forged_unsigned = json!({
        "auth_events": [], "prev_events": [], "depth": 1, "origin_server_ts": now_ms(),
        "room_id": room, "sender": alice.user_id, "type": "m.room.create", "state_key": "",
        "content": {"creator": alice.user_id, "room_version": "1"},
        "hashes": {"sha256": "AAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAA"}, "signatures": {}
    });
    let txn = common::marker("gwversions");
    let r = put_as_hs2(
        &info,
        &format!("/_matrix/federation/v1/send/{txn}"),
        &json!({"origin": hs2.server_name, "origin_server_ts": now_ms(),
                "pdus": [forged_by_hs2, forged_unsigned], "edus": []}),
    )
    .await;
    assert_eq!(r.status, 200, "the transaction is answered: {}", r.text());
    assert!(
        create_claims(&info, "unverified").await - unverified_before >= 2.0,
        "both forged create events counted as unverified"
    );
    assert_eq!(
        stored_version(&info, &room),
        Some(("10".into(), "admin_api".into())),
        "the guard asked hs1, not the forger"
    );
    alice.invite(&room, &bob.user_id).await.expect("invite bob");
    bob.wait_for_invite(&room, WAIT).await.expect("bob invited");
    bob.join(&room, &[&hs1.server_name])
        .await
        .expect("bob joins");
    alice
        .wait_for_member(&room, &bob.user_id, WAIT)
        .await
        .expect("alice sees bob");
    talk(&alice, &bob, &room, "after the forgery", false).await;
    assert_eq!(stored_version(&info, &room).map(|v| v.0), Some("10".into()));

    // (b) A v1 invite: bob's public room of version 1 on hs2; the invite event is made by hand
    // (Synapse sends v2 invites even for version 1 rooms) and signed with hs2's key.
    let old_room = bob
        .create_room(&json!({"preset": "public_chat", "room_version": "1", "name": "alt"}))
        .await
        .expect("create a version 1 room");
    let event_id = format!("${}:{}", common::marker("inv"), hs2.server_name);
    let invite = signed_by_hs2(
        &info,
        json!({
            "auth_events": [], "prev_events": [], "depth": 5, "origin_server_ts": now_ms(),
            "origin": hs2.server_name, "event_id": event_id, "room_id": old_room,
            "sender": bob.user_id, "state_key": alice.user_id, "type": "m.room.member",
            "content": {"membership": "invite"}
        }),
        ruma::RoomVersionId::V1,
    );
    let r = put_as_hs2(
        &info,
        &format!(
            "/_matrix/federation/v1/invite/{}/{}",
            encode_segment(&old_room),
            encode_segment(&event_id)
        ),
        &invite,
    )
    .await;
    assert_eq!(r.status, 200, "v1 invite: {}", r.text());
    assert_eq!(r.json()[0], 200, "v1 invite answer: {}", r.text());
    alice
        .wait_for_invite(&old_room, WAIT)
        .await
        .expect("alice sees the v1 invite");
    alice
        .join(&old_room, &[&hs2.server_name])
        .await
        .expect("alice joins the version 1 room");
    bob.wait_for_member(&old_room, &alice.user_id, WAIT)
        .await
        .expect("bob sees alice");
    talk(&alice, &bob, &old_room, "version 1 room", false).await;
    assert_eq!(
        stored_version(&info, &old_room).map(|v| v.0),
        Some("1".into())
    );

    // (c) The guard's store is lost: stop, delete the database, start again.
    restart_guard(&info, || {
        for suffix in ["", "-wal", "-shm"] {
            let p = info.dir.join(format!("grenzwacht.db{suffix}"));
            if p.exists() {
                std::fs::remove_file(&p).expect("delete the store");
            }
        }
    })
    .await;
    assert!(
        info.dir.join("grenzwacht.db").exists(),
        "the restarted guard made a new store"
    );
    // hs1's room: the first event after the loss enters hs1 (the guard must verify it, so
    // it must know the version); bob's room: the first event leaves hs1.
    talk(&alice, &bob, &room, "after the store was lost", true).await;
    talk(&alice, &bob, &old_room, "version 1 room, store lost", false).await;
    assert_eq!(
        stored_version(&info, &room),
        Some(("10".into(), "admin_api".into()))
    );
    assert_eq!(
        stored_version(&info, &old_room),
        Some(("1".into(), "admin_api".into()))
    );
    assert!(lookups_found(&info).await >= 2.0);
    let log = std::fs::read_to_string(&info.guard.log).unwrap_or_default();
    assert!(log.contains("room version looked up at the protected homeserver"));
}
