//! The review web UI (`grenzwacht::admin::ui`) end to end: requests straight into `handle`
//! for the security properties, and a real headless Chromium (through chromedriver) for the
//! reviewer workflow, with a PNG screenshot of every step.
//!
//! The UI is served by [`start_ui_server`], the admin listener in process: over the in-test
//! review queue and audit store of `common/review.rs` (every page and refusal), and over the
//! guard's real hold queue and audit log (the four-eyes release and the audit search).
#[path = "common/browser.rs"]
mod browser;
#[path = "common/review.rs"]
mod review;

use std::net::SocketAddr;
use std::sync::atomic::Ordering;
use std::sync::Arc;

use bytes::Bytes;
use http::{header, Request, StatusCode};
use http_body_util::BodyExt;

use grenzwacht::admin::ui::{self, Sessions, UiCtx};
use grenzwacht::review::{HoldState, Principal, Role};

use browser::Browser;
use review::{held, principal, TestAudit, TestAuth, TestQueue};

const SCRIPT_BODY: &str = "<script>alert('x')</script> pay to DE89370400440532013000 now";

/// Tokens: `tok-alice`, `tok-bob` (reviewers cleared up to GEHEIM), `tok-audrey` (auditor),
/// `tok-carol` (reviewer cleared for VS-VERTRAULICH only).
/// Held events: #1 VS-VERTRAULICH, one reviewer decides, body with `<script>` and an IBAN
/// match; #2 GEHEIM with four-eyes; #3 STRENG GEHEIM (nobody is cleared).
struct Fixture {
    queue: Arc<TestQueue>,
    audit: Arc<TestAudit>,
    auth: Arc<TestAuth>,
}

fn fixture() -> Fixture {
    let audit = Arc::new(TestAudit::default());
    let iban = SCRIPT_BODY.find("DE89").unwrap();
    let queue = Arc::new(TestQueue {
        held: std::sync::Mutex::new(vec![
            held(
                1,
                Some("VS-VERTRAULICH"),
                false,
                SCRIPT_BODY,
                &[("dlp.iban", iban, iban + 22)],
            ),
            held(
                2,
                Some("GEHEIM"),
                true,
                "Übergabe um 14:00 am Tor",
                &[("keyword.uebergabe", 0, 9)],
            ),
            held(3, Some("STRENG GEHEIM"), true, "top", &[]),
        ]),
        audit: audit.clone(),
    });
    let mut auth = TestAuth::default();
    let cleared = ["VS-VERTRAULICH", "GEHEIM"];
    for (token, p) in [
        ("tok-alice", principal("alice", Role::Reviewer, &cleared)),
        ("tok-bob", principal("bob", Role::Reviewer, &cleared)),
        ("tok-audrey", principal("audrey", Role::Auditor, &cleared)),
        (
            "tok-carol",
            principal("carol", Role::Reviewer, &["VS-VERTRAULICH"]),
        ),
    ] {
        auth.tokens.insert(token.into(), p);
    }
    Fixture {
        queue,
        audit,
        auth: Arc::new(auth),
    }
}

fn ctx(f: &Fixture, secure_cookies: bool) -> UiCtx {
    UiCtx {
        queue: f.queue.clone(),
        audit: f.audit.clone(),
        auth: f.auth.clone(),
        journal: f.audit.clone(),
        sessions: Sessions::default(),
        secure_cookies,
    }
}

/// Serves the review UI through the admin listener (`grenzwacht::admin::run`, everything under
/// `/ui` goes to `ui::handle`) on a fresh loopback port, with `ctx` as its UI. This is the one
/// place that builds the server.
fn start_ui_server(ctx: UiCtx) -> SocketAddr {
    let (tx, rx) = std::sync::mpsc::channel();
    std::thread::spawn(move || {
        let rt = tokio::runtime::Builder::new_multi_thread()
            .worker_threads(2)
            .enable_all()
            .build()
            .unwrap();
        rt.block_on(async move {
            let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
            tx.send(listener.local_addr().unwrap()).unwrap();
            let mut state = grenzwacht::admin::AdminState::new(
                grenzwacht::telemetry::metrics_handle(),
                Arc::new(std::sync::atomic::AtomicBool::new(true)),
                grenzwacht::admin::AdminAccess::none(),
            );
            state.ui = Some(Arc::new(ctx));
            grenzwacht::admin::run(listener, state, std::future::pending())
                .await
                .unwrap();
        });
    });
    rx.recv().unwrap()
}

// ---- requests straight into `handle` -------------------------------------------------------

struct Reply {
    status: StatusCode,
    headers: http::HeaderMap,
    body: String,
}

fn send(ctx: &UiCtx, tls: Option<Principal>, req: Request<Bytes>) -> Reply {
    let resp = ui::handle(ctx, tls, req);
    let status = resp.status();
    let headers = resp.headers().clone();
    let body = futures_util::FutureExt::now_or_never(resp.into_body().collect())
        .unwrap()
        .unwrap()
        .to_bytes();
    Reply {
        status,
        headers,
        body: String::from_utf8(body.to_vec()).unwrap(),
    }
}

fn get(ctx: &UiCtx, cookie: Option<&str>, uri: &str) -> Reply {
    let mut b = Request::get(uri).header(header::HOST, "127.0.0.1:9100");
    if let Some(c) = cookie {
        b = b.header(header::COOKIE, c);
    }
    send(ctx, None, b.body(Bytes::new()).unwrap())
}

fn post(ctx: &UiCtx, cookie: Option<&str>, uri: &str, form: &str) -> Reply {
    post_from(ctx, cookie, uri, form, "http://127.0.0.1:9100")
}

fn post_from(ctx: &UiCtx, cookie: Option<&str>, uri: &str, form: &str, origin: &str) -> Reply {
    let mut b = Request::post(uri)
        .header(header::HOST, "127.0.0.1:9100")
        .header(header::ORIGIN, origin)
        .header(header::CONTENT_TYPE, "application/x-www-form-urlencoded");
    if let Some(c) = cookie {
        b = b.header(header::COOKIE, c);
    }
    send(ctx, None, b.body(Bytes::from(form.to_string())).unwrap())
}

/// Logs in with a token; returns the `Cookie` header value and the CSRF token of the session.
fn login(ctx: &UiCtx, token: &str) -> (String, String) {
    let r = post(ctx, None, "/ui/login", &format!("token={token}"));
    assert_eq!(r.status, StatusCode::SEE_OTHER, "{}", r.body);
    let set = r.headers[header::SET_COOKIE].to_str().unwrap().to_string();
    let cookie = set.split(';').next().unwrap().to_string();
    let page = get(ctx, Some(&cookie), "/ui/held");
    let csrf = page
        .body
        .split("name=\"csrf\" value=\"")
        .nth(1)
        .unwrap()
        .split('"')
        .next()
        .unwrap()
        .to_string();
    (cookie, csrf)
}

#[test]
fn every_page_carries_the_strict_headers() {
    let f = fixture();
    let c = ctx(&f, false);
    let (cookie, _) = login(&c, "tok-alice");
    for r in [
        get(&c, None, "/ui/login"),
        get(&c, None, "/ui/held"),
        get(&c, Some(&cookie), "/ui/held"),
        get(&c, Some(&cookie), "/ui/held/1"),
        get(&c, Some(&cookie), "/ui/audit"),
        get(&c, Some(&cookie), "/ui/nothing"),
    ] {
        assert_eq!(
            r.headers[header::CONTENT_SECURITY_POLICY],
            "default-src 'none'; style-src 'self' 'unsafe-inline'; img-src 'self'; \
             form-action 'self'; frame-ancestors 'none'"
        );
        assert_eq!(r.headers[header::X_CONTENT_TYPE_OPTIONS], "nosniff");
        assert_eq!(r.headers[header::REFERRER_POLICY], "no-referrer");
        assert_eq!(r.headers[header::CACHE_CONTROL], "no-store");
        assert!(!r.body.contains("<script"), "no script on any page");
        assert!(
            !r.body.contains("http://") && !r.body.contains("https://"),
            "nothing external"
        );
    }
}

#[test]
fn login_sets_a_strict_session_cookie_and_is_journaled() {
    let f = fixture();
    let c = ctx(&f, false);
    let r = post(&c, None, "/ui/login", "token=wrong");
    assert_eq!(r.status, StatusCode::UNAUTHORIZED);
    assert!(r.headers.get(header::SET_COOKIE).is_none());
    assert!(r.body.contains("Login failed"));
    assert_eq!(f.audit.actions("ui.login", "denied").len(), 1);
    assert!(
        !serde_json::to_string(&f.audit.all())
            .unwrap()
            .contains("wrong"),
        "token not journaled"
    );

    let r = post(&c, None, "/ui/login", "token=tok-alice");
    assert_eq!(r.status, StatusCode::SEE_OTHER);
    assert_eq!(r.headers[header::LOCATION], "/ui/held");
    let set = r.headers[header::SET_COOKIE].to_str().unwrap();
    assert!(set.starts_with("gw_ui_session="), "{set}");
    let id = set
        .split(';')
        .next()
        .unwrap()
        .trim_start_matches("gw_ui_session=");
    assert_eq!(id.len(), 64);
    for attr in ["Path=/ui/", "HttpOnly", "SameSite=Strict"] {
        assert!(set.contains(attr), "{set}");
    }
    assert!(!set.contains("Secure"), "plain HTTP listener: {set}");
    let ok = f.audit.actions("ui.login", "ok");
    assert_eq!(ok.len(), 1);
    assert_eq!(ok[0]["actor"], "alice");

    let tls = ctx(&f, true);
    let r = post(&tls, None, "/ui/login", "token=tok-alice");
    assert!(r.headers[header::SET_COOKIE]
        .to_str()
        .unwrap()
        .contains("; Secure"));
}

#[test]
fn logout_ends_the_session_and_idle_requests_need_a_login() {
    let f = fixture();
    let c = ctx(&f, false);
    let (cookie, csrf) = login(&c, "tok-alice");
    assert_eq!(get(&c, Some(&cookie), "/ui/held").status, StatusCode::OK);
    // Logout needs the CSRF token too.
    assert_eq!(
        post(&c, Some(&cookie), "/ui/logout", "").status,
        StatusCode::FORBIDDEN
    );
    let r = post(&c, Some(&cookie), "/ui/logout", &format!("csrf={csrf}"));
    assert_eq!(r.status, StatusCode::SEE_OTHER);
    assert!(r.headers[header::SET_COOKIE]
        .to_str()
        .unwrap()
        .contains("Max-Age=0"));
    let r = get(&c, Some(&cookie), "/ui/held");
    assert_eq!(r.status, StatusCode::SEE_OTHER);
    assert_eq!(r.headers[header::LOCATION], "/ui/login");
    assert_eq!(
        get(&c, Some("gw_ui_session=forged"), "/ui/held/1").status,
        StatusCode::SEE_OTHER
    );
}

#[test]
fn a_client_certificate_principal_can_log_in_and_its_session_needs_the_certificate() {
    let f = fixture();
    let c = ctx(&f, true);
    let cert = principal("cert-reviewer", Role::Reviewer, &["GEHEIM"]);
    let login_page = send(
        &c,
        Some(cert.clone()),
        Request::get("/ui/login").body(Bytes::new()).unwrap(),
    );
    assert!(login_page.body.contains("Continue as cert-reviewer"));
    // Without a certificate on the connection, the certificate login fails.
    let r = post(&c, None, "/ui/login", "method=certificate");
    assert_eq!(r.status, StatusCode::UNAUTHORIZED);
    let req = Request::post("/ui/login")
        .header(header::CONTENT_TYPE, "application/x-www-form-urlencoded")
        .body(Bytes::from_static(b"method=certificate"))
        .unwrap();
    let r = send(&c, Some(cert.clone()), req);
    assert_eq!(r.status, StatusCode::SEE_OTHER);
    let cookie = r.headers[header::SET_COOKIE]
        .to_str()
        .unwrap()
        .split(';')
        .next()
        .unwrap()
        .to_string();
    let with_cert = Request::get("/ui/held/2")
        .header(header::COOKIE, &cookie)
        .body(Bytes::new())
        .unwrap();
    assert_eq!(send(&c, Some(cert), with_cert).status, StatusCode::OK);
    // The same cookie on a connection without that certificate is no session.
    assert_eq!(
        get(&c, Some(&cookie), "/ui/held/2").status,
        StatusCode::SEE_OTHER
    );
}

#[test]
fn event_content_is_shown_as_text_with_the_match_marked() {
    let f = fixture();
    let c = ctx(&f, false);
    let (cookie, _) = login(&c, "tok-alice");
    let r = get(&c, Some(&cookie), "/ui/held/1");
    assert_eq!(r.status, StatusCode::OK);
    assert!(
        !r.body.contains("<script>alert"),
        "content must not become markup"
    );
    assert!(r
        .body
        .contains("&lt;script&gt;alert(&#39;x&#39;)&lt;/script&gt;"));
    assert!(
        r.body.contains("<mark>DE89370400440532013000</mark>"),
        "{}",
        r.body
    );
    assert!(r
        .body
        .contains("class=\"banner lv-confidential\">VS-VERTRAULICH<"));
    assert_eq!(f.audit.actions("ui.show", "shown").len(), 1);
}

#[test]
fn decisions_need_csrf_same_origin_a_reason_and_a_working_audit_log() {
    let f = fixture();
    let c = ctx(&f, false);
    let (cookie, csrf) = login(&c, "tok-alice");
    let uri = "/ui/held/1/decide";
    let good = format!("csrf={csrf}&decision=release&reason=checked+with+the+owner");

    let r = post(&c, Some(&cookie), uri, "decision=release&reason=x");
    assert_eq!(r.status, StatusCode::FORBIDDEN, "no CSRF token");
    let r = post(
        &c,
        Some(&cookie),
        uri,
        &format!("csrf={}&decision=release&reason=x", "0".repeat(64)),
    );
    assert_eq!(r.status, StatusCode::FORBIDDEN, "wrong CSRF token");
    let r = post_from(&c, Some(&cookie), uri, &good, "http://evil.test");
    assert_eq!(r.status, StatusCode::FORBIDDEN, "cross-origin");
    let r = post_from(&c, Some(&cookie), uri, &good, "null");
    assert_eq!(
        r.status,
        StatusCode::FORBIDDEN,
        "opaque origin without Sec-Fetch-Site"
    );
    let cross = Request::post(uri)
        .header(header::HOST, "127.0.0.1:9100")
        .header(header::COOKIE, &cookie)
        .header("sec-fetch-site", "cross-site")
        .body(Bytes::from(good.clone()))
        .unwrap();
    assert_eq!(
        send(&c, None, cross).status,
        StatusCode::FORBIDDEN,
        "Sec-Fetch-Site: cross-site"
    );
    assert_eq!(f.queue.state(1), HoldState::Pending);
    let r = post(
        &c,
        Some(&cookie),
        uri,
        &format!("csrf={csrf}&decision=release&reason=+++"),
    );
    assert_eq!(r.status, StatusCode::BAD_REQUEST, "blank reason");
    assert!(r.body.contains("A reason is required"));
    let r = post(
        &c,
        Some(&cookie),
        uri,
        &format!("csrf={csrf}&decision=release"),
    );
    assert_eq!(r.status, StatusCode::BAD_REQUEST, "no reason");
    assert_eq!(f.queue.state(1), HoldState::Pending);
    assert!(f.queue.approvals(1).is_empty());

    f.audit.failing.store(true, Ordering::SeqCst);
    let r = post(&c, Some(&cookie), uri, &good);
    assert_eq!(r.status, StatusCode::SERVICE_UNAVAILABLE);
    assert!(
        !r.body.contains("/var/lib"),
        "no internal error text on the page"
    );
    assert_eq!(f.queue.state(1), HoldState::Pending);
    f.audit.failing.store(false, Ordering::SeqCst);

    let r = post(&c, Some(&cookie), uri, &good);
    assert_eq!(r.status, StatusCode::SEE_OTHER);
    assert_eq!(r.headers[header::LOCATION], "/ui/held/1?done=released");
    assert_eq!(f.queue.state(1), HoldState::Released);
    assert_eq!(f.queue.approvals(1)[0].reason, "checked with the owner");
    assert_eq!(f.audit.actions("ui.decide", "requested:release").len(), 1);
    assert_eq!(f.audit.actions("ui.decide", "released").len(), 1);
}

#[test]
fn roles_and_clearances_are_enforced_with_clear_pages() {
    let f = fixture();
    let c = ctx(&f, false);
    let (alice, _) = login(&c, "tok-alice");
    let r = get(&c, Some(&alice), "/ui/audit");
    assert_eq!(r.status, StatusCode::FORBIDDEN);
    assert!(r.body.contains("may not read the audit log"));
    assert_eq!(
        f.audit
            .actions("ui.audit_search", "refused:forbidden")
            .len(),
        1
    );

    let r = get(&c, Some(&alice), "/ui/held/3");
    assert_eq!(r.status, StatusCode::FORBIDDEN);
    assert!(r.body.contains("not cleared"));
    assert!(
        !r.body.contains("<pre"),
        "no content for a not-cleared event"
    );
    let list = get(&c, Some(&alice), "/ui/held");
    assert!(list.body.contains("Held event #2") && !list.body.contains("Held event #3"));

    let (carol, _) = login(&c, "tok-carol");
    let r = get(&c, Some(&carol), "/ui/held/2");
    assert_eq!(r.status, StatusCode::FORBIDDEN);
    assert!(!r.body.contains("Übergabe"));

    let (audrey, csrf) = login(&c, "tok-audrey");
    let r = get(&c, Some(&audrey), "/ui/held/1");
    assert_eq!(r.status, StatusCode::OK);
    assert!(
        !r.body.contains("id=\"release\""),
        "an auditor gets no decision form"
    );
    let r = post(
        &c,
        Some(&audrey),
        "/ui/held/1/decide",
        &format!("csrf={csrf}&decision=release&reason=x"),
    );
    assert_eq!(r.status, StatusCode::FORBIDDEN);
    assert_eq!(f.queue.state(1), HoldState::Pending);
    let r = get(&c, Some(&audrey), "/ui/audit?sender=alice&limit=5");
    assert_eq!(r.status, StatusCode::OK);
    assert!(r.body.contains("value=\"alice\""));
    let r = get(&c, Some(&audrey), "/ui/audit?limit=lots");
    assert_eq!(r.status, StatusCode::BAD_REQUEST);
}

#[test]
fn the_server_refuses_oversized_forms_before_the_ui_sees_them() {
    use std::io::{Read, Write};
    let f = fixture();
    let addr = start_ui_server(ctx(&f, false));
    let body = format!("token={}", "x".repeat(ui::MAX_FORM_BYTES));
    let mut s = std::net::TcpStream::connect(addr).unwrap();
    write!(
        s,
        "POST /ui/login HTTP/1.1\r\nHost: {addr}\r\nConnection: close\r\n\
         Content-Type: application/x-www-form-urlencoded\r\nContent-Length: {}\r\n\r\n{body}",
        body.len()
    )
    .unwrap();
    let mut answer = String::new();
    let _ = s.read_to_string(&mut answer);
    assert!(answer.starts_with("HTTP/1.1 413"), "{answer}");
    assert!(f.audit.all().is_empty(), "no login attempt reached the UI");
}

// ---- the reviewer workflow in a real browser --------------------------------------------------

#[test]
fn reviewers_release_in_chromium_with_four_eyes_and_the_auditor_finds_it() {
    let f = fixture();
    let addr = start_ui_server(ctx(&f, false));
    let base = format!("http://{addr}");
    let mut b = Browser::start();

    // Log in as a reviewer.
    b.goto(&format!("{base}/ui/"));
    b.find("#token");
    assert!(b.url().ends_with("/ui/login"), "{}", b.url());
    b.screenshot("login");
    b.type_into("#token", "tok-alice");
    b.click("#login");
    let list = b.wait_for_text("Held events");
    assert!(list.contains("alice (reviewer)"));
    assert!(list.contains("VS-VERTRAULICH") && list.contains("GEHEIM"));
    assert!(list.contains("0 of 2 approvals"), "{list}");
    assert!(!list.contains("STRENG GEHEIM"), "not cleared: not listed");
    b.screenshot("held-list");

    // Open event 1: the attacker's markup is text, the IBAN match is marked.
    b.click("#hold-1 a.open");
    b.wait_for_text("Held event #1");
    let content = b.text("#content");
    assert!(content.contains("<script>alert('x')</script>"), "{content}");
    assert_eq!(b.text("#content mark"), "DE89370400440532013000");
    b.screenshot("event-1");

    // Release it with a reason.
    b.type_into("#reason", "IBAN belongs to the partner; cleared by phone");
    b.click("#release");
    let page = b.wait_for_text("Released. The event is delivered.");
    assert!(page.contains("IBAN belongs to the partner"));
    assert_eq!(b.text("#state"), "released");
    assert_eq!(f.queue.state(1), HoldState::Released);
    b.screenshot("event-1-released");

    // An event above her clearance: a clear message, no content.
    b.goto(&format!("{base}/ui/held/3"));
    b.wait_for_text("not cleared");
    assert!(!b.exists("#content"));
    b.screenshot("not-cleared");

    // Event 2 needs four eyes: alice's approval alone does not release it.
    b.goto(&format!("{base}/ui/held/2"));
    b.type_into("#reason", "meeting point is public");
    b.click("#release");
    b.wait_for_text("awaiting second reviewer");
    assert_eq!(
        b.text("#four-eyes"),
        "1 of 2 approvals — awaiting second reviewer"
    );
    assert_eq!(f.queue.state(2), HoldState::Pending);
    b.screenshot("event-2-awaiting-second");
    b.type_into("#reason", "really, release it");
    b.click("#release");
    b.wait_for_text("you already approved");
    assert_eq!(f.queue.state(2), HoldState::Pending);
    b.screenshot("event-2-same-reviewer-refused");

    // Reviewers cannot search the audit log.
    b.goto(&format!("{base}/ui/audit"));
    b.wait_for_text("may not read the audit log");
    b.screenshot("reviewer-audit-forbidden");
    b.click("#logout");
    b.find("#token");

    // A second reviewer completes the release.
    b.type_into("#token", "tok-bob");
    b.click("#login");
    b.wait_for_text("bob (reviewer)");
    b.goto(&format!("{base}/ui/held/2"));
    assert!(b
        .wait_for_text("1 of 2 approvals — awaiting second reviewer")
        .contains("alice"));
    b.type_into("#reason", "second look: fine");
    b.click("#release");
    b.wait_for_text("Released. The event is delivered.");
    assert_eq!(b.text("#four-eyes"), "2 of 2 approvals");
    assert_eq!(f.queue.state(2), HoldState::Released);
    b.screenshot("event-2-released-by-second");
    b.click("#logout");
    b.find("#token");

    // The auditor finds both releases in the audit log.
    b.type_into("#token", "tok-audrey");
    b.click("#login");
    b.wait_for_text("audrey (auditor)");
    b.click("header a[href='/ui/audit']");
    b.find("#f-verdict");
    b.type_into("#f-verdict", "released");
    b.type_into("#f-rule", "");
    b.click("#search-button");
    let audit = b.wait_for_text("record(s).");
    assert!(b.url().contains("verdict=released"), "{}", b.url());
    let records = b.text("#records");
    assert!(
        records.contains("$event1") && records.contains("$event2"),
        "{records}"
    );
    assert!(
        records.contains("IBAN belongs to the partner; cleared by phone"),
        "{records}"
    );
    assert!(records.contains("second look: fine"), "{records}");
    assert!(audit.contains("bob") && audit.contains("alice"));
    b.screenshot("auditor-search");
}

/// The same reviewer workflow over the guard's real parts: the store-backed hold queue
/// (`proxy::hold::HoldQueue`, SQLite file, clearances against the shipped DEU-VS SPIF, four
/// eyes on) journaling into a real audit log (`proxy::audit_trail::AuditJournal`), and the UI's
/// audit search reading that log (`AuditDir`). Two reviewers release a held VS-VERTRAULICH event
/// in Chromium; the auditor finds both approvals in the audit log, which verifies.
#[test]
fn four_eyes_release_in_chromium_over_the_real_hold_queue_and_audit_log() {
    use grenzwacht::config::audit::AuditConfig;
    use grenzwacht::config::review::ReviewConfig;
    use grenzwacht::proxy::audit_trail::{AuditDir, AuditJournal};
    use grenzwacht::proxy::hold::HoldQueue;
    use grenzwacht::review::ReviewQueue;
    use grenzwacht::store::{NewHold, Store};
    use serde_json::json;

    const DEU: &str = "1.3.6.1.4.1.99999.1.1";
    let dir = tempfile::tempdir().unwrap();
    let key = grenzwacht::keys::SigningKey::generate("audit1").unwrap();
    let key_file = dir.path().join("audit.key");
    std::fs::write(&key_file, key.to_synapse_string()).unwrap();
    let audit_dir = dir.path().join("audit");
    let auditor = grenzwacht::audit::Auditor::open(&AuditConfig {
        dir: audit_dir.clone(),
        key_file,
        ..AuditConfig::default()
    })
    .unwrap();
    let spifs =
        grenzwacht::spif::SpifSet::load([concat!(env!("CARGO_MANIFEST_DIR"), "/spif/deu-vs.xml")])
            .unwrap();
    let queue = Arc::new(HoldQueue::new(
        Store::open(dir.path().join("store.db")).unwrap(),
        ReviewConfig {
            four_eyes: true,
            ..ReviewConfig::default()
        },
        Some(spifs),
    ));
    let journal = Arc::new(AuditJournal(auditor.clone()));
    queue.set_journal(journal.clone());
    let room = "!lage:hs1.test";
    let id = queue
        .hold(&NewHold {
            direction: "outbound".into(),
            room_id: room.into(),
            event_id: "$lagebild".into(),
            origin: "hs1.test".into(),
            sender: "@alice:hs1.test".into(),
            destination: "hs2.test".into(),
            rules: vec!["dlp:marking.vs_vertraulich".into()],
            label: Some(json!({"policy": DEU, "classification": 3}).to_string()),
            marking: Some("VS-VERTRAULICH".into()),
            matches: "[]".into(),
            pdu: serde_json::to_vec(&json!({
                "type": "m.room.message", "room_id": room, "sender": "@alice:hs1.test",
                "content": {"msgtype": "m.text", "body": "Lagebild VS-VERTRAULICH: Übung"}
            }))
            .unwrap(),
            created_at: 1,
        })
        .unwrap();
    let cleared = |name: &str, role: Role| Principal {
        name: name.into(),
        role,
        clearance: Some(json!({"policy": DEU, "classifications": [1, 2, 3, 4]})),
    };
    let mut auth = TestAuth::default();
    auth.tokens
        .insert("tok-rita".into(), cleared("rita", Role::Reviewer));
    auth.tokens
        .insert("tok-sven".into(), cleared("sven", Role::Reviewer));
    auth.tokens
        .insert("tok-anke".into(), cleared("anke", Role::Auditor));
    let ctx = UiCtx {
        queue: queue.clone(),
        audit: Arc::new(AuditDir(audit_dir.clone())),
        auth: Arc::new(auth),
        journal,
        sessions: Sessions::default(),
        secure_cookies: false,
    };
    let addr = start_ui_server(ctx);
    let base = format!("http://{addr}");
    let mut b = Browser::start();
    let login = |b: &mut Browser, token: &str, who: &str| {
        b.goto(&format!("{base}/ui/"));
        b.find("#token");
        b.type_into("#token", token);
        b.click("#login");
        b.wait_for_text(who);
    };
    let state = |q: &HoldQueue| {
        q.show(&cleared("check", Role::Reviewer), id)
            .unwrap()
            .summary
            .state
    };

    login(&mut b, "tok-rita", "rita (reviewer)");
    let list = b.wait_for_text("Held events");
    assert!(list.contains("VS-VERTRAULICH"), "{list}");
    b.goto(&format!("{base}/ui/held/{id}"));
    b.wait_for_text(&format!("Held event #{id}"));
    assert!(b.text("#content").contains("Übung"));
    b.type_into("#reason", "Übungslage, mit dem Absender geklärt");
    b.click("#release");
    b.wait_for_text("awaiting second reviewer");
    assert_eq!(state(&queue), HoldState::Pending);
    b.screenshot("real-first-approval");
    b.type_into("#reason", "nochmal");
    b.click("#release");
    b.wait_for_text("you already approved");
    assert_eq!(state(&queue), HoldState::Pending);
    b.click("#logout");
    b.find("#token");

    login(&mut b, "tok-sven", "sven (reviewer)");
    b.goto(&format!("{base}/ui/held/{id}"));
    b.type_into("#reason", "zweite Prüfung: unbedenklich");
    b.click("#release");
    b.wait_for_text("Released. The event is delivered.");
    assert_eq!(state(&queue), HoldState::Released);
    b.screenshot("real-released");
    b.click("#logout");
    b.find("#token");

    login(&mut b, "tok-anke", "anke (auditor)");
    b.goto(&format!("{base}/ui/audit"));
    b.find("#f-room");
    b.type_into("#f-room", room);
    b.click("#search-button");
    b.wait_for_text("record(s).");
    let records = b.text("#records");
    for expected in [
        "Übungslage, mit dem Absender geklärt",
        "zweite Prüfung: unbedenklich",
        "rita",
        "sven",
        "awaiting_second",
        "complete",
    ] {
        assert!(records.contains(expected), "{expected}: {records}");
    }
    b.screenshot("real-audit-search");

    // The log the UI read is the guard's audit log: intact and signed.
    let public = grenzwacht::audit::verify::PublicKey {
        key_id: key.key_id(),
        key: key.public_key(),
    };
    match grenzwacht::audit::verify::verify(&audit_dir, Some(&public), None).unwrap() {
        grenzwacht::audit::verify::Outcome::Intact(s) => assert!(s.records >= 4, "{s:?}"),
        bad => panic!("{bad:?}"),
    }
}
