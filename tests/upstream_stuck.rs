//! A frozen upstream: the protected homeserver is a real process (a small HTTP server in
//! Python) that is stopped with SIGSTOP. The guard's requests to it are visible as stuck while
//! they wait, are given up after the first-byte deadline (504 to the sender), are counted
//! (`grenzwacht_upstream_timeouts_total{upstream="protected",phase="first_byte"}`) and make
//! `/health` report the upstream degraded; after SIGCONT everything crosses again and
//! `/health` is ok.
mod common;

use std::io::{BufRead, BufReader};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use common::*;
use grenzwacht::keys::SigningKey;
use serde_json::{json, Value};

const REMOTE: &str = "remote.test";

/// Answers every request with 200 `{}` after reading its body; prints its port.
const SERVER: &str = r#"
import http.server, sys
class H(http.server.BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"
    def answer(self):
        n = int(self.headers.get("Content-Length") or 0)
        if n:
            self.rfile.read(n)
        body = b"{}"
        self.send_response(200)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)
    do_GET = do_PUT = do_POST = answer
    def log_message(self, *a):
        pass
s = http.server.ThreadingHTTPServer(("127.0.0.1", 0), H)
print(s.server_address[1], flush=True)
s.serve_forever()
"#;

struct Upstream(Child);

impl Upstream {
    fn start() -> (Upstream, u16) {
        let mut child = Command::new("python3")
            .args(["-c", SERVER])
            .stdout(Stdio::piped())
            .spawn()
            .expect("python3");
        let mut line = String::new();
        BufReader::new(child.stdout.take().unwrap())
            .read_line(&mut line)
            .unwrap();
        (Upstream(child), line.trim().parse().unwrap())
    }

    fn signal(&self, sig: i32) {
        // SAFETY: kill(2) on our own child's pid.
        assert_eq!(unsafe { libc::kill(self.0.id() as i32, sig) }, 0);
    }
}

impl Drop for Upstream {
    fn drop(&mut self) {
        self.signal(libc::SIGCONT);
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

async fn health(admin: std::net::SocketAddr) -> (u16, Value) {
    let r = plain_request(admin, "GET", "/health", &[], vec![]).await;
    (
        r.status,
        serde_json::from_slice(&r.body).unwrap_or(Value::Null),
    )
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_frozen_upstream_is_timed_out_counted_and_reported() {
    let (upstream, port) = Upstream::start();
    let p = pki();
    let addr: std::net::SocketAddr = format!("127.0.0.1:{port}").parse().unwrap();
    let toml = inbound_toml(
        &p,
        addr,
        "[outbound]\nfirst_byte_timeout_ms = 3000\nrequest_timeout_ms = 6000\n",
    );
    let g = start_guard(&p, &toml).await;
    let key = SigningKey::generate("t1").unwrap();
    let send = |txn: String| {
        let body = serde_json::to_vec(&json!({
            "origin": REMOTE, "origin_server_ts": 1, "pdus": [], "edus": [
                {"edu_type": "m.typing", "content": {"room_id": "!r:remote.test", "user_id": "@a:remote.test", "typing": true}}
            ]
        }))
        .unwrap();
        let uri = format!("/_matrix/federation/v1/send/{txn}");
        let hdr = auth(&key, REMOTE, TEST_HS1, "PUT", &uri, Some(&body));
        let (inbound, ca) = (g.inbound.unwrap(), p.ca_path.clone());
        async move { tls_request(inbound, &ca, "PUT", &uri, &[("authorization", hdr)], body).await }
    };

    let got = send("warm".into()).await;
    assert_eq!(got.status, 200, "{:?}", got.body);
    let (code, h) = health(g.admin).await;
    assert_eq!(
        (code, h["checks"]["upstreams"]["status"].as_str()),
        (200, Some("ok")),
        "{h}"
    );

    // Frozen: the process exists, the kernel still accepts connections, nothing answers.
    upstream.signal(libc::SIGSTOP);
    let t0 = Instant::now();
    let waiting = tokio::spawn(send("frozen1".into()));
    // While it waits (past half the first-byte deadline) it is stuck, in /health and metrics.
    tokio::time::sleep(Duration::from_millis(1700)).await;
    let (code, h) = health(g.admin).await;
    assert_eq!(code, 200, "degraded, not failed: {h}");
    assert_eq!(h["status"], "degraded", "{h}");
    let why = h["checks"]["upstreams"]["reason"]
        .as_str()
        .unwrap_or_default();
    assert!(
        why.contains("request(s) to the protected upstream waiting"),
        "{h}"
    );
    // The gauge is refreshed every second: poll until the request is given up.
    let mut stuck = 0.0;
    while stuck != 1.0 && t0.elapsed() < Duration::from_millis(2900) {
        let m = metrics(g.admin).await;
        stuck = counter(
            &m,
            "grenzwacht_upstream_stuck",
            &[("upstream", "protected")],
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    assert_eq!(stuck, 1.0, "the stuck gauge never showed the request");

    let got = waiting.await.unwrap();
    let waited = t0.elapsed();
    assert_eq!(
        (got.status, got.errcode().as_str()),
        (504, "M_UNKNOWN"),
        "{:?}",
        got.body
    );
    assert!(waited < Duration::from_secs(5), "given up after {waited:?}");
    let m = metrics(g.admin).await;
    assert_eq!(
        counter(
            &m,
            "grenzwacht_upstream_timeouts_total",
            &[("upstream", "protected"), ("phase", "first_byte")]
        ),
        1.0,
        "{m}"
    );
    let (code, h) = health(g.admin).await;
    assert_eq!((code, h["status"].as_str()), (200, Some("degraded")), "{h}");
    let why = h["checks"]["upstreams"]["reason"]
        .as_str()
        .unwrap_or_default();
    assert!(why.contains("first byte timeout"), "{h}");

    // Woken: the next transaction crosses, and health is ok again.
    upstream.signal(libc::SIGCONT);
    let got = send("after".into()).await;
    assert_eq!(got.status, 200, "{:?}", got.body);
    let (code, h) = health(g.admin).await;
    assert_eq!((code, h["status"].as_str()), (200, Some("ok")), "{h}");
    g.stop().await;
}
