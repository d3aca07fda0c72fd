//! End-to-end: the TI-Messenger profile on `grenzwacht lab --ti` with real Synapse.
//!
//! hs1 (protected, `127.0.0.1:…`) and hs2 (`127.0.0.2:…`) federate through the guard, whose
//! federation list is signed in the test by a throwaway brainpool test CA (`lab::ti`,
//! `ti::testpki`) and read from a file. In order:
//! 1. both listed: encrypted messages cross both ways intact (`[ti] release_encrypted`), so
//!    does an encrypted attachment no readable event references; a readable unreferenced file
//!    does not;
//! 2. invites from bob@hs2 to hs1 users follow each invitee's permission config (block all +
//!    user exception → passes; allow all + server exception for hs2 → refused;
//!    `isInsuredPerson` → refused while hs2 is not an insurance, passes once the list says it is);
//! 3. the client-server listener: `createRoom` with two invitees refused, with one passes;
//! 4. hs2 not listed: its invite and a signed `/send` are refused with 403 naming the domain and
//!    never reach hs1; hs1's outbound to hs2 is refused;
//! 5. a list older than 72 h: all federation refused, `/health` says so.
#[path = "common/lab.rs"]
mod common;

use std::time::{Duration, SystemTime};

use grenzwacht::federation::e2ee::synthetic;
use grenzwacht::lab::client::{MatrixClient, Session};
use serde_json::{json, Value};

const WAIT: Duration = Duration::from_secs(60);
const PRO: &str = "de.gematik.tim.account.permissionconfig.pro.v1";

fn enc(s: &str) -> String {
    s.bytes()
        .map(|b| match b {
            b'A'..=b'Z' | b'a'..=b'z' | b'0'..=b'9' | b'-' | b'_' | b'.' | b'~' => {
                (b as char).to_string()
            }
            _ => format!("%{b:02X}"),
        })
        .collect()
}

async fn set_permissions(s: &Session, content: &Value) {
    s.client
        .call(
            "PUT",
            &format!(
                "/_matrix/client/v3/user/{}/account_data/{PRO}",
                enc(&s.user_id)
            ),
            Some(&s.access_token),
            Some(content),
        )
        .await
        .expect("set permission config");
}

async fn register(hs: &grenzwacht::lab::HomeserverInfo, name: &str) -> Session {
    MatrixClient::new(&hs.client_url)
        .register_shared_secret(&hs.registration_shared_secret, name, "pw", false)
        .await
        .expect("register")
}

fn domain(server_name: &str) -> String {
    grenzwacht::ti::list::domain_of(server_name)
}

/// Waits until the guard runs list `version` (its gauge), after the file changed.
async fn wait_list_version(info: &grenzwacht::lab::LabInfo, version: u64) {
    grenzwacht::lab::client::wait_until(
        &format!("the guard runs list version {version}"),
        WAIT,
        || async {
            let m = common::guard_metrics(info).await;
            Ok(m.iter()
                .any(|s| s.name == "grenzwacht_ti_list_version" && s.value == version as f64)
                .then_some(()))
        },
    )
    .await
    .expect("list installed");
}

async fn not_invited(s: &Session, room: &str) {
    tokio::time::sleep(Duration::from_secs(2)).await;
    assert!(
        !s.invited_rooms().await.unwrap().iter().any(|r| r == room),
        "{} must not see the invite to {room}",
        s.user_id
    );
}

fn ti_refusals(m: &[grenzwacht::lab::metrics::Sample], side: &str, reason: &str) -> f64 {
    m.iter()
        .filter(|s| {
            s.name == "grenzwacht_ti_refusals_total"
                && s.labels.get("side").map(String::as_str) == Some(side)
                && s.labels.get("reason").map(String::as_str) == Some(reason)
        })
        .map(|s| s.value)
        .sum()
}

#[tokio::test]
async fn ti_profile_enforces_list_and_permissions() {
    let lab = common::e2e_lab_with("ti", |o| o.ti = true).await;
    let common::E2eLab {
        info, alice, bob, ..
    } = lab;
    let (hs1, hs2) = (info.hs1().clone(), info.hs2().clone());
    assert!(
        hs2.server_name.starts_with("127.0.0.2:"),
        "{}",
        hs2.server_name
    );
    let (d1, d2) = (domain(&hs1.server_name), domain(&hs2.server_name));

    // 1. Both listed: encrypted messages cross intact both ways.
    let room = alice
        .create_room(&json!({"preset": "private_chat", "name": "TI", "room_version": "10"}))
        .await
        .expect("create room");
    alice.invite(&room, &bob.user_id).await.expect("invite bob");
    bob.wait_for_invite(&room, WAIT).await.expect("bob invited");
    bob.join(&room, &[&hs1.server_name])
        .await
        .expect("bob joins");
    alice
        .wait_for_member(&room, &bob.user_id, WAIT)
        .await
        .expect("alice sees bob");
    let ct = synthetic::megolm_content(1, 3);
    let e1 = alice
        .send_event(&room, "m.room.encrypted", &ct)
        .await
        .expect("send encrypted");
    let seen = common::wait_event(&bob, &room, &e1, WAIT).await;
    assert_eq!(seen["content"], ct, "outbound ciphertext crosses intact");
    let ct2 = synthetic::megolm_content(2, 3);
    let e2 = bob
        .send_event(&room, "m.room.encrypted", &ct2)
        .await
        .expect("send encrypted");
    let seen = common::wait_event(&alice, &room, &e2, WAIT).await;
    assert_eq!(seen["content"], ct2, "inbound ciphertext crosses intact");

    // A transaction from hs2 (listed) whose second event names an unlisted media server: that
    // event is left out, the one before it arrives.
    {
        let state = alice.room_state(&room).await.expect("state");
        let id_of = |kind: &str, key: &str| {
            state
                .iter()
                .find(|e| e["type"] == kind && e["state_key"] == key)
                .and_then(|e| e["event_id"].as_str())
                .unwrap_or_else(|| panic!("no {kind} in {state:?}"))
                .to_string()
        };
        let auth = vec![
            id_of("m.room.create", ""),
            id_of("m.room.power_levels", ""),
            id_of("m.room.member", &bob.user_id),
        ];
        let latest = alice.room_events(&room, 1).await.expect("events");
        let prev = latest[0]["event_id"].as_str().unwrap().to_string();
        let key = grenzwacht::keys::SigningKey::from_synapse_file(&hs2.signing_key).unwrap();
        let ts = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .unwrap()
            .as_millis() as u64;
        let message = |depth: u64, content: Value, prev: &str| {
            json!({
                "type": "m.room.message", "room_id": room, "sender": bob.user_id,
                "content": content, "origin_server_ts": ts + depth, "depth": depth,
                "auth_events": auth, "prev_events": [prev],
            })
        };
        let t1 = common::marker("gelistet");
        let p1 = common::signed_v10(
            &hs2.server_name,
            &key,
            message(1000, json!({"msgtype": "m.text", "body": t1}), &prev),
        );
        let p1_id = common::event_id_v10(&p1);
        let p2 = common::signed_v10(
            &hs2.server_name,
            &key,
            message(
                1001,
                json!({"msgtype": "m.image", "body": "x.png", "url": "mxc://unlisted.example/abc"}),
                &p1_id,
            ),
        );
        let p2_id = common::event_id_v10(&p2);
        let body = serde_json::to_vec(&json!({
            "origin": hs2.server_name, "origin_server_ts": ts, "edus": [], "pdus": [p1, p2]
        }))
        .unwrap();
        let path = format!("/_matrix/federation/v1/send/{}", common::marker("t"));
        let auth_header = common::xmatrix_signed(
            &hs2.signing_key,
            &hs2.server_name,
            &hs1.server_name,
            "PUT",
            &path,
            &body,
        );
        let head = common::head(
            "PUT",
            &path,
            &hs1.server_name,
            &[
                ("Authorization", &auth_header),
                ("Content-Type", "application/json"),
            ],
            body.len(),
        );
        let r = common::tls_request(info.guard.inbound_addr, &info.ca_cert, &head, &body).await;
        assert_eq!(r.status, 200, "{}", r.text());
        let answer = r.json();
        assert_eq!(
            answer["pdus"][&p2_id]["error"].as_str(),
            Some(grenzwacht::proxy::pause::WITHHELD_ERROR),
            "the event naming an unlisted server is left out: {answer}"
        );
        assert_eq!(answer["pdus"][&p1_id], json!({}), "{answer}");
        let seen = common::wait_event(&alice, &room, &p1_id, WAIT).await;
        assert_eq!(seen["content"]["body"], t1.as_str());
        let path = format!(
            "/_matrix/client/v3/rooms/{}/event/{}",
            enc(&room),
            enc(&p2_id)
        );
        assert!(
            alice
                .client
                .call("GET", &path, Some(&alice.access_token), None)
                .await
                .is_err(),
            "hs1 never sees the left-out event"
        );
        let withheld: f64 = common::guard_metrics(&info)
            .await
            .iter()
            .filter(|s| {
                s.name == "grenzwacht_withheld_pdus_total"
                    && s.labels.get("cause").map(String::as_str) == Some("ti_denied")
            })
            .map(|s| s.value)
            .sum();
        assert!(withheld >= 1.0, "counted");
    }

    // An encrypted attachment of an E2EE room: no event the guard can read references it; its
    // bytes are ciphertext, so it crosses. A readable file nothing references does not.
    let mut cipher = vec![0u8; 4096];
    rand::RngCore::fill_bytes(&mut rand::thread_rng(), &mut cipher);
    let mxc = bob
        .upload(&cipher, "application/octet-stream", "")
        .await
        .expect("upload ciphertext");
    bob.send_event(&room, "m.room.encrypted", &synthetic::megolm_content(3, 3))
        .await
        .expect("send the event that carries the attachment");
    let got = alice.download(&mxc).await.expect("download");
    assert_eq!(got.status, 200, "{:?}", got.json());
    assert_eq!(
        &got.body[..],
        &cipher[..],
        "the ciphertext crosses byte-identical"
    );
    let plain = bob
        .upload(
            "Befund: nicht referenziert".repeat(40).as_bytes(),
            "text/plain",
            "befund.txt",
        )
        .await
        .expect("upload text");
    let got = alice.download(&plain).await.expect("download answered");
    assert_ne!(got.status, 200, "readable unreferenced media is refused");

    // 2. Invite permissions of hs1's users, invites from bob@hs2.
    let carol = register(&hs1, "carol").await;
    set_permissions(
        &carol,
        &json!({"defaultSetting": "block all", "userExceptions": {bob.user_id.clone(): {}}}),
    )
    .await;
    let dave = register(&hs1, "dave").await;
    set_permissions(
        &dave,
        &json!({"defaultSetting": "allow all", "serverExceptions": {d2.clone(): {}}}),
    )
    .await;
    let erin = register(&hs1, "erin").await;
    set_permissions(
        &erin,
        &json!({"defaultSetting": "block all", "groupExceptions": [{"groupName": "isInsuredPerson"}]}),
    )
    .await;
    let r2 = bob
        .create_room(&json!({"preset": "private_chat", "name": "Einladungen"}))
        .await
        .expect("bob's room");
    bob.invite(&r2, &carol.user_id)
        .await
        .expect("block all + user exception for the inviter: passes");
    carol
        .wait_for_invite(&r2, WAIT)
        .await
        .expect("carol invited");
    let refused = bob.invite(&r2, &dave.user_id).await;
    assert!(refused.is_err(), "allow all + server exception: refused");
    not_invited(&dave, &r2).await;
    let refused = bob.invite(&r2, &erin.user_id).await;
    assert!(
        refused.is_err(),
        "isInsuredPerson while hs2 is no insurance: refused"
    );
    not_invited(&erin, &r2).await;
    grenzwacht::lab::ti::write_list(&info.dir, 2, &[(d1.clone(), false), (d2.clone(), true)])
        .expect("list v2");
    wait_list_version(&info, 2).await;
    bob.invite(&r2, &erin.user_id)
        .await
        .expect("isInsuredPerson with isInsurance: passes");
    erin.wait_for_invite(&r2, WAIT).await.expect("erin invited");
    let m = common::guard_metrics(&info).await;
    assert!(ti_refusals(&m, "inbound", "invite_refused") >= 2.0);

    // 3. The client-server listener in front of hs1.
    let via_guard = Session {
        client: MatrixClient::new(
            info.guard
                .ti_client_url
                .as_deref()
                .expect("client listener"),
        ),
        ..alice.clone()
    };
    let two = via_guard
        .client
        .raw(
            "POST",
            "/_matrix/client/v3/createRoom",
            Some(&alice.access_token),
            Some(&json!({"invite": [bob.user_id, carol.user_id]})),
            WAIT,
        )
        .await
        .expect("createRoom answered");
    assert_eq!(two.status, 403, "{:?}", two.json());
    assert_eq!(two.json()["errcode"], "M_FORBIDDEN");
    let one = via_guard
        .create_room(&json!({"invite": [bob.user_id]}))
        .await
        .expect("createRoom with one listed invitee passes");
    bob.wait_for_invite(&one, WAIT)
        .await
        .expect("bob invited through the listener");

    // 4. hs2 taken off the list. Until now nothing went out refused.
    assert_eq!(
        ti_refusals(
            &common::guard_metrics(&info).await,
            "outbound",
            "not_listed"
        ),
        0.0
    );
    grenzwacht::lab::ti::write_list(&info.dir, 3, &[(d1.clone(), false)]).expect("list v3");
    wait_list_version(&info, 3).await;
    let r3 = bob
        .create_room(&json!({"preset": "private_chat"}))
        .await
        .expect("bob's room");
    assert!(
        bob.invite(&r3, &alice.user_id).await.is_err(),
        "an unlisted server's invite is refused"
    );
    not_invited(&alice, &r3).await;
    // A /send signed by hs2, straight to the guard's inbound listener.
    let txn = common::marker("titxn");
    let path = format!("/_matrix/federation/v1/send/{txn}");
    let body =
        serde_json::to_vec(&json!({"origin": hs2.server_name, "origin_server_ts": 1, "pdus": []}))
            .unwrap();
    let auth = common::xmatrix_signed(
        &hs2.signing_key,
        &hs2.server_name,
        &hs1.server_name,
        "PUT",
        &path,
        &body,
    );
    let head = common::head(
        "PUT",
        &path,
        &hs1.server_name,
        &[
            ("Authorization", &auth),
            ("Content-Type", "application/json"),
        ],
        body.len(),
    );
    let r = common::tls_request(info.guard.inbound_addr, &info.ca_cert, &head, &body).await;
    assert_eq!(r.status, 403, "{}", r.text());
    assert_eq!(r.errcode(), "M_FORBIDDEN");
    assert!(
        r.text().contains(&d2),
        "the error names the domain: {}",
        r.text()
    );
    assert!(
        !common::hs_log(&info, "hs1").contains(&txn),
        "hs1 never sees the refused transaction"
    );
    // Outbound from hs1 to hs2 is refused (hs1's first transaction to hs2 after the change may
    // be one of its own EDUs; after a 403 Synapse backs off, so any one refusal shows it).
    let before = 0.0;
    alice
        .send_text(&room, "nach der Streichung")
        .await
        .expect("send");
    grenzwacht::lab::client::wait_until("an outbound refusal", WAIT, || async {
        let now = ti_refusals(
            &common::guard_metrics(&info).await,
            "outbound",
            "not_listed",
        );
        Ok((now > before).then_some(()))
    })
    .await
    .expect("hs1's outbound to hs2 refused");
    tokio::time::sleep(Duration::from_secs(2)).await;
    assert!(
        !bob.messages(&room, 50)
            .await
            .unwrap()
            .iter()
            .any(|m| m.body == "nach der Streichung"),
        "nothing reaches the unlisted server"
    );

    // 5. Both listed again, but the list's last verification is 73 h old: everything refused.
    let file =
        grenzwacht::lab::ti::write_list(&info.dir, 4, &[(d1.clone(), false), (d2.clone(), false)])
            .expect("list v4");
    wait_list_version(&info, 4).await;
    let old = SystemTime::now() - Duration::from_secs(73 * 3600);
    std::fs::File::options()
        .write(true)
        .open(&file)
        .and_then(|f| f.set_modified(old))
        .expect("backdate the list");
    let admin = MatrixClient::new(&info.guard.admin_url);
    grenzwacht::lab::client::wait_until("health reports the stale list", WAIT, || async {
        let r = admin.raw("GET", "/health", None, None, WAIT).await?;
        Ok((r.status == 503 && String::from_utf8_lossy(&r.body).contains("ti_list")).then_some(()))
    })
    .await
    .expect("health 503");
    let r = common::tls_request(info.guard.inbound_addr, &info.ca_cert, &head, &body).await;
    assert_eq!(r.status, 403, "{}", r.text());
    assert!(r.text().contains("not current"), "{}", r.text());
    let m = common::guard_metrics(&info).await;
    assert!(ti_refusals(&m, "inbound", "list_stale") >= 1.0);
}
