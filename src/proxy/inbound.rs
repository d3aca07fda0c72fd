//! Inbound listener: remote homeservers → the guard (TLS, certificate by SNI) → protected server.
use std::convert::Infallible;
use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use hyper::service::service_fn;
use hyper_util::rt::TokioIo;
use tokio::net::{TcpListener, TcpStream};
use tokio_rustls::TlsAcceptor;
use tracing::{debug, warn};

use super::exchange::{self, Entry};
use super::guard::{Guard, Shutdown};
use crate::telemetry as tm;

/// Time a peer gets to complete the TLS handshake.
pub const HANDSHAKE_TIMEOUT: Duration = Duration::from_secs(10);

pub async fn run(guard: Arc<Guard>, listener: TcpListener, mut shutdown: Shutdown) {
    let Some(cfg) = guard.inbound_tls.clone() else {
        warn!("inbound listener without TLS configuration: not serving");
        return;
    };
    let acceptor = TlsAcceptor::from(cfg);
    tracing::info!(addr = %listener.local_addr().map(|a| a.to_string()).unwrap_or_default(), "inbound listener");
    loop {
        let (tcp, addr) = tokio::select! {
            r = listener.accept() => match r {
                Ok(x) => x,
                Err(e) => { warn!("inbound accept failed: {e}"); tokio::time::sleep(Duration::from_millis(50)).await; continue; }
            },
            _ = shutdown.wait() => return,
        };
        tm::record_connection(tm::Listener::Inbound);
        let _ = tcp.set_nodelay(true);
        tokio::spawn(serve_conn(
            guard.clone(),
            acceptor.clone(),
            tcp,
            addr,
            shutdown.clone(),
        ));
    }
}

async fn serve_conn(
    guard: Arc<Guard>,
    acceptor: TlsAcceptor,
    tcp: TcpStream,
    addr: SocketAddr,
    mut shutdown: Shutdown,
) {
    let tls = match tokio::time::timeout(HANDSHAKE_TIMEOUT, acceptor.accept(tcp)).await {
        Ok(Ok(s)) => s,
        Ok(Err(e)) => {
            debug!(%addr, "inbound TLS handshake failed: {e}");
            return;
        }
        Err(_) => {
            debug!(%addr, "inbound TLS handshake timed out");
            return;
        }
    };
    let sni = tls.get_ref().1.server_name().map(str::to_string);
    let svc = service_fn(move |req: http::Request<hyper::body::Incoming>| {
        let guard = guard.clone();
        let sni = sni.clone();
        async move {
            let pq = req
                .uri()
                .path_and_query()
                .map(|p| p.as_str().to_string())
                .unwrap_or_else(|| "/".into());
            Ok::<_, Infallible>(
                exchange::handle(&guard, Entry::Inbound { sni }, addr, req, pq).await,
            )
        }
    });
    let conn = hyper::server::conn::http1::Builder::new()
        .timer(hyper_util::rt::TokioTimer::new())
        .header_read_timeout(Duration::from_secs(30))
        .serve_connection(TokioIo::new(tls), svc);
    tokio::pin!(conn);
    tokio::select! {
        r = conn.as_mut() => { if let Err(e) = r { debug!(%addr, "inbound connection ended: {e}"); } }
        _ = shutdown.wait() => {
            conn.as_mut().graceful_shutdown();
            let _ = conn.await;
        }
    }
}
