//! One federation exchange (request + response) as named phases over one context.
//!
//! Phases, in order (pingora style; each is a function named like the phase):
//! 1. **classify** ([`handle`]) — match method + path against the endpoint catalog; unknown →
//!    refuse.
//! 2. **identify** ([`identify`]) — who talks to whom, from the head alone: X-Matrix origin and
//!    destination, the protected server, the peer; a denied origin, an unprotected destination,
//!    malformed or missing authentication → refuse, before any key fetch or body byte.
//! 3. **admit** ([`admit`]) — what else the head decides before the body is read: a room paused
//!    towards the answer's side.
//! 4. **read** ([`read`], [`admission::read_body`](super::admission::read_body)) — a declared
//!    length over the limit refused, the origin's key obtainable (where it will be verified),
//!    then the body up to the limit,
//!    against the budget of unauthenticated bodies and the body deadline.
//! 5. **recall** ([`replay::recall`](super::replay::recall)) — a retried transaction finds the
//!    first attempt's decision.
//! 6. **inspect** ([`inspect::inspect_request`]) — strict JSON, transaction limits, typed views
//!    over the raw bytes (skipped for a recalled transaction).
//! 7. **authenticate** ([`authenticate::verify_x_matrix`], [`authenticate::check_origin`]) — the
//!    X-Matrix signature with keys the guard fetched itself (outbound always, inbound per
//!    `[inbound] verify_signatures`); a transaction's `origin` must be the signed origin.
//! 8. **decide** ([`decide`]) — rooms learned, labels looked up, PDU integrity, then the policy
//!    over request, PDUs, EDUs → `Permit<Forward>` or refusal; a recalled decision is replayed
//!    instead (`policy::replay`); a decision that withheld something is remembered.
//! 9. **forward** ([`respond::send_upstream`], or the guard's notary) — the upstream client sends
//!    the permitted bytes.
//! 10. **inspect_response** and **release** ([`respond::release`]) — strict JSON of the response
//!     (malformed → 502), the policy over it → `Permit<Release>`; PDUs withheld from a transaction
//!     get their per-PDU errors in the answer.
//!
//! Every refusal is a Matrix error to the sender, a log line and a metric with a bounded
//! reason label. Nothing in this module forwards without a permit.
use std::net::SocketAddr;
use std::time::{Duration, Instant};

use bytes::Bytes;
use futures_util::FutureExt;
use http::request::Parts;
use http::{HeaderValue, Method, Response, StatusCode};
use http_body_util::{BodyExt, Full};
use hyper::body::Incoming;
use tracing::{info, warn, Instrument};

use super::guard::Guard;
use super::replay::{self, TxnKey};
use super::upstream::strip_hop_by_hop;
use super::{integrity, pause, rewrite, room_labels, rooms};
use crate::federation::catalog::{self, Direction as Part, Endpoint, Handler};
use crate::federation::xmatrix::XMatrix;
use crate::policy::{Direction, ExchangeCtx, Forward, Permit, Refusal, RefusalReason};
use crate::telemetry as tm;

mod authenticate;
mod inspect;
mod respond;

/// Where a request entered the guard.
#[derive(Debug, Clone)]
pub enum Entry {
    /// Inbound TLS listener; `sni` as sent by the remote.
    Inbound { sni: Option<String> },
    /// Outbound (CONNECT tunnel or Synapse proxy protocol); `destination` as named by the
    /// protected homeserver's proxy request (CONNECT authority or `matrix-federation://` host).
    Outbound { destination: String },
    /// From the other half of a split appliance (`crate::split`), already decided there:
    /// `direction` of the exchange, `destination` as the other half named it.
    Crossed {
        direction: Direction,
        destination: String,
    },
}

impl Entry {
    fn direction(&self) -> Direction {
        match self {
            Entry::Inbound { .. } => Direction::Inbound,
            Entry::Outbound { .. } => Direction::Outbound,
            Entry::Crossed { direction, .. } => *direction,
        }
    }
}

/// Where the request body comes from.
enum Body {
    /// A listener's connection: read by phase **read**.
    Wire(Incoming),
    /// A frame from the other half of a split appliance, with the proof that it was verified.
    Crossed(Bytes, crate::split::Crossed),
}

pub type GuardResponse = Response<Full<Bytes>>;

/// Builds the Matrix error response for a refusal.
pub fn refusal_response(r: &Refusal) -> GuardResponse {
    if super::admission::is_retryable(r) {
        return super::admission::limit_response(r);
    }
    let mut resp = Response::new(Full::new(Bytes::from(r.body())));
    *resp.status_mut() = r.status;
    resp.headers_mut().insert(
        http::header::CONTENT_TYPE,
        HeaderValue::from_static("application/json"),
    );
    // Every 503 is temporary (keys or a room version not obtainable yet, an upstream down):
    // say when to try again; federation senders retry anyway.
    if r.status == StatusCode::SERVICE_UNAVAILABLE {
        resp.headers_mut().insert(
            http::header::RETRY_AFTER,
            HeaderValue::from(super::admission::RETRY_AFTER_SECS),
        );
    }
    resp
}

fn refuse(
    reason: RefusalReason,
    status: StatusCode,
    errcode: &'static str,
    msg: impl Into<String>,
) -> Refusal {
    Refusal::new(status, errcode, reason, msg)
}

/// Handles one request end to end; always produces a response.
pub async fn handle(
    guard: &Guard,
    entry: Entry,
    client: SocketAddr,
    req: http::Request<Incoming>,
    path_and_query: String,
) -> GuardResponse {
    let (parts, body) = req.into_parts();
    handle_body(
        guard,
        entry,
        client,
        http::Request::from_parts(parts, Body::Wire(body)),
        path_and_query,
    )
    .await
}

/// Handles a request from the other half of a split appliance (`crate::split`): the phases of
/// this half (classify, identify, admit, forward, the answer's inspection and release) on the
/// other half's decision. Always produces an answer for the link.
pub async fn handle_crossed(
    guard: &Guard,
    proof: crate::split::Crossed,
    req: crate::split::wire::Request,
) -> crate::split::wire::Response {
    let id = req.id;
    let direction = match guard.split().map(|s| s.half()) {
        // HIGH receives the LOW side's requests to protected servers; LOW the protected
        // servers' requests to the LOW side.
        Some(crate::split::Half::High) => Direction::Inbound,
        Some(crate::split::Half::Low) => Direction::Outbound,
        None => {
            return crate::split::wire::Response {
                id,
                status: 500,
                body: Some(serde_json::json!({"errcode": "M_UNKNOWN", "error": "internal error"})),
            }
        }
    };
    let resp = match crossed_request(&req) {
        Ok((http_req, body)) => {
            let path = req.path.clone();
            let entry = Entry::Crossed {
                direction,
                destination: req.destination.clone(),
            };
            let (parts, ()) = http_req.into_parts();
            let client = SocketAddr::from(([0, 0, 0, 0], 0));
            handle_body(
                guard,
                entry,
                client,
                http::Request::from_parts(parts, Body::Crossed(body, proof)),
                path,
            )
            .await
        }
        Err(r) => refusal_response(&r),
    };
    let (parts, body) = resp.into_parts();
    let bytes = body
        .collect()
        .await
        .map(|b| b.to_bytes())
        .unwrap_or_default();
    match crate::split::wire::body_value(&bytes) {
        Ok(body) => crate::split::wire::Response {
            id,
            status: parts.status.as_u16(),
            body,
        },
        Err(_) => crate::split::wire::Response {
            id,
            status: 502,
            body: Some(
                serde_json::json!({"errcode": "M_UNKNOWN", "error": "the answer cannot cross the guard"}),
            ),
        },
    }
}

/// The HTTP head and body of a request from the other half.
fn crossed_request(
    req: &crate::split::wire::Request,
) -> Result<(http::Request<()>, Bytes), Refusal> {
    let bad = || {
        refuse(
            RefusalReason::BadJson,
            StatusCode::BAD_REQUEST,
            "M_BAD_JSON",
            "malformed request from the other half",
        )
    };
    let method = Method::from_bytes(req.method.as_bytes()).map_err(|_| bad())?;
    let mut b = http::Request::builder()
        .method(method)
        .uri(req.path.as_str())
        .header(http::header::HOST, req.destination.as_str());
    if let Some(a) = &req.auth {
        b = b.header(http::header::AUTHORIZATION, a.as_str());
    }
    let body = match &req.body {
        Some(v) => {
            b = b.header(http::header::CONTENT_TYPE, "application/json");
            Bytes::from(crate::split::wire::body_bytes(v).map_err(|_| bad())?)
        }
        None => Bytes::new(),
    };
    Ok((b.body(()).map_err(|_| bad())?, body))
}

async fn handle_body(
    guard: &Guard,
    entry: Entry,
    client: SocketAddr,
    mut req: http::Request<Body>,
    path_and_query: String,
) -> GuardResponse {
    req.extensions_mut()
        .insert(super::admission::PeerAddr(client));
    let started = Instant::now();
    let direction = entry.direction();
    let method = req.method().clone();
    let path = path_and_query.split('?').next().unwrap_or("").to_string();
    let matched = catalog::lookup(&method, &path);
    let endpoint_id = matched.as_ref().map(|m| m.endpoint.id).unwrap_or("unknown");
    let span = tracing::info_span!("exchange", direction = direction.as_str(), endpoint = endpoint_id, peer = tracing::field::Empty, txn = tracing::field::Empty, %client);
    // The claimed X-Matrix origin, for the audit record of a refusal.
    let claimed_origin = req
        .headers()
        .get(http::header::AUTHORIZATION)
        .and_then(|v| super::perpdu::parse_x_matrix(v).ok())
        .map(|x| x.origin.to_string());
    let (resp, req_bytes) = async {
        let mut req_bytes = 0usize;
        let result = match matched {
            None => Err(unknown_endpoint(guard, &method, &path)),
            Some(m) => {
                // Path parameters, percent-decoded (room ids, event ids); the raw path is what is
                // forwarded.
                let params: Vec<(&'static str, String)> = m
                    .params()
                    .iter()
                    .map(|(k, v)| {
                        (
                            *k,
                            catalog::percent_decode(v)
                                .map(|d| d.into_owned())
                                .unwrap_or_else(|_| v.to_string()),
                        )
                    })
                    .collect();
                // A panic inside the phases must not leave the sender without an answer: it
                // becomes a 500 Matrix error (and nothing was forwarded unless a permit existed).
                let phases = run(
                    guard,
                    &entry,
                    m.endpoint,
                    params,
                    req,
                    path_and_query,
                    &mut req_bytes,
                );
                match std::panic::AssertUnwindSafe(phases).catch_unwind().await {
                    Ok(r) => r,
                    Err(_) => Err(refuse(
                        RefusalReason::Internal,
                        StatusCode::INTERNAL_SERVER_ERROR,
                        "M_UNKNOWN",
                        "internal error",
                    )),
                }
            }
        };
        let resp = match result {
            Ok(r) => r,
            Err(r) => {
                tm::record_refusal(direction, r.reason);
                if r.status.is_server_error() {
                    warn!(
                        status = r.status.as_u16(),
                        errcode = r.errcode,
                        reason = r.reason.as_str(),
                        "refused: {}",
                        r.message
                    );
                } else {
                    info!(
                        status = r.status.as_u16(),
                        errcode = r.errcode,
                        reason = r.reason.as_str(),
                        "refused: {}",
                        r.message
                    );
                }
                super::audit_trail::record_refusal(
                    guard,
                    direction,
                    method.as_str(),
                    &path,
                    claimed_origin.as_deref(),
                    Some(client.to_string()),
                    &r,
                )
                .await;
                refusal_response(&r)
            }
        };
        (resp, req_bytes)
    }
    .instrument(span)
    .await;
    tm::record_request(
        direction,
        endpoint_id,
        resp.status().as_u16(),
        started.elapsed(),
    );
    tm::record_bytes(direction, tm::BodyKind::Request, req_bytes as u64);
    let resp_len = http_body::Body::size_hint(resp.body()).exact().unwrap_or(0);
    tm::record_bytes(direction, tm::BodyKind::Response, resp_len);
    resp
}

fn unknown_endpoint(guard: &Guard, method: &Method, path: &str) -> Refusal {
    // The path is logged truncated: it is not payload, but keep log lines bounded.
    let shown: String = path.chars().take(120).collect();
    // The log names what was asked for (method and path, no query: its values may be payload).
    info!(method = %method, path = %shown.escape_debug(), truncated = path.len() > shown.len(), "unknown endpoint refused");
    match guard.unknown_endpoint_forbidden() {
        true => refuse(
            RefusalReason::UnknownEndpoint,
            StatusCode::FORBIDDEN,
            "M_FORBIDDEN",
            format!("{method} {shown} is not permitted"),
        ),
        false => refuse(
            RefusalReason::UnknownEndpoint,
            StatusCode::NOT_FOUND,
            "M_UNRECOGNIZED",
            "Unrecognized request",
        ),
    }
}

/// What [`identify`] learned from the head.
struct Identity {
    /// The parsed X-Matrix header (endpoints that require one always have it).
    xm: Option<XMatrix>,
    /// The `Host` header as received.
    host_header: Option<String>,
    /// Where the request goes: the protected server inbound, the remote server outbound.
    destination: String,
}

/// The context of one exchange, filled in by the phases in order.
struct Exchange<'g> {
    guard: &'g Guard,
    /// One policy snapshot for the whole exchange (a reload never splits a request).
    policy: std::sync::Arc<crate::policy::Layers>,
    endpoint: &'static Endpoint,
    /// Path parameters, percent-decoded (room ids, event ids); the raw path is what is forwarded.
    params: Vec<(&'static str, String)>,
    id: Identity,
    ctx: ExchangeCtx,
}

impl Exchange<'_> {
    fn param(&self, name: &str) -> Option<&str> {
        self.params
            .iter()
            .find(|(k, _)| *k == name)
            .map(|(_, v)| v.as_str())
    }
    fn direction(&self) -> Direction {
        self.ctx.direction
    }
}

/// Phases 2–10 for a catalogued endpoint.
async fn run(
    guard: &Guard,
    entry: &Entry,
    endpoint: &'static Endpoint,
    params: Vec<(&'static str, String)>,
    req: http::Request<Body>,
    path_and_query: String,
    req_bytes: &mut usize,
) -> Result<GuardResponse, Refusal> {
    let (parts, body) = req.into_parts();
    // Media files are binary: no frame carries them.
    if guard.split().is_some() && endpoint.class == crate::federation::EndpointClass::Media {
        return Err(refuse(
            RefusalReason::MediaRefused,
            StatusCode::FORBIDDEN,
            "M_FORBIDDEN",
            "media files do not cross this guard",
        ));
    }
    let (id, ctx) = identify(guard, entry, endpoint, &parts, &params)?;
    if let (
        Entry::Crossed {
            direction: Direction::Inbound,
            ..
        },
        Some(xm),
    ) = (entry, &id.xm)
    {
        // Nothing from the LOW side speaks as a HIGH server.
        if guard.is_protected(xm.origin.as_str()) {
            return Err(Refusal::forbidden(
                RefusalReason::ServerDenied,
                "origin is a server protected by this guard",
            ));
        }
    }
    let x = Exchange {
        guard,
        policy: guard.policy(),
        endpoint,
        params,
        id,
        ctx,
    };
    admit(&x)?;
    // TI-Messenger profile: the parties must be on the federation list (`proxy::ti_gate`).
    let proxy_destination = match entry {
        Entry::Outbound { destination } | Entry::Crossed { destination, .. } => {
            destination.as_str()
        }
        Entry::Inbound { .. } => "",
    };
    super::ti_gate::admit(
        guard,
        x.direction(),
        endpoint,
        x.id.xm.as_ref(),
        x.id.host_header.as_deref(),
        proxy_destination,
        &x.params,
    )
    .await?;
    let (body, crossed, _held) = match body {
        Body::Wire(b) => {
            let (bytes, held) = read(&x, &parts, b).await?;
            (bytes, None, Some(held))
        }
        Body::Crossed(bytes, proof) => (bytes, Some(proof), None),
    };
    *req_bytes = body.len();

    let mut headers = parts.headers;
    strip_hop_by_hop(&mut headers);
    super::upstream::keep_headers(
        &mut headers,
        super::upstream::REQUEST_HEADERS,
        &[],
        endpoint.request_body.is_json(),
    );
    if endpoint.request_body == crate::federation::catalog::BodyKind::None {
        // No body, no type.
        headers.remove(http::header::CONTENT_TYPE);
    }
    // The X-Matrix authorization crosses as the guard read it (rendered again: parameters it
    // does not know and other spellings stay behind); without one, no `Authorization` crosses.
    headers.remove(http::header::AUTHORIZATION);
    if let Some(v) =
        x.id.xm
            .as_ref()
            .and_then(|xm| HeaderValue::from_str(&xm.to_header_value()).ok())
    {
        headers.insert(http::header::AUTHORIZATION, v);
    }
    let forward = Forward {
        method: parts.method,
        path_and_query,
        headers,
        body: body.clone(),
    };
    let (permit, withheld) = match crossed {
        // The other half's policy decided this request; its frame passed the verifier. This
        // half parses it strictly all the same and learns the room versions it reveals (it
        // judges the answer).
        Some(proof) => {
            let inspected = inspect::inspect_request(guard, x.direction(), endpoint, &body)?;
            rooms::learn(
                guard,
                &x.ctx,
                Part::Request,
                x.param("roomId"),
                &body,
                &inspected.units,
            )
            .await;
            (Permit::crossed(forward, proof), Vec::new())
        }
        None => {
            // Fail closed on a decision that does not finish: nothing is forwarded.
            let deadline = Duration::from_millis(guard.limits().decision_timeout_ms);
            match tokio::time::timeout(deadline, decide(&x, forward, &body)).await {
                Ok(r) => r?,
                Err(_) => {
                    return Err(refuse(
                        RefusalReason::DecisionTimeout,
                        StatusCode::SERVICE_UNAVAILABLE,
                        "M_UNKNOWN",
                        "the guard could not decide in time",
                    ))
                }
            }
        }
    };

    // Media answers are inspected (`proxy::media`) unless the unsafe `allow_unscanned` is set.
    let media = if guard.media().inspects() {
        super::media::target_of(&x.ctx, &x.id.destination, &x.params)
    } else {
        None
    };
    if x.endpoint.class == crate::federation::EndpointClass::Media
        && guard.media().inspects()
        && media.is_none()
    {
        return Err(refuse(
            RefusalReason::MediaRefused,
            StatusCode::FORBIDDEN,
            "M_FORBIDDEN",
            "media request without a media id",
        ));
    }
    // --- forward (or, for key queries to the guard's notary name, answer them)
    let notary = match x.direction() {
        Direction::Outbound => guard.notary_for(&x.id.destination).map(str::to_string),
        Direction::Inbound => None,
    };
    let up = if notary.is_some() {
        if !matches!(
            endpoint.id,
            "key_query_get" | "key_query_get_by_id" | "key_query_post"
        ) {
            return Err(refuse(
                RefusalReason::UnknownEndpoint,
                StatusCode::NOT_FOUND,
                "M_UNRECOGNIZED",
                "the guard's notary name serves key queries only",
            ));
        }
        let servers = super::notary::requested_servers(
            endpoint.id,
            x.param("serverName"),
            &permit.get().body,
        )?;
        super::notary::answer(guard, permit, &servers).await
    } else {
        // A transaction waits for the guard's own delivery of held traffic from the same
        // origin to the same destination (the receiver would answer one of them 429).
        let _slot = match (&x.id.xm, endpoint.handler == Handler::Transaction) {
            (Some(xm), true) => Some(
                guard
                    .txn_slots()
                    .acquire(xm.origin.as_str(), &x.id.destination)
                    .await,
            ),
            _ => None,
        };
        respond::send_upstream(
            guard,
            x.direction(),
            &x.id.destination,
            x.id.host_header.clone(),
            permit,
            media.as_ref().map(|_| guard.media().spill()),
        )
        .await?
    };
    // --- an answer from the other half of a split appliance was released there.
    if up.released.is_some() {
        let mut resp = Response::new(Full::new(up.body));
        *resp.status_mut() = up.status;
        *resp.headers_mut() = up.headers;
        return Ok(merge_withheld(resp, &withheld).await);
    }
    // --- media: the file in the answer is inspected before anything is released.
    let up = match &media {
        Some(target) => super::media::inspect_answer(guard, &x.policy, &x.ctx, target, up).await?,
        None => up,
    };
    let resp = respond::release(
        guard,
        &x.policy,
        &x.ctx,
        x.param("roomId"),
        x.param("queryType"),
        notary.as_deref(),
        up,
    )
    .await?;
    Ok(merge_withheld(resp, &withheld).await)
}

/// PDUs withheld from a transaction get their per-PDU errors in a successful answer.
async fn merge_withheld(resp: GuardResponse, withheld: &[(String, &'static str)]) -> GuardResponse {
    if withheld.is_empty() || resp.status() != StatusCode::OK {
        return resp;
    }
    let (parts, body) = resp.into_parts();
    let body = body
        .collect()
        .await
        .map(|b| b.to_bytes())
        .unwrap_or_default();
    let body = super::perpdu::merge_errors(&body, withheld)
        .map(Bytes::from)
        .unwrap_or(body);
    Response::from_parts(parts, Full::new(body))
}

/// Phase **identify**: who talks to whom, from the head alone.
fn identify(
    guard: &Guard,
    entry: &Entry,
    endpoint: &'static Endpoint,
    parts: &Parts,
    params: &[(&'static str, String)],
) -> Result<(Identity, ExchangeCtx), Refusal> {
    let direction = entry.direction();
    // A request from the other half is identified as it would be where it entered.
    let owned;
    let entry = match entry {
        Entry::Crossed {
            direction: Direction::Inbound,
            ..
        } => {
            owned = Entry::Inbound { sni: None };
            &owned
        }
        Entry::Crossed {
            direction: Direction::Outbound,
            destination,
        } => {
            owned = Entry::Outbound {
                destination: destination.clone(),
            };
            &owned
        }
        e => e,
    };
    // Only X-Matrix endpoints carry an X-Matrix header; others (openid, 3pid, keys) are
    // unauthenticated at this layer.
    // Synapse merges the signatures of several Authorization headers: refuse more than one.
    if parts
        .headers
        .get_all(http::header::AUTHORIZATION)
        .iter()
        .count()
        > 1
    {
        return Err(refuse(
            RefusalReason::Auth,
            StatusCode::UNAUTHORIZED,
            "M_UNAUTHORIZED",
            "more than one Authorization header",
        ));
    }
    let auth = if endpoint.x_matrix {
        parts.headers.get(http::header::AUTHORIZATION)
    } else {
        None
    };
    let xm = match auth {
        Some(v) => Some(super::perpdu::parse_x_matrix(v)?),
        None => None,
    };
    if endpoint.x_matrix && xm.is_none() {
        return Err(refuse(
            RefusalReason::Auth,
            StatusCode::UNAUTHORIZED,
            "M_UNAUTHORIZED",
            "missing X-Matrix Authorization header",
        ));
    }
    let host_header = parts
        .headers
        .get(http::header::HOST)
        .and_then(|v| v.to_str().ok())
        .map(str::to_string);
    let (peer, protected, destination) = match entry {
        Entry::Inbound { sni } => {
            let dest_hint = xm
                .as_ref()
                .and_then(|x| x.destination.as_ref().map(|d| d.to_string()));
            let protected = guard
                .protected_for(dest_hint.as_deref(), sni.as_deref(), host_header.as_deref())
                .ok_or_else(|| {
                    Refusal::forbidden(
                        RefusalReason::ServerDenied,
                        "destination is not a server protected by this guard",
                    )
                })?;
            let peer = xm.as_ref().map(|x| x.origin.to_string());
            // A denied origin is refused before anything else (no key fetch towards it).
            if let Some(p) = &peer {
                guard.static_policy().server_allowed(p)?;
            }
            (
                peer,
                protected.server_name.clone(),
                protected.server_name.clone(),
            )
        }
        Entry::Outbound { destination } => {
            // The Matrix destination: the X-Matrix destination if signed, else the proxy's target.
            let dest = xm
                .as_ref()
                .and_then(|x| x.destination.as_ref().map(|d| d.to_string()))
                .unwrap_or_else(|| destination.clone());
            if let Some(x) = &xm {
                if !guard.is_protected(x.origin.as_str()) {
                    return Err(Refusal::forbidden(
                        RefusalReason::ClientDenied,
                        "origin is not a server protected by this guard",
                    ));
                }
            }
            let protected = xm
                .as_ref()
                .map(|x| x.origin.to_string())
                .unwrap_or_default();
            (Some(dest.clone()), protected, dest)
        }
        // Mapped to its entry above; fail closed all the same.
        Entry::Crossed { .. } => {
            return Err(refuse(
                RefusalReason::Internal,
                StatusCode::INTERNAL_SERVER_ERROR,
                "M_UNKNOWN",
                "internal error",
            ))
        }
    };
    let span = tracing::Span::current();
    if let Some(p) = &peer {
        span.record("peer", p.as_str());
    }
    let txn_id = (endpoint.handler == Handler::Transaction)
        .then(|| {
            params
                .iter()
                .find(|(k, _)| *k == "txnId")
                .map(|(_, v)| v.clone())
        })
        .flatten();
    if let Some(t) = &txn_id {
        span.record("txn", t.as_str());
    }
    let ctx = ExchangeCtx {
        direction,
        endpoint,
        peer,
        protected,
        txn_id,
    };
    Ok((
        Identity {
            xm,
            host_header,
            destination,
        },
        ctx,
    ))
}

/// Phase **admit**: what the head decides before a body byte is read.
fn admit(x: &Exchange<'_>) -> Result<(), Refusal> {
    // A room paused towards the side the answer would reach: nothing of it is fetched.
    if let (Some(room), false) = (
        x.param("roomId"),
        x.endpoint.handler == Handler::Transaction,
    ) {
        let towards = x.direction().reverse();
        if x.guard.pauses().is_paused(towards, room) || x.guard.holds().is_held(towards, room) {
            return Err(crate::policy::pause::not_found());
        }
    }
    Ok(())
}

/// Phase **read**: the whole body, up to the limit, as `admission` admits it (the origin's key
/// obtainable, the budget of unauthenticated bodies, the body deadline); the hold gives the
/// budget back when the exchange ends.
async fn read(
    x: &Exchange<'_>,
    parts: &Parts,
    body: Incoming,
) -> Result<(Bytes, super::admission::BodyHold), Refusal> {
    super::admission::read_body(x.guard, x.direction(), x.id.xm.as_ref(), parts, body).await
}

/// Phases **recall**, **inspect**, **authenticate** and **decide**: the permit to forward, and
/// the event ids of PDUs withheld from a transaction (paused rooms), which get a per-PDU error
/// in the answer on the first attempt and every retry alike.
async fn decide(
    x: &Exchange<'_>,
    forward: Forward,
    body: &Bytes,
) -> Result<(Permit<Forward>, Vec<(String, &'static str)>), Refusal> {
    let guard = x.guard;
    let direction = x.direction();
    crate::fault::policy_stall().await;
    // Idempotent retries: a transaction seen before gets exactly the first decision.
    let txn_key = match (&x.ctx.txn_id, &x.id.xm) {
        (Some(t), Some(xm)) => Some(TxnKey::new(
            direction,
            xm.origin.as_str(),
            &x.id.destination,
            t,
        )),
        _ => None,
    };
    let recalled = match &txn_key {
        Some(k) => replay::recall(guard.store(), k).await?,
        None => None,
    };
    let inspected = match recalled {
        Some(_) => None,
        None => Some(inspect::inspect_request(
            guard, direction, x.endpoint, body,
        )?),
    };
    // Authenticate after strict parsing: the X-Matrix signature against the origin's own keys,
    // fetched by the guard itself. Inbound per `[inbound] verify_signatures`; outbound always:
    // the guard re-signs modified requests with the protected server's key, so it must never
    // sign what the protected server did not (anyone reaching the outbound listener could
    // otherwise speak as that server).
    if let Some(xm) = &x.id.xm {
        if let Some(origin) = inspected.as_ref().and_then(|i| i.txn_origin.as_deref()) {
            authenticate::check_origin(xm, origin)?;
        }
        if direction == Direction::Outbound || guard.verify_inbound() {
            authenticate::verify_x_matrix(
                guard,
                xm,
                &forward.method,
                &forward.path_and_query,
                &x.id.destination,
                body,
            )
            .await?;
        }
    }
    let permit = match (recalled, inspected) {
        (Some(rec), _) => {
            if !rec.body_matches(body) {
                return Err(refuse(
                    RefusalReason::BadJson,
                    StatusCode::BAD_REQUEST,
                    "M_INVALID_PARAM",
                    "transaction id reused with different content",
                ));
            }
            // The path and query of a retry are its own (only the body must match): judged
            // again, as the server name is.
            crate::policy::permit::check_request_text(&*x.policy, &x.ctx, &forward)?;
            tracing::info!("retried transaction: replaying the first decision");
            crate::policy::replay::replay(forward, rec)?
        }
        (None, Some(inspected)) => {
            let room_hint = x.param("roomId");
            let gate = pause::Gate { guard, room_hint };
            let mut units = inspected.units;
            units.rooms = Some(&gate);
            let left_out =
                rooms::settle(guard, &x.ctx, Part::Request, room_hint, body, &units).await?;
            units.omit.extend(left_out);
            let more =
                super::perpdu::unacceptable(guard, &x.ctx, Part::Request, &units, room_hint)?;
            units.omit.extend(more);
            let more = super::ti_gate::screen(guard, &x.ctx, Part::Request, &units).await?;
            units.omit.extend(more);
            room_labels::ensure(guard, &x.ctx, direction, &units, room_hint).await?;
            units.pdu_findings =
                integrity::check(guard, &x.ctx, direction, &units, room_hint).await?;
            // Cheap: headers and a reference-counted body, for replaying a concurrent attempt.
            let template = txn_key.as_ref().map(|_| forward.clone());
            let mut records = Vec::new();
            let mut decided = crate::policy::decide_recorded(
                &*x.policy,
                &x.ctx,
                &units,
                forward,
                &rewrite::ParsedRequestRewriter {
                    rewriter: rewrite::RequestRewriter {
                        guard,
                        ctx: &x.ctx,
                        endpoint: x.endpoint,
                        room_hint,
                    },
                    units: &units,
                },
                Some(&mut records),
            );
            // Recorded (durably) before anything of the body crosses; no record, no crossing.
            super::audit_trail::record_decisions(
                guard,
                &x.ctx,
                false,
                &units,
                &records,
                x.policy.version(),
            )
            .await?;
            if let (Some(key), Some(template)) = (&txn_key, template) {
                if replay::withheld(&decided, body) {
                    // A concurrent attempt of the same transaction decided first: its decision
                    // is the one every attempt gets.
                    if let Some(rec) = replay::remember(guard.store(), key, body, &decided).await? {
                        decided = crate::policy::replay::replay(template, rec);
                    }
                }
            }
            decided?
        }
        (None, None) => unreachable!("a request is either recalled or inspected"),
    };
    let withheld = if x.endpoint.handler == Handler::Transaction && permit.get().body != *body {
        // PDUs the hold queue took over get success: the guard delivers them.
        let mut w =
            super::perpdu::withheld(guard.store(), &guard.txn_limits(), body, &permit.get().body);
        w.retain(|(id, _)| !guard.holds().took_over(direction, id));
        w
    } else {
        Vec::new()
    };
    Ok((permit, withheld))
}
