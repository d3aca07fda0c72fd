//! In-process proxy behaviour: a real guard between real sockets, a recording upstream.
//! (The end-to-end suite with real Synapse homeservers is `tests/e2e_lab.rs`.)
mod common;

use common::*;
use grenzwacht::federation::xmatrix;
use grenzwacht::keys::SigningKey;
use serde_json::json;

const HS1: &str = "hs1.test";
const REMOTE: &str = "remote.test";

fn pdu(i: usize, body: &str) -> serde_json::Value {
    json!({
        "auth_events": [], "prev_events": [], "depth": i, "hashes": {"sha256": "x"},
        "origin_server_ts": 1, "room_id": "!r:remote.test", "sender": "@a:remote.test",
        "type": "m.room.message", "content": {"body": body, "msgtype": "m.text"}, "signatures": {}
    })
}

fn txn(pdus: Vec<serde_json::Value>) -> Vec<u8> {
    txn_from(REMOTE, pdus)
}

/// A transaction whose body names `origin` (it must be the X-Matrix origin).
fn txn_from(origin: &str, pdus: Vec<serde_json::Value>) -> Vec<u8> {
    serde_json::to_vec(&json!({"origin": origin, "origin_server_ts": 1, "pdus": pdus, "edus": []}))
        .unwrap()
}

#[tokio::test]
async fn unmodified_send_reaches_upstream_byte_for_byte() {
    let p = pki();
    let up = recorder(None, default_answer()).await;
    let g = start_guard(&p, &inbound_toml(&p, up.addr, "")).await;
    let key = SigningKey::generate("t1").unwrap();
    // Odd but valid bytes: key order, spacing and escapes must survive untouched.
    let body = br#"{"origin":"remote.test", "origin_server_ts":1,"pdus":[{"type":"m.room.message","room_id":"!r:remote.test","sender":"@a:remote.test","origin_server_ts":5,"content":{"body":"Gr\u00fc\u00dfe  \ud83d\ude00"}}],"edus":[]}"#.to_vec();
    let uri = "/_matrix/federation/v1/send/txn%2F1?ver=1&a=%24b";
    let hdr = auth(&key, REMOTE, HS1, "PUT", uri, Some(&body));
    let got = tls_request(
        g.inbound.unwrap(),
        &p.ca_path,
        "PUT",
        uri,
        &[
            ("authorization", hdr.clone()),
            ("content-type", "application/json".into()),
        ],
        body.clone(),
    )
    .await;
    assert_eq!(got.status, 200, "{:?}", got.body);
    assert_eq!(got.json(), json!({"pdus": {}}));
    let seen = up.seen();
    assert_eq!(seen.len(), 1);
    assert_eq!(seen[0].method, "PUT");
    assert_eq!(seen[0].path_and_query, uri);
    assert_eq!(&seen[0].body[..], &body[..]);
    assert_eq!(
        seen[0]
            .headers
            .get("authorization")
            .unwrap()
            .to_str()
            .unwrap(),
        hdr
    );
    g.stop().await;
}

#[tokio::test]
async fn unknown_path_is_refused_and_never_forwarded() {
    let p = pki();
    let up = recorder(None, default_answer()).await;
    let g = start_guard(&p, &inbound_toml(&p, up.addr, "")).await;
    for (method, path) in [
        ("GET", "/_matrix/federation/v1/nonexistent"),
        ("GET", "/_synapse/admin/v1/users"),
        ("GET", "/_matrix/client/v3/sync"),
        ("DELETE", "/_matrix/federation/v1/version"),
        ("GET", "/_matrix/federation/v1/../v1/version"),
    ] {
        let got = tls_request(g.inbound.unwrap(), &p.ca_path, method, path, &[], vec![]).await;
        assert_eq!(got.status, 404, "{method} {path}");
        assert_eq!(got.errcode(), "M_UNRECOGNIZED", "{method} {path}");
    }
    assert!(up.seen().is_empty(), "upstream saw {:?}", up.seen());
    let m = metrics(g.admin).await;
    assert!(
        counter(
            &m,
            "grenzwacht_refusals_total",
            &[("reason", "unknown_endpoint")]
        ) >= 5.0,
        "{m}"
    );
    g.stop().await;

    // By config: 403 M_FORBIDDEN instead.
    let g = start_guard(
        &p,
        &inbound_toml(&p, up.addr, "[policy]\nunknown_endpoint = \"forbidden\""),
    )
    .await;
    let got = tls_request(
        g.inbound.unwrap(),
        &p.ca_path,
        "GET",
        "/_matrix/federation/v1/nonexistent",
        &[],
        vec![],
    )
    .await;
    assert_eq!((got.status, got.errcode().as_str()), (403, "M_FORBIDDEN"));
    assert!(up.seen().is_empty());
    g.stop().await;
}

#[tokio::test]
async fn malformed_transactions_get_4xx_and_upstream_sees_nothing() {
    let p = pki();
    let up = recorder(None, default_answer()).await;
    let g = start_guard(&p, &inbound_toml(&p, up.addr, "")).await;
    let key = SigningKey::generate("t1").unwrap();
    let good = txn(vec![pdu(1, "hallo")]);
    let mut deep = String::new();
    for _ in 0..500 {
        deep.push_str("{\"a\":");
    }
    deep.push('1');
    for _ in 0..500 {
        deep.push('}');
    }
    let deep = format!(
        r#"{{"origin":"remote.test","origin_server_ts":1,"pdus":[{{"type":"x","content":{deep}}}],"edus":[]}}"#
    );
    let cases: Vec<(&str, Vec<u8>, u16, &str)> = vec![
        ("truncated", good[..good.len() - 7].to_vec(), 400, "M_NOT_JSON"),
        ("duplicate keys", br#"{"origin":"remote.test","origin":"evil.test","origin_server_ts":1,"pdus":[],"edus":[]}"#.to_vec(), 400, "M_BAD_JSON"),
        ("duplicate keys in a PDU", br#"{"origin":"remote.test","origin_server_ts":1,"pdus":[{"type":"m.room.message","type":"m.room.member"}],"edus":[]}"#.to_vec(), 400, "M_BAD_JSON"),
        // A PDU over 65 536 bytes is withheld on its own (tests/proxy_perpdu.rs).
        // Synapse answers 400 to more than 50 PDUs.
        ("51 PDUs", txn((0..51).map(|i| pdu(i, "hallo")).collect()), 400, "M_TOO_LARGE"),
        ("nesting depth 500", deep.into_bytes(), 400, "M_BAD_JSON"),
        ("not an object", b"[1,2,3]".to_vec(), 400, "M_BAD_JSON"),
    ];
    for (i, (name, body, status, errcode)) in cases.into_iter().enumerate() {
        let uri = format!("/_matrix/federation/v1/send/bad{i}");
        let hdr = auth(&key, REMOTE, HS1, "PUT", &uri, None);
        let got = tls_request(
            g.inbound.unwrap(),
            &p.ca_path,
            "PUT",
            &uri,
            &[("authorization", hdr)],
            body,
        )
        .await;
        assert_eq!(
            (got.status, got.errcode().as_str()),
            (status, errcode),
            "{name}: {:?}",
            String::from_utf8_lossy(&got.body)
        );
    }
    assert!(
        up.seen().is_empty(),
        "upstream saw {} requests",
        up.seen().len()
    );
    g.stop().await;
}

#[tokio::test]
async fn missing_x_matrix_is_401_and_a_broken_one_400() {
    let p = pki();
    let up = recorder(None, default_answer()).await;
    let g = start_guard(&p, &inbound_toml(&p, up.addr, "")).await;
    let body = txn(vec![]);
    // As Synapse answers: no X-Matrix credential 401, a malformed one 400.
    for (hdr, status) in [
        (None, 401),
        (Some("X-Matrix garbage"), 400),
        (Some("Bearer abc"), 401),
    ] {
        let headers: Vec<(&str, String)> = hdr
            .map(|h| vec![("authorization", h.to_string())])
            .unwrap_or_default();
        let got = tls_request(
            g.inbound.unwrap(),
            &p.ca_path,
            "PUT",
            "/_matrix/federation/v1/send/t",
            &headers,
            body.clone(),
        )
        .await;
        assert_eq!(
            (got.status, got.errcode().as_str()),
            (status, "M_UNAUTHORIZED"),
            "{hdr:?}"
        );
    }
    // The key server is unauthenticated by design and passes.
    let got = tls_request(
        g.inbound.unwrap(),
        &p.ca_path,
        "GET",
        "/_matrix/key/v2/server",
        &[],
        vec![],
    )
    .await;
    assert_eq!(got.status, 200);
    assert_eq!(up.seen().len(), 1);
    assert_eq!(up.seen()[0].path_and_query, "/_matrix/key/v2/server");
    g.stop().await;
}

#[tokio::test]
async fn denied_server_and_denied_class_inbound() {
    let p = pki();
    let up = recorder(None, default_answer()).await;
    let g = start_guard(
        &p,
        &inbound_toml(
            &p,
            up.addr,
            "[policy]\ndeny_servers = [\"evil.test\"]\ndeny_inbound_classes = [\"directory\"]",
        ),
    )
    .await;
    let key = SigningKey::generate("t1").unwrap();
    let body = txn(vec![]);
    let uri = "/_matrix/federation/v1/send/t1";
    let hdr = auth(&key, "evil.test", HS1, "PUT", uri, Some(&body));
    let got = tls_request(
        g.inbound.unwrap(),
        &p.ca_path,
        "PUT",
        uri,
        &[("authorization", hdr)],
        body.clone(),
    )
    .await;
    assert_eq!((got.status, got.errcode().as_str()), (403, "M_FORBIDDEN"));
    let uri = "/_matrix/federation/v1/publicRooms";
    let hdr = auth(&key, REMOTE, HS1, "GET", uri, None);
    let got = tls_request(
        g.inbound.unwrap(),
        &p.ca_path,
        "GET",
        uri,
        &[("authorization", hdr)],
        vec![],
    )
    .await;
    assert_eq!((got.status, got.errcode().as_str()), (403, "M_FORBIDDEN"));
    // A request for a server this guard does not protect.
    let uri = "/_matrix/federation/v1/send/t2";
    let hdr = auth(&key, REMOTE, "other.test", "PUT", uri, Some(&body));
    let got = tls_request(
        g.inbound.unwrap(),
        &p.ca_path,
        "PUT",
        uri,
        &[("authorization", hdr)],
        body.clone(),
    )
    .await;
    assert_eq!(got.status, 403);
    assert!(up.seen().is_empty());
    let m = metrics(g.admin).await;
    assert!(
        counter(
            &m,
            "grenzwacht_refusals_total",
            &[("reason", "server_denied")]
        ) >= 1.0
    );
    assert!(
        counter(
            &m,
            "grenzwacht_refusals_total",
            &[("reason", "class_denied")]
        ) >= 1.0
    );
    g.stop().await;
}

#[tokio::test]
async fn malformed_upstream_response_becomes_502() {
    let p = pki();
    let answer: Answer = std::sync::Arc::new(|s: &Seen| {
        if s.path_and_query.contains("/state_ids/") {
            (
                200,
                "application/json",
                br#"{"pdu_ids":["$a"],"pdu_ids":["$b"]}"#.to_vec(),
            )
        } else if s.path_and_query.contains("/event/") {
            (200, "text/html", b"<html>oops</html>".to_vec())
        } else {
            (
                200,
                "application/json",
                br#"{"server":{"name":"Synapse","version":"1"}}"#.to_vec(),
            )
        }
    });
    let up = recorder(None, answer).await;
    let g = start_guard(&p, &inbound_toml(&p, up.addr, "")).await;
    let key = SigningKey::generate("t1").unwrap();
    for uri in [
        "/_matrix/federation/v1/state_ids/!r:hs1.test?event_id=%24e",
        "/_matrix/federation/v1/event/%24e",
    ] {
        let hdr = auth(&key, REMOTE, HS1, "GET", uri, None);
        let got = tls_request(
            g.inbound.unwrap(),
            &p.ca_path,
            "GET",
            uri,
            &[("authorization", hdr)],
            vec![],
        )
        .await;
        assert_eq!(got.status, 502, "{uri}");
        assert_eq!(got.errcode(), "M_UNKNOWN");
        assert!(!String::from_utf8_lossy(&got.body).contains("oops"));
    }
    let got = tls_request(
        g.inbound.unwrap(),
        &p.ca_path,
        "GET",
        "/_matrix/federation/v1/version",
        &[],
        vec![],
    )
    .await;
    assert_eq!(got.status, 200);
    assert_eq!(got.json()["server"]["name"], "Synapse");
    g.stop().await;
}

fn outbound_toml(p: &Pki, remote: std::net::SocketAddr, extra: &str) -> String {
    format!(
        r#"
[admin]
listen = "127.0.0.1:0"
[[protected]]
server_name = "{HS1}"
cert = "{cert}"
key = "{key}"
upstream = "http://127.0.0.1:9"
[outbound]
proxy_listen = "127.0.0.1:0"
connect_listen = "127.0.0.1:0"
allowed_clients = ["127.0.0.0/8"]
proxy_secret = "s3cret"
interception_ca_dir = "{ica}"
roots = ["{ca}"]
[[route]]
server_name = "{REMOTE}"
address = "{remote}"
tls_name = "127.0.0.1"
[discovery]
enabled = false
{extra}
"#,
        cert = p.cert.display(),
        key = p.key.display(),
        ica = p.dir.path().join("ica").display(),
        ca = p.ca_path.display(),
    )
}

fn init_ica(p: &Pki) -> std::path::PathBuf {
    let dir = p.dir.path().join("ica");
    if !dir.join("ca.crt").exists() {
        grenzwacht::proxy::ca::InterceptionCa::init(&dir).unwrap();
    }
    dir.join("ca.crt")
}

#[tokio::test]
async fn synapse_proxy_protocol_forwards_to_the_routed_destination() {
    let p = pki();
    init_ica(&p);
    let remote = recorder(Some(acceptor(&p)), default_answer()).await;
    let key = SigningKey::generate("hs1").unwrap();
    // hs1's own listener serves its keys: the guard verifies what it forwards as hs1.
    let hs1 = recorder(None, key_server_answer(HS1, &key)).await;
    let toml = outbound_toml(&p, remote.addr, "[policy]\ndeny_servers = [\"evil.test\"]")
        .replace("http://127.0.0.1:9", &format!("http://{}", hs1.addr));
    let g = start_guard(&p, &toml).await;
    let body = txn_from(HS1, vec![pdu(1, "ausgehend")]);
    let path = "/_matrix/federation/v1/send/out1";
    let hdr = auth(&key, HS1, REMOTE, "PUT", path, Some(&body));
    let target = format!("matrix-federation://{REMOTE}{path}");
    let ok_headers = vec![
        ("authorization", hdr.clone()),
        ("proxy-authorization", "Bearer s3cret".to_string()),
    ];
    let got = plain_request(g.proxy.unwrap(), "PUT", &target, &ok_headers, body.clone()).await;
    assert_eq!(got.status, 200, "{:?}", String::from_utf8_lossy(&got.body));
    let seen = remote.seen();
    assert_eq!(seen.len(), 1);
    assert_eq!(seen[0].path_and_query, path);
    assert_eq!(&seen[0].body[..], &body[..]);
    assert!(
        seen[0].headers.get("proxy-authorization").is_none(),
        "proxy credentials must not leave the guard"
    );
    assert_eq!(
        seen[0]
            .headers
            .get("authorization")
            .unwrap()
            .to_str()
            .unwrap(),
        hdr
    );

    // Wrong or missing secret.
    for h in [None, Some("Bearer nope")] {
        let mut hs = vec![("authorization", hdr.clone())];
        if let Some(h) = h {
            hs.push(("proxy-authorization", h.to_string()));
        }
        let got = plain_request(g.proxy.unwrap(), "PUT", &target, &hs, body.clone()).await;
        assert_eq!(got.status, 401);
    }
    // Denied destination.
    let hdr_evil = auth(&key, HS1, "evil.test", "PUT", path, Some(&body));
    let got = plain_request(
        g.proxy.unwrap(),
        "PUT",
        &format!("matrix-federation://evil.test{path}"),
        &[
            ("authorization", hdr_evil),
            ("proxy-authorization", "Bearer s3cret".into()),
        ],
        body.clone(),
    )
    .await;
    assert_eq!((got.status, got.errcode().as_str()), (403, "M_FORBIDDEN"));
    // No route (discovery disabled, name not in the table).
    let hdr_x = auth(&key, HS1, "unknown.test", "PUT", path, Some(&body));
    let got = plain_request(
        g.proxy.unwrap(),
        "PUT",
        &format!("matrix-federation://unknown.test{path}"),
        &[
            ("authorization", hdr_x),
            ("proxy-authorization", "Bearer s3cret".into()),
        ],
        body.clone(),
    )
    .await;
    assert_eq!(got.status, 502);
    // A forged origin: the protected homeserver may only speak for itself.
    let hdr_forged = auth(&key, "someone.else", REMOTE, "PUT", path, Some(&body));
    let got = plain_request(
        g.proxy.unwrap(),
        "PUT",
        &target,
        &[
            ("authorization", hdr_forged),
            ("proxy-authorization", "Bearer s3cret".into()),
        ],
        body.clone(),
    )
    .await;
    assert_eq!(got.status, 403);
    assert_eq!(remote.seen().len(), 1);
    g.stop().await;
}

/// The guard never signs what the protected server did not: an outbound request whose X-Matrix
/// signature does not verify with hs1's own key (served by hs1's listener) is refused with 401
/// and nothing reaches the destination — also when it carries an EDU a rule would drop (the
/// guard would otherwise re-sign the modified transaction as hs1).
#[tokio::test]
async fn forged_outbound_requests_are_refused_and_never_resigned() {
    let p = pki();
    init_ica(&p);
    let remote = recorder(Some(acceptor(&p)), default_answer()).await;
    let key = SigningKey::generate("hs1").unwrap();
    let hs1 = recorder(None, key_server_answer(HS1, &key)).await;
    let rule = "[[rule]]\nid = \"drop-presence\"\nkeywords = [\"Urlaub\"]\naction = \"drop\"\n";
    let toml = outbound_toml(&p, remote.addr, rule)
        .replace("http://127.0.0.1:9", &format!("http://{}", hs1.addr));
    let g = start_guard(&p, &toml).await;
    let forger = SigningKey::generate("hs1").unwrap();
    let mut body: serde_json::Value =
        serde_json::from_slice(&txn_from(HS1, vec![pdu(1, "ausgehend")])).unwrap();
    body["edus"] = json!([
        {"edu_type": "m.presence", "content": {"push": [{"user_id": format!("@a:{HS1}"), "presence": "online", "status_msg": "im Urlaub"}]}},
        {"edu_type": "m.direct_to_device", "content": {"sender": format!("@a:{HS1}"), "type": "m.room_key_request", "message_id": "m1",
            "messages": {format!("@bob:{REMOTE}"): {"DEV": {"action": "request"}}}}}
    ]);
    let body = serde_json::to_vec(&body).unwrap();
    let path = "/_matrix/federation/v1/send/forged1";
    let target = format!("matrix-federation://{REMOTE}{path}");
    // Forged with a key hs1 does not have: with the EDU a rule drops, and plain (which would
    // otherwise be forwarded unchanged).
    let plain = txn_from(HS1, vec![pdu(2, "unverändert")]);
    for b in [&body, &plain] {
        let hdr = auth(&forger, HS1, REMOTE, "PUT", path, Some(b));
        let headers = vec![
            ("authorization", hdr),
            ("proxy-authorization", "Bearer s3cret".to_string()),
        ];
        let got = plain_request(g.proxy.unwrap(), "PUT", &target, &headers, b.clone()).await;
        assert_eq!(got.status, 401, "{:?}", String::from_utf8_lossy(&got.body));
    }
    // A signature over other content (the body changed after signing) is forged too.
    let hdr = auth(&key, HS1, REMOTE, "PUT", path, Some(br#"{"other":true}"#));
    let headers = vec![
        ("authorization", hdr),
        ("proxy-authorization", "Bearer s3cret".to_string()),
    ];
    let got = plain_request(g.proxy.unwrap(), "PUT", &target, &headers, body.clone()).await;
    assert_eq!(got.status, 401, "{:?}", String::from_utf8_lossy(&got.body));
    assert!(
        remote.seen().is_empty(),
        "nothing forged reached the destination"
    );
    assert!(
        hs1.seen()
            .iter()
            .all(|s| s.path_and_query == "/_matrix/key/v2/server"),
        "the guard only asked hs1 for its keys"
    );
    let m = metrics(g.admin).await;
    assert!(
        counter(
            &m,
            "grenzwacht_refusals_total",
            &[("direction", "outbound"), ("reason", "auth")]
        ) >= 3.0,
        "{m}"
    );
    // Genuinely signed by hs1, but the body names another origin: the receiver would attribute
    // its EDUs to that server. Refused before anything is forwarded.
    let other = txn_from("third.test", vec![pdu(3, "unverändert")]);
    let hdr = auth(&key, HS1, REMOTE, "PUT", path, Some(&other));
    let headers = vec![
        ("authorization", hdr),
        ("proxy-authorization", "Bearer s3cret".to_string()),
    ];
    let got = plain_request(g.proxy.unwrap(), "PUT", &target, &headers, other.clone()).await;
    assert_eq!(got.status, 403, "{:?}", String::from_utf8_lossy(&got.body));
    assert!(remote.seen().is_empty());
    // The genuine signature over the plain transaction passes.
    let hdr = auth(&key, HS1, REMOTE, "PUT", path, Some(&plain));
    let headers = vec![
        ("authorization", hdr),
        ("proxy-authorization", "Bearer s3cret".to_string()),
    ];
    let got = plain_request(g.proxy.unwrap(), "PUT", &target, &headers, plain.clone()).await;
    assert_eq!(got.status, 200, "{:?}", String::from_utf8_lossy(&got.body));
    assert_eq!(remote.seen().len(), 1);
    g.stop().await;
}

#[tokio::test]
async fn connect_tunnel_is_intercepted_and_forwarded() {
    let p = pki();
    let ica = init_ica(&p);
    let remote = recorder(Some(acceptor(&p)), default_answer()).await;
    let key = SigningKey::generate("hs1").unwrap();
    let hs1 = recorder(None, key_server_answer(HS1, &key)).await;
    let toml = outbound_toml(&p, remote.addr, "[policy]\ndeny_servers = [\"evil.test\"]")
        .replace("http://127.0.0.1:9", &format!("http://{}", hs1.addr));
    let g = start_guard(&p, &toml).await;

    // Refused CONNECT targets get 403 before any tunnel exists.
    let got = plain_request(
        g.connect.unwrap(),
        "CONNECT",
        "evil.test:8448",
        &[
            ("host", "evil.test:8448".into()),
            ("proxy-authorization", "Bearer s3cret".into()),
        ],
        vec![],
    )
    .await;
    assert_eq!(got.status, 403);
    // Missing proxy credentials: 407.
    let got = plain_request(
        g.connect.unwrap(),
        "CONNECT",
        "remote.test:8448",
        &[("host", "remote.test:8448".into())],
        vec![],
    )
    .await;
    assert_eq!(got.status, 407);

    // A real tunnel: CONNECT, then TLS against the interception CA, then a federation request.
    let tcp = tokio::net::TcpStream::connect(g.connect.unwrap())
        .await
        .unwrap();
    let (mut sender, conn) =
        hyper::client::conn::http1::handshake(hyper_util::rt::TokioIo::new(tcp))
            .await
            .unwrap();
    let conn = tokio::spawn(conn.with_upgrades());
    let req = http::Request::builder()
        .method("CONNECT")
        .uri("remote.test:8448")
        .header("host", "remote.test:8448")
        .header("proxy-authorization", "Basic dXNlcjpzM2NyZXQ=") // user:s3cret
        .body(http_body_util::Full::new(bytes::Bytes::new()))
        .unwrap();
    let resp = sender.send_request(req).await.unwrap();
    assert_eq!(resp.status(), 200);
    let upgraded = hyper::upgrade::on(resp).await.unwrap();
    drop(conn);
    let cfg = grenzwacht::proxy::tls::client_config(&[ica]).unwrap();
    let tls = tokio_rustls::TlsConnector::from(cfg)
        .connect(
            rustls::pki_types::ServerName::try_from("remote.test").unwrap(),
            hyper_util::rt::TokioIo::new(upgraded),
        )
        .await
        .expect("leaf minted for the CONNECT target, signed by the interception CA");
    let path = "/_matrix/federation/v1/query/profile?user_id=%40bob%3Aremote.test";
    let hdr = auth(&key, HS1, REMOTE, "GET", path, None);
    let got = send_over(
        hyper_util::rt::TokioIo::new(tls),
        "GET",
        path,
        &[("authorization", hdr), ("host", REMOTE.into())],
        vec![],
    )
    .await;
    assert_eq!(got.status, 200, "{:?}", String::from_utf8_lossy(&got.body));
    assert_eq!(remote.seen().len(), 1);
    assert_eq!(remote.seen()[0].path_and_query, path);
    let m = metrics(g.admin).await;
    assert!(
        counter(
            &m,
            "grenzwacht_requests_total",
            &[
                ("direction", "outbound"),
                ("endpoint", "query_profile"),
                ("status", "200")
            ]
        ) >= 1.0,
        "{m}"
    );
    g.stop().await;
}

#[tokio::test]
async fn disallowed_client_address_is_dropped() {
    let p = pki();
    init_ica(&p);
    let remote = recorder(Some(acceptor(&p)), default_answer()).await;
    let toml = outbound_toml(&p, remote.addr, "").replace(
        "allowed_clients = [\"127.0.0.0/8\"]",
        "allowed_clients = [\"127.0.0.2/32\"]",
    );
    let g = start_guard(&p, &toml).await;
    let tcp = tokio::net::TcpStream::connect(g.proxy.unwrap())
        .await
        .unwrap();
    let r = hyper::client::conn::http1::handshake::<_, http_body_util::Full<bytes::Bytes>>(
        hyper_util::rt::TokioIo::new(tcp),
    )
    .await;
    let (mut sender, conn) = r.unwrap();
    tokio::spawn(conn);
    let req = http::Request::builder()
        .method("GET")
        .uri("matrix-federation://remote.test/_matrix/federation/v1/version")
        .header("proxy-authorization", "Bearer s3cret")
        .body(http_body_util::Full::new(bytes::Bytes::new()))
        .unwrap();
    assert!(
        sender.send_request(req).await.is_err(),
        "connection from 127.0.0.1 must be closed"
    );
    assert!(remote.seen().is_empty());
    g.stop().await;
}

/// Synapse (Twisted) sends `CONNECT host:port HTTP/1.0` with no Host header and no credentials
/// unless the proxy URL has user:pass; IP-literal targets get no SNI.
#[tokio::test]
async fn synapse_style_http10_connect_without_sni() {
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    let p = pki();
    let ica = init_ica(&p);
    let remote = recorder(Some(acceptor(&p)), default_answer()).await;
    // No secret, explicitly allowed: address allow-list only.
    let toml = outbound_toml(&p, remote.addr, "")
        .replace("proxy_listen = \"127.0.0.1:0\"\n", "")
        .replace(
            "proxy_secret = \"s3cret\"\n",
            "allow_unauthenticated_connect = true\n",
        );
    let toml = toml.replace(
        &format!("server_name = \"{REMOTE}\""),
        &format!("server_name = \"127.0.0.1:{}\"", remote.addr.port()),
    );
    let g = start_guard(&p, &toml).await;
    let dest = format!("127.0.0.1:{}", remote.addr.port());
    let mut tcp = tokio::net::TcpStream::connect(g.connect.unwrap())
        .await
        .unwrap();
    tcp.write_all(format!("CONNECT {dest} HTTP/1.0\r\n\r\n").as_bytes())
        .await
        .unwrap();
    let mut head = Vec::new();
    let mut b = [0u8; 1];
    while !head.ends_with(b"\r\n\r\n") {
        assert_eq!(
            tcp.read(&mut b).await.unwrap(),
            1,
            "connection closed during CONNECT response"
        );
        head.push(b[0]);
    }
    let head = String::from_utf8_lossy(&head).to_string();
    assert!(
        head.starts_with("HTTP/1.1 200") || head.starts_with("HTTP/1.0 200"),
        "{head}"
    );
    let cfg = grenzwacht::proxy::tls::client_config(&[ica]).unwrap();
    // An IP literal as server name: rustls sends no SNI for it, like Twisted.
    let tls = tokio_rustls::TlsConnector::from(cfg)
        .connect(
            rustls::pki_types::ServerName::try_from("127.0.0.1").unwrap(),
            tcp,
        )
        .await
        .expect("leaf with IP SAN for the CONNECT target");
    let key = SigningKey::generate("hs1").unwrap();
    let path = "/_matrix/federation/v1/version";
    let hdr = auth(&key, HS1, &dest, "GET", path, None);
    let got = send_over(
        hyper_util::rt::TokioIo::new(tls),
        "GET",
        path,
        &[("authorization", hdr), ("host", dest.clone())],
        vec![],
    )
    .await;
    assert_eq!(got.status, 200, "{:?}", String::from_utf8_lossy(&got.body));
    assert_eq!(remote.seen().len(), 1);
    g.stop().await;
}

/// Inbound redaction in transit with re-signing by the guard key, and idempotent retries.
#[tokio::test]
async fn inbound_redaction_is_resigned_and_retries_get_the_first_decision() {
    let p = pki();
    let up = recorder(None, default_answer()).await;
    let (guard_key, gk_path) = guard_key_file(&p);
    let extra = format!(
        "[keys]\nverify_pdus = false\nguard_key = \"{}\"\n[[rule]]\nid = \"geheim\"\nkeywords = [\"GEHEIM\"]\naction = \"redact\"\n",
        gk_path.display()
    );
    let g = start_guard(&p, &inbound_toml(&p, up.addr, &extra)).await;
    let key = SigningKey::generate("r1").unwrap();
    let send = |txn: &str, body: Vec<u8>| {
        let uri = format!("/_matrix/federation/v1/send/{txn}");
        let hdr = auth(&key, REMOTE, HS1, "PUT", &uri, Some(&body));
        let (addr, ca) = (g.inbound.unwrap(), p.ca_path.clone());
        async move { tls_request(addr, &ca, "PUT", &uri, &[("authorization", hdr)], body).await }
    };
    let room = "!r:remote.test";
    let mut msg = pdu(2, "Lage: GEHEIM");
    msg["room_id"] = json!(room);

    // Room version unknown (and no admin API to ask): the marked event cannot be redacted
    // correctly, so nothing passes; 503, the sender retries.
    let got = send("t0", txn(vec![msg.clone()])).await;
    assert_eq!(
        (got.status, got.errcode().as_str()),
        (503, "M_UNKNOWN"),
        "{:?}",
        got.body
    );
    assert!(up.seen().is_empty());

    // The guard learns the room version from the create event.
    let create = json!({
        "auth_events": [], "prev_events": [], "depth": 1, "hashes": {"sha256": "x"}, "origin_server_ts": 1,
        "room_id": room, "sender": "@a:remote.test", "type": "m.room.create", "state_key": "",
        "content": {"creator": "@a:remote.test", "room_version": "10"}, "signatures": {}
    });
    assert_eq!(send("t1", txn(vec![create])).await.status, 200);

    // t0 was refused only for the unknown room version: its retry now passes, redacted.
    let got = send("t0", txn(vec![msg.clone()])).await;
    assert_eq!(got.status, 200, "{:?}", String::from_utf8_lossy(&got.body));
    let m = metrics(g.admin).await;
    assert!(
        counter(
            &m,
            "grenzwacht_refusals_total",
            &[("reason", "unknown_room_version")]
        ) >= 1.0
    );

    let clean = pdu(3, "harmlos");
    let body = txn(vec![clean.clone(), msg.clone()]);
    let got = send("t2", body.clone()).await;
    assert_eq!(got.status, 200, "{:?}", String::from_utf8_lossy(&got.body));
    let seen = up.seen();
    let fwd = seen.last().unwrap();
    let v: serde_json::Value = serde_json::from_slice(&fwd.body).unwrap();
    assert_eq!(v["pdus"].as_array().unwrap().len(), 2, "no PDU removed");
    assert_eq!(
        v["pdus"][0]["content"]["body"], "harmlos",
        "the clean PDU is untouched"
    );
    assert_eq!(
        v["pdus"][1]["content"],
        json!({}),
        "the marked PDU is redacted"
    );
    assert_eq!(v["pdus"][1]["type"], "m.room.message");
    assert!(!String::from_utf8_lossy(&fwd.body).contains("GEHEIM"));
    // Re-signed by the guard key, as the origin; the signature verifies over the new body.
    let hdr = fwd
        .headers
        .get("authorization")
        .unwrap()
        .to_str()
        .unwrap()
        .to_string();
    let x = xmatrix::XMatrix::parse(&hdr).unwrap();
    assert_eq!(x.origin.as_str(), REMOTE);
    assert_eq!(x.key.as_str(), "ed25519:gw1");
    let raw: Box<serde_json::value::RawValue> = serde_json::from_slice(&fwd.body).unwrap();
    xmatrix::verify_request(
        &x,
        "PUT",
        "/_matrix/federation/v1/send/t2",
        Some(&raw),
        &guard_key.public_key(),
    )
    .expect("guard signature verifies");

    // The retry gets exactly the first decision: same bytes, same header.
    let got = send("t2", body.clone()).await;
    assert_eq!(got.status, 200);
    let seen = up.seen();
    let again = seen.last().unwrap();
    assert_eq!(again.body, fwd.body);
    assert_eq!(
        again.headers.get("authorization"),
        fwd.headers.get("authorization")
    );
    let n = seen.len();

    // The same transaction id with other content is refused.
    let got = send("t2", txn(vec![clean])).await;
    assert_eq!(
        (got.status, got.errcode().as_str()),
        (400, "M_INVALID_PARAM")
    );
    assert_eq!(up.seen().len(), n);
    g.stop().await;
}

/// A PDU of room version 10, hashed and signed by `key` as `remote.test`.
fn signed_pdu(key: &SigningKey, v: serde_json::Value) -> serde_json::Value {
    let mut obj: ruma::CanonicalJsonObject = serde_json::from_value(v).unwrap();
    let rules = ruma::RoomVersionId::V10.rules().unwrap();
    ruma::signatures::hash_and_sign_event(REMOTE, key.key_pair(), &mut obj, &rules.redaction)
        .unwrap();
    serde_json::to_value(obj).unwrap()
}

/// The guard verifies the signatures and content hashes of PDUs entering the protected side,
/// with keys it fetches itself over the outbound path: valid PDUs pass unchanged, a tampered
/// one (hash mismatch) and a forged one (bad signature) cross redacted — no PDU is removed —
/// and a forged invite (single-event endpoint) is refused. Counted per outcome.
#[tokio::test]
async fn inbound_pdus_are_verified_by_the_guard_and_it_serves_as_notary() {
    let p = pki();
    let remote_key = SigningKey::generate("r1").unwrap();
    // The remote's key server, reached through the guard's route table over verified TLS.
    let key_object = {
        let now = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .unwrap()
            .as_millis() as u64;
        let mut obj: ruma::CanonicalJsonObject = serde_json::from_value(json!({
            "server_name": REMOTE, "valid_until_ts": now + 86_400_000, "old_verify_keys": {},
            "verify_keys": {"ed25519:r1": {"key": remote_key.public_key_base64()}}
        }))
        .unwrap();
        remote_key.sign_json(REMOTE, &mut obj).unwrap();
        serde_json::to_vec(&obj).unwrap()
    };
    let key_answer: Answer = std::sync::Arc::new(move |s: &Seen| {
        if s.path_and_query == "/_matrix/key/v2/server" {
            (200, "application/json", key_object.clone())
        } else {
            (
                404,
                "application/json",
                br#"{"errcode":"M_UNRECOGNIZED","error":"no"}"#.to_vec(),
            )
        }
    });
    let key_server = recorder(Some(acceptor(&p)), key_answer).await;
    let up = recorder(None, default_answer()).await;
    let (guard_key, gk_path) = guard_key_file(&p);
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
notary_name = "notary.test"
"#,
        gk = gk_path.display(),
        cert = p.cert.display(),
        key = p.key.display(),
        upstream = up.addr,
        ca = p.ca_path.display(),
        ks = key_server.addr,
    );
    let g = start_guard(&p, &toml).await;
    let send = |uri: String, body: Vec<u8>| {
        let hdr = auth(&remote_key, REMOTE, HS1, "PUT", &uri, Some(&body));
        let (addr, ca) = (g.inbound.unwrap(), p.ca_path.clone());
        async move { tls_request(addr, &ca, "PUT", &uri, &[("authorization", hdr)], body).await }
    };
    let room = "!v:remote.test";
    let event = |depth: u64, kind: &str, content: serde_json::Value| {
        json!({
            "auth_events": [], "prev_events": [], "depth": depth, "origin_server_ts": 1_700_000_000_000u64,
            "room_id": room, "sender": "@a:remote.test", "type": kind, "content": content
        })
    };
    let mut create = event(
        1,
        "m.room.create",
        json!({"creator": "@a:remote.test", "room_version": "10"}),
    );
    create["state_key"] = json!("");
    let create = signed_pdu(&remote_key, create);
    let good = signed_pdu(
        &remote_key,
        event(
            2,
            "m.room.message",
            json!({"body": "valid", "msgtype": "m.text"}),
        ),
    );
    let mut tampered = signed_pdu(
        &remote_key,
        event(
            3,
            "m.room.message",
            json!({"body": "original", "msgtype": "m.text"}),
        ),
    );
    tampered["content"]["body"] = json!("changed on the way");
    let mut forged = signed_pdu(
        &remote_key,
        event(
            4,
            "m.room.message",
            json!({"body": "forged", "msgtype": "m.text"}),
        ),
    );
    forged["signatures"][REMOTE]["ed25519:r1"] =
        json!(SigningKey::generate("r1").unwrap().sign_base64(b"other"));

    let got = send(
        "/_matrix/federation/v1/send/v1".into(),
        txn(vec![create, good.clone(), tampered, forged.clone()]),
    )
    .await;
    assert_eq!(got.status, 200, "{:?}", String::from_utf8_lossy(&got.body));
    let seen = up.seen();
    assert_eq!(seen.len(), 1);
    let v: serde_json::Value = serde_json::from_slice(&seen[0].body).unwrap();
    let pdus = v["pdus"].as_array().unwrap();
    assert_eq!(pdus.len(), 4, "no PDU removed");
    assert_eq!(pdus[1], good, "a valid PDU passes unchanged");
    assert_eq!(
        pdus[2]["content"],
        json!({}),
        "a PDU whose content hash fails crosses redacted"
    );
    assert_eq!(
        pdus[3]["content"],
        json!({}),
        "a PDU whose signature fails crosses redacted"
    );
    assert!(!String::from_utf8_lossy(&seen[0].body).contains("changed on the way"));
    let x = xmatrix::XMatrix::parse(
        seen[0]
            .headers
            .get("authorization")
            .unwrap()
            .to_str()
            .unwrap(),
    )
    .unwrap();
    let raw: Box<serde_json::value::RawValue> = serde_json::from_slice(&seen[0].body).unwrap();
    xmatrix::verify_request(
        &x,
        "PUT",
        "/_matrix/federation/v1/send/v1",
        Some(&raw),
        &guard_key.public_key(),
    )
    .expect("re-signed by the guard key");
    // The key server was asked by the guard itself.
    assert!(key_server
        .seen()
        .iter()
        .any(|s| s.path_and_query == "/_matrix/key/v2/server"));

    // A forged invite (single-event endpoint) is refused and never forwarded.
    let mut invite = forged.clone();
    invite["type"] = json!("m.room.member");
    invite["state_key"] = json!("@b:hs1.test");
    invite["content"] = json!({"membership": "invite"});
    let body = serde_json::to_vec(
        &json!({"event": invite, "room_version": "10", "invite_room_state": []}),
    )
    .unwrap();
    let got = send(
        "/_matrix/federation/v2/invite/%21v%3Aremote.test/%24x".into(),
        body,
    )
    .await;
    assert_eq!(
        (got.status, got.errcode().as_str()),
        (403, "M_FORBIDDEN"),
        "{:?}",
        String::from_utf8_lossy(&got.body)
    );
    assert_eq!(up.seen().len(), 1);

    // A PDU in a room whose version the guard does not know cannot be verified: refused, for
    // now (no admin API to ask the protected homeserver): 503, the sender retries.
    let mut stranger = event(
        5,
        "m.room.message",
        json!({"body": "x", "msgtype": "m.text"}),
    );
    stranger["room_id"] = json!("!unknown:remote.test");
    let stranger = signed_pdu(&remote_key, stranger);
    let got = send("/_matrix/federation/v1/send/v2".into(), txn(vec![stranger])).await;
    assert_eq!((got.status, got.errcode().as_str()), (503, "M_UNKNOWN"));
    assert_eq!(up.seen().len(), 1);

    // A v1 invite is for a room of version 1 or 2: a room the guard has not seen is judged as
    // version 1 and the (genuine) invite is forwarded instead of refused.
    let mut old_invite = event(6, "m.room.member", json!({"membership": "invite"}));
    old_invite["room_id"] = json!("!old:remote.test");
    old_invite["state_key"] = json!("@b:hs1.test");
    old_invite["event_id"] = json!("$inv1:remote.test");
    let old_invite = signed_pdu(&remote_key, old_invite);
    let got = send(
        "/_matrix/federation/v1/invite/%21old%3Aremote.test/%24inv1%3Aremote.test".into(),
        serde_json::to_vec(&old_invite).unwrap(),
    )
    .await;
    assert_ne!(got.status, 403, "{:?}", String::from_utf8_lossy(&got.body));
    assert_eq!(up.seen().len(), 2, "the v1 invite reached hs1");
    assert!(up.seen()[1]
        .path_and_query
        .starts_with("/_matrix/federation/v1/invite/"));

    let m = metrics(g.admin).await;
    // Metrics are process-wide: other tests of this binary verify PDUs too (at least here).
    assert!(
        counter(
            &m,
            "grenzwacht_pdu_checks_total",
            &[("outcome", "verified")]
        ) >= 2.0
    );
    assert_eq!(
        counter(
            &m,
            "grenzwacht_pdu_checks_total",
            &[("outcome", "hash_mismatch")]
        ),
        1.0
    );
    assert!(
        counter(
            &m,
            "grenzwacht_pdu_checks_total",
            &[("outcome", "bad_signature")]
        ) >= 2.0
    );
    assert_eq!(
        counter(
            &m,
            "grenzwacht_pdu_checks_total",
            &[("outcome", "unknown_room_version")]
        ),
        1.0
    );

    // The guard as notary: a protected server's key query to the notary name is answered by
    // the guard (keys fetched from the server itself), attested and signed as the notary.
    let query =
        serde_json::to_vec(&json!({"server_keys": {REMOTE: {}, "unreachable.test": {}}})).unwrap();
    let proxy_auth = ("proxy-authorization", "Bearer s3cret".to_string());
    let got = plain_request(
        g.proxy.unwrap(),
        "POST",
        "matrix-federation://notary.test/_matrix/key/v2/query",
        std::slice::from_ref(&proxy_auth),
        query,
    )
    .await;
    assert_eq!(got.status, 200, "{:?}", String::from_utf8_lossy(&got.body));
    let answer = got.json();
    let objects = answer["server_keys"].as_array().unwrap();
    assert_eq!(
        objects.len(),
        1,
        "only the reachable server's keys: {answer}"
    );
    let obj = &objects[0];
    assert_eq!(obj["server_name"], REMOTE);
    assert_eq!(
        obj["verify_keys"]["ed25519:r1"]["key"],
        remote_key.public_key_base64(),
        "the server's real key"
    );
    assert_eq!(
        obj["verify_keys"]["ed25519:gw1"]["key"],
        guard_key.public_key_base64(),
        "the attested guard key"
    );
    assert!(
        obj["signatures"][REMOTE].get("ed25519:r1").is_none(),
        "the original signature is dropped"
    );
    let canonical: ruma::CanonicalJsonObject = serde_json::from_value(obj.clone()).unwrap();
    for signer in [REMOTE, "notary.test"] {
        let mut keys = ruma::signatures::PublicKeyMap::new();
        let mut set = ruma::signatures::PublicKeySet::new();
        set.insert(
            "ed25519:gw1".into(),
            ruma::serde::Base64::new(guard_key.public_key().to_vec()),
        );
        keys.insert(signer.to_string(), set);
        let mut only: ruma::CanonicalJsonObject = canonical.clone();
        let sigs = only.get_mut("signatures").unwrap();
        if let ruma::CanonicalJsonValue::Object(m) = sigs {
            m.retain(|k, _| k == signer);
        }
        ruma::signatures::verify_json(&keys, &only)
            .unwrap_or_else(|e| panic!("{signer} signature: {e}"));
    }
    // The notary name serves key queries only.
    let got = plain_request(
        g.proxy.unwrap(),
        "GET",
        "matrix-federation://notary.test/_matrix/federation/v1/version",
        &[proxy_auth],
        vec![],
    )
    .await;
    assert_eq!(got.status, 404);
    g.stop().await;
}

const GEHEIM_RULE: &str =
    "[[rule]]\nid = \"geheim\"\nkeywords = [\"GEHEIM\"]\naction = \"redact\"\n";

/// A profile answer leaving the protected side loses the marked display name; the rest of the
/// profile, and a clean profile, pass.
#[tokio::test]
async fn profile_response_released_without_the_marked_displayname() {
    let p = pki();
    let answer: Answer = std::sync::Arc::new(|s: &Seen| {
        let body = if s.path_and_query.contains("carol") {
            json!({"displayname": "Carol (GEHEIM)", "avatar_url": "mxc://hs1.test/carol"})
        } else {
            json!({"displayname": "Dave", "avatar_url": "mxc://hs1.test/dave"})
        };
        (200, "application/json", serde_json::to_vec(&body).unwrap())
    });
    let up = recorder(None, answer).await;
    let g = start_guard(&p, &inbound_toml(&p, up.addr, GEHEIM_RULE)).await;
    let key = SigningKey::generate("r1").unwrap();
    let get = |uri: String| {
        let hdr = auth(&key, REMOTE, HS1, "GET", &uri, None);
        let (addr, ca) = (g.inbound.unwrap(), p.ca_path.clone());
        async move { tls_request(addr, &ca, "GET", &uri, &[("authorization", hdr)], vec![]).await }
    };
    let got = get("/_matrix/federation/v1/query/profile?user_id=%40carol%3Ahs1.test".into()).await;
    assert_eq!(got.status, 200, "{:?}", String::from_utf8_lossy(&got.body));
    assert_eq!(
        got.json(),
        json!({"avatar_url": "mxc://hs1.test/carol"}),
        "display name removed, avatar kept"
    );
    // The generic query with a percent-encoded query type is the same profile query to Synapse.
    let got =
        get("/_matrix/federation/v1/query/profil%65?user_id=%40carol%3Ahs1.test".into()).await;
    assert_eq!(got.status, 200);
    assert_eq!(got.json(), json!({"avatar_url": "mxc://hs1.test/carol"}));
    // Positive control: a clean profile is released as it came.
    let got = get("/_matrix/federation/v1/query/profile?user_id=%40dave%3Ahs1.test".into()).await;
    assert_eq!(
        got.json(),
        json!({"displayname": "Dave", "avatar_url": "mxc://hs1.test/dave"})
    );
    assert_eq!(up.seen().len(), 3);
    g.stop().await;
}

/// A to-device EDU to two devices, one message marked: the forwarded transaction carries only
/// the clean device's message, the PDU untouched, re-signed with the guard key. All messages
/// marked: the EDU is gone, the rest of the transaction goes on.
#[tokio::test]
async fn to_device_message_removed_for_one_device_and_resigned() {
    let p = pki();
    let up = recorder(None, default_answer()).await;
    let (guard_key, gk_path) = guard_key_file(&p);
    let extra = format!(
        "[keys]\nverify_pdus = false\nguard_key = \"{}\"\n{GEHEIM_RULE}",
        gk_path.display()
    );
    let g = start_guard(&p, &inbound_toml(&p, up.addr, &extra)).await;
    let key = SigningKey::generate("r1").unwrap();
    let send = |txn: &str, body: Vec<u8>| {
        let uri = format!("/_matrix/federation/v1/send/{txn}");
        let hdr = auth(&key, REMOTE, HS1, "PUT", &uri, Some(&body));
        let (addr, ca) = (g.inbound.unwrap(), p.ca_path.clone());
        async move { tls_request(addr, &ca, "PUT", &uri, &[("authorization", hdr)], body).await }
    };
    let to_device = |messages: serde_json::Value| json!({"edu_type": "m.direct_to_device", "content": {"sender": "@a:remote.test", "type": "org.example.note", "message_id": "m1", "messages": messages}});
    let typing = json!({"edu_type": "m.typing", "content": {"room_id": "!r:remote.test", "user_id": "@a:remote.test", "typing": true}});
    let clean_pdu = pdu(1, "harmlos");
    let body = serde_json::to_vec(&json!({
        "origin": REMOTE, "origin_server_ts": 1, "pdus": [clean_pdu],
        "edus": [typing, to_device(json!({"@bob:hs1.test": {"PHONE": {"text": "Treffpunkt GEHEIM"}, "LAPTOP": {"text": "Treffpunkt 10 Uhr"}}}))]
    }))
    .unwrap();
    let got = send("td1", body.clone()).await;
    assert_eq!(got.status, 200, "{:?}", String::from_utf8_lossy(&got.body));
    let seen = up.seen();
    let fwd = seen.last().unwrap();
    let v: serde_json::Value = serde_json::from_slice(&fwd.body).unwrap();
    assert_eq!(v["pdus"], json!([clean_pdu]), "PDU untouched");
    assert_eq!(v["edus"][0], typing, "other EDUs untouched");
    assert_eq!(
        v["edus"][1]["content"]["messages"],
        json!({"@bob:hs1.test": {"LAPTOP": {"text": "Treffpunkt 10 Uhr"}}})
    );
    assert_eq!(v["edus"][1]["content"]["message_id"], "m1");
    assert!(!String::from_utf8_lossy(&fwd.body).contains("GEHEIM"));
    let hdr = fwd
        .headers
        .get("authorization")
        .unwrap()
        .to_str()
        .unwrap()
        .to_string();
    let x = xmatrix::XMatrix::parse(&hdr).unwrap();
    assert_eq!((x.origin.as_str(), x.key.as_str()), (REMOTE, "ed25519:gw1"));
    let raw: Box<serde_json::value::RawValue> = serde_json::from_slice(&fwd.body).unwrap();
    xmatrix::verify_request(
        &x,
        "PUT",
        "/_matrix/federation/v1/send/td1",
        Some(&raw),
        &guard_key.public_key(),
    )
    .expect("guard signature verifies");
    assert!(
        xmatrix::verify_request(
            &x,
            "PUT",
            "/_matrix/federation/v1/send/td1",
            Some(&serde_json::from_slice::<Box<serde_json::value::RawValue>>(&body).unwrap()),
            &guard_key.public_key()
        )
        .is_err(),
        "signature is over the rewritten body"
    );
    // A retry gets the same bytes.
    assert_eq!(send("td1", body).await.status, 200);
    assert_eq!(up.seen().last().unwrap().body, fwd.body);

    // Every message marked: the EDU is dropped, PDU and other EDUs go on.
    let body = serde_json::to_vec(&json!({
        "origin": REMOTE, "origin_server_ts": 1, "pdus": [clean_pdu],
        "edus": [to_device(json!({"@bob:hs1.test": {"PHONE": {"text": "GEHEIM 1"}}, "@carol:hs1.test": {"*": {"text": "GEHEIM 2"}}})), typing]
    }))
    .unwrap();
    let got = send("td2", body).await;
    assert_eq!(got.status, 200, "{:?}", String::from_utf8_lossy(&got.body));
    let v: serde_json::Value = serde_json::from_slice(&up.seen().last().unwrap().body).unwrap();
    assert_eq!(v["pdus"], json!([clean_pdu]));
    assert_eq!(
        v["edus"],
        json!([typing]),
        "to-device EDU without messages is dropped"
    );
    g.stop().await;
}

/// A guard with the DLP rule set of `dir` (polled every 50 ms), a guard key, no verification.
fn dlp_toml(
    p: &Pki,
    upstream: std::net::SocketAddr,
    dir: &std::path::Path,
    gk: &std::path::Path,
) -> String {
    inbound_toml(
        p,
        upstream,
        &format!("[keys]\nverify_pdus = false\nguard_key = \"{}\"\n[dlp]\npolicies = \"{}\"\nwatch_interval_ms = 50\n", gk.display(), dir.display()),
    )
}

fn keyword_rules(mode: &str, word: &str) -> String {
    // One rule id whatever the word: changing the word is an edit, not a lost rule.
    format!("mode = \"{mode}\"\n[[rule]]\nid = \"t.keyword\"\ndescription = \"test\"\nseverity = \"high\"\naction = \"redact\"\nkeywords = [\"{word}\"]\ncase_sensitive = true\n")
}

/// Sends `create` (room version 10) so the guard can redact in that room.
async fn announce_room(g: &RunningGuard, p: &Pki, key: &SigningKey, room: &str) {
    let create = json!({
        "auth_events": [], "prev_events": [], "depth": 1, "hashes": {"sha256": "x"}, "origin_server_ts": 1,
        "room_id": room, "sender": "@a:remote.test", "type": "m.room.create", "state_key": "",
        "content": {"creator": "@a:remote.test", "room_version": "10"}, "signatures": {}
    });
    let body = txn(vec![create]);
    let uri = format!(
        "/_matrix/federation/v1/send/create{}",
        rand::random::<u32>()
    );
    let hdr = auth(key, REMOTE, HS1, "PUT", &uri, Some(&body));
    assert_eq!(
        tls_request(
            g.inbound.unwrap(),
            &p.ca_path,
            "PUT",
            &uri,
            &[("authorization", hdr)],
            body
        )
        .await
        .status,
        200
    );
}

/// Hot reload under load: transactions with an `ALPHA` and a `BRAVO` message keep flowing while
/// the rule file flips between "redact ALPHA" and "redact BRAVO". Every forwarded transaction
/// was judged by exactly one complete rule set (exactly one of the two redacted, never both or
/// none), both rule sets were seen, and a broken rule file is refused while the last good rule
/// set keeps working.
#[tokio::test]
async fn dlp_hot_reload_under_load_is_atomic_and_refuses_broken_rule_sets() {
    let p = pki();
    let up = recorder(None, default_answer()).await;
    let dir = p.dir.path().join("policies");
    std::fs::create_dir_all(&dir).unwrap();
    let file = dir.join("rules.toml");
    std::fs::write(&file, keyword_rules("enforce", "ALPHA")).unwrap();
    let (_, gk) = guard_key_file(&p);
    let g = start_guard(&p, &dlp_toml(&p, up.addr, &dir, &gk)).await;
    let key = SigningKey::generate("r1").unwrap();
    let room = "!r:remote.test";
    announce_room(&g, &p, &key, room).await;

    let stop = std::sync::Arc::new(std::sync::atomic::AtomicBool::new(false));
    let mut load = Vec::new();
    for worker in 0..4 {
        let (stop, key, ca, addr) = (
            stop.clone(),
            SigningKey::from_synapse_str(&key.to_synapse_string()).unwrap(),
            p.ca_path.clone(),
            g.inbound.unwrap(),
        );
        load.push(tokio::spawn(async move {
            let mut n = 0u32;
            while !stop.load(std::sync::atomic::Ordering::Relaxed) {
                let body = txn(vec![pdu(2, "Projekt ALPHA"), pdu(3, "Projekt BRAVO")]);
                let uri = format!("/_matrix/federation/v1/send/load-{worker}-{n}");
                let hdr = auth(&key, REMOTE, HS1, "PUT", &uri, Some(&body));
                let got =
                    tls_request(addr, &ca, "PUT", &uri, &[("authorization", hdr)], body).await;
                assert_eq!(got.status, 200, "{:?}", String::from_utf8_lossy(&got.body));
                n += 1;
            }
            n
        }));
    }
    for word in ["BRAVO", "ALPHA", "BRAVO", "ALPHA", "BRAVO"] {
        tokio::time::sleep(std::time::Duration::from_millis(250)).await;
        std::fs::write(&file, keyword_rules("enforce", word)).unwrap();
    }
    tokio::time::sleep(std::time::Duration::from_millis(250)).await;
    stop.store(true, std::sync::atomic::Ordering::Relaxed);
    let mut sent = 0;
    for t in load {
        sent += t.await.unwrap();
    }
    let (mut alpha_redacted, mut bravo_redacted) = (0, 0);
    for s in up
        .seen()
        .iter()
        .filter(|s| s.path_and_query.contains("/send/load-"))
    {
        let v: serde_json::Value = serde_json::from_slice(&s.body).unwrap();
        let a = v["pdus"][0]["content"] == json!({});
        let b = v["pdus"][1]["content"] == json!({});
        assert!(a ^ b, "a transaction judged by a half-loaded policy: {v}");
        if a {
            alpha_redacted += 1
        } else {
            bravo_redacted += 1
        }
    }
    assert_eq!(alpha_redacted + bravo_redacted, sent as usize);
    assert!(
        alpha_redacted > 0 && bravo_redacted > 0,
        "both rule sets served traffic ({alpha_redacted}/{bravo_redacted})"
    );
    let m = metrics(g.admin).await;
    assert!(counter(&m, "grenzwacht_policy_reloads_total", &[("result", "ok")]) >= 3.0);

    // Last good rule set: BRAVO. A broken file is refused; BRAVO stays redacted.
    std::fs::write(
        &file,
        "mode = \"enforce\"\n[[rule]]\nid = \"t.broken\"\nregex = \"(unclosed\"\n",
    )
    .unwrap();
    let refused = async {
        loop {
            let m = metrics(g.admin).await;
            if counter(
                &m,
                "grenzwacht_policy_reloads_total",
                &[("result", "refused")],
            ) >= 1.0
            {
                break;
            }
            tokio::time::sleep(std::time::Duration::from_millis(50)).await;
        }
    };
    tokio::time::timeout(std::time::Duration::from_secs(10), refused)
        .await
        .expect("the broken rule set was refused");
    let body = txn(vec![pdu(4, "Projekt ALPHA"), pdu(5, "Projekt BRAVO")]);
    let uri = "/_matrix/federation/v1/send/after-broken";
    let hdr = auth(&key, REMOTE, HS1, "PUT", uri, Some(&body));
    assert_eq!(
        tls_request(
            g.inbound.unwrap(),
            &p.ca_path,
            "PUT",
            uri,
            &[("authorization", hdr)],
            body
        )
        .await
        .status,
        200
    );
    let last = up
        .seen()
        .into_iter()
        .find(|s| s.path_and_query == uri)
        .expect("forwarded");
    let v: serde_json::Value = serde_json::from_slice(&last.body).unwrap();
    assert_eq!(v["pdus"][0]["content"]["body"], "Projekt ALPHA");
    assert_eq!(
        v["pdus"][1]["content"],
        json!({}),
        "the last good rule set still applies"
    );
    g.stop().await;
}

/// One redact rule `id` for `word` (no `mode` line: files can be concatenated).
fn redact_rule(id: &str, word: &str) -> String {
    format!("[[rule]]\nid = \"{id}\"\ndescription = \"test\"\nseverity = \"high\"\naction = \"redact\"\nkeywords = [\"{word}\"]\ncase_sensitive = true\n\n")
}

/// Sends one transaction with a message per word; returns per word whether it arrived redacted.
async fn redacted(
    g: &RunningGuard,
    p: &Pki,
    up: &Recorder,
    key: &SigningKey,
    uri: &str,
    words: &[&str],
) -> Vec<bool> {
    let body = txn(words
        .iter()
        .enumerate()
        .map(|(i, w)| pdu(10 + i, &format!("Bericht {w} Ende")))
        .collect());
    let hdr = auth(key, REMOTE, HS1, "PUT", uri, Some(&body));
    assert_eq!(
        tls_request(
            g.inbound.unwrap(),
            &p.ca_path,
            "PUT",
            uri,
            &[("authorization", hdr)],
            body
        )
        .await
        .status,
        200
    );
    let fwd = up
        .seen()
        .into_iter()
        .find(|s| s.path_and_query == uri)
        .expect("forwarded");
    let v: serde_json::Value = serde_json::from_slice(&fwd.body).unwrap();
    (0..words.len())
        .map(|i| v["pdus"][i]["content"] == json!({}))
        .collect()
}

/// Replaces `path` in one step (temporary name without `.toml`, then rename), so the watcher
/// sees the old or the new state only: one reload attempt per step, also on a slow machine.
fn put(path: &std::path::Path, content: &str) {
    let tmp = path.with_extension("toml.new");
    std::fs::write(&tmp, content).unwrap();
    std::fs::rename(&tmp, path).unwrap();
}

/// Waits until the guard has made more than `attempts` reload attempts.
async fn next_reload(
    g: &RunningGuard,
    attempts: u64,
    what: &str,
) -> grenzwacht::proxy::guard::PolicyStatus {
    let t0 = std::time::Instant::now();
    loop {
        let s = g.guard.policy_status();
        if s.attempts > attempts {
            return s;
        }
        assert!(
            t0.elapsed() < std::time::Duration::from_secs(10),
            "{what}: the watcher did not act"
        );
        tokio::time::sleep(std::time::Duration::from_millis(20)).await;
    }
}

/// A rule set never shrinks by accident: under a running guard with the watcher on, a rule
/// file is cut off before its last detector (valid, every rule id kept), truncated at a rule
/// boundary (valid, one rule fewer), truncated mid-line, emptied, replaced by comments, and
/// deleted. Each time the watcher refuses the new set and GEHEIM is
/// still redacted exactly as before. A confirmed reload (what SIGUSR1 does) then takes the
/// smaller set, and restoring the file brings the full set back without confirmation.
#[tokio::test]
async fn dlp_rule_set_never_shrinks_by_accident() {
    use grenzwacht::proxy::guard::ReloadResult;
    let p = pki();
    let up = recorder(None, default_answer()).await;
    let dir = p.dir.path().join("policies");
    std::fs::create_dir_all(&dir).unwrap();
    let markings = dir.join("markings.toml");
    // The marker rule's last line is a detector: cutting it off keeps every rule id.
    let geheim = "[[rule]]\nid = \"t.geheim\"\ndescription = \"test\"\nseverity = \"high\"\naction = \"redact\"\nregex = 'VS-GEHEIM'\nkeywords = [\"GEHEIM\"]\n";
    let full = format!(
        "mode = \"enforce\"\n{}{geheim}",
        redact_rule("t.zweitens", "ZWEITENS")
    );
    std::fs::write(&markings, &full).unwrap();
    std::fs::write(dir.join("extra.toml"), redact_rule("t.extra", "EXTRAWORT")).unwrap();
    let (_, gk) = guard_key_file(&p);
    let g = start_guard(&p, &dlp_toml(&p, up.addr, &dir, &gk)).await;
    let key = SigningKey::generate("r1").unwrap();
    announce_room(&g, &p, &key, "!r:remote.test").await;
    let words = ["GEHEIM", "ZWEITENS", "EXTRAWORT", "harmlos"];
    let start = g.guard.policy_status();
    assert_eq!((start.rules, start.files, start.attempts), (3, 2, 0));
    assert_eq!(
        redacted(
            &g,
            &p,
            &up,
            &key,
            "/_matrix/federation/v1/send/shrink-start",
            &words
        )
        .await,
        [true, true, true, false]
    );

    let cut = full.find("[[rule]]\nid = \"t.geheim\"").unwrap();
    let steps = [
        (
            "cut off before the last detector (every id kept)",
            Some(full[..full.find("keywords = [\"GEHEIM\"]").unwrap()].to_string()),
            ReloadResult::RefusedShrink,
        ),
        (
            "truncated at a rule boundary",
            Some(full[..cut].to_string()),
            ReloadResult::RefusedShrink,
        ),
        (
            "truncated mid-line",
            Some(full[..cut + 30].to_string()),
            ReloadResult::Refused,
        ),
        ("emptied", Some(String::new()), ReloadResult::Refused),
        (
            "comments only",
            Some("# the GEHEIM rules moved elsewhere\n".to_string()),
            ReloadResult::Refused,
        ),
        ("deleted", None, ReloadResult::RefusedShrink),
    ];
    for (i, (what, content, expected)) in steps.into_iter().enumerate() {
        let before = g.guard.policy_status().attempts;
        match content {
            Some(c) => put(&markings, &c),
            None => std::fs::remove_file(&markings).unwrap(),
        }
        let s = next_reload(&g, before, what).await;
        assert_eq!(s.last_result, Some(expected), "{what}");
        assert_eq!(
            s.attempts,
            before + 1,
            "{what}: one attempt per settled change"
        );
        assert_eq!(
            (s.fingerprint, s.rules, s.files),
            (start.fingerprint, 3, 2),
            "{what}: the running set stays"
        );
        let uri = format!("/_matrix/federation/v1/send/shrink-{i}");
        assert_eq!(
            redacted(&g, &p, &up, &key, &uri, &words).await,
            [true, true, true, false],
            "{what}"
        );
    }
    // The refused state is not retried on every poll.
    let attempts = g.guard.policy_status().attempts;
    tokio::time::sleep(std::time::Duration::from_millis(300)).await;
    assert_eq!(
        g.guard.policy_status().attempts,
        attempts,
        "a refused state is tried once"
    );

    // The operator confirms: the smaller set (extra.toml only) is taken.
    let gg = g.guard.clone();
    assert_eq!(
        tokio::task::spawn_blocking(move || gg.reload_policies_accepting_smaller())
            .await
            .unwrap()
            .unwrap(),
        1
    );
    let s = g.guard.policy_status();
    assert_eq!(
        (s.last_result, s.rules, s.files),
        (Some(ReloadResult::AcceptedShrink), 1, 1)
    );
    assert_ne!(s.fingerprint, start.fingerprint);
    assert_eq!(
        redacted(
            &g,
            &p,
            &up,
            &key,
            "/_matrix/federation/v1/send/shrink-confirmed",
            &words
        )
        .await,
        [false, false, true, false]
    );
    // The watcher does not reload what the signal already loaded.
    tokio::time::sleep(std::time::Duration::from_millis(300)).await;
    assert_eq!(g.guard.policy_status().attempts, s.attempts);

    // Restoring the file is a bigger set: taken without confirmation.
    put(&markings, &full);
    let s = next_reload(&g, s.attempts, "restored").await;
    assert_eq!(
        (s.last_result, s.rules, s.fingerprint),
        (Some(ReloadResult::Ok), 3, start.fingerprint)
    );
    assert_eq!(
        redacted(
            &g,
            &p,
            &up,
            &key,
            "/_matrix/federation/v1/send/shrink-restored",
            &words
        )
        .await,
        [true, true, true, false]
    );

    let m = metrics(g.admin).await;
    for (result, at_least) in [
        ("refused_shrink", 3.0),
        ("refused", 3.0),
        ("accepted_shrink", 1.0),
    ] {
        assert!(
            counter(&m, "grenzwacht_policy_reloads_total", &[("result", result)]) >= at_least,
            "{result}: {m}"
        );
    }
    g.stop().await;
}

/// Shadow mode: the rule decides and the decision is recorded, but the event crosses unchanged.
#[tokio::test]
async fn dlp_shadow_mode_records_but_forwards_unchanged() {
    let p = pki();
    let up = recorder(None, default_answer()).await;
    let dir = p.dir.path().join("policies");
    std::fs::create_dir_all(&dir).unwrap();
    std::fs::write(
        dir.join("shadow.toml"),
        keyword_rules("shadow", "SHADOWWORD"),
    )
    .unwrap();
    let (_, gk) = guard_key_file(&p);
    let g = start_guard(&p, &dlp_toml(&p, up.addr, &dir, &gk)).await;
    let key = SigningKey::generate("r1").unwrap();
    announce_room(&g, &p, &key, "!r:remote.test").await;
    let before = counter(
        &metrics(g.admin).await,
        "grenzwacht_dlp_decisions_total",
        &[("mode", "shadow"), ("action", "redact")],
    );
    let body = txn(vec![pdu(2, "Bericht SHADOWWORD Ende")]);
    let uri = "/_matrix/federation/v1/send/shadow1";
    let hdr = auth(&key, REMOTE, HS1, "PUT", uri, Some(&body));
    let got = tls_request(
        g.inbound.unwrap(),
        &p.ca_path,
        "PUT",
        uri,
        &[("authorization", hdr.clone())],
        body.clone(),
    )
    .await;
    assert_eq!(got.status, 200);
    let fwd = up
        .seen()
        .into_iter()
        .find(|s| s.path_and_query == uri)
        .expect("forwarded");
    assert_eq!(fwd.body, body, "shadow mode forwards the bytes unchanged");
    assert_eq!(
        fwd.headers.get("authorization").unwrap().to_str().unwrap(),
        hdr,
        "and the original signature"
    );
    let after = counter(
        &metrics(g.admin).await,
        "grenzwacht_dlp_decisions_total",
        &[("mode", "shadow"), ("action", "redact")],
    );
    assert_eq!(after - before, 1.0, "the shadow decision is recorded");
    g.stop().await;
}

/// Opaque content, inbound: by default (`[opaque] release = "deny"`) a well-formed Megolm
/// `m.room.encrypted` PDU arrives redacted (same event, empty content) and an Olm to-device
/// message is removed, while the clean PDU and the cleartext to-device message next to them
/// cross; with `release = "allow"` for the peer the same transaction is forwarded unchanged.
#[tokio::test]
async fn encrypted_pdu_redacted_by_default_and_intact_when_released() {
    use grenzwacht::federation::e2ee::synthetic;
    let p = pki();
    let (_, gk_path) = guard_key_file(&p);
    let key = SigningKey::generate("r1").unwrap();
    let room = "!r:remote.test";
    let mut enc = pdu(2, "");
    enc["room_id"] = json!(room);
    enc["type"] = json!("m.room.encrypted");
    enc["content"] = synthetic::megolm_content(7, 4);
    let mut clean = pdu(3, "harmlos");
    clean["room_id"] = json!(room);
    let to_device = json!({"edu_type": "m.direct_to_device", "content": {"sender": "@a:remote.test", "type": "m.room.encrypted", "message_id": "m1",
        "messages": {"@bob:hs1.test": {"PHONE": synthetic::olm_content(true)}}}});
    let note = json!({"edu_type": "m.direct_to_device", "content": {"sender": "@a:remote.test", "type": "org.example.note", "message_id": "m2",
        "messages": {"@bob:hs1.test": {"PHONE": {"text": "Treffpunkt 10 Uhr"}}}}});
    let body = serde_json::to_vec(&json!({"origin": REMOTE, "origin_server_ts": 1, "pdus": [enc, clean], "edus": [to_device, note]})).unwrap();

    for (opaque, released) in [
        ("", false),
        (
            "[opaque]\nrelease = \"allow\"\npeers = [\"remote.*\"]\n",
            true,
        ),
    ] {
        let up = recorder(None, default_answer()).await;
        let extra = format!(
            "[keys]\nverify_pdus = false\nguard_key = \"{}\"\n{opaque}",
            gk_path.display()
        );
        let g = start_guard(&p, &inbound_toml(&p, up.addr, &extra)).await;
        announce_room(&g, &p, &key, room).await;
        let uri = format!("/_matrix/federation/v1/send/enc{}", rand::random::<u32>());
        let hdr = auth(&key, REMOTE, HS1, "PUT", &uri, Some(&body));
        let got = tls_request(
            g.inbound.unwrap(),
            &p.ca_path,
            "PUT",
            &uri,
            &[("authorization", hdr)],
            body.clone(),
        )
        .await;
        assert_eq!(got.status, 200, "{:?}", String::from_utf8_lossy(&got.body));
        let seen = up.seen();
        let fwd = seen.last().unwrap();
        let v: serde_json::Value = serde_json::from_slice(&fwd.body).unwrap();
        let m = metrics(g.admin).await;
        if released {
            assert_eq!(fwd.body, body, "released: forwarded byte for byte");
            assert!(
                counter(
                    &m,
                    "grenzwacht_opaque_decisions_total",
                    &[("direction", "inbound"), ("outcome", "release")]
                ) >= 2.0
            );
        } else {
            assert_eq!(v["pdus"].as_array().unwrap().len(), 2, "no PDU removed");
            assert_eq!(v["pdus"][0]["type"], "m.room.encrypted");
            assert_eq!(
                v["pdus"][0]["content"],
                json!({}),
                "the ciphertext is redacted"
            );
            assert_eq!(v["pdus"][1], clean, "the clean PDU is untouched");
            assert_eq!(
                v["edus"],
                json!([note]),
                "the encrypted to-device EDU is gone, the cleartext one stays"
            );
            assert!(!String::from_utf8_lossy(&fwd.body)
                .contains(enc["content"]["ciphertext"].as_str().unwrap()));
            assert!(
                counter(
                    &m,
                    "grenzwacht_opaque_decisions_total",
                    &[("direction", "inbound"), ("outcome", "opaque:encrypted")]
                ) >= 2.0
            );
        }
        g.stop().await;
    }
}

/// One event of a response whose signer's keys the guard cannot obtain does not sink the whole
/// response (a `backfill` or `send_join` answer would otherwise fail the join): that event crosses
/// redacted, the others unchanged. The peer-facing errors never carry key-fetch details.
#[tokio::test]
async fn an_unverifiable_event_in_a_response_crosses_redacted_and_the_rest_arrives() {
    let p = pki();
    init_ica(&p);
    let remote_key = SigningKey::generate("r1").unwrap();
    let ghost_key = SigningKey::generate("g1").unwrap();
    let room = "!b:remote.test";
    let event = |depth: u64, sender: &str, kind: &str, content: serde_json::Value| {
        json!({
            "auth_events": [], "prev_events": [], "depth": depth, "origin_server_ts": 1_700_000_000_000u64,
            "room_id": room, "sender": sender, "type": kind, "content": content
        })
    };
    let mut create = event(
        1,
        "@a:remote.test",
        "m.room.create",
        json!({"creator": "@a:remote.test", "room_version": "10"}),
    );
    create["state_key"] = json!("");
    let create = signed_pdu(&remote_key, create);
    let good = signed_pdu(
        &remote_key,
        event(
            2,
            "@a:remote.test",
            "m.room.message",
            json!({"body": "bleibt", "msgtype": "m.text"}),
        ),
    );
    // From a server the guard cannot reach (no route, discovery off): its keys are unavailable.
    let ghost = {
        let mut obj: ruma::CanonicalJsonObject = serde_json::from_value(event(
            3,
            "@g:ghost.test",
            "m.room.message",
            json!({"body": "unprüfbar", "msgtype": "m.text"}),
        ))
        .unwrap();
        let rules = ruma::RoomVersionId::V10.rules().unwrap();
        ruma::signatures::hash_and_sign_event(
            "ghost.test",
            ghost_key.key_pair(),
            &mut obj,
            &rules.redaction,
        )
        .unwrap();
        serde_json::to_value(obj).unwrap()
    };
    let backfill = serde_json::to_vec(
        &json!({"origin": REMOTE, "origin_server_ts": 1, "pdus": [create, good, ghost]}),
    )
    .unwrap();
    let remote_keys = key_server_answer(REMOTE, &remote_key);
    let answer: Answer = std::sync::Arc::new(move |s: &Seen| {
        if s.path_and_query
            .starts_with("/_matrix/federation/v1/backfill/")
        {
            (200, "application/json", backfill.clone())
        } else {
            remote_keys(s)
        }
    });
    let remote = recorder(Some(acceptor(&p)), answer).await;
    let key = SigningKey::generate("hs1").unwrap();
    let hs1 = recorder(None, key_server_answer(HS1, &key)).await;
    let toml = outbound_toml(&p, remote.addr, "")
        .replace("http://127.0.0.1:9", &format!("http://{}", hs1.addr));
    let g = start_guard(&p, &toml).await;
    let path = "/_matrix/federation/v1/backfill/%21b%3Aremote.test?v=%24x&limit=10";
    let hdr = auth(&key, HS1, REMOTE, "GET", path, None);
    let target = format!("matrix-federation://{REMOTE}{path}");
    let headers = vec![
        ("authorization", hdr),
        ("proxy-authorization", "Bearer s3cret".to_string()),
    ];
    let got = plain_request(g.proxy.unwrap(), "GET", &target, &headers, vec![]).await;
    assert_eq!(got.status, 200, "{:?}", String::from_utf8_lossy(&got.body));
    let body: serde_json::Value = serde_json::from_slice(&got.body).unwrap();
    let pdus = body["pdus"].as_array().unwrap();
    assert_eq!(pdus.len(), 3, "no PDU is removed");
    assert_eq!(
        pdus[1]["content"]["body"], "bleibt",
        "the verified event is unchanged"
    );
    assert_eq!(pdus[2]["sender"], "@g:ghost.test");
    assert!(
        pdus[2]["content"].get("body").is_none(),
        "the unverifiable event crosses redacted: {}",
        pdus[2]
    );
    let m = metrics(g.admin).await;
    assert!(
        counter(
            &m,
            "grenzwacht_pdu_checks_total",
            &[("direction", "inbound"), ("outcome", "keys_unavailable")]
        ) >= 1.0,
        "{m}"
    );
    g.stop().await;
}

/// SSRF: an unauthenticated peer that names a loopback `host:port` as its X-Matrix origin does
/// not make the guard connect there to fetch keys (no `[[route]]` names it). A listener on that
/// port counts connections: none. The peer learns only that verification failed.
#[tokio::test]
async fn key_fetches_towards_loopback_origins_are_refused_without_a_connection() {
    let p = pki();
    let trap = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let trap_addr = trap.local_addr().unwrap();
    let accepted = std::sync::Arc::new(std::sync::atomic::AtomicUsize::new(0));
    let counter_ = accepted.clone();
    tokio::spawn(async move {
        while let Ok((_s, _)) = trap.accept().await {
            counter_.fetch_add(1, std::sync::atomic::Ordering::SeqCst);
        }
    });
    let up = recorder(None, default_answer()).await;
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
[outbound]
proxy_listen = "127.0.0.1:0"
allowed_clients = ["127.0.0.0/8"]
proxy_secret = "s3cret"
roots = ["{ca}"]
[discovery]
enabled = false
"#,
        cert = p.cert.display(),
        key = p.key.display(),
        upstream = up.addr,
        ca = p.ca_path.display(),
    );
    let g = start_guard(&p, &toml).await;
    let origin = trap_addr.to_string();
    let key = SigningKey::generate("x1").unwrap();
    let body = txn_from(&origin, vec![]);
    let uri = "/_matrix/federation/v1/send/ssrf1";
    let hdr = auth(&key, &origin, HS1, "PUT", uri, Some(&body));
    let got = tls_request(
        g.inbound.unwrap(),
        &p.ca_path,
        "PUT",
        uri,
        &[("authorization", hdr)],
        body,
    )
    .await;
    assert_eq!(got.status, 401, "{:?}", String::from_utf8_lossy(&got.body));
    let text = String::from_utf8_lossy(&got.body).to_string();
    assert!(
        !text.contains("127.0.0.1") && !text.contains(&trap_addr.port().to_string()),
        "no address in the peer's error: {text}"
    );
    tokio::time::sleep(std::time::Duration::from_millis(200)).await;
    assert_eq!(
        accepted.load(std::sync::atomic::Ordering::SeqCst),
        0,
        "the guard never connected to the loopback origin"
    );
    assert!(up.seen().is_empty(), "nothing reached the protected server");
    g.stop().await;
}
