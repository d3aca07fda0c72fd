//! End-to-end: redaction in transit on `grenzwacht lab`.
//!
//! The lab's guard has a rule that redacts events containing the marking `GEHEIM`. With real
//! Synapse homeservers, for room versions 12 (Synapse's default) and 10:
//! - a message from hs1 containing `GEHEIM` arrives at hs2 with the same event id and without
//!   its body (outbound: redacted and re-signed as hs1 with hs1's own key);
//! - the next clean message arrives intact (the DAG is intact);
//! - a reply from hs2 containing `GEHEIM` arrives at hs1 redacted (inbound: re-signed with the
//!   guard key that the guard attested to hs1 when hs1 fetched hs2's keys through it);
//! - the conversation continues both ways;
//! - user data and to-device messages: a marked display name is removed from hs1's profile
//!   answer to hs2, a marked to-device message is removed for its device only.
#[path = "common/lab.rs"]
mod common;

use std::time::Duration;

use grenzwacht::lab::client::{encode_segment, wait_until, Session};
use serde_json::{json, Value};

const WAIT: Duration = Duration::from_secs(60);

/// Waits until `who` can read event `event_id` in `room` and returns it.
async fn wait_event(who: &Session, room: &str, event_id: &str) -> Value {
    common::wait_event(who, room, event_id, WAIT).await
}

async fn conversation(alice: &Session, bob: &Session, hs1_name: &str, version: &str) {
    let room = alice
        .create_room(&json!({"preset": "private_chat", "room_version": version, "name": format!("v{version}")}))
        .await
        .expect("create room");
    alice.invite(&room, &bob.user_id).await.expect("invite");
    bob.wait_for_invite(&room, WAIT)
        .await
        .expect("bob sees the invite");
    bob.join(&room, &[hs1_name]).await.expect("bob joins");
    alice
        .wait_for_member(&room, &bob.user_id, WAIT)
        .await
        .expect("alice sees bob");

    // Outbound: hs1 → guard → hs2.
    let secret = format!("Lagebericht v{version}: GEHEIM, nicht weitergeben");
    let e1 = alice
        .send_text(&room, &secret)
        .await
        .expect("alice sends the marked message");
    let seen = wait_event(bob, &room, &e1).await;
    assert_eq!(seen["event_id"], e1.as_str(), "same event id at hs2");
    assert_eq!(seen["type"], "m.room.message");
    assert!(
        seen["content"].get("body").is_none(),
        "v{version}: hs2 got the body: {seen}"
    );
    assert_eq!(
        seen["content"],
        json!({}),
        "v{version}: content not redacted at hs2: {seen}"
    );

    let clean = format!("v{version}: the next message is fine");
    alice
        .send_text(&room, &clean)
        .await
        .expect("alice sends a clean message");
    let m = bob
        .wait_for_text(&room, &alice.user_id, &clean, WAIT)
        .await
        .expect("clean message arrives at hs2");
    assert_eq!(m.body, clean);

    // Inbound: hs2 → guard → hs1 (re-signed with the attested guard key).
    let reply = format!("v{version}: Antwort, ebenfalls GEHEIM");
    let e2 = bob
        .send_text(&room, &reply)
        .await
        .expect("bob sends a marked reply");
    let seen = wait_event(alice, &room, &e2).await;
    assert_eq!(seen["event_id"], e2.as_str(), "same event id at hs1");
    assert_eq!(
        seen["content"],
        json!({}),
        "v{version}: content not redacted at hs1: {seen}"
    );

    let clean2 = format!("v{version}: and the conversation goes on");
    bob.send_text(&room, &clean2)
        .await
        .expect("bob sends a clean reply");
    alice
        .wait_for_text(&room, &bob.user_id, &clean2, WAIT)
        .await
        .expect("clean reply arrives at hs1");
    // The sender's own copy is untouched (redaction happens only in transit).
    let own = wait_event(alice, &room, &e1).await;
    assert_eq!(own["content"]["body"], secret.as_str());
}

/// DLP on the lab (the guard runs the shipped DLP rule set): a valid IBAN from hs1
/// arrives at hs2 redacted, the same text with a broken check digit intact, an edit whose
/// `m.new_content` adds an IBAN is redacted; `policy explain` on the sender's copy of the event
/// names the rule and the span.
async fn dlp_cases(
    info: &grenzwacht::lab::LabInfo,
    alice: &Session,
    bob: &Session,
    hs1_name: &str,
) {
    let room = alice
        .create_room(&json!({"preset": "private_chat", "name": "dlp"}))
        .await
        .expect("create room");
    alice.invite(&room, &bob.user_id).await.expect("invite");
    bob.wait_for_invite(&room, WAIT).await.expect("invite seen");
    bob.join(&room, &[hs1_name]).await.expect("join");
    alice
        .wait_for_member(&room, &bob.user_id, WAIT)
        .await
        .expect("member");

    let valid = "Bitte überweise an DE89370400440532013000 bis Freitag";
    let broken = "Bitte überweise an DE89370400440532013001 bis Freitag";
    let e_valid = alice
        .send_text(&room, valid)
        .await
        .expect("send valid IBAN");
    let seen = wait_event(bob, &room, &e_valid).await;
    assert_eq!(
        seen["content"],
        json!({}),
        "a valid IBAN reached hs2: {seen}"
    );
    alice
        .send_text(&room, broken)
        .await
        .expect("send broken IBAN");
    let m = bob
        .wait_for_text(&room, &alice.user_id, broken, WAIT)
        .await
        .expect("broken check digit arrives intact");
    assert_eq!(m.body, broken);

    // An edit of a clean message that adds an IBAN.
    let e_orig = alice
        .send_text(&room, "Kontodaten folgen")
        .await
        .expect("send original");
    bob.wait_for_event(&room, &e_orig, WAIT)
        .await
        .expect("original arrives");
    let edit = json!({
        "msgtype": "m.text", "body": "* Kontodaten folgen",
        "m.new_content": {"msgtype": "m.text", "body": "Konto: DE89370400440532013000"},
        "m.relates_to": {"rel_type": "m.replace", "event_id": e_orig}
    });
    let path = format!(
        "/_matrix/client/v3/rooms/{}/send/m.room.message/edit{}",
        encode_segment(&room),
        rand::random::<u32>()
    );
    let r = alice
        .client
        .call("PUT", &path, Some(&alice.access_token), Some(&edit))
        .await
        .expect("send edit");
    let e_edit = r["event_id"].as_str().expect("edit event id").to_string();
    let seen = wait_event(bob, &room, &e_edit).await;
    assert_eq!(
        seen["content"],
        json!({}),
        "the edit adding an IBAN reached hs2: {seen}"
    );

    // `policy explain` on the sender's copy of the redacted event names the rule and the span.
    let own = wait_event(alice, &room, &e_valid).await;
    let file = info.dir.join("explain-event.json");
    std::fs::write(&file, serde_json::to_vec(&own).unwrap()).unwrap();
    let out = std::process::Command::new(env!("CARGO_BIN_EXE_grenzwacht"))
        .args(["policy", "explain", "--format", "json", "--policies"])
        .arg(info.dir.join("policies"))
        .arg("--event")
        .arg(&file)
        .output()
        .expect("run policy explain");
    assert!(
        out.status.success(),
        "policy explain: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    let v: Value = serde_json::from_slice(&out.stdout).expect("explain JSON");
    assert_eq!(v["verdict"], "redact", "{v}");
    let start = valid.find("DE89").unwrap();
    assert!(
        v["matches"]
            .as_array()
            .unwrap()
            .iter()
            .any(|m| m["rule"] == "pii.iban"
                && m["field"] == "body"
                && m["start"] == start
                && m["end"] == start + 22),
        "explain names pii.iban at {start}..{}: {v}",
        start + 22
    );
}

/// History written before hs2 joined reaches hs2 through responses (send_join state,
/// backfill, event fetches): the marked event arrives redacted, the clean one intact.
async fn history(alice: &Session, bob: &Session, hs1_name: &str) {
    let room = alice
        .create_room(&json!({"preset": "private_chat", "name": "history"}))
        .await
        .expect("create room");
    let old_secret = alice
        .send_text(&room, "Altlast: GEHEIM seit gestern")
        .await
        .expect("old secret");
    let old_clean = "alter Klartext, bitte lesen";
    alice.send_text(&room, old_clean).await.expect("old clean");
    alice.invite(&room, &bob.user_id).await.expect("invite");
    bob.wait_for_invite(&room, WAIT).await.expect("invite seen");
    bob.join(&room, &[hs1_name]).await.expect("join");
    let m = bob
        .wait_for_text(&room, &alice.user_id, old_clean, WAIT)
        .await
        .expect("old clean message visible at hs2");
    assert_eq!(m.body, old_clean);
    let seen = wait_event(bob, &room, &old_secret).await;
    assert_eq!(seen["event_id"], old_secret.as_str());
    assert_eq!(
        seen["content"],
        json!({}),
        "history reached hs2 unredacted: {seen}"
    );
}

/// Presence with a marked `status_msg` is dropped (the EDU), typing notifications pass.
async fn presence_and_typing(alice: &Session, bob: &Session, hs1_name: &str) {
    let room = alice
        .create_room(&json!({"preset": "private_chat", "name": "edus"}))
        .await
        .expect("create room");
    alice.invite(&room, &bob.user_id).await.expect("invite");
    bob.wait_for_invite(&room, WAIT).await.expect("invite seen");
    bob.join(&room, &[hs1_name]).await.expect("join");
    alice
        .wait_for_member(&room, &bob.user_id, WAIT)
        .await
        .expect("member");
    let presence = format!(
        "/_matrix/client/v3/presence/{}/status",
        encode_segment(&alice.user_id)
    );
    let set = |msg: &'static str| {
        let presence = presence.clone();
        async move {
            alice
                .client
                .call(
                    "PUT",
                    &presence,
                    Some(&alice.access_token),
                    Some(&json!({"presence": "online", "status_msg": msg})),
                )
                .await
                .expect("set presence");
        }
    };
    let bobs_view = || {
        let presence = presence.clone();
        async move {
            bob.client
                .call("GET", &presence, Some(&bob.access_token), None)
                .await
        }
    };
    // Positive control: a clean status crosses.
    set("alles ruhig").await;
    wait_until("bob to see alice's clean status", WAIT, || async {
        Ok(bobs_view()
            .await
            .ok()
            .filter(|v| v["status_msg"] == "alles ruhig")
            .map(|_| ()))
    })
    .await
    .expect("clean presence crosses");
    // The marked status is dropped; a typing notification sent after it still arrives.
    set("Lage GEHEIM").await;
    let typing = format!(
        "/_matrix/client/v3/rooms/{}/typing/{}",
        encode_segment(&room),
        encode_segment(&alice.user_id)
    );
    alice
        .client
        .call(
            "PUT",
            &typing,
            Some(&alice.access_token),
            Some(&json!({"typing": true, "timeout": 30000})),
        )
        .await
        .expect("typing");
    wait_until("bob to see alice typing", WAIT, || async {
        let n = rand::random::<u16>() % 1000 + 1;
        let filter = encode_segment(&format!(r#"{{"room":{{"timeline":{{"limit":{n}}}}}}}"#));
        let sync = bob
            .client
            .call(
                "GET",
                &format!("/_matrix/client/v3/sync?timeout=0&filter={filter}"),
                Some(&bob.access_token),
                None,
            )
            .await?;
        let typing = sync["rooms"]["join"][&room]["ephemeral"]["events"]
            .as_array()
            .into_iter()
            .flatten()
            .any(|e| {
                e["type"] == "m.typing"
                    && e["content"]["user_ids"]
                        .as_array()
                        .is_some_and(|u| u.iter().any(|x| x == alice.user_id.as_str()))
            });
        Ok(typing.then_some(()))
    })
    .await
    .expect("typing notification crosses");
    let v = bobs_view().await.expect("presence at hs2");
    assert_eq!(
        v["status_msg"], "alles ruhig",
        "the marked status reached hs2: {v}"
    );
}

/// Negative controls, straight to hs1's federation listener (bypassing the guard): a request
/// whose body was modified after hs2 signed it is refused by Synapse (401) — this is why the
/// guard must re-sign — while the same modified body signed with the guard key, which hs1
/// learned as one of hs2's keys through attestation, is accepted.
async fn negative_controls(info: &grenzwacht::lab::LabInfo) {
    use grenzwacht::federation::xmatrix;
    use grenzwacht::keys::SigningKey;
    let (hs1, hs2) = (info.hs1(), info.hs2());
    let hs2_key = SigningKey::from_synapse_file(&hs2.signing_key).expect("hs2 key");
    let guard_key =
        SigningKey::from_synapse_file(info.dir.join("guard.signing.key")).expect("guard key");
    let typing = |typing: bool| {
        serde_json::to_vec(&json!({
            "origin": hs2.server_name, "origin_server_ts": 1, "pdus": [],
            "edus": [{"edu_type": "m.typing", "content": {"room_id": "!nowhere:x", "user_id": format!("@bob:{}", hs2.server_name), "typing": typing}}]
        }))
        .unwrap()
    };
    let base = hs1.federation_url.trim_start_matches("http://").to_string();
    let addr: std::net::SocketAddr = base.parse().expect("hs1 federation address");
    let put = |txn: String, body: Vec<u8>, header: String| async move {
        let head = common::head(
            "PUT",
            &format!("/_matrix/federation/v1/send/{txn}"),
            &hs1.server_name,
            &[
                ("Authorization", &header),
                ("Content-Type", "application/json"),
            ],
            body.len(),
        );
        let mut tcp = tokio::net::TcpStream::connect(addr)
            .await
            .expect("connect hs1");
        common::exchange(&mut tcp, &head, &body).await
    };
    let sign = |key: &SigningKey, txn: &str, body: &[u8]| {
        let raw: Box<serde_json::value::RawValue> = serde_json::from_slice(body).unwrap();
        xmatrix::sign_request(
            key,
            &hs2.server_name,
            &hs1.server_name,
            "PUT",
            &format!("/_matrix/federation/v1/send/{txn}"),
            Some(&raw),
        )
        .unwrap()
    };
    let txn = format!("neg{}", rand::random::<u32>());
    let header = sign(&hs2_key, &txn, &typing(true));
    let r = put(txn.clone(), typing(false), header).await;
    assert_eq!(
        r.status,
        401,
        "modified without re-signing must be refused: {}",
        r.text()
    );
    let txn2 = format!("neg{}", rand::random::<u32>());
    let header = sign(&guard_key, &txn2, &typing(false));
    let r = put(txn2, typing(false), header).await;
    assert_eq!(
        r.status,
        200,
        "re-signed with the attested guard key: {}",
        r.text()
    );

    // Through the guard: it verifies X-Matrix itself with hs2's real keys (fetched by the guard).
    let via_guard = |txn: String, body: Vec<u8>, header: String| async move {
        let head = common::head(
            "PUT",
            &format!("/_matrix/federation/v1/send/{txn}"),
            &hs1.server_name,
            &[
                ("Authorization", &header),
                ("Content-Type", "application/json"),
            ],
            body.len(),
        );
        common::tls_request(info.guard.inbound_addr, &info.ca_cert, &head, &body).await
    };
    let txn3 = format!("neg{}", rand::random::<u32>());
    let header = sign(&hs2_key, &txn3, &typing(true));
    let r = via_guard(txn3, typing(false), header).await;
    assert_eq!(
        (r.status, r.errcode().as_str()),
        (401, "M_UNAUTHORIZED"),
        "guard must refuse a body that does not match its signature: {}",
        r.text()
    );
    let txn4 = format!("neg{}", rand::random::<u32>());
    let forged = SigningKey::generate("a_lab").unwrap();
    let header = sign(&forged, &txn4, &typing(false));
    let r = via_guard(txn4, typing(false), header).await;
    assert_eq!(
        r.status,
        401,
        "guard must refuse a forged key: {}",
        r.text()
    );
    let txn5 = format!("neg{}", rand::random::<u32>());
    let header = sign(&hs2_key, &txn5, &typing(false));
    let r = via_guard(txn5, typing(false), header).await;
    assert_eq!(
        r.status,
        200,
        "a correctly signed request passes the guard's check: {}",
        r.text()
    );

    attestation_controls(info).await;
}

/// A key server on 127.0.0.1:`port` (TLS with the lab's test CA) that answers every request
/// with `body`.
async fn key_server_on(
    info: &grenzwacht::lab::LabInfo,
    listener: tokio::net::TcpListener,
    body: Vec<u8>,
) {
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    let certs_dir = info.dir.join("certs");
    let certs: Vec<_> =
        rustls_pemfile::certs(&mut std::fs::read(certs_dir.join("hs2.crt")).unwrap().as_slice())
            .map(|c| c.unwrap())
            .collect();
    let key = rustls_pemfile::private_key(
        &mut std::fs::read(certs_dir.join("hs2.key")).unwrap().as_slice(),
    )
    .unwrap()
    .unwrap();
    let cfg = rustls::ServerConfig::builder_with_provider(std::sync::Arc::new(
        rustls::crypto::ring::default_provider(),
    ))
    .with_safe_default_protocol_versions()
    .unwrap()
    .with_no_client_auth()
    .with_single_cert(certs, key)
    .unwrap();
    let acceptor = tokio_rustls::TlsAcceptor::from(std::sync::Arc::new(cfg));
    tokio::spawn(async move {
        while let Ok((tcp, _)) = listener.accept().await {
            let (acceptor, body) = (acceptor.clone(), body.clone());
            tokio::spawn(async move {
                let Ok(mut tls) = acceptor.accept(tcp).await else {
                    return;
                };
                let mut buf = Vec::new();
                let mut chunk = [0u8; 4096];
                while !buf.windows(4).any(|w| w == b"\r\n\r\n") {
                    match tls.read(&mut chunk).await {
                        Ok(0) | Err(_) => return,
                        Ok(n) => buf.extend_from_slice(&chunk[..n]),
                    }
                }
                let head = format!("HTTP/1.1 200 OK\r\nContent-Type: application/json\r\nContent-Length: {}\r\nConnection: close\r\n\r\n", body.len());
                let _ = tls.write_all(head.as_bytes()).await;
                let _ = tls.write_all(&body).await;
                let _ = tls.shutdown().await;
            });
        }
    });
}

/// Negative control for key attestation, against real Synapse (hs2, which fetches keys
/// directly): two servers on 127.0.0.1 publish a key object attested with a guard-style key
/// `ed25519:gw1` exactly as the guard builds it (`keys::attest::attest_server_keys`), one of
/// them with the server's original self-signature left in. A request signed with the
/// attested key is accepted for the correctly attested server and refused (401) for the other:
/// the original signature no longer matches the object, and Synapse refuses the whole object.
async fn attestation_controls(info: &grenzwacht::lab::LabInfo) {
    use grenzwacht::federation::xmatrix;
    use grenzwacht::keys::{attest, SigningKey};
    let hs2 = info.hs2();
    let attester = SigningKey::generate("gw1").unwrap();
    let mut attested_servers = Vec::new();
    for keep_original in [false, true] {
        let own = SigningKey::generate("a_f").unwrap();
        let build = |name: &str| {
            let now = std::time::SystemTime::now()
                .duration_since(std::time::UNIX_EPOCH)
                .unwrap()
                .as_millis() as u64;
            let mut obj: ruma::CanonicalJsonObject = serde_json::from_value(json!({
                "server_name": name, "valid_until_ts": now + 86_400_000, "old_verify_keys": {},
                "verify_keys": {"ed25519:a_f": {"key": own.public_key_base64()}}
            }))
            .unwrap();
            own.sign_json(name, &mut obj).unwrap();
            let original_sig = obj["signatures"].clone();
            let attested =
                attest::attest_server_keys(&serde_json::to_vec(&obj).unwrap(), &attester).unwrap();
            let mut attested: Value = serde_json::from_slice(&attested).unwrap();
            assert!(
                attested["signatures"][name].get("ed25519:a_f").is_none(),
                "the guard drops the original signature"
            );
            if keep_original {
                let orig = serde_json::to_value(&original_sig).unwrap();
                attested["signatures"][name]["ed25519:a_f"] = orig[name]["ed25519:a_f"].clone();
            }
            // Served in canonical (sorted) order, as a server would: Synapse verifies the first
            // signature it knows a key for, so the original one must come first to be checked.
            let attested: ruma::CanonicalJsonObject = serde_json::from_value(attested).unwrap();
            serde_json::to_vec(&attested).unwrap()
        };
        // The server name is part of the object: bind first, then sign and serve.
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let name = format!("127.0.0.1:{}", listener.local_addr().unwrap().port());
        key_server_on(info, listener, build(&name)).await;
        attested_servers.push((name, keep_original));
    }
    let hs2_addr: std::net::SocketAddr = hs2
        .federation_url
        .trim_start_matches("https://")
        .parse()
        .expect("hs2 federation address");
    for (origin, keep_original) in attested_servers {
        let txn = format!("att{}", rand::random::<u32>());
        let uri = format!("/_matrix/federation/v1/send/{txn}");
        let body = serde_json::to_vec(&json!({
            "origin": origin, "origin_server_ts": 1, "pdus": [],
            "edus": [{"edu_type": "m.typing", "content": {"room_id": "!nowhere:x", "user_id": format!("@x:{origin}"), "typing": false}}]
        }))
        .unwrap();
        let raw: Box<serde_json::value::RawValue> = serde_json::from_slice(&body).unwrap();
        let header = xmatrix::sign_request(
            &attester,
            &origin,
            &hs2.server_name,
            "PUT",
            &uri,
            Some(&raw),
        )
        .unwrap();
        let head = common::head(
            "PUT",
            &uri,
            &hs2.server_name,
            &[
                ("Authorization", &header),
                ("Content-Type", "application/json"),
            ],
            body.len(),
        );
        let r = common::tls_request(hs2_addr, &info.ca_cert, &head, &body).await;
        if keep_original {
            assert_eq!(
                r.status,
                401,
                "an attested object that keeps the original signature must be refused: {}",
                r.text()
            );
        } else {
            assert_eq!(
                r.status,
                200,
                "a correctly attested key is accepted by Synapse: {}",
                r.text()
            );
        }
    }
}

/// User data leaving hs1: a profile whose display name carries the marking is answered without
/// it (hs2's user sees no display name), a clean one is answered in full (positive control).
async fn profile_fields(hs1: &grenzwacht::lab::HomeserverInfo, bob: &Session) {
    let hs1_client = grenzwacht::lab::client::MatrixClient::new(&hs1.client_url);
    let carol = hs1_client
        .register_shared_secret(&hs1.registration_shared_secret, "carol", "pw-carol", false)
        .await
        .expect("register carol");
    let dave = hs1_client
        .register_shared_secret(&hs1.registration_shared_secret, "dave", "pw-dave", false)
        .await
        .expect("register dave");
    carol
        .set_displayname("Carol (GEHEIM)")
        .await
        .expect("carol's display name");
    dave.set_displayname("Dave klar")
        .await
        .expect("dave's display name");
    // hs1 itself still has both (removal happens only in transit).
    assert_eq!(
        carol.profile(&carol.user_id).await.expect("own profile")["displayname"],
        "Carol (GEHEIM)"
    );
    // Positive control (retried: a transient federation error is not what this tests).
    let seen = wait_until("hs2 to get dave's profile", WAIT, || async {
        Ok(bob.profile(&dave.user_id).await.ok())
    })
    .await
    .expect("dave's profile over federation");
    assert_eq!(
        seen["displayname"], "Dave klar",
        "positive control: clean display name crosses: {seen}"
    );
    let seen = bob
        .profile(&carol.user_id)
        .await
        .expect("carol's profile over federation");
    assert!(
        seen.get("displayname").is_none(),
        "marked display name reached hs2: {seen}"
    );
    let path = format!(
        "/_matrix/client/v3/profile/{}/displayname",
        encode_segment(&carol.user_id)
    );
    let seen = bob
        .client
        .call("GET", &path, Some(&bob.access_token), None)
        .await
        .expect("displayname query");
    assert!(
        seen.get("displayname").is_none(),
        "marked display name reached hs2 (field query): {seen}"
    );
}

/// A to-device message from hs1 to two devices of a hs2 user (one EDU): the message carrying
/// the marking is removed for its device, the clean one arrives at the other device.
async fn to_device(alice: &Session, bob: &Session, hs2: &grenzwacht::lab::HomeserverInfo) {
    let bob2 = grenzwacht::lab::client::MatrixClient::new(&hs2.client_url)
        .login("bob", "pw-bob")
        .await
        .expect("bob's second device");
    assert_ne!(bob.device_id, bob2.device_id);
    let ty = "org.grenzwacht.test";
    let run = rand::random::<u32>();
    let messages = json!({&bob.user_id: {
        &bob.device_id: {"text": "Treffpunkt GEHEIM", "run": run},
        &bob2.device_id: {"text": "Treffpunkt 10 Uhr", "run": run}
    }});
    alice
        .send_to_device(ty, &messages)
        .await
        .expect("send to-device");
    let ours = |events: Vec<Value>| {
        events
            .into_iter()
            .filter(|e| e["type"] == ty && e["content"]["run"] == run)
            .collect::<Vec<_>>()
    };
    let got = wait_until(
        "bob's second device to get the clean to-device message",
        WAIT,
        || async { Ok(Some(ours(bob2.to_device_events().await?)).filter(|v| !v.is_empty())) },
    )
    .await
    .expect("clean to-device message arrives");
    assert_eq!(got.len(), 1, "{got:?}");
    assert_eq!(got[0]["content"]["text"], "Treffpunkt 10 Uhr");
    assert_eq!(got[0]["sender"], alice.user_id.as_str());
    // Same EDU: the other device's message would have been stored at the same time.
    let other = ours(
        bob.to_device_events()
            .await
            .expect("sync of bob's first device"),
    );
    assert!(
        other.is_empty(),
        "marked to-device message reached hs2: {other:?}"
    );
}

#[tokio::test]
async fn geheim_is_redacted_in_transit_both_directions() {
    let lab = common::e2e_lab("redact", false).await;
    let common::E2eLab {
        info, alice, bob, ..
    } = lab;
    let (hs1, hs2) = (info.hs1().clone(), info.hs2().clone());
    for version in [
        "12", "11", "10", "9", "8", "7", "6", "5", "4", "3", "2", "1",
    ] {
        conversation(&alice, &bob, &hs1.server_name, version).await;
    }
    history(&alice, &bob, &hs1.server_name).await;
    presence_and_typing(&alice, &bob, &hs1.server_name).await;
    dlp_cases(&info, &alice, &bob, &hs1.server_name).await;
    profile_fields(&hs1, &bob).await;
    to_device(&alice, &bob, &hs2).await;
    negative_controls(&info).await;
    let log = std::fs::read_to_string(&info.guard.log).unwrap_or_default();
    assert!(
        log.contains("redacting event in transit"),
        "guard log shows the redactions"
    );
    assert!(
        log.contains("dropping EDU in transit"),
        "guard log shows the dropped presence EDU"
    );
    // The guard verified the real PDUs hs2 sent (signatures and hashes) and none failed.
    let m = common::guard_metrics(&info).await;
    let checks = |outcome: &str| -> f64 {
        m.iter()
            .filter(|s| s.name == "grenzwacht_pdu_checks_total" && s.label("outcome") == outcome)
            .map(|s| s.value)
            .sum()
    };
    assert!(
        checks("verified") >= 12.0,
        "the guard verified hs2's PDUs: {}",
        checks("verified")
    );
    assert_eq!(
        checks("bad_signature"),
        0.0,
        "no real PDU failed the guard's check"
    );
    // hs1 asked the guard, its trusted key server, for hs2's keys: the guard answered as notary.
    let notary_answers: f64 = m
        .iter()
        .filter(|s| {
            s.name == "grenzwacht_requests_total"
                && s.label("endpoint").starts_with("key_query")
                && s.label("direction") == "outbound"
                && s.label("status") == "200"
        })
        .map(|s| s.value)
        .sum();
    assert!(notary_answers >= 1.0, "hs1 used the guard as notary");
    assert!(
        log.contains("removing user-data field in transit"),
        "guard log shows the removed display name"
    );
    assert!(
        log.contains("dropping to-device message in transit"),
        "guard log shows the dropped to-device message"
    );
    assert!(
        !log.contains("Carol (GEHEIM)") && !log.contains("Treffpunkt GEHEIM"),
        "values never logged"
    );
}
