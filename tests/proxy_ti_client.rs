//! The TI profile's client-server listener (`proxy::client_api`) in process: a real guard with
//! `[ti]` and a `client_listen`, in front of a small recording "homeserver" on loopback that
//! answers `whoami`. Each test asserts what is refused (and never reaches the homeserver) and
//! what is forwarded (and how it is rewritten).
//!
//! Without a federation list every domain but the protected server's own is refused
//! (`ListStale`), and so is every invite of a protected user; the tests at the end load a list
//! signed by a test PKI (`ti::testpki`) from the `list_file` and give the homeserver's admin API
//! the invitees' permission configs.
mod common;

use std::net::SocketAddr;
use std::sync::Arc;

use bytes::Bytes;
use common::*;
use http_body_util::{BodyExt, Full};
use hyper_util::rt::TokioIo;
use serde_json::json;

const HS1: &str = "hs1.test";
const ALICE_TOKEN: &str = "tok-alice";

/// The fake homeserver: `whoami` knows one token; the admin API answers the permission
/// configs in `configs` (by user ID; others have none) to the admin token; `createRoom`
/// answers a room id; the rest `{"ok":true}`.
fn homeserver_answer(configs: Vec<(&'static str, serde_json::Value)>) -> Answer {
    Arc::new(move |s: &Seen| {
        let auth = s
            .headers
            .get("authorization")
            .and_then(|v| v.to_str().ok())
            .unwrap_or("");
        if s.path_and_query
            .starts_with("/_matrix/client/v3/account/whoami")
        {
            if auth == "Bearer tok-appservice" {
                // An application service acts for the user it names.
                let user = s
                    .path_and_query
                    .split_once("?user_id=")
                    .map(|(_, u)| {
                        grenzwacht::federation::catalog::percent_decode(u)
                            .unwrap()
                            .into_owned()
                    })
                    .unwrap_or_else(|| "@bridge:hs1.test".into());
                return (
                    200,
                    "application/json",
                    json!({"user_id": user}).to_string().into_bytes(),
                );
            }
            if auth == format!("Bearer {ALICE_TOKEN}") {
                return (
                    200,
                    "application/json",
                    br#"{"user_id":"@alice:hs1.test","device_id":"D"}"#.to_vec(),
                );
            }
            return (
                401,
                "application/json",
                br#"{"errcode":"M_UNKNOWN_TOKEN","error":"secret upstream detail"}"#.to_vec(),
            );
        }
        if let Some(rest) = s.path_and_query.strip_prefix("/_synapse/admin/v1/users/") {
            if auth != "Bearer admintoken" {
                return (
                    403,
                    "application/json",
                    br#"{"errcode":"M_FORBIDDEN"}"#.to_vec(),
                );
            }
            let user = rest.strip_suffix("/accountdata").unwrap_or("");
            let user = grenzwacht::federation::catalog::percent_decode(user)
                .unwrap()
                .into_owned();
            let mut global = serde_json::Map::new();
            if let Some((_, c)) = configs.iter().find(|(u, _)| *u == user) {
                global.insert(
                    "de.gematik.tim.account.permissionconfig.pro.v1".into(),
                    c.clone(),
                );
            }
            global.insert("m.push_rules".into(), json!({}));
            let body = json!({"account_data": {"global": global, "rooms": {}}});
            return (200, "application/json", body.to_string().into_bytes());
        }
        if s.method == "GET" && s.path_and_query.ends_with("/state/m.room.create") {
            if auth != format!("Bearer {ALICE_TOKEN}") {
                return (
                    403,
                    "application/json",
                    br#"{"errcode":"M_FORBIDDEN"}"#.to_vec(),
                );
            }
            let content = if s.path_and_query.contains("nofed") {
                json!({"room_version": "10", "m.federate": false})
            } else {
                json!({"room_version": "10"})
            };
            return (200, "application/json", content.to_string().into_bytes());
        }
        if s.path_and_query.contains("/createRoom") {
            return (
                200,
                "application/json",
                br#"{"room_id":"!new:hs1.test"}"#.to_vec(),
            );
        }
        (200, "application/json", br#"{"ok":true}"#.to_vec())
    })
}

struct Lab {
    admin: SocketAddr,
    stop: tokio::sync::oneshot::Sender<()>,
    task: tokio::task::JoinHandle<()>,
    client: SocketAddr,
    hs: Recorder,
    _p: Pki,
}

fn ti_toml(p: &Pki, hs: SocketAddr, extra_hs: &str) -> String {
    let d = p.dir.path();
    std::fs::create_dir_all(d.join("ti-state")).unwrap();
    std::fs::write(d.join("admin.token"), "admintoken\n").unwrap();
    format!(
        r#"
[admin]
listen = "127.0.0.1:0"
[[protected]]
server_name = "{HS1}"
cert = "{cert}"
key = "{key}"
upstream = "http://127.0.0.1:9"
[ti]
tsl_roots = "{d}/tsl_roots.json"
intermediates = ["{d}/intermediate.der"]
list_file = "{d}/federation-list.jws"
state_dir = "{d}/ti-state"
[[ti.homeserver]]
server_name = "{HS1}"
admin_url = "http://{hs}"
admin_token_file = "{d}/admin.token"
client_listen = "127.0.0.1:0"
client_upstream = "http://{hs}"
{extra_hs}
"#,
        cert = p.cert.display(),
        key = p.key.display(),
        d = d.display(),
    )
}

/// Starts the homeserver and a guard whose client listener is in front of it; without
/// `list` the guard has no federation list.
async fn lab(extra_hs: &str) -> Lab {
    lab_with(extra_hs, None, Vec::new()).await
}

/// … with a federation list of `list` (domain, isInsurance) signed by a test PKI in the
/// `list_file`, loaded before the first request, and the users' permission configs.
async fn lab_with(
    extra_hs: &str,
    list: Option<&[(&str, bool)]>,
    configs: Vec<(&'static str, serde_json::Value)>,
) -> Lab {
    let p = pki();
    let hs = recorder(None, homeserver_answer(configs)).await;
    let now = std::time::SystemTime::now();
    let day = std::time::Duration::from_secs(86_400);
    let tpki = grenzwacht::ti::testpki::TestPki::generate(now - day, now + day);
    tpki.write_files(p.dir.path()).unwrap();
    if let Some(domains) = list {
        let jws = tpki.sign_list(&grenzwacht::ti::testpki::TestPki::payload(7, domains));
        std::fs::write(p.dir.path().join("federation-list.jws"), jws).unwrap();
    }
    let toml = ti_toml(&p, hs.addr, extra_hs);
    let path = p.dir.path().join("guard.toml");
    std::fs::write(&path, &toml).unwrap();
    let cfg = grenzwacht::config::Config::load(&path).unwrap_or_else(|e| panic!("config: {e}"));
    let guard = Arc::new(
        grenzwacht::proxy::Guard::from_config(
            &cfg,
            grenzwacht::store::Store::open_in_memory().unwrap(),
        )
        .unwrap(),
    );
    if list.is_some() {
        guard.ti().unwrap().keeper.refresh().await.unwrap();
        assert!(guard.ti().unwrap().keeper.current().is_some());
    }
    let listeners = grenzwacht::proxy::Listeners::bind(&cfg).await.unwrap();
    let client = listeners.client[0].1.local_addr().unwrap();
    let admin = listeners.admin.as_ref().unwrap().local_addr().unwrap();
    let (tx, rx) = tokio::sync::oneshot::channel::<()>();
    let task = tokio::spawn(grenzwacht::proxy::serve(
        guard.clone(),
        listeners,
        async move {
            let _ = rx.await;
        },
    ));
    Lab {
        admin,
        stop: tx,
        task,
        client,
        hs,
        _p: p,
    }
}

impl Lab {
    async fn stop(self) {
        let _ = self.stop.send(());
        let _ = self.task.await;
    }
    async fn req(&self, method: &str, path: &str, token: Option<&str>, body: &[u8]) -> Got {
        let mut h = vec![("content-type", "application/json".to_string())];
        if let Some(t) = token {
            h.push(("authorization", format!("Bearer {t}")));
        }
        plain_request(self.client, method, path, &h, body.to_vec()).await
    }
    /// Requests the homeserver saw other than the guard's own questions (`whoami`, the
    /// admin API's account data, a room's create event).
    fn forwarded(&self) -> Vec<Seen> {
        let own = |s: &Seen| {
            s.path_and_query.contains("/account/whoami")
                || s.path_and_query.starts_with("/_synapse/admin/")
                || (s.method == "GET" && s.path_and_query.ends_with("/state/m.room.create"))
        };
        self.hs.seen().into_iter().filter(|s| !own(s)).collect()
    }
    fn whoami_asked(&self) -> usize {
        self.hs
            .seen()
            .iter()
            .filter(|s| s.path_and_query.contains("/account/whoami"))
            .count()
    }
    async fn ti_refusals(&self, reason: &str) -> f64 {
        counter(
            &metrics(self.admin).await,
            "grenzwacht_ti_refusals_total",
            &[("reason", reason), ("side", "client")],
        )
    }
}

#[tokio::test]
async fn create_room_with_two_invitees_is_refused_and_never_forwarded() {
    let lab = lab("").await;
    let before = lab.ti_refusals("client_rule").await;
    for body in [
        json!({"invite": ["@bob:hs1.test", "@carol:hs1.test"]}),
        json!({"invite": ["@bob:hs1.test"], "initial_state": [
            {"type": "m.room.member", "state_key": "@carol:hs1.test", "content": {"membership": "invite"}}]}),
    ] {
        for path in [
            "/_matrix/client/v3/createRoom",
            "/_matrix/client/r0/createRoom/",
            "/_matrix/client/unstable/create%52oom",
        ] {
            let g = lab
                .req("POST", path, Some(ALICE_TOKEN), body.to_string().as_bytes())
                .await;
            assert_eq!(g.status, 403, "{path} {body}");
            assert_eq!(g.errcode(), "M_FORBIDDEN");
        }
        let g = lab
            .req(
                "PUT",
                "/_matrix/client/v3/createRoom/txn1",
                Some(ALICE_TOKEN),
                body.to_string().as_bytes(),
            )
            .await;
        assert_eq!(g.status, 403);
    }
    assert!(lab.forwarded().is_empty(), "{:?}", lab.forwarded());
    assert_eq!(lab.ti_refusals("client_rule").await - before, 8.0);
    lab.stop().await;
}

#[tokio::test]
async fn public_rooms_are_created_without_federation() {
    let lab = lab("").await;
    let body = json!({"visibility": "public", "name": "Lobby",
        "creation_content": {"m.federate": true, "x": 1}});
    let g = plain_request(
        lab.client,
        "POST",
        "/_matrix/client/v3/createRoom?foo=bar",
        &[
            ("authorization", format!("Bearer {ALICE_TOKEN}")),
            ("connection", "keep-alive, x-hop".to_string()),
            ("x-hop", "1".to_string()),
            ("proxy-authorization", "Basic c2VjcmV0".to_string()),
            ("x-forwarded-for", "10.9.9.9".to_string()),
        ],
        body.to_string().into_bytes(),
    )
    .await;
    assert_eq!(g.status, 200);
    assert_eq!(g.json()["room_id"], "!new:hs1.test");
    let seen = lab.forwarded();
    assert_eq!(seen.len(), 1);
    let s = &seen[0];
    assert_eq!(s.method, "POST");
    assert_eq!(s.path_and_query, "/_matrix/client/v3/createRoom?foo=bar");
    let fwd: serde_json::Value = serde_json::from_slice(&s.body).unwrap();
    assert_eq!(fwd["creation_content"]["m.federate"], json!(false));
    assert_eq!(fwd["creation_content"]["x"], json!(1));
    assert_eq!(fwd["name"], json!("Lobby"));
    assert_eq!(
        s.headers["authorization"],
        format!("Bearer {ALICE_TOKEN}").as_str()
    );
    assert!(s.headers.get("x-hop").is_none(), "named hop-by-hop header");
    assert!(s.headers.get("proxy-authorization").is_none());
    assert_eq!(s.headers["x-forwarded-for"], "127.0.0.1");
    // No invitee: nobody had to be asked who is creating the room.
    assert_eq!(lab.whoami_asked(), 0);

    // preset public_chat, and a private room (forwarded as sent).
    let g = lab
        .req(
            "POST",
            "/_matrix/client/v3/createRoom",
            Some(ALICE_TOKEN),
            br#"{"preset":"public_chat"}"#,
        )
        .await;
    assert_eq!(g.status, 200);
    let g = lab
        .req(
            "POST",
            "/_matrix/client/v3/createRoom",
            Some(ALICE_TOKEN),
            br#"{"preset":"private_chat","creation_content":{"m.federate":true}}"#,
        )
        .await;
    assert_eq!(g.status, 200);
    let seen = lab.forwarded();
    let b1: serde_json::Value = serde_json::from_slice(&seen[1].body).unwrap();
    assert_eq!(b1["creation_content"]["m.federate"], json!(false));
    let b2: serde_json::Value = serde_json::from_slice(&seen[2].body).unwrap();
    assert_eq!(b2["creation_content"]["m.federate"], json!(true));
    lab.stop().await;
}

#[tokio::test]
async fn inspected_bodies_that_are_no_json_or_too_large_are_not_forwarded() {
    let lab = lab("").await;
    let g = lab
        .req(
            "POST",
            "/_matrix/client/v3/createRoom",
            Some(ALICE_TOKEN),
            b"{nope",
        )
        .await;
    assert_eq!((g.status, g.errcode().as_str()), (400, "M_NOT_JSON"));
    let g = lab
        .req(
            "POST",
            "/_matrix/client/v3/rooms/!r:hs1.test/invite",
            Some(ALICE_TOKEN),
            b"",
        )
        .await;
    assert_eq!((g.status, g.errcode().as_str()), (400, "M_NOT_JSON"));
    let g = lab
        .req(
            "PUT",
            "/_matrix/client/v3/rooms/!r:hs1.test/state/m.room.member/@bob:hs2.test",
            Some(ALICE_TOKEN),
            b"[1,",
        )
        .await;
    assert_eq!((g.status, g.errcode().as_str()), (400, "M_NOT_JSON"));
    let mut big = br#"{"name":""#.to_vec();
    big.extend(std::iter::repeat_n(b'a', 1024 * 1024 + 10));
    big.extend(br#""}"#);
    let g = lab
        .req(
            "POST",
            "/_matrix/client/v3/createRoom",
            Some(ALICE_TOKEN),
            &big,
        )
        .await;
    assert_eq!((g.status, g.errcode().as_str()), (413, "M_TOO_LARGE"));
    assert!(lab.forwarded().is_empty());
    lab.stop().await;
}

#[tokio::test]
async fn invites_are_refused_without_a_current_list_in_every_path_form() {
    let lab = lab("").await;
    let before = lab.ti_refusals("list_stale").await;
    let invite = br#"{"user_id":"@bob:hs2.test"}"#;
    for path in [
        "/_matrix/client/v3/rooms/!r:hs1.test/invite",
        "/_matrix/client/r0/rooms/%21r%3Ahs1.test/inv%69te",
        "/_matrix/client/v3/rooms/!r:hs1.test/invite/",
        "/_matrix/client/v3//rooms/!r:hs1.test/invite",
    ] {
        let g = lab.req("POST", path, Some(ALICE_TOKEN), invite).await;
        assert_eq!(
            (g.status, g.errcode().as_str()),
            (403, "M_FORBIDDEN"),
            "{path}"
        );
    }
    let g = lab
        .req(
            "PUT",
            "/_matrix/client/v3/rooms/!r:hs1.test/invite/txn7",
            Some(ALICE_TOKEN),
            invite,
        )
        .await;
    assert_eq!(g.status, 403);
    // The same invite as m.room.member state, with an encoded event type and state key.
    let g = lab
        .req(
            "PUT",
            "/_matrix/client/v3/rooms/!r:hs1.test/state/m.room%2Emember/%40bob%3Ahs2.test",
            Some(ALICE_TOKEN),
            br#"{"membership":"invite"}"#,
        )
        .await;
    assert_eq!(g.status, 403);
    // createRoom with the one invitee.
    let g = lab
        .req(
            "POST",
            "/_matrix/client/v3/createRoom",
            Some(ALICE_TOKEN),
            br#"{"invite":["@bob:hs2.test"]}"#,
        )
        .await;
    assert_eq!(g.status, 403);
    // Third-party invites name nobody to check.
    let g = lab
        .req(
            "POST",
            "/_matrix/client/v3/rooms/!r:hs1.test/invite",
            Some(ALICE_TOKEN),
            br#"{"id_server":"is.example","medium":"email","address":"a@b.example"}"#,
        )
        .await;
    assert_eq!(g.status, 403);
    assert!(lab.forwarded().is_empty(), "{:?}", lab.forwarded());
    assert_eq!(lab.ti_refusals("list_stale").await - before, 7.0);

    // A member event that is no invite passes.
    let g = lab
        .req(
            "PUT",
            "/_matrix/client/v3/rooms/!r:hs1.test/state/m.room.member/@alice:hs1.test",
            Some(ALICE_TOKEN),
            br#"{"membership":"join","displayname":"Alice"}"#,
        )
        .await;
    assert_eq!(g.status, 200);
    assert_eq!(lab.forwarded().len(), 1);
    lab.stop().await;
}

#[tokio::test]
async fn local_invites_ask_the_homeserver_who_invites_and_fail_closed() {
    let lab = lab("").await;
    let invite = br#"{"user_id":"@carol:hs1.test"}"#;
    let path = "/_matrix/client/v3/rooms/!r:hs1.test/invite";
    let g = lab.req("POST", path, None, invite).await;
    assert_eq!((g.status, g.errcode().as_str()), (401, "M_MISSING_TOKEN"));
    assert_eq!(lab.whoami_asked(), 0);
    let g = lab.req("POST", path, Some("tok-wrong"), invite).await;
    assert_eq!((g.status, g.errcode().as_str()), (401, "M_UNKNOWN_TOKEN"));
    assert!(!String::from_utf8_lossy(&g.body).contains("secret upstream detail"));
    assert_eq!(lab.whoami_asked(), 1);
    // A known token: the homeserver is asked once, the answer reused; the invite itself is
    // refused because without a list the permission decision cannot be made.
    for _ in 0..3 {
        let g = lab.req("POST", path, Some(ALICE_TOKEN), invite).await;
        assert_eq!((g.status, g.errcode().as_str()), (403, "M_FORBIDDEN"));
    }
    // The token in the query string is the same token.
    let g = lab
        .req(
            "POST",
            &format!("{path}?access_token={ALICE_TOKEN}"),
            None,
            invite,
        )
        .await;
    assert_eq!(g.status, 403);
    assert_eq!(lab.whoami_asked(), 2);
    let whoami = lab
        .hs
        .seen()
        .into_iter()
        .find(|s| s.headers["authorization"] == format!("Bearer {ALICE_TOKEN}").as_str())
        .unwrap();
    assert_eq!(whoami.method, "GET");
    assert!(lab.forwarded().is_empty());
    lab.stop().await;
}

#[tokio::test]
async fn media_from_unlisted_servers_is_refused_own_media_and_uploads_stream() {
    let lab = lab("").await;
    for path in [
        "/_matrix/client/v1/media/download/hs2.test/abc",
        "/_matrix/client/v1/media/thumbnail/hs2.test/abc?width=32&height=32",
        "/_matrix/media/v3/download/hs2.test/abc/file.png",
        "/_matrix/media/r0/thumbnail/hs2%2Etest/abc",
    ] {
        let g = lab.req("GET", path, Some(ALICE_TOKEN), b"").await;
        assert_eq!(
            (g.status, g.errcode().as_str()),
            (403, "M_FORBIDDEN"),
            "{path}"
        );
    }
    assert!(lab.forwarded().is_empty());
    for path in [
        "/_matrix/client/v1/media/download/hs1.test/abc",
        "/_matrix/media/v3/download/HS1.test/abc",
    ] {
        let g = lab.req("GET", path, Some(ALICE_TOKEN), b"").await;
        assert_eq!(g.status, 200, "{path}");
    }
    // An upload larger than any inspected body crosses byte for byte.
    let upload: Vec<u8> = (0..3 * 1024 * 1024u32).map(|i| (i % 251) as u8).collect();
    let g = plain_request(
        lab.client,
        "POST",
        "/_matrix/media/v3/upload?filename=x.bin",
        &[
            ("authorization", format!("Bearer {ALICE_TOKEN}")),
            ("content-type", "application/octet-stream".to_string()),
        ],
        upload.clone(),
    )
    .await;
    assert_eq!(g.status, 200);
    let seen = lab.forwarded();
    assert_eq!(seen.len(), 3);
    assert_eq!(seen[2].body.as_ref(), upload.as_slice());
    // The admin API is not served on the client listener …
    let g = lab
        .req(
            "POST",
            "/_synapse/admin/v1/join/!r:hs1.test",
            Some("admintoken"),
            b"{}",
        )
        .await;
    assert_eq!((g.status, g.errcode().as_str()), (404, "M_UNRECOGNIZED"));
    assert!(!lab
        .hs
        .seen()
        .iter()
        .any(|s| s.path_and_query.contains("/join/")));
    // Nor are server-server paths: they must not get around the federation listeners.
    for (m, p) in [
        ("PUT", "/_matrix/federation/v2/invite/!r:hs1.test/$e"),
        ("PUT", "/_matrix/federation/v1/send/t1"),
        ("GET", "/_matrix/key/v2/server"),
    ] {
        let g = lab.req(m, p, None, b"{}").await;
        assert_eq!(
            (g.status, g.errcode().as_str()),
            (404, "M_UNRECOGNIZED"),
            "{p}"
        );
    }
    assert!(!lab.hs.seen().iter().any(|s| {
        s.path_and_query.starts_with("/_matrix/federation/")
            || s.path_and_query.starts_with("/_matrix/key/")
    }));
    lab.stop().await;
}

#[tokio::test]
async fn http2_with_prior_knowledge_and_refusals_over_it() {
    let lab = lab("").await;
    let tcp = tokio::net::TcpStream::connect(lab.client).await.unwrap();
    let (mut sender, conn) = hyper::client::conn::http2::handshake(
        hyper_util::rt::TokioExecutor::new(),
        TokioIo::new(tcp),
    )
    .await
    .unwrap();
    tokio::spawn(conn);
    let send = |method: &str, path: &str, body: &'static [u8]| {
        http::Request::builder()
            .method(method)
            .uri(format!("http://hs1.test{path}"))
            .header("authorization", format!("Bearer {ALICE_TOKEN}"))
            .body(Full::new(Bytes::from_static(body)))
            .unwrap()
    };
    let r = sender
        .send_request(send("GET", "/_matrix/client/v3/sync?timeout=0", b""))
        .await
        .unwrap();
    assert_eq!(r.status(), 200);
    let b = r.into_body().collect().await.unwrap().to_bytes();
    assert_eq!(&b[..], br#"{"ok":true}"#);
    let r = sender
        .send_request(send(
            "POST",
            "/_matrix/client/v3/createRoom",
            br#"{"invite":["@a:hs1.test","@b:hs1.test"]}"#,
        ))
        .await
        .unwrap();
    assert_eq!(r.status(), 403);
    let seen = lab.forwarded();
    assert_eq!(seen.len(), 1);
    assert_eq!(seen[0].path_and_query, "/_matrix/client/v3/sync?timeout=0");
    assert_eq!(seen[0].headers["host"], "hs1.test");
    lab.stop().await;
}

#[tokio::test]
async fn tls_on_the_client_listener() {
    let p = pki();
    let extra = format!(
        "client_tls_cert = \"{}\"\nclient_tls_key = \"{}\"\n",
        p.cert.display(),
        p.key.display()
    );
    let lab = lab(&extra).await;
    let g = tls_request(
        lab.client,
        &p.ca_path,
        "POST",
        "/_matrix/client/v3/createRoom",
        &[("authorization", format!("Bearer {ALICE_TOKEN}"))],
        br#"{"visibility":"public"}"#.to_vec(),
    )
    .await;
    assert_eq!(g.status, 200);
    let seen = lab.forwarded();
    assert_eq!(seen.len(), 1);
    assert_eq!(seen[0].headers["x-forwarded-proto"], "https");
    let fwd: serde_json::Value = serde_json::from_slice(&seen[0].body).unwrap();
    assert_eq!(fwd["creation_content"]["m.federate"], json!(false));
    // Plain HTTP on the TLS listener gets nothing forwarded.
    let tcp = tokio::net::TcpStream::connect(lab.client).await.unwrap();
    let r = hyper::client::conn::http1::handshake::<_, Full<Bytes>>(TokioIo::new(tcp)).await;
    if let Ok((mut s, c)) = r {
        tokio::spawn(c);
        let req = http::Request::get("/_matrix/client/v3/sync")
            .header("host", "x")
            .body(Full::new(Bytes::new()))
            .unwrap();
        assert!(s.send_request(req).await.is_err());
    }
    assert_eq!(lab.forwarded().len(), 1);
    lab.stop().await;
}

const LISTED: &[(&str, bool)] = &[
    ("hs1.test", false),
    ("hs2.test", false),
    ("kasse.test", true),
];

#[tokio::test]
async fn listed_domains_pass_unlisted_are_refused() {
    let lab = lab_with("", Some(LISTED), Vec::new()).await;
    let before = lab.ti_refusals("not_listed").await;
    let g = lab
        .req(
            "POST",
            "/_matrix/client/v3/createRoom",
            Some(ALICE_TOKEN),
            br#"{"invite":["@bob:HS2.test:8448"],"is_direct":true}"#,
        )
        .await;
    assert_eq!(g.status, 200, "{:?}", g.json());
    let g = lab
        .req(
            "POST",
            "/_matrix/client/v3/rooms/!r:hs1.test/invite",
            Some(ALICE_TOKEN),
            br#"{"user_id":"@bob:hs2.test"}"#,
        )
        .await;
    assert_eq!(g.status, 200);
    // Remote invitees need no whoami: their own proxy checks their permissions.
    assert_eq!(lab.whoami_asked(), 0);
    for (method, path, body) in [
        (
            "POST",
            "/_matrix/client/v3/createRoom",
            &br#"{"invite":["@x:hs3.test"]}"#[..],
        ),
        (
            "POST",
            "/_matrix/client/v3/createRoom",
            br#"{"invite":["@x:hs2.test.evil"]}"#,
        ),
        (
            "POST",
            "/_matrix/client/v3/rooms/!r:hs1.test/invite",
            br#"{"user_id":"@x:hs3.test"}"#,
        ),
        (
            "PUT",
            "/_matrix/client/v3/rooms/!r:hs1.test/state/m.room.member/@x:hs3.test",
            br#"{"membership":"invite"}"#,
        ),
        ("GET", "/_matrix/client/v1/media/download/hs3.test/abc", b""),
    ] {
        let g = lab.req(method, path, Some(ALICE_TOKEN), body).await;
        assert_eq!(
            (g.status, g.errcode().as_str()),
            (403, "M_FORBIDDEN"),
            "{path}"
        );
        assert!(g.json()["error"]
            .as_str()
            .unwrap()
            .contains("not on the TI-Messenger federation list"));
    }
    assert_eq!(lab.ti_refusals("not_listed").await - before, 5.0);
    let g = lab
        .req(
            "GET",
            "/_matrix/client/v1/media/download/hs2.test/abc",
            Some(ALICE_TOKEN),
            b"",
        )
        .await;
    assert_eq!(g.status, 200);
    let seen: Vec<String> = lab
        .forwarded()
        .into_iter()
        .map(|s| s.path_and_query)
        .collect();
    assert_eq!(
        seen,
        [
            "/_matrix/client/v3/createRoom",
            "/_matrix/client/v3/rooms/!r:hs1.test/invite",
            "/_matrix/client/v1/media/download/hs2.test/abc"
        ]
    );
    lab.stop().await;
}

#[tokio::test]
async fn local_invites_follow_the_invitees_permission_config() {
    let configs = vec![
        // block all, but Alice is excepted: passes
        (
            "@carol:hs1.test",
            json!({"defaultSetting": "block all", "userExceptions": {"@alice:hs1.test": {}}}),
        ),
        // block all: refused
        (
            "@dave:hs1.test",
            json!({"defaultSetting": "block all", "userExceptions": {"@bob:hs2.test": {}}}),
        ),
        // allow all except Alice's server: refused
        (
            "@erin:hs1.test",
            json!({"defaultSetting": "allow all", "serverExceptions": {"hs1.test": {}}}),
        ),
        // unreadable: refused (fail closed)
        ("@gina:hs1.test", json!({"defaultSetting": "sometimes"})),
    ];
    let lab = lab_with("", Some(LISTED), configs).await;
    let invite = |who: &str| format!(r#"{{"user_id":"{who}"}}"#);
    let path = "/_matrix/client/v3/rooms/!r:hs1.test/invite";
    let g = lab
        .req(
            "POST",
            path,
            Some(ALICE_TOKEN),
            invite("@carol:hs1.test").as_bytes(),
        )
        .await;
    assert_eq!(g.status, 200, "{:?}", g.json());
    // frank has no config: allow all.
    let g = lab
        .req(
            "POST",
            path,
            Some(ALICE_TOKEN),
            invite("@frank:hs1.test").as_bytes(),
        )
        .await;
    assert_eq!(g.status, 200, "{:?}", g.json());
    let before = lab.ti_refusals("invite_refused").await;
    for who in ["@dave:hs1.test", "@erin:hs1.test"] {
        let g = lab
            .req("POST", path, Some(ALICE_TOKEN), invite(who).as_bytes())
            .await;
        assert_eq!(
            (g.status, g.errcode().as_str()),
            (403, "M_FORBIDDEN"),
            "{who}"
        );
        assert!(g.json()["error"]
            .as_str()
            .unwrap()
            .contains("does not accept invites"));
    }
    // The same decision through createRoom and member state.
    let g = lab
        .req(
            "POST",
            "/_matrix/client/v3/createRoom",
            Some(ALICE_TOKEN),
            br#"{"invite":["@dave:hs1.test"]}"#,
        )
        .await;
    assert_eq!(g.status, 403);
    let g = lab
        .req(
            "PUT",
            "/_matrix/client/v3/rooms/!r:hs1.test/state/m.room.member/%40erin%3Ahs1.test",
            Some(ALICE_TOKEN),
            br#"{"membership":"invite"}"#,
        )
        .await;
    assert_eq!(g.status, 403);
    assert_eq!(lab.ti_refusals("invite_refused").await - before, 4.0);
    let unreadable = lab.ti_refusals("permissions_unreadable").await;
    let g = lab
        .req(
            "POST",
            path,
            Some(ALICE_TOKEN),
            invite("@gina:hs1.test").as_bytes(),
        )
        .await;
    assert_eq!(g.status, 403);
    assert_eq!(
        lab.ti_refusals("permissions_unreadable").await - unreadable,
        1.0
    );
    let g = lab
        .req(
            "POST",
            "/_matrix/client/v3/createRoom",
            Some(ALICE_TOKEN),
            br#"{"invite":["@carol:hs1.test"],"preset":"trusted_private_chat"}"#,
        )
        .await;
    assert_eq!(g.status, 200);
    let seen: Vec<String> = lab
        .forwarded()
        .into_iter()
        .map(|s| s.path_and_query)
        .collect();
    assert_eq!(seen, [path, path, "/_matrix/client/v3/createRoom"]);
    // Alice was asked for once; the answer was reused.
    assert_eq!(lab.whoami_asked(), 1);
    lab.stop().await;
}

#[tokio::test]
async fn insured_person_group_exception() {
    // hs1 is an insurance's server here: its users are insured persons.
    let list: &[(&str, bool)] = &[("hs1.test", true), ("hs2.test", false)];
    let configs = vec![
        (
            "@carol:hs1.test",
            json!({"defaultSetting": "block all", "groupExceptions": [{"groupName": "isInsuredPerson"}]}),
        ),
        (
            "@dave:hs1.test",
            json!({"defaultSetting": "allow all", "groupExceptions": [{"groupName": "isInsuredPerson"}]}),
        ),
    ];
    let lab = lab_with("", Some(list), configs).await;
    let path = "/_matrix/client/v3/rooms/!r:hs1.test/invite";
    let g = lab
        .req(
            "POST",
            path,
            Some(ALICE_TOKEN),
            br#"{"user_id":"@carol:hs1.test"}"#,
        )
        .await;
    assert_eq!(g.status, 200, "{:?}", g.json());
    let g = lab
        .req(
            "POST",
            path,
            Some(ALICE_TOKEN),
            br#"{"user_id":"@dave:hs1.test"}"#,
        )
        .await;
    assert_eq!(g.status, 403);
    assert_eq!(lab.forwarded().len(), 1);
    lab.stop().await;
}

#[tokio::test]
async fn only_rooms_without_federation_are_published_in_the_directory() {
    let lab = lab_with("", Some(LISTED), Vec::new()).await;
    let before = lab.ti_refusals("client_rule").await;
    let public = br#"{"visibility":"public"}"#;
    let g = lab
        .req(
            "PUT",
            "/_matrix/client/v3/directory/list/room/%21fed%3Ahs1.test",
            Some(ALICE_TOKEN),
            public,
        )
        .await;
    assert_eq!((g.status, g.errcode().as_str()), (403, "M_FORBIDDEN"));
    // The homeserver cannot say (the token is not allowed to read the room): refused too.
    let g = lab
        .req(
            "PUT",
            "/_matrix/client/v3/directory/list/room/!nofed:hs1.test",
            Some("tok-other"),
            public,
        )
        .await;
    assert_eq!(g.status, 403);
    assert_eq!(lab.ti_refusals("client_rule").await - before, 2.0);
    assert!(lab.forwarded().is_empty());
    let g = lab
        .req(
            "PUT",
            "/_matrix/client/r0/directory/list/room/!nofed:hs1.test",
            Some(ALICE_TOKEN),
            public,
        )
        .await;
    assert_eq!(g.status, 200);
    // Unpublishing needs no question.
    let g = lab
        .req(
            "PUT",
            "/_matrix/client/v3/directory/list/room/!fed:hs1.test",
            Some(ALICE_TOKEN),
            br#"{"visibility":"private"}"#,
        )
        .await;
    assert_eq!(g.status, 200);
    let seen: Vec<String> = lab
        .forwarded()
        .into_iter()
        .map(|s| s.path_and_query)
        .collect();
    assert_eq!(
        seen,
        [
            "/_matrix/client/r0/directory/list/room/!nofed:hs1.test",
            "/_matrix/client/v3/directory/list/room/!fed:hs1.test"
        ]
    );
    // Another server's room directory: only of listed servers.
    let g = lab
        .req(
            "GET",
            "/_matrix/client/v3/publicRooms?limit=5&server=hs3.test",
            Some(ALICE_TOKEN),
            b"",
        )
        .await;
    assert_eq!(g.status, 403);
    let g = lab
        .req(
            "POST",
            "/_matrix/client/v3/publicRooms?server=hs3%2Etest",
            Some(ALICE_TOKEN),
            b"{}",
        )
        .await;
    assert_eq!(g.status, 403);
    let g = lab
        .req(
            "GET",
            "/_matrix/client/v3/publicRooms?server=hs2.test",
            Some(ALICE_TOKEN),
            b"",
        )
        .await;
    assert_eq!(g.status, 200);
    let g = lab
        .req(
            "GET",
            "/_matrix/client/v3/publicRooms",
            Some(ALICE_TOKEN),
            b"",
        )
        .await;
    assert_eq!(g.status, 200);
    assert_eq!(lab.forwarded().len(), 4);
    lab.stop().await;
}

/// Sends raw bytes on a fresh connection and reads what comes back within `wait` (until the
/// peer closes or `wait` is over).
async fn raw_exchange(addr: SocketAddr, send: &[u8], wait: std::time::Duration) -> String {
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    let mut tcp = tokio::net::TcpStream::connect(addr).await.unwrap();
    tcp.write_all(send).await.unwrap();
    let mut out = Vec::new();
    let _ = tokio::time::timeout(wait, tcp.read_to_end(&mut out)).await;
    String::from_utf8_lossy(&out).into_owned()
}

#[tokio::test]
async fn admission_caps_and_timeouts_apply_to_the_client_listener() {
    let lab = lab(
        "[admission]\ninbound_max_connections_per_ip = 2\nheader_timeout_ms = 400\nbody_timeout_ms = 400\n",
    )
    .await;
    let wait = std::time::Duration::from_secs(5);
    // A head that never completes: the connection is closed at the head timeout.
    let t0 = std::time::Instant::now();
    let got = raw_exchange(
        lab.client,
        b"GET /_matrix/client/v3/sync HTTP/1.1\r\nHost: x\r\n",
        wait,
    )
    .await;
    assert!(
        t0.elapsed() < std::time::Duration::from_secs(4),
        "closed at the head timeout"
    );
    assert!(!got.contains("200"), "{got}");
    // An inspected body that stops: 408, nothing forwarded.
    let got = raw_exchange(
        lab.client,
        b"POST /_matrix/client/v3/createRoom HTTP/1.1\r\nHost: x\r\nContent-Length: 100\r\n\r\n{\"name\":",
        wait,
    )
    .await;
    assert!(got.starts_with("HTTP/1.1 408"), "{got}");
    // A streamed body that stops: cut off after the idle time, never complete upstream.
    let got = raw_exchange(
        lab.client,
        b"POST /_matrix/media/v3/upload HTTP/1.1\r\nHost: x\r\nContent-Length: 100\r\n\r\n0123456789",
        wait,
    )
    .await;
    assert!(!got.contains(" 200 "), "{got}");
    assert!(lab.forwarded().iter().all(|s| s.body.len() < 100));
    assert!(!lab
        .forwarded()
        .iter()
        .any(|s| s.path_and_query.contains("createRoom")));
    // Two idle connections from 127.0.0.1 are the cap: a third is answered 503 and closed.
    let a = tokio::net::TcpStream::connect(lab.client).await.unwrap();
    let b = tokio::net::TcpStream::connect(lab.client).await.unwrap();
    tokio::time::sleep(std::time::Duration::from_millis(100)).await;
    let got = raw_exchange(
        lab.client,
        b"GET /_matrix/client/versions HTTP/1.1\r\nHost: x\r\n\r\n",
        wait,
    )
    .await;
    assert!(got.starts_with("HTTP/1.1 503"), "{got}");
    assert!(got.contains("M_LIMIT_EXCEEDED"), "{got}");
    drop((a, b));
    tokio::time::sleep(std::time::Duration::from_millis(100)).await;
    let g = lab.req("GET", "/_matrix/client/versions", None, b"").await;
    assert_eq!(g.status, 200);
    lab.stop().await;
}

#[tokio::test]
async fn an_application_service_invites_as_the_user_it_names() {
    let configs = vec![(
        "@dave:hs1.test",
        json!({"defaultSetting": "block all", "userExceptions": {"@carol:hs1.test": {}}}),
    )];
    let lab = lab_with("", Some(LISTED), configs).await;
    let body = br#"{"user_id":"@dave:hs1.test"}"#;
    let path = "/_matrix/client/v3/rooms/!r:hs1.test/invite";
    let g = lab
        .req(
            "POST",
            &format!("{path}?user_id=%40carol%3Ahs1.test"),
            Some("tok-appservice"),
            body,
        )
        .await;
    assert_eq!(g.status, 200, "{:?}", g.json());
    // The same token for another user is another question (not the cached answer).
    let g = lab
        .req(
            "POST",
            &format!("{path}?user_id=@erin:hs1.test"),
            Some("tok-appservice"),
            body,
        )
        .await;
    assert_eq!(g.status, 403);
    let g = lab.req("POST", path, Some("tok-appservice"), body).await;
    assert_eq!(g.status, 403);
    assert_eq!(lab.whoami_asked(), 3);
    assert_eq!(lab.forwarded().len(), 1);
    lab.stop().await;
}

#[tokio::test]
async fn a_client_listener_whose_tls_files_do_not_load_is_a_start_error() {
    let p = pki();
    let tpki = grenzwacht::ti::testpki::TestPki::generate(
        std::time::SystemTime::now() - std::time::Duration::from_secs(60),
        std::time::SystemTime::now() + std::time::Duration::from_secs(3600),
    );
    tpki.write_files(p.dir.path()).unwrap();
    let toml = ti_toml(
        &p,
        "127.0.0.1:9".parse().unwrap(),
        &format!(
            "client_tls_cert = \"{}/missing.crt\"\nclient_tls_key = \"{}\"\n",
            p.dir.path().display(),
            p.key.display()
        ),
    );
    let path = p.dir.path().join("guard.toml");
    std::fs::write(&path, toml).unwrap();
    let cfg = grenzwacht::config::Config::load(&path).unwrap();
    let err = grenzwacht::proxy::Guard::from_config(
        &cfg,
        grenzwacht::store::Store::open_in_memory().unwrap(),
    )
    .err()
    .expect("refused");
    let msg = err.to_string();
    assert!(
        msg.contains("client listener") && msg.contains("missing.crt"),
        "{msg}"
    );
}

#[tokio::test]
async fn http2_over_tls_by_alpn() {
    let p = pki();
    let extra = format!(
        "client_tls_cert = \"{}\"\nclient_tls_key = \"{}\"\n",
        p.cert.display(),
        p.key.display()
    );
    let lab = lab(&extra).await;
    let mut cfg =
        (*grenzwacht::proxy::tls::client_config(std::slice::from_ref(&p.ca_path)).unwrap()).clone();
    cfg.alpn_protocols = vec![b"h2".to_vec()];
    let tcp = tokio::net::TcpStream::connect(lab.client).await.unwrap();
    let tls = tokio_rustls::TlsConnector::from(Arc::new(cfg))
        .connect(
            rustls::pki_types::ServerName::try_from("127.0.0.1").unwrap(),
            tcp,
        )
        .await
        .unwrap();
    assert_eq!(tls.get_ref().1.alpn_protocol(), Some(&b"h2"[..]));
    let (mut sender, conn) = hyper::client::conn::http2::handshake(
        hyper_util::rt::TokioExecutor::new(),
        TokioIo::new(tls),
    )
    .await
    .unwrap();
    tokio::spawn(conn);
    let req = http::Request::post("https://hs1.test/_matrix/client/v3/createRoom")
        .header("authorization", format!("Bearer {ALICE_TOKEN}"))
        .body(Full::new(Bytes::from_static(
            br#"{"preset":"public_chat"}"#,
        )))
        .unwrap();
    let r = sender.send_request(req).await.unwrap();
    assert_eq!(r.status(), 200);
    let seen = lab.forwarded();
    assert_eq!(seen.len(), 1);
    let fwd: serde_json::Value = serde_json::from_slice(&seen[0].body).unwrap();
    assert_eq!(fwd["creation_content"]["m.federate"], json!(false));
    lab.stop().await;
}
