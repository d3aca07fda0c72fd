//! The TI profile's client-server reverse proxy: one listener per `[[ti.homeserver]]
//! client_listen`, in front of that homeserver's client API (`client_upstream`).
//!
//! * **Listener.** HTTP/1.1 and HTTP/2 (ALPN `h2`, `http/1.1` with TLS from
//!   `client_tls_cert`/`client_tls_key`; without TLS both by preface). Its connections count
//!   in the inbound listener's table of `[admission]` (total and per address; over a cap one
//!   503 and close), the TLS handshake and request heads have the admission timeouts, HTTP/2
//!   connections at most [`MAX_STREAMS`] streams at once.
//! * **Forwarding.** Method, path and query unchanged to `client_upstream` (hyper-util's pooled
//!   client); hop-by-hop headers are dropped both ways; `X-Forwarded-For` / `-Proto` are set
//!   to the peer (what a client sent under those names and `Forwarded` / `X-Real-IP` is
//!   dropped). Bodies the guard does not inspect (media uploads, sync, everything else)
//!   stream both ways; a request body that sends nothing for `[admission] body_timeout_ms` is
//!   cut off. The homeserver's answer has [`UPSTREAM_HEAD_TIMEOUT`] to begin (long-polling
//!   `/sync`); unreachable → 502, too slow → 504, never with the upstream's error text.
//! * **Inspected requests** ([`route`], [`inspect`]): `createRoom`, `/rooms/{roomId}/invite`,
//!   `m.room.member` state with `membership: invite`. Their body is read whole like a
//!   federation body (`admission::read_body`: declared size, budget, body deadline) and at most
//!   [`MAX_INSPECTED_BODY`] (413 above); not JSON → 400 `M_NOT_JSON`, nothing forwarded. A
//!   `createRoom` with more than one invitee (also counting `m.room.member` invites in
//!   `initial_state`) and third-party invites are refused; every invitee's domain must pass
//!   `Ti::check_server`; an invitee of a protected server must pass `Ti::check_invite` with the
//!   requesting user as inviter — who that is, the homeserver says (`GET
//!   /_matrix/client/v3/account/whoami` with the request's own access token and, for an
//!   application service, its `user_id` parameter; remembered for [`WHOAMI_CACHE`] by the
//!   SHA-256 of both). Public rooms (`visibility: public`,
//!   `preset: public_chat`, or a public join rule in `initial_state`) are created with
//!   `creation_content["m.federate"] = false`. What is forwarded is the inspected JSON,
//!   serialised again.
//! * **Media** downloads and thumbnails (client `v1` and legacy `/_matrix/media`) need
//!   `Ti::check_server` of the `{serverName}` path segment; `publicRooms` with a `server`
//!   query parameter (another server's room directory) that of the server.
//! * **Room directory**: publishing a room (`PUT /directory/list/room/{roomId}` with
//!   `visibility: public`) needs a room created with `m.federate: false` — the guard reads the
//!   room's create event with the request's own access token; a room that federates, or one
//!   whose create event cannot be read, is refused (403).
//! * Not served here (404 `M_UNRECOGNIZED`): `/_matrix/federation/…` and `/_matrix/key/…`
//!   (a homeserver listener that also serves federation must not be reached around the
//!   federation listeners' checks), `/_synapse/admin/…` (its room membership API joins users
//!   without an invite), `/_synapse/replication/…`. A path segment that does not
//!   percent-decode → 400.
//! * **Refusals** of the TI profile are 403 `M_FORBIDDEN` through
//!   `ti_gate::record_client_refusal` (metric `side="client"`, log line, audit record).
use std::collections::HashMap;
use std::convert::Infallible;
use std::future::Future;
use std::net::SocketAddr;
use std::pin::Pin;
use std::sync::{Arc, Mutex};
use std::task::{Context, Poll};
use std::time::{Duration, Instant};

use bytes::Bytes;
use http::{HeaderValue, Request, Response, StatusCode, Uri};
use http_body::{Body, Frame, SizeHint};
use http_body_util::combinators::BoxBody;
use http_body_util::{BodyExt, Full, Limited};
use hyper::body::Incoming;
use hyper::service::service_fn;
use hyper_util::client::legacy::Client;
use hyper_util::rt::{TokioExecutor, TokioIo, TokioTimer};
use sha2::{Digest, Sha256};
use tokio::net::{TcpListener, TcpStream};
use tokio_rustls::TlsAcceptor;
use tracing::{debug, error, info, warn};

use super::admission::{ConnSlot, PeerAddr, Side};
use super::guard::{Guard, Shutdown};
use super::upstream::{strip_hop_by_hop, MaybeTls};
use crate::config::ti::TiHomeserver;
use crate::policy::{Direction, Refusal, RefusalReason};
use crate::telemetry as tm;
use crate::ti::{Ti, TiDenial};

pub mod inspect;
pub mod route;

use inspect::Problem;
use route::Route;

/// Largest body of an inspected request (`createRoom`, invites); larger → 413.
pub const MAX_INSPECTED_BODY: usize = 1024 * 1024;
/// How long a whoami answer (token → user) is reused.
pub const WHOAMI_CACHE: Duration = Duration::from_secs(30);
/// Tokens remembered at most (beyond, expired ones go first, then all).
const WHOAMI_CACHE_MAX: usize = 10_000;
/// How long the homeserver may take to begin its answer (long-polling `/sync` waits up to the
/// client's `timeout`, typically 30 s).
pub const UPSTREAM_HEAD_TIMEOUT: Duration = Duration::from_secs(180);
/// Connecting to the homeserver.
const CONNECT_TIMEOUT: Duration = Duration::from_secs(10);
/// The whoami question, all of it.
const WHOAMI_TIMEOUT: Duration = Duration::from_secs(10);
/// Concurrent streams of one HTTP/2 connection.
pub const MAX_STREAMS: u32 = 100;

type BoxError = Box<dyn std::error::Error + Send + Sync>;
/// Request and response bodies through the listener.
pub type ProxyBody = BoxBody<Bytes, BoxError>;

/// Setting the listener up failed.
#[derive(Debug, thiserror::Error)]
pub enum ClientApiError {
    #[error("no [ti] profile")]
    NoTi,
    #[error("{0}: no [[ti.homeserver]] with client_upstream")]
    NoHomeserver(String),
    #[error("{server}: client_upstream {url} is not an http(s) URL")]
    BadUpstream { server: String, url: String },
    #[error("{server}: client TLS: {source}")]
    Tls {
        server: String,
        source: super::tls::TlsError,
    },
}

/// One client-server listener's state.
pub struct ClientApi {
    guard: Arc<Guard>,
    ti: Arc<Ti>,
    server_name: String,
    /// `http://authority` of `client_upstream` (the connector does TLS for `https`).
    base: String,
    client: Client<Connector, ProxyBody>,
    tls: Option<TlsAcceptor>,
    whoami: Mutex<HashMap<[u8; 32], (String, Instant)>>,
}

/// What a `[[ti.homeserver]]` entry's client listener is built from: the upstream and the
/// listener's TLS, loaded and checked (the guard checks it at start, so a bad file is a start
/// error rather than a listener that is not served).
pub struct Setup {
    /// `http://authority` of `client_upstream` (the connector does TLS for `https`).
    base: String,
    connector: Connector,
    tls: Option<TlsAcceptor>,
}

impl Setup {
    pub fn from_homeserver(hs: &TiHomeserver) -> Result<Setup, ClientApiError> {
        let server_name = hs.server_name.as_str();
        let url = hs
            .client_upstream
            .clone()
            .ok_or_else(|| ClientApiError::NoHomeserver(server_name.to_string()))?;
        let bad = || ClientApiError::BadUpstream {
            server: server_name.to_string(),
            url: url.clone(),
        };
        let uri: Uri = url.parse().map_err(|_| bad())?;
        let authority = uri.authority().ok_or_else(bad)?.clone();
        let upstream_tls = match uri.scheme_str() {
            Some("http") => None,
            Some("https") => {
                let cfg = super::tls::client_config(&[]).map_err(|source| ClientApiError::Tls {
                    server: server_name.to_string(),
                    source,
                })?;
                Some((
                    tokio_rustls::TlsConnector::from(cfg),
                    authority.host().to_string(),
                ))
            }
            _ => return Err(bad()),
        };
        let tls = match (&hs.client_tls_cert, &hs.client_tls_key) {
            (Some(cert), Some(key)) => {
                let tls_err = |source| ClientApiError::Tls {
                    server: server_name.to_string(),
                    source,
                };
                let ck = super::tls::load_certified_key(cert, key).map_err(tls_err)?;
                let resolver = super::tls::SniResolver::new(vec![(server_name.to_string(), ck)])
                    .map_err(tls_err)?;
                let mut cfg = (*super::tls::server_config(Arc::new(resolver))).clone();
                cfg.alpn_protocols = vec![b"h2".to_vec(), super::tls::ALPN_HTTP11.to_vec()];
                Some(TlsAcceptor::from(Arc::new(cfg)))
            }
            _ => None,
        };
        Ok(Setup {
            base: format!("http://{authority}"),
            connector: Connector { tls: upstream_tls },
            tls,
        })
    }
}

impl ClientApi {
    /// From the guard's `[ti]` profile and the `[[ti.homeserver]]` entry of `server_name`.
    pub fn new(guard: Arc<Guard>, server_name: &str) -> Result<ClientApi, ClientApiError> {
        let ti = guard.ti().cloned().ok_or(ClientApiError::NoTi)?;
        let hs = ti
            .homeserver(server_name)
            .ok_or_else(|| ClientApiError::NoHomeserver(server_name.to_string()))?;
        let setup = Setup::from_homeserver(hs)?;
        let client = Client::builder(TokioExecutor::new())
            .pool_idle_timeout(Duration::from_secs(60))
            .pool_max_idle_per_host(64)
            .build(setup.connector);
        Ok(ClientApi {
            guard,
            ti,
            server_name: server_name.to_string(),
            base: setup.base,
            client,
            tls: setup.tls,
            whoami: Mutex::new(HashMap::new()),
        })
    }
}

/// Serves the client-server listener of `server_name` until shutdown.
pub async fn run(
    guard: Arc<Guard>,
    server_name: String,
    listener: TcpListener,
    mut shutdown: Shutdown,
) {
    let api = match ClientApi::new(guard.clone(), &server_name) {
        Ok(a) => Arc::new(a),
        Err(e) => {
            error!("client-server listener not served: {e}");
            return;
        }
    };
    info!(server = %server_name, tls = api.tls.is_some(),
        addr = %listener.local_addr().map(|a| a.to_string()).unwrap_or_default(),
        "TI client-server listener");
    loop {
        let (tcp, addr) = tokio::select! {
            r = listener.accept() => match r {
                Ok(x) => x,
                Err(e) => { warn!("client accept failed: {e}"); tokio::time::sleep(Duration::from_millis(50)).await; continue; }
            },
            _ = shutdown.wait() => return,
        };
        let slot = match guard.admission().open(Side::Inbound, addr.ip()) {
            Ok(s) => s,
            Err(over) => {
                guard.admission().turn_away(
                    tm::Listener::Inbound,
                    tcp,
                    addr,
                    over,
                    api.tls.clone(),
                );
                continue;
            }
        };
        let _ = tcp.set_nodelay(true);
        tokio::spawn(serve_conn(api.clone(), tcp, addr, shutdown.clone(), slot));
    }
}

async fn serve_conn(
    api: Arc<ClientApi>,
    tcp: TcpStream,
    addr: SocketAddr,
    shutdown: Shutdown,
    _slot: ConnSlot,
) {
    let admission = api.guard.admission();
    match api.tls.clone() {
        None => serve_io(api, TokioIo::new(tcp), addr, false, shutdown).await,
        Some(acceptor) => {
            match tokio::time::timeout(admission.handshake_timeout(), acceptor.accept(tcp)).await {
                Ok(Ok(s)) => serve_io(api, TokioIo::new(s), addr, true, shutdown).await,
                Ok(Err(e)) => debug!(%addr, "client TLS handshake failed: {e}"),
                Err(_) => debug!(%addr, "client TLS handshake timed out"),
            }
        }
    }
}

async fn serve_io<I>(
    api: Arc<ClientApi>,
    io: TokioIo<I>,
    addr: SocketAddr,
    https: bool,
    mut shutdown: Shutdown,
) where
    I: tokio::io::AsyncRead + tokio::io::AsyncWrite + Unpin + Send + 'static,
{
    let header_timeout = api.guard.admission().header_timeout();
    let mut builder = hyper_util::server::conn::auto::Builder::new(TokioExecutor::new());
    builder
        .http1()
        .timer(TokioTimer::new())
        .header_read_timeout(header_timeout);
    builder
        .http2()
        .timer(TokioTimer::new())
        .max_concurrent_streams(MAX_STREAMS)
        .keep_alive_interval(Some(header_timeout))
        .keep_alive_timeout(header_timeout);
    let svc = service_fn(move |req: Request<Incoming>| {
        let api = api.clone();
        async move { Ok::<_, Infallible>(api.handle(req, addr, https).await) }
    });
    let conn = builder.serve_connection(io, svc);
    tokio::pin!(conn);
    tokio::select! {
        r = conn.as_mut() => { if let Err(e) = r { debug!(%addr, "client connection ended: {e}"); } }
        _ = shutdown.wait() => {
            conn.as_mut().graceful_shutdown();
            let _ = conn.await;
        }
    }
}

fn full(b: impl Into<Bytes>) -> ProxyBody {
    Full::new(b.into()).map_err(|e| match e {}).boxed()
}

fn refusal_response(r: &Refusal) -> Response<ProxyBody> {
    super::exchange::refusal_response(r).map(|b| b.map_err(|e| match e {}).boxed())
}

/// A refusal of the listener itself (not a TI rule): counted and answered.
fn refuse(
    status: StatusCode,
    errcode: &'static str,
    reason: RefusalReason,
    msg: &str,
) -> Response<ProxyBody> {
    tm::record_refusal(Direction::Inbound, reason);
    refusal_response(&Refusal::new(status, errcode, reason, msg))
}

impl ClientApi {
    /// One request: classify, inspect, forward; always an answer.
    async fn handle(
        &self,
        mut req: Request<Incoming>,
        addr: SocketAddr,
        https: bool,
    ) -> Response<ProxyBody> {
        let t0 = Instant::now();
        req.extensions_mut().insert(PeerAddr(addr));
        let route = route::classify(req.method(), req.uri().path());
        let label = match &route {
            Route::CreateRoom => "client_create_room",
            Route::Invite => "client_invite",
            Route::MemberState { .. } => "client_member_state",
            Route::Media { .. } => "client_media",
            Route::PublicRooms => "client_public_rooms",
            Route::DirectoryVisibility { .. } => "client_directory",
            Route::NotServed | Route::Undecodable | Route::Pass => "client_other",
        };
        let resp = self.dispatch(route, req, addr, https).await;
        tm::record_request(
            tm::Direction::Inbound,
            label,
            resp.status().as_u16(),
            t0.elapsed(),
        );
        resp
    }

    async fn dispatch(
        &self,
        route: Route,
        req: Request<Incoming>,
        addr: SocketAddr,
        https: bool,
    ) -> Response<ProxyBody> {
        match route {
            Route::Pass => self.stream(req, addr, https).await,
            Route::NotServed => refuse(
                StatusCode::NOT_FOUND,
                "M_UNRECOGNIZED",
                RefusalReason::UnknownEndpoint,
                "not served on this listener",
            ),
            Route::Undecodable => refuse(
                StatusCode::BAD_REQUEST,
                "M_UNRECOGNIZED",
                RefusalReason::BadJson,
                "the request path does not percent-decode",
            ),
            Route::Media { server } => {
                if let Err(d) = self.ti.check_server(&server).await {
                    return self.ti_refusal(&d, &req, addr).await;
                }
                self.stream(req, addr, https).await
            }
            Route::PublicRooms => {
                let server = req.uri().query().and_then(|q| query_param(q, "server"));
                if let Some(server) = server {
                    if let Err(d) = self.ti.check_server(&server).await {
                        return self.ti_refusal(&d, &req, addr).await;
                    }
                }
                self.stream(req, addr, https).await
            }
            Route::CreateRoom
            | Route::Invite
            | Route::MemberState { .. }
            | Route::DirectoryVisibility { .. } => self.inspected(route, req, addr, https).await,
        }
    }

    /// Forwards a request whose body is not inspected: streamed, cut off when idle.
    async fn stream(
        &self,
        req: Request<Incoming>,
        addr: SocketAddr,
        https: bool,
    ) -> Response<ProxyBody> {
        let (parts, body) = req.into_parts();
        let idle = self.guard.admission().body_timeout();
        let body = IdleTimeout::new(body.map_err(BoxError::from).boxed(), idle).boxed();
        self.forward(parts, body, addr, https).await
    }

    /// `createRoom`, `/invite`, `m.room.member` state, directory visibility: read, judge,
    /// forward the inspected JSON.
    async fn inspected(
        &self,
        route: Route,
        req: Request<Incoming>,
        addr: SocketAddr,
        https: bool,
    ) -> Response<ProxyBody> {
        let declared = req
            .headers()
            .get(http::header::CONTENT_LENGTH)
            .and_then(|v| v.to_str().ok())
            .and_then(|v| v.parse::<u64>().ok());
        if declared.is_some_and(|n| n > MAX_INSPECTED_BODY as u64) {
            return too_large();
        }
        let method = req.method().to_string();
        let path = req.uri().path().to_string();
        let (parts, body) = req.into_parts();
        let (bytes, _hold) =
            match super::admission::read_body(&self.guard, Direction::Inbound, None, &parts, body)
                .await
            {
                Ok(x) => x,
                Err(r) => {
                    tm::record_refusal(Direction::Inbound, r.reason);
                    return refusal_response(&r);
                }
            };
        if bytes.len() > MAX_INSPECTED_BODY {
            return too_large();
        }
        if let Route::DirectoryVisibility { room_id } = &route {
            let value = match inspect::directory_visibility(&bytes) {
                Ok((false, v)) => v,
                Ok((true, v)) => {
                    let msg = match self.room_federates(&parts, room_id).await {
                        Ok(Some(false)) => None,
                        Ok(Some(true)) => Some(
                            "only rooms created without federation may be published in the room directory",
                        ),
                        Ok(None) => Some("the room's federation setting cannot be read"),
                        Err(resp) => return resp,
                    };
                    if let Some(msg) = msg {
                        let d = TiDenial::ClientRule(msg.into());
                        return self.ti_refusal_at(&d, &method, &path, addr).await;
                    }
                    v
                }
                Err(p) => return self.problem(p, &method, &path, addr).await,
            };
            return self.forward_json(parts, &value, addr, https).await;
        }
        let judged = match &route {
            Route::CreateRoom => inspect::create_room(&bytes),
            Route::Invite => inspect::invite(&bytes).map(|(i, v)| (vec![i], v)),
            Route::MemberState { state_key } => {
                inspect::member_state(&bytes, state_key).map(|(i, v)| (i.into_iter().collect(), v))
            }
            _ => unreachable!("only inspected routes come here"),
        };
        let (invitees, value) = match judged {
            Ok(x) => x,
            Err(p) => return self.problem(p, &method, &path, addr).await,
        };
        for invitee in &invitees {
            if let Err(resp) = self
                .check_invitee(&parts, invitee, &method, &path, addr)
                .await
            {
                return resp;
            }
        }
        self.forward_json(parts, &value, addr, https).await
    }

    /// The answer to a body [`inspect`] refused.
    async fn problem(
        &self,
        p: Problem,
        method: &str,
        path: &str,
        addr: SocketAddr,
    ) -> Response<ProxyBody> {
        match p {
            Problem::NotJson => refuse(
                StatusCode::BAD_REQUEST,
                "M_NOT_JSON",
                RefusalReason::BadJson,
                "the request body is not JSON",
            ),
            Problem::BadJson(m) => refuse(
                StatusCode::BAD_REQUEST,
                "M_BAD_JSON",
                RefusalReason::BadJson,
                m,
            ),
            Problem::InvalidParam(m) => refuse(
                StatusCode::BAD_REQUEST,
                "M_INVALID_PARAM",
                RefusalReason::BadJson,
                m,
            ),
            Problem::Denied(d) => self.ti_refusal_at(&d, method, path, addr).await,
        }
    }

    /// Forwards the inspected JSON (serialised again) in place of the request's body.
    async fn forward_json(
        &self,
        mut parts: http::request::Parts,
        value: &serde_json::Value,
        addr: SocketAddr,
        https: bool,
    ) -> Response<ProxyBody> {
        let out = match serde_json::to_vec(value) {
            Ok(b) => b,
            Err(_) => {
                return refuse(
                    StatusCode::INTERNAL_SERVER_ERROR,
                    "M_UNKNOWN",
                    RefusalReason::Internal,
                    "internal error",
                )
            }
        };
        parts.headers.remove(http::header::CONTENT_LENGTH);
        parts.headers.insert(
            http::header::CONTENT_TYPE,
            HeaderValue::from_static("application/json"),
        );
        self.forward(parts, full(out), addr, https).await
    }

    /// The invitee's domain must be listed; an invitee of a protected server must accept the
    /// requesting user.
    async fn check_invitee(
        &self,
        parts: &http::request::Parts,
        invitee: &str,
        method: &str,
        path: &str,
        addr: SocketAddr,
    ) -> Result<(), Response<ProxyBody>> {
        let server = inspect::mxid_server(invitee).unwrap_or_default();
        if let Err(d) = self.ti.check_server(server).await {
            return Err(self.ti_refusal_at(&d, method, path, addr).await);
        }
        if !self.ti.is_own(server) {
            return Ok(());
        }
        let inviter = self.whoami(parts).await?;
        if let Err(d) = self.ti.check_invite(&inviter, invitee).await {
            return Err(self.ti_refusal_at(&d, method, path, addr).await);
        }
        Ok(())
    }

    async fn ti_refusal(
        &self,
        d: &TiDenial,
        req: &Request<Incoming>,
        addr: SocketAddr,
    ) -> Response<ProxyBody> {
        self.ti_refusal_at(d, req.method().as_str(), req.uri().path(), addr)
            .await
    }

    async fn ti_refusal_at(
        &self,
        d: &TiDenial,
        method: &str,
        path: &str,
        addr: SocketAddr,
    ) -> Response<ProxyBody> {
        let r = super::ti_gate::record_client_refusal(
            &self.guard,
            d,
            method,
            path,
            Some(addr.ip().to_string()),
        )
        .await;
        tm::record_refusal(Direction::Inbound, r.reason);
        refusal_response(&r)
    }

    /// The requesting user, as the homeserver names the request's access token.
    async fn whoami(&self, parts: &http::request::Parts) -> Result<String, Response<ProxyBody>> {
        let Some(token) = access_token(parts) else {
            return Err(refuse(
                StatusCode::UNAUTHORIZED,
                "M_MISSING_TOKEN",
                RefusalReason::Auth,
                "missing access token",
            ));
        };
        // An application service names the user it acts for in `user_id`: whoami is asked
        // the same way.
        let masquerade = parts.uri.query().and_then(|q| query_param(q, "user_id"));
        let mut h = Sha256::new();
        h.update(token.as_bytes());
        if let Some(u) = &masquerade {
            h.update([0]);
            h.update(u.as_bytes());
        }
        let key: [u8; 32] = h.finalize().into();
        let now = Instant::now();
        if let Some((user, at)) = self.cache().get(&key) {
            if now.duration_since(*at) < WHOAMI_CACHE {
                return Ok(user.clone());
            }
        }
        let user = self.ask_whoami(&token, masquerade.as_deref()).await?;
        let mut cache = self.cache();
        if cache.len() >= WHOAMI_CACHE_MAX {
            cache.retain(|_, (_, at)| now.duration_since(*at) < WHOAMI_CACHE);
            if cache.len() >= WHOAMI_CACHE_MAX {
                cache.clear();
            }
        }
        cache.insert(key, (user.clone(), now));
        Ok(user)
    }

    fn cache(&self) -> std::sync::MutexGuard<'_, HashMap<[u8; 32], (String, Instant)>> {
        self.whoami.lock().unwrap_or_else(|e| e.into_inner())
    }

    async fn ask_whoami(
        &self,
        token: &str,
        masquerade: Option<&str>,
    ) -> Result<String, Response<ProxyBody>> {
        let unavailable = || {
            refuse(
                StatusCode::BAD_GATEWAY,
                "M_UNKNOWN",
                RefusalReason::Upstream,
                "the homeserver cannot say who is asking",
            )
        };
        let mut url = format!("{}/_matrix/client/v3/account/whoami", self.base);
        if let Some(u) = masquerade {
            url.push_str("?user_id=");
            url.push_str(&crate::federation::catalog::encode_segment(u));
        }
        let Some((status, body)) = self.get_small(&url, token).await else {
            warn!(server = %self.server_name, "TI client listener: whoami failed");
            return Err(unavailable());
        };
        if status == StatusCode::UNAUTHORIZED || status == StatusCode::FORBIDDEN {
            return Err(refuse(
                StatusCode::UNAUTHORIZED,
                "M_UNKNOWN_TOKEN",
                RefusalReason::Auth,
                "unknown access token",
            ));
        }
        let user = (status == StatusCode::OK)
            .then(|| serde_json::from_slice::<serde_json::Value>(&body).ok())
            .flatten()
            .and_then(|v| v.get("user_id")?.as_str().map(str::to_string))
            .filter(|u| inspect::mxid_server(u).is_some());
        user.ok_or_else(|| {
            warn!(server = %self.server_name, %status, "TI client listener: whoami answer unusable");
            unavailable()
        })
    }

    /// Whether the room federates (`m.federate` of its create event, default `true`), asked of
    /// the homeserver with the request's own access token; `None`: it cannot be read.
    async fn room_federates(
        &self,
        parts: &http::request::Parts,
        room_id: &str,
    ) -> Result<Option<bool>, Response<ProxyBody>> {
        let Some(token) = access_token(parts) else {
            return Err(refuse(
                StatusCode::UNAUTHORIZED,
                "M_MISSING_TOKEN",
                RefusalReason::Auth,
                "missing access token",
            ));
        };
        let url = format!(
            "{}/_matrix/client/v3/rooms/{}/state/m.room.create",
            self.base,
            crate::federation::catalog::encode_segment(room_id)
        );
        let Some((StatusCode::OK, body)) = self.get_small(&url, &token).await else {
            return Ok(None);
        };
        let Ok(v) = serde_json::from_slice::<serde_json::Value>(&body) else {
            return Ok(None);
        };
        Ok(match v.get("m.federate") {
            None | Some(serde_json::Value::Bool(true)) => Some(true),
            Some(serde_json::Value::Bool(false)) => Some(false),
            Some(_) => None,
        })
    }

    /// A small GET to the homeserver with `token` (status and body), `None` on any failure.
    async fn get_small(&self, url: &str, token: &str) -> Option<(StatusCode, Bytes)> {
        let auth = HeaderValue::from_str(&format!("Bearer {token}")).ok()?;
        let req = Request::get(url)
            .header(http::header::AUTHORIZATION, auth)
            .body(full(Bytes::new()))
            .ok()?;
        let ask = async {
            let resp = self.client.request(req).await.ok()?;
            let status = resp.status();
            let body = Limited::new(resp.into_body(), 64 * 1024)
                .collect()
                .await
                .ok()?
                .to_bytes();
            Some((status, body))
        };
        tokio::time::timeout(WHOAMI_TIMEOUT, ask)
            .await
            .ok()
            .flatten()
    }

    /// Sends the request on to the homeserver and streams its answer back.
    async fn forward(
        &self,
        mut parts: http::request::Parts,
        body: ProxyBody,
        addr: SocketAddr,
        https: bool,
    ) -> Response<ProxyBody> {
        let pq = parts
            .uri
            .path_and_query()
            .map(|p| p.as_str().to_string())
            .unwrap_or_else(|| "/".into());
        let Ok(uri) = format!("{}{pq}", self.base).parse::<Uri>() else {
            return refuse(
                StatusCode::BAD_REQUEST,
                "M_UNRECOGNIZED",
                RefusalReason::BadJson,
                "bad request target",
            );
        };
        strip_hop_by_hop(&mut parts.headers);
        for h in [
            "x-forwarded-for",
            "x-forwarded-proto",
            "x-forwarded-host",
            "forwarded",
            "x-real-ip",
        ] {
            parts.headers.remove(h);
        }
        if let Ok(v) = HeaderValue::from_str(&addr.ip().to_string()) {
            parts.headers.insert("x-forwarded-for", v);
        }
        parts.headers.insert(
            "x-forwarded-proto",
            HeaderValue::from_static(if https { "https" } else { "http" }),
        );
        if !parts.headers.contains_key(http::header::HOST) {
            // HTTP/2 requests carry the authority in the URI.
            if let Some(a) = parts
                .uri
                .authority()
                .and_then(|a| HeaderValue::from_str(a.as_str()).ok())
            {
                parts.headers.insert(http::header::HOST, a);
            }
        }
        parts.uri = uri;
        parts.version = http::Version::HTTP_11;
        let req = Request::from_parts(parts, body);
        match tokio::time::timeout(UPSTREAM_HEAD_TIMEOUT, self.client.request(req)).await {
            Ok(Ok(resp)) => {
                tm::record_upstream(Direction::Inbound, Some(resp.status().as_u16()));
                let (mut parts, body) = resp.into_parts();
                strip_hop_by_hop(&mut parts.headers);
                Response::from_parts(parts, body.map_err(BoxError::from).boxed())
            }
            Ok(Err(e)) => {
                tm::record_upstream(Direction::Inbound, None);
                warn!(server = %self.server_name, "TI client listener: homeserver request failed: {e}");
                refuse(
                    StatusCode::BAD_GATEWAY,
                    "M_UNKNOWN",
                    RefusalReason::Upstream,
                    "the homeserver is not reachable",
                )
            }
            Err(_) => {
                tm::record_upstream(Direction::Inbound, None);
                refuse(
                    StatusCode::GATEWAY_TIMEOUT,
                    "M_UNKNOWN",
                    RefusalReason::Upstream,
                    "the homeserver did not answer in time",
                )
            }
        }
    }
}

fn too_large() -> Response<ProxyBody> {
    refuse(
        StatusCode::PAYLOAD_TOO_LARGE,
        "M_TOO_LARGE",
        RefusalReason::TooLarge,
        "request body too large",
    )
}

/// The first value of query parameter `name`, percent-decoded (`+` as space).
fn query_param(query: &str, name: &str) -> Option<String> {
    query.split('&').find_map(|kv| {
        let (k, v) = kv.split_once('=').unwrap_or((kv, ""));
        if k != name {
            return None;
        }
        crate::federation::catalog::percent_decode(&v.replace('+', " "))
            .ok()
            .map(|v| v.into_owned())
    })
}

/// The request's access token: `Authorization: Bearer …`, else the `access_token` query
/// parameter.
fn access_token(parts: &http::request::Parts) -> Option<String> {
    if let Some(v) = parts.headers.get(http::header::AUTHORIZATION) {
        let v = v.to_str().ok()?;
        let (scheme, token) = v.split_once(' ')?;
        return (scheme.eq_ignore_ascii_case("bearer") && !token.trim().is_empty())
            .then(|| token.trim().to_string());
    }
    query_param(parts.uri.query()?, "access_token").filter(|t| !t.is_empty())
}

/// A request body that must keep arriving: nothing for `idle` ends it with an error (the
/// upstream request fails, the client's connection is answered 502 or closed).
struct IdleTimeout {
    inner: ProxyBody,
    idle: Duration,
    sleep: Pin<Box<tokio::time::Sleep>>,
}

impl IdleTimeout {
    fn new(inner: ProxyBody, idle: Duration) -> Self {
        IdleTimeout {
            inner,
            idle,
            sleep: Box::pin(tokio::time::sleep(idle)),
        }
    }
}

impl Body for IdleTimeout {
    type Data = Bytes;
    type Error = BoxError;

    fn poll_frame(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
    ) -> Poll<Option<Result<Frame<Bytes>, BoxError>>> {
        match Pin::new(&mut self.inner).poll_frame(cx) {
            Poll::Ready(f) => {
                let next = tokio::time::Instant::now() + self.idle;
                self.sleep.as_mut().reset(next);
                Poll::Ready(f)
            }
            Poll::Pending => match self.sleep.as_mut().poll(cx) {
                Poll::Ready(()) => Poll::Ready(Some(Err("request body idle too long".into()))),
                Poll::Pending => Poll::Pending,
            },
        }
    }
    fn is_end_stream(&self) -> bool {
        self.inner.is_end_stream()
    }
    fn size_hint(&self) -> SizeHint {
        self.inner.size_hint()
    }
}

/// Dials `client_upstream` (TLS for `https`, with the web PKI roots).
#[derive(Clone)]
struct Connector {
    tls: Option<(tokio_rustls::TlsConnector, String)>,
}

impl tower_service::Service<Uri> for Connector {
    type Response = TokioIo<MaybeTls>;
    type Error = std::io::Error;
    type Future = Pin<Box<dyn Future<Output = Result<Self::Response, std::io::Error>> + Send>>;

    fn poll_ready(&mut self, _cx: &mut Context<'_>) -> Poll<Result<(), std::io::Error>> {
        Poll::Ready(Ok(()))
    }

    fn call(&mut self, uri: Uri) -> Self::Future {
        let tls = self.tls.clone();
        Box::pin(async move {
            let bad = || std::io::Error::new(std::io::ErrorKind::InvalidInput, "URI without host");
            let authority = uri.authority().ok_or_else(bad)?.clone();
            let port = authority
                .port_u16()
                .unwrap_or(if tls.is_some() { 443 } else { 80 });
            let host = authority
                .host()
                .trim_start_matches('[')
                .trim_end_matches(']');
            let tcp = tokio::time::timeout(CONNECT_TIMEOUT, TcpStream::connect((host, port)))
                .await
                .map_err(|_| {
                    std::io::Error::new(std::io::ErrorKind::TimedOut, "connect timed out")
                })??;
            let _ = tcp.set_nodelay(true);
            let io = match tls {
                None => MaybeTls::Plain(tcp),
                Some((c, name)) => {
                    let name = rustls::pki_types::ServerName::try_from(
                        name.trim_start_matches('[')
                            .trim_end_matches(']')
                            .to_string(),
                    )
                    .map_err(|e| std::io::Error::new(std::io::ErrorKind::InvalidInput, e))?;
                    MaybeTls::Tls(Box::new(c.connect(name, tcp).await?))
                }
            };
            Ok(TokioIo::new(io))
        })
    }
}
