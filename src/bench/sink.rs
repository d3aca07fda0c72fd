//! A homeserver stand-in that accepts every `/send` transaction: TLS (like a federation
//! listener, for the direct run) and plain HTTP on loopback (the guard's upstream).
//!
//! It also serves the sending server's signed key object at `/_matrix/key/v2/server` (on both
//! listeners), so a guard that verifies signatures fetches the origin's keys from it over its
//! route table, as it would from a real remote server. With `inspect` on it counts, per
//! listener, the PDUs whose message text arrived ([`TEXT_MARKER`]): the guard's run shows
//! whether content crossed unchanged or redacted.
use std::convert::Infallible;
use std::net::SocketAddr;
use std::path::Path;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;

use bytes::Bytes;
use http::{Response, StatusCode};
use http_body_util::{BodyExt, Full};
use hyper::service::service_fn;
use hyper_util::rt::TokioIo;
use tokio::net::TcpListener;
use tokio::sync::watch;
use tokio_rustls::TlsAcceptor;

use super::BenchError;
use crate::proxy::tls;

/// Text every message PDU of the bench carries once in its body (see `load::body_text`).
pub const TEXT_MARKER: &str = "Nachricht ";

/// What one listener of the sink received.
#[derive(Default)]
pub struct Counters {
    /// `/send` transactions answered 200.
    pub transactions: AtomicU64,
    /// PDUs whose message text arrived (counted only with `inspect`).
    pub text_pdus: AtomicU64,
}

impl Counters {
    /// (transactions, text PDUs) so far.
    pub fn snapshot(&self) -> (u64, u64) {
        (
            self.transactions.load(Ordering::Relaxed),
            self.text_pdus.load(Ordering::Relaxed),
        )
    }
}

pub struct Sink {
    pub tls_addr: SocketAddr,
    pub plain_addr: SocketAddr,
    /// What arrived on the TLS listener (direct runs).
    pub direct: Arc<Counters>,
    /// What arrived on the plain listener (forwarded by the guard).
    pub upstream: Arc<Counters>,
    stop: watch::Sender<bool>,
    tasks: Vec<tokio::task::JoinHandle<()>>,
}

#[derive(Clone)]
struct Shared {
    counters: Arc<Counters>,
    key_object: Bytes,
    inspect: bool,
}

fn json_response(status: StatusCode, body: Bytes) -> Response<Full<Bytes>> {
    let mut r = Response::new(Full::new(body));
    *r.status_mut() = status;
    r.headers_mut().insert(
        http::header::CONTENT_TYPE,
        http::HeaderValue::from_static("application/json"),
    );
    r
}

async fn answer(
    req: http::Request<hyper::body::Incoming>,
    s: Shared,
) -> Result<Response<Full<Bytes>>, Infallible> {
    if req.method() == http::Method::GET && req.uri().path() == "/_matrix/key/v2/server" {
        return Ok(json_response(StatusCode::OK, s.key_object.clone()));
    }
    let ok = req.method() == http::Method::PUT
        && req.uri().path().starts_with("/_matrix/federation/v1/send/");
    let body = req
        .into_body()
        .collect()
        .await
        .map(|b| b.to_bytes())
        .unwrap_or_default();
    if !ok {
        return Ok(json_response(
            StatusCode::NOT_FOUND,
            Bytes::from_static(br#"{"errcode":"M_UNRECOGNIZED","error":"Unrecognized request"}"#),
        ));
    }
    s.counters.transactions.fetch_add(1, Ordering::Relaxed);
    if s.inspect {
        let n = memchr::memmem::find_iter(&body, TEXT_MARKER.as_bytes()).count();
        s.counters.text_pdus.fetch_add(n as u64, Ordering::Relaxed);
    }
    Ok(json_response(
        StatusCode::OK,
        Bytes::from_static(br#"{"pdus":{}}"#),
    ))
}

impl Sink {
    /// Starts both listeners; `key_object` is served at `/_matrix/key/v2/server`.
    pub async fn start(
        cert: &Path,
        key: &Path,
        key_object: Vec<u8>,
        inspect: bool,
    ) -> Result<Sink, BenchError> {
        let ck =
            tls::load_certified_key(cert, key).map_err(|e| BenchError::Setup(e.to_string()))?;
        let acceptor = TlsAcceptor::from(tls::server_config(Arc::new(
            tls::SniResolver::new(vec![("sink".to_string(), ck)])
                .map_err(|e| BenchError::Setup(e.to_string()))?,
        )));
        let tls_l = TcpListener::bind("127.0.0.1:0").await?;
        let plain_l = TcpListener::bind("127.0.0.1:0").await?;
        let (stop, rx) = watch::channel(false);
        let direct = Arc::new(Counters::default());
        let upstream = Arc::new(Counters::default());
        let key_object = Bytes::from(key_object);
        let tls_addr = tls_l.local_addr()?;
        let plain_addr = plain_l.local_addr()?;
        let mut tasks = Vec::new();
        for (l, acc, counters) in [
            (tls_l, Some(acceptor), direct.clone()),
            (plain_l, None, upstream.clone()),
        ] {
            let mut rx = rx.clone();
            let shared = Shared {
                counters,
                key_object: key_object.clone(),
                inspect,
            };
            tasks.push(tokio::spawn(async move {
                loop {
                    let (tcp, _) = tokio::select! {
                        r = l.accept() => match r { Ok(x) => x, Err(_) => continue },
                        _ = rx.changed() => return,
                    };
                    let _ = tcp.set_nodelay(true);
                    let acc = acc.clone();
                    let shared = shared.clone();
                    tokio::spawn(async move {
                        let svc = service_fn(move |req| answer(req, shared.clone()));
                        let b = hyper::server::conn::http1::Builder::new();
                        match acc {
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
            }));
        }
        Ok(Sink {
            tls_addr,
            plain_addr,
            direct,
            upstream,
            stop,
            tasks,
        })
    }

    pub async fn stop(self) {
        let _ = self.stop.send(true);
        for t in self.tasks {
            let _ = t.await;
        }
    }
}
