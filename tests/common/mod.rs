//! Shared harness for in-process proxy tests: a recording upstream, a test PKI, a guard.
#![allow(dead_code)]
use std::convert::Infallible;
use std::net::SocketAddr;
use std::path::PathBuf;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use bytes::Bytes;
use http::{Response, StatusCode};
use http_body_util::{BodyExt, Full};
use hyper::service::service_fn;
use hyper_util::rt::TokioIo;
use tokio::net::TcpListener;
use tokio_rustls::TlsAcceptor;

use grenzwacht::config::Config;
use grenzwacht::proxy::ca::Ca;
use grenzwacht::proxy::{tls, Guard, Listeners};

/// One request as the upstream saw it.
#[derive(Debug, Clone)]
pub struct Seen {
    pub method: String,
    pub path_and_query: String,
    pub headers: http::HeaderMap,
    pub body: Bytes,
}

pub type Answer = Arc<dyn Fn(&Seen) -> (u16, &'static str, Vec<u8>) + Send + Sync>;

/// An HTTP(S) server that records every request and answers with `answer`.
pub struct Recorder {
    pub addr: SocketAddr,
    pub seen: Arc<Mutex<Vec<Seen>>>,
}

impl Recorder {
    pub fn seen(&self) -> Vec<Seen> {
        self.seen.lock().unwrap().clone()
    }
}

pub fn default_answer() -> Answer {
    Arc::new(|s: &Seen| {
        if s.path_and_query.starts_with("/_matrix/federation/v1/send/") {
            (200, "application/json", br#"{"pdus":{}}"#.to_vec())
        } else {
            (200, "application/json", br#"{"ok":true}"#.to_vec())
        }
    })
}

/// A homeserver's key server: its signed key object at `/_matrix/key/v2/server`, 404 for
/// anything else (the guard fetches a protected server's keys from its own listener to verify
/// the outbound requests it signed).
pub fn key_server_answer(server_name: &str, key: &grenzwacht::keys::SigningKey) -> Answer {
    let now = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_millis() as u64;
    let mut obj: ruma::CanonicalJsonObject = serde_json::from_value(serde_json::json!({
        "server_name": server_name, "valid_until_ts": now + 86_400_000, "old_verify_keys": {},
        "verify_keys": {key.key_id(): {"key": key.public_key_base64()}}
    }))
    .unwrap();
    key.sign_json(server_name, &mut obj).unwrap();
    let body = serde_json::to_vec(&obj).unwrap();
    Arc::new(move |s: &Seen| {
        if s.path_and_query == "/_matrix/key/v2/server" {
            (200, "application/json", body.clone())
        } else {
            (
                404,
                "application/json",
                br#"{"errcode":"M_UNRECOGNIZED","error":"no"}"#.to_vec(),
            )
        }
    })
}

pub async fn recorder(tls: Option<TlsAcceptor>, answer: Answer) -> Recorder {
    let l = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = l.local_addr().unwrap();
    let seen = Arc::new(Mutex::new(Vec::new()));
    let s2 = seen.clone();
    tokio::spawn(async move {
        loop {
            let Ok((tcp, _)) = l.accept().await else {
                continue;
            };
            let seen = s2.clone();
            let answer = answer.clone();
            let tls = tls.clone();
            tokio::spawn(async move {
                let svc = service_fn(move |req: http::Request<hyper::body::Incoming>| {
                    let seen = seen.clone();
                    let answer = answer.clone();
                    async move {
                        let method = req.method().to_string();
                        let pq = req
                            .uri()
                            .path_and_query()
                            .map(|p| p.as_str().to_string())
                            .unwrap_or_default();
                        let headers = req.headers().clone();
                        let body = req
                            .into_body()
                            .collect()
                            .await
                            .map(|b| b.to_bytes())
                            .unwrap_or_default();
                        let s = Seen {
                            method,
                            path_and_query: pq,
                            headers,
                            body,
                        };
                        let (status, ct, out) = answer(&s);
                        seen.lock().unwrap().push(s);
                        let mut r = Response::new(Full::new(Bytes::from(out)));
                        *r.status_mut() = StatusCode::from_u16(status).unwrap();
                        r.headers_mut().insert(
                            http::header::CONTENT_TYPE,
                            http::HeaderValue::from_static(ct),
                        );
                        Ok::<_, Infallible>(r)
                    }
                });
                let b = hyper::server::conn::http1::Builder::new();
                match tls {
                    Some(acc) => {
                        if let Ok(s) = acc.accept(tcp).await {
                            let _ = b.serve_connection(TokioIo::new(s), svc).await;
                        }
                    }
                    None => {
                        let _ = b.serve_connection(TokioIo::new(tcp), svc).await;
                    }
                }
            });
        }
    });
    Recorder { addr, seen }
}

/// A throwaway PKI in a temp dir: a CA and a leaf for 127.0.0.1.
pub struct Pki {
    pub dir: tempfile::TempDir,
    pub ca: Ca,
    pub ca_path: PathBuf,
    pub cert: PathBuf,
    pub key: PathBuf,
}

pub fn pki() -> Pki {
    let dir = tempfile::tempdir().unwrap();
    let ca = Ca::generate("grenzwacht test CA").unwrap();
    let (c, k) = ca
        .issue_pem(
            &["127.0.0.1".to_string(), "localhost".to_string()],
            Duration::from_secs(3600),
        )
        .unwrap();
    let ca_path = dir.path().join("ca.crt");
    let cert = dir.path().join("leaf.crt");
    let key = dir.path().join("leaf.key");
    std::fs::write(&ca_path, ca.cert_pem()).unwrap();
    std::fs::write(&cert, c).unwrap();
    std::fs::write(&key, k).unwrap();
    Pki {
        dir,
        ca,
        ca_path,
        cert,
        key,
    }
}

pub fn acceptor(p: &Pki) -> TlsAcceptor {
    let ck = tls::load_certified_key(&p.cert, &p.key).unwrap();
    TlsAcceptor::from(tls::server_config(Arc::new(
        tls::SniResolver::new(vec![("127.0.0.1".into(), ck)]).unwrap(),
    )))
}

/// A running in-process guard.
pub struct RunningGuard {
    pub inbound: Option<SocketAddr>,
    pub connect: Option<SocketAddr>,
    pub proxy: Option<SocketAddr>,
    pub admin: SocketAddr,
    pub guard: Arc<Guard>,
    stop: Option<tokio::sync::oneshot::Sender<()>>,
    task: Option<tokio::task::JoinHandle<()>>,
}

impl RunningGuard {
    pub async fn stop(mut self) {
        if let Some(s) = self.stop.take() {
            let _ = s.send(());
        }
        if let Some(t) = self.task.take() {
            let _ = t.await;
        }
    }
}

pub async fn start_guard(p: &Pki, toml: &str) -> RunningGuard {
    start_guard_store(p, toml, grenzwacht::store::Store::open_in_memory().unwrap()).await
}

/// [`start_guard`] over `store` (e.g. the configured file, as `serve` opens it).
pub async fn start_guard_store(
    p: &Pki,
    toml: &str,
    store: grenzwacht::store::Store,
) -> RunningGuard {
    let path = p.dir.path().join(format!("guard-{}.toml", rand_suffix()));
    std::fs::write(&path, toml).unwrap();
    let cfg = Config::load(&path).unwrap_or_else(|e| panic!("config: {e}"));
    let mut guard = Guard::from_config(&cfg, store).unwrap();
    // With `[audit]`, the audit log as `serve` connects it.
    if let Some(a) = &cfg.audit {
        guard.set_auditor(grenzwacht::audit::Auditor::open(a).unwrap());
    }
    let guard = Arc::new(guard);
    let listeners = Listeners::bind(&cfg).await.unwrap();
    let addr = |l: &Option<TcpListener>| l.as_ref().map(|l| l.local_addr().unwrap());
    let (inbound, connect, proxy) = (
        addr(&listeners.inbound),
        addr(&listeners.connect),
        addr(&listeners.proxy),
    );
    let admin = listeners.admin.as_ref().unwrap().local_addr().unwrap();
    let (tx, rx) = tokio::sync::oneshot::channel::<()>();
    let task = tokio::spawn(grenzwacht::proxy::serve(
        guard.clone(),
        listeners,
        async move {
            let _ = rx.await;
        },
    ));
    RunningGuard {
        inbound,
        connect,
        proxy,
        admin,
        guard,
        stop: Some(tx),
        task: Some(task),
    }
}

fn rand_suffix() -> u64 {
    use std::sync::atomic::{AtomicU64, Ordering};
    static N: AtomicU64 = AtomicU64::new(0);
    N.fetch_add(1, Ordering::Relaxed)
}

/// A simple HTTP/1.1 response as the client saw it.
#[derive(Debug)]
pub struct Got {
    pub status: u16,
    pub headers: http::HeaderMap,
    pub body: Bytes,
}

impl Got {
    pub fn json(&self) -> serde_json::Value {
        serde_json::from_slice(&self.body).unwrap_or(serde_json::Value::Null)
    }
    pub fn errcode(&self) -> String {
        self.json()["errcode"].as_str().unwrap_or("").to_string()
    }
}

/// Sends one request over a fresh TLS connection to `addr` (trusting `ca`).
pub async fn tls_request(
    addr: SocketAddr,
    ca: &std::path::Path,
    method: &str,
    pq: &str,
    headers: &[(&str, String)],
    body: Vec<u8>,
) -> Got {
    let cfg = tls::client_config(&[ca.to_path_buf()]).unwrap();
    let tcp = tokio::net::TcpStream::connect(addr).await.unwrap();
    let s = tokio_rustls::TlsConnector::from(cfg)
        .connect(
            rustls::pki_types::ServerName::try_from("127.0.0.1").unwrap(),
            tcp,
        )
        .await
        .unwrap();
    send_over(TokioIo::new(s), method, pq, headers, body).await
}

/// Sends one request over a fresh plain connection.
pub async fn plain_request(
    addr: SocketAddr,
    method: &str,
    target: &str,
    headers: &[(&str, String)],
    body: Vec<u8>,
) -> Got {
    let tcp = tokio::net::TcpStream::connect(addr).await.unwrap();
    send_over(TokioIo::new(tcp), method, target, headers, body).await
}

pub async fn send_over<T>(
    io: T,
    method: &str,
    target: &str,
    headers: &[(&str, String)],
    body: Vec<u8>,
) -> Got
where
    T: hyper::rt::Read + hyper::rt::Write + Unpin + Send + 'static,
{
    let (mut sender, conn) = hyper::client::conn::http1::handshake(io).await.unwrap();
    tokio::spawn(conn);
    let mut b = http::Request::builder().method(method).uri(target);
    let mut has_host = false;
    for (k, v) in headers {
        has_host |= k.eq_ignore_ascii_case("host");
        b = b.header(*k, v.as_str());
    }
    if !has_host {
        b = b.header("host", "127.0.0.1");
    }
    let resp = sender
        .send_request(b.body(Full::new(Bytes::from(body))).unwrap())
        .await
        .unwrap();
    let status = resp.status().as_u16();
    let headers = resp.headers().clone();
    let body = resp.into_body().collect().await.unwrap().to_bytes();
    Got {
        status,
        headers,
        body,
    }
}

/// Reads the guard's Prometheus text.
pub async fn metrics(admin: SocketAddr) -> String {
    let g = plain_request(admin, "GET", "/metrics", &[], vec![]).await;
    String::from_utf8_lossy(&g.body).to_string()
}

/// Sum of a counter over all series whose labels contain every `label="value"` given.
pub fn counter(metrics: &str, name: &str, labels: &[(&str, &str)]) -> f64 {
    metrics
        .lines()
        .filter(|l| l.starts_with(name) && !l.starts_with('#'))
        .filter(|l| {
            labels
                .iter()
                .all(|(k, v)| l.contains(&format!("{k}=\"{v}\"")))
        })
        .filter_map(|l| l.rsplit(' ').next()?.parse::<f64>().ok())
        .sum()
}

/// The protected server of the in-process tests.
pub const TEST_HS1: &str = "hs1.test";

/// The X-Matrix `Authorization` header for a request signed by `origin` with `key`.
pub fn auth(
    key: &grenzwacht::keys::SigningKey,
    origin: &str,
    dest: &str,
    method: &str,
    uri: &str,
    body: Option<&[u8]>,
) -> String {
    let raw: Option<Box<serde_json::value::RawValue>> =
        body.map(|b| serde_json::from_slice(b).unwrap());
    grenzwacht::federation::xmatrix::sign_request(key, origin, dest, method, uri, raw.as_deref())
        .unwrap()
}

/// A guard protecting `hs1.test` (upstream `upstream`) with an inbound listener and an admin
/// listener; inbound X-Matrix verification off and — unless `extra` has a `[keys]` table —
/// PDU verification off (no outbound path to fetch keys). `extra` is appended.
pub fn inbound_toml(p: &Pki, upstream: SocketAddr, extra: &str) -> String {
    let keys = if extra.contains("[keys]") {
        ""
    } else {
        "[keys]\nverify_pdus = false\n"
    };
    format!(
        r#"
[admin]
listen = "127.0.0.1:0"
[inbound]
listen = "127.0.0.1:0"
verify_signatures = false
{keys}
[[protected]]
server_name = "{TEST_HS1}"
cert = "{cert}"
key = "{key}"
upstream = "http://{upstream}"
{extra}
"#,
        cert = p.cert.display(),
        key = p.key.display()
    )
}

/// A fresh guard key `ed25519:gw1`, written to the PKI's directory (Synapse format).
pub fn guard_key_file(p: &Pki) -> (grenzwacht::keys::SigningKey, PathBuf) {
    let key = grenzwacht::keys::SigningKey::generate("gw1").unwrap();
    let path = p.dir.path().join("guard.signing.key");
    std::fs::write(&path, key.to_synapse_string()).unwrap();
    (key, path)
}
