//! End-to-end: text outside the well-known fields, on `grenzwacht lab` (real Synapse
//! homeservers). Each case is a carrier a user fills with text of their choosing that is
//! neither an event nor a named user-data field; a clean control crosses first.
//!
//! - Key material: Alice (hs1) uploads a one-time key; Bob (hs2) claims it over federation.
//!   A clean key arrives; a key whose id and value carry a marking does not (the guard refuses
//!   hs1's `user/keys/claim` answer, reason `response_text`), and Bob gets no key.
//! - Avatar: Alice sets an `avatar_url` carrying a marking; Bob's profile query over
//!   federation gets her profile without it (the display name still crosses).
//! - To-device recipients: Alice sends a to-device message to a device id of Bob's that
//!   carries a marking (Synapse passes remote device ids through unchecked); the EDU does not
//!   cross, while a clean message sent after it arrives.
#[path = "common/lab.rs"]
mod common;

use std::time::Duration;

use grenzwacht::lab::client::{encode_segment, wait_until, Session};
use grenzwacht::lab::{self};
use serde_json::{json, Value};

const TIMEOUT: Duration = Duration::from_secs(60);

/// The guard's refusals for `reason`, all directions.
async fn refusals(info: &lab::LabInfo, reason: &str) -> f64 {
    common::guard_metrics(info)
        .await
        .iter()
        .filter(|s| s.name == "grenzwacht_refusals_total" && s.label("reason") == reason)
        .map(|s| s.value)
        .sum()
}

/// Bob claims one `signed_curve25519` key of Alice's device through hs2: the claimed keys of
/// that device (empty if none came back).
async fn claim(alice: &Session, bob: &Session) -> serde_json::Map<String, Value> {
    let body = json!({
        "one_time_keys": {&alice.user_id: {&alice.device_id: "signed_curve25519"}},
        "timeout": 20000
    });
    let r = bob
        .client
        .raw(
            "POST",
            "/_matrix/client/v3/keys/claim",
            Some(&bob.access_token),
            Some(&body),
            TIMEOUT,
        )
        .await
        .expect("key claim");
    assert_eq!(r.status, 200, "{}", String::from_utf8_lossy(&r.body));
    r.json()["one_time_keys"][&alice.user_id][&alice.device_id]
        .as_object()
        .cloned()
        .unwrap_or_default()
}

async fn upload_one_time_key(alice: &Session, key_id: &str, key: &str) {
    let body = json!({"one_time_keys": {
        format!("signed_curve25519:{key_id}"): {
            "key": key,
            "signatures": {&alice.user_id: {format!("ed25519:{}", alice.device_id): "c2lnbmF0dXJl"}}
        }
    }});
    let r = alice
        .client
        .raw(
            "POST",
            "/_matrix/client/v3/keys/upload",
            Some(&alice.access_token),
            Some(&body),
            TIMEOUT,
        )
        .await
        .expect("key upload");
    assert_eq!(r.status, 200, "{}", String::from_utf8_lossy(&r.body));
}

async fn key_material(info: &lab::LabInfo, alice: &Session, bob: &Session, run: u32) {
    // Control: a clean key crosses.
    let clean = format!("a2V5{run}");
    upload_one_time_key(alice, "AAAAAA", &clean).await;
    let got = claim(alice, bob).await;
    assert_eq!(
        got.get("signed_curve25519:AAAAAA")
            .map(|k| k["key"].clone()),
        Some(json!(clean)),
        "clean one-time key: {got:?}"
    );

    let before = refusals(info, "response_text").await;
    let marked = format!("Einstufung GEHEIM {run}");
    upload_one_time_key(alice, "GEHEIM", &marked).await;
    let got = claim(alice, bob).await;
    assert!(got.is_empty(), "marked one-time key reached hs2: {got:?}");
    let after = refusals(info, "response_text").await;
    assert!(
        after > before,
        "the guard refused hs1's key claim answer ({before} → {after})"
    );
    let log = std::fs::read_to_string(&info.guard.log).unwrap_or_default();
    assert!(
        !log.contains(&marked),
        "the guard log never carries the refused text"
    );
}

async fn profile_of(bob: &Session, user: &str) -> Value {
    let path = format!("/_matrix/client/v3/profile/{}", encode_segment(user));
    let r = bob
        .client
        .raw("GET", &path, Some(&bob.access_token), None, TIMEOUT)
        .await
        .expect("profile query");
    assert_eq!(r.status, 200, "{}", String::from_utf8_lossy(&r.body));
    r.json()
}

async fn set_avatar(alice: &Session, url: &str) {
    let path = format!(
        "/_matrix/client/v3/profile/{}/avatar_url",
        encode_segment(&alice.user_id)
    );
    alice
        .client
        .call(
            "PUT",
            &path,
            Some(&alice.access_token),
            Some(&json!({"avatar_url": url})),
        )
        .await
        .expect("set avatar_url");
}

async fn avatar(alice: &Session, bob: &Session, hs1: &str, run: u32) {
    alice.set_displayname("Alice").await.expect("displayname");
    let clean = format!("mxc://{hs1}/bild{run}");
    set_avatar(alice, &clean).await;
    let seen = profile_of(bob, &alice.user_id).await;
    assert_eq!(seen["avatar_url"], clean.as_str(), "clean avatar: {seen}");

    let marked = format!("mxc://{hs1}/GEHEIM-{run}");
    set_avatar(alice, &marked).await;
    let seen = profile_of(bob, &alice.user_id).await;
    assert!(
        seen.get("avatar_url").is_none(),
        "marked avatar_url reached hs2: {seen}"
    );
    assert_eq!(
        seen["displayname"], "Alice",
        "the rest of the profile: {seen}"
    );
}

async fn to_device_recipient(alice: &Session, bob: &Session, run: u32) {
    let ty = "org.grenzwacht.test";
    let ours = |events: Vec<Value>, n: &str| {
        events
            .into_iter()
            .filter(|e| e["type"] == ty && e["content"]["run"] == run && e["content"]["n"] == n)
            .collect::<Vec<_>>()
    };
    // The marked device id shares the EDU with a message to Bob's real device.
    let marked_device = format!("GEHEIM-{run}");
    alice
        .send_to_device(
            ty,
            &json!({&bob.user_id: {
                &bob.device_id: {"run": run, "n": "first"},
                marked_device.as_str(): {"run": run, "n": "first"}
            }}),
        )
        .await
        .expect("send marked to-device");
    alice
        .send_to_device(
            ty,
            &json!({&bob.user_id: {&bob.device_id: {"run": run, "n": "second"}}}),
        )
        .await
        .expect("send clean to-device");
    let second = wait_until(
        "the clean to-device message sent after the marked one",
        TIMEOUT,
        || async {
            Ok(Some(ours(bob.to_device_events().await?, "second")).filter(|v| !v.is_empty()))
        },
    )
    .await
    .expect("clean to-device message arrives");
    assert_eq!(second.len(), 1);
    let first = ours(bob.to_device_events().await.expect("sync"), "first");
    assert!(
        first.is_empty(),
        "the EDU addressed to a marked device id crossed: {first:?}"
    );
}

#[tokio::test]
async fn text_outside_named_fields_does_not_cross() {
    let lab = common::e2e_lab("unscanned", false).await;
    let common::E2eLab {
        info, alice, bob, ..
    } = lab;
    let hs1 = info.hs1().server_name.clone();
    let run = rand::random::<u32>();
    key_material(&info, &alice, &bob, run).await;
    avatar(&alice, &bob, &hs1, run).await;
    to_device_recipient(&alice, &bob, run).await;
}
