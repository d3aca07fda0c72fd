//! End-to-end: what redaction keeps is judged, and the room is paused (real Synapse).
//!
//! On the lab (shipped DLP rules, `marking.geheim`): alice on hs1 creates rooms of version 11
//! and 12 whose `m.room.create` content carries `GEHEIM` — v11+ redaction keeps all of the
//! create content, so redacting it does not help. She invites bob on hs2:
//! - the invite (with the create event in its stripped state) does not cross; the room is
//!   paused towards hs2 (metric, log, `grenzwacht rooms list`); bob's attempt to join by room id
//!   is answered 404 by the guard;
//! - the marking is nowhere on hs2: not in bob's sync or the room state API, not in any of hs2's
//!   files (database, logs);
//! - a conversation in another room between alice and bob goes on;
//! - in a room bob is in, a power levels event naming a user `@GEHEIM:…` (redaction keeps the
//!   `users` keys) is withheld from hs1's transaction, the room is paused, alice's next message
//!   is withheld too, bob's messages still reach hs1;
//! - after a restart of the guard the room is still paused;
//! - `grenzwacht rooms resume` lifts the pause: the running guard logs it, the gauge drops,
//!   `rooms list` is empty.
#[path = "common/lab.rs"]
mod common;

use std::path::Path;
use std::time::Duration;

use grenzwacht::lab::client::{encode_segment, wait_until, MatrixClient, Session};
use grenzwacht::lab::process::{self, PidFile};
use grenzwacht::lab::LabInfo;
use serde_json::json;

const WAIT: Duration = Duration::from_secs(60);

async fn paused_gauge(info: &LabInfo, direction: &str) -> f64 {
    common::guard_metrics(info)
        .await
        .iter()
        .filter(|s| s.name == "grenzwacht_paused_rooms" && s.label("direction") == direction)
        .map(|s| s.value)
        .sum()
}

/// `grenzwacht rooms ARGS --config <the lab guard's config>`: (exit code, stdout, stderr).
fn rooms_cli(info: &LabInfo, args: &[&str]) -> (i32, String, String) {
    let out = std::process::Command::new(env!("CARGO_BIN_EXE_grenzwacht"))
        .arg("rooms")
        .arg(args[0])
        .arg("--config")
        .arg(&info.guard.config)
        .args(&args[1..])
        .output()
        .expect("run grenzwacht rooms");
    (
        out.status.code().unwrap_or(-1),
        String::from_utf8_lossy(&out.stdout).into_owned(),
        String::from_utf8_lossy(&out.stderr).into_owned(),
    )
}

/// Stops the lab's guard (SIGTERM, as recorded in `pids.json`) and starts it again with the
/// same command line; returns when its `/health` answers.
async fn restart_guard(info: &LabInfo) {
    let dir = &info.dir;
    let mut pids = PidFile::load(dir).expect("pids.json").expect("lab running");
    let i = pids
        .processes
        .iter()
        .position(|r| r.name == "guard")
        .expect("guard record");
    let rec = pids.processes[i].clone();
    let outcome = tokio::task::spawn_blocking({
        let rec = rec.clone();
        move || process::stop(&rec, Duration::from_secs(20))
    })
    .await
    .unwrap();
    assert!(
        matches!(
            outcome,
            process::StopOutcome::Terminated | process::StopOutcome::Killed
        ),
        "guard stopped: {outcome:?}"
    );
    let new = process::spawn("guard", &rec.argv, dir, &rec.log, &[]).expect("start guard");
    pids.processes[i] = new;
    pids.save(dir).expect("save pids.json");
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
}

/// Every file under `dir` whose bytes contain `needle`.
fn files_containing(dir: &Path, needle: &str) -> Vec<String> {
    let mut hits = Vec::new();
    let mut stack = vec![dir.to_path_buf()];
    while let Some(d) = stack.pop() {
        let Ok(entries) = std::fs::read_dir(&d) else {
            continue;
        };
        for e in entries.flatten() {
            let p = e.path();
            if p.is_dir() {
                stack.push(p);
            } else if let Ok(bytes) = std::fs::read(&p) {
                if bytes.windows(needle.len()).any(|w| w == needle.as_bytes()) {
                    hits.push(p.display().to_string());
                }
            }
        }
    }
    hits
}

async fn state_text(who: &Session, room: &str) -> String {
    let path = format!("/_matrix/client/v3/rooms/{}/state", encode_segment(room));
    match who
        .client
        .raw(
            "GET",
            &path,
            Some(&who.access_token),
            None,
            Duration::from_secs(10),
        )
        .await
    {
        Ok(r) => format!("{} {}", r.status, String::from_utf8_lossy(&r.body)),
        Err(e) => e.to_string(),
    }
}

async fn sync_text(who: &Session) -> String {
    let r = who
        .client
        .raw(
            "GET",
            "/_matrix/client/v3/sync?timeout=0",
            Some(&who.access_token),
            None,
            Duration::from_secs(30),
        )
        .await
        .expect("sync");
    assert_eq!(r.status, 200);
    String::from_utf8_lossy(&r.body).into_owned()
}

/// A clean room between alice and bob, and a message each way.
async fn conversation(
    alice: &Session,
    bob: &Session,
    hs1_name: &str,
    room: Option<String>,
    tag: &str,
) -> String {
    let room = match room {
        Some(r) => r,
        None => {
            let room = alice
                .create_room(
                    &json!({"preset": "private_chat", "room_version": "11", "name": "clean"}),
                )
                .await
                .expect("create clean room");
            alice
                .invite(&room, &bob.user_id)
                .await
                .expect("invite into the clean room");
            bob.wait_for_invite(&room, WAIT)
                .await
                .expect("bob sees the clean invite");
            bob.join(&room, &[hs1_name])
                .await
                .expect("bob joins the clean room");
            alice
                .wait_for_member(&room, &bob.user_id, WAIT)
                .await
                .expect("alice sees bob");
            room
        }
    };
    let out = format!("{tag}: hallo bob");
    alice.send_text(&room, &out).await.expect("alice sends");
    bob.wait_for_text(&room, &alice.user_id, &out, WAIT)
        .await
        .expect("hs2 gets alice's message");
    let back = format!("{tag}: hallo alice");
    bob.send_text(&room, &back).await.expect("bob sends");
    alice
        .wait_for_text(&room, &bob.user_id, &back, WAIT)
        .await
        .expect("hs1 gets bob's message");
    room
}

#[tokio::test]
async fn marking_kept_by_redaction_pauses_the_room_until_an_operator_resumes_it() {
    let lab = common::e2e_lab("pause", false).await;
    let common::E2eLab {
        info, alice, bob, ..
    } = lab;
    let (hs1, hs2) = (info.hs1().clone(), info.hs2().clone());
    assert_eq!(paused_gauge(&info, "outbound").await, 0.0);

    // Rooms of version 11 and 12 whose create content carries the marking (a known field and
    // a custom key): redaction keeps all of it in both versions.
    let tag = common::marker("gwpause");
    let mut rooms = Vec::new();
    for version in ["11", "12"] {
        let room = alice
            .create_room(&json!({
                "preset": "public_chat", "room_version": version, "name": format!("Lage v{version}"),
                "creation_content": {"body": format!("Einstufung: GEHEIM {tag}"), "org.example.classification": format!("GEHEIM {tag}")}
            }))
            .await
            .expect("create the marked room");
        // The invite carries the create event in its stripped state: it does not cross.
        let invited = alice.invite(&room, &bob.user_id).await;
        assert!(
            invited.is_err(),
            "v{version}: the invite must not reach hs2"
        );
        rooms.push(room);
        assert_eq!(
            paused_gauge(&info, "outbound").await,
            rooms.len() as f64,
            "v{version}: the guard reports the room paused"
        );
    }
    let (code, out, err) = rooms_cli(&info, &["list"]);
    assert_eq!(code, 0, "{err}");
    for room in &rooms {
        assert!(
            out.lines().any(|l| l.starts_with("outbound\t")
                && l.contains(room.as_str())
                && l.contains("redaction_kept")
                && l.contains("marking.geheim")),
            "rooms list: {out}"
        );
    }
    let log = std::fs::read_to_string(&info.guard.log).unwrap_or_default();
    assert!(log.contains("room paused"), "guard log shows the pause");
    assert!(!log.contains(&tag), "the marked value is never logged");

    // Bob asks to join by room id: the guard answers hs2's make_join with 404.
    for room in &rooms {
        assert!(
            bob.join(room, &[&hs1.server_name]).await.is_err(),
            "bob cannot join the paused room"
        );
    }

    // A conversation in another room goes on.
    let clean = conversation(&alice, &bob, &hs1.server_name, None, "before restart").await;

    // In a room bob is in, alice gives a user named `@GEHEIM:…` a power level: redaction keeps
    // the `users` keys of `m.room.power_levels`. The event does not reach hs2 (withheld from
    // hs1's transaction), the room is paused, and alice's next message is withheld as well.
    let pl_room = conversation(&alice, &bob, &hs1.server_name, None, "power levels room").await;
    let marked_user = format!("@GEHEIM:{}", hs1.server_name);
    let pl_path = format!(
        "/_matrix/client/v3/rooms/{}/state/m.room.power_levels/",
        encode_segment(&pl_room)
    );
    let mut pl = alice
        .client
        .call("GET", &pl_path, Some(&alice.access_token), None)
        .await
        .expect("power levels");
    pl["users"][&marked_user] = json!(10);
    let pl_event = alice
        .client
        .call("PUT", &pl_path, Some(&alice.access_token), Some(&pl))
        .await
        .expect("alice sets the power levels")["event_id"]
        .as_str()
        .expect("event id")
        .to_string();
    let after = "nach der Änderung";
    let after_event = alice.send_text(&pl_room, after).await.expect("alice sends");
    wait_until("the guard pauses the power levels room", WAIT, || async {
        Ok((paused_gauge(&info, "outbound").await == 3.0).then_some(()))
    })
    .await
    .expect("power levels room paused");
    // Bob's own message still reaches hs1 (the room is paused towards hs2 only).
    let from_bob = "bob schreibt weiter";
    bob.send_text(&pl_room, from_bob).await.expect("bob sends");
    alice
        .wait_for_text(&pl_room, &bob.user_id, from_bob, WAIT)
        .await
        .expect("hs1 gets bob's message");
    tokio::time::sleep(Duration::from_secs(3)).await;
    for id in [&pl_event, &after_event] {
        let path = format!(
            "/_matrix/client/v3/rooms/{}/event/{}",
            encode_segment(&pl_room),
            encode_segment(id)
        );
        let r = bob
            .client
            .raw(
                "GET",
                &path,
                Some(&bob.access_token),
                None,
                Duration::from_secs(10),
            )
            .await
            .expect("event lookup");
        assert_eq!(
            r.status,
            404,
            "hs2 has {id}: {}",
            String::from_utf8_lossy(&r.body)
        );
    }
    let m = common::guard_metrics(&info).await;
    let withheld = |cause: &str| -> f64 {
        m.iter()
            .filter(|s| {
                s.name == "grenzwacht_withheld_pdus_total"
                    && s.label("direction") == "outbound"
                    && s.label("cause") == cause
            })
            .map(|s| s.value)
            .sum()
    };
    assert!(
        withheld("redaction_kept") >= 3.0,
        "two invites and the power levels event"
    );
    assert!(withheld("paused") >= 1.0, "alice's next message");
    // hs1 got a per-PDU error for each withheld event, under the event id it computed itself.
    let hs1_log = common::hs_log(&info, "hs1");
    for id in [&pl_event, &after_event] {
        assert!(
            hs1_log.contains(&format!(
                "Remote returned error for {id}: {{'error': 'withheld by the border guard"
            )),
            "hs1 was told {id} was withheld"
        );
    }
    let pl_state = state_text(&bob, &pl_room).await;
    assert!(
        !pl_state.contains("@GEHEIM"),
        "room state at hs2: {pl_state}"
    );

    // The marking is nowhere on hs2.
    let invited = bob.invited_rooms().await.unwrap_or_default();
    let sync = sync_text(&bob).await;
    assert!(!sync.contains(&tag), "bob's sync: {sync}");
    for room in &rooms {
        assert!(!invited.contains(room));
        assert!(!sync.contains(room.as_str()), "bob's sync: {sync}");
        let state = state_text(&bob, room).await;
        assert!(!state.contains(&tag), "room state at hs2: {state}");
    }
    let hs2_dir = Path::new(&hs2.config)
        .parent()
        .expect("hs2 dir")
        .to_path_buf();
    assert_eq!(
        files_containing(&hs2_dir, &tag),
        Vec::<String>::new(),
        "files of hs2 holding the marked value"
    );

    // The pause survives a restart of the guard.
    restart_guard(&info).await;
    let (code, out, _) = rooms_cli(&info, &["list"]);
    assert_eq!(code, 0);
    for room in &rooms {
        assert!(
            out.contains(room.as_str()),
            "still paused after restart: {out}"
        );
        assert!(
            bob.join(room, &[&hs1.server_name]).await.is_err(),
            "still no join after restart"
        );
    }
    assert_eq!(paused_gauge(&info, "outbound").await, 3.0);
    conversation(&alice, &bob, &hs1.server_name, Some(clean), "after restart").await;

    // The operator lifts the pauses while the guard runs.
    rooms.push(pl_room);
    for room in &rooms {
        let (code, out, err) = rooms_cli(&info, &["resume", room]);
        assert_eq!(code, 0, "{err}");
        assert!(out.starts_with("lifted\toutbound\t"), "{out}");
        assert!(
            err.contains("room pause lifted"),
            "the CLI logs the lift: {err}"
        );
        let (code, _, _) = rooms_cli(&info, &["resume", room]);
        assert_eq!(code, 1, "a room that is not paused");
    }
    wait_until(
        "the guard notices the lifted pauses",
        Duration::from_secs(10),
        || async {
            let log = std::fs::read_to_string(&info.guard.log).unwrap_or_default();
            Ok((log.matches("room pause lifted").count() >= 3
                && paused_gauge(&info, "outbound").await == 0.0)
                .then_some(()))
        },
    )
    .await
    .expect("lift noticed");
    let (_, out, _) = rooms_cli(&info, &["list"]);
    assert!(out.trim().is_empty(), "rooms list after resume: {out}");
    // Still nothing of the rooms on hs2.
    assert_eq!(files_containing(&hs2_dir, &tag), Vec::<String>::new());
    assert_eq!(
        files_containing(&hs2_dir, &marked_user),
        Vec::<String>::new()
    );
}
