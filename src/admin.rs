//! The admin listener: `GET /metrics` (Prometheus text format), `GET /health`, and the
//! authenticated admin API under `/_grenzwacht/v1/` (held events, audit search, room labels).
//!
//! It binds to loopback by default (`[admin] listen = "127.0.0.1:9100"`); with `[admin.tls]`
//! it speaks HTTPS and can take client certificates (mutual TLS).
//!
//! | request | response |
//! |---|---|
//! | `GET /metrics` | 200, `text/plain; version=0.0.4`, the rendered [`PrometheusHandle`] (with `[admin] metrics_auth = true`: only for a principal, else 401) |
//! | `GET /health` | once ready: every dependency with its state, `{"status":"ok","checks":{"store":{"status":"ok"},…}}`; 200 when all are `ok` or some `degraded` (`"reason"` says why: an upstream stuck or failing, a rule reload that failed), 503 `failed` while a dependency the guard cannot work without fails (store, audit log, rule set, keys; then nothing crosses); 503 `{"status":"starting"}` before (always open) |
//! | `/_grenzwacht/v1/…` | the admin API, see [`api`] |
//! | `/ui`, `/ui/…` | [`Route::Ui`]: the review web UI ([`ui`]) |
//! | anything else | 404 |
//!
//! `/metrics` and `/health` are open by default because they carry no content (counters with
//! bounded labels, a readiness flag) and the orchestrator and Prometheus must reach them
//! without a reviewer's credentials; `metrics_auth` closes `/metrics` where even counts are
//! sensitive. Every API request must authenticate ([`auth`]): a bearer token or a client
//! certificate of a `[[admin.principal]]`.
//!
//! Readiness is an [`AtomicBool`] the serve loop sets once every listener is bound and the
//! configuration is loaded; container health checks and load balancers use `/health`.
//!
//! Structure (as in tokio's mini-redis): an accept loop racing the shutdown future; each
//! connection (after the TLS handshake, if any, bounded by [`HEADER_READ_TIMEOUT`]) is a hyper 1
//! HTTP/1 connection on its own task, watched by hyper-util's `GracefulShutdown`. On shutdown
//! the listener is closed at once, idle keep-alive connections are closed, in-flight requests
//! finish, and after [`SHUTDOWN_GRACE`] the remaining connections are abandoned. Accept errors
//! (e.g. out of file descriptors) are logged and retried after a short pause rather than ending
//! the listener.
use std::convert::Infallible;
use std::future::Future;
use std::path::PathBuf;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::Duration;

use bytes::Bytes;
use http::{header, HeaderMap, Method, Request, Response, StatusCode};
use http_body_util::Full;
use hyper::body::Incoming;
use hyper::service::service_fn;
use hyper_util::rt::{TokioIo, TokioTimer};
use metrics_exporter_prometheus::PrometheusHandle;
use tokio::net::TcpListener;

use crate::review::{ActionJournal, AuditSearch, Principal, ReviewQueue};
use crate::telemetry;

pub mod api;
pub mod auth;
pub mod client;
pub mod tls;
pub mod ui;

pub use api::{RoomLabelsView, Unwired};
pub use auth::{AdminAuth, AuthError};
pub use tls::CertIdentity;

/// Content type of the Prometheus text exposition format.
pub const METRICS_CONTENT_TYPE: &str = "text/plain; version=0.0.4";
/// How long shutdown waits for open admin connections.
pub const SHUTDOWN_GRACE: Duration = Duration::from_secs(5);
/// How long a client may take to send the request head (and to finish a TLS handshake).
pub const HEADER_READ_TIMEOUT: Duration = Duration::from_secs(10);
/// Path prefix of the admin API.
pub const API_PREFIX: &str = "/_grenzwacht/v1/";
/// Path of the review web UI ([`Route::Ui`]); everything below it belongs to the UI.
pub const UI_PREFIX: &str = "/ui";

/// Why the admin listener could not be built from its configuration. Never carries a token.
#[derive(Debug, thiserror::Error)]
pub enum AdminError {
    #[error("{path}: {source}")]
    Io {
        path: PathBuf,
        source: std::io::Error,
    },
    #[error("TLS: {0}")]
    Tls(String),
    #[error("principal `{name}`: {reason}")]
    Principal { name: String, reason: String },
}

/// What `[admin]` configures: the principals, TLS, whether `/metrics` needs a principal.
#[derive(Debug, Clone)]
pub struct AdminAccess {
    pub auth: Arc<AdminAuth>,
    /// `[admin.tls]`: the listener speaks HTTPS with this config.
    pub tls: Option<Arc<rustls::ServerConfig>>,
    pub metrics_auth: bool,
}

impl AdminAccess {
    /// Reads every token, clearance, certificate and key `[admin]` names; with `spifs` (the
    /// label layer's SPIFs) every principal's clearance must resolve against them.
    pub fn from_config(
        cfg: &crate::config::AdminConfig,
        spifs: Option<&crate::spif::SpifSet>,
    ) -> Result<AdminAccess, AdminError> {
        Ok(AdminAccess {
            auth: Arc::new(AdminAuth::from_config(&cfg.principal, spifs)?),
            tls: cfg.tls.as_ref().map(tls::server_config).transpose()?,
            metrics_auth: cfg.metrics_auth,
        })
    }

    /// No principals (every API request gets 401), plain HTTP, open `/metrics`.
    pub fn none() -> AdminAccess {
        AdminAccess {
            auth: Arc::new(
                AdminAuth::from_config(&[], None).expect("no principals: nothing to read"),
            ),
            tls: None,
            metrics_auth: false,
        }
    }
}

/// What the admin listener serves.
#[derive(Clone)]
pub struct AdminState {
    /// The metrics to render on `/metrics` (normally [`telemetry::metrics_handle`]).
    pub handle: PrometheusHandle,
    /// `/health` answers 200 once this is true, 503 before.
    pub ready: Arc<AtomicBool>,
    /// Principals and TLS (`[admin]`).
    pub access: AdminAccess,
    /// The held events ([`Unwired`] until a hold queue is passed: 503).
    pub queue: Arc<dyn ReviewQueue>,
    /// The audit log search ([`Unwired`]: 503).
    pub audit: Arc<dyn AuditSearch>,
    /// Where every admin action is recorded before it takes effect ([`Unwired`]: every API
    /// request is refused with 503).
    pub journal: Arc<dyn ActionJournal>,
    /// The guard's room labels ([`Unwired`]: 503).
    pub room_labels: Arc<dyn RoomLabelsView>,
    /// The review web UI under `/ui`. `None`: [`run`] builds it from the parts above (the
    /// principals of `access`, fresh sessions, `Secure` cookies with TLS).
    pub ui: Option<Arc<ui::UiCtx>>,
    /// Dependencies `/health` checks once ready, each reported with its [`Health`].
    pub checks: Vec<HealthCheck>,
}

/// The state of one dependency. Reasons carry no secrets, no content, no addresses.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Health {
    /// Working.
    Ok,
    /// The guard works, but something needs an operator (an upstream stuck or failing).
    Degraded(String),
    /// The guard cannot do its job while this fails: nothing that needs it crosses.
    Failed(String),
}

impl Health {
    fn label(&self) -> &'static str {
        match self {
            Health::Ok => "ok",
            Health::Degraded(_) => "degraded",
            Health::Failed(_) => "failed",
        }
    }

    /// 0 ok, 1 degraded, 2 failed (the `grenzwacht_health` gauge).
    pub fn level(&self) -> u8 {
        match self {
            Health::Ok => 0,
            Health::Degraded(_) => 1,
            Health::Failed(_) => 2,
        }
    }
}

/// One dependency `/health` reports. A check may block (the store probe writes to SQLite): it
/// runs on the blocking pool and counts as failed if it has not answered in
/// [`HEALTH_CHECK_TIMEOUT`].
#[derive(Clone)]
pub struct HealthCheck {
    pub name: &'static str,
    pub check: Arc<dyn Fn() -> Health + Send + Sync>,
}

impl HealthCheck {
    /// A dependency the guard cannot work without: `Err` is [`Health::Failed`].
    pub fn required(
        name: &'static str,
        f: impl Fn() -> Result<(), String> + Send + Sync + 'static,
    ) -> Self {
        Self::of_result(name, f, Health::Failed)
    }

    /// A dependency whose failure degrades the guard: `Err` is [`Health::Degraded`].
    pub fn degrading(
        name: &'static str,
        f: impl Fn() -> Result<(), String> + Send + Sync + 'static,
    ) -> Self {
        Self::of_result(name, f, Health::Degraded)
    }

    fn of_result(
        name: &'static str,
        f: impl Fn() -> Result<(), String> + Send + Sync + 'static,
        bad: fn(String) -> Health,
    ) -> Self {
        HealthCheck {
            name,
            check: Arc::new(move || f().map_or_else(bad, |()| Health::Ok)),
        }
    }
}

/// How long one health check may take before it counts as failed.
pub const HEALTH_CHECK_TIMEOUT: Duration = Duration::from_secs(2);

/// Runs every check (concurrently, on the blocking pool, each bounded by
/// [`HEALTH_CHECK_TIMEOUT`]) and sets the `grenzwacht_health{check}` gauge.
pub async fn run_checks(checks: &[HealthCheck]) -> Vec<(&'static str, Health)> {
    let runs: Vec<_> = checks
        .iter()
        .map(|c| {
            let f = c.check.clone();
            (c.name, tokio::task::spawn_blocking(move || f()))
        })
        .collect();
    let mut out = Vec::with_capacity(runs.len());
    for (name, task) in runs {
        let h = match tokio::time::timeout(HEALTH_CHECK_TIMEOUT, task).await {
            Ok(Ok(h)) => h,
            Ok(Err(_)) => Health::Failed("the check panicked".into()),
            Err(_) => Health::Failed(format!(
                "the check did not answer within {} s",
                HEALTH_CHECK_TIMEOUT.as_secs()
            )),
        };
        metrics::gauge!("grenzwacht_health", "check" => name).set(f64::from(h.level()));
        out.push((name, h));
    }
    out
}

/// `/health`: 503 `starting` before ready; then every check with its state: 200 while none
/// failed (`ok` or `degraded`), 503 `failed` otherwise.
async fn health(state: &AdminState) -> Response<Full<Bytes>> {
    if !state.ready.load(Ordering::Acquire) {
        return respond(
            StatusCode::SERVICE_UNAVAILABLE,
            "application/json",
            r#"{"status":"starting"}"#,
        );
    }
    let results = run_checks(&state.checks).await;
    let worst = results
        .iter()
        .map(|(_, h)| h)
        .max_by_key(|h| h.level())
        .cloned()
        .unwrap_or(Health::Ok);
    let checks: serde_json::Map<String, serde_json::Value> = results
        .into_iter()
        .map(|(name, h)| {
            let v = match &h {
                Health::Ok => serde_json::json!({"status": "ok"}),
                Health::Degraded(why) | Health::Failed(why) => {
                    serde_json::json!({"status": h.label(), "reason": why})
                }
            };
            (name.to_string(), v)
        })
        .collect();
    let status = if matches!(worst, Health::Failed(_)) {
        StatusCode::SERVICE_UNAVAILABLE
    } else {
        StatusCode::OK
    };
    let body = serde_json::json!({"status": worst.label(), "checks": checks});
    respond(status, "application/json", body.to_string())
}

impl std::fmt::Debug for AdminState {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("AdminState")
            .field("ready", &self.ready)
            .field("access", &self.access)
            .finish_non_exhaustive()
    }
}

impl AdminState {
    /// `/metrics` and `/health` over `access`; queue, audit search, journal and room labels
    /// are [`Unwired`] (set the fields to the real ones).
    pub fn new(handle: PrometheusHandle, ready: Arc<AtomicBool>, access: AdminAccess) -> Self {
        let unwired = Arc::new(Unwired);
        AdminState {
            handle,
            ready,
            access,
            queue: unwired.clone(),
            audit: unwired.clone(),
            journal: unwired.clone(),
            room_labels: unwired,
            ui: None,
            checks: Vec::new(),
        }
    }

    /// The review web UI over this state's queue, audit search, journal and principals.
    pub fn ui_context(&self) -> ui::UiCtx {
        ui::UiCtx {
            queue: self.queue.clone(),
            audit: self.audit.clone(),
            auth: self.access.auth.clone(),
            journal: self.journal.clone(),
            sessions: ui::Sessions::default(),
            secure_cookies: self.access.tls.is_some(),
        }
    }

    /// The authenticated principal of a request (client certificate and/or bearer token):
    /// what the review UI and the API act for.
    pub fn identify(
        &self,
        headers: &HeaderMap,
        cert: Option<&CertIdentity>,
    ) -> Result<Principal, AuthError> {
        self.access.auth.identify(headers, cert)
    }
}

pub(crate) fn respond(
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

/// Where a request goes.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Route {
    Metrics,
    Health,
    /// Under [`API_PREFIX`].
    Api,
    /// Under [`UI_PREFIX`]: the review web UI (not mounted: 404).
    Ui,
    NotFound,
}

impl Route {
    pub fn of(method: &Method, path: &str) -> Route {
        match (method, path) {
            (&Method::GET, "/metrics") => Route::Metrics,
            (&Method::GET, "/health") => Route::Health,
            _ if path.starts_with(API_PREFIX) => Route::Api,
            _ if path == UI_PREFIX || path.starts_with(&format!("{UI_PREFIX}/")) => Route::Ui,
            _ => Route::NotFound,
        }
    }
}

fn not_found() -> Response<Full<Bytes>> {
    respond(
        StatusCode::NOT_FOUND,
        "text/plain; charset=utf-8",
        "not found\n",
    )
}

/// Answers one admin request; `cert` is the verified client certificate of the connection.
pub async fn handle<B>(
    state: &AdminState,
    request: Request<B>,
    cert: Option<&CertIdentity>,
) -> Response<Full<Bytes>>
where
    B: http_body::Body<Data = Bytes>,
    B::Error: Into<Box<dyn std::error::Error + Send + Sync>>,
{
    match Route::of(request.method(), request.uri().path()) {
        Route::Metrics => {
            if state.access.metrics_auth && state.identify(request.headers(), cert).is_err() {
                return api::unauthorized();
            }
            respond(StatusCode::OK, METRICS_CONTENT_TYPE, state.handle.render())
        }
        Route::Health => health(state).await,
        Route::Api => api::handle(state, request, cert).await,
        Route::Ui => {
            let Some(ctx) = &state.ui else {
                return not_found();
            };
            match ui_request(state, request, cert).await {
                Ok((tls_principal, request)) => ui::handle(ctx, tls_principal, request),
                Err(response) => response,
            }
        }
        Route::NotFound => not_found(),
    }
}

/// What the review web UI gets of a request: the principal its client certificate maps to
/// (`None` without a certificate or for one that maps to no principal) and the request with
/// its body read (at most [`ui::MAX_FORM_BYTES`] bytes, else 413).
pub async fn ui_request<B>(
    state: &AdminState,
    request: Request<B>,
    cert: Option<&CertIdentity>,
) -> Result<(Option<Principal>, Request<Bytes>), Response<Full<Bytes>>>
where
    B: http_body::Body<Data = Bytes>,
    B::Error: Into<Box<dyn std::error::Error + Send + Sync>>,
{
    let tls_principal = cert.and_then(|c| state.access.auth.certificate(c));
    let (parts, body) = request.into_parts();
    let body = api::read_body_limited(body, ui::MAX_FORM_BYTES).await?;
    Ok((tls_principal, Request::from_parts(parts, body)))
}

/// The connection's client certificate, reduced to its identity. A certificate that cannot
/// be read maps to no principal (an empty subject matches none).
fn client_identity(conn: &rustls::ServerConnection) -> Option<CertIdentity> {
    let leaf = conn.peer_certificates()?.first()?;
    Some(tls::identity(leaf).unwrap_or_else(|e| {
        tracing::warn!(error = %e, "admin: unreadable client certificate subject");
        CertIdentity {
            subject: String::new(),
            cn: None,
        }
    }))
}

/// Serves the admin endpoints on `listener` (HTTPS if `state.access.tls` is set) until
/// `shutdown` completes, then shuts down gracefully (see the module documentation). Returns
/// `Ok` after shutdown.
pub async fn run(
    listener: TcpListener,
    state: AdminState,
    shutdown: impl Future<Output = ()>,
) -> std::io::Result<()> {
    let graceful = hyper_util::server::graceful::GracefulShutdown::new();
    let mut state = state;
    if state.ui.is_none() {
        state.ui = Some(Arc::new(state.ui_context()));
    }
    let acceptor = state
        .access
        .tls
        .clone()
        .map(tokio_rustls::TlsAcceptor::from);
    let state = Arc::new(state);
    tokio::pin!(shutdown);
    if let Ok(addr) = listener.local_addr() {
        tracing::info!(%addr, tls = acceptor.is_some(), "admin listener up");
        if acceptor.is_none() && !addr.ip().is_loopback() && !state.access.auth.is_empty() {
            tracing::warn!(%addr, "admin listener: bearer tokens travel in clear text on a non-loopback address; configure [admin.tls]");
        }
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
        match acceptor.clone() {
            None => {
                let service = service_fn(move |request: Request<Incoming>| {
                    let state = state.clone();
                    async move { Ok::<_, Infallible>(handle(&state, request, None).await) }
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
            Some(acceptor) => {
                let watcher = graceful.watcher();
                tokio::spawn(async move {
                    let tls =
                        match tokio::time::timeout(HEADER_READ_TIMEOUT, acceptor.accept(stream))
                            .await
                        {
                            Ok(Ok(tls)) => tls,
                            Ok(Err(e)) => {
                                tracing::debug!(%peer, error = %e, "admin: TLS handshake failed");
                                return;
                            }
                            Err(_) => {
                                tracing::debug!(%peer, "admin: TLS handshake timed out");
                                return;
                            }
                        };
                    let cert = client_identity(tls.get_ref().1).map(Arc::new);
                    let service = service_fn(move |request: Request<Incoming>| {
                        let state = state.clone();
                        let cert = cert.clone();
                        async move {
                            Ok::<_, Infallible>(handle(&state, request, cert.as_deref()).await)
                        }
                    });
                    let connection = hyper::server::conn::http1::Builder::new()
                        .timer(TokioTimer::new())
                        .header_read_timeout(HEADER_READ_TIMEOUT)
                        .serve_connection(TokioIo::new(tls), service);
                    if let Err(e) = watcher.watch(connection).await {
                        tracing::debug!(%peer, error = %e, "admin: connection error");
                    }
                });
            }
        }
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
        let state = AdminState::new(
            telemetry::metrics_handle(),
            ready.clone(),
            AdminAccess::none(),
        );
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

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn health_checks_report_each_state_and_a_hung_or_panicking_check_fails() {
        let checks = vec![
            HealthCheck::required("a", || Ok(())),
            HealthCheck::degrading("b", || Err("slow upstream".into())),
            HealthCheck::required("c", || Err("no store".into())),
            HealthCheck {
                name: "d",
                check: Arc::new(|| panic!("check bug")),
            },
            HealthCheck {
                name: "e",
                check: Arc::new(|| {
                    std::thread::sleep(HEALTH_CHECK_TIMEOUT + Duration::from_millis(500));
                    Health::Ok
                }),
            },
        ];
        let got = run_checks(&checks).await;
        assert_eq!(got[0], ("a", Health::Ok));
        assert_eq!(got[1], ("b", Health::Degraded("slow upstream".into())));
        assert_eq!(got[2], ("c", Health::Failed("no store".into())));
        assert_eq!(got[3], ("d", Health::Failed("the check panicked".into())));
        assert!(matches!(&got[4], ("e", Health::Failed(why)) if why.contains("did not answer")));
    }

    #[tokio::test]
    async fn health_metrics_and_404() {
        let (addr, ready, stop, task) = start().await;

        let (status, head, body) = request(addr, "GET", "/health").await;
        assert_eq!((status, body.as_str()), (503, r#"{"status":"starting"}"#));
        assert!(head.contains("content-type: application/json"));
        ready.store(true, Ordering::Release);
        let (status, _, body) = request(addr, "GET", "/health").await;
        assert_eq!(
            (status, body.as_str()),
            (200, r#"{"status":"ok","checks":{}}"#)
        );

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
        assert!(raw.ends_with(r#"{"status":"ok","checks":{}}"#), "{raw}");
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
