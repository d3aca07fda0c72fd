//! End-to-end on `grenzwacht lab`: two real Synapse homeservers with the
//! guard between them, once per outbound way (CONNECT and Synapse's proxy protocol).
//!
//! What is shown, with assertions on what users see through the client API and on the guard's
//! metrics (`grenzwacht_requests_total{direction,endpoint,status}`):
//! - invite across, join (make_join / send_join), messages both ways, profile query, key
//!   fetches — and that every federation request either homeserver's federation listener
//!   processed was counted by the guard (no bypass);
//! - refusals: a path outside the catalog (404 `M_UNRECOGNIZED`), malformed `/send` bodies
//!   (truncated JSON, duplicate keys, a 70 KB PDU, 51 PDUs, nesting depth 500: 4xx with
//!   `M_NOT_JSON`/`M_BAD_JSON`/`M_TOO_LARGE`) that hs1 never sees (checked in hs1's access log,
//!   after a well-formed, correctly signed control transaction *is* seen), and a denied server
//!   name refused in both directions.
//!
//! The two labs run one after the other (a lab is three processes and ~300 MB; the machine has
//! two cores). Each test stops its lab even when it fails.
#[path = "common/lab.rs"]
mod common;

use std::time::Duration;

use common::*;
use grenzwacht::lab::client::{wait_until, ClientError, MatrixClient};
use grenzwacht::lab::metrics::{count, render_table, RequestSeries};
use grenzwacht::lab::{self, LabInfo, LabOptions, OutboundMode};
use serde_json::json;

/// The server name the guard refuses. An IP literal with a port, so no homeserver ever tries
/// DNS for it; nothing listens there, so only the guard can answer 403.
const DENIED: &str = "127.0.0.2:8448";
const WAIT: Duration = Duration::from_secs(60);

static SERIAL: tokio::sync::Mutex<()> = tokio::sync::Mutex::const_new(());

/// Stops the lab when dropped (also on panic).
struct RunningLab {
    info: LabInfo,
    stopped: bool,
}

impl Drop for RunningLab {
    fn drop(&mut self) {
        if !self.stopped {
            let _ = lab::down(&self.info.dir);
        }
    }
}

fn has(series: &[RequestSeries], dir: &str, endpoint: &str, status: &str) -> bool {
    count(series, Some(dir), Some(endpoint), Some(status)) > 0
}

fn has_prefix(series: &[RequestSeries], dir: &str, prefix: &str, status: &str) -> bool {
    series.iter().any(|s| {
        s.direction == dir && s.endpoint.starts_with(prefix) && s.status == status && s.count > 0
    })
}

async fn start(mode: OutboundMode, dir: &std::path::Path) -> RunningLab {
    let mut opts = LabOptions::new(dir, mode);
    // GRENZWACHT_E2E_GUARD_BIN runs the suite against another guard build.
    opts.guard_bin = std::env::var_os("GRENZWACHT_E2E_GUARD_BIN")
        .map(Into::into)
        .unwrap_or_else(|| env!("CARGO_BIN_EXE_grenzwacht").into());
    opts.deny_servers = vec![DENIED.to_string()];
    opts.verbose = true;
    let info = match lab::up(opts).await {
        Ok(i) => i,
        Err(e) => panic!("lab up ({mode}) failed: {e}"),
    };
    RunningLab {
        info,
        stopped: false,
    }
}

async fn suite(mode: OutboundMode) {
    let _serial = SERIAL.lock().await;
    let tmp = tempfile::tempdir().expect("tempdir");
    // GRENZWACHT_E2E_DIR keeps the lab's files (logs, configs) for inspection.
    let dir = match std::env::var_os("GRENZWACHT_E2E_DIR") {
        Some(d) => std::path::PathBuf::from(d).join(mode.to_string()),
        None => tmp.path().to_path_buf(),
    };
    let mut lab = start(mode, &dir).await;
    let info = lab.info.clone();
    let (hs1, hs2) = (info.hs1().clone(), info.hs2().clone());
    eprintln!(
        "lab ({mode}): hs1 {} hs2 {}",
        hs1.server_name, hs2.server_name
    );

    // lab.json is the documented contract.
    let json: serde_json::Value =
        serde_json::from_slice(&std::fs::read(dir.join("lab.json")).unwrap()).unwrap();
    assert_eq!(json["homeservers"][0]["name"], "hs1");
    assert_eq!(json["homeservers"][1]["name"], "hs2");
    assert_eq!(
        json["homeservers"][0]["server_name"],
        hs1.server_name.as_str()
    );
    assert!(json["guard"]["admin_url"]
        .as_str()
        .unwrap()
        .starts_with("http://127.0.0.1:"));

    // ---- The conversation -------------------------------------------------------------
    let c1 = MatrixClient::new(&hs1.client_url);
    let c2 = MatrixClient::new(&hs2.client_url);
    let alice = c1
        .register_shared_secret(&hs1.registration_shared_secret, "alice", "alice-pw", false)
        .await
        .expect("register alice on hs1");
    let bob = c2
        .register_shared_secret(&hs2.registration_shared_secret, "bob", "bob-pw", false)
        .await
        .expect("register bob on hs2");
    assert_eq!(alice.user_id, format!("@alice:{}", hs1.server_name));
    assert_eq!(bob.user_id, format!("@bob:{}", hs2.server_name));
    let bob_name = marker("Bob ");
    bob.set_displayname(&bob_name)
        .await
        .expect("bob's displayname");

    let room = alice
        .create_room(&json!({"preset": "private_chat", "name": "e2e"}))
        .await
        .expect("create room");
    alice
        .invite(&room, &bob.user_id)
        .await
        .expect("invite bob (outbound invite)");
    bob.wait_for_invite(&room, WAIT)
        .await
        .expect("bob sees the invite on hs2");
    let joined = bob
        .join(&room, &[&hs1.server_name])
        .await
        .expect("bob joins via hs1 (inbound make_join/send_join)");
    assert_eq!(joined, room);
    alice
        .wait_for_member(&room, &bob.user_id, WAIT)
        .await
        .expect("alice sees bob joined");

    let a_text = marker("from alice ");
    alice.send_text(&room, &a_text).await.expect("alice sends");
    let seen = bob
        .wait_for_text(&room, &alice.user_id, &a_text, WAIT)
        .await
        .expect("bob sees alice's message on hs2");
    assert_eq!(seen.body, a_text);
    assert_eq!(seen.sender, alice.user_id);

    let b_text = marker("from bob ");
    bob.send_text(&room, &b_text).await.expect("bob sends");
    let seen = alice
        .wait_for_text(&room, &bob.user_id, &b_text, WAIT)
        .await
        .expect("alice sees bob's message on hs1");
    assert_eq!(seen.body, b_text);

    let profile = alice
        .profile(&bob.user_id)
        .await
        .expect("alice looks up bob's profile");
    assert_eq!(
        profile["displayname"],
        bob_name.as_str(),
        "remote profile via query/profile"
    );

    // ---- What the guard saw -----------------------------------------------------------
    // Everything hs1's and hs2's federation listeners processed must have passed the guard.
    let hs1_fed_port: u16 = hs1
        .federation_url
        .rsplit(':')
        .next()
        .unwrap()
        .parse()
        .unwrap();
    let hs2_fed_port: u16 = hs2
        .federation_url
        .rsplit(':')
        .next()
        .unwrap()
        .parse()
        .unwrap();
    let into_hs1 = fed_requests_in_log(&hs_log(&info, "hs1"), hs1_fed_port);
    let into_hs2 = fed_requests_in_log(&hs_log(&info, "hs2"), hs2_fed_port);
    assert!(
        !into_hs1.is_empty() && !into_hs2.is_empty(),
        "access logs: {into_hs1:?} {into_hs2:?}"
    );
    let sends_into_hs2 = into_hs2.iter().filter(|r| r.contains("/v1/send/")).count() as u64;
    let series = wait_until(
        "the guard's counters to cover the homeservers' logs",
        WAIT,
        || {
            let info = info.clone();
            let (n1, n2) = (into_hs1.len() as u64, into_hs2.len() as u64);
            async move {
                let s = guard_requests(&info).await;
                let ok = count(&s, Some("inbound"), None, None) >= n1
                    && count(&s, Some("outbound"), None, None) >= n2
                    && count(&s, Some("outbound"), Some("send_transaction"), None)
                        >= sends_into_hs2;
                Ok::<_, ClientError>(ok.then_some(s))
            }
        },
    )
    .await;
    let series = match series {
        Ok(s) => s,
        Err(e) => panic!(
            "{e}\nguard counted:\n{}\nhs1 processed {into_hs1:#?}\nhs2 processed {into_hs2:#?}",
            render_table(&guard_requests(&info).await)
        ),
    };
    eprintln!("guard saw ({mode}):\n{}", render_table(&series));
    let table = render_table(&series);
    for (dir, endpoint) in [
        ("inbound", "make_join"),
        ("inbound", "send_transaction"),
        ("inbound", "key_server"),
        ("outbound", "send_transaction"),
        ("outbound", "query_profile"),
    ] {
        assert!(
            has(&series, dir, endpoint, "200"),
            "no {dir} {endpoint} 200 in\n{table}"
        );
    }
    // hs1 fetches remote keys through the guard: from the guard as its notary (the lab's
    // `trusted_key_servers`), or directly from the remote when the notary had nothing.
    assert!(
        has_prefix(&series, "outbound", "key_query", "200")
            || has(&series, "outbound", "key_server", "200"),
        "no outbound key fetch in\n{table}"
    );
    assert!(
        has_prefix(&series, "inbound", "send_join", "200"),
        "no inbound send_join in\n{table}"
    );
    assert!(
        has_prefix(&series, "outbound", "invite", "200"),
        "no outbound invite in\n{table}"
    );

    // ---- Refusals, inbound (remote → guard → hs1) ---------------------------------------
    let inbound = info.guard.inbound_addr;
    let host = hs1.server_name.clone();
    let origin = hs2.server_name.clone();

    // A path outside the catalog.
    let unknown = marker("gwlab_unknown_");
    let path = format!("/_matrix/federation/v1/{unknown}");
    let auth = xmatrix_signed(&hs2.signing_key, &origin, &host, "GET", &path, b"");
    let r = tls_request(
        inbound,
        &info.ca_cert,
        &head("GET", &path, &host, &[("Authorization", &auth)], 0),
        b"",
    )
    .await;
    assert_eq!(r.status, 404, "unknown path: {}", r.text());
    assert_eq!(r.errcode(), "M_UNRECOGNIZED", "unknown path: {}", r.text());

    // Malformed transactions.
    let pdu = |body: serde_json::Value| {
        json!({
            "type": "m.room.message", "room_id": room, "sender": bob.user_id,
            "origin_server_ts": 1, "depth": 10, "prev_events": [], "auth_events": [],
            "hashes": {"sha256": "AAAA"}, "signatures": {}, "content": body
        })
    };
    let txn_body = |pdus: Vec<serde_json::Value>| {
        serde_json::to_vec(
            &json!({"origin": origin, "origin_server_ts": 1, "pdus": pdus, "edus": []}),
        )
        .unwrap()
    };
    let mut deep = json!("bottom");
    for _ in 0..500 {
        deep = json!([deep]);
    }
    let truncated = {
        let mut b = txn_body(vec![pdu(json!({"msgtype": "m.text", "body": "cut"}))]);
        b.truncate(b.len() - 20);
        b
    };
    let duplicate =
        format!(r#"{{"origin":"{origin}","origin_server_ts":1,"pdus":[],"edus":[],"pdus":[]}}"#)
            .into_bytes();
    let cases: Vec<(&str, Vec<u8>)> = vec![
        ("truncated", truncated),
        ("duplicate", duplicate),
        (
            "bigpdu",
            txn_body(vec![pdu(
                json!({"msgtype": "m.text", "body": "x".repeat(70 * 1024)}),
            )]),
        ),
        (
            "51pdus",
            txn_body(
                (0..51)
                    .map(|i| pdu(json!({"msgtype": "m.text", "body": format!("{i}")})))
                    .collect(),
            ),
        ),
        (
            "deep",
            txn_body(vec![pdu(
                json!({"msgtype": "m.text", "body": "d", "x": deep}),
            )]),
        ),
    ];
    let mut refused_txns = Vec::new();
    for (name, body) in &cases {
        let txn = marker(&format!("gwlab-{name}-"));
        let path = format!("/_matrix/federation/v1/send/{txn}");
        let auth = xmatrix_unsigned(&origin, &host);
        let r = tls_request(
            inbound,
            &info.ca_cert,
            &head(
                "PUT",
                &path,
                &host,
                &[
                    ("Authorization", &auth),
                    ("Content-Type", "application/json"),
                ],
                body.len(),
            ),
            body,
        )
        .await;
        eprintln!("malformed {name}: {} {}", r.status, r.errcode());
        if *name == "bigpdu" {
            // Not malformed as a whole: an oversized PDU is withheld on its own (per-PDU
            // error), so the request goes on to authentication, which this unsigned header
            // fails. Nothing of it is forwarded either way.
            assert_eq!(r.status, 401, "bigpdu: {}", r.text());
            refused_txns.push(txn);
            continue;
        }
        if *name == "truncated" {
            // Not JSON at all (spec: M_NOT_JSON); the others are left to the guard's taxonomy.
            assert_eq!(r.errcode(), "M_NOT_JSON", "truncated: {}", r.text());
        }
        assert!(
            r.status == 400,
            "{name}: expected 400, got {} {}",
            r.status,
            r.text()
        );
        assert!(
            ["M_NOT_JSON", "M_BAD_JSON", "M_TOO_LARGE"].contains(&r.errcode().as_str()),
            "{name}: errcode {:?}",
            r.text()
        );
        refused_txns.push(txn);
    }

    // A denied origin, inbound.
    let denied_marker = marker("gwlab-denied-");
    let path = format!(
        "/_matrix/federation/v1/query/profile?user_id=%40{denied_marker}%3A{}",
        host.replace(':', "%3A")
    );
    let auth = xmatrix_unsigned(DENIED, &host);
    let r = tls_request(
        inbound,
        &info.ca_cert,
        &head("GET", &path, &host, &[("Authorization", &auth)], 0),
        b"",
    )
    .await;
    assert_eq!(r.status, 403, "denied origin inbound: {}", r.text());
    assert_eq!(
        r.errcode(),
        "M_FORBIDDEN",
        "denied origin inbound: {}",
        r.text()
    );

    // Control: a well-formed, correctly signed transaction from hs2 does reach hs1.
    let control = marker("gwlab-control-");
    let path = format!("/_matrix/federation/v1/send/{control}");
    let body = serde_json::to_vec(
        &json!({"origin": origin, "origin_server_ts": 1, "pdus": [], "edus": []}),
    )
    .unwrap();
    let auth = xmatrix_signed(&hs2.signing_key, &origin, &host, "PUT", &path, &body);
    let r = tls_request(
        inbound,
        &info.ca_cert,
        &head(
            "PUT",
            &path,
            &host,
            &[
                ("Authorization", &auth),
                ("Content-Type", "application/json"),
            ],
            body.len(),
        ),
        &body,
    )
    .await;
    assert_eq!(r.status, 200, "control transaction: {}", r.text());
    wait_until("hs1 to log the control transaction", WAIT, || {
        let info = info.clone();
        let control = control.clone();
        async move { Ok::<_, ClientError>(hs_log(&info, "hs1").contains(&control).then_some(())) }
    })
    .await
    .expect("the control transaction reached hs1");
    let hs1_log = hs_log(&info, "hs1");
    for txn in &refused_txns {
        assert!(
            !hs1_log.contains(txn.as_str()),
            "hs1 saw refused transaction {txn}"
        );
    }
    assert!(!hs1_log.contains(&unknown), "hs1 saw the unknown path");
    assert!(
        !hs1_log.contains(&denied_marker),
        "hs1 saw the denied origin's request"
    );

    // ---- Refusals, outbound (hs1 → guard → denied) -------------------------------------
    let before = guard_requests(&info).await;
    let outbound_403_before = count(&before, Some("outbound"), None, Some("403"));
    let denied_user = format!("@x:{DENIED}");
    let err = alice
        .profile(&denied_user)
        .await
        .expect_err("a profile on a denied server must not be fetched");
    eprintln!("profile of {denied_user}: {err}");
    match mode {
        OutboundMode::SynapseProxy => {
            // Synapse passes the proxy's answer through as the destination's.
            assert_eq!(err.status(), Some(403), "{err}");
            wait_until("the guard to count the outbound 403", WAIT, || {
                let info = info.clone();
                async move {
                    let s = guard_requests(&info).await;
                    Ok::<_, ClientError>(
                        (count(&s, Some("outbound"), None, Some("403")) > outbound_403_before)
                            .then_some(()),
                    )
                }
            })
            .await
            .expect("outbound refusal counted");
        }
        OutboundMode::Connect => {
            // A refused CONNECT is a connection failure for Synapse; its log names the status.
            wait_until("hs1 to log the refused CONNECT", WAIT, || {
                let info = info.clone();
                async move {
                    Ok::<_, ClientError>(
                        hs_log(&info, "hs1")
                            .contains("Unexpected status on CONNECT: b'403'")
                            .then_some(()),
                    )
                }
            })
            .await
            .expect("hs1's CONNECT to the denied server got 403 from the guard");
        }
    }
    // And straight at the outbound listener.
    let out = info.guard.outbound_addr;
    let r = match mode {
        OutboundMode::Connect => {
            // Without credentials: 407, whatever the target (the lab's hs1 sends Basic
            // credentials with the proxy secret).
            let anon = tcp_request(
                out,
                &format!(
                    "CONNECT {} HTTP/1.1\r\nHost: {}\r\n\r\n",
                    hs2.server_name, hs2.server_name
                ),
                b"",
            )
            .await;
            assert_eq!(
                anon.status,
                407,
                "CONNECT without credentials: {}",
                anon.text()
            );
            use base64::Engine as _;
            let secret = info.guard.proxy_secret.clone().unwrap();
            let basic =
                base64::engine::general_purpose::STANDARD.encode(format!("grenzwacht:{secret}"));
            tcp_request(out, &format!("CONNECT {DENIED} HTTP/1.1\r\nHost: {DENIED}\r\nProxy-Authorization: Basic {basic}\r\n\r\n"), b"").await
        }
        OutboundMode::SynapseProxy => {
            let secret = info.guard.proxy_secret.clone().unwrap();
            let bearer = format!("Bearer {secret}");
            tcp_request(
                out,
                &head(
                    "GET",
                    &format!("matrix-federation://{DENIED}/_matrix/federation/v1/version"),
                    DENIED,
                    &[("Proxy-Authorization", &bearer)],
                    0,
                ),
                b"",
            )
            .await
        }
    };
    assert_eq!(r.status, 403, "outbound to the denied server: {}", r.text());
    if mode == OutboundMode::SynapseProxy {
        // Without the bearer secret nothing is forwarded, even to an allowed destination.
        let nosecret = marker("gwlab-nosecret-");
        let path = format!(
            "/_matrix/federation/v1/query/profile?user_id=%40{nosecret}%3A{}",
            hs2.server_name.replace(':', "%3A")
        );
        let target = format!("matrix-federation://{}{path}", hs2.server_name);
        let auth = xmatrix_signed(
            &hs1.signing_key,
            &hs1.server_name,
            &hs2.server_name,
            "GET",
            &path,
            b"",
        );
        let r = tcp_request(
            out,
            &head(
                "GET",
                &target,
                &hs2.server_name,
                &[("Authorization", &auth)],
                0,
            ),
            b"",
        )
        .await;
        assert!(
            matches!(r.status, 401 | 403 | 407),
            "no secret: {} {}",
            r.status,
            r.text()
        );
        tokio::time::sleep(Duration::from_millis(500)).await;
        assert!(
            !hs_log(&info, "hs2").contains(&nosecret),
            "hs2 saw a request without the proxy secret"
        );
    }

    // ---- lab down stops exactly what it started -----------------------------------------
    let pids: serde_json::Value =
        serde_json::from_slice(&std::fs::read(dir.join("pids.json")).unwrap()).unwrap();
    let pids: Vec<u32> = pids["processes"]
        .as_array()
        .unwrap()
        .iter()
        .map(|p| p["pid"].as_u64().unwrap() as u32)
        .collect();
    assert_eq!(pids.len(), 3);
    let report = tokio::task::spawn_blocking({
        let dir = info.dir.clone();
        move || lab::down(&dir)
    })
    .await
    .unwrap()
    .expect("lab down");
    lab.stopped = true;
    assert_eq!(report.processes.len(), 3);
    for (name, pid, outcome) in &report.processes {
        assert!(
            matches!(
                outcome,
                lab::process::StopOutcome::Terminated | lab::process::StopOutcome::Killed
            ),
            "{name} (pid {pid}): {outcome:?}"
        );
    }
    for pid in pids {
        assert!(
            !lab::process::is_running(pid),
            "pid {pid} still running after down"
        );
    }
    assert!(!dir.join("pids.json").exists());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn e2e_lab_connect() {
    suite(OutboundMode::Connect).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn e2e_lab_synapse_proxy() {
    suite(OutboundMode::SynapseProxy).await;
}

/// `up` fails with the dying process's log and leaves nothing running.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn lab_up_reports_a_dying_guard_and_cleans_up() {
    let _serial = SERIAL.lock().await;
    let tmp = tempfile::tempdir().expect("tempdir");
    let mut opts = LabOptions::new(tmp.path(), OutboundMode::Connect);
    // `sh serve --config …` exits at once complaining about the file `serve`.
    opts.guard_bin = "/bin/sh".into();
    let err = lab::up(opts)
        .await
        .expect_err("up must fail when the guard dies");
    match &err {
        lab::LabError::ProcessDied { name, log_tail, .. } => {
            assert_eq!(name, "guard");
            assert!(log_tail.contains("serve"), "log tail: {log_tail}");
        }
        other => panic!("expected ProcessDied, got {other}"),
    }
    assert!(!tmp.path().join("pids.json").exists());
    assert!(!tmp.path().join("lab.json").exists());
    // Nothing started for this lab is left (the homeservers were stopped).
    let dir = tmp.path().display().to_string();
    let t0 = std::time::Instant::now();
    loop {
        let leftovers: Vec<String> = std::fs::read_dir("/proc")
            .unwrap()
            .filter_map(|e| std::fs::read(e.ok()?.path().join("cmdline")).ok())
            .map(|c| String::from_utf8_lossy(&c).replace('\0', " "))
            .filter(|c| c.contains(&dir))
            .collect();
        if leftovers.is_empty() {
            break;
        }
        assert!(
            t0.elapsed() < Duration::from_secs(5),
            "left running: {leftovers:?}"
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}
