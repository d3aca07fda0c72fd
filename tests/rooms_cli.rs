//! `grenzwacht rooms list|resume` on the configured store file (the real binary).
mod common;

use std::process::Command;

use grenzwacht::store::{PauseCause, RoomPause, Store};

const BIN: &str = env!("CARGO_BIN_EXE_grenzwacht");

fn run(args: &[&str]) -> (i32, String, String) {
    let out = Command::new(BIN)
        .args(args)
        .output()
        .expect("run grenzwacht");
    (
        out.status.code().unwrap_or(-1),
        String::from_utf8_lossy(&out.stdout).into(),
        String::from_utf8_lossy(&out.stderr).into(),
    )
}

#[test]
fn list_and_resume_operate_on_the_configured_store() {
    let p = common::pki();
    let config = p.dir.path().join("guard.toml");
    std::fs::write(
        &config,
        format!(
            "[inbound]\nlisten = \"127.0.0.1:0\"\nverify_signatures = false\n[keys]\nverify_pdus = false\n[store]\npath = \"gw.db\"\n[[protected]]\nserver_name = \"hs1.test\"\ncert = \"{}\"\nkey = \"{}\"\nupstream = \"http://127.0.0.1:8008\"\n",
            p.cert.display(),
            p.key.display()
        ),
    )
    .unwrap();
    let cfg = config.to_str().unwrap();
    let (code, out, err) = run(&["rooms", "list", "--config", cfg]);
    assert_eq!((code, out.as_str()), (0, ""), "{err}");
    assert!(err.contains("0 paused"), "{err}");

    // The store path is relative to the config file.
    let store = Store::open(p.dir.path().join("gw.db")).unwrap();
    let room = "!r:hs1.test";
    store
        .pause_room(&RoomPause::now(
            "outbound",
            room,
            PauseCause::RedactionKept,
            Some("$e1"),
            "marking.geheim",
        ))
        .unwrap();
    store
        .pause_room(&RoomPause::now(
            "inbound",
            room,
            PauseCause::RedactionKept,
            None,
            "x",
        ))
        .unwrap();

    let (code, out, _) = run(&["rooms", "list", "--config", cfg]);
    assert_eq!(code, 0);
    let lines: Vec<&str> = out.lines().collect();
    assert_eq!(lines.len(), 2, "{out}");
    assert!(
        lines.iter().any(|l| l.starts_with(&format!(
            "outbound\t{room}\tredaction_kept\tmarking.geheim\t$e1\t20"
        ))),
        "{out}"
    );
    let (code, out, _) = run(&["rooms", "list", "--config", cfg, "--json"]);
    assert_eq!(code, 0);
    let rows: Vec<serde_json::Value> = out
        .lines()
        .map(|l| serde_json::from_str(l).unwrap())
        .collect();
    assert!(
        rows.iter().any(|r| r["direction"] == "inbound"
            && r["room_id"] == room
            && r["event_id"].is_null()),
        "{out}"
    );

    // Resume one direction, then the rest; resuming what is not paused is exit 1.
    let (code, out, err) = run(&[
        "rooms",
        "resume",
        "--config",
        cfg,
        "--direction",
        "inbound",
        room,
    ]);
    assert_eq!(code, 0, "{err}");
    assert!(out.starts_with("lifted\tinbound\t"), "{out}");
    assert!(
        err.contains("room pause lifted"),
        "the lift is logged: {err}"
    );
    assert_eq!(store.room_pauses().unwrap().len(), 1);
    let (code, _, _) = run(&[
        "rooms",
        "resume",
        "--config",
        cfg,
        "--direction",
        "inbound",
        room,
    ]);
    assert_eq!(code, 1);
    let (code, _, _) = run(&["rooms", "resume", "--config", cfg, room]);
    assert_eq!(code, 0);
    assert!(store.room_pauses().unwrap().is_empty());

    // A config that does not load: exit 2.
    let bad = p.dir.path().join("bad.toml");
    std::fs::write(&bad, "[store]\npaht = \"x\"\n").unwrap();
    let (code, _, err) = run(&["rooms", "list", "--config", bad.to_str().unwrap()]);
    assert_eq!(code, 2, "{err}");
}
