//! End-to-end: hold queues on the real lab (shipped DLP rules: `marking.vs_vertraulich` holds).
//!
//! alice on hs1 and bob on hs2 share two rooms:
//! - alice's `VS-VERTRAULICH` message does not reach hs2; her next message in the same room
//!   waits behind it; a message in the other room arrives;
//! - a reviewer releases it (`grenzwacht review release` through the admin API): hs2 receives
//!   the original (same event id, full content), then the waiting message;
//! - a second held message is rejected: hs2 receives it redacted (same event id);
//! - a third is held with a message waiting behind it when the guard is killed (SIGKILL); after
//!   the restart the queue is intact and in order, and a release delivers both.
#[path = "common/lab.rs"]
mod common;

use std::time::Duration;

use grenzwacht::config::review::ReviewConfig;
use grenzwacht::config::Config;
use grenzwacht::lab::client::{wait_until, MatrixClient, Session};
use grenzwacht::lab::process;
use grenzwacht::lab::LabInfo;
use grenzwacht::proxy::hold::HoldQueue;
use grenzwacht::review::{Decision, Principal, ReviewQueue, Role};
use grenzwacht::store::Store;
use serde_json::{json, Value};

const WAIT: Duration = Duration::from_secs(60);

/// The lab guard's store file.
fn store_path(info: &LabInfo) -> std::path::PathBuf {
    Config::load(&info.guard.config)
        .expect("lab guard config")
        .store
        .path
}

/// The pending held event with this event id, once the guard holds it.
async fn held(info: &LabInfo, event_id: &str) -> i64 {
    let path = store_path(info);
    let id = event_id.to_string();
    wait_until(&format!("the guard to hold {event_id}"), WAIT, || {
        let (path, id) = (path.clone(), id.clone());
        async move {
            let q = HoldQueue::new(Store::open(&path).unwrap(), ReviewConfig::default(), None);
            Ok(q.list(&reviewer("rita"), false)
                .unwrap()
                .into_iter()
                .find(|h| h.event_id == id)
                .map(|h| h.id))
        }
    })
    .await
    .expect("held")
}

fn reviewer(name: &str) -> Principal {
    Principal {
        name: name.into(),
        role: Role::Reviewer,
        clearance: None,
    }
}

/// A reviewer's decision, through the admin API with the `review` CLI (the real binary) as the
/// lab's reviewer `lab-reviewer` (token file named in `lab.json`).
fn review(info: &LabInfo, hold: i64, decision: Decision) {
    let (verb, want) = match decision {
        Decision::Release => ("release", "released"),
        Decision::Reject => ("reject", "rejected"),
    };
    let token = info
        .guard
        .review_tokens
        .get("lab-reviewer")
        .expect("the lab's reviewer token");
    let out = std::process::Command::new(env!("CARGO_BIN_EXE_grenzwacht"))
        .args(["review", "--admin", &info.guard.admin_url, "--token-file"])
        .arg(token)
        .args([verb, &hold.to_string(), "--reason", "e2e review"])
        .env_remove("GRENZWACHT_CONFIG")
        .output()
        .expect("run grenzwacht review");
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert_eq!(
        out.status.code(),
        Some(0),
        "review {verb} {hold}: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    let answer: Value = serde_json::from_str(&stdout).expect("JSON answer");
    assert_eq!(answer["state"], want, "{answer}");
    // The request was written to the guard's audit log before the decision.
    let records = grenzwacht::audit::query::search(
        &info.guard.audit_dir,
        &grenzwacht::audit::query::Filter::default(),
    )
    .expect("audit query");
    let action = format!("holds.{verb}");
    assert!(
        records.iter().any(|r| r["kind"] == "admin"
            && r["data"]["principal"] == "lab-reviewer"
            && r["data"]["action"] == action.as_str()
            && r["data"]["target"] == hold.to_string().as_str()),
        "no admin record of {action} {hold}"
    );
}

async fn arrives(bob: &Session, room: &str, id: &str) -> Value {
    common::wait_event(bob, room, id, WAIT).await
}

/// Bob's server does not have the event (checked after a while).
async fn absent(bob: &Session, room: &str, id: &str) {
    let path = format!(
        "/_matrix/client/v3/rooms/{}/event/{}",
        grenzwacht::lab::client::encode_segment(room),
        grenzwacht::lab::client::encode_segment(id)
    );
    let r = bob
        .client
        .raw(
            "GET",
            &path,
            Some(&bob.access_token),
            None,
            Duration::from_secs(10),
        )
        .await
        .expect("event lookup");
    assert_eq!(
        r.status,
        404,
        "hs2 has {id}: {}",
        String::from_utf8_lossy(&r.body)
    );
}

/// A room between alice and bob, bob joined.
async fn room(alice: &Session, bob: &Session, hs1_name: &str, name: &str) -> String {
    let room = alice
        .create_room(&json!({"preset": "private_chat", "room_version": "11", "name": name}))
        .await
        .expect("create room");
    alice.invite(&room, &bob.user_id).await.expect("invite");
    bob.wait_for_invite(&room, WAIT).await.expect("invite seen");
    bob.join(&room, &[hs1_name]).await.expect("bob joins");
    alice
        .wait_for_member(&room, &bob.user_id, WAIT)
        .await
        .expect("alice sees bob");
    room
}

/// SIGKILL for the lab's guard, then the same command line again; returns when `/health`
/// answers.
async fn kill_and_restart_guard(info: &LabInfo) {
    let dir = info.dir.clone();
    tokio::task::spawn_blocking(move || {
        let rec = process::kill_recorded(&dir, "guard")?;
        process::restart(&dir, &rec, &dir)
    })
    .await
    .unwrap()
    .expect("kill and restart the guard");
    let admin = MatrixClient::new(&info.guard.admin_url);
    wait_until("guard /health after restart", WAIT, || async {
        Ok(admin
            .raw("GET", "/health", None, None, Duration::from_secs(2))
            .await
            .ok()
            .filter(|r| r.status == 200)
            .map(|_| ()))
    })
    .await
    .expect("guard answers after restart");
}

#[tokio::test]
async fn held_messages_wait_for_review_and_are_delivered_in_order() {
    let lab = common::e2e_lab("holds", false).await;
    let common::E2eLab {
        info, alice, bob, ..
    } = lab;
    let hs1 = info.hs1().clone();
    let held_room = room(&alice, &bob, &hs1.server_name, "Lage").await;
    let other_room = room(&alice, &bob, &hs1.server_name, "Kantine").await;
    let tag = common::marker("gwhold");

    // 1. Held; the next message waits behind it; the other room flows.
    let secret = format!("VS-VERTRAULICH Lagebericht {tag}");
    let e1 = alice.send_text(&held_room, &secret).await.expect("send");
    let h1 = held(&info, &e1).await;
    let e2 = alice
        .send_text(&held_room, "danach")
        .await
        .expect("send later");
    let e3 = alice
        .send_text(&other_room, "Mittagessen um zwölf")
        .await
        .expect("send other");
    arrives(&bob, &other_room, &e3).await;
    tokio::time::sleep(Duration::from_secs(3)).await;
    absent(&bob, &held_room, &e1).await;
    absent(&bob, &held_room, &e2).await;
    let store = Store::open(store_path(&info)).unwrap();
    // What the reviewer sees: the rule, where it matched, the content.
    let detail = HoldQueue::new(store.clone(), ReviewConfig::default(), None)
        .show(&reviewer("rita"), h1)
        .unwrap();
    assert_eq!(detail.summary.rules, ["dlp:marking.vs_vertraulich"]);
    assert!(
        detail
            .matches
            .iter()
            .any(|m| m.rule == "dlp:marking.vs_vertraulich" && m.end > m.start),
        "{:?}",
        detail.matches
    );
    assert_eq!(detail.content.unwrap()["body"], secret.as_str());
    assert!(detail
        .summary
        .destinations
        .contains(&info.hs2().server_name));
    assert!(
        store.hold_took_over("outbound", &e2).unwrap(),
        "the later message waits in the queue"
    );

    // 2. Release: the original, then the waiting message.
    review(&info, h1, Decision::Release);
    let got = arrives(&bob, &held_room, &e1).await;
    assert_eq!(got["event_id"], e1.as_str());
    assert_eq!(got["content"]["body"], secret.as_str(), "full content");
    let got2 = arrives(&bob, &held_room, &e2).await;
    assert_eq!(got2["content"]["body"], "danach");

    // 3. A second held message, rejected: redacted at hs2, same event id.
    let e4 = alice
        .send_text(&held_room, &format!("VS-VERTRAULICH zweiter Bericht {tag}"))
        .await
        .expect("send");
    let h4 = held(&info, &e4).await;
    review(&info, h4, Decision::Reject);
    let got = arrives(&bob, &held_room, &e4).await;
    assert_eq!(got["event_id"], e4.as_str());
    assert_eq!(got["content"], json!({}), "redacted: {got}");

    // 4. Killed while a message is held with another behind it: nothing lost, order kept.
    let e5 = alice
        .send_text(&held_room, &format!("VS-VERTRAULICH dritter Bericht {tag}"))
        .await
        .expect("send");
    let h5 = held(&info, &e5).await;
    let e6 = alice
        .send_text(&held_room, "nach dem dritten")
        .await
        .expect("send");
    wait_until("the later message queued", WAIT, || async {
        Ok(store.hold_took_over("outbound", &e6).unwrap().then_some(()))
    })
    .await
    .expect("queued");
    kill_and_restart_guard(&info).await;
    let queues = store.hold_queues().unwrap();
    assert_eq!(queues.len(), 1, "{queues:?}");
    let order: Vec<String> = store
        .hold_queue(&queues[0], 10)
        .unwrap()
        .into_iter()
        .map(|e| e.event_id)
        .collect();
    assert_eq!(order, [e5.clone(), e6.clone()]);
    absent(&bob, &held_room, &e5).await;
    review(&info, h5, Decision::Release);
    arrives(&bob, &held_room, &e5).await;
    let got6 = arrives(&bob, &held_room, &e6).await;
    assert_eq!(got6["content"]["body"], "nach dem dritten");

    let m = common::guard_metrics(&info).await;
    let delivered: f64 = m
        .iter()
        .filter(|s| {
            s.name == "grenzwacht_hold_deliveries_total" && s.label("result") == "delivered"
        })
        .map(|s| s.value)
        .sum();
    assert!(delivered >= 1.0, "deliveries counted after the restart");
}
