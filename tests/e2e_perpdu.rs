//! End-to-end (real Synapse): one bad event does not sink the others.
//!
//! - **Join through a `send_join` answer with one forged event.** A fake room server (in this
//!   test, TLS with a certificate of the lab CA, server name `127.0.0.1:PORT`, its own signing
//!   key) serves a version 10 room: `make_join`, and a `send_join` answer whose state holds one
//!   event signed under the fake's name and key id with another key. alice on hs1 joins the
//!   room through the guard: the join succeeds, the room's name (a valid event) is in hs1's
//!   state, the forged topic is not (the guard let it cross redacted, hs1 rejected it for its
//!   signature, as it would without the guard).
//! - **A transaction with one float PDU.** In a room of version 10 shared by alice (hs1) and
//!   bob (hs2), the test sends, as hs2 (with hs2's signing key, through the guard's inbound
//!   listener), a transaction of three PDUs by bob: a message, a message with a float in its
//!   content (invalid in room version 6+), another message. The two valid messages arrive at
//!   hs1; the sender gets a per-PDU error for the float PDU.
//! - **hs1 as a key notary.** hs2's key object as hs1 serves it (learnt through the guard,
//!   attested) verifies at the requester: hs2's self-signature and hs1's notary signature.
#[path = "common/lab.rs"]
mod common;
#[path = "common/mod.rs"]
mod harness;

use std::sync::{Arc, OnceLock};
use std::time::Duration;

use grenzwacht::keys::SigningKey;
use grenzwacht::lab::client::encode_segment;
use serde_json::{json, Value};

const WAIT: Duration = Duration::from_secs(60);

fn now_ms() -> u64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_millis() as u64
}

fn signed(server: &str, key: &SigningKey, v: Value) -> Value {
    common::signed_v10(server, key, v)
}

fn event_id(v: &Value) -> String {
    common::event_id_v10(v)
}

/// What the fake room server answers, built once its address is known.
struct FakeRoom {
    keys: Vec<u8>,
    make_join: Vec<u8>,
    send_join: Vec<u8>,
}

/// The fake room server's events: create, creator's join, power levels, public join rules, a
/// forged topic, a name. Returns the answers and the room id.
fn fake_room(name: &str, key: &SigningKey, joiner: &str) -> (FakeRoom, String) {
    let room = format!("!perpdu:{name}");
    let creator = format!("@f:{name}");
    let ts = now_ms();
    let ev = |depth: u64,
              kind: &str,
              state_key: &str,
              content: Value,
              auth: &[&Value],
              prev: &[&Value]| {
        json!({
            "type": kind, "state_key": state_key, "content": content, "room_id": room,
            "sender": creator, "origin_server_ts": ts + depth, "depth": depth,
            "auth_events": auth.iter().map(|e| event_id(e)).collect::<Vec<_>>(),
            "prev_events": prev.iter().map(|e| event_id(e)).collect::<Vec<_>>(),
        })
    };
    let create = signed(
        name,
        key,
        ev(
            1,
            "m.room.create",
            "",
            json!({"creator": creator, "room_version": "10"}),
            &[],
            &[],
        ),
    );
    let member = signed(
        name,
        key,
        ev(
            2,
            "m.room.member",
            &creator,
            json!({"membership": "join"}),
            &[&create],
            &[&create],
        ),
    );
    let power = signed(
        name,
        key,
        ev(
            3,
            "m.room.power_levels",
            "",
            json!({"users": {&creator: 100}, "users_default": 0, "events_default": 0,
                   "state_default": 50, "ban": 50, "kick": 50, "redact": 50, "invite": 0}),
            &[&create, &member],
            &[&member],
        ),
    );
    let rules = signed(
        name,
        key,
        ev(
            4,
            "m.room.join_rules",
            "",
            json!({"join_rule": "public"}),
            &[&create, &member, &power],
            &[&power],
        ),
    );
    // Signed under the fake's name and key id, with another key: the signature fails.
    let forger = SigningKey::generate(key.version()).unwrap();
    let topic = signed(
        name,
        &forger,
        ev(
            5,
            "m.room.topic",
            "",
            json!({"topic": "gefälschtes Thema"}),
            &[&create, &member, &power],
            &[&rules],
        ),
    );
    let room_name = signed(
        name,
        key,
        ev(
            6,
            "m.room.name",
            "",
            json!({"name": "perpdu fake room"}),
            &[&create, &member, &power],
            &[&topic],
        ),
    );
    let template = json!({
        "type": "m.room.member", "state_key": joiner, "sender": joiner, "room_id": room,
        "content": {"membership": "join"}, "origin_server_ts": now_ms(), "depth": 7,
        "prev_events": [event_id(&room_name)],
        "auth_events": [event_id(&create), event_id(&rules), event_id(&power)],
    });
    let make_join = serde_json::to_vec(&json!({"room_version": "10", "event": template})).unwrap();
    let send_join = serde_json::to_vec(&json!({
        "origin": name,
        "auth_chain": [create, member, power, rules],
        "state": [create, member, power, rules, topic, room_name],
    }))
    .unwrap();
    let mut keys: ruma::CanonicalJsonObject = serde_json::from_value(json!({
        "server_name": name, "valid_until_ts": now_ms() + 86_400_000, "old_verify_keys": {},
        "verify_keys": {key.key_id(): {"key": key.public_key_base64()}}
    }))
    .unwrap();
    key.sign_json(name, &mut keys).unwrap();
    (
        FakeRoom {
            keys: serde_json::to_vec(&keys).unwrap(),
            make_join,
            send_join,
        },
        room,
    )
}

/// Starts the fake room server (TLS, a leaf of the lab CA for 127.0.0.1) for `joiner`.
async fn fake_room_server(
    info: &grenzwacht::lab::LabInfo,
    joiner: &str,
) -> (harness::Recorder, String, String) {
    let ca = grenzwacht::proxy::ca::Ca::load(&info.dir.join("certs")).expect("lab CA");
    let ck = ca
        .issue_certified_key(&["127.0.0.1".to_string()], Duration::from_secs(3600))
        .unwrap();
    let acceptor = tokio_rustls::TlsAcceptor::from(grenzwacht::proxy::tls::server_config(
        Arc::new(grenzwacht::proxy::tls::SniResolver::new(vec![("127.0.0.1".into(), ck)]).unwrap()),
    ));
    let room: Arc<OnceLock<FakeRoom>> = Arc::new(OnceLock::new());
    let r = room.clone();
    let answer: harness::Answer = Arc::new(move |s: &harness::Seen| {
        let Some(room) = r.get() else {
            return (503, "application/json", b"{}".to_vec());
        };
        let pq = s.path_and_query.as_str();
        if pq == "/_matrix/key/v2/server" {
            (200, "application/json", room.keys.clone())
        } else if pq.starts_with("/_matrix/federation/v1/make_join/") {
            (200, "application/json", room.make_join.clone())
        } else if pq.starts_with("/_matrix/federation/v2/send_join/") {
            (200, "application/json", room.send_join.clone())
        } else if pq.starts_with("/_matrix/federation/v1/send/") {
            (200, "application/json", br#"{"pdus":{}}"#.to_vec())
        } else {
            (
                404,
                "application/json",
                br#"{"errcode":"M_NOT_FOUND","error":"not here"}"#.to_vec(),
            )
        }
    });
    let server = harness::recorder(Some(acceptor), answer).await;
    let name = format!("127.0.0.1:{}", server.addr.port());
    let key = SigningKey::generate("f1").unwrap();
    let (answers, room_id) = fake_room(&name, &key, joiner);
    assert!(room.set(answers).is_ok());
    (server, name, room_id)
}

async fn join_with_one_forged_event_in_send_join(lab: &common::E2eLab) {
    let info = &lab.info;
    let (server, name, room) = fake_room_server(info, &lab.alice.user_id).await;
    let joined = lab.alice.join(&room, &[name.as_str()]).await;
    let paths: Vec<String> = server
        .seen()
        .iter()
        .map(|s| s.path_and_query.clone())
        .collect();
    let joined = joined.unwrap_or_else(|e| {
        panic!(
            "the join must succeed: {e}\nfake saw: {paths:?}\nguard log:\n{}",
            guard_log_tail(info)
        )
    });
    assert_eq!(joined, room);
    assert!(
        paths
            .iter()
            .any(|p| p.starts_with("/_matrix/federation/v2/send_join/")),
        "{paths:?}"
    );
    let state = lab
        .alice
        .room_state(&room)
        .await
        .expect("room state at hs1");
    let of = |kind: &str| state.iter().find(|e| e["type"] == kind).cloned();
    assert_eq!(
        of("m.room.name").map(|e| e["content"]["name"].clone()),
        Some(json!("perpdu fake room")),
        "{state:?}"
    );
    assert!(
        of("m.room.topic").is_none_or(|t| t["content"].get("topic").is_none()),
        "the forged topic is not hs1's state: {state:?}"
    );
    let m = common::guard_metrics(info).await;
    let bad: f64 = m
        .iter()
        .filter(|s| {
            s.name == "grenzwacht_pdu_checks_total"
                && s.label("direction") == "inbound"
                && s.label("outcome") == "bad_signature"
        })
        .map(|s| s.value)
        .sum();
    assert!(bad >= 1.0, "the guard saw the forged event");
}

fn guard_log_tail(info: &grenzwacht::lab::LabInfo) -> String {
    let text =
        String::from_utf8_lossy(&std::fs::read(info.dir.join("guard.log")).unwrap_or_default())
            .into_owned();
    let lines: Vec<&str> = text.lines().collect();
    lines[lines.len().saturating_sub(40)..].join("\n")
}

async fn transaction_with_one_float_pdu(lab: &common::E2eLab) {
    let info = &lab.info;
    let (hs1, hs2) = (info.hs1().clone(), info.hs2().clone());
    let (alice, bob) = (&lab.alice, &lab.bob);
    let room = alice
        .create_room(&json!({"preset": "public_chat", "room_version": "10", "name": "perpdu"}))
        .await
        .expect("create room");
    alice.invite(&room, &bob.user_id).await.expect("invite");
    bob.wait_for_invite(&room, WAIT).await.expect("invite seen");
    bob.join(&room, &[hs1.server_name.as_str()])
        .await
        .expect("bob joins");
    alice
        .wait_for_member(&room, &bob.user_id, WAIT)
        .await
        .expect("alice sees bob");
    let first = format!("vor der Kommazahl {}", common::marker("m"));
    bob.send_text(&room, &first).await.expect("bob writes");
    alice
        .wait_for_text(&room, &bob.user_id, &first, WAIT)
        .await
        .expect("bob's message arrives");

    // What bob's server would put into its next events: auth and prev events from hs1's view.
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
    let key = SigningKey::from_synapse_file(&hs2.signing_key).expect("hs2 key");
    let ts = now_ms();
    let message = |depth: u64, body: &str, prev: &str| {
        json!({
            "type": "m.room.message", "room_id": room, "sender": bob.user_id,
            "content": {"msgtype": "m.text", "body": body},
            "origin_server_ts": ts + depth, "depth": depth,
            "auth_events": auth, "prev_events": [prev],
        })
    };
    let (t1, t2) = (
        format!("eins {}", common::marker("m")),
        format!("drei {}", common::marker("m")),
    );
    let p1 = signed(&hs2.server_name, &key, message(1000, &t1, &prev));
    let p1_id = event_id(&p1);
    let mut float = message(1001, "mit Kommazahl", &p1_id);
    float["content"]["betrag"] = json!(12.5);
    float["hashes"] = json!({"sha256": "AAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAA"});
    float["signatures"] = json!({hs2.server_name.clone(): {key.key_id(): "AAAA"}});
    let float_id = event_id(&float);
    let p2 = signed(&hs2.server_name, &key, message(1002, &t2, &p1_id));
    let p2_id = event_id(&p2);
    let body = serde_json::to_vec(&json!({
        "origin": hs2.server_name, "origin_server_ts": now_ms(), "edus": [],
        "pdus": [p1, float, p2]
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
        answer["pdus"][&float_id]["error"].as_str(),
        Some(grenzwacht::proxy::perpdu::NOT_CANONICAL_ERROR),
        "{answer}"
    );
    for id in [&p1_id, &p2_id] {
        assert_eq!(answer["pdus"][id], json!({}), "hs1 accepted {id}: {answer}");
    }
    for (id, text) in [(&p1_id, &t1), (&p2_id, &t2)] {
        let seen = common::wait_event(alice, &room, id, WAIT).await;
        assert_eq!(seen["content"]["body"], text.as_str(), "{seen}");
    }
    let path = format!(
        "/_matrix/client/v3/rooms/{}/event/{}",
        encode_segment(&room),
        encode_segment(&float_id)
    );
    assert!(
        alice
            .client
            .call("GET", &path, Some(&alice.access_token), None)
            .await
            .is_err(),
        "the float PDU is not at hs1"
    );
}

/// hs1 as a key notary for hs2's keys (which it fetched through the guard, attested): a
/// third party asking hs1 gets hs2's original key object, whose self-signature verifies with
/// hs2's real key and whose notary signature verifies with hs1's real key; no guard key.
async fn notary_answer_of_hs1_verifies(lab: &common::E2eLab) {
    let info = &lab.info;
    let (hs1, hs2) = (info.hs1().clone(), info.hs2().clone());
    let hs1_key = SigningKey::from_synapse_file(&hs1.signing_key).expect("hs1 key");
    let hs2_key = SigningKey::from_synapse_file(&hs2.signing_key).expect("hs2 key");
    let guard_key =
        SigningKey::from_synapse_file(info.dir.join("guard.signing.key")).expect("guard key");
    let body = serde_json::to_vec(&json!({"server_keys": {hs2.server_name.clone(): {}}})).unwrap();
    let head = common::head(
        "POST",
        "/_matrix/key/v2/query",
        &hs1.server_name,
        &[("Content-Type", "application/json")],
        body.len(),
    );
    let r = common::tls_request(info.guard.inbound_addr, &info.ca_cert, &head, &body).await;
    assert_eq!(r.status, 200, "{}", r.text());
    assert!(
        !r.text().contains(&guard_key.key_id()),
        "no guard key leaves: {}",
        r.text()
    );
    let list = r.json()["server_keys"]
        .as_array()
        .cloned()
        .unwrap_or_default();
    let mine: Vec<&Value> = list
        .iter()
        .filter(|o| o["server_name"] == hs2.server_name.as_str())
        .collect();
    assert!(!mine.is_empty(), "hs1 serves hs2's keys: {}", r.text());
    for obj in mine {
        let obj: ruma::CanonicalJsonObject = serde_json::from_value(obj.clone()).unwrap();
        for (server, key) in [(&hs2.server_name, &hs2_key), (&hs1.server_name, &hs1_key)] {
            let mut only = obj.clone();
            if let Some(ruma::CanonicalJsonValue::Object(s)) = only.get_mut("signatures") {
                s.retain(|k, _| k == server);
            }
            let mut map = ruma::signatures::PublicKeyMap::new();
            map.insert(
                server.clone(),
                [(
                    key.key_id(),
                    ruma::serde::Base64::new(key.public_key().to_vec()),
                )]
                .into_iter()
                .collect(),
            );
            ruma::signatures::verify_json(&map, &only)
                .unwrap_or_else(|e| panic!("signature of {server} on hs1's notary answer: {e}"));
        }
    }
}

/// All cases on one lab.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn one_bad_event_does_not_sink_a_join_or_a_transaction() {
    let lab = common::e2e_lab("perpdu", false).await;
    transaction_with_one_float_pdu(&lab).await;
    join_with_one_forged_event_in_send_join(&lab).await;
    notary_answer_of_hs1_verifies(&lab).await;
}
