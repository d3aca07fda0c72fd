//! End-to-end: the adversarial corpus (`tests/adversarial/corpus.toml`) through two real
//! Synapse homeservers and the guard running the shipped rule set, in both directions (hs1 →
//! hs2 is outbound through the guard, hs2 → hs1 inbound). What is asserted is what a user on
//! the other side sees through the client API:
//! - **transactions** (live room): every case, sent as a message, custom event or state event,
//!   arrives redacted (its content empty and nothing in it the rules refuse); every negative
//!   arrives unchanged; the cases that cross are exactly the corpus's known gaps;
//! - **what redaction keeps**: the cases whose redacted form is still refused (marked `type`,
//!   `state_key`), sent in a room of their own per direction: they never arrive, and the guard
//!   pauses that room towards the other side;
//! - **invite stripped state**: a room whose name and topic are marked, invited to: the
//!   invitee's `invite_state` carries no marked text;
//! - **send_join state**: the same room joined: its state on the joining server carries no
//!   marked text, a clean custom state event arrives intact;
//! - **backfill**: messages sent before the join, paginated by the joiner: redacted, the clean
//!   one intact;
//! - **public rooms**: a published room with a marked name and topic, listed by the other
//!   server's user (`publicRooms?server=`): no marked name or topic, the clean room listed as is;
//! - **hierarchy**: a space with a marked and a clean child room: the other side's hierarchy
//!   shows no marked text, the clean child as is.
#[path = "common/lab.rs"]
mod common;
#[path = "adversarial/corpus.rs"]
mod corpus;

use std::collections::BTreeSet;
use std::path::Path;
use std::sync::{Arc, OnceLock};
use std::time::Duration;

use corpus::{Case, Corpus};
use grenzwacht::lab::client::{wait_until, Session};
use grenzwacht::policy::dlp::fields::EventParts;
use grenzwacht::policy::dlp::{Action, Engine, RuleSet, ScanCtx};
use grenzwacht::policy::Direction;
use serde_json::{json, Value};

const WAIT: Duration = Duration::from_secs(60);

fn engine() -> Arc<Engine> {
    static E: OnceLock<Arc<Engine>> = OnceLock::new();
    E.get_or_init(|| {
        RuleSet::load_dir(Path::new(env!("CARGO_MANIFEST_DIR")).join("policies"))
            .unwrap_or_else(|d| panic!("{d}"))
            .engine()
    })
    .clone()
}

/// True if the user-visible parts of an event as a client sees it (`type`, `state_key`,
/// `content`) still carry text the shipped rules refuse.
fn marked_event(ev: &Value) -> bool {
    let ctx = ScanCtx {
        direction: Direction::Outbound,
        peer: None,
        room_id: None,
        sender: None,
        event_type: ev["type"].as_str().unwrap_or(""),
    };
    let parts = EventParts {
        event_type: ev["type"].as_str().unwrap_or(""),
        state_key: ev["state_key"].as_str(),
        redacts: None,
        content: &ev["content"],
        unsigned: None,
        envelope: None,
    };
    !matches!(
        engine().scan_parts(&ctx, parts).action,
        Action::Allow | Action::Tag
    )
}

/// True if any of the given strings carries text the shipped rules refuse.
fn marked_texts(texts: &[&str]) -> bool {
    let content = json!({ "texts": texts });
    marked_event(&json!({"type": "org.example.seen", "content": content}))
}

fn case<'a>(corpus: &'a Corpus, class: &str) -> &'a Case {
    corpus
        .case
        .iter()
        .find(|c| c.class == class)
        .unwrap_or_else(|| panic!("no case {class}"))
}

fn text_of<'a>(corpus: &'a Corpus, class: &str) -> &'a str {
    case(corpus, class)
        .text
        .as_deref()
        .unwrap_or_else(|| panic!("{class} is not a text case"))
}

/// Sends a case as the event it is (state event if it has a `state_key`); returns the event id.
async fn send_case(from: &Session, room: &str, case: &Case) -> String {
    let ev = case.event();
    let ty = ev["type"].as_str().unwrap();
    let r = match ev["state_key"].as_str() {
        Some(k) => from.send_state(room, ty, k, &ev["content"]).await,
        None => from.send_event(room, ty, &ev["content"]).await,
    };
    r.unwrap_or_else(|e| panic!("{}: sending {}: {e}", from.user_id, case.class))
}

/// A room both can write to (room version 12: the creator has full power; bob gets 100).
async fn shared_room(alice: &Session, bob: &Session, hs1_name: &str, name: &str) -> String {
    let room = alice
        .create_room(&json!({
            "preset": "private_chat", "name": name,
            "power_level_content_override": {"users": {&bob.user_id: 100}}
        }))
        .await
        .expect("create room");
    alice.invite(&room, &bob.user_id).await.expect("invite");
    bob.wait_for_invite(&room, WAIT).await.expect("invite seen");
    bob.join(&room, &[hs1_name]).await.expect("join");
    alice
        .wait_for_member(&room, &bob.user_id, WAIT)
        .await
        .expect("member");
    room
}

/// Transactions: every case and negative from `from`, read by `to`. Returns the classes that
/// crossed.
async fn live(
    info: &grenzwacht::lab::LabInfo,
    corpus: &Corpus,
    room: &str,
    from: &Session,
    to: &Session,
    dir: &str,
    problems: &mut Vec<String>,
) -> (BTreeSet<String>, Vec<String>) {
    let mut sent = Vec::new();
    for c in corpus.case.iter().chain(&corpus.negative) {
        if kept_by_redaction(c) {
            continue;
        }
        sent.push((c, send_case(from, room, c).await));
    }
    let control = format!("{dir}: Kontrollnachricht {}", rand::random::<u32>());
    from.send_text(room, &control).await.expect("send control");
    // Cases a rule holds for review stop the room behind them: the lab's reviewer rejects
    // them (they arrive redacted), then the control message follows.
    let m = wait_until("the clean control message", WAIT, || async {
        common::reject_all_held(info);
        Ok(to
            .messages(room, 100)
            .await?
            .into_iter()
            .find(|m| m.sender == from.user_id && m.body == control))
    })
    .await
    .expect("the clean control message arrives");
    assert_eq!(m.body, control);
    let mut crossed = BTreeSet::new();
    let ids: Vec<String> = sent.iter().map(|(_, id)| id.clone()).collect();
    let negatives: BTreeSet<&str> = corpus.negative.iter().map(|c| c.class.as_str()).collect();
    for (c, id) in sent {
        let seen = common::wait_event(to, room, &id, WAIT).await;
        let sent_ev = c.event();
        if negatives.contains(c.class.as_str()) {
            if seen["content"] != sent_ev["content"] || seen["type"] != sent_ev["type"] {
                problems.push(format!(
                    "{dir} transaction: negative {} did not arrive unchanged: {}",
                    c.class, seen["content"]
                ));
            }
        } else if seen["content"] != json!({}) || marked_event(&seen) {
            crossed.insert(c.class.clone());
        }
    }
    (crossed, ids)
}

/// True if the case's redacted form (`type` and `state_key` kept, content emptied) is still
/// refused by the shipped rules: the guard pauses the room instead of delivering it.
fn kept_by_redaction(c: &Case) -> bool {
    let ev = c.event();
    marked_event(&json!({"type": ev["type"], "state_key": ev["state_key"], "content": {}}))
}

/// The guard's `grenzwacht_paused_rooms` gauge for `dir`.
async fn paused_rooms(info: &grenzwacht::lab::LabInfo, dir: &str) -> f64 {
    common::guard_metrics(info)
        .await
        .iter()
        .filter(|s| s.name == "grenzwacht_paused_rooms" && s.label("direction") == dir)
        .map(|s| s.value)
        .sum()
}

/// The cases whose marking survives redaction, in a room of their own: the guard withholds
/// them and pauses the room towards `to`; none of them arrives.
#[allow(clippy::too_many_arguments)]
async fn kept_cases(
    info: &grenzwacht::lab::LabInfo,
    corpus: &Corpus,
    from: &Session,
    to: &Session,
    from_server: &str,
    dir: &str,
    problems: &mut Vec<String>,
) {
    let kept: Vec<&Case> = corpus
        .case
        .iter()
        .filter(|c| kept_by_redaction(c))
        .collect();
    if kept.is_empty() {
        return;
    }
    let before = paused_rooms(info, dir).await;
    let room = shared_room(from, to, from_server, &format!("kept {dir}")).await;
    let mut ids = Vec::new();
    for c in &kept {
        ids.push((c.class.clone(), send_case(from, &room, c).await));
    }
    let paused = wait_until(
        &format!("{dir}: the room of kept cases is paused"),
        WAIT,
        || async { Ok((paused_rooms(info, dir).await > before).then_some(())) },
    )
    .await;
    if paused.is_err() {
        problems.push(format!("{dir}: the room of the kept cases was not paused"));
    }
    tokio::time::sleep(Duration::from_secs(2)).await;
    for (class, id) in ids {
        let path = format!(
            "/_matrix/client/v3/rooms/{}/event/{}",
            grenzwacht::lab::client::encode_segment(&room),
            grenzwacht::lab::client::encode_segment(&id)
        );
        match to
            .client
            .call("GET", &path, Some(&to.access_token), None)
            .await
        {
            Err(e) if e.status() == Some(404) => {}
            other => problems.push(format!("{dir}: kept case {class} arrived: {other:?}")),
        }
    }
}

/// Invite stripped state, send_join state and backfill of a room `owner` prepared before
/// `other` joined.
async fn history(
    corpus: &Corpus,
    owner: &Session,
    other: &Session,
    owner_server: &str,
    dir: &str,
    problems: &mut Vec<String>,
) {
    let name = text_of(corpus, "cyrillic");
    let topic = text_of(corpus, "zero_width");
    let room = owner
        .create_room(&json!({"preset": "private_chat", "name": name, "topic": topic}))
        .await
        .expect("create room with marked name and topic");
    let note = json!({"text": format!("sichtbarer Zustand {dir}")});
    owner
        .send_state(&room, "org.example.note", "clean", &note)
        .await
        .expect("clean state");
    let marked_state = send_case(owner, &room, case(corpus, "custom_state_content")).await;
    let mut old = vec![marked_state];
    for class in [
        "zero_width",
        "iban_dashes",
        "html_comment",
        "custom_key_next_to_body",
        "math_bold",
        "greek",
    ] {
        old.push(send_case(owner, &room, case(corpus, class)).await);
    }
    let old_clean = format!("{dir}: alte Nachricht, bitte lesen");
    owner
        .send_text(&room, &old_clean)
        .await
        .expect("old clean message");

    // Invite: stripped state.
    owner.invite(&room, &other.user_id).await.expect("invite");
    let stripped = wait_until("the invite's stripped state", WAIT, || async {
        other.invite_state(&room).await
    })
    .await
    .expect("invite arrives");
    for e in &stripped {
        if marked_event(e) {
            problems.push(format!(
                "{dir} invite stripped state: {} carries marked text: {}",
                e["type"], e["content"]
            ));
        }
    }

    // Control: the stripped state of an invite to a room with a clean name carries the name.
    let clean_name = format!("Besprechung {dir}");
    let control = owner
        .create_room(&json!({"preset": "private_chat", "name": clean_name}))
        .await
        .expect("create control room");
    owner
        .invite(&control, &other.user_id)
        .await
        .expect("invite to the control room");
    wait_until("the control invite's room name", WAIT, || async {
        let s = other.invite_state(&control).await?.unwrap_or_default();
        Ok(s.iter()
            .any(|e| e["type"] == "m.room.name" && e["content"]["name"] == clean_name.as_str())
            .then_some(()))
    })
    .await
    .expect("a clean room name crosses in the stripped state");

    // Join: the state in the send_join response (and later state fetches).
    other.join(&room, &[owner_server]).await.expect("join");
    let state = wait_until(
        "the clean state event at the joining server",
        WAIT,
        || async {
            let s = other.room_state(&room).await?;
            Ok(s.iter()
                .any(|e| e["type"] == "org.example.note" && e["content"] == note)
                .then_some(s))
        },
    )
    .await
    .expect("clean state arrives with the join");
    if !state.iter().any(|e| e["type"] == "m.room.name") {
        problems.push(format!(
            "{dir} send_join: no m.room.name at the joining server (carrier not exercised)"
        ));
    }
    for e in &state {
        if marked_event(e) {
            problems.push(format!(
                "{dir} send_join state: {} carries marked text: {}",
                e["type"], e["content"]
            ));
        }
    }

    // Backfill: history from before the join.
    let events = wait_until(
        "the old clean message at the joining server",
        WAIT,
        || async {
            let ev = other.room_events(&room, 100).await?;
            Ok(ev
                .iter()
                .any(|e| e["content"]["body"] == old_clean.as_str())
                .then_some(ev))
        },
    )
    .await
    .expect("old clean message backfilled");
    for e in &events {
        if marked_event(e) {
            problems.push(format!(
                "{dir} backfill: {} carries marked text: {}",
                e["type"], e["content"]
            ));
        }
    }
    for id in &old {
        let seen = common::wait_event(other, &room, id, WAIT).await;
        if seen["content"] != json!({}) || marked_event(&seen) {
            problems.push(format!(
                "{dir} backfill: {id} not redacted: {}",
                seen["content"]
            ));
        }
    }
}

fn directory_entry_marked(e: &Value) -> bool {
    let texts: Vec<&str> = ["name", "topic", "canonical_alias"]
        .iter()
        .filter_map(|k| e[*k].as_str())
        .collect();
    marked_texts(&texts)
}

/// Public rooms: `owner` publishes a marked and a clean room, `other` lists `owner_server`'s
/// directory.
async fn public_rooms(
    corpus: &Corpus,
    owner: &Session,
    other: &Session,
    owner_server: &str,
    dir: &str,
    problems: &mut Vec<String>,
) {
    let marked = owner
        .create_room(&json!({"preset": "public_chat", "visibility": "public",
            "name": text_of(corpus, "fullwidth"), "topic": text_of(corpus, "iban_lower")}))
        .await
        .expect("create marked public room");
    let clean_name = format!("Offener Raum {dir}");
    let clean = owner
        .create_room(&json!({"preset": "public_chat", "visibility": "public", "name": clean_name, "topic": "Treffpunkt Kantine"}))
        .await
        .expect("create clean public room");
    let list = wait_until("the clean room in the remote directory", WAIT, || async {
        let v = other.public_rooms(owner_server).await?;
        let chunk = v["chunk"].as_array().cloned().unwrap_or_default();
        Ok(chunk
            .iter()
            .any(|e| e["room_id"] == clean.as_str())
            .then_some(chunk))
    })
    .await
    .expect("remote directory lists the clean room");
    let entry = |id: &str| list.iter().find(|e| e["room_id"] == id).cloned();
    let c = entry(&clean).unwrap();
    if c["name"] != clean_name.as_str() || c["topic"] != "Treffpunkt Kantine" {
        problems.push(format!(
            "{dir} public rooms: the clean room lost its name or topic: {c}"
        ));
    }
    if entry(&marked).is_none() {
        problems.push(format!(
            "{dir} public rooms: the marked room is not listed (carrier not exercised)"
        ));
    }
    for e in &list {
        if directory_entry_marked(e) {
            problems.push(format!(
                "{dir} public rooms: {} listed with marked text: {e}",
                e["room_id"]
            ));
        }
    }
}

/// Hierarchy: `owner` builds a space with a marked and a clean child room; `other` joins the
/// space and asks for its hierarchy.
async fn hierarchy(
    corpus: &Corpus,
    owner: &Session,
    other: &Session,
    owner_server: &str,
    dir: &str,
    problems: &mut Vec<String>,
) {
    let marked = owner
        .create_room(&json!({"preset": "public_chat", "name": text_of(corpus, "math_bold"), "topic": text_of(corpus, "html_entity_in_plain_body")}))
        .await
        .expect("create marked child");
    let clean_name = format!("Kinderraum {dir}");
    let clean = owner
        .create_room(&json!({"preset": "public_chat", "name": clean_name}))
        .await
        .expect("create clean child");
    let space = owner
        .create_room(&json!({"preset": "public_chat", "name": format!("Bereich {dir}"), "creation_content": {"type": "m.space"}}))
        .await
        .expect("create space");
    for child in [&marked, &clean] {
        owner
            .send_state(
                &space,
                "m.space.child",
                child,
                &json!({"via": [owner_server]}),
            )
            .await
            .expect("space child");
    }
    other
        .join(&space, &[owner_server])
        .await
        .expect("join space");
    let rooms = wait_until("the clean child in the remote hierarchy", WAIT, || async {
        let v = other.hierarchy(&space).await?;
        let rooms = v["rooms"].as_array().cloned().unwrap_or_default();
        Ok(rooms
            .iter()
            .any(|r| r["room_id"] == clean.as_str() && r["name"] == clean_name.as_str())
            .then_some(rooms))
    })
    .await
    .expect("hierarchy lists the clean child");
    if !rooms.iter().any(|r| r["room_id"] == marked.as_str()) {
        problems.push(format!(
            "{dir} hierarchy: the marked child is not listed (carrier not exercised)"
        ));
    }
    for r in &rooms {
        if directory_entry_marked(r) {
            problems.push(format!(
                "{dir} hierarchy: {} listed with marked text: {r}",
                r["room_id"]
            ));
        }
        for e in r["children_state"].as_array().into_iter().flatten() {
            if marked_event(e) {
                problems.push(format!(
                    "{dir} hierarchy: children_state of {} carries marked text: {e}",
                    r["room_id"]
                ));
            }
        }
    }
}

/// Knock stripped state: `owner` makes a knockable room with a marked name, `other` knocks;
/// a clean knockable room is the control.
async fn knock(
    corpus: &Corpus,
    owner: &Session,
    other: &Session,
    owner_server: &str,
    dir: &str,
    problems: &mut Vec<String>,
) {
    let knockable = |name: &str| {
        json!({"preset": "private_chat", "name": name,
            "initial_state": [{"type": "m.room.join_rules", "state_key": "", "content": {"join_rule": "knock"}}]})
    };
    let marked = owner
        .create_room(&knockable(text_of(corpus, "greek")))
        .await
        .expect("create marked knock room");
    let clean_name = format!("Anklopfen {dir}");
    let clean = owner
        .create_room(&knockable(&clean_name))
        .await
        .expect("create clean knock room");
    other
        .knock(&clean, &[owner_server])
        .await
        .expect("knock on the clean room");
    wait_until("the clean knock's room name", WAIT, || async {
        let s = other.knock_state(&clean).await?.unwrap_or_default();
        Ok(s.iter()
            .any(|e| e["type"] == "m.room.name" && e["content"]["name"] == clean_name.as_str())
            .then_some(()))
    })
    .await
    .expect("a clean room name crosses in the knock's stripped state");
    match other.knock(&marked, &[owner_server]).await {
        Ok(()) => {
            let stripped = wait_until("the marked knock's stripped state", WAIT, || async {
                other.knock_state(&marked).await
            })
            .await
            .expect("knock recorded");
            for e in &stripped {
                if marked_event(e) {
                    problems.push(format!(
                        "{dir} knock stripped state: {} carries marked text: {}",
                        e["type"], e["content"]
                    ));
                }
            }
        }
        // Refusing the knock as a whole also keeps the name on its side.
        Err(e) => assert!(e.status().is_some(), "knock on the marked room: {e}"),
    }
}

/// True if an event's `content` (every string and key) carries text the shipped rules refuse;
/// `type` and `state_key` are left out (redaction keeps them: the corpus's delivery gaps).
fn marked_content(ev: &Value) -> bool {
    marked_event(&json!({"type": "org.example.seen", "content": ev["content"]}))
}

/// Federation fetches hs2 makes of hs1's events, sent straight to the guard's inbound
/// listener signed as hs2: `event`, `state`, `backfill` and `get_missing_events` answers
/// carry the corpus events redacted.
async fn fetches(
    info: &grenzwacht::lab::LabInfo,
    room: &str,
    ids: &[String],
    problems: &mut Vec<String>,
) {
    use grenzwacht::lab::client::encode_segment;
    let (hs1, hs2) = (info.hs1(), info.hs2());
    let call = |method: &'static str, path: String, body: Vec<u8>| async move {
        let auth = common::xmatrix_signed(
            &hs2.signing_key,
            &hs2.server_name,
            &hs1.server_name,
            method,
            &path,
            &body,
        );
        let head = common::head(
            method,
            &path,
            &hs1.server_name,
            &[
                ("Authorization", &auth),
                ("Content-Type", "application/json"),
            ],
            body.len(),
        );
        let r = common::tls_request(info.guard.inbound_addr, &info.ca_cert, &head, &body).await;
        assert_eq!(r.status, 200, "{method} {path}: {}", r.text());
        r.json()
    };
    let last = ids.last().expect("sent ids");
    let mut pdus: Vec<(String, Value)> = Vec::new();
    for id in ids.iter().take(3) {
        let v = call(
            "GET",
            format!("/_matrix/federation/v1/event/{}", encode_segment(id)),
            Vec::new(),
        )
        .await;
        pdus.extend(
            v["pdus"]
                .as_array()
                .into_iter()
                .flatten()
                .map(|p| ("event".to_string(), p.clone())),
        );
    }
    let v = call(
        "GET",
        format!(
            "/_matrix/federation/v1/state/{}?event_id={}",
            encode_segment(room),
            encode_segment(last)
        ),
        Vec::new(),
    )
    .await;
    for k in ["pdus", "auth_chain"] {
        pdus.extend(
            v[k].as_array()
                .into_iter()
                .flatten()
                .map(|p| ("state".to_string(), p.clone())),
        );
    }
    let v = call(
        "GET",
        format!(
            "/_matrix/federation/v1/backfill/{}?v={}&limit=100",
            encode_segment(room),
            encode_segment(last)
        ),
        Vec::new(),
    )
    .await;
    let backfilled = v["pdus"].as_array().cloned().unwrap_or_default();
    pdus.extend(
        backfilled
            .iter()
            .map(|p| ("backfill".to_string(), p.clone())),
    );
    let body =
        serde_json::to_vec(&json!({"earliest_events": [], "latest_events": [last], "limit": 100}))
            .unwrap();
    let v = call(
        "POST",
        format!(
            "/_matrix/federation/v1/get_missing_events/{}",
            encode_segment(room)
        ),
        body,
    )
    .await;
    pdus.extend(
        v["events"]
            .as_array()
            .into_iter()
            .flatten()
            .map(|p| ("get_missing_events".to_string(), p.clone())),
    );
    let redacted = backfilled
        .iter()
        .filter(|p| p["content"] == json!({}))
        .count();
    if redacted < 20 {
        problems.push(format!(
            "outbound backfill fetch: only {redacted} redacted PDUs of {} (carrier not exercised?)",
            backfilled.len()
        ));
    }
    for (what, p) in &pdus {
        if marked_content(p) {
            problems.push(format!(
                "outbound {what} fetch: {} carries marked content: {}",
                p["type"], p["content"]
            ));
        }
    }
}

#[tokio::test]
async fn adversarial_corpus_does_not_cross_in_either_direction() {
    let corpus = corpus::load();
    let lab = common::e2e_lab("adversarial", false).await;
    let common::E2eLab {
        info, alice, bob, ..
    } = lab;
    let (hs1, hs2) = (info.hs1().clone(), info.hs2().clone());

    let mut problems = Vec::new();
    let gaps: BTreeSet<String> = corpus
        .case
        .iter()
        .filter(|c| c.gap().is_some())
        .map(|c| c.class.clone())
        .collect();
    let room = shared_room(&alice, &bob, &hs1.server_name, "adversarial").await;
    let mut sent_by_hs1 = Vec::new();
    for (dir, from, to) in [("outbound", &alice, &bob), ("inbound", &bob, &alice)] {
        let (crossed, ids) = live(&info, &corpus, &room, from, to, dir, &mut problems).await;
        if dir == "outbound" {
            sent_by_hs1 = ids;
        }
        if crossed != gaps {
            problems.push(format!(
                "{dir} transactions: crossed {:?}, known gaps {:?}",
                crossed.difference(&gaps).collect::<Vec<_>>(),
                gaps.difference(&crossed)
                    .map(|g| format!("{g} (listed, did not cross)"))
                    .collect::<Vec<_>>()
            ));
        }
    }
    for (dir, owner, other, owner_server) in [
        ("outbound", &alice, &bob, &hs1.server_name),
        ("inbound", &bob, &alice, &hs2.server_name),
    ] {
        history(&corpus, owner, other, owner_server, dir, &mut problems).await;
        public_rooms(&corpus, owner, other, owner_server, dir, &mut problems).await;
        hierarchy(&corpus, owner, other, owner_server, dir, &mut problems).await;
        knock(&corpus, owner, other, owner_server, dir, &mut problems).await;
    }
    fetches(&info, &room, &sent_by_hs1, &mut problems).await;
    kept_cases(
        &info,
        &corpus,
        &alice,
        &bob,
        &hs1.server_name,
        "outbound",
        &mut problems,
    )
    .await;
    kept_cases(
        &info,
        &corpus,
        &bob,
        &alice,
        &hs2.server_name,
        "inbound",
        &mut problems,
    )
    .await;
    assert!(
        problems.is_empty(),
        "{} problem(s):\n{}",
        problems.len(),
        problems.join("\n")
    );
    let log = std::fs::read_to_string(&info.guard.log).unwrap_or_default();
    for c in corpus
        .case
        .iter()
        .filter_map(|c| c.text.as_deref())
        .filter(|t| !t.is_ascii())
    {
        assert!(!log.contains(c), "the guard log carries a case's text");
    }
}
