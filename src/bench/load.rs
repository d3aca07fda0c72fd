//! The load generator: pre-signed transactions, N keep-alive TLS connections.
//!
//! Every PDU is a real room-version-12 event: hashed and signed by the origin's key with
//! ruma's event signing (`hash_and_sign_event`), in a room whose id is its create event's
//! reference hash, so a guard that verifies PDUs checks what it would check on real traffic.
//! The room's create event (and, with labels, its label event) travel first in set-up
//! transactions; warm-up and measured transactions have distinct transaction ids, so no
//! measured transaction is a retry the guard answers from its transaction record.
use std::net::SocketAddr;
use std::path::PathBuf;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use bytes::Bytes;
use http::{HeaderValue, Request};
use http_body_util::{BodyExt, Full};
use hyper_util::rt::TokioIo;
use ruma::CanonicalJsonObject;
use rustls::pki_types::ServerName;
use serde_json::value::RawValue;
use serde_json::{json, Value};
use tokio::net::TcpStream;
use tokio_rustls::TlsConnector;

use super::{BenchArgs, BenchError, RunStats, Tamper};
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

/// The transactions of one bench run.
#[derive(Clone)]
pub struct Plan {
    /// Sent first, one at a time, in order: the room's create event (and label event).
    pub setup: Vec<Txn>,
    /// Sent before measuring (connections, key caches).
    pub warm: Vec<Txn>,
    /// The measured transactions.
    pub txns: Vec<Txn>,
}

/// German filler text (non-ASCII on purpose: the realistic case for the DLP detectors).
const TEXT: &str = "Sehr geehrte Damen und Herren, anbei die Übersicht über die Lagebesprechung am Donnerstag. \
Bitte prüfen Sie die Änderungen zur Größe der Einsatzkräfte und melden Sie Rückfragen bis Freitag. ";

fn body_text(size: usize, i: usize) -> String {
    let mut s = format!("{}{i}: ", super::sink::TEXT_MARKER);
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

/// The room version of the bench room.
pub const ROOM_VERSION: &str = "12";

/// Who sends what: the origin's key, the room, the label every message carries.
pub struct Sender<'a> {
    pub key: &'a SigningKey,
    pub origin: &'a str,
    pub destination: &'a str,
    /// Content key and label (JSON form) of every message and of the room label event.
    pub label: Option<(&'a str, &'a str, Value)>,
}

fn rules() -> Result<ruma::room_version_rules::RoomVersionRules, BenchError> {
    crate::federation::redact::parse_room_version(ROOM_VERSION)
        .and_then(|v| v.rules())
        .ok_or_else(|| BenchError::Setup("room version rules".into()))
}

/// Hashes and signs `event` as `origin` with `key` (room version 12).
fn sign_event(
    key: &SigningKey,
    origin: &str,
    event: Value,
) -> Result<CanonicalJsonObject, BenchError> {
    let mut obj: CanonicalJsonObject =
        serde_json::from_value(event).map_err(|e| BenchError::Setup(e.to_string()))?;
    ruma::signatures::hash_and_sign_event(origin, key.key_pair(), &mut obj, &rules()?.redaction)
        .map_err(|e| BenchError::Setup(e.to_string()))?;
    Ok(obj)
}

/// A placeholder event id (reference-hash shaped).
fn event_ref(n: usize) -> String {
    use base64::Engine;
    let h = ring::digest::digest(&ring::digest::SHA256, n.to_string().as_bytes());
    format!(
        "${}",
        base64::engine::general_purpose::URL_SAFE_NO_PAD.encode(h.as_ref())
    )
}

/// A message PDU of about `event_size` bytes in `room`, hashed and signed.
fn message(
    s: &Sender<'_>,
    key: &SigningKey,
    room: &str,
    n: usize,
    event_size: usize,
) -> Result<CanonicalJsonObject, BenchError> {
    let text = body_text(event_size.saturating_sub(600).max(16), n);
    let mut content = json!({"body": text, "msgtype": "m.text"});
    if let Some((event_key, _, label)) = &s.label {
        content[*event_key] = label.clone();
    }
    sign_event(
        key,
        s.origin,
        json!({
            "auth_events": [event_ref(1), event_ref(2)],
            "content": content,
            "depth": 100 + n,
            "origin_server_ts": 1_764_300_000_000u64 + n as u64,
            "prev_events": [event_ref(n + 3)],
            "room_id": room,
            "sender": format!("@alice:{}", s.origin),
            "type": "m.room.message"
        }),
    )
}

impl Plan {
    /// Builds and signs the set-up, `warm` warm-up and `args.requests` measured transactions.
    /// `tamper` signs the requests (X-Matrix) or the messages with another key of the same id:
    /// a forgery only a verifying guard notices.
    pub fn new(
        args: &BenchArgs,
        s: &Sender<'_>,
        warm: usize,
        tamper: Option<Tamper>,
    ) -> Result<Plan, BenchError> {
        let forger =
            SigningKey::generate(s.key.version()).map_err(|e| BenchError::Setup(e.to_string()))?;
        let (xmatrix_key, pdu_key) = match tamper {
            None => (s.key, s.key),
            Some(Tamper::Xmatrix) => (&forger, s.key),
            Some(Tamper::Pdu) => (s.key, &forger),
        };
        let sender = format!("@alice:{}", s.origin);
        let create = sign_event(
            s.key,
            s.origin,
            json!({
                "auth_events": [], "prev_events": [], "depth": 1,
                "content": {"room_version": ROOM_VERSION},
                "origin_server_ts": 1_764_300_000_000u64,
                "sender": sender, "state_key": "", "type": "m.room.create"
            }),
        )?;
        let room = format!(
            "!{}",
            ruma::signatures::reference_hash(&create, &rules()?)
                .map_err(|e| BenchError::Setup(e.to_string()))?
        );
        let mut setup_bodies = vec![vec![create]];
        if let Some((event_key, label_type, label)) = &s.label {
            setup_bodies.push(vec![sign_event(
                s.key,
                s.origin,
                json!({
                    "auth_events": [event_ref(1)], "prev_events": [event_ref(2)], "depth": 2,
                    "content": {*event_key: label},
                    "origin_server_ts": 1_764_300_000_001u64,
                    "room_id": room, "sender": sender, "state_key": "", "type": label_type
                }),
            )?]);
        }
        let txn = |id: String,
                   pdus: Vec<CanonicalJsonObject>,
                   key: &SigningKey|
         -> Result<Txn, BenchError> {
            let body = serde_json::to_vec(&json!({
                "origin": s.origin,
                "origin_server_ts": 1_764_300_000_000u64,
                "pdus": pdus,
                "edus": []
            }))
            .map_err(|e| BenchError::Setup(e.to_string()))?;
            let path = format!("/_matrix/federation/v1/send/{id}");
            let raw: &RawValue =
                serde_json::from_slice(&body).map_err(|e| BenchError::Setup(e.to_string()))?;
            let header =
                xmatrix::sign_request(key, s.origin, s.destination, "PUT", &path, Some(raw))
                    .map_err(|e| BenchError::Setup(e.to_string()))?;
            Ok(Txn {
                path,
                body: Bytes::from(body),
                auth: HeaderValue::from_str(&header)
                    .map_err(|e| BenchError::Setup(e.to_string()))?,
            })
        };
        let setup = setup_bodies
            .into_iter()
            .enumerate()
            .map(|(i, p)| txn(format!("setup{i}"), p, s.key))
            .collect::<Result<Vec<_>, _>>()?;
        let total = warm + args.requests;
        // Signing is the expensive part of the set-up: spread it over the cores. Each thread
        // keeps only the finished bytes of its transactions, not the signed event objects.
        let threads = std::thread::available_parallelism()
            .map_or(1, |n| n.get())
            .min(total.max(1));
        let per = total.div_ceil(threads);
        let mut all: Vec<Txn> = std::thread::scope(|scope| {
            let handles: Vec<_> = (0..threads)
                .map(|t| {
                    let (room, txn) = (&room, &txn);
                    scope.spawn(move || {
                        (t * per..((t + 1) * per).min(total))
                            .map(|i| {
                                let pdus = (0..args.pdus)
                                    .map(|j| {
                                        message(
                                            s,
                                            pdu_key,
                                            room,
                                            i * args.pdus + j,
                                            args.event_size,
                                        )
                                    })
                                    .collect::<Result<Vec<_>, _>>()?;
                                let id = if i < warm {
                                    format!("warm{i}")
                                } else {
                                    format!("bench{}", i - warm)
                                };
                                txn(id, pdus, xmatrix_key)
                            })
                            .collect::<Result<Vec<_>, _>>()
                    })
                })
                .collect();
            let mut all = Vec::with_capacity(total);
            for h in handles {
                all.extend(
                    h.join()
                        .map_err(|_| BenchError::Setup("signing thread".into()))??,
                );
            }
            Ok::<_, BenchError>(all)
        })?;
        let txns = all.split_off(warm.min(all.len()));
        let warm = all;
        Ok(Plan { setup, warm, txns })
    }
}

/// Sends `txns` to `addr` over `concurrency` connections (TLS, certificate for 127.0.0.1).
pub async fn run(
    txns: &[Txn],
    addr: SocketAddr,
    roots: &[PathBuf],
    concurrency: usize,
    rate: u64,
) -> Result<RunStats, BenchError> {
    let cfg = tls::client_config(roots).map_err(|e| BenchError::Setup(e.to_string()))?;
    let connector = TlsConnector::from(cfg);
    let next = Arc::new(AtomicUsize::new(0));
    let txns = Arc::new(txns.to_vec());
    let cpu0 = process_cpu_seconds();
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
    let cpu = process_cpu_seconds() - cpu0;
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
        cpu_ms_per_txn: if lat.is_empty() && errors == 0 {
            0.0
        } else {
            cpu * 1000.0 / (lat.len() + errors) as f64
        },
    })
}

/// CPU time (user + system) this process used so far, in seconds: the load generator, the
/// sink and the in-process guard together.
pub fn process_cpu_seconds() -> f64 {
    let mut ru = std::mem::MaybeUninit::<libc::rusage>::zeroed();
    // SAFETY: getrusage writes a `rusage` into the pointer it is given, which points to
    // zero-initialised memory of that type; RUSAGE_SELF cannot fail with a valid pointer.
    let ru = unsafe {
        if libc::getrusage(libc::RUSAGE_SELF, ru.as_mut_ptr()) != 0 {
            return 0.0;
        }
        ru.assume_init()
    };
    let t = |tv: libc::timeval| tv.tv_sec as f64 + tv.tv_usec as f64 / 1e6;
    t(ru.ru_utime) + t(ru.ru_stime)
}
