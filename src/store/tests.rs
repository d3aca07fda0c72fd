use std::collections::HashSet;
use std::sync::Barrier;
use std::thread;

use super::*;

const ROOM: &str = "!abc:hs1.example.org";

fn forward(body: &[u8]) -> TxnDecision {
    TxnDecision::forward(
        200,
        body.to_vec(),
        Some("X-Matrix origin=\"a\",key=\"ed25519:1\",sig=\"s\"".to_owned()),
    )
}

fn refuse() -> TxnDecision {
    TxnDecision::refuse(403, "M_FORBIDDEN", "refused by policy")
}

fn raw_conn(path: &Path) -> Connection {
    Connection::open(path).unwrap()
}

// ---- open, persistence, schema -------------------------------------------------------------

#[test]
fn open_creates_file_with_schema_and_private_mode() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("gw.db");
    let store = Store::open(&path).unwrap();
    assert!(path.is_file());
    assert_eq!(store.schema_version().unwrap(), SCHEMA_VERSION);
    assert_eq!(SCHEMA_VERSION, 8);
    #[cfg(unix)]
    {
        use std::os::unix::fs::PermissionsExt;
        let mode = std::fs::metadata(&path).unwrap().permissions().mode();
        assert_eq!(mode & 0o777, 0o600, "mode {mode:o}");
    }
    drop(store);
    let c = raw_conn(&path);
    let mode: String = c
        .query_row("PRAGMA journal_mode", [], |r| r.get(0))
        .unwrap();
    assert_eq!(mode, "wal");
    let app: i32 = c
        .query_row("PRAGMA application_id", [], |r| r.get(0))
        .unwrap();
    assert_eq!(app, schema::APPLICATION_ID);
    let tables: Vec<String> = c
        .prepare("SELECT name FROM sqlite_schema WHERE type = 'table' ORDER BY name")
        .unwrap()
        .query_map([], |r| r.get(0))
        .unwrap()
        .collect::<Result<_, _>>()
        .unwrap();
    assert_eq!(
        tables,
        [
            "health_probe",
            "held_events",
            "hold_queue",
            "media_blocked",
            "media_refs",
            "room_labels",
            "room_members",
            "room_pauses",
            "room_versions",
            "txn_decisions"
        ]
    );
}

#[test]
fn reopen_keeps_room_versions_and_decisions() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("gw.db");
    {
        let s = Store::open(&path).unwrap();
        assert_eq!(
            s.set_room_version(ROOM, "12", "m.room.create").unwrap(),
            RoomVersionClaim::Learned
        );
        let put = s
            .put_txn_decision(
                "inbound",
                "hs2",
                "hs1",
                "t1",
                b"{\"pdus\":[]}",
                &forward(b"fwd"),
            )
            .unwrap();
        assert!(put.inserted());
    }
    let s = Store::open(&path).unwrap();
    assert_eq!(s.room_version(ROOM).unwrap().as_deref(), Some("12"));
    // A conflicting claim after the restart is still detected (and names the first source).
    assert_eq!(
        s.set_room_version(ROOM, "10", "make_join").unwrap(),
        RoomVersionClaim::Conflict {
            known: "12".to_owned(),
            known_from: "m.room.create".to_owned()
        }
    );
    let rec = s
        .txn_decision("inbound", "hs2", "hs1", "t1")
        .unwrap()
        .expect("persisted");
    assert_eq!(rec.decision, forward(b"fwd"));
    assert!(rec.body_matches(b"{\"pdus\":[]}"));
    assert!(!rec.body_matches(b"{\"pdus\":[1]}"));
}

#[test]
fn migrations_are_idempotent() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("gw.db");
    drop(Store::open(&path).unwrap());
    let mut c = raw_conn(&path);
    // Running the migrations again on a current file changes nothing and does not fail
    // (migration 1 has plain CREATE TABLE: running it twice would).
    schema::migrate(&mut c, schema::MIGRATIONS, "test").unwrap();
    schema::migrate(&mut c, schema::MIGRATIONS, "test").unwrap();
    assert_eq!(schema::user_version(&c).unwrap(), SCHEMA_VERSION);
    drop(c);
    for _ in 0..2 {
        let s = Store::open(&path).unwrap();
        assert_eq!(s.schema_version().unwrap(), SCHEMA_VERSION);
    }
}

#[test]
fn migrations_run_forward_from_older_versions_keeping_data() {
    // A hypothetical next version on top of the real ones.
    let mut next: Vec<&str> = schema::MIGRATIONS.to_vec();
    next.push("ALTER TABLE room_versions ADD COLUMN note TEXT");
    let v2: &[&str] = &next;
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("gw.db");
    {
        let s = Store::open(&path).unwrap();
        s.set_room_version(ROOM, "10", "make_join").unwrap();
    }
    let mut c = raw_conn(&path);
    schema::migrate(&mut c, v2, "test").unwrap();
    assert_eq!(schema::user_version(&c).unwrap(), SCHEMA_VERSION + 1);
    let (version, note): (String, Option<String>) = c
        .query_row(
            "SELECT version, note FROM room_versions WHERE room_id = ?1",
            [ROOM],
            |r| Ok((r.get(0)?, r.get(1)?)),
        )
        .unwrap();
    assert_eq!((version.as_str(), note), ("10", None));
    // Idempotent at the new version as well.
    schema::migrate(&mut c, v2, "test").unwrap();
    assert_eq!(schema::user_version(&c).unwrap(), SCHEMA_VERSION + 1);
}

#[test]
fn failed_migration_leaves_previous_version() {
    let broken: &[&str] = &[schema::MIGRATIONS[0], "CREATE TABLE x (; broken"];
    let mut c = Connection::open_in_memory().unwrap();
    let err = schema::migrate(&mut c, broken, "test").unwrap_err();
    assert!(
        matches!(err, StoreError::Migration { version: 2, .. }),
        "{err:?}"
    );
    assert_eq!(schema::user_version(&c).unwrap(), 1);
}

// ---- room labels ---------------------------------------------------------------------------

fn room_label(label: &str, ts: i64) -> RoomLabelRecord {
    RoomLabelRecord {
        label: label.to_owned(),
        event_id: Some(format!("$ev{ts}")),
        sender: "@alice:hs1.example.org".to_owned(),
        origin_server_ts: ts,
        learned_from: "pdu".to_owned(),
    }
}

#[test]
fn room_labels_persist_replace_and_are_cached() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("gw.db");
    {
        let s = Store::open(&path).unwrap();
        assert_eq!(s.room_label(ROOM).unwrap(), None, "unknown room");
        // The negative cache is updated by the write.
        s.put_room_label(
            ROOM,
            &room_label(r#"{"policy":"1.2","classification":2}"#, 1),
        )
        .unwrap();
        assert_eq!(s.room_label(ROOM).unwrap().unwrap().origin_server_ts, 1);
        s.put_room_label(
            ROOM,
            &room_label(r#"{"policy":"1.2","classification":4}"#, 2),
        )
        .unwrap();
        let clone = s.clone();
        assert_eq!(
            clone.room_label(ROOM).unwrap().unwrap().label,
            r#"{"policy":"1.2","classification":4}"#
        );
    }
    let s = Store::open(&path).unwrap();
    assert_eq!(
        s.room_label(ROOM).unwrap(),
        Some(room_label(r#"{"policy":"1.2","classification":4}"#, 2)),
        "replaced row persisted"
    );
    assert_eq!(s.room_label("!other:x").unwrap(), None);
}

#[test]
fn room_labels_refuse_bad_input() {
    let s = Store::open_in_memory().unwrap();
    assert!(matches!(
        s.put_room_label("no-bang", &room_label("{}", 1)),
        Err(StoreError::InvalidInput { .. })
    ));
    assert!(matches!(
        s.put_room_label(ROOM, &room_label("", 1)),
        Err(StoreError::InvalidInput { .. })
    ));
    let big = "x".repeat(MAX_ROOM_LABEL_BYTES + 1);
    assert!(matches!(
        s.put_room_label(ROOM, &room_label(&big, 1)),
        Err(StoreError::InvalidInput { .. })
    ));
    assert_eq!(s.room_label(ROOM).unwrap(), None, "nothing stored");
}

#[test]
fn version_1_file_migrates_to_room_labels_keeping_data() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("gw.db");
    {
        let mut c = raw_conn(&path);
        schema::migrate(&mut c, &schema::MIGRATIONS[..1], "test").unwrap();
        c.execute(
            "INSERT INTO room_versions VALUES (?1, '10', 'make_join', 1)",
            [ROOM],
        )
        .unwrap();
        assert_eq!(schema::user_version(&c).unwrap(), 1);
    }
    let s = Store::open(&path).unwrap();
    assert_eq!(s.schema_version().unwrap(), SCHEMA_VERSION);
    assert_eq!(s.room_version(ROOM).unwrap().as_deref(), Some("10"));
    s.put_room_label(ROOM, &room_label("{}", 3)).unwrap();
    assert_eq!(s.room_label(ROOM).unwrap().unwrap().origin_server_ts, 3);
}

#[test]
fn newer_schema_is_refused_and_not_modified() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("gw.db");
    drop(Store::open(&path).unwrap());
    raw_conn(&path)
        .pragma_update(None, "user_version", SCHEMA_VERSION + 1)
        .unwrap();
    let err = Store::open(&path).unwrap_err();
    assert!(
        matches!(err, StoreError::SchemaTooNew { found, supported, .. }
            if found == SCHEMA_VERSION + 1 && supported == SCHEMA_VERSION),
        "{err:?}"
    );
    assert!(err.to_string().contains("gw.db"), "{err}");
    assert_eq!(
        schema::user_version(&raw_conn(&path)).unwrap(),
        SCHEMA_VERSION + 1
    );
}

#[test]
fn foreign_database_and_garbage_file_are_refused() {
    let dir = tempfile::tempdir().unwrap();
    let foreign = dir.path().join("other.db");
    raw_conn(&foreign)
        .execute_batch("CREATE TABLE users (name TEXT)")
        .unwrap();
    let err = Store::open(&foreign).unwrap_err();
    assert!(matches!(err, StoreError::NotAStore { .. }), "{err:?}");
    // Untouched: still no grenzwacht tables.
    let n: i64 = raw_conn(&foreign)
        .query_row("SELECT count(*) FROM sqlite_schema", [], |r| r.get(0))
        .unwrap();
    assert_eq!(n, 1);

    let garbage = dir.path().join("garbage.db");
    std::fs::write(&garbage, vec![0x42u8; 8192]).unwrap();
    let err = Store::open(&garbage).unwrap_err();
    assert!(matches!(err, StoreError::Open { .. }), "{err:?}");

    let missing_dir = dir.path().join("nope").join("gw.db");
    let err = Store::open(&missing_dir).unwrap_err();
    assert!(matches!(err, StoreError::Create { .. }), "{err:?}");
}

#[test]
fn in_memory_store_works_and_is_private() {
    let a = Store::open_in_memory().unwrap();
    let b = Store::open_in_memory().unwrap();
    assert_eq!(a.schema_version().unwrap(), SCHEMA_VERSION);
    a.set_room_version(ROOM, "11", "invite_v2").unwrap();
    assert_eq!(a.room_version(ROOM).unwrap().as_deref(), Some("11"));
    assert_eq!(b.room_version(ROOM).unwrap(), None);
}

// ---- room versions -------------------------------------------------------------------------

#[test]
fn room_version_claims_first_wins() {
    let s = Store::open_in_memory().unwrap();
    assert_eq!(s.room_version(ROOM).unwrap(), None);
    assert_eq!(
        s.set_room_version(ROOM, "10", "make_join").unwrap(),
        RoomVersionClaim::Learned
    );
    assert_eq!(
        s.set_room_version(ROOM, "10", "send_join").unwrap(),
        RoomVersionClaim::Confirmed
    );
    assert_eq!(
        s.set_room_version(ROOM, "1", "invite_v2").unwrap(),
        RoomVersionClaim::Conflict {
            known: "10".to_owned(),
            known_from: "make_join".to_owned()
        }
    );
    assert_eq!(s.room_version(ROOM).unwrap().as_deref(), Some("10"));
    // Other rooms are independent.
    let other = "!other:hs2.example.org";
    assert_eq!(
        s.set_room_version(other, "1", "m.room.create").unwrap(),
        RoomVersionClaim::Learned
    );
    assert_eq!(s.room_version(other).unwrap().as_deref(), Some("1"));
    // The database agrees with the cache: one row each, the first version.
    let conn = s.conn();
    let rows: Vec<(String, String, String)> = conn
        .prepare("SELECT room_id, version, learned_from FROM room_versions ORDER BY room_id")
        .unwrap()
        .query_map([], |r| Ok((r.get(0)?, r.get(1)?, r.get(2)?)))
        .unwrap()
        .collect::<Result<_, _>>()
        .unwrap();
    assert_eq!(
        rows,
        [
            (ROOM.to_owned(), "10".to_owned(), "make_join".to_owned()),
            (other.to_owned(), "1".to_owned(), "m.room.create".to_owned())
        ]
    );
}

#[test]
fn cache_is_read_through_and_sees_other_writers() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("gw.db");
    let a = Store::open(&path).unwrap();
    let b = Store::open(&path).unwrap();
    // b misses, a learns, b sees it at once (no negative caching).
    assert_eq!(b.room_version(ROOM).unwrap(), None);
    a.set_room_version(ROOM, "12", "m.room.create").unwrap();
    assert_eq!(b.room_version(ROOM).unwrap().as_deref(), Some("12"));
    // b's stale-free cache now holds it: deleting the row behind its back does not matter to
    // b (proves the second lookup is served from memory) ...
    raw_conn(&path)
        .execute("DELETE FROM room_versions", [])
        .unwrap();
    assert_eq!(b.room_version(ROOM).unwrap().as_deref(), Some("12"));
    // ... and a conflicting claim through a third store that never saw the room is checked
    // against the database, not a cache.
    let c = Store::open(&path).unwrap();
    c.set_room_version(ROOM, "9", "make_join").unwrap();
    let d = Store::open(&path).unwrap();
    assert_eq!(
        d.set_room_version(ROOM, "10", "send_join").unwrap(),
        RoomVersionClaim::Conflict {
            known: "9".to_owned(),
            known_from: "make_join".to_owned()
        }
    );
    assert_eq!(d.room_version(ROOM).unwrap().as_deref(), Some("9"));
}

#[test]
fn conflict_detected_when_another_writer_won_first() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("gw.db");
    let a = Store::open(&path).unwrap();
    let b = Store::open(&path).unwrap();
    assert_eq!(
        a.set_room_version(ROOM, "10", "make_join").unwrap(),
        RoomVersionClaim::Learned
    );
    // b's cache does not know the room: its insert is ignored, and it reports a's version.
    assert_eq!(
        b.set_room_version(ROOM, "11", "invite_v2").unwrap(),
        RoomVersionClaim::Conflict {
            known: "10".to_owned(),
            known_from: "make_join".to_owned()
        }
    );
    assert_eq!(
        b.set_room_version(ROOM, "10", "send_join").unwrap(),
        RoomVersionClaim::Confirmed
    );
    assert_eq!(b.room_version(ROOM).unwrap().as_deref(), Some("10"));
}

#[test]
fn invalid_room_inputs_are_refused_without_payload_in_message() {
    let s = Store::open_in_memory().unwrap();
    let long_room = format!("!{}:example.org", "a".repeat(300));
    let cases = [
        ("no-bang:example.org", "10", "make_join"),
        ("", "10", "make_join"),
        (long_room.as_str(), "10", "make_join"),
        (ROOM, "", "make_join"),
        (ROOM, "has space", "make_join"),
        (ROOM, "123456789012345678901234567890123", "make_join"),
        (ROOM, "10", ""),
    ];
    for (room, version, from) in cases {
        let err = s.set_room_version(room, version, from).unwrap_err();
        assert!(matches!(err, StoreError::InvalidInput { .. }), "{err:?}");
        let msg = err.to_string();
        assert!(!msg.contains("example.org"), "{msg}");
    }
    assert_eq!(s.room_version("no-bang:example.org").unwrap(), None);
    // Room versions the spec allows (and unstable ones) are accepted.
    s.set_room_version(ROOM, "org.matrix.msc1234.v1-a", "make_join")
        .unwrap();
}

// ---- transaction decisions -----------------------------------------------------------------

#[test]
fn first_txn_decision_wins() {
    let s = Store::open_in_memory().unwrap();
    assert_eq!(
        s.txn_decision("outbound", "hs1", "hs2", "t9").unwrap(),
        None
    );
    let body = b"{\"origin\":\"hs1\",\"pdus\":[]}";
    let first = s
        .put_txn_decision("outbound", "hs1", "hs2", "t9", body, &refuse())
        .unwrap();
    let TxnPut::Inserted(first_rec) = first.clone() else {
        panic!("expected insert: {first:?}")
    };
    assert_eq!(first_rec.body_sha256, body_sha256(body));
    assert_eq!(first_rec.decision, refuse());

    // A second decision for the same key (e.g. a concurrent retry decided differently) is
    // ignored; the first is returned.
    let second = s
        .put_txn_decision("outbound", "hs1", "hs2", "t9", b"other", &forward(b"leak"))
        .unwrap();
    assert_eq!(second, TxnPut::Existing(first_rec.clone()));
    assert!(!second.inserted());
    let got = s
        .txn_decision("outbound", "hs1", "hs2", "t9")
        .unwrap()
        .unwrap();
    assert_eq!(got, first_rec);
    assert_eq!(got.decision.forwarded_body(), None);

    // Every part of the key distinguishes.
    for (d, o, t, id) in [
        ("inbound", "hs1", "hs2", "t9"),
        ("outbound", "hs3", "hs2", "t9"),
        ("outbound", "hs1", "hs3", "t9"),
        ("outbound", "hs1", "hs2", "T9"),
    ] {
        assert_eq!(
            s.txn_decision(d, o, t, id).unwrap(),
            None,
            "{d} {o} {t} {id}"
        );
        assert!(s
            .put_txn_decision(d, o, t, id, body, &forward(b"x"))
            .unwrap()
            .inserted());
    }
}

#[test]
fn decisions_round_trip_exactly() {
    let s = Store::open_in_memory().unwrap();
    let binary: Vec<u8> = (0..=255u8).cycle().take(100_000).collect();
    let cases = [
        TxnDecision::forward(200, binary.clone(), None),
        TxnDecision::forward(200, Vec::new(), Some("X-Matrix a".to_owned())),
        TxnDecision::refuse(401, "M_UNAUTHORIZED", "Grüße: unicode ✓"),
        TxnDecision::refuse(599, "M_FORBIDDEN", ""),
    ];
    for (i, d) in cases.iter().enumerate() {
        let id = format!("t{i}");
        let before = SystemTime::now();
        let put = s
            .put_txn_decision("inbound", "o", "d", &id, &binary, d)
            .unwrap();
        let rec = s.txn_decision("inbound", "o", "d", &id).unwrap().unwrap();
        assert_eq!(&rec, put.record());
        assert_eq!(&rec.decision, d);
        // Stored with millisecond precision, not in the future, not before the call.
        let lower = before - Duration::from_millis(1);
        assert!(rec.created_at >= lower && rec.created_at <= SystemTime::now());
    }
}

#[test]
fn invalid_txn_inputs_are_refused() {
    let s = Store::open_in_memory().unwrap();
    let long = "x".repeat(MAX_TXN_KEY_PART_BYTES + 1);
    for (d, o, t, id) in [
        ("", "o", "d", "t"),
        ("in", "", "d", "t"),
        ("in", "o", "", "t"),
        ("in", "o", "d", ""),
        ("in", "o", "d", long.as_str()),
    ] {
        let err = s.txn_decision(d, o, t, id).unwrap_err();
        assert!(matches!(err, StoreError::InvalidInput { .. }), "{err:?}");
        let err = s.put_txn_decision(d, o, t, id, b"", &refuse()).unwrap_err();
        assert!(matches!(err, StoreError::InvalidInput { .. }), "{err:?}");
    }
    for status in [0u16, 99, 600] {
        let err = s
            .put_txn_decision(
                "in",
                "o",
                "d",
                "t",
                b"",
                &TxnDecision::refuse(status, "M", "m"),
            )
            .unwrap_err();
        assert!(matches!(err, StoreError::InvalidInput { .. }), "{err:?}");
    }
    assert_eq!(s.txn_decision("in", "o", "d", "t").unwrap(), None);
}

#[test]
fn corrupt_rows_are_reported_not_misread() {
    let s = Store::open_in_memory().unwrap();
    s.put_txn_decision("in", "o", "d", "t", b"", &refuse())
        .unwrap();
    // The CHECK constraints keep inconsistent rows out ...
    let err = s
        .conn()
        .execute(
            "UPDATE txn_decisions SET forwarded_body = x'00' WHERE txn_id = 't'",
            [],
        )
        .unwrap_err();
    assert!(err.to_string().contains("CHECK"), "{err}");
    // ... and a row that slips past them anyway is refused on read.
    s.conn()
        .execute_batch(
            "PRAGMA ignore_check_constraints = ON; \
             UPDATE txn_decisions SET forwarded_body = x'00' WHERE txn_id = 't'; \
             PRAGMA ignore_check_constraints = OFF;",
        )
        .unwrap();
    let err = s.txn_decision("in", "o", "d", "t").unwrap_err();
    assert!(matches!(err, StoreError::Corrupt { .. }), "{err:?}");
}

#[test]
fn pruning_deletes_only_old_decisions() {
    let s = Store::open_in_memory().unwrap();
    let t0 = UNIX_EPOCH + Duration::from_secs(1_700_000_000);
    let hour = Duration::from_secs(3600);
    for (i, age_h) in [100u32, 73, 71, 1].iter().enumerate() {
        let at = t0 - hour * *age_h;
        s.put_txn_decision_at("in", "o", "d", &format!("t{i}"), b"b", &refuse(), at)
            .unwrap();
    }
    let cutoff = t0 - hour * 72;
    assert_eq!(s.prune_txn_decisions(cutoff).unwrap(), 2);
    assert_eq!(s.txn_decision("in", "o", "d", "t0").unwrap(), None);
    assert_eq!(s.txn_decision("in", "o", "d", "t1").unwrap(), None);
    assert!(s.txn_decision("in", "o", "d", "t2").unwrap().is_some());
    assert!(s.txn_decision("in", "o", "d", "t3").unwrap().is_some());
    // Idempotent; a boundary exactly at a record's time keeps it (strictly older goes).
    assert_eq!(s.prune_txn_decisions(cutoff).unwrap(), 0);
    assert_eq!(s.prune_txn_decisions(t0 - hour * 71).unwrap(), 0);
    // After pruning, the key is free again: a new decision can be stored.
    assert!(s
        .put_txn_decision("in", "o", "d", "t0", b"b", &forward(b"x"))
        .unwrap()
        .inserted());
    assert_eq!(s.prune_txn_decisions(SystemTime::now() + hour).unwrap(), 3);
}

// ---- concurrency ---------------------------------------------------------------------------

#[test]
fn concurrent_threads_agree_on_first_decision_and_version() {
    const THREADS: usize = 8;
    let dir = tempfile::tempdir().unwrap();
    let store = Store::open(dir.path().join("gw.db")).unwrap();
    let barrier = Arc::new(Barrier::new(THREADS));
    let handles: Vec<_> = (0..THREADS)
        .map(|i| {
            let s = store.clone();
            let barrier = barrier.clone();
            thread::spawn(move || {
                barrier.wait();
                let claim = s
                    .set_room_version(ROOM, &format!("{}", i + 1), "make_join")
                    .unwrap();
                let put = s
                    .put_txn_decision(
                        "inbound",
                        "hs2",
                        "hs1",
                        "race",
                        b"body",
                        &forward(format!("decision {i}").as_bytes()),
                    )
                    .unwrap();
                // Plenty of independent work interleaved.
                for n in 0..50 {
                    let room = format!("!r{i}-{n}:example.org");
                    assert_eq!(
                        s.set_room_version(&room, "10", "m.room.create").unwrap(),
                        RoomVersionClaim::Learned
                    );
                    assert_eq!(s.room_version(&room).unwrap().as_deref(), Some("10"));
                    s.put_txn_decision(
                        "outbound",
                        "hs1",
                        "hs2",
                        &format!("{i}-{n}"),
                        b"b",
                        &refuse(),
                    )
                    .unwrap();
                }
                (claim, put, s.room_version(ROOM).unwrap().unwrap())
            })
        })
        .collect();
    let results: Vec<_> = handles.into_iter().map(|h| h.join().unwrap()).collect();

    let learned: Vec<_> = results
        .iter()
        .filter(|(c, _, _)| *c == RoomVersionClaim::Learned)
        .collect();
    assert_eq!(learned.len(), 1, "{results:?}");
    let winner = store.room_version(ROOM).unwrap().unwrap();
    for (claim, _, seen) in &results {
        assert_eq!(seen, &winner);
        if *claim != RoomVersionClaim::Learned {
            assert_eq!(
                claim,
                &RoomVersionClaim::Conflict {
                    known: winner.clone(),
                    known_from: "make_join".to_owned()
                }
            );
        }
    }

    let inserted = results.iter().filter(|(_, p, _)| p.inserted()).count();
    assert_eq!(inserted, 1);
    let stored = store
        .txn_decision("inbound", "hs2", "hs1", "race")
        .unwrap()
        .unwrap();
    let distinct: HashSet<Vec<u8>> = results
        .iter()
        .map(|(_, p, _)| p.record().decision.forwarded_body().unwrap().to_vec())
        .collect();
    assert_eq!(distinct.len(), 1, "every thread got the same decision");
    assert_eq!(
        distinct.into_iter().next().unwrap(),
        stored.decision.forwarded_body().unwrap()
    );
    let n: i64 = store
        .conn()
        .query_row("SELECT count(*) FROM txn_decisions", [], |r| r.get(0))
        .unwrap();
    assert_eq!(n, 1 + THREADS as i64 * 50);
}

#[test]
fn store_is_send_sync_clone() {
    fn check<T: Send + Sync + Clone + 'static>() {}
    check::<Store>();
}
