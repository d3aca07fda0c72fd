//! Room versions in-process: a real guard between real sockets, a recording protected
//! homeserver, a fake remote key server and a fake Synapse admin API.
//!
//! - an `m.room.create` event that fails the create auth rules or the guard's verification
//!   teaches nothing: a known room keeps its version, an unknown room stays unknown;
//! - a verified create event is learned; a second verified one with another version does not
//!   replace it (equal strength: the first wins);
//! - a remote's invite cannot pin a version on a protected server's room; for its own room it
//!   is a claim (also when hs1 repeats it: a room hs1 was only invited to), which the room's
//!   verified create event corrects;
//! - a room whose version is unknown is looked up at the protected homeserver's admin API and
//!   its events pass; when the admin API fails, 503 (the sender retries) and nothing reaches
//!   the homeserver.
mod common;

use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;

use common::*;
use grenzwacht::federation::xmatrix;
use grenzwacht::keys::SigningKey;
use serde_json::json;

const HS1: &str = "hs1.test";
const REMOTE: &str = "remote.test";

fn signed(
    key: &SigningKey,
    v: serde_json::Value,
    version: ruma::RoomVersionId,
) -> serde_json::Value {
    let mut obj: ruma::CanonicalJsonObject = serde_json::from_value(v).unwrap();
    let rules = version.rules().unwrap();
    ruma::signatures::hash_and_sign_event(REMOTE, key.key_pair(), &mut obj, &rules.redaction)
        .unwrap();
    serde_json::to_value(obj).unwrap()
}

fn event(
    room: &str,
    sender: &str,
    depth: u64,
    kind: &str,
    content: serde_json::Value,
) -> serde_json::Value {
    json!({
        "auth_events": [], "prev_events": [], "depth": depth,
        "origin_server_ts": 1_700_000_000_000u64, "room_id": room, "sender": sender,
        "type": kind, "content": content
    })
}

fn create(room: &str, sender: &str, version: &str) -> serde_json::Value {
    let mut c = event(
        room,
        sender,
        1,
        "m.room.create",
        json!({"creator": sender, "room_version": version}),
    );
    c["state_key"] = json!("");
    c
}

fn txn(pdus: Vec<serde_json::Value>) -> Vec<u8> {
    serde_json::to_vec(&json!({"origin": REMOTE, "origin_server_ts": 1, "pdus": pdus, "edus": []}))
        .unwrap()
}

fn key_object(key: &SigningKey) -> Vec<u8> {
    let now = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_millis() as u64;
    let mut obj: ruma::CanonicalJsonObject = serde_json::from_value(json!({
        "server_name": REMOTE, "valid_until_ts": now + 86_400_000, "old_verify_keys": {},
        "verify_keys": {key.key_id(): {"key": key.public_key_base64()}}
    }))
    .unwrap();
    key.sign_json(REMOTE, &mut obj).unwrap();
    serde_json::to_vec(&obj).unwrap()
}

fn version_of(g: &RunningGuard, room: &str) -> Option<(String, String)> {
    g.guard
        .store()
        .room_version_record(room)
        .unwrap()
        .map(|r| (r.version, r.learned_from))
}

#[tokio::test]
async fn only_authoritative_sources_teach_room_versions_and_unknown_rooms_are_looked_up() {
    let p = pki();
    let remote_key = SigningKey::generate("r1").unwrap();
    let other_key = SigningKey::generate("r1").unwrap();
    let ko = key_object(&remote_key);
    let key_server = recorder(
        Some(acceptor(&p)),
        Arc::new(move |s: &Seen| {
            if s.path_and_query == "/_matrix/key/v2/server" {
                (200, "application/json", ko.clone())
            } else {
                (
                    404,
                    "application/json",
                    br#"{"errcode":"M_NOT_FOUND","error":"no"}"#.to_vec(),
                )
            }
        }),
    )
    .await;
    // The protected homeserver: `/send` answers, an invite is answered with its event.
    let up = recorder(
        None,
        Arc::new(|s: &Seen| {
            if s.path_and_query
                .starts_with("/_matrix/federation/v2/invite/")
            {
                let v: serde_json::Value = serde_json::from_slice(&s.body).unwrap();
                let out = serde_json::to_vec(&json!({"event": v["event"]})).unwrap();
                (200, "application/json", out)
            } else {
                (200, "application/json", br#"{"pdus":{}}"#.to_vec())
            }
        }),
    )
    .await;
    // hs1's admin API: two rooms of version 10 it knows; `!down:hs1.test` fails while
    // `failing` is set; every other room is unknown to it.
    let admin_calls = Arc::new(AtomicUsize::new(0));
    let calls = admin_calls.clone();
    let admin = recorder(
        None,
        Arc::new(move |s: &Seen| {
            calls.fetch_add(1, Ordering::SeqCst);
            assert_eq!(
                s.headers.get("authorization").unwrap(),
                "Bearer admin-token",
                "the admin token from the file"
            );
            match s.path_and_query.as_str() {
                "/_synapse/admin/v1/rooms/%21a%3Ahs1.test"
                | "/_synapse/admin/v1/rooms/%21e%3Ahs1.test"
                | "/_synapse/admin/v1/rooms/%21c%3Ahs1.test" => (
                    200,
                    "application/json",
                    br#"{"room_id":"x","version":"10","joined_members":2,"joined_local_members":1}"#.to_vec(),
                ),
                // Known to hs1 only through an invite: the version is the inviter's claim.
                "/_synapse/admin/v1/rooms/%21w%3Aremote.test" => (
                    200,
                    "application/json",
                    br#"{"room_id":"x","version":"11","joined_members":1,"joined_local_members":null}"#
                        .to_vec(),
                ),
                "/_synapse/admin/v1/rooms/%21down%3Ahs1.test" => (
                    500,
                    "application/json",
                    br#"{"errcode":"M_UNKNOWN","error":"db down"}"#.to_vec(),
                ),
                _ => (
                    404,
                    "application/json",
                    br#"{"errcode":"M_NOT_FOUND","error":"Room not found"}"#.to_vec(),
                ),
            }
        }),
    )
    .await;
    // The guard key: modified inbound transactions are re-signed with it.
    let guard_key = p.dir.path().join("guard.signing.key");
    std::fs::write(
        &guard_key,
        SigningKey::generate("gw1").unwrap().to_synapse_string(),
    )
    .unwrap();
    let token = p.dir.path().join("admin.token");
    std::fs::write(&token, "admin-token\n").unwrap();
    let toml = format!(
        r#"
[admin]
listen = "127.0.0.1:0"
[inbound]
listen = "127.0.0.1:0"
[[protected]]
server_name = "{HS1}"
cert = "{cert}"
key = "{key}"
upstream = "http://{upstream}"
admin_api = "http://{admin}"
admin_token_file = "{token}"
[outbound]
proxy_listen = "127.0.0.1:0"
allowed_clients = ["127.0.0.0/8"]
proxy_secret = "s3cret"
roots = ["{ca}"]
[[route]]
server_name = "{REMOTE}"
address = "{ks}"
tls_name = "127.0.0.1"
[discovery]
enabled = false
[keys]
guard_key = "{gk}"
"#,
        gk = guard_key.display(),
        cert = p.cert.display(),
        key = p.key.display(),
        upstream = up.addr,
        admin = admin.addr,
        token = token.display(),
        ca = p.ca_path.display(),
        ks = key_server.addr,
    );
    let g = start_guard(&p, &toml).await;
    let send = |uri: String, body: Vec<u8>| {
        let raw: Box<serde_json::value::RawValue> = serde_json::from_slice(&body).unwrap();
        let hdr = xmatrix::sign_request(&remote_key, REMOTE, HS1, "PUT", &uri, Some(&raw)).unwrap();
        let (addr, ca) = (g.inbound.unwrap(), p.ca_path.clone());
        async move { tls_request(addr, &ca, "PUT", &uri, &[("authorization", hdr)], body).await }
    };
    let claims = |m: &str, outcome: &str| {
        counter(
            m,
            "grenzwacht_room_version_claims_total",
            &[("source", "create_event"), ("outcome", outcome)],
        )
    };
    let m0 = metrics(g.admin).await;
    use ruma::RoomVersionId as V;

    // 1. A protected server's room the guard does not know: a remote's message in it makes the
    // guard ask hs1's admin API; the answer is stored as authoritative and the message passes.
    let msg_c = signed(
        &remote_key,
        event(
            "!c:hs1.test",
            "@b:remote.test",
            5,
            "m.room.message",
            json!({"body": "hallo", "msgtype": "m.text"}),
        ),
        V::V10,
    );
    let got = send(
        "/_matrix/federation/v1/send/t1".into(),
        txn(vec![msg_c.clone()]),
    )
    .await;
    assert_eq!(got.status, 200, "{:?}", got.body);
    assert_eq!(
        version_of(&g, "!c:hs1.test"),
        Some(("10".into(), "admin_api".into()))
    );
    let fwd: serde_json::Value = serde_json::from_slice(&up.seen()[0].body).unwrap();
    assert_eq!(
        fwd["pdus"][0], msg_c,
        "verified under the looked-up version: unchanged"
    );
    assert_eq!(admin_calls.load(Ordering::SeqCst), 1);
    // Known now: no second lookup.
    assert_eq!(
        send(
            "/_matrix/federation/v1/send/t1b".into(),
            txn(vec![msg_c.clone()])
        )
        .await
        .status,
        200
    );
    assert_eq!(admin_calls.load(Ordering::SeqCst), 1);

    // 2. Forged create events for hs1's room `!a` claiming version 1: one from a remote sender
    // (fails the auth rules: the room id's server is hs1), one "from hs1" without hs1's
    // signature (fails verification). Neither teaches anything; the room's version comes
    // from hs1's admin API.
    let forged_foreign = signed(
        &remote_key,
        create("!a:hs1.test", "@m:remote.test", "1"),
        V::V1,
    );
    let mut forged_hs1 = create("!a:hs1.test", "@admin:hs1.test", "1");
    forged_hs1["hashes"] = json!({"sha256": "x"});
    forged_hs1["signatures"] = json!({});
    let got = send(
        "/_matrix/federation/v1/send/t2".into(),
        txn(vec![forged_foreign, forged_hs1]),
    )
    .await;
    assert_eq!(got.status, 200, "{:?}", got.body);
    assert_eq!(
        version_of(&g, "!a:hs1.test"),
        Some(("10".into(), "admin_api".into()))
    );
    let m = metrics(g.admin).await;
    assert!(claims(&m, "unverified") - claims(&m0, "unverified") >= 2.0);
    // The unsigned one crossed redacted (version 10 keeps only `creator` of a create event's
    // content); the one signed by remote.test passes the guard's signature check and is
    // rejected by hs1's auth rules.
    let fwd: serde_json::Value = serde_json::from_slice(&up.seen().last().unwrap().body).unwrap();
    let pdus = fwd["pdus"].as_array().unwrap();
    assert_eq!(pdus.len(), 2);
    assert_eq!(pdus[1]["content"], json!({"creator": "@admin:hs1.test"}));

    // 3. A remote's room `!v`: a create event with a bad signature teaches nothing — the room
    // stays unknown (and hs1 does not know it: its events are left out of the transaction, as
    // Synapse ignores events of rooms it does not know — no entry in the answer; the rest of
    // the transaction goes on) ...
    let mut bad = signed(
        &other_key,
        create("!v:remote.test", "@a:remote.test", "1"),
        V::V1,
    );
    bad["content"]["room_version"] = json!("1");
    let seen_before = up.seen().len();
    let got = send("/_matrix/federation/v1/send/t3".into(), txn(vec![bad])).await;
    assert_eq!(got.status, 200, "{:?}", got.body);
    assert_eq!(got.json()["pdus"], json!({}), "{:?}", got.body);
    let seen = up.seen();
    assert_eq!(seen.len(), seen_before + 1);
    let fwd: serde_json::Value = serde_json::from_slice(&seen.last().unwrap().body).unwrap();
    assert_eq!(
        fwd["pdus"],
        json!([]),
        "the unknown room's event was left out"
    );
    assert_eq!(version_of(&g, "!v:remote.test"), None);
    // ... a verified create event is learned ...
    let good = signed(
        &remote_key,
        create("!v:remote.test", "@a:remote.test", "10"),
        V::V10,
    );
    let got = send(
        "/_matrix/federation/v1/send/t4".into(),
        txn(vec![good.clone()]),
    )
    .await;
    assert_eq!(got.status, 200, "{:?}", got.body);
    assert_eq!(
        version_of(&g, "!v:remote.test"),
        Some(("10".into(), "create_event".into()))
    );
    let fwd: serde_json::Value = serde_json::from_slice(&up.seen().last().unwrap().body).unwrap();
    assert_eq!(
        fwd["pdus"][0], good,
        "the verified create event passes unchanged"
    );
    // A transaction with an event of `!v` and one of a room hs1 does not know: the first
    // arrives, the second is left out on its own (no entry, as Synapse).
    let known = signed(
        &remote_key,
        event(
            "!v:remote.test",
            "@a:remote.test",
            2,
            "m.room.message",
            json!({"msgtype": "m.text", "body": "bekannt"}),
        ),
        V::V10,
    );
    let stranger = signed(
        &remote_key,
        event(
            "!nowhere:remote.test",
            "@a:remote.test",
            2,
            "m.room.message",
            json!({"msgtype": "m.text", "body": "fremd"}),
        ),
        V::V10,
    );
    let got = send(
        "/_matrix/federation/v1/send/t4b".into(),
        txn(vec![stranger, known]),
    )
    .await;
    assert_eq!(got.status, 200, "{:?}", got.body);
    let fwd: serde_json::Value = serde_json::from_slice(&up.seen().last().unwrap().body).unwrap();
    let bodies: Vec<&str> = fwd["pdus"]
        .as_array()
        .unwrap()
        .iter()
        .filter_map(|p| p["content"]["body"].as_str())
        .collect();
    assert_eq!(bodies, vec!["bekannt"], "{fwd}");
    // ... and a second, also validly signed create event claiming another version does not
    // replace it (equal strength: the first wins), counted as a conflict.
    let before = metrics(g.admin).await;
    let mut second = create("!v:remote.test", "@a:remote.test", "11");
    second["origin_server_ts"] = json!(1_700_000_000_001u64);
    let second = signed(&remote_key, second, V::V11);
    assert_eq!(
        send("/_matrix/federation/v1/send/t5".into(), txn(vec![second]))
            .await
            .status,
        200
    );
    assert_eq!(
        version_of(&g, "!v:remote.test"),
        Some(("10".into(), "create_event".into()))
    );
    let m = metrics(g.admin).await;
    assert_eq!(claims(&m, "conflict") - claims(&before, "conflict"), 1.0);

    // 4. A remote's invite naming version 13 for hs1's room `!e` pins nothing: the guard asks
    // hs1 and verifies the invite under version 10.
    let mut invite = event(
        "!e:hs1.test",
        "@b:remote.test",
        7,
        "m.room.member",
        json!({"membership": "invite"}),
    );
    invite["state_key"] = json!("@alice:hs1.test");
    let invite = signed(&remote_key, invite, V::V10);
    let body = serde_json::to_vec(
        &json!({"event": invite, "room_version": "13", "invite_room_state": []}),
    )
    .unwrap();
    let got = send(
        "/_matrix/federation/v2/invite/%21e%3Ahs1.test/%24i".into(),
        body,
    )
    .await;
    assert_eq!(got.status, 200, "{:?}", got.body);
    assert_eq!(
        version_of(&g, "!e:hs1.test"),
        Some(("10".into(), "admin_api".into()))
    );
    // A remote's invite for its own, unknown room fills it as a claim.
    let mut invite = event(
        "!w:remote.test",
        "@b:remote.test",
        7,
        "m.room.member",
        json!({"membership": "invite"}),
    );
    invite["state_key"] = json!("@alice:hs1.test");
    let invite = signed(&remote_key, invite, V::V11);
    let body = serde_json::to_vec(
        &json!({"event": invite, "room_version": "11", "invite_room_state": []}),
    )
    .unwrap();
    let got = send(
        "/_matrix/federation/v2/invite/%21w%3Aremote.test/%24i".into(),
        body,
    )
    .await;
    assert_eq!(got.status, 200, "{:?}", got.body);
    // hs1 knows the room only from the invite (no joined member): its answer is no more than
    // the inviter's claim and does not make the claim authoritative.
    assert_eq!(
        version_of(&g, "!w:remote.test"),
        Some(("11".into(), "invite_v2".into()))
    );
    let m = metrics(g.admin).await;
    assert!(
        counter(
            &m,
            "grenzwacht_room_version_lookups_total",
            &[("outcome", "not_joined")]
        ) >= 1.0
    );
    // An invite into a room of a version the guard has no rules for is answered as Synapse
    // answers it: 400 M_UNSUPPORTED_ROOM_VERSION (nothing is forwarded).
    let mut invite = event(
        "!u:remote.test",
        "@b:remote.test",
        7,
        "m.room.member",
        json!({"membership": "invite"}),
    );
    invite["state_key"] = json!("@alice:hs1.test");
    let invite = signed(&remote_key, invite, V::V11);
    let body = serde_json::to_vec(
        &json!({"event": invite, "room_version": "13", "invite_room_state": []}),
    )
    .unwrap();
    let got = send(
        "/_matrix/federation/v2/invite/%21u%3Aremote.test/%24i".into(),
        body,
    )
    .await;
    assert_eq!(got.status, 400, "{:?}", got.body);
    assert_eq!(got.errcode(), "M_UNSUPPORTED_ROOM_VERSION");
    // The room's verified create event corrects the claim.
    let create_w = signed(
        &remote_key,
        create("!w:remote.test", "@b:remote.test", "10"),
        V::V10,
    );
    let got = send("/_matrix/federation/v1/send/t7".into(), txn(vec![create_w])).await;
    assert_eq!(got.status, 200, "{:?}", got.body);
    assert_eq!(
        version_of(&g, "!w:remote.test"),
        Some(("10".into(), "create_event".into()))
    );

    // 5. The admin API fails: 503 (the sender retries), nothing reaches hs1, nothing stored.
    let n = up.seen().len();
    let msg_d = signed(
        &remote_key,
        event(
            "!down:hs1.test",
            "@b:remote.test",
            5,
            "m.room.message",
            json!({"body": "x", "msgtype": "m.text"}),
        ),
        V::V10,
    );
    let got = send("/_matrix/federation/v1/send/t6".into(), txn(vec![msg_d])).await;
    assert_eq!(
        (got.status, got.errcode().as_str()),
        (503, "M_UNKNOWN"),
        "{:?}",
        got.body
    );
    assert_eq!(up.seen().len(), n);
    assert_eq!(version_of(&g, "!down:hs1.test"), None);
    let m = metrics(g.admin).await;
    assert!(
        counter(
            &m,
            "grenzwacht_room_version_lookups_total",
            &[("outcome", "failed")]
        ) >= 1.0
    );
    assert!(
        counter(
            &m,
            "grenzwacht_room_version_lookups_total",
            &[("outcome", "found")]
        ) >= 3.0
    );
    // The error names no internal detail.
    assert!(!String::from_utf8_lossy(&got.body).contains("db down"));
    g.stop().await;
}
