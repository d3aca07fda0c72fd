//! End-to-end: with labels on, a room labeled above the peer's clearance leaks none of its
//! state — through invites, knocks, joins, the room directory or a space hierarchy — whatever
//! the order of its state events (`grenzwacht lab` with real Synapse, labels on).
//!
//! hs1 is the DEU-VS side (cleared for everything), hs2 the NATO side, cleared up to NATO
//! RESTRICTED (= VS-NfD), releasable to DEU. alice@hs1 creates rooms labeled GEHEIM whose name,
//! topic and a custom state event carry a distinctive text (no DLP marking: only the label layer
//! can stop it), in three creation orders:
//! - `label_first`: the room label in the `createRoom` initial state, name, topic and the custom
//!   state event set afterwards;
//! - `label_last`: name, topic and the custom state event at creation, the label set afterwards;
//! - `label_between`: name and the label at creation, topic and custom state afterwards.
//!
//! Each room has the `knock` join rule, is published in hs1's directory and is a child of a
//! space (unlabeled: VS-NfD, released to hs2). A control room labeled VS-NfD is built the same
//! way; its name must arrive everywhere, so the test cannot pass by blocking everything. bob@hs2
//! then, per run:
//! 1. lists hs1's directory (`publicRooms?server=hs1`) and 2. the space's hierarchy — before any
//!    other federation traffic of the new rooms, so the guard has seen nothing of them yet;
//! 3. knocks (knock stripped state), 4. is invited (invite stripped state), 5. joins (the
//!    `send_join` state: `/rooms/{id}/state`, `/messages`);
//! 6. lists the directory and the hierarchy again (the guard has now seen the rooms);
//! 7. a full `/sync` of bob's.
//!
//! The distinctive text must not appear anywhere bob's client can read; what redaction keeps
//! (`type`, `state_key`) may arrive. The whole scenario runs five times (acceptance of issue 9:
//! "e2e, 5 runs"); every run's findings are collected and reported together.
#[path = "common/lab.rs"]
mod common;

use std::time::{Duration, Instant};

use grenzwacht::lab::client::{encode_segment, wait_until, ClientError, MatrixClient, Session};
use grenzwacht::lab::guard::LAB_DEU_POLICY;
use grenzwacht::lab::{self, LabOptions, OutboundMode};
use serde_json::{json, Value};

const WAIT: Duration = Duration::from_secs(60);
/// How long a carrier may take before the test records it as "not delivered" (the guard may
/// refuse a whole knock, invite or join; that keeps the state on its side too).
const SHORT: Duration = Duration::from_secs(15);
const KEY: &str = "de.grenzwacht.label";
const ROOM_LABEL: &str = "de.grenzwacht.room_label";
const CUSTOM: &str = "org.example.lage";
/// Every distinctive text starts with this; it must never reach hs2's client.
const SECRET: &str = "Lagezentrum-Nord";
const RUNS: usize = 5;

struct Down(std::path::PathBuf);
impl Drop for Down {
    fn drop(&mut self) {
        let _ = lab::down(&self.0);
    }
}

fn deu(class: u64) -> Value {
    json!({"policy": LAB_DEU_POLICY, "classification": class,
           "categories": [{"tag_set": format!("{LAB_DEU_POLICY}.1"), "type": "permissive", "lacv": 276}]})
}

fn geheim() -> Value {
    deu(4)
}

fn nfd() -> Value {
    deu(2)
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Variant {
    LabelFirst,
    LabelLast,
    LabelBetween,
}

const VARIANTS: [Variant; 3] = [Variant::LabelFirst, Variant::LabelLast, Variant::LabelBetween];

struct Room {
    what: String,
    id: String,
    /// The room's name (distinctive text for GEHEIM rooms, clean for the control).
    name: String,
    control: bool,
}

fn state(ty: &str, content: Value) -> Value {
    json!({"type": ty, "state_key": "", "content": content})
}

/// Creates a knockable, published room with `label`, name, topic and a custom state event in
/// the order of `variant`.
async fn labeled_room(alice: &Session, variant: Variant, label: Value, name: &str, topic: &str, note: &str) -> String {
    let knock = state("m.room.join_rules", json!({"join_rule": "knock"}));
    let lbl = state(ROOM_LABEL, json!({KEY: label}));
    let custom = json!({"text": note, "ort": name});
    let (body, after): (Value, Vec<(&str, Value)>) = match variant {
        Variant::LabelFirst => (
            json!({"preset": "private_chat", "visibility": "public", "initial_state": [knock, lbl]}),
            vec![("m.room.name", json!({"name": name})), ("m.room.topic", json!({"topic": topic})), (CUSTOM, custom)],
        ),
        Variant::LabelLast => (
            json!({"preset": "private_chat", "visibility": "public", "name": name, "topic": topic,
                   "initial_state": [knock, state(CUSTOM, custom)]}),
            vec![(ROOM_LABEL, json!({KEY: label}))],
        ),
        Variant::LabelBetween => (
            json!({"preset": "private_chat", "visibility": "public", "name": name, "initial_state": [knock, lbl]}),
            vec![("m.room.topic", json!({"topic": topic})), (CUSTOM, custom)],
        ),
    };
    let room = alice.create_room(&body).await.unwrap_or_else(|e| panic!("create {variant:?} room: {e}"));
    for (ty, content) in after {
        alice.send_state(&room, ty, "", &content).await.unwrap_or_else(|e| panic!("{variant:?}: set {ty}: {e}"));
    }
    room
}

/// Records `what` if `v` carries the distinctive text.
fn check(v: &Value, what: &str, problems: &mut Vec<String>) {
    let s = v.to_string();
    if let Some(at) = s.find(SECRET) {
        let from = s[..at].char_indices().rev().nth(120).map(|(i, _)| i).unwrap_or(0);
        let to = s[at..].char_indices().nth(80).map(|(i, _)| at + i).unwrap_or(s.len());
        problems.push(format!("{what}: leaks: …{}…", &s[from..to]));
    }
}

/// `publicRooms?server=` with a per-call `limit`, so hs2's short response cache of remote
/// directories does not answer from an earlier call.
async fn directory(bob: &Session, server: &str, limit: u32) -> Result<Vec<Value>, ClientError> {
    let path = format!("/_matrix/client/v3/publicRooms?server={}&limit={limit}", encode_segment(server));
    let v = bob.client.call("GET", &path, Some(&bob.access_token), None).await?;
    Ok(v["chunk"].as_array().cloned().unwrap_or_default())
}

fn listed_name<'a>(list: &'a [Value], room: &str) -> Option<&'a Value> {
    list.iter().find(|e| e["room_id"] == room).map(|e| &e["name"])
}

/// Directory and hierarchy as bob sees them; `when` names the moment for the report.
#[allow(clippy::too_many_arguments)]
async fn browse(bob: &Session, hs1: &str, space: &str, rooms: &[Room], limit: u32, when: &str, problems: &mut Vec<String>, notes: &mut Vec<String>) {
    let control = rooms.iter().find(|r| r.control).expect("control room");
    let list = wait_until(&format!("{when}: the control room in hs1's directory"), WAIT, || async {
        let l = directory(bob, hs1, limit).await?;
        Ok((listed_name(&l, &control.id) == Some(&json!(control.name))).then_some(l))
    })
    .await
    .unwrap_or_else(|e| panic!("{e}"));
    for r in rooms.iter().filter(|r| !r.control) {
        let what = format!("{when} directory, {}", r.what);
        match list.iter().find(|e| e["room_id"] == r.id.as_str()) {
            Some(e) => check(e, &what, problems),
            None => notes.push(format!("{what}: not listed")),
        }
    }

    let rooms_seen = wait_until(&format!("{when}: the control room in the space hierarchy"), WAIT, || async {
        let v = bob.hierarchy(space).await?;
        let rs = v["rooms"].as_array().cloned().unwrap_or_default();
        Ok(rs.iter().any(|r| r["room_id"] == control.id.as_str() && r["name"] == control.name.as_str()).then_some(v))
    })
    .await
    .unwrap_or_else(|e| panic!("{e}"));
    let seen: Vec<Value> = rooms_seen["rooms"].as_array().cloned().unwrap_or_default();
    for r in rooms.iter().filter(|r| !r.control) {
        let what = format!("{when} hierarchy, {}", r.what);
        match seen.iter().find(|e| e["room_id"] == r.id.as_str()) {
            Some(e) => check(e, &what, problems),
            None => notes.push(format!("{what}: not listed")),
        }
    }
    // The space's own entry (its children_state) and anything else in the answer.
    check(&json!(seen.iter().filter(|e| !rooms.iter().any(|r| !r.control && e["room_id"] == r.id.as_str())).collect::<Vec<_>>()), &format!("{when} hierarchy, other entries"), problems);
}

/// One run of the whole scenario; returns (problems, notes).
async fn run(n: usize, alice: &Session, bob: &Session, hs1: &str) -> (Vec<String>, Vec<String>) {
    let mut problems = Vec::new();
    let mut notes = Vec::new();
    let tag = format!("{:04x}", rand::random::<u16>());
    let mut rooms = Vec::new();
    for v in VARIANTS {
        let name = format!("{SECRET}-{tag}-{n}-{v:?}");
        let id = labeled_room(alice, v, geheim(), &name, &format!("{SECRET} Lagebesprechung {tag} {v:?}"), &format!("{SECRET} Funkkreis {tag}")).await;
        rooms.push(Room { what: format!("run {n} {v:?} GEHEIM room"), id, name, control: false });
    }
    let cname = format!("Kontrollraum-{tag}-{n}");
    let cid = labeled_room(alice, VARIANTS[n % VARIANTS.len()], nfd(), &cname, &format!("Kantine {tag}"), "Speiseplan").await;
    rooms.push(Room { what: format!("run {n} VS-NfD control room"), id: cid, name: cname, control: true });

    // The space (unlabeled: the DEU side's default VS-NfD, released to hs2); bob joins it.
    let space = alice
        .create_room(&json!({"preset": "public_chat", "name": format!("Bereich {tag}-{n}"), "creation_content": {"type": "m.space"}}))
        .await
        .expect("create space");
    for r in &rooms {
        alice.send_state(&space, "m.space.child", &r.id, &json!({"via": [hs1]})).await.expect("space child");
    }
    bob.join(&space, &[hs1]).await.expect("bob joins the space");

    // 1–2. Directory and hierarchy before the guard has seen anything of the new rooms.
    browse(bob, hs1, &space, &rooms, 100 + 2 * n as u32, &format!("run {n} first"), &mut problems, &mut notes).await;

    for r in &rooms {
        // 3. Knock.
        let knocked = bob.knock(&r.id, &[hs1]).await;
        match knocked {
            Ok(()) => match wait_until("knock state", SHORT, || async { bob.knock_state(&r.id).await }).await {
                Ok(s) => {
                    check(&json!(s), &format!("{} knock state", r.what), &mut problems);
                    if r.control && !s.iter().any(|e| e["type"] == "m.room.name" && e["content"]["name"] == r.name.as_str()) {
                        problems.push(format!("{}: knock state without the released name: {}", r.what, json!(s)));
                    }
                }
                Err(e) => notes.push(format!("{}: knock state not seen ({e})", r.what)),
            },
            Err(e) if r.control => problems.push(format!("{}: knock refused: {e}", r.what)),
            Err(e) => notes.push(format!("{}: knock refused ({})", r.what, e.status().map(|s| s.to_string()).unwrap_or_else(|| e.to_string()))),
        }

        // 4. Invite.
        if let Err(e) = alice.invite(&r.id, &bob.user_id).await {
            panic!("{}: invite: {e}", r.what);
        }
        match wait_until("invite state", SHORT, || async { bob.invite_state(&r.id).await }).await {
            Ok(s) => {
                check(&json!(s), &format!("{} invite state", r.what), &mut problems);
                if r.control && !s.iter().any(|e| e["type"] == "m.room.name" && e["content"]["name"] == r.name.as_str()) {
                    problems.push(format!("{}: invite state without the released name: {}", r.what, json!(s)));
                }
            }
            Err(e) if r.control => problems.push(format!("{}: invite not seen: {e}", r.what)),
            Err(e) => notes.push(format!("{}: invite not seen ({e})", r.what)),
        }

        // 5. Join: the send_join state and history as hs2 stores it.
        match bob.join(&r.id, &[hs1]).await {
            Ok(_) => {
                let st = wait_until("room state after the join", WAIT, || async {
                    let s = bob.room_state(&r.id).await?;
                    Ok(s.iter().any(|e| e["type"] == "m.room.name").then_some(s))
                })
                .await;
                match st {
                    Ok(s) => {
                        check(&json!(s), &format!("{} state after join", r.what), &mut problems);
                        let name = s.iter().find(|e| e["type"] == "m.room.name").map(|e| e["content"].clone());
                        if r.control && name != Some(json!({"name": r.name})) {
                            problems.push(format!("{}: joined state without the released name: {name:?}", r.what));
                        }
                        if !r.control && !s.iter().any(|e| e["type"] == CUSTOM) {
                            notes.push(format!("{}: custom state event not in the joined state", r.what));
                        }
                    }
                    Err(e) => problems.push(format!("{}: joined, but no room name in its state: {e}", r.what)),
                }
                match bob.room_events(&r.id, 100).await {
                    Ok(ev) => check(&json!(ev), &format!("{} messages after join", r.what), &mut problems),
                    Err(e) => problems.push(format!("{}: /messages: {e}", r.what)),
                }
            }
            Err(e) if r.control => problems.push(format!("{}: join refused: {e}", r.what)),
            Err(e) => notes.push(format!("{}: join refused ({})", r.what, e.status().map(|s| s.to_string()).unwrap_or_else(|| e.to_string()))),
        }
    }

    // 6. Directory and hierarchy again, now that the guard has seen the rooms.
    browse(bob, hs1, &space, &rooms, 101 + 2 * n as u32, &format!("run {n} again"), &mut problems, &mut notes).await;

    // 7. Everything bob's client holds.
    let filter = encode_segment(r#"{"room":{"timeline":{"limit":100},"include_leave":true}}"#);
    match bob.client.call("GET", &format!("/_matrix/client/v3/sync?timeout=0&full_state=true&filter={filter}"), Some(&bob.access_token), None).await {
        Ok(v) => check(&v, &format!("run {n} full sync"), &mut problems),
        Err(e) => problems.push(format!("run {n}: sync: {e}")),
    }
    (problems, notes)
}

#[tokio::test]
async fn geheim_rooms_leak_no_state_to_a_restricted_peer_five_runs() {
    let tmp = tempfile::tempdir().unwrap();
    let dir = std::env::var_os("GRENZWACHT_E2E_DIR").map(|d| std::path::PathBuf::from(d).join("labels_rooms")).unwrap_or_else(|| tmp.path().to_path_buf());
    let mut opts = LabOptions::new(&dir, OutboundMode::Connect);
    opts.guard_bin = std::env::var_os("GRENZWACHT_E2E_GUARD_BIN").map(Into::into).unwrap_or_else(|| env!("CARGO_BIN_EXE_grenzwacht").into());
    opts.labels = true;
    let info = lab::up(opts).await.unwrap_or_else(|e| panic!("lab up: {e}"));
    let _down = Down(info.dir.clone());
    let (hs1, hs2) = (info.hs1().clone(), info.hs2().clone());
    let alice = MatrixClient::new(&hs1.client_url).register_shared_secret(&hs1.registration_shared_secret, "alice", "pw-alice", false).await.unwrap();
    let bob = MatrixClient::new(&hs2.client_url).register_shared_secret(&hs2.registration_shared_secret, "bob", "pw-bob", false).await.unwrap();

    let mut report = Vec::new();
    let mut passed = 0;
    for n in 1..=RUNS {
        let t = Instant::now();
        let (problems, notes) = run(n, &alice, &bob, &hs1.server_name).await;
        eprintln!("run {n}: {} leak(s), {:.1} s; notes: {notes:#?}", problems.len(), t.elapsed().as_secs_f64());
        if problems.is_empty() {
            passed += 1;
        }
        report.extend(problems);
    }
    eprintln!("runs passed: {passed}/{RUNS}");
    assert!(report.is_empty(), "runs passed: {passed}/{RUNS}; {} problem(s):\n{}", report.len(), report.join("\n"));

    // The label layer decided (not a DLP rule: the distinctive text is no marking).
    let m = common::guard_metrics(&info).await;
    let denied: f64 = m.iter().filter(|s| s.name == "grenzwacht_label_decisions_total" && s.label("outcome") == "label:deny" && s.label("direction") == "outbound").map(|s| s.value).sum();
    assert!(denied >= (RUNS * VARIANTS.len()) as f64, "label denials: {denied}");
    let log = std::fs::read_to_string(&info.guard.log).unwrap_or_default();
    assert!(!log.contains(SECRET), "the guard log carries room state text");
}
