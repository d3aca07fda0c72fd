//! The load generator: pre-signed transactions, N keep-alive TLS connections.
use std::net::SocketAddr;
use std::path::PathBuf;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use bytes::Bytes;
use http::{HeaderValue, Request};
use http_body_util::{BodyExt, Full};
use hyper_util::rt::TokioIo;
use rustls::pki_types::ServerName;
use serde_json::value::RawValue;
use tokio::net::TcpStream;
use tokio_rustls::TlsConnector;

use super::{BenchArgs, BenchError, RunStats};
use crate::federation::xmatrix;
use crate::keys::SigningKey;
use crate::proxy::tls;

/// One signed transaction ready to send.
#[derive(Clone)]
pub struct Txn {
    pub path: String,
    pub body: Bytes,
    pub auth: HeaderValue,
}

#[derive(Clone)]
pub struct Plan {
    pub txns: Vec<Txn>,
}

/// German filler text (non-ASCII on purpose: the realistic case for detectors later).
const TEXT: &str = "Sehr geehrte Damen und Herren, anbei die Übersicht über die Lagebesprechung am Donnerstag. \
Bitte prüfen Sie die Änderungen zur Größe der Einsatzkräfte und melden Sie Rückfragen bis Freitag. ";

fn body_text(size: usize, i: usize) -> String {
    let mut s = format!("Nachricht {i}: ");
    while s.len() < size {
        s.push_str(TEXT);
    }
    let mut cut = size.min(s.len());
    while !s.is_char_boundary(cut) {
        cut -= 1;
    }
    s.truncate(cut);
    s
}

/// A realistic room-v12-shaped PDU (hashes and signatures are placeholders: the guard does not
/// verify PDUs in this build).
pub fn pdu(origin: &str, n: usize, event_size: usize) -> serde_json::Value {
    let text = body_text(event_size.saturating_sub(600).max(16), n);
    serde_json::json!({
        "auth_events": ["$4l7cT9vqCmw4mSBbHkN0zp7hnLLQpqJ3eH8pFzS0k8Q", "$Zr3iA3fqJYbK1wK2p7m8kP3oQG5Y2d0tCqlB2mJyW4s"],
        "content": {"body": text, "msgtype": "m.text"},
        "depth": 100 + n,
        "hashes": {"sha256": "aGFzaGhhc2hoYXNoaGFzaGhhc2hoYXNoaGFzaGhhc2g"},
        "origin_server_ts": 1_764_300_000_000u64 + n as u64,
        "prev_events": ["$qv0ZbS8uYw0Jx3n2HkP1lT5rA9cE7dF6gH4iJ2kL0mN"],
        "room_id": "!bench-room",
        "sender": format!("@alice:{origin}"),
        "signatures": {origin: {"ed25519:bench": "c2lnbmF0dXJlc2lnbmF0dXJlc2lnbmF0dXJlc2lnbmF0dXJlc2lnbmF0dXJlc2ln"}},
        "type": "m.room.message"
    })
}

impl Plan {
    /// Builds and signs `args.requests` transactions from `origin` to `destination`.
    pub fn new(args: &BenchArgs, origin: &str, destination: &str) -> Result<Plan, BenchError> {
        let key = SigningKey::generate("bench").map_err(|e| BenchError::Setup(e.to_string()))?;
        let mut txns = Vec::with_capacity(args.requests);
        for i in 0..args.requests {
            let pdus: Vec<_> = (0..args.pdus)
                .map(|j| pdu(origin, i * args.pdus + j, args.event_size))
                .collect();
            let body = serde_json::to_vec(&serde_json::json!({
                "origin": origin,
                "origin_server_ts": 1_764_300_000_000u64 + i as u64,
                "pdus": pdus,
                "edus": []
            }))
            .map_err(|e| BenchError::Setup(e.to_string()))?;
            let path = format!("/_matrix/federation/v1/send/bench{i}");
            let raw: &RawValue =
                serde_json::from_slice(&body).map_err(|e| BenchError::Setup(e.to_string()))?;
            let header = xmatrix::sign_request(&key, origin, destination, "PUT", &path, Some(raw))
                .map_err(|e| BenchError::Setup(e.to_string()))?;
            txns.push(Txn {
                path,
                body: Bytes::from(body),
                auth: HeaderValue::from_str(&header)
                    .map_err(|e| BenchError::Setup(e.to_string()))?,
            });
        }
        Ok(Plan { txns })
    }
}

/// Sends every transaction of the plan to `addr` (TLS, certificate for 127.0.0.1).
pub async fn run(
    plan: &Plan,
    addr: SocketAddr,
    roots: &[PathBuf],
    concurrency: usize,
    rate: u64,
) -> Result<RunStats, BenchError> {
    let cfg = tls::client_config(roots).map_err(|e| BenchError::Setup(e.to_string()))?;
    let connector = TlsConnector::from(cfg);
    let next = Arc::new(AtomicUsize::new(0));
    let txns = Arc::new(plan.txns.clone());
    let start = Instant::now();
    let mut workers = Vec::new();
    for _ in 0..concurrency {
        let connector = connector.clone();
        let next = next.clone();
        let txns = txns.clone();
        workers.push(tokio::spawn(async move {
            let mut lat = Vec::new();
            let mut errors = 0usize;
            let tcp = TcpStream::connect(addr).await?;
            tcp.set_nodelay(true)?;
            let tls = connector
                .connect(
                    ServerName::from(std::net::IpAddr::from([127, 0, 0, 1])),
                    tcp,
                )
                .await?;
            let (mut sender, conn) = hyper::client::conn::http1::handshake(TokioIo::new(tls))
                .await
                .map_err(|e| BenchError::Load(e.to_string()))?;
            tokio::spawn(conn);
            loop {
                let i = next.fetch_add(1, Ordering::Relaxed);
                let Some(t) = txns.get(i) else { break };
                if rate > 0 {
                    let due = start + Duration::from_secs_f64(i as f64 / rate as f64);
                    tokio::time::sleep_until(due.into()).await;
                }
                let req = Request::put(t.path.as_str())
                    .header(http::header::HOST, "sink.bench")
                    .header(http::header::CONTENT_TYPE, "application/json")
                    .header(http::header::AUTHORIZATION, t.auth.clone())
                    .body(Full::new(t.body.clone()))
                    .map_err(|e| BenchError::Load(e.to_string()))?;
                let t0 = Instant::now();
                sender
                    .ready()
                    .await
                    .map_err(|e| BenchError::Load(e.to_string()))?;
                match sender.send_request(req).await {
                    Ok(resp) => {
                        let ok = resp.status().is_success();
                        let _ = resp.into_body().collect().await;
                        lat.push(t0.elapsed());
                        if !ok {
                            errors += 1;
                        }
                    }
                    Err(_) => errors += 1,
                }
            }
            Ok::<_, BenchError>((lat, errors))
        }));
    }
    let mut lat = Vec::new();
    let mut errors = 0;
    for w in workers {
        let (l, e) = w.await.map_err(|e| BenchError::Load(e.to_string()))??;
        lat.extend(l);
        errors += e;
    }
    let seconds = start.elapsed().as_secs_f64();
    lat.sort();
    let pct = |p: f64| -> f64 {
        if lat.is_empty() {
            return 0.0;
        }
        let idx = ((lat.len() as f64 - 1.0) * p).round() as usize;
        lat[idx].as_secs_f64() * 1000.0
    };
    Ok(RunStats {
        requests: lat.len() + errors,
        errors,
        seconds,
        rps: lat.len() as f64 / seconds,
        p50_ms: pct(0.50),
        p90_ms: pct(0.90),
        p99_ms: pct(0.99),
        max_ms: pct(1.0),
    })
}
