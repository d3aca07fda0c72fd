//! Paused rooms, in process: a real guard (with a store file) between real sockets and a
//! recording upstream. A v11 room whose `m.room.create` content carries a marking: the create
//! event does not cross, the room is paused, later events of it are withheld with per-PDU
//! errors, other rooms go on, fetches answer 404, the pause survives a restart and lifting it
//! works.
mod common;

use std::sync::Arc;
use std::time::Duration;

use common::*;
use grenzwacht::config::Config;
use grenzwacht::federation::xmatrix;
use grenzwacht::keys::SigningKey;
use grenzwacht::proxy::{Guard, Listeners};
use grenzwacht::store::Store;
use serde_json::json;

const HS1: &str = "hs1.test";
const REMOTE: &str = "remote.test";
const ROOM_A: &str = "!a:remote.test";
const ROOM_B: &str = "!b:remote.test";
const ROOM_C: &str = "!c:hs1.test";

fn toml(
    p: &Pki,
    upstream: std::net::SocketAddr,
    gk: &std::path::Path,
    store: &std::path::Path,
) -> String {
    format!(
        r#"
[admin]
listen = "127.0.0.1:0"
[inbound]
listen = "127.0.0.1:0"
verify_signatures = false
[keys]
verify_pdus = false
guard_key = "{gk}"
[store]
path = "{store}"
[[protected]]
server_name = "{HS1}"
cert = "{cert}"
key = "{key}"
upstream = "http://{upstream}"
[[rule]]
id = "geheim"
keywords = ["GEHEIM"]
action = "redact"
"#,
        gk = gk.display(),
        store = store.display(),
        cert = p.cert.display(),
        key = p.key.display()
    )
}

struct Running {
    inbound: Option<std::net::SocketAddr>,
    admin: std::net::SocketAddr,
    stop: tokio::sync::oneshot::Sender<()>,
    task: tokio::task::JoinHandle<()>,
}

impl Running {
    async fn stop(self) {
        let _ = self.stop.send(());
        let _ = self.task.await;
    }
}

/// As `common::start_guard`, with the configured store file (pauses must persist).
async fn start(p: &Pki, toml: &str) -> Running {
    let path = p
        .dir
        .path()
        .join(format!("guard-{}.toml", rand::random::<u32>()));
    std::fs::write(&path, toml).unwrap();
    let cfg = Config::load(&path).unwrap_or_else(|e| panic!("config: {e}"));
    let guard = Arc::new(Guard::from_config(&cfg, Store::open(&cfg.store.path).unwrap()).unwrap());
    let listeners = Listeners::bind(&cfg).await.unwrap();
    let inbound = listeners.inbound.as_ref().map(|l| l.local_addr().unwrap());
    let admin = listeners.admin.as_ref().unwrap().local_addr().unwrap();
    let (tx, rx) = tokio::sync::oneshot::channel::<()>();
    let task = tokio::spawn(grenzwacht::proxy::serve(guard, listeners, async move {
        let _ = rx.await;
    }));
    Running {
        inbound,
        admin,
        stop: tx,
        task,
    }
}

fn ev(
    room: &str,
    depth: usize,
    ty: &str,
    state_key: Option<&str>,
    content: serde_json::Value,
) -> serde_json::Value {
    let server = room.split_once(':').unwrap().1;
    let mut v = json!({
        "auth_events": [], "prev_events": [], "depth": depth, "hashes": {"sha256": "x"}, "origin_server_ts": depth,
        "room_id": room, "sender": format!("@a:{server}"), "type": ty, "content": content, "signatures": {}
    });
    if let Some(k) = state_key {
        v["state_key"] = k.into();
    }
    v
}

fn create(room: &str, marked: bool) -> serde_json::Value {
    let mut c = json!({"room_version": "11"});
    if marked {
        c["org.example.note"] = json!("Einstufung: GEHEIM");
    }
    ev(room, 1, "m.room.create", Some(""), c)
}

fn msg(room: &str, depth: usize, body: &str) -> serde_json::Value {
    ev(
        room,
        depth,
        "m.room.message",
        None,
        json!({"msgtype": "m.text", "body": body}),
    )
}

fn txn(pdus: Vec<serde_json::Value>, edus: Vec<serde_json::Value>) -> Vec<u8> {
    serde_json::to_vec(
        &json!({"origin": REMOTE, "origin_server_ts": 1, "pdus": pdus, "edus": edus}),
    )
    .unwrap()
}

fn typing(room: &str) -> serde_json::Value {
    json!({"edu_type": "m.typing", "content": {"room_id": room, "user_id": "@a:remote.test", "typing": true}})
}

/// The event id (v11 reference hash) of `pdu`.
fn event_id(pdu: &serde_json::Value) -> String {
    let s = Store::open_in_memory().unwrap();
    s.set_room_version(pdu["room_id"].as_str().unwrap(), "11", "test")
        .unwrap();
    let raw = serde_json::value::to_raw_value(pdu).unwrap();
    grenzwacht::proxy::pause::event_id_of(&s, &raw).unwrap()
}

fn gauge(metrics: &str, direction: &str) -> f64 {
    counter(
        metrics,
        "grenzwacht_paused_rooms",
        &[("direction", direction)],
    )
}

#[tokio::test]
async fn marked_create_content_pauses_the_room_other_rooms_go_on_and_an_operator_lifts_it() {
    let p = pki();
    let c_create = create(ROOM_C, true);
    let c_msg = msg(ROOM_C, 2, "hallo");
    let (cc, cm) = (c_create.clone(), c_msg.clone());
    // hs1 (the upstream) answers fetches with room C's events.
    let answer: Answer = Arc::new(move |s: &Seen| {
        let pq = &s.path_and_query;
        if pq.starts_with("/_matrix/federation/v1/send/") {
            (200, "application/json", br#"{"pdus":{}}"#.to_vec())
        } else if pq.starts_with("/_matrix/federation/v1/state/") {
            (
                200,
                "application/json",
                serde_json::to_vec(&json!({"pdus": [cc], "auth_chain": []})).unwrap(),
            )
        } else if pq.starts_with("/_matrix/federation/v1/event/") {
            (
                200,
                "application/json",
                serde_json::to_vec(&json!({"origin": HS1, "origin_server_ts": 5, "pdus": [cm]}))
                    .unwrap(),
            )
        } else {
            (
                200,
                "application/json",
                br#"{"pdus":[],"origin":"hs1.test","origin_server_ts":1}"#.to_vec(),
            )
        }
    });
    let up = recorder(None, answer).await;
    let guard_key = SigningKey::generate("gw1").unwrap();
    let gk = p.dir.path().join("guard.signing.key");
    std::fs::write(&gk, guard_key.to_synapse_string()).unwrap();
    let store_path = p.dir.path().join("gw.db");
    let cfg = toml(&p, up.addr, &gk, &store_path);
    let g = start(&p, &cfg).await;
    let key = SigningKey::generate("r1").unwrap();
    let send = |addr: std::net::SocketAddr, txn_id: &str, body: Vec<u8>| {
        let uri = format!("/_matrix/federation/v1/send/{txn_id}");
        let hdr = xmatrix::sign_request(
            &key,
            REMOTE,
            HS1,
            "PUT",
            &uri,
            Some(
                &*serde_json::value::to_raw_value(
                    &serde_json::from_slice::<serde_json::Value>(&body).unwrap(),
                )
                .unwrap(),
            ),
        )
        .unwrap();
        let ca = p.ca_path.clone();
        async move { tls_request(addr, &ca, "PUT", &uri, &[("authorization", hdr)], body).await }
    };
    let get = |addr: std::net::SocketAddr, uri: String| {
        let hdr = xmatrix::sign_request(&key, REMOTE, HS1, "GET", &uri, None).unwrap();
        let ca = p.ca_path.clone();
        async move { tls_request(addr, &ca, "GET", &uri, &[("authorization", hdr)], vec![]).await }
    };
    let forwarded = |up: &Recorder| -> serde_json::Value {
        serde_json::from_slice(&up.seen().last().unwrap().body).unwrap()
    };

    // 1. Room A's create event carries the marking in what v11 redaction keeps: it does not
    //    cross, room A is paused inbound; room B's event in the same transaction crosses.
    let a_create = create(ROOM_A, true);
    let got = send(
        g.inbound.unwrap(),
        "t1",
        txn(vec![a_create.clone(), msg(ROOM_B, 1, "eins")], vec![]),
    )
    .await;
    assert_eq!(got.status, 200, "{}", String::from_utf8_lossy(&got.body));
    let a_create_id = event_id(&a_create);
    assert!(
        got.json()["pdus"][&a_create_id]["error"].is_string(),
        "per-PDU error for the withheld create: {}",
        got.json()
    );
    let fwd = forwarded(&up);
    assert_eq!(fwd["pdus"].as_array().unwrap().len(), 1, "{fwd}");
    assert_eq!(fwd["pdus"][0]["room_id"], ROOM_B);
    assert!(
        !up.seen()
            .iter()
            .any(|s| String::from_utf8_lossy(&s.body).contains("GEHEIM")),
        "the marking never reached the upstream"
    );
    // The forwarded transaction is re-signed by the guard key over the new body.
    let last = up.seen().last().unwrap().clone();
    let x = xmatrix::XMatrix::parse(last.headers.get("authorization").unwrap().to_str().unwrap())
        .unwrap();
    let raw: Box<serde_json::value::RawValue> = serde_json::from_slice(&last.body).unwrap();
    xmatrix::verify_request(
        &x,
        "PUT",
        "/_matrix/federation/v1/send/t1",
        Some(&raw),
        &guard_key.public_key(),
    )
    .expect("guard signature verifies");
    let m = metrics(g.admin).await;
    assert_eq!(gauge(&m, "inbound"), 1.0, "{m}");
    assert!(
        counter(
            &m,
            "grenzwacht_withheld_pdus_total",
            &[("direction", "inbound"), ("cause", "redaction_kept")]
        ) >= 1.0,
        "{m}"
    );

    // 2. Later events of room A (and its typing notifications) are withheld; room B goes on.
    let a_msg = msg(ROOM_A, 2, "ganz harmlos");
    let t2 = txn(
        vec![a_msg.clone(), msg(ROOM_B, 2, "zwei")],
        vec![typing(ROOM_A), typing(ROOM_B)],
    );
    let got = send(g.inbound.unwrap(), "t2", t2.clone()).await;
    assert_eq!(got.status, 200);
    let a_msg_id = event_id(&a_msg);
    assert!(
        got.json()["pdus"][&a_msg_id]["error"].is_string(),
        "{}",
        got.json()
    );
    let fwd = forwarded(&up);
    assert_eq!(
        fwd["pdus"]
            .as_array()
            .unwrap()
            .iter()
            .map(|p| p["room_id"].as_str().unwrap())
            .collect::<Vec<_>>(),
        vec![ROOM_B]
    );
    assert_eq!(
        fwd["edus"]
            .as_array()
            .unwrap()
            .iter()
            .map(|e| e["content"]["room_id"].as_str().unwrap())
            .collect::<Vec<_>>(),
        vec![ROOM_B]
    );
    let first = up.seen().last().unwrap().body.clone();
    // A retry gets the same answer: the same forwarded bytes, the same per-PDU error.
    let again = send(g.inbound.unwrap(), "t2", t2.clone()).await;
    assert_eq!(again.json(), got.json());
    assert_eq!(up.seen().last().unwrap().body, first);
    let m = metrics(g.admin).await;
    assert!(
        counter(
            &m,
            "grenzwacht_withheld_pdus_total",
            &[("direction", "inbound"), ("cause", "paused")]
        ) >= 1.0,
        "{m}"
    );

    // 3. Outbound: hs1's answer to a state fetch carries room C's marked create event: 404, and
    //    room C is paused outbound; every later fetch of its events answers 404.
    let n = up.seen().len();
    let got = get(
        g.inbound.unwrap(),
        format!("/_matrix/federation/v1/state/{ROOM_C}?event_id=%24x"),
    )
    .await;
    assert_eq!(
        (got.status, got.errcode().as_str()),
        (404, "M_NOT_FOUND"),
        "{}",
        String::from_utf8_lossy(&got.body)
    );
    assert!(!String::from_utf8_lossy(&got.body).contains("GEHEIM"));
    let got = get(
        g.inbound.unwrap(),
        "/_matrix/federation/v1/event/%24m".to_string(),
    )
    .await;
    assert_eq!(
        (got.status, got.errcode().as_str()),
        (404, "M_NOT_FOUND"),
        "an event of room C"
    );
    for uri in [
        format!("/_matrix/federation/v1/backfill/{ROOM_C}?v=%24x&limit=10"),
        format!("/_matrix/federation/v1/state_ids/{ROOM_C}?event_id=%24x"),
        format!("/_matrix/federation/v1/make_join/{ROOM_C}/%40b%3Aremote.test?ver=11"),
    ] {
        let got = get(g.inbound.unwrap(), uri.clone()).await;
        assert_eq!(
            (got.status, got.errcode().as_str()),
            (404, "M_NOT_FOUND"),
            "{uri}"
        );
    }
    assert_eq!(
        up.seen().len(),
        n + 2,
        "fetches naming room C in the path never reach hs1"
    );
    let m = metrics(g.admin).await;
    assert_eq!(gauge(&m, "outbound"), 1.0, "{m}");

    // 4. The pauses survive a restart of the guard.
    g.stop().await;
    let g = start(&p, &cfg).await;
    let got = send(
        g.inbound.unwrap(),
        "t3",
        txn(vec![msg(ROOM_A, 3, "drei"), msg(ROOM_B, 3, "drei")], vec![]),
    )
    .await;
    assert_eq!(
        got.json()["pdus"].as_object().unwrap().len(),
        1,
        "{}",
        got.json()
    );
    assert_eq!(forwarded(&up)["pdus"].as_array().unwrap().len(), 1);
    let got = get(
        g.inbound.unwrap(),
        "/_matrix/federation/v1/event/%24m".to_string(),
    )
    .await;
    assert_eq!(got.status, 404);
    let m = metrics(g.admin).await;
    assert_eq!(
        (gauge(&m, "inbound"), gauge(&m, "outbound")),
        (1.0, 1.0),
        "{m}"
    );

    // 5. The operator lifts both pauses in another process (another connection to the file);
    //    the running guard notices within a second.
    let operator = Store::open(&store_path).unwrap();
    let listed = operator.room_pauses().unwrap();
    assert_eq!(listed.len(), 2);
    assert!(
        listed.iter().any(|p| p.direction == "inbound"
            && p.room_id == ROOM_A
            && p.event_id.as_deref() == Some(a_create_id.as_str())
            && p.rule == "geheim"),
        "{listed:?}"
    );
    assert!(
        listed
            .iter()
            .any(|p| p.direction == "outbound" && p.room_id == ROOM_C),
        "{listed:?}"
    );
    assert_eq!(
        grenzwacht::proxy::pause::lift(&operator, None, ROOM_A)
            .unwrap()
            .len(),
        1
    );
    assert_eq!(
        grenzwacht::proxy::pause::lift(&operator, None, ROOM_C)
            .unwrap()
            .len(),
        1
    );
    tokio::time::sleep(grenzwacht::proxy::pause::RELOAD_INTERVAL + Duration::from_millis(300))
        .await;
    let got = send(
        g.inbound.unwrap(),
        "t4",
        txn(vec![msg(ROOM_A, 4, "vier")], vec![]),
    )
    .await;
    assert_eq!(got.json(), json!({"pdus": {}}), "room A crosses again");
    assert_eq!(forwarded(&up)["pdus"][0]["room_id"], ROOM_A);
    let got = get(
        g.inbound.unwrap(),
        "/_matrix/federation/v1/event/%24m".to_string(),
    )
    .await;
    assert_eq!(got.status, 200, "room C's clean event is fetched again");
    let m = metrics(g.admin).await;
    assert_eq!(
        (gauge(&m, "inbound"), gauge(&m, "outbound")),
        (0.0, 0.0),
        "{m}"
    );
    g.stop().await;
}
