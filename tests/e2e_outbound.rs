//! End to end, both outbound ways (CONNECT and Synapse's proxy protocol), real Synapse:
//! a process on the protected side that is not hs1 cannot speak as hs1.
//!
//! A transaction "from hs1" with a forged X-Matrix signature — carrying a presence EDU that
//! the shipped rule set drops (so the guard would have to modify and re-sign it) and a
//! to-device message for bob — is refused (401) and never reaches hs2: bob's device never sees
//! the message. The same transaction genuinely signed with hs1's key is delivered (the control
//! that shows the observation could fail). A CONNECT without credentials is refused (407).
mod common;
#[path = "common/lab.rs"]
mod lab;

use std::time::Duration;

use base64::Engine;
use common::{plain_request, send_over, Got};
use grenzwacht::federation::xmatrix;
use grenzwacht::keys::SigningKey;
use grenzwacht::lab::OutboundMode;
use lab::{e2e_lab_mode, E2eLab};
use serde_json::json;

/// The forged (or genuine) transaction and where it goes.
struct Attempt {
    txn_id: String,
    body: Vec<u8>,
    marker: String,
}

fn attempt(lab: &E2eLab, tag: &str) -> Attempt {
    let marker = format!("{tag}-{}", rand::random::<u32>());
    let hs1 = lab.info.hs1();
    let body = json!({
        "origin": hs1.server_name,
        "origin_server_ts": 1_700_000_000_000u64,
        "pdus": [],
        "edus": [
            {"edu_type": "m.presence", "content": {"push": [{
                "user_id": lab.alice.user_id, "presence": "online",
                "status_msg": "GEHEIM: im Urlaub", "last_active_ago": 1000,
                "currently_active": true}]}},
            {"edu_type": "m.direct_to_device", "content": {
                "sender": lab.alice.user_id, "type": "m.grenzwacht.test",
                "message_id": marker,
                "messages": {lab.bob.user_id.as_str(): {lab.bob.device_id.as_str(): {"marker": marker}}}}}
        ]
    });
    Attempt {
        txn_id: format!("out{}", rand::random::<u32>()),
        body: serde_json::to_vec(&body).unwrap(),
        marker,
    }
}

fn header(lab: &E2eLab, key: &SigningKey, a: &Attempt) -> String {
    let (hs1, hs2) = (lab.info.hs1(), lab.info.hs2());
    let raw: Box<serde_json::value::RawValue> = serde_json::from_slice(&a.body).unwrap();
    xmatrix::sign_request(
        key,
        &hs1.server_name,
        &hs2.server_name,
        "PUT",
        &format!("/_matrix/federation/v1/send/{}", a.txn_id),
        Some(&raw),
    )
    .unwrap()
}

/// Sends `a` through the guard's outbound listener the way hs1 would in `mode`.
async fn send(lab: &E2eLab, mode: OutboundMode, a: &Attempt, auth: String) -> Got {
    let g = &lab.info.guard;
    let hs2 = lab.info.hs2();
    let secret = g.proxy_secret.clone().expect("the lab uses a proxy secret");
    let path = format!("/_matrix/federation/v1/send/{}", a.txn_id);
    match mode {
        OutboundMode::SynapseProxy => {
            let target = format!("matrix-federation://{}{path}", hs2.server_name);
            plain_request(
                g.outbound_addr,
                "PUT",
                &target,
                &[
                    ("authorization", auth),
                    ("proxy-authorization", format!("Bearer {secret}")),
                    ("content-type", "application/json".into()),
                ],
                a.body.clone(),
            )
            .await
        }
        OutboundMode::Connect => {
            let basic =
                base64::engine::general_purpose::STANDARD.encode(format!("grenzwacht:{secret}"));
            let tcp = tokio::net::TcpStream::connect(g.outbound_addr)
                .await
                .unwrap();
            let (mut sender, conn) =
                hyper::client::conn::http1::handshake(hyper_util::rt::TokioIo::new(tcp))
                    .await
                    .unwrap();
            let conn = tokio::spawn(conn.with_upgrades());
            let req = http::Request::builder()
                .method("CONNECT")
                .uri(hs2.server_name.as_str())
                .header("host", hs2.server_name.as_str())
                .header("proxy-authorization", format!("Basic {basic}"))
                .body(http_body_util::Full::new(bytes::Bytes::new()))
                .unwrap();
            let resp = sender.send_request(req).await.unwrap();
            assert_eq!(resp.status(), 200, "CONNECT with hs1's credentials");
            let upgraded = hyper::upgrade::on(resp).await.unwrap();
            drop(conn);
            let ca = g
                .interception_ca_cert
                .clone()
                .expect("connect mode has a CA");
            let cfg = grenzwacht::proxy::tls::client_config(&[ca]).unwrap();
            let host = hs2.server_name.rsplit_once(':').unwrap().0.to_string();
            let name = rustls::pki_types::ServerName::try_from(host).unwrap();
            let tls = tokio_rustls::TlsConnector::from(cfg)
                .connect(name, hyper_util::rt::TokioIo::new(upgraded))
                .await
                .expect("TLS inside the tunnel");
            send_over(
                hyper_util::rt::TokioIo::new(tls),
                "PUT",
                &path,
                &[
                    ("authorization", auth),
                    ("host", hs2.server_name.clone()),
                    ("content-type", "application/json".into()),
                ],
                a.body.clone(),
            )
            .await
        }
    }
}

/// Whether bob's device got the to-device message with `marker` within `wait`.
async fn bob_got(lab: &E2eLab, marker: &str, wait: Duration) -> bool {
    let until = std::time::Instant::now() + wait;
    loop {
        let events = lab.bob.to_device_events().await.unwrap_or_default();
        if events.iter().any(|e| e["content"]["marker"] == marker) {
            return true;
        }
        if std::time::Instant::now() > until {
            return false;
        }
        tokio::time::sleep(Duration::from_millis(300)).await;
    }
}

async fn forged_is_refused_and_genuine_arrives(mode: OutboundMode) {
    let lab = e2e_lab_mode(&format!("outbound-{mode}"), false, mode).await;
    let hs1_key = SigningKey::from_synapse_file(&lab.info.hs1().signing_key).expect("hs1 key");
    let version = hs1_key
        .key_id()
        .strip_prefix("ed25519:")
        .unwrap()
        .to_string();
    // Same key id as hs1's, random key: a random signature.
    let forger = SigningKey::generate(&version).unwrap();

    let forged = attempt(&lab, "forged");
    let got = send(&lab, mode, &forged, header(&lab, &forger, &forged)).await;
    assert_eq!(
        got.status,
        401,
        "{mode}: {}",
        String::from_utf8_lossy(&got.body)
    );

    // A CONNECT without credentials never opens a tunnel.
    if mode == OutboundMode::Connect {
        let hs2 = lab.info.hs2();
        let got = plain_request(
            lab.info.guard.outbound_addr,
            "CONNECT",
            &hs2.server_name,
            &[("host", hs2.server_name.clone())],
            vec![],
        )
        .await;
        assert_eq!(got.status, 407, "{}", String::from_utf8_lossy(&got.body));
    }

    // The control: the same kind of transaction signed with hs1's real key arrives, so the
    // absence below is the guard's doing.
    let genuine = attempt(&lab, "genuine");
    let got = send(&lab, mode, &genuine, header(&lab, &hs1_key, &genuine)).await;
    assert_eq!(
        got.status,
        200,
        "{mode}: {}",
        String::from_utf8_lossy(&got.body)
    );
    assert!(
        bob_got(&lab, &genuine.marker, Duration::from_secs(20)).await,
        "{mode}: the genuine to-device message reached bob"
    );
    assert!(
        !bob_got(&lab, &forged.marker, Duration::from_secs(2)).await,
        "{mode}: the forged to-device message must never reach bob"
    );
    // hs2 logs the transactions it receives: the genuine one is there, the forged one never.
    let hs2_log =
        std::fs::read_to_string(lab.info.dir.join("hs2/homeserver.log")).unwrap_or_default();
    assert!(
        hs2_log.contains(&genuine.txn_id),
        "{mode}: hs2's log names received transactions"
    );
    assert!(
        !hs2_log.contains(&forged.txn_id),
        "{mode}: hs2 received the forged transaction"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn forged_outbound_transactions_are_refused_in_both_outbound_modes() {
    forged_is_refused_and_genuine_arrives(OutboundMode::Connect).await;
    forged_is_refused_and_genuine_arrives(OutboundMode::SynapseProxy).await;
}
