//! The authenticated admin API on an in-process admin listener (port 0): authentication
//! (bearer tokens, client certificates), roles, clearance, the action journal, and the
//! `review` CLI (the real binary) against it.
//!
//! The hold queue, audit search and journal here are small in-test implementations of the
//! `review` traits; [`server_with`] is the one place that builds the listener, and takes the
//! store-backed hold queue of the guard instead of [`TestQueue`]
//! (`the_store_backed_hold_queue_behind_the_api`).
use std::path::{Path, PathBuf};
use std::process::Command;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};

use http::{Method, StatusCode};
use serde_json::{json, Value};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream};

use grenzwacht::admin::api::{RefusedLabelChange, RoomLabelEntry, RoomLabels, RoomLabelsView};
use grenzwacht::admin::client::Target;
use grenzwacht::admin::{AdminAccess, AdminState};
use grenzwacht::config::Config;
use grenzwacht::review::{
    ActionJournal, Approval, AuditFilter, AuditSearch, Decision, HeldDetail, HeldSummary, HoldId,
    HoldState, Match, Outcome, Principal, ReviewError, ReviewQueue,
};

const BIN: &str = env!("CARGO_BIN_EXE_grenzwacht");
const DEU: &str = "1.3.6.1.4.1.99999.1.1";
const ALICE: &str = "alice-reviewer-token-4f9a2c";
const LOW: &str = "lowry-reviewer-token-81b3e0";
const AUDITOR: &str = "otto-auditor-token-77d1aa";
const ADMIN: &str = "ada-admin-token-0c55e1f2";

// ---------------------------------------------------------------------------------------
// In-test implementations of the review traits.

/// One journal entry: (principal name, action, target, outcome).
type Entry = (Option<String>, String, String, String);

#[derive(Default)]
struct TestJournal {
    entries: Mutex<Vec<Entry>>,
    fail: AtomicBool,
}

impl TestJournal {
    fn entries(&self) -> Vec<Entry> {
        self.entries.lock().unwrap().clone()
    }
}

impl ActionJournal for TestJournal {
    fn admin_action(
        &self,
        who: Option<&Principal>,
        action: &str,
        target: &str,
        outcome: &str,
    ) -> Result<(), String> {
        if self.fail.load(Ordering::SeqCst) {
            return Err("disk full".into());
        }
        self.entries.lock().unwrap().push((
            who.map(|p| p.name.clone()),
            action.into(),
            target.into(),
            outcome.into(),
        ));
        Ok(())
    }
}

struct Held {
    summary: HeldSummary,
    /// The label's classification; `None`: unlabelled.
    classification: Option<u64>,
    content: Value,
}

/// A hold queue: clearance = the principal's clearance lists the event's classification.
struct TestQueue {
    held: Mutex<Vec<Held>>,
    journal: Arc<TestJournal>,
}

fn cleared(who: &Principal, h: &Held) -> bool {
    match h.classification {
        None => true,
        Some(c) => who
            .clearance
            .as_ref()
            .and_then(|v| v["classifications"].as_array().cloned())
            .unwrap_or_default()
            .iter()
            .any(|x| x.as_u64() == Some(c)),
    }
}

impl ReviewQueue for TestQueue {
    fn list(&self, who: &Principal, all: bool) -> Result<Vec<HeldSummary>, ReviewError> {
        Ok(self
            .held
            .lock()
            .unwrap()
            .iter()
            .filter(|h| cleared(who, h) && (all || h.summary.state == HoldState::Pending))
            .map(|h| h.summary.clone())
            .collect())
    }

    fn show(&self, who: &Principal, id: HoldId) -> Result<HeldDetail, ReviewError> {
        let held = self.held.lock().unwrap();
        let h = held
            .iter()
            .find(|h| h.summary.id == id)
            .ok_or(ReviewError::NotFound)?;
        if !cleared(who, h) {
            return Err(ReviewError::NotCleared);
        }
        Ok(HeldDetail {
            summary: h.summary.clone(),
            content: Some(h.content.clone()),
            matches: vec![Match {
                rule: "vs-vertraulich".into(),
                field: "body".into(),
                start: 0,
                end: 4,
            }],
        })
    }

    fn decide(
        &self,
        who: &Principal,
        id: HoldId,
        decision: Decision,
        reason: &str,
    ) -> Result<Outcome, ReviewError> {
        if !who.role.may_decide() {
            return Err(ReviewError::Forbidden);
        }
        let mut held = self.held.lock().unwrap();
        let h = held
            .iter_mut()
            .find(|h| h.summary.id == id)
            .ok_or(ReviewError::NotFound)?;
        if !cleared(who, h) {
            return Err(ReviewError::NotCleared);
        }
        if h.summary.state != HoldState::Pending {
            return Err(ReviewError::AlreadyDecided);
        }
        let approval = Approval {
            reviewer: who.name.clone(),
            decision,
            reason: reason.into(),
            at_ms: 1,
        };
        if h.summary.four_eyes && decision == Decision::Release {
            if h.summary.approvals.iter().any(|a| a.reviewer == who.name) {
                return Err(ReviewError::SameReviewer);
            }
            if h.summary.approvals.is_empty() {
                self.journal
                    .admin_action(Some(who), "queue.approve", &id.to_string(), "first")
                    .map_err(ReviewError::Unavailable)?;
                h.summary.approvals.push(approval);
                return Ok(Outcome::AwaitingSecond);
            }
        }
        let state = match decision {
            Decision::Release => HoldState::Released,
            Decision::Reject => HoldState::Rejected,
        };
        self.journal
            .admin_action(
                Some(who),
                "queue.decide",
                &id.to_string(),
                &format!("{state:?}"),
            )
            .map_err(ReviewError::Unavailable)?;
        h.summary.state = state;
        h.summary.approvals.push(approval);
        Ok(Outcome::Decided(state))
    }
}

#[derive(Default)]
struct TestAudit {
    asked: Mutex<Vec<AuditFilter>>,
}

impl AuditSearch for TestAudit {
    fn search(&self, filter: &AuditFilter) -> Result<Vec<Value>, String> {
        self.asked.lock().unwrap().push(filter.clone());
        Ok(vec![
            json!({"seq": 1, "sender": "@a:hs1", "verdict": "hold"}),
            json!({"seq": 2, "sender": "@b:hs1", "verdict": "allow"}),
        ]
        .into_iter()
        .filter(|r| filter.sender.as_deref().is_none_or(|s| r["sender"] == s))
        .collect())
    }
}

struct TestLabels;

impl RoomLabelsView for TestLabels {
    fn room_labels(&self) -> Result<RoomLabels, String> {
        Ok(RoomLabels {
            rooms: vec![RoomLabelEntry {
                room_id: "!r:hs1".into(),
                label: json!({"policy": DEU, "classification": 3}),
                marking: Some("VS-VERTRAULICH".into()),
                event_id: Some("$label".into()),
                sender: "@admin:hs1".into(),
                origin_server_ts: 5,
                learned_from: "pdu".into(),
            }],
            refused_changes: vec![RefusedLabelChange {
                room_id: "!r:hs1".into(),
                event_id: Some("$lower".into()),
                sender: "@x:hs2".into(),
                at_ms: 6,
                reason: "neither a raise nor from the protected side".into(),
            }],
        })
    }
}

fn summary(id: HoldId, event: &str, marking: Option<&str>) -> HeldSummary {
    HeldSummary {
        id,
        room_id: "!r:hs1".into(),
        event_id: event.into(),
        sender: "@a:hs1".into(),
        origin: "hs1".into(),
        direction: "outbound".into(),
        destinations: vec!["hs2".into()],
        rules: vec!["vs-vertraulich".into()],
        marking: marking.map(str::to_owned),
        held_at_ms: 1_700_000_000_000,
        state: HoldState::Pending,
        approvals: vec![],
        four_eyes: false,
    }
}

// ---------------------------------------------------------------------------------------
// The server.

struct Server {
    addr: std::net::SocketAddr,
    dir: tempfile::TempDir,
    journal: Arc<TestJournal>,
    queue: Arc<TestQueue>,
    audit: Arc<TestAudit>,
    stop: Option<tokio::sync::oneshot::Sender<()>>,
    task: Option<tokio::task::JoinHandle<std::io::Result<()>>>,
}

impl Server {
    async fn stop(mut self) {
        if let Some(s) = self.stop.take() {
            let _ = s.send(());
        }
        if let Some(t) = self.task.take() {
            t.await.unwrap().unwrap();
        }
    }

    fn target(&self, token: Option<&str>) -> Target {
        Target {
            https: false,
            host: "127.0.0.1".into(),
            port: self.addr.port(),
            tls: None,
            token: token.map(str::to_owned),
        }
    }

    fn url(&self) -> String {
        format!("http://{}", self.addr)
    }
}

/// Principals: alice (reviewer, cleared for 1–3), lowry (reviewer, cleared for 1), otto
/// (auditor), ada (admin, cleared for 1–4), carol (admin, client certificate `CN=carol`).
fn admin_toml(dir: &Path, extra: &str) -> String {
    for (name, token) in [
        ("alice", ALICE),
        ("lowry", LOW),
        ("otto", AUDITOR),
        ("ada", ADMIN),
    ] {
        std::fs::write(dir.join(format!("{name}.token")), format!("{token}\n")).unwrap();
    }
    format!(
        r#"[store]
path = "gw.db"
[admin]
listen = "127.0.0.1:0"
{extra}
[[admin.principal]]
name = "alice"
role = "reviewer"
token_file = "alice.token"
clearance = {{ policy = "{DEU}", classifications = [1, 2, 3] }}
[[admin.principal]]
name = "lowry"
role = "reviewer"
token_file = "lowry.token"
clearance = {{ policy = "{DEU}", classifications = [1] }}
[[admin.principal]]
name = "otto"
role = "auditor"
token_file = "otto.token"
[[admin.principal]]
name = "ada"
role = "admin"
token_file = "ada.token"
clearance = {{ policy = "{DEU}", classifications = [1, 2, 3, 4] }}
"#
    )
}

/// The admin listener with the test's queue, journal, audit search and room labels.
/// `toml_extra` goes into `[admin]`; `files` are written into the config directory first.
async fn server(toml_extra: &str, principals_extra: &str, files: &[(&str, Vec<u8>)]) -> Server {
    server_with(toml_extra, principals_extra, files, None).await
}

/// [`server`], with `queue` (e.g. the store-backed hold queue) instead of the [`TestQueue`].
async fn server_with(
    toml_extra: &str,
    principals_extra: &str,
    files: &[(&str, Vec<u8>)],
    queue_override: Option<Arc<dyn ReviewQueue>>,
) -> Server {
    let dir = tempfile::tempdir().unwrap();
    for (name, data) in files {
        std::fs::write(dir.path().join(name), data).unwrap();
    }
    let text = admin_toml(dir.path(), toml_extra) + principals_extra;
    let path = dir.path().join("gw.toml");
    std::fs::write(&path, &text).unwrap();
    let cfg = Config::load_for_use(&path).unwrap_or_else(|e| panic!("{e}"));
    let access = AdminAccess::from_config(&cfg.admin, None).unwrap();

    let journal = Arc::new(TestJournal::default());
    let queue = Arc::new(TestQueue {
        held: Mutex::new(vec![
            Held {
                summary: summary(1, "$open", Some("VS-NUR FÜR DEN DIENSTGEBRAUCH")),
                classification: Some(1),
                content: json!({"msgtype": "m.text", "body": "open minutes"}),
            },
            Held {
                summary: summary(2, "$secret", Some("VS-VERTRAULICH")),
                classification: Some(3),
                content: json!({"msgtype": "m.text", "body": "GEHEIM plan for the harbour"}),
            },
            Held {
                summary: HeldSummary {
                    four_eyes: true,
                    ..summary(3, "$plain", None)
                },
                classification: None,
                content: json!({"msgtype": "m.text", "body": "lunch at noon"}),
            },
        ]),
        journal: journal.clone(),
    });
    let audit = Arc::new(TestAudit::default());
    let mut state = AdminState::new(
        grenzwacht::telemetry::metrics_handle(),
        Arc::new(AtomicBool::new(true)),
        access,
    );
    state.queue = queue_override.unwrap_or_else(|| queue.clone());
    state.journal = journal.clone();
    state.audit = audit.clone();
    state.room_labels = Arc::new(TestLabels);

    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    let (tx, rx) = tokio::sync::oneshot::channel::<()>();
    let task = tokio::spawn(grenzwacht::admin::run(listener, state, async move {
        let _ = rx.await;
    }));
    Server {
        addr,
        dir,
        journal,
        queue,
        audit,
        stop: Some(tx),
        task: Some(task),
    }
}

async fn call(t: &Target, method: Method, path: &str, body: Option<Value>) -> (StatusCode, Value) {
    let (status, bytes) = t
        .call(method, &format!("/_grenzwacht/v1/{path}"), body)
        .await
        .unwrap();
    (
        status,
        serde_json::from_slice(&bytes)
            .unwrap_or_else(|_| Value::String(String::from_utf8_lossy(&bytes).into_owned())),
    )
}

fn reason(r: &str) -> Option<Value> {
    Some(json!({ "reason": r }))
}

fn state_of(s: &Server, id: HoldId) -> HoldState {
    s.queue
        .held
        .lock()
        .unwrap()
        .iter()
        .find(|h| h.summary.id == id)
        .unwrap()
        .summary
        .state
}

/// The raw head of an answer (to see headers the client does not return).
async fn raw_head(addr: std::net::SocketAddr, request: &str) -> String {
    let mut tcp = TcpStream::connect(addr).await.unwrap();
    tcp.write_all(request.as_bytes()).await.unwrap();
    let mut raw = String::new();
    tcp.read_to_string(&mut raw).await.unwrap();
    raw.split_once("\r\n\r\n").unwrap().0.to_ascii_lowercase()
}

// ---------------------------------------------------------------------------------------

#[tokio::test]
async fn unauthenticated_and_wrong_tokens_get_401_and_are_journaled() {
    let s = server("", "", &[]).await;
    let anon = s.target(None);
    let wrong = s.target(Some("not-a-configured-token-123"));
    for (method, path, body) in [
        (Method::GET, "holds", None),
        (Method::GET, "holds/1", None),
        (Method::POST, "holds/1/release", reason("ok")),
        (Method::GET, "audit?sender=%40a%3Ahs1", None),
        (Method::GET, "rooms/labels", None),
        (Method::GET, "no/such/endpoint", None),
    ] {
        for t in [&anon, &wrong] {
            let (status, v) = call(t, method.clone(), path, body.clone()).await;
            assert_eq!(status, StatusCode::UNAUTHORIZED, "{method} {path}: {v}");
            assert_eq!(v["errcode"], "M_UNAUTHORIZED");
        }
    }
    assert_eq!(state_of(&s, 1), HoldState::Pending, "nothing was decided");
    assert!(
        s.audit.asked.lock().unwrap().is_empty(),
        "nothing was searched"
    );
    let head = raw_head(
        s.addr,
        "GET /_grenzwacht/v1/holds HTTP/1.1\r\nHost: a\r\nConnection: close\r\n\r\n",
    )
    .await;
    assert!(head.starts_with("http/1.1 401"), "{head}");
    assert!(head.contains("www-authenticate: bearer"), "{head}");

    // Every refused attempt has its record, with no principal and never the token.
    let entries = s.journal.entries();
    assert_eq!(entries.len(), 13, "{entries:?}");
    assert!(entries
        .iter()
        .all(|(who, _, _, outcome)| who.is_none() && outcome.starts_with("unauthenticated")));
    assert!(entries
        .iter()
        .any(|(_, action, target, _)| action == "holds.release" && target == "1"));
    assert!(!format!("{entries:?}").contains("not-a-configured-token"));

    // /metrics and /health carry no content and stay open; refusals are counted.
    let (status, _) = anon.call(Method::GET, "/health", None).await.unwrap();
    assert_eq!(status, StatusCode::OK);
    let (status, metrics) = anon.call(Method::GET, "/metrics", None).await.unwrap();
    assert_eq!(status, StatusCode::OK);
    let metrics = String::from_utf8_lossy(&metrics);
    assert!(
        metrics.contains(r#"grenzwacht_admin_requests_total{action="holds.release",status="401"}"#),
        "{metrics}"
    );
    s.stop().await;

    // … unless `metrics_auth` closes /metrics.
    let s = server("metrics_auth = true", "", &[]).await;
    let (status, _) = s
        .target(None)
        .call(Method::GET, "/metrics", None)
        .await
        .unwrap();
    assert_eq!(status, StatusCode::UNAUTHORIZED);
    let (status, _) = s
        .target(Some(AUDITOR))
        .call(Method::GET, "/metrics", None)
        .await
        .unwrap();
    assert_eq!(status, StatusCode::OK);
    let (status, _) = s
        .target(None)
        .call(Method::GET, "/health", None)
        .await
        .unwrap();
    assert_eq!(status, StatusCode::OK);
    s.stop().await;
}

#[tokio::test]
async fn roles_decide_who_may_release_and_who_may_search_the_audit_log() {
    let s = server("", "", &[]).await;
    let auditor = s.target(Some(AUDITOR));
    let alice = s.target(Some(ALICE));
    let ada = s.target(Some(ADMIN));

    let (status, v) = call(&auditor, Method::GET, "whoami", None).await;
    assert_eq!(
        (status, v),
        (StatusCode::OK, json!({"name": "otto", "role": "auditor"}))
    );

    // An auditor cannot release …
    let (status, v) = call(
        &auditor,
        Method::POST,
        "holds/1/release",
        reason("looks fine"),
    )
    .await;
    assert_eq!(
        (status, v["errcode"].as_str()),
        (StatusCode::FORBIDDEN, Some("M_FORBIDDEN"))
    );
    assert_eq!(state_of(&s, 1), HoldState::Pending);
    // … but can search the audit log, with every filter passed on.
    let (status, v) = call(
        &auditor,
        Method::GET,
        "audit?sender=%40a%3Ahs1&room=%21r%3Ahs1&verdict=hold&rule=vs-vertraulich&label=VS-VERTRAULICH&server=hs2&from=2026-01-01T00%3A00%3A00Z&to=2027-01-01T00%3A00%3A00Z&limit=5",
        None,
    )
    .await;
    assert_eq!(status, StatusCode::OK, "{v}");
    assert_eq!(
        v["records"],
        json!([{"seq": 1, "sender": "@a:hs1", "verdict": "hold"}])
    );
    let asked = s.audit.asked.lock().unwrap().last().cloned().unwrap();
    assert_eq!(
        asked,
        AuditFilter {
            from: Some("2026-01-01T00:00:00Z".into()),
            to: Some("2027-01-01T00:00:00Z".into()),
            room: Some("!r:hs1".into()),
            sender: Some("@a:hs1".into()),
            server: Some("hs2".into()),
            verdict: Some("hold".into()),
            rule: Some("vs-vertraulich".into()),
            label: Some("VS-VERTRAULICH".into()),
            limit: 5,
        }
    );
    let (status, _) = call(&auditor, Method::GET, "audit?limit=100000", None).await;
    assert_eq!(status, StatusCode::BAD_REQUEST);
    let (status, _) = call(&auditor, Method::GET, "audit?colour=red", None).await;
    assert_eq!(status, StatusCode::BAD_REQUEST);
    let (status, v) = call(&auditor, Method::GET, "audit?from=yesterday", None).await;
    assert_eq!(
        (status, v["errcode"].as_str()),
        (StatusCode::BAD_REQUEST, Some("M_INVALID_PARAM"))
    );
    let (status, v) = call(&auditor, Method::GET, "rooms/labels", None).await;
    assert_eq!(status, StatusCode::OK);
    assert_eq!(v["rooms"][0]["marking"], "VS-VERTRAULICH");
    assert_eq!(v["refused_changes"][0]["event_id"], "$lower");

    // A reviewer decides but does not read the audit log or the room labels.
    let (status, _) = call(&alice, Method::GET, "audit", None).await;
    assert_eq!(status, StatusCode::FORBIDDEN);
    let (status, _) = call(&alice, Method::GET, "rooms/labels", None).await;
    assert_eq!(status, StatusCode::FORBIDDEN);
    let (status, v) = call(
        &alice,
        Method::POST,
        "holds/1/release",
        reason("no secrets in it"),
    )
    .await;
    assert_eq!(status, StatusCode::OK, "{v}");
    assert_eq!(
        v,
        json!({"id": 1, "state": "released", "awaiting_second": false})
    );
    assert_eq!(state_of(&s, 1), HoldState::Released);
    let (status, v) = call(&alice, Method::POST, "holds/1/reject", reason("again")).await;
    assert_eq!(
        (status, v["errcode"].as_str()),
        (StatusCode::CONFLICT, Some("M_UNKNOWN"))
    );
    // A reason is mandatory and bounded; the body is bounded.
    for body in [
        json!({}),
        json!({"reason": "   "}),
        json!({"reason": "x".repeat(1001)}),
    ] {
        let (status, v) = call(&ada, Method::POST, "holds/2/reject", Some(body)).await;
        assert_eq!(status, StatusCode::BAD_REQUEST, "{v}");
    }
    let (status, _) = call(
        &ada,
        Method::POST,
        "holds/2/reject",
        Some(json!({"reason": "y".repeat(20_000)})),
    )
    .await;
    assert_eq!(status, StatusCode::PAYLOAD_TOO_LARGE);
    assert_eq!(state_of(&s, 2), HoldState::Pending);
    let (status, v) = call(&ada, Method::POST, "holds/99/reject", reason("gone")).await;
    assert_eq!(
        (status, v["errcode"].as_str()),
        (StatusCode::NOT_FOUND, Some("M_NOT_FOUND"))
    );
    let (status, _) = call(&ada, Method::GET, "holds/2/reject", None).await;
    assert_eq!(status, StatusCode::METHOD_NOT_ALLOWED);

    // Every action has its record, refused ones with the principal's name; the release was
    // recorded as requested before the queue's own record of the decision.
    let entries = s.journal.entries();
    let has = |who: &str, action: &str, target: &str, outcome: &str| {
        entries.iter().any(|e| {
            e.0.as_deref() == Some(who) && e.1 == action && e.2 == target && e.3 == outcome
        })
    };
    assert!(has("otto", "admin.whoami", "", "ok"), "{entries:?}");
    assert!(
        has("otto", "holds.release", "1", "forbidden"),
        "{entries:?}"
    );
    assert!(has("otto", "rooms.labels", "", "ok"), "{entries:?}");
    assert!(entries.iter().any(|e| e.0.as_deref() == Some("otto")
        && e.1 == "audit.search"
        && e.2.contains("vs-vertraulich")));
    assert!(has("alice", "audit.search", "", "forbidden"), "{entries:?}");
    assert!(has("alice", "rooms.labels", "", "forbidden"), "{entries:?}");
    let requested = entries
        .iter()
        .position(|e| {
            e.0.as_deref() == Some("alice") && e.1 == "holds.release" && e.3 == "requested"
        })
        .expect("release requested");
    let decided = entries
        .iter()
        .position(|e| e.1 == "queue.decide" && e.2 == "1")
        .expect("decision recorded by the queue");
    assert!(requested < decided, "{entries:?}");
    assert!(
        has("alice", "holds.reject", "1", "requested"),
        "{entries:?}"
    );
    assert!(has("ada", "holds.reject", "99", "requested"), "{entries:?}");
    s.stop().await;
}

#[tokio::test]
async fn a_reviewer_not_cleared_for_the_label_sees_nothing_of_the_event() {
    let s = server("", "", &[]).await;
    let lowry = s.target(Some(LOW));
    let alice = s.target(Some(ALICE));

    let (status, v) = call(&lowry, Method::GET, "holds", None).await;
    assert_eq!(status, StatusCode::OK);
    let ids: Vec<i64> = v["holds"]
        .as_array()
        .unwrap()
        .iter()
        .map(|h| h["id"].as_i64().unwrap())
        .collect();
    assert_eq!(
        ids,
        [1, 3],
        "unlabelled events are visible to every reviewer: {v}"
    );

    for (method, path, body) in [
        (Method::GET, "holds/2", None),
        (Method::POST, "holds/2/release", reason("let it go")),
    ] {
        let raw = lowry
            .call(method.clone(), &format!("/_grenzwacht/v1/{path}"), body)
            .await
            .unwrap();
        assert_eq!(raw.0, StatusCode::FORBIDDEN, "{method} {path}");
        let text = String::from_utf8_lossy(&raw.1);
        let v: Value = serde_json::from_str(&text).unwrap();
        assert_eq!(v["errcode"], "M_FORBIDDEN");
        for secret in ["GEHEIM", "harbour", "$secret", "VS-VERTRAULICH", "@a:hs1"] {
            assert!(!text.contains(secret), "{path} leaks {secret}: {text}");
        }
    }
    assert_eq!(state_of(&s, 2), HoldState::Pending);
    assert!(s
        .journal
        .entries()
        .iter()
        .any(|e| e.0.as_deref() == Some("lowry")
            && e.1 == "holds.show"
            && e.2 == "2"
            && e.3 == "not_cleared"));

    // A cleared reviewer sees the content and the matches.
    let (status, v) = call(&alice, Method::GET, "holds/2", None).await;
    assert_eq!(status, StatusCode::OK);
    assert_eq!(v["content"]["body"], "GEHEIM plan for the harbour");
    assert_eq!(v["matches"][0]["rule"], "vs-vertraulich");
    s.stop().await;
}

#[tokio::test]
async fn four_eyes_release_needs_a_second_reviewer() {
    let s = server("", "", &[]).await;
    let alice = s.target(Some(ALICE));
    let (status, v) = call(&alice, Method::POST, "holds/3/release", reason("fine")).await;
    assert_eq!(status, StatusCode::OK);
    assert_eq!(
        v,
        json!({"id": 3, "state": "pending", "awaiting_second": true})
    );
    let (status, v) = call(
        &alice,
        Method::POST,
        "holds/3/release",
        reason("still fine"),
    )
    .await;
    assert_eq!(
        (status, v["errcode"].as_str()),
        (StatusCode::FORBIDDEN, Some("M_FORBIDDEN"))
    );
    assert_eq!(state_of(&s, 3), HoldState::Pending);
    let (status, v) = call(
        &s.target(Some(LOW)),
        Method::POST,
        "holds/3/release",
        reason("agreed"),
    )
    .await;
    assert_eq!(
        v,
        json!({"id": 3, "state": "released", "awaiting_second": false})
    );
    assert_eq!(status, StatusCode::OK);
    assert_eq!(state_of(&s, 3), HoldState::Released);
    s.stop().await;
}

#[tokio::test]
async fn a_journal_that_cannot_record_refuses_every_action() {
    let s = server("", "", &[]).await;
    let ada = s.target(Some(ADMIN));
    s.journal.fail.store(true, Ordering::SeqCst);
    for (method, path, body) in [
        (Method::POST, "holds/2/release", reason("urgent")),
        (Method::POST, "holds/2/reject", reason("urgent")),
        (Method::GET, "holds", None),
        (Method::GET, "holds/2", None),
        (Method::GET, "audit", None),
    ] {
        let (status, v) = call(&ada, method.clone(), path, body).await;
        assert_eq!(
            status,
            StatusCode::SERVICE_UNAVAILABLE,
            "{method} {path}: {v}"
        );
        assert!(
            !v.to_string().contains("disk full"),
            "no internal error text: {v}"
        );
        assert!(!v.to_string().contains("GEHEIM"), "{v}");
    }
    // Refused attempts too: without a record there is no answer but 503.
    let (status, _) = call(&s.target(None), Method::GET, "holds", None).await;
    assert_eq!(status, StatusCode::SERVICE_UNAVAILABLE);
    assert_eq!(
        state_of(&s, 2),
        HoldState::Pending,
        "no decision without a record"
    );
    assert!(s.audit.asked.lock().unwrap().is_empty());
    s.journal.fail.store(false, Ordering::SeqCst);
    let (status, _) = call(&ada, Method::POST, "holds/2/reject", reason("urgent")).await;
    assert_eq!(status, StatusCode::OK);
    assert_eq!(state_of(&s, 2), HoldState::Rejected);
    s.stop().await;
}

/// A CA and certificates made with rcgen: (CA PEM, [(name, cert PEM, key PEM)]).
struct TestPki {
    ca_pem: String,
    server: (String, String),
    clients: Vec<(String, String, String)>,
}

fn test_pki(clients: &[&str]) -> TestPki {
    use rcgen::{
        BasicConstraints, CertificateParams, DnType, ExtendedKeyUsagePurpose, IsCa, KeyPair,
        SanType,
    };
    let ca_key = KeyPair::generate().unwrap();
    let mut ca = CertificateParams::new(Vec::<String>::new()).unwrap();
    ca.is_ca = IsCa::Ca(BasicConstraints::Unconstrained);
    ca.distinguished_name
        .push(DnType::CommonName, "admin test CA");
    let ca_cert = ca.self_signed(&ca_key).unwrap();
    let leaf = |cn: &str, server: bool| {
        let key = KeyPair::generate().unwrap();
        let mut p = CertificateParams::new(Vec::<String>::new()).unwrap();
        p.distinguished_name = rcgen::DistinguishedName::new();
        p.distinguished_name
            .push(DnType::OrganizationName, "Example");
        p.distinguished_name.push(DnType::CommonName, cn);
        if server {
            p.subject_alt_names = vec![SanType::IpAddress("127.0.0.1".parse().unwrap())];
            p.extended_key_usages = vec![ExtendedKeyUsagePurpose::ServerAuth];
        } else {
            p.extended_key_usages = vec![ExtendedKeyUsagePurpose::ClientAuth];
        }
        let cert = p.signed_by(&key, &ca_cert, &ca_key).unwrap();
        (cert.pem(), key.serialize_pem())
    };
    TestPki {
        ca_pem: ca_cert.pem(),
        server: leaf("admin.test", true),
        clients: clients
            .iter()
            .map(|cn| {
                let (c, k) = leaf(cn, false);
                (cn.to_string(), c, k)
            })
            .collect(),
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn client_certificates_of_configured_principals_authenticate_unknown_ones_get_401() {
    let pki = test_pki(&["carol", "mallory"]);
    let mut files: Vec<(&str, Vec<u8>)> = vec![
        ("ca.crt", pki.ca_pem.clone().into_bytes()),
        ("server.crt", pki.server.0.clone().into_bytes()),
        ("server.key", pki.server.1.clone().into_bytes()),
    ];
    let names: Vec<(String, String)> = pki
        .clients
        .iter()
        .map(|(cn, _, _)| (format!("{cn}.crt"), format!("{cn}.key")))
        .collect();
    for ((c, k), (_, cert, key)) in names.iter().zip(&pki.clients) {
        files.push((c.as_str(), cert.clone().into_bytes()));
        files.push((k.as_str(), key.clone().into_bytes()));
    }
    let s = server(
        "[admin.tls]\ncert_file = \"server.crt\"\nkey_file = \"server.key\"\nclient_ca_file = \"ca.crt\"",
        "[[admin.principal]]\nname = \"carol\"\nrole = \"admin\"\ncert_subject = \"CN=carol,O=Example\"\n",
        &files,
    )
    .await;
    let d = s.dir.path();
    let https = format!("https://{}", s.addr);
    let with_cert = |cn: &str, token: Option<PathBuf>| {
        Target::new(
            &https,
            Some(&d.join("ca.crt")),
            Some((&d.join(format!("{cn}.crt")), &d.join(format!("{cn}.key")))),
            token.as_deref(),
        )
        .unwrap()
    };
    let carol = with_cert("carol", None);
    let (status, v) = call(&carol, Method::GET, "whoami", None).await;
    assert_eq!(
        (status, v),
        (StatusCode::OK, json!({"name": "carol", "role": "admin"})),
        "{:?}",
        s.journal.entries()
    );
    let (status, _) = call(&carol, Method::GET, "rooms/labels", None).await;
    assert_eq!(status, StatusCode::OK);

    // A certificate from the right CA that maps to no principal: 401, even with a token.
    let mallory = with_cert("mallory", Some(d.join("ada.token")));
    let (status, v) = call(&mallory, Method::GET, "holds", None).await;
    assert_eq!(
        (status, v["errcode"].as_str()),
        (StatusCode::UNAUTHORIZED, Some("M_UNAUTHORIZED"))
    );
    // A known certificate with another principal's token: 401.
    let mixed = with_cert("carol", Some(d.join("alice.token")));
    let (status, _) = call(&mixed, Method::GET, "holds", None).await;
    assert_eq!(status, StatusCode::UNAUTHORIZED);
    // Without a certificate, a token still works over TLS (client_auth = "optional").
    let token_only = Target::new(
        &https,
        Some(&d.join("ca.crt")),
        None,
        Some(&d.join("otto.token")),
    )
    .unwrap();
    let (status, v) = call(&token_only, Method::GET, "whoami", None).await;
    assert_eq!((status, v["name"].as_str()), (StatusCode::OK, Some("otto")));
    // A certificate of another CA does not get through the handshake.
    let other = test_pki(&["carol"]);
    std::fs::write(d.join("other.crt"), &other.clients[0].1).unwrap();
    std::fs::write(d.join("other.key"), &other.clients[0].2).unwrap();
    let forged = with_cert("other", None);
    assert!(forged
        .call(Method::GET, "/_grenzwacht/v1/whoami", None)
        .await
        .is_err());

    // The CLI over mutual TLS (real binary).
    let args: Vec<String> = [
        "review",
        "--admin",
        &https,
        "--ca",
        d.join("ca.crt").to_str().unwrap(),
        "--cert",
        d.join("carol.crt").to_str().unwrap(),
        "--key",
        d.join("carol.key").to_str().unwrap(),
        "list",
    ]
    .iter()
    .map(|a| a.to_string())
    .collect();
    let out = tokio::task::spawn_blocking(move || {
        Command::new(BIN)
            .args(&args)
            .env_remove("GRENZWACHT_CONFIG")
            .output()
            .unwrap()
    })
    .await
    .unwrap();
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert_eq!(
        out.status.code(),
        Some(0),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    // carol has no clearance: only the unlabelled event.
    assert_eq!(stdout.lines().count(), 1, "{stdout}");
    assert!(stdout.contains("\"$plain\""), "{stdout}");

    let entries = s.journal.entries();
    assert!(entries
        .iter()
        .any(|e| e.0.as_deref() == Some("carol") && e.1 == "admin.whoami"));
    assert!(entries
        .iter()
        .any(|e| e.0.as_deref() == Some("carol") && e.1 == "holds.list"));
    assert!(entries
        .iter()
        .any(|e| e.0.is_none() && e.1 == "holds.list" && e.3.contains("maps to no principal")));
    s.stop().await;

    // client_auth = "required": no connection without a certificate, tokens or not.
    let s = server(
        "[admin.tls]\ncert_file = \"server.crt\"\nkey_file = \"server.key\"\nclient_ca_file = \"ca.crt\"\nclient_auth = \"required\"",
        "[[admin.principal]]\nname = \"carol\"\nrole = \"admin\"\ncert_cn = \"carol\"\n",
        &files,
    )
    .await;
    let d = s.dir.path();
    let https = format!("https://{}", s.addr);
    let token_only = Target::new(
        &https,
        Some(&d.join("ca.crt")),
        None,
        Some(&d.join("ada.token")),
    )
    .unwrap();
    assert!(token_only
        .call(Method::GET, "/_grenzwacht/v1/whoami", None)
        .await
        .is_err());
    let carol = Target::new(
        &https,
        Some(&d.join("ca.crt")),
        Some((&d.join("carol.crt"), &d.join("carol.key"))),
        None,
    )
    .unwrap();
    let (status, v) = call(&carol, Method::GET, "whoami", None).await;
    assert_eq!(
        (status, v["name"].as_str()),
        (StatusCode::OK, Some("carol"))
    );
    s.stop().await;
}

fn run_cli(s: &Server, args: &[&str]) -> (i32, String, String) {
    let out = Command::new(BIN)
        .args(["review", "--admin", &s.url()])
        .args(args)
        .env_remove("GRENZWACHT_CONFIG")
        .output()
        .expect("run grenzwacht");
    (
        out.status.code().unwrap_or(-1),
        String::from_utf8_lossy(&out.stdout).into(),
        String::from_utf8_lossy(&out.stderr).into(),
    )
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn review_cli_lists_shows_releases_and_fails_on_refusals() {
    let s = server("", "", &[]).await;
    let alice = s.dir.path().join("alice.token");
    let otto = s.dir.path().join("otto.token");
    let alice = alice.to_str().unwrap();
    let otto = otto.to_str().unwrap();
    let s = Arc::new(s);

    let cli = |args: Vec<String>| {
        let s = s.clone();
        tokio::task::spawn_blocking(move || {
            let args: Vec<&str> = args.iter().map(String::as_str).collect();
            run_cli(&s, &args)
        })
    };
    let v = |a: &[&str]| a.iter().map(|x| x.to_string()).collect::<Vec<_>>();

    let (code, out, err) = cli(v(&["whoami", "--token-file", alice])).await.unwrap();
    assert_eq!(code, 0, "{err}");
    assert_eq!(
        serde_json::from_str::<Value>(&out).unwrap(),
        json!({"name": "alice", "role": "reviewer"})
    );
    // Without --admin, the address is the config's `[admin] listen`.
    let cfg = s.dir.path().join("cli.toml");
    std::fs::write(
        &cfg,
        format!(
            "[store]\npath = \"gw.db\"\n[admin]\nlisten = \"{}\"\n",
            s.addr
        ),
    )
    .unwrap();
    let (cfg, token) = (cfg.display().to_string(), alice.to_string());
    let out = tokio::task::spawn_blocking(move || {
        Command::new(BIN)
            .args(["review", "--config", &cfg, "--token-file", &token, "whoami"])
            .output()
            .unwrap()
    })
    .await
    .unwrap();
    assert_eq!(
        out.status.code(),
        Some(0),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(String::from_utf8_lossy(&out.stdout).contains("\"alice\""));

    let (code, out, err) = cli(v(&["list", "--token-file", alice])).await.unwrap();
    assert_eq!(code, 0, "{err}");
    let lines: Vec<Value> = out
        .lines()
        .map(|l| serde_json::from_str(l).unwrap())
        .collect();
    assert_eq!(lines.len(), 3, "one line per held event: {out}");
    assert_eq!(lines[1]["event_id"], "$secret");

    let (code, out, err) = cli(v(&["show", "2", "--token-file", alice])).await.unwrap();
    assert_eq!(code, 0, "{err}");
    let shown: Value = serde_json::from_str(&out).unwrap();
    assert_eq!(shown["content"]["body"], "GEHEIM plan for the harbour");

    let (code, out, err) = cli(v(&[
        "release",
        "1",
        "--reason",
        "checked, harmless",
        "--token-file",
        alice,
    ]))
    .await
    .unwrap();
    assert_eq!(code, 0, "{err}");
    assert_eq!(
        serde_json::from_str::<Value>(&out).unwrap()["state"],
        "released"
    );
    assert_eq!(state_of(&s, 1), HoldState::Released);
    let approval = s.queue.held.lock().unwrap()[0].summary.approvals[0].clone();
    assert_eq!(
        (approval.reviewer.as_str(), approval.reason.as_str()),
        ("alice", "checked, harmless")
    );

    // 403 (an auditor releasing), 401 (no token), 404: non-zero with the error text.
    let (code, out, err) = cli(v(&["reject", "2", "--reason", "no", "--token-file", otto]))
        .await
        .unwrap();
    assert_eq!(code, 1, "{out}");
    assert!(err.contains("403 M_FORBIDDEN"), "{err}");
    assert_eq!(state_of(&s, 2), HoldState::Pending);
    let (code, _, err) = cli(v(&["list"])).await.unwrap();
    assert_eq!(code, 1);
    assert!(err.contains("401 M_UNAUTHORIZED"), "{err}");
    let (code, _, err) = cli(v(&["show", "77", "--token-file", alice]))
        .await
        .unwrap();
    assert_eq!(code, 1);
    assert!(err.contains("404 M_NOT_FOUND"), "{err}");
    let (code, out, _) = cli(v(&["list", "--all", "--token-file", alice]))
        .await
        .unwrap();
    assert_eq!(code, 0);
    assert_eq!(out.lines().count(), 3);
    assert!(out.contains("\"released\""), "{out}");

    match Arc::try_unwrap(s) {
        Ok(s) => s.stop().await,
        Err(_) => panic!("server still shared"),
    }
}

#[test]
fn check_reports_admin_principal_errors_with_file_and_line() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("gw.toml");
    std::fs::write(
        &path,
        "[store]\npath = \"gw.db\"\n\n[[admin.principal]]\nname = \"alice\"\nrole = \"reviewer\"\ntoken_file = \"nowhere.token\"\n\n[[admin.principal]]\nname = \"bob\"\nrole = \"superuser\"\ntoken_file = \"bob.token\"\n\n[audit]\ndir = \"audit\"\nkey_file = \"audit.key\"\n",
    )
    .unwrap();
    let audit_key = grenzwacht::keys::SigningKey::generate("audit1").unwrap();
    std::fs::write(dir.path().join("audit.key"), audit_key.to_synapse_string()).unwrap();
    let out = Command::new(BIN)
        .args(["check", "--config", path.to_str().unwrap()])
        .output()
        .unwrap();
    let err = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(2), "{err}");
    let file = path.display().to_string();
    assert!(
        err.contains(&format!(
            "{file}:11:8: invalid value for `admin.principal[1].role`"
        )),
        "{err}"
    );

    // Shape fixed: the missing token file is named at its line.
    let text = std::fs::read_to_string(&path)
        .unwrap()
        .replace("superuser", "auditor");
    std::fs::write(&path, text).unwrap();
    std::fs::write(dir.path().join("bob.token"), "bob-token-1234567890\n").unwrap();
    let out = Command::new(BIN)
        .args(["check", "--config", path.to_str().unwrap()])
        .output()
        .unwrap();
    let err = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(2), "{err}");
    assert!(
        err.contains(&format!("{file}:7:14: `admin.principal[0].token_file`"))
            && err.contains("does not exist"),
        "{err}"
    );

    // A token file that is too short is refused when the listener is built (never printed).
    std::fs::write(dir.path().join("nowhere.token"), "short\n").unwrap();
    let out = Command::new(BIN)
        .args(["check", "--config", path.to_str().unwrap()])
        .output()
        .unwrap();
    let err = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(2), "{err}");
    assert!(
        err.contains("principal `alice`") && err.contains("token_file"),
        "{err}"
    );
    assert!(!err.contains("short"), "{err}");

    std::fs::write(dir.path().join("nowhere.token"), "alice-token-1234567890\n").unwrap();
    let out = Command::new(BIN)
        .args(["check", "--config", path.to_str().unwrap()])
        .output()
        .unwrap();
    assert_eq!(
        out.status.code(),
        Some(0),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
}

/// The store-backed hold queue of the guard (`proxy::hold::HoldQueue`, clearance against the
/// shipped DEU-VS SPIF) behind the API: a reviewer cleared below the label sees nothing of the
/// event, a cleared one sees and releases it through the CLI.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_store_backed_hold_queue_behind_the_api() {
    use grenzwacht::config::review::ReviewConfig;
    use grenzwacht::proxy::hold::HoldQueue;
    use grenzwacht::store::{NewHold, Store};
    let spifs =
        grenzwacht::spif::SpifSet::load([concat!(env!("CARGO_MANIFEST_DIR"), "/spif/deu-vs.xml")])
            .unwrap();
    let q = HoldQueue::new(
        Store::open_in_memory().unwrap(),
        ReviewConfig::default(),
        Some(spifs),
    );
    let hold = |event: &str, label: Option<String>, body: &str| NewHold {
        direction: "outbound".into(),
        room_id: "!room:hs1.test".into(),
        event_id: event.into(),
        origin: "hs1.test".into(),
        sender: "@alice:hs1.test".into(),
        destination: "remote.test".into(),
        rules: vec!["marking.vs-vertraulich".into()],
        marking: label.as_ref().map(|_| "VS-VERTRAULICH".to_string()),
        label,
        matches: "[]".into(),
        pdu: serde_json::to_vec(&json!({
            "type": "m.room.message", "room_id": "!room:hs1.test", "sender": "@alice:hs1.test",
            "content": {"msgtype": "m.text", "body": body}
        }))
        .unwrap(),
        created_at: 1,
    };
    let labelled = q
        .hold(&hold(
            "$labelled",
            Some(json!({"policy": DEU, "classification": 3}).to_string()),
            "Lagebericht Hafen",
        ))
        .unwrap();
    let plain = q.hold(&hold("$plain", None, "Mittagessen")).unwrap();
    let s = server_with("", "", &[], Some(Arc::new(q))).await;

    // lowry is cleared for classification 1 only.
    let lowry = s.target(Some(LOW));
    let (status, v) = call(&lowry, Method::GET, "holds", None).await;
    assert_eq!(status, StatusCode::OK);
    let ids: Vec<i64> = v["holds"]
        .as_array()
        .unwrap()
        .iter()
        .map(|h| h["id"].as_i64().unwrap())
        .collect();
    assert_eq!(ids, [plain], "{v}");
    for (method, path, body) in [
        (Method::GET, format!("holds/{labelled}"), None),
        (
            Method::POST,
            format!("holds/{labelled}/release"),
            reason("fine"),
        ),
    ] {
        let (status, bytes) = lowry
            .call(method, &format!("/_grenzwacht/v1/{path}"), body)
            .await
            .unwrap();
        assert_eq!(status, StatusCode::FORBIDDEN, "{path}");
        let text = String::from_utf8_lossy(&bytes);
        for secret in ["Hafen", "$labelled", "VS-VERTRAULICH"] {
            assert!(!text.contains(secret), "{path} leaks {secret}: {text}");
        }
    }
    // An auditor cannot release it.
    let (status, _) = call(
        &s.target(Some(AUDITOR)),
        Method::POST,
        &format!("holds/{labelled}/release"),
        reason("fine"),
    )
    .await;
    assert_eq!(status, StatusCode::FORBIDDEN);

    // alice is cleared for it: sees the content and releases it with the CLI.
    let alice = s.target(Some(ALICE));
    let (status, v) = call(&alice, Method::GET, &format!("holds/{labelled}"), None).await;
    assert_eq!(status, StatusCode::OK, "{v}");
    assert_eq!(v["summary"]["event_id"], "$labelled");
    assert!(v.to_string().contains("Lagebericht Hafen"), "{v}");
    let token = s.dir.path().join("alice.token").display().to_string();
    let url = s.url();
    let id = labelled.to_string();
    let out = tokio::task::spawn_blocking(move || {
        Command::new(BIN)
            .args(["review", "--admin", &url, "--token-file", &token])
            .args(["release", &id, "--reason", "Hafen ist freigegeben"])
            .env_remove("GRENZWACHT_CONFIG")
            .output()
            .unwrap()
    })
    .await
    .unwrap();
    assert_eq!(
        out.status.code(),
        Some(0),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let (_, v) = call(&alice, Method::GET, "holds?all=true", None).await;
    let released = v["holds"]
        .as_array()
        .unwrap()
        .iter()
        .find(|h| h["id"].as_i64() == Some(labelled))
        .cloned()
        .unwrap();
    assert_eq!(released["state"], "released", "{released}");
    assert_eq!(released["approvals"][0]["reviewer"], "alice");
    let journal = s.journal.entries();
    assert!(journal
        .iter()
        .any(|e| e.0.as_deref() == Some("lowry") && e.1 == "holds.show" && e.3 == "not_cleared"));
    assert!(journal
        .iter()
        .any(|e| e.0.as_deref() == Some("alice") && e.1 == "holds.release" && e.3 == "requested"));
    s.stop().await;
}
