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

use super::admission::{ConnSlot, Side};
use super::exchange::{self, Entry};
use super::guard::{Guard, Shutdown};
use crate::telemetry as tm;

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
        let slot = match guard.admission().open(Side::Inbound, addr.ip()) {
            Ok(s) => s,
            Err(over) => {
                guard.admission().turn_away(
                    tm::Listener::Inbound,
                    tcp,
                    addr,
                    over,
                    Some(acceptor.clone()),
                );
                continue;
            }
        };
        let _ = tcp.set_nodelay(true);
        tokio::spawn(serve_conn(
            guard.clone(),
            acceptor.clone(),
            tcp,
            addr,
            shutdown.clone(),
            slot,
        ));
    }
}

async fn serve_conn(
    guard: Arc<Guard>,
    acceptor: TlsAcceptor,
    tcp: TcpStream,
    addr: SocketAddr,
    mut shutdown: Shutdown,
    _slot: ConnSlot,
) {
    let handshake = guard.admission().handshake_timeout();
    let tls = match tokio::time::timeout(handshake, acceptor.accept(tcp)).await {
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
    let http1 = guard.admission().http1();
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
    let conn = http1.serve_connection(TokioIo::new(tls), svc);
    tokio::pin!(conn);
    tokio::select! {
        r = conn.as_mut() => { if let Err(e) = r { debug!(%addr, "inbound connection ended: {e}"); } }
        _ = shutdown.wait() => {
            conn.as_mut().graceful_shutdown();
            let _ = conn.await;
        }
    }
}
