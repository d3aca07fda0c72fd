//! The review web UI under `/ui/` of the admin listener: server-rendered HTML pages to log
//! in, list held events, look at one (classification banner, policy-gated content preview
//! with the rule matches highlighted, approvals), release or reject it with a reason, and
//! search the audit log.
//!
//! | request | page |
//! |---|---|
//! | `GET /ui/` | redirect to the held events (or the login) |
//! | `GET /ui/login`, `POST /ui/login` | login with a bearer token, or as the TLS client principal |
//! | `POST /ui/logout` | ends the session |
//! | `GET /ui/held[?all=1]` | held events the principal is cleared for (`all`: decided ones too) |
//! | `GET /ui/held/{id}` | one held event; `POST /ui/held/{id}/decide` releases or rejects it |
//! | `GET /ui/audit?from=…&to=…&room=…&sender=…&server=…&verdict=…&rule=…&label=…&limit=…` | audit search (auditor, admin) |
//!
//! Security: every value on a page is HTML-escaped ([`html::escape`]); every response carries
//! a strict Content-Security-Policy (no scripts at all), `nosniff`, `no-referrer` and
//! `no-store`. A login opens an in-memory session ([`session::Sessions`]) whose random id is an
//! `HttpOnly; SameSite=Strict; Path=/ui/` cookie (`Secure` on a TLS listener). Every POST
//! must come from the same origin (`Origin`, `Sec-Fetch-Site`) and carry the session's CSRF
//! token. Logins (both outcomes), content views, searches, decisions and refused attempts go
//! to the [`ActionJournal`] first; when the journal refuses, the action is refused (503).
//! The UI works without JavaScript and loads nothing from elsewhere.
pub mod form;
pub mod html;
mod pages;
pub mod session;

use std::sync::Arc;

use bytes::Bytes;
use http::{header, HeaderMap, HeaderValue, Method, Request, Response, StatusCode};
use http_body_util::Full;

use crate::review::{
    ActionJournal, AuditFilter, AuditSearch, Authenticate, Decision, HoldId, HoldState, Outcome,
    Principal, ReviewError, ReviewQueue,
};
use crate::telemetry;
pub use session::Sessions;
use session::{csrf_matches, Active};

/// Name of the session cookie.
pub const COOKIE: &str = "gw_ui_session";
/// Largest form body accepted.
pub const MAX_FORM_BYTES: usize = 64 * 1024;
/// Longest decision reason accepted (characters).
pub const MAX_REASON_CHARS: usize = 2000;
/// The Content-Security-Policy of every UI response.
pub const CSP: &str = "default-src 'none'; style-src 'self' 'unsafe-inline'; img-src 'self'; \
form-action 'self'; frame-ancestors 'none'";

/// What the review UI works with. The admin listener builds one and passes every request
/// whose path starts with `/ui` to [`handle`].
pub struct UiCtx {
    pub queue: Arc<dyn ReviewQueue>,
    pub audit: Arc<dyn AuditSearch>,
    pub auth: Arc<dyn Authenticate>,
    pub journal: Arc<dyn ActionJournal>,
    pub sessions: Sessions,
    /// The admin listener speaks TLS: session cookies are marked `Secure`.
    pub secure_cookies: bool,
}

/// Which page a request was for (the `page` label of `grenzwacht_ui_requests_total`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum PageKind {
    Root,
    Login,
    Logout,
    Held,
    Event,
    Decide,
    Audit,
    Other,
}

impl PageKind {
    fn as_str(self) -> &'static str {
        match self {
            PageKind::Root => "root",
            PageKind::Login => "login",
            PageKind::Logout => "logout",
            PageKind::Held => "held",
            PageKind::Event => "event",
            PageKind::Decide => "decide",
            PageKind::Audit => "audit",
            PageKind::Other => "other",
        }
    }
}

type Resp = Response<Full<Bytes>>;

/// Answers one request under `/ui`. `tls_principal` is the principal of a verified TLS client
/// certificate on this connection, if any.
pub fn handle(ctx: &UiCtx, tls_principal: Option<Principal>, req: Request<Bytes>) -> Resp {
    let (parts, body) = req.into_parts();
    let path = parts.uri.path().to_string();
    let query = parts.uri.query().unwrap_or("").to_string();
    let (kind, response) = route(ctx, tls_principal.as_ref(), &parts, &path, &query, &body);
    metrics::counter!(
        telemetry::UI_REQUESTS_TOTAL,
        "page" => kind.as_str(),
        "status" => status_label(response.status()),
    )
    .increment(1);
    response
}

/// Reads a request's body (at most [`MAX_FORM_BYTES`]) for [`handle`]; a larger or broken
/// body gives the response to send instead (413 or 400).
pub async fn buffered<B>(req: Request<B>) -> Result<Request<Bytes>, Box<Resp>>
where
    B: http_body::Body,
    B::Error: std::error::Error + Send + Sync + 'static,
{
    use http_body_util::BodyExt;
    let (parts, body) = req.into_parts();
    match http_body_util::Limited::new(body, MAX_FORM_BYTES)
        .collect()
        .await
    {
        Ok(collected) => Ok(Request::from_parts(parts, collected.to_bytes())),
        Err(e) if e.is::<http_body_util::LengthLimitError>() => Err(Box::new(error_page(
            None,
            StatusCode::PAYLOAD_TOO_LARGE,
            "Form too large",
            "The form data is too large.",
        ))),
        Err(_) => Err(Box::new(error_page(
            None,
            StatusCode::BAD_REQUEST,
            "Bad request",
            "The request body could not be read.",
        ))),
    }
}

fn status_label(status: StatusCode) -> &'static str {
    match status.as_u16() {
        200 => "200",
        303 => "303",
        400 => "400",
        401 => "401",
        403 => "403",
        404 => "404",
        405 => "405",
        409 => "409",
        413 => "413",
        _ if status.is_server_error() => "5xx",
        _ => "other",
    }
}

fn hold_path(path: &str) -> Option<(HoldId, bool)> {
    let rest = path.strip_prefix("/ui/held/")?;
    let (id, decide) = match rest.strip_suffix("/decide") {
        Some(id) => (id, true),
        None => (rest, false),
    };
    if id.is_empty() || !id.bytes().all(|b| b.is_ascii_digit()) {
        return None;
    }
    Some((id.parse().ok()?, decide))
}

fn route(
    ctx: &UiCtx,
    tls: Option<&Principal>,
    parts: &http::request::Parts,
    path: &str,
    query: &str,
    body: &Bytes,
) -> (PageKind, Resp) {
    let method = &parts.method;
    let kind = match path {
        "/ui" | "/ui/" => PageKind::Root,
        "/ui/login" => PageKind::Login,
        "/ui/logout" => PageKind::Logout,
        "/ui/held" => PageKind::Held,
        "/ui/audit" => PageKind::Audit,
        p => match hold_path(p) {
            Some((_, false)) => PageKind::Event,
            Some((_, true)) => PageKind::Decide,
            None => PageKind::Other,
        },
    };
    let wants_post = matches!(kind, PageKind::Logout | PageKind::Decide | PageKind::Login);
    let method_ok = match kind {
        PageKind::Login => method == Method::GET || method == Method::POST,
        PageKind::Logout | PageKind::Decide => method == Method::POST,
        PageKind::Other => true,
        _ => method == Method::GET,
    };
    if !method_ok {
        return (
            kind,
            error_page(
                None,
                StatusCode::METHOD_NOT_ALLOWED,
                "Method not allowed",
                "This page does not take that request method.",
            ),
        );
    }
    if method == Method::POST {
        if !wants_post {
            return (kind, not_found(None));
        }
        if body.len() > MAX_FORM_BYTES {
            return (
                kind,
                error_page(
                    None,
                    StatusCode::PAYLOAD_TOO_LARGE,
                    "Form too large",
                    "The form data is too large.",
                ),
            );
        }
        if !same_origin(&parts.headers, parts.uri.authority().map(|a| a.as_str())) {
            journal_best_effort(ctx, None, "ui.post", path, "refused:cross_origin");
            return (
                kind,
                error_page(
                    None,
                    StatusCode::FORBIDDEN,
                    "Refused",
                    "Cross-site form submissions are refused.",
                ),
            );
        }
    }
    let session = session_of(ctx, tls, &parts.headers);
    let response = match kind {
        PageKind::Root => match session {
            Some(_) => redirect("/ui/held", None),
            None => redirect("/ui/login", None),
        },
        PageKind::Login if method == Method::GET => match session {
            Some(_) => redirect("/ui/held", None),
            None => html_response(StatusCode::OK, "Login", None, pages::login(tls, None)),
        },
        PageKind::Login => login(ctx, tls, body),
        PageKind::Other => not_found(session.as_ref().map(|(_, a)| a)),
        _ => {
            let Some((sid, active)) = session else {
                return (
                    kind,
                    match kind {
                        PageKind::Logout | PageKind::Decide => error_page(
                            None,
                            StatusCode::FORBIDDEN,
                            "Session expired",
                            "Your session has ended. Log in again.",
                        ),
                        _ => redirect("/ui/login", None),
                    },
                );
            };
            match kind {
                PageKind::Logout => logout(ctx, &sid, &active, body),
                PageKind::Held => held_list(ctx, &active, query),
                PageKind::Event => {
                    let (id, _) = hold_path(path).unwrap_or((0, false));
                    event_page(ctx, &active, id, query)
                }
                PageKind::Decide => {
                    let (id, _) = hold_path(path).unwrap_or((0, false));
                    decide(ctx, &active, id, body)
                }
                PageKind::Audit => audit_page(ctx, &active, query),
                _ => not_found(Some(&active)),
            }
        }
    };
    (kind, response)
}

/// Whether a POST comes from this origin: `Sec-Fetch-Site`, when sent, must be `same-origin`
/// (or `none`: typed by the user); `Origin`, when sent, must name the request's host, or be
/// `null` (what browsers send under `Referrer-Policy: no-referrer`) together with
/// `Sec-Fetch-Site: same-origin`.
fn same_origin(headers: &HeaderMap, authority: Option<&str>) -> bool {
    let site = headers.get("sec-fetch-site");
    if let Some(site) = site {
        if site != "same-origin" && site != "none" {
            return false;
        }
    }
    let Some(origin) = headers.get(header::ORIGIN) else {
        return true;
    };
    if origin == "null" {
        return site.is_some_and(|s| s == "same-origin");
    }
    let Ok(origin) = origin.to_str() else {
        return false;
    };
    let host = headers
        .get(header::HOST)
        .and_then(|h| h.to_str().ok())
        .or(authority);
    let origin_host = origin
        .strip_prefix("https://")
        .or_else(|| origin.strip_prefix("http://"));
    matches!((origin_host, host), (Some(o), Some(h)) if o.eq_ignore_ascii_case(h))
}

fn cookie_value(headers: &HeaderMap) -> Option<String> {
    headers
        .get_all(header::COOKIE)
        .iter()
        .filter_map(|v| v.to_str().ok())
        .flat_map(|v| v.split(';'))
        .filter_map(|kv| kv.trim().split_once('='))
        .find(|(k, _)| *k == COOKIE)
        .map(|(_, v)| v.to_string())
}

fn session_of(
    ctx: &UiCtx,
    tls: Option<&Principal>,
    headers: &HeaderMap,
) -> Option<(String, Active)> {
    let sid = cookie_value(headers)?;
    let active = ctx.sessions.get(&sid)?;
    if let Some(bound) = &active.tls_name {
        // A session opened with a client certificate lives only with that certificate.
        if tls.map(|p| &p.name) != Some(bound) {
            return None;
        }
    }
    Some((sid, active))
}

fn set_headers(headers: &mut HeaderMap) {
    headers.insert(
        header::CONTENT_SECURITY_POLICY,
        HeaderValue::from_static(CSP),
    );
    headers.insert(
        header::X_CONTENT_TYPE_OPTIONS,
        HeaderValue::from_static("nosniff"),
    );
    headers.insert(
        header::REFERRER_POLICY,
        HeaderValue::from_static("no-referrer"),
    );
    headers.insert(header::CACHE_CONTROL, HeaderValue::from_static("no-store"));
    headers.insert(header::X_FRAME_OPTIONS, HeaderValue::from_static("DENY"));
}

fn html_response(status: StatusCode, title: &str, active: Option<&Active>, body: String) -> Resp {
    let mut response = Response::new(Full::new(Bytes::from(pages::layout(title, active, &body))));
    *response.status_mut() = status;
    set_headers(response.headers_mut());
    response.headers_mut().insert(
        header::CONTENT_TYPE,
        HeaderValue::from_static("text/html; charset=utf-8"),
    );
    response
}

fn redirect(location: &str, cookie: Option<String>) -> Resp {
    let mut response = Response::new(Full::new(Bytes::new()));
    *response.status_mut() = StatusCode::SEE_OTHER;
    set_headers(response.headers_mut());
    if let Ok(v) = HeaderValue::from_str(location) {
        response.headers_mut().insert(header::LOCATION, v);
    }
    if let Some(c) = cookie.and_then(|c| HeaderValue::from_str(&c).ok()) {
        response.headers_mut().insert(header::SET_COOKIE, c);
    }
    response
}

fn error_page(active: Option<&Active>, status: StatusCode, title: &str, message: &str) -> Resp {
    html_response(status, title, active, pages::message(title, message))
}

fn not_found(active: Option<&Active>) -> Resp {
    error_page(
        active,
        StatusCode::NOT_FOUND,
        "Not found",
        "There is no such page or held event.",
    )
}

fn audit_unavailable(active: Option<&Active>) -> Resp {
    error_page(
        active,
        StatusCode::SERVICE_UNAVAILABLE,
        "Audit unavailable",
        "The action cannot be recorded in the audit log, so it was not carried out.",
    )
}

fn journal(
    ctx: &UiCtx,
    who: Option<&Principal>,
    action: &str,
    target: &str,
    outcome: &str,
) -> Result<(), ()> {
    ctx.journal
        .admin_action(who, action, target, outcome)
        .map_err(|e| {
            tracing::error!(action, target, outcome, error = %e, "review UI: audit journal refused the action");
        })
}

/// Journals an attempt that is refused anyway (a journal failure changes nothing).
fn journal_best_effort(
    ctx: &UiCtx,
    who: Option<&Principal>,
    action: &str,
    target: &str,
    outcome: &str,
) {
    let _ = journal(ctx, who, action, target, outcome);
}

fn session_cookie(ctx: &UiCtx, id: &str) -> String {
    format!(
        "{COOKIE}={id}; Path=/ui/; HttpOnly; SameSite=Strict{}",
        if ctx.secure_cookies { "; Secure" } else { "" }
    )
}

fn login(ctx: &UiCtx, tls: Option<&Principal>, body: &Bytes) -> Resp {
    let Ok(form) = form::parse(body) else {
        return error_page(
            None,
            StatusCode::BAD_REQUEST,
            "Bad request",
            "The form data could not be read.",
        );
    };
    let via_certificate = form.get("method").map(String::as_str) == Some("certificate");
    let principal = if via_certificate {
        tls.cloned()
    } else {
        match form.get("token").map(|t| t.trim()) {
            Some(t) if !t.is_empty() => ctx.auth.bearer(t),
            _ => None,
        }
    };
    let method = if via_certificate {
        "certificate"
    } else {
        "token"
    };
    let Some(principal) = principal else {
        if journal(ctx, None, "ui.login", method, "denied").is_err() {
            return audit_unavailable(None);
        }
        return html_response(
            StatusCode::UNAUTHORIZED,
            "Login",
            None,
            pages::login(
                tls,
                Some("Login failed: unknown token or no client certificate."),
            ),
        );
    };
    if journal(ctx, Some(&principal), "ui.login", method, "ok").is_err() {
        return audit_unavailable(None);
    }
    let tls_name = via_certificate.then(|| principal.name.clone());
    match ctx.sessions.create(principal, tls_name) {
        Ok((id, _)) => redirect("/ui/held", Some(session_cookie(ctx, &id))),
        Err(e) => {
            tracing::warn!(error = %e, "review UI: no session opened");
            error_page(
                None,
                StatusCode::SERVICE_UNAVAILABLE,
                "Login unavailable",
                "No session could be opened; try again later.",
            )
        }
    }
}

/// The form of a POST if it carries this session's CSRF token.
fn checked_form(
    ctx: &UiCtx,
    active: &Active,
    body: &Bytes,
    target: &str,
) -> Result<std::collections::BTreeMap<String, String>, Box<Resp>> {
    let form = form::parse(body).map_err(|_| {
        Box::new(error_page(
            Some(active),
            StatusCode::BAD_REQUEST,
            "Bad request",
            "The form data could not be read.",
        ))
    })?;
    let submitted = form.get("csrf").map(String::as_str).unwrap_or("");
    if !csrf_matches(&active.csrf, submitted) {
        journal_best_effort(
            ctx,
            Some(&active.principal),
            "ui.post",
            target,
            "refused:csrf",
        );
        return Err(Box::new(error_page(
            Some(active),
            StatusCode::FORBIDDEN,
            "Refused",
            "The form's security token is missing or wrong. Reload the page and try again.",
        )));
    }
    Ok(form)
}

fn logout(ctx: &UiCtx, sid: &str, active: &Active, body: &Bytes) -> Resp {
    if let Err(r) = checked_form(ctx, active, body, "/ui/logout") {
        return *r;
    }
    // Ending a session only takes rights away: it happens even if the journal fails.
    journal_best_effort(ctx, Some(&active.principal), "ui.logout", "ui", "ok");
    ctx.sessions.remove(sid);
    redirect(
        "/ui/login",
        Some(format!(
            "{COOKIE}=; Path=/ui/; Max-Age=0; HttpOnly; SameSite=Strict{}",
            if ctx.secure_cookies { "; Secure" } else { "" }
        )),
    )
}

fn review_error_page(active: &Active, e: &ReviewError) -> Resp {
    let (status, title, message) = match e {
        ReviewError::NotFound => return not_found(Some(active)),
        ReviewError::NotCleared => (
            StatusCode::FORBIDDEN,
            "Not cleared",
            "You are not cleared for this event's label. Its content is not shown.",
        ),
        ReviewError::Forbidden => (
            StatusCode::FORBIDDEN,
            "Forbidden",
            "Your role may not decide held events.",
        ),
        ReviewError::SameReviewer => (
            StatusCode::CONFLICT,
            "Awaiting second reviewer",
            "Four-eyes: you already approved this event. It is awaiting a second reviewer.",
        ),
        ReviewError::AlreadyDecided => (
            StatusCode::CONFLICT,
            "Already decided",
            "This event was already decided.",
        ),
        ReviewError::ReasonRequired => (
            StatusCode::BAD_REQUEST,
            "Reason required",
            "A reason is required to release or reject an event.",
        ),
        ReviewError::Unavailable(detail) => {
            tracing::error!(error = %detail, "review UI: review queue unavailable");
            (
                StatusCode::SERVICE_UNAVAILABLE,
                "Review unavailable",
                "The review queue is unavailable; nothing was changed.",
            )
        }
    };
    error_page(Some(active), status, title, message)
}

fn error_kind(e: &ReviewError) -> &'static str {
    match e {
        ReviewError::NotFound => "not_found",
        ReviewError::NotCleared => "not_cleared",
        ReviewError::Forbidden => "forbidden",
        ReviewError::SameReviewer => "same_reviewer",
        ReviewError::AlreadyDecided => "already_decided",
        ReviewError::ReasonRequired => "reason_required",
        ReviewError::Unavailable(_) => "unavailable",
    }
}

fn held_list(ctx: &UiCtx, active: &Active, query: &str) -> Resp {
    let Ok(q) = form::parse(query.as_bytes()) else {
        return error_page(
            Some(active),
            StatusCode::BAD_REQUEST,
            "Bad request",
            "The query could not be read.",
        );
    };
    let all = q.get("all").map(String::as_str) == Some("1");
    match ctx.queue.list(&active.principal, all) {
        Ok(list) => html_response(
            StatusCode::OK,
            "Held events",
            Some(active),
            pages::held_list(&list, all),
        ),
        Err(e) => review_error_page(active, &e),
    }
}

fn event_page(ctx: &UiCtx, active: &Active, id: HoldId, query: &str) -> Resp {
    let target = format!("hold/{id}");
    let done = form::parse(query.as_bytes())
        .ok()
        .and_then(|q| q.get("done").cloned());
    match ctx.queue.show(&active.principal, id) {
        Ok(detail) => {
            if journal(ctx, Some(&active.principal), "ui.show", &target, "shown").is_err() {
                return audit_unavailable(Some(active));
            }
            html_response(
                StatusCode::OK,
                &format!("Held event {id}"),
                Some(active),
                pages::event(&detail, active, done.as_deref()),
            )
        }
        Err(e) => {
            journal_best_effort(
                ctx,
                Some(&active.principal),
                "ui.show",
                &target,
                &format!("refused:{}", error_kind(&e)),
            );
            review_error_page(active, &e)
        }
    }
}

fn decide(ctx: &UiCtx, active: &Active, id: HoldId, body: &Bytes) -> Resp {
    let target = format!("hold/{id}");
    let form = match checked_form(ctx, active, body, &target) {
        Ok(f) => f,
        Err(r) => return *r,
    };
    let who = &active.principal;
    if !who.role.may_decide() {
        journal_best_effort(ctx, Some(who), "ui.decide", &target, "refused:forbidden");
        return review_error_page(active, &ReviewError::Forbidden);
    }
    let decision = match form.get("decision").map(String::as_str) {
        Some("release") => Decision::Release,
        Some("reject") => Decision::Reject,
        _ => {
            return error_page(
                Some(active),
                StatusCode::BAD_REQUEST,
                "Bad request",
                "Choose release or reject.",
            )
        }
    };
    let reason = form.get("reason").map(|r| r.trim()).unwrap_or("");
    if reason.is_empty() {
        journal_best_effort(
            ctx,
            Some(who),
            "ui.decide",
            &target,
            "refused:reason_required",
        );
        return review_error_page(active, &ReviewError::ReasonRequired);
    }
    if reason.chars().count() > MAX_REASON_CHARS {
        return error_page(
            Some(active),
            StatusCode::BAD_REQUEST,
            "Reason too long",
            "The reason is longer than 2000 characters.",
        );
    }
    let verb = match decision {
        Decision::Release => "release",
        Decision::Reject => "reject",
    };
    if journal(
        ctx,
        Some(who),
        "ui.decide",
        &target,
        &format!("requested:{verb}"),
    )
    .is_err()
    {
        return audit_unavailable(Some(active));
    }
    match ctx.queue.decide(who, id, decision, reason) {
        Ok(outcome) => {
            let done = match outcome {
                Outcome::AwaitingSecond => "awaiting",
                Outcome::Decided(HoldState::Released) => "released",
                Outcome::Decided(HoldState::Rejected) => "rejected",
                Outcome::Decided(HoldState::Pending) => "pending",
            };
            journal_best_effort(ctx, Some(who), "ui.decide", &target, done);
            redirect(&format!("/ui/held/{id}?done={done}"), None)
        }
        Err(e) => {
            journal_best_effort(
                ctx,
                Some(who),
                "ui.decide",
                &target,
                &format!("refused:{}", error_kind(&e)),
            );
            review_error_page(active, &e)
        }
    }
}

/// The audit filter a query string names; empty fields mean "any".
fn audit_filter(q: &std::collections::BTreeMap<String, String>) -> Result<AuditFilter, ()> {
    let field = |name: &str| {
        q.get(name)
            .map(|v| v.trim().to_string())
            .filter(|v| !v.is_empty())
    };
    let limit = match field("limit") {
        None => 0,
        Some(v) => v.parse::<usize>().map_err(|_| ())?,
    };
    Ok(AuditFilter {
        from: field("from"),
        to: field("to"),
        room: field("room"),
        sender: field("sender"),
        server: field("server"),
        verdict: field("verdict"),
        rule: field("rule"),
        label: field("label"),
        limit,
    })
}

fn audit_page(ctx: &UiCtx, active: &Active, query: &str) -> Resp {
    let who = &active.principal;
    if !who.role.may_audit() {
        journal_best_effort(
            ctx,
            Some(who),
            "ui.audit_search",
            "audit",
            "refused:forbidden",
        );
        return error_page(
            Some(active),
            StatusCode::FORBIDDEN,
            "Forbidden",
            &format!(
                "Your role ({}) may not read the audit log. Ask an auditor or an administrator.",
                who.role.as_str()
            ),
        );
    }
    let filter = match form::parse(query.as_bytes())
        .map_err(|_| ())
        .and_then(|q| audit_filter(&q))
    {
        Ok(f) => f,
        Err(()) => {
            return error_page(
                Some(active),
                StatusCode::BAD_REQUEST,
                "Bad request",
                "The search could not be read (the limit must be a whole number).",
            )
        }
    };
    let target = serde_json::to_string(&filter).unwrap_or_default();
    if journal(ctx, Some(who), "ui.audit_search", &target, "ok").is_err() {
        return audit_unavailable(Some(active));
    }
    match ctx.audit.search(&filter) {
        Ok(records) => html_response(
            StatusCode::OK,
            "Audit log",
            Some(active),
            pages::audit(&filter, &records),
        ),
        Err(e) => {
            tracing::error!(error = %e, "review UI: audit search failed");
            error_page(
                Some(active),
                StatusCode::SERVICE_UNAVAILABLE,
                "Audit search failed",
                "The audit log could not be searched.",
            )
        }
    }
}
