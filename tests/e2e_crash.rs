//! End-to-end crash safety: the guard killed with SIGKILL under load and restarted with the
//! same config, store and audit directory (`lab::process::kill_recorded` / `restart`).
//!
//! alice on hs1 (protected) and bob on hs2 (remote) stream numbered messages at each other
//! (every fourth carries `GEHEIM`, which the shipped rule `marking.geheim` redacts) while the
//! guard is killed five times per round, in different phases:
//! - **mid-stream**: messages are being sent both ways while the guard dies and comes back;
//! - **after a burst**: killed right after a burst of messages was accepted by both
//!   homeservers, while their federation senders push it;
//! - **while Synapse retries**: the guard stays down for several seconds while messages are
//!   sent, so both homeservers' transactions fail and are retried with their backoff;
//! - **in flight**: the receiving homeserver is stopped (SIGSTOP), so a transaction the guard
//!   has taken and forwards hangs inside the guard when it is killed; the receiver then
//!   continues (SIGCONT) and the sender retries the transaction whose answer it never got.
//!
//! Every message both homeservers accepted must then arrive exactly once in the receiver's
//! timeline (its `/sync` stream, and `/messages`), in the order sent; no marked message
//! arrives with its marker, every unmarked one arrives intact.
//!
//! Then held events (`marking.vs_vertraulich`, both directions): held before a kill they are
//! still held and queued in order after the restart and never reach the receiver; released
//! (and the guard killed right after the release) each arrives once, with the message waiting
//! behind it; a held event whose transaction answer is lost in a kill (receiver stopped) is
//! held once, and rejected it arrives redacted, once.
//!
//! `GRENZWACHT_CRASH_ROUNDS` sets the number of rounds (default 3). The test prints a summary
//! line: `crash-safety: rounds …, kills …, messages …, lost 0, duplicated 0, …`.
#[path = "common/lab.rs"]
mod common;

use std::collections::HashMap;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use grenzwacht::config::Config;
use grenzwacht::lab::client::{encode_segment, wait_until, MatrixClient, Session};
use grenzwacht::lab::process::{self, ProcessRecord};
use grenzwacht::lab::LabInfo;
use grenzwacht::store::Store;
use serde_json::{json, Value};

const WAIT: Duration = Duration::from_secs(60);
/// How long delivery may take after the last kill of a round before the test wakes the
/// homeservers' federation senders with a further message each way.
const WAKE_AFTER: Duration = Duration::from_secs(40);
/// Longest wait for a round's messages to arrive.
const DELIVERY: Duration = Duration::from_secs(150);
const MARKER: &str = "GEHEIM";
const HOLD_MARKER: &str = "VS-VERTRAULICH";

/// What one side's `/sync` stream delivered, in stream order.
#[derive(Default)]
struct Received {
    /// Timeline events of the watched rooms sent by the other side, in the order /sync gave
    /// them.
    events: Vec<Value>,
    /// A sync response said its timeline was `limited` (events skipped).
    limited: bool,
}

/// Follows `who`'s `/sync` and records the other side's `m.room.message` events in `rooms`.
fn follow(who: Session, rooms: Vec<String>, stop: Arc<AtomicBool>) -> Arc<Mutex<Received>> {
    let out = Arc::new(Mutex::new(Received::default()));
    let rec = out.clone();
    tokio::spawn(async move {
        let filter = json!({
            "room": {"rooms": rooms, "timeline": {"limit": 1000, "types": ["m.room.message"]},
                     "state": {"types": []}, "ephemeral": {"types": []},
                     "account_data": {"types": []}},
            "presence": {"types": []}, "account_data": {"types": []}
        })
        .to_string();
        let mut since: Option<String> = None;
        while !stop.load(Ordering::Relaxed) {
            let mut path = format!(
                "/_matrix/client/v3/sync?timeout=2000&filter={}",
                encode_segment(&filter)
            );
            if let Some(s) = &since {
                path.push_str(&format!("&since={}", encode_segment(s)));
            }
            let Ok(r) = who
                .client
                .call("GET", &path, Some(&who.access_token), None)
                .await
            else {
                tokio::time::sleep(Duration::from_millis(200)).await;
                continue;
            };
            let first = since.is_none();
            since = r["next_batch"].as_str().map(str::to_string);
            let mut got = rec.lock().unwrap();
            for (room_id, room) in r["rooms"]["join"].as_object().into_iter().flatten() {
                let tl = &room["timeline"];
                if tl["limited"] == true && !first {
                    got.limited = true;
                }
                for ev in tl["events"].as_array().into_iter().flatten() {
                    if ev["sender"] != who.user_id.as_str() && !first {
                        let mut ev = ev.clone();
                        ev["room_id"] = json!(room_id);
                        got.events.push(ev);
                    }
                }
            }
        }
    });
    out
}

/// One sent message.
#[derive(Debug, Clone)]
struct Sent {
    n: u64,
    event_id: String,
    body: String,
    marked: bool,
}

/// One direction of the conversation.
struct Way {
    name: &'static str,
    sender: Session,
    room: String,
    sent: Mutex<Vec<Sent>>,
    next: std::sync::atomic::AtomicU64,
}

impl Way {
    /// Sends the next numbered message (every fourth marked).
    async fn send(&self, tag: &str) {
        let n = self.next.fetch_add(1, Ordering::SeqCst);
        let marked = n.is_multiple_of(4);
        let body = if marked {
            format!("{} #{n} {tag} {MARKER} Lagebericht Nord", self.name)
        } else {
            format!("{} #{n} {tag} Lage ruhig", self.name)
        };
        let content = json!({"msgtype": "m.text", "body": body, "crash_n": n});
        let event_id =
            common::send_content(&self.sender, &self.room, "m.room.message", &content).await;
        self.sent.lock().unwrap().push(Sent {
            n,
            event_id,
            body,
            marked,
        });
    }

    async fn send_many(&self, count: usize, pause: Duration, tag: &str) {
        for _ in 0..count {
            self.send(tag).await;
            if !pause.is_zero() {
                tokio::time::sleep(pause).await;
            }
        }
    }
}

/// SIGKILL for the lab's guard; returns its record for [`start_guard`].
async fn kill_guard(info: &LabInfo) -> ProcessRecord {
    let dir = info.dir.clone();
    tokio::task::spawn_blocking(move || process::kill_recorded(&dir, "guard"))
        .await
        .unwrap()
        .unwrap_or_else(|e| panic!("kill the guard: {e}"))
}

/// Starts the killed guard again (same command line: config, store, audit dir); returns the
/// time until its `/health` answered 200.
async fn start_guard(info: &LabInfo, rec: ProcessRecord) -> Duration {
    let t0 = Instant::now();
    let dir = info.dir.clone();
    tokio::task::spawn_blocking(move || process::restart(&dir, &rec, &dir))
        .await
        .unwrap()
        .unwrap_or_else(|e| panic!("restart the guard: {e}"));
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
    t0.elapsed()
}

/// Sends `sig` to the lab process `name` (checked to be the recorded command line).
fn signal_lab_process(info: &LabInfo, name: &str, sig: libc::c_int) {
    let pids = process::PidFile::load(&info.dir)
        .expect("pids.json")
        .expect("lab running");
    let rec = pids
        .processes
        .iter()
        .find(|r| r.name == name)
        .expect("recorded");
    assert!(process::matches_cmdline(rec), "{name} runs");
    // SAFETY: kill(2) on a lab process whose command line was just checked.
    assert_eq!(unsafe { libc::kill(rec.pid as libc::pid_t, sig) }, 0);
}

/// Kill, then start again at once.
async fn crash(info: &LabInfo, restarts: &Mutex<Vec<Duration>>) {
    let rec = kill_guard(info).await;
    let took = start_guard(info, rec).await;
    restarts.lock().unwrap().push(took);
}

/// Event ids in `received` (from the room) per event id: how often.
fn counts(received: &Received, room: &str) -> HashMap<String, usize> {
    let mut m = HashMap::new();
    for ev in received.events.iter().filter(|e| e["room_id"] == room) {
        *m.entry(ev["event_id"].as_str().unwrap_or("").to_string())
            .or_insert(0) += 1;
    }
    m
}

/// Waits until every message sent on `way` is in `received`; wakes the federation senders
/// (one more message each way) if it takes longer than [`WAKE_AFTER`].
async fn await_delivery(ways: [&Way; 2], received: [&Arc<Mutex<Received>>; 2], tag: &str) {
    let t0 = Instant::now();
    let mut woken = false;
    loop {
        let missing: usize = ways
            .iter()
            .zip(received)
            .map(|(w, r)| {
                let got = counts(&r.lock().unwrap(), &w.room);
                w.sent
                    .lock()
                    .unwrap()
                    .iter()
                    .filter(|s| !got.contains_key(&s.event_id))
                    .count()
            })
            .sum();
        if missing == 0 {
            return;
        }
        if !woken && t0.elapsed() > WAKE_AFTER {
            eprintln!("{missing} messages not arrived after {WAKE_AFTER:?}: waking the senders");
            for w in ways {
                w.send(tag).await;
            }
            woken = true;
        }
        assert!(
            t0.elapsed() < DELIVERY,
            "{missing} messages still missing after {DELIVERY:?}"
        );
        tokio::time::sleep(Duration::from_millis(250)).await;
    }
}

/// Outcome of checking one direction.
#[derive(Debug, Default)]
struct Tally {
    sent: usize,
    marked: usize,
    lost: usize,
    duplicated: usize,
    reordered: usize,
    leaked: usize,
    redacted: usize,
    altered: usize,
}

/// Checks one direction against what the receiver's `/sync` stream and `/messages` show.
async fn check(way: &Way, received: &[Value], receiver: &Session) -> Tally {
    let sent = way.sent.lock().unwrap().clone();
    let mut t = Tally {
        sent: sent.len(),
        marked: sent.iter().filter(|s| s.marked).count(),
        ..Tally::default()
    };
    let by_id: HashMap<&str, &Sent> = sent.iter().map(|s| (s.event_id.as_str(), s)).collect();
    let mut seen: HashMap<&str, usize> = HashMap::new();
    let mut last_n = None;
    for ev in received
        .iter()
        .filter(|e| e["room_id"] == way.room.as_str())
    {
        let id = ev["event_id"].as_str().unwrap_or("");
        let Some(s) = by_id.get(id) else { continue };
        *seen.entry(id).or_insert(0) += 1;
        if last_n.is_some_and(|l| s.n <= l) {
            t.reordered += 1;
        }
        last_n = Some(s.n);
        let text = ev.to_string();
        if s.marked {
            if text.contains(MARKER) {
                t.leaked += 1;
            } else if ev["content"] == json!({}) {
                t.redacted += 1;
            } else {
                t.altered += 1;
            }
        } else if ev["content"]["body"] != s.body.as_str() || ev["content"]["crash_n"] != s.n {
            t.altered += 1;
        }
    }
    t.lost = sent
        .iter()
        .filter(|s| !seen.contains_key(s.event_id.as_str()))
        .count();
    t.duplicated = seen.values().map(|c| c - 1).sum();
    // The room's history as the receiver's server has it (`/messages`, topological order):
    // each message once, in order.
    let history = full_history(receiver, &way.room).await;
    let mut hist_n = Vec::new();
    let mut hist_seen: HashMap<&str, usize> = HashMap::new();
    for ev in &history {
        let id = ev["event_id"].as_str().unwrap_or("");
        if let Some(s) = by_id.get(id) {
            *hist_seen.entry(s.event_id.as_str()).or_insert(0) += 1;
            hist_n.push(s.n);
            if s.marked && ev.to_string().contains(MARKER) {
                t.leaked += 1;
            }
        }
    }
    t.lost += sent
        .iter()
        .filter(|s| !hist_seen.contains_key(s.event_id.as_str()))
        .count();
    t.duplicated += hist_seen.values().map(|c| c - 1).sum::<usize>();
    t.reordered += hist_n.windows(2).filter(|w| w[1] <= w[0]).count();
    t
}

/// All `m.room.message` events of a room, oldest first (`/messages` paginated backwards).
async fn full_history(who: &Session, room: &str) -> Vec<Value> {
    let mut out = Vec::new();
    let mut from: Option<String> = None;
    loop {
        let mut path = format!(
            "/_matrix/client/v3/rooms/{}/messages?dir=b&limit=500",
            encode_segment(room)
        );
        if let Some(f) = &from {
            path.push_str(&format!("&from={}", encode_segment(f)));
        }
        let r = who
            .client
            .call("GET", &path, Some(&who.access_token), None)
            .await
            .expect("messages");
        let chunk = r["chunk"].as_array().cloned().unwrap_or_default();
        if chunk.is_empty() {
            break;
        }
        out.extend(chunk.into_iter().filter(|e| e["type"] == "m.room.message"));
        match r["end"].as_str() {
            Some(e) => from = Some(e.to_string()),
            None => break,
        }
    }
    out.reverse();
    out
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

/// The pending hold of `event_id`, once the guard holds it.
async fn held(store: &Store, event_id: &str) -> i64 {
    wait_until(&format!("the guard to hold {event_id}"), WAIT, || async {
        Ok(store
            .held_events(false)
            .unwrap()
            .into_iter()
            .find(|h| h.event_id == event_id)
            .map(|h| h.id))
    })
    .await
    .expect("held")
}

/// A reviewer's decision through the admin API (the real `review` CLI as `lab-reviewer`).
fn review(info: &LabInfo, hold: i64, verb: &str) {
    let token = info
        .guard
        .review_tokens
        .get("lab-reviewer")
        .expect("the lab's reviewer token");
    let out = std::process::Command::new(env!("CARGO_BIN_EXE_grenzwacht"))
        .args(["review", "--admin", &info.guard.admin_url, "--token-file"])
        .arg(token)
        .args([verb, &hold.to_string(), "--reason", "e2e crash"])
        .env_remove("GRENZWACHT_CONFIG")
        .output()
        .expect("run grenzwacht review");
    assert!(
        out.status.success(),
        "review {verb} {hold}: {}",
        String::from_utf8_lossy(&out.stderr)
    );
}

/// The receiver's server does not have the event.
async fn absent(who: &Session, room: &str, id: &str) {
    let path = format!(
        "/_matrix/client/v3/rooms/{}/event/{}",
        encode_segment(room),
        encode_segment(id)
    );
    let r = who
        .client
        .raw(
            "GET",
            &path,
            Some(&who.access_token),
            None,
            Duration::from_secs(10),
        )
        .await
        .expect("event lookup");
    assert_eq!(
        r.status,
        404,
        "{} has {id} while it is held: {}",
        who.user_id,
        String::from_utf8_lossy(&r.body)
    );
}

/// The events with this id in `received` (room `room`).
fn arrivals(received: &Arc<Mutex<Received>>, room: &str, id: &str) -> Vec<Value> {
    received
        .lock()
        .unwrap()
        .events
        .iter()
        .filter(|e| e["room_id"] == room && e["event_id"] == id)
        .cloned()
        .collect()
}

/// Waits until the event is in `received`, then a little longer for a duplicate; returns
/// every arrival.
async fn arrives_once(received: &Arc<Mutex<Received>>, room: &str, id: &str) -> Value {
    wait_until(
        &format!("{id} to arrive"),
        Duration::from_secs(90),
        || async { Ok((!arrivals(received, room, id).is_empty()).then_some(())) },
    )
    .await
    .expect("arrives");
    tokio::time::sleep(Duration::from_secs(2)).await;
    let got = arrivals(received, room, id);
    assert_eq!(got.len(), 1, "{id} arrived {} times", got.len());
    got[0].clone()
}

#[tokio::test]
async fn sigkill_under_load_loses_duplicates_and_leaks_nothing() {
    let started = Instant::now();
    let rounds: usize = std::env::var("GRENZWACHT_CRASH_ROUNDS")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(3);
    let lab = common::e2e_lab("crash", false).await;
    let common::E2eLab {
        info, alice, bob, ..
    } = lab;
    let hs1 = info.hs1().clone();
    let stream_room = room(&alice, &bob, &hs1.server_name, "Strom").await;
    let hold_room = room(&alice, &bob, &hs1.server_name, "Lage").await;
    let tag = common::marker("gwcrash");
    let stop = Arc::new(AtomicBool::new(false));
    let rooms = vec![stream_room.clone(), hold_room.clone()];
    // bob's stream: what hs2 received from alice; alice's: what hs1 received from bob.
    let at_bob = follow(bob.clone(), rooms.clone(), stop.clone());
    let at_alice = follow(alice.clone(), rooms, stop.clone());
    // Both followers past their initial sync.
    tokio::time::sleep(Duration::from_secs(3)).await;

    let out = Way {
        name: "hs1->hs2",
        sender: alice.clone(),
        room: stream_room.clone(),
        sent: Mutex::new(Vec::new()),
        next: 1.into(),
    };
    let inb = Way {
        name: "hs2->hs1",
        sender: bob.clone(),
        room: stream_room.clone(),
        sent: Mutex::new(Vec::new()),
        next: 1.into(),
    };
    let restarts = Mutex::new(Vec::new());
    let mut kills = 0;
    for round in 1..=rounds {
        let t_round = Instant::now();
        // 1. Mid-stream: both directions sending while the guard dies and comes back.
        let sending = async {
            tokio::join!(
                out.send_many(20, Duration::from_millis(100), &tag),
                inb.send_many(20, Duration::from_millis(100), &tag)
            )
        };
        let killing = async {
            tokio::time::sleep(Duration::from_millis(700 + 300 * round as u64)).await;
            crash(&info, &restarts).await;
        };
        tokio::join!(sending, killing);
        kills += 1;
        // 2. Right after a burst both homeservers accepted.
        tokio::join!(
            out.send_many(10, Duration::ZERO, &tag),
            inb.send_many(10, Duration::ZERO, &tag)
        );
        crash(&info, &restarts).await;
        kills += 1;
        // 3. Down for a while: transactions fail and the homeservers retry with backoff.
        let rec = kill_guard(&info).await;
        let t_down = Instant::now();
        tokio::join!(
            out.send_many(5, Duration::from_millis(200), &tag),
            inb.send_many(5, Duration::from_millis(200), &tag)
        );
        tokio::time::sleep(Duration::from_secs(6).saturating_sub(t_down.elapsed())).await;
        let took = start_guard(&info, rec).await;
        restarts.lock().unwrap().push(took);
        kills += 1;
        // (Phase 3's transactions are delivered by the homeservers' retries first: a sender
        // waiting to retry has no new transaction in flight.)
        await_delivery([&out, &inb], [&at_bob, &at_alice], &tag).await;
        // 4. In flight: the receiving homeserver is stopped (SIGSTOP), so the transaction the
        //    guard forwards to it hangs inside the guard when the guard dies; then the
        //    receiver goes on and the sender retries the transaction.
        for (way, receiver) in [(&out, "hs2"), (&inb, "hs1")] {
            signal_lab_process(&info, receiver, libc::SIGSTOP);
            way.send_many(3, Duration::from_millis(100), &tag).await;
            tokio::time::sleep(Duration::from_secs(1)).await;
            let rec = kill_guard(&info).await;
            kills += 1;
            // The receiver goes on before the guard is back, so /health need not wait for it.
            signal_lab_process(&info, receiver, libc::SIGCONT);
            let took = start_guard(&info, rec).await;
            restarts.lock().unwrap().push(took);
        }
        await_delivery([&out, &inb], [&at_bob, &at_alice], &tag).await;
        eprintln!(
            "round {round}: {} + {} messages so far, all delivered, {:?}",
            out.sent.lock().unwrap().len(),
            inb.sent.lock().unwrap().len(),
            t_round.elapsed()
        );
    }
    // Late duplicates would show up within a few seconds.
    tokio::time::sleep(Duration::from_secs(3)).await;
    // Snapshots: a lock held across an await would stall the followers.
    let seen_by_bob = at_bob.lock().unwrap().events.clone();
    let seen_by_alice = at_alice.lock().unwrap().events.clone();
    let t_out = check(&out, &seen_by_bob, &bob).await;
    let t_in = check(&inb, &seen_by_alice, &alice).await;
    for (name, t) in [(out.name, &t_out), (inb.name, &t_in)] {
        eprintln!("{name}: {t:?}");
        assert_eq!(t.lost, 0, "{name}: lost messages: {t:?}");
        assert_eq!(t.duplicated, 0, "{name}: duplicated messages: {t:?}");
        assert_eq!(t.reordered, 0, "{name}: messages out of order: {t:?}");
        assert_eq!(t.leaked, 0, "{name}: marked messages arrived intact: {t:?}");
        assert_eq!(t.altered, 0, "{name}: messages altered: {t:?}");
        assert_eq!(
            t.redacted, t.marked,
            "{name}: every marked one redacted: {t:?}"
        );
        assert!(t.marked > 0 && t.sent > t.marked);
    }
    for (name, r) in [("hs2", &at_bob), ("hs1", &at_alice)] {
        assert!(
            !r.lock().unwrap().limited,
            "{name}'s sync skipped events (limited timeline): the stream check is incomplete"
        );
    }

    // Held events, both directions, across kills.
    let store = Store::open(
        Config::load(&info.guard.config)
            .expect("lab guard config")
            .store
            .path,
    )
    .expect("open the guard's store");
    let secret_out = format!("{HOLD_MARKER} Lagebericht alice {tag}");
    let secret_in = format!("{HOLD_MARKER} Lagebericht bob {tag}");
    let h_out = alice.send_text(&hold_room, &secret_out).await.unwrap();
    let h_in = bob.send_text(&hold_room, &secret_in).await.unwrap();
    let id_out = held(&store, &h_out).await;
    let id_in = held(&store, &h_in).await;
    let w_out = alice.send_text(&hold_room, "danach alice").await.unwrap();
    let w_in = bob.send_text(&hold_room, "danach bob").await.unwrap();
    wait_until(
        "the later messages queued behind the holds",
        WAIT,
        || async {
            Ok((store.hold_took_over("outbound", &w_out).unwrap()
                && store.hold_took_over("inbound", &w_in).unwrap())
            .then_some(()))
        },
    )
    .await
    .expect("queued");
    crash(&info, &restarts).await;
    kills += 1;
    let pending: Vec<String> = store
        .held_events(false)
        .unwrap()
        .into_iter()
        .map(|h| h.event_id)
        .collect();
    assert!(
        pending.contains(&h_out) && pending.contains(&h_in),
        "held across the kill: {pending:?}"
    );
    let mut queues: HashMap<String, Vec<String>> = HashMap::new();
    for key in store.hold_queues().unwrap() {
        let ids = store
            .hold_queue(&key, 10)
            .unwrap()
            .into_iter()
            .map(|e| e.event_id);
        queues.entry(key.0.clone()).or_default().extend(ids);
    }
    assert_eq!(queues["outbound"], [h_out.clone(), w_out.clone()]);
    assert_eq!(queues["inbound"], [h_in.clone(), w_in.clone()]);
    tokio::time::sleep(Duration::from_secs(2)).await;
    absent(&bob, &hold_room, &h_out).await;
    absent(&bob, &hold_room, &w_out).await;
    absent(&alice, &hold_room, &h_in).await;
    absent(&alice, &hold_room, &w_in).await;
    // Released, and the guard killed while it delivers.
    review(&info, id_out, "release");
    review(&info, id_in, "release");
    crash(&info, &restarts).await;
    kills += 1;
    for (recv, id, body) in [
        (&at_bob, &h_out, secret_out.as_str()),
        (&at_bob, &w_out, "danach alice"),
        (&at_alice, &h_in, secret_in.as_str()),
        (&at_alice, &w_in, "danach bob"),
    ] {
        let ev = arrives_once(recv, &hold_room, id).await;
        assert_eq!(ev["content"]["body"], body, "released intact: {ev}");
    }
    // Order: the released event before the one that waited behind it.
    for (recv, first, then) in [(&at_bob, &h_out, &w_out), (&at_alice, &h_in, &w_in)] {
        let r = recv.lock().unwrap();
        let pos = |id: &str| r.events.iter().position(|e| e["event_id"] == id).unwrap();
        assert!(pos(first) < pos(then), "released event first");
    }
    // Held with the transaction's answer lost (receiver stopped, guard killed, the sender
    // retries the transaction), then rejected: held once, arrives redacted once.
    let secret2_out = format!("{HOLD_MARKER} zweiter Bericht alice {tag}");
    let secret2_in = format!("{HOLD_MARKER} zweiter Bericht bob {tag}");
    let mut rejected = Vec::new();
    for (sender, receiver, secret) in [(&alice, "hs2", &secret2_out), (&bob, "hs1", &secret2_in)] {
        signal_lab_process(&info, receiver, libc::SIGSTOP);
        let id = sender.send_text(&hold_room, secret).await.unwrap();
        let hold = held(&store, &id).await;
        tokio::time::sleep(Duration::from_millis(500)).await;
        let rec = kill_guard(&info).await;
        kills += 1;
        // The receiver goes on before the guard is back (it is the guard's upstream).
        signal_lab_process(&info, receiver, libc::SIGCONT);
        let took = start_guard(&info, rec).await;
        restarts.lock().unwrap().push(took);
        rejected.push((id, hold));
    }
    let [(r_out, rid_out), (r_in, rid_in)] = <[_; 2]>::try_from(rejected).unwrap();
    // The retried transactions found the holds already taken over: one hold and one queue
    // entry each.
    tokio::time::sleep(Duration::from_secs(5)).await;
    for id in [&r_out, &r_in] {
        let holds = store
            .held_events(true)
            .unwrap()
            .into_iter()
            .filter(|h| &h.event_id == id)
            .count();
        let queued: usize = store
            .hold_queues()
            .unwrap()
            .iter()
            .map(|k| {
                store
                    .hold_queue(k, 100)
                    .unwrap()
                    .iter()
                    .filter(|e| &e.event_id == id)
                    .count()
            })
            .sum();
        assert_eq!((holds, queued), (1, 1), "{id}: holds, queue entries");
    }
    absent(&bob, &hold_room, &r_out).await;
    absent(&alice, &hold_room, &r_in).await;
    review(&info, rid_out, "reject");
    review(&info, rid_in, "reject");
    let mut hold_leaks = 0;
    for (recv, id) in [(&at_bob, &r_out), (&at_alice, &r_in)] {
        let ev = arrives_once(recv, &hold_room, id).await;
        assert_eq!(ev["content"], json!({}), "rejected: redacted: {ev}");
        hold_leaks += usize::from(ev.to_string().contains(HOLD_MARKER));
    }
    // Nothing held ever reached a receiver before its decision, nor twice, nor intact after
    // a reject.
    for (recv, room_side) in [(&at_bob, "hs2"), (&at_alice, "hs1")] {
        let r = recv.lock().unwrap();
        let leaked: Vec<&Value> = r
            .events
            .iter()
            .filter(|e| {
                e["room_id"] == hold_room.as_str()
                    && (e["event_id"] == r_out.as_str() || e["event_id"] == r_in.as_str())
                    && e.to_string().contains(HOLD_MARKER)
            })
            .collect();
        assert!(
            leaked.is_empty(),
            "{room_side}: rejected content: {leaked:?}"
        );
    }
    assert_eq!(hold_leaks, 0);
    stop.store(true, Ordering::Relaxed);

    // The audit log survived the kills: its hash chain and signed checkpoints verify.
    let verify = std::process::Command::new(env!("CARGO_BIN_EXE_grenzwacht"))
        .args(["audit", "verify"])
        .arg(&info.guard.audit_dir)
        .arg("--key")
        .arg(&info.guard.audit_public_key)
        .output()
        .unwrap();
    let verify_out = String::from_utf8_lossy(&verify.stdout).trim().to_string();
    assert!(
        verify.status.success(),
        "audit log after {kills} kills: {verify_out}{}",
        String::from_utf8_lossy(&verify.stderr)
    );
    // The kills hit federation traffic: both homeservers saw transactions fail and retried
    // them (Synapse logs each failed attempt).
    // Refused: the guard was down; otherwise: the connection died with the request in flight.
    let failed = |name: &str, refused: bool| {
        common::hs_log(&info, name)
            .lines()
            .filter(|l| l.contains("Request failed: PUT") && l.contains("/send/"))
            .filter(|l| l.contains("Connection refused") == refused)
            .count()
    };
    let (failed_hs1, failed_hs2) = (failed("hs1", true), failed("hs2", true));
    let (cut_hs1, cut_hs2) = (failed("hs1", false), failed("hs2", false));
    // Transactions a receiver got twice: forwarded by the guard, the answer lost in the kill,
    // retried by the sender (the receiver deduplicates by transaction id).
    let twice = |name: &str| {
        let mut n: HashMap<String, usize> = HashMap::new();
        for l in common::hs_log(&info, name).lines() {
            if let Some(rest) = l.split("Received txn ").nth(1) {
                let txn = rest.split_whitespace().next().unwrap_or("").to_string();
                *n.entry(txn).or_insert(0) += 1;
            }
        }
        n.values().filter(|c| **c > 1).count()
    };
    let (twice_hs1, twice_hs2) = (twice("hs1"), twice("hs2"));
    assert!(
        failed_hs1 > 0 && failed_hs2 > 0 && cut_hs1 >= rounds && cut_hs2 >= rounds,
        "failed transaction attempts: hs1 {failed_hs1} refused, {cut_hs1} cut in flight; \
         hs2 {failed_hs2} refused, {cut_hs2} cut in flight"
    );

    let restarts = restarts.into_inner().unwrap();
    let max_restart = restarts.iter().max().copied().unwrap_or_default();
    let t_sum = |f: fn(&Tally) -> usize| f(&t_out) + f(&t_in);
    eprintln!(
        "crash-safety: rounds {rounds}, kills {kills} (SIGKILL), messages {} ({} hs1->hs2, {} \
         hs2->hs1; marked {}), lost {}, duplicated {}, reordered {}, leaked {}, redacted {}/{}; \
         held 4 both ways + 2 waiting behind them, across 4 kills: released 2 and the 2 waiting \
         delivered once, rejected 2 redacted once, leaked {hold_leaks}; restart to /health 200 at most {max_restart:?}; transaction attempts retried by hs1: \
         {failed_hs1} refused, {cut_hs1} cut in flight, by hs2: {failed_hs2} refused, {cut_hs2} \
         cut in flight; transactions received twice (answer lost in a kill) by hs2 {twice_hs2}, \
         by hs1 {twice_hs1}; audit log after the kills: {verify_out}; took {:?}",
        t_sum(|t| t.sent),
        t_out.sent,
        t_in.sent,
        t_sum(|t| t.marked),
        t_sum(|t| t.lost),
        t_sum(|t| t.duplicated),
        t_sum(|t| t.reordered),
        t_sum(|t| t.leaked),
        t_sum(|t| t.redacted),
        t_sum(|t| t.marked),
        started.elapsed()
    );
}
