//! End-to-end: the split appliance on the lab (`lab up --split 0.01`).
//!
//! hs1 ↔ HIGH half ⇄ two one-way UDP links (RaptorQ FEC), each through a relay dropping 1 % of
//! the datagrams at random ⇄ LOW half ↔ hs2, all real processes (`grenzwacht serve --half …`,
//! `grenzwacht hw relay`, Synapse):
//! - invite, join and numbered messages in both directions arrive, each exactly once;
//! - policy still applies on the sending half: a marked message is redacted both ways (HIGH
//!   re-signs as hs1, LOW with the attested guard key), and a message the frame format cannot
//!   carry (a newline) is redacted, not rewritten;
//! - losses happened (the relays' counts) and FEC repaired them (the halves' counters);
//! - each half's `/health` reports the link, and the LOW half never held hs1's key.
#[path = "common/lab.rs"]
mod common;

use std::collections::HashSet;
use std::net::SocketAddr;
use std::time::Duration;

use grenzwacht::lab::client::Session;
use serde_json::json;

const WAIT: Duration = Duration::from_secs(90);

async fn metrics_of(admin_url: &str) -> Vec<grenzwacht::lab::metrics::Sample> {
    let addr: SocketAddr = admin_url.trim_start_matches("http://").parse().unwrap();
    let r = common::tcp_request(
        addr,
        &common::head("GET", "/metrics", &addr.to_string(), &[], 0),
        b"",
    )
    .await;
    assert_eq!(r.status, 200);
    grenzwacht::lab::metrics::parse(&r.text())
}

fn total(samples: &[grenzwacht::lab::metrics::Sample], name: &str) -> f64 {
    samples
        .iter()
        .filter(|s| s.name == name)
        .map(|s| s.value)
        .sum()
}

/// Texts of `sender`'s messages in `room` as `who` sees them (timeline order).
async fn texts_from(who: &Session, room: &str, sender: &str) -> Vec<String> {
    let path = format!(
        "/_matrix/client/v3/rooms/{}/messages?dir=b&limit=200",
        grenzwacht::lab::client::encode_segment(room)
    );
    let v = who
        .client
        .call("GET", &path, Some(&who.access_token), None)
        .await
        .unwrap();
    let mut out: Vec<String> = v["chunk"]
        .as_array()
        .unwrap()
        .iter()
        .filter(|e| e["type"] == "m.room.message" && e["sender"] == sender)
        .filter_map(|e| e["content"]["body"].as_str().map(str::to_string))
        .collect();
    out.reverse();
    out
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn split_appliance_over_lossy_one_way_links() {
    let lab = common::e2e_lab_with("split", |o| o.split = Some(0.01)).await;
    let (info, alice, bob) = (&lab.info, &lab.alice, &lab.bob);
    let split = info.split.clone().expect("split lab");
    let hs1_name = info.hs1().server_name.clone();

    // The LOW half's config holds no key of hs1 (and `check` accepts both halves).
    let low_cfg = grenzwacht::config::Config::load(&split.low_config).unwrap();
    assert!(low_cfg.protected.iter().all(|p| p.signing_key.is_none()));
    let high_cfg = grenzwacht::config::Config::load(&split.high_config).unwrap();
    assert!(high_cfg.protected[0].signing_key.is_some());
    assert!(high_cfg.keys.guard_key.is_none());

    // Invite and join across the halves.
    let room = alice
        .create_room(&json!({"preset": "private_chat", "name": "split"}))
        .await
        .expect("create room");
    alice.invite(&room, &bob.user_id).await.expect("invite");
    bob.wait_for_invite(&room, WAIT)
        .await
        .expect("bob sees the invite");
    bob.join(&room, &[hs1_name.as_str()])
        .await
        .expect("bob joins");
    alice
        .wait_for_member(&room, &bob.user_id, WAIT)
        .await
        .expect("alice sees bob");

    // Numbered messages both ways, long enough that each transaction spans several datagrams
    // (so there is something for the relays to drop and for FEC to repair).
    let n = 25;
    let run = common::marker("r");
    let pad = "Lagemeldung ".repeat(200);
    for i in 0..n {
        alice
            .send_text(&room, &format!("{run} high→low #{i} {pad}"))
            .await
            .unwrap();
        bob.send_text(&room, &format!("{run} low→high #{i} {pad}"))
            .await
            .unwrap();
    }
    bob.wait_for_text(
        &room,
        &alice.user_id,
        &format!("{run} high→low #{} {pad}", n - 1),
        WAIT,
    )
    .await
    .expect("last message at hs2");
    alice
        .wait_for_text(
            &room,
            &bob.user_id,
            &format!("{run} low→high #{} {pad}", n - 1),
            WAIT,
        )
        .await
        .expect("last message at hs1");
    for (who, sender, dir) in [
        (bob, &alice.user_id, "high→low"),
        (alice, &bob.user_id, "low→high"),
    ] {
        // Each arrives exactly once (earlier ones may still be backfilled: wait for all).
        let want: Vec<String> = (0..n).map(|i| format!("{run} {dir} #{i} {pad}")).collect();
        let mut got = Vec::new();
        for _ in 0..60 {
            got = texts_from(who, &room, sender)
                .await
                .into_iter()
                .filter(|t| t.starts_with(&run))
                .collect();
            if got.len() >= n {
                break;
            }
            tokio::time::sleep(Duration::from_millis(500)).await;
        }
        let unique: HashSet<_> = got.iter().collect();
        assert_eq!(unique.len(), got.len(), "{dir}: duplicated: {got:?}");
        assert_eq!(
            got.iter().collect::<HashSet<_>>(),
            want.iter().collect::<HashSet<_>>(),
            "{dir}: every message exactly once"
        );
    }

    // Policy on the sending half: a marked message is redacted both ways.
    let e1 = alice
        .send_text(&room, "Lage: GEHEIM, nicht weitergeben")
        .await
        .unwrap();
    let seen = common::wait_event(bob, &room, &e1, WAIT).await;
    assert_eq!(
        seen["content"],
        json!({}),
        "HIGH → LOW not redacted: {seen}"
    );
    let e2 = bob.send_text(&room, "Antwort: GEHEIM").await.unwrap();
    let seen = common::wait_event(alice, &room, &e2, WAIT).await;
    assert_eq!(
        seen["content"],
        json!({}),
        "LOW → HIGH not redacted: {seen}"
    );
    // A message the frame format cannot carry (a newline) is redacted, not rewritten.
    let e3 = alice.send_text(&room, "zwei\nZeilen").await.unwrap();
    let seen = common::wait_event(bob, &room, &e3, WAIT).await;
    assert_eq!(seen["content"], json!({}), "a newline crossed: {seen}");
    // And the conversation goes on.
    let after = format!("{run} after the redactions");
    bob.send_text(&room, &after).await.unwrap();
    alice
        .wait_for_text(&room, &bob.user_id, &after, WAIT)
        .await
        .expect("conversation goes on");

    // Losses happened, FEC repaired them.
    let relayed: Vec<(u64, u64)> = split
        .relay_stats
        .iter()
        .map(|p| grenzwacht::lab::split::relay_counts(p).expect("relay stats"))
        .collect();
    let dropped: u64 = relayed.iter().map(|(_, d)| d).sum();
    let passed: u64 = relayed.iter().map(|(r, _)| r).sum();
    tokio::time::sleep(Duration::from_millis(600)).await;
    let high = metrics_of(&split.high_admin_url).await;
    let low = metrics_of(&split.low_admin_url).await;
    let recovered = total(&high, "grenzwacht_diode_symbols_recovered_total")
        + total(&low, "grenzwacht_diode_symbols_recovered_total");
    let lost = total(&high, "grenzwacht_diode_objects_lost_total")
        + total(&low, "grenzwacht_diode_objects_lost_total");
    let rejected = total(&high, "grenzwacht_split_frames_rejected_total")
        + total(&low, "grenzwacht_split_frames_rejected_total");
    eprintln!(
        "split e2e: datagrams relayed {passed}, dropped {dropped}; symbols recovered {recovered}; objects lost {lost}; frames rejected {}", rejected as u64
    );
    assert!(dropped > 0, "the relays dropped datagrams");
    assert!(recovered > 0.0, "FEC recovered lost symbols");
    assert_eq!(rejected, 0.0, "no frame failed verification");
    assert!(total(&high, "grenzwacht_split_frames_total") > 0.0);

    // Both halves report the link healthy.
    for url in [&split.high_admin_url, &split.low_admin_url] {
        let addr: SocketAddr = url.trim_start_matches("http://").parse().unwrap();
        let r = common::tcp_request(
            addr,
            &common::head("GET", "/health", &addr.to_string(), &[], 0),
            b"",
        )
        .await;
        assert_eq!(r.status, 200, "{url}/health: {}", r.text());
    }
}
