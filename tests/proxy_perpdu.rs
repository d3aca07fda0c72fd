//! One bad event never sinks the others (in-process guard, fake peers): bad signatures in
//! responses cross redacted, PDUs that break the number rules of their room version are left
//! out of transactions (with a per-PDU error) and responses, status codes as Synapse answers,
//! and a protected server's notary answers stay verifiable.
mod common;

use common::*;
use grenzwacht::federation::xmatrix;
use grenzwacht::keys::SigningKey;
use serde_json::json;

const HS1: &str = "hs1.test";
const REMOTE: &str = "remote.test";
const ROOM: &str = "!p:remote.test";

/// An event of ROOM (room version 10) at `depth`.
fn event(depth: u64, sender: &str, kind: &str, content: serde_json::Value) -> serde_json::Value {
    json!({
        "auth_events": [], "prev_events": [], "depth": depth,
        "origin_server_ts": 1_700_000_000_000u64, "room_id": ROOM, "sender": sender,
        "type": kind, "content": content
    })
}

/// Hashed and signed by `key` as `server` (room version 10).
fn signed(server: &str, key: &SigningKey, v: serde_json::Value) -> serde_json::Value {
    let mut obj: ruma::CanonicalJsonObject = serde_json::from_value(v).unwrap();
    let rules = ruma::RoomVersionId::V10.rules().unwrap();
    ruma::signatures::hash_and_sign_event(server, key.key_pair(), &mut obj, &rules.redaction)
        .unwrap();
    serde_json::to_value(obj).unwrap()
}

fn message(depth: u64, body: &str) -> serde_json::Value {
    event(
        depth,
        "@a:remote.test",
        "m.room.message",
        json!({"body": body, "msgtype": "m.text"}),
    )
}

/// A message whose content holds a float: not canonical JSON, invalid in room version 6+. It
/// cannot be signed canonically; it carries a hash and a signature of the right shape.
fn float_message(depth: u64) -> serde_json::Value {
    let mut e = message(depth, "mit Kommazahl");
    e["content"]["amount"] = json!(1.5);
    e["hashes"] = json!({"sha256": "AAAA"});
    e["signatures"] = json!({REMOTE: {"ed25519:r1": "AAAA"}});
    e
}

/// The event id of a room version 10 event: `$` + reference hash (content does not count for
/// a message: the hash is over the redacted event).
fn event_id(v: &serde_json::Value) -> String {
    let mut e = v.clone();
    e["content"] = json!({});
    let obj: ruma::CanonicalJsonObject = serde_json::from_value(e).unwrap();
    let rules = ruma::RoomVersionId::V10.rules().unwrap();
    format!(
        "${}",
        ruma::signatures::reference_hash(&obj, &rules).unwrap()
    )
}

/// The remote's key object, self-signed.
fn key_object(server: &str, key: &SigningKey) -> Vec<u8> {
    let now = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_millis() as u64;
    let mut obj: ruma::CanonicalJsonObject = serde_json::from_value(json!({
        "server_name": server, "valid_until_ts": now + 86_400_000, "old_verify_keys": {},
        "verify_keys": {key.key_id(): {"key": key.public_key_base64()}}
    }))
    .unwrap();
    key.sign_json(server, &mut obj).unwrap();
    serde_json::to_vec(&obj).unwrap()
}

/// hs1's signing key, written for the guard (it re-signs hs1's answers as notary with it).
fn hs1_key_file(p: &Pki) -> (SigningKey, std::path::PathBuf) {
    let key = SigningKey::generate("hs1").unwrap();
    let path = p.dir.path().join("hs1.signing.key");
    std::fs::write(&path, key.to_synapse_string()).unwrap();
    (key, path)
}

/// A guard protecting HS1 (upstream `hs1`), with an inbound listener, the proxy-protocol
/// outbound listener, a route to the fake remote, verification on, a guard key and hs1's key.
fn toml(p: &Pki, hs1: std::net::SocketAddr, remote: std::net::SocketAddr) -> String {
    let (_, gk) = guard_key_file(p);
    let (_, hk) = hs1_key_file(p);
    format!(
        r#"
[admin]
listen = "127.0.0.1:0"
[inbound]
listen = "127.0.0.1:0"
[[protected]]
server_name = "{HS1}"
cert = "{cert}"
key = "{key}"
signing_key = "{hk}"
upstream = "http://{hs1}"
[outbound]
proxy_listen = "127.0.0.1:0"
allowed_clients = ["127.0.0.0/8"]
proxy_secret = "s3cret"
roots = ["{ca}"]
[[route]]
server_name = "{REMOTE}"
address = "{remote}"
tls_name = "127.0.0.1"
[discovery]
enabled = false
[keys]
guard_key = "{gk}"
"#,
        cert = p.cert.display(),
        key = p.key.display(),
        ca = p.ca_path.display(),
        gk = gk.display(),
        hk = hk.display(),
    )
}

/// The fake remote: its key server plus `answer` for everything else.
async fn remote(
    p: &Pki,
    key: &SigningKey,
    answer: impl Fn(&Seen) -> Option<(u16, Vec<u8>)> + Send + Sync + 'static,
) -> Recorder {
    let keys = key_object(REMOTE, key);
    let a: Answer = std::sync::Arc::new(move |s: &Seen| {
        if s.path_and_query == "/_matrix/key/v2/server" {
            return (200, "application/json", keys.clone());
        }
        match answer(s) {
            Some((status, body)) => (status, "application/json", body),
            None => (
                404,
                "application/json",
                br#"{"errcode":"M_UNRECOGNIZED","error":"no"}"#.to_vec(),
            ),
        }
    });
    recorder(Some(acceptor(p)), a).await
}

/// hs1's listener: its key server, `{"pdus":{}}` for transactions, `answer` otherwise.
async fn hs1(
    key: SigningKey,
    answer: impl Fn(&Seen) -> Option<Vec<u8>> + Send + Sync + 'static,
) -> Recorder {
    let keys = key_server_answer(HS1, &key);
    let a: Answer = std::sync::Arc::new(move |s: &Seen| {
        if let Some(body) = answer(s) {
            return (200, "application/json", body);
        }
        if s.path_and_query.starts_with("/_matrix/federation/v1/send/") {
            return (200, "application/json", br#"{"pdus":{}}"#.to_vec());
        }
        keys(s)
    });
    recorder(None, a).await
}

/// hs1's key as the test harness knows it (the guard reads the same file).
fn hs1_key(p: &Pki) -> SigningKey {
    let text = std::fs::read_to_string(p.dir.path().join("hs1.signing.key")).unwrap();
    SigningKey::from_synapse_str(&text).unwrap()
}

/// Sends an outbound request from hs1 through the proxy-protocol listener.
async fn from_hs1(
    g: &RunningGuard,
    key: &SigningKey,
    method: &str,
    path: &str,
    body: Option<Vec<u8>>,
) -> Got {
    let hdr = auth(key, HS1, REMOTE, method, path, body.as_deref());
    let target = format!("matrix-federation://{REMOTE}{path}");
    let headers = vec![
        ("authorization", hdr),
        ("proxy-authorization", "Bearer s3cret".to_string()),
    ];
    plain_request(
        g.proxy.unwrap(),
        method,
        &target,
        &headers,
        body.unwrap_or_default(),
    )
    .await
}

/// A guard and its fake peers; the room's version is known to the guard.
struct Lab {
    p: Pki,
    g: RunningGuard,
    hs1: Recorder,
}

async fn lab(
    remote_key: &SigningKey,
    remote_answer: impl Fn(&Seen) -> Option<(u16, Vec<u8>)> + Send + Sync + 'static,
    hs1_answer: impl Fn(&Seen) -> Option<Vec<u8>> + Send + Sync + 'static,
) -> Lab {
    let p = pki();
    let remote = remote(&p, remote_key, remote_answer).await;
    // `toml` writes hs1's key file; hs1's key server serves the same key.
    let text = toml(&p, "127.0.0.1:9".parse().unwrap(), remote.addr);
    let hs1 = hs1(hs1_key(&p), hs1_answer).await;
    let text = text.replace("http://127.0.0.1:9", &format!("http://{}", hs1.addr));
    let g = start_guard(&p, &text).await;
    g.guard
        .store()
        .set_room_version(ROOM, "10", "test")
        .unwrap();
    Lab { p, g, hs1 }
}

/// A `send_join`, `get_missing_events`, `backfill` or invite answer with one event whose
/// signature fails arrives whole; that event crosses redacted (the receiver rejects it, as it
/// would without the guard), every other event unchanged. An event that breaks the room
/// version's number rules, or is no well-formed event, is left out of the answer.
#[tokio::test]
async fn one_bad_event_in_a_response_does_not_sink_the_response() {
    let remote_key = SigningKey::generate("r1").unwrap();
    let forger = SigningKey::generate("r1").unwrap();
    let mut create = event(
        1,
        "@a:remote.test",
        "m.room.create",
        json!({"creator": "@a:remote.test", "room_version": "10"}),
    );
    create["state_key"] = json!("");
    let create = signed(REMOTE, &remote_key, create);
    let good = signed(REMOTE, &remote_key, message(2, "bleibt"));
    // Signed under the remote's name and key id, with another key: the signature fails.
    let forged = signed(REMOTE, &forger, message(3, "gefälscht"));
    let float = float_message(4);
    let mut invite = event(
        5,
        "@a:remote.test",
        "m.room.member",
        json!({"membership": "invite"}),
    );
    invite["state_key"] = json!("@b:hs1.test");
    let bad_invite = signed(REMOTE, &forger, invite);

    let (c, gd, f, fl, inv) = (
        create.clone(),
        good.clone(),
        forged.clone(),
        float.clone(),
        bad_invite.clone(),
    );
    let answer = move |s: &Seen| -> Option<(u16, Vec<u8>)> {
        let pq = s.path_and_query.as_str();
        let body = if pq.starts_with("/_matrix/federation/v2/send_join/") {
            json!({"origin": REMOTE, "auth_chain": [c, f], "state": [c, gd, f, fl]})
        } else if pq.starts_with("/_matrix/federation/v1/get_missing_events/") {
            // Also a PDU that is no well-formed event (no sender): left out as well.
            let mut malformed = gd.clone();
            malformed.as_object_mut().unwrap().remove("sender");
            json!({"events": [fl, gd, malformed, f]})
        } else if pq.starts_with("/_matrix/federation/v1/backfill/") {
            json!({"origin": REMOTE, "origin_server_ts": 1, "pdus": [f, gd, fl]})
        } else if pq.starts_with("/_matrix/federation/v2/invite/") {
            json!({"event": inv})
        } else {
            return None;
        };
        Some((200, serde_json::to_vec(&body).unwrap()))
    };
    let l = lab(&remote_key, answer, |_| None).await;
    let key = hs1_key(&l.p);

    let mut join = event(
        6,
        "@b:hs1.test",
        "m.room.member",
        json!({"membership": "join"}),
    );
    join["state_key"] = json!("@b:hs1.test");
    let join = signed(HS1, &key, join);
    let got = from_hs1(
        &l.g,
        &key,
        "PUT",
        "/_matrix/federation/v2/send_join/%21p%3Aremote.test/%24j",
        Some(serde_json::to_vec(&join).unwrap()),
    )
    .await;
    assert_eq!(
        got.status,
        200,
        "send_join: {}",
        String::from_utf8_lossy(&got.body)
    );
    let v = got.json();
    let state = v["state"].as_array().unwrap();
    assert_eq!(state.len(), 3, "the float event is left out: {v}");
    assert_eq!(state[0], create);
    assert_eq!(state[1], good, "verified events pass unchanged");
    assert_eq!(
        state[2]["content"],
        json!({}),
        "the forged event crosses redacted"
    );
    assert_eq!(state[2]["signatures"], forged["signatures"]);
    assert_eq!(v["auth_chain"].as_array().unwrap().len(), 2);
    assert_eq!(v["auth_chain"][1]["content"], json!({}));

    let got = from_hs1(
        &l.g,
        &key,
        "POST",
        "/_matrix/federation/v1/get_missing_events/%21p%3Aremote.test",
        Some(br#"{"earliest_events":[],"latest_events":["$x"],"limit":10}"#.to_vec()),
    )
    .await;
    assert_eq!(
        got.status,
        200,
        "get_missing_events: {}",
        String::from_utf8_lossy(&got.body)
    );
    let events = got.json()["events"].as_array().unwrap().clone();
    assert_eq!(events.len(), 2, "{events:?}");
    assert_eq!(events[0], good);
    assert_eq!(events[1]["content"], json!({}));

    let got = from_hs1(
        &l.g,
        &key,
        "GET",
        "/_matrix/federation/v1/backfill/%21p%3Aremote.test?v=%24x&limit=10",
        None,
    )
    .await;
    assert_eq!(
        got.status,
        200,
        "backfill: {}",
        String::from_utf8_lossy(&got.body)
    );
    let pdus = got.json()["pdus"].as_array().unwrap().clone();
    assert_eq!(pdus.len(), 2, "{pdus:?}");
    assert_eq!(pdus[0]["content"], json!({}));
    assert_eq!(pdus[1], good);

    // The invite answer (one event) with a bad signature reaches hs1 redacted, which refuses it
    // as it would refuse the remote's answer without the guard (no 403 from the guard).
    let mut invite = event(
        5,
        "@a:remote.test",
        "m.room.member",
        json!({"membership": "invite"}),
    );
    invite["state_key"] = json!("@b:hs1.test");
    let invite = signed(HS1, &key, invite);
    let got = from_hs1(
        &l.g,
        &key,
        "PUT",
        "/_matrix/federation/v2/invite/%21p%3Aremote.test/%24i",
        Some(
            serde_json::to_vec(
                &json!({"event": invite, "room_version": "10", "invite_room_state": []}),
            )
            .unwrap(),
        ),
    )
    .await;
    assert_eq!(
        got.status,
        200,
        "invite: {}",
        String::from_utf8_lossy(&got.body)
    );
    assert_eq!(got.json()["event"]["signatures"], bad_invite["signatures"]);

    let m = metrics(l.g.admin).await;
    assert!(
        counter(
            &m,
            "grenzwacht_pdu_checks_total",
            &[("direction", "inbound"), ("outcome", "bad_signature")]
        ) >= 4.0,
        "{m}"
    );
    assert!(
        counter(
            &m,
            "grenzwacht_withheld_pdus_total",
            &[("direction", "inbound"), ("cause", "not_canonical")]
        ) >= 3.0,
        "{m}"
    );
    l.g.stop().await;
}

/// Sends a transaction from the remote to hs1 through the inbound listener.
async fn to_hs1(l: &Lab, key: &SigningKey, txn_id: &str, body: &[u8]) -> Got {
    let uri = format!("/_matrix/federation/v1/send/{txn_id}");
    let hdr = auth(key, REMOTE, HS1, "PUT", &uri, Some(body));
    tls_request(
        l.g.inbound.unwrap(),
        &l.p.ca_path,
        "PUT",
        &uri,
        &[("authorization", hdr)],
        body.to_vec(),
    )
    .await
}

/// A transaction with one PDU that holds a float (room version 10): the X-Matrix signature is
/// checked as Synapse checks it (it verifies), the float PDU is withheld and its sender gets a
/// per-PDU error for it, the other PDUs reach hs1 unchanged in a re-signed transaction; a
/// retry gets the same answer and the same forwarded body.
#[tokio::test]
async fn a_float_pdu_is_withheld_from_a_transaction_and_the_others_arrive() {
    let remote_key = SigningKey::generate("r1").unwrap();
    let l = lab(&remote_key, |_| None, |_| None).await;
    let first = signed(REMOTE, &remote_key, message(2, "eins"));
    let float = float_message(3);
    let last = signed(REMOTE, &remote_key, message(4, "drei"));
    let body = serde_json::to_vec(&json!({
        "origin": REMOTE, "origin_server_ts": 1, "edus": [],
        "pdus": [first, float, last]
    }))
    .unwrap();
    // The sender signed the body in Synapse's form (floats as Python writes them).
    assert!(String::from_utf8_lossy(&body).contains("1.5"));

    let got = to_hs1(&l, &remote_key, "f1", &body).await;
    assert_eq!(got.status, 200, "{}", String::from_utf8_lossy(&got.body));
    let float_id = event_id(&float);
    assert_eq!(
        got.json()["pdus"][&float_id]["error"].as_str(),
        Some(grenzwacht::proxy::perpdu::NOT_CANONICAL_ERROR),
        "{}",
        got.json()
    );
    assert_eq!(got.json()["pdus"].as_object().unwrap().len(), 1);

    let sends: Vec<Seen> = l
        .hs1
        .seen()
        .into_iter()
        .filter(|s| s.path_and_query.starts_with("/_matrix/federation/v1/send/"))
        .collect();
    assert_eq!(sends.len(), 1);
    let forwarded: serde_json::Value = serde_json::from_slice(&sends[0].body).unwrap();
    assert_eq!(
        forwarded["pdus"],
        json!([first, last]),
        "the other PDUs arrive unchanged"
    );
    let guard_key = SigningKey::from_synapse_str(
        &std::fs::read_to_string(l.p.dir.path().join("guard.signing.key")).unwrap(),
    )
    .unwrap();
    let x = xmatrix::XMatrix::parse(sends[0].headers["authorization"].to_str().unwrap()).unwrap();
    let raw: Box<serde_json::value::RawValue> = serde_json::from_slice(&sends[0].body).unwrap();
    xmatrix::verify_request(
        &x,
        "PUT",
        "/_matrix/federation/v1/send/f1",
        Some(&raw),
        &guard_key.public_key(),
    )
    .expect("the shortened transaction is re-signed with the guard key");

    // A retry: the same answer, the same forwarded body.
    let again = to_hs1(&l, &remote_key, "f1", &body).await;
    assert_eq!(again.status, 200);
    assert_eq!(again.json(), got.json());
    let sends: Vec<Seen> = l
        .hs1
        .seen()
        .into_iter()
        .filter(|s| s.path_and_query.starts_with("/_matrix/federation/v1/send/"))
        .collect();
    assert_eq!(sends.len(), 2);
    assert_eq!(sends[1].body, sends[0].body);

    // A forged signature over the same float body is still refused (401): the lenient form is
    // only the form Synapse verifies, not a weaker check.
    let forger = SigningKey::generate("r1").unwrap();
    let got = to_hs1(&l, &forger, "f2", &body).await;
    assert_eq!(
        (got.status, got.errcode().as_str()),
        (401, "M_UNAUTHORIZED")
    );
    let m = metrics(l.g.admin).await;
    assert!(
        counter(
            &m,
            "grenzwacht_withheld_pdus_total",
            &[("direction", "inbound"), ("cause", "not_canonical")]
        ) >= 1.0,
        "{m}"
    );
    l.g.stop().await;
}

/// Status codes as Synapse answers: an X-Matrix origin with a non-numeric port is a malformed
/// header (400 `M_UNAUTHORIZED`), 51 PDUs are 400; nothing reaches hs1. A single-event request
/// whose event breaks the number rules is 400 `M_BAD_JSON`.
#[tokio::test]
async fn status_codes_follow_synapse() {
    let remote_key = SigningKey::generate("r1").unwrap();
    let l = lab(&remote_key, |_| None, |_| None).await;
    let body = serde_json::to_vec(
        &json!({"origin": REMOTE, "origin_server_ts": 1, "edus": [], "pdus": []}),
    )
    .unwrap();
    let uri = "/_matrix/federation/v1/send/s1";
    let good = auth(&remote_key, REMOTE, HS1, "PUT", uri, Some(&body));
    let bad_port = good.replace("origin=\"remote.test\"", "origin=\"remote.test:abc\"");
    assert_ne!(good, bad_port);
    let got = tls_request(
        l.g.inbound.unwrap(),
        &l.p.ca_path,
        "PUT",
        uri,
        &[("authorization", bad_port)],
        body.clone(),
    )
    .await;
    assert_eq!(
        (got.status, got.errcode().as_str()),
        (400, "M_UNAUTHORIZED")
    );

    let many = serde_json::to_vec(&json!({
        "origin": REMOTE, "origin_server_ts": 1, "edus": [],
        "pdus": (0..51).map(|i| message(i, "x")).collect::<Vec<_>>()
    }))
    .unwrap();
    let got = to_hs1(&l, &remote_key, "s2", &many).await;
    assert_eq!(got.status, 400, "{}", String::from_utf8_lossy(&got.body));

    let mut invite = float_message(5);
    invite["type"] = json!("m.room.member");
    invite["state_key"] = json!("@b:hs1.test");
    invite["content"] = json!({"membership": "invite", "n": 0.5});
    let body = serde_json::to_vec(
        &json!({"event": invite, "room_version": "10", "invite_room_state": []}),
    )
    .unwrap();
    let uri = "/_matrix/federation/v2/invite/%21p%3Aremote.test/%24i";
    let hdr = auth(&remote_key, REMOTE, HS1, "PUT", uri, Some(&body));
    let got = tls_request(
        l.g.inbound.unwrap(),
        &l.p.ca_path,
        "PUT",
        uri,
        &[("authorization", hdr)],
        body,
    )
    .await;
    assert_eq!((got.status, got.errcode().as_str()), (400, "M_BAD_JSON"));
    assert!(
        !l.hs1
            .seen()
            .iter()
            .any(|s| s.path_and_query.starts_with("/_matrix/federation/")),
        "nothing reached hs1"
    );
    l.g.stop().await;
}

/// hs1 acting as a key notary: it fetched the remote's keys through the guard (attested with
/// the guard key) and serves them on its own `/_matrix/key/v2/query` with its notary
/// signature, as Synapse does. The requester gets the remote's original object back — its
/// self-signature verifies, and so does hs1's notary signature (the guard signs again with
/// hs1's key) — and no guard key. An attested object the guard has no original for is left
/// out of the answer.
#[tokio::test]
async fn a_notary_answer_of_a_protected_server_verifies_at_the_requester() {
    let remote_key = SigningKey::generate("r1").unwrap();
    let stored: std::sync::Arc<std::sync::Mutex<Vec<serde_json::Value>>> = Default::default();
    let served = stored.clone();
    let l = lab(
        &remote_key,
        |_| None,
        move |s: &Seen| {
            (s.path_and_query == "/_matrix/key/v2/query").then(|| {
                serde_json::to_vec(&json!({"server_keys": served.lock().unwrap().clone()})).unwrap()
            })
        },
    )
    .await;
    let hs1_key = hs1_key(&l.p);

    // hs1 fetches the remote's keys through the guard: attested.
    let got = from_hs1(&l.g, &hs1_key, "GET", "/_matrix/key/v2/server", None).await;
    assert_eq!(got.status, 200, "{}", String::from_utf8_lossy(&got.body));
    let attested = got.json();
    let guard_key_id = "ed25519:gw1";
    assert!(
        attested["verify_keys"].get(guard_key_id).is_some(),
        "{attested}"
    );
    // hs1 stores it and serves it as notary, signed with its own key (Synapse's
    // `remote_key_resource`); beside it an attested object the guard never saw.
    let as_notary = |v: &serde_json::Value| {
        let mut obj: ruma::CanonicalJsonObject = serde_json::from_value(v.clone()).unwrap();
        hs1_key.sign_json(HS1, &mut obj).unwrap();
        serde_json::to_value(obj).unwrap()
    };
    let mut foreign = attested.clone();
    foreign["valid_until_ts"] = json!(1);
    stored
        .lock()
        .unwrap()
        .extend([as_notary(&attested), as_notary(&foreign)]);

    let query = br#"{"server_keys":{"remote.test":{}}}"#.to_vec();
    let got = tls_request(
        l.g.inbound.unwrap(),
        &l.p.ca_path,
        "POST",
        "/_matrix/key/v2/query",
        &[("content-type", "application/json".to_string())],
        query,
    )
    .await;
    assert_eq!(got.status, 200, "{}", String::from_utf8_lossy(&got.body));
    assert!(
        !String::from_utf8_lossy(&got.body).contains("gw1"),
        "no guard key leaves"
    );
    let list = got.json()["server_keys"].as_array().unwrap().clone();
    assert_eq!(
        list.len(),
        1,
        "the object without a known original is left out: {list:?}"
    );
    let obj: ruma::CanonicalJsonObject = serde_json::from_value(list[0].clone()).unwrap();
    let verify = |server: &str, key: &SigningKey| {
        let mut only = obj.clone();
        if let Some(ruma::CanonicalJsonValue::Object(s)) = only.get_mut("signatures") {
            s.retain(|k, _| k == server);
        }
        let mut map = ruma::signatures::PublicKeyMap::new();
        map.insert(
            server.to_owned(),
            [(
                key.key_id(),
                ruma::serde::Base64::new(key.public_key().to_vec()),
            )]
            .into_iter()
            .collect(),
        );
        ruma::signatures::verify_json(&map, &only)
    };
    verify(REMOTE, &remote_key).expect("the remote's own signature verifies");
    verify(HS1, &hs1_key).expect("hs1's notary signature verifies");
    assert_eq!(
        list[0]["verify_keys"],
        json!({"ed25519:r1": {"key": remote_key.public_key_base64()}})
    );
    l.g.stop().await;
}

/// PDUs the receiver rejects on their own are withheld from a transaction, the others
/// delivered: one larger than 65 536 bytes (per-PDU error), one that is not a well-formed event
/// (no `sender`: no event id, so no entry, as Synapse gives none).
#[tokio::test]
async fn oversized_and_malformed_pdus_are_withheld_and_the_others_arrive() {
    let remote_key = SigningKey::generate("r1").unwrap();
    let l = lab(&remote_key, |_| None, |_| None).await;
    let good = signed(REMOTE, &remote_key, message(2, "klein"));
    // Too large for ruma to sign: a hash and a signature of the right shape.
    let mut big = message(3, &"x".repeat(70_000));
    big["hashes"] = json!({"sha256": "AAAA"});
    big["signatures"] = json!({REMOTE: {"ed25519:r1": "AAAA"}});
    let mut malformed = message(4, "ohne Absender");
    malformed.as_object_mut().unwrap().remove("sender");
    let body = serde_json::to_vec(&json!({
        "origin": REMOTE, "origin_server_ts": 1, "edus": [],
        "pdus": [big, good, malformed]
    }))
    .unwrap();
    let got = to_hs1(&l, &remote_key, "o1", &body).await;
    assert_eq!(got.status, 200, "{}", String::from_utf8_lossy(&got.body));
    let answer = got.json();
    assert_eq!(
        answer["pdus"][event_id(&big)]["error"].as_str(),
        Some(grenzwacht::proxy::perpdu::TOO_LARGE_ERROR),
        "{answer}"
    );
    assert_eq!(answer["pdus"].as_object().unwrap().len(), 1, "{answer}");
    let sends: Vec<Seen> = l
        .hs1
        .seen()
        .into_iter()
        .filter(|s| s.path_and_query.starts_with("/_matrix/federation/v1/send/"))
        .collect();
    assert_eq!(sends.len(), 1);
    let forwarded: serde_json::Value = serde_json::from_slice(&sends[0].body).unwrap();
    assert_eq!(forwarded["pdus"], json!([good]));
    let m = metrics(l.g.admin).await;
    for cause in ["too_large", "malformed"] {
        assert_eq!(
            counter(
                &m,
                "grenzwacht_withheld_pdus_total",
                &[("direction", "inbound"), ("cause", cause)]
            ),
            1.0,
            "{cause}: {m}"
        );
    }
    l.g.stop().await;
}
