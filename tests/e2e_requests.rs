//! End-to-end: text in requests and media on `grenzwacht lab` (real Synapse homeservers).
//!
//! - Alice (hs1, protected) resolves a room alias `#GEHEIM-…:hs2` that exists on hs2 and looks
//!   up the profile of `@GEHEIM-…:hs2`: hs1 sends the alias and the user id to hs2 in the query
//!   string of federation requests, which the guard refuses (403, reason `request_text`) before
//!   they leave — hs2 never sees them, Alice gets an error. A clean alias on hs2 still resolves,
//!   before and after, and Bob's profile is still readable.
//! - Media fails closed: Alice uploads a file on hs1 that no event references; Bob (hs2)
//!   downloads it over federation (`/_matrix/client/v1/media/download/{hs1}/{id}`): the guard
//!   refuses hs2's download (reason `media_refused`: no event that crossed references the media)
//!   and Bob gets an error, while Alice reads her own file.
#[path = "common/lab.rs"]
mod common;

use std::time::Duration;

use grenzwacht::lab::client::{encode_segment, Session};
use grenzwacht::lab::{self};
use serde_json::json;

const TIMEOUT: Duration = Duration::from_secs(60);

/// The guard's refusals for `direction` and `reason`.
async fn refusals(info: &lab::LabInfo, direction: &str, reason: &str) -> f64 {
    common::guard_metrics(info)
        .await
        .iter()
        .filter(|s| {
            s.name == "grenzwacht_refusals_total"
                && s.label("direction") == direction
                && s.label("reason") == reason
        })
        .map(|s| s.value)
        .sum()
}

/// `GET /_matrix/client/v3/directory/room/{alias}` as `who`: status and body.
async fn resolve(who: &Session, alias: &str) -> (u16, serde_json::Value) {
    let path = format!(
        "/_matrix/client/v3/directory/room/{}",
        encode_segment(alias)
    );
    let r = who
        .client
        .raw("GET", &path, Some(&who.access_token), None, TIMEOUT)
        .await
        .expect("directory request");
    (r.status, r.json())
}

/// Requests hs2's federation listener processed that contain `needle`.
fn hs2_saw(info: &lab::LabInfo, needle: &str) -> Vec<String> {
    let hs2 = info.hs2();
    let port: u16 = hs2
        .federation_url
        .rsplit(':')
        .next()
        .and_then(|p| p.trim_end_matches('/').parse().ok())
        .expect("hs2 federation port");
    common::fed_requests_in_log(&common::hs_log(info, "hs2"), port)
        .into_iter()
        .filter(|r| r.contains(needle))
        .collect()
}

async fn alias_and_profile_lookups(info: &lab::LabInfo, alice: &Session, bob: &Session) {
    let hs2_name = info.hs2().server_name.clone();
    let tag = format!("{:08x}", rand::random::<u32>());
    let marked_local = format!("GEHEIM-{tag}");
    let clean_local = format!("lage-{tag}");
    let marked_room = bob
        .create_room(
            &json!({"preset": "public_chat", "room_alias_name": marked_local, "name": "Akte"}),
        )
        .await
        .expect("bob creates the marked alias");
    let clean_room = bob
        .create_room(
            &json!({"preset": "public_chat", "room_alias_name": clean_local, "name": "Lage"}),
        )
        .await
        .expect("bob creates the clean alias");
    let (marked_alias, clean_alias) = (
        format!("#{marked_local}:{hs2_name}"),
        format!("#{clean_local}:{hs2_name}"),
    );
    // Both aliases resolve on hs2 itself: the marked one exists, only the guard keeps it in.
    assert_eq!(
        resolve(bob, &marked_alias).await.1["room_id"],
        marked_room.as_str()
    );

    // Positive control first: a clean alias on hs2 resolves from hs1 through the guard.
    let (status, body) = resolve(alice, &clean_alias).await;
    assert_eq!(
        (status, body["room_id"].as_str()),
        (200, Some(clean_room.as_str())),
        "clean alias from hs1: {body}"
    );

    let before = refusals(info, "outbound", "request_text").await;
    let (status, body) = resolve(alice, &marked_alias).await;
    assert_ne!(status, 200, "the marked alias resolved from hs1: {body}");
    assert!(body.get("room_id").is_none(), "{body}");
    let after_alias = refusals(info, "outbound", "request_text").await;
    assert!(
        after_alias > before,
        "the guard refused the outbound directory query ({before} → {after_alias})"
    );

    let marked_user = format!("@GEHEIM-{tag}:{hs2_name}");
    let path = format!(
        "/_matrix/client/v3/profile/{}",
        encode_segment(&marked_user)
    );
    let r = alice
        .client
        .raw("GET", &path, Some(&alice.access_token), None, TIMEOUT)
        .await
        .expect("profile request");
    assert_ne!(
        r.status,
        200,
        "profile of a marked user id answered: {}",
        String::from_utf8_lossy(&r.body)
    );
    let after_profile = refusals(info, "outbound", "request_text").await;
    assert!(
        after_profile > after_alias,
        "the guard refused the outbound profile query ({after_alias} → {after_profile})"
    );

    // Nothing with the marking reached hs2 over federation; the clean queries did.
    assert!(
        hs2_saw(info, &format!("GEHEIM-{tag}")).is_empty(),
        "hs2 saw {:?}",
        hs2_saw(info, &format!("GEHEIM-{tag}"))
    );
    assert!(
        !hs2_saw(info, &clean_local).is_empty(),
        "hs2's access log shows the clean directory query"
    );

    // The conversation goes on: clean lookups still work after the refusals (no backoff).
    let (status, body) = resolve(alice, &clean_alias).await;
    assert_eq!(
        (status, body["room_id"].as_str()),
        (200, Some(clean_room.as_str())),
        "clean alias after the refusals: {body}"
    );
    let bob_profile = alice
        .client
        .raw(
            "GET",
            &format!(
                "/_matrix/client/v3/profile/{}",
                encode_segment(&bob.user_id)
            ),
            Some(&alice.access_token),
            None,
            TIMEOUT,
        )
        .await
        .expect("bob's profile");
    assert_eq!(
        bob_profile.status,
        200,
        "bob's profile from hs1: {}",
        String::from_utf8_lossy(&bob_profile.body)
    );

    let log = std::fs::read_to_string(&info.guard.log).unwrap_or_default();
    assert!(
        log.contains("query parameter room_alias") && log.contains("query parameter user_id"),
        "the guard log names the refused parameters"
    );
    assert!(
        log.contains("request_text"),
        "the guard log names the reason"
    );
    assert!(
        !log.contains(&marked_local),
        "the guard log never carries the refused text"
    );
}

async fn media_fails_closed(info: &lab::LabInfo, alice: &Session, bob: &Session) {
    let hs1_name = info.hs1().server_name.clone();
    let file = json!({"bericht": format!("Lagebericht {}", rand::random::<u32>())});
    let up = alice
        .client
        .raw(
            "POST",
            "/_matrix/media/v3/upload?filename=bericht.json",
            Some(&alice.access_token),
            Some(&file),
            TIMEOUT,
        )
        .await
        .expect("upload");
    assert_eq!(
        up.status,
        200,
        "upload on hs1: {}",
        String::from_utf8_lossy(&up.body)
    );
    let uri = up.json()["content_uri"]
        .as_str()
        .expect("content_uri")
        .to_string();
    let media_id = uri.rsplit('/').next().expect("media id").to_string();
    assert_eq!(uri, format!("mxc://{hs1_name}/{media_id}"));
    let path = format!(
        "/_matrix/client/v1/media/download/{}/{}",
        encode_segment(&hs1_name),
        encode_segment(&media_id)
    );

    // Alice reads her own file on hs1 (no federation involved): the file exists.
    let own = alice
        .client
        .raw("GET", &path, Some(&alice.access_token), None, TIMEOUT)
        .await
        .expect("own download");
    assert_eq!(own.status, 200);
    assert_eq!(
        serde_json::from_slice::<serde_json::Value>(&own.body).ok(),
        Some(file.clone())
    );

    // Bob on hs2 fetches it over federation: the guard refuses, Bob gets no file.
    let before = refusals(info, "inbound", "media_refused").await;
    let r = bob
        .client
        .raw("GET", &path, Some(&bob.access_token), None, TIMEOUT)
        .await
        .expect("remote download");
    assert_ne!(r.status, 200, "media crossed the guard");
    assert!(
        !String::from_utf8_lossy(&r.body).contains("Lagebericht"),
        "the file reached hs2"
    );
    let after = refusals(info, "inbound", "media_refused").await;
    assert!(
        after > before,
        "the guard refused hs2's media download ({before} → {after})"
    );
    let log = std::fs::read_to_string(&info.guard.log).unwrap_or_default();
    assert!(
        log.contains("media refused"),
        "the guard log names the refusal"
    );
}

#[tokio::test]
async fn marked_lookups_are_refused_before_they_leave_and_media_fails_closed() {
    let lab = common::e2e_lab("requests", false).await;
    let common::E2eLab {
        info, alice, bob, ..
    } = lab;
    alias_and_profile_lookups(&info, &alice, &bob).await;
    media_fails_closed(&info, &alice, &bob).await;
}
