//! The audit log fails closed: with the audit directory unwritable, nothing crosses (503 to the
//! sender, nothing upstream), and `/health` says why; before the fault every decision was
//! recorded (durably) before its transaction was forwarded.
mod common;

use common::*;
use grenzwacht::keys::SigningKey;
use serde_json::json;

const REMOTE: &str = "remote.test";
const HS1: &str = TEST_HS1;

fn body(n: u32) -> Vec<u8> {
    serde_json::to_vec(&json!({
        "origin": REMOTE, "origin_server_ts": 1,
        "pdus": [{"type": "m.room.message", "room_id": "!r:remote.test", "sender": "@a:remote.test",
                  "origin_server_ts": 5, "content": {"body": format!("message {n}")}}],
        "edus": []
    }))
    .unwrap()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn nothing_crosses_when_the_audit_log_cannot_be_written() {
    let p = pki();
    let up = recorder(None, default_answer()).await;
    let (_, audit_key) = guard_key_file(&p);
    let audit_dir = p.dir.path().join("audit");
    let extra = format!(
        "[audit]\ndir = \"{}\"\nkey_file = \"{}\"\n",
        audit_dir.display(),
        audit_key.display()
    );
    let g = start_guard(&p, &inbound_toml(&p, up.addr, &extra)).await;
    let key = SigningKey::generate("t1").unwrap();
    let send = |txn: String, body: Vec<u8>| {
        let uri = format!("/_matrix/federation/v1/send/{txn}");
        let hdr = auth(&key, REMOTE, HS1, "PUT", &uri, Some(&body));
        let (addr, ca) = (g.inbound.unwrap(), p.ca_path.clone());
        async move { tls_request(addr, &ca, "PUT", &uri, &[("authorization", hdr)], body).await }
    };

    // Healthy: forwarded, and its decision is in the audit log.
    let got = send("ok1".into(), body(1)).await;
    assert_eq!(got.status, 200, "{:?}", got.body);
    assert_eq!(up.seen().len(), 1);
    let recorded =
        grenzwacht::audit::query::search(&audit_dir, &grenzwacht::audit::query::Filter::default())
            .unwrap();
    let decision = recorded
        .iter()
        .find(|r| r["kind"] == "decision")
        .unwrap_or_else(|| panic!("no decision record: {recorded:?}"));
    assert_eq!(decision["data"]["txn_id"], "ok1");
    assert_eq!(decision["data"]["verdict"], "allow");
    assert_eq!(decision["data"]["effect"], "crossed");
    assert_eq!(decision["data"]["origin"], REMOTE);
    assert!(
        decision["data"].get("content").is_none(),
        "no content by default: {decision}"
    );
    let health = plain_request(g.admin, "GET", "/health", &[], vec![]).await;
    assert_eq!(health.status, 200, "{:?}", health.body);

    // The fault: the audit directory is moved away and a plain file takes its place (works as
    // root too, where permissions would not stop a write).
    std::fs::rename(&audit_dir, p.dir.path().join("audit.moved")).unwrap();
    std::fs::write(&audit_dir, b"not a directory").unwrap();
    let mut refused = None;
    for i in 0..3 {
        let got = send(format!("fault{i}"), body(10 + i)).await;
        if got.status != 200 {
            refused = Some(got);
            break;
        }
        // The append that found the fault may have been the one acknowledged before it; the
        // next one fails.
    }
    let got = refused.expect("a transaction was forwarded after the audit log broke");
    assert_eq!(
        (got.status, got.errcode().as_str()),
        (503, "M_UNKNOWN"),
        "{:?}",
        got.body
    );
    let forwarded = up.seen().len();
    // Every later transaction is refused too, and none reaches the homeserver.
    for i in 0..3 {
        let got = send(format!("after{i}"), body(20 + i)).await;
        assert_eq!(got.status, 503, "{:?}", got.body);
    }
    assert_eq!(
        up.seen().len(),
        forwarded,
        "nothing crossed after the fault"
    );

    // Health says why, and the metric shows it.
    let health = plain_request(g.admin, "GET", "/health", &[], vec![]).await;
    assert_eq!(health.status, 503, "{:?}", health.body);
    let text = String::from_utf8_lossy(&health.body).to_string();
    assert!(text.contains("audit"), "{text}");
    let m = metrics(g.admin).await;
    assert_eq!(counter(&m, "grenzwacht_audit_healthy", &[]), 0.0, "{m}");
    g.stop().await;
}
