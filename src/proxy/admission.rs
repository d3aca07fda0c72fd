//! Admission: what a peer may hold of the guard before it is authenticated (`[admission]`).
//!
//! * **Connection caps.** Every listener counts open connections, in total and per peer address
//!   (the inbound listener on its own; the proxy-protocol and CONNECT listeners together). A
//!   connection over a cap is answered once with 503 `M_LIMIT_EXCEEDED` and `Retry-After` (on
//!   the inbound listener after the TLS handshake) and closed; federation senders retry. At most
//!   [`TURN_AWAY_AT_ONCE`] such answers are in progress at a time; beyond that a connection over
//!   the cap is closed without a word. A CONNECT tunnel holds its connection's slot until the
//!   tunnel ends.
//! * **Timeouts.** Every listener has a head timeout (`header_timeout_ms`, also the longest a
//!   keep-alive connection idles between requests), TLS handshakes (inbound and inside CONNECT)
//!   a handshake timeout, and every request body a deadline from the end of its head
//!   (`body_timeout_ms`): a body not complete by then is answered with 408 and its connection
//!   closed.
//! * **Bodies before authentication.** Before a body is read, the head has passed the
//!   exchange's checks (endpoint catalogued, X-Matrix header well-formed, origin allowed,
//!   destination protected) and, where the signature is to be verified, the origin's key named
//!   in the header must be obtainable ([`read_body`]); otherwise the body is never read. A body
//!   is then read against a byte budget per direction (`body_budget`), of which one origin (the
//!   X-Matrix origin named in the head, else the peer address) may hold `body_budget_per_origin`.
//!   A declared `Content-Length` is taken from the budget before the first byte is read; a
//!   chunked body takes each chunk as it arrives. An exhausted budget is answered with 503
//!   `M_LIMIT_EXCEEDED` and `Retry-After`; the body is not read further. What a request took
//!   is given back when its exchange ends. So the bodies the guard holds at once are bounded by
//!   twice `body_budget` (both directions), whatever the number of connections.
//! * **Key fetches started by request heads.** Per server the key cache fetches at most once a
//!   minute (`keys::remote`). Over all servers, a head whose origin key is not cached needs a
//!   permit of the guard's key gate: at most `key_fetch_concurrency` such fetches at once and
//!   `key_fetches_per_second` new ones per second (a token bucket). Without a permit the head
//!   is answered 503 `M_LIMIT_EXCEEDED` with `Retry-After` and nothing is fetched (the origin is
//!   not marked as tried). Key fetches for PDU checks and the notary are not gated here (they
//!   follow authenticated requests or the protected servers' own queries).
//! * **Memory back to the system** ([`memory`], started by `serve`). glibc's malloc keeps
//!   freed memory in its arenas and raises its mmap threshold to the largest block freed, so a
//!   burst of large bodies used to leave the process at its peak RSS. The guard fixes the mmap
//!   threshold (large bodies get their own mappings, unmapped when freed), bounds the arenas and
//!   trims them every two seconds. Measured in the lab (`tests/e2e_flood.rs`, 100 connections
//!   pushing 12 MB bodies for 20 s): RSS 27.7 MB before, 42.8 MB at the peak, 29.7 MB right
//!   after. mimalloc (v3, as the global allocator) was measured in the same test and not
//!   chosen: 39–42 MB before, 72–94 MB at the peak and still 58–72 MB 30 s after (also with
//!   `MIMALLOC_PURGE_DELAY=0`); jemalloc's background purging would add a C build of jemalloc
//!   for what the tuned system allocator already does.
use std::collections::HashMap;
use std::net::{IpAddr, SocketAddr};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use bytes::Bytes;
use http::{HeaderValue, Response, StatusCode};
use http_body_util::{BodyExt, Full};
use hyper::body::Incoming;
use hyper::service::service_fn;
use hyper_util::rt::TokioIo;
use tokio::io::{AsyncRead, AsyncWrite};
use tracing::debug;

use super::guard::{Guard, GuardKeyFetcher};

pub mod memory;
use crate::config::admission::AdmissionConfig;
use crate::federation::xmatrix::XMatrix;
use crate::policy::{Direction, Refusal, RefusalReason};
use crate::telemetry as tm;

/// `Retry-After` of every 503 this module answers, in seconds.
pub const RETRY_AFTER_SECS: u64 = 5;
/// Connections over a cap that are answered (503) at once; more are closed without a word.
pub const TURN_AWAY_AT_ONCE: usize = 64;
/// How long answering a connection over a cap may take in all (handshake, head, answer).
const TURN_AWAY_TIMEOUT: Duration = Duration::from_secs(10);

/// The peer address of a request (put into the request's extensions by the exchange).
#[derive(Debug, Clone, Copy)]
pub struct PeerAddr(pub SocketAddr);

/// Which connection table a listener counts in.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Side {
    /// The inbound TLS listener.
    Inbound,
    /// The outbound listeners (proxy protocol and CONNECT).
    Outbound,
}

/// Why a connection was turned away.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Over {
    /// The listener's total.
    Total,
    /// The peer address's share.
    PerIp,
}

impl Over {
    fn cause(self) -> &'static str {
        match self {
            Over::Total => "connections",
            Over::PerIp => "connections_per_ip",
        }
    }
}

/// Caps, timeouts and budgets of one guard.
pub struct Admission {
    cfg: AdmissionConfig,
    inbound: Arc<ConnTable>,
    outbound: Arc<ConnTable>,
    budgets: [Arc<Budget>; 2],
    turn_away: Arc<tokio::sync::Semaphore>,
    keys: KeyGate,
}

impl Admission {
    /// From `[admission]`.
    pub fn new(cfg: &AdmissionConfig) -> Self {
        let budget = |d: Direction| {
            Arc::new(Budget {
                direction: d,
                total: cfg.body_budget,
                per_origin: cfg.body_budget_per_origin,
                state: Mutex::new(BudgetState::default()),
            })
        };
        Admission {
            inbound: Arc::new(ConnTable::new(
                "inbound",
                cfg.inbound_max_connections,
                cfg.inbound_max_connections_per_ip,
            )),
            outbound: Arc::new(ConnTable::new(
                "outbound",
                cfg.outbound_max_connections,
                cfg.outbound_max_connections_per_ip,
            )),
            budgets: [budget(Direction::Inbound), budget(Direction::Outbound)],
            turn_away: Arc::new(tokio::sync::Semaphore::new(TURN_AWAY_AT_ONCE)),
            keys: KeyGate::new(cfg.key_fetch_concurrency, cfg.key_fetches_per_second),
            cfg: cfg.clone(),
        }
    }

    /// A slot for a new connection from `ip`, or which cap it would exceed.
    pub fn open(&self, side: Side, ip: IpAddr) -> Result<ConnSlot, Over> {
        let table = match side {
            Side::Inbound => &self.inbound,
            Side::Outbound => &self.outbound,
        };
        table.open(ip)
    }

    /// Open connections counted for `side` (total, from `ip`).
    pub fn open_connections(&self, side: Side, ip: IpAddr) -> (usize, usize) {
        let table = match side {
            Side::Inbound => &self.inbound,
            Side::Outbound => &self.outbound,
        };
        let s = table.state.lock().unwrap_or_else(|e| e.into_inner());
        (s.0, s.1.get(&ip).copied().unwrap_or(0))
    }

    /// Key fetches for request heads in progress.
    pub fn key_fetches_running(&self) -> usize {
        self.cfg.key_fetch_concurrency.max(1) - self.keys.running.available_permits()
    }

    /// Bytes of unauthenticated bodies held in `direction`.
    pub fn body_bytes_held(&self, direction: Direction) -> usize {
        self.budget(direction)
            .state
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .used
    }

    fn budget(&self, direction: Direction) -> &Arc<Budget> {
        match direction {
            Direction::Inbound => &self.budgets[0],
            Direction::Outbound => &self.budgets[1],
        }
    }

    pub fn header_timeout(&self) -> Duration {
        Duration::from_millis(self.cfg.header_timeout_ms)
    }
    pub fn body_timeout(&self) -> Duration {
        Duration::from_millis(self.cfg.body_timeout_ms)
    }
    pub fn handshake_timeout(&self) -> Duration {
        Duration::from_millis(self.cfg.tls_handshake_timeout_ms)
    }

    /// An HTTP/1 server builder with the head timeout.
    pub fn http1(&self) -> hyper::server::conn::http1::Builder {
        let mut b = hyper::server::conn::http1::Builder::new();
        b.timer(hyper_util::rt::TokioTimer::new())
            .header_read_timeout(self.header_timeout());
        b
    }

    /// Answers a connection over a cap with one 503 and closes it, in a task of its own; if
    /// [`TURN_AWAY_AT_ONCE`] answers are in progress, closes it at once. `tls`: the inbound
    /// listener's acceptor (the answer needs the handshake first).
    pub fn turn_away(
        &self,
        listener: tm::Listener,
        tcp: tokio::net::TcpStream,
        addr: SocketAddr,
        over: Over,
        tls: Option<tokio_rustls::TlsAcceptor>,
    ) {
        record_refused(listener, over.cause());
        debug!(%addr, listener = listener.as_str(), cause = over.cause(), "connection over the cap");
        let Ok(permit) = self.turn_away.clone().try_acquire_owned() else {
            drop(tcp);
            return;
        };
        let builder = self.http1();
        let handshake = self.handshake_timeout();
        tokio::spawn(async move {
            let _permit = permit;
            let answer = async {
                match tls {
                    None => answer_503(builder, tcp).await,
                    Some(acceptor) => {
                        if let Ok(Ok(s)) =
                            tokio::time::timeout(handshake, acceptor.accept(tcp)).await
                        {
                            answer_503(builder, s).await;
                        }
                    }
                }
            };
            let _ = tokio::time::timeout(TURN_AWAY_TIMEOUT, answer).await;
        });
    }
}

/// Serves one request on `io` with 503 `M_LIMIT_EXCEEDED`, then closes.
async fn answer_503<I>(mut builder: hyper::server::conn::http1::Builder, io: I)
where
    I: AsyncRead + AsyncWrite + Unpin + Send + 'static,
{
    let svc = service_fn(|_req: http::Request<Incoming>| async {
        let r = overloaded("too many connections");
        let mut resp = limit_response(&r);
        resp.headers_mut()
            .insert(http::header::CONNECTION, HeaderValue::from_static("close"));
        Ok::<_, std::convert::Infallible>(resp)
    });
    let _ = builder
        .keep_alive(false)
        .serve_connection(TokioIo::new(io), svc)
        .await;
}

/// The refusal for an exhausted cap or budget (503 `M_LIMIT_EXCEEDED`).
pub fn overloaded(msg: &str) -> Refusal {
    Refusal::new(
        StatusCode::SERVICE_UNAVAILABLE,
        "M_LIMIT_EXCEEDED",
        RefusalReason::Overloaded,
        msg,
    )
}

/// Whether `r` is a refusal of this module that carries `Retry-After`.
pub fn is_retryable(r: &Refusal) -> bool {
    r.status == StatusCode::SERVICE_UNAVAILABLE && r.errcode == "M_LIMIT_EXCEEDED"
}

/// The Matrix error response for an exhausted cap or budget: `retry_after_ms` in the body and
/// `Retry-After` in the head.
pub fn limit_response(r: &Refusal) -> Response<Full<Bytes>> {
    let body = serde_json::json!({
        "errcode": r.errcode,
        "error": r.message,
        "retry_after_ms": RETRY_AFTER_SECS * 1000,
    });
    let mut resp = Response::new(Full::new(Bytes::from(body.to_string())));
    *resp.status_mut() = r.status;
    resp.headers_mut().insert(
        http::header::CONTENT_TYPE,
        HeaderValue::from_static("application/json"),
    );
    resp.headers_mut().insert(
        http::header::RETRY_AFTER,
        HeaderValue::from(RETRY_AFTER_SECS),
    );
    resp
}

fn record_refused(listener: tm::Listener, cause: &'static str) {
    metrics::counter!(tm::ADMISSION_REFUSED_TOTAL,
        "listener" => listener.as_str(),
        "cause" => cause)
    .increment(1);
}

fn listener_of(direction: Direction) -> tm::Listener {
    match direction {
        Direction::Inbound => tm::Listener::Inbound,
        // The proxy and CONNECT listeners share the outbound budget.
        Direction::Outbound => tm::Listener::Proxy,
    }
}

// ---------------------------------------------------------------------------------------------
// Connection tables

struct ConnTable {
    /// `inbound` or `outbound` (label of [`tm::CONNECTIONS_OPEN`]).
    side: &'static str,
    max: usize,
    max_per_ip: usize,
    /// (open in total, open per address)
    state: Mutex<(usize, HashMap<IpAddr, usize>)>,
}

impl ConnTable {
    fn new(side: &'static str, max: usize, max_per_ip: usize) -> Self {
        ConnTable {
            side,
            max,
            max_per_ip,
            state: Mutex::new((0, HashMap::new())),
        }
    }

    fn open(self: &Arc<Self>, ip: IpAddr) -> Result<ConnSlot, Over> {
        let mut s = self.state.lock().unwrap_or_else(|e| e.into_inner());
        if s.0 >= self.max {
            return Err(Over::Total);
        }
        let n = s.1.entry(ip).or_insert(0);
        if *n >= self.max_per_ip {
            return Err(Over::PerIp);
        }
        *n += 1;
        s.0 += 1;
        metrics::gauge!(tm::CONNECTIONS_OPEN, "side" => self.side).set(s.0 as f64);
        Ok(ConnSlot(Arc::new(SlotInner {
            table: self.clone(),
            ip,
        })))
    }
}

struct SlotInner {
    table: Arc<ConnTable>,
    ip: IpAddr,
}

impl Drop for SlotInner {
    fn drop(&mut self) {
        let mut s = self.table.state.lock().unwrap_or_else(|e| e.into_inner());
        s.0 = s.0.saturating_sub(1);
        metrics::gauge!(tm::CONNECTIONS_OPEN, "side" => self.table.side).set(s.0 as f64);
        if let Some(n) = s.1.get_mut(&self.ip) {
            *n -= 1;
            if *n == 0 {
                s.1.remove(&self.ip);
            }
        }
    }
}

/// An open connection's place in its table; clones share it, the last one gives it back.
#[derive(Clone)]
pub struct ConnSlot(
    // Held for its `Drop`.
    #[allow(dead_code)] Arc<SlotInner>,
);

// ---------------------------------------------------------------------------------------------
// Body budget

struct Budget {
    direction: Direction,
    total: usize,
    per_origin: usize,
    state: Mutex<BudgetState>,
}

#[derive(Default)]
struct BudgetState {
    used: usize,
    by_origin: HashMap<String, usize>,
}

/// Why a budget refused bytes.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Exhausted {
    Total,
    Origin,
}

impl Budget {
    fn take(&self, origin: &str, n: usize) -> Result<(), Exhausted> {
        let mut s = self.state.lock().unwrap_or_else(|e| e.into_inner());
        let mine = s.by_origin.get(origin).copied().unwrap_or(0);
        if mine.saturating_add(n) > self.per_origin {
            return Err(Exhausted::Origin);
        }
        if s.used.saturating_add(n) > self.total {
            return Err(Exhausted::Total);
        }
        s.used += n;
        *s.by_origin.entry(origin.to_string()).or_insert(0) += n;
        let used = s.used;
        drop(s);
        metrics::gauge!(tm::BODY_BUDGET_BYTES, "direction" => self.direction.as_str())
            .set(used as f64);
        Ok(())
    }

    fn give(&self, origin: &str, n: usize) {
        let mut s = self.state.lock().unwrap_or_else(|e| e.into_inner());
        s.used = s.used.saturating_sub(n);
        if let Some(m) = s.by_origin.get_mut(origin) {
            *m = m.saturating_sub(n);
            if *m == 0 {
                s.by_origin.remove(origin);
            }
        }
        let used = s.used;
        drop(s);
        metrics::gauge!(tm::BODY_BUDGET_BYTES, "direction" => self.direction.as_str())
            .set(used as f64);
    }
}

/// Bytes a request holds of its direction's budget; given back when dropped (keep it until
/// the exchange ends).
pub struct BodyHold {
    budget: Arc<Budget>,
    origin: String,
    held: usize,
}

impl BodyHold {
    fn take(&mut self, n: usize) -> Result<(), Exhausted> {
        self.budget.take(&self.origin, n)?;
        self.held += n;
        Ok(())
    }
    /// Bytes held.
    pub fn held(&self) -> usize {
        self.held
    }
}

impl Drop for BodyHold {
    fn drop(&mut self) {
        if self.held > 0 {
            self.budget.give(&self.origin, self.held);
        }
    }
}

fn budget_refusal(direction: Direction, e: Exhausted) -> Refusal {
    let cause = match e {
        Exhausted::Total => "body_budget",
        Exhausted::Origin => "body_budget_origin",
    };
    record_refused(listener_of(direction), cause);
    overloaded("too many request bodies in flight")
}

fn too_large() -> Refusal {
    Refusal::new(
        StatusCode::PAYLOAD_TOO_LARGE,
        "M_TOO_LARGE",
        RefusalReason::TooLarge,
        "request body too large",
    )
}

/// Reads a request body once its head is admitted (see the module notes): the declared size
/// against `[limits] max_request_body`; the origin's key where the signature will be verified;
/// the body against the budget and the body deadline. Keep the returned hold until the
/// exchange ends.
pub async fn read_body(
    guard: &Guard,
    direction: Direction,
    xm: Option<&XMatrix>,
    parts: &http::request::Parts,
    mut body: Incoming,
) -> Result<(Bytes, BodyHold), Refusal> {
    let admission = guard.admission();
    let deadline = Instant::now() + admission.body_timeout();
    let max = guard.limits().max_request_body;
    let declared = parts
        .headers
        .get(http::header::CONTENT_LENGTH)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.parse::<u64>().ok());
    if declared.is_some_and(|n| n > max as u64) {
        return Err(too_large());
    }
    let must_verify = direction == Direction::Outbound || guard.verify_inbound();
    if let (true, Some(x)) = (must_verify, xm) {
        origin_key_obtainable(guard, direction, x).await?;
    }
    let origin = match (xm, parts.extensions.get::<PeerAddr>()) {
        (Some(x), _) => x.origin.as_str().to_ascii_lowercase(),
        (None, Some(p)) => p.0.ip().to_string(),
        (None, None) => String::new(),
    };
    let mut hold = BodyHold {
        budget: admission.budget(direction).clone(),
        origin,
        held: 0,
    };
    let mut buf: Vec<u8> = Vec::new();
    if let Some(n) = declared {
        let n = n as usize;
        hold.take(n).map_err(|e| budget_refusal(direction, e))?;
        buf.reserve_exact(n);
    }
    loop {
        let frame = match tokio::time::timeout_at(deadline.into(), body.frame()).await {
            Err(_) => {
                record_refused(listener_of(direction), "body_timeout");
                return Err(Refusal::new(
                    StatusCode::REQUEST_TIMEOUT,
                    "M_UNKNOWN",
                    RefusalReason::Timeout,
                    "request body not received in time",
                ));
            }
            Ok(None) => break,
            Ok(Some(Err(_))) => {
                return Err(Refusal::new(
                    StatusCode::BAD_REQUEST,
                    "M_BAD_JSON",
                    RefusalReason::BadJson,
                    "request body could not be read",
                ))
            }
            Ok(Some(Ok(f))) => f,
        };
        let Ok(data) = frame.into_data() else {
            continue; // trailers
        };
        if buf.len() + data.len() > max {
            return Err(too_large());
        }
        if declared.is_none() {
            hold.take(data.len())
                .map_err(|e| budget_refusal(direction, e))?;
        }
        buf.extend_from_slice(&data);
    }
    Ok((Bytes::from(buf), hold))
}

/// Refuses a head whose origin key cannot be had: 401 if it is not cached and cannot be
/// fetched, 503 if fetching it would exceed the key gate.
async fn origin_key_obtainable(
    guard: &Guard,
    direction: Direction,
    x: &XMatrix,
) -> Result<(), Refusal> {
    let now = std::time::SystemTime::now();
    let (origin, key_id) = (x.origin.as_str(), x.key.as_str());
    if guard.remote_keys().key(origin, key_id, now).is_some() {
        return Ok(());
    }
    let Some(_permit) = guard.admission().keys.permit(Instant::now()) else {
        record_refused(listener_of(direction), "key_fetches");
        return Err(overloaded("too many key fetches"));
    };
    match guard
        .remote_keys()
        .key_or_fetch(&GuardKeyFetcher(guard), origin, key_id, now)
        .await
    {
        Ok(_) => Ok(()),
        Err(e) => {
            tracing::warn!(origin = %x.origin, "origin key not obtainable, body not read: {e}");
            Err(Refusal::new(
                StatusCode::UNAUTHORIZED,
                "M_UNAUTHORIZED",
                RefusalReason::Auth,
                "X-Matrix signature not verified",
            ))
        }
    }
}

// ---------------------------------------------------------------------------------------------
// Key fetches over all servers

struct KeyGate {
    running: Arc<tokio::sync::Semaphore>,
    per_second: f64,
    /// (tokens, last refill)
    bucket: Mutex<(f64, Instant)>,
}

impl KeyGate {
    fn new(concurrency: usize, per_second: u32) -> Self {
        let per_second = f64::from(per_second.max(1));
        KeyGate {
            running: Arc::new(tokio::sync::Semaphore::new(concurrency.max(1))),
            per_second,
            bucket: Mutex::new((per_second, Instant::now())),
        }
    }

    fn permit(&self, now: Instant) -> Option<KeyFetchPermit> {
        let permit = self.running.clone().try_acquire_owned().ok()?;
        let mut b = self.bucket.lock().unwrap_or_else(|e| e.into_inner());
        let refill = now.saturating_duration_since(b.1).as_secs_f64() * self.per_second;
        b.0 = (b.0 + refill).min(self.per_second);
        b.1 = now;
        if b.0 < 1.0 {
            return None;
        }
        b.0 -= 1.0;
        Some(KeyFetchPermit(permit))
    }
}

/// Held while one key fetch runs.
struct KeyFetchPermit(
    // Held for its `Drop`.
    #[allow(dead_code)] tokio::sync::OwnedSemaphorePermit,
);

#[cfg(test)]
mod tests {
    use super::*;

    fn table(max: usize, per_ip: usize) -> Arc<ConnTable> {
        Arc::new(ConnTable::new("inbound", max, per_ip))
    }

    #[test]
    fn connection_caps_total_and_per_ip_and_release_on_last_clone() {
        let t = table(3, 2);
        let a: IpAddr = "10.0.0.1".parse().unwrap();
        let b: IpAddr = "10.0.0.2".parse().unwrap();
        let s1 = t.open(a).unwrap();
        let s2 = t.open(a).unwrap();
        assert_eq!(t.open(a).err(), Some(Over::PerIp));
        let s3 = t.open(b).unwrap();
        assert_eq!(t.open(b).err(), Some(Over::Total));
        drop(s3);
        let s3 = t.open(b).unwrap();
        // A clone (a CONNECT tunnel) keeps the slot until the last one goes.
        let tunnel = s1.clone();
        drop(s1);
        assert_eq!(t.open(a).err(), Some(Over::Total));
        drop(tunnel);
        drop(s3);
        let _s4 = t.open(a).unwrap();
        drop(s2);
        assert_eq!(t.state.lock().unwrap().0, 1);
    }

    #[test]
    fn budget_per_origin_and_total_and_given_back() {
        let b = Arc::new(Budget {
            direction: Direction::Inbound,
            total: 100,
            per_origin: 60,
            state: Mutex::new(BudgetState::default()),
        });
        let hold = |o: &str| BodyHold {
            budget: b.clone(),
            origin: o.into(),
            held: 0,
        };
        let mut x = hold("x");
        x.take(50).unwrap();
        assert_eq!(x.take(11), Err(Exhausted::Origin));
        let mut y = hold("y");
        y.take(50).unwrap();
        let mut z = hold("z");
        assert_eq!(z.take(1), Err(Exhausted::Total));
        drop(x);
        z.take(50).unwrap();
        assert_eq!(b.state.lock().unwrap().used, 100);
        drop(y);
        drop(z);
        let s = b.state.lock().unwrap();
        assert_eq!(s.used, 0);
        assert!(s.by_origin.is_empty());
    }

    #[test]
    fn key_fetches_bounded_at_once_and_per_second() {
        let t0 = Instant::now();
        let g = KeyGate::new(2, 3);
        let a = g.permit(t0).expect("first");
        let b = g.permit(t0).expect("second");
        assert!(g.permit(t0).is_none(), "two at once");
        drop(a);
        let c = g.permit(t0).expect("third (one finished)");
        drop((b, c));
        assert!(g.permit(t0).is_none(), "three per second");
        // A third of a second later one more is allowed, then none.
        let t1 = t0 + Duration::from_millis(340);
        let d = g.permit(t1).expect("refilled");
        drop(d);
        assert!(g.permit(t1).is_none());
        // The bucket holds at most one second's worth.
        let t2 = t1 + Duration::from_secs(60);
        for _ in 0..3 {
            drop(g.permit(t2).expect("burst"));
        }
        assert!(g.permit(t2).is_none());
    }

    #[test]
    fn config_checks() {
        let c = AdmissionConfig {
            body_budget_per_origin: 1000,
            body_budget: 10,
            inbound_max_connections_per_ip: 5000,
            header_timeout_ms: 0,
            ..Default::default()
        };
        let keys: Vec<&str> = c.check(2000).into_iter().map(|(k, _)| k).collect();
        assert_eq!(
            keys,
            [
                "header_timeout_ms",
                "inbound_max_connections_per_ip",
                "body_budget_per_origin",
                "body_budget"
            ]
        );
        assert!(AdmissionConfig::default()
            .check(crate::config::LimitsConfig::default().max_request_body)
            .is_empty());
    }
}
