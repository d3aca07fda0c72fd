//! In-process admission behaviour (`proxy::admission`, `[admission]`): connection caps answer
//! 503 with `Retry-After`, slow bodies are answered at the body deadline, the outbound
//! listeners close connections whose head does not arrive, and the budget of unauthenticated
//! bodies refuses while it is held and admits again once it is given back.
mod common;

use std::net::SocketAddr;
use std::time::{Duration, Instant};

use common::*;
use grenzwacht::federation::xmatrix;
use grenzwacht::keys::SigningKey;
use tokio::io::{AsyncRead, AsyncReadExt, AsyncWrite, AsyncWriteExt};

const HS1: &str = "hs1.test";
const REMOTE: &str = "remote.test";
const SEND: &str = "/_matrix/federation/v1/send/t1";

fn outbound_toml(p: &Pki, extra: &str) -> String {
    let ica = p.dir.path().join("ica");
    if !ica.join("ca.crt").exists() {
        grenzwacht::proxy::ca::InterceptionCa::init(&ica).unwrap();
    }
    format!(
        r#"
[admin]
listen = "127.0.0.1:0"
[[protected]]
server_name = "{HS1}"
cert = "{cert}"
key = "{key}"
upstream = "http://127.0.0.1:9"
[outbound]
proxy_listen = "127.0.0.1:0"
connect_listen = "127.0.0.1:0"
allowed_clients = ["127.0.0.0/8"]
proxy_secret = "s3cret"
interception_ca_dir = "{ica}"
roots = ["{ca}"]
[discovery]
enabled = false
{extra}
"#,
        cert = p.cert.display(),
        key = p.key.display(),
        ica = ica.display(),
        ca = p.ca_path.display(),
    )
}

/// Inbound with signature verification; REMOTE's key server is routed to a closed port, other
/// servers have no route (discovery off): no origin key can be fetched.
fn verifying_toml(p: &Pki, upstream: SocketAddr, extra: &str) -> String {
    let closed = {
        let l = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        l.local_addr().unwrap()
    };
    let outbound = format!(
        r#"
[outbound]
proxy_listen = "127.0.0.1:0"
allowed_clients = ["127.0.0.0/8"]
proxy_secret = "s3cret"
roots = ["{ca}"]
[[route]]
server_name = "{REMOTE}"
address = "{closed}"
tls_name = "127.0.0.1"
[discovery]
enabled = false
{extra}
"#,
        ca = p.ca_path.display()
    );
    inbound_toml(p, upstream, &outbound)
        .replace("verify_signatures = false", "verify_signatures = true")
}

fn txn_body() -> Vec<u8> {
    serde_json::to_vec(&serde_json::json!({
        "origin": REMOTE, "origin_server_ts": 1, "pdus": [], "edus": []
    }))
    .unwrap()
}

/// A request head for `PUT SEND` from REMOTE (signature not checked: verify_signatures = false).
fn send_head(content_length: usize) -> String {
    send_head_from(REMOTE, content_length)
}

fn send_head_from(origin: &str, content_length: usize) -> String {
    let key = SigningKey::generate("t1").unwrap();
    let auth = xmatrix::sign_request(&key, origin, HS1, "PUT", SEND, None).unwrap();
    format!(
        "PUT {SEND} HTTP/1.1\r\nhost: {HS1}\r\nauthorization: {auth}\r\ncontent-type: application/json\r\ncontent-length: {content_length}\r\n\r\n"
    )
}

async fn tls_connect(
    addr: SocketAddr,
    ca: &std::path::Path,
) -> tokio_rustls::client::TlsStream<tokio::net::TcpStream> {
    let cfg = grenzwacht::proxy::tls::client_config(&[ca.to_path_buf()]).unwrap();
    let tcp = tokio::net::TcpStream::connect(addr).await.unwrap();
    tokio_rustls::TlsConnector::from(cfg)
        .connect(
            rustls::pki_types::ServerName::try_from("127.0.0.1").unwrap(),
            tcp,
        )
        .await
        .unwrap()
}

/// A response as read off the wire: status, lower-case headers, body.
#[derive(Debug)]
struct Resp {
    status: u16,
    headers: Vec<(String, String)>,
    body: Vec<u8>,
}

impl Resp {
    fn header(&self, name: &str) -> Option<&str> {
        self.headers
            .iter()
            .find(|(k, _)| k == name)
            .map(|(_, v)| v.as_str())
    }
    fn json(&self) -> serde_json::Value {
        serde_json::from_slice(&self.body).unwrap_or(serde_json::Value::Null)
    }
}

/// Reads one response (Content-Length framed); `None` if the connection closed first.
async fn read_response<S: AsyncRead + Unpin>(s: &mut S) -> Option<Resp> {
    let mut buf = Vec::new();
    let mut chunk = [0u8; 4096];
    let head_end = loop {
        if let Some(i) = buf.windows(4).position(|w| w == b"\r\n\r\n") {
            break i;
        }
        match s.read(&mut chunk).await {
            Ok(0) | Err(_) => return None,
            Ok(n) => buf.extend_from_slice(&chunk[..n]),
        }
    };
    let head = String::from_utf8_lossy(&buf[..head_end]).into_owned();
    let mut lines = head.split("\r\n");
    let status = lines.next()?.split_whitespace().nth(1)?.parse().ok()?;
    let headers: Vec<(String, String)> = lines
        .filter_map(|l| l.split_once(':'))
        .map(|(k, v)| (k.trim().to_ascii_lowercase(), v.trim().to_string()))
        .collect();
    let len: usize = headers
        .iter()
        .find(|(k, _)| k == "content-length")
        .and_then(|(_, v)| v.parse().ok())
        .unwrap_or(0);
    let mut body = buf[head_end + 4..].to_vec();
    while body.len() < len {
        match s.read(&mut chunk).await {
            Ok(0) | Err(_) => break,
            Ok(n) => body.extend_from_slice(&chunk[..n]),
        }
    }
    Some(Resp {
        status,
        headers,
        body,
    })
}

async fn request<S: AsyncRead + AsyncWrite + Unpin>(s: &mut S, head: &str, body: &[u8]) -> Resp {
    s.write_all(head.as_bytes()).await.unwrap();
    s.write_all(body).await.unwrap();
    s.flush().await.unwrap();
    tokio::time::timeout(Duration::from_secs(20), read_response(s))
        .await
        .expect("a response in time")
        .expect("a response before the connection closed")
}

fn assert_limit_exceeded(r: &Resp) {
    assert_eq!(r.status, 503, "{r:?}");
    assert_eq!(r.json()["errcode"], "M_LIMIT_EXCEEDED", "{r:?}");
    let after: u64 = r
        .header("retry-after")
        .and_then(|v| v.parse().ok())
        .unwrap_or_else(|| panic!("Retry-After in {r:?}"));
    assert!(after > 0);
    assert_eq!(r.json()["retry_after_ms"], after * 1000);
}

/// Whether the peer closes `s` within `within` (reads until EOF or error; data is ignored).
async fn closed_within<S: AsyncRead + Unpin>(s: &mut S, within: Duration) -> bool {
    let mut chunk = [0u8; 1024];
    tokio::time::timeout(within, async {
        loop {
            match s.read(&mut chunk).await {
                Ok(0) | Err(_) => return,
                Ok(_) => {}
            }
        }
    })
    .await
    .is_ok()
}

#[tokio::test]
async fn inbound_connection_cap_answers_503_with_retry_after_and_frees_on_close() {
    let p = pki();
    let up = recorder(None, default_answer()).await;
    let g = start_guard(
        &p,
        &inbound_toml(
            &p,
            up.addr,
            "[admission]\ninbound_max_connections = 10\ninbound_max_connections_per_ip = 2",
        ),
    )
    .await;
    let addr = g.inbound.unwrap();
    let body = txn_body();
    // Two connections are open (and serve requests) …
    let mut a = tls_connect(addr, &p.ca_path).await;
    let mut b = tls_connect(addr, &p.ca_path).await;
    assert_eq!(
        request(&mut a, &send_head(body.len()), &body).await.status,
        200
    );
    assert_eq!(
        request(&mut b, &send_head(body.len()), &body).await.status,
        200
    );
    // … a third from the same address is answered 503 and never reaches the upstream.
    let mut c = tls_connect(addr, &p.ca_path).await;
    let r = request(&mut c, &send_head(body.len()), &body).await;
    assert_limit_exceeded(&r);
    assert_eq!(up.seen().len(), 2);
    let m = metrics(g.admin).await;
    assert!(
        m.lines()
            .any(|l| l.starts_with("grenzwacht_connections_open{side=\"inbound\"}")),
        "{m}"
    );
    assert_eq!(
        counter(
            &m,
            "grenzwacht_admission_refused_total",
            &[("listener", "inbound"), ("cause", "connections_per_ip")]
        ),
        1.0,
        "{m}"
    );
    // Closing one gives its place back.
    drop(a);
    let deadline = Instant::now() + Duration::from_secs(10);
    loop {
        let (_, from_me) = g.guard.admission().open_connections(
            grenzwacht::proxy::admission::Side::Inbound,
            "127.0.0.1".parse().unwrap(),
        );
        if from_me < 2 {
            break;
        }
        assert!(
            Instant::now() < deadline,
            "the closed connection is still counted"
        );
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    let mut d = tls_connect(addr, &p.ca_path).await;
    assert_eq!(
        request(&mut d, &send_head(body.len()), &body).await.status,
        200
    );
    assert_eq!(up.seen().len(), 3);
    drop((b, c, d));
    g.stop().await;
}

#[tokio::test]
async fn outbound_connection_cap_answers_503_with_retry_after() {
    let p = pki();
    let g = start_guard(
        &p,
        &outbound_toml(
            &p,
            "[admission]\noutbound_max_connections = 4\noutbound_max_connections_per_ip = 1",
        ),
    )
    .await;
    // One connection to the proxy listener is open; a second (CONNECT listener: the outbound
    // listeners share their table) is answered 503.
    let _held = tokio::net::TcpStream::connect(g.proxy.unwrap())
        .await
        .unwrap();
    let deadline = Instant::now() + Duration::from_secs(10);
    while g
        .guard
        .admission()
        .open_connections(
            grenzwacht::proxy::admission::Side::Outbound,
            "127.0.0.1".parse().unwrap(),
        )
        .1
        == 0
    {
        assert!(
            Instant::now() < deadline,
            "the first connection is not counted"
        );
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    let mut s = tokio::net::TcpStream::connect(g.connect.unwrap())
        .await
        .unwrap();
    let r = request(
        &mut s,
        "CONNECT remote.test:8448 HTTP/1.1\r\nhost: remote.test:8448\r\nproxy-authorization: Bearer s3cret\r\n\r\n",
        b"",
    )
    .await;
    assert_limit_exceeded(&r);
    g.stop().await;
}

#[tokio::test]
async fn slow_body_is_answered_and_closed_at_the_body_deadline() {
    let p = pki();
    let up = recorder(None, default_answer()).await;
    let g = start_guard(
        &p,
        &inbound_toml(&p, up.addr, "[admission]\nbody_timeout_ms = 700"),
    )
    .await;
    let mut s = tls_connect(g.inbound.unwrap(), &p.ca_path).await;
    let t0 = Instant::now();
    // The head promises 1000 bytes; 10 arrive, then nothing.
    s.write_all(send_head(1000).as_bytes()).await.unwrap();
    s.write_all(b"{\"origin\":").await.unwrap();
    s.flush().await.unwrap();
    let r = tokio::time::timeout(Duration::from_secs(20), read_response(&mut s))
        .await
        .expect("answered in time")
        .expect("answered before the close");
    let waited = t0.elapsed();
    assert_eq!(r.status, 408, "{r:?}");
    assert!(
        waited >= Duration::from_millis(600),
        "answered after {waited:?}"
    );
    // … and the connection is closed (the rest of the body is not awaited).
    assert!(closed_within(&mut s, Duration::from_secs(10)).await);
    assert!(up.seen().is_empty());
    let m = metrics(g.admin).await;
    assert_eq!(
        counter(
            &m,
            "grenzwacht_refusals_total",
            &[("direction", "inbound"), ("reason", "timeout")]
        ),
        1.0
    );
    g.stop().await;
}

#[tokio::test]
async fn outbound_listeners_close_connections_whose_head_does_not_arrive() {
    let p = pki();
    let g = start_guard(
        &p,
        &outbound_toml(&p, "[admission]\nheader_timeout_ms = 500"),
    )
    .await;
    for addr in [g.proxy.unwrap(), g.connect.unwrap()] {
        let mut s = tokio::net::TcpStream::connect(addr).await.unwrap();
        let t0 = Instant::now();
        s.write_all(b"GET /_matrix/federation/v1/version HTTP/1.1\r\nhost: x\r\n")
            .await
            .unwrap();
        assert!(
            closed_within(&mut s, Duration::from_secs(10)).await,
            "{addr}: still open"
        );
        assert!(t0.elapsed() >= Duration::from_millis(400));
        // A connection that sends nothing at all is closed too.
        let mut idle = tokio::net::TcpStream::connect(addr).await.unwrap();
        assert!(
            closed_within(&mut idle, Duration::from_secs(10)).await,
            "{addr}: idle connection still open"
        );
    }
    g.stop().await;
}

#[tokio::test]
async fn body_budget_refuses_while_held_and_admits_after_release() {
    let p = pki();
    let up = recorder(None, default_answer()).await;
    let g = start_guard(
        &p,
        &inbound_toml(
            &p,
            up.addr,
            "[limits]\nmax_request_body = 4096\n[admission]\nbody_budget = 4096\nbody_budget_per_origin = 4096",
        ),
    )
    .await;
    let addr = g.inbound.unwrap();
    let body = txn_body();
    // A declares 4090 bytes and sends one: the budget holds 4090.
    let mut a = tls_connect(addr, &p.ca_path).await;
    a.write_all(send_head(4090).as_bytes()).await.unwrap();
    a.write_all(b"{").await.unwrap();
    a.flush().await.unwrap();
    let deadline = Instant::now() + Duration::from_secs(10);
    while g
        .guard
        .admission()
        .body_bytes_held(grenzwacht::policy::Direction::Inbound)
        < 4090
    {
        assert!(Instant::now() < deadline, "A's body is not held");
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    // B (same origin) does not fit: 503 before its body is read.
    let mut b = tls_connect(addr, &p.ca_path).await;
    let r = request(&mut b, &send_head(body.len()), &body).await;
    assert_limit_exceeded(&r);
    assert!(up.seen().is_empty());
    // A chunked body (no length declared) is charged as its chunks arrive: refused too.
    let chunked = send_head(0).replace("content-length: 0\r\n", "transfer-encoding: chunked\r\n");
    let mut framed = format!("{:x}\r\n", body.len()).into_bytes();
    framed.extend_from_slice(&body);
    framed.extend_from_slice(b"\r\n0\r\n\r\n");
    let mut b2 = tls_connect(addr, &p.ca_path).await;
    let r = request(&mut b2, &chunked, &framed).await;
    assert_limit_exceeded(&r);
    assert!(up.seen().is_empty());
    // A goes away: its share is given back, and the next request is admitted.
    drop(a);
    let deadline = Instant::now() + Duration::from_secs(10);
    while g
        .guard
        .admission()
        .body_bytes_held(grenzwacht::policy::Direction::Inbound)
        > 0
    {
        assert!(Instant::now() < deadline, "A's share is not given back");
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    let mut c = tls_connect(addr, &p.ca_path).await;
    let r = request(&mut c, &send_head(body.len()), &body).await;
    assert_eq!(r.status, 200, "{r:?}");
    assert_eq!(up.seen().len(), 1);
    // … chunked too.
    let r = request(&mut c, &chunked, &framed).await;
    assert_eq!(r.status, 200, "{r:?}");
    assert_eq!(up.seen().len(), 2);
    assert_eq!(&up.seen()[1].body[..], &body[..]);
    let m = metrics(g.admin).await;
    assert!(
        counter(
            &m,
            "grenzwacht_admission_refused_total",
            &[("listener", "inbound"), ("cause", "body_budget_origin")]
        ) >= 1.0
    );
    g.stop().await;
}

#[tokio::test]
async fn head_whose_origin_key_cannot_be_had_is_refused_before_its_body_is_read() {
    let p = pki();
    let up = recorder(None, default_answer()).await;
    let toml = verifying_toml(&p, up.addr, "[admission]\nbody_timeout_ms = 60000");
    let g = start_guard(&p, &toml).await;
    let mut s = tls_connect(g.inbound.unwrap(), &p.ca_path).await;
    // The head promises 12 MB; not one byte of it is sent.
    let t0 = Instant::now();
    s.write_all(send_head(12_000_000).as_bytes()).await.unwrap();
    s.flush().await.unwrap();
    let r = tokio::time::timeout(Duration::from_secs(20), read_response(&mut s))
        .await
        .expect("answered without waiting for the body")
        .expect("answered");
    assert_eq!(r.status, 401, "{r:?}");
    assert_eq!(r.json()["errcode"], "M_UNAUTHORIZED");
    assert!(t0.elapsed() < Duration::from_secs(20));
    assert_eq!(
        g.guard
            .admission()
            .body_bytes_held(grenzwacht::policy::Direction::Inbound),
        0
    );
    assert!(up.seen().is_empty());
    g.stop().await;
}

#[tokio::test]
async fn key_fetches_for_heads_are_bounded_over_all_origins() {
    let p = pki();
    let up = recorder(None, default_answer()).await;
    // REMOTE's key server accepts connections and never answers: its fetch stays in flight.
    let hole = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let hole_addr = hole.local_addr().unwrap();
    let accepted = tokio::spawn(async move {
        let mut held = Vec::new();
        while let Ok((s, _)) = hole.accept().await {
            held.push(s);
        }
    });
    let toml = inbound_toml(
        &p,
        up.addr,
        &format!(
            r#"
[outbound]
proxy_listen = "127.0.0.1:0"
allowed_clients = ["127.0.0.0/8"]
proxy_secret = "s3cret"
roots = ["{ca}"]
request_timeout_ms = 3000
[[route]]
server_name = "{REMOTE}"
address = "{hole_addr}"
tls_name = "127.0.0.1"
[discovery]
enabled = false
[admission]
key_fetch_concurrency = 1
"#,
            ca = p.ca_path.display()
        ),
    )
    .replace("verify_signatures = false", "verify_signatures = true");
    let g = start_guard(&p, &toml).await;
    let addr = g.inbound.unwrap();
    let body = txn_body();
    let ca = p.ca_path.clone();
    let head = send_head(body.len());
    let first_body = body.clone();
    // REMOTE's head starts the one fetch allowed at a time …
    let first = tokio::spawn(async move {
        let mut a = tls_connect(addr, &ca).await;
        request(&mut a, &head, &first_body).await
    });
    let deadline = Instant::now() + Duration::from_secs(10);
    while g.guard.admission().key_fetches_running() == 0 {
        assert!(
            Instant::now() < deadline,
            "REMOTE's key fetch did not start"
        );
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    // … while it runs, another origin's head is told to retry, without a fetch.
    let mut b = tls_connect(addr, &p.ca_path).await;
    let r = request(&mut b, &send_head_from("b.test", body.len()), &body).await;
    assert_limit_exceeded(&r);
    // The first fails at the fetch timeout: 401; nothing reached the upstream.
    assert_eq!(first.await.unwrap().status, 401);
    assert!(up.seen().is_empty());
    let m = metrics(g.admin).await;
    assert!(
        counter(
            &m,
            "grenzwacht_admission_refused_total",
            &[("listener", "inbound"), ("cause", "key_fetches")]
        ) >= 1.0
    );
    accepted.abort();
    g.stop().await;
}
