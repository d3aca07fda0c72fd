//! Hold queues, in process: a real guard (with a store file) between real sockets, hs1 sending
//! through the outbound proxy listener to a fake remote. A message marked `VS-VERTRAULICH`
//! (rule action `hold`) leaves its transaction (success to hs1), later messages of its room
//! queue behind it, other rooms flow, fetches of the room answer 404; the queue survives a
//! restart; a release from another connection to the store file delivers the original PDU
//! and then the waiting one in a transaction of the guard's own, signed with hs1's key; a
//! rejection delivers it redacted. Four-eyes, clearance and the review timeout are checked on
//! the hold queue itself.
mod common;

use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::Duration;

use common::*;
use grenzwacht::config::review::{ReviewConfig, TimeoutDecision};
use grenzwacht::config::Config;
use grenzwacht::federation::xmatrix;
use grenzwacht::keys::SigningKey;
use grenzwacht::proxy::hold::HoldQueue;
use grenzwacht::proxy::{Guard, Listeners};
use grenzwacht::review::{Decision, HoldState, Outcome, Principal, ReviewError, ReviewQueue, Role};
use grenzwacht::store::{NewHold, Store};
use serde_json::json;

const HS1: &str = "hs1.test";
const REMOTE: &str = "remote.test";
const ROOM_A: &str = "!a:hs1.test";
const ROOM_B: &str = "!b:hs1.test";
const SEND: &str = "/_matrix/federation/v1/send/";

fn toml(
    p: &Pki,
    hs1: std::net::SocketAddr,
    remote: std::net::SocketAddr,
    hk: &std::path::Path,
    store: &std::path::Path,
    review: &str,
) -> String {
    format!(
        r#"
[admin]
listen = "127.0.0.1:0"
[inbound]
listen = "127.0.0.1:0"
verify_signatures = false
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
verify_pdus = false
[store]
path = "{store}"
[[rule]]
id = "vs"
keywords = ["VS-VERTRAULICH"]
action = "hold"
[review]
delivery_backoff_initial_ms = 100
delivery_backoff_max_ms = 400
{review}
"#,
        cert = p.cert.display(),
        key = p.key.display(),
        ca = p.ca_path.display(),
        hk = hk.display(),
        store = store.display(),
    )
}

struct Running {
    proxy: std::net::SocketAddr,
    inbound: std::net::SocketAddr,
    admin: std::net::SocketAddr,
    guard: Arc<Guard>,
    stop: tokio::sync::oneshot::Sender<()>,
    task: tokio::task::JoinHandle<()>,
}

impl Running {
    async fn stop(self) {
        drop(self.guard);
        let _ = self.stop.send(());
        let _ = self.task.await;
    }
}

/// A guard over the configured store file (queues must persist).
async fn start(p: &Pki, toml: &str) -> Running {
    let path = p
        .dir
        .path()
        .join(format!("guard-{}.toml", rand::random::<u32>()));
    std::fs::write(&path, toml).unwrap();
    let cfg = Config::load(&path).unwrap_or_else(|e| panic!("config: {e}"));
    let guard = Arc::new(Guard::from_config(&cfg, Store::open(&cfg.store.path).unwrap()).unwrap());
    let listeners = Listeners::bind(&cfg).await.unwrap();
    let proxy = listeners
        .proxy
        .as_ref()
        .map(|l| l.local_addr().unwrap())
        .unwrap_or_else(|| "127.0.0.1:9".parse().unwrap());
    let inbound = listeners.inbound.as_ref().unwrap().local_addr().unwrap();
    let admin = listeners.admin.as_ref().unwrap().local_addr().unwrap();
    let (tx, rx) = tokio::sync::oneshot::channel::<()>();
    let task = tokio::spawn(grenzwacht::proxy::serve(
        guard.clone(),
        listeners,
        async move {
            let _ = rx.await;
        },
    ));
    Running {
        proxy,
        inbound,
        admin,
        guard,
        stop: tx,
        task,
    }
}

fn msg(room: &str, depth: u64, body: &str) -> serde_json::Value {
    json!({
        "auth_events": [], "prev_events": [], "depth": depth, "hashes": {"sha256": "x"},
        "origin_server_ts": 1_700_000_000_000u64 + depth, "room_id": room, "sender": "@alice:hs1.test",
        "type": "m.room.message", "content": {"msgtype": "m.text", "body": body}, "signatures": {}
    })
}

fn txn(pdus: &[&serde_json::Value]) -> Vec<u8> {
    serde_json::to_vec(&json!({"origin": HS1, "origin_server_ts": 1, "pdus": pdus, "edus": []}))
        .unwrap()
}

/// The event id (v11 reference hash) of `pdu`.
fn event_id(pdu: &serde_json::Value) -> String {
    let s = Store::open_in_memory().unwrap();
    s.set_room_version(pdu["room_id"].as_str().unwrap(), "11", "test")
        .unwrap();
    let raw = serde_json::value::to_raw_value(pdu).unwrap();
    grenzwacht::proxy::pause::event_id_of(&s, &raw).unwrap()
}

/// hs1 sends a transaction through the proxy listener.
async fn send(g: &Running, key: &SigningKey, txn_id: &str, body: Vec<u8>) -> Got {
    let path = format!("{SEND}{txn_id}");
    let hdr = auth(key, HS1, REMOTE, "PUT", &path, Some(&body));
    let target = format!("matrix-federation://{REMOTE}{path}");
    plain_request(
        g.proxy,
        "PUT",
        &target,
        &[
            ("authorization", hdr),
            ("proxy-authorization", "Bearer s3cret".to_string()),
        ],
        body,
    )
    .await
}

/// The remote fetches from hs1 through the inbound listener.
async fn fetch(g: &Running, p: &Pki, key: &SigningKey, path: &str) -> Got {
    let hdr = auth(key, REMOTE, HS1, "GET", path, None);
    tls_request(
        g.inbound,
        &p.ca_path,
        "GET",
        path,
        &[("authorization", hdr)],
        vec![],
    )
    .await
}

/// The transactions the remote received, as (path, body JSON).
fn received(remote: &Recorder) -> Vec<(String, serde_json::Value)> {
    remote
        .seen()
        .iter()
        .filter(|s| s.path_and_query.starts_with(SEND))
        .map(|s| {
            (
                s.path_and_query.clone(),
                serde_json::from_slice(&s.body).unwrap(),
            )
        })
        .collect()
}

fn bodies(pdus: &serde_json::Value) -> Vec<String> {
    pdus.as_array()
        .unwrap()
        .iter()
        .map(|p| {
            p["content"]["body"]
                .as_str()
                .unwrap_or("<redacted>")
                .to_string()
        })
        .collect()
}

fn reviewer(name: &str) -> Principal {
    Principal {
        name: name.into(),
        role: Role::Reviewer,
        clearance: None,
    }
}

struct Peers {
    p: Pki,
    hs1_key: SigningKey,
    remote_key: SigningKey,
    hk: std::path::PathBuf,
    hs1: Recorder,
    remote: Recorder,
    store: std::path::PathBuf,
}

/// hs1 (key server; answers `/event` with a message of room A) and the remote (accepts every
/// transaction); rooms A and B known as version 11.
async fn peers() -> Peers {
    peers_failing(Arc::new(AtomicBool::new(false))).await
}

/// [`peers`], the remote answering 500 to the guard's own transactions while `fail` is set.
async fn peers_failing(fail: Arc<AtomicBool>) -> Peers {
    let p = pki();
    let hs1_key = SigningKey::generate("hs1").unwrap();
    let hk = p.dir.path().join("hs1.signing.key");
    std::fs::write(&hk, hs1_key.to_synapse_string()).unwrap();
    let keys = key_server_answer(HS1, &hs1_key);
    let a_event = msg(ROOM_A, 9, "harmlos");
    // hs1's state of room B carries the message the four-eyes test rejects.
    let b_marked = msg(ROOM_B, 1, "VS-VERTRAULICH zwei");
    // hs1's backfill of room A carries the message the first test holds.
    let a_held = msg(ROOM_A, 1, "VS-VERTRAULICH: Lagebericht");
    let hs1 = recorder(
        None,
        Arc::new(move |s: &Seen| {
            if s.path_and_query
                .starts_with("/_matrix/federation/v1/event/")
            {
                let body = json!({"origin": HS1, "origin_server_ts": 5, "pdus": [a_event]});
                return (200, "application/json", serde_json::to_vec(&body).unwrap());
            }
            if s.path_and_query
                .starts_with("/_matrix/federation/v1/backfill/")
            {
                let body = json!({"origin": HS1, "origin_server_ts": 5, "pdus": [a_held]});
                return (200, "application/json", serde_json::to_vec(&body).unwrap());
            }
            if s.path_and_query
                .starts_with("/_matrix/federation/v1/state/")
            {
                let body = json!({"pdus": [b_marked], "auth_chain": []});
                return (200, "application/json", serde_json::to_vec(&body).unwrap());
            }
            keys(s)
        }),
    )
    .await;
    let remote = recorder(
        Some(acceptor(&p)),
        Arc::new(move |s: &Seen| {
            if s.path_and_query.starts_with(&format!("{SEND}grenzwacht-"))
                && fail.load(Ordering::SeqCst)
            {
                (
                    500,
                    "application/json",
                    br#"{"errcode":"M_UNKNOWN","error":"busy"}"#.to_vec(),
                )
            } else if s.path_and_query.starts_with(SEND) {
                (200, "application/json", br#"{"pdus":{}}"#.to_vec())
            } else {
                (
                    404,
                    "application/json",
                    br#"{"errcode":"M_UNRECOGNIZED","error":"no"}"#.to_vec(),
                )
            }
        }),
    )
    .await;
    let store = p.dir.path().join("gw.db");
    let s = Store::open(&store).unwrap();
    for room in [ROOM_A, ROOM_B] {
        s.set_room_version(room, "11", "test").unwrap();
    }
    Peers {
        p,
        hs1_key,
        remote_key: SigningKey::generate("r1").unwrap(),
        hk,
        hs1,
        remote,
        store,
    }
}

async fn wait_for<T>(what: &str, mut f: impl FnMut() -> Option<T>) -> T {
    for _ in 0..100 {
        if let Some(v) = f() {
            return v;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    panic!("timed out waiting for {what}");
}

#[tokio::test]
async fn held_event_waits_with_its_room_and_a_release_delivers_it_first_across_a_restart() {
    let x = peers().await;
    let cfg = toml(&x.p, x.hs1.addr, x.remote.addr, &x.hk, &x.store, "");
    let g = start(&x.p, &cfg).await;
    let held = msg(ROOM_A, 1, "VS-VERTRAULICH: Lagebericht");
    let later = msg(ROOM_A, 2, "danach");
    let (held_id, later_id) = (event_id(&held), event_id(&later));

    // 1. The held message leaves the transaction; hs1 gets success for it (no per-PDU error).
    let got = send(&g, &x.hs1_key, "t1", txn(&[&held, &msg(ROOM_B, 1, "eins")])).await;
    assert_eq!(got.status, 200, "{}", String::from_utf8_lossy(&got.body));
    assert_eq!(got.json(), json!({"pdus": {}}), "success for every PDU");
    let r = received(&x.remote);
    assert_eq!(r.len(), 1);
    assert_eq!(bodies(&r[0].1["pdus"]), ["eins"]);

    // 2. A later message of room A queues behind it; room B flows. A retry gets the same answer.
    let t2 = txn(&[&later, &msg(ROOM_B, 2, "zwei")]);
    let got = send(&g, &x.hs1_key, "t2", t2.clone()).await;
    assert_eq!((got.status, got.json()), (200, json!({"pdus": {}})));
    assert_eq!(bodies(&received(&x.remote)[1].1["pdus"]), ["zwei"]);
    let again = send(&g, &x.hs1_key, "t2", t2).await;
    assert_eq!((again.status, again.json()), (200, json!({"pdus": {}})));
    assert!(
        !x.remote
            .seen()
            .iter()
            .any(|s| String::from_utf8_lossy(&s.body).contains("VERTRAULICH")
                || String::from_utf8_lossy(&s.body).contains("danach")),
        "nothing of room A reached the remote"
    );

    // 3. Fetches of room A answer 404: by room in the path before hs1 is asked, by the event
    //    in hs1's answer after.
    let n = x.hs1.seen().len();
    let got = fetch(
        &g,
        &x.p,
        &x.remote_key,
        &format!("/_matrix/federation/v1/backfill/{ROOM_A}?v=%24x&limit=10"),
    )
    .await;
    assert_eq!((got.status, got.errcode().as_str()), (404, "M_NOT_FOUND"));
    assert_eq!(x.hs1.seen().len(), n, "hs1 was not asked");
    let got = fetch(&g, &x.p, &x.remote_key, "/_matrix/federation/v1/event/%24e").await;
    assert_eq!(
        (got.status, got.errcode().as_str()),
        (404, "M_NOT_FOUND"),
        "{}",
        String::from_utf8_lossy(&got.body)
    );

    // A hold inside a response (hs1's state of room B carries a marked event): 404, and
    // nothing is held (there is nothing the guard could deliver later).
    let got = fetch(
        &g,
        &x.p,
        &x.remote_key,
        &format!("/_matrix/federation/v1/state/{ROOM_B}?event_id=%24x"),
    )
    .await;
    assert_eq!((got.status, got.errcode().as_str()), (404, "M_NOT_FOUND"));
    assert!(!String::from_utf8_lossy(&got.body).contains("VERTRAULICH"));
    assert!(!g
        .guard
        .holds()
        .is_held(grenzwacht::policy::Direction::Outbound, ROOM_B));

    // 4. The reviewer's view; the gauges.
    let list = g.guard.holds().list(&reviewer("rita"), false).unwrap();
    assert_eq!(list.len(), 1, "{list:?}");
    let h = &list[0];
    assert_eq!(
        (
            h.event_id.as_str(),
            h.room_id.as_str(),
            h.direction.as_str()
        ),
        (held_id.as_str(), ROOM_A, "outbound")
    );
    assert_eq!(
        (h.rules.clone(), h.destinations.clone()),
        (vec!["vs".to_string()], vec![REMOTE.to_string()])
    );
    assert_eq!(h.state, HoldState::Pending);
    let detail = g.guard.holds().show(&reviewer("rita"), h.id).unwrap();
    assert_eq!(
        detail.content.unwrap()["body"],
        "VS-VERTRAULICH: Lagebericht"
    );
    let m = metrics(g.admin).await;
    assert_eq!(
        counter(&m, "grenzwacht_held_events", &[("direction", "outbound")]),
        1.0,
        "{m}"
    );
    assert_eq!(
        counter(
            &m,
            "grenzwacht_hold_queue_depth",
            &[("direction", "outbound")]
        ),
        2.0,
        "{m}"
    );

    // 5. A restart keeps the queue and its order.
    let id = h.id;
    g.stop().await;
    let g = start(&x.p, &cfg).await;
    let key = (
        "outbound".to_string(),
        REMOTE.to_string(),
        ROOM_A.to_string(),
    );
    let q = g.guard.store().hold_queue(&key, 10).unwrap();
    assert_eq!(
        q.iter().map(|e| e.event_id.as_str()).collect::<Vec<_>>(),
        [held_id.as_str(), later_id.as_str()]
    );
    let got = send(&g, &x.hs1_key, "t3", txn(&[&msg(ROOM_A, 3, "drei")])).await;
    assert_eq!((got.status, got.json()), (200, json!({"pdus": {}})));
    assert!(
        received(&x.remote)
            .iter()
            .all(|(_, b)| !bodies(&b["pdus"]).contains(&"drei".to_string())),
        "room A still waits after the restart"
    );

    // 6. A reviewer releases it from another connection to the store file (as another process
    //    would); the running guard delivers the original, then the waiting messages, in order.
    let other = HoldQueue::new(
        Store::open(&x.store).unwrap(),
        ReviewConfig::default(),
        None,
    );
    assert_eq!(
        other
            .decide(&reviewer("rita"), id, Decision::Release, "")
            .unwrap_err(),
        ReviewError::ReasonRequired
    );
    assert_eq!(
        other
            .decide(
                &reviewer("rita"),
                id,
                Decision::Release,
                "geprüft, unbedenklich"
            )
            .unwrap(),
        Outcome::Decided(HoldState::Released)
    );
    let (path, body) = wait_for("the delivered transaction", || {
        received(&x.remote)
            .into_iter()
            .find(|(p, _)| p.starts_with(&format!("{SEND}grenzwacht-")))
    })
    .await;
    assert_eq!(
        bodies(&body["pdus"]),
        ["VS-VERTRAULICH: Lagebericht", "danach", "drei"]
    );
    assert_eq!(body["pdus"][0], held, "the original PDU, unchanged");
    assert_eq!(event_id(&body["pdus"][0]), held_id);
    assert_eq!(body["origin"], HS1);
    // Signed as hs1 over exactly what was sent.
    let seen = x
        .remote
        .seen()
        .into_iter()
        .find(|s| s.path_and_query == path)
        .unwrap();
    let xm = xmatrix::XMatrix::parse(seen.headers.get("authorization").unwrap().to_str().unwrap())
        .unwrap();
    let raw: Box<serde_json::value::RawValue> = serde_json::from_slice(&seen.body).unwrap();
    xmatrix::verify_request(&xm, "PUT", &path, Some(&raw), &x.hs1_key.public_key())
        .expect("hs1's signature verifies");

    // 7. The room flows again; the held event is decided in the list.
    wait_for("the room to flow again", || {
        (!g.guard
            .holds()
            .is_held(grenzwacht::policy::Direction::Outbound, ROOM_A))
        .then_some(())
    })
    .await;
    let got = send(&g, &x.hs1_key, "t4", txn(&[&msg(ROOM_A, 4, "vier")])).await;
    assert_eq!(got.status, 200);
    assert_eq!(
        bodies(&received(&x.remote).last().unwrap().1["pdus"]),
        ["vier"]
    );
    let all = g.guard.holds().list(&reviewer("rita"), true).unwrap();
    assert_eq!(all[0].state, HoldState::Released);
    // An answer carrying the released event follows the decision: it crosses as it is (it was
    // 404 while the event waited).
    let got = fetch(
        &g,
        &x.p,
        &x.remote_key,
        &format!("/_matrix/federation/v1/backfill/{ROOM_A}?v=%24x&limit=10"),
    )
    .await;
    assert_eq!(got.status, 200, "{}", String::from_utf8_lossy(&got.body));
    assert_eq!(got.json()["pdus"][0], held, "released: the original");
    let m = metrics(g.admin).await;
    assert!(
        counter(
            &m,
            "grenzwacht_hold_deliveries_total",
            &[("result", "delivered")]
        ) >= 1.0,
        "{m}"
    );
    assert_eq!(
        counter(
            &m,
            "grenzwacht_hold_queue_depth",
            &[("direction", "outbound")]
        ),
        0.0,
        "{m}"
    );
    assert!(
        counter(
            &m,
            "grenzwacht_review_latency_seconds_count",
            &[("decision", "release")]
        ) >= 1.0,
        "{m}"
    );
    g.stop().await;
}

#[tokio::test]
async fn four_eyes_release_and_a_single_reject_delivers_the_event_redacted() {
    let x = peers().await;
    let cfg = toml(
        &x.p,
        x.hs1.addr,
        x.remote.addr,
        &x.hk,
        &x.store,
        "four_eyes = true",
    );
    // Sender notices on (through hs1's admin API, here the hs1 stand-in).
    let token = x.p.dir.path().join("admin.token");
    std::fs::write(&token, "secret-token\n").unwrap();
    let cfg = cfg.replacen(
        &format!("upstream = \"http://{}\"\n", x.hs1.addr),
        &format!(
            "upstream = \"http://{0}\"\nadmin_api = \"http://{0}\"\nadmin_token_file = \"{1}\"\n",
            x.hs1.addr,
            token.display()
        ),
        1,
    ) + "[notices]\nenabled = true\noutcomes = [\"held\", \"released\", \"rejected\"]\nlanguage = \"en\"\n";
    let g = start(&x.p, &cfg).await;
    let a = msg(ROOM_A, 1, "VS-VERTRAULICH eins");
    let b = msg(ROOM_B, 1, "VS-VERTRAULICH zwei");
    let got = send(&g, &x.hs1_key, "t1", txn(&[&a, &b])).await;
    assert_eq!((got.status, got.json()), (200, json!({"pdus": {}})));
    assert!(received(&x.remote).is_empty() || bodies(&received(&x.remote)[0].1["pdus"]).is_empty());
    let q = g.guard.holds();
    let list = q.list(&reviewer("rita"), false).unwrap();
    assert_eq!(list.len(), 2);
    assert!(list.iter().all(|h| h.four_eyes));
    let id_of = |room: &str| list.iter().find(|h| h.room_id == room).unwrap().id;
    let (ia, ib) = (id_of(ROOM_A), id_of(ROOM_B));

    // Four-eyes: one release waits for a second, different reviewer.
    assert_eq!(
        q.decide(&reviewer("rita"), ia, Decision::Release, "ok")
            .unwrap(),
        Outcome::AwaitingSecond
    );
    assert_eq!(
        q.decide(&reviewer("rita"), ia, Decision::Release, "ok")
            .unwrap_err(),
        ReviewError::SameReviewer
    );
    let auditor = Principal {
        name: "anna".into(),
        role: Role::Auditor,
        clearance: None,
    };
    assert_eq!(
        q.decide(&auditor, ia, Decision::Release, "ok").unwrap_err(),
        ReviewError::Forbidden
    );
    tokio::time::sleep(Duration::from_millis(500)).await;
    assert!(
        !received(&x.remote)
            .iter()
            .any(|(p, _)| p.contains("grenzwacht-")),
        "nothing delivered after one approval"
    );
    assert_eq!(
        q.decide(&reviewer("otto"), ia, Decision::Release, "ok")
            .unwrap(),
        Outcome::Decided(HoldState::Released)
    );
    assert_eq!(
        q.decide(&reviewer("otto"), ia, Decision::Reject, "doch nicht")
            .unwrap_err(),
        ReviewError::AlreadyDecided
    );
    // One reject is final: delivered redacted, same event id.
    assert_eq!(
        q.decide(&reviewer("rita"), ib, Decision::Reject, "enthält VS")
            .unwrap(),
        Outcome::Decided(HoldState::Rejected)
    );
    let delivered = wait_for("both deliveries", || {
        let d: Vec<serde_json::Value> = received(&x.remote)
            .into_iter()
            .filter(|(p, _)| p.contains("grenzwacht-"))
            .flat_map(|(_, b)| b["pdus"].as_array().unwrap().clone())
            .collect();
        (d.len() == 2).then_some(d)
    })
    .await;
    let find = |room: &str| {
        delivered
            .iter()
            .find(|p| p["room_id"] == room)
            .unwrap()
            .clone()
    };
    assert_eq!(find(ROOM_A), a, "released: unchanged");
    let rb = find(ROOM_B);
    assert_eq!(rb["content"], json!({}), "rejected: redacted");
    assert_eq!(event_id(&rb), event_id(&b), "same event id");
    // An answer carrying the rejected event follows the decision: redacted.
    wait_for("room B to flow again", || {
        (!q.is_held(grenzwacht::policy::Direction::Outbound, ROOM_B)).then_some(())
    })
    .await;
    let got = fetch(
        &g,
        &x.p,
        &x.remote_key,
        &format!("/_matrix/federation/v1/state/{ROOM_B}?event_id=%24x"),
    )
    .await;
    assert_eq!(got.status, 200, "{}", String::from_utf8_lossy(&got.body));
    assert_eq!(event_id(&got.json()["pdus"][0]), event_id(&b));
    assert_eq!(
        got.json()["pdus"][0]["content"],
        json!({}),
        "rejected: redacted"
    );
    let all = q.list(&reviewer("rita"), true).unwrap();
    let approvals = &all.iter().find(|h| h.id == ia).unwrap().approvals;
    assert_eq!(
        approvals
            .iter()
            .map(|a| a.reviewer.as_str())
            .collect::<Vec<_>>(),
        ["rita", "otto"]
    );
    // alice was told: held (both), then released (a) and rejected (b); never the content.
    let (ia_id, ib_id) = (event_id(&a), event_id(&b));
    let notices = wait_for("the four notices", || {
        let n: Vec<String> = x
            .hs1
            .seen()
            .iter()
            .filter(|s| s.path_and_query.contains("send_server_notice"))
            .map(|s| String::from_utf8_lossy(&s.body).into_owned())
            .collect();
        let told = |id: &str, what: &str| n.iter().any(|t| t.contains(id) && t.contains(what));
        (told(&ia_id, "held for review")
            && told(&ib_id, "held for review")
            && told(&ia_id, "released after review")
            && told(&ib_id, "rejected after review"))
        .then_some(n)
    })
    .await;
    assert!(
        notices.iter().all(|n| !n.contains("VS-VERTRAULICH")),
        "{notices:?}"
    );
    assert!(
        notices.iter().all(|n| n.contains("@alice:hs1.test")),
        "{notices:?}"
    );
    g.stop().await;
}

fn new_hold(event: &str, label: Option<&str>, created_at: i64) -> NewHold {
    NewHold {
        direction: "outbound".into(),
        room_id: ROOM_A.into(),
        event_id: event.into(),
        origin: HS1.into(),
        sender: "@alice:hs1.test".into(),
        destination: REMOTE.into(),
        rules: vec!["vs".into()],
        label: label.map(str::to_string),
        marking: label.map(|_| "VS-VERTRAULICH".to_string()),
        matches: "[]".into(),
        pdu: serde_json::to_vec(&msg(ROOM_A, 1, "VS-VERTRAULICH")).unwrap(),
        created_at,
    }
}

const DEU: &str = "1.3.6.1.4.1.99999.1.1";

#[test]
fn only_cleared_reviewers_see_and_decide_a_labelled_event() {
    let spifs =
        grenzwacht::spif::SpifSet::load([concat!(env!("CARGO_MANIFEST_DIR"), "/spif/deu-vs.xml")])
            .unwrap();
    let q = HoldQueue::new(
        Store::open_in_memory().unwrap(),
        ReviewConfig::default(),
        Some(spifs),
    );
    let label = json!({"policy": DEU, "classification": 3}).to_string();
    let labelled = q.hold(&new_hold("$l", Some(&label), 1)).unwrap();
    let plain = q.hold(&new_hold("$p", None, 1)).unwrap();
    let with = |name: &str, classes: &[u64]| Principal {
        name: name.into(),
        role: Role::Reviewer,
        clearance: Some(json!({"policy": DEU, "classifications": classes})),
    };
    let low = with("nfd", &[1, 2]);
    let high = with("vs", &[1, 2, 3]);
    let none = reviewer("ohne");
    assert_eq!(
        q.list(&low, false)
            .unwrap()
            .iter()
            .map(|h| h.id)
            .collect::<Vec<_>>(),
        [plain],
        "a reviewer cleared below the label does not even see it listed"
    );
    assert_eq!(q.list(&none, false).unwrap().len(), 1);
    assert_eq!(q.list(&high, false).unwrap().len(), 2);
    assert_eq!(q.show(&low, labelled).unwrap_err(), ReviewError::NotCleared);
    assert_eq!(
        q.decide(&low, labelled, Decision::Release, "ok")
            .unwrap_err(),
        ReviewError::NotCleared
    );
    assert_eq!(
        q.show(&high, labelled).unwrap().summary.marking.as_deref(),
        Some("VS-VERTRAULICH")
    );
    assert_eq!(
        q.decide(&high, labelled, Decision::Release, "ok").unwrap(),
        Outcome::Decided(HoldState::Released)
    );
    assert_eq!(q.show(&none, 999).unwrap_err(), ReviewError::NotFound);
}

#[test]
fn the_review_timeout_applies_the_default_decision_and_a_refusing_journal_refuses() {
    let now = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_millis() as i64;
    let cfg = ReviewConfig {
        timeout_secs: 60,
        timeout_decision: TimeoutDecision::Reject,
        preview: false,
        ..Default::default()
    };
    let q = HoldQueue::new(Store::open_in_memory().unwrap(), cfg, None);
    let old = q.hold(&new_hold("$old", None, now - 61_000)).unwrap();
    let fresh = q.hold(&new_hold("$fresh", None, now)).unwrap();
    assert_eq!(q.expire(), 1);
    let all = q.list(&reviewer("rita"), true).unwrap();
    let get = |id| all.iter().find(|h| h.id == id).unwrap();
    assert_eq!(get(old).state, HoldState::Rejected);
    assert_eq!(get(old).approvals[0].reviewer, "timeout");
    assert_eq!(get(fresh).state, HoldState::Pending);
    assert!(
        q.show(&reviewer("rita"), fresh).unwrap().content.is_none(),
        "previews off"
    );

    // A journal that cannot write refuses holds and decisions.
    struct Down;
    impl grenzwacht::review::HoldJournal for Down {
        fn held(&self, _: &grenzwacht::review::HeldSummary) -> Result<(), String> {
            Err("audit log full".into())
        }
        fn decided(
            &self,
            _: &grenzwacht::review::HeldSummary,
            _: &str,
            _: Decision,
            _: &str,
            _: &Outcome,
        ) -> Result<(), String> {
            Err("audit log full".into())
        }
    }
    q.set_journal(Arc::new(Down));
    assert!(q.hold(&new_hold("$new", None, now)).is_err());
    assert!(!q.store().hold_took_over("outbound", "$new").unwrap());
    assert!(matches!(
        q.decide(&reviewer("rita"), fresh, Decision::Reject, "nein"),
        Err(ReviewError::Unavailable(_))
    ));
    assert_eq!(
        q.list(&reviewer("rita"), false).unwrap().len(),
        1,
        "still pending"
    );
}

#[tokio::test]
async fn a_queued_event_that_is_held_itself_heads_the_queue_and_failed_deliveries_are_retried() {
    let fail = Arc::new(AtomicBool::new(true));
    let x = peers_failing(fail.clone()).await;
    let cfg = toml(&x.p, x.hs1.addr, x.remote.addr, &x.hk, &x.store, "");
    let g = start(&x.p, &cfg).await;
    let a1 = msg(ROOM_A, 1, "VS-VERTRAULICH eins");
    let a2 = msg(ROOM_A, 2, "VS-VERTRAULICH zwei");
    let a3 = msg(ROOM_A, 3, "drei");
    let got = send(&g, &x.hs1_key, "t1", txn(&[&a1])).await;
    assert_eq!((got.status, got.json()), (200, json!({"pdus": {}})));
    // Queued behind a1 without being judged yet.
    let got = send(&g, &x.hs1_key, "t2", txn(&[&a2, &a3])).await;
    assert_eq!((got.status, got.json()), (200, json!({"pdus": {}})));
    let q = g.guard.holds();
    let first = q.list(&reviewer("rita"), false).unwrap();
    assert_eq!(first.len(), 1, "only a1 is held so far");
    q.decide(&reviewer("rita"), first[0].id, Decision::Release, "ok")
        .unwrap();
    // The remote refuses: the same transaction (a1 only: a2 is held now and heads the queue)
    // is tried again, with backoff.
    let attempts = wait_for("two failed attempts", || {
        let a: Vec<(String, serde_json::Value)> = received(&x.remote)
            .into_iter()
            .filter(|(p, _)| p.contains("grenzwacht-"))
            .collect();
        (a.len() >= 2).then_some(a)
    })
    .await;
    assert_eq!(
        attempts[0].0, attempts[1].0,
        "the same transaction id on retry"
    );
    assert_eq!(bodies(&attempts[0].1["pdus"]), ["VS-VERTRAULICH eins"]);
    let m = metrics(g.admin).await;
    assert!(
        counter(
            &m,
            "grenzwacht_hold_deliveries_total",
            &[("result", "failed")]
        ) >= 2.0,
        "{m}"
    );
    let pending = q.list(&reviewer("rita"), false).unwrap();
    assert_eq!(pending.len(), 1);
    assert_eq!(pending[0].event_id, event_id(&a2), "a2 heads the queue now");
    // The remote accepts again.
    fail.store(false, Ordering::SeqCst);
    wait_for("a1 delivered", || {
        q.list(&reviewer("rita"), true)
            .unwrap()
            .iter()
            .any(|h| h.state == HoldState::Released)
            .then_some(())
            .filter(|_| {
                g.guard
                    .store()
                    .hold_queue(&("outbound".into(), REMOTE.into(), ROOM_A.into()), 10)
                    .unwrap()
                    .len()
                    == 2
            })
    })
    .await;
    tokio::time::sleep(Duration::from_millis(300)).await;
    assert!(
        !received(&x.remote)
            .iter()
            .any(|(_, b)| bodies(&b["pdus"]).contains(&"drei".to_string())),
        "a3 waits behind a2"
    );
    q.decide(&reviewer("rita"), pending[0].id, Decision::Reject, "nein")
        .unwrap();
    let last = wait_for("a2 and a3 delivered", || {
        received(&x.remote)
            .into_iter()
            .rev()
            .find(|(p, b)| p.contains("grenzwacht-") && b["pdus"].as_array().unwrap().len() == 2)
    })
    .await;
    assert_eq!(bodies(&last.1["pdus"]), ["<redacted>", "drei"]);
    assert_eq!(event_id(&last.1["pdus"][0]), event_id(&a2));
    g.stop().await;
}

/// Inbound: a remote's held PDU waits; released, it reaches hs1 in a transaction of the guard's
/// own under the remote's name, signed with the guard key hs1 was given (key attestation).
#[tokio::test]
async fn inbound_hold_is_delivered_signed_with_the_guard_key() {
    let p = pki();
    let up = recorder(
        None,
        Arc::new(|_: &Seen| (200, "application/json", br#"{"pdus":{}}"#.to_vec())),
    )
    .await;
    let (guard_key, gk) = guard_key_file(&p);
    let store = p.dir.path().join("gw.db");
    let room = "!r:remote.test";
    Store::open(&store)
        .unwrap()
        .set_room_version(room, "11", "test")
        .unwrap();
    let extra = format!(
        "[keys]\nverify_pdus = false\nguard_key = \"{}\"\n[store]\npath = \"{}\"\n[[rule]]\nid = \"vs\"\nkeywords = [\"VS-VERTRAULICH\"]\naction = \"hold\"\n",
        gk.display(),
        store.display()
    );
    let g = start(&p, &inbound_toml(&p, up.addr, &extra)).await;
    let remote_key = SigningKey::generate("r1").unwrap();
    let mut held = msg(room, 1, "VS-VERTRAULICH von draußen");
    held["sender"] = json!("@bob:remote.test");
    let body = serde_json::to_vec(
        &json!({"origin": REMOTE, "origin_server_ts": 1, "pdus": [held], "edus": []}),
    )
    .unwrap();
    let path = format!("{SEND}in1");
    let hdr = auth(&remote_key, REMOTE, HS1, "PUT", &path, Some(&body));
    let got = tls_request(
        g.inbound,
        &p.ca_path,
        "PUT",
        &path,
        &[("authorization", hdr)],
        body,
    )
    .await;
    assert_eq!((got.status, got.json()), (200, json!({"pdus": {}})));
    assert!(!up
        .seen()
        .iter()
        .any(|s| String::from_utf8_lossy(&s.body).contains("VERTRAULICH")));
    let q = g.guard.holds();
    let list = q.list(&reviewer("rita"), false).unwrap();
    assert_eq!(
        (
            list.len(),
            list[0].direction.as_str(),
            list[0].origin.as_str()
        ),
        (1, "inbound", REMOTE)
    );
    assert_eq!(list[0].destinations, [HS1]);
    q.decide(&reviewer("rita"), list[0].id, Decision::Release, "ok")
        .unwrap();
    let seen = wait_for("the delivery to hs1", || {
        up.seen()
            .into_iter()
            .find(|s| s.path_and_query.starts_with(&format!("{SEND}grenzwacht-")))
    })
    .await;
    let v: serde_json::Value = serde_json::from_slice(&seen.body).unwrap();
    assert_eq!(v["origin"], REMOTE);
    assert_eq!(v["pdus"][0], held);
    let xm = xmatrix::XMatrix::parse(seen.headers.get("authorization").unwrap().to_str().unwrap())
        .unwrap();
    assert_eq!(xm.origin.as_str(), REMOTE);
    let raw: Box<serde_json::value::RawValue> = serde_json::from_slice(&seen.body).unwrap();
    xmatrix::verify_request(
        &xm,
        "PUT",
        &seen.path_and_query,
        Some(&raw),
        &guard_key.public_key(),
    )
    .expect("signed with the guard key");
    g.stop().await;
}
