//! Upstream clients: the forwarding layer. Sending requires a [`Permit<Forward>`].
//!
//! Two kinds of upstream:
//! - the protected homeserver's federation listener (inbound path): a fixed `http://` or
//!   `https://` URL from config;
//! - a remote homeserver (outbound path): a Matrix server name, resolved by the static route
//!   table or server discovery ([`super::discovery`]), always over TLS with the configured roots.
//!
//! Both use hyper-util's pooled client with a connector of our own, so connections (and TLS
//! sessions) are reused across requests.
//!
//! Three deadlines bound every request ([`Timeouts`]): the TCP connect, the first byte (the
//! response head), and the whole exchange including the body. Each upstream has a
//! [`watch::Watch`] that counts timeouts and failures, shows requests in flight and stuck ones,
//! and feeds `/health`.
pub mod watch;

use std::future::Future;
use std::io;
use std::net::SocketAddr;
use std::pin::Pin;
use std::sync::Arc;
use std::task::{Context, Poll};
use std::time::Duration;

use bytes::Bytes;
use http::{HeaderMap, HeaderValue, Request, StatusCode, Uri};
use http_body_util::{BodyExt, Full, Limited};
use hyper_util::client::legacy::connect::{Connected, Connection};
use hyper_util::client::legacy::Client;
use hyper_util::rt::{TokioExecutor, TokioIo};
use rustls::pki_types::ServerName;
use tokio::io::{AsyncRead, AsyncWrite, ReadBuf};
use tokio::net::TcpStream;
use tokio_rustls::client::TlsStream;
use tokio_rustls::TlsConnector;

use super::discovery::ServerResolver;
use crate::policy::{Forward, Permit};
pub use watch::{TimeoutPhase, Watch};

/// The deadlines of an upstream request.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Timeouts {
    /// TCP connect (per address tried).
    pub connect: Duration,
    /// From sending the request to the response head.
    pub first_byte: Duration,
    /// The whole exchange, body included.
    pub total: Duration,
}

impl Timeouts {
    /// The `[outbound]` timeouts (the defaults without an `[outbound]` section).
    pub fn from_config(o: Option<&crate::config::OutboundConfig>) -> Self {
        let d = crate::config::OutboundConfig::default();
        let o = o.unwrap_or(&d);
        Timeouts {
            connect: Duration::from_millis(o.connect_timeout_ms),
            // A first-byte deadline beyond the total one would never fire.
            first_byte: Duration::from_millis(o.first_byte_timeout_ms.min(o.request_timeout_ms)),
            total: Duration::from_millis(o.request_timeout_ms),
        }
    }

    /// Requests waiting longer than this count as stuck: half the first-byte deadline.
    pub fn stuck_after(&self) -> Duration {
        self.first_byte / 2
    }
}

/// Upstream failures. They say whose fault it is: the upstream's (502/504) — the guard's own
/// faults surface as `Internal`.
#[derive(Debug, thiserror::Error)]
pub enum UpstreamError {
    #[error("cannot reach {target}: {source}")]
    Connect { target: String, source: io::Error },
    #[error("no route to {target}: {reason}")]
    NoRoute { target: String, reason: String },
    #[error("request to {target} failed: {reason}")]
    Request { target: String, reason: String },
    #[error("request to {target} timed out ({})", phase.as_str())]
    Timeout { target: String, phase: TimeoutPhase },
    #[error("response from {target} exceeds {limit} bytes")]
    TooLarge { target: String, limit: usize },
    #[error("request to {target} cannot cross the split appliance: {reason}")]
    NotCarried { target: String, reason: String },
    #[error("request to {target}: too many requests wait for the other half")]
    Busy { target: String },
    #[error("invalid upstream URL {0}")]
    BadUrl(String),
}

/// The response as received from upstream, fully buffered (it is inspected before release).
#[derive(Debug)]
pub struct UpstreamResponse {
    pub status: http::StatusCode,
    pub headers: HeaderMap,
    pub body: Bytes,
    /// Set only for an answer from the other half of a split appliance, whose policy released
    /// it there (`split::Released`): this half passes it on as it is.
    pub released: Option<crate::split::Released>,
}

/// How a media answer is collected ([`Upstream::send_media`]).
#[derive(Debug, Clone)]
pub struct SpillSpec {
    /// Larger answers are refused ([`UpstreamError::TooLarge`]).
    pub max: usize,
    /// Beyond this many bytes the answer goes to a temporary file.
    pub threshold: usize,
    /// Where temporary files go (default: the system's temporary directory).
    pub dir: Option<std::path::PathBuf>,
}

/// A TCP or TLS connection.
pub enum MaybeTls {
    Plain(TcpStream),
    Tls(Box<TlsStream<TcpStream>>),
}

impl Connection for MaybeTls {
    fn connected(&self) -> Connected {
        Connected::new()
    }
}

impl AsyncRead for MaybeTls {
    fn poll_read(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<io::Result<()>> {
        match self.get_mut() {
            MaybeTls::Plain(s) => Pin::new(s).poll_read(cx, buf),
            MaybeTls::Tls(s) => Pin::new(s.as_mut()).poll_read(cx, buf),
        }
    }
}

impl AsyncWrite for MaybeTls {
    fn poll_write(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &[u8],
    ) -> Poll<io::Result<usize>> {
        match self.get_mut() {
            MaybeTls::Plain(s) => Pin::new(s).poll_write(cx, buf),
            MaybeTls::Tls(s) => Pin::new(s.as_mut()).poll_write(cx, buf),
        }
    }
    fn poll_flush(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        match self.get_mut() {
            MaybeTls::Plain(s) => Pin::new(s).poll_flush(cx),
            MaybeTls::Tls(s) => Pin::new(s.as_mut()).poll_flush(cx),
        }
    }
    fn poll_shutdown(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        match self.get_mut() {
            MaybeTls::Plain(s) => Pin::new(s).poll_shutdown(cx),
            MaybeTls::Tls(s) => Pin::new(s.as_mut()).poll_shutdown(cx),
        }
    }
}

type BoxFut<T> = Pin<Box<dyn Future<Output = T> + Send>>;

/// Where a connector sends a URI's authority.
#[derive(Clone)]
enum Routing {
    /// Fixed upstream: connect to the authority as written (loopback or a configured host).
    Fixed { tls: Option<(TlsConnector, String)> },
    /// Matrix server name: static routes, then discovery; always TLS.
    Federation {
        tls: TlsConnector,
        resolver: Arc<ServerResolver>,
    },
}

#[derive(Clone)]
pub struct GuardConnector {
    routing: Routing,
    connect_timeout: Duration,
    watch: Arc<Watch>,
}

async fn connect_any(
    addrs: &[SocketAddr],
    timeout: Duration,
    target: &str,
    watch: &Watch,
) -> Result<TcpStream, io::Error> {
    let mut last = io::Error::new(io::ErrorKind::NotFound, format!("no address for {target}"));
    for addr in addrs {
        match tokio::time::timeout(timeout, TcpStream::connect(addr)).await {
            Ok(Ok(s)) => {
                let _ = s.set_nodelay(true);
                return Ok(s);
            }
            Ok(Err(e)) => last = e,
            Err(_) => {
                watch.connect_timeout();
                last = io::Error::new(
                    io::ErrorKind::TimedOut,
                    format!("connect to {addr} timed out"),
                )
            }
        }
    }
    Err(last)
}

async fn tls_wrap(tls: &TlsConnector, name: &str, tcp: TcpStream) -> io::Result<MaybeTls> {
    let host = strip_brackets(name);
    let server_name = ServerName::try_from(host.to_string()).map_err(|e| {
        io::Error::new(
            io::ErrorKind::InvalidInput,
            format!("bad TLS name {name}: {e}"),
        )
    })?;
    Ok(MaybeTls::Tls(Box::new(
        tls.connect(server_name, tcp).await?,
    )))
}

fn strip_brackets(host: &str) -> &str {
    host.strip_prefix('[')
        .and_then(|h| h.strip_suffix(']'))
        .unwrap_or(host)
}

impl tower_service::Service<Uri> for GuardConnector {
    type Response = TokioIo<MaybeTls>;
    type Error = io::Error;
    type Future = BoxFut<Result<Self::Response, io::Error>>;

    fn poll_ready(&mut self, _cx: &mut Context<'_>) -> Poll<Result<(), io::Error>> {
        Poll::Ready(Ok(()))
    }

    fn call(&mut self, uri: Uri) -> Self::Future {
        let this = self.clone();
        Box::pin(async move {
            let authority = uri
                .authority()
                .ok_or_else(|| {
                    io::Error::new(io::ErrorKind::InvalidInput, "URI without authority")
                })?
                .clone();
            match &this.routing {
                Routing::Fixed { tls } => {
                    let port = authority
                        .port_u16()
                        .unwrap_or(if tls.is_some() { 443 } else { 80 });
                    let host = strip_brackets(authority.host()).to_string();
                    let addrs: Vec<SocketAddr> = tokio::net::lookup_host((host.as_str(), port))
                        .await?
                        .collect();
                    let tcp = connect_any(
                        &addrs,
                        this.connect_timeout,
                        authority.as_str(),
                        &this.watch,
                    )
                    .await?;
                    let io = match tls {
                        Some((c, name)) => tls_wrap(c, name, tcp).await?,
                        None => MaybeTls::Plain(tcp),
                    };
                    Ok(TokioIo::new(io))
                }
                Routing::Federation { tls, resolver } => {
                    let target = resolver
                        .resolve(authority.as_str())
                        .await
                        .map_err(|e| io::Error::new(io::ErrorKind::NotFound, e.to_string()))?;
                    let tcp = connect_any(
                        &target.addrs,
                        this.connect_timeout,
                        authority.as_str(),
                        &this.watch,
                    )
                    .await?;
                    Ok(TokioIo::new(tls_wrap(tls, &target.tls_name, tcp).await?))
                }
            }
        })
    }
}

/// One pooled client towards one kind of upstream.
#[derive(Clone)]
pub struct Upstream {
    client: Client<GuardConnector, Full<Bytes>>,
    /// `scheme://authority` prefix for fixed upstreams.
    base: Option<String>,
    /// For federation upstreams: resolve first, so "no route" is a typed refusal.
    resolver: Option<Arc<ServerResolver>>,
    timeouts: Timeouts,
    watch: Arc<Watch>,
    max_response: usize,
    /// The other half of a split appliance: requests cross the link instead.
    link: Option<Arc<crate::split::Link>>,
}

/// Hop-by-hop headers (RFC 9110 §7.6.1) and proxy credentials never cross the guard.
pub const HOP_BY_HOP: &[&str] = &[
    "connection",
    "proxy-connection",
    "keep-alive",
    "proxy-authorization",
    "proxy-authenticate",
    "te",
    "trailer",
    "transfer-encoding",
    "upgrade",
];

/// The end-to-end headers a federation request carries across the guard: the X-Matrix
/// authorization (which the exchange then replaces by the header as the guard parsed it) and
/// the type of the body. Any other header (user agents, `X-` headers, caching, encodings) is
/// text that no layer judges, so it does not cross.
pub const REQUEST_HEADERS: &[&str] = &["authorization", "content-type"];

/// The end-to-end headers a federation answer carries back across the guard: the type of the
/// body and `Retry-After` of a rate-limited answer (plus, for media, the `Content-Disposition`
/// that the media inspection judged).
pub const RESPONSE_HEADERS: &[&str] = &["content-type", "retry-after"];

/// Keeps only the headers named in `allowed` (and `extra`); a JSON body's `Content-Type`
/// becomes exactly `application/json` (its parameters are not judged either).
pub fn keep_headers(headers: &mut HeaderMap, allowed: &[&str], extra: &[&str], json: bool) {
    let dropped: Vec<http::header::HeaderName> = headers
        .keys()
        .filter(|k| !allowed.contains(&k.as_str()) && !extra.contains(&k.as_str()))
        .cloned()
        .collect();
    for k in dropped {
        headers.remove(k);
    }
    if json && headers.contains_key(http::header::CONTENT_TYPE) {
        headers.insert(
            http::header::CONTENT_TYPE,
            HeaderValue::from_static("application/json"),
        );
    }
}

/// Removes hop-by-hop headers, including those named in `Connection`.
pub fn strip_hop_by_hop(headers: &mut HeaderMap) {
    let named: Vec<String> = headers
        .get_all(http::header::CONNECTION)
        .iter()
        .filter_map(|v| v.to_str().ok())
        .flat_map(|v| {
            v.split(',')
                .map(|s| s.trim().to_ascii_lowercase())
                .collect::<Vec<_>>()
        })
        .collect();
    for h in HOP_BY_HOP {
        headers.remove(*h);
    }
    for h in named {
        headers.remove(h.as_str());
    }
}

impl Upstream {
    fn build(
        name: &'static str,
        routing: Routing,
        timeouts: Timeouts,
        max_response: usize,
        base: Option<String>,
    ) -> Self {
        let resolver = match &routing {
            Routing::Federation { resolver, .. } => Some(resolver.clone()),
            Routing::Fixed { .. } => None,
        };
        let watch = Watch::new(name, timeouts.stuck_after());
        let connector = GuardConnector {
            routing,
            connect_timeout: timeouts.connect,
            watch: watch.clone(),
        };
        let client = Client::builder(TokioExecutor::new())
            .pool_idle_timeout(Duration::from_secs(60))
            .pool_max_idle_per_host(64)
            .build(connector);
        Upstream {
            client,
            base,
            resolver,
            timeouts,
            watch,
            max_response,
            link: None,
        }
    }

    /// The other half of a split appliance (`crate::split`): what is sent crosses the link.
    pub fn over_link(link: Arc<crate::split::Link>, max_response: usize) -> Self {
        let mut u = Self::build(
            "link",
            Routing::Fixed { tls: None },
            Timeouts {
                connect: Duration::from_secs(1),
                first_byte: Duration::from_secs(60),
                total: Duration::from_secs(60),
            },
            max_response,
            None,
        );
        u.link = Some(link);
        u
    }

    /// A fixed upstream (the protected homeserver): `http://host:port` or `https://host:port`.
    /// `name` is its metric label (`protected`, `media`).
    pub fn fixed(
        name: &'static str,
        url: &str,
        tls: Option<Arc<rustls::ClientConfig>>,
        timeouts: Timeouts,
        max_response: usize,
    ) -> Result<Self, UpstreamError> {
        let uri: Uri = url
            .parse()
            .map_err(|_| UpstreamError::BadUrl(url.to_string()))?;
        let authority = uri
            .authority()
            .ok_or_else(|| UpstreamError::BadUrl(url.to_string()))?
            .clone();
        let tls = match uri.scheme_str() {
            Some("http") => None,
            Some("https") => {
                let cfg = tls.ok_or_else(|| {
                    UpstreamError::BadUrl(format!("{url}: https upstream needs TLS roots"))
                })?;
                Some((TlsConnector::from(cfg), authority.host().to_string()))
            }
            _ => return Err(UpstreamError::BadUrl(url.to_string())),
        };
        // The pool is keyed by URI; the connector dials the authority. For https we still
        // send `http://` URIs to hyper (the connector does TLS), so hyper does not refuse them.
        let base = format!("http://{authority}");
        Ok(Self::build(
            name,
            Routing::Fixed { tls },
            timeouts,
            max_response,
            Some(base),
        ))
    }

    /// Remote homeservers, addressed by Matrix server name.
    pub fn federation(
        tls: Arc<rustls::ClientConfig>,
        resolver: Arc<ServerResolver>,
        timeouts: Timeouts,
        max_response: usize,
    ) -> Self {
        let routing = Routing::Federation {
            tls: TlsConnector::from(tls),
            resolver,
        };
        Self::build("federation", routing, timeouts, max_response, None)
    }

    /// The guard's own request for a remote server's keys (`GET /_matrix/key/v2/server`), used
    /// to verify inbound signatures. This is the one request that needs no permit: it carries
    /// nothing from either side, only the guard's question, and its answer is only ever used by
    /// the guard's key cache (verified, self-signed) — never forwarded.
    pub async fn fetch_server_keys(&self, server_name: &str) -> Result<Bytes, UpstreamError> {
        if let Err(reason) = crate::fault::key_fetch_fault() {
            return Err(UpstreamError::Request {
                target: server_name.to_string(),
                reason,
            });
        }
        if let Some(link) = &self.link {
            return super::crossing::fetch_server_keys(link, server_name).await;
        }
        let target = server_name.to_string();
        // A fixed upstream (a protected server's federation listener) is asked directly; a
        // federation upstream resolves the server name first.
        let url = match (&self.base, &self.resolver) {
            (Some(base), _) => format!("{base}/_matrix/key/v2/server"),
            (None, Some(resolver)) => {
                resolver
                    .resolve(server_name)
                    .await
                    .map_err(|e| UpstreamError::NoRoute {
                        target: target.clone(),
                        reason: e.to_string(),
                    })?;
                format!("http://{server_name}/_matrix/key/v2/server")
            }
            (None, None) => {
                return Err(UpstreamError::NoRoute {
                    target,
                    reason: "not a federation upstream".into(),
                })
            }
        };
        let uri: Uri = url.parse().map_err(|_| UpstreamError::Request {
            target: target.clone(),
            reason: "bad server name".into(),
        })?;
        let req = Request::get(uri)
            .header(http::header::HOST, server_name)
            .body(Full::new(Bytes::new()))
            .map_err(|e| UpstreamError::Request {
                target: target.clone(),
                reason: e.to_string(),
            })?;
        let limit = 256 * 1024;
        let fut = async {
            let resp = self.first_byte(req, &target).await?;
            if !resp.status().is_success() {
                return Err(UpstreamError::Request {
                    target: target.clone(),
                    reason: format!("key server answered {}", resp.status()),
                });
            }
            let body = Limited::new(resp.into_body(), limit)
                .collect()
                .await
                .map_err(|_| UpstreamError::TooLarge {
                    target: target.clone(),
                    limit,
                })?;
            Ok(body.to_bytes())
        };
        self.watched(target.clone(), fut).await
    }

    /// The watch of this upstream (in flight, stuck, timeouts; `/health`).
    pub fn watch(&self) -> &Arc<Watch> {
        &self.watch
    }

    /// Sends `req` and waits for the response head, at most the first-byte deadline.
    async fn first_byte(
        &self,
        req: Request<Full<Bytes>>,
        target: &str,
    ) -> Result<http::Response<hyper::body::Incoming>, UpstreamError> {
        let send = async {
            match crate::fault::upstream_fault() {
                Some(crate::fault::UpstreamFault::Reset) => {
                    return Err(UpstreamError::Request {
                        target: target.to_string(),
                        reason: "connection reset by peer (injected fault)".into(),
                    })
                }
                Some(crate::fault::UpstreamFault::Hang) => std::future::pending::<()>().await,
                None => {}
            }
            self.client
                .request(req)
                .await
                .map_err(|e| classify_client_error(target, e))
        };
        match tokio::time::timeout(self.timeouts.first_byte, send).await {
            Ok(r) => r,
            Err(_) => Err(UpstreamError::Timeout {
                target: target.to_string(),
                phase: TimeoutPhase::FirstByte,
            }),
        }
    }

    /// Runs one exchange under the total deadline, in the watch (in flight while it runs; its
    /// outcome counted).
    async fn watched<T>(
        &self,
        target: String,
        fut: impl Future<Output = Result<T, UpstreamError>>,
    ) -> Result<T, UpstreamError> {
        let pending = self.watch.start();
        let r = match tokio::time::timeout(self.timeouts.total, fut).await {
            Ok(r) => r,
            Err(_) => Err(UpstreamError::Timeout {
                target,
                phase: TimeoutPhase::Total,
            }),
        };
        pending.finish(match &r {
            Ok(_) => Ok(()),
            Err(e) => Err(e.kind()),
        });
        r
    }

    /// The guard's own `GET` to a protected homeserver's admin API (a fixed upstream) with a
    /// bearer token: a question about the protected side (a room's state), carrying nothing
    /// from the remote side; the answer only feeds the guard's policy state, never a peer.
    /// Returns the status and the body (at most `max_response` bytes).
    pub async fn admin_get(
        &self,
        path: &str,
        token: &str,
    ) -> Result<(StatusCode, Bytes), UpstreamError> {
        self.admin_request(http::Method::GET, path, token, None)
            .await
    }

    /// The guard's own `POST` of a JSON body to a protected homeserver's admin API (e.g. a
    /// server notice to one of its users); otherwise as [`Upstream::admin_get`].
    pub async fn admin_post(
        &self,
        path: &str,
        token: &str,
        body: Bytes,
    ) -> Result<(StatusCode, Bytes), UpstreamError> {
        self.admin_request(http::Method::POST, path, token, Some(body))
            .await
    }

    async fn admin_request(
        &self,
        method: http::Method,
        path: &str,
        token: &str,
        body: Option<Bytes>,
    ) -> Result<(StatusCode, Bytes), UpstreamError> {
        let Some(base) = &self.base else {
            return Err(UpstreamError::NoRoute {
                target: "admin api".into(),
                reason: "not a fixed upstream".into(),
            });
        };
        let target = "admin api".to_string();
        let uri: Uri = format!("{base}{path}")
            .parse()
            .map_err(|_| UpstreamError::Request {
                target: target.clone(),
                reason: "bad path".into(),
            })?;
        let mut req = Request::builder()
            .method(method)
            .uri(uri)
            .header(http::header::AUTHORIZATION, format!("Bearer {token}"));
        if body.is_some() {
            req = req.header(http::header::CONTENT_TYPE, "application/json");
        }
        let req =
            req.body(Full::new(body.unwrap_or_default()))
                .map_err(|e| UpstreamError::Request {
                    target: target.clone(),
                    reason: e.to_string(),
                })?;
        let limit = self.max_response;
        let fut = async {
            let resp = self.first_byte(req, &target).await?;
            let status = resp.status();
            let body = Limited::new(resp.into_body(), limit)
                .collect()
                .await
                .map_err(|_| UpstreamError::TooLarge {
                    target: target.clone(),
                    limit,
                })?;
            Ok((status, body.to_bytes()))
        };
        self.watched(target.clone(), fut).await
    }

    /// Sends a permitted request. `server_name` is the destination for federation upstreams
    /// (ignored for fixed ones); `host` is the Host header to send.
    pub async fn send(
        &self,
        permit: Permit<Forward>,
        server_name: &str,
        host: &str,
    ) -> Result<UpstreamResponse, UpstreamError> {
        self.send_collecting(permit, server_name, host, None).await
    }

    /// [`Upstream::send`] for media answers: the body is collected up to `spill.max` bytes,
    /// in memory up to `spill.threshold` and in a temporary file beyond
    /// ([`crate::media::spill`]), so a large file waits for its verdict without taking memory.
    pub async fn send_media(
        &self,
        permit: Permit<Forward>,
        server_name: &str,
        host: &str,
        spill: &SpillSpec,
    ) -> Result<UpstreamResponse, UpstreamError> {
        self.send_collecting(permit, server_name, host, Some(spill))
            .await
    }

    async fn send_collecting(
        &self,
        permit: Permit<Forward>,
        server_name: &str,
        host: &str,
        spill: Option<&SpillSpec>,
    ) -> Result<UpstreamResponse, UpstreamError> {
        if let Some(link) = &self.link {
            if spill.is_some() {
                return Err(UpstreamError::NotCarried {
                    target: server_name.to_string(),
                    reason: "media files do not cross a split appliance".into(),
                });
            }
            return super::crossing::forward(link, permit, server_name).await;
        }
        let target = self.base.clone().unwrap_or_else(|| server_name.to_string());
        if let Some(r) = &self.resolver {
            r.resolve(server_name)
                .await
                .map_err(|e| UpstreamError::NoRoute {
                    target: target.clone(),
                    reason: e.to_string(),
                })?;
        }
        let fwd = permit.into_inner();
        let uri = match &self.base {
            Some(base) => format!("{base}{}", fwd.path_and_query),
            None => format!("http://{server_name}{}", fwd.path_and_query),
        };
        let uri: Uri = uri.parse().map_err(|_| UpstreamError::Request {
            target: target.clone(),
            reason: "bad request URI".into(),
        })?;
        let mut req = Request::builder()
            .method(fwd.method)
            .uri(uri)
            .body(Full::new(fwd.body))
            .map_err(|e| UpstreamError::Request {
                target: target.clone(),
                reason: e.to_string(),
            })?;
        let mut headers = fwd.headers;
        strip_hop_by_hop(&mut headers);
        headers.remove(http::header::CONTENT_LENGTH);
        if let Ok(v) = HeaderValue::from_str(host) {
            headers.insert(http::header::HOST, v);
        }
        *req.headers_mut() = headers;
        self.roundtrip(req, target, spill).await
    }

    /// The guard's own `GET` of a media file that a federation media answer points to with a
    /// `Location` (only to hosts of `[media] redirect_hosts`, checked by the caller): the URL
    /// comes from the answer, nothing from the requester goes with it, and the file is
    /// inspected before anything of it is released. A fixed upstream (`scheme://host:port`).
    pub async fn fetch_redirect(
        &self,
        path_and_query: &str,
        host: &str,
        spill: &SpillSpec,
    ) -> Result<UpstreamResponse, UpstreamError> {
        let target = self.base.clone().unwrap_or_else(|| host.to_string());
        let base = self
            .base
            .as_deref()
            .ok_or_else(|| UpstreamError::BadUrl("redirect target".into()))?;
        let uri: Uri =
            format!("{base}{path_and_query}")
                .parse()
                .map_err(|_| UpstreamError::Request {
                    target: target.clone(),
                    reason: "bad redirect URI".into(),
                })?;
        let req = Request::get(uri)
            .header(http::header::HOST, host)
            .body(Full::new(Bytes::new()))
            .map_err(|e| UpstreamError::Request {
                target: target.clone(),
                reason: e.to_string(),
            })?;
        self.roundtrip(req, target, Some(spill)).await
    }

    async fn roundtrip(
        &self,
        req: Request<Full<Bytes>>,
        target: String,
        spill: Option<&SpillSpec>,
    ) -> Result<UpstreamResponse, UpstreamError> {
        let fut = async {
            let resp = self.first_byte(req, &target).await?;
            let (parts, body) = resp.into_parts();
            if let Some(spill) = spill {
                let body = crate::media::spill::collect(
                    body,
                    spill.max,
                    spill.threshold,
                    spill.dir.as_deref(),
                )
                .await
                .map_err(|e| match e {
                    crate::media::spill::SpillError::TooLarge { limit } => {
                        UpstreamError::TooLarge {
                            target: target.clone(),
                            limit,
                        }
                    }
                    other => UpstreamError::Request {
                        target: target.clone(),
                        reason: other.to_string(),
                    },
                })?;
                return Ok(UpstreamResponse {
                    status: parts.status,
                    headers: parts.headers,
                    body: body.into_bytes(),
                    released: None,
                });
            }
            let body = Limited::new(body, self.max_response)
                .collect()
                .await
                .map_err(|e| {
                    if e.downcast_ref::<http_body_util::LengthLimitError>()
                        .is_some()
                    {
                        UpstreamError::TooLarge {
                            target: target.clone(),
                            limit: self.max_response,
                        }
                    } else {
                        UpstreamError::Request {
                            target: target.clone(),
                            reason: e.to_string(),
                        }
                    }
                })?;
            Ok(UpstreamResponse {
                status: parts.status,
                headers: parts.headers,
                body: body.to_bytes(),
                released: None,
            })
        };
        self.watched(target.clone(), fut).await
    }
}

impl UpstreamError {
    /// The failure kind (a fixed metric label) and, for timeouts, the phase.
    pub fn kind(&self) -> (&'static str, Option<TimeoutPhase>) {
        match self {
            Self::Connect { .. } => ("connect", None),
            Self::NoRoute { .. } => ("no_route", None),
            Self::Request { .. } => ("request", None),
            Self::Timeout { phase, .. } => ("timeout", Some(*phase)),
            Self::TooLarge { .. } => ("too_large", None),
            Self::NotCarried { .. } => ("not_carried", None),
            Self::Busy { .. } => ("busy", None),
            Self::BadUrl(_) => ("bad_url", None),
        }
    }
}

fn classify_client_error(target: &str, e: hyper_util::client::legacy::Error) -> UpstreamError {
    if e.is_connect() {
        // The connector's io::Error carries the reason (no route, refused, TLS failure).
        let reason = std::error::Error::source(&e)
            .map(|s| s.to_string())
            .unwrap_or_else(|| e.to_string());
        return UpstreamError::Connect {
            target: target.to_string(),
            source: io::Error::other(reason),
        };
    }
    UpstreamError::Request {
        target: target.to_string(),
        reason: e.to_string(),
    }
}
