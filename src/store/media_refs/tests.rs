use std::time::{Duration, UNIX_EPOCH};

use super::*;

fn row(media: &str, event: &str, peer: &str, crossed: bool, ts: i64) -> MediaRefRow {
    MediaRefRow {
        server_name: "hs1.example.org".into(),
        media_id: media.into(),
        event_id: event.into(),
        room_id: "!room:hs1.example.org".into(),
        direction: "outbound".into(),
        peer: peer.into(),
        encrypted: false,
        crossed,
        verdict: if crossed { "allow" } else { "reject" }.into(),
        ts,
    }
}

const SHA: &str = "9f86d081884c7d659a2feaa0c55ad015a3bf4f1b2b0b822cd15d6c15b0f00a08";

#[test]
fn records_and_reads_back_newest_first() {
    let s = Store::open_in_memory().unwrap();
    assert!(s.media_refs("hs1.example.org", "m1").unwrap().is_empty());
    let mut a = row("m1", "$a", "hs2", true, 10);
    a.encrypted = true;
    let b = row("m1", "$b", "hs3", false, 20);
    let other = row("m2", "$a", "hs2", true, 30);
    s.record_media_refs(&[a.clone(), b.clone(), other.clone()])
        .unwrap();
    assert_eq!(s.media_refs("hs1.example.org", "m1").unwrap(), [b, a]);
    assert_eq!(s.media_refs("hs1.example.org", "m2").unwrap(), [other]);
    assert!(s.media_refs("hs9", "m1").unwrap().is_empty());
}

#[test]
fn a_later_decision_for_the_same_key_replaces_the_row() {
    let s = Store::open_in_memory().unwrap();
    s.record_media_refs(&[row("m1", "$a", "hs2", false, 10)])
        .unwrap();
    s.record_media_refs(&[row("m1", "$a", "hs2", false, 10)])
        .unwrap();
    assert_eq!(s.media_refs("hs1.example.org", "m1").unwrap().len(), 1);
    let later = row("m1", "$a", "hs2", true, 11);
    s.record_media_refs(std::slice::from_ref(&later)).unwrap();
    assert_eq!(s.media_refs("hs1.example.org", "m1").unwrap(), [later]);
    // Another peer or direction is another key.
    let mut inbound = row("m1", "$a", "hs2", true, 12);
    inbound.direction = "inbound".into();
    s.record_media_refs(&[row("m1", "$a", "hs3", true, 12), inbound])
        .unwrap();
    assert_eq!(s.media_refs("hs1.example.org", "m1").unwrap().len(), 3);
}

#[test]
fn rows_per_media_are_capped_keeping_crossed_ones() {
    let s = Store::open_in_memory().unwrap();
    // The one event that crossed, oldest of all.
    s.record_media_refs(&[row("m1", "$crossed", "hs2", true, 1)])
        .unwrap();
    let flood: Vec<MediaRefRow> = (0..200)
        .map(|i| row("m1", &format!("$e{i}"), "hs2", false, 100 + i))
        .collect();
    s.record_media_refs(&flood).unwrap();
    let rows = s.media_refs("hs1.example.org", "m1").unwrap();
    assert_eq!(rows.len(), MAX_REFS_PER_MEDIA);
    assert!(rows.iter().any(|r| r.event_id == "$crossed" && r.crossed));
    // The newest non-crossed ones are kept.
    assert_eq!(rows[0].event_id, "$e199");
    assert!(!rows.iter().any(|r| r.event_id == "$e0"));
    // Other media are not touched by the cap.
    s.record_media_refs(&[row("m2", "$x", "hs2", false, 5)])
        .unwrap();
    assert_eq!(s.media_refs("hs1.example.org", "m2").unwrap().len(), 1);
}

#[test]
fn invalid_rows_are_refused_before_anything_is_written() {
    let s = Store::open_in_memory().unwrap();
    let good = row("m1", "$a", "hs2", true, 1);
    let mut bad_dir = row("m1", "$b", "hs2", true, 1);
    bad_dir.direction = "sideways".into();
    let mut bad_room = row("m1", "$c", "hs2", true, 1);
    bad_room.room_id = "room".into();
    let mut long_media = row(&"m".repeat(256), "$d", "hs2", true, 1);
    long_media.verdict = "allow".into();
    let empty_event = row("m1", "", "hs2", true, 1);
    let spaced_peer = row("m1", "$e", "hs 2", true, 1);
    for bad in [bad_dir, bad_room, long_media, empty_event, spaced_peer] {
        let e = s
            .record_media_refs(&[good.clone(), bad.clone()])
            .unwrap_err();
        assert!(matches!(e, StoreError::InvalidInput { .. }), "{bad:?}");
    }
    assert!(s.media_refs("hs1.example.org", "m1").unwrap().is_empty());
    assert!(s.record_media_refs(&[]).is_ok());
}

#[test]
fn blocking_media() {
    let s = Store::open_in_memory().unwrap();
    assert_eq!(s.media_blocked("hs1", "m1").unwrap(), None);
    s.mark_media_blocked("hs1", "m1", "yara", None).unwrap();
    assert_eq!(
        s.media_blocked("hs1", "m1").unwrap().as_deref(),
        Some("yara")
    );
    assert_eq!(s.media_blocked("hs1", "m2").unwrap(), None);
    assert_eq!(s.media_blocked_by_sha256(SHA).unwrap(), None);
    // The first reason stays; the hash is learned later.
    s.mark_media_blocked("hs1", "m1", "dlp", Some(SHA)).unwrap();
    assert_eq!(
        s.media_blocked("hs1", "m1").unwrap().as_deref(),
        Some("yara")
    );
    assert_eq!(
        s.media_blocked_by_sha256(SHA).unwrap().as_deref(),
        Some("yara")
    );
    assert!(matches!(
        s.mark_media_blocked("hs1", "m3", "yara", Some("ABC")),
        Err(StoreError::InvalidInput { .. })
    ));
    assert!(matches!(
        s.mark_media_blocked("hs1", "m3", "", None),
        Err(StoreError::InvalidInput { .. })
    ));
    assert!(s.unblock_media("hs1", "m1").unwrap());
    assert!(!s.unblock_media("hs1", "m1").unwrap());
    assert_eq!(s.media_blocked("hs1", "m1").unwrap(), None);
}

#[test]
fn prune_by_age_keeps_blocks_and_newer_rows() {
    let s = Store::open_in_memory().unwrap();
    s.record_media_refs(&[
        row("m1", "$old", "hs2", true, 1_000),
        row("m1", "$new", "hs2", true, 5_000),
    ])
    .unwrap();
    s.mark_media_blocked("hs1", "m9", "yara", None).unwrap();
    let n = s
        .prune_media_refs(UNIX_EPOCH + Duration::from_millis(3_000))
        .unwrap();
    assert_eq!(n, 1);
    let rows = s.media_refs("hs1.example.org", "m1").unwrap();
    assert_eq!(rows.len(), 1);
    assert_eq!(rows[0].event_id, "$new");
    assert!(s.media_blocked("hs1", "m9").unwrap().is_some());
}

#[test]
fn persists_across_reopen() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("gw.db");
    {
        let s = Store::open(&path).unwrap();
        s.record_media_refs(&[row("m1", "$a", "hs2", true, 7)])
            .unwrap();
        s.mark_media_blocked("hs1", "bad", "type_not_allowed", Some(SHA))
            .unwrap();
    }
    let s = Store::open(&path).unwrap();
    assert_eq!(s.media_refs("hs1.example.org", "m1").unwrap().len(), 1);
    assert_eq!(
        s.media_blocked("hs1", "bad").unwrap().as_deref(),
        Some("type_not_allowed")
    );
}

#[test]
fn check_tells_which_rows_a_batch_accepts_and_now_is_in_milliseconds() {
    assert!(row("m1", "$a", "hs2", true, 1).check().is_ok());
    let mut no_event = row("m1", "", "hs2", true, 1);
    assert!(no_event.check().is_err());
    no_event.event_id = "$b".into();
    no_event.room_id = String::new();
    assert!(no_event.check().is_err());
    let now = now_ms();
    // Milliseconds: later than 2020-01-01 in ms, which seconds would not be.
    assert!(now > 1_577_836_800_000, "{now}");
    let s = Store::open_in_memory().unwrap();
    s.record_media_refs(&[row("m1", "$a", "hs2", true, now)])
        .unwrap();
    let cutoff = UNIX_EPOCH + Duration::from_millis(u64::try_from(now).unwrap() - 60_000);
    assert_eq!(s.prune_media_refs(cutoff).unwrap(), 0);
}
