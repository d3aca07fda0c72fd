//! The admin listener: `GET /metrics` (Prometheus text format) and `GET /health`.
//!
//! It is plain HTTP/1.1 and has no authentication, so it binds to loopback by default
//! (`[admin] listen = "127.0.0.1:9100"`); expose it only to the monitoring network.
//!
//! | request | response |
//! |---|---|
//! | `GET /metrics` | 200, `text/plain; version=0.0.4`, the rendered [`PrometheusHandle`] |
//! | `GET /health` | 200 `{"status":"ok"}` once ready, 503 `{"status":"starting"}` before |
//! | anything else | 404 |
//!
//! Readiness is an [`AtomicBool`] the serve loop sets once every listener is bound and the
//! configuration is loaded; container health checks and load balancers use `/health`.
//!
//! Structure (as in tokio's mini-redis): an accept loop racing the shutdown future; each
//! connection is a hyper 1 HTTP/1 connection on its own task, watched by hyper-util's
//! `GracefulShutdown`. On shutdown the listener is closed at once, idle keep-alive connections
//! are closed, in-flight requests finish, and after [`SHUTDOWN_GRACE`] the remaining
//! connections are abandoned. Accept errors (e.g. out of file descriptors) are logged and
//! retried after a short pause rather than ending the listener.
use std::convert::Infallible;
use std::future::Future;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::Duration;

use bytes::Bytes;
use http::{header, Method, Request, Response, StatusCode};
use http_body_util::Full;
use hyper::body::Incoming;
use hyper::service::service_fn;
use hyper_util::rt::{TokioIo, TokioTimer};
use metrics_exporter_prometheus::PrometheusHandle;
use tokio::net::TcpListener;

use crate::telemetry;
pub mod ui;

/// Content type of the Prometheus text exposition format.
pub const METRICS_CONTENT_TYPE: &str = "text/plain; version=0.0.4";
/// How long shutdown waits for open admin connections.
pub const SHUTDOWN_GRACE: Duration = Duration::from_secs(5);
/// How long a client may take to send the request head.
pub const HEADER_READ_TIMEOUT: Duration = Duration::from_secs(10);

/// What the admin listener serves.
#[derive(Debug, Clone)]
pub struct AdminState {
    /// The metrics to render on `/metrics` (normally [`telemetry::metrics_handle`]).
    pub handle: PrometheusHandle,
    /// `/health` answers 200 once this is true, 503 before.
    pub ready: Arc<AtomicBool>,
}

fn respond(
    status: StatusCode,
    content_type: &str,
    body: impl Into<Bytes>,
) -> Response<Full<Bytes>> {
    let mut response = Response::new(Full::new(body.into()));
    *response.status_mut() = status;
    let headers = response.headers_mut();
    headers.insert(
        header::CONTENT_TYPE,
        header::HeaderValue::from_str(content_type).expect("static content type"),
    );
    headers.insert(
        header::CACHE_CONTROL,
        header::HeaderValue::from_static("no-store"),
    );
    response
}

/// Answers one admin request.
pub fn handle<B>(state: &AdminState, request: &Request<B>) -> Response<Full<Bytes>> {
    match (request.method(), request.uri().path()) {
        (&Method::GET, "/metrics") => {
            respond(StatusCode::OK, METRICS_CONTENT_TYPE, state.handle.render())
        }
        (&Method::GET, "/health") => {
            if state.ready.load(Ordering::Acquire) {
                respond(StatusCode::OK, "application/json", r#"{"status":"ok"}"#)
            } else {
                respond(
                    StatusCode::SERVICE_UNAVAILABLE,
                    "application/json",
                    r#"{"status":"starting"}"#,
                )
            }
        }
        _ => respond(
            StatusCode::NOT_FOUND,
            "text/plain; charset=utf-8",
            "not found\n",
        ),
    }
}

/// Serves the admin endpoints on `listener` until `shutdown` completes, then shuts down
/// gracefully (see the module documentation). Returns `Ok` after shutdown.
pub async fn run(
    listener: TcpListener,
    state: AdminState,
    shutdown: impl Future<Output = ()>,
) -> std::io::Result<()> {
    let graceful = hyper_util::server::graceful::GracefulShutdown::new();
    let state = Arc::new(state);
    tokio::pin!(shutdown);
    if let Ok(addr) = listener.local_addr() {
        tracing::info!(%addr, "admin listener up");
    }
    loop {
        let accepted = tokio::select! {
            accepted = listener.accept() => accepted,
            () = &mut shutdown => break,
        };
        let (stream, peer) = match accepted {
            Ok(pair) => pair,
            Err(e) => {
                // Per-connection errors (reset before accept) need no pause; resource
                // exhaustion (EMFILE, ENFILE, ENOBUFS) does, or the loop would spin.
                tracing::warn!(error = %e, "admin: accept failed");
                if !matches!(
                    e.kind(),
                    std::io::ErrorKind::ConnectionAborted
                        | std::io::ErrorKind::ConnectionReset
                        | std::io::ErrorKind::Interrupted
                ) {
                    tokio::time::sleep(Duration::from_millis(100)).await;
                }
                continue;
            }
        };
        telemetry::record_connection(telemetry::Listener::Admin);
        let state = state.clone();
        let service = service_fn(move |request: Request<Incoming>| {
            let response = handle(&state, &request);
            async move { Ok::<_, Infallible>(response) }
        });
        let connection = hyper::server::conn::http1::Builder::new()
            .timer(TokioTimer::new())
            .header_read_timeout(HEADER_READ_TIMEOUT)
            .serve_connection(TokioIo::new(stream), service);
        let connection = graceful.watch(connection);
        tokio::spawn(async move {
            if let Err(e) = connection.await {
                tracing::debug!(%peer, error = %e, "admin: connection error");
            }
        });
    }
    drop(listener);
    tracing::info!("admin listener shutting down");
    tokio::select! {
        () = graceful.shutdown() => {}
        () = tokio::time::sleep(SHUTDOWN_GRACE) => {
            tracing::warn!("admin: connections still open after {SHUTDOWN_GRACE:?}; abandoning them");
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    use tokio::net::TcpStream;

    async fn start() -> (
        std::net::SocketAddr,
        Arc<AtomicBool>,
        tokio::sync::oneshot::Sender<()>,
        tokio::task::JoinHandle<std::io::Result<()>>,
    ) {
        let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap();
        let ready = Arc::new(AtomicBool::new(false));
        let state = AdminState {
            handle: telemetry::metrics_handle(),
            ready: ready.clone(),
        };
        let (tx, rx) = tokio::sync::oneshot::channel::<()>();
        let task = tokio::spawn(run(listener, state, async move {
            let _ = rx.await;
        }));
        (addr, ready, tx, task)
    }

    /// One request on a fresh connection (`Connection: close`); returns (status, head, body).
    async fn request(
        addr: std::net::SocketAddr,
        method: &str,
        path: &str,
    ) -> (u16, String, String) {
        let mut tcp = TcpStream::connect(addr).await.unwrap();
        tcp.write_all(
            format!("{method} {path} HTTP/1.1\r\nHost: admin\r\nConnection: close\r\n\r\n")
                .as_bytes(),
        )
        .await
        .unwrap();
        let mut raw = String::new();
        tcp.read_to_string(&mut raw).await.unwrap();
        let (head, body) = raw.split_once("\r\n\r\n").unwrap();
        let status = head.split(' ').nth(1).unwrap().parse().unwrap();
        (status, head.to_ascii_lowercase(), body.to_string())
    }

    #[tokio::test]
    async fn health_metrics_and_404() {
        let (addr, ready, stop, task) = start().await;

        let (status, head, body) = request(addr, "GET", "/health").await;
        assert_eq!((status, body.as_str()), (503, r#"{"status":"starting"}"#));
        assert!(head.contains("content-type: application/json"));
        ready.store(true, Ordering::Release);
        let (status, _, body) = request(addr, "GET", "/health").await;
        assert_eq!((status, body.as_str()), (200, r#"{"status":"ok"}"#));

        telemetry::record_request(
            telemetry::Direction::Outbound,
            "admin_test_endpoint",
            403,
            Duration::from_millis(1),
        );
        let (status, head, body) = request(addr, "GET", "/metrics").await;
        assert_eq!(status, 200);
        assert!(
            head.contains("content-type: text/plain; version=0.0.4"),
            "{head}"
        );
        assert!(
            body.contains(
                r#"grenzwacht_requests_total{direction="outbound",endpoint="admin_test_endpoint",status="403"} 1"#
            ),
            "{body}"
        );
        // The admin connections themselves are counted.
        assert!(
            body.contains(r#"grenzwacht_connections_total{listener="admin"}"#),
            "{body}"
        );

        for (method, path) in [
            ("GET", "/"),
            ("GET", "/metrics/x"),
            ("POST", "/metrics"),
            ("DELETE", "/health"),
        ] {
            let (status, _, _) = request(addr, method, path).await;
            assert_eq!(status, 404, "{method} {path}");
        }

        stop.send(()).unwrap();
        tokio::time::timeout(Duration::from_secs(3), task)
            .await
            .expect("run must return after shutdown")
            .unwrap()
            .unwrap();
        assert!(
            TcpStream::connect(addr).await.is_err(),
            "listener must be closed"
        );
    }

    /// Health checks often speak HTTP/1.0 (the container HEALTHCHECK does): the server must
    /// answer and close the connection.
    #[tokio::test]
    async fn http10_health_check_is_answered_and_closed() {
        let (addr, ready, stop, task) = start().await;
        ready.store(true, Ordering::Release);
        let mut tcp = TcpStream::connect(addr).await.unwrap();
        tcp.write_all(b"GET /health HTTP/1.0\r\nHost: localhost\r\n\r\n")
            .await
            .unwrap();
        let mut raw = String::new();
        tokio::time::timeout(Duration::from_secs(3), tcp.read_to_string(&mut raw))
            .await
            .expect("HTTP/1.0 response must end with a close")
            .unwrap();
        assert!(raw.starts_with("HTTP/1.0 200 "), "{raw}");
        assert!(raw.ends_with(r#"{"status":"ok"}"#), "{raw}");
        stop.send(()).unwrap();
        task.await.unwrap().unwrap();
    }

    #[tokio::test]
    async fn shutdown_closes_idle_keepalive_connections() {
        let (addr, _ready, stop, task) = start().await;
        let mut tcp = TcpStream::connect(addr).await.unwrap();
        tcp.write_all(b"GET /health HTTP/1.1\r\nHost: admin\r\n\r\n")
            .await
            .unwrap();
        let mut buf = vec![0u8; 1024];
        let n = tcp.read(&mut buf).await.unwrap();
        assert!(String::from_utf8_lossy(&buf[..n]).starts_with("HTTP/1.1 503"));
        // The connection is kept alive and idle; shutdown must not wait for SHUTDOWN_GRACE.
        let started = std::time::Instant::now();
        stop.send(()).unwrap();
        tokio::time::timeout(Duration::from_secs(3), task)
            .await
            .expect("run must return promptly")
            .unwrap()
            .unwrap();
        assert!(started.elapsed() < SHUTDOWN_GRACE);
        // The server side of the idle connection was closed.
        let n = tokio::time::timeout(Duration::from_secs(3), tcp.read(&mut buf))
            .await
            .unwrap()
            .unwrap_or(0);
        assert_eq!(n, 0);
    }
}
