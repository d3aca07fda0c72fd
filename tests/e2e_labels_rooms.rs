//! End-to-end: with labels on, a room labeled above the peer's clearance leaks none of its
//! state — through invites, knocks, joins, the room directory or a space hierarchy — whatever
//! the order of its state events (`grenzwacht lab` with real Synapse, labels on).
//!
//! hs1 is the DEU-VS side (cleared for everything), hs2 the NATO side, cleared up to NATO
//! RESTRICTED (= VS-NfD), releasable to DEU. alice@hs1 creates rooms labeled GEHEIM whose name,
//! topic and a custom state event carry a distinctive text (no DLP marking: only the label layer
//! can stop it), in three creation orders ([`Order`]): the label before, after, or between the
//! name and topic. For each order there is one room per *first carrier* ([`First`]) — the
//! federation exchange in which the guard first sees the room's state: a knock
//! (`send_knock` answer), an invite (`invite` request) or a join (`send_join` answer, a room
//! with the `public` join rule). Rooms with the `knock` or `public` join rule are published in
//! hs1's directory; all are children of a space (unlabeled: VS-NfD, released to hs2). Control
//! rooms labeled VS-NfD, one per first carrier, are built the same way: their names must
//! arrive everywhere, so the test cannot pass by blocking everything.
//!
//! Per run, bob@hs2:
//! 1. lists hs1's directory (`publicRooms?server=hs1`) and the space's hierarchy before any
//!    other federation traffic of the new rooms;
//! 2. knocks (knock stripped state) where the room is knockable, is invited (invite stripped
//!    state) unless the room is public, and joins (`/rooms/{id}/state` and `/messages` on hs2);
//!    then hs2's federation `/state` fetch of the room, sent straight to the guard (the order of
//!    the label and name events in it is counted: Synapse answers `send_join` with the state
//!    in the same kind of order, which the test does not control);
//! 3. lists the directory and the hierarchy again;
//! 4. a full `/sync` of bob's.
//!
//! The distinctive text must not appear anywhere bob's client can read; what redaction keeps
//! (`type`, `state_key`) may arrive. The whole scenario runs five times (acceptance:
//! "e2e, 5 runs").
//!
//! Step 1 is the hard case: the guard has seen nothing of the new rooms yet. It asks the
//! protected homeserver for their labels (`[[protected]] admin_api`, `proxy::room_labels`)
//! before any directory or hierarchy field of them crosses.
#[path = "common/lab.rs"]
mod common;

use std::time::{Duration, Instant};

use grenzwacht::lab::client::{encode_segment, wait_until, ClientError, Session};
use grenzwacht::lab::guard::LAB_DEU_POLICY;
use grenzwacht::lab::{self};
use serde_json::{json, Value};

const WAIT: Duration = Duration::from_secs(60);
/// How long a carrier of a GEHEIM room may take before it is recorded as "not delivered" (the
/// guard may refuse a whole knock, invite or join; that keeps the state on its side too).
const SHORT: Duration = Duration::from_secs(15);
const KEY: &str = "de.grenzwacht.label";
const ROOM_LABEL: &str = "de.grenzwacht.room_label";
const CUSTOM: &str = "org.example.lage";
/// Every distinctive text starts with this; it must never reach hs2's client.
const SECRET: &str = "Lagezentrum-Nord";
const RUNS: usize = 5;
/// Carriers that are allowed to leak: none.
const KNOWN_GAP: [Carrier; 0] = [];

fn deu(class: u64) -> Value {
    json!({"policy": LAB_DEU_POLICY, "classification": class,
           "categories": [{"tag_set": format!("{LAB_DEU_POLICY}.1"), "type": "permissive", "lacv": 276}]})
}

/// Where the room label event stands among the room's state events.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Order {
    /// In `createRoom`'s initial state; name, topic and the custom event set afterwards.
    Before,
    /// Name, topic and the custom event at creation; the label set afterwards.
    After,
    /// Name and label at creation; topic and the custom event afterwards.
    Between,
}

const ORDERS: [Order; 3] = [Order::Before, Order::After, Order::Between];

/// The exchange in which the guard first sees a room's state.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum First {
    /// `knock` join rule: knock, then invite, then join.
    Knock,
    /// `invite` join rule: invite, then join.
    Invite,
    /// `public` join rule: join (the `send_join` answer carries the state).
    Join,
}

const FIRSTS: [First; 3] = [First::Knock, First::Invite, First::Join];

impl First {
    fn join_rule(self) -> &'static str {
        match self {
            First::Knock => "knock",
            First::Invite => "invite",
            First::Join => "public",
        }
    }
}

/// Where bob read something.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Carrier {
    DirectoryBeforeLearning,
    HierarchyBeforeLearning,
    KnockState,
    InviteState,
    JoinedState,
    Messages,
    FederationState,
    Directory,
    Hierarchy,
    Sync,
}

struct Room {
    what: String,
    id: String,
    /// The room's name (distinctive text for GEHEIM rooms, clean for a control room).
    name: String,
    first: First,
    control: bool,
}

#[derive(Default)]
struct Findings {
    /// Leaks (or control failures), by carrier.
    problems: Vec<(Carrier, String)>,
    notes: Vec<String>,
    /// Positions in hs1's federation `/state` answers of GEHEIM rooms: (label before the name,
    /// label after it).
    order: (usize, usize),
}

impl Findings {
    /// Records a leak if `v` carries the distinctive text.
    fn check(&mut self, carrier: Carrier, v: &Value, what: &str) {
        let s = v.to_string();
        if let Some(at) = s.find(SECRET) {
            let from = s[..at]
                .char_indices()
                .rev()
                .nth(100)
                .map(|(i, _)| i)
                .unwrap_or(0);
            let to = s[at..]
                .char_indices()
                .nth(60)
                .map(|(i, _)| at + i)
                .unwrap_or(s.len());
            self.problems
                .push((carrier, format!("{what}: leaks: …{}…", &s[from..to])));
        }
    }
    fn problem(&mut self, carrier: Carrier, msg: String) {
        self.problems.push((carrier, msg));
    }
}

fn state(ty: &str, content: Value) -> Value {
    json!({"type": ty, "state_key": "", "content": content})
}

/// Creates a room with `label`, name, topic and a custom state event in `order`; published in
/// hs1's directory unless its join rule is `invite`.
async fn labeled_room(
    alice: &Session,
    order: Order,
    first: First,
    label: Value,
    name: &str,
    topic: &str,
    note: &str,
) -> String {
    let rule = state("m.room.join_rules", json!({"join_rule": first.join_rule()}));
    let lbl = state(ROOM_LABEL, json!({KEY: label}));
    let custom = json!({"text": note, "ort": name});
    let visibility = if first == First::Invite {
        "private"
    } else {
        "public"
    };
    let (body, after): (Value, Vec<(&str, Value)>) = match order {
        Order::Before => (
            json!({"preset": "private_chat", "visibility": visibility, "initial_state": [rule, lbl]}),
            vec![
                ("m.room.name", json!({"name": name})),
                ("m.room.topic", json!({"topic": topic})),
                (CUSTOM, custom),
            ],
        ),
        Order::After => (
            json!({"preset": "private_chat", "visibility": visibility, "name": name, "topic": topic,
                   "initial_state": [rule, state(CUSTOM, custom)]}),
            vec![(ROOM_LABEL, json!({KEY: label}))],
        ),
        Order::Between => (
            json!({"preset": "private_chat", "visibility": visibility, "name": name, "initial_state": [rule, lbl]}),
            vec![("m.room.topic", json!({"topic": topic})), (CUSTOM, custom)],
        ),
    };
    let room = alice
        .create_room(&body)
        .await
        .unwrap_or_else(|e| panic!("create {order:?}/{first:?} room: {e}"));
    for (ty, content) in after {
        alice
            .send_state(&room, ty, "", &content)
            .await
            .unwrap_or_else(|e| panic!("{order:?}/{first:?}: set {ty}: {e}"));
    }
    room
}

/// `publicRooms?server=` with a per-call `limit`, so hs2's short response cache of remote
/// directories does not answer from an earlier call.
async fn directory(bob: &Session, server: &str, limit: u32) -> Result<Vec<Value>, ClientError> {
    let path = format!(
        "/_matrix/client/v3/publicRooms?server={}&limit={limit}",
        encode_segment(server)
    );
    let v = bob
        .client
        .call("GET", &path, Some(&bob.access_token), None)
        .await?;
    Ok(v["chunk"].as_array().cloned().unwrap_or_default())
}

/// Directory and hierarchy as bob sees them.
#[allow(clippy::too_many_arguments)]
async fn browse(
    bob: &Session,
    hs1: &str,
    space: &str,
    rooms: &[Room],
    limit: u32,
    when: &str,
    before: bool,
    f: &mut Findings,
) {
    let (dir_carrier, hier_carrier) = if before {
        (
            Carrier::DirectoryBeforeLearning,
            Carrier::HierarchyBeforeLearning,
        )
    } else {
        (Carrier::Directory, Carrier::Hierarchy)
    };
    let listed_controls = |list: &[Value]| {
        rooms
            .iter()
            .filter(|r| r.control && r.first != First::Invite)
            .all(|c| {
                list.iter()
                    .any(|e| e["room_id"] == c.id.as_str() && e["name"] == c.name.as_str())
            })
    };
    let list = wait_until(
        &format!("{when}: the control rooms in hs1's directory"),
        WAIT,
        || async {
            let l = directory(bob, hs1, limit).await?;
            Ok(listed_controls(&l).then_some(l))
        },
    )
    .await
    .unwrap_or_else(|e| panic!("{e}"));
    let mut listed = 0;
    for r in rooms.iter().filter(|r| !r.control) {
        if let Some(e) = list.iter().find(|e| e["room_id"] == r.id.as_str()) {
            listed += 1;
            f.check(dir_carrier, e, &format!("{when} directory, {}", r.what));
        }
    }
    f.check(
        Carrier::Directory,
        &json!(list
            .iter()
            .filter(|e| !rooms
                .iter()
                .any(|r| !r.control && e["room_id"] == r.id.as_str()))
            .collect::<Vec<_>>()),
        &format!("{when} directory, other entries"),
    );
    f.notes
        .push(format!("{when}: directory lists {listed} GEHEIM rooms"));

    let seen = wait_until(
        &format!("{when}: the control rooms in the space hierarchy"),
        WAIT,
        || async {
            let v = bob.hierarchy(space).await?;
            let rs = v["rooms"].as_array().cloned().unwrap_or_default();
            Ok(listed_controls(&rs).then_some(rs))
        },
    )
    .await
    .unwrap_or_else(|e| panic!("{e}"));
    let mut listed = 0;
    for r in rooms.iter().filter(|r| !r.control) {
        if let Some(e) = seen.iter().find(|e| e["room_id"] == r.id.as_str()) {
            listed += 1;
            f.check(hier_carrier, e, &format!("{when} hierarchy, {}", r.what));
        }
    }
    // The space's own entry (its children_state), the control rooms and earlier runs' rooms.
    f.check(
        Carrier::Hierarchy,
        &json!(seen
            .iter()
            .filter(|e| !rooms
                .iter()
                .any(|r| !r.control && e["room_id"] == r.id.as_str()))
            .collect::<Vec<_>>()),
        &format!("{when} hierarchy, other entries"),
    );
    f.notes
        .push(format!("{when}: hierarchy lists {listed} GEHEIM rooms"));
}

/// A released room name must be in stripped or joined state.
fn has_name(events: &[Value], name: &str) -> bool {
    events
        .iter()
        .any(|e| e["type"] == "m.room.name" && e["content"]["name"] == name)
}

fn short(e: &ClientError) -> String {
    e.status()
        .map(|s| format!("HTTP {s}"))
        .unwrap_or_else(|| e.to_string())
}

/// Knock, invite and join of one room, in that order where the join rule allows it. Returns
/// whether bob joined.
async fn carriers(r: &Room, alice: &Session, bob: &Session, hs1: &str, f: &mut Findings) -> bool {
    if r.first == First::Knock {
        match bob.knock(&r.id, &[hs1]).await {
            Ok(()) => match wait_until("knock state", SHORT, || async {
                bob.knock_state(&r.id).await
            })
            .await
            {
                Ok(s) => {
                    f.check(
                        Carrier::KnockState,
                        &json!(s),
                        &format!("{} knock state", r.what),
                    );
                    if r.control && !has_name(&s, &r.name) {
                        f.problem(
                            Carrier::KnockState,
                            format!(
                                "{}: knock state without the released name: {}",
                                r.what,
                                json!(s)
                            ),
                        );
                    }
                }
                Err(e) => f
                    .notes
                    .push(format!("{}: knock state not seen ({e})", r.what)),
            },
            Err(e) if r.control => f.problem(
                Carrier::KnockState,
                format!("{}: knock refused: {e}", r.what),
            ),
            Err(e) => f
                .notes
                .push(format!("{}: knock refused ({})", r.what, short(&e))),
        }
    }
    if r.first != First::Join {
        alice
            .invite(&r.id, &bob.user_id)
            .await
            .unwrap_or_else(|e| panic!("{}: invite: {e}", r.what));
        match wait_until("invite state", SHORT, || async {
            bob.invite_state(&r.id).await
        })
        .await
        {
            Ok(s) => {
                f.check(
                    Carrier::InviteState,
                    &json!(s),
                    &format!("{} invite state", r.what),
                );
                if r.control && !has_name(&s, &r.name) {
                    f.problem(
                        Carrier::InviteState,
                        format!(
                            "{}: invite state without the released name: {}",
                            r.what,
                            json!(s)
                        ),
                    );
                }
            }
            Err(e) if r.control => f.problem(
                Carrier::InviteState,
                format!("{}: invite not seen: {e}", r.what),
            ),
            Err(e) => f.notes.push(format!("{}: invite not seen ({e})", r.what)),
        }
    }
    match bob.join(&r.id, &[hs1]).await {
        Ok(_) => {
            let st = wait_until("room state after the join", WAIT, || async {
                let s = bob.room_state(&r.id).await?;
                Ok(s.iter().any(|e| e["type"] == "m.room.name").then_some(s))
            })
            .await;
            match st {
                Ok(s) => {
                    f.check(
                        Carrier::JoinedState,
                        &json!(s),
                        &format!("{} state after join", r.what),
                    );
                    if r.control && !has_name(&s, &r.name) {
                        f.problem(
                            Carrier::JoinedState,
                            format!("{}: joined state without the released name", r.what),
                        );
                    }
                    if !r.control && !s.iter().any(|e| e["type"] == CUSTOM) {
                        f.notes.push(format!(
                            "{}: custom state event not in the joined state",
                            r.what
                        ));
                    }
                }
                Err(e) => f.problem(
                    Carrier::JoinedState,
                    format!("{}: joined, but no room name in its state: {e}", r.what),
                ),
            }
            match bob.room_events(&r.id, 100).await {
                Ok(ev) => f.check(
                    Carrier::Messages,
                    &json!(ev),
                    &format!("{} messages after join", r.what),
                ),
                Err(e) => f.problem(Carrier::Messages, format!("{}: /messages: {e}", r.what)),
            }
            true
        }
        Err(e) if r.control => {
            f.problem(
                Carrier::JoinedState,
                format!("{}: join refused: {e}", r.what),
            );
            false
        }
        Err(e) => {
            f.notes
                .push(format!("{}: join refused ({})", r.what, short(&e)));
            false
        }
    }
}

/// hs1's room state as hs2 fetches it over federation (`GET /state/{room}`, signed as hs2,
/// through the guard's inbound listener): checked for the distinctive text, and the position of
/// the label event relative to `m.room.name` counted (Synapse answers `send_join` with the
/// state in the same kind of order, which the test does not control).
async fn federation_state(info: &lab::LabInfo, alice: &Session, r: &Room, f: &mut Findings) {
    let (hs1, hs2) = (info.hs1(), info.hs2());
    let latest = match alice.room_events(&r.id, 1).await {
        Ok(ev) => ev
            .first()
            .and_then(|e| e["event_id"].as_str())
            .map(str::to_string),
        Err(e) => {
            return f.problem(
                Carrier::FederationState,
                format!("{}: latest event on hs1: {e}", r.what),
            )
        }
    };
    let Some(latest) = latest else {
        return f.problem(
            Carrier::FederationState,
            format!("{}: no event on hs1", r.what),
        );
    };
    let path = format!(
        "/_matrix/federation/v1/state/{}?event_id={}",
        encode_segment(&r.id),
        encode_segment(&latest)
    );
    let auth = common::xmatrix_signed(
        &hs2.signing_key,
        &hs2.server_name,
        &hs1.server_name,
        "GET",
        &path,
        &[],
    );
    let head = common::head(
        "GET",
        &path,
        &hs1.server_name,
        &[("Authorization", &auth)],
        0,
    );
    let resp = common::tls_request(info.guard.inbound_addr, &info.ca_cert, &head, &[]).await;
    if resp.status != 200 {
        return f.problem(
            Carrier::FederationState,
            format!(
                "{}: federation /state: HTTP {}: {}",
                r.what,
                resp.status,
                resp.text()
            ),
        );
    }
    let v = resp.json();
    f.check(
        Carrier::FederationState,
        &v,
        &format!("{} federation /state", r.what),
    );
    let pdus = v["pdus"].as_array().cloned().unwrap_or_default();
    let at = |ty: &str| pdus.iter().position(|p| p["type"] == ty);
    match (at(ROOM_LABEL), at("m.room.name")) {
        (Some(l), Some(n)) if l < n => f.order.0 += 1,
        (Some(_), Some(_)) => f.order.1 += 1,
        _ => f.problem(
            Carrier::FederationState,
            format!(
                "{}: federation /state without the label or the name event",
                r.what
            ),
        ),
    }
}

/// One run of the whole scenario.
async fn run(n: usize, info: &lab::LabInfo, alice: &Session, bob: &Session, hs1: &str) -> Findings {
    let mut f = Findings::default();
    let tag = format!("{:04x}", rand::random::<u16>());
    let mut rooms = Vec::new();
    for order in ORDERS {
        for first in FIRSTS {
            let name = format!("{SECRET}-{tag}-{n}-{order:?}-{first:?}");
            let topic = format!("{SECRET} Lagebesprechung {tag} {order:?}");
            let id = labeled_room(
                alice,
                order,
                first,
                deu(4),
                &name,
                &topic,
                &format!("{SECRET} Funkkreis {tag}"),
            )
            .await;
            rooms.push(Room {
                what: format!("run {n} GEHEIM {order:?}/{first:?}"),
                id,
                name,
                first,
                control: false,
            });
        }
    }
    for (i, first) in FIRSTS.into_iter().enumerate() {
        let name = format!("Kontrollraum-{tag}-{n}-{first:?}");
        let order = ORDERS[(n + i) % ORDERS.len()];
        let id = labeled_room(
            alice,
            order,
            first,
            deu(2),
            &name,
            &format!("Kantine {tag}"),
            "Speiseplan",
        )
        .await;
        rooms.push(Room {
            what: format!("run {n} VS-NfD control {order:?}/{first:?}"),
            id,
            name,
            first,
            control: true,
        });
    }

    // The space (unlabeled: the DEU side's default VS-NfD, released to hs2); bob joins it.
    let space = alice
        .create_room(&json!({"preset": "public_chat", "name": format!("Bereich {tag}-{n}"), "creation_content": {"type": "m.space"}}))
        .await
        .expect("create space");
    for r in &rooms {
        alice
            .send_state(&space, "m.space.child", &r.id, &json!({"via": [hs1]}))
            .await
            .expect("space child");
    }
    bob.join(&space, &[hs1]).await.expect("bob joins the space");

    browse(
        bob,
        hs1,
        &space,
        &rooms,
        100 + 2 * n as u32,
        &format!("run {n} before"),
        true,
        &mut f,
    )
    .await;
    for r in &rooms {
        let joined = carriers(r, alice, bob, hs1, &mut f).await;
        if joined && !r.control {
            federation_state(info, alice, r, &mut f).await;
        }
    }
    browse(
        bob,
        hs1,
        &space,
        &rooms,
        101 + 2 * n as u32,
        &format!("run {n} after"),
        false,
        &mut f,
    )
    .await;

    let filter = encode_segment(r#"{"room":{"timeline":{"limit":100},"include_leave":true}}"#);
    match bob
        .client
        .call(
            "GET",
            &format!("/_matrix/client/v3/sync?timeout=0&full_state=true&filter={filter}"),
            Some(&bob.access_token),
            None,
        )
        .await
    {
        Ok(v) => f.check(Carrier::Sync, &v, &format!("run {n} full sync")),
        Err(e) => f.problem(Carrier::Sync, format!("run {n}: sync: {e}")),
    }
    f
}

#[tokio::test]
async fn geheim_rooms_leak_no_state_to_a_restricted_peer_five_runs() {
    let lab = common::e2e_lab("labels_rooms", true).await;
    let common::E2eLab {
        info, alice, bob, ..
    } = lab;
    let hs1 = info.hs1().clone();

    let mut unexpected = Vec::new();
    let mut gap = Vec::new();
    let (mut clean, mut clean_outside_gap) = (0, 0);
    let mut order = (0, 0);
    for n in 1..=RUNS {
        let t = Instant::now();
        let f = run(n, &info, &alice, &bob, &hs1.server_name).await;
        order = (order.0 + f.order.0, order.1 + f.order.1);
        let (known, other): (Vec<_>, Vec<_>) = f
            .problems
            .into_iter()
            .partition(|(c, _)| KNOWN_GAP.contains(c));
        eprintln!(
            "run {n}: {} leak(s) in the known gap, {} other problem(s), {:.1} s; notes: {:#?}",
            known.len(),
            other.len(),
            t.elapsed().as_secs_f64(),
            f.notes
        );
        clean += usize::from(known.is_empty() && other.is_empty());
        clean_outside_gap += usize::from(other.is_empty());
        gap.extend(known.into_iter().map(|(_, m)| m));
        unexpected.extend(other.into_iter().map(|(c, m)| format!("[{c:?}] {m}")));
    }
    eprintln!("runs without any leak: {clean}/{RUNS}; without a leak outside the known gap: {clean_outside_gap}/{RUNS}");
    eprintln!(
        "federation /state of the GEHEIM rooms: label before the name {} times, after it {} times",
        order.0, order.1
    );
    eprintln!("known gap ({} leaks):\n{}", gap.len(), gap.join("\n"));
    assert!(
        unexpected.is_empty(),
        "runs clean outside the known gap: {clean_outside_gap}/{RUNS}; {} problem(s):\n{}",
        unexpected.len(),
        unexpected.join("\n")
    );
    assert_eq!(clean, RUNS, "every run is clean");

    // The label layer decided (not a DLP rule: the distinctive text is no marking).
    let m = common::guard_metrics(&info).await;
    let denied: f64 = m
        .iter()
        .filter(|s| {
            s.name == "grenzwacht_label_decisions_total"
                && s.label("outcome") == "label:deny"
                && s.label("direction") == "outbound"
        })
        .map(|s| s.value)
        .sum();
    assert!(
        denied >= (RUNS * ORDERS.len() * FIRSTS.len()) as f64,
        "label denials: {denied}"
    );
    // The labels of rooms listed before any of their traffic crossed came from hs1 itself.
    let looked_up: f64 = m
        .iter()
        .filter(|s| {
            s.name == "grenzwacht_room_label_lookups_total" && s.label("outcome") == "labeled"
        })
        .map(|s| s.value)
        .sum();
    assert!(
        looked_up >= (RUNS * ORDERS.len()) as f64,
        "room labels looked up at hs1: {looked_up}"
    );
    let failed: f64 = m
        .iter()
        .filter(|s| {
            s.name == "grenzwacht_room_label_lookups_total" && s.label("outcome") == "failed"
        })
        .map(|s| s.value)
        .sum();
    assert_eq!(failed, 0.0, "no failed room label lookups");
    let log = std::fs::read_to_string(&info.guard.log).unwrap_or_default();
    assert!(
        !log.contains(SECRET),
        "the guard log carries room state text"
    );
}
