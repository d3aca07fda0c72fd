//! Outbound listeners: the protected homeserver → the guard → remote homeservers.
//!
//! Two ways in:
//! - **Synapse's outbound federation proxy protocol** (`proxy_listen`): plain HTTP requests in
//!   absolute form `matrix-federation://<destination>/<path>`, authenticated with
//!   `Proxy-Authorization: Bearer <secret>`; the X-Matrix header is already signed.
//! - **HTTP CONNECT** (`connect_listen`, the homeserver's `https_proxy`): the guard answers the
//!   CONNECT, terminates the tunnelled TLS with a leaf for the target minted by its interception
//!   CA and handles the HTTP requests inside like any other exchange.
//!
//! Both are restricted to `allowed_clients`; if a secret is configured, both require it.
use std::convert::Infallible;
use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use base64::Engine;
use bytes::Bytes;
use http::{Method, Response, StatusCode};
use http_body_util::Full;
use hyper::service::service_fn;
use hyper_util::rt::TokioIo;
use subtle::ConstantTimeEq;
use tokio::net::{TcpListener, TcpStream};
use tokio_rustls::TlsAcceptor;
use tracing::{debug, info, warn};

use super::admission::{ConnSlot, Side};
use super::exchange::{self, refusal_response, Entry, GuardResponse};
use super::guard::{Guard, Shutdown};
use super::tls;
use crate::policy::{Refusal, RefusalReason};
use crate::telemetry as tm;

/// Scheme Synapse uses for proxied federation requests.
pub const MATRIX_FEDERATION_SCHEME: &str = "matrix-federation";

fn count_refusal(r: &Refusal, endpoint: &'static str) {
    tm::record_refusal(tm::Direction::Outbound, r.reason);
    tm::record_request(
        tm::Direction::Outbound,
        endpoint,
        r.status.as_u16(),
        std::time::Duration::ZERO,
    );
    info!(
        status = r.status.as_u16(),
        reason = r.reason.as_str(),
        "outbound refused: {}",
        r.message
    );
}

/// Checks `Proxy-Authorization` against the configured secret (Bearer, or Basic with the secret
/// as password). No secret configured → only the address allow-list applies.
fn authorized(guard: &Guard, headers: &http::HeaderMap) -> bool {
    let Some(secret) = guard.outbound.as_ref().and_then(|o| o.secret.as_deref()) else {
        return true;
    };
    let Some(v) = headers
        .get(http::header::PROXY_AUTHORIZATION)
        .and_then(|v| v.to_str().ok())
    else {
        return false;
    };
    let (scheme, cred) = v.trim().split_once(' ').unwrap_or((v, ""));
    let presented: Vec<u8> = if scheme.eq_ignore_ascii_case("bearer") {
        cred.trim().as_bytes().to_vec()
    } else if scheme.eq_ignore_ascii_case("basic") {
        match base64::engine::general_purpose::STANDARD.decode(cred.trim()) {
            Ok(d) => match d.iter().position(|&b| b == b':') {
                Some(i) => d[i + 1..].to_vec(),
                None => return false,
            },
            Err(_) => return false,
        }
    } else {
        return false;
    };
    presented.ct_eq(secret.as_bytes()).into()
}

async fn accept_loop<F, Fut>(
    tcp_listener: TcpListener,
    listener: tm::Listener,
    guard: Arc<Guard>,
    mut shutdown: Shutdown,
    conn: F,
) where
    F: Fn(Arc<Guard>, TcpStream, SocketAddr, Shutdown, ConnSlot) -> Fut,
    Fut: std::future::Future<Output = ()> + Send + 'static,
{
    let name = listener.as_str();
    info!(addr = %tcp_listener.local_addr().map(|a| a.to_string()).unwrap_or_default(), "{name} listener");
    loop {
        let (tcp, addr) = tokio::select! {
            r = tcp_listener.accept() => match r {
                Ok(x) => x,
                Err(e) => { warn!("{name} accept failed: {e}"); tokio::time::sleep(Duration::from_millis(50)).await; continue; }
            },
            _ = shutdown.wait() => return,
        };
        tm::record_connection(listener);
        if !guard.client_allowed(&addr) {
            // Not an allowed client: close without a word (no proxy for strangers).
            let r = Refusal::forbidden(
                RefusalReason::ClientDenied,
                format!("client {addr} is not allowed"),
            );
            count_refusal(&r, "unknown");
            drop(tcp);
            continue;
        }
        let slot = match guard.admission().open(Side::Outbound, addr.ip()) {
            Ok(s) => s,
            Err(over) => {
                guard.admission().turn_away(listener, tcp, addr, over, None);
                continue;
            }
        };
        let _ = tcp.set_nodelay(true);
        tokio::spawn(conn(guard.clone(), tcp, addr, shutdown.clone(), slot));
    }
}

// ---------------------------------------------------------------------------------------------
// Synapse outbound federation proxy protocol

pub async fn run_proxy(guard: Arc<Guard>, listener: TcpListener, shutdown: Shutdown) {
    accept_loop(
        listener,
        tm::Listener::Proxy,
        guard,
        shutdown,
        serve_proxy_conn,
    )
    .await
}

async fn serve_proxy_conn(
    guard: Arc<Guard>,
    tcp: TcpStream,
    addr: SocketAddr,
    mut shutdown: Shutdown,
    _slot: ConnSlot,
) {
    let http1 = guard.admission().http1();
    let svc = service_fn(move |req: http::Request<hyper::body::Incoming>| {
        let guard = guard.clone();
        async move { Ok::<_, Infallible>(proxy_request(&guard, addr, req).await) }
    });
    let conn = http1.serve_connection(TokioIo::new(tcp), svc);
    tokio::pin!(conn);
    tokio::select! {
        r = conn.as_mut() => { if let Err(e) = r { debug!(%addr, "proxy connection ended: {e}"); } }
        _ = shutdown.wait() => { conn.as_mut().graceful_shutdown(); let _ = conn.await; }
    }
}

async fn proxy_request(
    guard: &Guard,
    addr: SocketAddr,
    req: http::Request<hyper::body::Incoming>,
) -> GuardResponse {
    if !authorized(guard, req.headers()) {
        let r = Refusal::new(
            StatusCode::UNAUTHORIZED,
            "M_UNAUTHORIZED",
            RefusalReason::ClientDenied,
            "missing or wrong proxy credentials",
        );
        count_refusal(&r, "unknown");
        return refusal_response(&r);
    }
    let uri = req.uri().clone();
    let (Some(MATRIX_FEDERATION_SCHEME), Some(authority)) = (uri.scheme_str(), uri.authority())
    else {
        let r = Refusal::new(
            StatusCode::BAD_REQUEST,
            "M_INVALID_PARAM",
            RefusalReason::UnknownEndpoint,
            "expected a matrix-federation:// request",
        );
        count_refusal(&r, "unknown");
        return refusal_response(&r);
    };
    let destination = authority.as_str().to_string();
    if let Err(r) = guard.static_policy().server_allowed(&destination) {
        count_refusal(&r, "unknown");
        return refusal_response(&r);
    }
    let pq = uri
        .path_and_query()
        .map(|p| p.as_str().to_string())
        .unwrap_or_else(|| "/".into());
    exchange::handle(guard, Entry::Outbound { destination }, addr, req, pq).await
}

// ---------------------------------------------------------------------------------------------
// HTTP CONNECT with TLS interception

pub async fn run_connect(guard: Arc<Guard>, listener: TcpListener, shutdown: Shutdown) {
    accept_loop(
        listener,
        tm::Listener::Connect,
        guard,
        shutdown,
        serve_connect_conn,
    )
    .await
}

async fn serve_connect_conn(
    guard: Arc<Guard>,
    tcp: TcpStream,
    addr: SocketAddr,
    mut shutdown: Shutdown,
    slot: ConnSlot,
) {
    let sd = shutdown.clone();
    let http1 = guard.admission().http1();
    let svc = service_fn(move |req: http::Request<hyper::body::Incoming>| {
        let guard = guard.clone();
        let sd = sd.clone();
        let slot = slot.clone();
        async move { Ok::<_, Infallible>(connect_request(guard, addr, req, sd, slot)) }
    });
    let conn = http1
        .serve_connection(TokioIo::new(tcp), svc)
        .with_upgrades();
    tokio::pin!(conn);
    tokio::select! {
        r = conn.as_mut() => { if let Err(e) = r { debug!(%addr, "connect connection ended: {e}"); } }
        _ = shutdown.wait() => { conn.as_mut().graceful_shutdown(); let _ = conn.await; }
    }
}

fn connect_request(
    guard: Arc<Guard>,
    addr: SocketAddr,
    req: http::Request<hyper::body::Incoming>,
    shutdown: Shutdown,
    slot: ConnSlot,
) -> GuardResponse {
    if req.method() != Method::CONNECT {
        let r = Refusal::new(
            StatusCode::METHOD_NOT_ALLOWED,
            "M_UNRECOGNIZED",
            RefusalReason::UnknownEndpoint,
            "only CONNECT is served here",
        );
        count_refusal(&r, "unknown");
        return refusal_response(&r);
    }
    if !authorized(&guard, req.headers()) {
        let r = Refusal::new(
            StatusCode::PROXY_AUTHENTICATION_REQUIRED,
            "M_UNAUTHORIZED",
            RefusalReason::ClientDenied,
            "missing or wrong proxy credentials",
        );
        count_refusal(&r, "connect");
        return refusal_response(&r);
    }
    let Some(authority) = req.uri().authority().map(|a| a.as_str().to_string()) else {
        let r = Refusal::new(
            StatusCode::BAD_REQUEST,
            "M_UNRECOGNIZED",
            RefusalReason::UnknownEndpoint,
            "CONNECT without host:port",
        );
        count_refusal(&r, "connect");
        return refusal_response(&r);
    };
    if let Err(r) = guard.static_policy().server_allowed(&authority) {
        count_refusal(&r, "connect");
        return refusal_response(&r);
    }
    let Some(ica) = guard.outbound.as_ref().and_then(|o| o.ica.clone()) else {
        let r = Refusal::new(
            StatusCode::INTERNAL_SERVER_ERROR,
            "M_UNKNOWN",
            RefusalReason::Internal,
            "no interception CA configured",
        );
        count_refusal(&r, "connect");
        return refusal_response(&r);
    };
    let host = tls::host_part(&authority).to_string();
    tokio::spawn(async move {
        // The tunnel keeps the connection's slot.
        let _slot = slot;
        let handshake = guard.admission().handshake_timeout();
        let upgraded = match tokio::time::timeout(handshake, hyper::upgrade::on(req)).await {
            Ok(Ok(u)) => u,
            Ok(Err(e)) => {
                debug!(%addr, "CONNECT upgrade failed: {e}");
                return;
            }
            Err(_) => return,
        };
        let resolver = match ica.resolver_for(&host) {
            Ok(r) => r,
            Err(e) => {
                warn!(%addr, target = %host, "cannot mint interception certificate: {e}");
                return;
            }
        };
        let acceptor = TlsAcceptor::from(tls::server_config(resolver));
        let tls = match tokio::time::timeout(handshake, acceptor.accept(TokioIo::new(upgraded)))
            .await
        {
            Ok(Ok(s)) => s,
            Ok(Err(e)) => {
                warn!(%addr, target = %host, "TLS inside CONNECT failed (does the homeserver trust the interception CA?): {e}");
                return;
            }
            Err(_) => return,
        };
        let _tunnel = tm::tunnel_opened();
        let http1 = guard.admission().http1();
        let svc = service_fn(move |req: http::Request<hyper::body::Incoming>| {
            let guard = guard.clone();
            let destination = authority.clone();
            async move {
                let pq = req
                    .uri()
                    .path_and_query()
                    .map(|p| p.as_str().to_string())
                    .unwrap_or_else(|| "/".into());
                // Inside the tunnel the Host header names the server; X-Matrix (if any) wins.
                let destination = req
                    .headers()
                    .get(http::header::HOST)
                    .and_then(|v| v.to_str().ok())
                    .map(str::to_string)
                    .unwrap_or(destination);
                if let Err(r) = guard.static_policy().server_allowed(&destination) {
                    count_refusal(&r, "unknown");
                    return Ok::<_, Infallible>(refusal_response(&r));
                }
                Ok::<_, Infallible>(
                    exchange::handle(&guard, Entry::Outbound { destination }, addr, req, pq).await,
                )
            }
        });
        let conn = http1.serve_connection(TokioIo::new(tls), svc);
        tokio::pin!(conn);
        let mut shutdown = shutdown;
        tokio::select! {
            r = conn.as_mut() => { if let Err(e) = r { debug!(%addr, "tunnel ended: {e}"); } }
            _ = shutdown.wait() => { conn.as_mut().graceful_shutdown(); let _ = conn.await; }
        }
    });
    let mut resp = Response::new(Full::new(Bytes::new()));
    *resp.status_mut() = StatusCode::OK;
    resp
}
