//! End-to-end: sender notices (`[notices]`) on `grenzwacht lab` with real Synapse.
//!
//! - alice@hs1 sends a message with the marking `GEHEIM` (redacted in transit by the shipped
//!   rule set) into a room with bob@hs2: hs2 gets it redacted, and alice gets a server notice
//!   from her own homeserver naming the event id and the outcome, without the message text and
//!   without rule ids (the default);
//! - bob (remote side) gets no notice from the guard, also not for his own marked reply that the
//!   guard redacted on its way in;
//! - `grenzwacht_notices_total{result="sent"}` counts the one notice.
#[path = "common/lab.rs"]
mod common;

use std::time::Duration;

use grenzwacht::lab::client::{wait_until, Session};
use serde_json::json;

const WAIT: Duration = Duration::from_secs(60);

/// The rooms `who` is invited to, joined; then the text of every `m.room.message` in them
/// from a sender whose localpart is the notices user.
async fn notices_of(who: &Session) -> Vec<(String, String)> {
    for room in who.invited_rooms().await.unwrap_or_default() {
        let _ = who.join(&room, &[]).await;
    }
    let mut out = Vec::new();
    for room in who.joined_rooms().await.unwrap_or_default() {
        for m in who.messages(&room, 50).await.unwrap_or_default() {
            if m.sender.starts_with("@grenzwacht-notices:") {
                out.push((room.clone(), m.body));
            }
        }
    }
    out
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_protected_sender_is_told_about_a_redaction_and_nobody_else_is() {
    let lab = common::e2e_lab_with("notices", |o| o.notices = true).await;
    let (alice, bob) = (&lab.alice, &lab.bob);
    let hs1 = lab.info.hs1().server_name.clone();

    let room = alice
        .create_room(&json!({"preset": "private_chat", "name": "notices"}))
        .await
        .expect("create room");
    alice.invite(&room, &bob.user_id).await.expect("invite");
    bob.wait_for_invite(&room, WAIT).await.expect("invite");
    bob.join(&room, &[&hs1]).await.expect("bob joins");
    alice
        .wait_for_member(&room, &bob.user_id, WAIT)
        .await
        .expect("alice sees bob");

    let secret = "Lagebericht Nordost: GEHEIM, Bestand 4711";
    let e1 = alice.send_text(&room, secret).await.expect("send");
    let seen = common::wait_event(bob, &room, &e1, WAIT).await;
    assert_eq!(seen["content"], json!({}), "redacted at hs2: {seen}");

    let notices = wait_until("alice's notice", WAIT, || async {
        let n = notices_of(alice).await;
        Ok(n.iter().any(|(_, t)| t.contains(&e1)).then_some(n))
    })
    .await
    .expect("alice gets a notice naming the event");
    let (notice_room, text) = notices
        .iter()
        .find(|(_, t)| t.contains(&e1))
        .cloned()
        .unwrap();
    assert_ne!(notice_room, room, "the notice comes in its own room");
    assert!(text.contains("redacted"), "{text}");
    assert!(text.contains(&room), "names the room: {text}");
    for leak in ["GEHEIM", "Lagebericht", "4711", "marking."] {
        assert!(!text.contains(leak), "notice carries {leak:?}: {text}");
    }
    assert_eq!(
        notices.iter().filter(|(_, t)| t.contains(&e1)).count(),
        1,
        "one notice per event: {notices:?}"
    );

    // Inbound: bob's marked reply is redacted on its way to hs1; bob is told nothing (the guard
    // never speaks to remote users), nor is alice (she only sees it redacted).
    let e2 = bob
        .send_text(&room, "Antwort: ebenfalls GEHEIM")
        .await
        .expect("bob replies");
    let seen = common::wait_event(alice, &room, &e2, WAIT).await;
    assert_eq!(seen["content"], json!({}), "redacted at hs1: {seen}");
    // Let a notice that should not exist have time to arrive.
    tokio::time::sleep(Duration::from_secs(3)).await;
    assert!(
        notices_of(bob).await.is_empty(),
        "the remote sender got a notice"
    );
    assert!(
        !notices_of(alice).await.iter().any(|(_, t)| t.contains(&e2)),
        "a notice about an inbound event"
    );

    let sent: f64 = common::guard_metrics(&lab.info)
        .await
        .iter()
        .filter(|s| s.name == "grenzwacht_notices_total" && s.label("result") == "sent")
        .map(|s| s.value)
        .sum();
    assert_eq!(sent, 1.0, "one notice sent");
}
