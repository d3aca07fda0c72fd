//! One federation exchange (request + response) as named phases with one context.
//!
//! Phases, in order (pingora style):
//! 1. **classify** — match method + path against the endpoint catalog; unknown → refuse.
//! 2. **identify** — who talks to whom: X-Matrix origin/destination, the protected server, the
//!    peer; inconsistent or missing authentication → refuse.
//! 3. **read** — buffer the body up to the limit.
//! 4. **inspect** — strict JSON, transaction limits, typed views over the raw bytes.
//! 5. **decide** — the policy over request, PDUs, EDUs → `Permit<Forward>` or refusal.
//! 6. **forward** — the upstream client sends the permitted bytes.
//! 7. **inspect response** — strict JSON of the response; malformed → 502.
//! 8. **release** — the policy over the response → `Permit<Release>`.
//!
//! Every refusal is a Matrix error to the sender, a log line and a metric with a bounded
//! reason label. Nothing in this file forwards without a permit.
use std::net::SocketAddr;
use std::time::Instant;

use bytes::Bytes;
use futures_util::FutureExt;
use http::{HeaderMap, HeaderValue, Method, Response, StatusCode};
use http_body_util::{BodyExt, Full, Limited};
use hyper::body::Incoming;
use tracing::{info, warn, Instrument};

use super::guard::Guard;
use super::upstream::{strip_hop_by_hop, UpstreamError};
use super::{integrity, pause, rewrite, room_labels, rooms};
use crate::federation::catalog::{self, BodyKind, Direction as Part, Endpoint, EventKind, Handler};
use crate::federation::json::{self, JsonLimits, TopLevel};
use crate::federation::txn::Transaction;
use crate::federation::xmatrix::XMatrix;
use crate::federation::{pdu, userdata};
use crate::policy::permit::Units;
use crate::policy::{
    decide, decide_response, replay, Direction, ExchangeCtx, Forward, Refusal, RefusalReason,
    Release,
};
use crate::store::{TxnAction, TxnDecision, TxnPut, TxnRecord};
use crate::telemetry as tm;

/// Where a request entered the guard.
#[derive(Debug, Clone)]
pub enum Entry {
    /// Inbound TLS listener; `sni` as sent by the remote.
    Inbound { sni: Option<String> },
    /// Outbound (CONNECT tunnel or Synapse proxy protocol); `destination` as named by the
    /// protected homeserver's proxy request (CONNECT authority or `matrix-federation://` host).
    Outbound { destination: String },
}

impl Entry {
    fn direction(&self) -> Direction {
        match self {
            Entry::Inbound { .. } => Direction::Inbound,
            Entry::Outbound { .. } => Direction::Outbound,
        }
    }
}

pub type GuardResponse = Response<Full<Bytes>>;

/// Builds the Matrix error response for a refusal.
pub fn refusal_response(r: &Refusal) -> GuardResponse {
    let mut resp = Response::new(Full::new(Bytes::from(r.body())));
    *resp.status_mut() = r.status;
    resp.headers_mut().insert(
        http::header::CONTENT_TYPE,
        HeaderValue::from_static("application/json"),
    );
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
    let started = Instant::now();
    let direction = entry.direction();
    let method = req.method().clone();
    let path = path_and_query.split('?').next().unwrap_or("").to_string();
    let matched = catalog::lookup(&method, &path);
    let endpoint_id = matched.as_ref().map(|m| m.endpoint.id).unwrap_or("unknown");
    let span = tracing::info_span!("exchange", direction = direction.as_str(), endpoint = endpoint_id, peer = tracing::field::Empty, txn = tracing::field::Empty, %client);
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

/// Phases 2–8 for a catalogued endpoint.
async fn run(
    guard: &Guard,
    entry: &Entry,
    endpoint: &'static Endpoint,
    params: Vec<(&'static str, String)>,
    req: http::Request<Incoming>,
    path_and_query: String,
    req_bytes: &mut usize,
) -> Result<GuardResponse, Refusal> {
    let direction = entry.direction();
    // One policy snapshot for the whole exchange (a reload never splits a request).
    let policy = guard.policy();
    let (parts, body) = req.into_parts();

    // --- identify
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
    };
    let span = tracing::Span::current();
    if let Some(p) = &peer {
        span.record("peer", p.as_str());
    }
    let param = |name: &str| {
        params
            .iter()
            .find(|(k, _)| *k == name)
            .map(|(_, v)| v.as_str())
    };
    let txn_id = (endpoint.handler == Handler::Transaction)
        .then(|| param("txnId").map(str::to_string))
        .flatten();
    let room_hint = param("roomId");
    if let Some(t) = &txn_id {
        span.record("txn", t.as_str());
    }
    let ctx = ExchangeCtx {
        direction,
        endpoint,
        peer: peer.clone(),
        protected,
        txn_id: txn_id.clone(),
    };
    // A room paused towards the side the answer would reach: nothing of it is fetched.
    if let (Some(room), false) = (room_hint, endpoint.handler == Handler::Transaction) {
        if guard.pauses().is_paused(direction.reverse(), room) {
            return Err(crate::policy::pause::not_found());
        }
    }
    let gate = pause::Gate { guard, room_hint };

    // --- read
    let limits = guard.limits();
    let declared = parts
        .headers
        .get(http::header::CONTENT_LENGTH)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.parse::<u64>().ok());
    if declared.is_some_and(|n| n > limits.max_request_body as u64) {
        return Err(refuse(
            RefusalReason::TooLarge,
            StatusCode::PAYLOAD_TOO_LARGE,
            "M_TOO_LARGE",
            "request body too large",
        ));
    }
    let body = Limited::new(body, limits.max_request_body)
        .collect()
        .await
        .map_err(|e| {
            if e.downcast_ref::<http_body_util::LengthLimitError>()
                .is_some()
            {
                refuse(
                    RefusalReason::TooLarge,
                    StatusCode::PAYLOAD_TOO_LARGE,
                    "M_TOO_LARGE",
                    "request body too large",
                )
            } else {
                refuse(
                    RefusalReason::BadJson,
                    StatusCode::BAD_REQUEST,
                    "M_BAD_JSON",
                    "request body could not be read",
                )
            }
        })?;
    let body = body.to_bytes();
    *req_bytes = body.len();

    // --- inspect + decide
    let mut headers = parts.headers;
    strip_hop_by_hop(&mut headers);
    let forward = Forward {
        method: parts.method.clone(),
        path_and_query,
        headers,
        body: body.clone(),
    };
    // Idempotent retries: a transaction seen before gets exactly the first decision.
    let txn_key = match (&txn_id, &xm) {
        (Some(t), Some(x)) => Some((
            direction.as_str(),
            x.origin.to_string(),
            destination.to_ascii_lowercase(),
            t.clone(),
        )),
        _ => None,
    };
    let stored = match &txn_key {
        Some((d, o, dst, t)) => guard.store().txn_decision(d, o, dst, t).map_err(|e| {
            refuse(
                RefusalReason::Internal,
                StatusCode::INTERNAL_SERVER_ERROR,
                "M_UNKNOWN",
                format!("transaction store: {e}"),
            )
        })?,
        None => None,
    };
    // Authenticate after strict parsing: the X-Matrix signature against the origin's own keys,
    // fetched by the guard itself. Inbound per `[inbound] verify_signatures`; outbound always:
    // the guard re-signs modified requests with the protected server's key, so it must never
    // sign what the protected server did not (anyone reaching the outbound listener could
    // otherwise speak as that server).
    let must_verify = direction == Direction::Outbound || guard.verify_inbound();
    let permit = match stored {
        Some(rec) => {
            if let (true, Some(x)) = (must_verify, &xm) {
                verify_x_matrix(
                    guard,
                    x,
                    &forward.method,
                    &forward.path_and_query,
                    &destination,
                    &body,
                )
                .await?;
            }
            if !rec.body_matches(&body) {
                return Err(refuse(
                    RefusalReason::BadJson,
                    StatusCode::BAD_REQUEST,
                    "M_INVALID_PARAM",
                    "transaction id reused with different content",
                ));
            }
            tracing::info!("retried transaction: replaying the first decision");
            replay_record(forward, rec)?
        }
        None => {
            let mut units = inspect_request(guard, direction, endpoint, &body)?;
            units.rooms = Some(&gate);
            if let (true, Some(x)) = (must_verify, &xm) {
                verify_x_matrix(
                    guard,
                    x,
                    &forward.method,
                    &forward.path_and_query,
                    &destination,
                    &body,
                )
                .await?;
            }
            let more = super::perpdu::unacceptable(guard, &ctx, Part::Request, &units, room_hint)?;
            units.omit.extend(more);
            rooms::learn(guard, endpoint, Part::Request, room_hint, &body, &units);
            room_labels::ensure(guard, &ctx, direction, &units, room_hint).await?;
            units.pdu_findings =
                integrity::check(guard, &ctx, direction, &units, room_hint).await?;
            // Cheap: headers and a reference-counted body, for replaying a concurrent attempt.
            let template = txn_key.as_ref().map(|_| forward.clone());
            let mut decided = decide(
                &*policy,
                &ctx,
                &units,
                forward,
                &rewrite::ParsedRequestRewriter {
                    rewriter: rewrite::RequestRewriter {
                        guard,
                        ctx: &ctx,
                        endpoint,
                        room_hint,
                    },
                    units: &units,
                },
            );
            if let (Some((d, o, dst, t)), Some(template)) = (&txn_key, template) {
                // Stored: decisions that withheld something (a refusal by policy, a modified
                // body). A retry must not get less than that. Not stored: unchanged pass-through
                // (a stricter decision on retry leaks nothing, and storing every transaction's
                // bytes would cost the hot path), internal faults and a not-yet-known room
                // version (a later redaction leaks nothing either).
                let withheld = match &decided {
                    Ok(p) => p.get().body != body,
                    Err(r) => matches!(
                        r.reason,
                        RefusalReason::Policy
                            | RefusalReason::RequestText
                            | RefusalReason::ServerDenied
                            | RefusalReason::ClassDenied
                    ),
                };
                if withheld {
                    let record = match &decided {
                        Ok(p) => TxnDecision::forward(
                            200,
                            p.get().body.to_vec(),
                            p.get()
                                .headers
                                .get(http::header::AUTHORIZATION)
                                .and_then(|h| h.to_str().ok())
                                .map(str::to_string),
                        ),
                        Err(r) => {
                            TxnDecision::refuse(r.status.as_u16(), r.errcode, r.message.clone())
                        }
                    };
                    match guard.store().put_txn_decision(d, o, dst, t, &body, &record) {
                        Ok(TxnPut::Inserted(_)) => {}
                        // A concurrent attempt of the same transaction decided first: its
                        // decision is the one every attempt gets.
                        Ok(TxnPut::Existing(rec)) => decided = replay_record(template, rec),
                        Err(e) => {
                            tracing::warn!("cannot store transaction decision: {e}");
                            return Err(refuse(
                                RefusalReason::Internal,
                                StatusCode::INTERNAL_SERVER_ERROR,
                                "M_UNKNOWN",
                                "transaction store unavailable",
                            ));
                        }
                    }
                }
            }
            decided?
        }
    };

    // PDUs withheld from a transaction (paused rooms): the sender gets an error for each, on
    // the first attempt and on every retry alike.
    let withheld = if endpoint.handler == Handler::Transaction && permit.get().body != body {
        super::perpdu::withheld(
            guard.store(),
            &guard.txn_limits(),
            &body,
            &permit.get().body,
        )
    } else {
        Vec::new()
    };

    // --- forward (or, for key queries to the guard's notary name, answer them)
    let notary = match direction {
        Direction::Outbound => guard.notary_for(&destination).map(str::to_string),
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
        let servers =
            super::notary::requested_servers(endpoint.id, param("serverName"), &permit.get().body)?;
        super::notary::answer(guard, permit, &servers).await
    } else {
        send_upstream(guard, direction, &destination, host_header, permit).await?
    };
    let resp = release(
        guard,
        &*policy,
        &ctx,
        room_hint,
        param("queryType"),
        notary.as_deref(),
        up,
    )
    .await?;
    if withheld.is_empty() || resp.status() != StatusCode::OK {
        return Ok(resp);
    }
    let (parts, body) = resp.into_parts();
    let body = body
        .collect()
        .await
        .map(|b| b.to_bytes())
        .unwrap_or_default();
    let body = super::perpdu::merge_errors(&body, &withheld)
        .map(Bytes::from)
        .unwrap_or(body);
    Ok(Response::from_parts(parts, Full::new(body)))
}

/// Phase 6: the upstream client sends the permitted bytes.
async fn send_upstream(
    guard: &Guard,
    direction: Direction,
    destination: &str,
    host_header: Option<String>,
    permit: crate::policy::Permit<Forward>,
) -> Result<super::upstream::UpstreamResponse, Refusal> {
    let destination = destination.to_string();
    let upstream = match direction {
        Direction::Inbound => guard.inbound_upstream(&destination),
        Direction::Outbound => guard.outbound_upstream(),
    }
    .ok_or_else(|| {
        refuse(
            RefusalReason::Internal,
            StatusCode::INTERNAL_SERVER_ERROR,
            "M_UNKNOWN",
            "no upstream for this direction",
        )
    })?;
    let host = match direction {
        Direction::Inbound => host_header.unwrap_or_else(|| destination.clone()),
        Direction::Outbound => destination.clone(),
    };
    let up = upstream.send(permit, &destination, &host).await;
    let up = match up {
        Ok(r) => r,
        Err(e) => {
            tm::record_upstream(direction, None);
            return Err(upstream_refusal(&e));
        }
    };
    tm::record_upstream(direction, Some(up.status.as_u16()));
    Ok(up)
}

/// Phases 7–8: strict parse of the response, the policy over it, the permit to release it.
async fn release(
    guard: &Guard,
    policy: &dyn crate::policy::Policy,
    ctx: &ExchangeCtx,
    room_hint: Option<&str>,
    query_type: Option<&str>,
    notary: Option<&str>,
    up: super::upstream::UpstreamResponse,
) -> Result<GuardResponse, Refusal> {
    let (direction, endpoint) = (ctx.direction, ctx.endpoint);
    let mut resp_headers = up.headers;
    strip_hop_by_hop(&mut resp_headers);
    resp_headers.remove(http::header::CONTENT_LENGTH);
    let body = if up.status.is_success() && endpoint.handler == Handler::Keys {
        keys_in_transit(guard, endpoint, direction, notary, &ctx.protected, up.body)?
    } else {
        up.body
    };
    let release = Release {
        status: up.status,
        headers: resp_headers,
        body: body.clone(),
    };
    let permit = {
        let mut units = inspect_response(
            guard,
            endpoint,
            up.status,
            &release.headers,
            &body,
            query_type,
        )?;
        let gate = pause::Gate { guard, room_hint };
        units.rooms = Some(&gate);
        let more = super::perpdu::unacceptable(guard, ctx, Part::Response, &units, room_hint)?;
        units.omit.extend(more);
        rooms::learn(guard, endpoint, Part::Response, room_hint, &body, &units);
        room_labels::ensure(guard, ctx, direction.reverse(), &units, room_hint).await?;
        units.pdu_findings =
            integrity::check(guard, ctx, direction.reverse(), &units, room_hint).await?;
        decide_response(
            policy,
            ctx,
            &units,
            release,
            &rewrite::ResponseRewriter {
                guard,
                ctx,
                endpoint,
                room_hint,
            },
        )?
    };
    let rel = permit.into_inner();
    let mut resp = Response::new(Full::new(rel.body));
    *resp.status_mut() = rel.status;
    *resp.headers_mut() = rel.headers;
    Ok(resp)
}

/// The permit (or refusal) a stored transaction decision stands for.
fn replay_record(
    forward: Forward,
    rec: TxnRecord,
) -> Result<crate::policy::Permit<Forward>, Refusal> {
    match rec.decision.action {
        TxnAction::Forward { body, x_matrix } => {
            let hdr = x_matrix.and_then(|h| HeaderValue::from_str(&h).ok());
            Ok(replay(forward, Bytes::from(body), hdr))
        }
        TxnAction::Refuse { errcode, error } => {
            let status = StatusCode::from_u16(rec.decision.status).unwrap_or(StatusCode::FORBIDDEN);
            let errcode: &'static str = if errcode == "M_FORBIDDEN" {
                "M_FORBIDDEN"
            } else {
                "M_UNKNOWN"
            };
            Err(refuse(RefusalReason::Policy, status, errcode, error))
        }
    }
}

/// Verifies an inbound request's X-Matrix signature with the origin's keys, fetched by the guard
/// itself over the outbound path (never from attested objects). Failure → 401.
/// Verifies an X-Matrix signature. A protected server's keys come from its own listener
/// (`GuardKeyFetcher`), a remote server's over the outbound path: the guard never trusts keys
/// a request brings.
async fn verify_x_matrix(
    guard: &Guard,
    x: &XMatrix,
    method: &Method,
    uri: &str,
    destination: &str,
    body: &Bytes,
) -> Result<(), Refusal> {
    let unauthorized = |msg: String| {
        refuse(
            RefusalReason::Auth,
            StatusCode::UNAUTHORIZED,
            "M_UNAUTHORIZED",
            msg,
        )
    };
    let content: Option<&serde_json::value::RawValue> = if body.is_empty() {
        None
    } else {
        Some(serde_json::from_slice(body).map_err(|_| unauthorized("body is not JSON".into()))?)
    };
    let now = std::time::SystemTime::now();
    let r = if guard.is_protected(x.origin.as_str()) {
        let fetcher = super::guard::GuardKeyFetcher(guard);
        guard
            .remote_keys()
            .verify_x_matrix_or_fetch(&fetcher, x, method.as_str(), uri, content, destination, now)
            .await
    } else {
        let upstream = guard
            .outbound_upstream()
            .ok_or_else(|| unauthorized("cannot verify: no outbound path to fetch keys".into()))?;
        let fetcher = super::guard::OutboundKeyFetcher(upstream);
        guard
            .remote_keys()
            .verify_x_matrix_or_fetch(&fetcher, x, method.as_str(), uri, content, destination, now)
            .await
    };
    r.map_err(|e| {
        tracing::warn!(origin = %x.origin, "X-Matrix signature not verified: {e}");
        // The peer learns only that it failed: key-fetch errors can name addresses and upstream
        // answers (the log has them).
        unauthorized("X-Matrix signature not verified".into())
    })
}

/// Server keys crossing the guard.
///
/// - Outbound (a protected server fetches a remote's keys): the guard attests the remote's keys
///   with its own key, so it can re-sign inbound requests it modified (see ARCHITECTURE.md, "Key
///   attestation"); the verified originals also feed the guard's own key cache.
/// - Inbound (a remote asks a protected server's key server or notary): notary answers get the
///   remotes' original objects back, signed again as the notary (`keys::originals`); the guard
///   key never leaves.
///
/// Without a guard key configured, keys pass unchanged (inbound modifications are then refused).
fn keys_in_transit(
    guard: &Guard,
    endpoint: &'static Endpoint,
    direction: crate::policy::Direction,
    notary: Option<&str>,
    protected: &str,
    body: Bytes,
) -> Result<Bytes, Refusal> {
    use crate::keys::attest;
    let Some(key) = guard.guard_key() else {
        return Ok(body);
    };
    let bad = |e: attest::AttestError| {
        refuse(
            RefusalReason::Upstream,
            StatusCode::BAD_GATEWAY,
            "M_UNKNOWN",
            format!("server keys refused: {e}"),
        )
    };
    let single = matches!(endpoint.id, "key_server" | "key_server_by_id");
    match direction {
        crate::policy::Direction::Outbound => {
            guard.key_originals().remember_response(&body);
            if single {
                if let Err(e) = guard
                    .remote_keys()
                    .insert_verified(&body, std::time::SystemTime::now())
                {
                    tracing::debug!("remote key object not cached: {e}");
                }
                attest::attest_server_keys(&body, key)
                    .map(Bytes::from)
                    .map_err(bad)
            } else if let Some(server_name) = notary {
                // The guard's own notary answer: attested and signed as the notary.
                let out = attest::attest_key_query_with(
                    &body,
                    key,
                    Some(attest::Notary { server_name, key }),
                )
                .map_err(bad)?;
                for (index, reason) in &out.dropped {
                    tracing::warn!(index, %reason, "notary: key object not attested, left out");
                }
                Ok(Bytes::from(out.body))
            } else {
                attest::attest_key_query(&body, key)
                    .map(Bytes::from)
                    .map_err(bad)
            }
        }
        crate::policy::Direction::Inbound => {
            let ids = [key.key_id()];
            if attest::contains_guard_key(&body, &ids) {
                let notary = guard.protected_key(protected).map(|k| (protected, k));
                crate::keys::originals::leaving_protected_side(
                    &body,
                    guard.key_originals(),
                    &ids,
                    notary,
                )
                .map(Bytes::from)
                .map_err(bad)
            } else {
                Ok(body)
            }
        }
    }
}

/// A parse failure as the sender sees it: the parser's errcode, 413 for size, else 400.
fn bad_request(errcode: &'static str, what: impl std::fmt::Display) -> Refusal {
    let (status, reason) = match errcode {
        "M_TOO_LARGE" => (StatusCode::PAYLOAD_TOO_LARGE, RefusalReason::TooLarge),
        _ => (StatusCode::BAD_REQUEST, RefusalReason::BadJson),
    };
    refuse(reason, status, errcode, what.to_string())
}

fn top_level(kind: BodyKind) -> TopLevel {
    match kind {
        BodyKind::JsonStatusPair => TopLevel::StatusPair,
        _ => TopLevel::Object,
    }
}

/// Typed views of every event the catalog says the body carries. `Err` carries the errcode
/// and a payload-free message.
fn locate<'b>(
    endpoint: &'static Endpoint,
    part: Part,
    body: &'b [u8],
    max_pdu_bytes: usize,
) -> Result<Units<'b>, (&'static str, String)> {
    let mut units = Units::default();
    if !endpoint.carries(part).has_events() {
        return Ok(units);
    }
    let found = pdu::pdus_in(endpoint, part, body).map_err(|e| (e.errcode(), e.to_string()))?;
    for (pos, f) in found.into_iter().enumerate() {
        match f.kind() {
            EventKind::Pdu => {
                let len = f.raw.get().len();
                if len > max_pdu_bytes {
                    return Err((
                        "M_TOO_LARGE",
                        format!("event {pos} is {len} bytes, limit {max_pdu_bytes}"),
                    ));
                }
                units.pdus.push(
                    f.pdu()
                        .map_err(|e| (e.errcode(), format!("event {pos}: {e}")))?,
                );
                units.pdu_pos.push(pos);
            }
            _ => {
                units.events.push(
                    f.event()
                        .map_err(|e| (e.errcode(), format!("event {pos}: {e}")))?,
                );
                units.event_pos.push(pos);
            }
        }
    }
    Ok(units)
}

/// Strict parse of a request body according to the endpoint's catalog entry.
fn inspect_request<'b>(
    guard: &Guard,
    direction: Direction,
    endpoint: &'static Endpoint,
    body: &'b Bytes,
) -> Result<Units<'b>, Refusal> {
    let limits = guard.limits();
    if !endpoint.request_body.is_json() {
        if !body.is_empty() {
            return Err(refuse(
                RefusalReason::BadJson,
                StatusCode::BAD_REQUEST,
                "M_BAD_JSON",
                "this endpoint takes no request body",
            ));
        }
        return Ok(Units::default());
    }
    let jl = JsonLimits::new(limits.max_request_body, limits.max_json_depth);
    json::validate_with(body, jl, top_level(endpoint.request_body))
        .map_err(|e| bad_request(e.errcode(), &e))?;
    if endpoint.handler == Handler::Transaction {
        let t = Transaction::parse(body, &super::perpdu::read_limits(guard.txn_limits()))
            .map_err(|e| super::perpdu::txn_refusal(&e))?;
        let (pdus, pdu_pos, omit) =
            super::perpdu::txn_pdus(&t, guard.txn_limits().max_pdu_bytes, direction);
        let edus = t
            .edu_views()
            .collect::<Result<Vec<_>, _>>()
            .map_err(|e| bad_request(e.errcode(), &e))?;
        let mut to_device = Vec::new();
        for (i, e) in edus.iter().enumerate() {
            to_device.extend(
                userdata::to_device_in(i, e)
                    .map_err(|e| bad_request(e.errcode(), format!("EDU {i}: {e}")))?,
            );
        }
        return Ok(Units {
            pdus,
            pdu_pos,
            edus,
            to_device,
            omit,
            ..Units::default()
        });
    }
    locate(endpoint, Part::Request, body, limits.max_pdu_bytes)
        .map_err(|(code, msg)| bad_request(code, msg))
}

/// Strict parse of a response body. Any malformed JSON response becomes a 502.
/// `query_type`: the `queryType` path parameter (generic query), for the user-data fields.
fn inspect_response<'b>(
    guard: &Guard,
    endpoint: &'static Endpoint,
    status: StatusCode,
    headers: &HeaderMap,
    body: &'b Bytes,
    query_type: Option<&str>,
) -> Result<Units<'b>, Refusal> {
    let limits = guard.limits();
    let bad_upstream = |what: String| {
        refuse(
            RefusalReason::Upstream,
            StatusCode::BAD_GATEWAY,
            "M_UNKNOWN",
            format!("upstream sent {what}"),
        )
    };
    let is_json_ct = headers
        .get(http::header::CONTENT_TYPE)
        .and_then(|v| v.to_str().ok())
        .is_some_and(|v| {
            v.trim_start()
                .to_ascii_lowercase()
                .starts_with("application/json")
        });
    let jl = JsonLimits::new(limits.max_response_body, limits.max_json_depth);
    if !status.is_success() {
        // Error answers must be Matrix errors (JSON objects); anything else is not passed on.
        if body.is_empty() {
            return Ok(Units::default());
        }
        json::validate_with(body, jl, TopLevel::Object)
            .map_err(|e| bad_upstream(format!("a malformed error response ({e})")))?;
        return Ok(Units::default());
    }
    if !endpoint.response_body.is_json() {
        // Media (multipart/binary): size-limited by the upstream client and not inspected.
        // Media requests reach this point only with `[media] allow_unscanned` (`policy::media`).
        return Ok(Units::default());
    }
    if !is_json_ct {
        return Err(bad_upstream(
            "a non-JSON response where JSON is required".into(),
        ));
    }
    json::validate_with(body, jl, top_level(endpoint.response_body))
        .map_err(|e| bad_upstream(format!("a malformed response ({e})")))?;
    let mut units = super::perpdu::locate_response(endpoint, body, limits.max_pdu_bytes)
        .map_err(|msg| bad_upstream(format!("a malformed response ({msg})")))?;
    units.user_fields = userdata::fields_in(endpoint, query_type, body)
        .map_err(|e| bad_upstream(format!("a malformed response ({e})")))?;
    Ok(units)
}

fn upstream_refusal(e: &UpstreamError) -> Refusal {
    // The log has the details; the peer learns only the kind of failure: upstream errors can
    // name internal addresses, ports and other servers' answers.
    tracing::warn!("upstream: {e}");
    match e {
        UpstreamError::Timeout { .. } => refuse(
            RefusalReason::Upstream,
            StatusCode::GATEWAY_TIMEOUT,
            "M_UNKNOWN",
            "the destination did not answer in time",
        ),
        UpstreamError::NoRoute { .. } => refuse(
            RefusalReason::NoRoute,
            StatusCode::BAD_GATEWAY,
            "M_UNKNOWN",
            "no route to the destination",
        ),
        UpstreamError::BadUrl(_) => refuse(
            RefusalReason::Internal,
            StatusCode::INTERNAL_SERVER_ERROR,
            "M_UNKNOWN",
            "guard misconfiguration",
        ),
        _ => refuse(
            RefusalReason::Upstream,
            StatusCode::BAD_GATEWAY,
            "M_UNKNOWN",
            "the destination could not be reached",
        ),
    }
}
