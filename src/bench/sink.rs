//! A homeserver stand-in that accepts every `/send` transaction: TLS (like a federation
//! listener, for the direct run) and plain HTTP on loopback (the guard's upstream).
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

pub struct Sink {
    pub tls_addr: SocketAddr,
    pub plain_addr: SocketAddr,
    /// Transactions received (both listeners).
    pub received: Arc<AtomicU64>,
    stop: watch::Sender<bool>,
    tasks: Vec<tokio::task::JoinHandle<()>>,
}

async fn answer(
    req: http::Request<hyper::body::Incoming>,
    received: Arc<AtomicU64>,
) -> Result<Response<Full<Bytes>>, Infallible> {
    let ok = req.method() == http::Method::PUT
        && req.uri().path().starts_with("/_matrix/federation/v1/send/");
    let _ = req.into_body().collect().await;
    let mut resp = if ok {
        received.fetch_add(1, Ordering::Relaxed);
        Response::new(Full::new(Bytes::from_static(br#"{"pdus":{}}"#)))
    } else {
        let mut r = Response::new(Full::new(Bytes::from_static(
            br#"{"errcode":"M_UNRECOGNIZED","error":"Unrecognized request"}"#,
        )));
        *r.status_mut() = StatusCode::NOT_FOUND;
        r
    };
    resp.headers_mut().insert(
        http::header::CONTENT_TYPE,
        http::HeaderValue::from_static("application/json"),
    );
    Ok(resp)
}

impl Sink {
    pub async fn start(cert: &Path, key: &Path) -> Result<Sink, BenchError> {
        let ck =
            tls::load_certified_key(cert, key).map_err(|e| BenchError::Setup(e.to_string()))?;
        let acceptor = TlsAcceptor::from(tls::server_config(Arc::new(
            tls::SniResolver::new(vec![("sink".to_string(), ck)])
                .map_err(|e| BenchError::Setup(e.to_string()))?,
        )));
        let tls_l = TcpListener::bind("127.0.0.1:0").await?;
        let plain_l = TcpListener::bind("127.0.0.1:0").await?;
        let (stop, rx) = watch::channel(false);
        let received = Arc::new(AtomicU64::new(0));
        let tls_addr = tls_l.local_addr()?;
        let plain_addr = plain_l.local_addr()?;
        let mut tasks = Vec::new();
        for (l, acc) in [(tls_l, Some(acceptor)), (plain_l, None)] {
            let mut rx = rx.clone();
            let received = received.clone();
            tasks.push(tokio::spawn(async move {
                loop {
                    let (tcp, _) = tokio::select! {
                        r = l.accept() => match r { Ok(x) => x, Err(_) => continue },
                        _ = rx.changed() => return,
                    };
                    let _ = tcp.set_nodelay(true);
                    let acc = acc.clone();
                    let received = received.clone();
                    tokio::spawn(async move {
                        let svc = service_fn(move |req| answer(req, received.clone()));
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
            received,
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
