//! End-to-end: bounded before authenticated, on `grenzwacht lab` (real Synapse homeservers).
//!
//! - (a) 100 connections keep pushing 12 MB bodies that need no signature (a key query whose
//!   body the guard must read to judge) at the guard's inbound listener for a while;
//! - (b) the same with `PUT /send` naming hs2 as X-Matrix origin with hs2's real key id and a
//!   signature that does not match;
//! - during each flood Alice (hs1) and Bob (hs2) exchange a message both ways, and the guard's
//!   RSS (`/proc/PID/status` `VmRSS` of the lab's guard process) stays below 400 MB; after it,
//!   RSS is back to at most 1.2× its baseline within 30 s;
//! - (c) connections that send a head and then trickle nothing of their body are answered and
//!   closed at the body deadline (`[admission] body_timeout_ms`, 60 s by default).
//!
//! The RSS figures are printed (`--nocapture`).
#[path = "common/lab.rs"]
mod common;

use std::net::SocketAddr;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use grenzwacht::lab::client::Session;
use serde_json::json;
use tokio::io::{AsyncReadExt, AsyncWriteExt};

const WAIT: Duration = Duration::from_secs(90);
const CONNECTIONS: usize = 100;
const BODY: usize = 12_000_000;
const FLOOD: Duration = Duration::from_secs(20);
const RSS_CAP_KB: u64 = 400 * 1024;
const SLOW: usize = 5;
/// The lab's body deadline (the `[admission]` default).
const BODY_TIMEOUT: Duration = Duration::from_secs(60);

fn guard_pid(info: &grenzwacht::lab::LabInfo) -> u32 {
    let pids = grenzwacht::lab::process::PidFile::load(&info.dir)
        .expect("pids.json")
        .expect("pids.json exists");
    pids.processes
        .iter()
        .find(|p| p.name == "guard")
        .expect("guard in pids.json")
        .pid
}

fn rss_kb(pid: u32) -> u64 {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).expect("guard status");
    status
        .lines()
        .find_map(|l| l.strip_prefix("VmRSS:"))
        .and_then(|v| v.trim().trim_end_matches("kB").trim().parse().ok())
        .expect("VmRSS")
}

fn tls_connector(info: &grenzwacht::lab::LabInfo) -> tokio_rustls::TlsConnector {
    let mut roots = rustls::RootCertStore::empty();
    let pem = std::fs::read(&info.ca_cert).expect("read CA");
    for c in rustls_pemfile::certs(&mut pem.as_slice()) {
        roots.add(c.expect("PEM cert")).expect("add root");
    }
    let config = rustls::ClientConfig::builder_with_provider(Arc::new(
        rustls::crypto::ring::default_provider(),
    ))
    .with_safe_default_protocol_versions()
    .expect("protocol versions")
    .with_root_certificates(roots)
    .with_no_client_auth();
    tokio_rustls::TlsConnector::from(Arc::new(config))
}

/// Outcomes of flood requests: answered by status, or cut off (reset while sending).
#[derive(Default)]
struct Tally {
    s401: AtomicU64,
    s400: AtomicU64,
    s503: AtomicU64,
    other: AtomicU64,
    cut: AtomicU64,
}

impl Tally {
    fn show(&self) -> String {
        format!(
            "503: {}, 401: {}, 400: {}, other: {}, cut off: {}",
            self.s503.load(Ordering::Relaxed),
            self.s401.load(Ordering::Relaxed),
            self.s400.load(Ordering::Relaxed),
            self.other.load(Ordering::Relaxed),
            self.cut.load(Ordering::Relaxed)
        )
    }
}

/// Sends `head` and `body` over a fresh TLS connection and reads the status line (if any).
async fn push(
    connector: &tokio_rustls::TlsConnector,
    addr: SocketAddr,
    head: &str,
    body: &[u8],
) -> Option<u16> {
    let tcp = tokio::net::TcpStream::connect(addr).await.ok()?;
    let name = rustls::pki_types::ServerName::IpAddress(addr.ip().into());
    let mut s = connector.connect(name, tcp).await.ok()?;
    let (mut rd, mut wr) = tokio::io::split(&mut s);
    // Read while writing: the guard may answer before the body is sent.
    let reader = async {
        let mut buf = Vec::new();
        let mut chunk = [0u8; 4096];
        loop {
            if let Some(i) = buf.windows(2).position(|w| w == b"\r\n") {
                let line = String::from_utf8_lossy(&buf[..i]).into_owned();
                return line.split_whitespace().nth(1).and_then(|c| c.parse().ok());
            }
            match rd.read(&mut chunk).await {
                Ok(0) | Err(_) => return None,
                Ok(n) => buf.extend_from_slice(&chunk[..n]),
            }
        }
    };
    let writer = async {
        if wr.write_all(head.as_bytes()).await.is_err() {
            return;
        }
        for c in body.chunks(64 * 1024) {
            if wr.write_all(c).await.is_err() {
                return;
            }
        }
        let _ = wr.flush().await;
        // Keep the future pending: the reader decides.
        std::future::pending::<()>().await
    };
    tokio::select! {
        s = reader => s,
        _ = writer => None,
    }
}

/// `CONNECTIONS` workers pushing `request()` until `FLOOD` is over.
async fn flood(
    connector: tokio_rustls::TlsConnector,
    addr: SocketAddr,
    request: Arc<dyn Fn() -> (String, Vec<u8>) + Send + Sync>,
    tally: Arc<Tally>,
) {
    let until = Instant::now() + FLOOD;
    let mut workers = Vec::new();
    for _ in 0..CONNECTIONS {
        let (connector, request, tally) = (connector.clone(), request.clone(), tally.clone());
        let (head, body) = request();
        workers.push(tokio::spawn(async move {
            while Instant::now() < until {
                let counter = match push(&connector, addr, &head, &body).await {
                    Some(503) => &tally.s503,
                    Some(401) => &tally.s401,
                    Some(400) => &tally.s400,
                    Some(_) => &tally.other,
                    None => &tally.cut,
                };
                counter.fetch_add(1, Ordering::Relaxed);
                tokio::time::sleep(Duration::from_millis(100)).await;
            }
        }));
    }
    for w in workers {
        let _ = w.await;
    }
}

/// Samples the guard's RSS every 100 ms until `stop`; returns the peak (kB).
fn sample_peak(pid: u32, stop: Arc<AtomicBool>) -> tokio::task::JoinHandle<u64> {
    tokio::spawn(async move {
        let mut peak = 0;
        while !stop.load(Ordering::Relaxed) {
            peak = peak.max(rss_kb(pid));
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
        peak.max(rss_kb(pid))
    })
}

/// Alice → Bob and Bob → Alice, one message each, while the flood runs.
async fn talk(alice: &Session, bob: &Session, room: &str, tag: &str) {
    let a = format!("von alice während {tag}");
    alice.send_text(room, &a).await.expect("alice sends");
    bob.wait_for_text(room, &alice.user_id, &a, WAIT)
        .await
        .unwrap_or_else(|e| panic!("{tag}: hs1 → hs2 did not arrive: {e}"));
    let b = format!("von bob während {tag}");
    bob.send_text(room, &b).await.expect("bob sends");
    alice
        .wait_for_text(room, &bob.user_id, &b, WAIT)
        .await
        .unwrap_or_else(|e| panic!("{tag}: hs2 → hs1 did not arrive: {e}"));
}

/// Runs one flood with a conversation and the RSS checks; returns (peak, after) in kB.
async fn flood_phase(
    lab: &common::E2eLab,
    room: &str,
    pid: u32,
    baseline: u64,
    tag: &str,
    request: Arc<dyn Fn() -> (String, Vec<u8>) + Send + Sync>,
) -> (u64, u64, Arc<Tally>) {
    let info = &lab.info;
    let stop = Arc::new(AtomicBool::new(false));
    let peak = sample_peak(pid, stop.clone());
    let tally = Arc::new(Tally::default());
    let flooding = tokio::spawn(flood(
        tls_connector(info),
        info.guard.inbound_addr,
        request,
        tally.clone(),
    ));
    tokio::time::sleep(Duration::from_secs(2)).await;
    let t0 = Instant::now();
    talk(&lab.alice, &lab.bob, room, tag).await;
    let talked = t0.elapsed();
    flooding.await.expect("flood");
    stop.store(true, Ordering::Relaxed);
    let peak = peak.await.expect("sampler");
    println!(
        "{tag}: conversation during the flood took {talked:?}; flood requests: {}",
        tally.show()
    );
    assert!(
        tally.s503.load(Ordering::Relaxed) > 0,
        "{tag}: the budget never refused: {}",
        tally.show()
    );
    assert!(
        peak < RSS_CAP_KB,
        "{tag}: guard RSS peaked at {peak} kB (cap {RSS_CAP_KB} kB)"
    );
    // Back near the baseline within 30 s.
    let t1 = Instant::now();
    let limit = baseline * 12 / 10;
    let after = loop {
        let now = rss_kb(pid);
        if now <= limit || t1.elapsed() > Duration::from_secs(30) {
            break now;
        }
        tokio::time::sleep(Duration::from_millis(250)).await;
    };
    println!(
        "{tag}: guard RSS baseline {baseline} kB, peak {peak} kB, after {after} kB ({:?} after the flood)",
        t1.elapsed()
    );
    assert!(
        after <= limit,
        "{tag}: guard RSS {after} kB 30 s after the flood, baseline {baseline} kB"
    );
    (peak, after, tally)
}

/// A connection that sends a head promising 1000 bytes, then 10 of them, and waits; returns
/// how long until the guard answered or closed, and the status if it answered.
async fn slow_body(
    connector: tokio_rustls::TlsConnector,
    addr: SocketAddr,
) -> (Duration, Option<u16>) {
    let tcp = tokio::net::TcpStream::connect(addr).await.expect("connect");
    let name = rustls::pki_types::ServerName::IpAddress(addr.ip().into());
    let mut s = connector.connect(name, tcp).await.expect("TLS");
    let t0 = Instant::now();
    let head = common::head(
        "POST",
        "/_matrix/key/v2/query",
        "127.0.0.1",
        &[("Content-Type", "application/json")],
        1000,
    );
    s.write_all(head.as_bytes()).await.expect("head");
    s.write_all(b"{\"server_k").await.expect("some body");
    s.flush().await.expect("flush");
    let mut buf = Vec::new();
    let mut chunk = [0u8; 1024];
    loop {
        match tokio::time::timeout(Duration::from_secs(180), s.read(&mut chunk)).await {
            Ok(Ok(0)) | Ok(Err(_)) | Err(_) => break,
            Ok(Ok(n)) => buf.extend_from_slice(&chunk[..n]),
        }
    }
    let status = String::from_utf8_lossy(&buf)
        .split_whitespace()
        .nth(1)
        .and_then(|c| c.parse().ok());
    (t0.elapsed(), status)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn floods_of_unauthenticated_bodies_stay_bounded_and_federation_goes_on() {
    let lab = common::e2e_lab("flood", false).await;
    let info = lab.info.clone();
    let hs1_name = info.hs1().server_name.clone();
    let hs2_name = info.hs2().server_name.clone();
    let pid = guard_pid(&info);

    // A room both sides are in, and one message each way (warms the guard's caches).
    let room = lab
        .alice
        .create_room(&json!({"preset": "private_chat", "name": "Flut"}))
        .await
        .expect("create room");
    lab.alice
        .invite(&room, &lab.bob.user_id)
        .await
        .expect("invite");
    lab.bob
        .wait_for_invite(&room, WAIT)
        .await
        .expect("invite seen");
    lab.bob.join(&room, &[&hs1_name]).await.expect("join");
    lab.alice
        .wait_for_member(&room, &lab.bob.user_id, WAIT)
        .await
        .expect("alice sees bob");
    talk(&lab.alice, &lab.bob, &room, "warm-up").await;
    tokio::time::sleep(Duration::from_secs(2)).await;
    let baseline = rss_kb(pid);
    println!("guard RSS baseline {baseline} kB");

    // (c) slow bodies, answered while the floods run.
    let slow: Vec<_> = (0..SLOW)
        .map(|_| tokio::spawn(slow_body(tls_connector(&info), info.guard.inbound_addr)))
        .collect();

    // (a) bodies that need no signature: a key query padded to 12 MB (not JSON at its end, so
    // nothing reaches hs1 even when a body is read whole).
    let hs1_for_a = hs1_name.clone();
    let a = Arc::new(move || {
        let mut body = b"{\"server_keys\":\"".to_vec();
        body.resize(BODY, b'x');
        let head = format!(
            "POST /_matrix/key/v2/query HTTP/1.1\r\nHost: {hs1_for_a}\r\nContent-Type: application/json\r\nContent-Length: {}\r\n\r\n",
            body.len()
        );
        (head, body)
    });
    let (peak_a, after_a, _) = flood_phase(&lab, &room, pid, baseline, "(a) unsigned", a).await;

    // (b) hs2 as origin, hs2's real key id, a signature over another body.
    let key_file = info.hs2().signing_key.clone();
    let (hs1_for_b, hs2_for_b) = (hs1_name.clone(), hs2_name.clone());
    let b = Arc::new(move || {
        let path = format!(
            "/_matrix/federation/v1/send/flood{:016x}",
            rand::random::<u64>()
        );
        let auth = common::xmatrix_signed(&key_file, &hs2_for_b, &hs1_for_b, "PUT", &path, b"{}");
        let mut body = format!(
            "{{\"origin\":\"{hs2_for_b}\",\"origin_server_ts\":1,\"pdus\":[],\"edus\":[],\"pad\":\""
        )
        .into_bytes();
        body.resize(BODY - 2, b'x');
        body.extend_from_slice(b"\"}");
        let head = format!(
            "PUT {path} HTTP/1.1\r\nHost: {hs1_for_b}\r\nAuthorization: {auth}\r\nContent-Type: application/json\r\nContent-Length: {}\r\n\r\n",
            body.len()
        );
        (head, body)
    });
    let (peak_b, after_b, tally_b) =
        flood_phase(&lab, &room, pid, baseline, "(b) bad signature", b).await;
    // Bodies the budget admitted were read whole and their signature refused.
    assert!(
        tally_b.s401.load(Ordering::Relaxed) > 0,
        "{}",
        tally_b.show()
    );

    // (c) every slow body was answered (408) or closed at the deadline, not before.
    for s in slow {
        let (waited, status) = s.await.expect("slow body task");
        println!("(c) slow body: {status:?} after {waited:?}");
        assert!(
            waited >= BODY_TIMEOUT - Duration::from_secs(1),
            "slow body closed early: {waited:?}"
        );
        assert!(
            waited <= BODY_TIMEOUT + Duration::from_secs(20),
            "slow body held too long: {waited:?}"
        );
        assert!(matches!(status, Some(408) | None), "{status:?}");
    }
    let refused: f64 = common::guard_metrics(&info)
        .await
        .iter()
        .filter(|s| s.name == "grenzwacht_admission_refused_total")
        .map(|s| s.value)
        .sum();
    assert!(refused > 0.0);
    println!(
        "summary: baseline {baseline} kB; (a) peak {peak_a} kB, after {after_a} kB; (b) peak {peak_b} kB, after {after_b} kB"
    );
}
