//! The admin API under `/_grenzwacht/v1/` (JSON; errors as Matrix errors `{"errcode","error"}`).
//!
//! | request | role | answer |
//! |---|---|---|
//! | `GET whoami` | any | `{"name","role"}` |
//! | `GET holds[?all=true]` | any | `{"holds":[HeldSummary…]}` the principal is cleared for; `all` adds decided ones |
//! | `GET holds/{id}` | any | `HeldDetail` (content preview) if cleared, else 403 |
//! | `POST holds/{id}/release`, `POST holds/{id}/reject` | reviewer, admin | body `{"reason":"…"}` (1 to [`MAX_REASON_CHARS`] characters); `{"id","state","awaiting_second"}` |
//! | `GET audit?from=&to=&room=&sender=&server=&verdict=&rule=&label=&limit=` | auditor, admin | `{"records":[…]}` ([`AuditSearch`]) |
//! | `GET rooms/labels` | auditor, admin | [`RoomLabels`] ([`RoomLabelsView`]) |
//!
//! Order of checks, each answered before the next runs:
//! 1. authentication (client certificate and/or bearer token, `admin::auth`): 401
//!    `M_UNAUTHORIZED` with `WWW-Authenticate: Bearer` — for every path under the prefix, so
//!    an unauthenticated client learns nothing about which endpoints exist;
//! 2. the endpoint (404 `M_UNRECOGNIZED`, 405 for a wrong method);
//! 3. the role: 403 `M_FORBIDDEN`;
//! 4. the request (query, body: 400 `M_INVALID_PARAM` / `M_BAD_JSON` / `M_MISSING_PARAM`, 413);
//! 5. the action.
//!
//! Every action, refused ones included (401 with no principal, 403 with the principal's
//! name), is recorded through [`ActionJournal`] before it takes effect: reads of held events
//! and room labels are recorded with their outcome (e.g. `not_cleared`) before anything is
//! sent, audit searches are recorded as `requested` (with the filter) before the log is read,
//! decisions are recorded as `requested` before [`ReviewQueue::decide`] runs (the queue
//! records the decision itself). If the journal
//! refuses, the answer is 503 and nothing happens. Queue, search and journal errors are logged
//! and answered without their text (503 `M_UNKNOWN`); a reviewer not cleared for an event gets
//! 403 with no part of the event. Calls into the queue, the journal, the audit search and the
//! room labels run on tokio's blocking pool (they may wait for disk: SQLite, fsync of the
//! audit log).
use std::collections::BTreeMap;
use std::sync::Arc;

use bytes::Bytes;
use http::{header, Method, Request, Response, StatusCode};
use http_body_util::{BodyExt, Full, Limited};
use serde::{Deserialize, Serialize};
use serde_json::{json, Value};

use super::{respond, AdminState, CertIdentity, API_PREFIX};
use crate::review::{
    ActionJournal, AuditFilter, AuditSearch, Decision, HeldDetail, HeldSummary, HoldId, Outcome,
    Principal, ReviewError, ReviewQueue,
};

/// Counter: admin API requests by `action` (the journal's action names, `admin.unknown` for
/// other paths) and answer `status`.
pub const ADMIN_REQUESTS_TOTAL: &str = "grenzwacht_admin_requests_total";

/// Largest request body (bytes).
pub const MAX_BODY: usize = 16 * 1024;
/// Longest decision reason (characters).
pub const MAX_REASON_CHARS: usize = 1000;
/// Longest value of an audit search parameter (bytes).
pub const MAX_PARAM_BYTES: usize = 512;
/// Audit records returned without `limit`.
pub const DEFAULT_AUDIT_LIMIT: usize = 100;
/// Most audit records one search returns.
pub const MAX_AUDIT_LIMIT: usize = 1000;

/// A room label as the guard holds it.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct RoomLabelEntry {
    pub room_id: String,
    /// The label (JSON form of `crate::spif`, or the text as received if it is not valid).
    pub label: Value,
    /// Display marking, if the label is valid.
    pub marking: Option<String>,
    /// The state event the label came from, if known.
    pub event_id: Option<String>,
    pub sender: String,
    pub origin_server_ts: i64,
    /// Where it was learned (e.g. `pdu`, `admin_api`).
    pub learned_from: String,
}

/// A room label change the guard refused (neither a raise nor from the protected side).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct RefusedLabelChange {
    pub room_id: String,
    pub event_id: Option<String>,
    pub sender: String,
    /// When it was refused (ms since the Unix epoch).
    pub at_ms: i64,
    pub reason: String,
}

/// `GET rooms/labels`.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct RoomLabels {
    pub rooms: Vec<RoomLabelEntry>,
    pub refused_changes: Vec<RefusedLabelChange>,
}

/// The guard's room labels and refused label changes (implemented over the label layer's
/// store by the proxy).
pub trait RoomLabelsView: Send + Sync {
    fn room_labels(&self) -> Result<RoomLabels, String>;
}

/// Stand-in for a part that is not wired: every call fails, so the API answers 503 and
/// (for the journal) nothing happens.
#[derive(Debug, Clone, Copy, Default)]
pub struct Unwired;

const UNWIRED: &str = "not configured on this guard";

impl ReviewQueue for Unwired {
    fn list(&self, _: &Principal, _: bool) -> Result<Vec<HeldSummary>, ReviewError> {
        Err(ReviewError::Unavailable(UNWIRED.into()))
    }
    fn show(&self, _: &Principal, _: HoldId) -> Result<HeldDetail, ReviewError> {
        Err(ReviewError::Unavailable(UNWIRED.into()))
    }
    fn decide(
        &self,
        _: &Principal,
        _: HoldId,
        _: Decision,
        _: &str,
    ) -> Result<Outcome, ReviewError> {
        Err(ReviewError::Unavailable(UNWIRED.into()))
    }
}

impl AuditSearch for Unwired {
    fn search(&self, _: &AuditFilter) -> Result<Vec<Value>, String> {
        Err(UNWIRED.into())
    }
}

impl ActionJournal for Unwired {
    fn admin_action(&self, _: Option<&Principal>, _: &str, _: &str, _: &str) -> Result<(), String> {
        Err(UNWIRED.into())
    }
}

impl RoomLabelsView for Unwired {
    fn room_labels(&self) -> Result<RoomLabels, String> {
        Err(UNWIRED.into())
    }
}

/// A Matrix-style error answer.
pub fn error(status: StatusCode, errcode: &str, message: &str) -> Response<Full<Bytes>> {
    respond(
        status,
        "application/json",
        json!({ "errcode": errcode, "error": message }).to_string(),
    )
}

/// 401 `M_UNAUTHORIZED` with `WWW-Authenticate: Bearer`.
pub fn unauthorized() -> Response<Full<Bytes>> {
    let mut r = error(
        StatusCode::UNAUTHORIZED,
        "M_UNAUTHORIZED",
        "authentication required",
    );
    r.headers_mut().insert(
        header::WWW_AUTHENTICATE,
        header::HeaderValue::from_static("Bearer realm=\"grenzwacht\""),
    );
    r
}

fn unavailable() -> Response<Full<Bytes>> {
    error(
        StatusCode::SERVICE_UNAVAILABLE,
        "M_UNKNOWN",
        "the admin action cannot be recorded or served right now",
    )
}

fn ok(v: &impl Serialize) -> Response<Full<Bytes>> {
    match serde_json::to_string(v) {
        Ok(body) => respond(StatusCode::OK, "application/json", body),
        Err(e) => {
            tracing::error!(error = %e, "admin: cannot serialise an answer");
            unavailable()
        }
    }
}

/// The endpoint of an API request.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Endpoint {
    Whoami,
    ListHolds,
    ShowHold(HoldId),
    Decide(HoldId, Decision),
    Audit,
    RoomLabels,
    /// A known path with the wrong method.
    WrongMethod(&'static str),
    Unknown,
}

impl Endpoint {
    pub fn of(method: &Method, path: &str) -> Endpoint {
        let Some(rest) = path.strip_prefix(API_PREFIX) else {
            return Endpoint::Unknown;
        };
        let parts: Vec<&str> = rest.split('/').collect();
        let get = method == Method::GET;
        let post = method == Method::POST;
        let id = |s: &str| {
            (!s.is_empty() && s.len() <= 18 && s.bytes().all(|b| b.is_ascii_digit()))
                .then(|| s.parse::<HoldId>().ok())
                .flatten()
        };
        match parts.as_slice() {
            ["whoami"] if get => Endpoint::Whoami,
            ["holds"] if get => Endpoint::ListHolds,
            ["audit"] if get => Endpoint::Audit,
            ["rooms", "labels"] if get => Endpoint::RoomLabels,
            ["holds", n] if get && id(n).is_some() => Endpoint::ShowHold(id(n).unwrap_or(0)),
            ["holds", n, "release"] if post && id(n).is_some() => {
                Endpoint::Decide(id(n).unwrap_or(0), Decision::Release)
            }
            ["holds", n, "reject"] if post && id(n).is_some() => {
                Endpoint::Decide(id(n).unwrap_or(0), Decision::Reject)
            }
            ["whoami"] | ["holds"] | ["audit"] | ["rooms", "labels"] => {
                Endpoint::WrongMethod("GET")
            }
            ["holds", n] if id(n).is_some() => Endpoint::WrongMethod("GET"),
            ["holds", n, "release" | "reject"] if id(n).is_some() => Endpoint::WrongMethod("POST"),
            _ => Endpoint::Unknown,
        }
    }

    /// The action name recorded in the journal.
    pub fn action(&self) -> &'static str {
        match self {
            Endpoint::Whoami => "admin.whoami",
            Endpoint::ListHolds => "holds.list",
            Endpoint::ShowHold(_) => "holds.show",
            Endpoint::Decide(_, Decision::Release) => "holds.release",
            Endpoint::Decide(_, Decision::Reject) => "holds.reject",
            Endpoint::Audit => "audit.search",
            Endpoint::RoomLabels => "rooms.labels",
            Endpoint::WrongMethod(_) | Endpoint::Unknown => "admin.unknown",
        }
    }

    fn target(&self) -> String {
        match self {
            Endpoint::ShowHold(id) | Endpoint::Decide(id, _) => id.to_string(),
            _ => String::new(),
        }
    }
}

/// Runs a call into the queue, the journal or the audit search (they may block on disk) off
/// the async workers; `None` if it panicked.
async fn blocking<T: Send + 'static>(f: impl FnOnce() -> T + Send + 'static) -> Option<T> {
    tokio::task::spawn_blocking(f).await.ok()
}

/// Records an action; `false` if the journal refused (the caller answers 503).
async fn record(
    journal: &Arc<dyn ActionJournal>,
    who: Option<&Principal>,
    action: &'static str,
    target: &str,
    outcome: &str,
) -> bool {
    let (j, p, t, o) = (
        journal.clone(),
        who.cloned(),
        target.to_owned(),
        outcome.to_owned(),
    );
    let result = blocking(move || j.admin_action(p.as_ref(), action, &t, &o))
        .await
        .unwrap_or_else(|| Err("the journal call panicked".into()));
    match result {
        Ok(()) => true,
        Err(e) => {
            tracing::error!(
                action,
                principal = who.map(|p| p.name.as_str()),
                error = %e,
                "admin: action refused, the audit journal cannot record it"
            );
            false
        }
    }
}

fn review_error(e: &ReviewError) -> Response<Full<Bytes>> {
    match e {
        ReviewError::NotFound => error(StatusCode::NOT_FOUND, "M_NOT_FOUND", &e.to_string()),
        ReviewError::NotCleared | ReviewError::Forbidden | ReviewError::SameReviewer => {
            error(StatusCode::FORBIDDEN, "M_FORBIDDEN", &e.to_string())
        }
        ReviewError::AlreadyDecided => error(StatusCode::CONFLICT, "M_UNKNOWN", &e.to_string()),
        ReviewError::ReasonRequired => {
            error(StatusCode::BAD_REQUEST, "M_MISSING_PARAM", &e.to_string())
        }
        ReviewError::Unavailable(inner) => {
            tracing::error!(error = %inner, "admin: review queue unavailable");
            unavailable()
        }
    }
}

fn review_outcome(r: &Result<impl Sized, ReviewError>) -> &'static str {
    match r {
        Ok(_) => "ok",
        Err(ReviewError::NotFound) => "not_found",
        Err(ReviewError::NotCleared) => "not_cleared",
        Err(ReviewError::Forbidden) => "forbidden",
        Err(ReviewError::SameReviewer) => "same_reviewer",
        Err(ReviewError::AlreadyDecided) => "already_decided",
        Err(ReviewError::ReasonRequired) => "reason_required",
        Err(ReviewError::Unavailable(_)) => "unavailable",
    }
}

fn hex_val(b: u8) -> Option<u8> {
    match b {
        b'0'..=b'9' => Some(b - b'0'),
        b'a'..=b'f' => Some(b - b'a' + 10),
        b'A'..=b'F' => Some(b - b'A' + 10),
        _ => None,
    }
}

/// `application/x-www-form-urlencoded` decoding of one query component; `None` for a bad
/// escape or a result that is not UTF-8.
pub fn percent_decode(s: &str) -> Option<String> {
    let b = s.as_bytes();
    let mut out = Vec::with_capacity(b.len());
    let mut i = 0;
    while i < b.len() {
        match b[i] {
            b'+' => out.push(b' '),
            b'%' => {
                let hi = b.get(i + 1).copied().and_then(hex_val)?;
                let lo = b.get(i + 2).copied().and_then(hex_val)?;
                out.push(hi << 4 | lo);
                i += 2;
            }
            c => out.push(c),
        }
        i += 1;
    }
    String::from_utf8(out).ok()
}

/// The query parameters (each at most once, each at most [`MAX_PARAM_BYTES`], no control
/// characters); `Err` names the bad parameter.
fn query_params(query: Option<&str>, allowed: &[&str]) -> Result<BTreeMap<String, String>, String> {
    let mut out = BTreeMap::new();
    for pair in query.unwrap_or("").split('&').filter(|p| !p.is_empty()) {
        let (k, v) = pair.split_once('=').unwrap_or((pair, ""));
        let k = percent_decode(k).ok_or_else(|| "a parameter name is not valid".to_string())?;
        if !allowed.contains(&k.as_str()) {
            return Err(format!("unknown parameter `{}`", k.escape_default()));
        }
        let v = percent_decode(v).ok_or_else(|| format!("`{k}` is not valid UTF-8"))?;
        if v.len() > MAX_PARAM_BYTES || v.chars().any(char::is_control) {
            return Err(format!("`{k}` is too long or has control characters"));
        }
        if out.insert(k.clone(), v).is_some() {
            return Err(format!("`{k}` given twice"));
        }
    }
    Ok(out)
}

fn bad_param(message: &str) -> Response<Full<Bytes>> {
    error(StatusCode::BAD_REQUEST, "M_INVALID_PARAM", message)
}

/// `YYYY-MM-DDTHH:MM:SS[.fraction](Z|±HH:MM)` (RFC 3339 `date-time`; ranges of the fields
/// checked, not the days of each month).
pub fn is_rfc3339(t: &str) -> bool {
    let b = t.as_bytes();
    let digits = |r: std::ops::Range<usize>| {
        b.get(r.clone())
            .is_some_and(|d| d.iter().all(u8::is_ascii_digit))
            .then(|| t[r].parse::<u32>().ok())
            .flatten()
    };
    let shape = b.len() >= 20
        && b[4] == b'-'
        && b[7] == b'-'
        && matches!(b[10], b'T' | b't')
        && b[13] == b':'
        && b[16] == b':';
    if !shape {
        return false;
    }
    let (Some(_), Some(mo), Some(d), Some(h), Some(mi), Some(sec)) = (
        digits(0..4),
        digits(5..7),
        digits(8..10),
        digits(11..13),
        digits(14..16),
        digits(17..19),
    ) else {
        return false;
    };
    if !((1..=12).contains(&mo) && (1..=31).contains(&d) && h < 24 && mi < 60 && sec <= 60) {
        return false;
    }
    let mut rest = &t[19..];
    if let Some(frac) = rest.strip_prefix('.') {
        let n = frac.bytes().take_while(u8::is_ascii_digit).count();
        if n == 0 || n > 9 {
            return false;
        }
        rest = &frac[n..];
    }
    match rest.as_bytes() {
        [b'Z' | b'z'] => true,
        [b'+' | b'-', h1, h2, b':', m1, m2] => {
            [h1, h2, m1, m2].iter().all(|c| c.is_ascii_digit())
                && (h1 - b'0') * 10 + (h2 - b'0') < 24
                && (m1 - b'0') * 10 + (m2 - b'0') < 60
        }
        _ => false,
    }
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct DecisionBody {
    reason: Option<String>,
}

/// Checks a decision reason: trimmed, non-empty, at most [`MAX_REASON_CHARS`] characters, no
/// control characters other than line breaks and tabs.
pub fn check_reason(reason: &str) -> Result<&str, &'static str> {
    let reason = reason.trim();
    if reason.is_empty() {
        return Err("a reason is required");
    }
    if reason.chars().count() > MAX_REASON_CHARS {
        return Err("the reason is too long");
    }
    if reason
        .chars()
        .any(|c| c.is_control() && !matches!(c, '\n' | '\r' | '\t'))
    {
        return Err("the reason has control characters");
    }
    Ok(reason)
}

/// Reads a request body: at most [`MAX_BODY`] bytes (413), within
/// [`super::HEADER_READ_TIMEOUT`] (408).
pub async fn read_body<B>(body: B) -> Result<Bytes, Response<Full<Bytes>>>
where
    B: http_body::Body<Data = Bytes>,
    B::Error: Into<Box<dyn std::error::Error + Send + Sync>>,
{
    read_body_limited(body, MAX_BODY).await
}

/// [`read_body`] with another limit.
pub async fn read_body_limited<B>(body: B, limit: usize) -> Result<Bytes, Response<Full<Bytes>>>
where
    B: http_body::Body<Data = Bytes>,
    B::Error: Into<Box<dyn std::error::Error + Send + Sync>>,
{
    let read = tokio::time::timeout(
        super::HEADER_READ_TIMEOUT,
        Limited::new(body, limit).collect(),
    );
    let Ok(read) = read.await else {
        return Err(error(
            StatusCode::REQUEST_TIMEOUT,
            "M_UNKNOWN",
            "the request body took too long",
        ));
    };
    match read {
        Ok(c) => Ok(c.to_bytes()),
        Err(e)
            if e.downcast_ref::<http_body_util::LengthLimitError>()
                .is_some() =>
        {
            Err(error(
                StatusCode::PAYLOAD_TOO_LARGE,
                "M_TOO_LARGE",
                "the request body is too large",
            ))
        }
        Err(_) => Err(error(
            StatusCode::BAD_REQUEST,
            "M_BAD_JSON",
            "the request body could not be read",
        )),
    }
}

/// Answers one request under [`API_PREFIX`] (see the module documentation) and counts it in
/// [`ADMIN_REQUESTS_TOTAL`].
pub async fn handle<B>(
    state: &AdminState,
    request: Request<B>,
    cert: Option<&CertIdentity>,
) -> Response<Full<Bytes>>
where
    B: http_body::Body<Data = Bytes>,
    B::Error: Into<Box<dyn std::error::Error + Send + Sync>>,
{
    let endpoint = Endpoint::of(request.method(), request.uri().path());
    let action = endpoint.action();
    let response = answer(state, request, cert, endpoint).await;
    metrics::counter!(
        ADMIN_REQUESTS_TOTAL,
        "action" => action,
        "status" => response.status().as_str().to_owned()
    )
    .increment(1);
    response
}

async fn answer<B>(
    state: &AdminState,
    request: Request<B>,
    cert: Option<&CertIdentity>,
    endpoint: Endpoint,
) -> Response<Full<Bytes>>
where
    B: http_body::Body<Data = Bytes>,
    B::Error: Into<Box<dyn std::error::Error + Send + Sync>>,
{
    let action = endpoint.action();
    let target = endpoint.target();
    let journal = &state.journal;

    // 1. Who is asking.
    let who = match state.identify(request.headers(), cert) {
        Ok(p) => p,
        Err(e) => {
            tracing::info!(action, reason = %e, "admin: unauthenticated request refused");
            let outcome = format!("unauthenticated: {e}");
            if !record(journal, None, action, &target, &outcome).await {
                return unavailable();
            }
            return unauthorized();
        }
    };

    // 2. Which endpoint.
    match endpoint {
        Endpoint::Unknown => {
            return error(StatusCode::NOT_FOUND, "M_UNRECOGNIZED", "unknown endpoint")
        }
        Endpoint::WrongMethod(allow) => {
            let mut r = error(
                StatusCode::METHOD_NOT_ALLOWED,
                "M_UNRECOGNIZED",
                "method not allowed",
            );
            r.headers_mut()
                .insert(header::ALLOW, header::HeaderValue::from_static(allow));
            return r;
        }
        _ => {}
    }

    // 3. The role.
    let allowed = match endpoint {
        Endpoint::Decide(..) => who.role.may_decide(),
        Endpoint::Audit | Endpoint::RoomLabels => who.role.may_audit(),
        _ => true,
    };
    if !allowed {
        tracing::info!(action, principal = %who.name, role = who.role.as_str(), "admin: action refused for the role");
        if !record(journal, Some(&who), action, &target, "forbidden").await {
            return unavailable();
        }
        return error(
            StatusCode::FORBIDDEN,
            "M_FORBIDDEN",
            "this role may not do this",
        );
    }

    // 4. and 5. The request and the action.
    let query = request.uri().query().map(str::to_owned);
    match endpoint {
        Endpoint::Whoami => {
            if !record(journal, Some(&who), action, "", "ok").await {
                return unavailable();
            }
            ok(&json!({ "name": who.name, "role": who.role }))
        }
        Endpoint::ListHolds => {
            let all = match query_params(query.as_deref(), &["all"]) {
                Ok(p) => match p.get("all").map(String::as_str) {
                    None | Some("false") => false,
                    Some("true") => true,
                    Some(_) => return bad_param("`all` must be true or false"),
                },
                Err(m) => return bad_param(&m),
            };
            let (q, p) = (state.queue.clone(), who.clone());
            let result = blocking(move || q.list(&p, all))
                .await
                .unwrap_or_else(|| Err(ReviewError::Unavailable("the queue call panicked".into())));
            let target = if all { "all" } else { "pending" };
            if !record(journal, Some(&who), action, target, review_outcome(&result)).await {
                return unavailable();
            }
            match result {
                Ok(holds) => ok(&json!({ "holds": holds })),
                Err(e) => review_error(&e),
            }
        }
        Endpoint::ShowHold(id) => {
            let (q, p) = (state.queue.clone(), who.clone());
            let result = blocking(move || q.show(&p, id))
                .await
                .unwrap_or_else(|| Err(ReviewError::Unavailable("the queue call panicked".into())));
            if !record(
                journal,
                Some(&who),
                action,
                &target,
                review_outcome(&result),
            )
            .await
            {
                return unavailable();
            }
            match result {
                Ok(detail) => ok(&detail),
                Err(e) => review_error(&e),
            }
        }
        Endpoint::Decide(id, decision) => {
            let body = match read_body(request.into_body()).await {
                Ok(b) => b,
                Err(r) => return r,
            };
            let parsed: DecisionBody = match serde_json::from_slice(&body) {
                Ok(b) => b,
                Err(_) => {
                    return error(
                        StatusCode::BAD_REQUEST,
                        "M_BAD_JSON",
                        "the body must be {\"reason\": \"…\"}",
                    )
                }
            };
            let reason = match check_reason(parsed.reason.as_deref().unwrap_or("")) {
                Ok(r) => r,
                Err(m) => return error(StatusCode::BAD_REQUEST, "M_MISSING_PARAM", m),
            };
            if !record(journal, Some(&who), action, &target, "requested").await {
                return unavailable();
            }
            let (q, p, r) = (state.queue.clone(), who.clone(), reason.to_owned());
            let result = blocking(move || q.decide(&p, id, decision, &r))
                .await
                .unwrap_or_else(|| Err(ReviewError::Unavailable("the queue call panicked".into())));
            match result {
                Ok(outcome) => {
                    tracing::info!(action, principal = %who.name, hold = id, "admin: decision taken");
                    let (state, awaiting_second) = match outcome {
                        Outcome::Decided(s) => (s, false),
                        Outcome::AwaitingSecond => (crate::review::HoldState::Pending, true),
                    };
                    ok(&json!({ "id": id, "state": state, "awaiting_second": awaiting_second }))
                }
                Err(e) => review_error(&e),
            }
        }
        Endpoint::Audit => {
            const KEYS: &[&str] = &[
                "from", "to", "room", "sender", "server", "verdict", "rule", "label", "limit",
            ];
            let mut p = match query_params(query.as_deref(), KEYS) {
                Ok(p) => p,
                Err(m) => return bad_param(&m),
            };
            let limit = match p.remove("limit") {
                None => 0,
                Some(l) => match l.parse::<usize>() {
                    Ok(n) if n <= MAX_AUDIT_LIMIT => n,
                    _ => {
                        return bad_param(&format!(
                            "`limit` must be a number from 0 to {MAX_AUDIT_LIMIT}"
                        ))
                    }
                },
            };
            for key in ["from", "to"] {
                if p.get(key).is_some_and(|t| !is_rfc3339(t)) {
                    return bad_param(&format!(
                        "`{key}` must be an RFC 3339 time like 2026-05-01T00:00:00Z"
                    ));
                }
            }
            let filter = AuditFilter {
                from: p.remove("from"),
                to: p.remove("to"),
                room: p.remove("room"),
                sender: p.remove("sender"),
                server: p.remove("server"),
                verdict: p.remove("verdict"),
                rule: p.remove("rule"),
                label: p.remove("label"),
                limit: if limit == 0 {
                    DEFAULT_AUDIT_LIMIT
                } else {
                    limit
                },
            };
            let target = serde_json::to_string(&filter).unwrap_or_default();
            // Recorded before the log is read: the search is itself part of what it finds.
            if !record(journal, Some(&who), action, &target, "requested").await {
                return unavailable();
            }
            let a = state.audit.clone();
            let result = blocking(move || a.search(&filter))
                .await
                .unwrap_or_else(|| Err("the audit search panicked".into()));
            match result {
                Ok(records) => ok(&json!({ "records": records })),
                Err(e) => {
                    tracing::error!(error = %e, "admin: audit search failed");
                    unavailable()
                }
            }
        }
        Endpoint::RoomLabels => {
            let v = state.room_labels.clone();
            let result = blocking(move || v.room_labels())
                .await
                .unwrap_or_else(|| Err("the room labels call panicked".into()));
            let outcome = if result.is_ok() { "ok" } else { "unavailable" };
            if !record(journal, Some(&who), action, "", outcome).await {
                return unavailable();
            }
            match result {
                Ok(labels) => ok(&labels),
                Err(e) => {
                    tracing::error!(error = %e, "admin: room labels unavailable");
                    unavailable()
                }
            }
        }
        Endpoint::WrongMethod(_) | Endpoint::Unknown => unreachable_endpoint(),
    }
}

/// Answered in step 2; kept as an answer rather than a panic.
fn unreachable_endpoint() -> Response<Full<Bytes>> {
    error(StatusCode::NOT_FOUND, "M_UNRECOGNIZED", "unknown endpoint")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn endpoints_are_recognised_strictly() {
        let get = Method::GET;
        let post = Method::POST;
        let e = |m: &Method, p: &str| Endpoint::of(m, p);
        assert_eq!(e(&get, "/_grenzwacht/v1/holds"), Endpoint::ListHolds);
        assert_eq!(e(&get, "/_grenzwacht/v1/holds/42"), Endpoint::ShowHold(42));
        assert_eq!(
            e(&post, "/_grenzwacht/v1/holds/7/reject"),
            Endpoint::Decide(7, Decision::Reject)
        );
        assert_eq!(
            e(&get, "/_grenzwacht/v1/holds/7/reject"),
            Endpoint::WrongMethod("POST")
        );
        assert_eq!(
            e(&post, "/_grenzwacht/v1/holds"),
            Endpoint::WrongMethod("GET")
        );
        for bad in [
            "/_grenzwacht/v1/holds/-1",
            "/_grenzwacht/v1/holds/1e3",
            "/_grenzwacht/v1/holds/99999999999999999999",
            "/_grenzwacht/v1/holds/",
            "/_grenzwacht/v1/holds/1/",
            "/_grenzwacht/v1/audit/x",
        ] {
            assert_eq!(e(&get, bad), Endpoint::Unknown, "{bad}");
        }
    }

    #[test]
    fn query_and_reason_checks() {
        let p = query_params(Some("room=%21a%3Aex&sender=%40b+c"), &["room", "sender"]).unwrap();
        assert_eq!(p["room"], "!a:ex");
        assert_eq!(p["sender"], "@b c");
        assert!(query_params(Some("room=1&room=2"), &["room"]).is_err());
        assert!(query_params(Some("colour=1"), &["room"]).is_err());
        assert!(query_params(Some("room=%0a"), &["room"]).is_err());
        assert!(query_params(Some("room=%zz"), &["room"]).is_err());
        for good in [
            "2026-05-01T00:00:00Z",
            "2026-05-01t23:59:60.123456+02:00",
            "1999-12-31T00:00:00-11:30",
        ] {
            assert!(is_rfc3339(good), "{good}");
        }
        for bad in [
            "2026-05-01",
            "2026-13-01T00:00:00Z",
            "2026-05-01T24:00:00Z",
            "2026-05-01T00:00:00",
            "2026-05-01T00:00:00.Z",
            "2026-05-01T00:00:00+2:00",
            "２０２６-05-01T00:00:00Z",
        ] {
            assert!(!is_rfc3339(bad), "{bad}");
        }
        assert_eq!(check_reason("  fine \n"), Ok("fine"));
        assert!(check_reason(" \n ").is_err());
        assert!(check_reason(&"x".repeat(MAX_REASON_CHARS + 1)).is_err());
        assert!(check_reason("a\u{7}b").is_err());
    }
}
