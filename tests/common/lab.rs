//! Helpers shared by integration tests: raw HTTP/1.1 over TCP or TLS to the guard's listeners,
//! X-Matrix signing with a lab homeserver's key, log and metrics readers.
//!
//! Raw HTTP (rather than a client library) because the tests send what a well-behaved client
//! never would: truncated JSON, duplicate keys, `CONNECT`, absolute-form
//! `matrix-federation://` targets.
#![allow(dead_code)]

use std::net::SocketAddr;
use std::path::Path;
use std::sync::Arc;
use std::time::Duration;

use grenzwacht::lab::metrics::{self, RequestSeries};
use grenzwacht::lab::LabInfo;
use tokio::io::{AsyncRead, AsyncReadExt, AsyncWrite, AsyncWriteExt};
use tokio::net::TcpStream;

/// A parsed HTTP response.
#[derive(Debug, Clone)]
pub struct Resp {
    pub status: u16,
    pub headers: Vec<(String, String)>,
    pub body: Vec<u8>,
}

impl Resp {
    pub fn json(&self) -> serde_json::Value {
        serde_json::from_slice(&self.body).unwrap_or(serde_json::Value::Null)
    }
    pub fn errcode(&self) -> String {
        self.json()["errcode"].as_str().unwrap_or("").to_string()
    }
    pub fn text(&self) -> String {
        String::from_utf8_lossy(&self.body).into_owned()
    }
}

fn find(hay: &[u8], needle: &[u8]) -> Option<usize> {
    hay.windows(needle.len()).position(|w| w == needle)
}

/// Writes `head` + `body` and reads one response (head, then Content-Length / chunked / EOF).
pub async fn exchange<S: AsyncRead + AsyncWrite + Unpin>(
    stream: &mut S,
    head: &str,
    body: &[u8],
) -> Resp {
    let fut = async {
        stream.write_all(head.as_bytes()).await.expect("write head");
        stream.write_all(body).await.expect("write body");
        stream.flush().await.expect("flush");
        let mut buf = Vec::new();
        let mut chunk = [0u8; 16384];
        let head_end = loop {
            if let Some(i) = find(&buf, b"\r\n\r\n") {
                break i;
            }
            let n = stream.read(&mut chunk).await.expect("read head");
            assert!(
                n > 0,
                "connection closed before a response head: {:?}",
                String::from_utf8_lossy(&buf)
            );
            buf.extend_from_slice(&chunk[..n]);
        };
        let head_text = String::from_utf8_lossy(&buf[..head_end]).into_owned();
        let mut lines = head_text.split("\r\n");
        let status_line = lines.next().unwrap_or("");
        let status: u16 = status_line
            .split_whitespace()
            .nth(1)
            .and_then(|s| s.parse().ok())
            .unwrap_or_else(|| panic!("bad status line {status_line:?}"));
        let headers: Vec<(String, String)> = lines
            .filter_map(|l| l.split_once(':'))
            .map(|(k, v)| (k.trim().to_ascii_lowercase(), v.trim().to_string()))
            .collect();
        let header = |n: &str| headers.iter().find(|(k, _)| k == n).map(|(_, v)| v.clone());
        let mut rest = buf[head_end + 4..].to_vec();
        let body = if let Some(len) = header("content-length").and_then(|v| v.parse::<usize>().ok())
        {
            while rest.len() < len {
                let n = stream.read(&mut chunk).await.expect("read body");
                if n == 0 {
                    break;
                }
                rest.extend_from_slice(&chunk[..n]);
            }
            rest.truncate(len);
            rest
        } else if header("transfer-encoding").is_some_and(|v| v.eq_ignore_ascii_case("chunked")) {
            let mut out = Vec::new();
            loop {
                let line_end = loop {
                    if let Some(i) = find(&rest, b"\r\n") {
                        break i;
                    }
                    let n = stream.read(&mut chunk).await.expect("read chunk");
                    assert!(n > 0, "eof in chunk size");
                    rest.extend_from_slice(&chunk[..n]);
                };
                let size_text = String::from_utf8_lossy(&rest[..line_end]).into_owned();
                let size = usize::from_str_radix(size_text.split(';').next().unwrap().trim(), 16)
                    .expect("chunk size");
                rest.drain(..line_end + 2);
                if size == 0 {
                    break;
                }
                while rest.len() < size + 2 {
                    let n = stream.read(&mut chunk).await.expect("read chunk data");
                    assert!(n > 0, "eof in chunk");
                    rest.extend_from_slice(&chunk[..n]);
                }
                out.extend_from_slice(&rest[..size]);
                rest.drain(..size + 2);
            }
            out
        } else if status == 204 || status == 304 || (100..200).contains(&status) {
            Vec::new()
        } else {
            // Until EOF (we always send Connection: close), bounded in time.
            loop {
                match tokio::time::timeout(Duration::from_secs(5), stream.read(&mut chunk)).await {
                    Ok(Ok(n)) if n > 0 => rest.extend_from_slice(&chunk[..n]),
                    _ => break,
                }
            }
            rest
        };
        Resp {
            status,
            headers,
            body,
        }
    };
    tokio::time::timeout(Duration::from_secs(60), fut)
        .await
        .expect("no complete response within 60 s")
}

/// A request head with `Host`, `Connection: close` and `Content-Length`.
pub fn head(
    method: &str,
    target: &str,
    host: &str,
    extra: &[(&str, &str)],
    body_len: usize,
) -> String {
    let mut h = format!("{method} {target} HTTP/1.1\r\nHost: {host}\r\nConnection: close\r\n");
    for (k, v) in extra {
        h.push_str(&format!("{k}: {v}\r\n"));
    }
    if body_len > 0 || matches!(method, "PUT" | "POST") {
        h.push_str(&format!("Content-Length: {body_len}\r\n"));
    }
    h.push_str("\r\n");
    h
}

/// Plain TCP request.
pub async fn tcp_request(addr: SocketAddr, head: &str, body: &[u8]) -> Resp {
    let mut s = TcpStream::connect(addr).await.expect("connect");
    exchange(&mut s, head, body).await
}

/// TLS request to `addr` (an IP: no SNI), trusting only the PEM roots in `ca_file`.
pub async fn tls_request(addr: SocketAddr, ca_file: &Path, head: &str, body: &[u8]) -> Resp {
    let mut roots = rustls::RootCertStore::empty();
    let pem = std::fs::read(ca_file).expect("read CA");
    for c in rustls_pemfile::certs(&mut pem.as_slice()) {
        roots.add(c.expect("PEM cert")).expect("add root");
    }
    let config = rustls::ClientConfig::builder_with_provider(Arc::new(
        rustls::crypto::ring::default_provider(),
    ))
    .with_safe_default_protocol_versions()
    .expect("protocol versions")
    .with_root_certificates(roots)
    .with_no_client_auth();
    let connector = tokio_rustls::TlsConnector::from(Arc::new(config));
    let tcp = TcpStream::connect(addr).await.expect("connect");
    let name = rustls::pki_types::ServerName::IpAddress(addr.ip().into());
    let mut tls = connector
        .connect(name, tcp)
        .await
        .expect("TLS handshake with the guard");
    exchange(&mut tls, head, body).await
}

/// An `X-Matrix` Authorization value for a request signed with the signing key of the lab
/// homeserver whose files are in `hs_signing_key`, as `origin`. `body` must be JSON or empty.
pub fn xmatrix_signed(
    hs_signing_key: &Path,
    origin: &str,
    destination: &str,
    method: &str,
    path_and_query: &str,
    body: &[u8],
) -> String {
    let key = grenzwacht::keys::SigningKey::from_synapse_file(hs_signing_key).expect("signing key");
    let content: Option<Box<serde_json::value::RawValue>> =
        (!body.is_empty()).then(|| serde_json::from_slice(body).expect("JSON body"));
    grenzwacht::federation::xmatrix::sign_request(
        &key,
        origin,
        destination,
        method,
        path_and_query,
        content.as_deref(),
    )
    .expect("sign")
}

/// `v` hashed and signed by `key` as `server` (room version 10).
pub fn signed_v10(
    server: &str,
    key: &grenzwacht::keys::SigningKey,
    v: serde_json::Value,
) -> serde_json::Value {
    let mut obj: ruma::CanonicalJsonObject = serde_json::from_value(v).unwrap();
    let rules = ruma::RoomVersionId::V10.rules().unwrap();
    ruma::signatures::hash_and_sign_event(server, key.key_pair(), &mut obj, &rules.redaction)
        .unwrap();
    serde_json::to_value(obj).unwrap()
}

/// `$` + the reference hash of a room version 10 event (a message's content is redacted away
/// first, so ids of events with unusual content can be computed).
pub fn event_id_v10(v: &serde_json::Value) -> String {
    let mut e = v.clone();
    if e["type"] == "m.room.message" {
        e["content"] = serde_json::json!({});
    }
    let obj: ruma::CanonicalJsonObject = serde_json::from_value(e).unwrap();
    let rules = ruma::RoomVersionId::V10.rules().unwrap();
    format!(
        "${}",
        ruma::signatures::reference_hash(&obj, &rules).unwrap()
    )
}

/// A syntactically valid `X-Matrix` value with a meaningless signature.
pub fn xmatrix_unsigned(origin: &str, destination: &str) -> String {
    format!(
        "X-Matrix origin=\"{origin}\",destination=\"{destination}\",key=\"ed25519:a_lab\",sig=\"dGhpcyBpcyBub3QgYSBzaWduYXR1cmUgYXQgYWxs\""
    )
}

/// All samples of the guard's `/metrics`.
pub async fn guard_metrics(info: &LabInfo) -> Vec<metrics::Sample> {
    let addr: SocketAddr = info
        .guard
        .admin_url
        .trim_start_matches("http://")
        .parse()
        .expect("admin addr");
    let r = tcp_request(
        addr,
        &head("GET", "/metrics", &addr.to_string(), &[], 0),
        b"",
    )
    .await;
    assert_eq!(r.status, 200, "GET /metrics: {}", r.text());
    metrics::parse(&r.text())
}

/// The guard's `grenzwacht_requests_total` series.
pub async fn guard_requests(info: &LabInfo) -> Vec<RequestSeries> {
    let addr: SocketAddr = info
        .guard
        .admin_url
        .trim_start_matches("http://")
        .parse()
        .expect("admin addr");
    let r = tcp_request(
        addr,
        &head("GET", "/metrics", &addr.to_string(), &[], 0),
        b"",
    )
    .await;
    assert_eq!(r.status, 200, "GET /metrics: {}", r.text());
    metrics::requests(&metrics::parse(&r.text()))
}

/// A homeserver's log text.
pub fn hs_log(info: &LabInfo, name: &str) -> String {
    let h = info.homeserver(name).expect("homeserver");
    String::from_utf8_lossy(&std::fs::read(&h.log).unwrap_or_default()).into_owned()
}

/// Federation/key/media requests a homeserver's federation listener processed (access log).
pub fn fed_requests_in_log(log: &str, fed_port: u16) -> Vec<String> {
    // `synapse.access.http.PORT` or, for a TLS listener, `synapse.access.https.PORT`.
    let loggers = [
        format!("synapse.access.http.{fed_port} "),
        format!("synapse.access.https.{fed_port} "),
    ];
    log.lines()
        .filter(|l| {
            loggers.iter().any(|g| l.contains(g.as_str())) && l.contains("Processed request")
        })
        .filter_map(|l| {
            let start = l.find(" \"")? + 2;
            let end = start + l[start..].find('"')?;
            Some(l[start..end].to_string())
        })
        .filter(|req| {
            let path = req.split_whitespace().nth(1).unwrap_or("");
            path.starts_with("/_matrix/federation/")
                || path.starts_with("/_matrix/key/")
                || path.starts_with("/_matrix/media/")
        })
        .collect()
}

/// A random lowercase marker for paths and transaction ids.
pub fn marker(prefix: &str) -> String {
    format!("{prefix}{:016x}", rand::random::<u64>())
}

/// Waits until `who` can read event `event_id` in `room` (client API) and returns it.
pub async fn wait_event(
    who: &grenzwacht::lab::client::Session,
    room: &str,
    event_id: &str,
    timeout: Duration,
) -> serde_json::Value {
    use grenzwacht::lab::client::{encode_segment, wait_until, ClientError};
    let path = format!(
        "/_matrix/client/v3/rooms/{}/event/{}",
        encode_segment(room),
        encode_segment(event_id)
    );
    wait_until(
        &format!("{} to see {event_id}", who.user_id),
        timeout,
        || async {
            match who
                .client
                .call("GET", &path, Some(&who.access_token), None)
                .await
            {
                Ok(v) => Ok(Some(v)),
                Err(ClientError::Status { status: 404, .. }) => Ok(None),
                Err(e) => Err(e),
            }
        },
    )
    .await
    .unwrap_or_else(|e| panic!("{e}"))
}

/// Stops the lab in `.0` when dropped (also when a test panics).
pub struct LabDown(pub std::path::PathBuf);

impl Drop for LabDown {
    fn drop(&mut self) {
        let _ = grenzwacht::lab::down(&self.0);
    }
}

/// One lab for an end-to-end test: started under a temporary directory (or
/// `$GRENZWACHT_E2E_DIR/<name>`, kept for inspection), stopped when dropped, with alice
/// registered on hs1 (protected) and bob on hs2 (remote).
pub struct E2eLab {
    pub info: LabInfo,
    pub alice: grenzwacht::lab::client::Session,
    pub bob: grenzwacht::lab::client::Session,
    _down: LabDown,
    _tmp: tempfile::TempDir,
}

/// Start an [`E2eLab`] (CONNECT mode; `labels`: the lab's `[labels]` section).
pub async fn e2e_lab(name: &str, labels: bool) -> E2eLab {
    e2e_lab_mode(name, labels, grenzwacht::lab::OutboundMode::Connect).await
}

/// [`e2e_lab`] with hs1's outbound way chosen.
pub async fn e2e_lab_mode(name: &str, labels: bool, mode: grenzwacht::lab::OutboundMode) -> E2eLab {
    e2e_lab_with(name, |opts| {
        opts.labels = labels;
        opts.outbound = mode;
    })
    .await
}

/// [`e2e_lab`] with the lab's options set by `configure` (CONNECT mode unless changed).
pub async fn e2e_lab_with(
    name: &str,
    configure: impl FnOnce(&mut grenzwacht::lab::LabOptions),
) -> E2eLab {
    use grenzwacht::lab::client::MatrixClient;
    use grenzwacht::lab::LabOptions;
    let tmp = tempfile::tempdir().unwrap();
    let dir = std::env::var_os("GRENZWACHT_E2E_DIR")
        .map(|d| std::path::PathBuf::from(d).join(name))
        .unwrap_or_else(|| tmp.path().to_path_buf());
    let mut opts = LabOptions::new(&dir, grenzwacht::lab::OutboundMode::Connect);
    // GRENZWACHT_E2E_GUARD_BIN: a copy of this build's binary (the shared target directory's
    // binary may be replaced by a concurrent build of another branch).
    opts.guard_bin = std::env::var_os("GRENZWACHT_E2E_GUARD_BIN")
        .map(Into::into)
        .unwrap_or_else(|| env!("CARGO_BIN_EXE_grenzwacht").into());
    configure(&mut opts);
    let info = grenzwacht::lab::up(opts)
        .await
        .unwrap_or_else(|e| panic!("lab up: {e}"));
    let down = LabDown(info.dir.clone());
    let (hs1, hs2) = (info.hs1().clone(), info.hs2().clone());
    let alice = MatrixClient::new(&hs1.client_url)
        .register_shared_secret(&hs1.registration_shared_secret, "alice", "pw-alice", false)
        .await
        .unwrap();
    let bob = MatrixClient::new(&hs2.client_url)
        .register_shared_secret(&hs2.registration_shared_secret, "bob", "pw-bob", false)
        .await
        .unwrap();
    E2eLab {
        info,
        alice,
        bob,
        _down: down,
        _tmp: tmp,
    }
}

/// Rejects every event waiting in the guard's review queue, as the lab's reviewer
/// (`lab.json` `guard.review_tokens`) through the admin API with the real `review` CLI: held
/// events then arrive redacted and their rooms flow again. Returns how many it rejected.
pub fn reject_all_held(info: &grenzwacht::lab::LabInfo) -> usize {
    let Some(token) = info.guard.review_tokens.get("lab-reviewer") else {
        return 0;
    };
    let cli = |args: &[&str]| {
        std::process::Command::new(env!("CARGO_BIN_EXE_grenzwacht"))
            .args(["review", "--admin", &info.guard.admin_url, "--token-file"])
            .arg(token)
            .args(args)
            .env_remove("GRENZWACHT_CONFIG")
            .output()
            .expect("run grenzwacht review")
    };
    let out = cli(&["list"]);
    assert!(
        out.status.success(),
        "review list: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    let mut n = 0;
    for held in String::from_utf8_lossy(&out.stdout)
        .lines()
        .filter_map(|l| serde_json::from_str::<serde_json::Value>(l).ok())
        .filter(|h| h["state"] == "pending")
    {
        let id = held["id"].as_i64().unwrap_or_default().to_string();
        let out = cli(&["reject", &id, "--reason", "test: held content stays out"]);
        // A hold decided meanwhile (timeout, another call) is fine.
        if out.status.success() {
            n += 1;
        }
    }
    n
}

/// `PUT /rooms/{room}/send/{ty}/{txn}` as `who`; returns the event id.
pub async fn send_content(
    who: &grenzwacht::lab::client::Session,
    room: &str,
    ty: &str,
    content: &serde_json::Value,
) -> String {
    use grenzwacht::lab::client::encode_segment;
    let txn = format!("t{}", rand::random::<u64>());
    let path = format!(
        "/_matrix/client/v3/rooms/{}/send/{}/{txn}",
        encode_segment(room),
        encode_segment(ty)
    );
    let r = who
        .client
        .call("PUT", &path, Some(&who.access_token), Some(content))
        .await
        .unwrap_or_else(|e| panic!("send {ty}: {e}"));
    r["event_id"].as_str().expect("event_id").to_string()
}

/// An `m.text` content, with `label` under the lab's label key (`de.grenzwacht.label`).
pub fn labeled_text(body: &str, label: Option<serde_json::Value>) -> serde_json::Value {
    let mut c = serde_json::json!({"msgtype": "m.text", "body": body});
    if let Some(l) = label {
        c["de.grenzwacht.label"] = l;
    }
    c
}
